/*
 * checkpoint.c — writing, verifying and restoring checkpoints (checkpoint.h).
 */
#include "train/checkpoint.h"

#include "kernels/kernels.h"
#include "kernels/mem.h"

#include "io/checksum.h"
#include "io/fileio.h"
#include "io/safetensors.h"
#include "train/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ckpt_setting(cJSON *o, const char *key, const char *fmt, ...) {
    char    buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(o, key, buf);
}

// ----------------------------------------------------------------------------
// state.json

static bool plain_name(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 64 && s[0] != '.' && !strchr(s, '/');
}

static bool parse_hex16(const char *s, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int  d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    if (s[16])
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (!*s || strlen(s) > 20)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

void ckpt_state_free(ckpt_state *s) {
    if (s->tree)
        cJSON_Delete(s->tree);
    memset(s, 0, sizeof *s);
}

molt_status ckpt_state_parse(molt_ctx *ctx, const char *what, const char *text, size_t len,
                             ckpt_state *out) {
    memset(out, 0, sizeof *out);
    cJSON *o = js_parse(ctx, what, text, len);
    if (!o)
        return molt_last_status(ctx);
    out->tree = o;
    const char  *r = NULL;
    const cJSON *files = NULL;
    molt_status  st;
    if (!cJSON_IsObject(o))
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: not a JSON object", what);
    else if ((st = js_get_int(ctx, what, o, "step", 1, 0, INT64_MAX, 0, &out->step)) != MOLT_OK ||
             (st = js_get_int(ctx, what, o, "tokens", 1, 0, INT64_MAX, 0, &out->tokens)) !=
                 MOLT_OK ||
             (st = js_get_int(ctx, what, o, "adam_step", 1, 0, INT64_MAX, 0, &out->adam_step)) !=
                 MOLT_OK ||
             (st = js_get_str(ctx, what, o, "rng", 1, NULL, &r)) != MOLT_OK ||
             (st = js_get_obj(ctx, what, o, "settings", 1, &out->settings)) != MOLT_OK ||
             (st = js_get_obj(ctx, what, o, "files", 1, &files)) != MOLT_OK)
        ;
    else if (!parse_u64(r, &out->rng))
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: rng \"%.40s\" is not a decimal 64-bit number",
                       what, r);
    if (st == MOLT_OK) {
        const cJSON *it;
        cJSON_ArrayForEach(it, out->settings) if (!cJSON_IsString(it) || !it->string) {
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: setting \"%.60s\" is not a string", what,
                           it->string ? it->string : "");
            break;
        }
    }
    if (st == MOLT_OK) {
        const cJSON *it;
        cJSON_ArrayForEach(it, files) {
            uint64_t h = 0;
            if (!it->string || !plain_name(it->string) || !cJSON_IsString(it) ||
                !parse_hex16(it->valuestring, &h)) {
                st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: files: bad entry \"%.60s\"", what,
                               it->string ? it->string : "");
                break;
            }
            if (out->n_files == CKPT_MAX_FILES) {
                st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: more than %d files", what,
                               CKPT_MAX_FILES);
                break;
            }
            snprintf(out->file[out->n_files], sizeof out->file[0], "%s", it->string);
            out->sum[out->n_files++] = h;
        }
    }
    static const char *const need[] = {"model.safetensors", "optim.safetensors", "config.json"};
    for (int k = 0; k < 3 && st == MOLT_OK; k++) {
        bool have = false;
        for (int i = 0; i < out->n_files; i++)
            have |= !strcmp(out->file[i], need[k]);
        if (!have)
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: no checksum recorded for %s", what,
                           need[k]);
    }
    if (st != MOLT_OK)
        ckpt_state_free(out);
    return st;
}

// ----------------------------------------------------------------------------
// writing

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

