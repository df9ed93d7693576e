/*
 * test_gateloop.c — the GateLoop mixer (mixers/gl_mixer.h, gl_train.h,
 * mx_gateloop.c; shared/docs/ALGORITHMS.md §9):
 *   1. modes: the recurrent step, the chunked scan, the materialized matrix
 *      (y = M·v, then the gate and out_proj) and the paper's associative scan
 *      (O(T log T)) agree for T up to 300,
 *      with chunk sizes that do and do not divide T; and at T = 300 with
 *      strong decay (|a| ≈ 0.02 per token, large phases), where the paper's
 *      naive (Q ⊙ Πa)(K ⊘ Πa)ᵀ is not finite (shown here), every mode stays
 *      finite and equal to the step;
 *   2. gradients: train_backward (through the mixer table, into a gradient
 *      buffer of the parameter layout) and the stage-1 matrix backward
 *      against central differences of a float64 twin written here from the
 *      complex definition (complex doubles, the literal recurrence / product),
 *      for every parameter and the input; the backward is bit-identical for
 *      1 and 3 threads; forward == train_forward on one sequence;
 *   3. state: a prefill continued by decode steps equals one prefill of the
 *      whole sequence; batched decode over slots (step_rows) equals each
 *      sequence alone; info reports the state bytes;
 *   4. save / load round trip (molt_hybrid with "gateloop" layers): the same
 *      parameters bit for bit and the same logits;
 *   5. parity with tests/ref/gateloop_ref.py (float64 PyTorch, complex128
 *      state and the literal recurrence, autograd) of the training forward,
 *      its gradients, the matrix and its gradients. Skipped with a notice
 *      when /usr/bin/python3 has no torch;
 *   6. the attention transfer of a GateLoop student (distill/
 *      student_gateloop.c) on stories260K: with the magnitude set to 1, the
 *      student's mixing matrix is the teacher's pre-softmax RoPE score matrix
 *      q·k/√hd times q's scale 1 − 0.98 (pairs, conjugate and phase signs
 *      right); with the initial magnitude 0.98 it is that times 0.98^(t−s).
 */
#include "distill/mohawk.h"
#include "kernels/attn.h"
#include "kernels/gateloop.h"
#include "kernels/kernels.h"
#include "mixers/gl_train.h"
#include "mixers/mixer.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static molt_ctx *ctx;

static float *fmalloc(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p)
        exit(2);
    return p;
}
static double *dmalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p)
        exit(2);
    return p;
}
static double *to_d(const float *x, size_t n) {
    double *d = dmalloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = (double)x[i];
    return d;
}

// a molt_hybrid config of L GateLoop layers (with MLPs)
static const char *json_of(int L, int d, int H, int P, int Q) {
    static char json[2048];
    char        layers[512] = "";
    for (int l = 0; l < L; l++)
        snprintf(layers + strlen(layers), sizeof layers - strlen(layers),
                 "%s{\"mixer\": \"gateloop\"}", l ? ", " : "");
    snprintf(json, sizeof json,
             "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 61, \"d_model\": %d,"
             " \"n_layer\": %d, \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 40},"
             " \"ssm_cfg\": {\"d_state\": 4, \"n_v_heads\": 2},"
             " \"attn_cfg\": {\"num_attention_heads\": 2, \"head_dim\": 8},"
             " \"gateloop_cfg\": {\"n_heads\": %d, \"head_dim\": %d, \"chunk_size\": %d},"
             " \"layers\": [%s]}",
             d, L, H, P, Q, layers);
    return json;
}

// ----------------------------------------------------------------------------
// float64 twin from the complex definition, one sequence from a zero state

typedef double complex dcx;

typedef struct twin {
    int           d, H, P, Di, HJ, R;
    const double *in_proj, *a_bias, *g_bias, *out_proj;
} twin;

static twin twin_of(const gateloop_cfg *c, const double *in_proj, const double *a_bias,
                    const double *g_bias, const double *out_proj) {
    return (twin){c->d_model, c->H, c->P, c->d_inner, c->d_inner / 2, 5 * c->d_inner,
                  in_proj,    a_bias, g_bias, out_proj};
}

static void twin_proj(const twin *w, const double *u, int T, double *zx) {
    for (int t = 0; t < T; t++)
        for (int r = 0; r < w->R; r++) {
            double s = 0;
            for (int i = 0; i < w->d; i++)
                s += u[(size_t)t * w->d + i] * w->in_proj[(size_t)r * w->d + i];
            zx[(size_t)t * w->R + r] = s;
        }
}

// a_t of pair i (i < HJ) at row z of zx
static dcx twin_a(const twin *w, const double *z, int i) {
    double m = z[4 * w->Di + i] + w->a_bias[i];
    double ph = z[4 * w->Di + w->HJ + i] + w->a_bias[w->HJ + i];
    return cexp(CMPLX(-log1p(exp(-m)), ph)); // sigmoid(m)·e^{i·ph}
}
static dcx twin_pair(const twin *w, const double *z, int col, int h, int j) {
    return CMPLX(z[col + h * w->P + 2 * j], z[col + h * w->P + 2 * j + 1]);
}

