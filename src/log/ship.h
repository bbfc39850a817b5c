/*
 * ship.h - log shipping, the transport of replication: reading the records
 * after a given LSN out of a live log directory (the primary's side) and
 * checking such a batch on arrival (the replica's side).
 *
 * A batch is records back to back in the log's own encoding (log.h): the
 * bytes shipped are the bytes on disk, so each record keeps its CRC32C from
 * the primary's disk to the replica's, and the replica re-logs it under the
 * same LSN and timestamp.
 */
#ifndef STRATA_LOG_SHIP_H
#define STRATA_LOG_SHIP_H

#include "log/log.h"

/* Base LSNs of the *.seg files of a log directory, sorted ascending; *out is
 * freed with strata_free (aol_read.c). */
int aol_dir_segments(const char *dir, uint64_t **out, size_t *n_out);

/* Where the previous read stopped, so the next one (which asks for the
 * records after the last one it got) seeks instead of scanning a segment from
 * its start. Checked before use: a stale cursor (segment rewritten or
 * dropped) only costs a scan. */
typedef struct ship_cursor {
    uint64_t seg_base;
    uint64_t off;
    uint64_t next_lsn;               /* 0: unset */
} ship_cursor;

typedef struct ship_read_info {
    uint64_t first_lsn;              /* first LSN the directory still holds (0: unknown) */
    uint64_t last_lsn;               /* LSN of the last record appended to out (0: none) */
    uint64_t records;                /* records appended */
} ship_read_info;

/* Append to out the records of the log directory dir with after < lsn <=
 * upto, in LSN order, stopping before out would pass max_bytes (one record is
 * always returned when any qualifies, whatever its size). No lock is taken:
 * segments are append-only and only complete records are read, so upto must
 * not pass what the writer has handed to write() (aol_stats.written_lsn).
 * cursor may be NULL. Errors: STRATA_ENOTFOUND when records right after
 * `after` are no longer in the directory (dropped by retention): the reader
 * must start again from a snapshot; STRATA_ECORRUPT for a damaged segment
 * other than the last. */
int ship_read(const char *dir, uint64_t after, uint64_t upto, size_t max_bytes, sbuf *out,
              ship_cursor *cursor, ship_read_info *info);

/* Check a batch received from a primary and call cb for each record in
 * order: every record complete and CRC-valid, LSNs strictly increasing and
 * greater than after. STRATA_EPROTO (with the offset in strata_errmsg) at the
 * first violation; records before it were delivered. A non-zero return from
 * cb stops the walk and is returned. */
int ship_parse(const uint8_t *buf, size_t len, uint64_t after, aol_replay_fn cb, void *ctx);

#endif /* STRATA_LOG_SHIP_H */
