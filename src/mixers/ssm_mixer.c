/*
 * ssm_mixer.c — the Mamba-2 and DiscreteMamba2 (Llamba) token mixers over the
 * kernels of kernels/ssm.h. Contracts in mixers/ssm_mixer.h; equations in
 * shared/docs/ALGORITHMS.md §1.2 (Mamba-2, as HF Mamba2Mixer.torch_forward /
 * mamba_ssm with the per-group gated RMSNorm) and §2.2 (cartesia Llamba).
 *
 * Letters: T tokens, d = d_model, Di = d_inner = H·P, H heads, P head dim,
 * N state, G B/C heads, K conv width, Cc = Di + 2·G·N, R = in_proj rows.
 *
 * Forward, as a list of stages, each one backend op (the same ops the
 * training forward and backward in ssm_train.c call):
 *   1 proj     zx[T,R] = u · in_projᵀ (+b);  xr[T,Cc] = the xBC columns
 *   2 conv     xc = conv1d_causal(ex, xr) (+conv_b); chunked: one call over T;
 *              recurrent: token by token; batched decode: conv1d_causal_rows
 *   3 prep     ssm_prep (kernels/ssm_rows.h): act(xc) (SiLU for Mamba-2,
 *              identity for Discrete) → x [T,Di] (head-major), B, C [T,G,N];
 *              Mamba-2:  Δ = clamp(softplus(dt + dt_bias)), dA = Δ·(-exp(A_log)), X = x·Δ
 *              Discrete: dA = -softplus(A_log_t),                             X = x
 *   4 scan     ys = SSD(X, dA, B, C)  (ssd_scan_chunked or ssd_step per token)
 *   5 gate     ssm_gate: y_pre = ys + D[h]·x;
 *              Mamba-2:  g = y_pre·silu(z), RMSNorm per group of Di/G, × norm_w
 *              Discrete: g = y_pre·silu(z + z_bias)
 *   6 out      y = g · out_projᵀ (+b)
 * forward and step_rows (inference) multiply by the typed views in_proj_t /
 * out_proj_t (k_matmul_w); materialize (analysis) by the f32 master.
 * Work buffers (floats) hold every intermediate: see mixer_bufs.
 */
#include "mixers/ssm_mixer.h"

#include "core/core.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"
#include "kernels/ssm_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// dimensions

int ssm_conv_dim(const ssm_cfg *c) { return c->d_inner + 2 * c->G * c->N; }

int ssm_in_proj_rows(const ssm_cfg *c) {
    int Cc = ssm_conv_dim(c);
    if (c->kind == SSM_MAMBA2)
        return 2 * c->d_mlp + c->d_inner + Cc + c->H; // [z0, x0, z, xBC, dt]
    return Cc + c->d_inner + c->H;                    // [xBC, z, A_log]
}

size_t ssm_state_floats(const ssm_cfg *c) {
    return (size_t)ssm_conv_dim(c) * (size_t)(c->K - 1) +
           (size_t)c->H * (size_t)c->P * (size_t)c->N;
}

