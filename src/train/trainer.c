/*
 * trainer.c — molt_train: the training loop, held-out evaluation, the JSON
 * log, and checkpoints that survive a crash.
 *
 * Layout (out_dir/):
 *   ckpt-00000200/ a checkpoint (checkpoint.h: model, AdamW moments, state.json
 *                  with the run's settings and each file's checksum)
 *   latest         the name of the newest *complete* checkpoint directory
 *   log.jsonl      one JSON object per step
 *   .molt-files, .molt-lock    the manifest and the one-writer lock (rundir.h)
 *   config.json, model.safetensors, tokenizer    the final model
 * A kill at any moment leaves `latest` naming a whole checkpoint. A resumed
 * run verifies it, restores parameters, AdamW moments, the step and the data
 * sampler's state, and cuts log.jsonl back to the checkpoint's step, so it
 * continues bit for bit and logs every step once.
 */
#include "io/fileio.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "train/data.h"
#include "train/model_train.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/rundir.h"
#include "train/step.h"

#include "kernels/kernels.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

molt_train_opts molt_train_defaults(void) {
    molt_train_opts o;
    memset(&o, 0, sizeof o);
    o.data_format = "text";
    o.eval_frac = 0.05;
    o.seq_len = 256;
    o.batch = 8;
    o.accum = 1;
    o.lr = 1e-3;
    o.min_lr = 1e-5;
    o.warmup_frac = 0.1;
    o.decay_frac = 0.1;
    o.weight_decay = 0.1;
    o.clip = 1.0;
    o.beta1 = 0.9;
    o.beta2 = 0.95;
    o.eps = 1e-8;
    o.schedule = "wsd";
    o.eval_every = 100;
    o.eval_batches = 8;
    o.save_every = 200;
    o.seed = 1234;
    o.keep_last = 1;
    return o;
}

// ----------------------------------------------------------------------------
// evaluation on held-out windows (fixed, in order)

// B = the global batch's rows (in, tgt: B·T), tm's B the rank's slice of them
// (rows [rank·tm->B, ...)); with a communicator each batch's mean is over the
// counted rows of every rank
static double eval_loss(const molt_exec *ex, molt_ctx *ctx, train_model *tm,
                        const token_stream *ev, int batches, int B, int32_t *in, int32_t *tgt) {
    molt_comm *c = dist_comm(ctx);
    int T = tm->T;
    size_t mine = (size_t)dist_rank(c) * tm->B * T;
    double sum = 0;
    int n = 0;
    size_t pos = 0;
    for (int k = 0; k < batches && pos + (size_t)T + 1 <= ev->n; k++) {
        for (int b = 0; b < B; b++) {
            if (pos + (size_t)T + 1 > ev->n) { // not enough left: ignore the rest of the rows
                for (int t = 0; t < T; t++) {
                    in[(size_t)b * T + t] = 0;
                    tgt[(size_t)b * T + t] = -1;
                }
                continue;
            }
            memcpy(in + (size_t)b * T, ev->ids + pos, sizeof(int32_t) * (size_t)T);
            memcpy(tgt + (size_t)b * T, ev->ids + pos + 1, sizeof(int32_t) * (size_t)T);
            pos += (size_t)T;
        }
        tm_forward(ex, tm, in + mine);
        double l = tm_ce_step(ex, tm, tgt + mine, 1.0f, false);
        if (c) { // Σ loss·count and Σ count over the ranks
            double x[2] = {0, 0};
            for (size_t i = 0; i < (size_t)tm->B * T; i++)
                x[1] += tgt[mine + i] >= 0;
            x[0] = x[1] > 0 ? l * x[1] : 0;
            if (dist_mean_host(ctx, c, x, 2) != MOLT_OK)
                return (double)NAN;
            l = x[0] / x[1];
        }
        sum += l;
        n++;
    }
    return n ? sum / n : (double)NAN;
}

// ----------------------------------------------------------------------------
// the run's settings (recorded in each checkpoint, compared on resume) and its log

