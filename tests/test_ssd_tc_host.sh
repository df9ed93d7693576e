#!/usr/bin/env bash
# The tensor-core SSD form's host-side check (scripts/ssd_tc_host.py): ssm_tc.cu's GEMM tables,
# calls and launch order parsed and run in float64 against PyTorch autograd. Needs no GPU.
# Exit 0 when every shape agrees, 1 on a mismatch, 77 (skip) without python3 + torch + numpy.
set -u
cd "$(dirname "$0")/.." || exit 1
PY=${MOLT_PYTHON:-/usr/bin/python3}
"$PY" -c 'import torch, numpy' 2>/dev/null || { echo "skip: $PY lacks torch/numpy"; exit 77; }
"$PY" scripts/ssd_tc_host.py
