/*
 * tok_hf.c — loads a Hugging Face tokenizer.json with a byte-level BPE model
 * (GPT-2, Llama-3 and their descendants).
 *
 * Supported, and everything else refused with MOLT_ERR_UNSUPPORTED naming it:
 *   model:         {"type": "BPE", vocab, merges, ignore_merges, unk_token};
 *                  merges as "a b" strings or ["a", "b"] pairs; rank = index
 *   normalizer:    null (byte-level), or the sentencepiece form below
 *   pre_tokenizer: ByteLevel (use_regex true = the GPT-2 pattern), or a
 *                  Sequence of Split {Regex, "Isolated"} and one ByteLevel;
 *                  add_prefix_space must be false
 *   sentencepiece form (HF's Llama-1/2 tokenizer.json, and what molt writes
 *   for a llama2.c tokenizer): normalizer Sequence [Prepend "▁", Replace " "
 *   → "▁"], pre_tokenizer null, BPE with byte_fallback / fuse_unk: each
 *   segment between added tokens is one word, "▁" + the text with spaces as
 *   "▁", split into characters (vocab tokens, else their bytes' <0xNN>
 *   tokens, else unk), then merged by rank (tok_bpe.c). Vocab strings are
 *   kept as written; decoding turns "▁" into " " and <0xNN> into its byte.
 *   added_tokens:  matched verbatim before splitting (lstrip / rstrip /
 *                  single_word / normalized are not implemented: the
 *                  tokenizers we target set them all false)
 * post_processor and decoder are not read: BOS is the caller's add_bos, and
 * decoding is always byte-level (added tokens decode to their content).
 *
 * Vocab strings are in the GPT-2 byte->unicode alphabet ("Ġthe"); they are
 * mapped back to raw bytes (" the") for the token table. A string with a
 * character outside that alphabet cannot come out of byte-level
 * pre-tokenization; it keeps its UTF-8 bytes for decoding (as HF's ByteLevel
 * decoder does) and stays out of the encoding map.
 *
 * The cJSON tree is transient (io/json.h's parser: molt's allocator, and an
 * allocation failure reported as such); everything kept is
 * molt__malloc'd. Reference: huggingface/tokenizers, models/bpe/model.rs,
 * pre_tokenizers/byte_level.rs, tokenizer/added_vocabulary.rs.
 */
#include "io/json.h"
#include "tok/tokenizer.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_SPACE "\xE2\x96\x81" // U+2581, sentencepiece's space

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// other 68 to U+0100.. in byte order. inv[cp] = byte, -1 outside the image.
#define BL_CP_MAX 324
static void byte_level_inverse(int16_t inv[BL_CP_MAX]) {
    for (int i = 0; i < BL_CP_MAX; i++)
        inv[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        inv[keep ? b : 256 + extra++] = (int16_t)b;
    }
}

// Maps a byte-level string to raw bytes in out (capacity >= strlen(s)).
// Returns the byte count, or -1 when a character is outside the alphabet.
static long bl_to_bytes(const int16_t *inv, const char *s, char *out) {
    const uint8_t *p = (const uint8_t *)s;
    long           n = 0;
    while (*p) {
        uint32_t cp;
        if (p[0] < 0x80)
            cp = *p++;
        else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            p += 2;
        } else
            return -1; // 3- and 4-byte characters are all outside the alphabet
        if (cp >= BL_CP_MAX || inv[cp] < 0)
            return -1;
        out[n++] = (char)inv[cp];
    }
    return n;
}

// ----------------------------------------------------------------------------
// JSON helpers

static bool json_int(const cJSON *j, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || floor(d) != d)
        return false;
    *out = (int64_t)d;
    return true;
}

// A key that is absent or null takes the default.
static bool json_bool(const cJSON *obj, const char *key, bool def) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j))
        return def;
    return cJSON_IsTrue(j);
}

static const char *json_type(const cJSON *obj) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

// ----------------------------------------------------------------------------
// pre-tokenizer

static molt_status pretok_one(molt_ctx *ctx, molt_tokenizer *t, const char *what, const cJSON *p,
                              int *n_bytelevel) {
    const char *ty = json_type(p);
    if (!ty)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: pre_tokenizer without a \"type\"", what);
    if (strcmp(ty, "ByteLevel") == 0) {
        // HF's defaults: add_prefix_space true, use_regex true.
        if (json_bool(p, "add_prefix_space", true))
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: ByteLevel pre-tokenizer with add_prefix_space", what);
        (*n_bytelevel)++;
        return json_bool(p, "use_regex", true) ? tok__add_split(ctx, t, what, GPT2_PATTERN)
                                               : MOLT_OK;
    }
    if (strcmp(ty, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(rx))
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: Split pre-tokenizer without a \"Regex\" pattern", what);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: Split pre-tokenizer behavior '%s' (only Isolated)", what,
                             cJSON_IsString(beh) ? beh->valuestring : "?");
        if (json_bool(p, "invert", false))
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: inverted Split pre-tokenizer", what);
        return tok__add_split(ctx, t, what, rx->valuestring);
    }
    return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: pre_tokenizer type '%s'", what, ty);
}

