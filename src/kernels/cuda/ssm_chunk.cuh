/*
 * ssm_chunk.cuh — the pieces of the chunked SSD scan that its two CUDA forms
 * share: the exact fp32 kernels (ssm.cu, ssm_backward.cu) and the tensor-core
 * form built from batched GEMMs (ssm_tc.cu). Internal to src/kernels/cuda.
 *
 * Work layout (ssm.h's contract, cpu/ssm.c): st [nc,H,P,N] | v [H,P,N] |
 * din [H,T] | dout [H,T] | row [H,T], then the backward's E [nc,H,P,N] | vb |
 * da [H,nc] | r1 [H,T] | r2 [H,T] | dBh, dCh [T,H,N] (when G < H).
 */
#ifndef MOLT_KERNELS_CUDA_SSM_CHUNK_CUH
#define MOLT_KERNELS_CUDA_SSM_CHUNK_CUH

#include "kernels/cuda/common.cuh"

// forward phase 2 (ssm.cu): st[c] ← the state entering chunk c (from `state`,
// or zero when NULL), `state` (or vbuf) ← the final state; din holds the
// decays within each chunk (din at a chunk's last row = the chunk's decay a_c)
void cu_ssd_state_pass(const molt_exec *ex, float *st, float *state, float *vbuf,
                       const float *din, int T, int H, int P, int N, int Q, int nc);

// backward phase B (ssm_backward.cu): E[c] holds dS_loc[c] (c ≥ 1; the
// adjoint of S_in[c] from chunk c's own outputs) and becomes the adjoint of
// S_in[c+1]; then da[h,c] = a_c·⟨E[c], S_in[c]⟩ (0 for c = 0)
void cu_ssd_adjoint_pass(const molt_exec *ex, float *E, float *da, const float *st,
                         const float *din, int T, int H, int P, int N, int Q, int nc);

// dB, dC [T,G,N] = per-head dBh, dCh [T,H,N] summed over each group's heads
// in ascending order (ssm_backward.cu)
void cu_ssd_group_sum(const molt_exec *ex, float *dB, float *dC, const float *dBh,
                      const float *dCh, int T, int H, int N, int G);

// The tensor-core form (ssm_tc.cu), taken for an exec with MOLT_EXEC_TF32 or
// MOLT_EXEC_BF16 (MOLT_SSD_TC=0 turns it off): the same contracts as
// cuda_ssd_scan_chunked / _backward, with the intra-chunk and state products
// as TF32 batched GEMMs. False when not taken (the caller runs the fp32 form).
// Default since run 8 (2026-12-07, H100): every op-test shape within the
// stated TF32 bounds (test_backend_cuda), the MOHAWK stage-3 loss equal to the
// fp32 form's to 4 digits; run 7's misaligned-operand failure is fixed.
bool cu_ssd_tc_forward(const molt_exec *ex, float *y, float *state, const float *X,
                       const float *dA, const float *B, const float *C, int T, int H, int P,
                       int N, int G, int Q, float *work);
bool cu_ssd_tc_backward(const molt_exec *ex, float *dX, float *ddA, float *dB, float *dC,
                        const float *dy, const float *X, const float *dA, const float *B,
                        const float *C, int T, int H, int P, int N, int G, int Q, float *work);

#endif
