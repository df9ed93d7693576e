/*
 * ssm.cu — CUDA state-space forward ops: causal depthwise conv1d (+ its
 * backward), the one-token SSD step, the chunked SSD scan and the
 * materialized mixing matrix. Contracts in ssm.h; the math and the `work`
 * layout are the CPU's (cpu/ssm.c), which this file follows phase for phase.
 *
 * Kept simple (correct first): one thread per output element or per
 * (row, column) pair; segment sums of dA are grown one term at a time from
 * the segment's near end, as on the CPU (never differences of long prefix
 * sums), by one thread per row. Decays below SSM_EXP_FLUSH are exactly 0.
 * Deterministic: every output has one writer and a fixed order of sums.
 *
 * Letters: T steps, H heads, P head dim, N state, G B/C groups (head h reads
 * g = h/(H/G)), K conv width, Cc channels, Q chunk, Lc ≤ Q this chunk's
 * length, nc = ceil(T/Q) chunks.
 */
#include "kernels/cuda/common.cuh"

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// ----------------------------------------------------------------------------
// causal conv1d:  y[t,c] = b[c] + Σ_k w[c,k]·in[t-(K-1)+k, c]
//   in[τ,c] = x[τ,c] (τ ≥ 0), state[c, τ+K-1] (τ < 0; 0 when state is NULL)

__global__ void k_conv_fwd(float *y, const float *x, const float *w, const float *b,
                           const float *state, int T, int Cc, int K) {
    GRID_STRIDE(i, (size_t)T * Cc) {
        int   t = (int)(i / Cc), c = (int)(i % Cc);
        float s = b ? b[c] : 0.0f;
        for (int k = 0; k < K; k++) {
            int   tau = t - (K - 1) + k;
            float v = tau >= 0 ? x[(size_t)tau * Cc + c]
                               : (state ? state[(size_t)c * (K - 1) + (tau + K - 1)] : 0.0f);
            s += w[(size_t)c * K + k] * v;
        }
        y[i] = s;
    }
}

// new history: the inputs at τ = T-(K-1) .. T-1 (old slot T+j when τ < 0;
// ascending j never reads a slot already rewritten). One thread per channel.
__global__ void k_conv_state(float *state, const float *x, int T, int Cc, int K) {
    GRID_STRIDE(c, (size_t)Cc) {
        float *sc = state + c * (size_t)(K - 1);
        for (int j = 0; j < K - 1; j++) {
            int tau = T - (K - 1) + j;
            sc[j] = tau >= 0 ? x[(size_t)tau * Cc + c] : sc[T + j];
        }
    }
}

extern "C" void cuda_conv1d_causal(const molt_exec *ex, float *y, const float *x, const float *w,
                                   const float *b, float *state, int T, int Cc, int K) {
    if (T <= 0 || Cc <= 0)
        return;
    size_t n = (size_t)T * Cc;
    k_conv_fwd<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(y, x, w, b, state, T, Cc, K);
    CU_LAUNCHED("k_conv_fwd");
    if (state && K > 1) {
        k_conv_state<<<cu_blocks((size_t)Cc, 256), 256, 0, cu_stream(ex)>>>(state, x, T, Cc, K);
        CU_LAUNCHED("k_conv_state");
    }
}

// backward (zero history): dx[τ,c] = Σ_k w[c,k]·dy[τ+(K-1)-k, c]  (t < T)
__global__ void k_conv_bwd_dx(float *dx, const float *dy, const float *w, int T, int Cc, int K) {
    GRID_STRIDE(i, (size_t)T * Cc) {
        int   tau = (int)(i / Cc), c = (int)(i % Cc);
        float s = 0.0f;
        for (int k = 0; k < K; k++) {
            int t = tau + (K - 1) - k;
            if (t < T)
                s += w[(size_t)c * K + k] * dy[(size_t)t * Cc + c];
        }
        dx[i] = s;
    }
}

