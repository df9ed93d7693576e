/*
 * bench_decode.c — decoding against the memory-bandwidth limit (issue 15):
 *   bandwidth  the machine's read bandwidth: `threads` threads each summing
 *              its part of a 1 GiB buffer (best of 5), with 4 KiB pages and
 *              with transparent huge pages (madvise);
 *   decode     batch-1 decode of each model at each weight type (f32, bf16,
 *              q8_0: the types alternating, --rounds times): tok/s, the bytes
 *              a token reads (the typed matrices, the embedding row, the KV
 *              cache at the mean position, the recurrent state read and
 *              written), and that over the measured bandwidth;
 *   prefill    one forward over --prefill tokens (tok/s);
 *   depth      decode at a context of --depths tokens (Llama), with each
 *              KV-cache type of --kv (f32, f16: molt_model_set_kv_dtype);
 *   batch      decode over --batches state slots (aggregate tok/s), as
 *              bench_batch: a 16-token prompt forked into every slot.
 * Models: the 110M Llama and 115M Mamba-2 of bench_models.h (random weights:
 * speed does not depend on the values), or MODEL paths (--model, repeatable).
 * --save DIR writes the two random models (f32) to DIR/llama-110m and
 * DIR/mamba2-115m, e.g. for another engine to run the same weights.
 * One JSON line per measurement.
 * usage: bench_decode [--threads N] [--weights f32,bf16,q8_0] [--kv f32,f16] [--state f32|bf16] [--rounds R]
 *          [--decode N] [--prefill T] [--depths 2048,8192] [--batches 1,4,..|none]
 *          [--builtin llama-110m,mamba2-115m] [--model PATH]... [--only-given]
 *          [--skip-bw] [--save DIR] [--matmul fp32|bf16]
 * --matmul bf16: prefill products with bf16 weights round x to bf16 (molt_ctx_set_matmul).
 */
#include "bench_models.h"

#include "kernels/cpu/cpu.h"
#include "kernels/mem.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(molt_ctx *ctx) {
    fprintf(stderr, "error: %s\n", molt_last_error(ctx));
    exit(1);
}

// ----------------------------------------------------------------------------
// read bandwidth

typedef struct bw_arg {
    const uint64_t *p;
    size_t          n;
    uint64_t        x;
} bw_arg;

// XOR of every word: one-cycle integer ops in 8 independent lanes, so the
// loads, not the arithmetic, set the pace; 32-byte loads where the CPU has
// AVX2 (16-byte SSE2 loads cap one core near 30 GB/s here, below the memory)
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t xor_avx2(const uint64_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(const void *)(p + i + 4)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(const void *)(p + i + 8)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(const void *)(p + i + 12)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#endif

static void *bw_read(void *v) {
    bw_arg *a = v;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        a->x = xor_avx2(a->p, a->n);
        return NULL;
    }
#endif
    uint64_t acc[8] = {0};
    for (size_t i = 0; i + 8 <= a->n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] ^= a->p[i + k];
    for (int k = 1; k < 8; k++)
        acc[0] ^= acc[k];
    a->x = acc[0];
    return NULL;
}

static double bandwidth(int nth, int huge) {
    size_t    bytes = (size_t)1 << 30, n = bytes / sizeof(uint64_t);
    uint64_t *p = NULL;
    if (nth > 64 || posix_memalign((void **)&p, (size_t)2 << 20, bytes))
        return 0;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
    for (size_t i = 0; i < n; i++)
        p[i] = i * 0x9E3779B97F4A7C15ull;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        pthread_t th[64];
        bw_arg    a[64];
        double    t0 = molt__now();
        for (int i = 0; i < nth; i++) {
            a[i] = (bw_arg){p + n / (size_t)nth * (size_t)i, n / (size_t)nth, 0};
            pthread_create(&th[i], NULL, bw_read, &a[i]);
        }
        for (int i = 0; i < nth; i++)
            pthread_join(th[i], NULL);
        double t = molt__now() - t0;
        best = t < best ? t : best;
    }
    free(p);
    return (double)bytes / best * 1e-9;
}

// ----------------------------------------------------------------------------
// what a token reads

