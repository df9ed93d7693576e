/* opt.c — see opt.h. */
#include "opt.h"

#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_OPTS = 96, DEF_LEN = 48, HELP_COL = 26, WIDTH = 100 };

static int n_opts(const cli_optspec *o) {
    int n = 0;
    while (o[n].name)
        n++;
    return n;
}

int cli_find(const cli_optspec *opts, const char *name) {
    for (int i = 0; opts[i].name; i++)
        if (!strcmp(opts[i].name, name) || (opts[i].alias && !strcmp(opts[i].alias, name)))
            return i;
    return -1;
}

int cli_exit_code(cli_status s) { return s == CLI_ERROR ? EXIT_USAGE : 0; }

// ----------------------------------------------------------------------------
// --help

static long long get_int(const cli_optspec *o) {
    if (o->size == sizeof(int32_t)) {
        int32_t v;
        memcpy(&v, o->dst, sizeof v);
        return v;
    }
    int64_t v;
    memcpy(&v, o->dst, sizeof v);
    return (long long)v;
}

static double get_float(const cli_optspec *o) {
    if (o->size == sizeof(float)) {
        float v;
        memcpy(&v, o->dst, sizeof v);
        return (double)v;
    }
    double v;
    memcpy(&v, o->dst, sizeof v);
    return v;
}

// The default as --help shows it ("" = none).
static void format_default(const cli_optspec *o, char *b, size_t n) {
    b[0] = 0;
    if (o->deflt) {
        snprintf(b, n, "%s", o->deflt);
        return;
    }
    switch (o->kind) {
    case CLI_KINT: snprintf(b, n, "%lld", get_int(o)); break;
    case CLI_KFLOAT: snprintf(b, n, "%g", get_float(o)); break;
    case CLI_KSTR: {
        const char *s = *(const char *const *)o->dst;
        if (s)
            snprintf(b, n, "%s", s);
        break;
    }
    default: break;
    }
}

static const char *meta_of(const cli_optspec *o) {
    return o->meta ? o->meta : o->choices ? o->choices : o->kind == CLI_KFLAG ? NULL : "V";
}

static int left_column(const cli_optspec *o, char *b, size_t n) {
    const char *m = meta_of(o);
    return snprintf(b, n, "  %s%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "    ",
                    o->name, m ? " " : "", m ? m : "", o->kind == CLI_KLIST ? "..." : "");
}

// Help text from the help column, wrapped at WIDTH; '\n' breaks the line too.
static void put_help(FILE *f, const char *h, const char *def) {
    char buf[1024];
    if (!def[0])
        snprintf(buf, sizeof buf, "%s", h);
    else if (strchr(def, ' '))
        snprintf(buf, sizeof buf, "%s (default: %s)", h, def);
    else
        snprintf(buf, sizeof buf, "%s (default %s)", h, def);
    int col = HELP_COL;
    bool space = false;
    for (const char *p = buf; *p;) {
        if (*p == '\n') {
            fprintf(f, "\n%*s", HELP_COL, "");
            col = HELP_COL;
            space = false;
            p++;
            continue;
        }
        size_t w = strcspn(p, " \n");
        if (col > HELP_COL && col + space + (int)w > WIDTH) {
            fprintf(f, "\n%*s", HELP_COL, "");
            col = HELP_COL;
        } else if (space) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, w, f);
        col += (int)w;
        p += w;
        space = *p == ' ';
        p += space;
    }
}

static void print_usage_with(const cli_cmd *cmd, FILE *f, char (*defs)[DEF_LEN]) {
    fprintf(f, "usage: molt %s %s\n", cmd->name, cmd->synopsis);
    if (cmd->about)
        fputs(cmd->about, f);
    fprintf(f, "options:\n");
    for (int i = 0; cmd->opts[i].name; i++) {
        const cli_optspec *o = &cmd->opts[i];
        char left[128];
        int w = left_column(o, left, sizeof left);
        fputs(left, f);
        if (w >= HELP_COL - 1)
            fprintf(f, "\n%*s", HELP_COL, "");
        else
            fprintf(f, "%*s", HELP_COL - w, "");
        put_help(f, o->help, defs[i]);
        fputc('\n', f);
    }
    fprintf(f, "  -h, --help%*sthis text\n", HELP_COL - 12, "");
    if (cmd->epilog)
        fputs(cmd->epilog, f);
}

