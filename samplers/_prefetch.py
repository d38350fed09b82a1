"""Software prefetch for numba kernels: ask the CPU to start loading a row that a later step
will read, so that several cache misses are in flight at once instead of one after another.

numba has no prefetch function, so :func:`prefetch_row` emits LLVM's ``llvm.prefetch`` intrinsic
(a hint: it never faults, not even on a bad address, and changes no result). Used where a
kernel knows its next rows ahead of time and otherwise waits on each miss in turn, e.g. the
skip-gram trainer (``gnnsys/embedding/sgns.py``), whose samples are rows scattered over two
large matrices.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: Bytes per cache line (x86-64 and most AArch64 cores).
LINE_BYTES = 64


@intrinsic
def _prefetch_element(typingctx, arr, flat):
    """Prefetch the cache line holding element ``flat`` (a C-order flat index) of ``arr``, for
    reading, into all cache levels. ``arr``: a C-contiguous array of any numeric dtype."""
    if not (isinstance(arr, types.Array) and arr.layout == "C" and isinstance(flat, types.Integer)):
        return None
    sig = types.void(arr, flat)

    def codegen(context, builder, signature, args):
        arr_v, flat_v = args
        ary = context.make_array(signature.args[0])(context, builder, arr_v)
        flat64 = context.cast(builder, flat_v, signature.args[1], types.int64)
        ptr = builder.gep(ary.data, [flat64])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        name = "llvm.prefetch.p0"
        fn = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)
        # rw 0 (read), locality 3 (keep in all levels), cache type 1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_row(mat, i):
    """Prefetch row ``i`` of the C-contiguous 2-D array ``mat`` (every cache line of it).
    A hint only: any ``i`` is safe, nothing is read or written."""
    width = mat.shape[1]
    step = max(1, LINE_BYTES // mat.itemsize)
    base = i * width
    for off in range(0, width, step):
        _prefetch_element(mat, base + off)
