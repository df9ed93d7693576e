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
 *
 * (Until 2026-12-07 the element was k_dotf's 8-lane sum, which needed eight
 * weight rows interleaved to keep the adders busy; the sequential read is
 * ~30% faster at batch-1 decode on the 110M model.)
 *
 * cpu_matvec_half: the same for bf16 / f16 weights (cpu_matmul_w's decode
 * path, 1 ≤ T ≤ K_MATVEC_T). W is read in its own type (half the bytes) and
 * widened exactly in registers (bf16: zero-extend and shift left 16; f16:
 * vcvtph2ps, F16C, which cpu_matvec_isa's AVX-512 check includes), then the
 * f32 kernel's operations. Each element is summed in chunks of K_MATVEC_KC
 * input columns, as the widen-a-tile path always did (so the bits did not
 * change when the widening moved into the dot product):
 *
 *   y[t, o] = (add ? y[t, o] : 0) + s_0 then + s_1, + s_2, … in order,
 *   s_c = k_dotf(widen(W[o, c·KC : (c+1)·KC]), x[t, c·KC : (c+1)·KC])
 *
 * (for add = 0 the first step is y = s_0, not 0 + s_0). For T = 1 the AVX-512
 * path puts two weight rows in one vector instead (rows r, r+1 in the low,
 * high half, x's block in both: no lane on xp's padding row), same
 * operations. MV_SCALAR is the
 * widen-in-the-dot-product loop that cpu_matmul_w ran before (the twin and
 * the oracle); in ≤ 0 leaves y alone.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/q8.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MV_HAVE_AVX512 1
#else
#define MV_HAVE_AVX512 0
#endif

int cpu_matvec_isa(void) {
    return MV_HAVE_AVX512 && cpu_q8_isa_available(Q8_AVX512VNNI) ? MV_AVX512 : MV_SCALAR;
}

size_t cpu_matvec_pack_floats(int T, int in) {
    return (size_t)((T + 1) & ~1) * (size_t)(in / 8) * 8;
}

void cpu_matvec_pack(float *xp, const float *x, int T, int in) {
    int Tp = (T + 1) & ~1, nb = in / 8;
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < Tp; t++) {
            float *d = xp + ((size_t)b * Tp + t) * 8;
            if (t < T)
                memcpy(d, x + (size_t)t * in + (size_t)b * 8, 8 * sizeof(float));
            else
                memset(d, 0, 8 * sizeof(float));
        }
}

