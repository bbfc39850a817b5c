#!/usr/bin/env bash
# redis_cluster.sh - a throwaway Redis Cluster on loopback, for tests and
# benchmarks. Every node runs in its own directory under one temporary dir,
# with AOF (appendfsync everysec), no RDB snapshots, a short
# cluster-node-timeout so failovers happen in seconds, and no delay before a
# replica's full sync.
#
#   redis_cluster.sh start [-n NODES] [-r REPLICAS] [-t NODE_TIMEOUT_MS] [-d DIR] [-w PID]
#                          [-T CERTDIR]
#       Starts NODES redis-server processes (default 6) on free ports, creates
#       the cluster with `redis-cli --cluster create ... --cluster-replicas
#       REPLICAS --cluster-yes` (default 1), waits for cluster_state:ok on every
#       node and prints, eval-able:
#           REDIS_CLUSTER_DIR=/tmp/strata-redis-cluster.XXXX
#           REDIS_CLUSTER_PORTS="7001 7002 ..."
#       -w PID: also stop the cluster once process PID is gone (a test that
#       crashes does not leave servers behind).
#       -T CERTDIR: TLS too (certificates from redis_tls_certs.sh): every node
#       also gets a TLS port, with tls-cluster and tls-replication on (the bus
#       and replication run over TLS; the cluster is created through the TLS
#       ports). The plain ports stay, for redis-cli here and for test helpers;
#       Redis 7 announces TLS ports to TLS clients (CLUSTER SLOTS, MOVED,
#       ASK) and plain ports to plain ones. Also prints
#           REDIS_CLUSTER_TLS_PORTS="8001 8002 ..."     (same order)
#   redis_cluster.sh stop DIR
#       Stops every node of the cluster in DIR and removes DIR.
#   redis_cluster.sh restart DIR PORT
#       Starts node PORT again from its config (after a kill): it rejoins the
#       cluster, as a replica if its slots were failed over meanwhile.
#
# Needs redis-server and redis-cli (>= 5) in PATH.
set -euo pipefail

die() { echo "redis_cluster.sh: $*" >&2; exit 1; }

port_free() {
    # Nothing listening on the port nor on its cluster bus port (+10000).
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null &&
        ! (exec 3<>"/dev/tcp/127.0.0.1/$(($1 + 10000))") 2>/dev/null
}

