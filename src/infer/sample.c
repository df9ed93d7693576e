/*
 * sample.c — see sample.h. Mirrors karpathy/llama2.c run.c (MIT) semantics.
 */
#include "infer/sample.h"

#include <math.h>
#include <stdlib.h>

uint32_t sampler_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

float sampler_f32(uint64_t *state) { return (float)(sampler_u32(state) >> 8) / 16777216.0f; }

void sampler_init(sampler *s, int vocab, float temperature, float top_p, int top_k, uint64_t seed,
                  struct prob_index *buf) {
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_p = top_p;
    s->top_k = top_k;
    s->rng = seed;
    s->buf = buf;
}

int sample_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

// llama2.c softmax: divide by the sum (not multiply by its inverse)
static void softmax_div(float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m)
            m = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

static int sample_mult(const float *p, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf)
            return i;
    }
    return n - 1;
}

static int cmp_desc(const void *a, const void *b) {
    const struct prob_index *x = a, *y = b;
    if (x->prob > y->prob)
        return -1;
    if (x->prob < y->prob)
        return 1;
    return 0;
}

static int sample_topp(const float *p, int n, float topp, struct prob_index *pi, float coin) {
    // values below (1-topp)/(n-1) can never be part of the nucleus
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (p[i] >= cutoff) {
            pi[n0].index = i;
            pi[n0].prob = p[i];
            n0++;
        }
    if (n0 == 0) // only when p holds NaN: callers check finiteness first
        return sample_argmax(p, n);
    qsort(pi, (size_t)n0, sizeof *pi, cmp_desc);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += pi[i].prob;
        if (cum > topp) {
            last = i;
            break;
        }
    }
    float r = coin * cum;
    float cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += pi[i].prob;
        if (r < cdf)
            return pi[i].index;
    }
    return pi[last].index;
}

static void mask_top_k(float *logits, int n, int k, struct prob_index *pi) {
    if (k <= 0 || k >= n)
        return;
    for (int i = 0; i < n; i++) {
        pi[i].prob = logits[i];
        pi[i].index = i;
    }
    qsort(pi, (size_t)n, sizeof *pi, cmp_desc);
    float kth = pi[k - 1].prob;
    for (int i = 0; i < n; i++)
        if (logits[i] < kth)
            logits[i] = -INFINITY;
}

static int all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

int sampler_sample(sampler *s, float *logits) {
    int n = s->vocab;
    if (n < 1 || !all_finite(logits, n))
        return -1;
    if (s->temperature == 0.0f)
        return sample_argmax(logits, n);
    mask_top_k(logits, n, s->top_k, s->buf);
    int greedy = sample_argmax(logits, n);
    for (int i = 0; i < n; i++)
        logits[i] /= s->temperature;
    // a temperature so small that logits/T overflow: its limit is greedy
    // (no random draw is taken, as with temperature 0)
    if (!isfinite(logits[greedy]))
        return greedy;
    softmax_div(logits, n);
    float coin = sampler_f32(&s->rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f)
        return sample_mult(logits, n, coin);
    return sample_topp(logits, n, s->top_p, s->buf, coin);
}
