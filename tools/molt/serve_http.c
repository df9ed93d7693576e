/*
 * serve_http.c — the HTTP side of `molt serve` on GNU libmicrohttpd (one thread per connection):
 *
 *   POST /v1/completions        prompt: string or [string]
 *   POST /v1/chat/completions   messages: [{role, content: string | [{type:"text", text}]}]
 *   GET  /v1/models, /health, /metrics (Prometheus text)
 *
 * Request fields: max_tokens (chat: also max_completion_tokens), temperature (default 1),
 * top_p (1), top_k (0 = off), min_p (0), seed (default: random), stop (string or list of up to
 * 4), n (1..--max-n), stream, repetition_penalty (1), ignore_eos (false: EOS / BOS end a
 * choice). frequency_penalty / presence_penalty are refused unless 0; other fields are ignored.
 * Errors are {"error": {"message", "type", "code"}} with 400 (malformed JSON, a wrong type or
 * range, a prompt too long for --ctx), 404, 405, 413 (body over --max-body), 503 (queue full,
 * shutting down) or 500.
 *
 * A completion waits in its connection thread (non-streaming: until the engine is done, then
 * one JSON body) or streams server-sent events from a content-reader callback ("data: {chunk}"
 * per piece of text, a last chunk with finish_reason per choice, "data: [DONE]"). While waiting
 * both poll the client's socket every 100 ms: a client that went away cancels its request and
 * its slots are free at the engine's next step. One log line per request goes to stderr.
 */
#define _GNU_SOURCE
#include "serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

// one HTTP request (libmicrohttpd's con_cls)
typedef struct conn {
    char       *body;
    size_t      len, cap;
    bool        too_big;
    double      t0;
    const char *route, *allow; // allow: the route's method (405's Allow header)
    char        method[8], url[96];
    int         code;
    srv_req    *req; // a reference, or NULL
} conn;

typedef struct route {
    const char *path, *method;
} route;
static const route ROUTES[] = {
    {"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"}, {"/v1/models", "GET"},
    {"/health", "GET"},          {"/metrics", "GET"},
};

// ----------------------------------------------------------------------------
// responses

static enum MHD_Result respond(struct MHD_Connection *c, conn *k, int code, const char *type,
                               char *body) {
    size_t n = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (code == 405 && k->allow)
        MHD_add_response_header(r, "Allow", k->allow);
    k->code = code;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

// cJSON's text as a plain malloc'd string (libmolt may route cJSON's allocations through its
// own allocator with cJSON_InitHooks, so cJSON's blocks are freed with cJSON_free only)
static char *json_text(cJSON *o) {
    char *t = cJSON_PrintUnformatted(o), *r = t ? strdup(t) : NULL;
    cJSON_free(t);
    cJSON_Delete(o);
    return r;
}

static char *error_json(const char *type, const char *code, const char *msg) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "code", code);
    return json_text(o);
}

static enum MHD_Result fail(struct MHD_Connection *c, conn *k, int code, const char *ecode,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result fail(struct MHD_Connection *c, conn *k, int code, const char *ecode,
                            const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = code == 503 || code >= 500 ? "server_error" : "invalid_request_error";
    return respond(c, k, code, "application/json", error_json(type, ecode, msg));
}

// bytes of the valid UTF-8 sequence at s[0..n), 0 when none; *bad: bytes of its maximal invalid
// start (the Unicode "maximal subpart", as Python's errors="replace")
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
    unsigned char c = s[0];
    size_t need = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3
                             : c >= 0xF0 && c < 0xF5   ? 4 : 0;
    *bad = 1;
    if (need <= 1)
        return need;
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    size_t k = 1;
    for (; k < need && k < n; k++) {
        unsigned char b = s[k];
        if (k == 1 ? b < lo || b > hi : (b & 0xC0) != 0x80)
            break;
    }
    *bad = k;
    return k == need ? need : 0;
}

// JSON text of generated bytes: invalid UTF-8 becomes U+FFFD (one per maximal invalid part)
static char *utf8_clean(const char *s, size_t n) {
    char *o = malloc(3 * n + 1), *p = o;
    if (!o)
        return NULL;
    for (size_t i = 0, bad; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i, &bad);
        if (k) {
            memcpy(p, s + i, k);
            p += k;
            i += k;
        } else {
            memcpy(p, "\xEF\xBF\xBD", 3);
            p += 3;
            i += bad;
        }
    }
    *p = 0;
    return o;
}

