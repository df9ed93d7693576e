/*
 * optim.c — see optim.h. The AdamW arithmetic is fp32, in torch's order
 * (torch/optim/adamw.py, single-tensor path), so ten steps match PyTorch.
 */
#include "train/optim.h"

#include "core/pool.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

static const char *const SCHED_NAMES[SCHED_COUNT] = {"constant", "cosine", "wsd"};

bool sched_parse(const char *s, sched_kind *out) {
    for (int i = 0; i < SCHED_COUNT; i++)
        if (!strcmp(s, SCHED_NAMES[i])) {
            *out = (sched_kind)i;
            return true;
        }
    return false;
}
const char *sched_name(sched_kind k) { return k < SCHED_COUNT ? SCHED_NAMES[k] : "?"; }

double sched_lr(const sched_cfg *s, int64_t step) {
    if (s->kind == SCHED_CONSTANT || s->total_steps <= 0)
        return s->lr;
    double n = (double)s->total_steps, t = (double)step;
    double warm = floor(s->warmup_frac * n);
    if (t < warm) // linear warmup from 0 (mohawk WSD: lr · (t+1)/warm)
        return s->lr * (t + 1.0) / warm;
    if (s->kind == SCHED_COSINE) {
        double p = (t - warm) / fmax(1.0, n - warm);
        return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * fmin(1.0, p)));
    }
    double decay = floor(s->decay_frac * n), start = n - decay;
    if (t < start)
        return s->lr;
    double p = (t - start + 1.0) / fmax(1.0, decay); // reaches min_lr on the last step
    return s->lr + (s->min_lr - s->lr) * fmin(1.0, p);
}

bool glob_match(const char *p, const char *s) {
    if (!*p)
        return !*s;
    if (*p == '*')
        return glob_match(p + 1, s) || (*s && glob_match(p, s + 1));
    return *s && *p == *s && glob_match(p + 1, s + 1);
}

static bool matches_any(const char *patterns, const char *name) {
    char buf[256];
    for (const char *p = patterns; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && n < sizeof buf) {
            memcpy(buf, p, n);
            buf[n] = 0;
            if (glob_match(buf, name))
                return true;
        }
        p = e ? e + 1 : NULL;
    }
    return false;
}

molt_status adamw_init(molt_ctx *ctx, adamw *o, const molt_model *m, const char *freeze) {
    memset(o, 0, sizeof *o);
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->wd = 0.1;
    o->m = molt__malloc_aligned(m->n_floats * sizeof(float));
    o->v = molt__malloc_aligned(m->n_floats * sizeof(float));
    o->trainable = molt__malloc(sizeof(bool) * (size_t)m->n_params);
    if (!o->m || !o->v || !o->trainable) {
        adamw_free(o);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for optimizer state");
    }
    memset(o->m, 0, m->n_floats * sizeof(float));
    memset(o->v, 0, m->n_floats * sizeof(float));
    int n_frozen = 0;
    for (int i = 0; i < m->n_params; i++) {
        o->trainable[i] = !matches_any(freeze, m->params[i].name);
        n_frozen += !o->trainable[i];
    }
    if (freeze && *freeze && n_frozen == 0)
        return adamw_free(o), molt__err(ctx, MOLT_ERR_ARG,
                                        "--freeze \"%s\" matches no parameter name", freeze);
    return MOLT_OK;
}

void adamw_free(adamw *o) {
    molt__free_aligned(o->m);
    molt__free_aligned(o->v);
    molt__free(o->trainable);
    o->m = o->v = NULL;
    o->trainable = NULL;
}

double grad_norm(const molt_model *m, const adamw *o, const float *grad) {
    double s = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (!o->trainable[i])
            continue;
        const float *g = grad + m->params[i].offset;
        for (size_t k = 0; k < m->params[i].numel; k++)
            s += (double)g[k] * (double)g[k];
    }
    return sqrt(s);
}

void grad_clip(const molt_model *m, const adamw *o, float *grad, double norm, double max_norm) {
    if (!(max_norm > 0))
        return;
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f)
        return;
    for (int i = 0; i < m->n_params; i++) {
        if (!o->trainable[i])
            continue;
        float *g = grad + m->params[i].offset;
        for (size_t k = 0; k < m->params[i].numel; k++)
            g[k] *= coef;
    }
}

// one parameter range, torch.optim.AdamW's single-tensor update in fp32
K_SIMD static void adamw_span(float *p, float *mm, float *vv, const float *g, size_t n, float b1,
                              float b2, float eps, float decay, float step_size, float bc2_sqrt) {
    for (size_t k = 0; k < n; k++) {
        p[k] *= decay;
        mm[k] = mm[k] * b1 + (1.0f - b1) * g[k];
        vv[k] = vv[k] * b2 + (1.0f - b2) * g[k] * g[k];
        float denom = sqrtf(vv[k]) / bc2_sqrt + eps;
        p[k] -= step_size * (mm[k] / denom);
    }
}

typedef struct adamw_task {
    molt_model  *m;
    adamw       *o;
    const float *grad;
    float        b1, b2, eps, decay, step_size, bc2_sqrt;
} adamw_task;

// thread ith updates its slice of every trainable parameter
static void adamw_run(void *arg, int ith, int nth) {
    const adamw_task *j = arg;
    for (int i = 0; i < j->m->n_params; i++) {
        if (!j->o->trainable[i])
            continue;
        size_t off = j->m->params[i].offset, lo, hi;
        k_split(j->m->params[i].numel, ith, nth, &lo, &hi);
        off += lo;
        adamw_span(j->m->data + off, j->o->m + off, j->o->v + off, j->grad + off, hi - lo, j->b1,
                   j->b2, j->eps, j->decay, j->step_size, j->bc2_sqrt);
    }
}

void adamw_update(const molt_exec *ex, molt_model *m, adamw *o, const float *grad, float lr) {
    o->step++;
    // torch computes these scalars in Python doubles
    double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    adamw_task job = {m,
                      o,
                      grad,
                      (float)o->beta1,
                      (float)o->beta2,
                      (float)o->eps,
                      (float)(1.0 - (double)lr * o->wd),
                      (float)((double)lr / bc1),
                      (float)sqrt(bc2)};
    molt_pool_run(k_elementwise_threads(ex, m->n_floats), adamw_run, &job);
}

const char *grad_first_nonfinite(const molt_model *m, const float *grad) {
    for (int i = 0; i < m->n_params; i++) {
        const float *g = grad + m->params[i].offset;
        for (size_t k = 0; k < m->params[i].numel; k++)
            if (!isfinite(g[k]))
                return m->params[i].name;
    }
    return NULL;
}
