/*
 * attn_util.h — the training attention's row blocking, shared by the forward
 * (attn.c) and backward (attn_backward.c) kernels, and the batched decode's
 * thread count and P·V (attn.c, attn_f16.c). Internal to src/kernels/cpu.
 */
#ifndef MOLT_ATTN_UTIL_H
#define MOLT_ATTN_UTIL_H

#include "core/exec.h"

#include <stddef.h>
#include <stdint.h>

#define ATTN_RB_MAX 64 // query rows per training block
#define ATTN_SLOTS  64 // most backward threads (scratch blocks); molt's pool has 64 workers

// query rows per block for sequences of T tokens
static inline int attn_rb(int T) { return T < ATTN_RB_MAX ? T : ATTN_RB_MAX; }

// threads for batched decode over n rows (row r at position pos[r]): one until
// the rows' total context pays for more (as single decode), then at most one
// per (row, kv head) item
static inline int attn_rows_threads(const molt_exec *ex, const int32_t *pos, int n, int H,
                                    int KV, int hd) {
    size_t keys = 0;
    for (int r = 0; r < n; r++)
        keys += (size_t)pos[r] + 1;
    int items = n * KV, use = 1;
    if (keys * (size_t)H * (size_t)hd >= (1u << 16))
        use = ex->nth < items ? ex->nth : items;
    return use > 1 ? use : 1;
}

// decode's P·V (attn.c): og[g][i] += Σ_s p[g·ldp + s]·V[s·hd + i] for g < grp over nk rows,
// s in order for every element
void cpu_attn_pv_rows(float *og, const float *p, size_t ldp, int grp, const float *V, int nk,
                      int hd);

#endif
