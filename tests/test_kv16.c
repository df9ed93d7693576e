/*
 * test_kv16.c — the f16 KV cache at the model level (molt_model_set_kv_dtype;
 * issue 15). The ops are tested in test_backend_ops.c; here:
 *   - memory: the slots' state and kv_bytes_per_token halve (the caches'
 *     rows padded to 16), a recurrent model's state does not change;
 *   - the default stays f32, an unknown type is refused, and a sequence or
 *     slots laid out under one type refuse to run under the other;
 *   - random Llama and hybrid (attention | hybrid | ssm layers) models: f16
 *     logits close to f32's (prefill and step by step); slots with f16 caches:
 *     batch == single (each row as a lone molt_seq, greedy tokens too), fork
 *     == the original bit for bit, save / load round-trips;
 *   - stories260K: 200 greedy tokens with the f16 cache against f32 (how many
 *     agree, and teacher-forced argmax agreement), and the held-out loss of
 *     TinyStories' validation head (shared/, skipped without it), f16 − f32.
 */
#include "kernels/kernels.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

static const char *const LLAMA =
    "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
    " \"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"intermediate_size\": 96,"
    " \"vocab_size\": 97, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5}";
static const char *const HYBRID =
    "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 64, \"n_layer\": 3,"
    " \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 96}, \"ssm_cfg\":"
    " {\"d_state\": 16, \"n_v_heads\": 8, \"n_qk_heads\": 4, \"chunk_size\": 8},"
    " \"attn_cfg\": {\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"head_dim\": 8},"
    " \"layers\": [{\"mixer\": \"attention\"}, {\"mixer\": \"hybrid\", \"attention_heads\":"
    " [1, 3]}, {\"mixer\": \"ssm\"}]}";
static const char *const MAMBA2 =
    "{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
    " \"vocab_size\": 97, \"layer_norm_epsilon\": 1e-5, \"num_heads\": 8, \"head_dim\": 16,"
    " \"state_size\": 16, \"expand\": 2, \"n_groups\": 2, \"conv_kernel\": 4, \"chunk_size\": 8,"
    " \"use_bias\": false, \"use_conv_bias\": true}";

#define NS 4
#define CAP 100

static int64_t slot_bytes(molt_model *m, int cap) {
    molt_slots *s = NULL;
    int64_t     b = -1;
    if (molt_slots_new(ctx, m, 1, cap, &s) == MOLT_OK)
        b = molt_slots_state_bytes(s);
    molt_slots_free(s);
    return b;
}

