/*
 * test_ssm_mixer.c — mixer-level checks of src/mixers/ssm_mixer.c, for
 * Mamba-2 and DiscreteMamba2 with random weights (scaled so values stay O(1)):
 *   1. recurrent == chunked (chunk 1, 7, 16, 64) == materialize path
 *      (y_pre = M·x, then D-free gate / norm / out_proj done here in double)
 *      for T in 1…300, rel-L2 ≤ 1e-5;
 *   2. pieces through the state (chunked T1, then tokens one by one, then a
 *      chunked piece) == one pass, outputs and final states;
 *   3. parity with tests/ref/ssm_ref.py (float64 PyTorch, written from
 *      ALGORITHMS.md): y, final conv/ssm states from a random initial state,
 *      and M. Skipped (with a notice) when /usr/bin/python3 has no torch.
 */
#include "kernels/kernels.h"
#include "kernels/ssm.h"
#include "mixers/ssm_mixer.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-5

static float *fmalloc(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static double g_max_err[6];
static const char *g_what[6] = {"chunked/recurrent", "materialize", "pieces", "torch y",
                                "torch state", "torch M"};
static bool close_track(int m, const char *what, const float *got, const float *want, size_t n) {
    double e = t_rel_l2(got, want, n);
    if (e > g_max_err[m] || e != e)
        g_max_err[m] = e;
    return t_close(what, got, want, n, -1, TOL);
}

// ----------------------------------------------------------------------------
// a mixer under test: config + owned weights

typedef struct mixer {
    const char *name;
    ssm_cfg     c;
    ssm_weights w;
    float      *buf[11];
    int         flags; // 1 in_proj_b, 2 conv_b, 4 z_bias, 8 out_proj_b (file format)
} mixer;

static float *rnd(mixer *m, int slot, size_t n, float scale, float shift) {
    float *p = fmalloc(n);
    t_fill_normal(p, n, scale);
    for (size_t i = 0; i < n; i++)
        p[i] += shift;
    m->buf[slot] = p;
    return p;
}

static void mixer_init(mixer *m, const char *name, ssm_kind kind, int d, int H, int P, int N, int G,
                       int K, int d_mlp, int flags) {
    memset(m, 0, sizeof *m);
    m->name = name;
    m->flags = flags;
    ssm_cfg *c = &m->c;
    c->kind = kind;
    c->d_model = d;
    c->d_inner = H * P;
    c->H = H, c->P = P, c->N = N, c->G = G, c->K = K, c->d_mlp = d_mlp;
    c->chunk = 16;
    c->norm_eps = 1e-5f;
    c->dt_limit_lo = 0.0f;
    c->dt_limit_hi = INFINITY;
    const char *err = ssm_cfg_check(c);
    CHECK(err == NULL, "%s: cfg_check: %s", name, err ? err : "");
    int          R = ssm_in_proj_rows(c), Cc = ssm_conv_dim(c), Di = c->d_inner;
    ssm_weights *w = &m->w;
    w->in_proj = rnd(m, 0, (size_t)R * d, 1.0f / sqrtf((float)d), 0.0f);
    w->in_proj_b = flags & 1 ? rnd(m, 1, (size_t)R, 0.2f, 0.0f) : NULL;
    w->conv_w = rnd(m, 2, (size_t)Cc * K, 0.6f, 0.0f);
    w->conv_b = flags & 2 ? rnd(m, 3, (size_t)Cc, 0.2f, 0.0f) : NULL;
    if (kind == SSM_MAMBA2) {
        w->dt_bias = rnd(m, 4, (size_t)H, 0.5f, -1.5f);
        float *A_log = rnd(m, 5, (size_t)H, 0.0f, 0.0f);
        for (int h = 0; h < H; h++)
            A_log[h] = logf(t_uniform(1.0f, 16.0f)); // A ~ U(1,16), §1.1
        w->A_log = A_log;
        w->norm_w = rnd(m, 7, (size_t)Di, 0.1f, 1.0f);
    }
    w->D = rnd(m, 6, (size_t)H, 0.5f, 1.0f);
    w->z_bias = flags & 4 ? rnd(m, 8, (size_t)Di, 0.5f, 0.0f) : NULL;
    w->out_proj = rnd(m, 9, (size_t)d * Di, 1.0f / sqrtf((float)Di), 0.0f);
    w->out_proj_b = flags & 8 ? rnd(m, 10, (size_t)d, 0.2f, 0.0f) : NULL;
}

static void mixer_free(mixer *m) {
    for (int i = 0; i < 11; i++)
        free(m->buf[i]);
}

// y = forward(u) with chunk Q (or recurrent when Q == 0); st may be NULL
static void fwd(const mixer *m, float *y, const float *u, int T, int Q, ssm_state *st) {
    ssm_cfg c = m->c;
    c.chunk = Q > 0 ? Q : c.chunk;
    size_t nw = ssm_mixer_work(&c, T);
    float *work = fmalloc(nw);
    for (size_t i = 0; i < nw; i++)
        work[i] = NAN; // every scratch read must have been written first
    ssm_mixer_forward(TEX, y, u, T, &c, &m->w, st, Q > 0 ? SSM_MODE_CHUNKED : SSM_MODE_RECURRENT,
                      work);
    free(work);
}

// ----------------------------------------------------------------------------
// materialize path: M from the library, everything else here in double

static double silu_d(double v) { return v / (1.0 + exp(-v)); }

static void materialize_path(const mixer *m, float *y, const float *u, int T) {
    const ssm_cfg     *c = &m->c;
    const ssm_weights *w = &m->w;
    int R = ssm_in_proj_rows(c), Cc = ssm_conv_dim(c), Di = c->d_inner, H = c->H, P = c->P;
    int d = c->d_model, K = c->K, G = c->G;
    size_t  nw = ssm_mixer_work(c, T);
    float  *work = fmalloc(nw), *M = fmalloc((size_t)H * T * T);
    double *zx = calloc((size_t)T * R, sizeof(double)), *xc = calloc((size_t)T * Cc, sizeof(double));
    double *g = calloc((size_t)Di, sizeof(double));
    ssm_mixer_materialize(TEX, M, u, T, c, w, work);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            double s = w->in_proj_b ? (double)w->in_proj_b[r] : 0.0;
            for (int i = 0; i < d; i++)
                s += (double)u[(size_t)t * d + i] * (double)w->in_proj[(size_t)r * d + i];
            zx[(size_t)t * R + r] = s;
        }
    int oxbc = c->kind == SSM_MAMBA2 ? 2 * c->d_mlp + Di : 0;
    int oz = c->kind == SSM_MAMBA2 ? 2 * c->d_mlp : Cc;
    for (int t = 0; t < T; t++)
        for (int ch = 0; ch < Cc; ch++) {
            double s = w->conv_b ? (double)w->conv_b[ch] : 0.0;
            for (int k = 0; k < K; k++) {
                int tau = t - (K - 1) + k;
                if (tau >= 0)
                    s += (double)w->conv_w[(size_t)ch * K + k] * zx[(size_t)tau * R + oxbc + ch];
            }
            xc[(size_t)t * Cc + ch] = c->kind == SSM_MAMBA2 ? silu_d(s) : s;
        }
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++)
            for (int p = 0; p < P; p++) {
                double s = 0;
                for (int j = 0; j <= t; j++)
                    s += (double)M[((size_t)h * T + t) * T + j] * xc[(size_t)j * Cc + h * P + p];
                g[h * P + p] = s; // y_pre (D included in M)
            }
        const double *z = zx + (size_t)t * R + oz;
        if (c->kind == SSM_MAMBA2) {
            int gs = Di / G;
            for (int i = 0; i < Di; i++)
                g[i] *= silu_d(z[i]);
            for (int gr = 0; gr < G; gr++) {
                double ss = 0;
                for (int i = 0; i < gs; i++)
                    ss += g[gr * gs + i] * g[gr * gs + i];
                double r = 1.0 / sqrt(ss / gs + (double)c->norm_eps);
                for (int i = 0; i < gs; i++)
                    g[gr * gs + i] *= r * (double)w->norm_w[gr * gs + i];
            }
        } else {
            for (int i = 0; i < Di; i++)
                g[i] *= silu_d(z[i] + (w->z_bias ? (double)w->z_bias[i] : 0.0));
        }
        for (int o = 0; o < d; o++) {
            double s = w->out_proj_b ? (double)w->out_proj_b[o] : 0.0;
            for (int i = 0; i < Di; i++)
                s += (double)w->out_proj[(size_t)o * Di + i] * g[i];
            y[(size_t)t * d + o] = (float)s;
        }
    }
    free(work), free(M), free(zx), free(xc), free(g);
}

