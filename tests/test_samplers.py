"""Property tests of NeighborSampler.sample_from_nodes (hypothesis) plus targeted checks."""

from __future__ import annotations

from collections import Counter

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samplers import NeighborSampler, SampledSubgraph
from samplers import _relabel
from test_samplers_helpers import CSC, graphs, random_graph

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
fanout_lists = st.lists(st.sampled_from([-1, 1, 2, 3, 5, 40]), min_size=1, max_size=3)


def check_subgraph(g: CSC, sub: SampledSubgraph, seeds: np.ndarray, fanouts, replace: bool,
                   layout: str) -> None:
    """Every structural property a sample must satisfy (used by several tests)."""
    edges = g.edge_set()
    deg = g.degree()
    nodes = sub.nodes
    b = seeds.size
    assert nodes.dtype == np.int64
    np.testing.assert_array_equal(nodes[:b], seeds)  # seeds first, in order
    assert len(np.unique(nodes)) == nodes.size  # relabelling is a bijection
    assert sub.num_sampled_nodes[0] == b and sum(sub.num_sampled_nodes) == nodes.size
    assert len(sub.hops) == len(fanouts) == len(sub.num_sampled_edges)
    known = b
    frontier_start = 0
    for k, (hop, fanout) in enumerate(zip(sub.hops, fanouts)):
        ei = hop.edge_index
        assert ei.dtype == np.int64 and ei.shape == (2, sub.num_sampled_edges[k])
        assert hop.num_dst == known
        assert hop.num_src == known + sub.num_sampled_nodes[k + 1]
        if ei.shape[1]:
            assert ei[0].min() >= 0 and ei[0].max() < hop.num_src
            assert ei[1].min() >= 0 and ei[1].max() < hop.num_dst
        src_g, dst_g = nodes[ei[0]], nodes[ei[1]]
        for u, v in zip(src_g.tolist(), dst_g.tolist()):
            assert (u, v) in edges, f"hop {k}: sampled edge {u}->{v} is not in the graph"
        # new nodes of this hop appear in order of first occurrence among the sources
        new_local = ei[0][ei[0] >= known]
        _, first = np.unique(new_local, return_index=True)
        np.testing.assert_array_equal(new_local[np.sort(first)], np.arange(known, hop.num_src))
        lo = 0 if layout == "block" else frontier_start
        counts = np.bincount(ei[1], minlength=known)
        assert not counts[:lo].any()
        for local in range(lo, known):
            v = int(nodes[local])
            picked = src_g[ei[1] == local]
            d = int(deg[v])
            if fanout == -1:
                expected = d
            elif replace:
                expected = fanout if d else 0
            else:
                expected = min(fanout, d)
            assert picked.size == expected, f"hop {k}, node {v}: {picked.size} != {expected}"
            if not replace or fanout == -1:
                assert np.unique(picked).size == picked.size, f"duplicate neighbour of {v}"
            if fanout == -1:
                assert set(picked.tolist()) == set(g.in_neighbours(v).tolist())
        frontier_start = known
        known = hop.num_src


@SETTINGS
@given(g=graphs(), fanouts=fanout_lists, replace=st.booleans(),
       layout=st.sampled_from(["block", "pyg"]), data=st.data())
def test_sample_properties(g, fanouts, replace, layout, data):
    b = data.draw(st.integers(1, g.num_nodes))
    seeds = np.array(data.draw(st.permutations(range(g.num_nodes)))[:b], dtype=np.int64)
    s = NeighborSampler(g, fanouts, replace=replace, seed=data.draw(st.integers(0, 99)),
                        layout=layout)
    sub = s.sample_from_nodes(seeds, batch_seed=data.draw(st.integers(0, 2**40)))
    check_subgraph(g, sub, seeds, fanouts, replace, layout)


@SETTINGS
@given(g=graphs(), fanouts=fanout_lists, seed=st.integers(0, 5), bs=st.integers(0, 1000))
def test_same_key_same_batch(g, fanouts, seed, bs):
    seeds = np.arange(min(5, g.num_nodes))
    a = NeighborSampler(g, fanouts, seed=seed).sample_from_nodes(seeds, batch_seed=bs)
    b = NeighborSampler(g, fanouts, seed=seed).sample_from_nodes(seeds, batch_seed=bs)
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.edge_index, b.edge_index)


