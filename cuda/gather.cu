// gather.cu -- zero-copy row gather of gnnsys (the PyTorch-Direct design).
//
//   out[i, :] = table[ids[i], :]        for i in [0, n)
//
// `table` is a row-major N x row_bytes byte table. For the `uva` placement it is host memory that
// was pinned in place (cudaHostRegister) and is read here through its unified address, so every
// load below is a PCIe read and no CPU gather or staging copy happens. `out` is device memory.
// Rows are moved as raw bytes (no arithmetic on elements), so float32 / float16 / bfloat16 are
// all copied bit for bit.
//
// Access pattern (what makes the PCIe reads efficient):
//   * A group of `1 << lanes_log2` consecutive lanes (a whole warp, or a sub-warp for narrow
//     rows; never straddling a warp) copies one row; groups walk the ids in a grid-stride loop.
//   * Every lane moves one vector of V bytes per step. V (16, 8, 4, 2 or 1 byte) is the widest
//     width that divides the table base, the output base and the row size, chosen by the host
//     (gnnsys/features/launch_plan.py) and selected through the kernel name suffix _w16 ... _w1.
//   * When that width is below 16 bytes but rows are long (e.g. float16 rows of 100 elements:
//     200 bytes, so every other row starts 8 bytes off a 16-byte boundary), the _w16sS kernels
//     read the 16-byte-aligned body of every row with 16-byte loads and only its head and tail
//     (under 16 bytes each) with S-byte vectors (S: the width above). A 16-byte value is stored
//     whole where its destination is 16-byte aligned, else as 16 / S pieces.
//   * A group reads its row through windows of span = lanes * V bytes. The first window starts
//     at the row start shifted down to the 128-byte boundary (or, when span < 128, down to the
//     span boundary, which lies inside that 128-byte segment); lanes whose vector lies outside
//     the row are masked. So each step of a group is one aligned request covering whole 128-byte
//     segments (or a part of exactly one segment), never a request that straddles segments.
//   * Loads go through the read-only path (__ldg); stores are streaming (__stcs): each output
//     byte is written once. The `cached` kernels read device-resident hot rows the same way.
//
// Ids must be validated by the host before a launch (0 <= id < num_rows). When `bad` is not
// null the kernel also bound-checks every id (debug mode): out-of-range rows are skipped and the
// smallest offending position i is stored into *bad with atomicMin (initialise it to ~0ull).
//
// This file includes no header: it must compile unchanged with nvcc, with NVRTC at run time
// (cupy RawModule, no standard headers available) and with the host C++ compiler under
// tests/cuda_emu/cuda_emu.h, which runs the very same kernels on the CPU in the tests. Kernels
// may use only what that emulation runs faithfully: no __syncthreads, no warp shuffles, no
// shared memory (none is needed here: lanes never exchange data).

typedef unsigned long long gnnsys_u64;
typedef long long gnnsys_i64;

// Copy one row of `row_bytes` bytes from `src` to `dst` with the lanes of one group.
// V: the vector type moved per lane and step (sizeof(V) divides src, dst and row_bytes).
template <typename V>
__device__ __forceinline__ void gnnsys_copy_row(const unsigned char* __restrict__ src,
                                                unsigned char* __restrict__ dst,
                                                gnnsys_i64 row_bytes, unsigned lane,
                                                unsigned lanes_log2)
{
    const gnnsys_u64 width = sizeof(V);
    const gnnsys_u64 span = width << lanes_log2;            // bytes one group reads per step
    const gnnsys_u64 align = span < 128ull ? span : 128ull; // window alignment
    const gnnsys_u64 start = (gnnsys_u64)src;
    const gnnsys_u64 end = start + (gnnsys_u64)row_bytes;
    for (gnnsys_u64 window = start & ~(align - 1ull); window < end; window += span) {
        const gnnsys_u64 addr = window + (gnnsys_u64)lane * width;
        if (addr >= start && addr < end) {                  // mask lanes outside the row
            const V v = __ldg(reinterpret_cast<const V*>(addr));
            __stcs(reinterpret_cast<V*>(dst + (addr - start)), v);
        }
    }
}

