/*
 * chains.c — molt_chains: K chains of thought of one prompt as one batch.
 * The prompt is prefilled once into a spare slot (slot K) and its last logits
 * kept; each draw copies that slot into slots 0..K−1 and decodes them
 * together (molt_slots_feed over the unfinished ones), exactly as
 * molt_generate_many does, with molt_generate's sampler (infer/sample.h)
 * seeded p->seed + j for chain j. Texts are the pieces molt_generate would
 * stream, cut at the first stop string.
 *
 * Letters: K chains, V vocabulary.
 */
#include "infer/sample.h"
#include "models/model.h"
#include "tok/tokenizer.h"

#include <string.h>

struct molt_chains {
    const molt_model  *m;
    molt_slots        *sl;
    int32_t            k, n_new, n_prompt, last_id;
    float             *prompt_logits; // [V]
    float             *logits;        // [K, V]
    struct prob_index *pi;            // [K, V]
    sampler           *smp;           // [K]
    int32_t           *act, *next, *prev, *ntok, *done; // [K] each
    char             **text;          // [K] growing texts
    size_t            *len, *cap;     // [K]
};

void molt_chains_free(molt_chains *c) {
    if (!c)
        return;
    molt_slots_free(c->sl);
    molt__free(c->prompt_logits);
    molt__free(c->logits);
    molt__free(c->pi);
    molt__free(c->smp);
    molt__free(c->act);
    if (c->text)
        for (int32_t j = 0; j < c->k; j++)
            molt__free(c->text[j]);
    molt__free(c->text);
    molt__free(c->len);
    molt__free(c->cap);
    molt__free(c);
}

int32_t molt_chains_prompt_tokens(const molt_chains *c) { return c ? c->n_prompt : 0; }

molt_status molt_chains_new(molt_ctx *ctx, const molt_model *m, const char *prompt, int32_t k,
                            int32_t max_new, molt_chains **out) {
    *out = NULL;
    if (k < 1 || k > 65536 || max_new < 1)
        return molt__err(ctx, MOLT_ERR_ARG, "chains: k %d must be in 1..65536 and max_new %d ≥ 1",
                         k, max_new);
    const molt_tokenizer *tok = m->tok;
    if (!tok)
        return molt__err(ctx, MOLT_ERR_MISSING,
                         "the model has no tokenizer (HINT: pass --tokenizer FILE)");
    if (!prompt || !*prompt)
        return molt__err(ctx, MOLT_ERR_ARG, "chains: the prompt is empty");
    int32_t *ids = NULL;
    size_t   n_ids = 0;
    MOLT_TRY(molt_tokenize(ctx, tok, prompt, strlen(prompt), molt_tokenizer_bos(tok) >= 0, &ids,
                           &n_ids));
    int cap = m->cfg.max_seq, V = m->cfg.vocab;
    if (n_ids == 0 || (int64_t)n_ids >= cap) {
        molt_free(ids);
        return molt__err(ctx, MOLT_ERR_ARG,
                         "the prompt is %zu tokens; the model's context holds %d (the prompt must "
                         "leave room for at least one new token)",
                         n_ids, cap);
    }
    molt_chains *c = molt__calloc(1, sizeof *c);
    molt_status  st = MOLT_OK;
    if (!c) {
        molt_free(ids);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    c->m = m, c->k = k, c->n_prompt = (int32_t)n_ids, c->last_id = ids[n_ids - 1];
    c->n_new = (int32_t)MOLT_MIN((int64_t)max_new, (int64_t)cap - (int64_t)n_ids);
    size_t kv = (size_t)k * (size_t)V;
    c->prompt_logits = molt__malloc(sizeof(float) * (size_t)V);
    c->logits = molt__malloc(sizeof(float) * kv);
    c->pi = molt__malloc(sizeof(struct prob_index) * kv);
    c->smp = molt__malloc(sizeof(sampler) * (size_t)k);
    c->act = molt__malloc(sizeof(int32_t) * 5 * (size_t)k);
    c->text = molt__calloc((size_t)k, sizeof(char *));
    c->len = molt__calloc((size_t)k, sizeof(size_t));
    c->cap = molt__calloc((size_t)k, sizeof(size_t));
    if (!c->prompt_logits || !c->logits || !c->pi || !c->smp || !c->act || !c->text || !c->len ||
        !c->cap) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory for %d chains", k);
        goto fail;
    }
    c->next = c->act + k, c->prev = c->act + 2 * k, c->ntok = c->act + 3 * k;
    c->done = c->act + 4 * k;
    int32_t len = (int32_t)MOLT_MIN((int64_t)cap, (int64_t)n_ids + c->n_new + 1);
    if ((st = molt_slots_new(ctx, m, k + 1, len, &c->sl)) != MOLT_OK ||
        (st = molt_slot_prefill(ctx, c->sl, k, ids, (int32_t)n_ids, 0, c->prompt_logits)) !=
            MOLT_OK)
        goto fail;
    molt_free(ids);
    *out = c;
    return MOLT_OK;
fail:
    molt_free(ids);
    molt_chains_free(c);
    return st;
}

