/*
 * serve_chat.c — chat templates of `molt serve` (/v1/chat/completions).
 *
 * molt does not run Jinja: the model directory's tokenizer_config.json "chat_template" (a
 * string, or the "default" entry of a list) is recognised by its markers, and the matching
 * fixed format is rendered:
 *   "<|im_start|>"        ChatML   <|im_start|>ROLE\nCONTENT<|im_end|>\n ...
 *                                  <|im_start|>assistant\n
 *   "<|start_header_id|>" Llama-3  <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
 *                                  ... <|start_header_id|>assistant<|end_header_id|>\n\n
 *   "[INST]"              Llama-2  [INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ANSWER </s>
 *                                  <s>[INST] ... [/INST]
 * Anything else (no file, no template, another template) is the plain format:
 *   SYSTEM\n\n  User: CONTENT\n  Assistant: CONTENT\n ... Assistant:
 * with "\nUser:" as an implicit stop string. BOS comes from the tokenizer (as for completions);
 * markers are written as text, so they become special tokens only where the tokenizer maps that
 * text to them.
 */
#include "serve.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_small(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = malloc(1 << 20);
    size_t n = b ? fread(b, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (b)
        b[n] = 0;
    return b;
}

int srv_chat_detect(const char *model_path) {
    char path[4096];
    const char *slash = strrchr(model_path, '/');
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_path); // a directory
    char *txt = read_small(path);
    if (!txt) { // a file: the one beside it
        int dl = slash ? (int)(slash - model_path) : 1;
        snprintf(path, sizeof path, "%.*s/tokenizer_config.json", dl, slash ? model_path : ".");
        txt = read_small(path);
    }
    if (!txt)
        return CHAT_PLAIN;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    const char *tpl = cJSON_IsString(t) ? t->valuestring : NULL;
    if (cJSON_IsArray(t)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, t) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tp))
                tpl = tp->valuestring;
        }
    }
    int kind = !tpl                                   ? CHAT_PLAIN
               : strstr(tpl, "<|im_start|>")          ? CHAT_CHATML
               : strstr(tpl, "<|start_header_id|>")   ? CHAT_LLAMA3
               : strstr(tpl, "[INST]")                ? CHAT_LLAMA2
                                                      : CHAT_PLAIN;
    cJSON_Delete(j);
    return kind;
}

const char *srv_chat_name(int kind) {
    static const char *const names[] = {"plain", "chatml", "llama2", "llama3"};
    return names[kind];
}

const char *srv_chat_stop(int kind) {
    return kind == CHAT_PLAIN    ? "\nUser:"
           : kind == CHAT_CHATML ? "<|im_end|>"
           : kind == CHAT_LLAMA3 ? "<|eot_id|>"
                                 : NULL;
}

typedef struct sbuf {
    char  *s;
    size_t n, cap;
    bool   oom;
} sbuf;

static void put(sbuf *b, const char *a, const char *c, const char *d) {
    const char *p[3] = {a, c, d};
    for (int i = 0; i < 3; i++) {
        size_t l = p[i] ? strlen(p[i]) : 0;
        if (b->n + l + 1 > b->cap) {
            size_t cap = (b->cap + l + 1) * 2;
            char  *t = realloc(b->s, cap);
            if (!t) {
                b->oom = true;
                return;
            }
            b->s = t;
            b->cap = cap;
        }
        if (l)
            memcpy(b->s + b->n, p[i], l);
        b->n += l;
        b->s[b->n] = 0;
    }
}

static void llama2(sbuf *b, const srv_msg *m, int n) {
    const char *sys = NULL;
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            sys = m[i].content;
            continue;
        }
        if (!strcmp(m[i].role, "assistant")) {
            put(b, " ", m[i].content, " </s>");
            continue;
        }
        put(b, first ? "[INST] " : "<s>[INST] ", NULL, NULL);
        if (sys)
            put(b, "<<SYS>>\n", sys, "\n<</SYS>>\n\n");
        sys = NULL;
        put(b, m[i].content, " [/INST]", NULL);
        first = false;
    }
}

char *srv_chat_render(int kind, const srv_msg *m, int n) {
    sbuf b = {0};
    put(&b, "", NULL, NULL);
    if (kind == CHAT_LLAMA2)
        llama2(&b, m, n);
    for (int i = 0; kind != CHAT_LLAMA2 && i < n; i++) {
        const char *r = m[i].role, *c = m[i].content;
        if (kind == CHAT_CHATML) {
            put(&b, "<|im_start|>", r, "\n");
            put(&b, c, "<|im_end|>\n", NULL);
        } else if (kind == CHAT_LLAMA3) {
            put(&b, "<|start_header_id|>", r, "<|end_header_id|>\n\n");
            put(&b, c, "<|eot_id|>", NULL);
        } else if (!strcmp(r, "system"))
            put(&b, c, "\n\n", NULL);
        else
            put(&b, !strcmp(r, "assistant") ? "Assistant: " : "User: ", c, "\n");
    }
    put(&b,
        kind == CHAT_CHATML   ? "<|im_start|>assistant\n"
        : kind == CHAT_LLAMA3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
        : kind == CHAT_PLAIN  ? "Assistant:"
                              : "",
        NULL, NULL);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
