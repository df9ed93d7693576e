/*
 * test_tokenizer.c — tokenizers against independent references.
 *
 *  (a) Llama-3 twice: the HF tokenizer.json (merges) and Meta's tiktoken
 *      rank file (ranks) are two implementations over different data; every
 *      valid UTF-8 file under shared/data must give identical ids with both,
 *      and decode(encode(x)) == x byte for byte.
 *  (b) kv-llama-2m / mamba2-random: the ids HF transformers produced
 *      (reference_logits.safetensors ids_i, BOS first) for reference_prompts.
 *  (c) stories260K tok512.bin: ids from tests/ref/tok_ref.py (a literal
 *      Python port of llama2.c run.c encode), decoding round trips.
 *  (d) hostile files: truncations, bad lengths, malformed JSON, unknown
 *      merges, bad base64 — a clear error naming the source, no leak; and
 *      allocation failure injection through load + encode.
 *  (e) llama2.c tokenizers (tok512, Llama 2's tokenizer.bin) written as HF
 *      tokenizer.json and read back: the same ids and text as llama2.c.
 *
 * Tool modes (tests/test_tokenizer_ref.sh, scripts/hf_compat/check_tokenizer.sh):
 *   test_tokenizer --encode TOKENIZER [--bos] [--hint N] TEXT_FILE...
 * prints the ids of each text file on one line;
 *   test_tokenizer --to-hf TOKENIZER.bin DIR
 * writes a llama2.c tokenizer's tokenizer.json + tokenizer_config.json into DIR.
 */
#include "testutil.h"
#include "tok/tokenizer.h"

#include <cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static molt_ctx *ctx;

static int to_hf_tool(const char *bin, const char *dir) {
    molt_tokenizer *t = NULL;
    char           *tj = NULL, *cj = NULL, path[4096];
    int             rc = 1;
    if (molt_tokenizer_load(ctx, bin, 0, &t) == MOLT_OK &&
        tok_llama2c_to_hf(ctx, t, &tj, &cj) == MOLT_OK) {
        FILE *f[2];
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        f[0] = fopen(path, "wb");
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        f[1] = fopen(path, "wb");
        rc = !f[0] || !f[1] || fputs(tj, f[0]) < 0 || fputs(cj, f[1]) < 0;
        for (int i = 0; i < 2; i++)
            rc |= f[i] && fclose(f[i]) != 0;
    }
    if (rc)
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
    molt_free(tj);
    molt_free(cj);
    molt_tokenizer_free(t);
    return rc;
}

static int encode_tool(int argc, char **argv) {
    int     bos = 0, i = 3;
    int32_t hint = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (strcmp(argv[i], "--bos") == 0)
            bos = 1;
        else if (strcmp(argv[i], "--hint") == 0 && i + 1 < argc)
            hint = atoi(argv[++i]);
    }
    molt_tokenizer *t = NULL;
    if (molt_tokenizer_load(ctx, argv[2], hint, &t) != MOLT_OK) {
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
        return 1;
    }
    int rc = 0;
    for (; i < argc; i++) {
        size_t   n = 0, n_ids = 0;
        char    *s = t_read_file(argv[i], &n);
        int32_t *ids = NULL;
        if (!s || molt_tokenize(ctx, t, s, n, bos, &ids, &n_ids) != MOLT_OK) {
            fprintf(stderr, "error: %s: %s\n", argv[i], s ? molt_last_error(ctx) : "unreadable");
            rc = 1;
        }
        for (size_t k = 0; k < n_ids; k++)
            printf(k ? " %d" : "%d", ids[k]);
        printf("\n");
        molt_free(ids);
        free(s);
    }
    molt_tokenizer_free(t);
    return rc;
}

// ----------------------------------------------------------------------------
// helpers

static molt_tokenizer *load(const char *path, int32_t hint) {
    molt_tokenizer *t = NULL;
    molt_status     st = molt_tokenizer_load(ctx, path, hint, &t);
    CHECK(st == MOLT_OK, "load %s: %s", path, molt_last_error(ctx));
    return t;
}

// Encodes; returns the ids (molt_free) or NULL after a failed check.
static int32_t *enc(const molt_tokenizer *t, const char *s, size_t n, int bos, size_t *n_ids) {
    int32_t    *ids = NULL;
    molt_status st = molt_tokenize(ctx, t, s, n, bos, &ids, n_ids);
    CHECK(st == MOLT_OK, "tokenize %zu bytes: %s", n, molt_last_error(ctx));
    return st == MOLT_OK ? ids : NULL;
}

// decode(ids) == want, byte for byte.
static bool roundtrip(const molt_tokenizer *t, const int32_t *ids, size_t n_ids, const char *want,
                      size_t n, const char *what) {
    char       *text = NULL;
    size_t      len = 0;
    molt_status st = molt_detokenize(ctx, t, ids, n_ids, &text, &len);
    bool        ok = st == MOLT_OK && len == n && memcmp(text, want, n) == 0;
    CHECK(ok, "%s: decode(encode(x)) != x (status %d, %zu vs %zu bytes)", what, st, len, n);
    molt_free(text);
    return ok;
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb, const char *what) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    bool ok = na == nb && i == na;
    CHECK(ok, "%s: ids differ at %zu (%zu vs %zu ids): %d vs %d", what, i, na, nb,
          i < na ? a[i] : -1, i < nb ? b[i] : -1);
    return ok;
}

// Independent of the library's validator: decode every code point.
static bool utf8_ok(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i], cp, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            k = 1, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0)
            k = 2, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0)
            k = 3, cp = c & 0x07;
        else
            return false;
        if (n - i <= k)
            return false;
        for (uint32_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

typedef struct paths {
    char **v;
    size_t n, cap;
} paths;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk(const char *dir, paths *out) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(p, out);
        else if (S_ISREG(st.st_mode)) {
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 64;
                out->v = realloc(out->v, out->cap * sizeof *out->v);
            }
            out->v[out->n++] = strdup(p);
        }
    }
    closedir(d);
}

// ----------------------------------------------------------------------------
// (a) Llama-3: tokenizer.json vs tiktoken ranks over all of shared/data