static void check_api(void) {
    molt_model *m = tm_random_model(ctx, LLAMA, 3, 0.05f);
    if (!m)
        return;
    CHECK(m->kv_dt == MOLT_F32, "the default KV cache is f32");
    CHECK(molt_model_set_kv_dtype(ctx, m, "bf16") == MOLT_ERR_ARG &&
              molt_model_set_kv_dtype(ctx, m, "q8_0") == MOLT_ERR_ARG &&
              molt_model_set_kv_dtype(ctx, m, NULL) == MOLT_ERR_ARG && m->kv_dt == MOLT_F32,
          "only f32 / f16 KV caches");
    molt_model_info a, b;
    molt_model_get_info(m, &a);
    int64_t s32 = slot_bytes(m, 96);
    CHECK(molt_model_set_kv_dtype(ctx, m, "f16") == MOLT_OK, "f16: %s", molt_last_error(ctx));
    molt_model_get_info(m, &b);
    int64_t s16 = slot_bytes(m, 96); // 96 = 6·16: no padding, exactly half
    CHECK(b.kv_bytes_per_token * 2 == a.kv_bytes_per_token && s16 * 2 == s32,
          "f16 halves the cache: %lld vs %lld bytes a token, slot %lld vs %lld",
          (long long)b.kv_bytes_per_token, (long long)a.kv_bytes_per_token, (long long)s16,
          (long long)s32);
    // a sequence laid out under f16 refuses to run under f32, and runs again under f16
    molt_seq *s = NULL;
    int32_t   ids[3] = {1, 2, 3};
    CHECK(molt_seq_new(ctx, m, 16, &s) == MOLT_OK, "seq: %s", molt_last_error(ctx));
    molt_model_set_kv_dtype(ctx, m, "f32");
    CHECK(s && molt_seq_feed(ctx, s, ids, 3, 0, NULL) == MOLT_ERR_ARG &&
              strstr(molt_last_error(ctx), "KV-cache type"),
          "a sequence of the other KV type is refused (%s)", molt_last_error(ctx));
    molt_slots *sl = NULL;
    CHECK(molt_slots_new(ctx, m, 2, 16, &sl) == MOLT_OK, "slots: %s", molt_last_error(ctx));
    molt_model_set_kv_dtype(ctx, m, "f16");
    CHECK(molt_seq_feed(ctx, s, ids, 3, 0, NULL) == MOLT_OK, "f16 again: %s",
          molt_last_error(ctx));
    CHECK(sl && molt_slot_prefill(ctx, sl, 0, ids, 3, 0, NULL) == MOLT_ERR_ARG &&
              molt_slot_copy(ctx, sl, 0, 1) == MOLT_ERR_ARG,
          "slots of the other KV type are refused");
    molt_slots_free(sl);
    molt_seq_free(s);
    // a backend without the f16 ops (CUDA today) refuses f16 with a clear error
    molt_backend        nokv = molt_backend_cpu;
    const molt_backend *be = m->be;
    nokv.name = "nokv16";
    nokv.attn_decode_rows_f16 = NULL;
    m->be = &nokv;
    m->kv_dt = MOLT_F32;
    CHECK(molt_model_set_kv_dtype(ctx, m, "f16") == MOLT_ERR_UNSUPPORTED &&
              strstr(molt_last_error(ctx), "nokv16") && m->kv_dt == MOLT_F32,
          "f16 refused on a backend without its ops (%s)", molt_last_error(ctx));
    CHECK(molt_model_set_kv_dtype(ctx, m, "f32") == MOLT_OK, "f32 runs there");
    m->be = be;
    molt_model_free(m);
    // a recurrent model has no cache: nothing changes
    molt_model *r = tm_random_model(ctx, MAMBA2, 3, 0.05f);
    if (r) {
        int64_t x = slot_bytes(r, 64);
        CHECK(molt_model_set_kv_dtype(ctx, r, "f16") == MOLT_OK && slot_bytes(r, 64) == x,
              "mamba2: the state does not depend on the KV type");
        molt_model_free(r);
    }
}

// logits [n, V] of ids from an empty state under KV type kv
static float *logits_kv(molt_model *m, const char *kv, const int32_t *ids, int n, bool step) {
    molt_model_set_kv_dtype(ctx, m, kv);
    return tm_logits(ctx, m, ids, n, step);
}

