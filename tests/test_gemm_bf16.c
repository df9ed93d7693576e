/*
 * test_gemm_bf16.c — the CPU bf16 × bf16 GEMM (gemm_bf16.c, `--matmul bf16` prefill):
 *   1. against a double-precision sum of the same rounded operands: x rounded to bf16 (nearest
 *      even, molt_f32_to_bf16), W bf16, over shapes whose T, out and in are and are not
 *      multiples of the tile (4 × 4), of the thread unit (16 rows) and of 32 columns, with and
 *      without accumulation into y: |y - ref| ≤ 1e-5 · Σ|x·w| + 1e-30 (fp32 sums of exact
 *      products);
 *   2. the same bits at 1, 2, 3 and 4 threads;
 *   3. odd in: not run (returns 0, y untouched) — cpu_matmul_w keeps the fp32 path;
 *   4. through cpu_matmul_w: with MOLT_EXEC_BF16 a bf16 weight at T > 16 takes this path (the
 *      same bits as calling it), without the flag the fp32 path (different bits).
 * Skips (77) where the CPU has no AVX512-BF16.
 */
#include "core/dtype.h"
#include "core/exec.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static molt_exec ex_n(int nth) {
    return molt_exec_cpu(nth);
}

int main(void) {
    if (!cpu_gemm_bf16_available())
        return t_skip("test_gemm_bf16", "no AVX512-BF16 on this CPU (or its ZMM state is off)");
    const int shapes[][3] = {{17, 64, 32},  {20, 48, 40},  {33, 100, 77}, {128, 96, 130},
                             {129, 34, 33}, {300, 70, 2},  {64, 768, 20}, {21, 258, 19}};
    int       nshape = (int)(sizeof shapes / sizeof shapes[0]), bad = 0, diff_threads = 0;
    double    worst = 0;
    for (int si = 0; si < nshape; si++) {
        int       T = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
        float    *x = malloc(sizeof(float) * (size_t)T * in), *y = malloc(sizeof(float) * T * out);
        float    *y0 = malloc(sizeof(float) * (size_t)T * out), *y2 = malloc(sizeof(float) * T * out);
        uint16_t *W = malloc(sizeof(uint16_t) * (size_t)out * in);
        t_fill_uniform(x, (size_t)T * in, -2, 2);
        for (size_t i = 0; i < (size_t)out * in; i++)
            W[i] = molt_f32_to_bf16(t_uniform(-1, 1));
        for (int add = 0; add < 2; add++) {
            t_fill_uniform(y0, (size_t)T * out, -1, 1);
            memcpy(y, y0, sizeof(float) * (size_t)T * out);
            molt_exec e1 = ex_n(1);
            CHECK(cpu_gemm_bf16(&e1, y, x, W, T, in, out, add), "[%d %d %d] did not run", T, in,
                  out);
            for (int t = 0; t < T; t++)
                for (int o = 0; o < out; o++) {
                    double s = add ? (double)y0[(size_t)t * out + o] : 0, mag = fabs(s);
                    for (int k = 0; k < in; k++) {
                        double p =
                            (double)molt_bf16_to_f32(molt_f32_to_bf16(x[(size_t)t * in + k])) *
                            (double)molt_bf16_to_f32(W[(size_t)o * in + k]);
                        s += p;
                        mag += fabs(p);
                    }
                    double err = fabs((double)y[(size_t)t * out + o] - s);
                    if (err > 1e-5 * mag + 1e-30)
                        bad++;
                    if (mag > 0 && err / mag > worst)
                        worst = err / mag;
                }
            for (int nth = 2; nth <= 4; nth++) {
                memcpy(y2, y0, sizeof(float) * (size_t)T * out);
                molt_exec en = ex_n(nth);
                cpu_gemm_bf16(&en, y2, x, W, T, in, out, add);
                if (memcmp(y, y2, sizeof(float) * (size_t)T * out))
                    diff_threads++;
            }
        }
        // through cpu_matmul_w: the flag selects this path, its absence the fp32 one
        molt_w    w = {MOLT_BF16, W};
        molt_exec ef = ex_n(2);
        ef.flags = MOLT_EXEC_BF16;
        cpu_matmul_w(&ef, y2, x, w, NULL, T, in, out, 0);
        molt_exec e2 = ex_n(2);
        cpu_gemm_bf16(&e2, y, x, W, T, in, out, 0);
        CHECK(!memcmp(y, y2, sizeof(float) * (size_t)T * out),
              "[%d %d %d] cpu_matmul_w under MOLT_EXEC_BF16 is not the bf16 GEMM", T, in, out);
        molt_exec e3 = ex_n(2);
        cpu_matmul_w(&e3, y2, x, w, NULL, T, in, out, 0);
        CHECK(memcmp(y, y2, sizeof(float) * (size_t)T * out) != 0,
              "[%d %d %d] cpu_matmul_w without the flag gave the bf16 GEMM's bits", T, in, out);
        free(x), free(y), free(y0), free(y2), free(W);
    }
    CHECK(bad == 0, "%d elements off the double sum of the rounded operands (worst %.3g)", bad,
          worst);
    CHECK(diff_threads == 0, "%d runs at 2-4 threads differ from 1 thread", diff_threads);
    // odd in: not run, y untouched
    float     xo[17 * 3], yo[17 * 2], ys[17 * 2];
    uint16_t  Wo[2 * 3] = {0};
    molt_exec e1 = ex_n(1);
    t_fill_uniform(xo, 17 * 3, -1, 1);
    t_fill_uniform(yo, 17 * 2, -1, 1);
    memcpy(ys, yo, sizeof ys);
    CHECK(!cpu_gemm_bf16(&e1, yo, xo, Wo, 17, 3, 2, 0), "odd in ran");
    CHECK(!memcmp(ys, yo, sizeof ys), "odd in changed y");
    printf("gemm_bf16: %d shapes, worst |y - ref| / Σ|x·w| = %.3g, same bits at 1-4 threads\n",
           nshape, worst);
    return t_done("test_gemm_bf16");
}
