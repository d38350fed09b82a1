"""Link prediction with LargeGT: TokenSampler.sample_from_edges (layout, negatives, determinism,
target-edge exclusion), training through the Trainer, the CLI, and link options that make no sense."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from gnnsys.cli import main as cli_main
from gnnsys.data.format import save_dataset
from gnnsys.errors import ConfigError
from gnnsys.train import TrainConfig, Trainer, read_metrics
from samplers import NeighborSampler, SamplerInputError, TokenSampler


class Graph:
    """A CSC graph (in-neighbours of ``v`` = ``indices[indptr[v]:indptr[v + 1]]``) from edges."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, n: int) -> None:
        a = sp.csc_matrix((np.ones(len(src)), (np.asarray(src), np.asarray(dst))), shape=(n, n))
        a.sum_duplicates()
        a.sort_indices()
        self.indptr = a.indptr.astype(np.int64)
        self.indices = a.indices.astype(np.int32)
        self.num_nodes = n

    def in_nbrs(self, v: int) -> list[int]:
        return self.indices[self.indptr[v]:self.indptr[v + 1]].tolist()

    def edges(self) -> set[tuple[int, int]]:
        dst = np.repeat(np.arange(self.num_nodes), np.diff(self.indptr))
        return set(zip(self.indices.tolist(), dst.tolist()))


