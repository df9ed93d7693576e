/*
 * attn_train.c — training forward / backward of GQA causal attention with
 * RoPE over B sequences of T tokens (see attn_train.h for the act layout).
 *
 * Letters: B sequences, T tokens, d d_model, H query heads, KV kv heads,
 * grp = H/KV, hd head dim, j = h / grp the kv head of query head h,
 * RB query rows per backward block.
 *
 * Forward, per sequence (HF LlamaAttention, eager):
 *     q = rope(u·Wqᵀ + bq)   k = rope(u·Wkᵀ + bk)   v = u·Wvᵀ + bv
 *     S_h = (q_h · k_jᵀ)·hd^-½ ,  P_h = softmax_causal(ex, S_h) ,  heads_h = P_h · v_j
 *     out = heads · Woᵀ + bo
 * Per (b, h), query rows go in blocks of RB: block [t0, t1) is one score
 * sgemm against keys 0..t1-1 and one output sgemm, so the masked upper
 * triangle is never computed; attn_forward's prefill agrees to float rounding.
 *
 * Backward runs the list in reverse; heads on the pool, one (b, h) per task,
 * the query rows in blocks of RB so only keys 0..t1-1 are visited (causal:
 * about half the work of the full T×T) and the scratch is RB×T per thread.
 * Shared kv heads (grp > 1) get per-query-head gradients that are summed over
 * their group afterwards (repeat_interleave backward), so tasks never write
 * the same floats.
 *
 * Accumulation: weight / bias grads +=; du written.
 */
#include "mixers/attn_train.h"

#include "core/pool.h"
#include "kernels/backward.h"
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#define RB_MAX   64 // query rows per backward block
#define SLOTS    64 // most backward threads (scratch blocks); molt's pool has 64 workers
#define MIN_I(a, b) ((a) < (b) ? (a) : (b))

static int rb_of(int T) { return MIN_I(RB_MAX, T); }

size_t attn_train_act_floats(const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T;
    return BT * (size_t)(2 * c->H * c->hd + 2 * c->KV * c->hd) + (size_t)B * c->H * T * T;
}

const float *attn_train_saved_probs(const float *act, const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T;
    return act + BT * (size_t)c->H * c->hd + 2 * BT * (size_t)c->KV * c->hd; // after q, k, v
}

// dheads [B·T, H·hd]; dqkv [B·T, (H+2KV)·hd] (the gradient of the fused
// projection, same column layout as act's qkv); when grp > 1 also dkx, dvx
// [B·T, H·hd] (per query head); then min(B·H, SLOTS) blocks of [RB, T].
// (attn_train_probs uses the first B·T·(H+KV)·hd floats.)
size_t attn_train_work_floats(const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T, Hh = (size_t)c->H * c->hd, KVh = (size_t)c->KV * c->hd;
    size_t n = 2 * BT * Hh + 2 * BT * KVh;
    if (c->H != c->KV)
        n += 2 * BT * Hh;
    return n + (size_t)MIN_I(B * c->H, SLOTS) * (size_t)rb_of(T) * (size_t)T;
}

// ----------------------------------------------------------------------------
// RoPE on head vectors stored with row stride ld (columns of the fused qkv);
// positions restart at 0 every T rows. The forward is rope_apply row by row
// (one code path with inference); it rotates the pairs (i, i+hd/2) by +angle:
//     a' = a·cos − b·sin ,  b' = b·cos + a·sin
// so its transpose (the backward) rotates by −angle:
//     da = da'·cos + db'·sin ,  db = db'·cos − da'·sin

static void rope_rows(float *x, int ld, int rows, int T, int nh, int hd, const float *cos,
                      const float *sin) {
    for (int r = 0; r < rows; r++)
        rope_apply(x + (size_t)r * ld, 1, nh, hd, r % T, cos, sin);
}

K_SIMD static void rope_rows_backward(float *dx, int ld, int rows, int T, int nh, int hd,
                                      const float *cos, const float *sin) {
    int half = hd / 2;
    for (int r = 0; r < rows; r++) {
        int          t = r % T;
        const float *ct = cos + (size_t)t * half, *st = sin + (size_t)t * half;
        for (int h = 0; h < nh; h++) {
            float *g = dx + (size_t)r * ld + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                float a = g[i], b = g[i + half];
                g[i] = a * ct[i] + b * st[i];
                g[i + half] = b * ct[i] - a * st[i];
            }
        }
    }
}

