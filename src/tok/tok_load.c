/*
 * tok_load.c — the public tokenizer API (molt.h): loading by content,
 * encode / decode dispatch, lookups, special ids and saving.
 *
 * Which kind a file is, is decided by its bytes, never by its name:
 *   - a JSON object ('{' after optional BOM / whitespace, no NUL in the first
 *     bytes) is an HF tokenizer.json;
 *   - a first line "base64 space digits" is a tiktoken rank file;
 *   - anything else is tried as a llama2.c tokenizer.bin, whose loader
 *     validates every length against the file size.
 */
#include "io/fileio.h"
#include "tok/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

// the largest tokenizer.json in use is ~17 MB
#define TOK_MAX_BYTES ((size_t)512 << 20)

static bool looks_json(const char *s, size_t n) {
    size_t i = 0;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i >= n || s[i] != '{')
        return false;
    // A llama2.c file whose max_token_len is 123 also starts with '{',
    // followed by NUL bytes that no JSON text holds.
    return n < i + 4 || memchr(s + i, 0, 4) == NULL;
}

static bool looks_tiktoken(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                     (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/' || s[i] == '='))
        i++;
    if (i == 0 || i >= n || s[i] != ' ')
        return false;
    size_t d = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i > d && (i == n || s[i] == '\n' || s[i] == '\r');
}

MOLT_API molt_status molt_tokenizer_load(molt_ctx *ctx, const char *path, int32_t vocab_hint,
                                         molt_tokenizer **out) {
    if (!path || !out)
        return molt__err(ctx, MOLT_ERR_ARG, "molt_tokenizer_load: NULL path or out");
    *out = NULL;
    char       *buf = NULL;
    size_t      len = 0;
    molt_status st = fio_read_all(ctx, path, TOK_MAX_BYTES, &buf, &len);
    if (st != MOLT_OK)
        return st;
    if (looks_json(buf, len))
        return tok__load_hf_owned(ctx, path, buf, len, out);
    if (looks_tiktoken(buf, len))
        return tok__load_tiktoken_owned(ctx, path, buf, len, out);
    return tok__load_llama2c_owned(ctx, path, (uint8_t *)buf, len, vocab_hint, out);
}

MOLT_API void molt_tokenizer_free(molt_tokenizer *tok) { tok__free(tok); }

MOLT_API int32_t molt_tokenizer_vocab(const molt_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
MOLT_API int32_t molt_tokenizer_bos(const molt_tokenizer *tok) { return tok ? tok->bos : -1; }
MOLT_API int32_t molt_tokenizer_eos(const molt_tokenizer *tok) { return tok ? tok->eos : -1; }

tok_kind    tok_kind_of(const molt_tokenizer *t) { return t->kind; }
const char *tok_source_path(const molt_tokenizer *t) { return t->path; }

molt_status tok_set_special(molt_tokenizer *t, int32_t bos, int32_t eos) {
    if (!t || bos < -1 || eos < -1 || bos >= t->n_vocab || eos >= t->n_vocab)
        return MOLT_ERR_ARG;
    t->bos = bos;
    t->eos = eos;
    return MOLT_OK;
}

int32_t tok_lookup(const molt_tokenizer *t, const char *s) {
    if (!t || !s)
        return -1;
    size_t n = strlen(s);
    char   sp[1024];
    if (t->sp && strchr(s, ' ') && 3 * n < sizeof sp) { // vocab strings spell " " as "▁"
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += (size_t)snprintf(sp + k, sizeof sp - k, "%s", s[i] == ' ' ? "\xE2\x96\x81"
                                                                         : (char[]){s[i], 0});
        s = sp;
        n = k;
    }
    if (n) {
        uint8_t b = (uint8_t)s[0];
        for (int32_t k = t->added_start[b]; k < t->added_start[b + 1]; k++) {
            int32_t a = t->added[k];
            if (t->len[a] == n && memcmp(t->arena + t->off[a], s, n) == 0)
                return a;
        }
    }
    int32_t id = tok__strmap_get(&t->vocab, t, s, n);
    if (id >= 0)
        return id;
    for (int32_t i = 0; i < t->n_vocab; i++) // HF strings outside the byte-level alphabet
        if ((t->flags[i] & TOKF_NOMATCH) && t->len[i] == n &&
            memcmp(t->arena + t->off[i], s, n) == 0)
            return i;
    return -1;
}

size_t tok_piece(const molt_tokenizer *t, int32_t prev_id, int32_t id, char *out, size_t cap) {
    if (!t || id < 0 || id >= t->n_vocab)
        return 0;
    if (t->kind == TOK_LLAMA2C)
        return tok__piece_llama2c(t, prev_id, id, out, cap);
    if (t->sp)
        return tok__piece_sp(t, prev_id, id, out, cap);
    size_t n = MOLT_MIN((size_t)t->len[id], cap);
    if (n)
        memcpy(out, t->arena + t->off[id], n);
    return n;
}

MOLT_API molt_status molt_tokenize(molt_ctx *ctx, const molt_tokenizer *tok, const char *text,
                                   size_t len, int add_bos, int32_t **ids, size_t *n_ids) {
    if (!tok || !ids || !n_ids || (!text && len))
        return molt__err(ctx, MOLT_ERR_ARG, "molt_tokenize: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (add_bos && tok->bos < 0)
        return molt__err(ctx, MOLT_ERR_ARG, "%s: tokenizer has no BOS token", tok->path);
    tok_ids     v = {0};
    molt_status st = MOLT_OK;
    if (tok->kind == TOK_LLAMA2C)
        st = tok__encode_llama2c(ctx, tok, text, len, add_bos, &v);
    else {
        if (add_bos)
            st = tok__ids_push(ctx, &v, tok->bos);
        if (st == MOLT_OK && len)
            st = tok__encode_bytelevel(ctx, tok, text, len, &v);
    }
    if (st == MOLT_OK && !v.v) { // always hand back a block, even for no ids
        st = tok__ids_push(ctx, &v, 0);
        v.n = 0;
    }
    if (st != MOLT_OK) {
        molt__free(v.v);
        return st;
    }
    *ids = v.v;
    *n_ids = v.n;
    return MOLT_OK;
}

MOLT_API molt_status molt_detokenize(molt_ctx *ctx, const molt_tokenizer *tok, const int32_t *ids,
                                     size_t n_ids, char **text, size_t *len) {
    if (!tok || !text || !len || (!ids && n_ids))
        return molt__err(ctx, MOLT_ERR_ARG, "molt_detokenize: NULL argument");
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_vocab)
            return molt__err(ctx, MOLT_ERR_ARG, "%s: token id %d at position %zu is outside [0, %d)",
                             tok->path, ids[i], i, tok->n_vocab);
        total += tok->len[ids[i]];
    }
    char *out = molt__malloc(total + 1);
    if (!out)
        return molt__err(ctx, MOLT_ERR_OOM, "detokenize: out of memory for %zu bytes", total);
    size_t n = 0;
    for (size_t i = 0; i < n_ids; i++) {
        // llama2.c: BOS / EOS delimit sequences and print nothing (run.c
        // never prints them); every other piece follows run.c decode(). The
        // sentencepiece form decodes the same (HF's skip_special_tokens).
        if ((tok->kind == TOK_LLAMA2C || tok->sp) && (ids[i] == tok->bos || ids[i] == tok->eos))
            continue;
        n += tok_piece(tok, i ? ids[i - 1] : -1, ids[i], out + n, total - n);
    }
    out[n] = 0;
    *text = out;
    *len = n;
    return MOLT_OK;
}

molt_status tok_save(molt_ctx *ctx, const molt_tokenizer *t, const char *path) {
    if (!t || !path)
        return molt__err(ctx, MOLT_ERR_ARG, "tok_save: NULL argument");
    size_t pl = strlen(path);
    char  *tmp = molt__malloc(pl + 5);
    if (!tmp)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    molt_status st = MOLT_OK;
    FILE       *f = fopen(tmp, "wb");
    if (!f)
        st = molt__err(ctx, MOLT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        bool ok = fwrite(t->src, 1, t->src_len, f) == t->src_len;
        ok = (fclose(f) == 0) && ok;
        if (!ok)
            st = molt__err(ctx, MOLT_ERR_IO, "%s: write failed", tmp);
        else if (rename(tmp, path) != 0)
            st = molt__err(ctx, MOLT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                           strerror(errno));
        if (st != MOLT_OK)
            remove(tmp);
    }
    molt__free(tmp);
    return st;
}
