/*
 * dense.c — CPU dense kernels: GEMM through OpenBLAS, norms and activations
 * as plain loops. See kernels.h for the contracts.
 */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

#include "core/core.h"
#include "core/pool.h"

#include <cblas.h>
#include <pthread.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

// Threading policy: molt's pool (core/pool.h) owns every thread; ex->nth says
// how many an op may use. OpenBLAS is kept single-threaded (set once, before
// the first op) and called from pool workers on disjoint output blocks, so
// small shapes never pay for waking BLAS threads and nothing oversubscribes.
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static void           blas_single(void) { openblas_set_num_threads(1); }

molt_exec molt_exec_cpu(int nth) {
    pthread_once(&g_blas_once, blas_single);
    return (molt_exec){&molt_backend_cpu, nth < 1 ? 1 : nth, NULL, 0};
}

molt_exec molt_exec_threads(const molt_exec *ex, int nth) {
    molt_exec e = *ex;
    e.nth = nth < 1 ? 1 : nth;
    return e;
}

int k_elementwise_threads(const molt_exec *ex, size_t n) {
    return n < K_ELEMENTWISE_MIN ? 1 : ex->nth;
}

void k_split(size_t n, int ith, int nth, size_t *lo, size_t *hi) {
    size_t per = ((n + (size_t)nth - 1) / (size_t)nth + 15) & ~(size_t)15;
    *lo = per * (size_t)ith < n ? per * (size_t)ith : n;
    *hi = *lo + per < n ? *lo + per : n;
}

// ----------------------------------------------------------------------------
// matmul

// one output block [o0, o1) of y[T,out] = x·Wᵀ (+beta·y)
static void gemm_block(float *y, const float *x, const float *W, int T, int in, int out, int o0,
                       int o1, float beta) {
    if (o1 <= o0)
        return;
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, in, 1.0f, W + (size_t)o0 * in, in, x, 1,
                    beta, y + o0, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, o1 - o0, in, 1.0f, x, in,
                    W + (size_t)o0 * in, in, beta, y + o0, out);
}

// Few rows of x (decode, small-batch decode): matvec.c's kernel streams W once
// per call, every element cpu_dot64's sum (so, unlike sgemv/sgemm, the same bits
// at any thread count and any T ≤ K_MATVEC_T: a batched decode row is its single
// decode, on every CPU — the twin where neither AVX-512 nor AVX2 runs); threads own
// blocks of 16 output features. MOLT_MATVEC=blas keeps OpenBLAS (before/after benchmarks).
static int            g_mv_isa = MV_SCALAR;
static pthread_once_t g_mv_once = PTHREAD_ONCE_INIT;
static void           mv_choose(void) {
    const char *e = getenv("MOLT_MATVEC");
    g_mv_isa = e && !strcmp(e, "blas") ? -1 : cpu_matvec_isa();
}
static int mv_isa(void) {
    pthread_once(&g_mv_once, mv_choose);
    return g_mv_isa;
}

typedef struct mv_task {
    float       *y;
    const float *x, *W;
    int          T, in, out, add, isa;
} mv_task;

static void mv_run(void *arg, int ith, int nth) {
    const mv_task *j = arg;
    int            per = ((j->out + nth - 1) / nth + 15) & ~15;
    int            o0 = MIN_INT(j->out, ith * per), o1 = MIN_INT(j->out, o0 + per);
    cpu_matvec(j->isa, j->y, j->out, j->x, j->W, j->T, j->in, o0, o1, j->add);
}

static void matvec_rows(const molt_exec *ex, float *y, const float *x, const float *W, int T,
                        int in, int out, int add) {
    mv_task job = {y, x, W, T, in, out, add, mv_isa()};
    int     nth = out < 32 * ex->nth ? 1 : ex->nth;
    if (nth <= 1)
        mv_run(&job, 0, 1);
    else
        molt_pool_run(nth, mv_run, &job);
}

typedef struct mm_task {
    float       *y;
    const float *x, *W;
    int          T, in, out;
    float        beta;
} mm_task;

// thread ith of nth computes output features [o0, o1), in multiples of 16
// (whole cache lines of y)
static void mm_run(void *arg, int ith, int nth) {
    const mm_task *j = arg;
    int per = ((j->out + nth - 1) / nth + 15) & ~15;
    int o0 = ith * per, o1 = MIN_INT(j->out, o0 + per);
    gemm_block(j->y, j->x, j->W, j->T, j->in, j->out, o0, o1, j->beta);
}

