"""The run folder: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (the last state, to
resume), ``best.pt`` (the weights of the best-valid evaluation), ``summary.json``, ``curves.png``
and, with ``--logger tensorboard``, ``tensorboard/``. Every file is written through a temp name
and an atomic rename."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..data.format import atomic_write_text
from ..errors import ConfigError
from .config import TrainConfig


class RunFolder:
    """Paths and writers of one run's folder.

    Args:
        path: the folder (created if missing).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path}: exists and is not a folder")
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        return self.path / "best.pt"

    @property
    def tensorboard_path(self) -> Path:
        return self.path / "tensorboard"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def curves_path(self) -> Path:
        return self.path / "curves.png"

    def has_run(self) -> bool:
        """Whether the folder already holds a run (a config or a checkpoint)."""
        return self.config_path.exists() or self.checkpoint_path.exists()

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_text(self.config_path, config.to_json() + "\n")

    def read_config(self) -> TrainConfig:
        """The run's saved config (ConfigError when missing or invalid)."""
        if not self.config_path.is_file():
            raise ConfigError(f"{self.config_path}: no config.json in the run folder to resume")
        return TrainConfig.from_json_file(self.config_path)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` with one JSON line per finished epoch."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))

    def write_best(self, payload: dict[str, Any]) -> None:
        """Write ``best.pt`` atomically (see :mod:`gnnsys.train.selection`)."""
        from .checkpoint import atomic_torch_save

        atomic_torch_save(self.best_path, payload)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
