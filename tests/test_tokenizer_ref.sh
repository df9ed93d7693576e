#!/usr/bin/env bash
# test_tokenizer_ref.sh — molt's tokenizers against the independent Python
# references in tests/ref/tok_ref.py (regex-module split + plain rank BPE as
# tiktoken does it, HF merges BPE, a literal port of llama2.c run.c encode).
# Samples of every UTF-8 file in shared/data are encoded by Python and by
# `test_tokenizer --encode`; ids must match exactly. Exit 77 (skip) when the
# Python side or shared/ is missing.
set -u
BUILD=${MOLT_BUILD:-build}
SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
PY=${MOLT_PYTHON:-/usr/bin/python3}
TOOL=$BUILD/tests/test_tokenizer
[ -x "$TOOL" ] || { echo "missing $TOOL (run make tests)"; exit 1; }
[ -f "$SHARED/data/tokenizers/llama3/tokenizer.model" ] ||
  { echo "skip: needs $SHARED/data (Llama 3/2 tokenizers and corpora, not shipped)"; exit 77; }
"$PY" -c 'import regex' 2>/dev/null || { echo "skip: $PY lacks the regex module (apt-get install python3-regex)"; exit 77; }
exec "$PY" tests/ref/tok_ref.py compare "$TOOL" "$SHARED"
