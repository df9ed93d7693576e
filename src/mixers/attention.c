/*
 * attention.c — GQA causal attention with RoPE and a KV cache (HF Llama
 * semantics: scores = (q·k)·hd^-½, causal mask, fp32 softmax, weights·v).
 * The projections are GEMMs: typed (k_matmul_w over the molt_w views) in
 * attn_forward and attn_decode_rows, the inference paths; f32 (k_matmul) in
 * attn_materialize, which analysis runs on the master weights. RoPE, the cache append and the
 * attention core are backend ops (kernels/attn.h: k_rope, k_kv_append,
 * k_attn_prefill, k_attn_decode_rows, k_attn_probs). This file keeps the
 * work layouts.
 */
#include "mixers/attention.h"

#include "kernels/attn.h"
#include "kernels/kernels.h"

#define MOLT_MAXI(a, b) ((a) > (b) ? (a) : (b))

// the typed view, or the f32 matrix when the struct was built without one
static molt_w tw(molt_w t, const float *f) { return t.data ? t : molt_w_f32(f); }

// q [T, H*hd], k, v [T, KV*hd] = u·W_{q,k,v}ᵀ (+ biases). One row (decode) with the three
// weights one block of one type (mx_attention.c joins k and v to q in the typed buffer)
// and no biases: one GEMM over the [(H + 2KV)·hd, d] block into q, k, v (adjacent for one
// row) — every output row's dot product is the one it gets alone, so the same bits, in one
// dispatch (and, for q8_0 weights, one quantization of u) instead of three.
static void qkv_proj(const molt_exec *ex, float *q, float *k, float *v, const float *u, int T,
                     const attn_cfg *c, const attn_weights *w) {
    int    H = c->H, KV = c->KV, hd = c->hd;
    molt_w wq = tw(w->tq, w->wq), wk = tw(w->tk, w->wk), wv = tw(w->tv, w->wv);
    if (T == 1 && !w->bq && !w->bk && !w->bv && wq.dt == wk.dt && wk.dt == wv.dt &&
        k == q + (size_t)H * hd && v == k + (size_t)KV * hd &&
        (const char *)wk.data ==
            (const char *)wq.data + molt_w_bytes(wq.dt, (size_t)H * hd, (size_t)c->d) &&
        (const char *)wv.data ==
            (const char *)wk.data + molt_w_bytes(wk.dt, (size_t)KV * hd, (size_t)c->d)) {
        k_matmul_w(ex, q, u, wq, NULL, 1, c->d, (H + 2 * KV) * hd, 0);
        return;
    }
    k_matmul_w(ex, q, u, wq, w->bq, T, c->d, H * hd, 0);
    k_matmul_w(ex, k, u, wk, w->bk, T, c->d, KV * hd, 0);
    k_matmul_w(ex, v, u, wv, w->bv, T, c->d, KV * hd, 0);
}

size_t attn_work(const attn_cfg *c, int T, int S, int nth) {
    // q [T,H*hd], k/v new [T,KV*hd] each, heads [T,H*hd], then the core's
    // scratch (scores; f16: and the widened keys / values)
    size_t core = c->kv == MOLT_F16 ? k_attn_prefill_f16_work(T, S, c->H, c->KV, c->hd, nth)
                                    : k_attn_prefill_work(T, S, c->H, c->KV, nth);
    return (size_t)T * (size_t)(2 * c->H * c->hd + 2 * c->KV * c->hd) + core;
}

// RoPE in place on x[T, nh, hd] at positions pos..pos+T-1 (cos/sin: [max_pos, hd/2])
static void rope_apply(const molt_exec *ex, float *x, int T, int nh, int hd, int pos,
                       const float *cos, const float *sin) {
    k_rope(ex, x, nh * hd, T, nh, hd, pos, T > 0 ? T : 1, NULL, cos, sin, 0);
}

void attn_forward(const molt_exec *ex, float *out, float *out_heads, const float *u, int T, int pos,
                  const attn_cfg *c, const attn_weights *w, float *kcache, float *vcache, int cap,
                  const float *cos, const float *sin, float *work, int nth) {
    int H = c->H, KV = c->KV, hd = c->hd;
    float *q = work;                              // [T, H*hd]
    float *k = q + (size_t)T * H * hd;            // [T, KV*hd]
    float *v = k + (size_t)T * KV * hd;           // [T, KV*hd]
    float *heads = v + (size_t)T * KV * hd;       // [T, H*hd]
    float *scores = heads + (size_t)T * H * hd;   // k_attn_prefill_work(T, pos + T, H, KV, nth)
    qkv_proj(ex, q, k, v, u, T, c, w);
    rope_apply(ex, q, T, H, hd, pos, cos, sin);
    rope_apply(ex, k, T, KV, hd, pos, cos, sin);
    // append to cache: [T, KV, hd] → [KV, cap, hd]
    molt_exec core = molt_exec_threads(ex, nth); // work is sized for nth threads
    if (c->kv == MOLT_F16) {
        // the state block's floats hold halves (attn.h: the f16 layout)
        uint16_t *kh = (uint16_t *)(void *)kcache, *vh = (uint16_t *)(void *)vcache;
        k_kv_append_f16(ex, &kh, &vh, k, v, KV * hd, T, KV, hd, cap, pos, NULL);
        k_attn_prefill_f16(&core, heads, q, T, pos, H, KV, hd, kh, vh, cap, scores);
    } else {
        k_kv_append(ex, &kcache, &vcache, k, v, KV * hd, T, KV, hd, cap, pos, NULL);
        k_attn_prefill(&core, heads, q, T, pos, H, KV, hd, kcache, vcache, cap, scores);
    }
    if (out_heads)
        be_copy(ex, out_heads, heads, sizeof(float) * (size_t)T * H * hd);
    k_matmul_w(ex, out, heads, tw(w->to, w->wo), w->bo, T, H * hd, c->d, 0);
}

