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
 *     S_h = (q_h · k_jᵀ)·hd^-½ ,  P_h = softmax_causal(S_h) ,  heads_h = P_h · v_j
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

// dheads, dq [B·T, H·hd]; dk, dv [B·T, KV·hd]; when grp > 1 also dkx, dvx
// [B·T, H·hd] (per query head); then min(B·H, SLOTS) blocks of [RB, T].
size_t attn_train_work_floats(const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T, Hh = (size_t)c->H * c->hd, KVh = (size_t)c->KV * c->hd;
    size_t n = 2 * BT * Hh + 2 * BT * KVh;
    if (c->H != c->KV)
        n += 2 * BT * Hh;
    return n + (size_t)MIN_I(B * c->H, SLOTS) * (size_t)rb_of(T) * (size_t)T;
}

// ----------------------------------------------------------------------------
// RoPE backward. Forward (rope_apply, rotate_half pairs (i, i+hd/2)):
//     a' = a·cos − b·sin ,  b' = b·cos + a·sin
// is a rotation by +angle, so its transpose (the backward) rotates by −angle:
//     da = da'·cos + db'·sin ,  db = db'·cos − da'·sin

K_SIMD static void rope_backward(float *dx, int T, int nh, int hd, const float *cos, const float *sin) {
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *ct = cos + (size_t)t * half, *st = sin + (size_t)t * half;
        for (int h = 0; h < nh; h++) {
            float *g = dx + ((size_t)t * nh + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = g[i], b = g[i + half];
                g[i] = a * ct[i] + b * st[i];
                g[i + half] = b * ct[i] - a * st[i];
            }
        }
    }
}

// q, k projections + RoPE over all B sequences (positions restart at 0 per sequence)
static void project_qk(float *q, float *k, const float *u, int B, int T, const attn_cfg *c,
                       const attn_weights *w, const float *cos, const float *sin) {
    int H = c->H, KV = c->KV, hd = c->hd;
    k_matmul(q, u, w->wq, w->bq, B * T, c->d, H * hd, 0);
    k_matmul(k, u, w->wk, w->bk, B * T, c->d, KV * hd, 0);
    for (int b = 0; b < B; b++) {
        rope_apply(q + (size_t)b * T * H * hd, T, H, hd, 0, cos, sin);
        rope_apply(k + (size_t)b * T * KV * hd, T, KV, hd, 0, cos, sin);
    }
}

// ----------------------------------------------------------------------------
// forward

typedef struct fwd_task {
    float          *P, *heads; // heads NULL: probabilities only
    const float    *q, *k, *v;
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

// P_h = softmax_causal((q_h · k_jᵀ)·hd^-½)  [T,T];  heads_h = P_h · v_j  [T,hd]
// Query rows in blocks of RB: block [t0, t1) only sees keys 0..t1-1, so the
// two sgemms skip the masked upper triangle (about 40% of the T×T work).
static void fwd_heads(void *arg, int ith, int nth) {
    const fwd_task *j = arg;
    int   H = j->c->H, KV = j->c->KV, hd = j->c->hd, grp = H / KV, T = j->T, RB = rb_of(T);
    float scale = 1.0f / sqrtf((float)hd);
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / grp;
        float       *P = j->P + (size_t)task * T * T;
        const float *qb = j->q + (size_t)b * T * H * hd + (size_t)h * hd;
        const float *kb = j->k + (size_t)b * T * KV * hd + (size_t)kv * hd;
        for (int t0 = 0; t0 < T; t0 += RB) {
            int    t1 = MIN_I(T, t0 + RB), rb = t1 - t0, n = t1;
            float *Pb = P + (size_t)t0 * T;
            // HF order: matmul, then scale (as attn_forward)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, n, hd, 1.0f,
                        qb + (size_t)t0 * H * hd, H * hd, kb, KV * hd, 0.0f, Pb, T);
            softmax_causal_rows(Pb, t0, rb, T, scale);
            if (j->heads)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hd, n, 1.0f, Pb, T,
                            j->v + (size_t)b * T * KV * hd + (size_t)kv * hd, KV * hd, 0.0f,
                            j->heads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd, H * hd);
        }
    }
}

