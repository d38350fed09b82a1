"""samplers.walks: uniform and node2vec walks match the exact transition probabilities
(chi-square with fixed seeds), and are bit-identical across thread counts and chunkings."""

from __future__ import annotations

import itertools
from collections import Counter
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from scipy.stats import chisquare
from test_samplers_helpers import undirected_csc

from samplers.errors import SamplerInputError
from samplers.walks import random_walks, transition_probabilities, walk_order


def _graph(edges, n):
    """Undirected CSC graph with sorted neighbour lists."""
    return undirected_csc(edges, n)


# 0-1-2 triangle, 1-3, 3-4, 2-5, 5-4, 4-6: degrees 2..3, common neighbours and distance-2 nodes
G = _graph([(0, 1), (1, 2), (0, 2), (1, 3), (3, 4), (2, 5), (5, 4), (4, 6)], 7)


@pytest.mark.parametrize("p,q", [(1.0, 1.0), (0.25, 4.0), (4.0, 0.25), (2.0, 0.5)])
def test_second_step_matches_exact_probabilities(p, q):
    """Walks 0 -> 1 -> x: the frequencies of x against node2vec's exact probabilities
    (chi-square goodness of fit; fixed seed, so the statistic is a fixed number)."""
    n_walks = 40000
    walks = random_walks(G, np.zeros(n_walks, np.int64), 3, p=p, q=q, seed=7)
    counts: dict[tuple[int, int], Counter] = {}
    for t, v, x in walks.tolist():
        counts.setdefault((t, v), Counter())[x] += 1
    # the first step is uniform over 0's neighbours
    first = Counter(walks[:, 1].tolist())
    exp0 = transition_probabilities(G, -1, 0, p, q)
    assert set(first) == set(exp0)
    assert chisquare([first[k] for k in exp0], [exp0[k] * n_walks for k in exp0]).pvalue > 1e-3
    for (t, v), c in counts.items():
        exp = transition_probabilities(G, t, v, p, q)
        assert set(c) <= set(exp)
        total = sum(c.values())
        stat = chisquare([c[k] for k in exp], [exp[k] * total for k in exp])
        assert stat.pvalue > 1e-3, (t, v, dict(c), exp)


def test_return_probability_exact_expectation():
    """With p tiny the walk returns almost surely: P(return) = (1/p) / (1/p + ...)."""
    walks = random_walks(G, np.zeros(20000, np.int64), 3, p=0.01, q=1.0, seed=3)
    back = np.mean(walks[:, 2] == walks[:, 0])
    exact_from_1 = transition_probabilities(G, 0, 1, 0.01, 1.0)[0]
    exact_from_2 = transition_probabilities(G, 0, 2, 0.01, 1.0)[0]
    exact = 0.5 * exact_from_1 + 0.5 * exact_from_2
    assert abs(back - exact) < 4 * np.sqrt(exact * (1 - exact) / 20000)


@pytest.mark.parametrize("p,q", [(1.0, 1.0), (0.5, 2.0)])
def test_bit_identical_across_threads_and_chunks(p, q):
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 300, size=(1500, 2))
    g = _graph([(a, b) for a, b in edges if a != b], 300)
    starts = walk_order(300, 3, seed=5)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = random_walks(g, starts, 20, p=p, q=q, seed=5)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = random_walks(g, starts, 20, p=p, q=q, seed=5)
    finally:
        numba.set_num_threads(old)
    serial = random_walks(g, starts, 20, p=p, q=q, seed=5, parallel=False)
    chunk = random_walks(g, starts[100:250], 20, p=p, q=q, seed=5, walk_ids=np.arange(100, 250))
    assert np.array_equal(one, two) and np.array_equal(one, serial)
    assert np.array_equal(chunk, one[100:250])
    other = random_walks(g, starts, 20, p=p, q=q, seed=6)
    assert not np.array_equal(one, other)
    # every step is an edge of the graph
    for w in one[:50]:
        for a, b in itertools.pairwise(w):
            if b < 0:
                break
            assert b in g.indices[g.indptr[a]:g.indptr[a + 1]]


def test_dead_end_and_isolated_nodes():
    g = SimpleNamespace(indptr=np.array([0, 1, 1, 1], np.int64), indices=np.array([1], np.int32))
    w = random_walks(g, np.array([0, 2]), 4)
    assert w.tolist() == [[0, 1, -1, -1], [2, -1, -1, -1]]


@pytest.mark.parametrize("kw,match", [({"length": 0}, "walk length"), ({"p": 0.0}, "p must"),
                                      ({"q": -1.0}, "q must"), ({"p": float("nan")}, "p must")])
def test_bad_options(kw, match):
    args = {"length": 5, "p": 1.0, "q": 1.0, **kw}
    with pytest.raises(SamplerInputError, match=match):
        random_walks(G, np.zeros(2, np.int64), args.pop("length"), **args)


def test_walk_order_is_a_permutation_per_pass():
    o = walk_order(50, 3, seed=1)
    for k in range(3):
        assert sorted(o[50 * k:50 * (k + 1)].tolist()) == list(range(50))
    assert np.array_equal(o, walk_order(50, 3, seed=1))


def test_uniform_walks_in_lockstep_equal_one_at_a_time():
    """The grouped uniform walker (WALK_GROUP walks per step, for overlapping cache misses) gives
    exactly the walks of a one-at-a-time reference (step s of walk i: draw s - 1 of its key),
    dead ends and a partial group included."""
    from samplers._rng import below, draw, node_key
    from samplers.walks import WALK_GROUP, walk_key

    rng = np.random.default_rng(3)
    n = 200
    src, dst = rng.integers(0, n, 700), rng.integers(0, n, 700)
    dst[dst < 3] += 3  # nodes 0..2 have no in-neighbours: walks reaching them end there
    order = np.lexsort((src, dst))
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(dst, minlength=n))
    g = SimpleNamespace(indptr=indptr, indices=src[order].astype(np.int32))
    starts = rng.integers(0, n, 3 * WALK_GROUP + 5)
    ids = np.arange(1000, 1000 + starts.size, dtype=np.int64)
    want = np.full((starts.size, 30), -1, np.int32)
    for i, (v, wid) in enumerate(zip(starts.tolist(), ids.tolist())):
        wkey = np.uint64(node_key(np.uint64(walk_key(9)), wid))
        want[i, 0] = v
        for s in range(1, 30):
            lo, deg = int(indptr[v]), int(indptr[v + 1] - indptr[v])
            if deg == 0:
                break
            v = int(g.indices[lo + below(np.uint64(draw(wkey, s - 1)), deg)])
            want[i, s] = v
    for parallel in (False, True):
        got = random_walks(g, starts, 30, seed=9, walk_ids=ids, parallel=parallel)
        assert np.array_equal(got, want)
    assert (want == -1).any() and (want[:, -1] >= 0).any()  # both dead ends and full walks
