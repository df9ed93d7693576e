/*
 * test_backend_cuda.c — the CUDA backend (src/kernels/cuda) against the CPU
 * backend, op by op: for every op of the CUDA table, random inputs over a
 * sweep of shapes (0, 1, odd, not multiples of 16/32, past the CPU's
 * threading and chunking thresholds, and model-sized ones), the CPU op on
 * host buffers (the oracle, itself held to double references by
 * test_backend_ops) and the CUDA op on uploaded copies; the downloaded
 * outputs must agree to a stated per-op tolerance.
 *
 * Error measure, as test_backend_ops: max_i |gpu_i − cpu_i| / (1 + |cpu_i|)
 * over every output of the op; NaN anywhere fails. Outputs the op writes (=)
 * start as NaN on both sides, so a value the GPU leaves unwritten fails;
 * outputs it accumulates into (+=) start from the same random values.
 * Tolerance 0 means bit-identical (add, embedding and its backward, which
 * do the same float operations in the same order on both backends).
 *
 * Also: the memory ops' round trip (upload → copy → zero → download), that
 * every op of the CUDA table is tested here, which ops are not yet on the
 * GPU (molt_exec_init must refuse the table exactly when some are), and the
 * sticky error (cuda.h). Prints a per-op table of worst errors.
 *
 * `test_backend_cuda --bench` prints timing lines instead (not a test); `--scan` runs only
 * the chunked SSD scan tests (both forms).
 * Built by `make cuda` (build-cuda/); skips (77) without a GPU.
 */
#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "kernels/attn.h"
#include "kernels/gateloop.h"
#include "kernels/mamba3.h"
#include "kernels/ssm.h"
#include "kernels/ssm_rows.h"
#include "kernels/train_ops.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef MOLT_CUDA

int main(void) { return t_skip("test_backend_cuda", "built without MOLT_CUDA: run `make cuda`"); }

#else

#include "kernels/cuda/cuda.h"

static molt_exec g_cpu, g_gpu;

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
static float *frand(size_t n, float lo, float hi) {
    float *p = xmalloc(sizeof(float) * n);
    t_fill_uniform(p, n, lo, hi);
    return p;
}

// input; output (=, NaN start); output (+=, random start); scratch; double output (=, NaN start)
enum { IN, OUT, ACC, SCR, OUTD };

typedef struct buf {
    void  *h; // host contents: inputs, and the start of ACC outputs
    size_t bytes;
    int    kind;
} buf;

#define MAXB 20
typedef struct ocase {
    buf            b[MAXB];
    int            nb;
    int            i[12]; // the op's integer arguments
    float          f;
    const int32_t *ids; // host array (contract)
    molt_dtype     dt;
    const void    *host; // another host array of the contract (spans, config)
    float          f2;
} ocase;

static void add_buf(ocase *c, void *h, size_t bytes, int kind) {
    c->b[c->nb++] = (buf){h, bytes, kind};
}
// a float buffer: random (IN, ACC) or only sized (OUT, SCR); NULL when n is (size_t)-1
static int addf(ocase *c, size_t n, int kind) {
    float *h = kind == IN || kind == ACC ? frand(n, -1, 1) : xmalloc(sizeof(float) * n);
    add_buf(c, h, sizeof(float) * n, kind);
    return c->nb - 1;
}
static void case_free(ocase *c) {
    for (int k = 0; k < c->nb; k++)
        free(c->b[k].h);
    c->nb = 0;
}

// runs the op with the case's buffers p[] (host or device pointers)
typedef void (*op_fn)(const molt_exec *ex, void *const *p, const ocase *c);

typedef struct op_stat {
    const char *op;
    double      tol;
    int         cases, failed;
    double      worst;
    char        shape[64];
} op_stat;

static op_stat g_stat[160];
static int     g_nstat;
static const char *g_tested[128];
static int         g_ntested;

static op_stat *stat_new(const char *op, double tol) {
    op_stat *s = &g_stat[g_nstat++];
    memset(s, 0, sizeof *s);
    s->op = op;
    s->tol = tol;
    return s;
}
static void tested(const char *op) { g_tested[g_ntested++] = op; }

static double err_max(const float *g, const float *c, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - (double)c[i]) / (1.0 + fabs((double)c[i]));
        if (!(d <= e))
            e = d == d ? d : (double)INFINITY;
    }
    return e;
}

static double err_max_d(const double *g, const double *c, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(g[i] - c[i]) / (1.0 + fabs(c[i]));
        if (!(d <= e))
            e = d == d ? d : (double)INFINITY;
    }
    return e;
}

static void check_sticky(const char *what) {
    be_sync(&g_gpu);
    const char *e = molt_cuda_last_error();
    CHECK(e == NULL, "%s: CUDA error: %s", what, e ? e : "");
    if (e)
        molt_cuda_clear_error();
}

// One case: the CPU op on host copies, the CUDA op on device copies, every
// output compared.
static void run_op(op_stat *st, op_fn fn, ocase *c, const char *shape) {
    void *hp[MAXB], *dp[MAXB], *got[MAXB];
    for (int k = 0; k < c->nb; k++) {
        buf   *b = &c->b[k];
        size_t nf = b->bytes / sizeof(float);
        hp[k] = b->h;
        dp[k] = NULL;
        got[k] = NULL;
        if (b->kind == IN)
            ;
        else {
            hp[k] = xmalloc(b->bytes);
            if (b->kind == ACC)
                memcpy(hp[k], b->h, b->bytes);
            else if (b->kind == OUTD)
                for (size_t i = 0; i < b->bytes / sizeof(double); i++)
                    ((double *)hp[k])[i] = NAN;
            else
                for (size_t i = 0; i < nf; i++)
                    ((float *)hp[k])[i] = NAN;
        }
        dp[k] = be_alloc(g_gpu.be, b->bytes);
        CHECK(dp[k] != NULL, "be_alloc %zu bytes", b->bytes);
        if (!dp[k])
            return;
        be_upload(&g_gpu, dp[k], hp[k], b->bytes);
    }
    fn(&g_cpu, hp, c);
    fn(&g_gpu, dp, c);
    char what[128];
    snprintf(what, sizeof what, "%s [%s]", st->op, shape);
    check_sticky(what);
    double e = 0;
    int    worst_k = -1;
    for (int k = 0; k < c->nb; k++) {
        buf *b = &c->b[k];
        if (b->kind == OUT || b->kind == ACC || b->kind == OUTD) {
            got[k] = xmalloc(b->bytes);
            be_download(&g_gpu, got[k], dp[k], b->bytes);
            double ek = b->kind == OUTD
                            ? err_max_d(got[k], hp[k], b->bytes / sizeof(double))
                            : err_max(got[k], hp[k], b->bytes / sizeof(float));
            if (!(ek <= e))
                e = ek, worst_k = k;
        }
    }
    st->cases++;
    if (!(e < st->worst) || st->cases == 1) { // ties: the later (larger) shape
        st->worst = e;
        snprintf(st->shape, sizeof st->shape, "%s", shape);
    }
    CHECK(e <= st->tol, "%s: gpu vs cpu error %.3g > %.3g (buffer #%d)", what, e, st->tol,
          worst_k);
    st->failed |= !(e <= st->tol);
    for (int k = 0; k < c->nb; k++) {
        if (c->b[k].kind != IN)
            free(hp[k]);
        free(got[k]);
        be_free(g_gpu.be, dp[k]);
    }
}

#define NELEM(a) (int)(sizeof(a) / sizeof(a[0]))
#define F(k) ((float *)p[k])

// ----------------------------------------------------------------------------
// dense: matmul, matmul_w, matmul_backward

static const int MM_SHAPES[][3] = {{0, 8, 8},      {1, 1, 1},       {1, 7, 5},     {1, 33, 17},
                                   {1, 1024, 1024}, {2, 3, 4},      {3, 17, 33},   {8, 300, 520},
                                   {9, 129, 65},   {17, 129, 65},   {64, 200, 257}, {33, 96, 1000},
                                   {128, 1024, 512}, {300, 513, 700}, {4, 2048, 130},
                                   // decode-sized T under the bf16 exec (cuBLAS)
                                   {9, 64, 65}, {40, 640, 130}, {64, 512, 300},
                                   // batch-1 GEMV rounds (k_matvec1_w16, the T = 1 default): two
                                   // full rounds and a tail at 1 warp a row; a tail at 4
                                   {1, 4160, 8200}, {1, 2056, 2050}};

// buffers: x, W, bias (or absent), y
static void op_matmul(const molt_exec *ex, void *const *p, const ocase *c) {
    k_matmul(ex, F(3), F(0), F(1), c->i[3] ? F(2) : NULL, c->i[0], c->i[1], c->i[2], c->i[4]);
}
static void op_matmul_w(const molt_exec *ex, void *const *p, const ocase *c) {
    molt_w W = {c->dt, p[1]};
    k_matmul_w(ex, F(3), F(0), W, c->i[3] ? F(2) : NULL, c->i[0], c->i[1], c->i[2], c->i[4]);
}

static void test_matmul(void) {
    op_stat *st = stat_new("matmul", 1e-4);
    op_stat *sw = stat_new("matmul_w (bf16, f16, f32)", 1e-4);
    // TF32 tensor cores (an exec with MOLT_EXEC_TF32): inputs cut to a 10-bit
    // mantissa (relative error up to 2^-10 each), products summed in fp32;
    // measured on an H100 up to 1e-2 of 1 + |y| for in ≤ 2048 with inputs in
    // [-1, 1) (0.0097 at 128×1024×512): the tolerance is 2e-2
    op_stat *s32 = stat_new("matmul (tf32 exec)", 2e-2);
    // bf16 (MOLT_EXEC_BF16): inputs rounded to an 8-bit mantissa (2^-9 relative
    // each), fp32 sums: about 4× the TF32 bound
    op_stat *sbf = stat_new("matmul (bf16 exec)", 8e-2);
    op_stat *swb = stat_new("matmul_w bf16 (bf16 exec)", 8e-2);
    tested("matmul"), tested("matmul_w");
    for (int k = 0; k < NELEM(MM_SHAPES); k++)
        for (int v = 0; v < 4; v++) { // bias × accumulate
            int    T = MM_SHAPES[k][0], in = MM_SHAPES[k][1], out = MM_SHAPES[k][2];
            ocase  c = {.i = {T, in, out, v & 1, v >> 1}};
            char   shape[64];
            addf(&c, (size_t)T * in, IN);
            addf(&c, (size_t)out * in, IN);
            addf(&c, (size_t)out, IN);
            addf(&c, (size_t)T * out, v >> 1 ? ACC : OUT);
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d%s%s", T, in, out, v & 1 ? " +b" : "",
                     v >> 1 ? " +=" : "");
            run_op(st, op_matmul, &c, shape);
            // the bounds above grow with in (√in for random signs): held to in ≤ 2048, the
            // model widths they were measured at (the bf16 exec reached 0.093 at the T = 1
            // GEMV rounds' in 2056, run 10)
            if (in <= 2048) {
                g_gpu.flags |= MOLT_EXEC_TF32;
                run_op(s32, op_matmul, &c, shape);
                g_gpu.flags &= ~MOLT_EXEC_TF32;
                g_gpu.flags |= MOLT_EXEC_BF16;
                run_op(sbf, op_matmul, &c, shape);
                g_gpu.flags &= ~MOLT_EXEC_BF16;
            }
            for (int dt = 0; dt < 3; dt++) { // typed weights
                c.dt = dt == 0 ? MOLT_BF16 : dt == 1 ? MOLT_F16 : MOLT_F32;
                size_t    nw = (size_t)out * in;
                float    *Wf = c.b[1].h;
                uint16_t *Wh = xmalloc(2 * nw);
                if (c.dt != MOLT_F32) {
                    for (size_t i = 0; i < nw; i++)
                        Wh[i] = c.dt == MOLT_BF16 ? molt_f32_to_bf16(Wf[i]) : molt_f32_to_f16(Wf[i]);
                    c.b[1] = (buf){Wh, 2 * nw, IN};
                }
                snprintf(shape, sizeof shape, "T,in,out %dx%dx%d %s%s%s", T, in, out,
                         molt_dtype_name(c.dt), v & 1 ? " +b" : "", v >> 1 ? " +=" : "");
                run_op(sw, op_matmul_w, &c, shape);
                if (c.dt == MOLT_BF16 && in <= 2048) { // x rounded to bf16 as well
                    g_gpu.flags |= MOLT_EXEC_BF16;
                    run_op(swb, op_matmul_w, &c, shape);
                    g_gpu.flags &= ~MOLT_EXEC_BF16;
                }
                c.b[1] = (buf){Wf, sizeof(float) * nw, IN};
                free(Wh);
            }
            case_free(&c);
        }
}

// buffers: dy, x, W, dx, dW, db
static void op_matmul_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int want = c->i[3];
    k_matmul_backward(ex, want & 1 ? F(3) : NULL, want & 2 ? F(4) : NULL, want & 4 ? F(5) : NULL,
                      F(0), F(1), F(2), c->i[0], c->i[1], c->i[2], c->i[4]);
}

static void test_matmul_backward(void) {
    op_stat  *st = stat_new("matmul_backward", 1e-4);
    op_stat  *sbf = stat_new("matmul_backward (bf16 exec)", 8e-2);
    const int variants[][2] = {{7, 0}, {7, 1}, {1, 0}, {2, 0}, {4, 0}, {5, 1}}; // want, acc
    tested("matmul_backward");
    for (int k = 0; k < NELEM(MM_SHAPES); k++)
        for (int v = 0; v < 6; v++) {
            int   T = MM_SHAPES[k][0], in = MM_SHAPES[k][1], out = MM_SHAPES[k][2];
            int   want = variants[v][0], acc = variants[v][1];
            ocase c = {.i = {T, in, out, want, acc}};
            addf(&c, (size_t)T * out, IN);
            addf(&c, (size_t)T * in, IN);
            addf(&c, (size_t)out * in, IN);
            addf(&c, (size_t)T * in, want & 1 ? (acc ? ACC : OUT) : SCR);
            addf(&c, (size_t)out * in, want & 2 ? ACC : SCR);
            addf(&c, (size_t)out, want & 4 ? ACC : SCR);
            char shape[64];
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d %s%s%s%s", T, in, out,
                     want & 1 ? "dx" : "", want & 2 ? "dW" : "", want & 4 ? "db" : "",
                     acc ? " +=" : "");
            run_op(st, op_matmul_backward, &c, shape);
            if (in <= 2048 && T <= 4096) { // bf16 exec: the matmul bound (sums over T for dW)
                g_gpu.flags |= MOLT_EXEC_BF16;
                run_op(sbf, op_matmul_backward, &c, shape);
                g_gpu.flags &= ~MOLT_EXEC_BF16;
            }
            case_free(&c);
        }
}

// ----------------------------------------------------------------------------
// RMSNorm (x, w | y, rstd | dy, dx +=, dw +=)

static const int RMS_SHAPES[][2] = {{0, 8},   {1, 1},    {1, 7},    {3, 17},    {5, 64},
                                    {7, 129}, {33, 288}, {64, 2048}, {300, 1000}, {2, 20000}};

static void op_rmsnorm(const molt_exec *ex, void *const *p, const ocase *c) {
    k_rmsnorm(ex, F(2), F(0), F(1), c->i[0], c->i[1], 1e-5f);
}
static void op_rmsnorm_forward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_rmsnorm_forward(ex, F(2), F(3), F(0), F(1), c->i[0], c->i[1], 1e-5f);
}
// x, w, rstd (saved), dy, dx, dw
static void op_rmsnorm_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_rmsnorm_backward(ex, c->i[2] & 1 ? F(4) : NULL, c->i[2] & 2 ? F(5) : NULL, F(3), F(0), F(1),
                       F(2), c->i[0], c->i[1]);
}

static void test_rmsnorm(void) {
    op_stat *s0 = stat_new("rmsnorm", 1e-5), *s1 = stat_new("rmsnorm_forward", 1e-5);
    op_stat *s2 = stat_new("rmsnorm_backward", 2e-5);
    tested("rmsnorm"), tested("rmsnorm_forward"), tested("rmsnorm_backward");
    for (int k = 0; k < NELEM(RMS_SHAPES); k++) {
        int   T = RMS_SHAPES[k][0], d = RMS_SHAPES[k][1];
        char  shape[64];
        ocase c = {.i = {T, d}};
        addf(&c, (size_t)T * d, IN);
        addf(&c, (size_t)d, IN);
        addf(&c, (size_t)T * d, OUT);
        snprintf(shape, sizeof shape, "T,d %dx%d", T, d);
        run_op(s0, op_rmsnorm, &c, shape);
        addf(&c, (size_t)T, OUT);
        run_op(s1, op_rmsnorm_forward, &c, shape);
        case_free(&c);
        for (int want = 1; want <= 3; want++) {
            ocase b = {.i = {T, d, want}};
            addf(&b, (size_t)T * d, IN);
            addf(&b, (size_t)d, IN);
            float *r = frand((size_t)T, 0.5f, 2.0f);
            add_buf(&b, r, sizeof(float) * (size_t)T, IN);
            addf(&b, (size_t)T * d, IN);
            addf(&b, (size_t)T * d, want & 1 ? ACC : SCR);
            addf(&b, (size_t)d, want & 2 ? ACC : SCR);
            snprintf(shape, sizeof shape, "T,d %dx%d %s%s", T, d, want & 1 ? "dx" : "",
                     want & 2 ? "dw" : "");
            run_op(s2, op_rmsnorm_backward, &b, shape);
            case_free(&b);
        }
    }
}

// ----------------------------------------------------------------------------
// SwiGLU, softmax, add

static const size_t EW_N[] = {0, 1, 7, 15, 17, 1000, 32767, 32768, 100003, (size_t)1 << 21};

// gates over the interesting range, some far out in both tails
static float *gates(size_t n) {
    float *g = frand(n, -8, 8);
    for (size_t i = 3; i < n; i += 97)
        g[i] = i % 2 ? 60.0f : -60.0f;
    return g;
}

static void op_swiglu(const molt_exec *ex, void *const *p, const ocase *c) {
    k_swiglu(ex, F(0), F(1), (size_t)c->i[0]);
}
// g, u, dh, dg, du; variant 3 writes dg over dh (aliasing allowed)
static void op_swiglu_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[1];
    if (v == 3)
        k_swiglu_backward(ex, F(2), F(4), F(2), F(0), F(1), (size_t)c->i[0]);
    else
        k_swiglu_backward(ex, v & 1 ? F(3) : NULL, v & 2 ? F(4) : NULL, F(2), F(0),
                          v & 1 ? F(1) : NULL, (size_t)c->i[0]);
}
static void op_swiglu_pair(const molt_exec *ex, void *const *p, const ocase *c) {
    k_swiglu_pair(ex, F(1), F(0), c->i[0], c->i[1]);
}
static void op_swiglu_pair_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_swiglu_pair_backward(ex, F(2), F(1), F(0), c->i[0], c->i[1]);
}

static void test_swiglu(void) {
    op_stat *s0 = stat_new("swiglu", 2e-6), *s1 = stat_new("swiglu_backward", 2e-6);
    op_stat *s2 = stat_new("swiglu_pair", 2e-6), *s3 = stat_new("swiglu_pair_backward", 2e-6);
    tested("swiglu"), tested("swiglu_backward"), tested("swiglu_pair");
    tested("swiglu_pair_backward");
    char shape[64];
    for (int k = 0; k < NELEM(EW_N); k++) {
        size_t n = EW_N[k];
        ocase  c = {.i = {(int)n}};
        add_buf(&c, gates(n), sizeof(float) * n, ACC);
        addf(&c, n, IN);
        snprintf(shape, sizeof shape, "n %zu", n);
        run_op(s0, op_swiglu, &c, shape);
        case_free(&c);
        for (int v = 1; v <= 3; v++) { // dg+du, dg only (u given) / du only, dg over dh
            ocase b = {.i = {(int)n, v}};
            add_buf(&b, gates(n), sizeof(float) * n, IN);
            addf(&b, n, IN);
            addf(&b, n, v == 3 ? ACC : IN);
            addf(&b, n, v & 1 && v != 3 ? OUT : SCR);
            addf(&b, n, v & 2 ? OUT : SCR);
            snprintf(shape, sizeof shape, "n %zu %s", n,
                     v == 1 ? "dg" : v == 2 ? "du" : "dg=dh,du");
            run_op(s1, op_swiglu_backward, &b, shape);
            case_free(&b);
        }
    }
    const int SWP[][2] = {{0, 4}, {1, 1}, {3, 7}, {17, 64}, {40, 1000}, {2, 20000}, {512, 5632}};
    for (int k = 0; k < NELEM(SWP); k++) {
        int   T = SWP[k][0], F = SWP[k][1];
        ocase c = {.i = {T, F}};
        add_buf(&c, gates((size_t)T * 2 * F), sizeof(float) * (size_t)T * 2 * F, IN);
        addf(&c, (size_t)T * F, OUT);
        snprintf(shape, sizeof shape, "T,F %dx%d", T, F);
        run_op(s2, op_swiglu_pair, &c, shape);
        c.b[1].kind = IN;
        t_fill_uniform(c.b[1].h, (size_t)T * F, -1, 1);
        addf(&c, (size_t)T * 2 * F, OUT);
        run_op(s3, op_swiglu_pair_backward, &c, shape);
        case_free(&c);
    }
}

static void op_softmax(const molt_exec *ex, void *const *p, const ocase *c) {
    k_softmax(ex, F(0), c->i[0]);
}
// a, b, y; variant 1: in place y = a (the residual add)
static void op_add(const molt_exec *ex, void *const *p, const ocase *c) {
    if (c->i[1])
        k_add(ex, F(0), F(0), F(1), (size_t)c->i[0]);
    else
        k_add(ex, F(2), F(0), F(1), (size_t)c->i[0]);
}

