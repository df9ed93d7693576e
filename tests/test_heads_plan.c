/*
 * test_heads_plan.c — molt_heads_plan (analysis/heads_plan.c) on the
 * stories260K teacher (5 layers x 8 heads = 40):
 *   - an explicit list comes back in order; bad syntax, a head or layer that
 *     does not exist and a head listed twice are refused;
 *   - top-K and a fraction of a ranking file take its first entries in order;
 *     too short a ranking, K above the head count, no --ranking, a
 *     non-list, an entry without layer/head, a recurrent entry and a missing
 *     file are refused;
 *   - K random heads: distinct, valid, the same for the same seed and other
 *     heads for another seed; all 40 give every head once; 41 is refused;
 *   - exactly one plan; a non-Llama teacher is refused; teacher NULL checks
 *     the plan alone;
 *   - a failing allocation at any point leaks nothing.
 */
#include "core/core.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static molt_ctx *ctx;
static char      dir[] = "/tmp/molt_heads_plan_XXXXXX";

typedef struct plan {
    molt_status st;
    int32_t    *l, *h;
    int32_t     n;
} plan;

static plan run(const molt_model *t, const molt_heads_plan_opts *o) {
    plan p;
    p.st = molt_heads_plan(ctx, t, o, &p.l, &p.h, &p.n);
    return p;
}

static void drop(plan *p) {
    molt_free(p->l);
    molt_free(p->h);
}

// An error with status st whose message contains want; nothing returned.
static void expect_err(const molt_model *t, const molt_heads_plan_opts *o, molt_status st,
                       const char *want, const char *label) {
    plan p = run(t, o);
    CHECK(p.st == st, "%s: status %d, want %d (%s)", label, p.st, st, molt_last_error(ctx));
    CHECK(p.st == MOLT_OK || strstr(molt_last_error(ctx), want), "%s: message \"%s\" lacks \"%s\"",
          label, molt_last_error(ctx), want);
    CHECK(p.n == 0 && !p.l && !p.h, "%s: heads returned on error", label);
    drop(&p);
}

