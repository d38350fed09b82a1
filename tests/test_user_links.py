"""Issue 19 (link data): a user's edge list or PyG data with link splits.

Each finding is a test that fails on the code before the fix: valid/test positives leaked into
the message-passing graph, flat negatives were reshaped into wrong pairs, ``from_pyg`` dropped
link splits (always ``task=node``), labels and link splits could not live in one dataset.
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


def _edges(seed: int = 0) -> np.ndarray:
    """Unique undirected edges (each once, u < v) of a 60-node graph: a ring plus chords."""
    rng = np.random.default_rng(seed)
    ring = np.stack([np.arange(N), (np.arange(N) + 1) % N], 1)
    chords = rng.integers(0, N, (200, 2))
    e = np.concatenate([ring, chords])
    e = e[e[:, 0] != e[:, 1]]
    e = np.unique(np.sort(e, 1), axis=0)
    return e[rng.permutation(e.shape[0])]


def _graph_pairs(ds) -> set[tuple[int, int]]:
    """Every (src, dst) edge of the stored CSC graph."""
    indptr, indices = np.asarray(ds.indptr), np.asarray(ds.indices)
    dst = np.repeat(np.arange(ds.num_nodes), np.diff(indptr))
    return set(zip(indices.tolist(), dst.tolist()))


@pytest.fixture()
def link_files(tmp_path):
    e = _edges()
    with open(tmp_path / "edges.csv", "w") as f:
        f.write("src,dst\n")  # a header row: detected and skipped
        f.writelines(f"{u},{v}\n" for u, v in e)
    np.save(tmp_path / "valid.npy", e[:15])                       # [P, 2] pairs
    np.save(tmp_path / "test_rows.npy", np.arange(15, 30))        # rows of the edge list
    rng = np.random.default_rng(1)
    np.save(tmp_path / "valid_neg.npy", rng.integers(0, N, (15, 7)))  # per-source: [P, K]
    np.save(tmp_path / "test_neg.npy", rng.integers(0, N, (15, 7)))
    np.save(tmp_path / "valid_neg_pairs.npy", rng.integers(0, N, (40, 2)))  # [Q, 2] pairs
    return tmp_path, e


def _prepare_with_eval_edges(d, capsys):
    """``gnnsys prepare`` of ``link_files`` with valid pairs, test rows and per-source negatives."""
    return _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                 "--split-edges", f"valid={d / 'valid.npy'}",
                 "--split-edges", f"test={d / 'test_rows.npy'}",
                 "--split-edges", f"valid_neg={d / 'valid_neg.npy'}",
                 "--split-edges", f"test_neg={d / 'test_neg.npy'}"], capsys)


def test_eval_edges_are_removed_from_the_message_passing_graph(link_files, capsys):
    """Before: valid/test positives stayed in the graph (Hits@50 0.975 from the leak)."""
    d, e = link_files
    code, out, err = _prepare_with_eval_edges(d, capsys)
    assert code == 0, err
    ds = load_dataset(d / "ds")
    held_out = {tuple(p) for p in e[:30].tolist()}
    train = [p for p in e.tolist() if tuple(p) not in held_out]
    # the exact reference: the training edges in both directions, nothing else
    assert _graph_pairs(ds) == {(u, v) for u, v in train} | {(v, u) for u, v in train}
    assert ds.splits["train_pos"].tolist() == train
    assert ds.splits["valid_pos"].tolist() == e[:15].tolist()
    assert ds.splits["test_pos"].tolist() == e[15:30].tolist()
    assert ds.splits["valid_neg"].shape == (15, 7) and ds.splits["test_neg"].shape == (15, 7)
    assert ds.meta["neg_layout"] == "per_source"
    assert ds.meta["eval_edges_removed"] == 30 and ds.meta["eval_edges_in_graph"] is False
    summary = json.loads(out)
    assert summary["directed"] is False and summary["tasks"] == ["link"]


def test_keep_eval_edges_keeps_them_with_a_warning(link_files, capsys):
    d, e = link_files
    code, out, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                           "--split-edges", f"valid={d / 'valid.npy'}", "--keep-eval-edges",
                           "--split-edges", f"valid_neg={d / 'valid_neg_pairs.npy'}"], capsys)
    assert code == 0, err
    assert "gnnsys: warning: --keep-eval-edges: 15 valid/test positive edges stay" in err
    ds = load_dataset(d / "ds")
    assert _graph_pairs(ds) == {(u, v) for u, v in e.tolist()} | {(v, u) for u, v in e.tolist()}
    assert json.loads(out)["eval_edges_in_graph"] is True
    assert ds.meta["neg_layout"] == "pairs" and ds.splits["valid_neg"].shape == (40, 2)


def test_flat_negatives_are_refused_not_reshaped(link_files, capsys):
    """Before: a flat file of per-source tails was reshaped into [P, 2] pairs silently."""
    d, _ = link_files
    np.save(d / "flat.npy", np.arange(30))
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                         "--split-edges", f"valid={d / 'valid.npy'}",
                         "--split-edges", f"valid_neg={d / 'flat.npy'}"], capsys)
    _one_line_error(code, err, "flat.npy", "shape (30,)", "P = 15", "never reshaped")
    assert not (d / "ds").exists()
    # over an existing dataset with --overwrite: refused before anything is written
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds"], capsys)
    assert code == 0, err
    before = file_digests(d / "ds")
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds", "--overwrite",
                         "--split-edges", f"valid={d / 'valid.npy'}",
                         "--split-edges", f"valid_neg={d / 'flat.npy'}"], capsys)
    _one_line_error(code, err, "never reshaped")
    assert file_digests(d / "ds") == before


def test_per_source_negatives_need_one_row_per_positive(link_files, capsys):
    d, _ = link_files
    np.save(d / "tails.npy", np.zeros((14, 7), np.int64))
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                         "--split-edges", f"valid={d / 'valid.npy'}",
                         "--split-edges", f"valid_neg={d / 'tails.npy'}"], capsys)
    _one_line_error(code, err, "tails.npy", "14 rows of per-source negatives but valid has 15 positives")
    assert not (d / "ds").exists()
    # [P, 2] is pairs unless told otherwise
    np.save(d / "two.npy", np.ones((15, 2), np.int64))
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds2", "--neg-layout",
                         "per_source", "--split-edges", f"valid={d / 'valid.npy'}",
                         "--split-edges", f"valid_neg={d / 'two.npy'}"], capsys)
    assert code == 0, err
    assert load_dataset(d / "ds2").meta["neg_layout"] == "per_source"


def test_overlapping_edge_splits_are_refused(link_files, capsys):
    d, e = link_files
    np.save(d / "test.npy", e[10:20][:, ::-1])  # 5 valid edges again, reversed
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                         "--split-edges", f"valid={d / 'valid.npy'}",
                         "--split-edges", f"test={d / 'test.npy'}"], capsys)
    _one_line_error(code, err, "edge splits valid and test share 5 edges", "either direction")
    assert not (d / "ds").exists()


def test_unknown_edge_split_name_lists_the_known_ones(link_files, capsys):
    d, _ = link_files
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                         "--split-edges", f"validation={d / 'valid.npy'}"], capsys)
    _one_line_error(code, err, "unknown edge split 'validation'", "valid_neg")


def test_edge_list_with_link_splits_trains_end_to_end(link_files, capsys, tmp_path):
    """End to end: CSV edge list (with header) + link splits + negatives -> train --task link."""
    d, _ = link_files
    code, _, err = _prepare_with_eval_edges(d, capsys)
    assert code == 0, err
    code, _, err = _cli(["train", "--dataset", d / "ds", "--task", "link", "--epochs", "1",
                         "--fanouts", "5,5", "--hidden", "16", "--batch-size", "64", "--metric", "mrr",
                         "--out", tmp_path / "run", "--no-progress"], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["task"] == "link" and s["metric"] == "mrr" and 0 < s["best_valid"] <= 1


# ---------------------------------------------------------------------------------------------
# PyG inputs


def _pyg_graph():
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    e = torch.from_numpy(_edges()).T
    g = torch.Generator().manual_seed(0)
    return Data(x=torch.randn(N, 8, generator=g), y=torch.arange(N) % 3,
                edge_index=to_undirected(e), num_nodes=N)


def test_from_pyg_keeps_random_link_split(tmp_path):
    """Before: from_pyg stored RandomLinkSplit output as a node task without its link splits."""
    import torch_geometric.transforms as T

    from gnnsys.data.sources import from_pyg

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    train, val, test = T.RandomLinkSplit(num_val=0.1, num_test=0.2, is_undirected=True)(_pyg_graph())
    ds = from_pyg((train, val, test), tmp_path / "ds", name="rls")
    assert ds.task == "link" and ds.meta["source"]["link_split"] == "RandomLinkSplit"
    pos = train.edge_label_index[:, train.edge_label == 1].T.numpy()
    assert ds.splits["train_pos"].tolist() == pos.tolist()
    for split, part in (("valid", val), ("test", test)):
        lab = part.edge_label
        assert ds.splits[f"{split}_pos"].tolist() == part.edge_label_index[:, lab == 1].T.tolist()
        assert ds.splits[f"{split}_neg"].tolist() == part.edge_label_index[:, lab == 0].T.tolist()
    # the message-passing graph is RandomLinkSplit's training graph: no valid/test positive in it
    ei = train.edge_index.numpy()
    assert _graph_pairs(ds) == set(zip(ei[0].tolist(), ei[1].tolist()))
    held = {tuple(p) for s in ("valid_pos", "test_pos") for p in ds.splits[s].tolist()}
    assert not held & _graph_pairs(ds)


def test_random_link_split_output_trains_end_to_end(tmp_path, capsys):
    """End to end: RandomLinkSplit output -> from_pyg -> gnnsys train (the dataset's task: link)."""
    import torch
    import torch_geometric.transforms as T

    from gnnsys.data.sources import from_pyg

    torch.manual_seed(0)
    parts = T.RandomLinkSplit(num_val=0.1, num_test=0.2, is_undirected=True)(_pyg_graph())
    from_pyg(parts, tmp_path / "ds", name="rls")
    code, _, err = _cli(["train", "--dataset", tmp_path / "ds", "--epochs", "1", "--fanouts", "5,5",
                         "--hidden", "16", "--batch-size", "64", "--metric", "rocauc",
                         "--out", tmp_path / "run", "--no-progress"], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["task"] == "link" and 0 < s["best_valid"] <= 1 and 0 < s["test_at_best_valid"] <= 1


def test_from_pyg_keeps_ogb_style_edge_splits_and_removes_eval_edges(tmp_path):
    import torch

    from gnnsys.data.sources import from_pyg

    data = _pyg_graph()
    e = torch.from_numpy(_edges())
    split_edge = {"train": {"edge": e[30:]}, "valid": {"edge": e[:15], "edge_neg": torch.ones(20, 2, dtype=torch.int64)},
                  "test": {"edge": e[15:30], "edge_neg": torch.zeros(9, 2, dtype=torch.int64)}}
    ds = from_pyg(data, tmp_path / "ds", name="ogbish", split_edge=split_edge)
    assert ds.tasks == ["link"]  # labels but no node split: a link dataset that keeps its labels
    assert ds.labels is not None
    assert ds.splits["train_pos"].tolist() == e[30:].tolist()
    assert ds.splits["valid_neg"].shape == (20, 2) and ds.splits["test_neg"].shape == (9, 2)
    held = {tuple(p) for p in e[:30].tolist()}
    assert not ({(u, v) for u, v in held} | {(v, u) for u, v in held}) & _graph_pairs(ds)
    assert ds.meta["eval_edges_removed"] == 2 * 30  # data.edge_index held both directions


def test_labels_and_link_splits_in_one_dataset_and_task_picks(link_files, capsys, tmp_path):
    """Before: labels plus link splits conflicted (the dataset was one task only)."""
    from gnnsys.train.build import resolve_task
    from gnnsys.train.config import TrainConfig

    d, _ = link_files
    np.save(d / "y.npy", np.arange(N) % 4)
    np.save(d / "train_ids.npy", np.arange(0, 30))
    np.save(d / "test_ids.npy", np.arange(30, 45))
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                           "--labels", d / "y.npy", "--split", f"train={d / 'train_ids.npy'}",
                           "--split", f"test={d / 'test_ids.npy'}",
                           "--split-edges", f"valid={d / 'valid.npy'}"], capsys)
    assert code == 0, err
    ds = load_dataset(d / "ds")
    assert ds.tasks == ["node", "link"] and ds.task == "link"
    node = ds.select(task="node")
    assert sorted(node.splits) == ["test", "train"] and node.task == "node"
    assert resolve_task(TrainConfig(dataset=str(d / "ds"), task="node"), node) == "node"
    link = ds.select(task="link")
    assert sorted(link.splits) == ["train_pos", "valid_pos"]
    assert resolve_task(TrainConfig(dataset=str(d / "ds")), link) == "link"
    code, _, err = _cli(["train", "--dataset", d / "ds", "--task", "node", "--epochs", "1",
                         "--fanouts", "5,5", "--hidden", "8", "--out", tmp_path / "run", "--no-progress"],
                        capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["task"] == "node"


def test_build_link_splits_refuses_negatives_without_positives():
    from gnnsys.data.edge_splits import build_link_splits

    with pytest.raises(DatasetError, match="test_neg given without test positives"):
        build_link_splits(_edges(), N, {}, {"test": (np.zeros((3, 2), np.int64), "x")}, undirected=True)


def test_node_split_on_an_unlabelled_edge_list_is_not_reshaped_into_pairs(link_files, capsys):
    """Before: without --labels, --split train=FILE was reshaped into [-1, 2] pairs silently."""
    d, _ = link_files
    np.save(d / "ids.npy", np.arange(10))
    code, _, err = _cli(["prepare", "--edges", d / "edges.csv", "--out", d / "ds",
                         "--split", f"train={d / 'ids.npy'}"], capsys)
    _one_line_error(code, err, "node splits ['train'] given without --labels", "--split-edges")
    assert not (d / "ds").exists()