// cpu_dot64's arithmetic (the contract above); fmaf is one rounding either way
#define DOT64_BODY                                                                                 \
    float acc[64] = {0};                                                                           \
    for (int i = 0; i < n; i++)                                                                    \
        acc[i & 63] = fmaf(a[i], b[i], acc[i & 63]);                                               \
    float u[16];                                                                                   \
    for (int l = 0; l < 16; l++)                                                                   \
        u[l] = (acc[l] + acc[16 + l]) + (acc[32 + l] + acc[48 + l]);                               \
    for (int w = 8; w >= 1; w /= 2)                                                                \
        for (int l = 0; l < w; l++)                                                                \
            u[l] = u[l] + u[l + w];                                                                \
    return u[0];

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("fma"))) static float dot64_fma(const float *a, const float *b, int n) {
    DOT64_BODY
}
#endif
static float dot64_lib(const float *a, const float *b, int n) {
    DOT64_BODY
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

// The twin: y[t, r] (+)= k_dotf(widened W row r, x row t) over one KC chunk,
// the widening fused into the dot product, four rows at a time (k_dotf's 8
// partial sums are one dependency chain per row; four keep the adders busy).
#define MVH_DOT_ROWS(R, BF)                                                                        \
    do {                                                                                           \
        float acc[R][8];                                                                           \
        memset(acc, 0, sizeof acc);                                                                \
        int i = 0;                                                                                 \
        for (; i + 8 <= kc; i += 8)                                                                \
            for (int q = 0; q < (R); q++)                                                          \
                for (int k = 0; k < 8; k++)                                                        \
                    acc[q][k] += mvh_widen1(wr[(size_t)q * in + i + k], BF) * xt[i + k];           \
        for (int q = 0; q < (R); q++) {                                                            \
            float s = ((acc[q][0] + acc[q][4]) + (acc[q][1] + acc[q][5])) +                        \
                      ((acc[q][2] + acc[q][6]) + (acc[q][3] + acc[q][7]));                         \
            for (int e = i; e < kc; e++)                                                           \
                s += mvh_widen1(wr[(size_t)q * in + e], BF) * xt[e];                               \
            float *yp = y + (size_t)t * ldy + r + q;                                               \
            *yp = add ? *yp + s : s;                                                               \
        }                                                                                          \
    } while (0)

// rows [o0, o1) for every x row: each row's KC chunks in order (y = chunk 0,
// then y += each next chunk), four rows at a time
#define MVH_SCALAR(NAME, BF)                                                                       \
    K_SIMD static void NAME(float *y, int ldy, const float *x, const uint16_t *w, int T, int in,   \
                            int o0, int o1, int add0) {                                            \
        for (int r0 = o0; r0 < o1; r0 += 4)                                                        \
            for (int k0 = 0; k0 < in; k0 += K_MATVEC_KC)                                           \
                for (int t = 0; t < T; t++) {                                                      \
                    const float *xt = x + (size_t)t * in + k0;                                     \
                    int kc = in - k0 < K_MATVEC_KC ? in - k0 : K_MATVEC_KC, r = r0;                \
                    int add = add0 || k0 > 0;                                                      \
                    if (r0 + 4 <= o1) {                                                            \
                        const uint16_t *wr = w + (size_t)r * in + k0;                              \
                        MVH_DOT_ROWS(4, BF);                                                       \
                    } else {                                                                       \
                        for (; r < o1; r++) {                                                      \
                            const uint16_t *wr = w + (size_t)r * in + k0;                          \
                            MVH_DOT_ROWS(1, BF);                                                   \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
    }
MVH_SCALAR(mvh_scalar_bf16, 1)
MVH_SCALAR(mvh_scalar_f16, 0)

#if MV_HAVE_AVX512
#define MV_T512 __attribute__((target("avx512f,avx2,f16c")))

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

// NX ≤ 4 rows of x against one weight row w: cpu_dot64 of each, the weight
// loads shared. s[q] = dot64(w, x[q]).
// pf: bytes ahead of w to prefetch a line of per 16 weights (0: none)
MV_T512 static inline __attribute__((always_inline)) void
mv_dot64(float *s, const float *w, const float *const *x, const int NX, int in, size_t pf) {
    __m512 a[4][4];
    for (int q = 0; q < NX; q++)
        for (int c = 0; c < 4; c++)
            a[q][c] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= in; i += 64)
        for (int c = 0; c < 4; c++) {
            if (pf)
                _mm_prefetch((const char *)(w + i + 16 * c) + pf, _MM_HINT_T0);
            __m512 wv = _mm512_loadu_ps(w + i + 16 * c);
            for (int q = 0; q < NX; q++)
                a[q][c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[q] + i + 16 * c), a[q][c]);
        }
    for (int c = 0; c < 4 && i + 16 * c < in; c++) { // the tail: lanes past in keep their sums
        __mmask16 m = mv_tail16(in, i + 16 * c);
        __m512    wv = _mm512_maskz_loadu_ps(m, w + i + 16 * c);
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
// against the x rows four at a time (the weight loads shared by the four)
MV_T512 static void mv_avx512(float *y, int ldy, const float *x, const float *W, int T, int in,
                              int o0, int o1, int add) {
    if (T == 1) {
        for (int o = o0; o < o1; o++) {
            float s;
            mv_dot64(&s, W + (size_t)o * in, &x, 1, in, 0);
            y[o] = add ? y[o] + s : s;
        }
        return;
    }
    for (int r0 = o0; r0 < o1; r0 += MV_TILE) {
        int r1 = r0 + MV_TILE < o1 ? r0 + MV_TILE : o1;
        // the next tile's row, a line per 16 weights, while the first x group runs
        size_t pf = r1 < o1 ? sizeof(float) * (size_t)MV_TILE * in : 0;
        for (int t = 0; t < T; t += 4) {
            const float *xr[4];
            int          nx = T - t >= 4 ? 4 : T - t;
            for (int q = 0; q < 4; q++)
                xr[q] = x + (size_t)(t + (q < nx ? q : 0)) * in;
            if (t > 0)
                pf = 0;
            for (int o = r0; o < r1; o++) {
                const float *w = W + (size_t)o * in;
                float        s[4];
                if (nx == 4)
                    mv_dot64(s, w, xr, 4, in, pf);
                else if (nx == 3)
                    mv_dot64(s, w, xr, 3, in, pf);
                else if (nx == 2)
                    mv_dot64(s, w, xr, 2, in, pf);
                else
                    mv_dot64(s, w, xr, 1, in, pf);
                for (int q = 0; q < nx; q++) {
                    float *d = y + (size_t)(t + q) * ldy + o;
                    *d = add ? *d + s[q] : s[q];
                }
            }
        }
    }
}

// the 8 weights W[r, 8b .. 8b+8) widened, in both halves of a 512-bit vector
MV_T512 static inline __m512 mvh_load8(const uint16_t *p, int bf) {
    __m256i h = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    if (bf)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

// the twin of mv_block for halves: the same accumulators, restarted at each
// KC chunk, whose folded sum goes into y (= for the first chunk unless add)
MV_T512 static inline __attribute__((always_inline)) void
mvh_block(int R, int P, int bf, float *y, int ldy, const float *x, const float *xp,
          const uint16_t *W, int T, int in, int o, int p0, int add) {
    int             nb = in / 8, Tp = (T + 1) & ~1;
    const uint16_t *w0 = W + (size_t)o * in;
    for (int c0 = 0; c0 < in; c0 += K_MATVEC_KC) {
        int    b0 = c0 / 8, b1 = (c0 + K_MATVEC_KC) / 8 < nb ? (c0 + K_MATVEC_KC) / 8 : nb;
        int    c1 = c0 + K_MATVEC_KC < in ? c0 + K_MATVEC_KC : in;
        __m512 acc[4][4];
        for (int r = 0; r < R; r++)
            for (int q = 0; q < P; q++)
                acc[r][q] = _mm512_setzero_ps();
        for (int b = b0; b < b1; b++) {
            __m512       xv[4];
            const float *xb = xp + ((size_t)b * Tp + 2 * p0) * 8;
            for (int q = 0; q < P; q++)
                xv[q] = _mm512_loadu_ps(xb + 16 * q);
            if (!(b & 3)) // the next block's rows, one cache line (32 halves) a step
                for (int r = 0; r < R; r++)
                    _mm_prefetch((const char *)(w0 + (size_t)(R + r) * in + 8 * b), _MM_HINT_T0);
            for (int r = 0; r < R; r++) {
                __m512 wv = mvh_load8(w0 + (size_t)r * in + 8 * b, bf);
                for (int q = 0; q < P; q++)
                    acc[r][q] = _mm512_add_ps(acc[r][q], _mm512_mul_ps(wv, xv[q]));
            }
        }
        for (int r = 0; r < R; r++)
            for (int q = 0; q < P; q++)
                for (int h = 0; h < 2; h++) {
                    int t = 2 * (p0 + q) + h;
                    if (t >= T)
                        continue;
                    __m256 a = h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                       _mm512_castps_pd(acc[r][q]), 1))
                                 : _mm512_castps512_ps256(acc[r][q]);
                    __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
                    float  f[4];
                    _mm_storeu_ps(f, v);
                    float           s = (f[0] + f[1]) + (f[2] + f[3]);
                    const uint16_t *wr = w0 + (size_t)r * in;
                    const float    *xt = x + (size_t)t * in;
                    for (int i = 8 * b1; i < c1; i++)
                        s += mvh_widen1(wr[i], bf) * xt[i];
                    float *d = y + (size_t)t * ldy + o + r;
                    *d = add || c0 > 0 ? *d + s : s;
                }
    }
}

// T = 1: two weight rows per 512-bit vector instead (rows r, r+1 in the low,
// high half; x's block in both), so no lane works on the padding row
MV_T512 static inline __m512 mvh_load2(const uint16_t *p, const uint16_t *p1, int bf) {
    __m256i h = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
        _mm_loadu_si128((const __m128i *)p1), 1);
    if (bf)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

MV_T512 static inline __attribute__((always_inline)) void
mvh_rows1(int R, int bf, float *y, const float *x, const uint16_t *W, int in, int o, int add) {
    int             nb = in / 8;
    const uint16_t *w0 = W + (size_t)o * in;
    for (int c0 = 0; c0 < in; c0 += K_MATVEC_KC) {
        int    b0 = c0 / 8, b1 = (c0 + K_MATVEC_KC) / 8 < nb ? (c0 + K_MATVEC_KC) / 8 : nb;
        int    c1 = c0 + K_MATVEC_KC < in ? c0 + K_MATVEC_KC : in;
        __m512 acc[4];
        for (int r = 0; r < R / 2; r++)
            acc[r] = _mm512_setzero_ps();
        for (int b = b0; b < b1; b++) {
            __m512 xv = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd(
                (const double *)(const void *)(x + 8 * b))));
            if (!(b & 3))
                for (int r = 0; r < R; r++)
                    _mm_prefetch((const char *)(w0 + (size_t)(R + r) * in + 8 * b), _MM_HINT_T0);
            for (int r = 0; r < R / 2; r++) {
                const uint16_t *p = w0 + (size_t)(2 * r) * in + 8 * b;
                __m512          wv = mvh_load2(p, p + in, bf);
                acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(wv, xv));
            }
        }
        for (int r = 0; r < R; r++) {
            __m256 a = r & 1 ? _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                   _mm512_castps_pd(acc[r / 2]), 1))
                             : _mm512_castps512_ps256(acc[r / 2]);
            __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            float  f[4];
            _mm_storeu_ps(f, v);
            float           s = (f[0] + f[1]) + (f[2] + f[3]);
            const uint16_t *wr = w0 + (size_t)r * in;
            for (int i = 8 * b1; i < c1; i++)
                s += mvh_widen1(wr[i], bf) * x[i];
            float *d = y + o + r;
            *d = add || c0 > 0 ? *d + s : s;
        }
    }
}

