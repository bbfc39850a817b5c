/*
 * aol.c - the append-only event log: record codec, segment files, crash
 * recovery, appends with group commit, the everysec sync thread, rotation,
 * replay and retention. The disk formats are documented in log.h.
 *
 *   appenders --memcpy--> pending --swap--> batch (leader, no lock) --write()--> active
 *   (any thread)          (sbuf)            fdatasync under "always"             segment
 *
 *   segs[0] .. segs[n-2]   finished segments, fdatasync'ed when they were closed
 *   segs[n-1]              the active segment, log->fd
 *
 * Write path. aol_append() builds the 32-byte record header on its stack and
 * computes the CRC of everything after the LSN field *outside* the lock; under
 * the lock it only assigns the LSN, finishes the CRC with an O(1) CRC-combine
 * step and memcpy's header, tenant and payload into `pending`. aol_wait() is
 * leader/follower group commit: a waiter whose target is not met and who finds
 * nobody flushing becomes the leader, swaps `pending` with the empty `spare`,
 * drops the lock, write()s the batch (and fdatasyncs under "always"), re-locks,
 * advances written_lsn/durable_lsn and broadcasts `flushed`. Everyone else
 * sleeps on `flushed`. While the leader is in write()/fdatasync() new records
 * pile up in `pending`, so the next leader takes all of them with one fsync.
 * No fsync ever runs with `lock` held.
 *
 * Rotation happens at the end of a leader's batch, so a batch never straddles
 * two segments: the finished segment is fdatasync'ed, the next one is created
 * (base = next LSN), its header written and synced, the directory fsync'ed, and
 * the new fd is published under the lock.
 *
 * everysec: sync_thread_main wakes once a second, writes whatever was queued
 * but never waited for, and when written_lsn is ahead of durable_lsn dup()s the
 * active fd under the lock (so a concurrent rotation may close the original
 * freely), fdatasyncs the dup without the lock and advances durable_lsn to the
 * written_lsn it saw. Waiters never wait for this fsync.
 *
 * Recovery (aol_open) scans every segment in base-LSN order with a bounded
 * read window; LSNs must run on without gaps across the whole log. Damage in
 * the last segment is cut off (ftruncate + fsync) and reported; anywhere else
 * it is STRATA_ECORRUPT naming the file and offset. A last segment holding only
 * a torn header is deleted and recreated.
 *
 * Failure. Once a write or fsync fails, `failed` is set for good: later appends
 * and waits return STRATA_EIO with the first failure's message, as Redis
 * refuses writes after an AOF error. Recovery on the next open sorts it out.
 *
 * Locking:
 *   lock       pending, pending_max_ts, last/written/durable_lsn, flushing,
 *              failed, fail_msg, segs/n_segs/cap_segs, fd (written under lock,
 *              read without it only by the current flusher), stats, stopping.
 *   flushing   owns `spare` and the right to write to fd and to rotate.
 *   drop_lock  serializes aol_drop_segments (it unlinks files without `lock`).
 *   dir, dir_fd, policy, segment_max_bytes are immutable after open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"

#define AOL_SEGMENT_MAGIC "STRATAL1"
#define AOL_FORMAT_VERSION 1u
#define AOL_DEFAULT_SEGMENT_BYTES (64u << 20)
/* Appenders stall (and help flush) once this much is queued and unwritten. */
#define AOL_PENDING_SOFT_MAX (8u << 20)
#define AOL_PENDING_HARD_MAX \
    (AOL_PENDING_SOFT_MAX + AOL_HEADER_BYTES + AOL_MAX_TENANT + AOL_MAX_PAYLOAD)
/* A spare batch buffer bigger than this is freed after use rather than kept. */
#define AOL_SPARE_KEEP_BYTES (4u << 20)
#define AOL_READ_CHUNK (1u << 20)
#define AOL_SEG_NAME_DIGITS 20
#define AOL_SEG_NAME_LEN (AOL_SEG_NAME_DIGITS + 4) /* "%020llu.seg" */

typedef struct aol_seg {
    uint64_t base_lsn;            /* first LSN, from the file name and header */
    uint64_t last_lsn;            /* highest LSN inside; base_lsn - 1 while empty */
    int64_t max_ts_ms;            /* newest record timestamp; INT64_MIN while empty */
    uint64_t bytes;               /* file size, header included */
} aol_seg;

struct aol {
    uint64_t fresh_base;          /* first LSN of a log created empty (opts->first_lsn) */
    char *dir;                    /* immutable */
    int dir_fd;                   /* open on dir, flock'ed, fsync'ed after create/unlink */
    strata_fsync_policy policy;   /* immutable */
    uint64_t segment_max_bytes;   /* immutable */

    pthread_mutex_t lock;
    pthread_cond_t flushed;       /* broadcast when a flush ends (or fails) */
    pthread_cond_t sync_wake;     /* wakes the everysec thread for shutdown */
    pthread_mutex_t drop_lock;    /* serializes aol_drop_segments */

    sbuf pending;                 /* encoded records not yet handed to write() */
    int64_t pending_max_ts;       /* newest timestamp in pending; INT64_MIN when empty */
    sbuf spare;                   /* empty; swapped in by the leader */
    uint64_t last_lsn;            /* highest assigned */
    uint64_t written_lsn;         /* highest handed to write() successfully */
    uint64_t durable_lsn;         /* highest known fdatasync'ed */
    bool flushing;                /* a leader owns fd and spare right now */
    int failed;                   /* 0, or STRATA_EIO once a write/fsync failed */
    char fail_msg[256];           /* the first failure, for strata_errmsg */

    aol_seg *segs;                /* oldest first; the last is the active segment */
    size_t n_segs;
    size_t cap_segs;
    int fd;                       /* active segment, O_WRONLY | O_APPEND */

    uint64_t fsyncs;              /* fdatasync/fsync calls since open */
    uint64_t appends;             /* records appended since open */
    uint64_t segments_dropped;    /* by aol_drop_segments since open */

    bool stopping;                /* tells the sync thread to exit */
    bool sync_started;
    pthread_t sync_thread;
    bool locks_ready;             /* mutexes/condvars initialized (for cleanup) */
};

/* ====================================================================== */
/* CRC combine                                                             */
/* ====================================================================== */
/*
 * crc32c(0, A || B) == mult(x^(8|B|) mod P, crc32c(0, A)) ^ crc32c(0, B), the
 * zlib crc32_combine identity. aol_append uses it so the O(record) CRC pass
 * runs before taking the lock and only the 8-byte LSN is folded in under it.
 * The polynomial arithmetic is in the reflected bit order crc32c uses.
 */
#define CRC32C_POLY 0x82F63B78u

static uint32_t g_x2n[32];        /* x^(2^k) mod P */
static pthread_once_t g_x2n_once = PTHREAD_ONCE_INIT;

