/*
 * mamba3.cu — CUDA forward of the Mamba-3 ops (kernels/mamba3.h): angles,
 * prep, the scan's inputs (mix) and the within-token correction, the gate,
 * the fold of the previous token into a continued state, the decode step over
 * state slots and the materialized mixing matrix. Backwards in
 * mamba3_backward.cu. The math and the float operations are the CPU's
 * (cpu/mamba3.c via mamba3_util.h; the device twins are in mamba3.cuh).
 *
 * Kept simple (correct first): one thread per output element or per chain
 * ((sequence, head, angle) for the angles, (head, row) for a matrix row), one
 * block per row where a row's outputs share a normalisation or a pointer;
 * every output has one writer and the CPU's order of sums (deterministic, no
 * atomics). Per-row state pointers are host arrays of device pointers; they
 * travel as kernel arguments, at most GL_MAXPTR per launch.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mamba3.cuh"

// ----------------------------------------------------------------------------
// angles:  φ_t = wrap(φ_{t−1} + tanh(a)·π·Δ), one thread per (sequence, head, angle)

__global__ void k_m3_angles(float *phi, gl_ptrs st, int has_state, int seq0, int nseq,
                            const float *zx, int ldz, const float *dt_bias, int T,
                            m3_rows_cfg c) {
    int H = c.H, S = c.S;
    GL_GRID_STRIDE(e, (size_t)nseq * H * S) {
        int    ib = (int)(e / ((size_t)H * S)), hs = (int)(e % ((size_t)H * S));
        int    h = hs / S, s = hs % S, i = seq0 + ib;
        float *sp = has_state ? st.p[ib] + mc_angle(c) + (size_t)h * S + s : NULL;
        float  a = sp ? *sp : 0.0f;
        for (int t = 0; t < T; t++) {
            size_t       row = (size_t)i * T + t;
            const float *z = zx + row * ldz;
            float        d = mc_delta(z, dt_bias, h, c);
            a = mc_wrap(__fadd_rn(a, __fmul_rn(mc_theta(z[mc_ang(c) + s]), d)));
            phi[(row * H + h) * S + s] = a;
        }
        if (sp)
            *sp = a;
    }
}

extern "C" void cuda_m3_angles(const molt_exec *ex, float *phi, float *const *state,
                               const float *zx, int ldz, const float *dt_bias, int n, int T,
                               const m3_rows_cfg *c) {
    if (n <= 0 || c->S <= 0 || c->H <= 0 || T <= 0)
        return;
    int nseq = n / T;
    for (int s0 = 0; s0 < nseq; s0 += GL_MAXPTR) {
        int     nb = state ? (nseq - s0 < GL_MAXPTR ? nseq - s0 : GL_MAXPTR) : nseq;
        gl_ptrs st;
        for (int i = 0; i < GL_MAXPTR; i++)
            st.p[i] = state && i < nb ? state[s0 + i] : NULL;
        size_t m = (size_t)nb * c->H * c->S;
        k_m3_angles<<<cu_blocks(m, 64), 64, 0, cu_stream(ex)>>>(phi, st, state != NULL, s0, nb,
                                                                zx, ldz, dt_bias, T, *c);
        CU_LAUNCHED("k_m3_angles");
        if (!state)
            break;
    }
}

// ----------------------------------------------------------------------------
// prep: one block per row; Δ, dA, λ per head; q, k per (B|C, rank, head), the
// group's 1/rms recomputed by each of its heads (the same bits)

__global__ void k_m3_prep(float *q, float *k, float *dA, float *dlt, float *lam, float *rstd,
                          const float *zx, int ldz, const float *phi, m3_rows_w w,
                          m3_rows_cfg c) {
    int          row = blockIdx.x, H = c.H, N = c.N, G = c.G, R = c.R, S = c.S, hpg = H / G;
    const float *z = zx + (size_t)row * ldz;
    for (int h = threadIdx.x; h < H; h += blockDim.x) {
        float d = mc_delta(z, w.dt_bias, h, c);
        dlt[(size_t)row * H + h] = d;
        dA[(size_t)row * H + h] = d * mc_A_of(z[mc_A(c) + h], c.A_floor);
        lam[(size_t)row * H + h] = mc_sigmoid(z[mc_trap(c) + h]);
    }
    for (int e = threadIdx.x; e < 2 * R * H; e += blockDim.x) {
        int          bc = e / (R * H), r = e / H % R, h = e % H, g = h / hpg;
        const float *raw = z + (bc ? mc_C(c) : mc_B(c));
        const float *nw = bc ? w.C_norm : w.B_norm, *bias = bc ? w.C_bias : w.B_bias;
        float       *out = bc ? q : k;
        const float *b = raw + ((size_t)r * G + g) * N;
        float        rs = 1.0f / sqrtf((float)mc_sumsq(b, N) / (float)N + c.eps);
        if (rstd && h == g * hpg)
            rstd[(((size_t)row * 2 + bc) * R + r) * G + g] = rs;
        float       *o = out + (((size_t)row * R + r) * H + h) * N;
        const float *bh = bias ? bias + ((size_t)h * R + r) * N : NULL;
        for (int i = 0; i < N; i++)
            o[i] = b[i] * rs * (nw ? nw[i] : 1.0f) + (bh ? bh[i] : 0.0f);
        mc_rotate(o, phi + ((size_t)row * H + h) * S, c, 1);
    }
}

extern "C" void cuda_m3_prep(const molt_exec *ex, float *q, float *k, float *dA, float *dlt,
                             float *lam, float *rstd, const float *zx, int ldz, const float *phi,
                             const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    k_m3_prep<<<(unsigned)n, 64, 0, cu_stream(ex)>>>(q, k, dA, dlt, lam, rstd, zx, ldz, phi, *w,
                                                     *c);
    CU_LAUNCHED("k_m3_prep");
}

// ----------------------------------------------------------------------------
// mix: X[t,r] = v_{t,r}·S_t, dAx[t,r] = r == 0 ? dA_t : 0; one thread per X element

__global__ void k_m3_mix(float *X, float *dAx, const float *zx, int ldz, const float *dA,
                         const float *dlt, const float *lam, m3_rows_w w, int n, int T,
                         m3_rows_cfg c) {
    int H = c.H, P = c.P, R = c.R;
    GL_GRID_STRIDE(e, (size_t)n * R * H * P) {
        int    p = (int)(e % P);
        size_t o = e / P; // (row·R + r)·H + h
        int    h = (int)(o % H), r = (int)(o / H % R), row = (int)(o / H / R);
        int    last = row % T == T - 1;
        float  sc = mc_gamma(lam, dlt, row, h, H) + (last ? 0.0f : mc_b(lam, dlt, row + 1, h, H));
        const float *x = zx + (size_t)row * ldz + mc_x(c);
        if (p == 0)
            dAx[o] = r == 0 ? dA[(size_t)row * H + h] : 0.0f;
        X[e] = mc_v(x, mc_mx(w.mimo_x, h, r, R, P), h, p, P) * sc;
    }
}

extern "C" void cuda_m3_mix(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz,
                            const float *dA, const float *dlt, const float *lam,
                            const m3_rows_w *w, int n, int T, const m3_rows_cfg *c) {
    size_t m = (size_t)(n > 0 ? n : 0) * c->R * c->H * c->P;
    if (!m)
        return;
    k_m3_mix<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(X, dAx, zx, ldz, dA, dlt, lam, *w, n,
                                                           T, *c);
    CU_LAUNCHED("k_m3_mix");
}

// ----------------------------------------------------------------------------
// correction: one block per (row, head); the R×R weights (q_r·k_r')·(γ | −b)
// in shared memory, then a thread per (r, p)

__global__ void k_m3_corr(float *ypre, const float *ys, const float *q, const float *k,
                          const float *zx, int ldz, const float *dlt, const float *lam,
                          m3_rows_w w, int T, m3_rows_cfg c) {
    __shared__ float cw[M3C_RMAX * M3C_RMAX];
    int              H = c.H, P = c.P, N = c.N, R = c.R;
    int              row = blockIdx.x / H, h = blockIdx.x % H, last = row % T == T - 1;
    float            gam = mc_gamma(lam, dlt, row, h, H);
    float            bn = last ? 0.0f : mc_b(lam, dlt, row + 1, h, H);
    for (int e = threadIdx.x; e < R * R; e += blockDim.x) {
        int r = e / R, r2 = e % R;
        cw[e] = cu_dotf(q + (((size_t)row * R + r) * H + h) * N,
                        k + (((size_t)row * R + r2) * H + h) * N, N) *
                (r2 > r ? gam : -bn);
    }
    __syncthreads();
    const float *x = zx + (size_t)row * ldz + mc_x(c);
    float        D = w.D ? w.D[h] : 0.0f;
    for (int e = threadIdx.x; e < R * P; e += blockDim.x) {
        int    r = e / P, p = e % P;
        size_t o = (((size_t)row * R + r) * H + h) * P;
        float  acc = ys[o + p];
        for (int r2 = 0; r2 < R; r2++)
            acc += cw[r * R + r2] * mc_v(x, mc_mx(w.mimo_x, h, r2, R, P), h, p, P);
        ypre[o + p] = acc + D * mc_v(x, mc_mx(w.mimo_x, h, r, R, P), h, p, P);
    }
}

extern "C" void cuda_m3_corr(const molt_exec *ex, float *ypre, const float *ys, const float *q,
                             const float *k, const float *zx, int ldz, const float *dlt,
                             const float *lam, const m3_rows_w *w, int n, int T,
                             const m3_rows_cfg *c) {
    if (n <= 0 || c->H <= 0)
        return;
    if (c->R > M3C_RMAX) {
        CU_FAIL("m3_corr: MIMO rank above 16");
        return;
    }
    k_m3_corr<<<(unsigned)((size_t)n * c->H), gl_threads(c->R * c->P), 0, cu_stream(ex)>>>(
        ypre, ys, q, k, zx, ldz, dlt, lam, *w, T, *c);
    CU_LAUNCHED("k_m3_corr");
}

// ----------------------------------------------------------------------------
// gate: g = Σ_r mimo_o_r ⊙ gate(ypre_r, z ⊙ mimo_z_r); one thread per (row, h, p),
// ranks in order; the out norm's 1/rms recomputed per thread (the same bits)

__global__ void k_m3_gate(float *g, float *rstd, const float *ypre, const float *zx, int ldz,
                          m3_rows_w w, int n, m3_rows_cfg c) {
    int H = c.H, P = c.P, R = c.R, Di = H * P;
    GL_GRID_STRIDE(e, (size_t)n * Di) {
        int          row = (int)(e / Di), hp = (int)(e % Di), h = hp / P, p = hp % P;
        const float *z = zx + (size_t)row * ldz;
        float        acc = 0.0f;
        for (int r = 0; r < R; r++) {
            size_t       o = ((size_t)row * R + r) * H + h, wo = ((size_t)h * R + r) * P;
            const float *y = ypre + o * P;
            float        rs = 1.0f;
            if (c.norm) {
                rs = 1.0f / sqrtf((float)mc_sumsq(y, P) / (float)P + c.eps);
                if (rstd && p == 0)
                    rstd[o] = rs;
            }
            float zz = z[hp] * (w.mimo_z ? w.mimo_z[wo + p] : 1.0f);
            float yn = c.norm ? y[p] * rs * w.norm[hp] : y[p];
            float yg = yn * mc_silu(zz);
            if (w.mimo_o)
                yg *= w.mimo_o[wo + p];
            acc = r == 0 ? yg : acc + yg;
        }
        g[e] = acc;
    }
}

extern "C" void cuda_m3_gate(const molt_exec *ex, float *g, float *rstd, const float *ypre,
                             const float *zx, int ldz, const m3_rows_w *w, int n,
                             const m3_rows_cfg *c) {
    size_t m = (size_t)(n > 0 ? n : 0) * c->H * c->P;
    if (!m)
        return;
    k_m3_gate<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(g, rstd, ypre, zx, ldz, *w, n, *c);
    CU_LAUNCHED("k_m3_gate");
}

// ----------------------------------------------------------------------------
// fold: ssm += b_1·Σ_r v_prev,r ⊗ k_prev,r; one thread per ssm element, ranks in order

__global__ void k_m3_fold(float *st, const float *dlt, const float *lam, m3_rows_w w,
                          m3_rows_cfg c) {
    int          H = c.H, P = c.P, N = c.N, R = c.R;
    const float *kp = st + mc_kprev(c), *vp = st + mc_vprev(c);
    GL_GRID_STRIDE(e, (size_t)H * P * N) {
        int   i = (int)(e % N), p = (int)(e / N % P), h = (int)(e / N / P);
        float b = mc_b(lam, dlt, 0, h, H), s = st[e];
        for (int r = 0; r < R; r++) {
            float v = b * mc_v(vp, mc_mx(w.mimo_x, h, r, R, P), h, p, P);
            s += v * kp[((size_t)r * H + h) * N + i];
        }
        st[e] = s;
    }
}

extern "C" void cuda_m3_fold(const molt_exec *ex, float *state, const float *dlt,
                             const float *lam, const m3_rows_w *w, const m3_rows_cfg *c) {
    size_t m = (size_t)c->H * c->P * c->N;
    if (!m)
        return;
    k_m3_fold<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(state, dlt, lam, *w, *c);
    CU_LAUNCHED("k_m3_fold");
}

// ----------------------------------------------------------------------------
// decode step: one block per (head, row of the batch), a thread per column p
// (its ssm rows [h, p, :]); k_prev, v_prev replaced after every column read them

__global__ void k_m3_step_rows(float *ypre, gl_ptrs sp, int r0, const float *q, const float *k,
                               const float *zx, int ldz, const float *dA, const float *dlt,
                               const float *lam, m3_rows_w w, m3_rows_cfg c) {
    int    H = c.H, P = c.P, N = c.N, R = c.R, h = blockIdx.x, row = r0 + (int)blockIdx.y;
    float *st = sp.p[blockIdx.y], *kp = st + mc_kprev(c), *vp = st + mc_vprev(c);
    const float *x = zx + (size_t)row * ldz + mc_x(c);
    float        dAv = dA[(size_t)row * H + h], a = mc_decay(dAv);
    float        gam = mc_gamma(lam, dlt, row, h, H), bet = mc_b(lam, dlt, row, h, H) * a;
    float        D = w.D ? w.D[h] : 0.0f;
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        float *s = st + ((size_t)h * P + p) * N;
        for (int i = 0; i < N; i++)
            s[i] *= a;
        for (int r = 0; r < R; r++) {
            const float *mx = mc_mx(w.mimo_x, h, r, R, P);
            float        vpr = bet * mc_v(vp, mx, h, p, P), vr = gam * mc_v(x, mx, h, p, P);
            const float *kpr = kp + ((size_t)r * H + h) * N;
            const float *kr = k + (((size_t)row * R + r) * H + h) * N;
            for (int i = 0; i < N; i++)
                s[i] += vpr * kpr[i] + vr * kr[i];
        }
        for (int r = 0; r < R; r++) {
            size_t o = ((size_t)row * R + r) * H + h;
            ypre[o * P + p] =
                cu_dotf(s, q + o * N, N) + D * mc_v(x, mc_mx(w.mimo_x, h, r, R, P), h, p, P);
        }
    }
    __syncthreads(); // every column has read k_prev[:, h] and v_prev[h]
    for (int e = threadIdx.x; e < R * N; e += blockDim.x) {
        int r = e / N, i = e % N;
        kp[((size_t)r * H + h) * N + i] = k[(((size_t)row * R + r) * H + h) * N + i];
    }
    for (int p = threadIdx.x; p < P; p += blockDim.x)
        vp[(size_t)h * P + p] = x[(size_t)h * P + p];
}

extern "C" void cuda_m3_step_rows(const molt_exec *ex, float *ypre, float *const *state,
                                  const float *q, const float *k, const float *zx, int ldz,
                                  const float *dA, const float *dlt, const float *lam,
                                  const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    if (n <= 0 || c->H <= 0)
        return;
    for (int r0 = 0; r0 < n; r0 += GL_MAXPTR) {
        int     nb = n - r0 < GL_MAXPTR ? n - r0 : GL_MAXPTR;
        gl_ptrs st;
        for (int i = 0; i < GL_MAXPTR; i++)
            st.p[i] = i < nb ? state[r0 + i] : NULL;
        dim3 grid((unsigned)c->H, (unsigned)nb);
        k_m3_step_rows<<<grid, gl_threads(c->P), 0, cu_stream(ex)>>>(ypre, st, r0, q, k, zx, ldz,
                                                                      dA, dlt, lam, *w, *c);
        CU_LAUNCHED("k_m3_step_rows");
    }
}

// ----------------------------------------------------------------------------
// materialized matrix: q̄, k̄ [T,H,N] (rank means, one thread per element), then
// one thread per row (h, t), the segment sum grown from the diagonal. The
// CPU stops a row at the first flushed decay when every dA ≤ 0 (a host read
// of dA); continuing gives the same zeros, so the GPU always continues.

__global__ void k_m3_mat_rows(float *M, const float *qb, const float *kb, const float *dA,
                              const float *dlt, const float *lam, const float *D, int T,
                              m3_rows_cfg c) {
    int H = c.H, N = c.N;
    GL_GRID_STRIDE(ht, (size_t)H * T) {
        int          h = (int)(ht / T), t = (int)(ht % T);
        float       *Mt = M + ht * T, seg = 0.0f;
        const float *qt = qb + ((size_t)t * H + h) * N;
        for (int s = t; s >= 0; s--) {
            if (seg < SSM_FLUSH) {
                Mt[s] = 0.0f;
            } else {
                float wgt = s == t ? mc_gamma(lam, dlt, t, h, H)
                                   : mc_gamma(lam, dlt, s, h, H) + mc_b(lam, dlt, s + 1, h, H);
                Mt[s] = cu_dotf(qt, kb + ((size_t)s * H + h) * N, N) * expf(seg) * wgt;
            }
            seg += dA[(size_t)s * H + h];
        }
        for (int s = t + 1; s < T; s++)
            Mt[s] = 0.0f;
        if (D)
            Mt[t] += D[h] / (float)c.R;
    }
}

extern "C" void cuda_m3_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                                    const float *dA, const float *dlt, const float *lam,
                                    const float *D, int T, const m3_rows_cfg *c, float *work) {
    if (T <= 0 || c->H <= 0)
        return;
    size_t       THN = (size_t)T * c->H * c->N, HT = (size_t)c->H * T;
    cudaStream_t s = cu_stream(ex);
    if (THN) {
        k_m3_means<<<cu_blocks(THN, 256), 256, 0, s>>>(work, work + THN, q, k, T, *c);
        CU_LAUNCHED("k_m3_means");
    }
    k_m3_mat_rows<<<cu_blocks(HT, 64), 64, 0, s>>>(M, work, work + THN, dA, dlt, lam, D, T, *c);
    CU_LAUNCHED("k_m3_mat_rows");
}
