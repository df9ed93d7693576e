/*
 * dtype.c — element types of weight tensors (dtype.h): names, sizes and the
 * bit-exact fp16 / bf16 conversions (narrowing rounds to nearest, ties to
 * even; NaN stays NaN, overflow goes to inf).
 */
#include "core/dtype.h"

#include <float.h>
#include <math.h>
#include <string.h>

static const char *const NAME[MOLT_DTYPE_COUNT] = {"f32", "bf16", "f16", "q8_0"};
static const size_t      SIZE[MOLT_DTYPE_COUNT] = {4, 2, 2, 0};

const char *molt_dtype_name(molt_dtype t) { return (unsigned)t < MOLT_DTYPE_COUNT ? NAME[t] : "?"; }
size_t      molt_dtype_size(molt_dtype t) { return (unsigned)t < MOLT_DTYPE_COUNT ? SIZE[t] : 0; }
bool        molt_dtype_parse(const char *s, molt_dtype *out) {
    for (int i = 0; s && i < MOLT_DTYPE_COUNT; i++)
        if (!strcmp(s, NAME[i])) {
            *out = (molt_dtype)i;
            return true;
        }
    return false;
}


static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float molt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t molt_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) // NaN: keep sign and top payload, force quiet
        return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7FFFu + ((x >> 16) & 1u);     // overflow rounds into inf, as it should
    return (uint16_t)(x >> 16);
}

float molt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1F) // inf / NaN (payload kept)
        return bits_f32(sign | 0x7F800000u | (man << 13));
    if (exp != 0)
        return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0)
        return bits_f32(sign);
    // subnormal: man * 2^-24, normalized
    uint32_t e = 113;
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    return bits_f32(sign | (e << 23) | ((man & 0x3FFu) << 13));
}

uint16_t molt_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) // NaN
        return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    if (ax >= 0x477FF000u) // >= 65520 (halfway to 2^16) rounds to inf
        return (uint16_t)(sign | 0x7C00u);
    if (ax >= 0x38800000u) { // normal: >= 2^-14
        uint32_t h = ((ax >> 23) - 112u) << 10 | ((ax >> 13) & 0x3FFu);
        uint32_t rem = ax & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) // <= 2^-25: rounds to zero (2^-25 is a tie with 0, even)
        return sign;
    // subnormal: value / 2^-24 = man * 2^(e - 126), shift in [14, 24]
    uint32_t e = ax >> 23, man = (ax & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126u - e;
    uint32_t h = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}


// ----------------------------------------------------------------------------
// q8_0 (layout: dtype.h)

size_t molt_w_bytes(molt_dtype dt, size_t rows, size_t cols) {
    if (dt == MOLT_Q8_0)
        return rows * molt_q8_row_bytes(cols);
    return rows * cols * molt_dtype_size(dt);
}

bool molt_q8_quantize_row(uint8_t *row, const float *x, size_t cols) {
    size_t nb = molt_q8_blocks(cols);
    uint8_t *dp = row + nb * MOLT_Q8_BLOCK;
    memset(row, 0, molt_q8_row_bytes(cols));
    for (size_t b = 0; b < nb; b++) {
        size_t k0 = b * MOLT_Q8_BLOCK, n = cols - k0 < MOLT_Q8_BLOCK ? cols - k0 : MOLT_Q8_BLOCK;
        float amax = 0.0f;
        for (size_t k = 0; k < n; k++) {
            float a = fabsf(x[k0 + k]);
            if (!(a <= FLT_MAX))
                return false;
            amax = a > amax ? a : amax;
        }
        uint16_t dh = molt_f32_to_f16(amax / 127.0f);
        if ((dh & 0x7C00u) == 0x7C00u)
            return false;
        float d = molt_f16_to_f32(dh);
        for (size_t k = 0; k < n && d > 0.0f; k++) {
            float q = nearbyintf(x[k0 + k] / d);
            q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
            row[molt_q8_pos(nb, b, k)] = (uint8_t)(int8_t)q;
        }
        memcpy(dp + 2 * b, &dh, 2);
    }
    return true;
}

void molt_q8_dequantize_row(float *x, const uint8_t *row, size_t cols) {
    size_t nb = molt_q8_blocks(cols);
    for (size_t k = 0; k < cols; k++) {
        size_t b = k / MOLT_Q8_BLOCK;
        uint16_t dh;
        memcpy(&dh, row + nb * MOLT_Q8_BLOCK + 2 * b, 2);
        x[k] = (float)(int8_t)row[molt_q8_pos(nb, b, k % MOLT_Q8_BLOCK)] * molt_f16_to_f32(dh);
    }
}

bool molt_q8_pack_row(uint8_t *row, const int8_t *q, const uint16_t *d, size_t cols) {
    size_t nb = molt_q8_blocks(cols);
    memset(row, 0, molt_q8_row_bytes(cols));
    for (size_t k = 0; k < cols; k++) {
        if (q[k] == -128)
            return false;
        row[molt_q8_pos(nb, k / MOLT_Q8_BLOCK, k % MOLT_Q8_BLOCK)] = (uint8_t)q[k];
    }
    for (size_t b = 0; b < nb; b++) {
        if ((d[b] & 0x8000u) || (d[b] & 0x7C00u) == 0x7C00u)
            return false;
        memcpy(row + nb * MOLT_Q8_BLOCK + 2 * b, &d[b], 2);
    }
    return true;
}

void molt_q8_unpack_row(int8_t *q, uint16_t *d, const uint8_t *row, size_t cols) {
    size_t nb = molt_q8_blocks(cols);
    for (size_t k = 0; k < cols; k++)
        q[k] = (int8_t)row[molt_q8_pos(nb, k / MOLT_Q8_BLOCK, k % MOLT_Q8_BLOCK)];
    memcpy(d, row + nb * MOLT_Q8_BLOCK, 2 * nb);
}
