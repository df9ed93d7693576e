/*
 * sample.c — the CPU's decode sampling op (kernels.h: k_sample_rows): per row,
 * the host sampler's (infer/sample.c) float operations in its order with
 * top-k and top-p off, so the CPU op and molt_sampler draw the same token for
 * the same logits and coin. The exponentials are recomputed in the second
 * pass instead of stored (expf is deterministic: the same values).
 *
 * Letters: n rows, V vocabulary.
 */
#include "kernels/cpu/cpu.h"

#include <math.h>

static int32_t row_argmax(const float *x, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static int32_t sample_row(const float *l, float coin, float temp, int V) {
    for (int i = 0; i < V; i++)
        if (!isfinite(l[i]))
            return -1;
    int32_t greedy = row_argmax(l, V);
    if (temp <= 0.0f || !isfinite(l[greedy] / temp)) // the limit of a tiny temperature: greedy
        return greedy;
    float m = l[0] / temp, sum = 0.0f, cdf = 0.0f;
    for (int i = 1; i < V; i++)
        if (l[i] / temp > m)
            m = l[i] / temp;
    for (int i = 0; i < V; i++)
        sum += expf(l[i] / temp - m);
    for (int i = 0; i < V; i++) {
        cdf += expf(l[i] / temp - m) / sum;
        if (coin < cdf)
            return i;
    }
    return V - 1;
}

void cpu_sample_rows(const molt_exec *ex, int32_t *idx, const float *logits, const float *coin,
                     float temperature, int n, int V) {
    (void)ex;
    if (V <= 0)
        return;
    for (int r = 0; r < n; r++)
        idx[r] = sample_row(logits + (size_t)r * V, temperature > 0.0f ? coin[r] : 0.0f,
                            temperature, V);
}
