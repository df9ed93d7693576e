/*
 * matvec.c — the fp32 matmul for few rows of x (decode, small-batch decode):
 *
 *   y[t, o] = (add ? y[t, o] : 0) + k_dotf(W[o, :], x[t, :])   t < T, o0 ≤ o < o1
 *
 * x [T, in] (row stride in), W [out, in], y [T, ldy]. Every element is
 * exactly k_dotf's sum — eight lane sums over i ≡ k (mod 8) in order, folded
 * ((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7)), then the tail i ≥ 8⌊in/8⌋ added one by
 * one; mul then add, never fused — so the result does not depend on T, on the
 * split of [o0, o1) over threads, or on the path:
 *
 *   MV_SCALAR   k_dotf per element (the twin and the oracle)
 *   MV_AVX512   AVX-512F: the weights stream once per call, 4 rows at a time;
 *               x is packed two rows per 512-bit vector (xp below) and each
 *               8-wide block of a weight row is broadcast to both halves, so
 *               one vmulps + vaddps does k_dotf's eight lane updates for two
 *               rows of x at once — the same operations, in the same order.
 *
 * xp: x packed for MV_AVX512 by cpu_matvec_pack: [⌊in/8⌋][Tp][8], Tp = T
 * rounded up to even, the padding row zero. Callers: cpu_matmul (dense.c) for
 * 1 ≤ T ≤ K_MATVEC_T and in·out above its small-shape cut.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/q8.h"
#include "kernels/kernels.h"

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

static void mv_scalar(float *y, int ldy, const float *x, const float *W, int T, int in, int o0,
                      int o1, int add) {
    for (int o = o0; o < o1; o++)
        for (int t = 0; t < T; t++) {
            float  s = k_dotf(W + (size_t)o * in, x + (size_t)t * in, in);
            float *d = y + (size_t)t * ldy + o;
            *d = add ? *d + s : s;
        }
}

#if MV_HAVE_AVX512
#define MV_T512 __attribute__((target("avx512f")))

// k_dotf's fold of one 8-lane sum, then its tail
MV_T512 static inline float mv_fold(__m256 a, const float *w, const float *xt, int i, int in) {
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); // a_k + a_k+4
    float  f[4];
    _mm_storeu_ps(f, v);
    float s = (f[0] + f[1]) + (f[2] + f[3]);
    for (; i < in; i++)
        s += w[i] * xt[i];
    return s;
}

// R rows of W from o, P pairs of x rows from pair p0: R·P accumulators
MV_T512 static inline __attribute__((always_inline)) void
mv_block(int R, int P, float *y, int ldy, const float *x, const float *xp, const float *W, int T,
         int in, int o, int p0, int add) {
    int    nb = in / 8, Tp = (T + 1) & ~1;
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < P; q++)
            acc[r][q] = _mm512_setzero_ps();
    const float *w0 = W + (size_t)o * in;
    for (int b = 0; b < nb; b++) {
        __m512       xv[4];
        const float *xb = xp + ((size_t)b * Tp + 2 * p0) * 8;
        for (int q = 0; q < P; q++)
            xv[q] = _mm512_loadu_ps(xb + 16 * q);
        if (!(b & 1)) // the next block's rows, one cache line a step: many lines in flight
            for (int r = 0; r < R; r++)
                _mm_prefetch((const char *)(w0 + (size_t)(R + r) * in + 8 * b), _MM_HINT_T0);
        for (int r = 0; r < R; r++) {
            __m256d w8 = _mm256_castps_pd(_mm256_loadu_ps(w0 + (size_t)r * in + 8 * b));
            __m512  wv = _mm512_castpd_ps(_mm512_broadcast_f64x4(w8)); // both halves
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
                const float *xt = x + (size_t)t * in;
                float        s = mv_fold(a, w0 + (size_t)r * in, xt, 8 * nb, in);
                float       *d = y + (size_t)t * ldy + o + r;
                *d = add ? *d + s : s;
            }
}

#define MV_PAIRS(R)                                                                                \
    for (int p = 0; p < np;) {                                                                     \
        int P = np - p >= 4 ? 4 : np - p;                                                          \
        if (P == 4)                                                                                \
            mv_block(R, 4, y, ldy, x, xp, W, T, in, o, p, add);                                    \
        else if (P == 3)                                                                           \
            mv_block(R, 3, y, ldy, x, xp, W, T, in, o, p, add);                                    \
        else if (P == 2)                                                                           \
            mv_block(R, 2, y, ldy, x, xp, W, T, in, o, p, add);                                    \
        else                                                                                       \
            mv_block(R, 1, y, ldy, x, xp, W, T, in, o, p, add);                                    \
        p += P;                                                                                    \
    }

MV_T512 static void mv_avx512(float *y, int ldy, const float *x, const float *xp, const float *W,
                              int T, int in, int o0, int o1, int add) {
    int np = (T + 1) / 2, o = o0;
    for (; o + 4 <= o1; o += 4)
        MV_PAIRS(4)
    for (; o < o1; o++)
        MV_PAIRS(1)
}
#endif

void cpu_matvec(int isa, float *y, int ldy, const float *x, const float *xp, const float *W,
                int T, int in, int o0, int o1, int add) {
    if (T <= 0 || o1 <= o0)
        return;
#if MV_HAVE_AVX512
    if (isa == MV_AVX512 && xp) {
        mv_avx512(y, ldy, x, xp, W, T, in, o0, o1, add);
        return;
    }
#endif
    mv_scalar(y, ldy, x, W, T, in, o0, o1, add);
}
