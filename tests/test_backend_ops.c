/*
 * test_backend_ops.c — every op of the backend table (kernels.h:
 * MOLT_BACKEND_OPS) on every compiled backend, against a plain
 * double-precision reference written here straight from the equations
 * (kernels.h, backward.h, ssm.h, attn.h, mamba3.h; shared/docs/ALGORITHMS.md
 * §1.2–1.4 for the SSM ones, §8 for Mamba-3's), over a sweep of shapes: tiny,
 * odd, not multiples of 16/64, across the kernels' threading and chunking
 * thresholds, zero length where the contract allows it.
 *
 * Error measure: max_i |got_i − ref_i| / (1 + |ref_i|) over every output of
 * the op (absolute for small values, relative for large ones), held to a
 * tolerance per op (the tol column of the summary: 2e-6 for the elementwise
 * ops, up to 5e-5 where fp32 sums run over ~1000 terms — matmul, the scan
 * backward — a few times the worst error the CPU shows). Outputs that the op
 * writes (=) start as NaN, so a value left unwritten fails; outputs it
 * accumulates into (+=) start from random values.
 *
 * Threads: every case runs with 1, 2, 3 and 4 threads. Where the kernel
 * promises results independent of the thread count (elementwise and row-wise
 * ops, the RMSNorm dw and embedding column sums, every SSM kernel and
 * backward, every attention op, the SSM row ops, and matmul_backward, whose
 * sgemm blocks are fixed) the outputs must be bit-identical to the 1-thread
 * run; the forward BLAS op (matmul) promises no such thing and is held to the
 * reference only (the summary says whether it happened to agree).
 *
 * The training ops' double outputs (per-row losses, sumsq's block sums) are
 * held to the 1-thread run's bits as well.
 *
 * The backward references are themselves checked against central
 * differences of the forward references (double precision) on small shapes.
 * Also: molt_exec_init refuses a table with any single op missing, and each
 * public entry point calls its own slot of ex->be.
 */
#include "core/dtype.h"
#include "kernels/attn.h"
#include "kernels/backward.h"
#include "kernels/gateloop.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"
#include "kernels/mamba3.h"
#include "kernels/ssm.h"
#include "kernels/ssm_rows.h"
#include "kernels/train_ops.h"
#include "infer/sample.h"
#include "testutil.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// The backends under test: CPU, and every other table compiled in. A backend
// whose ops need device memory is expected to be tested through host-visible
// (managed) buffers.
static const molt_backend *const BACKENDS[] = {
    &molt_backend_cpu,
};
#define N_BACKENDS (int)(sizeof(BACKENDS) / sizeof(BACKENDS[0]))
#define MAX_THREADS 4

// ----------------------------------------------------------------------------
// harness

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static float  *fbuf(size_t n) { return xmalloc(sizeof(float) * n); }
static double *dbuf(size_t n) {
    double *p = xmalloc(sizeof(double) * n);
    memset(p, 0, sizeof(double) * n);
    return p;
}
static float *frand(size_t n, float lo, float hi) {
    float *p = fbuf(n);
    t_fill_uniform(p, n, lo, hi);
    return p;
}
static double *dcopy(const float *x, size_t n) {
    double *d = dbuf(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x ? (double)x[i] : 0.0;
    return d;
}
static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}
static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

typedef struct op_stat {
    const char *op;
    double      tol;
    int         promised; // bit-identical for any thread count
    int         cases;
    size_t      biggest; // outputs of the largest case
    char        shape[48];
    double      worst;
    int         thread_diff; // some thread count gave different bits
    int         failed;
} op_stat;

#define N_OPS MOLT_BACKEND_NOPS
static op_stat g_stat[N_OPS + 8];
static int     g_nstat;

static op_stat *stat_new(const char *op, double tol, int promised) {
    op_stat *s = &g_stat[g_nstat++];
    memset(s, 0, sizeof *s);
    s->op = op;
    s->tol = tol;
    s->promised = promised;
    return s;
}

static double err_max(const float *got, const double *ref, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]) / (1.0 + fabs(ref[i]));
        if (!(d <= e)) // NaN counts as infinitely wrong
            e = d == d ? d : (double)INFINITY;
    }
    return e;
}

// runs the op of case c into out[nout] on exec ex
typedef void (*run_fn)(const molt_exec *ex, void *c, float *out);

// One case of one op: every backend, 1..MAX_THREADS threads, against ref.
static void run_case(op_stat *st, run_fn run, void *c, const double *ref, size_t nout,
                     const char *shape) {
    float *out = fbuf(nout), *base = fbuf(nout);
    st->cases++;
    if (nout >= st->biggest) {
        st->biggest = nout;
        snprintf(st->shape, sizeof st->shape, "%s", shape);
    }
    for (int b = 0; b < N_BACKENDS; b++)
        for (int nth = 1; nth <= MAX_THREADS; nth++) {
            molt_exec ex;
            if (!molt_exec_init(&ex, BACKENDS[b], nth)) {
                CHECK(0, "backend %s refused", BACKENDS[b]->name);
                continue;
            }
            fill_nan(out, nout);
            run(&ex, c, out);
            double e = err_max(out, ref, nout);
            if (!(e <= st->worst))
                st->worst = e == e ? e : (double)INFINITY;
            int ok = e <= st->tol;
            CHECK(e <= st->tol, "%s [%s] on %s, %d threads: error %.3g > %.3g", st->op, shape,
                  BACKENDS[b]->name, nth, e, st->tol);
            if (nth == 1)
                memcpy(base, out, sizeof(float) * nout);
            else if (memcmp(base, out, sizeof(float) * nout) != 0) {
                st->thread_diff = 1;
                if (st->promised) {
                    ok = 0;
                    CHECK(!st->promised,
                          "%s [%s] on %s: %d threads differ from 1 thread (promised identical)",
                          st->op, shape, BACKENDS[b]->name, nth);
                }
            }
            st->failed |= !ok;
        }
    free(out);
    free(base);
}

// Directional derivative check of a backward reference: (L(θ+hv) − L(θ−hv)) / 2h
// against Σ grad·v, L = Σ dy·f(θ); lm/lp are L at θ−hv and θ+hv.
static void check_fd(const char *what, double lm, double lp, double h, double gv) {
    double fd = (lp - lm) / (2 * h);
    double rel = fabs(fd - gv) / (1e-12 + fabs(fd) + fabs(gv));
    CHECK(rel <= 1e-6, "%s reference gradient vs central differences: %.12g vs %.12g (rel %.3g)",
          what, gv, fd, rel);
}

static double dotd(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}
// x ± h·v into dst
static void shift(double *dst, const double *x, const double *v, double h, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = x[i] + h * v[i];
}
static double *drand(size_t n) {
    double *d = dbuf(n);
    for (size_t i = 0; i < n; i++)
        d[i] = (double)t_uniform(-1.0f, 1.0f);
    return d;
}

// ----------------------------------------------------------------------------
// matmul:  y[T,out] = (accumulate ? y : 0) + x[T,in]·W[out,in]ᵀ + bias[out]

static void ref_matmul(double *y, const double *x, const double *W, const double *bias, int T,
                       int in, int out) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += x[(size_t)t * in + i] * W[(size_t)o * in + i];
            y[(size_t)t * out + o] += s;
        }
}

typedef struct mm_case {
    float *x, *W, *bias, *y0;
    int    T, in, out, acc;
} mm_case;

static void run_matmul(const molt_exec *ex, void *cv, float *out) {
    mm_case *c = cv;
    if (c->acc)
        memcpy(out, c->y0, sizeof(float) * (size_t)c->T * c->out);
    k_matmul(ex, out, c->x, c->W, c->bias, c->T, c->in, c->out, c->acc);
}

static const int MM_SHAPES[][3] = {
    {0, 8, 8},     {1, 1, 1},      {1, 7, 5},     {1, 33, 17},     {1, 128, 256}, {1, 129, 256},
    {1, 300, 520}, {1, 1024, 1024}, {2, 3, 4},    {3, 17, 33},     {5, 64, 64},   {17, 129, 65},
    {40, 96, 100}, {7, 1000, 48},  {64, 200, 257}, {33, 96, 1000},
};
#define N_MM (int)(sizeof(MM_SHAPES) / sizeof(MM_SHAPES[0]))

static void test_matmul(void) {
    op_stat *st = stat_new("matmul", 5e-5, 0);
    for (int k = 0; k < N_MM; k++)
        for (int v = 0; v < 4; v++) { // bias × accumulate
            int    T = MM_SHAPES[k][0], in = MM_SHAPES[k][1], out = MM_SHAPES[k][2];
            size_t ny = (size_t)T * out;
            mm_case c = {frand((size_t)T * in, -1, 1), frand((size_t)out * in, -1, 1),
                         v & 1 ? frand((size_t)out, -1, 1) : NULL, frand(ny, -1, 1), T, in, out,
                         v >> 1};
            double *x = dcopy(c.x, (size_t)T * in), *W = dcopy(c.W, (size_t)out * in);
            double *b = c.bias ? dcopy(c.bias, (size_t)out) : NULL;
            double *ref = c.acc ? dcopy(c.y0, ny) : dbuf(ny);
            ref_matmul(ref, x, W, b, T, in, out);
            char shape[48];
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d%s%s", T, in, out, c.bias ? " +b" : "",
                     c.acc ? " +=" : "");
            run_case(st, run_matmul, &c, ref, ny, shape);
            free(x), free(W), free(b), free(ref);
            free(c.x), free(c.W), free(c.bias), free(c.y0);
        }
}

// ----------------------------------------------------------------------------
// typed matmul: y = x·Wᵀ with W in bf16 / f16 (the reference widens each
// weight exactly and sums in double); f32 W must give k_matmul's bits

typedef struct mmw_case {
    float   *x, *bias, *y0;
    uint16_t *W;
    molt_dtype dt;
    int      T, in, out, acc;
} mmw_case;

static void run_matmul_w(const molt_exec *ex, void *cv, float *out) {
    mmw_case *c = cv;
    if (c->acc)
        memcpy(out, c->y0, sizeof(float) * (size_t)c->T * c->out);
    molt_w W = {c->dt, c->W};
    k_matmul_w(ex, out, c->x, W, c->bias, c->T, c->in, c->out, c->acc);
}

static void test_matmul_w(void) {
    op_stat  *st = stat_new("matmul_w (bf16, f16)", 5e-5, 1);
    const int extra[][3] = {{1, 513, 33}, {9, 1100, 40}, {8, 2048, 130}, {3, 4096, 16}};
    for (int k = 0; k < N_MM + 4; k++)
        for (int v = 0; v < 8; v++) { // bias × accumulate × dtype
            const int *s = k < N_MM ? MM_SHAPES[k] : extra[k - N_MM];
            int        T = s[0], in = s[1], out = s[2];
            size_t     ny = (size_t)T * out, nw = (size_t)out * in;
            mmw_case   c = {frand((size_t)T * in, -1, 1), v & 1 ? frand((size_t)out, -1, 1) : NULL,
                            frand(ny, -1, 1), xmalloc(2 * nw), v & 4 ? MOLT_F16 : MOLT_BF16,
                            T, in, out, (v >> 1) & 1};
            float *Wf = frand(nw, -1, 1);
            for (size_t i = 0; i < nw; i++)
                c.W[i] = c.dt == MOLT_BF16 ? molt_f32_to_bf16(Wf[i]) : molt_f32_to_f16(Wf[i]);
            double *ref = dbuf(ny);
            for (int t = 0; t < T; t++)
                for (int o = 0; o < out; o++) {
                    double a = c.bias ? (double)c.bias[o] : 0.0;
                    for (int i = 0; i < in; i++) {
                        uint16_t h = c.W[(size_t)o * in + i];
                        double   w = c.dt == MOLT_BF16 ? molt_bf16_to_f32(h) : molt_f16_to_f32(h);
                        a += (double)c.x[(size_t)t * in + i] * w;
                    }
                    ref[(size_t)t * out + o] = (c.acc ? (double)c.y0[(size_t)t * out + o] : 0.0) + a;
                }
            char shape[48];
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d %s%s%s", T, in, out,
                     molt_dtype_name(c.dt), c.bias ? " +b" : "", c.acc ? " +=" : "");
            run_case(st, run_matmul_w, &c, ref, ny, shape);
            // the reference twin agrees with the same sums
            float *yr = fbuf(ny ? ny : 1);
            if (c.acc)
                memcpy(yr, c.y0, sizeof(float) * ny);
            k_matmul_w_ref(yr, c.x, (molt_w){c.dt, c.W}, c.bias, T, in, out, c.acc);
            CHECK(err_max(yr, ref, ny) <= 1e-6, "k_matmul_w_ref %s", shape);
            // f32 weights: exactly k_matmul
            if (v < 4) {
                float    *a = fbuf(ny ? ny : 1), *b = fbuf(ny ? ny : 1);
                molt_exec ex = molt_exec_cpu(2);
                memcpy(a, c.y0, sizeof(float) * ny), memcpy(b, c.y0, sizeof(float) * ny);
                k_matmul(&ex, a, c.x, Wf, c.bias, T, in, out, c.acc);
                k_matmul_w(&ex, b, c.x, molt_w_f32(Wf), c.bias, T, in, out, c.acc);
                CHECK(ny == 0 || memcmp(a, b, sizeof(float) * ny) == 0, "f32 matmul_w != matmul %s",
                      shape);
                free(a), free(b);
            }
            free(yr), free(ref), free(Wf);
            free(c.x), free(c.bias), free(c.y0), free(c.W);
        }
}

// ----------------------------------------------------------------------------
// matmul backward:  dx = dy·W (=, or += when accumulate_dx),
//                   dW += dyᵀ·x,  db += Σ_t dy[t]

typedef struct mmb_case {
    float *dy, *x, *W, *dx0, *dW0, *db0;
    int    T, in, out, acc, want; // want: bit 0 dx, 1 dW, 2 db
} mmb_case;

static size_t mmb_nout(const mmb_case *c) {
    return (c->want & 1 ? (size_t)c->T * c->in : 0) + (c->want & 2 ? (size_t)c->out * c->in : 0) +
           (c->want & 4 ? (size_t)c->out : 0);
}

static void run_matmul_backward(const molt_exec *ex, void *cv, float *out) {
    mmb_case *c = cv;
    float    *dx = NULL, *dW = NULL, *db = NULL, *p = out;
    if (c->want & 1) {
        dx = p;
        if (c->acc)
            memcpy(dx, c->dx0, sizeof(float) * (size_t)c->T * c->in);
        p += (size_t)c->T * c->in;
    }
    if (c->want & 2) {
        dW = p;
        memcpy(dW, c->dW0, sizeof(float) * (size_t)c->out * c->in);
        p += (size_t)c->out * c->in;
    }
    if (c->want & 4) {
        db = p;
        memcpy(db, c->db0, sizeof(float) * (size_t)c->out);
    }
    k_matmul_backward(ex, dx, dW, db, c->dy, c->x, c->W, c->T, c->in, c->out, c->acc);
}

static void test_matmul_backward(void) {
    op_stat  *st = stat_new("matmul_backward", 5e-5, 1);
    const int variants[][2] = {{7, 0}, {7, 1}, {1, 0}, {2, 0}, {4, 0}, {5, 1}}; // want, acc
    for (int k = 0; k < N_MM; k++)
        for (int v = 0; v < 6; v++) {
            int T = MM_SHAPES[k][0], in = MM_SHAPES[k][1], out = MM_SHAPES[k][2];
            if (in * out > 200000 && v > 1)
                continue; // the big shapes once with and once without accumulate
            mmb_case c = {frand((size_t)T * out, -1, 1),
                          frand((size_t)T * in, -1, 1),
                          frand((size_t)out * in, -1, 1),
                          frand((size_t)T * in, -1, 1),
                          frand((size_t)out * in, -1, 1),
                          frand((size_t)out, -1, 1),
                          T,
                          in,
                          out,
                          variants[v][1],
                          variants[v][0]};
            size_t  n = mmb_nout(&c);
            double *ref = dbuf(n), *r = ref;
            if (c.want & 1) {
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < in; i++) {
                        double s = c.acc ? (double)c.dx0[(size_t)t * in + i] : 0.0;
                        for (int o = 0; o < out; o++)
                            s += (double)c.dy[(size_t)t * out + o] * (double)c.W[(size_t)o * in + i];
                        r[(size_t)t * in + i] = s;
                    }
                r += (size_t)T * in;
            }
            if (c.want & 2) {
                for (int o = 0; o < out; o++)
                    for (int i = 0; i < in; i++) {
                        double s = c.dW0[(size_t)o * in + i];
                        for (int t = 0; t < T; t++)
                            s += (double)c.dy[(size_t)t * out + o] * (double)c.x[(size_t)t * in + i];
                        r[(size_t)o * in + i] = s;
                    }
                r += (size_t)out * in;
            }
            if (c.want & 4)
                for (int o = 0; o < out; o++) {
                    double s = c.db0[o];
                    for (int t = 0; t < T; t++)
                        s += (double)c.dy[(size_t)t * out + o];
                    r[o] = s;
                }
            char shape[48];
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d %s%s%s%s", T, in, out,
                     c.want & 1 ? "dx" : "", c.want & 2 ? "dW" : "", c.want & 4 ? "db" : "",
                     c.acc ? " +=" : "");
            run_case(st, run_matmul_backward, &c, ref, n, shape);
            free(ref);
            free(c.dy), free(c.x), free(c.W), free(c.dx0), free(c.dW0), free(c.db0);
        }
}

// ----------------------------------------------------------------------------
// RMSNorm:  y[t,i] = x[t,i]·r_t·w[i],  r_t = 1/sqrt(Σ_i x[t,i]²/d + eps)
// backward (dx +=, dw +=):
//   dx_i += r·dy_i·w_i − x_i·r³/d·Σ_j dy_j·w_j·x_j,   dw_i += Σ_t dy_i·x_i·r

#define RMS_EPS 1e-5f

static void ref_rmsnorm(double *y, double *rstd, const double *x, const double *w, int T, int d) {
    for (int t = 0; t < T; t++) {
        const double *xt = x + (size_t)t * d;
        double        ss = 0;
        for (int i = 0; i < d; i++)
            ss += xt[i] * xt[i];
        double r = 1.0 / sqrt(ss / d + (double)RMS_EPS);
        for (int i = 0; i < d; i++)
            y[(size_t)t * d + i] = xt[i] * r * w[i];
        if (rstd)
            rstd[t] = r;
    }
}

static void ref_rmsnorm_backward(double *dx, double *dw, const double *dy, const double *x,
                                 const double *w, const double *r, int T, int d) {
    for (int t = 0; t < T; t++) {
        const double *xt = x + (size_t)t * d, *gt = dy + (size_t)t * d;
        double        dot = 0;
        for (int j = 0; j < d; j++)
            dot += gt[j] * w[j] * xt[j];
        for (int i = 0; i < d; i++) {
            if (dx)
                dx[(size_t)t * d + i] +=
                    r[t] * gt[i] * w[i] - xt[i] * r[t] * r[t] * r[t] / d * dot;
            if (dw)
                dw[i] += gt[i] * xt[i] * r[t];
        }
    }
}

static const int RMS_SHAPES[][2] = {{0, 8},   {1, 1},   {1, 7},    {3, 17},   {5, 64},
                                    {7, 129}, {33, 288}, {64, 520}, {200, 300}, {2, 20000}};
#define N_RMS (int)(sizeof(RMS_SHAPES) / sizeof(RMS_SHAPES[0]))

typedef struct rms_case {
    float *x, *w, *dy, *rstd, *dx0, *dw0;
    int    T, d, want; // backward: bit 0 dx, bit 1 dw
} rms_case;

static void rms_inputs(rms_case *c, int T, int d) {
    memset(c, 0, sizeof *c);
    c->T = T, c->d = d;
    c->x = frand((size_t)T * d, -1, 1);
    c->w = frand((size_t)d, 0.5f, 1.5f);
    if (T > 2) // a zero row: r = 1/sqrt(eps)
        memset(c->x + (size_t)d, 0, sizeof(float) * (size_t)d);
    if (T > 3) // a large row
        for (int i = 0; i < d; i++)
            c->x[(size_t)3 * d + i] *= 1000.0f;
}
static void rms_free(rms_case *c) {
    free(c->x), free(c->w), free(c->dy), free(c->rstd), free(c->dx0), free(c->dw0);
}

static void run_rmsnorm(const molt_exec *ex, void *cv, float *out) {
    rms_case *c = cv;
    k_rmsnorm(ex, out, c->x, c->w, c->T, c->d, RMS_EPS);
}
static void run_rmsnorm_forward(const molt_exec *ex, void *cv, float *out) {
    rms_case *c = cv;
    k_rmsnorm_forward(ex, out, out + (size_t)c->T * c->d, c->x, c->w, c->T, c->d, RMS_EPS);
}
static void run_rmsnorm_backward(const molt_exec *ex, void *cv, float *out) {
    rms_case *c = cv;
    size_t    n = (size_t)c->T * c->d;
    float    *dx = c->want & 1 ? out : NULL;
    float    *dw = c->want & 2 ? out + (c->want & 1 ? n : 0) : NULL;
    if (dx)
        memcpy(dx, c->dx0, sizeof(float) * n);
    if (dw)
        memcpy(dw, c->dw0, sizeof(float) * (size_t)c->d);
    k_rmsnorm_backward(ex, dx, dw, c->dy, c->x, c->w, c->rstd, c->T, c->d);
}

static void test_rmsnorm(void) {
    op_stat *sf = stat_new("rmsnorm", 1e-5, 1);
    op_stat *st = stat_new("rmsnorm_forward", 1e-5, 1);
    op_stat *sb = stat_new("rmsnorm_backward", 1e-5, 1);
    for (int k = 0; k < N_RMS; k++) {
        int      T = RMS_SHAPES[k][0], d = RMS_SHAPES[k][1];
        size_t   n = (size_t)T * d;
        rms_case c;
        rms_inputs(&c, T, d);
        double *x = dcopy(c.x, n), *w = dcopy(c.w, (size_t)d);
        double *ref = dbuf(n + (size_t)T);
        ref_rmsnorm(ref, ref + n, x, w, T, d);
        char shape[48];
        snprintf(shape, sizeof shape, "T,d %dx%d", T, d);
        run_case(sf, run_rmsnorm, &c, ref, n, shape);
        run_case(st, run_rmsnorm_forward, &c, ref, n + (size_t)T, shape);
        // k_rmsnorm is the training forward's y, bit for bit (backward.h)
        float *y1 = fbuf(n), *y2 = fbuf(n + (size_t)T);
        k_rmsnorm(TEX, y1, c.x, c.w, T, d, RMS_EPS);
        k_rmsnorm_forward(TEX, y2, y2 + n, c.x, c.w, T, d, RMS_EPS);
        CHECK(memcmp(y1, y2, sizeof(float) * n) == 0, "rmsnorm != rmsnorm_forward's y at %s",
              shape);
        free(y1), free(y2);

        // backward from the rstd the forward saved (its float, as training passes it)
        c.dy = frand(n, -1, 1);
        c.rstd = fbuf((size_t)T);
        for (int t = 0; t < T; t++)
            c.rstd[t] = (float)ref[n + (size_t)t];
        c.dx0 = frand(n, -1, 1);
        c.dw0 = frand((size_t)d, -1, 1);
        double *dy = dcopy(c.dy, n), *r = dcopy(c.rstd, (size_t)T);
        for (c.want = 1; c.want <= 3; c.want++) {
            double *bref = dbuf(n + (size_t)d);
            double *bdx = c.want & 1 ? bref : NULL;
            double *bdw = c.want & 2 ? bref + (c.want & 1 ? n : 0) : NULL;
            for (size_t i = 0; bdx && i < n; i++)
                bdx[i] = c.dx0[i];
            for (int i = 0; bdw && i < d; i++)
                bdw[i] = c.dw0[i];
            ref_rmsnorm_backward(bdx, bdw, dy, x, w, r, T, d);
            snprintf(shape, sizeof shape, "T,d %dx%d %s%s", T, d, c.want & 1 ? "dx" : "",
                     c.want & 2 ? "dw" : "");
            run_case(sb, run_rmsnorm_backward, &c, bref,
                     (c.want & 1 ? n : 0) + (c.want & 2 ? (size_t)d : 0), shape);
            free(bref);
        }
        free(x), free(w), free(ref), free(dy), free(r);
        rms_free(&c);
    }
    // the backward reference against central differences of the forward one
    int     T = 3, d = 7;
    size_t  n = (size_t)T * d;
    double *x = drand(n), *w = drand((size_t)d), *dy = drand(n), *vx = drand(n),
           *vw = drand((size_t)d);
    double *y = dbuf(n), *r = dbuf((size_t)T), *dx = dbuf(n), *dw = dbuf((size_t)d);
    double *xs = dbuf(n), *ws = dbuf((size_t)d), h = 1e-5, L[2];
    ref_rmsnorm(y, r, x, w, T, d);
    ref_rmsnorm_backward(dx, dw, dy, x, w, r, T, d);
    for (int s = 0; s < 2; s++) {
        shift(xs, x, vx, s ? h : -h, n);
        shift(ws, w, vw, s ? h : -h, (size_t)d);
        ref_rmsnorm(y, NULL, xs, ws, T, d);
        L[s] = dotd(dy, y, n);
    }
    check_fd("rmsnorm", L[0], L[1], h, dotd(dx, vx, n) + dotd(dw, vw, (size_t)d));
    free(x), free(w), free(dy), free(vx), free(vw), free(y), free(r), free(dx), free(dw), free(xs),
        free(ws);
}

// ----------------------------------------------------------------------------
// SwiGLU:  h = silu(g)·u = g·σ(g)·u
//   du = dh·g·σ(g),   dg = dh·u·σ(g)·(1 + g·(1 − σ(g)))

static void ref_swiglu_bwd(double *dg, double *du, double dh, double g, double u) {
    double s = sigmoid_d(g);
    *du = dh * g * s;
    *dg = dh * u * s * (1.0 + g * (1.0 - s));
}

// gates over the interesting range, with a few far out in both tails
static float *gates(size_t n) {
    float *g = frand(n, -8, 8);
    for (size_t i = 0; i < n; i += 97)
        g[i] = i % 2 ? 30.0f : -90.0f;
    return g;
}

static const size_t SW_N[] = {0, 1, 7, 15, 16, 17, 1000, 32767, 32768, 40001, 100003};
#define N_SW (int)(sizeof(SW_N) / sizeof(SW_N[0]))

typedef struct sw_case {
    float *g, *u, *dh;
    size_t n;
    int    want; // backward: bit 0 dg, bit 1 du, bit 2 dg written over dh (aliased)
} sw_case;

static void run_swiglu(const molt_exec *ex, void *cv, float *out) {
    sw_case *c = cv;
    memcpy(out, c->g, sizeof(float) * c->n);
    k_swiglu(ex, out, c->u, c->n);
}
static void run_swiglu_backward(const molt_exec *ex, void *cv, float *out) {
    sw_case *c = cv;
    float   *dg = c->want & 1 ? out : NULL;
    float   *du = c->want & 2 ? out + (c->want & 1 ? c->n : 0) : NULL;
    const float *dh = c->dh;
    if (c->want & 4) { // dg aliases dh
        memcpy(dg, c->dh, sizeof(float) * c->n);
        dh = dg;
    }
    k_swiglu_backward(ex, dg, du, dh, c->g, c->u, c->n);
}

static void test_swiglu(void) {
    op_stat *sf = stat_new("swiglu", 2e-6, 1);
    op_stat *sb = stat_new("swiglu_backward", 2e-6, 1);
    for (int k = 0; k < N_SW; k++) {
        size_t  n = SW_N[k];
        sw_case c = {gates(n), frand(n, -2, 2), frand(n, -1, 1), n, 0};
        double *ref = dbuf(2 * n);
        for (size_t i = 0; i < n; i++)
            ref[i] = (double)c.g[i] * sigmoid_d(c.g[i]) * (double)c.u[i];
        char shape[48];
        snprintf(shape, sizeof shape, "n %zu", n);
        run_case(sf, run_swiglu, &c, ref, n, shape);
        const int wants[] = {3, 1, 2, 5, 7};
        for (int v = 0; v < 5; v++) {
            c.want = wants[v];
            size_t off = c.want & 1 ? n : 0;
            for (size_t i = 0; i < n; i++) {
                double dg, du;
                ref_swiglu_bwd(&dg, &du, c.dh[i], c.g[i], c.u[i]);
                if (c.want & 1)
                    ref[i] = dg;
                if (c.want & 2)
                    ref[off + i] = du;
            }
            snprintf(shape, sizeof shape, "n %zu %s%s%s", n, c.want & 1 ? "dg" : "",
                     c.want & 2 ? "du" : "", c.want & 4 ? " dg=dh" : "");
            run_case(sb, run_swiglu_backward, &c, ref, off + (c.want & 2 ? n : 0), shape);
        }
        free(ref), free(c.g), free(c.u), free(c.dh);
    }
}

// SwiGLU over a fused gate|up row: gu[T,2F] = [g | u] per row, h[T,F]

static const int SWP_SHAPES[][2] = {{0, 4}, {1, 1}, {3, 7}, {5, 17}, {17, 64}, {40, 1000}, {2, 20000}};
#define N_SWP (int)(sizeof(SWP_SHAPES) / sizeof(SWP_SHAPES[0]))

typedef struct swp_case {
    float *gu, *dh;
    int    T, F;
} swp_case;

static void run_swiglu_pair(const molt_exec *ex, void *cv, float *out) {
    swp_case *c = cv;
    k_swiglu_pair(ex, out, c->gu, c->T, c->F);
}
static void run_swiglu_pair_backward(const molt_exec *ex, void *cv, float *out) {
    swp_case *c = cv;
    k_swiglu_pair_backward(ex, out, c->dh, c->gu, c->T, c->F);
}

static void test_swiglu_pair(void) {
    op_stat *sf = stat_new("swiglu_pair", 2e-6, 1);
    op_stat *sb = stat_new("swiglu_pair_backward", 2e-6, 1);
    for (int k = 0; k < N_SWP; k++) {
        int      T = SWP_SHAPES[k][0], F = SWP_SHAPES[k][1];
        size_t   n = (size_t)T * F;
        swp_case c = {gates(2 * n), frand(n, -1, 1), T, F};
        for (size_t i = 0; i < 2 * n; i++) // u in the up half
            if ((i / (size_t)F) % 2)
                c.gu[i] = t_uniform(-2, 2);
        double *ref = dbuf(2 * n);
        for (int t = 0; t < T; t++)
            for (int f = 0; f < F; f++) {
                double g = c.gu[(size_t)t * 2 * F + f], u = c.gu[(size_t)t * 2 * F + F + f];
                ref[(size_t)t * F + f] = g * sigmoid_d(g) * u;
            }
        char shape[48];
        snprintf(shape, sizeof shape, "T,F %dx%d", T, F);
        run_case(sf, run_swiglu_pair, &c, ref, n, shape);
        // = k_swiglu on separate buffers, bit for bit (backward.h)
        float *h = fbuf(n), *g = fbuf(n), *u = fbuf(n);
        for (int t = 0; t < T; t++) {
            memcpy(g + (size_t)t * F, c.gu + (size_t)t * 2 * F, sizeof(float) * (size_t)F);
            memcpy(u + (size_t)t * F, c.gu + (size_t)t * 2 * F + F, sizeof(float) * (size_t)F);
        }
        k_swiglu_pair(TEX, h, c.gu, T, F);
        k_swiglu(TEX, g, u, n);
        CHECK(memcmp(h, g, sizeof(float) * n) == 0, "swiglu_pair != swiglu at %s", shape);
        free(h), free(g), free(u);
        for (int t = 0; t < T; t++)
            for (int f = 0; f < F; f++) {
                size_t i = (size_t)t * 2 * F + f;
                ref_swiglu_bwd(&ref[i], &ref[i + F], c.dh[(size_t)t * F + f], c.gu[i],
                               c.gu[i + F]);
            }
        run_case(sb, run_swiglu_pair_backward, &c, ref, 2 * n, shape);
        free(ref), free(c.gu), free(c.dh);
    }
    // the SwiGLU backward reference against central differences
    double g = 0.7, u = -1.3, dh = 0.9, hh = 1e-6, dg, du, vg = 0.3, vu = -0.8;
    ref_swiglu_bwd(&dg, &du, dh, g, u);
    double lp = dh * (g + hh * vg) * sigmoid_d(g + hh * vg) * (u + hh * vu);
    double lm = dh * (g - hh * vg) * sigmoid_d(g - hh * vg) * (u - hh * vu);
    check_fd("swiglu", lm, lp, hh, dg * vg + du * vu);
}

// ----------------------------------------------------------------------------
// the MLP's GEMM-only activations in bf16 (backward.h: *_b16). The SwiGLU
// ops' outputs are bf16 (compared widened: within one rounding, 2^-8 of |v|,
// of the double reference, and bit for bit the fp32 op's values rounded by
// molt_f32_to_bf16); the GEMMs take bf16 operands (the double reference on the
// widened values).

typedef struct b16_case {
    float    *gu, *dh, *dy, *x, *W, *dx0, *dW0;
    uint16_t *xb, *dyb;
    int       T, F, in, out, var, acc; // var: bit 0 dy in bf16, 1 x in bf16, 2 no dW
} b16_case;

static uint16_t *b16_of(const float *f, size_t n) {
    uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        h[i] = molt_f32_to_bf16(f[i]);
    return h;
}

static void run_swiglu_pair_b16(const molt_exec *ex, void *cv, float *out) {
    b16_case *c = cv;
    size_t    n = (size_t)c->T * c->F;
    uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
    k_swiglu_pair_b16(ex, h, c->gu, c->T, c->F);
    for (size_t i = 0; i < n; i++)
        out[i] = molt_bf16_to_f32(h[i]);
    free(h);
}
static void run_swiglu_pair_backward_b16(const molt_exec *ex, void *cv, float *out) {
    b16_case *c = cv;
    size_t    n = 2 * (size_t)c->T * c->F;
    uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
    k_swiglu_pair_backward_b16(ex, h, c->dh, c->gu, c->T, c->F);
    for (size_t i = 0; i < n; i++)
        out[i] = molt_bf16_to_f32(h[i]);
    free(h);
}
static void run_matmul_b16(const molt_exec *ex, void *cv, float *out) {
    b16_case *c = cv;
    size_t    ny = (size_t)c->T * c->out;
    if (c->acc)
        memcpy(out, c->dx0, sizeof(float) * ny);
    k_matmul_b16(ex, out, c->xb, c->W, c->T, c->in, c->out, c->acc);
}
// out: dx [T,in], then dW [out,in] (unless var & 4)
static void run_matmul_backward_b16(const molt_exec *ex, void *cv, float *out) {
    b16_case *c = cv;
    size_t    nx = (size_t)c->T * c->in;
    float    *dx = out, *dW = c->var & 4 ? NULL : out + nx;
    if (c->acc)
        memcpy(dx, c->dx0, sizeof(float) * nx);
    if (dW)
        memcpy(dW, c->dW0, sizeof(float) * (size_t)c->out * c->in);
    k_matmul_backward_b16(ex, dx, dW, c->var & 1 ? NULL : c->dy, c->var & 1 ? c->dyb : NULL,
                          c->var & 2 ? NULL : c->x, c->var & 2 ? c->xb : NULL, c->W, c->T, c->in,
                          c->out, c->acc);
}

static void test_mlp_b16(void) {
    op_stat  *s0 = stat_new("swiglu_pair_b16", 4e-3, 1);
    op_stat  *s1 = stat_new("swiglu_pair_backward_b16", 4e-3, 1);
    op_stat  *s2 = stat_new("matmul_b16", 5e-5, 0); // as matmul
    op_stat  *s3 = stat_new("matmul_backward_b16", 5e-5, 1);
    const int SW[][2] = {{0, 4}, {1, 1}, {3, 7}, {17, 64}, {40, 1000}};
    char      shape[48];
    for (int k = 0; k < (int)(sizeof SW / sizeof SW[0]); k++) {
        b16_case c = {0};
        c.T = SW[k][0], c.F = SW[k][1];
        size_t n = (size_t)c.T * c.F;
        c.gu = gates(2 * n), c.dh = frand(n, -1, 1);
        double *ref = dbuf(2 * n);
        for (int t = 0; t < c.T; t++)
            for (int f = 0; f < c.F; f++) {
                double g = c.gu[(size_t)t * 2 * c.F + f], u = c.gu[(size_t)t * 2 * c.F + c.F + f];
                ref[(size_t)t * c.F + f] = g * sigmoid_d(g) * u;
            }
        snprintf(shape, sizeof shape, "T,F %dx%d", c.T, c.F);
        run_case(s0, run_swiglu_pair_b16, &c, ref, n, shape);
        for (int t = 0; t < c.T; t++)
            for (int f = 0; f < c.F; f++) {
                size_t i = (size_t)t * 2 * c.F + f;
                ref_swiglu_bwd(&ref[i], &ref[i + c.F], c.dh[(size_t)t * c.F + f], c.gu[i],
                               c.gu[i + c.F]);
            }
        run_case(s1, run_swiglu_pair_backward_b16, &c, ref, 2 * n, shape);
        // = the fp32 ops' values rounded, bit for bit
        float    *hf = fbuf(2 * n), *hw = fbuf(2 * n);
        uint16_t *hr;
        k_swiglu_pair(TEX, hf, c.gu, c.T, c.F);
        hr = b16_of(hf, n);
        run_swiglu_pair_b16(TEX, &c, hw);
        for (size_t i = 0; i < n; i++)
            CHECK(molt_f32_to_bf16(hw[i]) == hr[i] && hw[i] == molt_bf16_to_f32(hr[i]),
                  "swiglu_pair_b16 [%s] #%zu: not the rounded swiglu_pair", shape, i);
        free(hr);
        k_swiglu_pair_backward(TEX, hf, c.dh, c.gu, c.T, c.F);
        hr = b16_of(hf, 2 * n);
        run_swiglu_pair_backward_b16(TEX, &c, hw);
        int same = 1;
        for (size_t i = 0; i < 2 * n; i++)
            same &= hw[i] == molt_bf16_to_f32(hr[i]);
        CHECK(same, "swiglu_pair_backward_b16 [%s]: not the rounded swiglu_pair_backward", shape);
        free(hr), free(hf), free(hw), free(ref), free(c.gu), free(c.dh);
    }
    const int MM[][3] = {{0, 8, 8}, {1, 7, 5}, {3, 17, 33}, {9, 129, 65}, {64, 200, 257}};
    for (int k = 0; k < (int)(sizeof MM / sizeof MM[0]); k++)
        for (int v = 0; v < 5; v++) { // var 1, 2, 3, 5 (dx only) and 0; acc on the second
            b16_case c = {0};
            c.T = MM[k][0], c.in = MM[k][1], c.out = MM[k][2];
            c.var = v == 3 ? 5 : v == 4 ? 0 : v + 1, c.acc = v == 1;
            size_t nx = (size_t)c.T * c.in, ny = (size_t)c.T * c.out, nw = (size_t)c.out * c.in;
            float *dyr = frand(ny, -1, 1), *xr = frand(nx, -1, 1);
            c.dyb = b16_of(dyr, ny), c.xb = b16_of(xr, nx);
            c.dy = frand(ny, -1, 1), c.x = frand(nx, -1, 1), c.W = frand(nw, -1, 1);
            c.dx0 = frand(nx > ny ? nx : ny, -1, 1), c.dW0 = frand(nw, -1, 1);
            double *ref = dbuf(nx + nw + ny);
            // the operands as the op sees them
            for (size_t i = 0; i < ny; i++)
                dyr[i] = c.var & 1 ? molt_bf16_to_f32(c.dyb[i]) : c.dy[i];
            for (size_t i = 0; i < nx; i++)
                xr[i] = c.var & 2 ? molt_bf16_to_f32(c.xb[i]) : c.x[i];
            for (int t = 0; t < c.T; t++)
                for (int i = 0; i < c.in; i++) {
                    double sm = c.acc ? (double)c.dx0[(size_t)t * c.in + i] : 0.0;
                    for (int o = 0; o < c.out; o++)
                        sm += (double)dyr[(size_t)t * c.out + o] * (double)c.W[(size_t)o * c.in + i];
                    ref[(size_t)t * c.in + i] = sm;
                }
            if (!(c.var & 4))
                for (int o = 0; o < c.out; o++)
                    for (int i = 0; i < c.in; i++) {
                        double sm = c.dW0[(size_t)o * c.in + i];
                        for (int t = 0; t < c.T; t++)
                            sm += (double)dyr[(size_t)t * c.out + o] * (double)xr[(size_t)t * c.in + i];
                        ref[nx + (size_t)o * c.in + i] = sm;
                    }
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d var %d%s", c.T, c.in, c.out, c.var,
                     c.acc ? " +=" : "");
            run_case(s3, run_matmul_backward_b16, &c, ref, nx + (c.var & 4 ? 0 : nw), shape);
            if (v < 2) { // forward: y (+)= widen(xb)·Wᵀ with W [out,in]
                for (int t = 0; t < c.T; t++)
                    for (int o = 0; o < c.out; o++) {
                        double sm = c.acc ? (double)c.dx0[(size_t)t * c.out + o] : 0.0;
                        for (int i = 0; i < c.in; i++)
                            sm += (double)molt_bf16_to_f32(c.xb[(size_t)t * c.in + i]) *
                                  (double)c.W[(size_t)o * c.in + i];
                        ref[(size_t)t * c.out + o] = sm;
                    }
                run_case(s2, run_matmul_b16, &c, ref, ny, shape);
            }
            free(ref), free(dyr), free(xr), free(c.dyb), free(c.xb), free(c.dy), free(c.x),
                free(c.W), free(c.dx0), free(c.dW0);
        }
}

// ----------------------------------------------------------------------------
// softmax:  x_i = exp(x_i − max x) / Σ_j exp(x_j − max x)   (n ≥ 1)

typedef struct sm_case {
    float *x;
    int    n;
} sm_case;

static void run_softmax(const molt_exec *ex, void *cv, float *out) {
    sm_case *c = cv;
    memcpy(out, c->x, sizeof(float) * (size_t)c->n);
    k_softmax(ex, out, c->n);
}

static void test_softmax(void) {
    op_stat  *st = stat_new("softmax", 1e-6, 1);
    const int ns[] = {1, 2, 7, 8, 9, 100, 1001, 4097, 50000};
    for (int k = 0; k < 9; k++)
        for (int wide = 0; wide < 2; wide++) {
            int     n = ns[k];
            sm_case c = {frand((size_t)n, wide ? -100.0f : -5.0f, wide ? 100.0f : 5.0f), n};
            double  m = -INFINITY, s = 0, *ref = dbuf((size_t)n);
            for (int i = 0; i < n; i++)
                m = (double)c.x[i] > m ? (double)c.x[i] : m;
            for (int i = 0; i < n; i++)
                s += ref[i] = exp((double)c.x[i] - m);
            for (int i = 0; i < n; i++)
                ref[i] /= s;
            char shape[48];
            snprintf(shape, sizeof shape, "n %d, x in +-%d", n, wide ? 100 : 5);
            run_case(st, run_softmax, &c, ref, (size_t)n, shape);
            free(ref), free(c.x);
        }
}

// ----------------------------------------------------------------------------
// add:  y = a + b   (also in place: y = a)

typedef struct add_case {
    float *a, *b;
    size_t n;
    int    inplace;
} add_case;

static void run_add(const molt_exec *ex, void *cv, float *out) {
    add_case *c = cv;
    if (c->inplace) { // the residual form y += b
        memcpy(out, c->a, sizeof(float) * c->n);
        k_add(ex, out, out, c->b, c->n);
    } else {
        k_add(ex, out, c->a, c->b, c->n);
    }
}

static void test_add(void) {
    op_stat     *st = stat_new("add", 2e-6, 1);
    const size_t ns[] = {0, 1, 7, 17, 1000, 32768, 32769, 200003};
    for (int k = 0; k < 8; k++)
        for (int inplace = 0; inplace < 2; inplace++) {
            size_t   n = ns[k];
            add_case c = {frand(n, -3, 3), frand(n, -3, 3), n, inplace};
            double  *ref = dbuf(n);
            for (size_t i = 0; i < n; i++)
                ref[i] = (double)c.a[i] + (double)c.b[i];
            char shape[48];
            snprintf(shape, sizeof shape, "n %zu%s", n, inplace ? " in place" : "");
            run_case(st, run_add, &c, ref, n, shape);
            free(ref), free(c.a), free(c.b);
        }
}

// ----------------------------------------------------------------------------
// embedding:  x[t] = E[ids[t]]

typedef struct embf_case {
    float   *E;
    int32_t *ids;
    int      T, d;
} embf_case;

static void run_embedding(const molt_exec *ex, void *cv, float *out) {
    embf_case *c = cv;
    k_embedding(ex, out, c->E, c->ids, c->T, c->d);
}

static void test_embedding(void) {
    op_stat  *st = stat_new("embedding", 0, 1);
    const int shapes[][3] = {{0, 8, 4}, {1, 1, 1}, {5, 7, 3}, {100, 65, 10}, {600, 512, 50}};
    for (int k = 0; k < 5; k++) {
        int       T = shapes[k][0], d = shapes[k][1], V = shapes[k][2];
        embf_case c = {frand((size_t)V * d, -1, 1), xmalloc(sizeof(int32_t) * (size_t)(T + 1)), T, d};
        for (int t = 0; t < T; t++) // repeated ids, and the last row
            c.ids[t] = t % 3 == 0 ? V - 1 : (int32_t)(t_uniform(0, 1) * (float)V) % V;
        double *ref = dbuf((size_t)T * d);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
                ref[(size_t)t * d + i] = (double)c.E[(size_t)c.ids[t] * d + i];
        char shape[48];
        snprintf(shape, sizeof shape, "T,d,V %dx%dx%d", T, d, V);
        run_case(st, run_embedding, &c, ref, (size_t)T * d, shape);
        free(ref), free(c.E), free(c.ids);
    }
}

// ----------------------------------------------------------------------------
// copy_cols:  dst[t, 0:n] = src[t, 0:n] (strided rows); the hybrid combiner's
// statistics matching and its backward (kernels.h)

typedef struct cc_case {
    float *src;
    size_t ldd, lds, rows, n;
} cc_case;

static void run_copy_cols(const molt_exec *ex, void *cv, float *out) {
    cc_case *c = cv; // out: [rows, ldd]; the columns past n keep their NaN (checked by the ref)
    k_copy_cols(ex, out, c->ldd, c->src, c->lds, c->rows, c->n);
}

static void test_copy_cols(void) {
    op_stat     *st = stat_new("copy_cols", 0, 1);
    const size_t shapes[][4] = {{0, 4, 4, 4}, {1, 1, 1, 1}, {3, 5, 7, 5}, {17, 64, 65, 33},
                                {300, 96, 200, 96}, {2, 4096, 8192, 4096}};
    for (int k = 0; k < 6; k++) {
        size_t  rows = shapes[k][0], ldd = shapes[k][1], lds = shapes[k][2], n = shapes[k][3];
        cc_case c = {frand(rows * lds + 1, -2, 2), ldd, lds, rows, n};
        double *ref = dbuf(rows * ldd);
        for (size_t t = 0; t < rows; t++)
            for (size_t i = 0; i < ldd; i++) // untouched columns stay NaN: NaN == NaN here
                ref[t * ldd + i] = i < n ? (double)c.src[t * lds + i] : nan("");
        char shape[48];
        snprintf(shape, sizeof shape, "rows,n %zux%zu ld %zu/%zu", rows, n, ldd, lds);
        // err_max counts NaN as wrong: compare the copied columns only
        float *out = fbuf(rows * ldd + 1);
        for (int nth = 1; nth <= 2; nth++) {
            molt_exec ex;
            for (int b = 0; b < N_BACKENDS; b++) {
                if (!molt_exec_init(&ex, BACKENDS[b], nth))
                    continue;
                fill_nan(out, rows * ldd);
                run_copy_cols(&ex, &c, out);
                int bad = 0;
                for (size_t t = 0; t < rows; t++)
                    for (size_t i = 0; i < ldd; i++) {
                        float v = out[t * ldd + i];
                        bad += i < n ? v != (float)ref[t * ldd + i] : v == v;
                    }
                CHECK(!bad, "copy_cols [%s] on %s: %d wrong entries", shape, BACKENDS[b]->name,
                      bad);
                st->failed |= bad != 0;
            }
        }
        st->cases++;
        if (rows * n >= st->biggest) {
            st->biggest = rows * n;
            snprintf(st->shape, sizeof st->shape, "%s", shape);
        }
        free(out), free(ref), free(c.src);
    }
}

#define HYB_EPS_D 1e-5
typedef struct hs_case {
    float *a, *s, *g, *ds0, *st;
    int    T, d;
} hs_case;

// double reference of ap (and st) for one token; ap = (a − μa)·κ + μs
static void ref_hstats(double *ap, double *st, const double *a, const double *s, int d) {
    double ma = 0, ms = 0, va = 0, vs = 0;
    for (int i = 0; i < d; i++)
        ma += a[i], ms += s[i];
    ma /= d, ms /= d;
    for (int i = 0; i < d; i++)
        va += (a[i] - ma) * (a[i] - ma), vs += (s[i] - ms) * (s[i] - ms);
    double sa = sqrt(va / (d - 1)), ss = sqrt(vs / (d - 1)), k = (ss + HYB_EPS_D) / (sa + HYB_EPS_D);
    for (int i = 0; i < d; i++)
        if (ap)
            ap[i] = (a[i] - ma) * k + ms;
    if (st)
        st[0] = ma, st[1] = ms, st[2] = sa, st[3] = ss;
}

static void run_hybrid_stats(const molt_exec *ex, void *cv, float *out) {
    hs_case *c = cv; // out: ap [T,d] | st [T,4]
    k_hybrid_stats(ex, out, out + (size_t)c->T * c->d, c->a, c->s, c->T, c->d);
}

static void run_hybrid_stats_backward(const molt_exec *ex, void *cv, float *out) {
    hs_case *c = cv; // out: da [T,d] | ds [T,d]
    size_t   n = (size_t)c->T * c->d;
    memcpy(out, c->g, sizeof(float) * n);
    memcpy(out + n, c->ds0, sizeof(float) * n);
    k_hybrid_stats_backward(ex, out, out + n, c->st, c->a, c->s, c->T, c->d);
}

// L = Σ g·ap(a, s), for central differences
static double hstats_loss(const double *a, const double *s, const double *g, int d) {
    double *ap = dbuf((size_t)d), L = 0;
    ref_hstats(ap, NULL, a, s, d);
    for (int i = 0; i < d; i++)
        L += g[i] * ap[i];
    free(ap);
    return L;
}

// the reference gradients of one token: da (from g = dL/dap) and the
// statistics path's ds; checked by central differences when fd
static void ref_hstats_backward(double *da, double *ds, const double *a, const double *s,
                                const double *g, int d, int fd) {
    double st[4], sg = 0, gz = 0;
    ref_hstats(NULL, st, a, s, d);
    for (int i = 0; i < d; i++)
        sg += g[i], gz += g[i] * (a[i] - st[0]);
    double kk = (st[3] + HYB_EPS_D) / (st[2] + HYB_EPS_D);
    double dsa = -gz * kk / (st[2] + HYB_EPS_D), dss = gz / (st[2] + HYB_EPS_D);
    for (int i = 0; i < d; i++) {
        da[i] = kk * (g[i] - sg / d) + dsa * (a[i] - st[0]) / ((d - 1) * st[2]);
        ds[i] = sg / d + dss * (s[i] - st[1]) / ((d - 1) * st[3]);
    }
    if (!fd || d < 2)
        return;
    double *va = dbuf((size_t)d), *vs = dbuf((size_t)d), h = 1e-4;
    for (int i = 0; i < d; i++)
        va[i] = sin(i + 1.0), vs[i] = cos(3.0 * i);
    double *pa = dbuf((size_t)d), *ma = dbuf((size_t)d), *ps = dbuf((size_t)d),
           *ms = dbuf((size_t)d);
    shift(pa, a, va, h, (size_t)d), shift(ma, a, va, -h, (size_t)d);
    shift(ps, s, vs, h, (size_t)d), shift(ms, s, vs, -h, (size_t)d);
    check_fd("hybrid_stats da", hstats_loss(ma, s, g, d), hstats_loss(pa, s, g, d), h,
             dotd(da, va, (size_t)d));
    check_fd("hybrid_stats ds", hstats_loss(a, ms, g, d), hstats_loss(a, ps, g, d), h,
             dotd(ds, vs, (size_t)d));
    free(va), free(vs), free(pa), free(ma), free(ps), free(ms);
}

static void test_hybrid_stats(void) {
    op_stat  *sf = stat_new("hybrid_stats", 2e-6, 1);
    op_stat  *sb = stat_new("hybrid_stats_backward", 2e-5, 1);
    const int shapes[][2] = {{0, 4}, {1, 2}, {1, 7}, {5, 64}, {33, 129}, {200, 512}, {3, 4096}};
    for (int k = 0; k < 7; k++) {
        int     T = shapes[k][0], d = shapes[k][1];
        size_t  n = (size_t)T * d;
        hs_case c = {frand(n + 1, -2, 2), frand(n + 1, -1, 3), frand(n + 1, -1, 1),
                     frand(n + 1, -1, 1), fbuf(4 * (size_t)T + 1), T, d};
        for (size_t i = 0; i < n; i++) // a at another scale than s
            c.a[i] *= 5.0f;
        double *a = dcopy(c.a, n), *s = dcopy(c.s, n), *g = dcopy(c.g, n);
        double *ref = dbuf(n + 4 * (size_t)T);
        for (int t = 0; t < T; t++)
            ref_hstats(ref + (size_t)t * d, ref + n + 4 * (size_t)t, a + (size_t)t * d,
                       s + (size_t)t * d, d);
        char shape[48];
        snprintf(shape, sizeof shape, "T,d %dx%d", T, d);
        run_case(sf, run_hybrid_stats, &c, ref, n + 4 * (size_t)T, shape);
        // backward, from the statistics the CPU forward saved
        molt_exec ex = molt_exec_cpu(1);
        float    *tmp = fbuf(n + 1);
        k_hybrid_stats(&ex, tmp, c.st, c.a, c.s, T, d);
        double *rb = dbuf(2 * n);
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * d;
            ref_hstats_backward(rb + o, rb + n + o, a + o, s + o, g + o, d, t == 0);
            for (int i = 0; i < d; i++)
                rb[n + o + i] += (double)c.ds0[o + i];
        }
        run_case(sb, run_hybrid_stats_backward, &c, rb, 2 * n, shape);
        free(rb), free(tmp), free(ref), free(a), free(s), free(g);
        free(c.a), free(c.s), free(c.g), free(c.ds0), free(c.st);
    }
}

// ----------------------------------------------------------------------------
// memory (mem.h): aligned blocks; zero, upload, copy, zero, download round trip

static void test_memory(void) {
    const size_t sizes[] = {0, 1, 3, 64, 1000, 1 << 20};
    for (int b = 0; b < N_BACKENDS; b++) {
        const molt_backend *be = BACKENDS[b];
        molt_exec           ex = be_exec1(be);
        for (int k = 0; k < 6; k++) {
            size_t         n = sizes[k];
            unsigned char *host = xmalloc(n), *back = xmalloc(n);
            for (size_t i = 0; i < n; i++)
                host[i] = (unsigned char)(i * 7 + 3);
            unsigned char *p = be_alloc(be, n), *q = be_alloc(be, n);
            CHECK(p && q, "%s: be_alloc(%zu) failed", be->name, n);
            if (!p || !q) {
                be_free(be, p), be_free(be, q), free(host), free(back);
                continue;
            }
            CHECK(((uintptr_t)p & 63) == 0 && ((uintptr_t)q & 63) == 0,
                  "%s: be_alloc(%zu) is not 64-byte aligned", be->name, n);
            be_zero(&ex, p, n);
            memset(back, 0xAB, n);
            be_download(&ex, back, p, n);
            size_t nz = 0;
            for (size_t i = 0; i < n; i++)
                nz += back[i] != 0;
            CHECK(nz == 0, "%s: be_zero(%zu) left %zu bytes non-zero", be->name, n, nz);
            be_upload(&ex, p, host, n);
            be_copy(&ex, q, p, n);
            be_zero(&ex, p, n / 2);
            be_sync(&ex);
            memset(back, 0, n);
            be_download(&ex, back, q, n);
            CHECK(n == 0 || memcmp(back, host, n) == 0, "%s: upload → copy → download of %zu bytes",
                  be->name, n);
            be_download(&ex, back, p, n);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += back[i] != (i < n / 2 ? 0 : host[i]);
            CHECK(bad == 0, "%s: be_zero of %zu of %zu bytes: %zu bytes wrong", be->name, n / 2, n, bad);
            be_free(be, p), be_free(be, q), free(host), free(back);
        }
        be_free(be, NULL); // freeing nothing is allowed
    }
}

// ----------------------------------------------------------------------------
// embedding backward:  dE[ids[t]] += dx[t]

typedef struct emb_case {
    float   *dx, *dE0;
    int32_t *ids;
    int      T, d, V;
} emb_case;

static void run_embedding_backward(const molt_exec *ex, void *cv, float *out) {
    emb_case *c = cv;
    memcpy(out, c->dE0, sizeof(float) * (size_t)c->V * c->d);
    k_embedding_backward(ex, out, c->dx, c->ids, c->T, c->d);
}

static void test_embedding_backward(void) {
    op_stat  *st = stat_new("embedding_backward", 1e-5, 1);
    const int shapes[][3] = {{0, 8, 4},     {1, 1, 1},     {5, 7, 3},      {100, 65, 10},
                             {33, 130, 7},  {600, 512, 50}, {520, 640, 1000}};
    for (int k = 0; k < 7; k++) {
        int      T = shapes[k][0], d = shapes[k][1], V = shapes[k][2];
        size_t   nE = (size_t)V * d;
        emb_case c = {frand((size_t)T * d, -1, 1), frand(nE, -1, 1), xmalloc(sizeof(int32_t) * (size_t)T),
                      T, d, V};
        for (int t = 0; t < T; t++) // repeated ids, and the last row
            c.ids[t] = t % 3 == 0 ? V - 1 : (int32_t)(t_uniform(0, 1) * (float)V) % V;
        double *ref = dcopy(c.dE0, nE);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
                ref[(size_t)c.ids[t] * d + i] += (double)c.dx[(size_t)t * d + i];
        char shape[48];
        snprintf(shape, sizeof shape, "T,d,V %dx%dx%d", T, d, V);
        run_case(st, run_embedding_backward, &c, ref, nE, shape);
        free(ref), free(c.dx), free(c.dE0), free(c.ids);
    }
}

// ----------------------------------------------------------------------------
// causal depthwise conv1d:  y[t,c] = b[c] + Σ_{k<K} w[c,k]·in[t−(K−1)+k, c],
//   in[τ] = x[τ] for τ ≥ 0, state[c, τ+K−1] for τ < 0 (0 without state);
//   the new state holds in[T−(K−1) .. T−1].
// backward (state NULL): dx[τ,c] = Σ_k w[c,k]·dy[τ+(K−1)−k, c] (terms inside T),
//   dw[c,k] += Σ_t dy[t,c]·x[t−(K−1)+k, c],  db[c] += Σ_t dy[t,c]

static double conv_in(const double *x, const double *state, int tau, int c, int Cc, int K) {
    if (tau >= 0)
        return x[(size_t)tau * Cc + c];
    return state ? state[(size_t)c * (K - 1) + (tau + K - 1)] : 0.0;
}

static void ref_conv(double *y, double *new_state, const double *x, const double *w,
                     const double *b, const double *state, int T, int Cc, int K) {
    for (int t = 0; t < T; t++)
        for (int c = 0; c < Cc; c++) {
            double s = b ? b[c] : 0.0;
            for (int k = 0; k < K; k++)
                s += w[(size_t)c * K + k] * conv_in(x, state, t - (K - 1) + k, c, Cc, K);
            y[(size_t)t * Cc + c] = s;
        }
    for (int c = 0; new_state && c < Cc; c++)
        for (int j = 0; j < K - 1; j++)
            new_state[(size_t)c * (K - 1) + j] = conv_in(x, state, T - (K - 1) + j, c, Cc, K);
}

static void ref_conv_backward(double *dx, double *dw, double *db, const double *dy,
                              const double *x, const double *w, int T, int Cc, int K) {
    for (int tau = 0; tau < T; tau++)
        for (int c = 0; c < Cc; c++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                int t = tau + (K - 1) - k;
                if (t < T)
                    s += w[(size_t)c * K + k] * dy[(size_t)t * Cc + c];
            }
            dx[(size_t)tau * Cc + c] = s;
        }
    for (int t = 0; t < T; t++)
        for (int c = 0; c < Cc; c++) {
            double g = dy[(size_t)t * Cc + c];
            for (int k = 0; dw && k < K; k++)
                dw[(size_t)c * K + k] += g * conv_in(x, NULL, t - (K - 1) + k, c, Cc, K);
            if (db)
                db[c] += g;
        }
}

static const int CONV_SHAPES[][3] = {{0, 5, 4},    {1, 1, 1},     {1, 5, 4},    {2, 7, 4},
                                     {3, 7, 4},    {5, 3, 2},     {9, 70, 1},   {17, 33, 4},
                                     {64, 130, 3}, {200, 256, 4}, {300, 100, 5}};
#define N_CONV (int)(sizeof(CONV_SHAPES) / sizeof(CONV_SHAPES[0]))

typedef struct conv_case {
    float *x, *w, *b, *state0, *dy, *dw0, *db0;
    int    T, Cc, K, want; // backward: bit 0 dw, bit 1 db
} conv_case;

static void run_conv(const molt_exec *ex, void *cv, float *out) {
    conv_case *c = cv;
    float     *state = NULL;
    if (c->state0) {
        state = out + (size_t)c->T * c->Cc;
        memcpy(state, c->state0, sizeof(float) * (size_t)c->Cc * (c->K - 1));
    }
    conv1d_causal(ex, out, c->x, c->w, c->b, state, c->T, c->Cc, c->K);
}
static void run_conv_backward(const molt_exec *ex, void *cv, float *out) {
    conv_case *c = cv;
    float     *dw = NULL, *db = NULL, *p = out + (size_t)c->T * c->Cc;
    if (c->want & 1) {
        dw = p;
        memcpy(dw, c->dw0, sizeof(float) * (size_t)c->Cc * c->K);
        p += (size_t)c->Cc * c->K;
    }
    if (c->want & 2) {
        db = p;
        memcpy(db, c->db0, sizeof(float) * (size_t)c->Cc);
    }
    conv1d_causal_backward(ex, out, dw, db, c->dy, c->x, c->w, c->T, c->Cc, c->K);
}

static void test_conv(void) {
    op_stat *sf = stat_new("conv1d_causal", 1e-6, 1);
    op_stat *sb = stat_new("conv1d_causal_backward", 1e-5, 1);
    for (int k = 0; k < N_CONV; k++)
        for (int v = 0; v < 4; v++) { // forward: bias × state; backward: dw × db
            int       T = CONV_SHAPES[k][0], Cc = CONV_SHAPES[k][1], K = CONV_SHAPES[k][2];
            size_t    n = (size_t)T * Cc, ns = (size_t)Cc * (K - 1);
            conv_case c = {frand(n, -1, 1),
                           frand((size_t)Cc * K, -1, 1),
                           v & 1 ? frand((size_t)Cc, -1, 1) : NULL,
                           v & 2 ? frand(ns, -1, 1) : NULL,
                           frand(n, -1, 1),
                           frand((size_t)Cc * K, -1, 1),
                           frand((size_t)Cc, -1, 1),
                           T,
                           Cc,
                           K,
                           v};
            double *x = dcopy(c.x, n), *w = dcopy(c.w, (size_t)Cc * K);
            double *b = c.b ? dcopy(c.b, (size_t)Cc) : NULL;
            double *s0 = c.state0 ? dcopy(c.state0, ns) : NULL;
            double *ref = dbuf(n + (size_t)Cc * (K + 1));
            ref_conv(ref, s0 ? ref + n : NULL, x, w, b, s0, T, Cc, K);
            char shape[48];
            snprintf(shape, sizeof shape, "T,Cc,K %dx%dx%d%s%s", T, Cc, K, b ? " +b" : "",
                     s0 ? " +state" : "");
            run_case(sf, run_conv, &c, ref, n + (s0 ? ns : 0), shape);

            double *dy = dcopy(c.dy, n), *dw = (v & 1) ? dcopy(c.dw0, (size_t)Cc * K) : NULL;
            double *db = (v & 2) ? dcopy(c.db0, (size_t)Cc) : NULL;
            ref_conv_backward(ref, dw, db, dy, x, w, T, Cc, K);
            size_t no = n;
            if (dw)
                memcpy(ref + no, dw, sizeof(double) * (size_t)Cc * K), no += (size_t)Cc * K;
            if (db)
                memcpy(ref + no, db, sizeof(double) * (size_t)Cc), no += (size_t)Cc;
            snprintf(shape, sizeof shape, "T,Cc,K %dx%dx%d dx%s%s", T, Cc, K, dw ? "dw" : "",
                     db ? "db" : "");
            run_case(sb, run_conv_backward, &c, ref, no, shape);
            free(x), free(w), free(b), free(s0), free(ref), free(dy), free(dw), free(db);
            free(c.x), free(c.w), free(c.b), free(c.state0), free(c.dy), free(c.dw0), free(c.db0);
        }
    // the backward reference against central differences
    int     T = 6, Cc = 3, K = 4;
    size_t  n = (size_t)T * Cc, nw = (size_t)Cc * K;
    double *x = drand(n), *w = drand(nw), *b = drand((size_t)Cc), *dy = drand(n);
    double *vx = drand(n), *vw = drand(nw), *vb = drand((size_t)Cc);
    double *dx = dbuf(n), *dw = dbuf(nw), *db = dbuf((size_t)Cc), *y = dbuf(n);
    double *xs = dbuf(n), *ws = dbuf(nw), *bs = dbuf((size_t)Cc), h = 1e-5, L[2];
    ref_conv_backward(dx, dw, db, dy, x, w, T, Cc, K);
    for (int s = 0; s < 2; s++) {
        shift(xs, x, vx, s ? h : -h, n);
        shift(ws, w, vw, s ? h : -h, nw);
        shift(bs, b, vb, s ? h : -h, (size_t)Cc);
        ref_conv(y, NULL, xs, ws, bs, NULL, T, Cc, K);
        L[s] = dotd(dy, y, n);
    }
    check_fd("conv1d_causal", L[0], L[1], h,
             dotd(dx, vx, n) + dotd(dw, vw, nw) + dotd(db, vb, (size_t)Cc));
    free(x), free(w), free(b), free(dy), free(vx), free(vw), free(vb), free(dx), free(dw), free(db),
        free(y), free(xs), free(ws), free(bs);
}

// ----------------------------------------------------------------------------
// SSD scan (ssm.h, ALGORITHMS.md §1.2–1.3), head h reading group g = h/(H/G):
//   s_t = exp(dA[t,h])·s_{t−1} + X[t,h,:] ⊗ B[t,g,:]      s: [P,N]
//   y[t,h,p] = Σ_n s_t[p,n]·C[t,g,n]
// Reference: the recurrence in double, keeping every state: S[t] is the state
// entering step t (S[0] = initial), S[T] the final one; S is [T+1,H,P,N].

static void ref_scan(double *y, double *S, const double *X, const double *dA, const double *B,
                     const double *C, const double *s0, int T, int H, int P, int N, int G) {
    size_t HPN = (size_t)H * P * N;
    for (size_t e = 0; e < HPN; e++)
        S[e] = s0 ? s0[e] : 0.0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int           g = h / (H / G);
            double        a = exp(dA[(size_t)t * H + h]);
            const double *Bt = B + ((size_t)t * G + g) * N, *Ct = C + ((size_t)t * G + g) * N;
            for (int p = 0; p < P; p++) {
                const double *sp = S + (size_t)t * HPN + ((size_t)h * P + p) * N;
                double       *sn = S + (size_t)(t + 1) * HPN + ((size_t)h * P + p) * N;
                double        xv = X[((size_t)t * H + h) * P + p], acc = 0;
                for (int n = 0; n < N; n++) {
                    sn[n] = a * sp[n] + xv * Bt[n];
                    acc += sn[n] * Ct[n];
                }
                y[((size_t)t * H + h) * P + p] = acc;
            }
        }
}

// Reverse mode of ref_scan from a zero initial state (S from ref_scan):
//   ds_t = dy_t ⊗ C_t + exp(dA_{t+1})·ds_{t+1}          (adjoint of s_t; ds_T = 0)
//   dX_t = ds_t·B_t,  dB_t = Σ_{h∈g} ds_tᵀ·X_t,  dC_t = Σ_{h∈g} s_tᵀ·dy_t,
//   ddA_t = exp(dA_t)·⟨ds_t, s_{t−1}⟩
static void ref_scan_backward(double *dX, double *ddA, double *dB, double *dC, const double *dy,
                              const double *S, const double *X, const double *dA, const double *B,
                              const double *C, int T, int H, int P, int N, int G) {
    size_t  HPN = (size_t)H * P * N, PN = (size_t)P * N;
    double *ds = dbuf(PN);
    memset(dB, 0, sizeof(double) * (size_t)T * G * N);
    memset(dC, 0, sizeof(double) * (size_t)T * G * N);
    for (int h = 0; h < H; h++) {
        int g = h / (H / G);
        memset(ds, 0, sizeof(double) * PN);
        for (int t = T - 1; t >= 0; t--) {
            double a_next = t + 1 < T ? exp(dA[(size_t)(t + 1) * H + h]) : 0.0;
            const double *Bt = B + ((size_t)t * G + g) * N, *Ct = C + ((size_t)t * G + g) * N;
            const double *dyt = dy + ((size_t)t * H + h) * P, *Xt = X + ((size_t)t * H + h) * P;
            const double *s_prev = S + (size_t)t * HPN + (size_t)h * PN;
            const double *s_cur = S + (size_t)(t + 1) * HPN + (size_t)h * PN;
            double        dda = 0;
            for (int p = 0; p < P; p++) {
                double dx = 0;
                for (int n = 0; n < N; n++) {
                    double *d = &ds[(size_t)p * N + n];
                    *d = dyt[p] * Ct[n] + a_next * *d;
                    dx += *d * Bt[n];
                    dB[((size_t)t * G + g) * N + n] += *d * Xt[p];
                    dC[((size_t)t * G + g) * N + n] += s_cur[(size_t)p * N + n] * dyt[p];
                    dda += *d * s_prev[(size_t)p * N + n];
                }
                dX[((size_t)t * H + h) * P + p] = dx;
            }
            ddA[(size_t)t * H + h] = exp(dA[(size_t)t * H + h]) * dda;
        }
    }
    free(ds);
}

typedef struct ssd_case {
    float *X, *dA, *B, *C, *s0, *dy, *work;
    int    T, H, P, N, G, Q;
} ssd_case;

static size_t ssd_nc(int T, int Q) { return T > 0 ? (size_t)((T + (Q < T ? Q : T) - 1) / (Q < T ? Q : T)) : 0; }

// decays: "sharp" mostly in (−1.5, 0] with a few flushed to exactly 0
// (dA < SSM_EXP_FLUSH); "mild" near 1 with some slight growth
static float *decays(size_t n, int sharp) {
    float *dA = sharp ? frand(n, -1.5f, 0.0f) : frand(n, -0.1f, 0.02f);
    for (size_t i = 5; sharp && i < n; i += 31)
        dA[i] = -70.0f;
    return dA;
}

static void ssd_inputs(ssd_case *c, int T, int H, int P, int N, int G, int Q, int sharp) {
    *c = (ssd_case){frand((size_t)T * H * P, -1, 1),
                    decays((size_t)T * H, sharp),
                    frand((size_t)T * G * N, -1, 1),
                    frand((size_t)T * G * N, -1, 1),
                    frand((size_t)H * P * N, -1, 1),
                    frand((size_t)T * H * P, -1, 1),
                    NULL,
                    T,
                    H,
                    P,
                    N,
                    G,
                    Q};
}
static void ssd_free(ssd_case *c) {
    free(c->X), free(c->dA), free(c->B), free(c->C), free(c->s0), free(c->dy), free(c->work);
}

// ssd_step: one token, y[H,P] and state[H,P,N] (out: y | state)
static void run_ssd_step(const molt_exec *ex, void *cv, float *out) {
    ssd_case *c = cv;
    float    *state = out + (size_t)c->H * c->P;
    memcpy(state, c->s0, sizeof(float) * (size_t)c->H * c->P * c->N);
    ssd_step(ex, out, state, c->X, c->dA, c->B, c->C, c->H, c->P, c->N, c->G);
}

static void test_ssd_step(void) {
    op_stat  *st = stat_new("ssd_step", 1e-5, 1);
    const int shapes[][4] = {{1, 1, 1, 1},   {2, 3, 5, 1},  {3, 7, 9, 3},    {4, 16, 16, 2},
                             {6, 33, 40, 2}, {8, 64, 16, 8}, {16, 32, 128, 1}, {24, 64, 64, 4}};
    for (int k = 0; k < 8; k++)
        for (int sharp = 0; sharp < 2; sharp++) {
            int      H = shapes[k][0], P = shapes[k][1], N = shapes[k][2], G = shapes[k][3];
            size_t   HP = (size_t)H * P, HPN = HP * N;
            ssd_case c;
            ssd_inputs(&c, 1, H, P, N, G, 1, sharp);
            double *X = dcopy(c.X, HP), *dA = dcopy(c.dA, (size_t)H);
            double *B = dcopy(c.B, (size_t)G * N), *C = dcopy(c.C, (size_t)G * N);
            double *s0 = dcopy(c.s0, HPN), *S = dbuf(2 * HPN), *ref = dbuf(HP + HPN);
            ref_scan(ref, S, X, dA, B, C, s0, 1, H, P, N, G);
            memcpy(ref + HP, S + HPN, sizeof(double) * HPN);
            char shape[48];
            snprintf(shape, sizeof shape, "H,P,N,G %dx%dx%dx%d", H, P, N, G);
            run_case(st, run_ssd_step, &c, ref, HP + HPN, shape);
            free(X), free(dA), free(B), free(C), free(s0), free(S), free(ref);
            ssd_free(&c);
        }
}

// ssd_scan_chunked (out: y | final state when one is passed | the states
// entering each chunk, which the work buffer holds on return)
static int g_chunk_state; // pass an initial state

static void run_ssd_scan_chunked(const molt_exec *ex, void *cv, float *out) {
    ssd_case *c = cv;
    size_t    nw = ssd_chunked_work(c->T, c->H, c->P, c->N, c->G, c->Q);
    size_t    HPN = (size_t)c->H * c->P * c->N, ny = (size_t)c->T * c->H * c->P;
    float    *state = g_chunk_state ? out + ny : NULL;
    fill_nan(c->work, nw);
    if (state)
        memcpy(state, c->s0, sizeof(float) * HPN);
    ssd_scan_chunked(ex, out, state, c->X, c->dA, c->B, c->C, c->T, c->H, c->P, c->N, c->G, c->Q,
                     c->work);
    memcpy(out + ny + (state ? HPN : 0), c->work, sizeof(float) * ssd_nc(c->T, c->Q) * HPN);
}

// ssd_scan_chunked_backward after the forward it needs (out: dX | ddA | dB | dC)
static void run_ssd_scan_chunked_backward(const molt_exec *ex, void *cv, float *out) {
    ssd_case *c = cv;
    size_t    nw = ssd_chunked_backward_work(c->T, c->H, c->P, c->N, c->G, c->Q);
    size_t    ny = (size_t)c->T * c->H * c->P, nb = (size_t)c->T * c->G * c->N;
    float    *y = fbuf(ny);
    fill_nan(c->work, nw);
    ssd_scan_chunked(ex, y, NULL, c->X, c->dA, c->B, c->C, c->T, c->H, c->P, c->N, c->G, c->Q,
                     c->work);
    float *dX = out, *ddA = dX + ny, *dB = ddA + (size_t)c->T * c->H, *dC = dB + nb;
    ssd_scan_chunked_backward(ex, dX, ddA, dB, dC, c->dy, c->X, c->dA, c->B, c->C, c->T, c->H,
                              c->P, c->N, c->G, c->Q, c->work);
    free(y);
}

static const int SCAN_SHAPES[][6] = { // T, H, P, N, G, Q
    {0, 2, 3, 4, 1, 4},     {1, 1, 1, 1, 1, 1},    {5, 2, 3, 4, 1, 2},   {17, 3, 5, 7, 3, 4},
    {17, 4, 8, 16, 2, 64},  {33, 6, 7, 5, 3, 7},   {64, 4, 16, 16, 1, 16}, {100, 2, 8, 8, 2, 1},
    {130, 4, 16, 32, 2, 64}, {200, 8, 8, 16, 4, 32}, {257, 2, 16, 16, 1, 64}};
#define N_SCAN (int)(sizeof(SCAN_SHAPES) / sizeof(SCAN_SHAPES[0]))

static void test_ssd_scan(void) {
    op_stat *sf = stat_new("ssd_scan_chunked", 2e-5, 1);
    op_stat *sb = stat_new("ssd_scan_chunked_backward", 5e-5, 1);
    for (int k = 0; k < N_SCAN; k++) {
        const int *s = SCAN_SHAPES[k];
        int         T = s[0], H = s[1], P = s[2], N = s[3], G = s[4], Q = s[5];
        size_t      HPN = (size_t)H * P * N, ny = (size_t)T * H * P, nb = (size_t)T * G * N;
        size_t      nc = ssd_nc(T, Q);
        ssd_case    c;
        ssd_inputs(&c, T, H, P, N, G, Q, k % 2);
        c.work = fbuf(ssd_chunked_backward_work(T, H, P, N, G, Q));
        double *X = dcopy(c.X, ny), *dA = dcopy(c.dA, (size_t)T * H);
        double *B = dcopy(c.B, nb), *C = dcopy(c.C, nb), *s0 = dcopy(c.s0, HPN);
        double *S = dbuf((size_t)(T + 1) * HPN), *ref = dbuf(ny + HPN + nc * HPN);
        int     Qc = Q < T ? Q : T;
        char    shape[48];
        for (g_chunk_state = 0; g_chunk_state < 2; g_chunk_state++) {
            ref_scan(ref, S, X, dA, B, C, g_chunk_state ? s0 : NULL, T, H, P, N, G);
            double *r = ref + ny;
            if (g_chunk_state) {
                memcpy(r, S + (size_t)T * HPN, sizeof(double) * HPN);
                r += HPN;
            }
            for (size_t ch = 0; ch < nc; ch++) // state entering chunk ch: S[ch·Q]
                memcpy(r + ch * HPN, S + ch * (size_t)Qc * HPN, sizeof(double) * HPN);
            snprintf(shape, sizeof shape, "T,H,P,N,G,Q %dx%dx%dx%dx%dx%d%s", T, H, P, N, G, Q,
                     g_chunk_state ? " +state" : "");
            run_case(sf, run_ssd_scan_chunked, &c, ref, ny + (g_chunk_state ? HPN : 0) + nc * HPN,
                     shape);
        }
        // backward (zero initial state): S from the stateless forward
        ref_scan(ref, S, X, dA, B, C, NULL, T, H, P, N, G);
        double *dy = dcopy(c.dy, ny), *bref = dbuf(ny + (size_t)T * H + 2 * nb);
        ref_scan_backward(bref, bref + ny, bref + ny + (size_t)T * H, bref + ny + (size_t)T * H + nb,
                          dy, S, X, dA, B, C, T, H, P, N, G);
        snprintf(shape, sizeof shape, "T,H,P,N,G,Q %dx%dx%dx%dx%dx%d", T, H, P, N, G, Q);
        run_case(sb, run_ssd_scan_chunked_backward, &c, bref, ny + (size_t)T * H + 2 * nb, shape);
        free(X), free(dA), free(B), free(C), free(s0), free(S), free(ref), free(dy), free(bref);
        ssd_free(&c);
    }
    // the backward reference against central differences (G < H: group sums)
    int     T = 7, H = 4, P = 3, N = 5, G = 2;
    size_t  ny = (size_t)T * H * P, nb = (size_t)T * G * N, na = (size_t)T * H;
    size_t  HPN = (size_t)H * P * N;
    double *X = drand(ny), *dA = drand(na), *B = drand(nb), *C = drand(nb), *dy = drand(ny);
    double *vX = drand(ny), *vA = drand(na), *vB = drand(nb), *vC = drand(nb);
    for (size_t i = 0; i < na; i++)
        dA[i] = 0.5 * dA[i] - 0.5;
    double *S = dbuf((size_t)(T + 1) * HPN), *y = dbuf(ny);
    double *dX = dbuf(ny), *ddA = dbuf(na), *dB = dbuf(nb), *dC = dbuf(nb);
    double *Xs = dbuf(ny), *As = dbuf(na), *Bs = dbuf(nb), *Cs = dbuf(nb), h = 1e-5, L[2];
    ref_scan(y, S, X, dA, B, C, NULL, T, H, P, N, G);
    ref_scan_backward(dX, ddA, dB, dC, dy, S, X, dA, B, C, T, H, P, N, G);
    for (int sg = 0; sg < 2; sg++) {
        shift(Xs, X, vX, sg ? h : -h, ny);
        shift(As, dA, vA, sg ? h : -h, na);
        shift(Bs, B, vB, sg ? h : -h, nb);
        shift(Cs, C, vC, sg ? h : -h, nb);
        ref_scan(y, S, Xs, As, Bs, Cs, NULL, T, H, P, N, G);
        L[sg] = dotd(dy, y, ny);
    }
    check_fd("ssd scan", L[0], L[1], h,
             dotd(dX, vX, ny) + dotd(ddA, vA, na) + dotd(dB, vB, nb) + dotd(dC, vC, nb));
    free(X), free(dA), free(B), free(C), free(dy), free(vX), free(vA), free(vB), free(vC), free(S),
        free(y), free(dX), free(ddA), free(dB), free(dC), free(Xs), free(As), free(Bs), free(Cs);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix (ALGORITHMS.md §1.4), for s ≤ t:
//   M[h,t,s] = (C[t,g]·B[s,g])·exp(Σ_{k=s+1..t} dA[k,h])·cs[s,h]  (+ D[h] when s = t)
// and 0 above the diagonal. Backward from dM (lower triangle; above ignored):
//   dcs[s,h] = Σ_{t≥s} dM·(C_t·B_s)·L,   dC_t = Σ_{h∈g} Σ_{s≤t} dM·L·cs·B_s,
//   dB_s = Σ_{h∈g} Σ_{t≥s} dM·L·cs·C_t,  ddA[k,h] = Σ_{t≥k>s} dM·M0[h,t,s],
//   dD[h] += Σ_t dM[h,t,t]   (M0: M without D; L the decay)

static double seg_decay(const double *dA, int s, int t, int h, int H) {
    double seg = 0;
    for (int k = s + 1; k <= t; k++)
        seg += dA[(size_t)k * H + h];
    return exp(seg);
}
static double dotn(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void ref_materialize(double *M, const double *dA, const double *B, const double *C,
                            const double *cs, const double *D, int T, int H, int N, int G) {
    for (int h = 0; h < H; h++) {
        int g = h / (H / G);
        for (int t = 0; t < T; t++)
            for (int s = 0; s < T; s++) {
                double v = 0;
                if (s <= t)
                    v = dotn(C + ((size_t)t * G + g) * N, B + ((size_t)s * G + g) * N, N) *
                        seg_decay(dA, s, t, h, H) * (cs ? cs[(size_t)s * H + h] : 1.0);
                if (s == t && D)
                    v += D[h];
                M[((size_t)h * T + t) * T + s] = v;
            }
    }
}

static void ref_materialize_backward(double *ddA, double *dB, double *dC, double *dcs, double *dD,
                                     const double *dM, const double *dA, const double *B,
                                     const double *C, const double *cs, int T, int H, int N,
                                     int G) {
    memset(ddA, 0, sizeof(double) * (size_t)T * H);
    memset(dB, 0, sizeof(double) * (size_t)T * G * N);
    memset(dC, 0, sizeof(double) * (size_t)T * G * N);
    if (dcs)
        memset(dcs, 0, sizeof(double) * (size_t)T * H);
    for (int h = 0; h < H; h++) {
        int g = h / (H / G);
        for (int t = 0; t < T; t++) {
            if (dD)
                dD[h] += dM[((size_t)h * T + t) * T + t];
            for (int s = 0; s <= t; s++) {
                const double *Ct = C + ((size_t)t * G + g) * N, *Bs = B + ((size_t)s * G + g) * N;
                double        m = dM[((size_t)h * T + t) * T + s], L = seg_decay(dA, s, t, h, H);
                double        c = cs ? cs[(size_t)s * H + h] : 1.0, cb = dotn(Ct, Bs, N);
                if (dcs)
                    dcs[(size_t)s * H + h] += m * cb * L;
                for (int n = 0; n < N; n++) {
                    dC[((size_t)t * G + g) * N + n] += m * L * c * Bs[n];
                    dB[((size_t)s * G + g) * N + n] += m * L * c * Ct[n];
                }
                for (int k = s + 1; k <= t; k++)
                    ddA[(size_t)k * H + h] += m * cb * L * c;
            }
        }
    }
}

typedef struct mat_case {
    float *dA, *B, *C, *cs, *D, *dM, *dD0, *work;
    int    T, H, N, G;
} mat_case;

static void run_materialize(const molt_exec *ex, void *cv, float *out) {
    mat_case *c = cv;
    ssd_materialize(ex, out, c->dA, c->B, c->C, c->cs, c->D, c->T, c->H, c->N, c->G);
}
// out: ddA | dB | dC | dcolscale (with colscale) | dD (with D, +=)
static void run_materialize_backward(const molt_exec *ex, void *cv, float *out) {
    mat_case *c = cv;
    size_t    na = (size_t)c->T * c->H, nb = (size_t)c->T * c->G * c->N;
    float    *ddA = out, *dB = ddA + na, *dC = dB + nb, *p = dC + nb, *dcs = NULL, *dD = NULL;
    if (c->cs)
        dcs = p, p += na;
    if (c->D) {
        dD = p;
        memcpy(dD, c->dD0, sizeof(float) * (size_t)c->H);
    }
    fill_nan(c->work, ssd_materialize_backward_work(c->T, c->H, c->N, c->G));
    ssd_materialize_backward(ex, ddA, dB, dC, dcs, dD, c->dM, c->dA, c->B, c->C, c->cs, c->D, c->T,
                             c->H, c->N, c->G, c->work);
}

static void test_materialize(void) {
    op_stat  *sf = stat_new("ssd_materialize", 1e-5, 1);
    op_stat  *sb = stat_new("ssd_materialize_backward", 2e-5, 1);
    const int shapes[][4] = {{0, 2, 3, 1},   {1, 1, 1, 1},   {5, 2, 3, 1},  {17, 3, 7, 3},
                             {33, 4, 16, 2}, {64, 2, 16, 1}, {100, 6, 5, 3}, {130, 4, 8, 2}};
    for (int k = 0; k < 8; k++)
        for (int v = 0; v < 4; v++) { // colscale × D; decay regime alternates
            int      T = shapes[k][0], H = shapes[k][1], N = shapes[k][2], G = shapes[k][3];
            size_t   na = (size_t)T * H, nb = (size_t)T * G * N, nM = (size_t)H * T * T;
            mat_case c = {decays(na, (k + v) % 2),
                          frand(nb, -1, 1),
                          frand(nb, -1, 1),
                          v & 1 ? frand(na, 0.01f, 1.0f) : NULL,
                          v & 2 ? frand((size_t)H, -1, 1) : NULL,
                          frand(nM, -1, 1),
                          frand((size_t)H, -1, 1),
                          fbuf(ssd_materialize_backward_work(T, H, N, G)),
                          T,
                          H,
                          N,
                          G};
            double *dA = dcopy(c.dA, na), *B = dcopy(c.B, nb), *C = dcopy(c.C, nb);
            double *cs = c.cs ? dcopy(c.cs, na) : NULL, *D = c.D ? dcopy(c.D, (size_t)H) : NULL;
            double *ref = dbuf(nM);
            ref_materialize(ref, dA, B, C, cs, D, T, H, N, G);
            char shape[48];
            snprintf(shape, sizeof shape, "T,H,N,G %dx%dx%dx%d%s%s", T, H, N, G, cs ? " +cs" : "",
                     D ? " +D" : "");
            run_case(sf, run_materialize, &c, ref, nM, shape);

            double *dM = dcopy(c.dM, nM), *bref = dbuf(3 * na + 2 * nb + (size_t)H);
            double *dcs = bref + na + 2 * nb, *dD = dcs + (cs ? na : 0);
            for (int h = 0; D && h < H; h++)
                dD[h] = c.dD0[h];
            ref_materialize_backward(bref, bref + na, bref + na + nb, cs ? dcs : NULL,
                                     D ? dD : NULL, dM, dA, B, C, cs, T, H, N, G);
            run_case(sb, run_materialize_backward, &c, bref,
                     na + 2 * nb + (cs ? na : 0) + (D ? (size_t)H : 0), shape);
            free(dA), free(B), free(C), free(cs), free(D), free(ref), free(dM), free(bref);
            free(c.dA), free(c.B), free(c.C), free(c.cs), free(c.D), free(c.dM), free(c.dD0),
                free(c.work);
        }
    // the backward reference against central differences (G < H, colscale, D)
    int     T = 6, H = 4, N = 3, G = 2;
    size_t  na = (size_t)T * H, nb = (size_t)T * G * N, nM = (size_t)H * T * T;
    double *dA = drand(na), *B = drand(nb), *C = drand(nb), *cs = drand(na), *D = drand((size_t)H);
    double *vA = drand(na), *vB = drand(nb), *vC = drand(nb), *vcs = drand(na), *vD = drand((size_t)H);
    double *dM = drand(nM), *M = dbuf(nM);
    for (int h = 0; h < H; h++) // the upper triangle is not part of the loss
        for (int t = 0; t < T; t++)
            for (int s = t + 1; s < T; s++)
                dM[((size_t)h * T + t) * T + s] = 0;
    double *ddA = dbuf(na), *dB = dbuf(nb), *dC = dbuf(nb), *dcs = dbuf(na), *dD = dbuf((size_t)H);
    double *As = dbuf(na), *Bs = dbuf(nb), *Cs = dbuf(nb), *css = dbuf(na), *Ds = dbuf((size_t)H);
    double  h = 1e-5, L[2];
    ref_materialize_backward(ddA, dB, dC, dcs, dD, dM, dA, B, C, cs, T, H, N, G);
    for (int sg = 0; sg < 2; sg++) {
        shift(As, dA, vA, sg ? h : -h, na);
        shift(Bs, B, vB, sg ? h : -h, nb);
        shift(Cs, C, vC, sg ? h : -h, nb);
        shift(css, cs, vcs, sg ? h : -h, na);
        shift(Ds, D, vD, sg ? h : -h, (size_t)H);
        ref_materialize(M, As, Bs, Cs, css, Ds, T, H, N, G);
        L[sg] = dotd(dM, M, nM);
    }
    check_fd("ssd_materialize", L[0], L[1], h,
             dotd(ddA, vA, na) + dotd(dB, vB, nb) + dotd(dC, vC, nb) + dotd(dcs, vcs, na) +
                 dotd(dD, vD, (size_t)H));
    free(dA), free(B), free(C), free(cs), free(D), free(vA), free(vB), free(vC), free(vcs), free(vD),
        free(dM), free(M), free(ddA), free(dB), free(dC), free(dcs), free(dD), free(As), free(Bs),
        free(Cs), free(css), free(Ds);
}

// ----------------------------------------------------------------------------
// attention (attn.h). Reference, one head in double: query row t at position
// p0 + t sees keys s ≤ p0 + t,
//   P_ts = softmax_s((q_t·k_s)·hd^-½),   o_t = Σ_s P_ts·v_s
// RoPE rotates the pairs (i, i+hd/2) of each head by ±angle(pos, i) from the
// float tables. Backward (training, p0 = 0), per (b, h):
//   dP = dO·Vᵀ,  dV += Pᵀ·dO,  dS_ts = P_ts·(dP_ts − Σ_s' P_ts'·dP_ts'),
//   dQ = hd^-½·dS·K,  dK += hd^-½·dSᵀ·Q   (kv heads sum over their group)

#define ROPE_MAXPOS 1024

// cos/sin [ROPE_MAXPOS, hd/2], theta 10000 (Llama)
static void rope_tables(float **cs, float **sn, int hd) {
    int half = hd / 2 > 0 ? hd / 2 : 1;
    *cs = fbuf((size_t)ROPE_MAXPOS * half);
    *sn = fbuf((size_t)ROPE_MAXPOS * half);
    for (int p = 0; p < ROPE_MAXPOS; p++)
        for (int i = 0; i < half; i++) {
            double a = p * pow(10000.0, -2.0 * i / (hd > 0 ? hd : 1));
            (*cs)[(size_t)p * half + i] = (float)cos(a);
            (*sn)[(size_t)p * half + i] = (float)sin(a);
        }
}

static void ref_rope(double *x, int ld, int rows, int nh, int hd, int pos0, int period,
                     const int32_t *pos, const float *cs, const float *sn, int inverse) {
    int half = hd / 2;
    for (int r = 0; r < rows; r++) {
        size_t p = (size_t)(pos ? pos[r] : pos0 + r % period);
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < half; i++) {
                double *a = x + (size_t)r * ld + (size_t)h * hd + i, *b = a + half;
                double  c = cs[p * half + i], s = (inverse ? -1.0 : 1.0) * (double)sn[p * half + i];
                double  a0 = *a, b0 = *b;
                *a = a0 * c - b0 * s;
                *b = b0 * c + a0 * s;
            }
    }
}

// one head: P[T, S] (zeros past each row's last key), o[T, hd] (stride ldo; NULL: P only)
static void ref_head(double *P, double *o, int ldo, const double *Q, int ldq, const double *K,
                     int ldk, const double *V, int ldv, int T, int S, int p0, int hd) {
    double scale = 1.0 / sqrt((double)hd);
    for (int t = 0; t < T; t++) {
        double *row = P + (size_t)t * S, m = -INFINITY, sum = 0;
        int     n = p0 + t + 1;
        for (int s = 0; s < S; s++) {
            row[s] = 0;
            if (s < n) {
                row[s] = dotn(Q + (size_t)t * ldq, K + (size_t)s * ldk, hd) * scale;
                m = row[s] > m ? row[s] : m;
            }
        }
        for (int s = 0; s < n; s++)
            sum += row[s] = exp(row[s] - m);
        for (int s = 0; s < n; s++)
            row[s] /= sum;
        for (int i = 0; o && i < hd; i++) {
            double acc = 0;
            for (int s = 0; s < n; s++)
                acc += row[s] * V[(size_t)s * ldv + i];
            o[(size_t)t * ldo + i] = acc;
        }
    }
}

// training forward over qkv [B·T, ld]: P [B,H,T,T], heads [B·T, H·hd] (NULL: P only)
static void ref_train_forward(double *P, double *heads, const double *qkv, int ld, int B, int T,
                              int H, int KV, int hd) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const double *x = qkv + (size_t)b * T * ld;
            int           j = h / (H / KV);
            ref_head(P + ((size_t)b * H + h) * T * T,
                     heads ? heads + (size_t)b * T * H * hd + (size_t)h * hd : NULL, H * hd,
                     x + (size_t)h * hd, ld, x + (size_t)(H + j) * hd, ld,
                     x + (size_t)(H + KV + j) * hd, ld, T, T, 0, hd);
        }
}

// dqkv [B·T, (H+2KV)·hd] from dheads, qkv (ld = (H+2KV)·hd)
static void ref_train_backward(double *dqkv, const double *dheads, const double *qkv, int B, int T,
                               int H, int KV, int hd) {
    int     W = (H + 2 * KV) * hd, ldo = H * hd;
    double  scale = 1.0 / sqrt((double)hd);
    double *P = dbuf((size_t)T * T > 0 ? (size_t)T * T : 1), *dS = dbuf((size_t)T * T + 1);
    memset(dqkv, 0, sizeof(double) * (size_t)B * T * W);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int           j = h / (H / KV);
            size_t        r0 = (size_t)b * T * W;
            const double *Q = qkv + r0 + (size_t)h * hd, *K = qkv + r0 + (size_t)(H + j) * hd;
            const double *V = qkv + r0 + (size_t)(H + KV + j) * hd;
            const double *dO = dheads + (size_t)b * T * ldo + (size_t)h * hd;
            double       *dQ = dqkv + r0 + (size_t)h * hd, *dK = dqkv + r0 + (size_t)(H + j) * hd;
            double       *dV = dqkv + r0 + (size_t)(H + KV + j) * hd;
            ref_head(P, NULL, 0, Q, W, K, W, V, W, T, T, 0, hd);
            for (int t = 0; t < T; t++) {
                double dot = 0;
                for (int s = 0; s <= t; s++) {
                    double dp = dotn(dO + (size_t)t * ldo, V + (size_t)s * W, hd);
                    dS[(size_t)t * T + s] = dp;
                    dot += P[(size_t)t * T + s] * dp;
                    for (int i = 0; i < hd; i++)
                        dV[(size_t)s * W + i] += P[(size_t)t * T + s] * dO[(size_t)t * ldo + i];
                }
                for (int s = 0; s <= t; s++) {
                    double ds = P[(size_t)t * T + s] * (dS[(size_t)t * T + s] - dot) * scale;
                    for (int i = 0; i < hd; i++) {
                        dQ[(size_t)t * W + i] += ds * K[(size_t)s * W + i];
                        dK[(size_t)s * W + i] += ds * Q[(size_t)t * W + i];
                    }
                }
            }
        }
    free(P), free(dS);
}

// --- rope
typedef struct rope_case {
    float         *x, *cs, *sn;
    const int32_t *pos;
    int            ld, rows, nh, hd, pos0, period, inverse;
} rope_case;

static void run_rope(const molt_exec *ex, void *cv, float *out) {
    rope_case *c = cv;
    memcpy(out, c->x, sizeof(float) * (size_t)c->rows * c->ld);
    k_rope(ex, out, c->ld, c->rows, c->nh, c->hd, c->pos0, c->period, c->pos, c->cs, c->sn,
           c->inverse);
}

static void test_rope(void) {
    op_stat  *st = stat_new("rope", 1e-6, 1);
    // rows, nh, hd, pad (ld = nh·hd + pad), pos0, period (0: rows), ragged positions
    const int shapes[][7] = {{0, 2, 8, 0, 0, 0, 0},   {1, 1, 2, 0, 0, 0, 0},
                             {1, 3, 8, 0, 900, 0, 0}, {5, 2, 6, 3, 4, 0, 0},
                             {12, 4, 16, 7, 0, 5, 0}, {7, 3, 64, 0, 0, 0, 1},
                             {40, 6, 128, 64, 0, 13, 0}, {33, 2, 10, 1, 0, 0, 1}};
    for (int k = 0; k < 8; k++) {
        const int *s = shapes[k];
        rope_case  c = {0};
        c.rows = s[0], c.nh = s[1], c.hd = s[2], c.ld = s[1] * s[2] + s[3], c.pos0 = s[4];
        c.period = s[5] ? s[5] : (s[0] > 0 ? s[0] : 1);
        int32_t *pos = NULL;
        if (s[6]) {
            pos = xmalloc(sizeof(int32_t) * (size_t)c.rows);
            for (int r = 0; r < c.rows; r++)
                pos[r] = (int32_t)((r * 7919 + 13) % ROPE_MAXPOS);
            if (c.rows)
                pos[0] = ROPE_MAXPOS - 1;
        }
        c.pos = pos;
        size_t n = (size_t)c.rows * c.ld;
        c.x = frand(n, -2, 2);
        rope_tables(&c.cs, &c.sn, c.hd);
        for (c.inverse = 0; c.inverse < 2; c.inverse++) {
            double *ref = dcopy(c.x, n);
            ref_rope(ref, c.ld, c.rows, c.nh, c.hd, c.pos0, c.period, pos, c.cs, c.sn, c.inverse);
            char shape[48];
            snprintf(shape, sizeof shape, "rows,nh,hd,ld %dx%dx%dx%d%s%s", c.rows, c.nh, c.hd, c.ld,
                     pos ? " ragged" : "", c.inverse ? " inv" : "");
            run_case(st, run_rope, &c, ref, n, shape);
            free(ref);
        }
        // the inverse undoes the forward (to float rounding)
        float *y = fbuf(n ? n : 1);
        memcpy(y, c.x, sizeof(float) * n);
        molt_exec ex = molt_exec_cpu(1);
        k_rope(&ex, y, c.ld, c.rows, c.nh, c.hd, c.pos0, c.period, pos, c.cs, c.sn, 0);
        k_rope(&ex, y, c.ld, c.rows, c.nh, c.hd, c.pos0, c.period, pos, c.cs, c.sn, 1);
        double *x0 = dcopy(c.x, n);
        CHECK(err_max(y, x0, n) <= 1e-6, "rope inverse after forward returns x [%dx%d]", c.rows,
              c.ld);
        free(x0), free(y), free(c.x), free(c.cs), free(c.sn), free(pos);
    }
}

// --- kv_append (out: every k cache, then every v cache, each [KV, cap, hd])
typedef struct kva_case {
    float         *k, *v, *before;
    const int32_t *pos;
    int            ld, rows, KV, hd, cap, pos0, nc, keys_only;
} kva_case;

static void run_kv_append(const molt_exec *ex, void *cv, float *out) {
    kva_case *c = cv;
    size_t    per = (size_t)c->KV * c->cap * c->hd;
    float    *kc[16], *vc[16];
    memcpy(out, c->before, sizeof(float) * 2 * per * c->nc);
    for (int i = 0; i < c->nc; i++) {
        kc[i] = out + per * i;
        vc[i] = out + per * (c->nc + i);
    }
    k_kv_append(ex, kc, c->keys_only ? NULL : vc, c->k, c->keys_only ? NULL : c->v, c->ld,
                c->rows, c->KV, c->hd, c->cap, c->pos0, c->pos);
}

static void test_kv_append(void) {
    op_stat  *st = stat_new("kv_append", 0, 1);
    // rows, KV, hd, pad, cap, pos0, per-row caches
    const int shapes[][7] = {{0, 2, 4, 0, 3, 0, 0}, {1, 1, 1, 0, 1, 0, 0},  {3, 2, 8, 0, 9, 5, 0},
                             {7, 3, 16, 5, 7, 0, 0}, {1, 2, 8, 0, 4, 0, 1},  {5, 2, 6, 3, 11, 0, 1},
                             {16, 4, 64, 0, 40, 0, 1}};
    for (int k = 0; k < 7; k++)
        for (int ko = 0; ko < 2; ko++) {
            const int *s = shapes[k];
            kva_case   c = {0};
            c.rows = s[0], c.KV = s[1], c.hd = s[2], c.ld = s[1] * s[2] + s[3], c.cap = s[4];
            c.pos0 = s[5], c.nc = s[6] ? (s[0] > 0 ? s[0] : 1) : 1, c.keys_only = ko;
            int32_t *pos = NULL;
            if (s[6]) {
                pos = xmalloc(sizeof(int32_t) * (size_t)(c.rows + 1));
                for (int r = 0; r < c.rows; r++)
                    pos[r] = (int32_t)((r * 5 + 2) % c.cap);
            }
            c.pos = pos;
            size_t per = (size_t)c.KV * c.cap * c.hd, n = 2 * per * c.nc;
            c.k = frand((size_t)c.rows * c.ld, -1, 1);
            c.v = frand((size_t)c.rows * c.ld, -1, 1);
            c.before = frand(n, 5, 6);
            double *ref = dcopy(c.before, n);
            for (int r = 0; r < c.rows; r++) {
                int ci = pos ? r : 0, p = pos ? pos[r] : c.pos0 + r;
                for (int j = 0; j < c.KV; j++)
                    for (int i = 0; i < c.hd; i++) {
                        size_t dst = ((size_t)j * c.cap + p) * c.hd + i;
                        size_t src = (size_t)r * c.ld + (size_t)j * c.hd + i;
                        ref[per * ci + dst] = c.k[src];
                        if (!ko)
                            ref[per * (c.nc + ci) + dst] = c.v[src];
                    }
            }
            char shape[48];
            snprintf(shape, sizeof shape, "rows,KV,hd,cap %dx%dx%dx%d%s%s", c.rows, c.KV, c.hd,
                     c.cap, pos ? " rows" : "", ko ? " k" : "");
            run_case(st, run_kv_append, &c, ref, n, shape);
            free(ref), free(c.k), free(c.v), free(c.before), free(pos);
        }
}

// --- attn_prefill / attn_probs: q [T, H·hd], caches [KV, cap, hd]
typedef struct pf_case {
    float *q, *kc, *vc, *work;
    int    T, pos, H, KV, hd, cap;
} pf_case;

static void run_attn_prefill(const molt_exec *ex, void *cv, float *out) {
    pf_case *c = cv;
    fill_nan(c->work, k_attn_prefill_work(c->T, c->pos + c->T, c->H, c->KV, MAX_THREADS));
    k_attn_prefill(ex, out, c->q, c->T, c->pos, c->H, c->KV, c->hd, c->kc, c->vc, c->cap,
                   c->work);
}
static void run_attn_probs(const molt_exec *ex, void *cv, float *out) {
    pf_case *c = cv;
    k_attn_probs(ex, out, c->q, c->T, c->H, c->KV, c->hd, c->kc, c->cap);
}

static void pf_inputs(pf_case *c, int T, int pos, int H, int KV, int hd, int cap) {
    *c = (pf_case){NULL, NULL, NULL, NULL, T, pos, H, KV, hd, cap};
    c->q = frand((size_t)T * H * hd, -1, 1);
    c->kc = frand((size_t)KV * cap * hd, -1, 1);
    c->vc = frand((size_t)KV * cap * hd, -1, 1);
    c->work = fbuf(k_attn_prefill_work(T, pos + T, H, KV, MAX_THREADS) + 1);
}

static void test_attn_prefill(void) {
    op_stat *st = stat_new("attn_prefill", 1e-6, 1);
    op_stat *sp = stat_new("attn_probs", 1e-6, 1);
    // T, pos, H, KV, hd, cap (T = 1: decode; (pos+1)·H·hd ≥ 2^18 threads it)
    const int shapes[][6] = {{0, 0, 2, 1, 8, 4},      {1, 0, 1, 1, 1, 1},
                             {1, 5, 4, 2, 8, 8},      {1, 600, 8, 2, 64, 640},
                             {1, 1100, 4, 4, 64, 1200}, {3, 0, 2, 2, 6, 3},
                             {5, 4, 4, 1, 16, 12},    {17, 0, 6, 3, 10, 20},
                             {33, 40, 8, 4, 64, 80},  {70, 3, 4, 2, 32, 73},
                             {100, 0, 8, 8, 8, 100}};
    for (int k = 0; k < 11; k++) {
        const int *s = shapes[k];
        int        T = s[0], pos = s[1], H = s[2], KV = s[3], hd = s[4], cap = s[5], S = pos + T;
        pf_case    c;
        pf_inputs(&c, T, pos, H, KV, hd, cap);
        double *q = dcopy(c.q, (size_t)T * H * hd), *kc = dcopy(c.kc, (size_t)KV * cap * hd);
        double *vc = dcopy(c.vc, (size_t)KV * cap * hd), *ref = dbuf((size_t)T * H * hd + 1);
        double *P = dbuf((size_t)H * T * S + 1);
        for (int h = 0; h < H; h++) {
            size_t j = (size_t)(h / (H / KV)) * cap * hd;
            ref_head(P + (size_t)h * T * S, ref + (size_t)h * hd, H * hd, q + (size_t)h * hd,
                     H * hd, kc + j, hd, vc + j, hd, T, S, pos, hd);
        }
        char shape[48];
        snprintf(shape, sizeof shape, "T,pos,H,KV,hd %dx%dx%dx%dx%d", T, pos, H, KV, hd);
        run_case(st, run_attn_prefill, &c, ref, (size_t)T * H * hd, shape);
        if (pos == 0) // the probabilities: the same P
            run_case(sp, run_attn_probs, &c, P, (size_t)H * T * T, shape);
        free(q), free(kc), free(vc), free(ref), free(P);
        free(c.q), free(c.kc), free(c.vc), free(c.work);
    }
    // probs == the P the prefill uses (bit for bit): heads of a one-hot V pick P's columns
    {
        int     T = 9, H = 4, KV = 2, hd = 16, cap = 9;
        pf_case c;
        pf_inputs(&c, T, 0, H, KV, hd, cap);
        memset(c.vc, 0, sizeof(float) * (size_t)KV * cap * hd);
        for (int j = 0; j < KV; j++)
            for (int s = 0; s < T; s++)
                c.vc[((size_t)j * cap + s) * hd + s] = 1.0f;
        float    *A = fbuf((size_t)H * T * T), *o = fbuf((size_t)T * H * hd);
        molt_exec ex = molt_exec_cpu(2);
        k_attn_probs(&ex, A, c.q, T, H, KV, hd, c.kc, cap);
        k_attn_prefill(&ex, o, c.q, T, 0, H, KV, hd, c.kc, c.vc, cap, c.work);
        int same = 1;
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                for (int s = 0; s < T; s++)
                    same &= A[((size_t)h * T + t) * T + s] == o[(size_t)t * H * hd + h * hd + s];
        CHECK(same, "attn_probs equals the prefill's probabilities bit for bit");
        free(A), free(o), free(c.q), free(c.kc), free(c.vc), free(c.work);
    }
}

// --- attn_decode_rows: row r over its own caches at pos[r]
typedef struct dr_case {
    float  **kc, **vc;
    float   *q, *work;
    int32_t *pos;
    int      n, H, KV, hd, cap;
} dr_case;

static void run_attn_decode_rows(const molt_exec *ex, void *cv, float *out) {
    dr_case *c = cv;
    fill_nan(c->work, k_attn_decode_rows_work(c->H, c->KV, c->cap, MAX_THREADS));
    k_attn_decode_rows(ex, out, c->q, c->n, c->pos, c->H, c->KV, c->hd, c->kc, c->vc, c->cap,
                       c->work);
}

static void test_attn_decode_rows(void) {
    op_stat *st = stat_new("attn_decode_rows", 1e-6, 1);
    // n, H, KV, hd, cap (Σ(pos+1)·H·hd ≥ 2^16 threads it)
    const int shapes[][5] = {{0, 2, 1, 8, 4},    {1, 1, 1, 4, 3},     {3, 4, 2, 8, 17},
                             {7, 6, 3, 16, 40},  {5, 8, 2, 64, 300},  {9, 4, 4, 32, 130}};
    for (int k = 0; k < 6; k++) {
        const int *s = shapes[k];
        dr_case    c = {0};
        c.n = s[0], c.H = s[1], c.KV = s[2], c.hd = s[3], c.cap = s[4];
        size_t per = (size_t)c.KV * c.cap * c.hd, nq = (size_t)c.n * c.H * c.hd;
        c.kc = xmalloc(sizeof(float *) * (size_t)(c.n + 1));
        c.vc = xmalloc(sizeof(float *) * (size_t)(c.n + 1));
        c.pos = xmalloc(sizeof(int32_t) * (size_t)(c.n + 1));
        c.q = frand(nq, -1, 1);
        c.work = fbuf(k_attn_decode_rows_work(c.H, c.KV, c.cap, MAX_THREADS));
        double *ref = dbuf(nq + 1), *P = dbuf((size_t)c.cap);
        double *q = dcopy(c.q, nq);
        for (int r = 0; r < c.n; r++) {
            c.kc[r] = frand(per, -1, 1);
            c.vc[r] = frand(per, -1, 1);
            c.pos[r] = r == 0 ? c.cap - 1 : (int32_t)((r * 37 + 3) % c.cap); // ragged
            double *kc = dcopy(c.kc[r], per), *vc = dcopy(c.vc[r], per);
            for (int h = 0; h < c.H; h++) {
                size_t j = (size_t)(h / (c.H / c.KV)) * c.cap * c.hd;
                ref_head(P, ref + (size_t)r * c.H * c.hd + (size_t)h * c.hd, c.hd,
                         q + (size_t)r * c.H * c.hd + (size_t)h * c.hd, c.hd, kc + j, c.hd,
                         vc + j, c.hd, 1, c.pos[r] + 1, c.pos[r], c.hd);
            }
            free(kc), free(vc);
        }
        char shape[48];
        snprintf(shape, sizeof shape, "n,H,KV,hd,cap %dx%dx%dx%dx%d", c.n, c.H, c.KV, c.hd,
                 c.cap);
        run_case(st, run_attn_decode_rows, &c, ref, nq, shape);
        // row r equals the single-sequence decode of that token, bit for bit
        if (c.n > 0) {
            int       r = c.n - 1;
            float    *one = fbuf((size_t)c.H * c.hd), *rows = fbuf(nq);
            molt_exec ex = molt_exec_cpu(3);
            k_attn_decode_rows(&ex, rows, c.q, c.n, c.pos, c.H, c.KV, c.hd, c.kc, c.vc, c.cap,
                               c.work);
            float *w1 = fbuf(k_attn_prefill_work(1, c.pos[r] + 1, c.H, c.KV, 3));
            k_attn_prefill(&ex, one, c.q + (size_t)r * c.H * c.hd, 1, c.pos[r], c.H, c.KV, c.hd,
                           c.kc[r], c.vc[r], c.cap, w1);
            CHECK(memcmp(one, rows + (size_t)r * c.H * c.hd, sizeof(float) * c.H * c.hd) == 0,
                  "decode row %d equals its single-sequence decode [%s]", r, shape);
            free(one), free(rows), free(w1);
        }
        for (int r = 0; r < c.n; r++)
            free(c.kc[r]), free(c.vc[r]);
        free(c.kc), free(c.vc), free(c.pos), free(c.q), free(c.work), free(ref), free(P), free(q);
    }
}

// --- single-sequence decode = the float chains of cpu/attn.c's contract, bit for bit: each
// score Σ_i q[i]·k[i] in i order (a multiply, then an add), softmax (k_softmax_scaled), then
// out += p·v key by key. The AVX2 path (8 keys at once, tiles transposed in registers) and the
// scalar one must both give exactly these bits, at any key count (8-key blocks and a tail).
static void test_attn_decode_chain_bits(void) {
    // H, KV, hd, S (keys held)
    const int shapes[][4] = {{4, 4, 64, 37}, {6, 3, 16, 9}, {8, 2, 8, 130}, {2, 1, 128, 300},
                             {3, 3, 24, 7},  {4, 1, 32, 64}};
    for (int k = 0; k < 6; k++) {
        int    H = shapes[k][0], KV = shapes[k][1], hd = shapes[k][2], S = shapes[k][3];
        int    grp = H / KV, cap = S + 3;
        size_t per = (size_t)KV * cap * hd;
        float *kc = frand(per, -1, 1), *vc = frand(per, -1, 1), *q = frand((size_t)H * hd, -1, 1);
        float *out = fbuf((size_t)H * hd), *ref = fbuf((size_t)H * hd), *p = fbuf((size_t)S);
        float *w = fbuf(k_attn_prefill_work(1, S, H, KV, 2));
        molt_exec ex = molt_exec_cpu(2);
        k_attn_prefill(&ex, out, q, 1, S - 1, H, KV, hd, kc, vc, cap, w);
        float scale = 1.0f / sqrtf((float)hd);
        for (int h = 0; h < H; h++) {
            const float *K = kc + (size_t)(h / grp) * cap * hd, *V = vc + (size_t)(h / grp) * cap * hd;
            const float *qh = q + (size_t)h * hd;
            for (int s = 0; s < S; s++) {
                float d = 0.0f;
                for (int i = 0; i < hd; i++) {
                    float m = qh[i] * K[(size_t)s * hd + i];
                    d = d + m;
                }
                p[s] = d * scale;
            }
            k_softmax_scaled(p, S, 1.0f);
            float *o = ref + (size_t)h * hd;
            for (int i = 0; i < hd; i++)
                o[i] = 0.0f;
            for (int s = 0; s < S; s++)
                for (int i = 0; i < hd; i++) {
                    float m = p[s] * V[(size_t)s * hd + i];
                    o[i] = o[i] + m;
                }
        }
        CHECK(memcmp(out, ref, sizeof(float) * (size_t)H * hd) == 0,
              "decode attention = the float chain order bit for bit [H %d KV %d hd %d S %d]", H,
              KV, hd, S);
        free(kc), free(vc), free(q), free(out), free(ref), free(p), free(w);
    }
}

// --- training forward (out: P | heads, or P alone) and backward (out: dqkv)
typedef struct at_case {
    float *qkv, *P, *dheads, *work;
    int    ld, B, T, H, KV, hd, probs_only;
} at_case;

static void run_attn_train_forward(const molt_exec *ex, void *cv, float *out) {
    at_case *c = cv;
    size_t   nP = (size_t)c->B * c->H * c->T * c->T;
    k_attn_train_forward(ex, out, c->probs_only ? NULL : out + nP, c->qkv, c->ld, c->B, c->T,
                         c->H, c->KV, c->hd);
}
static void run_attn_train_backward(const molt_exec *ex, void *cv, float *out) {
    at_case *c = cv;
    fill_nan(c->work, k_attn_train_backward_work(c->B, c->T, c->H, c->KV, c->hd));
    k_attn_train_backward(ex, out, c->dheads, c->qkv, c->P, c->B, c->T, c->H, c->KV, c->hd,
                          c->work);
}

static void test_attn_train(void) {
    op_stat *sf = stat_new("attn_train_forward", 1e-6, 1);
    op_stat *sb = stat_new("attn_train_backward", 5e-6, 1);
    // B, T, H, KV, hd (T > 64: several row blocks; T²·hd·B·H ≥ 1e5 threads it)
    const int shapes[][5] = {{0, 5, 2, 1, 8},   {1, 1, 1, 1, 4},   {2, 5, 2, 1, 8},
                             {1, 17, 4, 2, 16}, {3, 33, 4, 4, 8},  {2, 64, 6, 3, 16},
                             {1, 70, 2, 1, 32}, {2, 130, 4, 2, 16}, {1, 65, 8, 2, 64}};
    for (int k = 0; k < 9; k++) {
        const int *s = shapes[k];
        int        B = s[0], T = s[1], H = s[2], KV = s[3], hd = s[4], W = (H + 2 * KV) * hd;
        size_t     BT = (size_t)B * T, nP = (size_t)B * H * T * T, nh = BT * H * hd;
        char       shape[48];
        for (int mode = 0; mode < 3; mode++) { // fused W, padded rows, probabilities only
            at_case c = {0};
            c.B = B, c.T = T, c.H = H, c.KV = KV, c.hd = hd, c.probs_only = mode == 2;
            c.ld = mode == 0 ? W : mode == 1 ? W + 5 : (H + KV) * hd;
            c.qkv = frand(BT * c.ld, -1, 1);
            double *x = dcopy(c.qkv, BT * c.ld), *ref = dbuf(nP + nh + 1);
            ref_train_forward(ref, c.probs_only ? NULL : ref + nP, x, c.ld, B, T, H, KV, hd);
            snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d%s", B, T, H, KV, hd,
                     mode == 1 ? " ld+5" : mode == 2 ? " P only" : "");
            run_case(sf, run_attn_train_forward, &c, ref, nP + (c.probs_only ? 0 : nh), shape);
            if (mode == 0) { // backward from the reference P (rounded to float)
                c.P = fbuf(nP + 1);
                for (size_t i = 0; i < nP; i++)
                    c.P[i] = (float)ref[i];
                c.dheads = frand(nh, -1, 1);
                c.work = fbuf(k_attn_train_backward_work(B, T, H, KV, hd) + 1);
                double *dO = dcopy(c.dheads, nh), *bref = dbuf(BT * W + 1);
                ref_train_backward(bref, dO, x, B, T, H, KV, hd);
                snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d", B, T, H, KV, hd);
                run_case(sb, run_attn_train_backward, &c, bref, BT * W, shape);
                free(c.P), free(c.dheads), free(c.work), free(dO), free(bref);
            }
            free(c.qkv), free(x), free(ref);
        }
    }
    // the backward reference against central differences (GQA: grp = 2, two sequences)
    int     B = 2, T = 5, H = 4, KV = 2, hd = 6, W = (H + 2 * KV) * hd;
    size_t  nx = (size_t)B * T * W, nh = (size_t)B * T * H * hd, nP = (size_t)B * H * T * T;
    double *x = drand(nx), *vx = drand(nx), *dO = drand(nh), *g = dbuf(nx), *xs = dbuf(nx);
    double *P = dbuf(nP), *heads = dbuf(nh), h = 1e-5, L[2];
    ref_train_backward(g, dO, x, B, T, H, KV, hd);
    for (int sg = 0; sg < 2; sg++) {
        shift(xs, x, vx, sg ? h : -h, nx);
        ref_train_forward(P, heads, xs, W, B, T, H, KV, hd);
        L[sg] = dotd(dO, heads, nh);
    }
    check_fd("attn_train", L[0], L[1], h, dotd(g, vx, nx));
    free(x), free(vx), free(dO), free(g), free(xs), free(P), free(heads);
}

// --- flash-style training attention (attn.h): out heads | lse; backward dqkv
// from the reference heads and lse (rounded to float). References: the same
// double-precision forward and backward as the P-saving ops, lse from the
// scores in double.
typedef struct fl_case {
    float *qkv, *dheads, *heads, *lse, *work;
    int    ld, B, T, H, KV, hd;
} fl_case;

static void run_attn_flash_forward(const molt_exec *ex, void *cv, float *out) {
    fl_case *c = cv;
    size_t   nh = (size_t)c->B * c->T * c->H * c->hd;
    k_attn_flash_forward(ex, out, out + nh, c->qkv, c->ld, c->B, c->T, c->H, c->KV, c->hd);
}
static void run_attn_flash_backward(const molt_exec *ex, void *cv, float *out) {
    fl_case *c = cv;
    fill_nan(c->work, k_attn_flash_backward_work(c->B, c->T, c->H, c->KV, c->hd));
    k_attn_flash_backward(ex, out, c->dheads, c->qkv, c->heads, c->lse, c->B, c->T, c->H, c->KV,
                          c->hd, c->work);
}

// lse[b,h,t] = log Σ_{s≤t} exp((q_t·k_s)·hd^-½) in double
static void ref_lse(double *lse, const double *x, int ld, int B, int T, int H, int KV, int hd) {
    double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *q = x + ((size_t)b * T + t) * ld + (size_t)h * hd;
                double        m = -INFINITY, l = 0.0, sc;
                for (int pass = 0; pass < 2; pass++)
                    for (int s = 0; s <= t; s++) {
                        const double *k = x + ((size_t)b * T + s) * ld +
                                          (size_t)(H + h / (H / KV)) * hd;
                        sc = dotd(q, k, (size_t)hd) * scale;
                        if (pass == 0)
                            m = sc > m ? sc : m;
                        else
                            l += exp(sc - m);
                    }
                lse[((size_t)b * H + h) * T + t] = m + log(l);
            }
}

static void test_attn_flash(void) {
    op_stat  *sf = stat_new("attn_flash_forward", 2e-6, 1);
    op_stat  *sb = stat_new("attn_flash_backward", 1e-5, 1);
    const int shapes[][5] = {{0, 5, 2, 1, 8},   {1, 1, 1, 1, 4},   {2, 5, 2, 1, 8},
                             {1, 17, 4, 2, 16}, {3, 33, 4, 4, 8},  {2, 64, 6, 3, 16},
                             {1, 70, 2, 1, 32}, {2, 130, 4, 2, 16}, {1, 65, 8, 2, 64}};
    for (int k = 0; k < 9; k++) {
        const int *s = shapes[k];
        int        B = s[0], T = s[1], H = s[2], KV = s[3], hd = s[4], W = (H + 2 * KV) * hd;
        size_t     BT = (size_t)B * T, nP = (size_t)B * H * T * T, nh = BT * H * hd;
        size_t     nl = (size_t)B * H * T;
        char       shape[48];
        for (int mode = 0; mode < 2; mode++) { // fused W, padded rows
            fl_case c = {0};
            c.B = B, c.T = T, c.H = H, c.KV = KV, c.hd = hd, c.ld = mode ? W + 5 : W;
            c.qkv = frand(BT * c.ld, -1, 1);
            double *x = dcopy(c.qkv, BT * c.ld), *P = dbuf(nP + 1), *ref = dbuf(nh + nl + 1);
            ref_train_forward(P, ref, x, c.ld, B, T, H, KV, hd);
            ref_lse(ref + nh, x, c.ld, B, T, H, KV, hd);
            snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d%s", B, T, H, KV, hd,
                     mode ? " ld+5" : "");
            run_case(sf, run_attn_flash_forward, &c, ref, nh + nl, shape);
            if (mode == 0) {
                c.heads = fbuf(nh + 1), c.lse = fbuf(nl + 1);
                for (size_t i = 0; i < nh; i++)
                    c.heads[i] = (float)ref[i];
                for (size_t i = 0; i < nl; i++)
                    c.lse[i] = (float)ref[nh + i];
                c.dheads = frand(nh, -1, 1);
                c.work = fbuf(k_attn_flash_backward_work(B, T, H, KV, hd) + 1);
                double *dO = dcopy(c.dheads, nh), *bref = dbuf(BT * W + 1);
                ref_train_backward(bref, dO, x, B, T, H, KV, hd);
                snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d", B, T, H, KV, hd);
                run_case(sb, run_attn_flash_backward, &c, bref, BT * W, shape);
                free(c.heads), free(c.lse), free(c.dheads), free(c.work), free(dO), free(bref);
            }
            free(c.qkv), free(x), free(P), free(ref);
        }
    }
}

// ----------------------------------------------------------------------------
// ssm rows (ssm_rows.h, ALGORITHMS.md §1.2, §2.2): the mixers' prep and gate
// stages and their backward passes, column sums, the batched-decode steps.
//   prep:  a = act(xc) (silu for Mamba-2);  x|B|C = a;
//          Mamba-2: Δ = clamp(softplus(dt + dt_bias)), dA = −Δ·exp(A_log), X = x·Δ
//          Discrete: dA = −softplus(dt)
//   gate:  y' = ypre + D·x;  Mamba-2: gz = y'·silu(z), g = gz·r·w per group,
//          r = (mean gz² + eps)^-½;  Discrete: g = y'·silu(z + z_bias)
// The backward references are the chain rule in double, checked against
// central differences of the forward references (L = Σ cotangent·output).

static double softplus_d(double v) { return v > 20.0 ? v : log1p(exp(v)); }
static double silu_d(double v) { return v * sigmoid_d(v); }
static double dsilu_d(double v) {
    double s = sigmoid_d(v);
    return s * (1.0 + v * (1.0 - s));
}

typedef struct rws_case {
    ssm_rows_cfg c;
    int          n, ldz, Di, GN, Cc, bias, zb, useD;
    // inputs (float) and their double copies
    float  *xc, *zx, *dt_bias, *A_log, *D, *norm_w, *z_bias, *ypre, *xg;
    float  *dX, *dypre, *ddA, *dB, *dC, *dcs, *dg, *x_s, *dlt_s, *rstd_s;
} rws_case;

#define RWS_DT 1 // dt columns start at zx column 1, z at column H + 2
static const float *rws_dt(const rws_case *k) { return k->zx + RWS_DT; }
static const float *rws_z(const rws_case *k) { return k->zx + RWS_DT + k->c.H + 1; }

static void rws_make(rws_case *k, int n, int H, int P, int G, int N, int mamba, int variant) {
    memset(k, 0, sizeof *k);
    k->c = (ssm_rows_cfg){mamba, H, P, G, N, 0.0f, INFINITY, 1e-5f};
    if (mamba && variant == 1)
        k->c.dt_lo = 0.3f, k->c.dt_hi = 1.2f;
    k->n = n, k->Di = H * P, k->GN = G * N, k->Cc = k->Di + 2 * k->GN;
    k->ldz = RWS_DT + H + 1 + k->Di + 2;
    k->bias = variant != 1, k->zb = variant != 2, k->useD = variant != 2;
    size_t nz = (size_t)n, Di = (size_t)k->Di, HH = (size_t)H, GN = (size_t)k->GN;
    k->xc = frand(nz * k->Cc, -3, 3);
    k->zx = frand(nz * k->ldz, -3, 3);
    k->dt_bias = k->bias ? frand(HH, -1, 1) : NULL;
    k->A_log = frand(HH, -1, 1);
    k->D = k->useD ? frand(HH, -1, 1) : NULL;
    k->norm_w = frand(Di, 0.5f, 1.5f);
    k->z_bias = k->zb ? frand(Di, -1, 1) : NULL;
    k->ypre = frand(nz * Di, -2, 2);
    k->xg = frand(nz * Di, -2, 2);
    k->dX = frand(nz * Di, -1, 1);
    k->dypre = frand(nz * Di, -1, 1);
    k->ddA = frand(nz * HH, -1, 1);
    k->dB = frand(nz * GN, -1, 1);
    k->dC = frand(nz * GN, -1, 1);
    k->dcs = frand(nz * HH, -1, 1);
    k->dg = frand(nz * Di, -1, 1);
    // what the forward saved (from the CPU op, 1 thread)
    k->x_s = fbuf(nz * Di), k->dlt_s = fbuf(nz * HH), k->rstd_s = fbuf(nz * G);
    float    *dA = fbuf(nz * HH), *g = fbuf(nz * Di), *yp = fbuf(nz * Di);
    molt_exec ex = molt_exec_cpu(1);
    ssm_prep(&ex, k->x_s, NULL, NULL, NULL, dA, k->dlt_s, k->xc, rws_dt(k), k->ldz,
                 k->dt_bias, k->A_log, n, &k->c);
    memcpy(yp, k->ypre, sizeof(float) * nz * Di);
    ssm_gate(&ex, g, yp, k->rstd_s, NULL, rws_z(k), k->ldz, NULL, k->norm_w, k->z_bias, n,
                 &k->c);
    free(dA), free(g), free(yp);
}

static void rws_free(rws_case *k) {
    float *p[] = {k->xc, k->zx,  k->dt_bias, k->A_log, k->D,   k->norm_w, k->z_bias,
                  k->ypre, k->xg, k->dX, k->dypre, k->ddA, k->dB, k->dC,
                  k->dcs, k->dg, k->x_s, k->dlt_s, k->rstd_s};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

// prep forward in double; dt [n, ldz] view
static void ref_prep(double *x, double *X, double *B, double *C, double *dA, double *dlt,
                     const double *xc, const double *dt, int ldz, const double *dtb,
                     const double *Al, int n, const ssm_rows_cfg *c) {
    int H = c->H, P = c->P, Di = H * P, GN = c->G * c->N, Cc = Di + 2 * GN;
    for (int r = 0; r < n; r++) {
        const double *v = xc + (size_t)r * Cc;
        for (int i = 0; i < Cc; i++) {
            double a = c->mamba ? silu_d(v[i]) : v[i];
            if (i < Di)
                x[(size_t)r * Di + i] = a;
            else if (i < Di + GN)
                B[(size_t)r * GN + i - Di] = a;
            else
                C[(size_t)r * GN + i - Di - GN] = a;
        }
        for (int h = 0; h < H; h++) {
            double dv = dt[(size_t)r * ldz + h];
            if (!c->mamba) {
                dA[(size_t)r * H + h] = -softplus_d(dv);
                continue;
            }
            double d = softplus_d(dv + (dtb ? dtb[h] : 0.0));
            d = d < (double)c->dt_lo ? (double)c->dt_lo : d > (double)c->dt_hi ? (double)c->dt_hi : d;
            dlt[(size_t)r * H + h] = d;
            dA[(size_t)r * H + h] = -d * exp(Al[h]);
            for (int p = 0; p < P; p++)
                X[(size_t)r * Di + h * P + p] = x[(size_t)r * Di + h * P + p] * d;
        }
    }
}

// prep backward in double: dxc [n,Cc], ddt [n,H], hsA [n,H]
static void ref_prep_backward(double *dxc, double *ddt, double *hsA, const double *dX,
                              const double *dyp, const double *ddA, const double *dB,
                              const double *dC, const double *dcs, const double *xc,
                              const double *dt, int ldz, const double *dtb, const double *Al,
                              const double *D, int n, const ssm_rows_cfg *c) {
    int H = c->H, P = c->P, Di = H * P, GN = c->G * c->N, Cc = Di + 2 * GN;
    for (int r = 0; r < n; r++) {
        const double *v = xc + (size_t)r * Cc;
        double       *o = dxc + (size_t)r * Cc;
        for (int h = 0; h < H; h++) {
            double dv = dt[(size_t)r * ldz + h] + (c->mamba && dtb ? dtb[h] : 0.0);
            double sp = softplus_d(dv), d = c->mamba ? sp : 1.0, ddl = 0;
            d = d < (double)c->dt_lo ? (double)c->dt_lo : d > (double)c->dt_hi ? (double)c->dt_hi : d;
            for (int p = 0; p < P; p++) {
                int    i = h * P + p;
                double xv = c->mamba ? silu_d(v[i]) : v[i];
                o[i] = dX[(size_t)r * Di + i] * d + (D ? D[h] * dyp[(size_t)r * Di + i] : 0.0);
                ddl += dX[(size_t)r * Di + i] * xv;
            }
            double g = ddA[(size_t)r * H + h];
            if (c->mamba) {
                double A = -exp(Al[h]);
                ddl += g * A + dcs[(size_t)r * H + h];
                hsA[(size_t)r * H + h] = g * d * A;
                int clamped = sp < (double)c->dt_lo || sp > (double)c->dt_hi;
                ddt[(size_t)r * H + h] = clamped ? 0.0 : ddl * (dv > 20 ? 1.0 : sigmoid_d(dv));
            } else {
                ddt[(size_t)r * H + h] = -g * (dv > 20 ? 1.0 : sigmoid_d(dv));
            }
        }
        for (int i = 0; i < GN; i++) {
            o[Di + i] = dB[(size_t)r * GN + i];
            o[Di + GN + i] = dC[(size_t)r * GN + i];
        }
        if (c->mamba)
            for (int i = 0; i < Cc; i++)
                o[i] *= dsilu_d(v[i]);
    }
}

// gate forward in double: yo = ypre (+ D·x), g, rstd [n,G]
static void ref_gate(double *g, double *yo, double *rstd, const double *ypre, const double *x,
                     const double *z, int ldz, const double *D, const double *w,
                     const double *zb, int n, const ssm_rows_cfg *c) {
    int P = c->P, Di = c->H * P, gs = Di / c->G;
    for (int r = 0; r < n; r++) {
        double *y = yo + (size_t)r * Di, *gr = g + (size_t)r * Di;
        for (int i = 0; i < Di; i++)
            y[i] = ypre[(size_t)r * Di + i] + (x && D ? D[i / P] * x[(size_t)r * Di + i] : 0.0);
        const double *zr = z + (size_t)r * ldz;
        if (!c->mamba) {
            for (int i = 0; i < Di; i++)
                gr[i] = y[i] * silu_d(zr[i] + (zb ? zb[i] : 0.0));
            continue;
        }
        for (int q = 0; q < c->G; q++) {
            double ss = 0;
            for (int i = q * gs; i < (q + 1) * gs; i++) {
                gr[i] = y[i] * silu_d(zr[i]);
                ss += gr[i] * gr[i];
            }
            double rs = 1.0 / sqrt(ss / gs + (double)c->eps);
            for (int i = q * gs; i < (q + 1) * gs; i++)
                gr[i] *= rs * w[i];
            rstd[(size_t)r * c->G + q] = rs;
        }
    }
}

// gate backward in double (ypre: the gate input): dyp, dz [n,Di], dnw [n,Di], hsD [n,H]
static void ref_gate_backward(double *dyp, double *dz, double *dnw, double *hsD,
                              const double *dg, const double *ypre, const double *x,
                              const double *z, int ldz, const double *w, const double *zb, int n,
                              const ssm_rows_cfg *c) {
    int P = c->P, H = c->H, Di = H * P, gs = Di / c->G;
    for (int r = 0; r < n; r++) {
        const double *y = ypre + (size_t)r * Di, *zr = z + (size_t)r * ldz;
        const double *gr = dg + (size_t)r * Di;
        double       *a = dyp + (size_t)r * Di, *b = dz + (size_t)r * Di;
        if (c->mamba) {
            for (int q = 0; q < c->G; q++) {
                double ss = 0, dot = 0;
                for (int i = q * gs; i < (q + 1) * gs; i++)
                    ss += y[i] * silu_d(zr[i]) * y[i] * silu_d(zr[i]);
                double rs = 1.0 / sqrt(ss / gs + (double)c->eps);
                for (int i = q * gs; i < (q + 1) * gs; i++) {
                    double nv = y[i] * silu_d(zr[i]) * rs;
                    dnw[(size_t)r * Di + i] = gr[i] * nv;
                    dot += gr[i] * w[i] * nv;
                }
                dot /= gs;
                for (int i = q * gs; i < (q + 1) * gs; i++) {
                    double nv = y[i] * silu_d(zr[i]) * rs, dgz = rs * (gr[i] * w[i] - nv * dot);
                    a[i] = dgz * silu_d(zr[i]);
                    b[i] = dgz * y[i] * dsilu_d(zr[i]);
                }
            }
        } else {
            for (int i = 0; i < Di; i++) {
                double zz = zr[i] + (zb ? zb[i] : 0.0);
                a[i] = gr[i] * silu_d(zz);
                b[i] = gr[i] * y[i] * dsilu_d(zz);
            }
        }
        for (int h = 0; h < H; h++) {
            double s = 0;
            for (int p = 0; p < P; p++)
                s += a[h * P + p] * x[(size_t)r * Di + h * P + p];
            hsD[(size_t)r * H + h] = s;
        }
    }
}

static const int RWS_SHAPES[][5] = { // n, H, P, G, N
    {0, 2, 3, 1, 4}, {1, 1, 1, 1, 1}, {3, 2, 5, 1, 3}, {7, 4, 8, 2, 5}, {33, 6, 16, 3, 16},
    {300, 8, 16, 2, 16}, {1000, 4, 9, 4, 8}};
#define N_RWS (int)(sizeof(RWS_SHAPES) / sizeof(RWS_SHAPES[0]))
// variants: 0 Mamba-2 (dt_bias, z_bias, D), 1 Mamba-2 clamp, no dt_bias, 2 Discrete
// (no z_bias, no D), 3 Discrete (z_bias, D)
#define N_RWS_VAR 4
static void rws_case_of(rws_case *k, int s, int v) {
    const int *S = RWS_SHAPES[s];
    rws_make(k, S[0], S[1], S[2], S[3], S[4], v < 2, v == 3 ? 0 : v);
}

static void run_ssm_prep(const molt_exec *ex, void *cv, float *out) {
    rws_case *k = cv;
    size_t    n = (size_t)k->n, Di = (size_t)k->Di, GN = (size_t)k->GN, H = (size_t)k->c.H;
    float    *x = out, *B = x + n * Di, *C = B + n * GN, *dA = C + n * GN, *dlt = dA + n * H;
    float    *X = dlt + n * H;
    ssm_prep(ex, x, k->c.mamba ? X : NULL, B, C, dA, k->c.mamba ? dlt : NULL, k->xc, rws_dt(k),
             k->ldz, k->dt_bias, k->A_log, k->n, &k->c);
}

static void run_ssm_prep_backward(const molt_exec *ex, void *cv, float *out) {
    rws_case *k = cv;
    size_t    n = (size_t)k->n, H = (size_t)k->c.H;
    float    *dxc = out, *ddt = dxc + n * k->Cc, *hsA = ddt + n * H;
    float    *dzx = fbuf(n * k->ldz);
    fill_nan(dzx, n * k->ldz);
    ssm_prep_backward(ex, dxc, dzx + RWS_DT, k->c.mamba ? hsA : NULL, k->dX, k->dypre, k->ddA,
                      k->dB, k->dC, k->c.mamba ? k->dcs : NULL, k->xc, k->x_s, k->dlt_s,
                      rws_dt(k), k->ldz, k->dt_bias, k->A_log, k->D, k->n, &k->c);
    k_copy_cols(ex, ddt, H, dzx + RWS_DT, (size_t)k->ldz, n, H);
    free(dzx);
}

static void run_ssm_gate(const molt_exec *ex, void *cv, float *out) {
    rws_case *k = cv;
    size_t    n = (size_t)k->n, Di = (size_t)k->Di;
    float    *g = out, *yo = g + n * Di, *rstd = yo + n * Di;
    memcpy(yo, k->ypre, sizeof(float) * n * Di);
    ssm_gate(ex, g, yo, k->c.mamba ? rstd : NULL, k->xg, rws_z(k), k->ldz, k->D, k->norm_w,
             k->z_bias, k->n, &k->c);
}

// in place, as the inference path calls it: g = ypre
static void run_ssm_gate_inplace(const molt_exec *ex, void *cv, float *out) {
    rws_case *k = cv;
    memcpy(out, k->ypre, sizeof(float) * (size_t)k->n * k->Di);
    ssm_gate(ex, out, out, NULL, k->xg, rws_z(k), k->ldz, k->D, k->norm_w, k->z_bias, k->n, &k->c);
}

static void run_ssm_gate_backward(const molt_exec *ex, void *cv, float *out) {
    rws_case *k = cv;
    size_t    n = (size_t)k->n, Di = (size_t)k->Di, H = (size_t)k->c.H;
    float    *dg = out, *dz = dg + n * Di, *hsD = dz + n * Di, *dnw = hsD + n * H;
    float    *dzx = fbuf(n * k->ldz);
    fill_nan(dzx, n * k->ldz);
    memcpy(dg, k->dg, sizeof(float) * n * Di);
    ssm_gate_backward(ex, dg, dzx + (rws_z(k) - k->zx), k->c.mamba ? dnw : NULL, hsD, k->ypre,
                      k->xg, rws_z(k), k->ldz, k->rstd_s, k->norm_w, k->z_bias, k->n, &k->c);
    k_copy_cols(ex, dz, Di, dzx + (rws_z(k) - k->zx), (size_t)k->ldz, n, Di);
    free(dzx);
}

static void test_ssm_prep(void) {
    op_stat *st = stat_new("ssm_prep", 2e-6, 1);
    op_stat *sb = stat_new("ssm_prep_backward", 2e-5, 1);
    for (int s = 0; s < N_RWS; s++)
        for (int v = 0; v < N_RWS_VAR; v++) {
            rws_case k;
            rws_case_of(&k, s, v);
            size_t  n = (size_t)k.n, Di = (size_t)k.Di, GN = (size_t)k.GN, H = (size_t)k.c.H;
            size_t  nz = n * k.ldz, nout = n * (Di + 2 * GN + H) + (k.c.mamba ? n * (H + Di) : 0);
            double *xc = dcopy(k.xc, n * k.Cc), *zx = dcopy(k.zx, nz);
            double *dtb = dcopy(k.dt_bias, H), *Al = dcopy(k.A_log, H), *D = dcopy(k.D, H);
            double *ref = dbuf(nout + n * Di), *r = ref;
            double *x = r, *B = x + n * Di, *C = B + n * GN, *dA = C + n * GN, *dlt = dA + n * H;
            double *X = k.c.mamba ? dlt + n * H : x;
            ref_prep(x, X, B, C, dA, dlt, xc, zx + RWS_DT, k.ldz, k.dt_bias ? dtb : NULL, Al,
                     k.n, &k.c);
            char shape[48];
            snprintf(shape, sizeof shape, "n %d H %d P %d G %d N %d %s%s", k.n, k.c.H, k.c.P,
                     k.c.G, k.c.N, k.c.mamba ? "m2" : "disc", v == 1 ? " clamp" : "");
            run_case(st, run_ssm_prep, &k, ref, nout, shape);
            // backward
            double *dX = dcopy(k.dX, n * Di), *dyp = dcopy(k.dypre, n * Di);
            double *ddA = dcopy(k.ddA, n * H), *dB = dcopy(k.dB, n * GN), *dC = dcopy(k.dC, n * GN);
            double *dcs = dcopy(k.c.mamba ? k.dcs : NULL, n * H);
            size_t  nb = n * (k.Cc + H) + (k.c.mamba ? n * H : 0);
            double *rb = dbuf(n * (k.Cc + 2 * H));
            ref_prep_backward(rb, rb + n * k.Cc, rb + n * (k.Cc + H), dX, dyp, ddA, dB, dC, dcs,
                              xc, zx + RWS_DT, k.ldz, k.dt_bias ? dtb : NULL, Al,
                              k.D ? D : NULL, k.n, &k.c);
            run_case(sb, run_ssm_prep_backward, &k, rb, nb, shape);
            if (k.n > 0 && k.n <= 7 && v != 1) { // the reference against central differences
                size_t  nc = n * k.Cc;
                double *vx = drand(nc), *vz = drand(nz), *vA = drand(H), *vb = drand(H);
                double *xs = dbuf(nc), *zs = dbuf(nz), *As = dbuf(H), *bs = dbuf(H);
                double *o = dbuf(n * (2 * Di + 2 * GN + 2 * H)), L[2], h = 1e-5;
                for (int sg = 0; sg < 2; sg++) {
                    shift(xs, xc, vx, sg ? h : -h, nc);
                    shift(zs, zx, vz, sg ? h : -h, nz);
                    shift(As, Al, vA, sg ? h : -h, H);
                    shift(bs, dtb, vb, sg ? h : -h, H);
                    double *ox = o, *oB = ox + n * Di, *oC = oB + n * GN, *odA = oC + n * GN;
                    double *odl = odA + n * H, *oX = k.c.mamba ? odl + n * H : ox;
                    ref_prep(ox, oX, oB, oC, odA, odl, xs, zs + RWS_DT, k.ldz,
                             k.dt_bias ? bs : NULL, As, k.n, &k.c);
                    double l = dotd(dX, oX, n * Di) + dotd(ddA, odA, n * H) +
                               dotd(dB, oB, n * GN) + dotd(dC, oC, n * GN);
                    if (k.c.mamba)
                        l += dotd(dcs, odl, n * H);
                    for (size_t i = 0; k.D && i < n * Di; i++)
                        l += D[i % Di / k.c.P] * dyp[i] * ox[i];
                    L[sg] = l;
                }
                double gv = dotd(rb, vx, nc);
                for (size_t rr = 0; rr < n; rr++)
                    for (size_t hh = 0; hh < H; hh++) {
                        double g = rb[nc + rr * H + hh];
                        gv += g * vz[rr * k.ldz + RWS_DT + hh];
                        if (k.c.mamba) {
                            gv += rb[nc + n * H + rr * H + hh] * vA[hh];
                            gv += k.dt_bias ? g * vb[hh] : 0.0;
                        }
                    }
                check_fd("ssm_prep", L[0], L[1], h, gv);
                free(vx), free(vz), free(vA), free(vb), free(xs), free(zs), free(As), free(bs),
                    free(o);
            }
            free(xc), free(zx), free(dtb), free(Al), free(D), free(ref), free(dX), free(dyp),
                free(ddA), free(dB), free(dC), free(dcs), free(rb);
            rws_free(&k);
        }
}

static void test_ssm_gate(void) {
    op_stat *st = stat_new("ssm_gate", 5e-6, 1);
    op_stat *sb = stat_new("ssm_gate_backward", 2e-5, 1);
    for (int s = 0; s < N_RWS; s++)
        for (int v = 0; v < N_RWS_VAR; v++) {
            rws_case k;
            rws_case_of(&k, s, v);
            size_t  n = (size_t)k.n, Di = (size_t)k.Di, H = (size_t)k.c.H, G = (size_t)k.c.G;
            size_t  nz = n * k.ldz;
            double *yp = dcopy(k.ypre, n * Di), *x = dcopy(k.xg, n * Di), *zx = dcopy(k.zx, nz);
            double *D = dcopy(k.D, H), *w = dcopy(k.norm_w, Di), *zb = dcopy(k.z_bias, Di);
            const double *z = zx + (rws_z(&k) - k.zx);
            size_t  nout = 2 * n * Di + (k.c.mamba ? n * G : 0);
            double *ref = dbuf(2 * n * Di + n * G);
            ref_gate(ref, ref + n * Di, ref + 2 * n * Di, yp, x, z, k.ldz, k.D ? D : NULL, w,
                     k.z_bias ? zb : NULL, k.n, &k.c);
            char shape[48];
            snprintf(shape, sizeof shape, "n %d H %d P %d G %d %s%s%s", k.n, k.c.H, k.c.P, k.c.G,
                     k.c.mamba ? "m2" : "disc", k.D ? " D" : "", k.z_bias ? " zb" : "");
            run_case(st, run_ssm_gate, &k, ref, nout, shape);
            run_case(st, run_ssm_gate_inplace, &k, ref, n * Di, shape);
            // backward (ypre: the gate input, as saved by the forward)
            double *dg = dcopy(k.dg, n * Di);
            size_t  nb = 2 * n * Di + n * H + (k.c.mamba ? n * Di : 0);
            double *rb = dbuf(3 * n * Di + n * H);
            ref_gate_backward(rb, rb + n * Di, rb + 2 * n * Di + n * H, rb + 2 * n * Di, dg, yp, x,
                              z, k.ldz, w, k.z_bias ? zb : NULL, k.n, &k.c);
            run_case(sb, run_ssm_gate_backward, &k, rb, nb, shape);
            if (k.n > 0 && k.n <= 7) { // the reference against central differences
                double *vy = drand(n * Di), *vz = drand(nz), *vw = drand(Di);
                double *ys = dbuf(n * Di), *zs = dbuf(nz), *ws = dbuf(Di), *zbs = dbuf(Di);
                double *g = dbuf(2 * n * Di + n * G), L[2], h = 1e-5;
                for (int sg = 0; sg < 2; sg++) {
                    shift(ys, yp, vy, sg ? h : -h, n * Di);
                    shift(zs, zx, vz, sg ? h : -h, nz);
                    shift(ws, w, vw, sg ? h : -h, Di); // norm_w (Mamba-2)
                    shift(zbs, zb, vw, sg ? h : -h, Di); // z_bias (Discrete)
                    ref_gate(g, g + n * Di, g + 2 * n * Di, ys, NULL, zs + (rws_z(&k) - k.zx),
                             k.ldz, NULL, ws, k.z_bias ? zbs : NULL, k.n, &k.c);
                    L[sg] = dotd(dg, g, n * Di);
                }
                double gv = dotd(rb, vy, n * Di);
                for (size_t rr = 0; rr < n; rr++)
                    for (size_t i = 0; i < Di; i++) {
                        double dzv = rb[n * Di + rr * Di + i];
                        gv += dzv * vz[rr * k.ldz + (size_t)(rws_z(&k) - k.zx) + i];
                        if (k.c.mamba)
                            gv += rb[2 * n * Di + n * H + rr * Di + i] * vw[i];
                        else if (k.z_bias)
                            gv += dzv * vw[i];
                    }
                check_fd("ssm_gate", L[0], L[1], h, gv);
                free(vy), free(vz), free(vw), free(ys), free(zs), free(ws), free(zbs), free(g);
            }
            free(yp), free(x), free(zx), free(D), free(w), free(zb), free(ref), free(dg), free(rb);
            rws_free(&k);
        }
}

// column sums: out[j] += Σ_r src[r·ld + j]
typedef struct cs_case {
    float *src, *out0;
    int    rows, cols, ld;
} cs_case;

static void run_colsum(const molt_exec *ex, void *cv, float *out) {
    cs_case *c = cv;
    memcpy(out, c->out0, sizeof(float) * (size_t)c->cols);
    k_colsum(ex, out, c->src, c->rows, c->cols, c->ld);
}

static void test_colsum(void) {
    op_stat  *st = stat_new("colsum", 1e-6, 1);
    const int shapes[][3] = {{0, 5, 5},    {1, 1, 1},     {3, 70, 75},  {17, 64, 64},
                             {1000, 130, 131}, {5000, 3, 7}, {600, 200, 1000}};
    for (int s = 0; s < 7; s++) {
        cs_case c = {NULL, NULL, shapes[s][0], shapes[s][1], shapes[s][2]};
        c.src = frand((size_t)c.rows * c.ld + 1, -1, 1);
        c.out0 = frand((size_t)c.cols, -1, 1);
        double *ref = dbuf((size_t)c.cols);
        for (int j = 0; j < c.cols; j++) {
            ref[j] = (double)c.out0[j];
            for (int r = 0; r < c.rows; r++)
                ref[j] += (double)c.src[(size_t)r * c.ld + j];
        }
        char shape[48];
        snprintf(shape, sizeof shape, "rows %d cols %d ld %d", c.rows, c.cols, c.ld);
        run_case(st, run_colsum, &c, ref, (size_t)c.cols, shape);
        free(ref), free(c.src), free(c.out0);
    }
}

// batched decode steps: row r = conv1d_causal / ssd_step with T = 1 on state[r]
typedef struct dec_case {
    float *x, *w, *b, *s0, *dA, *B, *C;
    int    n, a, b2, c3, d4; // conv: Cc, K; scan: H, P, N, G
} dec_case;

static void run_conv1d_causal_rows(const molt_exec *ex, void *cv, float *out) {
    dec_case *c = cv;
    size_t    Cc = (size_t)c->a, S = Cc * (size_t)(c->b2 - 1), n = (size_t)c->n;
    float    *st = out + n * Cc, **sp = xmalloc(sizeof(float *) * (n ? n : 1));
    memcpy(st, c->s0, sizeof(float) * n * S);
    for (size_t r = 0; r < n; r++)
        sp[r] = st + r * S;
    conv1d_causal_rows(ex, out, c->x, c->w, c->b, sp, c->n, c->a, c->b2);
    free(sp);
}

static void run_ssd_step_rows(const molt_exec *ex, void *cv, float *out) {
    dec_case *c = cv;
    size_t    HP = (size_t)c->a * c->b2, S = HP * (size_t)c->c3, n = (size_t)c->n;
    float    *st = out + n * HP, **sp = xmalloc(sizeof(float *) * (n ? n : 1));
    memcpy(st, c->s0, sizeof(float) * n * S);
    for (size_t r = 0; r < n; r++)
        sp[r] = st + r * S;
    ssd_step_rows(ex, out, sp, c->x, c->dA, c->B, c->C, c->n, c->a, c->b2, c->c3, c->d4);
    free(sp);
}

static void test_step_rows(void) {
    op_stat  *sc = stat_new("conv1d_causal_rows", 2e-6, 1);
    const int cs[][3] = {{0, 4, 4}, {1, 1, 1}, {3, 5, 4}, {9, 70, 4}, {64, 300, 4}, {5, 8, 1},
                         {4, 6, 7}};
    for (int s = 0; s < 7; s++) {
        int      n = cs[s][0], Cc = cs[s][1], K = cs[s][2];
        size_t   S = (size_t)Cc * (K - 1);
        dec_case c = {frand((size_t)n * Cc, -1, 1), frand((size_t)Cc * K, -1, 1),
                      s % 2 ? NULL : frand((size_t)Cc, -1, 1), frand((size_t)n * S, -1, 1),
                      NULL, NULL, NULL, n, Cc, K, 0, 0};
        double *x = dcopy(c.x, (size_t)n * Cc), *w = dcopy(c.w, (size_t)Cc * K);
        double *b = dcopy(c.b, (size_t)Cc), *s0 = dcopy(c.s0, (size_t)n * S);
        double *ref = dbuf((size_t)n * (Cc + S));
        for (int r = 0; r < n; r++)
            ref_conv(ref + (size_t)r * Cc, ref + (size_t)n * Cc + r * S, x + (size_t)r * Cc, w,
                     c.b ? b : NULL, s0 + r * S, 1, Cc, K);
        char shape[48];
        snprintf(shape, sizeof shape, "n %d Cc %d K %d%s", n, Cc, K, c.b ? " b" : "");
        run_case(sc, run_conv1d_causal_rows, &c, ref, (size_t)n * (Cc + S), shape);
        free(x), free(w), free(b), free(s0), free(ref), free(c.x), free(c.w), free(c.b),
            free(c.s0);
    }
    op_stat  *ss = stat_new("ssd_step_rows", 2e-6, 1);
    const int ds[][5] = {{0, 2, 2, 2, 1}, {1, 1, 1, 1, 1}, {3, 4, 3, 5, 2}, {40, 4, 16, 16, 2},
                         {2, 8, 16, 32, 8}, {7, 6, 5, 3, 3}};
    for (int s = 0; s < 6; s++) {
        int      n = ds[s][0], H = ds[s][1], P = ds[s][2], N = ds[s][3], G = ds[s][4];
        size_t   HP = (size_t)H * P, S = HP * N, GN = (size_t)G * N;
        dec_case c = {frand((size_t)n * HP, -1, 1), NULL, NULL, frand((size_t)n * S, -1, 1),
                      frand((size_t)n * H, -2, 0), frand((size_t)n * GN, -1, 1),
                      frand((size_t)n * GN, -1, 1), n, H, P, N, G};
        double *X = dcopy(c.x, (size_t)n * HP), *dA = dcopy(c.dA, (size_t)n * H);
        double *B = dcopy(c.B, (size_t)n * GN), *C = dcopy(c.C, (size_t)n * GN);
        double *s0 = dcopy(c.s0, (size_t)n * S), *Sb = dbuf(2 * S);
        double *ref = dbuf((size_t)n * (HP + S));
        for (int r = 0; r < n; r++) {
            ref_scan(ref + (size_t)r * HP, Sb, X + (size_t)r * HP, dA + (size_t)r * H,
                     B + (size_t)r * GN, C + (size_t)r * GN, s0 + r * S, 1, H, P, N, G);
            memcpy(ref + (size_t)n * HP + r * S, Sb + S, sizeof(double) * S);
        }
        char shape[48];
        snprintf(shape, sizeof shape, "n %d H %d P %d N %d G %d", n, H, P, N, G);
        run_case(ss, run_ssd_step_rows, &c, ref, (size_t)n * (HP + S), shape);
        free(X), free(dA), free(B), free(C), free(s0), free(Sb), free(ref), free(c.x), free(c.s0),
            free(c.dA), free(c.B), free(c.C);
    }
}

// ----------------------------------------------------------------------------
// add_rmsnorm (kernels.h): s = a + b, y = rmsnorm(s)·w — against the double
// rmsnorm of the float sums, and bit for bit k_add then k_rmsnorm_forward

typedef struct arn_case {
    float *a, *b, *w;
    int    T, d, alias; // alias: s is a (the residual stream updated in place)
} arn_case;

static void run_add_rmsnorm(const molt_exec *ex, void *cv, float *out) {
    arn_case *c = cv;
    size_t    n = (size_t)c->T * c->d;
    float    *s = out;
    if (c->alias)
        memcpy(s, c->a, sizeof(float) * n);
    k_add_rmsnorm(ex, s, out + n, out + 2 * n, c->alias ? s : c->a, c->b, c->w, c->T, c->d,
                  RMS_EPS);
}

static void test_add_rmsnorm(void) {
    op_stat *st = stat_new("add_rmsnorm", 1e-5, 1);
    for (int k = 0; k < N_RMS; k++)
        for (int alias = 0; alias < 2; alias++) {
            int      T = RMS_SHAPES[k][0], d = RMS_SHAPES[k][1];
            size_t   n = (size_t)T * d;
            arn_case c = {frand(n, -1, 1), frand(n, -1, 1), frand((size_t)d, 0.5f, 1.5f), T, d,
                          alias};
            if (T > 2) // a zero sum row
                for (int i = 0; i < d; i++)
                    c.b[(size_t)d + i] = -c.a[(size_t)d + i];
            float  *sf = fbuf(n);
            double *ref = dbuf(2 * n + (size_t)T), *wd = dcopy(c.w, (size_t)d);
            for (size_t i = 0; i < n; i++)
                sf[i] = c.a[i] + c.b[i], ref[i] = (double)sf[i];
            ref_rmsnorm(ref + n, ref + 2 * n, ref, wd, T, d);
            char shape[48];
            snprintf(shape, sizeof shape, "T,d %dx%d%s", T, d, alias ? " s=a" : "");
            run_case(st, run_add_rmsnorm, &c, ref, 2 * n + (size_t)T, shape);
            // the two ops in turn: the same bits
            float *o1 = fbuf(2 * n + (size_t)T + 1), *o2 = fbuf(2 * n + (size_t)T + 1);
            run_add_rmsnorm(TEX, &c, o1);
            k_add(TEX, o2, c.a, c.b, n);
            k_rmsnorm_forward(TEX, o2 + n, o2 + 2 * n, o2, c.w, T, d, RMS_EPS);
            CHECK(memcmp(o1, o2, sizeof(float) * (2 * n + (size_t)T)) == 0,
                  "add_rmsnorm != add + rmsnorm_forward at %s", shape);
            free(o1), free(o2), free(sf), free(ref), free(wd), free(c.a), free(c.b), free(c.w);
        }
}

// ----------------------------------------------------------------------------
// ssm_decode_rows (ssm_rows.h): the whole decode step of a G == H mixer from
// the in_proj output — against the double chain ref_conv → ref_prep →
// ref_scan → ref_gate, and bit for bit the stage ops one by one

typedef struct sdr_case {
    ssm_rows_cfg    c;
    ssm_decode_args a;
    int             n, Cc, S1, S2; // conv channels; per-row conv / ssm state floats
    float          *zx, *cs0, *ss0;
} sdr_case;

// a.state_bf16: the states as bf16 (ss0 rounded), their new values widened into out
static void run_ssm_decode_rows(const molt_exec *ex, void *cv, float *out) {
    sdr_case *k = cv;
    size_t    n = (size_t)k->n, Di = (size_t)k->c.H * k->c.P;
    float    *cs = out + n * Di, *ss = cs + n * k->S1;
    float   **pc = xmalloc(sizeof(float *) * (n + 1)), **ps = xmalloc(sizeof(float *) * (n + 1));
    float    *work = fbuf(ssm_decode_rows_work(k->n, &k->c) + 1);
    uint16_t *s16 = xmalloc(sizeof(uint16_t) * (n * k->S2 + 1));
    memcpy(cs, k->cs0, sizeof(float) * n * k->S1);
    memcpy(ss, k->ss0, sizeof(float) * n * k->S2);
    for (size_t i = 0; i < n * k->S2; i++)
        s16[i] = molt_f32_to_bf16(k->ss0[i]);
    for (size_t r = 0; r < n; r++)
        pc[r] = cs + r * k->S1,
        ps[r] = k->a.state_bf16 ? (float *)(void *)(s16 + r * k->S2) : ss + r * k->S2;
    ssm_decode_rows(ex, out, k->zx, pc, ps, k->n, &k->c, &k->a, work);
    for (size_t i = 0; k->a.state_bf16 && i < n * k->S2; i++)
        ss[i] = molt_bf16_to_f32(s16[i]);
    free(pc), free(ps), free(work), free(s16);
}

// the stage ops one by one (ssm_mixer.c's unfused path) into out, as run_ssm_decode_rows
static void run_ssm_decode_stages(const molt_exec *ex, const sdr_case *k, float *out) {
    size_t n = (size_t)k->n, H = (size_t)k->c.H, Di = H * k->c.P, GN = (size_t)k->c.G * k->c.N;
    size_t Cc = (size_t)k->Cc;
    float *cs = out + n * Di, *ss = cs + n * k->S1;
    float **pc = xmalloc(sizeof(float *) * (n + 1)), **ps = xmalloc(sizeof(float *) * (n + 1));
    float *xr = fbuf(n * Cc + 1), *xc = fbuf(n * Cc + 1), *x = fbuf(n * Di + 1);
    float *X = fbuf(n * Di + 1), *B = fbuf(n * GN + 1), *C = fbuf(n * GN + 1);
    float *dA = fbuf(n * H + 1), *dlt = fbuf(n * H + 1);
    memcpy(cs, k->cs0, sizeof(float) * n * k->S1);
    memcpy(ss, k->ss0, sizeof(float) * n * k->S2);
    for (size_t r = 0; r < n; r++)
        pc[r] = cs + r * k->S1, ps[r] = ss + r * k->S2;
    const ssm_decode_args *a = &k->a;
    k_copy_cols(ex, xr, Cc, k->zx + a->o_xbc, (size_t)a->ldz, n, Cc);
    conv1d_causal_rows(ex, xc, xr, a->conv_w, a->conv_b, pc, k->n, k->Cc, a->K);
    ssm_prep(ex, x, k->c.mamba ? X : NULL, B, C, dA, dlt, xc, k->zx + a->o_dt, a->ldz, a->dt_bias,
             a->A_log, k->n, &k->c);
    uint16_t *s16 = xmalloc(sizeof(uint16_t) * (n * k->S2 + 1));
    if (k->a.state_bf16) {
        uint16_t **p16 = xmalloc(sizeof(uint16_t *) * (n + 1));
        for (size_t r = 0; r < n; r++)
            p16[r] = s16 + r * k->S2;
        for (size_t i = 0; i < n * k->S2; i++)
            s16[i] = molt_f32_to_bf16(k->ss0[i]);
        ssd_step_rows_bf16(ex, out, p16, k->c.mamba ? X : x, dA, B, C, k->n, k->c.H, k->c.P,
                           k->c.N, k->c.G);
        for (size_t i = 0; i < n * k->S2; i++)
            ss[i] = molt_bf16_to_f32(s16[i]);
        free(p16);
    } else {
        ssd_step_rows(ex, out, ps, k->c.mamba ? X : x, dA, B, C, k->n, k->c.H, k->c.P, k->c.N,
                      k->c.G);
    }
    free(s16);
    ssm_gate(ex, out, out, NULL, x, k->zx + a->o_z, a->ldz, a->D, a->norm_w, a->z_bias, k->n,
             &k->c);
    free(pc), free(ps), free(xr), free(xc), free(x), free(X), free(B), free(C), free(dA),
        free(dlt);
}

static void test_ssm_decode_rows(void) {
    op_stat *st = stat_new("ssm_decode_rows", 1e-5, 1);
    op_stat *s16 = stat_new("ssm_decode_rows (bf16 state)", 0, 1);
    // n, H (= G), P, N, K, mamba, variant (0: every optional input; 1: dt clamp, no conv_b,
    // dt_bias; 2: no D, z_bias)
    const int cs[][7] = {{0, 2, 4, 4, 4, 0, 0},   {1, 1, 1, 1, 1, 0, 0},   {1, 1, 1, 1, 1, 1, 2},
                         {3, 2, 5, 7, 4, 0, 1},   {3, 2, 5, 7, 4, 1, 1},   {2, 4, 33, 9, 3, 1, 0},
                         {5, 3, 64, 64, 4, 0, 2}, {2, 8, 64, 64, 4, 1, 2}, {1, 4, 130, 16, 2, 1, 0},
                         {9, 2, 16, 8, 4, 0, 0}};
    for (int s = 0; s < (int)(sizeof cs / sizeof cs[0]); s++) {
        int      n = cs[s][0], H = cs[s][1], P = cs[s][2], N = cs[s][3], K = cs[s][4];
        int      mamba = cs[s][5], var = cs[s][6];
        sdr_case k;
        memset(&k, 0, sizeof k);
        k.c = (ssm_rows_cfg){mamba, H, P, H, N, 0.0f, INFINITY, 1e-5f};
        if (var == 1)
            k.c.dt_lo = 0.3f, k.c.dt_hi = 1.2f;
        int Di = H * P, GN = H * N, Cc = Di + 2 * GN;
        k.n = n, k.Cc = Cc, k.S1 = Cc * (K - 1), k.S2 = H * P * N;
        ssm_decode_args *a = &k.a;
        a->K = K, a->o_xbc = 1, a->o_z = 1 + Cc + 2, a->o_dt = a->o_z + Di + 1;
        a->ldz = a->o_dt + H + 3;
        size_t nn = (size_t)n;
        k.zx = frand(nn * a->ldz + 1, -2, 2);
        k.cs0 = frand(nn * k.S1 + 1, -1, 1);
        k.ss0 = frand(nn * k.S2 + 1, -1, 1);
        float *cw = frand((size_t)Cc * K, -0.7f, 0.7f), *cb = var == 1 ? NULL : frand(Cc, -1, 1);
        float *dtb = var == 1 ? NULL : frand(H, -1, 1), *Al = frand(H, -1, 1);
        float *D = var == 2 ? NULL : frand(H, -1, 1), *nw = frand(Di, 0.5f, 1.5f);
        float *zb = var == 2 ? NULL : frand(Di, -1, 1);
        a->conv_w = cw, a->conv_b = cb, a->dt_bias = dtb, a->A_log = Al, a->D = D;
        a->norm_w = nw, a->z_bias = zb;
        // the double chain, row by row
        size_t  nout = nn * (Di + k.S1 + k.S2);
        double *ref = dbuf(nout + 1), *zd = dcopy(k.zx, nn * a->ldz);
        double *cwd = dcopy(cw, (size_t)Cc * K), *cbd = cb ? dcopy(cb, Cc) : NULL;
        double *dtbd = dtb ? dcopy(dtb, H) : NULL, *Ald = dcopy(Al, H);
        double *Dd = D ? dcopy(D, H) : NULL, *nwd = dcopy(nw, Di), *zbd = zb ? dcopy(zb, Di) : NULL;
        double *c0 = dcopy(k.cs0, nn * k.S1), *s0 = dcopy(k.ss0, nn * k.S2);
        double *xr = dbuf(Cc), *xc = dbuf(Cc), *x = dbuf(Di), *X = dbuf(Di), *B = dbuf(GN);
        double *C = dbuf(GN), *dA = dbuf(H), *dlt = dbuf(H), *y = dbuf(Di), *Sb = dbuf(2 * (size_t)k.S2);
        double *yo = dbuf(Di), *rs = dbuf(H);
        for (int r = 0; r < n; r++) {
            const double *zr = zd + (size_t)r * a->ldz;
            memcpy(xr, zr + a->o_xbc, sizeof(double) * Cc);
            ref_conv(xc, ref + nn * Di + (size_t)r * k.S1, xr, cwd, cbd, c0 + (size_t)r * k.S1, 1,
                     Cc, K);
            ref_prep(x, X, B, C, dA, dlt, xc, zr + a->o_dt, a->ldz, dtbd, Ald, 1, &k.c);
            ref_scan(y, Sb, mamba ? X : x, dA, B, C, s0 + (size_t)r * k.S2, 1, H, P, N, H);
            memcpy(ref + nn * (Di + k.S1) + (size_t)r * k.S2, Sb + k.S2, sizeof(double) * k.S2);
            ref_gate(ref + (size_t)r * Di, yo, rs, y, x, zr + a->o_z, a->ldz, Dd, nwd, zbd, 1, &k.c);
        }
        char shape[64];
        snprintf(shape, sizeof shape, "n %d H=G %d P %d N %d K %d %s v%d", n, H, P, N, K,
                 mamba ? "mamba2" : "discrete", var);
        run_case(st, run_ssm_decode_rows, &k, ref, nout, shape);
        float *o1 = fbuf(nout + 1), *o2 = fbuf(nout + 1);
        run_ssm_decode_rows(TEX, &k, o1);
        run_ssm_decode_stages(TEX, &k, o2);
        CHECK(memcmp(o1, o2, sizeof(float) * nout) == 0,
              "ssm_decode_rows != the stage ops one by one at %s", shape);
        // the bf16 state: the stage ops' bits (ssd_step_rows_bf16 is held to its own
        // reference by test_state_bf16_step), at every backend and thread count
        k.a.state_bf16 = 1;
        run_ssm_decode_stages(TEX, &k, o2);
        double *r16 = dcopy(o2, nout);
        snprintf(shape, sizeof shape, "n %d H=G %d P %d N %d K %d %s v%d bf16", n, H, P, N, K,
                 mamba ? "mamba2" : "discrete", var);
        run_case(s16, run_ssm_decode_rows, &k, r16, nout, shape);
        run_ssm_decode_rows(TEX, &k, o1);
        CHECK(memcmp(o1, o2, sizeof(float) * nout) == 0,
              "ssm_decode_rows (bf16 state) != the stage ops one by one at %s", shape);
        free(r16);
        free(o1), free(o2), free(ref), free(zd), free(cwd), free(cbd), free(dtbd), free(Ald),
            free(Dd), free(nwd), free(zbd), free(c0), free(s0), free(xr), free(xc), free(x),
            free(X), free(B), free(C), free(dA), free(dlt), free(y), free(Sb), free(yo), free(rs);
        free(k.zx), free(k.cs0), free(k.ss0), free(cw), free(cb), free(dtb), free(Al), free(D),
            free(nw), free(zb);
    }
}

// ----------------------------------------------------------------------------
// bf16 recurrent SSM state (issue 15; ssm_rows.h, kernels.h MOLT_BACKEND_STATE_BF16_OPS):
// ssd_step_rows_bf16 against the double recurrence from the bf16-rounded state,
// bf16_widen / bf16_narrow exactly against molt_bf16_to_f32 / molt_f32_to_bf16

static bool state16_op(const char *op) {
#define STATE16_NAME_(o) !strcmp(op, #o) ||
    return MOLT_BACKEND_STATE_BF16_OPS(STATE16_NAME_) 0;
#undef STATE16_NAME_
}

typedef struct dec16_case {
    float    *x, *dA, *B, *C;
    uint16_t *s0;
    int       n, H, P, N, G;
} dec16_case;

// out = y [n,H,P], then the updated states widened [n,H,P,N]
static void run_ssd_step_rows_bf16(const molt_exec *ex, void *cv, float *out) {
    dec16_case *c = cv;
    size_t      HP = (size_t)c->H * c->P, S = HP * (size_t)c->N, n = (size_t)c->n;
    uint16_t   *st = xmalloc(sizeof(uint16_t) * (n * S + 1));
    uint16_t  **sp = xmalloc(sizeof(uint16_t *) * (n + 1));
    memcpy(st, c->s0, sizeof(uint16_t) * n * S);
    sp[0] = st;
    for (size_t r = 0; r < n; r++)
        sp[r] = st + r * S;
    ssd_step_rows_bf16(ex, out, sp, c->x, c->dA, c->B, c->C, c->n, c->H, c->P, c->N, c->G);
    for (size_t i = 0; i < n * S; i++)
        out[n * HP + i] = molt_bf16_to_f32(st[i]);
    free(sp), free(st);
}

static void test_state_bf16_step(void) {
    // y: f32 arithmetic on the widened state (as ssd_step_rows); the stored
    // state: one bf16 rounding of it, so within 1 bf16 ulp (2^-8 relative) of
    // the rounded double state; the case fails if the state were not rounded
    // to bf16 at all only through the exact check below
    op_stat  *ss = stat_new("ssd_step_rows_bf16", 8e-3, 1);
    const int ds[][5] = {{0, 2, 2, 2, 1}, {1, 1, 1, 1, 1}, {3, 4, 3, 5, 2}, {40, 4, 16, 16, 2},
                         {2, 8, 16, 32, 8}, {7, 6, 5, 3, 3}, {5, 3, 4, 17, 1}};
    size_t exact = 0, total = 0;
    double worst_y = 0.0;
    for (int s = 0; s < 7; s++) {
        int        n = ds[s][0], H = ds[s][1], P = ds[s][2], N = ds[s][3], G = ds[s][4];
        size_t     HP = (size_t)H * P, S = HP * N, GN = (size_t)G * N;
        float     *s0f = frand((size_t)n * S, -2, 2);
        dec16_case c = {frand((size_t)n * HP, -1, 1), frand((size_t)n * H, -2, 0),
                        frand((size_t)n * GN, -1, 1), frand((size_t)n * GN, -1, 1),
                        xmalloc(sizeof(uint16_t) * ((size_t)n * S + 1)), n, H, P, N, G};
        double *s0 = dbuf((size_t)n * S);
        for (size_t i = 0; i < (size_t)n * S; i++) {
            c.s0[i] = molt_f32_to_bf16(s0f[i]);
            s0[i] = (double)molt_bf16_to_f32(c.s0[i]);
        }
        double *X = dcopy(c.x, (size_t)n * HP), *dA = dcopy(c.dA, (size_t)n * H);
        double *B = dcopy(c.B, (size_t)n * GN), *C = dcopy(c.C, (size_t)n * GN);
        double *Sb = dbuf(2 * S), *ref = dbuf((size_t)n * (HP + S));
        for (int r = 0; r < n; r++) {
            ref_scan(ref + (size_t)r * HP, Sb, X + (size_t)r * HP, dA + (size_t)r * H,
                     B + (size_t)r * GN, C + (size_t)r * GN, s0 + r * S, 1, H, P, N, G);
            for (size_t i = 0; i < S; i++) // the double state, rounded to bf16 once
                ref[(size_t)n * HP + r * S + i] =
                    (double)molt_bf16_to_f32(molt_f32_to_bf16((float)Sb[S + i]));
        }
        char shape[48];
        snprintf(shape, sizeof shape, "n %d H %d P %d N %d G %d", n, H, P, N, G);
        run_case(ss, run_ssd_step_rows_bf16, &c, ref, (size_t)n * (HP + S), shape);
        // y alone at the f32 op's tolerance, and the state bits: nearly all
        // equal the rounded double state (a tie straddled by f32 error may differ)
        float     *out = fbuf((size_t)n * (HP + S) + 1);
        molt_exec  ex = molt_exec_cpu(2);
        run_ssd_step_rows_bf16(&ex, &c, out);
        double ey = err_max(out, ref, (size_t)n * HP);
        worst_y = ey > worst_y ? ey : worst_y;
        for (size_t i = 0; i < (size_t)n * S; i++) {
            double o = (double)out[(size_t)n * HP + i];
            exact += o == ref[(size_t)n * HP + i];
            CHECK(molt_bf16_to_f32(molt_f32_to_bf16((float)o)) == (float)o,
                  "ssd_step_rows_bf16: stored state %zu is not a bf16 value", i);
        }
        total += (size_t)n * S;
        free(out), free(s0f), free(s0), free(X), free(dA), free(B), free(C), free(Sb), free(ref);
        free(c.x), free(c.dA), free(c.B), free(c.C), free(c.s0);
    }
    CHECK(worst_y <= 2e-6, "ssd_step_rows_bf16: y error %.3g > 2e-6", worst_y);
    CHECK(exact * 1000 >= total * 999, "ssd_step_rows_bf16: %zu of %zu states exact", exact,
          total);
    printf("  ssd_step_rows_bf16: y error %.3g, %zu / %zu stored states = bf16(double)\n",
           worst_y, exact, total);
}

typedef struct cvt16_case {
    float    *f;
    uint16_t *h;
    size_t    n;
} cvt16_case;

static void run_bf16_widen(const molt_exec *ex, void *cv, float *out) {
    cvt16_case *c = cv;
    k_bf16_widen(ex, out, c->h, c->n);
}

// out = the narrowed values widened back
static void run_bf16_narrow(const molt_exec *ex, void *cv, float *out) {
    cvt16_case *c = cv;
    uint16_t   *h = xmalloc(sizeof(uint16_t) * (c->n + 1));
    memset(h, 0xFF, sizeof(uint16_t) * (c->n + 1)); // NaN bits
    k_bf16_narrow(ex, h, c->f, c->n);
    for (size_t i = 0; i < c->n; i++)
        out[i] = molt_bf16_to_f32(h[i]);
    free(h);
}

static void test_state_bf16_cvt(void) {
    op_stat      *sw = stat_new("bf16_widen", 0.0, 1), *sn = stat_new("bf16_narrow", 0.0, 1);
    const size_t  ns[] = {0, 1, 7, 65535, 65536, 200003};
    // ties to even both ways, the largest bf16, a subnormal, signed zeros
    const float   special[] = {1.00390625f, 1.01171875f, -1.00390625f, 3.3895314e38f, 1e-40f,
                               0.0f, -0.0f};
    for (int s = 0; s < 6; s++) {
        size_t     n = ns[s];
        cvt16_case c = {frand(n + 1, -3, 3), xmalloc(sizeof(uint16_t) * (n + 1)), n};
        for (size_t i = 0; i < n && i < 7; i++)
            c.f[i] = special[i];
        double *rw = dbuf(n + 1), *rn = dbuf(n + 1);
        for (size_t i = 0; i < n; i++) {
            c.h[i] = molt_f32_to_bf16(i < 7 ? c.f[i] : c.f[i] * 1.7f);
            rw[i] = (double)molt_bf16_to_f32(c.h[i]);
            rn[i] = (double)molt_bf16_to_f32(molt_f32_to_bf16(c.f[i]));
        }
        char shape[32];
        snprintf(shape, sizeof shape, "n %zu", n);
        run_case(sw, run_bf16_widen, &c, rw, n, shape);
        if (n >= 7) // the ties are where a wrong rounding shows
            CHECK(rn[0] == 1.0 && rn[1] == 1.015625 && rn[2] == -1.0,
                  "bf16 reference rounding: %g %g %g", rn[0], rn[1], rn[2]);
        run_case(sn, run_bf16_narrow, &c, rn, n, shape);
        free(c.f), free(c.h), free(rw), free(rn);
    }
    // past the largest bf16 by half an ulp rounds into inf; NaN stays NaN
    uint32_t bits[2] = {0x7F7F8000u, 0x7FC00001u};
    float    f[2];
    uint16_t h[2];
    memcpy(f, bits, sizeof f);
    molt_exec ex = molt_exec_cpu(1);
    k_bf16_narrow(&ex, h, f, 2);
    CHECK(h[0] == 0x7F80u && isnan(molt_bf16_to_f32(h[1])), "bf16_narrow: %04x %04x", h[0],
          h[1]);
}

// ----------------------------------------------------------------------------
// training ops (train_ops.h): the losses with their gradients, sumsq, scale
// and AdamW. The loss ops write one double per row and sumsq one per block:
// the run functions copy them (rounded) into the float output for the
// tolerance check, and tr_doubles holds the raw doubles of 2–4 threads to the
// 1-thread run's bits.

static double *g_dbase; // the 1-thread run's doubles of the current case
static size_t  g_dbase_n;

static void tr_doubles(const molt_exec *ex, const char *op, const double *d, size_t n) {
    if (ex->nth == 1) {
        free(g_dbase);
        g_dbase = xmalloc(sizeof(double) * (n ? n : 1));
        memcpy(g_dbase, d, sizeof(double) * n);
        g_dbase_n = n;
    } else {
        CHECK(g_dbase_n == n && memcmp(g_dbase, d, sizeof(double) * n) == 0,
              "%s: the doubles of %d threads differ from 1 thread's", op, ex->nth);
    }
}

static double *dnan(size_t n) {
    double *d = xmalloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = NAN;
    return d;
}

// cross-entropy of a row:  ℓ = logsumexp(x) − x[y],  dx = scale·(softmax(x) − onehot(y));
// ignored rows (y < 0): ℓ = 0, dx = 0
static void ref_xent(double *loss, double *g, const double *x, const int32_t *y, int n, int V,
                     double scale) {
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * V;
        double       *gr = g ? g + (size_t)r * V : NULL;
        if (y[r] < 0) {
            loss[r] = 0;
            for (int v = 0; gr && v < V; v++)
                gr[v] = 0;
            continue;
        }
        double m = xr[0], se = 0;
        for (int v = 1; v < V; v++)
            m = fmax(m, xr[v]);
        for (int v = 0; v < V; v++)
            se += exp(xr[v] - m);
        loss[r] = m + log(se) - xr[y[r]];
        for (int v = 0; gr && v < V; v++)
            gr[v] = scale * (exp(xr[v] - m) / se - (v == y[r]));
    }
}

// soft cross-entropy:  ℓ = −Σ_v p_v·log q_v,  p = softmax(t),  q = softmax(s/τ);
// ds = scale·(q − p)/τ
static void ref_soft_xent(double *loss, double *g, const double *s, const double *t, int n, int V,
                          double tau, double scale) {
    for (int r = 0; r < n; r++) {
        const double *sr = s + (size_t)r * V, *tr = t + (size_t)r * V;
        double        ms = sr[0] / tau, mt = tr[0], zs = 0, zt = 0;
        for (int v = 1; v < V; v++)
            ms = fmax(ms, sr[v] / tau), mt = fmax(mt, tr[v]);
        for (int v = 0; v < V; v++)
            zs += exp(sr[v] / tau - ms), zt += exp(tr[v] - mt);
        double L = 0;
        for (int v = 0; v < V; v++) {
            double p = exp(tr[v] - mt) / zt, lq = sr[v] / tau - ms - log(zs);
            L -= p * lq;
            if (g)
                g[(size_t)r * V + v] = scale * (exp(lq) - p) / tau;
        }
        loss[r] = L;
    }
}

// distance of rows:  ℓ = ‖x − y‖₂,  dx = scale·(x − y)/ℓ (0 when ℓ = 0)
static void ref_l2_rows(double *loss, double *g, const double *x, const double *y, int n,
                        size_t len, double scale) {
    for (int r = 0; r < n; r++) {
        double ss = 0;
        for (size_t i = 0; i < len; i++) {
            double e = x[(size_t)r * len + i] - y[(size_t)r * len + i];
            ss += e * e;
        }
        loss[r] = sqrt(ss);
        for (size_t i = 0; g && i < len; i++)
            g[(size_t)r * len + i] =
                loss[r] > 0 ? scale * (x[(size_t)r * len + i] - y[(size_t)r * len + i]) / loss[r]
                            : 0.0;
    }
}

enum { TR_XENT, TR_SOFT, TR_L2 };

typedef struct loss_case {
    int      op, n, mode; // mode: 0 separate gradient, 1 in place (over x), 2 loss only
    size_t   len;         // row length (V)
    float   *x, *t, tau, scale;
    int32_t *y;
} loss_case;

static const char *const LOSS_OPS[3] = {"xent", "soft_xent", "l2_rows"};

// out: gradient [n, len] (not in mode 2) | the loss of each row
static void run_loss(const molt_exec *ex, void *cv, float *out) {
    loss_case *c = cv;
    size_t     N = (size_t)c->n * c->len;
    double    *loss = dnan((size_t)c->n);
    float     *g = c->mode == 2 ? NULL : out, *lo = out + (c->mode == 2 ? 0 : N);
    const float *x = c->x;
    if (c->mode == 1) {
        memcpy(out, c->x, sizeof(float) * N);
        x = out;
    }
    if (c->op == TR_XENT)
        k_xent(ex, loss, g, x, c->y, c->n, (int)c->len, c->scale);
    else if (c->op == TR_SOFT)
        k_soft_xent(ex, loss, g, x, c->t, c->n, (int)c->len, c->tau, c->scale);
    else
        k_l2_rows(ex, loss, g, x, c->t, c->n, c->len, c->scale);
    for (int r = 0; r < c->n; r++)
        lo[r] = (float)loss[r];
    tr_doubles(ex, LOSS_OPS[c->op], loss, (size_t)c->n);
    free(loss);
}

// rows × length: 0, 1, odd, and past the 65536-float threading threshold
// (by many rows, and by a few very long ones: a 32000-token vocabulary)
static const int XENT_SHAPES[][2] = {{0, 5},    {1, 1},     {1, 7},     {3, 17},  {5, 64},
                                     {9, 100},  {40, 1000}, {70, 1000}, {3, 32000},
                                     {130, 517}};
static const int L2_SHAPES[][2] = {{0, 3},     {1, 1},      {2, 7},     {5, 64},
                                   {30, 4096}, {7, 10000}, {100, 1000}};

static void loss_case_run(op_stat *st, loss_case *c) {
    size_t  N = (size_t)c->n * c->len;
    double *x = dcopy(c->x, N), *t = c->t ? dcopy(c->t, N) : NULL;
    double *ref = dbuf(N + (size_t)c->n), *loss = dbuf((size_t)c->n);
    if (c->op == TR_XENT)
        ref_xent(loss, ref, x, c->y, c->n, (int)c->len, c->scale);
    else if (c->op == TR_SOFT)
        ref_soft_xent(loss, ref, x, t, c->n, (int)c->len, c->tau, c->scale);
    else
        ref_l2_rows(loss, ref, x, t, c->n, c->len, c->scale);
    for (c->mode = 0; c->mode < 3; c->mode++) {
        size_t off = c->mode == 2 ? 0 : N;
        memcpy(ref + off, loss, sizeof(double) * (size_t)c->n);
        char shape[48];
        snprintf(shape, sizeof shape, "n,len %dx%zu%s%s", c->n, c->len,
                 c->op == TR_SOFT && c->tau != 1.0f ? " tau 2.5" : "",
                 c->mode == 1 ? " in place" : c->mode == 2 ? " loss only" : "");
        run_case(st, run_loss, c, ref, off + (size_t)c->n, shape); // (mode 2 comes last)
    }
    free(x), free(t), free(ref), free(loss);
}

// the loss references' gradients against central differences of their losses
static void fd_losses(void) {
    int      n = 3, V = 7;
    size_t   N = (size_t)n * V;
    double  *x = drand(N), *t = drand(N), *v = drand(N), *g = dbuf(N), *xs = dbuf(N);
    double   loss[3], L[2], h = 1e-6, scale = 0.7;
    int32_t  y[3] = {4, -1, 0};
    for (int op = 0; op < 3; op++) {
        if (op == TR_XENT)
            ref_xent(loss, g, x, y, n, V, scale);
        else if (op == TR_SOFT)
            ref_soft_xent(loss, g, x, t, n, V, 2.5, scale);
        else
            ref_l2_rows(loss, g, x, t, n, (size_t)V, scale);
        for (int s = 0; s < 2; s++) {
            shift(xs, x, v, s ? h : -h, N);
            if (op == TR_XENT)
                ref_xent(loss, NULL, xs, y, n, V, scale);
            else if (op == TR_SOFT)
                ref_soft_xent(loss, NULL, xs, t, n, V, 2.5, scale);
            else
                ref_l2_rows(loss, NULL, xs, t, n, (size_t)V, scale);
            L[s] = scale * (loss[0] + loss[1] + loss[2]);
        }
        check_fd(LOSS_OPS[op], L[0], L[1], h, dotd(g, v, N));
    }
    free(x), free(t), free(v), free(g), free(xs);
}

static void test_losses(void) {
    op_stat *st[3] = {stat_new("xent", 2e-6, 1), stat_new("soft_xent", 2e-6, 1),
                      stat_new("l2_rows", 2e-6, 1)};
    int      nx = (int)(sizeof XENT_SHAPES / sizeof XENT_SHAPES[0]);
    int      nl = (int)(sizeof L2_SHAPES / sizeof L2_SHAPES[0]);
    for (int op = 0; op < 3; op++)
        for (int k = 0; k < (op == TR_L2 ? nl : nx); k++) {
            const int *sh = op == TR_L2 ? L2_SHAPES[k] : XENT_SHAPES[k];
            loss_case  c = {op, sh[0], 0, (size_t)sh[1], NULL, NULL, 1.0f, 0.0f, NULL};
            size_t     N = (size_t)c.n * c.len;
            c.x = frand(N, -4, 4);
            c.scale = c.n ? 1.0f / (float)c.n : 1.0f;
            if (op == TR_XENT) {
                c.y = xmalloc(sizeof(int32_t) * (size_t)(c.n ? c.n : 1));
                for (int r = 0; r < c.n; r++) // every 4th row ignored (−1, or PyTorch's −100)
                    c.y[r] = r % 4 == 1 ? (r % 8 == 1 ? -1 : -100) : (r * 7 + 3) % sh[1];
            } else {
                c.t = frand(N, -4, 4);
            }
            if (c.n > 2 && op != TR_L2) // a row of large logits: the max subtraction
                for (size_t i = 0; i < c.len; i++)
                    c.x[2 * c.len + i] *= 100.0f;
            if (c.n > 1 && op == TR_L2) // a row at distance 0: zero gradient
                memcpy(c.x + c.len, c.t + c.len, sizeof(float) * c.len);
            c.tau = op == TR_SOFT && k % 2 ? 2.5f : 1.0f;
            loss_case_run(st[op], &c);
            free(c.x), free(c.t), free(c.y);
        }
    fd_losses();
}

// ---- reverse KL (issue 17): KL(student ‖ teacher) from logits, k_rev_kl

// written from the definition, in double:  q = softmax(s/τ), p = softmax(t),
// ℓ = Σ_v q_v·(log q_v − log p_v);  ds_j = scale·q_j·(a_j − ℓ)/τ, a_v = log q_v − log p_v
static void ref_rev_kl(double *loss, double *g, const double *s, const double *t, int n, int V,
                       double tau, double scale) {
    for (int r = 0; r < n; r++) {
        const double *sr = s + (size_t)r * V, *tr = t + (size_t)r * V;
        double        ms = sr[0] / tau, mt = tr[0], zs = 0, zt = 0;
        for (int v = 1; v < V; v++)
            ms = fmax(ms, sr[v] / tau), mt = fmax(mt, tr[v]);
        for (int v = 0; v < V; v++)
            zs += exp(sr[v] / tau - ms), zt += exp(tr[v] - mt);
        double lzs = ms + log(zs), lzt = mt + log(zt), L = 0;
        for (int v = 0; v < V; v++) {
            double lq = sr[v] / tau - lzs, lp = tr[v] - lzt;
            L += exp(lq) * (lq - lp);
        }
        loss[r] = L;
        for (int v = 0; g && v < V; v++) {
            double lq = sr[v] / tau - lzs, lp = tr[v] - lzt;
            g[(size_t)r * V + v] = scale * exp(lq) * ((lq - lp) - L) / tau;
        }
    }
}

typedef struct rkl_case {
    int    n, V, mode; // mode: 0 separate gradient, 1 in place (over s), 2 loss only
    float *s, *t, tau, scale;
} rkl_case;

// out: gradient [n, V] (not in mode 2) | the loss of each row
static void run_rev_kl(const molt_exec *ex, void *cv, float *out) {
    rkl_case *c = cv;
    size_t    N = (size_t)c->n * c->V;
    double   *loss = dnan((size_t)c->n);
    float    *g = c->mode == 2 ? NULL : out, *lo = out + (c->mode == 2 ? 0 : N);
    const float *s = c->s;
    if (c->mode == 1) {
        memcpy(out, c->s, sizeof(float) * N);
        s = out;
    }
    k_rev_kl(ex, loss, g, s, c->t, c->n, c->V, c->tau, c->scale);
    for (int r = 0; r < c->n; r++)
        lo[r] = (float)loss[r];
    tr_doubles(ex, "rev_kl", loss, (size_t)c->n);
    free(loss);
}

static void test_rev_kl(void) {
    op_stat *st = stat_new("rev_kl", 2e-6, 1);
    int      nx = (int)(sizeof XENT_SHAPES / sizeof XENT_SHAPES[0]);
    for (int k = 0; k < nx; k++) {
        rkl_case c = {XENT_SHAPES[k][0], XENT_SHAPES[k][1], 0, NULL, NULL, 1.0f, 1.0f};
        size_t   N = (size_t)c.n * c.V;
        c.s = frand(N, -4, 4), c.t = frand(N, -4, 4);
        c.scale = c.n ? 1.0f / (float)c.n : 1.0f;
        c.tau = k % 2 ? 2.5f : 1.0f;
        if (c.n > 2) // large logits (the max subtraction): student row 2, teacher row 0
            for (int v = 0; v < c.V; v++)
                c.s[2 * (size_t)c.V + v] *= 100.0f, c.t[v] *= 100.0f;
        if (c.n > 1) // student = teacher (τ 1): KL 0, gradient 0
            memcpy(c.s + c.V, c.t + c.V, sizeof(float) * (size_t)c.V);
        double *s = dcopy(c.s, N), *t = dcopy(c.t, N);
        double *ref = dbuf(N + (size_t)c.n), *loss = dbuf((size_t)c.n + 1);
        ref_rev_kl(loss, ref, s, t, c.n, c.V, c.tau, c.scale);
        for (int r = 0; r < c.n; r++)
            CHECK(loss[r] >= -1e-12, "rev_kl reference: KL %g < 0 (row %d)", loss[r], r);
        for (c.mode = 0; c.mode < 3; c.mode++) {
            size_t off = c.mode == 2 ? 0 : N;
            memcpy(ref + off, loss, sizeof(double) * (size_t)c.n);
            char shape[48];
            snprintf(shape, sizeof shape, "n,V %dx%d%s%s", c.n, c.V,
                     c.tau != 1.0f ? " tau 2.5" : "",
                     c.mode == 1 ? " in place" : c.mode == 2 ? " loss only" : "");
            run_case(st, run_rev_kl, &c, ref, off + (size_t)c.n, shape);
        }
        free(s), free(t), free(ref), free(loss), free(c.s), free(c.t);
    }
    // the reference gradient against central differences of its loss (τ 1 and 2.5)
    int     n = 3, V = 7;
    size_t  N = (size_t)n * V;
    double *x = drand(N), *t = drand(N), *v = drand(N), *g = dbuf(N), *xs = dbuf(N);
    double  loss[3], L[2], h = 1e-6, scale = 0.7;
    for (int ti = 0; ti < 2; ti++) {
        double tau = ti ? 2.5 : 1.0;
        ref_rev_kl(loss, g, x, t, n, V, tau, scale);
        for (int sgn = 0; sgn < 2; sgn++) {
            shift(xs, x, v, sgn ? h : -h, N);
            ref_rev_kl(loss, NULL, xs, t, n, V, tau, scale);
            L[sgn] = scale * (loss[0] + loss[1] + loss[2]);
        }
        check_fd("rev_kl", L[0], L[1], h, dotd(g, v, N));
    }
    // KL(q ‖ p) differs from the forward soft CE's KL(p ‖ q) part: a check that they are
    // not the same loss by accident (rows where p ≠ q)
    double fwd[3];
    ref_rev_kl(loss, NULL, x, t, n, V, 1.0, 1.0);
    ref_soft_xent(fwd, NULL, x, t, n, V, 1.0, 1.0);
    CHECK(fabs(loss[0] - fwd[0]) > 1e-6, "rev_kl equals the soft CE (%g)", loss[0]);
    free(x), free(t), free(v), free(g), free(xs);
}

// ---- decode sampling (issue 12): k_sample_rows against the host sampler (the same token,
// bit for bit: the op promises infer/sample.c's draw with top-k and top-p off) and against
// an independent double-precision reference (argmax with the lowest index among equal
// maxima; the inverse CDF: the id's interval holds the coin, to rounding)

static int sample_ref_ok(const float *l, int V, float temp, float coin, int v) {
    int first = 0;
    for (int u = 0; u < V; u++)
        if (!isfinite(l[u]))
            return v == -1;
    for (int u = 1; u < V; u++)
        if (l[u] > l[first])
            first = u;
    if (temp <= 0.0f || !isfinite(l[first] / temp))
        return v == first;
    if (v < 0 || v >= V)
        return 0;
    double m = (double)(l[first] / temp), S = 0.0, below = 0.0;
    for (int u = 0; u < V; u++) {
        double e = exp((double)(l[u] / temp) - m);
        S += e;
        if (u < v)
            below += e;
    }
    double hi = (below + exp((double)(l[v] / temp) - m)) / S;
    return below / S - 1e-5 <= (double)coin && ((double)coin < hi + 1e-5 || v == V - 1);
}

static void test_sample_rows(void) {
    static const int   shapes[][2] = {{1, 1}, {2, 2}, {3, 33}, {5, 1000}, {4, 32000}};
    static const float temps[] = {0.0f, 1.0f, 0.7f, 2.5f, 1e-30f};
    molt_exec          ex = molt_exec_cpu(2), ex4 = molt_exec_cpu(4);
    int                rows = 0, bad = 0;
    op_stat           *st = stat_new("sample_rows", 0.0, 1);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (size_t ti = 0; ti < sizeof temps / sizeof temps[0]; ti++) {
            int    n = shapes[k][0], V = shapes[k][1];
            float  temp = temps[ti];
            size_t nv = (size_t)n * V;
            float *l = frand(nv, -4, 4), *row = frand((size_t)V, 0, 1);
            float *coin = frand((size_t)n, 0, 1);
            struct prob_index *pi = malloc(sizeof *pi * (size_t)V);
            int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
            if (V > 1) // row 0: two equal maxima (the lower index wins)
                l[V / 2] = l[V - 1] = 9.0f;
            if (n > 1) // row 1: logits far from 0 (the max subtraction)
                for (int v = 0; v < V; v++)
                    l[(size_t)V + v] *= 100.0f;
            if (n > 2) // row 2: a NaN; row 3: an inf (id -1)
                l[2 * (size_t)V + V / 3] = NAN;
            if (n > 3)
                l[3 * (size_t)V] = INFINITY;
            for (int r = 0; r < n; r++) { // the host sampler's first coin for seed 100 + r
                uint64_t rng = 100 + (uint64_t)r;
                coin[r] = sampler_f32(&rng);
            }
            int32_t *idx4 = malloc(sizeof(int32_t) * (size_t)n);
            for (int r = 0; r < n; r++)
                idx[r] = idx4[r] = -7;
            k_sample_rows(&ex, idx, l, coin, temp, n, V);
            k_sample_rows(&ex4, idx4, l, coin, temp, n, V);
            st->thread_diff |= memcmp(idx, idx4, sizeof(int32_t) * (size_t)n) != 0;
            st->cases++;
            if (nv >= st->biggest) {
                st->biggest = nv;
                snprintf(st->shape, sizeof st->shape, "n,V %dx%d", n, V);
            }
            free(idx4);
            for (int r = 0; r < n; r++, rows++) {
                sampler sm;
                sampler_init(&sm, V, temp, 1.0f, 0, 100 + (uint64_t)r, pi);
                memcpy(row, l + (size_t)r * V, sizeof(float) * (size_t)V);
                int want = sampler_sample(&sm, row);
                bad += idx[r] != want ||
                       !sample_ref_ok(l + (size_t)r * V, V, temp, coin[r], idx[r]);
                CHECK(idx[r] == want,
                      "sample_rows n,V %dx%d temperature %g row %d: %d, the host sampler %d", n, V,
                      (double)temp, r, idx[r], want);
                CHECK(sample_ref_ok(l + (size_t)r * V, V, temp, coin[r], idx[r]),
                      "sample_rows n,V %dx%d temperature %g row %d: %d against the reference", n,
                      V, (double)temp, r, idx[r]);
            }
            free(l), free(row), free(coin), free(pi), free(idx);
        }
    // the coin picks the interval: p = (1/4, 3/4)
    float   l2[2] = {0.0f, logf(3.0f)}, c2[4] = {0.0f, 0.2f, 0.3f, 0.99f};
    float   l8[8];
    int32_t got[4];
    for (int r = 0; r < 4; r++) {
        k_sample_rows(&ex, got + r, l2, c2 + r, 1.0f, 1, 2);
        CHECK(got[r] == (r < 2 ? 0 : 1), "sample_rows p (1/4, 3/4) coin %g: %d", (double)c2[r],
              got[r]);
    }
    for (int r = 0; r < 8; r++)
        l8[r] = 0.0f;
    k_sample_rows(&ex, got, l8, NULL, 0.0f, 1, 8); // greedy reads no coin; ties: the first
    CHECK(got[0] == 0, "sample_rows greedy over equal logits: %d", got[0]);
    CHECK(!st->thread_diff, "sample_rows: 2 and 4 threads give different ids");
    st->failed = bad > 0 || st->thread_diff;
    printf("  sample_rows: %d rows equal to the host sampler's draw\n", rows);
}

// ---- sumsq, scale, AdamW over spans of a buffer (gaps between them stay untouched)

typedef struct span_case {
    float       *x, *p, *m, *v; // x: sumsq / scale input, or the gradient for AdamW
    size_t       n;             // buffer floats
    molt_span   *span;
    int          n_spans;
    adamw_hyper  h;
    const double *ref;          // sumsq: the reference partials
} span_case;

static void run_sumsq(const molt_exec *ex, void *cv, float *out) {
    span_case *c = cv;
    size_t     nb = k_sumsq_blocks(c->span, c->n_spans);
    double    *part = dnan(nb);
    k_sumsq(ex, part, c->x, c->span, c->n_spans);
    for (size_t b = 0; b < nb; b++) {
        out[b] = (float)part[b];
        CHECK(fabs(part[b] - c->ref[b]) <= 1e-12 * fabs(c->ref[b]),
              "sumsq block %zu: %.17g vs %.17g", b, part[b], c->ref[b]);
    }
    tr_doubles(ex, "sumsq", part, nb);
    free(part);
}
static void run_scale(const molt_exec *ex, void *cv, float *out) {
    span_case *c = cv;
    memcpy(out, c->x, sizeof(float) * c->n);
    k_scale(ex, out, c->span, c->n_spans, 0.37f);
}
static void run_adamw(const molt_exec *ex, void *cv, float *out) {
    span_case *c = cv;
    memcpy(out, c->p, sizeof(float) * c->n);
    memcpy(out + c->n, c->m, sizeof(float) * c->n);
    memcpy(out + 2 * c->n, c->v, sizeof(float) * c->n);
    k_adamw(ex, out, out + c->n, out + 2 * c->n, c->x, c->span, c->n_spans, c->h);
}

// span lengths of each case (gaps of 13 floats between spans; −1 ends a list):
// none, one empty, one float, around the 16384-float block, a parameter-like
// list past the 32768-float threading threshold
static const int SPAN_LENS[][7] = {{-1},
                                   {0, -1},
                                   {1, -1},
                                   {7, 16384, 16385, -1},
                                   {100003, 40000, 1, 0, 49157, 777, -1}};

static void test_span_ops(void) {
    op_stat *ss = stat_new("sumsq", 1e-6, 1), *sc = stat_new("scale", 2e-6, 1),
            *sa = stat_new("adamw", 2e-6, 1);
    int      ncases = (int)(sizeof SPAN_LENS / sizeof SPAN_LENS[0]);
    for (int k = 0; k < ncases; k++) {
        span_case c;
        memset(&c, 0, sizeof c);
        molt_span span[8];
        size_t    off = 5;
        for (int i = 0; SPAN_LENS[k][i] >= 0; i++) {
            span[c.n_spans++] = (molt_span){off, (size_t)SPAN_LENS[k][i]};
            off += (size_t)SPAN_LENS[k][i] + 13;
        }
        c.n = off, c.span = span;
        c.x = frand(c.n, -2, 2);
        c.p = frand(c.n, -1, 1), c.m = frand(c.n, -0.1f, 0.1f), c.v = frand(c.n, 0, 0.01f);
        double lr = 1e-3, wd = 0.1, b1 = 0.9, b2 = 0.95, eps = 1e-8, t = 3;
        c.h = (adamw_hyper){(float)b1, (float)b2, (float)eps, (float)(1 - lr * wd),
                            (float)(lr / (1 - pow(b1, t))), (float)sqrt(1 - pow(b2, t))};
        char shape[48];
        snprintf(shape, sizeof shape, "%d spans, %zu floats", c.n_spans, c.n);
        // sumsq: Σ x² of each K_SUMSQ_BLOCK-float block, span after span
        size_t  nb = k_sumsq_blocks(span, c.n_spans), b = 0;
        double *ref = dbuf(nb + 1);
        for (int i = 0; i < c.n_spans; i++)
            for (size_t o = 0; o < span[i].len; o += K_SUMSQ_BLOCK, b++)
                for (size_t j = o; j < span[i].len && j < o + K_SUMSQ_BLOCK; j++)
                    ref[b] += (double)c.x[span[i].off + j] * (double)c.x[span[i].off + j];
        CHECK(b == nb, "k_sumsq_blocks %zu, the spans hold %zu blocks", nb, b);
        c.ref = ref;
        run_case(ss, run_sumsq, &c, ref, nb, shape);
        // scale and AdamW: inside the spans only
        double *rs = dcopy(c.x, c.n), *ra = dbuf(3 * c.n);
        for (size_t i = 0; i < c.n; i++)
            ra[i] = c.p[i], ra[c.n + i] = c.m[i], ra[2 * c.n + i] = c.v[i];
        for (int i = 0; i < c.n_spans; i++)
            for (size_t j = span[i].off; j < span[i].off + span[i].len; j++) {
                rs[j] = (double)c.x[j] * (double)0.37f;
                double g = c.x[j], m = b1 * (double)c.m[j] + (1 - b1) * g,
                       v = b2 * (double)c.v[j] + (1 - b2) * g * g;
                ra[j] = (double)c.p[j] * (1 - lr * wd) -
                        lr / (1 - pow(b1, t)) * m / (sqrt(v) / sqrt(1 - pow(b2, t)) + eps);
                ra[c.n + j] = m, ra[2 * c.n + j] = v;
            }
        run_case(sc, run_scale, &c, rs, c.n, shape);
        run_case(sa, run_adamw, &c, ra, 3 * c.n, shape);
        free(ref), free(rs), free(ra);
        free(c.x), free(c.p), free(c.m), free(c.v);
    }
    // a NaN and an inf give their blocks' partials and no other
    molt_span sp[2] = {{0, 20000}, {20000, 5}};
    float    *x = frand(20005, -1, 1);
    x[17000] = NAN, x[20003] = INFINITY;
    for (int b = 0; b < N_BACKENDS; b++) {
        molt_exec ex;
        double    part[3];
        if (!molt_exec_init(&ex, BACKENDS[b], 2))
            continue;
        k_sumsq(&ex, part, x, sp, 2);
        CHECK(isfinite(part[0]) && isnan(part[1]) && isinf(part[2]),
              "sumsq on %s: non-finite values in the wrong blocks (%g %g %g)", BACKENDS[b]->name,
              part[0], part[1], part[2]);
    }
    free(x);
}

// ----------------------------------------------------------------------------
// gateloop (gateloop.h, ALGORITHMS.md §9). The reference is written with C99
// complex doubles straight from the complex definition (not the kernels'
// rotation trick): per head h and pair j, a_t = exp(la + i·th),
//   S_t[j,p] = a_t[j]·S_{t−1}[j,p] + k̃_t[j]·v_t[p],   y_t[p] = Re(Σ_j q̃_t[j]·S_t[j,p])
//   M[h,t,s] = Σ_j Re(q̃_t[j]·k̃_s[j]·Π_{r=s+1..t} a_r[j])  (the product taken literally)
// with q̃[j] = q[2j] + i·q[2j+1]. Backward references: complex reverse mode,
// checked against central differences of the forward references.

typedef double complex dcx;

// q̃ / k̃ pair j of head h at row t of a [rows, ld] view with N dims per head
static dcx glr_pair(const double *x, int ld, int t, int h, int N, int j) {
    const double *p = x + (size_t)t * ld + (size_t)h * N + 2 * j;
    return CMPLX(p[0], p[1]);
}
static dcx glr_a(const double *la, const double *th, int t, int HJ, int i) {
    return cexp(CMPLX(la[(size_t)t * HJ + i], th[(size_t)t * HJ + i]));
}

// S[T+1][H][J][P] complex (S[0] = s0 given in the real [H,N,P] layout, or 0); y [T, H·P]
static void ref_gl_scan(double *y, dcx *S, const double *q, const double *k, const double *v,
                        int ld, const double *la, const double *th, const double *s0, int T, int H,
                        int N, int P) {
    int    J = N / 2, HJ = H * J;
    size_t HJP = (size_t)HJ * P;
    for (int h = 0; h < H; h++)
        for (int j = 0; j < J; j++)
            for (int p = 0; p < P; p++)
                S[((size_t)h * J + j) * P + p] =
                    s0 ? CMPLX(s0[((size_t)h * N + 2 * j) * P + p],
                               s0[((size_t)h * N + 2 * j + 1) * P + p])
                       : 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int p = 0; p < P; p++) {
                dcx acc = 0;
                for (int j = 0; j < J; j++) {
                    size_t e = ((size_t)h * J + j) * P + p;
                    dcx    a = glr_a(la, th, t, HJ, h * J + j);
                    S[(size_t)(t + 1) * HJP + e] =
                        a * S[(size_t)t * HJP + e] +
                        glr_pair(k, ld, t, h, N, j) * v[(size_t)t * ld + (size_t)h * P + p];
                    acc += glr_pair(q, ld, t, h, N, j) * S[(size_t)(t + 1) * HJP + e];
                }
                y[((size_t)t * H + h) * P + p] = creal(acc);
            }
}

// complex state t of S into the real [H,N,P] layout
static void glr_state_real(double *dst, const dcx *S, int H, int N, int P) {
    int J = N / 2;
    for (int h = 0; h < H; h++)
        for (int j = 0; j < J; j++)
            for (int p = 0; p < P; p++) {
                dcx z = S[((size_t)h * J + j) * P + p];
                dst[((size_t)h * N + 2 * j) * P + p] = creal(z);
                dst[((size_t)h * N + 2 * j + 1) * P + p] = cimag(z);
            }
}

// reverse mode of ref_gl_scan from a zero state: G_t = ∂L/∂S_t (re + i·im)
//   G_t = dy_t·conj(q̃_t) + conj(a_{t+1})·G_{t+1};  ∂q̃_t = Σ_p dy_t·conj(S_t)
//   ∂k̃_t = Σ_p G_t·v_t;  ∂v_t = Σ_j Re(G_t·conj(k̃_t));  G_a = Σ_p G_t·conj(S_{t−1})
//   ∂la = Re(G_a·conj(a)),  ∂th = Re(G_a·conj(i·a)) = Im(G_a·conj(a))
// dq, dk, dv into [T, ld] views (same layout as q, k, v); dla, dth [T, HJ]
static void ref_gl_scan_backward(double *dq, double *dk, double *dv, double *dla, double *dth,
                                 const double *dy, const dcx *S, const double *q, const double *k,
                                 const double *v, int ld, const double *la, const double *th,
                                 int T, int H, int N, int P) {
    int    J = N / 2, HJ = H * J;
    size_t HJP = (size_t)HJ * P;
    dcx   *G = xmalloc(sizeof(dcx) * (size_t)P);
    for (int h = 0; h < H; h++)
        for (int j = 0; j < J; j++) {
            for (int p = 0; p < P; p++)
                G[p] = 0;
            for (int t = T - 1; t >= 0; t--) {
                dcx qt = glr_pair(q, ld, t, h, N, j), kt = glr_pair(k, ld, t, h, N, j);
                dcx a = glr_a(la, th, t, HJ, h * J + j);
                dcx an = t + 1 < T ? glr_a(la, th, t + 1, HJ, h * J + j) : 0;
                dcx gq = 0, gk = 0, ga = 0;
                for (int p = 0; p < P; p++) {
                    size_t e = ((size_t)h * J + j) * P + p;
                    double dyp = dy[((size_t)t * H + h) * P + p];
                    double vp = v[(size_t)t * ld + (size_t)h * P + p];
                    G[p] = dyp * conj(qt) + conj(an) * G[p];
                    gq += dyp * conj(S[(size_t)(t + 1) * HJP + e]);
                    gk += G[p] * vp;
                    ga += G[p] * conj(S[(size_t)t * HJP + e]);
                    dv[(size_t)t * ld + (size_t)h * P + p] += creal(G[p] * conj(kt));
                }
                double *pq = dq + (size_t)t * ld + (size_t)h * N + 2 * j;
                double *pk = dk + (size_t)t * ld + (size_t)h * N + 2 * j;
                pq[0] = creal(gq), pq[1] = cimag(gq), pk[0] = creal(gk), pk[1] = cimag(gk);
                dla[(size_t)t * HJ + h * J + j] = creal(ga * conj(a));
                dth[(size_t)t * HJ + h * J + j] = cimag(ga * conj(a)); // Re(G_a·conj(i·a))
            }
        }
    free(G);
}

// M [H,T,T]: the product Π a taken literally (in double it neither overflows
// nor loses the decay: it only underflows toward 0)
static void ref_gl_materialize(double *M, const double *q, const double *k, int ld,
                               const double *la, const double *th, int T, int H, int N) {
    int J = N / 2, HJ = H * J;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s < T; s++) {
                double m = 0;
                for (int j = 0; s <= t && j < J; j++) {
                    dcx prod = 1;
                    for (int r = s + 1; r <= t; r++)
                        prod *= glr_a(la, th, r, HJ, h * J + j);
                    m += creal(glr_pair(q, ld, t, h, N, j) * glr_pair(k, ld, s, h, N, j) * prod);
                }
                M[((size_t)h * T + t) * T + s] = m;
            }
}

// backward of ref_gl_materialize: with w = q̃_t·k̃_s·Πa,  ∂q̃_t += dM·conj(k̃_s·Πa),
// ∂k̃_s += dM·conj(q̃_t·Πa), and for s < r ≤ t: ∂la_r += dM·Re(w), ∂th_r −= dM·Im(w)
static void ref_gl_materialize_backward(double *dq, double *dk, double *dla, double *dth,
                                        const double *dM, const double *q, const double *k,
                                        int ld, const double *la, const double *th, int T, int H,
                                        int N) {
    int J = N / 2, HJ = H * J;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s <= t; s++)
                for (int j = 0; j < J; j++) {
                    dcx prod = 1;
                    for (int r = s + 1; r <= t; r++)
                        prod *= glr_a(la, th, r, HJ, h * J + j);
                    double d = dM[((size_t)h * T + t) * T + s];
                    dcx    qt = glr_pair(q, ld, t, h, N, j), ks = glr_pair(k, ld, s, h, N, j);
                    dcx    gq = d * conj(ks * prod), gk = d * conj(qt * prod), w = qt * ks * prod;
                    double *pq = dq + (size_t)t * ld + (size_t)h * N + 2 * j;
                    double *pk = dk + (size_t)s * ld + (size_t)h * N + 2 * j;
                    pq[0] += creal(gq), pq[1] += cimag(gq), pk[0] += creal(gk), pk[1] += cimag(gk);
                    for (int r = s + 1; r <= t; r++) {
                        dla[(size_t)r * HJ + h * J + j] += d * creal(w);
                        dth[(size_t)r * HJ + h * J + j] -= d * cimag(w);
                    }
                }
}

// one case: q | k | v columns of a [rows, ld] view (ld = 2·H·N + H·P + 3), la, th [rows, HJ]
typedef struct gl_case {
    float *x, *la, *th, *s0, *dy, *dM, *work, *scr;
    int    T, H, N, P, Q, ld;
} gl_case;

static size_t gl_ld(int H, int N, int P) { return (size_t)(2 * H * N + H * P + 3); }

// regime 0 mild (|a| ≈ 1, small phases), 1 sharp (some exactly flushed), 2 strong decay
// (every |a| ≤ e^−2: the naive product form overflows after a few dozen tokens), 3 large phases
static void gl_inputs(gl_case *c, int T, int H, int N, int P, int Q, int regime) {
    size_t ld = gl_ld(H, N, P), HJ = (size_t)H * (N / 2), rows = (size_t)(T > 0 ? T : 1);
    float  lo = regime == 0 ? -0.1f : regime == 1 ? -1.5f : regime == 2 ? -8.0f : -0.3f;
    float  hi = regime == 2 ? -2.0f : 0.0f, ph = regime == 3 ? 40.0f : regime == 0 ? 0.3f : 3.0f;
    *c = (gl_case){frand(rows * ld, -1, 1),
                   frand(rows * HJ, lo, hi),
                   frand(rows * HJ, -ph, ph),
                   frand((size_t)H * N * P, -1, 1),
                   frand(rows * (size_t)H * P, -1, 1),
                   frand((size_t)H * rows * rows, -1, 1),
                   NULL,
                   fbuf(rows * ld),
                   T,
                   H,
                   N,
                   P,
                   Q,
                   (int)ld};
    for (size_t i = 5; regime == 1 && i < rows * HJ; i += 31)
        c->la[i] = -70.0f;
}
static void gl_free(gl_case *c) {
    free(c->x), free(c->la), free(c->th), free(c->s0), free(c->dy), free(c->dM), free(c->work),
        free(c->scr);
}
#define GLQ(c) ((c)->x)
#define GLK(c) ((c)->x + (size_t)(c)->H * (c)->N)
#define GLV(c) ((c)->x + 2 * (size_t)(c)->H * (c)->N)

// copies the q | k | v columns of a [T, ld] view (NaN where an op left a cell unwritten)
static float *gl_take_cols(float *out, const float *src, const gl_case *c, int with_v) {
    size_t wq = (size_t)c->H * c->N, w = 2 * wq + (with_v ? (size_t)c->H * c->P : 0);
    for (int t = 0; t < c->T; t++, out += w)
        memcpy(out, src + (size_t)t * c->ld, sizeof(float) * w);
    return out;
}
static double *gl_take_cols_d(double *out, const double *src, const gl_case *c, int with_v) {
    size_t wq = (size_t)c->H * c->N, w = 2 * wq + (with_v ? (size_t)c->H * c->P : 0);
    for (int t = 0; t < c->T; t++, out += w)
        memcpy(out, src + (size_t)t * c->ld, sizeof(double) * w);
    return out;
}

// --- gl_prep / gl_prep_backward: a [n, lda] (2·HJ columns at 1), out la | th, or da
typedef struct glp_case {
    float *a, *b, *dla, *dth, *scr;
    int    n, HJ, lda;
} glp_case;

static void run_gl_prep(const molt_exec *ex, void *cv, float *out) {
    glp_case *c = cv;
    gl_prep(ex, out, out + (size_t)c->n * c->HJ, c->a + 1, c->lda, c->b, c->n, c->HJ);
}
static void run_gl_prep_backward(const molt_exec *ex, void *cv, float *out) {
    glp_case *c = cv;
    fill_nan(c->scr, (size_t)c->n * c->lda);
    gl_prep_backward(ex, c->scr + 1, c->lda, c->dla, c->dth, c->a + 1, c->b, c->n, c->HJ);
    for (int r = 0; r < c->n; r++)
        memcpy(out + (size_t)r * 2 * c->HJ, c->scr + (size_t)r * c->lda + 1,
               sizeof(float) * 2 * (size_t)c->HJ);
}
static double logsig_d(double x) { return x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x)); }

static void test_gl_prep(void) {
    op_stat  *sf = stat_new("gl_prep", 2e-6, 1);
    op_stat  *sb = stat_new("gl_prep_backward", 2e-6, 1);
    const int shapes[][2] = {{0, 4}, {1, 1}, {3, 7}, {17, 32}, {64, 100}, {300, 256}, {1000, 64}};
    for (int k = 0; k < 7; k++)
        for (int wb = 0; wb < 2; wb++) {
            int      n = shapes[k][0], HJ = shapes[k][1], lda = 2 * HJ + 5;
            size_t   nn = (size_t)(n > 0 ? n : 1);
            glp_case c = {frand(nn * lda, -30, 30), wb ? frand(2 * (size_t)HJ, -3, 3) : NULL,
                          frand(nn * HJ, -1, 1), frand(nn * HJ, -1, 1), fbuf(nn * lda), n, HJ,
                          lda};
            double *ref = dbuf(2 * nn * HJ), *bref = dbuf(2 * nn * HJ);
            for (int r = 0; r < n; r++)
                for (int i = 0; i < HJ; i++) {
                    double xm = (double)c.a[(size_t)r * lda + 1 + i] + (c.b ? (double)c.b[i] : 0.0);
                    double xp = (double)c.a[(size_t)r * lda + 1 + HJ + i] +
                                (c.b ? (double)c.b[HJ + i] : 0.0);
                    ref[(size_t)r * HJ + i] = logsig_d(xm);
                    ref[(size_t)n * HJ + (size_t)r * HJ + i] = xp;
                    bref[(size_t)r * 2 * HJ + i] =
                        (double)c.dla[(size_t)r * HJ + i] * sigmoid_d(-xm);
                    bref[(size_t)r * 2 * HJ + HJ + i] = c.dth[(size_t)r * HJ + i];
                }
            char shape[48];
            snprintf(shape, sizeof shape, "n,HJ %dx%d%s", n, HJ, wb ? " +bias" : "");
            run_case(sf, run_gl_prep, &c, ref, 2 * (size_t)n * HJ, shape);
            run_case(sb, run_gl_prep_backward, &c, bref, 2 * (size_t)n * HJ, shape);
            free(ref), free(bref), free(c.a), free(c.b), free(c.dla), free(c.dth), free(c.scr);
        }
    // the backward reference: d logsigmoid(x)/dx = sigmoid(−x), by central differences
    for (double x = -12; x <= 12; x += 3.7) {
        double h = 1e-6;
        check_fd("gl_prep", logsig_d(x - h), logsig_d(x + h), h, sigmoid_d(-x));
    }
}

// --- gl_step_rows: n rows, row r with its own state (out: y [n,H,P] | states [n,H,N,P])
static void run_gl_step_rows(const molt_exec *ex, void *cv, float *out) {
    gl_case *c = cv;
    size_t   NP = (size_t)c->H * c->N * c->P, ny = (size_t)c->T * c->H * c->P;
    float  **st = xmalloc(sizeof(float *) * (size_t)(c->T > 0 ? c->T : 1));
    for (int r = 0; r < c->T; r++) { // row r starts from s0 scaled by (r + 1)
        st[r] = out + ny + (size_t)r * NP;
        for (size_t e = 0; e < NP; e++)
            st[r][e] = c->s0[e] * (float)(r + 1);
    }
    gl_step_rows(ex, out, st, GLQ(c), GLK(c), GLV(c), c->ld, c->la, c->th, c->T, c->H, c->N, c->P);
    free(st);
}

static void test_gl_step_rows(void) {
    op_stat  *st = stat_new("gl_step_rows", 2e-5, 1);
    const int shapes[][4] = {{0, 1, 2, 1}, {1, 1, 2, 1},  {3, 2, 4, 3},   {5, 3, 6, 5},
                             {8, 4, 16, 16}, {2, 8, 64, 64}, {33, 2, 8, 32}, {64, 4, 8, 8}};
    for (int k = 0; k < 8; k++)
        for (int regime = 0; regime < 4; regime++) {
            int     n = shapes[k][0], H = shapes[k][1], N = shapes[k][2], P = shapes[k][3];
            gl_case c;
            gl_inputs(&c, n, H, N, P, 1, regime);
            size_t  ld = (size_t)c.ld, NP = (size_t)H * N * P, ny = (size_t)n * H * P;
            size_t  HJ = (size_t)H * (N / 2), rows = (size_t)(n > 0 ? n : 1);
            double *x = dcopy(c.x, rows * ld), *la = dcopy(c.la, rows * HJ);
            double *th = dcopy(c.th, rows * HJ), *s0 = dbuf(NP), *y = dbuf((size_t)H * P);
            double *ref = dbuf(ny + (size_t)n * NP);
            dcx    *S = xmalloc(sizeof(dcx) * 2 * NP);
            for (int r = 0; r < n; r++) {
                for (size_t e = 0; e < NP; e++)
                    s0[e] = (double)(c.s0[e] * (float)(r + 1));
                size_t o = (size_t)r * ld;
                ref_gl_scan(y, S, x + o, x + o + (size_t)H * N, x + o + 2 * (size_t)H * N, (int)ld,
                            la + (size_t)r * HJ, th + (size_t)r * HJ, s0, 1, H, N, P);
                memcpy(ref + (size_t)r * H * P, y, sizeof(double) * (size_t)H * P);
                glr_state_real(ref + ny + (size_t)r * NP, S + (size_t)H * (N / 2) * P, H, N, P);
            }
            char shape[48];
            snprintf(shape, sizeof shape, "n,H,N,P %dx%dx%dx%d r%d", n, H, N, P, regime);
            run_case(st, run_gl_step_rows, &c, ref, ny + (size_t)n * NP, shape);
            free(x), free(la), free(th), free(s0), free(y), free(ref), free(S);
            gl_free(&c);
        }
}

// --- gl_scan_chunked (out: y | final state when one is passed | states entering each chunk)
//     and its backward (out: dq | dk | dv columns, then dla | dth)
static int g_gl_state;

static size_t gl_nc(int T, int Q) {
    int Qc = Q < T ? Q : T;
    return T > 0 ? (size_t)((T + Qc - 1) / Qc) : 0;
}

static void run_gl_scan_chunked(const molt_exec *ex, void *cv, float *out) {
    gl_case *c = cv;
    size_t   NP = (size_t)c->H * c->N * c->P, ny = (size_t)c->T * c->H * c->P;
    float   *state = g_gl_state ? out + ny : NULL;
    fill_nan(c->work, gl_chunked_work(c->T, c->H, c->N, c->P, c->Q));
    if (state)
        memcpy(state, c->s0, sizeof(float) * NP);
    gl_scan_chunked(ex, out, state, GLQ(c), GLK(c), GLV(c), c->ld, c->la, c->th, c->T, c->H, c->N,
                    c->P, c->Q, c->work);
    memcpy(out + ny + (state ? NP : 0), c->work, sizeof(float) * gl_nc(c->T, c->Q) * NP);
}

// gl_scan_assoc (out: y | final state when one is passed)
static void run_gl_scan_assoc(const molt_exec *ex, void *cv, float *out) {
    gl_case *c = cv;
    size_t   NP = (size_t)c->H * c->N * c->P, ny = (size_t)c->T * c->H * c->P;
    float   *state = g_gl_state ? out + ny : NULL;
    fill_nan(c->work, gl_assoc_work(c->T, c->H, c->N, c->P));
    if (state)
        memcpy(state, c->s0, sizeof(float) * NP);
    gl_scan_assoc(ex, out, state, GLQ(c), GLK(c), GLV(c), c->ld, c->la, c->th, c->T, c->H, c->N,
                  c->P, c->work);
}

static void run_gl_scan_chunked_backward(const molt_exec *ex, void *cv, float *out) {
    gl_case *c = cv;
    size_t   ny = (size_t)c->T * c->H * c->P, HJ = (size_t)c->H * (c->N / 2);
    float   *y = fbuf(ny > 0 ? ny : 1);
    fill_nan(c->work, gl_chunked_backward_work(c->T, c->H, c->N, c->P, c->Q));
    gl_scan_chunked(ex, y, NULL, GLQ(c), GLK(c), GLV(c), c->ld, c->la, c->th, c->T, c->H, c->N,
                    c->P, c->Q, c->work);
    fill_nan(c->scr, (size_t)(c->T > 0 ? c->T : 1) * c->ld);
    float *dla = out + (size_t)c->T * (2 * (size_t)c->H * c->N + (size_t)c->H * c->P);
    float *dth = dla + (size_t)c->T * HJ, *s = c->scr;
    gl_scan_chunked_backward(ex, s, s + (size_t)c->H * c->N, s + 2 * (size_t)c->H * c->N, c->ld,
                             dla, dth, c->dy, GLQ(c), GLK(c), GLV(c), c->ld, c->la, c->th, c->T,
                             c->H, c->N, c->P, c->Q, c->work);
    gl_take_cols(out, c->scr, c, 1);
    free(y);
}

static const int GL_SHAPES[][5] = { // T, H, N, P, Q
    {0, 2, 4, 3, 4},    {1, 1, 2, 1, 1},   {5, 2, 4, 3, 2},    {17, 3, 6, 5, 4},
    {17, 2, 8, 16, 64}, {33, 3, 2, 7, 7},  {64, 2, 8, 8, 16},  {100, 2, 4, 4, 1},
    {130, 2, 8, 8, 32}, {257, 2, 4, 8, 64}, {300, 2, 4, 4, 64}};
#define N_GL (int)(sizeof(GL_SHAPES) / sizeof(GL_SHAPES[0]))

static void test_gl_scan(void) {
    op_stat *sf = stat_new("gl_scan_chunked", 2e-5, 1);
    op_stat *sb = stat_new("gl_scan_chunked_backward", 5e-5, 1);
    op_stat *sa = stat_new("gl_scan_assoc", 2e-5, 1);
    for (int k = 0; k < N_GL; k++) {
        const int *sh = GL_SHAPES[k];
        int        T = sh[0], H = sh[1], N = sh[2], P = sh[3], Q = sh[4], regime = k % 4;
        gl_case    c;
        gl_inputs(&c, T, H, N, P, Q, regime);
        size_t wb = gl_chunked_backward_work(T, H, N, P, Q), wa = gl_assoc_work(T, H, N, P);
        c.work = fbuf((wb > wa ? wb : wa) + 1);
        size_t  ld = (size_t)c.ld, NP = (size_t)H * N * P, ny = (size_t)T * H * P;
        size_t  HJ = (size_t)H * (N / 2), rows = (size_t)(T > 0 ? T : 1), nc = gl_nc(T, Q);
        int     Qc = Q < T ? Q : T;
        double *x = dcopy(c.x, rows * ld), *la = dcopy(c.la, rows * HJ);
        double *th = dcopy(c.th, rows * HJ), *s0 = dcopy(c.s0, NP);
        double *ref = dbuf(ny + NP + nc * NP);
        dcx    *S = xmalloc(sizeof(dcx) * (size_t)(T + 1) * NP / 2);
        double *q = x, *kk = x + (size_t)H * N, *v = x + 2 * (size_t)H * N;
        char    shape[48];
        for (g_gl_state = 0; g_gl_state < 2; g_gl_state++) {
            ref_gl_scan(ref, S, q, kk, v, (int)ld, la, th, g_gl_state ? s0 : NULL, T, H, N, P);
            double *r = ref + ny;
            if (g_gl_state) {
                glr_state_real(r, S + (size_t)T * NP / 2, H, N, P);
                r += NP;
            }
            for (size_t ch = 0; ch < nc; ch++) // the state entering chunk ch: S[ch·Q]
                glr_state_real(r + ch * NP, S + ch * (size_t)Qc * NP / 2, H, N, P);
            snprintf(shape, sizeof shape, "T,H,N,P,Q %dx%dx%dx%dx%d r%d%s", T, H, N, P, Q, regime,
                     g_gl_state ? " +state" : "");
            run_case(sf, run_gl_scan_chunked, &c, ref, ny + (g_gl_state ? NP : 0) + nc * NP,
                     shape);
            run_case(sa, run_gl_scan_assoc, &c, ref, ny + (g_gl_state ? NP : 0), shape);
        }
        // backward from a zero state
        ref_gl_scan(ref, S, q, kk, v, (int)ld, la, th, NULL, T, H, N, P);
        double *dy = dcopy(c.dy, ny), *dx = dbuf(rows * ld), *dla = dbuf(rows * HJ);
        double *dth = dbuf(rows * HJ);
        size_t  nx = (size_t)T * (2 * (size_t)H * N + (size_t)H * P);
        double *bref = dbuf(nx + 2 * (size_t)T * HJ);
        ref_gl_scan_backward(dx, dx + (size_t)H * N, dx + 2 * (size_t)H * N, dla, dth, dy, S, q,
                             kk, v, (int)ld, la, th, T, H, N, P);
        gl_take_cols_d(bref, dx, &c, 1);
        memcpy(bref + nx, dla, sizeof(double) * (size_t)T * HJ);
        memcpy(bref + nx + (size_t)T * HJ, dth, sizeof(double) * (size_t)T * HJ);
        snprintf(shape, sizeof shape, "T,H,N,P,Q %dx%dx%dx%dx%d r%d", T, H, N, P, Q, regime);
        run_case(sb, run_gl_scan_chunked_backward, &c, bref, nx + 2 * (size_t)T * HJ, shape);
        free(x), free(la), free(th), free(s0), free(ref), free(S), free(dy), free(dx), free(dla),
            free(dth), free(bref);
        gl_free(&c);
    }
    // the backward reference against central differences
    int     T = 7, H = 2, N = 4, P = 3, ld = (int)gl_ld(H, N, P), HJ = H * N / 2;
    size_t  nx = (size_t)T * ld, na = (size_t)T * HJ, ny = (size_t)T * H * P;
    double *x = drand(nx), *la = drand(na), *th = drand(na), *dy = drand(ny);
    double *vx = drand(nx), *vla = drand(na), *vth = drand(na), *y = dbuf(ny);
    for (size_t i = 0; i < na; i++)
        la[i] = 0.5 * la[i] - 0.6, th[i] *= 3;
    dcx    *S = xmalloc(sizeof(dcx) * (size_t)(T + 1) * H * (N / 2) * P);
    double *dx = dbuf(nx), *dla = dbuf(na), *dth = dbuf(na), *xs = dbuf(nx), *las = dbuf(na);
    double *ths = dbuf(na), hh = 1e-5, L[2];
    ref_gl_scan(y, S, x, x + H * N, x + 2 * H * N, ld, la, th, NULL, T, H, N, P);
    ref_gl_scan_backward(dx, dx + H * N, dx + 2 * H * N, dla, dth, dy, S, x, x + H * N,
                         x + 2 * H * N, ld, la, th, T, H, N, P);
    for (int sg = 0; sg < 2; sg++) {
        shift(xs, x, vx, sg ? hh : -hh, nx);
        shift(las, la, vla, sg ? hh : -hh, na);
        shift(ths, th, vth, sg ? hh : -hh, na);
        ref_gl_scan(y, S, xs, xs + H * N, xs + 2 * H * N, ld, las, ths, NULL, T, H, N, P);
        L[sg] = dotd(dy, y, ny);
    }
    // the 3 padding columns of each row are no input: their gradient is 0 and so is dx there
    check_fd("gl_scan", L[0], L[1], hh, dotd(dx, vx, nx) + dotd(dla, vla, na) + dotd(dth, vth, na));
    free(x), free(la), free(th), free(dy), free(vx), free(vla), free(vth), free(y), free(S),
        free(dx), free(dla), free(dth), free(xs), free(las), free(ths);
}

// --- gl_materialize (out: M) and its backward (out: dq | dk columns, then dla | dth)
static void run_gl_materialize(const molt_exec *ex, void *cv, float *out) {
    gl_case *c = cv;
    fill_nan(c->work, gl_materialize_work(c->T, c->H, c->N));
    gl_materialize(ex, out, GLQ(c), GLK(c), c->ld, c->la, c->th, c->T, c->H, c->N, c->work);
}
static void run_gl_materialize_backward(const molt_exec *ex, void *cv, float *out) {
    gl_case *c = cv;
    size_t   HJ = (size_t)c->H * (c->N / 2);
    fill_nan(c->work, gl_materialize_backward_work(c->T, c->H, c->N));
    fill_nan(c->scr, (size_t)(c->T > 0 ? c->T : 1) * c->ld);
    float *dla = out + (size_t)c->T * 2 * c->H * c->N, *dth = dla + (size_t)c->T * HJ;
    gl_materialize_backward(ex, c->scr, c->scr + (size_t)c->H * c->N, c->ld, dla, dth, c->dM,
                            GLQ(c), GLK(c), c->ld, c->la, c->th, c->T, c->H, c->N, c->work);
    gl_take_cols(out, c->scr, c, 0);
}

static void test_gl_materialize(void) {
    op_stat  *sf = stat_new("gl_materialize", 2e-5, 1);
    op_stat  *sb = stat_new("gl_materialize_backward", 5e-5, 1);
    const int shapes[][3] = {{0, 2, 4}, {1, 1, 2}, {5, 2, 4}, {17, 3, 6},
                             {33, 2, 16}, {64, 2, 8}, {70, 4, 2}};
    for (int k = 0; k < 7; k++)
        for (int regime = 0; regime < 4; regime++) {
            int     T = shapes[k][0], H = shapes[k][1], N = shapes[k][2];
            gl_case c;
            gl_inputs(&c, T, H, N, 1, 1, regime);
            c.work = fbuf(gl_materialize_backward_work(T, H, N) + gl_materialize_work(T, H, N) + 1);
            size_t  ld = (size_t)c.ld, HJ = (size_t)H * (N / 2), rows = (size_t)(T > 0 ? T : 1);
            size_t  nM = (size_t)H * T * T, nx = (size_t)T * 2 * H * N;
            double *x = dcopy(c.x, rows * ld), *la = dcopy(c.la, rows * HJ);
            double *th = dcopy(c.th, rows * HJ), *ref = dbuf(nM + 1);
            ref_gl_materialize(ref, x, x + (size_t)H * N, (int)ld, la, th, T, H, N);
            char shape[48];
            snprintf(shape, sizeof shape, "T,H,N %dx%dx%d r%d", T, H, N, regime);
            run_case(sf, run_gl_materialize, &c, ref, nM, shape);
            double *dM = dcopy(c.dM, nM), *dx = dbuf(rows * ld), *dla = dbuf(rows * HJ);
            double *dth = dbuf(rows * HJ), *bref = dbuf(nx + 2 * (size_t)T * HJ + 1);
            for (int h = 0; h < H; h++) // entries above the diagonal are ignored
                for (int t = 0; t < T; t++)
                    for (int s = t + 1; s < T; s++)
                        dM[((size_t)h * T + t) * T + s] = 0;
            ref_gl_materialize_backward(dx, dx + (size_t)H * N, dla, dth, dM, x, x + (size_t)H * N,
                                        (int)ld, la, th, T, H, N);
            gl_take_cols_d(bref, dx, &c, 0);
            memcpy(bref + nx, dla, sizeof(double) * (size_t)T * HJ);
            memcpy(bref + nx + (size_t)T * HJ, dth, sizeof(double) * (size_t)T * HJ);
            run_case(sb, run_gl_materialize_backward, &c, bref, nx + 2 * (size_t)T * HJ, shape);
            free(x), free(la), free(th), free(ref), free(dM), free(dx), free(dla), free(dth),
                free(bref);
            gl_free(&c);
        }
    // the backward reference against central differences
    int     T = 6, H = 2, N = 4, ld = (int)gl_ld(H, N, 1), HJ = H * N / 2;
    size_t  nx = (size_t)T * ld, na = (size_t)T * HJ, nM = (size_t)H * T * T;
    double *x = drand(nx), *la = drand(na), *th = drand(na), *dM = drand(nM), *M = dbuf(nM);
    double *vx = drand(nx), *vla = drand(na), *vth = drand(na);
    for (size_t i = 0; i < na; i++)
        la[i] = 0.5 * la[i] - 0.6, th[i] *= 3;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int s = t + 1; s < T; s++)
                dM[((size_t)h * T + t) * T + s] = 0;
    double *dx = dbuf(nx), *dla = dbuf(na), *dth = dbuf(na), *xs = dbuf(nx), *las = dbuf(na);
    double *ths = dbuf(na), hh = 1e-5, L[2];
    ref_gl_materialize_backward(dx, dx + H * N, dla, dth, dM, x, x + H * N, ld, la, th, T, H, N);
    for (int sg = 0; sg < 2; sg++) {
        shift(xs, x, vx, sg ? hh : -hh, nx);
        shift(las, la, vla, sg ? hh : -hh, na);
        shift(ths, th, vth, sg ? hh : -hh, na);
        ref_gl_materialize(M, xs, xs + H * N, ld, las, ths, T, H, N);
        L[sg] = dotd(dM, M, nM);
    }
    check_fd("gl_materialize", L[0], L[1], hh,
             dotd(dx, vx, nx) + dotd(dla, vla, na) + dotd(dth, vth, na));
    free(x), free(la), free(th), free(dM), free(M), free(vx), free(vla), free(vth), free(dx),
        free(dla), free(dth), free(xs), free(las), free(ths);
}

// ----------------------------------------------------------------------------
// mamba3 (mamba3.h, ALGORITHMS.md §8): the Mamba-3 mixer's ops. References in
// double from the equations of mamba3.h, over a case holding every input of
// every op (random, O(1)); backward references checked by central
// differences of the forward references on small shapes. Rows form n/T
// sequences of T rows (shapes with several sequences and T = 1).

typedef struct m3t {
    m3_rows_cfg c;
    int         n, T, ldz, nseq;
    m3_rows_w   w;
    float      *zx, *dtb, *Bn, *Cn, *Bb, *Cb, *mx, *mz, *mo, *D, *nw; // inputs, float
    float      *phi, *q, *k, *dA, *dlt, *lam, *ys, *ypre, *st;       // per-row inputs
    float      *dphi, *dq, *dk, *ddA, *dgam, *dbet, *dX, *ddAx, *dyp, *dg, *dM; // upstream
    float      *rstd, *rso; // the forwards' saved 1/rms (prep: [n,2,R,G], gate: [n,R,H])
    float      *pq, *pk;    // m3_prep's q, k of these inputs (read by m3_prep_backward)
} m3t;

// the same inputs in double (the references' arguments, perturbed by the FD checks)
typedef struct m3d {
    double *zx, *dtb, *Bn, *Cn, *Bb, *Cb, *mx, *mz, *mo, *D, *nw;
    double *phi, *q, *k, *dA, *dlt, *lam, *ys, *ypre, *st;
} m3d;

// n, T, H, P, N, G, R, S, mimo, norm
static const int M3_SHAPES[][10] = {
    {0, 1, 2, 3, 4, 1, 1, 1, 0, 0},    {1, 1, 1, 1, 2, 1, 1, 1, 0, 0},
    {3, 3, 2, 3, 4, 1, 1, 1, 0, 1},    {4, 1, 2, 2, 6, 2, 1, 3, 0, 0},
    {10, 5, 2, 5, 6, 2, 2, 2, 1, 0},   {37, 37, 3, 4, 8, 1, 3, 2, 1, 1},
    {300, 100, 4, 16, 16, 2, 1, 8, 0, 1}, {96, 48, 2, 8, 12, 1, 4, 6, 1, 0},
    {64, 1, 3, 4, 8, 1, 2, 2, 1, 1},
};
#define N_M3 (int)(sizeof(M3_SHAPES) / sizeof(M3_SHAPES[0]))

static size_t m3_nrhn(const m3t *k) { return (size_t)k->n * k->c.R * k->c.H * k->c.N; }
static size_t m3_nrhp(const m3t *k) { return (size_t)k->n * k->c.R * k->c.H * k->c.P; }

static float *m3_rnd(size_t n, float lo, float hi) { return frand(n ? n : 1, lo, hi); }

// variant 1: optional parameters absent (dt_bias, norm weights, biases, D)
static void m3t_make(m3t *k, const int *sh, int variant) {
    memset(k, 0, sizeof *k);
    k->c = (m3_rows_cfg){sh[2], sh[3], sh[4], sh[5], sh[6], sh[7], sh[8], sh[9], 0.05f, 1e-5f};
    k->n = sh[0], k->T = sh[1], k->nseq = k->n / k->T;
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, N = c->N, R = c->R, S = c->S, Di = H * P;
    k->ldz = m3_in_rows(c) + 3; // a row stride wider than the row
    size_t n = (size_t)k->n, HRN = (size_t)H * R * N, HRP = (size_t)H * R * P;
    k->zx = m3_rnd(n * k->ldz, -1.5f, 1.5f);
    for (size_t r = 0; r < n; r++) // dd_A both signs; a few below −1/A_floor + 1 (floor)
        for (int h = 0; h < H; h++)
            k->zx[r * k->ldz + m3_col_A(c) + h] = (r + h) % 7 == 3 ? -30.0f : t_uniform(-2, 2);
    bool opt = variant == 0;
    k->dtb = opt ? m3_rnd((size_t)H, -2.0f, 0.5f) : NULL;
    k->Bn = opt ? m3_rnd((size_t)N, 0.5f, 1.5f) : NULL;
    k->Cn = opt ? m3_rnd((size_t)N, 0.5f, 1.5f) : NULL;
    k->Bb = opt ? m3_rnd(HRN, -1.0f, 1.0f) : NULL;
    k->Cb = opt ? m3_rnd(HRN, -1.0f, 1.0f) : NULL;
    k->mx = c->mimo && R > 1 ? m3_rnd(HRP, -1.0f, 1.0f) : NULL;
    k->mz = c->mimo && R > 1 ? m3_rnd(HRP, -1.0f, 1.0f) : NULL;
    k->mo = c->mimo && R > 1 ? m3_rnd(HRP, -1.0f, 1.0f) : NULL;
    k->D = opt ? m3_rnd((size_t)H, -1.0f, 1.0f) : NULL;
    k->nw = c->norm ? m3_rnd((size_t)Di, 0.5f, 1.5f) : NULL;
    k->w = (m3_rows_w){k->dtb, k->Bn, k->Cn, k->Bb, k->Cb, k->mx, k->mz, k->mo, k->D, k->nw};
    k->phi = m3_rnd(n * H * S, -7.0f, 7.0f);
    k->q = m3_rnd(m3_nrhn(k), -1.0f, 1.0f);
    k->k = m3_rnd(m3_nrhn(k), -1.0f, 1.0f);
    k->dlt = m3_rnd(n * H, 0.01f, 0.8f);
    k->dA = fbuf(n * H + 1);
    for (size_t i = 0; i < n * H; i++)
        k->dA[i] = -k->dlt[i] * t_uniform(0.05f, 3.0f);
    k->lam = m3_rnd(n * H, 0.0f, 1.0f);
    k->ys = m3_rnd(m3_nrhp(k), -1.0f, 1.0f);
    k->ypre = m3_rnd(m3_nrhp(k), -1.0f, 1.0f);
    k->st = m3_rnd((k->nseq ? (size_t)k->nseq : 1) * m3_state_floats(c), -1.0f, 1.0f);
    k->dphi = m3_rnd(n * H * S, -1.0f, 1.0f);
    k->dq = m3_rnd(m3_nrhn(k), -1.0f, 1.0f);
    k->dk = m3_rnd(m3_nrhn(k), -1.0f, 1.0f);
    k->ddA = m3_rnd(n * H, -1.0f, 1.0f);
    k->dgam = m3_rnd(n * H, -1.0f, 1.0f);
    k->dbet = m3_rnd(n * H, -1.0f, 1.0f);
    k->dX = m3_rnd(m3_nrhp(k), -1.0f, 1.0f);
    k->ddAx = m3_rnd(n * R * H, -1.0f, 1.0f);
    k->dyp = m3_rnd(m3_nrhp(k), -1.0f, 1.0f);
    k->dg = m3_rnd(n * Di, -1.0f, 1.0f);
    k->dM = m3_rnd((size_t)H * k->T * k->T, -1.0f, 1.0f);
    // the saved 1/rms, as the forwards compute them (the backward ops read them)
    k->rstd = fbuf(n * 2 * R * c->G + 1);
    k->rso = fbuf(n * R * H + 1);
    float *tq = fbuf(m3_nrhn(k) + 1), *tk = fbuf(m3_nrhn(k) + 1), *t1 = fbuf(n * H + 1);
    float *t2 = fbuf(n * H + 1), *t3 = fbuf(n * H + 1), *g = fbuf(n * Di + 1);
    molt_exec ex = molt_exec_cpu(1);
    m3_prep(&ex, tq, tk, t1, t2, t3, k->rstd, k->zx, k->ldz, k->phi, &k->w, k->n, c);
    m3_gate(&ex, g, k->rso, k->ypre, k->zx, k->ldz, &k->w, k->n, c);
    k->pq = tq, k->pk = tk;
    free(t1), free(t2), free(t3), free(g);
}

static void m3t_free(m3t *k) {
    float *p[] = {k->zx,  k->dtb, k->Bn,  k->Cn,   k->Bb,  k->Cb,   k->mx,   k->mz,  k->mo,
                  k->D,   k->nw,  k->phi, k->q,    k->k,   k->dA,   k->dlt,  k->lam, k->ys,
                  k->ypre, k->st, k->dphi, k->dq,  k->dk,  k->ddA,  k->dgam, k->dbet, k->dX,
                  k->ddAx, k->dyp, k->dg, k->dM,   k->rstd, k->rso, k->pq, k->pk};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

static void m3d_make(m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, H = (size_t)c->H, HRN = H * c->R * c->N, HRP = H * c->R * c->P;
    d->zx = dcopy(k->zx, n * k->ldz);
    d->dtb = dcopy(k->dtb, H), d->Bn = dcopy(k->Bn, (size_t)c->N);
    d->Cn = dcopy(k->Cn, (size_t)c->N);
    d->Bb = dcopy(k->Bb, HRN), d->Cb = dcopy(k->Cb, HRN);
    d->mx = dcopy(k->mx, HRP), d->mz = dcopy(k->mz, HRP), d->mo = dcopy(k->mo, HRP);
    d->D = dcopy(k->D, H), d->nw = dcopy(k->nw, H * c->P);
    d->phi = dcopy(k->phi, n * H * c->S), d->q = dcopy(k->q, m3_nrhn(k));
    d->k = dcopy(k->k, m3_nrhn(k)), d->dA = dcopy(k->dA, n * H), d->dlt = dcopy(k->dlt, n * H);
    d->lam = dcopy(k->lam, n * H), d->ys = dcopy(k->ys, m3_nrhp(k));
    d->ypre = dcopy(k->ypre, m3_nrhp(k));
    d->st = dcopy(k->st, (k->nseq ? (size_t)k->nseq : 1) * m3_state_floats(c));
}

static void m3d_free(m3d *d) {
    double *p[] = {d->zx, d->dtb, d->Bn, d->Cn, d->Bb,  d->Cb,  d->mx,  d->mz, d->mo, d->D,
                   d->nw, d->phi, d->q,  d->k,  d->dA,  d->dlt, d->lam, d->ys, d->ypre, d->st};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

// per-element pieces of the equations, in double
static double m3d_delta(const double *z, const m3d *d, const m3t *k, int h) {
    return softplus_d(z[m3_col_dt(&k->c) + h] + (k->dtb ? d->dtb[h] : 0.0));
}
static double m3d_ht(double a, double fl) {
    double v = a >= 0 ? 1 + a : 1 / (1 - a);
    return v < fl ? fl : v;
}
static double m3d_mx(const double *m, const m3t *k, int h, int r, int p) {
    return m ? m[((size_t)h * k->c.R + r) * k->c.P + p] : 1.0;
}
static double m3d_v(const double *zrow, const m3d *d, const m3t *k, int r, int h, int p) {
    return zrow[m3_col_x(&k->c) + h * k->c.P + p] * m3d_mx(k->mx ? d->mx : NULL, k, h, r, p);
}
static void m3d_pair(const m3_rows_cfg *c, int i, int *a, int *b) {
    *a = c->mimo ? i : 2 * i, *b = c->mimo ? c->N / 2 + i : 2 * i + 1;
}
static bool m3_last(const m3t *k, int t) { return t % k->T == k->T - 1; }

// angles: φ_t = wrap(φ_{t−1} + tanh(a)·π·Δ) per sequence (state: nseq blocks or NULL)
static void ref_m3_angles(double *phi, double *st, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, S = c->S;
    for (int i = 0; i < k->nseq; i++)
        for (int h = 0; h < H; h++)
            for (int s = 0; s < S; s++) {
                double *a0 = st ? st + (size_t)i * m3_state_floats(c) + m3_off_angle(c) + h * S + s
                                : NULL;
                double a = a0 ? *a0 : 0.0;
                for (int t = i * k->T; t < (i + 1) * k->T; t++) {
                    const double *z = d->zx + (size_t)t * k->ldz;
                    a += tanh(z[m3_col_ang(c) + s]) * M_PI * m3d_delta(z, d, k, h);
                    a -= 2 * M_PI * floor(a / (2 * M_PI));
                    phi[((size_t)t * H + h) * S + s] = a;
                }
                if (a0)
                    *a0 = a;
            }
}

// prep: q, k, dA, Δ, λ, the norms' 1/rms [n,2,R,G]
static void ref_m3_prep(double *q, double *kk, double *dA, double *dlt, double *lam,
                        double *rstd, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, N = c->N, G = c->G, R = c->R, S = c->S;
    for (int t = 0; t < k->n; t++) {
        const double *z = d->zx + (size_t)t * k->ldz;
        for (int h = 0; h < H; h++) {
            double D = m3d_delta(z, d, k, h);
            dlt[t * H + h] = D;
            dA[t * H + h] = -D * m3d_ht(z[m3_col_A(c) + h], (double)c->A_floor);
            lam[t * H + h] = sigmoid_d(z[m3_col_trap(c) + h]);
        }
        for (int bc = 0; bc < 2; bc++)
            for (int r = 0; r < R; r++)
                for (int h = 0; h < H; h++) {
                    int g = h / (H / G);
                    const double *b = z + (bc ? m3_col_C(c) : m3_col_B(c)) + (r * G + g) * N;
                    const double *nw = bc ? (k->Cn ? d->Cn : NULL) : (k->Bn ? d->Bn : NULL);
                    const double *bias = bc ? (k->Cb ? d->Cb : NULL) : (k->Bb ? d->Bb : NULL);
                    double ss = 0;
                    for (int i = 0; i < N; i++)
                        ss += b[i] * b[i];
                    double rs = 1 / sqrt(ss / N + (double)c->eps);
                    if (rstd)
                        rstd[(((size_t)t * 2 + bc) * R + r) * G + g] = rs;
                    double *o = (bc ? q : kk) + (((size_t)t * R + r) * H + h) * N;
                    for (int i = 0; i < N; i++)
                        o[i] = b[i] * rs * (nw ? nw[i] : 1) +
                               (bias ? bias[((size_t)h * R + r) * N + i] : 0);
                    for (int s = 0; s < S; s++) {
                        int ia, ib;
                        m3d_pair(c, s, &ia, &ib);
                        double f = d->phi[((size_t)t * H + h) * S + s], a = o[ia], bb = o[ib];
                        o[ia] = a * cos(f) - bb * sin(f), o[ib] = a * sin(f) + bb * cos(f);
                    }
                }
    }
}

// γ_t, b_t and S_t = γ_t + b_{t+1} (0 past a sequence's last row)
static double m3d_gam(const m3d *d, const m3t *k, int t, int h) {
    return d->lam[t * k->c.H + h] * d->dlt[t * k->c.H + h];
}
static double m3d_b(const m3d *d, const m3t *k, int t, int h) {
    return (1 - d->lam[t * k->c.H + h]) * d->dlt[t * k->c.H + h];
}
static double m3d_bnext(const m3d *d, const m3t *k, int t, int h) {
    return m3_last(k, t) ? 0.0 : m3d_b(d, k, t + 1, h);
}

// mix: X = v·S, dAx (r = 0: dA)
static void ref_m3_mix(double *X, double *dAx, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, R = c->R;
    for (int t = 0; t < k->n; t++)
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++) {
                double S = m3d_gam(d, k, t, h) + m3d_bnext(d, k, t, h);
                dAx[((size_t)t * R + r) * H + h] = r == 0 ? d->dA[t * H + h] : 0.0;
                for (int p = 0; p < P; p++)
                    X[(((size_t)t * R + r) * H + h) * P + p] =
                        m3d_v(d->zx + (size_t)t * k->ldz, d, k, r, h, p) * S;
            }
}

// corr: ypre = ys + Σ_r' (q_r·k_r') v_r' (r' > r ? γ : −b_{t+1}) + D v_r
static void ref_m3_corr(double *yp, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, N = c->N, R = c->R;
    for (int t = 0; t < k->n; t++)
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++)
                for (int p = 0; p < P; p++) {
                    size_t o = (((size_t)t * R + r) * H + h) * P + p;
                    const double *z = d->zx + (size_t)t * k->ldz;
                    double acc = d->ys[o] + (k->D ? d->D[h] : 0) * m3d_v(z, d, k, r, h, p);
                    for (int r2 = 0; r2 < R; r2++) {
                        double qk = 0;
                        for (int i = 0; i < N; i++)
                            qk += d->q[(((size_t)t * R + r) * H + h) * N + i] *
                                  d->k[(((size_t)t * R + r2) * H + h) * N + i];
                        double wgt = r2 > r ? m3d_gam(d, k, t, h) : -m3d_bnext(d, k, t, h);
                        acc += qk * wgt * m3d_v(z, d, k, r2, h, p);
                    }
                    yp[o] = acc;
                }
}

// gate: g = Σ_r mo_r · gate(ypre_r, z·mz_r); rso [n,R,H]
static void ref_m3_gate(double *g, double *rso, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, R = c->R;
    for (int t = 0; t < k->n; t++)
        for (int h = 0; h < H; h++) {
            for (int p = 0; p < P; p++)
                g[((size_t)t * H + h) * P + p] = 0;
            for (int r = 0; r < R; r++) {
                const double *y = d->ypre + (((size_t)t * R + r) * H + h) * P;
                double ss = 0;
                for (int p = 0; p < P; p++)
                    ss += y[p] * y[p];
                double rs = 1 / sqrt(ss / P + (double)c->eps);
                if (c->norm)
                    rso[((size_t)t * R + r) * H + h] = rs;
                for (int p = 0; p < P; p++) {
                    double zz = d->zx[(size_t)t * k->ldz + h * P + p] *
                                m3d_mx(k->mz ? d->mz : NULL, k, h, r, p);
                    double yn = c->norm ? y[p] * rs * d->nw[h * P + p] : y[p];
                    g[((size_t)t * H + h) * P + p] +=
                        m3d_mx(k->mo ? d->mo : NULL, k, h, r, p) * yn * silu_d(zz);
                }
            }
        }
}

// fold (sequence 0's state block): ssm += b_1·Σ_r v_prev,r ⊗ k_prev,r (dlt, lam: row 0)
static void ref_m3_fold(double *st, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, N = c->N, R = c->R;
    for (int h = 0; h < H; h++) {
        double b = m3d_b(d, k, 0, h);
        for (int p = 0; p < P; p++)
            for (int i = 0; i < N; i++)
                for (int r = 0; r < R; r++)
                    st[((size_t)h * P + p) * N + i] +=
                        b * st[m3_off_vprev(c) + (size_t)h * P + p] *
                        m3d_mx(k->mx ? d->mx : NULL, k, h, r, p) *
                        st[m3_off_kprev(c) + ((size_t)r * H + h) * N + i];
    }
}

// step: row i one token of state block i (nseq = n here: T = 1)
static void ref_m3_step(double *yp, double *stall, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, N = c->N, R = c->R;
    size_t ns = m3_state_floats(c);
    for (int t = 0; t < k->n; t++) {
        double *st = stall + (size_t)t * ns, *kp = st + m3_off_kprev(c), *vp = st + m3_off_vprev(c);
        const double *z = d->zx + (size_t)t * k->ldz;
        for (int h = 0; h < H; h++) {
            double a = exp(d->dA[t * H + h]), gam = m3d_gam(d, k, t, h);
            double bet = m3d_b(d, k, t, h) * a;
            for (int p = 0; p < P; p++)
                for (int i = 0; i < N; i++) {
                    double s = a * st[((size_t)h * P + p) * N + i];
                    for (int r = 0; r < R; r++) {
                        double mxv = m3d_mx(k->mx ? d->mx : NULL, k, h, r, p);
                        s += bet * vp[h * P + p] * mxv * kp[((size_t)r * H + h) * N + i] +
                             gam * m3d_v(z, d, k, r, h, p) *
                                 d->k[(((size_t)t * R + r) * H + h) * N + i];
                    }
                    st[((size_t)h * P + p) * N + i] = s;
                }
            for (int r = 0; r < R; r++)
                for (int p = 0; p < P; p++) {
                    double y = (k->D ? d->D[h] : 0) * m3d_v(z, d, k, r, h, p);
                    for (int i = 0; i < N; i++)
                        y += st[((size_t)h * P + p) * N + i] *
                             d->q[(((size_t)t * R + r) * H + h) * N + i];
                    yp[(((size_t)t * R + r) * H + h) * P + p] = y;
                }
        }
        for (int i = 0; i < R * H * N; i++)
            kp[i] = d->k[(size_t)t * R * H * N + i];
        for (int i = 0; i < H * P; i++)
            vp[i] = z[m3_col_x(c) + i];
    }
}

// materialize (rows 0..T-1, one sequence): M[h,t,s] = q̄_t·k̄_s·exp(Σ dA)·(s<t ? S_s : γ_t)
static void ref_m3_materialize(double *M, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, N = c->N, R = c->R, T = k->T;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s < T; s++) {
                double v = 0;
                if (s <= t) {
                    double qk = 0, seg = 0;
                    for (int i = 0; i < N; i++) {
                        double qb = 0, kb = 0;
                        for (int r = 0; r < R; r++) {
                            qb += d->q[(((size_t)t * R + r) * H + h) * N + i];
                            kb += d->k[(((size_t)s * R + r) * H + h) * N + i];
                        }
                        qk += qb * kb / ((double)R * R);
                    }
                    for (int j = s + 1; j <= t; j++)
                        seg += d->dA[j * H + h];
                    double wgt = s == t ? m3d_gam(d, k, t, h)
                                        : m3d_gam(d, k, s, h) + m3d_b(d, k, s + 1, h);
                    v = qk * (seg < -60 ? 0.0 : exp(seg)) * wgt +
                        (s == t && k->D ? d->D[h] / R : 0.0);
                }
                M[((size_t)h * T + t) * T + s] = v;
            }
}

static void run_m3_angles(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    size_t ns = m3_state_floats(&k->c), nphi = (size_t)k->n * k->c.H * k->c.S;
    float *st = fbuf((size_t)k->nseq * ns + 1), **sp = xmalloc(sizeof(float *) * (k->nseq + 1));
    memcpy(st, k->st, sizeof(float) * (size_t)k->nseq * ns);
    for (int i = 0; i < k->nseq; i++)
        sp[i] = st + (size_t)i * ns;
    m3_angles(ex, out, sp, k->zx, k->ldz, k->dtb, k->n, k->T, &k->c);
    for (int i = 0; i < k->nseq; i++) // the final angles
        memcpy(out + nphi + (size_t)i * k->c.H * k->c.S, sp[i] + m3_off_angle(&k->c),
               sizeof(float) * (size_t)k->c.H * k->c.S);
    free(st), free(sp);
}
static void run_m3_angles_nostate(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    m3_angles(ex, out, NULL, k->zx, k->ldz, k->dtb, k->n, k->T, &k->c);
}
static void run_m3_prep(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    size_t nq = m3_nrhn(k), nh = (size_t)k->n * k->c.H;
    float *q = out, *kk = q + nq, *dA = kk + nq, *dl = dA + nh, *la = dl + nh, *rs = la + nh;
    m3_prep(ex, q, kk, dA, dl, la, rs, k->zx, k->ldz, k->phi, &k->w, k->n, &k->c);
}
static void run_m3_mix(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    m3_mix(ex, out, out + m3_nrhp(k), k->zx, k->ldz, k->dA, k->dlt, k->lam, &k->w, k->n, k->T,
           &k->c);
}
static void run_m3_corr(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    m3_corr(ex, out, k->ys, k->q, k->k, k->zx, k->ldz, k->dlt, k->lam, &k->w, k->n, k->T, &k->c);
}
static void run_m3_corr_inplace(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    memcpy(out, k->ys, sizeof(float) * m3_nrhp(k));
    m3_corr(ex, out, out, k->q, k->k, k->zx, k->ldz, k->dlt, k->lam, &k->w, k->n, k->T, &k->c);
}
static void run_m3_gate(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    float *rs = out + (size_t)k->n * k->c.H * k->c.P;
    m3_gate(ex, out, k->c.norm ? rs : NULL, k->ypre, k->zx, k->ldz, &k->w, k->n, &k->c);
}
static void run_m3_fold(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    memcpy(out, k->st, sizeof(float) * m3_state_floats(&k->c));
    m3_fold(ex, out, k->dlt, k->lam, &k->w, &k->c);
}
// out: ypre | the n state blocks after the step
static void run_m3_step_rows(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    size_t ns = m3_state_floats(&k->c);
    float *st = out + m3_nrhp(k), **sp = xmalloc(sizeof(float *) * (k->n + 1));
    memcpy(st, k->st, sizeof(float) * (size_t)k->n * ns);
    for (int i = 0; i < k->n; i++)
        sp[i] = st + (size_t)i * ns;
    m3_step_rows(ex, out, sp, k->q, k->k, k->zx, k->ldz, k->dA, k->dlt, k->lam, &k->w, k->n,
                 &k->c);
    free(sp);
}
static void run_m3_materialize(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    float *work = fbuf(m3_materialize_work(k->T, &k->c) + 1);
    fill_nan(work, m3_materialize_work(k->T, &k->c));
    m3_materialize(ex, out, k->q, k->k, k->dA, k->dlt, k->lam, k->D, k->T, &k->c, work);
    free(work);
}

static void m3_shape_str(char *buf, size_t cap, const m3t *k, int v) {
    snprintf(buf, cap, "n%d T%d H%d P%d N%d G%d R%d S%d%s%s%s", k->n, k->T, k->c.H, k->c.P, k->c.N,
             k->c.G, k->c.R, k->c.S, k->c.mimo ? " mimo" : "", k->c.norm ? " norm" : "",
             v ? " bare" : "");
}

static void test_m3_forward(void) {
    op_stat *sa = stat_new("m3_angles", 2e-5, 1), *sp = stat_new("m3_prep", 5e-6, 1);
    op_stat *sm = stat_new("m3_mix", 2e-6, 1), *sc = stat_new("m3_corr", 1e-5, 1);
    op_stat *sg = stat_new("m3_gate", 5e-6, 1), *sf = stat_new("m3_fold", 1e-5, 1);
    op_stat *ss = stat_new("m3_step_rows", 1e-5, 1), *sx = stat_new("m3_materialize", 1e-5, 1);
    for (int si = 0; si < N_M3; si++)
        for (int v = 0; v < 2; v++) {
            m3t k;
            m3t_make(&k, M3_SHAPES[si], v);
            m3d d;
            m3d_make(&d, &k);
            const m3_rows_cfg *c = &k.c;
            size_t n = (size_t)k.n, H = (size_t)c->H, nq = m3_nrhn(&k), np = m3_nrhp(&k);
            size_t ns = m3_state_floats(c), nphi = n * H * c->S, nr = n * 2 * c->R * c->G;
            char shape[48];
            m3_shape_str(shape, sizeof shape, &k, v);
            // angles, with the states' angles carried and without
            double *ref = dbuf(nphi + (size_t)k.nseq * ns + 1);
            double *st = dcopy(k.st, (size_t)k.nseq * ns);
            ref_m3_angles(ref, st, &d, &k);
            for (int i = 0; i < k.nseq; i++)
                memcpy(ref + nphi + (size_t)i * H * c->S, st + (size_t)i * ns + m3_off_angle(c),
                       sizeof(double) * H * c->S);
            run_case(sa, run_m3_angles, &k, ref, nphi + (size_t)k.nseq * H * c->S, shape);
            ref_m3_angles(ref, NULL, &d, &k);
            run_case(sa, run_m3_angles_nostate, &k, ref, nphi, shape);
            free(ref), free(st);
            // prep
            ref = dbuf(2 * nq + 3 * n * H + nr + 1);
            ref_m3_prep(ref, ref + nq, ref + 2 * nq, ref + 2 * nq + n * H, ref + 2 * nq + 2 * n * H,
                        ref + 2 * nq + 3 * n * H, &d, &k);
            run_case(sp, run_m3_prep, &k, ref, 2 * nq + 3 * n * H + nr, shape);
            free(ref);
            // mix, corr
            ref = dbuf(np + n * c->R * H + 1);
            ref_m3_mix(ref, ref + np, &d, &k);
            run_case(sm, run_m3_mix, &k, ref, np + n * c->R * H, shape);
            ref_m3_corr(ref, &d, &k);
            run_case(sc, run_m3_corr, &k, ref, np, shape);
            run_case(sc, run_m3_corr_inplace, &k, ref, np, shape);
            free(ref);
            // gate
            ref = dbuf(n * H * c->P + n * c->R * H + 1);
            ref_m3_gate(ref, ref + n * H * c->P, &d, &k);
            run_case(sg, run_m3_gate, &k, ref, n * H * c->P + (c->norm ? n * c->R * H : 0), shape);
            free(ref);
            // fold (state block 0, the first row's Δ and λ)
            if (k.n > 0) {
                ref = dcopy(k.st, ns);
                ref_m3_fold(ref, &d, &k);
                run_case(sf, run_m3_fold, &k, ref, ns, shape);
                free(ref);
            }
            // decode step: one state block per row (shapes with T = 1)
            if (k.T == 1) {
                ref = dbuf(np + n * ns + 1);
                memcpy(ref + np, d.st, sizeof(double) * n * ns);
                ref_m3_step(ref, ref + np, &d, &k);
                run_case(ss, run_m3_step_rows, &k, ref, np + n * ns, shape);
                free(ref);
            }
            // materialize (the first sequence)
            if (k.n > 0) {
                size_t nM = H * (size_t)k.T * k.T;
                ref = dbuf(nM);
                ref_m3_materialize(ref, &d, &k);
                run_case(sx, run_m3_materialize, &k, ref, nM, shape);
                free(ref);
            }
            m3d_free(&d);
            m3t_free(&k);
        }
}

// ---- mamba3 backward references (written from the chain rule of mamba3.h's
// equations, then checked against central differences of the forwards above)

// angles: ψ = reverse cumsum of dphi per sequence; dang [n,S]; ddt [n,H] (the Δ term)
static void ref_m3_angles_backward(double *dang, double *ddt, double *psi, const double *dphi,
                                   const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, S = c->S;
    for (int i = 0; i < k->nseq; i++)
        for (int hs = 0; hs < H * S; hs++) {
            double acc = 0;
            for (int t = (i + 1) * k->T - 1; t >= i * k->T; t--) {
                acc += dphi[(size_t)t * H * S + hs];
                psi[(size_t)t * H * S + hs] = acc;
            }
        }
    for (int t = 0; t < k->n; t++) {
        const double *z = d->zx + (size_t)t * k->ldz, *ps = psi + (size_t)t * H * S;
        for (int s = 0; s < S; s++) {
            double th = tanh(z[m3_col_ang(c) + s]), a = 0;
            for (int h = 0; h < H; h++)
                a += ps[h * S + s] * m3d_delta(z, d, k, h);
            dang[(size_t)t * S + s] = a * M_PI * (1 - th * th);
        }
        for (int h = 0; h < H; h++) {
            double a = 0, v = z[m3_col_dt(c) + h] + (k->dtb ? d->dtb[h] : 0);
            for (int s = 0; s < S; s++)
                a += ps[h * S + s] * tanh(z[m3_col_ang(c) + s]) * M_PI;
            ddt[(size_t)t * H + h] = a * (v > 20 ? 1.0 : sigmoid_d(v));
        }
    }
}

// prep backward. Outputs (dzx columns as dense blocks): dB, dC [n,R·G·N], ddt, dAc,
// dtrap [n,H], dphi [n,H,S], dBn, dCn [n,N], dBb, dCb [n,H,R,N]
typedef struct m3pb {
    double *dB, *dC, *ddt, *dAc, *dtrap, *dphi, *dBn, *dCn, *dBb, *dCb;
} m3pb;

static void ref_m3_prep_backward(const m3pb *o, const double *dq, const double *dk,
                                 const double *ddA, const double *dgam, const double *dbet,
                                 const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, N = c->N, G = c->G, R = c->R, S = c->S, n = k->n;
    size_t nq = m3_nrhn(k);
    double *q = dbuf(nq + 1), *kk = dbuf(nq + 1), *t1 = dbuf((size_t)n * H + 1);
    ref_m3_prep(q, kk, t1, t1, t1, NULL, d, k); // the rotated values
    memset(o->dphi, 0, sizeof(double) * (size_t)n * H * S);
    memset(o->dBn, 0, sizeof(double) * (size_t)n * N);
    memset(o->dCn, 0, sizeof(double) * (size_t)n * N);
    for (int t = 0; t < n; t++) {
        const double *z = d->zx + (size_t)t * k->ldz;
        for (int h = 0; h < H; h++) {
            size_t i = (size_t)t * H + h;
            double D = m3d_delta(z, d, k, h), a = z[m3_col_A(c) + h];
            double lam = sigmoid_d(z[m3_col_trap(c) + h]), A = -m3d_ht(a, (double)c->A_floor);
            double v = z[m3_col_dt(c) + h] + (k->dtb ? d->dtb[h] : 0);
            double dD = ddA[i] * A + dgam[i] * lam + dbet[i] * (1 - lam);
            o->ddt[i] = dD * (v > 20 ? 1.0 : sigmoid_d(v));
            double raw = a >= 0 ? 1 + a : 1 / (1 - a);
            double dAda = raw < (double)c->A_floor ? 0.0 : a >= 0 ? -1.0 : -1 / ((1 - a) * (1 - a));
            o->dAc[i] = ddA[i] * D * dAda;
            o->dtrap[i] = (dgam[i] - dbet[i]) * D * lam * (1 - lam);
        }
        for (int bc = 0; bc < 2; bc++)
            for (int r = 0; r < R; r++)
                for (int g = 0; g < G; g++) {
                    const double *b = z + (bc ? m3_col_C(c) : m3_col_B(c)) + (r * G + g) * N;
                    const double *nw = bc ? (k->Cn ? d->Cn : NULL) : (k->Bn ? d->Bn : NULL);
                    double ss = 0, acc[64] = {0}, dot = 0;
                    for (int i = 0; i < N; i++)
                        ss += b[i] * b[i];
                    double rs = 1 / sqrt(ss / N + (double)c->eps);
                    for (int h = g * (H / G); h < (g + 1) * (H / G); h++) {
                        size_t off = (((size_t)t * R + r) * H + h) * N;
                        const double *gv = (bc ? dq : dk) + off, *val = (bc ? q : kk) + off;
                        double du[64];
                        for (int i = 0; i < N; i++)
                            du[i] = gv[i];
                        for (int s = 0; s < S; s++) {
                            int ia, ib;
                            m3d_pair(c, s, &ia, &ib);
                            double f = d->phi[((size_t)t * H + h) * S + s];
                            o->dphi[((size_t)t * H + h) * S + s] +=
                                -gv[ia] * val[ib] + gv[ib] * val[ia];
                            du[ia] = gv[ia] * cos(f) + gv[ib] * sin(f);
                            du[ib] = -gv[ia] * sin(f) + gv[ib] * cos(f);
                        }
                        double *db = (bc ? o->dCb : o->dBb) + (((size_t)t * H + h) * R + r) * N;
                        for (int i = 0; i < N; i++) {
                            db[i] = du[i];
                            acc[i] += du[i];
                        }
                    }
                    double *dn = (bc ? o->dCn : o->dBn) + (size_t)t * N;
                    for (int i = 0; i < N; i++) {
                        dn[i] += acc[i] * b[i] * rs;
                        dot += acc[i] * (nw ? nw[i] : 1) * b[i];
                    }
                    double *dr = (bc ? o->dC : o->dB) + (size_t)t * R * G * N + (r * G + g) * N;
                    for (int i = 0; i < N; i++)
                        dr[i] = rs * acc[i] * (nw ? nw[i] : 1) - b[i] * rs * rs * rs * dot / N;
                }
    }
    free(q), free(kk), free(t1);
}

// mix + corr backward: dx [n,Di], dq, dk added to (+=), ddA, dgam, dbet [n,H],
// dmx [n,H,R,P], hsD [n,H]
static void ref_m3_mix_backward(double *dx, double *dq, double *dk, double *ddA, double *dgam,
                                double *dbet, double *dmx, double *hsD, const double *dX,
                                const double *ddAx, const double *dyp, const m3d *d,
                                const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, N = c->N, R = c->R, n = k->n;
    memset(dbet, 0, sizeof(double) * (size_t)n * H);
    for (int t = 0; t < n; t++) {
        const double *z = d->zx + (size_t)t * k->ldz;
        for (int h = 0; h < H; h++) {
            size_t i = (size_t)t * H + h;
            double gam = m3d_gam(d, k, t, h), bn = m3d_bnext(d, k, t, h), S = gam + bn;
            double dS = 0, dgc = 0, dbc = 0, hd = 0, D = k->D ? d->D[h] : 0;
            for (int p = 0; p < P; p++)
                dx[(size_t)t * H * P + h * P + p] = 0;
            for (int r2 = 0; r2 < R; r2++)
                for (int p = 0; p < P; p++) {
                    size_t o2 = (((size_t)t * R + r2) * H + h) * P + p;
                    double v = m3d_v(z, d, k, r2, h, p), dv = dX[o2] * S + D * dyp[o2];
                    dS += dX[o2] * v;
                    hd += dyp[o2] * v;
                    for (int r = 0; r < R; r++) {
                        size_t o1 = (((size_t)t * R + r) * H + h) * P + p;
                        double qk = 0;
                        for (int j = 0; j < N; j++)
                            qk += d->q[(((size_t)t * R + r) * H + h) * N + j] *
                                  d->k[(((size_t)t * R + r2) * H + h) * N + j];
                        double wgt = r2 > r ? gam : -bn;
                        dv += dyp[o1] * qk * wgt;
                        if (r2 > r)
                            dgc += dyp[o1] * qk * v;
                        else
                            dbc -= dyp[o1] * qk * v;
                        for (int j = 0; j < N; j++) {
                            dq[(((size_t)t * R + r) * H + h) * N + j] +=
                                wgt * dyp[o1] * v * d->k[(((size_t)t * R + r2) * H + h) * N + j];
                            dk[(((size_t)t * R + r2) * H + h) * N + j] +=
                                wgt * dyp[o1] * v * d->q[(((size_t)t * R + r) * H + h) * N + j];
                        }
                    }
                    double mxv = m3d_mx(k->mx ? d->mx : NULL, k, h, r2, p);
                    dx[(size_t)t * H * P + h * P + p] += dv * mxv;
                    if (k->mx)
                        dmx[(((size_t)t * H + h) * R + r2) * P + p] =
                            dv * z[m3_col_x(c) + h * P + p];
                }
            ddA[i] = ddAx[((size_t)t * R) * H + h];
            dgam[i] = dS + dgc;
            if (!m3_last(k, t))
                dbet[i + H] = dS + dbc;
            hsD[i] = hd;
        }
    }
}

// gate backward: dyp [n,R,H,P], dz [n,Di], dmz, dmo [n,H,R,P], dnw [n,Di]
static void ref_m3_gate_backward(double *dyp, double *dz, double *dmz, double *dmo, double *dnw,
                                 const double *dg, const m3d *d, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, P = c->P, R = c->R, n = k->n, Di = H * P;
    memset(dz, 0, sizeof(double) * (size_t)n * Di);
    memset(dnw, 0, sizeof(double) * (size_t)n * Di);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++)
            for (int r = 0; r < R; r++) {
                const double *y = d->ypre + (((size_t)t * R + r) * H + h) * P;
                double ss = 0, dot = 0;
                for (int p = 0; p < P; p++)
                    ss += y[p] * y[p];
                double rs = c->norm ? 1 / sqrt(ss / P + (double)c->eps) : 1;
                for (int p = 0; p < P; p++) {
                    double z = d->zx[(size_t)t * k->ldz + h * P + p];
                    double zz = z * m3d_mx(k->mz ? d->mz : NULL, k, h, r, p);
                    double dgr = dg[(size_t)t * Di + h * P + p] *
                                 m3d_mx(k->mo ? d->mo : NULL, k, h, r, p);
                    if (c->norm)
                        dot += dgr * silu_d(zz) * d->nw[h * P + p] * y[p];
                }
                for (int p = 0; p < P; p++) {
                    size_t wi = (((size_t)t * H + h) * R + r) * P + p;
                    size_t di = (size_t)t * Di + h * P + p;
                    double z = d->zx[(size_t)t * k->ldz + h * P + p];
                    double mzv = m3d_mx(k->mz ? d->mz : NULL, k, h, r, p), zz = z * mzv;
                    double dgr = dg[di] * m3d_mx(k->mo ? d->mo : NULL, k, h, r, p);
                    double yn = c->norm ? y[p] * rs * d->nw[h * P + p] : y[p];
                    if (k->mo)
                        dmo[wi] = dg[di] * yn * silu_d(zz);
                    double *o = dyp + (((size_t)t * R + r) * H + h) * P + p;
                    if (c->norm) {
                        dnw[di] += dgr * silu_d(zz) * y[p] * rs;
                        *o = rs * dgr * silu_d(zz) * d->nw[h * P + p] -
                             y[p] * rs * rs * rs * dot / P;
                    } else {
                        *o = dgr * silu_d(zz);
                    }
                    double dzz = dgr * yn * dsilu_d(zz);
                    dz[di] += dzz * mzv;
                    if (k->mz)
                        dmz[wi] = dzz * z;
                }
            }
}

// materialize backward (the first sequence): dq, dk [T,R,H,N], ddA, dgam, dbet [T,H], dD [H]
static void ref_m3_materialize_backward(double *dq, double *dk, double *ddA, double *dgam,
                                        double *dbet, double *dD, const double *dM, const m3d *d,
                                        const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    int H = c->H, N = c->N, R = c->R, T = k->T;
    size_t nq = (size_t)T * R * H * N;
    memset(dq, 0, sizeof(double) * nq), memset(dk, 0, sizeof(double) * nq);
    memset(ddA, 0, sizeof(double) * (size_t)T * H), memset(dgam, 0, sizeof(double) * (size_t)T * H);
    memset(dbet, 0, sizeof(double) * (size_t)T * H), memset(dD, 0, sizeof(double) * (size_t)H);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s <= t; s++) {
                double m = dM[((size_t)h * T + t) * T + s], qb[64], kb[64], qk = 0, seg = 0;
                for (int i = 0; i < N; i++) {
                    qb[i] = kb[i] = 0;
                    for (int r = 0; r < R; r++) {
                        qb[i] += d->q[(((size_t)t * R + r) * H + h) * N + i] / R;
                        kb[i] += d->k[(((size_t)s * R + r) * H + h) * N + i] / R;
                    }
                    qk += qb[i] * kb[i];
                }
                for (int j = s + 1; j <= t; j++)
                    seg += d->dA[j * H + h];
                double L = seg < -60 ? 0.0 : exp(seg);
                double wgt = s == t ? m3d_gam(d, k, t, h)
                                    : m3d_gam(d, k, s, h) + m3d_b(d, k, s + 1, h);
                for (int i = 0; i < N; i++)
                    for (int r = 0; r < R; r++) {
                        dq[(((size_t)t * R + r) * H + h) * N + i] += m * L * wgt * kb[i] / R;
                        dk[(((size_t)s * R + r) * H + h) * N + i] += m * L * wgt * qb[i] / R;
                    }
                for (int j = s + 1; j <= t; j++)
                    ddA[j * H + h] += m * qk * L * wgt;
                if (s == t) {
                    dgam[t * H + h] += m * qk;
                    dD[h] += m / R;
                } else {
                    dgam[s * H + h] += m * qk * L;
                    dbet[(s + 1) * H + h] += m * qk * L;
                }
            }
}

// ---- runs of the backward ops (every written output starts as NaN; += outputs
// from the case's random values)

static void m3_cols(float *dst, const float *dzx, const m3t *k, int col, int w) {
    molt_exec cpu = molt_exec_cpu(1); // a host copy of the outputs (any backend's)
    k_copy_cols(&cpu, dst, (size_t)w, dzx + col, (size_t)k->ldz, (size_t)k->n, (size_t)w);
}

// out: dang [n,S] | dd_dt [n,H] (+= onto dgam's values) | ψ [n,H,S]
static void run_m3_angles_backward(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, H = (size_t)c->H, S = (size_t)c->S;
    float *dzx = fbuf(n * k->ldz + 1), *psi = out + n * S + n * H;
    fill_nan(dzx, n * k->ldz);
    for (size_t t = 0; t < n; t++)
        memcpy(dzx + t * k->ldz + m3_col_dt(c), k->dgam + t * H, sizeof(float) * H);
    memcpy(psi, k->dphi, sizeof(float) * n * H * S);
    m3_angles_backward(ex, dzx, psi, k->zx, k->ldz, k->dtb, k->n, k->T, c);
    m3_cols(out, dzx, k, m3_col_ang(c), c->S);
    m3_cols(out + n * S, dzx, k, m3_col_dt(c), c->H);
    free(dzx);
}

static size_t m3_pb_size(const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, RGN = (size_t)c->R * c->G * c->N, H = (size_t)c->H;
    return n * (2 * RGN + 3 * H + H * c->S + 2 * (size_t)c->N + 2 * H * c->R * c->N);
}
static m3pb m3_pb_views(double *b, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, RGN = (size_t)c->R * c->G * c->N, H = (size_t)c->H;
    m3pb o;
    o.dB = b, o.dC = o.dB + n * RGN, o.ddt = o.dC + n * RGN, o.dAc = o.ddt + n * H;
    o.dtrap = o.dAc + n * H, o.dphi = o.dtrap + n * H, o.dBn = o.dphi + n * H * c->S;
    o.dCn = o.dBn + n * c->N, o.dBb = o.dCn + n * c->N, o.dCb = o.dBb + n * H * c->R * c->N;
    return o;
}

static void run_m3_prep_backward(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, RGN = (size_t)c->R * c->G * c->N, H = (size_t)c->H;
    float *dzx = fbuf(n * k->ldz + 1), *dphi = out + n * (2 * RGN + 3 * H);
    float *dBn = dphi + n * H * c->S, *dCn = dBn + n * c->N, *dBb = dCn + n * c->N;
    float *dCb = dBb + n * H * c->R * c->N;
    fill_nan(dzx, n * k->ldz);
    m3_prep_backward(ex, dzx, dphi, dBn, dCn, dBb, dCb, k->dq, k->dk, k->ddA, k->dgam, k->dbet,
                     k->pq, k->pk, k->rstd, k->zx, k->ldz, k->phi, &k->w, k->n, c);
    m3_cols(out, dzx, k, m3_col_B(c), (int)RGN);
    m3_cols(out + n * RGN, dzx, k, m3_col_C(c), (int)RGN);
    m3_cols(out + 2 * n * RGN, dzx, k, m3_col_dt(c), c->H);
    m3_cols(out + 2 * n * RGN + n * H, dzx, k, m3_col_A(c), c->H);
    m3_cols(out + 2 * n * RGN + 2 * n * H, dzx, k, m3_col_trap(c), c->H);
    free(dzx);
}

// out: dx [n,Di] | dq | dk (+= onto the case's) | ddA | dgam | dbet | hsD | dmx (MIMO)
static void run_m3_mix_backward(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, H = (size_t)c->H, Di = H * c->P, nq = m3_nrhn(k);
    float *dzx = fbuf(n * k->ldz + 1), *dq = out + n * Di, *dk = dq + nq, *ddA = dk + nq;
    float *dgam = ddA + n * H, *dbet = dgam + n * H, *hsD = dbet + n * H, *dmx = hsD + n * H;
    fill_nan(dzx, n * k->ldz);
    memcpy(dq, k->dq, sizeof(float) * nq);
    memcpy(dk, k->dk, sizeof(float) * nq);
    m3_mix_backward(ex, dzx, dq, dk, ddA, dgam, dbet, k->mx ? dmx : NULL, hsD, k->dX, k->ddAx,
                    k->dyp, k->q, k->k, k->zx, k->ldz, k->dlt, k->lam, &k->w, k->n, k->T, c);
    m3_cols(out, dzx, k, m3_col_x(c), (int)Di);
    free(dzx);
}

// out: dyp | dz [n,Di] | dmz | dmo (MIMO) | dnw (norm)
static void run_m3_gate_backward(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, Di = (size_t)c->H * c->P, np = m3_nrhp(k), nw = n * Di * c->R;
    float *dzx = fbuf(n * k->ldz + 1), *dz = out + np, *dmz = dz + n * Di;
    float *dmo = k->mz ? dmz + nw : dmz, *dnw = k->mo ? dmo + nw : dmo;
    fill_nan(dzx, n * k->ldz);
    m3_gate_backward(ex, out, dzx, k->mz ? dmz : NULL, k->mo ? dmo : NULL, c->norm ? dnw : NULL,
                     k->dg, k->ypre, k->zx, k->ldz, k->rso, &k->w, k->n, c);
    m3_cols(dz, dzx, k, 0, (int)Di);
    free(dzx);
}

// out: dq | dk [T,R,H,N] | ddA | dgam | dbet [T,H] | dD (+= onto dgam's first H values)
static void run_m3_materialize_backward(const molt_exec *ex, void *cv, float *out) {
    m3t *k = cv;
    const m3_rows_cfg *c = &k->c;
    size_t T = (size_t)k->T, H = (size_t)c->H, nq = T * c->R * H * c->N;
    float *dq = out, *dk = dq + nq, *ddA = dk + nq, *dgam = ddA + T * H, *dbet = dgam + T * H;
    float *dD = dbet + T * H, *work = fbuf(m3_materialize_backward_work(k->T, c) + 1);
    fill_nan(work, m3_materialize_backward_work(k->T, c));
    if (k->D)
        memcpy(dD, k->dgam, sizeof(float) * H);
    m3_materialize_backward(ex, dq, dk, ddA, dgam, dbet, k->D ? dD : NULL, k->dM, k->q, k->k,
                            k->dA, k->dlt, k->lam, k->D, k->T, c, work);
    free(work);
}

// ---- central differences of the forward references (small shapes): L = Σ upstream · f,
// every input moved along a random direction v; the backward reference's Σ grad · v

typedef struct m3dir { // a random direction for every double input of m3d
    double *zx, *dtb, *Bn, *Cn, *Bb, *Cb, *mx, *mz, *mo, *D, *nw, *phi, *q, *k, *dA, *dlt, *lam;
    double *yp;
} m3dir;

static void m3_dir_make(m3dir *v, const m3t *k) {
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, H = (size_t)c->H, HRN = H * c->R * c->N, HRP = H * c->R * c->P;
    v->zx = drand(n * k->ldz), v->dtb = drand(H), v->Bn = drand((size_t)c->N);
    v->Cn = drand((size_t)c->N), v->Bb = drand(HRN), v->Cb = drand(HRN), v->mx = drand(HRP);
    v->mz = drand(HRP), v->mo = drand(HRP), v->D = drand(H), v->nw = drand(H * c->P);
    v->phi = drand(n * H * c->S), v->q = drand(m3_nrhn(k)), v->k = drand(m3_nrhn(k));
    v->dA = drand(n * H), v->dlt = drand(n * H), v->lam = drand(n * H), v->yp = drand(m3_nrhp(k));
}
static void m3_dir_free(m3dir *v) {
    double *p[] = {v->zx, v->dtb, v->Bn, v->Cn, v->Bb, v->Cb, v->mx, v->mz, v->mo,
                   v->D,  v->nw,  v->phi, v->q, v->k, v->dA, v->dlt, v->lam, v->yp};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

// d = base + h·v on every input (zx only on the columns [c0, c1))
static void m3_shift(m3d *d, const m3d *b, const m3dir *v, const m3t *k, double h, int c0, int c1) {
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, H = (size_t)c->H, HRN = H * c->R * c->N, HRP = H * c->R * c->P;
    for (size_t t = 0; t < n; t++)
        for (int j = 0; j < k->ldz; j++)
            d->zx[t * k->ldz + j] =
                b->zx[t * k->ldz + j] + (j >= c0 && j < c1 ? h * v->zx[t * k->ldz + j] : 0.0);
    shift(d->dtb, b->dtb, v->dtb, h, H), shift(d->Bn, b->Bn, v->Bn, h, (size_t)c->N);
    shift(d->Cn, b->Cn, v->Cn, h, (size_t)c->N), shift(d->Bb, b->Bb, v->Bb, h, HRN);
    shift(d->Cb, b->Cb, v->Cb, h, HRN), shift(d->mx, b->mx, v->mx, h, HRP);
    shift(d->mz, b->mz, v->mz, h, HRP), shift(d->mo, b->mo, v->mo, h, HRP);
    shift(d->D, b->D, v->D, h, H), shift(d->nw, b->nw, v->nw, h, H * c->P);
    shift(d->phi, b->phi, v->phi, h, n * H * c->S), shift(d->q, b->q, v->q, h, m3_nrhn(k));
    shift(d->k, b->k, v->k, h, m3_nrhn(k)), shift(d->dA, b->dA, v->dA, h, n * H);
    shift(d->dlt, b->dlt, v->dlt, h, n * H), shift(d->lam, b->lam, v->lam, h, n * H);
    shift(d->ypre, b->ypre, v->yp, h, m3_nrhp(k));
}

// Σ_rows g[t,·]·v_param (a per-row partial against a parameter's direction)
static double m3_partial_dot(const double *g, const double *v, size_t rows, size_t w) {
    double s = 0;
    for (size_t t = 0; t < rows; t++)
        for (size_t i = 0; i < w; i++)
            s += g[t * w + i] * v[i];
    return s;
}
// Σ over the columns [c0, c0 + w) of zx of g·v (g dense [n,w])
static double m3_cols_dot(const double *g, const double *vzx, const m3t *k, int c0, int w) {
    double s = 0;
    for (int t = 0; t < k->n; t++)
        for (int i = 0; i < w; i++)
            s += g[(size_t)t * w + i] * vzx[(size_t)t * k->ldz + c0 + i];
    return s;
}
// the directional derivative through γ = λΔ and b = (1 − λ)Δ
static double m3_gb_dot(const double *dgam, const double *dbet, const m3d *d, const m3dir *v,
                        size_t nh) {
    double s = 0;
    for (size_t i = 0; i < nh; i++)
        s += dgam[i] * (v->lam[i] * d->dlt[i] + d->lam[i] * v->dlt[i]) +
             dbet[i] * (-v->lam[i] * d->dlt[i] + (1 - d->lam[i]) * v->dlt[i]);
    return s;
}

static void fd_m3(const m3t *k, const m3d *d) {
    const m3_rows_cfg *c = &k->c;
    size_t n = (size_t)k->n, H = (size_t)c->H, S = (size_t)c->S, Di = H * c->P;
    size_t nq = m3_nrhn(k), np = m3_nrhp(k), RGN = (size_t)c->R * c->G * c->N;
    size_t HRN = H * c->R * c->N, HRP = H * c->R * c->P;
    m3dir v;
    m3_dir_make(&v, k);
    m3d x;
    m3d_make(&x, k);
    double h = 1e-6, L[2];
    double *up_phi = dcopy(k->dphi, n * H * S), *dq = dcopy(k->dq, nq), *dk = dcopy(k->dk, nq);
    double *ddA = dcopy(k->ddA, n * H), *dgam = dcopy(k->dgam, n * H);
    double *dbet = dcopy(k->dbet, n * H);
    double *dX = dcopy(k->dX, np), *ddAx = dcopy(k->ddAx, n * c->R * H), *dyp = dcopy(k->dyp, np);
    double *dg = dcopy(k->dg, n * Di), *dM = dcopy(k->dM, H * (size_t)k->T * k->T);
    double *o1 = dbuf(2 * nq + 8 * n * H + 2 * np + n * Di + H * (size_t)k->T * k->T + 16);
    double *o2 = o1 + nq, *o3 = o2 + nq, *o4 = o3 + n * H, *o5 = o4 + n * H;
    int Rin = m3_in_rows(c);
    // angles: L = Σ dphi·φ  (zx: dt and angle columns; dt_bias)
    {
        double *dang = dbuf(n * S + 1), *ddt = dbuf(n * H + 1), *psi = dbuf(n * H * S + 1);
        ref_m3_angles_backward(dang, ddt, psi, up_phi, d, k);
        for (int sg = 0; sg < 2; sg++) {
            m3_shift(&x, d, &v, k, sg ? h : -h, m3_col_dt(c), Rin);
            ref_m3_angles(o1, NULL, &x, k);
            L[sg] = dotd(up_phi, o1, n * H * S);
        }
        double gv = m3_cols_dot(dang, v.zx, k, m3_col_ang(c), c->S) +
                    m3_cols_dot(ddt, v.zx, k, m3_col_dt(c), c->H) +
                    (k->dtb ? m3_partial_dot(ddt, v.dtb, n, H) : 0.0);
        check_fd("m3_angles", L[0], L[1], h, gv);
        free(dang), free(ddt), free(psi);
    }
    // prep: L = Σ dq·q + dk·k + ddA·dA + dgam·γ + dbet·b
    {
        double *pb = dbuf(m3_pb_size(k) + 1);
        m3pb o = m3_pb_views(pb, k);
        ref_m3_prep_backward(&o, dq, dk, ddA, dgam, dbet, d, k);
        for (int sg = 0; sg < 2; sg++) {
            m3_shift(&x, d, &v, k, sg ? h : -h, 0, Rin);
            ref_m3_prep(o1, o2, o3, o4, o5, NULL, &x, k);
            double l = dotd(dq, o1, nq) + dotd(dk, o2, nq) + dotd(ddA, o3, n * H);
            for (size_t i = 0; i < n * H; i++)
                l += dgam[i] * o5[i] * o4[i] + dbet[i] * (1 - o5[i]) * o4[i];
            L[sg] = l;
        }
        double gv = m3_cols_dot(o.dB, v.zx, k, m3_col_B(c), (int)RGN) +
                    m3_cols_dot(o.dC, v.zx, k, m3_col_C(c), (int)RGN) +
                    m3_cols_dot(o.ddt, v.zx, k, m3_col_dt(c), c->H) +
                    m3_cols_dot(o.dAc, v.zx, k, m3_col_A(c), c->H) +
                    m3_cols_dot(o.dtrap, v.zx, k, m3_col_trap(c), c->H) +
                    dotd(o.dphi, v.phi, n * H * S);
        gv += (k->dtb ? m3_partial_dot(o.ddt, v.dtb, n, H) : 0.0) +
              (k->Bn ? m3_partial_dot(o.dBn, v.Bn, n, (size_t)c->N) : 0.0) +
              (k->Cn ? m3_partial_dot(o.dCn, v.Cn, n, (size_t)c->N) : 0.0) +
              (k->Bb ? m3_partial_dot(o.dBb, v.Bb, n, HRN) : 0.0) +
              (k->Cb ? m3_partial_dot(o.dCb, v.Cb, n, HRN) : 0.0);
        check_fd("m3_prep", L[0], L[1], h, gv);
        free(pb);
    }
    // mix + corr: L = Σ dX·X + ddAx·dAx + dyp·(ypre − ys)
    {
        double *dx = dbuf(n * Di + 1), *gq = dbuf(nq + 1), *gk = dbuf(nq + 1);
        double *gA = dbuf(n * H + 1);
        double *gg = dbuf(n * H + 1), *gb = dbuf(n * H + 1), *gmx = dbuf(n * HRP + 1);
        double *hsD = dbuf(n * H + 1);
        ref_m3_mix_backward(dx, gq, gk, gA, gg, gb, gmx, hsD, dX, ddAx, dyp, d, k);
        for (int sg = 0; sg < 2; sg++) {
            m3_shift(&x, d, &v, k, sg ? h : -h, m3_col_x(c), m3_col_x(c) + (int)Di);
            ref_m3_mix(o1, o1 + np, &x, k);
            ref_m3_corr(o1 + np + n * c->R * H, &x, k);
            double l = dotd(dX, o1, np) + dotd(ddAx, o1 + np, n * c->R * H);
            for (size_t i = 0; i < np; i++)
                l += dyp[i] * (o1[np + n * c->R * H + i] - d->ys[i]);
            L[sg] = l;
        }
        double gv = m3_cols_dot(dx, v.zx, k, m3_col_x(c), (int)Di) + dotd(gq, v.q, nq) +
                    dotd(gk, v.k, nq) + dotd(gA, v.dA, n * H) + m3_gb_dot(gg, gb, d, &v, n * H) +
                    (k->mx ? m3_partial_dot(gmx, v.mx, n, HRP) : 0.0) +
                    (k->D ? m3_partial_dot(hsD, v.D, n, H) : 0.0);
        check_fd("m3_mix + m3_corr", L[0], L[1], h, gv);
        free(dx), free(gq), free(gk), free(gA), free(gg), free(gb), free(gmx), free(hsD);
    }
    // gate: L = Σ dg·g
    {
        double *gy = dbuf(np + 1), *gz = dbuf(n * Di + 1), *gmz = dbuf(n * HRP + 1);
        double *gmo = dbuf(n * HRP + 1), *gnw = dbuf(n * Di + 1);
        ref_m3_gate_backward(gy, gz, gmz, gmo, gnw, dg, d, k);
        for (int sg = 0; sg < 2; sg++) {
            m3_shift(&x, d, &v, k, sg ? h : -h, 0, (int)Di);
            ref_m3_gate(o1, o1 + n * Di, &x, k);
            L[sg] = dotd(dg, o1, n * Di);
        }
        double gv = dotd(gy, v.yp, np) + m3_cols_dot(gz, v.zx, k, 0, (int)Di) +
                    (k->mz ? m3_partial_dot(gmz, v.mz, n, HRP) : 0.0) +
                    (k->mo ? m3_partial_dot(gmo, v.mo, n, HRP) : 0.0) +
                    (c->norm ? m3_partial_dot(gnw, v.nw, n, Di) : 0.0);
        check_fd("m3_gate", L[0], L[1], h, gv);
        free(gy), free(gz), free(gmz), free(gmo), free(gnw);
    }
    // materialize (the first sequence): L = Σ dM·M
    {
        size_t T = (size_t)k->T, tq = T * c->R * H * c->N;
        double *gq = dbuf(tq + 1), *gk = dbuf(tq + 1), *gA = dbuf(T * H + 1), *gg = dbuf(T * H + 1);
        double *gb = dbuf(T * H + 1), *gD = dbuf(H + 1);
        ref_m3_materialize_backward(gq, gk, gA, gg, gb, gD, dM, d, k);
        for (int sg = 0; sg < 2; sg++) {
            m3_shift(&x, d, &v, k, sg ? h : -h, 0, 0);
            ref_m3_materialize(o1, &x, k);
            L[sg] = dotd(dM, o1, H * T * T);
        }
        double gv = dotd(gq, v.q, tq) + dotd(gk, v.k, tq) + dotd(gA, v.dA, T * H) +
                    m3_gb_dot(gg, gb, d, &v, T * H) + (k->D ? dotd(gD, v.D, H) : 0.0);
        check_fd("m3_materialize", L[0], L[1], h, gv);
        free(gq), free(gk), free(gA), free(gg), free(gb), free(gD);
    }
    free(up_phi), free(dq), free(dk), free(ddA), free(dgam), free(dbet), free(dX), free(ddAx);
    free(dyp), free(dg), free(dM), free(o1);
    m3d_free(&x);
    m3_dir_free(&v);
}

static void test_m3_backward(void) {
    op_stat *sa = stat_new("m3_angles_backward", 2e-5, 1);
    op_stat *sp = stat_new("m3_prep_backward", 2e-5, 1);
    op_stat *sm = stat_new("m3_mix_backward", 2e-5, 1);
    op_stat *sg = stat_new("m3_gate_backward", 2e-5, 1);
    op_stat *sx = stat_new("m3_materialize_backward", 5e-5, 1);
    for (int si = 0; si < N_M3; si++)
        for (int v = 0; v < 2; v++) {
            m3t k;
            m3t_make(&k, M3_SHAPES[si], v);
            m3d d;
            m3d_make(&d, &k);
            const m3_rows_cfg *c = &k.c;
            size_t n = (size_t)k.n, H = (size_t)c->H, S = (size_t)c->S, Di = H * c->P;
            size_t nq = m3_nrhn(&k), np = m3_nrhp(&k), HRP = H * c->R * c->P;
            char shape[48];
            m3_shape_str(shape, sizeof shape, &k, v);
            // angles
            double *dphi = dcopy(k.dphi, n * H * S), *ref = dbuf(n * S + n * H + n * H * S + 1);
            ref_m3_angles_backward(ref, ref + n * S, ref + n * S + n * H, dphi, &d, &k);
            for (size_t i = 0; i < n * H; i++)
                ref[n * S + i] += (double)k.dgam[i];
            run_case(sa, run_m3_angles_backward, &k, ref, n * S + n * H + n * H * S, shape);
            free(dphi), free(ref);
            // prep
            double *dq = dcopy(k.dq, nq), *dk = dcopy(k.dk, nq), *ddA = dcopy(k.ddA, n * H);
            double *dgam = dcopy(k.dgam, n * H), *dbet = dcopy(k.dbet, n * H);
            ref = dbuf(m3_pb_size(&k) + 1);
            m3pb o = m3_pb_views(ref, &k);
            ref_m3_prep_backward(&o, dq, dk, ddA, dgam, dbet, &d, &k);
            run_case(sp, run_m3_prep_backward, &k, ref, m3_pb_size(&k), shape);
            free(ref);
            // mix + corr: dq, dk accumulate onto the case's
            double *dX = dcopy(k.dX, np), *ddAx = dcopy(k.ddAx, n * c->R * H);
            double *dyp = dcopy(k.dyp, np);
            size_t nmb = n * Di + 2 * nq + 4 * n * H + (k.mx ? n * HRP : 0);
            ref = dbuf(n * Di + 2 * nq + 4 * n * H + n * HRP + 1);
            double *r_dq = ref + n * Di, *r_dk = r_dq + nq, *r_dA = r_dk + nq, *r_dg = r_dA + n * H;
            double *r_db = r_dg + n * H, *r_hs = r_db + n * H, *r_mx = r_hs + n * H;
            memcpy(r_dq, dq, sizeof(double) * nq), memcpy(r_dk, dk, sizeof(double) * nq);
            ref_m3_mix_backward(ref, r_dq, r_dk, r_dA, r_dg, r_db, r_mx, r_hs, dX, ddAx, dyp, &d,
                                &k);
            run_case(sm, run_m3_mix_backward, &k, ref, nmb, shape);
            free(ref);
            // gate
            double *dg = dcopy(k.dg, n * Di);
            ref = dbuf(np + n * Di + 2 * n * HRP + n * Di + 1);
            double *r_z = ref + np, *r_mz = r_z + n * Di, *r_mo = k.mz ? r_mz + n * HRP : r_mz;
            double *r_nw = k.mo ? r_mo + n * HRP : r_mo, *t_mz = dbuf(n * HRP + 1);
            double *t_mo = dbuf(n * HRP + 1), *t_nw = dbuf(n * Di + 1);
            ref_m3_gate_backward(ref, r_z, t_mz, t_mo, t_nw, dg, &d, &k);
            if (k.mz)
                memcpy(r_mz, t_mz, sizeof(double) * n * HRP);
            if (k.mo)
                memcpy(r_mo, t_mo, sizeof(double) * n * HRP);
            if (c->norm)
                memcpy(r_nw, t_nw, sizeof(double) * n * Di);
            size_t ngb = np + n * Di + (k.mz ? n * HRP : 0) + (k.mo ? n * HRP : 0) +
                         (c->norm ? n * Di : 0);
            run_case(sg, run_m3_gate_backward, &k, ref, ngb, shape);
            free(ref), free(t_mz), free(t_mo), free(t_nw);
            // materialize (the first sequence)
            if (k.n > 0) {
                size_t T = (size_t)k.T, tq = T * c->R * H * c->N, nM = H * T * T;
                double *dM = dcopy(k.dM, nM);
                ref = dbuf(2 * tq + 3 * T * H + H + 1);
                double *r_D = ref + 2 * tq + 3 * T * H;
                ref_m3_materialize_backward(ref, ref + tq, ref + 2 * tq, ref + 2 * tq + T * H,
                                            ref + 2 * tq + 2 * T * H, r_D, dM, &d, &k);
                for (size_t i = 0; i < H; i++)
                    r_D[i] += (double)k.dgam[i];
                run_case(sx, run_m3_materialize_backward, &k, ref,
                         2 * tq + 3 * T * H + (k.D ? H : 0), shape);
                free(dM), free(ref);
            }
            if (k.n > 0 && k.n <= 10 && k.T <= 5) // the references against central differences
                fd_m3(&k, &d);
            free(dq), free(dk), free(ddA), free(dgam), free(dbet), free(dX), free(ddAx), free(dyp);
            free(dg);
            m3d_free(&d);
            m3t_free(&k);
        }
}

// ----------------------------------------------------------------------------
// the table itself

// molt_exec_init refuses a table with any one op missing (and leaves the exec alone)
static void test_missing_ops(void) {
    for (int b = 0; b < N_BACKENDS; b++) {
        int ops = 0;
#define DROP_OP(op)                                                                                \
    {                                                                                              \
        molt_backend broken = *BACKENDS[b];                                                        \
        broken.op = NULL;                                                                          \
        molt_exec ex = molt_exec_cpu(2);                                                           \
        if (state16_op(#op)) { /* the bf16 state's ops may be missing */                          \
            CHECK(molt_exec_init(&ex, &broken, 1), "%s without " #op " was refused",              \
                  BACKENDS[b]->name);                                                              \
        } else {                                                                                   \
            CHECK(!molt_exec_init(&ex, &broken, 1), "%s without " #op " was accepted",            \
                  BACKENDS[b]->name);                                                              \
            CHECK(ex.be == &molt_backend_cpu && ex.nth == 2, "refusing %s without " #op            \
                  " changed the exec", BACKENDS[b]->name);                                         \
        }                                                                                          \
        ops++;                                                                                     \
    }
        MOLT_BACKEND_OPS(DROP_OP)
#undef DROP_OP
#define DROP_MEM(op)                                                                               \
    {                                                                                              \
        molt_backend broken = *BACKENDS[b];                                                        \
        broken.mem.op = NULL;                                                                      \
        molt_exec ex;                                                                              \
        CHECK(!molt_exec_init(&ex, &broken, 1), "%s without mem." #op " was accepted",            \
              BACKENDS[b]->name);                                                                  \
    }
        DROP_MEM(alloc) DROP_MEM(free) DROP_MEM(upload) DROP_MEM(download) DROP_MEM(copy)
        DROP_MEM(zero) DROP_MEM(sync)
#undef DROP_MEM
        CHECK(ops == MOLT_BACKEND_NOPS, "%d ops dropped, the table has %d", ops, MOLT_BACKEND_NOPS);
        molt_exec ex;
        CHECK(molt_exec_init(&ex, BACKENDS[b], 3) && ex.be == BACKENDS[b] && ex.nth == 3,
              "the complete %s table is accepted", BACKENDS[b]->name);
    }
}

// every public entry point calls its own slot of ex->be (a spy table)
static const char *g_called;
#define SPY(op) g_called = #op
static void spy_matmul(const molt_exec *e, float *y, const float *x, const float *W,
                       const float *b, int T, int in, int out, int acc) {
    SPY(matmul);
}
static void spy_matmul_w(const molt_exec *e, float *y, const float *x, molt_w W, const float *b,
                         int T, int in, int out, int acc) {
    SPY(matmul_w);
}
static void spy_matmul_backward(const molt_exec *e, float *dx, float *dW, float *db,
                                const float *dy, const float *x, const float *W, int T, int in,
                                int out, int acc) {
    SPY(matmul_backward);
}
static void spy_rmsnorm(const molt_exec *e, float *y, const float *x, const float *w, int T, int d,
                        float eps) {
    SPY(rmsnorm);
}
static void spy_rmsnorm_forward(const molt_exec *e, float *y, float *r, const float *x,
                                const float *w, int T, int d, float eps) {
    SPY(rmsnorm_forward);
}
static void spy_rmsnorm_backward(const molt_exec *e, float *dx, float *dw, const float *dy,
                                 const float *x, const float *w, const float *r, int T, int d) {
    SPY(rmsnorm_backward);
}
static void spy_swiglu(const molt_exec *e, float *g, const float *u, size_t n) { SPY(swiglu); }
static void spy_swiglu_backward(const molt_exec *e, float *dg, float *du, const float *dh,
                                const float *g, const float *u, size_t n) {
    SPY(swiglu_backward);
}
static void spy_swiglu_pair(const molt_exec *e, float *h, const float *gu, int T, int F) {
    SPY(swiglu_pair);
}
static void spy_swiglu_pair_backward(const molt_exec *e, float *dgu, const float *dh,
                                     const float *gu, int T, int F) {
    SPY(swiglu_pair_backward);
}
static void spy_swiglu_pair_b16(const molt_exec *e, uint16_t *h, const float *gu, int T, int F) {
    SPY(swiglu_pair_b16);
}
static void spy_swiglu_pair_backward_b16(const molt_exec *e, uint16_t *dgu, const float *dh,
                                         const float *gu, int T, int F) {
    SPY(swiglu_pair_backward_b16);
}
static void spy_matmul_b16(const molt_exec *e, float *y, const uint16_t *x, const float *W, int T,
                           int in, int out, int accumulate) {
    SPY(matmul_b16);
}
static void spy_matmul_backward_b16(const molt_exec *e, float *dx, float *dW, const float *dy,
                                    const uint16_t *dyb, const float *x, const uint16_t *xb,
                                    const float *W, int T, int in, int out, int accumulate_dx) {
    SPY(matmul_backward_b16);
}
static void spy_softmax(const molt_exec *e, float *x, int n) { SPY(softmax); }
static void spy_add(const molt_exec *e, float *y, const float *a, const float *b, size_t n) {
    SPY(add);
}
static void spy_embedding(const molt_exec *e, float *x, const float *E, const int32_t *ids, int T,
                          int d) {
    SPY(embedding);
}
static void spy_embedding_backward(const molt_exec *e, float *dE, const float *dx,
                                   const int32_t *ids, int T, int d) {
    SPY(embedding_backward);
}
static void spy_copy_cols(const molt_exec *e, float *d, size_t ldd, const float *s, size_t lds,
                          size_t r, size_t n) {
    SPY(copy_cols);
}
static void spy_hybrid_stats(const molt_exec *e, float *ap, float *st, const float *a,
                             const float *s, int T, int d) {
    SPY(hybrid_stats);
}
static void spy_hybrid_stats_backward(const molt_exec *e, float *g, float *ds, const float *st,
                                      const float *a, const float *s, int T, int d) {
    SPY(hybrid_stats_backward);
}
static void spy_conv1d_causal(const molt_exec *e, float *y, const float *x, const float *w,
                              const float *b, float *s, int T, int Cc, int K) {
    SPY(conv1d_causal);
}
static void spy_conv1d_causal_backward(const molt_exec *e, float *dx, float *dw, float *db,
                                       const float *dy, const float *x, const float *w, int T,
                                       int Cc, int K) {
    SPY(conv1d_causal_backward);
}
static void spy_ssd_step(const molt_exec *e, float *y, float *s, const float *X, const float *dA,
                         const float *B, const float *C, int H, int P, int N, int G) {
    SPY(ssd_step);
}
static void spy_ssd_scan_chunked(const molt_exec *e, float *y, float *s, const float *X,
                                 const float *dA, const float *B, const float *C, int T, int H,
                                 int P, int N, int G, int Q, float *w) {
    SPY(ssd_scan_chunked);
}
static void spy_ssd_scan_chunked_backward(const molt_exec *e, float *dX, float *ddA, float *dB,
                                          float *dC, const float *dy, const float *X,
                                          const float *dA, const float *B, const float *C, int T,
                                          int H, int P, int N, int G, int Q, float *w) {
    SPY(ssd_scan_chunked_backward);
}
static void spy_ssd_materialize(const molt_exec *e, float *M, const float *dA, const float *B,
                                const float *C, const float *cs, const float *D, int T, int H,
                                int N, int G) {
    SPY(ssd_materialize);
}
static void spy_ssd_materialize_backward(const molt_exec *e, float *ddA, float *dB, float *dC,
                                         float *dcs, float *dD, const float *dM, const float *dA,
                                         const float *B, const float *C, const float *cs,
                                         const float *D, int T, int H, int N, int G, float *w) {
    SPY(ssd_materialize_backward);
}
// attention (attn.h)
static void spy_rope(const molt_exec *e, float *x, int ld, int rows, int nh, int hd, int pos0,
                     int period, const int32_t *pos, const float *c, const float *s, int inv) {
    SPY(rope);
}
static void spy_kv_append(const molt_exec *e, float *const *kc, float *const *vc, const float *k,
                          const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                          const int32_t *pos) {
    SPY(kv_append);
}
static void spy_attn_prefill(const molt_exec *e, float *o, const float *q, int T, int pos, int H,
                             int KV, int hd, const float *kc, const float *vc, int cap, float *w) {
    SPY(attn_prefill);
}
static void spy_attn_decode_rows(const molt_exec *e, float *o, const float *q, int n,
                                 const int32_t *pos, int H, int KV, int hd, float *const *kc,
                                 float *const *vc, int cap, float *w) {
    SPY(attn_decode_rows);
}
static void spy_attn_probs(const molt_exec *e, float *A, const float *q, int T, int H, int KV,
                           int hd, const float *kc, int cap) {
    SPY(attn_probs);
}
static void spy_attn_train_forward(const molt_exec *e, float *P, float *o, const float *qkv,
                                   int ld, int B, int T, int H, int KV, int hd) {
    SPY(attn_train_forward);
}
static void spy_attn_train_backward(const molt_exec *e, float *dqkv, const float *dO,
                                    const float *qkv, const float *P, int B, int T, int H, int KV,
                                    int hd, float *w) {
    SPY(attn_train_backward);
}
static void spy_attn_flash_forward(const molt_exec *e, float *o, float *lse, const float *qkv,
                                   int ld, int B, int T, int H, int KV, int hd) {
    SPY(attn_flash_forward);
}
static void spy_attn_flash_backward(const molt_exec *e, float *dqkv, const float *dO,
                                    const float *qkv, const float *o, const float *lse, int B,
                                    int T, int H, int KV, int hd, float *w) {
    SPY(attn_flash_backward);
}
static void spy_ssm_prep(const molt_exec *e, float *x, float *X, float *B, float *C, float *dA,
                         float *dlt, const float *xc, const float *dt, int ldz, const float *dtb,
                         const float *Al, int n, const ssm_rows_cfg *c) {
    SPY(ssm_prep);
}
static void spy_ssm_prep_backward(const molt_exec *e, float *dxc, float *ddt, float *hsA,
                                  const float *dX, const float *dyp, const float *ddA,
                                  const float *dB, const float *dC, const float *dcs,
                                  const float *xc, const float *x, const float *dlt,
                                  const float *dt, int ldz, const float *dtb, const float *Al,
                                  const float *D, int n, const ssm_rows_cfg *c) {
    SPY(ssm_prep_backward);
}
static void spy_ssm_gate(const molt_exec *e, float *g, float *yp, float *rs, const float *x,
                         const float *z, int ldz, const float *D, const float *w, const float *zb,
                         int n, const ssm_rows_cfg *c) {
    SPY(ssm_gate);
}
static void spy_ssm_gate_backward(const molt_exec *e, float *dg, float *dz, float *dnw, float *hsD,
                                  const float *yp, const float *x, const float *z, int ldz,
                                  const float *rs, const float *w, const float *zb, int n,
                                  const ssm_rows_cfg *c) {
    SPY(ssm_gate_backward);
}
static void spy_colsum(const molt_exec *e, float *o, const float *s, int r, int c, int ld) {
    SPY(colsum);
}
static void spy_conv1d_causal_rows(const molt_exec *e, float *y, const float *x, const float *w,
                                   const float *b, float *const *s, int n, int Cc, int K) {
    SPY(conv1d_causal_rows);
}
static void spy_ssd_step_rows(const molt_exec *e, float *y, float *const *s, const float *X,
                              const float *dA, const float *B, const float *C, int n, int H, int P,
                              int N, int G) {
    SPY(ssd_step_rows);
}
// bf16 recurrent SSM state (issue 15)
static void spy_ssm_decode_rows(const molt_exec *e, float *y, const float *zx,
                                float *const *conv, float *const *ssm, int n,
                                const ssm_rows_cfg *c, const ssm_decode_args *a, float *work) {
    SPY(ssm_decode_rows);
}
static void spy_add_rmsnorm(const molt_exec *e, float *s, float *y, float *rstd, const float *a,
                            const float *b, const float *w, int T, int d, float eps) {
    SPY(add_rmsnorm);
}
static void spy_ssd_step_rows_bf16(const molt_exec *e, float *y, uint16_t *const *s,
                                   const float *X, const float *dA, const float *B,
                                   const float *C, int n, int H, int P, int N, int G) {
    SPY(ssd_step_rows_bf16);
}
static void spy_bf16_widen(const molt_exec *e, float *d, const uint16_t *s, size_t n) {
    SPY(bf16_widen);
}
static void spy_bf16_narrow(const molt_exec *e, uint16_t *d, const float *s, size_t n) {
    SPY(bf16_narrow);
}
// training (train_ops.h)
static void spy_xent(const molt_exec *e, double *l, float *dl, const float *x, const int32_t *y,
                     int n, int V, float sc) {
    SPY(xent);
}
static void spy_soft_xent(const molt_exec *e, double *l, float *ds, const float *s, const float *t,
                          int n, int V, float tau, float sc) {
    SPY(soft_xent);
}
static void spy_l2_rows(const molt_exec *e, double *l, float *dx, const float *x, const float *y,
                        int n, size_t len, float sc) {
    SPY(l2_rows);
}
static void spy_sumsq(const molt_exec *e, double *p, const float *x, const molt_span *s, int n) {
    SPY(sumsq);
}
static void spy_scale(const molt_exec *e, float *x, const molt_span *s, int n, float k) {
    SPY(scale);
}
static void spy_adamw(const molt_exec *e, float *p, float *m, float *v, const float *g,
                      const molt_span *s, int n, adamw_hyper h) {
    SPY(adamw);
}
// gateloop (gateloop.h)
static void spy_gl_prep(const molt_exec *e, float *la, float *th, const float *a, int lda,
                        const float *b, int n, int HJ) {
    SPY(gl_prep);
}
static void spy_gl_prep_backward(const molt_exec *e, float *da, int lda, const float *dla,
                                 const float *dth, const float *a, const float *b, int n, int HJ) {
    SPY(gl_prep_backward);
}
static void spy_gl_step_rows(const molt_exec *e, float *y, float *const *s, const float *q,
                             const float *k, const float *v, int ld, const float *la,
                             const float *th, int n, int H, int N, int P) {
    SPY(gl_step_rows);
}
static void spy_gl_scan_chunked(const molt_exec *e, float *y, float *s, const float *q,
                                const float *k, const float *v, int ld, const float *la,
                                const float *th, int T, int H, int N, int P, int Q, float *w) {
    SPY(gl_scan_chunked);
}
static void spy_gl_scan_chunked_backward(const molt_exec *e, float *dq, float *dk, float *dv,
                                         int ldd, float *dla, float *dth, const float *dy,
                                         const float *q, const float *k, const float *v, int ld,
                                         const float *la, const float *th, int T, int H, int N,
                                         int P, int Q, float *w) {
    SPY(gl_scan_chunked_backward);
}
static void spy_gl_scan_assoc(const molt_exec *e, float *y, float *s, const float *q,
                              const float *k, const float *v, int ld, const float *la,
                              const float *th, int T, int H, int N, int P, float *w) {
    SPY(gl_scan_assoc);
}
static void spy_gl_materialize(const molt_exec *e, float *M, const float *q, const float *k,
                               int ld, const float *la, const float *th, int T, int H, int N,
                               float *w) {
    SPY(gl_materialize);
}
static void spy_gl_materialize_backward(const molt_exec *e, float *dq, float *dk, int ldd,
                                        float *dla, float *dth, const float *dM, const float *q,
                                        const float *k, int ld, const float *la, const float *th,
                                        int T, int H, int N, float *w) {
    SPY(gl_materialize_backward);
}
// mamba3 (mamba3.h)
static void spy_m3_angles(const molt_exec *e, float *phi, float *const *st, const float *zx,
                          int ldz, const float *b, int n, int T, const m3_rows_cfg *c) {
    SPY(m3_angles);
}
static void spy_m3_angles_backward(const molt_exec *e, float *dzx, float *dphi, const float *zx,
                                   int ldz, const float *b, int n, int T, const m3_rows_cfg *c) {
    SPY(m3_angles_backward);
}
static void spy_m3_prep(const molt_exec *e, float *q, float *k, float *dA, float *dl, float *la,
                        float *rs, const float *zx, int ldz, const float *phi, const m3_rows_w *w,
                        int n, const m3_rows_cfg *c) {
    SPY(m3_prep);
}
static void spy_m3_prep_backward(const molt_exec *e, float *dzx, float *dphi, float *dBn,
                                 float *dCn, float *dBb, float *dCb, const float *dq,
                                 const float *dk, const float *ddA, const float *dgam,
                                 const float *dbet, const float *q, const float *k,
                                 const float *rs, const float *zx, int ldz, const float *phi,
                                 const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    SPY(m3_prep_backward);
}
static void spy_m3_mix(const molt_exec *e, float *X, float *dAx, const float *zx, int ldz,
                       const float *dA, const float *dl, const float *la, const m3_rows_w *w,
                       int n, int T, const m3_rows_cfg *c) {
    SPY(m3_mix);
}
static void spy_m3_corr(const molt_exec *e, float *yp, const float *ys, const float *q,
                        const float *k, const float *zx, int ldz, const float *dl,
                        const float *la, const m3_rows_w *w, int n, int T, const m3_rows_cfg *c) {
    SPY(m3_corr);
}
static void spy_m3_mix_backward(const molt_exec *e, float *dzx, float *dq, float *dk, float *ddA,
                                float *dg, float *db, float *dmx, float *hsD, const float *dX,
                                const float *ddAx, const float *dyp, const float *q,
                                const float *k, const float *zx, int ldz, const float *dl,
                                const float *la, const m3_rows_w *w, int n, int T,
                                const m3_rows_cfg *c) {
    SPY(m3_mix_backward);
}
static void spy_m3_gate(const molt_exec *e, float *g, float *rs, const float *yp, const float *zx,
                        int ldz, const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    SPY(m3_gate);
}
static void spy_m3_gate_backward(const molt_exec *e, float *dyp, float *dzx, float *dmz,
                                 float *dmo, float *dnw, const float *dg, const float *yp,
                                 const float *zx, int ldz, const float *rs, const m3_rows_w *w,
                                 int n, const m3_rows_cfg *c) {
    SPY(m3_gate_backward);
}
static void spy_m3_fold(const molt_exec *e, float *st, const float *dl, const float *la,
                        const m3_rows_w *w, const m3_rows_cfg *c) {
    SPY(m3_fold);
}
static void spy_m3_step_rows(const molt_exec *e, float *yp, float *const *st, const float *q,
                             const float *k, const float *zx, int ldz, const float *dA,
                             const float *dl, const float *la, const m3_rows_w *w, int n,
                             const m3_rows_cfg *c) {
    SPY(m3_step_rows);
}
static void spy_m3_materialize(const molt_exec *e, float *M, const float *q, const float *k,
                               const float *dA, const float *dl, const float *la, const float *D,
                               int T, const m3_rows_cfg *c, float *w) {
    SPY(m3_materialize);
}
static void spy_m3_materialize_backward(const molt_exec *e, float *dq, float *dk, float *ddA,
                                        float *dg, float *db, float *dD, const float *dM,
                                        const float *q, const float *k, const float *dA,
                                        const float *dl, const float *la, const float *D, int T,
                                        const m3_rows_cfg *c, float *w) {
    SPY(m3_materialize_backward);
}
// reverse-KL distillation loss (issue 17)
static void spy_rev_kl(const molt_exec *e, double *l, float *ds, const float *s, const float *t,
                       int n, int V, float tau, float sc) {
    SPY(rev_kl);
}
// f16 KV cache (issue 15)
static void spy_kv_append_f16(const molt_exec *e, uint16_t *const *kc, uint16_t *const *vc,
                              const float *k, const float *v, int ld, int rows, int KV, int hd,
                              int cap, int pos0, const int32_t *pos) {
    SPY(kv_append_f16);
}
static void spy_attn_prefill_f16(const molt_exec *e, float *o, const float *q, int T, int pos,
                                 int H, int KV, int hd, const uint16_t *kc, const uint16_t *vc,
                                 int cap, float *w) {
    SPY(attn_prefill_f16);
}
static void spy_attn_decode_rows_f16(const molt_exec *e, float *o, const float *q, int n,
                                     const int32_t *pos, int H, int KV, int hd,
                                     uint16_t *const *kc, uint16_t *const *vc, int cap,
                                     float *w) {
    SPY(attn_decode_rows_f16);
}
// decode sampling (issue 12)
static void spy_sample_rows(const molt_exec *e, int32_t *idx, const float *l, const float *coin,
                            float temp, int n, int V) {
    SPY(sample_rows);
}
#undef SPY

static void test_dispatch(void) {
#define SPY_OP(op) .op = spy_##op,
    molt_backend spy = {.name = "spy", MOLT_BACKEND_OPS(SPY_OP)};
#undef SPY_OP
    spy.mem = molt_backend_cpu.mem;
    molt_exec ex;
    CHECK(molt_exec_init(&ex, &spy, 1), "the spy table is complete");
    int calls = 0;
#define CALLS(op, call)                                                                            \
    g_called = NULL;                                                                               \
    call;                                                                                          \
    calls++;                                                                                       \
    CHECK(g_called && strcmp(g_called, #op) == 0, "the " #op " entry point called %s",           \
          g_called ? g_called : "no op of ex->be");
    CALLS(matmul, k_matmul(&ex, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(matmul_w, k_matmul_w(&ex, NULL, NULL, molt_w_f32(NULL), NULL, 0, 0, 0, 0));
    CALLS(matmul_backward, k_matmul_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(rmsnorm, k_rmsnorm(&ex, NULL, NULL, NULL, 0, 0, 0));
    CALLS(rmsnorm_forward, k_rmsnorm_forward(&ex, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(rmsnorm_backward, k_rmsnorm_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0));
    CALLS(swiglu, k_swiglu(&ex, NULL, NULL, 0));
    CALLS(swiglu_backward, k_swiglu_backward(&ex, NULL, NULL, NULL, NULL, NULL, 0));
    CALLS(swiglu_pair, k_swiglu_pair(&ex, NULL, NULL, 0, 0));
    CALLS(swiglu_pair_backward, k_swiglu_pair_backward(&ex, NULL, NULL, NULL, 0, 0));
    CALLS(swiglu_pair_b16, k_swiglu_pair_b16(&ex, NULL, NULL, 0, 0));
    CALLS(swiglu_pair_backward_b16, k_swiglu_pair_backward_b16(&ex, NULL, NULL, NULL, 0, 0));
    CALLS(matmul_b16, k_matmul_b16(&ex, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(matmul_backward_b16,
          k_matmul_backward_b16(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(softmax, k_softmax(&ex, NULL, 0));
    CALLS(add, k_add(&ex, NULL, NULL, NULL, 0));
    CALLS(embedding, k_embedding(&ex, NULL, NULL, NULL, 0, 0));
    CALLS(embedding_backward, k_embedding_backward(&ex, NULL, NULL, NULL, 0, 0));
    CALLS(copy_cols, k_copy_cols(&ex, NULL, 0, NULL, 0, 0, 0));
    CALLS(hybrid_stats, k_hybrid_stats(&ex, NULL, NULL, NULL, NULL, 0, 0));
    CALLS(hybrid_stats_backward, k_hybrid_stats_backward(&ex, NULL, NULL, NULL, NULL, NULL, 0, 0));
    CALLS(conv1d_causal, conv1d_causal(&ex, NULL, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(conv1d_causal_backward,
          conv1d_causal_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(ssd_step, ssd_step(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(ssd_scan_chunked,
          ssd_scan_chunked(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL));
    CALLS(ssd_scan_chunked_backward,
          ssd_scan_chunked_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                    0, 0, 0, 0, 0, NULL));
    CALLS(ssd_materialize, ssd_materialize(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(ssd_materialize_backward,
          ssd_materialize_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                   NULL, 0, 0, 0, 0, NULL));
    // attention (attn.h)
    CALLS(rope, k_rope(&ex, NULL, 0, 0, 0, 0, 0, 1, NULL, NULL, NULL, 0));
    CALLS(kv_append, k_kv_append(&ex, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL));
    CALLS(attn_prefill, k_attn_prefill(&ex, NULL, NULL, 0, 0, 1, 1, 0, NULL, NULL, 0, NULL));
    CALLS(attn_decode_rows,
          k_attn_decode_rows(&ex, NULL, NULL, 0, NULL, 1, 1, 0, NULL, NULL, 0, NULL));
    CALLS(attn_probs, k_attn_probs(&ex, NULL, NULL, 0, 1, 1, 0, NULL, 0));
    CALLS(attn_train_forward, k_attn_train_forward(&ex, NULL, NULL, NULL, 0, 0, 0, 1, 1, 0));
    CALLS(attn_train_backward,
          k_attn_train_backward(&ex, NULL, NULL, NULL, NULL, 0, 0, 1, 1, 0, NULL));
    CALLS(attn_flash_forward, k_attn_flash_forward(&ex, NULL, NULL, NULL, 0, 0, 0, 1, 1, 0));
    CALLS(attn_flash_backward,
          k_attn_flash_backward(&ex, NULL, NULL, NULL, NULL, NULL, 0, 0, 1, 1, 0, NULL));
    CALLS(ssm_prep, ssm_prep(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL,
                             0, NULL));
    CALLS(ssm_prep_backward,
          ssm_prep_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                            NULL, NULL, 0, NULL, NULL, NULL, 0, NULL));
    CALLS(ssm_gate, ssm_gate(&ex, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, NULL));
    CALLS(ssm_gate_backward, ssm_gate_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                               NULL, NULL, NULL, 0, NULL));
    CALLS(colsum, k_colsum(&ex, NULL, NULL, 0, 0, 0));
    CALLS(conv1d_causal_rows, conv1d_causal_rows(&ex, NULL, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(ssd_step_rows, ssd_step_rows(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0));
    CALLS(ssm_decode_rows, ssm_decode_rows(&ex, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL));
    CALLS(add_rmsnorm, k_add_rmsnorm(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0));
    // bf16 recurrent SSM state (issue 15)
    CALLS(ssd_step_rows_bf16,
          ssd_step_rows_bf16(&ex, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0));
    CALLS(bf16_widen, k_bf16_widen(&ex, NULL, NULL, 0));
    CALLS(bf16_narrow, k_bf16_narrow(&ex, NULL, NULL, 0));
    // training (train_ops.h)
    CALLS(xent, k_xent(&ex, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(soft_xent, k_soft_xent(&ex, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(l2_rows, k_l2_rows(&ex, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(sumsq, k_sumsq(&ex, NULL, NULL, NULL, 0));
    CALLS(scale, k_scale(&ex, NULL, NULL, 0, 0));
    CALLS(adamw, k_adamw(&ex, NULL, NULL, NULL, NULL, NULL, 0, (adamw_hyper){0}));
    // gateloop (gateloop.h)
    CALLS(gl_prep, gl_prep(&ex, NULL, NULL, NULL, 0, NULL, 0, 0));
    CALLS(gl_prep_backward, gl_prep_backward(&ex, NULL, 0, NULL, NULL, NULL, NULL, 0, 0));
    CALLS(gl_step_rows,
          gl_step_rows(&ex, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 0, 0, 0));
    CALLS(gl_scan_chunked, gl_scan_chunked(&ex, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 0,
                                           0, 0, 0, NULL));
    CALLS(gl_scan_chunked_backward,
          gl_scan_chunked_backward(&ex, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                   NULL, NULL, 0, 0, 0, 0, 0, NULL));
    CALLS(gl_scan_assoc, gl_scan_assoc(&ex, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 0, 0,
                                       0, NULL));
    CALLS(gl_materialize,
          gl_materialize(&ex, NULL, NULL, NULL, 0, NULL, NULL, 0, 0, 0, NULL));
    CALLS(gl_materialize_backward,
          gl_materialize_backward(&ex, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL,
                                  0, 0, 0, NULL));
    // mamba3 (mamba3.h)
    CALLS(m3_angles, m3_angles(&ex, NULL, NULL, NULL, 0, NULL, 0, 1, NULL));
    CALLS(m3_angles_backward, m3_angles_backward(&ex, NULL, NULL, NULL, 0, NULL, 0, 1, NULL));
    CALLS(m3_prep, m3_prep(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, NULL));
    CALLS(m3_prep_backward,
          m3_prep_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                           NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, NULL));
    CALLS(m3_mix, m3_mix(&ex, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, 1, NULL));
    CALLS(m3_corr, m3_corr(&ex, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, 1, NULL));
    CALLS(m3_mix_backward,
          m3_mix_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                          NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, 1, NULL));
    CALLS(m3_gate, m3_gate(&ex, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL));
    CALLS(m3_gate_backward, m3_gate_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                             0, NULL, NULL, 0, NULL));
    CALLS(m3_fold, m3_fold(&ex, NULL, NULL, NULL, NULL, NULL));
    CALLS(m3_step_rows, m3_step_rows(&ex, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL,
                                     0, NULL));
    CALLS(m3_materialize, m3_materialize(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL,
                                         NULL));
    CALLS(m3_materialize_backward,
          m3_materialize_backward(&ex, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                  NULL, NULL, NULL, 0, NULL, NULL));
    // reverse-KL distillation loss (issue 17)
    CALLS(rev_kl, k_rev_kl(&ex, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    // decode sampling (issue 12)
    CALLS(sample_rows, k_sample_rows(&ex, NULL, NULL, NULL, 0, 0, 0));
    // f16 KV cache (issue 15)
    CALLS(kv_append_f16,
          k_kv_append_f16(&ex, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL));
    CALLS(attn_prefill_f16,
          k_attn_prefill_f16(&ex, NULL, NULL, 0, 0, 1, 1, 0, NULL, NULL, 0, NULL));
    CALLS(attn_decode_rows_f16,
          k_attn_decode_rows_f16(&ex, NULL, NULL, 0, NULL, 1, 1, 0, NULL, NULL, 0, NULL));
#undef CALLS
    CHECK(calls == MOLT_BACKEND_NOPS, "%d entry points called, the table has %d ops", calls,
          MOLT_BACKEND_NOPS);
}

// ----------------------------------------------------------------------------

// ----------------------------------------------------------------------------
// matmul_w with bf16 / f16 weights at 1 ≤ T ≤ K_MATVEC_T (issue 15,
// kernels/cpu/matvec.c's cpu_matvec_half): the AVX-512 kernel (widening in
// registers) against the scalar twin (the widening element by element), bit
// for bit, over ragged output sub-ranges; the twin against the contract
// written out here (the row widened with cpu_widen_half, then cpu_dot64), bit
// for bit; and k_matmul_w's own path (cpu_matmul_w_path) at 1-4 threads, bias and
// accumulate, T = 1..17 (17: the widen-a-tile sgemm path), against the twin.
// Written outputs start as NaN.

// W [out, in] in dt from uniform(-1, 1), some rows tiny (f16 subnormals), a zero row
static uint16_t *mvh_weights(molt_dtype dt, int out, int in) {
    size_t    n = (size_t)out * in;
    float    *f = frand(n ? n : 1, -1, 1);
    uint16_t *w = xmalloc(2 * (n ? n : 1));
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            float v = f[(size_t)o * in + i];
            v = o % 5 == 2 ? v * 1e-5f : o % 7 == 6 ? 0.0f : v;
            w[(size_t)o * in + i] = dt == MOLT_BF16 ? molt_f32_to_bf16(v) : molt_f32_to_f16(v);
        }
    free(f);
    return w;
}

// the contract: y (+)= cpu_dot64(widened row, x row)
static void mvh_oracle(float *y, const float *x, const uint16_t *W, molt_dtype dt, int T, int in,
                       int out, int add) {
    float *wf = fbuf((size_t)in + 1);
    for (int o = 0; o < out; o++) {
        cpu_widen_half(wf, W + (size_t)o * in, in, dt == MOLT_BF16);
        for (int t = 0; t < T; t++) {
            float *d = y + (size_t)t * out + o;
            float  s = cpu_dot64(wf, x + (size_t)t * in, in);
            *d = add ? *d + s : s;
        }
    }
    free(wf);
}

static int mvh_same(const float *a, const float *b, size_t n) {
    return n == 0 || memcmp(a, b, sizeof(float) * n) == 0;
}

static void test_matvec_half(void) {
    static const int ins[] = {1, 7, 8, 9, 100, 511, 512, 513, 777, 1030};
    static const int outs[] = {1, 3, 4, 5, 17, 38};
    int cases = 0, through = 0;
    for (int dti = 0; dti < 2; dti++)
        for (size_t b = 0; b < sizeof ins / sizeof ins[0]; b++)
            for (size_t c = 0; c < sizeof outs / sizeof outs[0]; c++)
                for (int T = 1; T <= K_MATVEC_T + 1; T++) {
                    molt_dtype dt = dti ? MOLT_F16 : MOLT_BF16;
                    int        in = ins[b], out = outs[c];
                    size_t     ny = (size_t)T * out;
                    uint16_t  *W = mvh_weights(dt, out, in);
                    float     *x = frand((size_t)T * in, -1, 1), *yi = frand(ny, -1, 1);
                    float     *y0 = fbuf(ny + 1), *y1 = fbuf(ny + 1), *yo = fbuf(ny + 1);
                    for (int add = 0; add <= 1; add++) {
                        for (size_t i = 0; i < ny; i++)
                            y0[i] = y1[i] = yo[i] = add ? yi[i] : NAN;
                        char what[80];
                        snprintf(what, sizeof what, "matvec_half %s T=%d in=%d out=%d add %d",
                                 molt_dtype_name(dt), T, in, out, add);
                        cpu_matvec_half(MV_SCALAR, dt == MOLT_BF16, y0, out, x, W, T, in, 0, out,
                                        add);
                        mvh_oracle(yo, x, W, dt, T, in, out, add);
                        CHECK(mvh_same(y0, yo, ny), "%s: twin != widen + cpu_dot64", what);
                        int nan = 0;
                        for (size_t i = 0; i < ny; i++)
                            nan += isnan(y0[i]);
                        CHECK(nan == 0, "%s: %d outputs NaN", what, nan);
                        for (int isa = MV_AVX512; isa <= MV_AVX2; isa++) {
                            if (!cpu_matvec_isa_ok(isa))
                                continue;
                            int mid = out / 3; // two ragged sub-ranges
                            for (size_t i = 0; i < ny; i++)
                                y1[i] = add ? yi[i] : NAN;
                            cpu_matvec_half(isa, dt == MOLT_BF16, y1, out, x, W, T, in, 0, mid,
                                            add);
                            cpu_matvec_half(isa, dt == MOLT_BF16, y1, out, x, W, T, in, mid, out,
                                            add);
                            CHECK(mvh_same(y0, y1, ny), "%s: %s != twin", what,
                                  isa == MV_AVX512 ? "avx512" : "avx2");
                        }
                        cases++;
                    }
                    free(W), free(x), free(yi), free(y0), free(y1), free(yo);
                }
    // through cpu_matmul_w_path: shapes above the 1-thread cut, bias × accumulate, 1-4 threads
    static const int big[][2] = {{768, 200}, {1030, 77}, {2048, 130}, {300, 1001}};
    static const int bigT[] = {1, 2, 3, 4, 7, 9, 13, 16, 17};
    for (size_t si = 0; si < sizeof big / sizeof big[0]; si++)
        for (size_t ti = 0; ti < sizeof bigT / sizeof bigT[0]; ti++) {
            int        T = bigT[ti], in = big[si][0], out = big[si][1];
            molt_dtype dt = (si + ti) & 1 ? MOLT_F16 : MOLT_BF16;
            size_t     ny = (size_t)T * out;
            uint16_t  *W = mvh_weights(dt, out, in);
            float *x = frand((size_t)T * in, -1, 1), *bias = frand((size_t)out, -1, 1);
            float *yi = frand(ny, -1, 1), *ref = fbuf(ny), *y = fbuf(ny);
            for (int v = 0; v < 4; v++) { // bias × accumulate
                const float *bv = v & 1 ? bias : NULL;
                int          acc = v >> 1;
                for (int path = 0; path < 3; path++) // MV_SCALAR, MV_AVX512, MV_AVX2
                    for (int th = 1; th <= MAX_THREADS; th++) {
                        molt_exec ex = molt_exec_cpu(th);
                        for (size_t i = 0; i < ny; i++)
                            y[i] = acc ? yi[i] : NAN;
                        cpu_matmul_w_path(&ex, path, y, x, (molt_w){dt, W}, bv, T, in, out, acc);
                        if (!path && th == 1)
                            memcpy(ref, y, sizeof(float) * ny);
                        else
                            CHECK(mvh_same(ref, y, ny), "matmul_w %s T=%d in=%d out=%d v %d: "
                                  "path %d, %d threads != twin, 1 thread", molt_dtype_name(dt),
                                  T, in, out, v, path, th);
                        through++;
                    }
            }
            free(W), free(x), free(bias), free(yi), free(ref), free(y);
        }
    printf("matmul_w (bf16, f16) T <= %d: %d kernel cases (paths: scalar%s%s), %d op runs, "
           "bit-identical to the twin\n", K_MATVEC_T, cases,
           cpu_matvec_isa_ok(MV_AVX512) ? ", avx512" : "", cpu_matvec_isa_ok(MV_AVX2) ? ", avx2" : "",
           through);
}

// f16 KV cache (issue 15; kernels/attn.h "f16 KV cache", cpu/f16.c,
// cpu/attn_f16.c): the narrowing on every path the CPU allows against the
// scalar twin (all 65536 halves, the ties and neighbours between every two
// adjacent halves, edge floats, random bit patterns); the append at the
// blocked layout (written out here from the contract); prefill / decode /
// decode rows against the double reference on the f16-rounded keys and
// values, with every cache half past the visible keys poisoned with NaN; and
// decode bit-identical to the f32 ops over the widened caches.

// the contract's layout, spelled out: key s, element i of kv head j
static size_t kv16_k_at(int j, int s, int i, int cap, int hd) {
    size_t cap16 = (size_t)(cap + 15) / 16 * 16;
    return (size_t)j * cap16 * hd + (size_t)(s / 16) * 16 * hd + (size_t)i * 16 + (size_t)(s % 16);
}
static size_t kv16_v_at(int j, int s, int i, int cap, int hd) {
    size_t cap16 = (size_t)(cap + 15) / 16 * 16;
    return (size_t)j * cap16 * hd + (size_t)s * hd + (size_t)i;
}

static float f32_of_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static unsigned bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return (unsigned)b;
}

// narrow x[n] on every path, each against the scalar twin; returns mismatches
static int kv16_narrow_check(const float *x, int n, uint16_t *want, uint16_t *got, int *paths) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        want[i] = molt_f32_to_f16(x[i]);
    *paths = 0;
    for (int isa = 0; isa < F16_ISA_COUNT; isa++) {
        if (!cpu_f16_isa_available(isa))
            continue;
        ++*paths;
        cpu_narrow_half(isa, got, x, n);
        for (int i = 0; i < n; i++)
            if (got[i] != want[i] && bad++ < 5)
                fprintf(stderr, "  f16 path %d: %a (bits %08x) -> %04x, scalar %04x\n", isa,
                        (double)x[i], bits_of(x[i]),
                        got[i], want[i]);
    }
    return bad;
}

static void test_f16_narrow(void) {
    // every half, the midpoint of every two adjacent finite halves (a tie) and
    // its f32 neighbours, and the next-up float of each half
    size_t    cap = 65536 * 5 + 64 + (1u << 20);
    float    *x = fbuf(cap);
    uint16_t *want = xmalloc(2 * cap), *got = xmalloc(2 * cap);
    size_t    n = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = molt_f16_to_f32((uint16_t)h);
        x[n++] = a;
        if ((h & 0x7FFFu) < 0x7C00u) { // finite: up to the next half of the same sign
            float b = (h & 0x7FFFu) == 0x7BFFu ? (h & 0x8000u ? -65536.0f : 65536.0f)
                                               : molt_f16_to_f32((uint16_t)(h + 1));
            float mid = (float)(((double)a + (double)b) / 2); // exact in f32
            x[n++] = mid;
            x[n++] = nextafterf(mid, 0.0f);
            x[n++] = nextafterf(mid, mid > 0 ? INFINITY : -INFINITY);
            x[n++] = nextafterf(a, b);
        }
    }
    const uint32_t edge[] = {
        0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x33000000u, 0x33000001u,
        0xB3000000u, 0x33800000u, 0x337FFFFFu, 0x387FC000u, 0x38800000u, 0x477FE000u,
        0x477FEFFFu, 0x477FF000u, 0xC77FF000u, 0x47800000u, 0x7F7FFFFFu, 0xFF7FFFFFu,
        0x7F800000u, 0xFF800000u, 0x7F800001u, 0x7FC00000u, 0xFFC00000u, 0x7FFFFFFFu,
        0xFFFFFFFFu, 0x7F802000u, 0x7FA00000u, 0x3F800000u, 0x3F801000u, 0x3F803000u};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        x[n++] = f32_of_bits(edge[i]);
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < (1 << 20); i++) { // random bit patterns (NaNs, denormals included)
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[n++] = f32_of_bits((uint32_t)(r >> 11));
    }
    int paths = 0, bad = kv16_narrow_check(x, (int)n, want, got, &paths);
    CHECK(bad == 0, "f16 narrowing: %d of %zu inputs differ from the scalar twin", bad, n);
    // the twin itself: halves round-trip, ties go to even, overflow to inf
    int rt = 0, ties = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = molt_f32_to_f16(molt_f16_to_f32((uint16_t)h));
        bool     nan = (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu);
        rt += nan ? !((back & 0x7E00u) == 0x7E00u && (back & 0x8000u) == (h & 0x8000u))
                  : back != h;
    }
    for (uint32_t h = 0; h < 0x7BFFu; h++) { // positive finite pairs (h, h+1)
        double a = molt_f16_to_f32((uint16_t)h), b = molt_f16_to_f32((uint16_t)(h + 1));
        uint16_t t = molt_f32_to_f16((float)((a + b) / 2));
        ties += t != ((h & 1u) ? h + 1 : h);
    }
    CHECK(rt == 0, "f16: %d halves do not round-trip through f32", rt);
    CHECK(ties == 0, "f16: %d ties not rounded to even", ties);
    CHECK(molt_f32_to_f16(65520.0f) == 0x7C00u && molt_f32_to_f16(-1e30f) == 0xFC00u &&
              molt_f32_to_f16(65519.99f) == 0x7BFFu,
          "f16 overflow rounds to inf from 65520 up");
    // every length 0..40 at every offset 0..3 (the SIMD paths' tails)
    int tails = 0;
    for (int off = 0; off < 4; off++)
        for (int len = 0; len <= 40; len++) {
            int p;
            tails += kv16_narrow_check(x + 65536 + off * 997, len, want, got, &p);
        }
    CHECK(tails == 0, "f16 narrowing tails: %d mismatches", tails);
    // widening (vcvtph2ps paths) against the twin cpu_widen_half: every half, at
    // every length 0..40 and offset too; a signaling NaN may come back quiet
    {
        uint16_t *h = xmalloc(2 * 65536);
        float    *a = fbuf(65536), *b = fbuf(65536);
        for (uint32_t i = 0; i < 65536; i++)
            h[i] = (uint16_t)i;
        cpu_widen_half(a, h, 65536, 0);
        int wbad = 0;
        for (int isa = 0; isa < F16_ISA_COUNT; isa++) {
            for (int off = 0; off < 65536; off += off < 64 ? 1 : 4093) {
                int len = off < 64 ? 41 + off % 7 : 65536 - off;
                cpu_widen_f16(isa, b + off, h + off, len);
                for (int i = off; i < off + len; i++) {
                    uint32_t xa = bits_of(a[i]), yb = bits_of(b[i]);
                    bool     snan = (h[i] & 0x7C00u) == 0x7C00u && (h[i] & 0x3FFu) &&
                                !(h[i] & 0x200u);
                    wbad += xa != yb && !(snan && isnan(b[i]) && (xa ^ yb) == 0x00400000u);
                }
            }
        }
        CHECK(wbad == 0, "f16 widening paths: %d values differ from cpu_widen_half", wbad);
        free(h), free(a), free(b);
    }
    printf("f16 narrowing: %zu inputs (all halves, ties and neighbours, edges, random), %d paths "
           "(this CPU: %d) identical to the scalar twin\n",
           n, paths, cpu_f16_isa());
    free(x), free(want), free(got);
}

// --- kv_append_f16: out = the widened caches (K of every sequence, then V)
typedef struct kva16_case {
    uint16_t      *before, *scratch;
    float         *k, *v;
    const int32_t *pos;
    int            ld, rows, KV, hd, cap, pos0, nc, keys_only;
} kva16_case;

static void run_kv_append_f16(const molt_exec *ex, void *cv, float *out) {
    kva16_case *c = cv;
    size_t      per = (size_t)c->KV * k_kv_f16_halves(c->cap, c->hd), n = 2 * per * c->nc;
    uint16_t   *kc[16], *vc[16];
    memcpy(c->scratch, c->before, 2 * n);
    for (int i = 0; i < c->nc; i++) {
        kc[i] = c->scratch + per * i;
        vc[i] = c->scratch + per * (c->nc + i);
    }
    k_kv_append_f16(ex, kc, c->keys_only ? NULL : vc, c->k, c->keys_only ? NULL : c->v, c->ld,
                    c->rows, c->KV, c->hd, c->cap, c->pos0, c->pos);
    for (size_t i = 0; i < n; i++)
        out[i] = molt_f16_to_f32(c->scratch[i]);
}

static void test_kv_append_f16(void) {
    op_stat  *st = stat_new("kv_append_f16", 0, 1);
    // rows, KV, hd, pad, cap, pos0, per-row caches
    const int shapes[][7] = {{0, 2, 4, 0, 3, 0, 0},   {1, 1, 2, 0, 1, 0, 0},
                             {3, 2, 8, 0, 9, 5, 0},   {7, 3, 16, 5, 17, 9, 0},
                             {1, 2, 8, 0, 4, 0, 1},   {5, 2, 6, 3, 33, 0, 1},
                             {16, 4, 64, 0, 40, 0, 1}, {3, 1, 300, 2, 20, 15, 0}};
    for (int k = 0; k < 8; k++)
        for (int ko = 0; ko < 2; ko++) {
            const int *s = shapes[k];
            kva16_case c = {0};
            c.rows = s[0], c.KV = s[1], c.hd = s[2], c.ld = s[1] * s[2] + s[3], c.cap = s[4];
            c.pos0 = s[5], c.nc = s[6] ? (s[0] > 0 ? s[0] : 1) : 1, c.keys_only = ko;
            int32_t *pos = NULL;
            if (s[6]) {
                pos = xmalloc(sizeof(int32_t) * (size_t)(c.rows + 1));
                for (int r = 0; r < c.rows; r++)
                    pos[r] = (int32_t)((r * 5 + 2) % c.cap);
            }
            c.pos = pos;
            size_t per = (size_t)c.KV * k_kv_f16_halves(c.cap, c.hd), n = 2 * per * c.nc;
            c.k = frand((size_t)c.rows * c.ld, -2, 2);
            c.v = frand((size_t)c.rows * c.ld, -2, 2);
            // the largest half, a value rounding down to it, a subnormal, one rounding
            // to zero, -0 (overflow to inf: test_f16_narrow; inf is not a finite error here)
            for (int i = 0; i < c.rows * c.ld; i += 7)
                c.k[i] = i % 5 == 0   ? 65504.0f
                         : i % 5 == 1 ? -65519.0f
                         : i % 5 == 2 ? 3e-6f
                         : i % 5 == 3 ? 1e-9f
                                      : -0.0f;
            c.before = xmalloc(2 * n + 2);
            c.scratch = xmalloc(2 * n + 2);
            for (size_t i = 0; i < n; i++)
                c.before[i] = molt_f32_to_f16(t_uniform(5, 6));
            uint16_t *want = xmalloc(2 * n + 2);
            memcpy(want, c.before, 2 * n);
            for (int r = 0; r < c.rows; r++) {
                int ci = pos ? r : 0, p = pos ? pos[r] : c.pos0 + r;
                for (int j = 0; j < c.KV; j++)
                    for (int i = 0; i < c.hd; i++) {
                        size_t src = (size_t)r * c.ld + (size_t)j * c.hd + i;
                        want[per * ci + kv16_k_at(j, p, i, c.cap, c.hd)] =
                            molt_f32_to_f16(c.k[src]);
                        if (!ko)
                            want[per * (c.nc + ci) + kv16_v_at(j, p, i, c.cap, c.hd)] =
                                molt_f32_to_f16(c.v[src]);
                    }
            }
            double *ref = dbuf(n + 1);
            for (size_t i = 0; i < n; i++)
                ref[i] = (double)molt_f16_to_f32(want[i]);
            char shape[48];
            snprintf(shape, sizeof shape, "rows,KV,hd,cap %dx%dx%dx%d%s%s", c.rows, c.KV, c.hd,
                     c.cap, pos ? " rows" : "", ko ? " k" : "");
            run_case(st, run_kv_append_f16, &c, ref, n, shape);
            free(ref), free(want), free(c.k), free(c.v), free(c.before), free(c.scratch);
            free(pos);
        }
}

// f16 caches of one sequence for keys 0..S-1 (random in [-1, 1]), NaN halves
// everywhere else (rows S..cap16, the padding); kd, vd: the widened values as
// double [KV, cap, hd] row-major (the reference's layout); kf, vf the same in
// f32 (the f32 ops' layout), NaN past S as well
static void kv16_caches(uint16_t *kc, uint16_t *vc, double *kd, double *vd, float *kf, float *vf,
                        int KV, int hd, int cap, int S) {
    size_t per = (size_t)KV * k_kv_f16_halves(cap, hd);
    for (size_t i = 0; i < per; i++)
        kc[i] = vc[i] = 0x7E00u; // NaN
    for (int j = 0; j < KV; j++)
        for (int s = 0; s < cap; s++)
            for (int i = 0; i < hd; i++) {
                size_t   at = ((size_t)j * cap + s) * hd + i;
                uint16_t hk = 0x7E00u, hv = 0x7E00u;
                if (s < S) {
                    hk = molt_f32_to_f16(t_uniform(-1, 1));
                    hv = molt_f32_to_f16(t_uniform(-1, 1));
                    kc[kv16_k_at(j, s, i, cap, hd)] = hk;
                    vc[kv16_v_at(j, s, i, cap, hd)] = hv;
                }
                if (kd)
                    kd[at] = molt_f16_to_f32(hk), vd[at] = molt_f16_to_f32(hv);
                if (kf)
                    kf[at] = molt_f16_to_f32(hk), vf[at] = molt_f16_to_f32(hv);
            }
}

typedef struct pf16_case {
    float    *q, *work;
    uint16_t *kc, *vc;
    int       T, pos, H, KV, hd, cap;
} pf16_case;

static void run_attn_prefill_f16(const molt_exec *ex, void *cv, float *out) {
    pf16_case *c = cv;
    fill_nan(c->work, k_attn_prefill_f16_work(c->T, c->pos + c->T, c->H, c->KV, c->hd,
                                              MAX_THREADS));
    k_attn_prefill_f16(ex, out, c->q, c->T, c->pos, c->H, c->KV, c->hd, c->kc, c->vc, c->cap,
                       c->work);
}

static void test_attn_prefill_f16(void) {
    op_stat *st = stat_new("attn_prefill_f16", 1e-6, 1);
    // T, pos, H, KV, hd, cap (T = 1: decode; (pos+1)·H·hd ≥ 2^18 threads it)
    const int shapes[][6] = {{0, 0, 2, 1, 8, 4},        {1, 0, 1, 1, 2, 1},
                             {1, 5, 4, 2, 8, 8},        {1, 15, 2, 2, 6, 17},
                             {1, 16, 3, 1, 4, 20},      {1, 600, 8, 2, 64, 640},
                             {1, 1100, 4, 4, 64, 1200}, {3, 0, 2, 2, 6, 3},
                             {5, 4, 4, 1, 16, 12},      {17, 0, 6, 3, 10, 20},
                             {33, 40, 8, 4, 64, 80},    {70, 3, 4, 2, 32, 73},
                             {100, 0, 8, 8, 8, 100}};
    int bitwise = 0;
    for (int k = 0; k < 13; k++) {
        const int *s = shapes[k];
        int        T = s[0], pos = s[1], H = s[2], KV = s[3], hd = s[4], cap = s[5], S = pos + T;
        size_t     per = (size_t)KV * k_kv_f16_halves(cap, hd), nf = (size_t)KV * cap * hd;
        pf16_case  c = {frand((size_t)T * H * hd + 1, -1, 1), NULL, xmalloc(2 * per + 2),
                        xmalloc(2 * per + 2), T, pos, H, KV, hd, cap};
        c.work = fbuf(k_attn_prefill_f16_work(T, S, H, KV, hd, MAX_THREADS) + 1);
        double *kd = dbuf(nf + 1), *vd = dbuf(nf + 1), *ref = dbuf((size_t)T * H * hd + 1);
        float  *kf = fbuf(nf + 1), *vf = fbuf(nf + 1);
        kv16_caches(c.kc, c.vc, kd, vd, kf, vf, KV, hd, cap, S);
        double *q = dcopy(c.q, (size_t)T * H * hd), *P = dbuf((size_t)T * S + 1);
        for (int h = 0; h < H; h++) {
            size_t j = (size_t)(h / (H / KV)) * cap * hd;
            ref_head(P, ref + (size_t)h * hd, H * hd, q + (size_t)h * hd, H * hd, kd + j, hd,
                     vd + j, hd, T, S, pos, hd);
        }
        char shape[48];
        snprintf(shape, sizeof shape, "T,pos,H,KV,hd %dx%dx%dx%dx%d", T, pos, H, KV, hd);
        run_case(st, run_attn_prefill_f16, &c, ref, (size_t)T * H * hd, shape);
        if (T == 1) { // decode: the f32 op over the widened caches, bit for bit
            float *a = fbuf((size_t)H * hd), *b = fbuf((size_t)H * hd);
            float *w = fbuf(k_attn_prefill_work(1, S, H, KV, 3) + 1);
            for (int nth = 1; nth <= 3; nth += 2) {
                molt_exec ex = molt_exec_cpu(nth);
                k_attn_prefill_f16(&ex, a, c.q, 1, pos, H, KV, hd, c.kc, c.vc, cap, c.work);
                k_attn_prefill(&ex, b, c.q, 1, pos, H, KV, hd, kf, vf, cap, w);
                CHECK(memcmp(a, b, sizeof(float) * (size_t)H * hd) == 0,
                      "f16 decode equals the f32 decode of the widened caches [%s, %d threads]",
                      shape, nth);
                bitwise++;
            }
            free(a), free(b), free(w);
        }
        free(kd), free(vd), free(kf), free(vf), free(ref), free(q), free(P);
        free(c.q), free(c.kc), free(c.vc), free(c.work);
    }
    printf("attn_prefill_f16: decode bit-identical to the f32 op on the widened caches (%d "
           "checks)\n", bitwise);
}

typedef struct dr16_case {
    uint16_t **kc, **vc;
    float     *q, *work;
    int32_t   *pos;
    int        n, H, KV, hd, cap;
} dr16_case;

static void run_attn_decode_rows_f16(const molt_exec *ex, void *cv, float *out) {
    dr16_case *c = cv;
    fill_nan(c->work, k_attn_decode_rows_f16_work(c->H, c->KV, c->hd, c->cap, MAX_THREADS));
    k_attn_decode_rows_f16(ex, out, c->q, c->n, c->pos, c->H, c->KV, c->hd, c->kc, c->vc,
                           c->cap, c->work);
}

static void test_attn_decode_rows_f16(void) {
    op_stat *st = stat_new("attn_decode_rows_f16", 1e-6, 1);
    // n, H, KV, hd, cap (Σ(pos+1)·H·hd ≥ 2^16 threads it)
    const int shapes[][5] = {{0, 2, 1, 8, 4},   {1, 1, 1, 4, 3},    {3, 4, 2, 8, 17},
                             {7, 6, 3, 16, 40}, {5, 8, 2, 64, 300}, {9, 4, 4, 32, 130}};
    for (int k = 0; k < 6; k++) {
        const int *s = shapes[k];
        dr16_case  c = {0};
        c.n = s[0], c.H = s[1], c.KV = s[2], c.hd = s[3], c.cap = s[4];
        size_t per = (size_t)c.KV * k_kv_f16_halves(c.cap, c.hd), nq = (size_t)c.n * c.H * c.hd;
        size_t nf = (size_t)c.KV * c.cap * c.hd;
        c.kc = xmalloc(sizeof(uint16_t *) * (size_t)(c.n + 1));
        c.vc = xmalloc(sizeof(uint16_t *) * (size_t)(c.n + 1));
        float **kf = xmalloc(sizeof(float *) * (size_t)(c.n + 1));
        float **vf = xmalloc(sizeof(float *) * (size_t)(c.n + 1));
        c.pos = xmalloc(sizeof(int32_t) * (size_t)(c.n + 1));
        c.q = frand(nq + 1, -1, 1);
        c.work = fbuf(k_attn_decode_rows_f16_work(c.H, c.KV, c.hd, c.cap, MAX_THREADS));
        double *ref = dbuf(nq + 1), *P = dbuf((size_t)c.cap);
        double *q = dcopy(c.q, nq), *kd = dbuf(nf), *vd = dbuf(nf);
        for (int r = 0; r < c.n; r++) {
            c.kc[r] = xmalloc(2 * per), c.vc[r] = xmalloc(2 * per);
            kf[r] = fbuf(nf), vf[r] = fbuf(nf);
            c.pos[r] = r == 0 ? c.cap - 1 : (int32_t)((r * 37 + 3) % c.cap); // ragged
            kv16_caches(c.kc[r], c.vc[r], kd, vd, kf[r], vf[r], c.KV, c.hd, c.cap, c.pos[r] + 1);
            for (int h = 0; h < c.H; h++) {
                size_t j = (size_t)(h / (c.H / c.KV)) * c.cap * c.hd;
                ref_head(P, ref + (size_t)r * c.H * c.hd + (size_t)h * c.hd, c.hd,
                         q + (size_t)r * c.H * c.hd + (size_t)h * c.hd, c.hd, kd + j, c.hd,
                         vd + j, c.hd, 1, c.pos[r] + 1, c.pos[r], c.hd);
            }
        }
        char shape[48];
        snprintf(shape, sizeof shape, "n,H,KV,hd,cap %dx%dx%dx%dx%d", c.n, c.H, c.KV, c.hd,
                 c.cap);
        run_case(st, run_attn_decode_rows_f16, &c, ref, nq, shape);
        if (c.n > 0) {
            // row r equals its single-sequence f16 decode, and every row the f32
            // rows op over the widened caches, bit for bit
            int       r = c.n - 1;
            float    *one = fbuf((size_t)c.H * c.hd), *rows = fbuf(nq), *rows32 = fbuf(nq);
            molt_exec ex = molt_exec_cpu(3);
            k_attn_decode_rows_f16(&ex, rows, c.q, c.n, c.pos, c.H, c.KV, c.hd, c.kc, c.vc,
                                   c.cap, c.work);
            float *w1 = fbuf(k_attn_prefill_f16_work(1, c.pos[r] + 1, c.H, c.KV, c.hd, 3));
            k_attn_prefill_f16(&ex, one, c.q + (size_t)r * c.H * c.hd, 1, c.pos[r], c.H, c.KV,
                               c.hd, c.kc[r], c.vc[r], c.cap, w1);
            CHECK(memcmp(one, rows + (size_t)r * c.H * c.hd, sizeof(float) * c.H * c.hd) == 0,
                  "f16 decode row %d equals its single-sequence decode [%s]", r, shape);
            float *w32 = fbuf(k_attn_decode_rows_work(c.H, c.KV, c.cap, 3));
            k_attn_decode_rows(&ex, rows32, c.q, c.n, c.pos, c.H, c.KV, c.hd, kf, vf, c.cap, w32);
            CHECK(memcmp(rows, rows32, sizeof(float) * nq) == 0,
                  "f16 decode rows equal the f32 rows over the widened caches [%s]", shape);
            free(one), free(rows), free(rows32), free(w1), free(w32);
        }
        for (int r = 0; r < c.n; r++)
            free(c.kc[r]), free(c.vc[r]), free(kf[r]), free(vf[r]);
        free(c.kc), free(c.vc), free(kf), free(vf), free(c.pos), free(c.q), free(c.work);
        free(ref), free(P), free(q), free(kd), free(vd);
    }
}

// ----------------------------------------------------------------------------
// matmul_w with q8_0 weights (kernels/cpu/q8.h's contract): every instruction-
// set path the CPU allows (scalar, AVX2, AVX-512 VNNI), with 1-4 threads,
// against (a) the scalar path, bit for bit; (b) the contract's arithmetic in
// double (same quantized activations, exact block sums), to fp32 summation
// rounding; (c) k_matmul_w_ref (dequantized weights, unquantized x, double),
// within the activation quantization bound Σ_b (dx_b/2)·Σ_{i∈b} |ŵ_i|. The
// integer block sums are compared on their own too.

// a weight matrix [out, in] quantized row by row; wd (optional) gets ŵ = q·d
// an output before a q8_0 product: y0 when it accumulates, else NaN (a value left unwritten fails)
static void y_start(float *got, const float *y0, size_t ny, int acc) {
    if (acc)
        memcpy(got, y0, sizeof(float) * ny);
    else
        fill_nan(got, ny);
}

static uint8_t *q8_weights(int out, int in, float **wd) {
    size_t rb = molt_q8_row_bytes((size_t)in);
    uint8_t *W = xmalloc(rb * (size_t)out);
    float *row = fbuf((size_t)in + 1), *deq = fbuf((size_t)out * in + 1);
    for (int o = 0; o < out; o++) {
        t_fill_uniform(row, (size_t)in, -1, 1);
        if (o % 7 == 3) // wide dynamic range: some blocks tiny, some large
            for (int i = 0; i < in; i++)
                row[i] *= i % 64 < 32 ? 1e-3f : 40.0f;
        if (o % 11 == 5) // a zero row
            memset(row, 0, sizeof(float) * (size_t)in);
        CHECK(molt_q8_quantize_row(W + rb * (size_t)o, row, (size_t)in), "quantize row %d", o);
        molt_q8_dequantize_row(deq + (size_t)o * in, W + rb * (size_t)o, (size_t)in);
    }
    free(row);
    if (wd)
        *wd = deq;
    else
        free(deq);
    return W;
}

static void test_q8_isums(void) {
    int checked = 0;
    for (size_t nb = 1; nb <= 70; nb += nb < 20 ? 1 : 7) {
        size_t n = nb * 32;
        int8_t *qw = xmalloc(n), *qx = xmalloc(n);
        uint16_t *d = xmalloc(2 * nb);
        uint8_t *w = xmalloc(molt_q8_row_bytes(n)), *x = xmalloc(molt_q8_row_bytes(n));
        for (int rep = 0; rep < 4; rep++) {
            for (size_t i = 0; i < n; i++) { // rep 0: all ±127 (the largest sums)
                qw[i] = (int8_t)(rep == 0 ? (i % 3 ? 127 : -127) : (int)t_uniform(-127.99f, 128));
                qx[i] = (int8_t)(rep == 0 ? (i % 5 ? 127 : -127) : (int)t_uniform(-127.99f, 128));
                qw[i] = qw[i] == -128 ? -127 : qw[i], qx[i] = qx[i] == -128 ? -127 : qx[i];
            }
            memset(d, 0, 2 * nb);
            CHECK(molt_q8_pack_row(w, qw, d, n) && molt_q8_pack_row(x, qx, d, n), "pack");
            int32_t want[70], got[70];
            for (size_t b = 0; b < nb; b++) {
                want[b] = 0;
                for (int k = 0; k < 32; k++)
                    want[b] += (int32_t)qw[b * 32 + k] * qx[b * 32 + k];
            }
            for (int isa = 0; isa < 3; isa++) {
                if (!cpu_q8_isa_available(isa))
                    continue;
                memset(got, 0x55, sizeof got);
                cpu_q8_isums(isa, got, w, x, nb);
                CHECK(memcmp(got, want, sizeof(int32_t) * nb) == 0, "q8 isums %s nb %zu rep %d",
                      cpu_q8_isa_name(isa), nb, rep);
                checked++;
            }
        }
        free(qw), free(qx), free(d), free(w), free(x);
    }
    printf("q8_0 integer block sums: %d row pairs, every path equal to the plain sums\n", checked);
}

// the contract in double: the same quantized activations, exact block sums
static void q8_contract_ref(double *y, double *mag, const float *x, const uint8_t *W,
                            const float *bias, const float *y0, int T, int in, int out) {
    size_t nb = molt_q8_blocks((size_t)in), rb = molt_q8_row_bytes((size_t)in);
    uint8_t *xq = xmalloc(nb * 32 + 2 * nb); // + room for the scales unpack_row reads (unused)
    memset(xq + nb * 32, 0, 2 * nb);
    float *dx = fbuf(nb);
    int8_t *qw = xmalloc((size_t)in), *qx = xmalloc(nb * 32);
    uint16_t *dw = xmalloc(2 * nb), *dxh = xmalloc(2 * nb);
    for (int t = 0; t < T; t++) {
        cpu_q8_quantize_act(xq, dx, x + (size_t)t * in, in, 0);
        molt_q8_unpack_row(qx, dxh, xq, nb * 32); // dxh: unused (xq has no scales)
        for (int o = 0; o < out; o++) {
            molt_q8_unpack_row(qw, dw, W + rb * (size_t)o, (size_t)in);
            double s = 0, m = 0;
            for (size_t b = 0; b < nb; b++) {
                int64_t is = 0;
                for (int k = 0; k < 32 && b * 32 + (size_t)k < (size_t)in; k++)
                    is += (int64_t)qw[b * 32 + k] * qx[b * 32 + k];
                double p = (double)is * (double)molt_f16_to_f32(dw[b]) * (double)dx[b];
                s += p, m += fabs(p);
            }
            double base = (y0 ? (double)y0[(size_t)t * out + o] : 0) + (bias ? (double)bias[o] : 0);
            y[(size_t)t * out + o] = base + s;
            mag[(size_t)t * out + o] = fabs(base) + m;
        }
    }
    free(xq), free(dx), free(qw), free(qx), free(dw), free(dxh);
}

static void test_matmul_q8(void) {
    static const int S[][3] = {
        {1, 1, 1},      {1, 31, 3},    {1, 32, 2},    {1, 33, 17},    {2, 64, 16},
        {3, 100, 33},   {1, 172, 64},  {5, 192, 130}, {1, 511, 40},   {4, 512, 257},
        {9, 513, 33},   {1, 768, 768}, {8, 768, 64},  {67, 2048, 40}, {1, 2048, 768},
        {13, 1000, 97}, {0, 64, 8},    {3, 64, 0},    {2, 0, 5},
    };
    int cases = 0, paths = 0;
    double worst_c = 0, worst_r = 0; // error / allowed, contract and reference
    for (size_t k = 0; k < sizeof S / sizeof S[0]; k++)
        for (int v = 0; v < 4; v++) { // bias × accumulate
            int T = S[k][0], in = S[k][1], out = S[k][2], acc = v >> 1;
            size_t ny = (size_t)T * out;
            float *x = frand((size_t)T * in + 1, -2, 2);
            float *bias = v & 1 ? frand((size_t)out + 1, -1, 1) : NULL;
            for (int i = 0; i < T * in; i += 97) // some larger activations
                x[i] *= 30;
            float *y0 = frand(ny + 1, -1, 1), *wd = NULL;
            uint8_t *W = q8_weights(out, in, &wd);
            double *yc = dbuf(ny + 1), *mag = dbuf(ny + 1), *yr = dbuf(ny + 1);
            q8_contract_ref(yc, mag, x, W, bias, acc ? y0 : NULL, T, in, out);
            float *r = fbuf(ny + 1); // k_matmul_w_ref against the double loop below
            if (acc)
                memcpy(r, y0, sizeof(float) * ny);
            k_matmul_w_ref(r, x, (molt_w){MOLT_Q8_0, W}, bias, T, in, out, acc);
            size_t nb = molt_q8_blocks((size_t)(in > 0 ? in : 0));
            uint8_t *xq = xmalloc(nb * 32 + 1);
            float *dx = fbuf(nb + 1);
            double *bound = dbuf(ny + 1);
            for (int t = 0; t < T; t++) {
                if (in > 0)
                    cpu_q8_quantize_act(xq, dx, x + (size_t)t * in, in, 0);
                for (int o = 0; o < out; o++) {
                    double s = (acc ? (double)y0[(size_t)t * out + o] : 0), b = 0;
                    s += bias ? (double)bias[o] : 0;
                    double a = fabs(s);
                    for (int i = 0; i < in; i++) {
                        double w = wd[(size_t)o * in + i];
                        s += (double)x[(size_t)t * in + i] * w;
                        a += fabs((double)x[(size_t)t * in + i] * w);
                        b += 0.5 * (double)dx[i / 32] * fabs(w);
                    }
                    yr[(size_t)t * out + o] = s;
                    bound[(size_t)t * out + o] = b * (1 + 1e-5) + 1e-6 * a;
                    CHECK(fabs((double)r[(size_t)t * out + o] - s) <= 1e-6 * (1 + a),
                          "k_matmul_w_ref q8_0 %dx%dx%d", T, in, out);
                }
            }
            float *base = fbuf(ny + 1), *got = fbuf(ny + 1);
            for (int isa = 0; isa < 3; isa++) {
                if (!cpu_q8_isa_available(isa))
                    continue;
                paths += k == 0 && v == 0;
                for (int nth = 1; nth <= MAX_THREADS; nth++) {
                    molt_exec ex = molt_exec_cpu(nth);
                    y_start(got, y0, ny, acc);
                    cpu_matmul_q8(&ex, isa, got, x, W, bias, T, in, out, acc);
                    if (isa == 0 && nth == 1) {
                        memcpy(base, got, sizeof(float) * ny);
                        for (size_t i = 0; i < ny; i++) {
                            double dc = fabs((double)got[i] - yc[i]);
                            double dr = fabs((double)got[i] - yr[i]);
                            double ec = dc == 0 ? 0 : dc / (1e-5 * mag[i]);
                            double er = dr == 0 ? 0 : dr / bound[i];
                            worst_c = ec > worst_c || ec != ec ? ec : worst_c;
                            worst_r = er > worst_r || er != er ? er : worst_r;
                            CHECK(ec <= 1 && er <= 1, "q8 %dx%dx%d v%d [%zu]: %g vs contract %g "
                                  "(allowed %g), vs reference %g (allowed %g)", T, in, out, v, i,
                                  (double)got[i], yc[i], 1e-5 * mag[i], yr[i], bound[i]);
                        }
                    } else {
                        CHECK(ny == 0 || memcmp(base, got, sizeof(float) * ny) == 0,
                              "q8 %dx%dx%d v%d: %s with %d threads differs from scalar, 1 thread",
                              T, in, out, v, cpu_q8_isa_name(isa), nth);
                    }
                }
            }
            // the dispatched op (every backend) is the default path's result
            for (int b = 0; b < N_BACKENDS; b++) {
                molt_exec ex;
                CHECK(molt_exec_init(&ex, BACKENDS[b], 2), "exec");
                y_start(got, y0, ny, acc);
                k_matmul_w(&ex, got, x, (molt_w){MOLT_Q8_0, W}, bias, T, in, out, acc);
                CHECK(ny == 0 || memcmp(base, got, sizeof(float) * ny) == 0,
                      "k_matmul_w q8_0 %dx%dx%d on %s", T, in, out, BACKENDS[b]->name);
            }
            cases++;
            free(x), free(bias), free(y0), free(wd), free(W), free(yc), free(mag), free(yr);
            free(r), free(xq), free(dx), free(bound), free(base), free(got);
        }
    // inf / NaN in an activation block: that row's outputs are NaN, the others not
    {
        int T = 3, in = 96, out = 20;
        float *x = frand((size_t)T * in, -1, 1), y[60];
        uint8_t *W = q8_weights(out, in, NULL);
        x[in + 40] = INFINITY;
        for (int isa = 0; isa < 3; isa++) {
            if (!cpu_q8_isa_available(isa))
                continue;
            molt_exec ex = molt_exec_cpu(2);
            cpu_matmul_q8(&ex, isa, y, x, W, NULL, T, in, out, 0);
            for (int o = 0; o < out; o++)
                CHECK(isnan(y[out + o]) && !isnan(y[o]) && !isnan(y[2 * out + o]),
                      "q8 inf input %s [%d]", cpu_q8_isa_name(isa), o);
        }
        free(x), free(W);
    }
    printf("matmul_w (q8_0): %d cases on %d paths (this CPU: %s), 1-%d threads bit-identical to "
           "the scalar path; worst error / allowed: contract %.2f, reference %.2f\n",
           cases, paths, cpu_q8_isa_name(cpu_q8_isa()), MAX_THREADS, worst_c, worst_r);
}

// q8_0 at T ≥ cpu_q8_sgemm_t() (matmul_w.c): the weights dequantized exactly, multiplied with
// the unquantized activations by sgemm — within float rounding of the double product of the
// dequantized weights (no activation quantization), the same bits at 1-4 threads; one row
// fewer keeps q8.c's int8 path (cpu_matmul_q8's bits)
static void test_matmul_q8_sgemm(void) {
    int T0 = cpu_q8_sgemm_t();
    if (T0 <= 0) {
        printf("matmul_w (q8_0, T >= the sgemm threshold): off (MOLT_Q8_SGEMM_T=0)\n");
        return;
    }
    static const int S[][2] = {{32, 40}, {100, 33}, {513, 17}, {768, 130}, {1088, 9}, {1100, 21}};
    int    cases = 0;
    double worst = 0;
    for (size_t k = 0; k < sizeof S / sizeof S[0]; k++)
        for (int v = 0; v < 4; v++) { // bias × accumulate
            int     in = S[k][0], out = S[k][1], acc = v >> 1, T = T0 + (int)k % 3 * 37;
            size_t  ny = (size_t)T * out;
            float  *x = frand((size_t)T * in + 1, -2, 2), *wd = NULL;
            float  *bias = v & 1 ? frand((size_t)out + 1, -1, 1) : NULL, *y0 = frand(ny + 1, -1, 1);
            uint8_t *W = q8_weights(out, in, &wd);
            float  *base = fbuf(ny + 1), *got = fbuf(ny + 1);
            for (int nth = 1; nth <= MAX_THREADS; nth++) {
                molt_exec ex = molt_exec_cpu(nth);
                y_start(got, y0, ny, acc);
                k_matmul_w(&ex, got, x, (molt_w){MOLT_Q8_0, W}, bias, T, in, out, acc);
                if (nth == 1) {
                    memcpy(base, got, sizeof(float) * ny);
                    continue;
                }
                CHECK(memcmp(base, got, sizeof(float) * ny) == 0,
                      "q8 sgemm %dx%dx%d v%d: %d threads differ from 1", T, in, out, v, nth);
            }
            for (int t = 0; t < T; t++)
                for (int o = 0; o < out; o++) {
                    double s = (acc ? (double)y0[(size_t)t * out + o] : 0) + (bias ? (double)bias[o] : 0);
                    double a = fabs(s);
                    for (int i = 0; i < in; i++) {
                        double p = (double)x[(size_t)t * in + i] * (double)wd[(size_t)o * in + i];
                        s += p, a += fabs(p);
                    }
                    double e = fabs((double)base[(size_t)t * out + o] - s) / (1e-5 * (1 + a));
                    worst = e > worst || e != e ? e : worst;
                    CHECK(e <= 1, "q8 sgemm %dx%dx%d v%d [%d,%d]: %g vs %g", T, in, out, v, t, o,
                          (double)base[(size_t)t * out + o], s);
                }
            // one row fewer: the int8 path's bits
            int    T1 = T0 - 1;
            size_t n1 = (size_t)T1 * out;
            molt_exec ex = molt_exec_cpu(2);
            memcpy(base, y0, sizeof(float) * n1);
            memcpy(got, y0, sizeof(float) * n1);
            k_matmul_w(&ex, got, x, (molt_w){MOLT_Q8_0, W}, bias, T1, in, out, acc);
            cpu_matmul_q8(&ex, cpu_q8_isa(), base, x, W, bias, T1, in, out, acc);
            CHECK(memcmp(base, got, sizeof(float) * n1) == 0,
                  "q8 %dx%dx%d below the sgemm threshold: not the int8 path", T1, in, out);
            cases++;
            free(x), free(wd), free(bias), free(y0), free(W), free(base), free(got);
        }
    printf("matmul_w (q8_0, T >= %d: dequantized tiles, sgemm): %d cases, worst error / allowed "
           "%.2f, 1-%d threads bit-identical\n", T0, cases, worst, MAX_THREADS);
}

static void summary(void) {
    printf("%-26s %5s  %-38s %9s %8s  %s\n", "op", "cases", "largest shape", "worst err", "tol",
           "1-4 threads");
    for (int i = 0; i < g_nstat; i++) {
        const op_stat *s = &g_stat[i];
        const char    *thr = s->thread_diff ? (s->promised ? "DIFFER (promised identical)"
                                                           : "differ, each within tol")
                                            : (s->promised ? "bit-identical (promised)"
                                                           : "identical here (not promised)");
        printf("%-26s %5d  %-38s %9.2e %8.0e  %s%s\n", s->op, s->cases, s->shape, s->worst, s->tol,
               thr, s->failed ? "  FAIL" : "");
    }
}

int main(void) {
    t_seed(11);
    test_missing_ops();
    test_dispatch();
    test_matmul();
    test_matmul_w();
    test_matmul_backward();
    test_rmsnorm();
    test_swiglu();
    test_swiglu_pair();
    test_softmax();
    test_add();
    test_embedding();
    test_copy_cols();
    test_hybrid_stats();
    test_embedding_backward();
    test_memory();
    test_conv();
    test_ssd_step();
    test_ssd_scan();
    test_materialize();
    test_ssm_prep();
    test_ssm_gate();
    test_colsum();
    test_step_rows();
    test_state_bf16_step(); // bf16 recurrent SSM state (issue 15)
    test_state_bf16_cvt();
    test_losses();
    test_rev_kl(); // reverse-KL distillation loss (issue 17)
    test_sample_rows(); // decode sampling on the device (issue 12)
    test_span_ops();
    free(g_dbase);
    test_rope();
    test_kv_append();
    test_attn_prefill();
    test_attn_decode_rows();
    test_attn_decode_chain_bits();
    test_attn_train();
    test_attn_flash();
    // gateloop
    test_gl_prep();
    test_gl_step_rows();
    test_gl_scan();
    test_gl_materialize();
    test_m3_forward();
    test_m3_backward();
    // bf16 / f16 weights, T <= K_MATVEC_T (matmul_w, issue 15)
    test_matvec_half();
    // q8_0 weights (matmul_w)
    test_q8_isums();
    test_matmul_q8();
    test_matmul_q8_sgemm();
    // f16 KV cache (issue 15)
    test_f16_narrow();
    test_kv_append_f16();
    test_attn_prefill_f16();
    test_attn_decode_rows_f16();
    // the MLP's bf16 activations (issue 12; last: the random draws of the tests above unchanged)
    test_mlp_b16();
    // the fused decode ops (issue 12)
    test_add_rmsnorm();
    test_ssm_decode_rows();
    CHECK(g_nstat == MOLT_BACKEND_NOPS + 1, "%d ops swept, the table has %d (+1: the fused "
          "decode's bf16-state row)", g_nstat, MOLT_BACKEND_NOPS);
    summary();
    return t_done("test_backend_ops");
}