static molt_status parse_pretok(molt_ctx *ctx, molt_tokenizer *t, const char *what,
                                const cJSON *pre) {
    if (!pre || cJSON_IsNull(pre))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: no pre_tokenizer and no sentencepiece normalizer (byte-level BPE "
                         "needs a ByteLevel pre_tokenizer)",
                         what);
    int         n_bl = 0;
    molt_status st = MOLT_OK;
    const char *ty = json_type(pre);
    if (ty && strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
        if (!cJSON_IsArray(list))
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: Sequence without \"pretokenizers\"", what);
        const cJSON *p;
        cJSON_ArrayForEach(p, list) {
            if ((st = pretok_one(ctx, t, what, p, &n_bl)) != MOLT_OK)
                return st;
        }
    } else if ((st = pretok_one(ctx, t, what, pre, &n_bl)) != MOLT_OK)
        return st;
    if (n_bl != 1)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer must contain exactly one ByteLevel (has %d)", what, n_bl);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// vocab, added tokens, merges

// Token id of a vocab string (as written in the JSON) through the
// temporary table of those strings.
static int32_t key_id(const molt_tokenizer *keys, const char *s) {
    return tok__strmap_get(&keys->vocab, keys, s, strlen(s));
}

static molt_status parse_merges(molt_ctx *ctx, molt_tokenizer *t, const char *what,
                                const molt_tokenizer *keys, const cJSON *merges) {
    int n = cJSON_GetArraySize(merges);
    molt_status st = tok__pairmap_init(ctx, &t->merges, (size_t)n);
    if (st != MOLT_OK) {
        molt__err_prefix(ctx, "%s", what);
        return st;
    }
    char  *cat = molt__malloc(2 * (size_t)keys->max_len + 2);
    if (!cat)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    int32_t      rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        size_t      la = 0;
        if (cJSON_IsString(m)) { // "a b": exactly one space, as tokenizers requires
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                la = (size_t)(sp - a);
                b = sp + 1;
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            la = strlen(a);
            b = m->child->next->valuestring;
        }
        if (!b) {
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: merge #%d is not \"a b\" nor [a, b]", what,
                           rank);
            break;
        }
        size_t lb = strlen(b);
        if (la + lb > 2 * (size_t)keys->max_len) { // longer than any token: cannot name two
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: merge #%d names tokens not in the vocab",
                           what, rank);
            break;
        }
        memcpy(cat, a, la);
        cat[la] = 0;
        int32_t ia = key_id(keys, cat), ib = key_id(keys, b);
        memcpy(cat + la, b, lb + 1);
        int32_t im = key_id(keys, cat);
        if (ia < 0 || ib < 0 || im < 0) {
            cat[la] = 0;
            st = molt__err(ctx, MOLT_ERR_FORMAT,
                           "%s: merge #%d ('%.40s' '%.40s') names a token not in the vocab", what,
                           rank, cat, b);
            break;
        }
        tok__pairmap_put(&t->merges, ia, ib, rank++, im);
    }
    molt__free(cat);
    return st;
}

