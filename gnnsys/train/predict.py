"""From a run folder to research code: the best-valid model, its predictions and embeddings.

    import gnnsys
    run = gnnsys.load_run("runs/cora")     # best.pt's weights (eval mode), the config, the dataset
    probs = run.predict(split="test")       # float32 [n, C] class probabilities
    emb = run.embeddings()                  # float32 [N, out] final-layer outputs of every node

Everything is built by :func:`gnnsys.train.build.assemble` from the run's ``config.json``, the one
construction path the trainer uses, so outputs here are the outputs evaluation saw: full
layer-wise inference (memory-bounded: one layer's ``[N, width]`` input and output at a time) for a
model that has it, the run's sampled evaluation loader otherwise (GPS, LargeGT).

- node tasks: :meth:`LoadedRun.predict` returns softmax class probabilities ``[n, C]`` (sigmoid
  per task ``[n, T]`` for multi-label targets);
- link tasks: :meth:`LoadedRun.score_pairs` returns the decoder's probabilities (sigmoid of its
  logits) of given pairs;
- :meth:`LoadedRun.embeddings`: the final layer's outputs of every node (a node model's logits, a
  link model's encoder output).

``gnnsys predict`` and ``gnnsys embed`` write these arrays to ``.npy`` files.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigError
from . import evaluate as ev
from . import targets as tg
from .build import Assembly, assemble
from .config import TrainConfig
from .run_folder import RunFolder
from .selection import check_dataset, load_best


@dataclass
class LoadedRun:
    """A trained run, ready to predict.

    Attributes:
        path: the run folder.
        config: its :class:`TrainConfig` (``config.json``).
        model: the model with ``best.pt``'s weights, in eval mode, on ``parts.device``.
        dataset: the :class:`~gnnsys.data.GraphDataset` it was trained on.
        parts: the run's :class:`~gnnsys.train.build.Assembly` (sampler, features, loaders).
        best: ``{"epoch", "metric", "valid"}`` of the best-valid evaluation.
    """

    path: Path
    config: TrainConfig
    model: torch.nn.Module
    dataset: Any
    parts: Assembly
    best: dict[str, Any]

    @property
    def task(self) -> str:
        return self.parts.task

    @torch.no_grad()
    def outputs(self, ids: np.ndarray | None = None) -> Tensor:
        """Float32 ``[n, out]`` model outputs (logits, or a link model's embeddings) of ``ids``
        (default: every node), as evaluation computes them."""
        self.model.eval()
        if self.parts.eval_mode == "full":
            out = self.parts.full_outputs()
            return out if ids is None else out[torch.from_numpy(np.asarray(ids, dtype=np.int64))]
        if ids is None:
            ids = np.arange(self.dataset.num_nodes, dtype=np.int64)
        return self.parts.sampled_outputs(np.asarray(ids, dtype=np.int64))

    def embeddings(self) -> np.ndarray:
        """Float32 ``[N, out]``: the final layer's outputs of every node."""
        return self.outputs().numpy()

    def predict(self, ids: Any = None, split: str | None = None) -> np.ndarray:
        """Float32 class probabilities ``[n, C]`` (per-task ``[n, T]`` for multi-label targets)
        of node ``ids`` or of a node split's nodes (default: every node)."""
        if self.task != "node":
            raise ConfigError(f"{self.path}: a link-prediction run: score pairs (--pairs FILE / score_pairs)")
        if split is not None:
            ids = split_array(self.dataset, split)
        elif ids is not None:
            ids = check_node_ids(ids, self.dataset.num_nodes, "nodes")
        return tg.probabilities(self.outputs(ids), self.parts.targets).numpy()

    @torch.no_grad()
    def score_pairs(self, pairs: Any = None, split: str | None = None) -> np.ndarray:
        """Float32 probabilities (sigmoid of the decoder's logits) of node pairs ``[P, 2]``, or of
        a link split's pairs (``valid_pos``, ``test_neg``, ...; a per-source negative table
        ``[P, K]`` gives ``[P, K]`` scores against its row's source)."""
        if self.task != "link":
            raise ConfigError(f"{self.path}: a node-classification run: predict nodes (--split / --nodes)")
        shape = None
        if split is not None:
            arr = split_array(self.dataset, split)
            if split.endswith("_neg") and self.dataset.meta.get("neg_layout") == "per_source":
                src, dst, shape = ev.negative_pairs(self.dataset.splits[split.replace("_neg", "_pos")], arr, True)
                arr = np.stack([src, dst], axis=1)
            pairs = arr
        pairs = check_pairs(pairs, self.dataset.num_nodes, "pairs")
        if self.parts.eval_mode == "full":
            h, rows = self.outputs(), pairs
        else:  # the evaluated nodes only, looked up by rank as in evaluation
            needed = np.unique(pairs)
            h, rows = self.outputs(needed), np.searchsorted(needed, pairs)
        logits = ev.score_pairs(self.model, h, rows[:, 0], rows[:, 1], self.parts.device)
        out = torch.sigmoid(logits).numpy()
        return out.reshape(shape) if shape is not None else out


def load_run(run_dir: str | os.PathLike, *, dataset: str | None = None, root: str | None = None,
             home: str | None = None, device: str | None = None) -> LoadedRun:
    """Open a run folder: the model with its best-valid weights (``best.pt``) in eval mode, its
    config and its dataset, all built by :func:`~gnnsys.train.build.assemble`.

    Args:
        run_dir: a run folder (for ``--runs N``: one of its ``run-K`` folders).
        dataset, root, home: where to find the dataset when it moved (default: the config's);
            it must be the dataset the model was trained on (DatasetError otherwise).
        device: ``cpu`` or ``cuda`` (default: the config's).

    Raises:
        ConfigError: not a run folder, or the parent folder of several runs.
        CheckpointError: no ``best.pt`` (the run never evaluated on valid) or one that does not
            fit the model.
        DatasetError: the dataset differs from the one the model was trained on.
    """
    path = Path(run_dir)
    config = read_run_config(path)
    best = load_best(path / "best.pt")
    changes: dict[str, Any] = {"progress": False}
    for key, value in (("dataset", dataset), ("root", root), ("home", home), ("device", device)):
        if value is not None:
            changes[key] = value
    config = config.replace(**changes)
    with torch.random.fork_rng(devices=[]):  # model construction seeds torch: leave the caller's RNG alone
        parts = assemble(config, run_dir=path)
    check_dataset(best["dataset"], parts.dataset, path / "best.pt")
    try:
        parts.model.load_state_dict(best["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path / 'best.pt'}: does not fit the run's model "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    parts.model.eval()
    return LoadedRun(path=path, config=parts.config, model=parts.model, dataset=parts.dataset, parts=parts,
                     best={k: best[k] for k in ("epoch", "metric", "valid")})


def read_run_config(path: Path) -> TrainConfig:
    """The config of the single run in ``path`` (ConfigError naming the problem otherwise)."""
    if not path.is_dir():
        raise ConfigError(f"--run {path}: no such run folder")
    subs = sorted(p.parent.name for p in path.glob("run-*/config.json"))
    folder = RunFolder(path)
    if not folder.config_path.is_file():
        if subs:
            raise ConfigError(f"--run {path}: holds {len(subs)} runs (--runs); give one of them, "
                              f"e.g. {path / subs[0]}")
        raise ConfigError(f"--run {path}: no config.json; not a gnnsys run folder")
    try:
        raw = json.loads(folder.config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raw = None  # read_config names the problem
    if isinstance(raw, dict) and raw.get("kind", "gnn") != "gnn":
        raise ConfigError(f"--run {path}: a {raw['kind']} run, not a GNN training run")
    config = folder.read_config()
    if config.runs > 1:
        raise ConfigError(f"--run {path}: holds {config.runs} runs (--runs); give one of them, "
                          f"e.g. {path / 'run-0'}")
    return config


def gnn_embeddings(run_dir: str | os.PathLike) -> np.ndarray:
    """Float32 ``[N, out]`` final-layer outputs of every node of the GNN run in ``run_dir`` (best
    weights), by layer-wise inference (``gnnsys embed`` for GNN runs)."""
    return load_run(run_dir).embeddings()


# ---------------------------------------------------------------------------------------------
# inputs and outputs


def split_array(dataset: Any, split: str) -> np.ndarray:
    """A copy of ``dataset.splits[split]`` (ConfigError listing the known splits)."""
    if split not in dataset.splits:
        raise ConfigError(f"--split {split}: dataset {dataset.name!r} has no such split (it has "
                          f"{', '.join(sorted(dataset.splits)) or 'none'})")
    return np.array(dataset.splits[split], dtype=np.int64)


def read_ids(path: str | os.PathLike, what: str) -> np.ndarray:
    """An integer array from a ``.npy`` file (no pickle) or a text/CSV file of integers."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--{what} {p}: no such file")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            text = p.read_text().replace(",", " ").split("\n")
            rows = [line.split() for line in text if line.strip() and not line.lstrip().startswith("#")]
            arr = np.array([[int(x) for x in r] for r in rows], dtype=np.int64)
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
    except ValueError as e:
        raise ConfigError(f"--{what} {p}: not a file of integer node ids ({e})") from None
    return arr


def check_node_ids(ids: Any, num_nodes: int, what: str) -> np.ndarray:
    """Int64 ``[n]`` node ids in ``[0, num_nodes)`` (ConfigError naming the first bad one)."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ConfigError(f"--{what}: expected a 1-D array of integer node ids, got {arr.dtype} {list(arr.shape)}")
    _check_range(arr, num_nodes, what)
    return arr.astype(np.int64)


def check_pairs(pairs: Any, num_nodes: int, what: str) -> np.ndarray:
    """Int64 ``[P, 2]`` node pairs in ``[0, num_nodes)``."""
    if pairs is None:
        raise ConfigError("give the pairs to score (--pairs FILE, or --split NAME of a link split)")
    arr = np.asarray(pairs)
    if arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != 2:
        raise ConfigError(f"--{what}: expected [P, 2] integer node pairs, got {arr.dtype} {list(arr.shape)}")
    _check_range(arr, num_nodes, what)
    return arr.astype(np.int64)


def _check_range(arr: np.ndarray, num_nodes: int, what: str) -> None:
    bad = (arr < 0) | (arr >= num_nodes)
    if bad.any():
        pos = np.argwhere(bad)[0]
        raise ConfigError(f"--{what}: node id {int(arr[tuple(pos)])} at position {pos.tolist()} is out of "
                          f"range [0, {num_nodes}) of the run's dataset")


def write_npy(array: np.ndarray, out: str | os.PathLike) -> Path:
    """Write ``array`` to ``out`` (a ``.npy`` path) through a temporary sibling and a rename."""
    path = Path(out)
    if path.suffix != ".npy":
        raise ConfigError(f"--out {path}: give a file name ending in .npy")
    if path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; give a file name ending in .npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot create its folder ({e.strerror})") from None
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot write it ({e.strerror})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
