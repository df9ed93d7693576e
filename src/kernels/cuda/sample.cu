/*
 * sample.cu — decode sampling on the GPU (kernels.h: k_sample_rows): one
 * block per row of logits, only the token ids stay on the device for the
 * caller to download (n int32s instead of n·V floats).
 *
 * Per row: a finiteness check and the argmax (the lowest index among equal
 * maxima: pairs reduced by value, then index); at temperature > 0 the CPU's
 * x = l/τ, m = max x (= the max logit / τ: division by τ > 0 is monotone),
 * e_v = exp(x_v − m), then the inverse CDF at coin·Σe: each thread owns a
 * contiguous chunk of the row and sums its e_v in order in double; thread 0
 * takes the exclusive prefix of the chunk sums in order; the one thread whose
 * chunk holds the target re-sums its chunk in the same order and stops at the
 * first v whose running sum passes it. Deterministic (fixed orders); the
 * CPU sums in float in index order, so the two can differ only where the coin
 * lies within rounding of a cumulative boundary.
 */
#include "kernels/cuda/common.cuh"

#define SAMPLE_THREADS 512

__global__ void k_sample_rows(int32_t *idx, const float *logits, const float *coin, float temp,
                              int V) {
    __shared__ float  bv[SAMPLE_THREADS];
    __shared__ int    bi[SAMPLE_THREADS];
    __shared__ double pre[SAMPLE_THREADS + 1];
    __shared__ int    pick;
    int               r = blockIdx.x, t = threadIdx.x;
    const float      *l = logits + (size_t)r * V;
    // argmax and finiteness over a strided pass (coalesced)
    float best = -INFINITY;
    int   bidx = V, bad = 0;
    for (int v = t; v < V; v += SAMPLE_THREADS) {
        float x = l[v];
        if (!isfinite(x))
            bad = 1;
        else if (x > best || bidx == V) // strided v ascending: the first of equal maxima
            best = x, bidx = v;
    }
    bad = __syncthreads_or(bad);
    if (bad) {
        if (t == 0)
            idx[r] = -1;
        return;
    }
    bv[t] = best, bi[t] = bidx;
    __syncthreads();
    for (int s = SAMPLE_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) {
            float ov = bv[t + s];
            int   oi = bi[t + s];
            if (oi < V && (bi[t] == V || ov > bv[t] || (ov == bv[t] && oi < bi[t])))
                bv[t] = ov, bi[t] = oi;
        }
        __syncthreads();
    }
    int   greedy = bi[0];
    float m = bv[0] / temp;
    if (temp <= 0.0f || !isfinite(m)) {
        if (t == 0)
            idx[r] = greedy;
        return;
    }
    // chunk sums of e_v in order, then the prefix
    int    ch = (V + SAMPLE_THREADS - 1) / SAMPLE_THREADS, v0 = t * ch, v1 = min(V, v0 + ch);
    double sum = 0.0;
    for (int v = v0; v < v1; v++)
        sum += (double)expf(l[v] / temp - m);
    pre[t + 1] = sum;
    if (t == 0)
        pick = V - 1;
    __syncthreads();
    if (t == 0) {
        pre[0] = 0.0;
        for (int k = 1; k <= SAMPLE_THREADS; k++)
            pre[k] += pre[k - 1];
    }
    __syncthreads();
    double target = (double)coin[r] * pre[SAMPLE_THREADS];
    if (v0 < v1 && target >= pre[t] && target < pre[t + 1]) {
        double acc = pre[t];
        int    got = v1 - 1;
        for (int v = v0; v < v1; v++) {
            acc += (double)expf(l[v] / temp - m);
            if (target < acc) {
                got = v;
                break;
            }
        }
        pick = got;
    }
    __syncthreads();
    if (t == 0)
        idx[r] = pick;
}

extern "C" void cuda_sample_rows(const molt_exec *ex, int32_t *idx, const float *logits,
                                 const float *coin, float temperature, int n, int V) {
    if (n <= 0 || V <= 0)
        return;
    float *dc = NULL;
    if (temperature > 0.0f &&
        !(dc = (float *)cu_host_to_device(ex, coin, sizeof(float) * (size_t)n)))
        return;
    for (int r0 = 0; r0 < n; r0 += 65535) { // grid.x rows per launch
        int nr = n - r0 < 65535 ? n - r0 : 65535;
        k_sample_rows<<<nr, SAMPLE_THREADS, 0, cu_stream(ex)>>>(
            idx + r0, logits + (size_t)r0 * V, dc ? dc + r0 : NULL, temperature, V);
        CU_LAUNCHED("k_sample_rows");
    }
    if (dc)
        cu_scratch_free(ex, dc);
}
