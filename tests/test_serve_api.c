/*
 * test_serve_api.c — the public pieces `molt serve` is built on (molt.h "serving"):
 *   - slot snapshots: molt_slot_save → molt_slot_load into another slot (holding other
 *     tokens) gives a slot that continues bit for bit as the original, for every architecture
 *     of tm_arch_cfgs (attention KV rows, recurrent states, hybrids); the snapshot's size grows
 *     with the position only through KV rows; a short buffer, a snapshot of slots of another
 *     capacity or model, and damaged bytes are refused and change nothing;
 *   - molt_sampler: with min_p 0 and repetition penalty 1 it draws molt_generate's tokens
 *     (the same greedy / temperature / top-k / top-p paths and RNG: molt_generate's text on
 *     stories260K for the same seed); min_p 1 keeps only the top token; the repetition penalty
 *     divides a seen token's positive logit; bad parameters are refused;
 *   - molt_token_piece: the pieces of a generation concatenate to molt_generate's text.
 */
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

static void check_snapshots(const char *name, const char *json) {
    molt_model *m = tm_random_model(ctx, json, 11, 0.05f);
    if (!m)
        return;
    molt_model_info info;
    molt_model_get_info(m, &info);
    int V = info.vocab, cap = 48;
    molt_slots *sl = NULL, *other = NULL;
    CHECK(molt_slots_new(ctx, m, 3, cap, &sl) == MOLT_OK, "slots: %s", molt_last_error(ctx));
    CHECK(molt_slots_new(ctx, m, 1, cap + 1, &other) == MOLT_OK, "slots: %s",
          molt_last_error(ctx));
    float *a = malloc(sizeof(float) * (size_t)V * 2), *b = a + V;
    if (!sl || !other || !a)
        goto out;
    int32_t ids[20];
    t_seed(5);
    for (int t = 0; t < 20; t++)
        ids[t] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    size_t empty = molt_slot_save_bytes(sl, 0);
    CHECK(molt_slot_prefill(ctx, sl, 0, ids, 17, 0, a) == MOLT_OK, "prefill");
    CHECK(molt_slot_prefill(ctx, sl, 1, ids + 3, 5, 0, a) == MOLT_OK, "prefill");
    size_t n = molt_slot_save_bytes(sl, 0);
    CHECK(info.kv_bytes_per_token ? n > empty : n == empty,
          "%s: snapshot bytes %zu at position 17, %zu empty (KV bytes/token %lld)", name, n, empty,
          (long long)info.kv_bytes_per_token);
    char *buf = malloc(n + 8);
    size_t len = 0;
    CHECK(molt_slot_save(ctx, sl, 0, buf, n - 1, &len) == MOLT_ERR_ARG, "short buffer refused");
    CHECK(molt_slot_save(ctx, sl, 0, buf, n + 8, &len) == MOLT_OK && len == n, "save: %s",
          molt_last_error(ctx));
    // slot 1 (holding 5 other tokens) becomes slot 0
    CHECK(molt_slot_load(ctx, sl, 1, buf, len) == MOLT_OK, "load: %s", molt_last_error(ctx));
    CHECK(molt_slot_pos(sl, 1) == 17, "%s: loaded position %d", name, molt_slot_pos(sl, 1));
    int32_t both[2] = {0, 1}, tok[2];
    int same = 1;
    for (int step = 0; step < 6; step++) {
        tok[0] = tok[1] = ids[17 + step % 3];
        CHECK(molt_slots_feed(ctx, sl, 2, both, tok, a) == MOLT_OK, "feed");
        same &= !memcmp(a, b, sizeof(float) * (size_t)V);
    }
    CHECK(same, "%s: a loaded slot does not continue bit for bit as the saved one", name);
    // refusals change nothing
    CHECK(molt_slot_load(ctx, other, 0, buf, len) == MOLT_ERR_FORMAT,
          "%s: a snapshot of slots of another capacity must be refused", name);
    CHECK(molt_slot_pos(other, 0) == 0, "a refused load moved the slot");
    buf[0] ^= 1;
    CHECK(molt_slot_load(ctx, sl, 2, buf, len) == MOLT_ERR_FORMAT, "damaged magic refused");
    buf[0] ^= 1;
    CHECK(molt_slot_load(ctx, sl, 2, buf, len - 4) == MOLT_ERR_FORMAT, "truncated refused");
    CHECK(molt_slot_load(ctx, sl, 2, buf, 3) == MOLT_ERR_FORMAT, "3 bytes refused");
    CHECK(molt_slot_pos(sl, 2) == 0, "refused loads moved slot 2");
    CHECK(molt_slot_load(ctx, sl, 7, buf, len) == MOLT_ERR_ARG, "no slot 7");
    printf("%-9s snapshot at position 17: %zu bytes (empty %zu); load continues bit for bit\n",
           name, n, empty);
    free(buf);
out:
    free(a);
    molt_slots_free(sl);
    molt_slots_free(other);
    molt_model_free(m);
}

// generation through molt_sampler + molt_token_piece == molt_generate's text
typedef struct text {
    char   s[8192];
    size_t n;
} text;

static void on_text(const char *p, size_t n, void *u) {
    text *t = u;
    if (t->n + n < sizeof t->s) {
        memcpy(t->s + t->n, p, n);
        t->n += n;
        t->s[t->n] = 0;
    }
}

