/*
 * model_load.c — molt_model_load / molt_model_save: one entry point that
 * recognises an HF-style directory (config.json + safetensors, single or
 * sharded) or a llama2.c checkpoint, checks every tensor against the config
 * (name, dtype, shape), and the writer that produces the same layout back.
 */
#include "io/fileio.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/layout.h"
#include "models/model.h"
#include "models/quant.h"
#include "tok/tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (16u << 20)

// ----------------------------------------------------------------------------
// tensors: every declared parameter must be present with its exact shape

static bool shape_matches(const st_tensor *t, const param_info *p) {
    if ((size_t)t->numel != p->numel)
        return false;
    if (t->ndim == p->ndim) {
        for (int i = 0; i < p->ndim; i++)
            if (t->shape[i] != p->shape[i])
                return false;
        return true;
    }
    // conv1d weights are [C,1,K] in PyTorch checkpoints and [C,K] in some exports
    if (p->ndim == 3 && p->shape[1] == 1 && t->ndim == 2)
        return t->shape[0] == p->shape[0] && t->shape[1] == p->shape[2];
    return false;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

// dst[n] = the n floats of t from row row0 on (t 2-D, its shape checked)
static molt_status read_row_block(molt_ctx *ctx, const st_tensor *t, int64_t row0, float *dst,
                                  size_t n) {
    size_t all = (size_t)t->shape[0] * (size_t)t->shape[1];
    float *tmp = molt__malloc(all * sizeof *tmp);
    if (!tmp)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory reading '%s'", t->name);
    molt_status st = st_read_f32(ctx, t, tmp);
    if (st == MOLT_OK)
        memcpy(dst, tmp + (size_t)row0 * (size_t)t->shape[1], n * sizeof *dst);
    molt__free(tmp);
    return st;
}

static molt_status load_tensors(molt_ctx *ctx, molt_model *m, const st_file *f, const char *dir) {
    char nb[MODEL_NAME_MAX];
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        const char      *fname = layout_file_name(&m->cfg, p->name, nb); // (layout.h)
        const st_tensor *t = st_find(f, fname);
        if (!t) {
            if (p->optional || layout_may_omit(&m->cfg, p->name))
                continue;
            return molt__err(ctx, MOLT_ERR_MISSING,
                             "%s: tensor '%s' is missing (needed by model_type %s)", dir, fname,
                             model_arch_name(m->cfg.arch));
        }
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16 &&
            t->dtype != ST_F64 && t->dtype != ST_I8)
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s' has dtype %s (expected F32, "
                                                   "BF16, F16, or I8 for q8_0)",
                             st_shard_path(f, t->shard), p->name, st_dtype_name(t->dtype));
        int64_t row0 = 0, rows = 0; // a block of rows of the file's tensor (layout.h)
        bool    blk = layout_row_block(&m->cfg, p->name, &row0, &rows);
        int64_t want[2] = {rows, p->ndim == 2 ? p->shape[1] : 0};
        if (blk ? t->ndim != 2 || t->shape[0] != want[0] || t->shape[1] != want[1]
                : !shape_matches(t, p)) {
            char a[96], b[96];
            fmt_shape(a, sizeof a, t->ndim, t->shape);
            if (blk)
                fmt_shape(b, sizeof b, 2, want);
            else
                fmt_shape(b, sizeof b, p->ndim, p->shape);
            return molt__err(ctx, MOLT_ERR_SHAPE,
                             "%s: tensor '%s' has shape %s but config.json implies %s",
                             st_shard_path(f, t->shard), blk ? t->name : p->name, a, b);
        }
        if (t->dtype == ST_I8 && blk)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: tensor '%s' is q8_0 (only in "
                                                        "molt's layouts)", dir, t->name);
        if (t->dtype == ST_I8) // q8_0: model_q8_load, below
            continue;
        molt_status st = blk ? read_row_block(ctx, t, row0, m->data + p->offset, p->numel)
                             : st_read_f32(ctx, t, m->data + p->offset);
        if (st != MOLT_OK)
            return st;
    }
    molt_status st = model_q8_load(ctx, m, f, dir);
    if (st != MOLT_OK)
        return st;
    // tensors molt does not use are reported, not fatal (e.g. rotary inv_freq buffers)
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        if (!model_param(m, layout_molt_name(&m->cfg, t->name, nb)) &&
            !model_q8_is_scale(m, t->name) &&
            !(m->cfg.tie_embeddings && !strcmp(t->name, "lm_head.weight")))
            molt__log(MOLT_LOG_INFO, "%s: ignoring unused tensor '%s'", dir, t->name);
    }
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// tokenizer lookup beside a model

