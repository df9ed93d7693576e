/*
 * test_train.c — the training core against PyTorch autograd.
 *
 * For tiny random models of every architecture (Llama with GQA, Llamba with
 * n_qk < n_v, HF Mamba-2, a molt_hybrid with attention / hybrid / SSM layers,
 * and a Llama of odd widths whose gate/up weights are not adjacent)
 * written by tests/ref/make_tiny_models.py:
 *   - the mean CE loss and every parameter gradient equal tests/ref/train_ref.py
 *     (float64 PyTorch autograd) to relative L2 1e-4;
 *   - ten AdamW steps (with weight decay and clipping) give the same losses to 1e-4.
 * The MLP's bf16 activations (block.c, train_mlp_b16) on the CPU twins: within bf16
 * rounding of the reference where the branch runs, the fp32 bits where it does not.
 * Also: a NaN in the weights stops training with a message naming the step and
 * tensor, and the last checkpoint stays loadable.
 */
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/mem.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"
#include "train/loss.h"
#include "train/model_train.h"
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static molt_ctx *ctx;

enum { B = 2, T = 16 };

static void write_batch(const char *path, const int32_t *in, const int32_t *tgt) {
    FILE *f = fopen(path, "wb");
    int32_t h[2] = {B, T};
    fwrite(h, 4, 2, f);
    fwrite(in, 4, B * T, f);
    fwrite(tgt, 4, B * T, f);
    fclose(f);
}

// The MLP's bf16 activations (block.c mlp_b16, backward.h *_b16) without a GPU: the CPU
// table with train_mlp_b16 set, under a bf16 exec (the CPU's fp32 GEMMs ignore the flag;
// the SwiGLU twins round h and ∂gu to bf16, the GEMM twins widen them). Where the MLP has
// its fused gate|up GEMM the branch runs: the loss and gradients move off the fp32 path's
// bits but stay within bf16 rounding of PyTorch (a wrong buffer or operand would not);
// elsewhere (no MLP, unfused gate/up) they are the fp32 path's bits.
static void check_mlp_b16(const molt_model *m, train_model *tm, st_file *g, const char *arch,
                          const int32_t *in, const int32_t *tgt, double loss32) {
    const layer_weights *l0 = &m->layers[0];
    int  d = m->cfg.d_model, F = m->cfg.d_ff;
    bool runs = m->cfg.has_mlp && l0->w_up == l0->w_gate + (size_t)F * d;
    molt_backend be16 = molt_backend_cpu;
    be16.train_mlp_b16 = true;
    molt_exec ex16;
    CHECK(molt_exec_init(&ex16, &be16, 2), "%s: the b16 table refused", arch);
    ex16.flags |= MOLT_EXEC_BF16;
    float *g32 = malloc(sizeof(float) * m->n_floats);
    memcpy(g32, tm->grad, sizeof(float) * m->n_floats);
    tm_zero_grad(tm);
    tm_forward(&ex16, tm, in);
    double loss = tm_loss_ce(&ex16, tm, tgt, 1.0f);
    tm_backward(&ex16, tm);
    int    same = memcmp(g32, tm->grad, sizeof(float) * m->n_floats) == 0 && loss == loss32;
    double worst = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        const st_tensor  *t = st_find(g, p->name);
        if (!t || (size_t)t->numel != p->numel)
            continue;
        float *want = malloc(sizeof(float) * p->numel);
        st_read_f32(ctx, t, want);
        worst = fmax(worst, t_rel_l2(tm->grad + p->offset, want, p->numel));
        free(want);
    }
    if (runs) {
        CHECK(!same, "%s: bf16 MLP activations: the fp32 path's bits (the branch did not run)",
              arch);
        CHECK(fabs(loss - loss32) <= 1e-3 * fabs(loss32) && worst <= 2e-2,
              "%s: bf16 MLP activations: loss %.7f vs %.7f, worst gradient rel-L2 %.2e", arch,
              loss, loss32, worst);
    } else {
        CHECK(same, "%s: without a fused bf16 MLP the gradients changed", arch);
    }
    printf("%-7s bf16 MLP activations %s: loss %.6f, worst gradient rel-L2 %.2e\n", arch,
           runs ? "on" : "(not taken)", loss, worst);
    memcpy(tm->grad, g32, sizeof(float) * m->n_floats);
    free(g32);
}

