/*
 * bench_batch.c — batched decoding over state slots (molt_slots_feed):
 *   1. decode tokens/s of a Llamba at batch 1, 4, 16, 64, 256 for two sizes:
 *      kv-llama-2m's width (d 192, 6 layers, MLP 512, vocab 1024, d_state 16)
 *      and a ~100M one (d 768, 12 layers, MLP 2048, vocab 32000, 12 heads of
 *      64, d_state 64). Each slot holds a 16-token prompt, then `steps` steps
 *      advance every slot by one token; tok/s = batch · steps / time.
 *   2. Llama vs Llamba of kv-llama-2m's width at batch 64 with contexts 2k
 *      and 8k: one slot is prefilled to the context, copied into the others,
 *      then 16 steps are timed; the state memory of the 64 slots is reported
 *      (the KV caches grow with the context, the recurrent state does not).
 *      --context-size 110m: the 110M Llama against the 115M Mamba-2 of
 *      bench_models.h instead (issue 15), with --context-weights DT for both and
 *      --kv f16 for the Llama's caches (64 × 8k in f32 is 39 GB); each line then
 *      gives the bytes a step must read ("step_bytes": the matrices, plus every
 *      slot's KV cache — or its recurrent state, read and written) and the
 *      rate that makes ("step_gb_s"), so the measured ratio can be set against
 *      the ratio of bytes. --only-context skips part 1.
 * Random weights (speed does not depend on the values). One JSON line each.
 * --weights f32,bf16: part 1 once per weight dtype of the decoded matrices
 * (molt_model_set_weight_dtype), the dtypes alternating at every point and
 * --rounds times over the sweep; each line gives the bytes of those matrices
 * read per step ("matrix_bytes") and that over the step time ("matrix_gb_s").
 * usage: bench_batch [--threads N] [--batches 1,4,16,64,256] [--contexts 2048,8192]
 *                    [--weights f32,bf16,f16,q8_0] [--rounds N] [--skip-big] [--skip-context]
 *                    [--only-context] [--context-size kv2m|110m] [--context-batch B]
 *                    [--context-weights DT] [--kv f32|f16]
 */
#include "bench_models.h"

static const char *LLAMBA_B =
    "{\"model_type\": \"llamba\", \"vocab_size\": 32000, \"tie_embeddings\": true, \"d_model\": 768,"
    " \"n_layer\": 12, \"mlp_cfg\": {\"intermediate_size\": 2048}, \"ssm_cfg\": {\"d_state\": 64,"
    " \"n_v_heads\": 12, \"n_qk_heads\": 12, \"chunk_size\": 64}}";

static void die(molt_ctx *ctx) {
    fprintf(stderr, "error: %s\n", molt_last_error(ctx));
    exit(1);
}

// steps of one token for every slot 0..B-1; returns seconds (best of reps)
static double time_steps(molt_ctx *ctx, molt_slots *sl, int B, int steps, int reps, float *lg) {
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B), *tok = malloc(sizeof(int32_t) * (size_t)B);
    for (int i = 0; i < B; i++)
        ids[i] = i, tok[i] = (7 * i + 3) % 1000;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = molt__now();
        for (int s = 0; s < steps; s++)
            if (molt_slots_feed(ctx, sl, B, ids, tok, lg) != MOLT_OK)
                die(ctx);
        double t = molt__now() - t0;
        best = t < best ? t : best; // (each rep continues the slots: capacity covers all)
    }
    free(ids);
    free(tok);
    return best;
}

