"""The split vocabulary: ``train``, ``valid``, ``test`` for node tasks (``val`` accepted for
``valid`` with a note); ``train_pos``, ``valid_pos``, ``valid_neg``, ``test_pos``, ``test_neg``
(and ``train_neg``) for link tasks. Any other name is an error listing the known ones: a split
named ``val`` used to train silently without validation (``best_valid: null``)."""

from __future__ import annotations

import sys

from ..errors import DatasetError

NODE_SPLIT_NAMES = ("train", "valid", "test")
LINK_SPLIT_NAMES = ("train_pos", "train_neg", "valid_pos", "valid_neg", "test_pos", "test_neg")
#: accepted spellings -> the name used everywhere
ALIASES = {"val": "valid", "val_pos": "valid_pos", "val_neg": "valid_neg"}


def canonical_split(name: str, task: str, where: str) -> str:
    """``name`` as a known split of ``task`` (``"node"`` / ``"link"``); ``val`` becomes ``valid``
    with a note on stderr; an unknown name is a DatasetError naming ``where`` and the known ones."""
    known = NODE_SPLIT_NAMES if task == "node" else LINK_SPLIT_NAMES
    if name in ALIASES and ALIASES[name] in known:
        print(f"gnnsys: note: {where}: split {name!r} is read as {ALIASES[name]!r}", file=sys.stderr)
        return ALIASES[name]
    if name not in known:
        raise DatasetError(f"{where}: unknown split name {name!r} for a {task} task; known: "
                           f"{', '.join(known)} ('val' is accepted for 'valid')")
    return name


def split_task(name: str) -> str:
    """The task a split name belongs to: ``"link"`` for ``*_pos`` / ``*_neg`` (edge pairs),
    ``"node"`` otherwise -- a dataset may hold node splits and link splits together."""
    return "link" if name.endswith(("_pos", "_neg")) else "node"
