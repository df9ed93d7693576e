/*
 * sampler_obj.c — the public sampler object (molt.h "serving"): molt_generate's
 * sampler (infer/sample.c, unchanged: same RNG, same draws) behind a handle,
 * plus two optional logit filters applied before it:
 *   repetition penalty (CTRL, HF):  l[t] ← l[t] > 0 ? l[t]/r : l[t]·r  for every t seen
 *   min_p:  l[i] ← -FLT_MAX where l[i] < max(l) + T·ln(min_p)   (p_i < min_p·p_max at T)
 * A masked logit is -FLT_MAX, not -inf: sample.c refuses non-finite logits, and
 * -FLT_MAX/T underflows to probability 0 exactly as -inf would.
 * Also molt_token_piece: tok_piece for callers of the public header.
 */
#include "infer/sample.h"
#include "models/model.h"
#include "tok/tokenizer.h"

#include <float.h>
#include <math.h>

struct molt_sampler {
    sampler            s;
    struct prob_index *buf;  // [vocab]
    uint8_t           *seen; // [vocab] tokens given to molt_sampler_accept
    float              min_p, rep;
};

molt_status molt_sampler_new(molt_ctx *ctx, int32_t vocab, const molt_sampler_params *p,
                             molt_sampler **out) {
    *out = NULL;
    if (vocab < 1 || !p || !(p->temperature >= 0.0f) || !(p->top_p >= 0.0f) || p->top_k < 0 ||
        !(p->min_p >= 0.0f && p->min_p <= 1.0f) || !(p->repetition_penalty > 0.0f) ||
        !isfinite(p->temperature) || !isfinite(p->repetition_penalty))
        return molt__err(ctx, MOLT_ERR_ARG,
                         "invalid sampling parameters (vocab %d, temperature %g, top_p %g, top_k "
                         "%d, min_p %g, repetition_penalty %g)",
                         vocab, p ? (double)p->temperature : 0.0, p ? (double)p->top_p : 0.0,
                         p ? p->top_k : 0, p ? (double)p->min_p : 0.0,
                         p ? (double)p->repetition_penalty : 0.0);
    molt_sampler *s = molt__calloc(1, sizeof *s);
    if (s) {
        s->buf = molt__malloc(sizeof(*s->buf) * (size_t)vocab);
        s->seen = molt__calloc((size_t)vocab, 1);
    }
    if (!s || !s->buf || !s->seen) {
        molt_sampler_free(s);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for a sampler of %d tokens", vocab);
    }
    sampler_init(&s->s, vocab, p->temperature, p->top_p, p->top_k, p->seed, s->buf);
    s->min_p = p->min_p;
    s->rep = p->repetition_penalty;
    *out = s;
    return MOLT_OK;
}

void molt_sampler_free(molt_sampler *s) {
    if (!s)
        return;
    molt__free(s->buf);
    molt__free(s->seen);
    molt__free(s);
}

void molt_sampler_accept(molt_sampler *s, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < s->s.vocab)
            s->seen[ids[i]] = 1;
}

int32_t molt_sampler_next(molt_sampler *s, float *logits) {
    int n = s->s.vocab;
    if (s->rep != 1.0f || s->min_p > 0.0f)
        for (int i = 0; i < n; i++)
            if (!isfinite(logits[i]))
                return -1;
    if (s->rep != 1.0f)
        for (int i = 0; i < n; i++)
            if (s->seen[i])
                logits[i] = logits[i] > 0.0f ? logits[i] / s->rep : logits[i] * s->rep;
    if (s->min_p > 0.0f && s->s.temperature > 0.0f) {
        float mx = logits[sample_argmax(logits, n)];
        float cut = mx + s->s.temperature * logf(s->min_p);
        for (int i = 0; i < n; i++)
            if (logits[i] < cut)
                logits[i] = -FLT_MAX;
    }
    return sampler_sample(&s->s, logits);
}

size_t molt_token_piece(const molt_tokenizer *tok, int32_t prev, int32_t id, char *buf,
                        size_t cap) {
    return tok_piece(tok, prev, id, buf, cap);
}
