/*
 * report.c — the distillation report: per-stage losses, tokens and time; the
 * stage-1 distance before/after; teacher vs student loss on held-out text;
 * decode speed; recurrent-state bytes vs the teacher's KV bytes at 1k/8k/32k;
 * as JSON, a text table, and SVG plots (loss curves; teacher attention beside
 * the student's mixing matrix, before and after distillation).
 */
#include "distill/report.h"

#include "io/fileio.h"
#include "io/json.h"
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void distill_capture_heatmaps(distill_result *R, const float *A, const float *M, int T,
                              int which) {
    int n = T < HEAT_N ? T : HEAT_N;
    float **dst = which == 0 ? &R->heat_before : &R->heat_after;
    if (!*dst)
        *dst = molt__calloc((size_t)HEAT_N * HEAT_N, sizeof(float));
    if (!R->heat_teacher)
        R->heat_teacher = molt__calloc((size_t)HEAT_N * HEAT_N, sizeof(float));
    if (!*dst || !R->heat_teacher)
        return;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            (*dst)[i * HEAT_N + j] = M[(size_t)i * T + j];
            R->heat_teacher[i * HEAT_N + j] = A[(size_t)i * T + j];
        }
}

// ----------------------------------------------------------------------------
// SVG helpers (plain text, no dependencies)

static void svg_heat(FILE *f, const float *x, int n, double ox, double oy, double cell,
                     const char *title) {
    // diverging scale around 0 (student matrices have negative entries):
    // blue = positive, red = negative, white = 0, normalised by max |x|
    double amax = 1e-12;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            amax = fmax(amax, fabs((double)x[i * HEAT_N + j]));
    fprintf(f, "<text x='%.0f' y='%.0f' font-size='13'>%s</text>\n", ox, oy - 6, title);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double v = (double)x[i * HEAT_N + j] / amax;
            int c = (int)(255 * (1 - fmin(1, sqrt(fabs(v))))); // sqrt: small weights stay visible
            fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='rgb(%d,%d,%d)'/>\n",
                    ox + j * cell, oy + i * cell, cell, cell, v < 0 ? 255 : c, c, v < 0 ? c : 255);
        }
}

static molt_status write_heatmaps(molt_ctx *ctx, const char *path, const distill_result *R,
                                  int n) {
    // every report file: written whole or not at all (fileio.h's streaming atomic writer)
    fio_atomic  rf;
    molt_status st = fio_atomic_open(ctx, path, &rf);
    if (st != MOLT_OK)
        return st;
    FILE  *f = rf.fp;
    double cell = 5, w = n * cell;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
               "font-family='sans-serif'>\n",
            3 * w + 80, w + 60);
    char t[128];
    snprintf(t, sizeof t, "teacher attention (layer %d, head 0)", R->heat_layer);
    svg_heat(f, R->heat_teacher, n, 10, 30, cell, t);
    svg_heat(f, R->heat_before, n, w + 40, 30, cell, "student mixer, before");
    svg_heat(f, R->heat_after, n, 2 * w + 70, 30, cell, "student mixer, after");
    fprintf(f, "</svg>\n");
    return fio_atomic_commit(ctx, &rf);
}

// A plot's file begun (atomically, as every report file): three panels W × H side by side
// (one per stage), pad around each
static molt_status svg_open(molt_ctx *ctx, const char *path, fio_atomic *rf, double W, double H,
                            double pad) {
    molt_status st = fio_atomic_open(ctx, path, rf);
    if (st == MOLT_OK)
        fprintf(rf->fp, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
                        "font-family='sans-serif' font-size='11'>\n",
                3 * (W + pad) + pad, H + 2 * pad);
    return st;
}

static void svg_panel(FILE *f, double ox, double oy, double W, double H, const char *title) {
    fprintf(f, "<text x='%.0f' y='%.0f' font-size='12'>%s</text>\n", ox, oy - 10, title);
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#888'/>\n",
            ox, oy, W, H);
}

