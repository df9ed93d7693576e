/*
 * heads.c — which heads retrieve: Gather-and-Aggregate head ablation on the
 * key-value probe (ALGORITHMS.md §6; the ranking of §7), layer pruning, and
 * how sharp each head's mixing row is at the answer position.
 *
 * Heads ("units"), each an input column block of a mixer's output projection:
 *   attention head h of an attention layer     o_proj [d, H·hd] columns h·hd ..
 *   kept head j of a hybrid layer              o_proj [d, n_keep·hd] columns j·hd ..,
 *                                              reported as teacher head keep_heads[l][j]
 *   recurrent head h of a DiscreteMamba2 mixer out_proj [d, H·P] columns h·P ..
 *   (Llamba layers and the SSM branch of hybrid layers)
 * A head is ablated by zeroing its columns — `W.view(d_model, n_heads,
 * head_dim)[:, h, :] = 0` as in the G&A code — on a copy-and-restore basis:
 * the weights are bit-identical afterwards, on error paths too. HF Mamba-2
 * heads are not units: its gated RMSNorm normalises y over groups of heads
 * before out_proj, so a head zeroed at out_proj still scales its neighbours
 * and cannot be removed on its own. (In hybrid layers the combiner's
 * statistics matching couples the two branches too; we ablate as G&A does
 * and report what the probe sees.)
 *
 * Importance = accuracy of the unablated model − accuracy with the head
 * zeroed, on the same seeded prompts (kv_set), per seed; the ranking uses the
 * mean over seeds and reports the spread (min, max).
 *
 * Layer skipping without touching the forward pass: a block computes
 *     x ← x + out_proj(mixer(norm(x)))      (o_proj + bias / out_proj + bias;
 *                                            hybrid: 0.5·(s + adapter(a')))
 *     x ← x + down(swiglu(norm(x)))
 * With o_proj, out_proj, their biases, the hybrid adapter (weight and bias)
 * and down_proj all zero, both updates add exactly 0.0 (hybrid: s = 0 and
 * a = 0, so a' = 0 and adapter(a') = 0), and x + 0.0 == x bit for bit: the
 * block is the identity on the residual stream, which is what removing it
 * does. (A non-finite activation inside the block would break this; the
 * probe's do not.)
 *
 * Sharpness (our documented choice, ALGORITHMS.md §6): the row of the mixing
 * matrix at the answer position t = n−1 of every probe prompt — softmax
 * probabilities for attention (attn_materialize), the materialized SSM
 * matrix for recurrent heads (ssm_mixer_materialize; negatives clipped to 0,
 * then the row normalised to sum 1) — gives the entropy (nats), the top
 * weight, and the mass on the queried key's tokens in the dictionary, on its
 * value's tokens and on tokens holding a newline; each averaged over the
 * examples of every seed. The layer inputs come from the training forward
 * (tm_forward saves the normed input u of every layer), run with B = 1 over
 * the longest prompt: shorter prompts are padded at the end, which causal
 * mixers never see from earlier positions.
 */
#include "analysis/heads.h"

#include "kernels/kernels.h"
#include "mixers/mixer.h"
#include "models/forward.h"
#include "train/model_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct unit {
    int    layer, head, recurrent;
    int    slot;                 // column block inside w (the kept index in hybrid layers)
    float *w;                    // [rows, stride]
    int    rows, stride, width;  // the head owns columns slot·width .. slot·width+width-1
} unit;

// Lists the model's heads in layer order (as each layer's mixer lists them:
// attention before recurrent within a hybrid layer); u == NULL only counts them.
static int list_units(molt_model *m, unit *u) {
    int n = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const mixer_vt *v = layer_mixer(m, l);
        int k = v->units(m, l, NULL);
        mixer_unit mu[k > 0 ? k : 1];
        v->units(m, l, mu);
        for (int j = 0; j < k; j++, n++)
            if (u)
                u[n] = (unit){l, mu[j].head, mu[j].rec, mu[j].slot, mu[j].w, mu[j].rows,
                              mu[j].stride, mu[j].width};
    }
    return n;
}

