"""Tests of NeighborSampler.sample_from_edges: labels, negatives, target-edge exclusion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samplers import NeighborSampler, SamplerInputError
from test_samplers import check_subgraph
from test_samplers_helpers import CSC, csc_from_edges, graphs, random_graph

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _positives(g: CSC, rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray]:
    dst_all = np.repeat(np.arange(g.num_nodes), g.degree())
    pick = rng.choice(g.indices.size, size=min(b, g.indices.size), replace=False)
    return g.indices[pick].astype(np.int64), dst_all[pick]


@SETTINGS
@given(g=graphs(max_nodes=30, max_edges=150),
       neg=st.sampled_from(["uniform", "per_source", "exclude_existing", "random_pairs", None]),
       k=st.integers(1, 4), exclude=st.booleans(), seed=st.integers(0, 2**32 - 1),
       layout=st.sampled_from(["block", "pyg"]))
def test_link_batch_properties(g, neg, k, exclude, seed, layout):
    rng = np.random.default_rng(seed)
    if g.indices.size == 0:
        return
    src, dst = _positives(g, rng, int(rng.integers(1, 8)))
    b = src.size
    fanouts = [3, -1]
    s = NeighborSampler(g, fanouts, seed=1, layout=layout)
    try:
        sub = s.sample_from_edges(src, dst, neg=neg, num_neg=k, exclude_target_edges=exclude,
                                  batch_seed=int(rng.integers(0, 1000)))
    except SamplerInputError as exc:
        # only legitimate when some source already points at every other node (or, for random
        # pairs, when the graph is complete)
        if neg == "random_pairs":
            n = g.num_nodes
            assert len({(u, v) for u, v in g.edge_set() if u != v}) == n * (n - 1)
            assert "no negative pair" in str(exc) or "at least 2 nodes" in str(exc)
        else:
            assert neg == "exclude_existing" and "no negative destination" in str(exc)
        return
    seeds = sub.nodes[:sub.num_seeds]
    kk = 0 if neg is None else k
    eli = sub.edge_label_index
    assert eli.shape == (2, b * (1 + kk)) and eli.dtype == np.int64
    assert eli.max() < sub.num_seeds  # labels index the seeds
    np.testing.assert_array_equal(sub.nodes[eli[:, :b]], np.stack([src, dst]))
    if neg != "random_pairs":
        np.testing.assert_array_equal(sub.nodes[eli[0, b:]], np.repeat(src, kk))
    assert sub.edge_label.dtype == np.float32
    np.testing.assert_array_equal(sub.edge_label, np.r_[np.ones(b), np.zeros(b * kk)])
    assert set(seeds.tolist()) == set(sub.nodes[eli].ravel().tolist())  # seeds = unique endpoints
    if neg == "per_source":
        np.testing.assert_array_equal(sub.extra["neg_dst_index"], eli[1, b:].reshape(b, k))
    edges = g.edge_set()
    if neg in ("exclude_existing", "random_pairs"):
        for u, v in zip(sub.nodes[eli[0, b:]].tolist(), sub.nodes[eli[1, b:]].tolist()):
            assert (u, v) not in edges and u != v
    if exclude:
        banned = set(zip(src.tolist(), dst.tolist())) | set(zip(dst.tolist(), src.tolist()))
        mp = set(zip(sub.nodes[sub.edge_index[0]].tolist(), sub.nodes[sub.edge_index[1]].tolist()))
        assert not (mp & banned), "a target edge leaked into the message-passing graph"
        # counts use the degree without the excluded edges
        g2 = csc_from_edges(*zip(*(edges - banned)) if edges - banned else ([], []), g.num_nodes)
        check_subgraph(g2, sub, seeds, fanouts, False, layout)
    else:
        check_subgraph(g, sub, seeds, fanouts, False, layout)


def test_exclude_existing_with_unsorted_lists_and_dense_source():
    n = 30
    src = np.r_[np.zeros(n - 2, np.int64), np.arange(1, n)]
    dst = np.r_[np.arange(1, n - 1), np.zeros(n - 1, np.int64)]
    g = csc_from_edges(src, dst, n, shuffle_rows=3)  # node 0 points at all but node n-1
    s = NeighborSampler(g, [2])
    sub = s.sample_from_edges([0, 0], [1, 2], neg="exclude_existing", num_neg=5, batch_seed=0)
    negs = sub.nodes[sub.edge_label_index[1, 2:]]
    assert (negs == n - 1).all()  # the only non-neighbour of node 0 (found by the fallback scan)


def _complete_graph(n: int) -> CSC:
    src, dst = np.meshgrid(np.arange(n), np.arange(n))
    mask = src != dst
    return csc_from_edges(src[mask], dst[mask], n)


@pytest.mark.parametrize("neg, match", [("exclude_existing", "no negative destination exists for source"),
                                        ("random_pairs", "no negative pair exists")])
def test_negatives_on_a_complete_graph_raise(neg, match):
    with pytest.raises(SamplerInputError, match=match):
        NeighborSampler(_complete_graph(5), [2]).sample_from_edges([0], [1], neg=neg)


def test_random_pairs_draw_both_ends_uniformly_and_deterministically():
    g = random_graph(200, 2000, seed=8, symmetric=True)
    s = NeighborSampler(g, [5, 5], seed=3)
    a = s.sample_from_edges([1, 2], [3, 4], neg="random_pairs", num_neg=200, batch_seed=9)
    b = s.sample_from_edges([1, 2], [3, 4], neg="random_pairs", num_neg=200, batch_seed=9)
    np.testing.assert_array_equal(a.edge_label_index, b.edge_label_index)
    ns, nd = a.nodes[a.edge_label_index[:, 2:]]
    assert ns.size == 400 and np.unique(ns).size > 120 and np.unique(nd).size > 120  # not the positives' sources
    assert not (ns == nd).any() and not any((u, v) in g.edge_set() for u, v in zip(ns.tolist(), nd.tolist()))
    c = s.sample_from_edges([1, 2], [3, 4], neg="random_pairs", num_neg=200, batch_seed=10)
    assert not np.array_equal(a.nodes[a.edge_label_index], c.nodes[c.edge_label_index])


def test_random_pairs_need_two_nodes():
    one = csc_from_edges([], [], 1)
    with pytest.raises(SamplerInputError, match="at least 2 nodes"):
        NeighborSampler(one, [2]).sample_from_edges([0], [0], neg="random_pairs")


def test_link_batch_deterministic_and_uniform_negatives_cover_nodes():
    g = random_graph(200, 2000, seed=8, symmetric=True)
    s = NeighborSampler(g, [5, 5])
    a = s.sample_from_edges([1, 2], [3, 4], num_neg=50, batch_seed=9)
    b = s.sample_from_edges([1, 2], [3, 4], num_neg=50, batch_seed=9)
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.edge_label_index, b.edge_label_index)
    negs = a.nodes[a.edge_label_index[1, 2:]]
    assert np.unique(negs).size > 60  # 100 uniform draws over 200 nodes


def test_given_negatives_per_source():
    g = random_graph(100, 800, seed=2)
    s = NeighborSampler(g, [3])
    neg_dst = np.array([[5, 6, 7], [8, 9, 5]])
    sub = s.sample_from_edges([1, 2], [3, 4], neg=None, neg_dst=neg_dst, batch_seed=0)
    np.testing.assert_array_equal(sub.nodes[sub.extra["neg_dst_index"]], neg_dst)
    np.testing.assert_array_equal(sub.nodes[sub.edge_label_index[1, 2:]], neg_dst.ravel())
    assert sub.edge_label.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(SamplerInputError, match=r"neg_dst must have shape \[B = 2, K\]"):
        s.sample_from_edges([1, 2], [3, 4], neg=None, neg_dst=np.array([[5, 6, 7]]))
    with pytest.raises(SamplerInputError, match="neg must be None or 'per_source'"):
        s.sample_from_edges([1, 2], [3, 4], neg="uniform", neg_dst=neg_dst)
    with pytest.raises(SamplerInputError, match="neg_dst contains id 100"):
        s.sample_from_edges([1, 2], [3, 4], neg=None, neg_dst=np.array([[5], [100]]))


@pytest.mark.parametrize("kwargs, match", [
    ({"neg": "hard"}, "neg must be one of"),
    ({"num_neg": 0}, "num_neg must be an int >= 1"),
    ({"num_neg": 1.5}, "num_neg must be an int >= 1"),
])
def test_bad_link_options(kwargs, match):
    s = NeighborSampler(random_graph(20, 50), [2])
    with pytest.raises(SamplerInputError, match=match):
        s.sample_from_edges([1], [2], **kwargs)


@pytest.mark.parametrize("src, dst, match", [
    ([1, 2], [3], "same length"),
    ([], [], "src is empty"),
    ([1.0], [2], "src must hold integer"),
    ([1], [-2], "dst contains the negative id -2"),
    ([1], [20], "dst contains id 20, out of range"),
])
def test_bad_link_pairs(src, dst, match):
    s = NeighborSampler(random_graph(20, 50), [2])
    with pytest.raises(SamplerInputError, match=match):
        s.sample_from_edges(src, dst)


@SETTINGS
@given(g=graphs(max_nodes=40, max_edges=400), seed=st.integers(0, 2**32 - 1), k=st.integers(1, 3))
def test_edge_bitmap_draws_the_negatives_of_the_binary_searches(g, seed, k):
    """On graphs small enough for an edge bitmap (every test graph), the bitmap's answers are the
    sorted neighbour lists' (bit ``d * N + s`` set exactly for the edges ``s -> d``), so both
    negative kernels draw the same pairs and destinations with either."""
    from samplers import _negative
    from samplers._rng import stream_key

    s = NeighborSampler(g, [2], seed=seed)
    sorted_idx, bits = s._edge_lookup()
    n = g.num_nodes
    assert _negative.bitmap_fits(n) and bits.size == (n * n + 7) // 8
    dense = np.unpackbits(bits, bitorder="little")[: n * n].reshape(n, n)  # [dst, src]
    want = np.zeros((n, n), np.uint8)
    want[np.repeat(np.arange(n), g.degree()), g.indices] = 1
    assert np.array_equal(dense, want)
    if n < 2 or want.sum() + n >= n * n:
        return  # no non-edge to draw
    key = np.uint64(stream_key(seed, 7))
    indptr = s.indptr
    pairs = []
    for b in (bits, _negative.NO_BITMAP):
        src, dst = np.empty(50, np.int64), np.empty(50, np.int64)
        negs = np.empty((n, k), np.int64)
        _negative.sample_pairs(n, key, indptr, sorted_idx, b, src, dst)
        _negative.sample_negatives(np.arange(n, dtype=np.int64), n, k, key, True, indptr, sorted_idx, b, negs)
        pairs.append((src, dst, negs))
    assert all(np.array_equal(a, c) for a, c in zip(*pairs))
    assert not want[pairs[0][1], pairs[0][0]].any()
