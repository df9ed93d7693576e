/*
 * tok_llama2c.c — llama2.c's tokenizer.bin: load, encode and decode exactly
 * as karpathy/llama2.c run.c (build_tokenizer / encode / decode) does.
 *
 * File layout (little-endian):
 *   i32 max_token_len
 *   vocab_size x { f32 score, i32 len, len bytes }
 * vocab_size is not in the file: it comes from the model (vocab_hint), or,
 * with hint 0, is the number of whole entries in the file.
 *
 * run.c encode(): optional BOS (1); a dummy-prefix " " token when the text is
 * non-empty; each UTF-8 code point (a lead byte plus up to 3 continuation
 * bytes) looked up as a piece, unknown ones as byte tokens (byte + 3); then,
 * over the whole sequence (BOS included), repeatedly merge the adjacent pair
 * whose concatenation is a piece with the highest score (> -1e10; leftmost
 * among equal scores). run.c rescans every pair after each merge (O(n^2) per
 * merge); a max-heap with stale-entry checks picks the same pair each time.
 *
 * Where run.c has no defined behaviour we choose, and say so:
 *   - pieces are C strings in run.c: a piece holding a NUL byte is cut there,
 *     as run.c's strcmp / printf see it; the text is taken with its length
 *     (run.c stops at a NUL), a NUL byte becoming byte token 3;
 *   - of two equal pieces, the lower id is found (run.c's bsearch may return
 *     either);
 *   - without a " " piece, the dummy prefix is the space's byte token (run.c
 *     would emit id -1);
 *   - a byte token beyond the vocabulary is an error (run.c reads past its
 *     arrays).
 */
#include "tok/tokenizer.h"

#include <stdio.h>
#include <string.h>

static int32_t rd_i32(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 24);
    int32_t  r;
    memcpy(&r, &v, 4);
    return r;
}

static float rd_f32(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 24);
    float    f;
    memcpy(&f, &v, 4);
    return f;
}

static molt_status l2_build(molt_ctx *ctx, molt_tokenizer *t, const char *what, int32_t hint) {
    const uint8_t *buf = t->src;
    size_t         len = t->src_len;
    if (len < 4)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: truncated llama2.c tokenizer header", what);
    int32_t max_token_len = rd_i32(buf);
    if (max_token_len < 0)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: negative max_token_len %d", what,
                         max_token_len);
    // Pass 1: walk the entries.
    size_t  pos = 4;
    int64_t n = 0;
    while (hint > 0 ? n < hint : pos < len) {
        if (len - pos < 8)
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: truncated at token %lld%s", what,
                             (long long)n, hint > 0 ? " (fewer tokens than the vocab size)" : "");
        int32_t l = rd_i32(buf + pos + 4);
        if (l < 0)
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: token %lld has negative length %d", what,
                             (long long)n, l);
        if ((size_t)l > len - pos - 8)
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "%s: token %lld length %d runs past the end of the file", what,
                             (long long)n, l);
        pos += 8 + (size_t)l;
        if (++n > INT32_MAX / 2)
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: too many tokens", what);
    }
    if (n < 3)
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: %lld tokens; llama2.c needs at least <unk>, BOS and EOS", what,
                         (long long)n);
    molt_status st = tok__table_init(ctx, t, (int32_t)n, len);
    t->scores = molt__malloc((size_t)n * sizeof *t->scores);
    if (st != MOLT_OK)
        return st;
    if (!t->scores)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    pos = 4;
    for (int32_t i = 0; i < (int32_t)n; i++) {
        t->scores[i] = rd_f32(buf + pos);
        size_t      l = (size_t)rd_i32(buf + pos + 4);
        const char *s = (const char *)buf + pos + 8;
        const char *z = memchr(s, 0, l); // run.c sees a C string
        if ((st = tok__table_set(ctx, t, i, s, z ? (size_t)(z - s) : l, 0)) != MOLT_OK)
            return st;
        pos += 8 + l;
    }
    t->bos = 1;
    t->eos = 2;
    return tok__strmap_build(ctx, &t->vocab, t, 0);
}

