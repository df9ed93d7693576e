/*
 * testutil.h — the small harness every C test links: checks that count
 * failures, tensor comparison (max-abs, relative L2, first mismatches), a
 * seeded RNG, and paths to model and data files. A test's main returns t_done(): 0 when
 * every check passed, 1 otherwise, 77 when skipped (t_skip). A part of a test that needs a
 * file the repository does not ship is skipped with t_have, which prints
 * "SKIP part: WHAT (needs PATH)"; scripts/run_tests.sh lists and counts those lines.
 */
#ifndef MOLT_TESTUTIL_H
#define MOLT_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int t_failures;
extern int t_checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        t_checks++;                                                                                \
        if (!(cond)) {                                                                             \
            t_failures++;                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

// Compares got vs want; prints stats and the first mismatches when either
// max-abs > atol or rel-L2 > rtol_l2 (pass a negative tolerance to skip it).
bool t_close(const char *what, const float *got, const float *want, size_t n, double atol,
             double rtol_l2);
double t_max_abs(const float *a, const float *b, size_t n);
// max_i |a_i − b_i| / max(max_i |b_i|, 1e-6): one tolerance for a whole logit row set
double t_rel_diff(const float *a, const float *b, size_t n);
// index of the first largest of x[0..n) (greedy token)
int    t_argmax(const float *x, int n);
double t_rel_l2(const float *a, const float *b, size_t n);

// Deterministic RNG (splitmix64 + xorshift), uniform in [lo, hi) and normal.
void   t_seed(uint64_t s);
float  t_uniform(float lo, float hi);
float  t_normal(void);
void   t_fill_uniform(float *x, size_t n, float lo, float hi);
void   t_fill_normal(float *x, size_t n, float scale);

// Path of a model or data file named by its path under shared/ (e.g.
// "models/stories260K/tok512.bin"): the repository's own copy when it ships one
// (models/stories260K/*, data/kv_task.json, a file tests/fixtures/REL; the same bytes as the
// shared/ file, see tests/fixtures/README.md), else $MOLT_SHARED/REL (default ../shared). Relative
// to the repository root (tests run there). Returns a static buffer.
const char *t_shared(const char *rel);
bool        t_exists(const char *path);
// true when path exists; otherwise prints "SKIP part: WHAT (needs PATH)" and counts the skip
// (t_done reports it). Only for files too large or without a license to ship in the repo.
bool t_have(const char *path, const char *what);
// Reads a whole file (malloc'd, NUL-terminated). NULL on failure.
char *t_read_file(const char *path, size_t *len);

// The execution context every test passes to ops, mixers and models: the
// CPU backend, one thread unless test_threads() says otherwise.
struct molt_exec;
const struct molt_exec *t_exec(void);
#define TEX t_exec()
void test_threads(int nth);

int t_done(const char *name);
int t_skip(const char *name, const char *why);

#endif
