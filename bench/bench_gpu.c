/*
 * bench_gpu.c — molt on the GPU at the 1B scale of issue 12: random-weight
 * Llama-3.2-1B (hidden 2048, 16 layers, 32 heads / 8 KV, MLP 8192, vocab
 * 128256, tied) as teacher and a Llamba-1B student (32 heads × 64, d_state
 * 64, same MLP), batch × seq tokens:
 *
 *   gemm        the cuBLAS rate molt's GEMMs get (k_matmul 8192×2048×8192 on
 *               pseudo-random operands), the denominator of the MFU figures
 *   teacher     training step: forward + cross-entropy + backward + AdamW
 *   stage3      MOHAWK stage 3: teacher forward (capture) + student forward,
 *               soft cross-entropy, backward + AdamW
 *   attn        the flash attention alone, forward and backward (teacher shape)
 *   ssd         the SSD chunked scan alone, forward + backward (student shape)
 *   gemv        the decode's matrix products alone (bf16 weights, T 1 and 64)
 *   decode      Llamba-1B decode over state slots, batch 1 and 64 (f32 and
 *               bf16 weights), logits copied to the host or greedy ids drawn
 *               on the GPU (molt_slots_feed_sample), and batch 16 / 256
 *               with ids drawn; against the weight bytes' HBM time. Steps
 *               are recorded and replayed as CUDA graphs (models/slots.c;
 *               graph_replays in the line) unless MOLT_CUDA_GRAPHS=0
 *
 * One JSON line per measurement (median of the timed steps after warm-up;
 * every timed region ends with a device sync). Peak memory: the device's used
 * bytes after each workload (cudaMemGetInfo, so it includes cuBLAS' and the
 * allocator's pools).
 * usage: bench_gpu [--batch B] [--seq T] [--steps S] [--only NAME] [--small] [--tf32 | --bf16]
 *                  [--profile] [--recompute] [--dbatch N] [--dstate f32|bf16] [--head-rows N]
 * (--dbatch N: decode at batch N alone, bf16 weights, ids drawn on the GPU;
 * --dstate: the decode's recurrent state in f32 (default) or bf16;
 * --small: a 4-layer, d 512 model for a quick check; --profile: after each
 * workload, its kernel-time profile on stderr — molt_cuda_profile_report —
 * covering set-up, warm-up and timed steps; the JSON times then include the
 * profile's per-launch event cost; --recompute: the trained models —
 * teacher step, stage-3 student — by tm_new_recompute, blocks recomputed in
 * the backward; --head-rows N: the teacher step's and stage 3's logits a chunk
 * of N rows at a time, B·T for none — tm_auto_head_rows by default.)
 * Built by `make cuda` (build-cuda/bench/bench_gpu); needs a GPU.
 */
#include "bench_models.h"
#include "kernels/attn.h"
#include "kernels/kernels.h"
#include "kernels/mem.h"
#include "kernels/ssm.h"
#include "models/model.h"
#include "train/loss.h"
#include "train/model_train.h"
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MOLT_CUDA
int main(void) {
    fprintf(stderr, "bench_gpu: built without MOLT_CUDA (make cuda)\n");
    return 77;
}
#else
#include "kernels/cuda/cuda.h"

static char TEACHER[1024], STUDENT[1024];
static int  D, L, H, KV, F, V, NS; // the shape: BENCH_1B, or BENCH_1B_SMALL with --small

static void make_cfgs(void) {
    bench_1b_cfgs(&(bench_1b){D, L, H, KV, F, V, NS}, TEACHER, sizeof TEACHER, STUDENT,
                  sizeof STUDENT);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static molt_ctx *cpu, *gpu;
static molt_exec g_ex;
static double    g_gemm_tflops;

static void sync(void) { be_sync(&g_ex); }
static double now_synced(void) {
    sync();
    return molt__now();
}
static double used_gb(void) {
    size_t used = 0, total = 0;
    molt_cuda_mem_info(&used, &total);
    return (double)used * 1e-9;
}
static void die(molt_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_gpu: %s: %s%s%s\n", what, molt_last_error(ctx),
            molt_cuda_last_error() ? " / cuda: " : "",
            molt_cuda_last_error() ? molt_cuda_last_error() : "");
    exit(1);
}

