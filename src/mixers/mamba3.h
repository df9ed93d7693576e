/*
 * mamba3.h — the Mamba-3 token mixer (state-spaces/mamba Mamba3, shared/docs/
 * ALGORITHMS.md §8) as pure functions over a config and a struct of weight
 * pointers (the model layer owns memory), SISO and MIMO (rank R):
 *
 *   in_proj rows [z, x, B, C, dd_dt, dd_A, trap, angles] (no conv, no bias),
 *   B/C RMSNorm over N + per-head biases, data-dependent A (heavy tail,
 *   floored), Δ = softplus(dd_dt + dt_bias), λ = sigmoid(trap), rotary angles
 *   accumulated over time, the exponential-trapezoidal recurrence, D skip,
 *   gate silu(z) or the per-head gated RMSNorm (is_outproj_norm), MIMO
 *   projections mimo_x / mimo_z / mimo_o, out_proj.   (kernels/mamba3.h)
 *
 * Three exact modes: recurrent step (tokens one at a time through the state
 * block), chunked (an SSD scan over the rank-expanded time plus the
 * within-token correction) and the materialized mixing matrix (ypre = M·x for
 * SISO; the rank-averaged matrix for MIMO).
 *
 * State block of a sequence: m3_state_floats (kernels/mamba3.h) — ssm, k_prev,
 * v_prev, angle; constant in the context length.
 *
 * Letters: T tokens, B sequences, d = d_model, Di = d_inner = H·P, N state,
 * G B/C groups, R MIMO rank, S rotary angles, Rin in_proj rows.
 */
#ifndef MOLT_MAMBA3_H
#define MOLT_MAMBA3_H

#include "core/dtype.h"
#include "core/exec.h"
#include "kernels/mamba3.h"

#include <stddef.h>

typedef struct mamba3_cfg {
    int   d_model, d_inner;
    int   H, P, N, G, R;   // heads, head dim, d_state, ngroups, MIMO rank (1 for SISO)
    int   mimo;            // is_mimo: MIMO rotation layout and the mimo_* parameters
    int   outproj_norm;    // is_outproj_norm: gated RMSNorm per head before the gate
    int   chunk;           // chunk_size in tokens (the scan runs chunk·R expanded steps)
    float rope_fraction;   // 0.5 or 1.0
    float A_floor;         // A ≤ −A_floor
    float eps;             // RMSNorm eps (B/C norms and the out norm)
} mamba3_cfg;

typedef struct mamba3_weights {
    const float *in_proj;          // [Rin, d]
    const float *dt_bias;          // [H]
    const float *B_bias, *C_bias;  // [H,R,N]
    const float *B_norm, *C_norm;  // [N]
    const float *mimo_x, *mimo_z, *mimo_o; // [H,R,P] (MIMO)
    const float *D;                // [H]
    const float *norm;             // [Di] (is_outproj_norm)
    const float *out_proj;         // [d, Di]
    // typed views of in_proj / out_proj for the inference paths; data NULL:
    // the f32 matrix
    molt_w in_proj_t, out_proj_t;
} mamba3_weights;

// gradient buffers mirroring mamba3_weights (NULL: not wanted), accumulated (+=)
typedef struct mamba3_grads {
    float *in_proj, *dt_bias, *B_bias, *C_bias, *B_norm, *C_norm, *mimo_x, *mimo_z, *mimo_o, *D,
        *norm, *out_proj;
} mamba3_grads;

typedef enum mamba3_mode { M3_CHUNKED = 0, M3_RECURRENT = 1 } mamba3_mode;

// S = num_rope_angles (the reference's: floor(N·rope_fraction) rounded down
// to even, halved)
int          mamba3_angles(const mamba3_cfg *c);
m3_rows_cfg  mamba3_rows_of(const mamba3_cfg *c);
m3_rows_w    mamba3_rows_w(const mamba3_weights *w);
int          mamba3_in_rows(const mamba3_cfg *c);
size_t       mamba3_state_floats(const mamba3_cfg *c);
// NULL when consistent, else a static message naming the problem
const char  *mamba3_cfg_check(const mamba3_cfg *c);

// ---- inference (mamba3.c)
// Scratch of forward / materialize for T tokens, and of step_rows for n rows.
size_t mamba3_work(const mamba3_cfg *c, int T);
size_t mamba3_rows_work(const mamba3_cfg *c, int n);
// y[T,d] = mixer(u[T,d]) continuing from the state block st (updated; NULL:
// zero state, not kept). M3_RECURRENT feeds the tokens one at a time.
void mamba3_forward(const molt_exec *ex, float *y, const float *u, int T, const mamba3_cfg *c,
                    const mamba3_weights *w, float *st, mamba3_mode mode, float *work);
// Batched decode: row i of u[n,d] is the next token of the sequence with state
// block state[i] (a host array); the recurrent mode's computation per row.
void mamba3_step_rows(const molt_exec *ex, float *y, const float *u, int n, const mamba3_cfg *c,
                      const mamba3_weights *w, float *const *state, float *work);
// M[H,T,T] from a zero state (m3_materialize); reads the f32 in_proj.
void mamba3_materialize(const molt_exec *ex, float *M, const float *u, int T,
                        const mamba3_cfg *c, const mamba3_weights *w, float *work);

// ---- training (mamba3_train.c): B sequences of T tokens, each from a zero
// state, the chunked form; du written, parameter grads accumulated.
size_t mamba3_train_act_floats(const mamba3_cfg *c, int B, int T);
size_t mamba3_train_work_floats(const mamba3_cfg *c, int B, int T);
void   mamba3_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B,
                            int T, const mamba3_cfg *c, const mamba3_weights *w, float *work);
void   mamba3_train_backward(const molt_exec *ex, float *du, const mamba3_grads *g,
                             const float *dy, const float *act, const float *u, int B, int T,
                             const mamba3_cfg *c, const mamba3_weights *w, float *work);
// MOHAWK stage 1: M[B,H,T,T] (mamba3_materialize per sequence) and its backward
// (grads of in_proj, dt_bias, the B/C norms and biases, D; du written).
size_t mamba3_mat_act_floats(const mamba3_cfg *c, int B, int T);
size_t mamba3_mat_work_floats(const mamba3_cfg *c, int B, int T);
void   mamba3_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T,
                          const mamba3_cfg *c, const mamba3_weights *w, float *work);
void   mamba3_mat_backward(const molt_exec *ex, float *du, const mamba3_grads *g, const float *dM,
                           const float *act, const float *u, int B, int T, const mamba3_cfg *c,
                           const mamba3_weights *w, float *work);

#endif