// The unit's columns into save [rows, width], then zeros in their place (zeros:
// rows·width zero floats). Buffers of the model's backend: strided copies
// (copy_cols), so a model on a GPU is ablated where it lives.
static void unit_zero(const molt_exec *ex, const unit *u, float *save, const float *zeros) {
    float *p = u->w + (size_t)u->slot * u->width;
    size_t w = (size_t)u->width, ld = (size_t)u->stride, rows = (size_t)u->rows;
    k_copy_cols(ex, save, w, p, ld, rows, w);
    k_copy_cols(ex, p, ld, zeros, w, rows, w);
}

static void unit_restore(const molt_exec *ex, const unit *u, const float *save) {
    size_t w = (size_t)u->width;
    k_copy_cols(ex, u->w + (size_t)u->slot * w, (size_t)u->stride, save, w, (size_t)u->rows, w);
}

// Builds one prompt set per seed (with landmark positions when asked).
static molt_status build_sets(molt_ctx *ctx, const molt_model *m, const char *kv_task,
                              int32_t pairs, int32_t examples, const uint64_t *seeds,
                              int32_t n_seeds, bool positions, kv_set **out) {
    *out = molt__calloc((size_t)n_seeds, sizeof(kv_set));
    if (!*out)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    for (int s = 0; s < n_seeds; s++) {
        molt_status st = kv_set_build(ctx, m, kv_task, pairs, 1, examples, seeds[s], positions,
                                      &(*out)[s]);
        if (st != MOLT_OK)
            return st;
    }
    return MOLT_OK;
}

static void free_sets(kv_set *sets, int n) {
    for (int s = 0; sets && s < n; s++)
        kv_set_free(&sets[s]);
    molt__free(sets);
}

// correct[s] = answers of set s that are right (one per example: kv sets).
static molt_status score_sets(molt_ctx *ctx, const molt_model *m, const kv_set *sets, int n,
                              kv_progress *p, int32_t *correct) {
    for (int s = 0; s < n; s++) {
        molt_status st = kv_set_score(ctx, m, &sets[s], p, &correct[s]);
        if (st != MOLT_OK)
            return st;
    }
    return MOLT_OK;
}

// Accuracy over all the sets' examples together (= the mean over seeds: the
// sets have equally many examples), from whole counts so that equal counts
// give exactly equal accuracies.
static double pooled(const int32_t *correct, const kv_set *sets, int n) {
    int64_t c = 0, t = 0;
    for (int s = 0; s < n; s++) {
        c += correct[s];
        t += sets[s].n_ex;
    }
    return (double)c / (double)t;
}

static molt_status check_args(molt_ctx *ctx, const molt_model *m, const char *kv_task,
                              const uint64_t *seeds, int32_t n_seeds) {
    if (!m || !kv_task)
        return molt__err(ctx, MOLT_ERR_ARG, "head analysis: NULL model or task");
    if (n_seeds < 1 || !seeds)
        return molt__err(ctx, MOLT_ERR_ARG, "head analysis: needs at least one probe seed");
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// sharpness

typedef struct sharp_acc {
    double  entropy, top, key, value, newline;
    int64_t n, n_pos; // rows seen; rows with known landmarks
} sharp_acc;

// Adds one mixing row (weights over tokens 0..n-1; clip: recurrent rows).
static void sharp_add(sharp_acc *a, const float *row, int n, bool clip, const kv_example *e) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += clip ? fmax((double)row[i], 0.0) : (double)row[i];
    if (!(sum > 0) || !isfinite(sum))
        return;
    double ent = 0, top = 0, mk = 0, mv = 0, mn = 0;
    for (int i = 0; i < n; i++) {
        double p = (clip ? fmax((double)row[i], 0.0) : (double)row[i]) / sum;
        if (p > 0)
            ent -= p * log(p);
        top = fmax(top, p);
        mk += i >= e->key_lo && i < e->key_hi ? p : 0;
        mv += i >= e->value_lo && i < e->value_hi ? p : 0;
        mn += e->newline && e->newline[i] ? p : 0;
    }
    a->entropy += ent;
    a->top += top;
    a->n++;
    if (e->newline) {
        a->key += mk;
        a->value += mv;
        a->newline += mn;
        a->n_pos++;
    }
}

// Mixing matrices of layer l for the first n tokens of tm's forward, from
// each part of its mixer: attention probabilities [H,n,n] into A (when attn),
// the recurrent matrix into M (when ssm).
static void layer_mats(const molt_exec *ex, const molt_model *m, const train_model *tm, int l, int n, bool attn,
                       bool ssm, float *A, float *M, float *work) {
    const mixer_vt *v = layer_mixer(m, l);
    for (int i = 0; i < v->n_parts; i++) {
        const mixer_vt *p = mixer_part(&m->cfg, l, i);
        if (p->recurrent ? ssm : attn)
            p->materialize(ex, m, l, p->recurrent ? M : A, tm->L[l].u, n, work);
    }
}