const char *ssm_cfg_check(const ssm_cfg *c) {
    if (c->kind != SSM_MAMBA2 && c->kind != SSM_DISCRETE)
        return "ssm: unknown mixer kind";
    if (c->d_model < 1 || c->d_inner < 1)
        return "ssm: d_model and d_inner must be >= 1";
    if (c->H < 1 || c->P < 1 || c->N < 1 || c->G < 1)
        return "ssm: heads, head_dim, d_state and n_groups must be >= 1";
    if (c->K < 1)
        return "ssm: conv kernel width must be >= 1";
    if (c->chunk < 1)
        return "ssm: chunk size must be >= 1";
    if ((long long)c->H * c->P != c->d_inner)
        return "ssm: heads * head_dim != d_inner";
    if (c->H % c->G != 0)
        return "ssm: heads must be a multiple of n_groups (n_qk_heads)";
    if (c->d_mlp < 0)
        return "ssm: d_mlp must be >= 0";
    if (c->kind == SSM_DISCRETE && c->d_mlp != 0)
        return "ssm: d_mlp is a Mamba-2 option (must be 0 for DiscreteMamba2)";
    if (c->kind == SSM_MAMBA2) {
        if (!(c->norm_eps >= 0.0f))
            return "ssm: norm_eps must be >= 0";
        if (!(c->dt_limit_lo >= 0.0f) || !(c->dt_limit_hi >= c->dt_limit_lo))
            return "ssm: dt_limit must satisfy 0 <= lo <= hi";
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// work buffers

typedef struct mixer_bufs {
    float *zx;   // [T,R]    in_proj output
    float *xr;   // [T,Cc]   raw xBC (conv input)
    float *xc;   // [T,Cc]   conv output, before the activation
    float *x;    // [T,Di]   post-activation x (the D·x skip)
    float *X;    // [T,H,P]  scan input: x·Δ (Mamba-2); x itself (Discrete)
    float *B;    // [T,G,N]
    float *C;    // [T,G,N]
    float *dA;   // [T,H]    log decay
    float *dlt;  // [T,H]    Δ (Mamba-2)
    float *ys;   // [T,Di]   scan output, then y_pre, then the gated g
    float *cst;  // [Cc,K-1] conv state when the caller gives none (recurrent)
    float *sst;  // [H,P,N]  ssm state when the caller gives none (recurrent)
    float *scan; // ssd_chunked_work floats
} mixer_bufs;

static size_t mixer_bufs_floats(const ssm_cfg *c, int T, mixer_bufs *b, float *work) {
    size_t Tz = (size_t)(T > 0 ? T : 0), Cc = (size_t)ssm_conv_dim(c), Di = (size_t)c->d_inner;
    size_t GN = (size_t)c->G * c->N, H = (size_t)c->H;
    int    mamba = c->kind == SSM_MAMBA2;
    size_t sizes[13] = {Tz * (size_t)ssm_in_proj_rows(c),
                        Tz * Cc,
                        Tz * Cc,
                        Tz * Di,
                        mamba ? Tz * Di : 0,
                        Tz * GN,
                        Tz * GN,
                        Tz * H,
                        Tz * H,
                        Tz * Di,
                        Cc * (size_t)(c->K - 1),
                        H * (size_t)c->P * c->N,
                        ssd_chunked_work(T, c->H, c->P, c->N, c->G, c->chunk)};
    mixer_bufs dummy;
    if (!b)
        b = &dummy;
    float **ptrs[13] = {&b->zx, &b->xr,  &b->xc, &b->x,   &b->X,   &b->B,   &b->C,
                        &b->dA, &b->dlt, &b->ys, &b->cst, &b->sst, &b->scan};
    size_t off = 0;
    for (int i = 0; i < 13; i++) {
        *ptrs[i] = work ? work + off : NULL;
        off += sizes[i];
    }
    if (!mamba)
        b->X = b->x;
    return off;
}

size_t ssm_mixer_work(const ssm_cfg *c, int T) { return mixer_bufs_floats(c, T, NULL, NULL); }

// column offsets inside a zx row
static int off_z(const ssm_cfg *c) {
    return c->kind == SSM_MAMBA2 ? 2 * c->d_mlp : ssm_conv_dim(c);
}
static int off_xbc(const ssm_cfg *c) {
    return c->kind == SSM_MAMBA2 ? 2 * c->d_mlp + c->d_inner : 0;
}
static int off_dt(const ssm_cfg *c) { // dt (Mamba-2) or A_log (Discrete)
    return c->kind == SSM_MAMBA2 ? 2 * c->d_mlp + c->d_inner + ssm_conv_dim(c)
                                 : ssm_conv_dim(c) + c->d_inner;
}

void ssm_in_proj_cols(const ssm_cfg *c, int *o_z, int *o_xbc, int *o_dt) {
    if (o_z)
        *o_z = off_z(c);
    if (o_xbc)
        *o_xbc = off_xbc(c);
    if (o_dt)
        *o_dt = off_dt(c);
}

ssm_rows_cfg ssm_rows_of(const ssm_cfg *c) {
    return (ssm_rows_cfg){c->kind == SSM_MAMBA2, c->H, c->P, c->G, c->N, c->dt_limit_lo,
                          c->dt_limit_hi, c->norm_eps};
}

// ----------------------------------------------------------------------------
// stages

// the typed view, or the f32 matrix when the struct was built without one
static molt_w tw(molt_w t, const float *f) { return t.data ? t : molt_w_f32(f); }

// 1  zx = u·in_projᵀ (+b);  xr = zx[:, xBC]. typed: the inference paths read
// the typed view (k_matmul_w), materialize (analysis) the f32 master
static void stage_proj(const molt_exec *ex, const mixer_bufs *b, const float *u, int T,
                       const ssm_cfg *c, const ssm_weights *w, bool typed) {
    int R = ssm_in_proj_rows(c), Cc = ssm_conv_dim(c), o = off_xbc(c);
    if (typed)
        k_matmul_w(ex, b->zx, u, tw(w->in_proj_t, w->in_proj), w->in_proj_b, T, c->d_model, R, 0);
    else
        k_matmul(ex, b->zx, u, w->in_proj, w->in_proj_b, T, c->d_model, R, 0);
    k_copy_cols(ex, b->xr, (size_t)Cc, b->zx + o, (size_t)R, (size_t)T, (size_t)Cc);
}

// 2  xc[t0:t1] = conv(xr[t0:t1])   (state: history in/out, NULL = zeros)
static void stage_conv(const molt_exec *ex, const mixer_bufs *b, int t0, int t1, const ssm_cfg *c,
                       const ssm_weights *w, float *state) {
    size_t Cc = (size_t)ssm_conv_dim(c);
    conv1d_causal(ex, b->xc + t0 * Cc, b->xr + t0 * Cc, w->conv_w, w->conv_b, state, t1 - t0,
                  (int)Cc, c->K);
}

// 3  x|B|C = act(xc), dA (and Δ, X) for tokens t0..t1-1
static void stage_prep(const molt_exec *ex, const mixer_bufs *b, int t0, int t1,
                       const ssm_cfg *c, const ssm_weights *w) {
    ssm_rows_cfg rc = ssm_rows_of(c);
    size_t       Cc = (size_t)ssm_conv_dim(c), Di = (size_t)c->d_inner, GN = (size_t)c->G * c->N;
    size_t       H = (size_t)c->H, R = (size_t)ssm_in_proj_rows(c), t = (size_t)t0;
    ssm_prep(ex, b->x + t * Di, rc.mamba ? b->X + t * Di : NULL, b->B + t * GN, b->C + t * GN,
             b->dA + t * H, b->dlt + t * H, b->xc + t * Cc, b->zx + t * R + off_dt(c), (int)R,
             w->dt_bias, w->A_log, t1 - t0, &rc);
}

// 5  ys ← gate(ys + D·x)   (in place, all T tokens)
static void stage_gate(const molt_exec *ex, const mixer_bufs *b, int T, const ssm_cfg *c,
                       const ssm_weights *w) {
    ssm_rows_cfg rc = ssm_rows_of(c);
    ssm_gate(ex, b->ys, b->ys, NULL, b->x, b->zx + off_z(c), ssm_in_proj_rows(c), w->D, w->norm_w,
             w->z_bias, T, &rc);
}

// ----------------------------------------------------------------------------
// forward

void ssm_mixer_forward(const molt_exec *ex, float *y, const float *u, int T, const ssm_cfg *c,
                       const ssm_weights *w, ssm_state *st, ssm_mode mode, float *work) {
    MOLT_ASSERT(ssm_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->conv_w && w->out_proj);
    MOLT_ASSERT(c->kind != SSM_MAMBA2 || (w->A_log && w->norm_w));
    if (T <= 0)
        return;
    mixer_bufs b;
    mixer_bufs_floats(c, T, &b, work);
    int H = c->H, P = c->P, N = c->N, G = c->G, Di = c->d_inner, GN = G * N;

    stage_proj(ex, &b, u, T, c, w, true);
    if (mode == SSM_MODE_CHUNKED) {
        stage_conv(ex, &b, 0, T, c, w, st ? st->conv : NULL);
        stage_prep(ex, &b, 0, T, c, w);
        ssd_scan_chunked(ex, b.ys, st ? st->ssm : NULL, b.X, b.dA, b.B, b.C, T, H, P, N, G,
                         c->chunk, b.scan);
    } else {
        float *cs = b.cst, *ss = b.sst;
        if (st) {
            cs = st->conv;
            ss = st->ssm;
        } else {
            be_zero(ex, cs, sizeof(float) * (size_t)ssm_conv_dim(c) * (size_t)(c->K - 1));
            be_zero(ex, ss, sizeof(float) * (size_t)H * P * N);
        }
        for (int t = 0; t < T; t++) {
            stage_conv(ex, &b, t, t + 1, c, w, cs);
            stage_prep(ex, &b, t, t + 1, c, w);
            ssd_step(ex, b.ys + (size_t)t * Di, ss, b.X + (size_t)t * Di, b.dA + (size_t)t * H,
                     b.B + (size_t)t * GN, b.C + (size_t)t * GN, H, P, N, G);
        }
    }
    stage_gate(ex, &b, T, c, w);
    k_matmul_w(ex, y, b.ys, tw(w->out_proj_t, w->out_proj), w->out_proj_b, T, Di, c->d_model, 0);
}

// ----------------------------------------------------------------------------
// batched decode: row t of u is the next token of its own sequence, with
// states conv[t], ssm[t]: the recurrent mode's per-token computation, each
// stage one op over all rows

// The fused decode step (ssm_decode_rows) where the config allows it (G == H; f32 or
// bf16 state); MOLT_DECODE_FUSED=0 runs the stage ops one by one (the same bits)
static bool decode_fused(void) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("MOLT_DECODE_FUSED");
        env = !(e && !strcmp(e, "0"));
    }
    return env;
}

