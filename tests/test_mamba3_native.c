/*
 * test_mamba3_native.c — Mamba-3 models in state-spaces/mamba's native layout
 * (models/layout.h: MambaConfig with ssm_cfg "layer": "Mamba3", GatedMLP when
 * d_intermediate > 0):
 *   1. tests/ref/mamba3_native_ref.py (float64 PyTorch, the mixer of mamba3_ref.py,
 *      mamba_ssm's Block and GatedMLP) writes four random native checkpoints: SISO and
 *      MIMO (rank 2), each without and with d_intermediate (100: GatedMLP width 128;
 *      128), tied and untied, is_outproj_norm on and off. molt loads each (no
 *      model_type: auto-detected) as Mamba-3 layers; its logits (prefill and token by
 *      token) match the reference's within 5e-5; saved back (as loaded) the file holds
 *      exactly the original's tensors, bit for bit, and the reference loads it strictly
 *      and gives its own logits exactly; with an MLP, saved in molt's own layout and back
 *      to mamba_ssm it is still bit-exact; without one molt's layout refuses it by name.
 *      (Skipped, with a notice, without torch.)
 *   2. Without torch: a molt Mamba-3 student (molt_hybrid, SISO and MIMO, MLP width 128)
 *      written by `molt convert --format mamba_ssm` has a MambaConfig config.json (no
 *      model_type, layer Mamba3, d_intermediate 128) and fc1 = [up_proj; gate_proj]; it
 *      loads back to the same parameters bit for bit and bit-identical logits.
 *      Mamba2 blocks with a GatedMLP: a molt_hybrid Mamba-2 student round-trips the same
 *      way (d_intermediate 128), and with a zero down_proj gives the logits of the same
 *      file read with d_intermediate 0 (molt's mamba2 model) within 1e-6.
 *   3. Refusals, each naming its reason: an MLP width GatedMLP cannot build (48), a
 *      layer that is not Mamba-3, a norm epsilon other than 1e-5, an unknown Mamba3
 *      argument, Mamba1 layers, an fc1 of the wrong shape.
 */
#include "io/safetensors.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static molt_ctx *ctx;
static char      tmp[256];
static const molt_load_opts NOTOK = {NULL, 1};

static molt_model *load(const char *dir) {
    molt_model *m = NULL;
    molt_status st = molt_model_load(ctx, dir, &NOTOK, &m);
    CHECK(st == MOLT_OK, "load %s: %s", dir, molt_last_error(ctx));
    return m;
}

static void save(const molt_model *m, const char *dir, const char *layout) {
    molt_status st = molt_model_save_as(ctx, m, dir, "f32", layout);
    CHECK(st == MOLT_OK, "save %s as %s: %s", dir, layout, molt_last_error(ctx));
}

static const char *py(void) {
    return getenv("MOLT_PYTHON") ? getenv("MOLT_PYTHON") : "/usr/bin/python3";
}

static char *config_of(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    size_t n;
    return t_read_file(p, &n);
}

// both model.safetensors hold the same tensors: names, shapes, dtypes and values
static void same_files(const char *what, const char *d1, const char *d2) {
    char p1[1024], p2[1024];
    snprintf(p1, sizeof p1, "%s/model.safetensors", d1);
    snprintf(p2, sizeof p2, "%s/model.safetensors", d2);
    st_file *f1 = NULL, *f2 = NULL;
    CHECK(st_open(ctx, p1, &f1) == MOLT_OK && st_open(ctx, p2, &f2) == MOLT_OK, "%s: open", what);
    if (f1 && f2) {
        CHECK(st_count(f1) == st_count(f2), "%s: %d vs %d tensors", what, st_count(f1),
              st_count(f2));
        for (int i = 0; i < st_count(f1); i++) {
            const st_tensor *t = st_at(f1, i), *u = st_find(f2, t->name);
            CHECK(u && u->ndim == t->ndim && u->dtype == t->dtype &&
                      !memcmp(u->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim),
                  "%s: tensor %s missing or of another shape / dtype", what, t->name);
            if (!u || u->ndim != t->ndim || memcmp(u->shape, t->shape, 8 * (size_t)t->ndim))
                continue;
            size_t n = 1;
            for (int k = 0; k < t->ndim; k++)
                n *= (size_t)t->shape[k];
            float *a = malloc(4 * n + 4), *b = malloc(4 * n + 4);
            CHECK(a && b && st_read_f32(ctx, t, a) == MOLT_OK &&
                      st_read_f32(ctx, u, b) == MOLT_OK && !memcmp(a, b, 4 * n),
                  "%s: tensor %s differs", what, t->name);
            free(a);
            free(b);
        }
    }
    st_close(f1);
    st_close(f2);
}