// ys [T, Di] (before the gate) by the literal recurrence; y [T, d] after the
// gate and out_proj (y may be NULL); M [H,T,T] by the literal product (may be NULL)
static void twin_forward(const twin *w, const double *u, int T, double *y, double *M) {
    int     H = w->H, P = w->P, J = P / 2, Di = w->Di, R = w->R;
    double *zx = dmalloc((size_t)T * R), *ys = dmalloc((size_t)T * Di);
    dcx    *S = calloc((size_t)H * J * P, sizeof(dcx));
    twin_proj(w, u, T, zx);
    for (int t = 0; t < T; t++) {
        const double *z = zx + (size_t)t * R;
        for (int h = 0; h < H; h++)
            for (int p = 0; p < P; p++) {
                dcx acc = 0;
                for (int j = 0; j < J; j++) {
                    dcx *s = &S[((size_t)h * J + j) * P + p];
                    *s = twin_a(w, z, h * J + j) * *s +
                         twin_pair(w, z, Di, h, j) * z[2 * Di + h * P + p];
                    acc += twin_pair(w, z, 0, h, j) * *s;
                }
                ys[(size_t)t * Di + h * P + p] = creal(acc);
            }
    }
    for (int t = 0; y && t < T; t++) {
        double *g = dmalloc((size_t)Di);
        for (int i = 0; i < Di; i++) {
            double zz = zx[(size_t)t * R + 3 * Di + i] + (w->g_bias ? w->g_bias[i] : 0.0);
            g[i] = ys[(size_t)t * Di + i] * zz / (1.0 + exp(-zz));
        }
        for (int o = 0; o < w->d; o++) {
            double s = 0;
            for (int i = 0; i < Di; i++)
                s += g[i] * w->out_proj[(size_t)o * Di + i];
            y[(size_t)t * w->d + o] = s;
        }
        free(g);
    }
    for (int h = 0; M && h < H; h++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s < T; s++) {
                double m = 0;
                for (int j = 0; s <= t && j < J; j++) {
                    dcx prod = 1;
                    for (int r = s + 1; r <= t; r++)
                        prod *= twin_a(w, zx + (size_t)r * R, h * J + j);
                    m += creal(twin_pair(w, zx + (size_t)t * R, 0, h, j) *
                               twin_pair(w, zx + (size_t)s * R, Di, h, j) * prod);
                }
                M[((size_t)h * T + t) * T + s] = m;
            }
    free(zx), free(ys), free(S);
}

// ----------------------------------------------------------------------------
// 1. modes

typedef struct modes {
    int    T, Q;
    double worst_rec, worst_mat;
} modes;

// y after gate and out_proj from a materialized M (float) and the double projection
static void y_from_M(const twin *w, const float *M, const double *u, int T, double *y) {
    int     Di = w->Di, R = w->R, P = w->P;
    double *zx = dmalloc((size_t)T * R), *g = dmalloc((size_t)Di);
    twin_proj(w, u, T, zx);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < Di; i++) {
            int    h = i / P;
            double ys = 0;
            for (int s = 0; s <= t; s++)
                ys += (double)M[((size_t)h * T + t) * T + s] * zx[(size_t)s * R + 2 * Di + i];
            double zz = zx[(size_t)t * R + 3 * Di + i] + (w->g_bias ? w->g_bias[i] : 0.0);
            g[i] = ys * zz / (1.0 + exp(-zz));
        }
        for (int o = 0; o < w->d; o++) {
            double s = 0;
            for (int i = 0; i < Di; i++)
                s += g[i] * w->out_proj[(size_t)o * Di + i];
            y[(size_t)t * w->d + o] = s;
        }
    }
    free(zx), free(g);
}

static double rel_max(const float *a, const double *b, size_t n) {
    double m = 0, e = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        e = d == d ? fmax(e, d) : (double)INFINITY;
    }
    return e / fmax(m, 1e-30);
}

static bool all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

// chunked (chunk Q), recurrent and materialized outputs of layer 0 of m on u[T,d]
static void check_modes(const molt_model *m, const float *u, int T, int Q, const char *what) {
    gateloop_cfg      c = *layer_gl(&m->cfg, 0);
    const gl_weights *w = &m->layers[0].gl;
    c.chunk = Q;
    int     d = c.d_model, H = c.H;
    size_t  ny = (size_t)T * d;
    float  *yc = fmalloc(ny), *yr = fmalloc(ny), *ya = fmalloc(ny), *M = fmalloc((size_t)H * T * T);
    float  *work = fmalloc(gl_mixer_work_assoc(&c, T));
    double *ud = to_d(u, ny), *ym = dmalloc(ny);
    gl_mixer_forward(TEX, yc, u, T, &c, w, NULL, GL_MODE_CHUNKED, work);
    gl_mixer_forward(TEX, yr, u, T, &c, w, NULL, GL_MODE_RECURRENT, work);
    gl_mixer_forward(TEX, ya, u, T, &c, w, NULL, GL_MODE_ASSOC, work);
    gl_mixer_materialize(TEX, M, u, T, &c, w, work);
    double *ip = to_d(w->in_proj, (size_t)5 * c.d_inner * d);
    double *ab = to_d(w->a_bias, (size_t)c.d_inner);
    double *gb = to_d(w->g_bias, (size_t)c.d_inner), *op = to_d(w->out_proj, (size_t)d * c.d_inner);
    twin tw = twin_of(&c, ip, ab, gb, op);
    y_from_M(&tw, M, ud, T, ym);
    double *yrd = to_d(yr, ny);
    double  e_rc = rel_max(yc, yrd, ny), e_rm = rel_max(yr, ym, ny), e_ra = rel_max(ya, yrd, ny);
    bool    fin = all_finite(yc, ny) && all_finite(yr, ny) && all_finite(ya, ny) &&
               all_finite(M, (size_t)H * T * T);
    CHECK(fin, "%s T=%d Q=%d: non-finite output", what, T, Q);
    CHECK(e_rc <= 2e-5, "%s T=%d Q=%d: chunked vs step %.3g", what, T, Q, e_rc);
    CHECK(e_rm <= 2e-5, "%s T=%d Q=%d: materialized·v vs step %.3g", what, T, Q, e_rm);
    CHECK(e_ra <= 2e-5, "%s T=%d: associative scan vs step %.3g", what, T, e_ra);
    printf("  %-13s T %3d chunk %3d%s: chunked %.2g, M·v %.2g, assoc %.2g\n", what, T, Q,
           T % Q ? " (no divide)" : "", e_rc, e_rm, e_ra);
    free(yc), free(yr), free(ya), free(M), free(work), free(ud), free(ym), free(ip), free(ab);
    free(gb), free(op), free(yrd);
}

