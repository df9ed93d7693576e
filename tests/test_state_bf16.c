/*
 * test_state_bf16.c — the bf16 recurrent SSM state (molt_model_set_state_dtype,
 * issue 15) at model level, on random tiny Llamba / Mamba-2 / hybrid models and
 * on shared/models/mamba2-random when present:
 *   - state_bytes: the SSM part halves (conv window stays f32);
 *   - greedy decode, 100 tokens after an 8-token prompt (a chunked prefill that
 *     rounds the state it stores), bf16 vs f32 state, teacher-forced on the f32
 *     tokens: argmax agreement and the largest logit difference (reported; the
 *     difference must be nonzero and small);
 *   - slots: batched decode of bf16-state slots equals single-sequence decode
 *     of the bf16 model; a copied slot continues bit-identically;
 *   - bad dtypes are refused.
 */
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

#define PROMPT 8
#define STEPS 100

// the recurrent architectures of testmodel.c's tiny configs (llamba, mamba2, hybrid)
static bool recurrent_cfg(int k) {
    return strcmp(tm_arch_cfgs[k][0], "llama") && strcmp(tm_arch_cfgs[k][0], "llama_odd");
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        b = x[i] > x[b] ? i : b;
    return b;
}

// bytes the SSM states of the model's recurrent layers take in f32
static int64_t ssm_f32_bytes(const molt_model *m) {
    int64_t b = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        if (m->cfg.kind[l] == LAYER_SSM ||
            (m->cfg.kind[l] == LAYER_HYBRID && layer_hybrid_rec(&m->cfg, l) == LAYER_SSM)) {
            const ssm_cfg *s = layer_ssm(&m->cfg, l);
            b += (int64_t)s->H * s->P * s->N * 4;
        }
    return b;
}

