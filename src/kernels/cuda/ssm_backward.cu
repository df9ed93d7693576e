/*
 * ssm_backward.cu — CUDA backward of the chunked SSD scan and of the
 * materialized mixing matrix (the conv1d backward is in ssm.cu). Contracts in
 * ssm.h; equations and phases as cpu/ssm_backward.c, whose `work` layout this
 * follows: the scan backward reads the states entering each chunk (st) and
 * the chunk decays (din, dout) that ssd_scan_chunked left there, and uses the
 * rest of work as the CPU does (E, vb, da, r1, r2, per-head dBh / dCh).
 *
 * Kept simple (correct first): per (head, chunk) the decay matrix L, C·Bᵀ and
 * dy·Xᵀ are stored (stream-ordered scratch, 3·H·nc·Q² floats, and H·nc·P·Q
 * for the per-(p, i) dot products that two row sums share out) and every
 * gradient element is one thread's sum in a fixed order; B/C gradients are
 * formed per head and summed over a group's heads in ascending order. No
 * atomics: results are deterministic.
 */
#include "kernels/cuda/ssm_chunk.cuh"

// dst[t,g,:] = Σ_{h in g} src[t,h,:]  (heads ascending)
__global__ void k_group_sum(float *dst, const float *src, int T, int H, int N, int G) {
    int    hpg = H / G;
    size_t n = (size_t)T * G * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / ((size_t)G * N);
        int    g = (int)(i / N % G), k = (int)(i % N);
        const float *s = src + ((size_t)t * H + (size_t)g * hpg) * N + k;
        float        acc = s[0];
        for (int e = 1; e < hpg; e++)
            acc += s[(size_t)e * N];
        dst[i] = acc;
    }
}

void cu_ssd_group_sum(const molt_exec *ex, float *dB, float *dC, const float *dBh,
                      const float *dCh, int T, int H, int N, int G) {
    size_t n = (size_t)T * G * N;
    if (!n)
        return;
    k_group_sum<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dB, dBh, T, H, N, G);
    CU_LAUNCHED("k_group_sum");
    k_group_sum<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dC, dCh, T, H, N, G);
    CU_LAUNCHED("k_group_sum");
}

// ----------------------------------------------------------------------------
// chunked scan backward

struct sbw {
    float       *dX, *ddA, *dBh, *dCh, *E, *vb, *da, *r1, *r2;
    float       *Lm, *CB, *Gm; // scratch [H, nc, Q, Q]: rows i, columns j ≤ i
    float       *Xm;           // scratch [H, nc, P, Q]: per-(p, i) dot products, [p·Lc + i]
    const float *st, *din, *dout, *dy, *X, *dA, *B, *C;
    int          T, H, P, N, G, Q, nc;
};

#define SB_SETUP                                                                                   \
    int    c = blockIdx.x, h = blockIdx.y, H = a.H, P = a.P, N = a.N, G = a.G, g = h / (H / G);    \
    int    t0 = c * a.Q, Lc = min(a.Q, a.T - t0);                                                  \
    (void)g
#define MO (((size_t)h * a.nc + c) * (size_t)a.Q * a.Q) // this (head, chunk)'s matrices
#define MX (((size_t)h * a.nc + c) * (size_t)a.P * a.Q) // and its Xm block
// Rows of X, dy, B, C of this (head, chunk): in global memory, or (stage) copied
// to shared memory first, rows padded by one float so that a warp reading one
// column of them hits 32 different banks (sbw_smem bytes)
#define SB_STAGE(stage)                                                                            \
    extern __shared__ float sm[];                                                                  \
    const float *xb = a.X + ((size_t)t0 * H + h) * P, *yb = a.dy + ((size_t)t0 * H + h) * P;      \
    const float *bb = a.B + ((size_t)t0 * G + g) * N, *cbb = a.C + ((size_t)t0 * G + g) * N;      \
    size_t       xs = (size_t)H * P, bs = (size_t)G * N;                                           \
    if (stage) {                                                                                   \
        float *Xs = sm, *Ys = Xs + (size_t)Lc * (P + 1), *Bs = Ys + (size_t)Lc * (P + 1);          \
        float *Cs = Bs + (size_t)Lc * (N + 1);                                                     \
        for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {                                   \
            int i = e / P, p = e % P;                                                              \
            Xs[i * (P + 1) + p] = xb[i * xs + p];                                                  \
            Ys[i * (P + 1) + p] = yb[i * xs + p];                                                  \
        }                                                                                          \
        for (int e = threadIdx.x; e < Lc * N; e += blockDim.x) {                                   \
            int i = e / N, n = e % N;                                                              \
            Bs[i * (N + 1) + n] = bb[i * bs + n];                                                  \
            Cs[i * (N + 1) + n] = cbb[i * bs + n];                                                 \
        }                                                                                          \
        __syncthreads();                                                                           \
        xb = Xs, yb = Ys, bb = Bs, cbb = Cs, xs = P + 1, bs = N + 1;                               \
    }
