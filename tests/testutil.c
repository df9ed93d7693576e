/* testutil.c — see testutil.h. */
#include "testutil.h"
#include "core/exec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int t_failures;
int t_checks;

double t_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d != d ? (double)INFINITY : d;
    }
    return m;
}

double t_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (num != num)
        return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

bool t_close(const char *what, const float *got, const float *want, size_t n, double atol,
             double rtol_l2) {
    double ma = t_max_abs(got, want, n), rl = t_rel_l2(got, want, n);
    bool ok = (atol < 0 || ma <= atol) && (rtol_l2 < 0 || rl <= rtol_l2);
    t_checks++;
    if (!ok) {
        t_failures++;
        fprintf(stderr, "FAIL %s: max_abs=%.3g (tol %.3g) rel_l2=%.3g (tol %.3g) n=%zu\n", what, ma,
                atol, rl, rtol_l2, n);
        int shown = 0;
        for (size_t i = 0; i < n && shown < 5; i++) {
            double d = fabs((double)got[i] - (double)want[i]);
            if ((atol >= 0 && d > atol) || d != d) {
                fprintf(stderr, "   [%zu] got %.8g want %.8g\n", i, (double)got[i],
                        (double)want[i]);
                shown++;
            }
        }
    }
    return ok;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
void t_seed(uint64_t s) { g_rng = s * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t next_u64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
float t_uniform(float lo, float hi) {
    double u = (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)((double)lo + u * ((double)hi - (double)lo));
}
float t_normal(void) {
    double u1 = ((double)(next_u64() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
void t_fill_uniform(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = t_uniform(lo, hi);
}
void t_fill_normal(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++)
        x[i] = t_normal() * scale;
}

bool t_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
const char *t_shared(const char *rel) {
    static char buf[4096];
    // byte-identical copies the repository ships (tests/fixtures/README.md)
    if (strncmp(rel, "models/stories260K/", 19) == 0) {
        snprintf(buf, sizeof buf, "%s", rel);
        if (t_exists(buf))
            return buf;
    }
    if (strcmp(rel, "models/kv-llama-2m/kv_task.json") == 0 && t_exists("data/kv_task.json"))
        return "data/kv_task.json";
    struct stat st; // files only: a directory (e.g. "data") means all of shared/'s
    snprintf(buf, sizeof buf, "tests/fixtures/%s", rel);
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
        return buf;
    const char *root = getenv("MOLT_SHARED");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "../shared", rel);
    return buf;
}

static int t_parts_skipped;
bool t_have(const char *path, const char *what) {
    if (t_exists(path))
        return true;
    printf("SKIP part: %s (needs %s)\n", what, path);
    fflush(stdout);
    t_parts_skipped++;
    return false;
}
char *t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return b;
}

int t_done(const char *name) {
    if (t_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, t_failures, t_checks);
        return 1;
    }
    if (t_checks == 0) {
        fprintf(stderr, "%s: no checks ran (a test that cannot fail is a defect)\n", name);
        return 1;
    }
    if (t_parts_skipped)
        printf("%s: all %d checks passed; %d parts skipped (SKIP part lines above)\n", name,
               t_checks, t_parts_skipped);
    else
        printf("%s: all %d checks passed\n", name, t_checks);
    return 0;
}
int t_skip(const char *name, const char *why) {
    printf("%s: SKIP (%s)\n", name, why);
    return 77;
}

static molt_exec t_ex;
static bool      t_ex_set;

const molt_exec *t_exec(void) {
    if (!t_ex_set)
        test_threads(1);
    return &t_ex;
}

void test_threads(int nth) {
    t_ex = molt_exec_cpu(nth);
    t_ex_set = true;
}

double t_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1e-6;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return worst / scale;
}

int t_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}
