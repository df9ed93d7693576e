/*
 * step.c — the shared optimizer step and loop bookkeeping (see step.h).
 */
#include "train/step.h"

#include "io/fileio.h"
#include "kernels/kernels.h"
#include "train/checkpoint.h"

#include <math.h>
#include <string.h>

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

void train_loop_free(train_loop *tl) { adamw_free(&tl->opt); }

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
        molt_status st = dist_allreduce(ctx, c, ex, grad, tl->m->n_floats, DIST_MEAN);
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
