/*
 * cmd_eval.c — `molt eval MODEL --text FILE [--window W] [--sep STR]
 * [--max-tokens N] [--weights f32|bf16|f16|q8_0] [--kv f32|f16] [--json]`: mean
 * next-token loss over a text file; `molt eval MODEL --task kv|mqar [--pairs L]
 * [--queries Q] ...`: the key-value retrieval probe (one query per prompt, or MQAR's several).
 *
 * Documents: without --sep the file is one document, [BOS] + tokens. With
 * --sep STR (e.g. --sep '\n\n'; backslash escapes \n \t are understood) the
 * file is split at STR and every non-empty document becomes [BOS] + tokens,
 * all concatenated. The stream is then cut into fixed windows of W inputs
 * (default: the model's context, at most 1024); each window starts from an
 * empty state and every token but the first is predicted exactly once.
 * Last stdout line: loss=<float> ppl=<float> tokens=<int>.
 */
#include "cli.h"
#include "jsonout.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *ABOUT =
    "  loss: mean next-token loss over --text FILE, cut into windows of W inputs that each start\n"
    "  from an empty state; the last line is loss=<float> ppl=<float> tokens=<int>.\n"
    "  --task kv|mqar: key-value retrieval (data/kv_task.json format), per number of pairs, with\n"
    "  a 95% Wilson interval: an answer is right when the right value has the highest total\n"
    "  log-probability of all the task's values, each with the tokens it gets in context.\n"
    "  kv:   one query per prompt, \"The value of the key 'k' is \"\n"
    "  mqar: multi-query associative recall, Q query lines \"The value of the key 'k' is v\\n\"\n"
    "        for distinct keys, each answer scored teacher-forced (--queries Q, at most the\n"
    "        smallest --pairs)\n";

#define MAX_PAIRS_LIST 64

typedef struct kv_opts {
    const char *model, *tokp, *task_json, *weights, *device, *kvt, *matmul;
    bool        mqar, json;
    long        examples, seed, threads, queries;
    long        pairs[MAX_PAIRS_LIST];
    int         n_pairs;
} kv_opts;

typedef struct kv_rows {
    molt_kv_result   kv[MAX_PAIRS_LIST];
    molt_mqar_result mqar[MAX_PAIRS_LIST];
} kv_rows;

// One row of the table for pairs[k] (with --json, kept in rows for print_json_rows). Returns
// false on a library error.
static bool eval_row(molt_ctx *ctx, molt_model *m, const kv_opts *o, int k, kv_rows *rows) {
    int32_t np = (int32_t)o->pairs[k], ne = (int32_t)o->examples;
    if (!o->mqar) {
        molt_kv_result *r = &rows->kv[k];
        if (molt_eval_kv(ctx, m, o->task_json, np, ne, (uint64_t)o->seed, r) != MOLT_OK)
            return false;
        if (!o->json)
            printf("%-6d %9d %9.3f   [%.3f, %.3f] %8.3f\n", r->pairs, r->examples, r->accuracy,
                   r->ci_low, r->ci_high, r->chance);
        return true;
    }
    molt_mqar_result *r = &rows->mqar[k];
    if (molt_eval_mqar(ctx, m, o->task_json, np, (int32_t)o->queries, ne, (uint64_t)o->seed,
                       r) != MOLT_OK)
        return false;
    if (!o->json)
        printf("%-6d %7d %9d %9.3f   [%.3f, %.3f] %8.3f\n", r->pairs, r->queries, r->answers,
               r->accuracy, r->ci_low, r->ci_high, r->chance);
    return true;
}

// --json: the list of the first n rows as one line (false when cJSON ran out of memory).
static bool print_json_rows(const kv_opts *o, const kv_rows *rows, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToArray(a, j);
        if (!o->mqar) {
            const molt_kv_result *r = &rows->kv[k];
            jo_int(j, "pairs", r->pairs);
            jo_int(j, "examples", r->examples);
            jo_int(j, "correct", r->correct);
            jo_num(j, "accuracy", "%.4f", r->accuracy);
            jo_num(j, "ci_low", "%.4f", r->ci_low);
            jo_num(j, "ci_high", "%.4f", r->ci_high);
            jo_num(j, "chance", "%.4f", r->chance);
        } else {
            const molt_mqar_result *r = &rows->mqar[k];
            jo_int(j, "pairs", r->pairs);
            jo_int(j, "queries", r->queries);
            jo_int(j, "examples", r->examples);
            jo_int(j, "answers", r->answers);
            jo_int(j, "correct", r->correct);
            jo_num(j, "accuracy", "%.4f", r->accuracy);
            jo_num(j, "ci_low", "%.4f", r->ci_low);
            jo_num(j, "ci_high", "%.4f", r->ci_high);
            jo_num(j, "chance", "%.4f", r->chance);
        }
    }
    return jo_print(stdout, a, false);
}

