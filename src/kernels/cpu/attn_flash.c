/*
 * attn_flash.c — CPU twin of the flash-style training attention
 * (kernels/attn.h: k_attn_flash_forward / k_attn_flash_backward): what the
 * GPU kernels compute, written plainly so they can be tested op by op. The
 * CPU trains with the P-saving ops (attn.c, BLAS); these run in the tests.
 *
 * Forward, per (b, h) and query row t over keys s ≤ t (hd^-½ after the dot
 * product, HF's order):
 *     S_s = (q_t·k_s)·hd^-½ ,  m = max S ,  l = Σ exp(S_s − m) (double)
 *     heads_t = Σ_s (exp(S_s − m)/l)·v_s ,  lse_t = m + log l
 * Backward recomputes P_s = exp(S_s − lse_t) and uses D_t = dO_t·O_t
 * (= Σ_s P_s·dP_s):
 *     dP_s = dO_t·v_s ,  dS_s = P_s·(dP_s − D_t)
 *     dq_t = hd^-½·Σ_s dS_s·k_s ,  dk_s += hd^-½·dS_s·q_t ,  dv_s += P_s·dO_t
 * One (b, h) per pool task; grp > 1: per query head dk/dv in work, summed
 * over the group afterwards in head order (thread-count independent).
 */
#include "kernels/attn.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/core.h"
#include "core/pool.h"

#include <math.h>
#include <string.h>

size_t k_attn_flash_backward_work(int B, int T, int H, int KV, int hd) {
    size_t BT = (size_t)B * T;
    return (H != KV ? 2 * BT * (size_t)H * hd : 0) + (size_t)B * H * T;
}

static float dotf(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

typedef struct flash_job {
    float       *heads, *lse, *dqkv, *dkx, *dvx, *Dt; // lse: the forward's output
    const float *qkv, *dheads, *out, *lse_in;         // lse_in: the backward's input
    int          ld, ldkx, B, T, H, KV, hd;
} flash_job;

#define FLASH_HD_MAX 512 // head dims the CPU twin takes (the forward's row accumulator)

static void fwd_task(void *arg, int ith, int nth) {
    const flash_job *j = arg;
    int   H = j->H, KV = j->KV, hd = j->hd, T = j->T, ld = j->ld, ldo = H * hd;
    float scale = 1.0f / sqrtf((float)hd), acc[FLASH_HD_MAX];
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / (H / KV);
        const float *row0 = j->qkv + (size_t)b * T * ld;
        const float *K = row0 + (size_t)H * hd + (size_t)kv * hd, *V = K + (size_t)KV * hd;
        for (int t = 0; t < T; t++) {
            const float *q = row0 + (size_t)t * ld + (size_t)h * hd;
            float        m = -INFINITY;
            for (int s = 0; s <= t; s++) {
                float sc = dotf(q, K + (size_t)s * ld, hd) * scale;
                m = sc > m ? sc : m;
            }
            double l = 0.0;
            memset(acc, 0, sizeof(float) * (size_t)hd);
            for (int s = 0; s <= t; s++) {
                float e = expf(dotf(q, K + (size_t)s * ld, hd) * scale - m);
                l += (double)e;
                for (int i = 0; i < hd; i++)
                    acc[i] += e * V[(size_t)s * ld + i];
            }
            float  inv = (float)(1.0 / l);
            float *o = j->heads + ((size_t)b * T + t) * ldo + (size_t)h * hd;
            for (int i = 0; i < hd; i++)
                o[i] = acc[i] * inv;
            j->lse[((size_t)b * H + h) * T + t] = m + (float)log(l);
        }
    }
}

void cpu_attn_flash_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv,
                            int ld, int B, int T, int H, int KV, int hd) {
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    MOLT_ASSERT(hd <= FLASH_HD_MAX);
    int       nth = ex->nth < B * H ? ex->nth : B * H;
    flash_job j = {.heads = heads, .lse = lse, .qkv = qkv, .ld = ld, .B = B, .T = T, .H = H,
                   .KV = KV, .hd = hd};
    molt_pool_run(nth > 1 ? nth : 1, fwd_task, &j);
}

