/*
 * mathgen.c — molt_mathgen: an unlimited, seeded supply of arithmetic problems
 * with step-by-step solutions ending in "#### <integer>" (GSM8K's format), a
 * task a small model can learn (issue 17).
 *
 * Problem i of a seed: a splitmix64 stream seeded by (seed, i) draws
 *   - the kind: a word problem (a person and a pile of things that grows and
 *     shrinks; values never negative) or an expression "What is ((a + b) - c) * d?"
 *     (values may go negative);
 *   - steps S uniform in [min_steps, max_steps], one operation each: + or − a
 *     number of `digits` digits (1..9 for one digit), × a factor 2..9, or ÷ a
 *     factor 2..9 that divides the value exactly (else + or −); a × that would
 *     pass 10^12 becomes a +. So every answer is an integer.
 *   - the start value: a number of `digits` digits.
 * The solution writes one line per operation ("38 - 7 = 31") and "#### 31".
 * Split: FNV-1a 64 of the question text, mixed by splitmix64's finaliser;
 * ≡ 0 (mod 10) is "test", else "train". The same question lands in the same
 * split whatever seed drew it, so train and test files never share a
 * question; a file of one split holds the first n problems of that split
 * (skipping the others), so bigger n extends a file without changing its head.
 */
#include "core/core.h"
#include "io/fileio.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

molt_mathgen_opts molt_mathgen_defaults(void) {
    molt_mathgen_opts o;
    memset(&o, 0, sizeof o);
    o.n = 1000;
    o.seed = 1;
    o.min_steps = 1, o.max_steps = 3;
    o.digits = 2;
    o.split = "train";
    o.format = "jsonl";
    return o;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t next64(uint64_t *s) { return mix64(*s += 0x9e3779b97f4a7c15ull); }
// uniform in [lo, hi] (the slight modulo bias is irrelevant here)
static int64_t uni(uint64_t *s, int64_t lo, int64_t hi) {
    return lo + (int64_t)(next64(s) % (uint64_t)(hi - lo + 1));
}

// growing text
typedef struct buf {
    char  *s;
    size_t n, cap;
    int    oom;
} buf;

MOLT_PRINTF(2, 3) static void bprintf(buf *b, const char *fmt, ...) {
    for (int tries = 0; tries < 2 && !b->oom; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char  *t = molt__realloc(b->s, cap);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->s = t, b->cap = cap;
    }
}

static const char *const NAMES[] = {"Mia", "Noah", "Ava", "Liam", "Zoe", "Omar", "Lena", "Ben",
                                    "Sara", "Tom", "Ines", "Raj"};
static const char *const PRON[] = {"she", "he", "she", "he", "she", "he",
                                   "she", "he", "she", "he", "she", "he"};
static const char *const ITEMS[] = {"apples", "marbles", "stickers", "coins", "books",
                                    "stamps", "shells", "pencils", "cards", "cookies"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define VMAX     1000000000000LL // |value| bound for ×

// one problem: question and solution text, the answer
static void make_problem(const molt_mathgen_opts *o, uint64_t idx, buf *q, buf *sol,
                         int64_t *answer) {
    uint64_t s = mix64(o->seed ^ mix64(idx + 0x632be59bd9b4e019ull));
    int64_t  lo = 1, hi = 9;
    for (int d = 1; d < o->digits; d++)
        hi = hi * 10 + 9;
    if (o->digits > 1)
        lo = (hi + 1) / 10;
    int     word = (int)(next64(&s) & 1);
    int     steps = (int)uni(&s, o->min_steps, o->max_steps);
    int64_t v = uni(&s, lo, hi);
    int     who = (int)uni(&s, 0, COUNT(NAMES) - 1), what = (int)uni(&s, 0, COUNT(ITEMS) - 1);
    const char *name = NAMES[who], *pr = PRON[who], *item = ITEMS[what];
    q->n = sol->n = 0;
    char expr[2048];
    snprintf(expr, sizeof expr, "%lld", (long long)v);
    if (word) {
        bprintf(q, "%s has %lld %s.", name, (long long)v, item);
        bprintf(sol, "%s starts with %lld %s.\n", name, (long long)v, item);
    }
    for (int k = 0; k < steps; k++) {
        int     op = (int)uni(&s, 0, 3); // 0 +, 1 −, 2 ×, 3 ÷
        int64_t x = 0;
        if (op == 3) { // a divisor 2..9 of v, from a random start
            int f0 = (int)uni(&s, 2, 9);
            for (int t = 0; t < 8 && !x; t++) {
                int f = 2 + (f0 - 2 + t) % 8;
                if (v != 0 && v % f == 0)
                    x = f;
            }
            if (!x)
                op = (int)uni(&s, 0, 1);
        }
        if (op == 2) {
            x = uni(&s, 2, 9);
            if (v > VMAX / x || v < -VMAX / x)
                op = 0;
        }
        if (op == 1 && word && v < 1)
            op = 0;
        if (op == 0 || op == 1) {
            x = uni(&s, lo, hi);
            if (op == 1 && word && x > v)
                x = uni(&s, 1, v);
        }
        static const char sym[] = "+-*/";
        int64_t           r = op == 0 ? v + x : op == 1 ? v - x : op == 2 ? v * x : v / x;
        const char       *cap1 = k == 0 ? "" : "Then ";
        char              who_[16];
        snprintf(who_, sizeof who_, "%s", pr);
        if (word) {
            if (k == 0)
                who_[0] = (char)(who_[0] - 'a' + 'A');
            if (op == 0)
                bprintf(q, " %s%s finds %lld more %s.", cap1, who_, (long long)x, item);
            else if (op == 1)
                bprintf(q, " %s%s gives %lld %s to a friend.", cap1, who_, (long long)x, item);
            else if (op == 2)
                bprintf(q, " %s%s gets %lld times as many %s as %s has.", cap1, who_,
                        (long long)x, item, pr);
            else
                bprintf(q, " %s%s shares the %s equally among %lld boxes and keeps one box.",
                        cap1, who_, item, (long long)x);
        }
        bprintf(sol, "%lld %c %lld = %lld\n", (long long)v, sym[op], (long long)x, (long long)r);
        if (!word) {
            char t[2048];
            snprintf(t, sizeof t, k == 0 ? "%s %c %lld" : "(%s) %c %lld", expr, sym[op],
                     (long long)x);
            memcpy(expr, t, strlen(t) + 1);
        }
        v = r;
    }
    if (word)
        bprintf(q, " How many %s does %s have now?", item, name);
    else
        bprintf(q, "What is %s?", expr);
    bprintf(sol, "#### %lld", (long long)v);
    *answer = v;
}

static int is_test(const char *q, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)q[i]) * 1099511628211ull;
    return mix64(h) % 10 == 0;
}

