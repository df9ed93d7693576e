/*
 * test_kernels.c — dense CPU kernels against their plain reference twins over
 * a shape sweep that hits every path of k_matmul (small mat-vec loop, BLAS
 * gemv, single-block sgemm, pool-split sgemm with ragged blocks, bias and
 * accumulate), with 1 and 2 threads; RMSNorm / softmax / SwiGLU against
 * double-precision loops; and the backend table's completeness check.
 */
#include "kernels/attn.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_matmul(void) {
    static const int shapes[][3] = {{1, 8, 8},     {1, 64, 172},  {1, 300, 400}, {3, 7, 5},
                                    {17, 64, 64},  {64, 192, 512}, {257, 96, 1000}, {5, 1, 33},
                                    {128, 512, 48}, {1, 2048, 1024}};
    for (int th = 1; th <= 2; th++) {
        test_threads(th);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int T = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            float *x = malloc(sizeof(float) * (size_t)T * in), *W = malloc(sizeof(float) * (size_t)out * in);
            float *b = malloc(sizeof(float) * (size_t)out), *y = malloc(sizeof(float) * (size_t)T * out),
                  *r = malloc(sizeof(float) * (size_t)T * out);
            t_seed(si * 7 + (size_t)th);
            t_fill_normal(x, (size_t)T * in, 1.0f);
            t_fill_normal(W, (size_t)out * in, 0.1f);
            t_fill_normal(b, (size_t)out, 1.0f);
            for (int mode = 0; mode < 3; mode++) { // plain, bias, accumulate
                t_fill_normal(y, (size_t)T * out, 1.0f);
                memcpy(r, y, sizeof(float) * (size_t)T * out);
                k_matmul(TEX, y, x, W, mode == 1 ? b : NULL, T, in, out, mode == 2);
                k_matmul_ref(r, x, W, mode == 1 ? b : NULL, T, in, out, mode == 2);
                char what[96];
                snprintf(what, sizeof what, "matmul T=%d in=%d out=%d mode %d threads %d", T, in, out,
                         mode, th);
                t_close(what, y, r, (size_t)T * out, 1e-4, 1e-6);
            }
            free(x), free(W), free(b), free(y), free(r);
        }
    }
    test_threads(1);
}

static void test_elementwise(void) {
    int T = 9, d = 67;
    float x[9 * 67], w[67], y[9 * 67], r[9 * 67];
    t_seed(3);
    t_fill_normal(x, sizeof x / sizeof x[0], 2.0f);
    t_fill_normal(w, 67, 1.0f);
    k_rmsnorm(TEX, y, x, w, T, d, 1e-5f);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < d; i++)
            ss += (double)x[t * d + i] * (double)x[t * d + i];
        double rs = 1.0 / sqrt(ss / d + 1e-5);
        for (int i = 0; i < d; i++)
            r[t * d + i] = (float)((double)x[t * d + i] * rs * (double)w[i]);
    }
    t_close("rmsnorm", y, r, sizeof y / sizeof y[0], 1e-5, 1e-6);
    float s[67], sr[67];
    memcpy(s, x, sizeof s);
    double mx = -1e30, sum = 0;
    for (int i = 0; i < 67; i++)
        mx = fmax(mx, (double)x[i]);
    for (int i = 0; i < 67; i++)
        sum += exp((double)x[i] - mx);
    for (int i = 0; i < 67; i++)
        sr[i] = (float)(exp((double)x[i] - mx) / sum);
    k_softmax(TEX, s, 67);
    t_close("softmax", s, sr, 67, 1e-6, 1e-6);
    float g[67], u[67], gr[67];
    memcpy(g, x, sizeof g);
    memcpy(u, x + 67, sizeof u);
    for (int i = 0; i < 67; i++)
        gr[i] = (float)((double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i]);
    k_swiglu(TEX, g, u, 67);
    t_close("swiglu", g, gr, 67, 1e-5, 1e-6);
}

