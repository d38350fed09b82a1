"""Storage layer: format round trip, validation, bad inputs, real datasets, synthetic generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from gnnsys import DatasetError, load_dataset, save_dataset, validate_dataset
from gnnsys.data import build_csc, synthetic
from gnnsys.data.format import float32_to_bfloat16_bits


def _toy(tmp_path: Path, **kw):
    rng = np.random.default_rng(0)
    n = 30
    s, d = rng.integers(0, n, 120), rng.integers(0, n, 120)
    g = build_csc(s, d, n, symmetrize=True, drop_duplicates=True)
    args = dict(name="toy", task="node", graph=g, features=rng.standard_normal((n, 5)).astype(np.float32),
                labels=rng.integers(0, 3, n), num_classes=3,
                splits={"train": np.arange(10), "valid": np.arange(10, 20), "test": np.arange(20, 30)})
    args.update(kw)
    return save_dataset(tmp_path / "toy", **args)


# ---------------------------------------------------------------------------------------------
# CSC construction


@pytest.mark.parametrize("sym,loops,dedup", [(False, False, False), (True, True, True), (True, False, True),
                                             (False, True, True)])
def test_build_csc_matches_scipy(sym, loops, dedup):
    rng = np.random.default_rng(1)
    n, m = 200, 3000
    s, d = rng.integers(0, n, m), rng.integers(0, n, m)
    g = build_csc(s, d, n, symmetrize=sym, drop_self_loops=loops, drop_duplicates=dedup)
    ss, dd = s, d
    if loops:
        keep = ss != dd
        ss, dd = ss[keep], dd[keep]
    if sym:
        off = ss != dd
        ss, dd = np.concatenate([ss, dd[off]]), np.concatenate([dd, ss[off]])
    ref = sp.csc_matrix((np.ones(ss.size), (ss, dd)), shape=(n, n))  # column = destination
    if dedup:
        ref.data[:] = 1
    ref.sort_indices()
    if dedup:
        assert np.array_equal(g.indptr, ref.indptr)
        assert np.array_equal(g.indices, ref.indices)
    else:  # duplicates kept: compare multiplicities
        counts = sp.csc_matrix((np.ones(g.indices.size), g.indices, g.indptr), shape=(n, n))
        assert (counts != ref).nnz == 0
    assert g.indices.dtype == np.int32 and g.indptr.dtype == np.int64
    # every neighbour list is sorted
    for v in range(n):
        seg = g.indices[g.indptr[v]:g.indptr[v + 1]]
        assert np.all(np.diff(seg) >= 0)


def test_build_csc_edge_ids_map_back():
    rng = np.random.default_rng(2)
    s, d = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    g = build_csc(s, d, 50)
    dst_of_entry = np.repeat(np.arange(50), np.diff(g.indptr))
    assert np.array_equal(s[g.edge_ids], g.indices)
    assert np.array_equal(d[g.edge_ids], dst_of_entry)


def test_build_csc_rejects_bad_ids():
    with pytest.raises(DatasetError, match="out of range"):
        build_csc(np.array([0, 5]), np.array([1, 2]), num_nodes=5)
    with pytest.raises(DatasetError, match="negative"):
        build_csc(np.array([0, -1]), np.array([1, 2]), num_nodes=5)
    with pytest.raises(DatasetError, match="integers"):
        build_csc(np.array([0.0, 1.0]), np.array([1, 2]), num_nodes=5)
    with pytest.raises(DatasetError, match="differ in length"):
        build_csc(np.array([0, 1, 2]), np.array([1, 2]), num_nodes=5)


def test_build_csc_empty_graph():
    g = build_csc(np.empty(0, np.int64), np.empty(0, np.int64), num_nodes=4)
    assert g.indptr.tolist() == [0, 0, 0, 0, 0] and g.indices.size == 0


# ---------------------------------------------------------------------------------------------
# Round trip and validation


def test_round_trip_memory_maps(tmp_path):
    ds = _toy(tmp_path)
    again = load_dataset(ds.path)
    for name in ("indptr", "indices", "features", "labels"):
        arr = getattr(again, name)
        assert isinstance(arr, np.memmap), name  # opening copies nothing
        assert np.array_equal(arr, getattr(ds, name))
    assert again.meta["num_nodes"] == 30 and again.num_classes == 3
    assert sorted(again.splits) == ["test", "train", "valid"]
    meta = json.loads((ds.path / "meta.json").read_text())
    assert meta["format_version"] == 1 and "sha256" in meta["files"]["graph/indices.npy"]
    # no temp folders left (only the writer lock file, see gnnsys.data.atomic)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [f".{ds.path.name}.lock"]


def test_round_trip_feature_dtypes(tmp_path):
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    h = _toy(tmp_path / "a", features=x, feature_dtype="float16")
    assert h.features.dtype == np.float16 and h.feature_dtype == "float16"
    b = _toy(tmp_path / "b", features=x, feature_dtype="bfloat16")
    assert b.features.dtype == np.uint16 and b.feature_dtype == "bfloat16"
    import torch

    back = torch.from_numpy(np.array(b.features)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(back, torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    assert np.array_equal(float32_to_bfloat16_bits(x), torch.from_numpy(x).to(torch.bfloat16).view(torch.uint16).numpy())


def test_overwrite_is_refused_then_atomic(tmp_path):
    ds = _toy(tmp_path)
    with pytest.raises(DatasetError, match="already exists"):
        _toy(tmp_path)
    ds2 = _toy(tmp_path, overwrite=True, name="toy2")
    assert ds2.name == "toy2" and load_dataset(ds.path).name == "toy2"


def _corrupt_and_expect(ds, mutate, match):
    mutate(ds.path)
    with pytest.raises(DatasetError, match=match):
        load_dataset(ds.path, validate="full")


def _rewrite(path: Path, rel: str, arr: np.ndarray, update_meta: bool = True):
    np.save(path / rel, arr)
    if update_meta:  # keep sizes consistent so the content check is what fires
        meta = json.loads((path / "meta.json").read_text())
        meta["files"][rel] = {"bytes": (path / rel).stat().st_size}
        (path / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing_meta", "meta.json: missing"),
        ("corrupt_meta", "corrupt JSON"),
        ("missing_file", "indices.npy: missing file"),
        ("truncated", "indices.npy: size"),
        ("corrupt_header", "corrupt .npy"),
        ("wrong_dtype", "dtype float64 but expected int32/int64"),
        ("shape_mismatch", "features.npy: shape"),
        ("non_monotone", "not monotone"),
        ("bad_end", "ends at"),
        ("index_out_of_range", "indices.npy: node id .* out of range"),
        ("split_out_of_range", "split/test.npy: node id 999 out of range"),
        ("split_overlap", "overlaps another split"),
        ("label_out_of_range", "labels span"),
        ("modified_after_prepare", "SHA-256 differs"),
        ("bad_version", "format_version"),
    ],
)
def test_bad_dataset_files(tmp_path, case, match):
    ds = _toy(tmp_path)
    p = ds.path
    n = ds.num_nodes

    def mutate(p):
        if case == "missing_meta":
            (p / "meta.json").unlink()
        elif case == "corrupt_meta":
            (p / "meta.json").write_text("{not json")
        elif case == "missing_file":
            (p / "graph/indices.npy").unlink()
        elif case == "truncated":
            data = (p / "graph/indices.npy").read_bytes()
            (p / "graph/indices.npy").write_bytes(data[: len(data) // 2])
        elif case == "corrupt_header":
            f = p / "graph/indices.npy"
            data = bytearray(f.read_bytes())
            data[:6] = b"garbag"
            f.write_bytes(bytes(data))
        elif case == "wrong_dtype":
            _rewrite(p, "graph/indices.npy", np.asarray(ds.indices, dtype=np.float64))
        elif case == "shape_mismatch":
            _rewrite(p, "features.npy", np.zeros((n, 7), np.float32))
        elif case == "non_monotone":
            ip = np.array(ds.indptr)
            ip[5], ip[6] = ip[6] + 1, ip[5]
            _rewrite(p, "graph/indptr.npy", ip)
        elif case == "bad_end":
            ip = np.array(ds.indptr)
            ip[-1] -= 1
            _rewrite(p, "graph/indptr.npy", ip)
        elif case == "index_out_of_range":
            ix = np.array(ds.indices)
            ix[3] = n + 4
            _rewrite(p, "graph/indices.npy", ix)
        elif case == "split_out_of_range":
            _rewrite(p, "split/test.npy", np.array([20, 999], np.int64))
        elif case == "split_overlap":
            _rewrite(p, "split/test.npy", np.array([0, 21], np.int64))
        elif case == "label_out_of_range":
            lab = np.array(ds.labels)
            lab[0] = 7
            _rewrite(p, "labels.npy", lab)
        elif case == "modified_after_prepare":
            lab = np.array(ds.labels)
            lab[0] = (lab[0] + 1) % 3
            np.save(p / "labels.npy", lab)  # same size, different bytes
        elif case == "bad_version":
            meta = json.loads((p / "meta.json").read_text())
            meta["format_version"] = 99
            (p / "meta.json").write_text(json.dumps(meta))

    _corrupt_and_expect(ds, mutate, match)


def test_error_names_the_file(tmp_path):
    ds = _toy(tmp_path)
    (ds.path / "labels.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(DatasetError) as e:
        load_dataset(ds.path)
    assert "labels.npy" in str(e.value)


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# Real datasets


def test_cora_public_split(cora):
    assert (cora.num_nodes, cora.num_edges, cora.num_classes) == (2708, 10556, 7)
    assert cora.features.shape == (2708, 1433)
    assert [cora.splits[k].size for k in ("train", "valid", "test")] == [140, 500, 1000]
    validate_dataset(cora, checksums=True)


def test_citeseer_public_split(citeseer):
    assert (citeseer.num_nodes, citeseer.num_edges, citeseer.num_classes) == (3327, 9104, 6)
    assert citeseer.features.shape == (3327, 3703)
    assert [citeseer.splits[k].size for k in ("train", "valid", "test")] == [120, 500, 1000]


def test_ogbl_ddi_without_train_pt(ddi):
    assert ddi.num_nodes == 4267 and ddi.task == "link"
    assert ddi.splits["train_pos"].shape == (1067911, 2)
    assert ddi.splits["valid_pos"].shape == (133489, 2) and ddi.splits["valid_neg"].shape == (101882, 2)
    assert ddi.splits["test_pos"].shape == (133489, 2) and ddi.splits["test_neg"].shape == (95599, 2)
    assert ddi.num_edges == 2 * 1067911  # symmetrised training graph
    assert ddi.features is None


def test_planetoid_missing_raw_files(tmp_path):
    from gnnsys.data.sources import from_planetoid

    with pytest.raises(DatasetError, match="Planetoid raw files missing"):
        from_planetoid("Cora", tmp_path, tmp_path / "out")
    with pytest.raises(DatasetError, match="unknown Planetoid"):
        from_planetoid("Corra", tmp_path, tmp_path / "out")


def test_unknown_names(tmp_path):
    from gnnsys.data.registry import resolve
    from gnnsys.data.sources import from_ogb

    with pytest.raises(DatasetError, match="unknown dataset"):
        resolve("no-such-dataset", home=tmp_path)
    with pytest.raises(DatasetError, match="unknown OGB dataset"):
        from_ogb("ogbn-nonexistent", tmp_path, tmp_path / "out")


def _save_ogb_layout(tmp_path: Path, name: str):
    """Write a small dataset with OGB's own writer (ogb.io.DatasetSaver) and return its meta dict."""
    from ogb.io import DatasetSaver

    rng = np.random.default_rng(0)
    n = 60
    ei = rng.integers(0, n, (2, 240)).astype(np.int64)
    saver = DatasetSaver(name, is_hetero=False, version=1, root=str(tmp_path / "submission"))
    node = name.startswith("ogbn-")
    feat = rng.random((n, 8)).astype(np.float32) if node else None
    saver.save_graph_list([{"edge_index": ei, "num_nodes": n, "node_feat": feat, "edge_feat": None}])
    if node:
        saver.save_target_labels(rng.integers(0, 3, (n, 1)))
        saver.save_split({"train": np.arange(30), "valid": np.arange(30, 45), "test": np.arange(45, 60)},
                         split_name="random")
    else:
        e = ei.T
        saver.save_split({"train": {"edge": e[:200]}, "valid": {"edge": e[200:220], "edge_neg": e[:20]},
                          "test": {"edge": e[220:], "edge_neg": e[20:40]}}, split_name="random")
    (tmp_path / "mapping").mkdir()
    (tmp_path / "mapping" / "README.md").write_text("toy mapping")
    saver.copy_mapping_dir(str(tmp_path / "mapping"))
    if node:
        saver.save_task_info(task_type="multiclass classification", eval_metric="acc", num_classes=3)
    else:
        saver.save_task_info(task_type="link prediction", eval_metric="hits@20")
    return saver.get_meta_dict(), ei, feat