// weights + embedding row + KV read at position pos + recurrent state read and written
static double token_bytes(molt_ctx *ctx, molt_model *m, double pos) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    return bench_matrix_bytes(ctx, m) + 4.0 * in.d_model + (double)in.kv_bytes_per_token * (pos + 1) +
           2.0 * (double)in.state_bytes;
}

// ----------------------------------------------------------------------------
// measurements

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        b = x[i] > x[b] ? i : b;
    return b;
}

typedef struct opts {
    int threads, rounds, ndec, npre, depths[8], nd, batches[16], nb, nw, nkv;
    const char *wdt[4], *kvt[2];
    double bw;
    const char *state; // the recurrent state's dtype (--state f32|bf16)
} opts;

static void emit(const char *kind, const char *name, molt_model *m, int r, const char *extra,
                 double tps, double bytes, double bw) {
    printf("{\"bench\": \"%s\", \"model\": \"%s\", \"weights\": \"%s\", \"kv\": \"%s\", "
           "\"isa\": \"%s\", \"round\": %d%s, \"tok_per_s\": %.1f",
           kind, name, molt_dtype_name(m->weight_dt), molt_dtype_name(m->kv_dt),
           cpu_q8_isa_name(cpu_q8_isa()), r, extra, tps);
    printf(", \"state\": \"%s\"", molt_dtype_name(m->cfg.state_dt));
    if (bytes > 0)
        printf(", \"bytes_per_tok\": %.0f, \"gb_s\": %.2f, \"pct_bw\": %.1f", bytes,
               bytes * tps * 1e-9, bw > 0 ? 100.0 * bytes * tps * 1e-9 / bw : 0.0);
    printf("}\n");
    fflush(stdout);
}

static void decode(molt_ctx *ctx, const char *name, molt_model *m, int r, const opts *o,
                   int depth) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    int n = o->ndec, pre = depth > 0 ? depth : 16;
    molt_seq *s = NULL;
    if (molt_seq_new(ctx, m, pre + n + 1, &s) != MOLT_OK)
        die(ctx);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)pre);
    for (int i = 0; i < pre; i++)
        ids[i] = (i * 37 + 1) % in.vocab;
    float *lg = malloc(sizeof(float) * (size_t)in.vocab);
    if (molt_seq_feed(ctx, s, ids, pre, 0, lg) != MOLT_OK)
        die(ctx);
    double t0 = molt__now();
    for (int i = 0; i < n; i++) {
        int32_t t = argmax(lg, in.vocab);
        if (molt_seq_feed(ctx, s, &t, 1, 0, lg) != MOLT_OK)
            die(ctx);
    }
    double t = molt__now() - t0;
    char extra[128];
    snprintf(extra, sizeof extra, ", \"context\": %d, \"tokens\": %d", pre, n);
    size_t len = strlen(extra);
    snprintf(extra + len, sizeof extra - len, ", \"weight_bytes\": %.0f", bench_matrix_bytes(ctx, m));
    emit(depth > 0 ? "depth" : "decode", name, m, r, extra, n / t,
         token_bytes(ctx, m, pre + n / 2.0), o->bw);
    free(ids), free(lg);
    molt_seq_free(s);
}

static void prefill(molt_ctx *ctx, const char *name, molt_model *m, int r, const opts *o) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    molt_seq *s = NULL;
    if (molt_seq_new(ctx, m, o->npre, &s) != MOLT_OK)
        die(ctx);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->npre);
    for (int i = 0; i < o->npre; i++)
        ids[i] = (i * 37 + 1) % in.vocab;
    double best = 1e30;
    for (int k = 0; k < 2; k++) {
        molt_seq_reset(s);
        double t0 = molt__now();
        if (molt_seq_feed(ctx, s, ids, o->npre, 0, NULL) != MOLT_OK)
            die(ctx);
        double t = molt__now() - t0;
        best = t < best ? t : best;
    }
    char extra[48];
    snprintf(extra, sizeof extra, ", \"tokens\": %d", o->npre);
    emit("prefill", name, m, r, extra, o->npre / best, 0, 0);
    free(ids);
    molt_seq_free(s);
}

