"""LargeGT's K-token 1/2-hop sampler."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from samplers import SamplerInputError
from samplers.tokens import TokenSampler


class Graph:
    def __init__(self, a: sp.csc_matrix) -> None:
        a = sp.csc_matrix(a)
        a.sum_duplicates()
        a.sort_indices()
        self.indptr = a.indptr.astype(np.int64)
        self.indices = a.indices.astype(np.int32)
        self.num_nodes = a.shape[0]

    def in_nbrs(self, v: int) -> set[int]:
        return set(self.indices[self.indptr[v]:self.indptr[v + 1]].tolist())


def random_graph(n=200, m=1200, seed=0, isolated=(7,)) -> Graph:
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = (src != dst) & ~np.isin(src, isolated) & ~np.isin(dst, isolated)
    a = sp.csc_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=(n, n))
    return Graph(a)


G = random_graph()


@pytest.mark.parametrize("k,hop1", [(1, None), (6, None), (20, 3), (40, 100)])
def test_tokens_are_the_seed_its_in_neighbours_and_two_hop_walks(k, hop1):
    seeds = np.array([3, 7, 0, 11, 150, 3])  # 7 is isolated; 3 repeats
    s = TokenSampler(G, k, seed=5, hop1_tokens=hop1)
    out = s.sample_from_nodes(seeds, batch_seed=2)
    idx, mask, hop = out.extra["token_index"], out.extra["token_mask"], out.extra["token_hop"]
    assert idx.shape == mask.shape == hop.shape == (seeds.size, k)
    assert np.array_equal(out.nodes[: seeds.size], seeds)
    assert out.num_sampled_nodes == [seeds.size, out.nodes.size - seeds.size]
    assert len(set(out.nodes[seeds.size:].tolist())) == out.nodes.size - seeds.size
    assert not np.isin(out.nodes[seeds.size:], seeds).any()
    assert (idx[~mask] == 0).all() and (hop[~mask] == -1).all() and (hop[mask] >= 0).all()
    h1_max = (k - 1) // 2 if hop1 is None else hop1
    for b, sd in enumerate(seeds):
        glob = out.nodes[idx[b]]
        assert glob[0] == sd and hop[b, 0] == 0 and mask[b, 0]
        n1 = G.in_nbrs(int(sd))
        one = glob[(hop[b] == 1)]
        assert len(one) == len(set(one.tolist())) == min(len(n1), h1_max, k - 1)
        assert set(one.tolist()) <= n1
        two_hop = set().union(*(G.in_nbrs(u) for u in n1)) - {int(sd)} if n1 else set()
        assert set(glob[hop[b] == 2].tolist()) <= two_hop
        # masked slots only at the end, and only when no valid walk could fill them
        valid = np.flatnonzero(mask[b])
        assert np.array_equal(valid, np.arange(valid.size))
        if sd == 7:
            assert valid.size == 1
        elif two_hop and k > 1:
            assert valid.size == k or valid.size > 1  # filled or ran out of retries
    # a repeated seed gets its first position as local id
    assert idx[5, 0] == 0


def test_deterministic_per_batch_seed_and_thread_count():
    seeds = np.arange(0, 200, 2)
    s = TokenSampler(G, 16, seed=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = s.sample_from_nodes(seeds, batch_seed=9)
        numba.set_num_threads(max(1, before))
        b = s.sample_from_nodes(seeds, batch_seed=9)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(a.nodes, b.nodes)
    assert np.array_equal(a.extra["token_index"], b.extra["token_index"])
    c = s.sample_from_nodes(seeds, batch_seed=10)
    assert not np.array_equal(a.extra["token_index"], c.extra["token_index"])
    d = TokenSampler(G, 16, seed=2).sample_from_nodes(seeds, batch_seed=9)
    assert not np.array_equal(a.extra["token_index"], d.extra["token_index"])


def test_one_hop_draws_are_uniform():
    # a star: node 0 has 20 in-neighbours; choose 5 of them, many batches
    n = 21
    a = sp.csc_matrix((np.ones(n - 1), (np.arange(1, n), np.zeros(n - 1, int))), shape=(n, n))
    s = TokenSampler(Graph(a), 6, seed=0, hop1_tokens=5)
    counts = np.zeros(n)
    batches = 2000  # a node's draws depend on (seed, batch_seed, node): one seed per batch
    trials = batches
    for t in range(batches):
        out = s.sample_from_nodes(np.zeros(1, np.int64), batch_seed=t)
        glob = out.nodes[out.extra["token_index"]]
        hop1 = glob[out.extra["token_hop"] == 1]
        np.add.at(counts, hop1, 1)
    expected = trials * 5 / 20
    assert np.all(np.abs(counts[1:] - expected) < 0.15 * expected), counts


def test_bad_input():
    with pytest.raises(SamplerInputError, match="num_tokens"):
        TokenSampler(G, 0)
    with pytest.raises(SamplerInputError, match="hop1_tokens"):
        TokenSampler(G, 4, hop1_tokens=-1)
    s = TokenSampler(G, 4)
    with pytest.raises(SamplerInputError, match="out of range"):
        s.sample_from_nodes(np.array([G.num_nodes]))
    with pytest.raises(SamplerInputError, match="empty"):
        s.sample_from_nodes(np.array([], np.int64))
    with pytest.raises(SamplerInputError, match="integer"):
        s.sample_from_nodes(np.array([1.0]))
