/*
 * cmd_reason.c — `molt reason MODEL --data FILE -k K [--budget SECONDS] ...`:
 * many sampled chains of thought per problem (issue 17, ALGORITHMS.md §10), and
 * `molt mathgen` (the arithmetic task molt can learn).
 *
 * reason: per problem, the prompt is prefilled once and forked into K chains
 * decoded as one batch (molt_chains); batch b samples chain j with seed
 * SEED + b·K + j, so a problem's sample i always has seed SEED + i. Without
 * --budget one batch is drawn; with --budget S batches are drawn for each
 * problem until S seconds of that problem have passed (at least one). Per
 * problem: the majority-vote answer (molt_majority_vote), c correct of n
 * samples, pass@K by the unbiased estimator, tokens and seconds. Overall:
 * voted accuracy, coverage pass@K, single-sample accuracy (mean of c/n),
 * pass@k for k = 1, 2, 4, … ≤ the fewest samples of a problem, and (with
 * --budget) a curve: after b batches (min(b, batches drawn) per problem) the
 * mean seconds, mean samples, voted accuracy and coverage (≥ 1 correct).
 * stdout: a table for people (stderr with --json -); --json FILE: everything as JSON;
 * stderr: progress.
 */
#include "cli.h"
#include "jsonout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define MAX_SAMPLES (1 << 20) // per problem, whatever the budget

// one problem's samples and the running totals after each batch
typedef struct prob_run {
    molt_answer *ans;       // [n]
    int32_t      n, cap, correct, batches;
    int64_t      tokens;
    double       seconds;
    double      *b_sec;     // [batches] seconds after batch b
    int         *b_vote;    // [batches] voted answer right after batch b
    int         *b_cover;   // [batches] ≥ 1 right after batch b
    int32_t      vote;      // index of the voted sample (-1: none)
} prob_run;

static void run_free(prob_run *r) {
    free(r->ans);
    free(r->b_sec);
    free(r->b_vote);
    free(r->b_cover);
}

static bool run_grow(prob_run *r, int32_t k) {
    if (r->n + k > r->cap) {
        int32_t cap = (r->n + k) * 2;
        void   *a = realloc(r->ans, sizeof(molt_answer) * (size_t)cap);
        if (!a)
            return false;
        r->ans = a, r->cap = cap;
    }
    int32_t b = r->batches + 1;
    void   *s = realloc(r->b_sec, sizeof(double) * (size_t)b);
    if (s)
        r->b_sec = s;
    void *v = realloc(r->b_vote, sizeof(int) * (size_t)b);
    if (v)
        r->b_vote = v;
    void *c = realloc(r->b_cover, sizeof(int) * (size_t)b);
    if (c)
        r->b_cover = c;
    return s && v && c;
}

typedef struct reason_opts {
    const char *model, *data, *tokp, *device, *weights, *format, *json;
    long        k, max_tokens, threads, limit, seed, top_k;
    double      budget, temp, top_p;
    bool        quiet, texts;
} reason_opts;

// "Question: Q\nAnswer:" (stops: a blank line, the next "Question:") or "Q\n" (a blank line)
static char *make_prompt(const char *fmt, const char *q) {
    size_t n = strlen(q) + 32;
    char  *p = malloc(n);
    if (p)
        snprintf(p, n, !strcmp(fmt, "plain") ? "%s\n" : "Question: %s\nAnswer:", q);
    return p;
}

static void progress_line(bool tty, int done, int total, int64_t tokens, double t0) {
    if (!tty)
        return;
    double el = now_s() - t0, rate = el > 0 ? (double)tokens / el : 0;
    double eta = done > 0 ? el / done * (total - done) : 0;
    char   bar[31];
    int    fill = total > 0 ? 30 * done / total : 0;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\rreason [%s] %d/%d problems  %lld tok  %.1f tok/s  ETA %.0fs   ", bar, done,
            total, (long long)tokens, rate, eta);
    fflush(stderr);
}

// mean over problems of f(run after min(b, batches) batches); b ≥ 1
static void curve_point(const prob_run *r, int np, int b, int32_t k, double *sec, double *samples,
                        double *vote, double *cover) {
    *sec = *samples = *vote = *cover = 0;
    for (int i = 0; i < np; i++) {
        int bb = (b < r[i].batches ? b : r[i].batches) - 1;
        *sec += r[i].b_sec[bb];
        *samples += (double)(bb + 1) * k;
        *vote += r[i].b_vote[bb];
        *cover += r[i].b_cover[bb];
    }
    *sec /= np, *samples /= np, *vote /= np, *cover /= np;
}