static void check_arch(const char *root, const char *arch) {
    char dir[512], batch[600], out[600], cmd[2400];
    snprintf(dir, sizeof dir, "%s/%s", root, arch);
    molt_load_opts lo = {NULL, 1};
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, dir, &lo, &m) == MOLT_OK, "%s: load: %s", arch,
          molt_last_error(ctx));
    if (!m)
        return;
    int32_t in[B * T], tgt[B * T];
    t_seed(7);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
        tgt[i] = i % 5 == 3 ? -1 : (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    }
    snprintf(batch, sizeof batch, "%s/batch.bin", dir);
    write_batch(batch, in, tgt);
    // --- gradients
    snprintf(out, sizeof out, "%s/grads.safetensors", dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/train_ref.py grads %s %s %s > /dev/null",
             dir, batch, out);
    CHECK(system(cmd) == 0, "%s: PyTorch reference failed", arch);
    train_model *tm = NULL;
    CHECK(tm_new(ctx, m, B, T, &tm) == MOLT_OK, "%s: tm_new: %s", arch, molt_last_error(ctx));
    st_file *g = NULL;
    CHECK(st_open(ctx, out, &g) == MOLT_OK, "%s: grads: %s", arch, molt_last_error(ctx));
    if (tm && g) {
        tm_forward(TEX, tm, in);
        double loss = tm_loss_ce(TEX, tm, tgt, 1.0f);
        tm_backward(TEX, tm);
        float ref_loss = 0;
        const st_tensor *tl = st_find(g, "loss");
        CHECK(tl && st_read_f32(ctx, tl, &ref_loss) == MOLT_OK, "%s: no loss", arch);
        CHECK(fabs(loss - (double)ref_loss) <= 1e-5 * fabs((double)ref_loss),
              "%s: loss %.8f vs PyTorch %.8f", arch, loss, (double)ref_loss);
        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < m->n_params; i++) {
            const param_info *p = &m->params[i];
            const st_tensor *t = st_find(g, p->name);
            CHECK(t && (size_t)t->numel == p->numel, "%s: no reference gradient for %s", arch,
                  p->name);
            if (!t)
                continue;
            float *want = malloc(sizeof(float) * p->numel);
            st_read_f32(ctx, t, want);
            char what[256];
            snprintf(what, sizeof what, "%s grad %s", arch, p->name);
            t_close(what, tm->grad + p->offset, want, p->numel, -1, 1e-4);
            double r = t_rel_l2(tm->grad + p->offset, want, p->numel);
            if (r > worst) {
                worst = r;
                worst_name = p->name;
            }
            free(want);
        }
        printf("%-7s loss %.6f (PyTorch %.6f); %d gradients, worst rel-L2 %.2e (%s)\n", arch,
               loss, (double)ref_loss, m->n_params, worst, worst_name);
        check_mlp_b16(m, tm, g, arch, in, tgt, loss);
    }
    st_close(g);
    // --- ten AdamW steps (lr 3e-3, wd 0.1, clip 0.5) on the same batch
    snprintf(out, sizeof out, "%s/steps.json", dir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/ref/train_ref.py steps %s %s 10 3e-3 0.1 0.5 %s > /dev/null",
             dir, batch, out);
    CHECK(system(cmd) == 0, "%s: PyTorch steps failed", arch);
    size_t len;
    char *js = t_read_file(out, &len);
    adamw opt;
    if (tm && js && adamw_init(ctx, &opt, m, NULL) == MOLT_OK) {
        double worst = 0;
        char *p = strchr(js, '[');
        for (int s = 0; s < 10; s++) {
            tm_zero_grad(tm);
            tm_forward(TEX, tm, in);
            double loss = tm_loss_ce(TEX, tm, tgt, 1.0f);
            tm_backward(TEX, tm);
            double ref = p ? strtod(p + 1, &p) : (double)NAN;
            CHECK(fabs(loss - ref) <= 1e-4, "%s: step %d loss %.7f vs PyTorch %.7f", arch, s,
                  loss, ref);
            worst = fmax(worst, fabs(loss - ref));
            double gn = grad_norm(TEX, m, &opt, tm->grad, NULL);
            grad_clip(TEX, &opt, tm->grad, gn, 0.5);
            adamw_update(TEX, m, &opt, tm->grad, 3e-3f);
        }
        printf("%-7s 10 AdamW steps: worst |loss - PyTorch| = %.2e\n", arch, worst);
        adamw_free(&opt);
    } else {
        CHECK(0, "%s: no steps reference", arch);
    }
    free(js);
    tm_free(tm);
    molt_model_free(m);
}

