/*
 * bench_infer.c — inference throughput:
 *   decode: tokens/s at batch 1, greedy, feeding one token at a time from BOS
 *           for N positions (repeated, best of R runs);
 *   prefill: tokens/s of one batched forward over T tokens (best of R runs).
 * usage: bench_infer MODEL [--tokenizer F] [--threads N] [--decode N] [--prefill T] [--reps R]
 * Prints one JSON line per measurement.
 */
#include "molt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *model = NULL, *tok = NULL;
    int threads = 2, ndec = 256, npre = 0, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) ndec = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) npre = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else model = argv[i];
    }
    if (!model) {
        fprintf(stderr, "usage: bench_infer MODEL [--threads N] [--decode N] [--prefill T]\n");
        return 2;
    }
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, threads);
    molt_load_opts o = {tok, 0};
    molt_model *m = NULL;
    if (molt_model_load(ctx, model, &o, &m) != MOLT_OK) {
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
        return 1;
    }
    molt_model_info in;
    molt_model_get_info(m, &in);
    float *lg = malloc(sizeof(float) * (size_t)in.vocab);
    int rc = 0;
    if (ndec > 0) {
        molt_seq *s = NULL;
        if (molt_seq_new(ctx, m, ndec, &s) != MOLT_OK) { fprintf(stderr, "%s\n", molt_last_error(ctx)); return 1; }
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            molt_seq_reset(s);
            int32_t t = 1;
            double t0 = now();
            for (int i = 0; i < ndec; i++) {
                if (molt_seq_feed(ctx, s, &t, 1, 0, lg) != MOLT_OK) { rc = 1; break; }
                int b = 0;
                for (int v = 1; v < in.vocab; v++) if (lg[v] > lg[b]) b = v;
                t = b;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf("{\"bench\": \"decode\", \"model\": \"%s\", \"threads\": %d, \"tokens\": %d, "
               "\"tok_per_s\": %.1f}\n", model, threads, ndec, ndec / best);
        molt_seq_free(s);
    }
    if (npre > 0) {
        molt_seq *s = NULL;
        if (molt_seq_new(ctx, m, npre, &s) != MOLT_OK) { fprintf(stderr, "%s\n", molt_last_error(ctx)); return 1; }
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)npre);
        srand(1);
        for (int i = 0; i < npre; i++) ids[i] = rand() % in.vocab;
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            molt_seq_reset(s);
            double t0 = now();
            if (molt_seq_feed(ctx, s, ids, npre, 0, lg) != MOLT_OK) { rc = 1; break; }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf("{\"bench\": \"prefill\", \"model\": \"%s\", \"threads\": %d, \"tokens\": %d, "
               "\"tok_per_s\": %.1f, \"gflops\": %.2f}\n", model, threads, npre, npre / best,
               2.0 * (double)in.n_params * npre / best * 1e-9);
        free(ids);
        molt_seq_free(s);
    }
    free(lg);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