static void test_softmax_add(void) {
    op_stat  *s0 = stat_new("softmax", 2e-6), *s1 = stat_new("add", 0);
    const int SM_N[] = {1, 2, 7, 1000, 32000, 128256};
    char      shape[64];
    tested("softmax"), tested("add");
    for (int k = 0; k < NELEM(SM_N); k++) {
        ocase c = {.i = {SM_N[k]}};
        add_buf(&c, frand((size_t)SM_N[k], -12, 12), sizeof(float) * (size_t)SM_N[k], ACC);
        snprintf(shape, sizeof shape, "n %d", SM_N[k]);
        run_op(s0, op_softmax, &c, shape);
        case_free(&c);
    }
    for (int k = 0; k < NELEM(EW_N); k++)
        for (int v = 0; v < 2; v++) {
            size_t n = EW_N[k];
            ocase  c = {.i = {(int)n, v}};
            addf(&c, n, v ? ACC : IN);
            addf(&c, n, IN);
            addf(&c, n, v ? SCR : OUT);
            snprintf(shape, sizeof shape, "n %zu%s", n, v ? " in place" : "");
            run_op(s1, op_add, &c, shape);
            case_free(&c);
        }
}

// ----------------------------------------------------------------------------
// embedding (E | x;  dx | dE +=), ids on the host with repeats

static void op_embedding(const molt_exec *ex, void *const *p, const ocase *c) {
    k_embedding(ex, F(1), F(0), c->ids, c->i[0], c->i[1]);
}
static void op_embedding_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_embedding_backward(ex, F(1), F(0), c->ids, c->i[0], c->i[1]);
}

static void test_embedding(void) {
    op_stat  *s0 = stat_new("embedding", 0), *s1 = stat_new("embedding_backward", 0);
    const int SH[][3] = {{0, 5, 8}, {1, 1, 1}, {5, 3, 7}, {64, 50, 64}, {300, 20, 1000},
                         {2048, 32000, 288}};
    tested("embedding"), tested("embedding_backward");
    for (int k = 0; k < NELEM(SH); k++) {
        int      T = SH[k][0], V = SH[k][1], d = SH[k][2];
        int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(T + 1));
        for (int t = 0; t < T; t++)
            ids[t] = (int32_t)(t_uniform(0, 1) * (float)V) % V;
        char  shape[64];
        ocase c = {.i = {T, d}, .ids = ids};
        addf(&c, (size_t)V * d, IN);
        addf(&c, (size_t)T * d, OUT);
        snprintf(shape, sizeof shape, "T,V,d %dx%dx%d", T, V, d);
        run_op(s0, op_embedding, &c, shape);
        case_free(&c);
        ocase b = {.i = {T, d}, .ids = ids};
        addf(&b, (size_t)T * d, IN);
        addf(&b, (size_t)V * d, ACC);
        run_op(s1, op_embedding_backward, &b, shape);
        case_free(&b);
        free(ids);
    }
}

// ----------------------------------------------------------------------------
// copy_cols (src | dst: untouched columns keep their start), hybrid combiner
// statistics (a, s | ap, st) and backward (st, a, s | g in/out, ds +=)

static void op_copy_cols(const molt_exec *ex, void *const *p, const ocase *c) {
    k_copy_cols(ex, F(1), (size_t)c->i[2], F(0), (size_t)c->i[3], (size_t)c->i[0],
                (size_t)c->i[1]);
}
static void op_hybrid_stats(const molt_exec *ex, void *const *p, const ocase *c) {
    k_hybrid_stats(ex, F(2), F(3), F(0), F(1), c->i[0], c->i[1]);
}
static void op_hybrid_stats_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_hybrid_stats_backward(ex, F(3), F(4), F(0), F(1), F(2), c->i[0], c->i[1]);
}

static void test_hybrid_ops(void) {
    op_stat  *s0 = stat_new("copy_cols", 0), *s1 = stat_new("hybrid_stats", 2e-6),
             *s2 = stat_new("hybrid_stats_backward", 2e-5);
    const int CC[][4] = {{0, 4, 4, 4}, {1, 1, 1, 1}, {3, 5, 5, 7}, {300, 96, 96, 200},
                         {2, 4096, 4096, 8192}, {7, 12, 12, 12}, {5, 8, 12, 16},
                         {9, 6, 10, 6}}; // rows, n, ldd, lds (contiguous, float4, scalar)
    const int HS[][2] = {{0, 4}, {1, 2}, {1, 7}, {5, 64}, {33, 129}, {200, 512}, {64, 2048}};
    char      shape[64];
    tested("copy_cols"), tested("hybrid_stats"), tested("hybrid_stats_backward");
    for (int k = 0; k < NELEM(CC); k++) {
        ocase c = {.i = {CC[k][0], CC[k][1], CC[k][2], CC[k][3]}};
        addf(&c, (size_t)CC[k][0] * CC[k][3] + 1, IN);
        addf(&c, (size_t)CC[k][0] * CC[k][2] + 1, ACC);
        snprintf(shape, sizeof shape, "rows,n %dx%d ld %d/%d", CC[k][0], CC[k][1], CC[k][2],
                 CC[k][3]);
        run_op(s0, op_copy_cols, &c, shape);
        case_free(&c);
    }
    for (int k = 0; k < NELEM(HS); k++) {
        int    T = HS[k][0], d = HS[k][1];
        size_t n = (size_t)T * d;
        ocase  c = {.i = {T, d}};
        addf(&c, n, IN);
        addf(&c, n, IN);
        addf(&c, n, OUT); // exact sizes: an OUT float left NaN on both sides fails
        addf(&c, 4 * (size_t)T, OUT);
        snprintf(shape, sizeof shape, "T,d %dx%d", T, d);
        run_op(s1, op_hybrid_stats, &c, shape);
        // the backward from the CPU's statistics of the same a, s
        float *st = xmalloc(sizeof(float) * (4 * (size_t)T + 1)), *ap = xmalloc(sizeof(float) * (n + 1));
        k_hybrid_stats(&g_cpu, ap, st, c.b[0].h, c.b[1].h, T, d);
        ocase b = {.i = {T, d}};
        add_buf(&b, st, sizeof(float) * 4 * (size_t)T, IN);
        add_buf(&b, c.b[0].h, sizeof(float) * n, IN);
        add_buf(&b, c.b[1].h, sizeof(float) * n, IN);
        addf(&b, n, ACC);
        addf(&b, n, ACC);
        c.b[0].h = c.b[1].h = NULL; // now b's
        run_op(s2, op_hybrid_stats_backward, &b, shape);
        case_free(&b);
        case_free(&c);
        free(ap);
    }
}

// ----------------------------------------------------------------------------
// conv1d_causal: x, w, b, state | y;  backward: dy, x, w | dx, dw +=, db +=

static const int CONV_SHAPES[][3] = {{0, 5, 4},    {1, 1, 1},     {1, 5, 4},    {2, 7, 4},
                                     {3, 7, 4},    {5, 3, 2},     {9, 70, 1},   {17, 33, 4},
                                     {64, 130, 3}, {200, 256, 4}, {300, 100, 5}, {2048, 2304, 4},
                                     {40, 17, 10}}; // K > CONV_KMAX: the one-stage dw

static void op_conv(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[3];
    conv1d_causal(ex, F(4), F(0), F(1), v & 1 ? F(2) : NULL, v & 2 ? F(3) : NULL, c->i[0],
                  c->i[1], c->i[2]);
}
static void op_conv_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[3];
    conv1d_causal_backward(ex, F(3), v & 1 ? F(4) : NULL, v & 2 ? F(5) : NULL, F(0), F(1), F(2),
                           c->i[0], c->i[1], c->i[2]);
}

static void test_conv(void) {
    // the backward's dw / db: the GPU sums each chunk of rows in double, the CPU all T rows in
    // float in order (its own rounding, ~4e-5 of 1 + |dw| at T = 2048: the bound)
    op_stat *sf = stat_new("conv1d_causal", 1e-5), *sb = stat_new("conv1d_causal_backward", 1e-4);
    tested("conv1d_causal"), tested("conv1d_causal_backward");
    for (int k = 0; k < NELEM(CONV_SHAPES); k++)
        for (int v = 0; v < 4; v++) { // forward: bias × state; backward: dw × db
            int    T = CONV_SHAPES[k][0], Cc = CONV_SHAPES[k][1], K = CONV_SHAPES[k][2];
            size_t n = (size_t)T * Cc;
            char   shape[64];
            ocase  c = {.i = {T, Cc, K, v}};
            addf(&c, n, IN);
            addf(&c, (size_t)Cc * K, IN);
            addf(&c, (size_t)Cc, IN);
            addf(&c, (size_t)Cc * (K - 1) + 1, v & 2 ? ACC : SCR);
            addf(&c, n, OUT);
            snprintf(shape, sizeof shape, "T,Cc,K %dx%dx%d%s%s", T, Cc, K, v & 1 ? " +b" : "",
                     v & 2 ? " +state" : "");
            run_op(sf, op_conv, &c, shape);
            case_free(&c);
            ocase b = {.i = {T, Cc, K, v}};
            addf(&b, n, IN);
            addf(&b, n, IN);
            addf(&b, (size_t)Cc * K, IN);
            addf(&b, n, OUT);
            addf(&b, (size_t)Cc * K, v & 1 ? ACC : SCR);
            addf(&b, (size_t)Cc, v & 2 ? ACC : SCR);
            snprintf(shape, sizeof shape, "T,Cc,K %dx%dx%d dx%s%s", T, Cc, K, v & 1 ? "dw" : "",
                     v & 2 ? "db" : "");
            run_op(sb, op_conv_backward, &b, shape);
            case_free(&b);
        }
}

// ----------------------------------------------------------------------------
// SSD: step, chunked scan (+ backward), materialized matrix (+ backward)

// decays: "sharp" mostly in (−1.5, 0] with a few flushed to exactly 0
// (dA < SSM_EXP_FLUSH); "mild" near 1 with some slight growth
static float *decays(size_t n, int sharp) {
    float *dA = sharp ? frand(n, -1.5f, 0.0f) : frand(n, -0.1f, 0.02f);
    for (size_t i = 5; sharp && i < n; i += 31)
        dA[i] = -70.0f;
    return dA;
}

// X, dA, B, C | y, state (+=: the initial state)
static void op_ssd_step(const molt_exec *ex, void *const *p, const ocase *c) {
    ssd_step(ex, F(4), F(5), F(0), F(1), F(2), F(3), c->i[0], c->i[1], c->i[2], c->i[3]);
}

static void test_ssd_step(void) {
    op_stat  *st = stat_new("ssd_step", 1e-5);
    const int SH[][4] = {{1, 1, 1, 1},   {2, 3, 5, 1},   {3, 7, 9, 3},     {4, 16, 16, 2},
                         {6, 33, 40, 2}, {8, 64, 16, 8}, {16, 32, 128, 1}, {32, 64, 64, 32}};
    tested("ssd_step");
    for (int k = 0; k < NELEM(SH); k++)
        for (int sharp = 0; sharp < 2; sharp++) {
            int   H = SH[k][0], P = SH[k][1], N = SH[k][2], G = SH[k][3];
            ocase c = {.i = {H, P, N, G}};
            char  shape[64];
            addf(&c, (size_t)H * P, IN);
            add_buf(&c, decays((size_t)H, sharp), sizeof(float) * (size_t)H, IN);
            addf(&c, (size_t)G * N, IN);
            addf(&c, (size_t)G * N, IN);
            addf(&c, (size_t)H * P, OUT);
            addf(&c, (size_t)H * P * N, ACC);
            snprintf(shape, sizeof shape, "H,P,N,G %dx%dx%dx%d", H, P, N, G);
            run_op(st, op_ssd_step, &c, shape);
            case_free(&c);
        }
}

static const int SCAN_SHAPES[][6] = { // T, H, P, N, G, Q
    {0, 2, 3, 4, 1, 4},       {1, 1, 1, 1, 1, 1},      {5, 2, 3, 4, 1, 2},
    {17, 3, 5, 7, 3, 4},      {17, 4, 8, 16, 2, 64},   {33, 6, 7, 5, 3, 7},
    {64, 4, 16, 16, 1, 16},   {100, 2, 8, 8, 2, 1},    {130, 4, 16, 32, 2, 64},
    {200, 8, 8, 16, 4, 32},   {257, 2, 16, 16, 1, 64}, {300, 4, 16, 32, 2, 256},
    {512, 8, 64, 64, 8, 128}, {1000, 4, 32, 64, 1, 128}, {300, 2, 64, 128, 1, 256},
    {1024, 16, 64, 64, 16, 128}};

static size_t scan_nc(int T, int Q) {
    int q = Q < T ? Q : T;
    return T > 0 ? (size_t)((T + q - 1) / q) : 0;
}

// X, dA, B, C | y, state (ACC, or unused), work (SCR), saved (OUT: st | din | dout)
static void op_scan(const molt_exec *ex, void *const *p, const ocase *c) {
    int    T = c->i[0], H = c->i[1], P = c->i[2], N = c->i[3], G = c->i[4], Q = c->i[5];
    size_t nc = scan_nc(T, Q), HPN = (size_t)H * P * N, HT = (size_t)H * T;
    ssd_scan_chunked(ex, F(4), c->i[6] ? F(5) : NULL, F(0), F(1), F(2), F(3), T, H, P, N, G, Q,
                     F(6));
    // the saved part of work (ssm.h / cpu/ssm.c): st [nc,H,P,N], then after v [H,P,N]: din, dout
    be_copy(ex, F(7), F(6), sizeof(float) * nc * HPN);
    be_copy(ex, F(7) + nc * HPN, F(6) + (nc + 1) * HPN, sizeof(float) * 2 * HT);
}
// X, dA, B, C, dy | y (SCR), work (SCR), dX, ddA, dB, dC (OUT)
static void op_scan_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int T = c->i[0], H = c->i[1], P = c->i[2], N = c->i[3], G = c->i[4], Q = c->i[5];
    ssd_scan_chunked(ex, F(5), NULL, F(0), F(1), F(2), F(3), T, H, P, N, G, Q, F(6));
    ssd_scan_chunked_backward(ex, F(7), F(8), F(9), F(10), F(4), F(0), F(1), F(2), F(3), T, H, P,
                              N, G, Q, F(6));
}

static void scan_inputs(ocase *c, int T, int H, int P, int N, int G, int sharp) {
    addf(c, (size_t)T * H * P, IN);
    add_buf(c, decays((size_t)T * H, sharp), sizeof(float) * (size_t)T * H, IN);
    addf(c, (size_t)T * G * N, IN);
    addf(c, (size_t)T * G * N, IN);
}

static void test_ssd_scan(void) {
    op_stat *sf = stat_new("ssd_scan_chunked", 5e-5);
    // the backward's ddA sums ~Q²/2 products with cancellation: at Q=256, N=128 and mild
    // decays the CPU itself is 3.5e-5 off a double reference, and the two backends' rounding
    // errors add
    op_stat *sb = stat_new("ssd_scan_chunked_backward", 2e-4);
    // an exec with MOLT_EXEC_TF32 or MOLT_EXEC_BF16 takes the tensor-core form
    // (cuda/ssm_tc.cu: TF32 batched GEMMs, inputs cut to a 10-bit mantissa): the
    // products' bound as for matmul (tf32 exec); the backward's ddA sums Q² such
    // products (colsum − rowsum prefixes), its values ~Q·N larger than one term
    op_stat *stf = stat_new("ssd_scan_chunked (tc exec)", 2e-2);
    // (measured on an H100, 2026-12-07: worst 0.057 over the 16 shapes, ddA at 512×8×64×64
    // Q 128 — the long colsum − rowsum prefix sums; dX, dB, dC stay near the forward's bound)
    op_stat *stb = stat_new("ssd_scan_chunked_backward (tc)", 1e-1);
    tested("ssd_scan_chunked"), tested("ssd_scan_chunked_backward");
    for (int k = 0; k < NELEM(SCAN_SHAPES); k++) {
        const int *s = SCAN_SHAPES[k];
        int        T = s[0], H = s[1], P = s[2], N = s[3], G = s[4], Q = s[5];
        size_t     HPN = (size_t)H * P * N, nc = scan_nc(T, Q), HT = (size_t)H * T;
        char       shape[64];
        for (int st0 = 0; st0 < 2; st0++) {
            ocase c = {.i = {T, H, P, N, G, Q, st0}};
            scan_inputs(&c, T, H, P, N, G, (k + st0) % 2);
            addf(&c, (size_t)T * H * P, OUT);
            addf(&c, HPN, st0 ? ACC : SCR);
            addf(&c, ssd_chunked_work(T, H, P, N, G, Q) + 1, SCR);
            addf(&c, nc * HPN + 2 * HT + 1, ACC); // every float but the last is overwritten
            snprintf(shape, sizeof shape, "T,H,P,N,G,Q %dx%dx%dx%dx%dx%d%s", T, H, P, N, G, Q,
                     st0 ? " +state" : "");
            run_op(sf, op_scan, &c, shape);
            g_gpu.flags |= st0 ? MOLT_EXEC_TF32 : MOLT_EXEC_BF16; // the same form for both
            run_op(stf, op_scan, &c, shape);
            g_gpu.flags &= ~(MOLT_EXEC_TF32 | MOLT_EXEC_BF16);
            case_free(&c);
        }
        ocase b = {.i = {T, H, P, N, G, Q}};
        scan_inputs(&b, T, H, P, N, G, k % 2);
        addf(&b, (size_t)T * H * P, IN);
        addf(&b, (size_t)T * H * P, SCR);
        addf(&b, ssd_chunked_backward_work(T, H, P, N, G, Q) + 1, SCR);
        addf(&b, (size_t)T * H * P, OUT);
        addf(&b, (size_t)T * H, OUT);
        addf(&b, (size_t)T * G * N, OUT);
        addf(&b, (size_t)T * G * N, OUT);
        snprintf(shape, sizeof shape, "T,H,P,N,G,Q %dx%dx%dx%dx%dx%d", T, H, P, N, G, Q);
        run_op(sb, op_scan_backward, &b, shape);
        g_gpu.flags |= MOLT_EXEC_BF16;
        run_op(stb, op_scan_backward, &b, shape);
        g_gpu.flags &= ~MOLT_EXEC_BF16;
        case_free(&b);
    }
}

// dA, B, C, cs, D | M;  backward: + dM | ddA, dB, dC, dcs (OUT), dD (ACC), work (SCR)
static void op_mat(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[4];
    ssd_materialize(ex, F(5), F(0), F(1), F(2), v & 1 ? F(3) : NULL, v & 2 ? F(4) : NULL, c->i[0],
                    c->i[1], c->i[2], c->i[3]);
}
static void op_mat_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[4];
    ssd_materialize_backward(ex, F(6), F(7), F(8), v & 1 ? F(9) : NULL, v & 2 ? F(10) : NULL,
                             F(5), F(0), F(1), F(2), v & 1 ? F(3) : NULL, v & 2 ? F(4) : NULL,
                             c->i[0], c->i[1], c->i[2], c->i[3], F(11));
}

static void test_materialize(void) {
    op_stat  *sf = stat_new("ssd_materialize", 2e-5);
    op_stat  *sb = stat_new("ssd_materialize_backward", 5e-5);
    const int SH[][4] = {{0, 2, 3, 1},   {1, 1, 1, 1},    {5, 2, 3, 1},   {17, 3, 7, 3},
                         {33, 4, 16, 2}, {64, 2, 16, 1},  {100, 6, 5, 3}, {130, 4, 8, 2},
                         {300, 4, 64, 2}, {1024, 2, 64, 2}};
    tested("ssd_materialize"), tested("ssd_materialize_backward");
    for (int k = 0; k < NELEM(SH); k++)
        for (int v = 0; v < 4; v++) { // colscale × D; decay regime alternates
            int    T = SH[k][0], H = SH[k][1], N = SH[k][2], G = SH[k][3];
            size_t na = (size_t)T * H, nb = (size_t)T * G * N, nM = (size_t)H * T * T;
            char   shape[64];
            ocase  c = {.i = {T, H, N, G, v}};
            add_buf(&c, decays(na, (k + v) % 2), sizeof(float) * na, IN);
            addf(&c, nb, IN);
            addf(&c, nb, IN);
            add_buf(&c, frand(na, 0.01f, 1.0f), sizeof(float) * na, IN);
            addf(&c, (size_t)H, IN);
            addf(&c, nM, OUT);
            snprintf(shape, sizeof shape, "T,H,N,G %dx%dx%dx%d%s%s", T, H, N, G,
                     v & 1 ? " +cs" : "", v & 2 ? " +D" : "");
            run_op(sf, op_mat, &c, shape);
            c.b[5].kind = IN; // dM
            t_fill_uniform(c.b[5].h, nM, -1, 1);
            addf(&c, na, OUT);
            addf(&c, nb, OUT);
            addf(&c, nb, OUT);
            addf(&c, na, v & 1 ? OUT : SCR);
            addf(&c, (size_t)H, v & 2 ? ACC : SCR);
            addf(&c, ssd_materialize_backward_work(T, H, N, G) + 1, SCR);
            run_op(sb, op_mat_backward, &c, shape);
            case_free(&c);
        }
}

// ----------------------------------------------------------------------------
// training ops (train_ops.h): xent, soft_xent, l2_rows, sumsq, scale, adamw.
// Losses and sumsq partials are double outputs (OUTD).

static void add_d(ocase *c, size_t n) {
    add_buf(c, xmalloc(sizeof(double) * (n ? n : 1)), sizeof(double) * n, OUTD);
}
static float *frand_scaled(size_t n, float k) {
    float *p = frand(n, -1, 1);
    for (size_t i = 0; i < n; i++)
        p[i] *= k;
    return p;
}

// logits (IN, or ACC: in place), loss, dl; i = {n, V, want grad, in place}
static void op_xent(const molt_exec *ex, void *const *p, const ocase *c) {
    float *g = c->i[3] ? F(0) : c->i[2] ? F(2) : NULL;
    k_xent(ex, (double *)p[1], g, F(0), c->ids, c->i[0], c->i[1], c->f);
}
// s, t, loss, ds; i = {n, V, want grad}; f = τ, f2 = scale
static void op_soft_xent(const molt_exec *ex, void *const *p, const ocase *c) {
    k_soft_xent(ex, (double *)p[2], c->i[2] ? F(3) : NULL, F(0), F(1), c->i[0], c->i[1], c->f,
                c->f2);
}
// x, y, loss, dx
static void op_l2_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    k_l2_rows(ex, (double *)p[2], c->i[2] ? F(3) : NULL, F(0), F(1), c->i[0], (size_t)c->i[1],
              c->f);
}

