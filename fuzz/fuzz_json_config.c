/*
 * fuzz_json_config.c — config.json parser: any bytes must give MOLT_OK or a
 * clean error, never a crash or a leak. When a config parses, the model is
 * also allocated (bounded sizes only) so the derived shapes are exercised.
 */
#include "models/model.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    molt_ctx *ctx = molt_ctx_new();
    model_cfg cfg;
    if (model_cfg_from_json(ctx, "fuzz", (const char *)data, size, &cfg) == MOLT_OK) {
        // allocate only small models: the point is the parser, not the allocator
        double floats = (double)cfg.vocab * cfg.d_model + (double)cfg.n_layer * cfg.d_model *
                        (cfg.d_model * 8.0 + cfg.d_ff * 3.0);
        if (floats < 4e6 && (double)cfg.max_seq * cfg.head_dim < 4e6) {
            molt_model *m = NULL;
            if (model_alloc(ctx, &cfg, &m) == MOLT_OK) {
                char *json = NULL;
                if (model_cfg_to_json(ctx, &m->cfg, "float32", &json) == MOLT_OK)
                    molt_free(json);
                molt_model_free(m);
            }
        }
        model_free_cfg(&cfg);
    }
    molt_ctx_free(ctx);
    return 0;
}