// ----------------------------------------------------------------------------
// The q, k, v projections as one GEMM. q_proj, k_proj and v_proj are declared
// one after the other, so their weights (and gradients, same layout) form one
// [(H+2KV)·hd, d] matrix whenever each size is a multiple of the 16-float
// alignment (biases likewise). Otherwise: one GEMM each through scratch.

static bool adjacent3(const float *a, const float *b, const float *c, size_t na, size_t nb) {
    return (!a && !b && !c) || (a && b == a + na && c == b + nb);
}

static bool qkv_fused(const attn_cfg *c, const attn_weights *w) {
    size_t Hh = (size_t)c->H * c->hd, KVh = (size_t)c->KV * c->hd;
    return adjacent3(w->wq, w->wk, w->wv, Hh * c->d, KVh * c->d) &&
           adjacent3(w->bq, w->bk, w->bv, Hh, KVh);
}

// qkv[BT, ld] columns [0, n_out) = u · [Wq; Wk; Wv][0:n_out]ᵀ (+ bias), then RoPE
// on q and k. n_out = (H+2KV)·hd, or (H+KV)·hd for q and k only. scratch: BT·H·hd
// floats (the unfused path).
static void project(const molt_exec *ex, float *qkv, int ld, int n_out, const float *u, int B, int T,
                    const attn_cfg *c, const attn_weights *w, const float *cos, const float *sin,
                    float *scratch) {
    int    Hh = c->H * c->hd, KVh = c->KV * c->hd, BT = B * T;
    size_t ldz = (size_t)ld;
    if (qkv_fused(c, w) && ld == n_out) {
        k_matmul(ex, qkv, u, w->wq, w->bq, BT, c->d, n_out, 0);
    } else {
        const float *W[3] = {w->wq, w->wk, w->wv}, *bias[3] = {w->bq, w->bk, w->bv};
        int          n[3] = {Hh, KVh, KVh}, col = 0;
        for (int i = 0; i < 3 && col < n_out; col += n[i], i++) {
            k_matmul(ex, scratch, u, W[i], bias[i], BT, c->d, n[i], 0);
            k_copy_cols(qkv + col, ldz, scratch, (size_t)n[i], (size_t)BT, (size_t)n[i]);
        }
    }
    rope_rows(qkv, ld, BT, T, c->H, c->hd, cos, sin);
    rope_rows(qkv + Hh, ld, BT, T, c->KV, c->hd, cos, sin);
}

// ----------------------------------------------------------------------------
// forward

typedef struct fwd_task {
    float          *P, *heads; // heads NULL: probabilities only
    const float    *q, *k, *v; // columns of one [B·T, ld] matrix (v NULL: probabilities only)
    int             ld;
    const attn_cfg *c;
    int             B, T;
} fwd_task;

// rows of one score block, in place: P = softmax over keys 0..t of S·scale,
// zeros after t (row r of the block is query t0 + r; ld T)
K_SIMD static void softmax_causal_rows(float *P, int t0, int rb, int T, float scale) {
    for (int r = 0; r < rb; r++) {
        int    t = t0 + r;
        float *row = P + (size_t)r * T;
        k_softmax_scaled(row, t + 1, scale);
        for (int s = t + 1; s < T; s++)
            row[s] = 0.0f;
    }
}