// Reads vocab + added tokens into the token table of t, and the vocab
// strings as written (byte-level alphabet) into the table of keys.
static molt_status parse_vocab(molt_ctx *ctx, molt_tokenizer *t, molt_tokenizer *keys,
                               const char *what, const cJSON *vocab, const cJSON *added,
                               bool bytelevel) {
    int64_t      max_id = -1, n_entries = 0, id;
    size_t       key_bytes = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        if (!v->string || !json_int(v, 0, INT32_MAX - 1, &id))
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: vocab entry '%.40s' has no valid id",
                             what, v->string ? v->string : "?");
        max_id = MOLT_MAX(max_id, id);
        key_bytes += strlen(v->string);
        n_entries++;
    }
    if (n_entries == 0)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: empty vocab", what);
    cJSON_ArrayForEach(v, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (!json_int(cJSON_GetObjectItemCaseSensitive(v, "id"), 0, INT32_MAX - 1, &id) ||
            !cJSON_IsString(c))
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: added token without a valid id / content",
                             what);
        max_id = MOLT_MAX(max_id, id);
        key_bytes += strlen(c->valuestring);
        n_entries++;
    }
    // Ids may have gaps, but a table sized by a hostile id is refused.
    if (max_id >= 2 * n_entries + 1024)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: token id %lld is far beyond the %lld entries",
                         what, (long long)max_id, (long long)n_entries);
    molt_status st;
    int32_t     nv = (int32_t)max_id + 1;
    if ((st = tok__table_init(ctx, t, nv, key_bytes + 1)) != MOLT_OK ||
        (st = tok__table_init(ctx, keys, nv, key_bytes + 1)) != MOLT_OK)
        return st;
    // Added tokens first: for an id in both, the added content is what
    // decodes (HF's added vocabulary takes precedence in id_to_token).
    cJSON_ArrayForEach(v, added) {
        json_int(cJSON_GetObjectItemCaseSensitive(v, "id"), 0, INT32_MAX - 1, &id);
        const char *c = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
        if (t->flags[id] & TOKF_PRESENT)
            continue; // repeated id: the first one stays
        uint8_t f = TOKF_ADDED;
        if (json_bool(v, "special", false))
            f |= TOKF_SPECIAL;
        if ((st = tok__table_set(ctx, t, (int32_t)id, c, strlen(c), f)) != MOLT_OK)
            return st;
    }
    int16_t inv[BL_CP_MAX];
    byte_level_inverse(inv);
    char *tmp = molt__malloc(keys->n_vocab ? key_bytes + 1 : 1);
    if (!tmp)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what);
    cJSON_ArrayForEach(v, vocab) {
        json_int(v, 0, INT32_MAX - 1, &id);
        const char *s = v->string;
        size_t      n = strlen(s);
        if (!(keys->flags[id] & TOKF_PRESENT) &&
            (st = tok__table_set(ctx, keys, (int32_t)id, s, n, 0)) != MOLT_OK)
            break;
        if (t->flags[id] & TOKF_PRESENT)
            continue;
        long nb = bytelevel ? bl_to_bytes(inv, s, tmp) : (long)n;
        st = nb < 0      ? tok__table_set(ctx, t, (int32_t)id, s, n, TOKF_NOMATCH)
             : bytelevel ? tok__table_set(ctx, t, (int32_t)id, tmp, (size_t)nb, 0)
                         : tok__table_set(ctx, t, (int32_t)id, s, n, 0);
        if (st != MOLT_OK)
            break;
    }
    molt__free(tmp);
    return st;
}

// ----------------------------------------------------------------------------
// the sentencepiece form

static bool is_type(const cJSON *obj, const char *ty) {
    const char *t = json_type(obj);
    return t && !strcmp(t, ty);
}

static bool is_str(const cJSON *obj, const char *key, const char *want) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(j) && !strcmp(j->valuestring, want);
}

// exactly [Prepend "▁", Replace {String " "} → "▁"], as HF's Llama-2 tokenizer.json
static bool sp_normalizer(const cJSON *n) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (!is_type(n, "Sequence") || !cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2)
        return false;
    const cJSON *p = list->child, *r = p->next;
    return is_type(p, "Prepend") && is_str(p, "prepend", SP_SPACE) && is_type(r, "Replace") &&
           is_str(cJSON_GetObjectItemCaseSensitive(r, "pattern"), "String", " ") &&
           is_str(r, "content", SP_SPACE);
}

// byte_fallback / fuse_unk, and the <0xNN> tokens (decoded as bytes; the
// fallback for unknown characters when byte_fallback is on)
static void sp_byte_tokens(molt_tokenizer *t, const cJSON *model) {
    t->byte_fallback = json_bool(model, "byte_fallback", false);
    t->fuse_unk = json_bool(model, "fuse_unk", false);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = tok__strmap_get(&t->vocab, t, name, 6);
        if (id >= 0)
            t->flags[id] |= TOKF_BYTE;
        t->byte_id[b] = t->byte_fallback ? id : -1;
    }
}

size_t tok__piece_sp(const molt_tokenizer *t, int32_t prev_id, int32_t id, char *out,
                     size_t cap) {
    const char *p = t->arena + t->off[id];
    size_t      n = t->len[id], k = 0;
    if (t->flags[id] & TOKF_BYTE) {
        if (cap)
            out[0] = (char)strtol(p + 3, NULL, 16);
        return cap ? 1 : 0;
    }
    bool strip = prev_id < 0 || prev_id == t->bos; // HF's Strip decoder; run.c after BOS
    for (size_t i = 0; i < n && k < cap;) {
        if (n - i >= 3 && !memcmp(p + i, SP_SPACE, 3) && !(t->flags[id] & TOKF_ADDED)) {
            if (i || !strip)
                out[k++] = ' ';
            i += 3;
        } else
            out[k++] = p[i++];
    }
    return k;
}

