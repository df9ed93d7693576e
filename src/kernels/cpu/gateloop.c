/*
 * gateloop.c — CPU GateLoop kernels, forward: the transition's row stage
 * (gl_prep), the recurrent step over rows, the chunked scan and the
 * materialized mixing matrix. Contracts and the complex-pair layout in
 * kernels/gateloop.h; math in shared/docs/ALGORITHMS.md §9 (and §8 for the
 * rotation trick).
 *
 * Letters: T tokens, H heads, N q/k dims per head, J = N/2 pairs, P v dims,
 * Q chunk length (Lc ≤ Q for the last chunk), nc = ceil(T/Q) chunks.
 *
 * Stability: magnitudes only ever enter as exp(Σ la) over a segment that is
 * accumulated directly from one of its ends (never the difference of two
 * long prefix sums: no cancellation, no overflow since la ≤ 0 makes every
 * exponent ≤ 0 in the mixer); phases enter as rotations of q and k by a
 * cumulative phase summed in double and reduced mod 2π (a rotation keeps the
 * norm, so it cannot overflow either). This is the log-space form of the
 * paper's (Q ⊙ Πa)(K ⊘ Πa)ᵀ, which overflows beyond ~100 tokens.
 *
 * Threading: molt's pool over heads (and chunks, rows); every task owns its
 * outputs and sums in a fixed order: bit-identical for any thread count.
 */
#include "kernels/gateloop.h"

#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gateloop_util.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// prep:  la = log sigmoid(a_mag + b),  th = a_phase + b

typedef struct prep_task {
    float       *la, *th;
    const float *a, *b;
    int          lda, n, HJ;
} prep_task;

static void prep_run(void *arg, int ith, int nth) {
    const prep_task *j = arg;
    int              lo, hi, HJ = j->HJ;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const float *a = j->a + (size_t)r * j->lda;
        float       *la = j->la + (size_t)r * HJ, *th = j->th + (size_t)r * HJ;
        for (int i = 0; i < HJ; i++) {
            la[i] = gl_logsigmoid(a[i] + (j->b ? j->b[i] : 0.0f));
            th[i] = a[HJ + i] + (j->b ? j->b[HJ + i] : 0.0f);
        }
    }
}

void cpu_gl_prep(const molt_exec *ex, float *la, float *th, const float *a, int lda,
                 const float *bias, int n, int HJ) {
    if (n <= 0 || HJ <= 0)
        return;
    prep_task j = {la, th, a, bias, lda, n, HJ};
    molt_pool_run(gl_nth(ex, (size_t)n, (size_t)n * (size_t)HJ * 40), prep_run, &j);
}

// ----------------------------------------------------------------------------
// recurrent step over rows: for each head, pair j (a = e^la·e^{i·th}):
//   S[j,:] ← a·S[j,:] + k̃_j·v        y = Re(Σ_j q̃_j·S[j,:])

typedef struct step_task {
    float       *y;
    float *const *state;
    const float  *q, *k, *v, *la, *th;
    int           ld, n, H, N, P;
} step_task;

static void step_one(const step_task *j, int r, int h) {
    int          N = j->N, P = j->P, J = N / 2, HJ = j->H * J;
    float       *S = j->state[r] + (size_t)h * N * P, *y = j->y + ((size_t)r * j->H + h) * P;
    const float *q = j->q + (size_t)r * j->ld + (size_t)h * N;
    const float *k = j->k + (size_t)r * j->ld + (size_t)h * N;
    const float *v = j->v + (size_t)r * j->ld + (size_t)h * P;
    const float *la = j->la + (size_t)r * HJ + (size_t)h * J;
    const float *th = j->th + (size_t)r * HJ + (size_t)h * J;
    for (int p = 0; p < P; p++)
        y[p] = 0.0f;
    for (int jj = 0; jj < J; jj++) {
        float  m = gl_decay(la[jj]), ar = m * cosf(th[jj]), ai = m * sinf(th[jj]);
        float  kr = k[2 * jj], ki = k[2 * jj + 1], qr = q[2 * jj], qi = q[2 * jj + 1];
        float *Sr = S + (size_t)(2 * jj) * P, *Si = Sr + P;
        for (int p = 0; p < P; p++) {
            float re = ar * Sr[p] - ai * Si[p] + kr * v[p];
            float im = ar * Si[p] + ai * Sr[p] + ki * v[p];
            Sr[p] = re;
            Si[p] = im;
            y[p] += qr * re - qi * im;
        }
    }
}