/* a * b modulo P, bit-reflected. */
static uint32_t crc_multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = (uint32_t)1 << 31;
    uint32_t p = 0;
    for (int i = 0; i < 32; i++) {
        if (a & m) {
            p ^= b;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

static void crc_x2n_init(void)
{
    uint32_t p = (uint32_t)1 << 30; /* x^1 */
    g_x2n[0] = p;
    for (int k = 1; k < 32; k++) {
        p = crc_multmodp(p, p);
        g_x2n[k] = p;
    }
}

/* x^(8 * n_bytes) mod P: the operator that shifts a CRC past n_bytes of data. */
static uint32_t crc_shift_op(size_t n_bytes)
{
    pthread_once(&g_x2n_once, crc_x2n_init);
    uint32_t p = (uint32_t)1 << 31; /* x^0 */
    unsigned k = 3;                 /* 2^3 bits per byte */
    while (n_bytes != 0) {
        if (n_bytes & 1) {
            p = crc_multmodp(g_x2n[k & 31], p);
        }
        n_bytes >>= 1;
        k++;
    }
    return p;
}

/* ====================================================================== */
/* record codec                                                            */
/* ====================================================================== */

static void rec_header_fill(uint8_t h[AOL_HEADER_BYTES], uint32_t payload_len, uint64_t lsn,
                            int64_t ts_ms, uint8_t type, uint8_t flags, uint16_t tenant_len)
{
    memset(h, 0, AOL_HEADER_BYTES);
    wire_le32(h, payload_len);
    wire_le64(h + 8, lsn);
    wire_le64(h + 16, (uint64_t)ts_ms);
    h[24] = type;
    h[25] = flags;
    h[26] = (uint8_t)tenant_len;
    h[27] = (uint8_t)(tenant_len >> 8);
}

static int rec_args_check(const char *tenant, size_t tenant_len, const void *payload,
                          size_t payload_len)
{
    if (tenant == NULL || tenant_len == 0 || tenant_len > AOL_MAX_TENANT) {
        return strata_error(STRATA_EINVAL, "log record: tenant length %zu not in 1..%d",
                            tenant_len, AOL_MAX_TENANT);
    }
    if (payload_len > AOL_MAX_PAYLOAD || (payload == NULL && payload_len != 0)) {
        return strata_error(STRATA_EINVAL, "log record: payload of %zu bytes (max %u)",
                            payload_len, AOL_MAX_PAYLOAD);
    }
    return STRATA_OK;
}

static int record_encode(sbuf *out, uint64_t lsn, int64_t ts_ms, uint8_t type, uint8_t flags,
                         const char *tenant, size_t tenant_len, const void *payload,
                         size_t payload_len);

int aol_record_encode(sbuf *out, uint64_t lsn, int64_t ts_ms, uint8_t type, const char *tenant,
                      size_t tenant_len, const void *payload, size_t payload_len)
{
    return record_encode(out, lsn, ts_ms, type, 0, tenant, tenant_len, payload, payload_len);
}

int aol_record_reencode(sbuf *out, const aol_record *rec)
{
    return record_encode(out, rec->lsn, rec->ts_ms, rec->type, rec->flags, rec->tenant,
                         rec->tenant_len, rec->payload_len ? (const void *)rec->payload : "",
                         rec->payload_len);
}

static int record_encode(sbuf *out, uint64_t lsn, int64_t ts_ms, uint8_t type, uint8_t flags,
                         const char *tenant, size_t tenant_len, const void *payload,
                         size_t payload_len)
{
    int rc = rec_args_check(tenant, tenant_len, payload, payload_len);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint8_t h[AOL_HEADER_BYTES];
    rec_header_fill(h, (uint32_t)payload_len, lsn, ts_ms, type, flags, (uint16_t)tenant_len);
    uint32_t crc = crc32c(0, h + 8, AOL_HEADER_BYTES - 8);
    crc = crc32c(crc, tenant, tenant_len);
    crc = crc32c(crc, payload, payload_len);
    wire_le32(h + 4, crc);

    rc = sbuf_reserve(out, AOL_HEADER_BYTES + tenant_len + payload_len);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf_append(out, h, AOL_HEADER_BYTES);
    sbuf_append(out, tenant, tenant_len);
    sbuf_append(out, payload, payload_len);
    return STRATA_OK;
}

/*
 * Lengths are checked as soon as their bytes are present, so a garbage length
 * is ECORRUPT at once instead of waiting for bytes that never come; a merely
 * short buffer is 0 (the caller decides whether that is a torn tail).
 */
long aol_record_decode(const uint8_t *buf, size_t len, aol_record *rec)
{
    if (buf == NULL || len < 4) {
        return 0;
    }
    uint32_t payload_len = wire_rd32(buf);
    if (payload_len > AOL_MAX_PAYLOAD) {
        return STRATA_ECORRUPT;
    }
    if (len < AOL_HEADER_BYTES) {
        return 0;
    }
    size_t tenant_len = (size_t)buf[26] | (size_t)buf[27] << 8;
    if (tenant_len == 0 || tenant_len > AOL_MAX_TENANT) {
        return STRATA_ECORRUPT;
    }
    size_t total = AOL_HEADER_BYTES + tenant_len + payload_len;
    if (len < total) {
        return 0;
    }
    if (crc32c(0, buf + 8, total - 8) != wire_rd32(buf + 4)) {
        return STRATA_ECORRUPT;
    }
    uint64_t lsn = wire_rd64(buf + 8);
    if (lsn == 0) {
        return STRATA_ECORRUPT; /* LSNs start at 1 */
    }
    if (rec != NULL) {
        rec->lsn = lsn;
        rec->ts_ms = (int64_t)wire_rd64(buf + 16);
        rec->type = buf[24];
        rec->flags = buf[25];
        rec->tenant = (const char *)buf + AOL_HEADER_BYTES;
        rec->tenant_len = tenant_len;
        rec->payload = buf + AOL_HEADER_BYTES + tenant_len;
        rec->payload_len = payload_len;
    }
    return (long)total;
}

/* ====================================================================== */
/* files                                                                   */
/* ====================================================================== */

/* pread() exactly up to n bytes at off; returns bytes read (short only at EOF) or -1. */
static ssize_t pread_full(int fd, void *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static void segment_path(const aol *log, uint64_t base, char *out, size_t n)
{
    snprintf(out, n, "%s/%020llu.seg", log->dir, (unsigned long long)base);
}

/* Parse "%020llu.seg"; false for any other name. */
static bool segment_name_parse(const char *name, uint64_t *base)
{
    if (strlen(name) != AOL_SEG_NAME_LEN || strcmp(name + AOL_SEG_NAME_DIGITS, ".seg") != 0) {
        return false;
    }
    uint64_t v = 0;
    for (int i = 0; i < AOL_SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *base = v;
    return v != 0;
}

static void segment_header_encode(uint8_t h[AOL_SEGMENT_HEADER_BYTES], uint64_t base,
                                  int64_t created_ms)
{
    memset(h, 0, AOL_SEGMENT_HEADER_BYTES);
    memcpy(h, AOL_SEGMENT_MAGIC, 8);
    wire_le32(h + 8, AOL_FORMAT_VERSION);
    wire_le64(h + 16, base);
    wire_le64(h + 24, (uint64_t)created_ms);
    uint32_t crc = crc32c(0, h, 12);
    crc = crc32c(crc, h + 16, 16);
    wire_le32(h + 12, crc);
}

/* True when h is a valid header; *base receives its base LSN. */
static bool segment_header_valid(const uint8_t h[AOL_SEGMENT_HEADER_BYTES], uint64_t *base)
{
    if (memcmp(h, AOL_SEGMENT_MAGIC, 8) != 0 || wire_rd32(h + 8) != AOL_FORMAT_VERSION) {
        return false;
    }
    uint32_t crc = crc32c(0, h, 12);
    crc = crc32c(crc, h + 16, 16);
    if (crc != wire_rd32(h + 12)) {
        return false;
    }
    *base = wire_rd64(h + 16);
    return true;
}

/*
 * Create segment `base`: write its header, fdatasync it, fsync the directory.
 * On success *fd_out is open O_WRONLY|O_APPEND. Touches only immutable fields,
 * so the flusher calls it without the lock. *n_syncs counts the fsyncs made.
 * No preallocation: fdatasync must update the file size on every append
 * anyway, and a preallocated tail of zeros would look like a torn record.
 */
static int segment_create(const aol *log, uint64_t base, int *fd_out, uint64_t *n_syncs)
{
    char path[PATH_MAX];
    segment_path(log, base, path, sizeof(path));
    *fd_out = -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return log_io_error("cannot create log segment", path);
    }
    uint8_t h[AOL_SEGMENT_HEADER_BYTES];
    segment_header_encode(h, base, clock_now_ms());
    if (log_write_all(fd, h, sizeof(h)) != 0) {
        goto fail;
    }
    if (log_fdatasync(fd) != 0) {
        goto fail;
    }
    (*n_syncs)++;
    if (fsync(log->dir_fd) != 0) {
        int rc = log_io_error("cannot fsync log directory", log->dir);
        close(fd);
        return rc;
    }
    (*n_syncs)++;
    *fd_out = fd;
    return STRATA_OK;

fail:;
    int rc = log_io_error("cannot write log segment header", path);
    close(fd);
    return rc;
}

/* ---- sequential segment reader ---------------------------------------- */

/* Outcomes of seg_reader_next besides negative error codes. */
#define SEG_END 0      /* clean end at the limit */
#define SEG_RECORD 1   /* *rec filled */
#define SEG_TORN 2     /* a partial record runs up to the limit */

/*
 * Reads records from one segment through a window that grows to hold the
 * largest record met (at most header + tenant + AOL_MAX_PAYLOAD), instead of
 * reading or mapping the whole file: a 1 GiB segment costs 1 MiB of memory.
 */
typedef struct seg_reader {
    int fd;
    const char *path;             /* for messages; borrowed */
    uint8_t *buf;                 /* strata_malloc'ed window */
    size_t cap;                   /* window size */
    size_t start;                 /* next undecoded byte in buf */
    size_t end;                   /* bytes valid in buf */
    uint64_t buf_off;             /* file offset of buf[0] */
    uint64_t read_off;            /* file offset of the next byte to read */
    uint64_t limit;               /* stop reading at this file offset */
    uint64_t rec_off;             /* file offset of the record last returned / failed */
} seg_reader;

static void seg_reader_init(seg_reader *r, int fd, const char *path, uint64_t limit)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->path = path;
    r->buf_off = AOL_SEGMENT_HEADER_BYTES;
    r->read_off = AOL_SEGMENT_HEADER_BYTES;
    r->limit = limit;
}

static void seg_reader_reset(seg_reader *r)
{
    strata_free(r->buf);
    r->buf = NULL;
}

/* Slide the unread bytes to the front, grow the window to `need`, read more. */
static int seg_reader_fill(seg_reader *r, size_t need)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->buf_off += r->start;
        r->start = 0;
    }
    size_t want = STRATA_MAX(need, (size_t)AOL_READ_CHUNK);
    if (want > r->cap) {
        uint8_t *nb = strata_realloc(r->buf, want);
        if (nb == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory reading the log");
        }
        r->buf = nb;
        r->cap = want;
    }
    uint64_t left = r->limit - r->read_off;
    size_t n = (size_t)STRATA_MIN((uint64_t)(r->cap - r->end), left);
    ssize_t got = pread_full(r->fd, r->buf + r->end, n, r->read_off);
    if (got < 0) {
        return log_io_error("cannot read log segment", r->path);
    }
    if ((size_t)got < n) {
        r->limit = r->read_off + (uint64_t)got; /* the file is shorter than expected */
    }
    r->end += (size_t)got;
    r->read_off += (uint64_t)got;
    return STRATA_OK;
}

