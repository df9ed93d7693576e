/*
 * safetensors.c — see safetensors.h. Reading: map each file, parse its JSON
 * header with cJSON, validate every entry against the file size, copy names
 * into one string block per shard and free the JSON. Writing: the header is
 * printed by hand (exact integers, HF's compact layout) and padded with
 * spaces to an 8-byte boundary; data is streamed through fio_atomic.
 *
 * Reference: https://github.com/huggingface/safetensors (format, and the
 * validation its Rust reader does); PyTorch c10/util/BFloat16.h and Half.h
 * (round-to-nearest-even narrowing). Little-endian hosts only.
 */
#include "io/safetensors.h"

#include "io/fileio.h"
#include "io/json.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif
#endif

#define ST_MAX_HEADER (100u * 1000u * 1000u) // bytes of JSON header we accept

// ----------------------------------------------------------------------------
// dtypes

static const char *const DTYPE_NAME[ST_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                                       "I32", "I16", "I8",   "U8",  "BOOL"};
static const size_t DTYPE_SIZE[ST_DTYPE_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? DTYPE_NAME[t] : "?";
}
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? DTYPE_SIZE[t] : 0; }
bool   st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, DTYPE_NAME[i]) == 0) {
            *out = (st_dtype)i;
            return true;
        }
    return false;
}

// ----------------------------------------------------------------------------
// the open file

typedef struct st_meta {
    const char *key, *val; // into the shard's string block
} st_meta;

typedef struct st_shard {
    char    *path;    // name used in messages / st_shard_path
    void    *map;     // fio_map handle (NULL for st_parse_buffer)
    char    *strings; // tensor names and metadata strings
    st_meta *meta;
    int      n_meta;
} st_shard;

struct st_file {
    st_tensor  *t;      // [n] in shard order, header order within a shard
    int         n, cap;
    st_tensor **sorted; // [n] by name (st_find)
    st_shard   *shards; // [n_shards]
    int         n_shards;
};

void st_close(st_file *f) {
    if (!f)
        return;
    for (int i = 0; i < f->n_shards; i++) {
        st_shard *s = &f->shards[i];
        fio_unmap(s->map);
        molt__free(s->path);
        molt__free(s->strings);
        molt__free(s->meta);
    }
    molt__free(f->shards);
    molt__free(f->t);
    molt__free(f->sorted);
    molt__free(f);
}

int st_count(const st_file *f) { return f ? f->n : 0; }
const st_tensor *st_at(const st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}
const char *st_shard_path(const st_file *f, int shard) {
    return f && shard >= 0 && shard < f->n_shards ? f->shards[shard].path : NULL;
}

static int cmp_name_key(const void *key, const void *elem) {
    return strcmp(key, (*(st_tensor *const *)elem)->name);
}
const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !f->sorted || !name)
        return NULL;
    st_tensor *const *p = bsearch(name, f->sorted, (size_t)f->n, sizeof *f->sorted, cmp_name_key);
    return p ? *p : NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    if (!f || f->n_shards == 0 || !key)
        return NULL;
    const st_shard *s = &f->shards[0];
    for (int i = 0; i < s->n_meta; i++)
        if (strcmp(s->meta[i].key, key) == 0)
            return s->meta[i].val;
    return NULL;
}

// Adds an empty shard named path; returns its index or -1 (OOM).
static int add_shard(st_file *f, const char *path) {
    st_shard *ns = molt__realloc(f->shards, (size_t)(f->n_shards + 1) * sizeof *ns);
    if (!ns)
        return -1;
    f->shards = ns;
    st_shard *s = &ns[f->n_shards];
    memset(s, 0, sizeof *s);
    s->path = molt__strdup(path);
    if (!s->path)
        return -1;
    return f->n_shards++;
}

// ----------------------------------------------------------------------------
// header parsing

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

