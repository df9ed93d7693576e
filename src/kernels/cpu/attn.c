/*
 * attn.c — CPU attention core (contracts: kernels/attn.h): RoPE, the KV-cache
 * append, causal attention over a cache (decode loops; prefill and the
 * materialized probabilities with one sgemm per head for the scores and one
 * for the output), batched decode rows, and the training forward over B
 * sequences in RB-row blocks. The training backward is attn_backward.c.
 *
 * Threads (molt's pool, ex->nth; OpenBLAS stays single-threaded, dense.c):
 * prefill, probs: heads h ≡ ith (mod nth); decode: kv heads in contiguous
 * ranges, once the context pays for it; decode rows: (row, kv head) items in
 * contiguous ranges; training: (b, h) pairs ≡ ith (mod nth). Each unit is
 * computed whole by one thread with its own scratch, so results do not depend
 * on the thread count.
 */
#include "kernels/attn.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/q8.h"
#include "kernels/cpu/attn_util.h"
#include "kernels/kernels.h"

#include "core/pool.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// RoPE

// one row of nh heads, pairs (i, i+half) rotated by (cos, sgn·sin); sgn = ±1
// is exact, so sgn = −1 gives a·c + b·s and b·c − a·s bit for bit
K_SIMD static void rope_row(float *x, int nh, int hd, const float *ct, const float *st,
                            float sgn) {
    int half = hd / 2;
    for (int h = 0; h < nh; h++) {
        float *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half], s = st[i] * sgn;
            v[i] = a * ct[i] - b * s;
            v[i + half] = b * ct[i] + a * s;
        }
    }
}

void cpu_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd, int pos0,
              int period, const int32_t *pos, const float *cos, const float *sin, int inverse) {
    size_t half = (size_t)(hd / 2);
    for (int r = 0; r < rows; r++) {
        size_t p = (size_t)(pos ? pos[r] : pos0 + r % period);
        rope_row(x + (size_t)r * ld, nh, hd, cos + p * half, sin + p * half,
                 inverse ? -1.0f : 1.0f);
    }
}

// ----------------------------------------------------------------------------
// KV-cache append

void cpu_kv_append(const molt_exec *ex, float *const *kc, float *const *vc, const float *k,
                   const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                   const int32_t *pos) {
    size_t bytes = sizeof(float) * (size_t)hd;
    for (int r = 0; r < rows; r++) {
        int    c = pos ? r : 0;
        size_t p = (size_t)(pos ? pos[r] : pos0 + r);
        for (int j = 0; j < KV; j++) {
            size_t dst = ((size_t)j * cap + p) * hd, src = (size_t)r * ld + (size_t)j * hd;
            memcpy(kc[c] + dst, k + src, bytes);
            if (vc && v)
                memcpy(vc[c] + dst, v + src, bytes);
        }
    }
}

// ----------------------------------------------------------------------------
// decode: one query per head

// sc[g, s] = (q_g · K[s]) · scale for g < grp, s < S (sc row stride S), each
// dot summed i = 0 … hd−1 in order, one chain per (g, s): the chains of
// SC_KEYS keys run side by side — the same operations in the same order per
// key, so the same bits as one key at a time, without waiting on one add
// chain per key (the cost at long context). K is read once for the group.
#define SC_KEYS 16

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SC_AVX2 __attribute__((target("avx2")))

// 8 keys at once (AVX2, hd % 8 == 0): each 8×8 tile of the keys is transposed in registers,
// so that lane k of t[i] holds key k's element i0 + i, and lane k of acc runs key k's chain
// d += q[i]·k[i] for i = 0 … hd−1 in order, a multiply then an add (no FMA: the scalar
// loop's roundings) — the same bits as one key at a time, with 8 + 24 + 16 instructions per
// 64 products instead of 64 strided loads and 128 scalar operations.
SC_AVX2 static void scores8_avx2(float *sc, const float *q, const float *ks, int hd,
                                 float scale) {
    __m256 acc = _mm256_setzero_ps();
    for (int i0 = 0; i0 < hd; i0 += 8) {
        __m256 r[8], a[8], b[8];
        for (int k = 0; k < 8; k++)
            r[k] = _mm256_loadu_ps(ks + (size_t)k * hd + i0);
        for (int k = 0; k < 8; k += 2) { // pairs of rows interleaved
            a[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
            a[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
        }
        for (int k = 0; k < 8; k += 4) { // quads: elements 4c + {0,1} / {2,3} of rows k..k+3
            b[k] = _mm256_shuffle_ps(a[k], a[k + 2], 0x44);
            b[k + 1] = _mm256_shuffle_ps(a[k], a[k + 2], 0xEE);
            b[k + 2] = _mm256_shuffle_ps(a[k + 1], a[k + 3], 0x44);
            b[k + 3] = _mm256_shuffle_ps(a[k + 1], a[k + 3], 0xEE);
        }
        __m256 t[8]; // t[i]: element i0 + i of the 8 rows (halves: rows 0-3, rows 4-7)
        for (int i = 0; i < 4; i++) {
            t[i] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x20);
            t[i + 4] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x31);
        }
        for (int i = 0; i < 8; i++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[i0 + i]), t[i]));
    }
    _mm256_storeu_ps(sc, _mm256_mul_ps(acc, _mm256_set1_ps(scale)));
}