static void run_heads(fwd_task *job) {
    int nth = MIN_I(k_threads(), job->B * job->c->H);
    if ((size_t)job->T * job->T * job->c->hd * job->B * job->c->H < 100000)
        nth = 1;
    molt_pool_run(nth > 1 ? nth : 1, fwd_heads, job);
}

void attn_train_forward(float *out, float *act, const float *u, int B, int T, const attn_cfg *c,
                        const attn_weights *w, const float *cos, const float *sin, float *work) {
    (void)work;
    int    H = c->H, KV = c->KV, hd = c->hd;
    size_t BT = (size_t)B * T;
    float *q = act;                       // [B,T,H·hd]
    float *k = q + BT * H * hd;           // [B,T,KV·hd]
    float *v = k + BT * KV * hd;          // [B,T,KV·hd]
    float *P = v + BT * KV * hd;          // [B,H,T,T]
    float *heads = P + BT * (size_t)H * T; // [B,T,H·hd]
    project_qk(q, k, u, B, T, c, w, cos, sin);
    k_matmul(v, u, w->wv, w->bv, B * T, c->d, KV * hd, 0);
    fwd_task job = {P, heads, q, k, v, c, B, T};
    run_heads(&job);
    k_matmul(out, heads, w->wo, w->bo, B * T, H * hd, c->d, 0);
}

void attn_train_probs(float *A, const float *u, int B, int T, const attn_cfg *c,
                      const attn_weights *w, const float *cos, const float *sin, float *work) {
    float *q = work, *k = q + (size_t)B * T * c->H * c->hd;
    project_qk(q, k, u, B, T, c, w, cos, sin);
    fwd_task job = {A, NULL, q, k, NULL, c, B, T};
    run_heads(&job);
}

// ----------------------------------------------------------------------------
// backward

typedef struct bwd_task {
    const float    *q, *k, *v, *P, *dheads;
    float          *dq, *dkx, *dvx, *scratch; // dkx/dvx: [B,T,H·hd] (or dk/dv when grp = 1)
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
    int   ldx = H * hd; // row stride of q, dq, dheads, dkx, dvx
    int   ldk = KV * hd; // row stride of k, v
    float scale = 1.0f / sqrtf((float)hd);
    float *dS = j->scratch + (size_t)ith * RB * T; // [RB, T] (leading dim T)
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / grp;
        size_t       rx = (size_t)b * T * ldx + (size_t)h * hd; // (b, t=0, head h) in [B,T,H·hd]
        size_t       rk = (size_t)b * T * ldk + (size_t)kv * hd;
        const float *P = j->P + (size_t)task * T * T;
        const float *Q = j->q + rx, *K = j->k + rk, *V = j->v + rk, *dO = j->dheads + rx;
        float       *dQ = j->dq + rx, *dK = j->dkx + rx, *dV = j->dvx + rx;
        for (int t0 = 0; t0 < T; t0 += RB) {
            int t1 = MIN_I(T, t0 + RB), rb = t1 - t0, n = t1; // rows t0..t1-1 see keys 0..t1-1
            const float *Pb = P + (size_t)t0 * T, *dOb = dO + (size_t)t0 * ldx;
            // heads = P·V:   dP = dO·Vᵀ  [rb, n];   dV += Pᵀ·dO  [n, hd]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, n, hd, 1.0f, dOb, ldx, V,
                        ldk, 0.0f, dS, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, rb, 1.0f, Pb, T, dOb,
                        ldx, 1.0f, dV, ldx);
            // P = softmax(S) per row:   dS_ts = P_ts·(dP_ts − Σ_s' P_ts'·dP_ts')
            // (P is 0 above the diagonal, so masked scores get dS = 0)
            softmax_backward_rows(dS, Pb, t0, rb, n, T);
            // S = (Q·Kᵀ)·scale:   dQ = scale·dS·K  [rb, hd];   dK += scale·dSᵀ·Q  [n, hd]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hd, n, scale, dS, T, K,
                        ldk, 0.0f, dQ + (size_t)t0 * ldx, ldx);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, rb, scale, dS, T,
                        Q + (size_t)t0 * ldx, ldx, 1.0f, dK, ldx);
        }
    }
}