static void test_llama3_specials(const molt_tokenizer *hf, const molt_tokenizer *tt) {
    CHECK(molt_tokenizer_vocab(hf) == 128256 && molt_tokenizer_vocab(tt) == 128256,
          "vocab %d / %d", molt_tokenizer_vocab(hf), molt_tokenizer_vocab(tt));
    CHECK(molt_tokenizer_bos(hf) == 128000 && molt_tokenizer_bos(tt) == 128000, "bos");
    CHECK(molt_tokenizer_eos(hf) == 128001 && molt_tokenizer_eos(tt) == 128001, "eos");
    int bad = 0;
    for (int32_t id = 128000; id < 128256; id++) {
        char   a[64], b[64];
        size_t na = tok_piece(hf, -1, id, a, sizeof a), nb = tok_piece(tt, -1, id, b, sizeof b);
        bad += na != nb || memcmp(a, b, na) != 0 || na < 5;
    }
    CHECK(bad == 0, "%d special tokens differ between tokenizer.json and the tiktoken set", bad);
    CHECK(tok_lookup(tt, "<|eot_id|>") == 128009 && tok_lookup(hf, "<|eot_id|>") == 128009,
          "eot_id");
    CHECK(tok_lookup(tt, "<|reserved_special_token_250|>") == 128255, "last reserved");
    CHECK(tok_lookup(hf, " the") == tok_lookup(tt, " the") && tok_lookup(hf, " the") > 0,
          "lookup ' the'");
}

static void test_llama3_corpus(void) {
    const char *jp = t_shared("data/tokenizers/llama3/tokenizer.json");
    char        json_path[4096], model_path[4096], data_dir[4096];
    snprintf(json_path, sizeof json_path, "%s", jp);
    snprintf(model_path, sizeof model_path, "%s", t_shared("data/tokenizers/llama3/tokenizer.model"));
    snprintf(data_dir, sizeof data_dir, "%s", t_shared("data"));
    double          t0 = molt__now();
    molt_tokenizer *hf = load(json_path, 0), *tt = load(model_path, 0);
    if (!hf || !tt)
        goto out;
    printf("llama3: loaded tokenizer.json + tokenizer.model in %.2fs\n", molt__now() - t0);
    CHECK(tok_kind_of(hf) == TOK_BPE_JSON && tok_kind_of(tt) == TOK_TIKTOKEN, "kinds");
    test_llama3_specials(hf, tt);

    paths ps = {0};
    walk(data_dir, &ps);
    qsort(ps.v, ps.n, sizeof *ps.v, cmp_str);
    size_t n_files = 0, n_skipped = 0, bytes = 0, tokens = 0;
    double t_hf = 0, t_tt = 0;
    for (size_t i = 0; i < ps.n; i++) {
        size_t n = 0;
        char  *s = t_read_file(ps.v[i], &n);
        if (!s || !utf8_ok((const uint8_t *)s, n)) {
            n_skipped++;
            free(s);
            continue;
        }
        size_t   na = 0, nb = 0;
        double   a0 = molt__now();
        int32_t *a = enc(hf, s, n, 0, &na);
        double   a1 = molt__now();
        int32_t *b = enc(tt, s, n, 0, &nb);
        t_hf += a1 - a0;
        t_tt += molt__now() - a1;
        if (a && b && ids_equal(a, na, b, nb, ps.v[i])) {
            roundtrip(hf, a, na, s, n, ps.v[i]);
            roundtrip(tt, b, nb, s, n, ps.v[i]);
        }
        n_files++;
        bytes += n;
        tokens += na;
        molt_free(a);
        molt_free(b);
        free(s);
    }
    printf("llama3: %zu files (%zu skipped as not UTF-8), %zu bytes -> %zu tokens\n", n_files,
           n_skipped, bytes, tokens);
    printf("llama3: tokenizer.json %.2fs (%.2f Mtok/s, %.1f MB/s), tiktoken %.2fs (%.2f Mtok/s)\n",
           t_hf, (double)tokens / t_hf / 1e6, (double)bytes / t_hf / 1e6, t_tt,
           (double)tokens / t_tt / 1e6);
    CHECK(n_files >= 100 && bytes > 30000000, "walked too little data: %zu files", n_files);
    for (size_t i = 0; i < ps.n; i++)
        free(ps.v[i]);
    free(ps.v);
out:
    molt_tokenizer_free(hf);
    molt_tokenizer_free(tt);
}

// ----------------------------------------------------------------------------
// (b) HF models: ids in reference_logits.safetensors

// Reads int32 tensor `name` of a safetensors file (u64 header length, JSON
// header, data); malloc'd, NULL when absent.
static int32_t *st_ids(const char *buf, size_t len, const char *name, size_t *n) {
    uint64_t hl = 0;
    for (int i = 0; i < 8 && len >= 8; i++)
        hl |= (uint64_t)(uint8_t)buf[i] << (8 * i);
    if (len < 8 || hl > len - 8)
        return NULL;
    cJSON   *h = cJSON_ParseWithLength(buf + 8, (size_t)hl);
    cJSON   *e = cJSON_GetObjectItemCaseSensitive(h, name);
    cJSON   *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    cJSON   *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int32_t *out = NULL;
    if (cJSON_IsString(dt) && strcmp(dt->valuestring, "I32") == 0 && cJSON_GetArraySize(off) == 2) {
        size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t en = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        if (b <= en && 8 + hl + en <= len) {
            *n = (en - b) / 4;
            out = malloc(en - b + 4);
            memcpy(out, buf + 8 + hl + b, en - b);
        }
    }
    cJSON_Delete(h);
    return out;
}

static void test_reference_ids(const char *model) {
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s", t_shared(model));
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    molt_tokenizer *t = load(p, 0);
    snprintf(p, sizeof p, "%s/reference_prompts.json", dir);
    char *pj = t_read_file(p, NULL);
    snprintf(p, sizeof p, "%s/reference_logits.safetensors", dir);
    size_t sl = 0;
    char  *sb = t_read_file(p, &sl);
    cJSON *root = cJSON_Parse(pj ? pj : "");
    cJSON *prompts = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    CHECK(t && pj && sb && cJSON_GetArraySize(prompts) >= 4, "%s: reference files", model);
    int          i = 0;
    const cJSON *pr;
    cJSON_ArrayForEach(pr, prompts) {
        char name[32];
        snprintf(name, sizeof name, "ids_%d", i++);
        size_t   nw = 0, ng = 0;
        int32_t *want = st_ids(sb, sl, name, &nw);
        CHECK(want && nw > 1, "%s: %s missing", model, name);
        int32_t *got = t && want ? enc(t, pr->valuestring, strlen(pr->valuestring), 1, &ng) : NULL;
        if (got) {
            char what[256];
            snprintf(what, sizeof what, "%s prompt %d", model, i - 1);
            ids_equal(got, ng, want, nw, what);
            roundtrip(t, got + 1, ng - 1, pr->valuestring, strlen(pr->valuestring), what);
        }
        molt_free(got);
        free(want);
    }
    cJSON_Delete(root);
    free(pj);
    free(sb);
    molt_tokenizer_free(t);
}

