/*
 * ssm.c — CPU state-space kernels: causal depthwise conv1d and the SSD scan in
 * its three exact forms (sequential recurrence, chunked SSD, materialized
 * matrix). Contracts in kernels/ssm.h; math in shared/docs/ALGORITHMS.md
 * §1.2–1.4 (Mamba-2 SSD, `ssd_minimal_discrete`) and §2.2 (DiscreteMamba2).
 *
 * Dimension letters
 *   T  time steps     H  heads      P  head dim     N  state size
 *   G  B/C heads (head h reads group h / (H/G))     K  conv width
 *   Cc conv channels  Q  chunk length (last chunk may be shorter: Lc ≤ Q)
 *   nc number of chunks = ceil(T / Q)
 *
 * Layouts (row-major): X, y [T,H,P]; dA [T,H]; B, C [T,G,N]; state [H,P,N].
 *
 * Numerics: everything is fp32, as the reference implementations. ssd_scan_ref
 * (the plain twin of the fast paths) runs one scalar float recurrence per
 * (h, p, n) and needs no scratch; the tests hold all paths to a double oracle.
 * Decays are only ever exp() of a sum of dA over a segment that is
 * accumulated directly from its start (the masked-cumsum form of `segsum`),
 * never a difference of two long prefix sums, so there is no cancellation;
 * with dA ≤ 0 every exponent is ≤ 0. Dot products use 8 fixed partial sums
 * (vectorizable without -ffast-math, deterministic); the chunked scan's
 * products are single-threaded OpenBLAS sgemms, one whole product per task
 * (deterministic for a given shape, not the same summation order as k_dotf).
 *
 * Saved for a backward: after ssd_scan_chunked, work holds the state entering
 * every chunk and the in/out chunk decays (layout above ssd_chunked_work).
 *
 * Threading: molt's pool (core/pool.h) with ex->nth threads, over heads
 * (and chunks); every task owns its outputs, so results are bit-identical for
 * any number of threads (no reductions across threads). Small problems run
 * inline (nth = 1) below the size thresholds.
 */
#include "kernels/ssm.h"

#include "core/pool.h"
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/ssm_util.h"

// ----------------------------------------------------------------------------
// causal depthwise conv1d
//
//   y[t,c] = b[c] + Σ_{k<K} w[c,k] · in[t-(K-1)+k, c]
//   in[τ,c] = x[τ,c] for τ ≥ 0, state[c, τ+K-1] for τ < 0 (0 when state NULL)

static inline float conv_in(const float *x, const float *state, int tau, int c, int Cc, int K) {
    if (tau >= 0)
        return x[(size_t)tau * Cc + c];
    return state ? state[(size_t)c * (K - 1) + (tau + K - 1)] : 0.0f;
}

typedef struct conv_task {
    float       *y;
    const float *x, *w, *b;
    int          Cc, K, t0, t1; // interior rows [t0, t1)
} conv_task;

// rows [t0, t1) of channels [c0, c0+nc) with wt = the taps transposed, [K][nc]:
// per element b, then + w_k·x for k = 0 … K−1 in order (the scalar loop's sum)
K_SIMD static void conv_block(float *y, const float *x, const float *wt, const float *b, int Cc,
                              int K, int t0, int t1, int c0, int nc) {
    for (int t = t0; t < t1; t++) {
        float       *yt = y + (size_t)t * Cc + c0;
        const float *x0 = x + (size_t)(t - (K - 1)) * Cc + c0;
        for (int c = 0; c < nc; c++)
            yt[c] = b ? b[c0 + c] : 0.0f;
        for (int k = 0; k < K; k++) {
            const float *xk = x0 + (size_t)k * Cc, *wk = wt + (size_t)k * nc;
            for (int c = 0; c < nc; c++)
                yt[c] += wk[c] * xk[c];
        }
    }
}

#define CONV_CB 128 // channels per block (the transposed taps live on the stack)
#define CONV_KMAX 16

