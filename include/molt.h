/*
 * molt.h — the one public header of libmolt.
 *
 * molt runs Llama-style Transformers and their recurrent students (Llamba /
 * Mamba-2 / per-head hybrids) on the CPU, in fp32, exactly as the reference
 * implementations do. Every object is an opaque handle; every fallible call
 * returns a molt_status and leaves a one-line explanation in its context
 * (molt_last_error). The library never exits the process.
 *
 * Usage (error handling shortened):
 *
 *     molt_ctx *ctx = molt_ctx_new();
 *     molt_model *m = NULL;
 *     if (molt_model_load(ctx, "models/stories260K/stories260K.bin", NULL, &m) != MOLT_OK)
 *         fprintf(stderr, "error: %s\n", molt_last_error(ctx));
 *     molt_gen_params gp = molt_gen_defaults();
 *     gp.temperature = 0.0f;  gp.max_new_tokens = 200;
 *     molt_generate(ctx, m, "Once upon a time", &gp, my_print_cb, NULL);
 *     molt_model_free(m);
 *     molt_ctx_free(ctx);
 */
#ifndef MOLT_H
#define MOLT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MOLT_API __attribute__((visibility("default")))
#else
#define MOLT_API
#endif

#define MOLT_VERSION_MAJOR 0
#define MOLT_VERSION_MINOR 1
#define MOLT_VERSION_PATCH 0

// ----------------------------------------------------------------------------
// status codes

typedef enum molt_status {
    MOLT_OK              = 0,
    MOLT_ERR_IO          = -1, // cannot open / read / write a file
    MOLT_ERR_FORMAT      = -2, // malformed file: bad header, offsets, JSON
    MOLT_ERR_UNSUPPORTED = -3, // valid input that molt does not handle (architecture, dtype)
    MOLT_ERR_OOM         = -4, // an allocation failed
    MOLT_ERR_SHAPE       = -5, // tensor shapes disagree with the config or each other
    MOLT_ERR_ARG         = -6, // bad argument from the caller (empty prompt, k too large, ...)
    MOLT_ERR_NUMERIC     = -7, // NaN / inf where it must not be
    MOLT_ERR_MISSING     = -8, // a required tensor / key / file is absent
    MOLT_ERR_INTERNAL    = -9, // a bug in molt
    MOLT_STATUS_COUNT    = 10
} molt_status;

MOLT_API const char *molt_status_str(molt_status s);

// ----------------------------------------------------------------------------
// context: error detail, logging, threads

typedef struct molt_ctx molt_ctx;

MOLT_API molt_ctx   *molt_ctx_new(void);
MOLT_API void        molt_ctx_free(molt_ctx *ctx);
// The detail of the last error in this context ("file.safetensors: tensor 'x' ...").
MOLT_API const char *molt_last_error(const molt_ctx *ctx);
MOLT_API molt_status molt_last_status(const molt_ctx *ctx);
MOLT_API void        molt_ctx_set_threads(molt_ctx *ctx, int n_threads);
MOLT_API int         molt_ctx_threads(const molt_ctx *ctx);

// Where the models loaded (or built) with this context afterwards run and
// train: "cpu" (the default), "cuda" or "cuda:N" (a molt built with `make
// cuda`; N counts from 0). Models are read on the host and then moved there
// whole: parameters, states, caches, gradients and optimizer moments live on
// the device; only logits, losses and sampled tokens come back. NULL or ""
// reads the MOLT_DEVICE environment variable (unset: "cpu").
// MOLT_ERR_UNSUPPORTED: a CUDA device in a build without CUDA, or no such
// GPU; MOLT_ERR_ARG: a malformed name. The context is unchanged on error.
MOLT_API molt_status molt_ctx_set_device(molt_ctx *ctx, const char *device);
// The context's device as "cpu" or "cuda:N".
MOLT_API const char *molt_ctx_device(const molt_ctx *ctx);
// GEMM precision on a GPU: "fp32" (the default: full fp32, matches the CPU to
// rounding), "tf32" (TF32 tensor cores: fp32 storage, 10-bit-mantissa
// products, about 8× the fp32 rate on an H100) or "bf16" (each GEMM's inputs
// rounded to bf16, bf16 tensor cores, fp32 accumulation and output; twice the
// TF32 rate; weights, gradients and optimizer state stay fp32). The CPU
// computes fp32 in every mode but one: with "bf16", on a CPU with AVX512-BF16,
// products of more than 16 rows with bf16 weights (prefill) round their fp32
// inputs to bf16 and multiply bf16 × bf16 with fp32 sums (vdpbf16ps).
MOLT_API molt_status molt_ctx_set_matmul(molt_ctx *ctx, const char *precision);
// Data-parallel training (issue 18): molt_train and molt_distill on a context
// with a communicator run as one rank of comm's world — each rank computes its
// slice of every global batch, gradients are averaged over the ranks, AdamW's
// moments are sharded (ZeRO-1), rank 0 alone writes files. Communicators come
// from libmolt_dist (include/molt_dist.h: MPI, NCCL); the context does not own
// it. NULL (the default): one process, exactly as without this call.
typedef struct molt_comm molt_comm;
MOLT_API void        molt_ctx_set_comm(molt_ctx *ctx, molt_comm *comm);
MOLT_API int         molt_comm_rank(const molt_comm *comm);  // 0 for NULL
MOLT_API int         molt_comm_world(const molt_comm *comm); // 1 for NULL