// ----------------------------------------------------------------------------
// (c) llama2.c tok512.bin; expected ids from tests/ref/tok_ref.py llama2c

static void test_llama2c(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s", t_shared("models/stories260K/tok512.bin"));
    molt_tokenizer *t = load(path, 512), *t0 = load(path, 0);
    if (!t || !t0)
        goto out;
    CHECK(molt_tokenizer_vocab(t) == 512 && molt_tokenizer_vocab(t0) == 512, "vocab %d / %d",
          molt_tokenizer_vocab(t), molt_tokenizer_vocab(t0));
    CHECK(molt_tokenizer_bos(t) == 1 && molt_tokenizer_eos(t) == 2, "bos/eos");
    CHECK(tok_kind_of(t) == TOK_LLAMA2C, "kind");
    static const struct {
        const char *text;
        int32_t     ids[32];
        size_t      n;
    } cases[] = {
        {"Once upon a time, there was a little girl named Lily.",
         {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}, 16},
        {"Hello world! 123 <0x41> h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac",
         {1,   346, 306, 414, 263, 304, 341, 443, 410, 475, 479, 472, 410, 504, 477,
          444, 484, 475, 505, 270, 485, 306, 414, 410, 233, 154, 168, 233, 159, 175}, 30},
        {"", {1}, 1},
        {"a", {1, 261}, 2},
        {"  two  spaces\n\nnewline",
         {1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 13, 13, 416, 411, 424, 421,
          271, 411},
         20},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t   n = 0, len = strlen(cases[c].text);
        int32_t *ids = enc(t, cases[c].text, len, 1, &n);
        if (!ids)
            continue;
        char what[64];
        snprintf(what, sizeof what, "tok512 case %zu", c);
        ids_equal(ids, n, cases[c].ids, cases[c].n, what);
        roundtrip(t, ids, n, cases[c].text, len, what);
        molt_free(ids);
    }
    // Streaming pieces: run.c decode() rules.
    char   buf[16];
    size_t k = tok_piece(t, 1, 261, buf, sizeof buf); // " a" after BOS
    CHECK(k == 1 && buf[0] == 'a', "space stripped after BOS");
    k = tok_piece(t, 5, 261, buf, sizeof buf);
    CHECK(k == 2 && memcmp(buf, " a", 2) == 0, "space kept elsewhere");
    k = tok_piece(t, 5, 0x41 + 3, buf, sizeof buf);
    CHECK(k == 1 && buf[0] == 'A', "<0x41> decodes to a raw byte");
    // Invalid UTF-8 and NUL bytes go through byte fallback and come back.
    static const char junk[] = "x\xff\xfe\xc3(\x80\x80\x80\x80\x80\x00z";
    size_t            n = 0;
    int32_t          *ids = enc(t, junk, sizeof junk - 1, 1, &n);
    if (ids)
        roundtrip(t, ids, n, junk, sizeof junk - 1, "tok512 junk bytes");
    molt_free(ids);
out:
    molt_tokenizer_free(t);
    molt_tokenizer_free(t0);
}

// ----------------------------------------------------------------------------
// a hand-built byte-level tokenizer.json: the plain ByteLevel (GPT-2 regex)
// path, "a b" merges, added tokens. Ids derived by hand.

static char *tiny_json(const char *extra_merges, bool with_bos) {
    // GPT-2 bytes_to_unicode, written independently of the library.
    static char buf[32768];
    size_t      o = 0;
    int         extra = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"added_tokens\":[{\"id\":259,\"content\":"
                                                   "\"<|x|>\",\"special\":true}%s],",
                          with_bos ? ",{\"id\":260,\"content\":\"<s>\",\"special\":true}" : "");
    o += (size_t)snprintf(buf + o, sizeof buf - o,
                          "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                          "\"use_regex\":true},\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        bool     keep = (b >= 33 && b <= 126) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = keep ? (unsigned)b : 256u + (unsigned)extra++;
        char     u[8];
        if (cp == '"' || cp == '\\')
            snprintf(u, sizeof u, "\\%c", (char)cp);
        else if (cp < 0x80)
            snprintf(u, sizeof u, "%c", (char)cp);
        else
            snprintf(u, sizeof u, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
        o += (size_t)snprintf(buf + o, sizeof buf - o, "\"%s\":%d,", u, b);
    }
    o += (size_t)snprintf(buf + o, sizeof buf - o,
                          "\"\xc4\xa0t\":256,\"he\":257,\"\xc4\xa0the\":258},\"merges\":["
                          "\"\xc4\xa0 t\",\"h e\",[\"\xc4\xa0t\",\"he\"]%s]}}",
                          extra_merges ? extra_merges : "");
    return buf;
}

// A pre-tokenizer regex that backtracks without bound is stopped by the
// match limit, with an error naming it. "(a|aa)+b" over 30 a's then "c b"
// needs 3.5M PCRE2 steps (JIT or not): over TOK_MATCH_LIMIT (1M), under
// PCRE2's own default (10M), so without molt's limit the encode would succeed
// after the full backtracking: this test fails then. No timing involved.
static void test_regex_limit(void) {
    const char *tiny = tiny_json(NULL, false);
    const char *old = "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                      "\"use_regex\":true}";
    const char *at = strstr(tiny, old);
    CHECK(at != NULL, "tiny_json's pre_tokenizer");
    if (!at)
        return;
    static char js[40000];
    snprintf(js, sizeof js, "%.*s\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                            "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a|aa)+b\"},"
                            "\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\","
                            "\"add_prefix_space\":false,\"use_regex\":false}]}%s",
             (int)(at - tiny), tiny, at + strlen(old));
    molt_tokenizer *t = NULL;
    molt_status     st = tok_load_hf_json_buf(ctx, "hostile-regex.json", js, strlen(js), &t);
    CHECK(st == MOLT_OK, "hostile regex tokenizer: %s", molt_last_error(ctx));
    if (!t)
        return;
    size_t   n = 0;
    int32_t *ids = enc(t, "ab aab x", 8, 0, &n); // ordinary text: words found, no limit hit
    CHECK(ids && n >= 3, "hostile regex on ordinary text: %zu ids", n);
    molt_free(ids);
    char text[64];
    memset(text, 'a', 30);
    memcpy(text + 30, "c b", 4);
    ids = NULL;
    st = molt_tokenize(ctx, t, text, 33, 0, &ids, &n);
    char limit[32];
    snprintf(limit, sizeof limit, "%d steps", TOK_MATCH_LIMIT);
    CHECK(st == MOLT_ERR_UNSUPPORTED && strstr(molt_last_error(ctx), "match limit") &&
              strstr(molt_last_error(ctx), limit) && strstr(molt_last_error(ctx), "hostile-regex"),
          "a catastrophic regex: status %d, '%s' (want MOLT_ERR_UNSUPPORTED naming the limit)", st,
          molt_last_error(ctx));
    molt_free(ids);
    molt_tokenizer_free(t);
}