// the checkpoint's files (every plain file but state.json and temporaries), sorted
static molt_status list_files(molt_ctx *ctx, const char *dir, char (*name)[64], int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    molt_status    st = MOLT_OK;
    while ((e = readdir(d)) && st == MOLT_OK) {
        char        p[4200];
        struct stat sb;
        fio_join(p, sizeof p, dir, e->d_name);
        if (!plain_name(e->d_name) || !strcmp(e->d_name, "state.json") ||
            strstr(e->d_name, ".tmp.") || lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (*n == CKPT_MAX_FILES)
            st = molt__err(ctx, MOLT_ERR_INTERNAL, "%s: more than %d files", dir, CKPT_MAX_FILES);
        else
            snprintf(name[(*n)++], 64, "%s", e->d_name);
    }
    closedir(d);
    qsort(name, (size_t)*n, 64, cmp_name);
    return st;
}

static molt_status write_state(molt_ctx *ctx, const train_loop *tl, const char *dir) {
    char        names[CKPT_MAX_FILES][64], path[4200];
    int         n = 0;
    molt_status st = list_files(ctx, dir, names, &n);
    if (st != MOLT_OK)
        return st;
    size_t cap = 512 + (size_t)n * 100 + (tl->settings ? strlen(tl->settings) : 2);
    char  *buf = molt__malloc(cap);
    if (!buf)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    size_t len = (size_t)snprintf(buf, cap,
                                  "{\"step\": %lld, \"rng\": \"%llu\", \"tokens\": %lld, "
                                  "\"adam_step\": %lld,\n \"settings\": %s,\n \"files\": {",
                                  (long long)tl->step, (unsigned long long)tl->rng,
                                  (long long)tl->tokens, (long long)tl->opt.step,
                                  tl->settings ? tl->settings : "{}");
    for (int i = 0; i < n && st == MOLT_OK; i++) {
        uint64_t h = 0;
        fio_join(path, sizeof path, dir, names[i]);
        st = fio_checksum_file(ctx, path, &h);
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\": \"%016llx\"", i ? ", " : "",
                                names[i], (unsigned long long)h);
    }
    len += (size_t)snprintf(buf + len, cap - len, "}}\n");
    fio_join(path, sizeof path, dir, "state.json");
    if (st == MOLT_OK)
        st = fio_write_atomic(ctx, path, buf, len);
    molt__free(buf);
    return st;
}

// a tensor of f into dst, a buffer of m's backend (through the host on a device)
static molt_status read_param_f32(molt_ctx *ctx, const st_tensor *t, const molt_model *m,
                                  float *dst) {
    if (m->be->mem.host_visible)
        return st_read_f32(ctx, t, dst);
    float *h = molt__malloc(sizeof(float) * ((size_t)t->numel ? (size_t)t->numel : 1));
    if (!h)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory reading '%s'", t->name);
    molt_status st = st_read_f32(ctx, t, h);
    if (st == MOLT_OK) {
        molt_exec ex = be_exec1(m->be);
        be_upload(&ex, dst, h, sizeof(float) * (size_t)t->numel);
    }
    molt__free(h);
    return st;
}

