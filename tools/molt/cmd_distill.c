/*
 * cmd_distill.c — `molt distill TEACHER -o STUDENT_DIR [options]`: MOHAWK
 * (matrix orientation → hidden-state alignment → knowledge distillation) from
 * a Llama teacher into a Llamba student, with a progress bar per stage and a
 * report (table here; report.json, loss_curves.svg, attention_vs_mixer.svg in
 * the output directory). Bad options fail before any work starts.
 */
#include "cli.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: molt distill TEACHER -o STUDENT_DIR [options]\n"
    "  TEACHER              a Llama model (HF directory or llama2.c .bin)\n"
    "  --tokenizer F        tokenizer for a llama2.c teacher\n"
    "  --d-state N          student state size per head (16)\n"
    "  --student-heads N    student heads (default: the teacher's query heads; stage 1 needs that)\n"
    "  --init transfer|random  mixer init: C<-Q, B<-K, x<-V, out<-O (default) or Llamba's\n"
    "  --no-ssm-bias        no in_proj/out_proj biases in the student\n"
    "  --data FILE...       training text (default: sample from the teacher)\n"
    "  --sep STR            text: document separator\n"
    "  --sample-tokens N    teacher tokens to sample when no --data (2000000)\n"
    "  --eval-data FILE     held-out text: teacher vs student loss in the report\n"
    "  --kv-task FILE       key-value retrieval accuracy in the report (--kv-pairs 8, --kv-examples 200)\n"
    "  --kv-data-frac F     make F of the training tokens KV-task documents (prompt + answer)\n"
    "  --seq T (256)  --batch B (8)\n"
    "  --tokens N           total token budget, split 10% / 20% / 70% over the stages\n"
    "  --stage1-tokens N --stage2-tokens N --stage3-tokens N   (1M / 2M / 8M)\n"
    "  --stage3-only        put the whole budget into stage 3 (the baseline)\n"
    "  --lr1 X (1e-3) --lr2 X (1e-3) --lr3 X (5e-4)   peak learning rates (WSD)\n"
    "  --tau X              stage-3 temperature (1)\n"
    "  --freeze-mlp         stage 3 trains only norms and mixers\n"
    "  --seed S  --resume  --threads N (2)  -q\n"
    "\n"
    "usage: molt hybridize TEACHER (--heads L:H,... | --keep K | --keep-frac P | --random-heads K)\n"
    "                     -o DIR [--ranking heads.json] [--freeze-kept] [distill options]\n"
    "  the retrieval-aware hybrid: kept teacher heads stay attention (copied), every other head\n"
    "  is recurrent, then MOHAWK. --keep / --keep-frac take the most important heads of a\n"
    "  ranking written by `molt heads MODEL --json` (--ranking FILE); --random-heads K keeps K\n"
    "  random heads (the control, seeded by --seed).\n";

// "L:H,L:H" → arrays; false (with a message) on bad syntax
static bool parse_heads(const char *s, int32_t *ls, int32_t *hs, int cap, int *n) {
    *n = 0;
    while (*s) {
        char *e;
        long l = strtol(s, &e, 10);
        if (e == s || *e != ':' || *n >= cap)
            return false;
        s = e + 1;
        long h = strtol(s, &e, 10);
        if (e == s || l < 0 || h < 0 || l > 1 << 20 || h > 1 << 20)
            return false;
        ls[*n] = (int32_t)l;
        hs[*n] = (int32_t)h;
        (*n)++;
        s = e;
        if (*s == ',')
            s++;
        else if (*s)
            return false;
    }
    return *n > 0;
}

