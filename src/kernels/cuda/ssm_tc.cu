/*
 * ssm_tc.cu — the chunked SSD scan, forward and backward, with its products on
 * tensor cores: TF32 batched GEMMs (cuBLAS, one call per product over every
 * (chunk, head) pair) between small elementwise kernels. Taken for an exec with
 * MOLT_EXEC_TF32 or MOLT_EXEC_BF16 (MOLT_SSD_TC=0: off, ssm_chunk.cuh); the
 * exact fp32 kernels of ssm.cu / ssm_backward.cu stay the path of fp32 execs.
 * Same contracts (ssm.h), same work layout: the backward reads the chunk states
 * and decays the forward saved, whichever form ran it.
 *
 * Per chunk c of Lc ≤ Q rows and head h (g its group), with cs_i = Σ_{k≤i} dA_k
 * inside the chunk, din_i = e^{cs_i}, dout_i = e^{cs_last − cs_i},
 * L_ij = e^{cs_i − cs_j} (j ≤ i, else 0), S = the state entering the chunk [P,N]:
 *
 *   forward   CB = C·Bᵀ           M = CB∘L            y = M·X
 *             S_c = (dout∘X)ᵀ·B   (then the state pass: S_in[c+1] = a_c·S_in[c] + S_c)
 *             y += (din∘C)·Sᵀ
 *   backward  CB = C·Bᵀ, Gm = dy·Xᵀ;  M = CB∘L, W = Gm∘L, w = Gm∘CB∘L
 *             dX = Mᵀ·dy          dC = W·B + T1       dB = Wᵀ·C + T2
 *             T1 = (din∘dy)·S     E_loc = (din∘dy)ᵀ·C   (the adjoint pass: E[c])
 *             dX += (dout∘B)·Eᵀ   T2 = (dout∘X)·E
 *             ddA_k = Σ_{i≥k, j<k} w_ij + Σ_{i≥k} C_i·T1_i + Σ_{i<k} B_i·T2_i + da_c
 *   where the first term is Σ_{j<k} (colsum_j − rowsum_j) of w (w is lower
 *   triangular: the rows above k hold exactly the columns before k).
 *
 * Every product is one GEMM shape over the batch b = c·H + h (the last chunk,
 * when shorter, a second call); operands are addressed through pointer tables
 * built on the device (k_tc_ptrs), so the whole scan is a few launches with no
 * host synchronisation (a CUDA graph can record it). Row-major operands are
 * passed to column-major cuBLAS transposed (C = A·B ⇔ Cᵀ = Bᵀ·Aᵀ). Scratch is
 * stream-ordered: two Q×Q matrices per (chunk, head), the scaled rows, the
 * adjoint states E. The form needs P and N multiples of 4, Q ≤ 1024 and
 * 16-byte-aligned tensors and work (tc_usable); otherwise the fp32 form runs.
 * Results are deterministic (fixed-order sums, no atomics); TF32 products make
 * them agree with the fp32 form to about 1e-3 relative (tests state the bound).
 */
#include "kernels/cuda/ssm_chunk.cuh"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// pointer tables

// one operand over the batch: base + c·cs + hh·hs, hh = h (or its group h / hpg)
struct tc_opnd {
    const float *base;
    long long    cs, hs;
    int          grouped;
};
#define TC_MAXOP 27 // 9 GEMMs × (A, B, C)
struct tc_tab {
    tc_opnd o[TC_MAXOP];
    int     nop, H, hpg, nc;
};

// ptr[k·nb + b] for operand k and b = c·H + h (nb = nc·H)
__global__ void k_tc_ptrs(tc_tab t, const float **ptr) {
    size_t nb = (size_t)t.nc * t.H, n = nb * t.nop;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int            k = (int)(i / nb);
        size_t         b = i % nb;
        long long      c = (long long)(b / t.H), h = (long long)(b % t.H);
        const tc_opnd *o = &t.o[k];
        ptr[i] = o->base + c * o->cs + (o->grouped ? h / t.hpg : h) * o->hs;
    }
}

