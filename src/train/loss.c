/*
 * loss.c — training losses and their gradients (see loss.h for the contract:
 * SUM returned, gradient of scale·SUM written, may be computed in place).
 * Each loss is one backend op (kernels/train_ops.h) writing a loss per row
 * into a backend buffer; here the rows come back to the host and are added
 * in order.
 *
 * Letters: n rows, V vocabulary, d row width, m matrices of L×L.
 */
#include "train/loss.h"

#include "kernels/kernels.h"

#include <stddef.h>

// Σ_r rows[r], r < n, in row order (downloaded a few at a time)
static double sum_rows(const molt_exec *ex, const double *rows, int n) {
    double buf[256], s = 0;
    for (int r = 0; r < n; r += 256) {
        int k = n - r < 256 ? n - r : 256;
        be_download(ex, buf, rows + r, sizeof(double) * (size_t)k);
        for (int i = 0; i < k; i++)
            s += buf[i];
    }
    return s;
}

double loss_ce(const molt_exec *ex, double *rows, float *dlogits, const float *logits,
               const int32_t *targets, int n, int V, float scale, int64_t *count) {
    k_xent(ex, rows, dlogits, logits, targets, n, V, scale);
    if (count) { // targets are a host array
        int64_t c = 0;
        for (int r = 0; r < n; r++)
            c += targets[r] >= 0;
        *count = c;
    }
    return sum_rows(ex, rows, n);
}

double loss_soft_ce(const molt_exec *ex, double *rows, float *dstudent, const float *student,
                    const float *teacher, int n, int V, float tau, float scale) {
    k_soft_xent(ex, rows, dstudent, student, teacher, n, V, tau, scale);
    return sum_rows(ex, rows, n);
}

double loss_rev_kl(const molt_exec *ex, double *rows, float *dstudent, const float *student,
                   const float *teacher, int n, int V, float tau, float scale) {
    k_rev_kl(ex, rows, dstudent, student, teacher, n, V, tau, scale);
    return sum_rows(ex, rows, n);
}

double loss_frobenius(const molt_exec *ex, double *rows, float *dS, const float *S,
                      const float *A, int m, int L, float scale) {
    k_l2_rows(ex, rows, dS, S, A, m, (size_t)L * (size_t)L, scale);
    return sum_rows(ex, rows, m);
}

double loss_l2_rows(const molt_exec *ex, double *rows, float *dx, const float *x, const float *y,
                    int n, int d, float scale) {
    k_l2_rows(ex, rows, dx, x, y, n, (size_t)d, scale);
    return sum_rows(ex, rows, n);
}