static bool has_tensor(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_file *f = NULL;
    bool     yes = st_open(ctx, p, &f) == MOLT_OK && st_find(f, name);
    st_close(f);
    return yes;
}

static void write_text(const char *dir, const char *name, const char *text);

static bool same_logits(const molt_model *a, const molt_model *b, const int32_t *ids, int n) {
    float *x = tm_logits(ctx, a, ids, n, false), *y = tm_logits(ctx, b, ids, n, false);
    bool   ok = x && y && !memcmp(x, y, sizeof(float) * (size_t)n * a->cfg.vocab);
    free(x);
    free(y);
    return ok;
}

// ----------------------------------------------------------------------------
// 1. native checkpoints of the PyTorch reference

static void test_reference_variant(const char *v, bool mlp) {
    char dir[512], ref[600], back[512], own[512], own2[512], cmd[2048], label[64];
    snprintf(dir, sizeof dir, "%s/ref/%s", tmp, v);
    snprintf(ref, sizeof ref, "%s/ref.safetensors", dir);
    snprintf(back, sizeof back, "%s/%s-back", tmp, v);
    snprintf(own, sizeof own, "%s/%s-own", tmp, v);
    snprintf(own2, sizeof own2, "%s/%s-own2", tmp, v);
    snprintf(label, sizeof label, "native Mamba-3 %s", v);
    molt_model *m = load(dir);
    if (!m)
        return;
    bool kinds = m->cfg.arch == ARCH_HYBRID && m->cfg.has_mlp == mlp;
    for (int l = 0; l < m->cfg.n_layer; l++)
        kinds &= m->cfg.kind[l] == LAYER_MAMBA3;
    CHECK(kinds, "%s: not held as Mamba-3 layers (arch %s, MLP %d)", label,
          model_arch_name(m->cfg.arch), (int)m->cfg.has_mlp);
    CHECK(tm_check_reference(ctx, m, ref, 5e-5, label) == 1, "%s: no reference", label);
    int32_t ids[29];
    for (int i = 0; i < 29; i++)
        ids[i] = (i * 37 + 11) % m->cfg.vocab;
    save(m, back, "auto"); // the layout it came in
    char *cj = config_of(back);
    CHECK(cj && !strstr(cj, "model_type") && strstr(cj, "\"Mamba3\""),
          "%s: re-saved config.json is not a Mamba3 MambaConfig:\n%s", label, cj ? cj : "");
    free(cj);
    same_files(label, dir, back);
    molt_model *b = load(back);
    if (b) {
        tm_same_params(label, m, b);
        CHECK(same_logits(m, b, ids, 29), "%s: re-read logits differ", label);
    }
    molt_model_free(b);
    snprintf(cmd, sizeof cmd, "'%s' tests/ref/mamba3_native_ref.py check '%s' '%s'", py(), back,
             ref);
    CHECK(system(cmd) == 0, "%s: the reference does not load molt's file strictly to the same "
                            "logits (%s)", label, cmd);
    if (!mlp) {
        CHECK(molt_model_save_as(ctx, m, own, "f32", "molt") == MOLT_ERR_UNSUPPORTED &&
                  strstr(molt_last_error(ctx), "MLP"),
              "%s: molt's layout took a model without MLP: %s", label, molt_last_error(ctx));
    } else {
        save(m, own, "molt");
        cj = config_of(own);
        CHECK(cj && strstr(cj, "\"molt_hybrid\"") && strstr(cj, "\"mamba3_cfg\""),
              "%s: molt layout config:\n%s", label, cj ? cj : "");
        free(cj);
        molt_model *o = load(own);
        if (o) {
            tm_same_params("molt layout", m, o);
            CHECK(same_logits(m, o, ids, 29), "%s: molt_hybrid logits differ", label);
            save(o, own2, "mamba_ssm");
            same_files("molt layout back to mamba_ssm", dir, own2);
        }
        molt_model_free(o);
    }
    molt_model_free(m);
}