static void check_model(const char *name, const char *json) {
    molt_model *m = tm_random_model(ctx, json, 7, 0.05f);
    if (!m)
        return;
    int     V = m->cfg.vocab, n = 70; // several prefill chunks' worth of keys, 16-row blocks
    int32_t ids[70];
    t_seed(5);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    // f16 vs f32: close (keys and values rounded to 11 significant bits)
    for (int step = 0; step < 2; step++) {
        float *a = logits_kv(m, "f32", ids, n, step), *b = logits_kv(m, "f16", ids, n, step);
        double d = a && b ? t_rel_diff(b, a, (size_t)n * V) : 1.0;
        CHECK(d < 5e-3, "%s %s: f16 logits vs f32 rel diff %.3g", name,
              step ? "stepwise" : "prefill", d);
        printf("%s %s: f16 vs f32 cache, logits rel diff %.2e\n", name,
               step ? "stepwise" : "prefill", d);
        free(a), free(b);
    }
    // slots with f16 caches: each row as a lone sequence, forks, snapshots
    molt_model_set_kv_dtype(ctx, m, "f16");
    molt_slots *sl = NULL;
    molt_seq   *seq[NS] = {0};
    CHECK(molt_slots_new(ctx, m, NS, CAP, &sl) == MOLT_OK, "slots: %s", molt_last_error(ctx));
    for (int i = 0; i < NS; i++)
        CHECK(molt_seq_new(ctx, m, CAP, &seq[i]) == MOLT_OK, "seq: %s", molt_last_error(ctx));
    float *lb = malloc(sizeof(float) * NS * V), *ls = malloc(sizeof(float) * (size_t)V);
    int32_t slot[NS], next[NS];
    for (int i = 0; sl && i < NS; i++) {
        int np = 1 + 17 * i; // ragged, across 16-row blocks
        CHECK(molt_slot_prefill(ctx, sl, i, ids, np, 0, lb) == MOLT_OK, "prefill: %s",
              molt_last_error(ctx));
        molt_seq_feed(ctx, seq[i], ids, np, 0, ls);
        CHECK(t_rel_diff(lb, ls, (size_t)V) == 0.0, "%s f16: slot %d prefill differs", name, i);
        slot[i] = i, next[i] = t_argmax(ls, V);
    }
    double worst = 0;
    int    same = 0;
    for (int t = 0; sl && t < 20; t++) {
        CHECK(molt_slots_feed(ctx, sl, NS, slot, next, lb) == MOLT_OK, "feed: %s",
              molt_last_error(ctx));
        for (int i = 0; i < NS; i++) {
            molt_seq_feed(ctx, seq[i], &next[i], 1, 0, ls);
            double d = t_rel_diff(lb + (size_t)i * V, ls, (size_t)V);
            worst = d > worst ? d : worst;
            int g = t_argmax(lb + (size_t)i * V, V);
            same += g == t_argmax(ls, V);
            next[i] = g;
        }
    }
    CHECK(worst < 1e-4 && same == 20 * NS, "%s f16: batch vs single rel diff %.3g, %d/%d greedy",
          name, worst, same, 20 * NS);
    // fork: slot 3 copied into slot 0 continues exactly as slot 3
    if (sl) {
        CHECK(molt_slot_copy(ctx, sl, 3, 0) == MOLT_OK, "copy: %s", molt_last_error(ctx));
        int32_t two[2] = {0, 3}, tok[2] = {5, 5};
        float  *l2 = malloc(sizeof(float) * 2 * V);
        CHECK(molt_slots_feed(ctx, sl, 2, two, tok, l2) == MOLT_OK, "feed after fork");
        CHECK(memcmp(l2, l2 + V, sizeof(float) * V) == 0, "%s f16: a fork continues as the "
              "original, bit for bit", name);
        // save slot 3, load it into slot 1: the same next logits
        size_t need = molt_slot_save_bytes(sl, 3), len = 0;
        void  *buf = malloc(need);
        CHECK(molt_slot_save(ctx, sl, 3, buf, need, &len) == MOLT_OK && len == need, "save: %s",
              molt_last_error(ctx));
        CHECK(molt_slot_load(ctx, sl, 1, buf, len) == MOLT_OK, "load: %s", molt_last_error(ctx));
        int32_t pair[2] = {1, 3};
        CHECK(molt_slots_feed(ctx, sl, 2, pair, tok, l2) == MOLT_OK, "feed after load");
        CHECK(memcmp(l2, l2 + V, sizeof(float) * V) == 0, "%s f16: a loaded snapshot continues "
              "as the original", name);
        free(buf), free(l2);
    }
    for (int i = 0; i < NS; i++)
        molt_seq_free(seq[i]);
    molt_slots_free(sl);
    free(lb), free(ls);
    molt_model_free(m);
}

