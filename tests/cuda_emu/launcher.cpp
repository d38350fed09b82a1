// launcher.cpp -- builds the kernels of cuda/gather.cu and cuda/sample.cu for the CPU (through
// cuda_emu.h) and exports one C entry point per kernel, loaded with ctypes by the tests
// (tests/cuda_emu/build.py).
//
// Build: g++ -std=c++20 -O1 -shared -fPIC -I<repo>/cuda -I<repo>/tests/cuda_emu launcher.cpp
//
// Every entry point takes the launch configuration (grid, block: 1-D) followed by the kernel's
// own arguments, runs the whole grid on the calling thread and returns a CUDA error code
// (0 = success, 700 = illegal address, 716 = misaligned address, 9 = invalid configuration).
// Before a launch the test declares which byte ranges the kernel may read and write
// (emu_allow_read / emu_allow_write) and where to record the loads (emu_set_trace).
#include "cuda_emu.h"

#include "gather.cu"
#include "sample.cu"

using gnnsys_ptr = const unsigned char*;

extern "C" {

void emu_reset()
{
    cuda_emu::Device& dev = cuda_emu::device();
    dev.readable.clear();
    dev.writable.clear();
    dev.trace = nullptr;
    dev.trace_capacity = 0;
    dev.trace_count = 0;
    dev.error = cuda_emu::kSuccess;
}

void emu_allow_read(const void* ptr, long long nbytes)
{
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(ptr);
    cuda_emu::device().readable.push_back({p, p + static_cast<std::uintptr_t>(nbytes)});
}

void emu_allow_write(const void* ptr, long long nbytes)
{
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(ptr);
    cuda_emu::device().writable.push_back({p, p + static_cast<std::uintptr_t>(nbytes)});
    // what a kernel may write it may also read back
    cuda_emu::device().readable.push_back({p, p + static_cast<std::uintptr_t>(nbytes)});
}

void emu_set_trace(long long* records, long long capacity)
{
    cuda_emu::Device& dev = cuda_emu::device();
    dev.trace = reinterpret_cast<std::int64_t*>(records);
    dev.trace_capacity = capacity;
    dev.trace_count = 0;
}

long long emu_trace_count() { return cuda_emu::device().trace_count; }

#define GNNSYS_EMU_ENTRY(SUFFIX)                                                                 \
    int emu_gnnsys_gather_##SUFFIX(unsigned grid, unsigned block, gnnsys_ptr table,              \
                                   unsigned char* out, const gnnsys_i64* ids, gnnsys_i64 n,      \
                                   gnnsys_i64 row_bytes, gnnsys_i64 num_rows,                    \
                                   unsigned lanes_log2, gnnsys_u64* bad)                         \
    {                                                                                            \
        return cuda_emu::launch(dim3(grid), dim3(block), [&] {                                   \
            gnnsys_gather_##SUFFIX(table, out, ids, n, row_bytes, num_rows, lanes_log2, bad);    \
        });                                                                                      \
    }                                                                                            \
    int emu_gnnsys_gather_cached_##SUFFIX(unsigned grid, unsigned block, gnnsys_ptr table,       \
                                          gnnsys_ptr cache, const int* slots,                    \
                                          unsigned char* out, const gnnsys_i64* ids,             \
                                          gnnsys_i64 n, gnnsys_i64 row_bytes,                    \
                                          gnnsys_i64 num_rows, unsigned lanes_log2,              \
                                          gnnsys_u64* bad)                                       \
    {                                                                                            \
        return cuda_emu::launch(dim3(grid), dim3(block), [&] {                                   \
            gnnsys_gather_cached_##SUFFIX(table, cache, slots, out, ids, n, row_bytes, num_rows, \
                                          lanes_log2, bad);                                      \
        });                                                                                      \
    }

GNNSYS_EMU_ENTRY(w16)
GNNSYS_EMU_ENTRY(w8)
GNNSYS_EMU_ENTRY(w4)
GNNSYS_EMU_ENTRY(w2)
GNNSYS_EMU_ENTRY(w1)
GNNSYS_EMU_ENTRY(w16s8)
GNNSYS_EMU_ENTRY(w16s4)
GNNSYS_EMU_ENTRY(w16s2)
GNNSYS_EMU_ENTRY(w16s1)

#undef GNNSYS_EMU_ENTRY

int emu_gnnsys_gather_int8(unsigned grid, unsigned block, const signed char* table,
                           const float* scales, float* out, const gnnsys_i64* ids, gnnsys_i64 n,
                           gnnsys_i64 dim, gnnsys_i64 num_rows, unsigned lanes_log2,
                           gnnsys_u64* bad)
{
    return cuda_emu::launch(dim3(grid), dim3(block), [&] {
        gnnsys_gather_int8(table, scales, out, ids, n, dim, num_rows, lanes_log2, bad);
    });
}

int emu_gnnsys_gather_int8_cached(unsigned grid, unsigned block, const signed char* table,
                                  const signed char* cache, const int* slots, const float* scales,
                                  float* out, const gnnsys_i64* ids, gnnsys_i64 n, gnnsys_i64 dim,
                                  gnnsys_i64 num_rows, unsigned lanes_log2, gnnsys_u64* bad)
{
    return cuda_emu::launch(dim3(grid), dim3(block), [&] {
        gnnsys_gather_int8_cached(table, cache, slots, scales, out, ids, n, dim, num_rows,
                                  lanes_log2, bad);
    });
}

int emu_gnnsys_sample_positions(unsigned grid, unsigned block, const gnnsys_i64* indptr,
                                const gnnsys_i64* frontier, gnnsys_i64 f, const gnnsys_i64* offsets,
                                gnnsys_i64 fanout, int with_replacement, gnnsys_u64 hop_key,
                                gnnsys_i64* nbr, gnnsys_i64* dst_local, gnnsys_i64 dst_base,
                                gnnsys_i64* swap_keys, gnnsys_i64* swap_vals)
{
    return cuda_emu::launch(dim3(grid), dim3(block), [&] {
        gnnsys_sample_positions(indptr, frontier, f, offsets, fanout, with_replacement, hop_key,
                                nbr, dst_local, dst_base, swap_keys, swap_vals);
    });
}

int emu_gnnsys_positions_to_ids_i32(unsigned grid, unsigned block, const int* indices,
                                    gnnsys_i64* nbr, gnnsys_i64 e)
{
    return cuda_emu::launch(dim3(grid), dim3(block),
                            [&] { gnnsys_positions_to_ids_i32(indices, nbr, e); });
}

int emu_gnnsys_positions_to_ids_i64(unsigned grid, unsigned block, const gnnsys_i64* indices,
                                    gnnsys_i64* nbr, gnnsys_i64 e)
{
    return cuda_emu::launch(dim3(grid), dim3(block),
                            [&] { gnnsys_positions_to_ids_i64(indices, nbr, e); });
}

}  // extern "C"
