"""``curves.png``: training loss and evaluation metrics per epoch (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Plot ``loss`` and every ``valid_*`` / ``test_*`` / ``train_*`` metric of ``history``
    (one dict per epoch, with an ``epoch`` key) into ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r.get("loss", float("nan")) for r in history], marker="o")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    keys = sorted({k for r in history for k in r
                   if k.split("_")[0] in ("train", "valid", "test") and k not in ("train_time",)
                   and isinstance(r.get(k), (int, float))})
    for k in keys:
        pts = [(r["epoch"], r[k]) for r in history if isinstance(r.get(k), (int, float))]
        ax_metric.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("metric")
    if keys:
        ax_metric.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