@pytest.mark.parametrize("name", ["ogbn-toy", "ogbl-toy"])
def test_ogb_layout_through_ogb_reader(tmp_path, name):
    from ogb.linkproppred import LinkPropPredDataset
    from ogb.nodeproppred import NodePropPredDataset

    from gnnsys.data.sources import from_ogb_reader, ogb_legacy_load

    meta, ei, feat = _save_ogb_layout(tmp_path, name)
    with ogb_legacy_load():
        reader = (NodePropPredDataset if name.startswith("ogbn-") else LinkPropPredDataset)(name, meta_dict=meta)
    ds = from_ogb_reader(reader, tmp_path / "out")
    assert ds.num_nodes == 60
    ref = build_csc(ei[0] if name.startswith("ogbn-") else ei[0, :200],
                    ei[1] if name.startswith("ogbn-") else ei[1, :200], 60,
                    symmetrize=True, drop_duplicates=True)
    assert np.array_equal(ds.indptr, ref.indptr) and np.array_equal(ds.indices, ref.indices)
    if name.startswith("ogbn-"):
        assert np.array_equal(ds.features, feat) and ds.splits["train"].size == 30
    else:
        assert ds.splits["train_pos"].shape == (200, 2) and ds.splits["test_neg"].shape == (20, 2)


