#!/usr/bin/env bash
# Memory-pipeline benchmark: builds libstrata (Release, static) and
# bench_pipeline.c against it, then runs it: one consolidation's latency,
# consolidation and distillation throughput, and turn-append latency with
# consolidation running against the same run with consolidation off.
# Not a test; see bench/pipeline/README.md.
#
#   bench/pipeline/run.sh                    build if needed, run, print a table
#   bench/pipeline/run.sh --duration 20      options go to bench_pipeline:
#       --iters N (A: 1000)  --sessions N (A'/B: 1000)  --per-user K (4)
#       --duration S (C: 10 per run)  --workers W (2)  --loader-rate R (C)
#       --only abc  --probe (print one session's turns and memories)  --keep
#   BUILD=/path/to/build-dir (default /tmp/bp-build)  CC=clang
# Data goes to a temporary directory under $TMPDIR (or /tmp), removed at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="${BUILD:-/tmp/bp-build}"

if [ ! -f "$BUILD/libstrata.a" ] ||
   [ -n "$(find "$ROOT/src" "$ROOT/include" "$ROOT/CMakeLists.txt" -newer "$BUILD/libstrata.a" -print -quit 2>/dev/null)" ]; then
    echo "== building libstrata (Release) in $BUILD" >&2
    GEN=()
    command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/CMakeCache.txt" ] && GEN=(-G Ninja)
    cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" --target strata_static >/dev/null
fi
BIN="$BUILD/bench_pipeline"
if [ ! -x "$BIN" ] || [ "$HERE/bench_pipeline.c" -nt "$BIN" ] || [ "$BUILD/libstrata.a" -nt "$BIN" ]; then
    "${CC:-gcc}" -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
        -Wstrict-prototypes -Wno-unused-parameter \
        -I"$ROOT/include" -I"$ROOT/src" "$HERE/bench_pipeline.c" "$BUILD/libstrata.a" \
        -o "$BIN" -ljansson -lcurl -lcrypto -lssl -lhiredis -lpthread -lm
fi
echo "== $BIN $* (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
exec "$BIN" "$@"