static void batch(molt_ctx *ctx, const char *name, molt_model *m, int r, int B) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    int steps = B >= 256 ? 3 : B >= 64 ? 6 : B >= 16 ? 12 : 24;
    molt_slots *sl = NULL;
    if (molt_slots_new(ctx, m, B, 16 + steps + 2, &sl) != MOLT_OK) {
        printf("{\"bench\": \"batch\", \"model\": \"%s\", \"batch\": %d, \"error\": \"%s\"}\n",
               name, B, molt_last_error(ctx));
        return;
    }
    int32_t prompt[16], *slot = malloc(sizeof(int32_t) * (size_t)B);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
    for (int i = 0; i < 16; i++)
        prompt[i] = (i * 37 + 1) % in.vocab;
    if (molt_slot_prefill(ctx, sl, 0, prompt, 16, 0, NULL) != MOLT_OK)
        die(ctx);
    for (int i = 0; i < B; i++) {
        if (i)
            molt_slot_copy(ctx, sl, 0, i);
        slot[i] = i, tok[i] = (7 * i + 3) % in.vocab;
    }
    float *lg = malloc(sizeof(float) * (size_t)B * (size_t)in.vocab);
    if (molt_slots_feed(ctx, sl, B, slot, tok, lg) != MOLT_OK) // warm-up
        die(ctx);
    double t0 = molt__now();
    for (int s = 0; s < steps; s++)
        if (molt_slots_feed(ctx, sl, B, slot, tok, lg) != MOLT_OK)
            die(ctx);
    double t = molt__now() - t0;
    char extra[96];
    snprintf(extra, sizeof extra, ", \"batch\": %d, \"steps\": %d, \"state_mb\": %.1f", B, steps,
             (double)molt_slots_state_bytes(sl) * 1e-6);
    emit("batch", name, m, r, extra, (double)B * steps / t, 0, 0);
    free(slot), free(tok), free(lg);
    molt_slots_free(sl);
}

static void run_model(molt_ctx *ctx, const char *name, molt_model *m, const opts *o) {
    if (molt_model_set_state_dtype(ctx, m, o->state) != MOLT_OK)
        die(ctx);
    for (int r = 0; r < o->rounds; r++)
        for (int w = 0; w < o->nw; w++) {
            if (molt_model_set_weight_dtype(ctx, m, o->wdt[w]) != MOLT_OK)
                die(ctx);
            for (int v = 0; v < o->nkv; v++) { // the KV types alternating
                if (molt_model_set_kv_dtype(ctx, m, o->kvt[v]) != MOLT_OK)
                    die(ctx);
                if (o->ndec > 0)
                    decode(ctx, name, m, r, o, 0);
                if (o->npre > 0)
                    prefill(ctx, name, m, r, o);
                for (int k = 0; k < o->nd && m->cfg.n_kv_head > 0; k++)
                    decode(ctx, name, m, r, o, o->depths[k]);
                for (int k = 0; k < o->nb; k++)
                    batch(ctx, name, m, r, o->batches[k]);
            }
        }
}

static int list(char *s, int *out, int cap) {
    int n = 0;
    for (char *t = strtok(s, ","); t && n < cap; t = strtok(NULL, ","))
        out[n++] = atoi(t);
    return n;
}

// the molt CLI's choice of OpenBLAS kernel (tools/molt/main.c), so f32 rows
// compare like for like: AVX-512 sgemm where the CPU has it, unless the
// environment names one
static void prefer_avx512_blas(char **argv) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE") || getenv("MOLT_NO_CORETYPE"))
        return;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
        return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}