// ----------------------------------------------------------------------------
// batched decode: n rows, each one new token of its own sequence (state slot)

size_t attn_decode_rows_work(const attn_cfg *c, int n, int cap, int nth) {
    // q [n,H*hd], k/v new [n,KV*hd] each, heads [n,H*hd], then the core's
    // scratch (scores; f16: and the widened key / value tiles)
    size_t core = c->kv == MOLT_F16 ? k_attn_decode_rows_f16_work(c->H, c->KV, c->hd, cap, nth)
                                    : k_attn_decode_rows_work(c->H, c->KV, cap, nth);
    return (size_t)n * (size_t)(2 * c->H * c->hd + 2 * c->KV * c->hd) + core;
}

// the rows' q, k, v (RoPE'd) into work: q [n, H*hd], k, v [n, KV*hd]; returns heads [n, H*hd]
// (the core's scratch follows it)
static float *rows_qkv(const molt_exec *ex, const float *u, int n, const int32_t *pos,
                       const attn_cfg *c, const attn_weights *w, const float *cos,
                       const float *sin, float *work) {
    int H = c->H, KV = c->KV, hd = c->hd;
    float *q = work, *k = q + (size_t)n * H * hd, *v = k + (size_t)n * KV * hd;
    qkv_proj(ex, q, k, v, u, n, c, w);
    k_rope(ex, q, H * hd, n, H, hd, 0, 1, pos, cos, sin, 0);
    k_rope(ex, k, KV * hd, n, KV, hd, 0, 1, pos, cos, sin, 0);
    return v + (size_t)n * KV * hd;
}

void attn_decode_rows(const molt_exec *ex, float *out, const float *u, int n, const int32_t *pos,
                      const attn_cfg *c, const attn_weights *w, float *const *kcache,
                      float *const *vcache, int cap, const float *cos, const float *sin,
                      float *work) {
    int H = c->H, KV = c->KV, hd = c->hd;
    float *heads = rows_qkv(ex, u, n, pos, c, w, cos, sin, work);
    float *q = work, *k = q + (size_t)n * H * hd, *v = k + (size_t)n * KV * hd;
    float *scores = heads + (size_t)n * H * hd;
    k_kv_append(ex, kcache, vcache, k, v, KV * hd, n, KV, hd, cap, 0, pos);
    k_attn_decode_rows(ex, heads, q, n, pos, H, KV, hd, kcache, vcache, cap, scores);
    k_matmul_w(ex, out, heads, tw(w->to, w->wo), w->bo, n, H * hd, c->d, 0);
}

void attn_decode_rows_f16(const molt_exec *ex, float *out, const float *u, int n,
                          const int32_t *pos, const attn_cfg *c, const attn_weights *w,
                          uint16_t *const *kcache, uint16_t *const *vcache, int cap,
                          const float *cos, const float *sin, float *work) {
    int H = c->H, KV = c->KV, hd = c->hd;
    float *heads = rows_qkv(ex, u, n, pos, c, w, cos, sin, work);
    float *q = work, *k = q + (size_t)n * H * hd, *v = k + (size_t)n * KV * hd;
    float *scores = heads + (size_t)n * H * hd;
    k_kv_append_f16(ex, kcache, vcache, k, v, KV * hd, n, KV, hd, cap, 0, pos);
    k_attn_decode_rows_f16(ex, heads, q, n, pos, H, KV, hd, kcache, vcache, cap, scores);
    k_matmul_w(ex, out, heads, tw(w->to, w->wo), w->bo, n, H * hd, c->d, 0);
}

size_t attn_materialize_work(const attn_cfg *c, int T) {
    attn_cfg f = *c; // its own f32 keys in work, whatever the caches' type
    f.kv = MOLT_F32;
    return attn_work(&f, T, T, 1) + 2 * (size_t)c->KV * T * c->hd;
}

void attn_materialize(const molt_exec *ex, float *A, const float *u, int T, const attn_cfg *c,
                      const attn_weights *w, const float *cos, const float *sin, float *work) {
    int H = c->H, KV = c->KV, hd = c->hd;
    float *q = work;
    float *k = q + (size_t)T * H * hd;
    float *kc = k + (size_t)T * KV * hd + (size_t)T * KV * hd + (size_t)T * H * hd + (size_t)T * T;
    k_matmul(ex, q, u, w->wq, w->bq, T, c->d, H * hd, 0);
    k_matmul(ex, k, u, w->wk, w->bk, T, c->d, KV * hd, 0);
    rope_apply(ex, q, T, H, hd, 0, cos, sin);
    rope_apply(ex, k, T, KV, hd, 0, cos, sin);
    k_kv_append(ex, &kc, NULL, k, NULL, KV * hd, T, KV, hd, T, 0, NULL); // keys only, cap T
    k_attn_probs(ex, A, q, T, H, KV, hd, kc, T);
}
