#!/usr/bin/env bash
# Neural embedder benchmark: the built-in all-MiniLM-L6-v2
# (src/providers/embed_minilm.c) against onnxruntime running the same model
# (make_onnx.py, ort_ref.py), same inputs, same machine, same run: sentences/s
# at 16/32/128 tokens with one thread and with all cores, sentences per CPU
# second, single-sentence latency, memory. Not a test; see README.md.
#
#   bench/embed/run.sh                       REPEATS rounds (default 3) of
#                                            CELL_SECONDS per cell (default 3)
#   STRATA_REF_PYTHON=/venv/bin/python ...   a Python with onnxruntime, onnx,
#                                            numpy, tokenizers (default: the
#                                            cache of scripts/fetch_ref_runtime.sh,
#                                            filled on first use)
#   STRATA_SGEMM=avx2|portable ...           force a slower kernel (ours)
#   BUILD=dir                                build directory (default build-bench)
#
# Each round runs ours, then onnxruntime, back to back, so the per-round
# ratio compares the two under the same machine load; summary.py prints best
# and median over rounds. Raw outputs: bench/embed/out/{c,ort}.N.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CELL_SECONDS="${CELL_SECONDS:-3}"
REPEATS="${REPEATS:-3}"
MODEL="${STRATA_MODEL_DIR:-$ROOT/models/all-MiniLM-L6-v2}"
BUILD="${BUILD:-$ROOT/build-bench}"
OUT="$HERE/out"
mkdir -p "$OUT"
rm -f "$OUT"/c.*.txt "$OUT"/ort.*.txt

if [ ! -f "$MODEL/model.safetensors" ] || [ ! -f "$MODEL/tokenizer.json" ]; then
    "$ROOT/scripts/fetch_model.sh"
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "run.sh: no model in $MODEL (offline?); nothing to benchmark"
    exit 0
fi

echo "== building bench_minilm (Release) in $BUILD"
GEN=()
command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/CMakeCache.txt" ] && GEN=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSTRATA_BENCH=ON >/dev/null
cmake --build "$BUILD" --target bench_minilm >/dev/null
BENCH="$BUILD/bench/bench_minilm"

# The reference: a Python that imports onnxruntime, onnx, numpy, tokenizers.
REF=()
if [ -n "${STRATA_REF_PYTHON:-}" ]; then
    REF=("$STRATA_REF_PYTHON")
else
    bash "$ROOT/scripts/fetch_ref_runtime.sh" >/dev/null || true
    if DIR="$(bash "$ROOT/scripts/fetch_ref_runtime.sh" --print-dir)"; then
        REF=(env PYTHONPATH="$DIR" python3 -s)
    fi
fi
if [ "${#REF[@]}" -gt 0 ] && ! "${REF[@]}" -c "import numpy, onnx, onnxruntime, tokenizers" 2>/dev/null; then
    REF=()
fi
ONNX="$OUT/minilm.onnx"
if [ "${#REF[@]}" -gt 0 ]; then
    if [ ! -f "$ONNX" ] || [ "$MODEL/model.safetensors" -nt "$ONNX" ] || [ "$HERE/make_onnx.py" -nt "$ONNX" ]; then
        "${REF[@]}" "$HERE/make_onnx.py" "$MODEL" "$ONNX"
    fi
    "${REF[@]}" "$HERE/ort_ref.py" check "$MODEL" "$ONNX"
else
    echo "== no onnxruntime reference (scripts/fetch_ref_runtime.sh failed?): ours only"
fi

echo "== $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $REPEATS round(s) of ${CELL_SECONDS}s cells"
for r in $(seq 1 "$REPEATS"); do
    echo "-- round $r: strata"
    "$BENCH" "$MODEL" "$CELL_SECONDS" | tee "$OUT/c.$r.txt"
    if [ "${#REF[@]}" -gt 0 ]; then
        echo "-- round $r: onnxruntime"
        "${REF[@]}" "$HERE/ort_ref.py" bench "$MODEL" "$ONNX" "$CELL_SECONDS" | tee "$OUT/ort.$r.txt"
    fi
done
echo "== summary"
python3 "$HERE/summary.py" "$OUT"