typedef enum molt_log_level {
    MOLT_LOG_DEBUG = 0,
    MOLT_LOG_INFO  = 1,
    MOLT_LOG_WARN  = 2,
    MOLT_LOG_ERROR = 3
} molt_log_level;
typedef void (*molt_log_fn)(molt_log_level level, const char *msg, void *user);
// All library output goes through this hook. Default: WARN and above to stderr.
MOLT_API void molt_log_set(molt_log_fn fn, void *user);

// Allocation hook (process-wide). realloc(p, old, new): new == 0 frees.
typedef void *(*molt_alloc_fn)(void *user, void *ptr, size_t old_size, size_t new_size);
MOLT_API void molt_set_allocator(molt_alloc_fn fn, void *user);

// ----------------------------------------------------------------------------
// tokenizer

typedef struct molt_tokenizer molt_tokenizer;

// path: tokenizer.json (HF byte-level BPE), tokenizer.bin (llama2.c export),
// or a tiktoken rank file (tokenizer.model of Llama 3). vocab_hint: expected
// vocabulary size for llama2.c files (0 = read all).
MOLT_API molt_status molt_tokenizer_load(molt_ctx *ctx, const char *path, int32_t vocab_hint,
                                         molt_tokenizer **out);
MOLT_API void        molt_tokenizer_free(molt_tokenizer *tok);
// Encodes UTF-8 text. *ids is allocated by molt (free with molt_free).
MOLT_API molt_status molt_tokenize(molt_ctx *ctx, const molt_tokenizer *tok, const char *text,
                                   size_t len, int add_bos, int32_t **ids, size_t *n_ids);
// Bytes of the whole decoded id sequence (NUL-terminated; free with molt_free).
MOLT_API molt_status molt_detokenize(molt_ctx *ctx, const molt_tokenizer *tok, const int32_t *ids,
                                     size_t n_ids, char **text, size_t *len);
MOLT_API int32_t     molt_tokenizer_vocab(const molt_tokenizer *tok);
MOLT_API int32_t     molt_tokenizer_bos(const molt_tokenizer *tok);
MOLT_API int32_t     molt_tokenizer_eos(const molt_tokenizer *tok);
MOLT_API void        molt_free(void *p);

// ----------------------------------------------------------------------------
// models

typedef struct molt_model molt_model;

typedef struct molt_load_opts {
    const char *tokenizer_path; // override / supply the tokenizer (llama2.c .bin models)
    int         no_tokenizer;   // 1: do not look for a tokenizer
} molt_load_opts;

// path: an HF-style directory (config.json + *.safetensors [+ index]), or a
// llama2.c .bin checkpoint. The architecture is taken from config.json's
// model_type ("llama", "llamba", "mamba2", "molt_hybrid"); a config.json without
// one is read as state-spaces' MambaConfig (d_model, n_layer, ssm_cfg) or, with
// mlp_cfg, as cartesia's Llamba.
MOLT_API molt_status molt_model_load(molt_ctx *ctx, const char *path, const molt_load_opts *opts,
                                     molt_model **out);
MOLT_API void        molt_model_free(molt_model *m);
// Writes DIR/config.json, DIR/model.safetensors and the tokenizer (atomically).
// dtype: "f32" (default when NULL), "bf16" or "f16".
MOLT_API molt_status molt_model_save(molt_ctx *ctx, const molt_model *m, const char *dir,
                                     const char *dtype);
// The same in a chosen checkpoint layout: NULL / "auto" (the one it was loaded
// in), "hf" (transformers llama / mamba2), "llamba" (cartesia-pytorch's
// LlambaLMHeadModel), "molt" (molt_hybrid, for any Llamba / hybrid student) or
// "mamba_ssm" (state-spaces' MambaLMHeadModel). MOLT_ERR_UNSUPPORTED when the
// layout cannot hold the model (nothing is written then).
MOLT_API molt_status molt_model_save_as(molt_ctx *ctx, const molt_model *m, const char *dir,
                                        const char *dtype, const char *layout);
MOLT_API const molt_tokenizer *molt_model_tokenizer(const molt_model *m);
// The element type of the weight matrices decoding reads: q/k/v/o, the MLP's
// gate|up and down, the SSM's in_proj and out_proj, and the LM head (embeddings,
// norms, biases, convs and the hybrid adapter stay f32). "bf16" / "f16" convert
// them (round to nearest even) into one extra buffer of the model's backend that
// prefill, decode and batched slots read (half the bytes: decode is bandwidth
// bound); "f32" (the default) points them back at the parameters and frees it.
// The f32 parameters stay (training, analysis and saving use them), so bf16
// costs half the matrices' f32 size in extra memory: it is meant for decoding.
// The copy is taken now: after changing the parameters (training), call again.
// Errors: MOLT_ERR_ARG (unknown dtype), MOLT_ERR_OOM; the model is unchanged then.
MOLT_API molt_status molt_model_set_weight_dtype(molt_ctx *ctx, molt_model *m, const char *dtype);
// The element type of the KV caches of the sequences, slots and chats created
// from now on: "f32" (the default) or "f16" (half the cache bytes, which is what
// decoding at long context reads; keys and values are rounded to nearest even
// when appended, the attention arithmetic stays f32). Set it before creating
// them: a sequence or slots object created under the other type refuses to run
// (MOLT_ERR_ARG) until the type is set back. Errors: MOLT_ERR_ARG (unknown
// dtype), MOLT_ERR_UNSUPPORTED (a backend without f16 cache ops: CUDA today).
MOLT_API molt_status molt_model_set_kv_dtype(molt_ctx *ctx, molt_model *m, const char *dtype);

