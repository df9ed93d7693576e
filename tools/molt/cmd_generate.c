/*
 * cmd_generate.c — `molt generate MODEL [-p PROMPT | -f FILE] [-n N] [-t TEMP]
 * [--top-k K] [--top-p P] [-s SEED] [-b N] [--chat [--ctx N]] [--weights f32|bf16|f16|q8_0]
 * [--kv f32|f16] [--state f32|bf16] [--tokenizer FILE] [--threads N] [--ignore-eos] [-q]`.
 * Streams the prompt and its continuation to stdout; counts and speed to stderr.
 * -f FILE: the prompt is FILE's bytes exactly (no size cap; "-" = stdin).
 * With -b N: N samples of the prompt decoded as one batch (state slots),
 * sample i seeded SEED + i, printed one after the other when all are done.
 * --ignore-eos: EOS and BOS do not end a sample (each gets -n tokens: the
 * throughput runs of scripts/exp17).
 * With --chat (-i): each line of stdin is a user turn (molt_chat: the
 * conversation stays in one sequence, a turn feeds only its new tokens); the
 * reply is printed followed by a newline.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

// The whole of path ("-": stdin) as a NUL-terminated string (free()), or NULL
// after printing why: it cannot be read, or it holds a NUL byte.
static char *read_prompt_file(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    const char *name = strcmp(path, "-") ? path : "standard input";
    if (!f) {
        fprintf(stderr, "molt: error: %s: cannot open the prompt file: %s\n", path,
                strerror(errno));
        return NULL;
    }
    size_t len = 0, cap = 1 << 16;
    char  *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *t = cap < ((size_t)1 << 40) ? realloc(buf, cap * 2) : NULL;
            if (!t) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = t, cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || err) {
        fprintf(stderr, "molt: error: %s: %s\n", name,
                buf ? "read error" : "out of memory reading the prompt");
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    if (strlen(buf) != len) {
        fprintf(stderr, "molt: error: %s: the prompt holds a NUL byte at offset %zu\n", name,
                strlen(buf));
        free(buf);
        return NULL;
    }
    return buf;
}

// --chat: one user turn per line of stdin, each reply on stdout then "\n"
static int chat_loop(molt_ctx *ctx, molt_model *m, const molt_gen_params *gp, long ctx_len,
                     bool quiet) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    // an attention model's KV cache grows with the context: 4096 unless --ctx says
    int32_t cap = ctx_len > 0                 ? (int32_t)(ctx_len < in.max_seq ? ctx_len : in.max_seq)
                  : in.kv_bytes_per_token > 0 ? (in.max_seq < 4096 ? in.max_seq : 4096)
                                              : in.max_seq;
    molt_chat *c = NULL;
    if (molt_chat_new(ctx, m, cap, gp, &c) != MOLT_OK)
        return cli_fail(ctx, NULL);
    bool    tty = isatty(0);
    char   *line = NULL;
    size_t  lcap = 0;
    ssize_t n;
    int     rc = 0, turns = 0;
    molt_gen_stats all = {0};
    if (tty && !quiet)
        fprintf(stderr, "(chat: one turn per line, end with Ctrl-D)\n> ");
    while ((n = getline(&line, &lcap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0 || strlen(line) != (size_t)n) { // an empty line; a NUL byte cuts the turn
            if (n > 0)
                fprintf(stderr, "molt: warning: turn %d holds a NUL byte: skipped\n", turns + 1);
        } else {
            molt_gen_stats st = {0};
            if (molt_chat_turn(ctx, c, line, print_piece, NULL, &st) != MOLT_OK) {
                printf("\n");
                rc = cli_fail(ctx, NULL);
                break;
            }
            printf("\n");
            fflush(stdout);
            turns++;
            all.n_prompt += st.n_prompt, all.n_generated += st.n_generated;
            all.prefill_s += st.prefill_s, all.decode_s += st.decode_s;
        }
        if (tty && !quiet)
            fprintf(stderr, "> ");
    }
    if (rc == 0 && !quiet)
        fprintf(stderr,
                "%d turns: fed %d tokens (%.0f tok/s), generated %d tokens in %.3fs (%.1f tok/s); "
                "the conversation holds %d tokens\n",
                turns, all.n_prompt, all.prefill_s > 0 ? all.n_prompt / all.prefill_s : 0.0,
                all.n_generated, all.decode_s,
                all.decode_s > 0 ? all.n_generated / all.decode_s : 0.0, molt_chat_pos(c));
    free(line);
    molt_chat_free(c);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *tokp = NULL, *weights = NULL, *device = NULL;
    const char *state = NULL; // --state
    const char *pfile = NULL, *kvt = NULL, *matmul = "fp32";
    molt_gen_params gp = molt_gen_defaults();
    gp.seed = (uint64_t)time(NULL);
    long threads = 2, batch = 1, ctx_len = 0;
    bool quiet = false, chat = false, ignore_eos = false;
    const cli_optspec opts[] = {
        CLI_STR("--prompt", "-p", "TEXT", "prompt (default: start from BOS)", prompt),
        CLI_STR_NE("--file", "-f", "FILE",
                   "the prompt is FILE's bytes, as they are (\"-\": standard input)", pfile),
        CLI_FLAG("--chat", "-i",
                 "chat: each line of standard input is a turn; the model's state\n"
                 "carries over, a turn feeds only its new tokens; -n caps each reply",
                 chat),
        CLI_INT_D("--ctx", NULL, "N", "--chat: tokens the conversation may hold", ctx_len, 1,
                  1L << 30, "max_seq; 4096 with attention"),
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
        CLI_MATMUL(matmul),
        CLI_FLAG("--quiet", "-q", "no statistics on stderr", quiet),
        CLI_FLAG("--ignore-eos", NULL,
                 "do not stop at EOS or BOS: always -n tokens (throughput measurements)",
                 ignore_eos),
        CLI_INT("--batch", "-b", "N", "N samples decoded together, sample i with seed S + i", batch,
                1, 4096),
        CLI_CHOICE("--weights", NULL, "f32|bf16|f16|q8_0",
                   "type of the matrices decoding reads (bf16/f16: half the bytes,\n"
                   "q8_0: int8 blocks, about a quarter; an extra copy beside the f32\n"
                   "weights). Default: as stored (q8_0 for a `molt quantize` model)",
                   weights, "f32|bf16|f16|q8_0"),
        CLI_CHOICE("--kv", NULL, "f32|f16",
                   "element type of the attention KV cache: f16 halves the bytes that\n"
                   "decoding at long context reads (keys and values rounded to nearest\n"
                   "even; the attention math stays f32). Default: f32",
                   kvt, "f32|f16"),
        CLI_CHOICE("--state", NULL, "f32|bf16",
                   "type of the Mamba-2 / Llamba recurrent SSM state (bf16: half the\n"
                   "state bytes, f32 arithmetic). Default: f32",
                   state, "f32|bf16"),
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
    if (prompt && pfile)
        return cli_usage_error("generate", "give the prompt with -p or -f, not both");
    if (chat && (prompt || pfile || batch > 1))
        return cli_usage_error("generate", "--chat reads its turns from standard input: no %s",
                               batch > 1 ? "-b" : prompt ? "-p" : "-f");
    if (ctx_len && !chat)
        return cli_usage_error("generate", "--ctx goes with --chat");
    if (ignore_eos && chat)
        return cli_usage_error("generate", "--ignore-eos does not go with --chat");
    gp.stop_at_eos = !ignore_eos;
    char *ptext = NULL;
    if (pfile && !(prompt = ptext = read_prompt_file(pfile)))
        return 1;
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_ctx_set_matmul(ctx, matmul); // a CLI_CHOICE: always valid
    if (!cli_set_device(ctx, device)) {
        molt_ctx_free(ctx);
        free(ptext);
        return 1;
    }
    molt_model *m = cli_load_model(ctx, model, tokp);
    if (!m || (weights && molt_model_set_weight_dtype(ctx, m, weights) != MOLT_OK) ||
        (kvt && molt_model_set_kv_dtype(ctx, m, kvt) != MOLT_OK) ||
        (state && molt_model_set_state_dtype(ctx, m, state) != MOLT_OK)) {
        if (m)
            cli_fail(ctx, model);
        molt_model_free(m);
        molt_ctx_free(ctx);
        free(ptext);
        return 1;
    }
    if (chat) {
        int crc = chat_loop(ctx, m, &gp, ctx_len, quiet);
        molt_model_free(m);
        molt_ctx_free(ctx);
        return crc;
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
    free(ptext);
    return rc;
}
