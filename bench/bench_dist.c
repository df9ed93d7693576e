/*
 * bench_dist.c — data-parallel throughput of the MOHAWK stage-3 step at the
 * 1B shape of bench_gpu.c (random Llama-3.2-1B-shaped teacher, Llamba-1B
 * student), one GPU per rank (issue 18). Launch with
 *     mpirun -np N build-cuda/bench/bench_dist [--batch B] [--seq T] [--steps S] [--small]
 * Each rank runs B rows of T tokens (weak scaling: the global batch is N·B)
 * on cuda:<local rank>: teacher forward, student forward, soft CE, backward,
 * then train_step — gradients averaged over NCCL (each layer's on a side stream as
 * soon as its backward is done, overlapping the rest of the backward), the norm, clipping,
 * AdamW over this rank's ZeRO-1 shard, parameters all-gathered. Rank 0 prints
 * one JSON line: tokens/s of the whole job and per GPU, ms per step (median
 * after 2 warm-up steps; every step ends with a device sync), the device
 * memory used on rank 0 (cudaMemGetInfo) and the moments held per rank.
 * Built by `make cuda`; needs a GPU and MPI (scripts/dist_gpu_check.sh runs it).
 */
#include "bench_models.h"
#include "kernels/kernels.h"
#include "kernels/mem.h"
#include "models/model.h"
#include "molt_dist.h"
#include "train/loss.h"
#include "train/model_train.h"
#include "train/step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MOLT_CUDA
int main(void) {
    fprintf(stderr, "bench_dist: built without MOLT_CUDA (make cuda)\n");
    return 77;
}
#else
#include "kernels/cuda/cuda.h"

static char TEACHER[1024], STUDENT[1024];
static molt_ctx  *cpu, *gpu;
static molt_comm *comm;

static void die(molt_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_dist: rank %d: %s: %s%s%s\n", molt_comm_rank(comm), what,
            molt_last_error(ctx), molt_cuda_last_error() ? " / cuda: " : "",
            molt_cuda_last_error() ? molt_cuda_last_error() : "");
    molt_comm_abort(comm, 1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static molt_model *gpu_model(const char *json) {
    molt_model *m = bench_model(cpu, json);
    if (model_to_backend(gpu, m, &molt_backend_cuda) != MOLT_OK)
        die(gpu, "to gpu");
    return m;
}

int main(int argc, char **argv) {
    int B = 1, T = 2048, steps = 10;
    const char *matmul = "fp32";
    bench_1b    shape = BENCH_1B;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--small")) shape = BENCH_1B_SMALL;
        else if (!strcmp(argv[i], "--tf32")) matmul = "tf32";
        else if (!strcmp(argv[i], "--bf16")) matmul = "bf16";
        else {
            fprintf(stderr, "usage: mpirun -np N bench_dist [--batch B] [--seq T] [--steps S] "
                            "[--small] [--tf32 | --bf16]\n");
            return 2;
        }
    }
    char err[256], dev[32];
    if (molt_dist_init(&argc, &argv, err, sizeof err) != MOLT_OK) {
        fprintf(stderr, "bench_dist: %s\n", err);
        return 1;
    }
    snprintf(dev, sizeof dev, "cuda:%d", molt_dist_local_rank());
    cpu = molt_ctx_new();
    gpu = molt_ctx_new();
    if (molt_ctx_set_device(gpu, dev) != MOLT_OK)
        die(gpu, "device");
    molt_ctx_set_matmul(gpu, matmul);
    if (molt_comm_nccl_new(molt_dist_local_rank(), &comm, err, sizeof err) != MOLT_OK) {
        fprintf(stderr, "bench_dist: %s\n", err);
        molt_comm_abort(NULL, 1);
    }
    molt_ctx_set_comm(gpu, comm);
    int rank = molt_comm_rank(comm), world = molt_comm_world(comm);
    bench_1b_cfgs(&shape, TEACHER, sizeof TEACHER, STUDENT, sizeof STUDENT);
    molt_exec    ex = molt__exec(gpu);
    molt_model  *t = gpu_model(TEACHER), *s = gpu_model(STUDENT);
    train_model *tt = NULL, *ts = NULL;
    train_loop   tl;
    int          N = B * T;
    int          hr = tm_auto_head_rows(s, B, T); // the logits by chunks, as molt distill
    if (tm_new_kind(gpu, t, B, T, TM_LOGITS, hr, &tt) != MOLT_OK ||
        tm_new_kind(gpu, s, B, T, TM_TRAIN, hr, &ts) != MOLT_OK ||
        train_loop_init(gpu, &tl, s, NULL) != MOLT_OK)
        die(gpu, "stage 3 state");
    tl.sc = (sched_cfg){SCHED_CONSTANT, 1e-4, 1e-4, 0, 0, steps + 2};
    tl.clip = 1.0;
    tl.per_step = (int64_t)N * world;
    int32_t *in = malloc(sizeof(int32_t) * (size_t)N);
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(rank + 1);
    for (int i = 0; i < N; i++) { // each rank its own tokens
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (int32_t)((x >> 33) % (uint64_t)shape.V);
    }
    double *ms = calloc((size_t)steps, sizeof(double));
    for (int k = 0; k < steps + 2; k++) {
        be_sync(&ex);
        double t0 = molt__now();
        tm_forward(&ex, tt, in);
        tm_zero_grad(ts);
        train_overlap_arm(&tl, ts); // each layer's reduction beside the next layers' backward
        tm_forward(&ex, ts, in);
        double loss = tm_kd_step(&ex, ts, tt, loss_soft_ce, 1.0f, 1.0f / (float)N, true) / N;
        if (train_step(&ex, gpu, &tl, ts->grad, loss, "bench") != MOLT_OK)
            die(gpu, "train_step");
        be_sync(&ex);
        if (k >= 2)
            ms[k - 2] = (molt__now() - t0) * 1e3;
    }
    if (molt_cuda_last_error())
        die(gpu, "stage 3 step");
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    double med = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
    size_t used = 0, total = 0;
    molt_cuda_mem_info(&used, &total);
    if (rank == 0)
        printf("{\"bench\": \"dist_stage3_step\", \"world\": %d, \"batch_per_rank\": %d, "
               "\"seq\": %d, \"tokens_per_s\": %.0f, \"tokens_per_s_per_gpu\": %.0f, "
               "\"ms_per_step\": %.1f, \"student_params\": %zu, \"moments_per_rank_gb\": %.2f, "
               "\"device_gb_used_rank0\": %.1f, \"loss\": %.4f}\n",
               world, B, T, (double)N * world / (med * 1e-3), (double)N / (med * 1e-3), med,
               s->n_floats, 8e-9 * (double)(tl.opt.hi - tl.opt.lo), (double)used * 1e-9,
               tl.loss);
    fflush(stdout);
    free(in), free(ms);
    train_loop_free(&tl);
    tm_free(tt), tm_free(ts);
    molt_model_free(t), molt_model_free(s);
    molt_ctx_free(cpu), molt_ctx_free(gpu);
    molt_comm_free(comm);
    molt_dist_finalize();
    return 0;
}
#endif
