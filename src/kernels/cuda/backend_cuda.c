/*
 * backend_cuda.c — the CUDA backend's op table (kernels.h: molt_backend),
 * filled from MOLT_CUDA_OPS (cuda_ops.h) with the cuda_* ops of dense.cu,
 * rows.cu, ssm.cu, ssm_backward.cu, ssm_rows.cu, attn.cu, train.cu, gateloop*.cu
 * and mamba3*.cu and the memory ops of mem.cu. An op of
 * MOLT_BACKEND_OPS that MOLT_CUDA_OPS does not list stays NULL: the table is
 * then refused by molt_exec_init, and molt_cuda_missing_ops names the op.
 */
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>

#define CUDA_OP(op) .op = cuda_##op,
const molt_backend molt_backend_cuda = {
    .name = "cuda",
    .train_attn_flash = true,
    .train_mlp_b16 = true,
    .mem = {.host_visible = false,
            .alloc = cuda_mem_alloc,
            .free = cuda_mem_free,
            .upload = cuda_mem_upload,
            .download = cuda_mem_download,
            .copy = cuda_mem_copy,
            .zero = cuda_mem_zero,
            .sync = cuda_mem_sync,
            .info = molt_cuda_mem_info,
            .graph_begin = cuda_graph_begin,
            .graph_end = cuda_graph_end,
            .graph_run = cuda_graph_run,
            .graph_free = cuda_graph_free},
    MOLT_CUDA_OPS(CUDA_OP)};
#undef CUDA_OP

#define OPT_NAME(op) #op,
static const char *const OPTIONAL_OPS[] = {MOLT_BACKEND_OPTIONAL_OPS(OPT_NAME) NULL};
#undef OPT_NAME

static bool optional_op(const char *name) {
    for (int i = 0; OPTIONAL_OPS[i]; i++)
        if (!strcmp(OPTIONAL_OPS[i], name))
            return true;
    return false;
}

int molt_cuda_missing_required_ops(char *buf, size_t cap) {
    int    n = 0;
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
#define MISSING(op)                                                                                \
    if (!molt_backend_cuda.op && !optional_op(#op)) {                                              \
        int w = cap > len ? snprintf(buf + len, cap - len, "%s%s", n ? ", " : "", #op) : 0;      \
        len += w > 0 ? (size_t)w : 0;                                                              \
        n++;                                                                                       \
    }
    MOLT_BACKEND_OPS(MISSING)
#undef MISSING
    return n;
}

int molt_cuda_missing_ops(char *buf, size_t cap) {
    int    n = 0;
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
#define MISSING(op)                                                                                \
    if (!molt_backend_cuda.op) {                                                                   \
        int w = cap > len ? snprintf(buf + len, cap - len, "%s%s", n ? ", " : "", #op) : 0;      \
        len += w > 0 ? (size_t)w : 0;                                                              \
        n++;                                                                                       \
    }
    MOLT_BACKEND_OPS(MISSING)
#undef MISSING
    return n;
}
