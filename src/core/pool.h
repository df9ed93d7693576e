/*
 * pool.h — molt's thread pool. Kernels are written as fn(arg, ith, nth)
 * (ggml's compute-params style) and molt_pool_run runs them on nth threads, the
 * caller being thread 0. Workers spin briefly, then sleep on a condition
 * variable: unlike an OpenMP runtime's default busy-wait, an idle pool never
 * steals a core from the thread doing sequential work (this matters on small
 * machines: measured 5x slower prefill on 2 cores with GOMP's spinning).
 * Correct with nth = 1 (runs inline, no threads are created).
 */
#ifndef MOLT_POOL_H
#define MOLT_POOL_H

typedef void (*molt_task_fn)(void *arg, int ith, int nth);

// Runs fn(arg, i, nth) for i in [0, nth) and returns when all are done.
// Not reentrant: a task must not call molt_pool_run itself (it runs inline then).
void molt_pool_run(int nth, molt_task_fn fn, void *arg);
// Splits [0, n) into nth near-equal contiguous ranges; range of thread ith.
void molt_pool_range(int n, int ith, int nth, int *lo, int *hi);

#endif
