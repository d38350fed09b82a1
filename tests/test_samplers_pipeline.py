"""The fused sampler's prefetch pipelines and vectorised draws (samplers._fused) against plain
NumPy references, at the lengths where a pipeline's stages start and stop (around AHEAD and
2 * AHEAD), from a non-zero offset; and reset_map across its parallel chunks."""

from __future__ import annotations

import numpy as np
import pytest

from samplers import _fused, _hop, _relabel
from samplers._rng import node_key

A = _fused.AHEAD
LENGTHS = [0, 1, A - 1, A, A + 1, 2 * A - 1, 2 * A, 2 * A + 1, 5 * A + 3]
OFFSET = 7  # edges before the range: never read nor written
TAIL = 5  # and after it


def _case(n: int, seed: int, num_nodes: int = 300):
    """indices (int32, 5000 entries), positions into it for OFFSET + n + TAIL edges, a gmap with
    a third of the nodes mapped (to ids 0..), its node list."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, num_nodes, 5000).astype(np.int32)
    pos = rng.integers(0, indices.size, OFFSET + n + TAIL).astype(np.int64)
    gmap = np.full(num_nodes, -1, np.int32)
    mapped = rng.choice(num_nodes, num_nodes // 3, replace=False)
    gmap[mapped] = np.arange(mapped.size)
    nodes = np.full(num_nodes + 2, -9, np.int64)
    nodes[:mapped.size] = mapped
    return indices, pos, gmap, nodes, mapped.size


def _number_reference(gmap, nodes, nbr, known):
    """Sequential relabelling: a new node gets the next id in order of first occurrence."""
    gmap, nodes = gmap.copy(), nodes.copy()
    out = np.empty(nbr.size, np.int64)
    r = known
    for q, v in enumerate(nbr):
        if gmap[v] < 0:
            gmap[v] = r
            nodes[r] = v
            r += 1
        out[q] = gmap[v]
    return out, gmap, nodes[:r], r - known


@pytest.mark.parametrize("n", LENGTHS)
def test_first_chunk_is_sequential_relabelling(n):
    indices, pos, gmap, nodes, known = _case(n, n)
    nbr = indices[pos[OFFSET:OFFSET + n]].astype(np.int64)
    want_out, want_gmap, want_nodes, want_new = _number_reference(gmap, nodes, nbr, known)
    work, src = pos.copy(), np.full(OFFSET + n + TAIL, -5, np.int64)
    new = _fused._first_chunk(indices, gmap, work, src, nodes, OFFSET, OFFSET + n, known)
    assert new == want_new
    np.testing.assert_array_equal(src[OFFSET:OFFSET + n], want_out)
    np.testing.assert_array_equal(gmap, want_gmap)
    np.testing.assert_array_equal(nodes[:known + new], want_nodes)
    np.testing.assert_array_equal(work[OFFSET:OFFSET + n], nbr)  # positions became neighbour ids
    _untouched(work, pos, n)
    _untouched(src, np.full_like(src, -5), n)


def _untouched(got, before, n):
    np.testing.assert_array_equal(got[:OFFSET], before[:OFFSET])
    np.testing.assert_array_equal(got[OFFSET + n:], before[OFFSET + n:])


@pytest.mark.parametrize("n", LENGTHS)
def test_later_chunks_list_the_unmapped_sources(n):
    indices, pos, gmap, _, _ = _case(n, 100 + n)
    nbr = indices[pos[OFFSET:OFFSET + n]].astype(np.int64)
    unmapped = nbr[gmap[nbr] < 0]
    before = gmap.copy()
    # two chunks: every unmapped edge listed, in edge order, repeats included
    work, cand = pos.copy(), np.full(OFFSET + n + TAIL, -5, np.int64)
    c = _fused._later_unmapped(indices, gmap, work, cand, OFFSET, OFFSET + n)
    np.testing.assert_array_equal(cand[OFFSET:OFFSET + c], unmapped)
    np.testing.assert_array_equal(work[OFFSET:OFFSET + n], nbr)
    _untouched(work, pos, n)
    # more chunks: each unmapped source once, in order of first occurrence; bitmap marks them
    _, first = np.unique(unmapped, return_index=True)
    bitmap = np.zeros((gmap.size + 7) // 8, np.uint8)
    work, cand = pos.copy(), np.full(OFFSET + n + TAIL, -5, np.int64)
    c = _fused._later_chunk(indices, gmap, bitmap, work, cand, OFFSET, OFFSET + n)
    np.testing.assert_array_equal(cand[OFFSET:OFFSET + c], unmapped[np.sort(first)])
    marked = np.flatnonzero(np.unpackbits(bitmap, bitorder="little")[:gmap.size])
    np.testing.assert_array_equal(marked, np.unique(unmapped))
    np.testing.assert_array_equal(gmap, before)  # listing never numbers
    _untouched(work, pos, n)
    _untouched(cand, np.full_like(cand, -5), n)


@pytest.mark.parametrize("n", LENGTHS)
def test_ordered_numbering_and_lookup(n):
    indices, pos, gmap, nodes, known = _case(n, 200 + n)
    cand = np.concatenate([np.full(OFFSET, 10**9), indices[pos[OFFSET:OFFSET + n]].astype(np.int64),
                           np.full(TAIL, 10**9)])
    _, want_gmap, want_nodes, want_new = _number_reference(gmap, nodes, cand[OFFSET:OFFSET + n], known)
    r = _fused._number_in_order(gmap, nodes, cand, OFFSET, OFFSET + n, known)
    assert r == known + want_new
    np.testing.assert_array_equal(gmap, want_gmap)
    np.testing.assert_array_equal(nodes[:r], want_nodes)
    out = np.full(OFFSET + n + TAIL, -5, np.int64)
    _fused._local_ids(gmap, cand, out, OFFSET, OFFSET + n)
    np.testing.assert_array_equal(out[OFFSET:OFFSET + n], gmap[cand[OFFSET:OFFSET + n]])
    _untouched(out, np.full_like(out, -5), n)


@pytest.mark.parametrize("n", LENGTHS)
def test_node_facts_read_indptr_pairs(n):
    rng = np.random.default_rng(300 + n)
    indptr = np.concatenate([[0], np.cumsum(rng.integers(0, 9, 400))]).astype(np.int64)
    indices = np.zeros(int(indptr[-1]), np.int32)
    nodes = rng.integers(0, 400, OFFSET + n + TAIL).astype(np.int64)
    starts = np.full(OFFSET + n + TAIL, -5, np.int64)
    avail = np.full(OFFSET + n + TAIL, -5, np.int64)
    e = np.empty(0, np.int64)
    got = _fused._node_facts(indptr, indices, np.empty(0), e, e, e, nodes, starts, avail,
                             OFFSET, OFFSET + n, 4, False)
    inner = nodes[OFFSET:OFFSET + n]
    deg = indptr[inner + 1] - indptr[inner]
    np.testing.assert_array_equal(starts[OFFSET:OFFSET + n], indptr[inner])
    np.testing.assert_array_equal(avail[OFFSET:OFFSET + n], deg)
    assert got == np.minimum(deg, 4).sum()
    _untouched(starts, np.full_like(starts, -5), n)
    _untouched(avail, np.full_like(avail, -5), n)


def test_vectorised_floyd_equals_the_scalar_draws():
    """_floyd (draws in one vector loop) and _hop._choose_uniform (one draw at a time) choose
    the same subset in the same order, for every fanout up to _FLOYD_MAX and degrees from
    fanout + 1 to just under 2**32."""
    buf = np.empty(_hop._FLOYD_MAX + 8, np.int64)
    for k, a in enumerate([2, 3, 6, 17, 33, 100, 12345, 2**31 + 5, 2**32 - 1]):
        for c in range(1, min(a - 1, _hop._FLOYD_MAX) + 1):
            key = np.uint64(node_key(np.uint64(0x1234 + k), 77 * c))
            want = np.empty(c, np.int64)
            _hop._choose_uniform(key, a, c, False, want, 0)
            got = np.full(c + 3, -1, np.int64)
            _fused._floyd(key, a, c, 1000, got, 2, buf)
            np.testing.assert_array_equal(got[2:2 + c], want + 1000)
            assert (got[:2] == -1).all() and got[2 + c] == -1
            assert len(set(want.tolist())) == c and want.min() >= 0 and want.max() < a


@pytest.mark.parametrize("n", [0, 1, _relabel.RESET_CHUNK - 1, 3 * _relabel.RESET_CHUNK + 5])
def test_reset_map_clears_every_touched_entry_only(n):
    rng = np.random.default_rng(n)
    gmap = np.arange(100_000, dtype=np.int32)
    nodes = rng.integers(0, 60_000, n).astype(np.int64)  # repeats included
    want = gmap.copy()
    want[nodes] = -1
    _relabel.reset_map(gmap, nodes)
    np.testing.assert_array_equal(gmap, want)
