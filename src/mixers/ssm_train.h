/*
 * ssm_train.h — training passes of the two SSM mixers of ssm_mixer.h
 * (SSM_MAMBA2, SSM_DISCRETE): a forward over B independent sequences that
 * saves its activations, the matching backward, and the same pair for the
 * materialized mixing matrix (MOHAWK stage 1, "matrix orientation").
 *
 * Every sequence starts from a zero state (training sequences start empty).
 * The forward uses the chunked scan with cfg->chunk; its output equals
 * ssm_mixer_forward(ex, ..., st = NULL, SSM_MODE_CHUNKED) for each sequence.
 *
 * Accumulation contract: activation grads (du) are written (=); parameter
 * grads are accumulated (+=) into ssm_grads, so several batches (or several
 * losses) can add into the same buffers. No allocation: every buffer is the
 * caller's (sizes from the *_floats functions). Threads: ex->nth (molt's
 * pool). Given the same act, the backward is bit-identical for any thread
 * count; the forward matches to rounding (k_matmul's BLAS blocking follows the
 * thread count).
 *
 * Letters: B sequences, T tokens each, d = d_model, Di = d_inner = H·P,
 * R = in_proj rows, Cc = conv channels = Di + 2·G·N.
 */
#ifndef MOLT_SSM_TRAIN_H
#define MOLT_SSM_TRAIN_H

#include "core/exec.h"

#include "mixers/ssm_mixer.h"

#include <stddef.h>

// Gradient buffers mirror ssm_weights (NULL where the weight is NULL). Accumulated (+=).
typedef struct ssm_grads {
    float *in_proj, *in_proj_b, *conv_w, *conv_b, *dt_bias, *A_log, *D, *norm_w, *z_bias,
        *out_proj, *out_proj_b;
} ssm_grads;

// Activations saved by the training forward for B independent sequences of T tokens
// (each from a zero state), laid out in one caller-provided buffer.
size_t ssm_train_act_floats(const ssm_cfg *c, int B, int T);
size_t ssm_train_work_floats(const ssm_cfg *c, int B, int T); // scratch for fwd and bwd
// y[B*T, d] = mixer(u[B*T, d]) with cfg->chunk as chunk size; saves activations in act.
void ssm_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B, int T, const ssm_cfg *c,
                       const ssm_weights *w, float *work);
// du[B*T, d] written (=); parameter grads accumulated into g (+=). act as left by
// ssm_train_forward on the same u, c, w; du must not alias dy or u.
void ssm_train_backward(const molt_exec *ex, float *du, const ssm_grads *g, const float *dy, const float *act,
                        const float *u, int B, int T, const ssm_cfg *c, const ssm_weights *w,
                        float *work);

// MOHAWK stage 1: M[B, H, T, T] = the mixer's materialized mixing matrix (as
// ssm_mixer_materialize, D on the diagonal) for each sequence; saves what the backward needs.
size_t ssm_mat_act_floats(const ssm_cfg *c, int B, int T);
size_t ssm_mat_work_floats(const ssm_cfg *c, int B, int T);
void   ssm_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T, const ssm_cfg *c,
                       const ssm_weights *w, float *work);
// du written (=), grads of in_proj(+b), conv_w/b, dt_bias, A_log, D accumulated (+=).
// (M does not depend on norm_w, z_bias, out_proj: those grads are not touched.)
void ssm_mat_backward(const molt_exec *ex, float *du, const ssm_grads *g, const float *dM, const float *act,
                      const float *u, int B, int T, const ssm_cfg *c, const ssm_weights *w,
                      float *work);

#endif