void cpu_matmul(const molt_exec *ex, float *y, const float *x, const float *W, const float *bias,
                int T, int in, int out, int accumulate) {
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
        if (!accumulate) {
            for (int t = 0; t < T; t++)
                memcpy(y + (size_t)t * out, bias, sizeof(float) * (size_t)out);
            beta = 1.0f;
        } else {
            for (int t = 0; t < T; t++)
                for (int o = 0; o < out; o++)
                    y[(size_t)t * out + o] += bias[o];
        }
    }
    if (T == 1 && (size_t)in * (size_t)out <= (1u << 15)) { // small: one thread, no BLAS call
        cpu_matvec(mv_isa() < 0 ? MV_SCALAR : mv_isa(), y, out, x, W, 1, in, 0, out,
                   beta != 0.0f);
        return;
    }
    if (T <= K_MATVEC_T && T >= 1 && mv_isa() >= 0) {
        matvec_rows(ex, y, x, W, T, in, out, beta != 0.0f);
        return;
    }
    double flops = 2.0 * T * (double)in * out;
    int nth = ex->nth;
    if (nth <= 1 || flops < 1e6 || out < 32 * nth) {
        gemm_block(y, x, W, T, in, out, 0, out, beta);
        return;
    }
    mm_task job = {y, x, W, T, in, out, beta};
    molt_pool_run(nth, mm_run, &job);
}

void k_matmul_ref(float *y, const float *x, const float *W, const float *bias, int T, int in,
                  int out, int accumulate) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = bias ? (double)bias[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += (double)x[(size_t)t * in + i] * (double)W[(size_t)o * in + i];
            float *dst = &y[(size_t)t * out + o];
            *dst = accumulate ? *dst + (float)s : (float)s;
        }
}

// ----------------------------------------------------------------------------
// norms and activations

// inference RMSNorm is the training forward without the saved 1/rms, so the
// two paths give bit-identical outputs by construction
void cpu_rmsnorm(const molt_exec *ex, float *y, const float *x, const float *w, int T, int d,
                 float eps) {
    cpu_rmsnorm_forward(ex, y, NULL, x, w, T, d, eps);
}

float k_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

K_SIMD static void swiglu_span(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++)
        gate[i] = k_silu(gate[i]) * up[i];
}

typedef struct swiglu_task {
    float       *gate;
    const float *up;
    size_t       n;
} swiglu_task;

static void swiglu_run(void *arg, int ith, int nth) {
    const swiglu_task *j = arg;
    size_t             lo, hi;
    k_split(j->n, ith, nth, &lo, &hi);
    swiglu_span(j->gate + lo, j->up + lo, hi - lo);
}

void cpu_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n) {
    swiglu_task job = {gate, up, n};
    molt_pool_run(k_elementwise_threads(ex, n), swiglu_run, &job);
}

// x = softmax(x·scale) in place, fp32: the max, then e^(x·scale − max) and
// their sum in one pass (8 partial sums), then the normalisation.
// max(x_i·s) = max(x_i)·s exactly for s > 0 (rounding is monotonic), so this
// equals scaling first and taking the softmax after, bit for bit.
K_SIMD void k_softmax_scaled(float *x, int n, float scale) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    m *= scale;
    float acc[8] = {0};
    int   j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) {
            float e = k_expf(x[j + k] * scale - m);
            x[j + k] = e;
            acc[k] += e;
        }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < n; j++) {
        x[j] = k_expf(x[j] * scale - m);
        s += x[j];
    }
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

void cpu_softmax(const molt_exec *ex, float *x, int n) { k_softmax_scaled(x, n, 1.0f); }

K_SIMD static void add_span(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}
// elements are independent: any split over threads gives the same bits
typedef struct add_task {
    float       *y;
    const float *a, *b;
    size_t       n;
} add_task;
static void add_run(void *arg, int ith, int nth) {
    add_task *t = arg;
    size_t    lo, hi;
    k_split(t->n, ith, nth, &lo, &hi);
    add_span(t->y + lo, t->a + lo, t->b + lo, hi - lo);
}
void cpu_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n) {
    add_task t = {y, a, b, n};
    int      nth = k_elementwise_threads(ex, n);
    if (nth <= 1)
        add_run(&t, 0, 1);
    else
        molt_pool_run(nth, add_run, &t);
}

// s = a + b, then y = rmsnorm(s)·w: the two ops in turn (the same bits)
void cpu_add_rmsnorm(const molt_exec *ex, float *s, float *y, float *rstd, const float *a,
                     const float *b, const float *w, int T, int d, float eps) {
    if (T <= 0)
        return;
    cpu_add(ex, s, a, b, (size_t)T * (size_t)d);
    cpu_rmsnorm_forward(ex, y, rstd, s, w, T, d, eps);
}

void cpu_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T,
                   int d) {
    for (int i = 0; i < T; i++)
        memcpy(x + (size_t)i * d, E + (size_t)ids[i] * d, sizeof(float) * (size_t)d);
}
