/*
 * test_run_state.c — the pieces resume checks rest on: FNV-1a 64 (published
 * vectors, chunking, a file equals its bytes, any single bit flip changes it)
 * and the strict state.json parser (ckpt_state_parse): a valid state parses,
 * every field bad in turn is a clean error.
 */
#include "io/checksum.h"
#include "train/checkpoint.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *GOOD =
    "{\"step\": 6, \"rng\": \"18446744073709551615\", \"tokens\": 384, \"adam_step\": 6,\n"
    " \"settings\": {\"seq\": \"32\", \"data\": \"a.txt\"},\n"
    " \"files\": {\"config.json\": \"0123456789abcdef\", \"model.safetensors\": "
    "\"fedcba9876543210\", \"optim.safetensors\": \"00000000000000ff\"}}\n";

static bool parses(molt_ctx *ctx, const char *text, ckpt_state *s) {
    return ckpt_state_parse(ctx, "t", text, strlen(text), s) == MOLT_OK;
}

// GOOD with the first `from` replaced by `to`
static bool parses_with(molt_ctx *ctx, const char *from, const char *to) {
    char        buf[2048];
    const char *p = strstr(GOOD, from);
    if (!p)
        return true; // (a broken test: reported by the caller's CHECK)
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - GOOD), GOOD, to, p + strlen(from));
    ckpt_state s;
    bool       ok = parses(ctx, buf, &s);
    if (ok)
        ckpt_state_free(&s);
    return ok;
}

int main(void) {
    // FNV-1a 64: the published vectors
    CHECK(fnv1a64(FNV1A64_INIT, "", 0) == 0xcbf29ce484222325ull, "empty");
    CHECK(fnv1a64(FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8cull, "\"a\"");
    CHECK(fnv1a64(FNV1A64_INIT, "foobar", 6) == 0x85944171f73967e8ull, "\"foobar\"");
    unsigned char buf[3000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    uint64_t whole = fnv1a64(FNV1A64_INIT, buf, sizeof buf);
    CHECK(fnv1a64(fnv1a64(FNV1A64_INIT, buf, 1234), buf + 1234, sizeof buf - 1234) == whole,
          "chunked");
    int same = 0;
    for (size_t i = 0; i < sizeof buf; i += 97)
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (unsigned char)(1u << b);
            same += fnv1a64(FNV1A64_INIT, buf, sizeof buf) == whole;
            buf[i] ^= (unsigned char)(1u << b);
        }
    CHECK(same == 0, "%d single-bit flips kept the checksum", same);
    // a file's checksum is its bytes' (over several read chunks)
    molt_ctx *ctx = molt_ctx_new();
    char      path[] = "/tmp/molt_test_run_state_XXXXXX";
    int       fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    static unsigned char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i ^ (i >> 8));
    CHECK(write(fd, big, sizeof big) == (ssize_t)sizeof big, "write");
    close(fd);
    uint64_t h = 0;
    CHECK(fio_checksum_file(ctx, path, &h) == MOLT_OK && h == fnv1a64(FNV1A64_INIT, big, sizeof big),
          "file checksum");
    unlink(path);
    CHECK(fio_checksum_file(ctx, path, &h) == MOLT_ERR_IO, "missing file is MOLT_ERR_IO");
    // state.json
    ckpt_state s;
    CHECK(parses(ctx, GOOD, &s), "%s", molt_last_error(ctx));
    CHECK(s.step == 6 && s.tokens == 384 && s.adam_step == 6 && s.rng == UINT64_MAX &&
              s.n_files == 3 && s.sum[2] == 0xff,
          "fields");
    ckpt_state_free(&s);
    static const char *const bad[][2] = {
        {"\"rng\": \"18446744073709551615\"", "\"rng\": \"18446744073709551616\""}, // overflow
        {"\"rng\": \"18446744073709551615\"", "\"rng\": \"12x\""},
        {"\"rng\": \"18446744073709551615\"", "\"rng\": \"\""},
        {"\"rng\": \"18446744073709551615\"", "\"rng\": 5"},
        {"\"step\": 6", "\"step\": -1"},
        {"\"step\": 6", "\"step\": 6.5"},
        {"\"tokens\": 384, ", ""},
        {"\"seq\": \"32\"", "\"seq\": 32"},
        {"\"0123456789abcdef\"", "\"0123456789ABCDEF\""},
        {"\"0123456789abcdef\"", "\"0123456789abcde\""},
        {"\"config.json\"", "\"../config.json\""},
        {"\"config.json\"", "\".hidden\""},
        {"\"optim.safetensors\"", "\"other.safetensors\""}, // a required checksum missing
        {"\"settings\"", "\"setting\""},
        {"}}\n", "}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(strstr(GOOD, bad[i][0]), "case %zu: pattern", i);
        CHECK(!parses_with(ctx, bad[i][0], bad[i][1]), "case %zu (%s -> %s) parsed", i, bad[i][0],
              bad[i][1]);
    }
    molt_ctx_free(ctx);
    return t_done("test_run_state");
}