static const int LOSS_SHAPES[][2] = {{0, 5},   {1, 1},    {1, 7},     {3, 17},  {5, 1000},
                                     {2, 257}, {33, 4097}, {4, 32000}, {2, 50257}};

static void test_losses(void) {
    op_stat *sx = stat_new("xent", 1e-5), *ss = stat_new("soft_xent", 1e-5);
    op_stat *sl = stat_new("l2_rows", 1e-5);
    tested("xent"), tested("soft_xent"), tested("l2_rows");
    for (int k = 0; k < NELEM(LOSS_SHAPES); k++)
        for (int v = 0; v < 3; v++) { // loss only, + gradient, gradient in place
            int      n = LOSS_SHAPES[k][0], V = LOSS_SHAPES[k][1];
            size_t   nv = (size_t)n * V;
            int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
            for (int r = 0; r < n; r++)
                tg[r] = r % 3 == 2 ? -1 : (int32_t)(t_uniform(0, 1) * (float)V) % V;
            char  shape[64];
            ocase c = {.i = {n, V, v >= 1, v == 2}, .ids = tg, .f = 0.37f};
            add_buf(&c, frand_scaled(nv, 8.0f), sizeof(float) * nv, v == 2 ? ACC : IN);
            add_d(&c, (size_t)n);
            addf(&c, nv, v == 1 ? OUT : SCR);
            snprintf(shape, sizeof shape, "n,V %dx%d%s", n, V,
                     v == 0 ? " loss" : v == 1 ? " +grad" : " in place");
            run_op(sx, op_xent, &c, shape);
            case_free(&c);
            free(tg);
            if (v == 2)
                continue;
            for (int ti = 0; ti < 2; ti++) {
                ocase s = {.i = {n, V, v}, .f = ti ? 2.5f : 1.0f, .f2 = 0.7f};
                add_buf(&s, frand_scaled(nv, 6.0f), sizeof(float) * nv, IN);
                add_buf(&s, frand_scaled(nv, 6.0f), sizeof(float) * nv, IN);
                add_d(&s, (size_t)n);
                addf(&s, nv, v ? OUT : SCR);
                snprintf(shape, sizeof shape, "n,V %dx%d tau %g%s", n, V, (double)s.f,
                         v ? " +grad" : "");
                run_op(ss, op_soft_xent, &s, shape);
                case_free(&s);
            }
            ocase l = {.i = {n, V, v}, .f = 0.6f};
            float *x = frand(nv, -1, 1), *y = frand(nv, -1, 1);
            if (n > 0) // a zero distance (the kink: gradient 0)
                memcpy(y, x, sizeof(float) * (size_t)V);
            add_buf(&l, x, sizeof(float) * nv, IN);
            add_buf(&l, y, sizeof(float) * nv, IN);
            add_d(&l, (size_t)n);
            addf(&l, nv, v ? OUT : SCR);
            snprintf(shape, sizeof shape, "n,len %dx%d%s", n, V, v ? " +grad" : "");
            run_op(sl, op_l2_rows, &l, shape);
            case_free(&l);
        }
}

// reverse KL (issue 17): s, t, loss, ds; i = {n, V, want grad}; f = τ, f2 = scale. Against the
// CPU op (tested against double references in test_backend_ops), the soft_xent shapes.
static void op_rev_kl(const molt_exec *ex, void *const *p, const ocase *c) {
    k_rev_kl(ex, (double *)p[2], c->i[2] ? F(3) : NULL, F(0), F(1), c->i[0], c->i[1], c->f,
             c->f2);
}

static void test_rev_kl(void) {
    op_stat *sr = stat_new("rev_kl", 1e-5);
    tested("rev_kl");
    for (int k = 0; k < NELEM(LOSS_SHAPES); k++)
        for (int v = 0; v < 2; v++) // loss only, + gradient
            for (int ti = 0; ti < 2; ti++) {
                int    n = LOSS_SHAPES[k][0], V = LOSS_SHAPES[k][1];
                size_t nv = (size_t)n * V;
                char   shape[64];
                ocase  s = {.i = {n, V, v}, .f = ti ? 2.5f : 1.0f, .f2 = 0.7f};
                add_buf(&s, frand_scaled(nv, 6.0f), sizeof(float) * nv, IN);
                add_buf(&s, frand_scaled(nv, 6.0f), sizeof(float) * nv, IN);
                add_d(&s, (size_t)n);
                addf(&s, nv, v ? OUT : SCR);
                snprintf(shape, sizeof shape, "n,V %dx%d tau %g%s", n, V, (double)s.f,
                         v ? " +grad" : "");
                run_op(sr, op_rev_kl, &s, shape);
                case_free(&s);
            }
}

// decode sampling (issue 12): the GPU's ids against the CPU op's (itself tested against the
// host sampler in test_backend_ops). Greedy and the non-finite rows must agree exactly. At
// a temperature the CPU sums the probabilities in float in index order (an error growing with
// V: ~1e-5 at V = 128k) and the GPU its exponentials in double, so the two may pick
// neighbours; a different id must then be the right one by the double-precision CDF (the
// coin inside its interval, to 1e-6: the GPU's expf against exp).
static int sample_near(const float *l, int V, float temp, float coin, int v) {
    double m = -INFINITY, S = 0.0, below = 0.0;
    for (int u = 0; u < V; u++)
        m = fmax(m, (double)(l[u] / temp));
    for (int u = 0; u < V; u++) {
        double e = exp((double)(l[u] / temp) - m);
        S += e;
        if (u < v)
            below += e;
    }
    double lo = below / S, hi = (below + exp((double)(l[v] / temp) - m)) / S;
    return lo - 1e-6 <= (double)coin && (double)coin < hi + 1e-6;
}

static void test_sample_rows(void) {
    tested("sample_rows");
    static const int   shapes[][2] = {{1, 1}, {3, 2}, {5, 33}, {17, 1000}, {64, 32000},
                                      {4, 128256}};
    static const float temps[] = {0.0f, 1.0f, 0.7f, 2.5f, 1e-30f};
    int                rows = 0, differ = 0;
    for (int k = 0; k < NELEM(shapes); k++)
        for (int ti = 0; ti < NELEM(temps); ti++) {
            int    n = shapes[k][0], V = shapes[k][1];
            float  temp = temps[ti];
            size_t nv = (size_t)n * V;
            float *l = frand(nv, -4, 4), *coin = xmalloc(sizeof(float) * (size_t)n);
            if (V > 1) // row 0: two equal maxima (the lower index wins)
                l[V / 2] = l[V - 1] = 9.0f;
            if (n > 1) // row 1: logits far from 0 (the max subtraction)
                for (int v = 0; v < V; v++)
                    l[(size_t)V + v] *= 100.0f;
            if (n > 2) // row 2: a NaN (id -1)
                l[2 * (size_t)V + V / 3] = NAN;
            for (int r = 0; r < n; r++)
                coin[r] = (float)fmod(0.6180339887 * (r + 1) + 0.1 * k + 0.01 * ti, 1.0);
            int32_t *ic = xmalloc(sizeof(int32_t) * (size_t)n),
                    *ig = xmalloc(sizeof(int32_t) * (size_t)n);
            float   *dl = be_allocf(g_gpu.be, nv);
            int32_t *di = (int32_t *)be_allocf(g_gpu.be, (size_t)n);
            CHECK(dl && di, "be_alloc");
            k_sample_rows(&g_cpu, ic, l, coin, temp, n, V);
            be_upload(&g_gpu, dl, l, sizeof(float) * nv);
            memset(ig, 0x7f, sizeof(int32_t) * (size_t)n);
            k_sample_rows(&g_gpu, di, dl, coin, temp, n, V);
            be_download(&g_gpu, ig, di, sizeof(int32_t) * (size_t)n);
            check_sticky("sample_rows");
            for (int r = 0; r < n; r++, rows++) {
                differ += ig[r] != ic[r];
                if (temp > 1e-20f && ic[r] >= 0) // a draw: the GPU's id by the double CDF
                    CHECK(ig[r] >= 0 && ig[r] < V &&
                              sample_near(l + (size_t)r * V, V, temp, coin[r], ig[r]),
                          "sample_rows n,V %dx%d temperature %g row %d: gpu %d (cpu %d) is not "
                          "the double CDF's",
                          n, V, (double)temp, r, ig[r], ic[r]);
                else // greedy, its limit, non-finite rows: exact
                    CHECK(ig[r] == ic[r],
                          "sample_rows n,V %dx%d temperature %g row %d: gpu %d, cpu %d", n, V,
                          (double)temp, r, ig[r], ic[r]);
            }
            be_free(g_gpu.be, dl), be_free(g_gpu.be, di);
            free(l), free(coin), free(ic), free(ig);
        }
    CHECK(differ * 4 <= rows, "sample_rows: %d of %d rows differ from the CPU", differ, rows);
    printf("  sample_rows: %d rows, %d differ from the CPU (the GPU's id the right one by the "
           "double CDF)\n", rows, differ);
}

// spans over a buffer of SPAN_N floats (empty, short, block-crossing, large)
#define SPAN_N 200000
static const molt_span SPANS[] = {{0, 0},         {3, 17},     {100, 16384}, {20000, 16385},
                                  {40000, 100003}, {150000, 1}, {150010, 49990}};

// x, partial
static void op_sumsq(const molt_exec *ex, void *const *p, const ocase *c) {
    k_sumsq(ex, (double *)p[1], F(0), c->host, c->i[0]);
}
// x (ACC)
static void op_scale(const molt_exec *ex, void *const *p, const ocase *c) {
    k_scale(ex, F(0), c->host, c->i[0], c->f);
}
// p, m, v (ACC), g
static void op_adamw(const molt_exec *ex, void *const *p, const ocase *c) {
    adamw_hyper h = {0.9f, 0.95f, 1e-8f, 1.0f - 3e-4f * 0.1f, 3e-4f / (1.0f - 0.9f * 0.9f),
                     sqrtf(1.0f - 0.95f * 0.95f)};
    k_adamw(ex, F(0), F(1), F(2), F(3), c->host, c->i[0], h);
}

static void test_optim(void) {
    op_stat *s0 = stat_new("sumsq", 1e-12), *s1 = stat_new("scale", 0);
    op_stat *s2 = stat_new("adamw", 1e-6);
    tested("sumsq"), tested("scale"), tested("adamw");
    for (int ns = 0; ns <= NELEM(SPANS); ns++) { // the first ns spans
        char  shape[64];
        ocase c = {.i = {ns}, .host = SPANS, .f = 0.37f};
        addf(&c, SPAN_N, IN);
        add_d(&c, k_sumsq_blocks(SPANS, ns));
        snprintf(shape, sizeof shape, "%d spans", ns);
        run_op(s0, op_sumsq, &c, shape);
        case_free(&c);
        ocase s = {.i = {ns}, .host = SPANS, .f = 0.37f};
        addf(&s, SPAN_N, ACC);
        run_op(s1, op_scale, &s, shape);
        case_free(&s);
        ocase a = {.i = {ns}, .host = SPANS};
        addf(&a, SPAN_N, ACC);
        addf(&a, SPAN_N, ACC);
        add_buf(&a, frand(SPAN_N, 0.0f, 1e-3f), sizeof(float) * SPAN_N, ACC); // v ≥ 0
        add_buf(&a, frand_scaled(SPAN_N, 0.05f), sizeof(float) * SPAN_N, IN);
        run_op(s2, op_adamw, &a, shape);
        case_free(&a);
    }
}

// ----------------------------------------------------------------------------
// ssm rows (ssm_rows.h). zx rows are [n, R], R = 2·Di + 2·GN + H + 3: z at
// column 0, dt at column Di (the views of in_proj's output).

static const int SROW_CFG[][5] = { // mamba, H, P, G, N
    {1, 1, 1, 1, 1}, {1, 2, 3, 1, 5}, {1, 4, 16, 2, 8}, {1, 8, 64, 1, 128}, {1, 6, 10, 3, 16},
    {0, 1, 1, 1, 1}, {0, 3, 5, 1, 4}, {0, 8, 64, 1, 64}};
static const int SROW_N[] = {0, 1, 7, 64};

static ssm_rows_cfg srow_cfg(int k) {
    ssm_rows_cfg c = {SROW_CFG[k][0], SROW_CFG[k][1], SROW_CFG[k][2], SROW_CFG[k][3],
                      SROW_CFG[k][4], 0.01f, 2.0f, 1e-5f};
    return c;
}
static int srow_R(const ssm_rows_cfg *c) {
    return 2 * c->H * c->P + 2 * c->G * c->N + c->H + 3;
}

// xc, zx, dt_bias, A_log | x, X, B, C, dA, dlt;  i = {n, cfg}
static void op_ssm_prep(const molt_exec *ex, void *const *p, const ocase *c) {
    ssm_rows_cfg cf = srow_cfg(c->i[1]);
    int          R = srow_R(&cf), Di = cf.H * cf.P;
    ssm_prep(ex, F(4), F(5), F(6), F(7), F(8), F(9), F(0), F(1) + Di, R, c->i[2] ? F(2) : NULL,
             F(3), c->i[0], &cf);
}
// dX, dypre, ddA, dB, dC, dcs, xc, x, dlt, zx, dt_bias, A_log, D | dxc, dzx (ACC), hsA
static void op_ssm_prep_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    ssm_rows_cfg cf = srow_cfg(c->i[1]);
    int          R = srow_R(&cf), Di = cf.H * cf.P, v = c->i[2];
    ssm_prep_backward(ex, F(13), F(14) + Di, F(15), v & 1 ? F(0) : NULL, v & 2 ? F(1) : NULL,
                      F(2), F(3), F(4), v & 4 ? F(5) : NULL, F(6), F(7), F(8), F(9) + Di, R,
                      F(10), F(11), v & 2 ? F(12) : NULL, c->i[0], &cf);
}
// x, zx, D, norm_w, z_bias | ypre (ACC), g, rstd;  i = {n, cfg, x&D, in place}
static void op_ssm_gate(const molt_exec *ex, void *const *p, const ocase *c) {
    ssm_rows_cfg cf = srow_cfg(c->i[1]);
    int          R = srow_R(&cf);
    ssm_gate(ex, c->i[3] ? F(5) : F(6), F(5), F(7), c->i[2] ? F(0) : NULL, F(1), R,
             c->i[2] ? F(2) : NULL, F(3), F(4), c->i[0], &cf);
}
// ypre, x, zx, rstd, norm_w, z_bias | dg (ACC), dzx (ACC), dnw, hsD;  i = {n, cfg, want}
static void op_ssm_gate_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    ssm_rows_cfg cf = srow_cfg(c->i[1]);
    int          R = srow_R(&cf), v = c->i[2];
    ssm_gate_backward(ex, F(6), F(7), v & 1 ? F(8) : NULL, v & 2 ? F(9) : NULL, F(0), F(1), F(2),
                      R, F(3), F(4), F(5), c->i[0], &cf);
}

static void test_ssm_rows(void) {
    op_stat *s0 = stat_new("ssm_prep", 1e-5), *s1 = stat_new("ssm_prep_backward", 2e-5);
    op_stat *s2 = stat_new("ssm_gate", 1e-5), *s3 = stat_new("ssm_gate_backward", 1e-4);
    tested("ssm_prep"), tested("ssm_prep_backward"), tested("ssm_gate"),
        tested("ssm_gate_backward");
    for (int k = 0; k < NELEM(SROW_CFG); k++)
        for (int ni = 0; ni < NELEM(SROW_N); ni++) {
            ssm_rows_cfg cf = srow_cfg(k);
            int    n = SROW_N[ni], m = cf.mamba, H = cf.H, Di = H * cf.P, GN = cf.G * cf.N;
            size_t Cc = (size_t)Di + 2 * (size_t)GN, R = (size_t)srow_R(&cf), nn = (size_t)n;
            char   shape[64];
            snprintf(shape, sizeof shape, "%s n,H,P,G,N %dx%dx%dx%dx%d", m ? "mamba" : "discrete",
                     n, H, cf.P, cf.G, cf.N);
            for (int v = 0; v < 2; v++) { // dt_bias NULL / set
                ocase c = {.i = {n, k, v}};
                add_buf(&c, frand_scaled(nn * Cc, 3.0f), sizeof(float) * nn * Cc, IN);
                add_buf(&c, frand_scaled(nn * R, 5.0f), sizeof(float) * nn * R, IN);
                addf(&c, (size_t)H, IN);
                addf(&c, (size_t)H, IN);
                addf(&c, nn * Di, OUT);
                addf(&c, nn * Di, m ? OUT : SCR);
                addf(&c, nn * GN, OUT);
                addf(&c, nn * GN, OUT);
                addf(&c, nn * H, OUT);
                addf(&c, nn * H, m ? OUT : SCR);
                run_op(s0, op_ssm_prep, &c, shape);
                case_free(&c);
            }
            for (int v = 0; v < 8; v++) { // dX × (dypre, D) × dcs
                ocase c = {.i = {n, k, v}};
                addf(&c, nn * Di, IN);
                addf(&c, nn * Di, IN);
                addf(&c, nn * H, IN);
                addf(&c, nn * GN, IN);
                addf(&c, nn * GN, IN);
                addf(&c, nn * H, IN);
                add_buf(&c, frand_scaled(nn * Cc, 3.0f), sizeof(float) * nn * Cc, IN);
                addf(&c, nn * Di, IN);
                add_buf(&c, frand(nn * H, 0.01f, 2.0f), sizeof(float) * nn * H, IN);
                add_buf(&c, frand_scaled(nn * R, 5.0f), sizeof(float) * nn * R, IN);
                addf(&c, (size_t)H, IN);
                addf(&c, (size_t)H, IN);
                addf(&c, (size_t)H, IN);
                addf(&c, nn * Cc, OUT);
                addf(&c, nn * R, ACC);
                addf(&c, nn * H, m ? OUT : SCR);
                run_op(s1, op_ssm_prep_backward, &c, shape);
                case_free(&c);
            }
            for (int v = 0; v < 4; v++) { // x&D × in place
                ocase c = {.i = {n, k, v & 1, v >> 1}};
                addf(&c, nn * Di, IN);
                add_buf(&c, frand_scaled(nn * R, 3.0f), sizeof(float) * nn * R, IN);
                addf(&c, (size_t)H, IN);
                addf(&c, (size_t)Di, IN);
                addf(&c, (size_t)Di, IN);
                addf(&c, nn * Di, ACC);
                addf(&c, nn * Di, v >> 1 ? SCR : OUT);
                addf(&c, nn * (size_t)cf.G, m ? OUT : SCR);
                run_op(s2, op_ssm_gate, &c, shape);
                case_free(&c);
            }
            for (int v = 0; v < 4; v++) { // dnw × hsD
                ocase c = {.i = {n, k, v}};
                addf(&c, nn * Di, IN);
                addf(&c, nn * Di, IN);
                add_buf(&c, frand_scaled(nn * R, 3.0f), sizeof(float) * nn * R, IN);
                add_buf(&c, frand(nn * cf.G, 0.5f, 2.0f), sizeof(float) * nn * cf.G, IN);
                addf(&c, (size_t)Di, IN);
                addf(&c, (size_t)Di, IN);
                addf(&c, nn * Di, ACC);
                addf(&c, nn * R, ACC);
                addf(&c, nn * Di, m && (v & 1) ? OUT : SCR);
                addf(&c, nn * H, v & 2 ? OUT : SCR);
                run_op(s3, op_ssm_gate_backward, &c, shape);
                case_free(&c);
            }
        }
}

// src | out (ACC);  i = {rows, cols, ld}
static void op_colsum(const molt_exec *ex, void *const *p, const ocase *c) {
    k_colsum(ex, F(1), F(0), c->i[0], c->i[1], c->i[2]);
}
// x, w, b, states (ACC) | y;  i = {n, Cc, K}
static void op_conv_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    int     n = c->i[0], Cc = c->i[1], K = c->i[2];
    float **st = xmalloc(sizeof(float *) * (size_t)(n + 1));
    for (int r = 0; r < n; r++)
        st[r] = F(3) + (size_t)r * Cc * (K - 1);
    conv1d_causal_rows(ex, F(4), F(0), F(1), F(2), st, n, Cc, K);
    free(st);
}
// X, dA, B, C | y, states (ACC);  i = {n, H, P, N, G}
static void op_ssd_step_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    int     n = c->i[0], H = c->i[1], P = c->i[2], N = c->i[3], G = c->i[4];
    float **st = xmalloc(sizeof(float *) * (size_t)(n + 1));
    for (int r = 0; r < n; r++)
        st[r] = F(5) + (size_t)r * H * P * N;
    ssd_step_rows(ex, F(4), st, F(0), F(1), F(2), F(3), n, H, P, N, G);
    free(st);
}

// X, dA, B, C | y, states (ACC: f32 values, rounded to bf16 first), bf16 states (SCR), their
// new values widened (OUT);  i = {n, H, P, N, G}
static void op_ssd_step_rows_bf16(const molt_exec *ex, void *const *p, const ocase *c) {
    int        n = c->i[0], H = c->i[1], P = c->i[2], N = c->i[3], G = c->i[4];
    size_t     S = (size_t)H * P * N;
    uint16_t  *s16 = (uint16_t *)p[6], **st = xmalloc(sizeof(uint16_t *) * (size_t)(n + 1));
    k_bf16_narrow(ex, s16, F(5), (size_t)n * S);
    for (int r = 0; r < n; r++)
        st[r] = s16 + (size_t)r * S;
    ssd_step_rows_bf16(ex, F(4), st, F(0), F(1), F(2), F(3), n, H, P, N, G);
    k_bf16_widen(ex, F(7), s16, (size_t)n * S);
    free(st);
}

