"""The GPU gather kernels of ``cuda/gather.cu``, proven without a GPU.

1. Every ``cuda/*.cu`` compiles with ``nvcc`` for sm_80 and sm_90 with warnings as errors, and
   through NVRTC (the run-time path).
2. The very same source is compiled with the host C++ compiler under
   ``tests/cuda_emu/cuda_emu.h`` and every kernel runs on the CPU (whole grid emulated) for row
   widths x dtypes x a table base misaligned by 4 bytes, with empty and duplicate ids. The
   output must equal NumPy fancy indexing bit for bit, and the recorded loads must follow the
   access pattern the kernels promise (aligned 128-byte windows, coalesced lanes, each row byte
   read exactly once, nothing outside the table).
3. With a GPU (``-m gpu``), the kernels also run for real through ``FeatureStore``: see
   ``tests/test_gpu.py`` (kept free of hypothesis, which the GPU machines lack).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnnsys.features.kernels import GATHER_SOURCE, kernel_source, nvrtc_compile_ptx
from gnnsys.features.launch_plan import (
    BLOCK_THREADS,
    SEGMENT_BYTES,
    VECTOR_WIDTHS,
    GatherPlan,
    all_gather_kernels,
    plan_gather,
    vector_bytes_for,
)

REPO = Path(__file__).resolve().parents[1]
CUDA_DIR = REPO / "cuda"
EMU_DIR = Path(__file__).resolve().parent / "cuda_emu"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))

ROW_WIDTHS = (1, 3, 31, 32, 100, 128, 129)
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
NO_BAD = np.iinfo(np.uint64).max


# --------------------------------------------------------------------------------------------
# 1. compilation: nvcc (sm_80, sm_90, -Werror) and NVRTC
# --------------------------------------------------------------------------------------------
def test_cuda_sources_exist():
    assert CU_FILES, f"no .cu files under {CUDA_DIR}"
    assert (CUDA_DIR / GATHER_SOURCE) in CU_FILES
    assert kernel_source(GATHER_SOURCE) == (CUDA_DIR / GATHER_SOURCE).read_text()


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles_with_warnings_as_errors(cu: Path, arch: str, tmp_path: Path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    cmd = [nvcc, f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings",
           "-Xcompiler", "-Wall,-Wextra,-Werror", "-c", str(cu), "-o", str(tmp_path / "k.o")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    assert (res.stdout + res.stderr).strip() == "", res.stdout + res.stderr


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvrtc_compiles(cu: Path, arch: str):
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    ptx = nvrtc_compile_ptx(cu.read_text(), cu.name, arch)
    if cu.name == GATHER_SOURCE:
        for name in all_gather_kernels():
            assert f".entry {name}(" in ptx
        # the 16-byte path really issues 16-byte loads and stores
        assert "ld.global.nc.v4.u32" in ptx and "st.global.cs.v4.u32" in ptx


def test_nvrtc_reports_compile_errors():
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    with pytest.raises(RuntimeError, match="broken.cu"):
        nvrtc_compile_ptx('extern "C" __global__ void k() { undefined_thing(); }', "broken.cu")


# --------------------------------------------------------------------------------------------
# 2. the same kernels run on the CPU through the emulation
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def emu(tmp_path_factory) -> ctypes.CDLL:
    """The kernels of cuda/gather.cu built for the host under cuda_emu.h, loaded with ctypes."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler to build the CUDA emulation")
    lib = tmp_path_factory.mktemp("cuda_emu") / "gather_emu.so"
    cmd = [cxx, "-std=c++20", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           f"-I{CUDA_DIR}", f"-I{EMU_DIR}", str(EMU_DIR / "launcher.cpp"), "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    dll = ctypes.CDLL(str(lib))
    vp, i64, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32
    for name in all_gather_kernels():
        fn = getattr(dll, f"emu_{name}")
        if "cached" in name:
            fn.argtypes = [u32, u32, vp, vp, vp, vp, vp, i64, i64, i64, u32, vp]
        else:
            fn.argtypes = [u32, u32, vp, vp, vp, i64, i64, i64, u32, vp]
        fn.restype = ctypes.c_int
    dll.emu_allow_read.argtypes = [vp, i64]
    dll.emu_allow_write.argtypes = [vp, i64]
    dll.emu_set_trace.argtypes = [vp, i64]
    dll.emu_trace_count.restype = i64
    return dll


def aligned_bytes(nbytes: int, offset: int, rng: np.random.Generator | None = None,
                  fill: int = 0xCD) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose address is ``offset`` modulo 256 (random or ``fill``)."""
    raw = np.empty(nbytes + 512, dtype=np.uint8)
    start = (offset - raw.ctypes.data) % 256
    buf = raw[start:start + nbytes]
    assert buf.ctypes.data % 256 == offset
    if rng is None:
        buf[:] = fill
    else:
        buf[:] = rng.integers(0, 256, nbytes, dtype=np.uint8)  # any bit pattern, NaNs included
    return buf


def make_table(n_rows: int, dim: int, dtype: str, misalign: int, rng) -> np.ndarray:
    """Random ``[n_rows, dim]`` table (raw random bits) whose base is ``misalign`` mod 256."""
    storage = np.dtype(DTYPES[dtype])
    buf = aligned_bytes(n_rows * dim * storage.itemsize, misalign, rng)
    return buf.view(storage).reshape(n_rows, dim)


class EmuResult:
    def __init__(self, rc: int, out: np.ndarray, bad: int, trace: np.ndarray):
        self.rc, self.out, self.bad, self.trace = rc, out, bad, trace


def run_emulated(emu, plan: GatherPlan, table: np.ndarray, ids: np.ndarray,
                 out: np.ndarray | None = None, cache: np.ndarray | None = None,
                 slots: np.ndarray | None = None, debug: bool = False,
                 grid: int | None = None) -> EmuResult:
    """Launch ``plan.kernel`` in the emulator; only the table/cache/ids/slots are readable and
    only the output (and the debug word) writable."""
    n, row_bytes = ids.shape[0], table.shape[1] * table.itemsize
    if out is None:
        out = aligned_bytes(max(1, n * row_bytes), 0)[: n * row_bytes].view(table.dtype)
        out = out.reshape(n, table.shape[1])
    bad = np.full(1, NO_BAD, dtype=np.uint64)
    emu.emu_reset()
    emu.emu_allow_read(table.ctypes.data, table.nbytes)
    emu.emu_allow_read(ids.ctypes.data, ids.nbytes)
    emu.emu_allow_write(out.ctypes.data, out.nbytes)
    emu.emu_allow_write(bad.ctypes.data, bad.nbytes)
    if cache is not None:
        emu.emu_allow_read(cache.ctypes.data, cache.nbytes)
        emu.emu_allow_read(slots.ctypes.data, slots.nbytes)
    capacity = n * (2 * plan.lanes + 2 * (row_bytes // plan.vector_bytes + 1)) + 64  # ids, slots, rows
    trace = np.zeros((capacity, 4), dtype=np.int64)
    emu.emu_set_trace(trace.ctypes.data, capacity)
    fn = getattr(emu, "emu_" + plan.kernel)
    common = (ids.ctypes.data, n, row_bytes, table.shape[0], plan.lanes_log2,
              bad.ctypes.data if debug else None)
    launch = (grid if grid is not None else max(1, plan.grid), plan.block)
    if cache is None:
        rc = fn(*launch, table.ctypes.data, out.ctypes.data, *common)
    else:
        rc = fn(*launch, table.ctypes.data, cache.ctypes.data, slots.ctypes.data,
                out.ctypes.data, *common)
    count = emu.emu_trace_count()
    assert count <= capacity, "trace buffer too small"
    return EmuResult(rc, out, int(bad[0]), trace[:count])


def check_access_pattern(plan: GatherPlan, trace: np.ndarray, source: np.ndarray,
                         expected_bytes: int) -> None:
    """The loads from ``source`` (table or cache) keep the promised access pattern."""
    lo, hi = source.ctypes.data, source.ctypes.data + source.nbytes
    addr, size, thread = trace[:, 2], trace[:, 3], trace[:, 1]
    mine = (addr >= lo) & (addr < hi)
    addr, size, thread = addr[mine], size[mine], thread[mine]
    w = plan.vector_bytes
    assert np.all(addr + size <= hi)
    # no byte is fetched twice and none is skipped: total equals the gathered bytes
    assert int(size.sum()) == expected_bytes
    if plan.edge_bytes is not None:
        check_wide_pattern(plan, addr, size, thread, source)
        return
    # the vector width the plan chose is the width of every load
    assert np.all(size == w)
    assert np.all(addr % w == 0)
    # lane k of a group reads the k-th vector of an aligned window: the window a group reads in
    # one step starts on a 128-byte boundary (or, for spans under 128 B, on a span boundary
    # inside one 128-byte segment), so every request is an aligned 128 B read (or part of one)
    lane = thread % plan.lanes
    window = addr - lane * w
    assert np.all(window % min(SEGMENT_BYTES, plan.span) == 0)


def check_wide_pattern(plan: GatherPlan, addr, size, thread, source: np.ndarray) -> None:
    """A wide kernel's loads: 16-byte loads cover exactly the 16-byte-aligned body of every row
    they touch, through aligned windows; edge-width loads only the head and tail (under 16 bytes)."""
    base, row_bytes = source.ctypes.data, source.shape[1] * source.itemsize
    row = (addr - base) // row_bytes
    start = base + row * row_bytes
    body_lo, body_hi = (start + 15) // 16 * 16, (start + row_bytes) // 16 * 16
    wide = size == 16
    has_body = body_hi > body_lo
    assert np.all(has_body[wide]), "16-byte loads only in rows with an aligned body"
    assert np.all((addr[wide] >= body_lo[wide]) & (addr[wide] + 16 <= body_hi[wide]))
    assert np.all(addr[wide] % 16 == 0)
    window = addr[wide] - (thread[wide] % plan.lanes) * 16
    assert np.all(window % min(SEGMENT_BYTES, plan.span) == 0)
    narrow = ~wide
    assert np.all(size[narrow] == plan.edge_bytes)
    assert np.all(addr[narrow] % plan.edge_bytes == 0)
    in_edges = (addr[narrow] < body_lo[narrow]) | (addr[narrow] >= body_hi[narrow])
    assert np.all(in_edges | ~has_body[narrow]), "edge-width loads only in a row's head or tail"


def make_cache(table: np.ndarray, hot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Device-cache stand-in (256-aligned copy of the hot rows) and the row -> slot map."""
    slots = np.full(table.shape[0], -1, dtype=np.int32)
    slots[hot] = np.arange(hot.size, dtype=np.int32)
    row_bytes = table.shape[1] * table.itemsize
    cache = aligned_bytes(max(1, hot.size * row_bytes), 0)[: hot.size * row_bytes]
    cache = cache.view(table.dtype).reshape(hot.size, table.shape[1])
    cache[:] = table[hot]
    return cache, slots


@pytest.mark.parametrize("cached", [False, True], ids=["uva", "cached"])
@pytest.mark.parametrize("misalign", [0, 4], ids=["aligned", "misaligned4"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("dim", ROW_WIDTHS)
def test_emulated_gather_bit_exact(emu, dim: int, dtype: str, misalign: int, cached: bool):
    rng = np.random.default_rng(dim * 10 + misalign)
    table = make_table(97, dim, dtype, misalign, rng)
    ids = np.concatenate([rng.integers(0, 97, 60), [0, 96, 96, 5, 5, 5]]).astype(np.int64)
    row_bytes = table.shape[1] * table.itemsize
    cache = slots = None
    if cached:
        cache, slots = make_cache(table, np.array([5, 96, 40, 3, 77], dtype=np.int64))
    for max_blocks in (65535, 1):  # natural grid, and 1 block to exercise the grid-stride loop
        out = aligned_bytes(ids.size * row_bytes, 0).view(table.dtype).reshape(ids.size, dim)
        plan = plan_gather(ids.size, row_bytes, table.ctypes.data, out.ctypes.data,
                           cache_addr=None if cache is None else cache.ctypes.data,
                           max_blocks=max_blocks)
        if misalign == 4:  # 4-byte vectors at most, or 16-byte body loads with 4-byte edges
            assert plan.vector_bytes <= 4 or plan.edge_bytes in (1, 2, 4)
        res = run_emulated(emu, plan, table, ids, out=out, cache=cache, slots=slots)
        assert res.rc == 0
        np.testing.assert_array_equal(res.out.view(np.uint8), table[ids].view(np.uint8))
        hit = np.zeros(ids.size, bool) if slots is None else slots[ids] >= 0
        check_access_pattern(plan, res.trace, table, int((~hit).sum()) * row_bytes)
        if cached:
            assert hit.sum() >= 5
            check_access_pattern(plan, res.trace, cache, int(hit.sum()) * row_bytes)


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 300), dtype=st.sampled_from(list(DTYPES)),
       misalign=st.sampled_from([0, 1, 2, 4, 6, 8, 12, 64, 100]), data=st.data())
def test_emulated_gather_any_shape_and_alignment(emu, dim: int, dtype: str, misalign: int, data):
    """Random widths and base offsets (odd ones force 1- or 2-byte vectors)."""
    rng = np.random.default_rng(dim + misalign)
    n_rows = data.draw(st.integers(1, 40))
    table = make_table(n_rows, dim, dtype, misalign, rng)
    ids = np.array(data.draw(st.lists(st.integers(0, n_rows - 1), max_size=50)), dtype=np.int64)
    row_bytes = dim * table.itemsize
    out_off = data.draw(st.sampled_from([0, 2, 8, 16]))
    out = aligned_bytes(max(1, ids.size * row_bytes), out_off)[: ids.size * row_bytes]
    out = out.view(np.uint8).view(table.dtype).reshape(ids.size, dim)
    plan = plan_gather(ids.size, row_bytes, table.ctypes.data, out.ctypes.data,
                       max_blocks=data.draw(st.sampled_from([1, 3, 65535])))
    res = run_emulated(emu, plan, table, ids, out=out, grid=max(1, plan.grid))
    assert res.rc == 0
    np.testing.assert_array_equal(res.out.view(np.uint8), table[ids].view(np.uint8))
    check_access_pattern(plan, res.trace, table, ids.size * row_bytes)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("dim", [3, 100, 129])
def test_emulated_every_legal_width_and_group_size(emu, dim: int, dtype: str):
    """All vector widths / lane counts a plan may pick are correct, not just the default, and so
    are the wide kernels wherever the alignment rules out the plain 16-byte one."""
    rng = np.random.default_rng(dim)
    table = make_table(50, dim, dtype, 0, rng)
    ids = rng.integers(0, 50, 37).astype(np.int64)
    row_bytes = table.shape[1] * table.itemsize
    out = aligned_bytes(ids.size * row_bytes, 0).view(table.dtype).reshape(ids.size, dim)
    legal = vector_bytes_for(row_bytes, table.ctypes.data, out.ctypes.data)
    plans = [plan_gather(ids.size, row_bytes, table.ctypes.data, out.ctypes.data,
                         vector_bytes=width, lanes=lanes, max_blocks=2)
             for width in VECTOR_WIDTHS if legal % width == 0 for lanes in (1, 4, 8, 32)]
    if legal < 16:
        plans += [plan_gather(ids.size, row_bytes, table.ctypes.data, out.ctypes.data, lanes=lanes,
                              max_blocks=2, wide=True) for lanes in (1, 4, 8, 32)]
    for plan in plans:
        out[:] = 0
        res = run_emulated(emu, plan, table, ids, out=out)
        assert res.rc == 0, plan
        np.testing.assert_array_equal(res.out, table[ids])
        check_access_pattern(plan, res.trace, table, ids.size * row_bytes)


@pytest.mark.parametrize("cached", [False, True], ids=["uva", "cached"])
@pytest.mark.parametrize("out_offset", [0, 8])
def test_emulated_float16_width_100_uses_16_byte_loads(emu, cached: bool, out_offset: int):
    """float16 rows of 100 elements are 200 bytes: every other row starts 8 bytes off a 16-byte
    boundary, so the plain kernels could only use 8-byte vectors. The plan picks the wide
    kernel: each row's aligned body (at least 176 of its 200 bytes) is read with 16-byte loads,
    only its head and tail with 8-byte ones; the output is bit-exact."""
    rng = np.random.default_rng(100)
    table = make_table(64, 100, "float16", 0, rng)
    ids = np.concatenate([rng.integers(0, 64, 90), [1, 1, 2, 63]]).astype(np.int64)
    out = aligned_bytes(ids.size * 200, out_offset).view(np.float16).reshape(ids.size, 100)
    cache = slots = None
    if cached:
        cache, slots = make_cache(table, np.array([1, 7, 8, 40], dtype=np.int64))
    plan = plan_gather(ids.size, 200, table.ctypes.data, out.ctypes.data,
                       cache_addr=None if cache is None else cache.ctypes.data)
    assert (plan.vector_bytes, plan.edge_bytes) == (16, 8)
    assert plan.kernel.endswith("_w16s8")
    res = run_emulated(emu, plan, table, ids, out=out, cache=cache, slots=slots)
    assert res.rc == 0
    np.testing.assert_array_equal(res.out.view(np.uint8), table[ids].view(np.uint8))
    hit = np.zeros(ids.size, bool) if slots is None else slots[ids] >= 0
    check_access_pattern(plan, res.trace, table, int((~hit).sum()) * 200)
    mine = (res.trace[:, 2] >= table.ctypes.data) & (res.trace[:, 2] < table.ctypes.data + table.nbytes)
    sizes = res.trace[mine, 3]
    wide_bytes = int(sizes[sizes == 16].sum())
    assert wide_bytes >= int((~hit).sum()) * 176  # 200 bytes minus at most 8 + 16 of edges
    assert set(np.unique(sizes)) == {8, 16}


def test_emulated_empty_ids_touch_nothing(emu):
    table = make_table(10, 31, "float32", 4, np.random.default_rng(0))
    ids = np.empty(0, dtype=np.int64)
    plan = plan_gather(0, 124, table.ctypes.data, 0)
    assert plan.grid == 0  # the host never launches for an empty batch ...
    res = run_emulated(emu, plan, table, ids, grid=2)  # ... and the kernel copes if it does
    assert res.rc == 0
    assert res.trace.shape[0] == 0
    assert res.out.shape == (0, 31)


def test_emulated_duplicate_ids(emu):
    table = make_table(4, 129, "bfloat16", 4, np.random.default_rng(1))
    ids = np.full(300, 2, dtype=np.int64)
    res = run_emulated(emu, plan_gather(300, 258, table.ctypes.data, 0), table, ids)
    assert res.rc == 0
    np.testing.assert_array_equal(res.out, np.repeat(table[2:3], 300, axis=0))


def test_emulated_cached_gather_all_hits_and_no_hits(emu):
    rng = np.random.default_rng(9)
    table = make_table(30, 100, "float16", 4, rng)
    for hot in (np.arange(30, dtype=np.int64), np.empty(0, dtype=np.int64)):
        cache, slots = make_cache(table, hot)
        ids = rng.integers(0, 30, 70).astype(np.int64)
        cache_addr = cache.ctypes.data if hot.size else 0
        plan = plan_gather(ids.size, 200, table.ctypes.data, 0, cache_addr=cache_addr)
        res = run_emulated(emu, plan, table, ids, cache=cache, slots=slots)
        assert res.rc == 0
        np.testing.assert_array_equal(res.out, table[ids])
        served = cache if hot.size else table
        check_access_pattern(plan, res.trace, served, ids.size * 200)


@pytest.mark.parametrize("cached", [False, True])
def test_emulated_debug_bound_check(emu, cached: bool):
    table = make_table(20, 8, "float32", 0, np.random.default_rng(2))
    ids = np.array([1, 2, 25, 3, -1, 19], dtype=np.int64)
    kw = {}
    cache_addr = None
    if cached:
        kw["slots"] = np.full(20, -1, dtype=np.int32)
        kw["cache"] = aligned_bytes(32, 0).view(np.float32).reshape(1, 8)
        cache_addr = kw["cache"].ctypes.data
    plan = plan_gather(ids.size, 32, table.ctypes.data, 0, cache_addr=cache_addr)
    res = run_emulated(emu, plan, table, ids, debug=True, **kw)
    assert res.rc == 0  # no illegal access: bad rows were skipped
    assert res.bad == 2  # the first offending position
    good = [0, 1, 3, 5]
    np.testing.assert_array_equal(res.out[good], table[ids[good]])


def test_emulator_catches_misaligned_and_stray_accesses(emu):
    """The emulation is strict: a misaligned vector access or a read outside the registered
    table fails the launch, as it would on a GPU (so the checks above can fail)."""
    table = make_table(16, 8, "float32", 4, np.random.default_rng(3))  # 4 mod 256
    ids = np.arange(16, dtype=np.int64)
    plan = plan_gather(16, 32, table.ctypes.data, 0)
    forced = GatherPlan(kernel="gnnsys_gather_w16", vector_bytes=16, lanes=8, grid=1)
    assert run_emulated(emu, forced, table, ids).rc == 716  # cudaErrorMisalignedAddress
    # the same launch without the debug check on an id past the end reads outside the table
    res = run_emulated(emu, plan, table, np.array([0, 16], dtype=np.int64))
    assert res.rc == 700  # cudaErrorIllegalAddress
    assert BLOCK_THREADS % plan.lanes == 0


# --------------------------------------------------------------------------------------------
# 3. the int8 gather: dequantised on the GPU exactly as the numba CPU gather does it
# --------------------------------------------------------------------------------------------
def test_nvrtc_compiles_int8_gather():
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    from gnnsys.features.launch_plan import INT8_CACHED_GATHER_KERNEL, INT8_GATHER_KERNEL

    ptx = nvrtc_compile_ptx((CUDA_DIR / GATHER_SOURCE).read_text(), GATHER_SOURCE, "compute_80")
    assert f".entry {INT8_GATHER_KERNEL}(" in ptx
    assert f".entry {INT8_CACHED_GATHER_KERNEL}(" in ptx


@pytest.mark.parametrize("dim", [1, 3, 31, 32, 100, 128])
def test_emulated_int8_gather_equals_numba_gather(emu, dim: int):
    from gnnsys.data.quantize import dequantize_rows, quantize_rows
    from gnnsys.features.launch_plan import plan_int8_gather
    from gnnsys.features.tiered_gather import gather_tiered_into

    rng = np.random.default_rng(dim)
    n_rows = 57
    x = rng.standard_normal((n_rows, dim)).astype(np.float32) * rng.uniform(0.01, 100, (n_rows, 1)).astype(np.float32)
    x[5] = 0.0  # a zero row: scale 0
    q, s = quantize_rows(x)
    ids = np.concatenate([rng.integers(0, n_rows, 300), [0, n_rows - 1, 5, 5]]).astype(np.int64)
    plan = plan_int8_gather(ids.size, dim)
    out = np.full((ids.size, dim), np.nan, np.float32)
    bad = np.array([NO_BAD], np.uint64)
    fn = emu.emu_gnnsys_gather_int8
    vp, i64, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32
    fn.argtypes = [u32, u32, vp, vp, vp, vp, i64, i64, i64, u32, vp]
    fn.restype = ctypes.c_int
    emu.emu_reset()
    emu.emu_allow_read(q.ctypes.data, q.nbytes)
    emu.emu_allow_read(s.ctypes.data, s.nbytes)
    emu.emu_allow_read(ids.ctypes.data, ids.nbytes)
    emu.emu_allow_write(out.ctypes.data, out.nbytes)
    emu.emu_allow_write(bad.ctypes.data, bad.nbytes)
    rc = fn(plan.grid, plan.block, q.ctypes.data, s.ctypes.data, out.ctypes.data, ids.ctypes.data,
            ids.size, dim, n_rows, plan.lanes_log2, bad.ctypes.data)
    assert rc == 0
    assert int(bad[0]) == NO_BAD
    cpu = np.empty_like(out)
    gather_tiered_into(q, ids, cpu, scales=s)
    assert np.array_equal(out.view(np.uint32), cpu.view(np.uint32))
    assert np.array_equal(out.view(np.uint32), dequantize_rows(q[ids], s[ids]).view(np.uint32))
    # the cached form: even rows from a copy in a separate "device" cache, odd rows from the table
    hot = np.arange(0, n_rows, 2)
    cache = np.ascontiguousarray(q[hot])
    slots = np.full(n_rows, -1, np.int32)
    slots[hot] = np.arange(hot.size, dtype=np.int32)
    q_cold = q.copy()
    q_cold[hot] = 0  # a row read from the table instead of the cache would come out wrong
    cached = np.full_like(out, np.nan)
    fn = emu.emu_gnnsys_gather_int8_cached
    fn.argtypes = [u32, u32, vp, vp, vp, vp, vp, vp, i64, i64, i64, u32, vp]
    fn.restype = ctypes.c_int
    for a in (q_cold, cache, slots):
        emu.emu_allow_read(a.ctypes.data, a.nbytes)
    emu.emu_allow_write(cached.ctypes.data, cached.nbytes)
    plan = plan_int8_gather(ids.size, dim, cached=True)
    rc = fn(plan.grid, plan.block, q_cold.ctypes.data, cache.ctypes.data, slots.ctypes.data,
            s.ctypes.data, cached.ctypes.data, ids.ctypes.data, ids.size, dim, n_rows,
            plan.lanes_log2, bad.ctypes.data)
    assert rc == 0 and int(bad[0]) == NO_BAD
    assert np.array_equal(cached.view(np.uint32), cpu.view(np.uint32))