// The element type of the Mamba-2 / Llamba recurrent SSM state (not the conv
// window, not attention KV): "f32" (the default) or "bf16" (half the state
// bytes that batched decode reads and writes every step; the recurrence still
// computes in f32, widening on load and rounding to nearest even on store;
// prefill runs the f32 scan and rounds the state it stores). Changes the size
// of every sequence's state (molt_model_info.state_bytes): call it before
// creating sequences or slots — one created under the other type refuses to
// run (MOLT_ERR_ARG) until the type is set back. Errors: MOLT_ERR_ARG (unknown dtype),
// MOLT_ERR_UNSUPPORTED (bf16 on a backend without its ops: CUDA for now).
MOLT_API molt_status molt_model_set_state_dtype(molt_ctx *ctx, molt_model *m, const char *dtype);

typedef struct molt_model_info {
    char    arch[32];         // "llama", "llamba", "mamba2", "molt_hybrid"
    int32_t n_layer, d_model, vocab, d_ff;
    int32_t n_head, n_kv_head, head_dim; // attention (0 when none)
    int32_t d_state, ssm_heads;          // recurrent mixers (0 when none)
    int32_t n_attn_heads_kept;           // attention heads holding a KV cache, all layers
    int32_t max_seq;
    int64_t n_params;
    int64_t weight_bytes;        // bytes of fp32 weights in memory
    int64_t kv_bytes_per_token;  // grows with context (in the KV-cache type: f32 or f16)
    int64_t state_bytes;         // constant per sequence (conv + SSM state)
} molt_model_info;
MOLT_API void molt_model_get_info(const molt_model *m, molt_model_info *info);

// ----------------------------------------------------------------------------
// running: a sequence owns its KV cache / recurrent state

typedef struct molt_seq molt_seq;

// max_len: tokens the sequence may hold (KV cache capacity); 0 = model's max_seq.
MOLT_API molt_status molt_seq_new(molt_ctx *ctx, const molt_model *m, int32_t max_len,
                                  molt_seq **out);
MOLT_API void        molt_seq_free(molt_seq *s);
MOLT_API void        molt_seq_reset(molt_seq *s);
MOLT_API int32_t     molt_seq_pos(const molt_seq *s);
// Feeds n tokens (prefill when n > 1). logits: NULL, or [n_out, vocab] where
// n_out = n when all_logits, else 1 (the last position).
MOLT_API molt_status molt_seq_feed(molt_ctx *ctx, molt_seq *s, const int32_t *ids, int32_t n,
                                   int all_logits, float *logits);

// ----------------------------------------------------------------------------
// state slots: many sequences of one model, decoded together
//
// One molt_slots_feed call advances any subset of the slots by one token each,
// whatever position each is at, as one batch (GEMMs over the rows): the way to
// serve many requests or many samples of one prompt. A recurrent layer's slot
// is a few KB whatever the context; an attention layer's grows with max_len.

typedef struct molt_slots molt_slots;

// n_slots empty sequences of up to max_len tokens each (0 = the model's max_seq).
MOLT_API molt_status molt_slots_new(molt_ctx *ctx, const molt_model *m, int32_t n_slots,
                                    int32_t max_len, molt_slots **out);
MOLT_API void        molt_slots_free(molt_slots *s);
MOLT_API int32_t     molt_slots_count(const molt_slots *s);
MOLT_API int32_t     molt_slots_capacity(const molt_slots *s);      // max_len
MOLT_API int64_t     molt_slots_state_bytes(const molt_slots *s);   // KV + recurrent state, all slots
MOLT_API int32_t     molt_slot_pos(const molt_slots *s, int32_t slot); // tokens held (-1: no slot)
// Feeds n ≥ 1 tokens into one slot (a prompt, in chunked prefill). logits: NULL,
// or [n_out, vocab], n_out = n when all_logits, else 1 (the last position).
MOLT_API molt_status molt_slot_prefill(molt_ctx *ctx, molt_slots *s, int32_t slot,
                                       const int32_t *ids, int32_t n, int all_logits,
                                       float *logits);
// One decode step: slot[r] takes token tok[r], r < n (distinct slots, any
// positions). logits: NULL or [n, vocab], row r for slot[r].
MOLT_API molt_status molt_slots_feed(molt_ctx *ctx, molt_slots *s, int32_t n, const int32_t *slot,
                                     const int32_t *tok, float *logits);
// The same step, then one token drawn per row on the model's device, so only
// the n ids come back (no [n, vocab] logits copy): next[r] for slot[r] is the
// argmax of its logits when temperature ≤ 0, else a draw from
// softmax(logits/temperature) at coin[r] ∈ [0,1) (the inverse CDF in vocab
// order: molt_sampler's draw with top-k and top-p off, the same token on the
// CPU; on a GPU it may differ where coin[r] lies within rounding of a
// boundary). coin: n values, read only when temperature > 0. Non-finite
// logits: MOLT_ERR_NUMERIC (the step has been taken).
MOLT_API molt_status molt_slots_feed_sample(molt_ctx *ctx, molt_slots *s, int32_t n,
                                            const int32_t *slot, const int32_t *tok,
                                            float temperature, const float *coin, int32_t *next);