static char *run_settings(const molt_model *m, const molt_train_opts *o, int64_t total_steps) {
    js_init_hooks();
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return NULL;
    ckpt_setting(s, "model", "%s, %lld floats", model_arch_name(m->cfg.arch),
                 (long long)m->n_floats);
    char   data[4096];
    size_t n = 0;
    data[0] = 0;
    for (int i = 0; i < o->n_data && n < sizeof data; i++)
        n += (size_t)snprintf(data + n, sizeof data - n, "%s%s", i ? "\n" : "", o->data[i]);
    ckpt_setting(s, "data", "%s", data);
    ckpt_setting(s, "format", "%s", o->data_format ? o->data_format : "text");
    ckpt_setting(s, "sep", "%s", o->sep ? o->sep : "");
    ckpt_setting(s, "eval_data", "%s", o->eval_data ? o->eval_data : "");
    ckpt_setting(s, "eval_frac", "%.17g", o->eval_data ? 0.0 : o->eval_frac);
    ckpt_setting(s, "seq", "%d", o->seq_len);
    ckpt_setting(s, "batch", "%d", o->batch);
    ckpt_setting(s, "accum", "%d", o->accum);
    ckpt_setting(s, "steps", "%lld", (long long)total_steps);
    ckpt_setting(s, "schedule", "%s", o->schedule ? o->schedule : "wsd");
    ckpt_setting(s, "lr", "%.17g", o->lr);
    ckpt_setting(s, "min_lr", "%.17g", o->min_lr);
    ckpt_setting(s, "warmup", "%.17g", o->warmup_frac);
    ckpt_setting(s, "decay", "%.17g", o->decay_frac);
    ckpt_setting(s, "weight_decay", "%.17g", o->weight_decay);
    ckpt_setting(s, "clip", "%.17g", o->clip);
    ckpt_setting(s, "betas", "%.17g %.17g", o->beta1, o->beta2);
    ckpt_setting(s, "eps", "%.17g", o->eps);
    ckpt_setting(s, "seed", "%llu", (unsigned long long)o->seed);
    ckpt_setting(s, "freeze", "%s", o->freeze ? o->freeze : "");
    char *txt = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    return txt;
}

// log.jsonl cut back to its lines of steps ≤ step (and no torn last line): a
// resumed run logs the steps after its checkpoint once
static molt_status log_cut(molt_ctx *ctx, const char *path, int64_t step) {
    if (!fio_exists(path))
        return MOLT_OK;
    char       *txt = NULL;
    size_t      len = 0, keep = 0;
    molt_status st = fio_read_all(ctx, path, (size_t)1 << 40, &txt, &len);
    if (st != MOLT_OK)
        return st;
    for (char *p = txt; p < txt + len;) {
        char     *nl = memchr(p, '\n', (size_t)(txt + len - p));
        long long s = 0;
        if (!nl || sscanf(p, "{\"step\": %lld", &s) != 1 || s > step)
            break;
        keep = (size_t)(nl + 1 - txt);
        p = nl + 1;
    }
    if (keep < len)
        st = fio_write_atomic(ctx, path, txt, keep);
    molt__free(txt);
    return st;
}

// ----------------------------------------------------------------------------
// the loop

static molt_status check_opts(molt_ctx *ctx, const molt_model *m, const molt_train_opts *o) {
    if (!o->out_dir || !*o->out_dir)
        return molt__err(ctx, MOLT_ERR_ARG, "no output directory given");
    if (o->n_data <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "no training data given");
    if (o->seq_len <= 0 || o->seq_len > m->cfg.max_seq)
        return molt__err(ctx, MOLT_ERR_ARG, "sequence length %d (the model's context is %d)",
                         o->seq_len, m->cfg.max_seq);
    if (o->batch <= 0 || o->accum <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "batch %d and accumulation %d must be positive",
                         o->batch, o->accum);
    int world = dist_world(dist_comm(ctx));
    if (o->batch % world)
        return molt__err(ctx, MOLT_ERR_ARG, "--batch %d is the global batch: it must be a "
                                            "multiple of the %d ranks",
                         o->batch, world);
    if (o->steps <= 0 && o->tokens <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "the budget is zero: give steps or tokens > 0");
    if (!(o->lr > 0) || !(o->min_lr >= 0) || !(o->clip >= 0) || !(o->weight_decay >= 0))
        return molt__err(ctx, MOLT_ERR_ARG, "learning rate, clip and weight decay must be "
                                            "positive numbers");
    sched_kind k = SCHED_WSD;
    if (o->schedule && !sched_parse(o->schedule, &k))
        return molt__err(ctx, MOLT_ERR_ARG, "schedule \"%s\" (wsd, cosine or constant)",
                         o->schedule);
    return sched_check(ctx, k, o->warmup_frac, o->decay_frac);
}

