/*
 * step.c — the shared optimizer step and loop bookkeeping (see step.h).
 */
#include "train/step.h"

#include "io/fileio.h"
#include "kernels/kernels.h"
#include "train/checkpoint.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// overlapping the gradient reduction with the backward: each layer's parameters must
// fill one range of the flat buffer that holds nothing else; the rest is reduced after

typedef struct dist_overlap {
    int          L, n_rest;
    size_t      *lo, *hi;           // [L] layer l's floats
    size_t      *rest_lo, *rest_hi; // [n_rest] the floats outside every layer
    train_model *tm;                // armed: the model whose tm_backward starts them
    int          started, failed;
} dist_overlap;

static int param_layer(const char *name) {
    const char *p = strstr(name, "layers.");
    return p && p[7] >= '0' && p[7] <= '9' ? atoi(p + 7) : -1;
}

static int cmp_range(const void *a, const void *b) {
    const size_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

// NULL when the layout does not allow it (or out of memory): then no overlap
static dist_overlap *overlap_plan(const molt_model *m) {
    int           L = m->cfg.n_layer;
    dist_overlap *ov = molt__calloc(1, sizeof *ov);
    size_t       *r = molt__malloc(sizeof(size_t) * 2 * (size_t)(L + 1));
    if (ov) {
        ov->L = L;
        ov->lo = molt__malloc(sizeof(size_t) * (size_t)(4 * L + 2));
    }
    if (!ov || !ov->lo || !r || L <= 0)
        goto no;
    ov->hi = ov->lo + L;
    ov->rest_lo = ov->hi + L;
    ov->rest_hi = ov->rest_lo + L + 1;
    for (int l = 0; l < L; l++)
        ov->lo[l] = SIZE_MAX, ov->hi[l] = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        int               l = param_layer(p->name);
        if (l >= L)
            goto no;
        if (l >= 0 && p->numel) {
            ov->lo[l] = p->offset < ov->lo[l] ? p->offset : ov->lo[l];
            ov->hi[l] = p->offset + p->numel > ov->hi[l] ? p->offset + p->numel : ov->hi[l];
        }
    }
    for (int l = 0; l < L; l++) {
        if (ov->lo[l] >= ov->hi[l])
            goto no;
        for (int i = 0; i < m->n_params; i++) { // nothing else inside layer l's range
            const param_info *p = &m->params[i];
            if (param_layer(p->name) != l && p->numel && p->offset < ov->hi[l] &&
                p->offset + p->numel > ov->lo[l])
                goto no;
        }
        r[2 * l] = ov->lo[l], r[2 * l + 1] = ov->hi[l];
    }
    qsort(r, (size_t)L, 2 * sizeof(size_t), cmp_range);
    size_t at = 0;
    for (int l = 0; l <= L; l++) {
        size_t end = l < L ? r[2 * l] : m->n_floats;
        if (end > at) {
            ov->rest_lo[ov->n_rest] = at;
            ov->rest_hi[ov->n_rest++] = end;
        }
        at = l < L ? r[2 * l + 1] : at;
    }
    molt__free(r);
    return ov;
no:
    molt__free(r);
    if (ov)
        molt__free(ov->lo);
    molt__free(ov);
    return NULL;
}

static void on_grad_ready(void *user, const molt_exec *ex, int l) {
    train_loop   *tl = user;
    dist_overlap *ov = tl->ov;
    if (ov->failed)
        return;
    if (tl->comm->allreduce_start(tl->comm, ex, ov->tm->grad + ov->lo[l], ov->hi[l] - ov->lo[l],
                                  DIST_MEAN))
        ov->failed = 1;
    else
        ov->started++;
}

void train_overlap_arm(train_loop *tl, train_model *tm) {
    if (!tl->comm || !tl->ov)
        return;
    tl->ov->tm = tm;
    tl->ov->started = tl->ov->failed = 0;
    tm->grad_ready = on_grad_ready;
    tm->grad_user = tl;
}

