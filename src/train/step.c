/*
 * step.c — the shared optimizer step and loop bookkeeping (see step.h).
 */
#include "train/step.h"

#include "io/fileio.h"
#include "train/checkpoint.h"

#include <math.h>
#include <string.h>

molt_status train_loop_init(molt_ctx *ctx, train_loop *tl, molt_model *m, const char *freeze) {
    memset(tl, 0, sizeof *tl);
    tl->m = m;
    return adamw_init(ctx, &tl->opt, m, freeze);
}

void train_loop_free(train_loop *tl) { adamw_free(&tl->opt); }

molt_status train_resume(molt_ctx *ctx, train_loop *tl, bool required) {
    if (!required) {
        char latest[4200];
        fio_join(latest, sizeof latest, tl->dir, "latest");
        if (!fio_exists(latest))
            return MOLT_OK;
    }
    return load_checkpoint(ctx, tl);
}

molt_status train_step(const molt_exec *ex, molt_ctx *ctx, train_loop *tl, float *grad,
                       double loss, const char *what) {
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
    tl->tokens += tl->per_step;
    tl->loss = loss;
    tl->grad_norm = gn;
    tl->lr = lr;
    return MOLT_OK;
}

molt_status train_step_end(molt_ctx *ctx, train_loop *tl) {
    tl->step++;
    if ((tl->save_every > 0 && tl->step % tl->save_every == 0) || train_done(tl))
        return save_checkpoint(ctx, tl);
    return MOLT_OK;
}