#define XR(i) (xb + (size_t)(i) * xs)
#define DYR(i) (yb + (size_t)(i) * xs)
#define BR(i) (bb + (size_t)(i) * bs)
#define CR(i) (cbb + (size_t)(i) * bs)

static size_t sbw_smem(int Q, int P, int N) {
    return sizeof(float) * (size_t)Q * (2 * (size_t)(P + 1) + 2 * (size_t)(N + 1));
}
#define DAV(i) a.dA[(size_t)(t0 + (i)) * H + h]

// A1: L[i,j] (decay, flushed), CB[i,j] = C_i·B_j, Gm[i,j] = dy_i·X_j
__global__ void k_sbw_mats(sbw a, int stage) {
    SB_SETUP;
    SB_STAGE(stage);
    float *L = a.Lm + MO, *CB = a.CB + MO, *Gm = a.Gm + MO;
    for (int i = threadIdx.x; i < Lc; i += blockDim.x) {
        float seg = 0.0f;
        for (int j = i; j >= 0; j--) {
            L[(size_t)i * Lc + j] = cu_decay(seg);
            seg += DAV(j);
        }
    }
    for (int e = threadIdx.x; e < Lc * (Lc + 1) / 2; e += blockDim.x) { // the lower triangle
        int i, j;
        cu_tri(e, &i, &j);
        CB[(size_t)i * Lc + j] = cu_dotf(CR(i), BR(j), N);
        Gm[(size_t)i * Lc + j] = cu_dotf(DYR(i), XR(j), P);
    }
}