molt_status tok__load_llama2c_owned(molt_ctx *ctx, const char *what, uint8_t *buf, size_t len,
                                    int32_t vocab_hint, molt_tokenizer **out) {
    molt_tokenizer *t = NULL;
    molt_status     st = tok__alloc(ctx, what, TOK_LLAMA2C, &t);
    if (st != MOLT_OK) {
        molt__free(buf);
        return st;
    }
    t->src = buf;
    t->src_len = len;
    if (vocab_hint < 0)
        st = molt__err(ctx, MOLT_ERR_ARG, "%s: negative vocab size %d", what, vocab_hint);
    else
        st = l2_build(ctx, t, what, vocab_hint);
    if (st != MOLT_OK) {
        tok__free(t);
        return st;
    }
    *out = t;
    return MOLT_OK;
}

molt_status tok_load_llama2c_buf(molt_ctx *ctx, const char *what, const uint8_t *buf, size_t len,
                                 int32_t vocab_hint, molt_tokenizer **out) {
    what = what ? what : "<buffer>";
    uint8_t *copy = molt__malloc(len + 1);
    if (!copy)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    if (len)
        memcpy(copy, buf, len);
    return tok__load_llama2c_owned(ctx, what, copy, len, vocab_hint, out);
}

// ----------------------------------------------------------------------------
// encode

typedef struct l2_ent {
    float   score;
    int32_t left, right; // symbol indices
    int32_t ltok, rtok;  // the pair when pushed (stale check)
    int32_t id;          // merged piece
} l2_ent;

// run.c scans left to right keeping the first strictly best score.
static bool l2_before(const l2_ent *a, const l2_ent *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct l2_enc {
    molt_ctx             *ctx;
    const molt_tokenizer *t;
    int32_t              *tok, *prv, *nxt;
    l2_ent               *heap;
    size_t                n_heap, cap_heap;
    char                 *cat;
} l2_enc;

static molt_status l2_push(l2_enc *e, int32_t i) {
    const molt_tokenizer *t = e->t;
    int32_t               j = e->nxt[i];
    if (j < 0)
        return MOLT_OK;
    int32_t a = e->tok[i], b = e->tok[j];
    memcpy(e->cat, t->arena + t->off[a], t->len[a]);
    memcpy(e->cat + t->len[a], t->arena + t->off[b], t->len[b]);
    int32_t id = tok__strmap_get(&t->vocab, t, e->cat, (size_t)t->len[a] + t->len[b]);
    if (id < 0 || !(t->scores[id] > -1e10f)) // run.c's best_score starts at -1e10
        return MOLT_OK;
    if (e->n_heap == e->cap_heap) {
        size_t  cap = e->cap_heap ? 2 * e->cap_heap : 64;
        l2_ent *h = molt__realloc(e->heap, cap * sizeof *h);
        if (!h)
            return molt__err(e->ctx, MOLT_ERR_OOM, "tokenize: out of memory (merge heap)");
        e->heap = h;
        e->cap_heap = cap;
    }
    l2_ent x = {t->scores[id], i, j, a, b, id};
    size_t k = e->n_heap++;
    while (k > 0 && l2_before(&x, &e->heap[(k - 1) / 2])) {
        e->heap[k] = e->heap[(k - 1) / 2];
        k = (k - 1) / 2;
    }
    e->heap[k] = x;
    return MOLT_OK;
}

static l2_ent l2_pop(l2_enc *e) {
    l2_ent top = e->heap[0], x = e->heap[--e->n_heap];
    size_t k = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= n)
            break;
        if (c + 1 < n && l2_before(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!l2_before(&e->heap[c], &x))
            break;
        e->heap[k] = e->heap[c];
        k = c;
    }
    if (n)
        e->heap[k] = x;
    return top;
}

static molt_status l2_initial(molt_ctx *ctx, const molt_tokenizer *t, const char *text,
                              size_t len, int add_bos, tok_ids *v) {
    molt_status st;
    if (add_bos && (st = tok__ids_push(ctx, v, t->bos)) != MOLT_OK)
        return st;
    if (len == 0)
        return MOLT_OK;
    int32_t sp = tok__strmap_get(&t->vocab, t, " ", 1);
    if (sp < 0 && (sp = ' ' + 3) >= t->n_vocab)
        return molt__err(ctx, MOLT_ERR_ARG, "%s: no piece for the dummy-prefix space", t->path);
    if ((st = tok__ids_push(ctx, v, sp)) != MOLT_OK)
        return st;
    char   buf[4];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)text[i];
        if ((c & 0xC0) != 0x80)
            n = 0; // a lead (or ASCII) byte starts a new code point
        buf[n++] = (char)c;
        uint8_t next = i + 1 < len ? (uint8_t)text[i + 1] : 0;
        if ((next & 0xC0) == 0x80 && n < 4)
            continue;
        int32_t id = tok__strmap_get(&t->vocab, t, buf, n);
        if (id >= 0) {
            if ((st = tok__ids_push(ctx, v, id)) != MOLT_OK)
                return st;
        } else {
            for (size_t k = 0; k < n; k++) {
                int32_t b = (int32_t)(uint8_t)buf[k] + 3;
                if (b >= t->n_vocab)
                    return molt__err(ctx, MOLT_ERR_ARG,
                                     "%s: no byte token for 0x%02X (vocab of %d)", t->path,
                                     (uint8_t)buf[k], t->n_vocab);
                if ((st = tok__ids_push(ctx, v, b)) != MOLT_OK)
                    return st;
            }
        }
        n = 0;
    }
    return MOLT_OK;
}

