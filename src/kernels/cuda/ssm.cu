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
 * Batched decode (ssm_rows.h: conv1d_causal_rows, ssd_step_rows) is one
 * launch over all rows with the per-row state pointers by value (cu_rowtab),
 * running the single-sequence code per element (the same bits as one
 * conv1d_causal / ssd_step call per row).
 *
 * Letters: T steps, H heads, P head dim, N state, G B/C groups (head h reads
 * g = h/(H/G)), K conv width, Cc channels, Q chunk, Lc ≤ Q this chunk's
 * length, nc = ceil(T/Q) chunks.
 */
#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/ssm_chunk.cuh"
#include "kernels/cuda/ssm_step.cuh"

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// ----------------------------------------------------------------------------
// causal conv1d:  y[t,c] = b[c] + Σ_k w[c,k]·in[t-(K-1)+k, c]
//   in[τ,c] = x[τ,c] (τ ≥ 0), state[c, τ+K-1] (τ < 0; 0 when state is NULL)

__global__ void k_conv_fwd(float *y, const float *x, const float *w, const float *b,
                           const float *state, int T, int Cc, int K) {
    GRID_STRIDE(i, (size_t)T * Cc) {
        y[i] = conv_out(x, w, b, state, (int)(i / Cc), (int)(i % Cc), Cc, K);
    }
}

// One thread per channel.
__global__ void k_conv_state(float *state, const float *x, int T, int Cc, int K) {
    GRID_STRIDE(c, (size_t)Cc) conv_hist(state, x, T, Cc, K, c);
}

// batched decode (one token per row): thread (r, c) writes y and then row r's history
__global__ void k_conv_rows(float *y, const float *x, const float *w, const float *b, int n,
                            int Cc, int K, cu_rowtab t) {
    GRID_STRIDE(i, (size_t)n * Cc) {
        int          r = (int)(i / Cc), c = (int)(i % Cc);
        const float *xr = x + (size_t)r * Cc;
        y[i] = conv_out(xr, w, b, t.a[r], 0, c, Cc, K);
        if (t.a[r] && K > 1)
            conv_hist(t.a[r], xr, 1, Cc, K, (size_t)c);
    }
}

extern "C" void cuda_conv1d_causal_rows(const molt_exec *ex, float *y, const float *x,
                                        const float *w, const float *b, float *const *state,
                                        int n, int Cc, int K) {
    if (n <= 0 || Cc <= 0)
        return;
    for (int r0 = 0; r0 < n; r0 += CU_ROWS) { // state pointers by value (common.cuh)
        int       nr = n - r0 < CU_ROWS ? n - r0 : CU_ROWS;
        size_t    m = (size_t)nr * Cc, o = (size_t)r0 * Cc;
        cu_rowtab t;
        cu_rowtab_fill(&t, state, NULL, NULL, r0, nr);
        k_conv_rows<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(y + o, x + o, w, b, nr, Cc, K,
                                                                  t);
        CU_LAUNCHED("k_conv_rows");
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

// dw[c,k] += Σ_t dy[t,c]·x[t-(K-1)+k, c]  (k < K);  db[c] += Σ_t dy[t,c]  (k = K), in two
// stages as colsum.cuh: the rows in chunks (cs_chunks: the chunking depends only on the
// shape), each thread one channel's K + 1 sums over its chunk in row order in double, then
// one thread per (c, k) adds the chunks' partials in chunk order (a thread per (c, k) walking
// all T rows ran 8 ms a layer at T = 2048 on an H100)
#define CONV_KMAX 8 // wider kernels take the one-stage loop below
__global__ void k_conv_bwd_dw_part(double *part, const float *dy, const float *x, int T, int Cc,
                                   int K, int rows_per) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Cc)
        return;
    int    t0 = blockIdx.y * rows_per, t1 = min(T, t0 + rows_per);
    double s[CONV_KMAX], sb = 0.0; // the sums in registers: the k loops unrolled to
#pragma unroll                     // CONV_KMAX (a runtime-indexed array went to local
    for (int k = 0; k < CONV_KMAX; k++) // memory: 186 µs a call in the H100 stage-3 profile of run 7)
        s[k] = 0.0;
    for (int t = t0; t < t1; t++) {
        double g = (double)dy[(size_t)t * Cc + c];
#pragma unroll
        for (int k = 0; k < CONV_KMAX; k++) {
            int tau = t - (K - 1) + k;
            if (k < K && tau >= 0)
                s[k] += g * (double)x[(size_t)tau * Cc + c];
        }
        sb += g;
    }
#pragma unroll
    for (int k = 0; k < CONV_KMAX; k++)
        if (k < K)
            part[((size_t)blockIdx.y * (K + 1) + k) * Cc + c] = s[k];
    part[((size_t)blockIdx.y * (K + 1) + K) * Cc + c] = sb;
}