wait_ping() {   # port, tries of 0.1 s
    local i
    for ((i = 0; i < $2; i++)); do
        if [ "$(redis-cli -p "$1" ping 2>/dev/null || true)" = PONG ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_node() {  # dir port timeout_ms [tls_port certdir]
    local d="$1/$2"
    mkdir -p "$d"
    if [ -n "${4:-}" ]; then
        cat >"$d/tls.conf" <<EOF
tls-port $4
tls-cert-file $5/server.pem
tls-key-file $5/server.key
tls-ca-cert-file $5/ca.pem
tls-auth-clients no
tls-cluster yes
tls-replication yes
EOF
    else
        : >"$d/tls.conf"
    fi
    cat >"$d/redis.conf" <<EOF
port $2
bind 127.0.0.1
daemonize yes
pidfile $d/redis.pid
logfile $d/redis.log
dir $d
save ""
appendonly yes
appendfsync everysec
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $3
repl-diskless-sync-delay 0
include $d/tls.conf
EOF
    redis-server "$d/redis.conf" >/dev/null 2>&1 || return 1
    wait_ping "$2" 50
}

cmd_start() {
    local nodes=6 replicas=1 timeout_ms=2000 dir="" watch="" certs=""
    local OPTIND opt
    while getopts "n:r:t:d:w:T:" opt; do
        case $opt in
            n) nodes=$OPTARG ;;
            r) replicas=$OPTARG ;;
            t) timeout_ms=$OPTARG ;;
            d) dir=$OPTARG ;;
            w) watch=$OPTARG ;;
            T) certs=$(cd "$OPTARG" && pwd) || die "no certificate dir $OPTARG" ;;
            *) die "bad option" ;;
        esac
    done
    command -v redis-server >/dev/null || die "redis-server not in PATH"
    command -v redis-cli >/dev/null || die "redis-cli not in PATH"
    if [ -z "$dir" ]; then
        dir=$(mktemp -d /tmp/strata-redis-cluster.XXXXXX)
    fi
    mkdir -p "$dir"
    local ports=() addrs=() tls_ports=() tries=0 p t=""
    while [ "${#ports[@]}" -lt "$nodes" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 200 ] || { cmd_stop "$dir"; die "no free ports"; }
        p=$((20000 + RANDOM % 30000))
        port_free "$p" || continue
        if [ -n "$certs" ]; then
            t=$((20000 + RANDOM % 30000))
            [ "$t" != "$p" ] && port_free "$t" || continue
        fi
        if start_node "$dir" "$p" "$timeout_ms" "$t" "$certs"; then
            ports+=("$p")
            if [ -n "$certs" ]; then
                tls_ports+=("$t")
                addrs+=("127.0.0.1:$t")
            else
                addrs+=("127.0.0.1:$p")
            fi
        else
            rm -rf "${dir:?}/$p" # lost a race for the port: pick another
        fi
    done
    local tls_cli=()
    [ -z "$certs" ] || tls_cli=(--tls --cacert "$certs/ca.pem")
    if ! redis-cli "${tls_cli[@]}" --cluster create "${addrs[@]}" --cluster-replicas "$replicas" \
            --cluster-yes >"$dir/create.log" 2>&1; then
        cmd_stop "$dir"
        die "cluster create failed (see its log)"
    fi
    # Ready: every node sees the cluster ok, and every replica has finished
    # its first sync (so WAIT can be satisfied from the start).
    local i ok
    for ((i = 0; i < 200; i++)); do
        ok=1
        for p in "${ports[@]}"; do
            if ! redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
                ok=0
                break
            fi
            if redis-cli -p "$p" info replication 2>/dev/null | grep -q '^role:slave' &&
                ! redis-cli -p "$p" info replication 2>/dev/null |
                    grep -q '^master_link_status:up'; then
                ok=0
                break
            fi
        done
        [ "$ok" = 1 ] && break
        sleep 0.1
    done
    [ "$ok" = 1 ] || { cmd_stop "$dir"; die "cluster did not reach state ok"; }
    if [ -n "$watch" ]; then
        # Detached, with no inherited descriptors, so a caller reading our
        # stdout sees EOF when we exit.
        setsid bash -c "while kill -0 $watch 2>/dev/null; do sleep 1; done; \"$0\" stop \"$dir\"" \
            </dev/null >/dev/null 2>&1 &
    fi
    echo "REDIS_CLUSTER_DIR=$dir"
    echo "REDIS_CLUSTER_PORTS=\"${ports[*]}\""
    [ -z "$certs" ] || echo "REDIS_CLUSTER_TLS_PORTS=\"${tls_ports[*]}\""
}

cmd_stop() {
    local dir="$1" pidf pid i
    [ -d "$dir" ] || return 0
    for pidf in "$dir"/*/redis.pid; do
        [ -f "$pidf" ] || continue
        pid=$(cat "$pidf" 2>/dev/null || true)
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pidf in "$dir"/*/redis.pid; do
        [ -f "$pidf" ] || continue
        pid=$(cat "$pidf" 2>/dev/null || true)
        [ -n "$pid" ] || continue
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}

cmd_restart() {
    local dir="$1" port="$2"
    [ -f "$dir/$port/redis.conf" ] || die "no node $port in $dir"
    rm -f "$dir/$port/redis.pid"
    redis-server "$dir/$port/redis.conf" >/dev/null 2>&1 || die "cannot start node $port"
    wait_ping "$port" 100 || die "node $port did not answer"
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) [ $# -eq 2 ] || die "usage: stop DIR"; cmd_stop "$2" ;;
    restart) [ $# -eq 3 ] || die "usage: restart DIR PORT"; cmd_restart "$2" "$3" ;;
    *) die "usage: start [-n N] [-r R] [-t MS] [-d DIR] [-w PID] [-T CERTDIR] | stop DIR | restart DIR PORT" ;;
esac
