/*
 * core.h — internals shared by every molt source file: the context, error
 * reporting, allocation and assertions. Not part of the public API.
 *
 * Error contract: a function that can fail returns molt_status; on failure it
 * has called molt__err(ctx, code, fmt, ...) exactly once with a message that
 * names the file / tensor / argument at fault, and freed what it allocated.
 * MOLT_ASSERT is for broken invariants of molt itself, never for user input.
 */
#ifndef MOLT_CORE_H
#define MOLT_CORE_H

#include "molt.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MOLT_ERRMSG_MAX 1024

struct molt_backend;
struct molt_ctx {
    molt_status status;
    char        msg[MOLT_ERRMSG_MAX];
    int         n_threads;
    // where models loaded with this context run (molt_ctx_set_device;
    // kernels/device.c): NULL = the CPU backend; device index for a GPU
    const struct molt_backend *be;
    int                        device;
    unsigned                   exec_flags; // MOLT_EXEC_* (molt_ctx_set_matmul)
    struct molt_comm          *comm; // data-parallel ranks (dist/comm.h); NULL: one process
};

#if defined(__GNUC__)
#define MOLT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MOLT_HIDDEN       __attribute__((visibility("hidden")))
#else
#define MOLT_PRINTF(a, b)
#define MOLT_HIDDEN
#endif

// Records the error in ctx (ctx may be NULL) and returns code.
molt_status molt__err(molt_ctx *ctx, molt_status code, const char *fmt, ...) MOLT_PRINTF(3, 4);
// Prefixes the current message with "prefix: " (adds context on the way up).
void        molt__err_prefix(molt_ctx *ctx, const char *fmt, ...) MOLT_PRINTF(2, 3);

void molt__log(molt_log_level lvl, const char *fmt, ...) MOLT_PRINTF(2, 3);

// Allocation through the process-wide hook. All return NULL on failure.
void *molt__malloc(size_t n);
void *molt__calloc(size_t count, size_t size);
void *molt__realloc(void *p, size_t n);
void  molt__free(void *p);
char *molt__strdup(const char *s);
// 64-byte aligned blocks (SIMD). Free with molt__free_aligned.
void *molt__malloc_aligned(size_t n);
void  molt__free_aligned(void *p);

// Test hook: make the n-th allocation from now fail (0 = never). Returns the
// number of live blocks (leak checks).
void    molt__alloc_fail_after(int64_t n);
int64_t molt__alloc_live(void);

// Checked size arithmetic: false on overflow.
bool molt__mul_ok(size_t a, size_t b, size_t *out);

_Noreturn void molt__abort(const char *file, int line, const char *fmt, ...) MOLT_PRINTF(3, 4);
#define MOLT_ASSERT(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            molt__abort(__FILE__, __LINE__, "assertion failed: %s", #x);                           \
    } while (0)

double molt__now(void); // monotonic seconds

#define MOLT_MIN(a, b) ((a) < (b) ? (a) : (b))
// evaluates x (a molt_status) and returns it from the caller unless MOLT_OK
#define MOLT_TRY(x)                                                                                \
    do {                                                                                           \
        molt_status s_ = (x);                                                                      \
        if (s_ != MOLT_OK)                                                                         \
            return s_;                                                                             \
    } while (0)
#define MOLT_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif // MOLT_CORE_H
