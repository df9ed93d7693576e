/*
 * test_llama.c — end-to-end parity of the Llama engine.
 *
 * stories260K (llama2.c checkpoint, real pretrained weights):
 *   - greedy from BOS, 200 tokens: the text starts with the greedy story
 *     llama2.c's author published, and the ids equal tests/ref/llama_ref.py
 *     (an independent float64 PyTorch implementation reading the .bin with
 *     llama2.c's own RoPE pairing);
 *   - greedy continuations of several prompts equal the PyTorch reference;
 *   - prefill (all tokens at once) == token-by-token through the KV cache;
 *   - convert → HF directory → load gives bit-identical logits.
 * kv-llama-2m (HF sharded safetensors):
 *   - logits == HF transformers' reference_logits.safetensors to max-abs 1e-4
 *     for all prompts, as one prefill and token by token;
 *   - a bf16 copy loads and matches the fp32 model with bf16-rounded weights.
 */
#include "io/safetensors.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <dirent.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *PUBLISHED =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

static molt_ctx *ctx;
static const int32_t IDS[] = {0, 14, 200, 31, 5, 77, 300, 2, 9, 9, 1000, 44, 12, 7, 3, 512};
#define NIDS ((int)(sizeof IDS / sizeof IDS[0]))

// greedy ids after `prompt` (n new, stops at BOS=1 like run.c), one token at a time
static int greedy(const molt_model *m, const int32_t *prompt, int np, int n, int32_t *out) {
    molt_seq *s;
    if (molt_seq_new(ctx, m, 0, &s) != MOLT_OK)
        return -1;
    int V = m->cfg.vocab, ng = 0;
    float *lg = malloc(sizeof(float) * (size_t)V);
    molt_seq_feed(ctx, s, prompt, np, 0, lg);
    for (; ng < n; ng++) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best])
                best = i;
        if (best == 1)
            break;
        out[ng] = best;
        molt_seq_feed(ctx, s, &out[ng], 1, 0, lg);
    }
    free(lg);
    molt_seq_free(s);
    return ng;
}

static void text_of(const molt_model *m, const int32_t *ids, int n, char *out, size_t cap) {
    char *t = NULL;
    size_t len = 0;
    // decode with BOS first so the llama2.c leading-space rule applies
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)(n + 1));
    buf[0] = 1;
    memcpy(buf + 1, ids, sizeof(int32_t) * (size_t)n);
    if (molt_detokenize(ctx, molt_model_tokenizer(m), buf, (size_t)n + 1, &t, &len) == MOLT_OK) {
        snprintf(out, cap, "%s", t);
        molt_free(t);
    } else {
        out[0] = 0;
    }
    free(buf);
}

// runs the PyTorch reference on prompts; returns generated ids per prompt
static int python_greedy(const char *bin, int32_t prompts[][64], const int *np, int k, int n,
                         int32_t out[][256], int *nout) {
    char in[] = "/tmp/molt_llref_inXXXXXX", outp[] = "/tmp/molt_llref_outXXXXXX";
    int fi = mkstemp(in), fo = mkstemp(outp);
    if (fi < 0 || fo < 0)
        return -1;
    close(fo);
    FILE *f = fdopen(fi, "w");
    for (int p = 0; p < k; p++) {
        for (int i = 0; i < np[p]; i++)
            fprintf(f, "%s%d", i ? " " : "", prompts[p][i]);
        fprintf(f, "\n");
    }
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/llama_ref.py greedy '%s' %s %s %d", bin,
             in, outp, n);
    int rc = system(cmd);
    unlink(in);
    if (rc != 0) {
        unlink(outp);
        return -1;
    }
    f = fopen(outp, "r");
    char line[65536];
    for (int p = 0; p < k; p++) {
        nout[p] = 0;
        if (!fgets(line, sizeof line, f))
            break;
        char *s = line, *e;
        long v;
        while ((v = strtol(s, &e, 10)), e != s) {
            out[p][nout[p]++] = (int32_t)v;
            s = e;
        }
    }
    fclose(f);
    unlink(outp);
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

