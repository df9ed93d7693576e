/*
 * test_pool.c — molt's thread pool under stress: thousands of consecutive
 * jobs whose thread counts change from job to job (the pattern that once let
 * a worker that sat out one job run the next job's task twice). Every task
 * index of every job must run exactly once, and molt_pool_run must not return
 * before all of them finished.
 */
#include "core/pool.h"
#include "testutil.h"

#include <stdatomic.h>
#include <string.h>

typedef struct job {
    atomic_int ran[16];
    atomic_int done;
    int        nth_seen[16];
} job;

static void task(void *arg, int ith, int nth) {
    job *j = arg;
    atomic_fetch_add(&j->ran[ith], 1);
    j->nth_seen[ith] = nth;
    for (volatile int k = 0; k < (ith * 37) % 200; k++) // uneven work
        ;
    atomic_fetch_add(&j->done, 1);
}

int main(void) {
    int bad_runs = 0, early = 0, bad_nth = 0;
    for (int it = 0; it < 20000; it++) {
        int nth = 1 + (it * 7 + it / 3) % 6; // 1..6, changing every job
        job j;
        memset(&j, 0, sizeof j);
        molt_pool_run(nth, task, &j);
        if (atomic_load(&j.done) != nth)
            early++;
        for (int i = 0; i < 16; i++) {
            int want = i < nth ? 1 : 0;
            if (atomic_load(&j.ran[i]) != want)
                bad_runs++;
            if (i < nth && j.nth_seen[i] != nth)
                bad_nth++;
        }
    }
    CHECK(early == 0, "%d jobs returned before all their tasks finished", early);
    CHECK(bad_runs == 0, "%d task indices ran a wrong number of times", bad_runs);
    CHECK(bad_nth == 0, "%d tasks saw the wrong thread count", bad_nth);
    int lo, hi, total = 0;
    for (int i = 0; i < 7; i++) {
        molt_pool_range(100, i, 7, &lo, &hi);
        total += hi - lo;
        CHECK(hi - lo == 14 || hi - lo == 15, "range %d: %d..%d", i, lo, hi);
    }
    CHECK(total == 100, "ranges cover %d of 100", total);
    return t_done("test_pool");
}
