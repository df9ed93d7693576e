/*
 * gl_train.h — training passes of the GateLoop mixer (mixers/gl_mixer.h): a
 * forward over B independent sequences that saves its activations, the
 * matching backward, and the same pair for the materialized mixing matrix
 * (MOHAWK stage 1). Every sequence starts from a zero state; the forward uses
 * the chunked scan with cfg->chunk and equals gl_mixer_forward(..., NULL,
 * GL_MODE_CHUNKED) per sequence.
 *
 * Accumulation contract (as ssm_train.h): du written (=); parameter grads
 * accumulated (+=); a NULL grad pointer is not wanted. No allocation: every
 * buffer is the caller's (sizes from the *_floats functions). Given the same
 * act, the backward is bit-identical for any thread count; the forward
 * matches to rounding (k_matmul's BLAS blocking follows the thread count).
 *
 * Letters: B sequences, T tokens each, d = d_model, Di = d_inner, R = 5·Di.
 */
#ifndef MOLT_GL_TRAIN_H
#define MOLT_GL_TRAIN_H

#include "core/exec.h"
#include "mixers/gl_mixer.h"

#include <stddef.h>

// Gradient buffers mirror gl_weights (NULL where the weight is NULL). Accumulated (+=).
typedef struct gl_grads {
    float *in_proj, *a_bias, *g_bias, *out_proj;
} gl_grads;

size_t gl_train_act_floats(const gateloop_cfg *c, int B, int T);
size_t gl_train_work_floats(const gateloop_cfg *c, int B, int T); // scratch for fwd and bwd
// y[B*T, d] = mixer(u[B*T, d]); saves activations in act.
void gl_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B, int T,
                      const gateloop_cfg *c, const gl_weights *w, float *work);
// du[B*T, d] written; grads accumulated into g. act as left by gl_train_forward on the
// same u, c, w; du must not alias dy or u.
void gl_train_backward(const molt_exec *ex, float *du, const gl_grads *g, const float *dy,
                       const float *act, const float *u, int B, int T, const gateloop_cfg *c,
                       const gl_weights *w, float *work);

// MOHAWK stage 1: M[B, H, T, T] = gl_mixer_materialize of each sequence.
size_t gl_mat_act_floats(const gateloop_cfg *c, int B, int T);
size_t gl_mat_work_floats(const gateloop_cfg *c, int B, int T);
void   gl_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T,
                      const gateloop_cfg *c, const gl_weights *w, float *work);
// du written, grads of in_proj and a_bias accumulated (M does not depend on
// v, the gate or out_proj: their grads are not touched).
void gl_mat_backward(const molt_exec *ex, float *du, const gl_grads *g, const float *dM,
                     const float *act, const float *u, int B, int T, const gateloop_cfg *c,
                     const gl_weights *w, float *work);

#endif