// Store the 16 bytes `v` at `dst`, which is aligned to sizeof(S): whole where `dst` is 16-byte
// aligned, else as 16 / sizeof(S) streaming stores of S.
template <typename S>
__device__ __forceinline__ void gnnsys_store16(unsigned char* dst, const uint4 v)
{
    if ((((gnnsys_u64)dst) & 15ull) == 0ull) {
        __stcs(reinterpret_cast<uint4*>(dst), v);
        return;
    }
    union {
        uint4 whole;
        S part[16 / sizeof(S)];
    } pieces;
    pieces.whole = v;
    for (unsigned k = 0; k < 16u / (unsigned)sizeof(S); ++k)
        __stcs(reinterpret_cast<S*>(dst) + k, pieces.part[k]);
}

// Copy one row with 16-byte loads over its 16-byte-aligned body [body_lo, body_hi) (through
// aligned windows, as gnnsys_copy_row) and S-byte vectors over its head and tail.
// sizeof(S) divides src, dst and row_bytes.
template <typename S>
__device__ __forceinline__ void gnnsys_copy_row_wide(const unsigned char* __restrict__ src,
                                                     unsigned char* __restrict__ dst,
                                                     gnnsys_i64 row_bytes, unsigned lane,
                                                     unsigned lanes_log2)
{
    const gnnsys_u64 start = (gnnsys_u64)src;
    const gnnsys_u64 end = start + (gnnsys_u64)row_bytes;
    const gnnsys_u64 body_lo = (start + 15ull) & ~15ull;
    const gnnsys_u64 body_hi = end & ~15ull;
    if (body_hi <= body_lo) {  // no whole aligned 16 bytes in this row
        gnnsys_copy_row<S>(src, dst, row_bytes, lane, lanes_log2);
        return;
    }
    const gnnsys_u64 w = sizeof(S);
    const unsigned lanes = 1u << lanes_log2;
    const unsigned head = (unsigned)((body_lo - start) / w);
    const unsigned tail = (unsigned)((end - body_hi) / w);
    for (unsigned k = lane; k < head; k += lanes) {
        const gnnsys_u64 addr = start + k * w;
        __stcs(reinterpret_cast<S*>(dst + (addr - start)), __ldg(reinterpret_cast<const S*>(addr)));
    }
    for (unsigned k = lane; k < tail; k += lanes) {
        const gnnsys_u64 addr = body_hi + k * w;
        __stcs(reinterpret_cast<S*>(dst + (addr - start)), __ldg(reinterpret_cast<const S*>(addr)));
    }
    const gnnsys_u64 span = 16ull << lanes_log2;
    const gnnsys_u64 align = span < 128ull ? span : 128ull;
    for (gnnsys_u64 window = body_lo & ~(align - 1ull); window < body_hi; window += span) {
        const gnnsys_u64 addr = window + (gnnsys_u64)lane * 16ull;
        if (addr >= body_lo && addr < body_hi)
            gnnsys_store16<S>(dst + (addr - start), __ldg(reinterpret_cast<const uint4*>(addr)));
    }
}

// Row copy policies of the kernels below: gnnsys_plain_copy<V> moves V-byte vectors,
// gnnsys_wide_copy<S> 16-byte body loads and S-byte head and tail.
template <typename V>
struct gnnsys_plain_copy {
    static __device__ __forceinline__ void row(const unsigned char* __restrict__ src,
                                               unsigned char* __restrict__ dst,
                                               gnnsys_i64 row_bytes, unsigned lane,
                                               unsigned lanes_log2)
    {
        gnnsys_copy_row<V>(src, dst, row_bytes, lane, lanes_log2);
    }
};

template <typename S>
struct gnnsys_wide_copy {
    static __device__ __forceinline__ void row(const unsigned char* __restrict__ src,
                                               unsigned char* __restrict__ dst,
                                               gnnsys_i64 row_bytes, unsigned lane,
                                               unsigned lanes_log2)
    {
        gnnsys_copy_row_wide<S>(src, dst, row_bytes, lane, lanes_log2);
    }
};

// Position of this thread's group and its lane inside the group.
__device__ __forceinline__ void gnnsys_group_of_thread(unsigned lanes_log2, gnnsys_i64* group,
                                                       gnnsys_i64* groups, unsigned* lane)
{
    const unsigned thread = blockIdx.x * blockDim.x + threadIdx.x;
    *lane = threadIdx.x & ((1u << lanes_log2) - 1u);
    *group = (gnnsys_i64)(thread >> lanes_log2);
    *groups = (gnnsys_i64)(((gnnsys_u64)gridDim.x * blockDim.x) >> lanes_log2);
}