#define MVH_ROWS1 4 // rows a step of mvh_rows1 (8 measured no faster; the pairs kernel slower)

#define MVH_PAIRS(R, BF)                                                                           \
    for (int p = 0; p < np;) {                                                                     \
        int P = np - p >= 4 ? 4 : np - p;                                                          \
        if (P == 4)                                                                                \
            mvh_block(R, 4, BF, y, ldy, x, xp, W, T, in, o, p, add);                               \
        else if (P == 3)                                                                           \
            mvh_block(R, 3, BF, y, ldy, x, xp, W, T, in, o, p, add);                               \
        else if (P == 2)                                                                           \
            mvh_block(R, 2, BF, y, ldy, x, xp, W, T, in, o, p, add);                               \
        else                                                                                       \
            mvh_block(R, 1, BF, y, ldy, x, xp, W, T, in, o, p, add);                               \
        p += P;                                                                                    \
    }

#define MVH_AVX512(NAME, BF)                                                                       \
    MV_T512 static void NAME(float *y, int ldy, const float *x, const float *xp,                   \
                             const uint16_t *W, int T, int in, int o0, int o1, int add) {          \
        int np = (T + 1) / 2, o = o0;                                                              \
        if (T == 1)                                                                                \
            for (; o + MVH_ROWS1 <= o1; o += MVH_ROWS1)                                            \
                mvh_rows1(MVH_ROWS1, BF, y, x, W, in, o, add);                                     \
        for (; o + 4 <= o1; o += 4)                                                                \
            MVH_PAIRS(4, BF)                                                                       \
        for (; o < o1; o++)                                                                        \
            MVH_PAIRS(1, BF)                                                                       \
    }
