/*
 * mohawk.h — MOHAWK distillation internals (ALGORITHMS.md §2–§3).
 *
 *   stage 1  matrix orientation: per layer, the student's norm + mixer get the
 *            teacher's residual stream entering that layer; loss = Σ_layers
 *            mean_{batch×heads} ‖M_student − A_teacher‖_F
 *   stage 2  hidden-state alignment: per block, student block(teacher input)
 *            vs teacher output, loss = Σ_layers mean_tokens ‖·‖₂
 *   stage 3  knowledge distillation: soft-label CE of the student against the
 *            teacher's softmax over all positions (temperature τ)
 */
#ifndef MOLT_MOHAWK_H
#define MOLT_MOHAWK_H

#include "models/model.h"
#include "train/data.h"

// A Llamba student for a Llama teacher: DiscreteMamba2 mixers with one head
// per teacher query head (n_qk = n_v = H, head dim = teacher head_dim),
// d_state N; embeddings, norms, MLPs, final norm and head copied.
// init "transfer": in_proj x ← v_proj, B ← k_proj, C ← q_proj (GQA repeat),
// out_proj ← o_proj; "random": Llamba's initialisation. ssm_bias: in_proj /
// out_proj biases (the A_log bias starts at −4: slow initial decay).
// With n_keep > 0 the student is a molt_hybrid: layers holding kept heads
// become hybrid layers (SSM over all heads ‖ the kept heads as attention).
// On the host (mohawk_make_student, student.h, builds any kind and places it).
molt_status mohawk_student(molt_ctx *ctx, const molt_model *teacher, int n_heads, int d_state,
                           const char *init, bool ssm_bias, const int32_t *keep_layer,
                           const int32_t *keep_head, int n_keep, uint64_t seed,
                           molt_model **out);

// A GateLoop student (student_gateloop.c): one GateLoop head per teacher query
// head, head dim = the teacher's; init "transfer" maps q/k/v/o (and RoPE's
// frequencies into the transition's phase, magnitude 0.98, q scaled by
// 0.02/√hd) or "random"; kept heads (keep_layer[i]:keep_head[i], n_keep > 0)
// make the layers holding them hybrids of GateLoop ‖ those heads. d_state does
// not apply.
molt_status mohawk_student_gateloop(molt_ctx *ctx, const molt_model *teacher, int n_heads,
                                    const char *init, const int32_t *keep_layer,
                                    const int32_t *keep_head, int n_keep, uint64_t seed,
                                    molt_model **out);

// Teacher samples: n_tokens tokens of sequences generated from BOS at
// temperature 1 (each sequence up to seq_len+1 tokens), decoded as batches
// over state slots (the ctx's threads run the ops).
molt_status mohawk_teacher_samples(molt_ctx *ctx, const molt_model *teacher, int64_t n_tokens,
                                   int seq_len, uint64_t seed, token_stream *out);

#endif
