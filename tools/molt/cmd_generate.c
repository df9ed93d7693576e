/*
 * cmd_generate.c — `molt generate MODEL [-p PROMPT] [-n N] [-t TEMP]
 * [--top-k K] [--top-p P] [-s SEED] [-b N] [--weights f32|bf16|f16|q8_0] [--tokenizer FILE]
 * [--threads N] [-q]`.
 * Streams the prompt and its continuation to stdout; counts and speed to stderr.
 * With -b N: N samples of the prompt decoded as one batch (state slots),
 * sample i seeded SEED + i, printed one after the other when all are done.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

// one sample's text, collected while the batch decodes
typedef struct textbuf {
    char  *s;
    size_t len, cap;
} textbuf;

typedef struct samples {
    textbuf *b; // [n]
    int      oom;
} samples;

static void keep_piece(int32_t i, const char *s, size_t n, void *user) {
    samples *all = user;
    textbuf *b = &all->b[i];
    if (b->len + n > b->cap) {
        size_t c = (b->cap + n) * 2;
        char  *t = realloc(b->s, c);
        if (!t) {
            all->oom = 1;
            return;
        }
        b->s = t, b->cap = c;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
}

static void print_piece(const char *s, size_t n, void *user) {
    (void)user;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *tokp = NULL, *weights = NULL, *device = NULL;
    molt_gen_params gp = molt_gen_defaults();
    gp.seed = (uint64_t)time(NULL);
    long threads = 2, batch = 1;
    bool quiet = false;
    const cli_optspec opts[] = {
        CLI_STR("--prompt", "-p", "TEXT", "prompt (default: start from BOS)", prompt),
        CLI_INT("--max-new", "-n", "N", "tokens to generate", gp.max_new_tokens, 0, 1L << 30),
        CLI_FLOAT("--temp", "-t", "T", "temperature; 0 = greedy", gp.temperature, 0, 100),
        CLI_INT("--top-k", NULL, "K", "keep the K most likely tokens; 0 = off", gp.top_k, 0,
                1L << 30),
        CLI_FLOAT("--top-p", NULL, "P", "nucleus sampling; 1 = off", gp.top_p, 0, 1),
        CLI_INT_D("--seed", "-s", "S", "RNG seed", gp.seed, 0, 1L << 62, "time"),
        CLI_STR("--tokenizer", NULL, "F",
                "tokenizer file (tokenizer.json / tokenizer.bin / tokenizer.model)", tokp),
        CLI_INT("--threads", NULL, "N", "threads", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_FLAG("--quiet", "-q", "no statistics on stderr", quiet),
        CLI_INT("--batch", "-b", "N", "N samples decoded together, sample i with seed S + i", batch,
                1, 4096),
        CLI_CHOICE("--weights", NULL, "f32|bf16|f16|q8_0",
                   "type of the matrices decoding reads (bf16/f16: half the bytes,\n"
                   "q8_0: int8 blocks, about a quarter; an extra copy beside the f32\n"
                   "weights). Default: as stored (q8_0 for a `molt quantize` model)",
                   weights, "f32|bf16|f16|q8_0"),
        CLI_END,
    };
    const cli_cmd cmd = {"generate", "MODEL [options]",
                         "Streams the prompt and its continuation to stdout; counts and speed to "
                         "stderr.\n  MODEL  HF directory (config.json + safetensors) or llama2.c "
                         ".bin\n",
                         opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!model)
        return cli_usage_error("generate", "no MODEL given");
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    if (!cli_set_device(ctx, device)) {
        molt_ctx_free(ctx);
        return 1;
    }
    molt_model *m = cli_load_model(ctx, model, tokp);
    if (!m || (weights && molt_model_set_weight_dtype(ctx, m, weights) != MOLT_OK)) {
        if (m)
            cli_fail(ctx, model);
        molt_model_free(m);
        molt_ctx_free(ctx);
        return 1;
    }
    molt_gen_stats stats = {0};
    molt_status st;
    int rc = 0;
    if (batch == 1) {
        st = molt_generate(ctx, m, prompt, &gp, print_piece, NULL, &stats);
        printf("\n");
    } else {
        samples all = {calloc((size_t)batch, sizeof(textbuf)), 0};
        st = all.b ? molt_generate_many(ctx, m, prompt, (int32_t)batch, &gp, keep_piece, &all,
                                        &stats)
                   : MOLT_ERR_OOM;
        if (!all.b || (st == MOLT_OK && all.oom)) {
            fprintf(stderr, "molt: error: out of memory collecting %ld samples' text\n", batch);
            rc = 1;
        } else {
            for (int i = 0; st == MOLT_OK && i < batch; i++) {
                printf("--- sample %d (seed %llu)\n", i,
                       (unsigned long long)(gp.seed + (uint64_t)i));
                fwrite(all.b[i].s, 1, all.b[i].len, stdout);
                printf("\n");
            }
        }
        for (int i = 0; all.b && i < batch; i++)
            free(all.b[i].s);
        free(all.b);
    }
    if (rc == 0 && st != MOLT_OK)
        rc = cli_fail(ctx, NULL);
    else if (rc == 0 && !quiet)
        fprintf(stderr,
                "prompt %d tokens (%.0f tok/s), generated %d tokens%s in %.3fs (%.1f tok/s)\n",
                stats.n_prompt, stats.prefill_s > 0 ? stats.n_prompt / stats.prefill_s : 0.0,
                stats.n_generated, batch > 1 ? " over all samples" : "", stats.decode_s,
                stats.decode_s > 0 ? stats.n_generated / stats.decode_s : 0.0);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