def test_thread_count_does_not_change_result():
    g = random_graph(20_000, 200_000, seed=1)
    seeds = np.random.default_rng(0).choice(g.num_nodes, 500, replace=False)
    s = NeighborSampler(g, [10, 10, 5], seed=3)
    before = numba.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 1):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            outs.append(s.sample_from_nodes(seeds, batch_seed=7))
    finally:
        numba.set_num_threads(before)
    assert outs[0].num_sampled_edges[-1] > 4096 * 2  # large enough for several relabel chunks
    for o in outs[1:]:
        np.testing.assert_array_equal(o.nodes, outs[0].nodes)
        np.testing.assert_array_equal(o.edge_index, outs[0].edge_index)


@SETTINGS
@given(n=st.integers(1, 300), e=st.integers(0, 3000), known=st.integers(0, 50),
       seed=st.integers(0, 2**32 - 1))
def test_relabel_same_for_any_chunk_count(n, e, known, seed):
    rng = np.random.default_rng(seed)
    nbr = rng.integers(0, n, e)
    known_nodes = rng.permutation(n)[:min(known, n)]
    results = []
    for nchunks in (1, 2, 3, 7):
        sc = _relabel.Scratch(n, 7)
        _relabel.map_seeds(known_nodes.astype(np.int64), sc.gmap)
        src_local = np.empty(e, np.int64)
        new = _relabel.relabel(nbr, sc.gmap, sc.bitmaps, nchunks, known_nodes.size, src_local)
        assert not sc.bitmaps.any(), "bitmaps must be cleared by touched entries"
        nodes = np.concatenate([known_nodes, new])
        np.testing.assert_array_equal(nodes[src_local], nbr)  # local -> global consistent
        assert np.unique(nodes).size == nodes.size
        _relabel.reset_map(sc.gmap, nodes)
        assert (sc.gmap == -1).all(), "gmap must be reset by touched entries"
        results.append((new, src_local))
    for new, src_local in results[1:]:
        np.testing.assert_array_equal(new, results[0][0])
        np.testing.assert_array_equal(src_local, results[0][1])


def test_full_fanout_equals_bfs():
    g = random_graph(300, 700, seed=4)
    seeds = np.array([3, 17, 250])
    sub = NeighborSampler(g, [-1, -1], layout="pyg").sample_from_nodes(seeds)
    reach = set(seeds.tolist())
    frontier = set(reach)
    for _ in range(2):
        nxt = {int(u) for v in frontier for u in g.in_neighbours(v)} - reach
        reach |= nxt
        frontier = nxt
    assert set(sub.nodes.tolist()) == reach
    assert sum(sub.num_sampled_edges) == sum(g.degree()[sub.nodes[:sub.hops[1].num_dst]])


def test_uniform_without_replacement_is_uniform():
    # node 0 has 10 in-neighbours; fanout 3 => every neighbour has probability 0.3 per batch
    g = CSC(np.array([0, 10] + [10] * 10, np.int64), np.arange(1, 11, dtype=np.int32), 11)
    s = NeighborSampler(g, [3], seed=11)
    trials = 4000
    counts = Counter()
    for t in range(trials):
        sub = s.sample_from_nodes([0], batch_seed=t)
        counts.update(sub.nodes[1:].tolist())
    freq = np.array([counts[i] for i in range(1, 11)]) / trials
    # binomial std of a frequency ~ sqrt(.3 * .7 / 4000) = 0.0072: allow 5 sigma
    assert np.abs(freq - 0.3).max() < 0.037, freq


def test_large_fanout_partial_shuffle_path():
    # fanout 40 (> the Floyd threshold) on degree 100: distinct, uniform-ish, within the list
    g = CSC(np.array([0, 100] + [100] * 100, np.int64), np.arange(1, 101, dtype=np.int32), 101)
    s = NeighborSampler(g, [40], seed=2)
    counts = np.zeros(101)
    for t in range(500):
        sub = s.sample_from_nodes([0], batch_seed=t)
        assert sub.num_sampled_edges == [40] and np.unique(sub.nodes).size == 41
        counts[sub.nodes[1:]] += 1
    freq = counts[1:] / 500
    assert np.abs(freq - 0.4).max() < 0.12


def test_weighted_sampling_follows_weights():
    g = CSC(np.array([0, 4, 4, 4, 4, 4], np.int64), np.array([1, 2, 3, 4], np.int32), 5)
    w = np.array([1.0, 3.0, 0.0, 6.0])
    s = NeighborSampler(g, [1], replace=True, weights=w, seed=0)
    picks = Counter(int(s.sample_from_nodes([0], batch_seed=t).nodes[1]) for t in range(3000))
    assert picks[3] == 0  # weight 0 is never sampled
    assert abs(picks[1] / 3000 - 0.1) < 0.03 and abs(picks[4] / 3000 - 0.6) < 0.04
    s2 = NeighborSampler(g, [5], replace=False, weights=w)
    sub = s2.sample_from_nodes([0])
    assert sorted(sub.nodes[1:].tolist()) == [1, 2, 4]  # min(fanout, positive-weight degree)


