/*
 * matmul_w.c — y = x · Wᵀ (+ bias) with W a typed weight (core/dtype.h).
 *
 *   f32        the plain matmul (cpu_matmul: the same bits as k_matmul)
 *   q8_0       int8 blocks with activations quantized per block (q8.c)
 *   bf16, f16  W is read in its own type — half the bytes of f32, which is
 *              what decode is bound by. 1 ≤ T ≤ K_MATVEC_T (decode, small-
 *              batch decode): matvec.c's cpu_matvec_half, the widening in
 *              registers, each element cpu_dot64 of the widened row (AVX-512,
 *              or its scalar twin: the same bits; MOLT_MATVEC=scalar forces
 *              the twin). Larger T (prefill, training-size T): widened to fp32 a
 *              tile at a time, TRB output rows × KC input columns in a
 *              thread's scratch, then one sgemm per tile. Each output element
 *              is summed over the same fixed KC chunks in the same order
 *              whichever thread owns its rows, so either path is bit-identical
 *              at any thread count.
 *   q8_0 at T ≥ cpu_q8_sgemm_t() (Q8_SGEMM_T = 128; MOLT_Q8_SGEMM_T=N, 0 = never):
 *              the same tiles, the weights dequantized exactly (an int8 times
 *              its block's f16 scale is exact in f32) and multiplied with the
 *              fp32 activations by sgemm (int8 weights, fp32 activations:
 *              closer to the dequantized product than q8.c's quantized
 *              activations). Where many rows share each weight the product is
 *              compute-bound, and without VNNI the int8 path costs more
 *              operations per multiply than fp32 FMAs (BENCHMARKS.md, #15).
 *
 * Shapes: x [T, in], W [out, in], bias [out] or NULL, y [T, out].
 */
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/core.h"
#include "core/pool.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TR 16          // output rows per tile (one cache line of y per row of x)
#define KC K_MATVEC_KC // input columns per tile: TR·KC floats = 32 KB
#define TRB 128        // output rows per widened tile at T > K_MATVEC_T: TRB·KC floats = 256 KB
                       // of heap scratch a thread; sgemm over 128 rows runs ~1.4× faster than
                       // over 16 (OpenBLAS packs x once per call)

