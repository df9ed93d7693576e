/*
 * cmd_serve.c — `molt serve MODEL [--host H] [--port P] [--slots N] [--ctx N] [--queue N]
 * [--max-body BYTES] [--timeout S] [--cache-mb MB] [--prefill-chunk N] [--max-n N] [--max-tokens N]
 * [--weights ...] [--kv f32|f16] [--device D] [--threads N] [--tokenizer F] [--name NAME]`.
 * An OpenAI-compatible HTTP server (serve.h lists its parts). Loads the model, starts the
 * engine thread and libmicrohttpd, prints "molt serve: listening on http://HOST:PORT" (the
 * real port with --port 0), serves until SIGINT / SIGTERM, then stops: new and queued requests
 * get 503, running ones end at once (finish_reason "length") and are given up to 5 s to send
 * their last bytes, then connections close; exit 0.
 */
#include "cli.h"
#include "serve.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *tokp = NULL, *weights = NULL, *device = NULL, *name = NULL;
    const char *kvt = NULL;
    const char *host = "127.0.0.1";
    long port = 8080, slots = 8, ctx_len = 0, queue = 64, threads = 2, max_n = 4, max_tok = 256;
    long max_body = 1 << 20, prefill_chunk = 256;
    double timeout = 600, cache_mb = 256;
    const cli_optspec opts[] = {
        CLI_STR("--host", NULL, "H", "address to listen on", host),
        CLI_INT("--port", NULL, "P", "TCP port (0: any free one, printed)", port, 0, 65535),
        CLI_INT("--slots", NULL, "N", "sequences decoded together (the batch)", slots, 1, 1024),
        CLI_INT_D("--ctx", NULL, "N", "tokens per slot (prompt + completion)", ctx_len, 0,
                  1L << 24, "min(model's, 2048)"),
        CLI_INT("--queue", NULL, "N", "requests waiting for a slot before 503", queue, 0, 1 << 16),
        CLI_INT("--max-body", NULL, "BYTES", "largest request body (413 beyond)", max_body, 64,
                1L << 30),
        CLI_FLOAT("--timeout", NULL, "S", "a request's whole time limit, queue included", timeout,
                  0.1, 1e6),
        CLI_FLOAT("--cache-mb", NULL, "MB", "prompt-state cache budget; 0 = off", cache_mb, 0,
                  1e6),
        CLI_INT("--prefill-chunk", NULL, "N",
                "prompt tokens prefilled between two decode steps; 0 = a whole prompt",
                prefill_chunk, 0, 1L << 24),
        CLI_INT_D("--max-n", NULL, "N", "largest n (choices per request)", max_n, 1, 1024,
                  "min(4, --slots)"),
        CLI_INT("--max-tokens", NULL, "N", "max_tokens when a request gives none", max_tok, 1,
                1L << 24),
        CLI_STR_D("--name", NULL, "NAME", "model id in responses and /v1/models", name,
                  "MODEL's last path part"),
        CLI_STR("--tokenizer", NULL, "F",
                "tokenizer file (tokenizer.json / tokenizer.bin / tokenizer.model)", tokp),
        CLI_INT("--threads", NULL, "N", "threads of the engine", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_CHOICE("--weights", NULL, "f32|bf16|f16|q8_0",
                   "type of the matrices decoding reads (as molt generate)", weights,
                   "f32|bf16|f16|q8_0"),
        CLI_CHOICE("--kv", NULL, "f32|f16",
                   "element type of the slots' KV caches (as molt generate)", kvt, "f32|f16"),
        CLI_END,
    };
    const cli_cmd cmd = {
        "serve", "MODEL [options]",
        "OpenAI-compatible HTTP server: POST /v1/completions, /v1/chat/completions (stream:\n"
        "  true: server-sent events), GET /v1/models, /health, /metrics. Continuous batching\n"
        "  over --slots state slots; a prompt-state cache reuses prefixes. Stops on SIGINT/TERM.\n"
        "  MODEL  HF directory (config.json + safetensors) or llama2.c .bin\n",
        opts, NULL};
    bool seen[sizeof opts / sizeof opts[0]] = {0};
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, seen);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    if (!model)
        return cli_usage_error("serve", "no MODEL given");
    if (max_n > slots && seen[cli_find(opts, "--max-n")])
        return cli_usage_error("serve", "--max-n %ld exceeds --slots %ld", max_n, slots);
    if (max_n > slots)
        max_n = slots;
    // the signals are taken by sigwait below: block them before any thread starts
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    srv s;
    memset(&s, 0, sizeof s);
    s.ctx = molt_ctx_new();
    molt_ctx_set_threads(s.ctx, (int)threads);
    if (!cli_set_device(s.ctx, device)) {
        molt_ctx_free(s.ctx);
        return 1;
    }
    s.model = cli_load_model(s.ctx, model, tokp);
    int rc = 1;
    if (!s.model)
        goto out;
    if ((weights && molt_model_set_weight_dtype(s.ctx, s.model, weights) != MOLT_OK) ||
        (kvt && molt_model_set_kv_dtype(s.ctx, s.model, kvt) != MOLT_OK)) {
        cli_fail(s.ctx, model);
        goto out;
    }
    s.tok = molt_model_tokenizer(s.model);
    if (!s.tok) {
        fprintf(stderr, "molt serve: error: the model has no tokenizer (HINT: --tokenizer F)\n");
        goto out;
    }
    molt_model_info info;
    molt_model_get_info(s.model, &info);
    if (ctx_len == 0)
        ctx_len = info.max_seq < 2048 ? info.max_seq : 2048;
    if (ctx_len > info.max_seq) {
        rc = cli_usage_error("serve", "--ctx %ld exceeds the model's %d positions", ctx_len,
                             info.max_seq);
        goto out;
    }
    const char *base = strrchr(model, '/');
    size_t bl = strlen(base ? base + 1 : model);
    char auto_name[256];
    snprintf(auto_name, sizeof auto_name, "%s", base && bl ? base + 1 : model);
    s.cfg = (serve_cfg){.host = host, .model_path = model, .model_name = name ? name : auto_name,
                        .port = (int)port, .slots = (int)slots, .ctx = (int)ctx_len,
                        .queue = (int)queue, .threads = (int)threads, .max_n = (int)max_n,
                        .prefill_chunk = (int)prefill_chunk,
                        .default_max_tokens = (int)max_tok, .max_body = (size_t)max_body,
                        .timeout_s = timeout, .cache_bytes = (size_t)(cache_mb * 1048576.0)};
    s.vocab = info.vocab;
    s.bos = molt_tokenizer_bos(s.tok);
    s.eos = molt_tokenizer_eos(s.tok);
    s.chat_kind = srv_chat_detect(model);
    if (molt_slots_new(s.ctx, s.model, (int32_t)slots, (int32_t)ctx_len, &s.slots) != MOLT_OK) {
        cli_fail(s.ctx, NULL);
        goto out;
    }
    if (s.cfg.cache_bytes && !(s.cache = srv_cache_new(s.cfg.cache_bytes))) {
        fprintf(stderr, "molt serve: error: out of memory\n");
        goto out;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_cond_init(&s.cv_work, NULL);
    if (srv_engine_start(&s)) {
        fprintf(stderr, "molt serve: error: cannot start the engine thread\n");
        goto out_sync;
    }
    if (srv_http_start(&s)) {
        srv_engine_stop(&s);
        goto out_sync;
    }
    fprintf(stderr,
            "molt serve: %s (%s, %d slots of %d tokens, %.1f MB of state, chat template %s, "
            "prompt cache %.0f MB)\n",
            s.cfg.model_name, info.arch, s.cfg.slots, s.cfg.ctx,
            (double)molt_slots_state_bytes(s.slots) / 1048576.0, srv_chat_name(s.chat_kind),
            cache_mb);
    fprintf(stderr, "molt serve: listening on http://%s:%d\n", host, srv_http_port(&s));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "molt serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_engine_stop(&s);
    srv_http_drain(&s, 5.0); // the ended streams send their last events and [DONE]
    srv_http_stop(&s);
    rc = 0;
out_sync:
    pthread_cond_destroy(&s.cv);
    pthread_cond_destroy(&s.cv_work);
    pthread_mutex_destroy(&s.mu);
out:
    srv_cache_free(s.cache);
    molt_slots_free(s.slots);
    molt_model_free(s.model);
    molt_ctx_free(s.ctx);
    return rc;
}
