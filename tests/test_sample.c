/*
 * test_sample.c — the sampler never reads outside its buffers and never
 * samples from non-finite numbers:
 *   - a logit row holding NaN or ±inf is refused (-1), at any temperature,
 *     top-p and top-k; molt_generate / molt_generate_many turn that into
 *     MOLT_ERR_NUMERIC naming the position (a model with a NaN weight);
 *   - a temperature so small that logits/T overflow (1e-40) samples the
 *     greedy token (its limit), where it used to read before its buffer;
 *   - top-p after a softmax of all-equal logits, vocab 1, top-k = vocab;
 *   - the ordinary path is llama2.c's (a known seed gives the same token).
 * Run under `make asan` a read outside buf or logits fails the test.
 */
#include "infer/sample.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V 64

static void fill_logits(float *x, int n, uint64_t seed) {
    t_seed(seed);
    for (int i = 0; i < n; i++)
        x[i] = t_normal() * 3.0f;
}

static int sample_once(const float *logits, int n, float temp, float top_p, int top_k,
                       uint64_t seed) {
    // exact-size heap buffers so ASan sees any read outside them
    float             *x = malloc(sizeof(float) * (size_t)n);
    struct prob_index *pi = malloc(sizeof(*pi) * (size_t)n);
    memcpy(x, logits, sizeof(float) * (size_t)n);
    sampler s;
    sampler_init(&s, n, temp, top_p, top_k, seed, pi);
    int tok = sampler_sample(&s, x);
    free(x);
    free(pi);
    return tok;
}

static void test_non_finite(void) {
    static const float temps[] = {0.0f, 1e-40f, 0.8f, 1.0f, 50.0f};
    static const float topps[] = {0.0f, 0.5f, 0.9f, 1.0f};
    static const int   topks[] = {0, 1, 5, V};
    const float        bad[] = {NAN, INFINITY, -INFINITY};
    float              lg[V];
    for (int b = 0; b < 3; b++)
        for (int where = 0; where < V; where += 21) {
            fill_logits(lg, V, 7);
            lg[where] = bad[b];
            for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++)
                for (size_t pi = 0; pi < sizeof topps / sizeof *topps; pi++)
                    for (size_t ki = 0; ki < sizeof topks / sizeof *topks; ki++) {
                        int tok = sample_once(lg, V, temps[ti], topps[pi], topks[ki], 3);
                        CHECK(tok == -1, "bad=%g at %d temp=%g top_p=%g top_k=%d gave %d",
                              (double)bad[b], where, (double)temps[ti], (double)topps[pi],
                              topks[ki], tok);
                    }
        }
    float all_nan[V];
    for (int i = 0; i < V; i++)
        all_nan[i] = NAN;
    CHECK(sample_once(all_nan, V, 1.0f, 0.9f, 0, 1) == -1, "all NaN, top-p");
}

static void test_tiny_temperature(void) {
    float lg[V];
    for (uint64_t seed = 1; seed <= 20; seed++) {
        fill_logits(lg, V, seed);
        int greedy = sample_argmax(lg, V);
        for (int k = 0; k <= 3; k += 3) {
            CHECK(sample_once(lg, V, 1e-40f, 0.9f, k, seed) == greedy, "top-p, seed %d",
                  (int)seed);
            CHECK(sample_once(lg, V, 1e-40f, 1.0f, k, seed) == greedy, "plain, seed %d",
                  (int)seed);
        }
    }
}

static void test_edges(void) {
    float flat[V];
    for (int i = 0; i < V; i++)
        flat[i] = 0.25f;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        int tok = sample_once(flat, V, 1.0f, 0.9f, 0, seed);
        CHECK(tok >= 0 && tok < V, "flat logits, top-p: %d", tok);
        tok = sample_once(flat, V, 1.0f, 0.5f, V, seed);
        CHECK(tok >= 0 && tok < V, "flat logits, top-k = V: %d", tok);
    }
    float one = 3.0f;
    CHECK(sample_once(&one, 1, 1.0f, 0.9f, 0, 5) == 0, "vocab 1, top-p");
    CHECK(sample_once(&one, 1, 1.0f, 1.0f, 0, 5) == 0, "vocab 1, plain");
    // a token from the ordinary path is one of the top-k
    float lg[V];
    fill_logits(lg, V, 99);
    int tok = sample_once(lg, V, 1.0f, 1.0f, 1, 42);
    CHECK(tok == sample_argmax(lg, V), "top-k 1 is greedy");
}

static void on_text(const char *piece, size_t len, void *user) {
    (void)piece, (void)len, (void)user;
}
static void on_sample(int32_t i, const char *piece, size_t len, void *user) {
    (void)i, (void)piece, (void)len, (void)user;
}

// a model with one NaN weight: generation fails with MOLT_ERR_NUMERIC and a
// message naming the position, at any temperature, single and batched
static void test_generate_nan(molt_ctx *ctx) {
    molt_model *m = tm_load_stories(ctx, "generate with NaN weights");
    if (!m)
        return;
    molt_gen_params p = molt_gen_defaults();
    p.max_new_tokens = 8;
    static const float temps[] = {0.0f, 1e-40f, 1.0f};
    // sane model first: tiny temperature equals greedy
    for (size_t i = 0; i < 3; i++) {
        p.temperature = temps[i];
        CHECK(molt_generate(ctx, m, "Once", &p, on_text, NULL, NULL) == MOLT_OK, "temp %g: %s",
              (double)temps[i], molt_last_error(ctx));
    }
    m->final_norm[3] = NAN;
    for (size_t i = 0; i < 3; i++) {
        p.temperature = temps[i];
        molt_status st = molt_generate(ctx, m, "Once", &p, on_text, NULL, NULL);
        CHECK(st == MOLT_ERR_NUMERIC, "temp %g: status %d", (double)temps[i], (int)st);
        CHECK(strstr(molt_last_error(ctx), "position") != NULL, "message: %s",
              molt_last_error(ctx));
        st = molt_generate_many(ctx, m, "Once", 3, &p, on_sample, NULL, NULL);
        CHECK(st == MOLT_ERR_NUMERIC, "many, temp %g: status %d", (double)temps[i], (int)st);
    }
    molt_model_free(m);
}

int main(void) {
    molt_ctx *ctx = molt_ctx_new();
    test_non_finite();
    test_tiny_temperature();
    test_edges();
    test_generate_nan(ctx);
    molt_ctx_free(ctx);
    return t_done("test_sample");
}
