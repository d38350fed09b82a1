"""Issue 19 (formats): sparse ``.npz`` features densified in bounded chunks with the size printed
first, CSV header rows, CSV errors naming the line, one directed/undirected default shown by
``info``, and ``Batch.to_pyg()`` checked against a PyG layer.

Each test fails on the code before: ``.npz`` features were parsed as CSV, a ``src,dst`` header
failed with "node ids must be integers, got object", CSV errors named no line, ``from_pyg`` kept
edges directed while ``prepare --edges`` symmetrised them, ``Batch`` had no ``to_pyg``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error as _one_line_error
from cli_helpers import run_cli as _cli

from gnnsys.data import load_dataset

N = 40


def _edges(seed=0):
    rng = np.random.default_rng(seed)
    e = rng.integers(0, N, (160, 2))
    return e[e[:, 0] != e[:, 1]]


def _write_csv(path, rows, header="src,dst"):
    with open(path, "w") as f:
        if header:
            f.write(header + "\n")
        f.writelines(f"{u},{v}\n" for u, v in rows)


def test_csv_header_row_is_skipped(tmp_path, capsys):
    """Before: gnnsys: error: ...: node ids must be integers, got object."""
    e = _edges()
    _write_csv(tmp_path / "with.csv", e)
    _write_csv(tmp_path / "without.csv", e, header=None)
    for name in ("with", "without"):
        code, _, err = _cli(["prepare", "--edges", tmp_path / f"{name}.csv", "--out", tmp_path / name], capsys)
        assert code == 0, err
    a, b = load_dataset(tmp_path / "with"), load_dataset(tmp_path / "without")
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert a.splits["train_pos"].tolist() == e.tolist()


@pytest.mark.parametrize("body, line, needle", [
    ("src,dst\n0,1\n# a comment\n\n1,2\n2,x\n", 6, "'x' is not an integer"),
    ("0,1\n1,2.5\n", 2, "'2.5' is not an integer"),
    ("0,1\n1,\n2,3\n", 2, "an empty cell is not an integer"),
])
def test_csv_errors_name_the_line(tmp_path, capsys, body, line, needle):
    (tmp_path / "bad.csv").write_text(body)
    code, _, err = _cli(["prepare", "--edges", tmp_path / "bad.csv", "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, f"bad.csv: line {line}: edge list: {needle}")
    assert not (tmp_path / "o").exists()


def test_csv_with_too_many_fields_names_the_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("0,1\n1,2\n2,3,4\n")
    code, _, err = _cli(["prepare", "--edges", tmp_path / "bad.csv", "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, "bad.csv", "line 3")


def test_csv_labels_with_a_header(tmp_path, capsys):
    e = _edges()
    np.save(tmp_path / "e.npy", e)
    (tmp_path / "y.csv").write_text("label\n" + "".join(f"{i % 3}\n" for i in range(N)))
    code, _, err = _cli(["prepare", "--edges", tmp_path / "e.npy", "--labels", tmp_path / "y.csv",
                         "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert load_dataset(tmp_path / "o").labels.tolist() == [i % 3 for i in range(N)]


def test_sparse_npz_features_end_to_end(tmp_path, capsys, monkeypatch):
    """End to end: scipy CSR features (.npz) -> dense features.npy written in bounded chunks, the
    size printed before writing -> trains."""
    import scipy.sparse as sp

    import gnnsys.data.sparse_features as sf

    rng = np.random.default_rng(0)
    x = sp.random(N, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    sp.save_npz(tmp_path / "x.npz", x)
    np.save(tmp_path / "e.npy", _edges())
    np.save(tmp_path / "y.npy", rng.integers(0, 3, N))
    np.save(tmp_path / "tr.npy", np.arange(0, 25))
    np.save(tmp_path / "va.npy", np.arange(25, 40))
    monkeypatch.setattr(sf, "CHUNK_BYTES", 16 * 300 * 4)  # 16 rows per chunk
    rows_seen = []
    real = sf.SparseFeatures.write_dense

    def spy(self, out, dtype):
        orig = self.matrix.__class__.__getitem__

        def getitem(m, key):
            if isinstance(key, slice):
                rows_seen.append(len(range(*key.indices(m.shape[0]))))
            return orig(m, key)

        monkeypatch.setattr(self.matrix.__class__, "__getitem__", getitem)
        return real(self, out, dtype)

    monkeypatch.setattr(sf.SparseFeatures, "write_dense", spy)
    code, out, err = _cli(["prepare", "--edges", tmp_path / "e.npy", "--features", tmp_path / "x.npz",
                           "--labels", tmp_path / "y.npy", "--split", f"train={tmp_path / 'tr.npy'}",
                           "--split", f"valid={tmp_path / 'va.npy'}", "--out", tmp_path / "ds"], capsys)
    assert code == 0, err
    assert f"x.npz: sparse [{N}, 300] with {x.nnz} non-zeros" in err
    assert "writing dense float32 features.npy of 46.9 KiB (18.8 KiB at a time)" in err
    assert rows_seen == [16, 16, 8]  # bounded blocks of rows, never the whole table at once
    ds = load_dataset(tmp_path / "ds")
    assert ds.features.dtype == np.float32 and np.array_equal(np.asarray(ds.features), x.toarray())
    assert json.loads(out)["feature_shape"] == [N, 300]
    code, _, err = _cli(["train", "--dataset", tmp_path / "ds", "--epochs", "1", "--fanouts", "5,5",
                         "--hidden", "8", "--batch-size", "16", "--out", tmp_path / "run", "--no-progress"],
                        capsys)
    assert code == 0, err


def test_sparse_npz_bfloat16_and_not_a_matrix(tmp_path, capsys):
    import scipy.sparse as sp

    from gnnsys.data.format import float32_to_bfloat16_bits
    from gnnsys.data.sources import from_edge_list

    x = sp.random(N, 12, density=0.3, format="csr", random_state=2, dtype=np.float32)
    sp.save_npz(tmp_path / "x.npz", x)
    np.save(tmp_path / "e.npy", _edges())
    ds = from_edge_list(tmp_path / "e.npy", tmp_path / "ds", features=tmp_path / "x.npz",
                        feature_dtype="bfloat16")
    assert ds.feature_dtype == "bfloat16"
    assert np.array_equal(np.asarray(ds.features), float32_to_bfloat16_bits(x.toarray()))
    np.savez(tmp_path / "junk.npz", a=np.arange(3))
    code, _, err = _cli(["prepare", "--edges", tmp_path / "e.npy", "--features", tmp_path / "junk.npz",
                         "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, "junk.npz: not a scipy sparse matrix saved with scipy.sparse.save_npz")
    assert not (tmp_path / "o").exists()


def test_one_directed_default_everywhere_shown_by_info(tmp_path, capsys):
    """Before: prepare --edges symmetrised, from_pyg kept the edges directed."""
    import torch
    from torch_geometric.data import Data

    from gnnsys.data.sources import from_pyg

    e = _edges()
    np.save(tmp_path / "e.npy", e)
    code, _, err = _cli(["prepare", "--edges", tmp_path / "e.npy", "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    b = from_pyg(Data(edge_index=torch.from_numpy(e.T.copy()), num_nodes=N), tmp_path / "b")
    a = load_dataset(tmp_path / "a")
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    for p in ("a", "b"):
        code, out, err = _cli(["info", tmp_path / p], capsys)
        assert code == 0, err
        info = json.loads(out)
        assert info["directed"] is False and info["symmetrized"] is True
    # --directed / directed=True agree too
    code, _, err = _cli(["prepare", "--edges", tmp_path / "e.npy", "--directed", "--out", tmp_path / "c"],
                        capsys)
    assert code == 0, err
    d = from_pyg(Data(edge_index=torch.from_numpy(e.T.copy()), num_nodes=N), tmp_path / "d", directed=True)
    c = load_dataset(tmp_path / "c")
    assert np.array_equal(c.indptr, d.indptr) and np.array_equal(c.indices, d.indices)
    assert c.meta["directed"] is True and d.meta["directed"] is True


def test_batch_to_pyg_runs_any_pyg_layer(tiny):
    """Batch.to_pyg() gives x, y, edge_index, n_id, batch_size; two SAGEConv layers on it give,
    for the seeds, what they give on the whole graph (every neighbour sampled)."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.nn import SAGEConv

    from gnnsys.loader import NodeLoader

    loader = NodeLoader.from_dataset(tiny, "train", [-1, -1], 32, shuffle=False, prefetch=0)
    batch = next(iter(loader))
    data = batch.to_pyg()
    assert isinstance(data, Data)
    seeds = np.asarray(tiny.splits["train"][:32])
    assert data.batch_size == 32 and data.n_id[:32].tolist() == seeds.tolist()
    assert data.y.tolist() == np.asarray(tiny.labels)[seeds].tolist()
    assert torch.equal(data.x, torch.from_numpy(np.asarray(tiny.features)[data.n_id.numpy()]))
    torch.manual_seed(0)
    c1, c2 = SAGEConv(tiny.num_features, 16), SAGEConv(16, 8)
    g = tiny.graph
    full_ei = torch.from_numpy(np.stack([np.asarray(g.indices, np.int64),
                                         np.repeat(np.arange(tiny.num_nodes), np.diff(g.indptr))]))
    x_full = torch.from_numpy(np.asarray(tiny.features, np.float32))
    with torch.no_grad():
        full = c2(c1(x_full, full_ei).relu(), full_ei)[torch.from_numpy(seeds)]
        sub = c2(c1(data.x, data.edge_index).relu(), data.edge_index)[:data.batch_size]
    # same neighbours, different summation order: float32 rounding only
    torch.testing.assert_close(sub, full, rtol=1e-5, atol=1e-6)