// dw[c,k] += Σ_t dy[t,c]·x[t-(K-1)+k, c]  (k < K);  db[c] += Σ_t dy[t,c]  (k = K)
// one thread per (c, k), rows in order
__global__ void k_conv_bwd_dw(float *dw, float *db, const float *dy, const float *x, int T,
                              int Cc, int K) {
    GRID_STRIDE(i, (size_t)Cc * (K + 1)) {
        int   c = (int)(i / (K + 1)), k = (int)(i % (K + 1));
        float acc = 0.0f;
        if (k == K) {
            if (!db)
                continue;
            for (int t = 0; t < T; t++)
                acc += dy[(size_t)t * Cc + c];
            db[c] += acc;
        } else {
            if (!dw)
                continue;
            for (int t = 0; t < T; t++) {
                int tau = t - (K - 1) + k;
                if (tau >= 0)
                    acc += dy[(size_t)t * Cc + c] * x[(size_t)tau * Cc + c];
            }
            dw[(size_t)c * K + k] += acc;
        }
    }
}

extern "C" void cuda_conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db,
                                            const float *dy, const float *x, const float *w,
                                            int T, int Cc, int K) {
    if (T <= 0 || Cc <= 0)
        return;
    size_t n = (size_t)T * Cc;
    k_conv_bwd_dx<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dx, dy, w, T, Cc, K);
    CU_LAUNCHED("k_conv_bwd_dx");
    if (dw || db) {
        size_t m = (size_t)Cc * (K + 1);
        k_conv_bwd_dw<<<cu_blocks(m, 128), 128, 0, cu_stream(ex)>>>(dw, db, dy, x, T, Cc, K);
        CU_LAUNCHED("k_conv_bwd_dw");
    }
}

// ----------------------------------------------------------------------------
// one token:  s = exp(dA[h])·s + X[h,:] ⊗ B[g,:],  y[h,p] = s[p,:]·C[g,:]
// one thread per (h, p)

__global__ void k_ssd_step(float *y, float *state, const float *X, const float *dA,
                           const float *B, const float *C, int H, int P, int N, int G) {
    GRID_STRIDE(i, (size_t)H * P) {
        int          h = (int)(i / P), g = h / (H / G);
        float        a = cu_decay(dA[h]), xv = X[i], acc = 0.0f;
        float       *sp = state + i * N;
        const float *Bg = B + (size_t)g * N, *Cg = C + (size_t)g * N;
        for (int n = 0; n < N; n++) {
            float s = a * sp[n] + xv * Bg[n];
            sp[n] = s;
            acc += s * Cg[n];
        }
        y[i] = acc;
    }
}

extern "C" void cuda_ssd_step(const molt_exec *ex, float *y, float *state, const float *X,
                              const float *dA, const float *B, const float *C, int H, int P,
                              int N, int G) {
    size_t n = (size_t)H * P;
    if (!n)
        return;
    k_ssd_step<<<cu_blocks(n, 128), 128, 0, cu_stream(ex)>>>(y, state, X, dA, B, C, H, P, N, G);
    CU_LAUNCHED("k_ssd_step");
}

// ----------------------------------------------------------------------------
// chunked SSD (cpu/ssm.c has the equations). Work layout (the contract):
//   st [nc,H,P,N] | v [H,P,N] | din [H,T] | dout [H,T] | row [H,T]
// st ends as the state entering every chunk, din / dout the chunk decays;
// v and row are the CPU's scratch, unused here. The intra-chunk matrix
// Mc[i,j] = (C_i·B_j)·L[i,j] (Lc×Lc per (head, chunk)) lives in
// stream-ordered scratch.

struct scan_args {
    float       *y, *state, *st, *din, *dout, *Mc;
    const float *X, *dA, *B, *C;
    int          T, H, P, N, G, Q, nc;
};

