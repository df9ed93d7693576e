/*
 * cmd_generate.c — `molt generate MODEL [-p PROMPT] [-n N] [-t TEMP]
 * [--top-k K] [--top-p P] [-s SEED] [-b N] [--tokenizer FILE] [--threads N]`.
 * Streams the prompt and its continuation to stdout; counts and speed to stderr.
 * With -b N: N samples of the prompt decoded as one batch (state slots),
 * sample i seeded SEED + i, printed one after the other when all are done.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *USAGE =
    "usage: molt generate MODEL [options]\n"
    "  MODEL               HF directory (config.json + safetensors) or llama2.c .bin\n"
    "  -p, --prompt TEXT   prompt (default: start from BOS)\n"
    "  -n, --max-new N     tokens to generate (default 256)\n"
    "  -t, --temp T        temperature; 0 = greedy (default 1.0)\n"
    "      --top-k K       keep the K most likely tokens (default 0 = off)\n"
    "      --top-p P       nucleus sampling (default 0.9; 1 = off)\n"
    "  -s, --seed S        RNG seed (default: time)\n"
    "  -b, --batch N       N samples decoded together, sample i with seed S + i (default 1)\n"
    "      --tokenizer F   tokenizer file (tokenizer.json / tokenizer.bin / tokenizer.model)\n"
    "      --threads N     threads (default 2)\n"
    "  -q, --quiet         no statistics on stderr\n";

typedef struct samples {
    char  **text;
    size_t *len, *cap;
    int     n, oom;
} samples;

static void keep_piece(int32_t i, const char *s, size_t n, void *user) {
    samples *b = user;
    if (b->len[i] + n + 1 > b->cap[i]) {
        size_t c = (b->cap[i] + n + 1) * 2;
        char  *t = realloc(b->text[i], c);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->text[i] = t, b->cap[i] = c;
    }
    memcpy(b->text[i] + b->len[i], s, n);
    b->len[i] += n;
}

static void print_piece(const char *s, size_t n, void *user) {
    (void)user;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *tokp = NULL, *v;
    molt_gen_params gp = molt_gen_defaults();
    gp.seed = (uint64_t)time(NULL);
    long threads = 2, batch = 1, lv;
    double dv;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "-p", "--prompt", &v)) {
            if (!v)
                return cli_usage_error("generate", "%s needs a value", a);
            prompt = v;
        } else if (cli_opt(argc, argv, &i, "-n", "--max-new", &v)) {
            if (!v || !cli_int("generate", a, v, 0, 1L << 30, &lv))
                return EXIT_USAGE;
            gp.max_new_tokens = (int32_t)lv;
        } else if (cli_opt(argc, argv, &i, "-t", "--temp", &v)) {
            if (!v || !cli_float("generate", a, v, 0, 100, &dv))
                return EXIT_USAGE;
            gp.temperature = (float)dv;
        } else if (cli_opt(argc, argv, &i, NULL, "--top-k", &v)) {
            if (!v || !cli_int("generate", a, v, 0, 1L << 30, &lv))
                return EXIT_USAGE;
            gp.top_k = (int32_t)lv;
        } else if (cli_opt(argc, argv, &i, NULL, "--top-p", &v)) {
            if (!v || !cli_float("generate", a, v, 0, 1, &dv))
                return EXIT_USAGE;
            gp.top_p = (float)dv;
        } else if (cli_opt(argc, argv, &i, "-s", "--seed", &v)) {
            if (!v || !cli_int("generate", a, v, 0, 1L << 62, &lv))
                return EXIT_USAGE;
            gp.seed = (uint64_t)lv;
        } else if (cli_opt(argc, argv, &i, "-b", "--batch", &v)) {
            if (!v || !cli_int("generate", a, v, 1, 65536, &batch))
                return EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, NULL, "--tokenizer", &v)) {
            if (!v)
                return cli_usage_error("generate", "%s needs a value", a);
            tokp = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--threads", &v)) {
            if (!v || !cli_int("generate", a, v, 1, 256, &threads))
                return EXIT_USAGE;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("generate", "unknown option %s", a);
        } else if (!model) {
            model = a;
        } else {
            return cli_usage_error("generate", "unexpected argument \"%s\"", a);
        }
    }
    if (!model)
        return cli_usage_error("generate", "no MODEL given");
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_model *m = cli_load_model(ctx, model, tokp);
    if (!m) {
        molt_ctx_free(ctx);
        return 1;
    }
    molt_gen_stats stats = {0};
    molt_status st;
    samples b = {0};
    if (batch == 1) {
        st = molt_generate(ctx, m, prompt, &gp, print_piece, NULL, &stats);
        printf("\n");
    } else {
        b.n = (int)batch;
        b.text = calloc((size_t)batch, sizeof *b.text);
        b.len = calloc((size_t)batch, sizeof *b.len);
        b.cap = calloc((size_t)batch, sizeof *b.cap);
        st = b.text && b.len && b.cap
                 ? molt_generate_many(ctx, m, prompt, (int32_t)batch, &gp, keep_piece, &b, &stats)
                 : MOLT_ERR_OOM;
        if (st == MOLT_OK && b.oom)
            st = MOLT_ERR_OOM;
        for (int i = 0; st == MOLT_OK && i < b.n; i++) {
            printf("--- sample %d (seed %llu)\n", i, (unsigned long long)(gp.seed + (uint64_t)i));
            fwrite(b.text[i], 1, b.len[i], stdout);
            printf("\n");
        }
        for (int i = 0; b.text && i < b.n; i++)
            free(b.text[i]);
        free(b.text);
        free(b.len);
        free(b.cap);
    }
    int rc = 0;
    if (st != MOLT_OK)
        rc = cli_fail(ctx, NULL);
    else if (!quiet)
        fprintf(stderr,
                "prompt %d tokens (%.0f tok/s), generated %d tokens%s in %.3fs (%.1f tok/s)\n",
                stats.n_prompt, stats.prefill_s > 0 ? stats.n_prompt / stats.prefill_s : 0.0,
                stats.n_generated, batch > 1 ? " over all samples" : "", stats.decode_s,
                stats.decode_s > 0 ? stats.n_generated / stats.decode_s : 0.0);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
