"""Vector gathers for the sampling kernels: ``out[q] = table[idx[q]]`` eight lanes at a time.

LLVM does not vectorise a gather loop that stores its results (``out[q] = table[idx[q]]``):
numba cannot mark array arguments as non-aliasing, so every store might change a later load.
It does vectorise the same loads when they feed a sum, which is why a read-only loop (the
bench's floor) issued the same random reads 2.5x faster than the sampler's store loop
(products-like, hop 2: 4.4 against 11 ns per ``indices`` read, 3.1 against 9.1 per relabel
probe, one thread). :func:`gather_into` emits the vector form directly: one ``llvm.masked.gather``
per eight indices, so the eight loads are in flight together. On a CPU whose backend prefers no
gathers (or has none), LLVM turns the intrinsic back into eight scalar loads, so the result is
the same everywhere; only the speed differs.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: Lanes per vector gather (eight int64 indices: one 512-bit vector).
LANES = 8


@intrinsic
def _gather_lanes(typingctx, table, idx, out, q):
    """``out[q + i] = table[idx[q + i]]`` for ``i < LANES`` as one vector gather.

    ``table``: a contiguous 1-D signed integer array (any width, sign-extended to int64);
    ``idx``, ``out``: int64. All three 1-D and C-contiguous (others do not type).
    No bounds checks: the caller guarantees ``q + LANES <= idx.size <= out.size`` and that every
    index is in ``[0, table.size)``.
    """
    if not (isinstance(table, types.Array) and isinstance(table.dtype, types.Integer)
            and table.dtype.signed
            and isinstance(idx, types.Array) and idx.dtype == types.int64
            and isinstance(out, types.Array) and out.dtype == types.int64
            and isinstance(q, types.Integer)
            and table.ndim == idx.ndim == out.ndim == 1
            and table.layout == idx.layout == out.layout == "C"):
        return None
    sig = types.void(table, idx, out, q)

    def codegen(context, builder, signature, args):
        table_v, idx_v, out_v, q_v = args
        tab = context.make_array(signature.args[0])(context, builder, table_v)
        ida = context.make_array(signature.args[1])(context, builder, idx_v)
        oua = context.make_array(signature.args[2])(context, builder, out_v)
        i32 = ir.IntType(32)
        i64 = ir.IntType(64)
        elem = context.get_data_type(signature.args[0].dtype)
        v_i64 = ir.VectorType(i64, LANES)
        v_elem = ir.VectorType(elem, LANES)
        q64 = context.cast(builder, q_v, signature.args[3], types.int64)
        # the lanes' indices: one vector load
        vidx = builder.load(builder.bitcast(builder.gep(ida.data, [q64], inbounds=True),
                                            v_i64.as_pointer()), align=8)
        # their addresses: base + index * itemsize, as a vector of pointers (llvmlite has no
        # vector GEP)
        base = builder.insert_element(ir.Constant(v_i64, ir.Undefined),
                                      builder.ptrtoint(tab.data, i64), ir.Constant(i32, 0))
        base = builder.shuffle_vector(base, ir.Constant(v_i64, ir.Undefined),
                                      ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
        offs = builder.mul(vidx, ir.Constant(v_i64, [elem.width // 8] * LANES))
        ptrs = builder.inttoptr(builder.add(base, offs), ir.VectorType(elem.as_pointer(), LANES))
        v_mask = ir.VectorType(ir.IntType(1), LANES)
        name = f"llvm.masked.gather.v{LANES}i{elem.width}.v{LANES}p0"
        fnty = ir.FunctionType(v_elem, [ptrs.type, i32, v_mask, v_elem])
        fn = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)
        vals = builder.call(fn, [ptrs, ir.Constant(i32, elem.width // 8),
                                 ir.Constant(v_mask, [1] * LANES), ir.Constant(v_elem, None)])
        if elem.width < 64:
            vals = builder.sext(vals, v_i64)
        builder.store(vals, builder.bitcast(builder.gep(oua.data, [q64], inbounds=True),
                                            v_i64.as_pointer()), align=8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def gather_into(table, idx, out, a, b):
    """``out[q] = table[idx[q]]`` for ``q`` in ``a .. b - 1`` (``out`` may be ``idx``).

    Args:
        table: contiguous 1-D signed integer array (e.g. int32 or int64), every ``idx[q]`` a
            valid index.
        idx: int64 ``[>= b]``; out: int64 ``[>= b]``.
    """
    q = a
    while q + LANES <= b:
        _gather_lanes(table, idx, out, q)
        q += LANES
    while q < b:
        out[q] = table[idx[q]]
        q += 1
