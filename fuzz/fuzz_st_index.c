/*
 * fuzz_st_index.c — model.safetensors.index.json from arbitrary bytes, next
 * to two small valid shards (a.safetensors: "x" [2] f32 and "y" [1] f32;
 * b.safetensors: "z" [2,2] f32), written once into a temp directory.
 * st_open must open the set or fail with a status (shard names must stay
 * inside the directory, every mapped tensor must be in its shard), never
 * crash, and leak nothing; what opens is read back tensor by tensor.
 * Corpus: fuzz/corpus/st_index/.
 */
#include "fuzz_tmpfile.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_shard(const char *name, const char *header, int n_floats) {
    uint8_t buf[512];
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8, n = 8 + hl + pad;
    uint64_t h = hl + pad;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', pad);
    for (int i = 0; i < n_floats; i++) {
        float v = (float)i + 0.5f;
        memcpy(buf + n, &v, 4);
        n += 4;
    }
    char path[256];
    fz_write(name, buf, n, path, sizeof path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool init;
    if (!init) {
        write_shard("a.safetensors",
                    "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                    3);
        write_shard("b.safetensors",
                    "{\"z\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 4);
        init = true;
    }
    char path[256];
    fz_write(ST_INDEX_NAME, data, size, path, sizeof path);
    int64_t live = molt__alloc_live();
    molt_ctx *ctx = molt_ctx_new();
    st_file *f = NULL;
    if (st_open(ctx, path, &f) == MOLT_OK) {
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_at(f, i);
            if (st_find(f, t->name) != t || !st_shard_path(f, t->shard))
                abort();
            float x[4];
            if (t->numel > 4)
                abort(); // the shards hold nothing larger
            st_read_f32(ctx, t, x);
        }
        st_close(f);
    }
    molt_ctx_free(ctx);
    if (molt__alloc_live() != live) {
        fprintf(stderr, "fuzz_st_index: leaked %lld blocks\n",
                (long long)(molt__alloc_live() - live));
        abort();
    }
    return 0;
}
