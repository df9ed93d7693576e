/*
 * fuzz_llama2c.c — llama2.c checkpoints (v0 header of 7 int32, v1 "ak42" with
 * a 256-byte header; vocab_size < 0 = untied classifier) from arbitrary
 * bytes: model_load_llama2c must load or fail with a status, never crash or
 * read past the file, and leak nothing. A model that loads is run one token
 * forward. The loader reads a path, so the input goes through a temp file.
 * Corpus: fuzz/corpus/llama2c/ (tiny valid v0/v1 files, hostile headers).
 */
#include "fuzz_tmpfile.h"
#include "models/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fz_write("model.bin", data, size, path, sizeof path);
    int64_t live = molt__alloc_live();
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = NULL;
    if (model_load_llama2c(ctx, path, &m) == MOLT_OK) {
        molt_model_info in;
        molt_model_get_info(m, &in);
        if (in.vocab <= 0 || in.n_layer <= 0 || in.d_model <= 0)
            abort();
        molt_seq *s = NULL;
        if (molt_seq_new(ctx, m, 2, &s) == MOLT_OK) {
            int32_t t = in.vocab - 1;
            molt_seq_feed(ctx, s, &t, 1, 0, NULL);
            molt_seq_free(s);
        }
        molt_model_free(m);
    }
    molt_ctx_free(ctx);
    if (molt__alloc_live() != live) {
        fprintf(stderr, "fuzz_llama2c: leaked %lld blocks\n",
                (long long)(molt__alloc_live() - live));
        abort();
    }
    return 0;
}