// the first k entries of a `molt heads --json` ranking
static bool read_ranking(const char *path, int k, int32_t *ls, int32_t *hs, int *n_out,
                         int *n_total) {
    size_t len;
    char *txt = cli_read_file(path, &len);
    if (!txt)
        return false;
    cJSON *a = cJSON_ParseWithLength(txt, len);
    free(txt);
    if (!cJSON_IsArray(a)) {
        fprintf(stderr, "molt: error: %s: not a JSON list of heads (from `molt heads --json`)\n",
                path);
        cJSON_Delete(a);
        return false;
    }
    *n_total = cJSON_GetArraySize(a);
    int n = 0;
    for (int i = 0; i < *n_total && n < k; i++) {
        const cJSON *o = cJSON_GetArrayItem(a, i);
        const cJSON *l = cJSON_GetObjectItem(o, "layer"), *h = cJSON_GetObjectItem(o, "head");
        if (!cJSON_IsNumber(l) || !cJSON_IsNumber(h)) {
            fprintf(stderr, "molt: error: %s: entry %d lacks \"layer\"/\"head\"\n", path, i);
            cJSON_Delete(a);
            return false;
        }
        ls[n] = (int32_t)l->valuedouble;
        hs[n] = (int32_t)h->valuedouble;
        n++;
    }
    cJSON_Delete(a);
    *n_out = n;
    return true;
}

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
    bool hybridize = !strcmp(argv[0], "hybridize");
    const char *heads_arg = NULL, *ranking = NULL;
    long keep = -1, random_heads = -1;
    double keep_frac = -1;
    enum { MAX_KEEP = 4096 };
    int32_t *kl = calloc(MAX_KEEP, sizeof(int32_t)), *kh = calloc(MAX_KEEP, sizeof(int32_t));
    int n_keep = 0;
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
        } else if (cli_opt(argc, argv, &i, NULL, "--heads", &v)) {
            if (!v) { cli_usage_error(argv[0], "--heads needs L:H,..."); goto out; }
            heads_arg = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--ranking", &v)) {
            if (!v) { cli_usage_error(argv[0], "--ranking needs a file"); goto out; }
            ranking = v;
        }
        I_OPT("--keep", keep, 0, 1L << 20)
        I_OPT("--random-heads", random_heads, 0, 1L << 20)
        F_OPT("--keep-frac", keep_frac, 0, 1)
        else if (!strcmp(a, "--freeze-kept")) {
            o.freeze_kept = 1;
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
        I_OPT("--student-heads", o.n_heads, 1, 4096)
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
        F_OPT("--kv-data-frac", o.kv_data_frac, 0, 0.99)
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
    int plans = (heads_arg != NULL) + (keep >= 0) + (keep_frac >= 0) + (random_heads >= 0);
    if (hybridize && plans != 1) {
        cli_usage_error("hybridize", "give exactly one of --heads, --keep, --keep-frac, --random-heads");
        goto out;
    }
    if (!hybridize && plans) {
        cli_usage_error("distill", "head plans belong to `molt hybridize`");
        goto out;
    }
    if (heads_arg && !parse_heads(heads_arg, kl, kh, MAX_KEEP, &n_keep)) {
        cli_usage_error("hybridize", "--heads expects LAYER:HEAD pairs like 3:1,4:0 (got \"%s\")",
                        heads_arg);
        goto out;
    }
    if ((keep >= 0 || keep_frac >= 0) && !ranking) {
        cli_usage_error("hybridize", "--keep / --keep-frac need --ranking FILE (from `molt heads "
                                     "TEACHER --json > FILE`)");
        goto out;
    }
    o.data = o.n_data ? data : NULL;
    rc = 1;
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    molt_model *t = cli_load_model(ctx, teacher, tokp);
    if (t) {
        molt_model_info ti;
        molt_model_get_info(t, &ti);
        int all_heads = ti.n_layer * ti.n_head, n_ranked = 0;
        if (keep_frac >= 0)
            keep = (long)lround(keep_frac * all_heads);
        if (keep > all_heads) {
            fprintf(stderr, "molt: error: --keep %ld, but the teacher has only %d heads\n", keep,
                    all_heads);
            t = (molt_model_free(t), NULL);
        } else if (keep >= 0 && !read_ranking(ranking, (int)keep, kl, kh, &n_keep, &n_ranked)) {
            t = (molt_model_free(t), NULL);
        } else if (keep >= 0 && n_keep < keep) {
            fprintf(stderr, "molt: error: %s ranks %d heads, fewer than --keep %ld\n", ranking,
                    n_ranked, keep);
            t = (molt_model_free(t), NULL);
        } else if (random_heads > all_heads) {
            fprintf(stderr, "molt: error: --random-heads %ld, but the teacher has only %d heads\n",
                    random_heads, all_heads);
            t = (molt_model_free(t), NULL);
        } else if (random_heads >= 0) { // seeded partial shuffle of all (layer, head) pairs
            int *perm = malloc(sizeof(int) * (size_t)all_heads);
            uint64_t r = o.seed * 0x9E3779B97F4A7C15ull + 17;
            for (int k = 0; k < all_heads; k++)
                perm[k] = k;
            for (int k = 0; k < random_heads; k++) {
                r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                int j = k + (int)(r % (uint64_t)(all_heads - k)), tmp = perm[k];
                perm[k] = perm[j], perm[j] = tmp;
                kl[k] = perm[k] / ti.n_head;
                kh[k] = perm[k] % ti.n_head;
            }
            n_keep = (int)random_heads;
            free(perm);
        }
        o.keep_layer = kl;
        o.keep_head = kh;
        o.n_keep = n_keep;
    }
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
    free(kl);
    free(kh);
    free(data);
    return rc;
}
