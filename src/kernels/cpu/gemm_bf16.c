/*
 * gemm_bf16.c — y = x · Wᵀ (y += with add) for bf16 weights with the activations rounded to
 * bf16: the CPU side of `--matmul bf16` (molt_ctx_set_matmul) for prefill-size products,
 * T > K_MATVEC_T, the precision llama.cpp's bf16 models run at.
 *
 *   y[t, o] = (add ? y[t, o] : 0) + Σ_k bf16(x[t, k]) · W[o, k]
 *
 * x is rounded to bf16 to nearest even (vcvtne2ps2bf16), every product of two bf16 is exact in
 * fp32 and the sums are fp32: AVX-512 BF16's vdpbf16ps, 32 products an instruction, twice the
 * fp32 FMA rate. Each element is one tile's 16 lane sums over k ≡ 2l, 2l+1 (mod 32), in k
 * order, then one horizontal sum; the tiles are fixed by the shape (4 rows of x × 4 rows of W,
 * x in chunks of GB_TC rows), so the result does not depend on the thread count. It is not
 * bit-identical to the fp32 path (the activations lose 16 bits): the test bounds it against
 * a double-precision sum of the same rounded operands (tests/test_kernels.c).
 *
 * Shapes: x [T, in], W [out, in] bf16, y [T, out]. in must be even (bf16 pairs); T ≥ 1.
 * Available where the CPU has AVX512-BF16 and the OS saves the ZMM state; else (and for odd
 * in) cpu_matmul_w keeps the fp32 path.
 */
#include "kernels/cpu/cpu.h"

#include "core/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define GB_T   __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define GB_TC  128 // rows of x a chunk: 128 × in bf16 stays in L2 for in ≤ 2048
#define GB_MR  4   // rows of x a tile
#define GB_NR  4   // rows of W a tile (one unit of the thread split)
#define GB_UNIT 16 // rows of W a thread's unit (4 tiles: the split is fixed by the shape)

static int             g_avail = -1;
static pthread_once_t  g_once = PTHREAD_ONCE_INIT;
static void            detect(void) {
    unsigned a, b, c, d;
    g_avail = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) // OSXSAVE
        return;
    if ((cpu_xgetbv0() & 0xE6) != 0xE6) // XMM, YMM and ZMM state saved by the OS
        return;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16)) || !(b & (1u << 30)))
        return; // AVX-512F, AVX-512BW
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5)))
        return; // AVX512_BF16
    const char *e = getenv("MOLT_GEMM_BF16");
    g_avail = !(e && !strcmp(e, "off"));
}

int cpu_gemm_bf16_available(void) {
    pthread_once(&g_once, detect);
    return g_avail;
}