def symmetric_graph(n: int = 150, m: int = 700, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    s, d = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = s != d
    s, d = s[keep], d[keep]
    return Graph(np.r_[s, d], np.r_[d, s], n)


G = symmetric_graph()


def positives(g: Graph, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``b`` distinct existing edges ``src -> dst``."""
    dst_all = np.repeat(np.arange(g.num_nodes), np.diff(g.indptr))
    pick = np.random.default_rng(seed).choice(g.indices.size, size=b, replace=False)
    return g.indices[pick].astype(np.int64), dst_all[pick]


# ============================================================================ the sampler
@pytest.mark.parametrize("neg,k,exclude", [("uniform", 1, True), ("per_source", 3, False),
                                           ("exclude_existing", 2, True), (None, 1, False)])
def test_link_batch_layout_labels_and_negatives(neg, k, exclude):
    src, dst = positives(G, 12, seed=1)
    s = TokenSampler(G, 10, seed=3)
    sub = s.sample_from_edges(src, dst, neg=neg, num_neg=k, exclude_target_edges=exclude, batch_seed=5)
    b, kk = src.size, (0 if neg is None else k)
    seeds = sub.nodes[:sub.num_seeds]
    eli = sub.edge_label_index
    assert eli.shape == (2, b * (1 + kk)) and eli.dtype == np.int64
    assert eli.min() >= 0 and eli.max() < sub.num_seeds
    np.testing.assert_array_equal(sub.nodes[eli[:, :b]], np.stack([src, dst]))
    np.testing.assert_array_equal(sub.nodes[eli[0, b:]], np.repeat(src, kk))
    negs = sub.nodes[eli[1, b:]]
    assert ((negs >= 0) & (negs < G.num_nodes)).all()
    assert sub.edge_label.dtype == np.float32
    np.testing.assert_array_equal(sub.edge_label, np.r_[np.ones(b), np.zeros(b * kk)])
    # the seeds are the sorted unique endpoints; every seed has its own K tokens, the first itself
    np.testing.assert_array_equal(seeds, np.unique(sub.nodes[eli]))
    idx, mask, hop = (sub.extra[key] for key in ("token_index", "token_mask", "token_hop"))
    assert idx.shape == mask.shape == hop.shape == (sub.num_seeds, 10)
    assert idx.dtype == np.int64 and mask.dtype == np.bool_ and hop.dtype == np.int8
    np.testing.assert_array_equal(idx[:, 0], np.arange(sub.num_seeds))
    assert idx.max() < sub.num_nodes and sub.num_sampled_nodes == [sub.num_seeds, sub.num_nodes - sub.num_seeds]
    if neg == "per_source":
        np.testing.assert_array_equal(sub.extra["neg_dst_index"], eli[1, b:].reshape(b, k))
    # the very negatives (and so seeds and label layout) of NeighborSampler for the same keys
    ref = NeighborSampler(G, [1], seed=3).sample_from_edges(src, dst, neg=neg, num_neg=k, batch_seed=5)
    np.testing.assert_array_equal(seeds, ref.nodes[:ref.num_seeds])
    np.testing.assert_array_equal(eli, ref.edge_label_index)
    if not exclude:  # the tokens are those of a node batch of the same seeds and key
        nodes = s.sample_from_nodes(seeds, batch_seed=5)
        np.testing.assert_array_equal(nodes.nodes, sub.nodes)
        np.testing.assert_array_equal(nodes.extra["token_index"], idx)


def test_given_negatives_and_bad_input():
    s = TokenSampler(G, 6)
    neg_dst = np.array([[5, 6, 7], [8, 9, 5]])
    sub = s.sample_from_edges([1, 2], [3, 4], neg=None, neg_dst=neg_dst, batch_seed=0)
    np.testing.assert_array_equal(sub.nodes[sub.extra["neg_dst_index"]], neg_dst)
    assert sub.edge_label.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    for kwargs, match in [({"neg": "hard"}, "neg must be one of"), ({"num_neg": 0}, "num_neg must be an int >= 1"),
                          ({"batch_seed": 1.5}, "batch_seed must be an int"),
                          ({"neg": "uniform", "neg_dst": neg_dst}, "neg must be None or 'per_source'")]:
        with pytest.raises(SamplerInputError, match=match):
            s.sample_from_edges([1, 2], [3, 4], **kwargs)
    with pytest.raises(SamplerInputError, match="same length"):
        s.sample_from_edges([1, 2], [3])
    with pytest.raises(SamplerInputError, match="out of range"):
        s.sample_from_edges([1], [G.num_nodes])


def test_deterministic_by_seed_and_batch_seed_and_thread_count():
    src, dst = positives(G, 20, seed=2)

    def run(seed: int, bs: int, threads: int):
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            return TokenSampler(G, 12, seed=seed).sample_from_edges(
                src, dst, neg="exclude_existing", num_neg=2, exclude_target_edges=True, batch_seed=bs)
        finally:
            numba.set_num_threads(before)

    a = run(0, 7, 1)
    for other, same in [(run(0, 7, numba.config.NUMBA_NUM_THREADS), True), (run(0, 7, 1), True),
                        (run(0, 8, 1), False), (run(1, 7, 1), False)]:
        equal = (np.array_equal(a.nodes, other.nodes)
                 and np.array_equal(a.edge_label_index, other.edge_label_index)
                 and all(np.array_equal(a.extra[key], other.extra[key]) for key in a.extra))
        assert equal == same


def test_exclude_existing_never_returns_an_edge():
    g = symmetric_graph(40, 400, seed=4)  # dense: about half of all pairs are edges
    edges = g.edges()
    s = TokenSampler(g, 4, seed=0)
    src, dst = positives(g, 30, seed=5)
    for bs in range(20):
        sub = s.sample_from_edges(src, dst, neg="exclude_existing", num_neg=5, batch_seed=bs)
        b = src.size
        for u, v in zip(sub.nodes[sub.edge_label_index[0, b:]].tolist(),
                        sub.nodes[sub.edge_label_index[1, b:]].tolist()):
            assert u != v and (u, v) not in edges


def _token_paths_respect(g: Graph, sub, hop1_max: int, k: int, banned: set[tuple[int, int]]) -> None:
    """Every 1-hop token is an allowed in-neighbour (as many as the allowed degree permits), every
    2-hop token the end of an allowed 2-step walk; ``banned`` holds the excluded ``(src, dst)``."""
    idx, hop = sub.extra["token_index"], sub.extra["token_hop"]

    def allowed(v: int) -> set[int]:
        return {u for u in g.in_nbrs(v) if (u, v) not in banned}

    for i in range(sub.num_seeds):
        s = int(sub.nodes[i])
        glob = sub.nodes[idx[i]]
        one = glob[hop[i] == 1].tolist()
        assert set(one) <= allowed(s) and len(one) == len(set(one)) == min(len(allowed(s)), hop1_max, k - 1)
        walks = set().union(*(allowed(u) for u in allowed(s))) - {s} if allowed(s) else set()
        assert set(glob[hop[i] == 2].tolist()) <= walks


def test_target_edges_are_no_token_path():
    src, dst = positives(G, 25, seed=6)
    k, hop1 = 24, 12  # most seeds take all their 1-hop neighbours
    s = TokenSampler(G, k, seed=2, hop1_tokens=hop1)
    banned = set(zip(src.tolist(), dst.tolist())) | set(zip(dst.tolist(), src.tolist()))
    leaked = 0
    for bs in range(10):
        sub = s.sample_from_edges(src, dst, neg="uniform", num_neg=2, exclude_target_edges=True, batch_seed=bs)
        _token_paths_respect(G, sub, hop1, k, banned)
        kept = s.sample_from_edges(src, dst, neg="uniform", num_neg=2, exclude_target_edges=False, batch_seed=bs)
        _token_paths_respect(G, kept, hop1, k, set())
        pos = {int(v): i for i, v in enumerate(kept.nodes[:kept.num_seeds])}
        for u, v in zip(src.tolist(), dst.tolist()):
            one = kept.nodes[kept.extra["token_index"][pos[v]][kept.extra["token_hop"][pos[v]] == 1]]
            leaked += int(u in one.tolist())
    assert leaked > 0  # without the exclusion the partner is a 1-hop token: the check has teeth


def test_an_endpoint_whose_only_edge_is_the_target_has_no_other_token():
    # 0 - 1 - 2 - 3 (a path, both directions): the target (0, 1) is 0's only edge
    g = Graph(np.array([0, 1, 1, 2, 2, 3]), np.array([1, 0, 2, 1, 3, 2]), 4)
    s = TokenSampler(g, 6, seed=0, hop1_tokens=2)
    sub = s.sample_from_edges([0], [1], neg=None, exclude_target_edges=True, batch_seed=0)
    glob = np.where(sub.extra["token_mask"], sub.nodes[sub.extra["token_index"]], -1)
    assert glob[0].tolist() == [0, -1, -1, -1, -1, -1]  # node 0: itself only
    assert glob[1, :2].tolist() == [1, 2] and set(glob[1, 2:].tolist()) <= {3, -1}  # node 1: never 0
    assert 3 in glob[1].tolist()
    kept = s.sample_from_edges([0], [1], neg=None, exclude_target_edges=False, batch_seed=0)
    assert 1 in kept.nodes[kept.extra["token_index"][0][kept.extra["token_mask"][0]]].tolist()


# ============================================================================ training
OPTS = {"hidden": 32, "num_tokens": 16, "num_centroids": 16, "global_dim": 16, "heads": 2, "dropout": 0.0}


def _config(ds_path: str, tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = {"dataset": ds_path, "out": str(tmp_path / name), "epochs": 3, "batch_size": 256, "lr": 0.01,
            "decoder": "mlp", "decoder_hidden": 32, "progress": False, "num_threads": 1, "prefetch": 1}
    return TrainConfig(**{**base, **kw})


def test_largegt_link_training_learns_and_reports_sage_metrics(link_tiny, tmp_path):
    opts = dict(OPTS, cache_dir=str(tmp_path / "cache"))  # the propagated table stays out of the fixture
    tr = Trainer(_config(str(link_tiny.path), tmp_path, "lgt", model="largegt", model_options=opts))
    assert tr.parts.eval_mode == "sampled"
    untrained = tr.evaluate()
    summary = tr.fit()
    lines = read_metrics(tmp_path / "lgt" / "metrics.jsonl")
    sage = _config(str(link_tiny.path), tmp_path, "sage", model="sage", epochs=1, fanouts=[5, 5],
                   model_options={"hidden": 16})
    sage_summary = Trainer(sage).fit()
    sage_lines = read_metrics(tmp_path / "sage" / "metrics.jsonl")
    assert set(lines[0]) == set(sage_lines[0]) and set(untrained) == {"valid_hits@50", "test_hits@50"}
    assert summary["metric"] == sage_summary["metric"] == "hits@50"
    assert summary["final"].keys() == sage_summary["final"].keys()
    assert lines[-1]["loss"] < lines[0]["loss"]
    # the untrained model is near chance (about 0.2 here); training lifts it well above
    assert summary["best_valid"] > max(0.5, untrained["valid_hits@50"] + 0.2), (untrained, summary["best_valid"])
    assert list((tmp_path / "cache").glob("propagated-*.npy"))


def test_featureless_link_dataset_feeds_tokens_a_learnable_embedding(link_tiny, tmp_path):
    path = tmp_path / "nofeat"
    save_dataset(path, name="nofeat", task="link", graph=link_tiny.graph, directed=False,
                 splits={k: np.asarray(v) for k, v in link_tiny.splits.items()})
    tr = Trainer(_config(str(path), tmp_path, "run", model="largegt", model_options=OPTS, epochs=1, max_batches=3))
    assert tr.parts.features is None and hasattr(tr.model.encoder, "embedding")
    r = tr.fit()["final"]
    # the recorded score is the final model's (sampled evaluation is deterministic)
    assert r["valid_hits@50"] == tr.evaluate()["valid_hits@50"] and np.isfinite(r["loss"])


def test_cli_trains_largegt_on_link_tiny(tmp_path, capsys):
    out = tmp_path / "x"
    code = cli_main(["train", "--dataset", "link-tiny", "--home", str(tmp_path / "home"), "--model", "largegt",
                     "--epochs", "1", "--out", str(out), "--no-progress", "--num-threads", "1", "--hidden", "32",
                     "--model-option", "num_tokens=16", "--model-option", "num_centroids=16",
                     "--model-option", "global_dim=16"])
    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["model"] == "largegt" and printed["metric"] == "hits@50"
    rows = read_metrics(out / "metrics.jsonl")
    assert printed["best_valid"] == max(row["valid_hits@50"] for row in rows)
    assert printed["best_valid"] == json.loads((out / "summary.json").read_text())["best_valid"]
    shutil.rmtree(tmp_path / "home")


# ============================================================================ bad input
@pytest.mark.parametrize("changes,match", [
    ({"fanouts": [10, 5]}, r"LargeGT takes no fanouts \(got \[10, 5\]\): it samples num_tokens"),
    ({"eval_fanouts": [-1]}, r"LargeGT takes no fanouts \(got \[-1\]\)"),
    ({"eval_mode": "full"}, "eval_mode full: model 'largegt' has no layer-wise inference"),
    ({"metric": "acc"}, "metric 'acc' does not fit a link task"),
    ({"metric": "mrr"}, "metric mrr needs per-source negatives"),
])
def test_options_that_make_no_sense_are_config_errors(link_tiny, tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        Trainer(_config(str(link_tiny.path), tmp_path, "bad", model="largegt",
                        model_options=dict(OPTS, cache_dir=str(tmp_path / "cache")), **changes))
    assert not (tmp_path / "bad" / "checkpoint.pt").exists()


def test_cli_refuses_fanouts_for_largegt_in_one_line(link_tiny, tmp_path, capsys):
    code = cli_main(["train", "--dataset", str(link_tiny.path), "--model", "largegt", "--fanouts", "10,5",
                     "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("gnnsys: error: LargeGT takes no fanouts"), err
