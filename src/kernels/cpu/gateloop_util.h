/*
 * gateloop_util.h — small helpers shared by the GateLoop forward (gateloop.c)
 * and backward (gateloop_backward.c) kernels. Internal to src/kernels/cpu.
 * Complex numbers are float pairs (re, im); see kernels/gateloop.h.
 */
#ifndef MOLT_GATELOOP_UTIL_H
#define MOLT_GATELOOP_UTIL_H

#include "core/exec.h"
#include "kernels/gateloop.h"

#include <math.h>
#include <stddef.h>

#define GL_TWO_PI 6.283185307179586

// Threads for a pool job of `total` flops over n_items independent items: 1
// (inline) when small, else exactly ex->nth (results never depend on it).
static inline int gl_nth(const molt_exec *ex, size_t n_items, size_t total) {
    return total <= 32768 || n_items < 2 ? 1 : ex->nth;
}

// exp of a log-magnitude, flushed to 0 below GL_EXP_FLUSH (no denormals)
static inline float gl_decay(float x) { return x < GL_EXP_FLUSH ? 0.0f : expf(x); }

// log sigmoid(x) = min(x, 0) − log1p(exp(−|x|)), without overflow
static inline float gl_logsigmoid(float x) {
    return (x < 0.0f ? x : 0.0f) - log1pf(expf(-fabsf(x)));
}

// an angle reduced to [−π, π] (a running phase stays small, so double keeps it exact enough)
static inline double gl_wrap(double f) { return remainder(f, GL_TWO_PI); }

// out = (xr + i·xi)·(c + i·s)
static inline void gl_rot(float *out, float xr, float xi, float c, float s) {
    out[0] = xr * c - xi * s;
    out[1] = xr * s + xi * c;
}

// rows re[0..P) and im = re + P of a complex row, multiplied by m·(c + i·s) in place
static inline void gl_rot_rows(float *re, int P, float m, float c, float s) {
    float *im = re + P, ar = m * c, ai = m * s;
    for (int p = 0; p < P; p++) {
        float r = ar * re[p] - ai * im[p], i = ar * im[p] + ai * re[p];
        re[p] = r;
        im[p] = i;
    }
}

// dst (a complex row: re[0..P), im = re + P) += m·(c + i·s)·src (same layout)
static inline void gl_add_rot(float *dst, const float *src, int P, float m, float c, float s) {
    float ar = m * c, ai = m * s;
    for (int p = 0; p < P; p++) {
        float re = ar * src[p] - ai * src[P + p], im = ar * src[P + p] + ai * src[p];
        dst[p] += re;
        dst[P + p] += im;
    }
}

// Σ_j exp(seg[j])·Re(qh_j·kh_j) over J pairs (no conjugate), j in order
static inline float gl_score(const float *qh, const float *kh, const float *seg, int J) {
    float s = 0.0f;
    for (int j = 0; j < J; j++) {
        float e = gl_decay(seg[j]);
        if (e != 0.0f)
            s += e * (qh[2 * j] * kh[2 * j] - qh[2 * j + 1] * kh[2 * j + 1]);
    }
    return s;
}

#endif