static void test_ssm_rows_misc(void) {
    // colsum: the CPU's bits with one row chunk (colsum.cuh); past CS_ROWS_MIN rows the
    // double sum is regrouped by chunks, so its float rounding may flip one ulp (rarely:
    // ~1e-16 relative apart), which the add to out carries: 1e-6 of 1 + |out|
    op_stat  *s0 = stat_new("colsum", 1e-6), *s1 = stat_new("conv1d_causal_rows", 1e-5);
    op_stat  *s2 = stat_new("ssd_step_rows", 1e-5);
    const int CS[][3] = {{0, 5, 5},        {1, 1, 1},        {7, 3, 5},     {64, 100, 130},
                         {1000, 257, 300}, {3, 5000, 5000}, {4097, 64, 64}};
    const int CR[][3] = {{0, 5, 4}, {1, 1, 1}, {1, 7, 4}, {3, 33, 2}, {8, 2304, 4}, {5, 130, 3}};
    const int SR[][5] = {{0, 2, 3, 5, 1},  {1, 1, 1, 1, 1},  {3, 4, 16, 16, 2},
                         {8, 8, 64, 16, 8}, {5, 24, 64, 128, 1}};
    op_stat  *s3 = stat_new("ssd_step_rows_bf16", 8e-3); // one bf16 ulp (test_fused_decode)
    tested("colsum"), tested("conv1d_causal_rows"), tested("ssd_step_rows");
    tested("ssd_step_rows_bf16");
    for (int k = 0; k < NELEM(CS); k++) {
        int   rows = CS[k][0], cols = CS[k][1], ld = CS[k][2];
        char  shape[64];
        ocase c = {.i = {rows, cols, ld}};
        addf(&c, (size_t)rows * ld, IN);
        addf(&c, (size_t)cols, ACC);
        snprintf(shape, sizeof shape, "rows,cols,ld %dx%dx%d", rows, cols, ld);
        run_op(s0, op_colsum, &c, shape);
        case_free(&c);
    }
    for (int k = 0; k < NELEM(CR); k++) {
        int    n = CR[k][0], Cc = CR[k][1], K = CR[k][2];
        size_t nn = (size_t)n;
        char   shape[64];
        ocase  c = {.i = {n, Cc, K}};
        addf(&c, nn * Cc, IN);
        addf(&c, (size_t)Cc * K, IN);
        addf(&c, (size_t)Cc, IN);
        addf(&c, nn * Cc * (K - 1) + 1, ACC);
        addf(&c, nn * Cc, OUT);
        snprintf(shape, sizeof shape, "n,Cc,K %dx%dx%d", n, Cc, K);
        run_op(s1, op_conv_rows, &c, shape);
        case_free(&c);
    }
    for (int k = 0; k < NELEM(SR); k++) {
        int    n = SR[k][0], H = SR[k][1], P = SR[k][2], N = SR[k][3], G = SR[k][4];
        size_t nn = (size_t)n;
        char   shape[64];
        ocase  c = {.i = {n, H, P, N, G}};
        addf(&c, nn * H * P, IN);
        add_buf(&c, decays(nn * H, 1), sizeof(float) * nn * H, IN);
        addf(&c, nn * G * N, IN);
        addf(&c, nn * G * N, IN);
        addf(&c, nn * H * P, OUT);
        addf(&c, nn * H * P * N, ACC);
        snprintf(shape, sizeof shape, "n,H,P,N,G %dx%dx%dx%dx%d", n, H, P, N, G);
        run_op(s2, op_ssd_step_rows, &c, shape);
        // the same inputs on the bf16 state: two buffers more (the f32 op ignores them)
        addf(&c, nn * H * P * N / 2 + 1, SCR);
        addf(&c, nn * H * P * N, OUT);
        run_op(s3, op_ssd_step_rows_bf16, &c, shape);
        case_free(&c);
    }
}

// ----------------------------------------------------------------------------
// the fused decode ops: add_rmsnorm, ssm_decode_rows (G == H), against the CPU
// and, on the GPU, bit for bit the launches they replace

// a, b, w | s, y, rstd;  i = {T, d, s is a}
static void op_add_rmsnorm(const molt_exec *ex, void *const *p, const ocase *c) {
    if (c->i[2]) { // in place on a copy of a
        be_copy(ex, F(3), F(0), sizeof(float) * (size_t)c->i[0] * c->i[1]);
        k_add_rmsnorm(ex, F(3), F(4), F(5), F(3), F(1), F(2), c->i[0], c->i[1], 1e-5f);
        return;
    }
    k_add_rmsnorm(ex, F(3), F(4), F(5), F(0), F(1), F(2), c->i[0], c->i[1], 1e-5f);
}
// k_add then k_rmsnorm_forward, as op_add_rmsnorm
static void op_add_then_rmsnorm(const molt_exec *ex, void *const *p, const ocase *c) {
    size_t n = (size_t)c->i[0] * c->i[1];
    k_add(ex, F(3), F(0), F(1), n);
    k_rmsnorm_forward(ex, F(4), F(5), F(3), F(2), c->i[0], c->i[1], 1e-5f);
}

// zx, conv_w, conv_b, dt_bias, A_log, D, norm_w, z_bias | y, conv (ACC), ssm (ACC), work
// [, bf16 state (SCR), its new values widened (OUT)];
// i = {n, H = G, P, N, K, mamba, variant, stage ops, bf16 state}
static void op_ssm_decode_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    int          n = c->i[0], H = c->i[1], P = c->i[2], N = c->i[3], K = c->i[4], v = c->i[6];
    int          Di = H * P, Cc = Di + 2 * H * N;
    ssm_rows_cfg cf = {c->i[5], H, P, H, N, v == 1 ? 0.3f : 0.0f, v == 1 ? 1.2f : INFINITY, 1e-5f};
    ssm_decode_args a = {.conv_w = F(1), .conv_b = v == 1 ? NULL : F(2),
                         .dt_bias = v == 1 ? NULL : F(3), .A_log = F(4), .D = v == 2 ? NULL : F(5),
                         .norm_w = F(6), .z_bias = v == 2 ? NULL : F(7), .K = K, .o_xbc = 1,
                         .o_z = 1 + Cc + 2};
    a.o_dt = a.o_z + Di + 1, a.ldz = a.o_dt + H + 3;
    float **pc = xmalloc(sizeof(float *) * (size_t)(n + 1));
    float **ps = xmalloc(sizeof(float *) * (size_t)(n + 1));
    for (int r = 0; r < n; r++)
        pc[r] = F(9) + (size_t)r * Cc * (K - 1), ps[r] = F(10) + (size_t)r * Di * N;
    uint16_t *s16 = c->i[8] ? (uint16_t *)p[12] : NULL; // the bf16 state: F(10) rounded
    if (s16) {
        a.state_bf16 = 1;
        k_bf16_narrow(ex, s16, F(10), (size_t)n * Di * N);
        for (int r = 0; r < n; r++)
            ps[r] = (float *)(void *)(s16 + (size_t)r * Di * N);
    }
    if (!c->i[7]) {
        ssm_decode_rows(ex, F(8), F(0), pc, ps, n, &cf, &a, F(11));
    } else { // the stage ops one by one (ssm_mixer.c's other path), intermediates in work
        size_t nn = (size_t)n, GN = (size_t)H * N;
        float *xr = F(11), *xc = xr + nn * Cc, *x = xc + nn * Cc, *X = cf.mamba ? x + nn * Di : x;
        float *B = X + nn * Di, *C = B + nn * GN, *dA = C + nn * GN, *dlt = dA + nn * H;
        k_copy_cols(ex, xr, (size_t)Cc, F(0) + a.o_xbc, (size_t)a.ldz, nn, (size_t)Cc);
        conv1d_causal_rows(ex, xc, xr, a.conv_w, a.conv_b, pc, n, Cc, K);
        ssm_prep(ex, x, cf.mamba ? X : NULL, B, C, dA, dlt, xc, F(0) + a.o_dt, a.ldz, a.dt_bias,
                 a.A_log, n, &cf);
        if (s16)
            ssd_step_rows_bf16(ex, F(8), (uint16_t *const *)(void *const *)ps, X, dA, B, C, n, H,
                               P, N, H);
        else
            ssd_step_rows(ex, F(8), ps, X, dA, B, C, n, H, P, N, H);
        ssm_gate(ex, F(8), F(8), NULL, x, F(0) + a.o_z, a.ldz, a.D, a.norm_w, a.z_bias, n, &cf);
    }
    if (s16) // the new bf16 state, widened (exact) for the comparison
        k_bf16_widen(ex, F(13), s16, (size_t)n * Di * N);
    free(pc), free(ps);
}

// the outputs (OUT, ACC) of fn and of ref on the GPU from the same inputs, bit for bit
static void gpu_bits(const char *what, op_fn fn, const ocase *c, op_fn ref, const ocase *cr,
                     const char *shape) {
    void *d1[MAXB], *d2[MAXB];
    for (int k = 0; k < c->nb; k++) {
        d1[k] = be_alloc(g_gpu.be, c->b[k].bytes);
        d2[k] = be_alloc(g_gpu.be, c->b[k].bytes);
        if (c->b[k].kind == IN || c->b[k].kind == ACC) {
            be_upload(&g_gpu, d1[k], c->b[k].h, c->b[k].bytes);
            be_upload(&g_gpu, d2[k], c->b[k].h, c->b[k].bytes);
        } else {
            be_zero(&g_gpu, d1[k], c->b[k].bytes);
            be_zero(&g_gpu, d2[k], c->b[k].bytes);
        }
    }
    fn(&g_gpu, d1, c);
    ref(&g_gpu, d2, cr);
    check_sticky(what);
    for (int k = 0; k < c->nb; k++) {
        if (c->b[k].kind == OUT || c->b[k].kind == ACC) {
            void *h1 = xmalloc(c->b[k].bytes), *h2 = xmalloc(c->b[k].bytes);
            be_download(&g_gpu, h1, d1[k], c->b[k].bytes);
            be_download(&g_gpu, h2, d2[k], c->b[k].bytes);
            CHECK(memcmp(h1, h2, c->b[k].bytes) == 0, "%s [%s]: buffer %d differs", what, shape,
                  k);
            free(h1), free(h2);
        }
        be_free(g_gpu.be, d1[k]);
        be_free(g_gpu.be, d2[k]);
    }
}

static void test_fused_decode(void) {
    op_stat  *s0 = stat_new("add_rmsnorm", 1e-5), *s1 = stat_new("ssm_decode_rows", 1e-5);
    // bf16 state: one bf16 ulp of a state value (2^-8 relative) where the GPU's decay expf
    // differs from the CPU's by an ulp and the rounded s lands on the other side
    op_stat  *s2 = stat_new("ssm_decode_rows (bf16 state)", 8e-3);
    const int AR[][2] = {{0, 8}, {1, 1}, {3, 17}, {7, 129}, {64, 2048}, {200, 300}, {2, 9000}};
    tested("add_rmsnorm"), tested("ssm_decode_rows");
    for (int k = 0; k < NELEM(AR); k++)
        for (int al = 0; al < 2; al++) {
            int    T = AR[k][0], d = AR[k][1];
            size_t n = (size_t)T * d;
            char   shape[64];
            ocase  c = {.i = {T, d, al}};
            addf(&c, n, IN);
            addf(&c, n, IN);
            add_buf(&c, frand((size_t)d, 0.5f, 1.5f), sizeof(float) * d, IN);
            addf(&c, n, OUT);
            addf(&c, n, OUT);
            addf(&c, (size_t)T, OUT);
            snprintf(shape, sizeof shape, "T,d %dx%d%s", T, d, al ? " s=a" : "");
            run_op(s0, op_add_rmsnorm, &c, shape);
            if (!al)
                gpu_bits("add_rmsnorm vs add + rmsnorm_forward", op_add_rmsnorm, &c,
                         op_add_then_rmsnorm, &c, shape);
            case_free(&c);
        }
    // n, H = G, P, N, K, mamba, variant (0 all inputs; 1 dt clamp, no conv_b, dt_bias; 2 no
    // D, z_bias); the Llamba-1B head (64 × 64) at batch 1 and 64, 130 rows (> CU_ROWS);
    // N 8000: 64 KB of shared memory (past the 48 KB default); N 30000: more than a block
    // can have, so the op runs the stage ops on work
    const int DR[][7] = {{0, 2, 4, 4, 4, 0, 0},   {1, 1, 1, 1, 1, 0, 0},   {1, 1, 1, 1, 1, 1, 2},
                         {3, 2, 5, 7, 4, 0, 1},   {3, 2, 5, 7, 4, 1, 1},   {2, 4, 33, 9, 3, 1, 0},
                         {1, 32, 64, 64, 4, 0, 0}, {64, 32, 64, 64, 4, 0, 2},
                         {130, 4, 64, 64, 4, 1, 0}, {2, 3, 300, 40, 4, 1, 1},
                         {2, 2, 16, 8000, 4, 0, 0}, {1, 1, 2, 30000, 4, 1, 0}};
    for (int k = 0; k < NELEM(DR); k++) {
        int    n = DR[k][0], H = DR[k][1], P = DR[k][2], N = DR[k][3], K = DR[k][4];
        int    m = DR[k][5], v = DR[k][6], Di = H * P, Cc = Di + 2 * H * N;
        int    ldz = 1 + Cc + 2 + Di + 1 + H + 3;
        size_t nn = (size_t)n;
        char   shape[64];
        ssm_rows_cfg cf = {m, H, P, H, N, 0, 0, 0};
        for (int b16 = 0; b16 < 2; b16++) {
        ocase  c = {.i = {n, H, P, N, K, m, v, 0, b16}};
        add_buf(&c, frand_scaled(nn * ldz + 1, 2.0f), sizeof(float) * (nn * ldz + 1), IN);
        add_buf(&c, frand_scaled((size_t)Cc * K, 0.7f), sizeof(float) * Cc * K, IN);
        addf(&c, (size_t)Cc, IN);
        addf(&c, (size_t)H, IN);
        addf(&c, (size_t)H, IN);
        addf(&c, (size_t)H, IN);
        add_buf(&c, frand((size_t)Di, 0.5f, 1.5f), sizeof(float) * Di, IN);
        addf(&c, (size_t)Di, IN);
        addf(&c, nn * Di, OUT);
        addf(&c, nn * Cc * (K - 1) + 1, ACC);
        addf(&c, nn * Di * N + 1, ACC);
        addf(&c, ssm_decode_rows_work(n, &cf) + 1, SCR);
        if (b16) {
            addf(&c, nn * Di * N / 2 + 1, SCR);
            addf(&c, nn * Di * N + 1, OUT);
        }
        snprintf(shape, sizeof shape, "n %d H=G %d P %d N %d K %d %s v%d%s", n, H, P, N, K,
                 m ? "mamba" : "discrete", v, b16 ? " bf16" : "");
        run_op(b16 ? s2 : s1, op_ssm_decode_rows, &c, shape);
        ocase stages = c; // the same buffers, the stage ops
        stages.i[7] = 1;
        gpu_bits("ssm_decode_rows vs the stage ops", op_ssm_decode_rows, &c, op_ssm_decode_rows,
                 &stages, shape);
        case_free(&c);
        }
    }
}

// ----------------------------------------------------------------------------
// attention: rope, kv_append

#define ROPE_MAXPOS 512

// x (ACC), cos, sin;  i = {rows, nh, hd, ld, pos0, period, inverse}; ids: pos or NULL
static void op_rope(const molt_exec *ex, void *const *p, const ocase *c) {
    k_rope(ex, F(0), c->i[3], c->i[0], c->i[1], c->i[2], c->i[4], c->i[5], c->ids, F(1), F(2),
           c->i[6]);
}
// k, v | caches kc, vc (ACC);  i = {rows, KV, hd, ld, cap, pos0, with v}; ids: pos or NULL
static void op_kv_append(const molt_exec *ex, void *const *p, const ocase *c) {
    int     rows = c->i[0], KV = c->i[1], hd = c->i[2], cap = c->i[4], np = c->ids ? rows : 1;
    size_t  one = (size_t)KV * cap * hd;
    float **kc = xmalloc(sizeof(float *) * (size_t)(np + 1));
    float **vc = xmalloc(sizeof(float *) * (size_t)(np + 1));
    for (int r = 0; r < np; r++)
        kc[r] = F(2) + r * one, vc[r] = F(3) + r * one;
    k_kv_append(ex, kc, c->i[6] ? vc : NULL, F(0), c->i[6] ? F(1) : NULL, c->i[3], rows, KV, hd,
                cap, c->i[5], c->ids);
    free(kc), free(vc);
}

static void test_rope_kv(void) {
    op_stat  *s0 = stat_new("rope", 1e-6), *s1 = stat_new("kv_append", 0);
    const int RS[][3] = {{0, 1, 2}, {1, 1, 2}, {3, 2, 8}, {17, 4, 64}, {64, 6, 128}, {300, 8, 64}};
    const int KS[][3] = {{0, 1, 2},    {1, 1, 1},    {3, 2, 8},
                         {17, 4, 64}, {40, 8, 128}, {200, 2, 8}}; // 200: > CU_ROWS
    tested("rope"), tested("kv_append");
    for (int k = 0; k < NELEM(RS); k++)
        for (int v = 0; v < 6; v++) { // (pos0 + r % period, period = rows / 7, pos[]) × inverse
            int      rows = RS[k][0], nh = RS[k][1], hd = RS[k][2], ld = nh * hd + 5;
            int      mode = v % 3, period = mode == 1 ? rows / 7 + 1 : rows > 0 ? rows : 1;
            int      pos0 = mode == 2 ? 0 : 9;
            int32_t *pos = NULL;
            if (mode == 2) {
                pos = xmalloc(sizeof(int32_t) * (size_t)(rows + 1));
                for (int r = 0; r < rows; r++)
                    pos[r] = (int32_t)(t_uniform(0, 1) * (ROPE_MAXPOS - 1));
            }
            size_t half = (size_t)hd / 2;
            char   shape[64];
            ocase  c = {.i = {rows, nh, hd, ld, pos0, period, v / 3}, .ids = pos};
            add_buf(&c, frand_scaled((size_t)rows * ld, 3.0f), sizeof(float) * (size_t)rows * ld,
                    ACC);
            addf(&c, ROPE_MAXPOS * half, IN);
            addf(&c, ROPE_MAXPOS * half, IN);
            snprintf(shape, sizeof shape, "rows,nh,hd %dx%dx%d %s%s", rows, nh, hd,
                     mode == 0 ? "seq" : mode == 1 ? "period" : "pos[]", v / 3 ? " inv" : "");
            run_op(s0, op_rope, &c, shape);
            case_free(&c);
            free(pos);
        }
    for (int k = 0; k < NELEM(KS); k++)
        for (int v = 0; v < 4; v++) { // (one sequence, pos[]) × (k only, k and v)
            int      rows = KS[k][0], KV = KS[k][1], hd = KS[k][2], ld = 3 * KV * hd + 1;
            int      cap = rows + 12, rowsmode = v & 1, np = rowsmode ? rows : 1;
            int32_t *pos = NULL;
            if (rowsmode) {
                pos = xmalloc(sizeof(int32_t) * (size_t)(rows + 1));
                for (int r = 0; r < rows; r++)
                    pos[r] = (int32_t)(t_uniform(0, 1) * (float)(cap - 1));
            }
            size_t cache = (size_t)np * KV * cap * hd;
            char   shape[64];
            ocase  c = {.i = {rows, KV, hd, ld, cap, 7, v >> 1}, .ids = pos};
            addf(&c, (size_t)rows * ld, IN);
            addf(&c, (size_t)rows * ld, IN);
            addf(&c, cache, ACC);
            addf(&c, cache, ACC);
            snprintf(shape, sizeof shape, "rows,KV,hd %dx%dx%d %s%s", rows, KV, hd,
                     rowsmode ? "pos[]" : "seq", v >> 1 ? " k,v" : " k");
            run_op(s1, op_kv_append, &c, shape);
            case_free(&c);
            free(pos);
        }
}

// attention: prefill, decode rows, probabilities, training forward. The
// work buffers are sized for the CPU oracle (g_cpu's threads); the GPU
// does not use them.

// q, kc, vc | heads, work;  i = {T, pos, H, KV, hd, cap}
static void op_attn_prefill(const molt_exec *ex, void *const *p, const ocase *c) {
    k_attn_prefill(ex, F(3), F(0), c->i[0], c->i[1], c->i[2], c->i[3], c->i[4], F(1), F(2),
                   c->i[5], F(4));
}
// q, kc | A;  i = {T, H, KV, hd, cap}
static void op_attn_probs(const molt_exec *ex, void *const *p, const ocase *c) {
    k_attn_probs(ex, F(2), F(0), c->i[0], c->i[1], c->i[2], c->i[3], F(1), c->i[4]);
}
// q, kcs, vcs (n caches each) | heads, work;  i = {n, H, KV, hd, cap}; ids = pos
static void op_attn_decode_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    int     n = c->i[0], H = c->i[1], KV = c->i[2], hd = c->i[3], cap = c->i[4];
    size_t  one = (size_t)KV * cap * hd;
    float **kc = xmalloc(sizeof(float *) * (size_t)(n + 1));
    float **vc = xmalloc(sizeof(float *) * (size_t)(n + 1));
    for (int r = 0; r < n; r++)
        kc[r] = F(1) + r * one, vc[r] = F(2) + r * one;
    k_attn_decode_rows(ex, F(3), F(0), n, c->ids, H, KV, hd, kc, vc, cap, F(4));
    free(kc), free(vc);
}
// qkv | P, heads;  i = {B, T, H, KV, hd, ld, with heads}
static void op_attn_train_forward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_attn_train_forward(ex, F(1), c->i[6] ? F(2) : NULL, F(0), c->i[5], c->i[0], c->i[1],
                         c->i[2], c->i[3], c->i[4]);
}

// qkv, dheads | dqkv, work, P (computed by the CPU forward: a real softmax);
// i = {B, T, H, KV, hd}
static void op_attn_train_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_attn_train_backward(ex, F(2), F(1), F(0), F(4), c->i[0], c->i[1], c->i[2], c->i[3],
                          c->i[4], F(3));
}

