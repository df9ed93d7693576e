/*
 * blaslt.cu — bf16 GEMMs (fp32 accumulation and C) through cublasLt with a
 * workspace, for dense.cu's gemm_bf16: opt-in MOLT_GEMM_LT=1 until it has
 * run on a GPU. Run 8's bench/gemm_probe (H100) measured cublasLt's first
 * heuristic algorithm with a 64 MiB workspace against cublasGemmEx at molt's
 * shapes: at decode shapes it reads the weights up to 1.7× faster (T = 1
 * in_proj 11 µs vs molt's GEMV 19.5; T = 64 out_proj 9 µs vs 14), at training
 * shapes the same within a few percent. With it on, matmul_w with bf16
 * weights under the bf16 exec takes this GEMM for T ≤ 8 too (x rounded to
 * bf16, as for larger T) instead of the fp32-x CUDA-core GEMV.
 *
 * Per shape (ops, m, n, k, leading dims) the descriptors and the heuristic's
 * first algorithm are made once and kept (the first choice, never a timed
 * one: the same algorithm, so the same bits, for a shape on a given GPU and
 * library). One workspace per stream (GEMMs of two streams may run at once);
 * host side under cu_blas_lock's mutex (the caller holds it).
 */
#include "kernels/cuda/common.cuh"

#include <cublasLt.h>
#include <stdlib.h>
#include <string.h>

#define LT_WS      ((size_t)64 << 20) // workspace bytes a stream
#define LT_SHAPES  256
#define LT_STREAMS 8

struct lt_shape {
    int                    oa, ob, m, n, k, lda, ldb, ldc;
    int                    ok; // 1 usable, -1 no algorithm (GemmEx instead)
    cublasLtMatmulDesc_t   op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t   algo;
};

static cublasLtHandle_t g_lt;
static int              g_lt_state; // 0 not yet, 1 ok, -1 failed
static lt_shape         g_shapes[LT_SHAPES];
static int              g_nshapes;
static struct {
    cudaStream_t s;
    void        *ws;
} g_ws[LT_STREAMS];
static int g_nws;

bool cu_lt_on(void) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("MOLT_GEMM_LT");
        env = e && !strcmp(e, "1");
    }
    return env;
}

static void *lt_workspace(cudaStream_t s) {
    for (int i = 0; i < g_nws; i++)
        if (g_ws[i].s == s)
            return g_ws[i].ws;
    if (g_nws == LT_STREAMS)
        return NULL;
    void *p = NULL;
    if (cudaMalloc(&p, LT_WS) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    g_ws[g_nws].s = s, g_ws[g_nws].ws = p;
    g_nws++;
    return p;
}

static lt_shape *lt_find(int oa, int ob, int m, int n, int k, int lda, int ldb, int ldc) {
    for (int i = 0; i < g_nshapes; i++) {
        lt_shape *e = &g_shapes[i];
        if (e->oa == oa && e->ob == ob && e->m == m && e->n == n && e->k == k && e->lda == lda &&
            e->ldb == ldb && e->ldc == ldc)
            return e;
    }
    if (g_nshapes == LT_SHAPES)
        return NULL;
    lt_shape *e = &g_shapes[g_nshapes++];
    memset(e, 0, sizeof *e);
    e->oa = oa, e->ob = ob, e->m = m, e->n = n, e->k = k, e->lda = lda, e->ldb = ldb, e->ldc = ldc;
    e->ok = -1;
    cublasOperation_t ta = (cublasOperation_t)oa, tb = (cublasOperation_t)ob;
    size_t            ws = LT_WS;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int                             nres = 0;
    if (cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) ||
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) ||
        cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) ||
        cublasLtMatrixLayoutCreate(&e->la, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k,
                                   ta == CUBLAS_OP_N ? k : m, lda) ||
        cublasLtMatrixLayoutCreate(&e->lb, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n,
                                   tb == CUBLAS_OP_N ? n : k, ldb) ||
        cublasLtMatrixLayoutCreate(&e->lc, CUDA_R_32F, m, n, ldc) ||
        cublasLtMatmulPreferenceCreate(&pref) ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof ws) ||
        cublasLtMatmulAlgoGetHeuristic(g_lt, e->op, e->la, e->lb, e->lc, e->lc, pref, 1, &res,
                                       &nres) ||
        nres < 1)
        e->ok = -1;
    else {
        e->algo = res.algo;
        e->ok = 1;
    }
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    return e;
}

bool cu_lt_gemm_bf16(const molt_exec *ex, int oa, int ob, int m, int n, int k, const void *a,
                     int lda, const void *b, int ldb, float beta, float *C, int ldc) {
    if (!cu_lt_on())
        return false;
    if (g_lt_state == 0)
        g_lt_state = cublasLtCreate(&g_lt) == CUBLAS_STATUS_SUCCESS ? 1 : -1;
    if (g_lt_state != 1)
        return false;
    lt_shape *e = lt_find(oa, ob, m, n, k, lda, ldb, ldc);
    void     *ws = e && e->ok == 1 ? lt_workspace(cu_stream(ex)) : NULL;
    if (!ws)
        return false; // no algorithm, no workspace: the caller's cublasGemmEx
    const float one = 1.0f;
    CUBLAS(cublasLtMatmul(g_lt, e->op, &one, a, e->la, b, e->lb, &beta, C, e->lc, C, e->lc,
                          &e->algo, ws, LT_WS, cu_stream(ex)));
    return true;
}