static molt_status write_curves(molt_ctx *ctx, const char *path, const distill_result *R,
                                bool rkl) {
    const double W = 300, H = 200, pad = 40;
    fio_atomic   rf;
    molt_status  st = svg_open(ctx, path, &rf, W, H, pad);
    if (st != MOLT_OK)
        return st;
    FILE *f = rf.fp;
    const char *const names[3] = {"stage 1: matrix orientation (Frobenius)",
                                  "stage 2: hidden-state alignment (L2)",
                                  rkl ? "stage 3: distillation (reverse KL)"
                                      : "stage 3: distillation (soft CE)"};
    for (int k = 0; k < 3; k++) {
        const distill_stage_result *s = &R->stages[k];
        double ox = pad + k * (W + pad), oy = pad;
        svg_panel(f, ox, oy, W, H, names[k]);
        if (s->n_curve < 2)
            continue;
        float lo = s->curve[0], hi = s->curve[0];
        for (int i = 0; i < s->n_curve; i++) {
            lo = s->curve[i] < lo ? s->curve[i] : lo;
            hi = s->curve[i] > hi ? s->curve[i] : hi;
        }
        bool logy = lo > 0 && hi / lo > 10; // stage 1 spans orders of magnitude
        double ylo = logy ? log10((double)lo) : (double)lo, yhi = logy ? log10((double)hi) : (double)hi;
        if (yhi - ylo < 1e-9)
            yhi = ylo + 1e-9;
        fprintf(f, "<text x='%.0f' y='%.0f'>%.4g</text><text x='%.0f' y='%.0f'>%.4g%s</text>\n",
                ox + 2, oy + 12, (double)hi, ox + 2, oy + H - 4, (double)lo,
                logy ? "  (log scale)" : "");
        // raw loss (light) and its exponential moving average (dark)
        for (int pass = 0; pass < 2; pass++) {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='%s' points='",
                    pass ? "#c33" : "#f2b8b8", pass ? "1.5" : "0.8");
            double ema = (double)s->curve[0];
            double a = fmin(0.3, fmax(0.005, 20.0 / s->n_curve)); // window ≈ 5% of the steps
            int stride = s->n_curve > 2000 ? s->n_curve / 2000 : 1;
            for (int i = 0; i < s->n_curve; i++) {
                ema = pass ? (1 - a) * ema + a * (double)s->curve[i] : (double)s->curve[i];
                if (i % stride && i != s->n_curve - 1)
                    continue;
                double y = logy ? log10(fmax(ema, (double)lo)) : ema;
                fprintf(f, "%.1f,%.1f ", ox + W * i / (s->n_curve - 1),
                        oy + H - H * (y - ylo) / (yhi - ylo));
            }
            fprintf(f, "'/>\n");
        }
        fprintf(f, "<text x='%.0f' y='%.0f'>%lld tokens</text>\n", ox + W - 90,
                oy + H + 14, (long long)s->tokens);
    }
    fprintf(f, "</svg>\n");
    return fio_atomic_commit(ctx, &rf);
}

// ----------------------------------------------------------------------------

static double decode_speed(const molt_model *m) {
    molt_seq *s = NULL;
    if (molt_seq_new(NULL, m, 257, &s) != MOLT_OK)
        return 0;
    int32_t t = m->cfg.bos >= 0 ? m->cfg.bos : 1;
    double t0 = molt__now();
    for (int i = 0; i < 256; i++) {
        molt_seq_feed(NULL, s, &t, 1, 0, NULL);
        t = (t * 31 + 7) % m->cfg.vocab;
    }
    double dt = molt__now() - t0;
    molt_seq_free(s);
    return 256 / dt;
}

// A JSON number rounded to a printf precision (fmt), or null for NaN / inf (JSON has neither).
static void json_num(cJSON *o, const char *key, const char *fmt, double v) {
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char b[64];
    snprintf(b, sizeof b, fmt, v);
    cJSON_AddNumberToObject(o, key, strtod(b, NULL));
}

static cJSON *json_obj(cJSON *parent, const char *key) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(parent, key, o);
    return o;
}

