/*
 * q8_x86.c — the AVX2 and AVX-512 VNNI paths of the q8_0 matmul (q8.h's
 * contract; q8.c picks one at run time). Both read a weight row's int8 part
 * as its 64-byte slices (dtype.h): one slice holds 4 bytes of each of 16
 * blocks, so one int8 dot-product step leaves lane j holding block j's partial
 * sum and the 8 slices of a group add up, lane by lane, to the 16 blocks'
 * exact dot products — no horizontal reduction until the very end.
 *
 *   VNNI  vpdpbusd multiplies unsigned by signed bytes: the activations are
 *         stored as qx + 128 and the row's Σ 128·qw (vpdpbusd of 0x80 bytes)
 *         is subtracted: Σ (qx+128)·qw − 128·Σ qw = Σ qx·qw, exact in int32.
 *         A tile is 2 weight rows × up to 4 activation rows.
 *   AVX2  vpmaddubsw(|qx|, sign(qw, qx)) then vpmaddwd by 1: pairs of
 *         products ≤ 2·127·127 < 2^15, so nothing saturates (q ≠ -128).
 *         A tile is 1 weight row × up to 4 activation rows.
 * The float part is the contract's, lane for lane: p = (float)isum · (dw·dx),
 * a_j += p, then q8_tree16.
 */
#if defined(__x86_64__) && defined(__GNUC__)

#include "kernels/cpu/q8.h"

#include "core/dtype.h"

#include <immintrin.h>
#include <string.h>

#define G MOLT_Q8_GROUP
#define QB MOLT_Q8_BLOCK
#define INLINE static inline __attribute__((always_inline))

// The fp16 scales of rows `ahead` bytes on (a row's scales follow its int8
// part): the slices' prefetches never reach them, and at T = 1 a miss on them
// stalled every group (half of the VNNI kernel's time at one thread).
INLINE void q8_prefetch_scales(const uint8_t *const *w, int NR, size_t nb, size_t ahead) {
    for (int r = 0; r < NR; r++)
        for (size_t b = 0; b < 2 * nb; b += 64)
            _mm_prefetch((const char *)(w[r] + nb * QB + ahead + b), _MM_HINT_T0);
}

// ----------------------------------------------------------------------------
// AVX-512 VNNI

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c")))

// q8_tree16 on a vector, in its order: h = a_j + a_{j+8}, q = h_j + h_{j+4},
// (q_0 + q_2) + (q_1 + q_3)
INLINE VNNI float vnni_tree16(__m512 a) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 r = _mm_add_ps(q, _mm_movehl_ps(q, q));              // q0+q2, q1+q3
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps(r, r, 1))); // (q0+q2) + (q1+q3)
}

INLINE VNNI void vnni_store(const q8_job *j, int t, int o, __m512 fa) {
    float  sum = vnni_tree16(fa);
    float *yp = j->y + (size_t)t * j->out + o;
    *yp = j->add ? *yp + sum : sum;
}

// 64 bytes, masked unless the group is full (an unmasked load is cheaper)
INLINE VNNI __m512i vnni_load(__mmask64 m, const uint8_t *p) {
    return m == ~0ULL ? _mm512_loadu_si512((const void *)p) : _mm512_maskz_loadu_epi8(m, p);
}

// 32 bytes: a whole slice of an 8-block group, else masked
INLINE VNNI __m256i vnni_load_half(__mmask32 m, const uint8_t *p) {
    return m == ~0U ? _mm256_loadu_si256((const void *)p) : _mm256_maskz_loadu_epi8(m, p);
}

// p = (float)isum · (dw · dx) into fa, the group's 16 lanes
INLINE VNNI __m512 vnni_fma16(__m512 fa, __m512i isum, __m512 dw, __m512 dx) {
    return _mm512_add_ps(fa, _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, dx)));
}