// ----------------------------------------------------------------------------
// request parsing

typedef struct parsed {
    char         err[256];
    const char  *ecode;
} parsed;

static bool bad(parsed *p, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool bad(parsed *p, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->ecode = code;
    return false;
}

// a number field in [lo, hi] (absent: *v unchanged); integer: whole numbers only
static bool num(parsed *p, const cJSON *o, const char *name, double lo, double hi, bool integer,
                double *v) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!f || cJSON_IsNull(f))
        return true;
    if (!cJSON_IsNumber(f))
        return bad(p, "invalid_type", "'%s' must be a number", name);
    double x = f->valuedouble;
    if (integer && x != floor(x))
        return bad(p, "invalid_type", "'%s' must be a whole number", name);
    if (!(x >= lo && x <= hi))
        return bad(p, "invalid_value", "'%s' must be in [%g, %g], not %g", name, lo, hi, x);
    *v = x;
    return true;
}

static bool parse_stop(parsed *p, const cJSON *o, srv_req *r, const char *implicit) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "stop");
    int n = cJSON_IsArray(f) ? cJSON_GetArraySize(f) : cJSON_IsString(f) ? 1 : 0;
    if (f && !cJSON_IsNull(f) && !cJSON_IsArray(f) && !cJSON_IsString(f))
        return bad(p, "invalid_type", "'stop' must be a string or a list of strings");
    if (n > 4)
        return bad(p, "invalid_value", "'stop' holds at most 4 strings, not %d", n);
    r->stop = calloc((size_t)n + 1, sizeof(char *));
    if (!r->stop)
        return bad(p, "oom", "out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsArray(f) ? cJSON_GetArrayItem(f, i) : f;
        if (!cJSON_IsString(e))
            return bad(p, "invalid_type", "'stop' must be a string or a list of strings");
        if (!*e->valuestring)
            continue;
        if (!(r->stop[r->n_stop++] = strdup(e->valuestring)))
            return bad(p, "oom", "out of memory");
    }
    if (implicit && !(r->stop[r->n_stop++] = strdup(implicit)))
        return bad(p, "oom", "out of memory");
    return true;
}

// messages → prompt text (malloc'd), or NULL with p->err
static char *parse_messages(parsed *p, srv *s, const cJSON *o) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0)
        return bad(p, "invalid_type", "'messages' must be a non-empty list"), NULL;
    int n = cJSON_GetArraySize(ms);
    srv_msg *m = calloc((size_t)n, sizeof *m);
    char **own = calloc((size_t)n, sizeof *own);
    char *out = NULL;
    if (!m || !own) {
        bad(p, "oom", "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(ms, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsObject(e) || !cJSON_IsString(role)) {
            bad(p, "invalid_type", "messages[%d] must be an object with a string 'role'", i);
            goto done;
        }
        m[i].role = role->valuestring;
        if (cJSON_IsString(ct))
            m[i].content = ct->valuestring;
        else if (!ct || cJSON_IsNull(ct))
            m[i].content = "";
        else if (cJSON_IsArray(ct)) { // text parts, joined
            size_t len = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, ct) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(t)) {
                    bad(p, "invalid_type", "messages[%d].content: only text parts are supported",
                        i);
                    goto done;
                }
                len += strlen(t->valuestring);
            }
            if (!(own[i] = calloc(len + 1, 1))) {
                bad(p, "oom", "out of memory");
                goto done;
            }
            cJSON_ArrayForEach(part, ct)
                strcat(own[i], cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
            m[i].content = own[i];
        } else {
            bad(p, "invalid_type", "messages[%d].content must be a string or a list of parts", i);
            goto done;
        }
    }
    if (!(out = srv_chat_render(s->chat_kind, m, n)))
        bad(p, "oom", "out of memory");
done:
    for (int i = 0; own && i < n; i++)
        free(own[i]);
    free(own);
    free(m);
    return out;
}

static uint64_t random_seed(void) {
    static uint64_t ctr;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t x = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 20) ^
                 (__atomic_add_fetch(&ctr, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED));
    x ^= x >> 31;
    return (x * 0xBF58476D1CE4E5B9ull) >> 2 | 1; // xorshift needs a non-zero state
}