// a random model on the GPU (built on the host, moved whole)
static molt_model *gpu_model(const char *json) {
    molt_model *m = bench_model(cpu, json);
    if (model_to_backend(gpu, m, &molt_backend_cuda) != MOLT_OK)
        die(gpu, "to gpu");
    return m;
}

static void bench_gemm(void) {
    int M = 8192, K = 2048, N = 8192;
    float *x = be_allocf(g_ex.be, (size_t)M * K), *w = be_allocf(g_ex.be, (size_t)N * K),
          *y = be_allocf(g_ex.be, (size_t)M * N);
    // pseudo-random operands in [-1, 1): a GEMM on zeros draws less power and can run faster
    // than on the activations and weights of a real step (runs 1-7 used zeros)
    size_t nh = (size_t)(M > N ? M : N) * K;
    float *h = malloc(sizeof(float) * nh);
    for (size_t i = 0; i < nh; i++)
        h[i] = (float)((i * 2654435761u) >> 8 & 0xFFFF) / 32768.0f - 1.0f;
    be_upload(&g_ex, x, h, sizeof(float) * (size_t)M * K);
    be_upload(&g_ex, w, h + 7, sizeof(float) * ((size_t)N * K - 7));
    be_upload(&g_ex, w + (size_t)N * K - 7, h, sizeof(float) * 7);
    free(h);
    double best = 1e30;
    for (int r = 0; r < 8; r++) {
        double t0 = now_synced();
        k_matmul(&g_ex, y, x, w, NULL, M, K, N, 0);
        double dt = now_synced() - t0;
        best = r ? fmin(best, dt) : best; // the first call warms cuBLAS up
    }
    g_gemm_tflops = 2.0 * M * K * (double)N / best * 1e-12;
    printf("{\"bench\": \"gemm\", \"shape\": \"%dx%dx%d\", \"precision\": \"%s\", "
           "\"tflops\": %.1f}\n",
           M, K, N,
           g_ex.flags & MOLT_EXEC_TF32 ? "tf32" : g_ex.flags & MOLT_EXEC_BF16 ? "bf16" : "fp32",
           g_gemm_tflops);
    be_free(g_ex.be, x), be_free(g_ex.be, w), be_free(g_ex.be, y);
}

// 6·params·tokens + the causal attention products (fwd + bwd = 3× fwd)
static double train_flops(const molt_model *m, int B, int T, bool attn) {
    double f = 6.0 * (double)m->n_floats * B * T;
    if (attn)
        f += 3.0 * 2.0 * 2.0 * L * H * (D / H) * ((double)T * (T + 1) / 2) * B;
    return f;
}

static int g_recompute; // --recompute: training models by tm_new_recompute (blocks recomputed)
static int g_head_rows; // --head-rows N: the logits by chunks of N rows (0: tm_auto_head_rows)
static int head_rows(const molt_model *m, int B, int T) {
    return g_head_rows ? g_head_rows : tm_auto_head_rows(m, B, T);
}
static molt_status new_train(molt_model *m, int B, int T, train_model **out) {
    return tm_new_kind(gpu, m, B, T, g_recompute ? TM_RECOMPUTE : TM_TRAIN, head_rows(m, B, T),
                       out);
}

static void ids_of(int32_t *in, int32_t *tg, int N) {
    for (int i = 0; i < N; i++)
        in[i] = (int32_t)((i * 131 + 7) % V), tg[i] = (int32_t)((i * 17 + 3) % V);
}

