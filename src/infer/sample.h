/*
 * sample.h — next-token sampling. The default path reproduces llama2.c's
 * run.c sampler bit for bit (xorshift64* RNG, temperature, softmax, top-p with
 * its (1-p)/(n-1) pre-filter and qsort, multinomial by CDF), so a seed gives
 * the same story in both. top_k (an extension) masks all but the k largest
 * logits first.
 */
#ifndef MOLT_SAMPLE_H
#define MOLT_SAMPLE_H

#include <stdint.h>

typedef struct sampler {
    int      vocab;
    float    temperature, top_p;
    int      top_k;
    uint64_t rng;
    struct prob_index { float prob; int index; } *buf; // [vocab]
} sampler;

// buf: caller-owned [vocab] scratch.
void     sampler_init(sampler *s, int vocab, float temperature, float top_p, int top_k,
                      uint64_t seed, struct prob_index *buf);
// logits [vocab] are modified in place. Returns the token, or -1 when a logit
// is NaN or ±inf (the caller reports MOLT_ERR_NUMERIC with the position). A
// temperature so small that logits/T overflow samples greedily (its limit).
// Never reads outside logits or buf.
int      sampler_sample(sampler *s, float *logits);
int      sample_argmax(const float *x, int n);
uint32_t sampler_u32(uint64_t *state);
float    sampler_f32(uint64_t *state);

#endif