// GQA: k/v of kv head j were used by query heads j·grp .. j·grp+grp-1
// (repeat_interleave), so their grads sum over the group:
//     dk[t, j] = Σ_g dkx[t, j·grp + g]
static void sum_groups(float *dk, const float *dkx, size_t BT, int KV, int grp, int hd) {
    for (size_t t = 0; t < BT; t++)
        for (int jh = 0; jh < KV; jh++) {
            float       *o = dk + (t * KV + jh) * hd;
            const float *x = dkx + (t * KV * grp + (size_t)jh * grp) * hd;
            memcpy(o, x, sizeof(float) * (size_t)hd);
            for (int g = 1; g < grp; g++)
                for (int i = 0; i < hd; i++)
                    o[i] += x[(size_t)g * hd + i];
        }
}

void attn_train_backward(float *du, const attn_grads *g, const float *dout, const float *act,
                         const float *u, int B, int T, const attn_cfg *c, const attn_weights *w,
                         const float *cos, const float *sin, float *work) {
    int          H = c->H, KV = c->KV, hd = c->hd, d = c->d, grp = H / KV;
    size_t       BT = (size_t)B * T;
    const float *q = act, *k = q + BT * H * hd, *v = k + BT * KV * hd;
    const float *P = v + BT * KV * hd, *heads = P + BT * (size_t)H * T;
    float       *dheads = work;                 // [B,T,H·hd]
    float       *dq = dheads + BT * H * hd;     // [B,T,H·hd]
    float       *dk = dq + BT * H * hd;         // [B,T,KV·hd]
    float       *dv = dk + BT * KV * hd;        // [B,T,KV·hd]
    float       *dkx = dk, *dvx = dv;           // per query head when grp > 1
    float       *scratch = dv + BT * KV * hd;   // [slots, RB, T]
    if (grp > 1) {
        dkx = scratch;
        dvx = dkx + BT * H * hd;
        scratch = dvx + BT * H * hd;
    }

    // out = heads·Woᵀ + bo:   dheads = dout·Wo;  dWo += doutᵀ·heads;  dbo += Σ dout
    k_matmul_backward(dheads, g ? g->wo : NULL, g ? g->bo : NULL, dout, heads, w->wo, B * T,
                      H * hd, d, 0);

    // per (b, h): heads_h = P_h·v_j,  P_h = softmax_causal(S_h),  S_h = (q_h·k_jᵀ)·hd^-½
    memset(dkx, 0, sizeof(float) * BT * (size_t)H * hd);
    memset(dvx, 0, sizeof(float) * BT * (size_t)H * hd);
    bwd_task job = {q, k, v, P, dheads, dq, dkx, dvx, scratch, c, B, T};
    int      nth = MIN_I(MIN_I(k_threads(), B * H), SLOTS);
    if ((size_t)T * T * hd * B * H < 100000)
        nth = 1;
    molt_pool_run(nth > 1 ? nth : 1, bwd_heads, &job);
    if (grp > 1) {
        sum_groups(dk, dkx, BT, KV, grp, hd);
        sum_groups(dv, dvx, BT, KV, grp, hd);
    }

    // q = rope(q_lin), k = rope(k_lin):   d(q_lin) = rope⁻¹(dq)  (in place)
    for (int b = 0; b < B; b++) {
        rope_backward(dq + (size_t)b * T * H * hd, T, H, hd, cos, sin);
        rope_backward(dk + (size_t)b * T * KV * hd, T, KV, hd, cos, sin);
    }

    // q_lin = u·Wqᵀ + bq,  k_lin = u·Wkᵀ + bk,  v = u·Wvᵀ + bv:
    //   du = dq·Wq + dk·Wk + dv·Wv  (written by the first, += by the others)
    k_matmul_backward(du, g ? g->wq : NULL, g ? g->bq : NULL, dq, u, w->wq, B * T, d, H * hd, 0);
    k_matmul_backward(du, g ? g->wk : NULL, g ? g->bk : NULL, dk, u, w->wk, B * T, d, KV * hd, 1);
    k_matmul_backward(du, g ? g->wv : NULL, g ? g->bv : NULL, dv, u, w->wv, B * T, d, KV * hd, 1);
}
