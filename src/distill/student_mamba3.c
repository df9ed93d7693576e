/*
 * student_mamba3.c — a Mamba-3 student (SISO or MIMO) for a Llama teacher,
 * with the attention-transfer init (contract in distill/student.h).
 *
 * Shape: every layer a Mamba-3 mixer with one head per teacher query head
 * (P = head_dim, d_inner = n_head·head_dim = expand·d_model), ngroups = heads
 * (each head its own B and C, as each attention head has its own q and k),
 * d_state N, rope_fraction 0.5, no out norm; MIMO: rank R, chunk 64/R.
 * Embeddings, norms, MLPs, final norm and head are the teacher's
 * (model_hybrid_from_teacher); the file is a molt_hybrid of "mamba3" layers.
 * With kept heads (`molt hybridize --student mamba3`) the layers holding them
 * are hybrid layers of Mamba-3 (the same init) beside the copied kept heads.
 *
 * Attention transfer ("transfer", after the Llamba student's, mohawk
 * init_ssm_from_attention_layer): the SSM head is softmax-free attention with
 * a decay, q̃_t·k̃_s playing q_t·k_s and x playing v, so in_proj's x rows ←
 * v_proj (the GQA group's), C rows ← q_proj, B rows ← k_proj (the first
 * min(N, head_dim) state dims, the same for every MIMO rank), out_proj ←
 * o_proj; B_bias = C_bias = 0 (q̃·k̃ = the normed q·k). Mamba-3 has no learned
 * per-head A and no in_proj bias, so the decay lives in the dd_A rows and
 * dt_bias (ALGORITHMS.md §8.2): dd_A rows 0 (A = −heavy_tail(0) = −1) and
 * dd_dt rows 0, dt_bias = −4, Δ = softplus(−4) ≈ 0.018: decay exp(−Δ) ≈ 0.982
 * per token, the Llamba student's (A_log bias −4), and the state an
 * exponential moving average of v⊗k (Σ_k Δ·α^k ≈ 1). The angle rows are 0
 * (no rotation until trained). z and trap rows keep their random init (no
 * bias exists to set the gate to 1 or λ to a constant). MIMO: mimo_x =
 * mimo_o = 1/R, mimo_z = 1 (the init), so the R identical ranks give the
 * SISO student's output.
 */
#include "distill/student.h"
#include "mixers/mixer.h"

#include <math.h>
#include <string.h>

#define DT_BIAS_INIT (-4.0f) // softplus(−4) ≈ 0.018 = Δ: decay ≈ 0.982 per token

static void zero_rows(float *w, int r0, int n, int d) {
    memset(w + (size_t)r0 * d, 0, sizeof(float) * (size_t)n * d);
}

molt_status student_mamba3(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                           molt_model **out) {
    *out = NULL;
    const model_cfg *tc = &t->cfg;
    bool mimo = o->student && !strcmp(o->student, "mamba3-mimo");
    int H;
    bool transfer;
    molt_status st = student_check_heads(ctx, tc, o, "Mamba-3", &H, &transfer);
    if (st != MOLT_OK)
        return st;
    int d = tc->d_model, hd = tc->head_dim, Di = tc->n_head * hd, R = mimo ? o->mimo_rank : 1;
    if (mimo && (R < 1 || R > 16))
        return molt__err(ctx, MOLT_ERR_ARG, "MIMO rank %d (1..16)", R);
    mamba3_cfg mc = {d,  Di, H, Di / H, o->d_state, H, R, mimo, 0, mimo ? MOLT_MAX(64 / R, 1) : 64,
                     0.5f, 1e-4f, 1e-5f};
    const char *e = mamba3_cfg_check(&mc);
    if (e)
        return molt__err(ctx, MOLT_ERR_ARG, "Mamba-3 student (d_state %d): %s", o->d_state, e);
    model_cfg plan;
    memset(&plan, 0, sizeof plan);
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        plan.m3_layer[l] = mc;
    molt_model *m = NULL; // kept heads: hybrid layers of Mamba-3 ‖ those heads
    st = student_from_plan(ctx, t, o, LAYER_MAMBA3, &plan, &m);
    if (st != MOLT_OK || !transfer) {
        *out = m;
        return st;
    }
    m3_rows_cfg rc = mamba3_rows_of(&mc);
    int N = mc.N, G = mc.G, nb = N < hd ? N : hd, grp = tc->n_head / tc->n_kv_head;
    for (int l = 0; l < tc->n_layer; l++) {
        const layer_weights *tw = &t->layers[l];
        const mamba3_weights *w = &m->layers[l].m3;
        float *in = (float *)(uintptr_t)w->in_proj;
        for (int h = 0; h < H; h++) {
            int kv = h / grp;
            memcpy(in + ((size_t)m3_col_x(&rc) + (size_t)h * hd) * d,
                   tw->wv + (size_t)kv * hd * d, sizeof(float) * (size_t)hd * d);
            for (int r = 0; r < R; r++)
                for (int n = 0; n < nb; n++) {
                    size_t o_bc = (((size_t)r * G + h) * N + n) * d; // head h is group h
                    memcpy(in + (size_t)m3_col_B(&rc) * d + o_bc,
                           tw->wk + ((size_t)kv * hd + n) * d, sizeof(float) * (size_t)d);
                    memcpy(in + (size_t)m3_col_C(&rc) * d + o_bc,
                           tw->wq + ((size_t)h * hd + n) * d, sizeof(float) * (size_t)d);
                }
        }
        zero_rows(in, m3_col_dt(&rc), 2 * H, d); // dd_dt, dd_A
        zero_rows(in, m3_col_ang(&rc), rc.S, d);
        memset((float *)(uintptr_t)w->B_bias, 0, sizeof(float) * (size_t)H * R * N);
        memset((float *)(uintptr_t)w->C_bias, 0, sizeof(float) * (size_t)H * R * N);
        model_fill_const((float *)(uintptr_t)w->dt_bias, (size_t)H, DT_BIAS_INIT);
        memcpy((float *)(uintptr_t)w->out_proj, tw->wo, sizeof(float) * (size_t)d * Di);
    }
    *out = m;
    return MOLT_OK;
}
