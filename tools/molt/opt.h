/*
 * opt.h — the declarative option table of every molt command and its one
 * parser. A command describes its options once (cli_optspec rows ending with
 * CLI_END); cli_parse reads argv into the rows' destinations and `molt CMD
 * --help` is generated from the same rows, so usage text and parser agree.
 *
 *     long n = 256;
 *     const char *out = NULL;
 *     const cli_optspec opts[] = {
 *         CLI_INT("--max-new", "-n", "N", "tokens to generate", n, 0, 1 << 30),
 *         CLI_STR("--out", "-o", "DIR", "output directory", out),
 *         CLI_END,
 *     };
 *     const cli_cmd cmd = {"train", "MODEL -o DIR [options]", NULL, opts};
 *     const char *model = NULL;
 *     int rc = cli_parse(&cmd, argc, argv, &model, 1, NULL);
 *     if (rc != CLI_OK)
 *         return cli_exit_code(rc);   // 0 after --help, 2 after a usage error
 *
 * Accepted forms: --name V, --name=V, -a V (alias), flags without a value,
 * "--" ends the options. Whole numbers and numbers are range-checked against
 * [lo, hi]; repeating a valued option is an error (a LIST collects every
 * value instead: "--data A B --data C"); an unknown option is reported with
 * the closest spelling. Errors print one "molt CMD: error: ..." line and a
 * HINT to stderr; the parser never exits.
 */
#ifndef MOLT_OPT_H
#define MOLT_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum cli_kind {
    CLI_KFLAG,  // no value; sets *dst (bool or int) to 1
    CLI_KINT,   // whole number in [lo, hi]; dst: an integer of 4 or 8 bytes
    CLI_KFLOAT, // number in [lo, hi]; dst: float or double
    CLI_KSTR,   // string; dst: const char *
    CLI_KLIST,  // one or more values, repeatable; dst: cli_list
} cli_kind;

enum {
    CLI_NONEMPTY = 1, // STR: "" is refused
};

// The values of a LIST option, pointing into argv. v is allocated by the
// parser (free(v) after use).
typedef struct cli_list {
    const char **v;
    int          n;
} cli_list;

typedef struct cli_optspec {
    const char *name;    // "--max-new"
    const char *alias;   // "-n" or NULL
    const char *meta;    // value placeholder in --help ("N"); NULL for flags
    const char *help;    // one line ('\n' continues it, indented)
    cli_kind    kind;
    void       *dst;
    size_t      size;    // sizeof *dst (INT, FLOAT, FLAG)
    double      lo, hi;  // INT / FLOAT range
    const char *choices; // STR: "a|b|c" = the only values allowed, or NULL
    const char *deflt;   // --help default: NULL = from *dst, "" = none shown, else this text
    int         flags;   // CLI_NONEMPTY
} cli_optspec;

#define CLI_ROW(n, a, m, h, k, d, lo, hi, ch, df, fl)                                              \
    {n, a, m, h, k, &(d), sizeof(d), (double)(lo), (double)(hi), ch, df, fl}
#define CLI_FLAG(n, a, h, d)              CLI_ROW(n, a, NULL, h, CLI_KFLAG, d, 0, 0, NULL, "", 0)
#define CLI_INT(n, a, m, h, d, lo, hi)    CLI_ROW(n, a, m, h, CLI_KINT, d, lo, hi, NULL, NULL, 0)
#define CLI_FLOAT(n, a, m, h, d, lo, hi)  CLI_ROW(n, a, m, h, CLI_KFLOAT, d, lo, hi, NULL, NULL, 0)
#define CLI_STR(n, a, m, h, d)            CLI_ROW(n, a, m, h, CLI_KSTR, d, 0, 0, NULL, NULL, 0)
#define CLI_LIST(n, a, m, h, d)           CLI_ROW(n, a, m, h, CLI_KLIST, d, 0, 0, NULL, "", 0)
// variants: a default text for --help (df), fixed choices "a|b|c", a non-empty string
#define CLI_INT_D(n, a, m, h, d, lo, hi, df) CLI_ROW(n, a, m, h, CLI_KINT, d, lo, hi, NULL, df, 0)
#define CLI_STR_D(n, a, m, h, d, df)      CLI_ROW(n, a, m, h, CLI_KSTR, d, 0, 0, NULL, df, 0)
#define CLI_CHOICE(n, a, m, h, d, ch)     CLI_ROW(n, a, m, h, CLI_KSTR, d, 0, 0, ch, NULL, 0)
#define CLI_STR_NE(n, a, m, h, d)                                                                  \
    CLI_ROW(n, a, m, h, CLI_KSTR, d, 0, 0, NULL, NULL, CLI_NONEMPTY)
#define CLI_END {NULL, NULL, NULL, NULL, CLI_KFLAG, NULL, 0, 0, 0, NULL, NULL, 0}

typedef struct cli_cmd {
    const char        *name;     // "generate"
    const char        *synopsis; // "MODEL [options]" (after "usage: molt NAME ")
    const char        *about;    // text printed between the synopsis and the options, or NULL
    const cli_optspec *opts;     // ends with CLI_END
    const char        *epilog;   // text printed after the options, or NULL
} cli_cmd;

typedef enum cli_status { CLI_OK = 0, CLI_HELP = 1, CLI_ERROR = 2 } cli_status;

// Parses argv[1..argc-1] (argv[0] is the command name). Positional arguments
// go to pos[0..max_pos-1] (*n_pos of them, n_pos may be NULL); more than
// max_pos is an error. -h / --help print the generated usage to stdout and
// return CLI_HELP. seen (may be NULL; one entry per row of cmd->opts) tells
// which options were given.
cli_status cli_parse(const cli_cmd *cmd, int argc, char **argv, const char **pos, int max_pos,
                     int *n_pos, bool *seen);
// 0 for CLI_OK and CLI_HELP, 2 for CLI_ERROR.
int        cli_exit_code(cli_status s);
// The generated usage text (what --help prints), with the options' defaults
// as their destinations hold them now.
void       cli_print_usage(const cli_cmd *cmd, FILE *f);
// Row index of the option called name (or alias) in cmd->opts; -1 if none.
int        cli_find(const cli_optspec *opts, const char *name);

#endif
