/*
 * bench_train.c — training throughput: forward + backward + AdamW steps per
 * second on the kv-llama-2m shape (Llama, d 192, 6 layers, 6 heads / 2 kv,
 * head_dim 32, MLP 512, vocab 1024) at batch 8 × 256 tokens, random tokens,
 * and the machine's single-call sgemm rate (OpenBLAS, 1024³, this many
 * threads through molt's pool) so the achieved fraction can be reported.
 * usage: bench_train [--threads N] [--steps S] [--batch B] [--seq T]
 */
#include "kernels/kernels.h"
#include "models/model.h"
#include "train/model_train.h"
#include "train/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CFG =
    "{\"model_type\": \"llama\", \"hidden_size\": 192, \"num_hidden_layers\": 6,"
    " \"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 32,"
    " \"intermediate_size\": 512, \"vocab_size\": 1024, \"max_position_embeddings\": 1024,"
    " \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true}";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    int threads = 2, steps = 10, B = 8, T = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
    }
    molt_ctx *ctx = molt_ctx_new();
    model_cfg c;
    molt_model *m = NULL;
    train_model *tm = NULL;
    adamw opt;
    if (model_cfg_from_json(ctx, "bench", CFG, strlen(CFG), &c) != MOLT_OK ||
        model_alloc(ctx, &c, &m) != MOLT_OK || tm_new(ctx, m, B, T, &tm) != MOLT_OK ||
        adamw_init(ctx, &opt, m, NULL) != MOLT_OK) {
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
        return 1;
    }
    model_free_cfg(&c);
    model_init_random(m, 1);
    molt_exec        exv = molt_exec_cpu(threads);
    const molt_exec *ex = &exv;
    int N = B * T;
    int32_t *in = malloc(sizeof(int32_t) * (size_t)N), *tg = malloc(sizeof(int32_t) * (size_t)N);
    for (int i = 0; i < N; i++) {
        in[i] = (i * 131 + 7) % 1024;
        tg[i] = (i * 17 + 3) % 1024;
    }
    // per-step times; the median step is reported (as bench/train_torch.py
    // does), robust to other processes taking the CPU for a while
    double *tf = calloc((size_t)steps, sizeof(double)), *tb = calloc((size_t)steps, sizeof(double)),
           *to = calloc((size_t)steps, sizeof(double)), *tt = calloc((size_t)steps, sizeof(double));
    for (int s = 0; s < steps + 2; s++) { // 2 warm-up steps
        double t0 = molt__now();
        tm_zero_grad(tm);
        tm_forward(ex, tm, in);
        tm_loss_ce(ex, tm, tg, 1.0f);
        double t1 = molt__now();
        tm_backward(ex, tm);
        double t2 = molt__now();
        double gn = grad_norm(ex, m, &opt, tm->grad, NULL);
        grad_clip(ex, &opt, tm->grad, gn, 1.0);
        adamw_update(ex, m, &opt, tm->grad, 1e-3f);
        double t3 = molt__now();
        if (s >= 2) {
            tf[s - 2] = t1 - t0, tb[s - 2] = t2 - t1, to[s - 2] = t3 - t2, tt[s - 2] = t3 - t0;
        }
    }
    double per = median(tt, steps), t_fwd = median(tf, steps), t_bwd = median(tb, steps),
           t_opt = median(to, steps);
    // FLOPs per step that the model needs: 6 × params × tokens (the Linear
    // GEMMs, forward + backward) + causal attention: QKᵀ and P·V over the
    // T(T+1)/2 visible (query, key) pairs, 2 FLOPs each, ×3 for fwd + bwd
    double params = (double)m->n_floats;
    double attn = 3.0 * 2.0 * 2.0 * 6 * 6 * 32 * ((double)T * (T + 1) / 2) * B;
    double flops = 6.0 * params * N + attn;
    // peak: 1024³ sgemm through the pool (split over output columns)
    int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *o = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)((i * 7) % 13) * 0.1f;
        b[i] = (float)((i * 5) % 11) * 0.1f;
    }
    double gbest = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = molt__now();
        k_matmul(ex, o, a, b, NULL, n, n, n, 0);
        double dt = molt__now() - t0;
        gbest = dt < gbest ? dt : gbest;
    }
    double peak = 2.0 * n * n * (double)n / gbest;
    printf("{\"bench\": \"train_molt\", \"model\": \"kv-llama-2m shape\", \"threads\": %d, "
           "\"batch\": %d, \"seq\": %d, \"tokens_per_s\": %.1f, \"ms_per_step\": %.1f, "
           "\"fwd_ms\": %.1f, \"bwd_ms\": %.1f, \"opt_ms\": %.1f, \"gflops\": %.1f, "
           "\"sgemm_peak_gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
           threads, B, T, N / per, per * 1e3, t_fwd * 1e3, t_bwd * 1e3, t_opt * 1e3,
           flops / per * 1e-9, peak * 1e-9, flops / per / peak);
    free(tf);
    free(tb);
    free(to);
    free(tt);
    free(a);
    free(b);
    free(o);
    free(in);
    free(tg);
    adamw_free(&opt);
    tm_free(tm);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return 0;
}
