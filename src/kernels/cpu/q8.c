/*
 * q8.c — y = x · Wᵀ (+ bias) for a q8_0 weight (core/dtype.h: its layout),
 * the MOLT_Q8_0 branch of cpu_matmul_w below cpu_q8_sgemm_t() rows (from
 * there matmul_w.c dequantizes tiles for sgemm). The arithmetic is q8.h's contract:
 * the activations are quantized per block of 32 (int8 with an f32 scale, as
 * ggml's Q8_0·Q8_0 does), every block's int8 dot product is exact, and the
 * blocks' products are summed in a fixed order — so the scalar twin here and
 * the AVX2 / AVX-512 VNNI paths (q8_x86.c) give the same bits, at any thread
 * count (output rows are split over the pool, never a sum).
 *
 * The path is chosen once, at the first call: the best one that both the CPU
 * (cpuid) and the OS (xgetbv: the register state it saves) allow, or a lower
 * one named by MOLT_Q8_ISA=scalar|avx2|avx512vnni. AMX is never used.
 *
 * Shapes: x [T, in], W [out] rows of molt_q8_row_bytes(in), bias [out] or
 * NULL, y [T, out].
 */
#include "kernels/cpu/q8.h"

#include "core/core.h"
#include "core/dtype.h"
#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

// ----------------------------------------------------------------------------
// which path

static const char *const ISA_NAME[Q8_ISA_COUNT] = {"scalar", "avx2", "avx512vnni"};
static int            g_avail[Q8_ISA_COUNT] = {1, 0, 0};
static q8_isa         g_isa = Q8_SCALAR;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && defined(__GNUC__)
static void detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int osxsave = !!(c & (1u << 27)), avx = !!(c & (1u << 28)), f16c = !!(c & (1u << 29));
    if (!osxsave || !avx) // the OS saves no AVX state: only the scalar path
        return;
    uint64_t xcr0 = cpu_xgetbv0();
    int ymm_os = (xcr0 & 0x6) == 0x6;    // XMM + YMM state
    int zmm_os = (xcr0 & 0xE6) == 0xE6;  // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return;
    int avx2 = !!(b & (1u << 5)), f = !!(b & (1u << 16)), bw = !!(b & (1u << 30));
    int vl = !!(b & (1u << 31)), vnni = !!(c & (1u << 11));
    g_avail[Q8_AVX2] = ymm_os && avx2 && f16c;
    g_avail[Q8_AVX512VNNI] = zmm_os && f && bw && vl && vnni && f16c;
}
#else
static void detect(void) {}
#endif

static void choose(void) {
    detect();
    g_isa = (q8_isa)cpu_isa_pick(g_avail, Q8_ISA_COUNT, ISA_NAME, "MOLT_Q8_ISA");
}

int cpu_isa_pick(const int *avail, int n, const char *const *names, const char *env) {
    int best = 0;
    for (int i = 0; i < n; i++)
        if (avail[i])
            best = i;
    const char *e = getenv(env);
    for (int i = 0; e && i < n; i++)
        if (!strcmp(e, names[i]) && i < best)
            best = i;
    while (best > 0 && !avail[best]) // a requested lower path the CPU lacks: the next one down
        best--;
    return best;
}

int cpu_q8_isa(void) {
    pthread_once(&g_once, choose);
    return (int)g_isa;
}

int cpu_q8_isa_available(int isa) {
    pthread_once(&g_once, choose);
    return isa >= 0 && isa < Q8_ISA_COUNT && g_avail[isa];
}

const char *cpu_q8_isa_name(int isa) {
    return isa >= 0 && isa < Q8_ISA_COUNT ? ISA_NAME[isa] : "?";
}

// ----------------------------------------------------------------------------
// activations

// one block of 32 (zero-padded) values → 32 int8 (offset: + 128) and its
// scale; plain loops the compiler vectorizes (K_SIMD), the same bits in every
// clone (no contraction, an order-free max)
K_SIMD static float quant_block(int8_t *t, const float *v, int offset) {
    float amax = 0.0f;
    int   bad = 0;
    for (int k = 0; k < MOLT_Q8_BLOCK; k++) {
        float a = fabsf(v[k]);
        bad |= !(a <= FLT_MAX);
        amax = a > amax ? a : amax;
    }
    if (bad || !(amax >= 1e-30f)) {
        memset(t, offset ? 0x80 : 0, MOLT_Q8_BLOCK);
        return bad ? NAN : 0.0f;
    }
    float inv = 127.0f / amax;
    for (int k = 0; k < MOLT_Q8_BLOCK; k++) {
        float r = v[k] * inv;
        r = (r + 12582912.0f) - 12582912.0f; // round to nearest even (|r| ≤ 2^22)
        r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
        int q = (int)r;
        t[k] = (int8_t)(offset ? q ^ -128 : q); // offset: q + 128 as a byte
    }
    return amax / 127.0f;
}

