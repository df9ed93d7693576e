/*
 * attention.c — GQA causal attention with RoPE and a KV cache (HF Llama
 * semantics: scores = (q·k)·hd^-½, causal mask, fp32 softmax, weights·v).
 *
 * Decode (T = 1) runs plain dot-product loops; prefill (T > 1) computes each
 * head's score block with one sgemm (BLAS) and its output with another.
 */
#include "mixers/attention.h"

#include "core/pool.h"
#include "kernels/kernels.h"

#define MOLT_MAXI(a, b) ((a) > (b) ? (a) : (b))

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t attn_work(const attn_cfg *c, int T, int S, int nth) {
    // q [T,H*hd], k/v new [T,KV*hd] each, heads [T,H*hd], scores [nth, max(T, H/KV), S]
    size_t rows = (size_t)MOLT_MAXI(T, c->H / c->KV);
    return (size_t)T * (size_t)(2 * c->H * c->hd + 2 * c->KV * c->hd) +
           (size_t)MOLT_MAXI(nth, 1) * rows * (size_t)S;
}

K_SIMD void rope_apply(float *x, int T, int nh, int hd, int pos, const float *cos,
                       const float *sin) {
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *ct = cos + (size_t)(pos + t) * half, *st = sin + (size_t)(pos + t) * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + ((size_t)t * nh + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * ct[i] - b * st[i];
                v[i + half] = b * ct[i] + a * st[i];
            }
        }
    }
}

// Scores for query rows of one head against S keys, masked causally
// (query t sits at absolute position pos+t), then softmax per row.
static void softmax_causal(const molt_exec *ex, float *sc, int T, int S, int pos) {
    for (int t = 0; t < T; t++) {
        int n = pos + t + 1; // visible keys
        float *row = sc + (size_t)t * S;
        k_softmax(ex, row, n);
        for (int s = n; s < S; s++)
            row[s] = 0.0f;
    }
}

// Decode (one query per head): the grp query heads that share a KV head are
// handled together, so each cached key/value row is read once per group.
// scores: [grp, S]. Handles kv heads [j0, j1).
static void attend_one(const molt_exec *ex, float *heads, const float *q, int S, const attn_cfg *c, const float *kc,
                       const float *vc, int cap, float *scores, int j0, int j1) {
    int hd = c->hd, grp = c->H / c->KV;
    float scale = 1.0f / sqrtf((float)hd);
    for (int j = j0; j < j1; j++) {
        const float *K = kc + (size_t)j * cap * hd, *V = vc + (size_t)j * cap * hd;
        const float *qg = q + (size_t)j * grp * hd;
        for (int s = 0; s < S; s++) {
            const float *ks = K + (size_t)s * hd;
            for (int g = 0; g < grp; g++) {
                const float *qh = qg + (size_t)g * hd;
                float dot = 0.0f;
                for (int i = 0; i < hd; i++)
                    dot += qh[i] * ks[i];
                scores[(size_t)g * S + s] = dot * scale;
            }
        }
        for (int g = 0; g < grp; g++)
            k_softmax(ex, scores + (size_t)g * S, S);
        float *og = heads + (size_t)j * grp * hd;
        memset(og, 0, sizeof(float) * (size_t)grp * hd);
        for (int s = 0; s < S; s++) {
            const float *vs = V + (size_t)s * hd;
            for (int g = 0; g < grp; g++) {
                float p = scores[(size_t)g * S + s], *oh = og + (size_t)g * hd;
                for (int i = 0; i < hd; i++)
                    oh[i] += p * vs[i];
            }
        }
    }
}

typedef struct decode_task {
    float       *heads, *scores;
    const float *q, *kc, *vc;
    const attn_cfg *c;
    const molt_exec *ex;
    int          S, cap;
} decode_task;

static void decode_heads(void *arg, int ith, int nth) {
    const decode_task *j = arg;
    int j0, j1;
    molt_pool_range(j->c->KV, ith, nth, &j0, &j1);
    float *sc = j->scores + (size_t)ith * (j->c->H / j->c->KV) * j->S;
    attend_one(j->ex, j->heads, j->q, j->S, j->c, j->kc, j->vc, j->cap, sc, j0, j1);
}

typedef struct prefill_task {
    float       *heads, *scores;
    const float *q, *kc, *vc;
    const attn_cfg *c;
    const molt_exec *ex;
    int          T, pos, cap;
} prefill_task;