__global__ void k_conv_bwd_dw_fin(float *dw, float *db, const double *part, int chunks, int Cc,
                                  int K) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)Cc * (K + 1))
        return;
    int    c = (int)(i / (K + 1)), k = (int)(i % (K + 1));
    float *o = k == K ? (db ? db + c : NULL) : (dw ? dw + (size_t)c * K + k : NULL);
    if (!o)
        return;
    double s = 0.0;
    for (int ch = 0; ch < chunks; ch++)
        s += part[((size_t)ch * (K + 1) + k) * Cc + c];
    *o += (float)s;
}

// the one-stage form, for K > CONV_KMAX: one thread per (c, k), rows in order
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

static void conv_dw(const molt_exec *ex, float *dw, float *db, const float *dy, const float *x,
                    int T, int Cc, int K) {
    size_t m = (size_t)Cc * (K + 1);
    int    rp, ch = cs_chunks(T, Cc, &rp);
    double *part =
        K <= CONV_KMAX ? (double *)cu_scratch(ex, sizeof(double) * (size_t)ch * m) : NULL;
    if (!part) {
        k_conv_bwd_dw<<<cu_blocks(m, 128), 128, 0, cu_stream(ex)>>>(dw, db, dy, x, T, Cc, K);
        CU_LAUNCHED("k_conv_bwd_dw");
        return;
    }
    unsigned cb = (unsigned)((Cc + CS_THREADS - 1) / CS_THREADS);
    k_conv_bwd_dw_part<<<dim3(cb, (unsigned)ch), CS_THREADS, 0, cu_stream(ex)>>>(part, dy, x, T,
                                                                                Cc, K, rp);
    CU_LAUNCHED("k_conv_bwd_dw_part");
    k_conv_bwd_dw_fin<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(dw, db, part, ch, Cc, K);
    CU_LAUNCHED("k_conv_bwd_dw_fin");
    cu_scratch_free(ex, part);
}

extern "C" void cuda_conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db,
                                            const float *dy, const float *x, const float *w,
                                            int T, int Cc, int K) {
    if (T <= 0 || Cc <= 0)
        return;
    size_t n = (size_t)T * Cc;
    k_conv_bwd_dx<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dx, dy, w, T, Cc, K);
    CU_LAUNCHED("k_conv_bwd_dx");
    if (dw || db)
        conv_dw(ex, dw, db, dy, x, T, Cc, K);
}

// ----------------------------------------------------------------------------
// one token:  s = exp(dA[h])·s + X[h,:] ⊗ B[g,:],  y[h,p] = s[p,:]·C[g,:]
// one lane per (h, p), a warp per 32 of them (ssd_warp)

// warps over the ceil(H·P / 32) row groups
__global__ void k_ssd_step(float *y, float *state, const float *X, const float *dA,
                           const float *B, const float *C, int H, int P, int N, int G) {
    __shared__ float tile[SSD_WARPS][32][33];
    size_t           ng = ((size_t)H * P + 31) / 32;
    int              w = threadIdx.x >> 5;
    for (size_t k = (size_t)blockIdx.x * SSD_WARPS + w; k < ng; k += (size_t)gridDim.x * SSD_WARPS)
        ssd_warp(y, state, X, dA, B, C, k * 32, H, P, N, G, tile[w]);
}

