/*
 * ssm_backward.c — backward passes of the state-space kernels of cpu/ssm.c:
 * causal depthwise conv1d, the SSD scan (plain reverse recurrence, the oracle,
 * and the chunked form that trains long sequences in parallel over chunks) and
 * the materialized mixing matrix (MOHAWK stage 1). Contracts in kernels/ssm.h;
 * forward math in shared/docs/ALGORITHMS.md §1.2–1.4 and the head of cpu/ssm.c.
 *
 * Accumulation contract: activation grads (dx, dX, ddA, dB, dC, dcolscale) are
 * written (=); parameter grads (dw, db, dD) are accumulated (+=). Every
 * backward differentiates the forward run from a zero initial state.
 *
 * Dimension letters
 *   T  time steps     H  heads      P  head dim     N  state size
 *   G  B/C heads (head h reads group g = h / (H/G))  K  conv width
 *   Cc conv channels  Q  chunk length (Lc ≤ Q for the last chunk)
 *   nc number of chunks = ceil(T / Q)
 * Layouts (row-major): X, y [T,H,P]; dA [T,H]; B, C [T,G,N]; M [H,T,T].
 *
 * Numerics: fp32 like the forward. Decays are exp() of segment sums grown
 * from the segment's near end (as the forward), never differences of long
 * prefix sums. Gradients w.r.t. dA of a segment decay are prefix / suffix sums
 * of per-position terms accumulated directly, again without subtracting totals.
 *
 * Threading: molt's pool with ex->nth threads. Every task owns the rows it
 * writes; B/C grads, shared by the H/G heads of a group, are first written per
 * head and then summed over the group's heads in a fixed order, so results are
 * bit-identical for any number of threads.
 */
#include "kernels/ssm.h"

#include "core/core.h"
#include "core/pool.h"
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/ssm_util.h"

static inline void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

// dst[t,g,:] = Σ_{h in g} src[t,h,:] (heads in ascending order), rows [lo, hi)
static void sum_group_heads(float *dst, const float *src, int lo, int hi, int H, int N, int G) {
    int hpg = H / G;
    for (int t = lo; t < hi; t++)
        for (int g = 0; g < G; g++) {
            float       *d = dst + ((size_t)t * G + g) * N;
            const float *s = src + ((size_t)t * H + (size_t)g * hpg) * N;
            memcpy(d, s, sizeof(float) * (size_t)N);
            for (int k = 1; k < hpg; k++)
                axpy(d, 1.0f, s + (size_t)k * N, N);
        }
}

typedef struct group_sum_task {
    float       *dB, *dC;
    const float *dBh, *dCh;
    int          T, H, N, G;
} group_sum_task;

static void group_sum_rows(void *arg, int ith, int nth) {
    const group_sum_task *j = arg;
    int                   lo, hi;
    molt_pool_range(j->T, ith, nth, &lo, &hi);
    sum_group_heads(j->dB, j->dBh, lo, hi, j->H, j->N, j->G);
    sum_group_heads(j->dC, j->dCh, lo, hi, j->H, j->N, j->G);
}

// ----------------------------------------------------------------------------
// causal depthwise conv1d
//
// forward:  y[t,c] = b[c] + Σ_{k<K} w[c,k] · x[t-(K-1)+k, c]     (x[τ<0] = 0)

#define CONV_ACC 512 // floats of per-task accumulators (on the stack)

typedef struct conv_bwd_task {
    float       *dx, *dw, *db;
    const float *dy, *x, *w;
    int          T, Cc, K;
} conv_bwd_task;