// ssm16 NULL: the f32 state ssm; else the bf16 state ssm16 (ssd_step_rows_bf16)
static void step_rows_any(const molt_exec *ex, float *y, const float *u, int n, const ssm_cfg *c,
                          const ssm_weights *w, float *const *conv, float *const *ssm,
                          uint16_t *const *ssm16, float *work) {
    MOLT_ASSERT(ssm_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->conv_w && w->out_proj);
    if (n <= 0)
        return;
    mixer_bufs b;
    mixer_bufs_floats(c, n, &b, work);
    if (c->G == c->H && decode_fused()) { // one op from zx to the gated ys
        ssm_rows_cfg rc = ssm_rows_of(c);
        k_matmul_w(ex, b.zx, u, tw(w->in_proj_t, w->in_proj), w->in_proj_b, n, c->d_model,
                   ssm_in_proj_rows(c), 0);
        ssm_decode_args a = {.conv_w = w->conv_w, .conv_b = w->conv_b, .dt_bias = w->dt_bias,
                             .A_log = w->A_log, .D = w->D, .norm_w = w->norm_w,
                             .z_bias = w->z_bias, .K = c->K, .ldz = ssm_in_proj_rows(c),
                             .o_xbc = off_xbc(c), .o_z = off_z(c), .o_dt = off_dt(c),
                             .state_bf16 = ssm16 != NULL};
        MOLT_ASSERT(ssm_decode_rows_work(n, &rc) <= (size_t)(b.ys - b.xr)); // xr .. dlt
        ssm_decode_rows(ex, b.ys, b.zx, conv, ssm16 ? (float *const *)(void *const *)ssm16 : ssm,
                        n, &rc, &a, b.xr);
    } else {
        stage_proj(ex, &b, u, n, c, w, true);
        conv1d_causal_rows(ex, b.xc, b.xr, w->conv_w, w->conv_b, conv, n, ssm_conv_dim(c), c->K);
        stage_prep(ex, &b, 0, n, c, w);
        if (ssm16)
            ssd_step_rows_bf16(ex, b.ys, ssm16, b.X, b.dA, b.B, b.C, n, c->H, c->P, c->N, c->G);
        else
            ssd_step_rows(ex, b.ys, ssm, b.X, b.dA, b.B, b.C, n, c->H, c->P, c->N, c->G);
        stage_gate(ex, &b, n, c, w);
    }
    k_matmul_w(ex, y, b.ys, tw(w->out_proj_t, w->out_proj), w->out_proj_b, n, c->d_inner,
               c->d_model, 0);
}