// The entries of dir (dot files too) with their sizes and an FNV-1a hash of
// their bytes, as one string: equal strings = the same directory.
static void dir_digest(const char *dir, char *out, size_t cap) {
    char           names[64][256], p[4096 + 512];
    int            n = 0;
    DIR           *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 64)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    if (d)
        closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_name);
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < n && k < cap; i++) {
        size_t dl = strlen(dir), nl = strlen(names[i]);
        if (dl + nl + 2 > sizeof p)
            continue;
        memcpy(p, dir, dl);
        p[dl] = '/';
        memcpy(p + dl + 1, names[i], nl + 1);
        uint64_t h = 0xcbf29ce484222325ull;
        long     size = 0;
        FILE    *f = fopen(p, "rb");
        for (int c; f && (c = fgetc(f)) != EOF; size++)
            h = (h ^ (uint8_t)c) * 0x100000001b3ull;
        if (f)
            fclose(f);
        k += (size_t)snprintf(out + k, cap - k, "%s:%ld:%016llx;", names[i], size,
                              (unsigned long long)h);
    }
}

// A save that fails at any allocation (the weights, config.json, tokenizer.bin,
// the derived tokenizer.json) leaves the directory as it was, byte for byte.
static void test_save_atomic(molt_model *m, const char *dir) {
    static char before[8192], after[8192];
    dir_digest(dir, before, sizeof before);
    CHECK(strstr(before, "tokenizer.json:") && strstr(before, "tokenizer_config.json:") &&
              strstr(before, "tokenizer.bin:"),
          "a llama2.c model's directory holds tokenizer.bin, tokenizer.json and "
          "tokenizer_config.json: %s", before);
    int failed = 0, wrong = 0;
    for (int64_t k = 1; k < 1000000; k += k < 150 ? 1 : k / 25) {
        molt__alloc_fail_after(k);
        molt_status st = molt_model_save(ctx, m, dir, "bf16");
        molt__alloc_fail_after(0);
        if (st == MOLT_OK)
            break;
        failed++;
        dir_digest(dir, after, sizeof after);
        if (strcmp(before, after) && wrong++ == 0)
            CHECK(false, "allocation %lld failed the save (%s) and changed the directory",
                  (long long)k, molt_last_error(ctx));
    }
    CHECK(failed > 100 && wrong == 0, "save under allocation failures: %d failed, %d changed the "
                                      "directory", failed, wrong);
    molt_model *r = NULL; // and the save that got through is whole
    CHECK(molt_model_load(ctx, dir, NULL, &r) == MOLT_OK, "reload after the saves: %s",
          molt_last_error(ctx));
    molt_model_free(r);
}

