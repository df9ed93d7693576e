/*
 * eval.c — molt_eval_tokens: mean next-token cross-entropy over fixed windows.
 * Logits are produced in sub-blocks of EVAL_BLOCK positions so memory stays
 * O(EVAL_BLOCK · vocab) whatever the window; the loss per position is
 * logsumexp(logits) − logits[target], accumulated in double.
 */
#include "models/model.h"

#include <math.h>

#define EVAL_BLOCK 64

static double xent(const float *lg, int V, int target) {
    float mx = lg[0];
    for (int i = 1; i < V; i++)
        mx = lg[i] > mx ? lg[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)(lg[i] - mx));
    return log(s) + (double)mx - (double)lg[target];
}

molt_status molt_eval_tokens(molt_ctx *ctx, const molt_model *m, const int32_t *ids, size_t n,
                             int32_t window, molt_progress_fn progress, void *user,
                             molt_eval_result *out) {
    int V = m->cfg.vocab;
    int W = window > 0 ? window : MOLT_MIN(m->cfg.max_seq, 1024);
    if (W > m->cfg.max_seq)
        return molt__err(ctx, MOLT_ERR_ARG, "window %d exceeds the model's context of %d", W,
                         m->cfg.max_seq);
    if (n < 2)
        return molt__err(ctx, MOLT_ERR_ARG, "need at least 2 tokens to evaluate (got %zu)", n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return molt__err(ctx, MOLT_ERR_ARG, "token id %d at %zu is outside the vocab (0..%d)",
                             ids[i], i, V - 1);
    float *lg = molt__malloc(sizeof(float) * (size_t)EVAL_BLOCK * (size_t)V);
    molt_seq *s = NULL;
    molt_status st = lg ? molt_seq_new(ctx, m, W, &s)
                        : molt__err(ctx, MOLT_ERR_OOM, "out of memory for logits");
    if (st != MOLT_OK) {
        molt__free(lg);
        return st;
    }
    double t0 = molt__now(), total = 0;
    int64_t count = 0, ntarget = (int64_t)n - 1;
    for (size_t w0 = 0; w0 + 1 < n; w0 += (size_t)W) {
        size_t len = MOLT_MIN((size_t)W, n - 1 - w0); // inputs in this window
        molt_seq_reset(s);
        for (size_t b = 0; b < len; b += EVAL_BLOCK) {
            int nb = (int)MOLT_MIN((size_t)EVAL_BLOCK, len - b);
            if ((st = molt_seq_feed(ctx, s, ids + w0 + b, nb, 1, lg)) != MOLT_OK)
                goto done;
            for (int i = 0; i < nb; i++) {
                double l = xent(lg + (size_t)i * V, V, ids[w0 + b + (size_t)i + 1]);
                if (!isfinite(l)) {
                    st = molt__err(ctx, MOLT_ERR_NUMERIC,
                                   "non-finite loss at token %zu (the model produced NaN/inf "
                                   "logits)",
                                   w0 + b + (size_t)i + 1);
                    goto done;
                }
                total += l;
            }
            count += nb;
            if (progress)
                progress(count, ntarget, user);
        }
    }
    out->tokens = count;
    out->loss = total / (double)count;
    out->ppl = exp(out->loss);
    out->seconds = molt__now() - t0;
done:
    molt_seq_free(s);
    molt__free(lg);
    return st;
}
