/*
 * cmd_train.c — `molt train MODEL_OR_CONFIG --data FILE... -o DIR [options]`:
 * pretrain (a config.json: random init) or fine-tune (a model) on text or
 * pre-tokenized files, with a progress bar (loss, tokens/s, ETA), held-out
 * evaluation, a JSON log (DIR/log.jsonl), and crash-safe checkpoints
 * (`--resume` continues bit for bit).
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE =
    "usage: molt train MODEL_OR_CONFIG --data FILE [FILE...] -o DIR [options]\n"
    "  MODEL_OR_CONFIG     a model (fine-tune) or a config.json without weights (from scratch)\n"
    "  --data FILE...      training files (text; or token files with --format u16|i32)\n"
    "  --format F          text (default), u16, i32\n"
    "  --sep STR           text: document separator (each document starts with BOS)\n"
    "  --eval-data FILE    held-out file (default: the last 5% of the data)\n"
    "  -o, --out DIR       checkpoints, log.jsonl and the final model\n"
    "  --seq T             sequence length (256)       --batch B      sequences per step (8)\n"
    "  --accum K           gradient accumulation (1)   --steps N      optimizer steps\n"
    "  --tokens N          token budget instead of --steps\n"
    "  --lr X (1e-3)  --min-lr X (1e-5)  --schedule wsd|cosine|constant (wsd)\n"
    "  --warmup F (0.1)  --decay F (0.1)  --wd X (0.1)  --clip X (1.0)\n"
    "  --eval-every N (100)  --eval-batches N (8)  --save-every N (200)\n"
    "  --freeze GLOBS      comma-separated parameter-name globs to freeze, e.g. '*.mlp.*'\n"
    "  --seed S            data order (and init from a config)\n"
    "  --resume            continue from DIR's latest checkpoint\n"
    "  --tokenizer F       tokenizer file     --threads N (2)     -q, --quiet\n";

typedef struct bar {
    progress p;
    bool     quiet;
} bar;

static void on_step(const molt_train_report *r, void *user) {
    bar *b = user;
    if (!isnan(r->eval_loss))
        fprintf(stderr, "%sstep %lld/%lld  loss %.4f  eval %.4f  lr %.2e\n", b->p.tty ? "\r\033[K" : "",
                (long long)r->step, (long long)r->total_steps, r->loss, r->eval_loss, r->lr);
    if (b->quiet)
        return;
    if (b->p.tty) {
        double eta = r->step ? r->elapsed_s / (double)r->step * (double)(r->total_steps - r->step) : 0;
        fprintf(stderr, "\rtrain %lld/%lld  loss %.4f  gnorm %.2f  lr %.2e  %.0f tok/s  ETA %.0fs  ",
                (long long)r->step, (long long)r->total_steps, r->loss, r->grad_norm, r->lr,
                r->tok_per_s, eta);
    } else if (r->step % 50 == 0 || r->step == r->total_steps) {
        fprintf(stderr, "step %lld/%lld  loss %.4f  %.0f tok/s\n", (long long)r->step,
                (long long)r->total_steps, r->loss, r->tok_per_s);
    }
}

int cmd_train(int argc, char **argv) {
    molt_train_opts o = molt_train_defaults();
    const char *model = NULL, *tokp = NULL, *v;
    const char **data = calloc((size_t)argc, sizeof *data);
    long threads = 2, lv;
    double dv;
    bool quiet = false, in_data = false;
    int rc = EXIT_USAGE;
#define INT_OPT(name, field, lo, hi)                                                               \
    else if (cli_opt(argc, argv, &i, NULL, name, &v)) {                                             \
        if (!v || !cli_int("train", name, v, lo, hi, &lv))                                          \
            goto out;                                                                              \
        o.field = lv;                                                                              \
    }
#define FLT_OPT(name, field, lo, hi)                                                               \
    else if (cli_opt(argc, argv, &i, NULL, name, &v)) {                                             \
        if (!v || !cli_float("train", name, v, lo, hi, &dv))                                        \
            goto out;                                                                              \
        o.field = dv;                                                                              \
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' && in_data) {
            data[o.n_data++] = a;
            continue;
        }
        in_data = false;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--data")) {
            in_data = true;
        } else if (cli_opt(argc, argv, &i, "-o", "--out", &v)) {
            if (!v) { cli_usage_error("train", "-o needs a directory"); goto out; }
            o.out_dir = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--format", &v)) {
            if (!v) { cli_usage_error("train", "--format needs a value"); goto out; }
            o.data_format = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--sep", &v)) {
            if (!v) { cli_usage_error("train", "--sep needs a value"); goto out; }
            o.sep = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--eval-data", &v)) {
            if (!v) { cli_usage_error("train", "--eval-data needs a file"); goto out; }
            o.eval_data = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--schedule", &v)) {
            if (!v) { cli_usage_error("train", "--schedule needs a value"); goto out; }
            o.schedule = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--freeze", &v)) {
            if (!v) { cli_usage_error("train", "--freeze needs globs"); goto out; }
            o.freeze = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--tokenizer", &v)) {
            if (!v) { cli_usage_error("train", "--tokenizer needs a file"); goto out; }
            tokp = v;
        }
        INT_OPT("--seq", seq_len, 1, 1L << 20)
        INT_OPT("--batch", batch, 1, 1L << 16)
        INT_OPT("--accum", accum, 1, 1L << 16)
        INT_OPT("--steps", steps, 0, 1L << 40)
        INT_OPT("--tokens", tokens, 0, 1L << 50)
        INT_OPT("--eval-every", eval_every, 0, 1L << 30)
        INT_OPT("--eval-batches", eval_batches, 0, 1L << 20)
        INT_OPT("--save-every", save_every, 0, 1L << 30)
        INT_OPT("--seed", seed, 0, 1L << 62)
        FLT_OPT("--lr", lr, 0, 10)
        FLT_OPT("--min-lr", min_lr, 0, 10)
        FLT_OPT("--warmup", warmup_frac, 0, 1)
        FLT_OPT("--decay", decay_frac, 0, 1)
        FLT_OPT("--wd", weight_decay, 0, 10)
        FLT_OPT("--clip", clip, 0, 1e9)
        else if (cli_opt(argc, argv, &i, NULL, "--threads", &v)) {
            if (!v || !cli_int("train", a, v, 1, 256, &threads))
                goto out;
        } else if (!strcmp(a, "--resume")) {
            o.resume = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            cli_usage_error("train", "unknown option %s", a);
            goto out;
        } else if (!model) {
            model = a;
        } else {
            cli_usage_error("train", "unexpected argument \"%s\"", a);
            goto out;
        }
    }
    if (!model || !o.out_dir || o.n_data == 0) {
        cli_usage_error("train", !model ? "no MODEL_OR_CONFIG given"
                                 : !o.out_dir ? "no -o DIR given"
                                              : "no --data FILE given");
        goto out;
    }
    o.data = data;
    rc = 1;
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_model *m = NULL;
    size_t ml = strlen(model);
    molt_load_opts lo = {tokp, 0};
    molt_status st;
    if (ml > 5 && !strcmp(model + ml - 5, ".json"))
        st = molt_model_from_config(ctx, model, &lo, o.seed, &m);
    else
        st = molt_model_load(ctx, model, &lo, &m);
    if (st != MOLT_OK) {
        cli_fail(ctx, NULL);
    } else {
        bar b;
        progress_start(&b.p, "train", "tok");
        b.quiet = quiet;
        molt_train_report fin;
        if (molt_train(ctx, m, &o, on_step, &b, &fin) != MOLT_OK) {
            if (b.p.tty)
                fprintf(stderr, "\n");
            cli_fail(ctx, NULL);
        } else {
            if (b.p.tty)
                fprintf(stderr, "\n");
            printf("{\"steps\": %lld, \"tokens\": %lld, \"loss\": %.6f, \"eval_loss\": %.6f, "
                   "\"tok_per_s\": %.1f, \"seconds\": %.2f, \"out\": \"%s\"}\n",
                   (long long)fin.step, (long long)fin.tokens, fin.loss,
                   isnan(fin.eval_loss) ? -1.0 : fin.eval_loss, fin.tok_per_s, fin.elapsed_s,
                   o.out_dir);
            rc = 0;
        }
    }
    molt_model_free(m);
    molt_ctx_free(ctx);
out:
    free(data);
    return rc;
}
