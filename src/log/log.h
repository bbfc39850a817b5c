/*
 * log.h - the internal header of src/log: the append-only event log (aol_*),
 * the source of truth of every tier, and tier snapshots (snap_*).
 *
 * Directory layout under the data directory:
 *
 *   log/00000000000000000001.seg   segment files, named by their first LSN
 *   log/00000000000000052311.seg   (the last one is the active segment)
 *   snap/<tier>-<lsn 20 digits>.snap   snapshots, newest LSN wins
 *
 * Segment file:
 *
 *   offset size  field
 *   0      8     magic "STRATAL1"
 *   8      4     format version (1)
 *   12     4     CRC32C of bytes 0..11 and 16..31
 *   16     8     base LSN (first record's LSN)
 *   24     8     created, Unix ms
 *   32     ...   records, back to back
 *
 * Record (all integers little-endian):
 *
 *   offset size  field
 *   0      4     payload length P (bytes after the tenant)
 *   4      4     CRC32C of bytes 8 .. 32+T+P (everything after this field)
 *   8      8     LSN (strictly increasing across the whole log)
 *   16     8     timestamp, Unix ms (the time the write was accepted)
 *   24     1     type (aol_type)
 *   25     1     flags (0 for now)
 *   26     2     tenant length T (1..128)
 *   28     4     reserved, 0
 *   32     T     tenant id bytes
 *   32+T   P     payload (the type's own binary encoding, see wire_* in core.h)
 *
 * Durability: aol_append() assigns the LSN and queues the bytes; aol_wait()
 * returns once the record is written (everysec, no) or written and
 * fdatasync'ed (always). Concurrent waiters share one write and one fsync
 * (group commit). Under everysec a background thread fdatasyncs once a second.
 *
 * Recovery: aol_open() scans every segment. A torn or corrupt tail in the
 * last segment is truncated away and reported in aol_open_info; corruption in
 * an earlier segment is STRATA_ECORRUPT (never silently skipped).
 */
#ifndef STRATA_LOG_H
#define STRATA_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Record types. Values are persisted: never renumber, only add. */
typedef enum aol_type {
    AOL_TURN = 1,            /* a turn appended to a session */
    AOL_SESSION_STAGE = 2,   /* current_stage set */
    AOL_SESSION_END = 3,     /* explicit end of a session */
    AOL_SESSION_EXPIRE = 4,  /* idle expiry: the session's keys are removed */
    AOL_DIRTY_ADD = 5,       /* attribute added to user:{id}:dirty */
    AOL_DIRTY_CLEAR = 6,     /* user:{id}:dirty emptied */
    AOL_KV_PUT = 7,          /* generic store put */
    AOL_KV_DELETE = 8,       /* generic store delete */
    AOL_NOOP = 9,            /* filler: advances the LSN, changes nothing */
    AOL_JOB_ENQUEUE = 20,    /* a background job accepted */
    AOL_JOB_DONE = 21,       /* a job finished (its effects were logged before) */
    AOL_JOB_FAILED = 22,     /* a job failed for good */
    AOL_MEM_ADD = 40,        /* an L2 memory stored (with its vector) */
    AOL_MEM_DELETE = 41,     /* an L2 memory removed */
    AOL_GRAPH_NODE_PUT = 60, /* an L3 node created or merged */
    AOL_GRAPH_NODE_DELETE = 61,
    AOL_GRAPH_EDGE_PUT = 62, /* an L3 edge upserted */
    AOL_GRAPH_EDGE_EXPIRE = 63,
    AOL_PROFILE_SET = 70,    /* a profile attribute set or reinforced (delta-merge) */
    AOL_PROFILE_CLARIFY = 71,/* a contradiction flagged for clarification */
    AOL_PROFILE_RESOLVE = 72,/* a clarification closed */
    AOL_DISTILL_PENDING = 73,/* reserved (queueing rides on AOL_MEM_ADD's trailer) */
    AOL_DISTILL_APPLY = 74,  /* the graph changes distilled from one memory, atomically */
    AOL_KEY_CREATE = 80,     /* an API key created (its SHA-256 only) */
    AOL_KEY_REVOKE = 81,     /* an API key revoked */
    AOL_USER_FORGET = 90,    /* right to be forgotten: a user's data removed everywhere */
    AOL_TYPE_MAX = 255
} aol_type;

