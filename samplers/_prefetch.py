"""Software prefetch for numba kernels: ask the CPU to start loading a line that a later step
will read (or write), so that several cache misses are in flight at once instead of one after
another.

numba has no prefetch function, so this module emits LLVM's ``llvm.prefetch`` intrinsic (a hint:
it never faults, not even on a bad address, and changes no result): :data:`prefetch_element`
and :data:`prefetch_element_for_write` for one element's line, :func:`prefetch_row` for every line
of a matrix row. Used where a kernel knows its next addresses ahead of time and would otherwise
wait on each miss in turn: the sampler's pipelines (``samplers/_fused.py``, ``reset_map``) and
the skip-gram trainer (``gnnsys/embedding/sgns.py``), whose samples are rows scattered over two
large matrices.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: Bytes per cache line (x86-64 and most AArch64 cores).
LINE_BYTES = 64


def _prefetch_intrinsic(rw: int, locality: int, doc: str):
    """An intrinsic ``(arr, flat)`` that prefetches the cache line holding element ``flat`` (a
    C-order flat index) of ``arr``; ``rw``: 0 to read, 1 to write; ``locality``: LLVM's 0
    (no temporal locality) to 3 (keep in all cache levels)."""

    def typer(typingctx, arr, flat):
        if not (isinstance(arr, types.Array) and arr.layout == "C"
                and isinstance(flat, types.Integer)):
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
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
            # cache type 1: data
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, rw),
                              ir.Constant(i32, locality), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    typer.__doc__ = doc
    return intrinsic(typer)


#: ``prefetch_element(arr, flat)``: prefetch the line of ``arr``'s element ``flat`` (C-order
#: flat index; any numeric dtype, C-contiguous) for reading. A hint only: any index is safe.
prefetch_element = _prefetch_intrinsic(0, 3, "Prefetch ``arr``'s element ``flat`` for reading.")
#: As :data:`prefetch_element` with locality 1: data read once (the feature gather's rows), which
#: the hint need not keep in the nearest caches.
prefetch_element_once = _prefetch_intrinsic(
    0, 1, "Prefetch ``arr``'s element ``flat`` for reading once.")
#: As :data:`prefetch_element`, for a line that is about to be written (scattered stores).
prefetch_element_for_write = _prefetch_intrinsic(
    1, 3, "Prefetch ``arr``'s element ``flat`` for writing.")


@njit(cache=True, nogil=True, inline="always")
def prefetch_row(mat, i):
    """Prefetch row ``i`` of the C-contiguous 2-D array ``mat`` (every cache line of it).
    A hint only: any ``i`` is safe, nothing is read or written."""
    width = mat.shape[1]
    step = max(1, LINE_BYTES // mat.itemsize)
    base = i * width
    for off in range(0, width, step):
        prefetch_element(mat, base + off)
