/*
 * test_safetensors.c — safetensors reader/writer, fp16/bf16 conversions,
 * json.c getters and fileio helpers.
 *
 * Everything is written into a fresh mkdtemp directory under /tmp, removed at
 * the end. Each open/close and each refused file must leave
 * molt__alloc_live() where it was; an allocation-failure loop walks every
 * allocation of a sharded open (and of st_write / js_parse) expecting
 * MOLT_ERR_OOM and no leak. The real checkpoints of ../shared/models are
 * opened and checked against their index and config.json.
 */
#include "io/fileio.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static molt_ctx *ctx;

// ----------------------------------------------------------------------------
// helpers

// Path under the temp dir (4 rotating static buffers).
static const char *tp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    fio_join(buf[k], sizeof buf[k], g_dir, name);
    return buf[k];
}

static void put_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f)
        return;
    CHECK(fwrite(data, 1, len, f) == len, "short write %s", path);
    fclose(f);
}

// A raw safetensors file: u64 header length, header text, data bytes.
static void put_st(const char *path, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    uint8_t *b = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (data_len)
        memcpy(b + 8 + hl, data, data_len);
    put_file(path, b, 8 + hl + data_len);
    free(b);
}

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            fio_join(sub, sizeof sub, path, e->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

// Counts directory entries whose name contains ".tmp.".
static int count_tmp(const char *dir) {
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

// Opening path must fail with want, name `names` in the message (and `also`
// when given) and leak nothing.
static void expect_open_fail(const char *path, molt_status want, const char *names,
                             const char *also) {
    int64_t live = molt__alloc_live();
    st_file *f = (st_file *)&f; // poison: must be set to NULL
    molt_status s = st_open(ctx, path, &f);
    const char *msg = molt_last_error(ctx);
    CHECK(s == want, "%s: got %s (%d), want %s: %s", path, molt_status_str(s), s,
          molt_status_str(want), msg);
    CHECK(f == NULL, "%s: *out not NULL on failure", path);
    CHECK(strstr(msg, names) != NULL, "%s: message does not name '%s': %s", path, names, msg);
    if (also)
        CHECK(strstr(msg, also) != NULL, "%s: message lacks '%s': %s", path, also, msg);
    CHECK(molt__alloc_live() == live, "%s: leaked %lld blocks", path,
          (long long)(molt__alloc_live() - live));
    if (s == MOLT_OK)
        st_close(f);
}

// A raw single-tensor header check: hostile header text with `data_len` zero bytes.
static void hostile(const char *name, const char *header, size_t data_len, molt_status want,
                    const char *also) {
    uint8_t *zeros = calloc(1, data_len + 1);
    const char *p = tp(name);
    put_st(p, header, zeros, data_len);
    free(zeros);
    expect_open_fail(p, want, name, also);
}

static bool same_bits_or_nan(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0;
}

// ----------------------------------------------------------------------------
// fp16 / bf16

static float fb(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// h is the right rounding of x: no neighbour is closer, ties go to even.
static bool is_rne(float x, uint16_t h, float (*to32)(uint16_t)) {
    double v = (double)to32(h), dx = (double)x;
    if (isinf(v)) // overflow: x must be at least halfway past the largest finite
        return true;
    double d = fabs(v - dx);
    for (int step = -1; step <= 1; step += 2) {
        uint16_t n = (uint16_t)(h + step);
        if ((h & 0x7FFF) == 0 && step < 0)
            n = (uint16_t)((h ^ 0x8000) + 1); // across zero
        double w = (double)to32(n);
        if (isnan(w) || isinf(w))
            continue;
        double dn = fabs(w - dx);
        if (dn < d || (dn == d && (n & 1) == 0 && (h & 1) == 1))
            return false;
    }
    return true;
}

static void test_convert(void) {
    // bf16: exact widening, RNE narrowing
    CHECK(molt_f32_to_bf16(1.0f) == 0x3F80, "1.0");
    CHECK(molt_f32_to_bf16(fb(0x3F808000)) == 0x3F80, "tie rounds to even (down)");
    CHECK(molt_f32_to_bf16(fb(0x3F818000)) == 0x3F82, "tie rounds to even (up)");
    CHECK(molt_f32_to_bf16(fb(0x3F808001)) == 0x3F81, "above tie rounds up");
    CHECK(molt_f32_to_bf16(fb(0x7F7FFFFF)) == 0x7F80, "FLT_MAX rounds to inf");
    CHECK(molt_f32_to_bf16(fb(0x7F7F7FFF)) == 0x7F7F, "below the tie stays finite");
    CHECK(molt_f32_to_bf16(INFINITY) == 0x7F80 && molt_f32_to_bf16(-INFINITY) == 0xFF80, "inf");
    CHECK(isnan(molt_bf16_to_f32(molt_f32_to_bf16(NAN))), "NaN stays NaN");
    CHECK(isnan(molt_bf16_to_f32(molt_f32_to_bf16(fb(0x7F800001)))), "NaN with low payload stays NaN");
    CHECK(molt_f32_to_bf16(fb(0x00010000)) == 0x0001, "subnormal exact");
    CHECK(molt_f32_to_bf16(fb(0x00008000)) == 0x0000, "subnormal tie to even 0");
    CHECK(molt_f32_to_bf16(fb(0x00018000)) == 0x0002, "subnormal tie to even 2");
    CHECK(molt_f32_to_bf16(-0.0f) == 0x8000, "-0");
    // f16 known values
    CHECK(molt_f16_to_f32(0x3C00) == 1.0f, "f16 1");
    CHECK(molt_f16_to_f32(0x7BFF) == 65504.0f, "f16 max");
    CHECK(molt_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 min subnormal");
    CHECK(molt_f16_to_f32(0x03FF) == 1023.0f * ldexpf(1.0f, -24), "f16 max subnormal");
    CHECK(molt_f16_to_f32(0x0400) == ldexpf(1.0f, -14), "f16 min normal");
    CHECK(isinf(molt_f16_to_f32(0x7C00)) && molt_f16_to_f32(0xFC00) < 0, "f16 inf");
    CHECK(isnan(molt_f16_to_f32(0x7E00)) && isnan(molt_f16_to_f32(0x7C01)), "f16 nan");
    CHECK(molt_f32_to_f16(65504.0f) == 0x7BFF, "65504");
    CHECK(molt_f32_to_f16(65519.0f) == 0x7BFF, "65519 rounds down");
    CHECK(molt_f32_to_f16(65520.0f) == 0x7C00, "65520 ties to inf");
    CHECK(molt_f32_to_f16(-1e10f) == 0xFC00, "-big to -inf");
    CHECK(molt_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "2^-25 ties to 0");
    CHECK(molt_f32_to_f16(fb(0x33000001)) == 0x0001, "just above 2^-25");
    CHECK(molt_f32_to_f16(3.0f * ldexpf(1.0f, -25)) == 0x0002, "1.5 ulp ties to 2");
    CHECK(molt_f32_to_f16(1023.5f * ldexpf(1.0f, -24)) == 0x0400, "max subnormal tie to normal");
    CHECK(molt_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3C00, "1 + half ulp ties to even");
    CHECK(molt_f32_to_f16(1.0f + 3.0f * ldexpf(1.0f, -11)) == 0x3C02, "ties to even up");
    CHECK(molt_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(isnan(molt_f16_to_f32(molt_f32_to_f16(NAN))), "NaN stays NaN");
    CHECK(isnan(molt_f16_to_f32(molt_f32_to_f16(fb(0x7F800001)))), "NaN payload in low bits");
    // every 16-bit value widens and narrows back to itself
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = molt_f16_to_f32((uint16_t)h), b = molt_bf16_to_f32((uint16_t)h);
        bad16 += !(isnan(a) ? isnan(molt_f16_to_f32(molt_f32_to_f16(a))) : molt_f32_to_f16(a) == h);
        badbf += !(isnan(b) ? isnan(molt_bf16_to_f32(molt_f32_to_bf16(b))) : molt_f32_to_bf16(b) == h);
    }
    CHECK(bad16 == 0, "%d f16 values do not round trip", bad16);
    CHECK(badbf == 0, "%d bf16 values do not round trip", badbf);
    // random f32 bit patterns narrow to the nearest value, ties to even
    t_seed(7);
    int wrong16 = 0, wrongbf = 0;
    for (int i = 0; i < 300000; i++) {
        uint32_t u = (uint32_t)(t_uniform(0, 1) * 4294967296.0f);
        if (i % 3 == 0) // bias towards f16's range and rounding boundaries
            u = 0x33000000u + (uint32_t)(t_uniform(0, 1) * (float)(0x47800000u - 0x33000000u));
        if (i % 7 == 0)
            u = (u & ~0x1FFFu) | 0x1000u; // exact f16 ties
        float x = fb(u);
        if (isnan(x))
            continue;
        wrong16 += !is_rne(x, molt_f32_to_f16(x), molt_f16_to_f32);
        wrongbf += !is_rne(x, molt_f32_to_bf16(x), molt_bf16_to_f32);
    }
    CHECK(wrong16 == 0, "%d f32->f16 not round-to-nearest-even", wrong16);
    CHECK(wrongbf == 0, "%d f32->bf16 not round-to-nearest-even", wrongbf);
}

// ----------------------------------------------------------------------------
// writing and reading back

static const float TRICKY[] = {0.0f,       -0.0f,        1.0f,         -2.5f,
                               65504.0f,   65520.0f,     1e-8f,        6e-8f,
                               1e-40f,     3.0e38f,      INFINITY,     -INFINITY,
                               NAN,        1.00048828125f, 1.000732421875f, 0.1f};
#define N_TRICKY (int)(sizeof TRICKY / sizeof TRICKY[0])

static void test_roundtrip(void) {
    float a[15], sc = 3.25f;
    t_seed(1);
    t_fill_normal(a, 15, 2.0f);
    const char *meta[] = {"format", "pt", "note", "quote\" back\\ nl\n", NULL};
    st_wtensor ts[] = {
        {"a.weight", ST_F32, 2, {3, 5}, a, NULL},
        {"b", ST_BF16, 1, {N_TRICKY}, TRICKY, NULL},
        {"c", ST_F16, 3, {4, 2, 2}, TRICKY, NULL},
        {"scalar", ST_F32, 0, {0}, &sc, NULL},
        {"empty", ST_F32, 2, {0, 3}, NULL, NULL},
        {"odd\"name", ST_BF16, 1, {3}, a, NULL},
    };
    const int nt = (int)(sizeof ts / sizeof ts[0]);
    int64_t live = molt__alloc_live();
    const char *p = tp("rt.safetensors");
    molt_status s = st_write(ctx, p, ts, nt, meta);
    CHECK(s == MOLT_OK, "st_write: %s", molt_last_error(ctx));
    CHECK(molt__alloc_live() == live, "st_write leaked");
    CHECK(count_tmp(g_dir) == 0, "tmp file left behind");
    // layout: data starts 8-byte aligned, header padded with spaces
    size_t len;
    char *raw = t_read_file(p, &len);
    CHECK(raw && len >= 8, "read back");
    if (raw) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | (uint8_t)raw[i];
        CHECK((8 + hl) % 8 == 0, "data offset %llu not aligned", (unsigned long long)(8 + hl));
        CHECK(raw[8] == '{' && strstr(raw + 8, "\"__metadata__\"") == raw + 9, "metadata first");
        free(raw);
    }
    st_file *f = NULL;
    s = st_open(ctx, p, &f);
    CHECK(s == MOLT_OK, "st_open: %s", molt_last_error(ctx));
    if (s != MOLT_OK)
        return;
    CHECK(st_count(f) == nt, "count %d", st_count(f));
    for (int i = 0; i < nt && i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        CHECK(strcmp(t->name, ts[i].name) == 0, "order: %s vs %s", t->name, ts[i].name);
        CHECK(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim, "%s dtype/ndim", t->name);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] == ts[i].shape[d], "%s shape[%d]", t->name, d);
            numel *= ts[i].shape[d];
        }
        CHECK(t->numel == numel && t->nbytes == (size_t)numel * st_dtype_size(t->dtype),
              "%s numel", t->name);
        CHECK(st_find(f, ts[i].name) == t, "st_find %s", ts[i].name);
        float got[64];
        CHECK(st_read_f32(ctx, t, got) == MOLT_OK, "read %s", t->name);
        int bad = 0;
        for (int64_t j = 0; j < numel; j++) {
            float x = ts[i].data[j];
            float want = t->dtype == ST_BF16  ? molt_bf16_to_f32(molt_f32_to_bf16(x))
                         : t->dtype == ST_F16 ? molt_f16_to_f32(molt_f32_to_f16(x))
                                              : x;
            bad += !same_bits_or_nan(got[j], want);
        }
        CHECK(bad == 0, "%s: %d values differ", t->name, bad);
    }
    CHECK(st_find(f, "nope") == NULL && st_at(f, nt) == NULL && st_at(f, -1) == NULL, "absent");
    CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"), "metadata");
    CHECK(st_metadata(f, "note") && !strcmp(st_metadata(f, "note"), "quote\" back\\ nl\n"),
          "escaped metadata");
    CHECK(st_metadata(f, "absent") == NULL, "absent metadata");
    CHECK(!strcmp(st_shard_path(f, 0), p) && st_shard_path(f, 1) == NULL, "shard path");
    // integer dtypes are refused by st_read_f32
    CHECK(st_read_i32(ctx, st_find(f, "b"), NULL) == MOLT_ERR_UNSUPPORTED, "i32 of bf16");
    st_close(f);
    CHECK(molt__alloc_live() == live, "open/close leaked");

    // writing over an existing file; a directory holding model.safetensors
    fio_mkdir_p(ctx, tp("single"));
    const char *p2 = tp("single/model.safetensors");
    CHECK(st_write(ctx, p2, ts, 2, NULL) == MOLT_OK, "write 2: %s", molt_last_error(ctx));
    CHECK(st_write(ctx, p2, ts + 1, 1, NULL) == MOLT_OK, "overwrite: %s", molt_last_error(ctx));
    f = NULL;
    CHECK(st_open(ctx, tp("single"), &f) == MOLT_OK, "open dir: %s", molt_last_error(ctx));
    CHECK(st_count(f) == 1 && st_find(f, "b") && st_metadata(f, "format") == NULL, "overwritten");
    st_close(f);
    CHECK(count_tmp(tp("single")) == 0, "tmp file left behind");
    // bad writer arguments, and an unwritable path, leave nothing behind
    st_wtensor dup[] = {ts[0], ts[0]};
    CHECK(st_write(ctx, tp("dup.safetensors"), dup, 2, NULL) == MOLT_ERR_ARG, "duplicate names");
    st_wtensor i64 = {"x", ST_I64, 1, {1}, a, NULL};
    CHECK(st_write(ctx, tp("i64.safetensors"), &i64, 1, NULL) == MOLT_ERR_ARG, "I64 write");
    st_wtensor neg = {"x", ST_F32, 1, {-1}, a, NULL};
    CHECK(st_write(ctx, tp("neg.safetensors"), &neg, 1, NULL) == MOLT_ERR_ARG, "negative dim");
    s = st_write(ctx, tp("no/such/dir/x.safetensors"), ts, 1, NULL);
    CHECK(s == MOLT_ERR_IO && strstr(molt_last_error(ctx), "no/such/dir/x.safetensors"),
          "unwritable: %s", molt_last_error(ctx));
    CHECK(!fio_exists(tp("dup.safetensors")) && !fio_exists(tp("i64.safetensors")), "no output");
    CHECK(molt__alloc_live() == live, "failed writes leaked");
    // OOM while writing
    int n;
    for (n = 1; n < 1000; n++) {
        molt__alloc_fail_after(n);
        s = st_write(ctx, tp("oom.safetensors"), ts, nt, meta);
        molt__alloc_fail_after(0);
        CHECK(molt__alloc_live() == live, "st_write OOM #%d leaked", n);
        if (s == MOLT_OK)
            break;
        CHECK(s == MOLT_ERR_OOM, "st_write OOM #%d: %s", n, molt_last_error(ctx));
    }
    CHECK(n > 1 && n < 1000, "st_write OOM loop ended at %d", n);
    CHECK(count_tmp(g_dir) == 0, "tmp file left behind by OOM");
}