static int reason_run(const reason_opts *o) {
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)o->threads);
    molt_problem *pb = NULL;
    int32_t       n_all = 0, np = 0;
    prob_run     *run = NULL;
    char        **texts = NULL;
    int32_t      *toks = NULL;
    cJSON        *jprobs = NULL;
    int           rc = 1, k = (int)o->k;
    FILE         *tab = o->json && !strcmp(o->json, "-") ? stderr : stdout; // the table
    molt_model   *m =
        cli_set_device(ctx, o->device) ? cli_load_model(ctx, o->model, o->tokp) : NULL;
    if (!m)
        goto out;
    if (o->weights && molt_model_set_weight_dtype(ctx, m, o->weights) != MOLT_OK) {
        cli_fail(ctx, o->model);
        goto out;
    }
    if (molt_problems_load(ctx, o->data, &pb, &n_all) != MOLT_OK) {
        cli_fail(ctx, o->data);
        goto out;
    }
    np = o->limit > 0 && o->limit < n_all ? (int32_t)o->limit : n_all;
    run = calloc((size_t)np, sizeof *run);
    texts = calloc((size_t)k, sizeof *texts);
    toks = calloc((size_t)k, sizeof *toks);
    jprobs = o->json ? cJSON_CreateArray() : NULL;
    if (!run || !texts || !toks || (o->json && !jprobs)) {
        fprintf(stderr, "molt: error: out of memory\n");
        goto out;
    }
    const char *plain_stop[] = {"\n\n"}, *qa_stop[] = {"\n\n", "Question:"};
    bool        plain = !strcmp(o->format, "plain");
    const char *const *stop = plain ? plain_stop : qa_stop;
    int32_t      n_stop = plain ? 1 : 2;
    molt_gen_params gp = molt_gen_defaults();
    gp.temperature = (float)o->temp, gp.top_p = (float)o->top_p, gp.top_k = (int32_t)o->top_k;
    bool    tty = !o->quiet && isatty(2);
    double  t_all = now_s();
    int64_t tok_all = 0;
    fprintf(tab, "%-5s %-12s %-12s %6s %11s %8s %8s %8s\n", "#", "answer", "voted", "votes",
            "correct/n", "pass@k", "tokens", "seconds");
    for (int i = 0; i < np; i++) {
        prob_run *r = &run[i];
        r->vote = -1;
        char        *prompt = make_prompt(o->format, pb[i].question);
        molt_chains *ch = NULL;
        double       t0 = now_s();
        if (!prompt) {
            fprintf(stderr, "molt: error: out of memory\n");
            goto out;
        }
        molt_status st = molt_chains_new(ctx, m, prompt, k, (int32_t)o->max_tokens, &ch);
        free(prompt);
        if (st != MOLT_OK) {
            if (tty)
                fprintf(stderr, "\r\033[K");
            fprintf(stderr, "molt: error: problem %d: %s\n", i, molt_last_error(ctx));
            goto out;
        }
        cJSON *jtexts = o->json && o->texts ? cJSON_CreateArray() : NULL;
        do {
            if (!run_grow(r, k)) {
                fprintf(stderr, "molt: error: out of memory\n");
                molt_chains_free(ch);
                cJSON_Delete(jtexts);
                goto out;
            }
            gp.seed = (uint64_t)o->seed + (uint64_t)r->n;
            if (molt_chains_draw(ctx, ch, &gp, stop, n_stop, texts, toks) != MOLT_OK) {
                fprintf(stderr, "molt: error: problem %d: %s\n", i, molt_last_error(ctx));
                molt_chains_free(ch);
                cJSON_Delete(jtexts);
                goto out;
            }
            for (int j = 0; j < k; j++) {
                molt_answer *a = &r->ans[r->n + j];
                molt_answer_extract(texts[j], strlen(texts[j]), a);
                r->correct += molt_answer_equal(a, &pb[i].answer);
                r->tokens += toks[j];
                tok_all += toks[j];
                if (jtexts)
                    cJSON_AddItemToArray(jtexts, cJSON_CreateString(texts[j]));
                molt_free(texts[j]);
                texts[j] = NULL;
            }
            r->n += k;
            int32_t v = molt_majority_vote(r->ans, r->n);
            r->b_sec[r->batches] = now_s() - t0;
            r->b_vote[r->batches] = v >= 0 && molt_answer_equal(&r->ans[v], &pb[i].answer);
            r->b_cover[r->batches] = r->correct > 0;
            r->batches++;
            r->vote = v;
            progress_line(tty, i, np, tok_all, t_all);
        } while (o->budget > 0 && now_s() - t0 < o->budget && r->n + k <= MAX_SAMPLES);
        molt_chains_free(ch);
        r->seconds = now_s() - t0;
        double      pk = molt_pass_at_k(r->n, r->correct, k);
        const char *voted = r->vote >= 0 ? r->ans[r->vote].key : "-";
        int         votes = 0;
        for (int j = 0; j < r->n && r->vote >= 0; j++)
            votes += r->ans[j].found && !strcmp(r->ans[j].key, voted);
        if (tty)
            fprintf(stderr, "\r\033[K");
        fprintf(tab, "%-5d %-12.12s %-12.12s %6d %5d/%-5d %8.3f %8lld %8.2f\n", i,
                pb[i].answer.key, voted, votes, r->correct, r->n, pk, (long long)r->tokens,
                r->seconds);
        fflush(tab);
        if (jprobs) {
            cJSON *j = cJSON_CreateObject(), *ja = cJSON_CreateArray();
            cJSON_AddItemToArray(jprobs, j);
            jo_int(j, "index", i);
            jo_str(j, "answer", pb[i].answer.key);
            jo_str(j, "voted", r->vote >= 0 ? voted : NULL);
            jo_int(j, "voted_correct", r->b_vote[r->batches - 1]);
            jo_int(j, "samples", r->n);
            jo_int(j, "correct", r->correct);
            jo_num(j, "pass_at_k", "%.6f", pk);
            jo_int(j, "tokens", r->tokens);
            jo_num(j, "seconds", "%.4f", r->seconds);
            for (int s = 0; s < r->n; s++)
                cJSON_AddItemToArray(ja, r->ans[s].found ? cJSON_CreateString(r->ans[s].key)
                                                         : cJSON_CreateNull());
            cJSON_AddItemToObject(j, "answers", ja);
            if (jtexts)
                cJSON_AddItemToObject(j, "texts", jtexts);
        } else {
            cJSON_Delete(jtexts);
        }
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
    double secs = now_s() - t_all;
    // summary: voted accuracy, coverage pass@K, single-sample accuracy, pass@k for k = 1, 2, 4, …
    double voted = 0, cover = 0, single = 0, samples = 0, answered = 0;
    int    min_n = MAX_SAMPLES, max_b = 0;
    for (int i = 0; i < np; i++) {
        const prob_run *r = &run[i];
        voted += r->b_vote[r->batches - 1];
        cover += molt_pass_at_k(r->n, r->correct, k);
        single += (double)r->correct / r->n;
        samples += r->n;
        for (int s = 0; s < r->n; s++)
            answered += r->ans[s].found;
        min_n = r->n < min_n ? r->n : min_n;
        max_b = r->batches > max_b ? r->batches : max_b;
    }
    answered /= samples > 0 ? samples : 1;
    voted /= np, cover /= np, single /= np, samples /= np;
    fprintf(tab, "\nproblems %d, k %d, %.1f samples/problem, temperature %g, top-p %g, seed %ld\n",
            np, k, samples, o->temp, o->top_p, o->seed);
    fprintf(tab, "voted accuracy   %.4f\ncoverage pass@%d %.4f\nsingle-sample    %.4f\n"
            "answered         %.4f (samples with a number)\n",
            voted, k, cover, single, answered);
    fprintf(tab, "tokens %lld in %.2fs (%.1f tok/s)\n", (long long)tok_all, secs,
            secs > 0 ? (double)tok_all / secs : 0.0);
    fprintf(tab, "pass@k:");
    for (int kk = 1; kk <= min_n; kk *= 2) {
        double pk = 0;
        for (int i = 0; i < np; i++)
            pk += molt_pass_at_k(run[i].n, run[i].correct, kk);
        fprintf(tab, "  @%d %.4f", kk, pk / np);
    }
    fprintf(tab, "\n");
    if (o->budget > 0) {
        fprintf(tab, "\n%8s %9s %8s %9s   (mean per problem after b batches of %d)\n", "seconds",
                "samples", "voted", "coverage", k);
        for (int b = 1; b <= max_b; b++) {
            double cs, cn, cv, cc;
            curve_point(run, np, b, k, &cs, &cn, &cv, &cc);
            fprintf(tab, "%8.3f %9.1f %8.4f %9.4f\n", cs, cn, cv, cc);
        }
    }
    if (o->json) {
        cJSON *root = cJSON_CreateObject(), *sum = cJSON_CreateObject(),
              *pa = cJSON_CreateObject(), *curve = cJSON_CreateArray();
        jo_str(root, "model", o->model);
        jo_str(root, "data", o->data);
        jo_int(root, "k", k);
        jo_num(root, "budget", "%.4f", o->budget);
        jo_num(root, "temperature", "%.4f", o->temp);
        jo_num(root, "top_p", "%.4f", o->top_p);
        jo_int(root, "top_k", o->top_k);
        jo_int(root, "max_tokens", o->max_tokens);
        jo_int(root, "seed", o->seed);
        jo_str(root, "prompt_format", o->format);
        jo_str(root, "device", molt_ctx_device(ctx));
        jo_int(root, "threads", o->threads);
        jo_int(sum, "problems", np);
        jo_num(sum, "voted_accuracy", "%.6f", voted);
        jo_num(sum, "coverage", "%.6f", cover);
        jo_num(sum, "single_sample_accuracy", "%.6f", single);
        jo_num(sum, "answered", "%.6f", answered);
        jo_num(sum, "samples_per_problem", "%.4f", samples);
        jo_int(sum, "tokens", tok_all);
        jo_num(sum, "seconds", "%.4f", secs);
        jo_num(sum, "tok_per_s", "%.2f", secs > 0 ? (double)tok_all / secs : 0.0);
        for (int kk = 1; kk <= min_n; kk *= 2) {
            double pk = 0;
            char   key[24];
            for (int i = 0; i < np; i++)
                pk += molt_pass_at_k(run[i].n, run[i].correct, kk);
            snprintf(key, sizeof key, "%d", kk);
            jo_num(pa, key, "%.6f", pk / np);
        }
        cJSON_AddItemToObject(sum, "pass_at", pa);
        cJSON_AddItemToObject(root, "summary", sum);
        for (int b = 1; b <= max_b; b++) {
            double cs, cn, cv, cc;
            curve_point(run, np, b, k, &cs, &cn, &cv, &cc);
            cJSON *pt = cJSON_CreateObject();
            jo_num(pt, "seconds", "%.4f", cs);
            jo_num(pt, "samples", "%.2f", cn);
            jo_num(pt, "voted_accuracy", "%.6f", cv);
            jo_num(pt, "coverage", "%.6f", cc);
            cJSON_AddItemToArray(curve, pt);
        }
        cJSON_AddItemToObject(root, "curve", curve);
        cJSON_AddItemToObject(root, "problems", jprobs);
        jprobs = NULL;
        FILE *f = !strcmp(o->json, "-") ? stdout : fopen(o->json, "w");
        bool  ok = f && jo_print(f, root, false);
        if (f && f != stdout)
            ok = !fclose(f) && ok;
        if (!ok) {
            fprintf(stderr, "molt: error: %s: cannot write the JSON\n", o->json);
            goto out;
        }
    }
    rc = 0;
out:
    for (int i = 0; run && i < np; i++)
        run_free(&run[i]);
    free(run);
    free(texts);
    free(toks);
    cJSON_Delete(jprobs);
    molt_problems_free(pb, n_all);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}