// dst becomes a copy of src (fork a prompt into many samples). Recurrent state
// is O(1) to copy; the KV cache O(tokens held).
MOLT_API molt_status molt_slot_copy(molt_ctx *ctx, molt_slots *s, int32_t src, int32_t dst);
// Empties a slot (position 0, zero state).
MOLT_API molt_status molt_slot_reset(molt_ctx *ctx, molt_slots *s, int32_t slot);

// ----------------------------------------------------------------------------
// generation

typedef struct molt_gen_params {
    int32_t  max_new_tokens; // default 256
    float    temperature;    // 0 = greedy; default 1.0
    int32_t  top_k;          // 0 = off
    float    top_p;          // 1.0 = off; default 0.9
    uint64_t seed;
    int      stop_at_eos;    // default 1
} molt_gen_params;
MOLT_API molt_gen_params molt_gen_defaults(void);

// Called with each piece of text as it is produced (the prompt first).
typedef void (*molt_text_fn)(const char *piece, size_t len, void *user);
typedef struct molt_gen_stats {
    int32_t n_prompt, n_generated;
    double  prefill_s, decode_s;
} molt_gen_stats;
MOLT_API molt_status molt_generate(molt_ctx *ctx, const molt_model *m, const char *prompt,
                                   const molt_gen_params *p, molt_text_fn cb, void *user,
                                   molt_gen_stats *stats);

// n samples of one prompt decoded as one batch (state slots): the prompt is
// prefilled once and forked; sample i samples with seed p->seed + i and stops
// on its own (EOS or max_new_tokens). cb gets each sample's pieces (the prompt
// first) tagged with the sample index; pieces of different samples interleave.
// stats: n_generated counts all samples' tokens.
typedef void (*molt_sample_text_fn)(int32_t sample, const char *piece, size_t len, void *user);
MOLT_API molt_status molt_generate_many(molt_ctx *ctx, const molt_model *m, const char *prompt,
                                        int32_t n, const molt_gen_params *p,
                                        molt_sample_text_fn cb, void *user,
                                        molt_gen_stats *stats);

// A conversation in one sequence of up to max_len tokens (0 = the model's
// max_seq). Each molt_chat_turn feeds text after what the sequence holds (BOS
// first on the first turn; each turn's text tokenized on its own) and samples
// a reply of up to p->max_new_tokens tokens (stopping before EOS), streamed to
// cb; the reply stays in the sequence, so the next turn computes only its own
// tokens (a recurrent model carries its state). Greedy replies equal
// molt_generate's continuation of the same tokens. One RNG (p->seed) across
// turns. Errors: MOLT_ERR_ARG when the turn is empty or the context is full.
typedef struct molt_chat molt_chat;
MOLT_API molt_status molt_chat_new(molt_ctx *ctx, const molt_model *m, int32_t max_len,
                                   const molt_gen_params *p, molt_chat **out);
MOLT_API molt_status molt_chat_turn(molt_ctx *ctx, molt_chat *c, const char *text,
                                    molt_text_fn cb, void *user, molt_gen_stats *stats);
MOLT_API int32_t     molt_chat_pos(const molt_chat *c); // tokens in the conversation
MOLT_API void        molt_chat_free(molt_chat *c);

// ----------------------------------------------------------------------------
// evaluation

// Progress of long work: done out of total units (tokens, steps).
typedef void (*molt_progress_fn)(int64_t done, int64_t total, void *user);

typedef struct molt_eval_result {
    double  loss;    // mean next-token cross-entropy (nats)
    double  ppl;     // exp(loss)
    int64_t tokens;  // predicted tokens
    double  seconds;
} molt_eval_result;

// Mean next-token loss over ids[n] in fixed windows: window w covers inputs
// ids[w·W .. w·W+W-1] and targets shifted by one, each window starting from an
// empty state (every token but the first is predicted exactly once).
// window ≤ 0: the model's max_seq (capped at 1024).
MOLT_API molt_status molt_eval_tokens(molt_ctx *ctx, const molt_model *m, const int32_t *ids,
                                      size_t n, int32_t window, molt_progress_fn progress,
                                      void *user, molt_eval_result *out);

// Key-value retrieval probe (the task of kv_task.json: keys, values; see
// data/kv_task.json) over `examples` seeded prompts of `pairs` pairs each: an
// answer is right when the right value has the highest total log-probability
// of all the task's values, each with the tokens it gets in context (one
// token per value: the argmax of the last position's logits over the value
// tokens). Works with any tokenizer that does not merge a value into the
// prompt before it.
typedef struct molt_kv_result {
    int32_t pairs, examples, correct;
    double  accuracy, ci_low, ci_high; // 95% Wilson interval
    double  chance;
} molt_kv_result;
MOLT_API molt_status molt_eval_kv(molt_ctx *ctx, const molt_model *m, const char *task_json,
                                  int32_t pairs, int32_t examples, uint64_t seed,
                                  molt_kv_result *out);

// Multi-query associative recall: the kv prompt followed by `queries` lines
// "The value of the key '{k}' is {v}\n" for distinct keys of the dictionary
// (1 ≤ queries ≤ pairs), each answer scored teacher-forced at its position
// as in molt_eval_kv. queries = 1 is molt_eval_kv's task.
typedef struct molt_mqar_result {
    int32_t pairs, queries, examples;
    int32_t answers, correct;          // answers = examples · queries
    double  accuracy, ci_low, ci_high; // over all answers; 95% Wilson interval
    double  chance;
} molt_mqar_result;
MOLT_API molt_status molt_eval_mqar(molt_ctx *ctx, const molt_model *m, const char *task_json,
                                    int32_t pairs, int32_t queries, int32_t examples,
                                    uint64_t seed, molt_mqar_result *out);

