/*
 * attn.h — the attention core behind the backend table: RoPE, the KV-cache
 * append, causal GQA attention over a cache (prefill, decode, batched decode
 * rows), the materialized probabilities, and the training forward / backward
 * over B sequences. The projections (q/k/v/o GEMMs) stay with the mixers
 * (mixers/attention.c, attn_train.c), which call these ops in between.
 * Semantics: HF Llama (eager): RoPE rotate_half pairs (i, i+hd/2), scores
 * (q·k)·hd^-½ (matmul, then scale), causal mask, fp32 softmax, P·v.
 * CPU: cpu/attn.c, cpu/attn_backward.c.
 *
 * Letters
 *   T  query rows (new tokens)      S  keys visible = pos + T
 *   H  query heads                  KV key/value heads; query head h reads kv head h / grp
 *   grp = H / KV                    hd head dim (even where RoPE is applied)
 *   cap  cache capacity (positions) B  training sequences of T tokens each
 *
 * Layouts (row-major)
 *   q      [T, H·hd]     the heads of one token side by side
 *   k, v   [T, ld]       the KV·hd head columns of each row first
 *   heads  [T, H·hd]     per-head attention outputs (before o_proj)
 *   cache  [KV, cap, hd] one for keys, one for values, per sequence
 *   qkv    [B·T, ld]     training rows: q | k | v head columns at 0, H·hd, (H+KV)·hd
 *   P      [B, H, T, T]  softmax rows (row query t, column key s), 0 above the diagonal
 *
 * Threads: ex->nth. Every op here gives the same bits at any thread count
 * (each head, row or (sequence, head) pair is computed whole by one thread,
 * in a fixed order). Host arrays (allowed on every backend): per-row
 * positions and per-row cache pointers; everything else is backend memory.
 */
#ifndef MOLT_ATTN_H
#define MOLT_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "core/exec.h"

// ----------------------------------------------------------------------------
// RoPE, in place. Row r of x (at x + r·ld) holds nh heads of hd floats; its
// position is pos ? pos[r] : pos0 + r % period (period ≥ 1: training restarts
// positions every T rows; a single sequence passes period = rows).
// cos/sin: [max_pos, hd/2] tables. Each pair (a, b) = (x[i], x[i+hd/2]) is
// rotated by +angle (inverse = 0):
//     a' = a·cos − b·sin ,   b' = b·cos + a·sin
// or by −angle (inverse = 1; the transpose, i.e. RoPE's backward on a gradient):
//     a' = a·cos + b·sin ,   b' = b·cos − a·sin
void k_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd, int pos0, int period,
            const int32_t *pos, const float *cos, const float *sin, int inverse);

// ----------------------------------------------------------------------------
// KV-cache append: k, v rows [rows, ld] (head j at columns j·hd) go to
//     kc[c][j, p, :] = k[r, j·hd : (j+1)·hd]     (and v to vc likewise)
// pos NULL: one sequence, c = 0, p = pos0 + r.
// pos set:  row r is its own sequence's token, c = r, p = pos[r].
// kc, vc: host arrays of cache pointers (one, or rows of them); vc (and v)
// NULL: keys only. Every p < cap.
void k_kv_append(const molt_exec *ex, float *const *kc, float *const *vc, const float *k,
                 const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                 const int32_t *pos);

// ----------------------------------------------------------------------------
// Causal attention of T queries at positions pos..pos+T-1 over the S = pos+T
// keys of one sequence's caches (which already hold the T new keys/values):
//     heads[t, h] = Σ_{s ≤ pos+t} softmax_s((q[t,h]·kc[j,s])·hd^-½) · vc[j,s]
// T = 1 is the decode step. work: k_attn_prefill_work(T, S, H, KV, ex->nth)
// floats of scratch. T = 0 does nothing.
size_t k_attn_prefill_work(int T, int S, int H, int KV, int nth);
void   k_attn_prefill(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                      int KV, int hd, const float *kc, const float *vc, int cap, float *work);

// Batched decode: row r of q[n, H·hd] is one query at position pos[r] of its
// own sequence, over keys 0..pos[r] of caches kc[r], vc[r] (host pointer
// arrays; the new keys already appended). heads[n, H·hd]. Row r's result is
// bit-identical to k_attn_prefill of that token alone (T = 1).
// work: k_attn_decode_rows_work(H, KV, cap, ex->nth) floats.
size_t k_attn_decode_rows_work(int H, int KV, int cap, int nth);
void   k_attn_decode_rows(const molt_exec *ex, float *heads, const float *q, int n,
                          const int32_t *pos, int H, int KV, int hd, float *const *kc,
                          float *const *vc, int cap, float *work);

// The probabilities of T queries at positions 0..T-1 (q [T, H·hd]) over the
// keys of cache kc ([KV, cap, hd], cap ≥ T): A[H, T, T], row t the softmax
// over keys 0..t of (q·k)·hd^-½, zeros above the diagonal. Equal, bit for
// bit, to the P k_attn_prefill uses at pos 0.
void k_attn_probs(const molt_exec *ex, float *A, const float *q, int T, int H, int KV, int hd,
                  const float *kc, int cap);

