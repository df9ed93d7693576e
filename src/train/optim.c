/*
 * optim.c — see optim.h. The AdamW arithmetic is fp32, in torch's order
 * (torch/optim/adamw.py, single-tensor path), so ten steps match PyTorch.
 * The gradient norm, clipping and the update are backend ops
 * (kernels/train_ops.h: k_sumsq, k_scale, k_adamw) over spans of the
 * parameter layout; here are the schedules, the masks and the scalars.
 */
#include "train/optim.h"

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

molt_status sched_check(molt_ctx *ctx, sched_kind k, double warmup_frac, double decay_frac) {
    if (!(warmup_frac >= 0 && warmup_frac <= 1) ||
        (k == SCHED_WSD && !(decay_frac >= 0 && warmup_frac + decay_frac <= 1)))
        return molt__err(ctx, MOLT_ERR_ARG,
                         "--warmup %g + --decay %g: the fractions of the steps must add up to at "
                         "most 1",
                         warmup_frac, decay_frac);
    return MOLT_OK;
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
    o->be = m->be;
    o->hi = m->n_floats;
    o->m = be_allocf(m->be, m->n_floats);
    o->v = be_allocf(m->be, m->n_floats);
    o->trainable = molt__malloc(sizeof(bool) * (size_t)m->n_params);
    o->span = molt__malloc(sizeof(molt_span) * (size_t)m->n_params);
    o->train = molt__malloc(sizeof(molt_span) * (size_t)m->n_params);
    if (o->span)
        for (int i = 0; i < m->n_params; i++)
            o->span[i] = (molt_span){m->params[i].offset, m->params[i].numel};
    o->n_blocks = o->span ? k_sumsq_blocks(o->span, m->n_params) : 0;
    o->partial = be_alloc(m->be, sizeof(double) * (o->n_blocks ? o->n_blocks : 1));
    o->partial_host = molt__malloc(sizeof(double) * (o->n_blocks ? o->n_blocks : 1));
    if (!o->m || !o->v || !o->trainable || !o->span || !o->train || !o->partial ||
        !o->partial_host) {
        adamw_free(o);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for optimizer state");
    }
    molt_exec ex = be_exec1(m->be);
    be_zero(&ex, o->m, m->n_floats * sizeof(float));
    be_zero(&ex, o->v, m->n_floats * sizeof(float));
    int n_frozen = 0;
    for (int i = 0; i < m->n_params; i++) {
        o->trainable[i] = !matches_any(freeze, m->params[i].name);
        n_frozen += !o->trainable[i];
        if (o->trainable[i])
            o->train[o->n_train++] = o->span[i];
    }
    if (freeze && *freeze && n_frozen == 0)
        return adamw_free(o), molt__err(ctx, MOLT_ERR_ARG,
                                        "--freeze \"%s\" matches no parameter name", freeze);
    if (freeze && *freeze && n_frozen == m->n_params)
        return adamw_free(o), molt__err(ctx, MOLT_ERR_ARG,
                                        "--freeze \"%s\" matches every parameter: nothing would "
                                        "train",
                                        freeze);
    return MOLT_OK;
}

void adamw_free(adamw *o) {
    if (o->be) {
        be_free(o->be, o->m);
        be_free(o->be, o->v);
        be_free(o->be, o->partial);
    }
    molt__free(o->trainable);
    molt__free(o->span);
    molt__free(o->train);
    molt__free(o->shard);
    molt__free(o->partial_host);
    memset(o, 0, sizeof *o);
}

double grad_norm(const molt_exec *ex, const molt_model *m, adamw *o, const float *grad,
                 const char **bad) {
    k_sumsq(ex, o->partial, grad, o->span, m->n_params);
    be_download(ex, o->partial_host, o->partial, sizeof(double) * o->n_blocks);
    if (bad)
        *bad = NULL;
    double s = 0;
    for (int i = 0, b = 0; i < m->n_params; i++) {
        int    nb = (int)((o->span[i].len + K_SUMSQ_BLOCK - 1) / K_SUMSQ_BLOCK);
        double p = 0;
        for (int k = 0; k < nb; k++)
            p += o->partial_host[b + k];
        b += nb;
        if (bad && !*bad && !isfinite(p)) // x² of a finite float is finite in double
            *bad = m->params[i].name;
        if (o->trainable[i])
            s += p;
    }
    return sqrt(s);
}

void grad_clip(const molt_exec *ex, const adamw *o, float *grad, double norm, double max_norm) {
    if (!(max_norm > 0))
        return;
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f)
        return;
    k_scale(ex, grad, o->train, o->n_train, coef);
}

void adamw_update(const molt_exec *ex, molt_model *m, adamw *o, const float *grad, float lr) {
    o->step++;
    // torch computes these scalars in Python doubles
    double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    adamw_hyper h = {(float)o->beta1,
                     (float)o->beta2,
                     (float)o->eps,
                     (float)(1.0 - (double)lr * o->wd),
                     (float)((double)lr / bc1),
                     (float)sqrt(bc2)};
    if (o->shard)
        k_adamw(ex, m->data + o->lo, o->m, o->v, grad + o->lo, o->shard, o->n_shard, h);
    else
        k_adamw(ex, m->data, o->m, o->v, grad, o->train, o->n_train, h);
}

molt_status adamw_shard(molt_ctx *ctx, adamw *o, const molt_model *m, size_t lo, size_t hi) {
    size_t     n = hi - lo;
    float     *nm = be_allocf(m->be, n ? n : 1), *nv = be_allocf(m->be, n ? n : 1);
    molt_span *sh = molt__malloc(sizeof(molt_span) * (size_t)(o->n_train ? o->n_train : 1));
    if (!nm || !nv || !sh) {
        be_free(m->be, nm);
        be_free(m->be, nv);
        molt__free(sh);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for the optimizer's shard");
    }
    int k = 0;
    for (int i = 0; i < o->n_train; i++) {
        size_t a = o->train[i].off, b = a + o->train[i].len;
        a = a > lo ? a : lo;
        b = b < hi ? b : hi;
        if (a < b)
            sh[k++] = (molt_span){a - lo, b - a};
    }
    molt_exec ex = be_exec1(m->be);
    be_zero(&ex, nm, n * sizeof(float));
    be_zero(&ex, nv, n * sizeof(float));
    be_free(o->be, o->m);
    be_free(o->be, o->v);
    molt__free(o->shard);
    o->m = nm;
    o->v = nv;
    o->shard = sh;
    o->n_shard = k;
    o->lo = lo;
    o->hi = hi;
    return MOLT_OK;
}