/* Next record: SEG_RECORD, SEG_END, SEG_TORN, STRATA_ECORRUPT (at rec_off), or an
 * I/O / memory error. rec points into the window until the next call. */
static int seg_reader_next(seg_reader *r, aol_record *rec)
{
    for (;;) {
        size_t avail = r->end - r->start;
        r->rec_off = r->buf_off + r->start;
        long n = aol_record_decode(r->buf ? r->buf + r->start : NULL, avail, rec);
        if (n > 0) {
            r->start += (size_t)n;
            return SEG_RECORD;
        }
        if (n < 0) {
            return STRATA_ECORRUPT;
        }
        if (r->read_off >= r->limit) {
            return avail == 0 ? SEG_END : SEG_TORN;
        }
        /* decode only says "0" with a sane header, so the sizes here are bounded */
        size_t need = AOL_HEADER_BYTES;
        if (avail >= AOL_HEADER_BYTES) {
            const uint8_t *h = r->buf + r->start;
            need += ((size_t)h[26] | (size_t)h[27] << 8) + wire_rd32(h);
        }
        int rc = seg_reader_fill(r, need);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
}

/* ====================================================================== */
/* recovery                                                                */
/* ====================================================================== */

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Base LSNs of every segment file in dir, sorted. *out is strata_malloc'ed. */
static int segments_list(const aol *log, uint64_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(log->dir);
    if (d == NULL) {
        return log_io_error("cannot list log directory", log->dir);
    }
    uint64_t *v = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rc = STRATA_OK;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t base;
        if (!segment_name_parse(e->d_name, &base)) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = strata_realloc(v, ncap * sizeof(*v));
            if (nv == NULL) {
                rc = strata_error(STRATA_ENOMEM, "out of memory listing log segments");
                goto done;
            }
            v = nv;
            cap = ncap;
        }
        v[n++] = base;
        errno = 0;
    }
    if (errno != 0) {
        rc = log_io_error("cannot list log directory", log->dir);
        goto done;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), u64_cmp);
    }
    *out = v;
    *n_out = n;
    v = NULL;
done:
    strata_free(v);
    closedir(d);
    return rc;
}

static int segs_push(aol *log, const aol_seg *s)
{
    if (log->n_segs == log->cap_segs) {
        size_t ncap = log->cap_segs ? log->cap_segs * 2 : 16;
        aol_seg *ns = strata_realloc(log->segs, ncap * sizeof(*ns));
        if (ns == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory tracking log segments");
        }
        log->segs = ns;
        log->cap_segs = ncap;
    }
    log->segs[log->n_segs++] = *s;
    return STRATA_OK;
}

/* Cut the last segment at `off` and make the cut durable. */
static int segment_truncate(const char *path, uint64_t off)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return log_io_error("cannot open log segment", path);
    }
    int rc = STRATA_OK;
    if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
        rc = log_io_error("cannot truncate log segment", path);
    }
    close(fd);
    return rc;
}

