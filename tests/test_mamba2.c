/*
 * test_mamba2.c — HF Mamba2ForCausalLM parity: mamba2-random's logits equal
 * HF transformers' reference_logits.safetensors to max-abs 1e-4 for every
 * prompt, as one chunked prefill at several chunk sizes (the checkpoint's 16,
 * and 1, 7, 64) and token by token through the recurrent state; and a
 * save → load round trip is bit-exact.
 */
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    char dir[4096], ref[4096];
    snprintf(dir, sizeof dir, "%s", t_shared("models/mamba2-random"));
    snprintf(ref, sizeof ref, "%s", t_shared("models/mamba2-random/reference_logits.safetensors"));
    if (!t_exists(dir)) {
        molt_ctx_free(ctx);
        return t_skip("test_mamba2", "needs shared/models/mamba2-random (not shipped: no license)");
    }
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, dir, NULL, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (!m)
        return t_done("test_mamba2");
    CHECK(layer_ssm(&m->cfg, 0)->chunk == 16, "chunk_size from config.json: %d",
          layer_ssm(&m->cfg, 0)->chunk);
    CHECK(isinf(layer_ssm(&m->cfg, 0)->dt_limit_hi),
          "time_step_limit {\"__float__\": \"Infinity\"}");
    static const int chunks[] = {16, 1, 7, 64};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        for (int l = 0; l < m->cfg.n_layer; l++)
            layer_ssm_mut(&m->cfg, l)->chunk = chunks[i];
        char label[64];
        snprintf(label, sizeof label, "mamba2-random chunk %d", chunks[i]);
        tm_check_reference(ctx, m, ref, 1e-4, label);
    }
    for (int l = 0; l < m->cfg.n_layer; l++)
        layer_ssm_mut(&m->cfg, l)->chunk = 16;
    // save → load: bit-exact weights and logits
    char tmp[] = "/tmp/molt_m2_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, tmp, "f32") == MOLT_OK, "save: %s", molt_last_error(ctx));
    molt_model *m2 = NULL;
    CHECK(molt_model_load(ctx, tmp, NULL, &m2) == MOLT_OK, "reload: %s", molt_last_error(ctx));
    if (m2) {
        CHECK(m2->n_floats == m->n_floats &&
                  memcmp(m2->data, m->data, sizeof(float) * m->n_floats) == 0,
              "saved weights differ");
        int32_t ids[12] = {0, 5, 17, 300, 2, 9, 9, 1000, 44, 12, 7, 3};
        float *a = tm_logits(ctx, m, ids, 12, false), *b = tm_logits(ctx, m2, ids, 12, false);
        CHECK(a && b && memcmp(a, b, sizeof(float) * 12 * (size_t)m->cfg.vocab) == 0,
              "reloaded logits differ");
        free(a);
        free(b);
    }
    molt_model_free(m2);
    tm_rmdir(tmp);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return t_done("test_mamba2");
}