static molt_status load_tokenizer_near(molt_ctx *ctx, molt_model *m, const char *dir,
                                       const molt_load_opts *opts) {
    if (opts && opts->no_tokenizer)
        return MOLT_OK;
    char path[4096];
    const char *use = NULL;
    if (opts && opts->tokenizer_path) {
        use = opts->tokenizer_path;
    } else {
        // tokenizer.bin first: a llama2.c model's directory holds it and the
        // tokenizer.json derived from it for HF; the .bin is the original.
        static const char *const names[] = {"tokenizer.bin", "tokenizer.json", "tokenizer.model"};
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !use; i++) {
            fio_join(path, sizeof path, dir, names[i]);
            if (fio_exists(path))
                use = path;
        }
        if (!use) { // llama2.c custom vocabularies are named tok<V>.bin
            char name[64];
            snprintf(name, sizeof name, "tok%d.bin", m->cfg.vocab);
            fio_join(path, sizeof path, dir, name);
            if (fio_exists(path))
                use = path;
        }
    }
    if (!use) {
        molt__log(MOLT_LOG_INFO, "%s: no tokenizer found beside the model", dir);
        return MOLT_OK;
    }
    molt_status st = molt_tokenizer_load(ctx, use, m->cfg.vocab, &m->tok);
    if (st != MOLT_OK)
        return st;
    if (molt_tokenizer_vocab(m->tok) > m->cfg.vocab) {
        int32_t tv = molt_tokenizer_vocab(m->tok);
        molt_tokenizer_free(m->tok);
        m->tok = NULL;
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: tokenizer has %d tokens but the model's vocab "
                                              "is %d",
                         use, tv, m->cfg.vocab);
    }
    if (m->cfg.bos >= 0 || m->cfg.eos >= 0)
        tok_set_special(m->tok, m->cfg.bos >= 0 ? m->cfg.bos : molt_tokenizer_bos(m->tok),
                        m->cfg.eos >= 0 ? m->cfg.eos : molt_tokenizer_eos(m->tok));
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// HF directory

// config.json → a model with zeroed parameters
static molt_status alloc_from_config(molt_ctx *ctx, const char *path, molt_model **out) {
    *out = NULL;
    char *json = NULL;
    size_t len = 0;
    molt_status st = fio_read_all(ctx, path, CONFIG_MAX_BYTES, &json, &len);
    if (st != MOLT_OK)
        return st;
    model_cfg cfg;
    st = layout_cfg_from_json(ctx, path, json, len, &cfg);
    molt__free(json);
    if (st != MOLT_OK)
        return st;
    st = model_alloc(ctx, &cfg, out);
    model_free_cfg(&cfg);
    return st;
}

