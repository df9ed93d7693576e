/*
 * ssm_bf16.c — CPU ops of the bf16 recurrent SSM state (ssm_rows.h,
 * kernels.h: MOLT_BACKEND_STATE_BF16_OPS): the batched-decode scan step on
 * bf16 state and the widen / narrow copies a prefill uses around the f32
 * chunked scan.
 *
 * ssd_step_rows_bf16: per (row, head), s = exp(dA)·widen(state) + X ⊗ B in
 * f32, state = bf16(s) (round to nearest even), y = Σ_n s·C in f32 with 16
 * partial sums (row_scalar): the stored state is ssd_step's on the widened
 * state, rounded; y differs from ssd_step's only in the order of its sum.
 * Threads: (row, head) pairs split in contiguous ranges; one writer per
 * output and a fixed order, so the thread count changes no bit. ISA: AVX-512
 * or AVX2 when the CPU and OS allow, the scalar twin otherwise (same bits).
 */
#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ssm_util.h"
#include "kernels/kernels.h"
#include "kernels/ssm_rows.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/cpu/q8.h"
#include <immintrin.h>
#define S16_HAVE_AVX2 1
#else
#define S16_HAVE_AVX2 0
#endif

static inline float widen(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float    f;
    memcpy(&f, &x, sizeof f);
    return f;
}

// molt_f32_to_bf16, inline: round to nearest even, NaN kept quiet
static inline uint16_t narrow(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7FFFu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

// One state row sp[0..N) of one (row, head, p): the update and y = Σ s·C
// with 16 partial sums over whole blocks of 16 (acc[k] takes the elements
// i ≡ k mod 16), folded as acc[k] + acc[k+8] then k_dotf's tree, the rest
// added in order. The scalar twin, the AVX2 and the AVX-512 paths compute the
// same products and sums in the same order (no FMA), so they agree bit for
// bit; MOLT_MATVEC=scalar forces the twin, MOLT_Q8_ISA=avx2 the AVX2 path.
static inline float fold16(const float *acc) {
    float p[8];
    for (int k = 0; k < 8; k++)
        p[k] = acc[k] + acc[k + 8];
    return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

static inline float row_tail(uint16_t *sp, const float *Bg, const float *Cg, float a, float xv,
                             int i0, int N, float y) {
    for (int i = i0; i < N; i++) {
        float s = a * widen(sp[i]) + xv * Bg[i];
        sp[i] = narrow(s);
        y += s * Cg[i];
    }
    return y;
}

static float row_scalar(uint16_t *sp, const float *Bg, const float *Cg, float a, float xv, int N) {
    int   N16 = N & ~15;
    float acc[16] = {0.0f};
    for (int i = 0; i < N16; i += 16)
        for (int k = 0; k < 16; k++) {
            float s = a * widen(sp[i + k]) + xv * Bg[i + k];
            sp[i + k] = narrow(s);
            acc[k] += s * Cg[i + k];
        }
    return row_tail(sp, Bg, Cg, a, xv, N16, N, fold16(acc));
}

#if S16_HAVE_AVX2
#define S16_AVX2 __attribute__((target("avx2")))
// 8 elements at sp: the new state s (returned), its bf16 stored
S16_AVX2 static inline __m256 step8_avx2(uint16_t *sp, const float *B, __m256 va, __m256 vx) {
    const __m256i one = _mm256_set1_epi32(1), rnd = _mm256_set1_epi32(0x7FFF);
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    const __m256i qnan = _mm256_set1_epi32(0x0040);
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)sp));
    __m256  w = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    __m256  s = _mm256_add_ps(_mm256_mul_ps(va, w), _mm256_mul_ps(vx, _mm256_loadu_ps(B)));
    __m256i x = _mm256_castps_si256(s), hi = _mm256_srli_epi32(x, 16);
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(x, _mm256_add_epi32(rnd, _mm256_and_si256(hi, one))), 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, absm), inf);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, qnan), nan);
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128((__m128i *)sp, _mm256_castsi256_si128(p));
    return s;
}

S16_AVX2 static float row_avx2(uint16_t *sp, const float *Bg, const float *Cg, float a, float xv,
                               int N) {
    int    N16 = N & ~15;
    __m256 va = _mm256_set1_ps(a), vx = _mm256_set1_ps(xv);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int i = 0; i < N16; i += 16) {
        __m256 s0 = step8_avx2(sp + i, Bg + i, va, vx);
        __m256 s1 = step8_avx2(sp + i + 8, Bg + i + 8, va, vx);
        lo = _mm256_add_ps(lo, _mm256_mul_ps(s0, _mm256_loadu_ps(Cg + i)));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(s1, _mm256_loadu_ps(Cg + i + 8)));
    }
    float acc[16];
    _mm256_storeu_ps(acc, lo);
    _mm256_storeu_ps(acc + 8, hi);
    return row_tail(sp, Bg, Cg, a, xv, N16, N, fold16(acc));
}