static void step_run(void *arg, int ith, int nth) {
    const step_task *j = arg;
    int              lo, hi;
    molt_pool_range(j->n * j->H, ith, nth, &lo, &hi);
    for (int rh = lo; rh < hi; rh++)
        step_one(j, rh / j->H, rh % j->H);
}

void cpu_gl_step_rows(const molt_exec *ex, float *y, float *const *state, const float *q,
                      const float *k, const float *v, int ld, const float *la, const float *th,
                      int n, int H, int N, int P) {
    if (n <= 0)
        return;
    step_task j = {y, state, q, k, v, la, th, ld, n, H, N, P};
    size_t    items = (size_t)n * (size_t)H;
    molt_pool_run(gl_nth(ex, items, items * (size_t)N * (size_t)P * 4), step_run, &j);
}

// ----------------------------------------------------------------------------
// chunked scan, per head h and chunk c = tokens t0 .. t0+Lc−1 (local i, s):
//   lc[i,j]  = Σ_{r=0..i} la_r[j]                  (from the chunk's start)
//   sf[i,j]  = Σ_{r=i+1..Lc−1} la_r[j]             (to the chunk's end)
//   Φ[i,j]   = Σ_{r=0..i} th_r[j] (double, mod 2π); q̂_i = q̃_i·e^{iΦ_i}, k̂_i = k̃_i·e^{−iΦ_i}
//   y_i      = Σ_{s≤i} (Σ_j exp(Σ_{r=s+1..i} la_r[j])·Re(q̂_i[j]·k̂_s[j]))·v_s   phase 1
//   S_c      = e^{iΦ_{Lc−1}}·Σ_s exp(sf_s)·k̂_s ⊗ v_s      chunk state from 0, phase 1
//   S_in[c+1] = exp(lc_{Lc−1})·e^{iΦ_{Lc−1}}·S_in[c] + S_c                      phase 2
//   y_i     += Σ_j exp(lc_i[j])·Re(q̂_i[j]·S_in[c][j,:])                          phase 3
//
// Work layout (floats):
//   st   [nc, H, N, P]  phase 1 writes S_c; phase 2 replaces it by S_in[c] (saved)
//   vbuf [H, N, P]      running state when the caller passes none
//   lc, sf, cs, sn, seg [H, T, J]   prefix / suffix log-magnitudes, cos / sin of Φ,
//                                   segment-sum accumulators (J per chunk, at its start)
//   qh, kh [H, T, N]    rotated q̂, k̂
//   row  [H, T]         one row of intra-chunk scores, Lc per (head, chunk)

size_t gl_chunked_work(int T, int H, int N, int P, int Q) {
    if (T <= 0)
        return 0;
    int    Qc = Q < T ? Q : T;
    size_t nc = (size_t)((T + Qc - 1) / Qc), HT = (size_t)H * (size_t)T, J = (size_t)N / 2;
    return (nc + 1) * (size_t)H * (size_t)N * (size_t)P + HT * (5 * J + 2 * (size_t)N + 1);
}

typedef struct chunk_task {
    float       *y, *state, *st, *vbuf, *lc, *sf, *cs, *sn, *seg, *qh, *kh, *row;
    const float *q, *k, *v, *la, *th;
    int          ld, T, H, N, P, Q, nc;
} chunk_task;

