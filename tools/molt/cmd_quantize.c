/*
 * cmd_quantize.c — `molt quantize MODEL -o DIR [--type q8_0] [--overwrite]`:
 * writes MODEL with its weight matrices as q8_0 (config.json +
 * model.safetensors + tokenizer, docs/FORMATS.md), which molt loads and runs
 * as q8_0. Written atomically (molt_model_save). Refused, with nothing
 * written: -o naming MODEL's own directory (compared by real path), and a DIR
 * that already holds a model unless --overwrite.
 */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// the directory a model path lives in (itself for a directory), resolved
static bool model_dir_real(const char *path, char *out) {
    char buf[PATH_MAX];
    if (!realpath(path, buf))
        return false;
    struct stat sb;
    if (stat(buf, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        char *slash = strrchr(buf, '/');
        if (slash == buf)
            slash[1] = 0;
        else if (slash)
            *slash = 0;
    }
    memcpy(out, buf, strlen(buf) + 1);
    return true;
}

int cmd_quantize(int argc, char **argv) {
    const char *src = NULL, *dst = NULL, *tokp = NULL, *type = "q8_0";
    bool overwrite = false;
    const cli_optspec opts[] = {
        CLI_STR("--out", "-o", "DIR", "the directory to write", dst),
        CLI_CHOICE("--type", NULL, "q8_0", "quantized type of the weight matrices", type, "q8_0"),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file (for a llama2.c .bin)", tokp),
        CLI_FLAG("--overwrite", NULL, "replace a model already in DIR", overwrite),
        CLI_END,
    };
    const cli_cmd cmd = {"quantize", "MODEL -o DIR [options]",
                         "Writes MODEL with its weight matrices (q/k/v/o, MLP, in/out_proj, head) "
                         "in blocks of 32 int8\nwith an f16 scale (q8_0); embeddings, norms, "
                         "biases and recurrent parameters stay f32.\n",
                         opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &src, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!src || !dst)
        return cli_usage_error("quantize", src ? "no -o DIR given" : "no MODEL given");
    char in_real[PATH_MAX], out_real[PATH_MAX], cfg[PATH_MAX + 16];
    if (model_dir_real(src, in_real) && realpath(dst, out_real) && !strcmp(in_real, out_real)) {
        fprintf(stderr, "molt: error: -o %s is where the input %s lives (%s): writing there "
                        "would replace it\nHINT: give another output directory\n",
                dst, src, out_real);
        return 1;
    }
    snprintf(cfg, sizeof cfg, "%s/config.json", dst);
    struct stat sb;
    if (!overwrite && stat(cfg, &sb) == 0) {
        fprintf(stderr, "molt: error: %s already holds a model (config.json)\nHINT: --overwrite "
                        "replaces it, or give another directory\n",
                dst);
        return 1;
    }
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = cli_load_model(ctx, src, tokp);
    int rc = 1;
    if (m) {
        if (molt_model_save(ctx, m, dst, type) != MOLT_OK) {
            cli_fail(ctx, dst);
        } else {
            molt_model_info in;
            molt_model_get_info(m, &in);
            fprintf(stderr, "wrote %s (%s, %lld parameters, weight matrices %s)\n", dst, in.arch,
                    (long long)in.n_params, type);
            rc = 0;
        }
    }
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