def test_ogb_incomplete_folder_is_refused_not_prompted(tmp_path):
    from gnnsys.data.sources import from_ogb

    (tmp_path / "ogbn_arxiv").mkdir()  # exists, no RELEASE_v1.txt: ogb itself would call input()
    with pytest.raises(DatasetError, match="RELEASE_v1.txt"):
        from_ogb("ogbn-arxiv", tmp_path, tmp_path / "out")


def test_from_pyg_with_split_columns(tmp_path):
    import torch
    from torch_geometric.data import Data

    n = 20
    ei = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    masks = torch.zeros(n, 3, dtype=torch.bool)
    masks[:5, 0] = masks[5:10, 1] = masks[10:15, 2] = True
    data = Data(x=torch.randn(n, 4), y=torch.arange(n) % 3, edge_index=ei, train_mask=masks,
                val_mask=torch.roll(masks, 1, 1), test_mask=torch.roll(masks, 2, 1))
    from gnnsys.data.sources import from_pyg

    ds = from_pyg(data, tmp_path / "a", name="mine", split_column=1, directed=True)
    assert ds.splits["train"].tolist() == list(range(5, 10))
    assert ds.splits["valid"].tolist() == list(range(0, 5))
    assert ds.num_edges == 5 and ds.meta["directed"] is True
    # the default, as prepare --edges: undirected (both directions stored), recorded in meta.json
    und = from_pyg(data, tmp_path / "u", name="mine", split_column=1)
    assert und.num_edges == 10 and und.meta["directed"] is False and und.meta["symmetrized"] is True
    with pytest.raises(DatasetError, match="split_column 3 out of range"):
        from_pyg(data, tmp_path / "b", split_column=3)