// one row of in floats → nb blocks (q8.h's contract); offset: store qx + 128
void cpu_q8_quantize_act(uint8_t *q, float *d, const float *x, int in, int offset) {
    size_t nb = molt_q8_blocks((size_t)(in > 0 ? in : 0));
    for (size_t b = 0; b < nb; b++) {
        float        v[MOLT_Q8_BLOCK];
        const float *src = x + b * MOLT_Q8_BLOCK;
        size_t       k0 = b * MOLT_Q8_BLOCK, n = (size_t)in - k0;
        if (n < MOLT_Q8_BLOCK) { // the last, short block: zero-padded
            memcpy(v, src, sizeof(float) * n);
            memset(v + n, 0, sizeof(float) * (MOLT_Q8_BLOCK - n));
            src = v;
        }
        int8_t t[MOLT_Q8_BLOCK];
        d[b] = quant_block(t, src, offset);
        size_t g0 = b / MOLT_Q8_GROUP * MOLT_Q8_GROUP;
        size_t g = nb - g0 < MOLT_Q8_GROUP ? nb - g0 : MOLT_Q8_GROUP;
        uint8_t *dst = q + g0 * MOLT_Q8_BLOCK + 4 * (b - g0);
        for (int s = 0; s < 8; s++)
            memcpy(dst + 4 * g * (size_t)s, t + 4 * s, 4);
    }
}

// ----------------------------------------------------------------------------
// the scalar twin

void q8_isums_scalar(int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb) {
    for (size_t g0 = 0; g0 < nb; g0 += MOLT_Q8_GROUP) {
        size_t g = nb - g0 < MOLT_Q8_GROUP ? nb - g0 : MOLT_Q8_GROUP;
        const uint8_t *wg = w + g0 * MOLT_Q8_BLOCK, *xg = x + g0 * MOLT_Q8_BLOCK;
        for (size_t j = 0; j < g; j++) {
            int32_t s = 0;
            for (size_t k = 0; k < MOLT_Q8_BLOCK; k++) {
                size_t at = 4 * g * (k / 4) + 4 * j + k % 4;
                s += (int32_t)(int8_t)wg[at] * (int32_t)(int8_t)xg[at];
            }
            isum[g0 + j] = s;
        }
    }
}

void q8_rows_scalar(const q8_job *j, int o0, int o1) {
    size_t nb = j->a.nb;
    for (int t = 0; t < j->T; t++) {
        const uint8_t *x = j->a.q + (size_t)t * nb * MOLT_Q8_BLOCK;
        const float   *dx = j->a.d + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const uint8_t *w = j->W + (size_t)o * j->rb;
            float          a[MOLT_Q8_GROUP] = {0};
            int32_t        is[MOLT_Q8_GROUP];
            for (size_t g0 = 0; g0 < nb; g0 += MOLT_Q8_GROUP) {
                size_t g = nb - g0 < MOLT_Q8_GROUP ? nb - g0 : MOLT_Q8_GROUP;
                // one group: its blocks form a row of g blocks of their own
                q8_isums_scalar(is, w + g0 * MOLT_Q8_BLOCK, x + g0 * MOLT_Q8_BLOCK, g);
                for (size_t b = 0; b < g; b++) {
                    uint16_t h;
                    memcpy(&h, w + nb * MOLT_Q8_BLOCK + 2 * (g0 + b), 2);
                    float sc = molt_f16_to_f32(h) * dx[g0 + b];
                    a[b] += (float)is[b] * sc;
                }
            }
            float  s = q8_tree16(a);
            float *yp = j->y + (size_t)t * j->out + o;
            *yp = j->add ? *yp + s : s;
        }
    }
}

// ----------------------------------------------------------------------------
// the op

static q8_rows_fn rows_fn(int isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == Q8_AVX512VNNI)
        return q8_rows_vnni;
    if (isa == Q8_AVX2)
        return q8_rows_avx2;
#endif
    (void)isa;
    return q8_rows_scalar;
}

void cpu_q8_isums(int isa, int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == Q8_AVX512VNNI && cpu_q8_isa_available(isa)) {
        q8_isums_vnni(isum, w, x, nb);
        return;
    }
    if (isa == Q8_AVX2 && cpu_q8_isa_available(isa)) {
        q8_isums_avx2(isum, w, x, nb);
        return;
    }
