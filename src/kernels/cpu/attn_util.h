/*
 * attn_util.h — the training attention's row blocking, shared by the forward
 * (attn.c) and backward (attn_backward.c) kernels. Internal to src/kernels/cpu.
 */
#ifndef MOLT_ATTN_UTIL_H
#define MOLT_ATTN_UTIL_H

#define ATTN_RB_MAX 64 // query rows per training block
#define ATTN_SLOTS  64 // most backward threads (scratch blocks); molt's pool has 64 workers

// query rows per block for sequences of T tokens
static inline int attn_rb(int T) { return T < ATTN_RB_MAX ? T : ATTN_RB_MAX; }

#endif