/*
 * Scan one segment file. `expect` is the LSN its first record must carry
 * (0: the first segment, anything goes). A bad header, a torn or corrupt
 * record, or an LSN that is not exactly the next one are fatal in an earlier
 * segment and truncated away in the last one. *torn_header is set when the
 * last segment holds nothing but a partial/invalid header (a crash while it
 * was being created): the caller deletes and recreates it. *cut is set when
 * the tail was truncated (and the file therefore just fsync'ed).
 */
/* Is there a valid record with LSN >= next anywhere after off? A crash tears
 * only the end of the file, so one is a sign of damage in the middle. The
 * LSN field is checked before the (costlier) CRC at each offset. */
static bool tail_has_later_record(int fd, uint64_t off, uint64_t size, uint64_t next)
{
    if (size <= off + AOL_HEADER_BYTES || size - off > ((uint64_t)1 << 31)) {
        return false;
    }
    size_t n = (size_t)(size - off);
    uint8_t *buf = strata_malloc(n);
    if (buf == NULL || pread_full(fd, buf, n, off) != (ssize_t)n) {
        strata_free(buf);
        return false;
    }
    bool found = false;
    for (size_t o = 1; !found && o + AOL_HEADER_BYTES <= n; o++) {
        uint64_t lsn = wire_rd64(buf + o + 8);
        if (lsn < next || lsn > next + (1u << 20)) {
            continue;
        }
        aol_record rec;
        found = aol_record_decode(buf + o, n - o, &rec) > 0;
    }
    strata_free(buf);
    return found;
}

static int segment_recover(aol *log, uint64_t name_base, bool is_last, uint64_t expect,
                           aol_open_info *info, bool *torn_header, bool *cut)
{
    char path[PATH_MAX];
    segment_path(log, name_base, path, sizeof(path));
    *torn_header = false;
    *cut = false;
    seg_reader r;
    seg_reader_init(&r, -1, path, 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return log_io_error("cannot open log segment", path);
    }
    int rc = STRATA_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = log_io_error("cannot stat log segment", path);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;

    uint8_t h[AOL_SEGMENT_HEADER_BYTES];
    uint64_t base = 0;
    ssize_t got = pread_full(fd, h, sizeof(h), 0);
    if (got < 0) {
        rc = log_io_error("cannot read log segment", path);
        goto done;
    }
    if ((size_t)got < sizeof(h) || !segment_header_valid(h, &base)) {
        /* The header is fdatasync'ed before any record is written, so a bad
         * header followed by data is damage, not a crash during creation. */
        if (is_last && size <= AOL_SEGMENT_HEADER_BYTES) {
            *torn_header = true;
            info->bytes_truncated += size;
            goto done;
        }
        rc = strata_error(STRATA_ECORRUPT, "log segment %s: bad header", path);
        goto done;
    }
    if (base != name_base) {
        rc = strata_error(STRATA_ECORRUPT,
                          "log segment %s: header says base LSN %llu", path,
                          (unsigned long long)base);
        goto done;
    }
    if (expect != 0 && base != expect) {
        rc = strata_error(STRATA_ECORRUPT,
                          "log segment %s: starts at LSN %llu, expected %llu (gap)", path,
                          (unsigned long long)base, (unsigned long long)expect);
        goto done;
    }

    aol_seg seg = {base, base - 1, INT64_MIN, AOL_SEGMENT_HEADER_BYTES};
    uint64_t next = base;
    seg_reader_init(&r, fd, path, size);
    for (;;) {
        aol_record rec;
        int step = seg_reader_next(&r, &rec);
        const char *why = NULL;
        if (step == SEG_END) {
            break;
        }
        if (step == SEG_RECORD) {
            if (rec.lsn == next) {
                next++;
                seg.last_lsn = rec.lsn;
                seg.max_ts_ms = STRATA_MAX(seg.max_ts_ms, rec.ts_ms);
                seg.bytes = r.buf_off + r.start;
                info->records++;
                continue;
            }
            why = "LSN out of sequence";
        } else if (step == SEG_TORN) {
            why = "partial record";
        } else if (step == STRATA_ECORRUPT) {
            why = "bad length or checksum";
        } else {
            rc = step;
            goto done;
        }
        if (!is_last) {
            rc = strata_error(STRATA_ECORRUPT, "log segment %s: %s at offset %llu", path, why,
                              (unsigned long long)r.rec_off);
            goto done;
        }
        if (tail_has_later_record(fd, r.rec_off, size, next)) {
            /* Not a torn write: valid records follow the damage, and cutting
             * there would silently drop acknowledged writes. */
            rc = strata_error(STRATA_ECORRUPT,
                              "log segment %s: %s at offset %llu, and intact records follow "
                              "(damaged, not torn): refusing to truncate",
                              path, why, (unsigned long long)r.rec_off);
            goto done;
        }
        slog(SLOG_WARN, "log segment %s: %s at offset %llu, truncating %llu bytes", path, why,
             (unsigned long long)r.rec_off, (unsigned long long)(size - r.rec_off));
        rc = segment_truncate(path, r.rec_off);
        if (rc != STRATA_OK) {
            goto done;
        }
        info->bytes_truncated += size - r.rec_off;
        seg.bytes = r.rec_off;
        *cut = true;
        break;
    }
    rc = segs_push(log, &seg);
done:
    seg_reader_reset(&r);
    close(fd);
    return rc;
}

/* Scan every segment, repair the tail, open (or create) the active segment. */
static int aol_recover(aol *log, aol_open_info *info)
{
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = segments_list(log, &bases, &n);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint64_t expect = 0;
    uint64_t create_base = 0;     /* != 0: the active segment must be created */
    bool cut = false;             /* the last segment was truncated and fsync'ed */
    for (size_t i = 0; i < n; i++) {
        bool torn = false;
        rc = segment_recover(log, bases[i], i + 1 == n, expect, info, &torn, &cut);
        if (rc != STRATA_OK) {
            goto done;
        }
        if (torn) {
            if (expect != 0 && bases[i] != expect) {
                rc = strata_error(STRATA_ECORRUPT, "log segment %020llu.seg: expected base %llu",
                                  (unsigned long long)bases[i], (unsigned long long)expect);
                goto done;
            }
            char path[PATH_MAX];
            segment_path(log, bases[i], path, sizeof(path));
            slog(SLOG_WARN, "log segment %s: torn header, recreating it", path);
            if (unlink(path) != 0) {
                rc = log_io_error("cannot remove torn log segment", path);
                goto done;
            }
            create_base = bases[i];
            break;
        }
        expect = log->segs[log->n_segs - 1].last_lsn + 1;
    }
    if (log->n_segs == 0 && create_base == 0) {
        create_base = log->fresh_base; /* a fresh log */
    }
    if (create_base != 0) {
        uint64_t syncs = 0;
        aol_seg seg = {create_base, create_base - 1, INT64_MIN, AOL_SEGMENT_HEADER_BYTES};
        rc = segs_push(log, &seg);
        if (rc == STRATA_OK) {
            rc = segment_create(log, create_base, &log->fd, &syncs);
        }
        if (rc != STRATA_OK) {
            goto done;
        }
    } else {
        char path[PATH_MAX];
        segment_path(log, log->segs[log->n_segs - 1].base_lsn, path, sizeof(path));
        log->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (log->fd < 0) {
            rc = log_io_error("cannot open log segment", path);
            goto done;
        }
        /* What we just read may have been only in the page cache (the previous
         * process was killed): make it durable so durable_lsn tells the truth. */
        if (!cut && log_fdatasync(log->fd) != 0) {
            rc = log_io_error("cannot fdatasync log segment", path);
            goto done;
        }
    }
    log->last_lsn = log->segs[log->n_segs - 1].last_lsn;
    log->written_lsn = log->last_lsn;
    log->durable_lsn = log->last_lsn;
done:
    strata_free(bases);
    return rc;
}