#endif
    (void)isa;
    q8_isums_scalar(isum, w, x, nb);
}

#define TR 16           // output rows per unit of the split over threads
#define STACK_BYTES 65536 // quantized activations up to this size stay on the stack

typedef struct q8_qjob {
    uint8_t     *q;
    float       *d;
    const float *x;
    int          in, T, offset;
    size_t       nb;
} q8_qjob;

static void quant_run(void *arg, int ith, int nth) {
    const q8_qjob *j = arg;
    int lo, hi;
    molt_pool_range(j->T, ith, nth, &lo, &hi);
    for (int t = lo; t < hi; t++)
        cpu_q8_quantize_act(j->q + (size_t)t * j->nb * MOLT_Q8_BLOCK, j->d + (size_t)t * j->nb,
                            j->x + (size_t)t * j->in, j->in, j->offset);
}

typedef struct q8_run_arg {
    const q8_job *j;
    q8_rows_fn    fn;
} q8_run_arg;

static void rows_run(void *arg, int ith, int nth) {
    const q8_run_arg *r = arg;
    int tiles = (r->j->out + TR - 1) / TR, lo, hi;
    molt_pool_range(tiles, ith, nth, &lo, &hi);
    int o1 = hi * TR < r->j->out ? hi * TR : r->j->out;
    if (lo * TR < o1)
        r->fn(r->j, lo * TR, o1);
}

// rows [t0, t0 + T) of x through the quantized buffer buf (room for T rows)
static void q8_chunk(const molt_exec *ex, int isa, float *y, const float *x, const void *W,
                     int T, int in, int out, int add, void *buf) {
    size_t nb = molt_q8_blocks((size_t)in), xb = nb * MOLT_Q8_BLOCK;
    q8_qjob qj = {buf, (float *)((uint8_t *)buf + (size_t)T * xb), x, in, T,
                  isa == Q8_AVX512VNNI, nb};
    int qth = T >= 8 ? (ex->nth < T ? ex->nth : T) : 1;
    if (qth <= 1)
        quant_run(&qj, 0, 1);
    else
        molt_pool_run(qth, quant_run, &qj);
    q8_job j = {y, W, molt_q8_row_bytes((size_t)in), T, out, add, {qj.q, qj.d, nb}};
    q8_run_arg ra = {&j, rows_fn(isa)};
    int tiles = (out + TR - 1) / TR;
    double macs = (double)T * in * out; // below 5e5 (cpu_matmul's 1e6 flops): one thread
    int nth = macs < 5e5 ? 1 : (ex->nth < tiles ? ex->nth : tiles);
    if (nth <= 1)
        rows_run(&ra, 0, 1);
    else
        molt_pool_run(nth, rows_run, &ra);
}

void cpu_matmul_q8(const molt_exec *ex, int isa, float *y, const float *x, const void *W,
                   const float *bias, int T, int in, int out, int accumulate) {
    if (T <= 0 || out <= 0)
        return;
    if (bias) {
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++)
                y[(size_t)t * out + o] = accumulate ? y[(size_t)t * out + o] + bias[o] : bias[o];
    } else if (in <= 0 && !accumulate) {
        memset(y, 0, sizeof(float) * (size_t)T * (size_t)out);
    }
    if (in <= 0)
        return;
    if (!cpu_q8_isa_available(isa))
        isa = Q8_SCALAR;
    int    add = accumulate || bias;
    size_t nb = molt_q8_blocks((size_t)in), per = nb * (MOLT_Q8_BLOCK + sizeof(float));
    _Alignas(64) uint8_t stack[STACK_BYTES];
    if ((size_t)T * per <= sizeof stack) {
        q8_chunk(ex, isa, y, x, W, T, in, out, add, stack);
        return;
    }
    void *heap = molt__malloc_aligned((size_t)T * per);
    if (heap) {
        q8_chunk(ex, isa, y, x, W, T, in, out, add, heap);
        molt__free_aligned(heap);
        return;
    }
    // out of memory: as many rows at a time as the stack buffer holds
    int rows = (int)(sizeof stack / per);
    if (rows < 1) { // a row of > 58k inputs and no memory: no result to give
        for (size_t i = 0; i < (size_t)T * (size_t)out; i++)
            y[i] = NAN;
        return;
    }
    for (int t = 0; t < T; t += rows) {
        int n = T - t < rows ? T - t : rows;
        q8_chunk(ex, isa, y + (size_t)t * out, x + (size_t)t * in, W, n, in, out, add, stack);
    }
}