// One activation row (decode) × NR ≤ 4 weight rows: the int8 sums of even and
// odd slices in separate registers (two dependency chains per row), the next
// rows prefetched a tile ahead.
INLINE VNNI void vnni_tile_row(const q8_job *j, int o, int t, const int NR) {
    size_t         nb = j->a.nb;
    const uint8_t *x = j->a.q + (size_t)t * nb * QB, *w[4];
    const float   *dx = j->a.d + (size_t)t * nb;
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        w[r] = j->W + (size_t)(o + r) * j->rb;
    const size_t   ahead = 2 * (size_t)NR * j->rb;
    const __m512i  c128 = _mm512_set1_epi8((char)0x80);
    __m512         fa[4];
    q8_prefetch_scales(w, NR, nb, ahead);
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        fa[r] = _mm512_setzero_ps();
    for (size_t g0 = 0; g0 < nb; g0 += G) {
        size_t    g = nb - g0 < G ? nb - g0 : G, st = 4 * g, base = g0 * QB;
        __mmask64 m = g == G ? ~0ULL : (1ULL << st) - 1;
        __mmask16 m16 = (__mmask16)((1u << g) - 1);
        __m512i   is[4];
        if (g > 8) {
            __m512i acc[4][2], cor[4][2];
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++)
                acc[r][0] = acc[r][1] = cor[r][0] = cor[r][1] = _mm512_setzero_si512();
            #pragma GCC unroll 8
            for (int s = 0; s < 8; s++) {
                const size_t at = base + st * (size_t)s;
                __m512i      xv = vnni_load(m, x + at);
                #pragma GCC unroll 8
                for (int r = 0; r < NR; r++) {
                    _mm_prefetch((const char *)(w[r] + at + ahead), _MM_HINT_T0);
                    __m512i wv = vnni_load(m, w[r] + at);
                    cor[r][s & 1] = _mm512_dpbusd_epi32(cor[r][s & 1], c128, wv);
                    acc[r][s & 1] = _mm512_dpbusd_epi32(acc[r][s & 1], xv, wv);
                }
            }
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++)
                is[r] = _mm512_sub_epi32(_mm512_add_epi32(acc[r][0], acc[r][1]),
                                         _mm512_add_epi32(cor[r][0], cor[r][1]));
        } else { // a last group of ≤ 8 blocks: 32-byte slices (masked 64-byte loads of a
                 // half-empty slice run at half the memory bandwidth on Zen)
            const __m256i c128h = _mm256_set1_epi8((char)0x80);
            __m256i       acc[4][2], cor[4][2];
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++)
                acc[r][0] = acc[r][1] = cor[r][0] = cor[r][1] = _mm256_setzero_si256();
            #pragma GCC unroll 8
            for (int s = 0; s < 8; s++) {
                const size_t at = base + st * (size_t)s;
                __m256i      xv = vnni_load_half((__mmask32)m, x + at);
                #pragma GCC unroll 8
                for (int r = 0; r < NR; r++) {
                    _mm_prefetch((const char *)(w[r] + at + ahead), _MM_HINT_T0);
                    __m256i wv = vnni_load_half((__mmask32)m, w[r] + at);
                    cor[r][s & 1] = _mm256_dpbusd_epi32(cor[r][s & 1], c128h, wv);
                    acc[r][s & 1] = _mm256_dpbusd_epi32(acc[r][s & 1], xv, wv);
                }
            }
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++)
                is[r] = _mm512_zextsi256_si512(
                    _mm256_sub_epi32(_mm256_add_epi32(acc[r][0], acc[r][1]),
                                     _mm256_add_epi32(cor[r][0], cor[r][1])));
        }
        __m512 dxv = _mm512_maskz_loadu_ps(m16, dx + g0);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            __m512 dwv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m16, w[r] + nb * QB + 2 * g0));
            fa[r] = vnni_fma16(fa[r], is[r], dwv, dxv);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        vnni_store(j, t, o + r, fa[r]);
}