def test_batch_to_pyg_refuses_first_hop_aggregates(tiny):
    import dataclasses

    import torch

    from gnnsys.errors import ConfigError
    from gnnsys.loader import NodeLoader

    loader = NodeLoader.from_dataset(tiny, "train", [5, 5], 32, shuffle=False, prefetch=0)
    batch = next(iter(loader))
    # a batch made with aggregate_first_hop: x holds the first hop's destinations only
    agg = dataclasses.replace(batch, x=batch.x[:32], x_agg=torch.zeros(32, batch.x.shape[1]))
    with pytest.raises(ConfigError, match="aggregate_first_hop"):
        agg.to_pyg()


@pytest.mark.parametrize("sep", ["\t", " ", "  "])
def test_snap_style_whitespace_edge_lists(tmp_path, capsys, sep):
    """SNAP-style .txt edge lists: '#' comment lines, tab or space separated."""
    e = _edges()
    with open(tmp_path / "g.txt", "w") as f:
        f.write("# Directed graph (each unordered pair of nodes is saved once)\n# FromNodeId\tToNodeId\n")
        f.writelines(f"{u}{sep}{v}\n" for u, v in e)
    code, _, err = _cli(["prepare", "--edges", tmp_path / "g.txt", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert load_dataset(tmp_path / "o").splits["train_pos"].tolist() == e.tolist()
    (tmp_path / "bad.txt").write_text(f"0{sep}1\n1{sep}x\n")
    code, _, err = _cli(["prepare", "--edges", tmp_path / "bad.txt", "--out", tmp_path / "b"], capsys)
    _one_line_error(code, err, "bad.txt: line 2: edge list: 'x' is not an integer")
