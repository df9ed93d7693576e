/*
 * generate.c — molt_generate: tokenize, prefill the prompt in one batched
 * pass, then sample and decode token by token, streaming text pieces to the
 * caller. Like llama2.c's run.c, the prompt's own pieces are streamed first,
 * and generation stops at EOS or at a BOS (a new document) when stop_at_eos.
 */
#include "infer/sample.h"
#include "models/forward.h"
#include "models/model.h"
#include "tok/tokenizer.h"

#include <string.h>

molt_gen_params molt_gen_defaults(void) {
    molt_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 256;
    p.temperature = 1.0f;
    p.top_p = 0.9f;
    p.top_k = 0;
    p.seed = 42;
    p.stop_at_eos = 1;
    return p;
}

static void emit(const molt_tokenizer *tok, int32_t prev, int32_t id, molt_text_fn cb, void *user) {
    char piece[512];
    size_t n = tok_piece(tok, prev, id, piece, sizeof piece);
    if (n && cb)
        cb(piece, n, user);
}

// Tokenizes the prompt (BOS-first; BOS alone without one) and fits n_new to
// the context. *ids is malloc'd (molt__free).
static molt_status prepare(molt_ctx *ctx, const molt_model *m, const char *prompt,
                           const molt_gen_params *gp, molt_gen_params *out, int32_t **ids_out,
                           size_t *n_out, int *n_new_out) {
    *ids_out = NULL;
    const molt_tokenizer *tok = m->tok;
    if (!tok)
        return molt__err(ctx, MOLT_ERR_MISSING,
                         "the model has no tokenizer (HINT: pass --tokenizer FILE)");
    if (prompt && !*prompt)
        return molt__err(ctx, MOLT_ERR_ARG, "the prompt is empty (omit -p to start from BOS)");
    molt_gen_params p = gp ? *gp : molt_gen_defaults();
    if (p.max_new_tokens < 0 || !(p.temperature >= 0.0f) || !(p.top_p >= 0.0f) || p.top_k < 0)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "invalid sampling parameters (n %d, temperature %g, top_p %g, top_k %d)",
                         p.max_new_tokens, (double)p.temperature, (double)p.top_p, p.top_k);
    int32_t bos = molt_tokenizer_bos(tok);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    molt_status st;
    *out = p;
    if (prompt) {
        st = molt_tokenize(ctx, tok, prompt, strlen(prompt), bos >= 0, &ids, &n_ids);
        if (st != MOLT_OK)
            return st;
    } else {
        if (bos < 0)
            return molt__err(ctx, MOLT_ERR_ARG,
                             "the tokenizer has no BOS token: give a prompt with -p");
        ids = molt__malloc(sizeof(int32_t));
        if (!ids)
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        ids[0] = bos;
        n_ids = 1;
    }
    int cap = m->cfg.max_seq;
    if (n_ids == 0 || (int64_t)n_ids >= cap) {
        molt__free(ids);
        return molt__err(ctx, MOLT_ERR_ARG,
                         "the prompt is %zu tokens; the model's context holds %d (the prompt must "
                         "leave room for at least one new token)",
                         n_ids, cap);
    }
    int n_new = p.max_new_tokens;
    if ((int64_t)n_ids + n_new > cap) {
        molt__log(MOLT_LOG_WARN, "generating %d tokens instead of %d: the context holds %d",
                  cap - (int)n_ids, n_new, cap);
        n_new = cap - (int)n_ids;
    }
    *ids_out = ids;
    *n_out = n_ids;
    *n_new_out = n_new;
    return MOLT_OK;
}

static void emit_sample(const molt_tokenizer *tok, int32_t sample, int32_t prev, int32_t id,
                        molt_sample_text_fn cb, void *user) {
    char piece[512];
    size_t n = tok_piece(tok, prev, id, piece, sizeof piece);
    if (n && cb)
        cb(sample, piece, n, user);
}

