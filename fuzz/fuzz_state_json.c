/*
 * fuzz_state_json.c — a checkpoint's state.json parser (ckpt_state_parse):
 * any bytes must give MOLT_OK or a clean error, never a crash or a leak; a
 * parsed state holds only plain file names, and the settings it points at
 * are strings.
 */
#include "train/checkpoint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    molt_ctx  *ctx = molt_ctx_new();
    ckpt_state s;
    if (ckpt_state_parse(ctx, "fuzz", (const char *)data, size, &s) == MOLT_OK) {
        if (s.n_files < 3 || s.n_files > CKPT_MAX_FILES || !s.settings)
            abort();
        for (int i = 0; i < s.n_files; i++)
            if (!s.file[i][0] || s.file[i][0] == '.' || strchr(s.file[i], '/'))
                abort();
        const cJSON *it;
        cJSON_ArrayForEach(it, s.settings) if (!cJSON_IsString(it)) abort();
        ckpt_state_free(&s);
    }
    molt_ctx_free(ctx);
    return 0;
}
