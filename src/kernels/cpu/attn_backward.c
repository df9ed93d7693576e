/*
 * attn_backward.c — CPU backward of the training attention core
 * (kernels/attn.h: k_attn_train_backward), the forward run in reverse:
 *     heads_h = P_h · v_j ,   P_h = softmax_causal(S_h) ,   S_h = (q_h · k_jᵀ)·hd^-½
 * Heads on the pool, one (b, h) per task, the query rows in blocks of RB so
 * only keys 0..t1-1 are visited (causal: about half the work of the full
 * T×T) and the scratch is RB×T per thread. Shared kv heads (grp > 1) get
 * per-query-head gradients that are summed over their group afterwards
 * (repeat_interleave backward), so tasks never write the same floats and the
 * result does not depend on the thread count.
 *
 * work: when grp > 1, dkx and dvx [B·T, H·hd] (per query head); then
 * min(B·H, ATTN_SLOTS) blocks of [RB, T].
 */
#include "kernels/attn.h"
#include "kernels/cpu/attn_util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/pool.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define MIN_I(a, b) ((a) < (b) ? (a) : (b))

size_t k_attn_train_backward_work(int B, int T, int H, int KV, int hd) {
    size_t BT = (size_t)B * T, n = 0;
    if (H != KV)
        n += 2 * BT * (size_t)H * hd;
    return n + (size_t)MIN_I(B * H, ATTN_SLOTS) * (size_t)attn_rb(T) * (size_t)T;
}

typedef struct bwd_task {
    const float *q, *k, *v, *P, *dheads; // q, k, v: columns of qkv (row stride ld)
    float       *dq, *dkx, *dvx, *scratch; // dq: columns of dqkv (ld); dkx/dvx: see ldkx
    int          ld, ldkx;                 // ldkx: ld when grp = 1 (dk, dv in dqkv), else H·hd
    int          B, T, H, KV, hd;
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
    int   H = j->H, KV = j->KV, hd = j->hd, grp = H / KV, T = j->T, RB = attn_rb(T);
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

void cpu_attn_train_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                             const float *qkv, const float *P, int B, int T, int H, int KV,
                             int hd, float *work) {
    int    grp = H / KV, W = (H + 2 * KV) * hd, ldkx = W;
    size_t BT = (size_t)B * T;
    if (BT == 0)
        return;
    float *dk = dqkv + (size_t)H * hd, *dv = dk + (size_t)KV * hd;
    float *dkx = dk, *dvx = dv, *scratch = work; // [slots, RB, T]
    if (grp > 1) {
        dkx = work;
        dvx = dkx + BT * H * hd;
        scratch = dvx + BT * H * hd;
        ldkx = H * hd;
        memset(dkx, 0, sizeof(float) * BT * (size_t)H * hd);
        memset(dvx, 0, sizeof(float) * BT * (size_t)H * hd);
    } else {
        memset(dqkv, 0, sizeof(float) * BT * (size_t)W); // dk, dv accumulate in place
    }
    bwd_task job = {qkv,     qkv + (size_t)H * hd, qkv + (size_t)(H + KV) * hd, P, dheads, dqkv,
                    dkx,     dvx, scratch, W, ldkx, B, T, H, KV, hd};
    int      nth = MIN_I(MIN_I(ex->nth, B * H), ATTN_SLOTS);
    if ((size_t)T * T * hd * B * H < 100000)
        nth = 1;
    molt_pool_run(nth > 1 ? nth : 1, bwd_heads, &job);
    if (grp > 1) {
        sum_groups(dk, W, dkx, BT, KV, grp, hd);
        sum_groups(dv, W, dvx, BT, KV, grp, hd);
    }
}
