/*
 * test_q8.c — the q8_0 weight type (core/dtype.h) and q8_0 models:
 *   1 rows: quantize → dequantize within half a step (|x − q·d| ≤ d/2, normal
 *     scales) with q in [-127, 127], the padding zero, and the row quantizing
 *     back to the same bytes; pack ⇄ unpack is exact; inf/NaN/overflow and
 *     bad packed values (-128, negative or inf scales) are refused;
 *   2 models (random Llama, Llama of odd widths, Llamba, Mamba-2, hybrid):
 *     q8_0 logits against the f32 path of the same model with its matrices
 *     dequantized (the remaining difference is the activations' quantization),
 *     with batched slots bit-identical to single-sequence decode (every row
 *     is quantized on its own); NaN in the f32 master changes no bit;
 *   3 save → load: the same q8_0 bytes, bit-identical logits, the master the
 *     dequantized matrices, a second save byte-identical, and re-quantizing
 *     the loaded model gives the same bytes;
 *   4 files that are refused: an I8 value of -128, a missing scale tensor, an
 *     I8 norm; and allocation failures leave the model unchanged, leaking
 *     nothing.
 */
#include "io/safetensors.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static molt_ctx *ctx;

// ----------------------------------------------------------------------------
// 1 rows

static void test_rows(void) {
    const size_t cols[] = {1, 5, 31, 32, 33, 64, 100, 172, 511, 512, 513, 768, 2048};
    int rows = 0;
    double worst = 0; // |x − x̂| / (d/2), normal scales
    for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
        size_t n = cols[c], nb = molt_q8_blocks(n), rb = molt_q8_row_bytes(n);
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        uint8_t *row = malloc(rb), *again = malloc(rb), *packed = malloc(rb);
        int8_t *q = malloc(n);
        uint16_t *d = malloc(2 * nb);
        CHECK(rb % 64 == 0 && rb >= nb * 34 && molt_w_bytes(MOLT_Q8_0, 3, n) == 3 * rb,
              "row bytes %zu", n);
        for (int v = 0; v < 6; v++) {
            for (size_t i = 0; i < n; i++) {
                float s = v == 1 ? 1e-6f : v == 2 ? 3e4f : v == 3 ? (i % 64 < 32 ? 1e-4f : 5.0f)
                                                                    : 1.0f;
                x[i] = v == 4 ? 0.0f : t_uniform(-1, 1) * s;
            }
            if (v == 5 && n >= 2) // exact ties and the extremes
                x[0] = 1.0f, x[1] = -1.0f;
            CHECK(molt_q8_quantize_row(row, x, n), "quantize %zu v%d", n, v);
            molt_q8_dequantize_row(y, row, n);
            molt_q8_unpack_row(q, d, row, n);
            bool ok = true;
            for (size_t i = 0; i < n; i++) {
                size_t b = i / 32;
                float db = molt_f16_to_f32(d[b]);
                ok &= q[i] != -128 && y[i] == (float)q[i] * db;
                double err = fabs((double)x[i] - (double)y[i]);
                if (db >= 6.103515625e-05f) { // a normal f16 scale
                    double e = err / (0.5 * (double)db);
                    worst = e > worst ? e : worst;
                    ok &= err <= 0.5 * (double)db * (1 + 1e-6);
                } else {
                    ok &= err <= 0.5 * (double)db + 127 * 5.96e-8;
                }
            }
            for (size_t k = n; k < nb * 32; k++) // the padding
                ok &= row[molt_q8_pos(nb, k / 32, k % 32)] == 0;
            for (size_t k = nb * 34; k < rb; k++)
                ok &= row[k] == 0;
            CHECK(ok, "round trip %zu v%d", n, v);
            // unpack → pack is the identity; a dequantized row quantizes back
            CHECK(molt_q8_pack_row(packed, q, d, n) && !memcmp(packed, row, rb), "pack %zu", n);
            if (v != 1 && v != 3) { // v1, v3: subnormal scales, where it is not promised
                CHECK(molt_q8_quantize_row(again, y, n) && !memcmp(again, row, rb),
                      "re-quantizing %zu v%d", n, v);
            }
            rows++;
        }
        // refusals
        x[n / 2] = INFINITY;
        CHECK(!molt_q8_quantize_row(row, x, n), "inf refused");
        x[n / 2] = NAN;
        CHECK(!molt_q8_quantize_row(row, x, n), "NaN refused");
        x[n / 2] = 1e7f;
        CHECK(!molt_q8_quantize_row(row, x, n), "a block beyond f16's scale refused");
        q[n - 1] = -128;
        CHECK(!molt_q8_pack_row(packed, q, d, n), "pack refuses -128");
        q[n - 1] = 0, d[0] = 0xBC00; // -1
        CHECK(!molt_q8_pack_row(packed, q, d, n), "pack refuses a negative scale");
        d[0] = 0x7C00;
        CHECK(!molt_q8_pack_row(packed, q, d, n), "pack refuses an inf scale");
        free(x), free(y), free(row), free(again), free(packed), free(q), free(d);
    }
    printf("q8_0 rows: %d round trips, worst |x - q*d| = %.3f of half a step\n", rows, worst);
}

