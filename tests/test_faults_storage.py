"""Fault injection on dataset preparation: SIGKILL of ``gnnsys prepare`` while it writes.

- killed while writing arrays: nothing appears under the final name (a fresh preparation), or the
  previous dataset stays untouched (``--overwrite``); only a hidden ``.NAME.tmp-*`` folder is left;
- killed between the two renames of an ``--overwrite`` commit (old dataset moved aside, new one not
  yet in place): loading the path raises :class:`DatasetError` whose message names the complete
  copies left behind, so the user can rename one back.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from file_digests import file_digests

from gnnsys.data import load_dataset, synthetic
from gnnsys.errors import DatasetError

DRIVER = r'''
import os, signal, sys
from pathlib import Path
import gnnsys.data.format as fmt

mode, count = sys.argv[1], int(sys.argv[2])
calls = [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if mode == "write":  # die in the count-th whole-array write
    real = fmt.DatasetWriter.write
    def write(self, rel, array):
        calls[0] += 1
        if calls[0] == count:
            die()
        return real(self, rel, array)
    fmt.DatasetWriter.write = write
elif mode == "swap":  # die after the old dataset is moved aside, before the new one is renamed in
    real_replace = os.replace
    def replace(src, dst, *a, **k):
        out = real_replace(src, dst, *a, **k)
        if ".old-" in Path(dst).name:
            die()
        return out
    fmt.os.replace = replace
from gnnsys.cli import main
sys.exit(main(sys.argv[3:]))
'''


def _run(tmp_path: Path, mode: str, count: int, argv: list[str]) -> int:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(script), mode, str(count), *argv], capture_output=True,
                          text=True, timeout=180)
    return proc.returncode


def test_kill_while_writing_a_fresh_dataset_leaves_nothing_under_the_name(tmp_path):
    out = tmp_path / "ds"
    assert _run(tmp_path, "write", 2, ["prepare", "tiny", "--out", str(out)]) == -signal.SIGKILL
    assert not out.exists()
    assert [p.name.startswith(".ds.tmp-") for p in tmp_path.iterdir() if p.is_dir()] == [True]
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(out)


def test_kill_while_overwriting_keeps_the_previous_dataset(tmp_path):
    out = tmp_path / "ds"
    synthetic.generate("tiny", out, seed=0)
    before = file_digests(out)
    assert _run(tmp_path, "write", 3, ["prepare", "tiny", "--seed", "1", "--out", str(out), "--overwrite"]) \
        == -signal.SIGKILL
    assert file_digests(out) == before
    load_dataset(out)


def test_kill_between_the_commit_renames_names_the_copies_left(tmp_path):
    out = tmp_path / "ds"
    old = synthetic.generate("tiny", out, seed=0)
    old_labels = np.array(old.labels)
    del old
    assert _run(tmp_path, "swap", 0, ["prepare", "tiny", "--seed", "1", "--out", str(out), "--overwrite"]) \
        == -signal.SIGKILL
    assert not out.exists()
    with pytest.raises(DatasetError) as info:
        load_dataset(out)
    msg = str(info.value)
    assert "interrupted" in msg and ".ds.old-" in msg and ".ds.tmp-" in msg, msg
    # the previous version is complete: renaming it back restores it exactly
    previous = next(p for p in tmp_path.iterdir() if p.name.startswith(".ds.old-"))
    os.replace(previous, out)
    assert np.array_equal(load_dataset(out).labels, old_labels)
    shutil.rmtree(next(p for p in tmp_path.iterdir() if p.name.startswith(".ds.tmp-")))
