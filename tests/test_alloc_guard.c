/*
 * test_alloc_guard.c — under AddressSanitizer (make asan) a read 1..16 bytes
 * before a block from molt's allocator is reported, although the allocator
 * keeps a 16-byte size header there (and the aligned allocator up to 72 bytes
 * of slack): core.c poisons both while the block is live. Each bad read runs
 * in a forked child that must die with ASan's report; in a build without
 * ASan the bad reads are skipped (they would read molt's own header), and
 * only the good paths (realloc keeps contents, free/aligned free) run.
 */
#include "core/core.h"
#include "testutil.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#else
#define HAVE_ASAN 0
#endif

static volatile unsigned char g_sink;

// the child reads p[-off]; returns whether the child was stopped by ASan
static int child_dies(const unsigned char *p, int off) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr); // ASan's report is expected
        g_sink = p[-off];
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
    // good paths: contents survive realloc, aligned blocks are aligned
    unsigned char *a = molt__malloc(10);
    CHECK(a != NULL, "malloc");
    for (int i = 0; i < 10; i++)
        a[i] = (unsigned char)i;
    a = molt__realloc(a, 1000);
    CHECK(a != NULL, "realloc");
    int same = 1;
    for (int i = 0; i < 10; i++)
        same &= a[i] == (unsigned char)i;
    CHECK(same, "realloc keeps contents");
    unsigned char *b = molt__malloc_aligned(100);
    CHECK(b != NULL && ((uintptr_t)b & 63) == 0, "aligned");
    memset(b, 1, 100);
    if (HAVE_ASAN) {
        static const int offs[] = {1, 8, 16};
        for (int i = 0; i < 3; i++) {
            CHECK(child_dies(a, offs[i]), "read %d bytes before a block not reported",
                  offs[i]);
            CHECK(child_dies(b, offs[i]), "read %d bytes before an aligned block not reported",
                  offs[i]);
        }
        CHECK(!child_dies(a, -5), "a read inside the block was reported");
    } else {
        printf("test_alloc_guard: underflow checks skipped (not an ASan build)\n");
    }
    molt__free(a);
    molt__free_aligned(b);
    CHECK(molt__alloc_live() == 0, "live blocks: %lld", (long long)molt__alloc_live());
    return t_done("test_alloc_guard");
}
