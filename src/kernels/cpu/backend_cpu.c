/*
 * backend_cpu.c — the CPU backend's op table (kernels.h: molt_backend),
 * filled with the cpu_* ops of dense.c, dense_backward.c, ssm.c and
 * ssm_backward.c.
 */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

#define CPU_OP(op) .op = cpu_##op,
const molt_backend molt_backend_cpu = {.name = "cpu", MOLT_BACKEND_OPS(CPU_OP)};
#undef CPU_OP