static void conv_rows(void *arg, int ith, int nth) {
    const conv_task *j = arg;
    int              lo, hi, Cc = j->Cc, K = j->K;
    molt_pool_range(j->t1 - j->t0, ith, nth, &lo, &hi);
    if (lo >= hi)
        return;
    if (K <= CONV_KMAX) {
        float wt[CONV_KMAX * CONV_CB];
        for (int c0 = 0; c0 < Cc; c0 += CONV_CB) {
            int nc = MIN_INT(CONV_CB, Cc - c0);
            for (int k = 0; k < K; k++)
                for (int c = 0; c < nc; c++)
                    wt[k * nc + c] = j->w[(size_t)(c0 + c) * K + k];
            conv_block(j->y, j->x, wt, j->b, Cc, K, j->t0 + lo, j->t0 + hi, c0, nc);
        }
        return;
    }
    for (int t = j->t0 + lo; t < j->t0 + hi; t++) {
        float       *yt = j->y + (size_t)t * Cc;
        const float *x0 = j->x + (size_t)(t - (K - 1)) * Cc;
        for (int c = 0; c < Cc; c++)
            yt[c] = j->b ? j->b[c] : 0.0f;
        for (int k = 0; k < K; k++) {
            const float *xk = x0 + (size_t)k * Cc;
            for (int c = 0; c < Cc; c++)
                yt[c] += j->w[(size_t)c * K + k] * xk[c];
        }
    }
}

void cpu_conv1d_causal(const molt_exec *ex, float *y, const float *x, const float *w,
                       const float *b, float *state, int T, int Cc, int K) {
    // rows whose window reaches before t = 0: read the history
    int t_hist = T < K - 1 ? T : K - 1;
    for (int t = 0; t < t_hist; t++)
        for (int c = 0; c < Cc; c++) {
            float s = b ? b[c] : 0.0f;
            for (int k = 0; k < K; k++)
                s += w[(size_t)c * K + k] * conv_in(x, state, t - (K - 1) + k, c, Cc, K);
            y[(size_t)t * Cc + c] = s;
        }
    // interior rows: the whole window is inside x
    conv_task job = {y, x, w, b, Cc, K, t_hist, T};
    size_t    n = (size_t)(T - t_hist);
    molt_pool_run(ssm_nth(ex, n, n * (size_t)Cc * (size_t)K, 65536), conv_rows, &job);
    // new history = inputs at τ = T-(K-1) .. T-1. Index j reads old index T+j
    // (> j) when τ < 0, so ascending j never reads a slot already rewritten.
    if (state)
        for (int c = 0; c < Cc; c++) {
            float *sc = state + (size_t)c * (K - 1);
            for (int j = 0; j < K - 1; j++) {
                int tau = T - (K - 1) + j;
                sc[j] = tau >= 0 ? x[(size_t)tau * Cc + c] : sc[T + j];
            }
        }
}

// ----------------------------------------------------------------------------
// sequential recurrence (oracle) and single step
//
//   s_t = exp(dA[t,h]) · s_{t-1} + X[t,h,:] ⊗ B[t,g,:]      y[t,h,p] = Σ_n s_t[p,n] C[t,g,n]

void ssd_scan_ref(float *y, float *state, const float *X, const float *dA, const float *B,
                  const float *C, int T, int H, int P, int N, int G) {
    // s[p,n] evolves independently for every (h, p, n): run one scalar
    // recurrence at a time, so no scratch is needed even when state is NULL.
    int    hpg = H / G;
    size_t PN = (size_t)P * N;
    for (int h = 0; h < H; h++) {
        int g = h / hpg;
        for (int p = 0; p < P; p++) {
            for (int t = 0; t < T; t++)
                y[((size_t)t * H + h) * P + p] = 0.0f;
            for (int n = 0; n < N; n++) {
                float *sn = state ? &state[(size_t)h * PN + (size_t)p * N + n] : NULL;
                float  s = sn ? *sn : 0.0f;
                for (int t = 0; t < T; t++) {
                    float a = decay(dA[(size_t)t * H + h]);
                    s = a * s + X[((size_t)t * H + h) * P + p] * B[((size_t)t * G + g) * N + n];
                    y[((size_t)t * H + h) * P + p] += s * C[((size_t)t * G + g) * N + n];
                }
                if (sn)
                    *sn = s;
            }
        }
    }
}

typedef struct step_task {
    float       *y, *state;
    const float *X, *dA, *B, *C;
    int          H, P, N, G;
} step_task;