static void test_reference(void) {
    char cmd[2048], out[512];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", py());
    if (system(cmd) != 0 || !t_exists("tests/ref/mamba3_native_ref.py")) {
        printf("  (skipped the PyTorch reference part: no torch / numpy for %s)\n", py());
        return;
    }
    snprintf(out, sizeof out, "%s/ref", tmp);
    snprintf(cmd, sizeof cmd, "'%s' tests/ref/mamba3_native_ref.py make '%s'", py(), out);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    test_reference_variant("s", false);
    test_reference_variant("sm", true);
    test_reference_variant("m", false);
    test_reference_variant("mm", true);
}

// ----------------------------------------------------------------------------
// 2. molt's students into the native layout

static void student_json(char *json, size_t cap, const char *m3, int d_ff, const char *layers,
                         int n_layer, const char *eps) {
    snprintf(json, cap,
             "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 32,"
             " \"n_layer\": %d, \"norm_epsilon\": %s, \"tie_embeddings\": false,"
             " \"mlp_cfg\": {\"intermediate_size\": %d},"
             " \"attn_cfg\": {\"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
             " \"head_dim\": 8}, \"mamba3_cfg\": %s, \"layers\": [%s]}",
             n_layer, eps, d_ff, m3, layers);
}

static const char *SISO = "{\"d_state\": 16, \"expand\": 2, \"headdim\": 16, \"ngroups\": 1,"
                          " \"chunk_size\": 16}";
static const char *MIMO = "{\"d_state\": 8, \"expand\": 1, \"headdim\": 8, \"ngroups\": 2,"
                          " \"rope_fraction\": 1.0, \"is_mimo\": true, \"mimo_rank\": 2,"
                          " \"is_outproj_norm\": true, \"chunk_size\": 8}";
static const char *M3x2 = "{\"mixer\": \"mamba3\"}, {\"mixer\": \"mamba3\"}";

static const char *molt_bin(void) {
    return getenv("MOLT_BIN") ? getenv("MOLT_BIN") : "build/molt";
}

static void test_student(const char *name, const char *m3, uint64_t seed) {
    char json[2048], src[512], dst[512], cmd[2048];
    snprintf(src, sizeof src, "%s/st-%s", tmp, name);
    snprintf(dst, sizeof dst, "%s/st-%s-native", tmp, name);
    student_json(json, sizeof json, m3, 128, M3x2, 2, "1e-5");
    molt_model *m = tm_random_model(ctx, json, seed, 0.1f);
    if (!m)
        return;
    save(m, src, "molt");
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --format mamba_ssm >/dev/null 2>&1",
             molt_bin(), src, dst);
    CHECK(system(cmd) == 0, "student %s: %s failed", name, cmd);
    char *cj = config_of(dst);
    CHECK(cj && !strstr(cj, "model_type") && strstr(cj, "\"layer\":\t\"Mamba3\"") &&
              strstr(cj, "\"d_intermediate\":\t128"),
          "student %s: config.json is not a Mamba3 MambaConfig:\n%s", name, cj ? cj : "");
    free(cj);
    CHECK(has_tensor(dst, "backbone.layers.1.mlp.fc1.weight") &&
              has_tensor(dst, "backbone.layers.1.norm2.weight") &&
              has_tensor(dst, "backbone.layers.0.norm.weight") &&
              has_tensor(dst, "backbone.norm_f.weight") &&
              !has_tensor(dst, "backbone.layers.0.mlp.gate_proj.weight"),
          "student %s: native tensor names missing", name);
    molt_model *b = load(dst);
    if (b) {
        CHECK(b->cfg.arch == ARCH_HYBRID && b->cfg.kind[1] == LAYER_MAMBA3 && b->cfg.has_mlp &&
                  b->cfg.d_ff == 128,
              "student %s: reads back as another model", name);
        tm_same_params(name, m, b);
        int32_t ids[23];
        for (int i = 0; i < 23; i++)
            ids[i] = (i * 13 + 5) % m->cfg.vocab;
        CHECK(same_logits(m, b, ids, 23), "student %s: logits differ", name);
        // fc1 rows [0, F) are up_proj, [F, 2F) gate_proj (GatedMLP: y · silu(gate))
        char p[1024];
        snprintf(p, sizeof p, "%s/model.safetensors", dst);
        st_file *f = NULL;
        if (st_open(ctx, p, &f) == MOLT_OK) {
            const st_tensor *t = st_find(f, "backbone.layers.0.mlp.fc1.weight");
            float *fc1 = malloc(sizeof(float) * 256 * 32);
            CHECK(t && fc1 && st_read_f32(ctx, t, fc1) == MOLT_OK &&
                      !memcmp(fc1, model_paramf(m, "backbone.layers.0.mlp.up_proj.weight"),
                              4 * 128 * 32) &&
                      !memcmp(fc1 + 128 * 32,
                              model_paramf(m, "backbone.layers.0.mlp.gate_proj.weight"),
                              4 * 128 * 32),
                  "student %s: fc1 is not [up; gate]", name);
            free(fc1);
        }
        st_close(f);
    }
    molt_model_free(b);
    molt_model_free(m);
}