static void batch_sweep(molt_ctx *ctx, const char *name, const char *json, const int *batches,
                        int nb, int threads, const char *const *wdt, int nw, int rounds) {
    molt_model *m = bench_model(ctx, json);
    molt_model_info in;
    molt_model_get_info(m, &in);
    // elements of the typed matrices (q/k/v/o, MLP, in/out_proj, head): the bf16 copy's size
    if (molt_model_set_weight_dtype(ctx, m, "bf16") != MOLT_OK)
        die(ctx);
    double mat_elems = (double)m->wbuf_bytes / 2;
    int32_t prompt[16];
    for (int i = 0; i < 16; i++)
        prompt[i] = (i * 37 + 1) % 1000;
    for (int pt = 0; pt < rounds * nb * nw; pt++) { // round r, batch k, weights w (innermost)
        int r = pt / (nb * nw), k = pt / nw % nb, w = pt % nw;
        if (molt_model_set_weight_dtype(ctx, m, wdt[w]) != MOLT_OK)
            die(ctx);
        double bytes = m->weight_dt == MOLT_F32 ? mat_elems * 4.0 : (double)m->wbuf_bytes;
        int B = batches[k];
        // about the same work per point: fewer steps at large batch
        int steps = B >= 256 ? 4 : B >= 64 ? 8 : B >= 16 ? 16 : 32;
        int reps = 3;
        molt_slots *sl = NULL;
        if (molt_slots_new(ctx, m, B, 16 + steps * reps + 1, &sl) != MOLT_OK)
            die(ctx);
        if (molt_slot_prefill(ctx, sl, 0, prompt, 16, 0, NULL) != MOLT_OK)
            die(ctx);
        for (int i = 1; i < B; i++)
            molt_slot_copy(ctx, sl, 0, i);
        float *lg = malloc(sizeof(float) * (size_t)B * (size_t)in.vocab);
        double t = time_steps(ctx, sl, B, steps, reps, lg);
        double tps = (double)B * steps / t;
        printf("{\"bench\": \"batch_decode\", \"model\": \"%s\", \"params\": %lld, \"batch\": %d, "
               "\"threads\": %d, \"weights\": \"%s\", \"round\": %d, \"steps\": %d, "
               "\"tok_per_s\": %.1f, \"ms_per_step\": %.3f, \"matrix_bytes\": %.0f, "
               "\"matrix_gb_s\": %.2f, \"state_bytes\": %lld}\n",
               name, (long long)in.n_params, B, threads, molt_dtype_name(m->weight_dt), r, steps,
               tps, 1e3 * t / steps, bytes, bytes / (t / steps) * 1e-9,
               (long long)molt_slots_state_bytes(sl));
        fflush(stdout);
        free(lg);
        molt_slots_free(sl);
    }
    molt_model_free(m);
}

static void context_point(molt_ctx *ctx, const char *name, molt_model *m, int B, int context,
                          int threads) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    int steps = 16;
    molt_slots *sl = NULL;
    if (molt_slots_new(ctx, m, B, context + steps + 1, &sl) != MOLT_OK) {
        printf("{\"bench\": \"batch_context\", \"model\": \"%s\", \"batch\": %d, \"context\": %d, "
               "\"error\": \"%s\"}\n",
               name, B, context, molt_last_error(ctx));
        return;
    }
    int32_t *p = malloc(sizeof(int32_t) * (size_t)context);
    for (int i = 0; i < context; i++)
        p[i] = (i * 37 + 1) % 1000;
    double t0 = molt__now();
    if (molt_slot_prefill(ctx, sl, 0, p, context, 0, NULL) != MOLT_OK)
        die(ctx);
    for (int i = 1; i < B; i++)
        molt_slot_copy(ctx, sl, 0, i);
    double tp = molt__now() - t0;
    float *lg = malloc(sizeof(float) * (size_t)B * (size_t)in.vocab);
    double t = time_steps(ctx, sl, B, steps, 1, lg);
    // per slot: the KV cache up to the mid-point of the timed steps, or the recurrent
    // state read and written once
    double per_slot = (double)in.kv_bytes_per_token * (context + steps / 2) +
                      2.0 * (double)in.state_bytes;
    double bytes = bench_matrix_bytes(ctx, m) + B * per_slot;
    printf("{\"bench\": \"batch_context\", \"model\": \"%s\", \"weights\": \"%s\", "
           "\"kv\": \"%s\", \"batch\": %d, \"context\": %d, \"threads\": %d, "
           "\"tok_per_s\": %.1f, \"ms_per_step\": %.3f, \"state_mb\": %.1f, "
           "\"step_bytes\": %.0f, \"step_gb_s\": %.2f, \"prefill_and_fork_s\": %.2f}\n",
           name, molt_dtype_name(m->weight_dt), molt_dtype_name(m->kv_dt), B, context, threads,
           (double)B * steps / t, 1e3 * t / steps, (double)molt_slots_state_bytes(sl) / 1e6,
           bytes, bytes / (t / steps) * 1e-9, tp);
    fflush(stdout);
    free(lg);
    free(p);
    molt_slots_free(sl);
}

