#!/usr/bin/env bash
# test_layering.sh — the engine's one rule, checked: above the backend
# (src/kernels/), code calls only the op table. Mixers, models, inference,
# training, distillation and analysis name no BLAS, no thread pool and no
# threads: every such call goes through ex->be (kernels.h), so a CUDA backend
# runs all of it. Fails listing each offending line.
set -u
cd "$(dirname "$0")/.."
dirs="src/mixers src/models src/infer src/train src/distill src/analysis src/dist"
pat='cblas_|<cblas\.h>|molt_pool_run|molt_pool_range|core/pool\.h|pthread_create|#pragma omp|openblas_'
hits=$(grep -nE "$pat" $(find $dirs -name '*.[ch]' | sort) || true)
if [ -n "$hits" ]; then
  echo "FAIL: BLAS, pool or thread calls above the backend (move them behind the op table):"
  echo "$hits"
  exit 1
fi
# data parallelism: libmolt reaches MPI and NCCL only through the molt_comm table (dist/comm.h);
# they are named only by the communicators, src/dist/comm_*.c, which go into libmolt_dist.a
mpat='<mpi\.h>|<nccl\.h>|MPI_[A-Z][a-z_]*\(|nccl[A-Z][a-zA-Z]*\('
hits=$(grep -nE "$mpat" $(find src include -name '*.[ch]' -not -name 'comm_*.c' | sort) || true)
if [ -n "$hits" ]; then
  echo "FAIL: MPI or NCCL named outside src/dist/comm_*.c (use the molt_comm table):"
  echo "$hits"
  exit 1
fi
grep -qE "$mpat" src/dist/comm_mpi.c src/dist/comm_nccl.c || { echo "FAIL: MPI pattern matches nothing"; exit 1; }
# the rule is checked against something: the backend itself does use them
grep -qE "$pat" src/kernels/cpu/*.c || { echo "FAIL: pattern matches nothing in src/kernels/cpu"; exit 1; }
echo "test_layering: $(find $dirs -name '*.[ch]' | wc -l) files above the backend call only the op table"
