/*
 * gateloop_backward.cu — CUDA GateLoop backward ops (kernels/gateloop.h):
 * the chunked scan's backward and the materialized matrix's backward
 * (gl_prep_backward is with the forwards in gateloop.cu). Math and orders
 * are the CPU's (cpu/gateloop_backward.c, which states the complex
 * gradients); every pair j of a head is an independent chain there (its own
 * state rows 2j, 2j+1, adjoint rows, ∂q̃_j, ∂k̃_j, ∂la_j, ∂th_j), so:
 *
 * Scan backward: one thread per (head, pair) runs the CPU's loop for its
 * pair (chunks in reverse, the chunk's states recomputed from the saved
 * entering state, the adjoint backwards, columns p in order); ∂v, the one
 * output summed over pairs, is written per pair into a scratch [T,H,J,P]
 * and summed in pair order by a second kernel (the CPU's order).
 * Materialized backward: one thread per (head, pair) runs the CPU's loops for
 * its pair (O(T²) each; this form is for tests and analysis).
 *
 * Correct first, not fast: the parallelism is H·J threads. Deterministic:
 * one writer per output, fixed order, no atomics.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gateloop.cuh"

// ----------------------------------------------------------------------------
// chunked scan backward. Work: [gl_chunked_work: the forward's] | sb [H,Qc,N,P] | g [H,N,P]

__global__ void k_gl_scan_bwd(float *dq, float *dk, float *dvp, int ldd, float *dla, float *dth,
                              float *sb0, float *g0, const float *st, const float *dy,
                              const float *q, const float *k, const float *v, int ld,
                              const float *la, const float *th, int T, int H, int N, int P,
                              int Q, int nc) {
    int    J = N / 2, HJ = H * J;
    size_t NP = (size_t)N * P;
    GL_GRID_STRIDE(e, (size_t)H * J) {
        int    h = (int)(e / J), jj = (int)(e % J);
        float *sb = sb0 + (size_t)h * Q * NP + (size_t)(2 * jj) * P; // rows of pair jj
        float *Gr = g0 + (size_t)h * NP + (size_t)(2 * jj) * P, *Gi = Gr + P;
        for (int p = 0; p < P; p++)
            Gr[p] = Gi[p] = 0.0f;
        for (int c = nc - 1; c >= 0; c--) {
            int t0 = c * Q, Lc = T - t0 < Q ? T - t0 : Q;
            for (int i = 0; i < Lc; i++) { // S_t of the chunk, from the state entering it
                int          t = t0 + i;
                size_t       a = (size_t)t * HJ + (size_t)h * J + jj;
                float        m = gl_decay(la[a]), ar = m * cosf(th[a]), ai = m * sinf(th[a]);
                const float *pr = i ? sb + (size_t)(i - 1) * NP
                                    : st + ((size_t)c * H + h) * NP + (size_t)(2 * jj) * P;
                const float *pi = pr + P;
                float       *cr = sb + (size_t)i * NP, *ci = cr + P;
                const float *kt = k + (size_t)t * ld + (size_t)h * N + 2 * jj;
                const float *vt = v + (size_t)t * ld + (size_t)h * P;
                for (int p = 0; p < P; p++) {
                    float re = ar * pr[p] - ai * pi[p] + kt[0] * vt[p];
                    float im = ar * pi[p] + ai * pr[p] + kt[1] * vt[p];
                    cr[p] = re;
                    ci[p] = im;
                }
            }
            for (int i = Lc - 1; i >= 0; i--) {
                int          t = t0 + i;
                const float *Sr = sb + (size_t)i * NP, *Si = Sr + P;
                const float *qt = q + (size_t)t * ld + (size_t)h * N + 2 * jj;
                const float *kt = k + (size_t)t * ld + (size_t)h * N + 2 * jj;
                const float *vt = v + (size_t)t * ld + (size_t)h * P;
                const float *dyt = dy + ((size_t)t * H + h) * P;
                float       *dvt = dvp + (((size_t)t * H + h) * J + jj) * P;
                float qr = qt[0], qi = qt[1], kr = kt[0], ki = kt[1];
                float sqr = 0, sqi = 0, skr = 0, ski = 0, sla = 0, sth = 0;
                for (int p = 0; p < P; p++) {
                    Gr[p] += dyt[p] * qr; // G += dy ⊗ conj(q̃)
                    Gi[p] -= dyt[p] * qi;
                    sqr += dyt[p] * Sr[p];
                    sqi -= dyt[p] * Si[p];
                    skr += Gr[p] * vt[p];
                    ski += Gi[p] * vt[p];
                    dvt[p] = Gr[p] * kr + Gi[p] * ki;
                    float ur = Sr[p] - kr * vt[p], ui = Si[p] - ki * vt[p];
                    sla += Gr[p] * ur + Gi[p] * ui;
                    sth += Gi[p] * ur - Gr[p] * ui;
                }
                float *dqt = dq + (size_t)t * ldd + (size_t)h * N + 2 * jj;
                float *dkt = dk + (size_t)t * ldd + (size_t)h * N + 2 * jj;
                size_t a = (size_t)t * HJ + (size_t)h * J + jj;
                dqt[0] = sqr, dqt[1] = sqi;
                dkt[0] = skr, dkt[1] = ski;
                dla[a] = sla, dth[a] = sth;
                float m = gl_decay(la[a]), ar = m * cosf(th[a]), ai = m * sinf(th[a]);
                for (int p = 0; p < P; p++) { // G ← conj(a_t)·G
                    float r = ar * Gr[p] + ai * Gi[p], im = ar * Gi[p] - ai * Gr[p];
                    Gr[p] = r;
                    Gi[p] = im;
                }
            }
        }
    }
}

// ∂v[t,h,p] = Σ_j (pair j's term), j in order
__global__ void k_gl_dv(float *dv, int ldd, const float *dvp, int T, int H, int J, int P) {
    GL_GRID_STRIDE(e, (size_t)T * H * P) {
        int    p = (int)(e % P);
        size_t th = e / P; // t·H + h
        int    h = (int)(th % H), t = (int)(th / H);
        float  acc = 0.0f;
        for (int jj = 0; jj < J; jj++)
            acc += dvp[(th * J + jj) * P + p];
        dv[(size_t)t * ldd + (size_t)h * P + p] = acc;
    }
}

extern "C" void cuda_gl_scan_chunked_backward(const molt_exec *ex, float *dq, float *dk,
                                              float *dv, int ldd, float *dla, float *dth,
                                              const float *dy, const float *q, const float *k,
                                              const float *v, int ld, const float *la,
                                              const float *th, int T, int H, int N, int P, int Q,
                                              float *work) {
    if (T <= 0 || H <= 0)
        return;
    if (Q > T)
        Q = T;
    int          J = N / 2, nc = (T + Q - 1) / Q;
    size_t       NP = (size_t)N * P;
    cudaStream_t s = cu_stream(ex);
    float       *sb = work + gl_chunked_work(T, H, N, P, Q), *g = sb + (size_t)H * Q * NP;
    float       *dvp = NULL;
    size_t       ndvp = (size_t)T * H * J * P;
    if (ndvp && !(dvp = (float *)cu_scratch(ex, sizeof(float) * ndvp)))
        return;
    size_t m = (size_t)H * J;
    if (m) {
        k_gl_scan_bwd<<<cu_blocks(m, 32), 32, 0, s>>>(dq, dk, dvp, ldd, dla, dth, sb, g, work, dy,
                                                      q, k, v, ld, la, th, T, H, N, P, Q, nc);
        CU_LAUNCHED("k_gl_scan_bwd");
    }
    m = (size_t)T * H * P;
    if (m) {
        k_gl_dv<<<cu_blocks(m, 256), 256, 0, s>>>(dv, ldd, dvp, T, H, J, P);
        CU_LAUNCHED("k_gl_dv");
    }
    if (dvp)
        cu_scratch_free(ex, dvp);
}

// ----------------------------------------------------------------------------
// materialized matrix backward, one thread per (h, pair). Work (the CPU's):
//   qh, kh, gq, gk [H,T,N] | cs, sn, w [H,T,J] | seg [H,J] (unused: seg is a register)

__global__ void k_gl_mat_bwd(float *dq, float *dk, int ldd, float *dla, float *dth, float *work,
                             const float *dM, const float *q, const float *k, int ld,
                             const float *la, const float *th, int T, int H, int N) {
    int    J = N / 2, HJ = H * J;
    size_t HT = (size_t)H * T;
    GL_GRID_STRIDE(e, (size_t)H * J) {
        int    h = (int)(e / J), jj = (int)(e % J);
        size_t oT = (size_t)h * T;
        float *qh = work + oT * N, *kh = qh + HT * N, *gq = kh + HT * N, *gk = gq + HT * N;
        float *cs = work + 4 * HT * N + oT * J, *sn = cs + HT * J, *w = sn + HT * J;
        double f = 0.0;
        for (int t = 0; t < T; t++) { // prefix phases, q̂, k̂ (as gl_materialize)
            f = gl_wrap(f + (double)th[(size_t)t * HJ + (size_t)h * J + jj]);
            float c = (float)cos(f), s = (float)sin(f);
            cs[(size_t)t * J + jj] = c, sn[(size_t)t * J + jj] = s;
            const float *qt = q + (size_t)t * ld + (size_t)h * N + 2 * jj;
            const float *kt = k + (size_t)t * ld + (size_t)h * N + 2 * jj;
            gl_rot(qh + (size_t)t * N + 2 * jj, qt[0], qt[1], c, s);
            gl_rot(kh + (size_t)t * N + 2 * jj, kt[0], kt[1], c, -s);
            gq[(size_t)t * N + 2 * jj] = gq[(size_t)t * N + 2 * jj + 1] = 0.0f;
            gk[(size_t)t * N + 2 * jj] = gk[(size_t)t * N + 2 * jj + 1] = 0.0f;
            dla[(size_t)t * HJ + (size_t)h * J + jj] = 0.0f;
        }
        for (int t = 0; t < T; t++) {
            const float *dMt = dM + (oT + (size_t)t) * T, *qt = qh + (size_t)t * N + 2 * jj;
            float       *gqt = gq + (size_t)t * N + 2 * jj, seg = 0.0f;
            for (int s = t; s >= 0; s--) { // W[t,s], G_q̂_t, G_k̂_s
                const float *ks = kh + (size_t)s * N + 2 * jj;
                float       *gks = gk + (size_t)s * N + 2 * jj;
                float        d = dMt[s], ee = d * gl_decay(seg);
                float        kr = ks[0], ki = ks[1], qr = qt[0], qi = qt[1];
                w[(size_t)s * J + jj] = ee * (qr * kr - qi * ki);
                gqt[0] += ee * kr;
                gqt[1] -= ee * ki;
                gks[0] += ee * qr;
                gks[1] -= ee * qi;
                seg += la[(size_t)s * HJ + (size_t)h * J + jj];
            }
            float pre = 0.0f; // ∂la_r += Σ_{s<r} W[t,s] for 1 ≤ r ≤ t
            for (int r = 1; r <= t; r++) {
                pre += w[(size_t)(r - 1) * J + jj];
                dla[(size_t)r * HJ + (size_t)h * J + jj] += pre;
            }
        }
        double acc = 0.0; // ∂Φ, ∂th (suffix sums), ∂q̃ = e^{−iΦ}·G_q̂, ∂k̃ = e^{iΦ}·G_k̂
        for (int t = T - 1; t >= 0; t--) {
            size_t o = (size_t)t * N + 2 * jj;
            float  c = cs[(size_t)t * J + jj], s = sn[(size_t)t * J + jj];
            float  dphi = (qh[o] * gq[o + 1] - qh[o + 1] * gq[o]) -
                         (kh[o] * gk[o + 1] - kh[o + 1] * gk[o]);
            acc += (double)dphi;
            dth[(size_t)t * HJ + (size_t)h * J + jj] = (float)acc;
            gl_rot(dq + (size_t)t * ldd + (size_t)h * N + 2 * jj, gq[o], gq[o + 1], c, -s);
            gl_rot(dk + (size_t)t * ldd + (size_t)h * N + 2 * jj, gk[o], gk[o + 1], c, s);
        }
    }
}

extern "C" void cuda_gl_materialize_backward(const molt_exec *ex, float *dq, float *dk, int ldd,
                                             float *dla, float *dth, const float *dM,
                                             const float *q, const float *k, int ld,
                                             const float *la, const float *th, int T, int H,
                                             int N, float *work) {
    if (T <= 0 || H <= 0)
        return;
    size_t m = (size_t)H * (N / 2);
    if (!m)
        return;
    k_gl_mat_bwd<<<cu_blocks(m, 32), 32, 0, cu_stream(ex)>>>(dq, dk, ldd, dla, dth, work, dM, q,
                                                             k, ld, la, th, T, H, N);
    CU_LAUNCHED("k_gl_mat_bwd");
}