static void test_exp(void) {
    double worst = 0;
    for (int i = 0; i <= 4000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 4000000.0f;
        double want = exp((double)x), got = (double)k_expf(x);
        double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    CHECK(worst <= 2e-7, "k_expf relative error %.3g", worst);
    CHECK(k_expf(-200.0f) < 1e-37f && k_expf(0.0f) == 1.0f && isfinite(k_expf(1000.0f)),
          "k_expf edges");
    CHECK(isnan(k_expf(NAN)), "k_expf(NaN) must stay NaN (the NaN guard relies on it)");
    printf("k_expf: max relative error %.3g over [-87, 88]\n", worst);
}

static void test_backend_table(void) {
    CHECK(TEX->be == &molt_backend_cpu, "the default exec runs on the CPU");
    molt_backend broken = molt_backend_cpu;
    broken.softmax = NULL;
    molt_exec ex = molt_exec_cpu(2);
    CHECK(!molt_exec_init(&ex, &broken, 1), "a table with a missing op must be refused");
    CHECK(ex.be == &molt_backend_cpu && ex.nth == 2, "refusal keeps the exec as it was");
    CHECK(molt_exec_init(&ex, NULL, 3) && ex.be == &molt_backend_cpu && ex.nth == 3,
          "NULL selects the CPU");
    CHECK(molt_exec_cpu(0).nth == 1 && molt_exec_threads(&ex, -4).nth == 1,
          "a thread count below 1 means one thread");
}

// the matmul_w tile widening equals the scalar conversions on every input
static void test_widen_half(void) {
    static uint16_t h[65536];
    static float    got[65536];
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int bf = 0; bf <= 1; bf++) {
        cpu_widen_half(got, h, 65536, bf);
        int bad = 0;
        for (int i = 0; i < 65536; i++) {
            float want = bf ? molt_bf16_to_f32(h[i]) : molt_f16_to_f32(h[i]);
            bad += memcmp(&want, &got[i], 4) != 0;
        }
        CHECK(bad == 0, "%s: %d of 65536 inputs widen to other bits", bf ? "bf16" : "f16", bad);
    }
}

// cpu_dot64's contract spelled out independently (the oracle the twin must equal): lane
// l = i mod 64 of fused multiply-adds in order, (a_l + a_l+16) + (a_l+32 + a_l+48), then
// pairs 8 apart, 4 apart, 2 apart, 1 apart
static float dot64_plain(const float *a, const float *b, int n) {
    float lane[64];
    for (int l = 0; l < 64; l++)
        lane[l] = 0.0f;
    for (int i = 0; i < n; i++)
        lane[i % 64] = fmaf(a[i], b[i], lane[i % 64]);
    float u[16];
    for (int l = 0; l < 16; l++)
        u[l] = (lane[l] + lane[l + 16]) + (lane[l + 32] + lane[l + 48]);
    float h[8], q[4], r[2];
    for (int l = 0; l < 8; l++)
        h[l] = u[l] + u[l + 8];
    for (int l = 0; l < 4; l++)
        q[l] = h[l] + h[l + 4];
    for (int l = 0; l < 2; l++)
        r[l] = q[l] + q[l + 2];
    return r[0] + r[1];
}

