"""Launch parameters of the zero-copy gather kernels of ``cuda/gather.cu`` (pure Python).

The same plan drives the real launches (``cuda_backends``) and the CPU-emulated launches of the
tests, so the tests check the configuration the GPU actually runs.
"""

from __future__ import annotations

from dataclasses import dataclass

#: threads per block (the kernels declare ``__launch_bounds__(256)``).
BLOCK_THREADS = 256
#: vector widths the kernels are instantiated for, widest first (kernel suffix ``_w{bytes}``).
VECTOR_WIDTHS = (16, 8, 4, 2, 1)
#: bytes of one aligned PCIe / L2 segment.
SEGMENT_BYTES = 128
WARP_LANES = 32


@dataclass(frozen=True)
class GatherPlan:
    """How one gather is launched.

    Attributes:
        kernel: extern "C" kernel name in ``gather.cu`` (e.g. ``"gnnsys_gather_w16"``).
        vector_bytes: bytes each lane moves per step (the kernel's V).
        lanes: lanes per row group (power of two dividing 32).
        grid: blocks to launch (0: nothing to do).
        block: threads per block.
    """

    kernel: str
    vector_bytes: int
    lanes: int
    grid: int
    block: int = BLOCK_THREADS

    @property
    def lanes_log2(self) -> int:
        return self.lanes.bit_length() - 1

    @property
    def span(self) -> int:
        """Bytes a row group reads per step (``lanes * vector_bytes``)."""
        return self.lanes * self.vector_bytes


def vector_bytes_for(row_bytes: int, *addresses: int) -> int:
    """Widest vector width in :data:`VECTOR_WIDTHS` dividing ``row_bytes`` and every address.

    Every row start ``base + id * row_bytes`` is then aligned to it, in the table and in the
    output, so vector loads and stores are naturally aligned.
    """
    for width in VECTOR_WIDTHS:
        if row_bytes % width == 0 and all(a % width == 0 for a in addresses):
            return width
    return 1


def lanes_for(row_bytes: int, vector_bytes: int) -> int:
    """Lanes per row: enough for one 128-byte segment per step, more (up to a warp) for wide rows.

    ``lanes * vector_bytes`` is at least ``min(128, 32 * vector_bytes)``, so a step covers whole
    aligned 128-byte segments (or, for 1- and 2-byte vectors, part of one segment), and grows to
    cover the row in one step where a warp allows.
    """
    lanes = min(WARP_LANES, max(1, SEGMENT_BYTES // vector_bytes))
    vectors = -(-row_bytes // vector_bytes)
    while lanes < WARP_LANES and lanes < vectors:
        lanes *= 2
    return lanes


def plan_gather(n: int, row_bytes: int, table_addr: int, out_addr: int,
                cache_addr: int | None = None, max_blocks: int = 65535,
                vector_bytes: int | None = None, lanes: int | None = None) -> GatherPlan:
    """Plan a gather of ``n`` rows of ``row_bytes`` bytes.

    Args:
        n: number of ids.
        row_bytes: bytes per row (``D * itemsize``).
        table_addr: address of row 0 of the (host or device) table.
        out_addr: address of the output.
        cache_addr: address of the device cache (``cached`` placement), which must share the
            vector alignment too.
        max_blocks: grid cap (e.g. 8 blocks per multiprocessor); the kernel loops grid-stride.
        vector_bytes, lanes: force a width / group size (tests); they must be legal.
    """
    addrs = [table_addr, out_addr] + ([cache_addr] if cache_addr is not None else [])
    legal = vector_bytes_for(row_bytes, *addrs)
    if vector_bytes is None:
        vector_bytes = legal
    elif vector_bytes not in VECTOR_WIDTHS or legal % vector_bytes:
        raise ValueError(f"vector_bytes={vector_bytes} is not allowed here (widest legal: {legal})")
    if lanes is None:
        lanes = lanes_for(row_bytes, vector_bytes)
    elif lanes not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"lanes={lanes} must be a power of two dividing 32")
    groups_per_block = BLOCK_THREADS // lanes
    grid = 0 if n == 0 or row_bytes == 0 else min(max_blocks, -(-n // groups_per_block))
    prefix = "gnnsys_gather_cached" if cache_addr is not None else "gnnsys_gather"
    return GatherPlan(kernel=f"{prefix}_w{vector_bytes}", vector_bytes=vector_bytes,
                      lanes=lanes, grid=grid)
