/*
 * main.c — the molt command-line tool: dispatches to one file per subcommand.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Debian's OpenBLAS 0.3.21 detects AMD Zen 4 as Haswell and runs its AVX2 sgemm
// kernel; its AVX-512 (SkylakeX) kernel is ~1.8x faster there (measured:
// 456 vs 249 GFLOP/s on 2 cores, docs/BENCHMARKS.md). OpenBLAS reads
// OPENBLAS_CORETYPE only when it loads, so on an AVX-512 CPU with the variable
// unset the tool sets it and re-executes itself once. MOLT_NO_CORETYPE=1
// disables this.
static void prefer_avx512_blas(char **argv) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE") || getenv("MOLT_NO_CORETYPE"))
        return;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
        return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv); // only returns on failure: carry on as we are
#else
    (void)argv;
#endif
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command COMMANDS[] = {
    {"generate", cmd_generate, "generate text from a prompt (or from BOS)"},
    {"eval", cmd_eval, "mean next-token loss / perplexity over a text file"},
    {"info", cmd_info, "architecture, parameters, weight / KV / state bytes"},
    {"bench", cmd_bench, "how fast a model runs here: prefill and batched decode tok/s"},
    {"convert", cmd_convert, "llama2.c (or any loadable model) -> HF safetensors directory"},
    {"quantize", cmd_quantize, "weight matrices -> q8_0 (int8 blocks): a quarter of the bytes"},
    {"distill", cmd_distill, "MOHAWK: distil a Llama teacher into a Llamba student, with a report"},
    {"hybridize", cmd_distill, "retrieval-aware hybrid: keep chosen heads as attention, distil the rest"},
    {"train", cmd_train, "pretrain or fine-tune on text / token files, with checkpoints"},
    {"heads", cmd_heads, "rank attention heads by key-value retrieval ablation (G&A heads)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"reason", cmd_reason, "many sampled chains of thought per problem: voted accuracy, pass@k"},
    {"mathgen", cmd_mathgen, "arithmetic problems with step-by-step solutions (GSM8K format)"},
};

static void usage(FILE *f) {
    fprintf(f, "molt %d.%d.%d — run and distil Transformers into recurrent models\n\n"
               "usage: molt COMMAND [options]   (molt COMMAND --help for details)\n\n",
            MOLT_VERSION_MAJOR, MOLT_VERSION_MINOR, MOLT_VERSION_PATCH);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
    prefer_avx512_blas(argv);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("molt %d.%d.%d\n", MOLT_VERSION_MAJOR, MOLT_VERSION_MINOR, MOLT_VERSION_PATCH);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "molt: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