// A stage's timeline in up to TL_N windows of equal steps (this run's): each window's tokens/s
// (its steps' tokens over its wall time), mean loss and largest device memory; returns how many.
#define TL_N 50
typedef struct tl_win {
    int64_t step; // the window's last step (1-based, this run)
    double  tok_s, loss, gb;
} tl_win;

static int timeline(const distill_stage_result *s, tl_win *w) {
    int n = s->n_curve < TL_N ? s->n_curve : TL_N;
    if (!s->sec || !s->dev_gb)
        return 0;
    for (int k = 0; k < n; k++) {
        int    a = (int)((int64_t)s->n_curve * k / n), b = (int)((int64_t)s->n_curve * (k + 1) / n);
        double loss = 0, gb = 0, t = (double)s->sec[b - 1] - (a ? (double)s->sec[a - 1] : 0.0);
        for (int i = a; i < b; i++) {
            loss += (double)s->curve[i];
            gb = fmax(gb, (double)s->dev_gb[i]);
        }
        w[k] = (tl_win){b, (double)(b - a) * (double)s->step_tokens / fmax(t, 1e-9),
                        loss / (b - a), gb};
    }
    return n;
}

// timeline.svg: per stage, tokens/s over the run's windows (blue, from 0) and, on a GPU, the
// device memory in use (green, from 0): flat lines are a steady run
static molt_status write_timeline(molt_ctx *ctx, const char *path, const distill_result *R) {
    const double W = 300, H = 160, pad = 40;
    fio_atomic   rf;
    molt_status  st = svg_open(ctx, path, &rf, W, H, pad);
    if (st != MOLT_OK)
        return st;
    FILE *f = rf.fp;
    for (int k = 0; k < 3; k++) {
        tl_win w[TL_N];
        int    nw = timeline(&R->stages[k], w);
        double ox = pad + k * (W + pad), oy = pad, smax = 0, gmax = 0;
        char   title[64];
        snprintf(title, sizeof title, "stage %d: tokens/s%s", k + 1,
                 nw > 0 && w[0].gb > 0 ? " and GPU memory" : "");
        svg_panel(f, ox, oy, W, H, title);
        if (nw < 2)
            continue;
        for (int i = 0; i < nw; i++)
            smax = fmax(smax, w[i].tok_s), gmax = fmax(gmax, w[i].gb);
        for (int pass = 0; pass < (gmax > 0 ? 2 : 1); pass++) {
            double top = pass ? gmax : smax;
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='",
                    pass ? "#2a2" : "#36c");
            for (int i = 0; i < nw; i++)
                fprintf(f, "%.1f,%.1f ", ox + W * i / (nw - 1),
                        oy + H - 0.9 * H * (pass ? w[i].gb : w[i].tok_s) / fmax(top, 1e-12));
            fprintf(f, "'/>\n");
        }
        fprintf(f, "<text x='%.0f' y='%.0f' fill='#36c'>%.0f tok/s</text>\n", ox + 2,
                oy + 0.1 * H - 2, smax);
        if (gmax > 0)
            fprintf(f, "<text x='%.0f' y='%.0f' fill='#2a2'>%.1f GB</text>\n", ox + W - 60,
                    oy + 0.1 * H - 2, gmax);
        fprintf(f, "<text x='%.0f' y='%.0f'>0</text><text x='%.0f' y='%.0f'>%d steps</text>\n",
                ox + 2, oy + H - 4, ox + W - 70, oy + H + 14, R->stages[k].n_curve);
    }
    fprintf(f, "</svg>\n");
    return fio_atomic_commit(ctx, &rf);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double distill_stage_final_loss(const distill_stage_result *s) {
    if (s->n_curve == 0) // finished in an earlier run (its saved value) or never run (NaN)
        return s->skipped ? s->last_loss : (double)NAN;
    int k = s->n_curve / 10 > 0 ? s->n_curve / 10 : 1;
    double a = 0;
    for (int i = s->n_curve - k; i < s->n_curve; i++)
        a += (double)s->curve[i];
    return a / k;
}

