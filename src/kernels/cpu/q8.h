/*
 * q8.h — internals of the q8_0 matmul (q8.c, q8_x86.c): the instruction-set
 * paths, the quantized activations and the tile kernels each path provides.
 *
 * The arithmetic every path performs (bit for bit): the activations x[T, in]
 * are quantized per block of 32, dx = max|x|/127 (f32), qx = round_even(x·(127/
 * max|x|)) (a block with max|x| < 1e-30 is zero; one with inf/NaN gets dx = NaN
 * and qx = 0), laid out like a weight row's int8 part (dtype.h). For output
 * (t, o), block b contributes
 *     p_b = (float)isum_b · (dw_b · dx_b),   isum_b = Σ_k qw·qx  (exact int32)
 * and lane j = b mod 16 sums its blocks in block order, a_j = ((p_j + p_{j+16})
 * + p_{j+32}) + …, from +0. The sum is then the fixed tree h_j = a_j + a_{j+8},
 * q_j = h_j + h_{j+4}, r_j = q_j + q_{j+2}, s = r_0 + r_1, and y = s (or y + s
 * with bias / accumulate). So scalar, AVX2 and AVX-512 VNNI give the same bits,
 * at any thread count (rows are split, never the sum).
 */
#ifndef MOLT_KERNELS_CPU_Q8_H
#define MOLT_KERNELS_CPU_Q8_H

#include <stddef.h>
#include <stdint.h>

typedef enum q8_isa { Q8_SCALAR = 0, Q8_AVX2, Q8_AVX512VNNI, Q8_ISA_COUNT } q8_isa;

// quantized activations: row t at q + t·nb·32 (int8, or x + 128 as uint8 when
// offset: the VNNI path) and d + t·nb
typedef struct q8_act {
    const uint8_t *q;
    const float   *d;
    size_t         nb;
} q8_act;

typedef struct q8_job {
    float         *y;     // [T, out]
    const uint8_t *W;     // [out] rows of rb bytes
    size_t         rb;
    int            T, out;
    int            add;   // y += (bias already written, or accumulate)
    q8_act         a;
} q8_job;

// output rows [o0, o1) for every activation row: y = (add ? y + s : s)
typedef void (*q8_rows_fn)(const q8_job *j, int o0, int o1);

void q8_rows_scalar(const q8_job *j, int o0, int o1);
#if defined(__x86_64__) && defined(__GNUC__)
void q8_rows_avx2(const q8_job *j, int o0, int o1);
void q8_rows_vnni(const q8_job *j, int o0, int o1);
// exact per-block integer sums isum[b] of one weight row and one activation
// row (signed int8 layout; the VNNI variant offsets it itself), for the tests
void q8_isums_avx2(int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb);
void q8_isums_vnni(int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb);
#endif
void q8_isums_scalar(int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb);

// the fixed 16-lane tree of the contract
static inline float q8_tree16(const float *a) {
    float h[8], q[4];
    for (int j = 0; j < 8; j++)
        h[j] = a[j] + a[j + 8];
    for (int j = 0; j < 4; j++)
        q[j] = h[j] + h[j + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

#endif