// the whole request → r (NULL + p->err on a bad request)
static srv_req *parse_request(parsed *p, srv *s, const char *body, size_t len, bool chat) {
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!o)
        return bad(p, "invalid_json", "the body is not valid JSON"), NULL;
    srv_req *r = NULL;
    char *text = NULL;
    if (!cJSON_IsObject(o)) {
        bad(p, "invalid_type", "the body must be a JSON object");
        goto done;
    }
    double n = 1, max_tokens = s->cfg.default_max_tokens, temp = 1, top_p = 1, top_k = 0;
    double min_p = 0, rep = 1, fp = 0, pp = 0, seed = -1;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stream");
    const cJSON *ie = cJSON_GetObjectItemCaseSensitive(o, "ignore_eos");
    if (!num(p, o, "n", 1, s->cfg.max_n, true, &n) ||
        !num(p, o, "max_tokens", 1, 1 << 30, true, &max_tokens) ||
        (chat && !num(p, o, "max_completion_tokens", 1, 1 << 30, true, &max_tokens)) ||
        !num(p, o, "temperature", 0, 100, false, &temp) ||
        !num(p, o, "top_p", 0, 1, false, &top_p) ||
        !num(p, o, "top_k", -1, 1 << 30, true, &top_k) ||
        !num(p, o, "min_p", 0, 1, false, &min_p) ||
        !num(p, o, "repetition_penalty", 1e-3, 100, false, &rep) ||
        !num(p, o, "frequency_penalty", -2, 2, false, &fp) ||
        !num(p, o, "presence_penalty", -2, 2, false, &pp) ||
        !num(p, o, "seed", 0, 9007199254740991.0, true, &seed))
        goto done;
    if (fp != 0 || pp != 0) {
        bad(p, "unsupported", "frequency_penalty and presence_penalty are not supported (use "
                              "repetition_penalty)");
        goto done;
    }
    if ((st && !cJSON_IsBool(st) && !cJSON_IsNull(st)) ||
        (ie && !cJSON_IsBool(ie) && !cJSON_IsNull(ie))) {
        bad(p, "invalid_type", "'%s' must be true or false", st && !cJSON_IsBool(st) ? "stream"
                                                                                   : "ignore_eos");
        goto done;
    }
    if (chat) {
        if (!(text = parse_messages(p, s, o)))
            goto done;
    } else {
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        if (cJSON_IsArray(pr) && cJSON_GetArraySize(pr) == 1)
            pr = cJSON_GetArrayItem(pr, 0);
        if (!cJSON_IsString(pr)) {
            bad(p, "invalid_type", "'prompt' must be a string (or a list of one string)");
            goto done;
        }
        if (!*pr->valuestring) {
            bad(p, "invalid_value", "'prompt' is empty");
            goto done;
        }
        if (!(text = strdup(pr->valuestring))) {
            bad(p, "oom", "out of memory");
            goto done;
        }
    }
    if (!(r = srv_req_new((int)n))) {
        bad(p, "oom", "out of memory");
        goto done;
    }
    r->chat = chat;
    r->stream = cJSON_IsTrue(st);
    r->ignore_eos = cJSON_IsTrue(ie);
    r->max_tokens = (int)max_tokens;
    r->sp = (molt_sampler_params){(float)temp, (float)top_p, top_k > 0 ? (int32_t)top_k : 0,
                                  (float)min_p, (float)rep,
                                  seed >= 0 ? (uint64_t)seed : random_seed()};
    if (!parse_stop(p, o, r, chat ? srv_chat_stop(s->chat_kind) : NULL))
        goto fail;
    molt_ctx *ctx = molt_ctx_new(); // a context of this thread: its error text is its own
    size_t n_ids = 0;
    molt_status ts = ctx ? molt_tokenize(ctx, s->tok, text, strlen(text), s->bos >= 0, &r->prompt,
                                         &n_ids)
                         : MOLT_ERR_OOM;
    if (ts != MOLT_OK) {
        bad(p, "invalid_prompt", "cannot tokenize the prompt: %s",
            ctx ? molt_last_error(ctx) : "out of memory");
        molt_ctx_free(ctx);
        goto fail;
    }
    molt_ctx_free(ctx);
    r->n_prompt = n_ids;
    if (n_ids == 0 || (int64_t)n_ids + r->max_tokens > s->cfg.ctx) {
        bad(p, "context_length_exceeded",
            "the prompt is %zu tokens and max_tokens is %d: together more than the context of "
            "%d tokens",
            n_ids, r->max_tokens, s->cfg.ctx);
        goto fail;
    }
    goto done;
