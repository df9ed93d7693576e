/*
 * trainer.c — molt_train: the training loop, held-out evaluation, the JSON
 * log, and checkpoints that survive a crash.
 *
 * Checkpoint layout (out_dir/):
 *   ckpt-00000200/ config.json, model.safetensors, tokenizer, optim.safetensors
 *                  (m.<param>, v.<param>), state.json (step, rng, tokens, options)
 *   latest         the name of the newest *complete* checkpoint directory
 *   log.jsonl      one JSON object per step
 *   config.json, model.safetensors, tokenizer    the final model
 * A checkpoint directory is written completely (every file atomically) before
 * `latest` is atomically replaced to name it, so a kill at any moment leaves
 * `latest` pointing at a whole checkpoint; older checkpoints are removed only
 * after that. A resumed run restores parameters, AdamW moments, the step and
 * the data sampler's state, so it continues bit for bit.
 */
#include "io/fileio.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "train/data.h"
#include "train/model_train.h"
#include "train/checkpoint.h"
#include "train/optim.h"
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
    return o;
}

// ----------------------------------------------------------------------------
// checkpoints

molt_status save_checkpoint(molt_ctx *ctx, const molt_model *m, const adamw *opt,
                                   const char *out_dir, int64_t step, uint64_t rng,
                                   int64_t tokens) {
    char name[64], dir[4096], path[4200];
    snprintf(name, sizeof name, "ckpt-%08lld", (long long)step);
    fio_join(dir, sizeof dir, out_dir, name);
    molt_status st = molt_model_save(ctx, m, dir, "f32");
    if (st != MOLT_OK)
        return st;
    // optimizer moments under the parameter names
    st_wtensor *ts = molt__calloc(2 * (size_t)m->n_params, sizeof *ts);
    char *names = molt__malloc(2 * (size_t)m->n_params * (MODEL_NAME_MAX + 2));
    if (!ts || !names) {
        molt__free(ts);
        molt__free(names);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory saving a checkpoint");
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < m->n_params; i++) {
            const param_info *p = &m->params[i];
            st_wtensor *t = &ts[(size_t)k * m->n_params + i];
            char *nm = names + ((size_t)k * m->n_params + i) * (MODEL_NAME_MAX + 2);
            snprintf(nm, MODEL_NAME_MAX + 2, "%c.%s", k ? 'v' : 'm', p->name);
            t->name = nm;
            t->dtype = ST_F32;
            t->ndim = p->ndim;
            memcpy(t->shape, p->shape, sizeof p->shape);
            t->data = (k ? opt->v : opt->m) + p->offset;
        }
    fio_join(path, sizeof path, dir, "optim.safetensors");
    st = st_write(ctx, path, ts, 2 * m->n_params, NULL);
    molt__free(ts);
    molt__free(names);
    if (st != MOLT_OK)
        return st;
    char state[512];
    int n = snprintf(state, sizeof state,
                     "{\"step\": %lld, \"rng\": \"%llu\", \"tokens\": %lld, \"adam_step\": %lld}\n",
                     (long long)step, (unsigned long long)rng, (long long)tokens,
                     (long long)opt->step);
    fio_join(path, sizeof path, dir, "state.json");
    if ((st = fio_write_atomic(ctx, path, state, (size_t)n)) != MOLT_OK)
        return st;
    // publish: `latest` names the complete checkpoint
    fio_join(path, sizeof path, out_dir, "latest");
    if ((st = fio_write_atomic(ctx, path, name, strlen(name))) != MOLT_OK)
        return st;
    // remove older checkpoints (and any partial ones a crash left behind)
    DIR *dd = opendir(out_dir);
    if (dd) {
        struct dirent *e;
        while ((e = readdir(dd))) {
            if (strncmp(e->d_name, "ckpt-", 5) || !strcmp(e->d_name, name))
                continue;
            char old[4200], cmd[4400];
            fio_join(old, sizeof old, out_dir, e->d_name);
            DIR *od = opendir(old);
            if (od) {
                struct dirent *f;
                while ((f = readdir(od)))
                    if (f->d_name[0] != '.') {
                        fio_join(cmd, sizeof cmd, old, f->d_name);
                        remove(cmd);
                    }
                closedir(od);
            }
            remove(old);
        }
        closedir(dd);
    }
    return MOLT_OK;
}

molt_status checkpoint_latest(molt_ctx *ctx, const char *out_dir, char *dir, size_t n) {
    char path[4200], *name = NULL;
    size_t len = 0;
    fio_join(path, sizeof path, out_dir, "latest");
    molt_status st = fio_read_all(ctx, path, 256, &name, &len);
    if (st != MOLT_OK)
        return st;
    while (len && (name[len - 1] == '\n' || name[len - 1] == ' '))
        name[--len] = 0;
    fio_join(dir, n, out_dir, name);
    molt__free(name);
    return MOLT_OK;
}

