/*
 * cmd_distill.c — `molt distill TEACHER -o STUDENT_DIR [options]`: MOHAWK
 * (matrix orientation → hidden-state alignment → knowledge distillation) from
 * a Llama teacher into a Llamba student, with a progress bar per stage and a
 * report (table here; report.json, loss_curves.svg, attention_vs_mixer.svg in
 * the output directory). Bad options fail before any work starts.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: molt distill TEACHER -o STUDENT_DIR [options]\n"
    "  TEACHER              a Llama model (HF directory or llama2.c .bin)\n"
    "  --tokenizer F        tokenizer for a llama2.c teacher\n"
    "  --d-state N          student state size per head (16)\n"
    "  --heads N            student heads (default: the teacher's query heads; stage 1 needs that)\n"
    "  --init transfer|random  mixer init: C<-Q, B<-K, x<-V, out<-O (default) or Llamba's\n"
    "  --no-ssm-bias        no in_proj/out_proj biases in the student\n"
    "  --data FILE...       training text (default: sample from the teacher)\n"
    "  --sep STR            text: document separator\n"
    "  --sample-tokens N    teacher tokens to sample when no --data (2000000)\n"
    "  --eval-data FILE     held-out text: teacher vs student loss in the report\n"
    "  --kv-task FILE       key-value retrieval accuracy in the report (--kv-pairs 8, --kv-examples 200)\n"
    "  --seq T (256)  --batch B (8)\n"
    "  --tokens N           total token budget, split 10% / 20% / 70% over the stages\n"
    "  --stage1-tokens N --stage2-tokens N --stage3-tokens N   (1M / 2M / 8M)\n"
    "  --stage3-only        put the whole budget into stage 3 (the baseline)\n"
    "  --lr1 X (1e-3) --lr2 X (1e-3) --lr3 X (5e-4)   peak learning rates (WSD)\n"
    "  --tau X              stage-3 temperature (1)\n"
    "  --freeze-mlp         stage 3 trains only norms and mixers\n"
    "  --seed S  --resume  --threads N (2)  -q\n";

typedef struct bar {
    progress p;
    int      stage;
    bool     quiet;
} bar;

static void on_step(const molt_distill_report *r, void *user) {
    bar *b = user;
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
    if (b->p.tty)
        fprintf(stderr, "\rstage %d  %lld/%lld  loss %.4f  %.0f tok/s  ETA %.0fs   ", r->stage,
                (long long)r->step, (long long)r->total_steps, r->loss, r->tok_per_s, eta);
    else if (r->step % 100 == 0 || r->step == r->total_steps)
        fprintf(stderr, "stage %d  %lld/%lld  loss %.4f  %.0f tok/s\n", r->stage,
                (long long)r->step, (long long)r->total_steps, r->loss, r->tok_per_s);
}

int cmd_distill(int argc, char **argv) {
    molt_distill_opts o = molt_distill_defaults();
    const char *teacher = NULL, *tokp = NULL, *v;
    const char **data = calloc((size_t)argc, sizeof *data);
    long threads = 2, lv, total = -1;
    double dv;
    bool quiet = false, in_data = false, stage3_only = false;
    int rc = EXIT_USAGE;
#define I_OPT(name, dst, lo, hi)                                                                   \
    else if (cli_opt(argc, argv, &i, NULL, name, &v)) {                                             \
        if (!v || !cli_int("distill", name, v, lo, hi, &lv))                                        \
            goto out;                                                                              \
        dst = lv;                                                                                  \
    }
#define F_OPT(name, dst, lo, hi)                                                                   \
    else if (cli_opt(argc, argv, &i, NULL, name, &v)) {                                             \
        if (!v || !cli_float("distill", name, v, lo, hi, &dv))                                      \
            goto out;                                                                              \
        dst = dv;                                                                                  \
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
            if (!v) { cli_usage_error("distill", "-o needs a directory"); goto out; }
            o.out_dir = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--tokenizer", &v)) {
            if (!v) { cli_usage_error("distill", "--tokenizer needs a file"); goto out; }
            tokp = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--init", &v)) {
            if (!v || (strcmp(v, "transfer") && strcmp(v, "random"))) {
                cli_usage_error("distill", "--init must be transfer or random");
                goto out;
            }
            o.init = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--sep", &v)) {
            if (!v) { cli_usage_error("distill", "--sep needs a value"); goto out; }
            o.sep = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--kv-task", &v)) {
            if (!v) { cli_usage_error("distill", "--kv-task needs a file"); goto out; }
            o.kv_task = v;
        }
        I_OPT("--kv-pairs", o.kv_pairs, 1, 100000)
        I_OPT("--kv-examples", o.kv_examples, 1, 1L << 24)
        else if (cli_opt(argc, argv, &i, NULL, "--eval-data", &v)) {
            if (!v) { cli_usage_error("distill", "--eval-data needs a file"); goto out; }
            o.eval_data = v;
        }
        I_OPT("--d-state", o.d_state, 1, 4096)
        I_OPT("--heads", o.n_heads, 1, 4096)
        I_OPT("--sample-tokens", o.sample_tokens, 1000, 1L << 40)
        I_OPT("--seq", o.seq_len, 2, 1L << 20)
        I_OPT("--batch", o.batch, 1, 1L << 16)
        I_OPT("--tokens", total, 0, 1L << 50)
        I_OPT("--stage1-tokens", o.stage_tokens[0], 0, 1L << 50)
        I_OPT("--stage2-tokens", o.stage_tokens[1], 0, 1L << 50)
        I_OPT("--stage3-tokens", o.stage_tokens[2], 0, 1L << 50)
        I_OPT("--seed", o.seed, 0, 1L << 62)
        F_OPT("--lr1", o.stage_lr[0], 0, 10)
        F_OPT("--lr2", o.stage_lr[1], 0, 10)
        F_OPT("--lr3", o.stage_lr[2], 0, 10)
        F_OPT("--tau", o.tau, 0, 100)
        else if (cli_opt(argc, argv, &i, NULL, "--threads", &v)) {
            if (!v || !cli_int("distill", a, v, 1, 256, &threads))
                goto out;
        } else if (!strcmp(a, "--no-ssm-bias")) {
            o.ssm_bias = 0;
        } else if (!strcmp(a, "--stage3-only")) {
            stage3_only = true;
        } else if (!strcmp(a, "--freeze-mlp")) {
            o.freeze_mlp = 1;
        } else if (!strcmp(a, "--resume")) {
            o.resume = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            cli_usage_error("distill", "unknown option %s", a);
            goto out;
        } else if (!teacher) {
            teacher = a;
        } else {
            cli_usage_error("distill", "unexpected argument \"%s\"", a);
            goto out;
        }
    }
    if (!teacher || !o.out_dir) {
        cli_usage_error("distill", teacher ? "no -o STUDENT_DIR given" : "no TEACHER given");
        goto out;
    }
    if (total >= 0) { // one budget, split over the stages
        o.stage_tokens[0] = total / 10;
        o.stage_tokens[1] = total / 5;
        o.stage_tokens[2] = total - o.stage_tokens[0] - o.stage_tokens[1];
    }
    if (stage3_only) {
        o.stage_tokens[2] += o.stage_tokens[0] + o.stage_tokens[1];
        o.stage_tokens[0] = o.stage_tokens[1] = 0;
    }
    o.data = o.n_data ? data : NULL;
    rc = 1;
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_model *t = cli_load_model(ctx, teacher, tokp);
    if (t) {
        bar b = {{0}, -1, quiet};
        progress_start(&b.p, "distill", "tok");
        molt_status st = molt_distill(ctx, t, &o, on_step, &b);
        if (b.p.tty)
            fprintf(stderr, "\n");
        if (st != MOLT_OK) {
            cli_fail(ctx, NULL);
        } else {
            char path[4096];
            snprintf(path, sizeof path, "%s/report.txt", o.out_dir);
            size_t len;
            char *rep = cli_read_file(path, &len);
            if (rep) {
                fputs(rep, stdout);
                free(rep);
            }
            printf("report: %s/report.json, %s/loss_curves.svg, %s/attention_vs_mixer.svg\n",
                   o.out_dir, o.out_dir, o.out_dir);
            rc = 0;
        }
    }
    molt_model_free(t);
    molt_ctx_free(ctx);
out:
    free(data);
    return rc;
}