// Scratch for layer_mats over T tokens: floats of one attention / SSM matrix
// set and of the work buffer.
static void mats_sizes(const molt_model *m, int T, size_t *mat_a, size_t *mat_s, size_t *work) {
    *mat_a = *mat_s = *work = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const mixer_vt *v = layer_mixer(m, l);
        for (int i = 0; i < v->n_parts; i++) {
            const mixer_vt *p = mixer_part(&m->cfg, l, i);
            size_t *mat = p->recurrent ? mat_s : mat_a;
            *mat = MOLT_MAX(*mat, p->mat_heads(m, l) * (size_t)T * (size_t)T);
            *work = MOLT_MAX(*work, p->mat_work_floats(m, l, T));
        }
    }
}

// One forward per example; for each example calls back per layer. The
// padded ids buffer and the train model are sized for the longest prompt.
typedef struct mats_run {
    train_model *tm;
    const molt_backend *be; // where A, M and work live (the model's)
    float       *A, *M, *work;
    float       *row;       // host: one mixing row [T]
    int32_t     *ids;
    int          T;
} mats_run;

static void mats_free(mats_run *r) {
    tm_free(r->tm);
    if (r->be) {
        be_free(r->be, r->A);
        be_free(r->be, r->M);
        be_free(r->be, r->work);
    }
    molt__free(r->row);
    molt__free(r->ids);
    memset(r, 0, sizeof *r);
}

static molt_status mats_new(molt_ctx *ctx, molt_model *m, int T, mats_run *r) {
    memset(r, 0, sizeof *r);
    size_t na, ns, nw;
    mats_sizes(m, T, &na, &ns, &nw);
    r->T = T;
    molt_status st = tm_new_capture(ctx, m, 1, T, &r->tm);
    if (st != MOLT_OK)
        return st;
    r->be = m->be;
    r->A = be_allocf(m->be, MOLT_MAX(na, 1));
    r->M = be_allocf(m->be, MOLT_MAX(ns, 1));
    r->work = be_allocf(m->be, MOLT_MAX(nw, 1));
    r->row = molt__malloc(sizeof(float) * (size_t)MOLT_MAX(T, 1));
    r->ids = molt__malloc(sizeof(int32_t) * (size_t)T);
    if (!r->A || !r->M || !r->work || !r->row || !r->ids) {
        mats_free(r);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for the mixing matrices (T = %d)", T);
    }
    return MOLT_OK;
}

static void mats_forward(const molt_exec *ex, mats_run *r, const kv_example *e) {
    memcpy(r->ids, e->ids, sizeof(int32_t) * (size_t)e->n);
    for (int i = e->n; i < r->T; i++)
        r->ids[i] = e->ids[0]; // padding after the prompt: invisible to positions < n
    tm_forward(ex, r->tm, r->ids);
}

static molt_status sharpness(const molt_exec *ex, molt_ctx *ctx, molt_model *m, const kv_set *sets, int n_sets,
                             const unit *units, int n_units, kv_progress *p, sharp_acc *acc) {
    int T = 0;
    for (int s = 0; s < n_sets; s++)
        T = MOLT_MAX(T, sets[s].max_len);
    mats_run r;
    molt_status st = mats_new(ctx, m, T, &r);
    if (st != MOLT_OK)
        return st;
    for (int s = 0; s < n_sets; s++)
        for (int e = 0; e < sets[s].n_ex; e++) {
            const kv_example *x = &sets[s].ex[e];
            int n = x->n;
            mats_forward(ex, &r, x);
            for (int i = 0; i < n_units;) {
                int l = units[i].layer, j = i;
                bool attn = false, ssm = false;
                for (; j < n_units && units[j].layer == l; j++) {
                    attn |= !units[j].recurrent;
                    ssm |= units[j].recurrent != 0;
                }
                layer_mats(ex, m, r.tm, l, n, attn, ssm, r.A, r.M, r.work);
                for (; i < j; i++) {
                    const float *mat = units[i].recurrent ? r.M : r.A;
                    const float *row = mat + ((size_t)units[i].slot * n + (size_t)(n - 1)) * n;
                    be_download(ex, r.row, row, sizeof(float) * (size_t)n);
                    sharp_add(&acc[i], r.row, n, units[i].recurrent != 0, x);
                }
            }
            if (p->fn)
                p->fn(++p->done, p->total, p->user);
        }
    mats_free(&r);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// ranking

static int cmp_score(const void *a, const void *b) {
    const molt_head_score *x = a, *y = b;
    if (x->accuracy_drop != y->accuracy_drop)
        return x->accuracy_drop > y->accuracy_drop ? -1 : 1;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    if (x->recurrent != y->recurrent)
        return x->recurrent < y->recurrent ? -1 : 1;
    return (x->head > y->head) - (x->head < y->head);
}

static molt_status no_heads(molt_ctx *ctx, const molt_model *m) {
    if (m->cfg.arch == ARCH_MAMBA2)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "this mamba2 model has no attention heads, and its Mamba-2 heads share "
                         "a gated RMSNorm before out_proj, so no head can be ablated on its own "
                         "(head analysis takes llama, llamba and molt_hybrid models)");
    return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "the model has no heads to analyse");
}

