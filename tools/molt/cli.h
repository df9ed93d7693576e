/*
 * cli.h — shared pieces of the molt command-line tool: the option table
 * (opt.h), error reporting (one line + optional HINT, non-zero exit), the
 * progress bar. The CLI uses only the public header include/molt.h.
 */
#ifndef MOLT_CLI_H
#define MOLT_CLI_H

#include "molt.h"
#include "opt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

// Exit codes: 0 ok, 1 runtime failure, 2 usage error.
enum { EXIT_USAGE = 2 };

// prints "molt: error: WHAT: MESSAGE" → 1 (just MESSAGE when it already names WHAT or a file in it)
int  cli_fail(molt_ctx *ctx, const char *what);
// True when an error message starts with what (a path) or a path inside it: no prefix needed.
bool cli_msg_names(const char *msg, const char *what);
int  cli_usage_error(const char *cmd, const char *fmt, ...);  // prints usage error → 2
// Parses one whole number of a list option (--pairs 10,20), or prints an error and returns false.
bool cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
// Loads a model, printing the error on failure.
molt_model *cli_load_model(molt_ctx *ctx, const char *path, const char *tokenizer);
// The default key-value task file (buf: scratch for the path).
const char *cli_default_kv_task(char *buf, size_t cap);
// Reads a whole file (malloc'd, NUL-terminated); NULL + message on failure.
// a regular file or a pipe of at most CLI_READ_MAX bytes; prints the error
#define CLI_READ_MAX ((size_t)1 << 31)
char *cli_read_file(const char *path, size_t *len);

typedef struct progress {
    const char *label;
    double      t0, last;
    bool        tty;
    const char *unit;
} progress;
void progress_start(progress *p, const char *label, const char *unit);
void progress_update(int64_t done, int64_t total, void *p); // molt_progress_fn
void progress_end(progress *p, int64_t done);

int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_heads(int argc, char **argv);

#endif