// Mamba2 blocks with a GatedMLP: a molt_hybrid Mamba-2 student written as a MambaConfig with
// d_intermediate 128 reads back (a molt_hybrid of Mamba-2 SSM layers) bit-exactly, and is saved
// back as it came; with its MLP's down_proj 0 its logits are those of the same file read with
// d_intermediate 0 (molt's mamba2 model: the same mixer through the other model path).
static const char *M2_STUDENT =
    "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 32, \"n_layer\": 2,"
    " \"norm_epsilon\": 1e-5, \"tie_embeddings\": true, \"mlp_cfg\": {\"intermediate_size\": 128},"
    " \"ssm_cfg\": {\"layer\": \"Mamba2\", \"d_state\": 16, \"n_v_heads\": 4, \"n_qk_heads\": 1,"
    " \"expand\": 2, \"chunk_size\": 16}, \"layers\": [{\"mixer\": \"ssm\"}, {\"mixer\": \"ssm\"}]}";

static void test_mamba2_mlp(void) {
    char nat[512], back[512], m2[512];
    snprintf(nat, sizeof nat, "%s/m2mlp", tmp);
    snprintf(back, sizeof back, "%s/m2mlp-back", tmp);
    snprintf(m2, sizeof m2, "%s/m2mlp-nomlp", tmp);
    molt_model *m = tm_random_model(ctx, M2_STUDENT, 31, 0.1f);
    if (!m)
        return;
    int32_t ids[23];
    for (int i = 0; i < 23; i++)
        ids[i] = (i * 17 + 3) % m->cfg.vocab;
    save(m, nat, "mamba_ssm");
    char *cj = config_of(nat);
    CHECK(cj && !strstr(cj, "model_type") && strstr(cj, "\"layer\":\t\"Mamba2\"") &&
              strstr(cj, "\"d_intermediate\":\t128"),
          "Mamba-2 + MLP: config.json is not a Mamba2 MambaConfig with d_intermediate:\n%s",
          cj ? cj : "");
    molt_model *b = load(nat);
    if (b) {
        CHECK(b->cfg.arch == ARCH_HYBRID && b->cfg.kind[0] == LAYER_SSM &&
                  layer_ssm(&b->cfg, 0)->kind == SSM_MAMBA2 && b->cfg.has_mlp &&
                  b->cfg.d_ff == 128,
              "Mamba-2 + MLP reads back as another model");
        tm_same_params("Mamba-2 + MLP", m, b);
        CHECK(same_logits(m, b, ids, 23), "Mamba-2 + MLP: logits differ");
        save(b, back, "auto");
        same_files("Mamba-2 + MLP saved as loaded", nat, back);
    }
    molt_model_free(b);
    for (int l = 0; l < 2; l++)
        memset(model_paramf(m, "backbone.layers.%d.mlp.down_proj.weight", l), 0, 4 * 32 * 128);
    save(m, m2, "mamba_ssm");
    free(cj);
    cj = config_of(m2);
    char *at = cj ? strstr(cj, "\"d_intermediate\":\t128") : NULL;
    CHECK(at != NULL, "Mamba-2 + MLP: no d_intermediate 128");
    if (at) {
        memcpy(at, "\"d_intermediate\":\t  0", 21);
        write_text(m2, "config.json", cj);
        molt_model *p = load(m2);
        if (p) {
            CHECK(p->cfg.arch == ARCH_MAMBA2, "d_intermediate 0 reads as %s",
                  model_arch_name(p->cfg.arch));
            float *x = tm_logits(ctx, m, ids, 23, false), *y = tm_logits(ctx, p, ids, 23, false);
            CHECK(x && y, "logits");
            if (x && y)
                t_close("Mamba-2 + zero MLP vs mamba2", x, y, (size_t)23 * m->cfg.vocab, 1e-6,
                        -1);
            free(x);
            free(y);
        }
        molt_model_free(p);
    }
    free(cj);
    molt_model_free(m);
}