int main(int argc, char **argv) {
    prefer_avx512_blas(argv);
    opts o = {.threads = 2, .rounds = 2, .ndec = 64, .npre = 512, .nw = 3,
              .wdt = {"f32", "bf16", "q8_0"}, .nkv = 1, .kvt = {"f32"}, .nd = 0, .nb = 5,
              .batches = {1, 4, 16, 64, 256}, .state = "f32"};
    const char *paths[8], *save = NULL, *matmul = "fp32";
    int np = 0, only_given = 0, skip_bw = 0;
    const char *builtin = "llama-110m,mamba2-115m";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v)
            o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--rounds") && v)
            o.rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--decode") && v)
            o.ndec = atoi(argv[++i]);
        else if (!strcmp(a, "--prefill") && v)
            o.npre = atoi(argv[++i]);
        else if (!strcmp(a, "--depths") && v)
            o.nd = list(argv[++i], o.depths, 8);
        else if (!strcmp(a, "--batches") && v)
            o.nb = strcmp(argv[++i], "none") ? list(argv[i], o.batches, 16) : 0;
        else if (!strcmp(a, "--weights") && v) {
            o.nw = 0;
            for (char *t = strtok(argv[++i], ","); t && o.nw < 4; t = strtok(NULL, ","))
                o.wdt[o.nw++] = t;
        } else if (!strcmp(a, "--kv") && v) {
            o.nkv = 0;
            for (char *t = strtok(argv[++i], ","); t && o.nkv < 2; t = strtok(NULL, ","))
                o.kvt[o.nkv++] = t;
        } else if (!strcmp(a, "--state") && v)
            o.state = argv[++i];
        else if (!strcmp(a, "--model") && v && np < 8)
            paths[np++] = argv[++i];
        else if (!strcmp(a, "--only-given"))
            only_given = 1;
        else if (!strcmp(a, "--builtin") && v)
            builtin = argv[++i];
        else if (!strcmp(a, "--skip-bw"))
            skip_bw = 1;
        else if (!strcmp(a, "--save") && v)
            save = argv[++i];
        else if (!strcmp(a, "--matmul") && v)
            matmul = argv[++i];
        else {
            fprintf(stderr, "usage: bench_decode [--threads N] [--weights f32,bf16,q8_0] "
                            "[--kv f32,f16] [--rounds R] [--decode N] [--prefill T] "
                            "[--depths 2048,8192] [--batches 1,4,..] [--builtin NAMES] "
                            "[--model PATH]... [--only-given] [--skip-bw] [--state f32|bf16] "
                            "[--save DIR] [--matmul fp32|bf16]\n");
            return 2;
        }
    }
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, o.threads);
    if (molt_ctx_set_matmul(ctx, matmul) != MOLT_OK)
        die(ctx);
    if (save) {
        const char *names[2] = {"llama-110m", "mamba2-115m"};
        const char *json[2] = {BENCH_LLAMA_110M, BENCH_MAMBA2_115M};
        for (int k = 0; k < 2; k++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s", save, names[k]);
            molt_model *m = bench_model(ctx, json[k]);
            if (molt_model_save(ctx, m, dir, "f32") != MOLT_OK)
                die(ctx);
            fprintf(stderr, "wrote %s\n", dir);
            molt_model_free(m);
        }
        molt_ctx_free(ctx);
        return 0;
    }
    int mv = cpu_matvec_isa(); // the fp32 / bf16 / f16 decode matvec's path (cpu/matvec.c)
    printf("{\"bench\": \"machine\", \"threads\": %d, \"q8_isa\": \"%s\", \"matvec_isa\": "
           "\"%s\", \"openblas\": \"%s\"}\n",
           o.threads, cpu_q8_isa_name(cpu_q8_isa()),
           mv == MV_AVX512 ? "avx512" : mv == MV_AVX2 ? "avx2" : "scalar",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "auto");
    if (!skip_bw) {
        double b4 = bandwidth(o.threads, 0), bh = bandwidth(o.threads, 1);
        printf("{\"bench\": \"bandwidth\", \"threads\": %d, \"gb_s_4k\": %.2f, "
               "\"gb_s_huge\": %.2f}\n", o.threads, b4, bh);
        o.bw = bh > b4 ? bh : b4;
    }
    fflush(stdout);
    if (!only_given && strstr(builtin, "llama-110m")) {
        molt_model *a = bench_model(ctx, BENCH_LLAMA_110M);
        run_model(ctx, "llama-110m", a, &o);
        molt_model_free(a);
    }
    if (!only_given && strstr(builtin, "mamba2-115m")) {
        molt_model *b = bench_model(ctx, BENCH_MAMBA2_115M);
        run_model(ctx, "mamba2-115m", b, &o);
        molt_model_free(b);
    }
    for (int k = 0; k < np; k++) {
        molt_load_opts lo = {NULL, 1};
        molt_model *m = NULL;
        if (molt_model_load(ctx, paths[k], &lo, &m) != MOLT_OK)
            die(ctx);
        run_model(ctx, paths[k], m, &o);
        molt_model_free(m);
    }
    molt_ctx_free(ctx);
    return 0;
}