// Phase 1, one block per (chunk, head): decays, Mc, Y_diag (written) and S_c.
__global__ void k_scan_intra(scan_args a) {
    int    c = blockIdx.x, h = blockIdx.y, H = a.H, P = a.P, N = a.N, G = a.G, g = h / (H / G);
    int    t0 = c * a.Q, Lc = min(a.Q, a.T - t0);
    size_t o = (size_t)h * a.T + t0, PN = (size_t)P * N;
    float *din = a.din + o, *dout = a.dout + o;
    float *M = a.Mc + ((size_t)h * a.nc + c) * (size_t)a.Q * a.Q; // [Lc][Lc], row i
#define DA(i) a.dA[(size_t)(t0 + (i)) * H + h]
#define XR(i) (a.X + ((size_t)(t0 + (i)) * H + h) * P)
#define BR(i) (a.B + ((size_t)(t0 + (i)) * G + g) * N)
#define CR(i) (a.C + ((size_t)(t0 + (i)) * G + g) * N)
    if (threadIdx.x == 0) {
        float acc = 0.0f;
        for (int i = 0; i < Lc; i++) {
            acc += DA(i);
            din[i] = cu_decay(acc);
        }
        acc = 0.0f;
        for (int j = Lc - 1; j >= 0; j--) {
            dout[j] = cu_decay(acc);
            acc += DA(j);
        }
    }
    // decay rows: M[i,j] = exp(Σ_{k=j+1..i} dA_k), grown from the diagonal (0 when flushed)
    for (int i = threadIdx.x; i < Lc; i += blockDim.x) {
        float seg = 0.0f;
        for (int j = i; j >= 0; j--) {
            M[(size_t)i * Lc + j] = seg < SSM_FLUSH ? 0.0f : expf(seg);
            seg += DA(j);
        }
    }
    __syncthreads();
    // M[i,j] *= C_i·B_j
    for (int e = threadIdx.x; e < Lc * Lc; e += blockDim.x) {
        int i = e / Lc, j = e % Lc;
        if (j > i)
            continue;
        float L = M[e];
        if (L != 0.0f) {
            const float *Ci = CR(i), *Bj = BR(j);
            float        s = 0.0f;
            for (int n = 0; n < N; n++)
                s += Ci[n] * Bj[n];
            M[e] = s * L;
        }
    }
    __syncthreads();
    // Y_diag[i,p] = Σ_{j≤i} M[i,j]·X_j[p]
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {
        int   i = e / P, p = e % P;
        float s = 0.0f;
        for (int j = 0; j <= i; j++)
            s += M[(size_t)i * Lc + j] * XR(j)[p];
        a.y[((size_t)(t0 + i) * H + h) * P + p] = s;
    }
    // S_c[p,n] = Σ_j dout[j]·X_j[p]·B_j[n]
    float *S = a.st + ((size_t)c * H + h) * PN;
    for (size_t e = threadIdx.x; e < PN; e += blockDim.x) {
        int   p = (int)(e / N), n = (int)(e % N);
        float s = 0.0f;
        for (int j = 0; j < Lc; j++)
            s += (dout[j] * XR(j)[p]) * BR(j)[n];
        S[e] = s;
    }
#undef DA
#undef XR
#undef BR
#undef CR
}

// Phase 2, one block per head: st[c] ← S_in[c];  v ← a_c·v + S_c
__global__ void k_scan_pass(scan_args a, float *vbuf) {
    int    h = blockIdx.x;
    size_t PN = (size_t)a.P * a.N;
    float *v = a.state ? a.state + h * PN : vbuf + h * PN;
    for (size_t e = threadIdx.x; e < PN; e += blockDim.x) {
        float ve = a.state ? v[e] : 0.0f;
        for (int c = 0; c < a.nc; c++) {
            int    t_last = min((c + 1) * a.Q, a.T) - 1;
            float  tot = a.din[(size_t)h * a.T + t_last];
            float *sc = a.st + ((size_t)c * a.H + h) * PN;
            float  loc = sc[e];
            sc[e] = ve;
            ve = tot * ve + loc;
        }
        v[e] = ve;
    }
}

