/*
 * json.h — thin helpers over cJSON for config readers (config.json,
 * safetensors headers, index files). Every error names the file ("what") and
 * the key. Conventions for the getters:
 *   - key absent or JSON null: required → MOLT_ERR_MISSING, else *out = def;
 *   - wrong JSON type, or a number out of range / not whole → MOLT_ERR_FORMAT.
 *
 * cJSON allocates through molt__malloc/molt__free once js_init_hooks() ran
 * (js_parse runs it). Every cJSON tree in molt must be made and deleted after
 * that call, so that it is freed by the allocator that made it.
 */
#ifndef MOLT_JSON_H
#define MOLT_JSON_H

#include "core/core.h"

#include <cJSON.h>

// Points cJSON at molt's allocator. Idempotent; call before any cJSON use.
void js_init_hooks(void);

// Parses len bytes of text (NUL not required). Trailing non-whitespace is an
// error. NULL on failure with ctx holding MOLT_ERR_FORMAT ("what: invalid JSON
// at line L, byte B: ...") or MOLT_ERR_OOM. Free with cJSON_Delete.
cJSON      *js_parse(molt_ctx *ctx, const char *what, const char *text, size_t len);
// Same, returning the status.
molt_status js_parse_status(molt_ctx *ctx, const char *what, const char *text, size_t len,
                            cJSON **out);

// A whole number in [lo, hi].
molt_status js_get_int(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, int64_t lo, int64_t hi, int64_t def, int64_t *out);
// A number, or transformers 5's {"__float__": "Infinity" | "-Infinity" | "NaN"}.
molt_status js_get_float(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                         int required, double def, double *out);
molt_status js_get_bool(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                        int required, bool def, bool *out);
// *out points into the cJSON tree (or is def).
molt_status js_get_str(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, const char *def, const char **out);
// An object / array member (*out NULL when absent and not required).
molt_status js_get_obj(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, const cJSON **out);
molt_status js_get_arr(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, const cJSON **out);

// Building a tree without losing a key: js_build_begin() starts; js_put
// attaches item to parent (under key, or at the end of an array when key is
// NULL) or deletes it; js_build_failed() says whether any cJSON allocation or
// js_put failed since the start (cJSON's Add* functions drop an item without
// a word when memory runs out). Per thread.
void   js_build_begin(void);
cJSON *js_put(cJSON *parent, const char *key, cJSON *item);
bool   js_build_failed(void);

// Value of a number item as a whole number in [lo, hi] (false otherwise).
bool js_whole(const cJSON *item, int64_t lo, int64_t hi, int64_t *out);
// Value of a float item (number or {"__float__": ...}); false when neither.
bool js_float_value(const cJSON *item, double *out);

#endif // MOLT_JSON_H
