/*
 * test_dist.c — the data-parallel pieces that need no MPI (issue 18): the
 * ZeRO-1 shard arithmetic (dist_shard: uneven sizes, more ranks than
 * elements), and sharded AdamW — N optimizers, each holding moments for its
 * shard of the flat buffer and updating only those parameters, give the same
 * bits as one optimizer over everything (frozen parameters and shard
 * boundaries inside a tensor included). The multi-process runs are
 * tests/test_dist.sh.
 */
#include "dist/comm.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"
#include "train/optim.h"

#include <stdlib.h>
#include <string.h>

static void test_shards(void) {
    const size_t ns[] = {0, 1, 2, 3, 5, 7, 8, 16, 17, 1000, 1001, 65537};
    int bad = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (int w = 1; w <= 9; w++) {
            size_t n = ns[i], next = 0, q = n / (size_t)w;
            for (int r = 0; r < w; r++) {
                size_t lo, hi;
                dist_shard(n, w, r, &lo, &hi);
                size_t len = hi - lo;
                bad += lo != next || hi < lo || hi > n; // contiguous, in rank order
                bad += len != q && len != q + 1;        // balanced: sizes differ by ≤ 1
                bad += (n < (size_t)w && r >= (int)n) && len != 0; // N > elements: empty
                next = hi;
                if (bad) {
                    CHECK(0, "n %zu world %d rank %d: [%zu, %zu)", n, w, r, lo, hi);
                    return;
                }
            }
            CHECK(next == n, "n %zu world %d: shards cover [0, %zu)", n, w, next);
        }
    size_t lo, hi;
    dist_shard(10, 4, 3, &lo, &hi); // 3 3 2 2
    CHECK(lo == 8 && hi == 10, "10 over 4, rank 3: [%zu, %zu) (want [8, 10))", lo, hi);
    dist_shard(2, 5, 4, &lo, &hi);
    CHECK(lo == hi && hi == 2, "2 over 5, rank 4: [%zu, %zu) (want empty at 2)", lo, hi);
    printf("dist_shard: 12 sizes x worlds 1..9 tile [0, n) in rank order, balanced\n");
}

static const char CFG[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 24, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 40, "
    "\"vocab_size\": 37, \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5}";

// world optimizers over shards of b vs one over a: the same parameters, bit for bit
static void test_zero1(molt_ctx *ctx, int world, const char *freeze) {
    molt_model *a = tm_random_model(ctx, CFG, 7, 0.02f), *b = tm_random_model(ctx, CFG, 7, 0.02f);
    if (!a || !b)
        return;
    size_t n = a->n_floats;
    float *g = malloc(sizeof(float) * n);
    adamw full, sh[9];
    CHECK(adamw_init(ctx, &full, a, freeze) == MOLT_OK, "adamw_init");
    size_t held = 0;
    for (int r = 0; r < world; r++) {
        size_t lo, hi;
        dist_shard(n, world, r, &lo, &hi);
        CHECK(adamw_init(ctx, &sh[r], b, freeze) == MOLT_OK, "adamw_init");
        CHECK(adamw_shard(ctx, &sh[r], b, lo, hi) == MOLT_OK, "adamw_shard");
        CHECK(sh[r].hi - sh[r].lo == n / world || sh[r].hi - sh[r].lo == n / world + 1,
              "rank %d holds %zu of %zu floats (1/%d)", r, sh[r].hi - sh[r].lo, n, world);
        held += sh[r].hi - sh[r].lo;
    }
    CHECK(held == n, "the shards' moments hold %zu floats, the buffer %zu", held, n);
    t_seed(11);
    for (int step = 0; step < 3; step++) {
        t_fill_uniform(g, n, -1.0f, 1.0f);
        adamw_update(TEX, a, &full, g, 1e-2f);
        for (int r = 0; r < world; r++)
            adamw_update(TEX, b, &sh[r], g, 1e-2f);
    }
    CHECK(!memcmp(a->data, b->data, sizeof(float) * n),
          "world %d%s%s: sharded AdamW differs from the whole (max |diff| %g)", world,
          freeze ? ", frozen " : "", freeze ? freeze : "", t_max_abs(a->data, b->data, n));
    size_t moved = 0;
    molt_model *c = tm_random_model(ctx, CFG, 7, 0.02f);
    for (size_t i = 0; c && i < n; i++)
        moved += a->data[i] != c->data[i];
    CHECK(moved > n / 2, "the steps changed only %zu of %zu parameters", moved, n);
    molt_model_free(c);
    adamw_free(&full);
    for (int r = 0; r < world; r++)
        adamw_free(&sh[r]);
    free(g);
    molt_model_free(a);
    molt_model_free(b);
}

int main(void) {
    test_shards();
    molt_ctx *ctx = molt_ctx_new();
    for (int w = 1; w <= 7; w += 2)
        test_zero1(ctx, w, NULL);
    test_zero1(ctx, 4, "*norm*,*embed*");
    printf("ZeRO-1: AdamW over 1, 3, 5, 7 shards (and 4 with frozen tensors) == one AdamW, "
           "bit for bit\n");
    molt_ctx_free(ctx);
    return t_done("test_dist");
}