static void test_modes(void) {
    printf("1. modes vs the recurrent step (relative max error over the output):\n");
    molt_model *m = tm_random_model(ctx, json_of(1, 24, 3, 8, 16), 3, 0.05f);
    if (!m)
        return;
    const int cases[][2] = {{1, 1}, {7, 3}, {16, 16}, {64, 16}, {100, 64}, {130, 7},
                            {257, 300}, {300, 64}, {300, 37}, {300, 1}};
    float *u = fmalloc((size_t)300 * 24);
    t_seed(21);
    t_fill_uniform(u, (size_t)300 * 24, -1, 1);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        check_modes(m, u, cases[k][0], cases[k][1], "random init");
    // strong decay: |a| = sigmoid(−4) ≈ 0.018 per token (times the data term), phases ±6 rad
    gateloop_cfg c = *layer_gl(&m->cfg, 0);
    float       *ab = m->data + (m->layers[0].gl.a_bias - m->data);
    for (int i = 0; i < c.d_inner / 2; i++) {
        ab[i] = -4.0f;
        ab[c.d_inner / 2 + i] = t_uniform(-6, 6);
    }
    check_modes(m, u, 300, 64, "strong decay");
    check_modes(m, u, 300, 300, "strong decay");
    check_modes(m, u, 300, 7, "strong decay");
    // the paper's naive form on the same transition (pair 0 of head 0, in
    // double, q = k = 1): Πa over the whole prefix underflows (|Πa| ≈ 0.018^t),
    // so k ⊘ Πa = conj(Πa)/|Πa|² overflows and the diagonal score
    // (q ⊙ Πa_t)·(k ⊘ Πa_t) = |Πa|²·(1/|Πa|²) becomes 0·inf = NaN long before t = 300
    float  *zx = fmalloc((size_t)300 * 5 * c.d_inner);
    int     R = 5 * c.d_inner, HJ = c.d_inner / 2;
    k_matmul(TEX, zx, u, m->layers[0].gl.in_proj, NULL, 300, c.d_model, R, 0);
    double pre_r = 1, pre_i = 0;
    int    bad_at = -1;
    for (int t = 0; t < 300; t++) {
        double mag = 1.0 / (1.0 + exp(-(double)(zx[(size_t)t * R + 4 * c.d_inner] + ab[0])));
        double ph = (double)(zx[(size_t)t * R + 4 * c.d_inner + HJ] + ab[HJ]);
        double r = pre_r * mag * cos(ph) - pre_i * mag * sin(ph);
        double i = pre_r * mag * sin(ph) + pre_i * mag * cos(ph);
        pre_r = r, pre_i = i;
        double den = pre_r * pre_r + pre_i * pre_i;
        double score = (pre_r * pre_r + pre_i * pre_i) * (1.0 / den);
        if (!isfinite(score) && bad_at < 0)
            bad_at = t;
    }
    CHECK(bad_at > 0 && bad_at < 300,
          "the naive form should break down before T = 300 here (at %d)", bad_at);
    printf("  the naive (Q ⊙ Πa)(K ⊘ Πa)ᵀ is not finite from t = %d on (|Πa| underflows)\n",
           bad_at);
    free(zx), free(u);
    molt_model_free(m);
}

// ----------------------------------------------------------------------------
// 2. gradients against central differences of the twin

#define FD_N 24
#define FD_TOL 1e-4

typedef struct fdctx {
    twin          w;
    const double *u, *dy, *dM;
    int           B, T, mat;
} fdctx;

