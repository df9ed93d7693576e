/*
 * testutil.h — the small harness every C test links: checks that count
 * failures, tensor comparison (max-abs, relative L2, first mismatches), a
 * seeded RNG, and paths to ../shared. A test's main returns t_done(): 0 when
 * every check passed, 1 otherwise, 77 when skipped.
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
double t_rel_l2(const float *a, const float *b, size_t n);

// Deterministic RNG (splitmix64 + xorshift), uniform in [lo, hi) and normal.
void   t_seed(uint64_t s);
float  t_uniform(float lo, float hi);
float  t_normal(void);
void   t_fill_uniform(float *x, size_t n, float lo, float hi);
void   t_fill_normal(float *x, size_t n, float scale);

// Path under ../shared (or $MOLT_SHARED). Returns a static buffer.
const char *t_shared(const char *rel);
bool        t_exists(const char *path);
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