// JSON string body of s (the generator writes only printable ASCII and '\n')
static void json_str(buf *b, const char *s, size_t n) {
    bprintf(b, "\"");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\n')
            bprintf(b, "\\n");
        else if (c == '"' || c == '\\')
            bprintf(b, "\\%c", c);
        else
            bprintf(b, "%c", c);
    }
    bprintf(b, "\"");
}

molt_status molt_mathgen(molt_ctx *ctx, const molt_mathgen_opts *o, const char *path) {
    molt_mathgen_opts d = molt_mathgen_defaults();
    if (!o)
        o = &d;
    const char *split = o->split ? o->split : "train", *fmt = o->format ? o->format : "jsonl";
    int want = !strcmp(split, "train")  ? 0
               : !strcmp(split, "test") ? 1
               : !strcmp(split, "all")  ? 2
                                        : -1;
    int text = !strcmp(fmt, "text") ? 1 : !strcmp(fmt, "jsonl") ? 0 : -1;
    if (want < 0 || text < 0 || o->n < 0 || o->min_steps < 1 || o->max_steps < o->min_steps ||
        o->max_steps > 16 || o->digits < 1 || o->digits > 6 || !path || !*path)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "mathgen: bad options (split \"%s\": train|test|all, format \"%s\": "
                         "jsonl|text, n %lld ≥ 0, steps %d-%d within 1-16, digits %d in 1-6)",
                         split, fmt, (long long)o->n, o->min_steps, o->max_steps, o->digits);
    int         to_stdout = !strcmp(path, "-");
    fio_atomic  w = {0};
    molt_status st = MOLT_OK;
    if (!to_stdout && (st = fio_atomic_open(ctx, path, &w)) != MOLT_OK)
        return st;
    buf      q = {0}, sol = {0}, rec = {0};
    int64_t  written = 0;
    for (uint64_t i = 0; written < o->n && st == MOLT_OK; i++) {
        if (i > (uint64_t)o->n * 1000 + 1000000) { // a split with (almost) no questions
            st = molt__err(ctx, MOLT_ERR_ARG,
                           "mathgen: split \"%s\" gave %lld problems in %llu draws", split,
                           (long long)written, (unsigned long long)i);
            break;
        }
        int64_t ans;
        make_problem(o, i, &q, &sol, &ans);
        if (q.oom || sol.oom)
            break;
        if (want != 2 && is_test(q.s, q.n) != want)
            continue;
        rec.n = 0;
        if (text) {
            bprintf(&rec, "%sQuestion: %.*s\nAnswer: %.*s\n", written ? MOLT_MATHGEN_SEP : "",
                    (int)q.n, q.s, (int)sol.n, sol.s);
        } else {
            bprintf(&rec, "{\"question\": ");
            json_str(&rec, q.s, q.n);
            bprintf(&rec, ", \"answer\": ");
            json_str(&rec, sol.s, sol.n);
            bprintf(&rec, "}\n");
        }
        if (rec.oom)
            break;
        if (to_stdout) {
            if (fwrite(rec.s, 1, rec.n, stdout) != rec.n)
                st = molt__err(ctx, MOLT_ERR_IO, "mathgen: writing to stdout failed");
        } else {
            st = fio_atomic_write(ctx, &w, rec.s, rec.n);
        }
        written++;
    }
    if (st == MOLT_OK && (q.oom || sol.oom || rec.oom))
        st = molt__err(ctx, MOLT_ERR_OOM, "mathgen: out of memory");
    molt__free(q.s);
    molt__free(sol.s);
    molt__free(rec.s);
    if (to_stdout)
        return st == MOLT_OK && fflush(stdout) ? molt__err(ctx, MOLT_ERR_IO, "stdout") : st;
    if (st != MOLT_OK) {
        fio_atomic_abort(&w);
        return st;
    }
    return fio_atomic_commit(ctx, &w);
}
