/*
 * main.c — the molt command-line tool: dispatches to one file per subcommand.
 */
#include "cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command COMMANDS[] = {
    {"generate", cmd_generate, "generate text from a prompt (or from BOS)"},
    {"eval", cmd_eval, "mean next-token loss / perplexity over a text file"},
    {"info", cmd_info, "architecture, parameters, weight / KV / state bytes"},
    {"convert", cmd_convert, "llama2.c (or any loadable model) -> HF safetensors directory"},
    {"distill", cmd_distill, "MOHAWK: distil a Llama teacher into a Llamba student, with a report"},
    {"train", cmd_train, "pretrain or fine-tune on text / token files, with checkpoints"},
};

static void usage(FILE *f) {
    fprintf(f, "molt %d.%d.%d — run and distil Transformers into recurrent models\n\n"
               "usage: molt COMMAND [options]   (molt COMMAND --help for details)\n\n",
            MOLT_VERSION_MAJOR, MOLT_VERSION_MINOR, MOLT_VERSION_PATCH);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
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
