#!/usr/bin/env bash
# Graph benchmark over HTTP: the same power-law graph and the same subgraph
# queries as bench_graph.c, through stratad's routes, next to the in-process
# numbers (Strata and SQLite) of bench_graph in the same run. Not a test; see
# bench/graph/README.md, "Over HTTP".
#
#   bench/graph/http_bench.sh                      build (Release) if needed, run, print tables
#   STRATAD=/path/to/stratad bench/graph/http_bench.sh
#   NODES=20000 EDGES=200000 bench/graph/http_bench.sh
#
# Knobs (environment): NODES (100000), EDGES (1000000), LIMIT (1000),
# DURATION (10s per wrk run), CONNS (50), THREADS (wrk threads, 2),
# SINGLE (1: also a 1-connection run per depth, latency without queueing),
# LOAD_CONNS (16, connections of the loader), QUERIES (2000, bench_graph
# --queries; 10000, its default, adds ~2 min, mostly SQLite), INPROC (1: run
# bench_graph; 0 skips it), STRATA_THREADS (stratad --threads; default its
# own), LOAD_TIMEOUT (900: seconds a load phase may take before it fails),
# KEEP_TMP=1 keeps the temporary directory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NODES="${NODES:-100000}"
EDGES="${EDGES:-1000000}"
LIMIT="${LIMIT:-1000}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
THREADS="${THREADS:-2}"
SINGLE="${SINGLE:-1}"
LOAD_CONNS="${LOAD_CONNS:-16}"
QUERIES="${QUERIES:-2000}"
INPROC="${INPROC:-1}"
STRATA_THREADS="${STRATA_THREADS:-}"
CENTRES=10000   # bench_graph's default --queries: the centres it would draw

need() { command -v "$1" >/dev/null 2>&1 || { echo "http_bench.sh: $1 not found" >&2; exit 1; }; }
need wrk; need python3; need curl