// finishes an armed step's reduction: the rest of the buffer, then waits for everything
static molt_status overlap_finish(molt_ctx *ctx, train_loop *tl, const molt_exec *ex) {
    dist_overlap *ov = tl->ov;
    molt_comm    *c = tl->comm;
    ov->tm->grad_ready = NULL;
    ov->tm->grad_user = NULL;
    int bad = ov->failed;
    for (int k = 0; k < ov->n_rest && !bad; k++)
        for (size_t o = ov->rest_lo[k]; o < ov->rest_hi[k] && !bad; o += DIST_BUCKET) {
            size_t n = ov->rest_hi[k] - o < DIST_BUCKET ? ov->rest_hi[k] - o : DIST_BUCKET;
            bad = c->allreduce_start(c, ex, ov->tm->grad + o, n, DIST_MEAN);
        }
    bad |= c->allreduce_wait(c, ex); // (always: nothing may stay in flight)
    int missed = ov->started != ov->L;
    ov->tm = NULL;
    if (bad)
        return molt__err(ctx, MOLT_ERR_IO, "rank %d of %d: gradient all-reduce failed: %s",
                         c->rank, c->world, c->err);
    if (missed)
        return molt__err(ctx, MOLT_ERR_INTERNAL, "overlapped reduction: %d of %d layers started",
                         ov->started, ov->L);
    return MOLT_OK;
}

molt_status train_loop_init(molt_ctx *ctx, train_loop *tl, molt_model *m, const char *freeze) {
    memset(tl, 0, sizeof *tl);
    tl->m = m;
    tl->comm = dist_comm(ctx);
    molt_status st = adamw_init(ctx, &tl->opt, m, freeze);
    if (st != MOLT_OK || !tl->comm)
        return st;
    molt_comm *c = tl->comm;
    size_t     lo, hi;
    dist_shard(m->n_floats, c->world, c->rank, &lo, &hi);
    molt_exec ex = be_exec1(m->be);
    if (c->bcast(c, &ex, m->data, m->n_floats, 0))
        st = molt__err(ctx, MOLT_ERR_IO, "rank %d of %d: parameter broadcast failed: %s",
                       c->rank, c->world, c->err);
    if (st == MOLT_OK)
        st = adamw_shard(ctx, &tl->opt, m, lo, hi);
    if (st != MOLT_OK)
        adamw_free(&tl->opt);
    else
        tl->ov = overlap_plan(m); // NULL: reduce after the backward
    return st;
}

// ----------------------------------------------------------------------------
// checkpoints of a sharded loop: the whole moments, gathered into temporaries

static molt_status full_moments(molt_ctx *ctx, const train_loop *tl, float **fm, float **fv) {
    size_t n = tl->m->n_floats;
    *fm = be_allocf(tl->m->be, n);
    *fv = be_allocf(tl->m->be, n);
    if (!*fm || !*fv) {
        be_free(tl->m->be, *fm);
        be_free(tl->m->be, *fv);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory gathering the optimizer state (%.0f "
                                            "MB)",
                         (double)n * 8e-6);
    }
    return MOLT_OK;
}

static molt_status dist_save(molt_ctx *ctx, const train_loop *tl) {
    const adamw *o = &tl->opt;
    float       *fm, *fv;
    molt_status  st = full_moments(ctx, tl, &fm, &fv);
    if (st != MOLT_OK)
        return st;
    molt_exec ex = be_exec1(tl->m->be);
    be_copy(&ex, fm + o->lo, o->m, sizeof(float) * (o->hi - o->lo));
    be_copy(&ex, fv + o->lo, o->v, sizeof(float) * (o->hi - o->lo));
    if ((st = dist_allgather(ctx, tl->comm, &ex, fm, tl->m->n_floats)) == MOLT_OK &&
        (st = dist_allgather(ctx, tl->comm, &ex, fv, tl->m->n_floats)) == MOLT_OK &&
        tl->comm->rank == 0) {
        train_loop whole = *tl;
        whole.opt.m = fm;
        whole.opt.v = fv;
        st = save_checkpoint(ctx, &whole);
    }
    be_free(tl->m->be, fm);
    be_free(tl->m->be, fv);
    return st;
}

