"""The fused sampler (samplers._fused) against the two-kernel code it replaced, and across threads.

The reference below is the hop loop of ``NeighborSampler._expand`` as it was before the fused
kernel (commit 4905890), built from the kernels it called, which are kept unchanged:
``_hop.hop_counts`` / ``_hop.hop_fill`` (the GPU sampler's CPU reference) and
``_relabel.relabel``. The draws keep their keys, so the output must be bit-identical.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_samplers_helpers import graphs, random_graph

from samplers import NeighborSampler, SampledSubgraph, _fused, _hop, _relabel
from samplers._rng import stream_key
from samplers.neighbor import _TAG_HOP, _exclusion

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EMPTY = np.empty(0, np.int64)


def reference_sample(s: NeighborSampler, seeds: np.ndarray, batch_seed: int,
                     ex_nodes: np.ndarray = EMPTY, ex_keys: np.ndarray = EMPTY):
    """``(nodes, [(edge_index, num_src, num_dst)], num_sampled_nodes, num_sampled_edges)`` as
    the two-kernel sampler computed them."""
    scratch = _relabel.Scratch(s.num_nodes, 1)
    _relabel.map_seeds(seeds, scratch.gmap)
    nodes, known, frontier_start = seeds, seeds.size, 0
    hops, n_nodes, n_edges = [], [int(seeds.size)], []
    for k, fanout in enumerate(s.fanouts):
        f0 = 0 if s.layout == "block" else frontier_start
        frontier = nodes[f0:known]
        counts = _hop.hop_counts(s.indptr, s.indices, s.weights, s._wdeg, frontier, fanout,
                                 s.replace, ex_nodes, ex_keys)
        offsets = np.zeros(frontier.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        e = int(offsets[-1])
        edge_index = np.empty((2, e), np.int64)
        nbr = np.empty(e, np.int64)
        key = np.uint64(stream_key(s.seed, batch_seed, _TAG_HOP, k))
        _hop.hop_fill(s.indptr, s.indices, s.weights, frontier, f0, fanout, s.replace, key,
                      ex_nodes, ex_keys, offsets, nbr, edge_index[1])
        new = _relabel.relabel(nbr, scratch.gmap, scratch.bitmaps, 1, known, edge_index[0])
        nodes = np.concatenate([nodes, new])
        hops.append((edge_index, known + new.size, known))
        frontier_start = known
        known += new.size
        n_nodes.append(int(new.size))
        n_edges.append(e)
    return nodes, hops, n_nodes, n_edges


def assert_same(sub: SampledSubgraph, ref) -> None:
    nodes, hops, n_nodes, n_edges = ref
    np.testing.assert_array_equal(sub.nodes, nodes)
    assert sub.nodes.dtype == np.int64
    assert sub.num_sampled_nodes == n_nodes and sub.num_sampled_edges == n_edges
    assert len(sub.hops) == len(hops)
    for hop, (ei, num_src, num_dst) in zip(sub.hops, hops):
        assert hop.edge_index.dtype == np.int64 and hop.edge_index.flags.c_contiguous
        np.testing.assert_array_equal(hop.edge_index, ei)
        assert (hop.num_src, hop.num_dst) == (num_src, num_dst)


def assert_equal_subgraphs(a: SampledSubgraph, b: SampledSubgraph) -> None:
    """Every output array and count equal, exactly."""
    np.testing.assert_array_equal(a.nodes, b.nodes)
    assert a.num_sampled_nodes == b.num_sampled_nodes
    assert a.num_sampled_edges == b.num_sampled_edges
    for x, y in zip(a.hops, b.hops, strict=True):
        np.testing.assert_array_equal(x.edge_index, y.edge_index)
        assert (x.num_src, x.num_dst) == (y.num_src, y.num_dst)
    for name in ("edge_label_index", "edge_label"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert a.extra.keys() == b.extra.keys()
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k])


@SETTINGS
@given(g=graphs(), serial=st.booleans(), fanouts=st.lists(st.sampled_from([-1, 1, 2, 3, 5, 40]), min_size=1, max_size=3),
       replace=st.booleans(), layout=st.sampled_from(["block", "pyg"]),
       weighted=st.booleans(), exclude=st.booleans(), chunks=st.sampled_from([1, 2, 3, 7]),
       data=st.data())
def test_same_output_as_two_kernel_sampler(g, serial, fanouts, replace, layout, weighted,
                                           exclude, chunks, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    weights = None
    if weighted:
        weights = rng.random(g.indices.size)
        weights[weights < 0.2] = 0.0
    s = NeighborSampler(g, fanouts, replace=replace, seed=data.draw(st.integers(0, 99)),
                        weights=weights, layout=layout)
    b = data.draw(st.integers(1, g.num_nodes))
    seeds = rng.integers(0, g.num_nodes, b).astype(np.int64)  # repeats allowed
    bs = data.draw(st.integers(0, 2**40))
    ex = None
    if exclude:
        src = rng.integers(0, g.num_nodes, 3)
        dst = rng.integers(0, g.num_nodes, 3)
        ex = _exclusion(src, dst)
    saved = _fused.SERIAL_RESOLVE_MAX, _fused.SERIAL_HOP_EDGES
    # both candidate resolutions; small hops split into chunks too (tiny graphs)
    _fused.SERIAL_RESOLVE_MAX, _fused.SERIAL_HOP_EDGES = (2**62 if serial else 0), 0
    try:
        sub = s._sample(seeds, bs, ex, chunks=chunks)
    finally:
        _fused.SERIAL_RESOLVE_MAX, _fused.SERIAL_HOP_EDGES = saved
    assert_same(sub, reference_sample(s, seeds, bs, *(ex if ex is not None else (EMPTY, EMPTY))))


@pytest.mark.parametrize("serial_max", [0, 2**62])  # parallel / single-pass candidate resolution
@pytest.mark.parametrize("layout", ["pyg", "block"])
@pytest.mark.parametrize("replace,weighted", [(False, False), (True, False), (False, True)])
def test_same_output_as_two_kernel_sampler_many_chunks(layout, replace, weighted, serial_max,
                                                       monkeypatch):
    monkeypatch.setattr(_fused, "SERIAL_RESOLVE_MAX", serial_max)
    monkeypatch.setattr(_fused, "SERIAL_HOP_EDGES", 0 if serial_max == 0 else 2**62)
    # large enough for every chunk and ownership segment to hold many candidates
    g = random_graph(5_000, 60_000, seed=7)
    w = np.random.default_rng(1).random(g.indices.size) if weighted else None
    s = NeighborSampler(g, [10, 5, 3], replace=replace, weights=w, layout=layout, seed=5)
    seeds = np.random.default_rng(2).choice(g.num_nodes, 300, replace=False).astype(np.int64)
    ref = reference_sample(s, seeds, 11)
    for chunks in (1, 2, 3, 8):
        assert_same(s._sample(seeds, 11, None, chunks=chunks), ref)


@pytest.mark.parametrize("serial_max", [0, 2**62])
def test_thread_count_gives_identical_arrays(serial_max, monkeypatch):
    """1 vs 2 numba threads (numba.set_num_threads): every output array exactly equal, node and
    link batches, both layouts."""
    monkeypatch.setattr(_fused, "SERIAL_RESOLVE_MAX", serial_max)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs NUMBA_NUM_THREADS >= 2 to compare thread counts")
    g = random_graph(20_000, 200_000, seed=1, symmetric=True)
    rng = np.random.default_rng(0)
    seeds = rng.choice(g.num_nodes, 500, replace=False)
    src, dst = g.indices[:200].astype(np.int64), np.searchsorted(g.indptr, np.arange(200), "right") - 1
    before = numba.get_num_threads()
    outs: dict[int, list[SampledSubgraph]] = {}
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            res = []
            for layout in ("pyg", "block"):
                s = NeighborSampler(g, [10, 10, 5], seed=3, layout=layout)
                res.append(s.sample_from_nodes(seeds, batch_seed=7))
                res.append(s.sample_from_edges(src, dst, neg="per_source", num_neg=2,
                                               exclude_target_edges=True, batch_seed=8))
            outs[t] = res
    finally:
        numba.set_num_threads(before)
    assert outs[1][0].num_sampled_edges[-1] > 4 * 4096  # several chunks' worth of edges
    for a, b in zip(outs[1], outs[2], strict=True):
        assert_equal_subgraphs(a, b)


def test_scratch_is_clean_after_a_batch():
    g = random_graph(3_000, 30_000, seed=3)
    s = NeighborSampler(g, [8, 4])
    for chunks in (1, 3):
        s._sample(np.arange(100, dtype=np.int64), 0, None, chunks=chunks)
        for scratch in s._pool._free:
            assert (scratch.gmap == -1).all() and not scratch.bitmaps.any()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=graphs(), hops=st.integers(1, 3), replace=st.booleans(), data=st.data())
def test_whole_graph_shortcut_equals_the_kernels(g, hops, replace, data):
    """All fanouts -1 and every node a seed, in id order (every ogbl-ddi link batch): the
    sampler returns the whole graph without running the kernels; it must be exactly what the
    kernels (and the two-kernel reference) build, fresh arrays each call."""
    s = NeighborSampler(g, [-1] * hops, replace=replace, seed=3)
    seeds = np.arange(g.num_nodes, dtype=np.int64)
    if seeds.size == 0:
        return
    assert s._covers_graph(seeds)
    sub = s.sample_from_nodes(seeds, batch_seed=5)
    assert_same(sub, reference_sample(s, seeds, 5))
    assert_equal_subgraphs(sub, s._sample(seeds, 5, None, profile={}))  # profile: the kernels
    again = s.sample_from_nodes(seeds, batch_seed=6)
    assert all(not np.shares_memory(a.edge_index, b.edge_index) for a in sub.hops for b in again.hops)
    if g.num_nodes > 1:  # any other seed set, order or a weighted graph takes the kernels
        assert not s._covers_graph(seeds[::-1])
        assert not s._covers_graph(seeds[1:])
        weighted = NeighborSampler(g, [-1] * hops, weights=np.ones(g.indices.size))
        assert not weighted._covers_graph(seeds)
    assert not NeighborSampler(g, [-1] * hops + [2])._covers_graph(seeds)
    assert not NeighborSampler(g, [-1] * hops, layout="pyg")._covers_graph(seeds)


@pytest.mark.parametrize("num_nodes, num_ids", [(10, 100), (1000, 250), (1000, 249), (3, 0), (7, 7)])
def test_sorted_unique_is_numpys(num_nodes, num_ids):
    """The link batches' endpoint relabelling (a mark table on small graphs, a sort otherwise)
    gives np.unique's sorted ids and inverse, with np.unique's dtypes."""
    ids = np.random.default_rng(num_ids).integers(0, num_nodes, num_ids)
    seeds, inverse = _relabel.sorted_unique(ids, num_nodes)
    want_seeds, want_inverse = np.unique(ids, return_inverse=True)
    assert seeds.dtype == want_seeds.dtype and inverse.dtype == np.int64
    np.testing.assert_array_equal(seeds, want_seeds)
    np.testing.assert_array_equal(inverse, want_inverse)
