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

typedef struct adamw {
    float   *m, *v;        // [n_floats]
    bool    *trainable;    // [n_params] (false = frozen)
    int64_t  step;         // completed steps
    double   beta1, beta2, eps, wd;
} adamw;

// patterns: NULL or comma-separated globs ('*' matches any run) on parameter
// names, e.g. "*.mlp.*,*embed*"; matching parameters are frozen.
molt_status adamw_init(molt_ctx *ctx, adamw *o, const molt_model *m, const char *freeze);
void        adamw_free(adamw *o);
// global L2 norm of the trainable gradients (double accumulation)
double      grad_norm(const molt_model *m, const adamw *o, const float *grad);
// scales gradients so their norm is ≤ max_norm (torch: coef = max/(norm+1e-6), clamped to 1)
void        grad_clip(const molt_model *m, const adamw *o, float *grad, double norm,
                      double max_norm);
void        adamw_update(const molt_exec *ex, molt_model *m, adamw *o, const float *grad, float lr);
// name of the first parameter whose gradient holds NaN/inf, or NULL
const char *grad_first_nonfinite(const molt_model *m, const float *grad);
bool        glob_match(const char *pat, const char *s);

#endif