int main(int argc, char **argv) {
    int threads = 2, batches[16] = {1, 4, 16, 64, 256}, nb = 5, ctxs[8] = {2048, 8192}, nc = 2;
    int skip_big = 0, skip_ctx = 0, only_ctx = 0, nw = 1, rounds = 1, cbatch = 64;
    const char *wdt[4] = {"f32"}, *csize = "kv2m", *cw = "f32", *kv = "f32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            nb = 0;
            for (char *t = strtok(argv[++i], ","); t && nb < 16; t = strtok(NULL, ","))
                batches[nb++] = atoi(t);
        } else if (!strcmp(argv[i], "--contexts") && i + 1 < argc) {
            nc = 0;
            for (char *t = strtok(argv[++i], ","); t && nc < 8; t = strtok(NULL, ","))
                ctxs[nc++] = atoi(t);
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            nw = 0;
            for (char *t = strtok(argv[++i], ","); t && nw < 4; t = strtok(NULL, ","))
                wdt[nw++] = t;
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--skip-big"))
            skip_big = 1;
        else if (!strcmp(argv[i], "--skip-context"))
            skip_ctx = 1;
        else if (!strcmp(argv[i], "--only-context"))
            only_ctx = 1;
        else if (!strcmp(argv[i], "--context-size") && i + 1 < argc)
            csize = argv[++i];
        else if (!strcmp(argv[i], "--context-batch") && i + 1 < argc)
            cbatch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--context-weights") && i + 1 < argc)
            cw = argv[++i];
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc)
            kv = argv[++i];
        else {
            fprintf(stderr, "usage: bench_batch [--threads N] [--batches 1,4,..] "
                            "[--contexts 2048,8192] [--weights f32,bf16,f16] [--rounds N] "
                            "[--skip-big] [--skip-context] [--only-context] "
                            "[--context-size kv2m|110m] [--context-batch B] "
                            "[--context-weights DT] [--kv f32|f16]\n");
            return 2;
        }
    }
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, threads);
    if (!only_ctx) {
        batch_sweep(ctx, "llamba-kv2m-width", BENCH_LLAMBA_KV2M, batches, nb, threads, wdt, nw,
                    rounds);
        if (!skip_big)
            batch_sweep(ctx, "llamba-100m", LLAMBA_B, batches, nb, threads, wdt, nw, rounds);
    }
    if (!skip_ctx) {
        bool big = !strcmp(csize, "110m");
        molt_model *a = bench_model(ctx, big ? BENCH_LLAMA_110M : BENCH_LLAMA_KV2M);
        molt_model *r = bench_model(ctx, big ? BENCH_MAMBA2_115M : BENCH_LLAMBA_KV2M);
        if (molt_model_set_weight_dtype(ctx, a, cw) != MOLT_OK ||
            molt_model_set_weight_dtype(ctx, r, cw) != MOLT_OK ||
            molt_model_set_kv_dtype(ctx, a, kv) != MOLT_OK)
            die(ctx);
        for (int k = 0; k < nc; k++) {
            context_point(ctx, big ? "llama-110m" : "llama-kv2m-width", a, cbatch, ctxs[k],
                          threads);
            context_point(ctx, big ? "mamba2-115m" : "llamba-kv2m-width", r, cbatch, ctxs[k],
                          threads);
        }
        molt_model_free(a);
        molt_model_free(r);
    }
    molt_ctx_free(ctx);
    return 0;
}
