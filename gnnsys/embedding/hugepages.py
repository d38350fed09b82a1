"""Embedding matrices on transparent huge pages.

SGNS reads and writes rows of two ``[N, dim]`` float32 matrices at random. At 1M nodes and
dim 128 they are 512 MiB each, and with 4 KiB pages nearly every row access misses the TLB as
well as the caches. Backed by 2 MiB pages (``madvise(MADV_HUGEPAGE)``, which Linux honours in its
default ``transparent_hugepage=madvise`` mode), a page walk covers 512 times more rows. Where the
kernel or platform has no such advice the matrix is an ordinary anonymous map: the same values,
only the speed differs.
"""

from __future__ import annotations

import mmap

import numpy as np

#: matrices smaller than this stay ordinary numpy arrays (they fit the TLB's reach anyway)
MIN_BYTES = 32 << 20
_HUGE = 2 << 20


def empty_matrix(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, on transparent huge pages
    when it is at least :data:`MIN_BYTES` and the platform offers ``MADV_HUGEPAGE``.

    The memory is an anonymous private map owned by the returned array (freed with it); its
    pages are zero until written, as any fresh anonymous memory.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < MIN_BYTES or advice is None:
        return np.empty(shape, dtype)
    size = -(-nbytes // _HUGE) * _HUGE
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(advice)
    except OSError:  # a kernel without THP: ordinary pages, same values
        pass
    return np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize).reshape(shape)