static const char *write_file(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void test_list(const molt_model *t) {
    molt_heads_plan_opts o = molt_heads_plan_defaults();
    o.heads = "4:0,2:3,0:7";
    plan p = run(t, &o);
    CHECK(p.st == MOLT_OK && p.n == 3, "list: %d heads (%s)", p.n, molt_last_error(ctx));
    if (p.st == MOLT_OK && p.n == 3)
        CHECK(p.l[0] == 4 && p.h[0] == 0 && p.l[1] == 2 && p.h[1] == 3 && p.l[2] == 0 &&
                  p.h[2] == 7,
              "list order: %d:%d %d:%d %d:%d", p.l[0], p.h[0], p.l[1], p.h[1], p.l[2], p.h[2]);
    drop(&p);
    o.heads = "3-1";
    expect_err(t, &o, MOLT_ERR_ARG, "LAYER:HEAD", "list syntax");
    expect_err(NULL, &o, MOLT_ERR_ARG, "LAYER:HEAD", "list syntax, no teacher");
    o.heads = "1:1,x";
    expect_err(t, &o, MOLT_ERR_ARG, "LAYER:HEAD", "list tail");
    o.heads = "";
    expect_err(t, &o, MOLT_ERR_ARG, "LAYER:HEAD", "empty list");
    o.heads = "2:9";
    expect_err(t, &o, MOLT_ERR_ARG, "does not exist", "no such head");
    o.heads = "5:0";
    expect_err(t, &o, MOLT_ERR_ARG, "does not exist", "no such layer");
    o.heads = "1:1,2:2,1:1";
    expect_err(t, &o, MOLT_ERR_ARG, "twice", "duplicate");
}

// A ranking of all 40 heads in a fixed shuffled order: entry i is head
// (7 i + 3) mod 40, i.e. layer / 8, head % 8.
static const char *full_ranking(void) {
    char buf[8192];
    size_t k = (size_t)snprintf(buf, sizeof buf, "[");
    for (int i = 0; i < 40; i++) {
        int u = (7 * i + 3) % 40;
        k += (size_t)snprintf(buf + k, sizeof buf - k,
                              "%s\n {\"layer\": %d, \"head\": %d, \"kind\": \"attention\", "
                              "\"accuracy_drop\": %.3f}",
                              i ? "," : "", u / 8, u % 8, 1.0 - i / 40.0);
    }
    snprintf(buf + k, sizeof buf - k, "\n]\n");
    return write_file("ranking.json", buf);
}

static void test_ranking(const molt_model *t) {
    char rank[256];
    snprintf(rank, sizeof rank, "%s", full_ranking());
    molt_heads_plan_opts o = molt_heads_plan_defaults();
    o.ranking = rank;
    o.keep = 5;
    plan p = run(t, &o);
    CHECK(p.st == MOLT_OK && p.n == 5, "top-5: %d heads (%s)", p.n, molt_last_error(ctx));
    for (int i = 0; p.st == MOLT_OK && i < p.n; i++) {
        int u = (7 * i + 3) % 40;
        CHECK(p.l[i] == u / 8 && p.h[i] == u % 8, "top-5 entry %d: %d:%d, want %d:%d", i, p.l[i],
              p.h[i], u / 8, u % 8);
    }
    drop(&p);
    o.keep = 0;
    p = run(t, &o);
    CHECK(p.st == MOLT_OK && p.n == 0 && !p.l, "keep 0: %d heads (%s)", p.n, molt_last_error(ctx));
    drop(&p);
    o.keep = 41;
    expect_err(t, &o, MOLT_ERR_ARG, "only 40 heads", "keep 41");
    // fraction: round(0.2 · 40) = 8 heads, the ranking's first 8
    o = molt_heads_plan_defaults();
    o.ranking = rank;
    o.keep_frac = 0.2;
    p = run(t, &o);
    CHECK(p.st == MOLT_OK && p.n == 8, "keep-frac 0.2: %d heads (%s)", p.n, molt_last_error(ctx));
    for (int i = 0; p.st == MOLT_OK && i < p.n; i++)
        CHECK(p.l[i] * 8 + p.h[i] == (7 * i + 3) % 40, "keep-frac entry %d: %d:%d", i, p.l[i],
              p.h[i]);
    drop(&p);
    o.keep_frac = 1;
    p = run(t, &o);
    CHECK(p.st == MOLT_OK && p.n == 40, "keep-frac 1: %d heads (%s)", p.n, molt_last_error(ctx));
    drop(&p);
    o.keep_frac = 1.5;
    expect_err(NULL, &o, MOLT_ERR_ARG, "fraction", "keep-frac 1.5");
    o.keep_frac = 0.5;
    o.ranking = NULL;
    expect_err(NULL, &o, MOLT_ERR_ARG, "--ranking", "keep-frac without ranking");
    expect_err(t, &o, MOLT_ERR_ARG, "--ranking", "keep-frac without ranking, teacher");
    // bad ranking files
    o = molt_heads_plan_defaults();
    o.keep = 3;
    o.ranking =
        write_file("short.json", "[{\"layer\": 0, \"head\": 1}, {\"layer\": 1, \"head\": 2}]");
    expect_err(t, &o, MOLT_ERR_ARG, "ranks 2 heads, fewer than --keep 3", "short ranking");
    o.ranking = write_file("obj.json", "{\"layer\": 0, \"head\": 1}");
    expect_err(t, &o, MOLT_ERR_FORMAT, "not a JSON list", "not a list");
    o.ranking = write_file("bad.json", "[{\"layer\": 0, \"head\": 1},, ]");
    expect_err(t, &o, MOLT_ERR_FORMAT, "bad.json", "malformed JSON");
    o.ranking = write_file("nohead.json", "[{\"layer\": 0, \"head\": 1}, {\"layer\": 1}, {}]");
    expect_err(t, &o, MOLT_ERR_FORMAT, "entry 1 lacks", "entry without head");
    o.ranking = write_file("frac.json", "[{\"layer\": 0, \"head\": 1.5}, {}, {}]");
    expect_err(t, &o, MOLT_ERR_FORMAT, "entry 0 lacks", "fractional head");
    o.ranking = write_file("ssm.json", "[{\"layer\": 0, \"head\": 1, \"kind\": \"attention\"}, "
                                       "{\"layer\": 0, \"head\": 2, \"kind\": \"recurrent\"}, {}]");
    expect_err(t, &o, MOLT_ERR_ARG, "recurrent", "recurrent entry");
    o.ranking = write_file("big.json", "[{\"layer\": 0, \"head\": 1}, {\"layer\": 9, \"head\": 2}, "
                                       "{\"layer\": 0, \"head\": 3}]");
    expect_err(t, &o, MOLT_ERR_ARG, "does not exist", "ranking of another model");
    o.ranking = write_file("dup.json", "[{\"layer\": 0, \"head\": 1}, {\"layer\": 0, \"head\": 1}, "
                                       "{\"layer\": 0, \"head\": 3}]");
    expect_err(t, &o, MOLT_ERR_ARG, "twice", "ranking with a duplicate");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.json", dir);
    o.ranking = missing;
    expect_err(t, &o, MOLT_ERR_IO, "missing.json", "missing ranking");
}

static bool same(const plan *a, const plan *b) {
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->l[i] != b->l[i] || a->h[i] != b->h[i])
            return false;
    return true;
}

