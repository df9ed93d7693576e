/*
 * test_llamba_layout.c — checkpoint layouts beside model_type (models/layout.h):
 *   1. cartesia Llamba: tests/ref/llamba_ref.py (an independent float64 PyTorch
 *      LlambaLMHeadModel, strict state_dict) writes two random checkpoints in the
 *      published layout (a: tied, GQA heads, padded vocab, norm_epsilon 0.25 for the final
 *      norm only; b: untied, expand 2, bias = true so no z_bias, no conv bias, d_conv 3,
 *      no model_type). molt_model_load reads each; its logits (prefill and token by
 *      token) match the reference's within 5e-5 absolute (logits of size 1-10; fp32 gives
 *      ~6e-6; a wrong norm epsilon gives 2.9); saved in molt's own
 *      layout (molt_hybrid) it loads to the same parameters and bit-identical logits;
 *      saved back in the llamba layout it loads bit-exactly, with exactly the original
 *      file's tensor names and shapes, and the PyTorch reference loads it strictly and
 *      gives its own logits exactly. (Skipped, with a notice, without torch.)
 *   2. Without torch: a random Llamba with bias = true: the llamba layout refuses a
 *      non-zero z_bias (cartesia has none), writes none when it is 0, loads back
 *      bit-exactly; a molt_hybrid of SSM layers whose blocks' norm epsilon is not 1e-5
 *      is refused by the llamba layout and round-trips in molt's own.
 *   3. state-spaces MambaConfig (mamba_ssm): a random Mamba-2 saved in that layout has
 *      a config.json of MambaConfig's fields only and backbone.embedding.weight +
 *      lm_head.weight (tied); it loads back (auto-detected: no model_type) bit-exactly
 *      with bit-identical logits, is re-saved in its own layout by default, and "hf"
 *      gives back the HF file byte for byte. A MambaConfig written by hand (its defaults,
 *      vocab padding) with the HF twin's tensors renamed loads to that twin's parameters
 *      and logits. Unsupported MambaConfigs are refused by name,
 *      and a directory with only pytorch_model.bin says so.
 *   4. The writer never touches the user's files: a save in another layout keeps a
 *      user's notes.txt and pytorch_model.bin; a refused save leaves the directory as
 *      it was (same files, same bytes).
 */
#include "io/safetensors.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static molt_ctx  *ctx;
static char       tmp[256];
static const molt_load_opts NOTOK = {NULL, 1};

static molt_model *load(const char *dir) {
    molt_model *m = NULL;
    molt_status st = molt_model_load(ctx, dir, &NOTOK, &m);
    CHECK(st == MOLT_OK, "load %s: %s", dir, molt_last_error(ctx));
    return m;
}

static void path_of(char *buf, size_t cap, const char *a, const char *b) {
    snprintf(buf, cap, "%s/%s", a, b);
}

// the same tensor names and shapes in both model.safetensors
static void same_tensors(const char *what, const char *d1, const char *d2) {
    char p1[1024], p2[1024];
    path_of(p1, sizeof p1, d1, "model.safetensors");
    path_of(p2, sizeof p2, d2, "model.safetensors");
    st_file *f1 = NULL, *f2 = NULL;
    CHECK(st_open(ctx, p1, &f1) == MOLT_OK && st_open(ctx, p2, &f2) == MOLT_OK, "%s: open", what);
    if (f1 && f2) {
        CHECK(st_count(f1) == st_count(f2), "%s: %d vs %d tensors", what, st_count(f1),
              st_count(f2));
        for (int i = 0; i < st_count(f1); i++) {
            const st_tensor *t = st_at(f1, i), *u = st_find(f2, t->name);
            CHECK(u && u->ndim == t->ndim && !memcmp(u->shape, t->shape, 8 * (size_t)t->ndim) &&
                      u->dtype == ST_F32,
                  "%s: tensor %s missing or other shape / dtype", what, t->name);
        }
    }
    st_close(f1);
    st_close(f2);
}

static bool has_tensor(const char *dir, const char *name) {
    char p[1024];
    path_of(p, sizeof p, dir, "model.safetensors");
    st_file *f = NULL;
    if (st_open(ctx, p, &f) != MOLT_OK)
        return false;
    bool yes = st_find(f, name) != NULL;
    st_close(f);
    return yes;
}