static double fd_loss(const fdctx *f) {
    int     d = f->w.d, T = f->T, H = f->w.H;
    double  L = 0, *y = dmalloc((size_t)T * d), *M = f->mat ? dmalloc((size_t)H * T * T) : NULL;
    for (int b = 0; b < f->B; b++) {
        twin_forward(&f->w, f->u + (size_t)b * T * d, T, f->mat ? NULL : y, M);
        if (f->mat)
            for (size_t i = 0; i < (size_t)H * T * T; i++)
                L += f->dM[(size_t)b * H * T * T + i] * M[i];
        else
            for (size_t i = 0; i < (size_t)T * d; i++)
                L += f->dy[(size_t)b * T * d + i] * y[i];
    }
    free(y), free(M);
    return L;
}

// analytic (float) vs central differences at up to FD_N entries of param
static void fd_tensor(const char *what, fdctx *f, double *param, size_t n, const float *analytic) {
    size_t idx[FD_N];
    int    k = 0;
    for (; k < FD_N && (size_t)k < n; k++)
        idx[k] = n <= FD_N ? (size_t)k : (size_t)(t_uniform(0, 1) * (float)n) % n;
    double num = 0, den = 0, worst = 0, eps = 1e-5;
    double fd[FD_N];
    for (int i = 0; i < k; i++) {
        double v = param[idx[i]];
        param[idx[i]] = v + eps;
        double lp = fd_loss(f);
        param[idx[i]] = v - eps;
        double lm = fd_loss(f);
        param[idx[i]] = v;
        fd[i] = (lp - lm) / (2 * eps);
        num += ((double)analytic[idx[i]] - fd[i]) * ((double)analytic[idx[i]] - fd[i]);
        den += fd[i] * fd[i];
    }
    double scale = fmax(sqrt(den / k), 1e-6);
    for (int i = 0; i < k; i++)
        worst = fmax(worst, fabs((double)analytic[idx[i]] - fd[i]) / scale);
    double rel = sqrt(num / k) / scale;
    CHECK(rel <= FD_TOL && worst <= 10 * FD_TOL, "%s: FD rel-L2 %.3g, worst %.3g (of %zu)", what,
          rel, worst, n);
    printf("  %-28s FD rel-L2 %.2g (%d of %zu entries)\n", what, rel, k, n);
}

static void test_gradients(void) {
    printf("2. gradients vs central differences of the float64 complex twin:\n");
    int         B = 2, T = 13, d = 16;
    molt_model *m = tm_random_model(ctx, json_of(1, d, 2, 6, 4), 5, 0.1f);
    if (!m)
        return;
    const mixer_vt     *v = layer_mixer(m, 0);
    const gateloop_cfg *c = layer_gl(&m->cfg, 0);
    const gl_weights   *w = &m->layers[0].gl;
    int                 Di = c->d_inner, R = 5 * Di, H = c->H;
    size_t              nu = (size_t)B * T * d, nM = (size_t)B * H * T * T;
    float *u = fmalloc(nu), *dy = fmalloc(nu), *y = fmalloc(nu), *du = fmalloc(nu);
    float *dM = fmalloc(nM), *M = fmalloc(nM), *du2 = fmalloc(nu);
    t_seed(8);
    t_fill_uniform(u, nu, -1, 1);
    t_fill_uniform(dy, nu, -1, 1);
    t_fill_uniform(dM, nM, -1, 1);
    float *act = fmalloc(v->act_floats(m, 0, B, T));
    float *work = fmalloc(v->train_work_floats(m, 0, B, T));
    float *grad = fmalloc(m->n_floats), *grad2 = fmalloc(m->n_floats);
    memset(grad, 0, sizeof(float) * m->n_floats);
    memset(grad2, 0, sizeof(float) * m->n_floats);
    test_threads(1);
    v->train_forward(TEX, m, 0, y, act, u, B, T, work);
    v->train_backward(TEX, m, 0, du, grad, dy, act, u, B, T, work);
    test_threads(3);
    v->train_backward(TEX, m, 0, du2, grad2, dy, act, u, B, T, work);
    CHECK(memcmp(du, du2, sizeof(float) * nu) == 0 &&
              memcmp(grad, grad2, sizeof(float) * m->n_floats) == 0,
          "train_backward differs between 1 and 3 threads");
    test_threads(1);
    // forward (one sequence, chunked) == train_forward of that sequence, bit for bit
    float *yf = fmalloc((size_t)T * d), *fw = fmalloc(v->work_floats(m, 0, T, T, 1));
    float *st = fmalloc(v->rec_floats(m, 0)), *y1 = fmalloc((size_t)T * d);
    memset(st, 0, sizeof(float) * v->rec_floats(m, 0));
    v->forward(TEX, m, 0, yf, u, T, 0, st, T, fw, 1);
    v->train_forward(TEX, m, 0, y1, act, u, 1, T, work);
    CHECK(memcmp(yf, y1, sizeof(float) * (size_t)T * d) == 0,
          "forward (chunked) differs from train_forward (max %.3g)",
          t_max_abs(yf, y1, (size_t)T * d));
    v->train_forward(TEX, m, 0, y, act, u, B, T, work); // act for B sequences again
    // the twin's output
    double *ip = to_d(w->in_proj, (size_t)R * d), *ab = to_d(w->a_bias, (size_t)Di);
    double *gb = to_d(w->g_bias, (size_t)Di), *op = to_d(w->out_proj, (size_t)d * Di);
    double *ud = to_d(u, nu), *dyd = to_d(dy, nu), *dMd = to_d(dM, nM), *yd = dmalloc(nu);
    fdctx   f = {twin_of(c, ip, ab, gb, op), ud, dyd, dMd, B, T, 0};
    for (int b = 0; b < B; b++)
        twin_forward(&f.w, ud + (size_t)b * T * d, T, yd + (size_t)b * T * d, NULL);
    double e = rel_max(y, yd, nu);
    CHECK(e <= 1e-5, "train_forward vs the twin: %.3g", e);
    printf("  train_forward vs twin: rel max %.2g\n", e);
    fd_tensor("train: du", &f, ud, nu, du);
    fd_tensor("train: d in_proj", &f, ip, (size_t)R * d, mixer_grad(m, grad, w->in_proj));
    fd_tensor("train: d a_bias", &f, ab, (size_t)Di, mixer_grad(m, grad, w->a_bias));
    fd_tensor("train: d g_bias", &f, gb, (size_t)Di, mixer_grad(m, grad, w->g_bias));
    fd_tensor("train: d out_proj", &f, op, (size_t)d * Di, mixer_grad(m, grad, w->out_proj));
    // stage-1 matrix: M and its backward (in_proj, a_bias, u)
    float   *mact = fmalloc(gl_mat_act_floats(c, B, T));
    float   *mwork = fmalloc(gl_mat_work_floats(c, B, T));
    gl_grads mg = {fmalloc((size_t)R * d), fmalloc((size_t)Di), fmalloc((size_t)Di), NULL};
    memset(mg.in_proj, 0, sizeof(float) * (size_t)R * d);
    memset(mg.a_bias, 0, sizeof(float) * (size_t)Di);
    memset(mg.g_bias, 0, sizeof(float) * (size_t)Di);
    gl_mat_forward(TEX, M, mact, u, B, T, c, w, mwork);
    gl_mat_backward(TEX, du, &mg, dM, mact, u, B, T, c, w, mwork);
    double *Md = dmalloc(nM);
    for (int b = 0; b < B; b++)
        twin_forward(&f.w, ud + (size_t)b * T * d, T, NULL, Md + (size_t)b * H * T * T);
    e = rel_max(M, Md, nM);
    CHECK(e <= 1e-5, "gl_mat_forward vs the twin: %.3g", e);
    printf("  matrix vs twin: rel max %.2g\n", e);
    f.mat = 1;
    fd_tensor("matrix: du", &f, ud, nu, du);
    fd_tensor("matrix: d in_proj", &f, ip, (size_t)R * d, mg.in_proj);
    fd_tensor("matrix: d a_bias", &f, ab, (size_t)Di, mg.a_bias);
    bool untouched = true;
    for (int i = 0; i < Di; i++)
        untouched &= mg.g_bias[i] == 0.0f;
    CHECK(untouched, "the matrix does not depend on g_bias: its gradient stays untouched");
    free(u), free(dy), free(y), free(du), free(dM), free(M), free(du2), free(act), free(work),
        free(grad), free(grad2), free(yf), free(fw), free(st), free(y1), free(ip), free(ab);
    free(gb), free(op), free(ud), free(dyd), free(dMd), free(yd), free(mact), free(mwork),
        free(mg.in_proj), free(mg.a_bias), free(mg.g_bias), free(Md);
    molt_model_free(m);
}

