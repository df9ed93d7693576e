/*
 * mem.h — backend-owned memory. Every buffer the engine computes on —
 * parameters, gradients, optimizer moments, the training arena, sequence and
 * slot state, RoPE tables — is allocated by a backend (molt_backend.mem) and
 * freed by the same one, so a device backend keeps them all in device memory
 * and only logits, losses and checkpoints cross to the host.
 *
 * Objects that own memory remember the backend they got it from (model.be,
 * train_model.be, ...). Contracts (every backend):
 *   be_alloc(be, bytes)   bytes of 64-byte aligned memory, contents undefined
 *                         (not zeroed: untouched pages of a large KV cache are
 *                         never committed); NULL when out of memory (bytes 0 →
 *                         a valid minimal block)
 *   be_free(be, p)        p from be_alloc of the same backend, or NULL
 *   be_upload(ex, dst, src, bytes)    host src → backend dst
 *   be_download(ex, dst, src, bytes)  backend src → host dst
 *   be_copy(ex, dst, src, bytes)      backend → backend (regions do not overlap)
 *   be_zero(ex, p, bytes)             backend memory ← 0
 *   be_sync(ex)           returns when all work queued on ex is done
 *   mem.info(used, total) optional (NULL on the CPU): the device's bytes in use
 *                         and in all (0, 0 when it cannot tell)
 * be->mem.host_visible: the host may read and write the memory directly (CPU).
 *
 * Recorded work (optional; NULL on backends without it, the CPU's): a run of
 * ops queued on an exec between graph_begin and graph_end is recorded, not
 * run, into a graph that graph_run replays later, with the same arguments and
 * the same memory (what that memory holds at replay is what it reads). The
 * work recorded must take no host arrays that change between replays (ids,
 * positions: the per-row pointer tables by value are fine) and must not
 * synchronise the host; the backend fails the recording otherwise.
 *   graph_begin(ex)       ex->stream becomes the recording queue; false: no
 *                         recording now (off, or profiling), ex unchanged
 *   graph_end(ex)         the graph, or NULL when the recording failed (the
 *                         work was not run; nothing sticky recorded); restores
 *                         ex->stream
 *   graph_run(ex, g)      queues a replay on ex; false, and nothing queued,
 *                         when memory the graph may read was freed or a
 *                         cached weight rewritten since it was recorded
 *   graph_free(g)         g or NULL
 * Code that fills buffers on the host (loaders, initializers) does so only
 * through be_upload, or directly when host_visible.
 */
#ifndef MOLT_KERNELS_MEM_H
#define MOLT_KERNELS_MEM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/exec.h"

struct molt_backend;

typedef struct molt_mem_ops {
    bool  host_visible;
    void *(*alloc)(size_t bytes);
    void  (*free)(void *p);
    void  (*upload)(const molt_exec *ex, void *dst, const void *src, size_t bytes);
    void  (*download)(const molt_exec *ex, void *dst, const void *src, size_t bytes);
    void  (*copy)(const molt_exec *ex, void *dst, const void *src, size_t bytes);
    void  (*zero)(const molt_exec *ex, void *p, size_t bytes);
    void  (*sync)(const molt_exec *ex);
    void  (*info)(size_t *used, size_t *total);
    bool  (*graph_begin)(molt_exec *ex);
    void *(*graph_end)(molt_exec *ex);
    bool  (*graph_run)(const molt_exec *ex, void *g);
    void  (*graph_free)(void *g);
} molt_mem_ops;

void *be_alloc(const struct molt_backend *be, size_t bytes);
void  be_free(const struct molt_backend *be, void *p);
// float counts, the common case: be_allocf(be, n) = be_alloc(be, n·4), NULL on overflow
float *be_allocf(const struct molt_backend *be, size_t n);
void  be_upload(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  be_download(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  be_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  be_zero(const molt_exec *ex, void *p, size_t bytes);
void  be_sync(const molt_exec *ex);
// An exec of backend be with one thread, for the memory calls of code that has
// no exec at hand (object constructors and destructors).
molt_exec be_exec1(const struct molt_backend *be);
// After work queued on ex: MOLT_OK, or the device's first recorded failure as
// an error in ctx (a device backend's sticky error, then cleared; kernels/
// device.c). Synchronizes a device backend; free on the CPU.
struct molt_ctx;
int be_status(struct molt_ctx *ctx, const molt_exec *ex); // a molt_status

#endif
