/*
 * attention.h — grouped-query causal self-attention with RoPE (HF Llama
 * convention: rotate_half pairs (i, i+hd/2)), as a token mixer over a KV cache.
 *
 * Letters: T new tokens, S = pos + T keys visible, d d_model, H query heads,
 * KV key/value heads (query head h reads kv head h / (H/KV)), hd head dim.
 * Cache layout: k[KV, cap, hd], v[KV, cap, hd] (one contiguous row per head).
 * RoPE, the cache append and the attention core are backend ops
 * (kernels/attn.h); these functions add the projections around them.
 */
#ifndef MOLT_ATTENTION_H
#define MOLT_ATTENTION_H

#include "core/dtype.h"
#include "core/exec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct attn_cfg {
    int d, H, KV, hd;
    // training (attn_train.h): save the row log-sum-exp and use the flash ops
    // (the model's backend asks for them: molt_backend.train_attn_flash)
    // instead of saving P [B,H,T,T]
    bool flash;
    // the KV caches' element type (inference: attn_forward, attn_decode_rows):
    // MOLT_F32, or MOLT_F16 (the kernels/attn.h f16 ops and layout; the caches
    // are then uint16_t, k_kv_f16_halves(cap, hd) per head)
    molt_dtype kv;
} attn_cfg;

typedef struct attn_weights {
    const float *wq, *wk, *wv, *wo; // [H*hd,d] [KV*hd,d] [KV*hd,d] [d,H*hd]
    const float *bq, *bk, *bv, *bo; // NULL when absent
    // typed views of wq, wk, wv, wo for attn_forward and attn_decode_rows (the
    // inference paths; training and materialize read the f32 ones). data NULL
    // (a struct built by hand): the f32 matrix.
    molt_w tq, tk, tv, to;
} attn_weights;

// Scratch floats for attn_forward with T new tokens, up to S visible keys and
// nth worker threads. Caches: kcache / vcache point at c->kv elements (float
// pointers for the state blocks' sake; f16 caches are read as uint16_t).
size_t attn_work(const attn_cfg *c, int T, int S, int nth);

// out[T,d] = attention(u[T,d]) for tokens at positions pos..pos+T-1, after
// appending their keys/values to the cache (capacity cap ≥ pos+T).
// out_heads (optional, [T, H*hd]): the per-head outputs before o_proj.
// nth: threads for the attention core (work must be sized for them).
void attn_forward(const molt_exec *ex, float *out, float *out_heads, const float *u, int T, int pos,
                  const attn_cfg *c, const attn_weights *w, float *kcache, float *vcache, int cap,
                  const float *cos, const float *sin, float *work, int nth);

// Batched decode: row r of u[n,d] is the next token of its own sequence, at
// position pos[r], whose cache is kcache[r] / vcache[r] (capacity cap ≥ pos[r]+1).
// Appends each row's key/value, then out[n,d]. Row r's attention is computed
// exactly as attn_forward computes one token (the projections are batched GEMMs).
// attn_decode_rows: f32 caches (c->kv MOLT_F32); attn_decode_rows_f16: f16
// caches (c->kv MOLT_F16). The work size covers both (by c->kv).
size_t attn_decode_rows_work(const attn_cfg *c, int n, int cap, int nth);
void   attn_decode_rows(const molt_exec *ex, float *out, const float *u, int n, const int32_t *pos,
                        const attn_cfg *c, const attn_weights *w, float *const *kcache,
                        float *const *vcache, int cap, const float *cos, const float *sin,
                        float *work);
void   attn_decode_rows_f16(const molt_exec *ex, float *out, const float *u, int n,
                            const int32_t *pos, const attn_cfg *c, const attn_weights *w,
                            uint16_t *const *kcache, uint16_t *const *vcache, int cap,
                            const float *cos, const float *sin, float *work);

// A[H,T,T]: the softmax attention probabilities of u[T,d] from position 0
// (row = query t, col = key s; zero above the diagonal). work: attn_work(c,T,T)
// plus 2·KV·T·hd floats.
size_t attn_materialize_work(const attn_cfg *c, int T);
void   attn_materialize(const molt_exec *ex, float *A, const float *u, int T, const attn_cfg *c, const attn_weights *w,
                        const float *cos, const float *sin, float *work);

#endif
