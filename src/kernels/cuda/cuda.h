/*
 * cuda.h — the CUDA backend (molt_backend_cuda), compiled only in builds with
 * -DMOLT_CUDA (`make cuda`, build-cuda/). Same op table and contracts as the
 * CPU backend (kernels.h, backward.h, ssm.h, mem.h); the CPU ops are its
 * oracle (tests/test_backend_cuda.c).
 *
 * Memory: plain device allocations (cudaMalloc, never managed memory); not
 * host-visible. upload / download return when the host buffer may be reused
 * or read (they synchronize ex's stream); copy / zero and every op are queued
 * on ex->stream (a cudaStream_t; NULL = the default stream) and return at
 * once. Small host arrays the contracts allow (embedding ids, loss targets,
 * per-row positions and cache pointers) are copied to the device inside the
 * op; spans and per-row state pointers are walked on the host; no op reads
 * device data back on the host.
 *
 * Errors: the op signatures return nothing, so the backend keeps a sticky
 * error: the first failing CUDA / cuBLAS call (or an unsupported argument)
 * records a message, later ones are dropped, and ops keep running (their
 * outputs are then undefined). be_sync(ex) synchronizes and records any
 * asynchronous kernel error; molt_cuda_last_error() returns the message
 * (NULL when none) and molt_cuda_clear_error() forgets it. Check it after
 * be_sync at the points a caller needs results.
 *
 * Ops not yet on the GPU: the table is filled from its own list
 * (MOLT_CUDA_OPS in cuda_ops.h), not from MOLT_BACKEND_OPS, so an op added
 * to the engine table stays NULL here until a CUDA kernel exists:
 * molt_exec_init refuses the table and molt_cuda_missing_ops names them
 * (none today but the optional bf16 recurrent-state group).
 */
#ifndef MOLT_CUDA_H
#define MOLT_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const molt_backend molt_backend_cuda;

// CUDA devices visible (0 when none or the driver fails; why in *why when
// not NULL: a static string)
int molt_cuda_device_count(const char **why);
// makes GPU i the calling process's current device (false, why in *why, when
// it cannot be used)
bool molt_cuda_use_device(int i, const char **why);
// bytes in use and in total on the current device (cudaMemGetInfo; 0, 0 on failure)
void molt_cuda_mem_info(size_t *used, size_t *total);
// the sticky error (see above); NULL when no error was recorded
const char *molt_cuda_last_error(void);
void        molt_cuda_clear_error(void);
// the names of the ops of MOLT_BACKEND_OPS this table lacks, comma-separated
// into buf (empty when none); returns how many
int molt_cuda_missing_ops(char *buf, size_t cap);
// the same, leaving out the optional ops (kernels.h: MOLT_BACKEND_OPTIONAL_OPS,
// whose mixers are refused on the GPU): the ops without which nothing runs
int molt_cuda_missing_required_ops(char *buf, size_t cap);

// kernel-time profile (prof.cu), for measuring without Nsight: after begin,
// every kernel launch, cuBLAS GEMM and async copy of the backend records an
// event; report synchronizes, stops recording and writes to f, per launch
// name, the calls and the stream time since the previous event (the kernel
// plus any idle gap before it), largest first (top rows; 0 = all).
// Single-threaded use. begin returns false when it cannot allocate.
bool molt_cuda_profile_begin(void);
void molt_cuda_profile_report(FILE *f, int top);

// weights converted to bf16 into the GEMM weight cache so far (bf16.cu; tests)
unsigned long molt_cuda_wcache_conversions(void);
// recorded graphs replayed so far (graph.cu; tests, benchmarks)
unsigned long molt_cuda_graph_replays(void);

#ifdef __cplusplus
}
#endif

#endif
