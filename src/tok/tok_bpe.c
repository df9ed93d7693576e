/*
 * tok_bpe.c — byte-level BPE encoding, shared by HF tokenizer.json and
 * tiktoken rank files. Text goes through three steps:
 *
 *   1. added tokens are found verbatim (leftmost, then longest) and emitted
 *      as their ids; the text between them is encoded by steps 2-3;
 *   2. the regex pre-tokenizer cuts it into words ("Isolated" behaviour:
 *      matches and the gaps between them are both words; several stages
 *      apply in order, each to the previous stage's words);
 *   3. each word is merged: by merge rank over token-id pairs (HF, the
 *      algorithm of tokenizers' Word::merge_all) or by rank of the
 *      concatenated bytes (tiktoken's _byte_pair_merge). Both pick the
 *      lowest rank and, among equal ranks, the leftmost pair; a binary heap
 *      with stale-entry checks does that in O(n log n) where the reference
 *      rescans in O(n^2), which matters for multi-megabyte punctuation runs.
 *
 * The sentencepiece form of tokenizer.json (tokenizer.h) skips step 2: each
 * text between added tokens is one word, normalized and split into
 * characters as in tokenizers' BPE::merge_word (sp_segment), then step 3.
 *
 * Invalid UTF-8: HF and tiktoken only take valid Unicode strings, so there is
 * no reference behaviour. We never hand invalid bytes to PCRE2 (matching
 * with PCRE2_NO_UTF_CHECK on invalid input is undefined): maximal valid runs
 * go through the regex, and each byte that is not part of a valid sequence
 * becomes a word of its own (which byte-level BPE maps to that byte's token).
 * decode(encode(x)) == x holds for any bytes.
 *
 * Words repeat a lot (" the", " and"), so each call keeps a direct-mapped
 * cache from a word (pointing into the caller's text) to where its ids were
 * first written in the output; a hit copies them. Scratch memory belongs to
 * the call, so encoding is thread-safe on a shared tokenizer.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok/tokenizer.h"

#include <string.h>

typedef struct cache_slot {
    const char *w;   // word in the caller's text (NULL = empty slot)
    size_t      n;   // word length
    size_t      at;  // its ids are ids->v[at .. at+cnt)
    size_t      cnt;
} cache_slot;

typedef struct heap_ent {
    int32_t rank;
    int32_t pos;   // HF: left symbol index; tiktoken: left part start byte
    int32_t aux;   // HF: merged id; tiktoken: end byte of the right part
} heap_ent;

typedef struct enc {
    molt_ctx             *ctx;
    const molt_tokenizer *t;
    const char           *text; // the caller's whole text (error positions)
    tok_ids              *ids;
    pcre2_match_data     *md;
    cache_slot           *cache;
    uint32_t              cache_mask;
    // per-word scratch, grown on demand
    int32_t  *tok, *prv, *nxt;
    size_t    sym_cap;
    heap_ent *heap;
    size_t    heap_n, heap_cap;
} enc;

molt_status tok__ids_push(molt_ctx *ctx, tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t   cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = molt__realloc(ids->v, cap * sizeof *v);
        if (!v)
            return molt__err(ctx, MOLT_ERR_OOM, "tokenize: out of memory for %zu ids", cap);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return MOLT_OK;
}

static molt_status ids_reserve(molt_ctx *ctx, tok_ids *ids, size_t extra) {
    if (ids->cap - ids->n >= extra)
        return MOLT_OK;
    size_t cap = ids->cap ? ids->cap : 64;
    while (cap - ids->n < extra)
        cap *= 2;
    int32_t *v = molt__realloc(ids->v, cap * sizeof *v);
    if (!v)
        return molt__err(ctx, MOLT_ERR_OOM, "tokenize: out of memory for %zu ids", cap);
    ids->v = v;
    ids->cap = cap;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// scratch

static molt_status sym_reserve(enc *e, size_t n) {
    if (n <= e->sym_cap)
        return MOLT_OK;
    size_t cap = e->sym_cap ? e->sym_cap : 64;
    while (cap < n)
        cap *= 2;
    int32_t *a = molt__realloc(e->tok, cap * sizeof *a);
    if (a)
        e->tok = a;
    int32_t *b = a ? molt__realloc(e->prv, cap * sizeof *b) : NULL;
    if (b)
        e->prv = b;
    int32_t *c = b ? molt__realloc(e->nxt, cap * sizeof *c) : NULL;
    if (c)
        e->nxt = c;
    if (!c)
        return molt__err(e->ctx, MOLT_ERR_OOM, "tokenize: out of memory for a %zu-byte word", n);
    e->sym_cap = cap;
    return MOLT_OK;
}

static bool ent_less(heap_ent a, heap_ent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static molt_status heap_push(enc *e, heap_ent x) {
    if (e->heap_n == e->heap_cap) {
        size_t    cap = e->heap_cap ? e->heap_cap * 2 : 64;
        heap_ent *h = molt__realloc(e->heap, cap * sizeof *h);
        if (!h)
            return molt__err(e->ctx, MOLT_ERR_OOM, "tokenize: out of memory (merge heap)");
        e->heap = h;
        e->heap_cap = cap;
    }
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(x, e->heap[p]))
            break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = x;
    return MOLT_OK;
}

static heap_ent heap_pop(enc *e) {
    heap_ent top = e->heap[0], x = e->heap[--e->heap_n];
    size_t   i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && ent_less(e->heap[c + 1], e->heap[c]))
            c++;
        if (!ent_less(e->heap[c], x))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n)
        e->heap[i] = x;
    return top;
}

// ----------------------------------------------------------------------------
// HF: merges over token-id pairs (tokenizers/src/models/bpe/word.rs merge_all)

static molt_status hf_push_pair(enc *e, int32_t i) {
    int32_t rank, id, j = e->nxt[i];
    if (j < 0 || !tok__pairmap_get(&e->t->merges, e->tok[i], e->tok[j], &rank, &id))
        return MOLT_OK;
    return heap_push(e, (heap_ent){rank, i, id});
}

// Merges the m symbols e->tok[0..m) by rank and appends the result to the ids.
static molt_status hf_merge(enc *e, int32_t m) {
    const molt_tokenizer *t = e->t;
    molt_status           st;
    if (m == 0)
        return MOLT_OK;
    for (int32_t i = 0; i < m; i++) {
        e->prv[i] = i - 1;
        e->nxt[i] = i + 1;
    }
    e->nxt[m - 1] = -1;
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        if ((st = hf_push_pair(e, i)) != MOLT_OK)
            return st;
    while (e->heap_n) {
        heap_ent top = heap_pop(e);
        int32_t  i = top.pos, j = e->nxt[i], rank, id;
        // Stale entries: i was absorbed (tok < 0), has no right neighbour, or
        // the pair now there no longer merges into the same token.
        if (e->tok[i] < 0 || j < 0 || !tok__pairmap_get(&t->merges, e->tok[i], e->tok[j], &rank, &id) ||
            id != top.aux)
            continue;
        e->tok[i] = top.aux;
        e->tok[j] = -1;
        e->nxt[i] = e->nxt[j];
        if (e->nxt[j] >= 0)
            e->prv[e->nxt[j]] = i;
        if (e->prv[i] >= 0 && (st = hf_push_pair(e, e->prv[i])) != MOLT_OK)
            return st;
        if ((st = hf_push_pair(e, i)) != MOLT_OK)
            return st;
    }
    for (int32_t i = 0; i >= 0; i = e->nxt[i])
        if ((st = tok__ids_push(e->ctx, e->ids, e->tok[i])) != MOLT_OK)
            return st;
    return MOLT_OK;
}

static molt_status bpe_hf(enc *e, const char *w, size_t n) {
    const molt_tokenizer *t = e->t;
    molt_status           st;
    if (t->ignore_merges) { // Llama-3: a word that is a token is emitted whole
        int32_t id = tok__strmap_get(&t->vocab, t, w, n);
        if (id >= 0)
            return tok__ids_push(e->ctx, e->ids, id);
    }
    if ((st = sym_reserve(e, n)) != MOLT_OK)
        return st;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)w[i]];
        if (id < 0)
            id = t->unk_id; // HF: unknown chars become unk, or vanish without one
        if (id >= 0)
            e->tok[m++] = id;
    }
    return hf_merge(e, m);
}

// ----------------------------------------------------------------------------
// the sentencepiece form (tokenizer.h): tokenizers' Prepend + Replace
// normalizers, then BPE::merge_word on the whole segment

#define SP_SPACE "\xE2\x96\x81" // U+2581

// The characters of the text are taken as llama2.c groups bytes: a byte and
// the continuation bytes after it, at most 4 in all (for valid UTF-8 that is a
// character; HF takes only valid text). A space is "▁" (the normalizer), and
// "▁" comes first (Prepend). Each character is a vocab token, else its bytes'
// <0xNN> tokens, else unk (as merge_word does).
static molt_status sp_segment(enc *e, const char *s, size_t n) {
    const molt_tokenizer *t = e->t;
    if (n == 0)
        return MOLT_OK;
    if (n > (size_t)INT32_MAX / 4)
        return molt__err(e->ctx, MOLT_ERR_ARG, "tokenize: a %zu-byte segment is too long", n);
    molt_status st = sym_reserve(e, 3 * n + 3);
    if (st != MOLT_OK)
        return st;
    int32_t m = 0, unk = -1; // unk: a pending unknown, as merge_word's `unk`
    bool    first = true;    // the prepended "▁"
    for (size_t i = 0; i < n || first;) {
        const char *c = SP_SPACE;
        size_t      k = 3, used = 0; // the character (as normalized) and its input bytes
        if (!first) {
            used = 1;
            while (i + used < n && used < 4 && ((uint8_t)s[i + used] & 0xC0) == 0x80)
                used++;
            if (!(used == 1 && s[i] == ' ')) {
                c = s + i;
                k = used;
            }
        }
        first = false;
        int32_t id = tok__strmap_get(&t->vocab, t, c, k);
        bool    bytes = id < 0 && t->byte_fallback;
        for (size_t j = 0; bytes && j < k; j++)
            bytes = t->byte_id[(uint8_t)c[j]] >= 0;
        if (id >= 0) {
            if (unk >= 0)
                e->tok[m++] = unk;
            unk = -1;
            e->tok[m++] = id;
        } else if (bytes) { // (a pending unk stays pending, as in merge_word)
            for (size_t j = 0; j < k; j++)
                e->tok[m++] = t->byte_id[(uint8_t)c[j]];
        } else if (t->unk_id >= 0) {
            if (unk >= 0 && !t->fuse_unk)
                e->tok[m++] = unk;
            unk = t->unk_id;
        }
        i += used;
    }
    if (unk >= 0)
        e->tok[m++] = unk;
    return hf_merge(e, m);
}

// ----------------------------------------------------------------------------
// tiktoken: ranks of concatenated bytes (tiktoken/src/lib.rs _byte_pair_merge).
// Parts are byte ranges [i, nxt[i]); tok[i] = 1 marks a part start.

static molt_status tt_push_pair(enc *e, const char *w, int32_t n, int32_t i) {
    int32_t j = e->nxt[i];
    if (j >= n)
        return MOLT_OK;
    int32_t end = e->nxt[j];
    int32_t r = tok__strmap_get(&e->t->vocab, e->t, w + i, (size_t)(end - i));
    return r < 0 ? MOLT_OK : heap_push(e, (heap_ent){r, i, end});
}

static molt_status bpe_tiktoken(enc *e, const char *w, size_t len) {
    const molt_tokenizer *t = e->t;
    molt_status           st;
    int32_t               id = tok__strmap_get(&t->vocab, t, w, len);
    if (id >= 0) // tiktoken looks the whole piece up first
        return tok__ids_push(e->ctx, e->ids, id);
    if (len > INT32_MAX - 1)
        return molt__err(e->ctx, MOLT_ERR_ARG, "tokenize: a single %zu-byte word is too long", len);
    int32_t n = (int32_t)len;
    if ((st = sym_reserve(e, len + 1)) != MOLT_OK)
        return st;
    for (int32_t i = 0; i < n; i++) {
        e->tok[i] = 1;
        e->prv[i] = i - 1;
        e->nxt[i] = i + 1;
    }
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if ((st = tt_push_pair(e, w, n, i)) != MOLT_OK)
            return st;
    while (e->heap_n) {
        heap_ent top = heap_pop(e);
        int32_t  i = top.pos, j = e->nxt[i];
        // Parts only grow, so "i still starts a part whose right neighbour
        // ends at the same byte" identifies the same pair.
        if (!e->tok[i] || j >= n || e->nxt[j] != top.aux)
            continue;
        e->tok[j] = 0;
        e->nxt[i] = top.aux;
        if (top.aux < n)
            e->prv[top.aux] = i;
        if (e->prv[i] >= 0 && (st = tt_push_pair(e, w, n, e->prv[i])) != MOLT_OK)
            return st;
        if ((st = tt_push_pair(e, w, n, i)) != MOLT_OK)
            return st;
    }
    for (int32_t i = 0; i < n; i = e->nxt[i]) {
        id = tok__strmap_get(&t->vocab, t, w + i, (size_t)(e->nxt[i] - i));
        MOLT_ASSERT(id >= 0); // every single byte has a rank (checked at load)
        if ((st = tok__ids_push(e->ctx, e->ids, id)) != MOLT_OK)
            return st;
    }
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// words and pre-tokenization

static molt_status emit_word(enc *e, const char *w, size_t n) {
    if (n == 0)
        return MOLT_OK;
    cache_slot *c = &e->cache[tok__hash(w, n) & e->cache_mask];
    if (c->w && c->n == n && memcmp(c->w, w, n) == 0) {
        molt_status st = ids_reserve(e->ctx, e->ids, c->cnt);
        if (st != MOLT_OK)
            return st;
        memcpy(e->ids->v + e->ids->n, e->ids->v + c->at, c->cnt * sizeof(int32_t));
        e->ids->n += c->cnt;
        return MOLT_OK;
    }
    size_t      at = e->ids->n;
    molt_status st = e->t->kind == TOK_TIKTOKEN ? bpe_tiktoken(e, w, n) : bpe_hf(e, w, n);
    if (st != MOLT_OK)
        return st;
    *c = (cache_slot){w, n, at, e->ids->n - at};
    return MOLT_OK;
}

static size_t utf8_char_len(const char *s, size_t n) {
    size_t k = 1;
    while (k < n && ((uint8_t)s[k] & 0xC0) == 0x80)
        k++;
    return k;
}

// A pattern that needs more than TOK_MATCH_LIMIT steps (nested quantifiers
// backtracking over the text) is an error naming the limit: never an
// unbounded match, never a silent change of the words.
static molt_status regex_error(enc *e, int k, int rc, size_t at) {
    if (rc == PCRE2_ERROR_NOMEMORY)
        return molt__err(e->ctx, MOLT_ERR_OOM, "tokenize: out of memory (regex)");
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
        return molt__err(e->ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: tokenize: pre-tokenizer regex %d hit the match limit (%d steps, "
                         "TOK_MATCH_LIMIT) at byte %zu of the text: the pattern backtracks "
                         "without bound on this input",
                         e->t->path, k + 1, TOK_MATCH_LIMIT, at);
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return molt__err(e->ctx, MOLT_ERR_INTERNAL, "%s: tokenize: regex %d: %s (at byte %zu)",
                     e->t->path, k + 1, (const char *)msg, at);
}

// Splits valid UTF-8 s[0..n) with stage k and hands each piece to stage k+1.
static molt_status split_stage(enc *e, int k, const char *s, size_t n) {
    if (k == e->t->n_split)
        return emit_word(e, s, n);
    const pcre2_code *re = e->t->split[k];
    size_t            gap = 0, from = 0;
    molt_status       st;
    while (from < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, e->md,
                             (pcre2_match_context *)e->t->pcre_mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return regex_error(e, k, rc, (size_t)(s + from - e->text));
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t      ms = ov[0], me = ov[1];
        if (ms < gap || me > n || me <= ms) {
            // An empty match: no word boundary here; move one character on
            // and let the gap grow.
            size_t at = ms < from ? from : ms;
            if (at >= n)
                break;
            from = at + utf8_char_len(s + at, n - at);
            continue;
        }
        if (ms > gap && (st = split_stage(e, k + 1, s + gap, ms - gap)) != MOLT_OK)
            return st;
        if ((st = split_stage(e, k + 1, s + ms, me - ms)) != MOLT_OK)
            return st;
        gap = from = me;
    }
    return gap < n ? split_stage(e, k + 1, s + gap, n - gap) : MOLT_OK;
}

// Text without added tokens: valid UTF-8 runs through the regex stages,
// each invalid byte as a word of its own.
static molt_status encode_segment(enc *e, const char *s, size_t n) {
    molt_status st;
    while (n > 0) {
        size_t v = tok__utf8_valid_prefix((const uint8_t *)s, n);
        if (v && (st = split_stage(e, 0, s, v)) != MOLT_OK)
            return st;
        s += v;
        n -= v;
        if (n) {
            if ((st = emit_word(e, s, 1)) != MOLT_OK)
                return st;
            s++;
            n--;
        }
    }
    return MOLT_OK;
}

// Leftmost, then longest added token at or after pos. Returns its start
// (len when none) and its id in *id.
static size_t find_added(const molt_tokenizer *t, const char *text, size_t len, size_t pos,
                         int32_t *id) {
    if (t->n_added == 0)
        return len;
    for (size_t i = pos; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        for (int32_t k = t->added_start[b]; k < t->added_start[b + 1]; k++) {
            int32_t a = t->added[k];
            size_t  l = t->len[a];
            if (l <= len - i && memcmp(text + i, t->arena + t->off[a], l) == 0) {
                *id = a;
                return i;
            }
        }
    }
    return len;
}

molt_status tok__encode_bytelevel(molt_ctx *ctx, const molt_tokenizer *t, const char *text,
                                  size_t len, tok_ids *ids) {
    enc         e = {.ctx = ctx, .t = t, .text = text, .ids = ids};
    molt_status st = MOLT_OK;
    // Cache size follows the text: ~1 slot per 8 bytes, 64 .. 64K slots.
    uint32_t slots = 64;
    while (slots < (1u << 16) && (size_t)slots * 8 < len)
        slots <<= 1;
    e.cache = molt__calloc(slots, sizeof *e.cache);
    e.cache_mask = slots - 1;
    if (t->n_split)
        e.md = pcre2_match_data_create(1, t->pcre_gctx);
    if (!e.cache || (t->n_split && !e.md)) {
        st = molt__err(ctx, MOLT_ERR_OOM, "tokenize: out of memory");
        goto done;
    }
    if (len / 3 + 16 > ids->cap - ids->n && (st = ids_reserve(ctx, ids, len / 3 + 16)) != MOLT_OK)
        goto done;
    size_t pos = 0;
    while (pos < len) {
        int32_t id = -1;
        size_t  at = find_added(t, text, len, pos, &id);
        st = t->sp ? sp_segment(&e, text + pos, at - pos)
                   : encode_segment(&e, text + pos, at - pos);
        if (st != MOLT_OK)
            goto done;
        if (at == len)
            break;
        if ((st = tok__ids_push(ctx, ids, id)) != MOLT_OK)
            goto done;
        pos = at + t->len[id];
    }
done:
    if (e.md)
        pcre2_match_data_free(e.md);
    molt__free(e.cache);
    molt__free(e.tok);
    molt__free(e.prv);
    molt__free(e.nxt);
    molt__free(e.heap);
    return st;
}