@SETTINGS
@given(g=graphs(), fanouts=fanout_lists, replace=st.booleans(), data=st.data())
def test_weighted_properties(g, fanouts, replace, data):
    w = np.random.default_rng(data.draw(st.integers(0, 99))).random(g.indices.size)
    w[w < 0.2] = 0.0
    s = NeighborSampler(g, fanouts, replace=replace, weights=w)
    seeds = np.arange(g.num_nodes)[: data.draw(st.integers(1, g.num_nodes))]
    sub = s.sample_from_nodes(seeds)
    dst = np.repeat(np.arange(g.num_nodes), g.degree())
    positive = set(zip(g.indices[w > 0].tolist(), dst[w > 0].tolist()))
    for hop in sub.hops:
        for u, v in zip(sub.nodes[hop.edge_index[0]].tolist(), sub.nodes[hop.edge_index[1]].tolist()):
            assert (u, v) in positive


def test_isolated_and_single_node_graphs_sample_nothing():
    single = CSC(np.array([0, 0], np.int64), np.empty(0, np.int32), 1)
    sub = NeighborSampler(single, [5, -1]).sample_from_nodes([0])
    assert sub.nodes.tolist() == [0] and sub.num_sampled_edges == [0, 0]
    assert sub.num_sampled_nodes == [1, 0, 0]
    loop = CSC(np.array([0, 1], np.int64), np.array([0], np.int32), 1)
    sub = NeighborSampler(loop, [3], replace=True).sample_from_nodes([0])
    assert sub.edge_index.tolist() == [[0, 0, 0], [0, 0, 0]]


def test_repeated_seeds_keep_their_positions():
    g = random_graph(50, 300, seed=2)
    sub = NeighborSampler(g, [3]).sample_from_nodes([4, 9, 4])
    assert sub.nodes[:3].tolist() == [4, 9, 4]
    np.testing.assert_array_equal(sub.nodes[sub.edge_index[1]], np.repeat(sub.nodes[:3], np.bincount(sub.edge_index[1], minlength=3)))


def test_call_counter_gives_fresh_batches():
    g = random_graph(500, 5000, seed=3)
    s = NeighborSampler(g, [5])
    a, b = s.sample_from_nodes([1, 2, 3]), s.sample_from_nodes([1, 2, 3])
    assert not np.array_equal(a.nodes, b.nodes)


def test_accepts_memmap_int32_and_torch_seeds(tmp_path):
    import torch

    g = random_graph(100, 800, seed=5)
    np.save(tmp_path / "indices.npy", g.indices)
    mm = CSC(g.indptr, np.load(tmp_path / "indices.npy", mmap_mode="r"), g.num_nodes)
    s = NeighborSampler(mm, [4, 4])
    sub = s.sample_from_nodes(torch.tensor([1, 2, 3]), batch_seed=1)
    ref = NeighborSampler(g, [4, 4]).sample_from_nodes(np.array([1, 2, 3], np.int32), batch_seed=1)
    np.testing.assert_array_equal(sub.edge_index, ref.edge_index)


@pytest.mark.parametrize("layout", ["pyg", "block"])
def test_to_pyg_runs_sageconv_layer_by_layer(layout):
    import torch
    from torch_geometric.nn import GATConv, SAGEConv
    from torch_geometric.utils import trim_to_layer

    g = random_graph(400, 4000, seed=6)
    sub = NeighborSampler(g, [5, 3], layout=layout).sample_from_nodes(np.arange(16), batch_seed=0)
    data = sub.to_pyg()
    assert data.batch_size == 16 and data.n_id.tolist() == sub.nodes.tolist()
    assert data.edge_index.shape[1] == sum(data.num_sampled_edges)
    x = torch.randn(data.num_nodes, 8)
    convs = [SAGEConv(8, 8), SAGEConv(8, 4)]
    h, ei = x, data.edge_index
    for i, conv in enumerate(convs):
        h, ei, _ = trim_to_layer(i, data.num_sampled_nodes, data.num_sampled_edges, h, ei)
        h = conv(h, ei)
    assert h[:data.batch_size].shape == (16, 4)
    GATConv(8, 4)(x, data.edge_index)  # consumes the same edge_index unchanged
    if layout == "block":
        # each hop is a self-contained block: layer l runs on hops[L - 1 - l] alone
        h = x
        for i, conv in enumerate(convs):
            hop = sub.hops[len(convs) - 1 - i]
            h = conv((h[:hop.num_src], h[:hop.num_dst]), torch.from_numpy(hop.edge_index))
        assert h.shape == (16, 4)