typedef struct span {
    uint64_t begin, end;
    int      idx;
} span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// Validates one tensor entry and fills t (name and data set by the caller).
static molt_status parse_entry(molt_ctx *ctx, const char *what, const cJSON *e, uint64_t data_len,
                               st_tensor *t, uint64_t *begin_out, uint64_t *end_out) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object",
                         what, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !off)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", what, name,
                         !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", what,
                         name);
    if (!st_dtype_parse(dt->valuestring, &t->dtype))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", what,
                         name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s': shape is not an array", what,
                         name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > ST_MAX_DIMS)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: tensor '%s': %d dims (at most %d)", what,
                         name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    size_t numel = 1;
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        int64_t v;
        if (!js_whole(x, 0, INT64_MAX, &v))
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "%s: tensor '%s': shape[%d] is not a non-negative integer", what,
                             name, d);
        t->shape[d] = v;
        if ((uint64_t)v > SIZE_MAX || !molt__mul_ok(numel, (size_t)v, &numel) ||
            numel > (size_t)INT64_MAX)
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s': element count overflows",
                             what, name);
    }
    t->numel = (int64_t)numel;
    if (!molt__mul_ok(numel, st_dtype_size(t->dtype), &t->nbytes))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s': byte size overflows", what,
                         name);
    int64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !js_whole(off->child, 0, INT64_MAX, &b) || !js_whole(off->child->next, 0, INT64_MAX, &en))
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets is not [begin, end] of non-negative "
                         "integers",
                         what, name);
    if (b > en || (uint64_t)en > data_len)
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu data bytes",
                         what, name, (long long)b, (long long)en, (unsigned long long)data_len);
    if ((uint64_t)(en - b) != (uint64_t)t->nbytes)
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: tensor '%s': %s with %lld elements needs %zu bytes, data_offsets "
                         "span %lld",
                         what, name, st_dtype_name(t->dtype), (long long)t->numel, t->nbytes,
                         (long long)(en - b));
    *begin_out = (uint64_t)b;
    *end_out = (uint64_t)en;
    return MOLT_OK;
}

// First pass over the header: checks __metadata__, counts tensors and the
// bytes of strings to copy.
static molt_status scan_header(molt_ctx *ctx, const char *what, const cJSON *root, int *n_tensors,
                               int *n_meta, size_t *str_bytes) {
    *n_tensors = *n_meta = 0;
    *str_bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") != 0) {
            (*n_tensors)++;
            *str_bytes += strlen(e->string) + 1;
            continue;
        }
        if (!cJSON_IsObject(e))
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: __metadata__ is not a JSON object", what);
        for (const cJSON *m = e->child; m; m = m->next) {
            if (!cJSON_IsString(m) || !m->valuestring)
                return molt__err(ctx, MOLT_ERR_FORMAT,
                                 "%s: __metadata__ value of '%s' is not a string", what,
                                 m->string);
            (*n_meta)++;
            *str_bytes += strlen(m->string) + strlen(m->valuestring) + 2;
        }
    }
    return MOLT_OK;
}

static char *put_str(char **cur, const char *s) {
    char *r = *cur;
    size_t n = strlen(s) + 1;
    memcpy(r, s, n);
    *cur += n;
    return r;
}