// Raw files for dtypes the writer does not produce, and unaligned data.
static void test_raw_dtypes(void) {
    int64_t live = molt__alloc_live();
    struct {
        int64_t i64[3];
        double  f64[2];
        int32_t i32[2];
        float   f32[1];
    } d = {{5, -7, 2147483647}, {0.5, -1e300}, {42, -1}, {3.5f}};
    char h[512] = "{\"a\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]},"
                    "\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[24,40]},"
                    "\"c\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[40,48]},"
                    "\"d\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[48,52]},"
                    "\"e\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[52,53]}}";
    while (strlen(h) % 4 != 1) // header length 1 mod 4: the data section is unaligned
        strcat(h, " ");
    uint8_t buf[64] = {0};
    memcpy(buf, &d, 52);
    buf[52] = 1;
    const char *p = tp("raw.safetensors");
    put_st(p, h, buf, 53);
    st_file *f = NULL;
    molt_status s = st_open(ctx, p, &f);
    CHECK(s == MOLT_OK, "open raw: %s", molt_last_error(ctx));
    if (s != MOLT_OK)
        return;
    CHECK(((uintptr_t)st_find(f, "d")->data & 3) != 0, "test wants unaligned data");
    int32_t iv[3] = {0};
    CHECK(st_read_i32(ctx, st_find(f, "a"), iv) == MOLT_OK, "i64: %s", molt_last_error(ctx));
    CHECK(iv[0] == 5 && iv[1] == -7 && iv[2] == 2147483647, "i64 values");
    CHECK(st_read_i32(ctx, st_find(f, "c"), iv) == MOLT_OK && iv[0] == 42 && iv[1] == -1, "i32");
    float fv[2];
    CHECK(st_read_f32(ctx, st_find(f, "b"), fv) == MOLT_OK && fv[0] == 0.5f && isinf(fv[1]) &&
              fv[1] < 0,
          "f64");
    CHECK(st_read_f32(ctx, st_find(f, "d"), fv) == MOLT_OK && fv[0] == 3.5f, "unaligned f32");
    s = st_read_f32(ctx, st_find(f, "a"), fv);
    CHECK(s == MOLT_ERR_UNSUPPORTED && strstr(molt_last_error(ctx), "'a'"), "f32 of I64: %s",
          molt_last_error(ctx));
    CHECK(st_read_f32(ctx, st_find(f, "e"), fv) == MOLT_ERR_UNSUPPORTED, "f32 of BOOL");
    CHECK(st_find(f, "e")->ndim == 0 && st_find(f, "e")->numel == 1, "scalar bool");
    st_close(f);
    // I64 out of int32 range
    int64_t big[2] = {1, 1ll << 40};
    put_st(tp("big.safetensors"), "{\"x\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}",
           big, 16);
    CHECK(st_open(ctx, tp("big.safetensors"), &f) == MOLT_OK, "open big");
    s = st_read_i32(ctx, st_find(f, "x"), iv);
    CHECK(s == MOLT_ERR_FORMAT && strstr(molt_last_error(ctx), "'x'"), "range: %s",
          molt_last_error(ctx));
    st_close(f);
    // st_parse_buffer on memory
    uint8_t mem[8 + 64 + 4] = {0};
    const char *mh = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t ml = strlen(mh);
    mem[0] = (uint8_t)ml;
    memcpy(mem + 8, mh, ml);
    float one = 1.0f;
    memcpy(mem + 8 + ml, &one, 4);
    s = st_parse_buffer(ctx, "mem", mem, 8 + ml + 4, &f);
    CHECK(s == MOLT_OK && st_count(f) == 1 && st_at(f, 0)->data == mem + 8 + ml, "parse buffer");
    st_close(f);
    s = st_parse_buffer(ctx, "mem", mem, 8 + ml + 3, &f);
    CHECK(s == MOLT_ERR_FORMAT && f == NULL && strstr(molt_last_error(ctx), "mem:"), "truncated");
    CHECK(molt__alloc_live() == live, "leaked");
}

