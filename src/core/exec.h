/*
 * exec.h — the execution context every op, mixer and block call takes first.
 *
 * molt has no per-call globals: which backend runs an op, how many threads it
 * may use and (on a GPU) which stream it is queued on travel down the call
 * chain in a molt_exec. A molt_ctx owns one (molt__exec(ctx)). Only the
 * backend runs work in parallel (its ops split over nth threads, or queue on
 * the stream): above src/kernels nothing starts threads (tests/test_layering.sh);
 * many sequences at once are one batch over state slots (the teacher sampler).
 *
 * An exec is a small value: copy it to change the thread count for one call
 * (e.g. a kernel that wants fewer threads than the caller has).
 */
#ifndef MOLT_EXEC_H
#define MOLT_EXEC_H

#include <stdbool.h>

struct molt_backend;

// exec flags
#define MOLT_EXEC_TF32 1u // GEMMs may use TF32 tensor cores (fp32 in and out, 10-bit mantissa
                          // products): a GPU's fp32 GEMMs ~8× faster, off by default; the CPU ignores it
#define MOLT_EXEC_BF16 2u // GEMMs may round their fp32 inputs to bf16 (bf16 tensor cores, fp32
                          // accumulation and output): twice the TF32 rate; the CPU ignores it

typedef struct molt_exec {
    const struct molt_backend *be; // op table (kernels/kernels.h); never NULL
    int      nth;                   // threads the ops may use (≥ 1)
    void    *stream;                // backend queue (CUDA stream); NULL on the CPU
    unsigned flags;                 // MOLT_EXEC_*
} molt_exec;

// A CPU exec with n threads (n < 1 → 1).
molt_exec molt_exec_cpu(int nth);
// The same with another thread count (n < 1 → 1).
molt_exec molt_exec_threads(const molt_exec *ex, int nth);
// Checks that every op of be's table is present (except the bf16 recurrent
// state's, kernels.h MOLT_BACKEND_STATE_BF16_OPS); false when one is missing.
bool molt_exec_init(molt_exec *ex, const struct molt_backend *be, int nth);

// The exec of a library call made with ctx (NULL ctx: one CPU thread).
struct molt_ctx;
molt_exec molt__exec(const struct molt_ctx *ctx);

#endif
