// sgns.cu -- one round of GraphVite's parallel negative sampling on the GPU: skip-gram with
// negative sampling (SGNS) over the buckets of a block partition.
//
// The vertex matrix emb_in and the context matrix emb_out (float32, row-major [N, dim]) are cut
// into P blocks; the positive samples (a, b) of a chunk are grouped by bucket (block(a), block(b))
// (bucket_ptr: the samples of bucket k are [bucket_ptr[k], bucket_ptr[k + 1])). A round lists
// `num_buckets` buckets that touch pairwise-disjoint vertex blocks and disjoint context blocks
// (gnnsys/embedding/sgns.py: skipgram_schedule / symmetric_schedule), so the threads of one
// launch never write the same row: thread t trains bucket round_buckets[t], its samples in order,
// exactly as one numba thread does in gnnsys/embedding/sgns.py (_train_bucket and sgd_pair).
//
// Negatives: the j-th sample of a bucket draws num_neg of them from block(b)'s segment of the
// unigram^0.75 table when j % neg_share == 0 or when its b lies in another block than the last
// draw's; the samples in between reuse them. Draw k of sample j is SplitMix64 of samplers/_rng.py
// keyed by node_key(key, bucket) at j * num_neg + k, reduced by Lemire's multiply-shift: the same
// negatives as on the CPU.
//
// One sample's step is word2vec's, target by target (b with label 1, then the negatives with
// label 0, a negative equal to b skipped):
//
//   g = lr * (label - sigmoid(emb_in[a] . emb_out[t]))
//   e += g * emb_out[t];   emb_out[t] += g * emb_in[a]
//   ... and after the last target: emb_in[a] += e
//
// Results agree with the CPU to float32 rounding (the order of the additions in the dot products
// differs). emb_in and emb_out may be the same array (LINE's first order), hence no __restrict__
// on them.
//
// Threads never exchange data (the dot product is one thread's loop; `scratch` holds each
// thread's e in global memory, `target_scratch` its targets), so the kernel needs no
// __syncthreads, shuffles or shared memory and runs unchanged under tests/cuda_emu. It is the
// correctness reference of the GPU path: a launch has only as many threads as a round has buckets
// (P), so a fast GPU trainer would cut the matrices into many more blocks, or let a warp share
// each sample's dot product.
//
// This file includes no header (NVRTC at run time has no standard headers); the emulation
// launcher includes <cmath> before it for expf, exp and log1p.

typedef unsigned long long gnnsys_u64;
typedef long long gnnsys_i64;

#define GNNSYS_SGNS_GOLDEN 0x9E3779B97F4A7C15ull

__device__ __forceinline__ gnnsys_u64 gnnsys_sgns_mix64(gnnsys_u64 z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ gnnsys_u64 gnnsys_sgns_key(gnnsys_u64 key, gnnsys_i64 id)
{
    return gnnsys_sgns_mix64(key ^ ((gnnsys_u64)id * GNNSYS_SGNS_GOLDEN));
}

__device__ __forceinline__ gnnsys_u64 gnnsys_sgns_draw(gnnsys_u64 key, gnnsys_i64 j)
{
    return gnnsys_sgns_mix64(key + ((gnnsys_u64)j + 1ull) * GNNSYS_SGNS_GOLDEN);
}

__device__ __forceinline__ gnnsys_i64 gnnsys_sgns_below(gnnsys_u64 r, gnnsys_i64 n)
{
    if (n < 4294967296ll) return (gnnsys_i64)(((r >> 32) * (gnnsys_u64)n) >> 32);
    return (gnnsys_i64)(r % (gnnsys_u64)n);
}

// The loss of a target with score f: -log s(f) (label 1) or -log s(-f) (label 0), from e^-f.
__device__ __forceinline__ double gnnsys_sgns_loss(float f, float ex, bool positive)
{
    const double lp = f > -80.0f ? log1p((double)ex) : -(double)f;
    return positive ? lp : (double)f + lp;
}

extern "C" __global__ void __launch_bounds__(256) gnnsys_sgns_round(
    float* emb_in, float* emb_out, gnnsys_i64 dim, const int* __restrict__ pairs_a,
    const int* __restrict__ pairs_b, const gnnsys_i64* __restrict__ bucket_ptr,
    const gnnsys_i64* __restrict__ round_buckets, gnnsys_i64 num_buckets,
    const int* __restrict__ block_of, const int* __restrict__ neg_table,
    const gnnsys_i64* __restrict__ neg_ptr, gnnsys_i64 num_neg, gnnsys_i64 neg_share, float lr,
    gnnsys_u64 key, double* __restrict__ losses, float* __restrict__ scratch,
    gnnsys_i64* __restrict__ target_scratch)
{
    const gnnsys_i64 t = (gnnsys_i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= num_buckets) return;
    const gnnsys_i64 bucket = round_buckets[t];
    if (bucket < 0) return;
    float* e = scratch + t * dim;
    gnnsys_i64* targets = target_scratch + t * (num_neg + 1);
    const gnnsys_u64 bkey = gnnsys_sgns_key(key, bucket);
    const gnnsys_i64 lo = bucket_ptr[bucket];
    const gnnsys_i64 hi = bucket_ptr[bucket + 1];
    double loss = 0.0;
    gnnsys_i64 nt = 1;
    int cur = -1;
    for (gnnsys_i64 s = lo; s < hi; ++s) {
        const gnnsys_i64 a = pairs_a[s];
        const gnnsys_i64 b = pairs_b[s];
        const gnnsys_i64 j = s - lo;
        targets[0] = b;
        const int blk = block_of[b];
        if (j % neg_share == 0 || blk != cur) {
            cur = blk;
            const gnnsys_i64 seg_lo = neg_ptr[blk];
            const gnnsys_i64 seg_n = neg_ptr[blk + 1] - seg_lo;
            nt = 1;
            if (seg_n > 0) {
                for (gnnsys_i64 k = 0; k < num_neg; ++k)
                    targets[nt++] = neg_table[seg_lo + gnnsys_sgns_below(
                        gnnsys_sgns_draw(bkey, j * num_neg + k), seg_n)];
            }
        }
        float* u = emb_in + a * dim;
        for (gnnsys_i64 d = 0; d < dim; ++d) e[d] = 0.0f;
        for (gnnsys_i64 k = 0; k < nt; ++k) {
            if (k > 0 && targets[k] == b) continue;
            float* c = emb_out + targets[k] * dim;
            float f = 0.0f;
            for (gnnsys_i64 d = 0; d < dim; ++d) f += u[d] * c[d];
            const float ex = expf(-f);
            const float g = ((k == 0 ? 1.0f : 0.0f) - 1.0f / (1.0f + ex)) * lr;
            loss += gnnsys_sgns_loss(f, ex, k == 0);
            for (gnnsys_i64 d = 0; d < dim; ++d) {
                const float old = c[d];
                e[d] += g * old;
                c[d] = old + g * u[d];
            }
        }
        for (gnnsys_i64 d = 0; d < dim; ++d) u[d] += e[d];
    }
    losses[bucket] = loss;
}
