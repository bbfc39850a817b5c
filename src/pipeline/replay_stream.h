/*
 * replay_stream.h - an optional copy of the event log on a Redis Stream, for
 * replay by another machine (`strata rebuild --from-redis`). The file log
 * (log.h) stays the source of truth; the stream is a shipped, trimmed copy.
 *
 * One stream entry per log record, XADD'ed with an id Redis picks ("*"), so
 * the id's time part is the Redis server's clock at arrival:
 *
 *   XADD <key> [MINID ~ <now_ms - retention_ms>-0] *
 *        lsn <decimal u64> ts <decimal i64, Unix ms> type <decimal 0..255>
 *        tenant <1..128 bytes> payload <0..AOL_MAX_PAYLOAD bytes, binary>
 *        [flags <decimal 1..255>]                   (only when non-zero)
 *
 *   field    value                           decoded into aol_record
 *   lsn      "12345"                         lsn (>= 1)
 *   ts       "1706500000123"                 ts_ms
 *   type     "1"                             type (AOL_TURN ...)
 *   tenant   raw bytes (no NUL terminator)   tenant, tenant_len
 *   payload  raw bytes, NUL allowed          payload, payload_len
 *   flags    "0".."255", optional            flags (0 when absent)
 *
 * Numbers are decimal text so that `redis-cli XRANGE` stays readable; the
 * payload is the record's own binary encoding (wire_* in core.h), as in a
 * segment file. Fields not listed are ignored (room to add some later); a
 * missing, duplicated or unparsable listed field is corruption.
 *
 * Trimming: each XADD carries `MINID ~ <threshold>` with threshold computed
 * from this process's clock; `~` lets Redis drop whole radix-tree nodes only
 * (cheap, never more than asked), so a few entries older than the retention
 * can linger until their node is entirely old. retention_s = 0 disables
 * trimming (the stream keeps everything).
 *
 * Order: entries are in arrival order at Redis. Appenders on several threads
 * can arrive out of LSN order (the LSN is assigned before the XADD is sent),
 * so a reader must not assume LSNs increase along the stream; see the
 * contract of replay_stream_scan.
 *
 * Connections come from src/l1/redis_cluster.h (rcl): standalone or Redis
 * Cluster (the key lives in one slot, so a cluster serves it from one master;
 * put a hash tag in the key, e.g. "strata:{replay}", to choose the slot by name).
 *
 * Thread-safety: replay_stream_append may be called from any thread; open and
 * close are not concurrent with anything else on the same handle.
 */
#ifndef STRATA_REPLAY_STREAM_H
#define STRATA_REPLAY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/log.h"

#define REPLAY_STREAM_DEFAULT_KEY "strata:replay"
#define REPLAY_STREAM_DEFAULT_RETENTION_S (7u * 24u * 3600u)
#define REPLAY_STREAM_SCAN_BATCH 1000      /* entries per XRANGE */

typedef struct replay_stream_options {
    const char *const *addresses;  /* "host:port" seeds; borrowed during open/scan */
    size_t n_addresses;            /* >= 1; several need cluster */
    bool cluster;                  /* Redis Cluster: slot routing, MOVED/ASK */
    const char *password;          /* AUTH password; NULL or "": none */
    const char *key;               /* stream key; default REPLAY_STREAM_DEFAULT_KEY */
    uint32_t retention_s;          /* MINID trimming horizon, seconds; default 7 days;
                                      0 = never trim */
    int timeout_ms;                /* one connect, and one command with its retries;
                                      default 2000 */
    int pool_size;                 /* connections per node, 1..64; default 4 (set near
                                      the number of appending threads) */
    const struct redis_tls_options *tls; /* NULL (default): plain TCP; else TLS
                                      (l1/redis_tls.h), borrowed during open/scan */
} replay_stream_options;

/* Defaults as listed above; addresses must still be set. */
void replay_stream_options_init(replay_stream_options *o);

typedef struct replay_stream replay_stream;

/* Connect (standalone: PING; cluster: load the slot map). Nothing is written.
 * STRATA_EINVAL on bad options or a refused AUTH, STRATA_EIO/ETIMEDOUT when no
 * server answers, STRATA_ENOMEM. *out is NULL on failure. The process must
 * ignore SIGPIPE (hiredis writes with write(2)). */
int replay_stream_open(const replay_stream_options *o, replay_stream **out);

/* Close the connections and free. NULL-safe. */
void replay_stream_close(replay_stream *rs);

/* XADD one record (see the file comment); rec and what it points to are only
 * read during the call. Thread-safe. Not retried after an I/O error once the
 * command was sent (XADD "*" is not idempotent): STRATA_EIO then means the
 * entry may or may not be in the stream. Errors: STRATA_EINVAL (tenant length,
 * payload too big), STRATA_ETIMEDOUT, STRATA_EIO (also a Redis error reply
 * such as WRONGTYPE), STRATA_EBUSY (Redis out of memory), STRATA_ENOMEM. */
int replay_stream_append(replay_stream *rs, const aol_record *rec);

/* Read every entry of o->key from the oldest, in stream order, XRANGE'ing
 * REPLAY_STREAM_SCAN_BATCH entries at a time over its own connection (opened
 * and closed here), and call cb with each decoded record; its pointers are
 * valid only during the call. A non-zero return from cb stops the scan and is
 * returned. Entries appended while the scan runs are read if they arrive
 * before the scan passes their position. A malformed entry is
 * STRATA_ECORRUPT, with strata_errmsg() naming the entry id and the field. An
 * absent key is an empty stream (STRATA_OK, no call).
 *
 * LSNs along the stream are not necessarily increasing (concurrent
 * appenders), may have gaps (trimming, failed appends) and may repeat (an
 * append the caller retried after STRATA_EIO). */
int replay_stream_scan(const replay_stream_options *o, aol_replay_fn cb, void *ctx);

/* Right to be forgotten: XDEL every entry for which pick() returns true
 * (read in REPLAY_STREAM_SCAN_BATCH batches on rs's connection). *erased gets
 * the entries deleted. Entries appended meanwhile may be missed: the caller
 * picks only records older than its deletion. */
int replay_stream_erase(replay_stream *rs, aol_erase_fn pick, void *ctx, uint64_t *erased);

/* Decode one XRANGE entry's field/value array (argv/argvlen alternate field
 * names and values, n of them) into rec, borrowing from argv. STRATA_OK or
 * STRATA_ECORRUPT with a message naming id. Exposed for tests and a fuzz
 * target. */
int replay_stream_decode(const char *id, const char *const *argv, const size_t *argvlen,
                         size_t n, aol_record *rec);

#endif /* STRATA_REPLAY_STREAM_H */
