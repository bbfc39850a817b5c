#!/usr/bin/env bash
# Build and run the L3 graph benchmark (Strata's graph store against SQLite).
# Usage: bench/graph/run.sh [bench_graph options]   e.g. --queries 2000, --explain
# Needs gcc (or $CC), jansson and SQLite headers (Debian: libjansson-dev,
# libsqlite3-dev; installed here when missing and running as root).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ ! -f /usr/include/sqlite3.h ] || [ ! -f /usr/include/jansson.h ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y libsqlite3-dev libjansson-dev ||
            { apt-get update && apt-get install -y libsqlite3-dev libjansson-dev; }
    else
        echo "bench/graph: install libsqlite3-dev and libjansson-dev first" >&2
        exit 1
    fi
fi

out="${BENCH_OUT:-${TMPDIR:-/tmp}/strata-bench}"
mkdir -p "$out"
"${CC:-gcc}" -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
    -Wstrict-prototypes -Wno-unused-parameter \
    -I"$root/include" -I"$root/src" \
    "$root"/src/core/*.c "$root"/src/l3/*.c "$here/bench_graph.c" \
    -o "$out/bench_graph" -ljansson -lsqlite3 -lpthread -lm
exec "$out/bench_graph" "$@"
