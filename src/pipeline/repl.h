/*
 * repl.h - backups, scheduled snapshot archives and replication (brief §3.1,
 * §3.3), shared by the server and the CLI.
 *
 * backup.c   online backup of a running engine into a directory (a fresh
 *            snapshot of every tier + the log segments, checksummed in a
 *            MANIFEST.json written last), its verification, and restore from
 *            it (point in time through restore.c); the daily snapshot
 *            archive under snap/archive/; the primary's side of replication
 *            (records after an LSN, a snapshot to bootstrap from).
 * replica.c  the replica's side: a follower thread that fetches the
 *            primary's log over HTTP(S), checks each record's CRC and re-logs
 *            it under its own LSN (db_append_raw), so the replica's log is a
 *            copy of the primary's; bootstrap of an empty replica from the
 *            primary's snapshot; promotion to a writable primary.
 *
 * A backup directory (and a bootstrap) looks like a data directory:
 *
 *   MANIFEST.json          {"format":"strata-backup","version":1,"lsn",...,
 *                           "files":[{"name","size","crc32c"}...],"bytes"}
 *   snap/<tier>-<lsn>.snap the fresh snapshot set at "lsn" (+ archived sets
 *                          the copied log can continue from)
 *   log/<base>.seg         every live segment, the last one cut at its last
 *                          complete record
 *   l2.model               the embedder the collection was built with
 *
 * Every write acknowledged before the backup was asked for has an LSN <=
 * "lsn", so it is in the snapshot; the log copied with it holds more.
 */
#ifndef STRATA_PIPELINE_REPL_H
#define STRATA_PIPELINE_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "log/log.h"

#define BACKUP_MANIFEST "MANIFEST.json"
#define BACKUP_MAX_FILES 100000

/* ---- manifest ------------------------------------------------------------ */
typedef struct backup_file {
    char *name;                      /* relative: "snap/…", "log/…", "l2.model" */
    uint64_t size;
    uint32_t crc32c;
} backup_file;

typedef struct backup_manifest {
    uint64_t lsn;                    /* the snapshot set every tier was taken at */
    uint64_t last_lsn;               /* last record of the copied log (>= lsn) */
    int64_t created_ms;
    uint32_t buffer_turns;           /* settings that shape replay (0: unknown) */
    uint32_t consolidate_every;
    char *l2_model;                  /* NULL: none recorded */
    backup_file *files;
    size_t n_files;
    uint64_t bytes;                  /* sum of the files' sizes */
} backup_manifest;

void backup_manifest_free(backup_manifest *m);
/* The manifest as JSON (also the body of the replication snapshot route). */
int backup_manifest_json(const backup_manifest *m, sbuf *out);
/* Parse and check a manifest (outside input: a file on disk, or a primary's
 * answer): STRATA_EINVAL with the reason for anything malformed, a file name
 * that is not a plain relative path, more than BACKUP_MAX_FILES files. */
int backup_manifest_parse(const char *text, size_t len, backup_manifest *out);

/* ---- backup and restore (backup.c) ---------------------------------------- */
/* Take an online backup of db into dir (absolute; created; must be absent or
 * empty). Writes are not held up while files are copied: only the snapshot
 * (as every snapshot) takes the write lock briefly. out (may be NULL)
 * receives the manifest. Errors: STRATA_EINVAL (relative path), STRATA_EEXIST
 * (not empty), STRATA_EIO. A backup without MANIFEST.json is unfinished. */
int backup_create(strata_db *db, const char *dir, backup_manifest *out);

/* Check a backup directory against its manifest: every file present with
 * its size and CRC32C, no stray segment or snapshot file. STRATA_ENOTFOUND
 * (no manifest), STRATA_ECORRUPT naming the first bad file. out may be NULL. */
int backup_verify(const char *dir, backup_manifest *out);

/* Verify, then restore the backup into the new directory dst (absent or
 * empty): the state as of at_s (Unix seconds) when has_at, else everything
 * the backup holds. Replays with the backup's own buffer_turns and
 * consolidate_every (restore.c). */
int backup_restore(const char *backup_dir, const char *dst_dir, bool has_at, int64_t at_s,
                   uint64_t *records_out);

/* restore.c: point-in-time restore with the replay settings given (0: the
 * defaults or STRATA_BUFFER_TURNS / STRATA_CONSOLIDATE_EVERY). */
int restore_with_settings(const char *src_dir, const char *dst_dir, int64_t at_s,
                          uint32_t buffer_turns, uint32_t consolidate_every,
                          uint64_t *records_out);

/* ---- scheduled snapshots (backup.c) ---------------------------------------- */
/* Called by the ticker: when the newest archived set is older than
 * cfg.snapshot_archive_every_s (or there is none), take a snapshot and keep
 * it under snap/archive/ (hard links), pruned to cfg.snapshot_retain sets. */
void db_archive_tick(strata_db *db);

/* Remove every archived set: for the right to be forgotten, after its fresh
 * snapshot, since each older set holds the forgotten user. Takes
 * snapshot_lock (the caller must not hold it). */
int db_archive_drop(strata_db *db);
/* Primary (forget.c): replica `id` has applied every record up to `after`
 * (it asked for the records after it); a right-to-be-forgotten waits for
 * attached replicas to pass its record before erasing it. */
