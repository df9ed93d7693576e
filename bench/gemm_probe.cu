/*
 * gemm_probe.cu — which cuBLAS call gives molt's GEMM shapes their best rate
 * (issue 12; a measuring tool, not part of the library). For each shape it
 * times, on random bf16 operands (fp32 accumulation):
 *
 *   gemmex_f32   cublasGemmEx, C in fp32 (what dense.cu calls today)
 *   gemmex_bf16  cublasGemmEx, C in bf16 (what the PyTorch peer gets)
 *   lt_f32       cublasLtMatmul, C in fp32, a 64 MiB workspace: the
 *                heuristic's first algorithm and the best of its top 16, each
 *                timed (the index of the best is printed)
 *
 * Shapes are molt's column-major calls (dense.cu): forward y = x·Wᵀ is
 * (T, N) m = out, n = T, k = in; backward dx (N, N) m = in, n = T, k = out;
 * dW (N, T) m = in, n = out, k = T. The Llama-3.2-1B / Llamba-1B linears at
 * T = 8192 (training) and the decode GEMVs at T = 1 and 64 (weight GB/s).
 *
 *   build-cuda/bench/gemm_probe [--reps N]     one JSON line a (shape, call)
 */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CB(x)                                                                                      \
    do {                                                                                           \
        cublasStatus_t s_ = (x);                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "%s:%d %s: status %d\n", __FILE__, __LINE__, #x, (int)s_);             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

// a hash of the index, uniform in [-1, 1), as bf16
__global__ void k_fill(__nv_bfloat16 *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        p[i] = __float2bfloat16((float)(h >> 8) / 8388608.0f - 1.0f);
    }
}

struct shape {
    const char       *name;
    cublasOperation_t ta, tb;
    int               m, n, k;
};

static int g_reps = 20;

// the mean time of g_reps calls of f after two warm-up calls, in ms
template <class F> static float time_ms(F f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    f();
    f();
    CK(cudaEventRecord(a));
    for (int r = 0; r < g_reps; r++)
        f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a), cudaEventDestroy(b);
    return ms / g_reps;
}