// ----------------------------------------------------------------------------
// models from a config (random init) and training

// A new model from a config.json, randomly initialised (seeded); the
// tokenizer is looked for beside the config, or given in opts.
MOLT_API molt_status molt_model_from_config(molt_ctx *ctx, const char *config_json,
                                            const molt_load_opts *opts, uint64_t seed,
                                            molt_model **out);

typedef struct molt_train_opts {
    const char *const *data;      // training files
    int32_t     n_data;
    const char *data_format;      // "text" (default), "u16" or "i32" raw token files
    const char *sep;              // text: document separator (NULL: one document per file)
    const char *eval_data;        // held-out file; NULL: hold out eval_frac of the data
    double      eval_frac;        // default 0.05
    const char *out_dir;          // checkpoints, log.jsonl, and the final model
    int32_t     seq_len, batch, accum;        // default 256, 8, 1
    int64_t     steps, tokens;    // budget: steps, or tokens (steps = tokens / (B·T·accum))
    double      lr, min_lr;       // default 1e-3, 1e-5
    double      warmup_frac, decay_frac;      // default 0.1, 0.1
    double      weight_decay, clip, beta1, beta2, eps; // 0.1, 1.0, 0.9, 0.95, 1e-8
    const char *schedule;         // "wsd" (default), "cosine", "constant"
    int32_t     eval_every, eval_batches;     // default 100 steps, 8 batches
    int32_t     save_every;       // default 200 steps (and at the end)
    uint64_t    seed;             // data order
    const char *freeze;           // comma-separated name globs of frozen parameters
    int         resume;           // continue from out_dir's latest checkpoint (verified)
    int         overwrite;        // out_dir may hold other files or an earlier run (whose
                                  // checkpoints and log are removed; the user's files never)
    int32_t     keep_last;        // checkpoints kept (default 1: the newest)
    const char *input;            // the model's (or config's) path, optional: out_dir may not
                                  // be it or the directory holding it (MOLT_ERR_ARG)
} molt_train_opts;
MOLT_API molt_train_opts molt_train_defaults(void);

typedef struct molt_train_report {
    int64_t step, total_steps, tokens;
    double  loss, lr, grad_norm, tok_per_s, elapsed_s;
    double  eval_loss;            // NaN when not evaluated at this step
} molt_train_report;
typedef void (*molt_train_fn)(const molt_train_report *r, void *user);

// Trains m in place. Calls cb after every step. Writes out_dir/ckpt-NNNNNNNN/
// checkpoints (model + optimizer + data position; a `latest` file names the
// last complete one) and the final model into out_dir. out_dir must be new,
// empty, or this kind of run (docs/GUARANTEES.md); one process writes to it at
// a time (a second gets MOLT_ERR_IO naming the holder's pid).
MOLT_API molt_status molt_train(molt_ctx *ctx, molt_model *m, const molt_train_opts *o,
                                molt_train_fn cb, void *user, molt_train_report *final);

// ----------------------------------------------------------------------------
// MOHAWK distillation (Transformer teacher → Llamba, Mamba-3 or GateLoop student)

typedef struct molt_distill_opts {
    const char *out_dir;           // student model, per-stage checkpoints, report
    int32_t     d_state;           // default 16
    int32_t     n_heads;           // student heads; 0 = the teacher's query heads (stage 1 needs that)
    // hybrid plan (retrieval-aware distillation): teacher heads kept as attention,
    // keep_layer[i]:keep_head[i]; n_keep = 0 gives a pure Llamba student
    const int32_t *keep_layer, *keep_head;
    int32_t     n_keep;
    int         freeze_kept;       // do not train the kept attention heads
    const char *init;              // "transfer" (default: C←Q, B←K, x←V, out←O) or "random"
    const char *student;           // the student's mixer: "llamba" (NULL, default), "mamba2"
                                   // (Mamba-2 mixer + the teacher's MLPs), "mamba3" (Mamba-3
                                   // SISO), "mamba3-mimo" (MIMO) or
                                   // "gateloop" (q/k/v/o and RoPE's phases transferred)
    int32_t     mimo_rank;         // mamba3-mimo: the rank R (default 4)
    int         ssm_bias;          // in_proj/out_proj biases (default 1)
    const char *const *data;       // training text; NULL: sample from the teacher
    int32_t     n_data;
    const char *sep;               // text: document separator
    int64_t     sample_tokens;     // teacher samples to draw when data is NULL (default 2M)
    const char *eval_data;         // held-out text for the report (optional)
    const char *kv_task;           // kv_task.json: retrieval accuracy in the report (optional)
    int32_t     kv_pairs, kv_examples; // default 8 pairs, 200 examples
    double      kv_data_frac;      // with kv_task: this fraction of the training tokens are
                                   // KV-task documents (prompt + answer; other seeds than the probe)
    int32_t     seq_len, batch;    // default 256, 8
    int64_t     stage_tokens[3];   // token budget per stage (0 skips a stage; 1M, 2M, 8M)
    double      stage_lr[3];       // default 1e-3, 1e-3, 5e-4
    double      warmup_frac, decay_frac; // each stage's WSD schedule (default 0.1, 0.1;
                                   // warmup + decay ≤ 1, MOLT_ERR_ARG otherwise)
    double      tau;               // stage 3 temperature (default 1)
    int         freeze_mlp;        // stage 3: train only norms + mixers
    uint64_t    seed;
    int         resume;            // skip finished stages, continue the current one
    int         overwrite;         // as molt_train_opts.overwrite
    const char *input;             // the teacher's path, optional: as molt_train_opts.input
    const char *kd_loss;           // stage 3 loss: "fkl" (NULL, the default: forward KL, the soft
                                   // CE of MOHAWK) or "rkl" (reverse KL(student ‖ teacher), the
                                   // MambaInLlama / M1 hybrid recipe; ALGORITHMS.md §10)
    int         recompute;         // the student's blocks recomputed in each backward from their
                                   // inputs (the same gradients, bit for bit; block activations
                                   // of one layer instead of all, for ~1 more forward)
    int32_t     save_every;        // steps between a stage's checkpoints (default 200; ≤ 0: only
                                   // after its last step)
} molt_distill_opts;
MOLT_API molt_distill_opts molt_distill_defaults(void);