// Phase 3, one block per (chunk, head): y_i += din[i]·S_in[c]·C_i
__global__ void k_scan_off(scan_args a) {
    int c = blockIdx.x, h = blockIdx.y, H = a.H, P = a.P, N = a.N, G = a.G, g = h / (H / G);
    if (c == 0 && !a.state)
        return;
    int          t0 = c * a.Q, Lc = min(a.Q, a.T - t0);
    const float *S = a.st + ((size_t)c * H + h) * (size_t)P * N;
    const float *dec = a.din + (size_t)h * a.T + t0;
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {
        int          i = e / P, p = e % P;
        const float *Ci = a.C + ((size_t)(t0 + i) * G + g) * N, *Sp = S + (size_t)p * N;
        float        s = 0.0f;
        for (int n = 0; n < N; n++)
            s += Ci[n] * Sp[n];
        a.y[((size_t)(t0 + i) * H + h) * P + p] += dec[i] * s;
    }
}

extern "C" void cuda_ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X,
                                      const float *dA, const float *B, const float *C, int T,
                                      int H, int P, int N, int G, int Q, float *work) {
    if (T <= 0 || H <= 0)
        return;
    if (Q > T)
        Q = T;
    int       nc = (T + Q - 1) / Q;
    size_t    PN = (size_t)P * N;
    scan_args a;
    a.y = y, a.state = state, a.st = work;
    float *vbuf = work + (size_t)nc * H * PN;
    a.din = vbuf + (size_t)H * PN;
    a.dout = a.din + (size_t)H * T;
    a.X = X, a.dA = dA, a.B = B, a.C = C;
    a.T = T, a.H = H, a.P = P, a.N = N, a.G = G, a.Q = Q, a.nc = nc;
    a.Mc = (float *)cu_scratch(ex, sizeof(float) * (size_t)H * nc * Q * Q);
    if (!a.Mc)
        return;
    dim3 grid((unsigned)nc, (unsigned)H);
    k_scan_intra<<<grid, 256, 0, cu_stream(ex)>>>(a);
    CU_LAUNCHED("k_scan_intra");
    k_scan_pass<<<H, 256, 0, cu_stream(ex)>>>(a, vbuf);
    CU_LAUNCHED("k_scan_pass");
    k_scan_off<<<grid, 256, 0, cu_stream(ex)>>>(a);
    CU_LAUNCHED("k_scan_off");
    cu_scratch_free(ex, a.Mc);
}

// ----------------------------------------------------------------------------
// materialized matrix, one block per (row t, head h):
//   M[h,t,s] = (C_t·B_s)·exp(Σ_{k=s+1..t} dA[k,h])·(colscale ? colscale[s,h] : 1)  s ≤ t
//   0 above the diagonal; M[h,t,t] += D[h]
// The row's decays are grown serially by thread 0 into the row itself, then
// scaled by all threads.

__global__ void k_materialize(float *M, const float *dA, const float *B, const float *C,
                              const float *cs, const float *D, int T, int H, int N, int G) {
    int          t = blockIdx.x, h = blockIdx.y, g = h / (H / G);
    float       *Mt = M + ((size_t)h * T + t) * T;
    const float *Ct = C + ((size_t)t * G + g) * N;
    if (threadIdx.x == 0) {
        float seg = 0.0f;
        for (int s = t; s >= 0; s--) {
            Mt[s] = seg < SSM_FLUSH ? 0.0f : expf(seg);
            seg += dA[(size_t)s * H + h];
        }
    }
    __syncthreads();
    for (int s = threadIdx.x; s < T; s += blockDim.x) {
        float v = 0.0f;
        if (s <= t) {
            float L = Mt[s];
            if (L != 0.0f) {
                const float *Bs = B + ((size_t)s * G + g) * N;
                float        d = 0.0f;
                for (int n = 0; n < N; n++)
                    d += Ct[n] * Bs[n];
                v = d * L;
                if (cs)
                    v *= cs[(size_t)s * H + h];
            }
            if (s == t && D)
                v += D[h];
        }
        Mt[s] = v;
    }
}

extern "C" void cuda_ssd_materialize(const molt_exec *ex, float *M, const float *dA,
                                     const float *B, const float *C, const float *colscale,
                                     const float *D, int T, int H, int N, int G) {
    if (T <= 0 || H <= 0)
        return;
    dim3 grid((unsigned)T, (unsigned)H);
    k_materialize<<<grid, 256, 0, cu_stream(ex)>>>(M, dA, B, C, colscale, D, T, H, N, G);
    CU_LAUNCHED("k_materialize");
}
