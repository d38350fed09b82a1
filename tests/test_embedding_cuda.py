"""cuda/sgns.cu: compiled by NVRTC (also nvcc -Werror, in tests/test_cuda_kernels.py, which
covers every cuda/*.cu) and run on the CPU under tests/cuda_emu: a chunk trained round by round
by the kernel equals the numba trainer's (gnnsys/embedding/sgns.py) to float32 rounding, with the
same negatives."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gnnsys.embedding.sgns import (
    bucketize,
    negative_table,
    skipgram_schedule,
    symmetric_schedule,
    train_rounds,
    walk_pairs,
)
from gnnsys.features.kernels import nvrtc_compile_ptx
from samplers.walks import random_walks

REPO = Path(__file__).resolve().parents[1]
CU = REPO / "cuda" / "sgns.cu"
EMU = Path(__file__).resolve().parent / "cuda_emu"


def test_nvrtc_compiles_sgns():
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    for arch in ("compute_80", "compute_90"):
        ptx = nvrtc_compile_ptx(CU.read_text(), CU.name, arch)
        assert ".entry gnnsys_sgns_round(" in ptx


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler to build the CUDA emulation")
    lib = tmp_path_factory.mktemp("sgns_emu") / "sgns_emu.so"
    cmd = [cxx, "-std=c++20", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           f"-I{REPO / 'cuda'}", f"-I{EMU}", str(EMU / "sgns_launcher.cpp"), "-o", str(lib)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    dll = ctypes.CDLL(str(lib))
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    fn = dll.emu_gnnsys_sgns_round
    fn.argtypes = [ctypes.c_uint32, ctypes.c_uint32, vp, vp, i64, vp, vp, vp, vp, i64, vp, vp, vp, i64, i64,
                   ctypes.c_float, ctypes.c_uint64, vp, vp, vp]
    fn.restype = ctypes.c_int
    dll.emu_allow_read.argtypes = [vp, i64]
    dll.emu_allow_write.argtypes = [vp, i64]
    return dll


def _ptr(a: np.ndarray):
    return a.ctypes.data


def _chunk(P: int, symmetric: bool, n: int = 200, dim: int = 24):
    rng = np.random.default_rng(1)
    nbrs = [set() for _ in range(n)]
    for a, b in rng.integers(0, n, size=(900, 2)):
        if a != b:
            nbrs[a].add(int(b))
            nbrs[b].add(int(a))
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum([len(s) for s in nbrs])
    indices = np.array([x for s in nbrs for x in sorted(s)], np.int32)

    class G:
        pass

    g = G()
    g.indptr, g.indices = indptr, indices
    walks = random_walks(g, np.arange(n), 12, seed=2)
    a_raw = np.empty(n * 12 * 2 * 3, np.int32)
    b_raw = np.empty_like(a_raw)
    block_of = (rng.permutation(n) % P).astype(np.int32)
    keys = np.empty_like(a_raw)
    cnt, _ = walk_pairs(walks, 3, np.empty(0, np.float32), np.uint64(99), 0, block_of, P, a_raw, b_raw, keys)
    if symmetric:  # LINE's buckets: the smaller block first
        x, y = block_of[a_raw[:cnt]], block_of[b_raw[:cnt]]
        keys[:cnt] = np.minimum(x, y) * P + np.maximum(x, y)
    pa, pb, ptr = bucketize(a_raw, b_raw, keys, cnt, P, 1 if symmetric else 12)
    table, tptr = negative_table(np.diff(indptr) ** 0.75, block_of, P, 4096)
    emb_in = ((rng.random((n, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
    emb_out = emb_in if symmetric else (rng.random((n, dim), dtype=np.float32) * 0.01).astype(np.float32)
    sched = symmetric_schedule(P) if symmetric else skipgram_schedule(P)
    return emb_in, emb_out, pa, pb, ptr, sched, block_of, table.astype(np.int32), tptr


@pytest.mark.parametrize("P,symmetric,neg_share", [(1, False, 1), (4, False, 1), (3, False, 1), (4, True, 1),
                                                 (4, False, 7), (4, True, 5)])
def test_emulated_kernel_equals_numba(emu, P, symmetric, neg_share):
    emb_in, emb_out, pa, pb, ptr, sched, block_of, table, tptr = _chunk(P, symmetric)
    key, lr, num_neg = np.uint64(0xC0FFEE), np.float32(0.025), 5
    ref_in = emb_in.copy()
    ref_out = ref_in if symmetric else emb_out.copy()
    ref_loss = np.zeros(P * P)
    train_rounds(ref_in, ref_out, pa, pb, ptr, sched, block_of, table, tptr, num_neg, neg_share, lr, key,
                 ref_loss)

    got_in = emb_in.copy()
    got_out = got_in if symmetric else emb_out.copy()
    losses = np.zeros(P * P)
    dim = emb_in.shape[1]
    for row in sched:
        row = np.ascontiguousarray(row)
        scratch = np.zeros((row.size, dim), np.float32)
        targets = np.zeros((row.size, num_neg + 1), np.int64)
        emu.emu_reset()
        for arr in (pa, pb, ptr, row, block_of, table, tptr):
            emu.emu_allow_read(_ptr(arr), arr.nbytes)
        for arr in (got_in, got_out, losses, scratch, targets):
            emu.emu_allow_write(_ptr(arr), arr.nbytes)
        rc = emu.emu_gnnsys_sgns_round(1, 32, _ptr(got_in), _ptr(got_out), dim, _ptr(pa), _ptr(pb), _ptr(ptr),
                                       _ptr(row), row.size, _ptr(block_of), _ptr(table), _ptr(tptr),
                                       num_neg, neg_share, float(lr), int(key), _ptr(losses), _ptr(scratch),
                                       _ptr(targets))
        assert rc == 0
    assert pa.size > 1000 and np.abs(got_in - emb_in).max() > 1e-3  # it did train
    np.testing.assert_allclose(got_in, ref_in, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(got_out, ref_out, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(losses, ref_loss, rtol=1e-5)