static void step_heads(void *arg, int ith, int nth) {
    const step_task *j = arg;
    int              P = j->P, N = j->N, hpg = j->H / j->G, lo, hi;
    size_t           PN = (size_t)P * N;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        const float *Bg = j->B + (size_t)(h / hpg) * N;
        const float *Cg = j->C + (size_t)(h / hpg) * N;
        float        a = decay(j->dA[h]);
        for (int p = 0; p < P; p++) {
            float *sp = j->state + (size_t)h * PN + (size_t)p * N;
            float  xv = j->X[(size_t)h * P + p];
            for (int n = 0; n < N; n++)
                sp[n] = a * sp[n] + xv * Bg[n];
            j->y[(size_t)h * P + p] = k_dotf(sp, Cg, N);
        }
    }
}

void cpu_ssd_step(const molt_exec *ex, float *y, float *state, const float *X, const float *dA,
                  const float *B, const float *C, int H, int P, int N, int G) {
    step_task j = {y, state, X, dA, B, C, H, P, N, G};
    molt_pool_run(ssm_nth(ex, (size_t)H, (size_t)H * (size_t)P * (size_t)N, 32768), step_heads, &j);
}

// ----------------------------------------------------------------------------
// chunked SSD (ALGORITHMS.md §1.3, Mamba-2 paper Listing 1), per head h and
// chunk c = steps t0 .. t0+Lc-1, with local indices i (output) and j (input):
//
//   L[i,j]   = exp(Σ_{k=j+1..i} dA_k)                      j ≤ i  (segsum)
//   S_c      = Σ_j exp(Σ_{k=j+1..Lc-1} dA_k) X_j ⊗ B_j     chunk state from 0, phase 1
//   S_in[c]  = exp(Σ_{chunk c-1} dA) S_in[c-1] + S_{c-1}   inter-chunk, phase 2
//   Y_off_i  = exp(Σ_{k=0..i} dA_k) · S_in[c] C_i          phase 3
//   Y_diag_i = Σ_{j≤i} (C_i·B_j) L[i,j] X_j                intra-chunk, phase 3
//   y = Y_off + Y_diag,   final state = S_in[nc] (what would enter chunk nc)
//
// Every product is an sgemm (OpenBLAS, single-threaded, one per task):
//   phase 1  Xs = diag(dout)·X_c (staged in y's own rows), S_c = Xsᵀ·B_c      [P,N]
//            and, when heads share B/C (H > G), CB = C_c·B_cᵀ once per group
//            and chunk, in row blocks of SSD_RB (only the causal columns)
//   phase 3  y_c = diag(din)·(C_c·S_inᵀ), then per row block of SSD_RB rows
//            y += (CB ∘ L)[rows, 0..block end) · X_c  (CB by an sgemm per head
//            when H = G). L is grown one row at a time: seg[j] += dA_i, so
//            seg(i,j) = Σ_{k=j+1..i} dA_k summed upward from k = j+1, never a
//            difference of prefix sums; exp by k_expf (vectorized, K_SIMD).
//
// Work layout (floats), all slices contiguous per (head, chunk):
//   st   [nc, H, P, N]  phase 1 writes S_c; phase 2 replaces it by S_in[c],
//                       the state entering chunk c (what a backward needs)
//   v    [H, P, N]      running state when the caller passes none
//   din  [H, T]         exp(Σ_{k=t0..t} dA)        chunk entry → t (inclusive)
//   dout [H, T]         exp(Σ_{k=t+1..t0+Lc-1} dA) t → chunk end
//   row  [H, T]         seg, one row of segment sums, Lc floats per (head, chunk)
//   lb   [H, SSD_RB, Qe]      one row block of CB ∘ L per head; Qe = min(Q, T)
//   cb   [G·nc, Qe, Qe]       C·Bᵀ per (group, chunk) when H > G (else absent)
// (din, dout and the states are what ssd_scan_chunked_backward reads; the rest
// is scratch.)

#define SSD_RB 32 // rows of (CB ∘ L) per sgemm

static size_t ssd_lb_floats(int Qe) { return (size_t)SSD_RB * (size_t)Qe; }

size_t ssd_chunked_work(int T, int H, int P, int N, int G, int Q) {
    if (T <= 0)
        return 0;
    size_t Qe = (size_t)(Q < T ? Q : T);
    size_t nc = ((size_t)T + Qe - 1) / Qe;
    size_t cb = H > G ? (size_t)G * nc * Qe * Qe : 0;
    return (nc + 1) * (size_t)H * (size_t)P * (size_t)N + 3 * (size_t)H * (size_t)T +
           (size_t)H * ssd_lb_floats((int)Qe) + cb;
}

