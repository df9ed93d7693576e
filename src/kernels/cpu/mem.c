/*
 * mem.c — the CPU backend's memory (mem.h): host memory from molt's
 * allocator (so the allocation-failure hook of the tests reaches every
 * engine buffer), 64-byte aligned, not zeroed; transfers are memcpy.
 * Blocks of 32 MB and more (weights, large caches and slot states) ask Linux
 * for transparent huge pages (madvise; where THP is "madvise" or "always"):
 * decode streams the weights once per token and reads them faster through
 * 2 MB pages (docs/BENCHMARKS.md). Pages are still committed on first touch,
 * 2 MB at a time. MOLT_NO_HUGEPAGES=1 turns this off.
 */
#include "core/core.h"
#include "kernels/cpu/cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define HUGE_MIN ((size_t)32 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)

void *cpu_mem_alloc(size_t bytes) {
    void *p = molt__malloc_aligned(bytes ? bytes : 1);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p && bytes >= HUGE_MIN && !getenv("MOLT_NO_HUGEPAGES")) {
        uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        uintptr_t e = ((uintptr_t)p + bytes) & ~(HUGE_PAGE - 1);
        if (e > a)
            madvise((void *)a, e - a, MADV_HUGEPAGE); // advice only: failure changes nothing
    }
#endif
    return p;
}
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
