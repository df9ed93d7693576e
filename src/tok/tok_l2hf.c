/*
 * tok_l2hf.c — a llama2.c tokenizer.bin as an HF tokenizer.json (+
 * tokenizer_config.json) that HF tokenizers / transformers load and that
 * tokenizes like llama2.c (tokenizer.h: tok_llama2c_to_hf).
 *
 * llama2.c's tokenizer.bin is a sentencepiece BPE vocabulary exported with
 * its scores ("▁" written as " ", BOS / EOS as "\n<s>\n" / "\n</s>\n", bytes
 * as "<0xNN>" at ids 3..258). run.c encodes: a dummy-prefix space, each
 * character as a piece or its bytes' tokens (byte + 3), then repeatedly
 * merges the adjacent pair whose concatenation is the piece with the highest
 * score (the leftmost among equal scores). HF's BPE merges the adjacent pair
 * of lowest merge rank instead, so the merges are derived from the scores,
 * as transformers' SentencePieceExtractor does for Llama:
 *   - a merge (a, b) for every piece t (id ≥ 3, score > -1e10 as run.c
 *     requires) and every split t = a + b into two pieces (ids ≥ 3);
 *   - ranked by the score of t, highest first; equal scores by the id of t,
 *     then of a, then of b.
 * A pair then merges in HF exactly when it merges in run.c, the highest score
 * first. Where run.c's leftmost rule and the rank order could disagree (two
 * overlapping pairs making pieces of equal score) no case was found: the
 * tests compare the two over TinyStories, Llama 2's 32000-piece vocabulary
 * on four corpora, whitespace runs and every overlapping-split triple.
 *
 * The rest is the form of HF's Llama-2 tokenizer.json: normalizer Prepend
 * "▁" + Replace " " → "▁" (run.c's dummy prefix: none for empty text), no
 * pre-tokenizer, byte_fallback (run.c's byte tokens), <unk> <s> </s> as
 * special added tokens, a post-processor adding <s>, and the decoder. It
 * differs from run.c where HF itself does: the literal texts "<unk>", "<s>",
 * "</s>" are their special tokens, and "▁" (U+2581) in the text reads as a
 * space. tokenizer_config.json names PreTrainedTokenizerFast, which loads
 * tokenizer.json as written (transformers 5's LlamaTokenizer would replace its
 * normalizer with its own).
 */
#include "io/json.h"
#include "tok/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_SPACE "\xE2\x96\x81" // U+2581

typedef struct l2_merge {
    float   score;
    int32_t t, a, b;
} l2_merge;

