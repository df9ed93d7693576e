/*
 * cmd_bench.c — `molt bench MODEL [--device D] [--threads N] [--weights T] [--kv T] [--state T]
 * [--matmul P] [--prompt N] [--decode N] [--batch 1,16,64] [--rounds R] [--json]`: how fast this
 * model runs here. Prefill: one sequence takes an N-token prompt (tok/s). Decode at batch 1:
 * one sequence, as `molt generate` (logits out, greedy on the host); at batch B > 1: B state
 * slots that each hold the prompt (prefilled once, then forked with molt_slot_copy) take
 * --decode steps of one token each, every step one molt_slots_feed_sample call (greedy, the ids
 * drawn on the model's device), as `molt serve` and `generate -b`: aggregate tok/s and ms a
 * step, for every B of --batch. Each number is
 * the median of --rounds runs (the first run of each measure is a warm-up, not counted). The
 * prompt is pseudo-random token ids (fixed seed): speed does not depend on the text. Memory:
 * the model's weights and the slots' KV cache + recurrent state.
 */
#include "cli.h"
#include "jsonout.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BATCHES 16

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct bench_row {
    const char *what;   // "prefill" or "decode"
    int         batch;  // sequences
    int         tokens; // prompt tokens (prefill) or steps (decode)
    double      tok_s, ms;
    int64_t     state_bytes; // the slots' KV + recurrent state (decode)
} bench_row;

typedef struct bench_opts {
    long prompt, decode, rounds;
    long batch[MAX_BATCHES];
    int  n_batch;
} bench_opts;

// the prompt's ids: a fixed LCG over [0, vocab)
static void fill_ids(int32_t *ids, int n, int vocab) {
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((r >> 33) % (uint64_t)vocab);
    }
}

// prefill: rounds + 1 runs of one fresh sequence taking the prompt (the first a warm-up)
static bool bench_prefill(molt_ctx *ctx, const molt_model *m, const int32_t *ids,
                          const bench_opts *o, float *logits, bench_row *row) {
    molt_seq *s = NULL;
    if (molt_seq_new(ctx, m, (int32_t)o->prompt, &s) != MOLT_OK)
        return false;
    double *t = malloc(sizeof(double) * (size_t)o->rounds);
    bool    ok = t != NULL;
    for (long k = 0; ok && k <= o->rounds; k++) {
        molt_seq_reset(s);
        double t0 = cli_now_s();
        ok = molt_seq_feed(ctx, s, ids, (int32_t)o->prompt, 0, logits) == MOLT_OK;
        if (k)
            t[k - 1] = cli_now_s() - t0;
    }
    if (ok) {
        double per = median(t, (int)o->rounds);
        *row = (bench_row){"prefill", 1, (int)o->prompt, (double)o->prompt / per, per * 1e3, 0};
    }
    free(t);
    molt_seq_free(s);
    return ok;
}

