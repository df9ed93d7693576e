/*
 * test_answer.c — answer extraction and scoring of the reasoning tools
 * (include/molt.h "reasoning"):
 *   - extraction: after the last "####", fallback to the last number, commas,
 *     negative numbers, decimals, fractions compared as rationals, several
 *     numbers, garbage, huge numbers, empty text, NUL bytes;
 *   - molt_answer_parse of reference answers (GSM8K "1,000", SVAMP "51.0");
 *   - pass@k against brute force over all k-subsets (n ≤ 12) and the closed
 *     form, and its edge cases;
 *   - majority vote against a brute-force count (ties: first occurrence);
 *   - the GSM8K and SVAMP files of ../shared load, every answer parsed;
 *   - mathgen: same seed → same bytes, train and test splits disjoint,
 *     every solution's steps recompute to its "####" answer.
 */
#include "molt.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static molt_answer ex(const char *s) {
    molt_answer a;
    molt_answer_extract(s, strlen(s), &a);
    return a;
}

static void want(const char *text, const char *key, int marker) {
    molt_answer a = ex(text);
    if (!key) {
        CHECK(!a.found && !a.key[0], "\"%s\": want no answer, got \"%s\"", text, a.key);
        return;
    }
    CHECK(a.found && !strcmp(a.key, key) && a.marker == marker,
          "\"%s\": want \"%s\" (marker %d), got found %d \"%s\" (marker %d)", text, key, marker,
          a.found, a.key, a.marker);
}

static void test_extract(void) {
    want("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18", 1);
    want("#### 1,000", "1000", 1);
    want("#### 1,234,567", "1234567", 1);
    want("so 1,23 apples", "23", 0);              // not a comma group: 1 then 23
    want("#### -5", "-5", 1);
    want("####-5", "-5", 1);
    want("16-3 = 13", "13", 0);                   // '-' after a digit is not a sign
    want("x -3", "-3", 0);
    want("a-3", "3", 0);                          // '-' after a letter is a hyphen
    want("#### 0.50", "1/2", 1);
    want("#### 18.00", "18", 1);
    want("#### $18.", "18", 1);
    want("#### 3/4", "3/4", 1);
    want("#### 6/8", "3/4", 1);                   // fractions reduce
    want("#### 0.75", "3/4", 1);                  // decimals and fractions compare exactly
    want("#### -36/2", "-18", 1);
    want("#### 3/0", "3", 1);                     // x/0 is not a fraction
    want("#### -0", "0", 1);
    want("#### 50%", "50", 1);
    want("first 12 then 7 then #### 4 and 9", "4", 1); // the first number after the marker
    want("#### 1 #### 2", "2", 1);                // the last marker
    want("#### no number here, but 5 before? no", "5", 1); // first number after the last marker
    want("12 apples and 30 pears #### ", "30", 0);  // nothing after the marker: last number
    want("the answer is 42.", "42", 0);           // no marker: last number
    want("1. first 2. second 3", "3", 0);
    want("", NULL, 0);
    want("####", NULL, 0);
    want("no digits at all !@#$%^&*()", NULL, 0);
    want("-", NULL, 0);
    // huge: beyond 63 bits, exact canonical text or a hash; equal values, equal keys
    want("#### 123456789012345678901234567890", "D:123456789012345678901234567890", 1);
    want("#### 000123456789012345678901234567890.000", "D:123456789012345678901234567890", 1);
    molt_answer h1 = ex("#### 1234567890123456789012345678901234567890123456789012345678901"),
                h2 = ex("#### 1,234,567,890,123,456,789,012,345,678,901,234,567,890,123,456,789,"
                        "012,345,678,901"),
                h3 = ex("#### 1234567890123456789012345678901234567890123456789012345678902");
    CHECK(h1.found && !strncmp(h1.key, "H:", 2) && molt_answer_equal(&h1, &h2) &&
              !molt_answer_equal(&h1, &h3),
          "huge numbers: %s %s %s", h1.key, h2.key, h3.key);
    // a long random text of digits and symbols, NUL bytes included: never crashes
    char big[20000];
    t_seed(5);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = "0123456789,./-#$% \n\0a"[(int)t_uniform(0, 21.999f)];
    molt_answer a;
    molt_answer_extract(big, sizeof big, &a);
    CHECK(a.found && a.key[0], "random text: an answer");
    molt_answer_extract(NULL, 0, &a);
    CHECK(!a.found, "NULL text");
    // "1.5.6": the decimal 1.5 then 6 — the last number is 6
    want("1.5.6", "6", 0);
}