static void test_attention(void) {
    op_stat  *s0 = stat_new("attn_prefill", 5e-5), *s1 = stat_new("attn_probs", 1e-5);
    op_stat  *s2 = stat_new("attn_decode_rows", 5e-5), *s3 = stat_new("attn_train_forward", 5e-5);
    const int PS[][5] = {{0, 0, 2, 1, 8},    {1, 0, 1, 1, 2},     {1, 37, 4, 2, 16},
                         {5, 0, 4, 4, 8},    {7, 3, 6, 2, 32},    {64, 100, 8, 2, 64},
                         {200, 0, 4, 1, 128}, {1, 2047, 32, 8, 64}, {33, 0, 9, 3, 40}};
    const int DS[][5] = {{0, 2, 1, 8, 4},     {1, 1, 1, 2, 5},       {3, 4, 2, 16, 40},
                         {8, 8, 2, 64, 300}, {5, 32, 8, 128, 1024}, {17, 6, 3, 32, 64},
                         {130, 4, 2, 16, 40}}; // 130 rows: two launches of CU_ROWS
    const int TS[][5] = {{0, 4, 2, 1, 8},   {1, 1, 1, 1, 2},   {2, 5, 4, 2, 8},
                         {3, 17, 6, 3, 16}, {2, 64, 8, 2, 64}, {1, 300, 4, 1, 32},
                         {2, 33, 4, 4, 16}};
    tested("attn_prefill"), tested("attn_probs"), tested("attn_decode_rows"),
        tested("attn_train_forward");
    for (int k = 0; k < NELEM(PS); k++) {
        int    T = PS[k][0], pos = PS[k][1], H = PS[k][2], KV = PS[k][3], hd = PS[k][4];
        int    cap = pos + T + 3, S = pos + T;
        size_t cache = (size_t)KV * cap * hd;
        char   shape[64];
        ocase  c = {.i = {T, pos, H, KV, hd, cap}};
        add_buf(&c, frand_scaled((size_t)T * H * hd, 2.0f), sizeof(float) * (size_t)T * H * hd,
                IN);
        add_buf(&c, frand_scaled(cache, 2.0f), sizeof(float) * cache, IN);
        addf(&c, cache, IN);
        addf(&c, (size_t)T * H * hd, OUT);
        addf(&c, k_attn_prefill_work(T, S > 0 ? S : 1, H, KV, g_cpu.nth) + 1, SCR);
        snprintf(shape, sizeof shape, "T,pos,H,KV,hd %dx%dx%dx%dx%d", T, pos, H, KV, hd);
        run_op(s0, op_attn_prefill, &c, shape);
        case_free(&c);
        if (pos)
            continue;
        ocase a = {.i = {T, H, KV, hd, cap}};
        add_buf(&a, frand_scaled((size_t)T * H * hd, 2.0f), sizeof(float) * (size_t)T * H * hd,
                IN);
        add_buf(&a, frand_scaled(cache, 2.0f), sizeof(float) * cache, IN);
        addf(&a, (size_t)H * T * T, OUT);
        snprintf(shape, sizeof shape, "T,H,KV,hd %dx%dx%dx%d", T, H, KV, hd);
        run_op(s1, op_attn_probs, &a, shape);
        case_free(&a);
    }
    for (int k = 0; k < NELEM(DS); k++) {
        int      n = DS[k][0], H = DS[k][1], KV = DS[k][2], hd = DS[k][3], cap = DS[k][4];
        size_t   caches = (size_t)n * KV * cap * hd;
        int32_t *pos = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
        for (int r = 0; r < n; r++)
            pos[r] = r == 0 ? cap - 1 : (int32_t)(t_uniform(0, 1) * (float)(cap - 1));
        char  shape[64];
        ocase c = {.i = {n, H, KV, hd, cap}, .ids = pos};
        add_buf(&c, frand_scaled((size_t)n * H * hd, 2.0f), sizeof(float) * (size_t)n * H * hd,
                IN);
        add_buf(&c, frand_scaled(caches, 2.0f), sizeof(float) * caches, IN);
        addf(&c, caches, IN);
        addf(&c, (size_t)n * H * hd, OUT);
        addf(&c, k_attn_decode_rows_work(H, KV, cap, g_cpu.nth) + 1, SCR);
        snprintf(shape, sizeof shape, "n,H,KV,hd,cap %dx%dx%dx%dx%d", n, H, KV, hd, cap);
        run_op(s2, op_attn_decode_rows, &c, shape);
        case_free(&c);
        free(pos);
    }
    for (int k = 0; k < NELEM(TS); k++)
        for (int v = 0; v < 2; v++) { // P only (ld (H+KV)·hd), P and heads
            int    B = TS[k][0], T = TS[k][1], H = TS[k][2], KV = TS[k][3], hd = TS[k][4];
            int    ld = (H + (v ? 2 : 1) * KV) * hd;
            size_t rows = (size_t)B * T;
            char   shape[64];
            ocase  c = {.i = {B, T, H, KV, hd, ld, v}};
            add_buf(&c, frand_scaled(rows * ld, 2.0f), sizeof(float) * rows * ld, IN);
            addf(&c, (size_t)B * H * T * T, OUT);
            addf(&c, rows * H * hd, v ? OUT : SCR);
            snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d%s", B, T, H, KV, hd,
                     v ? " +heads" : "");
            run_op(s3, op_attn_train_forward, &c, shape);
            case_free(&c);
        }
    op_stat *s4 = stat_new("attn_train_backward", 1e-4);
    tested("attn_train_backward");
    for (int k = 0; k < NELEM(TS); k++) {
        int    B = TS[k][0], T = TS[k][1], H = TS[k][2], KV = TS[k][3], hd = TS[k][4];
        int    W = (H + 2 * KV) * hd;
        size_t rows = (size_t)B * T, nP = (size_t)B * H * T * T;
        char   shape[64];
        ocase  c = {.i = {B, T, H, KV, hd}};
        float *qkv = frand_scaled(rows * W, 2.0f), *Pm = xmalloc(sizeof(float) * (nP + 1));
        float *hd_ = xmalloc(sizeof(float) * (rows * H * hd + 1));
        k_attn_train_forward(&g_cpu, Pm, hd_, qkv, W, B, T, H, KV, hd);
        free(hd_);
        add_buf(&c, qkv, sizeof(float) * rows * W, IN);
        addf(&c, rows * H * hd, IN);
        addf(&c, rows * W, OUT);
        addf(&c, k_attn_train_backward_work(B, T, H, KV, hd) + 1, SCR);
        add_buf(&c, Pm, sizeof(float) * nP, IN);
        snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d", B, T, H, KV, hd);
        run_op(s4, op_attn_train_backward, &c, shape);
        case_free(&c);
    }
}

// ----------------------------------------------------------------------------
// flash-style training attention: heads | lse, and dqkv from the CPU twin's
// heads and lse (a real softmax); the same shapes as the P-saving ops plus
// the 1B teacher's head (hd 64, GQA 4) at T 2048 and hd 128

// qkv | heads, lse;  i = {B, T, H, KV, hd, ld}
static void op_attn_flash_forward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_attn_flash_forward(ex, F(1), F(2), F(0), c->i[5], c->i[0], c->i[1], c->i[2], c->i[3],
                         c->i[4]);
}
// qkv, dheads, heads, lse | dqkv, work;  i = {B, T, H, KV, hd}
static void op_attn_flash_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    k_attn_flash_backward(ex, F(4), F(1), F(0), F(2), F(3), c->i[0], c->i[1], c->i[2], c->i[3],
                          c->i[4], F(5));
}

static void test_attn_flash(void) {
    op_stat  *sf = stat_new("attn_flash_forward", 5e-5), *sb = stat_new("attn_flash_backward", 1e-4);
    // bf16 exec (hd a multiple of 16: the tensor-core kernels): q, k, v, dO and
    // P, dS rounded to bf16 (2^-9 relative each), fp32 sums
    op_stat  *tf = stat_new("attn_flash_forward (bf16 exec)", 5e-2);
    op_stat  *tb = stat_new("attn_flash_backward (bf16 exec)", 8e-2);
    const int TS[][5] = {{0, 4, 2, 1, 8},   {1, 1, 1, 1, 2},    {2, 5, 4, 2, 8},
                         {3, 17, 6, 3, 16}, {2, 64, 8, 2, 64},  {1, 300, 4, 1, 32},
                         {2, 33, 4, 4, 16}, {1, 97, 2, 1, 100}, {1, 129, 2, 2, 128},
                         {1, 2048, 8, 2, 64}};
    tested("attn_flash_forward"), tested("attn_flash_backward");
    for (int k = 0; k < NELEM(TS); k++) {
        int    B = TS[k][0], T = TS[k][1], H = TS[k][2], KV = TS[k][3], hd = TS[k][4];
        int    W = (H + 2 * KV) * hd;
        size_t rows = (size_t)B * T, nh = rows * H * hd, nl = (size_t)B * H * T;
        char   shape[64];
        for (int v = 0; v < 2; v++) { // fused rows, padded rows
            ocase c = {.i = {B, T, H, KV, hd, W + 3 * v}};
            add_buf(&c, frand_scaled(rows * (W + 3 * v), 2.0f), sizeof(float) * rows * (W + 3 * v),
                    IN);
            addf(&c, nh, OUT);
            addf(&c, nl, OUT);
            snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d%s", B, T, H, KV, hd,
                     v ? " ld+3" : "");
            run_op(sf, op_attn_flash_forward, &c, shape);
            if (hd % 16 == 0) {
                g_gpu.flags |= MOLT_EXEC_BF16;
                run_op(tf, op_attn_flash_forward, &c, shape);
                g_gpu.flags &= ~MOLT_EXEC_BF16;
            }
            case_free(&c);
        }
        float *qkv = frand_scaled(rows * W, 2.0f), *hh = xmalloc(sizeof(float) * (nh + 1));
        float *lse = xmalloc(sizeof(float) * (nl + 1));
        k_attn_flash_forward(&g_cpu, hh, lse, qkv, W, B, T, H, KV, hd);
        ocase c = {.i = {B, T, H, KV, hd}};
        add_buf(&c, qkv, sizeof(float) * rows * W, IN);
        add_buf(&c, frand_scaled(nh, 2.0f), sizeof(float) * nh, IN);
        add_buf(&c, hh, sizeof(float) * nh, IN);
        add_buf(&c, lse, sizeof(float) * nl, IN);
        addf(&c, rows * W, OUT);
        addf(&c, k_attn_flash_backward_work(B, T, H, KV, hd) + 1, SCR);
        snprintf(shape, sizeof shape, "B,T,H,KV,hd %dx%dx%dx%dx%d", B, T, H, KV, hd);
        run_op(sb, op_attn_flash_backward, &c, shape);
        if (hd % 16 == 0) {
            g_gpu.flags |= MOLT_EXEC_BF16;
            run_op(tb, op_attn_flash_backward, &c, shape);
            g_gpu.flags &= ~MOLT_EXEC_BF16;
        }
        case_free(&c);
    }
}

// ----------------------------------------------------------------------------
// GateLoop (gateloop.h; issue 14). q, k, v are column views of one [T, ld]
// buffer x (ld = 2·H·N + H·P + 3: q at 0, k at H·N, v at 2·H·N). Regimes of
// the transition as test_backend_ops: 0 mild (|a| ≈ 1, small phases), 1 sharp
// (some decays flushed to exactly 0), 2 strong decay, 3 large phases (the
// cumulative phase wraps many times: the double prefix sums mod 2π).

static int gl_ldx(int H, int N, int P) { return 2 * H * N + H * P + 3; }

// x, la, th of T rows (T ≥ 1 buffers even for T = 0)
static void gl_add_inputs(ocase *c, int T, int H, int N, int P, int regime) {
    size_t rows = (size_t)(T > 0 ? T : 1), HJ = (size_t)H * (N / 2);
    float  lo = regime == 0 ? -0.1f : regime == 1 ? -1.5f : regime == 2 ? -8.0f : -0.3f;
    float  hi = regime == 2 ? -2.0f : 0.0f, ph = regime == 3 ? 40.0f : regime == 0 ? 0.3f : 3.0f;
    addf(c, rows * (size_t)gl_ldx(H, N, P), IN);
    float *la = frand(rows * HJ, lo, hi);
    for (size_t i = 5; regime == 1 && i < rows * HJ; i += 31)
        la[i] = -70.0f;
    add_buf(c, la, sizeof(float) * rows * HJ, IN);
    add_buf(c, frand(rows * HJ, -ph, ph), sizeof(float) * rows * HJ, IN);
}
#define GLQ(k) F(k)
#define GLK(k, H, N) (F(k) + (size_t)(H) * (N))
#define GLV(k, H, N) (F(k) + 2 * (size_t)(H) * (N))

// a (ACC is not needed: IN), bias | la, th;  i = {n, HJ, lda, has_bias}
static void op_gl_prep(const molt_exec *ex, void *const *p, const ocase *c) {
    gl_prep(ex, F(2), F(3), F(0) + 1, c->i[2], c->i[3] ? F(1) : NULL, c->i[0], c->i[1]);
}
// a, bias, dla, dth | da (ACC: only the 2·HJ columns are written);  i = {n, HJ, lda, v}
static void op_gl_prep_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[3];
    gl_prep_backward(ex, F(4) + 1, c->i[2], v & 1 ? NULL : F(2), v & 2 ? NULL : F(3), F(0) + 1,
                     v & 4 ? NULL : F(1), c->i[0], c->i[1]);
}
// x, la, th | y, states (ACC, one [H,N,P] block per row);  i = {n, H, N, P}
static void op_gl_step_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    int     n = c->i[0], H = c->i[1], N = c->i[2], P = c->i[3];
    float **st = xmalloc(sizeof(float *) * (size_t)(n + 1));
    for (int r = 0; r < n; r++)
        st[r] = F(4) + (size_t)r * H * N * P;
    gl_step_rows(ex, F(3), st, GLQ(0), GLK(0, H, N), GLV(0, H, N), gl_ldx(H, N, P), F(1), F(2), n,
                 H, N, P);
    free(st);
}
// x, la, th | y, state (ACC or unused), work (SCR), saved st (OUT);  i = {T, H, N, P, Q, st0}
static void op_gl_scan(const molt_exec *ex, void *const *p, const ocase *c) {
    int T = c->i[0], H = c->i[1], N = c->i[2], P = c->i[3], Q = c->i[4];
    gl_scan_chunked(ex, F(3), c->i[5] ? F(4) : NULL, GLQ(0), GLK(0, H, N), GLV(0, H, N),
                    gl_ldx(H, N, P), F(1), F(2), T, H, N, P, Q, F(5));
    // the saved part of work (gateloop.h): the states entering each chunk
    be_copy(ex, F(6), F(5), sizeof(float) * scan_nc(T, Q) * (size_t)H * N * P);
}
// x, la, th | y, state (ACC or unused), work (SCR);  i = {T, H, N, P, -, st0}
static void op_gl_assoc(const molt_exec *ex, void *const *p, const ocase *c) {
    int T = c->i[0], H = c->i[1], N = c->i[2], P = c->i[3];
    gl_scan_assoc(ex, F(3), c->i[5] ? F(4) : NULL, GLQ(0), GLK(0, H, N), GLV(0, H, N),
                  gl_ldx(H, N, P), F(1), F(2), T, H, N, P, F(5));
}
// x, la, th, dy | y (SCR), work (SCR), dx (ACC: dq, dk, dv at the x columns), dla, dth (OUT)
static void op_gl_scan_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int T = c->i[0], H = c->i[1], N = c->i[2], P = c->i[3], Q = c->i[4], ld = gl_ldx(H, N, P);
    gl_scan_chunked(ex, F(4), NULL, GLQ(0), GLK(0, H, N), GLV(0, H, N), ld, F(1), F(2), T, H, N,
                    P, Q, F(5));
    gl_scan_chunked_backward(ex, GLQ(6), GLK(6, H, N), GLV(6, H, N), ld, F(7), F(8), F(3), GLQ(0),
                             GLK(0, H, N), GLV(0, H, N), ld, F(1), F(2), T, H, N, P, Q, F(5));
}
// x, la, th | M, work (SCR);  i = {T, H, N, P}
static void op_gl_mat(const molt_exec *ex, void *const *p, const ocase *c) {
    int T = c->i[0], H = c->i[1], N = c->i[2], P = c->i[3];
    gl_materialize(ex, F(3), GLQ(0), GLK(0, H, N), gl_ldx(H, N, P), F(1), F(2), T, H, N, F(4));
}
// x, la, th, dM | dx (ACC: dq, dk at the x columns), dla, dth (OUT), work (SCR)
static void op_gl_mat_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    int T = c->i[0], H = c->i[1], N = c->i[2], P = c->i[3], ld = gl_ldx(H, N, P);
    gl_materialize_backward(ex, GLQ(4), GLK(4, H, N), ld, F(5), F(6), F(3), GLQ(0), GLK(0, H, N),
                            ld, F(1), F(2), T, H, N, F(7));
}

static void test_gateloop(void) {
    op_stat *s0 = stat_new("gl_prep", 2e-6), *s1 = stat_new("gl_prep_backward", 2e-6);
    op_stat *s2 = stat_new("gl_step_rows", 1e-5);
    op_stat *s3 = stat_new("gl_scan_chunked", 5e-5);
    // long recurrences (T up to 300, mild decays) in float on both sides, in the same order
    // but with FMA contraction on the GPU
    op_stat *s4 = stat_new("gl_scan_chunked_backward", 2e-4);
    op_stat *s5 = stat_new("gl_scan_assoc", 5e-5);
    op_stat *s6 = stat_new("gl_materialize", 2e-5), *s7 = stat_new("gl_materialize_backward", 1e-4);
    tested("gl_prep"), tested("gl_prep_backward"), tested("gl_step_rows");
    tested("gl_scan_chunked"), tested("gl_scan_chunked_backward"), tested("gl_scan_assoc");
    tested("gl_materialize"), tested("gl_materialize_backward");
    char shape[64];
    // prep: n, HJ (bias present / absent; backward: dla / dth / bias NULL)
    const int PS[][2] = {{0, 3}, {1, 1}, {7, 5}, {33, 64}, {300, 48}};
    for (int k = 0; k < NELEM(PS); k++) {
        int    n = PS[k][0], HJ = PS[k][1], lda = 2 * HJ + 3;
        size_t rows = (size_t)(n > 0 ? n : 1);
        for (int v = 0; v < 8; v++) {
            ocase c = {.i = {n, HJ, lda, v}};
            addf(&c, rows * lda + 1, IN);
            add_buf(&c, frand(2 * (size_t)HJ, -2, 2), sizeof(float) * 2 * HJ, IN);
            add_buf(&c, frand(rows * HJ, -1, 1), sizeof(float) * rows * HJ, IN);
            add_buf(&c, frand(rows * HJ, -1, 1), sizeof(float) * rows * HJ, IN);
            snprintf(shape, sizeof shape, "n,HJ %dx%d v%d", n, HJ, v);
            if (v < 2) {
                ocase f = {.i = {n, HJ, lda, v == 0}};
                add_buf(&f, c.b[0].h, c.b[0].bytes, IN);
                add_buf(&f, c.b[1].h, c.b[1].bytes, IN);
                addf(&f, (size_t)n * HJ, OUT);
                addf(&f, (size_t)n * HJ, OUT);
                run_op(s0, op_gl_prep, &f, shape);
                free(f.b[2].h), free(f.b[3].h);
            }
            addf(&c, rows * lda + 1, ACC);
            run_op(s1, op_gl_prep_backward, &c, shape);
            case_free(&c);
        }
    }
    // step over rows: n, H, N, P (every regime)
    const int SR[][4] = {{0, 2, 4, 3}, {1, 1, 2, 1}, {3, 2, 4, 5}, {8, 4, 16, 16}, {70, 3, 8, 33}};
    for (int k = 0; k < NELEM(SR); k++)
        for (int regime = 0; regime < 4; regime++) {
            int    n = SR[k][0], H = SR[k][1], N = SR[k][2], P = SR[k][3];
            size_t rows = (size_t)(n > 0 ? n : 1);
            ocase  c = {.i = {n, H, N, P}};
            gl_add_inputs(&c, n, H, N, P, regime);
            addf(&c, (size_t)n * H * P, OUT);
            addf(&c, rows * H * N * P, ACC);
            snprintf(shape, sizeof shape, "n,H,N,P %dx%dx%dx%d r%d", n, H, N, P, regime);
            run_op(s2, op_gl_step_rows, &c, shape);
            case_free(&c);
        }
    // scans: T, H, N, P, Q (T = 1, odd T, Q dividing T or not, Q > T, Q = 1)
    const int SC[][5] = {{0, 2, 4, 3, 4},     {1, 1, 2, 1, 1},    {1, 2, 4, 3, 8},
                         {5, 2, 4, 3, 2},     {17, 3, 6, 5, 4},   {33, 2, 8, 7, 7},
                         {64, 4, 16, 16, 16}, {100, 2, 8, 8, 1},  {130, 4, 8, 16, 64},
                         {257, 2, 16, 16, 64}, {300, 3, 8, 12, 256}, {300, 2, 16, 32, 300}};
    for (int k = 0; k < NELEM(SC); k++) {
        int    T = SC[k][0], H = SC[k][1], N = SC[k][2], P = SC[k][3], Q = SC[k][4];
        size_t rows = (size_t)(T > 0 ? T : 1), HJ = (size_t)H * (N / 2), NP = (size_t)N * P;
        size_t ld = (size_t)gl_ldx(H, N, P);
        int    regime = k % 4;
        for (int st0 = 0; st0 < 2; st0++) {
            ocase c = {.i = {T, H, N, P, Q, st0}};
            gl_add_inputs(&c, T, H, N, P, (regime + st0) % 4);
            addf(&c, (size_t)T * H * P, OUT);
            addf(&c, (size_t)H * NP, st0 ? ACC : SCR);
            addf(&c, gl_chunked_work(T, H, N, P, Q) + 1, SCR);
            addf(&c, scan_nc(T, Q) * H * NP + 1, ACC); // every float but the last is overwritten
            snprintf(shape, sizeof shape, "T,H,N,P,Q %dx%dx%dx%dx%d r%d%s", T, H, N, P, Q,
                     (regime + st0) % 4, st0 ? " +state" : "");
            run_op(s3, op_gl_scan, &c, shape);
            c.b[5].kind = SCR; // the associative scan: same inputs, its own work
            free(c.b[5].h);
            c.b[5].h = xmalloc(sizeof(float) * (gl_assoc_work(T, H, N, P) + 1));
            c.b[5].bytes = sizeof(float) * (gl_assoc_work(T, H, N, P) + 1);
            c.b[6].kind = SCR;
            run_op(s5, op_gl_assoc, &c, shape);
            case_free(&c);
        }
        ocase b = {.i = {T, H, N, P, Q}};
        gl_add_inputs(&b, T, H, N, P, regime);
        addf(&b, rows * H * P, IN);
        addf(&b, rows * H * P, SCR);
        addf(&b, gl_chunked_backward_work(T, H, N, P, Q) + 1, SCR);
        addf(&b, rows * ld, ACC);
        addf(&b, (size_t)T * HJ, OUT);
        addf(&b, (size_t)T * HJ, OUT);
        snprintf(shape, sizeof shape, "T,H,N,P,Q %dx%dx%dx%dx%d r%d", T, H, N, P, Q, regime);
        run_op(s4, op_gl_scan_backward, &b, shape);
        case_free(&b);
    }
    // materialized matrix: T, H, N, P
    const int MS[][4] = {{0, 2, 4, 3}, {1, 1, 2, 1}, {5, 2, 4, 3}, {33, 3, 8, 2}, {130, 2, 16, 2},
                         {300, 2, 8, 1}};
    for (int k = 0; k < NELEM(MS); k++)
        for (int regime = 0; regime < 4; regime++) {
            int    T = MS[k][0], H = MS[k][1], N = MS[k][2], P = MS[k][3];
            size_t rows = (size_t)(T > 0 ? T : 1), HJ = (size_t)H * (N / 2);
            size_t nM = (size_t)H * T * T, ld = (size_t)gl_ldx(H, N, P);
            ocase  c = {.i = {T, H, N, P}};
            gl_add_inputs(&c, T, H, N, P, regime);
            addf(&c, nM, OUT);
            addf(&c, gl_materialize_work(T, H, N) + 1, SCR);
            snprintf(shape, sizeof shape, "T,H,N %dx%dx%d r%d", T, H, N, regime);
            run_op(s6, op_gl_mat, &c, shape);
            c.b[3].kind = IN; // dM
            t_fill_uniform(c.b[3].h, nM, -1, 1);
            free(c.b[4].h);
            c.b[4] = (buf){frand(rows * ld, -1, 1), sizeof(float) * rows * ld, ACC};
            addf(&c, (size_t)T * HJ, OUT);
            addf(&c, (size_t)T * HJ, OUT);
            addf(&c, gl_materialize_backward_work(T, H, N) + 1, SCR);
            run_op(s7, op_gl_mat_backward, &c, shape);
            case_free(&c);
        }
}