molt_status tok__encode_llama2c(molt_ctx *ctx, const molt_tokenizer *t, const char *text,
                                size_t len, int add_bos, tok_ids *ids) {
    tok_ids     v = {0};
    l2_enc      e = {.ctx = ctx, .t = t};
    molt_status st = l2_initial(ctx, t, text, len, add_bos, &v);
    if (st != MOLT_OK)
        goto done;
    size_t n = v.n;
    if (n > INT32_MAX) {
        st = molt__err(ctx, MOLT_ERR_ARG, "tokenize: text too long (%zu tokens)", n);
        goto done;
    }
    e.prv = molt__malloc((n ? n : 1) * sizeof *e.prv);
    e.nxt = molt__malloc((n ? n : 1) * sizeof *e.nxt);
    e.cat = molt__malloc(2 * (size_t)t->max_len + 1);
    if (!e.prv || !e.nxt || !e.cat) {
        st = molt__err(ctx, MOLT_ERR_OOM, "tokenize: out of memory");
        goto done;
    }
    e.tok = v.v;
    for (size_t i = 0; i < n; i++) {
        e.prv[i] = (int32_t)i - 1;
        e.nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        if ((st = l2_push(&e, (int32_t)i)) != MOLT_OK)
            goto done;
    while (e.n_heap) {
        l2_ent top = l2_pop(&e);
        int32_t i = top.left, j = top.right;
        if (e.tok[i] < 0 || e.nxt[i] != j || e.tok[i] != top.ltok || e.tok[j] != top.rtok)
            continue; // stale: the pair changed since it was pushed
        e.tok[i] = top.id;
        e.tok[j] = -1;
        e.nxt[i] = e.nxt[j];
        if (e.nxt[j] >= 0)
            e.prv[e.nxt[j]] = i;
        if (e.prv[i] >= 0 && (st = l2_push(&e, e.prv[i])) != MOLT_OK)
            goto done;
        if ((st = l2_push(&e, i)) != MOLT_OK)
            goto done;
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = e.nxt[i])
        if ((st = tok__ids_push(ctx, ids, e.tok[i])) != MOLT_OK)
            goto done;
done:
    molt__free(v.v);
    molt__free(e.prv);
    molt__free(e.nxt);
    molt__free(e.cat);
    molt__free(e.heap);
    return st;
}

// ----------------------------------------------------------------------------
// decode: run.c decode(prev_token, token)

size_t tok__piece_llama2c(const molt_tokenizer *t, int32_t prev_id, int32_t id, char *out,
                          size_t cap) {
    if (id < 0 || id >= t->n_vocab)
        return 0;
    const char *p = t->arena + t->off[id];
    size_t      n = t->len[id];
    if (prev_id == t->bos && n && p[0] == ' ') { // sentencepiece strips it after BOS
        p++;
        n--;
    }
    if (n >= 4 && memcmp(p, "<0x", 3) == 0) {
        // run.c: sscanf(piece, "<0x%02hhX>", &byte_val) == 1 → the raw byte.
        char          z[64];
        size_t        k = MOLT_MIN(n, sizeof z - 1);
        unsigned char byte_val;
        memcpy(z, p, k);
        z[k] = 0;
        if (sscanf(z, "<0x%02hhX>", &byte_val) == 1) {
            if (cap)
                out[0] = (char)byte_val;
            return cap ? 1 : 0;
        }
    }
    n = MOLT_MIN(n, cap);
    if (n)
        memcpy(out, p, n);
    return n;
}