// P_h = softmax_causal(ex, (q_h · k_jᵀ)·hd^-½)  [T,T];  heads_h = P_h · v_j  [T,hd]
// Query rows in blocks of RB: block [t0, t1) only sees keys 0..t1-1, so the
// two sgemms skip the masked upper triangle (about 40% of the T×T work).
static void fwd_heads(void *arg, int ith, int nth) {
    const fwd_task *j = arg;
    int   H = j->c->H, KV = j->c->KV, hd = j->c->hd, grp = H / KV, T = j->T, RB = rb_of(T);
    float scale = 1.0f / sqrtf((float)hd);
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / grp;
        float       *P = j->P + (size_t)task * T * T;
        size_t       ld = (size_t)j->ld;
        const float *qb = j->q + (size_t)b * T * ld + (size_t)h * hd;
        const float *kb = j->k + (size_t)b * T * ld + (size_t)kv * hd;
        for (int t0 = 0; t0 < T; t0 += RB) {
            int    t1 = MIN_I(T, t0 + RB), rb = t1 - t0, n = t1;
            float *Pb = P + (size_t)t0 * T;
            // HF order: matmul, then scale (as attn_forward)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, n, hd, 1.0f, qb + t0 * ld,
                        j->ld, kb, j->ld, 0.0f, Pb, T);
            softmax_causal_rows(Pb, t0, rb, T, scale);
            if (j->heads)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hd, n, 1.0f, Pb, T,
                            j->v + (size_t)b * T * ld + (size_t)kv * hd, j->ld, 0.0f,
                            j->heads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd, H * hd);
        }
    }
}

static void run_heads(const molt_exec *ex, fwd_task *job) {
    int nth = MIN_I(ex->nth, job->B * job->c->H);
    if ((size_t)job->T * job->T * job->c->hd * job->B * job->c->H < 100000)
        nth = 1;
    molt_pool_run(nth > 1 ? nth : 1, fwd_heads, job);
}

void attn_train_forward(const molt_exec *ex, float *out, float *act, const float *u, int B, int T, const attn_cfg *c,
                        const attn_weights *w, const float *cos, const float *sin, float *work) {
    int    H = c->H, KV = c->KV, hd = c->hd, W = (H + 2 * KV) * hd;
    size_t BT = (size_t)B * T;
    float *qkv = act;                      // [B,T,W]: q | k | v per row
    float *P = qkv + BT * W;               // [B,H,T,T]
    float *heads = P + BT * (size_t)H * T; // [B,T,H·hd]
    // the unfused projection's scratch: heads is free until the heads pass
    project(ex, qkv, W, W, u, B, T, c, w, cos, sin, heads);
    fwd_task job = {P, heads, qkv, qkv + H * hd, qkv + (H + KV) * hd, W, c, B, T};
    run_heads(ex, &job);
    k_matmul(ex, out, heads, w->wo, w->bo, B * T, H * hd, c->d, 0);
    (void)work;
}

void attn_train_probs(const molt_exec *ex, float *A, const float *u, int B, int T, const attn_cfg *c,
                      const attn_weights *w, const float *cos, const float *sin, float *work) {
    int    H = c->H, KV = c->KV, hd = c->hd, ld = (H + KV) * hd;
    float *qk = work, *scratch = qk + (size_t)B * T * ld; // [B,T,(H+KV)·hd], [B,T,H·hd]
    project(ex, qk, ld, ld, u, B, T, c, w, cos, sin, scratch);
    fwd_task job = {A, NULL, qk, qk + H * hd, NULL, ld, c, B, T};
    run_heads(ex, &job);
}

// ----------------------------------------------------------------------------
// backward

typedef struct bwd_task {
    const float    *q, *k, *v, *P, *dheads; // q, k, v: columns of act's qkv (row stride ld)
    float          *dq, *dkx, *dvx, *scratch; // dq: columns of dqkv (ld); dkx/dvx: see ldkx
    int             ld, ldkx;                 // ldkx: ld when grp = 1 (dk, dv in dqkv), else H·hd
    const attn_cfg *c;
    int             B, T;
} bwd_task;

// dS_ts = P_ts·(dP_ts − Σ_s' P_ts'·dP_ts') in place over dS (= dP on entry),
// rows t0..t0+rb-1 of one block, keys 0..n-1 (ld T)
K_SIMD static void softmax_backward_rows(float *dS, const float *Pb, int t0, int rb, int n,
                                         int T) {
    for (int r = 0; r < rb; r++) {
        const float *pr = Pb + (size_t)r * T;
        float       *gr = dS + (size_t)r * T;
        double       acc[8] = {0}, dot; // Σ_s P_ts·dP_ts, 8 partial sums
        int          s = 0, ns = t0 + r + 1;
        for (; s + 8 <= ns; s += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += (double)pr[s + k] * (double)gr[s + k];
        dot = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; s < ns; s++)
            dot += (double)pr[s] * (double)gr[s];
        float fd = (float)dot;
        for (s = 0; s < n; s++)
            gr[s] = pr[s] * (gr[s] - fd);
    }
}