// ----------------------------------------------------------------------------
// Mamba-3 (mamba3.h; issue 14). Every case starts with zx [n, ldz] (ldz one
// wider than a row) and the packed parameters W (m3w_take: NULL where the
// variant or the shape lacks them), then the op's own buffers; i = {n, T, H,
// P, N, G, R, S, mimo | norm << 1 | variant << 2}; f2 ≠ 0: angles without states.
// Shapes: T = 1, odd T, several sequences, SISO / MIMO (R up to 4), G > 1,
// S < N/2 and S = N/2 (every dim rotated), the out norm, optional parameters absent.

typedef struct m3shape {
    int n, T, H, P, N, G, R, S, mimo, norm;
} m3shape;

static const m3shape M3S[] = {
    {0, 1, 2, 3, 4, 1, 1, 1, 0, 0},     {1, 1, 1, 1, 2, 1, 1, 1, 0, 0},
    {3, 3, 2, 3, 4, 1, 1, 1, 0, 1},     {4, 1, 2, 2, 6, 2, 1, 3, 0, 0},
    {10, 5, 2, 5, 6, 2, 2, 2, 1, 0},    {37, 37, 3, 4, 8, 1, 3, 2, 1, 1},
    {300, 100, 4, 16, 16, 2, 1, 8, 0, 1}, {96, 48, 2, 8, 12, 1, 4, 6, 1, 0},
    {64, 1, 3, 4, 8, 1, 2, 2, 1, 1},    {130, 65, 8, 16, 32, 2, 1, 16, 0, 0},
    {70, 70, 4, 8, 16, 2, 2, 8, 1, 1}};

static m3_rows_cfg m3cfg(const ocase *c) {
    return (m3_rows_cfg){c->i[2], c->i[3], c->i[4], c->i[5], c->i[6], c->i[7],
                         c->i[8] & 1, (c->i[8] >> 1) & 1, 0.05f, 1e-5f};
}
static int m3_variant(const ocase *c) { return c->i[8] >> 2; } // 1: optional parameters absent
static int m3_ldz(const m3_rows_cfg *mc) { return m3_in_rows(mc) + 1; }

// packed parameters: dt_bias H | B_norm N | C_norm N | B_bias, C_bias H·R·N |
// mimo_x, mimo_z, mimo_o H·R·P | D H | norm Di
static size_t m3w_floats(const m3_rows_cfg *mc) {
    size_t H = (size_t)mc->H, HRN = H * mc->R * mc->N, HRP = H * mc->R * mc->P;
    return 2 * H + 2 * (size_t)mc->N + 2 * HRN + 3 * HRP + H * mc->P;
}
static m3_rows_w m3w_take(const float *W, const m3_rows_cfg *mc, int variant) {
    size_t H = (size_t)mc->H, HRN = H * mc->R * mc->N, HRP = H * mc->R * mc->P;
    int    opt = variant == 0, mimo = mc->mimo && mc->R > 1;
    const float *dtb = W, *Bn = dtb + H, *Cn = Bn + mc->N, *Bb = Cn + mc->N, *Cb = Bb + HRN;
    const float *mx = Cb + HRN, *mz = mx + HRP, *mo = mz + HRP, *D = mo + HRP, *nw = D + H;
    return (m3_rows_w){opt ? dtb : NULL,  opt ? Bn : NULL,   opt ? Cn : NULL, opt ? Bb : NULL,
                       opt ? Cb : NULL,   mimo ? mx : NULL,  mimo ? mz : NULL,
                       mimo ? mo : NULL,  opt ? D : NULL,    mc->norm ? nw : NULL};
}
#define M3W(c, mc) m3w_take(F(1), &(mc), m3_variant(c))

// zx (dd_A both signs, some floored) and W; the case's i[] set from the shape
static void m3_case(ocase *c, const m3shape *s, int variant, m3_rows_cfg *mc) {
    *c = (ocase){.i = {s->n, s->T, s->H, s->P, s->N, s->G, s->R, s->S}};
    c->i[8] = s->mimo | s->norm << 1 | variant << 2;
    *mc = m3cfg(c);
    size_t rows = (size_t)(s->n > 0 ? s->n : 1), ldz = (size_t)m3_ldz(mc);
    float *zx = frand(rows * ldz, -1.5f, 1.5f);
    for (size_t r = 0; r < rows; r++)
        for (int h = 0; h < s->H; h++)
            zx[r * ldz + m3_col_A(mc) + h] = (r + h) % 7 == 3 ? -30.0f : t_uniform(-2, 2);
    add_buf(c, zx, sizeof(float) * rows * ldz, IN);
    float *W = frand(m3w_floats(mc), -1.0f, 1.0f);
    size_t H = (size_t)s->H, HRN = H * s->R * s->N, HRP = H * s->R * s->P;
    t_fill_uniform(W, H, -2.0f, 0.5f);                                 // dt_bias
    t_fill_uniform(W + H, 2 * (size_t)s->N, 0.5f, 1.5f);              // B/C norm weights
    t_fill_uniform(W + 2 * H + 2 * (size_t)s->N + 2 * HRN + 3 * HRP, H * s->P, 0.5f, 1.5f);
    add_buf(c, W, sizeof(float) * m3w_floats(mc), IN);
}
static float *m3_f(size_t n, float lo, float hi) { return frand(n ? n : 1, lo, hi); }
static void m3_in(ocase *c, size_t n, float lo, float hi) {
    add_buf(c, m3_f(n, lo, hi), sizeof(float) * (n ? n : 1), IN);
}
static void m3_out(ocase *c, size_t n, int kind) { addf(c, n, kind); } // n = 0: an empty output
// Δ, dA = −Δ·U(0.05, 3), λ of n rows, as three IN buffers
static void m3_dlt_in(ocase *c, size_t nh) {
    float *dlt = m3_f(nh, 0.01f, 0.8f), *dA = m3_f(nh, 0, 1);
    for (size_t i = 0; i < nh; i++)
        dA[i] = -dlt[i] * t_uniform(0.05f, 3.0f);
    add_buf(c, dA, sizeof(float) * (nh ? nh : 1), IN);
    add_buf(c, dlt, sizeof(float) * (nh ? nh : 1), IN);
    m3_in(c, nh, 0.0f, 1.0f);
}

// zx, W, | phi, states (ACC);  with i[9]... state absent when c->f2 != 0
static void op_m3_angles(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    int         n = c->i[0], T = c->i[1], nseq = n / T;
    size_t      ns = m3_state_floats(&mc);
    float     **sp = xmalloc(sizeof(float *) * (size_t)(nseq + 1));
    for (int i = 0; i < nseq; i++)
        sp[i] = F(3) + (size_t)i * ns;
    m3_rows_w w = M3W(c, mc);
    m3_angles(ex, F(2), c->f2 != 0 ? NULL : sp, F(0), m3_ldz(&mc), w.dt_bias, n, T, &mc);
    free(sp);
}
// zx, W, dphi (ACC: ∂φ in, ψ out), dzx (ACC)
static void op_m3_angles_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_angles_backward(ex, F(3), F(2), F(0), m3_ldz(&mc), w.dt_bias, c->i[0], c->i[1], &mc);
}
// zx, W, phi | q, k, dA, dlt, lam, rstd
static void op_m3_prep(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_prep(ex, F(3), F(4), F(5), F(6), F(7), F(8), F(0), m3_ldz(&mc), F(2), &w, c->i[0], &mc);
}
// zx, W, phi, dq, dk, ddA, dgam, dbet, q, k, rstd | dzx (ACC), dphi, dBn, dCn, dBb, dCb
static void op_m3_prep_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_prep_backward(ex, F(11), F(12), F(13), F(14), F(15), F(16), F(3), F(4), F(5), F(6), F(7),
                     F(8), F(9), F(10), F(0), m3_ldz(&mc), F(2), &w, c->i[0], &mc);
}
// zx, W, dA, dlt, lam | X, dAx
static void op_m3_mix(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_mix(ex, F(5), F(6), F(0), m3_ldz(&mc), F(2), F(3), F(4), &w, c->i[0], c->i[1], &mc);
}
// zx, W, dA (unused), dlt, lam, q, k | ypre (ACC: holds ys; corrected in place)
static void op_m3_corr(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_corr(ex, F(7), F(7), F(5), F(6), F(0), m3_ldz(&mc), F(3), F(4), &w, c->i[0], c->i[1], &mc);
}
// zx, W, dA (unused), dlt, lam, q, k, dX, ddAx, dyp | dzx, dq, dk (ACC), ddA, dgam, dbet,
// dmx, hsD (OUT)
static void op_m3_mix_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_mix_backward(ex, F(10), F(11), F(12), F(13), F(14), F(15), w.mimo_x ? F(16) : NULL,
                    F(17), F(7), F(8), F(9), F(5), F(6), F(0), m3_ldz(&mc), F(3), F(4), &w,
                    c->i[0], c->i[1], &mc);
}
// zx, W, ypre | g, rstd (OUT with the out norm)
static void op_m3_gate(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_gate(ex, F(3), mc.norm ? F(4) : NULL, F(2), F(0), m3_ldz(&mc), &w, c->i[0], &mc);
}
// zx, W, ypre, rstd, dg | dypre, dzx (ACC), dmz, dmo, dnw
static void op_m3_gate_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_gate_backward(ex, F(5), F(6), w.mimo_z ? F(7) : NULL, F(8), mc.norm ? F(9) : NULL, F(4),
                     F(2), F(0), m3_ldz(&mc), F(3), &w, c->i[0], &mc);
}
// zx, W, dA, dlt, lam | state (ACC)
static void op_m3_fold(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_fold(ex, F(5), F(3), F(4), &w, &mc);
}
// zx, W, dA, dlt, lam, q, k | ypre, states (ACC)
static void op_m3_step_rows(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    int         n = c->i[0];
    size_t      ns = m3_state_floats(&mc);
    float     **sp = xmalloc(sizeof(float *) * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        sp[i] = F(8) + (size_t)i * ns;
    m3_step_rows(ex, F(7), sp, F(5), F(6), F(0), m3_ldz(&mc), F(2), F(3), F(4), &w, n, &mc);
    free(sp);
}
// zx, W, dA, dlt, lam, q, k | M, work (SCR)  (one sequence: T = n)
static void op_m3_mat(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_materialize(ex, F(7), F(5), F(6), F(2), F(3), F(4), w.D, c->i[0], &mc, F(8));
}
// zx, W, dA, dlt, lam, q, k, dM | dq, dk, ddA, dgam, dbet (OUT), dD (ACC), work (SCR)
static void op_m3_mat_backward(const molt_exec *ex, void *const *p, const ocase *c) {
    m3_rows_cfg mc = m3cfg(c);
    m3_rows_w   w = M3W(c, mc);
    m3_materialize_backward(ex, F(8), F(9), F(10), F(11), F(12), F(13), F(7), F(5), F(6), F(2),
                            F(3), F(4), w.D, c->i[0], &mc, F(14));
}

static void test_mamba3(void) {
    op_stat *sa = stat_new("m3_angles", 2e-5), *sab = stat_new("m3_angles_backward", 2e-5);
    op_stat *sp = stat_new("m3_prep", 5e-6), *spb = stat_new("m3_prep_backward", 2e-5);
    op_stat *sm = stat_new("m3_mix", 2e-6), *sc = stat_new("m3_corr", 1e-5);
    op_stat *smb = stat_new("m3_mix_backward", 2e-5);
    op_stat *sg = stat_new("m3_gate", 5e-6), *sgb = stat_new("m3_gate_backward", 2e-5);
    op_stat *sf = stat_new("m3_fold", 1e-5), *ss = stat_new("m3_step_rows", 1e-5);
    op_stat *sx = stat_new("m3_materialize", 1e-5);
    op_stat *sxb = stat_new("m3_materialize_backward", 1e-4);
    const char *ops[] = {"m3_angles", "m3_angles_backward", "m3_prep", "m3_prep_backward",
                         "m3_mix",    "m3_corr",            "m3_mix_backward", "m3_gate",
                         "m3_gate_backward", "m3_fold",     "m3_step_rows", "m3_materialize",
                         "m3_materialize_backward"};
    for (int i = 0; i < NELEM(ops); i++)
        tested(ops[i]);
    for (int si = 0; si < NELEM(M3S); si++)
        for (int v = 0; v < 2; v++) {
            const m3shape *s = &M3S[si];
            m3_rows_cfg    mc;
            ocase          c;
            char           shape[64];
            size_t n = (size_t)s->n, H = (size_t)s->H, nq = n * s->R * H * s->N;
            size_t np = n * s->R * H * s->P, nh = n * H, nphi = n * H * s->S;
            size_t ns = 0, nseq = (size_t)(s->n / s->T), ldz, Di = H * s->P;
            snprintf(shape, sizeof shape, "n%d T%d H%d P%d N%d G%d R%d S%d%s%s%s", s->n, s->T,
                     s->H, s->P, s->N, s->G, s->R, s->S, s->mimo ? " mimo" : "",
                     s->norm ? " norm" : "", v ? " bare" : "");
            // angles, with states and without
            for (int nost = 0; nost < 2; nost++) {
                m3_case(&c, s, v, &mc);
                ns = m3_state_floats(&mc);
                c.f2 = (float)nost;
                m3_out(&c, nphi, OUT);
                m3_out(&c, nseq * ns, ACC);
                run_op(sa, op_m3_angles, &c, shape);
                case_free(&c);
            }
            m3_case(&c, s, v, &mc);
            ldz = (size_t)m3_ldz(&mc);
            m3_out(&c, nphi, ACC);
            m3_out(&c, n * ldz, ACC);
            run_op(sab, op_m3_angles_backward, &c, shape);
            case_free(&c);
            // prep, and its backward from the CPU prep's q, k, rstd of the same inputs
            m3_case(&c, s, v, &mc);
            m3_in(&c, nphi, -7.0f, 7.0f);
            m3_out(&c, nq, OUT), m3_out(&c, nq, OUT);
            m3_out(&c, nh, OUT), m3_out(&c, nh, OUT), m3_out(&c, nh, OUT);
            m3_out(&c, n * 2 * s->R * s->G, OUT);
            run_op(sp, op_m3_prep, &c, shape);
            {
                ocase b = c;
                float *q = xmalloc(sizeof(float) * (nq + 1));
                float *k = xmalloc(sizeof(float) * (nq + 1));
                float *t1 = xmalloc(sizeof(float) * (nh + 1));
                float *t2 = xmalloc(sizeof(float) * (nh + 1));
                float *t3 = xmalloc(sizeof(float) * (nh + 1));
                float *rs = xmalloc(sizeof(float) * (n * 2 * s->R * s->G + 1));
                m3_rows_w w = m3w_take(c.b[1].h, &mc, v);
                if (n)
                    m3_prep(&g_cpu, q, k, t1, t2, t3, rs, c.b[0].h, (int)ldz, c.b[2].h, &w, s->n,
                            &mc);
                free(t1), free(t2), free(t3);
                for (int j = 3; j < 9; j++)
                    free(b.b[j].h);
                b.nb = 3;
                m3_in(&b, nq, -1, 1), m3_in(&b, nq, -1, 1); // dq, dk
                m3_in(&b, nh, -1, 1), m3_in(&b, nh, -1, 1), m3_in(&b, nh, -1, 1);
                add_buf(&b, q, sizeof(float) * (nq ? nq : 1), IN);
                add_buf(&b, k, sizeof(float) * (nq ? nq : 1), IN);
                add_buf(&b, rs, sizeof(float) * (n * 2 * s->R * s->G + 1), IN);
                m3_out(&b, n * ldz, ACC);
                m3_out(&b, nphi, OUT);
                m3_out(&b, n * s->N, OUT), m3_out(&b, n * s->N, OUT);
                m3_out(&b, n * H * s->R * s->N, OUT), m3_out(&b, n * H * s->R * s->N, OUT);
                run_op(spb, op_m3_prep_backward, &b, shape);
                case_free(&b);
            }
            // mix, corr (in place), mix backward
            m3_case(&c, s, v, &mc);
            m3_dlt_in(&c, nh);
            m3_out(&c, np, OUT), m3_out(&c, n * s->R * H, OUT);
            run_op(sm, op_m3_mix, &c, shape);
            case_free(&c);
            m3_case(&c, s, v, &mc);
            m3_dlt_in(&c, nh);
            m3_in(&c, nq, -1, 1), m3_in(&c, nq, -1, 1);
            m3_out(&c, np, ACC);
            run_op(sc, op_m3_corr, &c, shape);
            c.b[7].kind = IN; // dX
            m3_in(&c, n * s->R * H, -1, 1), m3_in(&c, np, -1, 1); // ddAx, dyp
            m3_out(&c, n * ldz, ACC), m3_out(&c, nq, ACC), m3_out(&c, nq, ACC);
            m3_out(&c, nh, OUT), m3_out(&c, nh, OUT), m3_out(&c, nh, OUT);
            m3_out(&c, n * H * s->R * s->P, s->mimo && s->R > 1 ? OUT : SCR);
            m3_out(&c, nh, OUT);
            run_op(smb, op_m3_mix_backward, &c, shape);
            case_free(&c);
            // gate, gate backward (rstd as the CPU gate saved it)
            m3_case(&c, s, v, &mc);
            m3_in(&c, np, -1, 1);
            m3_out(&c, n * Di, OUT), m3_out(&c, n * s->R * H, s->norm ? OUT : SCR);
            run_op(sg, op_m3_gate, &c, shape);
            {
                float    *g = xmalloc(sizeof(float) * (n * Di + 1));
                float    *rs = xmalloc(sizeof(float) * (n * s->R * H + 1));
                m3_rows_w w = m3w_take(c.b[1].h, &mc, v);
                memset(rs, 0, sizeof(float) * (n * s->R * H + 1));
                if (n)
                    m3_gate(&g_cpu, g, rs, c.b[2].h, c.b[0].h, (int)ldz, &w, s->n, &mc);
                free(g), free(c.b[3].h), free(c.b[4].h);
                c.nb = 3;
                add_buf(&c, rs, sizeof(float) * (n * s->R * H + 1), IN);
                m3_in(&c, n * Di, -1, 1);
                m3_out(&c, np, OUT), m3_out(&c, n * ldz, ACC);
                m3_out(&c, n * H * s->R * s->P, s->mimo && s->R > 1 ? OUT : SCR);
                m3_out(&c, n * H * s->R * s->P, OUT);
                m3_out(&c, n * Di, s->norm ? OUT : SCR);
                run_op(sgb, op_m3_gate_backward, &c, shape);
                case_free(&c);
            }
            // fold (one state block, the first row's Δ, λ), decode step over n slots
            m3_case(&c, s, v, &mc);
            ns = m3_state_floats(&mc);
            m3_dlt_in(&c, nh ? nh : H);
            m3_out(&c, ns, ACC);
            run_op(sf, op_m3_fold, &c, shape);
            case_free(&c);
            m3_case(&c, s, v, &mc);
            m3_dlt_in(&c, nh);
            m3_in(&c, nq, -1, 1), m3_in(&c, nq, -1, 1);
            m3_out(&c, np, OUT), m3_out(&c, n * ns, ACC);
            run_op(ss, op_m3_step_rows, &c, shape);
            case_free(&c);
            // materialized matrix of one sequence T = n (and its backward)
            if (s->n > 300)
                continue;
            size_t nM = H * n * n;
            m3_case(&c, s, v, &mc);
            m3_dlt_in(&c, nh);
            m3_in(&c, nq, -1, 1), m3_in(&c, nq, -1, 1);
            m3_out(&c, nM, OUT);
            m3_out(&c, m3_materialize_work(s->n, &mc) + 1, SCR);
            run_op(sx, op_m3_mat, &c, shape);
            c.b[7].kind = IN; // dM
            t_fill_uniform(c.b[7].h, nM, -1, 1);
            free(c.b[8].h);
            c.nb = 8;
            m3_out(&c, nq, OUT), m3_out(&c, nq, OUT);
            m3_out(&c, nh, OUT), m3_out(&c, nh, OUT), m3_out(&c, nh, OUT);
            m3_out(&c, H, v == 0 ? ACC : SCR);
            m3_out(&c, m3_materialize_backward_work(s->n, &mc) + 1, SCR);
            run_op(sxb, op_m3_mat_backward, &c, shape);
            case_free(&c);
        }
}

// ----------------------------------------------------------------------------
// memory, table, sticky error

static void test_memory(void) {
    const size_t n = 100003;
    float       *h = frand(n, -1, 1), *back = xmalloc(sizeof(float) * n);
    float       *a = be_allocf(g_gpu.be, n), *b = be_allocf(g_gpu.be, n);
    void        *z = be_alloc(g_gpu.be, 0);
    CHECK(a && b && z, "be_alloc");
    CHECK(((uintptr_t)a % 64) == 0 && ((uintptr_t)b % 64) == 0, "64-byte alignment");
    CHECK(!g_gpu.be->mem.host_visible, "device memory is not host-visible");
    if (a && b) {
        be_upload(&g_gpu, a, h, sizeof(float) * n);
        be_copy(&g_gpu, b, a, sizeof(float) * n);
        be_zero(&g_gpu, b + 1000, sizeof(float) * 2000);
        be_sync(&g_gpu);
        be_download(&g_gpu, back, b, sizeof(float) * n);
        int ok = 1;
        for (size_t i = 0; i < n; i++)
            ok &= (i >= 1000 && i < 3000) ? back[i] == 0.0f : back[i] == h[i];
        CHECK(ok, "upload → copy → zero → download round trip");
        be_download(&g_gpu, back, a, sizeof(float) * n);
        CHECK(memcmp(back, h, sizeof(float) * n) == 0, "upload → download");
    }
    be_free(g_gpu.be, a), be_free(g_gpu.be, b), be_free(g_gpu.be, z);
    be_free(g_gpu.be, NULL);
    CHECK(be_alloc(g_gpu.be, (size_t)1 << 62) == NULL, "an impossible allocation returns NULL");
    check_sticky("memory");
    free(h), free(back);
}

static int was_tested(const char *op) {
    for (int i = 0; i < g_ntested; i++)
        if (strcmp(g_tested[i], op) == 0)
            return 1;
    return 0;
}

static void test_table(void) {
    char      missing[1024];
    int       nmiss = molt_cuda_missing_ops(missing, sizeof missing);
    molt_exec ex;
    int       n16 = 0; // the bf16 recurrent state's ops may be missing (issue 15)
#define MISS16_(op) n16 += !molt_backend_cuda.op;
    MOLT_BACKEND_STATE_BF16_OPS(MISS16_)
#undef MISS16_
    CHECK(molt_exec_init(&ex, &molt_backend_cuda, 1) == (nmiss - n16 == 0),
          "molt_exec_init must refuse the CUDA table exactly when an op other than the bf16 "
          "state's is missing (%d, %d of them bf16 state)", nmiss, n16);
    if (nmiss)
        printf("not yet on the GPU (%d): %s\n", nmiss, missing);
    // only optional ops may be missing (kernels.h): the rest of molt runs on the GPU
    char req[1024];
    CHECK(molt_cuda_missing_required_ops(req, sizeof req) == 0, "required ops missing: %s", req);
    // every op the CUDA table has is tested here
#define COVERED(op) CHECK(!molt_backend_cuda.op || was_tested(#op), "CUDA op %s has no test", #op);
    MOLT_BACKEND_OPS(COVERED)
#undef COVERED
    // the sticky error: an unsupported weight type is recorded, not crashed on
    molt_cuda_clear_error();
    float *y = be_allocf(g_gpu.be, 4), *x = be_allocf(g_gpu.be, 4), *w = be_allocf(g_gpu.be, 4);
    molt_w bad = {MOLT_DTYPE_COUNT, w};
    k_matmul_w(&g_gpu, y, x, bad, NULL, 2, 2, 2, 0);
    be_sync(&g_gpu);
    const char *e = molt_cuda_last_error();
    CHECK(e && strstr(e, "dtype"), "a bad dtype sets the sticky error (got %s)", e ? e : "none");
    molt_cuda_clear_error();
    CHECK(molt_cuda_last_error() == NULL, "molt_cuda_clear_error");
    be_free(g_gpu.be, y), be_free(g_gpu.be, x), be_free(g_gpu.be, w);
}

// ----------------------------------------------------------------------------
// --bench: timing lines (median of repeated runs, synchronised; not a test)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static float *dev_rand(size_t n, float lo, float hi) {
    float *h = frand(n, lo, hi), *d = be_allocf(g_gpu.be, n);
    if (!d) {
        fprintf(stderr, "bench: out of device memory\n");
        exit(2);
    }
    be_upload(&g_gpu, d, h, sizeof(float) * n);
    free(h);
    return d;
}

