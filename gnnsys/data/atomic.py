"""Safe replacement of a folder: one writer at a time, nothing lost on failure.

Every folder gnnsys writes (a prepared dataset, a run folder) is guarded by a :class:`WriterLock`
on a hidden sibling file ``.NAME.lock`` (a ``filelock`` lock: ``flock`` on Unix, so the kernel
releases the lock of a process that died, and the next writer simply takes it over). The holder
records its pid in the lock file, so a second writer can say which process holds it.

The new content is built in a temporary sibling (``.NAME.tmp-XXXXXXXX`` / ``.NAME.new-XXXXXXXX``)
on the same file system, validated there, and only then renamed into place
(:func:`swap_into_place`): a failure at any moment before that leaves the existing folder
byte-identical, and a "disk full" (``ENOSPC``) becomes one line naming the folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from ..errors import GnnsysError

#: errno values that mean "the disk (or the user's quota) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class LockHeldError(GnnsysError):
    """Another live process holds the writer lock of a folder (see :class:`WriterLock`)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file guarding ``target``: the hidden sibling ``.NAME.lock`` (of the absolute,
    normalised path: ``.`` and ``a/..`` name their folder)."""
    target = Path(os.path.abspath(target))
    return target.with_name(f".{target.name}.lock")


def read_holder_pid(path: str | os.PathLike) -> int | None:
    """The pid recorded in lock file ``path`` (``None`` when missing or unreadable)."""
    try:
        text = Path(path).read_text().strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


class WriterLock:
    """An exclusive, non-blocking writer lock on a folder (``filelock.FileLock``).

    Args:
        target: the folder to guard; the lock file is :func:`lock_path` of it (its parent folder
            must exist).
        what: how messages name the folder, e.g. ``"dataset"`` or ``"run folder"``.

    :meth:`acquire` raises :class:`LockHeldError` naming the holder's pid when another live
    process holds the lock; a lock left by a dead process is taken over (``flock`` locks die with
    their process). Usable as a context manager.
    """

    def __init__(self, target: str | os.PathLike, what: str = "folder") -> None:
        from filelock import FileLock

        self.target = Path(target)
        self.path = lock_path(self.target)
        self.what = what
        self._lock = FileLock(str(self.path), timeout=0)

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> WriterLock:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            pid = read_holder_pid(self.path)
            who = f"process {pid}" if pid is not None else "another process"
            raise LockHeldError(
                f"{self.target}: {who} is writing this {self.what} (lock {self.path}); wait for it to "
                f"finish, or stop it, or choose another path", pid) from None
        except OSError as e:
            raise GnnsysError(f"{self.target}: cannot create the lock file {self.path} "
                              f"({e.strerror or e}); is the parent folder writable?") from None
        try:  # we hold the lock: record who does (the file is never removed, see filelock)
            with open(self.path, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError:
            pass
        return self

    def wait(self, timeout: float = -1) -> bool:
        """Block until no process holds the lock (``timeout`` seconds at most, ``-1``: forever);
        the lock is not kept. ``True`` when it became free."""
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            return False
        self._lock.release()
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                with open(self.path, "w"):
                    pass  # a released lock names no holder
            except OSError:
                pass
            self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def temp_sibling(target: str | os.PathLike, kind: str = "tmp") -> Path:
    """A fresh hidden sibling name ``.NAME.<kind>-XXXXXXXX`` of ``target`` (same file system)."""
    target = Path(os.path.abspath(target))
    return target.with_name(f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}")


def remove_stale_siblings(target: str | os.PathLike, kind: str, keep_complete: str | None = None) -> None:
    """Remove ``.NAME.<kind>-*`` siblings left by writers that died (call with the lock held).

    ``keep_complete``: a file name (e.g. ``"meta.json"``); a sibling holding it is a complete copy
    that an interrupted swap may have left, and is kept.
    """
    target = Path(os.path.abspath(target))
    for p in target.parent.glob(f".{target.name}.{kind}-*"):
        if keep_complete is not None and (p / keep_complete).is_file():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def swap_into_place(staged: Path, target: Path) -> None:
    """Rename the complete folder ``staged`` to ``target``, replacing (then deleting) any folder
    already there. Between the two renames both copies exist under hidden names, never neither."""
    old = None
    if target.exists():
        old = temp_sibling(target, "old")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a "no space left" error."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if "No space left on device" in str(exc):  # torch / numpy wrap the OSError in RuntimeError
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
