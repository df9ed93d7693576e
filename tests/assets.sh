# tests/assets.sh — sourced by the shell tests (run from the repository root): where the model
# and data files they read live, and how a part that needs a missing one is skipped. The same
# rules as t_shared / t_have in tests/testutil.c.
#   asset REL      path of shared/REL: the repository's byte-identical copy when it ships one
#                  (models/stories260K/*, data/kv_task.json, tests/fixtures/REL), else
#                  $SHARED/REL ($MOLT_SHARED, default ../shared)
#   have PATH WHAT true when PATH exists; otherwise prints "SKIP part: WHAT (needs PATH)",
#                  which scripts/run_tests.sh lists and counts, and returns 1
SHARED=${MOLT_SHARED:-../shared}
asset() {
  case $1 in
    models/stories260K/*) [ -e "$1" ] && { echo "$1"; return; } ;;
    models/kv-llama-2m/kv_task.json) [ -e data/kv_task.json ] && { echo data/kv_task.json; return; } ;;
  esac
  # files only: a directory name means all of shared/'s
  if [ -f "tests/fixtures/$1" ]; then echo "tests/fixtures/$1"; else echo "$SHARED/$1"; fi
}
have() {
  [ -e "$1" ] && return 0
  echo "SKIP part: $2 (needs $1)"
  return 1
}