static void test_parse(void) {
    static const struct {
        const char *s, *key;
    } cases[] = {{"1,000", "1000"}, {" 51.0 ", "51"}, {"-3/4", "-3/4"}, {"$18", "18"},
                 {"25%", "25"},    {"+7", "7"},      {"0.125", "1/8"}, {"12 apples", NULL},
                 {"", NULL},       {"abc", NULL},    {"--3", NULL},    {"3-", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        molt_answer a;
        molt_answer_parse(cases[i].s, strlen(cases[i].s), &a);
        if (cases[i].key)
            CHECK(a.found && !strcmp(a.key, cases[i].key), "parse \"%s\": \"%s\"", cases[i].s,
                  a.key);
        else
            CHECK(!a.found, "parse \"%s\": want none, got \"%s\"", cases[i].s, a.key);
    }
    molt_answer x, y;
    molt_answer_parse("2/4", 3, &x);
    molt_answer_extract("... #### 0.5", 12, &y);
    CHECK(molt_answer_equal(&x, &y), "2/4 == 0.5");
    molt_answer_parse("x", 1, &x);
    CHECK(!molt_answer_equal(&x, &x), "missing answers are never equal");
}

// brute force: the fraction of k-subsets of n samples (c correct) with ≥ 1 correct
static double pass_brute(int n, int c, int k) {
    long hit = 0, all = 0;
    for (unsigned m = 0; m < (1u << n); m++) {
        if (__builtin_popcount(m) != k)
            continue;
        all++;
        hit += (m & ((1u << c) - 1)) != 0; // samples 0..c−1 are the correct ones
    }
    return (double)hit / (double)all;
}

static void test_pass_at_k(void) {
    for (int n = 1; n <= 12; n++)
        for (int c = 0; c <= n; c++)
            for (int k = 1; k <= n; k++) {
                double got = molt_pass_at_k(n, c, k), ref = pass_brute(n, c, k);
                CHECK(fabs(got - ref) < 1e-12, "pass@%d n %d c %d: %.15g vs %.15g", k, n, c, got,
                      ref);
            }
    // large n: closed form via lgamma, and stays in [0, 1]
    double got = molt_pass_at_k(100000, 3, 1000);
    double ref = 1.0 - exp(lgamma(100000 - 3 + 1.0) - lgamma(100000 - 3 - 1000 + 1.0) -
                           lgamma(100000 + 1.0) + lgamma(100000 - 1000 + 1.0));
    CHECK(fabs(got - ref) < 1e-9, "pass@1000 n 1e5 c 3: %.15g vs %.15g", got, ref);
    CHECK(molt_pass_at_k(10, 3, 1) == 0.3 || fabs(molt_pass_at_k(10, 3, 1) - 0.3) < 1e-15,
          "pass@1 = c/n");
    CHECK(molt_pass_at_k(5, 0, 3) == 0.0 && molt_pass_at_k(5, 3, 3) == 1.0, "edges");
    CHECK(isnan(molt_pass_at_k(5, 6, 1)) && isnan(molt_pass_at_k(5, 1, 0)) &&
              isnan(molt_pass_at_k(5, 1, 6)) && isnan(molt_pass_at_k(5, -1, 1)),
          "out of range → NaN");
}

static int32_t vote_brute(const molt_answer *a, int n) {
    int32_t best = -1, bc = 0;
    for (int i = 0; i < n; i++) {
        if (!a[i].found)
            continue;
        int first = i;
        for (int j = 0; j < i; j++)
            if (a[j].found && !strcmp(a[j].key, a[i].key)) {
                first = j;
                break;
            }
        if (first != i)
            continue;
        int c = 0;
        for (int j = 0; j < n; j++)
            c += a[j].found && !strcmp(a[j].key, a[i].key);
        if (c > bc)
            best = i, bc = c;
    }
    return best;
}

static void test_vote(void) {
    molt_answer a[64];
    t_seed(11);
    for (int trial = 0; trial < 2000; trial++) {
        int n = (int)t_uniform(0, 40.99f), vals = 1 + (int)t_uniform(0, 5.99f);
        for (int i = 0; i < n; i++) {
            char s[16];
            snprintf(s, sizeof s, "#### %d", (int)t_uniform(0, (float)vals));
            molt_answer_extract(s, strlen(s), &a[i]);
            if (t_uniform(0, 1) < 0.2f)
                molt_answer_extract("none", 4, &a[i]);
        }
        int32_t got = molt_majority_vote(a, n), ref = vote_brute(a, n);
        CHECK(got == ref, "trial %d n %d: vote %d, brute force %d", trial, n, got, ref);
    }
    // the tie rule: 7 appears first, 3 and 7 twice each
    const char *t[] = {"#### 7", "x", "#### 3", "#### 3", "#### 7.0"};
    for (int i = 0; i < 5; i++)
        molt_answer_extract(t[i], strlen(t[i]), &a[i]);
    CHECK(molt_majority_vote(a, 5) == 0, "tie → the first occurrence (7, sample 0)");
    CHECK(molt_majority_vote(a + 1, 1) == -1 && molt_majority_vote(a, 0) == -1, "no answer");
}

static void test_datasets(void) {
    molt_ctx *ctx = molt_ctx_new();
    char gsm[1024], sv[1024]; // t_shared returns a static buffer
    snprintf(gsm, sizeof gsm, "%s", t_shared("data/gsm8k/test.jsonl"));
    snprintf(sv, sizeof sv, "%s", t_shared("data/svamp/SVAMP.json"));
    molt_problem *p = NULL;
    int32_t       n = 0;
    if (t_have(gsm, "GSM8K test set")) {
        CHECK(molt_problems_load(ctx, gsm, &p, &n) == MOLT_OK, "%s", molt_last_error(ctx));
        CHECK(n == 1319 && p && !strcmp(p[0].answer.key, "18") &&
                  !strncmp(p[0].question, "Janet", 5),
              "gsm8k: %d problems, first answer %s", n, p ? p[0].answer.key : "-");
        molt_problems_free(p, n);
    }
    if (t_have(sv, "SVAMP")) {
        CHECK(molt_problems_load(ctx, sv, &p, &n) == MOLT_OK, "%s", molt_last_error(ctx));
        CHECK(n == 1000 && p && !strcmp(p[0].answer.key, "51") &&
                  strstr(p[0].question, "How much do you have to pay"),
              "svamp: %d problems, first answer %s", n, p ? p[0].answer.key : "-");
        molt_problems_free(p, n);
    }
    // malformed records are errors naming the line
    char path[] = "/tmp/molt_test_answerXXXXXX";
    int  fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("{\"question\": \"q\", \"answer\": \"#### 4\"}\n\n{\"question\": \"q\", \"answer\": "
          "\"no number\"}\n",
          f);
    fclose(f);
    CHECK(molt_problems_load(ctx, path, &p, &n) == MOLT_ERR_FORMAT &&
              strstr(molt_last_error(ctx), "line 3"),
          "bad answer: %s", molt_last_error(ctx));
    f = fopen(path, "w");
    fputs("{\"question\": \"q\", \"answer\": \"#### 4\"}\nnot json\n", f);
    fclose(f);
    CHECK(molt_problems_load(ctx, path, &p, &n) == MOLT_ERR_FORMAT, "bad json");
    remove(path);
    molt_ctx_free(ctx);
}

// recomputes every "a op b = r" line of a mathgen solution and checks the "####" answer
static int check_solution(const char *sol) {
    long long last = 0;
    int       lines = 0;
    for (const char *p = sol; *p;) {
        long long a, b, r;
        char      op;
        if (sscanf(p, "%lld %c %lld = %lld", &a, &op, &b, &r) == 4) {
            long long w = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b;
            if (w != r || (op == '/' && a % b))
                return 0;
            if (lines && a != last)
                return 0;
            last = r, lines++;
        }
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    const char *m = strstr(sol, "#### ");
    return lines > 0 && m && atoll(m + 5) == last;
}

static void test_mathgen(void) {
    molt_ctx *ctx = molt_ctx_new();
    char      a[] = "/tmp/molt_mgA_XXXXXX", b[] = "/tmp/molt_mgB_XXXXXX",
         c[] = "/tmp/molt_mgC_XXXXXX";
    close(mkstemp(a)), close(mkstemp(b)), close(mkstemp(c));
    molt_mathgen_opts o = molt_mathgen_defaults();
    o.n = 300, o.seed = 9, o.min_steps = 1, o.max_steps = 4, o.digits = 2;
    CHECK(molt_mathgen(ctx, &o, a) == MOLT_OK, "%s", molt_last_error(ctx));
    CHECK(molt_mathgen(ctx, &o, b) == MOLT_OK, "%s", molt_last_error(ctx));
    size_t la, lb;
    char  *ta = t_read_file(a, &la), *tb = t_read_file(b, &lb);
    CHECK(ta && tb && la == lb && !memcmp(ta, tb, la) && la > 1000, "same seed, same bytes");
    o.seed = 10;
    CHECK(molt_mathgen(ctx, &o, b) == MOLT_OK, "%s", molt_last_error(ctx));
    free(tb);
    tb = t_read_file(b, &lb);
    CHECK(tb && (la != lb || memcmp(ta, tb, la)), "another seed, another file");
    // held out: the test split of seed 9 and the train split of seed 9 share no question
    o.seed = 9, o.split = "test", o.n = 200, o.min_steps = 1, o.max_steps = 1, o.digits = 1;
    CHECK(molt_mathgen(ctx, &o, c) == MOLT_OK, "%s", molt_last_error(ctx));
    o.split = "train", o.n = 3000;
    CHECK(molt_mathgen(ctx, &o, b) == MOLT_OK, "%s", molt_last_error(ctx));
    molt_problem *pt = NULL, *pr = NULL, *pa = NULL;
    int32_t       nt = 0, nr = 0, na = 0;
    CHECK(molt_problems_load(ctx, c, &pt, &nt) == MOLT_OK && nt == 200, "test split: %d", nt);
    CHECK(molt_problems_load(ctx, b, &pr, &nr) == MOLT_OK && nr == 3000, "train split: %d", nr);
    CHECK(molt_problems_load(ctx, a, &pa, &na) == MOLT_OK && na == 300, "jsonl reads back");
    int shared = 0, dup_test = 0;
    for (int i = 0; i < nt; i++) {
        for (int j = 0; j < nr; j++)
            shared += !strcmp(pt[i].question, pr[j].question);
        for (int j = 0; j < i; j++)
            dup_test += !strcmp(pt[i].question, pt[j].question);
    }
    // the small space (one step, one digit) makes the train file hit most questions
    CHECK(shared == 0 && dup_test > 0, "train ∩ test = %d questions (test repeats %d)", shared,
          dup_test);
    int bad = 0, words = 0, neg = 0;
    for (int i = 0; i < na; i++) {
        bad += !check_solution(pa[i].solution);
        words += strstr(pa[i].question, "How many") != NULL;
        neg += pa[i].answer.key[0] == '-';
    }
    CHECK(bad == 0 && words > 50 && words < 250 && neg > 0,
          "solutions: %d wrong, %d word problems, %d negative", bad, words, neg);
    // text corpus: documents joined by the separator
    o.format = "text", o.n = 5;
    CHECK(molt_mathgen(ctx, &o, c) == MOLT_OK, "%s", molt_last_error(ctx));
    size_t lc;
    char  *tc = t_read_file(c, &lc);
    int    seps = 0;
    for (char *p = tc; p && (p = strstr(p, MOLT_MATHGEN_SEP)); p++)
        seps++;
    CHECK(tc && seps == 4 && !strncmp(tc, "Question: ", 10) && strstr(tc, "\nAnswer: "),
          "text format: %d separators", seps);
    o.format = "csv";
    CHECK(molt_mathgen(ctx, &o, c) == MOLT_ERR_ARG, "bad format");
    molt_problems_free(pt, nt), molt_problems_free(pr, nr), molt_problems_free(pa, na);
    free(ta), free(tb), free(tc);
    remove(a), remove(b), remove(c);
    molt_ctx_free(ctx);
}

int main(void) {
    test_extract();
    test_parse();
    test_pass_at_k();
    test_vote();
    test_datasets();
    test_mathgen();
    return t_done("test_answer");
}
