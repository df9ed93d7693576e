/*
 * json.c — see json.h. cJSON's hooks take malloc/free signatures, so two
 * wrappers forward to molt__malloc/molt__free; the malloc wrapper also notes
 * a failed allocation so that js_parse can tell "out of memory" from "invalid
 * JSON" (cJSON reports both as a NULL tree).
 */
#include "io/json.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// allocator hooks

static _Thread_local bool g_oom; // an allocation failed since the last reset

static void *js_malloc(size_t n) {
    void *p = molt__malloc(n);
    if (!p)
        g_oom = true;
    return p;
}
static void js_free(void *p) { molt__free(p); }

void js_init_hooks(void) {
    static bool done;
    if (done)
        return;
    cJSON_Hooks h = {js_malloc, js_free};
    cJSON_InitHooks(&h);
    done = true;
}

// ----------------------------------------------------------------------------
// parsing

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Formats the failure position (1-based line, byte offset) and a short,
// printable excerpt of the text there.
static molt_status parse_error(molt_ctx *ctx, const char *what, const char *text, size_t len,
                               size_t pos, const char *why) {
    if (pos > len)
        pos = len;
    size_t line = 1;
    for (size_t i = 0; i < pos; i++)
        line += text[i] == '\n';
    char near[24];
    size_t k = 0;
    for (size_t i = pos; i < len && k < sizeof near - 1; i++) {
        unsigned char c = (unsigned char)text[i];
        near[k++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    near[k] = '\0';
    return molt__err(ctx, MOLT_ERR_FORMAT, "%s: %s at line %zu, byte %zu%s%s%s", what, why, line,
                     pos, k ? " near '" : " (end of input)", near, k ? "'" : "");
}

molt_status js_parse_status(molt_ctx *ctx, const char *what, const char *text, size_t len,
                            cJSON **out) {
    *out = NULL;
    js_init_hooks();
    if (len == 0)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: empty JSON text", what);
    const char *end = NULL;
    g_oom = false;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (g_oom) {
        cJSON_Delete(root);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory parsing JSON", what);
    }
    if (!root) {
        size_t pos = end && end >= text ? (size_t)(end - text) : 0;
        return parse_error(ctx, what, text, len, pos, "invalid JSON");
    }
    size_t pos = end && end >= text ? (size_t)(end - text) : len;
    while (pos < len && is_ws(text[pos]))
        pos++;
    if (pos < len) {
        cJSON_Delete(root);
        return parse_error(ctx, what, text, len, pos, "unexpected text after the JSON value");
    }
    *out = root;
    return MOLT_OK;
}

cJSON *js_parse(molt_ctx *ctx, const char *what, const char *text, size_t len) {
    cJSON *root;
    js_parse_status(ctx, what, text, len, &root);
    return root;
}

void js_build_begin(void) {
    js_init_hooks();
    g_oom = false;
}

cJSON *js_put(cJSON *parent, const char *key, cJSON *item) {
    bool done = item && parent &&
                (key ? cJSON_AddItemToObject(parent, key, item)
                     : cJSON_AddItemToArray(parent, item));
    if (!done) {
        cJSON_Delete(item);
        g_oom = true;
        return NULL;
    }
    return item;
}

bool js_build_failed(void) { return g_oom; }

// ----------------------------------------------------------------------------
// values

static const char *type_name(const cJSON *it) {
    if (cJSON_IsNumber(it))
        return "a number";
    if (cJSON_IsString(it))
        return "a string";
    if (cJSON_IsBool(it))
        return "a boolean";
    if (cJSON_IsNull(it))
        return "null";
    if (cJSON_IsArray(it))
        return "an array";
    if (cJSON_IsObject(it))
        return "an object";
    return "invalid";
}

bool js_whole(const cJSON *item, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    // 2^63 bounds keep the cast below defined.
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0) || floor(v) != v)
        return false;
    int64_t i = (int64_t)v;
    if (i < lo || i > hi)
        return false;
    *out = i;
    return true;
}