// ----------------------------------------------------------------------------
// hostile files

#define T1(dtype, shape, off) "{\"t\":{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" off "}}"

static void test_hostile(void) {
    put_file(tp("short.safetensors"), "\x05\0\0\0\0", 5);
    expect_open_fail(tp("short.safetensors"), MOLT_ERR_FORMAT, "short.safetensors", "shorter");
    put_file(tp("empty.safetensors"), "", 0);
    expect_open_fail(tp("empty.safetensors"), MOLT_ERR_FORMAT, "empty.safetensors", NULL);
    put_file(tp("hlen.safetensors"), "\xff\0\0\0\0\0\0\0{}", 10);
    expect_open_fail(tp("hlen.safetensors"), MOLT_ERR_FORMAT, "hlen.safetensors", "header length");
    put_file(tp("hmax.safetensors"), "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_open_fail(tp("hmax.safetensors"), MOLT_ERR_FORMAT, "hmax.safetensors", "header length");
    { // > 100 MB header in a file that really is that large (sparse)
        FILE *fp = fopen(tp("huge.safetensors"), "wb");
        uint8_t h8[8] = {0x00, 0xe1, 0xf5, 0x05 + 1, 0, 0, 0, 0}; // 0x06f5e100 = 116.6 MB
        fwrite(h8, 1, 8, fp);
        fclose(fp);
        CHECK(truncate(tp("huge.safetensors"), 8 + 0x06f5e100 + 16) == 0, "truncate");
        expect_open_fail(tp("huge.safetensors"), MOLT_ERR_FORMAT, "huge.safetensors", "limit");
        unlink(tp("huge.safetensors"));
    }
    hostile("notjson.st", "{\"t\": {abc}}", 0, MOLT_ERR_FORMAT, "line 1");
    hostile("array.st", "[1, 2]", 0, MOLT_ERR_FORMAT, "not a JSON object");
    hostile("trailing.st", "{} x", 0, MOLT_ERR_FORMAT, "after the JSON");
    hostile("entry.st", "{\"t\": 5}", 0, MOLT_ERR_FORMAT, "'t'");
    hostile("nodtype.st", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MOLT_ERR_FORMAT,
            "dtype");
    hostile("noshape.st", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
            MOLT_ERR_FORMAT, "shape");
    hostile("nooff.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MOLT_ERR_FORMAT,
            "data_offsets");
    hostile("dtypenum.st", T1("7", "[1]", "[0,4]"), 4, MOLT_ERR_FORMAT, "dtype");
    hostile("dtype.st", T1("\"F8_E4M3\"", "[1]", "[0,1]"), 1, MOLT_ERR_UNSUPPORTED, "F8_E4M3");
    hostile("shapeobj.st", T1("\"F32\"", "{}", "[0,4]"), 4, MOLT_ERR_FORMAT, "shape");
    hostile("negdim.st", T1("\"F32\"", "[-1]", "[0,4]"), 4, MOLT_ERR_FORMAT, "shape[0]");
    hostile("fracdim.st", T1("\"F32\"", "[2.5]", "[0,10]"), 10, MOLT_ERR_FORMAT, "shape[0]");
    hostile("strdim.st", T1("\"F32\"", "[1,\"2\"]", "[0,8]"), 8, MOLT_ERR_FORMAT, "shape[1]");
    hostile("ndim.st", T1("\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, MOLT_ERR_UNSUPPORTED,
            "dims");
    hostile("numel.st", T1("\"F32\"", "[4294967296,4294967296,16]", "[0,4]"), 4, MOLT_ERR_FORMAT,
            "overflow");
    hostile("nbytes.st", T1("\"F64\"", "[4294967296,536870912]", "[0,4]"), 4, MOLT_ERR_FORMAT,
            "overflow");
    hostile("off1.st", T1("\"F32\"", "[1]", "[0]"), 4, MOLT_ERR_FORMAT, "data_offsets");
    hostile("offstr.st", T1("\"F32\"", "[1]", "[0,\"4\"]"), 4, MOLT_ERR_FORMAT, "data_offsets");
    hostile("offneg.st", T1("\"F32\"", "[0]", "[-4,-4]"), 4, MOLT_ERR_FORMAT, "data_offsets");
    hostile("offrev.st", T1("\"F32\"", "[1]", "[4,0]"), 4, MOLT_ERR_FORMAT, "data_offsets");
    hostile("offend.st", T1("\"F32\"", "[2]", "[0,8]"), 4, MOLT_ERR_FORMAT, "outside");
    hostile("offbig.st", T1("\"F32\"", "[1]", "[1e300,1e300]"), 4, MOLT_ERR_FORMAT,
            "data_offsets");
    hostile("size.st", T1("\"F32\"", "[2]", "[0,4]"), 8, MOLT_ERR_FORMAT, "needs 8 bytes");
    hostile("overlap.st",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
            24, MOLT_ERR_FORMAT, "overlap");
    hostile("overlap2.st",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
            "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[28,32]}}",
            32, MOLT_ERR_FORMAT, "'b'");
    hostile("dupkey.st",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, MOLT_ERR_FORMAT, "twice");
    hostile("meta.st", "{\"__metadata__\":{\"format\":1}}", 0, MOLT_ERR_FORMAT, "format");
    hostile("metaobj.st", "{\"__metadata__\":[]}", 0, MOLT_ERR_FORMAT, "__metadata__");
    expect_open_fail(tp("does-not-exist.safetensors"), MOLT_ERR_IO, "does-not-exist", NULL);
    fio_mkdir_p(ctx, tp("emptydir"));
    expect_open_fail(tp("emptydir"), MOLT_ERR_MISSING, "emptydir", "model.safetensors");
    // a gap between tensors and an empty tensor inside another's range are fine
    put_st(tp("gap.st"),
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[1,1]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3,4]}}",
           "abcd", 4);
    st_file *f = NULL;
    CHECK(st_open(ctx, tp("gap.st"), &f) == MOLT_OK, "gap: %s", molt_last_error(ctx));
    st_close(f);
}