// ----------------------------------------------------------------------------
// 1. modes agree; 2. pieces through the state

static void test_modes(const mixer *m, int T) {
    int    d = m->c.d_model;
    float *u = fmalloc((size_t)T * d), *yr = fmalloc((size_t)T * d), *y = fmalloc((size_t)T * d);
    t_fill_normal(u, (size_t)T * d, 1.0f);
    fwd(m, yr, u, T, 0, NULL);
    char buf[160];
    const int Qs[] = {1, 7, 16, 64};
    for (int qi = 0; qi < 4; qi++) {
        fwd(m, y, u, T, Qs[qi], NULL);
        snprintf(buf, sizeof buf, "%s T%d: chunked Q%d vs recurrent", m->name, T, Qs[qi]);
        close_track(0, buf, y, yr, (size_t)T * d);
    }
    materialize_path(m, y, u, T);
    snprintf(buf, sizeof buf, "%s T%d: materialize path vs recurrent", m->name, T);
    close_track(1, buf, y, yr, (size_t)T * d);
    free(u), free(yr), free(y);
}

static void state_view(const mixer *m, float *buf, ssm_state *st) {
    st->conv = buf;
    st->ssm = buf + (size_t)ssm_conv_dim(&m->c) * (size_t)(m->c.K - 1);
}

