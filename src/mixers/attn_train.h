/*
 * attn_train.h — training attention: the forward that saves activations and
 * its backward, over B independent sequences of T tokens each (positions
 * 0..T-1, no KV cache). Same semantics as attn_forward (attention.h): HF Llama
 * RoPE (rotate_half), GQA (query head h reads kv head h / (H/KV)), scores
 * (q·k)·hd^-½, causal mask, fp32 softmax.
 *
 * Letters: B sequences, T tokens each, d d_model, H query heads, KV key/value
 * heads, grp = H/KV, hd head dim. Activations are row-major [B·T, ·], the rows
 * of sequence b being b·T .. b·T+T-1.
 *
 * act layout (attn_train_act_floats):
 *   qkv   [B, T, (H+2KV)·hd]  per row: q (post-RoPE) | k (post-RoPE) | v — the
 *                             output of one GEMM against [Wq; Wk; Wv]
 *   probs [B, H, T, T]   softmax rows (zero above the diagonal); with c->flash
 *                        lse [B, H, T] instead (log Σ exp of each row's scores)
 *   heads [B, T, H·hd]   P·V per head, before o_proj
 *
 * Accumulation: weight / bias grads +=, du written (=).
 */
#ifndef MOLT_ATTN_TRAIN_H
#define MOLT_ATTN_TRAIN_H

#include "core/exec.h"

#include "mixers/attention.h"

#include <stddef.h>

typedef struct attn_grads {
    float *wq, *wk, *wv, *wo; // [H*hd,d] [KV*hd,d] [KV*hd,d] [d,H*hd]   +=
    float *bq, *bk, *bv, *bo; // [H*hd] [KV*hd] [KV*hd] [d]               +=; NULL where absent
} attn_grads;

// Floats of act (layout above).
size_t attn_train_act_floats(const attn_cfg *c, int B, int T);
// Scratch floats for attn_train_backward and attn_train_probs (the forward
// needs none: pass any pointer, NULL included). Independent of thread count.
size_t attn_train_work_floats(const attn_cfg *c, int B, int T);

// out[B·T, d] = attention(u[B·T, d]) per sequence; fills act.
// cos/sin: RoPE tables [≥T, hd/2].
void attn_train_forward(const molt_exec *ex, float *out, float *act, const float *u, int B, int T, const attn_cfg *c,
                        const attn_weights *w, const float *cos, const float *sin, float *work);
// du[B·T, d] written; g's non-NULL members +=. A NULL member of g skips that
// weight's gradient (frozen); a NULL du skips the input gradient.
void attn_train_backward(const molt_exec *ex, float *du, const attn_grads *g, const float *dout, const float *act,
                         const float *u, int B, int T, const attn_cfg *c, const attn_weights *w,
                         const float *cos, const float *sin, float *work);
// The teacher's attention probabilities (MOHAWK stage 1 target, no grad):
// A[B, H, T, T] (row query t, column key s, zero above the diagonal).
void attn_train_probs(const molt_exec *ex, float *A, const float *u, int B, int T, const attn_cfg *c,
                      const attn_weights *w, const float *cos, const float *sin, float *work);

// The softmax probabilities [B,H,T,T] saved by attn_train_forward in act
// (MOHAWK stage 1 reads the teacher's from here); NULL when c->flash (only
// lse is saved: compute them with attn_train_probs).
const float *attn_train_saved_probs(const float *act, const attn_cfg *c, int B, int T);

#endif