// ----------------------------------------------------------------------------
// sharded files

static void write_shards(const char *dir) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8}, c[3] = {9, 10, 11};
    st_wtensor s1[] = {{"a", ST_F32, 2, {2, 3}, a, NULL}, {"b", ST_BF16, 1, {2}, b, NULL}};
    st_wtensor s2[] = {{"c", ST_F16, 1, {3}, c, NULL}};
    const char *meta[] = {"format", "pt", NULL};
    char p[512];
    fio_mkdir_p(ctx, dir);
    fio_join(p, sizeof p, dir, "model-00001-of-00002.safetensors");
    CHECK(st_write(ctx, p, s1, 2, meta) == MOLT_OK, "shard 1: %s", molt_last_error(ctx));
    fio_join(p, sizeof p, dir, "model-00002-of-00002.safetensors");
    CHECK(st_write(ctx, p, s2, 1, NULL) == MOLT_OK, "shard 2: %s", molt_last_error(ctx));
}

static void put_index(const char *dir, const char *weight_map) {
    char p[512], text[1024];
    fio_join(p, sizeof p, dir, "model.safetensors.index.json");
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 26},\n \"weight_map\": %s}",
             weight_map);
    put_file(p, text, strlen(text));
}

#define WM_OK                                                                                      \
    "{\"a\": \"model-00001-of-00002.safetensors\", \"c\": \"model-00002-of-00002.safetensors\","   \
    " \"b\": \"model-00001-of-00002.safetensors\"}"