static void bench_teacher(int B, int T, int steps) {
    molt_model  *m = gpu_model(TEACHER);
    train_model *tm = NULL;
    adamw        opt;
    if (new_train(m, B, T, &tm) != MOLT_OK || adamw_init(gpu, &opt, m, NULL) != MOLT_OK)
        die(gpu, "teacher train state");
    int      N = B * T;
    int32_t *in = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
    ids_of(in, tg, N);
    double *tt = calloc((size_t)steps, sizeof(double)), loss = 0;
    for (int s = 0; s < steps + 2; s++) {
        double t0 = now_synced();
        tm_zero_grad(tm);
        tm_forward(&g_ex, tm, in);
        loss = tm_ce_step(&g_ex, tm, tg, 1.0f, true);
        double gn = grad_norm(&g_ex, m, &opt, tm->grad, NULL);
        grad_clip(&g_ex, &opt, tm->grad, gn, 1.0);
        adamw_update(&g_ex, m, &opt, tm->grad, 1e-4f);
        double dt = now_synced() - t0;
        if (s >= 2)
            tt[s - 2] = dt;
    }
    if (molt_cuda_last_error())
        die(gpu, "teacher step");
    double per = median(tt, steps), fl = train_flops(m, B, T, true);
    printf("{\"bench\": \"teacher_train_step\", \"model\": \"llama-3.2-1b shape\", "
           "\"recompute\": %s, \"batch\": %d, "
           "\"seq\": %d, \"tokens_per_s\": %.0f, \"ms_per_step\": %.1f, \"tflops\": %.1f, "
           "\"mfu_vs_measured_gemm\": %.3f, \"loss\": %.4f, \"head_rows\": %d, "
           "\"arena_gb\": %.1f, \"device_gb_used\": %.1f}\n",
           g_recompute ? "true" : "false", B, T, N / per, per * 1e3, fl / per * 1e-12,
           fl / per * 1e-12 / g_gemm_tflops, loss, tm->head_rows, (double)tm->arena_floats * 4e-9,
           used_gb());
    fflush(stdout);
    free(in), free(tg), free(tt);
    adamw_free(&opt);
    tm_free(tm);
    molt_model_free(m);
}

static void bench_stage3(int B, int T, int steps) {
    molt_model  *t = gpu_model(TEACHER), *s = gpu_model(STUDENT);
    train_model *tt = NULL, *ts = NULL;
    adamw        opt;
    int          N = B * T;
    if (tm_new_kind(gpu, t, B, T, TM_LOGITS, head_rows(s, B, T), &tt) != MOLT_OK ||
        new_train(s, B, T, &ts) != MOLT_OK ||
        adamw_init(gpu, &opt, s, NULL) != MOLT_OK)
        die(gpu, "stage 3 state");
    int32_t *in = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
    ids_of(in, tg, N);
    double *tm_ = calloc((size_t)steps, sizeof(double)), loss = 0;
    for (int k = 0; k < steps + 2; k++) {
        double t0 = now_synced();
        tm_forward(&g_ex, tt, in);
        tm_zero_grad(ts);
        tm_forward(&g_ex, ts, in);
        loss = tm_kd_step(&g_ex, ts, tt, loss_soft_ce, 1.0f, 1.0f / (float)N, true) / N;
        double gn = grad_norm(&g_ex, s, &opt, ts->grad, NULL);
        grad_clip(&g_ex, &opt, ts->grad, gn, 1.0);
        adamw_update(&g_ex, s, &opt, ts->grad, 1e-4f);
        double dt = now_synced() - t0;
        if (k >= 2)
            tm_[k - 2] = dt;
    }
    if (molt_cuda_last_error())
        die(gpu, "stage 3 step");
    double per = median(tm_, steps);
    double fl = 2.0 * (double)t->n_floats * N + 2.0 * 2.0 * L * H * (D / H) * ((double)T * (T + 1) / 2) * B +
                train_flops(s, B, T, false);
    printf("{\"bench\": \"mohawk_stage3_step\", \"teacher\": \"llama-3.2-1b shape\", \"student\": "
           "\"llamba-1b shape\", \"recompute\": %s, \"batch\": %d, \"seq\": %d, "
           "\"tokens_per_s\": %.0f, "
           "\"ms_per_step\": %.1f, \"tflops\": %.1f, \"mfu_vs_measured_gemm\": %.3f, "
           "\"loss\": %.4f, \"head_rows\": %d, \"arena_gb\": %.1f, \"device_gb_used\": %.1f}\n",
           g_recompute ? "true" : "false", B, T, N / per, per * 1e3, fl / per * 1e-12,
           fl / per * 1e-12 / g_gemm_tflops, loss, ts->head_rows,
           (double)(ts->arena_floats + tt->arena_floats) * 4e-9, used_gb());
    fflush(stdout);
    free(in), free(tg), free(tm_);
    adamw_free(&opt);
    tm_free(tt), tm_free(ts);
    molt_model_free(t), molt_model_free(s);
}

