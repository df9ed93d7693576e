/*
 * cmd_heads.c — `molt heads MODEL [options]`: which heads retrieve
 * (Gather-and-Aggregate, ALGORITHMS.md §6). Every attention head (and every
 * recurrent head of a Llamba / hybrid model) is ablated in turn — its input
 * columns of o_proj / out_proj zeroed, then restored — and ranked by the drop
 * in key-value retrieval accuracy on the same seeded prompts, next to the
 * sharpness of its mixing row at the answer position (entropy, top weight,
 * mass on the queried key / its value / newlines). Then whole layers:
 * cumulative pruning from the top and one layer at a time.
 *
 * stdout: the ranked table and the layer study; --json: only the ranking as a
 * JSON list. --out DIR adds heads.json, layers.json, ablation_heatmap.svg and
 * top_head_attention.svg. Exit codes: 0 ok, 1 runtime failure, 2 usage.
 */
#include "cli.h"
#include "jsonout.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SEEDS 64

static const char *ABOUT =
    "  Ranks every attention head (and every recurrent head of Llamba / hybrid models) by\n"
    "  the drop in key-value retrieval accuracy when the head is ablated (its input columns\n"
    "  of o_proj / out_proj zeroed), with the sharpness of its mixing row at the answer\n"
    "  position; then layer pruning from the top and single-layer ablation.\n";

// The library's message with a hint that fits this command.
static int heads_fail(molt_ctx *ctx, const char *what, const char *task) {
    const char *msg = molt_last_error(ctx);
    // an error in the task file, or an I/O error, names its own file: no "MODEL: FILE: ..."
    if (molt_last_status(ctx) == MOLT_ERR_IO || cli_msg_names(msg, what) ||
        cli_msg_names(msg, task))
        fprintf(stderr, "molt: error: %s\n", msg);
    else
        fprintf(stderr, "molt: error: %s: %s\n", what, msg);
    if (strstr(msg, "cannot score") || strstr(msg, "cannot tell"))
        fprintf(stderr, "HINT: the probe scores each value with the tokens it gets after the "
                        "prompt; give a task whose values this tokenizer keeps apart "
                        "(--kv-task FILE)\n");
    else if (strstr(msg, "no attention heads") || strstr(msg, "no heads"))
        fprintf(stderr, "HINT: molt heads takes Llama teachers, Llamba students and hybrids\n");
    else if (molt_last_status(ctx) == MOLT_ERR_IO)
        fprintf(stderr, "HINT: check that the path exists and is readable\n");
    return 1;
}

static bool parse_seeds(const char *s, uint64_t *seeds, int *n) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        long v;
        if (*n >= MAX_SEEDS) {
            cli_usage_error("heads", "--seeds takes at most %d seeds", MAX_SEEDS);
            return false;
        }
        if (!cli_int("heads", "--seeds", t, 0, 1L << 62, &v))
            return false;
        seeds[(*n)++] = (uint64_t)v;
    }
    if (*n == 0)
        cli_usage_error("heads", "--seeds needs a list like 1,2,3");
    return *n > 0;
}

// ----------------------------------------------------------------------------
// output

// The ranking as a JSON list (heads.json, and stdout with --json); false when out of memory.
static bool write_heads_json(FILE *f, const molt_head_score *s, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(a, o);
        jo_int(o, "layer", s[i].layer);
        jo_int(o, "head", s[i].head);
        jo_str(o, "kind", s[i].recurrent ? "recurrent" : "attention");
        jo_num(o, "accuracy_drop", "%.6f", s[i].accuracy_drop);
        const char *k[] = {"accuracy", "drop_min", "drop_max", "entropy", "top_weight",
                           "mass_key", "mass_value", "mass_newline"};
        const double v[] = {s[i].accuracy, s[i].drop_min,   s[i].drop_max,   s[i].entropy,
                            s[i].top_weight, s[i].mass_key, s[i].mass_value, s[i].mass_newline};
        for (int j = 0; j < 8; j++)
            jo_num(o, k[j], "%.6f", v[j]);
    }
    return jo_print(f, a, true);
}