static void test_pieces(const mixer *m, int T1, int T2, int T3) {
    int    d = m->c.d_model, T = T1 + T2 + T3;
    size_t ns = ssm_state_floats(&m->c);
    float *u = fmalloc((size_t)T * d), *y1 = fmalloc((size_t)T * d), *y2 = fmalloc((size_t)T * d);
    float *s0 = fmalloc(ns), *s1 = fmalloc(ns), *s2 = fmalloc(ns);
    ssm_state st1, st2;
    state_view(m, s1, &st1);
    state_view(m, s2, &st2);
    t_fill_normal(u, (size_t)T * d, 1.0f);
    t_fill_normal(s0, ns, 0.5f);
    memcpy(s1, s0, sizeof(float) * ns);
    memcpy(s2, s0, sizeof(float) * ns);
    fwd(m, y1, u, T, 16, &st1); // one pass
    fwd(m, y2, u, T1, 7, &st2);
    for (int t = T1; t < T1 + T2; t++)
        fwd(m, y2 + (size_t)t * d, u + (size_t)t * d, 1, 0, &st2);
    fwd(m, y2 + (size_t)(T1 + T2) * d, u + (size_t)(T1 + T2) * d, T3, 64, &st2);
    char buf[160];
    snprintf(buf, sizeof buf, "%s pieces %d+%d+%d: y", m->name, T1, T2, T3);
    close_track(2, buf, y2, y1, (size_t)T * d);
    snprintf(buf, sizeof buf, "%s pieces %d+%d+%d: final state", m->name, T1, T2, T3);
    close_track(2, buf, s2, s1, ns);
    // all-recurrent with a state == chunked with the same state
    memcpy(s1, s0, sizeof(float) * ns);
    memcpy(s2, s0, sizeof(float) * ns);
    fwd(m, y1, u, T, 0, &st1);
    fwd(m, y2, u, T, 16, &st2);
    snprintf(buf, sizeof buf, "%s T%d with state: chunked vs recurrent y", m->name, T);
    close_track(2, buf, y2, y1, (size_t)T * d);
    snprintf(buf, sizeof buf, "%s T%d with state: chunked vs recurrent state", m->name, T);
    close_track(2, buf, s2, s1, ns);
    free(u), free(y1), free(y2), free(s0), free(s1), free(s2);
}

