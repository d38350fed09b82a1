"""Progress bars for long steps (preparing, checksumming, validating a dataset).

A bar is a ``tqdm`` bar on stderr that appears only once its step has run for
:data:`DELAY_S` seconds (``tqdm(delay=...)``), so quick steps print nothing. Bars are off when
stderr is not a terminal, and within :func:`progress_scope(False) <progress_scope>` (the
command line's ``--no-progress``). The switch is a ``contextvars.ContextVar`` set for the
duration of one command, not a module global.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Any

#: Seconds a step runs before its bar appears.
DELAY_S = 2.0

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("gnnsys_progress", default=True)


@contextlib.contextmanager
def progress_scope(enabled: bool):
    """Within the block, bars are shown (``True``, on a terminal) or never (``False``)."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def progress_enabled() -> bool:
    """Whether a bar may be shown now: enabled in this scope and stderr is a terminal."""
    if not _ENABLED.get():
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class _NoBar:
    """What :func:`bar` returns when bars are off: accepts the calls, prints nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar(total: float | None, desc: str, unit: str = "it") -> Any:
    """A delayed tqdm bar (or a silent stand-in when bars are off); use as a context manager.

    ``unit="B"`` scales bytes (KB, MB, GB)."""
    if not progress_enabled():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000,
                delay=DELAY_S, leave=False, dynamic_ncols=True, file=sys.stderr)


def stage_bar(iterable, enabled: bool, desc: str, total: int | None = None):
    """A tqdm bar over ``iterable`` (shown after :data:`DELAY_S` seconds) when bars are on (a
    terminal, no ``--no-progress``) or ``enabled`` on a terminal; the plain iterable (or ``None``
    when there is none) otherwise."""
    if not (progress_enabled() or (enabled and sys.stderr.isatty())):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, delay=DELAY_S)
