/*
 * attn_f16.c — the CPU attention ops over f16 KV caches (contracts and the
 * cache layout: kernels/attn.h, "f16 KV cache"): the append narrows f32 → f16
 * (f16.c, F16C / AVX-512 or the scalar twin, same bits), the attention widens
 * exactly (f16.c's cpu_widen_f16: vcvtph2ps, or its twin matmul_w.c's
 * cpu_widen_half) and computes in f32.
 *
 * Decode (T = 1, and each batched row) is attn.c's decode in the same order:
 * 16 keys' scores side by side, each key's dot product summed i = 0 … hd−1 in
 * one chain, then softmax, then P·V row after row. Blocks of 16 keys are
 * widened into [hd, 16] tiles (the layout is element-major), so 16 chains are
 * one vector over adjacent floats, and four blocks run side by side; values
 * are widened 64 rows at a time.
 * The result is bit-identical to attn.c's decode over f32 caches holding the
 * widened values. The bytes read per key are half of f32's.
 * Prefill (T > 1): per head, the keys widened into Kᵀ [hd, S16] and the values
 * into V [S, hd], then attn.c's two sgemms (scores, P·V).
 *
 * Threads as attn.c: decode splits kv heads in contiguous ranges once the
 * context pays for it, rows split (row, kv head) items, prefill heads
 * h ≡ ith (mod nth); each unit is computed whole by one thread in its own
 * scratch, so results do not depend on the thread count.
 */
#include "kernels/attn.h"
#include "kernels/cpu/attn_util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/pool.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define KB 16 // keys per block of the layout

static size_t pad16(size_t n) { return (n + KB - 1) & ~(size_t)(KB - 1); }

size_t k_kv_f16_halves(int cap, int hd) { return pad16((size_t)(cap > 0 ? cap : 0)) * (size_t)hd; }

// ----------------------------------------------------------------------------
// append

void cpu_kv_append_f16(const molt_exec *ex, uint16_t *const *kc, uint16_t *const *vc,
                       const float *k, const float *v, int ld, int rows, int KV, int hd, int cap,
                       int pos0, const int32_t *pos) {
    int      isa = cpu_f16_isa();
    size_t   head = k_kv_f16_halves(cap, hd);
    uint16_t buf[256];
    for (int r = 0; r < rows; r++) {
        int    c = pos ? r : 0;
        size_t p = (size_t)(pos ? pos[r] : pos0 + r);
        for (int j = 0; j < KV; j++) {
            const float *ks = k + (size_t)r * ld + (size_t)j * hd;
            uint16_t    *kb = kc[c] + (size_t)j * head + (p / KB) * KB * hd + p % KB;
            for (int i0 = 0; i0 < hd; i0 += 256) {
                int n = hd - i0 < 256 ? hd - i0 : 256;
                cpu_narrow_half(isa, buf, ks + i0, n);
                for (int i = 0; i < n; i++)
                    kb[(size_t)(i0 + i) * KB] = buf[i];
            }
            if (vc && v)
                cpu_narrow_half(isa, vc[c] + (size_t)j * head + p * hd,
                                v + (size_t)r * ld + (size_t)j * hd, hd);
        }
    }
}

// ----------------------------------------------------------------------------
// decode: one query per head

#define SB 4 // key blocks whose chains run side by side: SB·16 keys widened at a time

// sc[g, s] = (q_g · K[s]) · scale for g < grp, s < S (row stride S): attn.c's
// decode_scores — each key's dot product one chain over i = 0 … hd−1, started
// at 0 — with SB blocks of 16 keys at a time from the widened tile
// [SB][hd][16] (4 independent vector chains)
K_SIMD static void scores_f16(float *sc, const float *qg, int grp, const uint16_t *K, int S,
                              int hd, float scale, float *tile, int isa) {
    for (int s = 0; s < S; s += SB * KB) {
        int nk = S - s < SB * KB ? S - s : SB * KB, nb = (nk + KB - 1) / KB;
        cpu_widen_f16(isa, tile, K + (size_t)s * hd, nb * KB * hd);
        for (int g = 0; g < grp; g++) {
            const float *q = qg + (size_t)g * hd;
            float        d[SB][KB] = {{0}};
            if (nb == SB) {
                for (int i = 0; i < hd; i++)
                    for (int b = 0; b < SB; b++)
                        for (int k = 0; k < KB; k++)
                            d[b][k] += q[i] * tile[((size_t)b * hd + i) * KB + k];
            } else {
                for (int b = 0; b < nb; b++)
                    for (int i = 0; i < hd; i++)
                        for (int k = 0; k < KB; k++)
                            d[b][k] += q[i] * tile[((size_t)b * hd + i) * KB + k];
            }
            for (int k = 0; k < nk; k++)
                sc[(size_t)g * S + s + k] = d[k / KB][k % KB] * scale;
        }
    }
}