// the chunk's local tables: lc, sf, cs, sn, q̂, k̂ at (h, t0 .. t0+Lc−1)
static void chunk_tables(const chunk_task *j, int h, int t0, int Lc) {
    int    N = j->N, J = N / 2, HJ = j->H * J;
    size_t o = (size_t)h * j->T + (size_t)t0;
    float *lc = j->lc + o * J, *sf = j->sf + o * J, *cs = j->cs + o * J, *sn = j->sn + o * J;
    float *qh = j->qh + o * N, *kh = j->kh + o * N;
    for (int jj = 0; jj < J; jj++) {
        float  l = 0.0f;
        double f = 0.0;
        for (int i = 0; i < Lc; i++) {
            size_t tj = (size_t)(t0 + i) * HJ + (size_t)h * J + (size_t)jj;
            l += j->la[tj];
            f = gl_wrap(f + (double)j->th[tj]);
            lc[(size_t)i * J + jj] = l;
            cs[(size_t)i * J + jj] = (float)cos(f);
            sn[(size_t)i * J + jj] = (float)sin(f);
        }
        l = 0.0f;
        for (int i = Lc - 1; i >= 0; i--) {
            sf[(size_t)i * J + jj] = l;
            l += j->la[(size_t)(t0 + i) * HJ + (size_t)h * J + (size_t)jj];
        }
    }
    for (int i = 0; i < Lc; i++) {
        const float *q = j->q + (size_t)(t0 + i) * j->ld + (size_t)h * N;
        const float *k = j->k + (size_t)(t0 + i) * j->ld + (size_t)h * N;
        for (int jj = 0; jj < J; jj++) {
            float c = cs[(size_t)i * J + jj], s = sn[(size_t)i * J + jj];
            gl_rot(&qh[(size_t)i * N + 2 * jj], q[2 * jj], q[2 * jj + 1], c, s);
            gl_rot(&kh[(size_t)i * N + 2 * jj], k[2 * jj], k[2 * jj + 1], c, -s);
        }
    }
}

// phase 1 for one (head, chunk): tables, intra-chunk y (written) and S_c
static void chunk_intra(const chunk_task *j, int h, int c) {
    int    N = j->N, P = j->P, J = N / 2, HJ = j->H * J, t0 = c * j->Q;
    int    Lc = j->T - t0 < j->Q ? j->T - t0 : j->Q;
    size_t o = (size_t)h * j->T + (size_t)t0;
    chunk_tables(j, h, t0, Lc);
    const float *qh = j->qh + o * N, *kh = j->kh + o * N, *sf = j->sf + o * J;
    float       *row = j->row + o, *seg = j->seg + o * J;
    for (int i = 0; i < Lc; i++) {
        for (int jj = 0; jj < J; jj++)
            seg[jj] = 0.0f;
        for (int s = i; s >= 0; s--) { // seg = Σ_{r=s+1..i} la_r, grown from the diagonal
            const float *la = j->la + (size_t)(t0 + s) * HJ + (size_t)h * J;
            row[s] = gl_score(qh + (size_t)i * N, kh + (size_t)s * N, seg, J);
            for (int jj = 0; jj < J; jj++)
                seg[jj] += la[jj];
        }
        float *yi = j->y + ((size_t)(t0 + i) * j->H + h) * P;
        for (int p = 0; p < P; p++)
            yi[p] = 0.0f;
        for (int s = 0; s <= i; s++) {
            const float *vs = j->v + (size_t)(t0 + s) * j->ld + (size_t)h * P;
            float        r = row[s];
            for (int p = 0; p < P; p++)
                yi[p] += r * vs[p];
        }
    }
    // S_c = e^{iΦ_last}·Σ_s exp(sf_s)·k̂_s ⊗ v_s
    float *S = j->st + ((size_t)c * j->H + h) * (size_t)N * P;
    memset(S, 0, sizeof(float) * (size_t)N * P);
    for (int s = 0; s < Lc; s++) {
        const float *vs = j->v + (size_t)(t0 + s) * j->ld + (size_t)h * P;
        for (int jj = 0; jj < J; jj++) {
            float e = gl_decay(sf[(size_t)s * J + jj]);
            float kr = e * kh[(size_t)s * N + 2 * jj], ki = e * kh[(size_t)s * N + 2 * jj + 1];
            float *Sr = S + (size_t)(2 * jj) * P, *Si = Sr + P;
            for (int p = 0; p < P; p++) {
                Sr[p] += kr * vs[p];
                Si[p] += ki * vs[p];
            }
        }
    }
    const float *cl = j->cs + (o + (size_t)(Lc - 1)) * J, *sl = j->sn + (o + (size_t)(Lc - 1)) * J;
    for (int jj = 0; jj < J; jj++)
        gl_rot_rows(S + (size_t)(2 * jj) * P, P, 1.0f, cl[jj], sl[jj]);
}

