/*
 * graph.cu — recorded work (mem.h: graph_begin / graph_end / graph_run /
 * graph_free) as CUDA graphs: a decode step of a few hundred small launches
 * replayed by one cudaGraphLaunch, so the GPU no longer waits on the host's
 * launch rate (models/slots.c records the step).
 *
 * Recording: stream capture (thread-local mode) on a non-blocking stream of
 * the calling thread's own: the legacy stream, which the engine's execs use,
 * cannot be captured, but a graph recorded elsewhere may be launched on it.
 * While a thread records, a failure that the checked calls (CU, CUBLAS,
 * CU_LAUNCHED) report is kept aside instead of becoming the sticky error
 * (cu_capture_swallow): the recording fails, nothing has run, and the caller
 * runs the work directly. What may not be recorded fails it on purpose: a host
 * array uploaded inside (cu_host_to_device, upload, download: its contents at
 * recording time would be replayed forever), and any call that synchronises
 * (the runtime refuses those in a capture). A failed recording also marks the
 * bf16 weight cache stale, since a conversion it recorded never ran.
 *
 * Staleness: the memory epoch (cu_mem_epoch) moves on every device free and
 * every bf16 weight-cache invalidation; a graph recorded at another epoch may
 * read freed memory or an out-of-date bf16 weight, so graph_run refuses it
 * (returns false) and the caller records anew. Writes of plain memory (state,
 * weights through AdamW with their cached copies kept current) do not move it:
 * a replay reads what the memory holds then.
 *
 * MOLT_CUDA_GRAPHS=0 in the environment turns recording off (graph_begin
 * answers false): the A/B switch of the decode benchmark. Profiling
 * (prof.cu) turns it off too: its events need every launch on the host.
 */
#include "kernels/cuda/common.cuh"

#include <atomic>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static std::atomic<unsigned long> g_epoch{1}, g_replays{0};

void          cu_mem_epoch_bump(void) { g_epoch.fetch_add(1); }
unsigned long cu_mem_epoch(void) { return g_epoch.load(); }

extern "C" unsigned long molt_cuda_graph_replays(void) { return g_replays.load(); }

// the calling thread's recording
static thread_local bool         t_rec;      // recording now
static thread_local bool         t_rec_fail; // a checked call failed while recording
static thread_local char         t_rec_why[256];
static thread_local cudaStream_t t_rec_stream, t_saved;

bool cu_capturing(void) { return t_rec; }

bool cu_capture_swallow(const char *what, const char *detail) {
    if (!t_rec)
        return false;
    if (!t_rec_fail) {
        t_rec_fail = true;
        snprintf(t_rec_why, sizeof t_rec_why, "%s%s%s", what, detail ? ": " : "",
                 detail ? detail : "");
    }
    return true;
}

typedef struct cu_graph {
    cudaGraphExec_t exec;
    unsigned long   epoch;
} cu_graph;

static bool graphs_off(void) { // read at every recording (a step's cost is far larger)
    const char *e = getenv("MOLT_CUDA_GRAPHS");
    return (e && !strcmp(e, "0")) || g_cu_prof;
}

extern "C" bool cuda_graph_begin(molt_exec *ex) {
    if (t_rec || graphs_off())
        return false;
    if (!t_rec_stream && cudaStreamCreateWithFlags(&t_rec_stream, cudaStreamNonBlocking) !=
                             cudaSuccess) {
        cudaGetLastError();
        t_rec_stream = NULL;
        return false;
    }
    if (cudaStreamBeginCapture(t_rec_stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    t_rec = true;
    t_rec_fail = false;
    t_rec_why[0] = '\0';
    t_saved = (cudaStream_t)ex->stream;
    ex->stream = (void *)t_rec_stream;
    return true;
}

extern "C" void *cuda_graph_end(molt_exec *ex) {
    if (!t_rec)
        return NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(t_rec_stream, &g);
    t_rec = false;
    ex->stream = (void *)t_saved;
    cu_graph *r = NULL;
    if (e == cudaSuccess && !t_rec_fail && g) {
        r = (cu_graph *)calloc(1, sizeof *r);
        if (r && cudaGraphInstantiate(&r->exec, g, 0) != cudaSuccess) {
            free(r);
            r = NULL;
        }
    }
    if (g)
        cudaGraphDestroy(g);
    cudaGetLastError(); // a refused recording leaves nothing sticky
    if (!r) {
        cu_wcache_stale_all(); // a conversion recorded but never run must not count as done
        return NULL;
    }
    r->epoch = cu_mem_epoch();
    return r;
}

extern "C" bool cuda_graph_run(const molt_exec *ex, void *gp) {
    cu_graph *g = (cu_graph *)gp;
    if (!g || g->epoch != cu_mem_epoch())
        return false;
    if (!CU(cudaGraphLaunch(g->exec, cu_stream(ex))))
        return false;
    g_replays.fetch_add(1);
    return true;
}

extern "C" void cuda_graph_free(void *gp) {
    cu_graph *g = (cu_graph *)gp;
    if (!g)
        return;
    CU(cudaGraphExecDestroy(g->exec));
    free(g);
}