static const char *ABOUT =
    "  For each problem of --data (GSM8K jsonl, SVAMP json, or molt mathgen's jsonl) the prompt\n"
    "  is prefilled once and forked into K chains sampled as one batch; chain i of a problem is\n"
    "  seeded SEED + i (molt generate -s SEED+i gives the same text, up to the stop). A chain\n"
    "  stops at EOS, a stop string (qa: a blank line or \"Question:\"; plain: a blank line) or\n"
    "  --max-tokens. The answer is the number after the last \"####\", else the last number.\n"
    "  Reports per problem and overall: majority-vote accuracy, coverage (unbiased pass@K),\n"
    "  single-sample accuracy, tokens, seconds. --budget S: batches of K for each problem until\n"
    "  S seconds of it have passed, and accuracy / coverage against time.\n"
    "  Prompt formats: qa \"Question: Q\\nAnswer:\", plain \"Q\\n\".\n";

int cmd_reason(int argc, char **argv) {
    reason_opts o = {0};
    o.k = 8, o.max_tokens = 256, o.threads = 2, o.seed = 1, o.temp = 0.7, o.top_p = 1.0;
    o.format = "qa";
    const char *model = NULL;
    const cli_optspec opts[] = {
        CLI_STR_NE("--data", NULL, "FILE", "problems: GSM8K jsonl or SVAMP json", o.data),
        CLI_INT("-k", NULL, "K", "chains per batch (samples per problem without --budget)", o.k,
                1, 65536),
        CLI_FLOAT("--budget", NULL, "SECONDS",
                  "per problem: draw batches of K until this many seconds passed (0: one batch)",
                  o.budget, 0, 1e9),
        CLI_FLOAT("--temperature", "-t", "T", "sampling temperature (0: greedy)", o.temp, 0, 100),
        CLI_FLOAT("--top-p", NULL, "P", "nucleus sampling (1: off)", o.top_p, 0, 1),
        CLI_INT("--top-k", NULL, "K", "keep the K most likely tokens (0: off)", o.top_k, 0,
                1 << 30),
        CLI_INT("--max-tokens", "-n", "N", "tokens per chain at most", o.max_tokens, 1, 1 << 30),
        CLI_INT("--seed", "-s", "S", "chain i of a problem samples with seed S + i", o.seed, 0,
                1L << 62),
        CLI_INT("--limit", NULL, "N", "only the first N problems (0: all)", o.limit, 0, 1 << 30),
        CLI_CHOICE("--prompt-format", NULL, "qa|plain", "how a question becomes a prompt",
                   o.format, "qa|plain"),
        CLI_STR_NE("--json", NULL, "FILE", "write everything as JSON (- for stdout)", o.json),
        CLI_FLAG("--texts", NULL, "--json: also every chain's text", o.texts),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file", o.tokp),
        CLI_INT("--threads", NULL, "N", "threads", o.threads, 1, 256),
        CLI_DEVICE(o.device),
        CLI_CHOICE("--weights", NULL, "f32|bf16|f16|q8_0", "element type of the weight matrices",
                   o.weights, "f32|bf16|f16|q8_0"),
        CLI_FLAG("--quiet", "-q", "no progress bar", o.quiet),
        CLI_END,
    };
    const cli_cmd cmd = {"reason", "MODEL --data FILE [-k K] [--budget S] [options]", ABOUT, opts,
                         NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!model)
        return cli_usage_error("reason", "missing MODEL");
    if (!o.data)
        return cli_usage_error("reason", "missing --data FILE");
    if (o.texts && !o.json)
        return cli_usage_error("reason", "--texts goes with --json FILE");
    o.model = model;
    return reason_run(&o);
}