static char *config_of(const char *dir) {
    char p[1024];
    path_of(p, sizeof p, dir, "config.json");
    size_t n;
    return t_read_file(p, &n);
}

static void save(const molt_model *m, const char *dir, const char *layout) {
    molt_status st = molt_model_save_as(ctx, m, dir, "f32", layout);
    CHECK(st == MOLT_OK, "save %s as %s: %s", dir, layout, molt_last_error(ctx));
}

static const char *py(void) {
    return getenv("MOLT_PYTHON") ? getenv("MOLT_PYTHON") : "/usr/bin/python3";
}

// ----------------------------------------------------------------------------
// 1. the published layout against the PyTorch reference

static void test_cartesia_variant(const char *v, int n_ids) {
    char dir[512], ref[600], own[512], ll[512], cmd[2048], label[64];
    snprintf(dir, sizeof dir, "%s/%s", tmp, v);
    snprintf(ref, sizeof ref, "%s/ref.safetensors", dir);
    snprintf(own, sizeof own, "%s/%s-own", tmp, v);
    snprintf(ll, sizeof ll, "%s/%s-llamba", tmp, v);
    snprintf(label, sizeof label, "llamba %s", v);
    molt_model *m = load(dir);
    if (!m)
        return;
    CHECK(m->cfg.arch == ARCH_LLAMBA, "%s: arch %s", label, model_arch_name(m->cfg.arch));
    // logits vs the float64 reference (fp32 arithmetic: tolerance relative to their size)
    CHECK(tm_check_reference(ctx, m, ref, 5e-5, label) == 1, "%s: no reference", label);
    int32_t ids[64];
    for (int i = 0; i < n_ids; i++)
        ids[i] = (i * 37 + 11) % m->cfg.vocab;
    float *l0 = tm_logits(ctx, m, ids, n_ids, false);
    // molt's own layout: same weights, bit-identical logits
    save(m, own, "molt");
    char *cj = config_of(own);
    CHECK(cj && strstr(cj, "\"molt_hybrid\""), "%s: own layout is not molt_hybrid", label);
    free(cj);
    molt_model *o = load(own);
    if (o) {
        tm_same_params("own layout", m, o);
        float *l1 = tm_logits(ctx, o, ids, n_ids, false);
        CHECK(l0 && l1 && !memcmp(l0, l1, sizeof(float) * (size_t)n_ids * m->cfg.vocab),
              "%s: molt_hybrid logits differ", label);
        free(l1);
        // and back to the llamba layout: bit-exact, the original's tensors exactly
        save(o, ll, "llamba");
        molt_model *b = load(ll);
        if (b) {
            CHECK(b->cfg.arch == ARCH_LLAMBA, "%s: written llamba reads as %s", label,
                  model_arch_name(b->cfg.arch));
            tm_same_params("llamba layout", m, b);
            float *l2 = tm_logits(ctx, b, ids, n_ids, false);
            CHECK(l0 && l2 && !memcmp(l0, l2, sizeof(float) * (size_t)n_ids * m->cfg.vocab),
                  "%s: re-read logits differ", label);
            free(l2);
        }
        molt_model_free(b);
        same_tensors(label, dir, ll);
        snprintf(cmd, sizeof cmd, "'%s' tests/ref/llamba_ref.py check '%s' '%s'", py(), ll, ref);
        CHECK(system(cmd) == 0, "%s: the PyTorch LlambaLMHeadModel does not load molt's "
                                "llamba file to the same logits (%s)", label, cmd);
    }
    free(l0);
    molt_model_free(o);
    molt_model_free(m);
}

static void test_cartesia(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", py());
    if (system(cmd) != 0 || !t_exists("tests/ref/llamba_ref.py")) {
        printf("NOTICE: %s cannot import torch (or no tests/ref): cartesia parity SKIPPED\n",
               py());
        return;
    }
    snprintf(cmd, sizeof cmd, "PYTHONDONTWRITEBYTECODE=1 '%s' tests/ref/llamba_ref.py make '%s'",
             py(), tmp);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    test_cartesia_variant("a", 37);
    test_cartesia_variant("b", 37);
}

// ----------------------------------------------------------------------------
// 2. writer rules without torch