static void test_tiny_json(void) {
    const char     *js = tiny_json(NULL, false);
    molt_tokenizer *t = NULL;
    molt_status     st = tok_load_hf_json_buf(ctx, "tiny.json", js, strlen(js), &t);
    CHECK(st == MOLT_OK, "tiny json: %s", molt_last_error(ctx));
    if (!t)
        return;
    static const struct {
        const char *s;
        int32_t     ids[8];
        size_t      n;
    } cases[] = {
        {" the cat", {258, 32, 99, 97, 116}, 5},
        {"a<|x|>b", {97, 259, 98}, 3},
        {"<|x|><|x|>", {259, 259}, 2},
        {"the", {116, 257}, 2},
        {"it's", {105, 116, 39, 115}, 4},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t   n = 0;
        int32_t *ids = enc(t, cases[c].s, strlen(cases[c].s), 0, &n);
        if (ids) {
            ids_equal(ids, n, cases[c].ids, cases[c].n, cases[c].s);
            roundtrip(t, ids, n, cases[c].s, strlen(cases[c].s), cases[c].s);
        }
        molt_free(ids);
    }
    CHECK(tok_lookup(t, " the") == 258 && tok_lookup(t, "<|x|>") == 259, "tiny lookup");
    CHECK(molt_tokenizer_bos(t) == -1, "no BOS in tiny json");
    int32_t *ids = NULL;
    size_t   n = 0;
    CHECK(molt_tokenize(ctx, t, "a", 1, 1, &ids, &n) == MOLT_ERR_ARG, "add_bos without BOS");
    CHECK(tok_set_special(t, 259, 259) == MOLT_OK && molt_tokenizer_bos(t) == 259, "set special");
    CHECK(tok_set_special(t, 5000, 1) == MOLT_ERR_ARG, "set special out of range");
    int32_t bad[] = {97, 261};
    char   *txt = NULL;
    CHECK(molt_detokenize(ctx, t, bad, 2, &txt, &n) == MOLT_ERR_ARG, "decode id out of range");
    molt_tokenizer_free(t);
}

// ----------------------------------------------------------------------------
// (d) hostile inputs

static void expect(molt_status st, molt_status want, molt_tokenizer *t, const char *what,
                   const char *needle) {
    CHECK(st == want, "%s: status %d (want %d): %s", what, st, want, molt_last_error(ctx));
    if (st != MOLT_OK)
        CHECK(strstr(molt_last_error(ctx), needle) != NULL, "%s: error '%s' lacks '%s'", what,
              molt_last_error(ctx), needle);
    molt_tokenizer_free(t);
}

static void put_i32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static void test_hostile_llama2c(void) {
    size_t   len = 0;
    uint8_t *b = (uint8_t *)t_read_file(t_shared("models/stories260K/tok512.bin"), &len);
    CHECK(b && len > 1000, "tok512.bin");
    if (!b)
        return;
    molt_tokenizer *t = NULL;
    int             wrong = 0;
    for (size_t cut = 0; cut < len; cut++) { // every truncation
        t = NULL;
        molt_status st = tok_load_llama2c_buf(ctx, "cut.bin", b, cut, 512, &t);
        wrong += st != MOLT_ERR_FORMAT || !strstr(molt_last_error(ctx), "cut.bin");
        molt_tokenizer_free(t);
        t = NULL;
        st = tok_load_llama2c_buf(ctx, "cut.bin", b, cut, 0, &t);
        wrong += st != MOLT_OK && st != MOLT_ERR_FORMAT;
        molt_tokenizer_free(t);
    }
    CHECK(wrong == 0, "%d truncations of tok512.bin not refused cleanly", wrong);
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    put_i32(c + 4 + 4, -5); // token 0 length
    t = NULL;
    expect(tok_load_llama2c_buf(ctx, "neg.bin", c, len, 512, &t), MOLT_ERR_FORMAT, t, "negative",
           "negative length");
    put_i32(c + 4 + 4, 0x7FFFFFFF);
    t = NULL;
    expect(tok_load_llama2c_buf(ctx, "huge.bin", c, len, 512, &t), MOLT_ERR_FORMAT, t, "huge",
           "huge.bin");
    memcpy(c, b, len);
    put_i32(c, -1);
    t = NULL;
    expect(tok_load_llama2c_buf(ctx, "maxlen.bin", c, len, 512, &t), MOLT_ERR_FORMAT, t, "maxlen",
           "max_token_len");
    t = NULL;
    expect(tok_load_llama2c_buf(ctx, "hint.bin", b, len, 513, &t), MOLT_ERR_FORMAT, t, "hint",
           "fewer tokens");
    t = NULL;
    expect(tok_load_llama2c_buf(ctx, "hint.bin", b, len, -1, &t), MOLT_ERR_ARG, t, "hint<0",
           "negative");
    // Through a file: the message names the path.
    char path[256];
    snprintf(path, sizeof path, "/tmp/molt_tok_test_%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len / 2, f);
    fclose(f);
    t = NULL;
    expect(molt_tokenizer_load(ctx, path, 512, &t), MOLT_ERR_FORMAT, t, "file", path);
    remove(path);
    t = NULL;
    expect(molt_tokenizer_load(ctx, path, 512, &t), MOLT_ERR_IO, t, "missing file", path);
    free(c);
    free(b);
}

static void test_hostile_json(void) {
    static const struct {
        const char *json, *needle;
        molt_status st;
    } cases[] = {
        {"{}", "no \"model\"", MOLT_ERR_FORMAT},
        {"[1,2]", "not an object", MOLT_ERR_FORMAT},
        {"{\"model\":", "invalid JSON", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\"}}", "vocab", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "WordPiece", MOLT_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", "empty vocab", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "valid id", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}", "valid id", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", "valid id", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999}}}", "far beyond",
         MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}",
         "merge #0", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
         "not in the vocab", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}", "merge #0",
         MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}", "merge #0",
         MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", "merges",
         MOLT_ERR_FORMAT},
        {"{\"added_tokens\":[{\"id\":\"x\"}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
         "added token", MOLT_ERR_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "pre_tokenizer",
         MOLT_ERR_UNSUPPORTED},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{"
         "\"a\":0}}}",
         "Metaspace", MOLT_ERR_UNSUPPORTED},
        {"{\"normalizer\":{\"type\":\"NFC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
         "NFC", MOLT_ERR_UNSUPPORTED},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{\"a\":0}}}",
         "add_prefix_space", MOLT_ERR_UNSUPPORTED},
        {"{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
         "\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\","
         "\"add_prefix_space\":false}]},\"model\":{\"vocab\":{\"a\":0}}}",
         "regex", MOLT_ERR_FORMAT},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":"
         "\"Isolated\"},\"model\":{\"vocab\":{\"a\":0}}}",
         "ByteLevel", MOLT_ERR_UNSUPPORTED},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":"
         "\"Removed\"},\"model\":{\"vocab\":{\"a\":0}}}",
         "Removed", MOLT_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        molt_tokenizer *t = NULL;
        char            what[32];
        snprintf(what, sizeof what, "bad%zu.json", i);
        molt_status st = tok_load_hf_json_buf(ctx, what, cases[i].json, strlen(cases[i].json), &t);
        expect(st, cases[i].st, t, what, cases[i].needle);
        if (st != MOLT_OK)
            CHECK(strstr(molt_last_error(ctx), what) != NULL, "%s: error does not name it", what);
    }
    // Truncations of a real tokenizer.json.
    size_t len = 0;
    const char *kvp = t_shared("models/kv-llama-2m/tokenizer.json");
    char  *js = t_have(kvp, "truncations of a real tokenizer.json") ? t_read_file(kvp, &len) : NULL;
    CHECK(js != NULL || !t_exists(kvp), "kv tokenizer.json");
    int wrong = 0;
    for (size_t k = 1; js && k < 200; k++) {
        molt_tokenizer *t = NULL;
        molt_status     st = tok_load_hf_json_buf(ctx, "cut.json", js, len * k / 200, &t);
        wrong += st != MOLT_ERR_FORMAT;
        molt_tokenizer_free(t);
    }
    CHECK(wrong == 0, "%d truncated tokenizer.json loads not refused", wrong);
    free(js);
}