static void conv_bwd_run(void *arg, int ith, int nth) {
    const conv_bwd_task *j = arg;
    int                  T = j->T, Cc = j->Cc, K = j->K, lo, hi;
    // dx[τ,c] = Σ_k w[c,k] · dy[τ+(K-1)-k, c]      (terms with t = τ+(K-1)-k < T)
    molt_pool_range(T, ith, nth, &lo, &hi);
    for (int tau = lo; tau < hi; tau++) {
        float *dxt = j->dx + (size_t)tau * Cc;
        for (int c = 0; c < Cc; c++)
            dxt[c] = 0.0f;
        for (int k = 0; k < K; k++) {
            int t = tau + (K - 1) - k;
            if (t >= T)
                continue;
            const float *dyt = j->dy + (size_t)t * Cc;
            for (int c = 0; c < Cc; c++)
                dxt[c] += j->w[(size_t)c * K + k] * dyt[c];
        }
    }
    // dw[c,k] += Σ_t dy[t,c] · x[t-(K-1)+k, c];  db[c] += Σ_t dy[t,c]   (own channels)
    // Channel blocks of cb, rows streamed in order t = 0..T-1 into acc[k][c]
    // (contiguous in c), then added to dw once: the same sums for any split.
    molt_pool_range(Cc, ith, nth, &lo, &hi);
    int cb = CONV_ACC / (K + 1); // ≥ 1: K < CONV_ACC is asserted
    if (cb > 64)
        cb = 64;
    for (int c0 = lo; c0 < hi; c0 += cb) {
        int   n = hi - c0 < cb ? hi - c0 : cb;
        float acc[CONV_ACC]; // [K+1][n]: K taps, then the bias
        for (int i = 0; i < (K + 1) * n; i++)
            acc[i] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *dyt = j->dy + (size_t)t * Cc + c0;
            for (int k = 0; k < K; k++) {
                int tau = t - (K - 1) + k;
                if (tau < 0)
                    continue;
                const float *xt = j->x + (size_t)tau * Cc + c0;
                float       *a = acc + (size_t)k * n;
                for (int c = 0; c < n; c++)
                    a[c] += dyt[c] * xt[c];
            }
            float *a = acc + (size_t)K * n;
            for (int c = 0; c < n; c++)
                a[c] += dyt[c];
        }
        for (int c = 0; c < n; c++) {
            if (j->dw)
                for (int k = 0; k < K; k++)
                    j->dw[(size_t)(c0 + c) * K + k] += acc[(size_t)k * n + c];
            if (j->db)
                j->db[c0 + c] += acc[(size_t)K * n + c];
        }
    }
}

void cpu_conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db,
                                const float *dy, const float *x, const float *w, int T, int Cc,
                                int K) {
    MOLT_ASSERT(K >= 1 && K < CONV_ACC);
    if (T <= 0)
        return;
    conv_bwd_task j = {dx, dw, db, dy, x, w, T, Cc, K};
    size_t        n = (size_t)T * (size_t)Cc * (size_t)K;
    molt_pool_run(ssm_nth(ex, (size_t)(T < Cc ? T : Cc), 2 * n, 65536), conv_bwd_run, &j);
}

// ----------------------------------------------------------------------------
// sequential scan (oracle twin)
//
// forward:  s_t = a_t · s_{t-1} + X_t ⊗ B_t,   a_t = exp(dA_t),   y_t = s_t C_t
// reverse:  ds_t = dy_t ⊗ C_t + a_{t+1} · ds_{t+1}      (adjoint of s_t)
//           dX_t = ds_t B_t     dB_t = ds_tᵀ X_t     dC_t = s_tᵀ dy_t
//           ddA_t = a_t · ⟨ds_t, s_{t-1}⟩

size_t ssd_ref_backward_work(int T) { return T > 0 ? (size_t)T : 0; }

