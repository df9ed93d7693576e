/*
 * cmd_train.c — `molt train MODEL_OR_CONFIG --data FILE... -o DIR [options]`:
 * pretrain (a config.json: random init) or fine-tune (a model) on text or
 * pre-tokenized files, with a progress bar (loss, tokens/s, ETA), held-out
 * evaluation, a JSON log (DIR/log.jsonl), and crash-safe checkpoints
 * (`--resume` continues bit for bit).
 */
#include "cli.h"
#include "jsonout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bar {
    progress p;
    bool     quiet;
    bool     silent; // a rank other than 0 of a data-parallel run
} bar;

static void on_step(const molt_train_report *r, void *user) {
    bar *b = user;
    if (b->silent)
        return;
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
    const char *model = NULL, *tokp = NULL, *device = NULL, *matmul = "fp32";
    cli_list data = {0};
    long threads = 2;
    bool quiet = false, dist = false;
    int rc = EXIT_USAGE;
    cli_dist dd = {0};
    const cli_optspec opts[] = {
        CLI_LIST("--data", NULL, "FILE", "training files (text; or token files with --format "
                                         "u16|i32)",
                 data),
        CLI_STR("--format", NULL, "text|u16|i32", "data file format", o.data_format),
        CLI_STR("--sep", NULL, "STR", "text: document separator (each document starts with BOS)",
                o.sep),
        CLI_STR("--eval-data", NULL, "FILE", "held-out file (default: the last 5% of the data)",
                o.eval_data),
        CLI_STR("--out", "-o", "DIR", "checkpoints, log.jsonl and the final model", o.out_dir),
        CLI_INT("--seq", NULL, "T", "sequence length", o.seq_len, 1, 1L << 20),
        CLI_INT("--batch", NULL, "B", "sequences per step", o.batch, 1, 1L << 16),
        CLI_INT("--accum", NULL, "K", "gradient accumulation", o.accum, 1, 1L << 16),
        CLI_INT_D("--steps", NULL, "N", "optimizer steps", o.steps, 0, 1L << 40, ""),
        CLI_INT_D("--tokens", NULL, "N", "token budget instead of --steps", o.tokens, 0, 1L << 50,
                  ""),
        CLI_FLOAT("--lr", NULL, "X", "peak learning rate", o.lr, 0, 10),
        CLI_FLOAT("--min-lr", NULL, "X", "final learning rate", o.min_lr, 0, 10),
        CLI_STR("--schedule", NULL, "wsd|cosine|constant", "learning-rate schedule", o.schedule),
        CLI_FLOAT("--warmup", NULL, "F", "warmup fraction of the steps", o.warmup_frac, 0, 1),
        CLI_FLOAT("--decay", NULL, "F", "decay fraction of the steps (wsd)", o.decay_frac, 0, 1),
        CLI_FLOAT("--wd", NULL, "X", "weight decay", o.weight_decay, 0, 10),
        CLI_FLOAT("--clip", NULL, "X", "gradient-norm clip", o.clip, 0, 1e9),
        CLI_INT("--eval-every", NULL, "N", "steps between evaluations (0 = never)", o.eval_every,
                0, 1L << 30),
        CLI_INT("--eval-batches", NULL, "N", "batches per evaluation", o.eval_batches, 0,
                1L << 20),
        CLI_INT("--save-every", NULL, "N", "steps between checkpoints", o.save_every, 0,
                1L << 30),
        CLI_STR("--freeze", NULL, "GLOBS",
                "comma-separated parameter-name globs to freeze, e.g. '*.mlp.*'", o.freeze),
        CLI_INT("--seed", NULL, "S", "data order (and init from a config)", o.seed, 0, 1L << 62),
        CLI_FLAG("--resume", NULL, "continue from DIR's latest checkpoint (verified: checksums, "
                                   "settings)",
                 o.resume),
        CLI_FLAG("--overwrite", NULL,
                 "DIR may hold other files (kept) or an earlier run (its files removed)",
                 o.overwrite),
        CLI_INT("--keep-last", NULL, "K", "checkpoints kept in DIR", o.keep_last, 1, 1L << 30),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file", tokp),
        CLI_INT("--threads", NULL, "N", "threads", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_MATMUL(matmul),
        CLI_FLAG("--quiet", "-q", "no progress bar", quiet),
        CLI_DIST(dist),
        CLI_END,
    };
    const cli_cmd cmd = {"train", "MODEL_OR_CONFIG --data FILE [FILE...] -o DIR [options]",
                         "Pretrains (a config.json without weights: random init) or fine-tunes (a "
                         "model), with held-out\nevaluation, DIR/log.jsonl and crash-safe "
                         "checkpoints (--resume continues bit for bit).\n",
                         opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, NULL);
    if (cs != CLI_OK) {
        rc = cli_exit_code(cs);
        goto out;
    }
    if (!model || !o.out_dir || data.n == 0) {
        cli_usage_error("train", !model ? "no MODEL_OR_CONFIG given"
                                 : !o.out_dir ? "no -o DIR given"
                                              : "no --data FILE given");
        goto out;
    }
    o.data = data.v;
    o.n_data = data.n;
    o.input = model;
    rc = 1;
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_ctx_set_matmul(ctx, matmul); // a CLI_CHOICE: always valid
    molt_model *m = NULL;
    size_t ml = strlen(model);
    molt_load_opts lo = {tokp, 0};
    molt_status st = MOLT_ERR_ARG;
    if (!cli_dist_begin(&dd, dist, &device) || !cli_set_device(ctx, device))
        ; // printed
    else if ((st = ml > 5 && !strcmp(model + ml - 5, ".json")
                       ? molt_model_from_config(ctx, model, &lo, o.seed, &m)
                       : molt_model_load(ctx, model, &lo, &m)) != MOLT_OK)
        cli_fail(ctx, NULL);
    molt_model_info mi;
    if (st == MOLT_OK && (molt_model_get_info(m, &mi), !cli_dist_comm(&dd, ctx, mi.n_params,
                                                                      o.batch)))
        st = MOLT_ERR_ARG; // printed
    if (st == MOLT_OK) {
        bar b;
        progress_start(&b.p, "train", "tok");
        b.quiet = quiet;
        b.silent = cli_dist_rank(&dd) != 0;
        b.p.tty &= !b.silent;
        molt_train_report fin;
        if (molt_train(ctx, m, &o, on_step, &b, &fin) != MOLT_OK) {
            if (b.p.tty)
                fprintf(stderr, "\n");
            cli_fail(ctx, NULL);
        } else {
            if (b.p.tty)
                fprintf(stderr, "\n");
            if (b.silent || jo_train_summary(&fin, o.out_dir)) // JSON through cJSON (jsonout.h)
                rc = 0;
            else
                fprintf(stderr, "molt: error: train: out of memory\n");
        }
    }
    molt_model_free(m);
    molt_ctx_free(ctx);
out:
    free(data.v);
    return cli_dist_end(&dd, rc);
}
