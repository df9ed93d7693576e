/*
 * llama2c.c — import of llama2.c checkpoints into molt's HF Llama layout.
 *
 * Formats (karpathy/llama2.c export.py):
 *   v0 "legacy": 7 × int32 header {dim, hidden_dim, n_layers, n_heads,
 *       n_kv_heads, vocab_size (negative: untied classifier at the end),
 *       seq_len}, then fp32: tok_emb[V,d], rms_att[L,d], wq[L,d,d],
 *       wk[L,kv·hs,d], wv[L,kv·hs,d], wo[L,d,d], rms_ffn[L,d], w1[L,F,d],
 *       w2[L,d,F], w3[L,F,d], rms_final[d], freq_cis_real[S,hs/2],
 *       freq_cis_imag[S,hs/2], (wcls[V,d] if untied).
 *   v1: u32 magic 0x616b3432 "ak42", i32 version 1, the 7 ints, u8
 *       shared_classifier, zero padding to 256 bytes, then fp32: rms_att,
 *       rms_ffn, rms_final, tok_emb, wq, wk, wv, wo, w1, w2, w3, (wcls).
 *
 * RoPE: llama2.c rotates interleaved pairs (2i, 2i+1) of each head; HF
 * rotates (i, i+hs/2). The two are the same function after permuting the rows
 * of wq and wk within each head: HF row i ← llama2.c row 2i, HF row i+hs/2 ←
 * llama2.c row 2i+1. The permutation is exact (a copy), so the converted model
 * computes the same numbers. Norm eps 1e-5, θ = 10000, BOS 1, EOS 2.
 */
#include "io/fileio.h"
#include "models/model.h"

#include <stdio.h>
#include <string.h>

#define L2C_MAGIC 0x616b3432u

// Copies a [nh·hs, d] q/k matrix, permuting rows per head from interleaved
// pairs to rotate_half order.
static void permute_rows(float *dst, const float *src, int nh, int hs, int d) {
    int half = hs / 2;
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < half; i++) {
            const float *a = src + ((size_t)h * hs + 2 * (size_t)i) * d;
            memcpy(dst + ((size_t)h * hs + i) * d, a, sizeof(float) * (size_t)d);
            memcpy(dst + ((size_t)h * hs + i + half) * d, a + d, sizeof(float) * (size_t)d);
        }
}

typedef struct reader {
    const uint8_t *p;
    size_t         left;
} reader;

static const float *take(reader *r, size_t nfloats) {
    size_t nb = nfloats * sizeof(float);
    if (nb > r->left)
        return NULL;
    const float *out = (const float *)(const void *)r->p;
    r->p += nb;
    r->left -= nb;
    return out;
}

// float data in the mapping may be unaligned: copy through memcpy
static void copy_floats(float *dst, const float *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
}