molt_status molt_generate(molt_ctx *ctx, const molt_model *m, const char *prompt,
                          const molt_gen_params *gp, molt_text_fn cb, void *user,
                          molt_gen_stats *stats) {
    const molt_tokenizer *tok = m->tok;
    molt_gen_params p;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int n_new = 0;
    molt_status st = prepare(ctx, m, prompt, gp, &p, &ids, &n_ids, &n_new);
    if (st != MOLT_OK)
        return st;
    int cap = m->cfg.max_seq;
    int32_t bos = molt_tokenizer_bos(tok), eos = molt_tokenizer_eos(tok);
    molt_seq *seq = NULL;
    int V = m->cfg.vocab;
    float *logits = molt__malloc(sizeof(float) * (size_t)V);
    struct prob_index *pi = molt__malloc(sizeof(*pi) * (size_t)V);
    if (!logits || !pi) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    if ((st = molt_seq_new(ctx, m, (int32_t)MOLT_MIN((int64_t)cap, (int64_t)n_ids + n_new + 1),
                           &seq)) != MOLT_OK)
        goto done;
    // stream the prompt (each piece decoded after its predecessor, as run.c does)
    if (ids[0] != bos)
        emit(tok, -1, ids[0], cb, user);
    for (size_t i = 1; i < n_ids; i++)
        emit(tok, ids[i - 1], ids[i], cb, user);
    double t0 = molt__now();
    if ((st = molt_seq_feed(ctx, seq, ids, (int32_t)n_ids, 0, logits)) != MOLT_OK)
        goto done;
    double t1 = molt__now();
    sampler smp;
    sampler_init(&smp, V, p.temperature, p.top_p, p.top_k, p.seed, pi);
    int32_t prev = ids[n_ids - 1];
    int generated = 0;
    for (int i = 0; i < n_new; i++) {
        int32_t next = sampler_sample(&smp, logits);
        if (next < 0) {
            st = molt__err(ctx, MOLT_ERR_NUMERIC,
                           "non-finite logits (NaN or inf) predicting position %zu",
                           n_ids + (size_t)i);
            goto done;
        }
        if (p.stop_at_eos && (next == eos || next == bos))
            break;
        emit(tok, prev, next, cb, user);
        generated++;
        prev = next;
        if (i + 1 < n_new && (st = molt_seq_feed(ctx, seq, &next, 1, 0, logits)) != MOLT_OK)
            goto done;
    }
    double t2 = molt__now();
    if (stats) {
        stats->n_prompt = (int32_t)n_ids;
        stats->n_generated = generated;
        stats->prefill_s = t1 - t0;
        stats->decode_s = t2 - t1;
    }
done:
    molt_seq_free(seq);
    molt__free(logits);
    molt__free(pi);
    molt__free(ids);
    return st;
}

// ----------------------------------------------------------------------------
// n samples of one prompt as one batch: the prompt is prefilled once into slot
// 0 and forked into the others; each step feeds every unfinished sample its
// next token in one molt_slots_feed call. Sample i samples with seed + i, so
// sample 0 is molt_generate's sequence for the same seed (bit for bit when
// n = 1; for n > 1 up to the batched GEMMs' rounding). A model on a device
// with top-k and top-p off draws there (molt_slots_feed_sample: the same
// coins, only the ids come back; equal to the host's draw up to rounding at a
// CDF boundary).

