/*
 * safetensors.h — reading (mmap, single file or sharded) and writing
 * (atomic) of HF safetensors files.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of JSON header | data
 *   header: { "__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
 *             "data_offsets": [begin, end]}, ... }   offsets relative to data start
 * Every offset, shape and dtype is validated against the file size before any
 * tensor is exposed: nbytes(dtype, shape) == end - begin, begin <= end <=
 * data size, no overflow. Tensors never alias each other's byte ranges.
 */
#ifndef MOLT_SAFETENSORS_H
#define MOLT_SAFETENSORS_H

// file names of an HF model directory (single file, or sharded with an index)
#define ST_INDEX_NAME  "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

#include "core/core.h"
#include "core/dtype.h" // the fp16 / bf16 conversions

#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t); // "F32", ...
size_t      st_dtype_size(st_dtype t);
bool        st_dtype_parse(const char *s, st_dtype *out);

typedef struct st_tensor {
    const char *name;
    st_dtype    dtype;
    int         ndim;
    int64_t     shape[ST_MAX_DIMS];
    int64_t     numel;
    const void *data;   // points into the mapping (may be unaligned)
    size_t      nbytes;
    int         shard;  // index of the file it lives in
} st_tensor;

typedef struct st_file st_file;

// path: a .safetensors file, a model.safetensors.index.json, or a directory
// holding model.safetensors or model.safetensors.index.json.
molt_status st_open(molt_ctx *ctx, const char *path, st_file **out);
void        st_close(st_file *f);
int              st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name); // NULL if absent
const char      *st_shard_path(const st_file *f, int shard);
// Value of a __metadata__ key of the first shard (NULL if absent).
const char      *st_metadata(const st_file *f, const char *key);

// Copies a tensor into dst as f32 (converts F16 / BF16 / F64; integer and
// bool dtypes are refused with MOLT_ERR_UNSUPPORTED).
molt_status st_read_f32(molt_ctx *ctx, const st_tensor *t, float *dst);
// Copies an I32/I64 tensor as int32 (range-checked).
molt_status st_read_i32(molt_ctx *ctx, const st_tensor *t, int32_t *dst);

// Parses a header held in memory (the whole file's bytes). Used by st_open and
// by the fuzz target. On success *out owns copies of nothing: its tensors
// point into buf, which must outlive it.
molt_status st_parse_buffer(molt_ctx *ctx, const char *what, const uint8_t *buf, size_t len,
                            st_file **out);

// ---- writing ---------------------------------------------------------------
typedef struct st_wtensor {
    const char *name;
    st_dtype    dtype;   // dtype written to the file (F32, BF16 or F16; any but BOOL with raw)
    int         ndim;
    int64_t     shape[ST_MAX_DIMS];
    const float *data;   // fp32 source; converted (round-to-nearest-even) if dtype != F32
    const void  *raw;    // or (data NULL): the tensor's bytes in dtype, written as they are
} st_wtensor;

// Writes path atomically: path.tmp.<pid>, fsync, rename, fsync of the directory.
// Tensors are written in the order given; metadata: NULL or pairs of
// key/value strings terminated by a NULL key.
molt_status st_write(molt_ctx *ctx, const char *path, const st_wtensor *ts, int n,
                     const char *const *metadata);

#endif
