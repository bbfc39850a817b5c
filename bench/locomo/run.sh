#!/usr/bin/env bash
# LoCoMo retrieval benchmark: builds Strata (Release), starts stratad on a free
# port in a temporary directory, loads ../shared/data/locomo/locomo-dev.json
# (read in place, never copied) and prints evidence recall@k per search mode
# beside a BM25 baseline computed by the same script.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DATA=${LOCOMO_DATA:-$ROOT/../shared/data/locomo/locomo-dev.json}
STRATAD=${STRATAD:-}
if [ -z "$STRATAD" ]; then
    cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-bench --target stratad >/dev/null
    STRATAD=$ROOT/build-bench/stratad
fi
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$STRATAD" --data-dir "$DIR" --port "$PORT" --fsync no --log-level warn "$@" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
python3 bench/locomo/locomo_bench.py --url "http://127.0.0.1:$PORT" --data "$DATA"
