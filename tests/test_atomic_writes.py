"""Issue 19, item 1: datasets and run folders are written in a temporary sibling, validated, then
renamed into place; every writer holds a lock. Each failure leaves what existed byte-identical
(checksums of every file before and after) and ends in one line with exit code 2."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from file_digests import file_digests

from gnnsys.cli import main
from gnnsys.data import load_dataset, synthetic
from gnnsys.data.atomic import WriterLock, lock_path

REPO = Path(__file__).resolve().parents[1]


def _hidden_leftovers(parent: Path) -> list[str]:
    """Hidden temporaries beside the targets (lock files are expected and kept)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def _edge_files(tmp_path: Path) -> dict[str, Path]:
    e = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4]], dtype=np.int64)
    np.save(tmp_path / "edges.npy", e)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=np.int64))
    np.save(tmp_path / "train.npy", np.array([0, 1, 2], dtype=np.int64))
    np.save(tmp_path / "bad_train.npy", np.array([0, 1, 99], dtype=np.int64))  # id 99 of 8 nodes
    return {k: tmp_path / f"{k}.npy" for k in ("edges", "labels", "train", "bad_train")}


def _prepare_edges(f: dict[str, Path], out: Path, train: Path, *extra: str) -> int:
    return main(["prepare", "--edges", str(f["edges"]), "--labels", str(f["labels"]),
                 "--split", f"train={train}", "--out", str(out), *extra])


# ------------------------------------------------------------------------------------- datasets


def test_overwrite_with_an_invalid_dataset_keeps_the_old_one(tmp_path, capsys):
    f = _edge_files(tmp_path)
    out = tmp_path / "ds"
    assert _prepare_edges(f, out, f["train"]) == 0
    before = file_digests(out)
    capsys.readouterr()
    # the edge-list converter finds the bad split while reading the user's file
    assert _prepare_edges(f, out, f["bad_train"], "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnnsys: error: ") and len(err.splitlines()) == 1, err
    assert f"{f['bad_train']}: node id 99 out of range [0, 8)" in err, err
    assert file_digests(out) == before
    assert _hidden_leftovers(tmp_path) == []
    load_dataset(out, validate=True)


def test_save_dataset_validates_in_the_temporary_sibling_before_replacing(tmp_path):
    """A bad array that only validation finds (after every array was written) leaves the old
    dataset byte-identical: save_dataset is given the bad split directly, no converter checks it."""
    from gnnsys import DatasetError
    from gnnsys.data import save_dataset

    f = _edge_files(tmp_path)
    out = tmp_path / "ds"
    assert _prepare_edges(f, out, f["train"]) == 0
    before = file_digests(out)
    old = load_dataset(out)
    with pytest.raises(DatasetError) as info:
        save_dataset(out, name="edges", task="node", graph=old.graph, labels=np.asarray(old.labels),
                     num_classes=2, splits={"train": np.array([0, 1, 99], dtype=np.int64)},
                     overwrite=True)
    msg = str(info.value)
    assert "split/train.npy: node id 99 out of range [0, 8)" in msg, msg
    assert "existing" in msg and "unchanged" in msg, msg
    assert file_digests(out) == before
    assert _hidden_leftovers(tmp_path) == []
    load_dataset(out, validate=True)


