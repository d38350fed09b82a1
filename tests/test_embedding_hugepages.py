"""gnnsys.embedding.hugepages: large matrices are anonymous maps advised MADV_HUGEPAGE (the
kernel's ``hg`` flag on the mapping), small ones plain numpy arrays; both hold what is written."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from gnnsys.embedding.hugepages import MIN_BYTES, empty_matrix


def _vm_flags(address: int) -> list[str]:
    """The VmFlags of the mapping of this process that contains ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not hasattr(mmap, "MADV_HUGEPAGE") or not Path("/proc/self/smaps").exists(),
                    reason="needs Linux's MADV_HUGEPAGE and /proc/self/smaps")
def test_large_matrix_is_advised_huge_pages():
    rows = MIN_BYTES // (128 * 4) + 3
    m = empty_matrix((rows, 128))
    assert m.shape == (rows, 128) and m.dtype == np.float32 and m.flags.c_contiguous and m.flags.writeable
    assert "hg" in _vm_flags(m.ctypes.data)
    m[:] = np.arange(128, dtype=np.float32)
    m[-1, -1] = 7.0
    assert m[5, 9] == 9.0 and m[-1, -1] == 7.0 and m[-1, -2] == 126.0


def test_small_matrix_is_plain_numpy():
    m = empty_matrix((10, 4), np.float32)
    assert m.shape == (10, 4) and m.dtype == np.float32 and m.flags.owndata