// One (b, h) per task; thread ith uses scratch block ith ([RB, T], dP then dS).
static void bwd_heads(void *arg, int ith, int nth) {
    const bwd_task *j = arg;
    int   H = j->c->H, KV = j->c->KV, hd = j->c->hd, grp = H / KV, T = j->T, RB = rb_of(T);
    int   ldo = H * hd; // row stride of dheads
    int   ld = j->ld, ldkx = j->ldkx;
    float scale = 1.0f / sqrtf((float)hd);
    float *dS = j->scratch + (size_t)ith * RB * T; // [RB, T] (leading dim T)
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / grp;
        size_t       rq = (size_t)b * T * ld + (size_t)h * hd; // (b, t=0, head h) in qkv
        size_t       rk = (size_t)b * T * ld + (size_t)kv * hd;
        size_t       ro = (size_t)b * T * ldo + (size_t)h * hd;
        size_t       rx = (size_t)b * T * ldkx + (size_t)(grp > 1 ? h : kv) * hd;
        const float *P = j->P + (size_t)task * T * T;
        const float *Q = j->q + rq, *K = j->k + rk, *V = j->v + rk, *dO = j->dheads + ro;
        float       *dQ = j->dq + rq, *dK = j->dkx + rx, *dV = j->dvx + rx;
        for (int t0 = 0; t0 < T; t0 += RB) {
            int t1 = MIN_I(T, t0 + RB), rb = t1 - t0, n = t1; // rows t0..t1-1 see keys 0..t1-1
            const float *Pb = P + (size_t)t0 * T, *dOb = dO + (size_t)t0 * ldo;
            // heads = P·V:   dP = dO·Vᵀ  [rb, n];   dV += Pᵀ·dO  [n, hd]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, n, hd, 1.0f, dOb, ldo, V, ld,
                        0.0f, dS, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, rb, 1.0f, Pb, T, dOb, ldo,
                        1.0f, dV, ldkx);
            // P = softmax(S) per row:   dS_ts = P_ts·(dP_ts − Σ_s' P_ts'·dP_ts')
            // (P is 0 above the diagonal, so masked scores get dS = 0)
            softmax_backward_rows(dS, Pb, t0, rb, n, T);
            // S = (Q·Kᵀ)·scale:   dQ = scale·dS·K  [rb, hd];   dK += scale·dSᵀ·Q  [n, hd]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hd, n, scale, dS, T, K, ld,
                        0.0f, dQ + (size_t)t0 * ld, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, rb, scale, dS, T,
                        Q + (size_t)t0 * ld, ld, 1.0f, dK, ldkx);
        }
    }
}

// GQA: k/v of kv head j were used by query heads j·grp .. j·grp+grp-1
// (repeat_interleave), so their grads sum over the group:
//     dk[t, j] = Σ_g dkx[t, j·grp + g]      (dk rows have stride ld)
static void sum_groups(float *dk, int ld, const float *dkx, size_t BT, int KV, int grp, int hd) {
    for (size_t t = 0; t < BT; t++)
        for (int jh = 0; jh < KV; jh++) {
            float       *o = dk + t * (size_t)ld + (size_t)jh * hd;
            const float *x = dkx + (t * KV * grp + (size_t)jh * grp) * hd;
            memcpy(o, x, sizeof(float) * (size_t)hd);
            for (int g = 1; g < grp; g++)
                for (int i = 0; i < hd; i++)
                    o[i] += x[(size_t)g * hd + i];
        }
}

