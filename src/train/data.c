/* data.c — see data.h. */
#include "train/data.h"

#include "io/fileio.h"

#include <string.h>

#define DATA_MAX_FILE (1ull << 34)

static molt_status append(molt_ctx *ctx, token_stream *s, size_t *cap, const int32_t *ids,
                          size_t n) {
    if (s->n + n > *cap) {
        size_t nc = *cap ? *cap : 1 << 16;
        while (nc < s->n + n)
            nc *= 2;
        int32_t *p = molt__realloc(s->ids, nc * sizeof(int32_t));
        if (!p)
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %zu tokens", nc);
        s->ids = p;
        *cap = nc;
    }
    memcpy(s->ids + s->n, ids, n * sizeof(int32_t));
    s->n += n;
    return MOLT_OK;
}

static molt_status add_doc(molt_ctx *ctx, const molt_tokenizer *tok, const char *p, size_t len,
                           token_stream *s, size_t *cap) {
    int32_t *ids = NULL;
    size_t n = 0;
    molt_status st = molt_tokenize(ctx, tok, p, len, molt_tokenizer_bos(tok) >= 0, &ids, &n);
    if (st == MOLT_OK)
        st = append(ctx, s, cap, ids, n);
    molt__free(ids);
    return st;
}

molt_status data_load(molt_ctx *ctx, const molt_tokenizer *tok, int32_t vocab,
                      const char *const *paths, int n_paths, const char *fmt, const char *sep,
                      token_stream *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    bool text = !fmt || !strcmp(fmt, "text");
    if (!text && strcmp(fmt, "u16") && strcmp(fmt, "i32"))
        return molt__err(ctx, MOLT_ERR_ARG, "data format \"%s\" (text, u16 or i32)", fmt);
    if (text && !tok)
        return molt__err(ctx, MOLT_ERR_MISSING, "text data needs a tokenizer");
    molt_status st = MOLT_OK;
    for (int f = 0; f < n_paths && st == MOLT_OK; f++) {
        char *buf = NULL;
        size_t len = 0;
        if ((st = fio_read_all(ctx, paths[f], DATA_MAX_FILE, &buf, &len)) != MOLT_OK)
            break;
        if (text) {
            if (sep && *sep) {
                size_t sl = strlen(sep);
                for (const char *p = buf, *end = buf + len; p < end && st == MOLT_OK;) {
                    const char *q = strstr(p, sep);
                    const char *e = q ? q : end;
                    if (e > p)
                        st = add_doc(ctx, tok, p, (size_t)(e - p), out, &cap);
                    p = q ? q + sl : end;
                }
            } else {
                st = add_doc(ctx, tok, buf, len, out, &cap);
            }
        } else {
            size_t w = fmt[0] == 'u' ? 2 : 4;
            if (len % w) {
                st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: %zu bytes is not a whole number of %s "
                                                     "tokens",
                               paths[f], len, fmt);
            } else {
                size_t n = len / w, base = out->n;
                int32_t zero = 0;
                for (size_t i = 0; i < n && st == MOLT_OK; i++)
                    st = append(ctx, out, &cap, &zero, 1);
                for (size_t i = 0; i < n && st == MOLT_OK; i++) {
                    int32_t v;
                    if (w == 2) {
                        uint16_t u;
                        memcpy(&u, buf + 2 * i, 2);
                        v = u;
                    } else {
                        memcpy(&v, buf + 4 * i, 4);
                    }
                    if (v < 0 || v >= vocab)
                        st = molt__err(ctx, MOLT_ERR_FORMAT,
                                       "%s: token %zu is %d, outside the vocab (0..%d)", paths[f],
                                       i, v, vocab - 1);
                    out->ids[base + i] = v;
                }
            }
        }
        if (st != MOLT_OK)
            molt__err_prefix(ctx, "%s", paths[f]);
        molt__free(buf);
    }
    if (st != MOLT_OK)
        data_free(out);
    return st;
}

void data_free(token_stream *s) {
    molt__free(s->ids);
    s->ids = NULL;
    s->n = 0;
}

uint64_t data_rng_next(uint64_t *rng) {
    uint64_t z = (*rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void data_batch(const token_stream *s, uint64_t *rng, int B, int T, int32_t *in, int32_t *tgt) {
    size_t span = s->n - (size_t)T; // starts in [0, n − T − 1]
    for (int b = 0; b < B; b++) {
        size_t st = (size_t)(data_rng_next(rng) % span);
        memcpy(in + (size_t)b * T, s->ids + st, sizeof(int32_t) * (size_t)T);
        memcpy(tgt + (size_t)b * T, s->ids + st + 1, sizeof(int32_t) * (size_t)T);
    }
}
