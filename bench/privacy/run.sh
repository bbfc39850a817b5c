#!/usr/bin/env bash
# Privacy benchmark: what encryption at rest costs on the write path, and what
# a right-to-be-forgotten costs on a populated log. Not a test; see README.md.
#
#   bench/privacy/run.sh            build (Release) if needed, run, print a table
#
# For each of "plain" and "encrypted" (AES-256-GCM, a master key from a file):
#   1. wrk POSTs turns for DURATION over SESSIONS sessions (one user each);
#   2. DELETE /user/bench-user-7/memory on that populated log, timed.
# Baselines run on the same machine in the same run: the plain server for the
# encryption ratio, and `cp -r` of the same log directory for the forget (the
# compaction rewrites the segments holding the user: a copy of the whole log
# is the floor of any rewrite).
# Knobs: DURATION (10s), CONNS (50), THREADS (2), SESSIONS (1000).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
THREADS="${THREADS:-2}"
SESSIONS="${SESSIONS:-1000}"
command -v wrk >/dev/null || { echo "wrk not found (scripts/setup.sh installs it)" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-privacy.XXXXXX")"
PID=""
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${STRATAD:-}" ]; then
    BUILD="$ROOT/build-bench"
    if [ ! -x "$BUILD/stratad" ] || [ -n "$(find "$ROOT/src" "$ROOT/include" -newer "$BUILD/stratad" -print -quit)" ]; then
        echo "== building stratad (Release) in $BUILD" >&2
        cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BUILD" --target stratad >/dev/null
    fi
    STRATAD="$BUILD/stratad"
fi
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/master.key"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_case() {   # name extra-args... -> prints "rps p99_ms forget_ms erased log_mb cp_ms"
    local name=$1; shift
    local port; port="$(free_port)"
    local url="http://127.0.0.1:$port"
    env -u STRATA_CONFIG "$STRATAD" --host 127.0.0.1 --port "$port" --data-dir "$TMP/$name" \
        --fsync everysec --log-level warn "$@" >"$TMP/$name.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 200); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
    STRATA_BENCH_MODE=post STRATA_BENCH_SESSIONS=$SESSIONS \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/bench/l1/turns.lua" "$url" \
        >"$TMP/wrk-$name.txt" 2>&1
    local res; res="$(grep '^RESULT' "$TMP/wrk-$name.txt")"
    local rps p99
    rps="$(sed -n 's/.* rps=\([^ ]*\).*/\1/p' <<<"$res")"
    p99="$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$res")"
    local log_bytes
    log_bytes="$(curl -fsS "$url/metrics" | sed -n 's/^strata_log_bytes \(.*\)/\1/p')"
    local t0 t1
    t0="$(date +%s%N)"
    local receipt; receipt="$(curl -fsS -XDELETE "$url/user/bench-user-7/memory")"
    t1="$(date +%s%N)"
    local erased; erased="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["deleted"]["log"])' "$receipt")"
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    local c0 c1
    c0="$(date +%s%N)"; cp -r "$TMP/$name/log" "$TMP/$name-logcopy"; sync; c1="$(date +%s%N)"
    echo "$rps $p99 $(( (t1 - t0) / 1000000 )) $erased $(python3 -c "print(round(${log_bytes:-0}/1048576,1))") $(( (c1 - c0) / 1000000 ))"
}

echo "== plain" >&2
read -r P_RPS P_P99 P_FMS P_ER P_MB P_CP <<<"$(run_case plain)"
echo "== encrypted" >&2
read -r E_RPS E_P99 E_FMS E_ER E_MB E_CP <<<"$(run_case enc --master-key-file "$TMP/master.key")"
python3 - "$P_RPS" "$P_P99" "$P_FMS" "$P_ER" "$P_MB" "$P_CP" "$E_RPS" "$E_P99" "$E_FMS" "$E_ER" "$E_MB" "$E_CP" <<'PY'
import sys
p = sys.argv[1:7]; e = sys.argv[7:13]
print("%-10s %10s %8s %10s %8s %8s %8s" % ("", "POST/s", "p99 ms", "forget ms", "erased", "log MB", "cp ms"))
for name, v in (("plain", p), ("encrypted", e)):
    print("%-10s %10s %8s %10s %8s %8s %8s" % (name, *v))
print("encryption: %.2fx the plain write throughput" % (float(e[0]) / float(p[0])))
print("forget: %.2fx a plain copy of the log (plain), %.2fx (encrypted)"
      % (float(p[2]) / max(1.0, float(p[5])), float(e[2]) / max(1.0, float(e[5]))))
PY