static int eval_kv(const kv_opts *o) {
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)o->threads);
    molt_ctx_set_matmul(ctx, o->matmul); // a CLI_CHOICE: always valid
    molt_model *m = cli_set_device(ctx, o->device) ? cli_load_model(ctx, o->model, o->tokp) : NULL;
    int rc = 1;
    if (!m)
        goto out;
    if ((o->weights && molt_model_set_weight_dtype(ctx, m, o->weights) != MOLT_OK) ||
        (o->kvt && molt_model_set_kv_dtype(ctx, m, o->kvt) != MOLT_OK)) {
        cli_fail(ctx, o->model);
        goto out;
    }
    static kv_rows rows; // --json: the list, printed once every row is done
    if (!o->json && o->mqar)
        printf("%-6s %7s %9s %9s %18s %8s\n", "pairs", "queries", "answers", "accuracy",
               "95% interval", "chance");
    else if (!o->json)
        printf("%-6s %9s %9s %18s %8s\n", "pairs", "examples", "accuracy", "95% interval",
               "chance");
    for (int k = 0; k < o->n_pairs; k++) {
        if (!eval_row(ctx, m, o, k, &rows)) {
            if (o->json) // the rows done so far
                print_json_rows(o, &rows, k);
            cli_fail(ctx, o->task_json);
            goto out;
        }
        fflush(stdout);
    }
    if (o->json && !print_json_rows(o, &rows, o->n_pairs)) {
        fprintf(stderr, "molt: error: eval: out of memory\n");
        goto out;
    }
    rc = 0;
out:
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}

static void unescape(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s == 'r' ? '\r' : *s;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

typedef struct ids_buf {
    int32_t *v;
    size_t   n, cap;
} ids_buf;

static bool push(ids_buf *b, const int32_t *x, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = (b->cap ? b->cap : 4096);
        while (nc < b->n + n)
            nc *= 2;
        int32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv)
            return false;
        b->v = nv;
        b->cap = nc;
    }
    memcpy(b->v + b->n, x, n * sizeof *x);
    b->n += n;
    return true;
}