static int cmp_merge(const void *x, const void *y) {
    const l2_merge *p = x, *q = y;
    if (p->score != q->score)
        return p->score > q->score ? -1 : 1;
    if (p->t != q->t)
        return p->t < q->t ? -1 : 1;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

typedef struct hf_names {
    char  **s;   // HF string of each id
    char   *buf;
} hf_names;

static int cmp_name(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

// The HF string of every id (specials without their newlines, " " as "▁"),
// refusing what tokenizer.json cannot say the way llama2.c means it.
static molt_status make_names(molt_ctx *ctx, const molt_tokenizer *t, hf_names *nm) {
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    int32_t n = t->n_vocab;
    nm->s = molt__calloc((size_t)n, sizeof *nm->s);
    nm->buf = molt__malloc(3 * t->arena_len + (size_t)n + 16);
    if (!nm->s || !nm->buf)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", t->path);
    char *w = nm->buf;
    for (int32_t i = 0; i < n; i++) {
        const char *p = t->arena + t->off[i];
        size_t      len = t->len[i];
        nm->s[i] = w;
        if (i < 3) {
            // run.c: <unk>, BOS, EOS; the export writes "\n<s>\n" / "\n</s>\n"
            while (len && *p == '\n')
                p++, len--;
            while (len && p[len - 1] == '\n')
                len--;
            if (len != strlen(special[i]) || memcmp(p, special[i], len))
                return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                                 "%s: token %d is not %s, as llama2.c's ids 0-2 are", t->path, i,
                                 special[i]);
        }
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", (unsigned)(i - 3) & 0xFFu);
        if (i >= 3 && i < 259 && (len != 6 || memcmp(p, hex, 6)))
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: token %d is not the byte token %s (llama2.c's byte fallback "
                             "is id = byte + 3)",
                             t->path, i, hex);
        if (len == 0 || tok__utf8_valid_prefix((const uint8_t *)p, len) != len)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: token %d is %s (tokenizer.json holds UTF-8 strings)", t->path,
                             i, len ? "not valid UTF-8" : "empty");
        for (size_t k = 0; k < len; k++) {
            if (k + 3 <= len && !memcmp(p + k, SP_SPACE, 3))
                return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                                 "%s: token %d holds a literal \"" SP_SPACE "\", which HF "
                                 "reads as a space",
                                 t->path, i);
            if (p[k] == ' ') {
                memcpy(w, SP_SPACE, 3);
                w += 3;
            } else
                *w++ = p[k];
        }
        *w++ = 0;
    }
    // a vocab is a map: two ids with one string cannot be written
    char **sorted = molt__malloc((size_t)n * sizeof *sorted);
    if (!sorted)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", t->path);
    memcpy(sorted, nm->s, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    molt_status st = MOLT_OK;
    for (int32_t i = 1; i < n && st == MOLT_OK; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            st = molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: the token \"%.40s\" appears twice",
                           t->path, sorted[i]);
    molt__free(sorted);
    return st;
}

// every merge run.c can make, in HF rank order (see the top)
static molt_status make_merges(molt_ctx *ctx, const molt_tokenizer *t, l2_merge **out,
                               size_t *n_out) {
    size_t    n = 0, cap = 1024;
    l2_merge *m = molt__malloc(cap * sizeof *m);
    if (!m)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", t->path);
    for (int32_t id = 3; id < t->n_vocab; id++) {
        if (!(t->scores[id] > -1e10f))
            continue; // run.c never merges into it
        const char *p = t->arena + t->off[id];
        for (size_t k = 1; k < t->len[id]; k++) {
            int32_t a = tok__strmap_get(&t->vocab, t, p, k);
            int32_t b = tok__strmap_get(&t->vocab, t, p + k, t->len[id] - k);
            if (a < 3 || b < 3)
                continue;
            if (n == cap) {
                l2_merge *g = molt__realloc(m, 2 * cap * sizeof *m);
                if (!g) {
                    molt__free(m);
                    return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", t->path);
                }
                m = g;
                cap *= 2;
            }
            m[n++] = (l2_merge){t->scores[id], id, a, b};
        }
    }
    qsort(m, n, sizeof *m, cmp_merge);
    *out = m;
    *n_out = n;
    return MOLT_OK;
}

// Every item goes through js_put (io/json.h): a build that lost an item to a
// failed allocation is refused (js_build_failed), and leaks nothing.
static cJSON *put(cJSON *parent, const char *key, cJSON *item) {
    return js_put(parent, key, item);
}

static cJSON *put_str(cJSON *parent, const char *key, const char *s) {
    return put(parent, key, cJSON_CreateString(s));
}

static cJSON *typed(cJSON *parent, const char *key, const char *type) {
    cJSON *o = put(parent, key, cJSON_CreateObject());
    put_str(o, "type", type);
    return o;
}

// {"SpecialToken": {"id": "<s>", "type_id": k}} or {"Sequence": {"id": "A", ...}}
static void template_piece(cJSON *list, const char *kind, const char *id, int type_id) {
    cJSON *in = put(put(list, NULL, cJSON_CreateObject()), kind, cJSON_CreateObject());
    put_str(in, "id", id);
    put(in, "type_id", cJSON_CreateNumber(type_id));
}