static char *tiny_tiktoken(const char *extra, size_t *len) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static char       buf[8192];
    size_t            o = 0;
    for (int b = 0; b < 256; b++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%c%c== %d\n", b64[b >> 2],
                              b64[(b & 3) << 4], b);
    // "ab" = YWI=, "abc" = YWJj, " a" = IGE=
    o += (size_t)snprintf(buf + o, sizeof buf - o, "YWI= 256\nYWJj 257\nIGE= 258\n%s",
                          extra ? extra : "");
    *len = o;
    return buf;
}

static void test_tiktoken_small(void) {
    size_t          len = 0;
    char           *tt = tiny_tiktoken(NULL, &len);
    molt_tokenizer *t = NULL;
    molt_status     st = tok_load_tiktoken_buf(ctx, "tiny.tiktoken", tt, len, &t);
    CHECK(st == MOLT_OK, "tiny tiktoken: %s", molt_last_error(ctx));
    if (t) {
        CHECK(molt_tokenizer_vocab(t) == 259 + 256 && molt_tokenizer_bos(t) == 259, "tiny vocab");
        size_t   n = 0;
        int32_t *ids = enc(t, "abc abd<|eot_id|>", 17, 0, &n);
        // " abd" is one word: "ab" (256) outranks " a" (258), then nothing merges.
        int32_t  want[] = {257, 32, 256, 100, 259 + 9};
        if (ids)
            ids_equal(ids, n, want, 5, "tiny tiktoken");
        molt_free(ids);
        molt_tokenizer_free(t);
    }
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"QQ== 0\nQ!== 1\n", "line 2"},
        {"QQ= 0\n", "base64"},
        {"QQ== 0\n", "byte 0x00"},
        {"QQ== 0\nQg== 0\n", "repeated"},
        {"QQ== 0\nQg== 99999999\n", "far beyond"},
        {"QQ== 0\nQg==  1\n", "line 2"},
        {"QQ== 0\nQg== 1x\n", "line 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = NULL;
        char what[32];
        snprintf(what, sizeof what, "bad%zu.model", i);
        expect(tok_load_tiktoken_buf(ctx, what, bad[i].text, strlen(bad[i].text), &t),
               MOLT_ERR_FORMAT, t, what, bad[i].needle);
    }
}

// ----------------------------------------------------------------------------
// edge cases: empty / huge / invalid text, save + reload, allocation failures

static void test_edges(const molt_tokenizer *hf, const molt_tokenizer *tt,
                       const molt_tokenizer *l2) {
    const molt_tokenizer *all[3] = {hf, tt, l2};
    for (int k = 0; k < 3; k++) {
        int32_t *ids = NULL;
        size_t   n = 99;
        CHECK(molt_tokenize(ctx, all[k], NULL, 0, 0, &ids, &n) == MOLT_OK && ids && n == 0,
              "empty text, no BOS");
        molt_free(ids);
        CHECK(molt_tokenize(ctx, all[k], "", 0, 1, &ids, &n) == MOLT_OK && n == 1 &&
                  ids[0] == molt_tokenizer_bos(all[k]),
              "empty text with BOS");
        molt_free(ids);
        CHECK(molt_tokenize(ctx, all[k], NULL, 5, 0, &ids, &n) == MOLT_ERR_ARG, "NULL text");
    }
    // 4 MB of pathological runs + random bytes: no crash, HF == tiktoken on
    // the valid part, byte-exact round trip everywhere.
    size_t big = 4u << 20;
    char  *s = malloc(big);
    for (size_t i = 0; i < big; i++) {
        size_t q = i / (big / 8);
        s[i] = q == 0 ? ' ' : q == 1 ? 'a' : q == 2 ? '!' : q == 3 ? '7' : q == 4 ? '\n'
             : q == 5 ? (char)(i % 3 ? ' ' : '\n') : q == 6 ? (char)("ab c\r\n\t"[i % 7]) : 'z';
    }
    double   t0 = molt__now();
    size_t   na = 0, nb = 0;
    int32_t *a = enc(hf, s, big, 0, &na), *b = enc(tt, s, big, 0, &nb);
    printf("edges: 4 MB of long runs encoded twice in %.2fs (%zu tokens)\n", molt__now() - t0, na);
    if (a && b && ids_equal(a, na, b, nb, "4 MB runs")) {
        roundtrip(hf, a, na, s, big, "4 MB runs hf");
        roundtrip(tt, b, nb, s, big, "4 MB runs tiktoken");
    }
    molt_free(a);
    molt_free(b);
    t_seed(7);
    for (size_t i = 0; i < (1u << 20); i++)
        s[i] = (char)(int)t_uniform(0, 256);
    for (int k = 0; k < 3; k++) {
        size_t   len = k == 2 ? 20000 : (1u << 20), n = 0;
        int32_t *ids = enc(all[k], s, len, 1, &n);
        // BOS decodes to nothing for llama2.c (and strips the dummy prefix),
        // to "<|begin_of_text|>" for the others: leave it out there.
        if (ids)
            roundtrip(all[k], ids + (k < 2), n - (k < 2), s, len, "random bytes");
        molt_free(ids);
    }
    free(s);
}