# ---- processes we start, and their cleanup ---------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-graph-http.XXXXXX")"
STRATAD_PID=""
cleanup() {
    local rc=$?
    if [ -n "$STRATAD_PID" ] && kill -0 "$STRATAD_PID" 2>/dev/null; then
        kill -TERM "$STRATAD_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$STRATAD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$STRATAD_PID" 2>/dev/null || true
        wait "$STRATAD_PID" 2>/dev/null || true
    fi
    if [ "${KEEP_TMP:-0}" = "1" ]; then
        echo "http_bench.sh: kept $TMP" >&2
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
now() { date +%s.%N; }

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
[ -x "$STRATAD" ] || { echo "http_bench.sh: no stratad at $STRATAD" >&2; exit 1; }

# ---- the graph: bench_graph.c's generator, ported ---------------------------
# Same splitmix64 stream, same draws in the same order, so the nodes, edges,
# weights and the first 10,000 centres are the ones bench_graph builds
# (checked: 100k/1M gives max in-degree 1793, max out-degree 11, as it prints).
echo "== generating $NODES nodes, $EDGES edges" >&2
python3 - "$NODES" "$EDGES" "$CENTRES" "$TMP" <<'EOF'
import sys
n_nodes, n_edges, n_centres, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
M64 = (1 << 64) - 1
ATTACH_M = 10
LABELS = ["User", "Topic", "Preference", "Product", "Constraint"]
TYPES = ["INTERESTED_IN", "RELATED_TO", "HAS_CONSTRAINT", "PREFERS"]
state = 0x5eed5eed12345678
def rng_next():
    global state
    state = (state + 0x9e3779b97f4a7c15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)
src, dst, typ, ends = [], [], [], []
m0 = ATTACH_M + 1
for i in range(m0):
    for j in range(i + 1, m0):
        if len(src) < n_edges:
            src.append(j); dst.append(i); typ.append(rng_next() % 4)
            ends.append(i); ends.append(j)
v = m0
while v < n_nodes and len(src) < n_edges:
    chosen = []
    while len(chosen) < ATTACH_M and len(src) < n_edges:
        t = ends[rng_next() % len(ends)]
        if t in chosen:
            continue
        chosen.append(t)
        src.append(v); dst.append(t); typ.append(rng_next() % 4)
    for c in chosen:
        ends.append(v); ends.append(c)
    v += 1
while len(src) < n_edges:
    a = rng_next() % n_nodes
    b = ends[rng_next() % len(ends)]
    if a == b:
        continue
    src.append(a); dst.append(b); typ.append(rng_next() % 4)
weights = [(rng_next() % 1000) / 1000.0 for _ in range(len(src))]
centres = [rng_next() % n_nodes for _ in range(n_centres)]
with open(out + "/nodes.req", "w") as f:
    for i in range(n_nodes):
        f.write('/v1/graph/nodes/n:%d\t{"label":"%s","properties":{"name":"node %d","rank":%d}}\n'
                % (i, LABELS[i % 5], i, i))
with open(out + "/edges.req", "w") as f:
    for a, b, t, w in zip(src, dst, typ, weights):
        f.write('/v1/graph/edges\t{"from":"n:%d","to":"n:%d","type":"%s","properties":{"weight":%r}}\n'
                % (a, b, TYPES[t], w))
with open(out + "/centres.txt", "w") as f:
    f.write("".join("%d\n" % c for c in centres))
indeg = [0] * n_nodes
outdeg = [0] * n_nodes
for a in src:
    outdeg[a] += 1
for b in dst:
    indeg[b] += 1
print("graph: %d nodes, %d edges, max in-degree %d, max out-degree %d"
      % (n_nodes, len(src), max(indeg), max(outdeg)))
EOF

# ---- stratad ----------------------------------------------------------------
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
# --embedder hash: the graph needs no embedder, and the default (auto) would
# load MiniLM's weights when models/ has them (~90 MiB of RSS, slower start).
ARGS=(--host 127.0.0.1 --port "$PORT" --data-dir "$TMP/data" --fsync no --embedder hash
      --log-level warn)
[ -n "$STRATA_THREADS" ] && ARGS+=(--threads "$STRATA_THREADS")
echo "== stratad ${ARGS[*]}" >&2
env -u STRATA_CONFIG "$STRATAD" "${ARGS[@]}" >"$TMP/stratad.log" 2>&1 &
STRATAD_PID=$!
for _ in $(seq 1 200); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$STRATAD_PID" 2>/dev/null || { echo "stratad died:" >&2; cat "$TMP/stratad.log" >&2; exit 1; }
    sleep 0.05
done
curl -fsS "$URL/healthz" >/dev/null || { echo "stratad not ready" >&2; exit 1; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# ---- load: every node, then every edge, each one PUT ------------------------
load() {   # file -> RESULT line
    local file=$1 done_file="$TMP/load.done" wpid
    : >"$done_file"
    STRATA_BENCH_MODE=load STRATA_BENCH_FILE="$file" STRATA_BENCH_THREADS="$THREADS" \
        STRATA_BENCH_DONE="$done_file" \
        wrk -t"$THREADS" -c"$LOAD_CONNS" -d"${LOAD_TIMEOUT:-900}s" --timeout 30s -s "$HERE/subgraph.lua" "$URL" \
        >"$TMP/wrk-load.txt" 2>&1 &
    wpid=$!
    # Each wrk thread stops when its share is answered; wrk itself sleeps for
    # -d unless interrupted, so interrupt it when every thread is done.
    while kill -0 "$wpid" 2>/dev/null && [ "$(wc -l <"$done_file")" -lt "$THREADS" ]; do
        sleep 0.05
    done
    kill -INT "$wpid" 2>/dev/null || true
    wait "$wpid" || { cat "$TMP/wrk-load.txt" >&2; exit 1; }
    local r
    r="$(grep '^RESULT' "$TMP/wrk-load.txt")" || { cat "$TMP/wrk-load.txt" >&2; exit 1; }
    if [ "$(field bad "$r")" != "0" ] || [ "$(field errors "$r")" != "0" ] ||
       [ "$(field ok "$r")" != "$(field sent "$r")" ]; then
        cat "$TMP/wrk-load.txt" >&2
        echo "http_bench.sh: load of $file failed: $r" >&2
        exit 1
    fi
    echo "$r"
}
echo "== loading nodes (wrk -t$THREADS -c$LOAD_CONNS, one PUT /v1/graph/nodes/{id} each)" >&2
LOAD_NODES="$(load "$TMP/nodes.req")"
echo "   $LOAD_NODES" >&2
echo "== loading edges (one PUT /v1/graph/edges each)" >&2
LOAD_EDGES="$(load "$TMP/edges.req")"
echo "   $LOAD_EDGES" >&2
METRICS="$(curl -fsS "$URL/metrics")"
GNODES="$(awk '$1=="strata_l3_nodes"{print $2}' <<<"$METRICS")"
GEDGES="$(awk '$1 ~ /^strata_l3_current_edges/{print $2}' <<<"$METRICS")"
[ -n "$GEDGES" ] || GEDGES="$(awk '$1 ~ /^strata_l3_edges/{print $2}' <<<"$METRICS")"
RSS_KB="$(awk '/^VmRSS/{print $2}' "/proc/$STRATAD_PID/status")"
LOG_MB="$(du -sm "$TMP/data" | cut -f1)"
echo "   server: $GNODES nodes, $GEDGES edges, RSS $((RSS_KB / 1024)) MiB, data dir $LOG_MB MiB" >&2
# One query by hand, to see it answers what it should.
curl -fsS "$URL/v1/graph/subgraph?center=n:1&depth=1&limit=5" >/dev/null

# ---- queries ------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
srv_ticks() { awk '{print $14 + $15}' "/proc/$STRATAD_PID/stat"; }   # utime + stime
query() {   # depth conns -> RESULT line (+ srv_cpu_us)
    local depth=$1 conns=$2 thr=$THREADS
    [ "$conns" -lt "$thr" ] && thr=$conns
    echo "== wrk -t$thr -c$conns -d$DURATION --latency: depth $depth, limit $LIMIT, direction both" >&2
    local t0
    t0="$(srv_ticks)"
    STRATA_BENCH_MODE=query STRATA_BENCH_CENTRES="$TMP/centres.txt" STRATA_BENCH_DEPTH="$depth" \
        STRATA_BENCH_LIMIT="$LIMIT" STRATA_BENCH_DIRECTION=both \
        wrk -t"$thr" -c"$conns" -d"$DURATION" --latency -s "$HERE/subgraph.lua" "$URL" \
        >"$TMP/wrk-q$depth-c$conns.txt" 2>&1 || { cat "$TMP/wrk-q$depth-c$conns.txt" >&2; exit 1; }
    local r t1 req
    t1="$(srv_ticks)"
    r="$(grep '^RESULT' "$TMP/wrk-q$depth-c$conns.txt")" || { cat "$TMP/wrk-q$depth-c$conns.txt" >&2; exit 1; }
    # stratad's CPU time (user + system, all its threads) per request: unlike
    # wall-clock latency it does not count time other processes held the cores.
    req="$(field requests "$r")"
    r="$r srv_cpu_us=$(python3 -c "print('%.1f' % (($t1 - $t0) / $CLK_TCK * 1e6 / max($req, 1)))")"
    if [ "$(field errors "$r")" != "0" ] || [ "$(field non2xx "$r")" != "0" ]; then
        echo "http_bench.sh: warning: errors in wrk run: $r" >&2
    fi
    echo "   $r" >&2
    echo "$r"
}
Q1="$(query 1 "$CONNS")"
Q2="$(query 2 "$CONNS")"
Q1S=""; Q2S=""
if [ "$SINGLE" = "1" ]; then
    Q1S="$(query 1 1)"
    Q2S="$(query 2 1)"
fi
kill -TERM "$STRATAD_PID"; wait "$STRATAD_PID" 2>/dev/null || true; STRATAD_PID=""

# ---- in process: bench_graph on the same graph ---------------------------------
INPROC_OUT="$TMP/inproc.txt"
: >"$INPROC_OUT"
if [ "$INPROC" = "1" ]; then
    echo "== in process: bench/graph/run.sh --nodes $NODES --edges $EDGES --queries $QUERIES --limit $LIMIT" >&2
    BENCH_OUT="$TMP/inproc-build" "$HERE/run.sh" --nodes "$NODES" --edges "$EDGES" \
        --queries "$QUERIES" --limit "$LIMIT" | tee "$INPROC_OUT" >&2
fi

# ---- tables -------------------------------------------------------------------
python3 - "$NODES" "$EDGES" "$LIMIT" "$CONNS" "$DURATION" "$(nproc)" "$QUERIES" "$INPROC_OUT" \
          "$LOAD_NODES" "$LOAD_EDGES" "$GNODES" "$GEDGES" "$RSS_KB" "$LOG_MB" \
          "$Q1" "$Q2" "$Q1S" "$Q2S" <<'EOF'
import re, sys
(nodes, edges, limit, conns, dur, cores, queries, inproc_path, load_n, load_e, gnodes, gedges,
 rss_kb, log_mb, q1, q2, q1s, q2s) = sys.argv[1:]
def kv(line):
    return dict(x.split("=", 1) for x in line.split()[1:]) if line else None
ln, le = kv(load_n), kv(load_e)
print()
print("graph over HTTP: %s nodes, %s edges (bench_graph.c's generator), %s cores, stratad --fsync no"
      % (nodes, edges, cores))
print("load: nodes %.1f s (%.0f PUT/s), edges %.1f s (%.0f PUT/s); server holds %s nodes, %s edges,"
      " RSS %.0f MiB, data dir %s MiB"
      % (float(ln["secs"]), float(ln["rps"]), float(le["secs"]), float(le["rps"]), gnodes, gedges,
         int(rss_kb) / 1024, log_mb))
inproc = {}
for line in open(inproc_path):
    m = re.match(r"\s*(strata\+json|strata|sqlite)\s+(depth\d/\w+)\s+p50\s+([\d.]+)\s+p99\s+([\d.]+)"
                 r"\s+mean\s+[\d.]+\s+\|\s+cpu p50\s+([\d.]+)\s+p99\s+([\d.]+)", line)
    if m:
        inproc[(m.group(1), m.group(2))] = tuple(float(m.group(i)) for i in range(3, 7))
print()
print("subgraph, direction both, limit %s; HTTP: wrk %s; p50/p99 wall clock in us;" % (limit, dur))
print("CPU: stratad's user+system time per request (srv), or the in-process thread CPU p50")
print("%-7s %-34s %10s %10s %10s %10s %12s" % ("query", "where", "req/s", "p50 us", "p99 us",
                                              "KB/resp", "CPU us/req"))
rows = {}
for d, qc, qs in (("depth1", q1, q1s), ("depth2", q2, q2s)):
    for label, q in (("HTTP, %s connections" % conns, qc), ("HTTP, 1 connection", qs)):
        r = kv(q)
        if r is None:
            continue
        rows[(d, label)] = (float(r["p50_ms"]) * 1000, float(r["p99_ms"]) * 1000)
        print("%-7s %-34s %10.0f %10.0f %10.0f %10.1f %12s" % (d, label, float(r["rps"]),
              float(r["p50_ms"]) * 1000, float(r["p99_ms"]) * 1000, float(r["bytes_per_req"]) / 1024,
              "%.1f srv" % float(r["srv_cpu_us"])))
    for eng, label in (("strata", "in process: graph_subgraph"),
                       ("strata+json", "in process: + to_json"),
                       ("sqlite", "in process: SQLite recursive CTE")):
        v = inproc.get((eng, d + "/both"))
        if v is None:
            continue
        rows[(d, eng)] = v[:2]
        print("%-7s %-34s %10s %10.1f %10.1f %10s %12s" % (d, label, "-", v[0], v[1], "-",
                                                           "%.1f p50" % v[2]))
if not inproc:
    sys.exit(0)
print()
print("ratios (p50, p99); > 1 means the first is slower")
print("%-7s %-40s %10s %10s" % ("query", "pair", "p50", "p99"))
for d in ("depth1", "depth2"):
    pairs = []
    if (d, "HTTP, 1 connection") in rows:
        pairs.append(("HTTP 1 conn / in-process +json", rows[(d, "HTTP, 1 connection")], rows.get((d, "strata+json"))))
        pairs.append(("SQLite in process / HTTP 1 conn", rows.get((d, "sqlite")), rows[(d, "HTTP, 1 connection")]))
    pairs.append(("HTTP %s conns / in-process +json" % conns, rows[(d, "HTTP, %s connections" % conns)], rows.get((d, "strata+json"))))
    pairs.append(("SQLite in process / HTTP %s conns" % conns, rows.get((d, "sqlite")), rows[(d, "HTTP, %s connections" % conns)]))
    for name, a, b in pairs:
        if a is None or b is None:
            continue
        print("%-7s %-40s %9.1fx %9.1fx" % (d, name, a[0] / b[0], a[1] / b[1]))
EOF
