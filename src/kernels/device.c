/*
 * device.c — which backend a context's models run on (molt_ctx_set_device),
 * the exec a library call builds from a context (molt__exec), and the check
 * of a device backend's sticky error after work it queued (be_status).
 *
 * The CUDA backend exists only in builds with -DMOLT_CUDA (`make cuda`);
 * elsewhere "cuda" is refused with a message that says how to get it.
 */
#include "core/core.h"
#include "kernels/kernels.h"
#include "kernels/mem.h"
#ifdef MOLT_CUDA
#include "kernels/cuda/cuda.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

molt_exec molt__exec(const molt_ctx *ctx) {
    molt_exec ex = molt_exec_cpu(molt_ctx_threads(ctx));
    if (ctx && ctx->be)
        ex.be = ctx->be;
    if (ctx)
        ex.flags = ctx->exec_flags;
    return ex;
}

molt_status molt_ctx_set_matmul(molt_ctx *ctx, const char *precision) {
    unsigned keep = ctx->exec_flags & ~(MOLT_EXEC_TF32 | MOLT_EXEC_BF16);
    if (!precision || !strcmp(precision, "fp32"))
        ctx->exec_flags = keep;
    else if (!strcmp(precision, "tf32"))
        ctx->exec_flags = keep | MOLT_EXEC_TF32;
    else if (!strcmp(precision, "bf16"))
        ctx->exec_flags = keep | MOLT_EXEC_BF16;
    else
        return molt__err(ctx, MOLT_ERR_ARG,
                         "matmul precision \"%s\": expected fp32, tf32 or bf16", precision);
    return MOLT_OK;
}

// "cuda" / "cuda:N" → N (≥ 0); -1 when s is not a CUDA device name
static int cuda_index(const char *s) {
    if (strncmp(s, "cuda", 4))
        return -1;
    if (!s[4])
        return 0;
    if (s[4] != ':' || !s[5])
        return -1;
    char *end;
    long  v = strtol(s + 5, &end, 10);
    return *end || v < 0 || v > 4096 ? -1 : (int)v;
}

molt_status molt_ctx_set_device(molt_ctx *ctx, const char *device) {
    const char *s = device && *device ? device : getenv("MOLT_DEVICE");
    if (!s || !*s || !strcmp(s, "cpu")) {
        ctx->be = NULL;
        ctx->device = 0;
        return MOLT_OK;
    }
    int idx = cuda_index(s);
    if (idx < 0)
        return molt__err(ctx, MOLT_ERR_ARG, "device \"%s\": expected cpu, cuda or cuda:N%s", s,
                         device && *device ? "" : " (from MOLT_DEVICE)");
#ifdef MOLT_CUDA
    const char *why = NULL;
    int         n = molt_cuda_device_count(&why);
    if (idx >= n)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "device %s: %d CUDA GPU%s found (%s)", s, n,
                         n == 1 ? "" : "s", why ? why : "?");
    char missing[512];
    if (molt_cuda_missing_required_ops(missing, sizeof missing) > 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "device %s: ops not yet on the GPU: %s", s,
                         missing);
    if (!molt_cuda_use_device(idx, &why))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "device %s: %s", s, why ? why : "?");
    ctx->be = &molt_backend_cuda;
    ctx->device = idx;
    return MOLT_OK;
#else
    return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                     "device %s: this molt was built without CUDA (build it with `make cuda` and "
                     "run build-cuda/molt)",
                     s);
#endif
}

const char *molt_ctx_device(const molt_ctx *ctx) {
    static _Thread_local char name[32];
    if (!ctx || !ctx->be || ctx->be->mem.host_visible)
        return "cpu";
    snprintf(name, sizeof name, "%s:%d", ctx->be->name, ctx->device);
    return name;
}

int be_status(molt_ctx *ctx, const molt_exec *ex) {
    if (ex->be->mem.host_visible)
        return MOLT_OK;
    be_sync(ex);
#ifdef MOLT_CUDA
    const char *e = molt_cuda_last_error();
    if (e) {
        molt_status st = molt__err(ctx, strstr(e, "out of memory") ? MOLT_ERR_OOM
                                                                   : MOLT_ERR_INTERNAL,
                                   "cuda: %s", e);
        molt_cuda_clear_error();
        return st;
    }
#endif
    return MOLT_OK;
}