// ----------------------------------------------------------------------------
// f16 KV cache (optional ops: kernels.h MOLT_BACKEND_KV16_OPS). The caches
// hold IEEE half bits (uint16_t); the arithmetic stays f32: keys and values
// are widened exactly on the fly. Per sequence and kv head j the rows are
// padded to cap16 = ⌈cap/16⌉·16 (k_kv_f16_halves(cap, hd) halves a head), and
// keys are stored in blocks of 16 keys, element-major, so 16 keys' element i
// are adjacent (the decode scores of 16 keys run as one vector):
//     K: key s, element i at  j·cap16·hd + (s/16)·16·hd + i·16 + s%16
//     V: row s, element i at  j·cap16·hd + s·hd + i           (row-major)
// Halves past a sequence's keys are never used (they may be read: any bits).
size_t k_kv_f16_halves(int cap, int hd);

// k_kv_append into f16 caches: each element narrowed f32 → f16, rounding to
// nearest even (overflow to ±inf, NaN stays NaN), at the layout above.
// Arguments as k_kv_append's; vc (and v) NULL: keys only.
void k_kv_append_f16(const molt_exec *ex, uint16_t *const *kc, uint16_t *const *vc,
                     const float *k, const float *v, int ld, int rows, int KV, int hd, int cap,
                     int pos0, const int32_t *pos);

// k_attn_prefill over f16 caches: the same attention of the widened keys and
// values. T = 1 (decode) is bit-identical to k_attn_prefill (T = 1) over f32
// caches holding the widened values (the same per-key sums in the same
// order); T > 1 agrees with it up to the sgemm's rounding. work:
// k_attn_prefill_f16_work(T, S, H, KV, hd, ex->nth) floats.
size_t k_attn_prefill_f16_work(int T, int S, int H, int KV, int hd, int nth);
void   k_attn_prefill_f16(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                          int KV, int hd, const uint16_t *kc, const uint16_t *vc, int cap,
                          float *work);

// k_attn_decode_rows over f16 caches: row r bit-identical to
// k_attn_prefill_f16 of that token alone. work: k_attn_decode_rows_f16_work.
size_t k_attn_decode_rows_f16_work(int H, int KV, int hd, int cap, int nth);
void   k_attn_decode_rows_f16(const molt_exec *ex, float *heads, const float *q, int n,
                              const int32_t *pos, int H, int KV, int hd, uint16_t *const *kc,
                              uint16_t *const *vc, int cap, float *work);

// ----------------------------------------------------------------------------
// training: B sequences of T tokens at positions 0..T-1, no cache

// P and heads of every (b, h) from qkv rows [B·T, ld] (post-RoPE q and k):
//     P[b,h] = softmax_causal((q_h · k_jᵀ)·hd^-½)  [T,T],   heads[b,:,h] = P[b,h] · v_j
// heads [B·T, H·hd]; heads NULL: P only (v not read: ld ≥ (H+KV)·hd suffices;
// otherwise ld ≥ (H+2KV)·hd). P and heads written (=).
void k_attn_train_forward(const molt_exec *ex, float *P, float *heads, const float *qkv, int ld,
                          int B, int T, int H, int KV, int hd);

// Backward of k_attn_train_forward (with heads) given dheads [B·T, H·hd] and
// the P it saved: dqkv [B·T, (H+2KV)·hd] = dq | dk | dv per row, written (=),
// the gradients with respect to the post-RoPE q and k (apply k_rope inverse
// after); shared kv heads (grp > 1) sum their group's gradients. qkv: the
// forward's input, ld = (H+2KV)·hd. work: k_attn_train_backward_work(...)
// floats (independent of the thread count).
size_t k_attn_train_backward_work(int B, int T, int H, int KV, int hd);
void   k_attn_train_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                             const float *qkv, const float *P, int B, int T, int H, int KV,
                             int hd, float *work);

// Flash-style training attention (no T×T matrix in memory): the same heads as
// k_attn_train_forward, saving per row the log-sum-exp of its scaled scores,
// lse [B, H, T] (lse[b,h,t] = log Σ_{s≤t} exp((q_t·k_s)·hd^-½)), instead of P.
// qkv rows [B·T, ld], ld ≥ (H+2KV)·hd. heads and lse written (=). A backend
// whose train_attn_flash is set trains with these (attn_train.c).
void k_attn_flash_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv, int ld,
                          int B, int T, int H, int KV, int hd);
// Its backward: dqkv [B·T, (H+2KV)·hd] as k_attn_train_backward's (written),
// recomputing P from qkv and lse; heads: the forward's output (for
// D_t = dO_t·heads_t). qkv's ld = (H+2KV)·hd. work: k_attn_flash_backward_work.
size_t k_attn_flash_backward_work(int B, int T, int H, int KV, int hd);
void   k_attn_flash_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                             const float *qkv, const float *heads, const float *lse, int B, int T,
                             int H, int KV, int hd, float *work);

#endif