static void fmt_or_dash(char *b, size_t n, double x) {
    if (isfinite(x))
        snprintf(b, n, "%.3f", x);
    else
        snprintf(b, n, "-");
}

static void print_table(const char *model, const molt_head_score *s, int n, int top, int pairs,
                        int examples, const uint64_t *seeds, int n_seeds) {
    double base = n ? s[0].accuracy + s[0].accuracy_drop : 0;
    printf("%s: %d heads; %d pairs x %d examples; seed%s", model, n, pairs, examples,
           n_seeds > 1 ? "s " : " ");
    for (int i = 0; i < n_seeds; i++)
        printf("%s%llu", i ? "," : "", (unsigned long long)seeds[i]);
    printf("; accuracy of the whole model %.3f\n", base);
    printf("%4s %5s %4s %-5s %8s %7s %13s %8s %6s %6s %6s %7s\n", "rank", "layer", "head", "kind",
           "accuracy", "drop", "drop min..max", "entropy", "top", "key", "value", "newline");
    for (int i = 0; i < n && (top <= 0 || i < top); i++) {
        char e[16], t[16], k[16], v[16], nl[16], sp[32];
        fmt_or_dash(e, sizeof e, s[i].entropy);
        fmt_or_dash(t, sizeof t, s[i].top_weight);
        fmt_or_dash(k, sizeof k, s[i].mass_key);
        fmt_or_dash(v, sizeof v, s[i].mass_value);
        fmt_or_dash(nl, sizeof nl, s[i].mass_newline);
        snprintf(sp, sizeof sp, "%.3f..%.3f", s[i].drop_min, s[i].drop_max);
        printf("%4d %5d %4d %-5s %8.3f %7.3f %13s %8s %6s %6s %6s %7s\n", i + 1, s[i].layer,
               s[i].head, s[i].recurrent ? "ssm" : "attn", s[i].accuracy, s[i].accuracy_drop,
               n_seeds > 1 ? sp : "", e, t, k, v, nl);
    }
    // the median drop (s is sorted by drop), to read the top heads against
    if (n > 0)
        printf("median drop %.3f (entropy in nats; key/value/newline: mass of the mixing row "
               "at the answer position)\n",
               n % 2 ? s[n / 2].accuracy_drop
                     : 0.5 * (s[n / 2 - 1].accuracy_drop + s[n / 2].accuracy_drop));
}

static void print_layers(const double *pruned, const double *single, int L) {
    printf("\nlayers (a skipped block passes the residual stream through); whole model %.3f\n",
           pruned[0]);
    printf("%5s %20s %22s\n", "layer", "without this layer", "without layers l..last");
    for (int l = L - 1; l >= 0; l--)
        printf("%5d %20.3f %22.3f\n", l, single[l], pruned[L - l]);
}

static bool write_layers_json(FILE *f, const double *pruned, const double *single, int L,
                              int pairs, int examples, const uint64_t *seeds, int n_seeds) {
    cJSON *o = cJSON_CreateObject(), *sd = NULL, *pr = NULL, *sl = NULL;
    jo_int(o, "pairs", pairs);
    jo_int(o, "examples", examples);
    cJSON_AddItemToObject(o, "seeds", sd = cJSON_CreateArray());
    for (int i = 0; i < n_seeds; i++) { // exact: a double holds only 53 bits
        char b[24];
        snprintf(b, sizeof b, "%llu", (unsigned long long)seeds[i]);
        cJSON_AddItemToArray(sd, cJSON_CreateRaw(b));
    }
    jo_int(o, "n_layer", L);
    jo_num(o, "base_accuracy", "%.6f", pruned[0]);
    cJSON_AddItemToObject(o, "pruned_from_top", pr = cJSON_CreateArray());
    for (int k = 0; k <= L; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(pr, e);
        jo_int(e, "removed", k);
        jo_int(e, "kept_layers", L - k);
        jo_num(e, "accuracy", "%.6f", pruned[k]);
    }
    cJSON_AddItemToObject(o, "single_layer", sl = cJSON_CreateArray());
    for (int l = 0; l < L; l++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(sl, e);
        jo_int(e, "layer", l);
        jo_num(e, "accuracy", "%.6f", single[l]);
    }
    return jo_print(f, o, true);
}