typedef void (*bench_fn)(void *arg);
// median seconds of one call over reps (after 3 warm-up calls)
static double time_med(bench_fn fn, void *arg, int reps) {
    double t[64];
    for (int i = 0; i < 3; i++)
        fn(arg);
    be_sync(&g_gpu);
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        fn(arg);
        be_sync(&g_gpu);
        t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    return t[reps / 2];
}

typedef struct bargs {
    float *y, *x, *W, *work, *a, *b, *c, *d;
    molt_w Ww;
    int    i[8];
} bargs;

static void b_copy(void *p) {
    bargs *a = p;
    be_copy(&g_gpu, a->y, a->x, sizeof(float) * (size_t)a->i[0]);
}
static void b_matmul(void *p) {
    bargs *a = p;
    k_matmul(&g_gpu, a->y, a->x, a->W, NULL, a->i[0], a->i[1], a->i[2], 0);
}
static void b_matmul_w(void *p) {
    bargs *a = p;
    k_matmul_w(&g_gpu, a->y, a->x, a->Ww, NULL, a->i[0], a->i[1], a->i[2], 0);
}
static void b_scan(void *p) {
    bargs *a = p;
    ssd_scan_chunked(&g_gpu, a->y, NULL, a->x, a->a, a->b, a->c, a->i[0], a->i[1], a->i[2],
                     a->i[3], a->i[4], a->i[5], a->work);
}
static void b_scan_bwd(void *p) {
    bargs *a = p;
    size_t nb = (size_t)a->i[6]; // dA, B, C buffers hold the gradients in their second halves
    ssd_scan_chunked_backward(&g_gpu, a->d, a->a + (size_t)a->i[0] * a->i[1], a->b + nb,
                              a->c + nb, a->y, a->x, a->a, a->b, a->c, a->i[0], a->i[1], a->i[2],
                              a->i[3], a->i[4], a->i[5], a->work);
}

static void bench_dense(void) {
    double t;
    // memory ceiling: a 1 GiB device-to-device copy (bytes read + written)
    size_t n = (size_t)1 << 28;
    bargs  a = {.y = be_allocf(g_gpu.be, n), .x = dev_rand(n, -1, 1), .i = {(int)n}};
    t = time_med(b_copy, &a, 10);
    double bw = 2.0 * 4.0 * (double)n / t;
    printf("copy 1 GiB d2d: %.3f ms, %.0f GB/s (read + write)\n", t * 1e3, bw * 1e-9);
    be_free(g_gpu.be, a.y), be_free(g_gpu.be, a.x);

    // matmul T=2048, in=8192, out=2048: fp32 and bf16 weights
    int    T = 2048, in = 8192, out = 2048;
    double fl = 2.0 * T * (double)in * out;
    bargs  m = {.y = be_allocf(g_gpu.be, (size_t)T * out), .x = dev_rand((size_t)T * in, -1, 1),
                .W = dev_rand((size_t)out * in, -1, 1), .i = {T, in, out}};
    t = time_med(b_matmul, &m, 20);
    printf("matmul fp32 T,in,out %dx%dx%d: %.3f ms, %.1f TFLOP/s (floor at 67 TFLOP/s fp32 "
           "non-tensor: %.3f ms)\n",
           T, in, out, t * 1e3, fl / t * 1e-12, fl / 67e12 * 1e3);
    uint16_t *wh = xmalloc(2 * (size_t)out * in);
    for (size_t i = 0; i < (size_t)out * in; i++)
        wh[i] = molt_f32_to_bf16(t_uniform(-1, 1));
    void *wd = be_alloc(g_gpu.be, 2 * (size_t)out * in);
    be_upload(&g_gpu, wd, wh, 2 * (size_t)out * in);
    m.Ww = (molt_w){MOLT_BF16, wd};
    t = time_med(b_matmul_w, &m, 20);
    printf("matmul_w bf16 T,in,out %dx%dx%d: %.3f ms, %.1f TFLOP/s (x split in 3 bf16 parts, "
           "bf16 GEMM; floor "
           "%.3f ms at fp32, %.3f ms at ~800 TFLOP/s bf16 tensor cores)\n",
           T, in, out, t * 1e3, fl / t * 1e-12, fl / 67e12 * 1e3, fl / 800e12 * 1e3);
    m.i[0] = 1;
    t = time_med(b_matmul_w, &m, 20);
    printf("matmul_w bf16 decode T,in,out 1x%dx%d: %.3f ms, %.0f GB/s of weights\n", in, out,
           t * 1e3, 2.0 * in * out / t * 1e-9);
    be_free(g_gpu.be, m.y), be_free(g_gpu.be, m.x), be_free(g_gpu.be, m.W), be_free(g_gpu.be, wd);
    free(wh);

}