bool js_float_value(const cJSON *item, double *out) {
    if (cJSON_IsNumber(item)) {
        *out = item->valuedouble;
        return true;
    }
    if (!cJSON_IsObject(item))
        return false;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(item, "__float__");
    if (!cJSON_IsString(f) || !f->valuestring)
        return false;
    const char *s = f->valuestring;
    if (strcmp(s, "Infinity") == 0)
        *out = (double)INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *out = -(double)INFINITY;
    else if (strcmp(s, "NaN") == 0)
        *out = (double)NAN;
    else
        return false;
    return true;
}

// Looks key up; absent and JSON null both count as missing.
static molt_status lookup(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                          int required, const cJSON **item) {
    *item = NULL;
    if (!cJSON_IsObject(obj))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: expected a JSON object holding '%s'", what,
                         key);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (it && !cJSON_IsNull(it)) {
        *item = it;
        return MOLT_OK;
    }
    if (required)
        return molt__err(ctx, MOLT_ERR_MISSING, "%s: required key '%s' is missing", what, key);
    return MOLT_OK;
}

molt_status js_get_int(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, int64_t lo, int64_t hi, int64_t def, int64_t *out) {
    const cJSON *it;
    molt_status s = lookup(ctx, what, obj, key, required, &it);
    if (s != MOLT_OK)
        return s;
    if (!it) {
        *out = def;
        return MOLT_OK;
    }
    if (!js_whole(it, lo, hi, out)) {
        if (cJSON_IsNumber(it))
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "%s: key '%s' must be a whole number in [%lld, %lld], got %.17g",
                             what, key, (long long)lo, (long long)hi, it->valuedouble);
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: key '%s' must be an integer, got %s", what,
                         key, type_name(it));
    }
    return MOLT_OK;
}

molt_status js_get_float(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                         int required, double def, double *out) {
    const cJSON *it;
    molt_status s = lookup(ctx, what, obj, key, required, &it);
    if (s != MOLT_OK)
        return s;
    if (!it) {
        *out = def;
        return MOLT_OK;
    }
    if (!js_float_value(it, out))
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: key '%s' must be a number or {\"__float__\": \"Infinity\"|"
                         "\"-Infinity\"|\"NaN\"}, got %s",
                         what, key, type_name(it));
    return MOLT_OK;
}

molt_status js_get_bool(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                        int required, bool def, bool *out) {
    const cJSON *it;
    molt_status s = lookup(ctx, what, obj, key, required, &it);
    if (s != MOLT_OK)
        return s;
    if (!it) {
        *out = def;
        return MOLT_OK;
    }
    if (!cJSON_IsBool(it))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: key '%s' must be true or false, got %s",
                         what, key, type_name(it));
    *out = cJSON_IsTrue(it);
    return MOLT_OK;
}

molt_status js_get_str(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, const char *def, const char **out) {
    const cJSON *it;
    molt_status s = lookup(ctx, what, obj, key, required, &it);
    if (s != MOLT_OK)
        return s;
    if (!it) {
        *out = def;
        return MOLT_OK;
    }
    if (!cJSON_IsString(it) || !it->valuestring)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: key '%s' must be a string, got %s", what,
                         key, type_name(it));
    *out = it->valuestring;
    return MOLT_OK;
}

static molt_status get_typed(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                             int required, bool want_obj, const cJSON **out) {
    const cJSON *it;
    molt_status s = lookup(ctx, what, obj, key, required, &it);
    *out = NULL;
    if (s != MOLT_OK || !it)
        return s;
    if (want_obj ? !cJSON_IsObject(it) : !cJSON_IsArray(it))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: key '%s' must be %s, got %s", what, key,
                         want_obj ? "an object" : "an array", type_name(it));
    *out = it;
    return MOLT_OK;
}

molt_status js_get_obj(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, const cJSON **out) {
    return get_typed(ctx, what, obj, key, required, true, out);
}

molt_status js_get_arr(molt_ctx *ctx, const char *what, const cJSON *obj, const char *key,
                       int required, const cJSON **out) {
    return get_typed(ctx, what, obj, key, required, false, out);
}
