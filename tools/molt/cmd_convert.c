/*
 * cmd_convert.c — `molt convert SRC -o DIR [--dtype f32|bf16|f16]`: writes any
 * model molt loads (llama2.c .bin included) as an HF-layout directory
 * (config.json + model.safetensors + tokenizer) that molt reads back exactly.
 */
#include "cli.h"

#include <string.h>

static const char *USAGE = "usage: molt convert SRC -o DIR [--tokenizer F] [--dtype f32|bf16|f16]\n";

int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *dst = NULL, *tokp = NULL, *dtype = "f32", *v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "-o", "--out", &v)) {
            if (!v)
                return cli_usage_error("convert", "-o needs a directory");
            dst = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--tokenizer", &v)) {
            if (!v)
                return cli_usage_error("convert", "--tokenizer needs a file");
            tokp = v;
        } else if (cli_opt(argc, argv, &i, NULL, "--dtype", &v)) {
            if (!v || (strcmp(v, "f32") && strcmp(v, "bf16") && strcmp(v, "f16")))
                return cli_usage_error("convert", "--dtype must be f32, bf16 or f16");
            dtype = v;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("convert", "unknown option %s", a);
        } else if (!src) {
            src = a;
        } else {
            return cli_usage_error("convert", "unexpected argument \"%s\"", a);
        }
    }
    if (!src || !dst)
        return cli_usage_error("convert", src ? "no -o DIR given" : "no SRC given");
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = cli_load_model(ctx, src, tokp);
    int rc = 1;
    if (m) {
        if (molt_model_save(ctx, m, dst, dtype) != MOLT_OK) {
            cli_fail(ctx, dst);
        } else {
            molt_model_info in;
            molt_model_get_info(m, &in);
            fprintf(stderr, "wrote %s (%s, %lld parameters, %s)\n", dst, in.arch,
                    (long long)in.n_params, dtype);
            rc = 0;
        }
    }
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
