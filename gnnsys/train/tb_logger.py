"""``--logger tensorboard``: each epoch's record as TensorBoard scalars, beside ``metrics.jsonl``.

Written by ``torch.utils.tensorboard.SummaryWriter`` to ``<run>/tensorboard/`` with the epoch
(1-based) as the step:

- ``loss/train``: the epoch's mean training loss;
- ``<split>/<metric>``: every evaluation, e.g. ``valid/acc``, ``test/hits@20``;
- ``time/<stage>``: seconds per epoch in ``sample``, ``gather``, ``compute``, ``wait``,
  ``epoch`` and ``eval``;
- ``throughput/<unit>_per_s``: training seeds (node task) or positive edges (link task) per second.

TensorBoard is an optional extra (``pip install tensorboard``, or ``gnnsys[tensorboard]``); asking
for it without the package is a :class:`~gnnsys.errors.ConfigError`, raised before training starts.
Each epoch is logged just before its checkpoint, and a (resumed) run purges the steps from its
first epoch on, so the curves hold each epoch once, also after a kill.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError

INSTALL_HINT = "pip install tensorboard (or: pip install gnnsys[tensorboard])"


def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``; ConfigError when the package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"--logger tensorboard needs the tensorboard package, which is not "
                          f"installed: {INSTALL_HINT}") from None
    return SummaryWriter


def scalar_tag(key: str) -> str | None:
    """The TensorBoard tag of a record key (``None``: not a scalar to log)."""
    if key == "loss":
        return "loss/train"
    for split in ("train", "valid", "test"):
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    if key.startswith("time_"):
        return f"time/{key[5:]}"
    if key.endswith("_per_s"):
        return f"throughput/{key}"
    return None


class TensorBoardLogger:
    """Writes epoch records as scalars (see the module docstring).

    Args:
        log_dir: the event-file folder (``<run>/tensorboard``).
        start_epoch: epochs already finished (a resumed run): later steps of earlier event files
            are purged.
    """

    def __init__(self, log_dir: str | Path, start_epoch: int = 0) -> None:
        writer_cls = require_tensorboard()
        # steps from ``start_epoch + 1`` on that earlier event files hold (an epoch logged before
        # a kill, then replayed; a replaced run's) are hidden by TensorBoard
        self.writer = writer_cls(log_dir=str(log_dir), purge_step=start_epoch + 1)

    def log(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            tag = scalar_tag(key)
            if tag is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_logger(kind: str, log_dir: str | Path, start_epoch: int = 0) -> TensorBoardLogger | None:
    """The epoch logger of ``--logger kind`` (``None`` for ``none``)."""
    if kind == "tensorboard":
        return TensorBoardLogger(log_dir, start_epoch)
    return None