// ----------------------------------------------------------------------------
// 2, 3 models

static const char *const CFGS[][2] = {
    {"llama",
     "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
     " \"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"intermediate_size\": 96,"
     " \"vocab_size\": 97, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5}"},
    {"llama_odd",
     "{\"model_type\": \"llama\", \"hidden_size\": 40, \"num_hidden_layers\": 2,"
     " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 61,"
     " \"vocab_size\": 97, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5,"
     " \"attention_bias\": true, \"tie_word_embeddings\": true}"},
    {"llamba",
     "{\"model_type\": \"llamba\", \"vocab_size\": 97, \"d_model\": 64, \"n_layer\": 2,"
     " \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 96},"
     " \"ssm_cfg\": {\"d_state\": 16, \"n_v_heads\": 8, \"n_qk_heads\": 4, \"expand\": 1,"
     " \"chunk_size\": 8, \"d_conv\": 4}}"},
    {"mamba2",
     "{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
     " \"vocab_size\": 97, \"layer_norm_epsilon\": 1e-5, \"num_heads\": 8, \"head_dim\": 16,"
     " \"state_size\": 16, \"expand\": 2, \"n_groups\": 2, \"conv_kernel\": 4, \"chunk_size\": 8,"
     " \"use_bias\": false, \"use_conv_bias\": true, \"tie_word_embeddings\": true}"},
    {"hybrid",
     "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 64, \"n_layer\": 3,"
     " \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 96}, \"ssm_cfg\":"
     " {\"d_state\": 16, \"n_v_heads\": 8, \"n_qk_heads\": 4, \"chunk_size\": 8},"
     " \"attn_cfg\": {\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"head_dim\": 8},"
     " \"layers\": [{\"mixer\": \"attention\"}, {\"mixer\": \"hybrid\", \"attention_heads\":"
     " [1, 3]}, {\"mixer\": \"ssm\"}]}"},
};

#define PLEN 6
#define STEPS 24
#define NS 3

// logits of a prefill (all positions), then STEPS greedy steps of one
// sequence, and the same steps in NS slots forked from the same prompt
typedef struct run {
    float  *pre, *seq, *slots;
    int32_t tok[STEPS];
    bool    ok;
} run;

static void run_free(run *r) { free(r->pre), free(r->seq), free(r->slots); }

static run run_model(const molt_model *m) {
    int V = m->cfg.vocab;
    run r = {malloc(sizeof(float) * PLEN * (size_t)V), malloc(sizeof(float) * STEPS * (size_t)V),
             malloc(sizeof(float) * STEPS * NS * (size_t)V), {0}, false};
    int32_t ids[PLEN], slot[NS], tok[NS];
    for (int i = 0; i < PLEN; i++)
        ids[i] = (int32_t)((5 + 11 * i) % V);
    molt_seq *s = NULL;
    molt_slots *sl = NULL;
    bool ok = molt_seq_new(ctx, m, PLEN + STEPS + 1, &s) == MOLT_OK &&
              molt_slots_new(ctx, m, NS, PLEN + STEPS + 1, &sl) == MOLT_OK &&
              molt_seq_feed(ctx, s, ids, PLEN, 1, r.pre) == MOLT_OK &&
              molt_slot_prefill(ctx, sl, 0, ids, PLEN, 0, NULL) == MOLT_OK;
    for (int i = 1; ok && i < NS; i++)
        ok = molt_slot_copy(ctx, sl, 0, i) == MOLT_OK;
    int32_t t = ok ? (int32_t)t_argmax(r.pre + (size_t)(PLEN - 1) * V, V) : 0;
    for (int k = 0; ok && k < STEPS; k++) {
        r.tok[k] = t;
        for (int i = 0; i < NS; i++)
            slot[i] = i, tok[i] = t;
        ok = molt_seq_feed(ctx, s, &t, 1, 0, r.seq + (size_t)k * V) == MOLT_OK &&
             molt_slots_feed(ctx, sl, NS, slot, tok, r.slots + (size_t)k * NS * V) == MOLT_OK;
        t = (int32_t)t_argmax(r.seq + (size_t)k * V, V);
    }
    CHECK(ok, "run: %s", molt_last_error(ctx));
    molt_seq_free(s);
    molt_slots_free(sl);
    r.ok = ok;
    return r;
}