/* ====================================================================== */
/* flushing                                                                */
/* ====================================================================== */

/* Caller holds lock. Makes the log read-only for good; keeps the first reason. */
static void aol_fail_locked(aol *log, const char *msg)
{
    if (log->failed == 0) {
        log->failed = STRATA_EIO;
        snprintf(log->fail_msg, sizeof(log->fail_msg), "event log is read-only after: %s",
                 msg);
        slog(SLOG_ERROR, "%s", log->fail_msg);
    }
}

/* Caller holds lock and log->failed != 0: report it on this thread. */
static int aol_failed_error(aol *log)
{
    return strata_error(log->failed, "%s", log->fail_msg);
}

/*
 * Become the flusher: write everything pending, fdatasync when do_sync (or when
 * the segment is full and gets rotated). Caller holds lock, flushing is false
 * and failed is 0; the lock is released during the I/O and held again on
 * return. Errors are recorded in log->failed, not returned: every waiter must
 * see them, not only the leader.
 */
static void flush_locked(aol *log, bool do_sync)
{
    log->flushing = true;
    sbuf batch = log->pending;
    log->pending = log->spare;
    sbuf_init(&log->spare, AOL_PENDING_HARD_MAX);
    int64_t batch_max_ts = log->pending_max_ts;
    log->pending_max_ts = INT64_MIN;
    uint64_t batch_last = log->last_lsn;
    bool need_sync = do_sync && (batch.len > 0 || log->durable_lsn < log->written_lsn);
    uint64_t seg_bytes = log->segs[log->n_segs - 1].bytes + batch.len;
    bool rotate = batch.len > 0 && seg_bytes >= log->segment_max_bytes;
    if (rotate && log->n_segs == log->cap_segs) {
        /* Grow now so publishing the new segment later cannot fail; when even
         * this fails, the segment just grows past its limit for a while. */
        size_t ncap = log->cap_segs * 2;
        aol_seg *ns = strata_realloc(log->segs, ncap * sizeof(*ns));
        if (ns == NULL) {
            rotate = false;
        } else {
            log->segs = ns;
            log->cap_segs = ncap;
        }
    }
    int fd = log->fd;
    pthread_mutex_unlock(&log->lock);

    char msg[200] = "";
    bool wrote = false;
    bool synced = false;
    int new_fd = -1;
    uint64_t n_syncs = 0;
    if (batch.len > 0 && log_write_all(fd, batch.data, batch.len) != 0) {
        snprintf(msg, sizeof(msg), "write to log segment failed: %s", strerror(errno));
    } else {
        wrote = true;
    }
    if (wrote && (need_sync || rotate)) {
        if (log_fdatasync(fd) != 0) {
            snprintf(msg, sizeof(msg), "fdatasync of log segment failed: %s", strerror(errno));
        } else {
            synced = true;
            n_syncs++;
        }
    }
    if (synced && rotate) {
        if (segment_create(log, batch_last + 1, &new_fd, &n_syncs) != STRATA_OK) {
            snprintf(msg, sizeof(msg), "%s", strata_errmsg());
        }
    }

    pthread_mutex_lock(&log->lock);
    aol_seg *active = &log->segs[log->n_segs - 1];
    if (wrote) {
        log->written_lsn = STRATA_MAX(log->written_lsn, batch_last);
        if (batch.len > 0) {
            active->bytes += batch.len;
            active->last_lsn = batch_last;
            active->max_ts_ms = STRATA_MAX(active->max_ts_ms, batch_max_ts);
        }
    }
    if (synced) {
        log->durable_lsn = STRATA_MAX(log->durable_lsn, batch_last);
    }
    log->fsyncs += n_syncs;
    if (new_fd >= 0) {
        aol_seg next = {batch_last + 1, batch_last, INT64_MIN, AOL_SEGMENT_HEADER_BYTES};
        log->segs[log->n_segs++] = next; /* capacity reserved above */
        log->fd = new_fd;
        close(fd); /* the everysec thread syncs a dup(), never this number */
    }
    if (msg[0] != '\0') {
        aol_fail_locked(log, msg);
    }
    if (batch.cap > AOL_SPARE_KEEP_BYTES) {
        sbuf_free(&batch);
    }
    sbuf_reset(&batch);
    log->spare = batch;
    log->flushing = false;
    pthread_cond_broadcast(&log->flushed);
}

/* ====================================================================== */
/* everysec thread                                                         */
/* ====================================================================== */