// kv heads [j0, j1) of one query row (attn.c's attend_one). scratch: grp·S
// scores, then one [SB·16, hd] tile (keys, then values).
static void attend_one_f16(float *heads, const float *q, int S, int H, int KV, int hd,
                           const uint16_t *kc, const uint16_t *vc, int cap, float *scratch,
                           int j0, int j1) {
    int    grp = H / KV, isa = cpu_f16_isa();
    float  scale = 1.0f / sqrtf((float)hd);
    size_t head = k_kv_f16_halves(cap, hd);
    float *scores = scratch, *tile = scores + (size_t)grp * S;
    for (int j = j0; j < j1; j++) {
        const uint16_t *K = kc + (size_t)j * head, *V = vc + (size_t)j * head;
        const float    *qg = q + (size_t)j * grp * hd;
        scores_f16(scores, qg, grp, K, S, hd, scale, tile, isa);
        for (int g = 0; g < grp; g++)
            k_softmax_scaled(scores + (size_t)g * S, S, 1.0f); // = cpu_softmax
        float *og = heads + (size_t)j * grp * hd;
        memset(og, 0, sizeof(float) * (size_t)grp * hd);
        for (int s = 0; s < S; s += SB * KB) {
            int nk = S - s < SB * KB ? S - s : SB * KB;
            cpu_widen_f16(isa, tile, V + (size_t)s * hd, nk * hd);
            cpu_attn_pv_rows(og, scores + s, (size_t)S, grp, tile, nk, hd);
        }
    }
}

// per-thread decode scratch for up to S keys
static size_t decode_scratch(int grp, int hd, size_t S) {
    return (size_t)grp * S + (size_t)SB * KB * (size_t)hd;
}

typedef struct decode_task {
    float          *heads, *work;
    const float    *q;
    const uint16_t *kc, *vc;
    int             H, KV, hd, S, cap;
} decode_task;

static void decode_heads(void *arg, int ith, int nth) {
    const decode_task *j = arg;
    int                j0, j1;
    molt_pool_range(j->KV, ith, nth, &j0, &j1);
    float *sc = j->work + (size_t)ith * decode_scratch(j->H / j->KV, j->hd, (size_t)j->S);
    attend_one_f16(j->heads, j->q, j->S, j->H, j->KV, j->hd, j->kc, j->vc, j->cap, sc, j0, j1);
}

// ----------------------------------------------------------------------------
// prefill: per head, widened K and V, then attn.c's two sgemms

typedef struct prefill_task {
    float          *heads, *work;
    const float    *q;
    const uint16_t *kc, *vc;
    int             H, KV, hd, T, pos, cap;
} prefill_task;

static size_t prefill_scratch(int T, size_t S, int hd) {
    return (size_t)T * S + 2 * pad16(S > 0 ? S : 1) * (size_t)hd;
}