static const char *LLAMBA_BIAS =
    "{\"model_type\": \"llamba\", \"vocab_size\": 50, \"tie_embeddings\": true, \"d_model\": 16,"
    " \"n_layer\": 2, \"pad_vocab_size_multiple\": 1, \"norm_epsilon\": 1e-5,"
    " \"mlp_cfg\": {\"intermediate_size\": 24},"
    " \"ssm_cfg\": {\"d_state\": 4, \"n_v_heads\": 4, \"n_qk_heads\": 2, \"expand\": 1,"
    " \"chunk_size\": 4, \"bias\": true}}";

static const char *HYB_EPS =
    "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 50, \"tie_embeddings\": false,"
    " \"d_model\": 16, \"n_layer\": 2, \"pad_vocab_size_multiple\": 1, \"norm_epsilon\": 1e-6,"
    " \"mlp_cfg\": {\"intermediate_size\": 24},"
    " \"ssm_cfg\": {\"d_state\": 4, \"n_v_heads\": 4, \"n_qk_heads\": 4, \"expand\": 1,"
    " \"chunk_size\": 4}, \"layers\": [{\"mixer\": \"ssm\"}, {\"mixer\": \"ssm\"}]}";

static void test_writer_rules(void) {
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/zb", tmp);
    snprintf(d2, sizeof d2, "%s/eps", tmp);
    molt_model *m = tm_random_model(ctx, LLAMBA_BIAS, 3, 0.1f);
    if (m) {
        CHECK(molt_model_save_as(ctx, m, d1, "f32", "llamba") == MOLT_ERR_UNSUPPORTED &&
                  strstr(molt_last_error(ctx), "z_bias"),
              "a non-zero z_bias with bias=true: %s", molt_last_error(ctx));
        for (int l = 0; l < 2; l++)
            memset(model_paramf(m, "backbone.layers.%d.mixer.z_bias", l), 0, 4 * 16);
        save(m, d1, "llamba");
        CHECK(!has_tensor(d1, "backbone.layers.0.mixer.z_bias") &&
                  has_tensor(d1, "backbone.layers.0.mixer.in_proj.bias") &&
                  has_tensor(d1, "backbone.layers.1.mixer.out_proj.bias"),
              "bias=true llamba: z_bias written or biases missing");
        molt_model *b = load(d1);
        if (b)
            tm_same_params("bias=true llamba", m, b);
        molt_model_free(b);
    }
    molt_model_free(m);
    m = tm_random_model(ctx, HYB_EPS, 4, 0.1f);
    if (m) {
        CHECK(m->cfg.arch == ARCH_HYBRID && m->cfg.n_head == 0, "molt_hybrid without attn_cfg");
        CHECK(molt_model_save_as(ctx, m, d2, "f32", "llamba") == MOLT_ERR_UNSUPPORTED &&
                  strstr(molt_last_error(ctx), "1e-5"),
              "eps 1e-6 into llamba: %s", molt_last_error(ctx));
        save(m, d2, "molt");
        molt_model *b = load(d2);
        if (b) {
            tm_same_params("eps 1e-6 molt_hybrid", m, b);
            CHECK(b->cfg.norm_eps == 1e-6f && model_final_eps(&b->cfg) == 1e-6f, "eps lost");
        }
        molt_model_free(b);
        // a llamba model (blocks at 1e-5, final at 0.5): molt's own layout keeps both
        molt_model *c = tm_random_model(ctx, LLAMBA_BIAS, 5, 0.1f);
        if (c) {
            c->cfg.final_norm_eps = 0.5f;
            save(c, d2, "molt");
            molt_model *e = load(d2);
            CHECK(e && e->cfg.norm_eps == 1e-5f && model_final_eps(&e->cfg) == 0.5f,
                  "final_norm_epsilon lost in molt_hybrid");
            molt_model_free(e);
        }
        molt_model_free(c);
    }
    molt_model_free(m);
}

// ----------------------------------------------------------------------------
// 3. state-spaces MambaConfig

