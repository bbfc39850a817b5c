#!/usr/bin/env bash
# Installs the independent reference for the neural embedder: onnxruntime,
# onnx, numpy and Hugging Face tokenizers (pinned below), with
# `pip install --target` into a per-user cache, never into the repository or
# the system Python. Used by tests/integration/test_minilm_reference.py and
# bench/embed/run.sh (see bench/embed/README.md).
#
#   scripts/fetch_ref_runtime.sh               install unless already cached
#   scripts/fetch_ref_runtime.sh --print-dir   print the directory and exit 0
#                                              if installed, else exit 1
#
# Cost: ~60 MB of wheels, ~200 MB unpacked, about 10 s once; afterwards a
# stamp file makes this a no-op. The directory name carries the Python
# version and a hash of the pins, so an upgrade installs next to the old one.
# Like fetch_model.sh, an unreachable registry is not an error: the message
# says so, and the reference test skips.
#   PYTHON                  interpreter to install for (default python3)
#   STRATA_REF_RUNTIME_DIR  cache root (default ~/.cache/strata/ref-runtime)
set -euo pipefail

PY="${PYTHON:-python3}"
# --no-deps with the full closure listed: tokenizers' own dependency list
# pulls in huggingface_hub and a dozen more wheels used only for downloads.
PINS=(onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 tokenizers==0.23.3
      protobuf==7.36.2 ml_dtypes==0.6.0 typing_extensions==4.16.0
      flatbuffers==25.12.19 packaging==26.4)

ROOT_CACHE="${STRATA_REF_RUNTIME_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/ref-runtime}"
if ! PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    echo "fetch_ref_runtime: no $PY; nothing installed"
    [ "${1:-}" = "--print-dir" ] && exit 1
    exit 0
fi
HASH="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
DIR="$ROOT_CACHE/py$PYVER-$HASH"

if [ "${1:-}" = "--print-dir" ]; then
    [ -f "$DIR/.complete" ] && { echo "$DIR"; exit 0; }
    exit 1
fi
if [ -f "$DIR/.complete" ]; then
    echo "fetch_ref_runtime: $DIR present"
    exit 0
fi

mkdir -p "$ROOT_CACHE"
TMP="$DIR.tmp.$$"
trap 'rm -rf "$TMP"' EXIT
echo "fetch_ref_runtime: installing ${PINS[*]} for Python $PYVER (~60 MB download)"
if ! "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --target "$TMP" "${PINS[@]}" >"$TMP.log" 2>&1; then
    echo "fetch_ref_runtime: pip failed (offline, or no wheels for Python $PYVER);"
    echo "fetch_ref_runtime: the onnxruntime reference test will skip."
    tail -n 3 "$TMP.log" | sed 's/^/  pip: /'
    rm -f "$TMP.log"
    exit 0
fi
rm -f "$TMP.log"
if ! PYTHONPATH="$TMP" "$PY" -s -c "import numpy, onnx, onnxruntime, tokenizers" 2>/dev/null; then
    echo "fetch_ref_runtime: installed packages do not import; the reference test will skip."
    exit 0
fi
touch "$TMP/.complete"
rm -rf "$DIR"
mv "$TMP" "$DIR"
echo "fetch_ref_runtime: installed in $DIR"