def test_from_edge_list_csv_and_npy(tmp_path):
    from gnnsys.data.sources import from_edge_list

    (tmp_path / "e.csv").write_text("0,1\n1,2\n2,3\n3,0\n")
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    np.save(tmp_path / "tr.npy", np.array([0, 1]))
    np.save(tmp_path / "te.npy", np.array([2, 3]))
    ds = from_edge_list(tmp_path / "e.csv", tmp_path / "ds", labels=tmp_path / "y.npy",
                        splits={"train": tmp_path / "tr.npy", "test": tmp_path / "te.npy"})
    assert ds.num_nodes == 4 and ds.num_edges == 8 and ds.task == "node"
    np.save(tmp_path / "e.npy", np.array([[0, 1], [1, 2]]))
    ds2 = from_edge_list(tmp_path / "e.npy", tmp_path / "ds2")
    assert ds2.task == "link" and ds2.splits["train_pos"].shape == (2, 2)
    (tmp_path / "bad.csv").write_text("0,1\n1,x\n")
    with pytest.raises(DatasetError, match="bad.csv"):
        from_edge_list(tmp_path / "bad.csv", tmp_path / "ds3")


# ---------------------------------------------------------------------------------------------
# Synthetic generator


def test_synthetic_statistics(tmp_path):
    ds = synthetic.generate("small", tmp_path / "s", seed=3)
    p = synthetic.PRESETS["small"]
    assert ds.num_nodes == p.num_nodes and ds.features.shape == (p.num_nodes, p.num_features)
    deg = np.diff(ds.indptr)
    # heavy tail: the maximum is far above the median and the top 1% hold a large share of edges
    assert deg.max() > 20 * np.median(deg)
    top = np.sort(deg)[::-1][: deg.size // 100].sum() / deg.sum()
    assert top > 0.08
    dst = np.repeat(np.arange(ds.num_nodes), deg)
    homophily = (ds.labels[ds.indices] == ds.labels[dst]).mean()
    assert abs(homophily - p.homophily) < 0.05
    # undirected, no self loops, no duplicates
    a = sp.csc_matrix((np.ones(ds.num_edges), ds.indices, ds.indptr), shape=(ds.num_nodes,) * 2)
    assert (a != a.T).nnz == 0 and a.diagonal().sum() == 0 and a.max() == 1
    # features carry the class: class means differ
    means = np.stack([ds.features[ds.labels == c].mean(0) for c in range(p.num_classes)])
    assert np.linalg.norm(means[0] - means[1]) > 0.3
    sizes = [ds.splits[k].size for k in ("train", "valid", "test")]
    assert abs(sizes[0] - 0.3 * p.num_nodes) <= 1
    validate_dataset(ds, checksums=True)


def test_synthetic_is_deterministic(tmp_path):
    a = synthetic.generate("tiny", tmp_path / "a", seed=7)
    b = synthetic.generate("tiny", tmp_path / "b", seed=7)
    c = synthetic.generate("tiny", tmp_path / "c", seed=8)
    ma = json.loads((a.path / "meta.json").read_text())["files"]
    mb = json.loads((b.path / "meta.json").read_text())["files"]
    mc = json.loads((c.path / "meta.json").read_text())["files"]
    assert ma == mb  # byte-identical files (sha256 of every file)
    assert ma["graph/indices.npy"] != mc["graph/indices.npy"]


def test_synthetic_link_preset_holds_out_edges(link_tiny):
    ds = link_tiny
    assert ds.task == "link"
    key = lambda e: set(map(tuple, np.sort(np.asarray(e), axis=1).tolist()))  # noqa: E731
    train = key(ds.splits["train_pos"])
    held = key(ds.splits["valid_pos"]) | key(ds.splits["test_pos"])
    assert not (train & held)
    neg = key(ds.splits["valid_neg"]) | key(ds.splits["test_neg"])
    assert not (neg & (train | held))
    dst = np.repeat(np.arange(ds.num_nodes), np.diff(ds.indptr))
    graph = key(np.stack([ds.indices, dst], 1))
    assert not (graph & held)  # held-out positives are not in the message-passing graph


def test_synthetic_scale_and_unknown_preset(tmp_path):
    from gnnsys import ConfigError

    p = synthetic.get_preset("papers100m-like", scale=1e-4)
    assert p.num_nodes == round(111_059_956 * 1e-4) and p.num_features == 128 and p.num_classes == 172
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        synthetic.get_preset("nope")
    with pytest.raises(ConfigError, match="scale"):
        synthetic.get_preset("tiny", scale=-1)


# ---------------------------------------------------------------------------------------------
# CLI


def _cli(*args, env_home: Path):
    env = dict(os.environ, GNNSYS_HOME=str(env_home))
    return subprocess.run([sys.executable, "-m", "gnnsys", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_prepare_and_info(tmp_path):
    r = _cli("prepare", "tiny", "--out", str(tmp_path / "t"), env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["num_nodes"] == 1000
    r = _cli("info", str(tmp_path / "t"), "--validate", env_home=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["valid"] is True
    r = _cli("info", "not-a-dataset", env_home=tmp_path)
    assert r.returncode == 2 and "unknown dataset" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "t" / "labels.npy").write_bytes(b"junk")
    r = _cli("info", str(tmp_path / "t"), env_home=tmp_path)
    assert r.returncode == 2 and "labels.npy" in r.stderr and "Traceback" not in r.stderr
