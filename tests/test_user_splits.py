"""Issue 19 (splits): boolean masks, several split sets (PyG's ``[N, 10]`` masks or a repeated
``--split``), ``--split-index`` and ``--runs`` over the sets, overlapping splits refused.

Each test fails on the code before: masks were read as node ids, ``[N, S]`` masks kept one column,
a repeated ``--split`` kept the last file, overlapping splits were found only after the rename.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error as _one_line_error
from cli_helpers import run_cli as _cli
from file_digests import file_digests

from gnnsys.data import load_dataset
from gnnsys.errors import DatasetError

N = 60


@pytest.fixture()
def graph_files(tmp_path):
    rng = np.random.default_rng(0)
    e = rng.integers(0, N, (240, 2))
    np.save(tmp_path / "e.npy", e[e[:, 0] != e[:, 1]])
    np.save(tmp_path / "x.npy", rng.standard_normal((N, 6)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(N) % 3)
    return tmp_path


def _prepare(d, capsys, *extra):
    return _cli(["prepare", "--edges", d / "e.npy", "--features", d / "x.npy", "--labels", d / "y.npy",
                 "--out", d / "ds", *extra], capsys)


def test_boolean_mask_split_equals_the_id_split(graph_files, capsys):
    """Before: a boolean mask was read as the node ids 0/1."""
    d = graph_files
    mask = np.zeros(N, bool)
    mask[[3, 7, 20]] = True
    np.save(d / "train_mask.npy", mask)
    np.save(d / "test_ids.npy", np.array([1, 2]))
    code, _, err = _prepare(d, capsys, "--split", f"train={d / 'train_mask.npy'}",
                            "--split", f"test={d / 'test_ids.npy'}")
    assert code == 0, err
    ds = load_dataset(d / "ds")
    assert ds.splits["train"].tolist() == [3, 7, 20] and ds.splits["test"].tolist() == [1, 2]


def test_mask_of_wrong_length_is_one_line(graph_files, capsys):
    d = graph_files
    np.save(d / "m.npy", np.ones(N + 1, bool))
    code, _, err = _prepare(d, capsys, "--split", f"train={d / 'm.npy'}")
    _one_line_error(code, err, "m.npy", f"boolean mask of shape ({N + 1},)", f"{N} nodes")
    assert not (d / "ds").exists()


def test_repeated_split_makes_split_sets_and_split_index_picks(graph_files, capsys):
    """Before: a repeated --split kept the last file only."""
    d = graph_files
    for k in range(3):
        np.save(d / f"train{k}.npy", np.arange(10 * k, 10 * k + 10))
    np.save(d / "test.npy", np.arange(50, 60))
    args = [a for k in range(3) for a in ("--split", f"train={d / f'train{k}.npy'}")]
    code, out, err = _prepare(d, capsys, *args, "--split", f"test={d / 'test.npy'}")
    assert code == 0, err
    assert json.loads(out)["split_sets"] == 3
    ds = load_dataset(d / "ds")
    assert ds.num_split_sets == 3
    for k in range(3):
        view = ds.select(split_index=k)
        assert view.splits["train"].tolist() == list(range(10 * k, 10 * k + 10))
        assert view.splits["test"].tolist() == list(range(50, 60))  # given once: shared
    with pytest.raises(DatasetError, match=r"split index 3 out of range: the dataset has 3 split sets \(0\.\.2\)"):
        ds.select(split_index=3)
    code, out, err = _cli(["info", d / "ds", "--validate"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["valid"] is True and info["split_sets"] == 3 and info["tasks"] == ["node"]


def test_split_index_out_of_range_on_train_is_one_line(graph_files, capsys, tmp_path):
    d = graph_files
    np.save(d / "tr.npy", np.arange(10))
    code, _, err = _prepare(d, capsys, "--split", f"train={d / 'tr.npy'}")
    assert code == 0, err
    code, _, err = _cli(["train", "--dataset", d / "ds", "--split-index", "2", "--epochs", "1",
                         "--out", tmp_path / "run", "--no-progress"], capsys)
    _one_line_error(code, err, "split index 2 out of range", "1 split set")


def test_split_given_a_wrong_number_of_times_is_refused(graph_files, capsys):
    d = graph_files
    for k in range(3):
        np.save(d / f"s{k}.npy", np.array([k]))
    code, _, err = _prepare(d, capsys, "--split", f"train={d / 's0.npy'}", "--split", f"train={d / 's1.npy'}",
                            "--split", f"valid={d / 's2.npy'}", "--split", f"valid={d / 's2.npy'}",
                            "--split", f"valid={d / 's2.npy'}")
    _one_line_error(code, err, "comes in 2 sets but another in 3")


def test_overlapping_node_splits_are_refused_and_nothing_is_lost(graph_files, capsys):
    """Before: the overlap was found after the new dataset had replaced the old one."""
    d = graph_files
    np.save(d / "a.npy", np.arange(0, 10))
    np.save(d / "b.npy", np.arange(5, 15))
    code, _, err = _prepare(d, capsys, "--split", f"train={d / 'a.npy'}")
    assert code == 0, err
    before = file_digests(d / "ds")
    code, _, err = _prepare(d, capsys, "--split", f"train={d / 'a.npy'}", "--split", f"valid={d / 'b.npy'}",
                            "--overwrite")
    _one_line_error(code, err, "node splits 'train'", "a.npy", "'valid'", "b.npy", "share 5 nodes (e.g. node 5)",
                    "must be disjoint")
    assert file_digests(d / "ds") == before


def _pyg_with_ten_masks():
    import torch
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, N, (2, 240), generator=g)
    train = torch.zeros(N, 10, dtype=torch.bool)
    val = torch.zeros(N, 10, dtype=torch.bool)
    test = torch.zeros(N, 10, dtype=torch.bool)
    for k in range(10):
        perm = torch.randperm(N, generator=g)
        train[perm[:30], k], val[perm[30:45], k], test[perm[45:], k] = True, True, True
    return Data(x=torch.randn(N, 6, generator=g), y=torch.arange(N) % 3, edge_index=ei,
                train_mask=train, val_mask=val, test_mask=test)


def test_pyg_ten_masks_are_kept_and_runs_iterate_them(tmp_path, capsys):
    """End to end: a PyG Data with [N, 10] masks -> 10 split sets -> --runs 2 takes sets 0 and 1,
    and run 1 is exactly the single run with --seed 1 --split-index 1."""
    from gnnsys.data.sources import from_pyg

    data = _pyg_with_ten_masks()
    ds = from_pyg(data, tmp_path / "ds", name="tenmasks")
    assert ds.num_split_sets == 10
    for k in range(10):
        view = ds.select(split_index=k)
        for ours, theirs in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
            assert view.splits[ours].tolist() == data[theirs][:, k].nonzero().view(-1).tolist()
    common = ["--dataset", tmp_path / "ds", "--epochs", "1", "--fanouts", "5,5", "--hidden", "8",
              "--batch-size", "16", "--no-progress"]
    code, _, err = _cli(["train", *common, "--runs", "2", "--out", tmp_path / "runs"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert [r["split_index"] for r in summary["per_run"]] == [0, 1]
    assert json.loads((tmp_path / "runs" / "run-1" / "config.json").read_text())["split_index"] == 1
    code, _, err = _cli(["train", *common, "--seed", "1", "--split-index", "1", "--out", tmp_path / "one"],
                        capsys)
    assert code == 0, err
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["per_run"][1]["valid_acc"] == one["best_valid"]
    assert summary["per_run"][1]["test_acc"] == one["test_at_best_valid"]


def test_runs_with_a_split_index_keep_that_set(tmp_path):
    from gnnsys.train.config import TrainConfig
    from gnnsys.train.protocol import run_config

    c = TrainConfig(dataset="x", runs=3)
    assert [run_config(c, k, tmp_path, 10).split_index for k in range(3)] == [0, 1, 2]
    assert [run_config(c, k, tmp_path, 2).split_index for k in range(3)] == [0, 1, 0]
    assert [run_config(c, k, tmp_path, 1).split_index for k in range(3)] == [None] * 3
    fixed = c.replace(split_index=4)
    assert [run_config(fixed, k, tmp_path, 10).split_index for k in range(3)] == [4, 4, 4]


def test_split_index_left_at_default_keeps_old_fingerprints():
    from gnnsys.train.config import TrainConfig

    a = TrainConfig(dataset="x")
    d = a.to_dict()
    d.pop("split_index")
    assert TrainConfig.from_dict(d).fingerprint() == a.fingerprint()
    assert a.replace(split_index=1).fingerprint() != a.fingerprint()


def test_validation_checks_every_split_set_on_disk(tmp_path):
    """A split set written by hand (save_dataset) that overlaps is named by the loader's check."""
    from gnnsys.data import build_csc, save_dataset

    g = build_csc(np.array([0, 1, 2]), np.array([1, 2, 3]), 10, symmetrize=True)
    with pytest.raises(DatasetError, match=r"split/set1/train\.npy: overlaps another split"):
        save_dataset(tmp_path / "ds", name="t", task="node", graph=g, labels=np.zeros(10, np.int64),
                     num_classes=1, splits={"train": np.arange(3), "test": np.arange(5, 8)},
                     split_sets=[{"train": np.arange(4, 7)}])


def test_from_pyg_takes_ogb_style_split_idx(tmp_path):
    import torch

    from gnnsys.data.sources import from_pyg

    data = _pyg_with_ten_masks()
    idx = {"train": torch.arange(0, 20), "valid": torch.arange(20, 30), "test": torch.arange(30, 60)}
    ds = from_pyg(data, tmp_path / "ds", split_idx=idx)
    assert ds.num_split_sets == 1
    assert {k: v.tolist() for k, v in ds.splits.items()} == {k: v.tolist() for k, v in idx.items()}
    with pytest.raises(DatasetError, match="share 5 nodes"):
        from_pyg(data, tmp_path / "bad", split_idx={"train": torch.arange(0, 20), "test": torch.arange(15, 30)})