// bf16 → f32 is the top half of the f32 bits. f16 → f32 without branches,
// so the loop vectorizes: shift the 15 magnitude bits into place under an
// f32 exponent bias 112 lower (0x38000000), then (a) normal numbers are exact
// after adding the bias back by a multiply by 2^112 — done in the integer
// domain instead (+ (112 << 23)) — and inf/NaN get exponent 255; (b)
// subnormals (exponent 0) are man·2^-24, computed as a float multiply of the
// exact integer mantissa. Exhaustively equal to molt_f16_to_f32 (all 65536
// inputs, tests/test_kernels.c: cpu_widen_half).
K_SIMD void cpu_widen_half(float *dst, const uint16_t *h, int n, int is_bf16) {
    if (is_bf16) {
        for (int i = 0; i < n; i++) {
            uint32_t b = (uint32_t)h[i] << 16;
            memcpy(dst + i, &b, 4);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        uint32_t x = h[i], sign = (x & 0x8000u) << 16, mag = x & 0x7FFFu;
        uint32_t e = mag >> 10;
        uint32_t normal = (mag << 13) + (112u << 23);          // exponent + 112
        normal = e == 0x1Fu ? normal + (112u << 23) : normal;   // inf / NaN → 255
        float    sub = (float)(mag & 0x3FFu) * 5.9604644775390625e-8f; // man · 2^-24
        uint32_t subb;
        memcpy(&subb, &sub, 4);
        uint32_t b = sign | (e == 0 ? subb : normal);
        memcpy(dst + i, &b, 4);
    }
}

// q8_0 row o's columns [k0, k0 + n) dequantized: k0 a multiple of KC (= one interleaved
// group of MOLT_Q8_GROUP blocks, dtype.h), n ≤ KC
static void dequant_q8(float *dst, const uint8_t *row, size_t nb, size_t k0, int n) {
    size_t g0 = k0 / MOLT_Q8_BLOCK, g = nb - g0 < MOLT_Q8_GROUP ? nb - g0 : MOLT_Q8_GROUP;
    const uint8_t *q = row + g0 * MOLT_Q8_BLOCK; // [k / 4][block][k % 4]
    float d[MOLT_Q8_GROUP];
    for (size_t b = 0; b < g; b++) {
        uint16_t h;
        memcpy(&h, row + nb * MOLT_Q8_BLOCK + 2 * (g0 + b), 2);
        d[b] = molt_f16_to_f32(h);
    }
    if ((size_t)n == g * MOLT_Q8_BLOCK) { // whole blocks: four bytes of each block in turn
        for (int j = 0; j < MOLT_Q8_BLOCK / 4; j++)
            for (size_t b = 0; b < g; b++)
                for (int k = 0; k < 4; k++)
                    dst[b * MOLT_Q8_BLOCK + 4 * (size_t)j + k] =
                        (float)(int8_t)q[4 * g * (size_t)j + 4 * b + k] * d[b];
        return;
    }
    for (int i = 0; i < n; i++) { // a ragged last block
        size_t b = (size_t)i / MOLT_Q8_BLOCK, k = (size_t)i % MOLT_Q8_BLOCK;
        dst[i] = (float)(int8_t)q[4 * g * (k / 4) + 4 * b + k % 4] * d[b];
    }
}

// row o's columns [k0, k0 + n) of W as f32
static void widen(float *dst, molt_w W, int in, int o, int k0, int n) {
    if (W.dt == MOLT_Q8_0) {
        size_t rb = molt_q8_row_bytes((size_t)in);
        dequant_q8(dst, (const uint8_t *)W.data + (size_t)o * rb, molt_q8_blocks((size_t)in),
                   (size_t)k0, n);
        return;
    }
    cpu_widen_half(dst, (const uint16_t *)W.data + (size_t)o * in + k0, n, W.dt == MOLT_BF16);
}

// q8_0 products of at least this many rows take the dequantize + sgemm tiles
#define Q8_SGEMM_T 128
static int            g_q8_sgemm_t = Q8_SGEMM_T;
static pthread_once_t g_q8_once = PTHREAD_ONCE_INIT;
static void           q8_choose(void) {
    const char *e = getenv("MOLT_Q8_SGEMM_T");
    if (e && *e) {
        int v = atoi(e);
        g_q8_sgemm_t = v <= 0 ? 0 : v;
    }
}
int cpu_q8_sgemm_t(void) {
    pthread_once(&g_q8_once, q8_choose);
    return g_q8_sgemm_t;
}

typedef struct mw_task {
    float       *y;
    const float *x;
    molt_w       W;
    int          T, in, out, isa;
    int          add; // y already holds what the product adds to (bias or accumulate)
    float       *tiles; // T > K_MATVEC_T: TRB·KC floats per thread (NULL: no memory for them)
} mw_task;

// output rows [o0, o1), o1 - o0 ≤ TRB, T > K_MATVEC_T; tile: TRB·KC floats of scratch
static void mw_tile(const mw_task *j, float *tile, int o0, int o1) {
    int rows = o1 - o0, in = j->in;
    for (int k0 = 0; k0 < in; k0 += KC) {
        int kc = in - k0 < KC ? in - k0 : KC;
        for (int r = 0; r < rows; r++)
            widen(tile + (size_t)r * kc, j->W, in, o0 + r, k0, kc);
        int add = j->add || k0 > 0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, rows, kc, 1.0f, j->x + k0, in,
                    tile, kc, add ? 1.0f : 0.0f, j->y + o0, j->out);
    }
}

// rows per work unit: TR for the matvec (T ≤ K_MATVEC_T), TRB for the widen + sgemm tiles
// (q8_0 weights: always the tiles). Units are fixed by the shape alone, never by the thread
// count: every sgemm call has the same operands whichever thread makes it, so the result is
// the same at any thread count.
static int mw_unit(int T, molt_dtype dt) {
    return T <= K_MATVEC_T && dt != MOLT_Q8_0 ? TR : TRB;
}

static void mw_run(void *arg, int ith, int nth) {
    const mw_task *j = arg;
    int u = mw_unit(j->T, j->W.dt), units = (j->out + u - 1) / u, lo, hi;
    molt_pool_range(units, ith, nth, &lo, &hi);
    int o0 = lo * u, o1 = hi * u < j->out ? hi * u : j->out;
    if (o0 >= o1)
        return;
    if (u == TR) {
        cpu_matvec_half(j->isa, j->W.dt == MOLT_BF16, j->y, j->out, j->x, j->W.data, j->T,
                        j->in, o0, o1, j->add);
        return;
    }
    if (!j->tiles) { // no scratch for this call: 16-row slices on the stack for every thread
        float small[TR * KC]; // (another sum order than 128-row tiles, the same at any thread count)
        for (int o = o0; o < o1; o += TR)
            mw_tile(j, small, o, o + TR < o1 ? o + TR : o1);
        return;
    }
    float *tile = j->tiles + (size_t)ith * TRB * KC;
    for (int o = o0; o < o1; o += TRB)
        mw_tile(j, tile, o, o + TRB < o1 ? o + TRB : o1);
}