// ---- SVG

static void svg_text_escaped(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\n': fputs("\\n", f); break;
        case ' ': fputs("\xC2\xB7", f); break; // middle dot: spaces stay visible
        default:
            if (c < 0x20)
                fprintf(f, "\\x%02x", c);
            else
                fputc(c, f);
        }
    }
}

// Colour of a drop relative to the largest |drop|: white → red (positive),
// white → blue (negative).
static void drop_colour(char *b, size_t n, double x, double mx) {
    double t = mx > 0 ? fmin(1, fabs(x) / mx) : 0;
    int lo = (int)lround(255 * (1 - t)), mid = (int)lround(255 - 150 * t);
    if (x >= 0)
        snprintf(b, n, "rgb(255,%d,%d)", mid, lo);
    else
        snprintf(b, n, "rgb(%d,%d,255)", lo, mid);
}

static bool write_heatmap(const char *path, const molt_head_score *s, int n,
                          const molt_model_info *info) {
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    int L = info->n_layer;
    bool kinds[2] = {false, false};
    int cols[2] = {0, 0};
    double mx = 0;
    for (int i = 0; i < n; i++) {
        kinds[s[i].recurrent != 0] = true;
        int *c = &cols[s[i].recurrent != 0];
        *c = *c > s[i].head + 1 ? *c : s[i].head + 1;
        if (isfinite(s[i].accuracy_drop))
            mx = fmax(mx, fabs(s[i].accuracy_drop));
    }
    const double cw = 44, ch = 26, ox = 50, oy = 70;
    double pw[2] = {kinds[0] ? cols[0] * cw + 60 : 0, kinds[1] ? cols[1] * cw + 60 : 0};
    double W = ox + pw[0] + pw[1] + 20, H = oy + L * ch + 60;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
               "font-family='sans-serif' font-size='11'>\n<rect width='100%%' height='100%%' "
               "fill='white'/>\n",
            fmax(W, 640), H);
    fprintf(f, "<text x='10' y='20' font-size='14'>Key-value accuracy drop when a head is "
               "zeroed (red: accuracy falls)</text>\n");
    double px = ox;
    for (int k = 0; k < 2; k++) {
        if (!kinds[k])
            continue;
        fprintf(f, "<text x='%.0f' y='%.0f' font-size='12'>%s heads</text>\n", px, oy - 28,
                k ? "recurrent" : "attention");
        for (int h = 0; h < cols[k]; h++)
            fprintf(f, "<text x='%.1f' y='%.0f' text-anchor='middle'>H%d</text>\n",
                    px + h * cw + cw / 2, oy - 8, h);
        for (int l = 0; l < L; l++)
            fprintf(f, "<text x='%.0f' y='%.1f' text-anchor='end'>L%d</text>\n", px - 6,
                    oy + l * ch + ch / 2 + 4, l);
        for (int i = 0; i < n; i++) {
            if ((s[i].recurrent != 0) != k)
                continue;
            char col[32];
            drop_colour(col, sizeof col, s[i].accuracy_drop, mx);
            double x = px + s[i].head * cw, y = oy + s[i].layer * ch;
            fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' "
                       "stroke='#999'><title>L%d H%d: accuracy %.3f, drop %.3f</title></rect>\n",
                    x, y, cw, ch, col, s[i].layer, s[i].head, s[i].accuracy, s[i].accuracy_drop);
            fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='10'>%.2f</text>\n",
                    x + cw / 2, y + ch / 2 + 4, s[i].accuracy_drop);
        }
        px += pw[k];
    }
    fprintf(f, "<text x='10' y='%.0f'>colour scale: |drop| up to %.3f (white = no change); "
               "cells are layer x head, 0-based</text>\n</svg>\n",
            oy + L * ch + 30, mx);
    return fclose(f) == 0;
}