void cli_print_usage(const cli_cmd *cmd, FILE *f) {
    int n = n_opts(cmd->opts);
    char(*defs)[DEF_LEN] = calloc((size_t)n + 1, DEF_LEN);
    if (!defs)
        return;
    for (int i = 0; i < n; i++)
        format_default(&cmd->opts[i], defs[i], DEF_LEN);
    print_usage_with(cmd, f, defs);
    free(defs);
}

// ----------------------------------------------------------------------------
// parsing

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (lb >= 64 || la >= 64)
        return 64;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static cli_status unknown(const cli_cmd *cmd, const char *name) {
    const char *best = NULL;
    size_t bd = 3;
    for (int i = 0; cmd->opts[i].name; i++) {
        size_t d = edit_distance(name, cmd->opts[i].name);
        if (d < bd) {
            bd = d;
            best = cmd->opts[i].name;
        }
    }
    if (best && bd * 3 < strlen(best))
        cli_usage_error(cmd->name, "unknown option %s (did you mean %s?)", name, best);
    else
        cli_usage_error(cmd->name, "unknown option %s", name);
    return CLI_ERROR;
}

// "a|b|c" → "a, b or c"
static void choice_list(const char *ch, char *b, size_t n) {
    size_t k = 0;
    const char *last = strrchr(ch, '|');
    for (const char *p = ch; *p && k + 5 < n; p++) {
        if (*p != '|') {
            b[k++] = *p;
        } else if (p == last) {
            memcpy(b + k, " or ", 4);
            k += 4;
        } else {
            memcpy(b + k, ", ", 2);
            k += 2;
        }
    }
    b[k] = 0;
}

static bool in_choices(const char *ch, const char *v) {
    size_t lv = strlen(v);
    for (const char *p = ch; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == lv && !strncmp(p, v, l))
            return true;
        p += l + (e != NULL);
    }
    return false;
}

// Stores val into o's destination. typed: the option as the user spelled it.
static cli_status set_value(const cli_cmd *cmd, const cli_optspec *o, const char *typed,
                            const char *val) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case CLI_KINT: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || (double)v < o->lo || (double)v > o->hi) {
            cli_usage_error(cmd->name, "%s expects a whole number in [%lld, %lld], got \"%s\"",
                            typed, (long long)o->lo, (long long)o->hi, val);
            return CLI_ERROR;
        }
        if (o->size == sizeof(int32_t)) {
            int32_t x = (int32_t)v;
            memcpy(o->dst, &x, sizeof x);
        } else {
            int64_t x = (int64_t)v;
            memcpy(o->dst, &x, sizeof x);
        }
        return CLI_OK;
    }
    case CLI_KFLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v >= o->lo && v <= o->hi)) {
            cli_usage_error(cmd->name, "%s expects a number in [%g, %g], got \"%s\"", typed, o->lo,
                            o->hi, val);
            return CLI_ERROR;
        }
        if (o->size == sizeof(float)) {
            float x = (float)v;
            memcpy(o->dst, &x, sizeof x);
        } else {
            memcpy(o->dst, &v, sizeof v);
        }
        return CLI_OK;
    }
    case CLI_KSTR:
        if (o->choices && !in_choices(o->choices, val)) {
            char b[256];
            choice_list(o->choices, b, sizeof b);
            cli_usage_error(cmd->name, "%s must be %s, got \"%s\"", typed, b, val);
            return CLI_ERROR;
        }
        if ((o->flags & CLI_NONEMPTY) && !*val) {
            cli_usage_error(cmd->name, "%s needs a non-empty %s", typed, meta_of(o));
            return CLI_ERROR;
        }
        *(const char **)o->dst = val;
        return CLI_OK;
    default: return CLI_ERROR;
    }
}