MVH_AVX512(mvh_avx512_bf16, 1)
MVH_AVX512(mvh_avx512_f16, 0)
#endif

void cpu_matvec(int isa, float *y, int ldy, const float *x, const float *W, int T, int in, int o0,
                int o1, int add) {
    if (T <= 0 || o1 <= o0)
        return;
#if MV_HAVE_AVX512
    if (isa == MV_AVX512 && cpu_matvec_isa() == MV_AVX512) {
        mv_avx512(y, ldy, x, W, T, in, o0, o1, add);
        return;
    }
#endif
    mv_scalar(y, ldy, x, W, T, in, o0, o1, add);
}

void cpu_matvec_half(int isa, int is_bf16, float *y, int ldy, const float *x, const float *xp,
                     const uint16_t *W, int T, int in, int o0, int o1, int add) {
    if (T <= 0 || o1 <= o0 || in <= 0)
        return;
#if MV_HAVE_AVX512
    if (isa == MV_AVX512 && xp) {
        if (is_bf16)
            mvh_avx512_bf16(y, ldy, x, xp, W, T, in, o0, o1, add);
        else
            mvh_avx512_f16(y, ldy, x, xp, W, T, in, o0, o1, add);
        return;
    }
#endif
    if (is_bf16)
        mvh_scalar_bf16(y, ldy, x, W, T, in, o0, o1, add);
    else
        mvh_scalar_f16(y, ldy, x, W, T, in, o0, o1, add);
}
