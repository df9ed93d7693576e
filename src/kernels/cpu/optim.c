/*
 * optim.c — the CPU optimizer ops (train_ops.h: k_sumsq, k_scale, k_adamw)
 * over spans of a buffer. scale and AdamW are elementwise: each thread takes
 * its 16-float-aligned slice of every span (k_split), so any thread count
 * gives the same bits. sumsq's blocks are fixed by the spans alone and split
 * over the threads whole.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/pool.h"

#include <math.h>
#include <stddef.h>

static size_t spans_total(const molt_span *span, int n_spans) {
    size_t n = 0;
    for (int i = 0; i < n_spans; i++)
        n += span[i].len;
    return n;
}

// ----------------------------------------------------------------------------
// sumsq: partial[b] = Σ x² over block b (double, 8 partial sums)

K_SIMD static double sumsq_block(const float *x, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[i + k] * (double)x[i + k];
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += (double)x[i] * (double)x[i];
    return s;
}

typedef struct sumsq_task {
    double          *partial;
    const float     *x;
    const molt_span *span;
    int              n_spans;
    size_t           nb;
} sumsq_task;

// thread ith: blocks [lo, hi) of the numbering span after span
static void sumsq_run(void *arg, int ith, int nth) {
    const sumsq_task *t = arg;
    size_t            lo = t->nb * (size_t)ith / (size_t)nth,
           hi = t->nb * (size_t)(ith + 1) / (size_t)nth, b = 0;
    for (int i = 0; i < t->n_spans && b < hi; i++) {
        size_t len = t->span[i].len, nbi = (len + K_SUMSQ_BLOCK - 1) / K_SUMSQ_BLOCK;
        for (size_t k = 0; k < nbi; k++, b++) {
            if (b < lo || b >= hi)
                continue;
            size_t o = k * K_SUMSQ_BLOCK, n = len - o < K_SUMSQ_BLOCK ? len - o : K_SUMSQ_BLOCK;
            t->partial[b] = sumsq_block(t->x + t->span[i].off + o, n);
        }
    }
}

void cpu_sumsq(const molt_exec *ex, double *partial, const float *x, const molt_span *span,
               int n_spans) {
    sumsq_task t = {partial, x, span, n_spans, k_sumsq_blocks(span, n_spans)};
    int        nth = k_elementwise_threads(ex, spans_total(span, n_spans));
    nth = (size_t)nth < t.nb ? nth : (int)t.nb;
    if (nth <= 1)
        sumsq_run(&t, 0, 1);
    else
        molt_pool_run(nth, sumsq_run, &t);
}

// ----------------------------------------------------------------------------
// scale: x *= k

K_SIMD static void scale_span(float *x, size_t n, float k) {
    for (size_t i = 0; i < n; i++)
        x[i] *= k;
}

typedef struct scale_task {
    float           *x;
    const molt_span *span;
    int              n_spans;
    float            k;
} scale_task;

static void scale_run(void *arg, int ith, int nth) {
    const scale_task *t = arg;
    for (int i = 0; i < t->n_spans; i++) {
        size_t lo, hi;
        k_split(t->span[i].len, ith, nth, &lo, &hi);
        scale_span(t->x + t->span[i].off + lo, hi - lo, t->k);
    }
}

void cpu_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans, float k) {
    scale_task t = {x, span, n_spans, k};
    molt_pool_run(k_elementwise_threads(ex, spans_total(span, n_spans)), scale_run, &t);
}

// ----------------------------------------------------------------------------
// AdamW, torch.optim.AdamW's single-tensor update in fp32

K_SIMD static void adamw_span(float *p, float *mm, float *vv, const float *g, size_t n, float b1,
                              float b2, float eps, float decay, float step_size, float bc2_sqrt) {
    for (size_t k = 0; k < n; k++) {
        p[k] *= decay;
        mm[k] = mm[k] * b1 + (1.0f - b1) * g[k];
        vv[k] = vv[k] * b2 + (1.0f - b2) * g[k] * g[k];
        float denom = sqrtf(vv[k]) / bc2_sqrt + eps;
        p[k] -= step_size * (mm[k] / denom);
    }
}

typedef struct adamw_task {
    float           *p, *m, *v;
    const float     *g;
    const molt_span *span;
    int              n_spans;
    adamw_hyper      h;
} adamw_task;

// thread ith updates its slice of every span
static void adamw_run(void *arg, int ith, int nth) {
    const adamw_task *t = arg;
    for (int i = 0; i < t->n_spans; i++) {
        size_t lo, hi;
        k_split(t->span[i].len, ith, nth, &lo, &hi);
        size_t o = t->span[i].off + lo;
        adamw_span(t->p + o, t->m + o, t->v + o, t->g + o, hi - lo, t->h.b1, t->h.b2, t->h.eps,
                   t->h.decay, t->h.step_size, t->h.bc2_sqrt);
    }
}

void cpu_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
               const molt_span *span, int n_spans, adamw_hyper h) {
    adamw_task t = {p, m, v, g, span, n_spans, h};
    molt_pool_run(k_elementwise_threads(ex, spans_total(span, n_spans)), adamw_run, &t);
}
