"""The bad-input suite: every user mistake gives one documented exception type (or CLI exit code 2)
with a message naming the problem; nothing crashes, hangs, or replaces a good file with a broken one.

The documented types and codes are listed in ``docs/errors.md``. Each case below asserts the type
*and* that the message names the offending file, array or option. CLI cases run in-process through
``gnnsys.cli.main`` (exit code + one stderr line); a few run as real subprocesses with a timeout to
prove that no traceback and no hang reach the user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nan_dataset import save_nan_feature_dataset

from gnnsys.cli import main as cli_main
from gnnsys.data import CSCGraph, load_dataset, save_dataset, synthetic
from gnnsys.data.format import sha256_file
from gnnsys.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    DeviceUnavailableError,
    FeatureStoreError,
)
from gnnsys.features import FeatureStore
from gnnsys.loader import ArrayFeatures, NodeLoader
from gnnsys.train import TrainConfig, Trainer, load_checkpoint, save_checkpoint
from samplers import NeighborSampler, SamplerInputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synthetic.generate("tiny", tmp_path_factory.mktemp("bad") / "tiny").path


@pytest.fixture
def ds_copy(tiny, tmp_path) -> Path:
    """A private copy of the tiny dataset that a case may damage."""
    dst = tmp_path / "ds"
    shutil.copytree(tiny, dst)
    return dst


def _reseal(root: Path, rel: str) -> None:
    meta = json.loads((root / "meta.json").read_text())
    meta["files"][rel] = {"bytes": (root / rel).stat().st_size, "sha256": sha256_file(root / rel)}
    (root / "meta.json").write_text(json.dumps(meta))


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, stderr). A user mistake is one stderr line."""
    code = cli_main(argv)
    err = capsys.readouterr().err
    return code, err


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gnnsys: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _graph(indptr, indices) -> CSCGraph:
    indptr = np.asarray(indptr, np.int64)
    return CSCGraph(indptr, np.asarray(indices, np.int32), indptr.size - 1)


# =============================================================================================
# Storage: corrupt, truncated, modified files


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path / "nope")


def test_truncated_array_file(ds_copy):
    f = ds_copy / "graph/indices.npy"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"graph/indices\.npy: size 100 bytes differs"):
        load_dataset(ds_copy)


def test_corrupt_npy_header_even_with_matching_size(ds_copy):
    f = ds_copy / "labels.npy"
    data = bytearray(f.read_bytes())
    data[:6] = b"\x00" * 6  # the magic string
    f.write_bytes(bytes(data))
    _reseal(ds_copy, "labels.npy")
    with pytest.raises(DatasetError, match=r"labels\.npy: corrupt \.npy file"):
        load_dataset(ds_copy)


def test_corrupt_meta_json(ds_copy):
    (ds_copy / "meta.json").write_bytes(b'{"format": "gnnsys-dataset", \xff')
    with pytest.raises(DatasetError, match=r"meta\.json: corrupt JSON"):
        load_dataset(ds_copy)


def test_meta_json_field_of_wrong_type(ds_copy):
    meta = json.loads((ds_copy / "meta.json").read_text())
    meta["num_classes"] = "four"
    (ds_copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="'num_classes' must be a int"):
        load_dataset(ds_copy)


def test_dataset_modified_after_preparation_checksum(ds_copy):
    """Same size, different bytes: only the SHA-256 in meta.json can tell."""
    lab = np.load(ds_copy / "labels.npy")
    lab[:10] = (lab[:10] + 1) % 4
    np.save(ds_copy / "labels.npy", lab)
    with pytest.raises(DatasetError, match=r"labels\.npy: SHA-256 differs from meta\.json"):
        load_dataset(ds_copy)