static bool add_doc(molt_ctx *ctx, const molt_tokenizer *tok, const char *s, size_t len,
                    ids_buf *b) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (molt_tokenize(ctx, tok, s, len, molt_tokenizer_bos(tok) >= 0, &ids, &n) != MOLT_OK)
        return false;
    bool ok = push(b, ids, n);
    molt_free(ids);
    return ok;
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *tokp = NULL, *sep_arg = NULL;
    char *sep = NULL;
    long window = 0, threads = 2, max_tokens = 0;
    bool json = false;
    const char *task = NULL, *pairs = "10,20,40", *kvfile = NULL, *weights = NULL, *kvt = NULL;
    const char *device = NULL, *matmul = "fp32";
    long examples = 200, seed = 1, queries = 0;
    const cli_optspec opts[] = {
        CLI_STR("--text", NULL, "FILE", "UTF-8 text to score", text),
        CLI_INT_D("--window", NULL, "W", "tokens per window", window, 1, 1L << 22,
                  "context, at most 1024"),
        CLI_STR_NE("--sep", NULL, "STR",
                   "split FILE into documents at STR, each starting with BOS\n"
                   "(backslash escapes \\n \\t \\r are understood)",
                   sep_arg),
        CLI_INT_D("--max-tokens", NULL, "N", "score only the first N tokens of the stream",
                  max_tokens, 2, 1L << 40, "all"),
        CLI_CHOICE("--task", NULL, "kv|mqar", "the key-value retrieval probe instead of --text",
                   task, "kv|mqar"),
        CLI_STR("--pairs", NULL, "N1,N2,...", "probe: numbers of key-value pairs per prompt",
                pairs),
        CLI_INT_D("--queries", NULL, "Q", "mqar: queries per prompt", queries, 1, 100000, "4"),
        CLI_INT("--examples", NULL, "N", "probe: prompts per number of pairs", examples, 1,
                1L << 24),
        CLI_INT("--seed", NULL, "S", "probe seed", seed, 0, 1L << 62),
        CLI_STR_D("--kv-task", NULL, "F", "probe task file", kvfile,
                  "data/kv_task.json, or beside the binary"),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file", tokp),
        CLI_INT("--threads", NULL, "N", "threads", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_MATMUL(matmul),
        CLI_CHOICE("--weights", NULL, "f32|bf16|f16|q8_0",
                   "type of the matrices the forward reads (bf16/f16/q8_0: an extra\n"
                   "copy). Default: as stored (q8_0 for a `molt quantize` model)",
                   weights, "f32|bf16|f16|q8_0"),
        CLI_CHOICE("--kv", NULL, "f32|f16",
                   "element type of the attention KV cache: f16 halves the bytes that\n"
                   "decoding at long context reads (keys and values rounded to nearest\n"
                   "even; the attention math stays f32). Default: f32",
                   kvt, "f32|f16"),
        CLI_FLAG("--json", NULL, "print the result as JSON", json),
        CLI_END,
    };
    const cli_cmd cmd = {"eval", "MODEL (--text FILE | --task kv|mqar) [options]", ABOUT, opts,
                         NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (sep_arg) {
        if (!(sep = strdup(sep_arg))) {
            fprintf(stderr, "molt: error: out of memory\n");
            return 1;
        }
        unescape(sep);
    }
    if (queries && (!task || strcmp(task, "mqar"))) {
        free(sep);
        return cli_usage_error("eval", "--queries goes with --task mqar");
    }
    if (model && task) {
        char kbuf[4200];
        free(sep);
        kv_opts o = {model, tokp, NULL,     weights, device, kvt, matmul, !strcmp(task, "mqar"),
                     json,  examples, seed, threads, queries ? queries : 4, {0}, 0};
        if (!cli_int_list("eval", "--pairs", pairs, 1, 100000, o.pairs, MAX_PAIRS_LIST,
                          &o.n_pairs, "N1,N2,...", "counts"))
            return EXIT_USAGE;
        for (int k = 0; o.mqar && k < o.n_pairs; k++)
            if (o.queries > o.pairs[k])
                return cli_usage_error("eval", "--queries %ld%s exceeds --pairs %ld: each query "
                                               "asks a distinct key of the dictionary",
                                       o.queries, queries ? "" : " (the default)", o.pairs[k]);
        o.task_json = kvfile ? kvfile : cli_default_kv_task(kbuf, sizeof kbuf);
        return eval_kv(&o);
    }
    if (!model || !text) {
        free(sep);
        return cli_usage_error("eval", model ? "no --text FILE given" : "no MODEL given");
    }
    size_t len;
    char *buf = cli_read_file(text, &len);
    if (!buf) {
        free(sep);
        return 1;
    }
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_ctx_set_matmul(ctx, matmul); // a CLI_CHOICE: always valid
    molt_model *m = cli_set_device(ctx, device) ? cli_load_model(ctx, model, tokp) : NULL;
    int rc = 1;
    ids_buf ids = {0};
    if (!m)
        goto out;
    if ((weights && molt_model_set_weight_dtype(ctx, m, weights) != MOLT_OK) ||
        (kvt && molt_model_set_kv_dtype(ctx, m, kvt) != MOLT_OK)) {
        cli_fail(ctx, model);
        goto out;
    }
    const molt_tokenizer *tok = molt_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "molt: error: %s has no tokenizer\nHINT: pass --tokenizer FILE\n", model);
        goto out;
    }
    bool ok = true;
    if (sep) {
        size_t sl = strlen(sep);
        const char *p = buf, *end = buf + len;
        while (ok && p < end) {
            const char *q = strstr(p, sep);
            const char *e = q ? q : end;
            if (e > p)
                ok = add_doc(ctx, tok, p, (size_t)(e - p), &ids);
            p = q ? q + sl : end;
        }
    } else {
        ok = add_doc(ctx, tok, buf, len, &ids);
    }
    if (!ok) {
        cli_fail(ctx, text);
        goto out;
    }
    if (max_tokens && ids.n > (size_t)max_tokens)
        ids.n = (size_t)max_tokens;
    progress pb;
    progress_start(&pb, "eval", "tok");
    molt_eval_result r;
    if (molt_eval_tokens(ctx, m, ids.v, ids.n, (int32_t)window, progress_update, &pb, &r) !=
        MOLT_OK) {
        cli_fail(ctx, text);
        goto out;
    }
    progress_end(&pb, r.tokens);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        jo_str(j, "model", model);
        jo_str(j, "text", text);
        jo_num(j, "loss", "%.6f", r.loss);
        jo_num(j, "ppl", "%.4f", r.ppl);
        jo_int(j, "tokens", (long long)r.tokens);
        jo_num(j, "seconds", "%.3f", r.seconds);
        if (!jo_print(stdout, j, false)) {
            fprintf(stderr, "molt: error: eval: out of memory\n");
            goto out;
        }
    }
    printf("loss=%.6f ppl=%.4f tokens=%lld\n", r.loss, r.ppl, (long long)r.tokens);
    rc = 0;
out:
    free(ids.v);
    free(buf);
    free(sep);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