static int32_t argmax(const float *v, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

// decode at batch 1 as `molt generate` does it: one sequence (molt_seq), each step one token
// in and its logits out, the next token their argmax on the host; rounds + 1 runs of --decode
// steps, each from the prompt again (its prefill not timed)
static bool bench_decode1(molt_ctx *ctx, const molt_model *m, const molt_model_info *in,
                          const int32_t *ids, const bench_opts *o, float *logits,
                          bench_row *row) {
    molt_seq *s = NULL;
    if (molt_seq_new(ctx, m, (int32_t)(o->prompt + o->decode), &s) != MOLT_OK)
        return false;
    double *t = malloc(sizeof(double) * (size_t)o->rounds);
    bool    ok = t != NULL;
    for (long k = 0; ok && k <= o->rounds; k++) {
        molt_seq_reset(s);
        ok = molt_seq_feed(ctx, s, ids, (int32_t)o->prompt - 1, 0, NULL) == MOLT_OK;
        int32_t tok = ids[o->prompt - 1];
        double  t0 = cli_now_s();
        for (long i = 0; ok && i < o->decode; i++) {
            ok = molt_seq_feed(ctx, s, &tok, 1, 0, logits) == MOLT_OK;
            tok = argmax(logits, in->vocab);
        }
        if (k)
            t[k - 1] = cli_now_s() - t0;
    }
    if (ok) {
        double  per = median(t, (int)o->rounds) / (double)o->decode;
        int64_t sb = in->state_bytes + in->kv_bytes_per_token * (o->prompt + o->decode);
        *row = (bench_row){"decode", 1, (int)o->decode, 1.0 / per, per * 1e3, sb};
    }
    free(t);
    molt_seq_free(s);
    return ok;
}

// decode at batch B over state slots: slot B takes the prompt, slots 0..B-1 are forks of it;
// then rounds + 1 runs of --decode greedy steps over the B slots, the ids drawn on the model's
// device (each run from the prompt again)
static bool bench_decode(molt_ctx *ctx, const molt_model *m, const int32_t *ids,
                         const bench_opts *o, int B, bench_row *row) {
    molt_slots *s = NULL;
    int32_t     cap = (int32_t)(o->prompt + o->decode);
    if (molt_slots_new(ctx, m, B + 1, cap, &s) != MOLT_OK)
        return false;
    int32_t *slot = malloc(sizeof(int32_t) * (size_t)B), *tok = malloc(sizeof(int32_t) * (size_t)B);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    double  *t = malloc(sizeof(double) * (size_t)o->rounds);
    // slot B keeps the prefilled prompt; every run forks it into slots 0..B-1
    bool ok = slot && tok && next && t &&
              molt_slot_prefill(ctx, s, B, ids, (int32_t)o->prompt - 1, 0, NULL) == MOLT_OK;
    for (long k = 0; ok && k <= o->rounds; k++) {
        for (int r = 0; ok && r < B; r++) {
            slot[r] = r, tok[r] = ids[o->prompt - 1];
            ok = molt_slot_copy(ctx, s, B, r) == MOLT_OK;
        }
        double t0 = cli_now_s();
        for (long i = 0; ok && i < o->decode; i++) {
            ok = molt_slots_feed_sample(ctx, s, B, slot, tok, 0.0f, NULL, next) == MOLT_OK;
            memcpy(tok, next, sizeof(int32_t) * (size_t)B);
        }
        if (k)
            t[k - 1] = cli_now_s() - t0;
    }
    if (ok) {
        double per = median(t, (int)o->rounds) / (double)o->decode; // a step
        // the B decoding slots' share (slot B only holds the prompt)
        int64_t sb = molt_slots_state_bytes(s) / (B + 1) * B;
        *row = (bench_row){"decode", B, (int)o->decode, B / per, per * 1e3, sb};
    }
    free(slot), free(tok), free(next), free(t);
    molt_slots_free(s);
    return ok;
}

static void human(char *b, size_t n, double bytes) { cli_human_bytes(b, n, bytes, 1); }

static bool print_json(const char *model, const char *device, long threads, const char *weights,
                       const char *kvt, const char *state, const char *matmul,
                       const molt_model_info *in, const bench_row *rows, int n) {
    cJSON *o = cJSON_CreateObject(), *a = NULL;
    jo_str(o, "bench", "molt bench");
    jo_str(o, "model", model);
    jo_str(o, "arch", in->arch);
    jo_str(o, "device", device);
    jo_int(o, "threads", threads);
    jo_str(o, "weights", weights);
    jo_str(o, "kv", kvt);
    jo_str(o, "state", state);
    jo_str(o, "matmul", matmul);
    jo_int(o, "n_params", (long long)in->n_params);
    jo_int(o, "weight_bytes_f32", (long long)in->weight_bytes);
    cJSON_AddItemToObject(o, "rows", a = cJSON_CreateArray());
    for (int i = 0; a && i < n; i++) {
        cJSON *r = cJSON_CreateObject();
        jo_str(r, "what", rows[i].what);
        jo_int(r, "batch", rows[i].batch);
        jo_int(r, strcmp(rows[i].what, "prefill") ? "steps" : "tokens", rows[i].tokens);
        jo_num(r, "tok_per_s", "%.1f", rows[i].tok_s);
        jo_num(r, "ms", "%.3f", rows[i].ms);
        if (!strcmp(rows[i].what, "decode"))
            jo_int(r, "state_bytes", (long long)rows[i].state_bytes);
        cJSON_AddItemToArray(a, r);
    }
    return jo_print(stdout, o, false);
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *tokp = NULL, *device = NULL, *matmul = "fp32", *weights = NULL,
               *kvt = NULL, *state = NULL, *batches = "1,16,64";
    long       threads = 2;
    bool       json = false;
    bench_opts o = {0, 64, 3, {0}, 0}; // prompt 0: 512, or what the context leaves (below)
    const cli_optspec opts[] = {
        CLI_INT("--prompt", NULL, "N",
                "prompt tokens (prefill, and the context decode starts at; default 512, or what "
                "the model's context leaves after --decode)",
                o.prompt, 1, 1L << 20),
        CLI_INT("--decode", NULL, "N", "decode steps a run", o.decode, 1, 1L << 20),
        CLI_STR_D("--batch", NULL, "B1,B2,..", "sequences decoded together, one row each",
                  batches, "1,16,64"),
        CLI_INT("--rounds", NULL, "R", "runs a measure (the median; one more warms up)",
                o.rounds, 1, 100),
        CLI_INT("--threads", NULL, "N", "threads", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_MATMUL(matmul),
        CLI_CHOICE("--weights", NULL, "f32|bf16|f16|q8_0",
                   "type of the matrices decoding reads (default: as stored)", weights,
                   "f32|bf16|f16|q8_0"),
        CLI_CHOICE("--kv", NULL, "f32|f16", "element type of the attention KV cache", kvt,
                   "f32|f16"),
        CLI_CHOICE("--state", NULL, "f32|bf16", "type of the recurrent SSM state", state,
                   "f32|bf16"),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file", tokp),
        CLI_FLAG("--json", NULL, "print the results as one JSON object", json),
        CLI_END,
    };
    const cli_cmd cmd = {
        "bench", "MODEL [options]",
        "How fast MODEL runs here: prefill of one --prompt (pseudo-random tokens), then decode\n"
        "from that context at every --batch: batch 1 as `generate` (one sequence, logits out),\n"
        "B > 1 over state slots as `serve` (the prompt forked, greedy on the model's device);\n"
        "medians of --rounds runs, a table (or --json) on stdout.\n",
        opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!model)
        return cli_usage_error("bench", "no MODEL given");
    if (!cli_int_list("bench", "--batch", batches, 1, 4096, o.batch, MAX_BATCHES, &o.n_batch,
                      "B1,B2,...", "sizes"))
        return EXIT_USAGE;
    bool prompt_given = o.prompt != 0;
    if (prompt_given && o.prompt < 2)
        return cli_usage_error("bench", "--prompt must be at least 2 tokens");
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_ctx_set_matmul(ctx, matmul);
    if (!cli_set_device(ctx, device)) {
        molt_ctx_free(ctx);
        return 1;
    }
    molt_model *m = cli_load_model(ctx, model, tokp);
    if (!m || (weights && molt_model_set_weight_dtype(ctx, m, weights) != MOLT_OK) ||
        (kvt && molt_model_set_kv_dtype(ctx, m, kvt) != MOLT_OK) ||
        (state && molt_model_set_state_dtype(ctx, m, state) != MOLT_OK)) {
        int rc = m ? cli_fail(ctx, model) : 1;
        molt_model_free(m);
        molt_ctx_free(ctx);
        return rc;
    }
    molt_model_info in;
    molt_model_get_info(m, &in);
    if (!prompt_given) // the default fits the model: 512 tokens, or what its context leaves
        o.prompt = in.max_seq - o.decode < 512 ? (long)in.max_seq - o.decode : 512;
    if (o.prompt < 2 || o.prompt + o.decode > in.max_seq) {
        molt_model_free(m);
        molt_ctx_free(ctx);
        if (o.prompt < 2)
            return cli_usage_error("bench", "--decode %ld leaves no room for a prompt in the "
                                            "model's context (%d tokens)", o.decode, in.max_seq);
        return cli_usage_error("bench", "--prompt %ld + --decode %ld exceed the model's context "
                                        "(%d tokens)", o.prompt, o.decode, in.max_seq);
    }
    int32_t   *ids = malloc(sizeof(int32_t) * (size_t)o.prompt);
    float     *logits = malloc(sizeof(float) * (size_t)in.vocab);
    bench_row  rows[1 + MAX_BATCHES];
    int        n = 0, rc = 0;
    if (!ids || !logits) {
        fprintf(stderr, "molt: error: bench: out of memory\n");
        rc = 1;
    } else {
        fill_ids(ids, (int)o.prompt, in.vocab);
        fprintf(stderr, "bench: prefill of %ld tokens, %ld + 1 runs\n", o.prompt, o.rounds);
        if (!bench_prefill(ctx, m, ids, &o, logits, &rows[n++]))
            rc = cli_fail(ctx, "bench");
        for (int k = 0; !rc && k < o.n_batch; k++) {
            fprintf(stderr, "bench: decode at batch %ld, %ld steps, %ld + 1 runs\n", o.batch[k],
                    o.decode, o.rounds);
            bool ok = o.batch[k] == 1
                          ? bench_decode1(ctx, m, &in, ids, &o, logits, &rows[n++])
                          : bench_decode(ctx, m, ids, &o, (int)o.batch[k], &rows[n++]);
            if (!ok)
                rc = cli_fail(ctx, "bench");
        }
    }
    const char *dev = device ? device : getenv("MOLT_DEVICE") ? getenv("MOLT_DEVICE") : "cpu";
    const char *wt = weights ? weights : "as stored", *kv = kvt ? kvt : "f32";
    const char *st = state ? state : "f32";
    if (!rc && json) {
        if (!print_json(model, dev, threads, wt, kv, st, matmul, &in, rows, n)) {
            fprintf(stderr, "molt: error: bench: out of memory\n");
            rc = 1;
        }
    } else if (!rc) {
        char wb[32];
        human(wb, sizeof wb, (double)in.weight_bytes);
        printf("molt bench %s · %s, %lld parameters (%s in f32) · %s, %ld threads · "
               "weights %s, kv %s, state %s, matmul %s · decode from a %ld-token context\n",
               model, in.arch, (long long)in.n_params, wb, dev, threads, wt, kv, st, matmul,
               o.prompt);
        printf("%-8s %6s %8s %14s %12s %14s\n", "measure", "batch", "tokens", "tok/s",
               "ms", "KV + state");
        for (int i = 0; i < n; i++) {
            char sb[32] = "";
            if (!strcmp(rows[i].what, "decode"))
                human(sb, sizeof sb, (double)rows[i].state_bytes);
            printf("%-8s %6d %8d %14.1f %12.3f %14s\n", rows[i].what, rows[i].batch,
                   rows[i].tokens, rows[i].tok_s, rows[i].ms, sb);
        }
        printf("(prefill: ms for the whole prompt; decode: ms a step, tok/s over the batch; "
               "medians of %ld runs)\n", o.rounds);
    }
    free(ids), free(logits);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
