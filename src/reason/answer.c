/*
 * answer.c — final answers of math problems as exact numbers (include/molt.h,
 * "reasoning", states the rules): extraction from model output or a reference
 * solution, a canonical key per value (reduced rational), pass@k and majority
 * vote. Nothing here allocates or fails: any bytes give an answer or none.
 *
 * Letters: n samples, c correct ones, k drawn.
 */
#include "core/core.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define U63     ((uint64_t)INT64_MAX)
#define KEY_CAP ((int)sizeof(((molt_answer *)0)->key)) // key bytes incl. the NUL

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// one number as written: sign, integer digits, fraction digits, denominator digits
typedef struct num {
    bool        neg;
    const char *ip, *fp, *dp; // digits (ip may hold commas; fp/dp NULL when absent)
    size_t      ni, nf, nd;
} num;

// Scans the number whose first digit is s[i] (s[i−1] is not a digit); *end: one past it.
static void scan_at(const char *s, size_t len, size_t i, num *o, size_t *end) {
    memset(o, 0, sizeof *o);
    o->neg = i > 0 && s[i - 1] == '-' && (i < 2 || !(is_alnum(s[i - 2]) || s[i - 2] == ')'));
    size_t j = i;
    while (j < len && is_digit(s[j]))
        j++;
    // comma groups of exactly three digits
    while (j + 3 < len && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) &&
           is_digit(s[j + 3]) && (j + 4 >= len || !is_digit(s[j + 4])))
        j += 4;
    o->ip = s + i, o->ni = j - i;
    if (j + 1 < len && s[j] == '.' && is_digit(s[j + 1])) {
        size_t k = j + 1;
        while (k < len && is_digit(s[k]))
            k++;
        o->fp = s + j + 1, o->nf = k - j - 1;
        j = k;
    } else if (j + 1 < len && s[j] == '/' && is_digit(s[j + 1])) {
        size_t k = j + 1;
        bool   nonzero = false;
        while (k < len && is_digit(s[k]))
            nonzero |= s[k++] != '0';
        if (nonzero) { // x/0 is not a fraction: the number ends before '/'
            o->dp = s + j + 1, o->nd = k - j - 1;
            j = k;
        }
    }
    *end = j;
}

// ----------------------------------------------------------------------------
// keys

// digits → uint64 (commas skipped), false past 2^63 − 1
static bool to_u63(const char *d, size_t n, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == ',')
            continue;
        unsigned x = (unsigned)(d[i] - '0');
        if (v > (U63 - x) / 10)
            return false;
        v = v * 10 + x;
    }
    *out = v;
    return true;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

// the fallback key, written through a sink: kept when short, hashed when long
typedef struct sink {
    char    *key;
    size_t   n;
    uint64_t h;
} sink;

static void put(sink *k, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ',')
            continue;
        if (k->n + 1 < (size_t)KEY_CAP)
            k->key[k->n] = s[i];
        k->n++;
        k->h = (k->h ^ (unsigned char)s[i]) * 1099511628211ull;
    }
}

static void key_of(const num *x, char *key) {
    // canonical digits: integer part without leading zeros, fraction without trailing ones
    const char *ip = x->ip, *fp = x->fp, *dp = x->dp;
    size_t      ni = x->ni, nf = x->nf, nd = x->nd;
    while (ni > 0 && (*ip == '0' || *ip == ','))
        ip++, ni--;
    while (nf > 0 && fp[nf - 1] == '0')
        nf--;
    while (nd > 1 && *dp == '0')
        dp++, nd--;
    bool zero = ni == 0 && nf == 0;
    // exact path: value = (ip·10^nf + fp) / (10^nf · dp), all below 2^63
    uint64_t a, b, p10 = 1, den = 1;
    bool     ok = nf <= 18 && to_u63(ip, ni, &a) && to_u63(fp ? fp : "", nf, &b);
    for (size_t i = 0; ok && i < nf; i++)
        p10 *= 10;
    if (ok)
        ok = a <= (U63 - b) / p10;
    if (ok && dp)
        ok = to_u63(dp, nd, &den) && den <= U63 / p10;
    if (ok) {
        uint64_t p = a * p10 + b, q = den * p10, g = gcd_u64(p, q);
        p /= g ? g : 1, q /= g ? g : 1;
        const char *sg = x->neg && p ? "-" : "";
        if (q == 1)
            snprintf(key, (size_t)KEY_CAP, "%s%llu", sg, (unsigned long long)p);
        else
            snprintf(key, (size_t)KEY_CAP, "%s%llu/%llu", sg, (unsigned long long)p,
                     (unsigned long long)q);
        return;
    }
    sink k = {key, 0, 1469598103934665603ull};
    put(&k, dp ? "F:" : "D:", 2);
    if (x->neg && !zero)
        put(&k, "-", 1);
    put(&k, ni ? ip : "0", ni ? ni : 1);
    if (nf) {
        put(&k, ".", 1);
        put(&k, fp, nf);
    }
    if (dp) {
        put(&k, "/", 1);
        put(&k, dp, nd);
    }
    if (k.n + 1 <= (size_t)KEY_CAP)
        key[k.n] = '\0';
    else
        snprintf(key, (size_t)KEY_CAP, "H:%016llx", (unsigned long long)k.h);
}

// ----------------------------------------------------------------------------
// extraction

