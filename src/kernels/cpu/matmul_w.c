/*
 * matmul_w.c — y = x · Wᵀ (+ bias) with W a typed weight (core/dtype.h).
 *
 *   f32        the plain matmul (cpu_matmul: the same bits as k_matmul)
 *   q8_0       int8 blocks with activations quantized per block (q8.c)
 *   bf16, f16  W is read in its own type — half the bytes of f32, which is
 *              what decode is bound by — and widened to fp32 a tile at a time:
 *              TR output rows × KC input columns, on the stack. A tile then
 *              meets x by k_dotf per row (T ≤ 8, decode) or one sgemm
 *              (prefill, training-size T). Each output element is summed over
 *              the same fixed KC chunks in the same order whichever thread
 *              owns its tile, so the result is bit-identical at any thread
 *              count.
 *
 * Shapes: x [T, in], W [out, in], bias [out] or NULL, y [T, out].
 */
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/core.h"
#include "core/pool.h"

#include <cblas.h>
#include <string.h>

#define TR 16  // output rows per tile (one cache line of y per row of x)
#define KC 512 // input columns per tile: TR·KC floats = 32 KB
#define T_DOT 8

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

static void widen(float *dst, molt_w W, size_t off, int n) {
    cpu_widen_half(dst, (const uint16_t *)W.data + off, n, W.dt == MOLT_BF16);
}

// one value of cpu_widen_half
static inline float widen1(uint16_t h, int is_bf16) {
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

// Decode (T ≤ T_DOT): y[t, r] (+)= k_dotf(widened W row r, x row t) over one
// KC chunk, the widening fused into the dot product — the same operations in
// the same order as widening the tile first, so the same bits, in one pass
// over the weights instead of two. Four rows at a time: k_dotf's 8 partial
// sums are one dependency chain per row, four rows keep the adders busy.
#define MW_DOT_ROWS(R, BF)                                                                         \
    do {                                                                                           \
        float acc[R][8];                                                                           \
        memset(acc, 0, sizeof acc);                                                                \
        int i = 0;                                                                                 \
        for (; i + 8 <= kc; i += 8)                                                                \
            for (int q = 0; q < (R); q++)                                                          \
                for (int k = 0; k < 8; k++)                                                        \
                    acc[q][k] += widen1(wr[(size_t)q * ldw + i + k], BF) * xt[i + k];              \
        for (int q = 0; q < (R); q++) {                                                            \
            float s = ((acc[q][0] + acc[q][4]) + (acc[q][1] + acc[q][5])) +                        \
                      ((acc[q][2] + acc[q][6]) + (acc[q][3] + acc[q][7]));                         \
            for (int e = i; e < kc; e++)                                                           \
                s += widen1(wr[(size_t)q * ldw + e], BF) * xt[e];                                  \
            float *yp = y + (size_t)t * ldy + r + q;                                               \
            *yp = add ? *yp + s : s;                                                               \
        }                                                                                          \
    } while (0)

// rows [0, rows) of W (row stride ldw) for every x row: each row's KC chunks
// in order (y = chunk 0, then y += each next chunk), four rows at a time, so
// the weights stream row after row
#define MW_DOT_CHUNK(NAME, BF)                                                                     \
    K_SIMD static void NAME(float *y, int ldy, const float *x, int ldx, const uint16_t *w,         \
                            size_t ldw, int rows, int T, int in, int add0) {                       \
        for (int r0 = 0; r0 < rows; r0 += 4)                                                       \
            for (int k0 = 0; k0 < in; k0 += KC)                                                    \
                for (int t = 0; t < T; t++) {                                                      \
                    const float *xt = x + (size_t)t * ldx + k0;                                    \
                    int          kc = in - k0 < KC ? in - k0 : KC, add = add0 || k0 > 0, r = r0;   \
                    if (r0 + 4 <= rows) {                                                          \
                        const uint16_t *wr = w + (size_t)r * ldw + k0;                             \
                        MW_DOT_ROWS(4, BF);                                                        \
                    } else {                                                                       \
                        for (; r < rows; r++) {                                                    \
                            const uint16_t *wr = w + (size_t)r * ldw + k0;                         \
                            MW_DOT_ROWS(1, BF);                                                    \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
    }
MW_DOT_CHUNK(mw_dot_bf16, 1)
MW_DOT_CHUNK(mw_dot_f16, 0)

typedef struct mw_task {
    float       *y;
    const float *x;
    molt_w       W;
    int          T, in, out;
    int          add; // y already holds what the product adds to (bias or accumulate)
} mw_task;

// output rows [o0, o1), o1 - o0 ≤ TR
static void mw_tile(const mw_task *j, int o0, int o1) {
    float tile[TR * KC];
    int   rows = o1 - o0, in = j->in;
    if (j->T <= T_DOT) {
        const uint16_t *w = (const uint16_t *)j->W.data + (size_t)o0 * in;
        if (j->W.dt == MOLT_BF16)
            mw_dot_bf16(j->y + o0, j->out, j->x, in, w, (size_t)in, rows, j->T, in, j->add);
        else
            mw_dot_f16(j->y + o0, j->out, j->x, in, w, (size_t)in, rows, j->T, in, j->add);
        return;
    }
    for (int k0 = 0; k0 < in; k0 += KC) {
        int kc = in - k0 < KC ? in - k0 : KC;
        for (int r = 0; r < rows; r++)
            widen(tile + (size_t)r * kc, j->W, (size_t)(o0 + r) * in + (size_t)k0, kc);
        int add = j->add || k0 > 0;
        if (j->T <= T_DOT) {
            for (int t = 0; t < j->T; t++) {
                float *yt = j->y + (size_t)t * j->out + o0;
                const float *xt = j->x + (size_t)t * in + k0;
                for (int r = 0; r < rows; r++) {
                    float s = k_dotf(tile + (size_t)r * kc, xt, kc);
                    yt[r] = add ? yt[r] + s : s;
                }
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, rows, kc, 1.0f, j->x + k0,
                        in, tile, kc, add ? 1.0f : 0.0f, j->y + o0, j->out);
        }
    }
}

static void mw_run(void *arg, int ith, int nth) {
    const mw_task *j = arg;
    int tiles = (j->out + TR - 1) / TR, lo, hi;
    molt_pool_range(tiles, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++)
        mw_tile(j, i * TR, i * TR + TR < j->out ? i * TR + TR : j->out);
}

void cpu_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias,
                  int T, int in, int out, int accumulate) {
    if (W.dt == MOLT_F32) {
        cpu_matmul(ex, y, x, W.data, bias, T, in, out, accumulate);
        return;
    }
    if (W.dt == MOLT_Q8_0) {
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
    mw_task j = {y, x, W, T, in, out, accumulate || bias};
    int tiles = (out + TR - 1) / TR;
    double flops = 2.0 * T * (double)in * out;
    int nth = flops < 2e5 ? 1 : (ex->nth < tiles ? ex->nth : tiles);
    if (nth <= 1)
        mw_run(&j, 0, 1);
    else
        molt_pool_run(nth, mw_run, &j);
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