// Plain gather: every row comes from `table` (host memory through UVA, or device memory).
template <typename COPY>
__device__ __forceinline__ void gnnsys_gather_rows(const unsigned char* __restrict__ table,
                                                   unsigned char* __restrict__ out,
                                                   const gnnsys_i64* __restrict__ ids,
                                                   gnnsys_i64 n, gnnsys_i64 row_bytes,
                                                   gnnsys_i64 num_rows, unsigned lanes_log2,
                                                   gnnsys_u64* bad)
{
    gnnsys_i64 group, groups;
    unsigned lane;
    gnnsys_group_of_thread(lanes_log2, &group, &groups, &lane);
    for (gnnsys_i64 i = group; i < n; i += groups) {
        const gnnsys_i64 row = __ldg(ids + i);
        if (bad != 0 && (row < 0 || row >= num_rows)) {
            if (lane == 0) atomicMin(bad, (gnnsys_u64)i);
            continue;
        }
        COPY::row(table + row * row_bytes, out + i * row_bytes, row_bytes, lane, lanes_log2);
    }
}

// Cached gather: rows with slots[row] >= 0 come from the device-resident `cache`
// (cache row = slots[row]); the others are read by zero-copy from the host `table`.
template <typename COPY>
__device__ __forceinline__ void gnnsys_gather_rows_cached(const unsigned char* __restrict__ table,
                                                          const unsigned char* __restrict__ cache,
                                                          const int* __restrict__ slots,
                                                          unsigned char* __restrict__ out,
                                                          const gnnsys_i64* __restrict__ ids,
                                                          gnnsys_i64 n, gnnsys_i64 row_bytes,
                                                          gnnsys_i64 num_rows, unsigned lanes_log2,
                                                          gnnsys_u64* bad)
{
    gnnsys_i64 group, groups;
    unsigned lane;
    gnnsys_group_of_thread(lanes_log2, &group, &groups, &lane);
    for (gnnsys_i64 i = group; i < n; i += groups) {
        const gnnsys_i64 row = __ldg(ids + i);
        if (bad != 0 && (row < 0 || row >= num_rows)) {
            if (lane == 0) atomicMin(bad, (gnnsys_u64)i);
            continue;
        }
        const int slot = __ldg(slots + row);
        const unsigned char* src =
            slot >= 0 ? cache + (gnnsys_i64)slot * row_bytes : table + row * row_bytes;
        COPY::row(src, out + i * row_bytes, row_bytes, lane, lanes_log2);
    }
}

#define GNNSYS_DEFINE_GATHER(SUFFIX, COPY)                                                      \
    extern "C" __global__ void __launch_bounds__(256) gnnsys_gather_##SUFFIX(                   \
        const unsigned char* __restrict__ table, unsigned char* __restrict__ out,               \
        const gnnsys_i64* __restrict__ ids, gnnsys_i64 n, gnnsys_i64 row_bytes,                 \
        gnnsys_i64 num_rows, unsigned lanes_log2, gnnsys_u64* bad)                              \
    {                                                                                           \
        gnnsys_gather_rows<COPY>(table, out, ids, n, row_bytes, num_rows, lanes_log2, bad);     \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(256) gnnsys_gather_cached_##SUFFIX(            \
        const unsigned char* __restrict__ table, const unsigned char* __restrict__ cache,       \
        const int* __restrict__ slots, unsigned char* __restrict__ out,                         \
        const gnnsys_i64* __restrict__ ids, gnnsys_i64 n, gnnsys_i64 row_bytes,                 \
        gnnsys_i64 num_rows, unsigned lanes_log2, gnnsys_u64* bad)                              \
    {                                                                                           \
        gnnsys_gather_rows_cached<COPY>(table, cache, slots, out, ids, n, row_bytes, num_rows,  \
                                        lanes_log2, bad);                                       \
    }