molt_status load_checkpoint(molt_ctx *ctx, molt_model *m, adamw *opt, const char *out_dir,
                                   int64_t *step, uint64_t *rng, int64_t *tokens) {
    char path[4200], dir[4200];
    molt_status st = checkpoint_latest(ctx, out_dir, dir, sizeof dir);
    if (st != MOLT_OK) {
        molt__err_prefix(ctx, "cannot resume (no complete checkpoint in %s)", out_dir);
        return st;
    }
    molt_load_opts lo = {NULL, 1};
    molt_model *c = NULL;
    if ((st = molt_model_load(ctx, dir, &lo, &c)) != MOLT_OK)
        return st;
    if (c->n_floats != m->n_floats || c->n_params != m->n_params) {
        molt_model_free(c);
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: checkpoint does not match the model", dir);
    }
    memcpy(m->data, c->data, sizeof(float) * m->n_floats);
    molt_model_free(c);
    st_file *f = NULL;
    fio_join(path, sizeof path, dir, "optim.safetensors");
    if ((st = st_open(ctx, path, &f)) != MOLT_OK)
        return st;
    for (int k = 0; k < 2 && st == MOLT_OK; k++)
        for (int i = 0; i < m->n_params && st == MOLT_OK; i++) {
            char nm[MODEL_NAME_MAX + 2];
            snprintf(nm, sizeof nm, "%c.%s", k ? 'v' : 'm', m->params[i].name);
            const st_tensor *t = st_find(f, nm);
            if (!t || (size_t)t->numel != m->params[i].numel)
                st = molt__err(ctx, MOLT_ERR_MISSING, "%s: optimizer state '%s' missing", path,
                               nm);
            else
                st = st_read_f32(ctx, t, (k ? opt->v : opt->m) + m->params[i].offset);
        }
    st_close(f);
    if (st != MOLT_OK)
        return st;
    char *js = NULL;
    size_t len = 0;
    fio_join(path, sizeof path, dir, "state.json");
    if ((st = fio_read_all(ctx, path, 4096, &js, &len)) != MOLT_OK)
        return st;
    cJSON *o = js_parse(ctx, path, js, len);
    molt__free(js);
    if (!o)
        return molt_last_status(ctx);
    int64_t s = 0, tk = 0, as = 0;
    const char *r = NULL;
    if ((st = js_get_int(ctx, path, o, "step", 1, 0, INT64_MAX, 0, &s)) == MOLT_OK &&
        (st = js_get_int(ctx, path, o, "tokens", 1, 0, INT64_MAX, 0, &tk)) == MOLT_OK &&
        (st = js_get_int(ctx, path, o, "adam_step", 1, 0, INT64_MAX, 0, &as)) == MOLT_OK &&
        (st = js_get_str(ctx, path, o, "rng", 1, NULL, &r)) == MOLT_OK) {
        *step = s;
        *tokens = tk;
        opt->step = as;
        *rng = strtoull(r, NULL, 10);
    }
    cJSON_Delete(o);
    return st;
}

// ----------------------------------------------------------------------------
// evaluation on held-out windows (fixed, in order)

static double eval_loss(const molt_exec *ex, train_model *tm, const token_stream *ev, int batches, int32_t *in,
                        int32_t *tgt) {
    int B = tm->B, T = tm->T;
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
        tm_forward(ex, tm, in);
        sum += tm_loss_ce(ex, tm, tgt, 1.0f);
        n++;
    }
    return n ? sum / n : (double)NAN;
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
    if (o->steps <= 0 && o->tokens <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "the budget is zero: give steps or tokens > 0");
    if (!(o->lr > 0) || !(o->min_lr >= 0) || !(o->clip >= 0) || !(o->weight_decay >= 0))
        return molt__err(ctx, MOLT_ERR_ARG, "learning rate, clip and weight decay must be "
                                            "positive numbers");
    sched_kind k;
    if (o->schedule && !sched_parse(o->schedule, &k))
        return molt__err(ctx, MOLT_ERR_ARG, "schedule \"%s\" (wsd, cosine or constant)",
                         o->schedule);
    return MOLT_OK;
}

molt_status molt_train(molt_ctx *ctx, molt_model *m, const molt_train_opts *o, molt_train_fn cb,
                       void *user, molt_train_report *final) {
    molt_status st = check_opts(ctx, m, o);
    if (st != MOLT_OK)
        return st;
    if ((st = fio_mkdir_p(ctx, o->out_dir)) != MOLT_OK)
        return st;
    int B = o->batch, T = o->seq_len;
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
    if ((st = tm_new(ctx, m, B, T, &tm)) != MOLT_OK ||
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
    tl.rng = o->seed * 0x9E3779B97F4A7C15ull + 1;
    if (o->resume && (st = train_resume(ctx, &tl, true)) != MOLT_OK)
        goto done;
    char path[4200];
    fio_join(path, sizeof path, o->out_dir, "log.jsonl");
    log = fopen(path, o->resume ? "a" : "w");
    if (!log) {
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
            tm_forward(ex, tm, in);
            loss += tm_loss_ce(ex, tm, tgt, 1.0f / (float)o->accum) / o->accum;
            tm_backward(ex, tm);
        }
        if ((st = train_step(ex, ctx, &tl, tm->grad, loss, "")) != MOLT_OK)
            goto done;
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
            rep.eval_loss = eval_loss(ex, tm, &ev, o->eval_batches, in, tgt);
        fprintf(log, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.4f, "
                     "\"tokens\": %lld, \"tok_per_s\": %.1f",
                (long long)rep.step, loss, rep.lr, rep.grad_norm, (long long)tl.tokens,
                rep.tok_per_s);
        if (!isnan(rep.eval_loss))
            fprintf(log, ", \"eval_loss\": %.6f", rep.eval_loss);
        fprintf(log, "}\n");
        fflush(log);
        if (cb)
            cb(&rep, user);
        if ((st = train_step_end(ctx, &tl)) != MOLT_OK) // the checkpoint, once logged
            goto done;
    }
    if ((st = molt_model_save(ctx, m, o->out_dir, "f32")) != MOLT_OK)
        goto done;
    if (final)
        *final = rep;
done:
    if (log)
        fclose(log);
    molt__free(in);
    molt__free(tgt);
    train_loop_free(&tl);
    tm_free(tm);
    data_free(&data);
    data_free(&ev);
    return st;
}