// ----------------------------------------------------------------------------
static void test_stories260k(void) {
    char bin[4096], tokp[4096];
    snprintf(bin, sizeof bin, "%s", t_shared("models/stories260K/stories260K.bin"));
    snprintf(tokp, sizeof tokp, "%s", t_shared("models/stories260K/tok512.bin"));
    molt_load_opts o = {tokp, 0};
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, bin, &o, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (!m)
        return;

    // 1. greedy from BOS vs the published text and the PyTorch reference
    static int32_t prompts[4][64];
    int np[4] = {0};
    const char *texts[4] = {NULL, "Once upon a time", "The little dog was sad because",
                            "Lily and Ben went to the park. They"};
    prompts[0][0] = 1;
    np[0] = 1;
    for (int p = 1; p < 4; p++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(molt_tokenize(ctx, molt_model_tokenizer(m), texts[p], strlen(texts[p]), 1, &ids,
                            &n) == MOLT_OK,
              "tokenize");
        np[p] = (int)n;
        memcpy(prompts[p], ids, sizeof(int32_t) * n);
        molt_free(ids);
    }
    static int32_t ours[4][256], ref[4][256];
    int nours[4], nref[4];
    int N[4] = {200, 120, 120, 120};
    for (int p = 0; p < 4; p++)
        nours[p] = greedy(m, prompts[p], np[p], N[p], ours[p]);
    char text[8192];
    text_of(m, ours[0], nours[0], text, sizeof text);
    CHECK(strncmp(text, PUBLISHED, strlen(PUBLISHED)) == 0,
          "greedy story differs from the published one:\n  got:  %.200s\n  want: %s", text,
          PUBLISHED);
    printf("stories260K greedy (%d tokens): %.160s...\n", nours[0], text);
    CHECK(python_greedy(bin, prompts, np, 1, 200, ref, nref) == 0, "PyTorch reference failed");
    CHECK(python_greedy(bin, prompts + 1, np + 1, 3, 120, ref + 1, nref + 1) == 0,
          "PyTorch reference failed");
    for (int p = 0; p < 4; p++) {
        int same = nours[p] == nref[p];
        int first = -1;
        for (int i = 0; i < MOLT_MIN(nours[p], nref[p]); i++)
            if (ours[p][i] != ref[p][i]) {
                same = 0;
                first = i;
                break;
            }
        CHECK(same, "prompt %d: ids differ from PyTorch (ours %d tokens, ref %d, first diff at %d)",
              p, nours[p], nref[p], first);
    }

    // 2. prefill == token-by-token
    int32_t seq[201];
    seq[0] = 1;
    memcpy(seq + 1, ours[0], sizeof(int32_t) * (size_t)nours[0]);
    int n = nours[0] + 1;
    float *a = tm_logits(ctx, m, seq, n, false), *b = tm_logits(ctx, m, seq, n, true);
    CHECK(a && b, "run_logits");
    if (a && b)
        t_close("stories260K prefill vs stepwise", a, b, (size_t)n * m->cfg.vocab, 1e-4, 1e-5);

    // 3. convert → HF dir → load: bit-identical logits
    char dir[] = "/tmp/molt_conv_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, dir, "f32") == MOLT_OK, "save: %s", molt_last_error(ctx));
    molt_model *m2 = NULL;
    CHECK(molt_model_load(ctx, dir, NULL, &m2) == MOLT_OK, "reload: %s", molt_last_error(ctx));
    if (m2 && a) {
        float *c = tm_logits(ctx, m2, seq, n, false);
        CHECK(c && memcmp(a, c, sizeof(float) * (size_t)n * m->cfg.vocab) == 0,
              "converted model's logits are not bit-identical");
        CHECK(m2->tok != NULL, "converted directory has no tokenizer");
        free(c);
    }
    molt_model_free(m2);
    test_save_atomic(m, dir);
    tm_rmdir(dir);
    free(a);
    free(b);
    molt_model_free(m);
}

static void test_kv_llama(void) {
    char dir[4096], refp[4096];
    snprintf(dir, sizeof dir, "%s", t_shared("models/kv-llama-2m"));
    snprintf(refp, sizeof refp, "%s", t_shared("models/kv-llama-2m/reference_logits.safetensors"));
    if (!t_have(dir, "kv-llama-2m HF parity and bf16 checkpoint"))
        return;
    molt_model *m = NULL;
    CHECK(molt_model_load(ctx, dir, NULL, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    if (!m)
        return;
    tm_check_reference(ctx, m, refp, 1e-4, "kv-llama-2m");
    // bf16 copy of the checkpoint vs an fp32 model holding the same rounded weights
    char bdir[] = "/tmp/molt_bf16_XXXXXX";
    CHECK(mkdtemp(bdir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, bdir, "bf16") == MOLT_OK, "save bf16: %s", molt_last_error(ctx));
    molt_model *mb = NULL;
    CHECK(molt_model_load(ctx, bdir, NULL, &mb) == MOLT_OK, "load bf16: %s", molt_last_error(ctx));
    if (mb) {
        float *a = tm_logits(ctx, m, IDS, NIDS, false);
        for (size_t i = 0; i < m->n_floats; i++)
            m->data[i] = molt_bf16_to_f32(molt_f32_to_bf16(m->data[i]));
        float *c = tm_logits(ctx, mb, IDS, NIDS, false), *d = tm_logits(ctx, m, IDS, NIDS, false);
        size_t n = (size_t)NIDS * m->cfg.vocab;
        CHECK(c && d && memcmp(c, d, sizeof(float) * n) == 0,
              "bf16 checkpoint differs from the fp32 run with bf16-rounded weights");
        if (a && c)
            printf("bf16 checkpoint vs fp32 original: logits max-abs %.3g (bf16 rounding)\n",
                   t_max_abs(c, a, n));
        free(a);
        free(c);
        free(d);
    }
    tm_rmdir(bdir);
    molt_model_free(mb);
    molt_model_free(m);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    test_stories260k();
    test_kv_llama();
    molt_ctx_free(ctx);
    return t_done("test_llama");
}
