// cuda_emu.h -- a small CUDA emulation for the host C++ compiler, used by the tests to run the
// kernels of cuda/*.cu unchanged on the CPU.
//
// What it provides (exactly what gnnsys kernels may use, emulated faithfully):
//   * the execution-space and launch qualifiers (__global__, __device__, __host__,
//     __forceinline__, __launch_bounds__) as no-ops; __restrict__ is the compiler's own;
//   * the built-in variables threadIdx, blockIdx, blockDim, gridDim (thread-local, set by the
//     launcher for every emulated thread) and the types uint3, dim3, uint2, uint4 with CUDA's
//     sizes and alignments;
//   * __ldg (read-only load) and __stcs (streaming store) for 1, 2, 4, 8 and 16-byte types: each
//     access is checked for natural alignment (a misaligned vector access is a fault on a GPU:
//     cudaErrorMisalignedAddress) and against the memory ranges the test registered as readable
//     or writable (an access outside them is cudaErrorIllegalAddress); every load is appended to
//     a trace (block, thread, address, bytes) so that the tests can check the access pattern;
//   * atomicMin / atomicAdd / atomicOr on 32- and 64-bit unsigned integers (real atomics).
//
// The launcher runs the blocks one after the other and the threads of a block one after the
// other, each to completion. That is faithful only for kernels whose threads never wait for
// each other: __syncthreads, warp shuffles/votes and __shared__ are deliberately NOT defined, so
// a kernel that starts to use them fails to compile here instead of being emulated wrongly.
// (Supporting them would need one OS thread or ucontext per emulated CUDA thread.)
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(8) uint2 {
    unsigned x, y;
};

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

static_assert(sizeof(uint2) == 8 && alignof(uint2) == 8, "uint2 must match CUDA's layout");
static_assert(sizeof(uint4) == 16 && alignof(uint4) == 16, "uint4 must match CUDA's layout");

// Built-in variables: one copy per OS thread, so that two launches from two host threads do not
// interfere.
static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;

namespace cuda_emu {

// CUDA error codes reported by a launch.
enum Error : int {
    kSuccess = 0,
    kIllegalAddress = 700,    // cudaErrorIllegalAddress
    kMisalignedAddress = 716, // cudaErrorMisalignedAddress
    kInvalidConfiguration = 9 // cudaErrorInvalidConfiguration
};

struct Range {
    std::uintptr_t begin, end;
};

// State of the emulated device for the current host thread: memory the kernel may touch, the
// load trace and the first error of the running launch.
struct Device {
    std::vector<Range> readable;
    std::vector<Range> writable;
    std::int64_t* trace = nullptr;  // [trace_capacity, 4] int64: block, thread, address, bytes
    std::int64_t trace_capacity = 0;
    std::int64_t trace_count = 0;   // loads issued (may exceed the capacity; then not all kept)
    int error = kSuccess;
};

inline Device& device()
{
    static thread_local Device dev;
    return dev;
}

inline bool inside(const std::vector<Range>& ranges, std::uintptr_t p, std::size_t n)
{
    for (const Range& r : ranges)
        if (p >= r.begin && p + n <= r.end) return true;
    return false;
}

inline bool check_access(const void* ptr, std::size_t n, bool write)
{
    Device& dev = device();
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(ptr);
    if (p % n != 0) {
        if (dev.error == kSuccess) dev.error = kMisalignedAddress;
        return false;
    }
    if (!inside(write ? dev.writable : dev.readable, p, n)) {
        if (dev.error == kSuccess) dev.error = kIllegalAddress;
        return false;
    }
    return true;
}

inline void record_load(const void* ptr, std::size_t n)
{
    Device& dev = device();
    if (dev.trace != nullptr && dev.trace_count < dev.trace_capacity) {
        std::int64_t* rec = dev.trace + 4 * dev.trace_count;
        rec[0] = blockIdx.x;
        rec[1] = threadIdx.x;
        rec[2] = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(ptr));
        rec[3] = static_cast<std::int64_t>(n);
    }
    ++dev.trace_count;
}

template <typename T>
inline T load(const T* ptr)
{
    static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8 ||
                      sizeof(T) == 16,
                  "a GPU load moves 1, 2, 4, 8 or 16 bytes");
    T v;
    if (!check_access(ptr, sizeof(T), false)) {
        std::memset(&v, 0, sizeof(T));  // a faulting launch is reported as failed anyway
        return v;
    }
    record_load(ptr, sizeof(T));
    std::memcpy(&v, ptr, sizeof(T));
    return v;
}

template <typename T>
inline void store(T* ptr, const T& v)
{
    static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8 ||
                      sizeof(T) == 16,
                  "a GPU store moves 1, 2, 4, 8 or 16 bytes");
    if (check_access(ptr, sizeof(T), true)) std::memcpy(ptr, &v, sizeof(T));
}

// Run `kernel()` for every thread of a 1-D grid; returns the first error of the launch.
template <typename Kernel>
inline int launch(dim3 grid, dim3 block, Kernel&& kernel)
{
    Device& dev = device();
    dev.error = kSuccess;
    if (grid.x == 0 || block.x == 0 || block.x > 1024 || grid.y != 1 || grid.z != 1 ||
        block.y != 1 || block.z != 1)
        return kInvalidConfiguration;
    gridDim = grid;
    blockDim = block;
    for (unsigned b = 0; b < grid.x; ++b) {
        blockIdx = uint3{b, 0, 0};
        for (unsigned t = 0; t < block.x; ++t) {
            threadIdx = uint3{t, 0, 0};
            kernel();
        }
    }
    return dev.error;
}

}  // namespace cuda_emu

// --- device intrinsics used by the kernels -------------------------------------------------
template <typename T>
inline T __ldg(const T* ptr)
{
    return cuda_emu::load(ptr);
}

template <typename T>
inline void __stcs(T* ptr, T v)
{
    cuda_emu::store(ptr, v);
}

inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v)
{
    if (!cuda_emu::check_access(p, sizeof(*p), true)) return 0;
    std::atomic_ref<unsigned long long> a(*p);
    unsigned long long old = a.load();
    while (v < old && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}

inline unsigned atomicMin(unsigned* p, unsigned v)
{
    if (!cuda_emu::check_access(p, sizeof(*p), true)) return 0;
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (v < old && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}

inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v)
{
    if (!cuda_emu::check_access(p, sizeof(*p), true)) return 0;
    return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}

inline unsigned atomicAdd(unsigned* p, unsigned v)
{
    if (!cuda_emu::check_access(p, sizeof(*p), true)) return 0;
    return std::atomic_ref<unsigned>(*p).fetch_add(v);
}

inline unsigned long long atomicOr(unsigned long long* p, unsigned long long v)
{
    if (!cuda_emu::check_access(p, sizeof(*p), true)) return 0;
    return std::atomic_ref<unsigned long long>(*p).fetch_or(v);
}

inline unsigned atomicOr(unsigned* p, unsigned v)
{
    if (!cuda_emu::check_access(p, sizeof(*p), true)) return 0;
    return std::atomic_ref<unsigned>(*p).fetch_or(v);
}