// Parses the bytes of one file into shard si of f (appending its tensors).
static molt_status parse_shard(molt_ctx *ctx, st_file *f, int si, const uint8_t *buf, size_t len) {
    const char *what = f->shards[si].path;
    if (len < 8)
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: file is %zu bytes, shorter than the 8-byte header length", what,
                         len);
    uint64_t hl = le64(buf);
    if (hl > len - 8 || hl > ST_MAX_HEADER)
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: header length %llu is absurd (file has %zu bytes after it, limit "
                         "%u)",
                         what, (unsigned long long)hl, len - 8, ST_MAX_HEADER);
    cJSON *root;
    molt_status s = js_parse_status(ctx, what, (const char *)buf + 8, (size_t)hl, &root);
    if (s != MOLT_OK)
        return s;
    span *spans = NULL;
    if (!cJSON_IsObject(root)) {
        s = molt__err(ctx, MOLT_ERR_FORMAT, "%s: header is not a JSON object", what);
        goto done;
    }
    int nt, nm;
    size_t sb;
    if ((s = scan_header(ctx, what, root, &nt, &nm, &sb)) != MOLT_OK)
        goto done;
    st_shard *sh = &f->shards[si];
    if (f->n > INT32_MAX - nt) {
        s = molt__err(ctx, MOLT_ERR_FORMAT, "%s: too many tensors", what);
        goto done;
    }
    if (f->n + nt > f->cap) {
        st_tensor *nt_arr = molt__realloc(f->t, (size_t)(f->n + nt) * sizeof *nt_arr);
        if (!nt_arr)
            goto oom;
        f->t = nt_arr;
        f->cap = f->n + nt;
    }
    sh->strings = molt__malloc(sb);
    sh->meta = molt__calloc((size_t)(nm ? nm : 1), sizeof *sh->meta);
    spans = molt__malloc((size_t)(nt ? nt : 1) * sizeof *spans);
    if (!sh->strings || !sh->meta || !spans)
        goto oom;

    const uint8_t *data = buf + 8 + hl;
    uint64_t data_len = len - 8 - hl;
    char *cur = sh->strings;
    int k = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            for (const cJSON *m = e->child; m; m = m->next) {
                sh->meta[sh->n_meta].key = put_str(&cur, m->string);
                sh->meta[sh->n_meta].val = put_str(&cur, m->valuestring);
                sh->n_meta++;
            }
            continue;
        }
        st_tensor *t = &f->t[f->n];
        memset(t, 0, sizeof *t);
        if ((s = parse_entry(ctx, what, e, data_len, t, &spans[k].begin, &spans[k].end)) != MOLT_OK)
            goto done;
        t->name = put_str(&cur, e->string);
        t->data = data + spans[k].begin;
        t->shard = si;
        spans[k].idx = f->n;
        k++;
        f->n++;
    }
    // No two tensors may share a byte (empty tensors own no bytes).
    qsort(spans, (size_t)k, sizeof *spans, cmp_span);
    uint64_t max_end = 0;
    int owner = -1;
    for (int i = 0; i < k; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (owner >= 0 && spans[i].begin < max_end) {
            s = molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the file",
                          what, f->t[owner].name, f->t[spans[i].idx].name);
            goto done;
        }
        max_end = spans[i].end;
        owner = spans[i].idx;
    }
    s = MOLT_OK;
    goto done;
oom:
    s = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory reading the header", what);
done:
    molt__free(spans);
    cJSON_Delete(root);
    return s;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(st_tensor *const *)a)->name, (*(st_tensor *const *)b)->name);
}

// Builds the by-name index and refuses duplicate names.
static molt_status finalize(molt_ctx *ctx, st_file *f) {
    f->sorted = molt__malloc((size_t)(f->n ? f->n : 1) * sizeof *f->sorted);
    if (!f->sorted)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", f->shards[0].path);
    for (int i = 0; i < f->n; i++)
        f->sorted[i] = &f->t[i];
    qsort(f->sorted, (size_t)f->n, sizeof *f->sorted, cmp_tensor_name);
    for (int i = 1; i < f->n; i++) {
        const st_tensor *a = f->sorted[i - 1], *b = f->sorted[i];
        if (strcmp(a->name, b->name) == 0)
            return molt__err(ctx, MOLT_ERR_FORMAT, "tensor '%s' appears twice: in %s and in %s",
                             a->name, f->shards[a->shard].path, f->shards[b->shard].path);
    }
    return MOLT_OK;
}

static st_file *new_file(void) { return molt__calloc(1, sizeof(st_file)); }

