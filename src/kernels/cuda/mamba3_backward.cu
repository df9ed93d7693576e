/*
 * mamba3_backward.cu — CUDA backward passes of the Mamba-3 ops
 * (kernels/mamba3.h; the chain rule is spelled out in cpu/mamba3_backward.c,
 * which these kernels follow line for line; forwards in mamba3.cu).
 *
 * Kept simple (correct first): one thread per chain or output element, one
 * block per row (prep) or per (row, head) (mix) where outputs share
 * reductions, with __syncthreads between the stages. Every output has one
 * writer and the CPU's order of sums, except the materialized backward's ∂k̄,
 * which sums over t ascending as the CPU but grows each segment sum of dA
 * from its far end (the CPU grows it from the diagonal): the same terms,
 * rounded in another order. Deterministic; no atomics.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mamba3.cuh"

// ----------------------------------------------------------------------------
// angles: ψ (reverse cumulative sums) per (sequence, head, angle), then the rows

__global__ void k_m3_angb_chains(float *dphi, int nseq, int T, int HS) {
    GL_GRID_STRIDE(e, (size_t)nseq * HS) {
        int   i = (int)(e / HS), hs = (int)(e % HS);
        float psi = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            float *d = dphi + ((size_t)i * T + t) * HS + hs;
            psi += *d;
            *d = psi;
        }
    }
}

// one thread per (row, angle s) (∂ angles, =) or (row, head h) (∂ dd_dt, +=)
__global__ void k_m3_angb_rows(float *dzx, const float *dphi, const float *zx, int ldz,
                               const float *dt_bias, int n, m3_rows_cfg c) {
    int H = c.H, S = c.S;
    GL_GRID_STRIDE(e, (size_t)n * (S + H)) {
        int          row = (int)(e / (S + H)), j = (int)(e % (S + H));
        const float *z = zx + (size_t)row * ldz, *psi = dphi + (size_t)row * H * S;
        float       *dz = dzx + (size_t)row * ldz;
        if (j < S) {
            int   s = j;
            float th = tanhf(z[mc_ang(c) + s]), acc = 0.0f;
            for (int h = 0; h < H; h++)
                acc += psi[h * S + s] * mc_delta(z, dt_bias, h, c);
            dz[mc_ang(c) + s] = acc * M3C_PI * (1.0f - th * th);
        } else {
            int   h = j - S;
            float acc = 0.0f;
            for (int s = 0; s < S; s++)
                acc += psi[h * S + s] * mc_theta(z[mc_ang(c) + s]);
            float v = z[mc_dt(c) + h] + (dt_bias ? dt_bias[h] : 0.0f);
            dz[mc_dt(c) + h] += acc * mc_dsoftplus(v);
        }
    }
}

extern "C" void cuda_m3_angles_backward(const molt_exec *ex, float *dzx, float *dphi,
                                        const float *zx, int ldz, const float *dt_bias, int n,
                                        int T, const m3_rows_cfg *c) {
    if (n <= 0 || c->S <= 0 || c->H <= 0 || T <= 0)
        return;
    cudaStream_t s = cu_stream(ex);
    int          HS = c->H * c->S;
    size_t       m = (size_t)(n / T) * HS;
    k_m3_angb_chains<<<cu_blocks(m, 64), 64, 0, s>>>(dphi, n / T, T, HS);
    CU_LAUNCHED("k_m3_angb_chains");
    m = (size_t)n * (c->S + c->H);
    k_m3_angb_rows<<<cu_blocks(m, 128), 128, 0, s>>>(dzx, dphi, zx, ldz, dt_bias, n, *c);
    CU_LAUNCHED("k_m3_angb_rows");
}

// ----------------------------------------------------------------------------
// prep backward: one block per row, stages
//   1. ∂φ per (h, s) (B then C, ranks in order), the dd_dt, dd_A, trap columns per h
//   2. per (B|C, r, g, i): acc = Σ_{h of g} Rot(−φ_h)∂_h [i] (heads in order), ∂bias
//   3. per (B|C, r, g): f = (Σ_i acc·w·b, double)·rs³/N
//   4. per (B|C, r, g, i): ∂raw;  per (B|C, i): ∂norm weight (r, g in order)
// scratch acc [n, 2, R, G, N] and f [n, 2, R, G]

// the i-th element of g [N] turned by −φ (mc_rotate(·, −1) elementwise)
__device__ __forceinline__ float mc_unrot(const float *g, const float *phi, int i,
                                          const m3_rows_cfg &c) {
    int s;
    if (c.mimo)
        s = i < c.N / 2 ? i : i - c.N / 2;
    else
        s = i / 2;
    if (s >= c.S)
        return g[i];
    int ia, ib;
    mc_pair(c, s, &ia, &ib);
    float cs = cosf(phi[s]), sn = -sinf(phi[s]), a = g[ia], b = g[ib];
    return i == ia ? a * cs - b * sn : a * sn + b * cs;
}

__global__ void k_m3_prep_bwd(float *dzx, float *dphi, float *dBn, float *dCn, float *dBb,
                              float *dCb, const float *dq, const float *dk, const float *ddA,
                              const float *dgam, const float *dbet, const float *q,
                              const float *k, const float *rstd, const float *zx, int ldz,
                              const float *phi, m3_rows_w w, m3_rows_cfg c, float *accb,
                              float *fb) {
    int          row = blockIdx.x, H = c.H, N = c.N, G = c.G, R = c.R, S = c.S, hpg = H / G;
    const float *z = zx + (size_t)row * ldz;
    float       *dz = dzx + (size_t)row * ldz;
    float       *acc0 = accb + (size_t)row * 2 * R * G * N, *f0 = fb + (size_t)row * 2 * R * G;
    // 1.
    for (int e = threadIdx.x; e < H * S; e += blockDim.x) {
        int   h = e / S, s = e % S, ia, ib;
        float d = 0.0f;
        mc_pair(c, s, &ia, &ib);
        for (int bc = 0; bc < 2; bc++)
            for (int r = 0; r < R; r++) {
                size_t       o = (((size_t)row * R + r) * H + h) * N;
                const float *du = (bc ? dq : dk) + o, *vr = (bc ? q : k) + o;
                d += du[ib] * vr[ia] - du[ia] * vr[ib];
            }
        dphi[(size_t)row * H * S + e] = d;
    }
    for (int h = threadIdx.x; h < H; h += blockDim.x) {
        size_t o = (size_t)row * H + h;
        float  d = mc_delta(z, w.dt_bias, h, c), a = z[mc_A(c) + h];
        float  lam = mc_sigmoid(z[mc_trap(c) + h]);
        float  dd = ddA[o] * mc_A_of(a, c.A_floor) + dgam[o] * lam + dbet[o] * (1.0f - lam);
        float  v = z[mc_dt(c) + h] + (w.dt_bias ? w.dt_bias[h] : 0.0f);
        dz[mc_dt(c) + h] = dd * mc_dsoftplus(v);
        dz[mc_A(c) + h] = ddA[o] * d * mc_dA_da(a, c.A_floor);
        dz[mc_trap(c) + h] = (dgam[o] - dbet[o]) * d * lam * (1.0f - lam);
    }
    // 2.
    int RGN = R * G * N;
    for (int e = threadIdx.x; e < 2 * RGN; e += blockDim.x) {
        int          bc = e / RGN, r = e / (G * N) % R, g = e / N % G, i = e % N;
        const float *gv = bc ? dq : dk;
        float       *dbias = bc ? dCb : dBb, a = 0.0f;
        for (int h = g * hpg; h < (g + 1) * hpg; h++) {
            float du = mc_unrot(gv + (((size_t)row * R + r) * H + h) * N,
                                phi + ((size_t)row * H + h) * S, i, c);
            if (dbias)
                dbias[(((size_t)row * H + h) * R + r) * N + i] = du;
            a += du;
        }
        acc0[e] = a;
    }
    __syncthreads();
    // 3.
    for (int e = threadIdx.x; e < 2 * R * G; e += blockDim.x) {
        int          bc = e / (R * G), r = e / G % R, g = e % G;
        const float *b = z + (bc ? mc_C(c) : mc_B(c)) + ((size_t)r * G + g) * N;
        const float *nw = bc ? w.C_norm : w.B_norm, *a = acc0 + (size_t)e * N;
        float        rs = rstd[(((size_t)row * 2 + bc) * R + r) * G + g];
        double       dot = 0.0;
        for (int i = 0; i < N; i++)
            dot += (double)a[i] * (double)(nw ? nw[i] : 1.0f) * (double)b[i];
        f0[e] = (float)dot * rs * rs * rs / (float)N;
    }
    __syncthreads();
    // 4.
    for (int e = threadIdx.x; e < 2 * RGN; e += blockDim.x) {
        int          bc = e / RGN, r = e / (G * N) % R, g = e / N % G, i = e % N;
        int          rg = bc * R * G + r * G + g;
        const float *b = z + (bc ? mc_C(c) : mc_B(c)) + ((size_t)r * G + g) * N;
        const float *nw = bc ? w.C_norm : w.B_norm;
        float        rs = rstd[(((size_t)row * 2 + bc) * R + r) * G + g];
        dz[(bc ? mc_C(c) : mc_B(c)) + ((size_t)r * G + g) * N + i] =
            rs * acc0[e] * (nw ? nw[i] : 1.0f) - b[i] * f0[rg];
    }
    for (int e = threadIdx.x; e < 2 * N; e += blockDim.x) {
        int    bc = e / N, i = e % N;
        float *dnw = bc ? dCn : dBn, dn = 0.0f;
        if (!dnw)
            continue;
        for (int r = 0; r < R; r++)
            for (int g = 0; g < G; g++) {
                const float *b = z + (bc ? mc_C(c) : mc_B(c)) + ((size_t)r * G + g) * N;
                float        rs = rstd[(((size_t)row * 2 + bc) * R + r) * G + g];
                float        t = acc0[((size_t)bc * R * G + r * G + g) * N + i] * b[i] * rs;
                dn = r == 0 && g == 0 ? t : dn + t;
            }
        dnw[(size_t)row * N + i] = dn;
    }
}

extern "C" void cuda_m3_prep_backward(const molt_exec *ex, float *dzx, float *dphi, float *dBn,
                                      float *dCn, float *dBb, float *dCb, const float *dq,
                                      const float *dk, const float *ddA, const float *dgam,
                                      const float *dbet, const float *q, const float *k,
                                      const float *rstd, const float *zx, int ldz,
                                      const float *phi, const m3_rows_w *w, int n,
                                      const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    size_t na = (size_t)n * 2 * c->R * c->G * c->N, nf = (size_t)n * 2 * c->R * c->G;
    float *accb = (float *)cu_scratch(ex, sizeof(float) * (na + nf + 1));
    if (!accb)
        return;
    k_m3_prep_bwd<<<(unsigned)n, 128, 0, cu_stream(ex)>>>(dzx, dphi, dBn, dCn, dBb, dCb, dq, dk,
                                                          ddA, dgam, dbet, q, k, rstd, zx, ldz,
                                                          phi, *w, *c, accb, accb + na);
    CU_LAUNCHED("k_m3_prep_bwd");
    cu_scratch_free(ex, accb);
}

// ----------------------------------------------------------------------------
// mix + corr backward: one block per (row, head)
//   1. cqk[r,r2] = q_r·k_r2, e[r,r2] = Σ_p ∂y_r·v_r2       (shared)
//   2. per p: ∂v per rank (x columns, mimo_x partials); thread 0: the scalars
//      (∂S, ∂D partial, ∂γ, ∂b in the CPU's order)
//   3. per (r, i): ∂q_r += Σ_r2 dc·k_r2 (r2 in order); per (r2, i): ∂k_r2 += Σ_r dc·q_r

__global__ void k_m3_mix_bwd(float *dzx, float *dq, float *dk, float *ddA, float *dgam,
                             float *dbet, float *dmx, float *hsD, const float *dX,
                             const float *ddAx, const float *dyp, const float *q, const float *k,
                             const float *zx, int ldz, const float *dlt, const float *lam,
                             m3_rows_w w, int T, m3_rows_cfg c) {
    __shared__ float cqk[M3C_RMAX * M3C_RMAX], ee[M3C_RMAX * M3C_RMAX];
    int              H = c.H, P = c.P, N = c.N, R = c.R;
    int              row = blockIdx.x / H, h = blockIdx.x % H, last = row % T == T - 1;
    const float     *x = zx + (size_t)row * ldz + mc_x(c);
    float           *dx = dzx + (size_t)row * ldz + mc_x(c) + (size_t)h * P;
    float            gam = mc_gamma(lam, dlt, row, h, H);
    float            bn = last ? 0.0f : mc_b(lam, dlt, row + 1, h, H), sc = gam + bn;
    float            D = w.D ? w.D[h] : 0.0f;
#define ROW(r) ((((size_t)row * R + (r)) * H + h))
    for (int e = threadIdx.x; e < R * R; e += blockDim.x) {
        int r = e / R, r2 = e % R;
        cqk[e] = cu_dotf(q + ROW(r) * N, k + ROW(r2) * N, N);
        const float *mx = mc_mx(w.mimo_x, h, r2, R, P);
        float        s = 0.0f;
        for (int p = 0; p < P; p++)
            s += dyp[ROW(r) * P + p] * mc_v(x, mx, h, p, P);
        ee[e] = s;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        float dxp = 0.0f;
        for (int r2 = 0; r2 < R; r2++) {
            const float *mx = mc_mx(w.mimo_x, h, r2, R, P);
            float        dv = dX[ROW(r2) * P + p] * sc + D * dyp[ROW(r2) * P + p];
            for (int r = 0; r < R; r++)
                dv += dyp[ROW(r) * P + p] * cqk[r * R + r2] * (r2 > r ? gam : -bn);
            if (mx) {
                dmx[(((size_t)row * H + h) * R + r2) * P + p] = dv * x[(size_t)h * P + p];
                dxp = r2 == 0 ? dv * mx[p] : dxp + dv * mx[p];
            } else {
                dxp = dv;
            }
        }
        dx[p] = dxp;
    }
    if (threadIdx.x == 0) {
        float dS = 0.0f, dgc = 0.0f, dbc = 0.0f, hd = 0.0f;
        for (int r2 = 0; r2 < R; r2++) {
            const float *mx = mc_mx(w.mimo_x, h, r2, R, P);
            for (int p = 0; p < P; p++) {
                float v = mc_v(x, mx, h, p, P);
                dS += dX[ROW(r2) * P + p] * v;
                hd += dyp[ROW(r2) * P + p] * v;
            }
        }
        for (int r = 0; r < R; r++)
            for (int r2 = 0; r2 < R; r2++) {
                float ce = cqk[r * R + r2] * ee[r * R + r2];
                if (r2 > r)
                    dgc += ce;
                else
                    dbc -= ce;
            }
        size_t o = (size_t)row * H + h;
        ddA[o] = ddAx[(size_t)row * R * H + h];
        dgam[o] = dS + dgc;
        if (!last)
            dbet[o + H] = dS + dbc;
        if (row % T == 0)
            dbet[o] = 0.0f;
        if (hsD)
            hsD[o] = hd;
    }
    for (int e = threadIdx.x; e < R * N; e += blockDim.x) {
        int    r = e / N, i = e % N;
        float *dqr = dq + ROW(r) * N + i, a = *dqr;
        for (int r2 = 0; r2 < R; r2++)
            a += (r2 > r ? gam : -bn) * ee[r * R + r2] * k[ROW(r2) * N + i];
        *dqr = a;
        float *dkr = dk + ROW(r) * N + i, b = *dkr; // r as r2: Σ over the q ranks
        for (int r1 = 0; r1 < R; r1++)
            b += (r > r1 ? gam : -bn) * ee[r1 * R + r] * q[ROW(r1) * N + i];
        *dkr = b;
    }
#undef ROW
}

extern "C" void cuda_m3_mix_backward(const molt_exec *ex, float *dzx, float *dq, float *dk,
                                     float *ddA, float *dgam, float *dbet, float *dmx,
                                     float *hsD, const float *dX, const float *ddAx,
                                     const float *dypre, const float *q, const float *k,
                                     const float *zx, int ldz, const float *dlt, const float *lam,
                                     const m3_rows_w *w, int n, int T, const m3_rows_cfg *c) {
    if (n <= 0 || c->H <= 0)
        return;
    if (c->R > M3C_RMAX) {
        CU_FAIL("m3_mix_backward: MIMO rank above 16");
        return;
    }
    k_m3_mix_bwd<<<(unsigned)((size_t)n * c->H), 64, 0, cu_stream(ex)>>>(
        dzx, dq, dk, ddA, dgam, dbet, dmx, hsD, dX, ddAx, dypre, q, k, zx, ldz, dlt, lam, *w, T,
        *c);
    CU_LAUNCHED("k_m3_mix_bwd");
}

// ----------------------------------------------------------------------------
// gate backward: one thread per (row, h, p), ranks in order; the out norm's
// Σ_p ∂yn·w·y recomputed per thread in the CPU's order

__global__ void k_m3_gate_bwd(float *dyp, float *dzx, float *dmz, float *dmo, float *dnw,
                              const float *dg, const float *ypre, const float *zx, int ldz,
                              const float *rstd, m3_rows_w w, int n, m3_rows_cfg c) {
    int H = c.H, P = c.P, R = c.R, Di = H * P;
    GL_GRID_STRIDE(e, (size_t)n * Di) {
        int          row = (int)(e / Di), hp = (int)(e % Di), h = hp / P, p = hp % P;
        const float *z = zx + (size_t)row * ldz, *dgr0 = dg + (size_t)row * Di;
        float       *dz = dzx + (size_t)row * ldz;
        float        dzacc = 0.0f, dnacc = 0.0f;
        for (int r = 0; r < R; r++) {
            size_t       o = ((size_t)row * R + r) * H + h, wo = ((size_t)h * R + r) * P;
            const float *y = ypre + o * P;
            float        rs = c.norm ? rstd[o] : 1.0f, dot = 0.0f;
            if (c.norm)
                for (int p2 = 0; p2 < P; p2++) {
                    float zz = z[h * P + p2] * (w.mimo_z ? w.mimo_z[wo + p2] : 1.0f);
                    float dgr = dgr0[h * P + p2] * (w.mimo_o ? w.mimo_o[wo + p2] : 1.0f);
                    dot += dgr * mc_silu(zz) * w.norm[h * P + p2] * y[p2];
                }
            float f = dot * rs * rs * rs / (float)P;
            float zz = z[hp] * (w.mimo_z ? w.mimo_z[wo + p] : 1.0f);
            float dgr = dgr0[hp] * (w.mimo_o ? w.mimo_o[wo + p] : 1.0f);
            float sz = mc_silu(zz);
            float yn = c.norm ? y[p] * rs * w.norm[hp] : y[p];
            if (dmo)
                dmo[((size_t)row * H + h) * R * P + (size_t)r * P + p] = dgr0[hp] * yn * sz;
            if (c.norm) {
                float dyn = dgr * sz;
                float t = dyn * y[p] * rs;
                dnacc = r == 0 ? t : dnacc + t;
                dyp[o * P + p] = rs * dyn * w.norm[hp] - y[p] * f;
            } else {
                dyp[o * P + p] = dgr * sz;
            }
            float dzz = dgr * yn * mc_dsilu(zz);
            if (w.mimo_z) {
                if (dmz)
                    dmz[((size_t)row * H + h) * R * P + (size_t)r * P + p] = dzz * z[hp];
                float t = dzz * w.mimo_z[wo + p];
                dzacc = r == 0 ? t : dzacc + t;
            } else {
                dzacc = dzz;
            }
        }
        dz[hp] = dzacc;
        if (c.norm && dnw)
            dnw[(size_t)row * Di + hp] = dnacc;
    }
}

extern "C" void cuda_m3_gate_backward(const molt_exec *ex, float *dypre, float *dzx, float *dmz,
                                      float *dmo, float *dnw, const float *dg, const float *ypre,
                                      const float *zx, int ldz, const float *rstd,
                                      const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    size_t m = (size_t)(n > 0 ? n : 0) * c->H * c->P;
    if (!m)
        return;
    k_m3_gate_bwd<<<cu_blocks(m, 128), 128, 0, cu_stream(ex)>>>(dypre, dzx, dmz, dmo, dnw, dg,
                                                                ypre, zx, ldz, rstd, *w, n, *c);
    CU_LAUNCHED("k_m3_gate_bwd");
}

// ----------------------------------------------------------------------------
// materialized matrix backward. Work (the CPU's layout): q̄, k̄, ∂q̄, ∂k̄ [T,H,N],
// row [H,T], ∂S [H,T] (∂q̄, ∂k̄ unused: the expansion to ranks is fused).
//   scalars: one thread per head (∂dA, ∂γ, ∂b, ∂D: the CPU's loop minus q̄/k̄ grads)
//   ∂q: one thread per (t, h, i), s descending; ∂k: one thread per (s, h, i), t ascending

__device__ __forceinline__ float mc_wgt(const float *lam, const float *dlt, int t, int s, int h,
                                        int H) {
    return s == t ? mc_gamma(lam, dlt, t, h, H)
                  : mc_gamma(lam, dlt, s, h, H) + mc_b(lam, dlt, s + 1, h, H);
}

__global__ void k_m3_matb_heads(float *ddA, float *dgam, float *dbet, float *dD, float *wrow,
                                float *dS0, const float *dM, const float *qb, const float *kb,
                                const float *dA, const float *dlt, const float *lam, int T,
                                m3_rows_cfg c) {
    int H = c.H, N = c.N;
    GL_GRID_STRIDE(hh, (size_t)H) {
        int    h = (int)hh;
        float *w = wrow + (size_t)h * T, *dS = dS0 + (size_t)h * T, dDh = 0.0f;
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * H + h;
            ddA[o] = dgam[o] = 0.0f;
            dS[t] = 0.0f;
        }
        for (int t = 0; t < T; t++) {
            const float *dMt = dM + ((size_t)h * T + t) * T;
            const float *qt = qb + ((size_t)t * H + h) * N;
            float        seg = 0.0f;
            dDh += dMt[t];
            for (int s = t; s >= 0; s--) {
                if (seg < SSM_FLUSH) {
                    w[s] = 0.0f;
                    seg += dA[(size_t)s * H + h];
                    continue;
                }
                float m = dMt[s], L = expf(seg), cc = cu_dotf(qt, kb + ((size_t)s * H + h) * N, N);
                float gl = m * L * mc_wgt(lam, dlt, t, s, h, H);
                if (s == t)
                    dgam[(size_t)t * H + h] += m * cc;
                else
                    dS[s] += m * cc * L;
                w[s] = gl * cc;
                seg += dA[(size_t)s * H + h];
            }
            float acc = 0.0f;
            for (int kk = 1; kk <= t; kk++) {
                acc += w[kk - 1];
                ddA[(size_t)kk * H + h] += acc;
            }
        }
        for (int t = 0; t < T; t++) { // S_s = γ_s + b_{s+1}
            dgam[(size_t)t * H + h] += dS[t];
            if (t + 1 < T)
                dbet[(size_t)(t + 1) * H + h] = dS[t];
        }
        dbet[h] = 0.0f;
        if (dD)
            dD[h] += dDh / (float)c.R;
    }
}

__global__ void k_m3_matb_dq(float *dq, const float *dM, const float *kb, const float *dA,
                             const float *dlt, const float *lam, int T, m3_rows_cfg c) {
    int H = c.H, N = c.N, R = c.R;
    GL_GRID_STRIDE(e, (size_t)T * H * N) {
        int          i = (int)(e % N), h = (int)(e / N % H), t = (int)(e / N / H);
        const float *dMt = dM + ((size_t)h * T + t) * T;
        float        seg = 0.0f, acc = 0.0f;
        for (int s = t; s >= 0; s--) {
            if (!(seg < SSM_FLUSH))
                acc += dMt[s] * expf(seg) * mc_wgt(lam, dlt, t, s, h, H) *
                       kb[((size_t)s * H + h) * N + i];
            seg += dA[(size_t)s * H + h];
        }
        for (int r = 0; r < R; r++)
            dq[(((size_t)t * R + r) * H + h) * N + i] = acc / (float)R;
    }
}

__global__ void k_m3_matb_dk(float *dk, const float *dM, const float *qb, const float *dA,
                             const float *dlt, const float *lam, int T, m3_rows_cfg c) {
    int H = c.H, N = c.N, R = c.R;
    GL_GRID_STRIDE(e, (size_t)T * H * N) {
        int   i = (int)(e % N), h = (int)(e / N % H), s = (int)(e / N / H);
        float seg = 0.0f, acc = 0.0f; // seg = Σ_{j=s+1..t} dA_j
        for (int t = s; t < T; t++) {
            if (t > s)
                seg += dA[(size_t)t * H + h];
            if (seg < SSM_FLUSH)
                continue;
            float m = dM[((size_t)h * T + t) * T + s];
            acc += m * expf(seg) * mc_wgt(lam, dlt, t, s, h, H) * qb[((size_t)t * H + h) * N + i];
        }
        for (int r = 0; r < R; r++)
            dk[(((size_t)s * R + r) * H + h) * N + i] = acc / (float)R;
    }
}

extern "C" void cuda_m3_materialize_backward(const molt_exec *ex, float *dq, float *dk,
                                             float *ddA, float *dgam, float *dbet, float *dD,
                                             const float *dM, const float *q, const float *k,
                                             const float *dA, const float *dlt,
                                             const float *lam, const float *D, int T,
                                             const m3_rows_cfg *c, float *work) {
    if (T <= 0 || c->H <= 0)
        return;
    size_t       THN = (size_t)T * c->H * c->N, HT = (size_t)c->H * T;
    cudaStream_t s = cu_stream(ex);
    float       *qb = work, *kb = work + THN, *wrow = work + 4 * THN, *dS = wrow + HT;
    if (THN) {
        k_m3_means<<<cu_blocks(THN, 256), 256, 0, s>>>(qb, kb, q, k, T, *c);
        CU_LAUNCHED("k_m3_means");
    }
    k_m3_matb_heads<<<cu_blocks((size_t)c->H, 32), 32, 0, s>>>(
        ddA, dgam, dbet, D ? dD : NULL, wrow, dS, dM, qb, kb, dA, dlt, lam, T, *c);
    CU_LAUNCHED("k_m3_matb_heads");
    if (THN) {
        k_m3_matb_dq<<<cu_blocks(THN, 128), 128, 0, s>>>(dq, dM, kb, dA, dlt, lam, T, *c);
        CU_LAUNCHED("k_m3_matb_dq");
        k_m3_matb_dk<<<cu_blocks(THN, 128), 128, 0, s>>>(dk, dM, qb, dA, dlt, lam, T, *c);
        CU_LAUNCHED("k_m3_matb_dk");
    }
}
