/*
 * mohawk.c — molt_distill: the three MOHAWK stages over one data stream.
 *
 * Every step runs the teacher's training forward once (no backward) and reads
 * what the stage needs from its saved activations: the residual stream
 * entering each layer (L[l].x_in, stages 1–2), each layer's softmax attention
 * (stage 1) and the logits (stage 3). Each stage has its own AdamW (β 0.9/0.95,
 * wd 0.1 on the parameters the stage trains, as mohawk's setup_optimizer),
 * a warmup-stable-decay schedule, and its own checkpoints in out_dir/stageK/
 * (`--resume` skips finished stages and continues the current one, after
 * verifying the checkpoint: checksums and the stage's settings, checkpoint.h).
 * out_dir follows rundir.h's rules (kind "distill"; one writer).
 * Trained sets: stage 1 input_layernorm + mixer; stage 2 whole blocks;
 * stage 3 everything (or all but the MLPs with freeze_mlp).
 */
#include "analysis/heads.h"
#include "distill/mohawk.h"
#include "distill/report.h"
#include "distill/student.h"
#include "io/fileio.h"
#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "mixers/attn_train.h"
#include "models/forward.h"
#include "train/checkpoint.h"
#include "train/loss.h"
#include "train/model_train.h"
#include "train/optim.h"
#include "train/rundir.h"
#include "train/step.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

molt_distill_opts molt_distill_defaults(void) {
    molt_distill_opts o;
    memset(&o, 0, sizeof o);
    o.d_state = 16;
    o.init = "transfer";
    o.student = "llamba";
    o.mimo_rank = 4;
    o.ssm_bias = 1;
    o.save_every = 200;
    o.sample_tokens = 2000000;
    o.seq_len = 256;
    o.batch = 8;
    o.stage_tokens[0] = 1000000;
    o.stage_tokens[1] = 2000000;
    o.stage_tokens[2] = 8000000;
    o.stage_lr[0] = 1e-3;
    o.stage_lr[1] = 1e-3;
    o.stage_lr[2] = 5e-4;
    o.tau = 1.0;
    o.kd_loss = "fkl";
    o.warmup_frac = 0.1; // mohawk's WSD
    o.decay_frac = 0.1;
    o.seed = 1234;
    o.kv_pairs = 8;
    o.kv_examples = 200;
    return o;
}

// frozen sets per stage (globs on parameter names, see optim.h)
static const char *const STAGE_FREEZE[3] = {
    "*embedding*,*post_attention_layernorm*,*.mlp.*,*final_layernorm*,lm_head*,*.attn.*,*.adapter.*",
    "*embedding*,*final_layernorm*,lm_head*",
    NULL,
};

// the stage's frozen globs, plus the kept attention heads when asked
static void stage_freeze(char *buf, size_t cap, int stage, const molt_distill_opts *o) {
    const char *base = STAGE_FREEZE[stage - 1];
    const char *mlp = stage == 3 && o->freeze_mlp ? "*.mlp.*" : NULL;
    const char *kept = o->freeze_kept && stage > 1 ? "*.attn.*" : NULL;
    snprintf(buf, cap, "%s%s%s%s%s", base ? base : "", base && mlp ? "," : "", mlp ? mlp : "",
             (base || mlp) && kept ? "," : "", kept ? kept : "");
}

typedef struct distiller {
    molt_ctx         *ctx;
    const molt_model *teacher;
    molt_model       *student;
    train_model      *tt, *ts;
    int               B, T, N; // this rank's rows: B = the global batch / world, N = B·T
    // data parallel (dist/comm.h; NULL: one process): every rank draws each global batch of
    // Bg rows and computes its slice, from row `mine`; rank 0 alone writes files
    molt_comm        *comm;
    int               Bg;
    size_t            mine;
    // stage 1 buffers
    float *M, *dM, *mact, *mwork, *u, *rstd, *du;
    double *rows; // [max(N, B·H)] per-row losses
    // the teacher's probabilities when its training attention saves only lse
    // (flash backends): recomputed per layer into A (attn_train_probs, awork)
    float *A, *awork;
    int     rkl;  // stage 3 loss: reverse KL (opts.kd_loss "rkl"), else the soft CE
} distiller;

