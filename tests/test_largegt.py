"""LargeGT: propagated tables, codebook, model shapes/masks/gradients, options."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnnsys.data import synthetic
from gnnsys.data.format import float32_to_bfloat16_bits
from gnnsys.data.propagate import build_propagated, open_propagated, propagated_features
from gnnsys.errors import ConfigError, DatasetError
from gnnsys.loader.batch import Batch
from gnnsys.models.largegt import DEFAULTS, SPEC, Codebook, LargeGT, make_transform, validate_options
from samplers.tokens import TokenSampler


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthetic.generate("tiny", tmp_path_factory.mktemp("data") / "tiny", seed=0)


def dense_propagation(indptr, indices, x, hops):
    n = indptr.size - 1
    dst = np.repeat(np.arange(n), np.diff(indptr))
    a = sp.csr_matrix((np.ones(indices.size), (dst, indices)), shape=(n, n)).toarray() + np.eye(n)
    dinv = 1 / np.sqrt(np.diff(indptr) + 1.0)
    a_hat = dinv[:, None] * a * dinv[None, :]
    blocks = [x.astype(np.float64)]
    for _ in range(hops):
        blocks.append(a_hat @ blocks[-1])
    return np.concatenate(blocks, axis=1)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


def test_propagated_table_matches_dense_and_is_cached(tiny):
    before = _digest(Path(tiny.path))
    path = propagated_features(tiny, hops=2)
    table = open_propagated(path)
    ref = dense_propagation(np.asarray(tiny.indptr), np.asarray(tiny.indices), np.asarray(tiny.features), 2)
    assert table.shape == (tiny.num_nodes, 3 * tiny.features.shape[1]) and table.dtype == np.float32
    np.testing.assert_allclose(table, ref, rtol=1e-4, atol=1e-4)
    mtime = path.stat().st_mtime_ns
    assert propagated_features(tiny, hops=2) == path and path.stat().st_mtime_ns == mtime  # reused
    assert _digest(Path(tiny.path)) == before  # dataset files untouched
    assert propagated_features(tiny, hops=1) != path  # the key includes hops


def test_chunking_and_bfloat16_input(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 37, 5
    a = sp.random(n, n, 0.15, format="csc", random_state=1)
    a = ((a + a.T) > 0).astype(np.float32).tocsc()
    x = rng.standard_normal((n, d)).astype(np.float32)
    bits = float32_to_bfloat16_bits(x)
    ds = SimpleNamespace(indptr=a.indptr.astype(np.int64), indices=a.indices.astype(np.int32),
                         features=bits, meta={"name": "toy", "feature_dtype": "bfloat16", "files": {}},
                         num_nodes=n, path=tmp_path)
    whole = open_propagated(build_propagated(ds, tmp_path / "a.npy", hops=3))
    chunked = open_propagated(build_propagated(ds, tmp_path / "b.npy", hops=3, chunk_rows=4))
    np.testing.assert_array_equal(whole, chunked)
    x_bf = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_allclose(whole, dense_propagation(ds.indptr, ds.indices, x_bf, 3), rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(DatasetError, match="no node features"):
        build_propagated(SimpleNamespace(features=None, meta={"name": "x"}), tmp_path / "c.npy")


def test_codebook_update_moves_centroids_towards_assigned_points():
    torch.manual_seed(0)
    cb = Codebook(4, 2, decay=0.9)
    init = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    cb.update(init)  # first call initialises from data
    cb.centroids.copy_(init)
    cb.ema_sum.copy_(init)
    cb.ema_count.fill_(1.0)
    pts = torch.cat([torch.randn(50, 2) * 0.3 + torch.tensor([-3.0, 1.0]),
                     torch.randn(50, 2) * 0.3 + torch.tensor([4.0, 2.0])])
    idx = cb.assign(pts)
    assert set(idx.tolist()) == {0, 1}
    old = cb.centroids.clone()
    for _ in range(5):
        cb.update(pts)
        for c in (0, 1):
            mean = pts[idx == c].mean(0)
            assert (cb.centroids[c] - mean).norm() < (old[c] - mean).norm()
        old = cb.centroids.clone()
    torch.testing.assert_close(cb.centroids[2:], init[2:], atol=1e-3, rtol=1e-3)  # unassigned: stay
    assert not any(p.requires_grad for p in cb.buffers())


def test_codebook_initialises_from_data():
    cb = Codebook(8, 3, seed=1)
    z = torch.randn(5, 3) + 10
    cb.update(z)
    assert bool(cb.initialised)
    d = torch.cdist(cb.centroids, z).min(1).values
    assert (d < 0.1).all()


def small_options(**kw):
    o = dict(DEFAULTS, num_tokens=8, hidden=16, global_dim=8, num_centroids=16, heads=2)
    o.update(kw)
    return o


def make_batch(ds, options, table, seeds=np.arange(0, 60, 4), batch_seed=0):
    sampler = SPEC.make_sampler(ds, options, 0)
    sub = sampler.sample_from_nodes(seeds, batch_seed=batch_seed)
    x = torch.from_numpy(np.asarray(table[sub.nodes]))
    y = torch.from_numpy(np.asarray(ds.labels)[seeds])
    return make_transform(options, True)(Batch(subgraph=sub, batch_size=len(seeds), x=x, y=y))


def test_model_shapes_gradients_and_masks(tiny):
    torch.manual_seed(0)
    opts = small_options()
    table = open_propagated(propagated_features(tiny, hops=2))
    batch = make_batch(tiny, opts, table)
    model = LargeGT(table.shape[1], tiny.num_classes, opts)
    out = model(batch)
    assert out.shape == (batch.batch_size, tiny.num_classes)
    torch.nn.functional.cross_entropy(out, batch.y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # masked (empty) token slots do not influence the output
    model.eval()
    mask = batch.extra["token_mask"].clone()
    mask[:, 4:] = False
    batch.extra["token_mask"] = mask
    with torch.no_grad():
        ref = model(batch)
        batch.extra["token_index"] = batch.extra["token_index"].clone()
        batch.extra["token_index"][:, 4:] = batch.extra["token_index"].flip(0)[:, 4:]
        torch.testing.assert_close(model(batch), ref)


def test_spec_features_and_sampler(tiny, tmp_path):
    opts = small_options(cache_dir=str(tmp_path))
    store = SPEC.make_features(tiny, opts, "cpu", None)
    assert store.dim == 3 * tiny.features.shape[1]
    ids = np.array([5, 0, 999, 5])
    table = open_propagated(next(tmp_path.glob("propagated-*.npy")))
    np.testing.assert_array_equal(store.gather(ids).numpy(), table[ids])
    sampler = SPEC.make_sampler(tiny, opts, 3)
    assert isinstance(sampler, TokenSampler) and sampler.num_tokens == 8


def test_bad_options():
    validate_options(small_options())
    with pytest.raises(ConfigError, match="num_tokens"):
        validate_options(small_options(num_tokens=0))
    with pytest.raises(ConfigError, match="divisible"):
        validate_options(small_options(hidden=15))
    with pytest.raises(ConfigError, match="ema_decay"):
        validate_options(small_options(ema_decay=1.0))
    with pytest.raises(ConfigError, match="input_dropout"):
        validate_options(small_options(input_dropout=1.0))
    with pytest.raises(ConfigError, match="token_index"):
        LargeGT(4, 2, small_options())(Batch(subgraph=None, batch_size=1, x=torch.zeros(1, 4)))


def test_input_dropout_acts_on_the_features_in_training_only(tiny):
    """``input_dropout`` drops input feature entries (tokens and the global projection) while
    training; in eval mode the model equals the same weights without it, bit for bit."""
    table = open_propagated(propagated_features(tiny, hops=2))
    batch = make_batch(tiny, small_options(), table)
    torch.manual_seed(0)
    plain = LargeGT(table.shape[1], tiny.num_classes, small_options(dropout=0.0))
    dropped = LargeGT(table.shape[1], tiny.num_classes, small_options(dropout=0.0, input_dropout=0.5))
    dropped.load_state_dict(plain.state_dict())
    for m in (plain, dropped):
        m.codebook.update = lambda z: None  # keep the centroids fixed: only the input differs
        m.codebook.initialised.fill_(True)
    with torch.no_grad():
        plain.eval(), dropped.eval()
        assert torch.equal(plain(batch), dropped(batch))
        plain.train(), dropped.train()
        assert torch.equal(plain(batch), plain(batch))  # nothing random left without input dropout
        assert not torch.equal(plain(batch), dropped(batch))