// ----------------------------------------------------------------------------
// 3. state: prefill → decode, slots; info. 4. save / load

#define NS 4
#define STEPS 12

static void test_state(void) {
    printf("3. state:\n");
    molt_model *m = tm_random_model(ctx, json_of(2, 32, 4, 8, 5), 9, 0.05f);
    if (!m)
        return;
    int     V = m->cfg.vocab, n = 37, n1 = 22;
    int32_t ids[64];
    t_seed(12);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    float *pre = tm_logits(ctx, m, ids, n, false), *step = tm_logits(ctx, m, ids, n, true);
    CHECK(pre && step, "logits");
    if (!pre || !step)
        return;
    double e = t_rel_diff(step, pre, (size_t)n * V);
    CHECK(e <= 1e-5 && all_finite(pre, (size_t)n * V), "prefill vs token by token: %.3g", e);
    printf("  prefill (chunk 5) vs token by token over %d tokens: %.2g\n", n, e);
    // a prefill of n1 tokens, then decode steps: the state carries over
    molt_seq *s = NULL;
    float    *lg = fmalloc((size_t)n * V);
    CHECK(molt_seq_new(ctx, m, 64, &s) == MOLT_OK, "seq");
    CHECK(molt_seq_feed(ctx, s, ids, n1, 1, lg) == MOLT_OK, "prefill");
    for (int i = n1; i < n; i++)
        CHECK(molt_seq_feed(ctx, s, ids + i, 1, 0, lg + (size_t)i * V) == MOLT_OK, "decode");
    e = t_rel_diff(lg, pre, (size_t)n * V);
    CHECK(e <= 1e-5, "prefill %d + decode %d vs one prefill: %.3g", n1, n - n1, e);
    printf("  prefill %d + %d decode steps vs one prefill of %d: %.2g\n", n1, n - n1, n, e);
    molt_seq_free(s);
    // batched decode over slots == each sequence alone; batch of 1 bit-identical
    molt_slots *sl = NULL;
    molt_seq   *seq[NS] = {0};
    CHECK(molt_slots_new(ctx, m, NS, 64, &sl) == MOLT_OK, "slots: %s", molt_last_error(ctx));
    for (int i = 0; i < NS; i++)
        CHECK(molt_seq_new(ctx, m, 64, &seq[i]) == MOLT_OK, "seq");
    float  *lb = fmalloc((size_t)NS * V), *ls = fmalloc((size_t)V);
    int32_t next[NS], slot[NS];
    double  worst = 0;
    int     same = 1;
    for (int i = 0; sl && i < NS; i++) {
        int len = 1 + 6 * i;
        slot[i] = i;
        CHECK(molt_slot_prefill(ctx, sl, i, ids, len, 0, lb) == MOLT_OK, "slot prefill");
        CHECK(molt_seq_feed(ctx, seq[i], ids, len, 0, ls) == MOLT_OK, "feed");
        CHECK(t_rel_diff(lb, ls, (size_t)V) == 0.0, "slot %d prefill differs from a molt_seq", i);
        next[i] = t_argmax(ls, V);
    }
    for (int st = 0; sl && st < STEPS; st++) {
        CHECK(molt_slots_feed(ctx, sl, NS, slot, next, lb) == MOLT_OK, "slots feed");
        for (int i = 0; i < NS; i++) {
            molt_seq_feed(ctx, seq[i], &next[i], 1, 0, ls);
            worst = fmax(worst, t_rel_diff(lb + (size_t)i * V, ls, (size_t)V));
            same &= t_argmax(lb + (size_t)i * V, V) == t_argmax(ls, V);
            next[i] = t_argmax(ls, V);
        }
    }
    CHECK(worst <= 1e-5 && same, "slots vs single decode: %.3g (same tokens %d)", worst, same);
    printf("  step_rows: %d slots x %d steps vs each alone: %.2g, same greedy tokens\n", NS, STEPS,
           worst);
    // from the same prefill, a batch of one is bit-identical to the single-sequence step
    if (sl) {
        molt_seq_reset(seq[0]);
        CHECK(molt_slot_reset(ctx, sl, 0) == MOLT_OK, "slot reset");
        CHECK(molt_slot_prefill(ctx, sl, 0, ids, 9, 0, lb) == MOLT_OK, "slot prefill");
        CHECK(molt_seq_feed(ctx, seq[0], ids, 9, 0, ls) == MOLT_OK, "feed");
        for (int st = 0; st < 3; st++) {
            CHECK(molt_slots_feed(ctx, sl, 1, slot, ids + 9 + st, lb) == MOLT_OK, "feed 1");
            molt_seq_feed(ctx, seq[0], ids + 9 + st, 1, 0, ls);
            CHECK(t_rel_diff(lb, ls, (size_t)V) == 0.0, "a batch of one differs from molt_seq");
        }
    }
    for (int i = 0; i < NS; i++)
        molt_seq_free(seq[i]);
    molt_slots_free(sl);
    free(lb), free(ls), free(lg);
    // info: 2 layers × H 4 × P 8 × P 8 floats
    molt_model_info in;
    molt_model_get_info(m, &in);
    CHECK(in.state_bytes == 2 * 4 * 8 * 8 * 4 && in.kv_bytes_per_token == 0 && in.d_state == 8 &&
              in.ssm_heads == 4,
          "info: state %lld kv %lld d_state %d heads %d", (long long)in.state_bytes,
          (long long)in.kv_bytes_per_token, in.d_state, in.ssm_heads);
    printf("  info: state %lld bytes per sequence (2 layers x 4 heads x 8x8 floats), no KV cache\n",
           (long long)in.state_bytes);

    printf("4. save / load:\n");
    char dir[] = "/tmp/molt_gateloop_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, dir, "f32") == MOLT_OK, "save: %s", molt_last_error(ctx));
    molt_model    *m2 = NULL;
    molt_load_opts lo = {NULL, 1};
    CHECK(molt_model_load(ctx, dir, &lo, &m2) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (m2) {
        bool same_cfg = m2->cfg.n_layer == 2 && m2->cfg.kind[0] == LAYER_GATELOOP &&
                        m2->cfg.kind[1] == LAYER_GATELOOP &&
                        !memcmp(layer_gl(&m2->cfg, 1), layer_gl(&m->cfg, 1), sizeof(gateloop_cfg));
        CHECK(same_cfg, "the reloaded config differs");
        CHECK(m2->n_floats == m->n_floats &&
                  memcmp(m2->data, m->data, sizeof(float) * m->n_floats) == 0,
              "the reloaded parameters differ");
        float *again = tm_logits(ctx, m2, ids, n, false);
        CHECK(again && memcmp(again, pre, sizeof(float) * (size_t)n * V) == 0,
              "the reloaded model's logits differ");
        printf("  parameters and logits identical after a round trip through %s\n", dir);
        free(again);
        molt_model_free(m2);
    }
    tm_rmdir(dir);
    free(pre), free(step);
    molt_model_free(m);
}

// ----------------------------------------------------------------------------
// 5. parity with tests/ref/gateloop_ref.py

static void put(FILE *f, const void *p, size_t size, size_t n) {
    if (n && fwrite(p, size, n, f) != n) {
        fprintf(stderr, "write failed\n");
        exit(2);
    }
}

static const char *ref_script(const char *argv0) {
    static char path[4096];
    if (t_exists("tests/ref/gateloop_ref.py"))
        return "tests/ref/gateloop_ref.py";
    const char *slash = strrchr(argv0, '/');
    int         n = slash ? (int)(slash - argv0) : 1;
    snprintf(path, sizeof path, "%.*s/../../tests/ref/gateloop_ref.py", n, slash ? argv0 : ".");
    return path;
}

static void torch_cmp(const char *what, const float *got, const char *out, size_t *off, size_t len,
                      size_t n) {
    if (*off + 4 * n > len) {
        CHECK(0, "gateloop_ref.py output too short at %s", what);
        *off = len + 1;
        return;
    }
    float *ref = fmalloc(n);
    memcpy(ref, out + *off, 4 * n);
    *off += 4 * n;
    double e = t_rel_l2(got, ref, n);
    CHECK(e <= 1e-5, "torch %s: rel-L2 %.3g", what, e);
    printf("  torch %-22s rel-L2 %.2g\n", what, e);
    free(ref);
}

static void test_torch(const char *argv0) {
    printf("5. parity with tests/ref/gateloop_ref.py (float64 torch, complex128 state):\n");
    const char *py = getenv("MOLT_PYTHON") ? getenv("MOLT_PYTHON") : "/usr/bin/python3";
    char        cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("NOTICE: %s cannot import torch: PyTorch parity SKIPPED\n", py);
        return;
    }
    int         B = 2, T = 11, d = 12;
    molt_model *m = tm_random_model(ctx, json_of(1, d, 2, 4, 3), 17, 0.1f);
    if (!m)
        return;
    const gateloop_cfg *c = layer_gl(&m->cfg, 0);
    const gl_weights   *w = &m->layers[0].gl;
    int                 Di = c->d_inner, R = 5 * Di, H = c->H;
    size_t              nu = (size_t)B * T * d, nM = (size_t)B * H * T * T;
    size_t              nw[4] = {(size_t)R * d, (size_t)Di, (size_t)Di, (size_t)d * Di};
    const float        *wt[4] = {w->in_proj, w->a_bias, w->g_bias, w->out_proj};
    float *u = fmalloc(nu), *dy = fmalloc(nu), *dM = fmalloc(nM);
    t_seed(31);
    t_fill_uniform(u, nu, -1, 1);
    t_fill_uniform(dy, nu, -1, 1);
    t_fill_uniform(dM, nM, -1, 1);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char        fin[1024], fout[1024];
    snprintf(fin, sizeof fin, "%s/molt_glref_in_XXXXXX", tmp);
    snprintf(fout, sizeof fout, "%s/molt_glref_out_XXXXXX", tmp);
    int fdi = mkstemp(fin), fdo = mkstemp(fout);
    CHECK(fdi >= 0 && fdo >= 0, "mkstemp in %s", tmp);
    if (fdi < 0 || fdo < 0)
        return;
    close(fdo);
    FILE *f = fdopen(fdi, "wb");
    int32_t hdr[6] = {d, H, c->P, B, T, 0};
    put(f, "MOLTGLRI", 1, 8);
    put(f, hdr, 4, 6);
    put(f, u, 4, nu);
    for (int i = 0; i < 4; i++)
        put(f, wt[i], 4, nw[i]);
    put(f, dy, 4, nu);
    put(f, dM, 4, nM);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py, ref_script(argv0), fin, fout);
    int rc = system(cmd);
    CHECK(rc == 0, "%s failed (%d)", cmd, rc);
    size_t len = 0;
    char  *out = rc == 0 ? t_read_file(fout, &len) : NULL;
    remove(fin);
    remove(fout);
    if (out && (len < 8 || memcmp(out, "MOLTGLRO", 8) != 0)) {
        CHECK(0, "bad gateloop_ref.py output");
        free(out);
        out = NULL;
    }
    if (out) {
        // ours: training forward / backward, then the matrix and its backward
        float *y = fmalloc(nu), *du = fmalloc(nu), *M = fmalloc(nM);
        float *act = fmalloc(gl_train_act_floats(c, B, T));
        float *work = fmalloc(gl_train_work_floats(c, B, T));
        gl_grads g = {fmalloc(nw[0]), fmalloc(nw[1]), fmalloc(nw[2]), fmalloc(nw[3])};
        float   *gs[4] = {g.in_proj, g.a_bias, g.g_bias, g.out_proj};
        for (int i = 0; i < 4; i++)
            memset(gs[i], 0, sizeof(float) * nw[i]);
        gl_train_forward(TEX, y, act, u, B, T, c, w, work);
        gl_train_backward(TEX, du, &g, dy, act, u, B, T, c, w, work);
        size_t      off = 8;
        const char *names[4] = {"in_proj", "a_bias", "g_bias", "out_proj"};
        char        buf[64];
        torch_cmp("train y", y, out, &off, len, nu);
        torch_cmp("train du", du, out, &off, len, nu);
        for (int i = 0; i < 4; i++) {
            snprintf(buf, sizeof buf, "train d%s", names[i]);
            torch_cmp(buf, gs[i], out, &off, len, nw[i]);
        }
        float *mact = fmalloc(gl_mat_act_floats(c, B, T));
        float *mwork = fmalloc(gl_mat_work_floats(c, B, T));
        for (int i = 0; i < 2; i++)
            memset(gs[i], 0, sizeof(float) * nw[i]);
        gl_mat_forward(TEX, M, mact, u, B, T, c, w, mwork);
        gl_mat_backward(TEX, du, &g, dM, mact, u, B, T, c, w, mwork);
        torch_cmp("matrix M", M, out, &off, len, nM);
        torch_cmp("matrix du", du, out, &off, len, nu);
        torch_cmp("matrix din_proj", g.in_proj, out, &off, len, nw[0]);
        torch_cmp("matrix da_bias", g.a_bias, out, &off, len, nw[1]);
        CHECK(off == len, "gateloop_ref.py output: %zu bytes, %zu read", len, off);
        free(y), free(du), free(M), free(act), free(work), free(mact), free(mwork);
        for (int i = 0; i < 4; i++)
            free(gs[i]);
        free(out);
    }
    free(u), free(dy), free(dM);
    molt_model_free(m);
}