// AVX2 as the q8_0 kernels detect it (cpuid and the OS's saved YMM state)
static int scores_avx2(void) {
    static int ok = -1;
    if (ok < 0)
        ok = cpu_q8_isa_available(Q8_AVX2) && !getenv("MOLT_NO_AVX2_SCORES");
    return ok;
}
#endif

K_SIMD static void decode_scores(float *sc, const float *qg, int grp, const float *K, int S,
                                 int hd, float scale) {
    int s = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (hd % 8 == 0 && scores_avx2())
        for (; s + 8 <= S; s += 8)
            for (int g = 0; g < grp; g++)
                scores8_avx2(sc + (size_t)g * S + s, qg + (size_t)g * hd, K + (size_t)s * hd, hd,
                             scale);
#endif
    for (; s + SC_KEYS <= S; s += SC_KEYS) {
        const float *ks = K + (size_t)s * hd;
        for (int g = 0; g < grp; g++) {
            const float *q = qg + (size_t)g * hd;
            float        d[SC_KEYS] = {0};
            for (int i = 0; i < hd; i++)
                for (int k = 0; k < SC_KEYS; k++)
                    d[k] += q[i] * ks[(size_t)k * hd + i];
            for (int k = 0; k < SC_KEYS; k++)
                sc[(size_t)g * S + s + k] = d[k] * scale;
        }
    }
    for (; s < S; s++) {
        const float *ks = K + (size_t)s * hd;
        for (int g = 0; g < grp; g++) {
            const float *q = qg + (size_t)g * hd;
            float        dot = 0.0f;
            for (int i = 0; i < hd; i++)
                dot += q[i] * ks[i];
            sc[(size_t)g * S + s] = dot * scale;
        }
    }
}

// og[g][i] += Σ_s p[g, s]·V[s][i] over nk rows of V (row stride hd), s in order for every
// element (a multiply, then an add); 64 outputs held in registers across the rows instead of
// read and written back every row. The P·V of both decodes (attend_one; attn_f16.c over its
// widened value tiles).
#define PV_I 64
K_SIMD void cpu_attn_pv_rows(float *og, const float *p, size_t ldp, int grp, const float *V,
                             int nk, int hd) {
    for (int g = 0; g < grp; g++) {
        const float *pg = p + (size_t)g * ldp;
        float       *oh = og + (size_t)g * hd;
        int          i0 = 0;
        for (; i0 + PV_I <= hd; i0 += PV_I) {
            float acc[PV_I];
            memcpy(acc, oh + i0, sizeof acc);
            for (int s = 0; s < nk; s++)
                for (int i = 0; i < PV_I; i++)
                    acc[i] += pg[s] * V[(size_t)s * hd + i0 + i];
            memcpy(oh + i0, acc, sizeof acc);
        }
        for (int s = 0; s < nk; s++)
            for (int i = i0; i < hd; i++)
                oh[i] += pg[s] * V[(size_t)s * hd + i];
    }
}

// The grp query heads that share a KV head are handled together: each cached
// key row is read once per group (the scores), the value rows once per query
// head (cpu_attn_pv_rows; a group's later heads find them in cache). scores: [grp, S]. Handles kv
// heads [j0, j1).
static void attend_one(float *heads, const float *q, int S, int H, int KV, int hd,
                       const float *kc, const float *vc, int cap, float *scores, int j0, int j1) {
    int   grp = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    for (int j = j0; j < j1; j++) {
        const float *K = kc + (size_t)j * cap * hd, *V = vc + (size_t)j * cap * hd;
        const float *qg = q + (size_t)j * grp * hd;
        decode_scores(scores, qg, grp, K, S, hd, scale);
        for (int g = 0; g < grp; g++)
            k_softmax_scaled(scores + (size_t)g * S, S, 1.0f); // = cpu_softmax
        float *og = heads + (size_t)j * grp * hd;
        memset(og, 0, sizeof(float) * (size_t)grp * hd);
        cpu_attn_pv_rows(og, scores, (size_t)S, grp, V, S, hd);
    }
}

