/*
 * mem.c — the CPU backend's memory (mem.h): host memory from molt's
 * allocator (so the allocation-failure hook of the tests reaches every
 * engine buffer), 64-byte aligned, not zeroed; transfers are memcpy.
 */
#include "core/core.h"
#include "kernels/cpu/cpu.h"

#include <string.h>

void *cpu_mem_alloc(size_t bytes) { return molt__malloc_aligned(bytes ? bytes : 1); }
void cpu_mem_free(void *p) { molt__free_aligned(p); }
void cpu_mem_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    (void)ex;
    if (bytes)
        memcpy(dst, src, bytes);
}
void cpu_mem_zero(const molt_exec *ex, void *p, size_t bytes) {
    (void)ex;
    if (bytes)
        memset(p, 0, bytes);
}
void cpu_mem_sync(const molt_exec *ex) { (void)ex; }