static int32_t first_present(const molt_tokenizer *t, const char *const *names, int n) {
    for (int i = 0; i < n; i++) {
        int32_t id = tok_lookup(t, names[i]);
        if (id >= 0)
            return id;
    }
    return -1;
}

static molt_status hf_build(molt_ctx *ctx, molt_tokenizer *t, const char *what, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: no \"model\" object", what);
    const char *ty = json_type(model); // absent in files older than tokenizers 0.9: BPE
    if (ty && strcmp(ty, "BPE") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: model type '%s' (only BPE)", what, ty);
    const char *opt[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(model, opt[i]);
        if (cJSON_IsString(o) && o->valuestring[0])
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: BPE with %s", what, opt[i]);
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm) && !(t->sp = sp_normalizer(norm)))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: normalizer '%s' (only none, or Llama-2's Prepend \"" SP_SPACE
                         "\" + Replace \" \" by \"" SP_SPACE "\")",
                         what, json_type(norm) ? json_type(norm) : "?");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (t->sp && pre && !cJSON_IsNull(pre))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer '%s' with the sentencepiece normalizer", what,
                         json_type(pre) ? json_type(pre) : "?");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: model has no \"vocab\" object", what);
    if (merges && !cJSON_IsArray(merges))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: \"merges\" is not an array", what);
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: \"added_tokens\" is not an array", what);
    if (added && !cJSON_IsArray(added))
        added = NULL;

    molt_status     st;
    molt_tokenizer *keys = NULL;
    if ((st = tok__alloc(ctx, what, TOK_BPE_JSON, &keys)) != MOLT_OK)
        return st;
    if ((st = parse_vocab(ctx, t, keys, what, vocab, added, !t->sp)) != MOLT_OK ||
        (st = tok__strmap_build(ctx, &keys->vocab, keys, 0)) != MOLT_OK)
        goto done;
    if (merges && (st = parse_merges(ctx, t, what, keys, merges)) != MOLT_OK)
        goto done;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk) && (t->unk_id = key_id(keys, unk->valuestring)) < 0) {
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: unk_token '%.40s' is not in the vocab", what,
                       unk->valuestring);
        goto done;
    }
    t->ignore_merges = json_bool(model, "ignore_merges", false);
    if ((st = tok__strmap_build(ctx, &t->vocab, t, TOKF_ADDED | TOKF_NOMATCH)) != MOLT_OK ||
        (st = tok__index_added(ctx, t)) != MOLT_OK ||
        (!t->sp && (st = parse_pretok(ctx, t, what, pre)) != MOLT_OK))
        goto done;
    if (t->sp)
        sp_byte_tokens(t, model);
    else
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_id[b] = tok__strmap_get(&t->vocab, t, &c, 1);
        }
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<|endoftext|>"};
    static const char *const eos[] = {"<|end_of_text|>", "</s>", "<|endoftext|>"};
    t->bos = first_present(t, bos, 3);
    t->eos = first_present(t, eos, 3);
done:
    tok__free(keys);
    return st;
}

molt_status tok__load_hf_owned(molt_ctx *ctx, const char *what, char *buf, size_t len,
                               molt_tokenizer **out) {
    molt_tokenizer *t = NULL;
    molt_status     st = tok__alloc(ctx, what, TOK_BPE_JSON, &t);
    if (st != MOLT_OK) {
        molt__free(buf);
        return st;
    }
    t->src = (uint8_t *)buf;
    t->src_len = len;
    cJSON *root = NULL; // (an allocation failure is MOLT_ERR_OOM, not invalid JSON)
    if ((st = js_parse_status(ctx, what, buf, len, &root)) != MOLT_OK)
        ;
    else if (!cJSON_IsObject(root))
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: JSON root is not an object", what);
    else
        st = hf_build(ctx, t, what, root);
    cJSON_Delete(root);
    if (st != MOLT_OK) {
        tok__free(t);
        return st;
    }
    *out = t;
    return MOLT_OK;
}

molt_status tok_load_hf_json_buf(molt_ctx *ctx, const char *what, const char *json, size_t len,
                                 molt_tokenizer **out) {
    char *copy = molt__malloc(len + 1);
    if (!copy)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what ? what : "<buffer>");
    if (len)
        memcpy(copy, json, len);
    copy[len] = 0;
    return tok__load_hf_owned(ctx, what ? what : "<buffer>", copy, len, out);
}