// ----------------------------------------------------------------------------
// 3. parity with tests/ref/ssm_ref.py

typedef struct tcase {
    const mixer *m;
    int          T;
    float       *u, *st0; // input and initial state (ssm_state_floats)
} tcase;

static void put(FILE *f, const void *p, size_t size, size_t n) {
    if (n && fwrite(p, size, n, f) != n) {
        fprintf(stderr, "write failed\n");
        exit(2);
    }
}

static void write_case(FILE *f, const tcase *k) {
    const ssm_cfg     *c = &k->m->c;
    const ssm_weights *w = &k->m->w;
    int32_t hdr[12] = {c->kind, c->d_model, c->d_inner, c->H, c->P, c->N, c->G, c->K, c->d_mlp,
                       k->T,    k->m->flags, 0};
    float   hf[4] = {c->norm_eps, c->dt_limit_lo, c->dt_limit_hi, 0.0f};
    size_t  R = (size_t)ssm_in_proj_rows(c), Cc = (size_t)ssm_conv_dim(c), Di = (size_t)c->d_inner;
    size_t  d = (size_t)c->d_model, H = (size_t)c->H;
    put(f, hdr, 4, 12);
    put(f, hf, 4, 4);
    put(f, k->u, 4, (size_t)k->T * d);
    put(f, w->in_proj, 4, R * d);
    if (w->in_proj_b)
        put(f, w->in_proj_b, 4, R);
    put(f, w->conv_w, 4, Cc * (size_t)c->K);
    if (w->conv_b)
        put(f, w->conv_b, 4, Cc);
    if (c->kind == SSM_MAMBA2) {
        put(f, w->dt_bias, 4, H);
        put(f, w->A_log, 4, H);
    }
    put(f, w->D, 4, H);
    if (c->kind == SSM_MAMBA2)
        put(f, w->norm_w, 4, Di);
    if (w->z_bias)
        put(f, w->z_bias, 4, Di);
    put(f, w->out_proj, 4, d * Di);
    if (w->out_proj_b)
        put(f, w->out_proj_b, 4, d);
    put(f, k->st0, 4, ssm_state_floats(c)); // conv [Cc,K-1] then ssm [H,P,N]
}

static const char *ref_script(const char *argv0) {
    static char path[4096];
    if (t_exists("tests/ref/ssm_ref.py"))
        return "tests/ref/ssm_ref.py";
    const char *slash = strrchr(argv0, '/');
    int         n = slash ? (int)(slash - argv0) : 1;
    snprintf(path, sizeof path, "%.*s/../../tests/ref/ssm_ref.py", n, slash ? argv0 : ".");
    return path;
}

