/*
 * l1_redis.h - the L1 backend on Redis (standalone or Redis Cluster) over
 * hiredis. Same contract as every L1 backend (l1.h); docs/redis.md has the
 * key layout, the Lua scripts' guarantees, the failover behaviour and what
 * can be lost under each durability setting.
 *
 * Keys (prefix "" by default, so they are exactly the brief's):
 *
 *   <prefix>session:{<tenant>:<session_id>}:state    hash  current_stage,
 *                                   turn_count, last_active, user_id, ended,
 *                                   last_op (the append retry token)
 *   <prefix>session:{<tenant>:<session_id>}:buffer   list  encoded turns, oldest first
 *   <prefix>user:{<tenant>:<user_id>}:dirty          set   attributes
 *   <prefix>strata:idle:{0..15}       zset  tenant NUL session_id -> last_active
 *   <prefix>strata:buffered:{0..15}   hash  tenant NUL session_id -> turns buffered
 *   <prefix>strata:turns:{0..15}      string  sum of that shard's buffered turns
 *   <prefix>strata:dirty:{0..15}      set   tenant NUL user_id with a dirty set
 *
 * The braces put a session's two keys (and a user's dirty set) in one hash
 * slot. In the tag, '%', '{' and '}' are escaped as %25, %7B, %7D, and in the
 * tenant also ':' (%3A), so the tenant/id boundary is unambiguous even for ids
 * holding ':' and tenants never collide; valid ids without those characters
 * appear verbatim.
 */
#ifndef STRATA_L1_REDIS_H
#define STRATA_L1_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "l1/l1.h"
#include "l1/redis_tls.h"

typedef struct l1_redis_options {
    const char *const *addresses;  /* "host:port" seeds; borrowed during open */
    size_t n_addresses;            /* 1 = standalone unless cluster */
    const char *password;          /* AUTH password; NULL or "": none */
    int db;                        /* SELECT db, standalone only (cluster: 0) */
    int connect_timeout_ms;        /* one TCP connect; default 1000 */
    int command_timeout_ms;        /* one operation step, retries included; default 2000 */
    int pool_size;                 /* connections per node, 1..64; default 4 */
    bool cluster;                  /* Redis Cluster: slot routing, MOVED/ASK, failover */
    int wait_replicas;             /* > 0: WAIT for this many replicas after each write */
    int wait_timeout_ms;           /* WAIT's timeout; default 1000 */
    uint32_t buffer_max;           /* N turns kept per session; default 20 */
    const char *key_prefix;        /* prepended to every key; default ""; no '{' '}' */
    const redis_tls_options *tls;  /* NULL (default): plain TCP; else TLS (redis_tls.h),
                                      borrowed during open */
} l1_redis_options;

/* Defaults as listed above; addresses must still be set. */
void l1_redis_options_init(l1_redis_options *o);

/* Connect (standalone: PING; cluster: load the slot map from the first seed
 * that answers) and return a store whose ops are thread-safe. Nothing is
 * written at open. STRATA_EINVAL on bad options, a refused AUTH/SELECT or a
 * TLS certificate problem (a server certificate that does not verify, or a
 * client certificate the server refuses),
 * STRATA_EIO or STRATA_ETIMEDOUT when no server answers, STRATA_ENOMEM.
 *
 * Op results beyond l1.h's: STRATA_ETIMEDOUT when Redis did not answer within
 * command_timeout_ms (a write may or may not have been applied), or when a
 * write was applied but WAIT saw fewer than wait_replicas replicas acknowledge
 * it (it may be lost in a failover); STRATA_EBUSY when Redis is out of memory
 * (maxmemory) or the cluster is down; STRATA_EIO on other Redis errors.
 * snapshot_write/snapshot_load: STRATA_EUNSUPPORTED (Redis persists itself).
 * The process must ignore SIGPIPE. */
int l1_redis_open(const l1_redis_options *opts, l1_store **out);

/* Counters of one store, for diagnostics. */
typedef struct l1_redis_stats {
    uint64_t moved;                /* MOVED redirections followed */
    uint64_t ask;                  /* ASK redirections followed */
    uint64_t retries;              /* retried attempts (backoff, reconnect) */
    uint64_t refreshes;            /* cluster slot maps loaded */
    uint64_t connects;             /* connections opened */
    uint64_t index_errors;         /* idle/stat index updates that failed (cluster) */
    uint64_t index_repairs;        /* index entries fixed by session_list_idle/reindex */
} l1_redis_stats;

/* s must come from l1_redis_open. */
void l1_redis_stats_get(l1_store *s, l1_redis_stats *out);

/* Rebuild the idle and stat indexes from the session keys: SCAN every master
 * for <prefix>session:*:state and re-register each session, and drop index
 * entries whose session is gone. O(sessions); for operators after a failover
 * that lost index writes, or after a crash between a session write and its
 * index write (cluster mode, see docs/redis.md). *n_fixed (may be NULL)
 * receives the entries added, moved or removed. */
int l1_redis_reindex(l1_store *s, uint64_t *n_fixed);

#endif /* STRATA_L1_REDIS_H */