// distill_capture_heatmaps from the first head of A and M wherever they live
// (a device's come to the host: the first T·T floats of each)
static void capture_heat(const molt_exec *ex, distill_result *R, const float *A, const float *M,
                         int T, int which) {
    if (ex->be->mem.host_visible) {
        distill_capture_heatmaps(R, A, M, T, which);
        return;
    }
    size_t n = (size_t)T * T;
    float *h = molt__malloc(sizeof(float) * 2 * (n ? n : 1));
    if (!h)
        return; // the report goes without its heatmap
    be_download(ex, h, A, sizeof(float) * n);
    be_download(ex, h + n, M, sizeof(float) * n);
    distill_capture_heatmaps(R, h, h + n, T, which);
    molt__free(h);
}

// layer l's teacher attention probabilities [B,H,T,T] of the captured batch
static const float *teacher_probs(const molt_exec *ex, distiller *D, int l) {
    attn_cfg     ac;
    attn_weights aw;
    layer_attn(D->teacher, l, &ac, &aw);
    const float *A = attn_train_saved_probs(D->tt->L[l].mx, &ac, D->B, D->T);
    if (A)
        return A;
    attn_train_probs(ex, D->A, D->tt->L[l].u, D->B, D->T, &ac, &aw, D->teacher->rope_cos,
                     D->teacher->rope_sin, D->awork);
    return D->A;
}

// ----------------------------------------------------------------------------
// one step of each stage: loss, gradients into ts->grad (+=)

static double stage1_step(const molt_exec *ex, distiller *D, bool backward) {
    const molt_model *s = D->student;
    const model_cfg *c = &s->cfg;
    int d = c->d_model, L = c->n_layer;
    double total = 0;
    for (int l = 0; l < L; l++) {
        int H = student_mat_heads(s, l);
        const layer_weights *w = &s->layers[l];
        const float *x_in = D->tt->L[l].x_in;
        const float *A = teacher_probs(ex, D, l);
        k_rmsnorm_forward(ex, D->u, D->rstd, x_in, w->attn_norm, D->N, d, c->norm_eps);
        student_mat_forward(ex, s, l, D->M, D->mact, D->u, D->B, D->T, D->mwork);
        total += loss_frobenius(ex, D->rows, D->dM, D->M, A, D->B * H, D->T,
                                1.0f / (float)(D->B * H)) /
                 (double)(D->B * H);
        if (!backward)
            continue;
        student_mat_backward(ex, s, l, D->ts->grad, D->du, D->dM, D->mact, D->u, D->B, D->T,
                             D->mwork);
        be_zero(ex, D->ts->dx, sizeof(float) * (size_t)D->N * d); // ∂x_in is not needed
        k_rmsnorm_backward(ex, D->ts->dx, tm_grad_of(D->ts, w->attn_norm), D->du, x_in, w->attn_norm,
                           D->rstd, D->N, d);
    }
    return total;
}

static double stage2_step(const molt_exec *ex, distiller *D, bool backward) {
    const model_cfg *c = &D->student->cfg;
    int d = c->d_model, L = c->n_layer;
    double total = 0;
    float *out = D->du; // [N,d] scratch
    for (int l = 0; l < L; l++) {
        const float *target = l + 1 < L ? D->tt->L[l + 1].x_in : D->tt->x_last;
        tm_block_forward(ex, D->ts, l, D->tt->L[l].x_in, out);
        total += loss_l2_rows(ex, D->rows, D->ts->dx, out, target, D->N, d, 1.0f / (float)D->N) /
                 D->N;
        if (backward)
            tm_block_backward(ex, D->ts, l, D->ts->dx);
    }
    return total;
}

