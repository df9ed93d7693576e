#!/usr/bin/env bash
# Installs what molt needs on a fresh Debian machine (needs root or sudo).
#   build:  gcc make pkg-config libopenblas-dev libcjson-dev libpcre2-dev libmicrohttpd-dev (molt serve)
#           libopenmpi-dev openmpi-bin (data-parallel train / distill under mpirun; tests/test_dist.sh)
#   tests:  python3-torch python3-numpy python3-regex (PyTorch / tiktoken-style references),
#           python3-venv python3-setuptools python3-wheel (the Python package, installed offline)
# Skips apt entirely when everything is already present.
set -euo pipefail
pkgs=(gcc make pkg-config libopenblas-dev libcjson-dev libpcre2-dev libmicrohttpd-dev
      libopenmpi-dev openmpi-bin)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(python3 python3-torch python3-numpy python3-regex python3-venv python3-setuptools python3-wheel)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