typedef struct chunk_task {
    float       *y, *state, *st, *vbuf, *din, *dout, *row, *lb, *cb;
    const float *X, *dA, *B, *C;
    int          T, H, P, N, G, Q, nc;
} chunk_task;

// rows i0 .. i0+rb-1 of (CB ∘ L) into L (ld ldl), columns j0 .. i0+rb-1, zero
// above the diagonal; S: the CB rows (ld lds; may be L itself); seg: see above
// (rows are visited in order, each once); dA: the head's decays, stride H.
// Columns below j0 are left alone (the caller knows they are flushed to 0).
K_SIMD static void decay_rows(float *L, int ldl, const float *S, int lds, float *seg,
                              const float *dA, int H, int i0, int rb, int j0) {
    int n = i0 + rb;
    for (int r = 0; r < rb; r++) {
        int          i = i0 + r;
        float        a = dA[(size_t)i * H];
        float       *l = L + (size_t)r * ldl;
        const float *s = S + (size_t)r * lds;
        for (int j = j0; j < i; j++)
            seg[j] += a;
        seg[i] = 0.0f;
        for (int j = j0; j <= i; j++)
            l[j] = seg[j] < SSM_EXP_FLUSH ? 0.0f : s[j] * k_expf(seg[j]);
        for (int j = i + 1; j < n; j++)
            l[j] = 0.0f;
    }
}

// phase 1 for one (head, chunk): decays and S_c (y's rows of the chunk used as scratch)
static void chunk_state(const chunk_task *j, int h, int c) {
    int    H = j->H, P = j->P, N = j->N, G = j->G, g = h / (H / G), HP = H * P, GN = G * N;
    int    t0 = c * j->Q, Lc = MIN_INT(j->Q, j->T - t0);
    size_t o = (size_t)h * j->T + (size_t)t0;
    float *din = j->din + o, *dout = j->dout + o;
    const float *dA = j->dA + (size_t)t0 * H + h;
    float        acc = 0.0f;
    for (int i = 0; i < Lc; i++) {
        acc += dA[(size_t)i * H];
        din[i] = decay(acc);
    }
    acc = 0.0f;
    for (int i = Lc - 1; i >= 0; i--) {
        dout[i] = decay(acc);
        acc += dA[(size_t)i * H];
    }
    float       *xs = j->y + (size_t)t0 * HP + (size_t)h * P;
    const float *X = j->X + (size_t)t0 * HP + (size_t)h * P;
    for (int i = 0; i < Lc; i++)
        for (int p = 0; p < P; p++)
            xs[(size_t)i * HP + p] = dout[i] * X[(size_t)i * HP + p];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, Lc, 1.0f, xs, HP,
                j->B + (size_t)t0 * GN + (size_t)g * N, GN, 0.0f,
                j->st + ((size_t)c * H + h) * (size_t)P * N, N);
}

// phase 1, shared B/C: CB rows i0 .. i0+rb-1, columns 0 .. i0+rb-1 of (group, chunk)
static void chunk_cb(const chunk_task *j, int g, int c, int i0) {
    int    G = j->G, N = j->N, GN = G * N, t0 = c * j->Q, Lc = MIN_INT(j->Q, j->T - t0);
    int    Qe = MIN_INT(j->Q, j->T), rb = MIN_INT(SSD_RB, Lc - i0);
    float *cb = j->cb + (((size_t)g * j->nc + c) * Qe + i0) * Qe;
    const float *Cr = j->C + (size_t)(t0 + i0) * GN + (size_t)g * N;
    const float *Br = j->B + (size_t)t0 * GN + (size_t)g * N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, i0 + rb, N, 1.0f, Cr, GN, Br, GN,
                0.0f, cb, Qe);
}

