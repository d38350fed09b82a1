"""Out-of-core preparation: disk checked first, a killed preparation never loadable and cleaned
up by the next one, stage statistics, bounded chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gnnsys.data.synthetic as syn
from gnnsys.cli import main
from gnnsys.data.csc import build_csc
from gnnsys.data.format import load_dataset
from gnnsys.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]


def test_not_enough_disk_refused_before_writing(tmp_path, monkeypatch, capsys):
    real = syn.shutil.disk_usage
    monkeypatch.setattr(syn.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    rc = main(["prepare", "small", "--out", str(tmp_path / "d"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "GiB of free disk" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_stages_reported_and_csc_equals_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(syn, "EDGE_CHUNK", 10_000)  # many edge chunks
    stats: dict = {}
    ds = syn.generate("small", tmp_path / "d", seed=1, stats=stats)
    assert set(stats["stages"]) == {"node attributes", "edges -> buckets", "buckets -> CSC", "features",
                                    "labels, splits, checksums"}
    assert all(r["peak_rss_bytes"] > 0 and r["seconds"] >= 0 for r in stats["stages"].values())
    assert stats["disk_estimate_bytes"] >= sum(f["bytes"] for f in ds.meta["files"].values())
    # the same edges through the in-memory CSC
    p = syn.get_preset("small")
    rng_nodes = syn._streams(1, 3)[0]
    labels, theta = syn._node_attributes(p, rng_nodes)
    model = syn._EdgeModel(labels, theta, p.num_classes, p.homophily)
    pairs = [model.sample(r, min(10_000, p.num_edges - i * 10_000))
             for i, r in enumerate(syn._streams(2, -(-p.num_edges // 10_000)))]
    src = np.concatenate([a for a, _ in pairs])
    dst = np.concatenate([b for _, b in pairs])
    ref = build_csc(src, dst, p.num_nodes, symmetrize=True, drop_self_loops=True, drop_duplicates=True,
                    track_edge_ids=False)
    assert np.array_equal(ds.indptr, ref.indptr) and np.array_equal(ds.indices, ref.indices)


def test_killed_preparation_is_never_loadable_and_next_starts_clean(tmp_path):
    out = tmp_path / "big"
    code = ("import sys; from gnnsys.data.synthetic import generate; "
            "generate('papers100m-like', sys.argv[1], scale=0.003)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until it is writing buckets
            tmps = list(tmp_path.glob(".big.tmp-*"))
            if tmps and any((t / ".scratch").is_dir() and any((t / ".scratch").iterdir()) for t in tmps):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the preparation never started writing")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    with pytest.raises(DatasetError):
        load_dataset(out)
    stale = list(tmp_path.glob(".big.tmp-*"))
    assert stale and not any((t / "meta.json").exists() for t in stale)
    ds = syn.generate("papers100m-like", out, scale=0.0005)  # the next preparation starts clean
    assert not any(p.exists() for p in stale)
    assert ds.num_nodes == syn.get_preset("papers100m-like", 0.0005).num_nodes
    load_dataset(out, validate="full")


def test_second_writer_of_the_same_dataset_is_refused(tmp_path):
    from gnnsys.data.format import DatasetWriter

    w = DatasetWriter(tmp_path / "d")
    from gnnsys.data.atomic import LockHeldError

    with pytest.raises(LockHeldError, match="is writing this dataset"):
        DatasetWriter(tmp_path / "d")
    w.abort()
    DatasetWriter(tmp_path / "d").abort()  # released