// qkv = u·[Wq; Wk; Wv]ᵀ + b:  du = dqkv·[Wq; Wk; Wv] (written), weight/bias grads +=.
// One GEMM pair when the weights and the requested grads are adjacent; else
// one per projection, its columns of dqkv copied to scratch ([BT, H·hd]).
static void project_backward(const molt_exec *ex, float *du, const attn_grads *g, const float *dqkv, const float *u,
                             int BT, const attn_cfg *c, const attn_weights *w, float *scratch) {
    int          Hh = c->H * c->hd, KVh = c->KV * c->hd, W = Hh + 2 * KVh, d = c->d;
    float       *gw[3] = {g ? g->wq : NULL, g ? g->wk : NULL, g ? g->wv : NULL};
    float       *gb[3] = {g ? g->bq : NULL, g ? g->bk : NULL, g ? g->bv : NULL};
    const float *Wm[3] = {w->wq, w->wk, w->wv};
    size_t       nW[3] = {(size_t)Hh * d, (size_t)KVh * d, (size_t)KVh * d};
    if (qkv_fused(c, w) && adjacent3(gw[0], gw[1], gw[2], nW[0], nW[1]) &&
        adjacent3(gb[0], gb[1], gb[2], (size_t)Hh, (size_t)KVh)) {
        k_matmul_backward(ex, du, gw[0], gb[0], dqkv, u, w->wq, BT, d, W, 0);
        return;
    }
    int n[3] = {Hh, KVh, KVh}, col = 0;
    for (int i = 0; i < 3; col += n[i], i++) {
        k_copy_cols(scratch, (size_t)n[i], dqkv + col, (size_t)W, (size_t)BT, (size_t)n[i]);
        k_matmul_backward(ex, du, gw[i], gb[i], scratch, u, Wm[i], BT, d, n[i], i > 0);
    }
}

void attn_train_backward(const molt_exec *ex, float *du, const attn_grads *g, const float *dout, const float *act,
                         const float *u, int B, int T, const attn_cfg *c, const attn_weights *w,
                         const float *cos, const float *sin, float *work) {
    int          H = c->H, KV = c->KV, hd = c->hd, d = c->d, grp = H / KV, W = (H + 2 * KV) * hd;
    size_t       BT = (size_t)B * T;
    const float *qkv = act, *P = qkv + BT * W, *heads = P + BT * (size_t)H * T;
    float       *dheads = work;               // [B,T,H·hd]
    float       *dqkv = dheads + BT * H * hd; // [B,T,W]: dq | dk | dv per row
    float       *dk = dqkv + H * hd, *dv = dk + KV * hd;
    float       *dkx = dk, *dvx = dv;         // per query head when grp > 1
    float       *scratch = dqkv + BT * W;     // [slots, RB, T]
    int          ldkx = W;
    if (grp > 1) {
        dkx = scratch;
        dvx = dkx + BT * H * hd;
        scratch = dvx + BT * H * hd;
        ldkx = H * hd;
    }

    // out = heads·Woᵀ + bo:   dheads = dout·Wo;  dWo += doutᵀ·heads;  dbo += Σ dout
    k_matmul_backward(ex, dheads, g ? g->wo : NULL, g ? g->bo : NULL, dout, heads, w->wo, B * T,
                      H * hd, d, 0);

    // per (b, h): heads_h = P_h·v_j,  P_h = softmax_causal(ex, S_h),  S_h = (q_h·k_jᵀ)·hd^-½
    if (grp > 1) {
        memset(dkx, 0, sizeof(float) * BT * (size_t)H * hd);
        memset(dvx, 0, sizeof(float) * BT * (size_t)H * hd);
    } else {
        memset(dqkv, 0, sizeof(float) * BT * (size_t)W); // dk, dv accumulate in place
    }
    bwd_task job = {qkv,  qkv + H * hd, qkv + (H + KV) * hd, P, dheads, dqkv, dkx, dvx,
                    scratch, W, ldkx, c, B, T};
    int      nth = MIN_I(MIN_I(ex->nth, B * H), SLOTS);
    if ((size_t)T * T * hd * B * H < 100000)
        nth = 1;
    molt_pool_run(nth > 1 ? nth : 1, bwd_heads, &job);
    if (grp > 1) {
        sum_groups(dk, W, dkx, BT, KV, grp, hd);
        sum_groups(dv, W, dvx, BT, KV, grp, hd);
    }

    // q = rope(q_lin), k = rope(k_lin):   d(q_lin) = rope⁻¹(dq)  (in place)
    rope_rows_backward(dqkv, W, (int)BT, T, H, hd, cos, sin);
    rope_rows_backward(dk, W, (int)BT, T, KV, hd, cos, sin);

    // [q_lin | k_lin | v] = u·[Wq; Wk; Wv]ᵀ + b   (dheads is free scratch now)
    project_backward(ex, du, g, dqkv, u, B * T, c, w, dheads);
}