// phase 1: every (head, chunk) and, for H > G, every (group, chunk, row block)
// of CB, interleaved over threads (the last chunk of each head may be shorter)
static void chunked_phase1(void *arg, int ith, int nth) {
    const chunk_task *j = arg;
    int Qe = MIN_INT(j->Q, j->T), nb = (Qe + SSD_RB - 1) / SSD_RB;
    int n1 = j->H * j->nc, n0 = j->cb ? j->G * j->nc * nb : 0;
    for (int it = ith; it < n1 + n0; it += nth) {
        if (it < n1) {
            chunk_state(j, it / j->nc, it % j->nc);
            continue;
        }
        int k = it - n1, gc = k / nb, i0 = (k % nb) * SSD_RB;
        int c = gc % j->nc, Lc = MIN_INT(j->Q, j->T - c * j->Q);
        if (i0 < Lc)
            chunk_cb(j, gc / j->nc, c, i0);
    }
}

// phase 2: state passing across chunks, per head; st[c] becomes S_in[c]
static void chunked_phase2(void *arg, int ith, int nth) {
    const chunk_task *j = arg;
    size_t            PN = (size_t)j->P * j->N;
    int               lo, hi;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        float *v = j->state ? j->state + (size_t)h * PN : j->vbuf + (size_t)h * PN;
        if (!j->state)
            memset(v, 0, sizeof(float) * PN);
        for (int c = 0; c < j->nc; c++) {
            int    t_last = MIN_INT((c + 1) * j->Q, j->T) - 1;
            float  tot = j->din[(size_t)h * j->T + (size_t)t_last];
            float *sc = j->st + ((size_t)c * j->H + h) * PN;
            for (size_t e = 0; e < PN; e++) {
                float loc = sc[e];
                sc[e] = v[e];
                v[e] = tot * v[e] + loc;
            }
        }
    }
}

// phase 3 for one (head, chunk): y = diag(din)·(C·S_inᵀ) + (CB ∘ L)·X
static void chunk_out(const chunk_task *j, int h, int c) {
    int    H = j->H, P = j->P, N = j->N, G = j->G, g = h / (H / G), HP = H * P, GN = G * N;
    int    t0 = c * j->Q, Lc = MIN_INT(j->Q, j->T - t0), Qe = MIN_INT(j->Q, j->T);
    size_t o = (size_t)h * j->T + (size_t)t0;
    float *y = j->y + (size_t)t0 * HP + (size_t)h * P, *seg = j->row + o;
    float *lb = j->lb + (size_t)h * ssd_lb_floats(Qe);
    const float *din = j->din + o, *X = j->X + (size_t)t0 * HP + (size_t)h * P;
    const float *Cc = j->C + (size_t)t0 * GN + (size_t)g * N;
    const float *Bc = j->B + (size_t)t0 * GN + (size_t)g * N;
    const float *cb = j->cb ? j->cb + ((size_t)g * j->nc + c) * Qe * Qe : NULL;
    const float *dA = j->dA + (size_t)t0 * H + h;
    // Y_off only from a nonzero entering state (zero: y = 0 + Y_diag, the same values)
    const float *S_in = j->st + ((size_t)c * H + h) * (size_t)P * N;
    int          off = c > 0;
    if (c == 0 && j->state)
        for (size_t e = 0; e < (size_t)P * N && !off; e++)
            off = S_in[e] != 0.0f;
    if (off) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lc, P, N, 1.0f, Cc, GN, S_in, N,
                    0.0f, y, HP);
        for (int i = 0; i < Lc; i++)
            for (int p = 0; p < P; p++)
                y[(size_t)i * HP + p] *= din[i];
    }
    // with every dA ≤ 0 in the chunk, seg(i, j) only falls as i grows, so columns
    // flushed at a block's first row stay 0 below it: the products start at j0
    int nonpos = 1;
    for (int i = 0; i < Lc && nonpos; i++)
        nonpos = dA[(size_t)i * H] <= 0.0f;
    int j0 = 0;
    for (int i0 = 0; i0 < Lc; i0 += SSD_RB) {
        int rb = MIN_INT(SSD_RB, Lc - i0), n = i0 + rb;
        if (nonpos && i0 > 0) { // seg holds row i0-1: row i0 adds dA_i0 to j < i0
            float a = dA[(size_t)i0 * H];
            while (j0 < i0 && seg[j0] + a < SSM_EXP_FLUSH)
                j0++;
        }
        if (cb) {
            decay_rows(lb, Qe, cb + (size_t)i0 * Qe, Qe, seg, dA, H, i0, rb, j0);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, n - j0, N, 1.0f,
                        Cc + (size_t)i0 * GN, GN, Bc + (size_t)j0 * GN, GN, 0.0f, lb + j0, Qe);
            decay_rows(lb, Qe, lb, Qe, seg, dA, H, i0, rb, j0);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, P, n - j0, 1.0f, lb + j0, Qe,
                    X + (size_t)j0 * HP, HP, off ? 1.0f : 0.0f, y + (size_t)i0 * HP, HP);
    }
}