static bool same_bits(const run *a, const run *b, int V) {
    return a->ok && b->ok && !memcmp(a->pre, b->pre, sizeof(float) * PLEN * (size_t)V) &&
           !memcmp(a->seq, b->seq, sizeof(float) * STEPS * (size_t)V) &&
           !memcmp(a->slots, b->slots, sizeof(float) * STEPS * NS * (size_t)V);
}

// the f32 master's typed matrices (not a tied head: the embedding) set to the
// q8_0 copy's values (nan: to NaN)
static void dequantize_master(molt_model *m, bool nan) {
    model_typed *t = NULL;
    int n = 0;
    CHECK(model_typed_list(ctx, m, &t, &n) == MOLT_OK, "list");
    for (int i = 0; i < n; i++) {
        size_t rb = molt_q8_row_bytes(t[i].cols);
        if (t[i].src == m->embed)
            continue;
        if (nan) {
            for (size_t j = 0; j < t[i].n; j++)
                ((float *)(uintptr_t)t[i].src)[j] = NAN;
            continue;
        }
        for (size_t r = 0; r < t[i].rows; r++)
            molt_q8_dequantize_row((float *)(uintptr_t)t[i].src + r * t[i].cols,
                                   (const uint8_t *)t[i].view->data + r * rb, t[i].cols);
    }
    molt__free(t);
}

static bool views_q8(const molt_model *m) {
    return m->weight_dt == MOLT_Q8_0 && m->lm_head_t.dt == MOLT_Q8_0 && m->wbuf;
}

// bytes of a whole file (malloc'd) or NULL
static char *slurp(const char *dir, const char *name, size_t *len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return t_read_file(p, len);
}