// ----------------------------------------------------------------------------
// molt mathgen

int cmd_mathgen(int argc, char **argv) {
    molt_mathgen_opts g = molt_mathgen_defaults();
    long        n = g.n, seed = (long)g.seed, digits = g.digits;
    const char *steps = "1-3", *out = NULL, *split = g.split, *format = g.format;
    const cli_optspec opts[] = {
        CLI_INT("--n", NULL, "N", "problems to write", n, 0, 1L << 40),
        CLI_INT("--seed", "-s", "S", "seed", seed, 0, 1L << 62),
        CLI_STR("--steps", NULL, "MIN-MAX", "operations per problem (1..16)", steps),
        CLI_INT("--digits", NULL, "D", "digits of the numbers (1..6)", digits, 1, 6),
        CLI_CHOICE("--split", NULL, "train|test|all",
                   "which problems: hash(question) % 10 == 0 is test, the rest train", split,
                   "train|test|all"),
        CLI_CHOICE("--format", NULL, "jsonl|text",
                   "jsonl: GSM8K records; text: a training corpus (molt train --sep "
                   "'" MOLT_MATHGEN_SEP "')",
                   format, "jsonl|text"),
        CLI_STR_NE("--out", "-o", "FILE", "output file (- for stdout)", out),
        CLI_END,
    };
    const cli_cmd cmd = {
        "mathgen", "--n N --seed S [--steps MIN-MAX] [--digits D] -o FILE",
        "  Arithmetic word and expression problems with step-by-step solutions ending in\n"
        "  \"#### <integer>\" (GSM8K's format); the same seed and options give the same file.\n"
        "  Train and test splits never share a question (the split is a hash of the question).\n",
        opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, NULL, 0, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!out)
        return cli_usage_error("mathgen", "missing -o FILE");
    int lo = 0, hi = 0, used = 0;
    if (sscanf(steps, "%d-%d%n", &lo, &hi, &used) != 2 || steps[used]) {
        if (sscanf(steps, "%d%n", &lo, &used) != 1 || steps[used])
            return cli_usage_error("mathgen", "--steps takes MIN-MAX or N, not \"%s\"", steps);
        hi = lo;
    }
    if (lo < 1 || hi < lo || hi > 16)
        return cli_usage_error("mathgen", "--steps %d-%d: need 1 <= MIN <= MAX <= 16", lo, hi);
    g.n = n, g.seed = (uint64_t)seed, g.digits = (int32_t)digits, g.min_steps = lo;
    g.max_steps = hi, g.split = split, g.format = format;
    molt_ctx *ctx = molt_ctx_new();
    int       rc = molt_mathgen(ctx, &g, out) == MOLT_OK ? 0 : cli_fail(ctx, out);
    molt_ctx_free(ctx);
    return rc;
}