static void chunked_phase1(void *arg, int ith, int nth) {
    const chunk_task *j = arg;
    for (int hc = ith; hc < j->H * j->nc; hc += nth)
        chunk_intra(j, hc / j->nc, hc % j->nc);
}

// phase 2: state passing across chunks, per head; st[c] becomes S_in[c]
static void chunked_phase2(void *arg, int ith, int nth) {
    const chunk_task *j = arg;
    int               N = j->N, P = j->P, J = N / 2, lo, hi;
    size_t            NP = (size_t)N * P;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        float *v = j->state ? j->state + (size_t)h * NP : j->vbuf + (size_t)h * NP;
        if (!j->state)
            memset(v, 0, sizeof(float) * NP);
        for (int c = 0; c < j->nc; c++) {
            int    t_last = (c + 1) * j->Q < j->T ? (c + 1) * j->Q - 1 : j->T - 1;
            size_t o = ((size_t)h * j->T + (size_t)t_last) * J;
            float *sc = j->st + ((size_t)c * j->H + h) * NP;
            for (size_t e = 0; e < NP; e++) { // swap: sc ← S_in[c], v keeps S_c
                float t = sc[e];
                sc[e] = v[e];
                v[e] = t;
            }
            for (int jj = 0; jj < J; jj++) { // v = A·S_in[c] + S_c
                float *vr = v + (size_t)(2 * jj) * P, *vi = vr + P;
                const float *sr = sc + (size_t)(2 * jj) * P, *si = sr + P;
                float m = gl_decay(j->lc[o + jj]), ar = m * j->cs[o + jj], ai = m * j->sn[o + jj];
                for (int p = 0; p < P; p++) {
                    float re = ar * sr[p] - ai * si[p], im = ar * si[p] + ai * sr[p];
                    vr[p] += re;
                    vi[p] += im;
                }
            }
        }
    }
}

// phase 3: the contribution of the state entering each chunk
static void chunked_phase3(void *arg, int ith, int nth) {
    const chunk_task *j = arg;
    int               N = j->N, P = j->P, J = N / 2;
    for (int hc = ith; hc < j->H * j->nc; hc += nth) {
        int h = hc / j->nc, c = hc % j->nc, t0 = c * j->Q;
        int Lc = j->T - t0 < j->Q ? j->T - t0 : j->Q;
        if (c == 0 && !j->state)
            continue; // zero initial state
        const float *S = j->st + ((size_t)c * j->H + h) * (size_t)N * P;
        size_t       o = (size_t)h * j->T + (size_t)t0;
        for (int i = 0; i < Lc; i++) {
            const float *qh = j->qh + (o + (size_t)i) * N, *lc = j->lc + (o + (size_t)i) * J;
            float       *yi = j->y + ((size_t)(t0 + i) * j->H + h) * P;
            for (int jj = 0; jj < J; jj++) {
                float e = gl_decay(lc[jj]);
                if (e == 0.0f)
                    continue;
                float        qr = e * qh[2 * jj], qi = e * qh[2 * jj + 1];
                const float *Sr = S + (size_t)(2 * jj) * P, *Si = Sr + P;
                for (int p = 0; p < P; p++)
                    yi[p] += qr * Sr[p] - qi * Si[p];
            }
        }
    }
}

void cpu_gl_scan_chunked(const molt_exec *ex, float *y, float *state, const float *q,
                         const float *k, const float *v, int ld, const float *la, const float *th,
                         int T, int H, int N, int P, int Q, float *work) {
    if (T <= 0)
        return;
    if (Q > T)
        Q = T;
    int    nc = (T + Q - 1) / Q, J = N / 2;
    size_t NP = (size_t)N * P, HT = (size_t)H * T;
    float *st = work, *vbuf = st + (size_t)nc * H * NP, *lc = vbuf + (size_t)H * NP;
    float *sf = lc + HT * J, *cs = sf + HT * J, *sn = cs + HT * J, *seg = sn + HT * J;
    float *qh = seg + HT * J, *kh = qh + HT * N, *row = kh + HT * N;
    chunk_task j = {y,  state, st, vbuf, lc, sf, cs, sn, seg, qh, kh, row, q,
                    k,  v,     la, th,   ld, T,  H,  N,  P,   Q,  nc};
    size_t items = (size_t)H * (size_t)nc;
    size_t cost = HT * ((size_t)Q * (size_t)(J * 4 + P) + 4 * NP);
    int    nth = gl_nth(ex, items, cost);
    molt_pool_run(nth, chunked_phase1, &j);
    molt_pool_run(gl_nth(ex, (size_t)H, cost), chunked_phase2, &j);
    molt_pool_run(nth, chunked_phase3, &j);
}