typedef struct molt_distill_report {
    int     stage;                 // 1, 2, 3 (0 while sampling teacher data)
    int64_t step, total_steps, tokens;
    double  loss, elapsed_s, tok_per_s;
    double  device_gb;             // GPU memory in use (GB; 0 on the CPU)
} molt_distill_report;
typedef void (*molt_distill_fn)(const molt_distill_report *r, void *user);

// Distils teacher into a new student (opts.student: Llamba, Mamba-3, GateLoop) written to
// out_dir (loadable by molt_model_load), with out_dir/report.json, report.txt and
// SVG plots.
MOLT_API molt_status molt_distill(molt_ctx *ctx, const molt_model *teacher,
                                  const molt_distill_opts *o, molt_distill_fn cb, void *user);

// Head plan of a hybrid: which teacher heads stay attention (for
// molt_distill_opts.keep_layer / keep_head). Exactly one of: an explicit
// list, the top keep heads of a ranking (`molt heads TEACHER --json`), the
// top round(keep_frac · all heads) of it, or random_heads heads drawn with
// seed (a seeded partial shuffle of all (layer, head) pairs).
typedef struct molt_heads_plan_opts {
    const char *heads;        // "L:H,L:H,..." (0-based), or NULL
    const char *ranking;      // ranking JSON file, for keep / keep_frac
    int32_t     keep;         // top-K of the ranking; -1 = not this plan
    double      keep_frac;    // fraction P in [0, 1] of all heads; < 0 = not this plan
    int32_t     random_heads; // K random heads; -1 = not this plan
    uint64_t    seed;         // for random_heads
} molt_heads_plan_opts;
MOLT_API molt_heads_plan_opts molt_heads_plan_defaults(void); // no plan chosen

// The kept heads, in plan order (ranking order for keep / keep_frac):
// (*layers)[i], (*heads)[i], i < *n (free both with molt_free; NULL when
// *n = 0). Checks against the teacher (a Llama model; every head exists, none
// twice, K at most the head count, the ranking long enough). teacher NULL
// checks only what needs no model (one plan, the list's syntax, a ranking
// for keep / keep_frac, ranges) and returns no heads. MOLT_ERR_ARG on a bad
// plan, MOLT_ERR_IO / MOLT_ERR_FORMAT for the ranking file.
MOLT_API molt_status molt_heads_plan(molt_ctx *ctx, const molt_model *teacher,
                                     const molt_heads_plan_opts *o, int32_t **layers,
                                     int32_t **heads, int32_t *n);

// ----------------------------------------------------------------------------
// head analysis (Gather-and-Aggregate heads, ALGORITHMS.md §6)

// One head: accuracy on the key-value probe with the head ablated (its input
// columns of o_proj / out_proj zeroed) and the drop from the whole model —
// means over the probe seeds, with the drop's spread — and the sharpness of
// its mixing row at the answer position, averaged over the probe prompts:
// entropy (nats), top weight, and the mass on the queried key's tokens in
// the dictionary, on its value's tokens and on newline tokens (NaN when the
// tokenizer does not decode back to the prompt). Recurrent heads (Llamba /
// hybrid DiscreteMamba2 mixers) use the materialized mixing matrix, clipped
// at 0 and row-normalised. Hybrid layers' attention heads are numbered as the
// teacher's heads.
typedef struct molt_head_score {
    int32_t layer, head; // 0-based
    double  accuracy, accuracy_drop, drop_min, drop_max;
    double  entropy, top_weight, mass_key, mass_value, mass_newline;
    int32_t recurrent;   // 1: a recurrent (SSM) head, 0: an attention head
} molt_head_score;

// Ranks every head, most important (largest mean drop) first, on `examples`
// prompts of `pairs` pairs per seed. The model is modified while it runs and
// restored bit for bit. MOLT_ERR_UNSUPPORTED when the model has no head that
// can be ablated alone (HF Mamba-2). *scores: n entries, free with molt_free.
MOLT_API molt_status molt_heads_rank(molt_ctx *ctx, molt_model *m, const char *kv_task,
                                     int32_t pairs, int32_t examples, const uint64_t *seeds,
                                     int32_t n_seeds, molt_progress_fn progress, void *user,
                                     molt_head_score **scores, int32_t *n);