// scan_once: one forward + backward only (for a profiler)
static int bench_scan(int scan_once) {
    double t;
    // ssd_scan_chunked, Llamba-1B-like: T=2048, H=32 heads, P=64, N=64, G=32, Q=128
    int    Ts = 2048, H = 32, P = 64, N = 64, G = 32, Q = 128, nc = (Ts + Q - 1) / Q;
    size_t ny = (size_t)Ts * H * P, nb = (size_t)Ts * G * N;
    bargs  s = {.y = dev_rand(ny, -1, 1), .x = dev_rand(ny, -1, 1),
                .a = dev_rand(2 * (size_t)Ts * H, -0.2f, 0.0f), .b = dev_rand(2 * nb, -1, 1),
                .c = dev_rand(2 * nb, -1, 1), .d = be_allocf(g_gpu.be, ny),
                .work = be_allocf(g_gpu.be, ssd_chunked_backward_work(Ts, H, P, N, G, Q)),
                .i = {Ts, H, P, N, G, Q, (int)nb}};
    double sfl = 2.0 * Ts * H * ((double)Q * (N + P) / 2.0 + 2.0 * P * N);
    double sby = 4.0 * (2.0 * ny + 2.0 * nb + (double)Ts * H + (double)nc * H * P * N);
    double tf = sfl / 67e12, tb = sby / 3.0e12;
    if (scan_once) {
        b_scan(&s);
        b_scan_bwd(&s);
        be_sync(&g_gpu);
        return molt_cuda_last_error() != NULL;
    }
    t = time_med(b_scan, &s, 20);
    printf("ssd_scan_chunked T,H,P,N,G,Q %dx%dx%dx%dx%dx%d: %.3f ms; floor %.3f ms (%.2f GFLOP "
           "at 67 TFLOP/s = %.3f ms, %.0f MB at 3.0 TB/s = %.3f ms)\n",
           Ts, H, P, N, G, Q, t * 1e3, (tf > tb ? tf : tb) * 1e3, sfl * 1e-9, tf * 1e3,
           sby * 1e-6, tb * 1e3);
    b_scan(&s);
    t = time_med(b_scan_bwd, &s, 10);
    printf("ssd_scan_chunked_backward same shape: %.3f ms (floor ~2-3x the forward's)\n",
           t * 1e3);
    be_free(g_gpu.be, s.y), be_free(g_gpu.be, s.x), be_free(g_gpu.be, s.a);
    be_free(g_gpu.be, s.b), be_free(g_gpu.be, s.c), be_free(g_gpu.be, s.d);
    be_free(g_gpu.be, s.work);
    be_sync(&g_gpu);
    const char *e = molt_cuda_last_error();
    if (e) {
        fprintf(stderr, "bench: CUDA error: %s\n", e);
        return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// gpuperf (issue 12): the bf16 GEMM weight cache (bf16.cu) and the two-stage /
// multi-span kernels. The cache must give the bits a fresh conversion gives,
// after every way a weight can change: adamw (two optimizer steps: over part of W,
// which makes the copy stale, and over all of it, which rewrites the copy in the
// AdamW kernel), scale, upload, copy, zero of a sub-range, free and reuse. (dev_rand: above)

// y = x·Wᵀ and, through matmul_backward, dx = dy·W, downloaded into y[T·out + T·in]
static void wc_run(float *y, const float *W, const float *x, const float *dy, float *dy_dev,
                   float *dx_dev, int T, int in, int out) {
    k_matmul(&g_gpu, dy_dev, x, W, NULL, T, in, out, 0);
    k_matmul_backward(&g_gpu, dx_dev, NULL, NULL, dy, x, W, T, in, out, 0);
    be_download(&g_gpu, y, dy_dev, sizeof(float) * (size_t)T * out);
    be_download(&g_gpu, y + (size_t)T * out, dx_dev, sizeof(float) * (size_t)T * in);
}

static void test_wcache(void) {
    const int shapes[][4] = {{64, 200, 257, 0}, {128, 512, 1024, 0}, {33, 96, 129, 1}, // +misalign
                             {48, 256, 130, 0}}; // a decode-sized T
    molt_exec ex0 = g_gpu;
    g_gpu.flags |= MOLT_EXEC_BF16;
    for (int k = 0; k < NELEM(shapes); k++) {
        int    T = shapes[k][0], in = shapes[k][1], out = shapes[k][2], off = shapes[k][3];
        size_t nw = (size_t)out * in, ny = (size_t)T * out + (size_t)T * in;
        enum { ROUNDS = 7 };
        float *Wbuf = dev_rand(nw + 1, -1, 1), *W = Wbuf + off; // off 1: W not 16-byte aligned
        float *x = dev_rand((size_t)T * in, -1, 1), *dy = dev_rand((size_t)T * out, -1, 1);
        float *m = dev_rand(nw, -0.1f, 0.1f), *v = dev_rand(nw, 0, 1e-3f);
        float *g = dev_rand(nw, -1, 1), *src = dev_rand(nw, -2, 2);
        float *yo = be_allocf(g_gpu.be, (size_t)T * out);
        float *dxo = be_allocf(g_gpu.be, (size_t)T * in);
        float *fresh[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) // allocated up front: no free between the rounds
            fresh[r] = be_allocf(g_gpu.be, nw);
        float *y0 = xmalloc(sizeof(float) * ny), *y1 = xmalloc(sizeof(float) * ny);
        float *y2 = xmalloc(sizeof(float) * ny), *hw = frand(nw, -3, 3);
        wc_run(y0, W, x, dy, yo, dxo, T, in, out);
        unsigned long c0 = molt_cuda_wcache_conversions();
        wc_run(y1, W, x, dy, yo, dxo, T, in, out); // unchanged: from the cache
        CHECK(molt_cuda_wcache_conversions() == c0, "wcache %dx%dx%d: reconverted unchanged W",
              T, in, out);
        CHECK(memcmp(y0, y1, sizeof(float) * ny) == 0, "wcache %dx%dx%d: cached W, other bits",
              T, in, out);
        for (int r = 0; r < ROUNDS; r++) {
            molt_span   sp = {nw / 3, nw / 2}; // a middle part of W
            adamw_hyper h = {0.9f, 0.999f, 1e-8f, 0.99f, 0.05f * (float)(r + 1), 0.03f};
            const char *how = "";
            molt_span   two[2] = {{0, nw / 2}, {nw / 2, nw - nw / 2}}; // all of W
            unsigned long c1 = molt_cuda_wcache_conversions();
            switch (r) { // two optimizer steps: over part of W (stale), over all of it (fused)
            case 0: k_adamw(&g_gpu, W, m, v, g, &sp, 1, h), how = "adamw (part)"; break;
            case 1: k_adamw(&g_gpu, W, m, v, g, two, 2, h), how = "adamw (all: fused)"; break;
            case 2: k_scale(&g_gpu, W, &sp, 1, -0.5f), how = "scale"; break;
            case 3:
                be_upload(&g_gpu, W + nw / 2, hw, sizeof(float) * (nw - nw / 2));
                how = "upload";
                break;
            case 4: be_copy(&g_gpu, W + 7, src, sizeof(float) * (nw / 4)), how = "copy"; break;
            case 5: be_zero(&g_gpu, W + nw - nw / 5, sizeof(float) * (nw / 5)), how = "zero"; break;
            default: { // free, the same size again (often the same address), written by a kernel
                be_free(g_gpu.be, Wbuf);
                Wbuf = be_allocf(g_gpu.be, nw + 1), W = Wbuf + off;
                k_add(&g_gpu, W, src, g, nw);
                how = "free + alloc + add";
            }
            }
            wc_run(y1, W, x, dy, yo, dxo, T, in, out); // W from the cache, if still valid
            if (r == 1) // AdamW wrote the cached copy: nothing was converted
                CHECK(molt_cuda_wcache_conversions() == c1,
                      "wcache %dx%dx%d: W reconverted after an AdamW over all of it", T, in, out);
            be_copy(&g_gpu, fresh[r], W, sizeof(float) * nw);
            wc_run(y2, fresh[r], x, dy, yo, dxo, T, in, out); // a W never converted before
            check_sticky("wcache");
            CHECK(memcmp(y1, y2, sizeof(float) * ny) == 0,
                  "wcache %dx%dx%d after %s: a stale bf16 copy of W was used", T, in, out, how);
            CHECK(memcmp(y0, y1, sizeof(float) * ny) != 0,
                  "wcache %dx%dx%d after %s: W did not change (the test cannot fail)", T, in,
                  out, how);
            memcpy(y0, y1, sizeof(float) * ny);
        }
        // bf16 typed weights go to the GEMM as they are: the bits of f32 weights holding the
        // same (bf16-exact) values
        uint16_t *wb = xmalloc(2 * nw);
        float    *wf = xmalloc(sizeof(float) * nw);
        for (size_t i = 0; i < nw; i++)
            wb[i] = molt_f32_to_bf16(hw[i]), wf[i] = molt_bf16_to_f32(wb[i]);
        void *dwb = be_alloc(g_gpu.be, 2 * nw);
        be_upload(&g_gpu, dwb, wb, 2 * nw);
        be_upload(&g_gpu, fresh[0], wf, sizeof(float) * nw);
        k_matmul_w(&g_gpu, yo, x, (molt_w){MOLT_BF16, dwb}, NULL, T, in, out, 0);
        be_download(&g_gpu, y1, yo, sizeof(float) * (size_t)T * out);
        k_matmul(&g_gpu, yo, x, fresh[0], NULL, T, in, out, 0);
        be_download(&g_gpu, y2, yo, sizeof(float) * (size_t)T * out);
        check_sticky("wcache matmul_w bf16");
        CHECK(memcmp(y1, y2, sizeof(float) * (size_t)T * out) == 0,
              "matmul_w bf16 weights (bf16 exec) %dx%dx%d: not the f32 path's bits", T, in, out);
        be_free(g_gpu.be, dwb);
        free(wb), free(wf);
        for (int r = 0; r < ROUNDS; r++)
            be_free(g_gpu.be, fresh[r]);
        float *bufs[] = {Wbuf, x, dy, m, v, g, src, yo, dxo};
        for (int i = 0; i < NELEM(bufs); i++)
            be_free(g_gpu.be, bufs[i]);
        free(y0), free(y1), free(y2), free(hw);
    }
    g_gpu = ex0;
}

// sumsq / scale / AdamW over more spans than one launch takes (MT_SPANS, train.cu), with
// empty, 1-element, block-crossing and odd-offset spans; i[1] = 1 shifts every base pointer
// by one float (the scalar path: no 16-byte alignment)
#define MANY_SPANS 300
static molt_span g_many[MANY_SPANS];

static size_t many_spans(void) {
    size_t o = 0;
    for (int i = 0; i < MANY_SPANS; i++) {
        size_t len = i % 7 == 0 ? 0 : i % 11 == 0 ? 1 : (size_t)(i * 37 % 5000) + 3;
        if (i % 50 == 1)
            len += 16385;
        o += (size_t)(i % 5);
        g_many[i] = (molt_span){o, len};
        o += len;
    }
    return o;
}

static void op_sumsq_sh(const molt_exec *ex, void *const *p, const ocase *c) {
    k_sumsq(ex, (double *)p[1], F(0) + c->i[1], c->host, c->i[0]);
}
static void op_scale_sh(const molt_exec *ex, void *const *p, const ocase *c) {
    k_scale(ex, F(0) + c->i[1], c->host, c->i[0], c->f);
}
static void op_adamw_sh(const molt_exec *ex, void *const *p, const ocase *c) {
    adamw_hyper h = {0.9f, 0.95f, 1e-8f, 1.0f - 3e-4f * 0.1f, 3e-4f / (1.0f - 0.9f * 0.9f),
                     sqrtf(1.0f - 0.95f * 0.95f)};
    int k = c->i[1];
    k_adamw(ex, F(0) + k, F(1) + k, F(2) + k, F(3) + k, c->host, c->i[0], h);
}

static void test_optim_many(void) {
    op_stat *s0 = stat_new("sumsq (300 spans)", 1e-12), *s1 = stat_new("scale (300 spans)", 0);
    op_stat *s2 = stat_new("adamw (300 spans)", 1e-6);
    size_t   n = many_spans() + 1;
    for (int sh = 0; sh <= 1; sh++) {
        char  shape[64];
        ocase c = {.i = {MANY_SPANS, sh}, .host = g_many, .f = 0.37f};
        snprintf(shape, sizeof shape, "%d spans, %zu floats%s", MANY_SPANS, n,
                 sh ? ", base +1" : "");
        addf(&c, n, IN);
        add_d(&c, k_sumsq_blocks(g_many, MANY_SPANS));
        run_op(s0, op_sumsq_sh, &c, shape);
        case_free(&c);
        ocase s = {.i = {MANY_SPANS, sh}, .host = g_many, .f = 0.37f};
        addf(&s, n, ACC);
        run_op(s1, op_scale_sh, &s, shape);
        case_free(&s);
        ocase a = {.i = {MANY_SPANS, sh}, .host = g_many};
        addf(&a, n, ACC);
        addf(&a, n, ACC);
        add_buf(&a, frand(n, 0.0f, 1e-3f), sizeof(float) * n, ACC); // v ≥ 0
        add_buf(&a, frand_scaled(n, 0.05f), sizeof(float) * n, IN);
        run_op(s2, op_adamw_sh, &a, shape);
        case_free(&a);
    }
}

// batched decode rows (one launch over all rows, state pointers by value) give the bits of
// the single-sequence op called once per row, past CU_ROWS rows (two launches)
static void test_rows_bits(void) {
    const int n = 130, Cc = 70, K = 4, H = 4, P = 16, N = 16, G = 2;
    size_t    cs = (size_t)Cc * (K - 1), ss = (size_t)H * P * N, hp = (size_t)H * P;
    float    *x = dev_rand((size_t)n * Cc, -1, 1), *w = dev_rand((size_t)Cc * K, -1, 1);
    float    *b = dev_rand((size_t)Cc, -1, 1), *st0 = dev_rand((size_t)n * cs, -1, 1);
    float    *X = dev_rand((size_t)n * hp, -1, 1), *dA = dev_rand((size_t)n * H, -1.5f, 0);
    float    *B = dev_rand((size_t)n * G * N, -1, 1), *C = dev_rand((size_t)n * G * N, -1, 1);
    float    *ss0 = dev_rand((size_t)n * ss, -1, 1);
    float    *sa = be_allocf(g_gpu.be, (size_t)n * (cs + ss));
    float    *sb = be_allocf(g_gpu.be, (size_t)n * (cs + ss));
    float    *ya = be_allocf(g_gpu.be, (size_t)n * (Cc + hp));
    float    *yb = be_allocf(g_gpu.be, (size_t)n * (Cc + hp));
    float   **pa = xmalloc(sizeof(float *) * 2 * n), **pb = xmalloc(sizeof(float *) * 2 * n);
    size_t    tot = (size_t)n * (cs + ss + Cc + hp);
    float    *ha = xmalloc(sizeof(float) * tot), *hb = xmalloc(sizeof(float) * tot);
    for (int v = 0; v < 2; v++) {
        float *s = v ? sb : sa;
        be_copy(&g_gpu, s, st0, sizeof(float) * (size_t)n * cs);
        be_copy(&g_gpu, s + (size_t)n * cs, ss0, sizeof(float) * (size_t)n * ss);
        float **pp = v ? pb : pa;
        for (int r = 0; r < n; r++) { // rows in reverse slot order: the pointers matter
            pp[r] = s + (size_t)(n - 1 - r) * cs;
            pp[n + r] = s + (size_t)n * cs + (size_t)(n - 1 - r) * ss;
        }
    }
    conv1d_causal_rows(&g_gpu, ya, x, w, b, pa, n, Cc, K);
    ssd_step_rows(&g_gpu, ya + (size_t)n * Cc, pa + n, X, dA, B, C, n, H, P, N, G);
    for (int r = 0; r < n; r++) {
        conv1d_causal(&g_gpu, yb + (size_t)r * Cc, x + (size_t)r * Cc, w, b, pb[r], 1, Cc, K);
        ssd_step(&g_gpu, yb + (size_t)n * Cc + r * hp, pb[n + r], X + r * hp,
                 dA + (size_t)r * H, B + (size_t)r * G * N, C + (size_t)r * G * N, H, P, N, G);
    }
    check_sticky("rows vs per-row ops");
    be_download(&g_gpu, ha, sa, sizeof(float) * (size_t)n * (cs + ss));
    be_download(&g_gpu, hb, sb, sizeof(float) * (size_t)n * (cs + ss));
    be_download(&g_gpu, ha + (size_t)n * (cs + ss), ya, sizeof(float) * (size_t)n * (Cc + hp));
    be_download(&g_gpu, hb + (size_t)n * (cs + ss), yb, sizeof(float) * (size_t)n * (Cc + hp));
    CHECK(memcmp(ha, hb, sizeof(float) * tot) == 0,
          "conv1d_causal_rows / ssd_step_rows (%d rows): not the per-row ops' bits", n);
    float *bufs[] = {x, w, b, st0, X, dA, B, C, ss0, sa, sb, ya, yb};
    for (int i = 0; i < NELEM(bufs); i++)
        be_free(g_gpu.be, bufs[i]);
    free(pa), free(pb), free(ha), free(hb);
}

// ----------------------------------------------------------------------------
// the MLP's GEMM-only activations in bf16 (backward.h: *_b16): each op against
// the CPU twin (bf16 outputs widened on the device for the comparison), and on
// the GPU the same bits as the fp32 op whose output the GEMM would have rounded
// (swiglu_pair then bf16_narrow; matmul on the widened operands) — the claim
// that lets block.c switch them on without changing a result.

static uint16_t *b16_rand(size_t n, float lo, float hi) {
    float    *f = frand(n, lo, hi);
    uint16_t *h = xmalloc(sizeof(uint16_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        h[i] = molt_f32_to_bf16(f[i]);
    free(f);
    return h;
}

// buffers: gu, h (float), scratch bf16 | + dh, dgu (float), scratch bf16
static void op_swiglu_pair_b16(const molt_exec *ex, void *const *p, const ocase *c) {
    size_t n = (size_t)c->i[0] * c->i[1];
    k_swiglu_pair_b16(ex, (uint16_t *)p[2], F(0), c->i[0], c->i[1]);
    k_bf16_widen(ex, F(1), (const uint16_t *)p[2], n);
}
static void op_swiglu_pair_backward_b16(const molt_exec *ex, void *const *p, const ocase *c) {
    size_t n = 2 * (size_t)c->i[0] * c->i[1];
    k_swiglu_pair_backward_b16(ex, (uint16_t *)p[2], F(1), F(0), c->i[0], c->i[1]);
    k_bf16_widen(ex, F(3), (const uint16_t *)p[2], n);
}
// buffers: x (bf16), W, y
static void op_matmul_b16(const molt_exec *ex, void *const *p, const ocase *c) {
    k_matmul_b16(ex, F(2), (const uint16_t *)p[0], F(1), c->i[0], c->i[1], c->i[2], c->i[3]);
}
// buffers: dy (float), dy (bf16), x (float), x (bf16), W, dx, dW; i[3] bit 0: dy in bf16,
// bit 1: x in bf16, bit 2: no dW
static void op_matmul_backward_b16(const molt_exec *ex, void *const *p, const ocase *c) {
    int v = c->i[3];
    k_matmul_backward_b16(ex, F(5), v & 4 ? NULL : F(6), v & 1 ? NULL : F(0),
                          v & 1 ? (const uint16_t *)p[1] : NULL, v & 2 ? NULL : F(2),
                          v & 2 ? (const uint16_t *)p[3] : NULL, F(4), c->i[0], c->i[1],
                          c->i[2], c->i[4]);
}

// buffers: x (float), bf16 scratch, y (float): y = widen(narrow(x)); x (bf16), y: y = widen(x)
static void op_bf16_narrow(const molt_exec *ex, void *const *p, const ocase *c) {
    k_bf16_narrow(ex, (uint16_t *)p[1], F(0), (size_t)c->i[0]);
    k_bf16_widen(ex, F(2), (const uint16_t *)p[1], (size_t)c->i[0]);
}
static void op_bf16_widen(const molt_exec *ex, void *const *p, const ocase *c) {
    k_bf16_widen(ex, F(1), (const uint16_t *)p[0], (size_t)c->i[0]);
}

static void test_mlp_b16(void) {
    // one bf16 ulp (2^-7 of |v|, below 2^-7·|v|/(1 + |v|) as measured) where the two
    // fp32 values straddle a rounding boundary
    op_stat *s0 = stat_new("swiglu_pair_b16", 8e-3), *s1 = stat_new("swiglu_pair_backward_b16", 8e-3);
    op_stat *s2 = stat_new("matmul_b16 (fp32 exec)", 1e-4), *s3 = stat_new("matmul_b16 (bf16 exec)", 8e-2);
    op_stat *s4 = stat_new("matmul_backward_b16 (fp32 exec)", 1e-4);
    op_stat *s5 = stat_new("matmul_backward_b16 (bf16 exec)", 8e-2);
    tested("swiglu_pair_b16"), tested("swiglu_pair_backward_b16"), tested("matmul_b16");
    tested("matmul_backward_b16");
    char      shape[64];
    // the conversions, exact (finite values)
    op_stat *sn = stat_new("bf16_narrow (widened)", 0), *sw = stat_new("bf16_widen", 0);
    tested("bf16_narrow"), tested("bf16_widen");
    for (int k = 0; k < NELEM(EW_N); k++) {
        size_t n = EW_N[k];
        ocase  c = {.i = {(int)n}};
        add_buf(&c, frand(n, -300, 300), sizeof(float) * n, IN);
        addf(&c, n / 2 + 1, SCR);
        addf(&c, n, OUT);
        snprintf(shape, sizeof shape, "n %zu", n);
        run_op(sn, op_bf16_narrow, &c, shape);
        case_free(&c);
        add_buf(&c, b16_rand(n, -300, 300), 2 * n, IN);
        addf(&c, n, OUT);
        run_op(sw, op_bf16_widen, &c, shape);
        case_free(&c);
    }
    const int SWP[][2] = {{0, 4}, {1, 1}, {3, 7}, {17, 64}, {40, 1000}, {2, 20001}, {512, 5632}};
    for (int k = 0; k < NELEM(SWP); k++) {
        int    T = SWP[k][0], Fd = SWP[k][1];
        size_t n = (size_t)T * Fd;
        ocase  c = {.i = {T, Fd}};
        add_buf(&c, gates(2 * n), sizeof(float) * 2 * n, IN);
        addf(&c, n, OUT);
        addf(&c, n + 1, SCR); // ≥ 2n bf16
        snprintf(shape, sizeof shape, "T,F %dx%d", T, Fd);
        run_op(s0, op_swiglu_pair_b16, &c, shape);
        case_free(&c); // the backward's: gu, dh, scratch (≥ 2n bf16), dgu
        add_buf(&c, gates(2 * n), sizeof(float) * 2 * n, IN);
        addf(&c, n, IN);
        addf(&c, n + 1, SCR);
        addf(&c, 2 * n, OUT);
        run_op(s1, op_swiglu_pair_backward_b16, &c, shape);
        case_free(&c);
    }
    for (int k = 0; k < NELEM(MM_SHAPES); k++) {
        int T = MM_SHAPES[k][0], in = MM_SHAPES[k][1], out = MM_SHAPES[k][2];
        if (in > 2048 || T > 4096) // the bf16 exec's bound (test_matmul)
            continue;
        for (int acc = 0; acc < 2; acc++) {
            ocase c = {.i = {T, in, out, acc}};
            add_buf(&c, b16_rand((size_t)T * in, -1, 1), 2 * (size_t)T * in, IN);
            addf(&c, (size_t)out * in, IN);
            addf(&c, (size_t)T * out, acc ? ACC : OUT);
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d%s", T, in, out, acc ? " +=" : "");
            run_op(s2, op_matmul_b16, &c, shape);
            g_gpu.flags |= MOLT_EXEC_BF16;
            run_op(s3, op_matmul_b16, &c, shape);
            g_gpu.flags &= ~MOLT_EXEC_BF16;
            case_free(&c);
        }
        for (int v = 0; v < 5; v++) { // dy bf16, x bf16, both; dx only (bf16 dy); fp32 both
            int   var = v == 3 ? 5 : v == 4 ? 0 : v + 1, acc = v == 1;
            ocase c = {.i = {T, in, out, var, acc}};
            addf(&c, (size_t)T * out, IN);
            add_buf(&c, b16_rand((size_t)T * out, -1, 1), 2 * (size_t)T * out, IN);
            addf(&c, (size_t)T * in, IN);
            add_buf(&c, b16_rand((size_t)T * in, -1, 1), 2 * (size_t)T * in, IN);
            addf(&c, (size_t)out * in, IN);
            addf(&c, (size_t)T * in, acc ? ACC : OUT);
            addf(&c, (size_t)out * in, var & 4 ? SCR : ACC);
            snprintf(shape, sizeof shape, "T,in,out %dx%dx%d%s%s%s%s", T, in, out,
                     var & 1 ? " dy16" : "", var & 2 ? " x16" : "", var & 4 ? " no dW" : "",
                     acc ? " +=" : "");
            run_op(s4, op_matmul_backward_b16, &c, shape);
            g_gpu.flags |= MOLT_EXEC_BF16;
            run_op(s5, op_matmul_backward_b16, &c, shape);
            g_gpu.flags &= ~MOLT_EXEC_BF16;
            case_free(&c);
        }
    }
}

// on the GPU, bit for bit: swiglu_pair_b16 = bf16_narrow(swiglu_pair) (and the backward),
// and under the bf16 exec matmul_b16 / matmul_backward_b16 = matmul / matmul_backward on
// the widened operands (F 1000: the float4 path, 999: the scalar one)
static void test_mlp_b16_bits(void) {
    const int T = 37, d = 96;
    for (int Fd = 999; Fd <= 1000; Fd++) {
        size_t    n = (size_t)T * Fd;
        float    *gu = dev_rand(2 * n, -6, 6), *dh = dev_rand(n, -1, 1);
        float    *hf = be_allocf(g_gpu.be, 2 * n), *W = dev_rand((size_t)d * Fd, -1, 1);
        uint16_t *ha = be_alloc(g_gpu.be, 4 * n), *hb = be_alloc(g_gpu.be, 4 * n);
        float    *ya = be_allocf(g_gpu.be, (size_t)T * d), *yb = be_allocf(g_gpu.be, (size_t)T * d);
        float    *ga = be_allocf(g_gpu.be, (size_t)d * Fd), *gb = be_allocf(g_gpu.be, (size_t)d * Fd);
        float    *xa = be_allocf(g_gpu.be, n), *xb = be_allocf(g_gpu.be, n);
        uint16_t *h1 = xmalloc(4 * n), *h2 = xmalloc(4 * n);
        float    *y1 = xmalloc(sizeof(float) * (size_t)d * Fd), *y2 = xmalloc(sizeof(float) * (size_t)d * Fd);
        // forward h
        k_swiglu_pair(&g_gpu, hf, gu, T, Fd);
        k_bf16_narrow(&g_gpu, ha, hf, n);
        k_swiglu_pair_b16(&g_gpu, hb, gu, T, Fd);
        be_download(&g_gpu, h1, ha, 2 * n);
        be_download(&g_gpu, h2, hb, 2 * n);
        CHECK(memcmp(h1, h2, 2 * n) == 0, "swiglu_pair_b16 (F %d): not bf16_narrow(swiglu_pair)", Fd);
        // y = h·W_dᵀ under the bf16 exec: the bf16 h as given = the fp32 h rounded by the GEMM
        g_gpu.flags |= MOLT_EXEC_BF16;
        k_matmul_b16(&g_gpu, ya, hb, W, T, Fd, d, 0);
        k_matmul(&g_gpu, yb, hf, W, NULL, T, Fd, d, 0);
        be_download(&g_gpu, y1, ya, sizeof(float) * (size_t)T * d);
        be_download(&g_gpu, y2, yb, sizeof(float) * (size_t)T * d);
        CHECK(memcmp(y1, y2, sizeof(float) * (size_t)T * d) == 0,
              "matmul_b16 (F %d): not matmul's bits on the fp32 h", Fd);
        // backward of the down projection: dW from the bf16 h, dx
        be_zero(&g_gpu, ga, sizeof(float) * (size_t)d * Fd);
        be_zero(&g_gpu, gb, sizeof(float) * (size_t)d * Fd);
        k_matmul_backward_b16(&g_gpu, xa, ga, dh, NULL, NULL, hb, W, T, Fd, d, 0);
        k_matmul_backward(&g_gpu, xb, gb, NULL, dh, hf, W, T, Fd, d, 0);
        be_download(&g_gpu, y1, ga, sizeof(float) * (size_t)d * Fd);
        be_download(&g_gpu, y2, gb, sizeof(float) * (size_t)d * Fd);
        CHECK(memcmp(y1, y2, sizeof(float) * (size_t)d * Fd) == 0,
              "matmul_backward_b16 (x in bf16, F %d): not matmul_backward's dW", Fd);
        be_download(&g_gpu, y1, xa, sizeof(float) * n);
        be_download(&g_gpu, y2, xb, sizeof(float) * n);
        CHECK(memcmp(y1, y2, sizeof(float) * n) == 0,
              "matmul_backward_b16 (F %d): not matmul_backward's dx", Fd);
        g_gpu.flags &= ~MOLT_EXEC_BF16;
        // ∂gu
        k_swiglu_pair_backward(&g_gpu, hf, dh, gu, T, Fd);
        k_bf16_narrow(&g_gpu, ha, hf, 2 * n);
        k_swiglu_pair_backward_b16(&g_gpu, hb, dh, gu, T, Fd);
        be_download(&g_gpu, h1, ha, 4 * n);
        be_download(&g_gpu, h2, hb, 4 * n);
        CHECK(memcmp(h1, h2, 4 * n) == 0,
              "swiglu_pair_backward_b16 (F %d): not bf16_narrow(swiglu_pair_backward)", Fd);
        check_sticky("mlp b16 bits");
        void *bufs[] = {gu, dh, hf, W, ha, hb, ya, yb, ga, gb, xa, xb};
        for (int i = 0; i < NELEM(bufs); i++)
            be_free(g_gpu.be, bufs[i]);
        free(h1), free(h2), free(y1), free(y2);
    }
}

// embedding (+ backward) with more ids than one slot of the pinned staging ring holds
// (mem.cu: 256 KB, the pageable fallback) and with few distinct ids (long row groups)
static void test_embedding_big(void) {
    op_stat  *s0 = stat_new("embedding (70000 ids)", 0);
    op_stat  *s1 = stat_new("embedding_backward (70000)", 0);
    const int T = 70000, V = 37, d = 5;
    int32_t  *ids = xmalloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(t_uniform(0, 1) * (float)V) % V;
    ocase c = {.i = {T, d}, .ids = ids};
    addf(&c, (size_t)V * d, IN);
    addf(&c, (size_t)T * d, OUT);
    run_op(s0, op_embedding, &c, "T,V,d 70000x37x5");
    case_free(&c);
    ocase b = {.i = {T, d}, .ids = ids};
    addf(&b, (size_t)T * d, IN);
    addf(&b, (size_t)V * d, ACC);
    run_op(s1, op_embedding_backward, &b, "T,V,d 70000x37x5");
    case_free(&b);
    free(ids);
}

static void test_all(void) {
    test_memory();
    test_matmul();
    test_matmul_backward();
    test_rmsnorm();
    test_swiglu();
    test_softmax_add();
    test_embedding();
    test_hybrid_ops();
    test_conv();
    test_ssd_step();
    test_ssd_scan();
    test_materialize();
    test_losses();
    test_rev_kl(); // reverse-KL distillation loss (issue 17)
    test_sample_rows(); // decode sampling on the device (issue 12)
    test_optim();
    test_ssm_rows();
    test_ssm_rows_misc();
    test_fused_decode();
    test_rope_kv();
    test_attention();
    test_attn_flash();
    test_wcache(); // gpuperf (issue 12)
    test_optim_many();
    test_rows_bits();
    test_mlp_b16(); // the MLP's bf16 activations (issue 12)
    test_mlp_b16_bits();
    test_embedding_big();
    test_gateloop(); // GateLoop and Mamba-3 ops (issue 14)
    test_mamba3();
    test_table();
}

int main(int argc, char **argv) {
    const char *why = NULL;
    if (molt_cuda_device_count(&why) <= 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "no CUDA GPU found: %s", why ? why : "?");
        return t_skip("test_backend_cuda", msg);
    }
    setenv("MOLT_SSD_TC", "1", 1); // the tensor-core SSD form (the default) whatever the caller's env
    g_cpu = molt_exec_cpu(2);
    g_gpu = be_exec1(&molt_backend_cuda); // not molt_exec_init: a partial table still runs here
    t_seed(20261206);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench_dense();
        return bench_scan(0);
    }
    if (argc > 1 && strcmp(argv[1], "--profile") == 0) // one scan forward + backward (ncu)
        return bench_scan(1);
    if (argc > 1 && strcmp(argv[1], "--scan") == 0)
        test_ssd_scan(); // the SSD scans alone
    else
        test_all();

    printf("\n%-28s %6s %10s %10s  %s\n", "op (gpu vs cpu)", "cases", "worst", "tol",
           "worst shape");
    for (int i = 0; i < g_nstat; i++) {
        op_stat *s = &g_stat[i];
        printf("%-28s %6d %10.2e %10.1e  %s%s\n", s->op, s->cases, s->worst, s->tol, s->shape,
               s->failed ? "  FAILED" : "");
    }
    return t_done("test_backend_cuda");
}

#endif
