/*
 * bench_context.c — decode tokens/s as the context grows: a Llama and a
 * Llamba of the same width (kv-llama-2m's shape: d 192, 6 layers, 6 heads of
 * 32, MLP 512, vocab 1024; Llamba d_state 16), random weights (speed does not
 * depend on values). For each context c: prefill c tokens, then time 64
 * single-token decode steps. The recurrent line should stay flat while
 * attention slows with c. One JSON line per (model, context).
 * usage: bench_context [--threads N] [--contexts 128,512,2048,8192]
 */
#include "bench_models.h"

int main(int argc, char **argv) {
    int threads = 2, ctxs[16] = {128, 512, 2048, 8192}, nc = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--contexts") && i + 1 < argc) {
            nc = 0;
            for (char *t = strtok(argv[++i], ","); t && nc < 16; t = strtok(NULL, ","))
                ctxs[nc++] = atoi(t);
        }
    }
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, threads);
    molt_model *ms[2] = {bench_model(ctx, BENCH_LLAMA_KV2M),
                          bench_model(ctx, BENCH_LLAMBA_KV2M)};
    const char *names[2] = {"llama", "llamba"};
    for (int k = 0; k < 2; k++)
        for (int ci = 0; ci < nc; ci++) {
            int c = ctxs[ci], steps = 64;
            molt_seq *s = NULL;
            if (molt_seq_new(ctx, ms[k], c + steps, &s) != MOLT_OK) {
                fprintf(stderr, "error: %s\n", molt_last_error(ctx));
                return 1;
            }
            int32_t *ids = malloc(sizeof(int32_t) * (size_t)c);
            for (int i = 0; i < c; i++)
                ids[i] = (i * 37 + 11) % 1024;
            molt_seq_feed(ctx, s, ids, c, 0, NULL);
            float *lg = malloc(sizeof(float) * 1024);
            double t0 = molt__now();
            int32_t t = 5;
            for (int i = 0; i < steps; i++) {
                molt_seq_feed(ctx, s, &t, 1, 0, lg);
                t = (t * 7 + 1) % 1024;
            }
            double dt = molt__now() - t0;
            printf("{\"bench\": \"decode_vs_context\", \"model\": \"%s\", \"context\": %d, "
                   "\"threads\": %d, \"tok_per_s\": %.1f, \"state_bytes\": %lld}\n",
                   names[k], c, threads, steps / dt,
                   (long long)(model_state_bytes(&ms[k]->cfg) +
                               model_kv_bytes_per_token(&ms[k]->cfg) * (c + steps)));
            free(ids);
            free(lg);
            molt_seq_free(s);
        }
    molt_model_free(ms[0]);
    molt_model_free(ms[1]);
    molt_ctx_free(ctx);
    return 0;
}
