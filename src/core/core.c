/*
 * core.c — status strings, the context, error messages, logging, allocation
 * hooks and the abort path. The library's only way to stop the process is
 * molt__abort on a broken internal invariant.
 */
#include "core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ----------------------------------------------------------------------------
// status

static const char *const STATUS_STR[MOLT_STATUS_COUNT] = {
    "ok",                  // 0
    "I/O error",           // -1
    "malformed input",     // -2
    "unsupported",         // -3
    "out of memory",       // -4
    "shape mismatch",      // -5
    "invalid argument",    // -6
    "non-finite value",    // -7
    "missing",             // -8
    "internal error",      // -9
};
_Static_assert(sizeof(STATUS_STR) / sizeof(STATUS_STR[0]) == MOLT_STATUS_COUNT,
               "every molt_status needs a string");

const char *molt_status_str(molt_status s) {
    int i = -(int)s;
    if (i < 0 || i >= MOLT_STATUS_COUNT)
        return "unknown status";
    return STATUS_STR[i];
}

// ----------------------------------------------------------------------------
// context

molt_ctx *molt_ctx_new(void) {
    molt_ctx *c = molt__calloc(1, sizeof(*c));
    if (c)
        c->n_threads = 1;
    return c;
}
void molt_ctx_free(molt_ctx *ctx) { molt__free(ctx); }
const char *molt_last_error(const molt_ctx *ctx) { return ctx ? ctx->msg : ""; }
molt_status molt_last_status(const molt_ctx *ctx) { return ctx ? ctx->status : MOLT_OK; }
void molt_ctx_set_threads(molt_ctx *ctx, int n) {
    if (ctx)
        ctx->n_threads = n < 1 ? 1 : n;
}
int molt_ctx_threads(const molt_ctx *ctx) { return ctx ? ctx->n_threads : 1; }

molt_status molt__err(molt_ctx *ctx, molt_status code, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
        va_end(ap);
        ctx->status = code;
    }
    return code;
}

void molt__err_prefix(molt_ctx *ctx, const char *fmt, ...) {
    if (!ctx)
        return;
    char buf[MOLT_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 2 >= sizeof buf)
        return;
    buf[n++] = ':';
    buf[n++] = ' ';
    size_t rest = sizeof buf - (size_t)n - 1, old = strlen(ctx->msg);
    if (old > rest)
        old = rest;
    memcpy(buf + n, ctx->msg, old);
    buf[(size_t)n + old] = 0;
    memcpy(ctx->msg, buf, sizeof buf);
}

// ----------------------------------------------------------------------------
// logging

static void default_log(molt_log_level lvl, const char *msg, void *user) {
    (void)user;
    if (lvl >= MOLT_LOG_WARN)
        fprintf(stderr, "molt: %s\n", msg);
}
static molt_log_fn g_log_fn = default_log;
static void       *g_log_user;

void molt_log_set(molt_log_fn fn, void *user) {
    g_log_fn = fn ? fn : default_log;
    g_log_user = user;
}

void molt__log(molt_log_level lvl, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(lvl, buf, g_log_user);
}

// ----------------------------------------------------------------------------
// allocation. Every block carries a 16-byte header with its size so that the
// hook sees old sizes (lua_Alloc style) and the test hook can count live blocks.

static void *default_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}
static molt_alloc_fn g_alloc = default_alloc;
static void         *g_alloc_user;
// atomics: allocations happen on pool workers too (the teacher sampler)
static _Atomic int64_t g_fail_after; // 0 = never
static _Atomic int64_t g_live;

void molt_set_allocator(molt_alloc_fn fn, void *user) {
    g_alloc = fn ? fn : default_alloc;
    g_alloc_user = user;
}
void    molt__alloc_fail_after(int64_t n) { atomic_store(&g_fail_after, n); }
int64_t molt__alloc_live(void) { return atomic_load(&g_live); }

#define HDR 16

// Under AddressSanitizer the header (and the aligned allocator's slack before
// its block) is poisoned while the block is live, so a read or write 1..16
// bytes before a block is reported as it would be without the header.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define HDR_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define HDR_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define HDR_POISON(p, n)   ((void)(p), (void)(n))
#define HDR_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static bool should_fail(void) {
    int64_t n = atomic_load_explicit(&g_fail_after, memory_order_relaxed);
    while (n > 0) // count down once per allocation; exactly one sees 1 → 0
        if (atomic_compare_exchange_weak(&g_fail_after, &n, n - 1))
            return n == 1;
    return false;
}

void *molt__realloc(void *p, size_t n) {
    if (n > SIZE_MAX - HDR)
        return NULL;
    if (should_fail())
        return NULL;
    size_t old = 0;
    unsigned char *base = NULL;
    if (p) {
        base = (unsigned char *)p - HDR;
        HDR_UNPOISON(base, HDR);
        memcpy(&old, base, sizeof old);
    }
    unsigned char *nb = g_alloc(g_alloc_user, base, p ? old + HDR : 0, n + HDR);
    if (!nb) {
        if (base)
            HDR_POISON(base, HDR);
        return NULL;
    }
    if (!p)
        atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed);
    memcpy(nb, &n, sizeof n);
    HDR_POISON(nb, HDR);
    return nb + HDR;
}
void *molt__malloc(size_t n) { return molt__realloc(NULL, n ? n : 1); }
void *molt__calloc(size_t count, size_t size) {
    size_t n;
    if (!molt__mul_ok(count, size, &n))
        return NULL;
    void *p = molt__malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}
void molt__free(void *p) {
    if (!p)
        return;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t old;
    HDR_UNPOISON(base, HDR);
    memcpy(&old, base, sizeof old);
    g_alloc(g_alloc_user, base, old + HDR, 0);
    atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
}
void molt_free(void *p) { molt__free(p); }
char *molt__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = molt__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *molt__malloc_aligned(size_t n) {
    if (n > SIZE_MAX - 64 - sizeof(void *))
        return NULL;
    unsigned char *raw = molt__malloc(n + 64 + sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t a = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    memcpy((void *)(a - sizeof(void *)), &raw, sizeof raw);
    HDR_POISON(raw, (size_t)(a - (uintptr_t)raw)); // slack + the stored pointer
    return (void *)a;
}
void molt__free_aligned(void *p) {
    if (!p)
        return;
    void *raw;
    HDR_UNPOISON((unsigned char *)p - sizeof(void *), sizeof raw);
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof raw);
    HDR_UNPOISON(raw, (size_t)((unsigned char *)p - (unsigned char *)raw));
    molt__free(raw);
}

bool molt__mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

// ----------------------------------------------------------------------------
// abort and time

_Noreturn void molt__abort(const char *file, int line, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "molt: internal error at %s:%d: %s\n", file, line, buf);
    abort();
}

double molt__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