typedef struct decode_task {
    float       *heads, *scores;
    const float *q, *kc, *vc;
    int          H, KV, hd, S, cap;
} decode_task;

static void decode_heads(void *arg, int ith, int nth) {
    const decode_task *j = arg;
    int                j0, j1;
    molt_pool_range(j->KV, ith, nth, &j0, &j1);
    float *sc = j->scores + (size_t)ith * (j->H / j->KV) * j->S;
    attend_one(j->heads, j->q, j->S, j->H, j->KV, j->hd, j->kc, j->vc, j->cap, sc, j0, j1);
}

// ----------------------------------------------------------------------------
// prefill and probabilities: per head, one sgemm for the scores

// sc[T,S] = softmax_causal((Q_h[T,hd] · K[S,hd]ᵀ)·scale), query t at position
// pos + t (HF order: matmul, then scale; zeros after key pos + t)
static void head_probs(float *sc, const float *Qh, int ldq, const float *K, int T, int S, int pos,
                       int hd) {
    float scale = 1.0f / sqrtf((float)hd);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, hd, 1.0f, Qh, ldq, K, hd, 0.0f, sc,
                S);
    for (size_t i = 0; i < (size_t)T * S; i++)
        sc[i] *= scale;
    for (int t = 0; t < T; t++) {
        int    n = pos + t + 1; // visible keys
        float *row = sc + (size_t)t * S;
        k_softmax_scaled(row, n, 1.0f); // = cpu_softmax
        for (int s = n; s < S; s++)
            row[s] = 0.0f;
    }
}

typedef struct prefill_task {
    float       *heads, *scores; // heads NULL: probabilities only, scores = A[H,T,S]
    const float *q, *kc, *vc;
    int          H, KV, hd, T, pos, cap;
} prefill_task;

// worker ith of nth: heads h ≡ ith (mod nth), with its own [T,S] score block
// (probabilities: the block is head h's slice of A)
static void prefill_heads(void *arg, int ith, int nth) {
    const prefill_task *j = arg;
    int    H = j->H, hd = j->hd, grp = H / j->KV, T = j->T, S = j->pos + j->T;
    size_t TS = (size_t)T * S;
    for (int h = ith; h < H; h += nth) {
        float       *sc = j->heads ? j->scores + (size_t)ith * TS : j->scores + (size_t)h * TS;
        const float *K = j->kc + (size_t)(h / grp) * j->cap * hd; // [S, hd]
        head_probs(sc, j->q + (size_t)h * hd, H * hd, K, T, S, j->pos, hd);
        if (!j->heads)
            continue;
        // heads_h[T,hd] = P[T,S] · V[S,hd]
        const float *V = j->vc + (size_t)(h / grp) * j->cap * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, S, 1.0f, sc, S, V, hd, 0.0f,
                    j->heads + (size_t)h * hd, H * hd);
    }
}

size_t k_attn_prefill_work(int T, int S, int H, int KV, int nth) {
    // scores [nth, max(T, grp), S] (decode: grp rows per thread; prefill: T)
    int rows = T > H / KV ? T : H / KV;
    return (size_t)(nth > 1 ? nth : 1) * (size_t)rows * (size_t)S;
}

void cpu_attn_prefill(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                      int KV, int hd, const float *kc, const float *vc, int cap, float *work) {
    int nth = ex->nth;
    if (T <= 0)
        return;
    if (T == 1) {
        // threads only pay off once the context is long
        int use = (pos + 1) * H * hd >= (1 << 18) ? (nth < KV ? nth : KV) : 1;
        decode_task j = {heads, work, q, kc, vc, H, KV, hd, pos + 1, cap};
        molt_pool_run(use > 1 ? use : 1, decode_heads, &j);
        return;
    }
    prefill_task j = {heads, work, q, kc, vc, H, KV, hd, T, pos, cap};
    int          use = nth < H ? nth : H;
    molt_pool_run(use > 1 ? use : 1, prefill_heads, &j);
}

void cpu_attn_probs(const molt_exec *ex, float *A, const float *q, int T, int H, int KV, int hd,
                    const float *kc, int cap) {
    if (T <= 0)
        return;
    prefill_task j = {NULL, A, q, kc, NULL, H, KV, hd, T, 0, cap};
    int          use = ex->nth < H ? ex->nth : H;
    molt_pool_run(use > 1 ? use : 1, prefill_heads, &j);
}

// ----------------------------------------------------------------------------
// batched decode rows

size_t k_attn_decode_rows_work(int H, int KV, int cap, int nth) {
    // scores [nth, grp, cap]
    return (size_t)(nth > 1 ? nth : 1) * (size_t)(H / KV) * (size_t)cap;
}

