/*
 * ssm_bf16.c — CPU ops of the bf16 recurrent SSM state (ssm_rows.h,
 * kernels.h: MOLT_BACKEND_STATE_BF16_OPS): the batched-decode scan step on
 * bf16 state and the widen / narrow copies a prefill uses around the f32
 * chunked scan.
 *
 * ssd_step_rows_bf16: per (row, head), s = exp(dA)·widen(state) + X ⊗ B in
 * f32, state = bf16(s) (round to nearest even), y = Σ_n s·C with k_dotf's
 * eight partial sums in its order: y and the stored state are ssd_step's on
 * the widened state, rounded. Threads: (row, head) pairs split in contiguous
 * ranges; one writer per output and a fixed order, so the thread count
 * changes no bit.
 */
#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ssm_util.h"
#include "kernels/kernels.h"
#include "kernels/ssm_rows.h"

#include <string.h>

static inline float widen(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float    f;
    memcpy(&f, &x, sizeof f);
    return f;
}

// molt_f32_to_bf16, inline: round to nearest even, NaN kept quiet
static inline uint16_t narrow(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7FFFu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

typedef struct step16_task {
    float          *y;
    uint16_t *const *state;
    const float    *X, *dA, *B, *C;
    int             n, H, P, N, G;
} step16_task;

static void step16_run(void *arg, int ith, int nth) {
    const step16_task *j = arg;
    int                H = j->H, P = j->P, N = j->N, G = j->G, hpg = H / G, N8 = N & ~7, lo, hi;
    size_t             PN = (size_t)P * N;
    molt_pool_range(j->n * H, ith, nth, &lo, &hi);
    for (int it = lo; it < hi; it++) {
        int          r = it / H, h = it % H, g = h / hpg;
        const float *Bg = j->B + ((size_t)r * G + g) * N, *Cg = j->C + ((size_t)r * G + g) * N;
        const float *Xr = j->X + ((size_t)r * H + h) * P;
        float       *yr = j->y + ((size_t)r * H + h) * P;
        float        a = decay(j->dA[(size_t)r * H + h]);
        for (int p = 0; p < P; p++) {
            uint16_t *sp = j->state[r] + (size_t)h * PN + (size_t)p * N;
            float     xv = Xr[p], acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            for (int i = 0; i < N8; i += 8)
                for (int k = 0; k < 8; k++) {
                    float s = a * widen(sp[i + k]) + xv * Bg[i + k];
                    sp[i + k] = narrow(s);
                    acc[k] += s * Cg[i + k];
                }
            float y = ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
                      ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (int i = N8; i < N; i++) {
                float s = a * widen(sp[i]) + xv * Bg[i];
                sp[i] = narrow(s);
                y += s * Cg[i];
            }
            yr[p] = y;
        }
    }
}

void cpu_ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state, const float *X,
                            const float *dA, const float *B, const float *C, int n, int H, int P,
                            int N, int G) {
    if (n <= 0 || H <= 0)
        return;
    step16_task j = {y, state, X, dA, B, C, n, H, P, N, G};
    size_t      cost = (size_t)n * (size_t)H * (size_t)P * (size_t)N;
    molt_pool_run(cost < 32768 || n * H < 2 ? 1 : ex->nth, step16_run, &j);
}

typedef struct cvt16_task {
    float          *f;
    uint16_t       *h;
    const float    *fs;
    const uint16_t *hs;
    size_t          n;
} cvt16_task;

static void cvt16_run(void *arg, int ith, int nth) {
    const cvt16_task *j = arg;
    size_t            per = (j->n + (size_t)nth - 1) / (size_t)nth, lo = per * (size_t)ith;
    size_t            hi = lo + per < j->n ? lo + per : j->n;
    for (size_t i = lo; i < hi; i++) {
        if (j->f)
            j->f[i] = widen(j->hs[i]);
        else
            j->h[i] = narrow(j->fs[i]);
    }
}

static void cvt16(const molt_exec *ex, cvt16_task *j) {
    if (j->n)
        molt_pool_run(j->n < 65536 ? 1 : ex->nth, cvt16_run, j);
}

void cpu_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n) {
    cvt16_task j = {dst, NULL, NULL, src, n};
    cvt16(ex, &j);
}

void cpu_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n) {
    cvt16_task j = {NULL, dst, src, NULL, n};
    cvt16(ex, &j);
}
