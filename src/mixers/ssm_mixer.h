/*
 * ssm_mixer.h — the two recurrent token mixers molt runs, as pure functions
 * over a config and a struct of weight pointers (the model layer owns memory):
 *
 *   SSM_MAMBA2    HF / mamba_ssm Mamba-2: in_proj rows [z, xBC, dt] (after an
 *                 optional [z0, x0] MLP part of d_mlp rows each, unused here),
 *                 causal conv1d + SiLU on xBC, Δ = softplus(dt + dt_bias)
 *                 clamped to [dt_limit_lo, dt_limit_hi], A = -exp(A_log),
 *                 D skip, gated RMSNorm (x·silu(z), normalised per group of
 *                 d_inner/G), out_proj.                    ALGORITHMS.md §1
 *   SSM_DISCRETE  DiscreteMamba2 (Llamba / Phi-Mamba): in_proj rows
 *                 [x, B, C, z, A_log], identity conv (+bias), per-head B and C
 *                 (G = n_qk_heads, H = n_v_heads, H % G == 0), decay
 *                 exp(-softplus(A_log_t)) per token and head, no Δ on the
 *                 input, D skip, gate silu(z + z_bias), out_proj.   §2.2
 *
 * Three exact modes: recurrent step (T tokens fed one at a time through
 * ssm_state), chunked scan (ssm_mixer_forward with SSM_MODE_CHUNKED), and the
 * materialized mixing matrix M[H,T,T] with y_pre_gate = M · x.
 *
 * Letters: T tokens, d = d_model, Di = d_inner = H·P, N state, G B/C heads,
 * K conv width, Cc = conv channels = Di + 2·G·N.
 */
#ifndef MOLT_SSM_MIXER_H
#define MOLT_SSM_MIXER_H

#include "core/dtype.h"
#include "core/exec.h"
#include "kernels/ssm_rows.h"

#include <stddef.h>

typedef enum ssm_kind { SSM_MAMBA2 = 0, SSM_DISCRETE = 1, SSM_KIND_COUNT } ssm_kind;
typedef enum ssm_mode { SSM_MODE_CHUNKED = 0, SSM_MODE_RECURRENT = 1 } ssm_mode;

typedef struct ssm_cfg {
    ssm_kind kind;
    int   d_model, d_inner;
    int   H, P, N, G, K;
    int   d_mlp;          // Mamba-2 only: extra [z0, x0] rows (0 for standard checkpoints)
    int   chunk;          // chunk size of the chunked scan (≥ 1)
    float norm_eps;       // Mamba-2 gated RMSNorm eps
    float dt_limit_lo, dt_limit_hi; // Mamba-2 Δ clamp (0, +inf by default)
} ssm_cfg;

typedef struct ssm_weights {
    const float *in_proj;    // [R, d]  R = ssm_in_proj_rows(cfg)
    const float *in_proj_b;  // [R] or NULL
    const float *conv_w;     // [Cc, K]   (PyTorch [Cc,1,K])
    const float *conv_b;     // [Cc] or NULL
    const float *dt_bias;    // [H]   Mamba-2
    const float *A_log;      // [H]   Mamba-2
    const float *D;          // [H]
    const float *norm_w;     // [Di]  Mamba-2 gated RMSNorm weight
    const float *z_bias;     // [Di]  DiscreteMamba2 (NULL = zeros)
    const float *out_proj;   // [d, Di]
    const float *out_proj_b; // [d] or NULL
    // typed views of in_proj / out_proj for the inference paths (forward,
    // step_rows); training and materialize read the f32 ones above. data NULL
    // (a struct built by hand): the f32 matrix.
    molt_w in_proj_t, out_proj_t;
} ssm_weights;

// Per-sequence recurrent state: constant size, whatever the context length.
typedef struct ssm_state {
    float *conv; // [Cc, K-1] last K-1 conv inputs, oldest first
    float *ssm;  // [H, P, N]
} ssm_state;

int    ssm_in_proj_rows(const ssm_cfg *c);
int    ssm_conv_dim(const ssm_cfg *c);
// Column offsets inside an in_proj output row: z (gate, Di wide), xBC (Cc wide)
// and dt (Mamba-2) / A_log (Discrete) (H wide). Any pointer may be NULL.
void ssm_in_proj_cols(const ssm_cfg *c, int *o_z, int *o_xbc, int *o_dt);
size_t ssm_state_floats(const ssm_cfg *c); // conv + ssm
// Checks the dimensions are consistent (H·P == Di, H % G == 0, ...). Returns
// NULL when fine, else a static message naming the problem.
const char *ssm_cfg_check(const ssm_cfg *c);

// The row ops' view of the config (kernels/ssm_rows.h).
ssm_rows_cfg ssm_rows_of(const ssm_cfg *c);

// Scratch floats needed by forward / materialize for T tokens.
size_t ssm_mixer_work(const ssm_cfg *c, int T);

// y[T,d] = mixer(u[T,d]) where u is the already-normalized block input.
// st: state to continue from and update (NULL: zero state, not kept).
// SSM_MODE_RECURRENT runs the token-by-token step (the decode path).
void ssm_mixer_forward(const molt_exec *ex, float *y, const float *u, int T, const ssm_cfg *c, const ssm_weights *w,
                       ssm_state *st, ssm_mode mode, float *work);

// Batched decode: row t of u[n,d] is the next token of its own sequence with
// conv state conv[t] and ssm state ssm[t] (host arrays of n pointers; the
// states are updated). Each row gets exactly the recurrent mode's per-token
// computation; every stage is one op over all rows. work: ssm_mixer_work(c, n).
void ssm_mixer_step_rows(const molt_exec *ex, float *y, const float *u, int n, const ssm_cfg *c,
                         const ssm_weights *w, float *const *conv, float *const *ssm,
                         float *work);
// The same with bf16 SSM states ssm[t] ([H,P,N] bf16: ssd_step_rows_bf16).
void ssm_mixer_step_rows_bf16(const molt_exec *ex, float *y, const float *u, int n,
                              const ssm_cfg *c, const ssm_weights *w, float *const *conv,
                              uint16_t *const *ssm, float *work);

// M[H,T,T]: the mixing matrix from zero state, D on the diagonal, such that
// (pre-gate, pre-norm) y[:,h,p] = M[h] · x[:,h,p], x the post-conv x.
void ssm_mixer_materialize(const molt_exec *ex, float *M, const float *u, int T, const ssm_cfg *c, const ssm_weights *w,
                           float *work);

#endif
