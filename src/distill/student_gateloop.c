/*
 * student_gateloop.c — a GateLoop student for a Llama teacher (molt_hybrid
 * whose every layer's mixer is "gateloop", mixers/gl_mixer.h): one GateLoop
 * head per teacher query head, head dim = the teacher's head_dim;
 * embeddings, norms, MLPs, final norm and head copied from the teacher
 * (model_hybrid_from_teacher).
 *
 * Attention transfer ("transfer"): GateLoop's surrogate attention score is
 *   Re(q̃_t·k̃_s·Π_{r=s+1..t} a_r),
 * and RoPE attention's pre-softmax score (HF rotate_half pairs (i, i+hd/2),
 * frequency f_i) is
 *   Re(conj(q̃_t)·k̃_s·e^{−i·f_i·(t−s)}) / √hd,     q̃_i = q[i] + i·q[i+hd/2].
 * So with the pair (i, i+hd/2) of the teacher as GateLoop pair i (dims 2i,
 * 2i+1), q's second component negated (the conjugate), k as is, a constant
 * transition of phase −f_i and magnitude 1, the student's mixing matrix is
 * the teacher's pre-softmax score matrix times the scale of q (tests/
 * test_gateloop.c checks this on stories260K). The magnitude starts at
 * γ = 0.98 per token instead (a_bias = logit(0.98); the data-dependent rows of
 * the transition start at 0), and q is scaled by (1 − γ)/√hd: the teacher's
 * 1/√hd, times 1 − γ so that a row of unit scores sums to 1 as a softmax row
 * does (Σ_s γ^(t−s) → 1/(1 − γ)) — the surrogate attention has no softmax to
 * normalise it. (On stories260K with 12.8k/12.8k/25.6k stage tokens, held-out
 * loss 2.33 with this scale, 3.48 with q at the teacher's 1/√hd.) v ← v_proj
 * (GQA group), out_proj ← o_proj, and the gate starts at ≈ 1 (its rows 0,
 * g_bias = 1.2785: silu(1.2785) ≈ 1).
 * "random": the mixer's own random init (mx_gateloop.c).
 *
 * With kept heads (`molt hybridize --student gateloop`) the layers holding
 * them are hybrid layers of GateLoop (the same init) beside the copied heads.
 */
#include "distill/mohawk.h"
#include "distill/student.h"
#include "mixers/mixer.h"

#include <math.h>
#include <string.h>

#define GL_DECAY_INIT 0.98
#define GL_GATE_ONE   1.278464542761f // silu(x) ≈ 1

molt_status mohawk_student_gateloop(molt_ctx *ctx, const molt_model *t, int n_heads,
                                    const char *init, const int32_t *keep_layer,
                                    const int32_t *keep_head, int n_keep, uint64_t seed,
                                    molt_model **out) {
    *out = NULL;
    const model_cfg *tc = &t->cfg;
    if (tc->arch != ARCH_LLAMA)
        return molt__err(ctx, MOLT_ERR_ARG, "the teacher must be a Llama model (got %s)",
                         model_arch_name(tc->arch));
    int hd = tc->head_dim, Di = tc->n_head * hd, H = n_heads > 0 ? n_heads : tc->n_head;
    bool transfer = !init || !strcmp(init, "transfer");
    if (!transfer && strcmp(init, "random"))
        return molt__err(ctx, MOLT_ERR_ARG, "init \"%s\" (transfer or random)", init);
    if (transfer && H != tc->n_head)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "attention transfer needs one student head per teacher query head (%d, "
                         "got %d): use --init random",
                         tc->n_head, H);
    if (Di % H || (Di / H) % 2)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "a GateLoop student needs d_inner %d split into %d heads of an even "
                         "head dim (q/k dims pair into complex numbers)",
                         Di, H);
    if (transfer && (hd % 2 || tc->n_kv_head <= 0 || !t->rope_cos))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "this teacher's attention cannot be transferred");
    model_cfg plan;
    memset(&plan, 0, sizeof plan);
    // the molt_hybrid format always carries an ssm_cfg block: a valid one, unused
    model_cfg_set_ssm(&plan, &(ssm_cfg){SSM_DISCRETE, tc->d_model, tc->d_model, 1, tc->d_model, 1,
                                        1, 4, 0, 64, tc->norm_eps, 0.0f, INFINITY});
    plan.conv_bias = true;
    model_cfg_set_gl(&plan, &(gateloop_cfg){tc->d_model, Di, H, Di / H, 64});
    molt_distill_opts ko = {.keep_layer = keep_layer, .keep_head = keep_head, .n_keep = n_keep,
                            .seed = seed};
    molt_model *m = NULL; // kept heads: hybrid layers of GateLoop ‖ those heads
    molt_status st = student_from_plan(ctx, t, &ko, LAYER_GATELOOP, &plan, &m);
    if (st != MOLT_OK || !transfer) {
        *out = m;
        return st;
    }
    int    d = tc->d_model, half = hd / 2, grp = tc->n_head / tc->n_kv_head, HJ = Di / 2;
    size_t row = (size_t)d;
    float  qs = (float)((1.0 - GL_DECAY_INIT) / sqrt((double)hd));
    for (int l = 0; l < tc->n_layer; l++) {
        const layer_weights *tw = &t->layers[l];
        const gl_weights    *w = &m->layers[l].gl;
        float *in = (float *)(uintptr_t)w->in_proj, *ab = (float *)(uintptr_t)w->a_bias;
        float *q = in, *k = in + (size_t)Di * row, *v = k + (size_t)Di * row;
        float *g = v + (size_t)Di * row;
        memset(g, 0, sizeof(float) * 2 * (size_t)Di * row); // gate and transition rows
        model_fill_const((float *)(uintptr_t)w->g_bias, (size_t)Di, GL_GATE_ONE);
        for (int h = 0; h < H; h++) {
            int kv = h / grp;
            memcpy(v + (size_t)h * hd * row, tw->wv + (size_t)kv * hd * row,
                   sizeof(float) * (size_t)hd * row);
            for (int j = 0; j < half; j++) {
                const float *q0 = tw->wq + ((size_t)h * hd + j) * row, *q1 = q0 + half * row;
                const float *k0 = tw->wk + ((size_t)kv * hd + j) * row, *k1 = k0 + half * row;
                float *qd = q + ((size_t)h * hd + 2 * j) * row;
                float *kd = k + ((size_t)h * hd + 2 * j) * row;
                for (size_t i = 0; i < row; i++) {
                    qd[i] = q0[i] * qs;
                    qd[row + i] = -q1[i] * qs;
                }
                memcpy(kd, k0, sizeof(float) * row);
                memcpy(kd + row, k1, sizeof(float) * row);
                // RoPE's angle per position: the table's entry at position 1
                double f = atan2((double)t->rope_sin[half + j], (double)t->rope_cos[half + j]);
                ab[h * half + j] = (float)log(GL_DECAY_INIT / (1.0 - GL_DECAY_INIT));
                ab[HJ + h * half + j] = (float)-f;
            }
        }
        memcpy((float *)(uintptr_t)w->out_proj, tw->wo, sizeof(float) * (size_t)d * Di);
    }
    *out = m;
    return MOLT_OK;
}