def test_dataset_modified_after_preparation_size(ds_copy):
    with open(ds_copy / "split/train.npy", "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(DatasetError, match=r"split/train\.npy: size .* differs .* modified after preparation"):
        load_dataset(ds_copy)


def test_wrong_dtype_array(ds_copy):
    np.save(ds_copy / "labels.npy", np.zeros(1000, np.float32))
    _reseal(ds_copy, "labels.npy")
    with pytest.raises(DatasetError, match=r"labels\.npy: dtype float32 but expected int64"):
        load_dataset(ds_copy)


def test_wrong_shape_array(ds_copy):
    np.save(ds_copy / "features.npy", np.zeros((1000, 3), np.float32))
    _reseal(ds_copy, "features.npy")
    with pytest.raises(DatasetError, match=r"features\.npy: shape \(1000, 3\) does not match meta\.json"):
        load_dataset(ds_copy)


def test_column_major_array(ds_copy):
    """A Fortran-order table would pass shape and dtype checks, then fail in the feature store."""
    np.save(ds_copy / "features.npy", np.asfortranarray(np.load(ds_copy / "features.npy")))
    _reseal(ds_copy, "features.npy")
    with pytest.raises(DatasetError, match=r"features\.npy: stored in Fortran \(column-major\) order"):
        load_dataset(ds_copy)


def test_node_ids_out_of_range_in_graph(ds_copy):
    ix = np.load(ds_copy / "graph/indices.npy")
    ix[7] = 1000
    np.save(ds_copy / "graph/indices.npy", ix)
    _reseal(ds_copy, "graph/indices.npy")
    with pytest.raises(DatasetError, match=r"indices\.npy: node id 1000 out of range \[0, 1000\)"):
        load_dataset(ds_copy)


def test_out_of_range_graph_that_skipped_validation_is_refused_by_the_sampler(ds_copy):
    """The >512 MiB path (validate=False) must still never hand a bad graph to a numba kernel."""
    ix = np.load(ds_copy / "graph/indices.npy")
    ix[7] = 5000
    np.save(ds_copy / "graph/indices.npy", ix)
    _reseal(ds_copy, "graph/indices.npy")
    ds = load_dataset(ds_copy, validate=False)
    with pytest.raises(SamplerInputError, match=r"graph\.indices must lie in \[0, 1000\)"):
        NeighborSampler(ds.graph, [5, 5])


PROPAGATE_CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np
from gnnsys.data import load_dataset
from gnnsys.data.propagate import build_propagated
from gnnsys.errors import DatasetError

root = Path(sys.argv[1])
ix = np.load(root / "graph/indices.npy")
ix[5] = 10**9  # far outside the graph: an unchecked kernel read would fault
np.save(root / "graph/indices.npy", ix)
meta = json.loads((root / "meta.json").read_text())
meta["files"]["graph/indices.npy"] = {"bytes": (root / "graph/indices.npy").stat().st_size}
(root / "meta.json").write_text(json.dumps(meta))
ds = load_dataset(root, validate=False)  # what a dataset over 512 MiB gets
try:
    build_propagated(ds, root.parent / "prop.npy", hops=2)
except DatasetError as e:
    print("DatasetError:", e)
"""


def test_propagation_refuses_an_out_of_range_graph_that_skipped_validation(ds_copy):
    """LargeGT's A_hat^k x builder runs a numba kernel over the raw graph: it validates it first
    (before the fix, this case was a segfault). Run in a child so a crash fails the test."""
    proc = subprocess.run([sys.executable, "-c", PROPAGATE_CHILD, str(ds_copy)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "DatasetError: dataset 'tiny': invalid graph" in proc.stdout
    assert "graph.indices must lie in [0, 1000)" in proc.stdout
    assert not (ds_copy.parent / "prop.npy").exists()


def test_split_ids_out_of_range(ds_copy):
    np.save(ds_copy / "split/valid.npy", np.array([3, -1], np.int64))
    _reseal(ds_copy, "split/valid.npy")
    with pytest.raises(DatasetError, match=r"split/valid\.npy: node id -1 out of range"):
        load_dataset(ds_copy)


def test_unsupported_format_version(ds_copy):
    meta = json.loads((ds_copy / "meta.json").read_text())
    meta["format_version"] = 2
    (ds_copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format_version 2 is not supported"):
        load_dataset(ds_copy)


def test_failed_overwrite_keeps_the_good_dataset(tiny, tmp_path):
    """A write that fails half-way never replaces a good dataset, and leaves no temp folder."""
    good = tmp_path / "ds"
    shutil.copytree(tiny, good)
    before = {p.name: sha256_file(p) for p in good.rglob("*.npy")}
    g = _graph([0, 1, 2], [1, 0])
    with pytest.raises(DatasetError, match="features: expected a 2-D"):
        save_dataset(good, name="x", task="node", graph=g, features=np.zeros((2, 2, 2), np.float32),
                     overwrite=True)
    assert {p.name: sha256_file(p) for p in good.rglob("*.npy")} == before
    load_dataset(good)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["ds"]


# =============================================================================================
# Graph shapes: empty, single node, self-loops only


def test_empty_graph_is_refused_by_the_sampler():
    with pytest.raises(SamplerInputError, match="at least one node"):
        NeighborSampler(_graph([0], []), [2])


def test_single_node_graph_samples_only_the_seed():
    s = NeighborSampler(_graph([0, 0], []), [3, 2])
    out = s.sample_from_nodes(np.array([0]))
    assert out.nodes.tolist() == [0] and out.num_sampled_edges == [0, 0]


def test_self_loop_only_graph_samples_self_loops():
    s = NeighborSampler(_graph([0, 1, 2, 3], [0, 1, 2]), [4])
    out = s.sample_from_nodes(np.array([2, 0]))
    assert out.nodes.tolist() == [2, 0]
    src, dst = out.hops[0].edge_index
    assert np.array_equal(out.nodes[src], out.nodes[dst]) and src.size == 2


def test_empty_dataset_round_trips(tmp_path):
    """A dataset with zero nodes is a valid (if useless) folder; training on it is refused."""
    ds = save_dataset(tmp_path / "empty", name="empty", task="node", graph=_graph([0], []),
                      labels=np.zeros(0, np.int64), num_classes=1, splits={"train": np.zeros(0, np.int64)})
    assert load_dataset(ds.path).num_nodes == 0
    with pytest.raises(ConfigError, match="a graph needs at least one node"):
        Trainer(TrainConfig(dataset=str(ds.path), out=str(tmp_path / "run"), progress=False))


# =============================================================================================
# Samplers: fanouts and seeds


@pytest.mark.parametrize("fanouts,match", [
    ([], "fanouts is empty"),
    ([5, 0], r"fanouts\[1\] = 0 is invalid"),
    ([-2], r"fanouts\[0\] = -2 is invalid"),
    ("15,10", "fanouts must be a list of ints"),
    ([2.5], r"fanouts\[0\] must be an int"),
])
def test_bad_fanouts(tiny, fanouts, match):
    with pytest.raises(SamplerInputError, match=match):
        NeighborSampler(load_dataset(tiny).graph, fanouts)


@pytest.mark.parametrize("seeds,match", [
    (np.array([1, 1000]), "id 1000, out of range for a graph of 1000 nodes"),
    (np.array([-3, 1]), "negative id -3"),
    (np.array([1.0, 2.0]), "seeds must hold integer node ids, got dtype float64"),
    (np.array([], np.int64), "seeds is empty"),
])
def test_bad_seeds(tiny, seeds, match):
    s = NeighborSampler(load_dataset(tiny).graph, [2])
    with pytest.raises(SamplerInputError, match=match):
        s.sample_from_nodes(seeds)


def test_link_sampler_unknown_negative_mode(tiny):
    s = NeighborSampler(load_dataset(tiny).graph, [2])
    with pytest.raises(SamplerInputError, match="neg must be one of"):
        s.sample_from_edges(np.array([0]), np.array([1]), neg="hard")


# =============================================================================================
# Feature store and loader


def test_features_nan_inf_are_reported_and_can_stop(tmp_path):
    x = np.ones((6, 3), np.float32)
    x[2, 1] = np.nan
    x[4, 0] = np.inf
    store = FeatureStore(x)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        report = store.validate()
    assert not report.ok
    with pytest.raises(FeatureStoreError, match="non-finite"):
        store.validate(raise_on_nonfinite=True)


@pytest.mark.parametrize("ids,match", [
    (np.array([0, 6]), "6"),
    (np.array([-1]), "-1"),
    (np.array([0.5]), "float"),
])
def test_feature_gather_bad_ids(ids, match):
    store = FeatureStore(np.zeros((6, 3), np.float32))
    with pytest.raises(FeatureStoreError, match=match):
        store.gather(ids)


@pytest.mark.parametrize("table,match", [
    (np.zeros((6, 4), np.float32)[:, ::2], "contiguous"),
    (np.zeros((6, 3), np.int64), "int64"),
    (np.zeros(6, np.float32), "2-D|shape"),
])
def test_feature_store_bad_table(table, match):
    with pytest.raises(FeatureStoreError, match=match):
        FeatureStore(table)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("placement", ["uva", "gpu", "cached"])
def test_gpu_placement_without_cuda(placement):
    with pytest.raises(DeviceUnavailableError):
        FeatureStore(np.zeros((6, 3), np.float32), placement=placement)


def test_unknown_placement():
    with pytest.raises(ConfigError, match="placement='ssd' is unknown"):
        FeatureStore(np.zeros((6, 3), np.float32), placement="ssd")


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": 4, "prefetch": -1}, "prefetch must be an int >= 0"),
    ({"batch_size": 4, "features": ArrayFeatures(np.zeros((10, 2), np.float32))}, "10 rows but the graph has 1000"),
])
def test_bad_loader_options(tiny, kwargs, match):
    s = NeighborSampler(load_dataset(tiny).graph, [2])
    with pytest.raises(ConfigError, match=match):
        NodeLoader(s, np.arange(20), **kwargs)


# =============================================================================================
# Training configuration and option combinations


@pytest.mark.parametrize("changes,match", [
    ({"model": "transformer-xl"}, "unknown model 'transformer-xl'"),
    ({"fanouts": "15,x,5"}, "fanouts: expected comma-separated integers"),
    ({"fanouts": [10, 0]}, "fanouts: each fanout must be a positive integer or -1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"lr": -0.1}, "lr must be a finite number >= 0"),
    ({"epochs": -1}, "epochs must be an integer >= 1"),
    ({"features": "tape"}, "features must be one of"),
    ({"metric": "hits@0"}, "metric must be"),
    ({"bogus_option": 1}, "unknown config option"),
])
def test_bad_train_config(tiny, tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        cfg = TrainConfig.from_dict({"dataset": str(tiny), "out": str(tmp_path / "run"), **changes})
        Trainer(cfg)


@pytest.mark.parametrize("changes,match", [
    ({"task": "link"}, "--task link: dataset 'tiny' has no train_pos"),
    ({"metric": "mrr"}, "metric 'mrr' does not fit a node task"),
    ({"features": "uva", "device": "cpu"}, "placement='uva' produces CUDA tensors"),
    ({"model_options": {"hiden": 64}}, r"unknown option\(s\) for model 'sage': hiden \(known: "),
    # quadratic attention over a whole mini-batch: refused when the run is configured, from the
    # batch size (here the evaluation batch) and fanouts, not at the first oversized batch
    ({"model": "gps", "fanouts": [10, 5], "batch_size": 8, "eval_batch_size": 64,
      "model_options": {"attention": "exact", "attn_group": "subgraph", "max_exact_nodes": 1000}},
     r"up to 3904 nodes \(batch_size=64, fanouts=\[10, 5\]\) exceeds max_exact_nodes=1000"),
])
def test_incompatible_option_combinations(tiny, tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        Trainer(TrainConfig(dataset=str(tiny), out=str(tmp_path / "run"), progress=False, **changes))


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'no-such-graph'"):
        Trainer(TrainConfig(dataset="no-such-graph", home=str(tmp_path), out=str(tmp_path / "r")))


def test_unknown_synthetic_preset_and_bad_scale(tmp_path):
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        synthetic.generate("huge", tmp_path / "x")
    with pytest.raises(ConfigError, match="scale must be a positive number"):
        synthetic.generate("tiny", tmp_path / "y", scale=-1.0)


# =============================================================================================
# Checkpoints: corrupt, foreign, hostile


@pytest.fixture(scope="module")
def finished_run(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    before = torch.get_num_threads()
    try:
        code = cli_main(["train", "--dataset", str(tiny), "--out", str(out), "--epochs", "1",
                         "--batch-size", "128", "--fanouts", "3,2", "--hidden", "16", "--max-batches", "2",
                         "--no-progress", "--num-threads", "1"])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out


def _copy_run(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_resume_from_truncated_checkpoint(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    ck = run / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 3])
    code, err = _cli(["train", "--resume", "--out", str(run), "--no-progress"], capsys)
    _one_line_error(code, err, "checkpoint.pt", "corrupt or unreadable checkpoint")


def test_resume_from_garbage_checkpoint(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    (run / "checkpoint.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(run / "checkpoint.pt")


def test_garbage_best_model_is_one_checkpoint_error(tmp_path):
    """best.pt goes through the same weights_only load as checkpoint.pt: one CheckpointError naming
    the file and what it is, no traceback of torch's."""
    from gnnsys.train.selection import load_best

    best = tmp_path / "best.pt"
    best.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"best\.pt: corrupt or unreadable best model \(\w+: "):
        load_best(best)