// the scan alone: X [T, H·P], dA [T, H], B, C [T, G·N] per sequence, B sequences
static void bench_ssd(int B, int T, int steps) {
    int    P = D / H, G = H, Q = 128;
    size_t nX = (size_t)T * H * P, nA = (size_t)T * H, nB = (size_t)T * G * NS;
    size_t nw = ssd_chunked_backward_work(T, H, P, NS, G, Q); // starts with the forward's work
    float *X = be_allocf(g_ex.be, nX), *dA = be_allocf(g_ex.be, nA), *Bm = be_allocf(g_ex.be, nB),
          *Cm = be_allocf(g_ex.be, nB), *y = be_allocf(g_ex.be, nX), *dy = be_allocf(g_ex.be, nX),
          *dX = be_allocf(g_ex.be, nX), *ddA = be_allocf(g_ex.be, nA),
          *dB = be_allocf(g_ex.be, nB), *dC = be_allocf(g_ex.be, nB),
          *w = be_allocf(g_ex.be, nw);
    float *h = malloc(sizeof(float) * nX);
    for (size_t i = 0; i < nX; i++)
        h[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    be_upload(&g_ex, X, h, sizeof(float) * nX), be_upload(&g_ex, dy, h, sizeof(float) * nX);
    be_upload(&g_ex, Bm, h, sizeof(float) * nB), be_upload(&g_ex, Cm, h + 1, sizeof(float) * nB);
    for (size_t i = 0; i < nA; i++)
        h[i] = -0.02f - (float)(i % 7) * 0.01f;
    be_upload(&g_ex, dA, h, sizeof(float) * nA);
    double *tt = calloc((size_t)steps, sizeof(double));
    for (int k = 0; k < steps + 2; k++) {
        double t0 = now_synced();
        for (int b = 0; b < B; b++) { // sequences one after another, as the training mixer does
            ssd_scan_chunked(&g_ex, y, NULL, X, dA, Bm, Cm, T, H, P, NS, G, Q, w);
            ssd_scan_chunked_backward(&g_ex, dX, ddA, dB, dC, dy, X, dA, Bm, Cm, T, H, P, NS, G,
                                      Q, w);
        }
        double dt = now_synced() - t0;
        if (k >= 2)
            tt[k - 2] = dt;
    }
    double per = median(tt, steps);
    printf("{\"bench\": \"ssd_scan_fwd_bwd\", \"shape\": \"H %d P %d N %d G %d chunk %d\", "
           "\"batch\": %d, \"seq\": %d, \"tokens_per_s\": %.0f, \"ms\": %.2f}\n",
           H, P, NS, G, Q, B, T, B * T / per, per * 1e3);
    fflush(stdout);
    float *bufs[] = {X, dA, Bm, Cm, y, dy, dX, ddA, dB, dC, w};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be_free(g_ex.be, bufs[i]);
    free(h), free(tt);
}

// flash attention alone (the teacher's shape: H query heads, KV kv heads, hd = D/H), forward
// and forward + backward over B sequences of T tokens; causal FLOPs: forward 2 products of
// T(T+1)/2·hd per head, backward 2.5× that
static void bench_attn(int B, int T, int steps) {
    int    hd = D / H, W = (H + 2 * KV) * hd;
    size_t rows = (size_t)B * T, nq = rows * W, nh = rows * H * hd, nl = (size_t)B * H * T;
    size_t nw = k_attn_flash_backward_work(B, T, H, KV, hd);
    float *qkv = be_allocf(g_ex.be, nq), *o = be_allocf(g_ex.be, nh), *lse = be_allocf(g_ex.be, nl),
          *dO = be_allocf(g_ex.be, nh), *dqkv = be_allocf(g_ex.be, nq), *w = be_allocf(g_ex.be, nw);
    float *h = malloc(sizeof(float) * nq);
    for (size_t i = 0; i < nq; i++)
        h[i] = (float)((i * 2654435761u) % 1000) * 2e-3f - 1.0f;
    be_upload(&g_ex, qkv, h, sizeof(float) * nq), be_upload(&g_ex, dO, h, sizeof(float) * nh);
    double *tf = calloc((size_t)steps, sizeof(double)), *tb = calloc((size_t)steps, sizeof(double));
    for (int k = 0; k < steps + 2; k++) {
        double t0 = now_synced();
        k_attn_flash_forward(&g_ex, o, lse, qkv, W, B, T, H, KV, hd);
        double t1 = now_synced();
        k_attn_flash_backward(&g_ex, dqkv, dO, qkv, o, lse, B, T, H, KV, hd, w);
        double t2 = now_synced();
        if (k >= 2)
            tf[k - 2] = t1 - t0, tb[k - 2] = t2 - t1;
    }
    if (molt_cuda_last_error())
        die(gpu, "attention");
    double fwd = median(tf, steps), bwd = median(tb, steps);
    double fl = 2.0 * 2.0 * (double)B * H * hd * ((double)T * (T + 1) / 2);
    printf("{\"bench\": \"attn_flash\", \"shape\": \"H %d KV %d hd %d\", \"batch\": %d, "
           "\"seq\": %d, \"precision\": \"%s\", \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, "
           "\"fwd_tflops\": %.1f, \"bwd_tflops\": %.1f, \"layers16_fwd_bwd_ms\": %.1f}\n",
           H, KV, hd, B, T, g_ex.flags & MOLT_EXEC_BF16 ? "bf16" : "fp32", fwd * 1e3, bwd * 1e3,
           fl / fwd * 1e-12, 2.5 * fl / bwd * 1e-12, 16 * (fwd + bwd) * 1e3);
    fflush(stdout);
    float *bufs[] = {qkv, o, lse, dO, dqkv, w};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be_free(g_ex.be, bufs[i]);
    free(h), free(tf), free(tb);
}

// The decode's matrix products alone (k_matmul_w, bf16 weights) at Llamba-1B's shapes, T = 1
// and 64 rows: weight GB/s (each weight read once) against the copy bandwidth; the median of 5
// rounds of 50 calls queued back to back (the 2026-12-07 H100 rows synchronised every call).
static void bench_gemv(void) {
    const int shapes[][2] = {{2048, 8224}, {2048, 2048}, {2048, 16384}, {8192, 2048}, {2048, 128256}};
    const int Ts[] = {1, 64};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int       in = shapes[k][0], out = shapes[k][1];
        size_t    nw = (size_t)in * out;
        uint16_t *wh = malloc(2 * nw);
        float    *xh = malloc(sizeof(float) * 64 * (size_t)in);
        uint64_t  r = 0x9E3779B97F4A7C15ull * (k + 1);
        for (size_t i = 0; i < nw; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            wh[i] = molt_f32_to_bf16(((float)(r >> 40) / 16777216.0f - 0.5f) * 0.05f);
        }
        for (size_t i = 0; i < 64 * (size_t)in; i++)
            xh[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
        void  *wd = be_alloc(g_ex.be, 2 * nw);
        float *xd = be_allocf(g_ex.be, 64 * (size_t)in), *yd = be_allocf(g_ex.be, 64 * (size_t)out);
        be_upload(&g_ex, wd, wh, 2 * nw);
        be_upload(&g_ex, xd, xh, sizeof(float) * 64 * (size_t)in);
        for (int ti = 0; ti < 2; ti++) {
            int    T = Ts[ti], reps = 50;
            double tt[5];
            for (int rd = 0; rd < 6; rd++) { // 50 calls back to back (no sync between), 5 times
                double t0 = now_synced();
                for (int i = 0; i < reps; i++)
                    k_matmul_w(&g_ex, yd, xd, (molt_w){MOLT_BF16, wd}, NULL, T, in, out, 0);
                double el = (now_synced() - t0) / reps;
                if (rd >= 1) // the first round warms up
                    tt[rd - 1] = el;
            }
            double per = median(tt, 5);
            printf("{\"bench\": \"gemv\", \"matmul\": \"%s\", \"T\": %d, \"in\": %d, "
                   "\"out\": %d, \"us\": %.1f, \"weight_gb_per_s\": %.0f}\n",
                   g_ex.flags & MOLT_EXEC_BF16 ? "bf16" : "fp32", T, in, out, per * 1e6,
                   2.0 * (double)nw / per * 1e-9);
        }
        fflush(stdout);
        be_free(g_ex.be, wd), be_free(g_ex.be, xd), be_free(g_ex.be, yd);
        free(wh), free(xh);
    }
}

// The device's copy bandwidth, the decode rows' roofline (the issue: "decode against the
// measured copy bandwidth"): a 1 GiB device-to-device copy, bytes read + written over the
// time, the median of 5 after one warm-up. Decode reads its weights once a step, so its
// gb_per_s against this is its share of what the memory can stream.
static double g_copy_gbs;

static void bench_copy(void) {
    size_t bytes = (size_t)1 << 30;
    void  *a = be_alloc(g_ex.be, bytes), *b = be_alloc(g_ex.be, bytes);
    if (!a || !b)
        die(gpu, "copy buffers");
    double tt[5];
    for (int r = 0; r < 6; r++) {
        double t0 = now_synced();
        be_copy(&g_ex, b, a, bytes);
        double el = now_synced() - t0;
        if (r)
            tt[r - 1] = el;
    }
    g_copy_gbs = 2.0 * (double)bytes / median(tt, 5) * 1e-9;
    printf("{\"bench\": \"copy\", \"bytes\": %zu, \"gb_per_s\": %.0f, "
           "\"counts\": \"bytes read + written\"}\n",
           bytes, g_copy_gbs);
    fflush(stdout);
    be_free(g_ex.be, a), be_free(g_ex.be, b);
}

static int         g_dbatch; // --dbatch N: decode only batch N, bf16 weights, ids drawn (a profile's run)
static const char *g_dstate = "f32"; // --dstate f32|bf16: the decode's recurrent state

static void bench_decode(int steps) {
    molt_model *m = gpu_model(STUDENT);
    const int   batches[] = {1, 16, 64, 256};
    for (int w = g_dbatch ? 1 : 0; w < 2; w++) {
        const char *dt = w ? "bf16" : "f32";
        if (molt_model_set_weight_dtype(gpu, m, dt) != MOLT_OK)
            die(gpu, "weights");
        if (molt_model_set_state_dtype(gpu, m, g_dstate) != MOLT_OK)
            die(gpu, "state dtype");
        // bytes a step must read: every matrix once (typed), the rest f32
        double wbytes = (double)m->n_floats * 4.0 -
                        (w ? (double)m->wbuf_bytes : 0.0); // bf16: the copy replaces the f32 reads
        for (int k = 0; k < 4; k++)
            for (int smp = 0; smp < 2; smp++) { // logits to the host, or ids sampled on the GPU
                int         n = batches[k];
                if ((n == 16 || n == 256) && !smp)
                    continue; // the curve's middle and end: sampled ids only
                if (g_dbatch && (n != g_dbatch || !smp))
                    continue;
                molt_slots *s = NULL;
                if (molt_slots_new(gpu, m, n, 1024, &s) != MOLT_OK)
                    die(gpu, "slots");
                int32_t *slot = malloc(sizeof(int32_t) * n), *tok = malloc(sizeof(int32_t) * n);
                int32_t *nxt = malloc(sizeof(int32_t) * n);
                float   *lg = smp ? NULL : malloc(sizeof(float) * (size_t)n * V);
                for (int r = 0; r < n; r++)
                    slot[r] = r, tok[r] = 1 + r;
                double *tt = calloc((size_t)steps, sizeof(double));
                unsigned long rp = molt_cuda_graph_replays();
                for (int i = 0; i < steps + 3; i++) {
                    double t0 = now_synced();
                    molt_status st =
                        smp ? molt_slots_feed_sample(gpu, s, n, slot, tok, 0.0f, NULL, nxt)
                            : molt_slots_feed(gpu, s, n, slot, tok, lg);
                    if (st != MOLT_OK)
                        die(gpu, "decode");
                    double el = now_synced() - t0;
                    for (int r = 0; r < n; r++) // greedy ids (random weights: any in range)
                        tok[r] = smp ? nxt[r] : (tok[r] * 31 + 7) % V;
                    if (i >= 3)
                        tt[i - 3] = el;
                }
                double per = median(tt, steps);
                rp = molt_cuda_graph_replays() - rp;
                printf("{\"bench\": \"decode\", \"model\": \"llamba-1b shape\", \"weights\": "
                       "\"%s\", \"state\": \"%s\", \"matmul\": \"%s\", \"batch\": %d, \"sampling\": \"%s\", "
                       "\"graph_replays\": %lu, \"tokens_per_s\": %.0f, \"ms_per_step\": %.3f, "
                       "\"weight_gb_per_step\": %.2f, \"gb_per_s\": %.0f, "
                       "\"of_copy_bw\": %.3f}\n",
                       dt, g_dstate, g_ex.flags & MOLT_EXEC_BF16 ? "bf16" : "fp32", n,
                       smp ? "greedy on the GPU (ids back)" : "logits to the host", rp, n / per,
                       per * 1e3, wbytes * 1e-9, wbytes / per * 1e-9,
                       g_copy_gbs > 0 ? wbytes / per * 1e-9 / g_copy_gbs : 0.0);
                fflush(stdout);
                free(slot), free(tok), free(nxt), free(lg), free(tt);
                molt_slots_free(s);
            }
    }
    molt_model_free(m);
}

int main(int argc, char **argv) {
    int B = 4, T = 2048, steps = 5;
    const char *only = NULL;
    const char *matmul = "fp32";
    bench_1b    shape = BENCH_1B;
    int         prof = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--small")) shape = BENCH_1B_SMALL;
        else if (!strcmp(argv[i], "--dstate") && i + 1 < argc) g_dstate = argv[++i];
        else if (!strcmp(argv[i], "--tf32")) matmul = "tf32";
        else if (!strcmp(argv[i], "--bf16")) matmul = "bf16";
        else if (!strcmp(argv[i], "--profile")) prof = 1;
        else if (!strcmp(argv[i], "--recompute")) g_recompute = 1;
        else if (!strcmp(argv[i], "--head-rows") && i + 1 < argc) g_head_rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dbatch") && i + 1 < argc) g_dbatch = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_gpu [--batch B] [--seq T] [--steps S] [--only NAME] "
                            "[--small] [--tf32 | --bf16] [--profile] [--recompute]\n"
                            "                 [--dbatch 1|16|64|256] [--dstate f32|bf16] "
                            "[--head-rows N]\n");
            return 2;
        }
    }
    D = shape.D, L = shape.L, H = shape.H, KV = shape.KV, F = shape.F, V = shape.V, NS = shape.NS;
    make_cfgs();
    cpu = molt_ctx_new();
    gpu = molt_ctx_new();
    if (molt_ctx_set_device(gpu, "cuda") != MOLT_OK)
        die(gpu, "device");
    molt_ctx_set_matmul(gpu, matmul);
    g_ex = molt__exec(gpu);
    bench_gemm();
#define WORKLOAD(name, call)                                                                       \
    if (!only || !strcmp(only, name)) {                                                            \
        if (prof && !molt_cuda_profile_begin())                                                    \
            die(gpu, "profile");                                                                   \
        call;                                                                                      \
        if (prof) {                                                                                \
            fprintf(stderr, "# profile of %s\n", name);                                            \
            molt_cuda_profile_report(stderr, 40);                                                  \
        }                                                                                          \
    }
    WORKLOAD("attn", bench_attn(B, T, steps));
    WORKLOAD("ssd", bench_ssd(B, T, steps));
    if (!only || !strcmp(only, "decode") || !strcmp(only, "gemv") || !strcmp(only, "copy"))
        bench_copy();
    WORKLOAD("decode", bench_decode(20));
    WORKLOAD("gemv", bench_gemv());
    WORKLOAD("teacher", bench_teacher(B, T, steps));
    WORKLOAD("stage3", bench_stage3(B, T, steps));
#undef WORKLOAD
    molt_ctx_free(cpu);
    molt_ctx_free(gpu);
    return 0;
}
#endif