molt_status model_load_hf(molt_ctx *ctx, const char *dir, molt_model **out) {
    *out = NULL;
    char path[4096];
    fio_join(path, sizeof path, dir, "config.json");
    molt_model *m = NULL;
    molt_status st = alloc_from_config(ctx, path, &m);
    if (st != MOLT_OK)
        return st;
    st_file *f = NULL;
    char     a[4096], b[4096], c[4096];
    fio_join(a, sizeof a, dir, "model.safetensors");
    fio_join(b, sizeof b, dir, ST_INDEX_NAME);
    fio_join(c, sizeof c, dir, "pytorch_model.bin");
    if (!fio_exists(a) && !fio_exists(b) && fio_exists(c)) // (mamba_ssm / cartesia save_pretrained)
        st = molt__err(ctx, MOLT_ERR_MISSING,
                       "%s: holds pytorch_model.bin (a PyTorch pickle, which molt does not read) "
                       "and no model.safetensors; convert it in Python: sd = torch.load(\"pytorch"
                       "_model.bin\"); safetensors.torch.save_file({k: v.clone() for k, v in "
                       "sd.items()}, \"model.safetensors\")", dir);
    else if ((st = st_open(ctx, dir, &f)) == MOLT_OK) {
        st = load_tensors(ctx, m, f, dir);
        st_close(f);
    }
    if (st != MOLT_OK) {
        molt_model_free(m);
        return st;
    }
    *out = m;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// public entry points

static void dirname_of(char *out, size_t cap, const char *path) {
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(out, cap, ".");
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

molt_status molt_model_load(molt_ctx *ctx, const char *path, const molt_load_opts *opts,
                            molt_model **out) {
    *out = NULL;
    if (!path || !*path)
        return molt__err(ctx, MOLT_ERR_ARG, "no model path given");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return molt__err(ctx, MOLT_ERR_IO, "%s: no such file or directory", path);
    char dir[4096];
    molt_model *m = NULL;
    molt_status st;
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        st = model_load_hf(ctx, dir, &m);
    } else if (ends_with(path, ".json") || ends_with(path, ".safetensors")) {
        dirname_of(dir, sizeof dir, path);
        st = model_load_hf(ctx, dir, &m);
    } else {
        dirname_of(dir, sizeof dir, path);
        st = model_load_llama2c(ctx, path, &m);
    }
    if (st != MOLT_OK)
        return st;
    if ((st = load_tokenizer_near(ctx, m, dir, opts)) != MOLT_OK ||
        (st = model_place(ctx, m)) != MOLT_OK) {
        molt_model_free(m);
        return st;
    }
    *out = m;
    return MOLT_OK;
}

// The files a saved model consists of (a save replaces all of them, and
// removes those of an older model that it does not write: a stale index
// would make the loader read the old shards).
static bool is_model_file(const char *name) {
    static const char *const fixed[] = {"config.json",           "model.safetensors",
                                        ST_INDEX_NAME,           "tokenizer.json",
                                        "tokenizer.bin",         "tokenizer.model",
                                        "tokenizer_config.json", "special_tokens_map.json",
                                        NULL};
    for (int i = 0; fixed[i]; i++)
        if (!strcmp(name, fixed[i]))
            return true;
    return !strncmp(name, "model-", 6) && strstr(name, "-of-") && ends_with(name, ".safetensors");
}

// removes the staging directory and what is in it (only files molt wrote)
static void drop_staging(const char *stage) {
    DIR *d = opendir(stage);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                fio_join(p, sizeof p, stage, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(stage);
}

// A llama2.c tokenizer is saved as tokenizer.bin (what molt reads) and, for
// HF, as tokenizer.json + tokenizer_config.json (tok_l2hf.c). A vocabulary
// tokenizer.json cannot express is saved as tokenizer.bin alone, with a warning.
static molt_status write_llama2c_hf(molt_ctx *ctx, const molt_tokenizer *tok, const char *stage,
                                    const char **tok_names) {
    char       *tj = NULL, *cj = NULL, path[4096];
    molt_status st = tok_llama2c_to_hf(ctx, tok, &tj, &cj);
    if (st == MOLT_ERR_UNSUPPORTED) {
        molt__log(MOLT_LOG_WARN, "no tokenizer.json written (HF cannot read this tokenizer): %s",
                  molt_last_error(ctx));
        return MOLT_OK;
    }
    if (st == MOLT_OK) {
        fio_join(path, sizeof path, stage, "tokenizer.json");
        st = fio_write_atomic(ctx, path, tj, strlen(tj));
    }
    if (st == MOLT_OK) {
        fio_join(path, sizeof path, stage, "tokenizer_config.json");
        st = fio_write_atomic(ctx, path, cj, strlen(cj));
    }
    molt__free(tj);
    molt__free(cj);
    if (st == MOLT_OK) {
        tok_names[1] = "tokenizer.json";
        tok_names[2] = "tokenizer_config.json";
    }
    return st;
}

// *out = the file tensor fname [rows, cols]: every parameter of m that is a row block of it
// (layout_row_block) copied to its rows
static molt_status fuse_rows(molt_ctx *ctx, const molt_model *m, const model_cfg *cfg,
                             const float *data, const char *fname, int64_t rows, int64_t cols,
                             float **out) {
    char   nb[MODEL_NAME_MAX];
    float *f = molt__calloc((size_t)rows * (size_t)cols, sizeof *f);
    if (!f)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory saving '%s'", fname);
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        int64_t r0, r;
        if (layout_row_block(cfg, p->name, &r0, &r) && r == rows &&
            !strcmp(layout_file_name(cfg, p->name, nb), fname))
            memcpy(f + (size_t)r0 * (size_t)cols, data + p->offset, p->numel * sizeof *f);
    }
    *out = f;
    return MOLT_OK;
}

// writes the model's files into stage (a fresh directory) in the layout of cfg (m's
// config as layout_target_cfg gives it); tok_names[0..2]: the tokenizer files
// written (NULL: none). q8: the weight matrices as q8_0 (quant.c, from the
// model's q8_0 copy on the host), everything else F32
static molt_status write_model_files(molt_ctx *ctx, const molt_model *m, const model_cfg *cfg,
                                     const char *stage, st_dtype dt, bool q8,
                                     const char **tok_names) {
    char         path[4096];
    q8_save      qs = {0};
    st_wtensor  *ts = NULL;
    float       *host = NULL; // a device model's parameters, downloaded
    const float *data = NULL;
    int          n = m->n_params;
    molt_status  st = MOLT_OK;
    if (q8 && !strcmp(cfg->src_format, "mamba_ssm"))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "q8_0 is saved in molt's layouts only, not "
                                                    "mamba_ssm");
    if (q8) {
        if (!m->be->mem.host_visible)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "saving q8_0 from %s: quantize on the "
                                                        "CPU (molt quantize)", m->be->name);
        if ((st = model_q8_save_tensors(ctx, m, &qs)) != MOLT_OK)
            return st;
        ts = qs.ts, n = qs.n;
    } else {
        data = model_host_floats(ctx, m->be, m->data, m->n_floats, &host);
        // one more: a tied head written beside the embedding (mamba_ssm); names: mapped
        ts = data ? molt__calloc((size_t)m->n_params + 1, sizeof *ts + MODEL_NAME_MAX) : NULL;
        if (!ts) {
            molt__free(host);
            return data ? molt__err(ctx, MOLT_ERR_OOM, "out of memory saving the model")
                        : molt_last_status(ctx);
        }
    }
    char   *names = q8 ? NULL : (char *)(ts + m->n_params + 1);
    float **fused = q8 ? NULL : molt__calloc((size_t)m->n_params, sizeof *fused);
    if (!q8 && !fused)
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory saving the model");
    for (int i = 0, k = 0; !q8 && st == MOLT_OK && i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        if (layout_skips(cfg, m, p)) {
            n--;
            continue;
        }
        char *nm = names + (size_t)k * MODEL_NAME_MAX, fb[MODEL_NAME_MAX];
        snprintf(nm, MODEL_NAME_MAX, "%s", layout_file_name(cfg, p->name, fb));
        int64_t row0, rows;
        if (layout_row_block(cfg, p->name, &row0, &rows)) { // parameters joined in one tensor
            bool done = false;
            for (int j = 0; j < k && !done; j++)
                done = !strcmp(ts[j].name, nm);
            if (done) {
                n--;
                continue;
            }
            st = fuse_rows(ctx, m, cfg, data, nm, rows, p->shape[1], &fused[i]);
            ts[k].name = nm;
            ts[k].dtype = dt;
            ts[k].ndim = 2;
            ts[k].shape[0] = rows, ts[k].shape[1] = p->shape[1];
            ts[k++].data = fused[i];
            continue;
        }
        ts[k].name = nm;
        ts[k].dtype = dt;
        ts[k].ndim = p->ndim;
        memcpy(ts[k].shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
        ts[k++].data = data + p->offset;
        if (i == 0 && layout_writes_tied_head(cfg)) { // the embedding: the head beside it
            ts[k] = ts[k - 1];
            ts[k++].name = "lm_head.weight";
            n++;
        }
    }
    static const char *const meta[] = {"format", "pt", "producer", "molt", NULL};
    fio_join(path, sizeof path, stage, "model.safetensors");
    if (st == MOLT_OK)
        st = st_write(ctx, path, ts, n, meta);
    if (q8) {
        model_q8_save_free(&qs);
    } else {
        for (int i = 0; fused && i < m->n_params; i++)
            molt__free(fused[i]);
        molt__free(fused);
        molt__free(ts);
    }
    molt__free(host);
    if (st != MOLT_OK)
        return st;
    char *json = NULL;
    const char *hf_dtype = dt == ST_BF16 ? "bfloat16" : dt == ST_F16 ? "float16" : "float32";
    if ((st = layout_cfg_to_json(ctx, cfg, hf_dtype, &json)) != MOLT_OK)
        return st;
    if (q8) {
        char *qj = NULL;
        st = model_q8_config(ctx, json, &qj);
        molt__free(json);
        if (st != MOLT_OK)
            return st;
        json = qj;
    }
    fio_join(path, sizeof path, stage, "config.json");
    st = fio_write_atomic(ctx, path, json, strlen(json));
    molt__free(json);
    if (st != MOLT_OK)
        return st;
    tok_names[0] = tok_names[1] = tok_names[2] = NULL;
    if (m->tok) { // in the format it came in
        tok_names[0] = tok_kind_of(m->tok) == TOK_BPE_JSON  ? "tokenizer.json"
                       : tok_kind_of(m->tok) == TOK_LLAMA2C ? "tokenizer.bin"
                                                            : "tokenizer.model";
        fio_join(path, sizeof path, stage, tok_names[0]);
        st = tok_save(ctx, m->tok, path);
        if (st == MOLT_OK && tok_kind_of(m->tok) == TOK_LLAMA2C)
            st = write_llama2c_hf(ctx, m->tok, stage, tok_names);
        char *cj = NULL; // a tokenizer.json: its tokenizer_config.json for transformers
        if (st == MOLT_OK && tok_kind_of(m->tok) == TOK_BPE_JSON &&
            (st = tok_hf_config(ctx, m->tok, &cj)) == MOLT_OK) {
            fio_join(path, sizeof path, stage, "tokenizer_config.json");
            if ((st = fio_write_atomic(ctx, path, cj, strlen(cj))) == MOLT_OK)
                tok_names[2] = "tokenizer_config.json";
        }
        molt__free(cj);
    }
    return st;
}

