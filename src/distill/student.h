/*
 * student.h — the distillation student by kind (molt_distill_opts.student),
 * and MOHAWK stage 1 of a student layer through its recurrent mixer's
 * trainable mixing matrix, whatever the layer's mixer:
 *   llamba       DiscreteMamba2 layers (mohawk_student, student.c;
 *                stage 1: the SSM's matrix, ssm_mat_*)
 *   mamba2       Mamba-2 layers (HF / state-spaces Mamba2 mixer: conv, gated
 *                RMSNorm) with the teacher's MLPs (student_mamba2.c; stage 1:
 *                ssm_mat_*, which materializes Mamba-2 too)
 *   mamba3       Mamba-3 SISO layers (student_mamba3.c; stage 1: mamba3_mat_*)
 *   mamba3-mimo  Mamba-3 MIMO layers of rank opts.mimo_rank
 *   gateloop     GateLoop layers (student_gateloop.c; stage 1: gl_mat_*)
 * With kept heads (opts.n_keep > 0, `molt hybridize`) every kind is a hybrid:
 * the layers holding kept heads are hybrid layers whose recurrent part is the
 * kind's mixer (model_cfg.hyb_rec), beside the kept teacher heads; stage 1
 * trains the recurrent part's matrix against all the teacher's heads.
 */
#ifndef MOLT_DISTILL_STUDENT_H
#define MOLT_DISTILL_STUDENT_H

#include "distill/mohawk.h"

// The student of kind o->student for teacher t (embeddings, norms, MLPs and
// head copied; mixers by o->init: "transfer" from the attention, or random).
molt_status mohawk_make_student(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                                molt_model **out);
// The checks every head-per-teacher-head student shares: a Llama teacher whose
// n_head·head_dim is expand·d_model, o->n_heads (0: the teacher's) dividing it,
// o->init "transfer" (then one head per teacher query head) or "random".
// *H: the student's heads; *transfer: the init. what names the student kind.
molt_status student_check_heads(molt_ctx *ctx, const model_cfg *tc, const molt_distill_opts *o,
                                const char *what, int *H, bool *transfer);
// The student of plan (its mixer configs set) for teacher t: every layer of
// kind `kind`, except that the layers holding o's kept heads (o->keep_layer[i]:
// o->keep_head[i], validated first) become hybrids whose recurrent part is
// `kind`; built by model_hybrid_from_teacher (o->seed). MOLT_ERR_ARG /
// UNSUPPORTED with a message; *out NULL on error.
molt_status student_from_plan(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                              layer_kind kind, model_cfg *plan, molt_model **out);
// A Mamba-3 student (student_mamba3.c): one head per teacher query head
// (head dim = teacher head_dim, expand = n_head·head_dim / d_model), d_state
// o->d_state, B/C per head (ngroups = heads), rank 1 or o->mimo_rank; with
// kept heads (o->n_keep) a hybrid of Mamba-3 and the kept heads.
// A Mamba-2 student (student_mamba2.c): one head per teacher query head
// (P = head_dim), ngroups = heads, d_state o->d_state, d_conv 4, biases with
// o->ssm_bias; with kept heads (o->n_keep) a hybrid of Mamba-2 and those heads.
molt_status student_mamba2(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                           molt_model **out);
molt_status student_mamba3(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                           molt_model **out);

// Stage 1 of student layer l: M[B, heads, T, T] from the normed input u[B·T, d]
// (saving act), and its backward (du written, the layer's mixer gradients
// accumulated into grad, a buffer with the parameter buffer's layout).
int    student_mat_heads(const molt_model *s, int l);
size_t student_mat_act_floats(const molt_model *s, int l, int B, int T);
size_t student_mat_work_floats(const molt_model *s, int l, int B, int T);
void   student_mat_forward(const molt_exec *ex, const molt_model *s, int l, float *M, float *act,
                           const float *u, int B, int T, float *work);
void   student_mat_backward(const molt_exec *ex, const molt_model *s, int l, float *grad,
                            float *du, const float *dM, const float *act, const float *u, int B,
                            int T, float *work);

#endif