// the logits of both models a chunk of rows at a time (tm_kd_step; one pass for small N·V)
static double stage3_step(const molt_exec *ex, distiller *D, const int32_t *in, double tau, bool backward) {
    tm_forward(ex, D->ts, in);
    return tm_kd_step(ex, D->ts, D->tt, D->rkl ? loss_rev_kl : loss_soft_ce, (float)tau,
                      1.0f / (float)D->N, backward) /
           D->N;
}

static double stage_loss(const molt_exec *ex, distiller *D, int stage, const int32_t *in, double tau, bool backward) {
    return stage == 1 ? stage1_step(ex, D, backward)
           : stage == 2 ? stage2_step(ex, D, backward)
                        : stage3_step(ex, D, in, tau, backward);
}

// ----------------------------------------------------------------------------
// a stage: schedule, optimizer, checkpoints, curve

// The summary a finished stage saved with its "done" mark (older runs wrote
// just "done": its numbers stay unknown, NaN).
static void read_stage_summary(molt_ctx *ctx, const char *done_path, distill_stage_result *res) {
    char *sum = NULL;
    size_t len = 0;
    res->last_loss = (double)NAN;
    if (fio_read_all(ctx, done_path, 4096, &sum, &len) != MOLT_OK)
        return;
    long long tokens = 0;
    if (sscanf(sum, "done %lld %lf %lf %lf", &tokens, &res->seconds, &res->first_loss,
               &res->last_loss) == 4)
        res->tokens = tokens;
    molt__free(sum);
}

// the stage's settings (recorded in its checkpoints, compared on resume)
static char *stage_settings(const distiller *D, int stage, const molt_distill_opts *o,
                            int64_t steps, const char *freeze) {
    js_init_hooks();
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return NULL;
    ckpt_setting(s, "teacher", "%s, %lld floats", model_arch_name(D->teacher->cfg.arch),
                 (long long)D->teacher->n_floats);
    ckpt_setting(s, "student", "%s, %lld floats", model_arch_name(D->student->cfg.arch),
                 (long long)D->student->n_floats);
    char   buf[4096];
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < o->n_data && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "\n" : "", o->data[i]);
    if (o->n_data > 0)
        ckpt_setting(s, "data", "%s (sep \"%s\")", buf, o->sep ? o->sep : "");
    else
        ckpt_setting(s, "data", "%lld teacher samples", (long long)o->sample_tokens);
    ckpt_setting(s, "kv_data", "%s %.17g %d", o->kv_task ? o->kv_task : "", o->kv_data_frac,
                 o->kv_pairs);
    n = 0;
    buf[0] = 0;
    for (int i = 0; i < o->n_keep && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d:%d", i ? "," : "", o->keep_layer[i],
                              o->keep_head[i]);
    ckpt_setting(s, "kept_heads", "%s", buf);
    ckpt_setting(s, "student_shape", "init %s, d_state %d, heads %d, bias %d", o->init,
                 o->d_state, o->n_heads, o->ssm_bias);
    if (o->student && strcmp(o->student, "llamba"))
        ckpt_setting(s, "student", "%s, rank %d", o->student, o->mimo_rank);
    ckpt_setting(s, "stage", "%d", stage);
    ckpt_setting(s, "seq", "%d", o->seq_len);
    ckpt_setting(s, "batch", "%d", o->batch);
    ckpt_setting(s, "steps", "%lld", (long long)steps);
    ckpt_setting(s, "lr", "%.17g", o->stage_lr[stage - 1]);
    if (o->warmup_frac != 0.1 || o->decay_frac != 0.1) // (absent: the default, as older runs)
        ckpt_setting(s, "schedule", "wsd %.17g %.17g", o->warmup_frac, o->decay_frac);
    ckpt_setting(s, "tau", "%.17g", stage == 3 ? o->tau : 0.0);
    if (stage == 3 && D->rkl) // (absent: the forward soft CE, as older runs)
        ckpt_setting(s, "kd_loss", "rkl");
    ckpt_setting(s, "freeze", "%s", freeze);
    ckpt_setting(s, "seed", "%llu", (unsigned long long)o->seed);
    char *txt = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    return txt;
}

