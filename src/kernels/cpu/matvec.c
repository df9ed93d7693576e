/*
 * matvec.c — the fp32 matmul for few rows of x (decode, small-batch decode):
 *
 *   y[t, o] = (add ? y[t, o] : 0) + cpu_dot64(W[o, :], x[t, :])   t < T, o0 ≤ o < o1
 *
 * x [T, in] (row stride in), W [out, in], y [T, ldy]. cpu_dot64 is one
 * fixed order: 64 lane sums, lane l over i ≡ l (mod 64) in order with fused
 * multiply-adds (tail included), folded (a_l + a_l+16) + (a_l+32 + a_l+48),
 * then a 16-lane tree h_l = u_l + u_l+8, q_l = h_l + h_l+4, r_l = q_l + q_l+2,
 * r_0 + r_1 — so the result does not depend on T, on the split of [o0, o1)
 * over threads, or on the path:
 *
 *   MV_SCALAR   cpu_dot64 per element (the twin and the oracle; fmaf, inline
 *               where the CPU has FMA)
 *   MV_AVX512   AVX-512F: at T = 1 each weight row streamed whole and in order
 *               (one sequential read of W, 512-bit loads: the pattern the
 *               hardware prefetchers follow best), four 16-lane FMA chains; at
 *               T > 1 tiles of 4 weight rows, each row against 4 x rows at a
 *               time (the weight loads shared).
 *   MV_AVX2     AVX2 + FMA (CPUs or VMs without AVX-512): eight 8-lane FMA
 *               chains per row, the same 64 lanes and folds; at T > 1 tiles of
 *               4 weight rows, each row against one x row at a time (sixteen
 *               256-bit registers hold one row's chains), the tile's rows
 *               re-read from cache. Without it, batched rows went to OpenBLAS,
 *               whose sums depend on the row count: a slot's decode then
 *               differed from its single-sequence decode.
 *
 * (Until 2026-12-07 the element was k_dotf's 8-lane sum, which needed eight
 * weight rows interleaved to keep the adders busy; the sequential read is
 * ~30% faster at batch-1 decode on the 110M model.)
 *
 * cpu_matvec_half: the same for bf16 / f16 weights (cpu_matmul_w's decode
 * path, 1 ≤ T ≤ K_MATVEC_T): y[t, o] (+)= cpu_dot64(widen(W[o, :]), x[t, :]).
 * W is read in its own type (half the bytes) and widened exactly in registers
 * (bf16: zero-extend and shift left 16; f16: vcvtph2ps, F16C, which
 * cpu_matvec_isa's AVX-512 check includes), then the f32 kernel's operations;
 * the twin widens element by element (cpu_widen_half's arithmetic). (Until
 * 2026-12-07 each element was summed in chunks of K_MATVEC_KC columns of
 * k_dotf sums.) in ≤ 0 leaves y alone.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/q8.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

// x86-64 with GCC's target attributes: the AVX-512 and AVX2 paths compile (each runs only
// where cpu_matvec_isa_ok says the CPU and OS allow it)
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MV_X86 1
#else
#define MV_X86 0
#endif

// AVX2 + F16C as the q8_0 kernels detect them (cpuid and the OS's saved YMM state), and FMA
static bool mv_avx2_ok(void) {
#if MV_X86
    return cpu_q8_isa_available(Q8_AVX2) && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

int cpu_matvec_isa(void) {
    return MV_X86 && cpu_q8_isa_available(Q8_AVX512VNNI) ? MV_AVX512
           : mv_avx2_ok()                                         ? MV_AVX2
                                                                  : MV_SCALAR;
}

bool cpu_matvec_isa_ok(int isa) {
    return isa == MV_SCALAR   ? true
           : isa == MV_AVX512 ? cpu_matvec_isa() == MV_AVX512
                              : isa == MV_AVX2 && mv_avx2_ok();
}

// cpu_dot64's arithmetic (the contract above); fmaf is one rounding either way
#define DOT64_BODY(AI)                                                                             \
    float acc[64] = {0};                                                                           \
    for (int i = 0; i < n; i++)                                                                    \
        acc[i & 63] = fmaf(AI, b[i], acc[i & 63]);                                                 \
    float u[16];                                                                                   \
    for (int l = 0; l < 16; l++)                                                                   \
        u[l] = (acc[l] + acc[16 + l]) + (acc[32 + l] + acc[48 + l]);                               \
    for (int w = 8; w >= 1; w /= 2)                                                                \
        for (int l = 0; l < w; l++)                                                                \
            u[l] = u[l] + u[l + w];                                                                \
    return u[0];

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("fma"))) static float dot64_fma(const float *a, const float *b, int n) {
    DOT64_BODY(a[i])
}
#endif
static float dot64_lib(const float *a, const float *b, int n) {
    DOT64_BODY(a[i])
}

float cpu_dot64(const float *a, const float *b, int n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("fma"))
        return dot64_fma(a, b, n);
#endif
    return dot64_lib(a, b, n);
}

static void mv_scalar(float *y, int ldy, const float *x, const float *W, int T, int in, int o0,
                      int o1, int add) {
    for (int o = o0; o < o1; o++)
        for (int t = 0; t < T; t++) {
            float  s = cpu_dot64(W + (size_t)o * in, x + (size_t)t * in, in);
            float *d = y + (size_t)t * ldy + o;
            *d = add ? *d + s : s;
        }
}

// one bf16 / f16 value widened exactly (cpu_widen_half's arithmetic)
static inline float mvh_widen1(uint16_t h, int is_bf16) {
    uint32_t b;
    if (is_bf16) {
        b = (uint32_t)h << 16;
    } else {
        uint32_t x = h, sign = (x & 0x8000u) << 16, mag = x & 0x7FFFu, e = mag >> 10;
        uint32_t normal = (mag << 13) + (112u << 23);
        normal = e == 0x1Fu ? normal + (112u << 23) : normal;
        float    sub = (float)(mag & 0x3FFu) * 5.9604644775390625e-8f;
        uint32_t subb;
        memcpy(&subb, &sub, 4);
        b = sign | (e == 0 ? subb : normal);
    }
    float f;
    memcpy(&f, &b, 4);
    return f;
}

// the twin for halves: cpu_dot64 of the widened row (widened element by element)
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("fma"))) static float dot64h_fma(const uint16_t *a, int bf, const float *b,
                                                       int n) {
    DOT64_BODY(mvh_widen1(a[i], bf))
}
#endif
static float dot64h_lib(const uint16_t *a, int bf, const float *b, int n) {
    DOT64_BODY(mvh_widen1(a[i], bf))
}

// cpu_dot64 of a bf16 / f16 row widened element by element
static float dot64h(const uint16_t *a, int bf, const float *b, int n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("fma"))
        return dot64h_fma(a, bf, b, n);
#endif
    return dot64h_lib(a, bf, b, n);
}

static void mvh_scalar(int bf, float *y, int ldy, const float *x, const uint16_t *W, int T, int in,
                       int o0, int o1, int add) {
    for (int o = o0; o < o1; o++)
        for (int t = 0; t < T; t++) {
            float  s = dot64h(W + (size_t)o * in, bf, x + (size_t)t * in, in);
            float *d = y + (size_t)t * ldy + o;
            *d = add ? *d + s : s;
        }
}

#if MV_X86
#define MV_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c")))

// cpu_dot64's fold of the four 16-lane chains: (a0 + a1) + (a2 + a3), then the tree
MV_T512 static inline float mv_fold64(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 u = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(u),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 r = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps(r, r, 1)));
}

// the lanes of a tail step of 16 from i (n elements in all)
MV_T512 static inline __mmask16 mv_tail16(int n, int i) {
    return n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
}

// 16 weights from element i of a row of type WT (0 f32, 1 bf16, 2 f16), widened exactly
// (bf16: the top half of the f32 bits; f16: vcvtph2ps); masked lanes (m) zero
MV_T512 static inline __m512 mv_wload(const void *w, int i, const int WT, __mmask16 m) {
    if (WT == 0)
        return m == 0xFFFF ? _mm512_loadu_ps((const float *)w + i)
                           : _mm512_maskz_loadu_ps(m, (const float *)w + i);
    const uint16_t *p = (const uint16_t *)w + i;
    __m256i         h = m == 0xFFFF ? _mm256_loadu_si256((const __m256i *)(const void *)p)
                                    : _mm256_maskz_loadu_epi16(m, p);
    if (WT == 1)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

// NX ≤ 4 rows of x against one weight row w (type WT): cpu_dot64 of each, the
// weight loads shared. s[q] = dot64(w, x[q]). pf: how many bytes ahead of each
// 64 weights to prefetch the lines they span (0: none).
MV_T512 static inline __attribute__((always_inline)) void
mv_dot64(float *s, const void *w, const int WT, const float *const *x, const int NX, int in,
         size_t pf) {
    __m512 a[4][4];
    for (int q = 0; q < NX; q++)
        for (int c = 0; c < 4; c++)
            a[q][c] = _mm512_setzero_ps();
    const char *wb = (const char *)w;
    size_t      es = WT ? 2 : 4;
    int         i = 0;
    for (; i + 64 <= in; i += 64) {
        if (pf)
            for (size_t b = 0; b < 64 * es; b += 64)
                _mm_prefetch(wb + es * (size_t)i + pf + b, _MM_HINT_T0);
        for (int c = 0; c < 4; c++) {
            __m512 wv = mv_wload(w, i + 16 * c, WT, 0xFFFF);
            for (int q = 0; q < NX; q++)
                a[q][c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[q] + i + 16 * c), a[q][c]);
        }
    }
    for (int c = 0; c < 4 && i + 16 * c < in; c++) { // the tail: lanes past in keep their sums
        __mmask16 m = mv_tail16(in, i + 16 * c);
        __m512    wv = mv_wload(w, i + 16 * c, WT, m);
        for (int q = 0; q < NX; q++)
            a[q][c] = _mm512_mask3_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[q] + i + 16 * c),
                                            a[q][c], m);
    }
    for (int q = 0; q < NX; q++)
        s[q] = mv_fold64(a[q][0], a[q][1], a[q][2], a[q][3]);
}

#define MV_TILE 4 // weight rows a tile at T > 1: read from memory once, then from cache for
                  // every group of 4 x rows

// T = 1: rows [o0, o1) in order, each streamed once. T > 1: tiles of MV_TILE rows, each row
// against the x rows four at a time (the weight loads shared by the four). W of type WT.
MV_T512 static inline __attribute__((always_inline)) void
mv_rows(float *y, int ldy, const float *x, const void *W, const int WT, int T, int in, int o0,
        int o1, int add) {
    size_t row = (size_t)in * (WT ? 2 : 4); // bytes
    if (T == 1) {
        for (int o = o0; o < o1; o++) {
            float s;
            mv_dot64(&s, (const char *)W + (size_t)o * row, WT, &x, 1, in, 0);
            y[o] = add ? y[o] + s : s;
        }
        return;
    }
    for (int r0 = o0; r0 < o1; r0 += MV_TILE) {
        int r1 = r0 + MV_TILE < o1 ? r0 + MV_TILE : o1;
        for (int t = 0; t < T; t += 4) {
            const float *xr[4];
            int          nx = T - t >= 4 ? 4 : T - t;
            for (int q = 0; q < 4; q++)
                xr[q] = x + (size_t)(t + (q < nx ? q : 0)) * in;
            // the next tile's rows, while the first x group runs
            size_t pf = t == 0 && r1 < o1 ? (size_t)MV_TILE * row : 0;
            for (int o = r0; o < r1; o++) {
                const void *w = (const char *)W + (size_t)o * row;
                float       s[4];
                if (nx == 4)
                    mv_dot64(s, w, WT, xr, 4, in, pf);
                else if (nx == 3)
                    mv_dot64(s, w, WT, xr, 3, in, pf);
                else if (nx == 2)
                    mv_dot64(s, w, WT, xr, 2, in, pf);
                else
                    mv_dot64(s, w, WT, xr, 1, in, pf);
                for (int q = 0; q < nx; q++) {
                    float *d = y + (size_t)(t + q) * ldy + o;
                    *d = add ? *d + s[q] : s[q];
                }
            }
        }
    }
}

MV_T512 static void mv_avx512(float *y, int ldy, const float *x, const float *W, int T, int in,
                              int o0, int o1, int add) {
    mv_rows(y, ldy, x, W, 0, T, in, o0, o1, add);
}
MV_T512 static void mvh_avx512_bf16(float *y, int ldy, const float *x, const uint16_t *W, int T,
                                    int in, int o0, int o1, int add) {
    mv_rows(y, ldy, x, W, 1, T, in, o0, o1, add);
}
MV_T512 static void mvh_avx512_f16(float *y, int ldy, const float *x, const uint16_t *W, int T,
                                   int in, int o0, int o1, int add) {
    mv_rows(y, ldy, x, W, 2, T, in, o0, o1, add);
}
#endif

#if MV_X86
// ----------------------------------------------------------------------------
// AVX2: lane l of cpu_dot64 is lane l % 8 of chain l / 8

#define MV_T256 __attribute__((target("avx2,fma,f16c")))

// cpu_dot64's fold: u_l = (a_l + a_l+16) + (a_l+32 + a_l+48) is (c0 + c2) + (c4 + c6) for
// l < 8 and (c1 + c3) + (c5 + c7) for 8 ≤ l < 16, then the tree
MV_T256 static inline float mv2_fold64(const __m256 *c) {
    __m256 lo = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[4], c[6]));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(c[1], c[3]), _mm256_add_ps(c[5], c[7]));
    __m256 h = _mm256_add_ps(lo, hi); // u_l + u_l+8
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 r = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps(r, r, 1)));
}

// 8 weights from element i of a row of type WT (0 f32, 1 bf16, 2 f16), widened exactly
MV_T256 static inline __m256 mv2_wload(const void *w, int i, const int WT) {
    if (WT == 0)
        return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)w + i));
    if (WT == 1)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

// cpu_dot64(widen(w), x) over in elements. The tail's lanes past in load zeros into both
// operands: fma(0, 0, a) = a (a chain is never −0: it starts at +0, and a + (±0) only gives
// −0 when a is −0), so those chains keep their sums, as the twin's do.
MV_T256 static inline __attribute__((always_inline)) float mv2_dot64(const void *w, const int WT,
                                                                    const float *x, int in) {
    __m256 c[8];
    for (int k = 0; k < 8; k++)
        c[k] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 64 <= in; i += 64)
        for (int k = 0; k < 8; k++)
            c[k] = _mm256_fmadd_ps(mv2_wload(w, i + 8 * k, WT), _mm256_loadu_ps(x + i + 8 * k),
                                   c[k]);
    if (i < in) {
        float wt[64] = {0}, xt[64] = {0};
        int   n = (in - i) & 63; // 1..63 here (the mask tells the compiler it fits the arrays)
        if (WT == 0)
            memcpy(wt, (const float *)w + i, sizeof(float) * (size_t)n);
        else
            for (int k = 0; k < n; k++)
                wt[k] = mvh_widen1(((const uint16_t *)w)[i + k], WT == 1);
        memcpy(xt, x + i, sizeof(float) * (size_t)n);
        for (int k = 0; k < 8 && 8 * k < n; k++)
            c[k] = _mm256_fmadd_ps(_mm256_loadu_ps(wt + 8 * k), _mm256_loadu_ps(xt + 8 * k), c[k]);
    }
    return mv2_fold64(c);
}

// T = 1: rows [o0, o1) in order, each streamed once; T > 1: tiles of MV_TILE rows, each row
// against every x row (the tile stays in cache)
MV_T256 static inline __attribute__((always_inline)) void
mv2_rows(float *y, int ldy, const float *x, const void *W, const int WT, int T, int in, int o0,
         int o1, int add) {
    size_t row = (size_t)in * (WT ? 2 : 4); // bytes
    for (int r0 = o0; r0 < o1; r0 += MV_TILE) {
        int r1 = r0 + MV_TILE < o1 ? r0 + MV_TILE : o1;
        for (int t = 0; t < T; t++)
            for (int o = r0; o < r1; o++) {
                float  s = mv2_dot64((const char *)W + (size_t)o * row, WT, x + (size_t)t * in, in);
                float *d = y + (size_t)t * ldy + o;
                *d = add ? *d + s : s;
            }
    }
}

MV_T256 static void mv_avx2(float *y, int ldy, const float *x, const void *W, int WT, int T,
                            int in, int o0, int o1, int add) {
    if (WT == 0)
        mv2_rows(y, ldy, x, W, 0, T, in, o0, o1, add);
    else if (WT == 1)
        mv2_rows(y, ldy, x, W, 1, T, in, o0, o1, add);
    else
        mv2_rows(y, ldy, x, W, 2, T, in, o0, o1, add);
}
#endif

void cpu_matvec(int isa, float *y, int ldy, const float *x, const float *W, int T, int in, int o0,
                int o1, int add) {
    if (T <= 0 || o1 <= o0)
        return;
#if MV_X86
    if (isa != MV_SCALAR && cpu_matvec_isa_ok(isa)) {
        if (isa == MV_AVX512)
            mv_avx512(y, ldy, x, W, T, in, o0, o1, add);
        else
            mv_avx2(y, ldy, x, W, 0, T, in, o0, o1, add);
        return;
    }
#endif
    mv_scalar(y, ldy, x, W, T, in, o0, o1, add);
}

void cpu_matvec_half(int isa, int is_bf16, float *y, int ldy, const float *x, const uint16_t *W,
                     int T, int in, int o0, int o1, int add) {
    if (T <= 0 || o1 <= o0 || in <= 0)
        return;
#if MV_X86
    if (isa == MV_AVX512 && cpu_matvec_isa_ok(isa)) {
        if (is_bf16)
            mvh_avx512_bf16(y, ldy, x, W, T, in, o0, o1, add);
        else
            mvh_avx512_f16(y, ldy, x, W, T, in, o0, o1, add);
        return;
    }
    if (isa == MV_AVX2 && cpu_matvec_isa_ok(isa)) {
        mv_avx2(y, ldy, x, W, is_bf16 ? 1 : 2, T, in, o0, o1, add);
        return;
    }
#endif
    mvh_scalar(is_bf16, y, ldy, x, W, T, in, o0, o1, add);
}