static void check_model(const char *name, molt_model *m) {
    int V = m->cfg.vocab;
    CHECK(molt_model_set_weight_dtype(ctx, m, "q8_0") == MOLT_OK && views_q8(m), "%s: q8_0: %s",
          name, molt_last_error(ctx));
    run q8 = run_model(m);
    // slots: every row bit-identical to the single sequence (every row's
    // activations are quantized on their own); a hybrid's combiner adapter is
    // an f32 GEMM, whose rounding depends on the row count (≤ 1e-5 relative)
    double w = 0, big = 1e-6;
    for (int k = 0; k < STEPS; k++)
        for (int i = 0; i < NS; i++)
            for (int v = 0; v < V; v++) {
                double a = q8.slots[((size_t)k * NS + i) * V + v], b = q8.seq[(size_t)k * V + v];
                w = fmax(w, fabs(a - b)), big = fmax(big, fabs(b));
            }
    bool hybrid = m->cfg.arch == ARCH_HYBRID;
    CHECK(q8.ok && (hybrid ? w / big <= 1e-5 : w == 0),
          "%s: q8_0 slots vs single-sequence decode: %.2e relative", name, w / big);
    // against the f32 path of the dequantized matrices (tied heads: the
    // embedding stays as it is, the head's copy is quantized: compare against
    // the same, through a model whose typed views read the q8_0 head)
    float *master = malloc(sizeof(float) * m->n_floats);
    memcpy(master, m->data, sizeof(float) * m->n_floats);
    void *keep = m->wbuf;
    size_t keep_bytes = m->wbuf_bytes;
    uint8_t *qcopy = malloc(keep_bytes);
    memcpy(qcopy, keep, keep_bytes);
    dequantize_master(m, false); // the f32 reference (a tied head: its f32 embedding)
    CHECK(molt_model_set_weight_dtype(ctx, m, "f32") == MOLT_OK, "%s: f32", name);
    run ref = run_model(m);
    double d = 0, s = 1e-6; // prefill: the same inputs, all positions
    for (size_t i = 0; i < PLEN * (size_t)V; i++) {
        d = fmax(d, fabs((double)q8.pre[i] - (double)ref.pre[i]));
        s = fmax(s, fabs((double)ref.pre[i]));
    }
    int agree = 0; // greedy decode: the same tokens until they part
    while (agree < STEPS && q8.tok[agree] == ref.tok[agree])
        agree++;
    CHECK(d / s <= 0.05, "%s: q8_0 vs f32 of its dequantized matrices: %.2e relative", name,
          d / s);
    printf("  %-9s q8_0 vs f32 of the dequantized matrices: %.2e relative (the activations' "
           "quantization); greedy decode agrees for %d/%d tokens\n",
           name, d / s, agree, STEPS);
    memcpy(m->data, master, sizeof(float) * m->n_floats);
    CHECK(molt_model_set_weight_dtype(ctx, m, "q8_0") == MOLT_OK &&
              m->wbuf_bytes == keep_bytes && !memcmp(m->wbuf, qcopy, keep_bytes),
          "%s: q8_0 again: the same bytes", name);
    dequantize_master(m, true); // NaN in the master's matrices (not the embedding)
    run nan = run_model(m);
    CHECK(same_bits(&nan, &q8, V), "%s: q8_0 paths read only the copy", name);
    run_free(&nan);
    memcpy(m->data, master, sizeof(float) * m->n_floats);
    // 3 save → load
    char dir[] = "/tmp/molt_q8_XXXXXX", dir2[64];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(dir2, sizeof dir2, "%s/again", dir);
    CHECK(molt_model_save(ctx, m, dir, "q8_0") == MOLT_OK, "%s: save: %s", name,
          molt_last_error(ctx));
    molt_model *l = NULL;
    molt_load_opts o = {NULL, 1};
    CHECK(molt_model_load(ctx, dir, &o, &l) == MOLT_OK, "%s: load: %s", name,
          molt_last_error(ctx));
    if (l) {
        CHECK(views_q8(l) && l->wbuf_bytes == keep_bytes && !memcmp(l->wbuf, qcopy, keep_bytes),
              "%s: loaded: the same q8_0 bytes", name);
        run lr = run_model(l);
        CHECK(same_bits(&lr, &q8, V), "%s: loaded: bit-identical logits", name);
        run_free(&lr);
        // the master: dequantized matrices, the rest as saved
        memcpy(m->data, master, sizeof(float) * m->n_floats);
        dequantize_master(m, false);
        bool same = l->n_params == m->n_params;
        for (int i = 0; same && i < m->n_params; i++)
            same = !memcmp(l->data + l->params[i].offset, m->data + m->params[i].offset,
                           sizeof(float) * m->params[i].numel);
        CHECK(same, "%s: loaded master = dequantized matrices", name);
        memcpy(m->data, master, sizeof(float) * m->n_floats);
        CHECK(molt_model_save(ctx, l, dir2, "q8_0") == MOLT_OK, "%s: save again", name);
        size_t la = 0, lb = 0;
        char *a = slurp(dir, "model.safetensors", &la), *b = slurp(dir2, "model.safetensors", &lb);
        CHECK(a && b && la == lb && !memcmp(a, b, la), "%s: a second save: the same bytes", name);
        free(a), free(b);
        // re-quantizing the loaded (dequantized) master: the same bytes
        CHECK(molt_model_set_weight_dtype(ctx, l, "f32") == MOLT_OK &&
                  molt_model_set_weight_dtype(ctx, l, "q8_0") == MOLT_OK &&
                  !memcmp(l->wbuf, qcopy, keep_bytes),
              "%s: re-quantized: the same bytes", name);
        molt_model_free(l);
    }
    tm_rmdir(dir);
    free(master), free(qcopy);
    run_free(&q8), run_free(&ref);
}

// ----------------------------------------------------------------------------
// 4 refused files, allocation failures

typedef void (*mutate_fn)(st_wtensor *ts, int n, int8_t *buf);