static bool write_rows_svg(const char *path, molt_ctx *ctx, const molt_model *m,
                           const molt_head_rows *r, const molt_head_score *top, int pairs,
                           uint64_t seed) {
    const molt_tokenizer *tok = molt_model_tokenizer(m);
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    int n = r->n_tokens, R = r->n_rows;
    const double tw = 16, bar_h = 160, cell_h = 18, ox = 90, oy = 60;
    double y_heat = oy + bar_h + 10, y_lab = y_heat + R * cell_h + 6;
    double W = ox + n * tw + 20, H = y_lab + 110;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
               "font-family='sans-serif' font-size='11'>\n<rect width='100%%' height='100%%' "
               "fill='white'/>\n",
            fmax(W, 560), H);
    char *ans = NULL;
    size_t al = 0;
    molt_detokenize(ctx, tok, r->answer_ids, (size_t)r->n_answer, &ans, &al);
    fprintf(f, "<text x='10' y='20' font-size='14'>layer %d %s head %d (accuracy drop %.3f): "
               "mixing weights of the last %d query positions</text>\n",
            top->layer, top->recurrent ? "recurrent" : "attention", top->head, top->accuracy_drop,
            R);
    fprintf(f, "<text x='10' y='38'>first probe prompt (seed %llu, %d pairs); answer '",
            (unsigned long long)seed, pairs);
    if (ans)
        svg_text_escaped(f, ans, al);
    molt_free(ans);
    fprintf(f, "'; orange = queried key, green = its value; bars: the answer position</text>\n");
    float mx = 0;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, r->weights[(size_t)(R - 1) * n + i]);
    for (int i = 0; i < n; i++) {
        bool key = i >= r->key_lo && i < r->key_hi, val = i >= r->value_lo && i < r->value_hi;
        const char *col = key ? "#e67e22" : val ? "#27ae60" : "#4a78b5";
        float w = r->weights[(size_t)(R - 1) * n + i];
        double h = mx > 0 ? bar_h * (double)(w / mx) : 0;
        fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'><title>%d: "
                   "%.4f</title></rect>\n",
                ox + i * tw + 1, oy + bar_h - h, tw - 2, h, col, i, (double)w);
    }
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='end'>max %.3f</text>\n", ox - 6, oy + 10,
            (double)mx);
    for (int k = 0; k < R; k++) {
        int t = n - R + k;
        float rm = 0;
        for (int i = 0; i < n; i++)
            rm = fmaxf(rm, r->weights[(size_t)k * n + i]);
        fprintf(f, "<text x='%.0f' y='%.1f' text-anchor='end'>query %d</text>\n", ox - 6,
                y_heat + k * cell_h + cell_h - 5, t);
        for (int i = 0; i < n; i++) {
            float w = r->weights[(size_t)k * n + i];
            int g = (int)lround(255 * (1 - (rm > 0 ? (double)(w / rm) : 0)));
            fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='rgb(%d,%d,255)'>"
                       "<title>query %d, token %d: %.4f</title></rect>\n",
                    ox + i * tw, y_heat + k * cell_h, tw, cell_h, g, g, t, i, (double)w);
        }
    }
    for (int i = 0; i < n; i++) {
        char *piece = NULL;
        size_t pl = 0;
        if (molt_detokenize(ctx, tok, &r->ids[i], 1, &piece, &pl) != MOLT_OK)
            continue;
        bool key = i >= r->key_lo && i < r->key_hi, val = i >= r->value_lo && i < r->value_hi;
        double x = ox + i * tw + tw / 2 + 4;
        fprintf(f, "<text x='%.1f' y='%.1f' transform='rotate(-90 %.1f %.1f)' text-anchor='end' "
                   "fill='%s'>",
                x, y_lab, x, y_lab, key ? "#e67e22" : val ? "#27ae60" : "#222");
        svg_text_escaped(f, piece, pl);
        fprintf(f, "</text>\n");
        molt_free(piece);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0;
}

