/*
 * prof.cu — a kernel-time profile of the CUDA backend without a profiler
 * (Nsight Systems does not run on every machine molt meets): between
 * molt_cuda_profile_begin and molt_cuda_profile_report, every kernel launch
 * (CU_LAUNCHED), cuBLAS GEMM and async memory call of the backend records a
 * CUDA event on the stream it was queued on, named by the launch. The report
 * charges each event's name with the stream time since the previous event on
 * the same stream: the kernel's run time, plus any idle gap before it (host
 * work, a synchronisation), so the totals add up to the stream's wall time.
 * For measuring, not for production: an event per launch costs host time.
 * Single-threaded use (one exec's stream at a time).
 */
#include "kernels/cuda/common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool                      g_cu_prof;
thread_local cudaStream_t g_cu_prof_stream;

struct prof_mark {
    cudaEvent_t  ev;
    const char  *name;
    cudaStream_t s;
};

#define PROF_MAX (1 << 19) // marks kept; later launches are not recorded (the report says so)
static prof_mark *g_marks;
static int        g_nmarks, g_nev, g_dropped;

// the name a mark is filed under: "launch k_x" → "k_x"; "cublasGemmEx(h, …" → "cublasGemmEx"
static size_t key_len(const char *n) {
    const char *p = strchr(n, '(');
    return p ? (size_t)(p - n) : strlen(n);
}
static const char *key_of(const char *n) { return strncmp(n, "launch ", 7) ? n : n + 7; }

void cu_prof_mark(const char *name) {
    if (!g_cu_prof)
        return;
    if (strncmp(name, "launch ", 7) && strncmp(name, "cublasGemm", 10) &&
        strncmp(name, "cublasSgemm", 11) && strncmp(name, "cublasLtMatmul", 14) &&
        strncmp(name, "cudaMemcpy", 10) && strncmp(name, "cudaMemset", 10))
        return;
    if (g_nmarks >= PROF_MAX) {
        g_dropped++;
        return;
    }
    prof_mark *m = &g_marks[g_nmarks];
    if (g_nmarks >= g_nev) { // events are created once and reused by later profiles
        if (cudaEventCreate(&m->ev) != cudaSuccess) {
            g_dropped++;
            return;
        }
        g_nev++;
    }
    if (cudaEventRecord(m->ev, g_cu_prof_stream) != cudaSuccess) {
        g_dropped++;
        return;
    }
    m->name = name, m->s = g_cu_prof_stream;
    g_nmarks++;
}

extern "C" bool molt_cuda_profile_begin(void) {
    if (!g_marks && !(g_marks = (prof_mark *)calloc(PROF_MAX, sizeof *g_marks)))
        return false;
    cudaDeviceSynchronize();
    g_nmarks = 0, g_dropped = 0;
    g_cu_prof = true;
    return true;
}

struct prof_row {
    const char *name;
    size_t      len;
    long        calls;
    double      ms, max_ms;
};

static int by_ms(const void *a, const void *b) {
    double x = ((const prof_row *)a)->ms, y = ((const prof_row *)b)->ms;
    return (x < y) - (x > y);
}

extern "C" void molt_cuda_profile_report(FILE *f, int top) {
    if (!g_cu_prof)
        return;
    g_cu_prof = false;
    cudaDeviceSynchronize();
    int       cap = 1024, n = 0;
    prof_row *rows = (prof_row *)calloc((size_t)cap, sizeof *rows);
    double    total = 0.0;
    if (!rows)
        return;
    for (int i = 1; i < g_nmarks; i++) {
        if (g_marks[i].s != g_marks[i - 1].s)
            continue; // the first mark of a stream has no start
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, g_marks[i - 1].ev, g_marks[i].ev) != cudaSuccess)
            continue;
        const char *k = key_of(g_marks[i].name);
        size_t      len = key_len(k);
        int         r = 0;
        while (r < n && !(rows[r].len == len && !strncmp(rows[r].name, k, len)))
            r++;
        if (r == n) {
            if (n == cap)
                continue;
            rows[n].name = k, rows[n].len = len, n++;
        }
        rows[r].calls++, rows[r].ms += ms, total += ms;
        if (ms > rows[r].max_ms)
            rows[r].max_ms = ms;
    }
    qsort(rows, (size_t)n, sizeof *rows, by_ms);
    fprintf(f, "# CUDA profile: %d launches, %.2f ms of stream time%s\n", g_nmarks, total,
            g_dropped ? " (some launches not recorded: too many)" : "");
    fprintf(f, "# %-34s %8s %11s %6s %11s %10s\n", "launch", "calls", "total ms", "%", "us/call",
            "max us");
    for (int r = 0; r < n && (top <= 0 || r < top); r++)
        fprintf(f, "  %-34.*s %8ld %11.3f %6.2f %11.1f %10.1f\n", (int)rows[r].len, rows[r].name,
                rows[r].calls, rows[r].ms, total > 0 ? 100.0 * rows[r].ms / total : 0.0,
                1e3 * rows[r].ms / (double)rows[r].calls, 1e3 * rows[r].max_ms);
    free(rows);
}