// NR ≤ 2 weight rows × NC ≤ 4 activation rows (prefill, batched decode):
// each weight slice loaded once for NC rows
INLINE VNNI void vnni_tile(const q8_job *j, int o, int t0, const int NR, const int NC) {
    size_t         nb = j->a.nb, xrb = nb * QB;
    const uint8_t *w[2], *x[4];
    const float   *dx[4];
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        w[r] = j->W + (size_t)(o + r) * j->rb;
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        x[c] = j->a.q + (size_t)(t0 + c) * xrb, dx[c] = j->a.d + (size_t)(t0 + c) * nb;
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    __m512        fa[2][4];
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            fa[r][c] = _mm512_setzero_ps();
    for (size_t g0 = 0; g0 < nb; g0 += G) {
        size_t    g = nb - g0 < G ? nb - g0 : G, st = 4 * g, base = g0 * QB;
        __mmask64 m = g == G ? ~0ULL : (1ULL << st) - 1;
        __mmask16 m16 = (__mmask16)((1u << g) - 1);
        __m512i   is[2][4]; // the blocks' exact int8 sums
        if (g > 8) {
            __m512i acc[2][4], cor[2];
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                cor[r] = _mm512_setzero_si512();
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++)
                    acc[r][c] = _mm512_setzero_si512();
            }
            #pragma GCC unroll 8
            for (int s = 0; s < 8; s++) {
                __m512i wv[2];
                #pragma GCC unroll 8
                for (int r = 0; r < NR; r++) {
                    wv[r] = vnni_load(m, w[r] + base + st * (size_t)s);
                    cor[r] = _mm512_dpbusd_epi32(cor[r], c128, wv[r]);
                }
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++) {
                    __m512i xv = vnni_load(m, x[c] + base + st * (size_t)s);
                    #pragma GCC unroll 8
                    for (int r = 0; r < NR; r++)
                        acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xv, wv[r]);
                }
            }
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++)
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++)
                    is[r][c] = _mm512_sub_epi32(acc[r][c], cor[r]);
        } else { // a last group of ≤ 8 blocks: half the width, the same sums
            const __m256i c128h = _mm256_set1_epi8((char)0x80);
            __mmask32     mh = (__mmask32)m;
            __m256i       acc[2][4], cor[2];
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                cor[r] = _mm256_setzero_si256();
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++)
                    acc[r][c] = _mm256_setzero_si256();
            }
            #pragma GCC unroll 8
            for (int s = 0; s < 8; s++) {
                __m256i wv[2];
                #pragma GCC unroll 8
                for (int r = 0; r < NR; r++) {
                    wv[r] = vnni_load_half(mh, w[r] + base + st * (size_t)s);
                    cor[r] = _mm256_dpbusd_epi32(cor[r], c128h, wv[r]);
                }
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++) {
                    __m256i xv = vnni_load_half(mh, x[c] + base + st * (size_t)s);
                    #pragma GCC unroll 8
                    for (int r = 0; r < NR; r++)
                        acc[r][c] = _mm256_dpbusd_epi32(acc[r][c], xv, wv[r]);
                }
            }
            #pragma GCC unroll 8
            for (int r = 0; r < NR; r++)
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++)
                    is[r][c] = _mm512_zextsi256_si512(_mm256_sub_epi32(acc[r][c], cor[r]));
        }
        __m512 dxv[4];
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            dxv[c] = _mm512_maskz_loadu_ps(m16, dx[c] + g0);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            __m512 dwv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m16, w[r] + nb * QB + 2 * g0));
            #pragma GCC unroll 8
            for (int c = 0; c < NC; c++)
                fa[r][c] = vnni_fma16(fa[r][c], is[r][c], dwv, dxv[c]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            vnni_store(j, t0 + c, o + r, fa[r][c]);
}

#define VNNI_CASE(R, C)                                                                           \
    case (R) * 8 + (C):                                                                           \
        vnni_tile(j, o, t, R, C);                                                                 \
        break;

VNNI void q8_rows_vnni(const q8_job *j, int o0, int o1) {
    if (j->T == 1) { // decode: 4 weight rows at a time
        int o = o0;
        for (; o + 4 <= o1; o += 4)
            vnni_tile_row(j, o, 0, 4);
        for (; o < o1; o++)
            vnni_tile_row(j, o, 0, 1);
        return;
    }
    for (int tc = 0; tc < j->T; tc += 64) {
        int te = j->T - tc < 64 ? j->T : tc + 64;
        for (int o = o0; o < o1; o += 2) {
            int nr = o1 - o >= 2 ? 2 : 1;
            for (int t = tc; t < te; t += 4) {
                int nc = te - t >= 4 ? 4 : te - t;
                switch (nr * 8 + nc) {
                    VNNI_CASE(1, 1) VNNI_CASE(1, 2) VNNI_CASE(1, 3) VNNI_CASE(1, 4)
                    VNNI_CASE(2, 1) VNNI_CASE(2, 2) VNNI_CASE(2, 3) VNNI_CASE(2, 4)
                }
            }
        }
    }
}