molt_status distill_write_report(molt_ctx *ctx, const molt_distill_opts *o,
                                 const molt_model *teacher, const molt_model *student,
                                 const token_stream *ev, distill_result *R) {
    char path[4200];
    molt_eval_result te = {0}, se = {0};
    te.loss = se.loss = (double)NAN;
    if (ev && ev->n > 2) {
        int W = o->seq_len;
        molt_status st = molt_eval_tokens(ctx, teacher, ev->ids, ev->n, W, NULL, NULL, &te);
        if (st == MOLT_OK)
            st = molt_eval_tokens(ctx, student, ev->ids, ev->n, W, NULL, NULL, &se);
        if (st != MOLT_OK)
            return st;
    }
    molt_kv_result tk = {0}, sk = {0};
    if (o->kv_task) {
        molt_status st = molt_eval_kv(ctx, teacher, o->kv_task, o->kv_pairs, o->kv_examples, 1, &tk);
        if (st == MOLT_OK)
            st = molt_eval_kv(ctx, student, o->kv_task, o->kv_pairs, o->kv_examples, 1, &sk);
        if (st != MOLT_OK)
            return st;
    }
    double tspeed = decode_speed(teacher), sspeed = decode_speed(student);
    int64_t kv = model_kv_bytes_per_token(&teacher->cfg), state = model_state_bytes(&student->cfg);
    int64_t skv = model_kv_bytes_per_token(&student->cfg); // kept heads only
    molt_model_info sinfo;
    molt_model_get_info(student, &sinfo); // real parameters (no padding)
    // JSON, through cJSON (strings escaped; made, written and deleted here)
    js_init_hooks();
    cJSON *root = cJSON_CreateObject(), *x, *y;
    x = json_obj(root, "student");
    cJSON_AddStringToObject(x, "arch", model_arch_name(student->cfg.arch));
    cJSON_AddStringToObject(x, "mixer", o->student ? o->student : "llamba");
    cJSON_AddNumberToObject(x, "d_state", o->d_state);
    cJSON_AddStringToObject(x, "init", o->init ? o->init : "transfer");
    if (o->student && strcmp(o->student, "llamba")) { // (Llamba students: no key, as before)
        cJSON_AddStringToObject(x, "mixer", o->student);
        if (!strcmp(o->student, "mamba3-mimo"))
            cJSON_AddNumberToObject(x, "mimo_rank", o->mimo_rank);
    }
    cJSON_AddNumberToObject(x, "params", (double)sinfo.n_params);
    cJSON_AddItemToObject(x, "kept_heads", y = cJSON_CreateArray());
    for (int i = 0; i < o->n_keep; i++) {
        const int lh[2] = {o->keep_layer[i], o->keep_head[i]};
        cJSON_AddItemToArray(y, cJSON_CreateIntArray(lh, 2));
    }
    cJSON_AddNumberToObject(x, "kv_bytes_per_token",
                            (double)model_kv_bytes_per_token(&student->cfg));
    cJSON_AddStringToObject(root, "data", o->n_data ? "text" : "teacher samples");
    cJSON_AddNumberToObject(root, "sampled_tokens", (double)R->sampled_tokens);
    json_num(root, "sampling_seconds", "%.1f", R->sample_seconds);
    cJSON_AddItemToObject(root, "stages", y = cJSON_CreateArray());
    for (int k = 0; k < 3; k++) {
        const distill_stage_result *s = &R->stages[k];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(y, e);
        cJSON_AddNumberToObject(e, "stage", k + 1);
        cJSON_AddNumberToObject(e, "tokens", (double)s->tokens);
        json_num(e, "seconds", "%.1f", s->seconds);
        json_num(e, "lr", "%g", o->stage_lr[k]);
        if (k == 2 && o->kd_loss && !strcmp(o->kd_loss, "rkl")) // (absent: the soft CE)
            cJSON_AddStringToObject(e, "kd_loss", "rkl");
        json_num(e, "first_loss", "%.6f", s->tokens > 0 ? s->first_loss : (double)NAN);
        // the mean of the last 10% of the steps (distill_stage_final_loss), not the last step
        json_num(e, "final_loss_mean_last10pct", "%.6f", distill_stage_final_loss(s));
        cJSON_AddBoolToObject(e, "skipped", s->skipped);
        tl_win w[TL_N];
        int    nw = timeline(s, w);
        if (nw > 0) { // throughput, loss and memory over the run, in windows of equal steps
            cJSON *a = cJSON_CreateArray();
            cJSON_AddItemToObject(e, "timeline", a);
            for (int i = 0; i < nw; i++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddItemToArray(a, t);
                cJSON_AddNumberToObject(t, "step", (double)w[i].step);
                json_num(t, "tok_per_s", "%.1f", w[i].tok_s);
                json_num(t, "loss", "%.6f", w[i].loss);
                json_num(t, "device_gb", "%.3f", w[i].gb);
            }
        }
    }
    x = json_obj(root, "stage1_frobenius_per_layer");
    json_num(x, "before", "%.5f", R->frob_before);
    json_num(x, "after", "%.5f", R->frob_after);
    if (!isnan(te.loss)) {
        x = json_obj(root, "eval");
        cJSON_AddStringToObject(x, "text", o->eval_data ? o->eval_data : "");
        cJSON_AddNumberToObject(x, "tokens", (double)te.tokens);
        json_num(x, "teacher_loss", "%.5f", te.loss);
        json_num(x, "student_loss", "%.5f", se.loss);
        json_num(x, "ratio", "%.4f", se.loss / te.loss);
        json_num(x, "teacher_ppl", "%.4f", te.ppl);
        json_num(x, "student_ppl", "%.4f", se.ppl);
    }
    if (o->kv_task) {
        x = json_obj(root, "kv_retrieval");
        cJSON_AddNumberToObject(x, "pairs", tk.pairs);
        cJSON_AddNumberToObject(x, "examples", tk.examples);
        json_num(x, "teacher", "%.4f", tk.accuracy);
        json_num(x, "student", "%.4f", sk.accuracy);
        json_num(x, "chance", "%.4f", tk.chance);
    }
    x = json_obj(root, "decode_tok_per_s");
    json_num(x, "teacher", "%.1f", tspeed);
    json_num(x, "student", "%.1f", sspeed);
    x = json_obj(root, "bytes_per_sequence");
    const char *bk[] = {"student_state", "student_1k",    "student_8k",    "student_32k",
                        "teacher_kv_1k", "teacher_kv_8k", "teacher_kv_32k"};
    const int64_t bv[] = {state,     state + skv * 1024, state + skv * 8192, state + skv * 32768,
                          kv * 1024, kv * 8192,          kv * 32768};
    for (int i = 0; i < 7; i++)
        cJSON_AddNumberToObject(x, bk[i], (double)bv[i]);
    json_num(root, "total_seconds", "%.1f", R->total_seconds);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return molt__err(ctx, MOLT_ERR_OOM, "report.json: out of memory");
    fio_join(path, sizeof path, o->out_dir, "report.json");
    fio_atomic  rf;
    molt_status st = fio_atomic_open(ctx, path, &rf);
    if (st == MOLT_OK) {
        fprintf(rf.fp, "%s\n", text);
        st = fio_atomic_commit(ctx, &rf);
    }
    cJSON_free(text);
    if (st != MOLT_OK)
        return st;
    // table
    fio_join(path, sizeof path, o->out_dir, "report.txt");
    if ((st = fio_atomic_open(ctx, path, &rf)) != MOLT_OK)
        return st;
    FILE *f = rf.fp;
    bool other = o->student && strcmp(o->student, "llamba");
    fprintf(f, "MOHAWK distillation → %s (%s%s%s, d_state %d, %s init, %d kept attention heads)\n",
            o->out_dir, model_arch_name(student->cfg.arch), other ? " of " : "",
            other ? o->student : "", o->d_state, o->init ? o->init : "transfer", o->n_keep);
    fprintf(f, "data: %s%s\n\n", o->n_data ? "text files" : "teacher samples",
            o->n_data ? "" : " (temperature 1)");
    fprintf(f, "%-28s %12s %10s %12s %14s\n", "stage", "tokens", "seconds", "first loss",
            "mean last 10%");
    static const char *const nm[3] = {"1 matrix orientation", "2 hidden-state alignment",
                                      "3 knowledge distillation"};
    for (int k = 0; k < 3; k++) {
        const distill_stage_result *s = &R->stages[k];
        fprintf(f, "%-28s %12lld %10.1f %12.5f %14.5f%s\n", nm[k], (long long)s->tokens,
                s->seconds, s->first_loss, distill_stage_final_loss(s), s->skipped ? "  (earlier run)" : "");
    }
    for (int k = 0, first = 1; k < 3; k++) { // the timeline, summed up (report.json: windows)
        tl_win w[TL_N];
        double r[TL_N];
        int    nw = timeline(&R->stages[k], w);
        if (nw < 2)
            continue;
        double gb = 0;
        for (int i = 0; i < nw; i++)
            r[i] = w[i].tok_s, gb = fmax(gb, w[i].gb);
        qsort(r, (size_t)nw, sizeof *r, cmp_double);
        fprintf(f, "%sstage %d, %d steps in %d windows: %.0f / %.0f / %.0f tok/s (min / median / "
                   "max), window loss %.5f -> %.5f",
                first ? "\n" : "", k + 1, R->stages[k].n_curve, nw, r[0], r[nw / 2], r[nw - 1],
                w[0].loss, w[nw - 1].loss);
        if (gb > 0)
            fprintf(f, ", GPU memory %.2f GB at most", gb);
        fprintf(f, "\n");
        first = 0;
    }
    fprintf(f, "\nstage-1 distance ‖M − A‖_F per layer: %.4f before, %.4f after\n", R->frob_before,
            R->frob_after);
    if (!isnan(te.loss))
        fprintf(f, "held-out loss (%s, %lld tokens): teacher %.4f (ppl %.3f), student %.4f (ppl "
                   "%.3f), ratio %.3f\n",
                o->eval_data, (long long)te.tokens, te.loss, te.ppl, se.loss, se.ppl,
                se.loss / te.loss);
    if (o->kv_task)
        fprintf(f, "key-value retrieval (%d pairs, %d prompts): teacher %.3f, student %.3f "
                   "(chance %.3f)\n",
                tk.pairs, tk.examples, tk.accuracy, sk.accuracy, tk.chance);
    fprintf(f, "decode: teacher %.0f tok/s, student %.0f tok/s (1 thread, 256 tokens)\n", tspeed,
            sspeed);
    fprintf(f, "memory per sequence: student %lld B @1k, %lld B @8k, %lld B @32k (state %lld B + "
               "%lld B/token for kept heads); teacher KV %lld B @1k, %lld B @8k, %lld B @32k\n",
            (long long)(state + skv * 1024), (long long)(state + skv * 8192),
            (long long)(state + skv * 32768), (long long)state, (long long)skv,
            (long long)(kv * 1024), (long long)(kv * 8192), (long long)(kv * 32768));
    fprintf(f, "total %.1f s\n", R->total_seconds);
    if ((st = fio_atomic_commit(ctx, &rf)) != MOLT_OK)
        return st;
    fio_join(path, sizeof path, o->out_dir, "loss_curves.svg");
    st = write_curves(ctx, path, R, o->kd_loss && !strcmp(o->kd_loss, "rkl"));
    if (st == MOLT_OK) {
        fio_join(path, sizeof path, o->out_dir, "timeline.svg");
        st = write_timeline(ctx, path, R);
    }
    if (st == MOLT_OK && R->heat_teacher && R->heat_before && R->heat_after) {
        fio_join(path, sizeof path, o->out_dir, "attention_vs_mixer.svg");
        st = write_heatmaps(ctx, path, R, o->seq_len < HEAT_N ? o->seq_len : HEAT_N);
    }
    return st;
}