void ssd_scan_ref_backward(float *dX, float *ddA, float *dB, float *dC, const float *dy,
                           const float *X, const float *dA, const float *B, const float *C, int T,
                           int H, int P, int N, int G, float *work) {
    int    hpg = H / G;
    float *s = work; // s[t] of one (h, p, n) chain
    memset(dX, 0, sizeof(float) * (size_t)T * H * P);
    memset(ddA, 0, sizeof(float) * (size_t)T * H);
    memset(dB, 0, sizeof(float) * (size_t)T * G * N);
    memset(dC, 0, sizeof(float) * (size_t)T * G * N);
    for (int h = 0; h < H; h++) {
        int g = h / hpg;
        for (int p = 0; p < P; p++)
            for (int n = 0; n < N; n++) {
#define IX(t) (((size_t)(t) * H + h) * P + p)
#define IB(t) (((size_t)(t) * G + g) * N + n)
                float v = 0.0f;
                for (int t = 0; t < T; t++) {
                    v = decay(dA[(size_t)t * H + h]) * v + X[IX(t)] * B[IB(t)];
                    s[t] = v;
                }
                float ds = 0.0f; // a_{t+1} · ds_{t+1}, then ds_t
                for (int t = T - 1; t >= 0; t--) {
                    float a = decay(dA[(size_t)t * H + h]);
                    ds += dy[IX(t)] * C[IB(t)];
                    dC[IB(t)] += dy[IX(t)] * s[t];
                    dX[IX(t)] += ds * B[IB(t)];
                    dB[IB(t)] += ds * X[IX(t)];
                    if (t > 0)
                        ddA[(size_t)t * H + h] += a * ds * s[t - 1];
                    ds *= a;
                }
#undef IX
#undef IB
            }
    }
}

// ----------------------------------------------------------------------------
// chunked SSD backward. Forward per head h and chunk c (local i, j; cpu/ssm.c):
//
//   L[i,j]   = exp(Σ_{k=j+1..i} dA_k)   din[i] = exp(Σ_{k=0..i} dA_k)
//   dout[j]  = exp(Σ_{k=j+1..Lc-1} dA_k)   a_c = din[Lc-1]
//   y_i      = Σ_{j≤i} (C_i·B_j) L[i,j] X_j  +  din[i] · S_in[c] C_i
//   S_c      = Σ_j dout[j] X_j ⊗ B_j
//   S_in[c+1] = a_c · S_in[c] + S_c,   S_in[0] = 0
//
// Backward, three phases like the forward:
//   A (every (h, c)): intra-chunk quadratic part and the output side of the
//      entering state:  dS_loc[c] = Σ_i din[i] dy_i ⊗ C_i
//   B (every h, chunks in reverse): E[c] = adjoint of S_in[c+1] (= of S_c)
//      E[nc-1] = 0,  E[c-1] = a_c E[c] + dS_loc[c];  da_c = a_c ⟨E[c], S_in[c]⟩
//   C (every (h, c)): chunk-state part from E[c] and the da_c decay term.
//
// Backward work (floats), after the forward's saved ssd_chunked_work part:
//   E    [nc, H, P, N]  phase A writes dS_loc[c]; phase B replaces it by E[c]
//   vb   [H, P, N]      phase B running adjoint
//   da   [H, nc]        a_c · ⟨E[c], S_in[c]⟩
//   r1   [H, T]         per-(head, chunk) rows of Lc floats
//   r2   [H, T]
//   dBh  [T, H, N]      per-head dB, dC (only when H > G; else dB, dC directly)
//   dCh  [T, H, N]

size_t ssd_chunked_backward_work(int T, int H, int P, int N, int G, int Q) {
    if (T <= 0)
        return 0;
    if (Q > T)
        Q = T;
    size_t nc = ((size_t)T + (size_t)Q - 1) / (size_t)Q, PN = (size_t)P * N;
    size_t n = ssd_chunked_work(T, H, P, N, G, Q);
    n += (nc + 1) * (size_t)H * PN + (size_t)H * nc + 2 * (size_t)H * (size_t)T;
    if (H != G)
        n += 2 * (size_t)T * (size_t)H * (size_t)N;
    return n;
}

typedef struct chunk_bwd {
    float       *dX, *ddA, *dBh, *dCh; // dBh, dCh: [T,H,N]
    float       *E, *vb, *da, *r1, *r2;
    const float *st, *din, *dout; // saved by the forward
    const float *dy, *X, *dA, *B, *C;
    int          T, H, P, N, G, Q, nc;
} chunk_bwd;

