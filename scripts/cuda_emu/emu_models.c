/*
 * emu_models.c — scripts/cuda_emu/run.sh: test_device's GateLoop / Mamba-3 models end to end
 * (logits, token by token, slots, gradient buffer) with a "cuda" backend that is the CPU
 * table with the 21 issue-14 slots from the host-emulated CUDA kernels and memory that is
 * not host-visible (as the GPU's), against the CPU backend.
 */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda_ops.h"
#define main orig_main
#include "test_device.c"
#undef main
// the CPU table with the 21 GateLoop / Mamba-3 slots from the host-emulated CUDA kernels,
// memory not host-visible (as the GPU's)
#define CPU_OP(op) .op = cpu_##op,
#define EMU_OP(op) .op = cuda_##op,
#pragma GCC diagnostic ignored "-Woverride-init"
const molt_backend molt_backend_cuda = {
    .name = "cuda",
    .train_attn_flash = true,
    .mem = {.host_visible = false,
            .alloc = cpu_mem_alloc,
            .free = cpu_mem_free,
            .upload = cpu_mem_copy,
            .download = cpu_mem_copy,
            .copy = cpu_mem_copy,
            .zero = cpu_mem_zero,
            .sync = cpu_mem_sync},
    MOLT_BACKEND_OPS(CPU_OP) MOLT_BACKEND_GATELOOP_OPS(EMU_OP) MOLT_BACKEND_MAMBA3_OPS(EMU_OP)};
const char *molt_cuda_last_error(void) { return NULL; }
void        molt_cuda_clear_error(void) {}
int molt_cuda_device_count(const char **why) { (void)why; return 1; }
int main(void) {
    cpu = molt_ctx_new();
    gpu = molt_ctx_new();
    molt_ctx_set_threads(cpu, 2);
    for (int k = 0; k < N_MIXER_CFGS; k++) {
        test_inference(MIXER_CFGS[k][0], MIXER_CFGS[k][1], TM_N_ARCH_CFGS + k);
        test_gradients(MIXER_CFGS[k][0], MIXER_CFGS[k][1], TM_N_ARCH_CFGS + k);
    }
    molt_ctx_free(cpu);
    molt_ctx_free(gpu);
    return t_done("emu_models");
}