molt_status st_parse_buffer(molt_ctx *ctx, const char *what, const uint8_t *buf, size_t len,
                            st_file **out) {
    *out = NULL;
    js_init_hooks();
    st_file *f = new_file();
    if (!f || add_shard(f, what ? what : "<buffer>") < 0) {
        st_close(f);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", what ? what : "<buffer>");
    }
    molt_status s = parse_shard(ctx, f, 0, buf, len);
    if (s == MOLT_OK)
        s = finalize(ctx, f);
    if (s != MOLT_OK) {
        st_close(f);
        return s;
    }
    *out = f;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// opening files

// Maps path and parses it as a new shard of f.
static molt_status open_shard(molt_ctx *ctx, st_file *f, const char *path) {
    int si = add_shard(f, path);
    if (si < 0)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
    const uint8_t *data;
    size_t len;
    molt_status s = fio_map(ctx, path, &data, &len, &f->shards[si].map);
    if (s != MOLT_OK)
        return s;
    return parse_shard(ctx, f, si, data, len);
}

static char *join_alloc(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = molt__malloc(n);
    if (p)
        fio_join(p, n, dir, name);
    return p;
}

// Shard names are plain relative paths next to the index.
static bool safe_shard_name(const char *s) {
    if (!*s || *s == '/')
        return false;
    for (const char *c = s; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return false;
        c += n + (slash ? 1 : 0);
    }
    return true;
}

typedef struct index_state {
    char        *text;
    cJSON       *root;
    char        *dir;
    const char **shard_names; // distinct, in order of first use
    int         *entry_shard; // weight_map entry -> shard index
} index_state;

static molt_status open_index(molt_ctx *ctx, const char *path, st_file *f) {
    index_state st = {0};
    size_t len;
    molt_status s = fio_read_all(ctx, path, ST_MAX_HEADER, &st.text, &len);
    if (s != MOLT_OK)
        return s;
    const cJSON *wm = NULL;
    if ((s = js_parse_status(ctx, path, st.text, len, &st.root)) != MOLT_OK)
        goto done;
    if (!cJSON_IsObject(st.root)) {
        s = molt__err(ctx, MOLT_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    if ((s = js_get_obj(ctx, path, st.root, "weight_map", 1, &wm)) != MOLT_OK)
        goto done;
    int n_entries = cJSON_GetArraySize(wm), n_shards = 0;
    const char *slash = strrchr(path, '/');
    st.dir = slash ? molt__malloc((size_t)(slash - path) + 2) : molt__strdup(".");
    st.shard_names = molt__calloc((size_t)(n_entries ? n_entries : 1), sizeof *st.shard_names);
    st.entry_shard = molt__calloc((size_t)(n_entries ? n_entries : 1), sizeof *st.entry_shard);
    if (!st.dir || !st.shard_names || !st.entry_shard) {
        s = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
        goto done;
    }
    if (slash) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        memcpy(st.dir, path, dl);
        st.dir[dl] = '\0';
    }
    // Distinct shard names; each must exist before we look further.
    int ei = 0;
    for (const cJSON *e = wm->child; e; e = e->next, ei++) {
        if (!cJSON_IsString(e) || !e->valuestring || !safe_shard_name(e->valuestring)) {
            s = molt__err(ctx, MOLT_ERR_FORMAT,
                          "%s: weight_map entry of '%s' is not a shard file name next to the "
                          "index",
                          path, e->string);
            goto done;
        }
        int j = 0;
        while (j < n_shards && strcmp(st.shard_names[j], e->valuestring) != 0)
            j++;
        if (j == n_shards) {
            char *sp = join_alloc(st.dir, e->valuestring);
            if (!sp) {
                s = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
                goto done;
            }
            bool ok = fio_exists(sp);
            molt__free(sp);
            if (!ok) {
                s = molt__err(ctx, MOLT_ERR_MISSING,
                              "%s: shard '%s' (holding tensor '%s') does not exist", path,
                              e->valuestring, e->string);
                goto done;
            }
            st.shard_names[n_shards++] = e->valuestring;
        }
        st.entry_shard[ei] = j;
    }
    for (int j = 0; j < n_shards; j++) {
        char *sp = join_alloc(st.dir, st.shard_names[j]);
        if (!sp) {
            s = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
        s = open_shard(ctx, f, sp);
        molt__free(sp);
        if (s != MOLT_OK)
            goto done;
    }
    if (f->n_shards == 0) {
        s = molt__err(ctx, MOLT_ERR_FORMAT, "%s: weight_map is empty", path);
        goto done;
    }
    if ((s = finalize(ctx, f)) != MOLT_OK)
        goto done;
    ei = 0;
    for (const cJSON *e = wm->child; e; e = e->next, ei++) {
        const st_tensor *t = st_find(f, e->string);
        if (!t || t->shard != st.entry_shard[ei]) {
            s = molt__err(ctx, MOLT_ERR_MISSING, "%s: tensor '%s' is mapped to %s but is not in it",
                          path, e->string, e->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(st.root);
    molt__free(st.text);
    molt__free(st.dir);
    molt__free(st.shard_names);
    molt__free(st.entry_shard);
    return s;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

molt_status st_open(molt_ctx *ctx, const char *path, st_file **out) {
    *out = NULL;
    js_init_hooks();
    char *own = NULL; // path chosen inside a directory
    if (fio_is_dir(path)) {
        own = join_alloc(path, ST_INDEX_NAME);
        if (own && !fio_exists(own)) {
            molt__free(own);
            own = join_alloc(path, ST_SINGLE_NAME);
            if (own && !fio_exists(own)) {
                molt__free(own);
                return molt__err(ctx, MOLT_ERR_MISSING, "%s: holds neither %s nor %s", path,
                                 ST_INDEX_NAME, ST_SINGLE_NAME);
            }
        }
        if (!own)
            return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
        path = own;
    }
    st_file *f = new_file();
    molt_status s;
    if (!f)
        s = molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
    else if (ends_with(path, ".json"))
        s = open_index(ctx, path, f);
    else if ((s = open_shard(ctx, f, path)) == MOLT_OK)
        s = finalize(ctx, f);
    molt__free(own);
    if (s != MOLT_OK) {
        st_close(f);
        return s;
    }
    *out = f;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// reading tensors

molt_status st_read_f32(molt_ctx *ctx, const st_tensor *t, float *dst) {
    const uint8_t *p = t->data;
    size_t n = (size_t)t->numel;
    if (n == 0)
        return MOLT_OK;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, p, n * 4);
        return MOLT_OK;
    case ST_F16:
    case ST_BF16: {
        bool bf = t->dtype == ST_BF16;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf ? molt_bf16_to_f32(h) : molt_f16_to_f32(h);
        }
        return MOLT_OK;
    }
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return MOLT_OK;
    default:
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "tensor '%s': dtype %s cannot be read as f32 (F32/F16/BF16/F64 only)",
                         t->name, st_dtype_name(t->dtype));
    }
}

molt_status st_read_i32(molt_ctx *ctx, const st_tensor *t, int32_t *dst) {
    const uint8_t *p = t->data;
    size_t n = (size_t)t->numel;
    if (n == 0)
        return MOLT_OK;
    if (t->dtype == ST_I32) {
        memcpy(dst, p, n * 4);
        return MOLT_OK;
    }
    if (t->dtype != ST_I64)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "tensor '%s': dtype %s cannot be read as int32 (I32/I64 only)", t->name,
                         st_dtype_name(t->dtype));
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX)
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "tensor '%s': element %zu = %lld does not fit in int32", t->name, i,
                             (long long)v);
        dst[i] = (int32_t)v;
    }
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// writing

typedef struct sbuf {
    char  *p;
    size_t n, cap;
    bool   oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *np = molt__realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void sb_cstr(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_int(sbuf *b, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    sb_put(b, tmp, (size_t)n);
}
// A JSON string literal (UTF-8 passes through; quotes, backslashes and control
// characters are escaped).
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            sb_put(b, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

// Checks the caller's tensors; sets nbytes[i] (bytes in the file).
static molt_status check_wtensors(molt_ctx *ctx, const char *path, const st_wtensor *ts, int n,
                                  size_t *nbytes) {
    for (int i = 0; i < n; i++) {
        const st_wtensor *w = &ts[i];
        if (!w->name || !*w->name || strcmp(w->name, "__metadata__") == 0)
            return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor %d has an empty or reserved name",
                             path, i);
        if (w->raw ? (unsigned)w->dtype >= ST_BOOL
                   : w->dtype != ST_F32 && w->dtype != ST_BF16 && w->dtype != ST_F16)
            return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor '%s': cannot write dtype %s", path,
                             w->name, st_dtype_name(w->dtype));
        if (w->ndim < 0 || w->ndim > ST_MAX_DIMS)
            return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor '%s': ndim %d", path, w->name,
                             w->ndim);
        size_t numel = 1;
        for (int d = 0; d < w->ndim; d++)
            if (w->shape[d] < 0 || (uint64_t)w->shape[d] > SIZE_MAX ||
                !molt__mul_ok(numel, (size_t)w->shape[d], &numel))
                return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor '%s': bad shape", path, w->name);
        // data_offsets must stay exact in every JSON reader (doubles: 2^53)
        if (!molt__mul_ok(numel, st_dtype_size(w->dtype), &nbytes[i]) ||
            (uint64_t)nbytes[i] > (1ull << 53))
            return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor '%s': too large", path, w->name);
        if (numel && !w->data && !w->raw)
            return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor '%s': no data", path, w->name);
        for (int j = 0; j < i; j++)
            if (strcmp(ts[j].name, w->name) == 0)
                return molt__err(ctx, MOLT_ERR_ARG, "%s: tensor '%s' given twice", path,
                                 w->name);
    }
    return MOLT_OK;
}

static molt_status build_header(molt_ctx *ctx, const char *path, const st_wtensor *ts, int n,
                                const size_t *nbytes, const char *const *metadata, sbuf *b) {
    sb_put(b, "{", 1);
    bool first = true;
    if (metadata && metadata[0]) {
        sb_cstr(b, "\"__metadata__\":{");
        for (int i = 0; metadata[i]; i += 2) {
            if (!metadata[i + 1])
                return molt__err(ctx, MOLT_ERR_ARG, "%s: metadata key '%s' has no value", path,
                                 metadata[i]);
            if (i)
                sb_put(b, ",", 1);
            sb_json_str(b, metadata[i]);
            sb_put(b, ":", 1);
            sb_json_str(b, metadata[i + 1]);
        }
        sb_put(b, "}", 1);
        first = false;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (off + nbytes[i] > (1ull << 53))
            return molt__err(ctx, MOLT_ERR_ARG, "%s: tensors too large in total", path);
        if (!first)
            sb_put(b, ",", 1);
        first = false;
        sb_json_str(b, ts[i].name);
        sb_cstr(b, ":{\"dtype\":\"");
        sb_cstr(b, st_dtype_name(ts[i].dtype));
        sb_cstr(b, "\",\"shape\":[");
        for (int d = 0; d < ts[i].ndim; d++) {
            if (d)
                sb_put(b, ",", 1);
            sb_int(b, ts[i].shape[d]);
        }
        sb_cstr(b, "],\"data_offsets\":[");
        sb_int(b, (int64_t)off);
        sb_put(b, ",", 1);
        off += nbytes[i];
        sb_int(b, (int64_t)off);
        sb_cstr(b, "]}");
    }
    sb_put(b, "}", 1);
    // HF pads with spaces so that the data starts 8-byte aligned.
    while (!b->oom && b->n % 8 != 0)
        sb_put(b, " ", 1);
    if (b->oom)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory building the header", path);
    return MOLT_OK;
}

static molt_status write_tensor(molt_ctx *ctx, fio_atomic *w, const st_wtensor *t, size_t nbytes) {
    if (t->raw)
        return fio_atomic_write(ctx, w, t->raw, nbytes);
    if (t->dtype == ST_F32)
        return fio_atomic_write(ctx, w, t->data, nbytes);
    uint16_t chunk[4096];
    size_t n = nbytes / 2;
    for (size_t i = 0; i < n; i += 4096) {
        size_t m = MOLT_MIN(n - i, (size_t)4096);
        for (size_t j = 0; j < m; j++)
            chunk[j] = t->dtype == ST_BF16 ? molt_f32_to_bf16(t->data[i + j])
                                           : molt_f32_to_f16(t->data[i + j]);
        molt_status s = fio_atomic_write(ctx, w, chunk, m * 2);
        if (s != MOLT_OK)
            return s;
    }
    return MOLT_OK;
}

molt_status st_write(molt_ctx *ctx, const char *path, const st_wtensor *ts, int n,
                     const char *const *metadata) {
    if (!path || n < 0 || (n > 0 && !ts))
        return molt__err(ctx, MOLT_ERR_ARG, "st_write: bad arguments (path %s, %d tensors)",
                         path ? path : "NULL", n);
    size_t *nbytes = molt__calloc((size_t)(n ? n : 1), sizeof *nbytes);
    if (!nbytes)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
    sbuf hdr = {0};
    molt_status s = check_wtensors(ctx, path, ts, n, nbytes);
    if (s == MOLT_OK)
        s = build_header(ctx, path, ts, n, nbytes, metadata, &hdr);
    fio_atomic w = {0};
    if (s == MOLT_OK)
        s = fio_atomic_open(ctx, path, &w);
    if (s == MOLT_OK) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (uint8_t)((uint64_t)hdr.n >> (8 * i));
        s = fio_atomic_write(ctx, &w, len8, 8);
        if (s == MOLT_OK)
            s = fio_atomic_write(ctx, &w, hdr.p, hdr.n);
        for (int i = 0; i < n && s == MOLT_OK; i++)
            s = write_tensor(ctx, &w, &ts[i], nbytes[i]);
        if (s == MOLT_OK)
            s = fio_atomic_commit(ctx, &w);
        else
            fio_atomic_abort(&w);
    }
    molt__free(hdr.p);
    molt__free(nbytes);
    return s;
}