// Phase A for one (head, chunk)
static void chunk_bwd_intra(const chunk_bwd *j, int h, int c) {
    int    T = j->T, H = j->H, P = j->P, N = j->N, G = j->G, g = h / (H / G);
    int    t0 = c * j->Q, Lc = MIN_INT(j->Q, T - t0);
    size_t PN = (size_t)P * N, o = (size_t)h * T + (size_t)t0;
    const float *din = j->din + o;
    float       *w = j->r1 + o, *r = j->r2 + o;
#define XR(i)  (j->X + ((size_t)(t0 + (i)) * H + h) * P)
#define DYR(i) (j->dy + ((size_t)(t0 + (i)) * H + h) * P)
#define DXR(i) (j->dX + ((size_t)(t0 + (i)) * H + h) * P)
#define BR(i)  (j->B + ((size_t)(t0 + (i)) * G + g) * N)
#define CR(i)  (j->C + ((size_t)(t0 + (i)) * G + g) * N)
#define DBR(i) (j->dBh + ((size_t)(t0 + (i)) * H + h) * N)
#define DCR(i) (j->dCh + ((size_t)(t0 + (i)) * H + h) * N)
#define DA(i)  j->dA[(size_t)(t0 + (i)) * H + h]
#define DDA(i) j->ddA[(size_t)(t0 + (i)) * H + h]
    for (int i = 0; i < Lc; i++) { // this task owns these rows of every output
        memset(DXR(i), 0, sizeof(float) * (size_t)P);
        memset(DBR(i), 0, sizeof(float) * (size_t)N);
        memset(DCR(i), 0, sizeof(float) * (size_t)N);
        DDA(i) = 0.0f;
    }

    // intra-chunk:  y_i = Σ_{j≤i} M[i,j] X_j,  M[i,j] = (C_i·B_j) L[i,j]
    //   dX_j += M[i,j] dy_i;   G[i,j] = dy_i·X_j
    //   dC_i += G[i,j] L[i,j] B_j;   dB_j += G[i,j] L[i,j] C_i
    //   ddA_k += Σ_{i ≥ k > j} G[i,j] M[i,j]      (k inside the segment j+1..i)
    for (int i = 0; i < Lc; i++) {
        const float *Ci = CR(i), *dyi = DYR(i);
        float       *dCi = DCR(i);
        float        seg = 0.0f; // Σ_{k=j+1..i} dA_k, grown from the diagonal
        for (int jj = i; jj >= 0; jj--) {
            float L = decay(seg);
            float cb = k_dotf(Ci, BR(jj), N);
            float gij = k_dotf(dyi, XR(jj), P);
            axpy(DXR(jj), cb * L, dyi, P);
            axpy(dCi, gij * L, BR(jj), N);
            axpy(DBR(jj), gij * L, Ci, N);
            w[jj] = gij * cb * L;
            seg += DA(jj);
        }
        float acc = 0.0f; // Σ_{j<k} w_j, k = 1..i
        for (int k = 1; k <= i; k++) {
            acc += w[k - 1];
            DDA(k) += acc;
        }
    }

    // entering state (c > 0; S_in[0] = 0):  y_i += din[i] · S_in C_i
    //   dC_i += din[i] S_inᵀ dy_i;   dS_loc += din[i] dy_i ⊗ C_i
    //   ddA_k += Σ_{i≥k} din[i] · dy_i·(S_in C_i)
    if (c > 0) {
        const float *S = j->st + ((size_t)c * H + h) * PN;
        float       *dS = j->E + ((size_t)c * H + h) * PN;
        memset(dS, 0, sizeof(float) * PN);
        for (int i = 0; i < Lc; i++) {
            const float *Ci = CR(i), *dyi = DYR(i);
            float       *dCi = DCR(i), ri = 0.0f;
            for (int p = 0; p < P; p++) {
                const float *Sp = S + (size_t)p * N;
                ri += dyi[p] * k_dotf(Sp, Ci, N);
                axpy(dCi, din[i] * dyi[p], Sp, N);
                axpy(dS + (size_t)p * N, din[i] * dyi[p], Ci, N);
            }
            r[i] = din[i] * ri;
        }
        float acc = 0.0f;
        for (int k = Lc - 1; k >= 0; k--) {
            acc += r[k];
            DDA(k) += acc;
        }
    }
#undef DA
#undef DDA
#undef XR
#undef DYR
#undef DXR
#undef BR
#undef CR
#undef DBR
#undef DCR
}