// greedy tokens from BOS: out[n]
static void greedy(molt_model *m, int32_t bos, int32_t *out, int n) {
    molt_seq *s = NULL;
    int       V = m->cfg.vocab;
    float    *lg = malloc(sizeof(float) * (size_t)V);
    CHECK(molt_seq_new(ctx, m, n + 2, &s) == MOLT_OK, "seq: %s", molt_last_error(ctx));
    int32_t t = bos;
    for (int i = 0; s && i < n; i++) {
        molt_seq_feed(ctx, s, &t, 1, 0, lg);
        out[i] = t = t_argmax(lg, V);
    }
    molt_seq_free(s);
    free(lg);
}

static void check_stories(void) {
    char text[4096];
    molt_model *m = tm_load_stories(ctx, "stories260K f16 cache");
    if (!m)
        return;
    enum { N = 200 };
    int32_t a[N], b[N], bos = molt_tokenizer_bos(molt_model_tokenizer(m));
    molt_model_set_kv_dtype(ctx, m, "f32");
    greedy(m, bos, a, N);
    molt_model_set_kv_dtype(ctx, m, "f16");
    greedy(m, bos, b, N);
    int first = N, agree = 0;
    for (int i = 0; i < N; i++) {
        agree += a[i] == b[i];
        if (a[i] != b[i] && first == N)
            first = i;
    }
    // teacher-forced: f16's argmax along f32's greedy sequence
    int32_t seq[N + 1];
    seq[0] = bos;
    memcpy(seq + 1, a, sizeof a);
    float *lf = tm_logits(ctx, m, seq, N, true);
    int    forced = 0;
    for (int i = 0; lf && i < N; i++)
        forced += t_argmax(lf + (size_t)i * m->cfg.vocab, m->cfg.vocab) == a[i];
    free(lf);
    printf("stories260K greedy, f16 vs f32 cache: %d of %d tokens agree (first difference: %d, "
           "%d = none); teacher-forced argmax agreement %d of %d\n",
           agree, N, first, N, forced, N);
    CHECK(forced >= N - 4, "f16 cache: teacher-forced argmax agrees on %d of %d", forced, N);
    // held-out loss
    snprintf(text, sizeof text, "%s", t_shared("data/tinystories/tinystories_v1_valid_head.txt"));
    size_t len = 0;
    char  *txt = t_have(text, "held-out loss") ? t_read_file(text, &len) : NULL;
    if (txt) {
        int32_t *ids = NULL;
        size_t   n = 0;
        size_t   use = len < 60000 ? len : 60000;
        CHECK(molt_tokenize(ctx, molt_model_tokenizer(m), txt, use, 1, &ids, &n) == MOLT_OK,
              "tokenize: %s", molt_last_error(ctx));
        molt_eval_result r32 = {0}, r16 = {0};
        molt_model_set_kv_dtype(ctx, m, "f32");
        molt_eval_tokens(ctx, m, ids, n, 256, NULL, NULL, &r32);
        molt_model_set_kv_dtype(ctx, m, "f16");
        molt_eval_tokens(ctx, m, ids, n, 256, NULL, NULL, &r16);
        printf("stories260K held-out loss (%lld tokens, window 256): f32 cache %.6f, f16 %.6f, "
               "difference %+.2e nats\n",
               (long long)r32.tokens, r32.loss, r16.loss, r16.loss - r32.loss);
        CHECK(r32.tokens > 1000 && r16.tokens == r32.tokens &&
                  fabs(r16.loss - r32.loss) < 1e-3 * r32.loss,
              "f16 cache held-out loss %.6f vs f32 %.6f", r16.loss, r32.loss);
        molt_free(ids);
        free(txt);
    }
    molt_model_free(m);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, getenv("MOLT_TEST_THREADS") ? atoi(getenv("MOLT_TEST_THREADS")) : 2);
    check_api();
    check_model("llama", LLAMA);
    check_model("hybrid", HYBRID);
    check_stories();
    molt_ctx_free(ctx);
    return t_done("test_kv16");
}
