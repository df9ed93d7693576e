/*
 * serve_engine.c — the engine thread of `molt serve`: the only thread that touches the model,
 * its molt_slots, the samplers and the prompt cache.
 *
 * Loop (srv.mu held except around model work):
 *   1. end running requests whose client left (cancelled) or whose time ran out (finish "length")
 *   2. admit queued requests, FIFO, while the head's n choices find free slots: its prompt is
 *      looked up in the prompt cache (srv_cache_lookup loads the longest cached prefix into the
 *      choice-0 slot); then one piece (--prefill-chunk tokens) of the oldest unfinished prompt
 *      is prefilled (molt_slot_prefill); after its last piece the state after the prompt is
 *      cached, choices 1..n-1 fork it (molt_slot_copy), and each choice samples its first token
 *   3. one decode step: every unfinished choice of every running request feeds its last token,
 *      all in one molt_slots_feed (continuous batching), and samples the next
 *   4. finished requests give back their slots (choice 0's whole sequence is cached first) and
 *      wake their connection threads (srv.cv)
 * A choice stops at EOS / BOS ("stop", as molt_generate), at a stop string (cut off; "stop"), at
 * max_tokens or the slot's capacity ("length"). Choice i samples with seed + i through
 * molt_sampler (molt_generate's sampler), so a request alone in the batch, without a cache hit
 * that splits its prompt, gets molt_generate's tokens for the same seed bit for bit (more rows in
 * a step change only the GEMMs' rounding).
 */
#include "serve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double srv_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

srv_req *srv_req_new(int n) {
    srv_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->ch = calloc((size_t)n, sizeof *r->ch);
    if (!r->ch) {
        free(r);
        return NULL;
    }
    r->n = n;
    for (int i = 0; i < n; i++)
        r->ch[i].slot = -1;
    return r;
}

static void req_free(srv_req *r) {
    for (int i = 0; i < r->n; i++) {
        molt_sampler_free(r->ch[i].smp);
        free(r->ch[i].ids);
        free(r->ch[i].text);
    }
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    molt_free(r->prompt); // molt_tokenize's block
    free(r->ch);
    free(r);
}

void srv_req_release_locked(srv *s, srv_req *r) {
    (void)s;
    if (--r->refs == 0)
        req_free(r);
}

void srv_req_release(srv *s, srv_req *r) {
    pthread_mutex_lock(&s->mu);
    srv_req_release_locked(s, r);
    pthread_mutex_unlock(&s->mu);
}

void srv_req_cancel(srv *s, srv_req *r) {
    pthread_mutex_lock(&s->mu);
    if (r->state != REQ_DONE) {
        r->cancelled = true;
        pthread_cond_signal(&s->cv_work);
    }
    pthread_mutex_unlock(&s->mu);
}

int srv_submit(srv *s, srv_req *r) {
    pthread_mutex_lock(&s->mu);
    int free_slots = s->cfg.slots - s->slots_used;
    if (s->stopping || s->qlen >= s->cfg.queue + free_slots) {
        pthread_mutex_unlock(&s->mu);
        return 503;
    }
    r->state = REQ_QUEUED;
    r->refs++;
    r->t_submit = srv_now();
    if (s->qtail)
        s->qtail->qnext = r;
    else
        s->qhead = r;
    s->qtail = r;
    s->qlen++;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

// ----------------------------------------------------------------------------
// text of a choice (srv.mu held)

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *t = realloc(*p, c * elem);
    if (!t)
        return false;
    *p = t;
    *cap = c;
    return true;
}