static void test_save(const molt_tokenizer *const *all, int n) {
    static const char text[] = "Hello, world! <|eot_id|> 1234567 ünïcödé\n\n  x";
    for (int k = 0; k < n; k++) {
        char path[256];
        snprintf(path, sizeof path, "/tmp/molt_tok_save_%d_%d", (int)getpid(), k);
        molt_status st = tok_save(ctx, all[k], path);
        CHECK(st == MOLT_OK, "save: %s", molt_last_error(ctx));
        molt_tokenizer *r = st == MOLT_OK ? load(path, molt_tokenizer_vocab(all[k])) : NULL;
        if (r) {
            CHECK(tok_kind_of(r) == tok_kind_of(all[k]) &&
                      molt_tokenizer_vocab(r) == molt_tokenizer_vocab(all[k]),
                  "reloaded kind / vocab");
            size_t   na = 0, nb = 0;
            int32_t *a = enc(all[k], text, sizeof text - 1, 1, &na);
            int32_t *b = enc(r, text, sizeof text - 1, 1, &nb);
            if (a && b)
                ids_equal(a, na, b, nb, "save + reload");
            molt_free(a);
            molt_free(b);
        }
        molt_tokenizer_free(r);
        remove(path);
    }
}

// ----------------------------------------------------------------------------
// (e) llama2.c tokenizers written as HF tokenizer.json (tok_l2hf.c), read back
// by molt's HF loader: the same ids as the llama2.c tokenizer (tests/ref's
// port of run.c checks that one), BOS or not, on TinyStories (whole files and
// line by line), edge cases and random text; the same decoded text.

static molt_tokenizer *l2_to_hf(const molt_tokenizer *l2, const char *what) {
    char *tj = NULL, *cj = NULL;
    molt_status st = tok_llama2c_to_hf(ctx, l2, &tj, &cj);
    CHECK(st == MOLT_OK, "%s: tokenizer.json: %s", what, molt_last_error(ctx));
    molt_tokenizer *hf = NULL;
    if (st == MOLT_OK) {
        st = tok_load_hf_json_buf(ctx, what, tj, strlen(tj), &hf);
        CHECK(st == MOLT_OK, "%s: reading the written tokenizer.json: %s", what,
              molt_last_error(ctx));
        cJSON *c = cJSON_Parse(cj), *cls = cJSON_GetObjectItemCaseSensitive(c, "tokenizer_class");
        CHECK(cJSON_IsString(cls) && !strcmp(cls->valuestring, "PreTrainedTokenizerFast"),
              "%s: tokenizer_config.json names PreTrainedTokenizerFast", what);
        cJSON_Delete(c);
    }
    molt_free(tj);
    molt_free(cj);
    return hf;
}

// ids with and without BOS, and the decoded text, agree; returns mismatches
static int l2_hf_same(const molt_tokenizer *l2, const molt_tokenizer *hf, const char *s, size_t n,
                      const char *what) {
    int bad = 0;
    for (int bos = 0; bos < 2; bos++) {
        size_t   na = 0, nb = 0;
        int32_t *a = enc(l2, s, n, bos, &na), *b = enc(hf, s, n, bos, &nb);
        bool     same = a && b && na == nb && !memcmp(a, b, na * sizeof *a);
        if (!same && bad++ == 0)
            ids_equal(a, na, b, nb, what);
        // (without BOS, HF's decoder strips the dummy-prefix space; run.c keeps it)
        char  *ta = NULL, *tb = NULL;
        size_t la = 0, lb = 0, cut = 0;
        if (same && molt_detokenize(ctx, l2, a, na, &ta, &la) == MOLT_OK &&
            molt_detokenize(ctx, hf, b, nb, &tb, &lb) == MOLT_OK)
            cut = !bos && la && ta[0] == ' ';
        if (ta && tb && (la - cut != lb || memcmp(ta + cut, tb, lb)) && bad++ == 0)
            CHECK(false, "%s: decoded texts differ (%zu vs %zu bytes)", what, la, lb);
        molt_free(ta);
        molt_free(tb);
        molt_free(a);
        molt_free(b);
    }
    return bad;
}

static void test_l2hf_edges(const molt_tokenizer *l2, const molt_tokenizer *hf, const char *name) {
    static const char *const edge[] = {
        "", " ", "  ", "a", " a", "a ", "\n", "\n\n", "\t", " \t \n ", "\r\n\r\n",
        "Lily  and  Tom", "  leading", "trailing   ",
        "h\xc3\xa9llo w\xc3\xb6rld \xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
        "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
        "family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
        "e\xcc\x81 combining", "\xef\xbb\xbf" "BOM", "\xc2\xa0" "nbsp\xc2\xa0",
        "zero\xe2\x80\x8bwidth",
        "<0x41> <0x", "<unk", "s> <", "\xe2\x84\xa2 [~]", "a\xe2\x80\x8a b",
        "x\xff\xfe\xc3(\x80\x80\x80\x80\x80z", "\x80" "abc", "a\x80", "\xc0\xaf", "\xed\xa0\x80",
        "\xf8\x88\x80\x80\x80", "\xf0\x9f\x98", "ab\xe6\x97",
    };
    int bad = 0;
    char what[96];
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
        snprintf(what, sizeof what, "%s edge case %zu", name, i);
        bad += l2_hf_same(l2, hf, edge[i], strlen(edge[i]), what);
    }
    static const char nul[] = "a\0b \0";
    bad += l2_hf_same(l2, hf, nul, sizeof nul - 1, "NUL bytes");
    char buf[160];
    for (int n = 1; n <= 40; n++) { // whitespace runs: run.c merges the leftmost pair first
        static const char *const pre[] = {"", "x", "x\n", "\t"}, *const post[] = {"", "y", "\n"};
        for (int p = 0; p < 4; p++)
            for (int q = 0; q < 3; q++) {
                snprintf(buf, sizeof buf, "%s%*s%s", pre[p], n, "", post[q]);
                snprintf(what, sizeof what, "%s: %d spaces (%d, %d)", name, n, p, q);
                bad += l2_hf_same(l2, hf, buf, strlen(buf), what);
            }
    }
    // random text: characters with spaces, and concatenated vocabulary pieces
    static const char *const alpha[] = {" ", " ", "a", "n", "e", "t", "h", "o", ".",
                                        ",", "\n", "T", "\xc3\xa9", "\xe6\x97\xa5", "!", "'",
                                        "\xf0\x9f\x98\x80"};
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 3000; k++) {
        size_t n = 0;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int len = 1 + (int)((r >> 33) % 24), pieces = k % 2;
        for (int j = 0; j < len && n < sizeof buf - 16; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            if (pieces) {
                uint64_t span = (uint64_t)(molt_tokenizer_vocab(l2) - 259);
                int32_t  id = 259 + (int32_t)((r >> 33) % span);
                char    pc[64];
                size_t  pl = tok_piece(l2, 5, id, pc, sizeof pc);
                if (n + pl < sizeof buf - 1) {
                    memcpy(buf + n, pc, pl);
                    n += pl;
                }
            } else {
                const char *a = alpha[(r >> 33) % (sizeof alpha / sizeof *alpha)];
                memcpy(buf + n, a, strlen(a));
                n += strlen(a);
            }
        }
        snprintf(what, sizeof what, "%s random text %d", name, k);
        bad += l2_hf_same(l2, hf, buf, n, what);
    }
    CHECK(bad == 0, "%s: %d edge / random texts tokenize differently as tokenizer.json", name, bad);
    // Where HF's Llama tokenizers themselves differ from run.c (documented in
    // tok_l2hf.c): the special tokens' texts, and "▁" as a space.
    size_t   na = 0, nb = 0;
    int32_t *a = enc(hf, "a <s> b", 7, 0, &na);
    bool has_bos = false;
    for (size_t i = 0; a && i < na; i++)
        has_bos |= a[i] == 1;
    CHECK(has_bos, "%s: the text \"<s>\" is HF's BOS token in tokenizer.json", name);
    molt_free(a);
    a = enc(hf, "a\xe2\x96\x81" "b", 5, 0, &na);
    int32_t *b = enc(hf, "a b", 3, 0, &nb);
    if (a && b)
        ids_equal(a, na, b, nb, "\"\xe2\x96\x81\" reads as a space");
    molt_free(a);
    molt_free(b);
}