#define S16_AVX512 __attribute__((target("avx512f,avx2")))
S16_AVX512 static float row_avx512(uint16_t *sp, const float *Bg, const float *Cg, float a,
                                   float xv, int N) {
    int           N16 = N & ~15;
    const __m512i one = _mm512_set1_epi32(1), rnd = _mm512_set1_epi32(0x7FFF);
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
    const __m512i qnan = _mm512_set1_epi32(0x0040);
    __m512        va = _mm512_set1_ps(a), vx = _mm512_set1_ps(xv), acc = _mm512_setzero_ps();
    for (int i = 0; i < N16; i += 16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(sp + i)));
        __m512  w = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
        __m512  s = _mm512_add_ps(_mm512_mul_ps(va, w), _mm512_mul_ps(vx, _mm512_loadu_ps(Bg + i)));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(s, _mm512_loadu_ps(Cg + i)));
        __m512i x = _mm512_castps_si512(s), hs = _mm512_srli_epi32(x, 16);
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(x, _mm512_add_epi32(rnd, _mm512_and_si512(hs, one))), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, absm), inf);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hs, qnan));
        _mm256_storeu_si256((__m256i *)(sp + i), _mm512_cvtepi32_epi16(r));
    }
    float l[16];
    _mm512_storeu_ps(l, acc);
    return row_tail(sp, Bg, Cg, a, xv, N16, N, fold16(l));
}
#endif

typedef float (*row_fn)(uint16_t *, const float *, const float *, float, float, int);
static row_fn         g_row = row_scalar;
static pthread_once_t g_row_once = PTHREAD_ONCE_INIT;
static void           row_choose(void) {
#if S16_HAVE_AVX2
    const char *e = getenv("MOLT_MATVEC");
    if (e && !strcmp(e, "scalar"))
        return;
    int isa = cpu_q8_isa(); // the best the CPU and OS allow, or MOLT_Q8_ISA's lower one
    g_row = isa == Q8_AVX512VNNI ? row_avx512 : isa == Q8_AVX2 ? row_avx2 : row_scalar;
#endif
}

typedef struct step16_task {
    float          *y;
    uint16_t *const *state;
    const float    *X, *dA, *B, *C;
    int             n, H, P, N, G;
} step16_task;

static void step16_run(void *arg, int ith, int nth) {
    const step16_task *j = arg;
    int                H = j->H, P = j->P, N = j->N, G = j->G, hpg = H / G, lo, hi;
    size_t             PN = (size_t)P * N;
    molt_pool_range(j->n * H, ith, nth, &lo, &hi);
    for (int it = lo; it < hi; it++) {
        int          r = it / H, h = it % H, g = h / hpg;
        const float *Bg = j->B + ((size_t)r * G + g) * N, *Cg = j->C + ((size_t)r * G + g) * N;
        const float *Xr = j->X + ((size_t)r * H + h) * P;
        float       *yr = j->y + ((size_t)r * H + h) * P;
        float        a = decay(j->dA[(size_t)r * H + h]);
        for (int p = 0; p < P; p++)
            yr[p] = g_row(j->state[r] + (size_t)h * PN + (size_t)p * N, Bg, Cg, a, Xr[p], N);
    }
}

void cpu_ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state, const float *X,
                            const float *dA, const float *B, const float *C, int n, int H, int P,
                            int N, int G) {
    if (n <= 0 || H <= 0)
        return;
    pthread_once(&g_row_once, row_choose);
    step16_task j = {y, state, X, dA, B, C, n, H, P, N, G};
    size_t      cost = (size_t)n * (size_t)H * (size_t)P * (size_t)N;
    molt_pool_run(cost < 32768 || n * H < 2 ? 1 : ex->nth, step16_run, &j);
}

typedef struct cvt16_task {
    float          *f;
    uint16_t       *h;
    const float    *fs;
    const uint16_t *hs;
    size_t          n;
} cvt16_task;

static void cvt16_run(void *arg, int ith, int nth) {
    const cvt16_task *j = arg;
    size_t            per = (j->n + (size_t)nth - 1) / (size_t)nth, lo = per * (size_t)ith;
    size_t            hi = lo + per < j->n ? lo + per : j->n;
    for (size_t i = lo; i < hi; i++) {
        if (j->f)
            j->f[i] = widen(j->hs[i]);
        else
            j->h[i] = narrow(j->fs[i]);
    }
}

static void cvt16(const molt_exec *ex, cvt16_task *j) {
    if (j->n)
        molt_pool_run(j->n < 65536 ? 1 : ex->nth, cvt16_run, j);
}

void cpu_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n) {
    cvt16_task j = {dst, NULL, NULL, src, n};
    cvt16(ex, &j);
}

void cpu_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n) {
    cvt16_task j = {NULL, dst, src, NULL, n};
    cvt16(ex, &j);
}