static molt_status run_stage(const molt_exec *ex, distiller *D, int stage, const molt_distill_opts *o,
                             const token_stream *data, molt_distill_fn cb, void *user,
                             distill_stage_result *res) {
    molt_ctx *ctx = D->ctx;
    molt_model *s = D->student;
    char dir[4096], path[4200], name[24];
    snprintf(name, sizeof name, "stage%d", stage);
    fio_join(dir, sizeof dir, o->out_dir, name);
    fio_join(path, sizeof path, dir, "done");
    memset(res, 0, sizeof *res);
    res->stage = stage;
    int64_t per = (int64_t)D->Bg * D->T, steps = (o->stage_tokens[stage - 1] + per - 1) / per;
    bool    writer = dist_rank(D->comm) == 0;
    if (steps <= 0)
        return MOLT_OK;
    char freeze[512];
    stage_freeze(freeze, sizeof freeze, stage, o);
    char *settings = stage_settings(D, stage, o, steps, freeze);
    if (!settings)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    if (o->resume && fio_exists(path)) { // finished earlier: load its final checkpoint
        char        ck[4200];
        ckpt_state  cs;
        molt_status st = checkpoint_latest(ctx, dir, ck, sizeof ck);
        if (st == MOLT_OK && (st = checkpoint_verify(ctx, ck, settings, steps, &cs)) == MOLT_OK)
            ckpt_state_free(&cs);
        cJSON_free(settings);
        if (st != MOLT_OK)
            return st;
        read_stage_summary(ctx, path, res);
        molt_load_opts lo = {NULL, 1};
        molt_model *c = NULL;
        if ((st = molt_model_load(ctx, ck, &lo, &c)) == MOLT_OK) {
            st = model_copy_params(ctx, s, c);
            molt_model_free(c);
            res->skipped = st == MOLT_OK;
        }
        return st;
    }
    train_loop  tl;
    molt_status st = writer ? manifest_add(ctx, o->out_dir, "distill", name) : MOLT_OK;
    if (st != MOLT_OK || (writer && (st = fio_mkdir_p(ctx, dir)) != MOLT_OK) ||
        (st = train_loop_init(ctx, &tl, s, freeze[0] ? freeze : NULL)) != MOLT_OK) {
        cJSON_free(settings);
        return st;
    }
    tl.settings = settings;
    tl.sc = (sched_cfg){SCHED_WSD,      o->stage_lr[stage - 1], o->stage_lr[stage - 1] * 1e-2,
                        o->warmup_frac, o->decay_frac,          steps};
    tl.clip = 1.0;
    tl.dir = dir;
    tl.save_every = o->save_every;
    tl.per_step = per;
    tl.rng = o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)stage;
    char what[16];
    snprintf(what, sizeof what, "stage %d", stage);
    int32_t *in = NULL, *tg = NULL;
    if (o->resume && (st = train_resume(ctx, &tl, false)) != MOLT_OK) // (not done: see above)
        goto done;
    in = molt__malloc(sizeof(int32_t) * (size_t)D->Bg * D->T);
    tg = molt__malloc(sizeof(int32_t) * (size_t)D->Bg * D->T);
    res->curve = molt__malloc(sizeof(float) * (size_t)steps);
    res->sec = molt__malloc(sizeof(float) * (size_t)steps);
    res->dev_gb = molt__malloc(sizeof(float) * (size_t)steps);
    res->step_tokens = (int64_t)D->Bg * D->T;
    if (!in || !tg || !res->curve || !res->sec || !res->dev_gb) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    res->n_curve = 0;
    double  t0 = molt__now();
    int64_t tok0 = tl.tokens; // a resumed stage's earlier tokens: not this run's rate
    while (!train_done(&tl)) {
        data_batch(data, &tl.rng, D->Bg, D->T, in, tg);
        D->tt->skip_head = stage != 3; // stages 1-2 read only residual streams and attention
        tm_forward(ex, D->tt, in + D->mine); // the teacher beside the student, on every rank
        tm_zero_grad(D->ts);
        if (stage == 3) // ranks: each layer's reduction starts as its backward ends
            train_overlap_arm(&tl, D->ts);
        double loss = stage_loss(ex, D, stage, in + D->mine, o->tau, true);
        if ((st = train_step(ex, ctx, &tl, D->ts->grad, loss, what)) != MOLT_OK)
            goto done;
        loss = tl.loss; // the mean over the ranks
        if (tl.step == 0 || res->n_curve == 0)
            res->first_loss = loss;
        res->last_loss = loss;
        res->tokens = tl.tokens;
        res->seconds = molt__now() - t0;
        size_t used = 0, all = 0;
        if (ex->be->mem.info)
            ex->be->mem.info(&used, &all);
        res->sec[res->n_curve] = (float)res->seconds;
        res->dev_gb[res->n_curve] = (float)((double)used * 1e-9);
        res->curve[res->n_curve++] = (float)loss;
        if (cb) {
            molt_distill_report r = {stage, tl.step + 1, steps, tl.tokens, loss, res->seconds,
                                     (double)(tl.tokens - tok0) / fmax(res->seconds, 1e-9),
                                     (double)used * 1e-9};
            cb(&r, user);
        }
        if ((st = train_step_end(ctx, &tl)) != MOLT_OK)
            goto done;
    }
    if (writer) { // the "done" mark carries the stage's summary for the report of a resumed run
        char sum[160];
        int  len = snprintf(sum, sizeof sum, "done %lld %.3f %.9g %.9g\n", (long long)tl.tokens,
                            res->seconds, res->first_loss, distill_stage_final_loss(res));
        if ((st = manifest_add(ctx, dir, "checkpoints", "done")) == MOLT_OK)
            st = fio_write_atomic(ctx, path, sum, (size_t)len);
    }