static void test_l2hf_one(const char *path, const char *name) {
    molt_tokenizer *l2 = load(path, 0), *hf = l2 ? l2_to_hf(l2, name) : NULL;
    if (!hf) {
        molt_tokenizer_free(l2);
        return;
    }
    CHECK(tok_kind_of(hf) == TOK_BPE_JSON && molt_tokenizer_vocab(hf) == molt_tokenizer_vocab(l2) &&
              molt_tokenizer_bos(hf) == 1 && molt_tokenizer_eos(hf) == 2,
          "%s: tokenizer.json vocab %d, bos %d, eos %d", name, molt_tokenizer_vocab(hf),
          molt_tokenizer_bos(hf), molt_tokenizer_eos(hf));
    static const char *const corpus[] = {"data/tinystories/tinystories_v1_valid_head.txt",
                                         "data/tinystories/tinystories_v1_train_head.txt"};
    for (int c = 0; c < 2; c++) {
        if (!t_have(t_shared(corpus[c]), "TinyStories for the tokenizer.json comparison"))
            continue;
        size_t len = 0;
        char  *text = t_read_file(t_shared(corpus[c]), &len), what[96];
        snprintf(what, sizeof what, "%s: %s as one text", name, corpus[c]);
        l2_hf_same(l2, hf, text, len, what);
        int bad = 0, lines = 0;
        for (char *p = text, *e; p < text + len && lines < 2000; p = e + 1, lines++) {
            e = memchr(p, '\n', (size_t)(text + len - p));
            e = e ? e : text + len;
            snprintf(what, sizeof what, "%s: %s line %d", name, corpus[c], lines + 1);
            bad += l2_hf_same(l2, hf, p, (size_t)(e - p), what);
        }
        CHECK(bad == 0, "%s: %d of %d lines of %s differ", name, bad, lines, corpus[c]);
        free(text);
    }
    test_l2hf_edges(l2, hf, name);
    molt_tokenizer_free(hf);
    molt_tokenizer_free(l2);
}

// a vocabulary tokenizer.json cannot carry is refused, naming the token
static void test_l2hf_refused(void) {
    size_t   len = 0;
    uint8_t *b = (uint8_t *)t_read_file(t_shared("models/stories260K/tok512.bin"), &len);
    if (!b)
        return;
    size_t off[512];
    for (size_t i = 0, p = 4; i < 512; i++) {
        off[i] = p + 8; // the piece's bytes
        p += 8 + (size_t)(b[p + 4] | b[p + 5] << 8);
    }
    uint8_t *c = malloc(len);
    struct {
        int32_t     id;
        const char *bytes, *needle;
    } cases[] = {
        {10, "<0x0G>", "byte token"},                    // "<0x07>"
        {260, "\xff" "e", "not valid UTF-8"},            // "he"
        {261, " t", "appears twice"},                    // " a" = id 259
        {0, "\xe2\x96\x81", "literal"},                  // the first piece of 3+ bytes
        {1, "<b>", "is not <s>"},                        // "\n<s>\n"
    };
    for (int32_t i = 259; i < 512 && !cases[3].id; i++)
        if ((c[0] = b[off[i] - 4]) >= 3)
            cases[3].id = i;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        memcpy(c, b, len);
        size_t n = strlen(cases[k].bytes);
        size_t have = (size_t)(c[off[cases[k].id] - 4] | c[off[cases[k].id] - 3] << 8);
        if (have < n)
            continue; // (the piece is shorter than the replacement: skip)
        memcpy(c + off[cases[k].id], cases[k].bytes, n);
        memset(c + off[cases[k].id] + n, cases[k].id == 1 ? '\n' : 'x', have - n);
        molt_tokenizer *t = NULL;
        char *tj = NULL, *cj = NULL;
        CHECK(tok_load_llama2c_buf(ctx, "edit.bin", c, len, 512, &t) == MOLT_OK, "edit.bin");
        molt_status st = t ? tok_llama2c_to_hf(ctx, t, &tj, &cj) : MOLT_OK;
        CHECK(st == MOLT_ERR_UNSUPPORTED && strstr(molt_last_error(ctx), cases[k].needle) &&
                  !tj && !cj,
              "case %zu: status %d, '%s' (want '%s')", k, st, molt_last_error(ctx),
              cases[k].needle);
        molt_tokenizer_free(t);
    }
    molt_tokenizer *t = NULL; // fewer than 259 tokens: no byte fallback to write
    CHECK(tok_load_llama2c_buf(ctx, "short.bin", b, len, 200, &t) == MOLT_OK, "short.bin");
    char *tj = NULL, *cj = NULL;
    CHECK(t && tok_llama2c_to_hf(ctx, t, &tj, &cj) == MOLT_ERR_UNSUPPORTED, "200 tokens refused");
    molt_tokenizer_free(t);
    // allocation failures: MOLT_ERR_OOM and no leak, at every allocation
    t = load(t_shared("models/stories260K/tok512.bin"), 0);
    int64_t base = molt__alloc_live();
    int     clean = 0, wrong = 0;
    for (int64_t k = 1; t && k < 20000 && clean < 5; k++) {
        molt__alloc_fail_after(k);
        molt_status st = tok_llama2c_to_hf(ctx, t, &tj, &cj);
        molt__alloc_fail_after(0);
        molt_free(tj);
        molt_free(cj);
        clean = st == MOLT_OK ? clean + 1 : 0;
        wrong += (st != MOLT_OK && st != MOLT_ERR_OOM) || molt__alloc_live() != base;
    }
    CHECK(clean == 5 && wrong == 0, "tokenizer.json under allocation failures: %d wrong", wrong);
    molt_tokenizer_free(t);
    free(c);
    free(b);
}