// With fast (TF32) math, cuBLAS's batched GEMMs assume every matrix pointer
// 16-byte aligned (it cannot look into the device's pointer tables): so every
// operand base, stride and leading dim here is a multiple of 4 floats
// (tc_usable checks the caller's; the Q×Q matrices are padded to it).
__host__ __device__ static inline int tc_ld(int Lc) { return (Lc + 3) & ~3; }
__host__ __device__ static inline size_t tc_qq(int Q) { return (size_t)tc_ld(Q) * tc_ld(Q); }

// A batched GEMM in row-major terms, per batch entry: C (m×n, ldc) = op(A)·op(B) +
// beta·C, op(A) m×k (A stored k×m when ta), op(B) k×n (B stored n×k when tb).
// Dimensions or leading dims given as TC_L take the chunk's length Lc.
#define TC_L  (-1)
#define TC_LD (-2) // the leading dim of a chunk's Q×Q matrix: Lc rounded up to 4 (tc_ld)

// the scan's shape; Q clamped to T (one chunk), nc = ceil(T/Q)
struct tc_dims {
    int T, H, P, N, G, Q, nc;
};
static tc_dims tc_dims_of(int T, int H, int P, int N, int G, int Q) {
    Q = Q > T ? T : Q;
    return {T, H, P, N, G, Q, (T + Q - 1) / Q};
}

// the GEMMs' handle and pointer tables (tc_tables: nc·H entries per operand)
struct tc_run {
    cublasHandle_t hd;
    const float  **ptr;
    tc_dims        d;
};

