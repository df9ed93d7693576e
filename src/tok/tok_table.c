/*
 * tok_table.c — the pieces every tokenizer kind is built from: the token
 * table (raw bytes per id in one arena), the open-addressing hash maps
 * (bytes -> id, id pair -> merge), the index of added tokens used to find
 * them in text, the regex pre-tokenizer stages and the UTF-8 validator.
 *
 * Hash maps are linear-probing tables at load factor <= 1/2, sized once at
 * load time (the tokenizer is immutable afterwards). Keys of the bytes map
 * are not copied: a slot holds the id, and the key is the token's bytes in
 * the arena. All memory goes through molt__malloc, PCRE2's included (a
 * general context with molt's allocator), so leak checks see everything.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// object and token table

molt_status tok__alloc(molt_ctx *ctx, const char *what, tok_kind kind, molt_tokenizer **out) {
    molt_tokenizer *t = molt__calloc(1, sizeof *t);
    if (!t)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    t->kind = kind;
    t->bos = t->eos = t->unk_id = -1;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    t->path = molt__strdup(what ? what : "<buffer>");
    if (!t->path) {
        molt__free(t);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    }
    *out = t;
    return MOLT_OK;
}

molt_status tok__table_init(molt_ctx *ctx, molt_tokenizer *t, int32_t n_vocab, size_t arena_cap) {
    if (n_vocab < 0)
        return molt__err(ctx, MOLT_ERR_INTERNAL, "%s: negative vocab size", t->path);
    size_t n = (size_t)n_vocab ? (size_t)n_vocab : 1;
    t->n_vocab = n_vocab;
    t->off = molt__calloc(n, sizeof *t->off);
    t->len = molt__calloc(n, sizeof *t->len);
    t->flags = molt__calloc(n, sizeof *t->flags);
    t->arena = molt__malloc(arena_cap ? arena_cap : 1);
    t->arena_cap = arena_cap ? arena_cap : 1;
    t->arena_len = 0;
    if (!t->off || !t->len || !t->flags || !t->arena)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory for %d tokens", t->path, n_vocab);
    return MOLT_OK;
}

molt_status tok__table_set(molt_ctx *ctx, molt_tokenizer *t, int32_t id, const char *s, size_t n,
                           uint8_t flags) {
    MOLT_ASSERT(id >= 0 && id < t->n_vocab && !(t->flags[id] & TOKF_PRESENT));
    // Offsets are 32-bit: a vocabulary over 4 GiB of token bytes is not a tokenizer.
    if (n > UINT32_MAX || t->arena_len + n > UINT32_MAX)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: token bytes exceed 4 GiB", t->path);
    if (t->arena_len + n > t->arena_cap) {
        size_t cap = t->arena_cap * 2;
        while (cap < t->arena_len + n)
            cap *= 2;
        char *a = molt__realloc(t->arena, cap);
        if (!a)
            return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory for token bytes", t->path);
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n)
        memcpy(t->arena + t->arena_len, s, n);
    t->off[id] = (uint32_t)t->arena_len;
    t->len[id] = (uint32_t)n;
    t->flags[id] = (uint8_t)(flags | TOKF_PRESENT);
    t->arena_len += n;
    if (n > t->max_len)
        t->max_len = (uint32_t)n;
    return MOLT_OK;
}

void tok__free(molt_tokenizer *t) {
    if (!t)
        return;
    for (int i = 0; i < t->n_split; i++)
        pcre2_code_free((pcre2_code *)t->split[i]);
    if (t->pcre_mctx)
        pcre2_match_context_free((pcre2_match_context *)t->pcre_mctx);
    if (t->pcre_gctx)
        pcre2_general_context_free((pcre2_general_context *)t->pcre_gctx);
    tok__strmap_free(&t->vocab);
    tok__pairmap_free(&t->merges);
    molt__free(t->arena);
    molt__free(t->off);
    molt__free(t->len);
    molt__free(t->flags);
    molt__free(t->added);
    molt__free(t->scores);
    molt__free(t->src);
    molt__free(t->path);
    molt__free(t);
}

// ----------------------------------------------------------------------------
// bytes -> id

// A multiply-xorshift hash over 8-byte words: tokens are short, and this is
// on the hot path of every BPE step (tiktoken looks up each candidate pair).
uint32_t tok__hash(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)(uint8_t)s[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n && c < (1u << 31))
        c <<= 1;
    return c;
}

molt_status tok__strmap_build(molt_ctx *ctx, tok_strmap *m, const molt_tokenizer *t,
                              uint8_t skip_flags) {
    tok__strmap_free(m);
    m->cap = pow2_at_least((size_t)t->n_vocab * 2);
    m->hash = molt__malloc((size_t)m->cap * sizeof *m->hash);
    m->id = molt__malloc((size_t)m->cap * sizeof *m->id);
    if (!m->hash || !m->id) {
        tok__strmap_free(m);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory for the vocab map", t->path);
    }
    memset(m->id, 0xFF, (size_t)m->cap * sizeof *m->id); // -1 = free
    uint32_t mask = m->cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & TOKF_PRESENT) || (t->flags[id] & skip_flags))
            continue;
        const char *s = t->arena + t->off[id];
        size_t      n = t->len[id];
        uint32_t    h = tok__hash(s, n), i = h & mask;
        bool        dup = false;
        for (; m->id[i] >= 0; i = (i + 1) & mask) {
            int32_t o = m->id[i];
            if (m->hash[i] == h && t->len[o] == n && memcmp(t->arena + t->off[o], s, n) == 0) {
                dup = true; // same bytes twice: the lower id wins, as a sorted lookup would
                break;
            }
        }
        if (!dup) {
            m->hash[i] = h;
            m->id[i] = id;
        }
    }
    return MOLT_OK;
}

int32_t tok__strmap_get(const tok_strmap *m, const molt_tokenizer *t, const char *s, size_t n) {
    if (!m->cap)
        return -1;
    uint32_t mask = m->cap - 1, h = tok__hash(s, n);
    for (uint32_t i = h & mask; m->id[i] >= 0; i = (i + 1) & mask) {
        int32_t o = m->id[i];
        if (m->hash[i] == h && t->len[o] == n && memcmp(t->arena + t->off[o], s, n) == 0)
            return o;
    }
    return -1;
}

void tok__strmap_free(tok_strmap *m) {
    molt__free(m->hash);
    molt__free(m->id);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// (id, id) -> (rank, merged id)

static uint32_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return (uint32_t)k;
}

molt_status tok__pairmap_init(molt_ctx *ctx, tok_pairmap *m, size_t n) {
    tok__pairmap_free(m);
    m->cap = pow2_at_least(n * 2);
    m->key = molt__malloc((size_t)m->cap * sizeof *m->key);
    m->rank = molt__malloc((size_t)m->cap * sizeof *m->rank);
    m->id = molt__malloc((size_t)m->cap * sizeof *m->id);
    if (!m->key || !m->rank || !m->id) {
        tok__pairmap_free(m);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %zu merges", n);
    }
    memset(m->key, 0xFF, (size_t)m->cap * sizeof *m->key);
    return MOLT_OK;
}

// A pair already present is overwritten: HF collects merges into a map in
// file order, so a repeated merge keeps its last rank.
void tok__pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = m->cap - 1, i = pair_hash(k) & mask;
    while (m->key[i] != UINT64_MAX && m->key[i] != k)
        i = (i + 1) & mask;
    m->key[i] = k;
    m->rank[i] = rank;
    m->id[i] = id;
}

bool tok__pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    if (!m->cap)
        return false;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = pair_hash(k) & mask; m->key[i] != UINT64_MAX; i = (i + 1) & mask) {
        if (m->key[i] == k) {
            *rank = m->rank[i];
            *id = m->id[i];
            return true;
        }
    }
    return false;
}

void tok__pairmap_free(tok_pairmap *m) {
    molt__free(m->key);
    molt__free(m->rank);
    molt__free(m->id);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// added tokens: bucketed by first byte, longest first, so that the first
// candidate that matches at a position is the leftmost-longest match HF's
// Aho-Corasick (MatchKind::LeftmostLongest) finds.

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

molt_status tok__index_added(molt_ctx *ctx, molt_tokenizer *t) {
    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->flags[id] & TOKF_ADDED) && t->len[id] > 0)
            n++;
    molt__free(t->added);
    t->added = NULL;
    t->n_added = n;
    memset(t->added_start, 0, sizeof t->added_start);
    if (n == 0)
        return MOLT_OK;
    uint64_t *keys = molt__malloc((size_t)n * sizeof *keys);
    t->added = molt__malloc((size_t)n * sizeof *t->added);
    if (!keys || !t->added) {
        molt__free(keys);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory for added tokens", t->path);
    }
    int32_t k = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & TOKF_ADDED) || t->len[id] == 0)
            continue;
        uint64_t fb = (uint8_t)t->arena[t->off[id]];
        uint64_t l = MOLT_MIN(t->len[id], 0xFFFFFFu);
        keys[k++] = (fb << 56) | ((0xFFFFFFu - l) << 32) | (uint32_t)id;
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    for (int32_t i = 0; i < n; i++) {
        t->added[i] = (int32_t)(uint32_t)keys[i];
        t->added_start[(keys[i] >> 56) + 1]++;
    }
    for (int b = 0; b < 256; b++)
        t->added_start[b + 1] += t->added_start[b];
    molt__free(keys);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// regex pre-tokenizer stages

static void *pcre_alloc(size_t n, void *user) {
    (void)user;
    return molt__malloc(n);
}
static void pcre_free(void *p, void *user) {
    (void)user;
    molt__free(p);
}

// PCRE2's \s (with UCP) is \p{Z}, \h and \v, and its \h keeps U+180E
// MONGOLIAN VOWEL SEPARATOR, which stopped being a space in Unicode 6.3. The
// engines HF and tiktoken use (Oniguruma, Rust regex) take \s as the Unicode
// White_Space property, so \s and \S are rewritten to that explicit set.
// (\S inside a character class cannot be rewritten without class
// subtraction; it keeps PCRE2's meaning.)
// What remains different is the Unicode version of the tables: PCRE2 10.42
// has Unicode 14, the references 15+, so \p{L} / \p{N} on characters first
// assigned in Unicode 15 (Kawi, Nag Mundari, Kaktovik numerals) can differ.
#define WS_SET "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
               "\\x{202f}\\x{205f}\\x{3000}"

static char *rewrite_spaces(const char *p) {
    size_t n = strlen(p), n_esc = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '\\')
            n_esc += p[++i] == 's' || p[i] == 'S';
    char *out = molt__malloc(n + n_esc * (sizeof WS_SET + 3) + 1), *o = out;
    if (!out)
        return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            if (e == 's' || (e == 'S' && !in_class)) {
                o += sprintf(o, in_class ? "%s" : e == 's' ? "[%s]" : "[^%s]", WS_SET);
            } else if (e == 'Q') { // \Q...\E: literal text, copied as is
                const char *end = strstr(p + i + 1, "\\E");
                size_t      k = end ? (size_t)(end - p) + 2 : n;
                memcpy(o, p + i - 1, k - (i - 1));
                o += k - (i - 1);
                i = k - 1;
            } else {
                *o++ = '\\';
                *o++ = e;
            }
            continue;
        }
        *o++ = c;
        if (!in_class && c == '[') {
            in_class = true;
            if (i + 1 < n && p[i + 1] == '^')
                *o++ = p[++i];
            if (i + 1 < n && p[i + 1] == ']') // a leading ']' is a literal
                *o++ = p[++i];
        } else if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {
            const char *end = strstr(p + i + 2, ":]"); // POSIX class [:alpha:]
            if (end) {
                size_t k = (size_t)(end - p) + 2;
                memcpy(o, p + i + 1, k - i - 1);
                o += k - i - 1;
                i = k - 1;
            }
        } else if (in_class && c == ']')
            in_class = false;
    }
    *o = 0;
    return out;
}

molt_status tok__add_split(molt_ctx *ctx, molt_tokenizer *t, const char *what,
                           const char *pattern_in) {
    if (t->n_split >= TOK_MAX_SPLITS)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: more than %d regex pre-tokenizers", what,
                         TOK_MAX_SPLITS);
    if (!t->pcre_gctx) {
        t->pcre_gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
        if (!t->pcre_gctx)
            return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory (regex)", what);
    }
    if (!t->pcre_mctx) {
        // Tokenizer patterns settle each match in a few dozen steps; a
        // hostile pattern (nested quantifiers) could take PCRE2's default
        // 10M steps per call at every position. A match that hits the limit
        // is an error naming it (tok_bpe.c: regex_error).
        pcre2_match_context *mc = pcre2_match_context_create(t->pcre_gctx);
        if (!mc)
            return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory (regex)", what);
        pcre2_set_match_limit(mc, TOK_MATCH_LIMIT);
        pcre2_set_depth_limit(mc, TOK_MATCH_LIMIT);
        t->pcre_mctx = mc;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(t->pcre_gctx);
    char                  *pattern = rewrite_spaces(pattern_in);
    if (!cc || !pattern) {
        pcre2_compile_context_free(cc);
        molt__free(pattern);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory (regex)", what);
    }
    int        err = 0;
    PCRE2_SIZE eoff = 0;
    // UTF + UCP: \s, \p{L}, \p{N} and (?i) case folding are Unicode-wide, as
    // in the Rust regex / Oniguruma engines HF and tiktoken use.
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &err, &eoff, cc);
    pcre2_compile_context_free(cc);
    molt__free(pattern);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        molt_status code = err == PCRE2_ERROR_HEAP_FAILED ? MOLT_ERR_OOM : MOLT_ERR_FORMAT;
        return molt__err(ctx, code, "%s: pre-tokenizer regex does not compile: %s", what,
                         (const char *)msg);
    }
    // JIT is an optimisation only: when it is unavailable (or out of
    // executable memory) pcre2_match runs the interpreter on the same code.
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    t->split[t->n_split++] = re;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// UTF-8 validation (RFC 3629, as PCRE2 checks it)

size_t tok__utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        // ASCII fast path, 8 bytes at a time.
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t  k;
        uint8_t lo = 0x80, hi = 0xBF; // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0)
                lo = 0xA0; // overlong
            if (c == 0xED)
                hi = 0x9F; // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0)
                lo = 0x90; // overlong
            if (c == 0xF4)
                hi = 0x8F; // above U+10FFFF
        } else
            return i;
        if (n - i <= k) // truncated sequence
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return i;
        i += k + 1;
    }
    return n;
}