// A2: the intra-chunk part and the entering state's output side (written, =)
__global__ void k_sbw_intra(sbw a, int stage) {
    SB_SETUP;
    SB_STAGE(stage);
    size_t       PN = (size_t)P * N;
    const float *L = a.Lm + MO, *CB = a.CB + MO, *Gm = a.Gm + MO;
    const float *din = a.din + (size_t)h * a.T + t0;
    const float *S = a.st + ((size_t)c * H + h) * PN;
    float       *r = a.r2 + (size_t)h * a.T + t0;
    // dX_j[p] = Σ_{i≥j} CB[i,j]·L[i,j]·dy_i[p]
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {
        int   j = e / P, p = e % P;
        float s = 0.0f;
        for (int i = j; i < Lc; i++)
            s += CB[(size_t)i * Lc + j] * L[(size_t)i * Lc + j] * DYR(i)[p];
        a.dX[((size_t)(t0 + j) * H + h) * P + p] = s;
    }
    // dC_i[n] = Σ_{j≤i} Gm·L·B_j[n]  (+ din[i]·Σ_p dy_i[p]·S[p,n]);
    // dB_j[n] = Σ_{i≥j} Gm·L·C_i[n]
    for (int e = threadIdx.x; e < Lc * N; e += blockDim.x) {
        int   i = e / N, n = e % N;
        float sc = 0.0f, sb = 0.0f;
        for (int j = 0; j <= i; j++)
            sc += Gm[(size_t)i * Lc + j] * L[(size_t)i * Lc + j] * BR(j)[n];
        if (c > 0) {
            float q = 0.0f;
            for (int p = 0; p < P; p++)
                q += DYR(i)[p] * S[(size_t)p * N + n];
            sc += din[i] * q;
        }
        for (int k = i; k < Lc; k++) // here i plays j: dB of row i
            sb += Gm[(size_t)k * Lc + i] * L[(size_t)k * Lc + i] * CR(k)[n];
        a.dCh[((size_t)(t0 + i) * H + h) * N + n] = sc;
        a.dBh[((size_t)(t0 + i) * H + h) * N + n] = sb;
    }
    if (c > 0) {
        // r_i = din[i]·Σ_p dy_i[p]·(S_p·C_i): the Lc·P dots by all threads first (Xm),
        // then each row's sum over p in order (the same terms in the same order as one
        // thread per row forming each dot itself, which left most of the block idle)
        float *SC = a.Xm + MX;
        for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) { // a warp: one S_p, rows i
            int p = e / Lc, i = e % Lc;
            SC[(size_t)p * Lc + i] = cu_dotf(S + (size_t)p * N, CR(i), N);
        }
        __syncthreads(); // c is the block's: every thread takes this branch
        for (int i = threadIdx.x; i < Lc; i += blockDim.x) {
            const float *dyi = DYR(i);
            float        ri = 0.0f;
            for (int p = 0; p < P; p++)
                ri += dyi[p] * SC[(size_t)p * Lc + i];
            r[i] = din[i] * ri;
        }
        // dS_loc[p,n] = Σ_i din[i]·dy_i[p]·C_i[n]   (into E[c]; phase B turns it into E[c])
        float *dS = a.E + ((size_t)c * H + h) * PN;
        for (size_t e = threadIdx.x; e < PN; e += blockDim.x) {
            int   p = (int)(e / N), n = (int)(e % N);
            float s = 0.0f;
            for (int i = 0; i < Lc; i++)
                s += din[i] * DYR(i)[p] * CR(i)[n];
            dS[e] = s;
        }
    }
    __syncthreads();
    // ddA_k = Σ_{i≥k} Σ_{j<k} w[i,j]  (+ Σ_{i≥k} r_i),  w = Gm·CB·L: first each row's
    // prefix Σ_{j<k} w[i,j] in place of Gm (every use of Gm above is done), then
    // column sums over i; the CPU's order of sums (rows ascending, then the r suffix)
    float *Wp = a.Gm + MO;
    for (int i = threadIdx.x; i < Lc; i += blockDim.x) {
        float *row = Wp + (size_t)i * Lc;
        float  acc = 0.0f, prev = 0.0f;
        for (int k = 0; k <= i; k++) {
            size_t o = (size_t)i * Lc + k;
            float  w = Gm[o] * CB[o] * L[o];
            acc += prev;
            row[k] = acc; // Σ_{j<k} w[i,j]
            prev = w;
        }
    }
    __syncthreads();
    for (int k = threadIdx.x; k < Lc; k += blockDim.x) {
        float s = 0.0f;
        for (int i = k; i < Lc; i++)
            s += Wp[(size_t)i * Lc + k];
        if (c > 0) {
            float acc = 0.0f;
            for (int i = Lc - 1; i >= k; i--)
                acc += r[i];
            s += acc;
        }
        a.ddA[(size_t)(t0 + k) * H + h] = s;
    }
}

// B: the reverse inter-chunk recurrence, one thread per state element of a head
// (grid: element blocks × heads): E[c] (adjoint of S_in[c+1]) over dS_loc[c]
__global__ void k_sbw_pass(sbw a) {
    int    h = blockIdx.y, H = a.H, nc = a.nc;
    size_t PN = (size_t)a.P * a.N, e = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (e >= PN)
        return;
    float v = 0.0f;
    for (int c = nc - 1; c >= 1; c--) {
        int    t_last = min((c + 1) * a.Q, a.T) - 1;
        float  dec = a.din[(size_t)h * a.T + t_last];
        float *E = a.E + ((size_t)c * H + h) * PN;
        float  loc = E[e];
        E[e] = v;
        v = dec * v + loc;
    }
    a.E[(size_t)h * PN + e] = v; // E[0]
}