static void test_random(const molt_model *t) {
    molt_heads_plan_opts o = molt_heads_plan_defaults();
    o.random_heads = 6;
    o.seed = 7;
    plan a = run(t, &o), b = run(t, &o);
    o.seed = 8;
    plan c = run(t, &o);
    CHECK(a.st == MOLT_OK && a.n == 6 && b.st == MOLT_OK && c.st == MOLT_OK && c.n == 6,
          "random 6: %d heads (%s)", a.n, molt_last_error(ctx));
    if (a.st == MOLT_OK && b.st == MOLT_OK && c.st == MOLT_OK) {
        CHECK(same(&a, &b), "same seed, other heads");
        CHECK(!same(&a, &c), "seeds 7 and 8 drew the same heads");
        for (int i = 0; i < a.n; i++) {
            CHECK(a.l[i] >= 0 && a.l[i] < 5 && a.h[i] >= 0 && a.h[i] < 8, "random head %d:%d",
                  a.l[i], a.h[i]);
            for (int j = 0; j < i; j++)
                CHECK(a.l[i] != a.l[j] || a.h[i] != a.h[j], "random head %d:%d twice", a.l[i],
                      a.h[i]);
        }
    }
    drop(&a);
    drop(&b);
    drop(&c);
    o.random_heads = 40;
    a = run(t, &o);
    CHECK(a.st == MOLT_OK && a.n == 40, "random 40: %d heads (%s)", a.n, molt_last_error(ctx));
    int count[40] = {0};
    for (int i = 0; a.st == MOLT_OK && i < a.n; i++)
        if (a.l[i] >= 0 && a.l[i] < 5 && a.h[i] >= 0 && a.h[i] < 8)
            count[a.l[i] * 8 + a.h[i]]++;
    for (int u = 0; a.st == MOLT_OK && u < 40; u++)
        CHECK(count[u] == 1, "random 40: head %d:%d drawn %d times", u / 8, u % 8, count[u]);
    drop(&a);
    o.random_heads = 0;
    a = run(t, &o);
    CHECK(a.st == MOLT_OK && a.n == 0, "random 0: %d heads", a.n);
    drop(&a);
    o.random_heads = 41;
    expect_err(t, &o, MOLT_ERR_ARG, "--random-heads 41, but the teacher has only 40 heads",
               "random 41");
}

static void test_choice(const molt_model *t, const molt_model *mamba) {
    molt_heads_plan_opts o = molt_heads_plan_defaults();
    expect_err(t, &o, MOLT_ERR_ARG, "exactly one", "no plan");
    expect_err(NULL, &o, MOLT_ERR_ARG, "exactly one", "no plan, no teacher");
    o.heads = "0:0";
    o.random_heads = 2;
    expect_err(NULL, &o, MOLT_ERR_ARG, "exactly one", "two plans");
    o.random_heads = -1;
    plan p = run(NULL, &o);
    CHECK(p.st == MOLT_OK && p.n == 0 && !p.l, "teacher NULL: plan alone (%s)",
          molt_last_error(ctx));
    drop(&p);
    if (mamba)
        expect_err(mamba, &o, MOLT_ERR_ARG, "Llama", "mamba2 teacher");
}

// Every allocation of a plan from a ranking, failing in turn: an error, no leak.
static void test_alloc_failures(const molt_model *t) {
    char rank[256];
    snprintf(rank, sizeof rank, "%s", full_ranking());
    molt_heads_plan_opts o = molt_heads_plan_defaults();
    o.ranking = rank;
    o.keep = 10;
    int failed = 0;
    for (int k = 1; k < 10000; k++) {
        int64_t live = molt__alloc_live();
        molt__alloc_fail_after(k);
        plan p = run(t, &o);
        molt__alloc_fail_after(0);
        drop(&p);
        CHECK(molt__alloc_live() == live, "allocation %d failing leaks %lld blocks", k,
              (long long)(molt__alloc_live() - live));
        if (p.st == MOLT_OK)
            break;
        failed++;
        CHECK(p.st == MOLT_ERR_OOM, "allocation %d failing: status %d (%s)", k, p.st,
              molt_last_error(ctx));
    }
    CHECK(failed > 0, "no allocation was made");
}

int main(void) {
    const char *st_path = t_shared("models/stories260K/stories260K.bin");
    if (!t_exists(st_path))
        return t_skip("test_heads_plan", "needs models/stories260K");
    ctx = molt_ctx_new();
    molt_model *t = NULL, *mamba = NULL;
    CHECK(molt_model_load(ctx, st_path, NULL, &t) == MOLT_OK, "teacher: %s",
          molt_last_error(ctx));
    const char *mp = t_shared("models/mamba2-random");
    if (t_have(mp, "heads plans on a model without attention (mamba2-random)"))
        CHECK(molt_model_load(ctx, mp, NULL, &mamba) == MOLT_OK, "mamba2: %s",
              molt_last_error(ctx));
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    if (t) {
        molt_model_info in;
        molt_model_get_info(t, &in);
        CHECK(in.n_layer == 5 && in.n_head == 8, "stories260K: %d layers x %d heads", in.n_layer,
              in.n_head);
        test_list(t);
        test_ranking(t);
        test_random(t);
        test_choice(t, mamba);
        test_alloc_failures(t);
    }
    const char *names[] = {"ranking.json", "short.json", "obj.json", "bad.json", "nohead.json",
                           "frac.json", "ssm.json", "big.json", "dup.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    molt_model_free(t);
    molt_model_free(mamba);
    molt_ctx_free(ctx);
    return t_done("test_heads_plan");
}