void ssm_mixer_step_rows(const molt_exec *ex, float *y, const float *u, int n, const ssm_cfg *c,
                         const ssm_weights *w, float *const *conv, float *const *ssm,
                         float *work) {
    step_rows_any(ex, y, u, n, c, w, conv, ssm, NULL, work);
}

void ssm_mixer_step_rows_bf16(const molt_exec *ex, float *y, const float *u, int n,
                              const ssm_cfg *c, const ssm_weights *w, float *const *conv,
                              uint16_t *const *ssm, float *work) {
    step_rows_any(ex, y, u, n, c, w, conv, NULL, ssm, work);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix (ALGORITHMS.md §1.4): from zero state,
//   y_pre[:,h,p] = M[h] · x[:,h,p]  with x the post-conv x, so for Mamba-2
//   the column scale is Δ_s (M acts on x, the scan on X = x·Δ); D on the diagonal.

void ssm_mixer_materialize(const molt_exec *ex, float *M, const float *u, int T, const ssm_cfg *c, const ssm_weights *w,
                           float *work) {
    MOLT_ASSERT(ssm_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->conv_w);
    MOLT_ASSERT(c->kind != SSM_MAMBA2 || w->A_log);
    if (T <= 0)
        return;
    mixer_bufs b;
    mixer_bufs_floats(c, T, &b, work);
    stage_proj(ex, &b, u, T, c, w, false);
    stage_conv(ex, &b, 0, T, c, w, NULL);
    stage_prep(ex, &b, 0, T, c, w);
    ssd_materialize(ex, M, b.dA, b.B, b.C, c->kind == SSM_MAMBA2 ? b.dlt : NULL, w->D, T, c->H, c->N,
                    c->G);
}
