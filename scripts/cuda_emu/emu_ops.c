/*
 * emu_ops.c — scripts/cuda_emu/run.sh: test_backend_cuda's GateLoop and Mamba-3 op tests with
 * the host-emulated CUDA kernels (common.cuh here) as the "GPU" table: the CPU table with the
 * 21 issue-14 slots replaced by the cuda_* functions. Memory is host memory.
 */
#include "kernels/kernels.h"
#include "kernels/cuda/cuda_ops.h"
static molt_backend emu_be;
#define main orig_main
#include "test_backend_cuda.c"
#undef main
const molt_backend molt_backend_cuda = {0};
const char *molt_cuda_last_error(void) { return NULL; }
void        molt_cuda_clear_error(void) {}
int molt_cuda_missing_ops(char *buf, size_t cap) { (void)buf, (void)cap; return 0; }
int molt_cuda_missing_required_ops(char *buf, size_t cap) { (void)buf, (void)cap; return 0; }
int molt_cuda_device_count(const char **why) { (void)why; return 1; }
int main(void) {
    emu_be = molt_backend_cpu;
#define SET(op) emu_be.op = cuda_##op;
    MOLT_BACKEND_GATELOOP_OPS(SET) MOLT_BACKEND_MAMBA3_OPS(SET)
    g_cpu = molt_exec_cpu(2);
    g_gpu = be_exec1(&emu_be);
    t_seed(20261206);
    test_gateloop();
    test_mamba3();
    for (int i = 0; i < g_nstat; i++) {
        op_stat *s = &g_stat[i];
        printf("%-28s %6d %10.2e %10.1e  %s%s\n", s->op, s->cases, s->worst, s->tol, s->shape,
               s->failed ? "  FAILED" : "");
    }
    return t_done("emu_ops");
}
