"""int8 feature tables: symmetric per-row quantisation, dequantised inside the gather."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnsys.data.format import load_dataset, save_dataset
from gnnsys.data.quantize import dequantize_rows, quantize_rows
from gnnsys.data.synthetic import generate
from gnnsys.errors import ConfigError, DatasetError
from gnnsys.features import FeatureStore
from gnnsys.features.factory import dataset_store
from gnnsys.features.tiered_gather import gather_tiered_into


def _rows(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((300, 37)).astype(np.float32)
    x *= rng.choice([1e-30, 1e-6, 1.0, 3e4, 1e30], size=(300, 1)).astype(np.float32)
    x[0] = 0.0
    x[1, :] = 0.0
    x[1, 3] = -1e-40  # a lone subnormal
    x[2] = np.float32(0.5) * np.arange(37, dtype=np.float32)  # many exact halves
    x[3, :5] = [127.0, -127.0, 63.5, -63.5, 0.5]
    return x


def test_quantisation_error_bound_holds_exactly():
    x = _rows()
    q, s = quantize_rows(x)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (x.shape[0],)
    assert q.min() >= -127 and (s >= 0).all()
    x64, s64 = x.astype(np.float64), s.astype(np.float64)[:, None]
    err = np.abs(x64 - q.astype(np.float64) * s64)  # exact in float64 (31 significant bits)
    assert (err <= s64 / 2).all()
    assert s[0] == 0 and (q[0] == 0).all()
    # the scale is the smallest float32 with max|x| / s <= 127: the largest code is +-127
    nz = np.abs(x).max(1) > 0
    assert (np.abs(q[nz]).max(1) == 127).all()


def test_quantisation_refuses_non_finite_rows():
    x = _rows()
    x[7, 2] = np.nan
    with pytest.raises(DatasetError, match="row 7"):
        quantize_rows(x)


@pytest.mark.parametrize("placement", ["cpu", "mmap"])
@pytest.mark.parametrize("n_ids", [0, 5, 70_000])  # serial and parallel gathers
def test_store_gather_equals_dequantisation_reference(tmp_path, placement, n_ids):
    x = _rows()
    q, s = quantize_rows(x)
    path = tmp_path / "q.npy"
    np.save(path, q)
    table = str(path) if placement == "mmap" else q
    store = FeatureStore(table, placement=placement, dtype="int8", scales=s)
    assert store.dtype == torch.float32 and store.dim == 37
    ids = np.random.default_rng(1).integers(0, x.shape[0], n_ids)
    got = store.gather(ids).numpy()
    want = dequantize_rows(q[ids], s[ids])
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_int8_store_needs_its_float32_scales():
    q, s = quantize_rows(_rows())
    with pytest.raises(ConfigError, match="scales"):
        FeatureStore(q, dtype="int8")
    with pytest.raises(ConfigError, match="float32"):
        FeatureStore(q, dtype="int8", scales=s[:-1])
    with pytest.raises(ConfigError, match="only apply to an int8"):
        FeatureStore(_rows(), scales=s)


def test_prepare_int8_and_train_store(tmp_path):
    ds32 = generate("tiny", tmp_path / "f32", seed=3)
    ds8 = generate("tiny", tmp_path / "i8", seed=3, feature_dtype="int8")
    assert ds8.feature_dtype == "int8" and ds8.features.dtype == np.int8
    assert ds8.feature_scale.dtype == np.float32 and ds8.feature_scale.shape == (ds8.num_nodes,)
    assert ds8.features.nbytes * 4 == ds32.features.nbytes
    assert np.array_equal(ds8.indices, ds32.indices)
    q, s = quantize_rows(np.asarray(ds32.features))
    assert np.array_equal(ds8.features, q) and np.array_equal(ds8.feature_scale, s)
    store = dataset_store(ds8, "mmap")
    ids = np.arange(ds8.num_nodes)
    assert np.array_equal(store.gather(ids).numpy(), dequantize_rows(q, s))
    # converting a float32 table to int8 (in RAM, and as a memory map in a run folder)
    for placement, conv in (("cpu", None), ("mmap", tmp_path)):
        conv_store = dataset_store(ds32, placement, dtype="int8", convert_dir=conv)
        assert np.array_equal(conv_store.gather(ids).numpy(), dequantize_rows(q, s))


def test_save_dataset_int8_round_trip(tmp_path):
    from gnnsys.data.csc import build_csc

    x = _rows()
    g = build_csc(np.arange(299), np.arange(1, 300), 300)
    ds = save_dataset(tmp_path / "d", name="d", task="node", graph=g, features=x, feature_dtype="int8")
    again = load_dataset(tmp_path / "d", validate="full")
    q, s = quantize_rows(x)
    assert np.array_equal(again.features, q) and np.array_equal(again.feature_scale, s)
    assert ds.meta["feature_dtype"] == "int8"
    (tmp_path / "d" / "features_scale.npy").unlink()
    with pytest.raises(DatasetError, match="features_scale.npy"):
        load_dataset(tmp_path / "d")


def test_tiered_gather_without_cache_counts_no_hits():
    q, s = quantize_rows(_rows())
    out = np.empty((4, q.shape[1]), np.float32)
    assert gather_tiered_into(q, np.array([0, 1, 2, 3]), out, scales=s) == 0


def test_full_evaluation_input_is_dequantised(tmp_path):
    from gnnsys.train.evaluate import all_features

    ds8 = generate("tiny", tmp_path / "i8", seed=3, feature_dtype="int8")
    x = all_features(ds8)
    assert x.dtype == torch.float32
    assert np.array_equal(x.numpy(), dequantize_rows(ds8.features, ds8.feature_scale))
