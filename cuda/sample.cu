// sample.cu -- uniform neighbour sampling of gnnsys on the GPU, reading the graph by UVA.
//
// The graph is CSC in host memory, pinned in place (cudaHostRegister): the in-neighbours of node
// v are indices[indptr[v] .. indptr[v + 1]). Like DGL's UVA sampling, the kernels read indptr
// and indices through their unified addresses, so the graph never has to fit in GPU memory.
//
// One hop runs as two kernels, the two passes of samplers/_hop.py's hop_fill:
//   1. gnnsys_sample_positions: one warp per frontier node draws which of its neighbours are
//      sampled and writes their absolute positions in `indices` (indptr[v] + position) into
//      nbr[offsets[i] .. offsets[i + 1]), and the node's local id into dst_local there.
//   2. gnnsys_positions_to_ids_{i32,i64}: one thread per edge replaces each position by the
//      neighbour id indices[position] (a flat pass of independent PCIe reads).
// The host computes the per-node counts (min(fanout, degree), or fanout with replacement, or the
// degree for fanout -1) and their prefix sums `offsets`, exactly as hop_counts does.
//
// The random draws are those of samplers/_rng.py (SplitMix64 keyed by (hop key, node, draw
// index), Lemire's multiply-shift) and the choices those of _choose_uniform: with replacement
// draw m picks below(draw(key, m), degree); without replacement Floyd's algorithm for counts up
// to 32 and a partial Fisher-Yates shuffle above. So the GPU and the CPU sampler draw the very
// same neighbours in the same order (the tests check it under the CPU emulation).
//
// Lanes never exchange data (each lane of the Floyd path recomputes the sequence up to its own
// draw; the Fisher-Yates path runs on lane 0 with its swap map in global scratch), so the kernels
// need no __syncthreads, shuffles or shared memory and run unchanged under tests/cuda_emu.

typedef unsigned long long gnnsys_u64;
typedef long long gnnsys_i64;

#define GNNSYS_GOLDEN 0x9E3779B97F4A7C15ull
#define GNNSYS_FLOYD_MAX 32

