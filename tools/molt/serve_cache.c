/*
 * serve_cache.c — the prompt-state cache of `molt serve`: snapshots of one slot's state
 * (molt_slot_save) keyed by the tokens it was fed, reused for any later prompt they begin.
 *
 * A recurrent layer's state is a few KB whatever the prefix length, so a shared system prompt
 * or a conversation's earlier turns cost one snapshot; attention layers add their KV rows
 * (O(tokens)). Entries: the state after a request's prompt (with its last-position logits, so
 * an identical prompt needs no prefill at all) and after a finished request's whole sequence
 * (prompt + generated tokens: the next turn of a chat begins with it). Lookup takes the longest
 * entry that is a prefix of the new prompt; the caller prefills only the rest. Least recently
 * used entries go first when the byte budget (snapshot + tokens + logits) would be exceeded
 * or 4096 entries are held (a lookup scans them all: microseconds).
 * A split prefill (cached prefix + the rest) equals one whole prefill up to rounding.
 * The engine thread calls lookup / put; srv_cache_stats may come from any thread (c->mu).
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES 4096 // lookups scan the entries

typedef struct entry {
    int32_t *ids;
    size_t   n;
    void    *blob; // molt_slot_save bytes
    size_t   blob_len, bytes;
    float   *logits; // [vocab] after ids[n-1], or NULL
    uint64_t used;
} entry;

struct srv_cache {
    pthread_mutex_t mu;
    entry          *e;
    size_t          n, cap, budget, bytes;
    uint64_t        clock, hits, misses, hit_tokens;
};

srv_cache *srv_cache_new(size_t budget) {
    srv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->budget = budget;
    return c;
}

static void drop(srv_cache *c, size_t i) {
    entry *e = &c->e[i];
    c->bytes -= e->bytes;
    free(e->ids);
    free(e->blob);
    free(e->logits);
    c->e[i] = c->e[--c->n];
}

void srv_cache_free(srv_cache *c) {
    if (!c)
        return;
    while (c->n)
        drop(c, 0);
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t srv_cache_lookup(srv_cache *c, molt_ctx *ctx, molt_slots *sl, int32_t slot,
                        const int32_t *ids, size_t n, float *logits, int32_t vocab) {
    pthread_mutex_lock(&c->mu);
    size_t best = 0;
    long bi = -1;
    for (size_t i = 0; i < c->n; i++) {
        entry *e = &c->e[i];
        if (e->n > best && (e->n < n || (e->n == n && e->logits)) &&
            !memcmp(e->ids, ids, sizeof(int32_t) * e->n)) {
            best = e->n;
            bi = (long)i;
        }
    }
    if (bi >= 0 && molt_slot_load(ctx, sl, slot, c->e[bi].blob, c->e[bi].blob_len) != MOLT_OK) {
        drop(c, (size_t)bi); // cannot happen for a snapshot of these slots; never reuse it
        bi = -1;
        best = 0;
    }
    if (bi >= 0) {
        entry *e = &c->e[bi];
        e->used = ++c->clock;
        if (best == n)
            memcpy(logits, e->logits, sizeof(float) * (size_t)vocab);
        c->hits++;
        c->hit_tokens += best;
    } else
        c->misses++;
    pthread_mutex_unlock(&c->mu);
    return best;
}

void srv_cache_put(srv_cache *c, molt_ctx *ctx, const molt_slots *sl, int32_t slot,
                   const int32_t *ids, size_t n, const float *logits, int32_t vocab) {
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++) // already there: refresh it
        if (c->e[i].n == n && !memcmp(c->e[i].ids, ids, sizeof(int32_t) * n)) {
            c->e[i].used = ++c->clock;
            pthread_mutex_unlock(&c->mu);
            return;
        }
    size_t blob_len = molt_slot_save_bytes(sl, slot);
    size_t bytes = sizeof(entry) + blob_len + sizeof(int32_t) * n +
                   (logits ? sizeof(float) * (size_t)vocab : 0);
    entry e = {0};
    if (bytes > c->budget) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    e.ids = malloc(sizeof(int32_t) * n);
    e.blob = malloc(blob_len);
    e.logits = logits ? malloc(sizeof(float) * (size_t)vocab) : NULL;
    if (!e.ids || !e.blob || (logits && !e.logits) ||
        molt_slot_save(ctx, sl, slot, e.blob, blob_len, &e.blob_len) != MOLT_OK) {
        free(e.ids);
        free(e.blob);
        free(e.logits);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    memcpy(e.ids, ids, sizeof(int32_t) * n);
    if (logits)
        memcpy(e.logits, logits, sizeof(float) * (size_t)vocab);
    e.n = n;
    e.bytes = bytes;
    e.used = ++c->clock;
    while (c->n && (c->bytes + bytes > c->budget || c->n >= MAX_ENTRIES)) { // LRU first
        size_t lru = 0;
        for (size_t i = 1; i < c->n; i++)
            if (c->e[i].used < c->e[lru].used)
                lru = i;
        drop(c, lru);
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        entry *t = realloc(c->e, cap * sizeof *t);
        if (!t) {
            free(e.ids);
            free(e.blob);
            free(e.logits);
            pthread_mutex_unlock(&c->mu);
            return;
        }
        c->e = t;
        c->cap = cap;
    }
    c->e[c->n++] = e;
    c->bytes += bytes;
    pthread_mutex_unlock(&c->mu);
}

void srv_cache_stats(srv_cache *c, uint64_t *hits, uint64_t *misses, uint64_t *hit_tokens,
                     size_t *entries, size_t *bytes) {
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    *hit_tokens = c->hit_tokens;
    *entries = c->n;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}
