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
#: edge widths of the wide kernels ``_w16s{S}`` (16-byte body loads, S-byte head and tail).
EDGE_WIDTHS = (8, 4, 2, 1)
#: rows at least this long use the wide kernels when their alignment rules out the plain 16-byte
#: one (a row of 64 bytes or more holds at least three aligned 16-byte vectors).
WIDE_MIN_ROW_BYTES = 64


#: the int8 gather of ``cuda/gather.cu`` (dequantises with the per-row scales while copying)
INT8_GATHER_KERNEL = "gnnsys_gather_int8"
#: its ``cached`` form (hot int8 rows from a device cache, the others zero-copy; same scales)
INT8_CACHED_GATHER_KERNEL = "gnnsys_gather_int8_cached"


def plan_int8_gather(n: int, dim: int, max_blocks: int = 65535, cached: bool = False) -> GatherPlan:
    """Launch of :data:`INT8_GATHER_KERNEL` (``cached``: :data:`INT8_CACHED_GATHER_KERNEL`): one
    group of lanes per row, a warp for rows of 32 codes or more (each step of a group reads
    ``lanes`` consecutive bytes)."""
    lanes = 1
    while lanes < WARP_LANES and lanes < dim:
        lanes *= 2
    grid = 0 if n == 0 or dim == 0 else min(max_blocks, -(-n // (BLOCK_THREADS // lanes)))
    kernel = INT8_CACHED_GATHER_KERNEL if cached else INT8_GATHER_KERNEL
    return GatherPlan(kernel=kernel, vector_bytes=1, lanes=lanes, grid=grid)


def all_gather_kernels() -> tuple[str, ...]:
    """Every extern "C" kernel of ``cuda/gather.cu`` (plain and ``cached``, every width)."""
    suffixes = [f"w{w}" for w in VECTOR_WIDTHS] + [f"w16s{s}" for s in EDGE_WIDTHS]
    return tuple(f"{prefix}_{suffix}" for prefix in ("gnnsys_gather", "gnnsys_gather_cached")
                 for suffix in suffixes)


@dataclass(frozen=True)
class GatherPlan:
    """How one gather is launched.

    Attributes:
        kernel: extern "C" kernel name in ``gather.cu`` (e.g. ``"gnnsys_gather_w16"``).
        vector_bytes: bytes each lane moves per step (the kernel's V; 16 for a wide kernel).
        lanes: lanes per row group (power of two dividing 32).
        grid: blocks to launch (0: nothing to do).
        block: threads per block.
        edge_bytes: wide kernels (``_w16s{S}``): the width S of the head and tail vectors of a
            row whose 16-byte-aligned body is read with 16-byte loads; ``None`` for the plain
            kernels.
    """

    kernel: str
    vector_bytes: int
    lanes: int
    grid: int
    block: int = BLOCK_THREADS
    edge_bytes: int | None = None

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
                vector_bytes: int | None = None, lanes: int | None = None,
                wide: bool | None = None) -> GatherPlan:
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
        wide: use a wide kernel (16-byte loads over each row's aligned body, ``legal``-byte
            head and tail) when the widest legal width is below 16. ``None``: for rows of
            :data:`WIDE_MIN_ROW_BYTES` or more and no forced ``vector_bytes``.
    """
    addrs = [table_addr, out_addr] + ([cache_addr] if cache_addr is not None else [])
    legal = vector_bytes_for(row_bytes, *addrs)
    prefix = "gnnsys_gather_cached" if cache_addr is not None else "gnnsys_gather"
    if wide is None:
        wide = vector_bytes is None and legal < 16 and row_bytes >= WIDE_MIN_ROW_BYTES
    if wide:
        if legal >= 16:
            raise ValueError("a wide kernel is for rows whose alignment rules out 16-byte vectors")
        lanes = lanes_for(row_bytes, 16) if lanes is None else lanes
        if lanes not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"lanes={lanes} must be a power of two dividing 32")
        grid = 0 if n == 0 or row_bytes == 0 else min(max_blocks, -(-n // (BLOCK_THREADS // lanes)))
        return GatherPlan(kernel=f"{prefix}_w16s{legal}", vector_bytes=16, lanes=lanes, grid=grid,
                          edge_bytes=legal)
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
    return GatherPlan(kernel=f"{prefix}_w{vector_bytes}", vector_bytes=vector_bytes,
                      lanes=lanes, grid=grid)
