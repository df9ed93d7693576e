/*
 * fuzz_safetensors.c — feeds arbitrary bytes to st_parse_buffer as a whole
 * safetensors file; when it parses, reads every tensor through st_read_f32 /
 * st_read_i32 (which must stay inside the buffer: the parser has validated
 * every offset) and checks that lookups by name agree. Aborts on a leak.
 * Corpus: fuzz/corpus/safetensors/.
 */
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t live = molt__alloc_live();
    molt_ctx *ctx = molt_ctx_new();
    if (!ctx)
        return 0;
    st_file *f = NULL;
    if (st_parse_buffer(ctx, "fuzz.safetensors", data, size, &f) == MOLT_OK) {
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_at(f, i);
            if (st_find(f, t->name) != t)
                abort();
            if ((const uint8_t *)t->data < data || t->nbytes > size ||
                (const uint8_t *)t->data + t->nbytes > data + size)
                abort();
            // nbytes <= size bounds numel, so these buffers stay small
            float *x = malloc((size_t)t->numel * sizeof(float) + 1);
            int32_t *y = malloc((size_t)t->numel * sizeof(int32_t) + 1);
            if (x && y) {
                st_read_f32(ctx, t, x);
                st_read_i32(ctx, t, y);
            }
            free(x);
            free(y);
        }
        (void)st_metadata(f, "format");
        st_close(f);
    }
    molt_ctx_free(ctx);
    if (molt__alloc_live() != live) {
        fprintf(stderr, "fuzz_safetensors: leaked %lld blocks\n",
                (long long)(molt__alloc_live() - live));
        abort();
    }
    return 0;
}
