/*
 * jsonout.c — see jsonout.h.
 */
#include "jsonout.h"

#include "molt.h"

#include <math.h>
#include <stdlib.h>

cJSON *jo_num_item(const char *fmt, double v) {
    if (!isfinite(v))
        return cJSON_CreateNull();
    char b[64];
    snprintf(b, sizeof b, fmt, v);
    return cJSON_CreateNumber(strtod(b, NULL));
}

void jo_num(cJSON *obj, const char *key, const char *fmt, double v) {
    cJSON_AddItemToObject(obj, key, jo_num_item(fmt, v));
}

void jo_int(cJSON *obj, const char *key, long long v) {
    cJSON_AddNumberToObject(obj, key, (double)v);
}

void jo_str(cJSON *obj, const char *key, const char *s) {
    if (s)
        cJSON_AddStringToObject(obj, key, s);
    else
        cJSON_AddNullToObject(obj, key);
}

bool jo_print(FILE *f, cJSON *root, bool pretty) {
    char *s = root ? (pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root)) : NULL;
    cJSON_Delete(root);
    if (!s)
        return false;
    fprintf(f, "%s\n", s);
    cJSON_free(s);
    return true;
}

bool jo_train_summary(const molt_train_report *r, const char *out_dir) {
    cJSON *o = cJSON_CreateObject();
    jo_int(o, "steps", (long long)r->step);
    jo_int(o, "tokens", (long long)r->tokens);
    jo_num(o, "loss", "%.6f", r->loss);
    jo_num(o, "eval_loss", "%.6f", r->eval_loss);
    jo_num(o, "tok_per_s", "%.1f", r->tok_per_s);
    jo_num(o, "seconds", "%.2f", r->elapsed_s);
    jo_str(o, "out", out_dir);
    return jo_print(stdout, o, false);
}
