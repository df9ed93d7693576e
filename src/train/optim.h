/*
 * optim.h — AdamW exactly as torch.optim.AdamW (decoupled weight decay
 * p ← p·(1 − lr·wd), bias-corrected moments, eps outside the sqrt), global-norm
 * gradient clipping as torch.nn.utils.clip_grad_norm_, learning-rate schedules
 * (constant, cosine, warmup-stable-decay), and freezing parameters by name
 * pattern. Moments m, v: one buffer each, same layout as the parameters.
 */
#ifndef MOLT_OPTIM_H
#define MOLT_OPTIM_H

#include "core/exec.h"
#include "kernels/train_ops.h"

#include "models/model.h"

typedef enum sched_kind { SCHED_CONSTANT = 0, SCHED_COSINE, SCHED_WSD, SCHED_COUNT } sched_kind;

typedef struct sched_cfg {
    sched_kind kind;
    double     lr, min_lr;
    double     warmup_frac; // fraction of steps with linear warmup from 0 (cosine, wsd)
    double     decay_frac;  // wsd: fraction of steps of the final linear decay to min_lr
    int64_t    total_steps;
} sched_cfg;

bool   sched_parse(const char *s, sched_kind *out);
const char *sched_name(sched_kind k);
// Learning rate at step (0-based) of total_steps.
double sched_lr(const sched_cfg *s, int64_t step);
// The warmup and (WSD) decay fractions of a schedule: each in [0, 1] and, for
// WSD, warmup + decay ≤ 1 (else the decay would start before the warmup ends:
// a schedule past the run). MOLT_ERR_ARG naming both numbers otherwise.
molt_status sched_check(molt_ctx *ctx, sched_kind k, double warmup_frac, double decay_frac);

typedef struct adamw {
    float     *m, *v;       // [n_floats] backend buffers, the parameter layout
    bool      *trainable;   // [n_params] (false = frozen)
    molt_span *span;        // [n_params] every parameter's floats, in parameter order
    molt_span *train;       // [n_train] the trainable ones (the spans clip and AdamW run over)
    int        n_train;
    double    *partial;     // [n_blocks] backend: the gradient's sums of squares (k_sumsq)
    double    *partial_host; // [n_blocks] their host copy
    size_t     n_blocks;
    const struct molt_backend *be;
    // ZeRO-1 (adamw_shard, data-parallel ranks): m and v hold only floats [lo, hi) of the
    // layout, and the update runs over shard — the trainable spans ∩ [lo, hi), offsets
    // counted from lo. Unsharded: lo = 0, hi = n_floats, shard NULL.
    size_t     lo, hi;
    molt_span *shard;
    int        n_shard;
    int64_t    step;        // completed steps
    double     beta1, beta2, eps, wd;
} adamw;

// patterns: NULL or comma-separated globs ('*' matches any run) on parameter
// names, e.g. "*.mlp.*,*embed*"; matching parameters are frozen.
molt_status adamw_init(molt_ctx *ctx, adamw *o, const molt_model *m, const char *freeze);
void        adamw_free(adamw *o);
// Global L2 norm of the trainable gradients, and the gradient check in the same
// pass: *bad (may be NULL) = the name of the first parameter (trainable or not)
// whose gradient holds NaN/inf, NULL when none does. One k_sumsq over every
// parameter; its block sums are added in order (double), so the result is the
// same bits at any thread count.
double      grad_norm(const molt_exec *ex, const molt_model *m, adamw *o, const float *grad,
                      const char **bad);
// scales the trainable gradients so their norm is ≤ max_norm (torch: coef =
// max/(norm+1e-6), clamped to 1; max_norm ≤ 0: no clipping)
void        grad_clip(const molt_exec *ex, const adamw *o, float *grad, double norm,
                      double max_norm);
// Keeps moments only for floats [lo, hi) of the layout (ZeRO-1; zeroed, the old ones freed):
// adamw_update then updates that part of the parameters alone. MOLT_ERR_OOM.
molt_status adamw_shard(molt_ctx *ctx, adamw *o, const molt_model *m, size_t lo, size_t hi);
// one AdamW step of the trainable parameters at learning rate lr (o->step += 1)
void        adamw_update(const molt_exec *ex, molt_model *m, adamw *o, const float *grad, float lr);
bool        glob_match(const char *pat, const char *s);

#endif