done:
    cJSON_free(settings);
    molt__free(in);
    molt__free(tg);
    train_loop_free(&tl);
    return st;
}

// ----------------------------------------------------------------------------
// KV-task documents mixed into the training stream (retrieval-aware recipes end
// with distillation on retrieval data): prompts of 2..2·kv_pairs pairs, each
// followed by its answer's tokens; seeds from 1000 on, so never the probe's.

static molt_status add_kv_documents(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                                    token_stream *data) {
    size_t want = (size_t)((double)data->n * o->kv_data_frac / (1.0 - o->kv_data_frac));
    size_t cap = data->n + want + 4096, n0 = data->n;
    int32_t *ids = molt__realloc(data->ids, cap * sizeof(int32_t));
    if (!ids)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for KV documents");
    data->ids = ids;
    for (uint64_t seed = 1000; data->n - n0 < want; seed++) {
        int pairs = 2 + (int)(seed % (uint64_t)(2 * o->kv_pairs - 1));
        kv_set set;
        molt_status st = kv_set_build(ctx, t, o->kv_task, pairs, 1, 64, seed, false, &set);
        if (st != MOLT_OK)
            return st;
        for (int e = 0; e < set.n_ex && data->n - n0 < want; e++) {
            const kv_example *x = &set.ex[e];
            int32_t na = 0;
            const int32_t *ans = kv_answer(&x->q[0], &na);
            if (data->n + (size_t)x->n + (size_t)na > cap)
                break;
            memcpy(data->ids + data->n, x->ids, sizeof(int32_t) * (size_t)x->n);
            data->n += (size_t)x->n;
            memcpy(data->ids + data->n, ans, sizeof(int32_t) * (size_t)na);
            data->n += (size_t)na;
        }
        kv_set_free(&set);
    }
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// the whole pipeline

static molt_status check_opts(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o) {
    if (!o->out_dir || !*o->out_dir)
        return molt__err(ctx, MOLT_ERR_ARG, "no output directory given");
    if (t->cfg.arch != ARCH_LLAMA)
        return molt__err(ctx, MOLT_ERR_ARG, "the teacher must be a Llama model (got %s)",
                         model_arch_name(t->cfg.arch));
    if (!t->tok && (o->n_data > 0 || o->eval_data))
        return molt__err(ctx, MOLT_ERR_MISSING, "the teacher has no tokenizer for the text data");
    int64_t total = o->stage_tokens[0] + o->stage_tokens[1] + o->stage_tokens[2];
    if (total <= 0 || o->stage_tokens[0] < 0 || o->stage_tokens[1] < 0 || o->stage_tokens[2] < 0)
        return molt__err(ctx, MOLT_ERR_ARG, "the token budget is zero: give a stage budget > 0");
    int world = dist_world(dist_comm(ctx));
    if (o->batch % world)
        return molt__err(ctx, MOLT_ERR_ARG, "--batch %d is the global batch: it must be a "
                                            "multiple of the %d ranks",
                         o->batch, world);
    if (o->seq_len < 2 || o->seq_len >= t->cfg.max_seq || o->batch < 1)
        return molt__err(ctx, MOLT_ERR_ARG, "sequence length %d (2..%d) and batch %d", o->seq_len,
                         t->cfg.max_seq - 1, o->batch);
    if (o->n_heads > 0 && o->n_heads != t->cfg.n_head && o->stage_tokens[0] > 0)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "stage 1 compares each student head's mixing matrix with a teacher "
                         "attention head: the student needs %d heads (the teacher's), not %d "
                         "(HINT: --stage1-tokens 0, or drop --student-heads)",
                         t->cfg.n_head, o->n_heads);
    if (o->d_state <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "d_state must be positive");
    if (o->kv_data_frac < 0 || o->kv_data_frac >= 1 || (o->kv_data_frac > 0 && !o->kv_task))
        return molt__err(ctx, MOLT_ERR_ARG, "--kv-data-frac must be in [0, 1) and needs --kv-task");
    if (!(o->tau > 0))
        return molt__err(ctx, MOLT_ERR_ARG, "temperature must be positive");
    if (o->kd_loss && strcmp(o->kd_loss, "fkl") && strcmp(o->kd_loss, "rkl"))
        return molt__err(ctx, MOLT_ERR_ARG, "kd_loss \"%s\": fkl or rkl", o->kd_loss);
    for (int k = 0; k < 3; k++)
        if (o->stage_tokens[k] > 0 && !(o->stage_lr[k] > 0))
            return molt__err(ctx, MOLT_ERR_ARG, "stage %d learning rate must be positive", k + 1);
    return sched_check(ctx, SCHED_WSD, o->warmup_frac, o->decay_frac);
}