// Saving writes every file into dir/.molt-save first (nothing in dir
// changes if that fails), then swaps: the old index goes first (the loader
// prefers an index), the new weights, tokenizer and config (last) are renamed
// in, and the old model's other files (shards, a tokenizer of another format)
// are removed. Files in dir that are not model files (a run's log,
// checkpoints, the user's own) are left alone.
molt_status molt_model_save(molt_ctx *ctx, const molt_model *m, const char *dir,
                            const char *dtype) {
    return molt_model_save_as(ctx, m, dir, dtype, NULL);
}

molt_status molt_model_save_as(molt_ctx *ctx, const molt_model *m, const char *dir,
                               const char *dtype, const char *layout) {
    st_dtype     dt = ST_F32;
    bool         q8 = false;
    model_layout L;
    if (!layout_parse(layout, &L))
        return molt__err(ctx, MOLT_ERR_ARG, "layout \"%s\" (expected auto, hf, llamba, molt or "
                                            "mamba_ssm)", layout);
    if (dtype && !strcmp(dtype, "bf16"))
        dt = ST_BF16;
    else if (dtype && !strcmp(dtype, "f16"))
        dt = ST_F16;
    else if (dtype && !strcmp(dtype, "q8_0"))
        q8 = true;
    else if (dtype && strcmp(dtype, "f32") != 0)
        return molt__err(ctx, MOLT_ERR_ARG, "dtype \"%s\" (expected f32, bf16, f16 or q8_0)",
                         dtype);
    model_cfg *cfg = molt__malloc(sizeof *cfg); // (a shallow copy: owns nothing)
    if (!cfg)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory saving the model");
    molt_status st = layout_target_cfg(ctx, m, L, cfg);
    if (st == MOLT_OK)
        st = fio_mkdir_p(ctx, dir);
    if (st != MOLT_OK) {
        molt__free(cfg);
        return st;
    }
    char stage[4096], from[4096], to[4096];
    fio_join(stage, sizeof stage, dir, ".molt-save");
    drop_staging(stage); // what a save killed half-way left behind
    if (mkdir(stage, 0755) != 0) {
        molt__free(cfg);
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot create a staging directory: %s", stage,
                         strerror(errno));
    }
    const char *tok_names[3] = {NULL, NULL, NULL};
    st = write_model_files(ctx, m, cfg, stage, dt, q8, tok_names);
    molt__free(cfg);
    if (st != MOLT_OK) {
        drop_staging(stage);
        return st;
    }
    fio_join(to, sizeof to, dir, ST_INDEX_NAME);
    if (unlink(to) != 0 && errno != ENOENT) {
        st = molt__err(ctx, MOLT_ERR_IO, "%s: cannot remove the old index: %s", to,
                       strerror(errno));
        drop_staging(stage);
        return st;
    }
    const char *const order[] = {"model.safetensors", tok_names[0], tok_names[1], tok_names[2],
                                 "config.json"};
    for (int i = 0; i < 5; i++) {
        if (!order[i])
            continue;
        fio_join(from, sizeof from, stage, order[i]);
        fio_join(to, sizeof to, dir, order[i]);
        if (rename(from, to) != 0) {
            st = molt__err(ctx, MOLT_ERR_IO, "%s: cannot move the saved file in place: %s", to,
                           strerror(errno));
            drop_staging(stage);
            return st;
        }
    }
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            bool ours = false;
            for (int i = 0; i < 5; i++)
                ours = ours || (order[i] && !strcmp(e->d_name, order[i]));
            if (!ours && is_model_file(e->d_name)) {
                fio_join(to, sizeof to, dir, e->d_name);
                unlink(to);
            }
        }
        closedir(d);
    }
    fio_fsync_dir(dir);
    drop_staging(stage);
    return MOLT_OK;
}

molt_status molt_model_from_config(molt_ctx *ctx, const char *config_json,
                                   const molt_load_opts *opts, uint64_t seed, molt_model **out) {
    *out = NULL;
    char dir[4096];
    molt_model *m = NULL;
    molt_status st = alloc_from_config(ctx, config_json, &m);
    if (st != MOLT_OK)
        return st;
    model_init_random(m, seed);
    dirname_of(dir, sizeof dir, config_json);
    if ((st = load_tokenizer_near(ctx, m, dir, opts)) != MOLT_OK ||
        (st = model_place(ctx, m)) != MOLT_OK) {
        molt_model_free(m);
        return st;
    }
    *out = m;
    return MOLT_OK;
}