VNNI void q8_isums_vnni(int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb) {
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    for (size_t g0 = 0; g0 < nb; g0 += G) {
        size_t    g = nb - g0 < G ? nb - g0 : G, st = 4 * g, base = g0 * QB;
        __mmask64 m = g == G ? ~0ULL : (1ULL << st) - 1;
        __m512i   acc = _mm512_setzero_si512(), cor = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i wv = _mm512_maskz_loadu_epi8(m, w + base + st * (size_t)s);
            __m512i xv = _mm512_maskz_loadu_epi8(m, x + base + st * (size_t)s);
            xv = _mm512_xor_si512(xv, c128); // signed → offset, as the matmul stores it
            cor = _mm512_dpbusd_epi32(cor, c128, wv);
            acc = _mm512_dpbusd_epi32(acc, xv, wv);
        }
        _mm512_mask_storeu_epi32(isum + g0, (__mmask16)((1u << g) - 1),
                                 _mm512_sub_epi32(acc, cor));
    }
}

// ----------------------------------------------------------------------------
// AVX2

#define AVX2 __attribute__((target("avx2,f16c")))

// Decode reads one weight row at a time, whole and in order (its int8 part,
// then its scales), prefetching the row Q8_AHEAD rows on, one prefetch per
// cache line. Two rows at a time (sharing x's loads) ran as fast from cache but
// streamed from memory 10-20% slower: two streams 832 bytes apart within one
// page read less of the bandwidth than one. 2 rows ahead (~1.7 KB at d = 768)
// did as well as 4-16 rows at 2 threads and best at 1 (interleaved A/B runs of
// a 110M Llama step's matrices on a 2-vCPU AMD EPYC with AVX2).
#define Q8_AHEAD 2

// lanes [0, n) of a 32-bit mask (n ≤ 8)
INLINE AVX2 __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// the integer part of one group of any size g, masked 4-byte loads: acc[c][h]
// for 16 lanes in two halves (q8_isums_avx2, and avx2_tile for g other than 16 or 8)
INLINE AVX2 void avx2_group(__m256i acc[][2], const uint8_t *wg, const uint8_t *const *xg,
                            size_t g, const int NC) {
    const __m256i one = _mm256_set1_epi16(1);
    int           n0 = g < 8 ? (int)g : 8, n1 = g > 8 ? (int)g - 8 : 0;
    __m256i       mk[2] = {lane_mask(n0), lane_mask(n1)};
    size_t        st = 4 * g;
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        acc[c][0] = acc[c][1] = _mm256_setzero_si256();
    #pragma GCC unroll 8
    for (int s = 0; s < 8; s++)
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            if (h == 1 && n1 == 0)
                break;
            size_t  at = st * (size_t)s + 32 * (size_t)h;
            __m256i wv = _mm256_maskload_epi32((const int *)(const void *)(wg + at), mk[h]);
            #pragma GCC unroll 8
            for (int c = 0; c < NC; c++) {
                __m256i xv = _mm256_maskload_epi32((const int *)(const void *)(xg[c] + at), mk[h]);
                __m256i pr = _mm256_maddubs_epi16(_mm256_abs_epi8(xv), _mm256_sign_epi8(wv, xv));
                acc[c][h] = _mm256_add_epi32(acc[c][h], _mm256_madd_epi16(pr, one));
            }
        }
}

// q8_tree16 of the two 8-lane halves: h = lo + hi, then as vnni_tree16
INLINE AVX2 float avx2_tree16(__m256 lo, __m256 hi) {
    __m256 h = _mm256_add_ps(lo, hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 r = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps(r, r, 1)));
}

