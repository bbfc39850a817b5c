#!/usr/bin/env bash
# L1 benchmark: Strata's session routes against Redis doing the same job on the
# same machine. Not a test; see bench/l1/README.md.
#
#   bench/l1/run.sh                  build (Release) if needed, run, print a table
#   STRATAD=/path/to/stratad bench/l1/run.sh     use an existing binary
#
# Knobs (environment): DURATION (10s), CONNS (50), THREADS (wrk threads, 2),
# SESSIONS (1000), REDIS_N (200000 requests per redis-benchmark test),
# STRATA_THREADS (stratad --threads; default: its own), KEEP_TMP=1 keeps the
# temporary directory (logs, data) for a look afterwards.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
THREADS="${THREADS:-2}"
SESSIONS="${SESSIONS:-1000}"
REDIS_N="${REDIS_N:-200000}"
STRATA_THREADS="${STRATA_THREADS:-}"

need() { command -v "$1" >/dev/null 2>&1 || { echo "run.sh: $1 not found (scripts/setup.sh installs it)" >&2; exit 1; }; }
need wrk; need redis-server; need redis-benchmark; need redis-cli; need python3; need curl

# ---- processes we start, and their cleanup ---------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-l1.XXXXXX")"
STRATAD_PID=""
REDIS_PID=""
cleanup() {
    local rc=$?
    for pid in "$STRATAD_PID" "$REDIS_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ "${KEEP_TMP:-0}" = "1" ]; then
        echo "run.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ---- build ------------------------------------------------------------------
if [ -z "${STRATAD:-}" ]; then
    BUILD="$ROOT/build-bench"
    if [ ! -x "$BUILD/stratad" ] || [ -n "$(find "$ROOT/src" "$ROOT/include" "$ROOT/CMakeLists.txt" -newer "$BUILD/stratad" -print -quit 2>/dev/null)" ]; then
        echo "== building stratad (Release) in $BUILD" >&2
        GEN=()
        command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/CMakeCache.txt" ] && GEN=(-G Ninja)
        cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BUILD" --target stratad >/dev/null
    fi
    STRATAD="$BUILD/stratad"
fi
[ -x "$STRATAD" ] || { echo "run.sh: no stratad at $STRATAD" >&2; exit 1; }

# ---- Strata -----------------------------------------------------------------
SPORT="$(free_port)"
SURL="http://127.0.0.1:$SPORT"
STRATA_ARGS=(--host 127.0.0.1 --port "$SPORT" --data-dir "$TMP/strata" --fsync everysec
             --log-level warn)
[ -n "$STRATA_THREADS" ] && STRATA_ARGS+=(--threads "$STRATA_THREADS")
echo "== stratad ${STRATA_ARGS[*]}" >&2
env -u STRATA_CONFIG "$STRATAD" "${STRATA_ARGS[@]}" >"$TMP/stratad.log" 2>&1 &
STRATAD_PID=$!
for _ in $(seq 1 200); do
    curl -fsS "$SURL/healthz" >/dev/null 2>&1 && break
    kill -0 "$STRATAD_PID" 2>/dev/null || { echo "stratad died:" >&2; cat "$TMP/stratad.log" >&2; exit 1; }
    sleep 0.05
done
curl -fsS "$SURL/healthz" >/dev/null || { echo "stratad not ready" >&2; exit 1; }

# Every session exists before the GET run (and each belongs to its own user).
python3 - "$SPORT" "$SESSIONS" <<'EOF'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    body = json.dumps({"user_id": "bench-user-%d" % i, "role": "user", "content": "seed"})
    c.request("POST", "/v1/sessions/bench-%d/turns" % i, body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 201:
        sys.exit("seeding failed: %d" % r.status)
EOF

run_wrk() {   # mode -> prints the RESULT line fields
    local mode=$1
    echo "== wrk -t$THREADS -c$CONNS -d$DURATION --latency ($mode)" >&2
    STRATA_BENCH_MODE=$mode STRATA_BENCH_SESSIONS=$SESSIONS \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/turns.lua" "$SURL" \
        >"$TMP/wrk-$mode.txt" 2>&1 || { cat "$TMP/wrk-$mode.txt" >&2; exit 1; }
    grep '^RESULT' "$TMP/wrk-$mode.txt" || { cat "$TMP/wrk-$mode.txt" >&2; exit 1; }
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

POST_RES="$(run_wrk post)"
GET_RES="$(run_wrk get)"
for r in "$POST_RES" "$GET_RES"; do
    if [ "$(field errors "$r")" != "0" ] || [ "$(field non2xx "$r")" != "0" ]; then
        echo "run.sh: warning: errors in wrk run: $r" >&2
    fi
done
kill -TERM "$STRATAD_PID"; wait "$STRATAD_PID" 2>/dev/null || true; STRATAD_PID=""

# ---- Redis --------------------------------------------------------------------
RPORT="$(free_port)"
mkdir -p "$TMP/redis"
echo "== redis-server --appendonly yes --appendfsync everysec --save ''" >&2
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes \
    --appendfsync everysec --save '' --daemonize no --logfile "$TMP/redis.log" &
REDIS_PID=$!
for _ in $(seq 1 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$RPORT" ping >/dev/null

# Seed the hashes and lists read by HGETALL / LRANGE (keys as __rand_int__ makes them).
python3 - "$SESSIONS" <<'EOF' | redis-cli -p "$RPORT" --pipe >/dev/null
import sys
n = int(sys.argv[1])
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        x = str(x)
        out += "$%d\r\n%s\r\n" % (len(x.encode()), x)
    return out
buf = []
for i in range(n):
    k = "%012d" % i
    buf.append(cmd("HSET", "session:%s:state" % k, "current_stage", "greeting",
                   "turn_count", 20, "last_active", 1706500000, "user_id", "bench-user-%d" % i))
    for t in range(20):
        buf.append(cmd("RPUSH", "session:%s:buffer" % k,
                       '{"role":"user","content":"I would like to book a table for two near '
                       'the office tomorrow evening, please.","ts":1706500000}'))
sys.stdout.write("".join(buf))
EOF

TURN='{"role":"user","content":"I would like to book a table for two near the office tomorrow evening, please.","ts":1706500000}'
rb() {   # name, args... -> "name rps p50 p99"
    local name=$1; shift
    echo "== redis-benchmark -c $CONNS -n $REDIS_N $*" >&2
    redis-benchmark -p "$RPORT" -c "$CONNS" -n "$REDIS_N" --csv "$@" >"$TMP/rb.csv"
    # The "test" column repeats the command unescaped (quotes and all), so read
    # the 7 numeric columns from the right.
    tail -n 1 "$TMP/rb.csv" | python3 -c '
import sys
f = [x.strip().strip("\"") for x in sys.stdin.read().strip().split(",")[-7:]]
rps, avg, mn, p50, p95, p99, mx = f
print(sys.argv[1], rps, p50, p99)' "$name"
}
R_LPUSH="$(rb LPUSH -t lpush)"
R_RPUSH="$(rb RPUSH_spread -r "$SESSIONS" RPUSH 'session:__rand_int__:buffer' "$TURN")"
R_HGETALL="$(rb HGETALL -r "$SESSIONS" HGETALL 'session:__rand_int__:state')"
R_LRANGE="$(rb LRANGE_20 -r "$SESSIONS" LRANGE 'session:__rand_int__:buffer' -20 -1)"

# ---- table --------------------------------------------------------------------
python3 - "$POST_RES" "$GET_RES" "$R_LPUSH" "$R_RPUSH" "$R_HGETALL" "$R_LRANGE" \
          "$CONNS" "$DURATION" "$REDIS_N" "$(nproc)" <<'EOF'
import sys
post, get, lpush, rpush, hgetall, lrange, conns, dur, rn, cores = sys.argv[1:]
def wrk(line):
    f = dict(x.split("=", 1) for x in line.split()[1:])
    return float(f["rps"]), float(f["p50_ms"]), float(f["p99_ms"])
def rb(line):
    name, rps, p50, p99 = line.split()
    return name, float(rps), float(p50), float(p99)
rows = [("strata POST turns", *wrk(post)), ("strata GET session", *wrk(get))]
r = {name: (rps, p50, p99) for name, rps, p50, p99 in map(rb, (lpush, rpush, hgetall, lrange))}
rows += [("redis " + k, *v) for k, v in r.items()]
print()
print("L1 benchmark: %s connections, wrk %s, redis-benchmark -n %s, %s cores, fsync everysec"
      % (conns, dur, rn, cores))
print("%-26s %12s %10s %10s" % ("workload", "requests/s", "p50 ms", "p99 ms"))
for name, rps, p50, p99 in rows:
    print("%-26s %12.0f %10.3f %10.3f" % (name, rps, p50, p99))
print()
print("ratios Strata/Redis (throughput: higher is better; latency: lower is better)")
print("%-34s %10s %10s %10s" % ("pair", "rps", "p50", "p99"))
def ratio(a, b):
    return "%.2f" % (a / b) if b else "n/a"
pairs = [("POST turns / LPUSH", rows[0], r["LPUSH"]),
         ("POST turns / RPUSH_spread", rows[0], r["RPUSH_spread"]),
         ("GET session / HGETALL", rows[1], r["HGETALL"]),
         ("GET session / LRANGE_20", rows[1], r["LRANGE_20"])]
for name, s, red in pairs:
    print("%-34s %10s %10s %10s" % (name, ratio(s[1], red[0]), ratio(s[2], red[1]),
                                     ratio(s[3], red[2])))
EOF