molt_status molt_train(molt_ctx *ctx, molt_model *m, const molt_train_opts *o, molt_train_fn cb,
                       void *user, molt_train_report *final) {
    molt_status st = check_opts(ctx, m, o);
    if (st != MOLT_OK)
        return st;
    // data parallel: every rank draws each global batch, computes its slice of B/world
    // rows (in + mine) and leaves every file to rank 0
    molt_comm *comm = dist_comm(ctx);
    bool       writer = dist_rank(comm) == 0;
    rundir rd = {-1};
    if ((o->input && (st = rundir_check_input(ctx, o->input, o->out_dir)) != MOLT_OK) ||
        (writer &&
         (st = rundir_open(ctx, o->out_dir, "train", o->resume, o->overwrite, &rd)) != MOLT_OK))
        return st;
    char *settings = NULL;
    int B = o->batch, T = o->seq_len, Bl = B / dist_world(comm);
    size_t mine = (size_t)dist_rank(comm) * Bl * T;
    token_stream data = {0}, ev = {0};
    train_model *tm = NULL;
    train_loop tl;
    memset(&tl, 0, sizeof tl);
    int32_t *in = NULL, *tgt = NULL;
    FILE *log = NULL;
    if ((st = data_load(ctx, m->tok, m->cfg.vocab, o->data, o->n_data, o->data_format, o->sep,
                        &data)) != MOLT_OK)
        goto done;
    if (o->eval_data) {
        const char *ep[1] = {o->eval_data};
        if ((st = data_load(ctx, m->tok, m->cfg.vocab, ep, 1, o->data_format, o->sep, &ev)) !=
            MOLT_OK)
            goto done;
    } else if (o->eval_frac > 0) { // hold out the tail of the stream
        size_t ne = (size_t)((double)data.n * o->eval_frac);
        if (ne > (size_t)T + 1) {
            ev.ids = molt__malloc(ne * sizeof(int32_t));
            if (!ev.ids) {
                st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
                goto done;
            }
            memcpy(ev.ids, data.ids + data.n - ne, ne * sizeof(int32_t));
            ev.n = ne;
            data.n -= ne;
        }
    }
    if (data.n < (size_t)T + 2) {
        st = molt__err(ctx, MOLT_ERR_ARG, "only %zu training tokens; need more than the "
                                          "sequence length %d",
                       data.n, T);
        goto done;
    }
    // the logits by chunks of rows where B·T·V is large (tm_auto_head_rows; tm_ce_step)
    if ((st = tm_new_kind(ctx, m, Bl, T, TM_TRAIN, tm_auto_head_rows(m, Bl, T), &tm)) != MOLT_OK ||
        (st = train_loop_init(ctx, &tl, m, o->freeze)) != MOLT_OK)
        goto done;
    tl.opt.beta1 = o->beta1;
    tl.opt.beta2 = o->beta2;
    tl.opt.eps = o->eps;
    tl.opt.wd = o->weight_decay;
    in = molt__malloc(sizeof(int32_t) * (size_t)B * T);
    tgt = molt__malloc(sizeof(int32_t) * (size_t)B * T);
    if (!in || !tgt) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    tl.per_step = (int64_t)B * T * o->accum;
    tl.sc = (sched_cfg){SCHED_WSD, o->lr, o->min_lr, o->warmup_frac, o->decay_frac, 0};
    if (o->schedule)
        sched_parse(o->schedule, &tl.sc.kind);
    tl.sc.total_steps = o->steps > 0 ? o->steps : (o->tokens + tl.per_step - 1) / tl.per_step;
    tl.clip = o->clip;
    tl.dir = o->out_dir;
    tl.save_every = o->save_every;
    tl.keep_last = o->keep_last;
    tl.rng = o->seed * 0x9E3779B97F4A7C15ull + 1;
    if (!(tl.settings = settings = run_settings(m, o, tl.sc.total_steps))) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    if (o->resume && (st = train_resume(ctx, &tl, true)) != MOLT_OK)
        goto done;
    char path[4200];
    fio_join(path, sizeof path, o->out_dir, "log.jsonl");
    if (writer && ((st = manifest_add(ctx, o->out_dir, "train", "log.jsonl")) != MOLT_OK ||
                   (o->resume && (st = log_cut(ctx, path, tl.step)) != MOLT_OK)))
        goto done;
    log = writer ? fopen(path, o->resume ? "a" : "w") : NULL;
    if (writer && !log) {
        st = molt__err(ctx, MOLT_ERR_IO, "%s: cannot open for writing", path);
        goto done;
    }
    molt_exec        exv = molt__exec(ctx);
    const molt_exec *ex = &exv;
    double t0 = molt__now();
    int64_t tokens0 = tl.tokens;
    molt_train_report rep;
    memset(&rep, 0, sizeof rep);
    while (!train_done(&tl)) {
        tm_zero_grad(tm);
        double loss = 0;
        for (int a = 0; a < o->accum; a++) {
            data_batch(&data, &tl.rng, B, T, in, tgt);
            tm_forward(ex, tm, in + mine);
            if (a == o->accum - 1) // ranks: each layer's reduction starts as its backward ends
                train_overlap_arm(&tl, tm);
            loss += tm_ce_step(ex, tm, tgt + mine, 1.0f / (float)o->accum, true) / o->accum;
        }
        if ((st = train_step(ex, ctx, &tl, tm->grad, loss, "")) != MOLT_OK)
            goto done;
        loss = tl.loss; // the mean over the ranks
        rep.step = tl.step + 1;
        rep.total_steps = tl.sc.total_steps;
        rep.tokens = tl.tokens;
        rep.loss = loss;
        rep.lr = tl.lr;
        rep.grad_norm = tl.grad_norm;
        rep.elapsed_s = molt__now() - t0;
        rep.tok_per_s = (double)(tl.tokens - tokens0) / fmax(rep.elapsed_s, 1e-9);
        rep.eval_loss = (double)NAN;
        bool last = tl.step + 1 == tl.sc.total_steps;
        if (ev.n > (size_t)T + 1 && o->eval_every > 0 &&
            ((tl.step + 1) % o->eval_every == 0 || last))
            rep.eval_loss = eval_loss(ex, ctx, tm, &ev, o->eval_batches, B, in, tgt);
        if (log) {
            fprintf(log, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.4f, "
                         "\"tokens\": %lld, \"tok_per_s\": %.1f",
                    (long long)rep.step, loss, rep.lr, rep.grad_norm, (long long)tl.tokens,
                    rep.tok_per_s);
            if (!isnan(rep.eval_loss))
                fprintf(log, ", \"eval_loss\": %.6f", rep.eval_loss);
            fprintf(log, "}\n");
            fflush(log);
        }
        if (cb)
            cb(&rep, user);
        if ((st = train_step_end(ctx, &tl)) != MOLT_OK) // the checkpoint, once logged
            goto done;
    }
    if (writer && (st = molt_model_save(ctx, m, o->out_dir, "f32")) != MOLT_OK)
        goto done;
    if (final)
        *final = rep;
done:
    if (log)
        fclose(log);
    cJSON_free(settings);
    rundir_close(&rd);
    molt__free(in);
    molt__free(tgt);
    train_loop_free(&tl);
    tm_free(tm);
    data_free(&data);
    data_free(&ev);
    return st;
}