static void post_processor(cJSON *root) {
    cJSON *pp = typed(root, "post_processor", "TemplateProcessing");
    cJSON *single = put(pp, "single", cJSON_CreateArray());
    template_piece(single, "SpecialToken", "<s>", 0);
    template_piece(single, "Sequence", "A", 0);
    cJSON *pair = put(pp, "pair", cJSON_CreateArray());
    template_piece(pair, "SpecialToken", "<s>", 0);
    template_piece(pair, "Sequence", "A", 0);
    template_piece(pair, "SpecialToken", "<s>", 1);
    template_piece(pair, "Sequence", "B", 1);
    cJSON *s = put(put(pp, "special_tokens", cJSON_CreateObject()), "<s>", cJSON_CreateObject());
    put_str(s, "id", "<s>");
    put(s, "ids", cJSON_CreateIntArray((const int[]){1}, 1));
    put_str(put(s, "tokens", cJSON_CreateArray()), NULL, "<s>");
}

static void replace(cJSON *list, const char *type, const char *from, const char *to) {
    cJSON *r = typed(list, NULL, type);
    put_str(put(r, "pattern", cJSON_CreateObject()), "String", from);
    put_str(r, "content", to);
}

static void normalizer_decoder(cJSON *root) {
    cJSON *n = typed(root, "normalizer", "Sequence");
    cJSON *list = put(n, "normalizers", cJSON_CreateArray());
    put_str(typed(list, NULL, "Prepend"), "prepend", SP_SPACE);
    replace(list, "Replace", " ", SP_SPACE);
    put(root, "pre_tokenizer", cJSON_CreateNull());
    post_processor(root);
    cJSON *d = typed(root, "decoder", "Sequence");
    list = put(d, "decoders", cJSON_CreateArray());
    replace(list, "Replace", SP_SPACE, " ");
    typed(list, NULL, "ByteFallback");
    typed(list, NULL, "Fuse");
    cJSON *strip = typed(list, NULL, "Strip");
    put_str(strip, "content", " ");
    put(strip, "start", cJSON_CreateNumber(1));
    put(strip, "stop", cJSON_CreateNumber(0));
}

static cJSON *tokenizer_json(const hf_names *nm, int32_t n_vocab, const l2_merge *mg,
                             size_t n_mg, char *scratch, size_t scratch_cap) {
    cJSON *root = cJSON_CreateObject();
    put_str(root, "version", "1.0");
    put(root, "truncation", cJSON_CreateNull());
    put(root, "padding", cJSON_CreateNull());
    cJSON *added = put(root, "added_tokens", cJSON_CreateArray());
    for (int i = 0; i < 3; i++) {
        cJSON *a = put(added, NULL, cJSON_CreateObject());
        put(a, "id", cJSON_CreateNumber(i));
        put_str(a, "content", nm->s[i]);
        static const char *const flags[] = {"single_word", "lstrip", "rstrip", "normalized"};
        for (int f = 0; f < 4; f++)
            put(a, flags[f], cJSON_CreateFalse());
        put(a, "special", cJSON_CreateTrue());
    }
    normalizer_decoder(root);
    cJSON *model = typed(root, "model", "BPE");
    put(model, "dropout", cJSON_CreateNull());
    put_str(model, "unk_token", "<unk>");
    put(model, "continuing_subword_prefix", cJSON_CreateNull());
    put(model, "end_of_word_suffix", cJSON_CreateNull());
    put(model, "fuse_unk", cJSON_CreateTrue());
    put(model, "byte_fallback", cJSON_CreateTrue());
    put(model, "ignore_merges", cJSON_CreateFalse());
    cJSON *vocab = put(model, "vocab", cJSON_CreateObject());
    for (int32_t i = 0; i < n_vocab; i++)
        put(vocab, nm->s[i], cJSON_CreateNumber(i));
    cJSON *merges = put(model, "merges", cJSON_CreateArray());
    for (size_t i = 0; i < n_mg; i++) { // "a b": no piece holds a space (it is "▁")
        snprintf(scratch, scratch_cap, "%s %s", nm->s[mg[i].a], nm->s[mg[i].b]);
        put_str(merges, NULL, scratch);
    }
    return root;
}

