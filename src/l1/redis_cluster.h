/*
 * redis_cluster.h - connections to Redis for the L1 Redis backend: one
 * standalone server, or a Redis Cluster whose slot map we keep ourselves
 * (hiredis 0.14 has no cluster support).
 *
 *   rcl
 *   +---------------+        nodes[i]: host, port, a pool of pool_size
 *   | slots[16384] -+--> i   blocking hiredis contexts (lazily connected,
 *   | nodes[]      -+--+     dropped on any I/O error and reconnected)
 *   +---------------+  |
 *                      +--> node "127.0.0.1:7001"  [ctx][ctx][ ][ ]  free list
 *                      +--> node "127.0.0.1:7002"  [ctx][ ][ ][ ]
 *
 * A call names the hash slot of its keys; rcl_exec routes it to the slot's
 * master, follows MOVED (updates the map, refreshes it from CLUSTER SLOTS) and
 * ASK (ASKING + one retry on the named node), backs off on TRYAGAIN,
 * CLUSTERDOWN, LOADING and connection errors, and retries until the call's
 * deadline (command_timeout_ms). Redis error replies it does not handle
 * (NOSCRIPT, WRONGTYPE, OOM, a script's own error) come back to the caller as
 * the reply.
 *
 * Thread-safety: every function may be called from any thread. No lock is
 * held across network I/O except `refresh_lock`, which only serialises
 * topology refreshes (others skip a refresh rather than wait for it). A
 * checked-out connection belongs to one thread until it is released.
 *
 * TLS: with rcl_options.tls set, every connection (seeds, CLUSTER SLOTS
 * nodes, MOVED/ASK targets) is made through redis_tls.h's relay: the hiredis
 * context above is the same, only its fd leads to a relay thread instead of
 * the server. A Redis Cluster with tls-cluster yes announces its TLS ports to
 * TLS clients (CLUSTER SLOTS, MOVED, ASK), so redirections stay on TLS.
 *
 * The process must ignore SIGPIPE (hiredis writes with write(2)): stratad
 * does; an embedding program must too.
 */
#ifndef STRATA_REDIS_CLUSTER_H
#define STRATA_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "l1/redis_tls.h"

#define RCL_SLOTS 16384
#define RCL_ANY_SLOT (-1)     /* keyless command, or standalone mode */
#define RCL_MAX_NODES 1024    /* nodes ever seen; a bound on what a peer can make us hold */

/* rcl_call.flags */
#define RCL_WRITE 1u          /* pipeline WAIT after it when wait_replicas > 0 */
#define RCL_IDEMPOTENT 2u     /* may be resent after an I/O error with unknown outcome */

typedef struct rcl rcl;

typedef struct rcl_options {
    const char *const *addrs;   /* "host:port" seeds, n_addrs >= 1; copied */
    size_t n_addrs;
    const char *password;       /* AUTH after connecting; NULL or "": none; copied */
    int db;                     /* SELECT after connecting; standalone only */
    int connect_timeout_ms;     /* one TCP connect, > 0 */
    int command_timeout_ms;     /* one call, retries included, > 0 */
    int pool_size;              /* connections per node, 1..64 */
    bool cluster;               /* false: addrs[0] is the only server */
    int wait_replicas;          /* > 0: WAIT wait_replicas wait_timeout_ms after writes */
    int wait_timeout_ms;        /* WAIT's timeout, > 0 when waiting */
    const redis_tls_options *tls; /* NULL: plain TCP; else TLS to every node (files
                                     loaded at open, strings copied) */
} rcl_options;

/* One command and what came back. */
typedef struct rcl_call {
    int slot;                   /* hash slot of its keys, or RCL_ANY_SLOT */
    int node;                   /* >= 0: send to this node index, no routing; else -1 */
    unsigned flags;             /* RCL_WRITE, RCL_IDEMPOTENT */
    int argc;
    const char **argv;          /* borrowed for the call */
    const size_t *argvlen;
    redisReply *reply;          /* out: freeReplyObject by the caller; NULL on failure */
    int replicas_acked;         /* out: WAIT's answer; -1 when not waited */
} rcl_call;

typedef struct rcl_stats {
    uint64_t moved;             /* MOVED redirections followed */
    uint64_t ask;               /* ASK redirections followed */
    uint64_t retries;           /* attempts after a retryable failure */
    uint64_t refreshes;         /* slot maps loaded from CLUSTER SLOTS */
    uint64_t connects;          /* connections opened */
} rcl_stats;

/* CRC16-XMODEM of the key's hash tag (or of the whole key) mod 16384. */
int rcl_keyslot(const void *key, size_t len);

/* Connect: standalone, a PING to addrs[0]; cluster, the slot map from the
 * first seed that answers CLUSTER SLOTS. STRATA_EINVAL on bad options, an
 * AUTH/SELECT refusal or a TLS certificate problem (either side's),
 * STRATA_EIO/ETIMEDOUT when no server answers. */
int rcl_open(const rcl_options *o, rcl **out);
void rcl_close(rcl *c);

bool rcl_is_cluster(const rcl *c);

/* Run one command (see the file comment). STRATA_OK: call->reply is set (it
 * may be a Redis error reply). STRATA_ETIMEDOUT: the deadline passed.
 * STRATA_EIO: the outcome is unknown (an I/O error after sending a command
 * without RCL_IDEMPOTENT) or no node serves the slot. STRATA_ENOMEM. */
int rcl_exec(rcl *c, rcl_call *call);

/* Run n commands without RCL_WRITE, pipelined per node (one round trip per
 * node when nothing moves); a command that meets a redirection or an I/O
 * error is rerun alone through rcl_exec. STRATA_OK: every call has a reply.
 * On failure every reply is freed and set to NULL. */
int rcl_batch(rcl *c, rcl_call *calls, size_t n);

/* Indexes of the nodes that currently own at least one slot (standalone: the
 * one server), at most cap of them into idx; returns how many. */
size_t rcl_masters(rcl *c, int *idx, size_t cap);

void rcl_stats_get(rcl *c, rcl_stats *out);

#endif /* STRATA_REDIS_CLUSTER_H */