static bool mkdir_p(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return false;
            *p = '/';
        }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

static void join_path(const char *dir, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
}

// ----------------------------------------------------------------------------

int cmd_heads(int argc, char **argv) {
    const char *model = NULL, *tokp = NULL, *kvfile = NULL, *out_dir = NULL, *seeds_arg = NULL;
    const char *device = NULL;
    long pairs = 8, examples = 200, threads = 2, top = 0, seed = 1;
    uint64_t seeds[MAX_SEEDS];
    int n_seeds = 0;
    bool json = false, quiet = false;
    const cli_optspec opts[] = {
        CLI_INT("--pairs", NULL, "N", "pairs per prompt", pairs, 1, 100000),
        CLI_INT("--examples", NULL, "N", "prompts per seed", examples, 1, 1L << 24),
        CLI_INT("--seed", NULL, "S", "probe seed", seed, 0, 1L << 62),
        CLI_STR("--seeds", NULL, "S1,S2,...",
                "several probe seeds: the ranking uses the mean drop and reports\n"
                "its spread (min..max) over the seeds",
                seeds_arg),
        CLI_STR_D("--kv-task", NULL, "F", "the task", kvfile,
                  "data/kv_task.json, or beside the binary"),
        CLI_INT_D("--top", NULL, "N", "table rows to print", top, 1, 1L << 30, "all"),
        CLI_FLAG("--json", NULL, "print only the ranking, as a JSON list", json),
        CLI_STR_NE("--out", "-o", "DIR",
                   "also write DIR/heads.json, DIR/layers.json,\n"
                   "DIR/ablation_heatmap.svg and DIR/top_head_attention.svg",
                   out_dir),
        CLI_STR("--tokenizer", NULL, "F", "tokenizer file", tokp),
        CLI_INT("--threads", NULL, "N", "threads", threads, 1, 256),
        CLI_DEVICE(device),
        CLI_FLAG("--quiet", "-q", "no progress bar", quiet),
        CLI_END,
    };
    const cli_cmd cmd = {"heads", "MODEL [options]", ABOUT, opts, NULL};
    bool seen[sizeof opts / sizeof opts[0]];
    cli_status cs = cli_parse(&cmd, argc, argv, &model, 1, NULL, seen);
    if (cs != CLI_OK)
        return cli_exit_code(cs);
    bool have_seed = seen[cli_find(opts, "--seed")];
    if (seeds_arg && !parse_seeds(seeds_arg, seeds, &n_seeds))
        return EXIT_USAGE;
    if (!model)
        return cli_usage_error("heads", "no MODEL given");
    if (have_seed && n_seeds)
        return cli_usage_error("heads", "give --seed S or --seeds LIST, not both");
    if (!n_seeds)
        seeds[n_seeds++] = (uint64_t)seed;
    char kbuf[4200];
    const char *task = kvfile ? kvfile : cli_default_kv_task(kbuf, sizeof kbuf);
    if (out_dir && !mkdir_p(out_dir)) {
        fprintf(stderr, "molt: error: %s: cannot create the directory: %s\n", out_dir,
                strerror(errno));
        return 1;
    }

    molt_ctx *ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, (int)threads);
    if (!cli_set_device(ctx, device)) {
        molt_ctx_free(ctx);
        return 1;
    }
    molt_model *m = cli_load_model(ctx, model, tokp);
    molt_head_score *sc = NULL;
    int32_t n = 0;
    double *pruned = NULL, *single = NULL;
    molt_head_rows rows = {0};
    int rc = 1;
    if (!m)
        goto out;
    molt_model_info info;
    molt_model_get_info(m, &info);
    progress pb;
    progress_start(&pb, "heads", "ex");
    if (quiet)
        pb.tty = false;
    if (molt_heads_rank(ctx, m, task, (int32_t)pairs, (int32_t)examples, seeds, n_seeds,
                        progress_update, &pb, &sc, &n) != MOLT_OK) {
        if (pb.tty)
            fprintf(stderr, "\r\033[K");
        heads_fail(ctx, model, task);
        goto out;
    }
    if (!quiet)
        progress_end(&pb, (int64_t)n_seeds * examples * (n + 2));
    bool layers = !json || out_dir;
    if (layers) {
        pruned = calloc((size_t)info.n_layer + 1, sizeof *pruned);
        single = calloc((size_t)info.n_layer + 1, sizeof *single);
        if (!pruned || !single) {
            fprintf(stderr, "molt: error: out of memory\n");
            goto out;
        }
        progress_start(&pb, "layers", "ex");
        if (quiet)
            pb.tty = false;
        if (molt_layers_ablate(ctx, m, task, (int32_t)pairs, (int32_t)examples, seeds, n_seeds,
                               progress_update, &pb, pruned, single) != MOLT_OK) {
            heads_fail(ctx, model, task);
            goto out;
        }
        if (!quiet)
            progress_end(&pb, (int64_t)n_seeds * examples * (2 * info.n_layer + 1));
    }
    if (json) {
        if (!write_heads_json(stdout, sc, n)) {
            fprintf(stderr, "molt: error: heads: out of memory\n");
            goto out;
        }
    } else {
        print_table(model, sc, n, (int)top, (int)pairs, (int)examples, seeds, n_seeds);
        print_layers(pruned, single, info.n_layer);
    }
    if (out_dir) {
        char path[4400];
        FILE *f;
        bool ok = true;
        join_path(out_dir, "heads.json", path, sizeof path);
        if ((f = fopen(path, "w"))) {
            ok = write_heads_json(f, sc, n);
            ok = fclose(f) == 0 && ok;
        } else {
            ok = false;
        }
        if (ok) {
            join_path(out_dir, "layers.json", path, sizeof path);
            if ((f = fopen(path, "w"))) {
                ok = write_layers_json(f, pruned, single, info.n_layer, (int)pairs,
                                       (int)examples, seeds, n_seeds);
                ok = fclose(f) == 0 && ok;
            } else {
                ok = false;
            }
        }
        if (ok) {
            join_path(out_dir, "ablation_heatmap.svg", path, sizeof path);
            ok = write_heatmap(path, sc, n, &info);
        }
        if (!ok) {
            fprintf(stderr, "molt: error: %s: cannot write: %s\n", path, strerror(errno));
            goto out;
        }
        if (molt_heads_rows(ctx, m, task, (int32_t)pairs, seeds[0], sc[0].layer, sc[0].head,
                            sc[0].recurrent, 3, &rows) != MOLT_OK) {
            heads_fail(ctx, model, task);
            goto out;
        }
        join_path(out_dir, "top_head_attention.svg", path, sizeof path);
        if (!write_rows_svg(path, ctx, m, &rows, &sc[0], (int)pairs, seeds[0])) {
            fprintf(stderr, "molt: error: %s: cannot write: %s\n", path, strerror(errno));
            goto out;
        }
        if (!json)
            printf("\nwrote %s/{heads.json, layers.json, ablation_heatmap.svg, "
                   "top_head_attention.svg}\n",
                   out_dir);
    }
    rc = 0;
out:
    molt_head_rows_free(&rows);
    molt_free(sc);
    free(pruned);
    free(single);
    molt_model_free(m);
    molt_ctx_free(ctx);
    return rc;
}
