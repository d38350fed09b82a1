"""Checkpoints for exact resume: plain tensors and dicts only, written atomically, loaded with
``torch.load(weights_only=True)`` (no pickle on the load path).

A checkpoint holds the model, optimizer and scheduler state, every RNG state the run consumes
(torch CPU and CUDA), the loader position ``(epoch, batch_index)``, the partial sums of the
epoch in progress, the per-epoch history, and the config fingerprint it belongs to.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

from ..data.atomic import fsync_dir
from ..errors import CheckpointError, ConfigError

FORMAT = "gnnsys-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "fingerprint", "model", "optimizer", "scheduler", "rng", "position",
            "history", "global_step")


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU, and every CUDA device when present) as uint8 tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s output."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temp file, fsync and ``os.replace``: a kill at any
    moment leaves either the previous checkpoint or the new one, never a torn file."""
    atomic_torch_save(path, {"format": FORMAT, "version": VERSION, **state})


def atomic_torch_save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save(payload)`` (plain tensors, dicts, lists, numbers, strings: loadable with
    ``weights_only=True``) to ``path`` through a temp file, fsync and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    # temp files of writes that a SIGKILL interrupted (no `finally` ran): the new checkpoint
    # supersedes them, and each is as large as a checkpoint
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    fsync_dir(path.parent)  # make the rename itself durable


def load_weights_only(path: Path, map_location: str | torch.device, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` (no pickle runs); any failure (truncated zip, garbage
    bytes, pickled objects refused by ``weights_only``) becomes one line,
    ``CheckpointError("{path}: corrupt or unreadable {what} ({error type}: {its first line})")``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, pickled objects refused by weights_only
        raise CheckpointError(f"{path}: corrupt or unreadable {what} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def load_checkpoint(path: str | os.PathLike, fingerprint: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated, not a gnnsys checkpoint, lacks a field,
            or (when ``fingerprint`` is given) belongs to a different configuration.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    state = load_weights_only(path, map_location, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gnnsys checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, expected {VERSION}")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if fingerprint is not None and state["fingerprint"] != fingerprint:
        raise CheckpointError(f"{path}: checkpoint belongs to a different configuration "
                              f"(fingerprint {state['fingerprint'][:12]} != {fingerprint[:12]})")
    return state


def load_for_resume(path: str | os.PathLike, config: Any) -> dict[str, Any]:
    """The checkpoint at ``path``, checked against ``config`` (a TrainConfig) for ``--resume``.

    ``epochs`` alone may differ from the config the checkpoint was written under (its
    ``config_epochs``; checkpoints without it were written under ``config.epochs``): a run goes on
    to more epochs exactly as if it had been started with them, but may not drop epochs it has
    already trained (ConfigError). Any other difference is a CheckpointError.
    """
    ck = load_checkpoint(path)
    want = config.replace(epochs=int(ck.get("config_epochs", config.epochs))).fingerprint()
    if ck["fingerprint"] != want:
        raise CheckpointError(f"{path}: checkpoint belongs to a different configuration "
                              f"(fingerprint {ck['fingerprint'][:12]} != {want[:12]})")
    done = int(ck["position"]["epoch"])
    if config.epochs < done:
        raise ConfigError(f"{path}: the run already trained {done} epochs; --epochs {config.epochs} "
                          f"would undo them (give at least {done})")
    return ck


def resume_differences(config: Any, saved: Any, where: Path) -> list[str]:
    """The options of ``config`` that ``--resume`` refuses against the run's saved config: every
    result-determining one but ``epochs`` (see :func:`load_for_resume`), which may not change
    under a cosine schedule (its learning-rate curve spans the epochs)."""
    diff = config.differences(saved)
    if "epochs" in diff:
        diff.remove("epochs")
        if config.scheduler == "cosine":
            raise ConfigError(f"{where}: --epochs cannot change on --resume with --scheduler cosine (its "
                              f"learning-rate schedule spans the {saved.epochs} epochs); resume with the "
                              "same --epochs")
    return diff
