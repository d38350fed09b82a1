"""Read Planetoid's raw ``ind.<name>.*`` pickles without running code from them.

Planetoid (Cora, CiteSeer, PubMed) ships its arrays as Python 2 pickles. Unpickling runs whatever
callable a file names, so a crafted file could run ``os.system`` while a dataset is prepared.
:class:`RestrictedUnpickler` resolves only the few reconstructors those files need -- NumPy arrays
and dtypes, SciPy sparse matrices, ``collections.defaultdict`` and ``list`` (the adjacency dict)
-- and refuses any other global with a :class:`~gnnsys.errors.DatasetError` before anything runs.

:func:`read_planetoid_raw` then builds the graph exactly as PyG's ``read_planetoid_data`` does
(same feature rows, labels, public split, self loops removed, coalesced edges), without PyG's
``Planetoid`` class (which would also write and later ``torch.load`` a ``processed/`` cache).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

_PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph")


def _allowed() -> dict[tuple[str, str], Any]:
    import scipy.sparse as sp

    rebuild = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): rebuild,
        ("numpy._core.multiarray", "_reconstruct"): rebuild,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "list"): list,
        ("__builtin__", "list"): list,
    }
    for kind in ("csr", "csc", "coo", "lil", "dok"):  # old and new module paths of each matrix
        cls = getattr(sp, f"{kind}_matrix")
        for mod in (f"scipy.sparse.{kind}", f"scipy.sparse._{kind}", "scipy.sparse"):
            out[(mod, f"{kind}_matrix")] = cls
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` admits only the globals of :func:`_allowed`
    (NumPy arrays, SciPy sparse matrices, ``defaultdict``, ``list``); any other global raises
    :class:`DatasetError` naming it, before it is called."""

    def __init__(self, file, *, source: str, **kwargs) -> None:
        super().__init__(file, **kwargs)
        self._source = source
        self._allow = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allow.get((module, name))
        if obj is None:
            raise DatasetError(f"{self._source}: refuses to unpickle {module}.{name} (only NumPy arrays, SciPy "
                               "sparse matrices and plain lists/dicts are allowed in Planetoid raw files; "
                               "the file may be crafted -- nothing from it was run)")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError(f"{self._source}: persistent ids are not allowed in Planetoid raw files")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` (Python 2 pickles read as latin-1) with :class:`RestrictedUnpickler`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's deprecated-namespace warnings
            return RestrictedUnpickler(io.BytesIO(data), source=str(path), encoding="latin1").load()
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or not a pickle: one line
        raise DatasetError(f"{path}: not a readable Planetoid raw file ({type(e).__name__}: {e})") from None


def _dense(obj: Any, path: Path) -> np.ndarray:
    import scipy.sparse as sp

    if sp.issparse(obj):
        obj = obj.todense()
    if not isinstance(obj, np.ndarray) or obj.ndim != 2 or obj.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: expected a 2-D numeric array or sparse matrix, got "
                           f"{type(obj).__name__} {getattr(obj, 'shape', '')}")
    return np.asarray(obj)


def read_planetoid_raw(raw: str | os.PathLike, key: str):
    """PyG ``Data`` of Planetoid ``key`` (``"cora"``, ``"citeseer"``, ``"pubmed"``) read from
    ``raw/ind.<key>.*``: the same tensors as ``torch_geometric.io.read_planetoid_data``.

    Returns a ``torch_geometric.data.Data`` with ``x`` float32 ``[N, D]``, ``y`` int64 ``[N]``,
    ``edge_index`` int64 ``[2, E]`` (coalesced, no self loops) and ``train/val/test_mask`` ``[N]``.
    """
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import coalesce, index_to_mask, remove_self_loops

    raw = Path(raw)
    parts: dict[str, Any] = {}
    for name in _PLANETOID_PARTS:
        f = raw / f"ind.{key}.{name}"
        obj = safe_load_pickle(f)
        if name == "graph":
            if not isinstance(obj, dict) or not all(
                    isinstance(k, (int, np.integer)) and isinstance(v, list) for k, v in obj.items()):
                raise DatasetError(f"{f}: expected a dict of node id -> list of neighbour ids")
            parts[name] = obj
        else:
            parts[name] = torch.from_numpy(_dense(obj, f)).to(torch.float)
    f = raw / f"ind.{key}.test.index"
    try:
        test_index = torch.from_numpy(np.loadtxt(f, dtype=np.int64, ndmin=1))
    except Exception as e:  # noqa: BLE001 - numpy's ValueError/OSError on bad text: one line
        raise DatasetError(f"{f}: not a list of integer node ids ({type(e).__name__}: {e})") from None
    x, tx, allx, y, ty, ally, graph = (parts[k] for k in _PLANETOID_PARTS)
    train_index = torch.arange(y.size(0), dtype=torch.long)
    val_index = torch.arange(y.size(0), y.size(0) + 500, dtype=torch.long)
    sorted_test_index = test_index.sort()[0]
    if key == "citeseer":  # isolated test nodes: zero rows for them, as PyG does
        span = int(test_index.max() - test_index.min()) + 1
        tx_ext = torch.zeros(span, tx.size(1), dtype=tx.dtype)
        tx_ext[sorted_test_index - test_index.min(), :] = tx
        ty_ext = torch.zeros(span, ty.size(1), dtype=ty.dtype)
        ty_ext[sorted_test_index - test_index.min(), :] = ty
        tx, ty = tx_ext, ty_ext
    x = torch.cat([allx, tx], dim=0)
    n = x.size(0)
    if int(test_index.min()) < 0 or int(test_index.max()) >= n:
        raise DatasetError(f"{f}: test ids span [{int(test_index.min())}, {int(test_index.max())}] "
                           f"outside the {n} feature rows")
    x[test_index] = x[sorted_test_index]
    y = torch.cat([ally, ty], dim=0).max(dim=1)[1]
    y[test_index] = y[sorted_test_index]
    rows: list[int] = []
    cols: list[int] = []
    for k, v in graph.items():
        rows += [int(k)] * len(v)
        cols += [int(c) for c in v]
    edge_index = torch.stack([torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)])
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise DatasetError(f"{raw / f'ind.{key}.graph'}: node ids outside [0, {n})")
    edge_index, _ = remove_self_loops(edge_index)
    edge_index = coalesce(edge_index, num_nodes=n, sort_by_row=False)
    data = Data(x=x, edge_index=edge_index, y=y)
    data.train_mask = index_to_mask(train_index, size=n)
    data.val_mask = index_to_mask(val_index, size=n)
    data.test_mask = index_to_mask(test_index, size=n)
    return data