molt_status model_load_llama2c(molt_ctx *ctx, const char *path, molt_model **out) {
    *out = NULL;
    const uint8_t *data;
    size_t len;
    void *handle;
    molt_status st = fio_map(ctx, path, &data, &len, &handle);
    if (st != MOLT_OK)
        return st;
    int32_t h[7];
    size_t hdr = 28;
    int version = 0;
    bool shared = true;
    uint32_t magic = 0;
    if (len >= 4)
        memcpy(&magic, data, 4);
    if (magic == L2C_MAGIC) {
        int32_t ver = 0;
        if (len < 256) {
            fio_unmap(handle);
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: truncated llama2.c v1 header (%zu bytes)",
                             path, len);
        }
        memcpy(&ver, data + 4, 4);
        if (ver != 1) {
            fio_unmap(handle);
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: llama2.c export version %d (molt reads fp32 v0 and v1; "
                             "HINT: re-export with --version 1)",
                             path, ver);
        }
        memcpy(h, data + 8, sizeof h);
        shared = data[36] != 0;
        hdr = 256;
        version = 1;
    } else {
        if (len < 28) {
            fio_unmap(handle);
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: too short for a llama2.c checkpoint "
                                                   "(%zu bytes)",
                             path, len);
        }
        memcpy(h, data, sizeof h);
        shared = h[5] > 0;
        if (h[5] < 0 && h[5] != INT32_MIN) // -INT32_MIN overflows; the range check rejects it
            h[5] = -h[5];
    }
    model_cfg c;
    memset(&c, 0, sizeof c);
    c.arch = ARCH_LLAMA;
    c.d_model = h[0];
    c.d_ff = h[1];
    c.n_layer = h[2];
    c.n_head = h[3];
    c.n_kv_head = h[4];
    c.vocab = h[5];
    c.max_seq = h[6];
    c.norm_eps = 1e-5f;
    c.tie_embeddings = shared;
    c.has_mlp = true;
    c.rope.kind = ROPE_DEFAULT;
    c.rope.theta = 10000.0f;
    c.bos = 1;
    c.eos = 2;
    snprintf(c.src_format, sizeof c.src_format, "llama2c");
    for (int i = 0; i < 7; i++)
        if (h[i] <= 0 || h[i] > (1 << 24)) {
            fio_unmap(handle);
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "%s: not a llama2.c checkpoint (header field %d = %d is out of range)",
                             path, i, h[i]);
        }
    if (c.n_layer > MODEL_MAX_LAYERS || c.d_model % c.n_head) {
        fio_unmap(handle);
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: not a llama2.c checkpoint (%d layers, dim %d, %d heads)", path,
                         c.n_layer, c.d_model, c.n_head);
    }
    c.head_dim = c.d_model / c.n_head;
    for (int l = 0; l < c.n_layer; l++)
        c.kind[l] = LAYER_ATTN;
    if ((st = model_cfg_check(ctx, path, &c)) != MOLT_OK) {
        fio_unmap(handle);
        return st;
    }
    // expected size, checked before touching any tensor
    size_t d = (size_t)c.d_model, F = (size_t)c.d_ff, L = (size_t)c.n_layer, V = (size_t)c.vocab;
    size_t hs = (size_t)c.head_dim, kvd = (size_t)c.n_kv_head * hs, S = (size_t)c.max_seq;
    size_t per_layer = 2 * d + d * d + 2 * kvd * d + d * d + 3 * F * d;
    size_t want = V * d + L * per_layer + d + (version == 0 ? S * hs : 0) + (shared ? 0 : V * d);
    if (len - hdr != want * sizeof(float)) {
        fio_unmap(handle);
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: llama2.c header (dim %zu, layers %zu, vocab %zu, seq %zu) implies "
                         "%zu bytes but the file has %zu",
                         path, d, L, V, S, hdr + want * sizeof(float), len);
    }
    molt_model *m = NULL;
    if ((st = model_alloc(ctx, &c, &m)) != MOLT_OK) {
        fio_unmap(handle);
        return st;
    }
    reader r = {data + hdr, len - hdr};
    const float *tok = NULL, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn = NULL, *w1, *w2, *w3;
    const float *rms_f = NULL;
    if (version == 0)
        tok = take(&r, V * d);
    rms_att = take(&r, L * d);
    if (version == 1) {
        rms_ffn = take(&r, L * d);
        rms_f = take(&r, d);
        tok = take(&r, V * d);
    }
    wq = take(&r, L * d * d);
    wk = take(&r, L * kvd * d);
    wv = take(&r, L * kvd * d);
    wo = take(&r, L * d * d);
    if (version == 0)
        rms_ffn = take(&r, L * d);
    w1 = take(&r, L * F * d);
    w2 = take(&r, L * d * F);
    w3 = take(&r, L * F * d);
    if (version == 0) {
        rms_f = take(&r, d);
        take(&r, S * hs); // freq_cis real + imag (recomputed, not needed)
    }
    const float *wcls = shared ? NULL : take(&r, V * d);
    MOLT_ASSERT(r.left == 0); // guaranteed by the size check above
    copy_floats(m->embed, tok, V * d);
    copy_floats(m->final_norm, rms_f, d);
    if (wcls)
        copy_floats(m->lm_head, wcls, V * d);
    // q/k rows need per-head permutation; src may be unaligned, so stage it
    float *stage = molt__malloc(sizeof(float) * d * d);
    if (!stage) {
        molt_model_free(m);
        fio_unmap(handle);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory importing %s", path);
    }
    for (size_t l = 0; l < L; l++) {
        layer_weights *w = &m->layers[l];
        copy_floats(w->attn_norm, rms_att + l * d, d);
        copy_floats(w->ffn_norm, rms_ffn + l * d, d);
        copy_floats(stage, wq + l * d * d, d * d);
        permute_rows(w->wq, stage, c.n_head, (int)hs, (int)d);
        copy_floats(stage, wk + l * kvd * d, kvd * d);
        permute_rows(w->wk, stage, c.n_kv_head, (int)hs, (int)d);
        copy_floats(w->wv, wv + l * kvd * d, kvd * d);
        copy_floats(w->wo, wo + l * d * d, d * d);
        copy_floats(w->w_gate, w1 + l * F * d, F * d);
        copy_floats(w->w_down, w2 + l * d * F, d * F);
        copy_floats(w->w_up, w3 + l * F * d, F * d);
    }
    molt__free(stage);
    fio_unmap(handle);
    *out = m;
    return MOLT_OK;
}
