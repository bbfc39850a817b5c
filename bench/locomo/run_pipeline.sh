#!/usr/bin/env bash
# LoCoMo retrieval benchmark THROUGH the memory pipeline: builds stratad
# (Release) unless STRATAD is set, starts it on a free port in a temporary
# directory with consolidation every 10 turns, posts every LoCoMo turn of
# ../shared/data/locomo/locomo-dev.json (read in place, never copied) as a
# session turn, lets consolidation make the memories, and prints evidence
# recall@k per search mode beside the raw-turn figures of locomo_bench.py and
# the BM25 baseline, all in this one run. See bench/pipeline/README.md.
#
#   bash bench/locomo/run_pipeline.sh [stratad options]   e.g. --extractor llm --llm-url ...
#   STRATAD=/path/to/stratad  LOCOMO_DATA=/path/to/locomo.json  JSON_OUT=/path/out.json
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
"$STRATAD" --data-dir "$DIR" --port "$PORT" --fsync no --log-level warn \
    --consolidate-every 10 --buffer-turns 20 --session-ttl 0 "$@" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
python3 bench/locomo/locomo_pipeline.py --url "http://127.0.0.1:$PORT" --data "$DATA" \
    ${JSON_OUT:+--json-out "$JSON_OUT"}