// da_c = a_c·⟨E[c], S_in[c]⟩ (one block per (chunk, head); 0 for chunk 0)
__global__ void k_sbw_da(sbw a) {
    __shared__ double sh[32];
    int    c = blockIdx.x, h = blockIdx.y, H = a.H;
    size_t PN = (size_t)a.P * a.N;
    if (c == 0) {
        if (threadIdx.x == 0)
            a.da[(size_t)h * a.nc] = 0.0f;
        return;
    }
    const float *E = a.E + ((size_t)c * H + h) * PN, *S = a.st + ((size_t)c * H + h) * PN;
    double       dot = 0.0;
    for (size_t e = threadIdx.x; e < PN; e += blockDim.x)
        dot += (double)E[e] * (double)S[e];
    dot = cu_block_sum(dot, sh);
    if (threadIdx.x == 0) {
        int t_last = min((c + 1) * a.Q, a.T) - 1;
        a.da[(size_t)h * a.nc + c] = a.din[(size_t)h * a.T + t_last] * (float)dot;
    }
}

// C: chunk-state part from E = E[c] (c < nc-1): dX_i += dout[i]·E B_i,
// dB_i += dout[i]·Eᵀ X_i, ddA_i += Σ_{i'<i} dout[i']·X_i'·(E B_i') + da_c
__global__ void k_sbw_state(sbw a, int stage) {
    SB_SETUP;
    if (c == a.nc - 1)
        return;
    SB_STAGE(stage);
    size_t       PN = (size_t)P * N;
    const float *E = a.E + ((size_t)c * H + h) * PN;
    const float *dout = a.dout + (size_t)h * a.T + t0;
    float       *q = a.r1 + (size_t)h * a.T + t0;
    float *EB = a.Xm + MX; // E_p·B_i, kept for q below
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {
        int          i = e / P, p = e % P;
        float eb = cu_dotf(E + (size_t)p * N, BR(i), N);
        EB[(size_t)p * Lc + i] = eb;
        a.dX[((size_t)(t0 + i) * H + h) * P + p] += dout[i] * eb;
    }
    for (int e = threadIdx.x; e < Lc * N; e += blockDim.x) {
        int          i = e / N, n = e % N;
        const float *Xi = XR(i);
        float        s = 0.0f;
        for (int p = 0; p < P; p++)
            s += Xi[p] * E[(size_t)p * N + n];
        a.dBh[((size_t)(t0 + i) * H + h) * N + n] += dout[i] * s;
    }
    __syncthreads(); // EB complete
    for (int i = threadIdx.x; i < Lc; i += blockDim.x) { // the same terms, p in order
        const float *Xi = XR(i);
        float        s = 0.0f;
        for (int p = 0; p < P; p++)
            s += Xi[p] * EB[(size_t)p * Lc + i];
        q[i] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float da = a.da[(size_t)h * a.nc + c], acc = 0.0f;
        for (int i = 0; i < Lc; i++) {
            a.ddA[(size_t)(t0 + i) * H + h] += acc + da;
            acc += dout[i] * q[i];
        }
    }
}
#undef XR
#undef DYR
#undef BR
#undef CR
#undef DAV
#undef MO
#undef MX

void cu_ssd_adjoint_pass(const molt_exec *ex, float *E, float *da, const float *st,
                         const float *din, int T, int H, int P, int N, int Q, int nc) {
    sbw a = {};
    a.E = E, a.da = da, a.st = st, a.din = din;
    a.T = T, a.H = H, a.P = P, a.N = N, a.Q = Q, a.nc = nc;
    size_t PN = (size_t)P * N;
    dim3   grid((unsigned)nc, (unsigned)H), pgrid((unsigned)((PN + 255) / 256), (unsigned)H);
    k_sbw_pass<<<pgrid, 256, 0, cu_stream(ex)>>>(a);
    CU_LAUNCHED("k_sbw_pass");
    k_sbw_da<<<grid, 256, 0, cu_stream(ex)>>>(a);
    CU_LAUNCHED("k_sbw_da");
}

