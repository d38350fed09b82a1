"""Per-batch work is O(batch), not O(num_nodes): the Python/NumPy allocations of sampling +
relabelling + gathering one batch (and of evaluation bookkeeping) do not grow with the graph.

tracemalloc sees NumPy's and Python's allocations; the numba kernels' own scratch (NRT) is not
traced: their per-call arrays are sized by the frontier (see ``samplers/_hop.py`` and
``samplers/_relabel.py``), and the ``[N]`` relabelling map is allocated once per sampler and
reused (``_ScratchPool``)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from gnnsys.data.csc import build_csc
from gnnsys.data.quantize import quantize_rows
from gnnsys.features import FeatureStore
from gnnsys.features.hot import count_rows
from gnnsys.loader import NodeLoader
from samplers import NeighborSampler

SMALL, LARGE = 5_000, 400_000


def _graph(n: int):
    rng = np.random.default_rng(0)
    m = 8 * n
    return build_csc(rng.integers(0, n, m), rng.integers(0, n, m), n, track_edge_ids=False)


def _peak(fn) -> int:
    fn()  # warm-up: compilation, pooled scratch and buffers
    fn()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["cpu", "mmap-cache", "int8"])
def test_batch_allocations_do_not_grow_with_num_nodes(tmp_path, kind):
    peaks = {}
    for n in (SMALL, LARGE):
        g = _graph(n)
        x = np.random.default_rng(1).standard_normal((n, 16)).astype(np.float32)
        if kind == "cpu":
            store = FeatureStore(x)
        elif kind == "int8":
            q, s = quantize_rows(x)
            store = FeatureStore(q, dtype="int8", scales=s)
        else:
            np.save(tmp_path / f"x{n}.npy", x)
            store = FeatureStore(str(tmp_path / f"x{n}.npy"), placement="mmap",
                                 row_scores=np.diff(g.indptr), cache_rows=n // 10)
        loader = NodeLoader(NeighborSampler(g, [5, 5], seed=0), np.arange(2048), 256, features=store,
                            labels=np.zeros(n, np.int64), prefetch=0)
        peaks[n] = _peak(lambda loader=loader: loader._make_batch(None, 0, 1))

    # an O(num_nodes) array of the large graph alone would be >= 400 KB (one byte per node)
    assert peaks[LARGE] < peaks[SMALL] + 200_000, peaks
    assert peaks[LARGE] < LARGE, peaks


def test_warm_up_counting_is_per_batch():
    ids = np.arange(1000)
    peak = _peak(lambda: count_rows([ids] * 3, LARGE))
    # the [N] int64 counts it returns, plus O(batch) per batch (a bincount per batch: 16 N)
    assert peak < 8 * LARGE + 100_000, peak


def test_evaluation_bookkeeping_reads_split_labels_only():
    import types

    import torch

    from gnnsys.train.evaluate import evaluate_splits

    peaks = {}
    for n in (SMALL, LARGE):
        labels = np.zeros(n, np.int64)
        ds = types.SimpleNamespace(labels=labels, name="synthetic",
                                   splits={"valid": np.arange(100), "test": np.arange(100, 300)})
        parts = types.SimpleNamespace(model=torch.nn.Linear(1, 1), task="node", eval_mode="sampled",
                                      dataset=ds, metric="acc", targets="multiclass")
        logits = torch.zeros(300, 3)
        peaks[n] = _peak(lambda parts=parts, logits=logits: evaluate_splits(parts, lambda ids: logits[: ids.size]))
    assert peaks[LARGE] < peaks[SMALL] + 100_000, peaks
