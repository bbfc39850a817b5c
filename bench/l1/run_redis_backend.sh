#!/usr/bin/env bash
# L1 benchmark with the Redis backend: stratad --l1 redis against one
# redis-server, the same wrk workloads as bench/l1/run.sh, then bare
# redis-benchmark against the same redis-server in the same run, and the
# Strata-over-Redis overhead. Not a test; see bench/l1/redis_backend.md.
#
#   bench/l1/run_redis_backend.sh
#   STRATAD=/path/to/stratad bench/l1/run_redis_backend.sh
#   MODE=cluster bench/l1/run_redis_backend.sh
#   MODE=tls bench/l1/run_redis_backend.sh
#
# MODE: standalone (default): one redis-server. cluster: a 3-master Redis
# Cluster on loopback (tests/support/redis_cluster.sh -n 3 -r 0), stratad
# --redis-cluster 1, baselines with redis-benchmark --cluster. tls: one
# redis-server with a plain and a TLS port (certificates made by
# tests/support/redis_tls_certs.sh); stratad runs plain, then with
# --redis-tls, and redis-benchmark runs plain, then --tls --cacert, so the
# relay's cost (src/l1/redis_tls.c) is measured against Redis's own TLS cost
# on the same server in the same run.
#
# Knobs (environment): DURATION (10s), CONNS (50), THREADS (wrk threads, 2),
# MODE (standalone), SESSIONS (1000), REDIS_N (200000 requests per redis-benchmark test),
# STRATA_THREADS (stratad --threads; default: its own), REDIS_WAIT (0:
# stratad --redis-wait; needs replicas, so only 0 is useful with one server),
# EMBEDDED (1: also run the embedded L1 first, as the reference; 0: skip;
# default 1 in standalone mode, 0 otherwise),
# KEEP_TMP=1 keeps the temporary directory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
THREADS="${THREADS:-2}"
SESSIONS="${SESSIONS:-1000}"
REDIS_N="${REDIS_N:-200000}"
STRATA_THREADS="${STRATA_THREADS:-}"
REDIS_WAIT="${REDIS_WAIT:-0}"
MODE="${MODE:-standalone}"
case "$MODE" in
    standalone) EMBEDDED="${EMBEDDED:-1}" ;;
    cluster|tls) EMBEDDED="${EMBEDDED:-0}" ;;
    *) echo "run_redis_backend.sh: MODE must be standalone, cluster or tls" >&2; exit 2 ;;
esac
SUPPORT="$ROOT/tests/support"

need() { command -v "$1" >/dev/null 2>&1 || { echo "run_redis_backend.sh: $1 not found (scripts/setup.sh installs it)" >&2; exit 1; }; }
need wrk; need redis-server; need redis-benchmark; need redis-cli; need python3; need curl

