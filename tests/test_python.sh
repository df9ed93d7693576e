#!/usr/bin/env bash
# The Python package (python/, issue 16), installed as README's "Python" section says: a venv of
# Debian's /usr/bin/python3 with the system's site packages (numpy, setuptools, wheel), then
# `pip install --no-build-isolation --no-index ./python` (offline). Then python/tests/*.py run
# in that venv from another directory, against the installed copy of libmolt.so: generate,
# stream, eval, logits, heads and distill equal the molt CLI (and HF / PyTorch references where
# shared/ has them); errors raise molt.MoltError with molt's text. Also: the package imported
# straight from python/ (no install) finds the repository's build/libmolt.so.
# Skips (exit 77) without python3-venv or python3-numpy, and for sanitizer builds (their
# runtime cannot be loaded into python3 after it started).
set -u
BUILD=${MOLT_BUILD:-build}
PY=/usr/bin/python3
REPO=$PWD
SO=$BUILD/libmolt.so
[ -x $PY ] || { echo "no /usr/bin/python3 (scripts/install-deps.sh --test)"; exit 77; }
$PY -c 'import ensurepip, venv' 2>/dev/null ||
  { echo "python3-venv is not installed (scripts/install-deps.sh --test)"; exit 77; }
$PY -c 'import numpy' 2>/dev/null ||
  { echo "python3-numpy is not installed (scripts/install-deps.sh --test)"; exit 77; }
$PY -c 'import setuptools, wheel' 2>/dev/null ||
  { echo "python3-setuptools / python3-wheel are not installed (scripts/install-deps.sh --test)"; exit 77; }
[ -f "$SO" ] || { echo "FAIL: $SO not built"; exit 1; }
if readelf -d "$SO" | grep -Eq 'lib(a|t)san'; then
  echo "sanitizer build: its runtime cannot be loaded into python3"; exit 77
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
unset MOLT_LIB PYTHONPATH
# the install a user makes (MOLT_LIB only when the library is not the default build/'s)
$PY -m venv --system-site-packages "$T/venv" || { echo "FAIL: python3 -m venv"; exit 1; }
[ "$BUILD" != build ] && export MOLT_LIB=$REPO/$SO
if ! "$T/venv/bin/pip" install --no-build-isolation --no-index ./python > "$T/pip.log" 2>&1; then
  echo "FAIL: pip install ./python"; cat "$T/pip.log"; exit 1
fi
unset MOLT_LIB
echo "ok   $(grep 'Successfully installed' "$T/pip.log")"
fail=0
# not installed: python/ on the path finds the repository's build/libmolt.so
if [ "$BUILD" = build ]; then
  got=$(cd "$T" && PYTHONPATH=$REPO/python $PY -c 'import molt; print(molt.library_path())')
  if [ "$got" = "$(readlink -f "$SO")" ]; then echo "ok   uninstalled package uses $got"
  else echo "FAIL uninstalled package uses '$got'"; fail=1; fi
fi
# the tests, from a directory outside the repository, with the installed package only
(cd "$T" && MOLT_REPO=$REPO MOLT_BIN=${MOLT_BIN:-$REPO/$BUILD/molt} MOLT_EXPECT_LIB=installed \
  "$T/venv/bin/python" -m unittest discover -s "$REPO/python/tests" -t "$REPO/python/tests" -v) ||
  fail=1
exit $fail