static void test_sharded(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tp("sharded"));
    write_shards(dir);
    put_index(dir, WM_OK);
    // a stray model.safetensors: the index must win
    float z = 0;
    st_wtensor zt = {"z", ST_F32, 1, {1}, &z, NULL};
    st_write(ctx, tp("sharded/model.safetensors"), &zt, 1, NULL);
    int64_t live = molt__alloc_live();
    const char *paths[2] = {dir, tp("sharded/model.safetensors.index.json")};
    for (int k = 0; k < 2; k++) {
        st_file *f = NULL;
        molt_status s = st_open(ctx, paths[k], &f);
        CHECK(s == MOLT_OK, "open %s: %s", paths[k], molt_last_error(ctx));
        if (s != MOLT_OK)
            continue;
        CHECK(st_count(f) == 3 && !st_find(f, "z"), "3 tensors, index preferred");
        const st_tensor *a = st_find(f, "a"), *b = st_find(f, "b"), *c = st_find(f, "c");
        CHECK(a && b && c, "find");
        if (!a || !b || !c)
            continue;
        CHECK(a->shard == 0 && b->shard == 0 && c->shard == 1, "shard numbers");
        CHECK(strstr(st_shard_path(f, c->shard), "sharded/model-00002-of-00002.safetensors") != NULL,
              "shard path %s", st_shard_path(f, c->shard));
        float v[6];
        CHECK(st_read_f32(ctx, c, v) == MOLT_OK && v[0] == 9 && v[2] == 11, "c values");
        CHECK(st_read_f32(ctx, a, v) == MOLT_OK && v[5] == 6, "a values");
        CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"), "metadata");
        st_close(f);
    }
    CHECK(molt__alloc_live() == live, "sharded open leaked");

    // allocation failure at every step of a sharded open
    int n;
    for (n = 1; n < 10000; n++) {
        st_file *f = NULL;
        molt__alloc_fail_after(n);
        molt_status s = st_open(ctx, dir, &f);
        molt__alloc_fail_after(0);
        if (s == MOLT_OK) {
            st_close(f);
            CHECK(molt__alloc_live() == live, "OOM loop: leak after success");
            break;
        }
        CHECK(s == MOLT_ERR_OOM, "OOM #%d: got %s: %s", n, molt_status_str(s),
              molt_last_error(ctx));
        CHECK(f == NULL, "OOM #%d: *out set", n);
        CHECK(molt__alloc_live() == live, "OOM #%d leaked %lld", n,
              (long long)(molt__alloc_live() - live));
    }
    CHECK(n > 10 && n < 10000, "OOM loop ended after %d allocations", n);

    // broken indexes
    const char *ix = tp("sharded/model.safetensors.index.json");
    put_index(dir, "{\"a\": \"model-00001-of-00002.safetensors\", \"c\": \"model-00003.safetensors\"}");
    expect_open_fail(dir, MOLT_ERR_MISSING, "model.safetensors.index.json",
                     "model-00003.safetensors");
    put_index(dir, "{\"a\": \"model-00001-of-00002.safetensors\", \"q\": "
                   "\"model-00002-of-00002.safetensors\"}");
    expect_open_fail(ix, MOLT_ERR_MISSING, "model.safetensors.index.json", "'q'");
    put_index(dir, "{\"a\": \"model-00002-of-00002.safetensors\", \"c\": "
                   "\"model-00002-of-00002.safetensors\"}");
    expect_open_fail(ix, MOLT_ERR_MISSING, "model.safetensors.index.json", "'a'");
    put_index(dir, "{\"a\": \"../sharded/model-00001-of-00002.safetensors\"}");
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model.safetensors.index.json", "'a'");
    put_index(dir, "{\"a\": 3}");
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model.safetensors.index.json", "'a'");
    put_index(dir, "{}");
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model.safetensors.index.json", "empty");
    put_index(dir, "[]");
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
    put_file(ix, "{\"metadata\": {}}", 16);
    expect_open_fail(ix, MOLT_ERR_MISSING, "model.safetensors.index.json", "weight_map");
    put_file(ix, "{\"weight_map\": {\n\"a\": }", 23);
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model.safetensors.index.json", "line 2");
    // the same tensor name in two shards
    float a2 = 0;
    st_wtensor dup = {"a", ST_F32, 1, {1}, &a2, NULL};
    st_write(ctx, tp("sharded/model-00002-of-00002.safetensors"), &dup, 1, NULL);
    put_index(dir, "{\"a\": \"model-00001-of-00002.safetensors\", \"b\": "
                   "\"model-00002-of-00002.safetensors\"}");
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model-00002-of-00002.safetensors", "twice");
    // a malformed shard is named in the message
    put_file(tp("sharded/model-00002-of-00002.safetensors"), "\x03", 1);
    expect_open_fail(ix, MOLT_ERR_FORMAT, "model-00002-of-00002.safetensors", NULL);
}

