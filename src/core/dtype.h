/*
 * dtype.h — the element type a weight tensor carries, and molt_w, the typed
 * view of a weight matrix that the typed ops take (kernels.h: k_matmul_w).
 * f32, bf16, f16, and q8_0: int8 in blocks of 32 with one f16 scale per block
 * (layout below), a molt_dtype like the others — the same op and mixer
 * signatures, its block scales behind each row's data.
 */
#ifndef MOLT_DTYPE_H
#define MOLT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum molt_dtype {
    MOLT_F32 = 0,
    MOLT_BF16,
    MOLT_F16,
    MOLT_Q8_0, // blocked: no per-element size (molt_w_bytes)
    MOLT_DTYPE_COUNT
} molt_dtype;

const char *molt_dtype_name(molt_dtype t);           // "f32", "bf16", "f16", "q8_0"
// bytes per element (0: not a dtype, or a blocked one: q8_0)
size_t      molt_dtype_size(molt_dtype t);
bool        molt_dtype_parse(const char *s, molt_dtype *out);

float    molt_bf16_to_f32(uint16_t h);
uint16_t molt_f32_to_bf16(float f);
float    molt_f16_to_f32(uint16_t h);
uint16_t molt_f32_to_f16(float f);

// A weight matrix [rows, cols] (PyTorch Linear layout [out, in]), row-major,
// of element type dt.
typedef struct molt_w {
    molt_dtype  dt;
    const void *data;
} molt_w;

static inline molt_w molt_w_f32(const float *p) {
    molt_w w = {MOLT_F32, p};
    return w;
}

// ----------------------------------------------------------------------------
// q8_0. A matrix [rows, cols] is `rows` rows of molt_q8_row_bytes(cols) bytes,
// each row on its own (a range of rows is a matrix too: the MLP's gate and up
// stay one [2F, d] matrix). A row of nb = ⌈cols/32⌉ blocks is
//
//   [ int8 q: nb·32 bytes, interleaved ][ f16 d: nb scales ][ zeros to 64·k ]
//
// and weight i of block b is q·d (exact in f32). The last block is padded
// with q = 0. Interleaved: the blocks come in groups of 16 (the last group
// holds g = nb mod 16 blocks, or 16); a group of g blocks is 8 slices of g·4
// bytes, slice s holding bytes 4s..4s+3 of each block of the group in block
// order, so byte k of block j of the group sits at 4g·(k/4) + 4j + k%4 from
// the group's start. That is the order an int8 dot-product instruction sums
// 4 bytes into one 32-bit lane: one 64-byte slice gives 16 blocks' partial
// sums in 16 lanes, with no reduction across lanes (kernels/cpu/q8.c).
// Values are in [-127, 127] (never -128); scales are finite and ≥ 0.
// Quantizing (round to nearest): d = f16(f32(max|x| / 127)), q = round_even(x / d),
// clamped to ±127 (q = 0 when d = 0). A dequantized row quantizes back to the
// same bytes whenever its scales are normal f16 numbers (block max ≥ 127·2^-14).
#define MOLT_Q8_BLOCK 32
#define MOLT_Q8_GROUP 16 // blocks per interleaved group

static inline size_t molt_q8_blocks(size_t cols) {
    return (cols + MOLT_Q8_BLOCK - 1) / MOLT_Q8_BLOCK;
}
static inline size_t molt_q8_row_bytes(size_t cols) {
    return (molt_q8_blocks(cols) * (MOLT_Q8_BLOCK + 2) + 63) & ~(size_t)63;
}
// byte offset of element k (< 32) of block b within a row of nb blocks
static inline size_t molt_q8_pos(size_t nb, size_t b, size_t k) {
    size_t g0 = b / MOLT_Q8_GROUP * MOLT_Q8_GROUP;
    size_t g = nb - g0 < MOLT_Q8_GROUP ? nb - g0 : MOLT_Q8_GROUP;
    return g0 * MOLT_Q8_BLOCK + 4 * g * (k / 4) + 4 * (b - g0) + k % 4;
}
// Bytes of a [rows, cols] matrix of type dt (0 for an invalid dt).
size_t molt_w_bytes(molt_dtype dt, size_t rows, size_t cols);
// One row of cols floats → q8_0 (row: molt_q8_row_bytes(cols) bytes, fully
// written, padding included). False (row unspecified) when a value is not
// finite or a block's scale overflows f16 (max|x| > 127·65504).
bool molt_q8_quantize_row(uint8_t *row, const float *x, size_t cols);
void molt_q8_dequantize_row(float *x, const uint8_t *row, size_t cols);
// plain (row-major) form ⇄ row: q [cols] int8, d [⌈cols/32⌉] f16 bits. pack
// returns false (row unspecified) for a q of -128 or a scale that is negative,
// inf or NaN; the padding is zeroed.
bool molt_q8_pack_row(uint8_t *row, const int8_t *q, const uint16_t *d, size_t cols);
void molt_q8_unpack_row(int8_t *q, uint16_t *d, const uint8_t *row, size_t cols);

#endif