static void report(const shape &s, const char *call, float ms, int algo) {
    double fl = 2.0 * s.m * s.n * (double)s.k;
    double wbytes = 2.0 * s.m * (double)s.k; // the A operand (the weight, forward)
    printf("{\"bench\": \"gemm_probe\", \"shape\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
           "\"call\": \"%s\", \"us\": %.2f, \"tflops\": %.1f, \"a_gbs\": %.0f",
           s.name, s.m, s.n, s.k, call, ms * 1e3, fl / (ms * 1e-3) * 1e-12,
           wbytes / (ms * 1e-3) * 1e-9);
    if (algo >= 0)
        printf(", \"best_of_top\": %d", algo);
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            g_reps = atoi(argv[++i]);
    const int   T = 8192;
    const shape shapes[] = {
        // training, T = 8192: forward
        {"fwd qkv 3072x2048", CUBLAS_OP_T, CUBLAS_OP_N, 3072, T, 2048},
        {"fwd o 2048x2048", CUBLAS_OP_T, CUBLAS_OP_N, 2048, T, 2048},
        {"fwd in_proj 8224x2048", CUBLAS_OP_T, CUBLAS_OP_N, 8224, T, 2048},
        {"fwd gate_up 16384x2048", CUBLAS_OP_T, CUBLAS_OP_N, 16384, T, 2048},
        {"fwd down 2048x8192", CUBLAS_OP_T, CUBLAS_OP_N, 2048, T, 8192},
        {"fwd head 128256x2048", CUBLAS_OP_T, CUBLAS_OP_N, 128256, T, 2048},
        // backward dx = dy·W
        {"dx gate_up", CUBLAS_OP_N, CUBLAS_OP_N, 2048, T, 16384},
        {"dx down", CUBLAS_OP_N, CUBLAS_OP_N, 8192, T, 2048},
        {"dx head", CUBLAS_OP_N, CUBLAS_OP_N, 2048, T, 128256},
        // backward dW += xᵀ·dy
        {"dW gate_up", CUBLAS_OP_N, CUBLAS_OP_T, 2048, 16384, T},
        {"dW down", CUBLAS_OP_N, CUBLAS_OP_T, 8192, 2048, T},
        {"dW head", CUBLAS_OP_N, CUBLAS_OP_T, 2048, 128256, T},
        // decode
        {"dec1 in_proj", CUBLAS_OP_T, CUBLAS_OP_N, 8224, 1, 2048},
        {"dec1 out_proj", CUBLAS_OP_T, CUBLAS_OP_N, 2048, 1, 2048},
        {"dec1 gate_up", CUBLAS_OP_T, CUBLAS_OP_N, 16384, 1, 2048},
        {"dec1 down", CUBLAS_OP_T, CUBLAS_OP_N, 2048, 1, 8192},
        {"dec64 in_proj", CUBLAS_OP_T, CUBLAS_OP_N, 8224, 64, 2048},
        {"dec64 out_proj", CUBLAS_OP_T, CUBLAS_OP_N, 2048, 64, 2048},
        {"dec64 gate_up", CUBLAS_OP_T, CUBLAS_OP_N, 16384, 64, 2048},
        {"dec64 down", CUBLAS_OP_T, CUBLAS_OP_N, 2048, 64, 8192},
        {"dec64 head", CUBLAS_OP_T, CUBLAS_OP_N, 128256, 64, 2048},
    };
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (const shape &s : shapes) {
        size_t a = (size_t)s.m * s.k, b = (size_t)s.k * s.n, c = (size_t)s.m * s.n;
        maxa = a > maxa ? a : maxa, maxb = b > maxb ? b : maxb, maxc = c > maxc ? c : maxc;
    }
    __nv_bfloat16 *A, *B, *Cb;
    float         *C;
    void          *ws;
    const size_t   wsz = (size_t)64 << 20;
    CK(cudaMalloc(&A, 2 * maxa));
    CK(cudaMalloc(&B, 2 * maxb));
    CK(cudaMalloc(&Cb, 2 * maxc));
    CK(cudaMalloc(&C, 4 * maxc));
    CK(cudaMalloc(&ws, wsz));
    k_fill<<<1024, 256>>>(A, maxa, 1u);
    k_fill<<<1024, 256>>>(B, maxb, 2u);
    CK(cudaDeviceSynchronize());
    cublasHandle_t h;
    CB(cublasCreate(&h));
    cublasLtHandle_t lt;
    CB(cublasLtCreate(&lt));
    const float one = 1.0f, zero = 0.0f;
    for (const shape &s : shapes) {
        int lda = s.ta == CUBLAS_OP_N ? s.m : s.k, ldb = s.tb == CUBLAS_OP_N ? s.k : s.n;
        report(s, "gemmex_f32", time_ms([&] {
                   CB(cublasGemmEx(h, s.ta, s.tb, s.m, s.n, s.k, &one, A, CUDA_R_16BF, lda, B,
                                   CUDA_R_16BF, ldb, &zero, C, CUDA_R_32F, s.m, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
               }),
               -1);
        report(s, "gemmex_bf16", time_ms([&] {
                   CB(cublasGemmEx(h, s.ta, s.tb, s.m, s.n, s.k, &one, A, CUDA_R_16BF, lda, B,
                                   CUDA_R_16BF, ldb, &zero, Cb, CUDA_R_16BF, s.m,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
               }),
               -1);
        // cublasLt, fp32 C, the heuristic's top algorithms each timed
        cublasLtMatmulDesc_t   op;
        cublasLtMatrixLayout_t la, lb, lc;
        CB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &s.ta, sizeof(s.ta)));
        CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &s.tb, sizeof(s.tb)));
        CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.ta == CUBLAS_OP_N ? s.m : s.k,
                                      s.ta == CUBLAS_OP_N ? s.k : s.m, lda));
        CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.tb == CUBLAS_OP_N ? s.k : s.n,
                                      s.tb == CUBLAS_OP_N ? s.n : s.k, ldb));
        CB(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, s.m, s.n, s.m));
        cublasLtMatmulPreference_t pref;
        CB(cublasLtMatmulPreferenceCreate(&pref));
        CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &wsz, sizeof(wsz)));
        cublasLtMatmulHeuristicResult_t res[16];
        int                             nres = 0;
        CB(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &nres));
        float first = 0, best = 1e30f;
        int   bi = -1;
        for (int i = 0; i < nres; i++) {
            float ms = time_ms([&] {
                CB(cublasLtMatmul(lt, op, &one, A, la, B, lb, &zero, C, lc, C, lc, &res[i].algo, ws,
                                  wsz, 0));
            });
            if (i == 0)
                first = ms;
            if (ms < best)
                best = ms, bi = i;
        }
        if (nres) {
            report(s, "lt_f32_first", first, -1);
            report(s, "lt_f32_best", best, bi);
        }
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb),
            cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatmulDescDestroy(op);
    }
    return 0;
}