// Gradient accumulation: two micro-batches of one sequence each, loss scaled
// by 1/2, give the gradient of the two-sequence batch (same number of counted
// targets per sequence, so the means agree).
static void check_accumulation(const char *root) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llamba", root);
    molt_load_opts lo = {NULL, 1};
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, dir, &lo, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (!m)
        return;
    train_model *full = NULL, *half = NULL;
    CHECK(tm_new(ctx, m, 2, T, &full) == MOLT_OK && tm_new(ctx, m, 1, T, &half) == MOLT_OK,
          "tm_new");
    if (full && half) {
        int32_t in[2 * T], tgt[2 * T];
        for (int i = 0; i < 2 * T; i++) {
            in[i] = (i * 13 + 5) % m->cfg.vocab;
            tgt[i] = (i * 7 + 1) % m->cfg.vocab;
        }
        tm_forward(TEX, full, in);
        tm_loss_ce(TEX, full, tgt, 1.0f);
        tm_backward(TEX, full);
        for (int b = 0; b < 2; b++) {
            tm_forward(TEX, half, in + b * T);
            tm_loss_ce(TEX, half, tgt + b * T, 0.5f);
            tm_backward(TEX, half);
        }
        t_close("accumulated vs full-batch gradients", half->grad, full->grad, m->n_floats, -1,
                1e-5);
    }
    tm_free(full);
    tm_free(half);
    molt_model_free(m);
}

// poisons a weight after step 4 (the run's checkpoint at step 3 is written)
static void poison_after_4(const molt_train_report *r, void *user) {
    if (r->step == 4)
        ((molt_model *)user)->layers[1].w_up[5] = NAN;
}

// NaN guard: a poisoned weight stops training with a message naming the step
// and the first non-finite gradient; the checkpoint written before survives.
static void check_nan_guard(const char *root) {
    char dir[512], data[600], out[600];
    snprintf(dir, sizeof dir, "%s/llama", root);
    snprintf(data, sizeof data, "%s/data.u16", root);
    snprintf(out, sizeof out, "%s/run", root);
    FILE *f = fopen(data, "wb");
    for (int i = 0; i < 4000; i++) {
        uint16_t v = (uint16_t)((i * 7 + i / 13) % 60);
        fwrite(&v, 2, 1, f);
    }
    fclose(f);
    molt_load_opts lo = {NULL, 1};
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, dir, &lo, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (!m)
        return;
    molt_train_opts o = molt_train_defaults();
    const char *files[1] = {data};
    o.data = files;
    o.n_data = 1;
    o.data_format = "u16";
    o.out_dir = out;
    o.seq_len = 16;
    o.batch = 2;
    o.steps = 6;
    o.save_every = 3;
    // a weight poisoned after step 4: the run must stop at step 5, before writing
    // anything over the good checkpoint of step 3
    molt_status st = molt_train(ctx, m, &o, poison_after_4, m, NULL);
    CHECK(st == MOLT_ERR_NUMERIC && strstr(molt_last_error(ctx), "step 5") &&
              strstr(molt_last_error(ctx), "non-finite"),
          "NaN guard: status %d, %s", st, molt_last_error(ctx));
    printf("NaN guard: %s\n", molt_last_error(ctx));
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ckpt-00000003", out);
    molt_model *c = NULL;
    CHECK(molt_model_load(ctx, ck, &lo, &c) == MOLT_OK, "last checkpoint unreadable: %s",
          molt_last_error(ctx));
    if (c) {
        bool finite = true;
        for (size_t i = 0; i < c->n_floats; i++)
            finite &= isfinite(c->data[i]) != 0;
        CHECK(finite, "the kept checkpoint holds non-finite weights");
    }
    molt_model_free(c);
    molt_model_free(m);
}