fail:
    r->refs = 1;
    srv_req_release(s, r);
    r = NULL;
done:
    free(text);
    cJSON_Delete(o);
    return r;
}

// ----------------------------------------------------------------------------
// completions

static bool peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd pf = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&pf, 1, 0) <= 0)
        return false;
    if (pf.revents & (POLLERR | POLLHUP | POLLRDHUP))
        return true;
    char ch;
    return (pf.revents & POLLIN) && recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void wait_progress(srv *s) { // srv.mu held
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 100 * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &t);
}

static cJSON *envelope(srv *s, const srv_req *r, const char *object) {
    char id[48];
    snprintf(id, sizeof id, "%s-%llu", r->chat ? "chatcmpl" : "cmpl", (unsigned long long)r->id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", s->cfg.model_name);
    return o;
}

// choice i's text [from, to) as a JSON string item named name in obj
static void add_text(cJSON *obj, const char *name, const srv_choice *ch, size_t from, size_t to) {
    char *t = utf8_clean(ch->text ? ch->text + from : "", to - from);
    cJSON_AddStringToObject(obj, name, t ? t : "");
    free(t);
}

static char *final_body(srv *s, const srv_req *r) { // srv.mu held
    cJSON *o = envelope(s, r, r->chat ? "chat.completion" : "text_completion");
    cJSON *cs = cJSON_AddArrayToObject(o, "choices");
    int64_t gen = 0;
    for (int i = 0; i < r->n; i++) {
        const srv_choice *ch = &r->ch[i];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        if (r->chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            add_text(m, "content", ch, 0, ch->len);
        } else {
            add_text(c, "text", ch, 0, ch->len);
            cJSON_AddNullToObject(c, "logprobs");
        }
        cJSON_AddStringToObject(c, "finish_reason", ch->finish);
        cJSON_AddItemToArray(cs, c);
        gen += ch->n_ids;
    }
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->n_prompt + (size_t)gen));
    cJSON_AddNumberToObject(u, "cached_prompt_tokens", r->cache_tokens);
    return json_text(o);
}

// a stream being read by libmicrohttpd
typedef struct stream {
    srv                   *s;
    srv_req               *r;
    struct MHD_Connection *c;
    char                  *buf; // pending bytes buf[off..len)
    size_t                 off, len, cap;
    bool                   done;
} stream;

static void emit(stream *st, const char *a, const char *b) {
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    if (st->len + la + lb + 1 > st->cap) {
        size_t cap = (st->len + la + lb + 1) * 2;
        char  *t = realloc(st->buf, cap);
        if (!t)
            return;
        st->buf = t;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, a, la);
    if (lb)
        memcpy(st->buf + st->len + la, b, lb);
    st->len += la + lb;
}

static void emit_chunk(stream *st, int i, const srv_choice *ch, size_t from, size_t to,
                       const char *finish, bool role) {
    srv_req *r = st->r;
    cJSON *o = envelope(st->s, r, r->chat ? "chat.completion.chunk" : "text_completion");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", i);
    if (r->chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role)
            cJSON_AddStringToObject(d, "role", "assistant");
        if (to > from || role)
            add_text(d, "content", ch, from, to);
    } else {
        add_text(c, "text", ch, from, to);
        cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), c);
    char *t = json_text(o);
    if (t)
        emit(st, "data: ", t), emit(st, "\n\n", NULL);
    free(t);
}