// a (f32 state) and b (bf16 state): the same weights
static void check_pair(const char *name, molt_model *a, molt_model *b) {
    molt_model_info ia, ib;
    molt_model_get_info(a, &ia);
    CHECK(molt_model_set_state_dtype(ctx, b, "bf16") == MOLT_OK, "%s: set bf16: %s", name,
          molt_last_error(ctx));
    molt_model_get_info(b, &ib);
    int64_t ssm = ssm_f32_bytes(a);
    CHECK(ssm > 0 && ib.state_bytes == ia.state_bytes - ssm / 2,
          "%s: state_bytes %lld with bf16 state, f32 %lld (SSM part %lld)", name,
          (long long)ib.state_bytes, (long long)ia.state_bytes, (long long)ssm);
    int V = a->cfg.vocab, n = PROMPT + STEPS + 1;
    molt_seq *sa = NULL, *sb = NULL;
    CHECK(molt_seq_new(ctx, a, n, &sa) == MOLT_OK && molt_seq_new(ctx, b, n, &sb) == MOLT_OK,
          "%s: seq: %s", name, molt_last_error(ctx));
    if (!sa || !sb) {
        molt_seq_free(sa), molt_seq_free(sb);
        return;
    }
    int32_t ids[PROMPT + STEPS];
    for (int i = 0; i < PROMPT; i++)
        ids[i] = (i * 37 + 5) % V;
    float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
    CHECK(molt_seq_feed(ctx, sa, ids, PROMPT, 0, la) == MOLT_OK &&
              molt_seq_feed(ctx, sb, ids, PROMPT, 0, lb) == MOLT_OK,
          "%s: prefill: %s", name, molt_last_error(ctx));
    int    agree = 0;
    double worst = 0, scale = 0;
    for (int t = 0; t < STEPS; t++) {
        int ta = argmax(la, V);
        agree += ta == argmax(lb, V);
        for (int v = 0; v < V; v++) {
            worst = fmax(worst, fabs((double)la[v] - (double)lb[v]));
            scale = fmax(scale, fabs((double)la[v]));
        }
        int32_t tk = ta; // teacher-forced on the f32 model's greedy token
        if (molt_seq_feed(ctx, sa, &tk, 1, 0, la) != MOLT_OK ||
            molt_seq_feed(ctx, sb, &tk, 1, 0, lb) != MOLT_OK) {
            CHECK(0, "%s: decode step %d: %s", name, t, molt_last_error(ctx));
            break;
        }
        ids[PROMPT + t] = tk;
    }
    printf("  %-16s state %lld -> %lld bytes; greedy %d/%d tokens agree, max |dlogit| %.3g "
           "(max |logit| %.3g)\n",
           name, (long long)ia.state_bytes, (long long)ib.state_bytes, agree, STEPS, worst,
           scale);
    CHECK(worst > 0, "%s: bf16 state gave the f32 logits bit for bit (not in effect?)", name);
    CHECK(worst <= 0.02 * (1.0 + scale), "%s: bf16 state moved the logits by %.3g", name, worst);
    CHECK(agree >= STEPS * 9 / 10, "%s: only %d/%d greedy tokens agree", name, agree, STEPS);

    // slots of the bf16 model: slot 0 prefilled, copied into slot 1; both fed
    // the same tokens in one batch (bit-identical), and as the lone sequence
    molt_slots *sl = NULL;
    CHECK(molt_slots_new(ctx, b, 2, n, &sl) == MOLT_OK, "%s: slots: %s", name,
          molt_last_error(ctx));
    molt_seq_reset(sb);
    float *l2 = malloc(sizeof(float) * 2 * (size_t)V);
    double bworst = 0;
    int    ok = sl && molt_slot_prefill(ctx, sl, 0, ids, PROMPT, 0, NULL) == MOLT_OK &&
             molt_seq_feed(ctx, sb, ids, PROMPT, 0, NULL) == MOLT_OK &&
             molt_slot_copy(ctx, sl, 0, 1) == MOLT_OK;
    CHECK(ok, "%s: slot prefill / copy: %s", name, molt_last_error(ctx));
    for (int t = 0; ok && t < 20; t++) {
        int32_t slot[2] = {0, 1}, tk[2] = {ids[PROMPT + t], ids[PROMPT + t]};
        ok = molt_slots_feed(ctx, sl, 2, slot, tk, l2) == MOLT_OK &&
             molt_seq_feed(ctx, sb, tk, 1, 0, lb) == MOLT_OK;
        CHECK(ok, "%s: slots feed: %s", name, molt_last_error(ctx));
        CHECK(!ok || memcmp(l2, l2 + V, sizeof(float) * (size_t)V) == 0,
              "%s: the copied bf16 slot differs at step %d", name, t);
        if (ok)
            bworst = fmax(bworst, t_rel_diff(l2, lb, (size_t)V));
    }
    CHECK(bworst < 1e-5, "%s: batched bf16-state decode differs from single by %.3g", name,
          bworst);
    // slots and sequences laid out under bf16 refuse to run once the type is changed back
    // (their states have the other size), and run again when it is restored
    if (ok) {
        int32_t slot[1] = {0}, tk[1] = {ids[0]};
        CHECK(molt_model_set_state_dtype(ctx, b, "f32") == MOLT_OK, "%s: set f32", name);
        CHECK(molt_slots_feed(ctx, sl, 1, slot, tk, l2) == MOLT_ERR_ARG &&
                  molt_seq_feed(ctx, sb, tk, 1, 0, lb) == MOLT_ERR_ARG,
              "%s: a bf16-state slot / sequence ran after the type became f32", name);
        CHECK(molt_model_set_state_dtype(ctx, b, "bf16") == MOLT_OK &&
                  molt_slots_feed(ctx, sl, 1, slot, tk, l2) == MOLT_OK,
              "%s: the slot did not run again under bf16: %s", name, molt_last_error(ctx));
    }
    molt_slots_free(sl);
    free(la), free(lb), free(l2);
    molt_seq_free(sa), molt_seq_free(sb);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    for (int k = 0; k < TM_N_ARCH_CFGS; k++) {
        if (!recurrent_cfg(k))
            continue;
        molt_model *a = tm_random_model(ctx, tm_arch_cfgs[k][1], 7, 0.05f);
        molt_model *b = tm_random_model(ctx, tm_arch_cfgs[k][1], 7, 0.05f);
        CHECK(a && b, "%s: model", tm_arch_cfgs[k][0]);
        if (a && b)
            check_pair(tm_arch_cfgs[k][0], a, b);
        if (b) {
            CHECK(molt_model_set_state_dtype(ctx, b, "f16") == MOLT_ERR_ARG &&
                      molt_model_set_state_dtype(ctx, b, NULL) == MOLT_ERR_ARG,
                  "%s: a bad state dtype was accepted", tm_arch_cfgs[k][0]);
            CHECK(b->cfg.state_dt == MOLT_BF16, "%s: a refused dtype changed the state",
                  tm_arch_cfgs[k][0]);
        }
        molt_model_free(a), molt_model_free(b);
    }
    const char *path = t_shared("models/mamba2-random");
    if (t_have(path, "mamba2-random with bf16 state")) {
        molt_model *a = NULL, *b = NULL;
        CHECK(molt_model_load(ctx, path, NULL, &a) == MOLT_OK &&
                  molt_model_load(ctx, path, NULL, &b) == MOLT_OK,
              "load %s: %s", path, molt_last_error(ctx));
        if (a && b)
            check_pair("mamba2-random", a, b);
        molt_model_free(a), molt_model_free(b);
    }
    molt_ctx_free(ctx);
    return t_done("test_state_bf16");
}