// One weight row × one activation row (decode), a group of 16 (HALVES = 2) or 8
// (HALVES = 1) blocks: its 32·g bytes are contiguous, so they are walked in whole
// 32-byte steps, step i feeding half i mod HALVES (a 64-byte slice holds both halves
// of a 16-block group, a 32-byte one the single half of an 8-block group) — plain
// loads, no masks, and one prefetch per cache line `ahead` bytes on. (Other group
// sizes: avx2_group.)
INLINE AVX2 void avx2_row_group(__m256i acc[2], const uint8_t *w, const uint8_t *x, size_t base,
                                size_t ahead, const int HALVES) {
    const __m256i one = _mm256_set1_epi16(1);
    acc[0] = acc[1] = _mm256_setzero_si256();
    #pragma GCC unroll 16
    for (int i = 0; i < 8 * HALVES; i++) {
        size_t  at = base + 32 * (size_t)i;
        __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x + at));
        if (!(i & 1))
            _mm_prefetch((const char *)(w + at + ahead), _MM_HINT_T0);
        __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + at));
        __m256i pr = _mm256_maddubs_epi16(_mm256_abs_epi8(xv), _mm256_sign_epi8(wv, xv));
        acc[i % HALVES] = _mm256_add_epi32(acc[i % HALVES], _mm256_madd_epi16(pr, one));
    }
}

// The integer part of a 16-block (HALVES = 2) or 8-block (HALVES = 1) group
// for one weight row × NC activation rows (prefill, batched decode): walked as
// avx2_row_group, each 32 bytes of the weight loaded once for the NC rows
INLINE AVX2 void avx2_cols_group(__m256i acc[][2], const uint8_t *w, const uint8_t *const *x,
                                 size_t base, const int HALVES, const int NC) {
    const __m256i one = _mm256_set1_epi16(1);
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        acc[c][0] = acc[c][1] = _mm256_setzero_si256();
    #pragma GCC unroll 16
    for (int i = 0; i < 8 * HALVES; i++) {
        size_t  at = base + 32 * (size_t)i;
        __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + at));
        __m256i aw = _mm256_abs_epi8(wv); // |w| once for the NC rows (w, x ∈ [-127, 127]:
        #pragma GCC unroll 8              // |w|·sign(x, w) = |x|·sign(w, x) = w·x, no saturation)
        for (int c = 0; c < NC; c++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[c] + at));
            __m256i pr = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv));
            acc[c][i % HALVES] = _mm256_add_epi32(acc[c][i % HALVES], _mm256_madd_epi16(pr, one));
        }
    }
}

// fa[c][h] += (float)isum · (dw · dx) for one weight row × NC activation rows, half h
// of group g0: the half's 8 scales loaded whole when it is full, else masked (the lanes
// past g: isum 0, scales 0, so fa gains +0 as in the twin)
INLINE AVX2 void avx2_cols_scales(__m256 fa[][2], __m256i acc[][2], const uint8_t *w,
                                  const float *const *dx, size_t nb, size_t g0, size_t g,
                                  const int NC) {
    for (int h = 0; h < 2 && 8 * (size_t)h < g; h++) {
        size_t  n = g - 8 * (size_t)h < 8 ? g - 8 * (size_t)h : 8, b0 = g0 + 8 * (size_t)h;
        __m128i dh;
        if (n == 8) {
            dh = _mm_loadu_si128((const __m128i *)(const void *)(w + nb * QB + 2 * b0));
        } else {
            uint16_t t[8] = {0};
            memcpy(t, w + nb * QB + 2 * b0, 2 * n);
            dh = _mm_loadu_si128((const __m128i *)(const void *)t);
        }
        __m256 dw = _mm256_cvtph_ps(dh);
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            __m256 dxv = n == 8 ? _mm256_loadu_ps(dx[c] + b0)
                                : _mm256_maskload_ps(dx[c] + b0, lane_mask((int)n));
            __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[c][h]), _mm256_mul_ps(dw, dxv));
            fa[c][h] = _mm256_add_ps(fa[c][h], p);
        }
    }
}