def test_disk_full_while_preparing_removes_partial_files_and_keeps_the_old_dataset(tmp_path, capsys,
                                                                                  monkeypatch):
    import gnnsys.data.external_csc as ext

    out = tmp_path / "ds"
    synthetic.generate("tiny", out, seed=0)
    before = file_digests(out)
    real = ext.NpyOut.write
    calls = [0]

    def write(self, *args, **kwargs):  # the disk fills up at the second positioned write
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ext.NpyOut, "write", write)
    assert main(["prepare", "tiny", "--seed", "1", "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gnnsys: error: {out}: disk full while writing the dataset (No space left on device); "
                   f"the partial files were removed; the existing ds is unchanged. Free space or choose "
                   "another --out"), err
    assert file_digests(out) == before
    assert _hidden_leftovers(tmp_path) == []


def test_disk_full_on_a_fresh_dataset_leaves_nothing(tmp_path, capsys, monkeypatch):
    import gnnsys.data.format as fmt

    f = _edge_files(tmp_path)
    out = tmp_path / "ds"
    real_save = np.save
    calls = [0]

    def save(path, arr, *a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(fmt.np, "save", save)
    assert _prepare_edges(f, out, f["train"]) == 2
    monkeypatch.setattr(fmt.np, "save", real_save)
    err = capsys.readouterr().err
    assert "disk full while writing the dataset" in err and "partial files were removed" in err, err
    assert not out.exists()
    assert _hidden_leftovers(tmp_path) == []


HOLD = textwrap.dedent("""
    import sys, time
    from gnnsys.data.atomic import WriterLock
    lock = WriterLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    if sys.argv[2] == "die":
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
""")


def _hold_lock(target: Path, mode: str = "hold") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), mode], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_of_a_dataset_exits_2_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "ds"
    synthetic.generate("tiny", out, seed=0)
    before = file_digests(out)
    proc = _hold_lock(out)
    try:
        capsys.readouterr()
        assert main(["prepare", "tiny", "--seed", "1", "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"gnnsys: error: {out}: process {proc.pid} is writing this dataset (lock "
                       f"{lock_path(out)}); wait for it to finish, or stop it, or choose another path"), err
        assert file_digests(out) == before
    finally:
        proc.kill()
        proc.wait()
    # the holder is dead: its lock is taken over
    assert main(["prepare", "tiny", "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    assert file_digests(out) != before


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "ds"
    proc = _hold_lock(out, "die")
    assert proc.wait() == -signal.SIGKILL
    assert lock_path(out).read_text().strip() == str(proc.pid)  # the dead holder's record is left
    assert main(["prepare", "tiny", "--out", str(out)]) == 0
    with WriterLock(out):  # released after the write
        pass


# ----------------------------------------------------------------------------------- run folders


def _train(ds: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(ds), "--out", str(out), "--epochs", "1", "--batch-size", "64",
            "--fanouts", "3,3", "--hidden", "8", "--num-threads", "1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synthetic.generate("tiny", out, seed=3)
    return out


def test_failed_overwrite_of_a_run_keeps_the_old_run(tiny, tmp_path, capsys, monkeypatch):
    from gnnsys.train.trainer import Trainer

    out = tmp_path / "run"
    assert main(_train(tiny, out)) == 0
    before = file_digests(out)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_epoch", full)
        capsys.readouterr()
        assert main(_train(tiny, out, "--overwrite", "--seed", "5")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gnnsys: error: --out {out}: disk full while writing the run folder (No space left on "
                   f"device); the partial new run was removed and the existing run in {out} is unchanged. "
                   "Free space or choose another --out"), err
    assert file_digests(out) == before
    assert _hidden_leftovers(tmp_path) == []

    with monkeypatch.context() as m:  # any other exception: the same guarantee, its own message
        m.setattr(Trainer, "_train_epoch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            main(_train(tiny, out, "--overwrite", "--seed", "5"))
    assert file_digests(out) == before
    assert _hidden_leftovers(tmp_path) == []


def test_successful_overwrite_replaces_the_run_and_records_the_final_folder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(tiny, out)) == 0
    old = file_digests(out)
    capsys.readouterr()
    assert main(_train(tiny, out, "--overwrite", "--seed", "5")) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["run_folder"] == str(out)
    assert file_digests(out) != old
    assert json.loads((out / "config.json").read_text())["out"] == str(out)
    assert json.loads((out / "config.json").read_text())["seed"] == 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_folder"] == str(out) and summary["best_model"] == str(out / "best.pt")
    assert _hidden_leftovers(tmp_path) == []
    # the replaced run is an ordinary, resumable run
    assert main(_train(tiny, out, "--seed", "5", "--resume", "--epochs", "2")) == 0


def test_two_trainings_on_the_same_out_second_exits_2(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    proc = _hold_lock(out)
    try:
        capsys.readouterr()
        assert main(_train(tiny, out)) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"gnnsys: error: --out {out}: process {proc.pid} is writing this run folder (lock "
                       f"{lock_path(out)}); wait for it to finish, or stop it, or choose another --out"), err
        assert not out.exists()
    finally:
        proc.kill()
        proc.wait()


def test_out_that_is_a_file_or_unwritable(tiny, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("keep me\n")
    assert main(_train(tiny, f)) == 2
    assert capsys.readouterr().err.strip() == (f"gnnsys: error: --out {f}: exists and is not a folder; "
                                               "choose another --out")
    assert f.read_text() == "keep me\n"
    bad = f / "run"  # its parent is a file: cannot be created
    assert main(_train(tiny, bad)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gnnsys: error: --out {bad}: cannot create its parent folder {f}"), err
    assert main(["prepare", "tiny", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gnnsys: error: {bad}: cannot create the output folder"), err
    assert main(["prepare", "tiny", "--out", str(f)]) == 2
    assert capsys.readouterr().err.strip() == (f"gnnsys: error: {f}: exists and is not a folder; "
                                               "choose another output path")
    assert f.read_text() == "keep me\n"


SLOW_PREPARE = textwrap.dedent("""
    import sys, time
    import gnnsys.data.format as fmt
    real = fmt.DatasetWriter.write
    def write(self, rel, array):
        time.sleep(1.0)
        return real(self, rel, array)
    fmt.DatasetWriter.write = write
    from gnnsys.data.registry import resolve
    resolve("tiny", home=sys.argv[1])
""")


def test_second_process_wanting_the_same_cached_dataset_waits_for_the_first(tmp_path, capsys):
    import time

    from gnnsys.data.registry import prepared_path, resolve

    home = tmp_path / "home"
    cached = prepared_path("tiny", home)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE, str(home)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (lock_path(cached).is_file() and lock_path(cached).read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "the first process never locked"
            time.sleep(0.05)
        ds = resolve("tiny", home=home)  # waits instead of failing or preparing twice
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert f"waiting for process {proc.pid} to finish preparing {cached}" in capsys.readouterr().err
    assert ds.num_nodes == 1000
    assert _hidden_leftovers(cached.parent) == []


def test_failed_overwrite_of_runs_keeps_every_old_run(tiny, tmp_path, capsys, monkeypatch):
    """--runs N: the parent folder and its run-K folders are replaced together or not at all."""
    from gnnsys.train.trainer import Trainer

    out = tmp_path / "runs"
    assert main(_train(tiny, out, "--runs", "2")) == 0
    before = file_digests(out)
    real_fit = Trainer.fit
    calls = [0]

    def fit(self):
        calls[0] += 1
        if calls[0] == 2:  # the second run fails after the first was written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    capsys.readouterr()
    assert main(_train(tiny, out, "--runs", "2", "--overwrite", "--seed", "9")) == 2
    assert "disk full while writing the run folder" in capsys.readouterr().err
    assert file_digests(out) == before
    assert _hidden_leftovers(tmp_path) == []
    monkeypatch.setattr(Trainer, "fit", real_fit)
    assert main(_train(tiny, out, "--runs", "2", "--overwrite", "--seed", "9")) == 0
    assert json.loads((out / "run-1" / "config.json").read_text())["out"] == str(out / "run-1")
    assert json.loads((out / "summary.json").read_text())["seeds"] == [9, 10]


def test_dot_and_dotdot_paths_lock_their_folder(tmp_path, monkeypatch):
    from gnnsys.data.atomic import temp_sibling

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert lock_path(".") == tmp_path / ".work.lock" == lock_path("sub/..")
    assert temp_sibling(".", "new").parent == tmp_path
