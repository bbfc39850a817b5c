#!/usr/bin/env bash
# Installs what is needed, builds Strata in Release mode and starts stratad on
# the embedded default: data under ./data, listening on 127.0.0.1:7700.
# Extra arguments go to stratad (see `build/stratad --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
exec ./build/stratad --data-dir ./data --host 127.0.0.1 --port 7700 "$@"
