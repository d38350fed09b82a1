"""Weighted negative draws of the PyG-compatible LinkNeighborLoader (``NegativeSampling`` with
``src_weight`` / ``dst_weight``): the ids ``Generator.choice(n, k, p=p)`` draws, without its
O(num_nodes) work per batch."""

from __future__ import annotations

import tracemalloc

import numpy as np

from gnnsys.loader.pyg_compat import _draw, draw_cdf


def test_same_ids_as_choice_with_probabilities():
    n = 5000
    p = np.random.default_rng(0).random(n) ** 4
    p[::7] = 0.0  # nodes never drawn
    p /= p.sum()
    cdf = draw_cdf(p)
    for seed in range(5):
        want = np.random.default_rng(seed).choice(n, size=777, p=p)
        got = _draw(np.random.default_rng(seed), n, 777, cdf)
        assert got.dtype == np.int64 and np.array_equal(got, want)
    assert not np.isin(got, np.arange(0, n, 7)).any()


def test_a_draw_allocates_o_batch_not_o_num_nodes():
    n = 2_000_000
    p = np.full(n, 1.0 / n)
    cdf = draw_cdf(p)
    tracemalloc.start()
    _draw(np.random.default_rng(0), n, 64, cdf)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 1024, peak  # choice(n, 64, p=p) allocates 2 x 8 N B = 32 MB here