// batched decode: warps over (row r, row group) with row r's state t.a[r] (S: float, or
// uint16_t for the bf16 state, whose pointers the row table carries as float *)
template <typename S>
__global__ void k_ssd_step_rows(float *y, const float *X, const float *dA, const float *B,
                                const float *C, int n, int H, int P, int N, int G, cu_rowtab t) {
    __shared__ float tile[SSD_WARPS][32][33];
    size_t           hp = (size_t)H * P, ng = (hp + 31) / 32;
    int              w = threadIdx.x >> 5;
    for (size_t k = (size_t)blockIdx.x * SSD_WARPS + w; k < (size_t)n * ng;
         k += (size_t)gridDim.x * SSD_WARPS) {
        size_t r = k / ng;
        ssd_warp(y + r * hp, (S *)(void *)t.a[r], X + r * hp, dA + r * H, B + r * G * N,
                 C + r * G * N, (k % ng) * 32, H, P, N, G, tile[w]);
    }
}

static unsigned ssd_blocks(size_t warps) {
    size_t b = (warps + SSD_WARPS - 1) / SSD_WARPS;
    return (unsigned)(b < 1 ? 1 : b > 65535u * 16u ? 65535u * 16u : b);
}

template <typename S>
static void ssd_step_rows_any(const molt_exec *ex, float *y, float *const *state, const float *X,
                              const float *dA, const float *B, const float *C, int n, int H,
                              int P, int N, int G) {
    size_t hp = (size_t)H * P;
    if (n <= 0 || !hp)
        return;
    for (int r0 = 0; r0 < n; r0 += CU_ROWS) { // state pointers by value (common.cuh)
        int       nr = n - r0 < CU_ROWS ? n - r0 : CU_ROWS;
        size_t    o = (size_t)r0 * hp, gn = (size_t)r0 * G * N;
        cu_rowtab t;
        cu_rowtab_fill(&t, state, NULL, NULL, r0, nr);
        size_t    warps = (size_t)nr * ((hp + 31) / 32);
        k_ssd_step_rows<S><<<ssd_blocks(warps), 32 * SSD_WARPS, 0, cu_stream(ex)>>>(
            y + o, X + o, dA + (size_t)r0 * H, B + gn, C + gn, nr, H, P, N, G, t);
        CU_LAUNCHED("k_ssd_step_rows");
    }
}

extern "C" void cuda_ssd_step_rows(const molt_exec *ex, float *y, float *const *state,
                                   const float *X, const float *dA, const float *B,
                                   const float *C, int n, int H, int P, int N, int G) {
    ssd_step_rows_any<float>(ex, y, state, X, dA, B, C, n, H, P, N, G);
}

// the bf16 recurrent state (ssm_rows.h): ssm_step.cuh's bf16 loads, products and stores
extern "C" void cuda_ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state,
                                        const float *X, const float *dA, const float *B,
                                        const float *C, int n, int H, int P, int N, int G) {
    ssd_step_rows_any<uint16_t>(ex, y, reinterpret_cast<float *const *>(state), X, dA, B, C,
                                n, H, P, N, G);
}

extern "C" void cuda_ssd_step(const molt_exec *ex, float *y, float *state, const float *X,
                              const float *dA, const float *B, const float *C, int H, int P,
                              int N, int G) {
    size_t n = (size_t)H * P;
    if (!n)
        return;
    k_ssd_step<<<ssd_blocks((n + 31) / 32), 32 * SSD_WARPS, 0, cu_stream(ex)>>>(y, state, X, dA,
                                                                               B, C, H, P, N, G);
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
        if (L != 0.0f)
            M[e] = cu_dotf(CR(i), BR(j), N) * L;
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

// Phase 2, one thread per element of a head's state (grid: element blocks × heads):
// st[c] ← S_in[c];  v ← a_c·v + S_c
__global__ void k_scan_pass(scan_args a, float *vbuf) {
    int    h = blockIdx.y;
    size_t PN = (size_t)a.P * a.N, e = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (e >= PN)
        return;
    float *v = a.state ? a.state + h * PN : vbuf + h * PN;
    float  ve = a.state ? v[e] : 0.0f;
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
        a.y[((size_t)(t0 + i) * H + h) * P + p] += dec[i] * cu_dotf(Ci, Sp, N);
    }
}

