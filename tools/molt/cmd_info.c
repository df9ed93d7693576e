/*
 * cmd_info.c — `molt info MODEL [--json]`: architecture, parameter count,
 * bytes of weights, KV-cache bytes per token, recurrent-state bytes per sequence.
 */
#include "cli.h"
#include "jsonout.h"


static void human(char *b, size_t n, double bytes) { cli_human_bytes(b, n, bytes, 2); }

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *tokp = NULL;
    bool json = false;
    const cli_optspec opts[] = {
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file", tokp),
        CLI_FLAG("--json", NULL, "print the numbers as one JSON object", json),
        CLI_END,
    };
    const cli_cmd cmd = {"info", "MODEL [options]",
                         "Architecture, parameters, bytes of weights, KV cache per token and "
                         "recurrent state per sequence.\n",
                         opts, NULL};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, NULL);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!model)
        return cli_usage_error("info", "no MODEL given");
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = cli_load_model(ctx, model, tokp);
    if (!m) {
        molt_ctx_free(ctx);
        return 1;
    }
    molt_model_info in;
    molt_model_get_info(m, &in);
    const molt_tokenizer *tok = molt_model_tokenizer(m);
    static const int ctxs[] = {1024, 8192, 32768};
    if (json) {
        cJSON *o = cJSON_CreateObject(), *sb = NULL;
        jo_str(o, "model", model);
        jo_str(o, "arch", in.arch);
        const char *ik[] = {"n_layer", "d_model",  "vocab",     "d_ff",
                            "n_head",  "n_kv_head", "head_dim", "d_state",
                            "ssm_heads", "attn_heads_with_kv", "max_seq"};
        const int iv[] = {in.n_layer, in.d_model,   in.vocab,     in.d_ff,
                          in.n_head,  in.n_kv_head, in.head_dim,  in.d_state,
                          in.ssm_heads, in.n_attn_heads_kept, in.max_seq};
        for (size_t i = 0; i < sizeof iv / sizeof iv[0]; i++)
            jo_int(o, ik[i], iv[i]);
        jo_int(o, "n_params", (long long)in.n_params);
        jo_int(o, "weight_bytes", (long long)in.weight_bytes);
        jo_int(o, "kv_bytes_per_token", (long long)in.kv_bytes_per_token);
        jo_int(o, "state_bytes", (long long)in.state_bytes);
        jo_int(o, "tokenizer_vocab", tok ? molt_tokenizer_vocab(tok) : 0);
        cJSON_AddItemToObject(o, "sequence_bytes", sb = cJSON_CreateObject());
        for (int i = 0; i < 3; i++) {
            char k[16];
            snprintf(k, sizeof k, "%d", ctxs[i]);
            jo_int(sb, k, (long long)(in.state_bytes + in.kv_bytes_per_token * ctxs[i]));
        }
        if (!jo_print(stdout, o, false)) {
            molt_model_free(m);
            molt_ctx_free(ctx);
            fprintf(stderr, "molt: error: info: out of memory\n");
            return 1;
        }
    } else {
        char b1[32], b2[32], b3[32];
        human(b1, sizeof b1, (double)in.weight_bytes);
        human(b2, sizeof b2, (double)in.kv_bytes_per_token);
        human(b3, sizeof b3, (double)in.state_bytes);
        printf("model            %s\n", model);
        printf("architecture     %s\n", in.arch);
        printf("layers           %d\n", in.n_layer);
        printf("d_model          %d\n", in.d_model);
        printf("vocab            %d%s\n", in.vocab, tok ? "" : " (no tokenizer)");
        if (in.d_ff)
            printf("d_ff             %d\n", in.d_ff);
        if (in.n_head)
            printf("attention        %d query heads, %d kv heads, head_dim %d (%d heads hold a KV "
                   "cache)\n",
                   in.n_head, in.n_kv_head, in.head_dim, in.n_attn_heads_kept);
        if (in.d_state)
            printf("recurrent        %d heads, d_state %d\n", in.ssm_heads, in.d_state);
        printf("context          %d\n", in.max_seq);
        printf("parameters       %lld\n", (long long)in.n_params);
        printf("weights          %s (fp32)\n", b1);
        printf("KV cache         %s per token\n", b2);
        printf("recurrent state  %s per sequence\n", b3);
        for (int i = 0; i < 3; i++) {
            human(b1, sizeof b1, (double)(in.state_bytes + in.kv_bytes_per_token * ctxs[i]));
            printf("memory @ %-6d   %s per sequence\n", ctxs[i], b1);
        }
    }
    molt_model_free(m);
    molt_ctx_free(ctx);
    return 0;
}