// the path cpu_matvec_half takes: the best matvec.c has, MOLT_MATVEC=scalar the twin
static int            g_isa = MV_SCALAR;
static pthread_once_t g_isa_once = PTHREAD_ONCE_INIT;
static void           mw_choose(void) {
    const char *e = getenv("MOLT_MATVEC");
    g_isa = e && !strcmp(e, "scalar") ? MV_SCALAR : cpu_matvec_isa();
}

void cpu_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias,
                  int T, int in, int out, int accumulate) {
    pthread_once(&g_isa_once, mw_choose);
    cpu_matmul_w_path(ex, g_isa, y, x, W, bias, T, in, out, accumulate);
}

void cpu_matmul_w_path(const molt_exec *ex, int isa, float *y, const float *x, molt_w W,
                       const float *bias, int T, int in, int out, int accumulate) {
    if (W.dt == MOLT_F32) {
        cpu_matmul(ex, y, x, W.data, bias, T, in, out, accumulate);
        return;
    }
    int q8t = W.dt == MOLT_Q8_0 ? cpu_q8_sgemm_t() : 0;
    if (W.dt == MOLT_Q8_0 && !(q8t > 0 && T >= q8t)) {
        cpu_matmul_q8(ex, cpu_q8_isa(), y, x, W.data, bias, T, in, out, accumulate);
        return;
    }
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
    // --matmul bf16: prefill-size products round x to bf16 and multiply bf16 × bf16
    if (T > K_MATVEC_T && W.dt == MOLT_BF16 && (ex->flags & MOLT_EXEC_BF16) &&
        cpu_gemm_bf16(ex, y, x, (const uint16_t *)W.data, T, in, out, accumulate || bias))
        return;
    int    u = mw_unit(T, W.dt), units = (out + u - 1) / u;
    double flops = 2.0 * T * (double)in * out;
    int    nth = flops < 2e5 ? 1 : (ex->nth < units ? ex->nth : units);
    float *tiles = u == TRB ? malloc(sizeof(float) * TRB * KC * (size_t)nth) : NULL;
    mw_task j = {y, x, W, T, in, out, isa, accumulate || bias, tiles};
    if (nth <= 1)
        mw_run(&j, 0, 1);
    else
        molt_pool_run(nth, mw_run, &j);
    free(tiles);
}

// q8_0: the dequantized weights (q·d, exact) against the unquantized x
static void matmul_q8_ref(float *y, const float *x, const uint8_t *W, const float *bias, int T,
                          int in, int out, int accumulate) {
    float *w = molt__malloc(sizeof(float) * (size_t)(in > 0 ? in : 1));
    MOLT_ASSERT(w);
    for (int o = 0; o < out; o++) {
        if (in > 0)
            molt_q8_dequantize_row(w, W + (size_t)o * molt_q8_row_bytes((size_t)in), (size_t)in);
        for (int t = 0; t < T; t++) {
            double s = bias ? (double)bias[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += (double)x[(size_t)t * in + i] * (double)w[i];
            float *dst = &y[(size_t)t * out + o];
            *dst = accumulate ? *dst + (float)s : (float)s;
        }
    }
    molt__free(w);
}

void k_matmul_w_ref(float *y, const float *x, molt_w W, const float *bias, int T, int in, int out,
                    int accumulate) {
    if (W.dt == MOLT_Q8_0) {
        matmul_q8_ref(y, x, W.data, bias, T, in, out, accumulate);
        return;
    }
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = bias ? (double)bias[o] : 0.0;
            for (int i = 0; i < in; i++) {
                size_t k = (size_t)o * in + i;
                double w = W.dt == MOLT_F32    ? (double)((const float *)W.data)[k]
                           : W.dt == MOLT_BF16 ? (double)molt_bf16_to_f32(((const uint16_t *)W.data)[k])
                                               : (double)molt_f16_to_f32(((const uint16_t *)W.data)[k]);
                s += (double)x[(size_t)t * in + i] * w;
            }
            float *dst = &y[(size_t)t * out + o];
            *dst = accumulate ? *dst + (float)s : (float)s;
        }
}