extern "C" void cuda_ssd_scan_chunked_backward(const molt_exec *ex, float *dX, float *ddA,
                                               float *dB, float *dC, const float *dy,
                                               const float *X, const float *dA, const float *B,
                                               const float *C, int T, int H, int P, int N, int G,
                                               int Q, float *work) {
    if (T <= 0 || H <= 0)
        return;
    if (cu_ssd_tc_backward(ex, dX, ddA, dB, dC, dy, X, dA, B, C, T, H, P, N, G, Q, work))
        return; // TF32 batched GEMMs (ssm_tc.cu)
    if (Q > T)
        Q = T;
    int    nc = (T + Q - 1) / Q;
    size_t PN = (size_t)P * N, HT = (size_t)H * T;
    sbw    a;
    a.st = work;
    a.din = work + ((size_t)nc + 1) * H * PN;
    a.dout = a.din + HT;
    a.E = work + ssd_chunked_work(T, H, P, N, G, Q);
    a.vb = a.E + (size_t)nc * H * PN;
    a.da = a.vb + (size_t)H * PN;
    a.r1 = a.da + (size_t)H * nc;
    a.r2 = a.r1 + HT;
    a.dBh = H == G ? dB : a.r2 + HT;
    a.dCh = H == G ? dC : a.dBh + (size_t)T * H * N;
    a.dX = dX, a.ddA = ddA, a.dy = dy, a.X = X, a.dA = dA, a.B = B, a.C = C;
    a.T = T, a.H = H, a.P = P, a.N = N, a.G = G, a.Q = Q, a.nc = nc;
    size_t mq = (size_t)H * nc * Q * Q;
    size_t mx = (size_t)H * nc * P * Q;
    a.Lm = (float *)cu_scratch(ex, sizeof(float) * (3 * mq + mx));
    if (!a.Lm)
        return;
    a.CB = a.Lm + mq, a.Gm = a.CB + mq, a.Xm = a.Gm + mq;
    dim3   grid((unsigned)nc, (unsigned)H);
    size_t sm = sbw_smem(Q, P, N);
    int    st1 = cu_smem_fits((const void *)k_sbw_mats, sm);
    int    st2 = cu_smem_fits((const void *)k_sbw_intra, sm);
    int    st3 = cu_smem_fits((const void *)k_sbw_state, sm);
    k_sbw_mats<<<grid, 512, st1 ? sm : 0, cu_stream(ex)>>>(a, st1);
    CU_LAUNCHED("k_sbw_mats");
    k_sbw_intra<<<grid, 512, st2 ? sm : 0, cu_stream(ex)>>>(a, st2);
    CU_LAUNCHED("k_sbw_intra");
    cu_ssd_adjoint_pass(ex, a.E, a.da, a.st, a.din, T, H, P, N, Q, nc);
    k_sbw_state<<<grid, 512, st3 ? sm : 0, cu_stream(ex)>>>(a, st3);
    CU_LAUNCHED("k_sbw_state");
    cu_scratch_free(ex, a.Lm);
    if (H != G)
        cu_ssd_group_sum(ex, dB, dC, a.dBh, a.dCh, T, H, N, G);
}

// ----------------------------------------------------------------------------
// materialize backward, one head at a time, with per-head T×T scratch:
//   GL[t,s] = dM·L·cs (∂/∂(C_t·B_s)),  WL[t,s] = dM·(C_t·B_s)·L (→ dcs),
//   PW[t,k] = Σ_{s<k} GL·(C_t·B_s)  (row prefix → ddA)

struct mbw {
    float       *ddA, *dBh, *dCh, *dcs, *GL, *WL, *PW;
    const float *dM, *dA, *B, *C, *cs;
    int          T, H, N, G, h;
};

// one block per row t: its decays (thread 0, grown from the diagonal), then
// GL, WL, the row prefix PW and dC_t (per head)
__global__ void k_mbw_rows(mbw a) {
    int          t = blockIdx.x, T = a.T, H = a.H, N = a.N, G = a.G, h = a.h, g = h / (H / G);
    float       *GL = a.GL + (size_t)t * T, *WL = a.WL + (size_t)t * T, *PW = a.PW + (size_t)t * T;
    const float *dMt = a.dM + ((size_t)h * T + t) * T, *Ct = a.C + ((size_t)t * G + g) * N;
    if (threadIdx.x == 0) {
        float seg = 0.0f;
        for (int s = t; s >= 0; s--) {
            GL[s] = cu_decay(seg);
            seg += a.dA[(size_t)s * H + h];
        }
    }
    __syncthreads();
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        float L = GL[s], gl = 0.0f, wl = 0.0f, w = 0.0f;
        if (L != 0.0f) {
            float cb = cu_dotf(Ct, a.B + ((size_t)s * G + g) * N, N), m = dMt[s];
            gl = m * L * (a.cs ? a.cs[(size_t)s * H + h] : 1.0f);
            wl = m * cb * L;
            w = gl * cb;
        }
        GL[s] = gl, WL[s] = wl, PW[s] = w;
    }
    __syncthreads();
    if (threadIdx.x == 0) { // PW[k] = Σ_{s<k} w_s, in place
        float acc = 0.0f, prev = PW[0];
        PW[0] = 0.0f;
        for (int k = 1; k <= t; k++) {
            float cur = PW[k];
            acc += prev;
            PW[k] = acc;
            prev = cur;
        }
    }
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j <= t; j++)
            s += GL[j] * a.B[((size_t)j * G + g) * N + n];
        a.dCh[((size_t)t * H + h) * N + n] = s;
    }
}