static void test_llama2c_hf(void) {
    test_l2hf_refused();
    test_l2hf_one(t_shared("models/stories260K/tok512.bin"), "tok512");
    const char *l2 = t_shared("data/tokenizers/llama2/tokenizer.bin");
    if (t_have(l2, "Llama 2's tokenizer.bin as tokenizer.json"))
        test_l2hf_one(l2, "llama2 tokenizer.bin");
}

// Fails the n-th allocation for n = 1, 2, ... (every one up to 2000, then
// ~0.5% apart: a parsed tokenizer.json's cJSON tree is thousands of blocks)
// through load + encode: every failure must surface as MOLT_ERR_OOM and leak
// nothing. Stops after 30 clean runs in a row (a failed JIT allocation is
// absorbed, not an error).
static void oom_loop(const char *what, const char *buf, size_t len, int kind) {
    int64_t base = molt__alloc_live();
    int     clean = 0, bad = 0;
    for (int64_t n = 1; n < 1000000 && clean < 30; n += n < 2000 ? 1 : n / 200) {
        molt_tokenizer *t = NULL;
        int32_t        *ids = NULL;
        size_t          n_ids = 0;
        molt__alloc_fail_after(n);
        molt_status st = kind == 0   ? tok_load_hf_json_buf(ctx, what, buf, len, &t)
                         : kind == 1 ? tok_load_tiktoken_buf(ctx, what, buf, len, &t)
                                     : tok_load_llama2c_buf(ctx, what, (const uint8_t *)buf, len,
                                                            0, &t);
        if (st == MOLT_OK)
            st = molt_tokenize(ctx, t, "Once upon a time, abc", 21, 1, &ids, &n_ids);
        molt__alloc_fail_after(0);
        molt_free(ids);
        molt_tokenizer_free(t);
        clean = st == MOLT_OK ? clean + 1 : 0;
        if (st != MOLT_OK && st != MOLT_ERR_OOM && bad++ < 3)
            CHECK(false, "%s: allocation %lld failed as status %d: %s", what, (long long)n, st,
                  molt_last_error(ctx));
        if (molt__alloc_live() != base && bad++ < 3)
            CHECK(false, "%s: leak after failing allocation %lld", what, (long long)n);
    }
    CHECK(clean >= 30, "%s: never succeeded under allocation failure injection", what);
}

static void test_oom(void) {
    size_t len = 0;
    const char *kvp = t_shared("models/kv-llama-2m/tokenizer.json");
    char  *js = t_have(kvp, "allocation failures in kv tokenizer.json") ? t_read_file(kvp, &len)
                                                                        : NULL;
    if (js)
        oom_loop("kv tokenizer.json", js, len, 0);
    free(js);
    char *tt = tiny_tiktoken(NULL, &len);
    oom_loop("tiny tiktoken", tt, len, 1);
    char *bin = t_read_file(t_shared("models/stories260K/tok512.bin"), &len);
    if (bin)
        oom_loop("tok512.bin", bin, len, 2);
    free(bin);
}

int main(int argc, char **argv) {
    ctx = molt_ctx_new();
    if (argc == 4 && strcmp(argv[1], "--to-hf") == 0) {
        int rc = to_hf_tool(argv[2], argv[3]);
        molt_ctx_free(ctx);
        return rc;
    }
    if (argc >= 3 && strcmp(argv[1], "--encode") == 0) {
        int rc = encode_tool(argc, argv);
        molt_ctx_free(ctx);
        return rc;
    }
    if (!t_exists(t_shared("models/stories260K/tok512.bin"))) {
        molt_ctx_free(ctx);
        return t_skip("test_tokenizer", "needs models/stories260K/tok512.bin");
    }
    int64_t live0 = molt__alloc_live();
    double  t0 = molt__now();
    test_hostile_llama2c();
    test_hostile_json();
    test_tiktoken_small();
    test_tiny_json();
    test_regex_limit();
    test_llama2c();
    test_llama2c_hf();
    if (t_have(t_shared("models/kv-llama-2m"), "kv-llama-2m reference ids"))
        test_reference_ids("models/kv-llama-2m");
    if (t_have(t_shared("models/mamba2-random"), "mamba2-random reference ids"))
        test_reference_ids("models/mamba2-random");
    test_oom();
    if (t_have(t_shared("data/tokenizers/llama3/tokenizer.json"),
               "Llama 3 tokenizer edges, save/load and corpus round trips")) {
        char p[3][4096];
        snprintf(p[0], sizeof p[0], "%s", t_shared("data/tokenizers/llama3/tokenizer.json"));
        snprintf(p[1], sizeof p[1], "%s", t_shared("data/tokenizers/llama3/tokenizer.model"));
        snprintf(p[2], sizeof p[2], "%s", t_shared("models/stories260K/tok512.bin"));
        molt_tokenizer *all[3] = {load(p[0], 0), load(p[1], 0), load(p[2], 512)};
        if (all[0] && all[1] && all[2]) {
            test_edges(all[0], all[1], all[2]);
            test_save((const molt_tokenizer *const *)all, 3);
        }
        for (int k = 0; k < 3; k++)
            molt_tokenizer_free(all[k]);
        test_llama3_corpus();
    }
    CHECK(molt__alloc_live() == live0, "%lld blocks leaked",
          (long long)(molt__alloc_live() - live0));
    printf("test_tokenizer: %d checks in %.1fs\n", t_checks, molt__now() - t0);
    molt_ctx_free(ctx);
    return t_done("test_tokenizer");
}
