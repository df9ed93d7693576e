#!/usr/bin/env bash
# test_fresh_clone.sh [--readme] — proves that `make test` passes on a machine without
# ../shared: clones this repository's HEAD (commit first) into a temp dir, builds, runs
# `MOLT_SHARED=/nonexistent make test` there and reports the pass / skip counts and every skip
# reason (whole tests and "SKIP part:" lines). With --readme it also runs README's main job
# command (distill stories260K, then generate) in the clone. Not part of `make test`: it
# takes minutes. Exit 0 only when nothing failed (and, with --readme, the job worked).
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
git clone -q "$REPO" "$TMP/molt" || { echo "FAIL: git clone $REPO"; exit 1; }
cd "$TMP/molt" || exit 1
echo "fresh clone of $(git rev-parse --short HEAD) in $TMP/molt (no ../shared: MOLT_SHARED=/nonexistent)"
[ ! -e ../shared ] || { echo "FAIL: $TMP/shared exists"; exit 1; }
make -j2 tests > build.log 2>&1 || { echo "FAIL: build"; tail -20 build.log; exit 1; }
MOLT_SHARED=/nonexistent make test > test.log 2>&1; rc=$?
grep -E '^(PASS|FAIL|SKIP)|^      - SKIP part' test.log
tail -n 1 test.log
[ $rc -eq 0 ] || { echo "FAIL: make test without shared (exit $rc)"; tail -40 test.log; exit 1; }
if [ "${1:-}" = --readme ]; then
  cmd=$(grep -m1 -o '\./molt distill .*' README.md)
  echo "README job: $cmd"
  MOLT_SHARED=/nonexistent bash -c "$cmd" > job.log 2>&1 || { echo "FAIL: README job"; tail -20 job.log; exit 1; }
  echo "README job ok; the student says: $(tail -c 200 job.log | tr '\n' ' ')"
fi
echo "fresh clone ok"