// Phase C for one (head, chunk):  S_c = Σ_j dout[j] X_j ⊗ B_j, adjoint E = E[c]
//   dX_j += dout[j] E B_j;   dB_j += dout[j] Eᵀ X_j
//   ddA_k += Σ_{j<k} dout[j] X_j·(E B_j)   (k in j+1..Lc-1)  +  da_c (all k)
static void chunk_bwd_state(const chunk_bwd *j, int h, int c) {
    int    T = j->T, H = j->H, P = j->P, N = j->N, G = j->G, g = h / (H / G);
    int    t0 = c * j->Q, Lc = MIN_INT(j->Q, T - t0);
    size_t PN = (size_t)P * N;
    if (c == j->nc - 1) // E = 0 (the final state is not an output), da = 0
        return;
    float da = j->da[(size_t)h * j->nc + c];
    const float *E = j->E + ((size_t)c * H + h) * PN;
    const float *dout = j->dout + (size_t)h * T + (size_t)t0;
    float        acc = 0.0f;
    for (int i = 0; i < Lc; i++) {
        size_t       t = (size_t)(t0 + i);
        const float *Xi = j->X + (t * H + h) * P, *Bi = j->B + (t * G + g) * N;
        float       *dXi = j->dX + (t * H + h) * P, *dBi = j->dBh + (t * H + h) * N;
        float        q = 0.0f;
        for (int p = 0; p < P; p++) {
            const float *Ep = E + (size_t)p * N;
            float        eb = k_dotf(Ep, Bi, N);
            dXi[p] += dout[i] * eb;
            q += Xi[p] * eb;
            axpy(dBi, dout[i] * Xi[p], Ep, N);
        }
        j->ddA[t * H + h] += acc + da;
        acc += dout[i] * q;
    }
}

static void chunk_bwd_phaseA(void *arg, int ith, int nth) {
    const chunk_bwd *j = arg;
    for (int hc = ith; hc < j->H * j->nc; hc += nth)
        chunk_bwd_intra(j, hc / j->nc, hc % j->nc);
}

// Phase B: reverse inter-chunk recurrence per head (E written over dS_loc)
static void chunk_bwd_phaseB(void *arg, int ith, int nth) {
    const chunk_bwd *j = arg;
    size_t           PN = (size_t)j->P * j->N;
    int              lo, hi, H = j->H, nc = j->nc;
    molt_pool_range(H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        float *v = j->vb + (size_t)h * PN; // E[c] while at chunk c
        memset(v, 0, sizeof(float) * PN);
        j->da[(size_t)h * nc] = 0.0f; // S_in[0] = 0
        for (int c = nc - 1; c >= 1; c--) {
            int          t_last = MIN_INT((c + 1) * j->Q, j->T) - 1;
            float        a = j->din[(size_t)h * j->T + (size_t)t_last];
            float       *e = j->E + ((size_t)c * H + h) * PN;
            const float *S = j->st + ((size_t)c * H + h) * PN;
            // S_in[c+1] = a_c S_in[c] + S_c:  d a_c = ⟨E[c], S_in[c]⟩
            j->da[(size_t)h * nc + c] = a * k_dotf(v, S, (int)PN);
            for (size_t k = 0; k < PN; k++) {
                float loc = e[k];
                e[k] = v[k];
                v[k] = a * v[k] + loc;
            }
        }
        memcpy(j->E + (size_t)h * PN, v, sizeof(float) * PN); // E[0]
    }
}