// One weight row × one activation row (decode), float sums in registers: the row is
// read whole and in order, the row Q8_AHEAD rows on prefetched while it is summed
INLINE AVX2 void avx2_tile_row(const q8_job *j, int o, int t) {
    size_t         nb = j->a.nb;
    const uint8_t *x = j->a.q + (size_t)t * nb * QB, *w = j->W + (size_t)o * j->rb;
    const float   *dx = j->a.d + (size_t)t * nb;
    const size_t   ahead = (size_t)Q8_AHEAD * j->rb;
    __m256         fa[1][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}};
    q8_prefetch_scales(&w, 1, nb, ahead);
    for (size_t g0 = 0; g0 < nb; g0 += G) {
        size_t  g = nb - g0 < G ? nb - g0 : G;
        __m256i acc[1][2];
        if (g == G || g == 8) {
            avx2_row_group(acc[0], w, x, g0 * QB, ahead, g == G ? 2 : 1);
        } else {
            const uint8_t *xg = x + g0 * QB;
            avx2_group(acc, w + g0 * QB, &xg, g, 1);
        }
        avx2_cols_scales(fa, acc, w, &dx, nb, g0, g, 1);
    }
    float  sum = avx2_tree16(fa[0][0], fa[0][1]);
    float *yp = j->y + (size_t)t * j->out + o;
    *yp = j->add ? *yp + sum : sum;
}

// One weight row × NC ≤ 4 activation rows, float sums in registers
INLINE AVX2 void avx2_tile(const q8_job *j, int o, int t0, const int NC) {
    size_t         nb = j->a.nb, xrb = nb * QB;
    const uint8_t *w = j->W + (size_t)o * j->rb, *x[4];
    const float   *dx[4];
    __m256         fa[4][2];
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        x[c] = j->a.q + (size_t)(t0 + c) * xrb, dx[c] = j->a.d + (size_t)(t0 + c) * nb;
        fa[c][0] = fa[c][1] = _mm256_setzero_ps();
    }
    for (size_t g0 = 0; g0 < nb; g0 += G) {
        size_t  g = nb - g0 < G ? nb - g0 : G;
        __m256i acc[4][2];
        if (g == G) {
            avx2_cols_group(acc, w, x, g0 * QB, 2, NC);
        } else if (g == 8) {
            avx2_cols_group(acc, w, x, g0 * QB, 1, NC);
        } else {
            const uint8_t *xg[4];
            #pragma GCC unroll 8
            for (int c = 0; c < NC; c++)
                xg[c] = x[c] + g0 * QB;
            avx2_group(acc, w + g0 * QB, xg, g, NC);
        }
        avx2_cols_scales(fa, acc, w, dx, nb, g0, g, NC);
    }
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        float  sum = avx2_tree16(fa[c][0], fa[c][1]);
        float *yp = j->y + (size_t)(t0 + c) * j->out + o;
        *yp = j->add ? *yp + sum : sum;
    }
}

AVX2 void q8_rows_avx2(const q8_job *j, int o0, int o1) {
    if (j->T == 1) {
        for (int o = o0; o < o1; o++)
            avx2_tile_row(j, o, 0);
        return;
    }
    for (int tc = 0; tc < j->T; tc += 64) {
        int te = j->T - tc < 64 ? j->T : tc + 64;
        for (int o = o0; o < o1; o++)
            for (int t = tc; t < te; t += 4) {
                int nc = te - t >= 4 ? 4 : te - t;
                if (nc == 4)
                    avx2_tile(j, o, t, 4);
                else if (nc == 3)
                    avx2_tile(j, o, t, 3);
                else if (nc == 2)
                    avx2_tile(j, o, t, 2);
                else
                    avx2_tile(j, o, t, 1);
            }
    }
}

AVX2 void q8_isums_avx2(int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb) {
    for (size_t g0 = 0; g0 < nb; g0 += G) {
        size_t         g = nb - g0 < G ? nb - g0 : G;
        const uint8_t *xg[1] = {x + g0 * QB};
        __m256i        acc[1][2];
        avx2_group(acc, w + g0 * QB, xg, g, 1);
        int32_t out[G];
        _mm256_storeu_si256((__m256i *)(void *)out, acc[0][0]);
        _mm256_storeu_si256((__m256i *)(void *)(out + 8), acc[0][1]);
        memcpy(isum + g0, out, sizeof(int32_t) * g);
    }
}

#else
typedef int q8_x86_unused; // ISO C: a translation unit is not empty
#endif
