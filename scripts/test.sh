#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, build with
# AddressSanitizer + UndefinedBehaviorSanitizer, run every unit, fuzz-replay
# and integration test under CTest, then short libFuzzer runs of every fuzz
# target and the ThreadSanitizer pass over the concurrency tests.
#   FUZZ_SECONDS   seconds per fuzz target (default 20; 0 skips fuzzing)
#   SKIP_TSAN=1    skip the ThreadSanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

bash scripts/setup.sh
PY=$(command -v python3)
if ! "$PY" -m pytest --version >/dev/null 2>&1; then
    "$PY" -m pip install -q pytest
fi

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTRATA_SANITIZE=ON \
      -DPython3_EXECUTABLE="$PY" >/dev/null
cmake --build build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

echo "== tests (ASan + UBSan)"
(cd build-asan && ctest --output-on-failure -j "$JOBS")

if [ "${SKIP_TSAN:-0}" != "1" ]; then
    echo "== ThreadSanitizer: concurrency tests"
    cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTRATA_TSAN=ON \
          -DPython3_EXECUTABLE="$PY" >/dev/null
    cmake --build build-tsan
    (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L tsan -j "$JOBS")
fi

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    echo "== fuzzing (${FUZZ_SECONDS}s per target)"
    CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DSTRATA_FUZZ=ON -DPython3_EXECUTABLE="$PY" >/dev/null
    cmake --build build-fuzz
    for f in build-fuzz/tests/fuzz_*; do
        case "$f" in *_replay) continue ;; esac
        [ -x "$f" ] || continue
        name=$(basename "$f")
        work=$(mktemp -d)
        cp -r "$ROOT/tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
        echo "-- $name"
        "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 \
             -artifact_prefix="$ROOT/build-fuzz/$name-" "$work" 2>&1 | tail -n 3
        rm -rf "$work"
    done
fi
echo "== all tests passed"