// ---- matvec (kernels/cpu/matvec.c): the fp32 matmul for T ≤ K_MATVEC_T ----
// every path gives cpu_dot64's bits per element, for any output sub-range; the
// twin is close to the double reference; k_matmul at T ≤ 16 on shapes above
// the small cut is those bits at 1-4 threads (when the AVX-512 path runs)
static void test_matvec(void) {
    static const int Ts[] = {1, 2, 3, 5, 8, 15, 16};
    static const int ins[] = {1, 7, 8, 9, 63, 64, 200, 773};
    static const int outs[] = {1, 3, 4, 5, 17, 64, 129};
    int cases = 0;
    for (size_t a = 0; a < sizeof Ts / sizeof Ts[0]; a++)
        for (size_t b = 0; b < sizeof ins / sizeof ins[0]; b++)
            for (size_t c = 0; c < sizeof outs / sizeof outs[0]; c++) {
                int    T = Ts[a], in = ins[b], out = outs[c];
                size_t ny = (size_t)T * out;
                float *x = malloc(sizeof(float) * (size_t)T * in);
                float *W = malloc(sizeof(float) * (size_t)out * in);
                float *y0 = malloc(sizeof(float) * ny), *y1 = malloc(sizeof(float) * ny);
                float *r = malloc(sizeof(float) * ny), *yi = malloc(sizeof(float) * ny);
                t_seed(a * 100 + b * 10 + c);
                t_fill_normal(x, (size_t)T * in, 1.0f);
                t_fill_normal(W, (size_t)out * in, 0.1f);
                t_fill_normal(yi, ny, 1.0f);
                for (int add = 0; add <= 1; add++) {
                    for (size_t i = 0; i < ny; i++) // poisoned outputs unless added to
                        y0[i] = y1[i] = r[i] = add ? yi[i] : NAN;
                    cpu_matvec(MV_SCALAR, y0, out, x, W, T, in, 0, out, add);
                    if (!add)
                        for (size_t i = 0; i < ny; i++)
                            r[i] = 0.0f;
                    k_matmul_ref(r, x, W, NULL, T, in, out, add);
                    char what[96];
                    snprintf(what, sizeof what, "matvec twin T=%d in=%d out=%d add %d", T, in,
                             out, add);
                    t_close(what, y0, r, ny, 1e-4, 1e-4);
                    for (int o = 0; o < out; o++) // the twin is cpu_dot64 itself
                        for (int t = 0; t < T; t++) {
                            float s = dot64_plain(W + (size_t)o * in, x + (size_t)t * in, in);
                            s = add ? yi[(size_t)t * out + o] + s : s;
                            CHECK(!memcmp(&s, &y0[(size_t)t * out + o], 4), "%s: != cpu_dot64",
                                  what);
                        }
                    for (int isa = MV_AVX512; isa <= MV_AVX2; isa++) {
                        if (!cpu_matvec_isa_ok(isa))
                            continue;
                        int mid = out / 3; // two ragged sub-ranges, same bits as the twin
                        for (size_t i = 0; i < ny; i++)
                            y1[i] = add ? yi[i] : NAN;
                        cpu_matvec(isa, y1, out, x, W, T, in, 0, mid, add);
                        cpu_matvec(isa, y1, out, x, W, T, in, mid, out, add);
                        CHECK(!memcmp(y0, y1, sizeof(float) * ny), "%s: %s != twin", what,
                              isa == MV_AVX512 ? "avx512" : "avx2");
                    }
                    cases++;
                }
                free(x), free(W), free(y0), free(y1), free(r), free(yi);
            }
    // through k_matmul: above the small cut, T ≤ 16, 1-4 threads, bias
    static const int big[][3] = {{1, 768, 2048}, {4, 2048, 768}, {16, 768, 100}, {7, 129, 300}};
    for (size_t si = 0; si < sizeof big / sizeof big[0]; si++) {
        int    T = big[si][0], in = big[si][1], out = big[si][2];
        size_t ny = (size_t)T * out;
        float *x = malloc(sizeof(float) * (size_t)T * in), *W = malloc(sizeof(float) * out * in);
        float *bias = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * ny);
        float *y1 = malloc(sizeof(float) * ny);
        t_seed(900 + si);
        t_fill_normal(x, (size_t)T * in, 1.0f);
        t_fill_normal(W, (size_t)out * in, 0.1f);
        t_fill_normal(bias, (size_t)out, 1.0f);
        for (int th = 1; th <= 4; th++) {
            test_threads(th);
            for (size_t i = 0; i < ny; i++)
                y[i] = NAN;
            k_matmul(TEX, y, x, W, bias, T, in, out, 0);
            if (th == 1)
                memcpy(y1, y, sizeof(float) * ny);
            else // every CPU: the matvec path (AVX-512, AVX2 or the twin), never OpenBLAS
                CHECK(!memcmp(y, y1, sizeof(float) * ny), "k_matmul T=%d in=%d out=%d: %d "
                      "threads != 1 thread", T, in, out, th);
            int bad = 0;
            for (int o = 0; o < out; o++)
                for (int t = 0; t < T; t++) {
                    float s = bias[o] + cpu_dot64(W + (size_t)o * in, x + (size_t)t * in, in);
                    bad += memcmp(&s, &y[(size_t)t * out + o], 4) != 0;
                }
            CHECK(bad == 0, "k_matmul T=%d in=%d out=%d threads %d: %d elements != cpu_dot64", T,
                  in, out, th, bad);
        }
        test_threads(1);
        free(x), free(W), free(bias), free(y), free(y1);
    }
    printf("matvec: %d cases, paths scalar%s%s, bit-identical to cpu_dot64\n", cases,
           cpu_matvec_isa_ok(MV_AVX512) ? ", avx512" : "", cpu_matvec_isa_ok(MV_AVX2) ? ", avx2" : "");
}