// the tiny model of arch made by make_tiny_models.py under root (NULL, a failed check, if not)
static molt_model *load_arch(const char *root, const char *arch) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, arch);
    molt_load_opts lo = {NULL, 1};
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, dir, &lo, &m) == MOLT_OK, "%s: load: %s", arch,
          molt_last_error(ctx));
    return m;
}

// tm_new_logits (one layer's activations reused by every layer) gives the same
// logits, bit for bit, as the training model and the full capture, in a smaller
// arena (hybrid: layers of different mixers, the shared slot is the largest).
static void check_logits_capture(const char *root, const char *arch) {
    molt_model *m = load_arch(root, arch);
    if (!m)
        return;
    int32_t in[B * T];
    t_seed(11);
    for (int i = 0; i < B * T; i++)
        in[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    train_model *tr = NULL, *cap = NULL, *lg = NULL;
    CHECK(tm_new(ctx, m, B, T, &tr) == MOLT_OK && tm_new_capture(ctx, m, B, T, &cap) == MOLT_OK &&
              tm_new_logits(ctx, m, B, T, &lg) == MOLT_OK,
          "%s: tm_new*: %s", arch, molt_last_error(ctx));
    if (tr && cap && lg) {
        size_t n = (size_t)B * T * (size_t)m->cfg.vocab;
        for (size_t i = 0; i < n; i++)
            lg->logits[i] = NAN;
        tm_forward(TEX, tr, in);
        tm_forward(TEX, cap, in);
        tm_forward(TEX, lg, in);
        CHECK(!memcmp(tr->logits, lg->logits, n * sizeof(float)) &&
                  !memcmp(cap->logits, lg->logits, n * sizeof(float)),
              "%s: tm_new_logits logits differ from the full forward's", arch);
        CHECK(m->cfg.n_layer < 2 || lg->arena_floats < cap->arena_floats,
              "%s: logits-only arena %zu floats, not below the capture's %zu", arch,
              lg->arena_floats, cap->arena_floats);
        CHECK(!lg->grad && lg->capture, "%s: tm_new_logits has a gradient buffer", arch);
    }
    tm_free(tr);
    tm_free(cap);
    tm_free(lg);
    molt_model_free(m);
}

// tm_new_recompute (blocks recomputed in the backward from their saved inputs) gives the
// same logits, loss and gradient buffer, bit for bit, as tm_new, in a smaller arena.
static void check_recompute(const char *root, const char *arch) {
    molt_model *m = load_arch(root, arch);
    if (!m)
        return;
    int32_t in[B * T], tg[B * T];
    t_seed(12);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
        tg[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    }
    train_model *tr = NULL, *rc = NULL;
    CHECK(tm_new(ctx, m, B, T, &tr) == MOLT_OK && tm_new_recompute(ctx, m, B, T, &rc) == MOLT_OK,
          "%s: tm_new*: %s", arch, molt_last_error(ctx));
    if (tr && rc) {
        size_t n = (size_t)B * T * (size_t)m->cfg.vocab, ng = m->n_floats;
        double l1 = 0, l2 = 0;
        for (int rep = 0; rep < 2; rep++) { // twice: the second step starts from a used arena
            tm_zero_grad(tr), tm_zero_grad(rc);
            tm_forward(TEX, tr, in);
            tm_forward(TEX, rc, in);
            l1 = tm_loss_ce(TEX, tr, tg, 1.0f);
            l2 = tm_loss_ce(TEX, rc, tg, 1.0f);
            tm_backward(TEX, tr);
            tm_backward(TEX, rc);
        }
        CHECK(!memcmp(tr->logits, rc->logits, n * sizeof(float)) && l1 == l2,
              "%s: recompute: logits or loss differ (%.9g vs %.9g)", arch, l1, l2);
        size_t diff = 0, nz = 0;
        for (size_t i = 0; i < ng; i++) {
            diff += memcmp(&tr->grad[i], &rc->grad[i], sizeof(float)) != 0;
            nz += tr->grad[i] != 0.0f;
        }
        CHECK(diff == 0 && nz > ng / 2, "%s: recompute: %zu of %zu gradients differ (%zu nonzero)",
              arch, diff, ng, nz);
        CHECK(m->cfg.n_layer < 2 || rc->arena_floats < tr->arena_floats,
              "%s: recompute arena %zu floats, not below tm_new's %zu", arch, rc->arena_floats,
              tr->arena_floats);
    }
    tm_free(tr);
    tm_free(rc);
    molt_model_free(m);
}

// MOHAWK stage 3's loss with the logits by chunks (tm_new_kind head_rows, tm_kd_step)
// against the whole-logits path: tm_kd_step unchunked makes the same calls as
// loss_soft_ce + tm_backward (the same bits); in chunks of 5 rows (N = 32: a short last
// chunk) the same loss and gradients up to the regrouped head-gradient sums, with smaller
// arenas. The teacher is the model itself at τ = 2 (a nonzero gradient).
static void check_head_chunks(const char *root, const char *arch) {
    molt_model *m = load_arch(root, arch);
    if (!m)
        return;
    int32_t in[B * T];
    t_seed(13);
    for (int i = 0; i < B * T; i++)
        in[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    train_model *ts[3] = {NULL}, *tt[3] = {NULL};
    int          hr[3] = {0, 0, 5};
    bool         ok = true;
    for (int k = 0; k < 3; k++)
        ok &= tm_new_kind(ctx, m, B, T, TM_TRAIN, hr[k], &ts[k]) == MOLT_OK &&
              tm_new_kind(ctx, m, B, T, TM_LOGITS, hr[k], &tt[k]) == MOLT_OK;
    CHECK(ok, "%s: tm_new_kind: %s", arch, molt_last_error(ctx));
    if (ok) {
        int    N = B * T, V = m->cfg.vocab;
        double loss[3];
        double *rows = be_alloc(m->be, sizeof(double) * (size_t)N);
        for (int k = 0; k < 3; k++) {
            tm_zero_grad(ts[k]);
            tm_forward(TEX, tt[k], in);
            tm_forward(TEX, ts[k], in);
            if (k == 0) { // the whole-logits calls
                loss[k] = loss_soft_ce(TEX, rows, ts[k]->dlogits, ts[k]->logits, tt[k]->logits,
                                       N, V, 2.0f, 1.0f / (float)N);
                tm_backward(TEX, ts[k]);
            } else
                loss[k] = tm_kd_step(TEX, ts[k], tt[k], loss_soft_ce, 2.0f, 1.0f / (float)N, true);
        }
        be_free(m->be, rows);
        size_t ng = m->n_floats, same = 0, nz = 0;
        double worst = 0, gmax = 0;
        for (size_t i = 0; i < ng; i++) {
            same += !memcmp(&ts[0]->grad[i], &ts[1]->grad[i], sizeof(float));
            nz += ts[0]->grad[i] != 0.0f;
            worst = fmax(worst, fabs((double)ts[0]->grad[i] - (double)ts[2]->grad[i]));
            gmax = fmax(gmax, fabs((double)ts[0]->grad[i]));
        }
        CHECK(loss[0] == loss[1] && same == ng && nz > ng / 4,
              "%s: tm_kd_step unchunked: loss %.9g vs %.9g, %zu of %zu gradients equal (%zu nonzero)",
              arch, loss[1], loss[0], same, ng, nz);
        CHECK(fabs(loss[2] - loss[0]) <= 1e-6 * fabs(loss[0]) && worst <= 1e-5 * gmax,
              "%s: chunks of 5 rows: loss %.9g vs %.9g, gradient off by %.3g (max %.3g)", arch,
              loss[2], loss[0], worst, gmax);
        CHECK(ts[2]->head_rows == 5 && ts[2]->dlogits == ts[2]->logits &&
                  ts[2]->arena_floats < ts[0]->arena_floats &&
                  tt[2]->arena_floats < tt[0]->arena_floats,
              "%s: chunked arenas %zu / %zu floats, not below %zu / %zu", arch,
              ts[2]->arena_floats, tt[2]->arena_floats, ts[0]->arena_floats, tt[0]->arena_floats);
    }
    for (int k = 0; k < 3; k++)
        tm_free(ts[k]), tm_free(tt[k]);
    molt_model_free(m);
}

// Training's cross-entropy with the logits by chunks (tm_ce_step): unchunked, the calls of
// tm_loss_ce + tm_backward (the same bits); in chunks of 5 rows (ignored targets among them)
// the same mean loss and gradients up to the regrouped head-gradient sums.
static void check_ce_chunks(const char *root, const char *arch) {
    molt_model *m = load_arch(root, arch);
    if (!m)
        return;
    int32_t in[B * T], tg[B * T];
    t_seed(14);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
        tg[i] = i % 7 == 3 ? -1 : (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    }
    train_model *tm[3] = {NULL};
    int          hr[3] = {0, 0, 5};
    bool         ok = true;
    for (int k = 0; k < 3; k++)
        ok &= tm_new_kind(ctx, m, B, T, TM_TRAIN, hr[k], &tm[k]) == MOLT_OK;
    CHECK(ok, "%s: tm_new_kind: %s", arch, molt_last_error(ctx));
    if (ok) {
        double loss[3];
        for (int k = 0; k < 3; k++) {
            tm_zero_grad(tm[k]);
            tm_forward(TEX, tm[k], in);
            if (k == 0) {
                loss[k] = tm_loss_ce(TEX, tm[k], tg, 0.5f);
                tm_backward(TEX, tm[k]);
            } else
                loss[k] = tm_ce_step(TEX, tm[k], tg, 0.5f, true);
        }
        size_t ng = m->n_floats, same = 0;
        double worst = 0, gmax = 0;
        for (size_t i = 0; i < ng; i++) {
            same += !memcmp(&tm[0]->grad[i], &tm[1]->grad[i], sizeof(float));
            worst = fmax(worst, fabs((double)tm[0]->grad[i] - (double)tm[2]->grad[i]));
            gmax = fmax(gmax, fabs((double)tm[0]->grad[i]));
        }
        CHECK(loss[0] == loss[1] && same == ng,
              "%s: tm_ce_step unchunked: loss %.9g vs %.9g, %zu of %zu gradients equal", arch,
              loss[1], loss[0], same, ng);
        CHECK(fabs(loss[2] - loss[0]) <= 1e-6 * fabs(loss[0]) && worst <= 1e-5 * gmax && gmax > 0,
              "%s: CE in chunks of 5 rows: loss %.9g vs %.9g, gradient off by %.3g (max %.3g)",
              arch, loss[2], loss[0], worst, gmax);
    }
    for (int k = 0; k < 3; k++)
        tm_free(tm[k]);
    molt_model_free(m);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, getenv("MOLT_TEST_THREADS") ? atoi(getenv("MOLT_TEST_THREADS")) : 2);
    char root[] = "/tmp/molt_train_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/make_tiny_models.py %s > /dev/null",
             root);
    CHECK(system(cmd) == 0, "make_tiny_models.py failed");
    // llama_odd: widths that are not multiples of 16 (the unfused gate/up path)
    static const char *const archs[] = {"llama", "llamba", "mamba2", "hybrid", "llama_odd"};
    for (int i = 0; i < 5; i++)
        check_arch(root, archs[i]);
    for (int i = 0; i < 5; i++)
        check_logits_capture(root, archs[i]);
    for (int i = 0; i < 5; i++)
        check_recompute(root, archs[i]);
    for (int i = 0; i < 5; i++)
        check_head_chunks(root, archs[i]);
    for (int i = 0; i < 5; i++)
        check_ce_chunks(root, archs[i]);
    check_accumulation(root);
    check_nan_guard(root);
    tm_rmdir(root);
    molt_ctx_free(ctx);
    return t_done("test_train");
}
