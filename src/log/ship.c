/*
 * ship.c - log shipping (see ship.h): the primary reads the records after an
 * LSN straight from its segment files, the replica checks a batch before it
 * applies anything.
 *
 * The reader keeps a window of the segment in memory (1 MiB reads through
 * pread) and walks record headers: a record's size is known from its first
 * 32 bytes, so a record larger than the window is read whole in one go. A
 * record that is not complete yet at the end of the last segment (a write in
 * progress) ends the read; the same in an earlier segment is corruption,
 * because a rotated segment is never written again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/ship.h"

#define WIN_MIN (1u << 20)

typedef struct seg_win {
    int fd;
    uint64_t base_off;               /* file offset of buf[0] */
    uint8_t *buf;
    size_t len;
    size_t cap;
} seg_win;

/* Make [off, off + need) of the file available in the window: *p points at
 * off and *avail says how many bytes from there are (fewer than need at the
 * end of the file). */
static int win_get(seg_win *w, uint64_t off, size_t need, const uint8_t **p, size_t *avail)
{
    if (off >= w->base_off && off + need <= w->base_off + w->len) {
        *p = w->buf + (off - w->base_off);
        *avail = (size_t)(w->base_off + w->len - off);
        return STRATA_OK;
    }
    size_t want = need > WIN_MIN ? need : WIN_MIN;
    if (want > w->cap) {
        uint8_t *grown = strata_realloc(w->buf, want);
        if (grown == NULL) {
            return STRATA_ENOMEM;
        }
        w->buf = grown;
        w->cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(w->fd, w->buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return strata_error_errno("cannot read log segment", "(shipping)");
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    w->base_off = off;
    w->len = got;
    *p = w->buf;
    *avail = got;
    return STRATA_OK;
}

static size_t seg_index(const uint64_t *bases, size_t n, uint64_t base)
{
    for (size_t i = 0; i < n; i++) {
        if (bases[i] == base) {
            return i;
        }
    }
    return n;
}

typedef struct ship_state {
    const char *dir;
    uint64_t after;
    uint64_t upto;
    size_t max_bytes;
    sbuf *out;
    ship_read_info *info;
    uint64_t seg_base;               /* where the walk stopped */
    uint64_t off;
    bool mismatch;                   /* the first record seen was not the expected one */
    bool check_first;                /* set when starting from a cursor */
} ship_state;

/* Walk one segment from off. Returns STRATA_OK with *more = true when the
 * segment was consumed to its end and the next one should follow. */
static int ship_segment(ship_state *s, uint64_t base, uint64_t off, bool last, bool *more)
{
    *more = false;
    char path[4200];
    snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", s->dir, base);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            /* Dropped by retention since the listing. */
            return strata_error(STRATA_ENOTFOUND, "log segment %s was dropped", path);
        }
        return strata_error_errno("cannot open log segment", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return strata_error_errno("cannot stat log segment", path);
    }
    seg_win w = {fd, 0, NULL, 0, 0};
    int rc = STRATA_OK;
    const uint8_t *p = NULL;
    size_t avail = 0;
    if (off < AOL_SEGMENT_HEADER_BYTES) {
        off = AOL_SEGMENT_HEADER_BYTES;
    }
    rc = win_get(&w, 0, AOL_SEGMENT_HEADER_BYTES, &p, &avail);
    if (rc == STRATA_OK &&
        (avail < AOL_SEGMENT_HEADER_BYTES || memcmp(p, "STRATAL1", 8) != 0)) {
        /* The last segment may be in the middle of being created. */
        rc = last ? STRATA_OK
                  : strata_error(STRATA_ECORRUPT, "%s: bad segment header", path);
        s->seg_base = base;
        s->off = off;
        goto out;
    }
    bool stopped = false;
    while (rc == STRATA_OK) {
        rc = win_get(&w, off, AOL_HEADER_BYTES, &p, &avail);
        if (rc == STRATA_OK && avail < AOL_HEADER_BYTES && s->check_first) {
            /* Record after + 1 is written, so nothing at the cursor means the
             * segment was rewritten shorter (erasure): rescan. */
            s->check_first = false;
            s->mismatch = true;
            stopped = true;
            break;
        }
        if (rc != STRATA_OK || avail == 0) {
            break;
        }
        /* From a cursor, the record at off is after + 1 <= upto, which the
         * writer has finished writing: anything but that record there means
         * the cursor is stale (the segment was rewritten). */
        size_t total = AOL_HEADER_BYTES;
        long used = -1;
        aol_record rec;
        if (avail >= AOL_HEADER_BYTES) {
            uint32_t plen = wire_rd32(p);
            size_t tlen = (size_t)p[26] | ((size_t)p[27] << 8);
            if (plen <= AOL_MAX_PAYLOAD && tlen > 0 && tlen <= AOL_MAX_TENANT) {
                total = AOL_HEADER_BYTES + tlen + plen;
                rc = win_get(&w, off, total, &p, &avail);
                if (rc == STRATA_OK && avail >= total) {
                    used = aol_record_decode(p, total, &rec);
                } else if (rc == STRATA_OK) {
                    used = 0; /* a record still being written */
                }
            }
        }
        if (rc != STRATA_OK) {
            break;
        }
        if (used != (long)total && s->check_first) {
            s->check_first = false;
            s->mismatch = true;
            stopped = true;
            break;
        }
        if (used == 0 || (avail < AOL_HEADER_BYTES)) {
            break; /* a record still being written */
        }
        if (used != (long)total) {
            rc = strata_error(STRATA_ECORRUPT, "%s: bad record at offset %" PRIu64, path, off);
            break;
        }
        if (s->check_first) {
            s->check_first = false;
            if (rec.lsn != s->after + 1) {
                s->mismatch = true;
                stopped = true;
                break;
            }
        }
        if (rec.lsn <= s->after) {
            off += total;
            continue;
        }
        if (rec.lsn > s->upto ||
            (s->out->len > 0 && s->out->len + total > s->max_bytes)) {
            stopped = true;
            break;
        }
        rc = sbuf_append(s->out, p, total);
        if (rc != STRATA_OK) {
            break;
        }
        s->info->last_lsn = rec.lsn;
        s->info->records++;
        off += total;
    }
    s->seg_base = base;
    s->off = off;
    if (rc == STRATA_OK && !stopped && !last) {
        /* A rotated segment ends on a record boundary; a torn record in one
         * is damage. (A torn tail of the last segment is a write in
         * progress: the next read gets it.) */
        if (off < (uint64_t)st.st_size) {
            rc = strata_error(STRATA_ECORRUPT, "%s: damaged record at offset %" PRIu64, path,
                              off);
        } else {
            *more = true;
        }
    }
    if (rc == STRATA_ECORRUPT && last) {
        /* Past upto the writer may be mid-write; stop here, retry later. */
        rc = STRATA_OK;
    }
out:
    strata_free(w.buf);
    close(fd);
    return rc;
}

int ship_read(const char *dir, uint64_t after, uint64_t upto, size_t max_bytes, sbuf *out,
              ship_cursor *cursor, ship_read_info *info)
{
    ship_read_info local;
    if (info == NULL) {
        info = &local;
    }
    memset(info, 0, sizeof(*info));
    if (after >= upto) {
        return STRATA_OK; /* nothing new: no file is touched */
    }
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = aol_dir_segments(dir, &bases, &n);
    if (rc != STRATA_OK || n == 0) {
        strata_free(bases);
        return rc;
    }
    info->first_lsn = bases[0];
    if (after + 1 < bases[0]) {
        strata_free(bases);
        return strata_error(STRATA_ENOTFOUND,
                            "the log starts at LSN %" PRIu64 ": records after %" PRIu64
                            " were dropped by retention",
                            info->first_lsn, after);
    }
    ship_state s = {dir, after, upto, max_bytes, out, info, 0, 0, false, false};
    size_t i = n;
    uint64_t off = AOL_SEGMENT_HEADER_BYTES;
    if (cursor != NULL && cursor->next_lsn == after + 1) {
        i = seg_index(bases, n, cursor->seg_base);
        off = cursor->off;
        s.check_first = true;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (i == n) {
            /* The segment holding after + 1: the last whose base is <= it. */
            i = 0;
            while (i + 1 < n && bases[i + 1] <= after + 1) {
                i++;
            }
            off = AOL_SEGMENT_HEADER_BYTES;
            s.check_first = false;
        }
        size_t out_len0 = out->len;
        bool more = true;
        for (; rc == STRATA_OK && more && i < n; i++) {
            rc = ship_segment(&s, bases[i], off, i + 1 == n, &more);
            off = AOL_SEGMENT_HEADER_BYTES;
            if (s.mismatch) {
                break;
            }
        }
        if (!s.mismatch) {
            break;
        }
        /* Stale cursor (the segment was rewritten): scan instead. */
        s.mismatch = false;
        out->len = out_len0;
        i = n;
        rc = STRATA_OK;
    }
    if (rc == STRATA_OK && cursor != NULL) {
        cursor->seg_base = s.seg_base;
        cursor->off = s.off;
        cursor->next_lsn = (info->last_lsn ? info->last_lsn : after) + 1;
    }
    strata_free(bases);
    return rc;
}

int ship_parse(const uint8_t *buf, size_t len, uint64_t after, aol_replay_fn cb, void *ctx)
{
    size_t off = 0;
    uint64_t prev = after;
    while (off < len) {
        aol_record rec;
        long used = aol_record_decode(buf + off, len - off, &rec);
        if (used == 0) {
            return strata_error(STRATA_EPROTO, "record at offset %zu of the batch is truncated",
                                off);
        }
        if (used < 0) {
            return strata_error(STRATA_EPROTO,
                                "record at offset %zu of the batch is corrupt (length or CRC)",
                                off);
        }
        if (rec.lsn <= prev) {
            return strata_error(STRATA_EPROTO,
                                "record at offset %zu has LSN %" PRIu64 ", not after %" PRIu64,
                                off, rec.lsn, prev);
        }
        prev = rec.lsn;
        int rc = cb(ctx, &rec);
        if (rc != STRATA_OK) {
            return rc;
        }
        off += (size_t)used;
    }
    return STRATA_OK;
}
