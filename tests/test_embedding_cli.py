"""``gnnsys train --model deepwalk|node2vec|line``, ``gnnsys embed``, ``--features embeddings:RUN``
and the embedding runs' bad inputs (one line, exit code 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error as _one_line_error
from cli_helpers import run_cli as _cli

from gnnsys.cli import main as cli_main
from gnnsys.data import CSCGraph, save_dataset
from gnnsys.embedding.api import check_memory
from gnnsys.embedding.evaluate import linear_probe
from gnnsys.embedding.trainer import EmbeddingOptions
from gnnsys.errors import ConfigError
from gnnsys.train.evaluate import hits_at_k

SMALL = ["--dim", "16", "--walk-length", "20", "--context", "4", "--walks-per-node", "10", "--no-progress",
         "--num-threads", "2"]


@pytest.fixture(scope="module")
def deepwalk_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "dw"
    code = cli_main(["train", "--dataset", str(tiny.path), "--model", "deepwalk", "--out", str(out), *SMALL])
    assert code == 0
    return out


def test_deepwalk_run_folder_and_probe(deepwalk_run, tiny):
    emb = np.load(deepwalk_run / "embeddings.npy", allow_pickle=False)
    assert emb.dtype == np.float32 and emb.shape == (tiny.num_nodes, 16) and np.isfinite(emb).all()
    cfg = json.loads((deepwalk_run / "config.json").read_text())
    assert cfg["model"] == "deepwalk" and cfg["lr"] == 0.025 and cfg["num_neg"] == 5 and cfg["epochs"] == 1
    assert cfg["model_options"] == {"dim": 16, "walk_length": 20, "context": 4, "walks_per_node": 10}
    summary = json.loads((deepwalk_run / "summary.json").read_text())
    # the reported scores are scikit-learn's on the saved embeddings
    want = linear_probe(emb, np.asarray(tiny.labels), tiny.splits, seed=0)
    assert summary["scores"] == want
    assert summary["test_at_best_valid"] == want["test_f1-micro"]
    assert want["test_f1-micro"] > 0.8  # measured 0.924 (4 homophilous classes: 0.25 by chance)
    metrics = [json.loads(x) for x in (deepwalk_run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["test_f1-micro"] == want["test_f1-micro"]


def test_embed_returns_the_embeddings(deepwalk_run, tmp_path, capsys):
    code, out, err = _cli(["embed", "--run", deepwalk_run, "--out", tmp_path / "e.npy"], capsys)
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "e.npy"), np.load(deepwalk_run / "embeddings.npy"))
    assert json.loads(out)["shape"] == [1000, 16]


def test_same_run_for_one_and_two_threads(tiny, deepwalk_run, tmp_path, capsys):
    args = [a if a != "2" or i != len(SMALL) - 1 else "1" for i, a in enumerate(SMALL)]
    code, _, err = _cli(["train", "--dataset", tiny.path, "--model", "deepwalk", "--out", tmp_path / "r", *args],
                        capsys)
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "r" / "embeddings.npy"), np.load(deepwalk_run / "embeddings.npy"))


@pytest.mark.parametrize("extra", [["--model", "line"], ["--model", "line", "--line-order", "1"],
                                   ["--model", "node2vec", "--p", "0.5", "--q", "2"]])
def test_link_hits_by_ogb_evaluator(link_tiny, tmp_path, capsys, extra):
    code, _, err = _cli(["train", "--dataset", link_tiny.path, "--out", tmp_path / "r", "--decoder", "dot",
                         *extra, *SMALL], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    emb = torch.from_numpy(np.load(tmp_path / "r" / "embeddings.npy"))
    pos = torch.from_numpy(np.array(link_tiny.splits["test_pos"]))
    neg = torch.from_numpy(np.array(link_tiny.splits["test_neg"]))
    k = int(s["metric"].split("@")[1])
    want = hits_at_k(link_tiny.name, (emb[pos[:, 0]] * emb[pos[:, 1]]).sum(-1),
                     (emb[neg[:, 0]] * emb[neg[:, 1]]).sum(-1), k)
    assert s["scores"][f"test_{s['metric']}"] == want


def test_link_task_trains_ogbs_mlp_probe_selected_on_valid(link_tiny, tmp_path, capsys):
    """The default link evaluation is OGB's mlp.py on the frozen embeddings: the reported scores
    are the probe's evaluation with the best valid score; the dot products stay as dot_*."""
    code, _, err = _cli(["train", "--dataset", link_tiny.path, "--out", tmp_path / "r", "--model", "node2vec",
                         "--model-option", "probe_epochs=4", "--model-option", "probe_eval_every=1",
                         "--model-option", "probe_batch_size=512", "--model-option", "probe_hidden=32", *SMALL], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    m = s["metric"]
    hist = s["link_probe"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert s["link_probe"]["options"] == {"hidden": 32, "num_layers": 3, "dropout": 0.5, "batch_size": 512,
                                          "lr": 0.01, "epochs": 4, "eval_every": 1, "seed": 0}
    best = max(hist, key=lambda h: h[f"valid_{m}"])  # max returns the first of equal ones, as OGB's Logger
    assert s["best_valid"] == best[f"valid_{m}"] and s["test_at_best_valid"] == best[f"test_{m}"]
    assert s["scores"]["probe_best_epoch"] == best["epoch"]
    emb = torch.from_numpy(np.load(tmp_path / "r" / "embeddings.npy"))
    pos = torch.from_numpy(np.array(link_tiny.splits["test_pos"]))
    neg = torch.from_numpy(np.array(link_tiny.splits["test_neg"]))
    k = int(m.split("@")[1])
    assert s["scores"][f"dot_test_{m}"] == hits_at_k(link_tiny.name, (emb[pos[:, 0]] * emb[pos[:, 1]]).sum(-1),
                                                     (emb[neg[:, 0]] * emb[neg[:, 1]]).sum(-1), k)


def test_gnn_on_embedding_features(deepwalk_run, tiny, tmp_path, capsys):
    code, _, err = _cli(["train", "--dataset", tiny.path, "--features", f"embeddings:{deepwalk_run}",
                           "--epochs", "1", "--max-batches", "2", "--out", tmp_path / "g", "--no-progress"],
                          capsys)
    assert code == 0, err
    from gnnsys.train.build import assemble
    from gnnsys.train.config import TrainConfig

    parts = assemble(TrainConfig.from_json_file(tmp_path / "g" / "config.json"))
    assert parts.features.dim == 16
    ids = np.array([0, 5, 999])
    got = parts.features.gather(torch.from_numpy(ids))
    assert np.array_equal(got.numpy(), np.load(deepwalk_run / "embeddings.npy")[ids])


@pytest.mark.parametrize("argv,needles", [
    (["--model", "deepwalk", "--walk-length", "0"], ["--walk-length", "0"]),
    (["--model", "deepwalk", "--walk-length", "5", "--context", "10"], ["--context 10", "--walk-length 5"]),
    (["--model", "node2vec", "--p", "0"], ["--p", "> 0"]),
    (["--model", "node2vec", "--q", "-1"], ["--q", "> 0"]),
    (["--model", "deepwalk", "--neg-share", "0"], ["--neg-share", ">= 1", "0"]),
    (["--model", "deepwalk", "--dim", "100000000000"], ["--dim 100000000000", "GiB", "use --dim"]),
    (["--features", "embeddings:/nonexistent/run"], ["/nonexistent/run/embeddings.npy"]),
])
def test_bad_input_is_one_line(tiny, tmp_path, capsys, argv, needles):
    out = tmp_path / "r"
    code, _, err = _cli(["train", "--dataset", tiny.path, "--out", out, "--no-progress", *argv], capsys)
    _one_line_error(code, err, *needles)
    assert not (out / "embeddings.npy").exists()


def test_resume_of_an_embedding_run_is_refused(deepwalk_run, capsys):
    before = (deepwalk_run / "embeddings.npy").read_bytes()
    code, _, err = _cli(["train", "--resume", "--out", deepwalk_run], capsys)
    _one_line_error(code, err, "--resume", "--overwrite")
    assert (deepwalk_run / "embeddings.npy").read_bytes() == before


def test_memory_estimate_is_printed_in_the_error():
    with pytest.raises(ConfigError, match=r"needs about 0\.\d GiB .* 0\.0 GiB are available"):
        check_memory(100_000, 10, EmbeddingOptions(dim=128), available=1000)


def test_graph_without_edges(tmp_path, capsys):
    ds = save_dataset(tmp_path / "empty", name="empty", task="node",
                      graph=CSCGraph(np.zeros(5, np.int64), np.zeros(0, np.int32), 4),
                      labels=np.zeros(4, np.int64), num_classes=1, splits={"train": np.arange(4)})
    code, _, err = _cli(["train", "--dataset", ds.path, "--model", "deepwalk", "--out", tmp_path / "r"], capsys)
    _one_line_error(code, err, "no edges")


def test_isolated_nodes_get_embeddings_and_a_warning(tmp_path, capsys):
    # a path 0-1-2-3 and isolated nodes 4, 5
    indptr = np.array([0, 1, 3, 5, 6, 6, 6], np.int64)
    indices = np.array([1, 0, 2, 1, 3, 2], np.int32)
    ds = save_dataset(tmp_path / "iso", name="iso", task="node", graph=CSCGraph(indptr, indices, 6),
                      labels=np.array([0, 0, 1, 1, 0, 1]), num_classes=2,
                      splits={"train": np.array([0, 3]), "test": np.array([1, 2, 4, 5])})
    code, out, err = _cli(["train", "--dataset", ds.path, "--model", "deepwalk", "--out", tmp_path / "r",
                           "--walk-length", "5", "--context", "2", "--dim", "4", "--no-progress"], capsys)
    assert code == 0, err
    assert "warning: 2 isolated node(s)" in err
    emb = np.load(tmp_path / "r" / "embeddings.npy")
    assert emb.shape == (6, 4) and np.isfinite(emb).all()
    assert json.loads(out)["isolated_nodes"] == 2
