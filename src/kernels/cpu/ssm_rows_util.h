/*
 * ssm_rows_util.h — helpers shared by the SSM row ops (ssm_rows.c,
 * ssm_rows_backward.c). Internal to src/kernels/cpu.
 */
#ifndef MOLT_SSM_ROWS_UTIL_H
#define MOLT_SSM_ROWS_UTIL_H

#include "core/exec.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>

// threads for a row-wise job of `cost` floats of work over n rows: 1 (inline)
// when small, else exactly ex->nth (extra tasks find empty ranges)
static inline int rows_nth(const molt_exec *ex, int n, size_t cost) {
    return n < 2 || cost < 32768 ? 1 : ex->nth;
}

// Σ a_i² in double with 8 partial sums in a fixed order (products of floats
// are exact in double): the same sum as k_rmsnorm's (cpu/dense_backward.c dot3)
static inline double rows_sumsq(const float *a, int n) {
    double acc[8] = {0};
    int    i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)a[i + k] * (double)a[i + k];
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += (double)a[i] * (double)a[i] * 1.0;
    return s;
}

static inline float rows_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
// d/dv silu(v) = σ(v)·(1 + v·(1 − σ(v)))
static inline float rows_dsilu(float v) {
    float s = rows_sigmoid(v);
    return s * (1.0f + v * (1.0f - s));
}
// d/dv k_softplus(v) (threshold 20: identity above)
static inline float rows_dsoftplus(float v) { return v > 20.0f ? 1.0f : rows_sigmoid(v); }

#endif