molt_status molt_generate_many(molt_ctx *ctx, const molt_model *m, const char *prompt, int32_t n,
                               const molt_gen_params *gp, molt_sample_text_fn cb, void *user,
                               molt_gen_stats *stats) {
    if (n < 1 || n > 65536)
        return molt__err(ctx, MOLT_ERR_ARG, "the number of samples must be in 1..65536, not %d",
                         n);
    const molt_tokenizer *tok = m->tok;
    molt_gen_params p;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int n_new = 0;
    molt_status st = prepare(ctx, m, prompt, gp, &p, &ids, &n_ids, &n_new);
    if (st != MOLT_OK)
        return st;
    int cap = m->cfg.max_seq, V = m->cfg.vocab;
    int32_t bos = molt_tokenizer_bos(tok), eos = molt_tokenizer_eos(tok);
    molt_slots *sl = NULL;
    float *logits = molt__malloc(sizeof(float) * (size_t)V * (size_t)n);
    struct prob_index *pi = molt__malloc(sizeof(*pi) * (size_t)V * (size_t)n);
    sampler *smp = molt__malloc(sizeof(sampler) * (size_t)n);
    int32_t *act = molt__malloc(sizeof(int32_t) * (size_t)n * 4), *next = act + n;
    int32_t *prev = act + 2 * n;
    int32_t *drawn = act + 3 * n; // the device's draws for the rows of act (dev)
    float *coin = molt__malloc(sizeof(float) * (size_t)n);
    // a model on a device draws there (only the ids come back) when no top-k / top-p is asked
    // (a logits stage: the model's memory is not the host's)
    int dev = seq_logits_stage_floats(m, 1) > 0 && p.top_k <= 0 &&
              (p.top_p <= 0.0f || p.top_p >= 1.0f);
    if (!logits || !pi || !smp || !act || !coin) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory for %d samples", n);
        goto done;
    }
    if ((st = molt_slots_new(ctx, m, n,
                             (int32_t)MOLT_MIN((int64_t)cap, (int64_t)n_ids + n_new + 1), &sl)) !=
        MOLT_OK)
        goto done;
    for (int32_t i = 0; i < n; i++) { // every sample streams the prompt first
        if (ids[0] != bos)
            emit_sample(tok, i, -1, ids[0], cb, user);
        for (size_t t = 1; t < n_ids; t++)
            emit_sample(tok, i, ids[t - 1], ids[t], cb, user);
    }
    double t0 = molt__now();
    if ((st = molt_slot_prefill(ctx, sl, 0, ids, (int32_t)n_ids, 0, logits)) != MOLT_OK)
        goto done;
    for (int32_t i = 1; i < n; i++) {
        if ((st = molt_slot_copy(ctx, sl, 0, i)) != MOLT_OK)
            goto done;
        memcpy(logits + (size_t)i * V, logits, sizeof(float) * (size_t)V);
    }
    double t1 = molt__now();
    int na = 0, generated = 0;
    for (int32_t i = 0; i < n; i++) {
        sampler_init(&smp[i], V, p.temperature, p.top_p, p.top_k, p.seed + (uint64_t)i,
                     pi + (size_t)i * V);
        prev[i] = ids[n_ids - 1];
        act[na++] = i;
    }
    // logits row r belongs to sample act[r]; on a device, after the first step (the prompt's
    // logits), the rows' tokens were drawn there (drawn[r])
    for (int step = 0; step < n_new && na > 0; step++) {
        int keep = 0;
        for (int r = 0; r < na; r++) {
            int32_t i = act[r];
            int32_t tk = dev && step > 0 ? drawn[r]
                                         : sampler_sample(&smp[i], logits + (size_t)r * V);
            if (tk < 0) {
                st = molt__err(ctx, MOLT_ERR_NUMERIC,
                               "sample %d: non-finite logits (NaN or inf) predicting position %zu",
                               (int)i, n_ids + (size_t)step);
                goto done;
            }
            if (p.stop_at_eos && (tk == eos || tk == bos))
                continue;
            emit_sample(tok, i, prev[i], tk, cb, user);
            generated++;
            prev[i] = tk;
            act[keep] = i;
            next[keep++] = tk;
        }
        na = keep;
        if (step + 1 == n_new || na == 0)
            break;
        if (dev) {
            for (int r = 0; r < na; r++)
                coin[r] = p.temperature > 0.0f ? sampler_f32(&smp[act[r]].rng) : 0.0f;
            st = molt_slots_feed_sample(ctx, sl, na, act, next, p.temperature, coin, drawn);
        } else {
            st = molt_slots_feed(ctx, sl, na, act, next, logits);
        }
        if (st != MOLT_OK)
            goto done;
    }
    double t2 = molt__now();
    if (stats) {
        stats->n_prompt = (int32_t)n_ids;
        stats->n_generated = generated;
        stats->prefill_s = t1 - t0;
        stats->decode_s = t2 - t1;
    }
done:
    molt_slots_free(sl);
    molt__free(logits);
    molt__free(pi);
    molt__free(smp);
    molt__free(act);
    molt__free(coin);
    molt__free(ids);
    return st;
}
