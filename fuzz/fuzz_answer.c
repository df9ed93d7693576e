/*
 * fuzz_answer.c — answer extraction of the reasoning tools: any bytes must give
 * an answer or none, never a crash, a read outside the input or a bad key.
 * Checks: the key is NUL-terminated and non-empty exactly when found; a key
 * of a number that fits (no "D:", "F:", "H:" prefix) parses back to itself;
 * the input split at its newlines votes for one of its lines' answers; pass@k
 * of counts taken from the input is in [0, 1].
 */
#include "molt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    molt_answer a, b;
    molt_answer_extract(s, size, &a);
    size_t kl = strnlen(a.key, sizeof a.key);
    if (kl == sizeof a.key || (a.found != 0) != (kl > 0))
        abort();
    if (a.found && a.key[1] != ':') {
        molt_answer_parse(a.key, kl, &b);
        if (!molt_answer_equal(&a, &b))
            abort();
    }
    molt_answer_parse(s, size, &b);
    if (strnlen(b.key, sizeof b.key) == sizeof b.key)
        abort();
    // one sample per line, at most 64
    molt_answer lines[64];
    int32_t     n = 0;
    for (size_t lo = 0; lo <= size && n < 64;) {
        const char *nl = memchr(s + lo, '\n', size - lo);
        size_t      hi = nl ? (size_t)(nl - s) : size;
        molt_answer_extract(s + lo, hi - lo, &lines[n++]);
        lo = hi + 1;
    }
    int32_t v = molt_majority_vote(lines, n);
    if (v < -1 || v >= n || (v >= 0 && !lines[v].found))
        abort();
    if (size >= 3) {
        int64_t nn = 1 + data[0], c = data[1] % (nn + 1), k = 1 + data[2] % nn;
        double  p = molt_pass_at_k(nn, c, k);
        if (!(p >= 0.0 && p <= 1.0))
            abort();
    }
    return 0;
}