// ----------------------------------------------------------------------------
// associative scan (the paper's O(T log T) parallel form), per head h and pair j:
//   e_t = (A_t, B_t) = ((la_t, th_t), k̃_t ⊗ v_t);  round r (offset o = 2^r), t descending
//   so that e_{t−o} is still the previous round's:  e_t ← e_{t−o} • e_t,
//   (A_i, B_i) • (A_j, B_j) = (A_j·A_i, A_j·B_i + B_j),  A in log-polar form
// then S_t = A_t·S_0 + B_t,  y_t = Re(Σ_j q̃_t[j]·S_t[j,:]).
// Work layout (floats): ls, ph [H, J, T] (Σ la, Σ th mod 2π), B [H, J, T, 2, P].

size_t gl_assoc_work(int T, int H, int N, int P) {
    return T <= 0 ? 0 : (size_t)H * (size_t)(N / 2) * (size_t)T * (2 + 2 * (size_t)P);
}

typedef struct assoc_task {
    float       *y, *state, *ls, *ph, *B;
    const float *q, *k, *v, *la, *th;
    int          ld, T, H, N, P;
} assoc_task;

static void assoc_head(const assoc_task *j, int h) {
    int    T = j->T, N = j->N, P = j->P, J = N / 2, HJ = j->H * J;
    size_t P2 = 2 * (size_t)P;
    for (int jj = 0; jj < J; jj++) {
        size_t o = ((size_t)h * J + jj) * T;
        float *ls = j->ls + o, *ph = j->ph + o, *B = j->B + o * P2;
        for (int t = 0; t < T; t++) { // the elements
            const float *k = j->k + (size_t)t * j->ld + (size_t)h * N + 2 * jj;
            const float *v = j->v + (size_t)t * j->ld + (size_t)h * P;
            float       *b = B + (size_t)t * P2;
            ls[t] = j->la[(size_t)t * HJ + (size_t)h * J + jj];
            ph[t] = (float)gl_wrap((double)j->th[(size_t)t * HJ + (size_t)h * J + jj]);
            for (int p = 0; p < P; p++) {
                b[p] = k[0] * v[p];
                b[P + p] = k[1] * v[p];
            }
        }
        for (int off = 1; off < T; off *= 2) // rounds
            for (int t = T - 1; t >= off; t--) {
                float *bi = B + (size_t)(t - off) * P2, *bj = B + (size_t)t * P2;
                float  m = gl_decay(ls[t]), ar = m * cosf(ph[t]), ai = m * sinf(ph[t]);
                for (int p = 0; p < P; p++) {
                    float re = ar * bi[p] - ai * bi[P + p], im = ar * bi[P + p] + ai * bi[p];
                    bj[p] += re;
                    bj[P + p] += im;
                }
                ls[t] += ls[t - off];
                ph[t] = (float)gl_wrap((double)ph[t] + (double)ph[t - off]);
            }
        float *S0 = j->state ? j->state + ((size_t)h * N + 2 * jj) * P : NULL;
        for (int t = 0; S0 && t < T; t++) // S_t = A_t·S_0 + B_t
            gl_add_rot(B + (size_t)t * P2, S0, P, gl_decay(ls[t]), cosf(ph[t]), sinf(ph[t]));
        for (int t = 0; t < T; t++) {
            const float *q = j->q + (size_t)t * j->ld + (size_t)h * N + 2 * jj;
            const float *b = B + (size_t)t * P2;
            float       *y = j->y + ((size_t)t * j->H + h) * P;
            for (int p = 0; p < P; p++)
                y[p] = (jj ? y[p] : 0.0f) + (q[0] * b[p] - q[1] * b[P + p]);
        }
        if (S0)
            memcpy(S0, B + (size_t)(T - 1) * P2, sizeof(float) * P2);
    }
}

