/*
 * test_backend_ops.c — every op of the backend table (kernels.h:
 * MOLT_BACKEND_OPS) on every compiled backend, against a plain
 * double-precision reference written here straight from the equations
 * (kernels.h, backward.h, ssm.h, attn.h; shared/docs/ALGORITHMS.md §1.2–1.4
 * for the SSM ones), over a sweep of shapes: tiny, odd, not multiples of 16/64,
 * across the kernels' threading and chunking thresholds, zero length where
 * the contract allows it.
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
#include "kernels/attn.h"
#include "kernels/backward.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"
#include "kernels/ssm_rows.h"
#include "kernels/train_ops.h"
#include "testutil.h"

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
    k_copy_cols(ddt, H, dzx + RWS_DT, (size_t)k->ldz, n, H);
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
    k_copy_cols(dz, Di, dzx + (rws_z(k) - k->zx), (size_t)k->ldz, n, Di);
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
        CHECK(!molt_exec_init(&ex, &broken, 1), "%s without " #op " was accepted",                \
              BACKENDS[b]->name);                                                                  \
        CHECK(ex.be == &molt_backend_cpu && ex.nth == 2, "refusing %s without " #op                \
              " changed the exec", BACKENDS[b]->name);                                             \
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
    CALLS(softmax, k_softmax(&ex, NULL, 0));
    CALLS(add, k_add(&ex, NULL, NULL, NULL, 0));
    CALLS(embedding, k_embedding(&ex, NULL, NULL, NULL, 0, 0));
    CALLS(embedding_backward, k_embedding_backward(&ex, NULL, NULL, NULL, 0, 0));
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
    // training (train_ops.h)
    CALLS(xent, k_xent(&ex, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(soft_xent, k_soft_xent(&ex, NULL, NULL, NULL, NULL, 0, 0, 0, 0));
    CALLS(l2_rows, k_l2_rows(&ex, NULL, NULL, NULL, NULL, 0, 0, 0));
    CALLS(sumsq, k_sumsq(&ex, NULL, NULL, NULL, 0));
    CALLS(scale, k_scale(&ex, NULL, NULL, 0, 0));
    CALLS(adamw, k_adamw(&ex, NULL, NULL, NULL, NULL, NULL, 0, (adamw_hyper){0}));
#undef CALLS
    CHECK(calls == MOLT_BACKEND_NOPS, "%d entry points called, the table has %d ops", calls,
          MOLT_BACKEND_NOPS);
}

// ----------------------------------------------------------------------------

// ----------------------------------------------------------------------------
// matmul_w with q8_0 weights (kernels/cpu/q8.h's contract): every instruction-
// set path the CPU allows (scalar, AVX2, AVX-512 VNNI), with 1-4 threads,
// against (a) the scalar path, bit for bit; (b) the contract's arithmetic in
// double (same quantized activations, exact block sums), to fp32 summation
// rounding; (c) k_matmul_w_ref (dequantized weights, unquantized x, double),
// within the activation quantization bound Σ_b (dx_b/2)·Σ_{i∈b} |ŵ_i|. The
// integer block sums are compared on their own too.

// a weight matrix [out, in] quantized row by row; wd (optional) gets ŵ = q·d
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
    uint8_t *xq = xmalloc(nb * 32);
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
                    if (acc)
                        memcpy(got, y0, sizeof(float) * ny);
                    else
                        fill_nan(got, ny);
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
                if (acc)
                    memcpy(got, y0, sizeof(float) * ny);
                else
                    fill_nan(got, ny);
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
    test_losses();
    test_span_ops();
    free(g_dbase);
    test_rope();
    test_kv_append();
    test_attn_prefill();
    test_attn_decode_rows();
    test_attn_train();
    // q8_0 weights (matmul_w)
    test_q8_isums();
    test_matmul_q8();
    CHECK(g_nstat == MOLT_BACKEND_NOPS, "%d ops swept, the table has %d", g_nstat,
          MOLT_BACKEND_NOPS);
    summary();
    return t_done("test_backend_ops");
}