static void bwd_task(void *arg, int ith, int nth) {
    const flash_job *j = arg;
    int   H = j->H, KV = j->KV, hd = j->hd, T = j->T, ld = j->ld, ldo = H * hd, grp = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / grp;
        const float *row0 = j->qkv + (size_t)b * T * ld;
        const float *K = row0 + (size_t)H * hd + (size_t)kv * hd, *V = K + (size_t)KV * hd;
        const float *lse = j->lse_in + (size_t)task * T, *Dt = j->Dt + (size_t)task * T;
        size_t       cx = (size_t)(grp > 1 ? h : H + kv) * hd; // dk column in its buffer
        float       *dK = j->dkx + (size_t)b * T * j->ldkx + cx;
        float       *dV = j->dvx + (size_t)b * T * j->ldkx + cx + (grp > 1 ? 0 : (size_t)KV * hd);
        for (int s = 0; s < T; s++) {
            memset(dK + (size_t)s * j->ldkx, 0, sizeof(float) * (size_t)hd);
            memset(dV + (size_t)s * j->ldkx, 0, sizeof(float) * (size_t)hd);
        }
        for (int t = 0; t < T; t++) {
            const float *q = row0 + (size_t)t * ld + (size_t)h * hd;
            const float *dO = j->dheads + ((size_t)b * T + t) * ldo + (size_t)h * hd;
            float       *dq = j->dqkv + ((size_t)b * T + t) * ld + (size_t)h * hd;
            memset(dq, 0, sizeof(float) * (size_t)hd);
            for (int s = 0; s <= t; s++) {
                float p = expf(dotf(q, K + (size_t)s * ld, hd) * scale - lse[t]);
                float ds = p * (dotf(dO, V + (size_t)s * ld, hd) - Dt[t]) * scale;
                float *dk = dK + (size_t)s * j->ldkx, *dv = dV + (size_t)s * j->ldkx;
                for (int i = 0; i < hd; i++) {
                    dq[i] += ds * K[(size_t)s * ld + i];
                    dk[i] += ds * q[i];
                    dv[i] += p * dO[i];
                }
            }
        }
    }
}

// D_t = dO_t·O_t for every (b, h, t), one (b, h) per task
static void dt_task(void *arg, int ith, int nth) {
    const flash_job *j = arg;
    int H = j->H, hd = j->hd, T = j->T;
    for (int task = ith; task < j->B * H; task += nth) {
        int b = task / H, h = task % H;
        for (int t = 0; t < T; t++) {
            size_t o = ((size_t)b * T + t) * H * hd + (size_t)h * hd;
            j->Dt[(size_t)task * T + t] = dotf(j->dheads + o, j->out + o, hd);
        }
    }
}

void cpu_attn_flash_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                             const float *qkv, const float *heads, const float *lse, int B, int T,
                             int H, int KV, int hd, float *work) {
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    int    grp = H / KV, W = (H + 2 * KV) * hd, nth = ex->nth < B * H ? ex->nth : B * H;
    size_t BT = (size_t)B * T, xs = grp > 1 ? BT * (size_t)H * hd : 0;
    flash_job j = {.dqkv = dqkv, .lse_in = lse, .qkv = qkv, .dheads = dheads,
                   .out = heads, .ld = W, .B = B, .T = T, .H = H, .KV = KV, .hd = hd};
    j.Dt = work + 2 * xs;
    j.dkx = grp > 1 ? work : dqkv, j.dvx = grp > 1 ? work + xs : dqkv;
    j.ldkx = grp > 1 ? H * hd : W;
    nth = nth > 1 ? nth : 1;
    molt_pool_run(nth, dt_task, &j);
    molt_pool_run(nth, bwd_task, &j);
    if (grp == 1)
        return;
    for (size_t t = 0; t < BT; t++) // dk, dv of kv head c: Σ over its group, in head order
        for (int c = 0; c < KV; c++)
            for (int x = 0; x < 2; x++) {
                float       *o = dqkv + t * (size_t)W + (size_t)(H + x * KV + c) * hd;
                const float *src = (x ? j.dvx : j.dkx) + (t * H + (size_t)c * grp) * hd;
                memcpy(o, src, sizeof(float) * (size_t)hd);
                for (int g = 1; g < grp; g++)
                    for (int i = 0; i < hd; i++)
                        o[i] += src[(size_t)g * hd + i];
            }
}