molt_status save_checkpoint(molt_ctx *ctx, const train_loop *tl) {
    const molt_model *m = tl->m;
    const adamw      *opt = &tl->opt;
    const char       *out_dir = tl->dir;
    char              name[64], dir[4096], path[4200];
    snprintf(name, sizeof name, "ckpt-%08lld", (long long)tl->step);
    fio_join(dir, sizeof dir, out_dir, name);
    // listed before it exists: a crash leaves nothing molt would not remove
    molt_status st = manifest_add(ctx, out_dir, "checkpoints", name);
    if (st != MOLT_OK || (st = molt_model_save(ctx, m, dir, "f32")) != MOLT_OK)
        return st;
    // optimizer moments under the parameter names (a device run's, downloaded)
    float *hm = NULL, *hv = NULL;
    const float *mom[2] = {model_host_floats(ctx, m->be, opt->m, m->n_floats, &hm),
                           model_host_floats(ctx, m->be, opt->v, m->n_floats, &hv)};
    st_wtensor *ts = molt__calloc(2 * (size_t)m->n_params, sizeof *ts);
    char *names = molt__malloc(2 * (size_t)m->n_params * (MODEL_NAME_MAX + 2));
    if (!ts || !names || !mom[0] || !mom[1]) {
        molt__free(ts);
        molt__free(names);
        molt__free(hm);
        molt__free(hv);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory saving a checkpoint");
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < m->n_params; i++) {
            const param_info *p = &m->params[i];
            st_wtensor *t = &ts[(size_t)k * m->n_params + i];
            char *nm = names + ((size_t)k * m->n_params + i) * (MODEL_NAME_MAX + 2);
            snprintf(nm, MODEL_NAME_MAX + 2, "%c.%s", k ? 'v' : 'm', p->name);
            t->name = nm;
            t->dtype = ST_F32;
            t->ndim = p->ndim;
            memcpy(t->shape, p->shape, sizeof p->shape);
            t->data = mom[k] + p->offset;
        }
    fio_join(path, sizeof path, dir, "optim.safetensors");
    st = st_write(ctx, path, ts, 2 * m->n_params, NULL);
    molt__free(ts);
    molt__free(names);
    molt__free(hm);
    molt__free(hv);
    if (st != MOLT_OK || (st = write_state(ctx, tl, dir)) != MOLT_OK)
        return st;
    // publish: `latest` names the complete checkpoint
    fio_join(path, sizeof path, out_dir, "latest");
    if ((st = manifest_add(ctx, out_dir, "checkpoints", "latest")) != MOLT_OK ||
        (st = fio_write_atomic(ctx, path, name, strlen(name))) != MOLT_OK)
        return st;
    // only then: the listed checkpoints beyond the newest keep_last
    return manifest_prune_ckpts(ctx, out_dir, tl->keep_last);
}

// ----------------------------------------------------------------------------
// reading

molt_status checkpoint_latest(molt_ctx *ctx, const char *out_dir, char *dir, size_t n) {
    char path[4200], *name = NULL;
    size_t len = 0;
    fio_join(path, sizeof path, out_dir, "latest");
    molt_status st = fio_read_all(ctx, path, 256, &name, &len);
    if (st != MOLT_OK)
        return st;
    while (len && (name[len - 1] == '\n' || name[len - 1] == ' '))
        name[--len] = 0;
    if (strncmp(name, "ckpt-", 5) || strchr(name, '/')) {
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: \"%.40s\" does not name a checkpoint", path,
                       name);
        molt__free(name);
        return st;
    }
    fio_join(dir, n, out_dir, name);
    molt__free(name);
    return MOLT_OK;
}

// the first setting that differs between the checkpoint's (was) and this run's (now)
static molt_status compare_settings(molt_ctx *ctx, const char *ckdir, const cJSON *was,
                                    const char *settings) {
    cJSON *now = js_parse(ctx, "settings", settings, strlen(settings));
    if (!now)
        return molt_last_status(ctx);
    molt_status  st = MOLT_OK;
    const cJSON *it;
    cJSON_ArrayForEach(it, now) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(was, it->string);
        const char  *ws = cJSON_IsString(w) ? w->valuestring : NULL;
        if (!ws || strcmp(ws, it->valuestring)) {
            st = molt__err(ctx, MOLT_ERR_ARG,
                           "cannot resume from %s: its run had %s = %s, this one has %s (HINT: "
                           "resume with the same settings, or start a new run in another "
                           "directory)",
                           ckdir, it->string, ws ? ws : "(not recorded)", it->valuestring);
            break;
        }
    }
    if (st == MOLT_OK)
        cJSON_ArrayForEach(it, was) if (!cJSON_GetObjectItemCaseSensitive(now, it->string)) {
            st = molt__err(ctx, MOLT_ERR_ARG, "cannot resume from %s: its run had %s = %s, "
                                              "which this run does not set",
                           ckdir, it->string, it->valuestring);
            break;
        }
    cJSON_Delete(now);
    return st;
}

