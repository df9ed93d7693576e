/*
 * chat.c — molt_chat: a conversation held in one sequence. Each turn feeds
 * the user's text after what the sequence already holds and samples a reply
 * that stays in it, so the next turn only computes its own new tokens (a
 * recurrent model's state is all it keeps; an attention model keeps its KV
 * cache).
 *
 *   turn k feeds   [pending] + tokenize(text_k)     (BOS first on turn 1)
 *   then samples   r_1 .. r_m   (m ≤ max_new_tokens; stops before EOS / BOS)
 *
 * The sampled tokens are fed as they are drawn, except the last one of a turn
 * that ends on max_new_tokens: it is the "pending" token, fed at the head of
 * the next turn (one prefill instead of an extra decode step). An EOS that
 * ends a reply is not fed: the conversation is the text the user sees. So the
 * sequence after turn k holds tokens(text_1) r(1) tokens(text_2) r(2) ...,
 * what molt_generate computes for those tokens; the texts are tokenized turn
 * by turn (a llama2.c tokenizer puts its dummy-prefix space before each).
 * Sampling draws from one RNG across the turns (seeded once).
 */
#include "infer/sample.h"
#include "models/forward.h"
#include "models/model.h"
#include "tok/tokenizer.h"

#include <string.h>

struct molt_chat {
    const molt_model  *m;
    molt_seq          *seq;
    molt_gen_params    p;
    sampler            smp;
    struct prob_index *pi;     // [V] sampler scratch
    float             *logits; // [V]
    int32_t            pending; // a sampled token not fed yet, or -1
    int32_t            prev;    // the last token of the conversation (piece decoding), or -1
    int32_t            cap;
};

molt_status molt_chat_new(molt_ctx *ctx, const molt_model *m, int32_t max_len,
                          const molt_gen_params *gp, molt_chat **out) {
    *out = NULL;
    if (!m->tok)
        return molt__err(ctx, MOLT_ERR_MISSING,
                         "the model has no tokenizer (HINT: pass --tokenizer FILE)");
    molt_gen_params p = gp ? *gp : molt_gen_defaults();
    if (p.max_new_tokens < 0 || !(p.temperature >= 0.0f) || !(p.top_p >= 0.0f) || p.top_k < 0)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "invalid sampling parameters (n %d, temperature %g, top_p %g, top_k %d)",
                         p.max_new_tokens, (double)p.temperature, (double)p.top_p, p.top_k);
    molt_chat *c = molt__calloc(1, sizeof *c);
    int V = m->cfg.vocab;
    if (!c)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    c->m = m, c->p = p, c->pending = -1, c->prev = -1;
    c->logits = molt__malloc(sizeof(float) * (size_t)V);
    c->pi = molt__malloc(sizeof(*c->pi) * (size_t)V);
    molt_status st = c->logits && c->pi ? molt_seq_new(ctx, m, max_len, &c->seq)
                                        : molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    if (st != MOLT_OK) {
        molt_chat_free(c);
        return st;
    }
    c->cap = c->seq->cap;
    sampler_init(&c->smp, V, p.temperature, p.top_p, p.top_k, p.seed, c->pi);
    *out = c;
    return MOLT_OK;
}

void molt_chat_free(molt_chat *c) {
    if (!c)
        return;
    molt_seq_free(c->seq);
    molt__free(c->logits);
    molt__free(c->pi);
    molt__free(c);
}

int32_t molt_chat_pos(const molt_chat *c) {
    return c->seq->pos + (c->pending >= 0);
}

static void emit(const molt_tokenizer *tok, int32_t prev, int32_t id, molt_text_fn cb,
                 void *user) {
    char   piece[512];
    size_t n = tok_piece(tok, prev, id, piece, sizeof piece);
    if (n && cb)
        cb(piece, n, user);
}

molt_status molt_chat_turn(molt_ctx *ctx, molt_chat *c, const char *text, molt_text_fn cb,
                           void *user, molt_gen_stats *stats) {
    const molt_tokenizer *tok = c->m->tok;
    if (!text || !*text)
        return molt__err(ctx, MOLT_ERR_ARG, "an empty chat turn");
    int32_t bos = molt_tokenizer_bos(tok), eos = molt_tokenizer_eos(tok);
    int      first = c->seq->pos == 0 && c->pending < 0;
    int32_t *t = NULL, *ids = NULL;
    size_t   nt = 0;
    molt_status st = molt_tokenize(ctx, tok, text, strlen(text), first && bos >= 0, &t, &nt);
    if (st != MOLT_OK)
        return st;
    size_t n = nt + (c->pending >= 0);
    if (n == 0 || (int64_t)c->seq->pos + (int64_t)n >= c->cap) {
        molt__free(t);
        return n == 0 ? molt__err(ctx, MOLT_ERR_ARG, "the chat turn has no tokens")
                      : molt__err(ctx, MOLT_ERR_ARG,
                                  "the conversation is full: %d tokens held + %zu new leave no "
                                  "room for a reply in the context of %d",
                                  molt_chat_pos(c), nt, c->cap);
    }
    ids = molt__malloc(sizeof(int32_t) * n);
    if (!ids) {
        molt__free(t);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    size_t k = 0;
    if (c->pending >= 0)
        ids[k++] = c->pending;
    memcpy(ids + k, t, sizeof(int32_t) * nt);
    molt__free(t);
    double t0 = molt__now();
    if ((st = molt_seq_feed(ctx, c->seq, ids, (int32_t)n, 0, c->logits)) != MOLT_OK) {
        molt__free(ids);
        return st;
    }
    c->pending = -1;
    c->prev = ids[n - 1];
    molt__free(ids);
    double t1 = molt__now();
    int n_new = c->p.max_new_tokens, room = c->cap - c->seq->pos;
    if (n_new > room) {
        molt__log(MOLT_LOG_WARN, "replying with at most %d tokens instead of %d: the context "
                                 "holds %d", room, n_new, c->cap);
        n_new = room;
    }
    int generated = 0;
    for (int i = 0; i < n_new; i++) {
        int32_t next = sampler_sample(&c->smp, c->logits);
        if (next < 0)
            return molt__err(ctx, MOLT_ERR_NUMERIC,
                             "non-finite logits (NaN or inf) predicting position %d",
                             c->seq->pos);
        if (c->p.stop_at_eos && (next == eos || next == bos))
            break;
        emit(tok, c->prev, next, cb, user);
        generated++;
        c->prev = next;
        if (i + 1 == n_new) {
            c->pending = next; // fed with the next turn
            break;
        }
        if ((st = molt_seq_feed(ctx, c->seq, &next, 1, 0, c->logits)) != MOLT_OK)
            return st;
    }
    if (stats) {
        stats->n_prompt = (int32_t)n;
        stats->n_generated = generated;
        stats->prefill_s = t1 - t0;
        stats->decode_s = molt__now() - t1;
    }
    return MOLT_OK;
}