// ----------------------------------------------------------------------------
// 6. attention transfer

static void test_transfer(void) {
    printf("6. attention transfer (stories260K teacher):\n");
    const char *path = t_shared("models/stories260K/stories260K.bin");
    if (!t_have(path, "GateLoop attention transfer"))
        return;
    molt_model    *t = NULL, *s = NULL;
    molt_load_opts lo = {NULL, 1};
    CHECK(molt_model_load(ctx, path, &lo, &t) == MOLT_OK, "teacher: %s", molt_last_error(ctx));
    if (t)
        CHECK(mohawk_student_gateloop(ctx, t, 0, "transfer", NULL, NULL, 0, 1, &s) == MOLT_OK,
              "student: %s", molt_last_error(ctx));
    if (!t || !s) {
        molt_model_free(t);
        return;
    }
    const model_cfg *tc = &t->cfg;
    int     T = 40, d = tc->d_model, H = tc->n_head, KV = tc->n_kv_head, hd = tc->head_dim;
    int     l = 2, grp = H / KV;
    float  *u = fmalloc((size_t)T * d), *q = fmalloc((size_t)T * H * hd);
    float  *k = fmalloc((size_t)T * KV * hd), *M = fmalloc((size_t)H * T * T);
    float  *work = fmalloc(layer_mixer(s, l)->mat_work_floats(s, l, T));
    double *ref = dmalloc((size_t)H * T * T);
    t_seed(44);
    t_fill_uniform(u, (size_t)T * d, -1, 1);
    k_matmul(TEX, q, u, t->layers[l].wq, NULL, T, d, H * hd, 0);
    k_matmul(TEX, k, u, t->layers[l].wk, NULL, T, d, KV * hd, 0);
    k_rope(TEX, q, H * hd, T, H, hd, 0, T, NULL, t->rope_cos, t->rope_sin, 0);
    k_rope(TEX, k, KV * hd, T, KV, hd, 0, T, NULL, t->rope_cos, t->rope_sin, 0);
    float *ab = s->data + (s->layers[l].gl.a_bias - s->data);
    CHECK(fabsf(1.0f / (1.0f + expf(-ab[0])) - 0.98f) < 1e-6f, "initial decay %g, want 0.98",
          (double)(1.0f / (1.0f + expf(-ab[0]))));
    for (int pass = 0; pass < 2; pass++) {
        double decay = pass ? 0.98 : 1.0;
        if (!pass)
            for (int i = 0; i < H * hd / 2; i++)
                ab[i] = 40.0f; // |a| = sigmoid(40): 1 to float precision
        else
            for (int i = 0; i < H * hd / 2; i++)
                ab[i] = (float)log(0.98 / 0.02);
        layer_mixer(s, l)->materialize(TEX, s, l, M, u, T, work);
        for (int h = 0; h < H; h++)
            for (int a = 0; a < T; a++)
                for (int b = 0; b < T; b++) {
                    double v = 0;
                    for (int i = 0; b <= a && i < hd; i++)
                        v += (double)q[(size_t)a * H * hd + h * hd + i] *
                             (double)k[(size_t)b * KV * hd + (h / grp) * hd + i];
                    ref[((size_t)h * T + a) * T + b] =
                        b <= a ? v * 0.02 / sqrt((double)hd) * pow(decay, a - b) : 0.0;
                }
        double e = rel_max(M, ref, (size_t)H * T * T);
        CHECK(e <= 1e-5, "layer %d, |a| = %g: student M vs teacher scores %.3g", l, decay, e);
        printf("  layer %d: student M (|a| = %.2f) vs the teacher's 0.02·q·k/sqrt(hd)·%.2f^(t-s): "
               "%.2g\n",
               l, decay, decay, e);
    }
    free(u), free(q), free(k), free(M), free(work), free(ref);
    molt_model_free(s);
    molt_model_free(t);
}

int main(int argc, char **argv) {
    (void)argc;
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    test_threads(2);
    test_modes();
    test_gradients();
    test_state();
    test_torch(argv[0]);
    test_transfer();
    molt_ctx_free(ctx);
    return t_done("test_gateloop");
}
