"""Training health: stop a run that cannot learn, with one line naming the likely cause.

Two failures are caught while training, instead of training on silently:

* a non-finite loss (see ``trainer._StepLosses``, which calls :func:`non_finite_message`): NaN/Inf
  features, or a run that diverged, most often because the learning rate is too high;
* a collapse to one class (:class:`CollapseWatch`): for :data:`COLLAPSE_EPOCHS` epochs in a row
  the model predicted the same class for every training item although the training labels hold
  several classes. A classifier stuck there has lost its gradient signal (saturated logits, dead
  ReLUs after an oversized step), again most often a too high learning rate, or it never had one
  (features that do not tell the classes apart: it learns the label prior, the majority class).

Both raise :class:`~gnnsys.errors.TrainingError` (the CLI prints one line and exits with 2).
The collapse watch counts the class predicted for each training item on the device, without
waiting for it (one ``index_add_`` per step); the counts are read once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import TrainingError

#: Consecutive epochs that must predict one class for every training item before the run stops:
#: one such epoch happens in healthy runs (a first step that pushed every logit one way), three
#: in a row did not in any run of the test suite that learned.
COLLAPSE_EPOCHS = 3


def non_finite_message(value: float, epoch: int, batch: int, lr: float) -> str:
    """The one line of a run whose loss became ``value`` (NaN or infinite) at ``epoch``/``batch``
    (1-based)."""
    return (f"loss is {value} at epoch {epoch}, batch {batch}: the run diverged or its inputs are not "
            f"finite. Likely cause: the learning rate (--lr {lr:g}) is too high; lower it (e.g. --lr "
            f"{lr / 10:g}) or clip gradients (--grad-clip 1.0). If a lower rate does not help, the "
            "features may hold NaN/Inf (check with `gnnsys info --validate` or "
            "FeatureStore.validate()). The last checkpoint is left as it was")


@dataclass
class CollapseWatch:
    """Counts the predicted classes of an epoch's training items and stops a collapsed run.

    Attributes:
        num_classes: width of the model's output (``C``; 2 for binary targets).
        train_counts: int64 ``[C]``: how many training items hold each label.
        lr: the run's learning rate (named in the message).
        streak: epochs in a row that predicted one class only.
    """

    num_classes: int
    train_counts: np.ndarray
    lr: float
    streak: int = 0
    _counts: Tensor | None = field(default=None, repr=False)

    @classmethod
    def for_labels(cls, labels: np.ndarray, train_ids: np.ndarray, num_classes: int, lr: float) -> CollapseWatch:
        """A watch over the single-label targets ``labels[train_ids]`` (int, ``[N]``)."""
        y = np.asarray(labels)[np.asarray(train_ids)].astype(np.int64)
        y = y[(y >= 0) & (y < num_classes)]
        return cls(int(num_classes), np.bincount(y, minlength=num_classes), float(lr))

    @property
    def active(self) -> bool:
        """Whether a collapse is possible to tell: the training labels hold two classes or more."""
        return int(np.count_nonzero(self.train_counts)) >= 2

    def add(self, logits: Tensor) -> None:
        """Count the predicted class of each row of ``logits`` ``[n, C]`` (on their device, no wait)."""
        if not self.active:
            return
        pred = logits.detach().argmax(1)
        if self._counts is None or self._counts.device != pred.device:
            self._counts = torch.zeros(self.num_classes, dtype=torch.int64, device=pred.device)
        self._counts.index_add_(0, pred, torch.ones_like(pred))

    def take_counts(self) -> list[float]:
        """This epoch's predicted-class counts (``C`` floats; zeros before any step), reset."""
        if self._counts is None:
            return [0.0] * self.num_classes
        out = [float(v) for v in self._counts.cpu().tolist()]
        self._counts.zero_()
        return out

    def end_epoch(self, epoch: int, counts: list[float]) -> None:
        """Take one epoch's predicted-class counts (over every rank's items); raise
        :class:`TrainingError` after :data:`COLLAPSE_EPOCHS` collapsed epochs in a row."""
        if not self.active:
            return
        c = np.asarray(counts, dtype=np.float64)
        total = float(c.sum())
        if total <= 0 or int(np.count_nonzero(c)) != 1:
            self.streak = 0
            return
        self.streak += 1
        if self.streak < COLLAPSE_EPOCHS:
            return
        k = int(np.argmax(c))
        share = self.train_counts[k] / max(int(self.train_counts.sum()), 1)
        majority = int(np.argmax(self.train_counts))
        which = "the majority class" if k == majority else "one class"
        raise TrainingError(
            f"the model predicted class {k} for every training item in epochs {epoch + 1 - self.streak + 1}-"
            f"{epoch + 1} (train accuracy {share:.3f}, the share of that class): it collapsed to {which} "
            f"and stopped learning. Likely cause: the learning rate (--lr {self.lr:g}) is too high; lower it "
            f"(e.g. --lr {self.lr / 10:g}); if a lower rate does not help, the features may not tell the classes "
            "apart (constant or all-zero columns: check the feature table) or the labels are very unbalanced")
