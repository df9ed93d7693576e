/*
 * fuzz_tokenizer.c — every tokenizer parser and the byte-level encoder on
 * arbitrary bytes. The input is tried as:
 *   (a) a tokenizer.json, then a tiktoken rank file: must load or fail with
 *       a status, never crash; what loads encodes and decodes a short text;
 *   (b) text for the kv-llama-2m tokenizer (loaded once from $MOLT_SHARED or
 *       ../shared; skipped when absent): decode(encode(x)) == x for any
 *       bytes, since that vocabulary has all 256 byte tokens;
 *   (c) a llama2.c tokenizer.bin, which then encodes the input as text.
 * Leaks abort: molt's live-block count must be the same after each input.
 */
#include "tok/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static molt_ctx       *g_ctx;
static molt_tokenizer *g_kv;
static bool            g_kv_all_bytes;

static void init(void) {
    g_ctx = molt_ctx_new();
    const char *root = getenv("MOLT_SHARED");
    char        path[4096];
    snprintf(path, sizeof path, "%s/models/kv-llama-2m/tokenizer.json",
             root && *root ? root : "../shared");
    FILE *f = fopen(path, "rb");
    if (!f)
        return; // no shared data: part (b) is skipped
    fclose(f);
    if (molt_tokenizer_load(g_ctx, path, 0, &g_kv) != MOLT_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", molt_last_error(g_ctx));
        abort();
    }
    g_kv_all_bytes = true;
    for (int b = 0; b < 256; b++)
        g_kv_all_bytes = g_kv_all_bytes && g_kv->byte_id[b] >= 0;
}

// Encodes then decodes; with check, the bytes must come back unchanged.
static void encode_decode(const molt_tokenizer *t, const uint8_t *s, size_t n, bool check) {
    int32_t *ids = NULL;
    size_t   n_ids = 0, len = 0;
    char    *text = NULL;
    if (molt_tokenize(g_ctx, t, (const char *)s, n, 0, &ids, &n_ids) == MOLT_OK) {
        for (size_t i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= molt_tokenizer_vocab(t))
                abort(); // an id outside the vocabulary
        if (molt_detokenize(g_ctx, t, ids, n_ids, &text, &len) != MOLT_OK)
            abort(); // ids from encode always decode
        if (check && (len != n || memcmp(text, s, n) != 0)) {
            fprintf(stderr, "fuzz_tokenizer: round trip changed %zu bytes into %zu\n", n, len);
            abort();
        }
        char   piece[64];
        for (size_t i = 0; i < n_ids; i++)
            (void)tok_piece(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
    } else if (check)
        abort(); // the kv tokenizer encodes anything
    molt_free(ids);
    molt_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx)
        init();
    int64_t         live = molt__alloc_live();
    molt_tokenizer *t = NULL;
    // A loaded tokenizer with a hostile regex may backtrack badly: keep its
    // text short.
    size_t short_n = MOLT_MIN(size, (size_t)256);
    if (tok_load_hf_json_buf(g_ctx, "fuzz.json", (const char *)data, size, &t) == MOLT_OK) {
        encode_decode(t, (const uint8_t *)"Hello, world! 123 <|x|>", 23, false);
        encode_decode(t, data, short_n, false);
        molt_tokenizer_free(t);
        t = NULL;
    }
    if (tok_load_tiktoken_buf(g_ctx, "fuzz.tiktoken", (const char *)data, size, &t) == MOLT_OK) {
        encode_decode(t, data, size, true); // all 256 bytes are required by the loader
        molt_tokenizer_free(t);
        t = NULL;
    }
    if (g_kv)
        encode_decode(g_kv, data, size, g_kv_all_bytes);
    if (tok_load_llama2c_buf(g_ctx, "fuzz.bin", data, size, 0, &t) == MOLT_OK) {
        encode_decode(t, data, short_n, false);
        molt_tokenizer_free(t);
    }
    if (molt__alloc_live() != live) {
        fprintf(stderr, "fuzz_tokenizer: %lld blocks leaked\n",
                (long long)(molt__alloc_live() - live));
        abort();
    }
    return 0;
}