// the first (last = false) or last number of s[lo, hi); false when none
static bool find_number(const char *s, size_t lo, size_t hi, bool last, num *out) {
    bool   got = false;
    size_t i = lo;
    while (i < hi) {
        if (!is_digit(s[i])) {
            i++;
            continue;
        }
        num    x;
        size_t e;
        scan_at(s, hi, i, &x, &e);
        *out = x, got = true;
        if (!last)
            return true;
        i = e;
        while (i < hi && is_digit(s[i])) // defensive: scan_at always ends past the digits
            i++;
    }
    return got;
}

void molt_answer_extract(const char *text, size_t len, molt_answer *out) {
    memset(out, 0, sizeof *out);
    if (!text)
        return;
    num    x;
    size_t mark = 0;
    bool   has_mark = false;
    for (size_t i = 0; i + 4 <= len; i++)
        if (text[i] == '#' && !memcmp(text + i, "####", 4))
            mark = i + 4, has_mark = true;
    if (has_mark && find_number(text, mark, len, false, &x)) {
        out->marker = 1;
    } else if (!find_number(text, 0, len, true, &x)) {
        return;
    }
    out->found = 1;
    key_of(&x, out->key);
}

void molt_answer_parse(const char *s, size_t len, molt_answer *out) {
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    size_t lo = 0, hi = len;
    while (lo < hi && (s[lo] == ' ' || s[lo] == '\t' || s[lo] == '\n' || s[lo] == '\r'))
        lo++;
    while (hi > lo && (s[hi - 1] == ' ' || s[hi - 1] == '\t' || s[hi - 1] == '\n' ||
                       s[hi - 1] == '\r'))
        hi--;
    if (lo < hi && s[lo] == '$')
        lo++;
    if (hi > lo && (s[hi - 1] == '%' || s[hi - 1] == '.'))
        hi--;
    size_t d = lo + (lo < hi && (s[lo] == '-' || s[lo] == '+'));
    if (d >= hi || !is_digit(s[d]))
        return;
    num    x;
    size_t e;
    scan_at(s, hi, d, &x, &e);
    x.neg = s[lo] == '-';
    if (e != hi)
        return;
    out->found = 1;
    key_of(&x, out->key);
}

int molt_answer_equal(const molt_answer *a, const molt_answer *b) {
    return a->found && b->found && !strcmp(a->key, b->key);
}

// ----------------------------------------------------------------------------
// pass@k and majority vote

double molt_pass_at_k(int64_t n, int64_t c, int64_t k) {
    if (c < 0 || c > n || k < 1 || k > n)
        return NAN;
    if (n - c < k)
        return 1.0;
    // C(n−c, k)/C(n, k) = Π_{i=n−c+1..n} (1 − k/i): c factors in (0, 1], no overflow
    double prod = 1.0;
    for (int64_t i = n - c + 1; i <= n; i++)
        prod *= 1.0 - (double)k / (double)i;
    return 1.0 - prod;
}

// Sorts idx[0..n) by (key, index): insertion sort into runs merged bottom-up (stable, O(n log n)).
static int cmp_at(const molt_answer *a, int32_t i, int32_t j) {
    int c = strcmp(a[i].key, a[j].key);
    return c ? c : (i > j) - (i < j);
}

int32_t molt_majority_vote(const molt_answer *a, int32_t n) {
    if (!a || n <= 0)
        return -1;
    int32_t *idx = molt__malloc(sizeof(int32_t) * 2 * (size_t)n), m = 0;
    if (!idx) { // no memory: the quadratic count needs none
        int32_t best = -1, best_c = 0;
        for (int32_t i = 0; i < n; i++) {
            if (!a[i].found)
                continue;
            bool seen = false;
            for (int32_t j = 0; j < i && !seen; j++)
                seen = a[j].found && !strcmp(a[j].key, a[i].key);
            if (seen)
                continue;
            int32_t c = 0;
            for (int32_t j = i; j < n; j++)
                c += a[j].found && !strcmp(a[j].key, a[i].key);
            if (c > best_c)
                best = i, best_c = c;
        }
        return best;
    }
    for (int32_t i = 0; i < n; i++)
        if (a[i].found)
            idx[m++] = i;
    int32_t *tmp = idx + n;
    for (int32_t w = 1; w < m; w *= 2) { // bottom-up merge sort by (key, index)
        for (int32_t lo = 0; lo < m; lo += 2 * w) {
            int32_t mid = MOLT_MIN(lo + w, m), hi = MOLT_MIN(lo + 2 * w, m);
            int32_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = cmp_at(a, idx[i], idx[j]) <= 0 ? idx[i++] : idx[j++];
            while (i < mid)
                tmp[o++] = idx[i++];
            while (j < hi)
                tmp[o++] = idx[j++];
        }
        memcpy(idx, tmp, sizeof(int32_t) * (size_t)m);
    }
    // runs of equal keys; each run's first element is its key's first occurrence
    int32_t best = -1, best_c = 0;
    for (int32_t r = 0; r < m;) {
        int32_t e = r + 1;
        while (e < m && !strcmp(a[idx[e]].key, a[idx[r]].key))
            e++;
        int32_t c = e - r, first = idx[r];
        if (c > best_c || (c == best_c && first < best))
            best = first, best_c = c;
        r = e;
    }
    molt__free(idx);
    return best;
}
