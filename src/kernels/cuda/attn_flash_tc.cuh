/*
 * attn_flash_tc.cuh — the bf16 tensor-core flash attention of
 * attn_flash_tc.cu, called by attn_flash.cu (internal to src/kernels/cuda).
 * Contracts: k_attn_flash_forward / k_attn_flash_backward (kernels/attn.h);
 * the backward takes D [B, H, T] (dO·O per row, computed by the caller) and
 * the contract's work after D (2·B·T·H·hd floats when H > KV).
 */
#ifndef MOLT_KERNELS_CUDA_ATTN_FLASH_TC_CUH
#define MOLT_KERNELS_CUDA_ATTN_FLASH_TC_CUH

#include "core/exec.h"

// launch and return true, or return false having launched nothing (not this
// path: no MOLT_EXEC_BF16, hd not a multiple of 16 in [16, 128], or an output
// not 8-byte aligned)
bool fa_tc_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv, int ld,
                   int B, int T, int H, int KV, int hd);
bool fa_tc_backward(const molt_exec *ex, float *dqkv, const float *dheads, const float *qkv,
                    const float *lse, const float *D, float *work, int B, int T, int H, int KV,
                    int hd);

#endif