static const char *MAMBA2 =
    "{\"model_type\": \"mamba2\", \"hidden_size\": 32, \"num_hidden_layers\": 2,"
    " \"vocab_size\": 61, \"layer_norm_epsilon\": 1e-5, \"num_heads\": 8, \"head_dim\": 8,"
    " \"state_size\": 8, \"expand\": 2, \"n_groups\": 2, \"conv_kernel\": 4, \"chunk_size\": 8,"
    " \"use_bias\": false, \"use_conv_bias\": true, \"tie_word_embeddings\": true,"
    " \"time_step_limit\": [0.001, 50.0]}";

static void write_text(const char *dir, const char *name, const char *text) {
    char p[1024];
    mkdir(dir, 0755);
    path_of(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "write %s", p);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void expect_refused(const char *cfg, molt_status want, const char *needle) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    write_text(dir, "config.json", cfg);
    molt_model *m = NULL;
    molt_status st = molt_model_load(ctx, dir, &NOTOK, &m);
    CHECK(st == want && strstr(molt_last_error(ctx), needle), "config %s: status %d, \"%s\"",
          cfg, (int)st, molt_last_error(ctx));
    molt_model_free(m);
}

static void test_mamba_ssm(void) {
    char hf[512], nat[512], nat2[512], hf2[512];
    snprintf(hf, sizeof hf, "%s/m2-hf", tmp);
    snprintf(nat, sizeof nat, "%s/m2-native", tmp);
    snprintf(nat2, sizeof nat2, "%s/m2-native2", tmp);
    snprintf(hf2, sizeof hf2, "%s/m2-hf2", tmp);
    molt_model *m = tm_random_model(ctx, MAMBA2, 6, 0.1f);
    if (!m)
        return;
    save(m, hf, "auto");
    save(m, nat, "mamba_ssm");
    char *cj = config_of(nat);
    static const char *const keys[] = {"\"d_model\"", "\"d_intermediate\"", "\"n_layer\"",
                                       "\"vocab_size\"", "\"ssm_cfg\"", "\"attn_layer_idx\"",
                                       "\"attn_cfg\"", "\"rms_norm\"", "\"residual_in_fp32\"",
                                       "\"fused_add_norm\"", "\"pad_vocab_size_multiple\"",
                                       "\"tie_embeddings\"", "\"Mamba2\"", "\"dt_limit\""};
    for (size_t i = 0; cj && i < sizeof keys / sizeof *keys; i++)
        CHECK(strstr(cj, keys[i]), "MambaConfig lacks %s", keys[i]);
    CHECK(cj && !strstr(cj, "model_type") && !strstr(cj, "torch_dtype") &&
              !strstr(cj, "molt_version"),
          "MambaConfig holds keys the dataclass refuses: %s", cj);
    free(cj);
    CHECK(has_tensor(nat, "backbone.embedding.weight") &&
              !has_tensor(nat, "backbone.embeddings.weight") && has_tensor(nat, "lm_head.weight") &&
              has_tensor(nat, "backbone.norm_f.weight") &&
              has_tensor(nat, "backbone.layers.1.mixer.dt_bias"),
          "mamba_ssm tensor names");
    molt_model *b = load(nat);
    if (b) {
        CHECK(!strcmp(b->cfg.src_format, "mamba_ssm") && b->cfg.arch == ARCH_MAMBA2,
              "native read as %s / %s", model_arch_name(b->cfg.arch), b->cfg.src_format);
        CHECK(layer_ssm(&b->cfg, 0)->dt_limit_lo == 0.001f &&
                  layer_ssm(&b->cfg, 0)->dt_limit_hi == 50.0f,
              "dt_limit lost");
        tm_same_params("mamba_ssm", m, b);
        int32_t ids[29];
        for (int i = 0; i < 29; i++)
            ids[i] = (i * 13 + 5) % 61;
        size_t nl = (size_t)29 * m->cfg.vocab;
        float *l0 = tm_logits(ctx, m, ids, 29, false), *l1 = tm_logits(ctx, b, ids, 29, true);
        float *l2 = tm_logits(ctx, b, ids, 29, false);
        CHECK(l0 && l2 && !memcmp(l0, l2, sizeof(float) * nl), "mamba_ssm logits differ");
        CHECK(l0 && l1 && t_max_abs(l0, l1, nl) < 1e-4, "mamba_ssm stepwise logits");
        free(l0), free(l1), free(l2);
        save(b, nat2, NULL); // as loaded: native again
        CHECK(has_tensor(nat2, "backbone.embedding.weight"), "default save left mamba_ssm");
        save(b, hf2, "hf");
        char p1[1024], p2[1024];
        path_of(p1, sizeof p1, hf, "model.safetensors");
        path_of(p2, sizeof p2, hf2, "model.safetensors");
        size_t n1, n2;
        char *a1 = t_read_file(p1, &n1), *a2 = t_read_file(p2, &n2);
        CHECK(a1 && a2 && n1 == n2 && !memcmp(a1, a2, n1), "hf → mamba_ssm → hf changed bytes");
        free(a1), free(a2);
    }
    molt_model_free(b);
    // a MambaConfig written by hand (defaults: expand 2, d_conv 4, bias false, conv_bias true;
    // vocab 61 padded to 64), the HF tensors renamed as mamba_ssm names them: the same model
    char hand[512], p[1024];
    snprintf(hand, sizeof hand, "%s/m2-hand", tmp);
    write_text(hand, "config.json",
               "{\"d_model\": 32, \"d_intermediate\": 0, \"n_layer\": 2, \"vocab_size\": 61,"
               " \"ssm_cfg\": {\"layer\": \"Mamba2\", \"d_state\": 8, \"headdim\": 8,"
               " \"ngroups\": 2, \"chunk_size\": 8, \"dt_limit\": [0.001, 50.0]},"
               " \"attn_layer_idx\": [], \"attn_cfg\": {}, \"rms_norm\": true,"
               " \"residual_in_fp32\": true, \"fused_add_norm\": true,"
               " \"pad_vocab_size_multiple\": 16, \"tie_embeddings\": true}");
    molt_model *v = tm_random_model( // the HF twin with vocab 64
        ctx,
        "{\"model_type\": \"mamba2\", \"hidden_size\": 32, \"num_hidden_layers\": 2,"
        " \"vocab_size\": 64, \"layer_norm_epsilon\": 1e-5, \"num_heads\": 8, \"head_dim\": 8,"
        " \"state_size\": 8, \"expand\": 2, \"n_groups\": 2, \"conv_kernel\": 4,"
        " \"chunk_size\": 8, \"tie_word_embeddings\": true, \"time_step_limit\": [0.001, 50.0]}",
        9, 0.1f);
    if (v) {
        st_wtensor ts[64];
        int        n = 0;
        for (int i = 0; i < v->n_params && n < 63; i++, n++) {
            const param_info *q = &v->params[i];
            ts[n] = (st_wtensor){q->name, ST_F32, q->ndim, {0}, v->data + q->offset, NULL};
            memcpy(ts[n].shape, q->shape, 8 * (size_t)q->ndim);
            if (!strcmp(q->name, "backbone.embeddings.weight")) {
                ts[n].name = "backbone.embedding.weight";
                ts[n + 1] = ts[n];
                ts[++n].name = "lm_head.weight";
            }
        }
        path_of(p, sizeof p, hand, "model.safetensors");
        CHECK(st_write(ctx, p, ts, n, NULL) == MOLT_OK, "write %s", p);
        molt_model *h = load(hand);
        if (h) {
            CHECK(h->cfg.vocab == 64 && layer_ssm(&h->cfg, 0)->H == 8 &&
                      layer_ssm(&h->cfg, 0)->d_inner == 64 && layer_ssm(&h->cfg, 0)->K == 4 &&
                      h->cfg.conv_bias && !h->cfg.ssm_bias,
                  "hand-written MambaConfig read wrong");
            tm_same_params("hand-written mamba_ssm", v, h);
            int32_t ids[17];
            for (int i = 0; i < 17; i++)
                ids[i] = (i * 7 + 3) % 64;
            float *a = tm_logits(ctx, v, ids, 17, false), *c = tm_logits(ctx, h, ids, 17, false);
            CHECK(a && c && !memcmp(a, c, sizeof(float) * 17 * 64),
                  "hand-written mamba_ssm logits differ from the HF twin's");
            free(a), free(c);
        }
        molt_model_free(h);
    }
    molt_model_free(v);
    molt_model_free(m);
    expect_refused("{\"d_model\": 8, \"n_layer\": 1, \"vocab_size\": 8, \"ssm_cfg\": {}}",
                   MOLT_ERR_UNSUPPORTED, "\"Mamba1\"");
    // (d_intermediate > 0, a GatedMLP, is read since: tests/test_mamba3_native.c)
    expect_refused("{\"d_model\": 64, \"n_layer\": 1, \"vocab_size\": 8, \"ssm_cfg\":"
                   " {\"layer\": \"Mamba2\", \"norm_before_gate\": true}}",
                   MOLT_ERR_UNSUPPORTED, "norm_before_gate");
    expect_refused("{\"d_model\": 64, \"n_layer\": 1, \"vocab_size\": 8, \"attn_layer_idx\": [0],"
                   " \"ssm_cfg\": {\"layer\": \"Mamba2\"}}",
                   MOLT_ERR_UNSUPPORTED, "attn_layer_idx");
    expect_refused("{\"hidden\": 64}", MOLT_ERR_FORMAT, "no model_type");
    char bad[512]; // mamba_ssm's and cartesia's save_pretrained write a pickle
    snprintf(bad, sizeof bad, "%s/bad", tmp);
    write_text(bad, "pytorch_model.bin", "PK");
    expect_refused("{\"d_model\": 64, \"n_layer\": 1, \"vocab_size\": 8, \"ssm_cfg\":"
                   " {\"layer\": \"Mamba2\"}}",
                   MOLT_ERR_MISSING, "pytorch_model.bin (a PyTorch pickle");
}