# ---- processes we start, and their cleanup ---------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-l1r.XXXXXX")"
STRATAD_PID=""
REDIS_PID=""
CLUSTER_DIR=""
stop_pid() {
    local pid=$1
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}
cleanup() {
    local rc=$?
    stop_pid "$STRATAD_PID"
    stop_pid "$REDIS_PID"
    [ -z "$CLUSTER_DIR" ] || "$SUPPORT/redis_cluster.sh" stop "$CLUSTER_DIR" || true
    if [ "${KEEP_TMP:-0}" = "1" ]; then
        echo "run_redis_backend.sh: kept $TMP" >&2
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

# ---- stratad: $STRATAD, else build/ (RelWithDebInfo by default), rebuilt if we can
if [ -z "${STRATAD:-}" ]; then
    BUILD="$ROOT/build"
    if [ -f "$BUILD/CMakeCache.txt" ]; then
        # Others may be mid-edit: one retry, then fall back to the binary we have.
        cmake --build "$BUILD" --target stratad >"$TMP/build.log" 2>&1 ||
            { sleep 5; cmake --build "$BUILD" --target stratad >"$TMP/build.log" 2>&1; } ||
            echo "run_redis_backend.sh: build failed (see KEEP_TMP=1 $TMP/build.log); using the existing binary" >&2
    fi
    STRATAD="$BUILD/stratad"
fi
[ -x "$STRATAD" ] || { echo "run_redis_backend.sh: no stratad at $STRATAD" >&2; exit 1; }
HELP="$("$STRATAD" --help 2>&1 || true)"
grep -q -- '--l1' <<<"$HELP" ||
    { echo "run_redis_backend.sh: $STRATAD has no --l1 flag" >&2; exit 1; }

# ---- Redis (one deployment for the whole run) -----------------------------------
# RPORT: the (first) node's plain port; RPORTS: every node's plain port (stats,
# seeding); TPORT and CA: the TLS port and the CA file (MODE=tls).
TPORT=""
CA=""
if [ "$MODE" = cluster ]; then
    echo "== redis_cluster.sh start -n 3 -r 0 (AOF everysec)" >&2
    eval "$("$SUPPORT/redis_cluster.sh" start -n 3 -r 0 -d "$TMP/cluster")"
    CLUSTER_DIR="$REDIS_CLUSTER_DIR"
    RPORTS="$REDIS_CLUSTER_PORTS"
    RPORT="${RPORTS%% *}"
else
    RPORT="$(free_port)"
    RPORTS="$RPORT"
    TLS_ARGS=()
    if [ "$MODE" = tls ]; then
        need openssl
        bash "$SUPPORT/redis_tls_certs.sh" "$TMP/certs"
        CA="$TMP/certs/ca.pem"
        TPORT="$(free_port)"
        TLS_ARGS=(--tls-port "$TPORT" --tls-cert-file "$TMP/certs/server.pem"
                  --tls-key-file "$TMP/certs/server.key" --tls-ca-cert-file "$CA"
                  --tls-auth-clients no)
    fi
    mkdir -p "$TMP/redis"
    echo "== redis-server --port $RPORT ${TLS_ARGS[*]} --appendonly yes --appendfsync everysec --save ''" >&2
    redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes \
        --appendfsync everysec --save '' --daemonize no --logfile "$TMP/redis.log" \
        "${TLS_ARGS[@]}" &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    redis-cli -p "$RPORT" ping >/dev/null
fi
rcli() { redis-cli -p "$RPORT" "$@"; }
rall() { local p; for p in $RPORTS; do redis-cli -p "$p" "$@"; done; }   # every node

# Redis work since the last CONFIG RESETSTAT, as "redis_calls=N redis_scripts=M":
# every command executed (commandstats counts the ones a Lua script runs too) and
# the EVAL/EVALSHA among them (client round trips that ran a script).
redis_calls() {
    rall info commandstats | python3 -c '
import sys, re
text = sys.stdin.read()
calls = {}
for m in re.finditer(r"cmdstat_(\S+?):calls=(\d+)", text):   # summed over the nodes
    calls[m.group(1)] = calls.get(m.group(1), 0) + int(m.group(2))
scripts = calls.get("eval", 0) + calls.get("evalsha", 0)
print("redis_calls=%d redis_scripts=%d" % (sum(calls.values()), scripts))'
}

# ---- stratad runs ---------------------------------------------------------------
SPORT=""
start_stratad() {   # label, extra args...
    local label=$1; shift
    SPORT="$(free_port)"
    local args=(--host 127.0.0.1 --port "$SPORT" --data-dir "$TMP/strata-$label" --fsync everysec
                --log-level warn "$@")
    [ -n "$STRATA_THREADS" ] && args+=(--threads "$STRATA_THREADS")
    echo "== stratad ${args[*]}" >&2
    env -u STRATA_CONFIG "$STRATAD" "${args[@]}" >"$TMP/stratad-$label.log" 2>&1 &
    STRATAD_PID=$!
    for _ in $(seq 1 200); do
        curl -fsS "http://127.0.0.1:$SPORT/healthz" >/dev/null 2>&1 && break
        kill -0 "$STRATAD_PID" 2>/dev/null || { echo "stratad died:" >&2; cat "$TMP/stratad-$label.log" >&2; exit 1; }
        sleep 0.05
    done
    curl -fsS "http://127.0.0.1:$SPORT/healthz" >/dev/null ||
        { echo "stratad not ready" >&2; cat "$TMP/stratad-$label.log" >&2; exit 1; }
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
        sys.exit("seeding failed: %d %s" % (r.status, r.read()))
EOF
}

run_wrk() {   # label mode -> prints the RESULT line, plus redis_calls= redis_scripts=
    local label=$1 mode=$2
    echo "== wrk -t$THREADS -c$CONNS -d$DURATION --latency ($label $mode)" >&2
    rall config resetstat >/dev/null
    STRATA_BENCH_MODE=$mode STRATA_BENCH_SESSIONS=$SESSIONS \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/turns.lua" \
        "http://127.0.0.1:$SPORT" >"$TMP/wrk-$label-$mode.txt" 2>&1 ||
        { cat "$TMP/wrk-$label-$mode.txt" >&2; exit 1; }
    local line
    line="$(grep '^RESULT' "$TMP/wrk-$label-$mode.txt")" || { cat "$TMP/wrk-$label-$mode.txt" >&2; exit 1; }
    echo "$line $(redis_calls)"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
check_errors() {
    local r
    for r in "$@"; do
        if [ "$(field errors "$r")" != "0" ] || [ "$(field non2xx "$r")" != "0" ]; then
            echo "run_redis_backend.sh: warning: errors in wrk run: $r" >&2
        fi
    done
}

EMB_POST="-"
EMB_GET="-"
if [ "$EMBEDDED" = "1" ]; then
    start_stratad embedded --l1 embedded
    EMB_POST="$(run_wrk embedded post)"
    EMB_GET="$(run_wrk embedded get)"
    check_errors "$EMB_POST" "$EMB_GET"
    stop_pid "$STRATAD_PID"; STRATAD_PID=""
fi

if [ "$MODE" = cluster ]; then
    SEEDS="$(for p in $RPORTS; do printf '127.0.0.1:%s,' "$p"; done)"
    REDIS_FLAGS=(--redis-cluster 1 --redis-addr "${SEEDS%,}")
else
    REDIS_FLAGS=(--redis-addr "127.0.0.1:$RPORT")
fi
start_stratad redis --l1 redis "${REDIS_FLAGS[@]}" --redis-wait "$REDIS_WAIT"
RED_POST="$(run_wrk redis post)"
RED_GET="$(run_wrk redis get)"
check_errors "$RED_POST" "$RED_GET"
RED_KEYS="$(rall dbsize | awk '{ n += $1 } END { print n }')"
stop_pid "$STRATAD_PID"; STRATAD_PID=""

TLS_POST="-"
TLS_GET="-"
if [ "$MODE" = tls ]; then
    # The same workload through the TLS relay, on the same server, from scratch.
    rall flushall >/dev/null
    start_stratad redis-tls --l1 redis --redis-addr "127.0.0.1:$TPORT" --redis-tls \
        --redis-tls-cacert "$CA" --redis-wait "$REDIS_WAIT"
    TLS_POST="$(run_wrk redis-tls post)"
    TLS_GET="$(run_wrk redis-tls get)"
    check_errors "$TLS_POST" "$TLS_GET"
    stop_pid "$STRATAD_PID"; STRATAD_PID=""
fi

# ---- bare Redis, same server --------------------------------------------------
# Seed the hashes and lists read by HGETALL / LRANGE (keys as __rand_int__ makes
# them; they do not collide with Strata's session:{tenant:id}:... keys). In a
# cluster, redis-benchmark --cluster needs "{tag}" in a custom command's keys
# and replaces it per node by a tag of a slot that node serves; we learn each
# node's tag from a tiny LPUSH run (key mylist:{tag}) and seed its keys there.
seed() {   # key prefix (before the 12-digit number) -> RESP commands on stdout
python3 - "$SESSIONS" "$1" <<'EOF'
import sys
n, prefix = int(sys.argv[1]), sys.argv[2]
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        x = str(x)
        out += "$%d\r\n%s\r\n" % (len(x.encode()), x)
    return out
buf = []
for i in range(n):
    k = prefix + "%012d" % i
    buf.append(cmd("HSET", "%s:state" % k, "current_stage", "greeting",
                   "turn_count", 20, "last_active", 1706500000, "user_id", "bench-user-%d" % i))
    for t in range(20):
        buf.append(cmd("RPUSH", "%s:buffer" % k,
                       '{"role":"user","content":"I would like to book a table for two near '
                       'the office tomorrow evening, please.","ts":1706500000}'))
sys.stdout.write("".join(buf))
EOF
}
if [ "$MODE" = cluster ]; then
    KEYP='session:{tag}:__rand_int__'
    redis-benchmark --cluster -p "$RPORT" -c 6 -n 60 -t lpush >/dev/null   # clients spread over the nodes
    for p in $RPORTS; do
        tagkey="$(redis-cli -p "$p" --scan --pattern 'mylist:*' | head -n 1)"
        [ -n "$tagkey" ] || { echo "run_redis_backend.sh: no redis-benchmark tag on node $p" >&2; exit 1; }
        redis-cli -p "$p" del "$tagkey" >/dev/null
        seed "session:${tagkey#mylist:}:" | redis-cli -p "$p" --pipe >/dev/null
    done
else
    KEYP='session:__rand_int__'
    seed "session:" | rcli --pipe >/dev/null
fi

TURN='{"role":"user","content":"I would like to book a table for two near the office tomorrow evening, please.","ts":1706500000}'
RB_CONN=(-p "$RPORT")
[ "$MODE" = cluster ] && RB_CONN=(--cluster -p "$RPORT")
rb() {   # name, args... -> "name rps p50 p99"
    local name=$1; shift
    echo "== redis-benchmark ${RB_CONN[*]} -c $CONNS -n $REDIS_N $*" >&2
    redis-benchmark "${RB_CONN[@]}" -c "$CONNS" -n "$REDIS_N" --csv "$@" >"$TMP/rb.csv"
    # The "test" column repeats the command unescaped, so read the 7 numeric
    # columns from the right.
    tail -n 1 "$TMP/rb.csv" | python3 -c '
import sys
f = [x.strip().strip("\"") for x in sys.stdin.read().strip().split(",")[-7:]]
rps, avg, mn, p50, p95, p99, mx = f
print(sys.argv[1], rps, p50, p99)' "$name"
}
R_LPUSH="$(rb LPUSH -t lpush)"
R_RPUSH="$(rb RPUSH_spread -r "$SESSIONS" RPUSH "$KEYP:buffer" "$TURN")"
R_HGETALL="$(rb HGETALL -r "$SESSIONS" HGETALL "$KEYP:state")"
R_LRANGE="$(rb LRANGE_20 -r "$SESSIONS" LRANGE "$KEYP:buffer" -20 -1)"
T_LPUSH="-"; T_RPUSH="-"; T_HGETALL="-"; T_LRANGE="-"
if [ "$MODE" = tls ]; then
    RB_CONN=(-p "$TPORT" --tls --cacert "$CA")
    T_LPUSH="$(rb LPUSH -t lpush)"
    T_RPUSH="$(rb RPUSH_spread -r "$SESSIONS" RPUSH "$KEYP:buffer" "$TURN")"
    T_HGETALL="$(rb HGETALL -r "$SESSIONS" HGETALL "$KEYP:state")"
    T_LRANGE="$(rb LRANGE_20 -r "$SESSIONS" LRANGE "$KEYP:buffer" -20 -1)"
fi

# ---- table --------------------------------------------------------------------
python3 - "$EMB_POST" "$EMB_GET" "$RED_POST" "$RED_GET" "$R_LPUSH" "$R_RPUSH" "$R_HGETALL" \
          "$R_LRANGE" "$CONNS" "$DURATION" "$REDIS_N" "$(nproc)" "$REDIS_WAIT" "$RED_KEYS" \
          "$MODE" "$TLS_POST" "$TLS_GET" "$T_LPUSH" "$T_RPUSH" "$T_HGETALL" "$T_LRANGE" <<'EOF'
import sys
(emb_post, emb_get, red_post, red_get, lpush, rpush, hgetall, lrange, conns, dur, rn, cores,
 wait, keys, mode, tls_post, tls_get, t_lpush, t_rpush, t_hgetall, t_lrange) = sys.argv[1:]
def wrk(line):
    f = dict(x.split("=", 1) for x in line.split()[1:])
    n = max(int(f["requests"]), 1)
    return (float(f["rps"]), float(f["p50_ms"]), float(f["p99_ms"]),
            int(f["redis_calls"]) / n, int(f["redis_scripts"]) / n)
def rb(line):
    name, rps, p50, p99 = line.split()
    return name, float(rps), float(p50), float(p99)
rows = []
if emb_post != "-":
    rows += [("embedded POST turns", *wrk(emb_post)), ("embedded GET session", *wrk(emb_get))]
rp, rg = wrk(red_post), wrk(red_get)
rows += [("redis-L1 POST turns", *rp), ("redis-L1 GET session", *rg)]
if tls_post != "-":
    tp, tg = wrk(tls_post), wrk(tls_get)
    rows += [("redis-L1 TLS POST turns", *tp), ("redis-L1 TLS GET session", *tg)]
r = {name: (rps, p50, p99) for name, rps, p50, p99 in map(rb, (lpush, rpush, hgetall, lrange))}
if t_lpush != "-":
    r.update({name + " TLS": (rps, p50, p99)
              for name, rps, p50, p99 in map(rb, (t_lpush, t_rpush, t_hgetall, t_lrange))})
deployment = {"standalone": "one redis-server (AOF everysec)",
              "cluster": "Redis Cluster, 3 masters on loopback (AOF everysec), "
                         "redis-benchmark --cluster",
              "tls": "one redis-server (AOF everysec), plain port and TLS port "
                     "(TLS 1.3, --redis-tls / redis-benchmark --tls)"}[mode]
print()
print("L1 on Redis: %s connections, wrk %s, redis-benchmark -n %s, %s cores, fsync everysec, "
      "%s, --redis-wait %s" % (conns, dur, rn, cores, deployment, wait))
print("%-28s %11s %9s %9s %9s %12s" % ("workload", "requests/s", "p50 ms", "p99 ms",
                                        "cmds/req", "scripts/req"))
for name, rps, p50, p99, cpr, spr in rows:
    print("%-28s %11.0f %9.3f %9.3f %9.2f %12.2f" % (name, rps, p50, p99, cpr, spr))
for k, (rps, p50, p99) in r.items():
    print("%-28s %11.0f %9.3f %9.3f %9s %12s" % ("redis-benchmark " + k, rps, p50, p99, "1", "0"))
print("(cmds/req: Redis commands executed per HTTP request, those run inside Lua scripts "
      "included; scripts/req: EVALSHA/EVAL round trips)")
print("(Strata keys in Redis after the run: %s)" % keys)
print()
print("Strata-over-Redis (throughput ratio: higher is better; latency ratio: lower is better)")
print("%-44s %10s %10s %10s" % ("pair", "rps", "p50", "p99"))
def ratio(a, b):
    return "%.2f" % (a / b) if b else "n/a"
pairs = [("redis-L1 POST turns / LPUSH", rp, r["LPUSH"]),
         ("redis-L1 POST turns / RPUSH_spread", rp, r["RPUSH_spread"]),
         ("redis-L1 GET session / HGETALL", rg, r["HGETALL"]),
         ("redis-L1 GET session / LRANGE_20", rg, r["LRANGE_20"])]
if tls_post != "-":
    pairs += [("redis-L1 TLS POST turns / LPUSH TLS", tp, r["LPUSH TLS"]),
              ("redis-L1 TLS POST turns / RPUSH_spread TLS", tp, r["RPUSH_spread TLS"]),
              ("redis-L1 TLS GET session / HGETALL TLS", tg, r["HGETALL TLS"]),
              ("redis-L1 TLS GET session / LRANGE_20 TLS", tg, r["LRANGE_20 TLS"]),
              ("redis-L1 TLS POST / redis-L1 POST", tp, rp),
              ("redis-L1 TLS GET / redis-L1 GET", tg, rg),
              ("redis-benchmark HGETALL TLS / plain", r["HGETALL TLS"], r["HGETALL"]),
              ("redis-benchmark RPUSH_spread TLS / plain", r["RPUSH_spread TLS"],
               r["RPUSH_spread"])]
if emb_post != "-":
    ep, eg = wrk(emb_post), wrk(emb_get)
    pairs += [("redis-L1 POST / embedded POST", rp, ep), ("redis-L1 GET / embedded GET", rg, eg)]
for name, s, base in pairs:
    print("%-44s %10s %10s %10s" % (name, ratio(s[0], base[0]), ratio(s[1], base[1]),
                                     ratio(s[2], base[2])))
EOF