molt_status molt_heads_rank(molt_ctx *ctx, molt_model *m, const char *kv_task, int32_t pairs,
                            int32_t examples, const uint64_t *seeds, int32_t n_seeds,
                            molt_progress_fn progress, void *user, molt_head_score **scores,
                            int32_t *n) {
    *scores = NULL;
    *n = 0;
    molt_exec        exv = molt__exec(ctx);
    const molt_exec *ex = &exv;
    molt_status st = check_args(ctx, m, kv_task, seeds, n_seeds);
    if (st != MOLT_OK)
        return st;
    int nu = list_units(m, NULL);
    if (nu == 0)
        return no_heads(ctx, m);
    unit *units = molt__malloc(sizeof(unit) * (size_t)nu);
    int32_t *acc = molt__malloc(sizeof(int32_t) * (size_t)(nu + 1) * (size_t)n_seeds);
    sharp_acc *sh = molt__calloc((size_t)nu, sizeof(sharp_acc));
    molt_head_score *out = molt__calloc((size_t)nu, sizeof(molt_head_score));
    kv_set *sets = NULL;
    float *save = NULL;
    if (!units || !acc || !sh || !out) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    list_units(m, units);
    size_t save_n = 0;
    for (int i = 0; i < nu; i++)
        save_n = MOLT_MAX(save_n, (size_t)units[i].rows * units[i].width);
    if (!(save = be_allocf(m->be, 2 * MOLT_MAX(save_n, 1)))) { // saved columns | zeros
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    be_zero(ex, save + save_n, sizeof(float) * save_n);
    if ((st = build_sets(ctx, m, kv_task, pairs, examples, seeds, n_seeds, true, &sets)) !=
        MOLT_OK)
        goto done;
    kv_progress p = {progress, user, 0, (int64_t)n_seeds * examples * (nu + 2)};
    int32_t *base = acc + (size_t)nu * n_seeds; // acc[i·n_seeds + s]: head i zeroed, seed s
    if ((st = score_sets(ctx, m, sets, n_seeds, &p, base)) != MOLT_OK)
        goto done;
    for (int i = 0; i < nu; i++) {
        unit_zero(ex, &units[i], save, save + save_n);
        st = score_sets(ctx, m, sets, n_seeds, &p, acc + (size_t)i * n_seeds);
        unit_restore(ex, &units[i], save);
        if (st != MOLT_OK)
            goto done;
    }
    if ((st = sharpness(ex, ctx, m, sets, n_seeds, units, nu, &p, sh)) != MOLT_OK)
        goto done;
    for (int i = 0; i < nu; i++) {
        molt_head_score *o = &out[i];
        o->layer = units[i].layer;
        o->head = units[i].head;
        o->recurrent = units[i].recurrent;
        const int32_t *a = acc + (size_t)i * n_seeds;
        o->accuracy = pooled(a, sets, n_seeds);
        o->accuracy_drop = pooled(base, sets, n_seeds) - o->accuracy;
        o->drop_min = (double)INFINITY;
        o->drop_max = -(double)INFINITY;
        for (int s = 0; s < n_seeds; s++) {
            double d = (double)(base[s] - a[s]) / (double)sets[s].n_ex;
            o->drop_min = fmin(o->drop_min, d);
            o->drop_max = fmax(o->drop_max, d);
        }
        const sharp_acc *h = &sh[i];
        o->entropy = h->n ? h->entropy / (double)h->n : (double)NAN;
        o->top_weight = h->n ? h->top / (double)h->n : (double)NAN;
        o->mass_key = h->n_pos ? h->key / (double)h->n_pos : (double)NAN;
        o->mass_value = h->n_pos ? h->value / (double)h->n_pos : (double)NAN;
        o->mass_newline = h->n_pos ? h->newline / (double)h->n_pos : (double)NAN;
    }
    qsort(out, (size_t)nu, sizeof *out, cmp_score);
    *scores = out;
    *n = nu;
    out = NULL;
done:
    free_sets(sets, n_seeds);
    molt__free(units);
    molt__free(acc);
    molt__free(sh);
    molt__free(out);
    be_free(m->be, save);
    return st;
}

// ----------------------------------------------------------------------------
// layers

typedef struct region {
    float *p;
    size_t n;
} region;

// The weights whose zeroing turns block l into the identity (see the top):
// the mixer's output weights and the MLP's down projection.
static int layer_regions(molt_model *m, int l, region *r) {
    float *p[8];
    size_t sz[8];
    int n = layer_mixer(m, l)->out_weights(m, l, p, sz);
    for (int i = 0; i < n; i++)
        r[i] = (region){p[i], sz[i]};
    if (m->cfg.has_mlp)
        r[n++] = (region){m->layers[l].w_down, (size_t)m->cfg.d_model * (size_t)m->cfg.d_ff};
    return n;
}

// Mean accuracy over the sets with the layers marked in skip removed.
static molt_status score_skipping(molt_ctx *ctx, molt_model *m, const kv_set *sets, int n_sets,
                                  const bool *skip, kv_progress *p, double *mean) {
    const model_cfg *c = &m->cfg;
    region r[8];
    size_t total = 0;
    for (int l = 0; l < c->n_layer; l++)
        if (skip[l])
            for (int k = 0, nk = layer_regions(m, l, r); k < nk; k++)
                total += r[k].n;
    molt_exec exv = molt__exec(ctx);
    float   *save = be_allocf(m->be, MOLT_MAX(total, 1)); // where the model lives
    int32_t *acc = molt__malloc(sizeof(int32_t) * (size_t)n_sets);
    if (!save || !acc) {
        be_free(m->be, save);
        molt__free(acc);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %zu saved weights", total);
    }
    float *q = save;
    for (int l = 0; l < c->n_layer; l++)
        if (skip[l])
            for (int k = 0, nk = layer_regions(m, l, r); k < nk; k++) {
                be_copy(&exv, q, r[k].p, sizeof(float) * r[k].n);
                be_zero(&exv, r[k].p, sizeof(float) * r[k].n);
                q += r[k].n;
            }
    molt_status st = score_sets(ctx, m, sets, n_sets, p, acc);
    q = save;
    for (int l = 0; l < c->n_layer; l++)
        if (skip[l])
            for (int k = 0, nk = layer_regions(m, l, r); k < nk; k++) {
                be_copy(&exv, r[k].p, q, sizeof(float) * r[k].n);
                q += r[k].n;
            }
    be_sync(&exv);
    *mean = st == MOLT_OK ? pooled(acc, sets, n_sets) : 0;
    be_free(m->be, save);
    molt__free(acc);
    return st;
}

molt_status molt_layers_ablate(molt_ctx *ctx, molt_model *m, const char *kv_task, int32_t pairs,
                               int32_t examples, const uint64_t *seeds, int32_t n_seeds,
                               molt_progress_fn progress, void *user, double *pruned,
                               double *single) {
    molt_status st = check_args(ctx, m, kv_task, seeds, n_seeds);
    if (st != MOLT_OK)
        return st;
    int L = m->cfg.n_layer;
    kv_set *sets = NULL;
    bool skip[MODEL_MAX_LAYERS] = {false};
    if ((st = build_sets(ctx, m, kv_task, pairs, examples, seeds, n_seeds, false, &sets)) !=
        MOLT_OK)
        goto done;
    kv_progress p = {progress, user, 0, (int64_t)n_seeds * examples * (2 * L + 1)};
    // cumulative pruning from the top: pruned[k] without layers L-k .. L-1
    for (int k = 0; k <= L && st == MOLT_OK; k++) {
        if (k)
            skip[L - k] = true;
        st = score_skipping(ctx, m, sets, n_seeds, skip, &p, &pruned[k]);
    }
    memset(skip, 0, sizeof skip);
    for (int l = 0; l < L && st == MOLT_OK; l++) {
        skip[l] = true;
        st = score_skipping(ctx, m, sets, n_seeds, skip, &p, &single[l]);
        skip[l] = false;
    }
done:
    free_sets(sets, n_seeds);
    return st;
}

// ----------------------------------------------------------------------------
// one head's rows on one prompt

void molt_head_rows_free(molt_head_rows *r) {
    if (!r)
        return;
    molt__free(r->ids);
    molt__free(r->weights);
    molt__free(r->answer_ids);
    memset(r, 0, sizeof *r);
}

molt_status molt_heads_rows(molt_ctx *ctx, molt_model *m, const char *kv_task, int32_t pairs,
                            uint64_t seed, int32_t layer, int32_t head, int32_t recurrent,
                            int32_t n_rows, molt_head_rows *out) {
    memset(out, 0, sizeof *out);
    molt_exec        exv = molt__exec(ctx);
    const molt_exec *ex = &exv;
    molt_status st = check_args(ctx, m, kv_task, &seed, 1);
    if (st != MOLT_OK)
        return st;
    int nu = list_units(m, NULL), found = -1;
    unit *units = molt__malloc(sizeof(unit) * (size_t)MOLT_MAX(nu, 1));
    if (!units)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    list_units(m, units);
    for (int i = 0; i < nu && found < 0; i++)
        if (units[i].layer == layer && units[i].head == head &&
            (units[i].recurrent != 0) == (recurrent != 0))
            found = i;
    kv_set set = {0};
    mats_run r = {0};
    if (found < 0) {
        st = molt__err(ctx, MOLT_ERR_ARG, "the model has no %s head %d in layer %d",
                       recurrent ? "recurrent" : "attention", head, layer);
        goto done;
    }
    if ((st = kv_set_build(ctx, m, kv_task, pairs, 1, 1, seed, true, &set)) != MOLT_OK)
        goto done;
    const kv_example *x = &set.ex[0];
    int n = x->n, rows = MOLT_MAX(1, MOLT_MIN(n_rows, n));
    out->ids = molt__malloc(sizeof(int32_t) * (size_t)n);
    out->weights = molt__calloc((size_t)rows * n, sizeof(float));
    if (!out->ids || !out->weights) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    if ((st = mats_new(ctx, m, n, &r)) != MOLT_OK)
        goto done;
    mats_forward(ex, &r, x);
    const unit *u = &units[found];
    layer_mats(ex, m, r.tm, u->layer, n, !u->recurrent, u->recurrent != 0, r.A, r.M, r.work);
    const float *mat = u->recurrent ? r.M : r.A;
    for (int k = 0; k < rows; k++) {
        int t = n - rows + k;
        be_download(ex, r.row, mat + ((size_t)u->slot * n + (size_t)t) * n,
                    sizeof(float) * (size_t)n);
        const float *row = r.row;
        float *o = out->weights + (size_t)k * n;
        double sum = 0;
        for (int i = 0; i <= t; i++)
            sum += u->recurrent ? fmax((double)row[i], 0.0) : (double)row[i];
        for (int i = 0; i <= t && sum > 0; i++)
            o[i] = (float)((u->recurrent ? fmax((double)row[i], 0.0) : (double)row[i]) / sum);
    }
    memcpy(out->ids, x->ids, sizeof(int32_t) * (size_t)n);
    out->n_tokens = n;
    out->n_rows = rows;
    out->key_lo = x->key_lo;
    out->key_hi = x->key_hi;
    out->value_lo = x->value_lo;
    out->value_hi = x->value_hi;
    int32_t na = 0;
    const int32_t *ans = kv_answer(&x->q[x->n_q - 1], &na);
    if (!(out->answer_ids = molt__malloc(sizeof(int32_t) * (size_t)na))) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    memcpy(out->answer_ids, ans, sizeof(int32_t) * (size_t)na);
    out->n_answer = na;
    out->answer_token = ans[0];
done:
    if (st != MOLT_OK)
        molt_head_rows_free(out);
    mats_free(&r);
    kv_set_free(&set);
    molt__free(units);
    return st;
}