static molt_status dist_load(molt_ctx *ctx, train_loop *tl) {
    adamw      *o = &tl->opt;
    float      *fm, *fv;
    molt_status st = full_moments(ctx, tl, &fm, &fv);
    if (st != MOLT_OK)
        return st;
    train_loop whole = *tl;
    whole.opt.m = fm;
    whole.opt.v = fv;
    if ((st = load_checkpoint(ctx, &whole)) == MOLT_OK) {
        molt_exec ex = be_exec1(tl->m->be);
        be_copy(&ex, o->m, fm + o->lo, sizeof(float) * (o->hi - o->lo));
        be_copy(&ex, o->v, fv + o->lo, sizeof(float) * (o->hi - o->lo));
        be_sync(&ex);
        tl->step = whole.step;
        tl->tokens = whole.tokens;
        tl->rng = whole.rng;
        o->step = whole.opt.step;
    }
    be_free(tl->m->be, fm);
    be_free(tl->m->be, fv);
    return st;
}

void train_loop_free(train_loop *tl) {
    adamw_free(&tl->opt);
    if (tl->ov)
        molt__free(tl->ov->lo);
    molt__free(tl->ov);
    tl->ov = NULL;
}

molt_status train_resume(molt_ctx *ctx, train_loop *tl, bool required) {
    if (!required) {
        char latest[4200];
        fio_join(latest, sizeof latest, tl->dir, "latest");
        if (!fio_exists(latest))
            return MOLT_OK;
    }
    return tl->comm ? dist_load(ctx, tl) : load_checkpoint(ctx, tl);
}

molt_status train_step(const molt_exec *ex, molt_ctx *ctx, train_loop *tl, float *grad,
                       double loss, const char *what) {
    molt_comm *c = tl->comm;
    if (c) { // the mean over the ranks: every rank then takes the same step
        molt_status st = tl->ov && tl->ov->tm && tl->ov->tm->grad == grad
                             ? overlap_finish(ctx, tl, ex)
                             : dist_allreduce(ctx, c, ex, grad, tl->m->n_floats, DIST_MEAN);
        if (st != MOLT_OK || (st = dist_mean_host(ctx, c, &loss, 1)) != MOLT_OK)
            return st;
    }
    const char *bad = NULL;
    double      gn = grad_norm(ex, tl->m, &tl->opt, grad, &bad);
    if (!isfinite(loss) || bad)
        return molt__err(ctx, MOLT_ERR_NUMERIC,
                         "%s%sstep %lld: non-finite %s%s (loss %g); stopped before the update, "
                         "the last checkpoint in %s is intact",
                         what, *what ? " " : "", (long long)tl->step + 1,
                         bad ? "gradient of tensor " : "loss", bad ? bad : "", loss, tl->dir);
    grad_clip(ex, &tl->opt, grad, gn, tl->clip);
    double lr = sched_lr(&tl->sc, tl->step);
    adamw_update(ex, tl->m, &tl->opt, grad, (float)lr);
    if (c) { // ZeRO-1: each rank updated its shard; every rank gets them all
        molt_status st = dist_allgather(ctx, c, ex, tl->m->data, tl->m->n_floats);
        if (st != MOLT_OK)
            return st;
    }
    tl->tokens += tl->per_step;
    tl->loss = loss;
    tl->grad_norm = gn;
    tl->lr = lr;
    return MOLT_OK;
}

molt_status train_step_end(molt_ctx *ctx, train_loop *tl) {
    tl->step++;
    if ((tl->save_every > 0 && tl->step % tl->save_every == 0) || train_done(tl))
        return tl->comm ? dist_save(ctx, tl) : save_checkpoint(ctx, tl);
    return MOLT_OK;
}
