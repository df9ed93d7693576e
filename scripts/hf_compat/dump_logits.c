/*
 * dump_logits.c — molt's fp32 logits for a token sequence, for comparing a
 * directory molt wrote against what HF transformers computes from it
 * (check.sh). usage: dump_logits MODEL OUT.f32 ID...  (writes [n, vocab] f32)
 */
#include "molt.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL OUT.f32 ID...\n", argv[0]);
        return 2;
    }
    int       n = argc - 3;
    int32_t  *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)atoi(argv[3 + i]);
    molt_ctx   *ctx = molt_ctx_new();
    molt_model *m = NULL;
    molt_seq   *s = NULL;
    if (molt_model_load(ctx, argv[1], NULL, &m) != MOLT_OK ||
        molt_seq_new(ctx, m, n + 1, &s) != MOLT_OK) {
        fprintf(stderr, "dump_logits: %s\n", molt_last_error(ctx));
        return 1;
    }
    molt_model_info info;
    molt_model_get_info(m, &info);
    float *lg = malloc(sizeof(float) * (size_t)n * (size_t)info.vocab);
    if (molt_seq_feed(ctx, s, ids, n, 1, lg) != MOLT_OK) {
        fprintf(stderr, "dump_logits: %s\n", molt_last_error(ctx));
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(lg, sizeof(float), (size_t)n * (size_t)info.vocab, f) !=
                  (size_t)n * (size_t)info.vocab) {
        fprintf(stderr, "dump_logits: cannot write %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    printf("%d %d\n", n, (int)info.vocab);
    molt_seq_free(s);
    molt_model_free(m);
    molt_ctx_free(ctx);
    free(lg);
    free(ids);
    return 0;
}