typedef struct rows_task {
    float         *heads, *scores;
    const float   *q;
    float *const  *kc, *const *vc;
    const int32_t *pos;
    int            H, KV, hd, n, cap;
} rows_task;

// items (row, kv head) split in contiguous ranges; a row's heads are the same
// attend_one calls single-sequence decode makes, so each row's result does not
// depend on the batch around it
static void rows_heads(void *arg, int ith, int nth) {
    const rows_task *j = arg;
    int              KV = j->KV, H = j->H, hd = j->hd, lo, hi;
    molt_pool_range(j->n * KV, ith, nth, &lo, &hi);
    float *sc = j->scores + (size_t)ith * (H / KV) * j->cap;
    for (int it = lo; it < hi; it++) {
        int r = it / KV, kv = it % KV, S = j->pos[r] + 1;
        attend_one(j->heads + (size_t)r * H * hd, j->q + (size_t)r * H * hd, S, H, KV, hd,
                   j->kc[r], j->vc[r], j->cap, sc, kv, kv + 1);
    }
}

void cpu_attn_decode_rows(const molt_exec *ex, float *heads, const float *q, int n,
                          const int32_t *pos, int H, int KV, int hd, float *const *kc,
                          float *const *vc, int cap, float *work) {
    rows_task job = {heads, work, q, kc, vc, pos, H, KV, hd, n, cap};
    molt_pool_run(attn_rows_threads(ex, pos, n, H, KV, hd), rows_heads, &job);
}

// ----------------------------------------------------------------------------
// training forward

typedef struct fwd_task {
    float       *P, *heads; // heads NULL: probabilities only
    const float *qkv;
    int          ld, B, T, H, KV, hd;
} fwd_task;

// rows of one score block, in place: P = softmax over keys 0..t of S·scale,
// zeros after t (row r of the block is query t0 + r; ld T)
K_SIMD static void softmax_causal_rows(float *P, int t0, int rb, int T, float scale) {
    for (int r = 0; r < rb; r++) {
        int    t = t0 + r;
        float *row = P + (size_t)r * T;
        k_softmax_scaled(row, t + 1, scale);
        for (int s = t + 1; s < T; s++)
            row[s] = 0.0f;
    }
}

// P_h = softmax_causal((q_h · k_jᵀ)·hd^-½)  [T,T];  heads_h = P_h · v_j  [T,hd]
// Query rows in blocks of RB: block [t0, t1) only sees keys 0..t1-1, so the
// two sgemms skip the masked upper triangle (about 40% of the T×T work).
static void fwd_heads(void *arg, int ith, int nth) {
    const fwd_task *j = arg;
    int   H = j->H, KV = j->KV, hd = j->hd, grp = H / KV, T = j->T, RB = attn_rb(T);
    float scale = 1.0f / sqrtf((float)hd);
    size_t ld = (size_t)j->ld;
    const float *q = j->qkv, *k = q + (size_t)H * hd, *v = k + (size_t)KV * hd;
    for (int task = ith; task < j->B * H; task += nth) {
        int          b = task / H, h = task % H, kv = h / grp;
        float       *P = j->P + (size_t)task * T * T;
        const float *qb = q + (size_t)b * T * ld + (size_t)h * hd;
        const float *kb = k + (size_t)b * T * ld + (size_t)kv * hd;
        for (int t0 = 0; t0 < T; t0 += RB) {
            int    t1 = T < t0 + RB ? T : t0 + RB, rb = t1 - t0, n = t1;
            float *Pb = P + (size_t)t0 * T;
            // HF order: matmul, then scale (as the prefill)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, n, hd, 1.0f, qb + t0 * ld,
                        j->ld, kb, j->ld, 0.0f, Pb, T);
            softmax_causal_rows(Pb, t0, rb, T, scale);
            if (j->heads)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hd, n, 1.0f, Pb, T,
                            v + (size_t)b * T * ld + (size_t)kv * hd, j->ld, 0.0f,
                            j->heads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd, H * hd);
        }
    }
}

void cpu_attn_train_forward(const molt_exec *ex, float *P, float *heads, const float *qkv, int ld,
                            int B, int T, int H, int KV, int hd) {
    if (B <= 0 || T <= 0)
        return;
    fwd_task job = {P, heads, qkv, ld, B, T, H, KV, hd};
    int      nth = ex->nth < B * H ? ex->nth : B * H;
    if ((size_t)T * T * hd * B * H < 100000)
        nth = 1;
    molt_pool_run(nth > 1 ? nth : 1, fwd_heads, &job);
}
