/*
 * ssm.h — state-space kernels shared by the Mamba-2 and DiscreteMamba2
 * (Llamba) mixers: causal depthwise conv1d and the SSD selective scan, each in
 * three exact modes (recurrent step, chunked scan, materialized matrix).
 * Math: shared/docs/ALGORITHMS.md §1.2–1.4, §2.2.
 *
 * Dimension letters
 *   T  time steps            H  (value) heads        P  head dim
 *   N  state size            G  B/C heads ("groups"): head h reads B/C head h / (H/G)
 *   K  conv width            Cc conv channels
 *
 * The scan, for every head h (g = h / (H/G)):
 *   s_t = exp(dA[t,h]) · s_{t-1} + X[t,h,:] ⊗ B[t,g,:]        s: [P,N]
 *   y[t,h,p] = Σ_n s_t[p,n] · C[t,g,n]
 * Mamba-2 passes X = x·Δ, dA = Δ·A; DiscreteMamba2 passes X = x,
 * dA = -softplus(A_log). D·x is added by the mixer, not here.
 */
#ifndef MOLT_SSM_H
#define MOLT_SSM_H

#include <stddef.h>

// y[T,Cc] = b + Σ_k w[c,k] · in[t-(K-1)+k, c]; inputs before t=0 come from
// state[Cc,K-1] (oldest first), zeros when state is NULL. When state is not
// NULL it is updated to hold the last K-1 inputs. y must not alias x.
void conv1d_causal(float *y, const float *x, const float *w, const float *b, float *state, int T,
                   int Cc, int K);

// Plain sequential recurrence (the oracle). state[H,P,N]: initial state,
// overwritten with the final one; NULL = start from zero.
void ssd_scan_ref(float *y, float *state, const float *X, const float *dA, const float *B,
                  const float *C, int T, int H, int P, int N, int G);
// One token: y[H,P], state[H,P,N] updated in place.
void ssd_step(float *y, float *state, const float *X, const float *dA, const float *B,
              const float *C, int H, int P, int N, int G);
// SSD chunked algorithm (chunk Q ≥ 1): intra-chunk quadratic form + inter-chunk
// state passing. Same contract as ssd_scan_ref. work: ssd_chunked_work(...) floats;
// on return it starts with the states entering each chunk, [ceil(T/Q),H,P,N]
// (layout documented in cpu/ssm.c).
size_t ssd_chunked_work(int T, int H, int P, int N, int G, int Q);
void   ssd_scan_chunked(float *y, float *state, const float *X, const float *dA, const float *B,
                        const float *C, int T, int H, int P, int N, int G, int Q, float *work);
// M[H,T,T] (row = output t, col = input s): for s ≤ t
//   M[h,t,s] = (C[t,g]·B[s,g]) · exp(Σ_{k=s+1..t} dA[k,h]) · (colscale ? colscale[s,h] : 1)
// 0 above the diagonal; D[h] added on the diagonal when D is not NULL.
// colscale [T,H] (Mamba-2: Δ, so that M acts on x while the scan takes x·Δ).
void ssd_materialize(float *M, const float *dA, const float *B, const float *C,
                     const float *colscale, const float *D, int T, int H, int N, int G);

#endif