static void tc_gemm(const tc_run *r, int g, int ta, int tb, int m, int n, int k, int lda,
                    int ldb, float beta, int ldc) {
    const float  one = 1.0f;
    const size_t nbt = (size_t)r->d.nc * r->d.H; // entries per operand table
    int          H = r->d.H, nfull = r->d.T / r->d.Q, tail = r->d.T - nfull * r->d.Q;
    for (int part = 0; part < 2; part++) {
        int    Lc = part ? tail : r->d.Q, nch = part ? (tail ? 1 : 0) : nfull;
        size_t b0 = part ? (size_t)nfull * H : 0, cnt = (size_t)nch * H;
#define TCD(x) ((x) == TC_L ? Lc : (x) == TC_LD ? tc_ld(Lc) : (x))
        for (size_t s = 0; s < cnt; s += 65535) { // batch count per call
            int          nb = (int)(cnt - s < 65535 ? cnt - s : 65535);
            const void **A = (const void **)(r->ptr + (3 * g + 0) * nbt + b0 + s);
            const void **B = (const void **)(r->ptr + (3 * g + 1) * nbt + b0 + s);
            void       **C = (void **)(r->ptr + (3 * g + 2) * nbt + b0 + s);
            CUBLAS(cublasGemmBatchedEx(r->hd, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                       ta ? CUBLAS_OP_T : CUBLAS_OP_N, TCD(n), TCD(m), TCD(k),
                                       &one, B, CUDA_R_32F, TCD(ldb), A, CUDA_R_32F, TCD(lda),
                                       &beta, C, CUDA_R_32F, TCD(ldc), nb,
                                       CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
        }
#undef TCD
    }
}

// operand layouts: rows of [T,H,P]-like tensors (X, dy, y, dX and the scaled copies), of
// [T,G,N] (B, C), of [T,H,N] (per-head B/C-shaped), states [nc,H,P,N], Q×Q matrices
static tc_opnd op_xp(const tc_dims &d, const float *p) {
    return {p, (long long)d.Q * d.H * d.P, d.P, 0};
}
static tc_opnd op_bn(const tc_dims &d, const float *p) {
    return {p, (long long)d.Q * d.G * d.N, d.N, 1};
}
static tc_opnd op_hn(const tc_dims &d, const float *p) {
    return {p, (long long)d.Q * d.H * d.N, d.N, 0};
}
static tc_opnd op_st(const tc_dims &d, const float *p) {
    return {p, (long long)d.H * d.P * d.N, (long long)d.P * d.N, 0};
}
static tc_opnd op_qq(const tc_dims &d, const float *p) {
    return {p, (long long)d.H * (long long)tc_qq(d.Q), (long long)tc_qq(d.Q), 0};
}

// the tables of n GEMMs (ops: 3 operands each) into new scratch; NULL on failure
static const float **tc_tables(const molt_exec *ex, const tc_dims &d, const tc_opnd *ops, int n) {
    tc_tab t;
    memset(&t, 0, sizeof t);
    t.nop = 3 * n, t.H = d.H, t.hpg = d.H / d.G, t.nc = d.nc;
    for (int k = 0; k < t.nop; k++)
        t.o[k] = ops[k];
    size_t        cnt = (size_t)d.nc * d.H * t.nop;
    const float **p = (const float **)cu_scratch(ex, sizeof(float *) * cnt);
    if (p) {
        k_tc_ptrs<<<cu_blocks(cnt, 256), 256, 0, cu_stream(ex)>>>(t, p);
        CU_LAUNCHED("k_tc_ptrs");
    }
    return p;
}

// ----------------------------------------------------------------------------
// elementwise kernels

// up to three row scalings in one launch (grid.y = the job):
// out[t,h,:] = s[h,t]·in[t,h/hpg,:]  (out [T,H,K], in [T,H/hpg,K]; K % 4 == 0, aligned)
struct tc_scale_job {
    float       *out;
    const float *in, *s;
    int          K, hpg;
};
struct tc_scale {
    tc_scale_job j[3];
    int          T, H;
};

__global__ void k_tc_scale(tc_scale a) {
    const tc_scale_job &jb = a.j[blockIdx.y];
    int                 K4 = jb.K / 4, Hin = a.H / jb.hpg;
    size_t              n = (size_t)a.T * a.H * K4;
    const float4       *in = (const float4 *)jb.in;
    float4             *out = (float4 *)jb.out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / ((size_t)a.H * K4);
        int    h = (int)(i / K4 % a.H), k = (int)(i % K4);
        float  sc = jb.s[(size_t)h * a.T + t];
        float4 v = in[(t * Hin + h / jb.hpg) * K4 + k];
        out[i] = make_float4(sc * v.x, sc * v.y, sc * v.z, sc * v.w);
    }
}

static void tc_scale_rows(const molt_exec *ex, const tc_scale &a, int njobs) {
    size_t most = 0;
    for (int k = 0; k < njobs; k++) {
        size_t n = (size_t)a.T * a.H * (a.j[k].K / 4);
        most = n > most ? n : most;
    }
    unsigned bx = cu_blocks(most, 256);
    k_tc_scale<<<dim3(bx < 4096 ? bx : 4096, (unsigned)njobs), 256, 0, cu_stream(ex)>>>(a);
    CU_LAUNCHED("k_tc_scale");
}

// In-place inclusive prefix sums of a[0, n) in shared memory by warp 0, 32 at a
// time (a fixed shuffle tree: deterministic); every thread calls it, and it
// ends with a barrier.
__device__ __forceinline__ void tc_scan(float *a, int n) {
    if (threadIdx.x < 32) {
        int   lane = threadIdx.x;
        float carry = 0.0f;
        for (int b = 0; b < n; b += 32) {
            int   i = b + lane;
            float v = i < n ? a[i] : 0.0f;
            for (int o = 1; o < 32; o <<= 1) {
                float u = __shfl_up_sync(0xffffffffu, v, o);
                if (lane >= o)
                    v += u;
            }
            v += carry;
            if (i < n)
                a[i] = v;
            carry = __shfl_sync(0xffffffffu, v, 31);
        }
    }
    __syncthreads();
}

// the chunk's cs_i = Σ_{k≤i} dA_k into shared memory
__device__ __forceinline__ void tc_cumsum(float *cs, const float *dA, int t0, int Lc, int H,
                                          int h) {
    for (int i = threadIdx.x; i < Lc; i += blockDim.x)
        cs[i] = dA[(size_t)(t0 + i) * H + h];
    __syncthreads();
    tc_scan(cs, Lc);
}

__device__ __forceinline__ float tc_L(const float *cs, int i, int j) {
    return j <= i ? cu_decay(cs[i] - cs[j]) : 0.0f;
}

// forward, one block per (chunk, head): din_i = e^{cs_i}, dout_i = e^{cs_last − cs_i}
// (into work), M = CB∘L in place (zero above the diagonal, ld tc_ld(Lc))
__global__ void k_tc_mask(float *M, float *din, float *dout, const float *dA, int T, int H,
                          int Q) {
    extern __shared__ float cs[];
    int c = blockIdx.x, h = blockIdx.y, t0 = c * Q, Lc = min(Q, T - t0), ld = tc_ld(Lc);
    tc_cumsum(cs, dA, t0, Lc, H, h);
    for (int i = threadIdx.x; i < Lc; i += blockDim.x) {
        din[(size_t)h * T + t0 + i] = cu_decay(cs[i]);
        dout[(size_t)h * T + t0 + i] = cu_decay(cs[Lc - 1] - cs[i]);
    }
    float *m = M + ((size_t)c * H + h) * tc_qq(Q);
    for (int e = threadIdx.x; e < Lc * Lc; e += blockDim.x) {
        int i = e / Lc, j = e % Lc;
        m[(size_t)i * ld + j] *= tc_L(cs, i, j);
    }
}

// backward, one block per (chunk, head), warps over rows: M = CB∘L (in s1),
// W = Gm∘L (in s2), and ddA_k = Σ_{j<k} (colsum_j − rowsum_j) of w = Gm∘CB∘L (=).
// Shared: cs [Q], rowsum [Q], colsum [nw][Q] (one row per warp, then summed in
// warp order): fixed-order sums throughout.
__global__ void k_tc_bwd_mats(float *s1, float *s2, float *ddA, const float *dA, int T, int H,
                              int Q) {
    extern __shared__ float sm[];
    int    c = blockIdx.x, h = blockIdx.y, t0 = c * Q, Lc = min(Q, T - t0), ld = tc_ld(Lc);
    int    lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float *cs = sm, *rs = cs + Q, *col = rs + Q;
    for (int e = threadIdx.x; e < nw * Q; e += blockDim.x)
        col[e] = 0.0f;
    tc_cumsum(cs, dA, t0, Lc, H, h); // (its barriers also order the zeroing)
    size_t off = ((size_t)c * H + h) * tc_qq(Q);
    float *CB = s1 + off, *Gm = s2 + off, *cw = col + (size_t)w * Q;
    for (int i = w; i < Lc; i += nw) {
        float r = 0.0f;
        for (int j = lane; j < Lc; j += 32) {
            size_t e = (size_t)i * ld + j;
            float  L = tc_L(cs, i, j), cb = CB[e], gm = Gm[e], m = cb * L;
            float  wv = gm * m;
            CB[e] = m;
            Gm[e] = gm * L;
            r += wv;
            cw[j] += wv;
        }
        for (int o = 16; o > 0; o >>= 1)
            r += __shfl_xor_sync(0xffffffffu, r, o);
        if (lane == 0)
            rs[i] = r;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < Lc; j += blockDim.x) { // colsum_j − rowsum_j into rs
        float s = 0.0f;
        for (int k = 0; k < nw; k++)
            s += col[(size_t)k * Q + j];
        rs[j] = s - rs[j];
    }
    __syncthreads();
    tc_scan(rs, Lc);
    for (int k = threadIdx.x; k < Lc; k += blockDim.x)
        ddA[(size_t)(t0 + k) * H + h] = k ? rs[k - 1] : 0.0f;
}

// backward, one block per (chunk, head): dCh += T1, dBh += T2; r_i = C_i·T1_i,
// q_i = B_i·T2_i (a warp per row, a fixed shuffle tree); ddA_k += Σ_{i≥k} r_i +
// Σ_{i<k} q_i + da_c (prefix sums by tc_scan; the suffix as total − prefix)
__global__ void k_tc_bwd_fin(float *dBh, float *dCh, float *ddA, const float *T1,
                             const float *T2, const float *B, const float *C, const float *da,
                             int T, int H, int N, int G, int Q, int nc) {
    extern __shared__ float sm[];
    int    c = blockIdx.x, h = blockIdx.y, t0 = c * Q, Lc = min(Q, T - t0), g = h / (H / G);
    int    lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float *r = sm, *q = r + Q;
    for (int i = w; i < Lc; i += nw) {
        size_t       o = ((size_t)(t0 + i) * H + h) * N, ob = ((size_t)(t0 + i) * G + g) * N;
        float        rv = 0.0f, qv = 0.0f;
        for (int n = lane; n < N; n += 32) {
            float t1 = T1[o + n], t2 = T2[o + n];
            rv += C[ob + n] * t1;
            qv += B[ob + n] * t2;
            dCh[o + n] += t1;
            dBh[o + n] += t2;
        }
        for (int k = 16; k > 0; k >>= 1) {
            rv += __shfl_xor_sync(0xffffffffu, rv, k);
            qv += __shfl_xor_sync(0xffffffffu, qv, k);
        }
        if (lane == 0)
            r[i] = rv, q[i] = qv;
    }
    __syncthreads();
    tc_scan(r, Lc);
    tc_scan(q, Lc);
    float d = da[(size_t)h * nc + c];
    for (int k = threadIdx.x; k < Lc; k += blockDim.x) {
        float before_r = k ? r[k - 1] : 0.0f, before_q = k ? q[k - 1] : 0.0f;
        ddA[(size_t)(t0 + k) * H + h] += (r[Lc - 1] - before_r) + before_q + d;
    }
}

// ----------------------------------------------------------------------------

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// the form applies: asked for, and every operand as tc_ld's note requires
static bool tc_usable(const molt_exec *ex, int P, int N, int Q, const void *const *ptrs, int n) {
    static int env = -1; // MOLT_SSD_TC=0: off (the exact fp32 kernels under every exec)
    if (env < 0) {
        const char *e = getenv("MOLT_SSD_TC");
        env = !(e && !strcmp(e, "0"));
    }
    if (!env || !(ex->flags & (MOLT_EXEC_TF32 | MOLT_EXEC_BF16)) || Q < 1 || Q > 1024 ||
        P % 4 || N % 4)
        return false;
    for (int k = 0; k < n; k++)
        if (!al16(ptrs[k]))
            return false;
    return true;
}

bool cu_ssd_tc_forward(const molt_exec *ex, float *y, float *state, const float *X,
                       const float *dA, const float *B, const float *C, int T, int H, int P,
                       int N, int G, int Q, float *work) {
    const void *ptrs[] = {y, X, B, C, work};
    if (!tc_usable(ex, P, N, Q, ptrs, 5))
        return false;
    tc_dims d = tc_dims_of(T, H, P, N, G, Q);
    Q = d.Q;
    size_t  PN = (size_t)P * N, HT = (size_t)H * T;
    float  *st = work, *vbuf = work + (size_t)d.nc * H * PN, *din = vbuf + H * PN,
          *dout = din + HT;
    size_t  nqq = (size_t)d.nc * H * tc_qq(Q), nxp = HT * P, nhn = HT * N;
    float  *s1 = (float *)cu_scratch(ex, sizeof(float) * (nqq + nxp + nhn));
    if (!s1)
        return true; // recorded
    float        *Xd = s1 + nqq, *Cd = Xd + nxp;
    const tc_opnd ops[] = {
        op_bn(d, C),  op_bn(d, B),  op_qq(d, s1), // 0: CB = C·Bᵀ
        op_qq(d, s1), op_xp(d, X),  op_xp(d, y),  // 1: y = M·X
        op_xp(d, Xd), op_bn(d, B),  op_st(d, st), // 2: S_c = Xdᵀ·B
        op_hn(d, Cd), op_st(d, st), op_xp(d, y),  // 3: y += Cd·S_inᵀ
    };
    const float **ptr = tc_tables(ex, d, ops, 4);
    cublasHandle_t hd = ptr ? cu_blas_lock(ex) : NULL;
    if (hd) {
        tc_run r = {hd, ptr, d};
        int    GN = G * N, HP = H * P, HN = H * N;
        tc_gemm(&r, 0, 0, 1, TC_L, TC_L, N, GN, GN, 0.0f, TC_LD);
        k_tc_mask<<<dim3((unsigned)d.nc, (unsigned)H), 256, sizeof(float) * Q, cu_stream(ex)>>>(
            s1, din, dout, dA, T, H, Q);
        CU_LAUNCHED("k_tc_mask");
        tc_scale sc = {{{Xd, X, dout, P, 1}, {Cd, C, din, N, H / G}}, T, H};
        tc_scale_rows(ex, sc, 2);
        tc_gemm(&r, 1, 0, 0, TC_L, P, TC_L, TC_LD, HP, 0.0f, HP);
        tc_gemm(&r, 2, 1, 0, P, N, TC_L, HP, GN, 0.0f, N);
        cu_ssd_state_pass(ex, st, state, vbuf, din, T, H, P, N, Q, d.nc);
        tc_gemm(&r, 3, 0, 1, TC_L, P, N, HN, N, 1.0f, HP);
        cu_blas_unlock();
    }
    cu_scratch_free(ex, (void *)ptr);
    cu_scratch_free(ex, s1);
    return true;
}

bool cu_ssd_tc_backward(const molt_exec *ex, float *dX, float *ddA, float *dB, float *dC,
                        const float *dy, const float *X, const float *dA, const float *B,
                        const float *C, int T, int H, int P, int N, int G, int Q, float *work) {
    const void *ptrs[] = {dX, dB, dC, dy, X, B, C, work};
    if (!tc_usable(ex, P, N, Q, ptrs, 8))
        return false;
    tc_dims d = tc_dims_of(T, H, P, N, G, Q);
    Q = d.Q;
    size_t  PN = (size_t)P * N, HT = (size_t)H * T;
    // the forward's saved part (ssm_chunk.cuh); of the backward's part only da is
    // used: E and the per-head dB, dC are GEMM operands, in aligned scratch
    const float *st = work, *din = work + ((size_t)d.nc + 1) * H * PN, *dout = din + HT;
    float       *da = work + ssd_chunked_work(T, H, P, N, G, Q) + (size_t)d.nc * H * PN + H * PN;
    size_t       nqq = (size_t)d.nc * H * tc_qq(Q), nxp = HT * P, nhn = HT * N;
    size_t       nE = (size_t)d.nc * H * PN, nbc = H == G ? 0 : 2 * nhn;
    float *s1 = (float *)cu_scratch(ex, sizeof(float) * (2 * nqq + 2 * nxp + 3 * nhn + nE + nbc));
    if (!s1)
        return true; // recorded
    float *s2 = s1 + nqq, *dyd = s2 + nqq, *Xd = dyd + nxp, *Bd = Xd + nxp, *T1 = Bd + nhn,
          *T2 = T1 + nhn, *E = T2 + nhn;
    float *dBh = H == G ? dB : E + nE, *dCh = H == G ? dC : dBh + nhn;
    const tc_opnd ops[] = {
        op_bn(d, C),   op_bn(d, B),  op_qq(d, s1),  // 0: CB = C·Bᵀ
        op_xp(d, dy),  op_xp(d, X),  op_qq(d, s2),  // 1: Gm = dy·Xᵀ
        op_qq(d, s1),  op_xp(d, dy), op_xp(d, dX),  // 2: dX = Mᵀ·dy
        op_qq(d, s2),  op_bn(d, B),  op_hn(d, dCh), // 3: dC = W·B
        op_qq(d, s2),  op_bn(d, C),  op_hn(d, dBh), // 4: dB = Wᵀ·C
        op_xp(d, dyd), op_st(d, st), op_hn(d, T1),  // 5: T1 = dyd·S_in
        op_xp(d, dyd), op_bn(d, C),  op_st(d, E),   // 6: E_loc = dydᵀ·C
        op_hn(d, Bd),  op_st(d, E),  op_xp(d, dX),  // 7: dX += Bd·Eᵀ
        op_xp(d, Xd),  op_st(d, E),  op_hn(d, T2),  // 8: T2 = Xd·E
    };
    const float **ptr = tc_tables(ex, d, ops, 9);
    tc_scale      sc = {{{dyd, dy, din, P, 1}, {Xd, X, dout, P, 1}, {Bd, B, dout, N, H / G}},
                        T, H};
    tc_scale_rows(ex, sc, 3);
    cublasHandle_t hd = ptr ? cu_blas_lock(ex) : NULL;
    if (hd) {
        tc_run r = {hd, ptr, d};
        int    GN = G * N, HP = H * P, HN = H * N;
        dim3   grid((unsigned)d.nc, (unsigned)H);
        tc_gemm(&r, 0, 0, 1, TC_L, TC_L, N, GN, GN, 0.0f, TC_LD);
        tc_gemm(&r, 1, 0, 1, TC_L, TC_L, P, HP, HP, 0.0f, TC_LD);
        k_tc_bwd_mats<<<grid, 256, sizeof(float) * (size_t)Q * (2 + 8), cu_stream(ex)>>>(
            s1, s2, ddA, dA, T, H, Q);
        CU_LAUNCHED("k_tc_bwd_mats");
        tc_gemm(&r, 2, 1, 0, TC_L, P, TC_L, TC_LD, HP, 0.0f, HP);
        tc_gemm(&r, 3, 0, 0, TC_L, N, TC_L, TC_LD, GN, 0.0f, HN);
        tc_gemm(&r, 4, 1, 0, TC_L, N, TC_L, TC_LD, GN, 0.0f, HN);
        tc_gemm(&r, 5, 0, 0, TC_L, N, P, HP, N, 0.0f, HN);
        tc_gemm(&r, 6, 1, 0, P, N, TC_L, HP, GN, 0.0f, N);
        cu_ssd_adjoint_pass(ex, E, da, st, din, T, H, P, N, Q, d.nc);
        tc_gemm(&r, 7, 0, 1, TC_L, P, N, HN, N, 1.0f, HP);
        tc_gemm(&r, 8, 0, 0, TC_L, N, P, HP, N, 0.0f, HN);
        cu_blas_unlock();
        k_tc_bwd_fin<<<grid, 256, sizeof(float) * 2 * (size_t)Q, cu_stream(ex)>>>(
            dBh, dCh, ddA, T1, T2, B, C, da, T, H, N, G, Q, d.nc);
        CU_LAUNCHED("k_tc_bwd_fin");
    }
    if (hd && H != G)
        cu_ssd_group_sum(ex, dB, dC, dBh, dCh, T, H, N, G);
    cu_scratch_free(ex, (void *)ptr);
    cu_scratch_free(ex, s1);
    return true;
}