static void test_torch(const char *argv0, tcase *cases, int n_cases) {
    const char *py = getenv("MOLT_PYTHON") ? getenv("MOLT_PYTHON") : "/usr/bin/python3";
    char        cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("NOTICE: %s cannot import torch: PyTorch parity SKIPPED\n", py);
        return;
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char        fin[1024], fout[1024];
    snprintf(fin, sizeof fin, "%s/molt_ssm_in_XXXXXX", tmp);
    snprintf(fout, sizeof fout, "%s/molt_ssm_out_XXXXXX", tmp);
    int fdi = mkstemp(fin), fdo = mkstemp(fout);
    CHECK(fdi >= 0 && fdo >= 0, "mkstemp in %s", tmp);
    if (fdi < 0 || fdo < 0)
        return;
    close(fdo);
    FILE *f = fdopen(fdi, "wb");
    put(f, "MOLTSSMI", 1, 8);
    int32_t vn[2] = {1, n_cases};
    put(f, vn, 4, 2);
    for (int i = 0; i < n_cases; i++)
        write_case(f, &cases[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py, ref_script(argv0), fin, fout);
    int rc = system(cmd);
    CHECK(rc == 0, "%s failed (%d)", cmd, rc);
    size_t len = 0;
    char  *out = rc == 0 ? t_read_file(fout, &len) : NULL;
    remove(fin);
    remove(fout);
    if (!out)
        return;
    CHECK(len >= 16 && memcmp(out, "MOLTSSMO", 8) == 0, "bad ssm_ref.py output");
    size_t off = 16;
    for (int i = 0; i < n_cases; i++) {
        const tcase   *k = &cases[i];
        const ssm_cfg *c = &k->m->c;
        size_t nY = (size_t)k->T * c->d_model, nS = ssm_state_floats(c);
        size_t nM = (size_t)c->H * k->T * k->T;
        if (off + 4 * (nY + nS + nM) > len) {
            CHECK(0, "ssm_ref.py output too short");
            break;
        }
        float *ry = fmalloc(nY), *rs = fmalloc(nS), *rM = fmalloc(nM);
        memcpy(ry, out + off, 4 * nY);
        memcpy(rs, out + off + 4 * nY, 4 * nS);
        memcpy(rM, out + off + 4 * (nY + nS), 4 * nM);
        off += 4 * (nY + nS + nM);
        float *y = fmalloc(nY), *s = fmalloc(nS), *M = fmalloc(nM);
        float *work = fmalloc(ssm_mixer_work(c, k->T));
        char   buf[160];
        for (int mode = 0; mode < 2; mode++) { // chunked (Q 16), recurrent
            ssm_state st;
            state_view(k->m, s, &st);
            memcpy(s, k->st0, 4 * nS);
            fwd(k->m, y, k->u, k->T, mode == 0 ? 16 : 0, &st);
            snprintf(buf, sizeof buf, "torch %s T%d %s: y", k->m->name, k->T,
                     mode ? "recurrent" : "chunked");
            close_track(3, buf, y, ry, nY);
            snprintf(buf, sizeof buf, "torch %s T%d %s: final state", k->m->name, k->T,
                     mode ? "recurrent" : "chunked");
            close_track(4, buf, s, rs, nS);
        }
        ssm_mixer_materialize(TEX, M, k->u, k->T, c, &k->m->w, work);
        snprintf(buf, sizeof buf, "torch %s T%d: M", k->m->name, k->T);
        close_track(5, buf, M, rM, nM);
        free(ry), free(rs), free(rM), free(y), free(s), free(M), free(work);
    }
    CHECK(off == len, "ssm_ref.py output: %zu bytes, %zu read", len, off);
    free(out);
}

// ----------------------------------------------------------------------------

static void test_cfg_check(void) {
    ssm_cfg c = {.kind = SSM_MAMBA2, .d_model = 64, .d_inner = 128, .H = 8, .P = 16, .N = 16,
                 .G = 2, .K = 4, .chunk = 64, .norm_eps = 1e-5f, .dt_limit_hi = INFINITY};
    CHECK(ssm_cfg_check(&c) == NULL, "valid cfg refused");
    CHECK(ssm_in_proj_rows(&c) == 2 * 128 + 2 * 2 * 16 + 8, "mamba2 in_proj rows");
    CHECK(ssm_state_floats(&c) == (size_t)(128 + 64) * 3 + 8 * 16 * 16, "state floats");
    ssm_cfg b = c;
    b.d_inner = 120;
    CHECK(ssm_cfg_check(&b) != NULL, "H*P != d_inner accepted");
    b = c, b.G = 3;
    CHECK(ssm_cfg_check(&b) != NULL, "H %% G != 0 accepted");
    b = c, b.chunk = 0;
    CHECK(ssm_cfg_check(&b) != NULL, "chunk 0 accepted");
    b = c, b.N = 0;
    CHECK(ssm_cfg_check(&b) != NULL, "N 0 accepted");
    b = c, b.K = 0;
    CHECK(ssm_cfg_check(&b) != NULL, "K 0 accepted");
    b = c, b.kind = SSM_DISCRETE, b.G = 8;
    CHECK(ssm_cfg_check(&b) == NULL, "discrete with expand 2 refused");
    CHECK(ssm_in_proj_rows(&b) == 2 * 128 + 2 * 8 * 16 + 8, "discrete in_proj rows");
}

int main(int argc, char **argv) {
    (void)argc;
    t_seed(42);
    test_cfg_check();
    enum { NM = 5 };
    mixer ms[NM];
    mixer_init(&ms[0], "mamba2 G1", SSM_MAMBA2, 64, 8, 16, 16, 1, 4, 0, 2);
    mixer_init(&ms[1], "mamba2 G2+mlp+bias+dtlim", SSM_MAMBA2, 64, 8, 16, 16, 2, 4, 8, 1 | 2 | 8);
    ms[1].c.dt_limit_lo = 0.05f, ms[1].c.dt_limit_hi = 0.5f;
    mixer_init(&ms[2], "discrete G8", SSM_DISCRETE, 64, 8, 8, 16, 8, 4, 0, 2 | 4);
    mixer_init(&ms[3], "discrete G4", SSM_DISCRETE, 64, 8, 8, 16, 4, 4, 0, 1 | 2 | 4 | 8);
    mixer_init(&ms[4], "discrete expand2 G2 K2", SSM_DISCRETE, 64, 8, 16, 16, 2, 2, 0, 0);

    const int Ts[] = {1, 2, 7, 16, 17, 64, 65, 129, 300};
    for (int i = 0; i < NM; i++)
        for (int ti = 0; ti < 9; ti++)
            test_modes(&ms[i], Ts[ti]);
    for (int i = 0; i < NM; i++) {
        test_pieces(&ms[i], 37, 5, 50);
        test_pieces(&ms[i], 1, 2, 1);
        test_pieces(&ms[i], 16, 1, 65);
    }

    // parity cases: per mixer T 1 (zero state), 17 and 300 (random state), 65 (zero state)
    tcase cases[NM * 4];
    int   nc = 0;
    const int   TT[4] = {1, 17, 65, 300};
    const bool  RS[4] = {false, true, false, true};
    for (int i = 0; i < NM; i++)
        for (int j = 0; j < 4; j++) {
            tcase *k = &cases[nc++];
            k->m = &ms[i];
            k->T = TT[j];
            k->u = fmalloc((size_t)k->T * ms[i].c.d_model);
            t_fill_normal(k->u, (size_t)k->T * ms[i].c.d_model, 1.0f);
            size_t ns = ssm_state_floats(&ms[i].c);
            k->st0 = fmalloc(ns);
            if (RS[j])
                t_fill_normal(k->st0, ns, 0.5f);
            else
                memset(k->st0, 0, sizeof(float) * ns);
        }
    test_torch(argv[0], cases, nc);
    for (int i = 0; i < nc; i++)
        free(cases[i].u), free(cases[i].st0);
    for (int i = 0; i < NM; i++)
        mixer_free(&ms[i]);
    for (int m = 0; m < 6; m++)
        printf("max rel-L2 %-18s %.3g\n", g_what[m], g_max_err[m]);
    return t_done("test_ssm_mixer");
}