GNNSYS_DEFINE_GATHER(w16, gnnsys_plain_copy<uint4>)
GNNSYS_DEFINE_GATHER(w8, gnnsys_plain_copy<uint2>)
GNNSYS_DEFINE_GATHER(w4, gnnsys_plain_copy<unsigned int>)
GNNSYS_DEFINE_GATHER(w2, gnnsys_plain_copy<unsigned short>)
GNNSYS_DEFINE_GATHER(w1, gnnsys_plain_copy<unsigned char>)
GNNSYS_DEFINE_GATHER(w16s8, gnnsys_wide_copy<uint2>)
GNNSYS_DEFINE_GATHER(w16s4, gnnsys_wide_copy<unsigned int>)
GNNSYS_DEFINE_GATHER(w16s2, gnnsys_wide_copy<unsigned short>)
GNNSYS_DEFINE_GATHER(w16s1, gnnsys_wide_copy<unsigned char>)

#undef GNNSYS_DEFINE_GATHER

// int8 tables (symmetric per-row quantisation, gnnsys/data/quantize.py): row r is stored as
// `dim` int8 codes and one float32 scale, and read back dequantised,
//
//   out[i, j] = (float)table[ids[i], j] * scales[ids[i]]     (float32 multiply, no FMA)
//
// which is bit for bit the CPU reference (q.astype(float32) * s) and the numba gather of
// gnnsys/features/tiered_gather.py. A group of `1 << lanes_log2` lanes handles one row: lane k
// reads codes k, k + lanes, ... (consecutive lanes read consecutive bytes, one coalesced request
// per step) and writes the float32 results the same way. `scales` is device memory (uploaded
// once by the host); `table` is the zero-copy host table (`uva`, `cached`) or device memory.
// The `cached` form reads rows with slots[row] >= 0 from the device-resident int8 `cache`
// (cache row = slots[row]) and every other row from `table`, with the same scales: a hit and a
// miss of one row give the same bits.
__device__ __forceinline__ void gnnsys_gather_rows_int8(const signed char* __restrict__ table,
                                                        const signed char* __restrict__ cache,
                                                        const int* __restrict__ slots,
                                                        const float* __restrict__ scales,
                                                        float* __restrict__ out,
                                                        const gnnsys_i64* __restrict__ ids,
                                                        gnnsys_i64 n, gnnsys_i64 dim,
                                                        gnnsys_i64 num_rows, unsigned lanes_log2,
                                                        gnnsys_u64* bad)
{
    gnnsys_i64 group, groups;
    unsigned lane;
    gnnsys_group_of_thread(lanes_log2, &group, &groups, &lane);
    const gnnsys_i64 lanes = (gnnsys_i64)1 << lanes_log2;
    for (gnnsys_i64 i = group; i < n; i += groups) {
        const gnnsys_i64 row = __ldg(ids + i);
        if (bad != 0 && (row < 0 || row >= num_rows)) {
            if (lane == 0) atomicMin(bad, (gnnsys_u64)i);
            continue;
        }
        const float s = __ldg(scales + row);
        const int slot = slots != 0 ? __ldg(slots + row) : -1;
        const signed char* src = slot >= 0 ? cache + (gnnsys_i64)slot * dim : table + row * dim;
        float* dst = out + i * dim;
        for (gnnsys_i64 j = lane; j < dim; j += lanes)
            __stcs(dst + j, (float)__ldg(src + j) * s);
    }
}

extern "C" __global__ void __launch_bounds__(256) gnnsys_gather_int8(
    const signed char* __restrict__ table, const float* __restrict__ scales,
    float* __restrict__ out, const gnnsys_i64* __restrict__ ids, gnnsys_i64 n, gnnsys_i64 dim,
    gnnsys_i64 num_rows, unsigned lanes_log2, gnnsys_u64* bad)
{
    gnnsys_gather_rows_int8(table, 0, 0, scales, out, ids, n, dim, num_rows, lanes_log2, bad);
}

extern "C" __global__ void __launch_bounds__(256) gnnsys_gather_int8_cached(
    const signed char* __restrict__ table, const signed char* __restrict__ cache,
    const int* __restrict__ slots, const float* __restrict__ scales, float* __restrict__ out,
    const gnnsys_i64* __restrict__ ids, gnnsys_i64 n, gnnsys_i64 dim, gnnsys_i64 num_rows,
    unsigned lanes_log2, gnnsys_u64* bad)
{
    gnnsys_gather_rows_int8(table, cache, slots, scales, out, ids, n, dim, num_rows, lanes_log2,
                            bad);
}