static void *sync_thread_main(void *arg)
{
    aol *log = arg;
    pthread_mutex_lock(&log->lock);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 1;
    while (!log->stopping) {
        int w = pthread_cond_timedwait(&log->sync_wake, &log->lock, &deadline);
        if (log->stopping) {
            break;
        }
        if (w != ETIMEDOUT) {
            continue; /* spurious: keep the same deadline */
        }
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += 1;
        if (log->failed) {
            continue;
        }
        /* Records appended by someone who never waits still reach the disk,
         * like Redis flushing its AOF buffer every event loop turn. */
        if (log->pending.len > 0 && !log->flushing) {
            flush_locked(log, false);
            if (log->stopping || log->failed) {
                continue;
            }
        }
        if (log->written_lsn <= log->durable_lsn) {
            continue;
        }
        uint64_t target = log->written_lsn;
        int fd = fcntl(log->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            /* out of descriptors: not a disk failure, try again next second */
            slog(SLOG_WARN, "log sync thread: dup failed: %s", strerror(errno));
            continue;
        }
        pthread_mutex_unlock(&log->lock);
        int ok = log_fdatasync(fd) == 0;
        char msg[200];
        snprintf(msg, sizeof(msg), "background fdatasync of the log failed: %s",
                 strerror(errno));
        close(fd);
        pthread_mutex_lock(&log->lock);
        if (ok) {
            log->durable_lsn = STRATA_MAX(log->durable_lsn, target);
            log->fsyncs++;
        } else {
            aol_fail_locked(log, msg);
            pthread_cond_broadcast(&log->flushed);
        }
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

/* ====================================================================== */
/* open / close                                                            */
/* ====================================================================== */

static void aol_free(aol *log)
{
    if (log == NULL) {
        return;
    }
    if (log->fd >= 0) {
        close(log->fd);
    }
    if (log->dir_fd >= 0) {
        close(log->dir_fd); /* also releases the flock */
    }
    if (log->locks_ready) {
        pthread_mutex_destroy(&log->lock);
        pthread_mutex_destroy(&log->drop_lock);
        pthread_cond_destroy(&log->flushed);
        pthread_cond_destroy(&log->sync_wake);
    }
    sbuf_free(&log->pending);
    sbuf_free(&log->spare);
    strata_free(log->segs);
    strata_free(log->dir);
    strata_free(log);
}

static int aol_locks_init(aol *log)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        return strata_error(STRATA_ENOMEM, "cannot init condition variable attributes");
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int ok = pthread_mutex_init(&log->lock, NULL) == 0;
    if (ok && pthread_mutex_init(&log->drop_lock, NULL) != 0) {
        pthread_mutex_destroy(&log->lock);
        ok = 0;
    }
    if (ok && pthread_cond_init(&log->flushed, NULL) != 0) {
        pthread_mutex_destroy(&log->lock);
        pthread_mutex_destroy(&log->drop_lock);
        ok = 0;
    }
    if (ok && pthread_cond_init(&log->sync_wake, &ca) != 0) {
        pthread_mutex_destroy(&log->lock);
        pthread_mutex_destroy(&log->drop_lock);
        pthread_cond_destroy(&log->flushed);
        ok = 0;
    }
    pthread_condattr_destroy(&ca);
    if (!ok) {
        return strata_error(STRATA_ENOMEM, "cannot init log locks");
    }
    log->locks_ready = true;
    return STRATA_OK;
}

/*
 * Contract in log.h. segment_max_bytes 0 means AOL_DEFAULT_SEGMENT_BYTES. The
 * directory is flock'ed for the handle's lifetime (STRATA_EBUSY if taken).
 * On failure *out is NULL; info keeps bytes_truncated if a repair was made.
 */
int aol_open(const aol_options *opts, aol **out, aol_open_info *info)
{
    aol_open_info local_info;
    if (info == NULL) {
        info = &local_info;
    }
    memset(info, 0, sizeof(*info));
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "aol_open: out is NULL");
    }
    *out = NULL;
    if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0' ||
        strlen(opts->dir) > PATH_MAX - AOL_SEG_NAME_LEN - 2) {
        return strata_error(STRATA_EINVAL, "aol_open: missing or too long directory");
    }
    if (opts->fsync != STRATA_FSYNC_ALWAYS && opts->fsync != STRATA_FSYNC_EVERYSEC &&
        opts->fsync != STRATA_FSYNC_NO) {
        return strata_error(STRATA_EINVAL, "aol_open: bad fsync policy %d", (int)opts->fsync);
    }
    aol *log = strata_calloc(1, sizeof(*log));
    if (log == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory opening the log");
    }
    log->fd = -1;
    log->dir_fd = -1;
    log->policy = opts->fsync;
    log->fresh_base = opts->first_lsn ? opts->first_lsn : 1;
    log->segment_max_bytes =
        opts->segment_max_bytes ? opts->segment_max_bytes : AOL_DEFAULT_SEGMENT_BYTES;
    log->pending_max_ts = INT64_MIN;
    sbuf_init(&log->pending, AOL_PENDING_HARD_MAX);
    sbuf_init(&log->spare, AOL_PENDING_HARD_MAX);
    int rc = STRATA_ENOMEM;
    log->dir = strata_strdup(opts->dir);
    if (log->dir == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory opening the log");
        goto fail;
    }
    rc = aol_locks_init(log);
    if (rc != STRATA_OK) {
        goto fail;
    }
    rc = log_mkdir_p(log->dir);
    if (rc != STRATA_OK) {
        goto fail;
    }
    log->dir_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        rc = log_io_error("cannot open log directory", log->dir);
        goto fail;
    }
    /* Two writers on one log would interleave LSNs; flock is per open file
     * description, so this also catches a second open in the same process. */
    if (flock(log->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            rc = strata_error(STRATA_EBUSY, "log directory %s is in use", log->dir);
        } else {
            rc = log_io_error("cannot lock log directory", log->dir);
        }
        goto fail;
    }
    rc = aol_recover(log, info);
    if (rc != STRATA_OK) {
        goto fail;
    }
    if (log->policy == STRATA_FSYNC_EVERYSEC) {
        if (pthread_create(&log->sync_thread, NULL, sync_thread_main, log) != 0) {
            rc = strata_error(STRATA_ENOMEM, "cannot start the log sync thread");
            goto fail;
        }
        log->sync_started = true;
    }
    info->last_lsn = log->last_lsn;
    info->segments = log->n_segs;
    *out = log;
    return STRATA_OK;

fail:
    aol_free(log);
    info->last_lsn = 0;
    info->records = 0;
    info->segments = 0;
    return rc;
}

/* Waits for a running flush, writes and fdatasyncs the rest (unless the log
 * already failed), stops the sync thread. No append may run concurrently. */
void aol_close(aol *log)
{
    if (log == NULL) {
        return;
    }
    pthread_mutex_lock(&log->lock);
    while (log->flushing) {
        pthread_cond_wait(&log->flushed, &log->lock);
    }
    if (!log->failed) {
        flush_locked(log, true);
    }
    log->stopping = true;
    pthread_cond_signal(&log->sync_wake);
    pthread_mutex_unlock(&log->lock);
    if (log->sync_started) {
        pthread_join(log->sync_thread, NULL);
    }
    aol_free(log);
}

/* ====================================================================== */
/* append / wait / sync                                                    */
/* ====================================================================== */

/*
 * Takes `lock` once, for the LSN, one O(1) CRC fold and three memcpy's. An
 * allocation failure returns STRATA_ENOMEM without using up an LSN. Blocks
 * (helping to flush) only when AOL_PENDING_SOFT_MAX bytes are already queued.
 */
int aol_append(aol *log, uint8_t type, const char *tenant, size_t tenant_len, int64_t ts_ms,
               const void *payload, size_t payload_len, uint64_t *lsn_out)
{
    return aol_append_flags(log, type, 0, tenant, tenant_len, ts_ms, payload, payload_len,
                            lsn_out);
}

int aol_append_flags(aol *log, uint8_t type, uint8_t flags, const char *tenant,
                     size_t tenant_len, int64_t ts_ms, const void *payload, size_t payload_len,
                     uint64_t *lsn_out)
{
    if (lsn_out != NULL) {
        *lsn_out = 0;
    }
    if (log == NULL) {
        return strata_error(STRATA_EINVAL, "aol_append: no log");
    }
    int rc = rec_args_check(tenant, tenant_len, payload, payload_len);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* Everything but the LSN and its CRC is prepared before taking the lock. */
    uint8_t h[AOL_HEADER_BYTES];
    rec_header_fill(h, (uint32_t)payload_len, 0, ts_ms, type, flags, (uint16_t)tenant_len);
    size_t tail_len = AOL_HEADER_BYTES - 16 + tenant_len + payload_len;
    uint32_t tail_crc = crc32c(0, h + 16, AOL_HEADER_BYTES - 16);
    tail_crc = crc32c(tail_crc, tenant, tenant_len);
    tail_crc = crc32c(tail_crc, payload, payload_len);
    uint32_t shift = crc_shift_op(tail_len);
    size_t total = AOL_HEADER_BYTES + tenant_len + payload_len;

    pthread_mutex_lock(&log->lock);
    /* Backpressure: with this much unwritten, help write it (or wait) first. */
    while (!log->failed && log->pending.len >= AOL_PENDING_SOFT_MAX) {
        if (!log->flushing) {
            flush_locked(log, log->policy == STRATA_FSYNC_ALWAYS);
        } else {
            pthread_cond_wait(&log->flushed, &log->lock);
        }
    }
    if (log->failed) {
        rc = aol_failed_error(log);
        pthread_mutex_unlock(&log->lock);
        return rc;
    }
    rc = sbuf_reserve(&log->pending, total);
    if (rc != STRATA_OK) {
        pthread_mutex_unlock(&log->lock);
        return rc;
    }
    uint64_t lsn = ++log->last_lsn;
    wire_le64(h + 8, lsn);
    wire_le32(h + 4, crc_multmodp(shift, crc32c(0, h + 8, 8)) ^ tail_crc);
    char *dst = log->pending.data + log->pending.len;
    memcpy(dst, h, AOL_HEADER_BYTES);
    memcpy(dst + AOL_HEADER_BYTES, tenant, tenant_len);
    if (payload_len > 0) {
        memcpy(dst + AOL_HEADER_BYTES + tenant_len, payload, payload_len);
    }
    log->pending.len += total;
    log->pending_max_ts = STRATA_MAX(log->pending_max_ts, ts_ms);
    log->appends++;
    pthread_mutex_unlock(&log->lock);
    if (lsn_out != NULL) {
        *lsn_out = lsn;
    }
    return STRATA_OK;
}

