/*
 * test_reason.c — molt_chains (include/molt.h "reasoning") on stories260K:
 *   - chain j of a batch of K is molt_generate run alone with seed S + j:
 *     the same text, byte for byte (no stop strings, 60 tokens, t 0.8), and a
 *     second batch (seed S + K) continues the numbering;
 *   - drawing again with the same seed repeats the texts (the forked slots
 *     start from the prompt every time);
 *   - a stop string cuts each text at its first occurrence, exactly where
 *     the unstopped text has it; EOS/max_new bound the token counts;
 *   - greedy (t 0) chains are all equal; bad arguments are refused.
 */
#include "molt.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

typedef struct text {
    char  *s;
    size_t n;
} text;

static void collect(const char *piece, size_t len, void *user) {
    text *t = user;
    t->s = realloc(t->s, t->n + len + 1);
    memcpy(t->s + t->n, piece, len);
    t->n += len;
    t->s[t->n] = '\0';
}

// molt_generate's continuation (its text minus the prompt's pieces)
static char *generate_alone(molt_ctx *ctx, molt_model *m, const char *prompt, uint64_t seed,
                            int n_new, float temp) {
    molt_gen_params gp = molt_gen_defaults();
    gp.temperature = temp, gp.top_p = 0.9f, gp.seed = seed, gp.max_new_tokens = 0;
    text head = {0}, all = {0};
    CHECK(molt_generate(ctx, m, prompt, &gp, collect, &head, NULL) == MOLT_OK, "%s",
          molt_last_error(ctx));
    gp.max_new_tokens = n_new;
    CHECK(molt_generate(ctx, m, prompt, &gp, collect, &all, NULL) == MOLT_OK, "%s",
          molt_last_error(ctx));
    CHECK(all.n >= head.n && (!head.n || !memcmp(all.s, head.s, head.n)), "prompt pieces first");
    char *out = strdup(all.s ? all.s + head.n : "");
    free(head.s);
    free(all.s);
    return out;
}

int main(void) {
    const char *path = t_shared("models/stories260K/stories260K.bin");
    if (!t_exists(path))
        return t_skip("test_reason", "needs models/stories260K/stories260K.bin");
    molt_ctx   *ctx = molt_ctx_new();
    molt_model *m = NULL;
    if (molt_model_load(ctx, path, NULL, &m) != MOLT_OK) {
        fprintf(stderr, "%s\n", molt_last_error(ctx));
        return 1;
    }
    const char     *prompt = "Question: Lily has 3 red balls. How many balls?\nAnswer:";
    enum { K = 4, N = 60 };
    molt_chains    *ch = NULL;
    CHECK(molt_chains_new(ctx, m, prompt, K, N, &ch) == MOLT_OK, "%s", molt_last_error(ctx));
    CHECK(molt_chains_prompt_tokens(ch) > 5, "prompt tokens %d", molt_chains_prompt_tokens(ch));
    molt_gen_params gp = molt_gen_defaults();
    gp.temperature = 0.8f, gp.top_p = 0.9f, gp.seed = 7;
    char   *t1[K], *t2[K], *t3[K];
    int32_t n1[K], n2[K], n3[K];
    CHECK(molt_chains_draw(ctx, ch, &gp, NULL, 0, t1, n1) == MOLT_OK, "%s", molt_last_error(ctx));
    CHECK(molt_chains_draw(ctx, ch, &gp, NULL, 0, t2, n2) == MOLT_OK, "%s", molt_last_error(ctx));
    gp.seed = 7 + K;
    CHECK(molt_chains_draw(ctx, ch, &gp, NULL, 0, t3, n3) == MOLT_OK, "%s", molt_last_error(ctx));
    int distinct = 0;
    for (int j = 0; j < K; j++) {
        char *a = generate_alone(ctx, m, prompt, 7 + (uint64_t)j, N, 0.8f);
        char *b = generate_alone(ctx, m, prompt, 7 + K + (uint64_t)j, N, 0.8f);
        CHECK(!strcmp(t1[j], a), "chain %d != molt_generate -s %d:\n[%s]\n[%s]", j, 7 + j, t1[j],
              a);
        CHECK(!strcmp(t3[j], b), "batch 2 chain %d != molt_generate -s %d", j, 7 + K + j);
        CHECK(!strcmp(t1[j], t2[j]) && n1[j] == n2[j], "chain %d: a second draw differs", j);
        CHECK(n1[j] >= 1 && n1[j] <= N && strlen(t1[j]) > 0, "chain %d: %d tokens", j, n1[j]);
        distinct += j > 0 && strcmp(t1[j], t1[0]);
        free(a);
        free(b);
    }
    CHECK(distinct == K - 1, "chains differ from chain 0: %d of %d", distinct, K - 1);
    // stop strings: each text is the unstopped one cut at the first " the" or "."
    const char *stop[] = {" the", "."};
    gp.seed = 7;
    char   *ts[K];
    int32_t ns[K];
    CHECK(molt_chains_draw(ctx, ch, &gp, stop, 2, ts, ns) == MOLT_OK, "%s", molt_last_error(ctx));
    int cut = 0;
    for (int j = 0; j < K; j++) {
        char  *p1 = strstr(t1[j], " the"), *p2 = strstr(t1[j], ".");
        char  *p = p1 && (!p2 || p1 < p2) ? p1 : p2;
        size_t want = p ? (size_t)(p - t1[j]) : strlen(t1[j]);
        CHECK(strlen(ts[j]) == want && !strncmp(ts[j], t1[j], want),
              "chain %d stopped: [%s] want the first %zu bytes of [%s]", j, ts[j], want, t1[j]);
        CHECK(ns[j] <= n1[j], "chain %d: %d tokens with stops, %d without", j, ns[j], n1[j]);
        cut += ns[j] < n1[j];
    }
    CHECK(cut > 0, "the stop strings stopped no chain early");
    // greedy: every chain the same
    gp.temperature = 0.0f;
    char   *tg[K];
    int32_t ng[K];
    CHECK(molt_chains_draw(ctx, ch, &gp, NULL, 0, tg, ng) == MOLT_OK, "%s", molt_last_error(ctx));
    for (int j = 1; j < K; j++)
        CHECK(!strcmp(tg[j], tg[0]), "greedy chain %d differs", j);
    char *g0 = generate_alone(ctx, m, prompt, 99, N, 0.0f);
    CHECK(!strcmp(tg[0], g0), "greedy chain != greedy molt_generate");
    free(g0);
    for (int j = 0; j < K; j++) {
        molt_free(t1[j]), molt_free(t2[j]), molt_free(t3[j]), molt_free(ts[j]), molt_free(tg[j]);
    }
    gp.temperature = -1.0f;
    CHECK(molt_chains_draw(ctx, ch, &gp, NULL, 0, tg, ng) == MOLT_ERR_ARG, "negative temperature");
    molt_chains_free(ch);
    molt_chains *bad = NULL;
    CHECK(molt_chains_new(ctx, m, prompt, 0, N, &bad) == MOLT_ERR_ARG && !bad, "k 0");
    CHECK(molt_chains_new(ctx, m, "", K, N, &bad) == MOLT_ERR_ARG && !bad, "empty prompt");
    // a prompt longer than the context
    size_t big = 40000;
    char  *lp = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        lp[i] = "ab "[i % 3];
    lp[big] = '\0';
    CHECK(molt_chains_new(ctx, m, lp, K, N, &bad) == MOLT_ERR_ARG && !bad, "prompt too long");
    free(lp);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return t_done("test_reason");
}