static void assoc_run(void *arg, int ith, int nth) {
    const assoc_task *j = arg;
    int               lo, hi;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++)
        assoc_head(j, h);
}

void cpu_gl_scan_assoc(const molt_exec *ex, float *y, float *state, const float *q,
                       const float *k, const float *v, int ld, const float *la, const float *th,
                       int T, int H, int N, int P, float *work) {
    if (T <= 0)
        return;
    size_t     HJT = (size_t)H * (N / 2) * T;
    assoc_task j = {y, state, work, work + HJT, work + 2 * HJT, q, k, v, la, th, ld, T, H, N, P};
    size_t     rounds = 1;
    while (((size_t)1 << rounds) < (size_t)T)
        rounds++;
    molt_pool_run(gl_nth(ex, (size_t)H, HJT * rounds * (size_t)P * 8), assoc_run, &j);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix
//   M[h,t,s] = Σ_j exp(Σ_{r=s+1..t} la_r[j])·Re(q̂_t[j]·k̂_s[j])    s ≤ t, else 0
// with q̂, k̂ rotated by the prefix phase from t = 0 (phase A, per head);
// rows in phase B. Work: qh, kh [H, T, N], seg [H, T, J].

size_t gl_materialize_work(int T, int H, int N) {
    return T <= 0 ? 0 : (size_t)H * (size_t)T * (2 * (size_t)N + (size_t)N / 2);
}

typedef struct mat_task {
    float       *M, *qh, *kh, *seg;
    const float *q, *k, *la, *th;
    int          ld, T, H, N;
} mat_task;

static void mat_rotate(void *arg, int ith, int nth) {
    const mat_task *j = arg;
    int             N = j->N, J = N / 2, HJ = j->H * J, lo, hi;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++)
        for (int jj = 0; jj < J; jj++) {
            double f = 0.0;
            for (int t = 0; t < j->T; t++) {
                f = gl_wrap(f + (double)j->th[(size_t)t * HJ + (size_t)h * J + (size_t)jj]);
                float        c = (float)cos(f), s = (float)sin(f);
                const float *q = j->q + (size_t)t * j->ld + (size_t)h * N + 2 * jj;
                const float *k = j->k + (size_t)t * j->ld + (size_t)h * N + 2 * jj;
                size_t       o = ((size_t)h * j->T + (size_t)t) * N + 2 * (size_t)jj;
                gl_rot(j->qh + o, q[0], q[1], c, s);
                gl_rot(j->kh + o, k[0], k[1], c, -s);
            }
        }
}

static void mat_rows(void *arg, int ith, int nth) {
    const mat_task *j = arg;
    int             T = j->T, N = j->N, J = N / 2, HJ = j->H * J, lo, hi;
    molt_pool_range(j->H * T, ith, nth, &lo, &hi);
    for (int ht = lo; ht < hi; ht++) {
        int          h = ht / T, t = ht % T;
        float       *Mt = j->M + (size_t)ht * T, *seg = j->seg + (size_t)ht * J;
        const float *qh = j->qh + (size_t)ht * N, *kh = j->kh + (size_t)h * T * N;
        for (int jj = 0; jj < J; jj++)
            seg[jj] = 0.0f;
        for (int s = t; s >= 0; s--) {
            const float *la = j->la + (size_t)s * HJ + (size_t)h * J;
            Mt[s] = gl_score(qh, kh + (size_t)s * N, seg, J);
            for (int jj = 0; jj < J; jj++)
                seg[jj] += la[jj];
        }
        for (int s = t + 1; s < T; s++)
            Mt[s] = 0.0f;
    }
}

void cpu_gl_materialize(const molt_exec *ex, float *M, const float *q, const float *k, int ld,
                        const float *la, const float *th, int T, int H, int N, float *work) {
    if (T <= 0)
        return;
    size_t   HT = (size_t)H * T;
    mat_task j = {M, work, work + HT * N, work + 2 * HT * N, q, k, la, th, ld, T, H, N};
    molt_pool_run(gl_nth(ex, (size_t)H, HT * (size_t)N * 40), mat_rotate, &j);
    molt_pool_run(gl_nth(ex, HT, HT * (size_t)T * (size_t)N * 4), mat_rows, &j);
}
