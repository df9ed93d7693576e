/*
 * report.h — what molt_distill measured, and how it is written:
 * out_dir/report.json (machines), out_dir/report.txt (the table printed on
 * the terminal), out_dir/loss_curves.svg, out_dir/timeline.svg (tokens/s and
 * GPU memory over each stage) and out_dir/attention_vs_mixer.svg.
 */
#ifndef MOLT_REPORT_H
#define MOLT_REPORT_H

#include "train/data.h"

#define HEAT_N 48 // heatmap size (first HEAT_N tokens of the probe sequence)

typedef struct distill_stage_result {
    int     stage;
    bool    skipped;            // finished in an earlier run (--resume)
    double  first_loss, last_loss, seconds;
    int64_t tokens;
    float  *curve;              // loss per step
    float  *sec, *dev_gb;       // per step: seconds since the stage began (at its end), and
                                // the device's GB in use (0 on the CPU): the timeline
    int     n_curve;
    int64_t step_tokens;        // tokens a step trains on (all ranks)
} distill_stage_result;

// Final loss of a stage as reported: the mean of its last 10% of steps; for a
// stage finished in an earlier run, the value saved then; NaN if it never ran.
double distill_stage_final_loss(const distill_stage_result *s);

typedef struct distill_result {
    distill_stage_result stages[3];
    double  frob_before, frob_after;   // stage-1 distance per layer on a probe batch
    double  sample_seconds, total_seconds;
    int64_t sampled_tokens;
    int     heat_layer;
    float  *heat_teacher, *heat_before, *heat_after; // [HEAT_N, HEAT_N], head 0, sequence 0
} distill_result;

// Copies head 0 of sequence 0 (first HEAT_N×HEAT_N) of the teacher's attention
// and the student's matrix M [B,H,T,T]; which: 0 = before stage 1, 1 = after.
void distill_capture_heatmaps(distill_result *R, const float *teacher_probs, const float *M,
                              int T, int which);
molt_status distill_write_report(molt_ctx *ctx, const molt_distill_opts *o,
                                 const molt_model *teacher, const molt_model *student,
                                 const token_stream *eval, distill_result *R);

#endif