// bytes at the end of t that may still become a stop string
static size_t stop_holdback(const char *t, size_t len, char *const *stop, int n) {
    size_t hold = 0;
    for (int i = 0; i < n; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl - 1 < len ? sl - 1 : len; k > hold; k--)
            if (!memcmp(t + len - k, stop[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

// bytes of an incomplete UTF-8 sequence at the end of t
static size_t utf8_holdback(const char *t, size_t len) {
    for (size_t k = 1; k <= 3 && k <= len; k++) {
        unsigned char c = (unsigned char)t[len - k];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

static void finish(srv_choice *ch, const char *why) {
    ch->finish = why;
    ch->safe = ch->len;
}

static void fail(srv_req *r, int code, const char *msg) {
    if (!r->err_code) {
        r->err_code = code;
        snprintf(r->err, sizeof r->err, "%s", msg);
    }
    for (int i = 0; i < r->n; i++)
        if (!r->ch[i].finish)
            finish(&r->ch[i], "error");
}

static void take_token(srv *s, srv_req *r, srv_choice *ch, int32_t tok) {
    if (tok < 0) {
        fail(r, 500, "non-finite logits (NaN or inf)");
        return;
    }
    if (!r->ignore_eos && (tok == s->eos || tok == s->bos)) {
        finish(ch, "stop");
        return;
    }
    char piece[512];
    size_t n = molt_token_piece(s->tok, ch->prev, tok, piece, sizeof piece);
    if (!grow((void **)&ch->text, &ch->cap, ch->len + n + 1, 1) ||
        !grow((void **)&ch->ids, &ch->cap_ids, (size_t)ch->n_ids + 1, sizeof(int32_t))) {
        fail(r, 500, "out of memory");
        return;
    }
    size_t old = ch->len;
    memcpy(ch->text + ch->len, piece, n);
    ch->len += n;
    ch->text[ch->len] = 0;
    ch->ids[ch->n_ids++] = tok;
    ch->prev = ch->next = tok;
    if (r->sp.repetition_penalty != 1.0f)
        molt_sampler_accept(ch->smp, &tok, 1);
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]), from = old >= sl ? old - sl + 1 : 0;
        char *hit = strstr(ch->text + from, r->stop[i]);
        if (hit && (size_t)(hit - ch->text) < ch->len) {
            ch->len = (size_t)(hit - ch->text);
            ch->text[ch->len] = 0;
            finish(ch, "stop");
        }
    }
    if (ch->finish)
        return;
    if (ch->n_ids >= r->max_tokens || (int64_t)r->n_prompt + ch->n_ids >= s->cfg.ctx) {
        finish(ch, "length");
        return;
    }
    size_t hold = stop_holdback(ch->text, ch->len, r->stop, r->n_stop);
    size_t u = utf8_holdback(ch->text, ch->len - hold);
    ch->safe = ch->len - hold - u;
}

// ----------------------------------------------------------------------------
// admission, completion

static int take_slot(srv *s, uint8_t *used) {
    for (int i = 0; i < s->cfg.slots; i++)
        if (!used[i]) {
            used[i] = 1;
            return i;
        }
    return -1;
}

static void engine_error(srv *s, srv_req *r, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, molt_last_error(s->ctx));
    fail(r, 500, msg);
}

static bool all_finished(const srv_req *r);

// The choices of r start from its prompt's last logits lg: choice 0's slot is forked into the
// others, each gets its sampler and samples its first token. srv.mu held on entry and exit,
// released during model work.
static void start_choices(srv *s, srv_req *r, const float *lg, float *row) {
    r->prefilling = false;
    pthread_mutex_unlock(&s->mu);
    int32_t s0 = r->ch[0].slot, tok[r->n];
    const char *bad = NULL;
    for (int i = 0; i < r->n && !bad; i++) {
        srv_choice *ch = &r->ch[i];
        if (i > 0 && molt_slot_copy(s->ctx, s->slots, s0, ch->slot) != MOLT_OK)
            bad = "fork";
        molt_sampler_params sp = r->sp;
        sp.seed += (uint64_t)i;
        if (!bad && molt_sampler_new(s->ctx, s->vocab, &sp, &ch->smp) != MOLT_OK)
            bad = "sampler";
        if (bad)
            break;
        if (sp.repetition_penalty != 1.0f)
            molt_sampler_accept(ch->smp, r->prompt, r->n_prompt);
        memcpy(row, lg, sizeof(float) * (size_t)s->vocab);
        tok[i] = molt_sampler_next(ch->smp, row);
    }
    pthread_mutex_lock(&s->mu);
    if (bad) {
        engine_error(s, r, bad);
        return;
    }
    r->t_first = srv_now();
    srv_metrics_ttft(r->t_first - r->t_submit);
    for (int i = 0; i < r->n; i++) {
        r->ch[i].prev = r->prompt[r->n_prompt - 1];
        take_token(s, r, &r->ch[i], tok[i]);
    }
}

// r leaves the queue: its slots, the prompt-cache lookup into choice 0's slot. A hit on the
// whole prompt starts the choices at once; otherwise prefill_chunk feeds the rest over the next
// iterations. srv.mu held on entry and exit, released during model work.
static void admit(srv *s, srv_req *r, uint8_t *used, float *lg, float *row) {
    r->state = REQ_RUNNING;
    r->prefilling = true;
    s->running[s->n_running++] = r;
    for (int i = 0; i < r->n; i++)
        r->ch[i].slot = take_slot(s, used);
    s->slots_used += r->n;
    pthread_mutex_unlock(&s->mu);
    int32_t s0 = r->ch[0].slot;
    size_t hit = s->cache ? srv_cache_lookup(s->cache, s->ctx, s->slots, s0, r->prompt,
                                             r->n_prompt, lg, s->vocab)
                          : 0;
    if (hit == 0)
        molt_slot_reset(s->ctx, s->slots, s0);
    pthread_mutex_lock(&s->mu);
    r->cache_tokens = (int)hit;
    r->prefilled = hit;
    if (hit == r->n_prompt)
        start_choices(s, r, lg, row);
}

// One piece (--prefill-chunk tokens) of the prompt of the oldest request still prefilling, so
// that a long prompt holds up the running requests' decode steps one piece at a time. Pieces of
// 256 tokens are the pieces molt_seq_feed cuts a prompt into itself (for slots of up to 16384
// tokens), so the result is the same as one whole prefill. srv.mu held, released during the work.
static void prefill_chunk(srv *s, float *lg, float *row) {
    srv_req *r = NULL;
    for (int i = 0; i < s->n_running; i++) {
        srv_req *q = s->running[i];
        if (q->prefilling && !all_finished(q) && (!r || q->id < r->id))
            r = q;
    }
    if (!r)
        return;
    size_t k = r->n_prompt - r->prefilled, at = r->prefilled;
    if (s->cfg.prefill_chunk > 0 && k > (size_t)s->cfg.prefill_chunk)
        k = (size_t)s->cfg.prefill_chunk;
    int32_t s0 = r->ch[0].slot;
    pthread_mutex_unlock(&s->mu);
    molt_status st = molt_slot_prefill(s->ctx, s->slots, s0, r->prompt + at, (int32_t)k, 0, lg);
    bool done = st == MOLT_OK && at + k == r->n_prompt;
    if (done && s->cache)
        srv_cache_put(s->cache, s->ctx, s->slots, s0, r->prompt, r->n_prompt, lg, s->vocab);
    pthread_mutex_lock(&s->mu);
    if (st != MOLT_OK) {
        r->prefilling = false;
        engine_error(s, r, "prefill");
        return;
    }
    r->prefilled = at + k;
    if (done)
        start_choices(s, r, lg, row);
}

static bool all_finished(const srv_req *r) {
    for (int i = 0; i < r->n; i++)
        if (!r->ch[i].finish)
            return false;
    return true;
}

// srv.mu held; r is running and all its choices finished
static void complete(srv *s, srv_req *r, uint8_t *used) {
    srv_choice *c0 = &r->ch[0];
    // the slot holds the prompt and the chosen tokens it was fed (all but a last one that
    // ended the choice)
    int fed = c0->slot >= 0 ? molt_slot_pos(s->slots, c0->slot) - (int)r->n_prompt : 0;
    if (s->cache && !r->cancelled && !r->err_code && fed > 0 && fed <= c0->n_ids) {
        size_t n = r->n_prompt + (size_t)fed;
        int32_t *all = malloc(sizeof(int32_t) * n);
        if (all) {
            memcpy(all, r->prompt, sizeof(int32_t) * r->n_prompt);
            memcpy(all + r->n_prompt, c0->ids, sizeof(int32_t) * (size_t)fed);
            srv_cache_put(s->cache, s->ctx, s->slots, c0->slot, all, n, NULL, s->vocab);
            free(all);
        }
    }
    int64_t gen = 0;
    for (int i = 0; i < r->n; i++) {
        if (r->ch[i].slot >= 0)
            used[r->ch[i].slot] = 0;
        r->ch[i].slot = -1;
        gen += r->ch[i].n_ids;
    }
    s->slots_used -= r->n;
    for (int i = 0; i < s->n_running; i++)
        if (s->running[i] == r) {
            s->running[i] = s->running[--s->n_running];
            break;
        }
    srv_metrics_tokens((int64_t)r->n_prompt, gen);
    r->state = REQ_DONE;
    r->t_done = srv_now();
    srv_req_release_locked(s, r);
}

static void end_queued(srv *s, srv_req *r, int code, const char *msg) {
    fail(r, code, msg);
    r->state = REQ_DONE;
    r->t_done = srv_now();
    srv_req_release_locked(s, r);
}

// ----------------------------------------------------------------------------
// the loop

typedef struct engine_buf {
    uint8_t     *used;  // [slots]
    float       *lg;    // [slots, vocab]
    float       *row;   // [vocab]
    int32_t     *slot, *tok;
    srv_choice **ch;
    srv_req    **req;
} engine_buf;

static void *engine_main(void *arg) {
    srv *s = arg;
    engine_buf b = {0};
    size_t ns = (size_t)s->cfg.slots, V = (size_t)s->vocab;
    b.used = calloc(ns, 1);
    b.lg = malloc(sizeof(float) * ns * V);
    b.row = malloc(sizeof(float) * V);
    b.slot = malloc(sizeof(int32_t) * ns);
    b.tok = malloc(sizeof(int32_t) * ns);
    b.ch = malloc(sizeof(*b.ch) * ns);
    b.req = malloc(sizeof(*b.req) * ns);
    bool oom = !b.used || !b.lg || !b.row || !b.slot || !b.tok || !b.ch || !b.req;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        double now = srv_now();
        // 1. leavers, time limits, shutdown
        for (int i = 0; i < s->n_running; i++) {
            srv_req *r = s->running[i];
            bool late = now - r->t_submit > s->cfg.timeout_s;
            for (int c = 0; c < r->n; c++)
                if (!r->ch[c].finish && (r->cancelled || late || s->stopping))
                    finish(&r->ch[c], "length");
        }
        // 2. admission
        while (s->qhead) {
            srv_req *r = s->qhead;
            bool gone = r->cancelled || s->stopping || oom ||
                        now - r->t_submit > s->cfg.timeout_s;
            if (!gone && s->cfg.slots - s->slots_used < r->n)
                break;
            s->qhead = r->qnext;
            if (!s->qhead)
                s->qtail = NULL;
            s->qlen--;
            if (gone)
                end_queued(s, r, oom ? 500 : 503,
                           oom ? "out of memory" : s->stopping ? "the server is shutting down"
                                                                : "timed out in the queue");
            else
                admit(s, r, b.used, b.lg, b.row);
        }
        prefill_chunk(s, b.lg, b.row);
        // 3. one decode step over every unfinished choice
        int n = 0;
        for (int i = 0; i < s->n_running; i++) {
            srv_req *r = s->running[i];
            for (int c = 0; c < r->n && !r->prefilling; c++)
                if (!r->ch[c].finish) {
                    b.slot[n] = r->ch[c].slot;
                    b.tok[n] = r->ch[c].next;
                    b.ch[n] = &r->ch[c];
                    b.req[n++] = r;
                }
        }
        if (n > 0) {
            pthread_mutex_unlock(&s->mu);
            molt_status st = molt_slots_feed(s->ctx, s->slots, n, b.slot, b.tok, b.lg);
            for (int r = 0; r < n && st == MOLT_OK; r++)
                b.tok[r] = molt_sampler_next(b.ch[r]->smp, b.lg + (size_t)r * V);
            pthread_mutex_lock(&s->mu);
            srv_metrics_step(n);
            for (int r = 0; r < n; r++) {
                if (st != MOLT_OK)
                    engine_error(s, b.req[r], "decode");
                else if (!b.ch[r]->finish) // a cancel may have finished it meanwhile
                    take_token(s, b.req[r], b.ch[r], b.tok[r]);
            }
        }
        // 4. completions
        for (int i = 0; i < s->n_running;) {
            srv_req *r = s->running[i];
            if (all_finished(r))
                complete(s, r, b.used); // moves the last running request to i
            else
                i++;
        }
        pthread_cond_broadcast(&s->cv);
        if (s->stopping && s->n_running == 0 && !s->qhead)
            break;
        if (n == 0 && s->n_running == 0 &&
            (!s->qhead || s->cfg.slots - s->slots_used < s->qhead->n))
            pthread_cond_wait(&s->cv_work, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(b.used);
    free(b.lg);
    free(b.row);
    free(b.slot);
    free(b.tok);
    free(b.ch);
    free(b.req);
    return NULL;
}

int srv_engine_start(srv *s) {
    s->running = calloc((size_t)s->cfg.slots, sizeof *s->running);
    if (!s->running)
        return -1;
    return pthread_create(&s->engine, NULL, engine_main, s) ? -1 : 0;
}

void srv_engine_stop(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine, NULL);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(s->running);
    s->running = NULL;
}