class _Exploit:
    """Unpickling this object would create a file (arbitrary code execution in a real attack)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_hostile_pickle_checkpoint_is_refused_without_running_code(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    target = tmp_path / "pwned"
    torch.save({"format": "gnnsys-checkpoint", "payload": _Exploit(str(target))}, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="corrupt or unreadable checkpoint .*UnpicklingError"):
        load_checkpoint(run / "checkpoint.pt")
    assert not target.exists()
    # the payload is live: a full unpickler would have run it
    torch.load(run / "checkpoint.pt", weights_only=False)
    assert target.exists()


def test_resume_from_a_foreign_checkpoint(finished_run, tiny, tmp_path, capsys):
    """A checkpoint of another configuration copied into a run folder is refused by fingerprint."""
    run = _copy_run(finished_run, tmp_path)
    other = _copy_run(finished_run, tmp_path / "o")
    cfg = json.loads((other / "config.json").read_text())
    cfg["lr"] = 0.5
    (other / "config.json").write_text(json.dumps(cfg))
    state = load_checkpoint(run / "checkpoint.pt")
    state["fingerprint"] = TrainConfig.from_dict(cfg).fingerprint()
    save_checkpoint(run / "checkpoint.pt", {k: v for k, v in state.items() if k not in ("format", "version")})
    code, err = _cli(["train", "--resume", "--out", str(run), "--no-progress"], capsys)
    _one_line_error(code, err, "checkpoint.pt", "different configuration")


def test_resume_with_different_options(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    code, err = _cli(["train", "--resume", "--out", str(run), "--lr", "0.1", "--no-progress"], capsys)
    _one_line_error(code, err, str(run), "lr")


def test_checkpoint_that_is_not_a_gnnsys_checkpoint(tmp_path):
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a gnnsys checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_existing_run_is_not_overwritten(finished_run, tiny, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    before = sha256_file(run / "checkpoint.pt")
    code, err = _cli(["train", "--dataset", str(tiny), "--out", str(run), "--no-progress"], capsys)
    _one_line_error(code, err, "already holds a run")
    assert sha256_file(run / "checkpoint.pt") == before


# =============================================================================================
# CLI


def test_cli_info_on_missing_dataset(tmp_path, capsys):
    code, err = _cli(["info", str(tmp_path / "missing") + os.sep], capsys)
    _one_line_error(code, err, "not a dataset folder")


def test_cli_info_validate_names_the_modified_file(ds_copy, capsys):
    lab = np.load(ds_copy / "labels.npy")
    lab[0] = (lab[0] + 1) % 4
    np.save(ds_copy / "labels.npy", lab)
    code, err = _cli(["info", str(ds_copy), "--validate"], capsys)
    _one_line_error(code, err, "labels.npy", "SHA-256")


def test_cli_prepare_unknown_name(tmp_path, capsys):
    code, err = _cli(["prepare", "ogbn-nonexistent-graph", "--home", str(tmp_path)], capsys)
    assert code == 2 and "ogbn-nonexistent-graph" in err and "Traceback" not in err


def test_cli_prepare_edges_without_out(tmp_path, capsys):
    edges = tmp_path / "e.csv"
    edges.write_text("0,1\n1,2\n")
    code, err = _cli(["prepare", "--edges", str(edges)], capsys)
    _one_line_error(code, err, "--edges needs --out")


def test_cli_prepare_malformed_edge_list(tmp_path, capsys):
    edges = tmp_path / "e.csv"
    edges.write_text("0,1\n1,banana\n")
    code, err = _cli(["prepare", "--edges", str(edges), "--out", str(tmp_path / "o")], capsys)
    _one_line_error(code, err, "e.csv")
    assert not (tmp_path / "o").exists()


def test_cli_prepare_csv_with_three_columns_is_not_read_as_2_by_e(tmp_path, capsys):
    """Two lines of three ids were silently taken as a [2, E] array (edges 0->1, 1->2, 5->5)."""
    edges = tmp_path / "e.csv"
    edges.write_text("0,1,5\n1,2,5\n")
    code, err = _cli(["prepare", "--edges", str(edges), "--out", str(tmp_path / "o")], capsys)
    _one_line_error(code, err, "e.csv", "expected 2 columns (src,dst) per line, got 3")
    assert not (tmp_path / "o").exists()


def test_prepare_edge_list_with_huge_sparse_ids(tmp_path, monkeypatch):
    """Ids like 2**40 ask for an indptr of 8 TB: a DatasetError, not a bare MemoryError traceback."""
    import gnnsys.data.sources as sources

    def no_memory(*args, **kwargs):
        raise MemoryError("Allocation failed")

    monkeypatch.setattr(sources, "build_csc", no_memory)
    np.save(tmp_path / "e.npy", np.array([[0, 2**40]], np.int64))
    with pytest.raises(DatasetError, match=r"e\.npy: node id 1099511627776 among 1 edges makes a graph"):
        sources.from_edge_list(tmp_path / "e.npy", tmp_path / "o")  # needs --num-nodes (issue 19)
    with pytest.raises(DatasetError, match=r"e\.npy: cannot allocate a graph of 1099511627777 nodes"):
        sources.from_edge_list(tmp_path / "e.npy", tmp_path / "o", num_nodes=2**40 + 1)
    assert not (tmp_path / "o").exists()


def test_cli_prepare_negative_seed(tmp_path, capsys):
    code, err = _cli(["prepare", "tiny", "--seed", "-5", "--out", str(tmp_path / "o")], capsys)
    _one_line_error(code, err, "seed must be an integer >= 0, got -5")


def test_cli_train_malformed_fanouts(tiny, tmp_path, capsys):
    code, err = _cli(["train", "--dataset", str(tiny), "--fanouts", "15,,5", "--out", str(tmp_path / "r")], capsys)
    _one_line_error(code, err, "--fanouts")


def test_cli_train_unknown_model_option(tiny, tmp_path, capsys):
    code, err = _cli(["train", "--dataset", str(tiny), "--model-option", "num_layer=2",
                      "--out", str(tmp_path / "r")], capsys)
    _one_line_error(code, err, "unknown option(s) for model 'sage': num_layer")


def test_cli_train_bad_config_file(tiny, tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text("{'dataset': 1}")
    code, err = _cli(["train", "--config", str(cfg), "--out", str(tmp_path / "r")], capsys)
    _one_line_error(code, err, "c.json", "not a valid JSON config")


def test_cli_resume_without_out(capsys):
    code, err = _cli(["train", "--resume"], capsys)
    _one_line_error(code, err, "--resume needs --out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cli_device_cuda_without_cuda_subprocess(tiny, tmp_path):
    """A real process: exit code 2, one line, no traceback, no hang."""
    proc = subprocess.run([sys.executable, "-m", "gnnsys", "train", "--dataset", str(tiny), "--device", "cuda",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    _one_line_error(proc.returncode, proc.stderr, "--device cuda", "CUDA is not available")


def test_cli_corrupt_dataset_subprocess(ds_copy, tmp_path):
    f = ds_copy / "graph/indptr.npy"
    f.write_bytes(f.read_bytes()[:-9])
    proc = subprocess.run([sys.executable, "-m", "gnnsys", "info", str(ds_copy)], capture_output=True, text=True,
                          timeout=120)
    _one_line_error(proc.returncode, proc.stderr, "graph/indptr.npy", "size")


# =============================================================================================
# No pickle on any load path reachable from someone else's files


def test_no_pickle_on_load_paths():
    """No np.load with allow_pickle=True (its default is False), every torch.load is
    weights_only=True (OGB's split files too, with only NumPy's array rebuild allowed), no
    pickle module -- but in gnnsys/data/safe_pickle.py, the one restricted unpickler of Planetoid's
    raw files (see tests/test_safe_load.py)."""
    offenders = []
    for path in list((REPO / "gnnsys").rglob("*.py")) + list((REPO / "samplers").rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(REPO).as_posix()
        if rel == "gnnsys/data/safe_pickle.py":
            assert "pickle.load(" not in text and "pickle.loads(" not in text and "class RestrictedUnpickler" in text
            continue
        for i, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if "allow_pickle=True" in code or "import pickle" in code or "pickle.load" in code:
                offenders.append(f"{rel}:{i}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_training_on_nan_features_stops_with_a_clear_error(tmp_path):
    """NaN features make the loss NaN: the run stops naming the epoch and batch (exit 2 in the
    CLI), and no checkpoint of the poisoned model is written."""
    from gnnsys import TrainingError
    from gnnsys.train import TrainConfig, train

    ds = save_nan_feature_dataset(tmp_path)
    cfg = TrainConfig(dataset=str(ds.path), epochs=1, batch_size=32, fanouts=[5, 5], progress=False,
                      out=str(tmp_path / "run"))
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 1, batch 1"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_ogb_split_file_with_a_pickled_object_is_refused(tmp_path):
    """An OGB-layout split file that smuggles a global (here the function os.getcwd) is refused by
    the restricted loader instead of being unpickled."""
    import torch

    from gnnsys.data.sources import load_ogb_split_file

    f = tmp_path / "valid.pt"
    torch.save({"edge": np.zeros((3, 2), np.int64), "x": os.getcwd}, f,
               _use_new_zipfile_serialization=False)
    with pytest.raises(DatasetError, match="valid.pt: not a readable OGB split file"):
        load_ogb_split_file(f)
    good = tmp_path / "test.pt"
    torch.save({"edge": np.arange(6, dtype=np.int64).reshape(3, 2)}, good, _use_new_zipfile_serialization=False)
    assert load_ogb_split_file(good)["edge"].tolist() == [[0, 1], [2, 3], [4, 5]]


class _Tripwire:
    """Unpickling this creates the file ``path`` (proof that a pickle was executed)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_ogb_processed_cache_from_elsewhere_is_never_unpickled(tmp_path, shared_data):
    """A ``processed/data_processed`` pickle shipped inside someone else's OGB folder is ignored:
    ogb rebuilds its cache from the raw files in a private staging folder."""
    import torch

    from gnnsys.data.sources import from_ogb

    root = tmp_path / "ogb"
    shutil.copytree(shared_data("ogb/ogbl_ddi"), root / "ogbl_ddi")  # fails in CI when missing
    (root / "ogbl_ddi" / "processed").mkdir()
    marker = tmp_path / "pickle-was-executed"
    torch.save(_Tripwire(str(marker)), root / "ogbl_ddi" / "processed" / "data_processed")
    ds = from_ogb("ogbl-ddi", root, tmp_path / "out")
    assert not marker.exists()
    assert ds.num_nodes == 4267 and ds.splits["train_pos"].shape == (1067911, 2)
    assert not (root / "ogbl_ddi" / "processed" / "raw").exists()  # nothing written into the user's folder