// tokenizer_config.json: PreTrainedTokenizerFast (transformers loads the
// tokenizer.json as written; for model_type llama without it, transformers 5
// picks LlamaTokenizer, which replaces the pre-tokenizer and decoder with its
// own), and the special tokens. llama2c: the sentencepiece form's <s> first.
static cJSON *config_json(const molt_tokenizer *t, bool llama2c) {
    cJSON *c = cJSON_CreateObject();
    put_str(c, "tokenizer_class", "PreTrainedTokenizerFast");
    char   name[256];
    struct {
        const char *key;
        int32_t     id;
    } sp[] = {{"bos_token", t->bos}, {"eos_token", t->eos}, {"unk_token", t->unk_id}};
    for (int i = 0; i < 3; i++) {
        if (llama2c)
            put_str(c, sp[i].key, i == 0 ? "<s>" : i == 1 ? "</s>" : "<unk>");
        else if (sp[i].id >= 0 && (t->flags[sp[i].id] & TOKF_ADDED) &&
                 t->len[sp[i].id] < sizeof name) { // (a vocab string's bytes are not its name)
            memcpy(name, t->arena + t->off[sp[i].id], t->len[sp[i].id]);
            name[t->len[sp[i].id]] = 0;
            put_str(c, sp[i].key, name);
        }
    }
    if (llama2c) {
        put(c, "add_bos_token", cJSON_CreateTrue());
        put(c, "add_eos_token", cJSON_CreateFalse());
    }
    put(c, "clean_up_tokenization_spaces", cJSON_CreateFalse());
    return c;
}

molt_status tok_hf_config(molt_ctx *ctx, const molt_tokenizer *t, char **config_json_out) {
    *config_json_out = NULL;
    if (t->kind != TOK_BPE_JSON)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: not a tokenizer.json", t->path);
    js_build_begin();
    cJSON *c = config_json(t, false);
    *config_json_out = !js_build_failed() && c ? cJSON_Print(c) : NULL;
    cJSON_Delete(c);
    return *config_json_out ? MOLT_OK
                            : molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory writing "
                                                           "tokenizer_config.json", t->path);
}

molt_status tok_llama2c_to_hf(molt_ctx *ctx, const molt_tokenizer *t, char **tokenizer_json_out,
                              char **config_json_out) {
    *tokenizer_json_out = *config_json_out = NULL;
    if (t->kind != TOK_LLAMA2C || t->n_vocab < 259 || t->bos != 1 || t->eos != 2)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: not a llama2.c vocabulary with <unk>, <s>, </s> and 256 byte "
                         "tokens (ids 0-258)",
                         t->path);
    hf_names    nm = {0};
    l2_merge   *mg = NULL;
    size_t      n_mg = 0;
    char       *scratch = NULL;
    cJSON      *tj = NULL, *cj = NULL;
    molt_status st = make_names(ctx, t, &nm);
    if (st == MOLT_OK)
        st = make_merges(ctx, t, &mg, &n_mg);
    size_t scap = 6 * (size_t)t->max_len + 2; // two names of up to 3 bytes a byte, " ", NUL
    if (st == MOLT_OK && !(scratch = molt__malloc(scap)))
        st = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", t->path);
    if (st == MOLT_OK) {
        js_build_begin();
        tj = tokenizer_json(&nm, t->n_vocab, mg, n_mg, scratch, scap);
        cj = config_json(t, true);
        bool ok = !js_build_failed() && tj && cj;
        *tokenizer_json_out = ok ? cJSON_Print(tj) : NULL;
        *config_json_out = ok ? cJSON_Print(cj) : NULL;
        if (!*tokenizer_json_out || !*config_json_out) {
            cJSON_free(*tokenizer_json_out);
            cJSON_free(*config_json_out);
            *tokenizer_json_out = *config_json_out = NULL;
            st = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory writing tokenizer.json",
                           t->path);
        }
    }
    cJSON_Delete(tj);
    cJSON_Delete(cj);
    molt__free(scratch);
    molt__free(mg);
    molt__free(nm.s);
    molt__free(nm.buf);
    return st;
}