static void prefill_heads(void *arg, int ith, int nth) {
    const prefill_task *j = arg;
    int    H = j->H, hd = j->hd, grp = H / j->KV, T = j->T, S = j->pos + j->T;
    size_t S16 = pad16((size_t)S), head = k_kv_f16_halves(j->cap, hd);
    float *sc = j->work + (size_t)ith * prefill_scratch(T, (size_t)S, hd);
    float *kt = sc + (size_t)T * S, *wide = kt + S16 * hd; // Kᵀ [hd, S16]; blocks, then V
    float  scale = 1.0f / sqrtf((float)hd);
    int    isa = cpu_f16_isa();
    for (int h = ith; h < H; h += nth) {
        const uint16_t *K = j->kc + (size_t)(h / grp) * head, *V = j->vc + (size_t)(h / grp) * head;
        // blocks [S16/16][hd][16] → Kᵀ [hd, S16]: row i holds every key's element i
        cpu_widen_f16(isa, wide, K, (int)(S16 * hd));
        for (size_t b = 0; b < S16 / KB; b++)
            for (int i = 0; i < hd; i++)
                memcpy(kt + (size_t)i * S16 + b * KB, wide + (b * hd + i) * KB,
                       sizeof(float) * KB);
        // HF order (attn.c's head_probs): matmul, then scale, causal softmax
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, S, hd, 1.0f,
                    j->q + (size_t)h * hd, H * hd, kt, (int)S16, 0.0f, sc, S);
        for (size_t i = 0; i < (size_t)T * S; i++)
            sc[i] *= scale;
        for (int t = 0; t < T; t++) {
            int    n = j->pos + t + 1; // visible keys
            float *row = sc + (size_t)t * S;
            k_softmax_scaled(row, n, 1.0f); // = cpu_softmax
            for (int s = n; s < S; s++)
                row[s] = 0.0f;
        }
        // heads_h[T,hd] = P[T,S] · V[S,hd]
        cpu_widen_f16(isa, wide, V, S * hd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, S, 1.0f, sc, S, wide, hd,
                    0.0f, j->heads + (size_t)h * hd, H * hd);
    }
}

size_t k_attn_prefill_f16_work(int T, int S, int H, int KV, int hd, int nth) {
    // a forward sized for T tokens also runs fewer (T = 1 decodes)
    size_t per = decode_scratch(H / KV, hd, (size_t)S);
    if (T > 1 && prefill_scratch(T, (size_t)S, hd) > per)
        per = prefill_scratch(T, (size_t)S, hd);
    return (size_t)(nth > 1 ? nth : 1) * per;
}

void cpu_attn_prefill_f16(const molt_exec *ex, float *heads, const float *q, int T, int pos,
                          int H, int KV, int hd, const uint16_t *kc, const uint16_t *vc, int cap,
                          float *work) {
    int nth = ex->nth;
    if (T <= 0)
        return;
    if (T == 1) {
        // threads only pay off once the context is long (as attn.c)
        int use = (pos + 1) * H * hd >= (1 << 18) ? (nth < KV ? nth : KV) : 1;
        decode_task j = {heads, work, q, kc, vc, H, KV, hd, pos + 1, cap};
        molt_pool_run(use > 1 ? use : 1, decode_heads, &j);
        return;
    }
    prefill_task j = {heads, work, q, kc, vc, H, KV, hd, T, pos, cap};
    int          use = nth < H ? nth : H;
    molt_pool_run(use > 1 ? use : 1, prefill_heads, &j);
}

// ----------------------------------------------------------------------------
// batched decode rows

size_t k_attn_decode_rows_f16_work(int H, int KV, int hd, int cap, int nth) {
    return (size_t)(nth > 1 ? nth : 1) * decode_scratch(H / KV, hd, (size_t)cap);
}

typedef struct rows_task {
    float           *heads, *work;
    const float     *q;
    uint16_t *const *kc, *const *vc;
    const int32_t   *pos;
    int              H, KV, hd, n, cap;
} rows_task;

// items (row, kv head) in contiguous ranges; each row's heads are the calls
// single-sequence decode makes, so a row's result does not depend on the batch
static void rows_heads(void *arg, int ith, int nth) {
    const rows_task *j = arg;
    int              KV = j->KV, H = j->H, hd = j->hd, lo, hi;
    molt_pool_range(j->n * KV, ith, nth, &lo, &hi);
    float *sc = j->work + (size_t)ith * decode_scratch(H / KV, hd, (size_t)j->cap);
    for (int it = lo; it < hi; it++) {
        int r = it / KV, kv = it % KV, S = j->pos[r] + 1;
        attend_one_f16(j->heads + (size_t)r * H * hd, j->q + (size_t)r * H * hd, S, H, KV, hd,
                       j->kc[r], j->vc[r], j->cap, sc, kv, kv + 1);
    }
}

void cpu_attn_decode_rows_f16(const molt_exec *ex, float *heads, const float *q, int n,
                              const int32_t *pos, int H, int KV, int hd, uint16_t *const *kc,
                              uint16_t *const *vc, int cap, float *work) {
    rows_task job = {heads, work, q, kc, vc, pos, H, KV, hd, n, cap};
    molt_pool_run(attn_rows_threads(ex, pos, n, H, KV, hd), rows_heads, &job);
}
