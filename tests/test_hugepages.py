"""In-RAM feature tables on transparent huge pages (``FeatureStore(huge_pages=...)``)."""

from __future__ import annotations

import mmap
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnsys.errors import ConfigError
from gnnsys.features import FeatureStore
from gnnsys.features.hugepages import HUGE_PAGE, advise_huge, huge_page_bytes


def _thp_mode() -> str | None:
    """The kernel's THP mode (``always``/``madvise``/``never``); None off Linux or without THP."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")]


def _kernel_has_collapse() -> bool:
    """MADV_COLLAPSE (synchronous collapse) arrived in Linux 6.1."""
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 1)


needs_thp = pytest.mark.skipif(
    _thp_mode() not in ("always", "madvise") or not _kernel_has_collapse(),
    reason="no transparent huge pages on demand here (THP off, not Linux, or Linux < 6.1)")


def _torch_table(rows: int = 64 * HUGE_PAGE // 256, dim: int = 64) -> torch.Tensor:
    """A 64 MiB-plus float32 table on 4 KiB pages, as torch's allocator gives a tensor (a fresh
    private mapping, never advised: malloc might hand back heap memory that an earlier test left
    on huge pages)."""
    m = mmap.mmap(-1, rows * dim * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    t = torch.frombuffer(m, dtype=torch.float32).reshape(rows, dim)  # keeps `m` alive
    torch.arange(rows * dim, dtype=torch.float32, out=t.view(-1))
    return t


@needs_thp
def test_a_cpu_store_moves_a_torch_table_onto_huge_pages_and_gathers_the_same_rows() -> None:
    t = _torch_table()
    arr = t.numpy()
    if _thp_mode() == "madvise":  # torch's allocation starts on 4 KiB pages: the store changes it
        assert huge_page_bytes(arr) < arr.nbytes // 2
    address = arr.ctypes.data
    store = FeatureStore(t, placement="cpu")
    assert store.huge_pages
    assert huge_page_bytes(arr) >= arr.nbytes // 2, "the table is not on huge pages"
    assert store.host_table.ctypes.data == address  # remapped in place, never copied
    ids = np.random.default_rng(0).integers(0, t.shape[0], 20_000)
    assert torch.equal(store.gather(ids), t[torch.from_numpy(ids)])


def test_huge_pages_false_and_small_tables_are_left_alone(monkeypatch) -> None:
    import gnnsys.features.store as store_module

    calls = []
    monkeypatch.setattr(store_module, "advise_huge", lambda a, min_bytes: calls.append(min_bytes) or True)
    assert not FeatureStore(torch.zeros(4096, 16), placement="cpu", huge_pages=False).huge_pages
    assert not FeatureStore(np.zeros((4096, 16), np.float32), huge_pages=False).huge_pages
    assert calls == []
    assert FeatureStore(torch.zeros(4096, 16), placement="cpu").huge_pages  # default: asks
    assert calls == [store_module.MIN_HUGE_BYTES]
    monkeypatch.undo()
    small = torch.zeros(1000, 16)
    assert not FeatureStore(small, placement="cpu").huge_pages  # below 64 MiB: nothing to gain
    assert not advise_huge(small.numpy())


def test_huge_pages_option_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="huge_pages must be"):
        FeatureStore(np.zeros((4, 2), np.float32), huge_pages="yes")
    np.save(tmp_path / "t.npy", np.zeros((4, 2), np.float32))
    with pytest.raises(ConfigError, match="only applies to placement='cpu'"):
        FeatureStore(tmp_path / "t.npy", placement="mmap", huge_pages=True)