molt_status molt_distill(molt_ctx *ctx, const molt_model *teacher, const molt_distill_opts *o,
                         molt_distill_fn cb, void *user) {
    molt_status st = check_opts(ctx, teacher, o);
    if (st != MOLT_OK)
        return st;
    molt_comm *comm = dist_comm(ctx);
    bool       writer = dist_rank(comm) == 0;
    rundir     rd = {-1}; // before any work: refused, locked or unwritable fail here
    if ((o->input && (st = rundir_check_input(ctx, o->input, o->out_dir)) != MOLT_OK) ||
        (writer &&
         (st = rundir_open(ctx, o->out_dir, "distill", o->resume, o->overwrite, &rd)) != MOLT_OK))
        return st;
    distiller D;
    memset(&D, 0, sizeof D);
    D.ctx = ctx;
    D.teacher = teacher;
    D.rkl = o->kd_loss && !strcmp(o->kd_loss, "rkl");
    D.comm = comm;
    D.Bg = o->batch;
    D.B = o->batch / dist_world(comm);
    D.T = o->seq_len;
    D.N = D.B * D.T;
    D.mine = (size_t)dist_rank(comm) * D.N;
    token_stream data = {0}, ev = {0};
    distill_result R;
    memset(&R, 0, sizeof R);
    double t_all = molt__now();
    if ((st = mohawk_make_student(ctx, teacher, o, &D.student)) != MOLT_OK) {
        rundir_close(&rd);
        return st;
    }
    // data: text, or the teacher's own samples
    if (o->n_data > 0) {
        st = data_load(ctx, teacher->tok, teacher->cfg.vocab, o->data, o->n_data, "text", o->sep,
                       &data);
    } else {
        if (cb) {
            molt_distill_report r = {0, 0, 0, 0, 0, 0, 0, 0};
            cb(&r, user);
        }
        double ts0 = molt__now();
        st = mohawk_teacher_samples(ctx, teacher, o->sample_tokens, D.T, o->seed, &data);
        R.sample_seconds = molt__now() - ts0;
        R.sampled_tokens = (int64_t)data.n;
    }
    if (st != MOLT_OK)
        goto done;
    if (data.n < (size_t)D.T + 2) {
        st = molt__err(ctx, MOLT_ERR_ARG, "only %zu tokens of data", data.n);
        goto done;
    }
    if (o->kv_task && o->kv_data_frac > 0 && (st = add_kv_documents(ctx, teacher, o, &data)) !=
        MOLT_OK)
        goto done;
    if (o->eval_data) {
        const char *ep[1] = {o->eval_data};
        if ((st = data_load(ctx, teacher->tok, teacher->cfg.vocab, ep, 1, "text", o->sep, &ev)) !=
            MOLT_OK)
            goto done;
    }
    // the teacher's per-layer captures serve stages 1-2 only: without them (stage 3 alone,
    // the probes) its logits are all that is read, from one reused layer's activations
    bool logits_only = o->stage_tokens[0] == 0 && o->stage_tokens[1] == 0;
    // stage 3's logits by chunks of rows where N·V is large (tm_auto_head_rows)
    int hr = tm_auto_head_rows(D.student, D.B, D.T);
    if ((st = tm_new_kind(ctx, (molt_model *)(uintptr_t)teacher, D.B, D.T,
                          logits_only ? TM_LOGITS : TM_CAPTURE, hr,
                          &D.tt)) != MOLT_OK ||
        (st = tm_new_kind(ctx, D.student, D.B, D.T, o->recompute ? TM_RECOMPUTE : TM_TRAIN, hr,
                          &D.ts)) != MOLT_OK)
        goto done;
    size_t sH = 0, s_act = 0, s_work = 0; // the largest layer's (each has its own ssm config)
    for (int li = 0; li < D.student->cfg.n_layer; li++) {
        sH = MOLT_MAX(sH, (size_t)student_mat_heads(D.student, li));
        s_act = MOLT_MAX(s_act, student_mat_act_floats(D.student, li, D.B, D.T));
        s_work = MOLT_MAX(s_work, student_mat_work_floats(D.student, li, D.B, D.T));
    }
    size_t BHTT = (size_t)D.B * sH * D.T * D.T, Nd = (size_t)D.N * teacher->cfg.d_model;
    const molt_backend *be = D.student->be; // stage-1 buffers live where the student computes
    D.M = be_allocf(be, BHTT);
    D.dM = be_allocf(be, BHTT);
    D.mact = be_allocf(be, s_act);
    D.mwork = be_allocf(be, s_work);
    D.u = be_allocf(be, Nd);
    D.du = be_allocf(be, Nd);
    D.rstd = be_allocf(be, (size_t)D.N);
    D.rows = be_alloc(be, sizeof(double) * MOLT_MAX((size_t)D.N, D.B * sH));
    bool flash = false; // the teacher saves lse only: its probabilities are recomputed
    size_t tA = 0, t_work = 0;
    for (int li = 0; li < teacher->cfg.n_layer; li++) {
        attn_cfg     ac;
        attn_weights aw;
        layer_attn(teacher, li, &ac, &aw);
        flash |= ac.flash;
        tA = MOLT_MAX(tA, (size_t)D.B * ac.H * D.T * D.T);
        t_work = MOLT_MAX(t_work, attn_train_work_floats(&ac, D.B, D.T));
    }
    if (flash) {
        D.A = be_allocf(teacher->be, tA);
        D.awork = be_allocf(teacher->be, t_work);
    }
    if (!D.M || !D.dM || !D.mact || !D.mwork || !D.u || !D.du || !D.rstd || !D.rows ||
        (flash && (!D.A || !D.awork))) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory for stage-1 matrices (%.0f MB)",
                       (double)BHTT * 8e-6);
        goto done;
    }
    // a fixed probe batch measures the stage-1 distance before and after
    size_t   Ng = (size_t)D.Bg * D.T;
    int32_t *probe_in = molt__malloc(sizeof(int32_t) * Ng * 2);
    if (!probe_in) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    uint64_t prng = 99;
    data_batch(&data, &prng, D.Bg, D.T, probe_in, probe_in + Ng);
    probe_in += D.mine; // this rank's rows (rank 0's start with the heat map's)
    molt_exec        exv = molt__exec(ctx);
    const molt_exec *ex = &exv;
    D.tt->skip_head = true; // the probe reads residual streams and attention only
    tm_forward(ex, D.tt, probe_in);
    // (stage1_step leaves the last layer's student matrices in D.M)
    int Ll = teacher->cfg.n_layer - 1;
    R.heat_layer = Ll;
    R.frob_before = stage1_step(ex, &D, false) / teacher->cfg.n_layer;
    if (comm && (st = dist_mean_host(ctx, comm, &R.frob_before, 1)) != MOLT_OK) {
        molt__free(probe_in - D.mine);
        goto done;
    }
    capture_heat(ex, &R, teacher_probs(ex, &D, Ll), D.M, D.T, 0);
    for (int k = 1; k <= 3 && st == MOLT_OK; k++)
        st = run_stage(ex, &D, k, o, &data, cb, user, &R.stages[k - 1]);
    if (st == MOLT_OK) {
        D.tt->skip_head = true;
        tm_forward(ex, D.tt, probe_in);
        R.frob_after = stage1_step(ex, &D, false) / teacher->cfg.n_layer;
        if (comm)
            st = dist_mean_host(ctx, comm, &R.frob_after, 1);
        capture_heat(ex, &R, teacher_probs(ex, &D, Ll), D.M, D.T, 1);
    }
    molt__free(probe_in - D.mine);
    if (st != MOLT_OK || !writer) // the model and the report: rank 0's
        goto done;
    if ((st = molt_model_save(ctx, D.student, o->out_dir, "f32")) != MOLT_OK)
        goto done;
    R.total_seconds = molt__now() - t_all;
    st = distill_write_report(ctx, o, teacher, D.student, &ev, &R);
done:
    for (int k = 0; k < 3; k++) {
        molt__free(R.stages[k].curve);
        molt__free(R.stages[k].sec);
        molt__free(R.stages[k].dev_gb);
    }
    molt__free(R.heat_teacher);
    molt__free(R.heat_before);
    molt__free(R.heat_after);
    if (D.student) {
        const molt_backend *fb = D.student->be;
        be_free(fb, D.M);
        be_free(fb, D.dM);
        be_free(fb, D.mact);
        be_free(fb, D.mwork);
        be_free(fb, D.u);
        be_free(fb, D.du);
        be_free(fb, D.rstd);
        be_free(fb, D.rows);
        be_free(teacher->be, D.A);
        be_free(teacher->be, D.awork);
    }
    tm_free(D.tt);
    tm_free(D.ts);
    molt_model_free(D.student);
    data_free(&data);
    data_free(&ev);
    rundir_close(&rd);
    return st;
}