// The same two phases with the chunk's B, C, X (and the chunk state) staged in
// shared memory, used when they fit (scan_smem_bytes ≤ the device's opt-in
// limit): the same sums in the same order as k_scan_intra / k_scan_off, so
// the same results; the rows of B (and S) are padded to N+1 floats so that a
// warp reading one column of them hits 32 different banks.
static size_t scan_intra_smem(int Q, int P, int N) {
    return sizeof(float) * ((size_t)3 * Q + (size_t)Q * (N + 1) + (size_t)Q * N + (size_t)Q * P);
}
static size_t scan_off_smem(int Q, int P, int N) {
    return sizeof(float) * ((size_t)P * (N + 1) + (size_t)Q * N + (size_t)Q);
}

__global__ void k_scan_intra_smem(scan_args a) {
    extern __shared__ float sm[];
    int    c = blockIdx.x, h = blockIdx.y, H = a.H, P = a.P, N = a.N, G = a.G, g = h / (H / G);
    int    t0 = c * a.Q, Lc = min(a.Q, a.T - t0), N1 = N + 1;
    size_t o = (size_t)h * a.T + t0, PN = (size_t)P * N;
    float *dAs = sm, *dins = dAs + a.Q, *douts = dins + a.Q, *Bs = douts + a.Q;
    float *Cs = Bs + (size_t)a.Q * N1, *Xs = Cs + (size_t)a.Q * N;
    float *M = a.Mc + ((size_t)h * a.nc + c) * (size_t)a.Q * a.Q; // [Lc][Lc], row i
    for (int i = threadIdx.x; i < Lc; i += blockDim.x)
        dAs[i] = a.dA[(size_t)(t0 + i) * H + h];
    for (int e = threadIdx.x; e < Lc * N; e += blockDim.x) {
        int    i = e / N, n = e % N;
        size_t src = ((size_t)(t0 + i) * G + g) * N + n;
        Bs[i * N1 + n] = a.B[src];
        Cs[e] = a.C[src];
    }
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x)
        Xs[e] = a.X[((size_t)(t0 + e / P) * H + h) * P + e % P];
    __syncthreads();
    // tasks 0..Lc-1: decay row i of M; Lc..2Lc-1: din / dout of step i (the
    // CPU's serial sums, term for term)
    for (int k = threadIdx.x; k < 2 * Lc; k += blockDim.x) {
        if (k < Lc) {
            float seg = 0.0f;
            for (int j = k; j >= 0; j--) {
                M[(size_t)k * Lc + j] = seg < SSM_FLUSH ? 0.0f : expf(seg);
                seg += dAs[j];
            }
        } else {
            int   i = k - Lc;
            float acc = 0.0f;
            for (int j = 0; j <= i; j++)
                acc += dAs[j];
            dins[i] = cu_decay(acc);
            acc = 0.0f;
            for (int j = Lc - 1; j > i; j--)
                acc += dAs[j];
            douts[i] = cu_decay(acc);
            a.din[o + i] = dins[i];
            a.dout[o + i] = douts[i];
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < Lc * (Lc + 1) / 2; e += blockDim.x) { // the lower triangle
        int i, j;
        cu_tri(e, &i, &j);
        float *m = M + (size_t)i * Lc + j, L = *m;
        if (L != 0.0f)
            *m = cu_dotf(Cs + (size_t)i * N, Bs + (size_t)j * N1, N) * L;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {
        int          i = e / P, p = e % P;
        const float *Mi = M + (size_t)i * Lc;
        float        s = 0.0f;
        for (int j = 0; j <= i; j++)
            s += Mi[j] * Xs[j * P + p];
        a.y[((size_t)(t0 + i) * H + h) * P + p] = s;
    }
    float *S = a.st + ((size_t)c * H + h) * PN;
    for (size_t e = threadIdx.x; e < PN; e += blockDim.x) {
        int   p = (int)(e / N), n = (int)(e % N);
        float s = 0.0f;
        for (int j = 0; j < Lc; j++)
            s += (douts[j] * Xs[j * P + p]) * Bs[j * N1 + n];
        S[e] = s;
    }
}

__global__ void k_scan_off_smem(scan_args a) {
    extern __shared__ float sm[];
    int c = blockIdx.x, h = blockIdx.y, H = a.H, P = a.P, N = a.N, G = a.G, g = h / (H / G);
    if (c == 0 && !a.state)
        return;
    int          t0 = c * a.Q, Lc = min(a.Q, a.T - t0), N1 = N + 1;
    float       *Ss = sm, *Cs = Ss + (size_t)P * N1, *dec = Cs + (size_t)a.Q * N;
    const float *S = a.st + ((size_t)c * H + h) * (size_t)P * N;
    for (int e = threadIdx.x; e < P * N; e += blockDim.x)
        Ss[(e / N) * N1 + e % N] = S[e];
    for (int e = threadIdx.x; e < Lc * N; e += blockDim.x)
        Cs[e] = a.C[((size_t)(t0 + e / N) * G + g) * N + e % N];
    for (int i = threadIdx.x; i < Lc; i += blockDim.x)
        dec[i] = a.din[(size_t)h * a.T + t0 + i];
    __syncthreads();
    for (int e = threadIdx.x; e < Lc * P; e += blockDim.x) {
        int          i = e / P, p = e % P;
        a.y[((size_t)(t0 + i) * H + h) * P + p] +=
            dec[i] * cu_dotf(Cs + (size_t)i * N, Ss + (size_t)p * N1, N);
    }
}

void cu_ssd_state_pass(const molt_exec *ex, float *st, float *state, float *vbuf,
                       const float *din, int T, int H, int P, int N, int Q, int nc) {
    scan_args a = {};
    a.state = state, a.st = st, a.din = (float *)din;
    a.T = T, a.H = H, a.P = P, a.N = N, a.Q = Q, a.nc = nc;
    size_t PN = (size_t)P * N;
    dim3   pgrid((unsigned)((PN + 255) / 256), (unsigned)H);
    k_scan_pass<<<pgrid, 256, 0, cu_stream(ex)>>>(a, vbuf);
    CU_LAUNCHED("k_scan_pass");
}

extern "C" void cuda_ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X,
                                      const float *dA, const float *B, const float *C, int T,
                                      int H, int P, int N, int G, int Q, float *work) {
    if (T <= 0 || H <= 0)
        return;
    if (cu_ssd_tc_forward(ex, y, state, X, dA, B, C, T, H, P, N, G, Q, work))
        return; // TF32 batched GEMMs (ssm_tc.cu)
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
    dim3   grid((unsigned)nc, (unsigned)H);
    size_t s1 = scan_intra_smem(Q, P, N), s3 = scan_off_smem(Q, P, N);
    if (cu_smem_fits((const void *)k_scan_intra_smem, s1)) {
        k_scan_intra_smem<<<grid, 512, s1, cu_stream(ex)>>>(a);
        CU_LAUNCHED("k_scan_intra_smem");
    } else {
        k_scan_intra<<<grid, 256, 0, cu_stream(ex)>>>(a);
        CU_LAUNCHED("k_scan_intra");
    }
    cu_ssd_state_pass(ex, a.st, state, vbuf, a.din, T, H, P, N, Q, nc);
    if (cu_smem_fits((const void *)k_scan_off_smem, s3)) {
        k_scan_off_smem<<<grid, 256, s3, cu_stream(ex)>>>(a);
        CU_LAUNCHED("k_scan_off_smem");
    } else {
        k_scan_off<<<grid, 256, 0, cu_stream(ex)>>>(a);
        CU_LAUNCHED("k_scan_off");
    }
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
                v = cu_dotf(Ct, B + ((size_t)s * G + g) * N, N) * L;
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
