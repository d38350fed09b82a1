"""The run folder's writer lock and the staged replacement of ``--overwrite``.

- One writer per run folder: rank 0 holds :class:`~gnnsys.data.atomic.WriterLock` on ``--out``
  (the hidden sibling ``.NAME.lock``) for the whole run; a second ``gnnsys train`` on the same
  ``--out`` stops at once with one line naming the holder's pid. A lock left by a killed process
  is taken over.
- ``--overwrite`` of a folder that holds a run trains the new run in a hidden sibling
  (``.NAME.new-XXXXXXXX``) and renames it into place only when it finished: until then the old
  run stays byte-identical, whatever happens (an exception, a full disk, a kill). A staging
  folder left by a killed process is removed by the next writer.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.atomic import (
    LockHeldError,
    WriterLock,
    is_disk_full,
    remove_stale_siblings,
    swap_into_place,
    temp_sibling,
)
from ..errors import ConfigError, GnnsysError
from .build import default_out_dir
from .config import TrainConfig


@dataclass
class RunGuard:
    """What :func:`open_guard` decided for a run.

    Attributes:
        config: the config to train (``out`` is the staging folder when replacing a run).
        overwrite: the ``overwrite`` to hand to the trainer (``False`` in a fresh staging folder).
        final: the run folder the user asked for.
        staging: the hidden sibling being written, or ``None`` (training writes ``final``).
        lock: the writer lock (held on rank 0 only).
    """

    config: TrainConfig
    overwrite: bool
    final: Path
    staging: Path | None
    lock: WriterLock | None

    def finish(self, summary: dict[str, Any], is_main: bool) -> dict[str, Any]:
        """After a successful run: move the staged run into place (rank 0) and return the summary
        with the final folder's paths."""
        if self.staging is None:
            return summary
        if is_main:
            _relocate_records(self.staging, self.final)
            swap_into_place(self.staging, self.final)
        return _replace_paths(summary, str(self.staging), str(self.final))

    def fail(self, exc: BaseException, is_main: bool) -> None:
        """After a failed run: remove the staging folder (the old run is untouched); a full disk
        becomes one line. Re-raises (or raises the one-line error)."""
        if is_main and self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        if is_disk_full(exc) and not isinstance(exc, GnnsysError):
            where = (f"; the partial new run was removed and the existing run in {self.final} is unchanged"
                     if self.staging is not None else "")
            raise ConfigError(f"--out {self.final}: disk full while writing the run folder (No space left "
                              f"on device){where}. Free space or choose another --out") from None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _holds_run(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").exists() or (path / "checkpoint.pt").exists()
                              or any(path.glob("run-*/config.json")))


def check_out(path: Path) -> None:
    """``--out`` must be a folder (or absent) under a writable parent: ConfigError otherwise."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a folder; choose another --out")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot create its parent folder {parent} ({e.strerror or e}); "
                          "choose another --out") from None
    if not os.access(parent, os.W_OK | os.X_OK) or (path.is_dir() and not os.access(path, os.W_OK | os.X_OK)):
        where = path if path.is_dir() and not os.access(path, os.W_OK | os.X_OK) else parent
        raise ConfigError(f"--out {path}: {where} is not writable; choose another --out")


def open_guard(config: TrainConfig, *, resume: bool, overwrite: bool, ctx: Any = None) -> RunGuard:
    """Resolve ``--out``, take its lock (rank 0) and decide where the run is written.

    Every rank of a data-parallel run gets rank 0's decision (or its error).
    """
    from .protocol import _agree

    is_main = ctx is None or not getattr(ctx, "enabled", False) or ctx.is_main
    if config.out is None:
        config = config.replace(out=str(_agree(ctx, str(default_out_dir(config)) if is_main else None)))
    final = Path(config.out)
    verdict: tuple[str, str] | str | None = None
    lock = None
    if is_main:
        try:
            check_out(final)
            lock = WriterLock(final, "run folder").acquire()
            staging = None
            if overwrite and not resume and _holds_run(final):
                remove_stale_siblings(final, "new")  # left by killed --overwrite runs
                staging = temp_sibling(final, "new")
            verdict = None if staging is None else str(staging)
        except (ConfigError, LockHeldError, GnnsysError) as e:
            if lock is not None:
                lock.release()
                lock = None
            msg = str(e)
            if isinstance(e, LockHeldError):
                msg = "--out " + msg.replace("choose another path", "choose another --out")
            verdict = ("error", msg)
    verdict = _agree(ctx, verdict)
    if isinstance(verdict, tuple):
        raise ConfigError(verdict[1])
    if verdict is None:
        return RunGuard(config, overwrite, final, None, lock)
    staging = Path(verdict)
    return RunGuard(config.replace(out=str(staging)), False, final, staging, lock)


def _relocate_records(staging: Path, final: Path) -> None:
    """Rewrite the staging path as the final one in the run's JSON records (``config.json``,
    ``summary.json``, ``metrics.jsonl``), byte for byte otherwise."""
    import json

    old, new = json.dumps(str(staging))[1:-1], json.dumps(str(final))[1:-1]
    for p in list(staging.rglob("*.json")) + list(staging.rglob("*.jsonl")):
        text = p.read_text()
        if old in text:
            tmp = temp_sibling(p, "tmp")
            tmp.write_text(text.replace(old, new))
            os.replace(tmp, p)


def _replace_paths(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, dict):
        return {k: _replace_paths(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_paths(v, old, new) for v in obj]
    return obj
