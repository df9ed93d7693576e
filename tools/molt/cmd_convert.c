/*
 * cmd_convert.c — `molt convert SRC -o DIR [--dtype f32|bf16|f16] [--format LAYOUT]`:
 * writes any model molt loads (llama2.c .bin included) as a directory
 * (config.json + model.safetensors + tokenizer) that molt reads back exactly, in
 * the layout SRC came in or another one (molt_model_save_as): hf, llamba
 * (cartesia-pytorch's LlambaLMHeadModel), molt (molt_hybrid) or mamba_ssm
 * (state-spaces' MambaLMHeadModel).
 */
#include "cli.h"

int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *dst = NULL, *tokp = NULL, *dtype = "f32", *layout = "auto";
    const cli_optspec opts[] = {
        CLI_STR("--out", "-o", "DIR", "the HF-layout directory to write", dst),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file (for a llama2.c .bin)", tokp),
        CLI_CHOICE("--dtype", NULL, "f32|bf16|f16", "weight type in model.safetensors", dtype,
                   "f32|bf16|f16"),
        CLI_CHOICE("--format", NULL, "auto|hf|llamba|molt|mamba_ssm",
                   "checkpoint layout: as SRC's (auto); hf (transformers llama /\n"
                   "mamba2); llamba (cartesia-pytorch LlambaLMHeadModel); molt\n"
                   "(molt_hybrid: any student); mamba_ssm (state-spaces MambaLMHeadModel)",
                   layout, "auto|hf|llamba|molt|mamba_ssm"),
        CLI_END,
    };
    const cli_cmd cmd = {"convert", "SRC -o DIR [options]",
                         "Writes any model molt loads (llama2.c .bin included) as config.json + "
                         "model.safetensors + tokenizer.\n",
                         opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &src, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!src || !dst)
        return cli_usage_error("convert", src ? "no -o DIR given" : "no SRC given");
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = cli_load_model(ctx, src, tokp);
    int rc = 1;
    if (m) {
        molt_status st = molt_model_save_as(ctx, m, dst, dtype, layout);
        if (st == MOLT_ERR_UNSUPPORTED) { // the layout cannot hold this model (no reader hint)
            fprintf(stderr, "molt: error: %s: %s\n", dst, molt_last_error(ctx));
        } else if (st != MOLT_OK) {
            cli_fail(ctx, dst);
        } else {
            molt_model_info in;
            molt_model_get_info(m, &in);
            fprintf(stderr, "wrote %s (%s, %lld parameters, %s, layout %s)\n", dst, in.arch,
                    (long long)in.n_params, dtype, layout);
            rc = 0;
        }
    }
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
