"""Issue 19, item 6 (and the split vocabulary, the cache's --root): each bad input is one line
``gnnsys: error: ...`` with exit code 2, naming the problem and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gnnsys.cli import main
from gnnsys.data import load_dataset, synthetic
from gnnsys.errors import ConfigError


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("gnnsys: error: "), err
    return err[-1][len("gnnsys: error: "):]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synthetic.generate("tiny", out, seed=3)
    return out


def _train(ds: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(ds), "--out", str(out), "--epochs", "1", "--batch-size", "64",
            "--fanouts", "3,3", "--hidden", "8", "--num-threads", "1", "--no-progress", *extra]


def _edge_dataset(tmp_path: Path, labels: str, train_ids=(0, 1, 2), test_ids=(5, 6)) -> Path:
    e = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4]], dtype=np.int64)
    np.save(tmp_path / "edges.npy", e)
    (tmp_path / "labels.csv").write_text(labels)
    np.save(tmp_path / "train.npy", np.array(train_ids, np.int64))
    np.save(tmp_path / "test.npy", np.array(test_ids, np.int64))
    out = tmp_path / "ds"
    assert main(["prepare", "--edges", str(tmp_path / "edges.npy"), "--labels", str(tmp_path / "labels.csv"),
                 "--split", f"train={tmp_path / 'train.npy'}", "--split", f"test={tmp_path / 'test.npy'}",
                 "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------------ labels


def test_unlabelled_train_node_is_an_error(tmp_path, capsys):
    ds = _edge_dataset(tmp_path, "0\n-1\n0\n1\n0\n1\n0\n1\n")  # node 1 is in train
    capsys.readouterr()
    assert main(_train(ds, tmp_path / "run")) == 2
    assert _err(capsys) == (f"{ds}: 1 of the 3 train nodes are unlabelled (label -1, from -1 or NaN in the "
                            "input), e.g. node 1; a train node needs a label: label it or remove it from the "
                            "train split")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_nan_label_means_unlabelled_and_is_left_out(tmp_path, capsys):
    ds = _edge_dataset(tmp_path, "0\n1\n0\n1\n0\nnan\n0\n1\n")  # node 5 (test) unlabelled
    assert load_dataset(ds).labels.tolist() == [0, 1, 0, 1, 0, -1, 0, 1]
    capsys.readouterr()
    assert main(_train(ds, tmp_path / "run", "--batch-size", "2")) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # one labelled test node (6): test accuracy is 0 or 1, never a fraction of 2
    assert summary["test_at_best_valid"] in (0.0, 1.0) or summary["final"].get("test_acc") in (0.0, 1.0)


def test_fractional_label_is_an_error(tmp_path, capsys):
    e = tmp_path / "e.npy"
    np.save(e, np.array([[0, 1], [1, 2]], np.int64))
    (tmp_path / "y.csv").write_text("0\n1.5\n0\n")
    assert main(["prepare", "--edges", str(e), "--labels", str(tmp_path / "y.csv"), "--out", str(tmp_path / "o")]) == 2
    assert _err(capsys) == (f"{tmp_path / 'y.csv'}: labels must be integers (or NaN / -1 for an unlabelled "
                            "node), got 1.5 at row 1")


# ------------------------------------------------------------------------------------ fanouts


def test_huge_fanout_is_one_line(tiny, tmp_path, capsys):
    assert main(_train(tiny, tmp_path / "ok", "--fanouts", f"{10**9},{10**9}")) == 0  # 10^9: all neighbours
    assert main(_train(tiny, tmp_path / "r", "--fanouts", f"{10**21},3")) == 2
    assert _err(capsys) == (f"--fanouts: fanout {10**21} is larger than the largest fanout 2147483647; use "
                            "-1 for all neighbours")
    from samplers._validate import SamplerInputError, check_fanouts

    assert check_fanouts([10**9, 3]) == (10**9, 3)
    with pytest.raises(SamplerInputError, match="larger than the largest fanout 2147483647"):
        check_fanouts([2**31])


# ------------------------------------------------------------------------------------ --home, info


def test_home_that_is_a_file(tiny, tmp_path, capsys):
    f = tmp_path / "home"
    f.write_text("x")
    assert main(["prepare", "tiny", "--home", str(f)]) == 2
    assert _err(capsys) == f"--home {f}: exists and is not a folder; choose another --home"
    assert main(["train", "--dataset", "tiny", "--home", str(f), "--out", str(tmp_path / "r")]) == 2
    assert _err(capsys) == f"--home {f}: exists and is not a folder; choose another --home"
    assert f.read_text() == "x"


def test_info_never_generates_data(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["info", "products-like", "--home", str(home)]) == 2
    assert _err(capsys) == (f"dataset 'products-like' is not prepared yet (no {home}/datasets/"
                            f"products-like-seed0); run `gnnsys prepare products-like --home {home}` first")
    assert not home.exists() or not any(home.rglob("*.npy"))


# ------------------------------------------------------------------------------------ node count


def test_huge_node_id_among_few_edges_needs_num_nodes(tmp_path, capsys):
    e = tmp_path / "e.csv"
    rows = [(i, i + 1) for i in range(9)] + [(0, 10**8)]
    e.write_text("".join(f"{a},{b}\n" for a, b in rows))
    assert main(["prepare", "--edges", str(e), "--out", str(tmp_path / "o")]) == 2
    assert _err(capsys) == (f"{e}: node id 100000000 among 10 edges makes a graph of 100000001 nodes "
                            "(762.9 MB of graph arrays, mostly isolated nodes); ids must be dense (0..N-1): "
                            "relabel them, or confirm the size with --num-nodes 100000001")
    assert not (tmp_path / "o").exists()
    # confirmed (a smaller case, 2M nodes): written, with the size printed
    e2 = tmp_path / "e2.csv"
    e2.write_text("".join(f"{a},{b}\n" for a, b in rows[:9] + [(0, 2 * 10**6)]))
    assert main(["prepare", "--edges", str(e2), "--out", str(tmp_path / "o2")]) == 2
    capsys.readouterr()
    assert main(["prepare", "--edges", str(e2), "--out", str(tmp_path / "o2"), "--num-nodes", "2000001"]) == 0
    assert "gnnsys: note: writing 2000001 nodes and 10 edges (graph 15.3 MB)" in capsys.readouterr().err
    assert load_dataset(tmp_path / "o2").num_nodes == 2000001
    assert main(["prepare", "--edges", str(e2), "--out", str(tmp_path / "o3"), "--num-nodes", "5"]) == 2
    assert _err(capsys) == f"{e2}: node id 2000000 is not below --num-nodes 5"


# ------------------------------------------------------------------------------------ model options


def test_model_option_values_are_parsed_strictly():
    from gnnsys.models.registry import get_model_spec, resolve_options
    from gnnsys.train.command import _model_option

    spec = get_model_spec("sage")
    for text, want in (("False", False), ("false", False), ("0", False), ("True", True), ("1", True)):
        key, value = _model_option(f"batchnorm={text}")
        assert resolve_options(spec, {key: value})["batchnorm"] is want, text
    assert resolve_options(spec, {"hidden": "32", "dropout": "0.25"}) | {} == {
        **spec.defaults, "hidden": 32, "dropout": 0.25}
    with pytest.raises(ConfigError, match=r"model option batchnorm='maybe' for model 'sage': expected a "
                                          r"boolean \(true/false/1/0\)"):
        resolve_options(spec, {"batchnorm": "maybe"})
    with pytest.raises(ConfigError, match=r"model option hidden=2.5 for model 'sage': expected an integer"):
        resolve_options(spec, {"hidden": 2.5})


def test_model_option_errors_on_the_command_line(tiny, tmp_path, capsys):
    assert main(_train(tiny, tmp_path / "r", "--model-option", "batchnorm=maybe")) == 2
    assert _err(capsys) == "model option batchnorm='maybe' for model 'sage': expected a boolean (true/false/1/0)"
    assert main(_train(tiny, tmp_path / "r", "--model-option", "batchnrom=true")) == 2
    err = _err(capsys)
    assert err.startswith("unknown option(s) for model 'sage': batchnrom (known: ") and "batchnorm" in err, err
    assert main(_train(tiny, tmp_path / "r", "--model-option", "batchnorm=False")) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model_options"]["batchnorm"] is False


# ------------------------------------------------------------------------------------ split names


def test_split_val_is_valid_with_a_note_and_unknown_names_are_errors(tmp_path, capsys):
    e = tmp_path / "e.npy"
    np.save(e, np.array([[0, 1], [1, 2], [2, 3]], np.int64))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1], np.int64))
    np.save(tmp_path / "a.npy", np.array([0, 1], np.int64))
    np.save(tmp_path / "b.npy", np.array([2], np.int64))
    base = ["prepare", "--edges", str(e), "--labels", str(tmp_path / "y.npy"), "--split", f"train={tmp_path / 'a.npy'}"]
    assert main([*base, "--split", f"val={tmp_path / 'b.npy'}", "--out", str(tmp_path / "o")]) == 0
    assert "gnnsys: note: --split: split 'val' is read as 'valid'" in capsys.readouterr().err
    assert sorted(load_dataset(tmp_path / "o").splits) == ["train", "valid"]
    assert main([*base, "--split", f"dev={tmp_path / 'b.npy'}", "--out", str(tmp_path / "o2")]) == 2
    assert _err(capsys) == ("--split: unknown split name 'dev' for a node task; known: train, valid, test "
                            "('val' is accepted for 'valid')")
    # an existing dataset whose split file is named val (written before this check)
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "o", old)
    (old / "split" / "valid.npy").rename(old / "split" / "val.npy")
    meta = json.loads((old / "meta.json").read_text())
    meta["splits"] = ["train", "val"]
    meta["files"]["split/val.npy"] = meta["files"].pop("split/valid.npy")
    (old / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    ds = load_dataset(old)
    assert sorted(ds.splits) == ["train", "valid"] and ds.splits["valid"].tolist() == [2]
    assert "split 'val' is read as 'valid'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ cache and --root


def test_cache_of_prepared_datasets_depends_on_root(planetoid_root, tmp_path, capsys):
    from gnnsys.data.registry import prepared_path, resolve

    home = tmp_path / "home"
    a = tmp_path / "a"
    shutil.copytree(planetoid_root / "Cora", a / "Cora")
    ds = resolve("cora", root=a, home=home)
    assert ds.num_nodes == 2708
    b = tmp_path / "b"  # a second root, without the files: never the first root's data
    b.mkdir()
    assert prepared_path("cora", home, root=a) != prepared_path("cora", home, root=b)
    assert main(["info", "cora", "--root", str(b), "--home", str(home)]) == 2
    assert "is not prepared yet" in _err(capsys)
    assert main(["info", "cora", "--root", str(a), "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["num_nodes"] == 2708


def test_save_dataset_checks_each_split_name_in_its_own_vocabulary(tmp_path):
    """Node splits (train/valid/test) beside link splits (*_pos/*_neg) in one dataset: each name is
    checked against its own vocabulary, whatever the dataset's main task."""
    from gnnsys.data.csc import build_csc
    from gnnsys.data.format import save_dataset
    from gnnsys.errors import DatasetError

    g = build_csc(np.array([0, 1, 2]), np.array([1, 2, 3]), 4, symmetrize=True, drop_duplicates=True)
    pairs = np.array([[0, 1], [1, 2]], np.int64)
    ds = save_dataset(tmp_path / "a", name="a", task="link", graph=g, splits={"train_pos": pairs, "val_pos": pairs[:1]})
    assert sorted(ds.splits) == ["train_pos", "valid_pos"]
    with pytest.raises(DatasetError, match=r"unknown split name 'dev' for a node task"):
        save_dataset(tmp_path / "b", name="b", task="link", graph=g, splits={"train_pos": pairs, "dev": np.arange(2)})
    with pytest.raises(DatasetError, match=r"unknown split name 'train_foo_pos' for a link task"):
        save_dataset(tmp_path / "c", name="c", task="node", graph=g, splits={"train_foo_pos": pairs})
