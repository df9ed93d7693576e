/*
 * student.h — the distillation student by kind (molt_distill_opts.student),
 * and MOHAWK stage 1 of a student layer through its recurrent mixer's
 * trainable mixing matrix, whatever the layer's mixer:
 *   llamba       DiscreteMamba2 layers, or hybrids (mohawk_student, student.c;
 *                stage 1: the SSM's matrix, ssm_mat_*)
 *   mamba3       Mamba-3 SISO layers (student_mamba3.c; stage 1: mamba3_mat_*)
 *   mamba3-mimo  Mamba-3 MIMO layers of rank opts.mimo_rank
 */
#ifndef MOLT_DISTILL_STUDENT_H
#define MOLT_DISTILL_STUDENT_H

#include "distill/mohawk.h"

// The student of kind o->student for teacher t (embeddings, norms, MLPs and
// head copied; mixers by o->init: "transfer" from the attention, or random).
molt_status mohawk_make_student(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                                molt_model **out);
// A pure Mamba-3 student (student_mamba3.c): one head per teacher query head
// (head dim = teacher head_dim, expand = n_head·head_dim / d_model), d_state
// o->d_state, B/C per head (ngroups = heads), rank 1 or o->mimo_rank.
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
