/*
 * ssm_decode.cu — the fused decode step of an SSM mixer whose B/C heads are
 * its heads (ssm_rows.h: ssm_decode_rows; Llamba's G == H): one block per
 * (row, head) runs the whole step of that head from the in_proj output —
 * the causal conv of its P + 2N channels and their history, the prep, the
 * SSD step over its [P, N] state, the D skip and the gate (Mamba-2: the
 * RMSNorm of its group, which is the head) — with the intermediates in
 * shared memory. At batch 1 this replaces five launches a layer (the xBC
 * copy, conv, prep, step and gate) with one; the HBM traffic is the state's
 * read and write, as before.
 *
 * Same bits as the stage ops one by one (ssm.cu, ssm_rows.cu): the conv, the
 * activations and the warp's SSD rows are the shared device code of
 * ssm_step.cuh, the prep and gate the same expressions, the gate's Σg² the
 * same block sum over the same per-thread terms (ROW_THREADS threads, as
 * k_ssm_gate, so each thread holds the same columns). A head whose
 * intermediates would not fit in shared memory runs the stage ops on work
 * (kernels/ssm_decode.c: ssm_decode_rows_stages).
 * The state in f32 or bf16 (ssm_decode_args.state_bf16: ssm_step.cuh's
 * loads, products and rounding, as ssd_step_rows_bf16).
 */
#include "kernels/cuda/ssm_step.cuh"

extern "C" {
#include "kernels/ssm_rows.h"
}

#define DEC_THREADS 256 // = ssm_rows.cu's ROW_THREADS (the gate's block sum)

// Shared: x [P] | X [P] | ys [P] | B [N] | C [N] floats (dynamic), the SSD
// warps' tiles and the block sum's partials (static).
static size_t dec_smem(int P, int N) { return sizeof(float) * (3 * (size_t)P + 2 * (size_t)N); }
#define DEC_STATIC (sizeof(float) * SSD_WARPS * 32 * 33 + sizeof(double) * 32 + sizeof(float))

template <typename S> // the state: float, or uint16_t (bf16)
__global__ void k_ssm_decode(float *y, const float *zx, ssm_decode_args a, ssm_rows_cfg c,
                             cu_rowtab t) {
    extern __shared__ float sm[];
    __shared__ float  tile[SSD_WARPS][32][33];
    __shared__ double sh[32];
    __shared__ float  dA;
    int          r = blockIdx.x / c.H, h = blockIdx.x % c.H;
    int          P = c.P, N = c.N, Di = c.H * P, GN = c.G * N, Cc = Di + 2 * GN;
    const float *zr = zx + (size_t)r * a.ldz, *xr = zr + a.o_xbc, *dt = zr + a.o_dt;
    float       *cs = t.a[r];
    S           *ss = (S *)(void *)t.b[r];
    float       *xs = sm, *Xs = xs + P, *ys = Xs + P, *Bs = ys + P, *Cs = Bs + N;
    float        d = 0.0f; // Δ of head h (Mamba-2): every thread computes the same value
    if (c.mamba) {
        d = r_softplus(dt[h] + (a.dt_bias ? a.dt_bias[h] : 0.0f));
        d = d < c.dt_lo ? c.dt_lo : d;
        d = d > c.dt_hi ? c.dt_hi : d;
    }
    // conv + prep: head h's x channels, then its B and C channels
    for (int i = threadIdx.x; i < P + 2 * N; i += blockDim.x) {
        int ch = i < P ? h * P + i : i < P + N ? Di + h * N + (i - P) : Di + GN + h * N + (i - P - N);
        float v = conv_out(xr, a.conv_w, a.conv_b, cs, 0, ch, Cc, a.K);
        if (cs && a.K > 1)
            conv_hist(cs, xr, 1, Cc, a.K, (size_t)ch);
        float act = c.mamba ? r_silu(v) : v;
        if (i < P) {
            xs[i] = act;
            Xs[i] = c.mamba ? __fmul_rn(r_silu(v), d) : act;
        } else if (i < P + N) {
            Bs[i - P] = act;
        } else {
            Cs[i - P - N] = act;
        }
    }
    if (threadIdx.x == 0)
        dA = c.mamba ? __fmul_rn(d, -expf(a.A_log[h])) : -r_softplus(dt[h]);
    __syncthreads();
    // the SSD step of head h's P rows (a one-head view: H = G = 1)
    int w = threadIdx.x >> 5;
    if (w < SSD_WARPS)
        for (int k = w; k * 32 < P; k += SSD_WARPS)
            ssd_warp(ys, ss + (size_t)h * P * N, Xs, &dA, Bs, Cs, (size_t)k * 32, 1, P, N, 1,
                     tile[w]);
    __syncthreads();
    // D skip and gate (k_ssm_gate's expressions)
    float       *yr = y + (size_t)r * Di + (size_t)h * P;
    const float *z = zr + a.o_z + (size_t)h * P;
    double       sq = 0.0;
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        float v = ys[p];
        if (a.D)
            v = __fadd_rn(v, __fmul_rn(a.D[h], xs[p]));
        float zz = c.mamba ? z[p] : z[p] + (a.z_bias ? a.z_bias[(size_t)h * P + p] : 0.0f);
        float g = __fmul_rn(v, r_silu(zz));
        if (c.mamba) {
            ys[p] = g;
            sq += (double)g * (double)g;
        } else {
            yr[p] = g;
        }
    }
    if (!c.mamba) // uniform over the block
        return;
    float s = (float)cu_block_sum(sq, sh);
    float rs = 1.0f / sqrtf(s / (float)P + c.eps);
    const float *nw = a.norm_w + (size_t)h * P;
    for (int p = threadIdx.x; p < P; p += blockDim.x)
        yr[p] = __fmul_rn(__fmul_rn(ys[p], rs), nw[p]);
}

extern "C" void cuda_ssm_decode_rows(const molt_exec *ex, float *y, const float *zx,
                                     float *const *conv, float *const *ssm, int n,
                                     const ssm_rows_cfg *c, const ssm_decode_args *a,
                                     float *work) {
    if (n <= 0)
        return;
    if (c->G != c->H) {
        CU_FAIL("ssm_decode_rows: needs one B/C head per head (G == H)");
        return;
    }
    size_t sm = dec_smem(c->P, c->N);
    const void *k = a->state_bf16 ? (const void *)k_ssm_decode<uint16_t>
                                  : (const void *)k_ssm_decode<float>;
    if (!cu_smem_fits(k, sm + DEC_STATIC)) { // the stage ops, one by one (ssm_decode.c)
        ssm_decode_rows_stages(ex, y, zx, conv, ssm, n, c, a, work);
        return;
    }
    for (int r0 = 0; r0 < n; r0 += CU_ROWS) { // state pointers by value (common.cuh)
        int       nr = n - r0 < CU_ROWS ? n - r0 : CU_ROWS;
        cu_rowtab t;
        cu_rowtab_fill(&t, conv, ssm, NULL, r0, nr);
        float       *yr = y + (size_t)r0 * c->H * c->P;
        const float *zr = zx + (size_t)r0 * a->ldz;
        unsigned     blocks = (unsigned)(nr * c->H);
        if (a->state_bf16)
            k_ssm_decode<uint16_t><<<blocks, DEC_THREADS, sm, cu_stream(ex)>>>(yr, zr, *a, *c, t);
        else
            k_ssm_decode<float><<<blocks, DEC_THREADS, sm, cu_stream(ex)>>>(yr, zr, *a, *c, t);
        CU_LAUNCHED("k_ssm_decode");
    }
}