// ----------------------------------------------------------------------------
// the real checkpoints

static void test_real(void) {
    const char *dir = t_shared("models/kv-llama-2m");
    if (!t_have(dir, "real sharded checkpoint and mamba2 checks"))
        return;
    char dirc[1024], p[1100];
    snprintf(dirc, sizeof dirc, "%s", dir);
    int64_t live = molt__alloc_live();
    char *text = NULL, *ctext = NULL;
    size_t len, clen;
    fio_join(p, sizeof p, dirc, "model.safetensors.index.json");
    CHECK(fio_read_all(ctx, p, 1 << 20, &text, &len) == MOLT_OK, "index: %s", molt_last_error(ctx));
    fio_join(p, sizeof p, dirc, "config.json");
    CHECK(fio_read_all(ctx, p, 1 << 20, &ctext, &clen) == MOLT_OK, "config");
    cJSON *ix = js_parse(ctx, "index", text, len), *cfg = js_parse(ctx, "config", ctext, clen);
    st_file *f = NULL;
    molt_status s = st_open(ctx, dirc, &f);
    CHECK(s == MOLT_OK, "open kv-llama-2m: %s", molt_last_error(ctx));
    if (s == MOLT_OK && ix && cfg) {
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(ix, "weight_map");
        CHECK(st_count(f) == cJSON_GetArraySize(wm), "count %d vs %d", st_count(f),
              cJSON_GetArraySize(wm));
        int64_t H, I, V, NH, NKV, HD, total;
        js_get_int(ctx, "config", cfg, "hidden_size", 1, 1, 1 << 20, 0, &H);
        js_get_int(ctx, "config", cfg, "intermediate_size", 1, 1, 1 << 20, 0, &I);
        js_get_int(ctx, "config", cfg, "vocab_size", 1, 1, 1 << 20, 0, &V);
        js_get_int(ctx, "config", cfg, "num_attention_heads", 1, 1, 1024, 0, &NH);
        js_get_int(ctx, "config", cfg, "num_key_value_heads", 1, 1, 1024, 0, &NKV);
        js_get_int(ctx, "config", cfg, "head_dim", 1, 1, 1024, 0, &HD);
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(ix, "metadata");
        CHECK(js_get_int(ctx, "index", md, "total_size", 1, 0, INT64_MAX, 0, &total) == MOLT_OK,
              "total_size");
        int64_t sum = 0;
        for (const cJSON *e = wm->child; e; e = e->next) {
            const st_tensor *t = st_find(f, e->string);
            CHECK(t != NULL, "tensor %s absent", e->string);
            if (!t)
                continue;
            sum += (int64_t)t->nbytes;
            CHECK(strcmp(base(st_shard_path(f, t->shard)), e->valuestring) == 0, "%s in %s",
                  e->string, e->valuestring);
            CHECK(t->dtype == ST_F32, "%s dtype", t->name);
            int64_t r = -1, c = -1; // expected rows, cols (c -1: 1-D)
            const char *n = t->name;
            if (strstr(n, "embed_tokens") || strstr(n, "lm_head"))
                r = V, c = H;
            else if (strstr(n, "layernorm") || strstr(n, "model.norm"))
                r = H;
            else if (strstr(n, "q_proj"))
                r = NH * HD, c = H;
            else if (strstr(n, "k_proj") || strstr(n, "v_proj"))
                r = NKV * HD, c = H;
            else if (strstr(n, "o_proj"))
                r = H, c = NH * HD;
            else if (strstr(n, "gate_proj") || strstr(n, "up_proj"))
                r = I, c = H;
            else if (strstr(n, "down_proj"))
                r = H, c = I;
            CHECK(r > 0, "unexpected tensor %s", n);
            CHECK(t->ndim == (c < 0 ? 1 : 2) && t->shape[0] == r && (c < 0 || t->shape[1] == c),
                  "%s shape [%lld, %lld]", n, (long long)t->shape[0],
                  (long long)(t->ndim > 1 ? t->shape[1] : 0));
        }
        CHECK(sum == total, "bytes %lld vs total_size %lld", (long long)sum, (long long)total);
        const st_tensor *emb = st_find(f, "model.embed_tokens.weight");
        float *w = emb ? malloc(emb->nbytes) : NULL;
        if (w) {
            CHECK(st_read_f32(ctx, emb, w) == MOLT_OK, "read embeddings");
            int finite = 0;
            for (int64_t i = 0; i < emb->numel; i++)
                finite += isfinite(w[i]) != 0;
            CHECK(finite == emb->numel, "embeddings finite");
            free(w);
        }
    }
    st_close(f);
    cJSON_Delete(ix);
    cJSON_Delete(cfg);
    molt__free(text);
    molt__free(ctext);
    // reference logits: int32 ids
    fio_join(p, sizeof p, dirc, "reference_logits.safetensors");
    s = st_open(ctx, p, &f);
    CHECK(s == MOLT_OK, "reference_logits: %s", molt_last_error(ctx));
    if (s == MOLT_OK) {
        const st_tensor *ids = st_find(f, "ids_0"), *lg = st_find(f, "logits_0");
        CHECK(ids && lg && ids->ndim == 1 && lg->shape[0] == ids->shape[0], "ids_0/logits_0");
        if (ids && ids->numel > 0 && ids->numel < 100000) {
            int32_t *v = malloc((size_t)ids->numel * 4);
            CHECK(st_read_i32(ctx, ids, v) == MOLT_OK && v[0] == 0, "ids start with BOS 0");
            free(v);
        }
        st_close(f);
    }

    // mamba2-random: a single file
    const char *mp = t_shared("models/mamba2-random/model.safetensors");
    s = st_open(ctx, mp, &f);
    CHECK(s == MOLT_OK, "open mamba2: %s", molt_last_error(ctx));
    if (s == MOLT_OK) {
        CHECK(st_count(f) == 20, "mamba2 count %d", st_count(f));
        const st_tensor *e = st_find(f, "backbone.embeddings.weight");
        CHECK(e && e->ndim == 2 && e->shape[0] == 1024 && e->shape[1] == 128, "embeddings");
        const st_tensor *A = st_find(f, "backbone.layers.1.mixer.A_log");
        CHECK(A && A->ndim == 1 && A->shape[0] == 8, "A_log");
        CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"), "format pt");
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_at(f, i);
            float *w = malloc(t->nbytes + 4);
            CHECK(st_read_f32(ctx, t, w) == MOLT_OK, "read %s", t->name);
            free(w);
        }
        st_close(f);
    }
    const char *mc = t_shared("models/mamba2-random/config.json");
    text = NULL;
    if (fio_read_all(ctx, mc, 1 << 20, &text, &len) == MOLT_OK) {
        cJSON *c = js_parse(ctx, mc, text, len);
        const cJSON *lim = NULL;
        double lo = -1, hi = 0;
        CHECK(js_get_arr(ctx, mc, c, "time_step_limit", 1, &lim) == MOLT_OK && lim, "limit");
        CHECK(lim && js_float_value(cJSON_GetArrayItem(lim, 0), &lo) && lo == 0.0, "limit lo");
        CHECK(lim && js_float_value(cJSON_GetArrayItem(lim, 1), &hi) && isinf(hi) && hi > 0,
              "limit hi = +inf");
        cJSON_Delete(c);
        molt__free(text);
    }
    CHECK(molt__alloc_live() == live, "real files leaked");
}

