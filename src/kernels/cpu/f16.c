/*
 * f16.c — f32 → f16 narrowing for the f16 KV cache (attn_f16.c): round to
 * nearest even, overflow to ±inf, NaN kept NaN (quiet, top payload bits) —
 * molt_f32_to_f16's semantics (core/dtype.c), which is the scalar twin. The
 * F16C (vcvtps2ph, 8 lanes) and AVX-512F (16 lanes) paths give the same bits;
 * their tails run the twin. The widening direction is matmul_w.c's
 * cpu_widen_half (branch-free, vectorized by K_SIMD's clones).
 *
 * The path is chosen once, at the first call: the best one that the CPU
 * (cpuid) and the OS (xgetbv: the register state it saves) allow, or a lower
 * one named by MOLT_F16_ISA=scalar|f16c|avx512.
 */
#include "kernels/cpu/cpu.h"

#include "core/dtype.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define F16_X86 1
#endif

static const char *const ISA_NAME[F16_ISA_COUNT] = {"scalar", "f16c", "avx512"};
static int            g_avail[F16_ISA_COUNT] = {1, 0, 0};
static int            g_isa = F16_SCALAR;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#ifdef F16_X86
static void detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int osxsave = !!(c & (1u << 27)), avx = !!(c & (1u << 28)), f16c = !!(c & (1u << 29));
    if (!osxsave || !avx || !f16c) // no AVX state saved by the OS, or no vcvtps2ph
        return;
    uint64_t xcr0 = cpu_xgetbv0();
    g_avail[F16_F16C] = (xcr0 & 0x6) == 0x6; // XMM + YMM state
    if (!g_avail[F16_F16C] || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return;
    g_avail[F16_AVX512] = (xcr0 & 0xE6) == 0xE6 && (b & (1u << 16)); // + ZMM state, AVX-512F
}
#else
static void detect(void) {}
#endif

static void choose(void) {
    detect();
    g_isa = cpu_isa_pick(g_avail, F16_ISA_COUNT, ISA_NAME, "MOLT_F16_ISA");
}

int cpu_f16_isa(void) {
    pthread_once(&g_once, choose);
    return g_isa;
}

int cpu_f16_isa_available(int isa) {
    pthread_once(&g_once, choose);
    return isa >= 0 && isa < F16_ISA_COUNT && g_avail[isa];
}

#ifdef F16_X86
// imm 0: round to nearest even, regardless of MXCSR.RC
__attribute__((target("avx,f16c"))) static int narrow_f16c(uint16_t *dst, const float *src,
                                                            int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), 0));
    return i;
}

__attribute__((target("avx512f"))) static int narrow_avx512(uint16_t *dst, const float *src,
                                                            int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), 0));
    return i;
}
#endif

#ifdef F16_X86
__attribute__((target("avx,f16c"))) static int widen_f16c(float *dst, const uint16_t *h, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    return i;
}

__attribute__((target("avx512f"))) static int widen_avx512(float *dst, const uint16_t *h, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    return i;
}
#endif

void cpu_widen_f16(int isa, float *dst, const uint16_t *h, int n) {
    int i = 0;
#ifdef F16_X86
    if (isa == F16_AVX512 && cpu_f16_isa_available(isa))
        i = widen_avx512(dst, h, n);
    else if (isa >= F16_F16C && cpu_f16_isa_available(F16_F16C))
        i = widen_f16c(dst, h, n);
#else
    (void)isa;
#endif
    if (i < n)
        cpu_widen_half(dst + i, h + i, n - i, 0);
}

void cpu_narrow_half(int isa, uint16_t *dst, const float *src, int n) {
    int i = 0;
#ifdef F16_X86
    if (isa == F16_AVX512 && cpu_f16_isa_available(isa))
        i = narrow_avx512(dst, src, n);
    else if (isa >= F16_F16C && cpu_f16_isa_available(F16_F16C))
        i = narrow_f16c(dst, src, n);
#else
    (void)isa;
#endif
    for (; i < n; i++)
        dst[i] = molt_f32_to_f16(src[i]);
}