// phase 3: heads interleaved over threads, each head's chunks in order (its
// row-block scratch is the head's own)
static void chunked_phase3(void *arg, int ith, int nth) {
    const chunk_task *j = arg;
    for (int h = ith; h < j->H; h += nth)
        for (int c = 0; c < j->nc; c++)
            chunk_out(j, h, c);
}

void cpu_ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X,
                          const float *dA, const float *B, const float *C, int T, int H, int P,
                          int N, int G, int Q, float *work) {
    if (T <= 0)
        return;
    if (Q > T)
        Q = T;
    int    nc = (T + Q - 1) / Q;
    size_t PN = (size_t)P * N;
    float *st = work;
    float *vbuf = st + (size_t)nc * H * PN;
    float *din = vbuf + (size_t)H * PN;
    float *dout = din + (size_t)H * T;
    float *row = dout + (size_t)H * T;
    float *lb = row + (size_t)H * T;
    float *cb = H > G ? lb + (size_t)H * ssd_lb_floats(Q) : NULL;
    chunk_task j = {y,  state, st, vbuf, din, dout, row, lb, cb, X, dA,
                    B,  C,     T,  H,    P,   N,    G,   Q,  nc};
    // ~ T·H·(Q·(N+P) + 2·P·N) flops; small problems are not worth waking the pool
    size_t n_items = (size_t)H * (size_t)nc;
    size_t cost = (size_t)T * (size_t)H * ((size_t)Q * (size_t)(N + P) + 2 * PN);
    int    nth = ssm_nth(ex, n_items, cost, 32768);
    molt_pool_run(nth, chunked_phase1, &j);
    molt_pool_run(nth, chunked_phase2, &j);
    molt_pool_run(nth, chunked_phase3, &j);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix (ALGORITHMS.md §1.4)
//
//   M[h,t,s] = (C_t·B_s) · exp(Σ_{k=s+1..t} dA[k,h]) · colscale[s,h]   s ≤ t, else 0
//   M[h,t,t] += D[h]

typedef struct mat_task {
    float       *M;
    const float *dA, *B, *C, *colscale, *D;
    int          T, H, N, G, nonpos;
} mat_task;

static void mat_rows(void *arg, int ith, int nth) {
    const mat_task *j = arg;
    int             T = j->T, H = j->H, N = j->N, G = j->G, hpg = H / G, lo, hi;
    molt_pool_range(H * T, ith, nth, &lo, &hi);
    for (int ht = lo; ht < hi; ht++) {
        int          h = ht / T, t = ht % T, g = h / hpg;
        float       *Mt = j->M + (size_t)ht * T;
        const float *Ct = j->C + ((size_t)t * G + g) * N;
        float        seg = 0.0f;
        for (int s = t; s >= 0; s--) {
            if (seg < SSM_EXP_FLUSH) { // decayed away
                if (j->nonpos) {       // and so is everything older
                    memset(Mt, 0, sizeof(float) * (size_t)(s + 1));
                    break;
                }
                Mt[s] = 0.0f;
            } else {
                float v = k_dotf(Ct, j->B + ((size_t)s * G + g) * N, N) * expf(seg);
                Mt[s] = j->colscale ? v * j->colscale[(size_t)s * H + h] : v;
            }
            seg += j->dA[(size_t)s * H + h];
        }
        for (int s = t + 1; s < T; s++)
            Mt[s] = 0.0f;
        if (j->D)
            Mt[t] += j->D[h];
    }
}

void cpu_ssd_materialize(const molt_exec *ex, float *M, const float *dA, const float *B,
                         const float *C, const float *colscale, const float *D, int T, int H,
                         int N, int G) {
    if (T <= 0)
        return;
    mat_task j = {M, dA, B, C, colscale, D, T, H, N, G, all_nonpos(dA, (size_t)T * H)};
    size_t   rows = (size_t)H * (size_t)T;
    molt_pool_run(ssm_nth(ex, rows, rows * (size_t)T * (size_t)(N + 2) / 2, 32768), mat_rows, &j);
}