void forget_note_replica(strata_db *db, uint64_t id, uint64_t after);
/* Primary: the sealed keyring file (encryption at rest), for replicas that
 * hold the same master key. STRATA_ENOTFOUND when encryption is off. */
int repl_keyring_image(strata_db *db, sbuf *out);

typedef struct snapshot_stats {
    uint64_t last_lsn;               /* newest snapshot set written by this process */
    int64_t last_ms;
    uint64_t written;
    uint64_t archived_sets;          /* sets in snap/archive now */
    uint64_t archives_taken;         /* since start */
} snapshot_stats;
void db_snapshot_stats(strata_db *db, snapshot_stats *out);

/* ---- primary side of replication (backup.c) ----------------------------------- */
typedef struct repl_log_info {
    uint64_t primary_lsn;            /* last record the primary has written */
    uint64_t first_lsn;              /* first LSN its log still holds (0: unknown) */
    uint64_t last_lsn;               /* last record in the batch (0: empty) */
    uint64_t records;
} repl_log_info;

/* Records with lsn > after (raw, in the log's encoding) into out, at most
 * max_bytes (one record at least); wait_ms > 0 waits that long for a record
 * when there is none yet. STRATA_ENOTFOUND when the log no longer holds the
 * records right after `after` (the replica must bootstrap). */
int repl_log_read(strata_db *db, uint64_t after, size_t max_bytes, int wait_ms, sbuf *out,
                  repl_log_info *info);

/* Take a fresh snapshot and describe its files ("snap/<name>") for a replica
 * to fetch with repl_snapshot_read; also the primary's replay settings and
 * embedder model. */
int repl_snapshot_export(strata_db *db, backup_manifest *out);
/* Bytes [off, off + len) of a snapshot file; name is "<tier>-<lsn>.snap".
 * STRATA_EINVAL (bad name), STRATA_ENOTFOUND (pruned since: fetch a new
 * export). */
int repl_snapshot_read(strata_db *db, const char *name, uint64_t off, size_t len, sbuf *out);

/* ---- replica side (replica.c) ----------------------------------------------------- */
typedef struct replica_options {
    const char *primary;             /* "host:port" or an http:// / https:// base URL */
    const char *key;                 /* bearer key: the primary's admin or replication key */
    const char *cacert;              /* CA bundle to check an https primary (NULL: system) */
    uint32_t poll_ms;                /* pause after an empty fetch, default 10 */
    size_t max_batch_bytes;          /* per fetch, default 4 MiB */
} replica_options;

typedef struct replica_stats {
    bool following;                  /* the follower thread runs (false once promoted) */
    bool connected;                  /* the last request reached the primary and was served */
    bool promoted;
    uint64_t applied_lsn;
    uint64_t primary_lsn;            /* last LSN the primary reported */
    double lag_seconds;              /* 0 when caught up, else time since last caught up */
    int64_t last_contact_ms;         /* when the last successful fetch was sent: every
                                        record the primary wrote after it is unknown here */
    uint64_t records_applied;
    uint64_t batches;
    uint64_t err_connect;            /* primary unreachable / transport error */
    uint64_t err_unauthorized;       /* 401 / 403: wrong replica key */
    uint64_t err_gone;               /* 410: the primary no longer has our next record */
    uint64_t err_protocol;           /* a batch failed its checks */
    uint64_t err_apply;              /* a record could not be applied */
    uint64_t err_http;               /* any other status */
    char last_error[256];
} replica_stats;

typedef struct replica replica;

int replica_create(const replica_options *o, replica **out);
/* Before the engine is opened on data_dir: when it holds no log and no
 * snapshot, fetch the primary's snapshot into it (retrying an unreachable
 * primary for up to timeout_ms), so the engine starts at the snapshot's LSN.
 * Refuses (STRATA_ECONFLICT) a primary whose buffer_turns / consolidate_every
 * differ from the given ones: replay would diverge. */
int replica_bootstrap(replica *r, const char *data_dir, uint32_t buffer_turns,
                      uint32_t consolidate_every, int timeout_ms);
/* Encrypted primary: copy its sealed keyring to path (the replica must be
 * started with the same master key). STRATA_ENOTFOUND when the primary does
 * not encrypt. */
int replica_fetch_keyring(replica *r, const char *path);
/* Start following into db (opened with cfg.replica = 1). */
int replica_start(replica *r, strata_db *db);
/* Stop following (idempotent, thread-safe) and make db a writable primary. */
int replica_promote(replica *r, strata_db *db);
/* STRATA_ECONFLICT when data_dir was promoted (the PROMOTED file
 * replica_promote leaves): it must not follow a primary again. */
#define REPLICA_PROMOTED_FILE "PROMOTED"
int replica_check_not_promoted(const char *data_dir);
/* Stop the follower thread (idempotent). */
void replica_stop(replica *r);
void replica_free(replica *r);
void replica_stats_get(replica *r, replica_stats *out);

/* Apply one batch (ship_parse checks) to db: duplicates are skipped, a gap is
 * filled with no-ops so LSNs stay equal to the primary's. *last_out gets the
 * last LSN applied. The follower's core, exposed for the unit tests. */
int replica_apply_batch(strata_db *db, const uint8_t *buf, size_t len, uint64_t *applied_out,
                        uint64_t *last_out);

#endif /* STRATA_PIPELINE_REPL_H */