// the q8_0 file in dir rewritten with one change; loading must fail with want
static void check_refused(const char *dir, const char *what, mutate_fn mut, const char *want) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *f = NULL;
    CHECK(st_open(ctx, path, &f) == MOLT_OK, "open");
    if (!f)
        return;
    int n = st_count(f);
    st_wtensor *ts = calloc((size_t)n, sizeof *ts);
    int8_t *scratch = NULL;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(f, i);
        ts[i] = (st_wtensor){t->name, t->dtype, t->ndim, {0}, NULL, t->data};
        memcpy(ts[i].shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        if (t->dtype == ST_I8 && !scratch) { // a writable copy of the first I8 tensor
            scratch = malloc(t->nbytes);
            memcpy(scratch, t->data, t->nbytes);
            ts[i].raw = scratch;
        }
    }
    mut(ts, n, scratch);
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    mkdir(bad, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", bad);
    CHECK(st_write(ctx, path, ts, n, NULL) == MOLT_OK, "write: %s", molt_last_error(ctx));
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/config.json", dir);
    snprintf(dst, sizeof dst, "%s/config.json", bad);
    size_t len = 0;
    char *cfg = t_read_file(src, &len);
    FILE *fo = fopen(dst, "wb");
    if (fo && cfg)
        fwrite(cfg, 1, len, fo);
    if (fo)
        fclose(fo);
    free(cfg);
    st_close(f);
    molt_model *m = NULL;
    molt_load_opts o = {NULL, 1};
    molt_status st = molt_model_load(ctx, bad, &o, &m);
    CHECK(st != MOLT_OK && strstr(molt_last_error(ctx), want), "%s refused (%s): %s", what, want,
          molt_last_error(ctx));
    molt_model_free(m);
    free(ts), free(scratch);
}

static void mut_min(st_wtensor *ts, int n, int8_t *buf) {
    (void)ts, (void)n;
    buf[3] = -128;
}
static void mut_noscale(st_wtensor *ts, int n, int8_t *buf) {
    (void)buf;
    for (int i = 0; i < n; i++)
        if (strstr(ts[i].name, "_scale")) {
            ts[i].name = "dropped.scale.of.a.matrix"; // absent under its own name
            return;
        }
}
static void mut_norm(st_wtensor *ts, int n, int8_t *buf) {
    (void)buf;
    for (int i = 0; i < n; i++)
        if (strstr(ts[i].name, "norm") && ts[i].dtype == ST_F32) {
            ts[i].dtype = ST_I8; // the shape kept: its first bytes read as int8
            return;
        }
}

static void test_refused_and_oom(void) {
    molt_model *m = tm_random_model(ctx, CFGS[0][1], 3, 0.05f);
    if (!m)
        return;
    char dir[] = "/tmp/molt_q8r_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, dir, "q8_0") == MOLT_OK, "save");
    check_refused(dir, "-128", mut_min, "-128");
    check_refused(dir, "a missing scale", mut_noscale, "_scale");
    check_refused(dir, "an I8 norm", mut_norm, "I8");
    tm_rmdir(dir);
    // allocation failures: OOM, the model unchanged, nothing leaked
    int64_t live = molt__alloc_live();
    int fails = 0, bad = 0;
    molt_status st = MOLT_ERR_OOM;
    for (int64_t k = 1; st != MOLT_OK && k < 20; k++) {
        molt__alloc_fail_after(k);
        st = molt_model_set_weight_dtype(ctx, m, "q8_0");
        molt__alloc_fail_after(0);
        if (st == MOLT_OK)
            break;
        fails++;
        bad += st != MOLT_ERR_OOM || m->wbuf || m->weight_dt != MOLT_F32 ||
               molt__alloc_live() != live;
    }
    CHECK(st == MOLT_OK && fails >= 2 && bad == 0, "q8_0 after %d failed allocations (%d bad)",
          fails, bad);
    // a matrix that q8_0 cannot hold: refused, the model unchanged
    CHECK(molt_model_set_weight_dtype(ctx, m, "f32") == MOLT_OK, "f32");
    m->layers[0].wq[5] = INFINITY;
    st = molt_model_set_weight_dtype(ctx, m, "q8_0");
    CHECK(st == MOLT_ERR_ARG && strstr(molt_last_error(ctx), "q_proj") && !m->wbuf,
          "inf in q_proj refused: %s", molt_last_error(ctx));
    molt_model_free(m);
}

int main(void) {
    t_seed(5);
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    test_rows();
    for (size_t i = 0; i < sizeof CFGS / sizeof *CFGS; i++) {
        molt_model *m = tm_random_model(ctx, CFGS[i][1], 21 + i, 0.05f);
        if (m)
            check_model(CFGS[i][0], m);
        molt_model_free(m);
    }
    test_refused_and_oom();
    molt_ctx_free(ctx);
    return t_done("test_q8");
}