static void chunk_bwd_phaseC(void *arg, int ith, int nth) {
    const chunk_bwd *j = arg;
    for (int hc = ith; hc < j->H * j->nc; hc += nth)
        chunk_bwd_state(j, hc / j->nc, hc % j->nc);
}

void cpu_ssd_scan_chunked_backward(const molt_exec *ex, float *dX, float *ddA, float *dB,
                                   float *dC, const float *dy, const float *X, const float *dA,
                                   const float *B, const float *C, int T, int H, int P, int N,
                                   int G, int Q, float *work) {
    if (T <= 0)
        return;
    if (Q > T)
        Q = T;
    int    nc = (T + Q - 1) / Q;
    size_t PN = (size_t)P * N, HT = (size_t)H * T;
    // saved by the forward (layout in cpu/ssm.c): st, vbuf, din, dout, row
    const float *st = work;
    const float *din = st + ((size_t)nc + 1) * H * PN;
    const float *dout = din + HT;
    float       *E = work + ssd_chunked_work(T, H, P, N, G, Q);
    float       *vb = E + (size_t)nc * H * PN;
    float       *da = vb + (size_t)H * PN;
    float       *r1 = da + (size_t)H * nc;
    float       *r2 = r1 + HT;
    float       *dBh = H == G ? dB : r2 + HT;
    float       *dCh = H == G ? dC : dBh + (size_t)T * H * N;
    chunk_bwd    j = {dX, ddA, dBh, dCh, E,  vb, da, r1, r2, st, din, dout, dy, X, dA, B, C,
                      T,  H,   P,   N,   G,  Q,  nc};
    size_t n_items = (size_t)H * (size_t)nc;
    size_t cost = 2 * (size_t)T * (size_t)H * ((size_t)Q * (size_t)(N + P) + 2 * PN);
    int    nth = ssm_nth(ex, n_items, cost, 32768);
    molt_pool_run(nth, chunk_bwd_phaseA, &j);
    molt_pool_run(nth, chunk_bwd_phaseB, &j);
    molt_pool_run(nth, chunk_bwd_phaseC, &j);
    if (H != G) {
        group_sum_task gs = {dB, dC, dBh, dCh, T, H, N, G};
        molt_pool_run(ssm_nth(ex, (size_t)T, 2 * (size_t)T * H * N, 65536), group_sum_rows, &gs);
    }
}

// ----------------------------------------------------------------------------
// materialized mixing matrix
//
// forward:  M[h,t,s] = (C_t·B_s) · L[t,s] · cs[s,h]  (s ≤ t),  L[t,s] = exp(Σ_{k=s+1..t} dA_k)
//           M[h,t,t] += D[h]
// backward, per head h and row t, with m = dM[h,t,s]:
//   dD[h]      += Σ_t dM[h,t,t]
//   dcs[s,h]    = Σ_{t≥s} m · (C_t·B_s) L[t,s]
//   dC_t       += Σ_s m L cs · B_s;     dB_s += Σ_{t≥s} m L cs · C_t
//   ddA_k       = Σ_{t ≥ k > s} m · M0[h,t,s]     (M0 without D)
//
// work (floats): row [H,T] (one row of m·M0 per head), and when H > G the
// per-head dBh, dCh [T,H,N] summed over each group's heads at the end.

size_t ssd_materialize_backward_work(int T, int H, int N, int G) {
    if (T <= 0)
        return 0;
    size_t n = (size_t)H * (size_t)T;
    if (H != G)
        n += 2 * (size_t)T * (size_t)H * (size_t)N;
    return n;
}

typedef struct mat_bwd {
    float       *ddA, *dBh, *dCh, *dcs, *dD, *row;
    const float *dM, *dA, *B, *C, *cs, *D;
    int          T, H, N, G, nonpos;
} mat_bwd;