/* Record flags (header byte 25). */
#define AOL_FLAG_SEALED 0x01u  /* payload encrypted at rest (src/pipeline/seal.c) */

#define AOL_HEADER_BYTES 32
#define AOL_SEGMENT_HEADER_BYTES 32
#define AOL_MAX_PAYLOAD (64u << 20)  /* a larger length field is corruption */
#define AOL_MAX_TENANT 128

/* A record as handed to replay callbacks: pointers are borrowed and valid only
 * during the callback. */
typedef struct aol_record {
    uint64_t lsn;
    int64_t ts_ms;
    uint8_t type;
    uint8_t flags;
    const char *tenant;      /* not NUL-terminated */
    size_t tenant_len;
    const uint8_t *payload;
    size_t payload_len;
} aol_record;

typedef struct aol_options {
    const char *dir;                  /* the log directory (created if absent) */
    strata_fsync_policy fsync;
    uint64_t segment_max_bytes;       /* rotate when the active segment passes this */
    uint64_t first_lsn;               /* LSN of the first record of a log created empty
                                         (0 = 1): a log restored from snapshots continues
                                         their numbering */
} aol_options;

typedef struct aol_open_info {
    uint64_t last_lsn;                /* highest LSN found (0: empty log) */
    uint64_t records;                 /* valid records found */
    uint64_t bytes_truncated;         /* dropped from the tail of the last segment */
    uint64_t segments;                /* segment files after recovery */
} aol_open_info;

typedef struct aol_stats {
    uint64_t last_lsn;                /* highest assigned */
    uint64_t written_lsn;             /* highest handed to write() */
    uint64_t durable_lsn;             /* highest fdatasync'ed */
    uint64_t bytes;                   /* total bytes in live segments */
    uint64_t segments;                /* live segment files */
    uint64_t fsyncs;                  /* fdatasync calls since open */
    uint64_t appends;                 /* records appended since open */
    uint64_t segments_dropped;        /* removed by aol_drop_segments since open */
    uint64_t base_lsn;                /* first LSN the oldest live segment holds */
} aol_stats;

typedef struct aol aol;

/* Open the log at opts->dir, recover (truncating a torn tail of the last
 * segment), and get ready to append after the last valid record. info may be
 * NULL. Starts the everysec sync thread when that policy is chosen. */
int aol_open(const aol_options *opts, aol **out, aol_open_info *info);

/* Flush pending records, fdatasync, stop the sync thread, free. NULL-safe. */
void aol_close(aol *log);

/* Call cb for every record with lsn > after_lsn, in LSN order. A non-zero
 * return from cb stops the replay and is returned. Must not run concurrently
 * with appends (call it between open and the first append). */
typedef int (*aol_replay_fn)(void *ctx, const aol_record *rec);
int aol_replay(aol *log, uint64_t after_lsn, aol_replay_fn cb, void *ctx);

/* Queue one record; *lsn_out receives its LSN. Does not wait for the disk:
 * call aol_wait(lsn) before acknowledging. Thread-safe. Records are written in
 * LSN order. Errors: STRATA_EINVAL (tenant length, payload too big),
 * STRATA_EIO (a previous write failed: the log is read-only from then on). */
int aol_append(aol *log, uint8_t type, const char *tenant, size_t tenant_len, int64_t ts_ms,
               const void *payload, size_t payload_len, uint64_t *lsn_out);

/* aol_append with header flags (AOL_FLAG_*). */
int aol_append_flags(aol *log, uint8_t type, uint8_t flags, const char *tenant,
                     size_t tenant_len, int64_t ts_ms, const void *payload, size_t payload_len,
                     uint64_t *lsn_out);

/* Block until the record at lsn satisfies the fsync policy. Thread-safe. */
int aol_wait(aol *log, uint64_t lsn);

/* Write and fdatasync everything appended so far, whatever the policy. */
int aol_sync(aol *log);

void aol_stats_get(aol *log, aol_stats *out);

/* Retention: delete whole segments (never the active one) whose every record
 * has lsn <= keep_after_lsn and ts_ms < older_than_ms. *dropped receives the
 * number of segments removed. */
int aol_drop_segments(aol *log, uint64_t keep_after_lsn, int64_t older_than_ms,
                      uint64_t *dropped);

