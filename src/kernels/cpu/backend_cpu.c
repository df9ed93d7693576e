/*
 * backend_cpu.c — the CPU backend's op table (kernels.h: molt_backend),
 * filled with the cpu_* ops of dense.c, dense_backward.c, ssm.c,
 * ssm_backward.c, attn.c, attn_backward.c, ssm_rows.c, ssm_rows_backward.c, loss.c,
 * optim.c, mamba3.c, mamba3_backward.c and sample.c, and the memory ops of mem.c.
 */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

#define CPU_OP(op) .op = cpu_##op,
const molt_backend molt_backend_cpu = {
    .name = "cpu",
    .mem = {.host_visible = true,
            .alloc = cpu_mem_alloc,
            .free = cpu_mem_free,
            .upload = cpu_mem_copy,
            .download = cpu_mem_copy,
            .copy = cpu_mem_copy,
            .zero = cpu_mem_zero,
            .sync = cpu_mem_sync},
    MOLT_BACKEND_OPS(CPU_OP)};
#undef CPU_OP
