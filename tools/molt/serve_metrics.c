/*
 * serve_metrics.c — counters and histograms of `molt serve`, as Prometheus text (GET /metrics):
 *   molt_requests_total{route,code}          requests answered (code 499: client went away)
 *   molt_request_duration_seconds            histogram, every request
 *   molt_time_to_first_token_seconds         histogram, completions: submit → first token
 *   molt_prompt_tokens_total, molt_generated_tokens_total
 *   molt_decode_steps_total, molt_decode_rows_total   (rows / steps = mean batch)
 *   molt_slots, molt_slots_active, molt_requests_running, molt_queue_length
 *   molt_prompt_cache_{hits,misses,hit_tokens}_total, _entries, _bytes
 */
#include "serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB 12
static const double BUCKETS[NB] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                   0.5,   1,    2.5,   5,    10,  30};

typedef struct hist {
    uint64_t b[NB + 1], count;
    double   sum;
} hist;

typedef struct counter {
    const char *route;
    int         code;
    uint64_t    n;
} counter;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static counter         req[128];
static int             n_req;
static hist            h_req, h_ttft;
static uint64_t        prompt_tok, gen_tok, steps, rows;

static void observe(hist *h, double v) {
    int i = 0;
    while (i < NB && v > BUCKETS[i])
        i++;
    h->b[i]++;
    h->count++;
    h->sum += v;
}

void srv_metrics_request(const char *route, int code, double seconds) {
    pthread_mutex_lock(&mu);
    int i = 0;
    while (i < n_req && !(req[i].code == code && !strcmp(req[i].route, route)))
        i++;
    if (i == n_req && n_req < (int)(sizeof req / sizeof req[0]))
        req[n_req++] = (counter){route, code, 0};
    if (i < n_req)
        req[i].n++;
    observe(&h_req, seconds);
    pthread_mutex_unlock(&mu);
}

void srv_metrics_tokens(int64_t prompt, int64_t generated) {
    pthread_mutex_lock(&mu);
    prompt_tok += (uint64_t)prompt;
    gen_tok += (uint64_t)generated;
    pthread_mutex_unlock(&mu);
}

void srv_metrics_ttft(double seconds) {
    pthread_mutex_lock(&mu);
    observe(&h_ttft, seconds);
    pthread_mutex_unlock(&mu);
}

void srv_metrics_step(int n) {
    pthread_mutex_lock(&mu);
    steps++;
    rows += (uint64_t)n;
    pthread_mutex_unlock(&mu);
}

typedef struct out {
    char  *s;
    size_t n, cap;
} out;

static void pf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pf(out *o, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->s ? o->s + o->n : NULL, o->s ? o->cap - o->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if (o->s && o->n + (size_t)k < o->cap) {
            o->n += (size_t)k;
            return;
        }
        size_t cap = (o->cap + (size_t)k + 1) * 2;
        char  *t = realloc(o->s, cap);
        if (!t)
            return;
        o->s = t;
        o->cap = cap;
    }
}

static void hist_text(out *o, const char *name, const char *help, const hist *h) {
    pf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < NB; i++) {
        cum += h->b[i];
        pf(o, "%s_bucket{le=\"%g\"} %llu\n", name, BUCKETS[i], (unsigned long long)cum);
    }
    pf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
       (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

char *srv_metrics_text(srv *s) {
    out o = {0};
    pthread_mutex_lock(&s->mu);
    int active = s->slots_used, running = s->n_running, queue = s->qlen;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&mu);
    pf(&o, "# HELP molt_requests_total HTTP requests answered, by route and status code\n"
           "# TYPE molt_requests_total counter\n");
    for (int i = 0; i < n_req; i++)
        pf(&o, "molt_requests_total{route=\"%s\",code=\"%d\"} %llu\n", req[i].route, req[i].code,
           (unsigned long long)req[i].n);
    hist_text(&o, "molt_request_duration_seconds", "time from request to its last byte", &h_req);
    hist_text(&o, "molt_time_to_first_token_seconds", "time from submission to the first token",
              &h_ttft);
    pf(&o, "# TYPE molt_prompt_tokens_total counter\nmolt_prompt_tokens_total %llu\n",
       (unsigned long long)prompt_tok);
    pf(&o, "# TYPE molt_generated_tokens_total counter\nmolt_generated_tokens_total %llu\n",
       (unsigned long long)gen_tok);
    pf(&o, "# TYPE molt_decode_steps_total counter\nmolt_decode_steps_total %llu\n",
       (unsigned long long)steps);
    pf(&o, "# TYPE molt_decode_rows_total counter\nmolt_decode_rows_total %llu\n",
       (unsigned long long)rows);
    pthread_mutex_unlock(&mu);
    pf(&o, "# TYPE molt_slots gauge\nmolt_slots %d\n", s->cfg.slots);
    pf(&o, "# TYPE molt_slots_active gauge\nmolt_slots_active %d\n", active);
    pf(&o, "# TYPE molt_requests_running gauge\nmolt_requests_running %d\n", running);
    pf(&o, "# TYPE molt_queue_length gauge\nmolt_queue_length %d\n", queue);
    uint64_t hits = 0, misses = 0, ht = 0;
    size_t entries = 0, bytes = 0;
    if (s->cache)
        srv_cache_stats(s->cache, &hits, &misses, &ht, &entries, &bytes);
    pf(&o, "# TYPE molt_prompt_cache_hits_total counter\nmolt_prompt_cache_hits_total %llu\n",
       (unsigned long long)hits);
    pf(&o, "# TYPE molt_prompt_cache_misses_total counter\nmolt_prompt_cache_misses_total %llu\n",
       (unsigned long long)misses);
    pf(&o, "# TYPE molt_prompt_cache_hit_tokens_total counter\n"
           "molt_prompt_cache_hit_tokens_total %llu\n",
       (unsigned long long)ht);
    pf(&o, "# TYPE molt_prompt_cache_entries gauge\nmolt_prompt_cache_entries %zu\n", entries);
    pf(&o, "# TYPE molt_prompt_cache_bytes gauge\nmolt_prompt_cache_bytes %zu\n", bytes);
    return o.s;
}
