/*
 * tok_tiktoken.c — loads a tiktoken rank file (Llama-3's tokenizer.model):
 * one "base64(token bytes) rank" per line, the rank being the token id and
 * the merge priority. Encoding is tok_bpe.c's rank BPE.
 *
 * The file carries neither the split pattern nor the special tokens; both are
 * Meta's (llama3 tokenizer.py): the pattern below, and 256 special tokens
 * whose ids follow the base vocabulary (num_base_tokens = number of ranks):
 * <|begin_of_text|>, <|end_of_text|>, <|reserved_special_token_0..3|>,
 * <|start_header_id|>, <|end_header_id|>, <|reserved_special_token_4|>,
 * <|eot_id|>, then <|reserved_special_token_5..250|>.
 *
 * Two deliberate differences from Meta's Tokenizer.encode, both making it
 * equal to the HF tokenizer.json of the same model: special-token strings in
 * the text are encoded as the special tokens (Meta's default disallows none
 * and encodes them as plain text), and there is no 25,000-character cut of
 * long whitespace / non-whitespace runs (a tiktoken stack-depth workaround).
 */
#include "tok/tokenizer.h"

#include <stdio.h>
#include <string.h>

#define TT_N_SPECIAL 256

static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int b64_val(uint8_t c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

// Strict standard base64 (length a multiple of 4, '=' only as padding).
// Returns the decoded length, or -1.
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4)
        return -1;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int  v[4], pad = 0;
        bool last = i + 4 == n;
        for (int k = 0; k < 4; k++) {
            uint8_t c = (uint8_t)s[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64_val(c)) < 0)
                return -1;
        }
        uint32_t x = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) |
                     (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(x >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)x;
    }
    return o;
}

typedef struct tt_line {
    const char *b64;
    size_t      n_b64;
    int64_t     rank;
} tt_line;

// Splits "base64 rank" (a trailing CR is tolerated). False when malformed.
static bool parse_line(const char *s, size_t n, tt_line *out) {
    if (n && s[n - 1] == '\r')
        n--;
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp + 1 == s + n)
        return false;
    int64_t r = 0;
    for (const char *p = sp + 1; p < s + n; p++) {
        if (*p < '0' || *p > '9' || r > (int64_t)INT32_MAX)
            return false;
        r = r * 10 + (*p - '0');
    }
    out->b64 = s;
    out->n_b64 = (size_t)(sp - s);
    out->rank = r;
    return true;
}

static void special_name(int i, char *buf, size_t cap) {
    static const char *const fixed[10] = {
        "<|begin_of_text|>",           "<|end_of_text|>",
        "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
        "<|start_header_id|>",         "<|end_header_id|>",
        "<|reserved_special_token_4|>", "<|eot_id|>"};
    if (i < 10)
        snprintf(buf, cap, "%s", fixed[i]);
    else
        snprintf(buf, cap, "<|reserved_special_token_%d|>", i - 5);
}

static molt_status tt_build(molt_ctx *ctx, molt_tokenizer *t, const char *what) {
    const char *buf = (const char *)t->src;
    size_t      len = t->src_len;
    // Pass 1: count lines, validate, find the largest rank.
    int64_t n_lines = 0, max_rank = -1, line_no = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t      end = nl ? (size_t)(nl - buf) : len;
        line_no++;
        tt_line l;
        bool    blank = end == pos || (end == pos + 1 && buf[pos] == '\r');
        if (!blank) {
            if (!parse_line(buf + pos, end - pos, &l))
                return molt__err(ctx, MOLT_ERR_FORMAT,
                                 "%s: line %lld is not \"base64 rank\"", what, (long long)line_no);
            max_rank = MOLT_MAX(max_rank, l.rank);
            n_lines++;
        }
        pos = end + 1;
    }
    if (n_lines == 0)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: no ranks", what);
    if (max_rank >= 2 * n_lines + 1024 || max_rank + 1 + TT_N_SPECIAL > INT32_MAX)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: rank %lld is far beyond the %lld ranks", what,
                         (long long)max_rank, (long long)n_lines);
    // Meta's specials start at len(mergeable_ranks); never below a used rank.
    int64_t base = MOLT_MAX(n_lines, max_rank + 1);
    molt_status st = tok__table_init(ctx, t, (int32_t)(base + TT_N_SPECIAL), len);
    if (st != MOLT_OK)
        return st;
    // Pass 2: decode into the table.
    uint8_t *tmp = molt__malloc(len + 1);
    if (!tmp)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    line_no = 0;
    for (size_t pos = 0; pos < len && st == MOLT_OK;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t      end = nl ? (size_t)(nl - buf) : len;
        line_no++;
        tt_line l;
        if (end > pos && parse_line(buf + pos, end - pos, &l)) {
            long nb = b64_decode(l.b64, l.n_b64, tmp);
            if (nb <= 0)
                st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: line %lld: bad base64", what,
                               (long long)line_no);
            else if (t->flags[l.rank] & TOKF_PRESENT)
                st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: line %lld: rank %lld repeated", what,
                               (long long)line_no, (long long)l.rank);
            else
                st = tok__table_set(ctx, t, (int32_t)l.rank, (const char *)tmp, (size_t)nb, 0);
        }
        pos = end + 1;
    }
    molt__free(tmp);
    if (st != MOLT_OK || (st = tok__strmap_build(ctx, &t->vocab, t, 0)) != MOLT_OK)
        return st;
    // Rank BPE starts from single bytes: all 256 must have a rank.
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if ((t->byte_id[b] = tok__strmap_get(&t->vocab, t, &c, 1)) < 0)
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: byte 0x%02X has no rank", what, b);
    }
    for (int i = 0; i < TT_N_SPECIAL; i++) {
        char name[64];
        special_name(i, name, sizeof name);
        if ((st = tok__table_set(ctx, t, (int32_t)base + i, name, strlen(name),
                                 TOKF_ADDED | TOKF_SPECIAL)) != MOLT_OK)
            return st;
    }
    t->bos = (int32_t)base;
    t->eos = (int32_t)base + 1;
    if ((st = tok__index_added(ctx, t)) != MOLT_OK)
        return st;
    return tok__add_split(ctx, t, what, LLAMA3_PATTERN);
}

molt_status tok__load_tiktoken_owned(molt_ctx *ctx, const char *what, char *buf, size_t len,
                                     molt_tokenizer **out) {
    molt_tokenizer *t = NULL;
    molt_status     st = tok__alloc(ctx, what, TOK_TIKTOKEN, &t);
    if (st != MOLT_OK) {
        molt__free(buf);
        return st;
    }
    t->src = (uint8_t *)buf;
    t->src_len = len;
    if ((st = tt_build(ctx, t, what)) != MOLT_OK) {
        tok__free(t);
        return st;
    }
    *out = t;
    return MOLT_OK;
}

molt_status tok_load_tiktoken_buf(molt_ctx *ctx, const char *what, const char *buf, size_t len,
                                  molt_tokenizer **out) {
    what = what ? what : "<buffer>";
    char *copy = molt__malloc(len + 1);
    if (!copy)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    if (len)
        memcpy(copy, buf, len);
    copy[len] = 0;
    return tok__load_tiktoken_owned(ctx, what, copy, len, out);
}