// column sums over t ≥ s: ddA[s,h], dcs[s,h] (one thread per s); dB_s[n] (per (s, n))
__global__ void k_mbw_cols(mbw a) {
    int T = a.T, H = a.H, N = a.N, G = a.G, h = a.h, g = h / (H / G);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)T * (N + 1);
         i += (size_t)gridDim.x * blockDim.x) {
        int s = (int)(i / (N + 1)), n = (int)(i % (N + 1));
        if (n == N) {
            float dd = 0.0f, dc = 0.0f;
            for (int t = s; t < T; t++) {
                dd += a.PW[(size_t)t * T + s];
                dc += a.WL[(size_t)t * T + s];
            }
            a.ddA[(size_t)s * H + h] = dd;
            if (a.dcs)
                a.dcs[(size_t)s * H + h] = dc;
        } else {
            float acc = 0.0f;
            for (int t = s; t < T; t++)
                acc += a.GL[(size_t)t * T + s] * a.C[((size_t)t * G + g) * N + n];
            a.dBh[((size_t)s * H + h) * N + n] = acc;
        }
    }
}

// dD[h] += Σ_t dM[h,t,t]  (one thread per head, t in order)
__global__ void k_mbw_dD(float *dD, const float *dM, int T, int H) {
    int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= H)
        return;
    float s = 0.0f;
    for (int t = 0; t < T; t++)
        s += dM[((size_t)h * T + t) * T + t];
    dD[h] += s;
}

extern "C" void cuda_ssd_materialize_backward(const molt_exec *ex, float *ddA, float *dB,
                                              float *dC, float *dcolscale, float *dD,
                                              const float *dM, const float *dA, const float *B,
                                              const float *C, const float *colscale,
                                              const float *D, int T, int H, int N, int G,
                                              float *work) {
    if (T <= 0 || H <= 0)
        return;
    mbw    a;
    size_t TT = (size_t)T * T;
    a.GL = (float *)cu_scratch(ex, 3 * sizeof(float) * TT);
    if (!a.GL)
        return;
    a.WL = a.GL + TT, a.PW = a.WL + TT;
    a.dBh = H == G ? dB : work + (size_t)H * T;
    a.dCh = H == G ? dC : a.dBh + (size_t)T * H * N;
    a.ddA = ddA, a.dcs = colscale ? dcolscale : NULL;
    a.dM = dM, a.dA = dA, a.B = B, a.C = C, a.cs = colscale;
    a.T = T, a.H = H, a.N = N, a.G = G;
    for (int h = 0; h < H; h++) {
        a.h = h;
        k_mbw_rows<<<T, 256, 0, cu_stream(ex)>>>(a);
        CU_LAUNCHED("k_mbw_rows");
        size_t n = (size_t)T * (N + 1);
        k_mbw_cols<<<cu_blocks(n, 128), 128, 0, cu_stream(ex)>>>(a);
        CU_LAUNCHED("k_mbw_cols");
    }
    cu_scratch_free(ex, a.GL);
    if (D && dD) {
        k_mbw_dD<<<(H + 127) / 128, 128, 0, cu_stream(ex)>>>(dD, dM, T, H);
        CU_LAUNCHED("k_mbw_dD");
    }
    if (H != G)
        cu_ssd_group_sum(ex, dB, dC, a.dBh, a.dCh, T, H, N, G);
}