__device__ __forceinline__ gnnsys_u64 gnnsys_mix64(gnnsys_u64 z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ gnnsys_u64 gnnsys_node_key(gnnsys_u64 hop_key, gnnsys_i64 node)
{
    return gnnsys_mix64(hop_key ^ ((gnnsys_u64)node * GNNSYS_GOLDEN));
}

__device__ __forceinline__ gnnsys_u64 gnnsys_draw(gnnsys_u64 key, gnnsys_i64 j)
{
    return gnnsys_mix64(key + ((gnnsys_u64)j + 1ull) * GNNSYS_GOLDEN);
}

// A random 64-bit value mapped to [0, n), n > 0.
__device__ __forceinline__ gnnsys_i64 gnnsys_below(gnnsys_u64 r, gnnsys_i64 n)
{
    if (n < 4294967296ll) return (gnnsys_i64)(((r >> 32) * (gnnsys_u64)n) >> 32);
    return (gnnsys_i64)(r % (gnnsys_u64)n);
}

// Draw m (0 <= m < c <= 32) of Floyd's algorithm choosing c of avail positions: the sequence is
// recomputed up to m in a local array, as the CPU computes it in place.
__device__ __forceinline__ gnnsys_i64 gnnsys_floyd(gnnsys_u64 key, gnnsys_i64 avail, gnnsys_i64 c,
                                                   gnnsys_i64 m)
{
    gnnsys_i64 sel[GNNSYS_FLOYD_MAX];
    gnnsys_i64 t = 0;
    for (gnnsys_i64 k = 0; k <= m; ++k) {
        const gnnsys_i64 j = avail - c + k;
        t = gnnsys_below(gnnsys_draw(key, k), j + 1);
        for (gnnsys_i64 q = 0; q < k; ++q) {
            if (sel[q] == t) {
                t = j;
                break;
            }
        }
        sel[k] = t;
    }
    return t;
}

extern "C" __global__ void __launch_bounds__(256) gnnsys_sample_positions(
    const gnnsys_i64* __restrict__ indptr, const gnnsys_i64* __restrict__ frontier, gnnsys_i64 f,
    const gnnsys_i64* __restrict__ offsets, gnnsys_i64 fanout, int with_replacement,
    gnnsys_u64 hop_key, gnnsys_i64* __restrict__ nbr, gnnsys_i64* __restrict__ dst_local,
    gnnsys_i64 dst_base, gnnsys_i64* __restrict__ swap_keys, gnnsys_i64* __restrict__ swap_vals)
{
    const unsigned thread = blockIdx.x * blockDim.x + threadIdx.x;
    const gnnsys_i64 lane = (gnnsys_i64)(threadIdx.x & 31u);
    const gnnsys_i64 warps = (gnnsys_i64)(((gnnsys_u64)gridDim.x * blockDim.x) >> 5);
    const bool replace = with_replacement != 0 && fanout >= 0;  // fanout -1: every neighbour once
    for (gnnsys_i64 i = (gnnsys_i64)(thread >> 5); i < f; i += warps) {
        const gnnsys_i64 v = __ldg(frontier + i);
        const gnnsys_i64 start = __ldg(indptr + v);
        const gnnsys_i64 avail = __ldg(indptr + v + 1) - start;
        const gnnsys_i64 o = __ldg(offsets + i);
        const gnnsys_i64 c = __ldg(offsets + i + 1) - o;
        for (gnnsys_i64 q = lane; q < c; q += 32) __stcs(dst_local + o + q, dst_base + i);
        if (c == 0) continue;
        const gnnsys_u64 key = gnnsys_node_key(hop_key, v);
        if (replace) {
            for (gnnsys_i64 m = lane; m < c; m += 32)
                __stcs(nbr + o + m, start + gnnsys_below(gnnsys_draw(key, m), avail));
        } else if (c == avail) {
            for (gnnsys_i64 m = lane; m < c; m += 32) __stcs(nbr + o + m, start + m);
        } else if (c <= GNNSYS_FLOYD_MAX) {
            if (lane < c) __stcs(nbr + o + lane, start + gnnsys_floyd(key, avail, c, lane));
        } else if (lane == 0) {
            // partial Fisher-Yates over the virtual permutation 0 .. avail - 1: only swapped
            // positions are stored, (swap_keys, swap_vals)[o .. o + n) (plain loads and stores:
            // this lane alone reads what it wrote)
            gnnsys_i64 n = 0;
            for (gnnsys_i64 m = 0; m < c; ++m) {
                const gnnsys_i64 r = m + gnnsys_below(gnnsys_draw(key, m), avail - m);
                gnnsys_i64 vm = m, vr = r, at_r = -1;
                for (gnnsys_i64 q = 0; q < n; ++q) {
                    const gnnsys_i64 k = swap_keys[o + q];
                    if (k == m) vm = swap_vals[o + q];
                    if (k == r) {
                        vr = swap_vals[o + q];
                        at_r = q;
                    }
                }
                if (at_r < 0) {
                    at_r = n++;
                    swap_keys[o + at_r] = r;
                }
                swap_vals[o + at_r] = vm;  // perm[r] = old perm[m]; position m is never read again
                __stcs(nbr + o + m, start + vr);
            }
        }
    }
}

#define GNNSYS_DEFINE_TO_IDS(SUFFIX, INDEX)                                                      \
    extern "C" __global__ void __launch_bounds__(256) gnnsys_positions_to_ids_##SUFFIX(           \
        const INDEX* __restrict__ indices, gnnsys_i64* __restrict__ nbr, gnnsys_i64 e)           \
    {                                                                                            \
        const gnnsys_i64 step = (gnnsys_i64)gridDim.x * blockDim.x;                              \
        for (gnnsys_i64 q = (gnnsys_i64)(blockIdx.x * blockDim.x + threadIdx.x); q < e;          \
             q += step) {                                                                        \
            const gnnsys_i64 position = nbr[q];                                                  \
            nbr[q] = (gnnsys_i64)__ldg(indices + position);                                      \
        }                                                                                        \
    }

GNNSYS_DEFINE_TO_IDS(i32, int)
GNNSYS_DEFINE_TO_IDS(i64, gnnsys_i64)

#undef GNNSYS_DEFINE_TO_IDS
