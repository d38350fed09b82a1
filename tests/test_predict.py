"""``gnnsys predict``, ``gnnsys embed`` and ``gnnsys.load_run``: outputs equal the in-process
model's (best weights) exactly; bad inputs end with one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gnnsys
from gnnsys.cli import main
from gnnsys.data import save_dataset
from gnnsys.train import TrainConfig, Trainer

COMMON = dict(epochs=3, batch_size=64, fanouts=[5, 5], lr=0.02, model_options={"hidden": 16},
              progress=False, num_threads=1, prefetch=1)


def _trained(ds, out: Path, **kw) -> Trainer:
    """A finished run whose model holds best.pt's weights."""
    t = Trainer(TrainConfig(dataset=str(ds.path), out=str(out), **{**COMMON, **kw}))
    t.fit()
    t.model.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    t.model.eval()
    return t


@pytest.fixture(scope="module")
def node_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "node"
    return out, _trained(tiny, out)


@pytest.fixture(scope="module")
def link_run(link_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "link"
    return out, _trained(link_tiny, out, batch_size=512)


def _cli_npy(args: list[str], capsys) -> np.ndarray:
    assert main(args) == 0, capsys.readouterr().err
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return np.load(info["out"], allow_pickle=False)


def test_predict_node_split_and_ids_equal_the_in_process_model(node_run, tmp_path: Path, capsys) -> None:
    out, t = node_run
    with torch.no_grad():
        probs = torch.softmax(t.parts.full_outputs(), dim=-1).numpy()
    test = np.asarray(t.dataset.splits["test"])
    got = _cli_npy(["predict", "--run", str(out), "--split", "test", "--out", str(tmp_path / "p.npy")], capsys)
    assert got.dtype == np.float32 and np.array_equal(got, probs[test])
    ids = np.array([5, 0, 999, 5], dtype=np.int64)
    np.save(tmp_path / "ids.npy", ids)
    (tmp_path / "ids.txt").write_text("5\n0\n999\n5\n")
    for f in ("ids.npy", "ids.txt"):
        got = _cli_npy(["predict", "--run", str(out), "--nodes", str(tmp_path / f), "--out", str(tmp_path / "q.npy")],
                       capsys)
        assert np.array_equal(got, probs[ids])
    got = _cli_npy(["predict", "--run", str(out), "--out", str(tmp_path / "all.npy")], capsys)
    assert np.array_equal(got, probs)


def test_embed_and_load_run_equal_the_in_process_model(node_run, link_run, tmp_path: Path, capsys) -> None:
    for out, t in (node_run, link_run):
        with torch.no_grad():
            want = t.parts.full_outputs().numpy()
        got = _cli_npy(["embed", "--run", str(out), "--out", str(tmp_path / "e.npy")], capsys)
        assert got.shape == (t.dataset.num_nodes, want.shape[1]) and np.array_equal(got, want)
        rng = torch.get_rng_state()
        run = gnnsys.load_run(out)
        assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is left alone
        assert not run.model.training and run.config == t.config.replace(progress=False)
        assert run.dataset.path == t.dataset.path
        best = torch.load(out / "best.pt", weights_only=True)
        state = run.model.state_dict()
        assert all(torch.equal(state[k], best["model"][k]) for k in state)
        assert run.best["epoch"] == best["epoch"] and np.array_equal(run.embeddings(), want)


def test_predict_pairs_equal_the_in_process_decoder(link_run, tmp_path: Path, capsys) -> None:
    out, t = link_run
    with torch.no_grad():
        h = t.parts.full_outputs()
    from gnnsys.train import evaluate as ev

    for split in ("valid_pos", "test_neg"):
        pairs = np.asarray(t.dataset.splits[split])
        want = torch.sigmoid(ev.score_pairs(t.model, h, pairs[:, 0], pairs[:, 1], t.device)).numpy()
        got = _cli_npy(["predict", "--run", str(out), "--split", split, "--out", str(tmp_path / "s.npy")], capsys)
        assert np.array_equal(got, want)
    pairs = np.array([[0, 1], [998, 3], [7, 7]], dtype=np.int64)
    (tmp_path / "pairs.csv").write_text("".join(f"{a},{b}\n" for a, b in pairs))
    np.save(tmp_path / "pairs.npy", pairs)
    want = torch.sigmoid(ev.score_pairs(t.model, h, pairs[:, 0], pairs[:, 1], t.device)).numpy()
    for f in ("pairs.csv", "pairs.npy"):
        got = _cli_npy(["predict", "--run", str(out), "--pairs", str(tmp_path / f), "--out", str(tmp_path / "t.npy")],
                       capsys)
        assert np.array_equal(got, want)


def test_sampled_evaluation_runs_predict_as_they_evaluated(tiny, tmp_path: Path, capsys) -> None:
    """A run evaluated by its sampled loader: predict on the valid split gives the outputs whose
    accuracy the run recorded at its best epoch."""
    out = tmp_path / "run"
    t = _trained(tiny, out, eval_mode="sampled", eval_fanouts=[3, 3])
    valid = np.asarray(tiny.splits["valid"], dtype=np.int64)
    with torch.no_grad():
        want = torch.softmax(t.parts.sampled_outputs(valid), dim=-1).numpy()
    got = _cli_npy(["predict", "--run", str(out), "--split", "valid", "--out", str(tmp_path / "v.npy")], capsys)
    assert np.array_equal(got, want)
    best = json.loads((out / "summary.json").read_text())["best_valid"]
    assert float((got.argmax(1) == np.asarray(tiny.labels)[valid]).mean()) == best


def test_predict_and_embed_mistakes_exit_2_with_one_line(tiny, citeseer_like, node_run, link_run,
                                                         tmp_path: Path, capsys) -> None:
    node, _ = node_run
    link, _ = link_run
    no_eval = tmp_path / "noeval"
    assert main(["train", "--dataset", str(tiny.path), "--out", str(no_eval), "--epochs", "1", "--fanouts", "4,4",
                 "--eval-every", "0", "--no-progress"]) == 0
    parent = tmp_path / "parent"
    assert main(["train", "--dataset", str(tiny.path), "--out", str(parent), "--epochs", "1", "--fanouts", "4,4",
                 "--runs", "2", "--no-progress"]) == 0
    (tmp_path / "far.npy").write_bytes(b"")
    np.save(tmp_path / "far.npy", np.array([[0, 1], [2, 1000]]))
    np.save(tmp_path / "badnodes.npy", np.array([3, -1]))
    np.save(tmp_path / "floats.npy", np.array([0.5]))
    o = ["--out", str(tmp_path / "o.npy")]
    cases = [
        (["predict", "--run", str(no_eval), *o], "no best model in the run folder"),
        (["predict", "--run", str(node), "--dataset", str(citeseer_like.path), *o], "the model was trained on dataset 'tiny'"),
        (["predict", "--run", str(link), "--pairs", str(tmp_path / "far.npy"), *o], "node id 1000 at position [1, 1] is out of range"),
        (["predict", "--run", str(node), "--nodes", str(tmp_path / "badnodes.npy"), *o], "node id -1"),
        (["predict", "--run", str(node), "--nodes", str(tmp_path / "floats.npy"), *o], "integer node ids"),
        (["predict", "--run", str(node), "--pairs", str(tmp_path / "far.npy"), *o], "node-classification run"),
        (["predict", "--run", str(link), "--nodes", str(tmp_path / "badnodes.npy"), *o], "link-prediction run"),
        (["predict", "--run", str(link), *o], "give the pairs to score"),
        (["predict", "--run", str(node), "--split", "val", *o], "has no such split (it has test, train, valid)"),
        (["predict", "--run", str(parent), *o], "holds 2 runs"),
        (["predict", "--run", str(tmp_path / "nothing"), *o], "no such run folder"),
        (["predict", "--run", str(node), "--out", str(tmp_path / "p.csv")], "ending in .npy"),
        (["embed", "--run", str(no_eval), *o], "no best model"),
        (["embed", "--run", str(parent), *o], "holds 2 runs"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("gnnsys: error:") and message in err and len(err.splitlines()) == 1, (argv, err)
    assert not (tmp_path / "o.npy").exists()


@pytest.fixture(scope="module")
def citeseer_like(tiny, tmp_path_factory):
    """The tiny graph re-prepared with other labels: same name would not do, so another one."""
    out = tmp_path_factory.mktemp("ds") / "other"
    return save_dataset(out, name="other", task="node", graph=tiny.graph, features=tiny.features,
                        labels=tiny.labels, num_classes=tiny.num_classes, splits=dict(tiny.splits))
