// sgns_launcher.cpp -- builds cuda/sgns.cu for the CPU (through cuda_emu.h) and exports its
// kernel as a C entry point for ctypes (tests/test_embedding_cuda.py). It includes launcher.cpp
// for the shared entry points (emu_reset, emu_allow_read, emu_allow_write, ...).
//
// Build: g++ -std=c++20 -O1 -shared -fPIC -I<repo>/cuda -I<repo>/tests/cuda_emu sgns_launcher.cpp
#include <cmath>

#include "launcher.cpp"

#include "sgns.cu"

extern "C" {

int emu_gnnsys_sgns_round(unsigned grid, unsigned block, float* emb_in, float* emb_out,
                          gnnsys_i64 dim, const int* pairs_a, const int* pairs_b,
                          const gnnsys_i64* bucket_ptr, const gnnsys_i64* round_buckets,
                          gnnsys_i64 num_buckets, const int* block_of, const int* neg_table,
                          const gnnsys_i64* neg_ptr, gnnsys_i64 num_neg, gnnsys_i64 neg_share,
                          float lr, gnnsys_u64 key, double* losses, float* scratch,
                          gnnsys_i64* target_scratch)
{
    return cuda_emu::launch(dim3(grid), dim3(block), [&] {
        gnnsys_sgns_round(emb_in, emb_out, dim, pairs_a, pairs_b, bucket_ptr, round_buckets,
                          num_buckets, block_of, neg_table, neg_ptr, num_neg, neg_share, lr, key,
                          losses, scratch, target_scratch);
    });
}

}  // extern "C"