// ----------------------------------------------------------------------------
// json.c

static void test_json(void) {
    int64_t live = molt__alloc_live();
    const char *t = "{\"n\": 12, \"big\": 3e9, \"frac\": 1.5, \"neg\": -3, \"s\": \"str\","
                    " \"b\": true, \"nul\": null, \"inf\": {\"__float__\": \"Infinity\"},"
                    " \"ninf\": {\"__float__\": \"-Infinity\"}, \"nan\": {\"__float__\": \"NaN\"},"
                    " \"bad\": {\"__float__\": \"huge\"}, \"o\": {}, \"a\": [1]}";
    cJSON *j = js_parse(ctx, "cfg.json", t, strlen(t));
    CHECK(j != NULL, "parse: %s", molt_last_error(ctx));
    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    const cJSON *o = NULL;
    CHECK(js_get_int(ctx, "cfg.json", j, "n", 1, 0, 100, 0, &i) == MOLT_OK && i == 12, "int");
    CHECK(js_get_int(ctx, "cfg.json", j, "big", 1, 0, INT64_MAX, 0, &i) == MOLT_OK &&
              i == 3000000000ll,
          "3e9");
    CHECK(js_get_int(ctx, "cfg.json", j, "absent", 0, 0, 100, 7, &i) == MOLT_OK && i == 7, "def");
    CHECK(js_get_int(ctx, "cfg.json", j, "nul", 0, 0, 100, 9, &i) == MOLT_OK && i == 9,
          "null = absent");
    molt_status st = js_get_int(ctx, "cfg.json", j, "absent", 1, 0, 100, 0, &i);
    CHECK(st == MOLT_ERR_MISSING && strstr(molt_last_error(ctx), "cfg.json") &&
              strstr(molt_last_error(ctx), "'absent'"),
          "missing: %s", molt_last_error(ctx));
    st = js_get_int(ctx, "cfg.json", j, "frac", 1, 0, 100, 0, &i);
    CHECK(st == MOLT_ERR_FORMAT && strstr(molt_last_error(ctx), "'frac'"), "frac: %s",
          molt_last_error(ctx));
    CHECK(js_get_int(ctx, "cfg.json", j, "neg", 1, 0, 100, 0, &i) == MOLT_ERR_FORMAT, "range");
    CHECK(js_get_int(ctx, "cfg.json", j, "s", 1, 0, 100, 0, &i) == MOLT_ERR_FORMAT, "type");
    CHECK(js_get_int(ctx, "cfg.json", j, "inf", 1, 0, 100, 0, &i) == MOLT_ERR_FORMAT, "inf int");
    CHECK(js_get_float(ctx, "cfg.json", j, "frac", 1, 0, &d) == MOLT_OK && d == 1.5, "float");
    CHECK(js_get_float(ctx, "cfg.json", j, "inf", 1, 0, &d) == MOLT_OK && isinf(d) && d > 0,
          "__float__ Infinity");
    CHECK(js_get_float(ctx, "cfg.json", j, "ninf", 1, 0, &d) == MOLT_OK && isinf(d) && d < 0,
          "-Infinity");
    CHECK(js_get_float(ctx, "cfg.json", j, "nan", 1, 0, &d) == MOLT_OK && isnan(d), "NaN");
    CHECK(js_get_float(ctx, "cfg.json", j, "bad", 1, 0, &d) == MOLT_ERR_FORMAT, "bad __float__");
    CHECK(js_get_float(ctx, "cfg.json", j, "s", 1, 0, &d) == MOLT_ERR_FORMAT, "str float");
    CHECK(js_get_float(ctx, "cfg.json", j, "x", 1, 0, &d) == MOLT_ERR_MISSING, "missing float");
    CHECK(js_get_float(ctx, "cfg.json", j, "x", 0, 2.5, &d) == MOLT_OK && d == 2.5, "def float");
    CHECK(js_get_bool(ctx, "cfg.json", j, "b", 1, false, &b) == MOLT_OK && b, "bool");
    CHECK(js_get_bool(ctx, "cfg.json", j, "n", 1, false, &b) == MOLT_ERR_FORMAT, "int as bool");
    CHECK(js_get_bool(ctx, "cfg.json", j, "x", 1, false, &b) == MOLT_ERR_MISSING, "missing bool");
    CHECK(js_get_str(ctx, "cfg.json", j, "s", 1, NULL, &s) == MOLT_OK && !strcmp(s, "str"), "str");
    CHECK(js_get_str(ctx, "cfg.json", j, "b", 1, NULL, &s) == MOLT_ERR_FORMAT, "bool as str");
    CHECK(js_get_str(ctx, "cfg.json", j, "x", 0, "d", &s) == MOLT_OK && !strcmp(s, "d"), "def");
    CHECK(js_get_obj(ctx, "cfg.json", j, "o", 1, &o) == MOLT_OK && o, "obj");
    CHECK(js_get_obj(ctx, "cfg.json", j, "a", 1, &o) == MOLT_ERR_FORMAT, "array as obj");
    CHECK(js_get_arr(ctx, "cfg.json", j, "a", 1, &o) == MOLT_OK && o, "arr");
    CHECK(js_get_int(ctx, "cfg.json", cJSON_GetObjectItem(j, "a"), "k", 1, 0, 1, 0, &i) ==
              MOLT_ERR_FORMAT,
          "lookup in a non-object");
    cJSON_Delete(j);
    // syntax errors: position in the message
    const char *bad = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    j = js_parse(ctx, "bad.json", bad, strlen(bad));
    CHECK(j == NULL && molt_last_status(ctx) == MOLT_ERR_FORMAT, "bad json");
    CHECK(strstr(molt_last_error(ctx), "bad.json") && strstr(molt_last_error(ctx), "line 3"),
          "position: %s", molt_last_error(ctx));
    j = js_parse(ctx, "trail.json", "{} {}", 5);
    CHECK(j == NULL && strstr(molt_last_error(ctx), "trail.json"), "trailing: %s",
          molt_last_error(ctx));
    j = js_parse(ctx, "ws.json", " {\"a\":1} \n", 10);
    CHECK(j != NULL, "surrounding whitespace: %s", molt_last_error(ctx));
    cJSON_Delete(j);
    j = js_parse(ctx, "part.json", "{\"a\":1}xyz", 7); // only len bytes count
    CHECK(j != NULL, "len respected: %s", molt_last_error(ctx));
    cJSON_Delete(j);
    CHECK(js_parse(ctx, "empty.json", "", 0) == NULL, "empty");
    // OOM inside cJSON is reported as OOM, not as a syntax error
    int n;
    for (n = 1; n < 1000; n++) {
        molt__alloc_fail_after(n);
        j = js_parse(ctx, "cfg.json", t, strlen(t));
        molt__alloc_fail_after(0);
        if (j)
            break;
        CHECK(molt_last_status(ctx) == MOLT_ERR_OOM, "js_parse OOM #%d: %s", n,
              molt_last_error(ctx));
        CHECK(molt__alloc_live() == live, "js_parse OOM #%d leaked", n);
    }
    CHECK(j != NULL && n > 5, "js_parse OOM loop ended at %d", n);
    cJSON_Delete(j);
    CHECK(molt__alloc_live() == live, "json leaked");
}

