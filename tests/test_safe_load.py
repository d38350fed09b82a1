"""Issue 19, item 2: nothing from a file runs on load. Planetoid raw pickles go through a
restricted unpickler; OGB split files through ``torch.load(weights_only=True)``; every
``torch.load`` in the package passes ``weights_only=True``; ``prepare ogbn-*`` offline is one line
saying where to put the files, never an ``input()`` prompt."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnsys.cli import main
from gnnsys.data.safe_pickle import read_planetoid_raw, safe_load_pickle
from gnnsys.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]


class _Evil:
    """Unpickling this runs ``os.system`` (creates the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilFactory:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # hidden inside an allowed container: defaultdict(<os.system call>)
        import collections

        return (collections.defaultdict, (_Evil(self.marker),))


def _copy_cora(planetoid_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "planetoid"
    shutil.copytree(planetoid_root / "Cora", root / "Cora")
    return root


@pytest.mark.parametrize("part,payload", [("x", "plain"), ("graph", "nested"), ("tx", "protocol0")])
def test_crafted_planetoid_file_runs_nothing(planetoid_root, tmp_path, capsys, part, payload):
    root = _copy_cora(planetoid_root, tmp_path)
    marker = tmp_path / "marker"
    f = root / "Cora" / "raw" / f"ind.cora.{part}"
    obj = _Evil(marker) if payload != "nested" else _EvilFactory(marker)
    f.write_bytes(pickle.dumps(obj, protocol=0 if payload == "protocol0" else 2))
    # sanity: an ordinary unpickler would run it
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()
    assert main(["prepare", "cora", "--root", str(root), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gnnsys: error: {f}: refuses to unpickle posix.system (only NumPy arrays, SciPy sparse "
                   "matrices and plain lists/dicts are allowed in Planetoid raw files; the file may be "
                   "crafted -- nothing from it was run)"), err
    assert not marker.exists()
    assert not (tmp_path / "ds").exists()


def test_safe_unpickler_refuses_builtins_eval(tmp_path):
    f = tmp_path / "ind.cora.y"
    f.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")  # eval('1+1') in protocol 0
    with pytest.raises(DatasetError, match=r"refuses to unpickle builtins\.eval"):
        safe_load_pickle(f)


@pytest.mark.parametrize("name,key", [("Cora", "cora"), ("CiteSeer", "citeseer")])
def test_planetoid_reads_exactly_as_pyg(planetoid_root, tmp_path, name, key):
    """The same tensors as PyG's own reader (which unpickles freely), bit for bit."""
    from torch_geometric.io.planetoid import read_planetoid_data

    raw = tmp_path / "raw"
    shutil.copytree(planetoid_root / name / "raw", raw)
    ref = read_planetoid_data(str(raw), key)
    got = read_planetoid_raw(raw, key)
    for attr in ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask"):
        a, b = getattr(ref, attr), getattr(got, attr)
        assert a.dtype == b.dtype and torch.equal(a, b), attr


def test_prepare_cora_writes_nothing_under_root(planetoid_root, tmp_path):
    root = _copy_cora(planetoid_root, tmp_path)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert main(["prepare", "cora", "--root", str(root), "--out", str(tmp_path / "ds")]) == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # no processed/ cache


def test_crafted_ogb_split_file_runs_nothing(tmp_path):
    from gnnsys.data.sources import load_ogb_split_file

    marker = tmp_path / "marker"
    f = tmp_path / "train.pt"
    torch.save({"edge": np.zeros((2, 2), np.int64), "evil": _Evil(marker)}, f)
    with pytest.raises(DatasetError, match="not a readable OGB split file"):
        load_ogb_split_file(f)
    assert not marker.exists()


def test_every_torch_load_is_weights_only():
    calls = []
    for p in sorted((REPO / "gnnsys").rglob("*.py")) + sorted((REPO / "samplers").rglob("*.py")):
        text = p.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((p.name, text[m.start():i]))
    assert len(calls) >= 3, "the scan found no torch.load: it is broken"
    bad = [(n, c) for n, c in calls if "weights_only=True" not in c]
    assert not bad, bad
    for p in sorted((REPO / "gnnsys").rglob("*.py")):
        text = p.read_text()
        assert "weights_only=False" not in text, p
        assert "pickle.load(" not in text and "pickle.loads(" not in text, p


def test_prepare_ogbn_offline_says_where_to_put_the_files(tmp_path, capsys, monkeypatch):
    import builtins

    import gnnsys.data.ogb_offline as off

    monkeypatch.setattr(off, "url_reachable", lambda url, timeout=0: "URLError: offline")

    def never(*a, **k):
        raise AssertionError("input() was called")

    monkeypatch.setattr(builtins, "input", never)
    root = tmp_path / "raw"
    root.mkdir()
    assert main(["prepare", "ogbn-arxiv", "--root", str(root), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    url = "http://snap.stanford.edu/ogb/data/nodeproppred/arxiv.zip"
    assert err == (f"gnnsys: error: ogbn-arxiv: raw files not found ({root}/ogbn_arxiv/raw/edge.csv.gz is "
                   f"missing) and {url} cannot be reached (URLError: offline). Download {url} on a machine "
                   f"with network, unzip it into {root} so that {root}/ogbn_arxiv/raw/edge.csv.gz exists, "
                   f"then run `gnnsys prepare ogbn-arxiv --root {root}`"), err
    assert not (tmp_path / "ds").exists()


def test_ogb_question_becomes_an_error(tmp_path, monkeypatch):
    """Whatever makes ogb ask on stdin inside the reader ends in DatasetError, never a prompt."""
    import ogb.nodeproppred.dataset as node_ds

    from gnnsys.data.ogb_offline import ogb_without_prompts

    with ogb_without_prompts("ogbn-arxiv", tmp_path, "ogbn_arxiv", {}):
        with pytest.raises(DatasetError, match="gnnsys never answers prompts"):
            node_ds.input("Will you update the dataset now? (y/N)\n")
        assert node_ds.decide_download("http://x") is True
    assert "input" not in node_ds.__dict__  # restored


def test_prepare_ogbn_offline_in_a_real_process_never_waits_on_stdin(tmp_path):
    """stdin an open pipe that never answers (not a terminal): exit 2 with the one line, no hang."""
    import subprocess
    import sys

    root = tmp_path / "raw"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GNNSYS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gnnsys", "prepare", "ogbn-arxiv", "--root", str(root),
                             "--out", str(tmp_path / "ds")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        proc.wait(timeout=180)  # stdin stays open and silent all along (a prompt would wait forever)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.kill()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnnsys: error: ogbn-arxiv: raw files not found ("), err
    assert "(GNNSYS_OFFLINE is set)" in lines[0] and "then run `gnnsys prepare ogbn-arxiv --root" in lines[0]
    assert out == "" and not (tmp_path / "ds").exists()
