#!/usr/bin/env bash
# run.sh - the ANN benchmark: Strata's HNSW vs hnswlib vs FAISS IndexHNSWFlat
# on one data set, built with the same flags, run one after another in one
# run (ratios between runs on a shared machine mean little), one thread each.
#
#   bench/ann/run.sh                 # 100k x 384, 1000 queries (about 5 min)
#   N=20000 NQ=200 bench/ann/run.sh  # a quick smaller run
#
# Environment: CFLAGS (default "-O3 -march=native"), OUT (build and data
# directory, default /tmp/strata-bench-ann), N, NQ, DIM, CLUSTERS, SPREAD,
# SKIP (space-separated libraries not to run: strata hnswlib faiss).
# Needs gcc, g++, libhnswlib-dev and libfaiss-dev (Debian packages).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-/tmp/strata-bench-ann}
CFLAGS=${CFLAGS:--O3 -march=native}
N=${N:-100000}
NQ=${NQ:-1000}
DIM=${DIM:-384}
CLUSTERS=${CLUSTERS:-1000}
SPREAD=${SPREAD:-1.0}
SKIP=${SKIP:-}
DATA="$OUT/ann_${N}x${DIM}_q${NQ}_c${CLUSTERS}_s${SPREAD}.bin"
LOG="$OUT/results.txt"
export OMP_NUM_THREADS=1

mkdir -p "$OUT"
for pkg in libhnswlib-dev libfaiss-dev; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        echo "missing $pkg: apt-get install -y libhnswlib-dev libfaiss-dev" >&2
        exit 1
    fi
done

echo "== building with $CFLAGS"
# shellcheck disable=SC2086
gcc -std=c11 -D_GNU_SOURCE $CFLAGS -Wall -Wextra -I"$ROOT/include" -I"$ROOT/src" -I"$HERE" \
    "$ROOT"/src/core/*.c "$ROOT/src/l2/hnsw.c" "$ROOT/src/l2/hnsw_io.c" \
    "$ROOT/src/l2/distance.c" "$HERE/bench_ann.c" -o "$OUT/bench_ann" -lpthread -lm
# shellcheck disable=SC2086
g++ -std=c++17 $CFLAGS -I"$HERE" "$HERE/bench_ann_hnswlib.cpp" -o "$OUT/bench_ann_hnswlib" \
    -lpthread
# shellcheck disable=SC2086
g++ -std=c++17 $CFLAGS -fopenmp -I"$HERE" "$HERE/bench_ann_faiss.cpp" \
    -o "$OUT/bench_ann_faiss" -lfaiss -lblas -llapack -lpthread

if [ ! -f "$DATA" ]; then
    echo "== generating $DATA"
    "$OUT/bench_ann" gen "$DATA" "$N" "$NQ" "$DIM" "$CLUSTERS" "$SPREAD" 1
fi

: >"$LOG"
for lib in strata hnswlib faiss; do
    case " $SKIP " in *" $lib "*) continue ;; esac
    echo "== $lib"
    case $lib in
        strata) "$OUT/bench_ann" run "$DATA" ;;
        hnswlib) "$OUT/bench_ann_hnswlib" "$DATA" ;;
        faiss) "$OUT/bench_ann_faiss" "$DATA" ;;
    esac | tee -a "$LOG"
done

echo
echo "== summary ($N x $DIM, $NQ queries, M=16, ef_construction=200, 1 thread, $CFLAGS)"
awk '
function val(key,   i, kv) {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
# QPS of library l at recall r, linear between the first two sweep points
# (in ef order) whose recalls bracket r; "" when r is outside its curve.
function qps_at(l, r,   i, r0, r1, q0, q1) {
    for (i = 1; i < ne; i++) {
        r0 = rec[l, efs[i]]; r1 = rec[l, efs[i + 1]]
        q0 = qps[l, efs[i]]; q1 = qps[l, efs[i + 1]]
        if (r0 == "" || r1 == "") continue
        if (r >= r0 && r <= r1) {
            if (r1 == r0) return q0
            return q0 + (q1 - q0) * (r - r0) / (r1 - r0)
        }
    }
    return ""
}
/^BUILD / { l = val("lib"); libs[++nl] = l; bs[l] = val("seconds"); rss[l] = val("rss_mb")
            im[l] = val("index_mb") }
/^QUERY / { l = val("lib"); e = val("ef"); rec[l, e] = val("recall"); qps[l, e] = val("qps")
            if (!(e in seen)) { seen[e] = 1; efs[++ne] = e } }
/^FILTER / { filt[++nf] = $0 }
END {
    printf "%-8s %10s %10s %10s %12s %12s\n", "library", "build_s", "rss_MB", "index_MB",
           "build/hnsw", "mem/hnsw"
    for (i = 1; i <= nl; i++) {
        l = libs[i]
        br = ("hnswlib" in bs) ? sprintf("%.2fx", bs[l] / bs["hnswlib"]) : "-"
        mr = ("hnswlib" in rss && rss["hnswlib"] > 0) ? sprintf("%.2fx", rss[l] / rss["hnswlib"]) : "-"
        printf "%-8s %10.1f %10.1f %10.1f %12s %12s\n", l, bs[l], rss[l], im[l], br, mr
    }
    printf "\n%5s", "ef"
    for (i = 1; i <= nl; i++) printf " %9s %9s", libs[i] "_rec", "qps"
    printf " %14s %16s\n", "qps_s/h@ef", "qps_s/h@recall"
    for (j = 1; j <= ne; j++) {
        e = efs[j]
        printf "%5d", e
        for (i = 1; i <= nl; i++) printf " %9s %9s", rec[libs[i], e], qps[libs[i], e]
        r1 = "-"; r2 = "-"
        if (qps["strata", e] != "" && qps["hnswlib", e] != "") {
            r1 = sprintf("%.2fx", qps["strata", e] / qps["hnswlib", e])
            # Both curves read at strata'"'"'s recall; a saturated point (recall
            # 1.0 at several ef) counts at the cheapest ef reaching it.
            q = qps_at("hnswlib", rec["strata", e])
            qs = qps_at("strata", rec["strata", e])
            r2 = (q != "" && qs != "") ? sprintf("%.2fx", qs / q) : "n/a"
        }
        printf " %14s %16s\n", r1, r2
    }
    # Headline: the cheapest ef reaching recall@10 >= 0.95, per library.
    printf "\nfirst ef with recall@10 >= 0.95:"
    for (i = 1; i <= nl; i++) {
        l = libs[i]; best[l] = ""
        for (j = 1; j <= ne; j++) if (rec[l, efs[j]] >= 0.95) { best[l] = efs[j]; break }
        if (best[l] != "") printf "  %s ef=%s (%s qps)", l, best[l], qps[l, best[l]]
    }
    printf "\n"
    if (best["strata"] != "" && best["hnswlib"] != "")
        printf "QPS ratio strata/hnswlib at recall >= 0.95: %.2fx\n",
               qps["strata", best["strata"]] / qps["hnswlib", best["hnswlib"]]
    for (i = 1; i <= nf; i++) print filt[i]
}' "$LOG"
