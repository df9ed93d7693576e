/*
 * pool.c — see pool.h. One process-wide pool, grown on demand up to
 * POOL_MAX workers; a generation counter publishes each job.
 */
#include "core/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define POOL_MAX 64
// Spin before sleeping on a condition variable: a wake-up through the kernel costs tens of
// microseconds (more in a VM), about a decode matmul's own time, so where every thread has a
// core of its own the wait spins ~1 ms (decode of a 110M model at 2 threads: 86 -> 92 tok/s);
// with more threads than cores a spinning thread would take a working one's core: ~20 µs.
#ifndef SPIN_LONG
#define SPIN_LONG 1000000
#endif
#define SPIN_SHORT 20000
#define SPIN_YIELD 1024 // past SPIN_SHORT polls, yield the core every this many polls

// One poll of a spin: past the short spin, every SPIN_YIELD-th poll gives the core to any other
// runnable thread (free when there is none): on a machine loaded by other processes a spinning
// thread must not hold the core the thread it waits for needs (busy-waiting alone made decode
// ~10x slower there).
static inline void spin_step(int spins) {
    if (spins > SPIN_SHORT && !(spins % SPIN_YIELD))
        sched_yield();
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;   // one job at a time
static pthread_mutex_t g_wmu = PTHREAD_MUTEX_INITIALIZER;  // worker wake-up
static pthread_cond_t  g_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t  g_done_cv = PTHREAD_COND_INITIALIZER;
static int             g_workers;
// One word publishes a job: generation << 16 | thread count. Reading them
// together matters: a worker that sat out job k must not pair k's generation
// with job k+1's thread count (it would run k+1's task twice).
static atomic_uint_fast64_t g_job;
static atomic_int      g_pending;
static atomic_int      g_spin = SPIN_SHORT; // the current job's spin budget
static int             g_ncpu;              // online CPUs (0: not read yet)
static molt_task_fn    g_fn;
static void           *g_arg;
static _Thread_local bool t_in_task;

typedef struct {
    int      id;
    uint64_t start_gen; // generation before the worker's first job
} worker;
static worker g_w[POOL_MAX];

static void *worker_main(void *p) {
    int id = ((worker *)p)->id;
    // not the current word: the job that created this worker may already be published
    uint64_t seen = ((worker *)p)->start_gen;
    for (;;) {
        uint64_t job;
        int spins = 0, budget = atomic_load_explicit(&g_spin, memory_order_relaxed);
        while ((job = atomic_load_explicit(&g_job, memory_order_acquire)) >> 16 == seen &&
               spins < budget)
            spin_step(spins++);
        if (job >> 16 == seen) {
            pthread_mutex_lock(&g_wmu);
            while ((job = atomic_load(&g_job)) >> 16 == seen)
                pthread_cond_wait(&g_wake, &g_wmu);
            pthread_mutex_unlock(&g_wmu);
        }
        seen = job >> 16;
        int nth = (int)(job & 0xffff);
        if (id < nth) { // fn/arg cannot change before this worker finishes (pending)
            t_in_task = true;
            g_fn(g_arg, id, nth);
            t_in_task = false;
            if (atomic_fetch_sub_explicit(&g_pending, 1, memory_order_acq_rel) == 1) {
                pthread_mutex_lock(&g_wmu);
                pthread_cond_broadcast(&g_done_cv);
                pthread_mutex_unlock(&g_wmu);
            }
        }
    }
    return NULL;
}

void molt_pool_range(int n, int ith, int nth, int *lo, int *hi) {
    int per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

void molt_pool_run(int nth, molt_task_fn fn, void *arg) {
    if (nth > POOL_MAX)
        nth = POOL_MAX;
    if (nth <= 1 || t_in_task) {
        for (int i = 0; i < (nth < 1 ? 1 : nth); i++)
            fn(arg, i, nth < 1 ? 1 : nth);
        return;
    }
    pthread_mutex_lock(&g_mu);
    while (g_workers < nth - 1) { // workers are ids 1..nth-1
        g_w[g_workers].id = g_workers + 1;
        g_w[g_workers].start_gen = atomic_load(&g_job) >> 16;
        pthread_t th;
        if (pthread_create(&th, NULL, worker_main, &g_w[g_workers]) != 0)
            break;
        pthread_detach(th);
        g_workers++;
    }
    if (g_workers < nth - 1)
        nth = g_workers + 1; // could not create all threads: run with fewer
    if (!g_ncpu) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        g_ncpu = n > 0 ? (int)n : 1;
    }
    int spin = nth <= g_ncpu ? SPIN_LONG : SPIN_SHORT;
    atomic_store_explicit(&g_spin, spin, memory_order_relaxed);
    g_fn = fn;
    g_arg = arg;
    atomic_store(&g_pending, nth - 1);
    pthread_mutex_lock(&g_wmu);
    uint64_t gen = (atomic_load(&g_job) >> 16) + 1;
    atomic_store_explicit(&g_job, gen << 16 | (uint64_t)nth, memory_order_release);
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_wmu);
    t_in_task = true;
    fn(arg, 0, nth);
    t_in_task = false;
    int spins = 0;
    while (atomic_load_explicit(&g_pending, memory_order_acquire) > 0 && spins < spin)
        spin_step(spins++);
    if (atomic_load(&g_pending) > 0) {
        pthread_mutex_lock(&g_wmu);
        while (atomic_load(&g_pending) > 0)
            pthread_cond_wait(&g_done_cv, &g_wmu);
        pthread_mutex_unlock(&g_wmu);
    }
    pthread_mutex_unlock(&g_mu);
}
