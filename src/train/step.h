/*
 * step.h — the one optimizer step and its loop bookkeeping, shared by
 * `molt train` (trainer.c) and the MOHAWK stages (distill/mohawk.c).
 *
 * A loop owns its AdamW state and the numbers a checkpoint restores (step,
 * tokens, the data sampler's rng). Per step the caller draws its batch with
 * &tl->rng, runs forward / loss / backward into a gradient buffer, then
 *     train_step      non-finite check (loss and every gradient), global grad
 *                     norm, clipping, the schedule's lr, AdamW; tokens += per_step
 *     (the caller logs tl->loss, tl->grad_norm, tl->lr, tl->tokens here)
 *     train_step_end  step += 1, and the checkpoint when one is due (every
 *                     save_every steps and after the last), written after the
 *                     caller's log line so every checkpointed step is logged
 * A resumed loop (train_resume) continues bit for bit.
 *
 * Data parallel (the context has a communicator, dist/comm.h): every rank runs
 * the same loop over its slice of each global batch and passes its own mean
 * loss and gradients; train_step averages both over the ranks (gradients in
 * buckets, before the norm, clipping and AdamW), updates the rank's ZeRO-1
 * shard of the parameters (the loop's moments cover only that shard:
 * dist_shard of the flat buffer) and all-gathers the parameters. Checkpoints
 * hold the whole moments (gathered; rank 0 alone writes), so a run resumes on
 * any number of ranks. Overlap: train_overlap_arm before the (last) backward
 * of a whole model makes tm_backward start each layer's reduction as soon as
 * its gradients are final (on a GPU on NCCL's side stream, beside the next
 * layers' backward); train_step then reduces only the rest (embeddings, final
 * norm, head) and waits.
 */
#ifndef MOLT_STEP_H
#define MOLT_STEP_H

#include "dist/comm.h"
#include "train/model_train.h"
#include "train/optim.h"

typedef struct train_loop {
    // set by the caller (train_loop_init sets m and opt; the rest by hand)
    molt_model *m;
    adamw       opt;        // its β, eps, wd may be changed before the first step
    sched_cfg   sc;         // sc.total_steps: the loop's length
    double      clip;       // max global gradient norm (≤ 0: no clipping)
    const char *dir;        // checkpoints: dir/ckpt-NNNNNNNN, dir/latest
    int64_t     save_every; // steps between checkpoints (≤ 0: only after the last)
    int64_t     per_step;   // tokens a step consumes
    int         keep_last;  // checkpoints kept (≤ 0: 1, the newest)
    const char *settings;   // a JSON object of strings: the run's settings, recorded in each
                            // checkpoint and compared on resume (NULL: none recorded)
    // bookkeeping: restored by train_resume, saved in every checkpoint
    int64_t  step;   // completed steps
    int64_t  tokens; // consumed tokens
    uint64_t rng;    // the data sampler's state (the caller seeds it)
    // the last step's numbers (loss: the mean over the ranks)
    double loss, grad_norm, lr;
    molt_comm *comm; // the context's communicator (train_loop_init), NULL: one process
    struct dist_overlap *ov; // with comm: each layer's parameter range (train_overlap_arm)
} train_loop;

// Zeroes tl and builds its AdamW over m (freeze: optim.h's globs). With a
// communicator: rank 0's parameters broadcast to every rank, moments for this
// rank's shard only.
molt_status train_loop_init(molt_ctx *ctx, train_loop *tl, molt_model *m, const char *freeze);
void        train_loop_free(train_loop *tl);
// Restores parameters, moments, step, tokens and rng from dir's newest complete
// checkpoint after verifying it (checkpoint.h: checksums, settings, step not
// past sc.total_steps). required: a missing checkpoint is an error; otherwise
// nothing happens when dir holds none.
molt_status train_resume(molt_ctx *ctx, train_loop *tl, bool required);
static inline bool train_done(const train_loop *tl) { return tl->step >= tl->sc.total_steps; }
// The update for a step whose loss is loss and whose gradients are in grad
// (clipped in place). what prefixes the error message ("" or e.g. "stage 2"):
// a non-finite loss or gradient returns MOLT_ERR_NUMERIC naming the step and
// the first such tensor, before anything is updated.
molt_status train_step(const molt_exec *ex, molt_ctx *ctx, train_loop *tl, float *grad,
                       double loss, const char *what);
// With a communicator (and parameters laid out layer by layer): the next tm_backward of tm
// starts each layer's gradient reduction as soon as that layer is done; the next train_step
// finishes them. Nothing without a communicator.
void        train_overlap_arm(train_loop *tl, train_model *tm);
// Ends the step: step += 1, then the checkpoint when one is due.
molt_status train_step_end(molt_ctx *ctx, train_loop *tl);

#endif