// the first n of 16 lanes (none for n ≤ 0, all for n ≥ 16)
static inline __mmask16 gb_mask16(int n) {
    return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

// x rows [t0, t0 + n) → bf16, each row padded with zeros to ld (a multiple of 32)
GB_T static void pack_x(uint16_t *xb, int ld, const float *x, int n, int in) {
    for (int t = 0; t < n; t++) {
        const float *r = x + (size_t)t * in;
        uint16_t    *o = xb + (size_t)t * ld;
        for (int k = 0; k < ld; k += 32) {
            __m512    lo = _mm512_maskz_loadu_ps(gb_mask16(in - k), r + k);
            __m512    hi = _mm512_maskz_loadu_ps(gb_mask16(in - k - 16), r + k + 16);
            __m512bh  v = _mm512_cvtne2ps_pbh(hi, lo); // lo → elements 0..15
            _mm512_storeu_si512((void *)(o + k), (__m512i)v);
        }
    }
}

typedef struct gb_job {
    float          *y;
    const uint16_t *xb, *W;
    int             n, ld, in, out, add; // n rows of x in this chunk (y, xb at the chunk)
} gb_job;

// one tile: rows [t0, t0 + mr) of the chunk × W rows [o0, o0 + nr), mr, nr ≤ 4
GB_T static inline __attribute__((always_inline)) void
gb_tile(const gb_job *j, int t0, int o0, const int mr, const int nr) {
    __m512 acc[GB_MR][GB_NR];
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < nr; c++)
            acc[i][c] = _mm512_setzero_ps();
    int             in = j->in, kfull = in & ~31;
    const uint16_t *xr = j->xb + (size_t)t0 * j->ld, *wr = j->W + (size_t)o0 * in;
    for (int k = 0; k < kfull; k += 32) {
        __m512bh xv[GB_MR];
        for (int i = 0; i < mr; i++)
            xv[i] = (__m512bh)_mm512_loadu_si512((const void *)(xr + (size_t)i * j->ld + k));
        for (int c = 0; c < nr; c++) {
            __m512bh w = (__m512bh)_mm512_loadu_si512((const void *)(wr + (size_t)c * in + k));
            for (int i = 0; i < mr; i++)
                acc[i][c] = _mm512_dpbf16_ps(acc[i][c], xv[i], w);
        }
    }
    if (kfull < in) { // the tail: W masked (its row ends there), x zero-padded
        __mmask32 m = (__mmask32)((1ull << (in - kfull)) - 1u);
        __m512bh  xv[GB_MR];
        for (int i = 0; i < mr; i++)
            xv[i] = (__m512bh)_mm512_loadu_si512((const void *)(xr + (size_t)i * j->ld + kfull));
        for (int c = 0; c < nr; c++) {
            __m512bh w = (__m512bh)_mm512_maskz_loadu_epi16(m, wr + (size_t)c * in + kfull);
            for (int i = 0; i < mr; i++)
                acc[i][c] = _mm512_dpbf16_ps(acc[i][c], xv[i], w);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < nr; c++) {
            float *d = j->y + (size_t)(t0 + i) * j->out + o0 + c;
            float  s = _mm512_reduce_add_ps(acc[i][c]);
            *d = j->add ? *d + s : s;
        }
}

GB_T static void gb_rows(const gb_job *j, int o0, int o1) {
    for (int o = o0; o < o1; o += GB_NR) {
        int nr = o1 - o < GB_NR ? o1 - o : GB_NR, t = 0;
        if (nr == GB_NR)
            for (; t + GB_MR <= j->n; t += GB_MR)
                gb_tile(j, t, o, GB_MR, GB_NR);
        for (; t < j->n; t += GB_MR) { // edges: the same tile code on fewer rows
            int mr = j->n - t < GB_MR ? j->n - t : GB_MR;
            gb_tile(j, t, o, mr, nr);
        }
    }
}

static void gb_run(void *arg, int ith, int nth) {
    const gb_job *j = arg;
    int           units = (j->out + GB_UNIT - 1) / GB_UNIT, lo, hi;
    molt_pool_range(units, ith, nth, &lo, &hi);
    int o0 = lo * GB_UNIT, o1 = hi * GB_UNIT < j->out ? hi * GB_UNIT : j->out;
    if (o0 < o1)
        gb_rows(j, o0, o1);
}

int cpu_gemm_bf16(const molt_exec *ex, float *y, const float *x, const uint16_t *W, int T, int in,
                  int out, int add) {
    if (!cpu_gemm_bf16_available() || (in & 1) || in <= 0)
        return 0;
    int       ld = (in + 31) & ~31, tc = T < GB_TC ? T : GB_TC;
    uint16_t *xb = malloc(sizeof(uint16_t) * (size_t)ld * (size_t)tc);
    if (!xb)
        return 0; // the caller's fp32 path instead
    int units = (out + GB_UNIT - 1) / GB_UNIT;
    int nth = ex->nth < units ? ex->nth : units;
    for (int t0 = 0; t0 < T; t0 += GB_TC) {
        int n = T - t0 < GB_TC ? T - t0 : GB_TC;
        pack_x(xb, ld, x + (size_t)t0 * in, n, in);
        gb_job j = {y + (size_t)t0 * out, xb, W, n, ld, in, out, add};
        if (nth <= 1)
            gb_run(&j, 0, 1);
        else
            molt_pool_run(nth, gb_run, &j);
    }
    free(xb);
    return 1;
}

#else
int cpu_gemm_bf16_available(void) {
    return 0;
}
int cpu_gemm_bf16(const molt_exec *ex, float *y, const float *x, const uint16_t *W, int T, int in,
                  int out, int add) {
    (void)ex, (void)y, (void)x, (void)W, (void)T, (void)in, (void)out, (void)add;
    return 0;
}
#endif
