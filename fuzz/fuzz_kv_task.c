/*
 * fuzz_kv_task.c — kv_task.json (the key-value retrieval task: "keys",
 * "values", templates) from arbitrary bytes: kv_set_build must build the
 * prompts or fail with a status, never crash, and leak nothing; every prompt
 * built stays inside the vocabulary and its answer span inside the prompt.
 * The model is stories260K (models/stories260K, shipped in the repository;
 * loaded once, run from the repository root). Corpus: fuzz/corpus/kv_task/.
 */
#include "analysis/kv_probe.h"
#include "fuzz_tmpfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static molt_model *load_model(void) {
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = NULL;
    if (molt_model_load(ctx, "models/stories260K/stories260K.bin", NULL, &m) != MOLT_OK) {
        fprintf(stderr, "fuzz_kv_task: %s (run from the repository root)\n",
                molt_last_error(ctx));
        abort();
    }
    molt_ctx_free(ctx);
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static molt_model *m;
    if (!m)
        m = load_model();
    char path[256];
    fz_write("kv_task.json", data, size, path, sizeof path);
    int64_t live = molt__alloc_live();
    molt_ctx *ctx = molt_ctx_new();
    int32_t vocab = molt_tokenizer_vocab(molt_model_tokenizer(m));
    // pairs and queries from the input's length: both the kv and the mqar shapes
    int32_t pairs = 1 + (int32_t)(size % 4), queries = 1 + (int32_t)(size / 4 % 2);
    kv_set set;
    if (kv_set_build(ctx, m, path, pairs, queries, 2, size, true, &set) == MOLT_OK) {
        for (int i = 0; i < set.n_ex; i++) {
            const kv_example *e = &set.ex[i];
            if (e->n <= 0 || e->n > set.max_len)
                abort();
            for (int j = 0; j < e->n; j++)
                if (e->ids[j] < 0 || e->ids[j] >= vocab)
                    abort();
            for (int k = 0; k < e->n_q; k++)
                if (e->q[k].at < 1 || e->q[k].at > e->n || e->q[k].answer < 0 ||
                    e->q[k].answer >= set.n_values)
                    abort();
        }
        kv_set_free(&set);
    }
    molt_ctx_free(ctx);
    if (molt__alloc_live() != live) {
        fprintf(stderr, "fuzz_kv_task: leaked %lld blocks\n",
                (long long)(molt__alloc_live() - live));
        abort();
    }
    return 0;
}