/* Lead flushes or follow them until pred(log) >= lsn. Caller holds lock. */
static int wait_locked(aol *log, uint64_t lsn, bool durable)
{
    for (;;) {
        uint64_t done = durable ? log->durable_lsn : log->written_lsn;
        if (done >= lsn) {
            return STRATA_OK;
        }
        if (log->failed) {
            return aol_failed_error(log);
        }
        if (!log->flushing) {
            flush_locked(log, durable);
        } else {
            pthread_cond_wait(&log->flushed, &log->lock);
        }
    }
}

/* "always" waits for durable_lsn, the other policies for written_lsn (the page
 * cache survives kill -9). STRATA_EINVAL for an LSN never assigned. */
int aol_wait(aol *log, uint64_t lsn)
{
    if (log == NULL) {
        return strata_error(STRATA_EINVAL, "aol_wait: no log");
    }
    pthread_mutex_lock(&log->lock);
    int rc;
    if (lsn > log->last_lsn) {
        rc = strata_error(STRATA_EINVAL, "aol_wait: LSN %llu was never assigned",
                          (unsigned long long)lsn);
    } else {
        rc = wait_locked(log, lsn, log->policy == STRATA_FSYNC_ALWAYS);
    }
    pthread_mutex_unlock(&log->lock);
    return rc;
}

/* Like aol_wait(last_lsn) under "always", whatever the policy. */
int aol_sync(aol *log)
{
    if (log == NULL) {
        return strata_error(STRATA_EINVAL, "aol_sync: no log");
    }
    pthread_mutex_lock(&log->lock);
    int rc = wait_locked(log, log->last_lsn, true);
    pthread_mutex_unlock(&log->lock);
    return rc;
}

void aol_stats_get(aol *log, aol_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (log == NULL) {
        return;
    }
    pthread_mutex_lock(&log->lock);
    out->last_lsn = log->last_lsn;
    out->written_lsn = log->written_lsn;
    out->durable_lsn = log->durable_lsn;
    for (size_t i = 0; i < log->n_segs; i++) {
        out->bytes += log->segs[i].bytes;
    }
    out->segments = log->n_segs;
    out->fsyncs = log->fsyncs;
    out->appends = log->appends;
    out->segments_dropped = log->segments_dropped;
    out->base_lsn = log->n_segs > 0 ? log->segs[0].base_lsn : 0;
    pthread_mutex_unlock(&log->lock);
}

/* ====================================================================== */
/* replay                                                                  */
/* ====================================================================== */

/*
 * Reads exactly the bytes recovery validated (segs[i].bytes), segment by
 * segment, so the callback sees LSN order. Anything queued but not yet written
 * is written first (no fsync), which makes a replay after appends complete.
 * A record that no longer decodes is STRATA_ECORRUPT: the file changed under us.
 */
int aol_replay(aol *log, uint64_t after_lsn, aol_replay_fn cb, void *ctx)
{
    if (log == NULL || cb == NULL) {
        return strata_error(STRATA_EINVAL, "aol_replay: no log or callback");
    }
    /* Hand queued records to the file first, so a replay after appends sees
     * them; the segment table is then copied so no lock is held in cb. */
    pthread_mutex_lock(&log->lock);
    while (log->flushing) {
        pthread_cond_wait(&log->flushed, &log->lock);
    }
    if (!log->failed && log->pending.len > 0) {
        flush_locked(log, false);
    }
    size_t n = log->n_segs;
    aol_seg *segs = strata_memdup(log->segs, n * sizeof(*segs));
    pthread_mutex_unlock(&log->lock);
    if (segs == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory replaying the log");
    }

    int rc = STRATA_OK;
    for (size_t i = 0; i < n && rc == STRATA_OK; i++) {
        if (segs[i].last_lsn <= after_lsn) {
            continue; /* also skips empty segments */
        }
        char path[PATH_MAX];
        segment_path(log, segs[i].base_lsn, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = log_io_error("cannot open log segment", path);
            break;
        }
        seg_reader r;
        seg_reader_init(&r, fd, path, segs[i].bytes);
        for (;;) {
            aol_record rec;
            int step = seg_reader_next(&r, &rec);
            if (step == SEG_END) {
                break;
            }
            if (step != SEG_RECORD) {
                /* recovery validated these bytes: they changed under us */
                rc = step < 0 && step != STRATA_ECORRUPT
                         ? step
                         : strata_error(STRATA_ECORRUPT,
                                        "log segment %s: unreadable record at offset %llu",
                                        path, (unsigned long long)r.rec_off);
                break;
            }
            if (rec.lsn <= after_lsn) {
                continue;
            }
            rc = cb(ctx, &rec);
            if (rc != 0) {
                break;
            }
        }
        seg_reader_reset(&r);
        close(fd);
    }
    strata_free(segs);
    return rc;
}

/* ====================================================================== */
/* retention                                                               */
/* ====================================================================== */

/*
 * Only a prefix of the segment list is ever dropped: deleting a segment in
 * the middle would leave an LSN gap that the next open reports as corruption.
 * Files are unlinked oldest first without `lock` (unlink of a big file can
 * take a while), so a crash midway still leaves a contiguous suffix.
 */
