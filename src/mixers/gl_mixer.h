/*
 * gl_mixer.h — the GateLoop token mixer (Katsch 2023; shared/docs/
 * ALGORITHMS.md §9) in the paper's complex q/k/v form, multi-head, as pure
 * functions over a config and a struct of weight pointers (the model layer
 * owns memory). Per token (u the normalised block input, [d]):
 *
 *   [q | k | v | g | m | φ] = u · in_projᵀ          q, k, v, g: Di = H·P each;
 *                                                    m, φ: H·J each (J = P/2 pairs)
 *   |a| = sigmoid(m + a_bias[:HJ])                   magnitude, per head per pair
 *   arg a = φ + a_bias[HJ:]                          phase in radians (unbounded)
 *   S_t = a_t ⊙ S_{t−1} + k̃_t ⊗ v_t                 S: H × J × P complex
 *   y_t = Re(q̃_t · S_t)                              q̃_j = q[2j] + i·q[2j+1] (no conjugate)
 *   out = (silu(g + g_bias) ⊙ y) · out_projᵀ
 *
 * The q/k/v projections have no bias (as the paper's and lucidrains'
 * GateLoopedAttention); the transition's projection has one (a_bias). Choices
 * (documented in ALGORITHMS.md §9's terms): the magnitude is the paper's
 * sigmoid (lucidrains' port maps it to sigmoid(|z|) ∈ [0.5, 1), which can
 * never decay faster than 0.5 per token); the phase is the projection itself,
 * unbounded (the author's notebook uses relu(·), lucidrains the angle of a
 * complex projection, in (−π, π]) — so a RoPE frequency can be set exactly
 * as a phase bias; the transition is per head and per complex pair (the
 * "max-headed" per-channel case of lucidrains is H = d_inner/2, P = 2); the
 * gate has a bias g_bias (silu(g + g_bias), 0 at random init) so a student
 * can start with the gate ≈ 1; no sub-norm. Realised with real numbers: the
 * complex state is [H, P(=N), P] floats, rows 2j / 2j+1 its real / imaginary
 * parts, a_t a 2×2 scaling-rotation of each pair (kernels/gateloop.h).
 *
 * Three exact modes: the recurrent step (token by token, the decode path),
 * the chunked scan (prefill), and the materialized mixing matrix M[H,T,T]
 * with y = M·v per head (before the gate); and the paper's associative scan
 * (GL_MODE_ASSOC, O(T log T)), not used by the engine.
 *
 * Letters: T tokens, d = d_model, Di = d_inner = H·P, H heads, P head dim
 * (q, k and v per head; even), J = P/2, HJ = H·J, R = in_proj rows = 5·Di.
 */
#ifndef MOLT_GL_MIXER_H
#define MOLT_GL_MIXER_H

#include "core/dtype.h"
#include "core/exec.h"

#include <stddef.h>

typedef struct gateloop_cfg {
    int d_model, d_inner; // d_inner = H·P
    int H, P;             // heads, head dim (even: P/2 complex pairs)
    int chunk;            // chunk size of the chunked scan (≥ 1)
} gateloop_cfg;

typedef struct gl_weights {
    const float *in_proj;  // [R, d]  rows [q | k | v | g | m | φ]
    const float *a_bias;   // [Di]    magnitude biases (HJ), then phase biases (HJ)
    const float *g_bias;   // [Di]    gate bias (NULL = 0)
    const float *out_proj; // [d, Di]
    // typed views for the inference paths (forward, step_rows); training and
    // materialize read the f32 ones above. data NULL: the f32 matrix.
    molt_w in_proj_t, out_proj_t;
} gl_weights;

// GL_MODE_ASSOC: the paper's O(T log T) associative scan (gl_scan_assoc), for
// comparison; its work is gl_mixer_work_assoc(c, T) floats.
typedef enum gl_mode { GL_MODE_CHUNKED = 0, GL_MODE_RECURRENT = 1, GL_MODE_ASSOC = 2 } gl_mode;

// column offsets inside an in_proj output row
#define GL_COL_Q(c) 0
#define GL_COL_K(c) ((c)->d_inner)
#define GL_COL_V(c) (2 * (c)->d_inner)
#define GL_COL_G(c) (3 * (c)->d_inner)
#define GL_COL_A(c) (4 * (c)->d_inner) // m then φ, HJ each

int    gl_in_proj_rows(const gateloop_cfg *c); // 5·Di
size_t gl_state_floats(const gateloop_cfg *c); // H·P·P: the complex state as floats
// NULL when the dimensions are consistent, else a static message naming the problem.
const char *gl_cfg_check(const gateloop_cfg *c);

// Scratch floats for forward / step_rows / materialize over T tokens (rows).
size_t gl_mixer_work(const gateloop_cfg *c, int T);
size_t gl_mixer_work_assoc(const gateloop_cfg *c, int T);

// y[T,d] = mixer(u[T,d]); state [H,P,P] to continue from and update (NULL:
// zero state, not kept). GL_MODE_RECURRENT runs the step token by token.
void gl_mixer_forward(const molt_exec *ex, float *y, const float *u, int T,
                      const gateloop_cfg *c, const gl_weights *w, float *state, gl_mode mode,
                      float *work);

// Batched decode: row r of u[n,d] is the next token of its own sequence with
// state state[r] (host array of n pointers, updated): exactly the recurrent
// mode's per-token computation, each stage one op over all rows.
void gl_mixer_step_rows(const molt_exec *ex, float *y, const float *u, int n,
                        const gateloop_cfg *c, const gl_weights *w, float *const *state,
                        float *work);

// M[H,T,T]: the mixing matrix from a zero state, y_pre_gate[:,h,p] = M[h]·v[:,h,p].
void gl_mixer_materialize(const molt_exec *ex, float *M, const float *u, int T,
                          const gateloop_cfg *c, const gl_weights *w, float *work);

#endif
