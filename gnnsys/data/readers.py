"""Read the user's array files: ``.npy`` (never pickled) and CSV (an optional header row such as
``src,dst`` is detected and skipped; errors name the line).

    read_array(Path("edges.csv"), "edge list", integer=True)   # int64 [E, 2]

Every problem is a :class:`~gnnsys.errors.DatasetError` naming the file (and, for CSV, the line).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError

_BOOL_WORDS = {"true", "false"}


def _data_lines(path: Path):
    """``(line_number, text)`` of each line holding data (not blank, not a ``#`` comment), as
    pandas reads them with ``comment="#"``."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            text = line.split("#", 1)[0].strip()
            if text:
                yield number, text


def _is_number(token: str) -> bool:
    token = token.strip().strip('"').strip("'")
    if token.lower() in _BOOL_WORDS:
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def csv_delimiter(path: Path) -> str:
    """``","`` when the first data line has a comma, else ``"\\t"`` or any whitespace (SNAP-style
    ``.txt`` edge lists: ``0<TAB>1``)."""
    for _number, text in _data_lines(path):
        if "," in text:
            return ","
        return "\t" if "\t" in text else r"\s+"
    return ","


def csv_has_header(path: Path, sep: str = ",") -> bool:
    """Whether the first data line of a CSV is a header (a field that is not a number or
    true/false, e.g. ``src,dst``)."""
    import re

    for _number, text in _data_lines(path):
        fields = text.split(",") if sep == "," else re.split(r"\s+" if sep != "\t" else "\t", text)
        return not all(_is_number(t) for t in fields)
    return False


def csv_line_of_row(path: Path, row: int, header: bool) -> int:
    """The 1-based line number of data row ``row`` (0-based, after the header) of a CSV."""
    target = row + (1 if header else 0)
    for i, (number, _text) in enumerate(_data_lines(path)):
        if i == target:
            return number
    return -1


def read_array(path: Path, what: str, *, integer: bool = False) -> np.ndarray:
    """Read a ``.npy`` (``allow_pickle=False``) or CSV file into a NumPy array.

    Args:
        path: the file; a suffix other than ``.npy`` is read as CSV (comma, tab or whitespace
            separated, ``#`` comments, an optional header row detected and skipped).
        what: what the file holds, for messages (``"edge list"``, ``"split valid"``, ...).
        integer: every value must be an integer (a CSV cell that is not names its line).

    Returns:
        The array (a CSV gives ``[rows, columns]``; integer CSVs int64, ``true``/``false`` bool).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # corrupt header, truncated file, pickled objects
            raise DatasetError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None
        if integer and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise DatasetError(f"{path}: {what} must hold integers, got dtype {arr.dtype}")
        return arr
    if path.suffix == ".npz":
        raise DatasetError(f"{path}: a .npz archive cannot be a {what} (only features may be a scipy "
                           "sparse .npz; give a .npy or CSV file)")
    return _read_csv(path, what, integer)


def _read_csv(path: Path, what: str, integer: bool) -> np.ndarray:
    import pandas as pd

    sep = csv_delimiter(path)
    header = csv_has_header(path, sep)
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, comment="#", skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return np.empty((0, 0), dtype=np.int64 if integer else np.float64)
    except (ValueError, OSError) as e:  # ParserError names the line ("... in line 3, saw 3")
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{path}: cannot read {what} as CSV ({first})") from None
    kinds = {dt.kind for dt in df.dtypes}
    if kinds <= {"b"}:
        return df.to_numpy(dtype=np.bool_)
    if kinds <= {"i", "u"}:
        return df.to_numpy(dtype=np.int64)
    if not integer and kinds <= {"i", "u", "f", "b"}:
        return df.to_numpy(dtype=np.float64)
    # a cell that is not what it should be: name its line (the slow path, errors only)
    for r in range(df.shape[0]):
        for j in range(df.shape[1]):
            v = df.iat[r, j]
            text = str(v).strip()
            missing = bool(pd.isna(v))
            bad = missing or not _is_number(text) or text.lower() == "nan"
            if integer and not bad:
                bad = text.lower() in _BOOL_WORDS or float(text) % 1 != 0
            if bad:
                line = csv_line_of_row(path, r, header)
                shown = "an empty cell" if missing else repr(text)
                kind = "an integer" if integer else "a number"
                raise DatasetError(f"{path}: line {line}: {what}: {shown} is not {kind}")
    if integer:  # integral floats such as 3.0
        return df.to_numpy(dtype=np.float64).astype(np.int64)
    return df.to_numpy(dtype=np.float64)
