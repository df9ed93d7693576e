/*
 * cmd_distill.c — `molt distill TEACHER -o STUDENT_DIR [options]`: MOHAWK
 * (matrix orientation → hidden-state alignment → knowledge distillation) from
 * a Llama teacher into a Llamba, Mamba-2, Mamba-3 or GateLoop student (--student), with a
 * progress bar per stage and a report (table here; report.json, loss_curves.svg,
 * timeline.svg, attention_vs_mixer.svg in the output directory). Bad options fail before any
 * work starts.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *ABOUT_DISTILL =
    "  MOHAWK from a Llama teacher (HF directory or llama2.c .bin) into a Llamba student (or\n"
    "  --student mamba2 | mamba3 | mamba3-mimo | gateloop): matrix orientation, hidden-state\n"
    "  alignment, knowledge distillation; the report goes to stdout and to\n"
    "  STUDENT_DIR/report.json, loss_curves.svg, timeline.svg (tokens/s and GPU memory over\n"
    "  each stage) and attention_vs_mixer.svg.\n";
static const char *ABOUT_HYBRID =
    "  The retrieval-aware hybrid: kept teacher heads stay attention (copied), every other head\n"
    "  is recurrent, then MOHAWK. --keep / --keep-frac take the most important heads of a\n"
    "  ranking written by `molt heads MODEL --json` (--ranking FILE); --random-heads K keeps K\n"
    "  random heads (the control, seeded by --seed).\n";

typedef struct bar {
    progress p;
    int      stage;
    bool     quiet;
    bool     silent; // a rank other than 0 of a data-parallel run
} bar;

static void on_step(const molt_distill_report *r, void *user) {
    bar *b = user;
    if (b->silent)
        return;
    if (r->stage != b->stage) {
        if (b->p.tty && b->stage > 0)
            fprintf(stderr, "\n");
        b->stage = r->stage;
        if (r->stage == 0)
            fprintf(stderr, "sampling training text from the teacher...\n");
    }
    if (b->quiet || r->stage == 0)
        return;
    double eta = r->step ? r->elapsed_s / (double)r->step * (double)(r->total_steps - r->step) : 0;
    char mem[32] = "";
    if (r->device_gb > 0)
        snprintf(mem, sizeof mem, "  GPU %.1f GB", r->device_gb);
    if (b->p.tty)
        fprintf(stderr, "\rstage %d  %lld/%lld  loss %.4f  %.0f tok/s%s  ETA %.0fs   ", r->stage,
                (long long)r->step, (long long)r->total_steps, r->loss, r->tok_per_s, mem, eta);
    else if (r->step % 100 == 0 || r->step == r->total_steps)
        fprintf(stderr, "stage %d  %lld/%lld  loss %.4f  %.0f tok/s%s\n", r->stage,
                (long long)r->step, (long long)r->total_steps, r->loss, r->tok_per_s, mem);
}

int cmd_distill(int argc, char **argv) {
    molt_distill_opts o = molt_distill_defaults();
    molt_heads_plan_opts po = molt_heads_plan_defaults();
    const char *teacher = NULL, *tokp = NULL, *device = NULL, *matmul = "fp32";
    cli_list data = {0};
    long threads = 2, total = -1;
    bool quiet = false, stage3_only = false, no_ssm_bias = false, dist = false;
    cli_dist dd = {0};
    bool hybridize = !strcmp(argv[0], "hybridize");
    int32_t *kl = NULL, *kh = NULL;
    int rc = EXIT_USAGE;
    const cli_optspec opts[] = {
        CLI_STR("--tokenizer", NULL, "F", "tokenizer for a llama2.c teacher", tokp),
        CLI_STR("--out", "-o", "DIR", "the student, checkpoints and the report", o.out_dir),
        CLI_INT("--d-state", NULL, "N", "student state size per head", o.d_state, 1, 4096),
        CLI_INT_D("--student-heads", NULL, "N", "student heads", o.n_heads, 1, 4096,
                  "the teacher's query heads, as stage 1 needs"),
        CLI_CHOICE("--init", NULL, "transfer|random",
                   "mixer init: C<-Q, B<-K, x<-V, out<-O (transfer) or Llamba's", o.init,
                   "transfer|random"),
        CLI_FLAG("--no-ssm-bias", NULL, "no in_proj/out_proj biases in the student", no_ssm_bias),
        CLI_CHOICE("--student", NULL, "llamba|mamba2|mamba3|mamba3-mimo|gateloop",
                   "the student's mixer: Llamba (DiscreteMamba2), Mamba-2, Mamba-3 SISO or\n"
                   "MIMO, or"
                   "GateLoop (no --d-state); in hybrids, the mixer beside the kept heads",
                   o.student, "llamba|mamba2|mamba3|mamba3-mimo|gateloop"),
        CLI_INT("--mimo-rank", NULL, "R", "mamba3-mimo: the MIMO rank", o.mimo_rank, 1, 16),
        CLI_LIST("--data", NULL, "FILE", "training text (default: sample from the teacher)", data),
        CLI_STR("--sep", NULL, "STR", "text: document separator", o.sep),
        CLI_INT("--sample-tokens", NULL, "N", "teacher tokens to sample when no --data",
                o.sample_tokens, 1000, 1L << 40),
        CLI_STR("--eval-data", NULL, "FILE", "held-out text: teacher vs student loss in the report",
                o.eval_data),
        CLI_STR("--kv-task", NULL, "FILE", "key-value retrieval accuracy in the report",
                o.kv_task),
        CLI_INT("--kv-pairs", NULL, "N", "pairs per KV prompt", o.kv_pairs, 1, 100000),
        CLI_INT("--kv-examples", NULL, "N", "KV prompts", o.kv_examples, 1, 1L << 24),
        CLI_FLOAT("--kv-data-frac", NULL, "F",
                  "make F of the training tokens KV-task documents (prompt + answer)",
                  o.kv_data_frac, 0, 0.99),
        CLI_INT("--seq", NULL, "T", "sequence length", o.seq_len, 2, 1L << 20),
        CLI_INT("--batch", NULL, "B", "sequences per step", o.batch, 1, 1L << 16),
        CLI_INT_D("--tokens", NULL, "N", "total token budget, split 10% / 20% / 70% over the "
                                         "stages",
                  total, 0, 1L << 50, ""),
        CLI_INT("--stage1-tokens", NULL, "N", "stage 1 tokens", o.stage_tokens[0], 0, 1L << 50),
        CLI_INT("--stage2-tokens", NULL, "N", "stage 2 tokens", o.stage_tokens[1], 0, 1L << 50),
        CLI_INT("--stage3-tokens", NULL, "N", "stage 3 tokens", o.stage_tokens[2], 0, 1L << 50),
        CLI_FLAG("--stage3-only", NULL, "put the whole budget into stage 3 (the baseline)",
                 stage3_only),
        CLI_FLOAT("--lr1", NULL, "X", "stage 1 peak learning rate (WSD)", o.stage_lr[0], 0, 10),
        CLI_FLOAT("--lr2", NULL, "X", "stage 2 peak learning rate", o.stage_lr[1], 0, 10),
        CLI_FLOAT("--lr3", NULL, "X", "stage 3 peak learning rate", o.stage_lr[2], 0, 10),
        CLI_FLOAT("--warmup", NULL, "F", "warmup fraction of each stage's steps (WSD)",
                  o.warmup_frac, 0, 1),
        CLI_FLOAT("--decay", NULL, "F", "decay fraction of each stage's steps (WSD)",
                  o.decay_frac, 0, 1),
        CLI_FLOAT("--tau", NULL, "X", "stage 3 temperature", o.tau, 0, 100),
        CLI_CHOICE("--kd-loss", NULL, "fkl|rkl",
                   "stage 3 loss: forward KL (MOHAWK's soft CE) or reverse KL(student||teacher)",
                   o.kd_loss, "fkl|rkl"),
        CLI_FLAG("--freeze-mlp", NULL, "stage 3 trains only norms and mixers", o.freeze_mlp),
        CLI_INT("--save-every", NULL, "N", "steps between checkpoints (0: only at a stage's end)",
                o.save_every, 0, 1L << 30),
        CLI_FLAG("--recompute", NULL,
                 "recompute the student's blocks in the backward (less memory, same results)",
                 o.recompute),
        CLI_INT("--seed", NULL, "S", "init, data order (and --random-heads)", o.seed, 0, 1L << 62),
        CLI_FLAG("--resume", NULL, "skip finished stages, continue the current one (verified)",
                 o.resume),
        CLI_FLAG("--overwrite", NULL,
                 "DIR may hold other files (kept) or an earlier run (its files removed)",
                 o.overwrite),
        CLI_INT("--threads", NULL, "N", "threads", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_MATMUL(matmul),
        CLI_FLAG("--quiet", "-q", "no progress bar", quiet),
        CLI_DIST(dist),
        // the head plan of `molt hybridize`
        CLI_STR("--heads", NULL, "L:H,...", "hybridize: keep these teacher heads (0-based)",
                po.heads),
        CLI_INT_D("--keep", NULL, "K", "hybridize: keep the top K heads of --ranking", po.keep, 0,
                  1L << 20, ""),
        CLI_ROW("--keep-frac", NULL, "P", "hybridize: keep the top fraction P of all heads",
                CLI_KFLOAT, po.keep_frac, 0, 1, NULL, "", 0),
        CLI_INT_D("--random-heads", NULL, "K", "hybridize: keep K random heads (the control)",
                  po.random_heads, 0, 1L << 20, ""),
        CLI_STR("--ranking", NULL, "FILE", "hybridize: a ranking from `molt heads TEACHER --json`",
                po.ranking),
        CLI_FLAG("--freeze-kept", NULL, "hybridize: do not train the kept attention heads",
                 o.freeze_kept),
        CLI_END,
    };
    cli_cmd cmd = {"distill", "TEACHER -o STUDENT_DIR [options]", ABOUT_DISTILL, opts, NULL};
    if (hybridize)
        cmd = (cli_cmd){"hybridize",
                        "TEACHER (--heads L:H,... | --keep K | --keep-frac P | --random-heads K)\n"
                        "                      -o DIR [--ranking heads.json] [--freeze-kept] "
                        "[options]",
                        ABOUT_HYBRID, opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &teacher, 1, NULL, NULL);
    if (cs != CLI_OK) {
        rc = cli_exit_code(cs);
        goto out;
    }
    if (!teacher || !o.out_dir) {
        cli_usage_error(cmd.name, teacher ? "no -o STUDENT_DIR given" : "no TEACHER given");
        goto out;
    }
    o.ssm_bias = !no_ssm_bias;
    if (total >= 0) { // one budget, split over the stages
        o.stage_tokens[0] = total / 10;
        o.stage_tokens[1] = total / 5;
        o.stage_tokens[2] = total - o.stage_tokens[0] - o.stage_tokens[1];
    }
    if (stage3_only) {
        o.stage_tokens[2] += o.stage_tokens[0] + o.stage_tokens[1];
        o.stage_tokens[0] = o.stage_tokens[1] = 0;
    }
    po.seed = o.seed;
    bool plan = po.heads || po.keep >= 0 || po.keep_frac >= 0 || po.random_heads >= 0;
    if (!hybridize && plan) {
        cli_usage_error("distill", "head plans belong to `molt hybridize`");
        goto out;
    }
    molt_ctx *ctx = molt_ctx_new();
    int32_t n_keep = 0;
    if (hybridize && molt_heads_plan(ctx, NULL, &po, &kl, &kh, &n_keep) != MOLT_OK) {
        cli_usage_error("hybridize", "%s", molt_last_error(ctx));
        molt_ctx_free(ctx);
        goto out;
    }
    o.data = data.n ? data.v : NULL;
    o.n_data = data.n;
    o.input = teacher;
    rc = 1;
    molt_ctx_set_threads(ctx, (int)threads);
    molt_ctx_set_matmul(ctx, matmul); // a CLI_CHOICE: always valid
    molt_model *t = cli_dist_begin(&dd, dist, &device) && cli_set_device(ctx, device)
                        ? cli_load_model(ctx, teacher, tokp)
                        : NULL;
    molt_model_info ti;
    if (t && (molt_model_get_info(t, &ti), !cli_dist_comm(&dd, ctx, ti.n_params, o.batch)))
        t = (molt_model_free(t), NULL); // (per rank: the student's memory, about the teacher's)
    if (t && hybridize && molt_heads_plan(ctx, t, &po, &kl, &kh, &n_keep) != MOLT_OK) {
        cli_fail(ctx, NULL);
        t = (molt_model_free(t), NULL);
    }
    o.keep_layer = kl;
    o.keep_head = kh;
    o.n_keep = n_keep;
    if (t) {
        bar b = {{0}, -1, quiet, cli_dist_rank(&dd) != 0};
        progress_start(&b.p, "distill", "tok");
        b.p.tty &= !b.silent;
        molt_status st = molt_distill(ctx, t, &o, on_step, &b);
        if (b.p.tty)
            fprintf(stderr, "\n");
        if (st != MOLT_OK) {
            cli_fail(ctx, NULL);
        } else if (b.silent) {
            rc = 0;
        } else {
            char path[4096];
            snprintf(path, sizeof path, "%s/report.txt", o.out_dir);
            size_t len;
            char *rep = cli_read_file(path, &len);
            if (rep) {
                fputs(rep, stdout);
                free(rep);
            }
            printf("report: %s/report.json, %s/loss_curves.svg, %s/timeline.svg, "
                   "%s/attention_vs_mixer.svg\n",
                   o.out_dir, o.out_dir, o.out_dir, o.out_dir);
            rc = 0;
        }
    }
    molt_model_free(t);
    molt_ctx_free(ctx);
out:
    molt_free(kl);
    molt_free(kh);
    free(data.v);
    return cli_dist_end(&dd, rc);
}