/* Erasure for the right to be forgotten: every record for which erase()
 * returns true becomes an AOL_NOOP with the same LSN, timestamp and tenant and
 * no payload, so LSNs stay contiguous and replays skip it. Only segments with
 * a match are rewritten (temporary file, fdatasync, rename, directory fsync:
 * a crash leaves the old or the new copy of each). Writers wait while it runs;
 * erase() must not append. *erased (may be NULL) gets the records replaced. */
typedef bool (*aol_erase_fn)(void *ctx, const aol_record *rec);
int aol_erase(aol *log, aol_erase_fn erase, void *ctx, uint64_t *erased);

/* Read-only scan of a log directory that another process may be appending to
 * (no lock taken, nothing repaired): calls cb for every valid record in LSN
 * order and stops quietly at a torn or corrupt tail of the last segment.
 * *first_lsn_out (may be NULL) receives the first LSN present (0: empty).
 * Used by point-in-time restore and rebuild. */
int aol_scan_dir(const char *dir, aol_replay_fn cb, void *ctx, uint64_t *first_lsn_out);

/* Decode one record from buf (as found in a segment after the header).
 * Returns the record's total size (> 0), 0 if buf holds only part of a record
 * (a torn tail), or STRATA_ECORRUPT (bad length, bad CRC, bad tenant length).
 * Used by recovery and by the fuzz target. */
long aol_record_decode(const uint8_t *buf, size_t len, aol_record *rec);

/* Encode a decoded record again, flags included (shipping, backups). */
int aol_record_reencode(sbuf *out, const aol_record *rec);

/* Encode one record into out (appending). */
int aol_record_encode(sbuf *out, uint64_t lsn, int64_t ts_ms, uint8_t type, const char *tenant,
                      size_t tenant_len, const void *payload, size_t payload_len);

/* ---- file helpers shared by aol.c and snap.c (fileio.c) ----------------- */
/* A failed system call as STRATA_EIO (or ENOMEM) with errno's text. */
int log_io_error(const char *what, const char *path);
/* write() all of p, retrying short writes and EINTR: 0, or -1 with errno. */
int log_write_all(int fd, const void *p, size_t n);
/* fdatasync, retried on EINTR: 0 or -1 with errno. */
int log_fdatasync(int fd);
int log_mkdir_p(const char *dir);
/* fsync a directory so entries created or renamed in it are durable. */
int log_fsync_dir(const char *dir);
/* True when dir does not exist or holds no entry (a restore or backup target). */
bool log_dir_empty_or_absent(const char *dir);

/* ---- snapshots (snap.c) ------------------------------------------------ */
/*
 * Snapshot file snap/<tier>-<lsn>.snap:
 *
 *   offset size  field
 *   0      8     magic "STRATAS1"
 *   8      4     format version (1)
 *   12     4     CRC32C of bytes 0..11 and 16..63 (the header)
 *   16     16    tier name, NUL-padded
 *   32     8     LSN covered (every record <= LSN is reflected)
 *   40     8     body length B
 *   48     4     CRC32C of the body
 *   52     12    reserved, 0
 *   64     B     body (the tier's own encoding)
 *
 * Written to a temporary file, fdatasync'ed, renamed, and the directory
 * fsync'ed, so a crash leaves either the old or the new snapshot.
 */
typedef struct snap_writer snap_writer;

int snap_begin(const char *snap_dir, const char *tier, uint64_t lsn, snap_writer **out);
int snap_write(snap_writer *w, const void *data, size_t len);
int snap_commit(snap_writer *w);      /* frees w whatever the result */
void snap_abort(snap_writer *w);      /* removes the temporary file, frees w; NULL-safe */

/* Load the newest valid snapshot of tier. A corrupt newest file is reported
 * through slog and the next older one is tried. STRATA_ENOTFOUND if none.
 * *data_out is freed with strata_free. */
int snap_load_latest(const char *snap_dir, const char *tier, uint64_t *lsn_out,
                     void **data_out, size_t *len_out);

/* Parse a snapshot image held in memory (used by the loader and fuzz target). */
int snap_parse(const uint8_t *buf, size_t len, char tier_out[17], uint64_t *lsn_out,
               const uint8_t **body_out, size_t *body_len_out);

/* Keep the newest `keep` snapshots of tier, delete the rest. */
int snap_prune(const char *snap_dir, const char *tier, unsigned keep);

#endif /* STRATA_LOG_H */
