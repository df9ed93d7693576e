/*
 * serve.h — `molt serve`: the pieces of the OpenAI-compatible HTTP server.
 *
 *   cmd_serve.c     options, model load, signals, start / stop
 *   serve_http.c    libmicrohttpd handlers: routes, JSON requests and responses, SSE streams
 *   serve_engine.c  the engine thread: owns the model and its molt_slots; admits queued
 *                   requests between steps, advances every running choice in one batched
 *                   molt_slots_feed per step, samples (molt_sampler), applies stop strings
 *   serve_cache.c   the prompt-state cache: slot snapshots keyed by token prefix, LRU, byte budget
 *   serve_chat.c    chat templates (ChatML, Llama-2, Llama-3 by detection; plain fallback)
 *   serve_metrics.c counters and histograms, Prometheus text
 *
 * Threads: libmicrohttpd runs one thread per connection; a request is handed to the engine
 * (srv_submit) and its connection thread waits on srv.cv (or reads a stream from it). Every
 * field of srv_req below "engine ↔ http" is read and written under srv.mu only.
 */
#ifndef MOLT_SERVE_H
#define MOLT_SERVE_H

#include "molt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct serve_cfg {
    const char *host, *model_path, *model_name;
    int         port, slots, ctx, queue, threads, max_n;
    int         prefill_chunk; // prompt tokens prefilled between two decode steps (0: all)
    int         default_max_tokens;
    size_t      max_body;    // request body bytes (413 beyond)
    double      timeout_s;   // a request's whole time, queue included
    size_t      cache_bytes; // prompt cache budget (0: off)
} serve_cfg;

// one choice (sample) of a request
typedef struct srv_choice {
    int32_t       slot;        // -1: not holding one
    molt_sampler *smp;
    int32_t       prev, next;  // last token chosen, the token the next step feeds
    int32_t      *ids;         // [n_ids] tokens chosen (fed, except the last one)
    int           n_ids;
    size_t        cap_ids;
    char         *text;        // generated text; len bytes final (stop strings cut off)
    size_t        len, cap;
    size_t        safe;        // text[0..safe) can be streamed (no stop string can start there)
    size_t        sent;        // bytes a stream has sent
    const char   *finish;      // NULL while running; "stop" or "length"
    bool          finish_sent, role_sent;
} srv_choice;

enum { REQ_QUEUED, REQ_RUNNING, REQ_DONE };

typedef struct srv_req {
    // set by the http side before srv_submit, then read-only
    uint64_t            id;
    bool                chat, stream, ignore_eos;
    int                 n, max_tokens;
    int32_t            *prompt;  // tokens, BOS first when the tokenizer has one
    size_t              n_prompt;
    molt_sampler_params sp;      // choice i: seed sp.seed + i
    char              **stop;    // [n_stop]
    int                 n_stop;
    double              t_submit;
    // engine ↔ http (under srv.mu)
    srv_choice         *ch;      // [n]
    int                 state, refs;
    bool                cancelled;
    int                 err_code; // != 0: failed (HTTP code), err holds the message
    char                err[256];
    int                 cache_tokens; // prompt tokens taken from the cache
    bool                prefilling;   // running, its prompt not all fed yet (engine only)
    size_t              prefilled;    // prompt tokens in choice 0's slot (engine only)
    double              t_first, t_done;
    struct srv_req     *qnext;
} srv_req;

typedef struct srv_cache srv_cache;

typedef struct srv {
    serve_cfg        cfg;
    molt_ctx        *ctx;
    molt_model      *model;
    const molt_tokenizer *tok;
    int32_t          vocab, bos, eos;
    molt_slots      *slots;
    srv_cache       *cache;
    pthread_mutex_t  mu;
    pthread_cond_t   cv_work; // the engine waits for work
    pthread_cond_t   cv;      // http threads wait for progress (broadcast after each step)
    pthread_t        engine;
    bool             stopping;
    srv_req         *qhead, *qtail;
    int              qlen;
    srv_req        **running; // [slots]
    int              n_running, slots_used;
    uint64_t         next_id;
    void            *daemon;  // struct MHD_Daemon *
    int              open_reqs; // completions whose connection has not finished
    int              chat_kind;
} srv;

// engine (serve_engine.c)
int  srv_engine_start(srv *s);
void srv_engine_stop(srv *s);                  // cancels everything, joins the thread
// queues r (takes the engine's reference); 0, or the HTTP code of a refusal (503 queue full)
int  srv_submit(srv *s, srv_req *r);
void srv_req_release(srv *s, srv_req *r);      // drops one reference (frees at 0); locks
void srv_req_release_locked(srv *s, srv_req *r);
void srv_req_cancel(srv *s, srv_req *r);       // a client went away; locks
srv_req *srv_req_new(int n);

// prompt cache (serve_cache.c); called by the engine thread only
srv_cache *srv_cache_new(size_t budget);
void       srv_cache_free(srv_cache *c);
// the longest entry whose tokens are a prefix of ids[0..n) (all n only when it has logits);
// loads it into slot, copies its logits to logits when it covers all n; returns its length
size_t     srv_cache_lookup(srv_cache *c, molt_ctx *ctx, molt_slots *sl, int32_t slot,
                            const int32_t *ids, size_t n, float *logits, int32_t vocab);
// keeps slot's state after ids[0..n) (logits: its last row, or NULL)
void       srv_cache_put(srv_cache *c, molt_ctx *ctx, const molt_slots *sl, int32_t slot,
                         const int32_t *ids, size_t n, const float *logits, int32_t vocab);
void       srv_cache_stats(srv_cache *c, uint64_t *hits, uint64_t *misses, uint64_t *hit_tokens,
                           size_t *entries, size_t *bytes);

// chat templates (serve_chat.c)
enum { CHAT_PLAIN, CHAT_CHATML, CHAT_LLAMA2, CHAT_LLAMA3 };
int         srv_chat_detect(const char *model_path); // reads tokenizer_config.json beside it
const char *srv_chat_name(int kind);
const char *srv_chat_stop(int kind);                 // implicit stop string, or NULL
// renders messages (roles "system", "user", "assistant") into a prompt; malloc'd
typedef struct srv_msg {
    const char *role, *content;
} srv_msg;
char       *srv_chat_render(int kind, const srv_msg *m, int n);

// metrics (serve_metrics.c); thread-safe
void   srv_metrics_request(const char *route, int code, double seconds);
void   srv_metrics_tokens(int64_t prompt, int64_t generated);
void   srv_metrics_ttft(double seconds);
void   srv_metrics_step(int rows);
char  *srv_metrics_text(srv *s);  // malloc'd Prometheus text

// http (serve_http.c)
int  srv_http_start(srv *s);      // 0 ok; prints the error otherwise
void srv_http_drain(srv *s, double seconds); // waits for open completions to finish sending
void srv_http_stop(srv *s);
int  srv_http_port(srv *s);

double srv_now(void);

#endif