// worker ith of nth: heads h ≡ ith (mod nth), with its own [T,S] score block
static void prefill_heads(void *arg, int ith, int nth) {
    const prefill_task *j = arg;
    int H = j->c->H, hd = j->c->hd, grp = H / j->c->KV, T = j->T, S = j->pos + j->T;
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = j->scores + (size_t)ith * T * S;
    for (int h = ith; h < H; h += nth) {
        const float *K = j->kc + (size_t)(h / grp) * j->cap * hd; // [S, hd]
        const float *V = j->vc + (size_t)(h / grp) * j->cap * hd;
        // sc[T,S] = Q_h[T,hd] · K[S,hd]ᵀ, then · scale (HF order: matmul, then scale)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, hd, 1.0f, j->q + (size_t)h * hd,
                    H * hd, K, hd, 0.0f, sc, S);
        for (size_t i = 0; i < (size_t)T * S; i++)
            sc[i] *= scale;
        softmax_causal(j->ex, sc, T, S, j->pos);
        // heads_h[T,hd] = P[T,S] · V[S,hd]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, S, 1.0f, sc, S, V, hd, 0.0f,
                    j->heads + (size_t)h * hd, H * hd);
    }
}

// heads[T, H*hd] from q[T, H*hd] and the cache (S = pos+T keys). Prefill: each
// head's [T,S] score block is one sgemm, its output another; heads are spread
// over nth pool threads.
static void attend(const molt_exec *ex, float *heads, const float *q, int T, int pos, const attn_cfg *c,
                   const float *kc, const float *vc, int cap, float *scores, int nth) {
    if (T == 1) {
        // threads only pay off once the context is long
        int use = (pos + 1) * c->H * c->hd >= (1 << 18) ? MOLT_MAXI(1, nth < c->KV ? nth : c->KV) : 1;
        decode_task j = {heads, scores, q, kc, vc, c, ex, pos + 1, cap};
        molt_pool_run(use, decode_heads, &j);
        return;
    }
    prefill_task j = {heads, scores, q, kc, vc, c, ex, T, pos, cap};
    molt_pool_run(MOLT_MAXI(1, nth < c->H ? nth : c->H), prefill_heads, &j);
}

void attn_forward(const molt_exec *ex, float *out, float *out_heads, const float *u, int T, int pos,
                  const attn_cfg *c, const attn_weights *w, float *kcache, float *vcache, int cap,
                  const float *cos, const float *sin, float *work, int nth) {
    int H = c->H, KV = c->KV, hd = c->hd, S = pos + T;
    float *q = work;                              // [T, H*hd]
    float *k = q + (size_t)T * H * hd;            // [T, KV*hd]
    float *v = k + (size_t)T * KV * hd;           // [T, KV*hd]
    float *heads = v + (size_t)T * KV * hd;       // [T, H*hd]
    float *scores = heads + (size_t)T * H * hd;   // [T, S]
    k_matmul(ex, q, u, w->wq, w->bq, T, c->d, H * hd, 0);
    k_matmul(ex, k, u, w->wk, w->bk, T, c->d, KV * hd, 0);
    k_matmul(ex, v, u, w->wv, w->bv, T, c->d, KV * hd, 0);
    rope_apply(q, T, H, hd, pos, cos, sin);
    rope_apply(k, T, KV, hd, pos, cos, sin);
    // append to cache: [T, KV, hd] → [KV, cap, hd]
    for (int t = 0; t < T; t++)
        for (int j = 0; j < KV; j++) {
            size_t dst = ((size_t)j * cap + (size_t)(pos + t)) * hd;
            memcpy(kcache + dst, k + ((size_t)t * KV + j) * hd, sizeof(float) * (size_t)hd);
            memcpy(vcache + dst, v + ((size_t)t * KV + j) * hd, sizeof(float) * (size_t)hd);
        }
    (void)S;
    attend(ex, heads, q, T, pos, c, kcache, vcache, cap, scores, nth);
    if (out_heads)
        memcpy(out_heads, heads, sizeof(float) * (size_t)T * H * hd);
    k_matmul(ex, out, heads, w->wo, w->bo, T, H * hd, c->d, 0);
}

// ----------------------------------------------------------------------------
// batched decode: n rows, each one new token of its own sequence (state slot)

size_t attn_decode_rows_work(const attn_cfg *c, int n, int cap, int nth) {
    // q [n,H*hd], k/v new [n,KV*hd] each, heads [n,H*hd], scores [nth, H/KV, cap]
    return (size_t)n * (size_t)(2 * c->H * c->hd + 2 * c->KV * c->hd) +
           (size_t)MOLT_MAXI(nth, 1) * (size_t)(c->H / c->KV) * (size_t)cap;
}

typedef struct rows_task {
    float           *heads, *scores;
    const float     *q;
    float *const    *kc, *const *vc;
    const int32_t   *pos;
    const attn_cfg  *c;
    const molt_exec *ex;
    int              n, cap;
} rows_task;