// Probe accuracy (mean over the seeds) with whole blocks skipped (the
// residual passes through): pruned[k], k = 0..n_layer, without the top k
// layers (pruned[0]: the whole model); single[l], l < n_layer, without layer
// l alone. The caller sizes both arrays from molt_model_get_info's n_layer.
MOLT_API molt_status molt_layers_ablate(molt_ctx *ctx, molt_model *m, const char *kv_task,
                                        int32_t pairs, int32_t examples, const uint64_t *seeds,
                                        int32_t n_seeds, molt_progress_fn progress, void *user,
                                        double *pruned, double *single);

// The last n_rows mixing rows of one head over the first probe prompt of
// seed: weights[r, i] = weight of query position n_tokens − n_rows + r on
// token i (row-normalised; recurrent rows clipped at 0). Free with
// molt_head_rows_free.
typedef struct molt_head_rows {
    int32_t  n_tokens, n_rows;
    int32_t *ids;                 // [n_tokens] the prompt, BOS first
    float   *weights;             // [n_rows, n_tokens]
    int32_t  key_lo, key_hi;      // tokens [lo, hi) of the queried key in the dictionary (-1: unknown)
    int32_t  value_lo, value_hi;  // tokens of its value
    int32_t  answer_token;        // the right answer's first token
    int32_t *answer_ids;          // [n_answer] all its tokens, as the probe scores them (with
    int32_t  n_answer;            // a closing "\n" when the task's values need one)
} molt_head_rows;
MOLT_API molt_status molt_heads_rows(molt_ctx *ctx, molt_model *m, const char *kv_task,
                                     int32_t pairs, uint64_t seed, int32_t layer, int32_t head,
                                     int32_t recurrent, int32_t n_rows, molt_head_rows *out);
MOLT_API void        molt_head_rows_free(molt_head_rows *r);

// ----------------------------------------------------------------------------
// serving: a sampler object, token pieces, slot snapshots (molt serve)

// One sequence's sampler: the one molt_generate uses (same RNG, same order of
// draws), so a seed gives molt_generate's tokens for the same logits. Two
// additions act on the logits before it and are off by default: min_p (drop
// tokens whose probability is below min_p times the top one's, after the
// temperature) and repetition_penalty (CTRL / HF rule over every token given
// to molt_sampler_accept: a positive logit is divided by it, a negative one
// multiplied). min_p = 0 and repetition_penalty = 1 leave molt_generate's path.
typedef struct molt_sampler_params {
    float    temperature;        // 0 = greedy
    float    top_p;              // 1 = off
    int32_t  top_k;              // 0 = off
    float    min_p;              // 0 = off; in [0, 1]
    float    repetition_penalty; // 1 = off; > 0
    uint64_t seed;
} molt_sampler_params;
typedef struct molt_sampler molt_sampler;
// MOLT_ERR_ARG: a parameter out of range; MOLT_ERR_OOM.
MOLT_API molt_status molt_sampler_new(molt_ctx *ctx, int32_t vocab, const molt_sampler_params *p,
                                      molt_sampler **out);
MOLT_API void        molt_sampler_free(molt_sampler *s);
// The next token from logits [vocab] (modified in place); -1 when a logit is
// NaN or ±inf.
MOLT_API int32_t     molt_sampler_next(molt_sampler *s, float *logits);
// Records tokens for the repetition penalty (the prompt, then each token chosen).
MOLT_API void        molt_sampler_accept(molt_sampler *s, const int32_t *ids, size_t n);

// The text token id adds after token prev (-1: none), as molt_generate streams
// it (a leading space after BOS dropped, byte tokens as bytes). Writes at most
// cap bytes (no NUL); returns the length.
MOLT_API size_t molt_token_piece(const molt_tokenizer *tok, int32_t prev, int32_t id, char *buf,
                                 size_t cap);

// A slot's whole state (its position, recurrent state and the KV rows it
// holds) as bytes on the host, and back: a prompt's state kept and restored
// later (a prompt cache). molt_slot_save_bytes: the bytes a save of the slot
// needs now. molt_slot_save writes them to buf (cap ≥ that; MOLT_ERR_ARG
// otherwise). molt_slot_load makes slot hold a saved state of slots of the
// same model and capacity (MOLT_ERR_FORMAT when the bytes are not one).
MOLT_API size_t      molt_slot_save_bytes(const molt_slots *s, int32_t slot);
MOLT_API molt_status molt_slot_save(molt_ctx *ctx, const molt_slots *s, int32_t slot, void *buf,
                                    size_t cap, size_t *len);
MOLT_API molt_status molt_slot_load(molt_ctx *ctx, molt_slots *s, int32_t slot, const void *buf,
                                    size_t len);

// ----------------------------------------------------------------------------
// reasoning: many sampled chains of thought per problem (issue 17, ALGORITHMS.md §10)
//
// Answers are numbers compared exactly as rationals. molt_answer_extract takes
// the number after the LAST "####" in the text (GSM8K's answer marker); when
// there is no "####", or no number after the last one, it falls back to the
// LAST number anywhere in the text (marker = 0); no number at all: found = 0.
// A number: an optional '-' (a sign when not preceded by a letter, digit or
// ')'), digits with optional comma groups of exactly three ("1,000"; "1,23" is
// 1 then 23), then either ".digits" (a decimal) or "/digits" (a fraction,
// denominator not 0); a leading '$', a trailing '%' or '.' are ignored.
// Equal values have equal keys: "18", "18.00", "$18" and "36/2" are all "18";
// "0.75" and "3/4" are "3/4"; "-0" is "0". Values whose reduced numerator or
// denominator do not fit in 63 bits get the key "D:" + the canonical decimal
// (decimals) or "F:" + the unreduced canonical fraction, hashed ("H:" + 16 hex
// digits of FNV-1a) when longer than the key holds: such fractions compare
// equal only in the same unreduced form.

