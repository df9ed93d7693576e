/*
 * kv_probe.h — the key-value probe's prompt sets (kv_probe.c builds them,
 * kv_score.c scores them), shared by molt_eval_kv / molt_eval_mqar, the head
 * analysis (heads.c) and the KV documents of distillation (mohawk.c).
 *
 * A kv_set holds the tokenized prompts of one (task, pairs, queries,
 * examples, seed) — exactly the prompts molt_eval_kv / molt_eval_mqar score —
 * so that the same prompts can be scored under many ablations without
 * re-tokenizing, and, on request, where the probe's landmarks sit: the last
 * queried key's tokens in the dictionary, its value's tokens and the tokens
 * holding a newline.
 *
 * Answers are scored over candidates: at each answer position, every value of
 * the task with the tokens it gets *in context* (the suffix of the tokens of
 * prompt + value after the prompt's tokens). A candidate set whose sequences
 * are not prefix-free (with a 512-token vocabulary 4 → '4' and 42 → '4' '2')
 * is closed with the "\n" that ends a value in the task's text, so that a
 * shorter value is not preferred for being shorter.
 */
#ifndef MOLT_KV_PROBE_H
#define MOLT_KV_PROBE_H

#include "core/core.h"
#include "models/model.h"

// The candidates at one answer position: value v's tokens are
// tok[off[v] .. off[v+1]); order lists the values with their token sequences
// in lexicographic order (a trie, walked depth first by kv_score.c).
typedef struct kv_cands {
    int32_t *off;     // [n_values + 1]
    int32_t *order;   // [n_values]
    int32_t *tok;     // [off[n_values]]
    int32_t  max_len; // tokens of the longest candidate (1: one token per value)
    bool     closed;  // the candidates end with the value's "\n"
} kv_cands;

typedef struct kv_query {
    int32_t  at;      // answer position: its context is ids[0 .. at)
    int32_t  answer;  // index of the right value among the task's values
    kv_cands c;
} kv_query;

typedef struct kv_example {
    int32_t  *ids;               // [n] BOS first, up to the last answer position
    int32_t   n;                 // = q[n_q-1].at: position n-1 predicts the last answer
    int32_t   n_q;
    kv_query *q;                 // [n_q] in prompt order
    // token positions of the last query, [lo, hi) (-1 when not asked for or not known)
    int32_t   key_lo, key_hi;     // its key in the dictionary
    int32_t   value_lo, value_hi; // its value in the dictionary
    uint8_t  *newline;            // [n] 1 where the token holds a '\n' (NULL: unknown)
} kv_example;

typedef struct kv_set {
    int32_t     pairs, queries, n_ex, n_values;
    int32_t     max_len;         // longest prompt (tokens)
    int32_t     seq_len;         // tokens a scoring sequence holds (prompt + candidate)
    kv_example *ex;              // [n_ex]
    bool        exact;           // tests: score single-token candidates through the trie too
} kv_set;

// Builds the prompts of molt_eval_mqar(task_json, pairs, queries, examples,
// seed) (same argument checks and messages); queries = 1 gives those of
// molt_eval_kv. positions: also find the landmarks; they stay unknown
// (-1 / NULL) when the tokenizer does not decode back to the prompt text.
molt_status kv_set_build(molt_ctx *ctx, const molt_model *m, const char *task_json, int32_t pairs,
                         int32_t queries, int32_t examples, uint64_t seed, bool positions,
                         kv_set *out);
void        kv_set_free(kv_set *s); // NULL and zeroed sets are fine

// The right answer's candidate tokens at query q (ending with the closing
// "\n" when the set is closed).
const int32_t *kv_answer(const kv_query *q, int32_t *n);

// Progress of work counted in scored examples (fn may be NULL).
typedef struct kv_progress {
    molt_progress_fn fn;
    void            *user;
    int64_t          done, total;
} kv_progress;

// Predicts every query: the value whose candidate tokens have the highest
// total log-probability, teacher-forced after the query's context (ties: the
// lowest value index). pred: [n_ex · queries], example-major. logp: NULL, or
// [n_ex · queries · n_values] every candidate's total log-probability. p (may
// be NULL) advances by one per example.
molt_status kv_set_predict(molt_ctx *ctx, const molt_model *m, const kv_set *set, kv_progress *p,
                           int32_t *pred, double *logp);
// Number of queries answered right (out of n_ex · queries).
molt_status kv_set_score(molt_ctx *ctx, const molt_model *m, const kv_set *set, kv_progress *p,
                         int32_t *correct);

#endif