// appends a piece to chain j's text; returns 1 when a stop string now occurs (text cut there)
static int append(molt_chains *c, int32_t j, const char *piece, size_t n, const char *const *stop,
                  int32_t n_stop, int *oom) {
    if (c->len[j] + n + 1 > c->cap[j]) {
        size_t cap = (c->len[j] + n + 1) * 2;
        char  *t = molt__realloc(c->text[j], cap);
        if (!t) {
            *oom = 1;
            return 1;
        }
        c->text[j] = t, c->cap[j] = cap;
    }
    size_t old = c->len[j];
    memcpy(c->text[j] + old, piece, n);
    c->len[j] += n;
    c->text[j][c->len[j]] = '\0';
    size_t cut = SIZE_MAX;
    for (int32_t s = 0; s < n_stop; s++) {
        size_t sl = stop[s] ? strlen(stop[s]) : 0;
        if (!sl || sl > c->len[j])
            continue;
        // a new occurrence ends inside the new piece: search from sl − 1 bytes before it
        size_t from = old + 1 > sl ? old + 1 - sl : 0;
        for (size_t p = from; p + sl <= c->len[j]; p++)
            if (!memcmp(c->text[j] + p, stop[s], sl)) {
                cut = p < cut ? p : cut;
                break;
            }
    }
    if (cut == SIZE_MAX)
        return 0;
    c->len[j] = cut;
    c->text[j][cut] = '\0';
    return 1;
}

molt_status molt_chains_draw(molt_ctx *ctx, molt_chains *c, const molt_gen_params *p,
                             const char *const *stop, int32_t n_stop, char **texts,
                             int32_t *tokens) {
    int32_t k = c->k, V = c->m->cfg.vocab;
    for (int32_t j = 0; j < k; j++)
        texts[j] = NULL, tokens[j] = 0;
    if (!p || !(p->temperature >= 0.0f) || !(p->top_p >= 0.0f) || p->top_k < 0 || n_stop < 0)
        return molt__err(ctx, MOLT_ERR_ARG, "chains: invalid sampling parameters");
    const molt_tokenizer *tok = c->m->tok;
    int32_t bos = molt_tokenizer_bos(tok), eos = molt_tokenizer_eos(tok);
    molt_status st = MOLT_OK;
    int         oom = 0, na = 0;
    for (int32_t j = 0; j < k; j++) {
        if ((st = molt_slot_copy(ctx, c->sl, k, j)) != MOLT_OK)
            return st;
        memcpy(c->logits + (size_t)j * V, c->prompt_logits, sizeof(float) * (size_t)V);
        sampler_init(&c->smp[j], V, p->temperature, p->top_p, p->top_k, p->seed + (uint64_t)j,
                     c->pi + (size_t)j * V);
        c->prev[j] = c->last_id, c->ntok[j] = 0, c->len[j] = 0;
        if (c->text[j])
            c->text[j][0] = '\0';
        c->act[na++] = j;
    }
    // logits row r belongs to chain act[r]
    for (int step = 0; step < c->n_new && na > 0; step++) {
        int keep = 0;
        for (int r = 0; r < na; r++) {
            int32_t j = c->act[r], tk = sampler_sample(&c->smp[j], c->logits + (size_t)r * V);
            if (tk < 0)
                return molt__err(ctx, MOLT_ERR_NUMERIC,
                                 "chain %d: non-finite logits (NaN or inf) predicting position %d",
                                 (int)j, (int)(c->n_prompt + step));
            c->ntok[j]++;
            if (tk == eos || tk == bos)
                continue;
            char   piece[512];
            size_t n = tok_piece(tok, c->prev[j], tk, piece, sizeof piece);
            c->prev[j] = tk;
            if (append(c, j, piece, n, stop, n_stop, &oom))
                continue;
            c->act[keep] = j;
            c->next[keep++] = tk;
        }
        if (oom)
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory for the chains' texts");
        na = keep;
        if (step + 1 < c->n_new && na > 0 &&
            (st = molt_slots_feed(ctx, c->sl, na, c->act, c->next, c->logits)) != MOLT_OK)
            return st;
    }
    for (int32_t j = 0; j < k; j++) {
        texts[j] = molt__malloc(c->len[j] + 1);
        if (!texts[j]) {
            for (int32_t i = 0; i < j; i++)
                molt__free(texts[i]), texts[i] = NULL;
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory for the chains' texts");
        }
        if (c->len[j])
            memcpy(texts[j], c->text[j], c->len[j]);
        texts[j][c->len[j]] = '\0';
        tokens[j] = c->ntok[j];
    }
    return MOLT_OK;
}