// ----------------------------------------------------------------------------
// fileio.c

static void test_fileio(void) {
    int64_t live = molt__alloc_live();
    char j[64];
    fio_join(j, sizeof j, "a", "b");
    CHECK(!strcmp(j, "a/b"), "join %s", j);
    fio_join(j, sizeof j, "a/", "b");
    CHECK(!strcmp(j, "a/b"), "join %s", j);
    fio_join(j, sizeof j, "", "b");
    CHECK(!strcmp(j, "b"), "join %s", j);
    fio_join(j, 4, "abc", "def");
    CHECK(!strcmp(j, "abc"), "join truncates %s", j);

    const char *d = tp("x/y/z");
    CHECK(fio_mkdir_p(ctx, d) == MOLT_OK && fio_is_dir(d), "mkdir -p: %s", molt_last_error(ctx));
    CHECK(fio_mkdir_p(ctx, d) == MOLT_OK, "mkdir -p existing");
    const char *p = tp("x/y/z/file.txt");
    const char msg[] = "hello, atomic world";
    CHECK(fio_write_atomic(ctx, p, msg, sizeof msg - 1) == MOLT_OK, "write: %s",
          molt_last_error(ctx));
    CHECK(fio_write_atomic(ctx, p, msg, 5) == MOLT_OK, "overwrite");
    CHECK(count_tmp(d) == 0, "tmp left behind");
    CHECK(fio_exists(p) && !fio_is_dir(p), "exists");
    char *buf = NULL;
    size_t len = 0;
    CHECK(fio_read_all(ctx, p, 100, &buf, &len) == MOLT_OK && len == 5 && !strcmp(buf, "hello"),
          "read back");
    molt__free(buf);
    CHECK(fio_read_all(ctx, p, 5, &buf, &len) == MOLT_OK && len == 5, "exactly max");
    molt__free(buf);
    molt_status s = fio_read_all(ctx, p, 4, &buf, &len);
    CHECK(s == MOLT_ERR_FORMAT && buf == NULL && strstr(molt_last_error(ctx), "file.txt"),
          "too large: %s", molt_last_error(ctx));
    s = fio_read_all(ctx, tp("nope.txt"), 100, &buf, &len);
    CHECK(s == MOLT_ERR_IO && strstr(molt_last_error(ctx), "nope.txt"), "absent: %s",
          molt_last_error(ctx));
    s = fio_read_all(ctx, d, 100, &buf, &len);
    CHECK(s == MOLT_ERR_IO, "directory read");
    s = fio_write_atomic(ctx, tp("x/missing/f"), msg, 3);
    CHECK(s == MOLT_ERR_IO && strstr(molt_last_error(ctx), "x/missing/f"), "bad dir: %s",
          molt_last_error(ctx));
    s = fio_mkdir_p(ctx, tp("x/y/z/file.txt/sub"));
    CHECK(s == MOLT_ERR_IO, "mkdir through a file");
    // mapping
    const uint8_t *data;
    void *h;
    CHECK(fio_map(ctx, p, &data, &len, &h) == MOLT_OK && len == 5 && !memcmp(data, "hello", 5),
          "map");
    fio_unmap(h);
    put_file(tp("zero"), "", 0);
    CHECK(fio_map(ctx, tp("zero"), &data, &len, &h) == MOLT_OK && len == 0 && data, "map empty");
    fio_unmap(h);
    CHECK(fio_map(ctx, tp("nope"), &data, &len, &h) == MOLT_ERR_IO && h == NULL, "map absent");
    CHECK(fio_map(ctx, d, &data, &len, &h) == MOLT_ERR_IO, "map dir");
    fio_unmap(NULL);
    CHECK(molt__alloc_live() == live, "fileio leaked");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/molt_st_XXXXXX");
    if (!mkdtemp(g_dir))
        return t_skip("test_safetensors", "mkdtemp failed");
    int64_t live0 = molt__alloc_live();
    ctx = molt_ctx_new();
    test_convert();
    test_fileio();
    test_json();
    test_roundtrip();
    test_raw_dtypes();
    test_hostile();
    test_sharded();
    test_real();
    molt_ctx_free(ctx);
    CHECK(molt__alloc_live() == live0, "leaked %lld blocks in total",
          (long long)(molt__alloc_live() - live0));
    rm_rf(g_dir);
    return t_done("test_safetensors");
}