// ----------------------------------------------------------------------------
// 3. refusals

static void write_text(const char *dir, const char *name, const char *text) {
    char p[1024];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK(f && fputs(text, f) >= 0, "write %s", p);
    if (f)
        fclose(f);
}

static void expect_load_refused(const char *cfg, const char *needle) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    write_text(dir, "config.json", cfg);
    molt_model *m = NULL;
    molt_status st = molt_model_load(ctx, dir, &NOTOK, &m);
    CHECK(st != MOLT_OK && strstr(molt_last_error(ctx), needle), "config %s: status %d, \"%s\"",
          cfg, (int)st, molt_last_error(ctx));
    molt_model_free(m);
}

static void expect_save_refused(const char *json, const char *needle) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/refused", tmp);
    molt_model *m = tm_random_model(ctx, json, 9, 0.1f);
    if (!m)
        return;
    CHECK(molt_model_save_as(ctx, m, dir, "f32", "mamba_ssm") == MOLT_ERR_UNSUPPORTED &&
              strstr(molt_last_error(ctx), needle),
          "saving %s as mamba_ssm: \"%s\"", json, molt_last_error(ctx));
    molt_model_free(m);
}

static void test_refusals(void) {
    char json[2048];
    student_json(json, sizeof json, SISO, 48, M3x2, 2, "1e-5");
    expect_save_refused(json, "multiple of 128");
    student_json(json, sizeof json, SISO, 128,
                 "{\"mixer\": \"mamba3\"}, {\"mixer\": \"attention\"}", 2, "1e-5");
    expect_save_refused(json, "layer 1 is attention");
    student_json(json, sizeof json, SISO, 128, M3x2, 2, "1e-6");
    expect_save_refused(json, "1e-5");
    expect_load_refused("{\"d_model\": 32, \"n_layer\": 1, \"vocab_size\": 64, \"ssm_cfg\":"
                        " {\"layer\": \"Mamba3\", \"headdim\": 16, \"d_state\": 16,"
                        " \"mimo_rnk\": 2}}",
                        "ssm_cfg.mimo_rnk");
    expect_load_refused("{\"d_model\": 32, \"n_layer\": 1, \"vocab_size\": 64, \"ssm_cfg\":"
                        " {\"layer\": \"Mamba1\"}}",
                        "Mamba2 and Mamba3");
    // an fc1 of the wrong shape: a student's native file with its config's d_intermediate
    // changed to 256 (fc1 [256, 32] where [512, 32] is implied)
    char src[512];
    snprintf(src, sizeof src, "%s/fc1", tmp);
    student_json(json, sizeof json, SISO, 128, M3x2, 2, "1e-5");
    molt_model *m = tm_random_model(ctx, json, 11, 0.1f);
    if (m) {
        save(m, src, "mamba_ssm");
        char *cj = config_of(src), *at = cj ? strstr(cj, "\"d_intermediate\":\t128") : NULL;
        CHECK(at != NULL, "fc1: no d_intermediate 128 in config.json");
        if (at) {
            memcpy(at, "\"d_intermediate\":\t256", 21);
            write_text(src, "config.json", cj);
            molt_model *b = NULL;
            CHECK(molt_model_load(ctx, src, &NOTOK, &b) == MOLT_ERR_SHAPE &&
                      strstr(molt_last_error(ctx), "fc1.weight") &&
                      strstr(molt_last_error(ctx), "[512, 32]"),
                  "fc1 of the wrong shape: \"%s\"", molt_last_error(ctx));
            molt_model_free(b);
        }
        free(cj);
    }
    molt_model_free(m);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    const char *td = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp, sizeof tmp, "%s/molt_m3nat_XXXXXX", td);
    if (!mkdtemp(tmp))
        return t_skip("test_mamba3_native", "no temporary directory");
    test_reference();
    test_student("siso", SISO, 21);
    test_student("mimo", MIMO, 22);
    test_mamba2_mlp();
    test_refusals();
    tm_rmdir(tmp);
    molt_ctx_free(ctx);
    return t_done("test_mamba3_native");
}