static void check_sampler_generate(molt_model *m, float temp, float top_p, int top_k,
                                   uint64_t seed) {
    const molt_tokenizer *tok = molt_model_tokenizer(m);
    const char *prompt = "Once upon a time";
    molt_gen_params gp = molt_gen_defaults();
    gp.temperature = temp, gp.top_p = top_p, gp.top_k = top_k, gp.seed = seed;
    gp.max_new_tokens = 80;
    text want = {{0}, 0}, got = {{0}, 0};
    CHECK(molt_generate(ctx, m, prompt, &gp, on_text, &want, NULL) == MOLT_OK, "generate");
    int32_t *ids = NULL;
    size_t n = 0;
    molt_model_info info;
    molt_model_get_info(m, &info);
    int V = info.vocab;
    float *lg = malloc(sizeof(float) * (size_t)V);
    molt_slots *sl = NULL;
    molt_sampler *smp = NULL;
    molt_sampler_params sp = {temp, top_p, top_k, 0.0f, 1.0f, seed};
    CHECK(molt_tokenize(ctx, tok, prompt, strlen(prompt), 1, &ids, &n) == MOLT_OK, "tokenize");
    CHECK(molt_slots_new(ctx, m, 1, 0, &sl) == MOLT_OK, "slots");
    CHECK(molt_sampler_new(ctx, V, &sp, &smp) == MOLT_OK, "sampler: %s", molt_last_error(ctx));
    if (!ids || !lg || !sl || !smp)
        goto out;
    for (size_t i = 1; i < n; i++) // the prompt, as molt_generate streams it
        got.n += molt_token_piece(tok, ids[i - 1], ids[i], got.s + got.n, sizeof got.s - got.n);
    molt_slot_prefill(ctx, sl, 0, ids, (int32_t)n, 0, lg);
    int32_t prev = ids[n - 1], slot = 0;
    for (int i = 0; i < 80; i++) {
        int32_t t = molt_sampler_next(smp, lg);
        if (t == molt_tokenizer_eos(tok) || t == molt_tokenizer_bos(tok))
            break;
        got.n += molt_token_piece(tok, prev, t, got.s + got.n, sizeof got.s - got.n);
        prev = t;
        molt_slots_feed(ctx, sl, 1, &slot, &t, lg);
    }
    got.s[got.n] = 0;
    CHECK(got.n == want.n && !memcmp(got.s, want.s, got.n),
          "t %g top_p %g top_k %d seed %llu: molt_sampler text differs from molt_generate:\n%s\n"
          "vs\n%s",
          (double)temp, (double)top_p, top_k, (unsigned long long)seed, got.s, want.s);
out:
    molt_free(ids);
    free(lg);
    molt_slots_free(sl);
    molt_sampler_free(smp);
}

static void check_sampler(void) {
    molt_model *m = NULL;
    const char *path = t_shared("models/stories260K/stories260K.bin");
    CHECK(molt_model_load(ctx, path, NULL, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (!m)
        return;
    check_sampler_generate(m, 0.0f, 1.0f, 0, 1);
    check_sampler_generate(m, 0.8f, 1.0f, 0, 3);
    check_sampler_generate(m, 1.0f, 0.9f, 0, 11);
    check_sampler_generate(m, 0.7f, 1.0f, 20, 5);
    molt_model_free(m);
    // min_p 1: only the top token survives, whatever the draw
    float lg[6];
    molt_sampler *s = NULL;
    molt_sampler_params p = {1.0f, 1.0f, 0, 1.0f, 1.0f, 9};
    CHECK(molt_sampler_new(ctx, 6, &p, &s) == MOLT_OK, "sampler");
    int top = 1;
    for (int i = 0; s && i < 50; i++) {
        float x[6] = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f, 1.99f};
        memcpy(lg, x, sizeof x);
        top &= molt_sampler_next(s, lg) == 1;
    }
    CHECK(top, "min_p 1 must keep only the most likely token");
    molt_sampler_free(s);
    // repetition penalty 1e3 on token 1 (seen): greedy picks token 2
    p = (molt_sampler_params){0.0f, 1.0f, 0, 0.0f, 1000.0f, 9};
    CHECK(molt_sampler_new(ctx, 6, &p, &s) == MOLT_OK, "sampler");
    int32_t seen = 1;
    float x[6] = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f, 1.5f};
    if (s) {
        CHECK(molt_sampler_next(s, x) == 1, "greedy before the penalty");
        memcpy(x, (float[6]){0.1f, 2.0f, 1.9f, -1.0f, 0.5f, 1.5f}, sizeof x);
        molt_sampler_accept(s, &seen, 1);
        CHECK(molt_sampler_next(s, x) == 2, "the penalty moves greedy off a seen token");
        x[0] = NAN;
        CHECK(molt_sampler_next(s, x) == -1, "NaN logits give -1");
    }
    molt_sampler_free(s);
    molt_sampler_params badp[] = {{-1, 1, 0, 0, 1, 0}, {1, -0.5f, 0, 0, 1, 0},
                                  {1, 1, -2, 0, 1, 0}, {1, 1, 0, 1.5f, 1, 0},
                                  {1, 1, 0, 0, 0, 0},  {NAN, 1, 0, 0, 1, 0}};
    for (size_t i = 0; i < sizeof badp / sizeof badp[0]; i++) {
        s = NULL;
        CHECK(molt_sampler_new(ctx, 6, &badp[i], &s) == MOLT_ERR_ARG && !s,
              "bad sampler parameters %zu must be refused", i);
    }
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    for (int i = 0; i < TM_N_ARCH_CFGS; i++)
        check_snapshots(tm_arch_cfgs[i][0], tm_arch_cfgs[i][1]);
    check_sampler();
    molt_ctx_free(ctx);
    return t_done("test_serve_api");
}