molt_status checkpoint_verify(molt_ctx *ctx, const char *ckdir, const char *settings,
                              int64_t total_steps, ckpt_state *s) {
    char   path[4200], *js = NULL;
    size_t len = 0;
    fio_join(path, sizeof path, ckdir, "state.json");
    molt_status st = fio_read_all(ctx, path, 1 << 20, &js, &len);
    if (st != MOLT_OK)
        return st;
    st = ckpt_state_parse(ctx, path, js, len, s);
    molt__free(js);
    if (st != MOLT_OK)
        return st;
    for (int i = 0; i < s->n_files && st == MOLT_OK; i++) {
        uint64_t h = 0;
        fio_join(path, sizeof path, ckdir, s->file[i]);
        if ((st = fio_checksum_file(ctx, path, &h)) == MOLT_OK && h != s->sum[i])
            st = molt__err(ctx, MOLT_ERR_FORMAT,
                           "%s: checksum %016llx, but the checkpoint recorded %016llx: the file "
                           "is corrupt (HINT: restore it, or resume from an older checkpoint by "
                           "writing its name into latest)",
                           path, (unsigned long long)h, (unsigned long long)s->sum[i]);
    }
    if (st == MOLT_OK && total_steps >= 0 && s->step > total_steps)
        st = molt__err(ctx, MOLT_ERR_ARG,
                       "cannot resume from %s: it is at step %lld, past this run's %lld steps",
                       ckdir, (long long)s->step, (long long)total_steps);
    if (st == MOLT_OK && settings)
        st = compare_settings(ctx, ckdir, s->settings, settings);
    if (st != MOLT_OK)
        ckpt_state_free(s);
    return st;
}

molt_status load_checkpoint(molt_ctx *ctx, train_loop *tl) {
    molt_model *m = tl->m;
    adamw      *opt = &tl->opt;
    char        path[4200], dir[4200];
    molt_status st = checkpoint_latest(ctx, tl->dir, dir, sizeof dir);
    if (st != MOLT_OK) {
        molt__err_prefix(ctx, "cannot resume (no complete checkpoint in %s)", tl->dir);
        return st;
    }
    ckpt_state s;
    if ((st = checkpoint_verify(ctx, dir, tl->settings, tl->sc.total_steps, &s)) != MOLT_OK)
        return st;
    molt_load_opts lo = {NULL, 1};
    molt_model *c = NULL;
    if ((st = molt_model_load(ctx, dir, &lo, &c)) != MOLT_OK)
        goto done;
    if (c->n_floats != m->n_floats || c->n_params != m->n_params) {
        molt_model_free(c);
        st = molt__err(ctx, MOLT_ERR_SHAPE, "%s: checkpoint does not match the model", dir);
        goto done;
    }
    st = model_copy_params(ctx, m, c);
    molt_model_free(c);
    if (st != MOLT_OK)
        goto done;
    st_file *f = NULL;
    fio_join(path, sizeof path, dir, "optim.safetensors");
    if ((st = st_open(ctx, path, &f)) != MOLT_OK)
        goto done;
    for (int k = 0; k < 2 && st == MOLT_OK; k++)
        for (int i = 0; i < m->n_params && st == MOLT_OK; i++) {
            char nm[MODEL_NAME_MAX + 2];
            snprintf(nm, sizeof nm, "%c.%s", k ? 'v' : 'm', m->params[i].name);
            const st_tensor *t = st_find(f, nm);
            if (!t || (size_t)t->numel != m->params[i].numel)
                st = molt__err(ctx, MOLT_ERR_MISSING, "%s: optimizer state '%s' missing", path,
                               nm);
            else
                st = read_param_f32(ctx, t, m, (k ? opt->v : opt->m) + m->params[i].offset);
        }
    st_close(f);
    if (st == MOLT_OK) {
        tl->step = s.step;
        tl->tokens = s.tokens;
        tl->rng = s.rng;
        opt->step = s.adam_step;
    }
done:
    ckpt_state_free(&s);
    return st;
}