// new events of st->r into st->buf (srv.mu held)
static void collect(stream *st) {
    srv_req *r = st->r;
    if (r->err_code) {
        char *e = error_json("server_error", "engine_error", r->err);
        emit(st, "data: ", e ? e : "{}");
        emit(st, "\n\ndata: [DONE]\n\n", NULL);
        free(e);
        st->done = true;
        return;
    }
    bool all = true;
    for (int i = 0; i < r->n; i++) {
        srv_choice *ch = &r->ch[i];
        if (r->chat && !ch->role_sent) {
            emit_chunk(st, i, ch, 0, 0, NULL, true);
            ch->role_sent = true;
        }
        if (ch->safe > ch->sent) {
            emit_chunk(st, i, ch, ch->sent, ch->safe, NULL, false);
            ch->sent = ch->safe;
        }
        if (ch->finish && !ch->finish_sent) {
            emit_chunk(st, i, ch, 0, 0, ch->finish, false);
            ch->finish_sent = true;
        }
        all &= ch->finish_sent;
    }
    if (all && r->state == REQ_DONE) {
        emit(st, "data: [DONE]\n\n", NULL);
        st->done = true;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    for (;;) {
        if (st->off < st->len) {
            size_t n = st->len - st->off < max ? st->len - st->off : max;
            memcpy(buf, st->buf + st->off, n);
            st->off += n;
            return (ssize_t)n;
        }
        if (st->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        st->off = st->len = 0;
        pthread_mutex_lock(&st->s->mu);
        collect(st);
        bool idle = st->len == 0 && !st->done;
        if (idle)
            wait_progress(st->s);
        pthread_mutex_unlock(&st->s->mu);
        if (idle && peer_gone(st->c)) {
            srv_req_cancel(st->s, st->r);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream *st = cls;
    srv_req_cancel(st->s, st->r); // no-op when it is done
    srv_req_release(st->s, st->r);
    free(st->buf);
    free(st);
}

static enum MHD_Result completions(srv *s, struct MHD_Connection *c, conn *k, bool chat) {
    parsed p = {{0}, NULL};
    srv_req *r = parse_request(&p, s, k->body, k->len, chat);
    if (!r)
        return fail(c, k, 400, p.ecode, "%s", p.err);
    r->refs = 1; // this connection's
    k->req = r;
    pthread_mutex_lock(&s->mu);
    r->id = ++s->next_id;
    s->open_reqs++;
    pthread_mutex_unlock(&s->mu);
    int refused = srv_submit(s, r);
    if (refused)
        return fail(c, k, refused, "server_busy",
                    "all %d slots are busy and the queue is full (or the server is stopping); "
                    "retry later",
                    s->cfg.slots);
    if (r->stream) {
        stream *st = calloc(1, sizeof *st);
        if (!st)
            return fail(c, k, 500, "oom", "out of memory");
        st->s = s, st->r = r, st->c = c;
        pthread_mutex_lock(&s->mu);
        r->refs++; // the stream's
        pthread_mutex_unlock(&s->mu);
        struct MHD_Response *res = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!res) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(res, "Content-Type", "text/event-stream");
        MHD_add_response_header(res, "Cache-Control", "no-cache");
        k->code = 200;
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, res);
        MHD_destroy_response(res);
        return ret;
    }
    pthread_mutex_lock(&s->mu);
    while (r->state != REQ_DONE) {
        wait_progress(s);
        if (r->state != REQ_DONE && peer_gone(c)) {
            r->cancelled = true;
            pthread_cond_signal(&s->cv_work);
            pthread_mutex_unlock(&s->mu);
            k->code = 499;
            return MHD_NO; // closes the connection
        }
    }
    char *body = r->err_code ? NULL : final_body(s, r);
    int ecode = r->err_code;
    char err[256];
    snprintf(err, sizeof err, "%s", r->err);
    pthread_mutex_unlock(&s->mu);
    if (ecode)
        return fail(c, k, ecode, ecode == 503 ? "server_busy" : "engine_error", "%s", err);
    return body ? respond(c, k, 200, "application/json", body)
                : fail(c, k, 500, "oom", "out of memory");
}

// ----------------------------------------------------------------------------
// the other routes, dispatch

static enum MHD_Result simple_get(srv *s, struct MHD_Connection *c, conn *k) {
    if (!strcmp(k->route, "/metrics")) {
        char *t = srv_metrics_text(s);
        return t ? respond(c, k, 200, "text/plain; version=0.0.4", t)
                 : fail(c, k, 500, "oom", "out of memory");
    }
    cJSON *o = cJSON_CreateObject();
    if (!strcmp(k->route, "/health")) {
        pthread_mutex_lock(&s->mu);
        cJSON_AddStringToObject(o, "status", s->stopping ? "stopping" : "ok");
        cJSON_AddNumberToObject(o, "slots", s->cfg.slots);
        cJSON_AddNumberToObject(o, "slots_active", s->slots_used);
        cJSON_AddNumberToObject(o, "queue", s->qlen);
        pthread_mutex_unlock(&s->mu);
    } else {
        cJSON_AddStringToObject(o, "object", "list");
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", s->cfg.model_name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "molt");
        cJSON_AddNumberToObject(m, "context_length", s->cfg.ctx);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    }
    char *t = json_text(o);
    return t ? respond(c, k, 200, "application/json", t) : fail(c, k, 500, "oom", "out of memory");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn *k = *con_cls;
    if (!k) { // headers in: route, method and declared size checked before any body is read
        if (!(k = calloc(1, sizeof *k)))
            return MHD_NO;
        *con_cls = k;
        k->t0 = srv_now();
        snprintf(k->method, sizeof k->method, "%s", method);
        snprintf(k->url, sizeof k->url, "%s", url);
        const route *rt = NULL;
        for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
            if (!strcmp(url, ROUTES[i].path))
                rt = &ROUTES[i];
        if (!rt) {
            k->route = "other";
            return fail(c, k, 404, "not_found", "no route %s %s", method, url);
        }
        k->route = rt->path;
        bool get = !strcmp(rt->method, "GET");
        if (strcmp(method, rt->method) && !(get && !strcmp(method, "HEAD"))) {
            k->allow = get ? "GET, HEAD" : "POST";
            return fail(c, k, 405, "method_not_allowed", "%s takes %s, not %s", url, rt->method,
                        method);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body)
            return fail(c, k, 413, "request_too_large", "the body is %s bytes; the limit is %zu",
                        cl, s->cfg.max_body);
        return MHD_YES;
    }
    if (*upload_size) { // body pieces
        if (!k->too_big && k->len + *upload_size <= s->cfg.max_body) {
            if (k->len + *upload_size + 1 > k->cap) {
                size_t cap = (k->len + *upload_size + 1) * 2;
                char  *t = realloc(k->body, cap);
                if (!t)
                    return MHD_NO;
                k->body = t;
                k->cap = cap;
            }
            memcpy(k->body + k->len, upload, *upload_size);
            k->len += *upload_size;
        } else
            k->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->code) // answered already
        return MHD_YES;
    if (k->too_big)
        return fail(c, k, 413, "request_too_large", "the body exceeds the limit of %zu bytes",
                    s->cfg.max_body);
    if (!strcmp(k->route, "/v1/completions") || !strcmp(k->route, "/v1/chat/completions"))
        return completions(s, c, k, !strcmp(k->route, "/v1/chat/completions"));
    return simple_get(s, c, k);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)c;
    srv *s = cls;
    conn *k = *con_cls;
    if (!k)
        return;
    *con_cls = NULL;
    int code = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? k->code : k->code ? 499 : 400;
    double dt = srv_now() - k->t0;
    char extra[160] = "";
    if (k->req) {
        pthread_mutex_lock(&s->mu);
        srv_req *r = k->req;
        int gen = 0;
        for (int i = 0; i < r->n; i++)
            gen += r->ch[i].n_ids;
        snprintf(extra, sizeof extra, " prompt=%zu cached=%d generated=%d n=%d%s ttft=%.1fms",
                 r->n_prompt, r->cache_tokens, gen, r->n, r->stream ? " stream" : "",
                 r->t_first > 0 ? 1e3 * (r->t_first - r->t_submit) : 0.0);
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->state != REQ_DONE)
            r->cancelled = true, pthread_cond_signal(&s->cv_work);
        srv_req_release_locked(s, r);
        s->open_reqs--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    srv_metrics_request(k->route ? k->route : "other", code, dt);
    fprintf(stderr, "serve: %s %s %d %.1fms%s\n", k->method, k->url, code, 1e3 * dt, extra);
    free(k->body);
    free(k);
}

int srv_http_start(srv *s) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg.port);
    int gai = getaddrinfo(s->cfg.host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "molt serve: error: --host %s: %s\n", s->cfg.host, gai_strerror(gai));
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_done, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(s->cfg.slots + s->cfg.queue + 64), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)60, MHD_OPTION_END); // idle keep-alive connections close after 60 s
    freeaddrinfo(ai);
    if (!s->daemon) {
        fprintf(stderr, "molt serve: error: cannot listen on %s:%d: %s\n", s->cfg.host,
                s->cfg.port, errno ? strerror(errno) : "libmicrohttpd refused");
        return -1;
    }
    return 0;
}

int srv_http_port(srv *s) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : s->cfg.port;
}

void srv_http_drain(srv *s, double seconds) {
    double end = srv_now() + seconds;
    pthread_mutex_lock(&s->mu);
    while (s->open_reqs > 0 && srv_now() < end)
        wait_progress(s);
    pthread_mutex_unlock(&s->mu);
}

void srv_http_stop(srv *s) {
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