typedef struct molt_answer {
    int32_t found;  // 1: a number was found
    int32_t marker; // 1: it followed the last "####"; 0: the fallback (last number)
    char    key[48]; // canonical value (NUL-terminated), "" when not found
} molt_answer;
// Never fails; text may hold any bytes (len bytes; NUL bytes are characters).
MOLT_API void    molt_answer_extract(const char *text, size_t len, molt_answer *out);
// The key of a number alone ("1,000", "-3/4", "51.0"); found = 0 when s is not one number.
MOLT_API void    molt_answer_parse(const char *s, size_t len, molt_answer *out);
// 1 when both were found and have the same value, else 0.
MOLT_API int     molt_answer_equal(const molt_answer *a, const molt_answer *b);
// The unbiased pass@k estimator of n samples of which c are correct:
// 1 − C(n−c, k)/C(n, k), computed as 1 − Π_{i=n−c+1..n} (1 − k/i); 1 when
// n − c < k. NaN when not 0 ≤ c ≤ n and 1 ≤ k ≤ n.
MOLT_API double  molt_pass_at_k(int64_t n, int64_t c, int64_t k);
// Majority vote over a[0..n): the index of the first sample holding the most
// frequent key among found answers (ties: the key whose first occurrence comes
// first wins); -1 when no sample has an answer.
MOLT_API int32_t molt_majority_vote(const molt_answer *a, int32_t n);

// A problem set: GSM8K jsonl (one {"question", "answer"} object a line, the
// key after "####"), or SVAMP's JSON array of {"Body", "Question", "Answer"}
// (question = Body + " " + Question, answer = the number). Lines that are
// blank are skipped; a malformed record is MOLT_ERR_FORMAT naming its line.
typedef struct molt_problem {
    char       *question; // NUL-terminated
    char       *solution; // the reference solution text (GSM8K) or the number (SVAMP)
    molt_answer answer;   // found = 1 always
} molt_problem;
MOLT_API molt_status molt_problems_load(molt_ctx *ctx, const char *path, molt_problem **out,
                                        int32_t *n);
MOLT_API void        molt_problems_free(molt_problem *p, int32_t n);

// Arithmetic word and expression problems with step-by-step solutions ending
// in "#### <integer>" (src/reason/mathgen.c documents the generator). Problem
// i of a seed is a function of (seed, i, steps, digits) alone. The split is a
// function of the question text: hash(question) % 10 == 0 is "test" (held
// out), the rest "train", so no question is in both whatever the seeds.
typedef struct molt_mathgen_opts {
    int64_t     n;                    // problems written (of the split asked for)
    uint64_t    seed;
    int32_t     min_steps, max_steps; // operations per problem (default 1..3; 1..16)
    int32_t     digits;               // digits of the numbers (default 2; 1..6)
    const char *split;                // "train" (default), "test" or "all"
    const char *format;               // "jsonl" (default: GSM8K records) or "text": documents
                                      // "Question: Q\nAnswer: SOLUTION\n" joined by
                                      // MOLT_MATHGEN_SEP (for molt train --sep)
} molt_mathgen_opts;
#define MOLT_MATHGEN_SEP "<|endoftext|>"
MOLT_API molt_mathgen_opts molt_mathgen_defaults(void);
// Writes the file atomically (path "-": stdout).
MOLT_API molt_status       molt_mathgen(molt_ctx *ctx, const molt_mathgen_opts *o,
                                        const char *path);

// K chains of thought of one prompt, decoded as one batch over state slots:
// the prompt is prefilled once (molt_chains_new) and forked into the K slots
// for every batch drawn. Chain j of a batch samples with seed p->seed + j using
// molt_generate's sampler, so it is the continuation molt_generate gives alone
// with that seed (up to the batched GEMMs' rounding; bit for bit on the CPU for
// stories260K, tests/test_reason.c), cut at the first stop string.
typedef struct molt_chains molt_chains;
// max_new: tokens per chain at most (fitted to the context).
MOLT_API molt_status molt_chains_new(molt_ctx *ctx, const molt_model *m, const char *prompt,
                                     int32_t k, int32_t max_new, molt_chains **out);
MOLT_API void        molt_chains_free(molt_chains *c);
MOLT_API int32_t     molt_chains_prompt_tokens(const molt_chains *c);
// Draws K chains: texts[j] (the continuation without the prompt, without the
// stop string; NUL-terminated; free with molt_free) and tokens[j] (tokens
// sampled, the stopping one included). A chain stops at EOS / BOS, at the end
// of a stop string (stop[0..n_stop), e.g. "\n\n", "Question:") or after
// max_new tokens. p: temperature, top_p, top_k, seed (max_new_tokens and
// stop_at_eos are not read: EOS always stops).
MOLT_API molt_status molt_chains_draw(molt_ctx *ctx, molt_chains *c, const molt_gen_params *p,
                                      const char *const *stop, int32_t n_stop, char **texts,
                                      int32_t *tokens);

#ifdef __cplusplus
}
#endif
#endif // MOLT_H