// ----------------------------------------------------------------------------
// 4. the user's files

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.' || strcmp(e->d_name, ".molt-save") == 0;
    if (d)
        closedir(d);
    return n;
}

static void test_user_files(void) {
    char dir[512], p[1024];
    snprintf(dir, sizeof dir, "%s/user", tmp);
    molt_model *m = tm_random_model(ctx, LLAMBA_BIAS, 7, 0.1f);
    molt_model *q = tm_random_model(ctx, MAMBA2, 8, 0.1f);
    if (!m || !q) {
        molt_model_free(m), molt_model_free(q);
        return;
    }
    for (int l = 0; l < 2; l++) // llamba-able
        memset(model_paramf(m, "backbone.layers.%d.mixer.z_bias", l), 0, 4 * 16);
    save(m, dir, "llamba");
    write_text(dir, "notes.txt", "my notes\n");
    write_text(dir, "pytorch_model.bin", "not molt's\n");
    save(m, dir, "molt");
    path_of(p, sizeof p, dir, "notes.txt");
    size_t n;
    char *t = t_read_file(p, &n);
    CHECK(t && !strcmp(t, "my notes\n"), "a save touched notes.txt");
    free(t);
    path_of(p, sizeof p, dir, "pytorch_model.bin");
    t = t_read_file(p, &n);
    CHECK(t && !strcmp(t, "not molt's\n"), "a save touched pytorch_model.bin");
    free(t);
    int before = count_entries(dir);
    char *cfg0 = config_of(dir), *w0, *w1;
    path_of(p, sizeof p, dir, "model.safetensors");
    size_t n0, n1;
    w0 = t_read_file(p, &n0);
    CHECK(molt_model_save_as(ctx, q, dir, "f32", "llamba") == MOLT_ERR_UNSUPPORTED,
          "a mamba2 model saved as llamba");
    CHECK(molt_model_save_as(ctx, m, dir, "f32", "nonsense") == MOLT_ERR_ARG, "layout name");
    char *cfg1 = config_of(dir);
    w1 = t_read_file(p, &n1);
    CHECK(count_entries(dir) == before, "a refused save changed the directory's entries");
    CHECK(cfg0 && cfg1 && !strcmp(cfg0, cfg1), "a refused save changed config.json");
    CHECK(w0 && w1 && n0 == n1 && !memcmp(w0, w1, n0), "a refused save changed the weights");
    free(cfg0), free(cfg1), free(w0), free(w1);
    molt_model_free(m);
    molt_model_free(q);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    const char *td = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp, sizeof tmp, "%s/molt_layout_XXXXXX", td);
    if (!mkdtemp(tmp))
        return t_skip("test_llamba_layout", "no temporary directory");
    test_cartesia();
    test_writer_rules();
    test_mamba_ssm();
    test_user_files();
    tm_rmdir(tmp);
    molt_ctx_free(ctx);
    return t_done("test_llamba_layout");
}
