/*
 * ssm_util.h — small helpers shared by the SSM forward (ssm.c) and backward
 * (ssm_backward.c) kernels. Internal to src/kernels/cpu.
 */
#ifndef MOLT_SSM_UTIL_H
#define MOLT_SSM_UTIL_H

#include "kernels/kernels.h"
#include "kernels/ssm.h"

#include <math.h>
#include <stddef.h>

#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

// Threads for a pool job of `total` flops over n_items independent items: 1
// (inline) when small, else exactly ex->nth even if that exceeds n_items
// (the extra tasks find empty ranges), so results do not depend on how many
// items there are per thread.
static inline int ssm_nth(const molt_exec *ex, size_t n_items, size_t total, size_t threshold) {
    if (total <= threshold || n_items < 2)
        return 1;
    return ex->nth;
}

// exp of a (log-)decay, flushed to 0 below SSM_EXP_FLUSH (no denormals)
static inline float decay(float x) { return x < SSM_EXP_FLUSH ? 0.0f : expf(x); }

// 1 when every dA ≤ 0: segment sums then only fall as they grow
static inline int all_nonpos(const float *dA, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(dA[i] <= 0.0f))
            return 0;
    return 1;
}

#endif