// items (row, kv head) split in contiguous ranges; a row's heads are the same
// attend_one calls single-sequence decode makes, so each row's result does not
// depend on the batch around it
static void rows_heads(void *arg, int ith, int nth) {
    const rows_task *j = arg;
    int KV = j->c->KV, H = j->c->H, hd = j->c->hd, lo, hi;
    molt_pool_range(j->n * KV, ith, nth, &lo, &hi);
    float *sc = j->scores + (size_t)ith * (H / KV) * j->cap;
    for (int it = lo; it < hi; it++) {
        int r = it / KV, kv = it % KV, S = j->pos[r] + 1;
        attend_one(j->ex, j->heads + (size_t)r * H * hd, j->q + (size_t)r * H * hd, S, j->c,
                   j->kc[r], j->vc[r], j->cap, sc, kv, kv + 1);
    }
}

void attn_decode_rows(const molt_exec *ex, float *out, const float *u, int n, const int32_t *pos,
                      const attn_cfg *c, const attn_weights *w, float *const *kcache,
                      float *const *vcache, int cap, const float *cos, const float *sin,
                      float *work) {
    int H = c->H, KV = c->KV, hd = c->hd;
    float *q = work;                        // [n, H*hd]
    float *k = q + (size_t)n * H * hd;      // [n, KV*hd]
    float *v = k + (size_t)n * KV * hd;     // [n, KV*hd]
    float *heads = v + (size_t)n * KV * hd; // [n, H*hd]
    float *scores = heads + (size_t)n * H * hd;
    k_matmul(ex, q, u, w->wq, w->bq, n, c->d, H * hd, 0);
    k_matmul(ex, k, u, w->wk, w->bk, n, c->d, KV * hd, 0);
    k_matmul(ex, v, u, w->wv, w->bv, n, c->d, KV * hd, 0);
    for (int r = 0; r < n; r++) {
        rope_apply(q + (size_t)r * H * hd, 1, H, hd, pos[r], cos, sin);
        rope_apply(k + (size_t)r * KV * hd, 1, KV, hd, pos[r], cos, sin);
        for (int j = 0; j < KV; j++) {
            size_t dst = ((size_t)j * cap + (size_t)pos[r]) * hd, src = ((size_t)r * KV + j) * hd;
            memcpy(kcache[r] + dst, k + src, sizeof(float) * (size_t)hd);
            memcpy(vcache[r] + dst, v + src, sizeof(float) * (size_t)hd);
        }
    }
    // threads once the rows' total context pays for them (as single decode)
    size_t keys = 0;
    for (int r = 0; r < n; r++)
        keys += (size_t)pos[r] + 1;
    int items = n * KV, use = 1;
    if (keys * (size_t)H * (size_t)hd >= (1u << 16))
        use = MOLT_MAXI(1, ex->nth < items ? ex->nth : items);
    molt_exec one = molt_exec_threads(ex, 1); // a kernel inside a pool task runs inline
    rows_task job = {heads, scores, q, kcache, vcache, pos, c, &one, n, cap};
    molt_pool_run(use, rows_heads, &job);
    k_matmul(ex, out, heads, w->wo, w->bo, n, H * hd, c->d, 0);
}

size_t attn_materialize_work(const attn_cfg *c, int T) {
    return attn_work(c, T, T, 1) + 2 * (size_t)c->KV * T * c->hd;
}

void attn_materialize(const molt_exec *ex, float *A, const float *u, int T, const attn_cfg *c, const attn_weights *w,
                      const float *cos, const float *sin, float *work) {
    int H = c->H, KV = c->KV, hd = c->hd, grp = H / KV;
    float *q = work;
    float *k = q + (size_t)T * H * hd;
    float *kc = k + (size_t)T * KV * hd + (size_t)T * KV * hd + (size_t)T * H * hd + (size_t)T * T;
    k_matmul(ex, q, u, w->wq, w->bq, T, c->d, H * hd, 0);
    k_matmul(ex, k, u, w->wk, w->bk, T, c->d, KV * hd, 0);
    rope_apply(q, T, H, hd, 0, cos, sin);
    rope_apply(k, T, KV, hd, 0, cos, sin);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < KV; j++)
            memcpy(kc + ((size_t)j * T + t) * hd, k + ((size_t)t * KV + j) * hd,
                   sizeof(float) * (size_t)hd);
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < H; h++) {
        float *Ah = A + (size_t)h * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, q + (size_t)h * hd,
                    H * hd, kc + (size_t)(h / grp) * T * hd, hd, 0.0f, Ah, T);
        for (size_t i = 0; i < (size_t)T * T; i++)
            Ah[i] *= scale;
        softmax_causal(ex, Ah, T, T, 0);
    }
}