static bool list_push(cli_list *l, int argc, const char *v) {
    if (!l->v && !(l->v = calloc((size_t)argc, sizeof *l->v))) {
        fprintf(stderr, "molt: error: out of memory\n");
        return false;
    }
    l->v[l->n++] = v; // at most argc values: each is a distinct argv entry
    return true;
}

typedef struct parse_state {
    const cli_cmd *cmd;
    int            argc;
    int            list;   // the LIST option taking values now, or -1
    int            list_n; // values it got since its name
    const char    *list_typed;
} parse_state;

static cli_status end_list(parse_state *ps) {
    if (ps->list >= 0 && ps->list_n == 0) {
        cli_usage_error(ps->cmd->name, "%s needs at least one %s", ps->list_typed,
                        meta_of(&ps->cmd->opts[ps->list]));
        return CLI_ERROR;
    }
    ps->list = -1;
    return CLI_OK;
}

cli_status cli_parse(const cli_cmd *cmd, int argc, char **argv, const char **pos, int max_pos,
                     int *n_pos, bool *seen) {
    int n = n_opts(cmd->opts), np = 0;
    char defs[MAX_OPTS][DEF_LEN];
    bool given[MAX_OPTS] = {false};
    if (n > MAX_OPTS) {
        fprintf(stderr, "molt %s: error: too many options in the table\n", cmd->name);
        return CLI_ERROR;
    }
    for (int i = 0; i < n; i++) // before parsing: --help shows the defaults
        format_default(&cmd->opts[i], defs[i], DEF_LEN);
    parse_state ps = {cmd, argc, -1, 0, NULL};
    bool opts_done = false;
    cli_status st = CLI_OK;
    for (int i = 1; i < argc && st == CLI_OK; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || !a[1]) {
            if (ps.list >= 0) {
                if (!list_push(cmd->opts[ps.list].dst, argc, a))
                    return CLI_ERROR;
                ps.list_n++;
            } else if (np < max_pos) {
                pos[np++] = a;
            } else {
                cli_usage_error(cmd->name, "unexpected argument \"%s\"", a);
                st = CLI_ERROR;
            }
            continue;
        }
        if ((st = end_list(&ps)) != CLI_OK)
            break;
        if (!strcmp(a, "--")) {
            opts_done = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_usage_with(cmd, stdout, defs);
            return CLI_HELP;
        }
        char name[128];
        const char *eq = strchr(a, '='), *val = NULL;
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(name, sizeof name, "%.*s", (int)(nl < sizeof name ? nl : sizeof name - 1), a);
        if (eq)
            val = eq + 1;
        int k = cli_find(cmd->opts, name);
        if (k < 0) {
            st = unknown(cmd, name);
            break;
        }
        const cli_optspec *o = &cmd->opts[k];
        if (given[k] && o->kind != CLI_KLIST && o->kind != CLI_KFLAG) {
            cli_usage_error(cmd->name, "%s is given twice", o->name);
            st = CLI_ERROR;
            break;
        }
        given[k] = true;
        if (o->kind == CLI_KFLAG) {
            if (val) {
                cli_usage_error(cmd->name, "%s takes no value", name);
                st = CLI_ERROR;
            } else if (o->size == sizeof(bool)) {
                *(bool *)o->dst = true;
            } else {
                *(int *)o->dst = 1;
            }
            continue;
        }
        if (o->kind == CLI_KLIST) {
            if (val) {
                if (!list_push(o->dst, argc, val))
                    return CLI_ERROR;
            } else {
                ps.list = k;
                ps.list_n = 0;
                ps.list_typed = a;
            }
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                cli_usage_error(cmd->name, "%s needs a value (%s %s)", name, name, meta_of(o));
                st = CLI_ERROR;
                break;
            }
            val = argv[++i];
        }
        st = set_value(cmd, o, name, val);
    }
    if (st == CLI_OK)
        st = end_list(&ps);
    if (n_pos)
        *n_pos = np;
    if (seen)
        memcpy(seen, given, (size_t)n * sizeof *seen);
    return st;
}
