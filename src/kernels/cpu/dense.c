/*
 * dense.c — CPU dense kernels: GEMM through OpenBLAS, norms and activations
 * as plain loops. See kernels.h for the contracts.
 */
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

void k_set_threads(int n) {
    if (n < 1)
        n = 1;
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

// ----------------------------------------------------------------------------
// matmul

void k_matmul(float *y, const float *x, const float *W, const float *bias, int T, int in, int out,
              int accumulate) {
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
        if (!accumulate) {
            for (int t = 0; t < T; t++)
                memcpy(y + (size_t)t * out, bias, sizeof(float) * (size_t)out);
            beta = 1.0f;
        } else {
            for (int t = 0; t < T; t++)
                for (int o = 0; o < out; o++)
                    y[(size_t)t * out + o] += bias[o];
        }
    }
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, W, in, beta,
                    y, out);
}

void k_matmul_ref(float *y, const float *x, const float *W, const float *bias, int T, int in,
                  int out, int accumulate) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = bias ? (double)bias[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += (double)x[(size_t)t * in + i] * (double)W[(size_t)o * in + i];
            float *dst = &y[(size_t)t * out + o];
            *dst = accumulate ? *dst + (float)s : (float)s;
        }
}

// ----------------------------------------------------------------------------
// norms and activations

void k_rmsnorm(float *y, const float *x, const float *w, int T, int d, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        float *yt = y + (size_t)t * d;
        float ss = 0.0f;
        for (int i = 0; i < d; i++)
            ss += xt[i] * xt[i];
        float r = 1.0f / sqrtf(ss / (float)d + eps);
        for (int i = 0; i < d; i++)
            yt[i] = xt[i] * r * w[i];
    }
}

float k_silu(float x) { return x / (1.0f + expf(-x)); }

float k_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

void k_swiglu(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++)
        gate[i] = k_silu(gate[i]) * up[i];
}

void k_softmax(float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

void k_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
