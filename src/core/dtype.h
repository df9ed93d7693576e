/*
 * dtype.h — the element type a weight tensor carries, and molt_w, the typed
 * view of a weight matrix that the typed ops take (kernels.h: k_matmul_w).
 * f32, bf16 and f16 today; a quantized type slots in as a new molt_dtype
 * (with its block scales behind data) without new op or mixer signatures.
 */
#ifndef MOLT_DTYPE_H
#define MOLT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum molt_dtype { MOLT_F32 = 0, MOLT_BF16, MOLT_F16, MOLT_DTYPE_COUNT } molt_dtype;

const char *molt_dtype_name(molt_dtype t);           // "f32", "bf16", "f16"
size_t      molt_dtype_size(molt_dtype t);           // bytes per element (0: not a dtype)
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

#endif
