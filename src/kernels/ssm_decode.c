/*
 * ssm_decode.c — ssm_decode_rows (ssm_rows.h) as its stage ops, one by one,
 * through the exec's table: the xBC columns copied out of zx, the causal conv
 * on each row's history, the prep, the SSD step (f32 or bf16 state) and the
 * gate, their intermediates on `work`. This is the CPU backend's op (the same
 * bits as the stages, by construction) and the CUDA op's path for a head too
 * large for a block's shared memory: the one place that knows the work layout.
 *
 *   work: xr [n,Cc] | xc [n,Cc] | x [n,Di] | X [n,Di] (Mamba-2; Discrete: X is x) |
 *         B, C [n,GN] | dA, dlt [n,H]
 */
#include "kernels/kernels.h"
#include "kernels/ssm_rows.h"

size_t ssm_decode_rows_work(int n, const ssm_rows_cfg *c) {
    size_t nn = (size_t)(n > 0 ? n : 0), Di = (size_t)c->H * c->P, GN = (size_t)c->G * c->N;
    size_t Cc = Di + 2 * GN;
    return nn * (2 * Cc + Di + (c->mamba ? Di : 0) + 2 * GN + 2 * (size_t)c->H);
}

void ssm_decode_rows_stages(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                            float *const *ssm, int n, const ssm_rows_cfg *c,
                            const ssm_decode_args *a, float *work) {
    if (n <= 0)
        return;
    size_t nn = (size_t)n, Di = (size_t)c->H * c->P, GN = (size_t)c->G * c->N, Cc = Di + 2 * GN;
    float *xr = work, *xc = xr + nn * Cc, *x = xc + nn * Cc, *X = c->mamba ? x + nn * Di : x;
    float *B = X + nn * Di, *C = B + nn * GN, *dA = C + nn * GN, *dlt = dA + nn * c->H;
    k_copy_cols(ex, xr, Cc, zx + a->o_xbc, (size_t)a->ldz, nn, Cc);
    conv1d_causal_rows(ex, xc, xr, a->conv_w, a->conv_b, conv, n, (int)Cc, a->K);
    ssm_prep(ex, x, c->mamba ? X : NULL, B, C, dA, dlt, xc, zx + a->o_dt, a->ldz, a->dt_bias,
             a->A_log, n, c);
    if (a->state_bf16)
        ssd_step_rows_bf16(ex, y, (uint16_t *const *)(void *const *)ssm, X, dA, B, C, n, c->H,
                           c->P, c->N, c->G);
    else
        ssd_step_rows(ex, y, ssm, X, dA, B, C, n, c->H, c->P, c->N, c->G);
    ssm_gate(ex, y, y, NULL, x, zx + a->o_z, a->ldz, a->D, a->norm_w, a->z_bias, n, c);
}
