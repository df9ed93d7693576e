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
// A comma list of whole numbers in [lo, hi] (option opt's value s) → v[*n], at most max of
// them, every item non-empty; or prints the usage error ("... (expected LIKE)", "... takes at
// most MAX UNIT") and returns false.
bool cli_int_list(const char *cmd, const char *opt, const char *s, long lo, long hi, long *v,
                  int max, int *n, const char *like, const char *unit);
// --device: where the models of the command run (molt_ctx_set_device; the
// default is $MOLT_DEVICE, else cpu)
#define CLI_DEVICE(d)                                                                              \
    CLI_STR_D("--device", NULL, "D", "where the model runs: cpu, cuda or cuda:N", d,              \
              "$MOLT_DEVICE, else cpu")
// --matmul: GEMM precision (molt_ctx_set_matmul)
#define CLI_MATMUL(d)                                                                              \
    CLI_CHOICE("--matmul", NULL, "fp32|tf32|bf16",                                                 \
               "GEMM precision on a GPU (tf32: tensor cores, ~8x faster, 10-bit products;\n"       \
               "bf16: inputs rounded to bf16, fp32 accumulation, 2x tf32).\n"                     \
               "CPU: fp32, except bf16 with --weights bf16 on an AVX512-BF16 CPU: prefill "        \
               "products round their inputs to bf16 (vdpbf16ps, ~1.45x faster)",                  \
               d, "fp32|tf32|bf16")
// Sets ctx's device (NULL: $MOLT_DEVICE, else cpu), printing the error; false on failure.
bool cli_set_device(molt_ctx *ctx, const char *device);
// Loads a model, printing the error on failure.
molt_model *cli_load_model(molt_ctx *ctx, const char *path, const char *tokenizer);
// The default key-value task file (buf: scratch for the path).
const char *cli_default_kv_task(char *buf, size_t cap);
// Reads a whole file (malloc'd, NUL-terminated); NULL + message on failure.
// a regular file or a pipe of at most CLI_READ_MAX bytes; prints the error
#define CLI_READ_MAX ((size_t)1 << 31)
char *cli_read_file(const char *path, size_t *len);

// Data parallel (cli_dist.c, include/molt_dist.h): begin before the device is set (MPI_Init
// under mpirun or with force: --dist; "cuda" becomes this rank's cuda:<local rank>), comm after
// it (an MPI or NCCL communicator set on ctx; rank 0 prints the ranks and the memory per rank
// for n_params floats), end last: rc ≠ 0 on a rank of several stops the whole job
// (MPI_Abort, message naming the rank), else MPI_Finalize. A plain run: all three do nothing.
typedef struct cli_dist {
    bool       on;
    molt_comm *comm;
    char       devbuf[32];
} cli_dist;
bool cli_dist_begin(cli_dist *d, bool force, const char **device);
bool cli_dist_comm(cli_dist *d, molt_ctx *ctx, int64_t n_params, int32_t batch);
int  cli_dist_rank(const cli_dist *d);
int  cli_dist_end(cli_dist *d, int rc);
// --dist: run as a rank even when not launched by mpirun (mpirun sets it by itself)
#define CLI_DIST(d)                                                                                \
    CLI_FLAG("--dist", NULL, "data parallel over MPI ranks (automatic under mpirun)", d)

// seconds on the monotonic clock
double cli_now_s(void);
// bytes as "512 B", "1.50 KiB", … "2.00 GiB" (decimals after the point above bytes)
void cli_human_bytes(char *b, size_t n, double bytes, int decimals);

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
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_reason(int argc, char **argv);
int cmd_mathgen(int argc, char **argv);

#endif
