#!/usr/bin/env bash
# Neural embedder benchmark: sentences/s of the built-in all-MiniLM-L6-v2
# (src/providers/embed_minilm.c) at 16/32/128 tokens, 1 and 2 threads, and
# memory; then the same inputs through a NumPy/OpenBLAS reference of the same
# model when NumPy is importable, with the ratio. Not a test; see README.md.
#
#   bench/embed/run.sh                  CELL_SECONDS per cell (default 3)
#   PYTHON=/path/to/venv/python bench/embed/run.sh     a Python with numpy
#   STRATA_SGEMM=avx2|portable bench/embed/run.sh       force a slower kernel
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CELL_SECONDS="${CELL_SECONDS:-3}"
PYTHON="${PYTHON:-python3}"
MODEL="${STRATA_MODEL_DIR:-$ROOT/models/all-MiniLM-L6-v2}"
OUT="$HERE/out"
mkdir -p "$OUT"

if [ ! -f "$MODEL/model.safetensors" ]; then
    "$ROOT/scripts/fetch_model.sh"
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "run.sh: no model in $MODEL (offline?); nothing to benchmark"
    exit 0
fi

cd "$ROOT"
${CC:-gcc} -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Isrc \
    src/core/*.c src/providers/safetensors.c src/providers/wordpiece.c src/providers/sgemm.c \
    src/providers/embed_minilm.c src/providers/embed_hash.c src/providers/embed_cache.c \
    src/l2/tokenize.c src/l2/bm25.c bench/embed/bench_minilm.c \
    -o "$OUT/bench_minilm" -ljansson -lcrypto -lpthread -lm

echo "== strata (C), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$OUT/bench_minilm" "$MODEL" "$CELL_SECONDS" | tee "$OUT/c.txt"

if "$PYTHON" -c "import numpy" 2>/dev/null; then
    echo "== NumPy reference (OpenBLAS, 1 thread)"
    "$PYTHON" "$HERE/ref_numpy.py" "$MODEL" "$CELL_SECONDS" | tee "$OUT/numpy.txt"
    echo "== ratio C (1 thread) / NumPy, batch 32"
    awk 'NR==FNR { if ($2 == "32" && $1 ~ /^[0-9]+$/) c[$1] = $3; next }
         $2 == "32" && $1 ~ /^[0-9]+$/ && c[$1] > 0 {
             printf "%-8s %.2fx\n", $1, c[$1] / $3 }' "$OUT/c.txt" "$OUT/numpy.txt"
else
    echo "== no NumPy for $PYTHON: reference comparison skipped (PYTHON=... to point at one)"
fi