static void mat_bwd_heads(void *arg, int ith, int nth) {
    const mat_bwd *j = arg;
    int            T = j->T, H = j->H, N = j->N, G = j->G, hpg = H / G, lo, hi;
    molt_pool_range(H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        int    g = h / hpg;
        float *w = j->row + (size_t)h * T;
        for (int t = 0; t < T; t++) { // this head's slices of every output
            j->ddA[(size_t)t * H + h] = 0.0f;
            if (j->dcs)
                j->dcs[(size_t)t * H + h] = 0.0f;
            memset(j->dBh + ((size_t)t * H + h) * N, 0, sizeof(float) * (size_t)N);
            memset(j->dCh + ((size_t)t * H + h) * N, 0, sizeof(float) * (size_t)N);
        }
        float dDh = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *dMt = j->dM + ((size_t)h * T + t) * T;
            const float *Ct = j->C + ((size_t)t * G + g) * N;
            float       *dCt = j->dCh + ((size_t)t * H + h) * N;
            float        seg = 0.0f;
            int          s_lo = 0; // w[s] = 0 below s_lo (decayed away)
            dDh += dMt[t];
            for (int s = t; s >= 0; s--) {
                if (seg < SSM_EXP_FLUSH) { // M0[h,t,s] = 0: no gradient through it
                    w[s] = 0.0f;
                    if (j->nonpos) { // nor through anything older
                        s_lo = s;
                        break;
                    }
                    seg += j->dA[(size_t)s * H + h];
                    continue;
                }
                const float *Bs = j->B + ((size_t)s * G + g) * N;
                float        m = dMt[s], L = expf(seg);
                float        cs = j->cs ? j->cs[(size_t)s * H + h] : 1.0f;
                float        cb = k_dotf(Ct, Bs, N);
                if (j->dcs)
                    j->dcs[(size_t)s * H + h] += m * cb * L;
                float gl = m * L * cs; // dM0 / d(C_t·B_s)
                axpy(dCt, gl, Bs, N);
                axpy(j->dBh + ((size_t)s * H + h) * N, gl, Ct, N);
                w[s] = gl * cb; // m · M0[h,t,s]
                seg += j->dA[(size_t)s * H + h];
            }
            float acc = 0.0f; // ddA_k += Σ_{s<k} w_s, k = 1..t (0 for k ≤ s_lo)
            for (int k = s_lo + 1; k <= t; k++) {
                acc += w[k - 1];
                j->ddA[(size_t)k * H + h] += acc;
            }
        }
        if (j->dD)
            j->dD[h] += dDh;
    }
}

void cpu_ssd_materialize_backward(const molt_exec *ex, float *ddA, float *dB, float *dC,
                                  float *dcolscale, float *dD, const float *dM, const float *dA,
                                  const float *B, const float *C, const float *colscale,
                                  const float *D, int T, int H, int N, int G, float *work) {
    if (T <= 0)
        return;
    float  *dBh = H == G ? dB : work + (size_t)H * T;
    float  *dCh = H == G ? dC : dBh + (size_t)T * H * N;
    mat_bwd j = {ddA, dBh, dCh, colscale ? dcolscale : NULL, D ? dD : NULL, work, dM, dA, B, C,
                 colscale, D, T, H, N, G, all_nonpos(dA, (size_t)T * H)};
    size_t  cost = (size_t)H * (size_t)T * (size_t)T * (size_t)(3 * N + 4) / 2;
    molt_pool_run(ssm_nth(ex, (size_t)H, cost, 32768), mat_bwd_heads, &j);
    if (H != G) {
        group_sum_task gs = {dB, dC, dBh, dCh, T, H, N, G};
        molt_pool_run(ssm_nth(ex, (size_t)T, 2 * (size_t)T * H * N, 65536), group_sum_rows, &gs);
    }
}