int aol_drop_segments(aol *log, uint64_t keep_after_lsn, int64_t older_than_ms,
                      uint64_t *dropped)
{
    if (dropped != NULL) {
        *dropped = 0;
    }
    if (log == NULL) {
        return strata_error(STRATA_EINVAL, "aol_drop_segments: no log");
    }
    pthread_mutex_lock(&log->drop_lock);
    pthread_mutex_lock(&log->lock);
    size_t n_drop = 0;
    while (n_drop + 1 < log->n_segs) {
        const aol_seg *s = &log->segs[n_drop];
        if (s->last_lsn > keep_after_lsn || s->max_ts_ms >= older_than_ms) {
            break;
        }
        n_drop++;
    }
    uint64_t *bases = NULL;
    if (n_drop > 0) {
        bases = strata_malloc(n_drop * sizeof(*bases));
        for (size_t i = 0; bases != NULL && i < n_drop; i++) {
            bases[i] = log->segs[i].base_lsn;
        }
    }
    pthread_mutex_unlock(&log->lock);
    int rc = STRATA_OK;
    if (n_drop > 0 && bases == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory dropping log segments");
        goto done;
    }

    size_t removed = 0;
    for (; removed < n_drop; removed++) {
        char path[PATH_MAX];
        segment_path(log, bases[removed], path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = log_io_error("cannot remove log segment", path);
            break;
        }
    }
    if (removed > 0 && fsync(log->dir_fd) != 0 && rc == STRATA_OK) {
        rc = log_io_error("cannot fsync log directory", log->dir);
    }

    pthread_mutex_lock(&log->lock);
    /* Appends only add at the end, so the removed ones are still the prefix. */
    memmove(log->segs, log->segs + removed, (log->n_segs - removed) * sizeof(*log->segs));
    log->n_segs -= removed;
    log->segments_dropped += removed;
    if (removed > 0) {
        log->fsyncs++;
    }
    pthread_mutex_unlock(&log->lock);
    if (dropped != NULL) {
        *dropped = removed;
    }
done:
    strata_free(bases);
    pthread_mutex_unlock(&log->drop_lock);
    return rc;
}

/* ====================================================================== */
/* erasure (right to be forgotten)                                         */
/* ====================================================================== */

/*
 * Rewrite one segment with the records `erase` picks replaced by NOOPs of the
 * same LSN, time and tenant. The new image goes to <seg>.tmp, is fdatasync'ed
 * and renamed over the original, so every crash point leaves one valid copy.
 * *new_bytes gets the new size (unchanged when nothing matched: no write).
 */
static int segment_erase(aol *log, const aol_seg *seg, aol_erase_fn erase, void *ctx,
                         uint64_t *n_erased, uint64_t *new_bytes)
{
    char path[PATH_MAX];
    char tmp[PATH_MAX + 8];
    segment_path(log, seg->base_lsn, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    *new_bytes = seg->bytes;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return log_io_error("cannot open log segment", path);
    }
    uint8_t *img = strata_malloc(seg->bytes ? seg->bytes : 1);
    ssize_t got = img ? pread_full(fd, img, seg->bytes, 0) : -1;
    close(fd);
    if (img == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory erasing records");
    }
    if (got != (ssize_t)seg->bytes) {
        strata_free(img);
        return log_io_error("cannot read log segment", path);
    }
    sbuf out;
    sbuf_init(&out, SIZE_MAX / 2);
    int rc = sbuf_append(&out, img, AOL_SEGMENT_HEADER_BYTES);
    uint64_t hits = 0;
    size_t off = AOL_SEGMENT_HEADER_BYTES;
    while (rc == STRATA_OK && off < seg->bytes) {
        aol_record rec;
        long n = aol_record_decode(img + off, seg->bytes - off, &rec);
        if (n <= 0) {
            rc = strata_error(STRATA_ECORRUPT, "log segment %s: unreadable record at offset %zu",
                              path, off);
            break;
        }
        if (rec.type != AOL_NOOP && erase(ctx, &rec)) {
            rc = aol_record_encode(&out, rec.lsn, rec.ts_ms, AOL_NOOP, rec.tenant,
                                   rec.tenant_len, "", 0);
            hits++;
        } else {
            rc = sbuf_append(&out, img + off, (size_t)n);
        }
        off += (size_t)n;
    }
    strata_free(img);
    if (rc == STRATA_OK && hits > 0) {
        int tfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (tfd < 0 || log_write_all(tfd, out.data, out.len) != 0 || log_fdatasync(tfd) != 0) {
            rc = log_io_error("cannot write erased log segment", tmp);
        }
        if (tfd >= 0) {
            close(tfd);
        }
        if (rc == STRATA_OK && rename(tmp, path) != 0) {
            rc = log_io_error("cannot replace log segment", path);
        }
        if (rc != STRATA_OK) {
            unlink(tmp);
        } else if (fsync(log->dir_fd) != 0) {
            rc = log_io_error("cannot fsync log directory", log->dir);
        }
        if (rc == STRATA_OK) {
            *new_bytes = out.len;
            *n_erased += hits;
        }
    }
    sbuf_free(&out);
    return rc;
}

int aol_erase(aol *log, aol_erase_fn erase, void *ctx, uint64_t *erased)
{
    if (erased != NULL) {
        *erased = 0;
    }
    if (log == NULL || erase == NULL) {
        return strata_error(STRATA_EINVAL, "aol_erase: no log or callback");
    }
    /* drop_lock keeps retention away; owning `flushing` keeps every writer
     * (and rotation) off the files while they are rewritten. Appends still
     * queue in `pending` and their waiters wait. */
    pthread_mutex_lock(&log->drop_lock);
    pthread_mutex_lock(&log->lock);
    /* Everything queued goes to the files first (and is synced). */
    for (;;) {
        while (log->flushing) {
            pthread_cond_wait(&log->flushed, &log->lock);
        }
        if (log->failed) {
            int rc = aol_failed_error(log);
            pthread_mutex_unlock(&log->lock);
            pthread_mutex_unlock(&log->drop_lock);
            return rc;
        }
        if (log->pending.len == 0) {
            break;
        }
        flush_locked(log, true);
    }
    log->flushing = true;
    size_t n = log->n_segs;
    aol_seg *segs = strata_memdup(log->segs, n * sizeof(*segs));
    pthread_mutex_unlock(&log->lock);

    int rc = segs ? STRATA_OK : strata_error(STRATA_ENOMEM, "out of memory erasing records");
    uint64_t hits = 0;
    uint64_t *sizes = segs ? strata_calloc(n ? n : 1, sizeof(*sizes)) : NULL;
    if (rc == STRATA_OK && sizes == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory erasing records");
    }
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        sizes[i] = segs[i].bytes;
        if (segs[i].last_lsn >= segs[i].base_lsn) {
            rc = segment_erase(log, &segs[i], erase, ctx, &hits, &sizes[i]);
        }
    }
    /* The active segment may have been replaced: append to the new file. */
    int new_fd = -1;
    if (rc == STRATA_OK && n > 0 && sizes[n - 1] != segs[n - 1].bytes) {
        char path[PATH_MAX];
        segment_path(log, segs[n - 1].base_lsn, path, sizeof(path));
        new_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (new_fd < 0) {
            rc = log_io_error("cannot reopen the active log segment", path);
        }
    }

    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; sizes != NULL && i < n; i++) {
        log->segs[i].bytes = sizes[i]; /* flushing kept the table fixed */
    }
    if (new_fd >= 0) {
        close(log->fd);
        log->fd = new_fd;
    } else if (rc != STRATA_OK && rc != STRATA_ENOMEM && rc != STRATA_ECORRUPT) {
        /* The active file may be gone or half replaced: stop writing. */
        aol_fail_locked(log, strata_errmsg());
    }
    log->flushing = false;
    pthread_cond_broadcast(&log->flushed);
    pthread_mutex_unlock(&log->lock);
    pthread_mutex_unlock(&log->drop_lock);
    strata_free(sizes);
    strata_free(segs);
    if (erased != NULL) {
        *erased = hits;
    }
    return rc;
}
