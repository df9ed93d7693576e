/* cli.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *hint_for(molt_status s) {
    switch (s) {
    case MOLT_ERR_IO: return "check that the path exists and is readable";
    case MOLT_ERR_UNSUPPORTED: return "molt reads model_type llama, llamba, mamba2, molt_hybrid "
                                      "and llama2.c .bin files; see docs/FORMATS.md";
    case MOLT_ERR_OOM: return "the model or context does not fit in memory";
    case MOLT_ERR_SHAPE: return "the tensors or config.json disagree: is this the right config?";
    default: return NULL;
    }
}

bool cli_msg_names(const char *msg, const char *what) {
    size_t n = what ? strlen(what) : 0;
    return n && strncmp(msg, what, n) == 0 &&
           (msg[n] == ':' || msg[n] == '/' || what[n - 1] == '/');
}

int cli_fail(molt_ctx *ctx, const char *what) {
    molt_status s = molt_last_status(ctx);
    const char *msg = molt_last_error(ctx);
    if (cli_msg_names(msg, what)) // "DIR: DIR/config.json: ..." → "DIR/config.json: ..."
        what = NULL;
    fprintf(stderr, "molt: error: %s%s%s\n", what ? what : "", what ? ": " : "", msg);
    const char *h = hint_for(s);
    if (h)
        fprintf(stderr, "HINT: %s\n", h);
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "molt %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nHINT: molt %s --help\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

bool cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        cli_usage_error(cmd, "%s expects a whole number in [%ld, %ld], got \"%s\"", opt, lo, hi,
                        val);
        return false;
    }
    *out = v;
    return true;
}

bool cli_int_list(const char *cmd, const char *opt, const char *s, long lo, long hi, long *v,
                  int max, int *n, const char *like, const char *unit) {
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf) {
        cli_usage_error(cmd, "%s list is too long", opt);
        return false;
    }
    *n = 0;
    // every item non-empty: "10,,20", ",10" and "10," are refused, not read as 10,20 (an
    // empty string is one empty item: a success holds at least one value)
    for (char *t = buf, *next; t; t = next) {
        next = strchr(t, ',');
        if (next)
            *next++ = '\0';
        if (!*t) {
            cli_usage_error(cmd, "%s has an empty item in \"%s\" (expected %s)", opt, s, like);
            return false;
        }
        if (*n == max) {
            cli_usage_error(cmd, "%s takes at most %d %s", opt, max, unit);
            return false;
        }
        if (!cli_int(cmd, opt, t, lo, hi, &v[(*n)++]))
            return false;
    }
    return true;
}

bool cli_set_device(molt_ctx *ctx, const char *device) {
    if (molt_ctx_set_device(ctx, device) == MOLT_OK)
        return true;
    fprintf(stderr, "molt: error: %s\n", molt_last_error(ctx)); // no model-format hint
    return false;
}

molt_model *cli_load_model(molt_ctx *ctx, const char *path, const char *tokenizer) {
    molt_load_opts o = {tokenizer, 0};
    molt_model *m = NULL;
    if (molt_model_load(ctx, path, &o, &m) != MOLT_OK) {
        cli_fail(ctx, NULL);
        return NULL;
    }
    return m;
}

char *cli_read_file(const char *path, size_t *len) {
    // a regular file or a pipe, at most CLI_READ_MAX bytes (/dev/zero never ends)
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISFIFO(sb.st_mode)) {
        fprintf(stderr, "molt: error: %s: not a regular file or pipe\n", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "molt: error: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (n + 1 < cap)
            break;
        if (cap > CLI_READ_MAX) {
            fprintf(stderr, "molt: error: %s: more than the %zu bytes allowed\n", path,
                    (size_t)CLI_READ_MAX);
            free(b);
            fclose(f);
            return NULL;
        }
        cap *= 2;
        char *nb = realloc(b, cap);
        if (!nb) {
            free(b);
            b = NULL;
        }
        b = nb;
    }
    bool err = ferror(f);
    fclose(f);
    if (!b || err) {
        fprintf(stderr, "molt: error: %s: cannot read file\n", path);
        free(b);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

// ----------------------------------------------------------------------------
// progress bar: "label [#####.....]  45%  1234/2741 tok  15.2k tok/s  ETA 3s"

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_human_bytes(char *b, size_t n, double bytes, int decimals) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int         i = 0;
    while (bytes >= 1024 && i < 4)
        bytes /= 1024, i++;
    snprintf(b, n, "%.*f %s", i ? decimals : 0, bytes, u[i]);
}

void progress_start(progress *p, const char *label, const char *unit) {
    p->label = label;
    p->unit = unit;
    p->t0 = p->last = cli_now_s();
    p->tty = isatty(2);
}

static void fmt_rate(char *b, size_t n, double r) {
    if (r >= 1e6)
        snprintf(b, n, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(b, n, "%.1fk", r / 1e3);
    else
        snprintf(b, n, "%.1f", r);
}

void progress_update(int64_t done, int64_t total, void *user) {
    progress *p = user;
    double t = cli_now_s();
    if (!p->tty || (t - p->last < 0.1 && done < total))
        return;
    p->last = t;
    double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
    double frac = total > 0 ? (double)done / (double)total : 0;
    char bar[31], rs[32];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fmt_rate(rs, sizeof rs, rate);
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r%s [%s] %3.0f%%  %lld/%lld %s  %s %s/s  ETA %.0fs   ", p->label, bar,
            frac * 100, (long long)done, (long long)total, p->unit, rs, p->unit, eta);
    fflush(stderr);
}

void progress_end(progress *p, int64_t done) {
    double el = cli_now_s() - p->t0;
    char rs[32];
    fmt_rate(rs, sizeof rs, el > 0 ? (double)done / el : 0);
    if (p->tty)
        fprintf(stderr, "\r\033[K");
    fprintf(stderr, "%s: %lld %s in %.2fs (%s %s/s)\n", p->label, (long long)done, p->unit, el,
            rs, p->unit);
}

// data/kv_task.json in the working directory, else beside the binary
// (build/molt → ../data/kv_task.json; installed, bin/molt → ../share/molt/kv_task.json)
const char *cli_default_kv_task(char *buf, size_t cap) {
    if (access("data/kv_task.json", R_OK) == 0)
        return "data/kv_task.json";
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *sl = strrchr(exe, '/');
        if (sl) {
            *sl = 0;
            snprintf(buf, cap, "%s/../data/kv_task.json", exe);
            if (access(buf, R_OK) == 0)
                return buf;
            snprintf(buf, cap, "%s/../share/molt/kv_task.json", exe);
            if (access(buf, R_OK) == 0)
                return buf;
        }
    }
    return "data/kv_task.json";
}