// decode attention (k_attn_prefill, T = 1) gives the bits of the plain loop —
// each score one in-order dot, k_softmax_scaled, the weighted sum in key
// order — whichever way the scores of 16 keys are run side by side
static void test_decode_scores_bits(void) {
    enum { H = 4, KV = 2, HD = 64, CAP = 80 };
    float *kc = malloc(sizeof(float) * KV * CAP * HD), *vc = malloc(sizeof(float) * KV * CAP * HD);
    float  q[H * HD], got[H * HD], want[H * HD], sc[CAP];
    float *work = malloc(sizeof(float) * k_attn_prefill_work(1, CAP, H, KV, 4));
    t_seed(77);
    t_fill_normal(kc, (size_t)KV * CAP * HD, 1.0f);
    t_fill_normal(vc, (size_t)KV * CAP * HD, 1.0f);
    t_fill_normal(q, H * HD, 1.0f);
    int bad = 0;
    for (int S = 1; S <= CAP; S += (S < 40 ? 1 : 13))
        for (int th = 1; th <= 2; th++) {
            test_threads(th);
            k_attn_prefill(TEX, got, q, 1, S - 1, H, KV, HD, kc, vc, CAP, work);
            for (int h = 0; h < H; h++) {
                const float *K = kc + (size_t)(h / (H / KV)) * CAP * HD;
                const float *V = vc + (size_t)(h / (H / KV)) * CAP * HD;
                for (int s = 0; s < S; s++) {
                    float dot = 0.0f;
                    for (int i = 0; i < HD; i++)
                        dot += q[h * HD + i] * K[(size_t)s * HD + i];
                    sc[s] = dot * (1.0f / sqrtf((float)HD));
                }
                k_softmax_scaled(sc, S, 1.0f);
                for (int i = 0; i < HD; i++)
                    want[h * HD + i] = 0.0f;
                for (int s = 0; s < S; s++)
                    for (int i = 0; i < HD; i++)
                        want[h * HD + i] += sc[s] * V[(size_t)s * HD + i];
            }
            bad += memcmp(got, want, sizeof got) != 0;
        }
    test_threads(1);
    CHECK(bad == 0, "decode attention: %d contexts differ from the one-key-at-a-time bits", bad);
    free(kc), free(vc), free(work);
}

int main(void) {
    test_widen_half();
    test_matmul();
    test_elementwise();
    test_exp();
    test_backend_table();
    test_matvec();
    test_decode_scores_bits();
    return t_done("test_kernels");
}
