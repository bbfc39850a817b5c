/*
 * snap.c - tier snapshots: one file per (tier, LSN) holding a tier's whole
 * state as of that LSN, so recovery loads the newest snapshot and replays only
 * the log records after it. The file format is documented in log.h:
 *
 *   snap/.l2-00000000000000000042.tmp   being written (a crash leaves it behind)
 *   snap/l2-00000000000000000042.snap   committed: header + body, both CRC'd
 *
 * A writer streams the body into the temporary file behind a 64-byte
 * placeholder header, computing the body CRC as it goes; snap_commit pwrite()s
 * the real header at offset 0, fdatasyncs, renames and fsyncs the directory, so
 * a crash at any point leaves either the old set of snapshots or the new one.
 *
 * Tier names are 1..16 bytes of [A-Za-z0-9_]: they are part of file names, and
 * 16 bytes fill the NUL-padded header field (snap_parse hands them back in a
 * 17-byte, always NUL-terminated buffer).
 *
 * No locking: a snap_writer belongs to one thread; the directory functions
 * only rely on rename() being atomic.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"

#define SNAP_MAGIC "STRATAS1"
#define SNAP_VERSION 1u
#define SNAP_HEADER_BYTES 64
#define SNAP_TIER_MAX 16
#define SNAP_LSN_DIGITS 20
#define SNAP_WBUF_BYTES (64u << 10) /* small snap_write calls are batched up to this */

struct snap_writer {
    int fd;                       /* the temporary file; -1 once closed */
    int rc;                       /* first snap_write failure, returned by commit */
    char *dir;                    /* the snapshot directory */
    char *tmp_path;               /* snap/.<tier>-<lsn>.tmp */
    char *final_path;             /* snap/<tier>-<lsn>.snap */
    char tier[SNAP_TIER_MAX + 1];
    uint64_t lsn;
    uint64_t body_len;            /* bytes accepted by snap_write so far */
    uint32_t body_crc;            /* CRC32C of those bytes */
    uint8_t *wbuf;                /* SNAP_WBUF_BYTES, not yet written */
    size_t wlen;
};

/* ====================================================================== */
/* helpers                                                                 */
/* ====================================================================== */

static bool tier_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

static bool tier_valid(const char *tier)
{
    if (tier == NULL) {
        return false;
    }
    size_t n = strlen(tier);
    if (n == 0 || n > SNAP_TIER_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!tier_char_ok(tier[i])) {
            return false;
        }
    }
    return true;
}

static int pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, c, n, off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        c += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* "<dir>/<prefix><tier>-<lsn 20 digits><suffix>", strata_malloc'ed. */
static char *snap_path(const char *dir, const char *prefix, const char *tier, uint64_t lsn,
                       const char *suffix)
{
    size_t n = strlen(dir) + strlen(prefix) + strlen(tier) + SNAP_LSN_DIGITS + strlen(suffix) + 3;
    char *p = strata_malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s%s-%020llu%s", dir, prefix, tier, (unsigned long long)lsn, suffix);
    }
    return p;
}

/* Parse "<tier>-<20 digits>.snap" for the given tier. */
static bool snap_name_parse(const char *name, const char *tier, uint64_t *lsn)
{
    size_t tl = strlen(tier);
    if (strlen(name) != tl + 1 + SNAP_LSN_DIGITS + 5 || memcmp(name, tier, tl) != 0 ||
        name[tl] != '-' || strcmp(name + tl + 1 + SNAP_LSN_DIGITS, ".snap") != 0) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = tl + 1; i < tl + 1 + SNAP_LSN_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *lsn = v;
    return true;
}

static int u64_cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* LSNs of every committed snapshot of tier, newest first; *out strata_malloc'ed.
 * A missing directory is an empty list. */
static int snap_list(const char *dir, const char *tier, uint64_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? STRATA_OK : log_io_error("cannot list snapshot directory", dir);
    }
    uint64_t *v = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rc = STRATA_OK;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t lsn;
        if (!snap_name_parse(e->d_name, tier, &lsn)) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            uint64_t *nv = strata_realloc(v, ncap * sizeof(*v));
            if (nv == NULL) {
                rc = strata_error(STRATA_ENOMEM, "out of memory listing snapshots");
                goto done;
            }
            v = nv;
            cap = ncap;
        }
        v[n++] = lsn;
        errno = 0;
    }
    if (errno != 0) {
        rc = log_io_error("cannot list snapshot directory", dir);
        goto done;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), u64_cmp_desc);
    }
    *out = v;
    *n_out = n;
    v = NULL;
done:
    strata_free(v);
    closedir(d);
    return rc;
}

/* ====================================================================== */
/* writing                                                                 */
/* ====================================================================== */

void snap_abort(snap_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->fd >= 0) {
        close(w->fd);
    }
    if (w->tmp_path != NULL) {
        unlink(w->tmp_path);
    }
    strata_free(w->wbuf);
    strata_free(w->tmp_path);
    strata_free(w->final_path);
    strata_free(w->dir);
    strata_free(w);
}

int snap_begin(const char *snap_dir, const char *tier, uint64_t lsn, snap_writer **out)
{
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "snap_begin: out is NULL");
    }
    *out = NULL;
    if (snap_dir == NULL || snap_dir[0] == '\0' || !tier_valid(tier)) {
        return strata_error(STRATA_EINVAL, "snap_begin: bad directory or tier name (1..%d of "
                            "[A-Za-z0-9_])", SNAP_TIER_MAX);
    }
    int rc = log_mkdir_p(snap_dir);
    if (rc != STRATA_OK) {
        return rc;
    }
    snap_writer *w = strata_calloc(1, sizeof(*w));
    if (w == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory starting a snapshot");
    }
    w->fd = -1;
    w->lsn = lsn;
    memcpy(w->tier, tier, strlen(tier) + 1);
    w->dir = strata_strdup(snap_dir);
    w->tmp_path = snap_path(snap_dir, ".", tier, lsn, ".tmp");
    w->final_path = snap_path(snap_dir, "", tier, lsn, ".snap");
    w->wbuf = strata_malloc(SNAP_WBUF_BYTES);
    if (w->dir == NULL || w->tmp_path == NULL || w->final_path == NULL || w->wbuf == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory starting a snapshot");
        goto fail;
    }
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = log_io_error("cannot create snapshot", w->tmp_path);
        goto fail;
    }
    /* Placeholder header; the real one needs the body length and CRC. */
    uint8_t zeros[SNAP_HEADER_BYTES] = {0};
    if (log_write_all(w->fd, zeros, sizeof(zeros)) != 0) {
        rc = log_io_error("cannot write snapshot", w->tmp_path);
        goto fail;
    }
    *out = w;
    return STRATA_OK;

fail:
    snap_abort(w);
    return rc;
}

static int snap_flush(snap_writer *w)
{
    if (w->wlen > 0 && log_write_all(w->fd, w->wbuf, w->wlen) != 0) {
        return log_io_error("cannot write snapshot", w->tmp_path);
    }
    w->wlen = 0;
    return STRATA_OK;
}

/* Append body bytes. A failure is sticky: snap_commit will return it too. */
int snap_write(snap_writer *w, const void *data, size_t len)
{
    if (w == NULL || (data == NULL && len > 0)) {
        return strata_error(STRATA_EINVAL, "snap_write: bad arguments");
    }
    if (w->rc != STRATA_OK) {
        return w->rc;
    }
    w->body_crc = crc32c(w->body_crc, data, len);
    w->body_len += len;
    if (len < SNAP_WBUF_BYTES - w->wlen) {
        memcpy(w->wbuf + w->wlen, data, len);
        w->wlen += len;
        return STRATA_OK;
    }
    int rc = snap_flush(w);
    if (rc == STRATA_OK && len < SNAP_WBUF_BYTES) {
        memcpy(w->wbuf, data, len);
        w->wlen = len;
    } else if (rc == STRATA_OK && log_write_all(w->fd, data, len) != 0) {
        rc = log_io_error("cannot write snapshot", w->tmp_path);
    }
    w->rc = rc;
    return rc;
}

static void snap_header_encode(uint8_t h[SNAP_HEADER_BYTES], const char *tier, uint64_t lsn,
                               uint64_t body_len, uint32_t body_crc)
{
    memset(h, 0, SNAP_HEADER_BYTES);
    memcpy(h, SNAP_MAGIC, 8);
    wire_le32(h + 8, SNAP_VERSION);
    memcpy(h + 16, tier, strlen(tier)); /* NUL padding from the memset */
    wire_le64(h + 32, lsn);
    wire_le64(h + 40, body_len);
    wire_le32(h + 48, body_crc);
    uint32_t crc = crc32c(0, h, 12);
    crc = crc32c(crc, h + 16, SNAP_HEADER_BYTES - 16);
    wire_le32(h + 12, crc);
}

int snap_commit(snap_writer *w)
{
    if (w == NULL) {
        return strata_error(STRATA_EINVAL, "snap_commit: no writer");
    }
    int rc = w->rc;
    if (rc == STRATA_OK) {
        rc = snap_flush(w);
    }
    if (rc != STRATA_OK) {
        goto fail;
    }
    uint8_t h[SNAP_HEADER_BYTES];
    snap_header_encode(h, w->tier, w->lsn, w->body_len, w->body_crc);
    if (pwrite_all(w->fd, h, sizeof(h), 0) != 0) {
        rc = log_io_error("cannot write snapshot header", w->tmp_path);
        goto fail;
    }
    if (fdatasync(w->fd) != 0) {
        rc = log_io_error("cannot fdatasync snapshot", w->tmp_path);
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        rc = log_io_error("cannot close snapshot", w->tmp_path);
        goto fail;
    }
    w->fd = -1;
    if (rename(w->tmp_path, w->final_path) != 0) {
        rc = log_io_error("cannot rename snapshot to", w->final_path);
        goto fail;
    }
    /* The rename is not durable until the directory is; the file is in place,
     * so from here on there is no temporary file to remove. */
    rc = log_fsync_dir(w->dir);
    strata_free(w->tmp_path);
    w->tmp_path = NULL;
    snap_abort(w);
    return rc;

fail:
    snap_abort(w);
    return rc;
}

/* ====================================================================== */
/* reading                                                                 */
/* ====================================================================== */

int snap_parse(const uint8_t *buf, size_t len, char tier_out[17], uint64_t *lsn_out,
               const uint8_t **body_out, size_t *body_len_out)
{
    if (tier_out != NULL) {
        tier_out[0] = '\0';
    }
    if (lsn_out != NULL) {
        *lsn_out = 0;
    }
    if (body_out != NULL) {
        *body_out = NULL;
    }
    if (body_len_out != NULL) {
        *body_len_out = 0;
    }
    if (buf == NULL || len < SNAP_HEADER_BYTES) {
        return strata_error(STRATA_ECORRUPT, "snapshot: %zu bytes, shorter than its header",
                            buf == NULL ? 0 : len);
    }
    if (memcmp(buf, SNAP_MAGIC, 8) != 0) {
        return strata_error(STRATA_ECORRUPT, "snapshot: bad magic");
    }
    if (wire_rd32(buf + 8) != SNAP_VERSION) {
        return strata_error(STRATA_ECORRUPT, "snapshot: unknown version %u",
                            (unsigned)wire_rd32(buf + 8));
    }
    uint32_t crc = crc32c(0, buf, 12);
    crc = crc32c(crc, buf + 16, SNAP_HEADER_BYTES - 16);
    if (crc != wire_rd32(buf + 12)) {
        return strata_error(STRATA_ECORRUPT, "snapshot: header checksum mismatch");
    }
    /* tier: 1..16 name bytes, then only NULs */
    const uint8_t *t = buf + 16;
    size_t tl = 0;
    while (tl < SNAP_TIER_MAX && t[tl] != '\0') {
        if (!tier_char_ok((char)t[tl])) {
            return strata_error(STRATA_ECORRUPT, "snapshot: bad tier name");
        }
        tl++;
    }
    for (size_t i = tl; i < SNAP_TIER_MAX; i++) {
        if (t[i] != '\0') {
            return strata_error(STRATA_ECORRUPT, "snapshot: bad tier name padding");
        }
    }
    if (tl == 0) {
        return strata_error(STRATA_ECORRUPT, "snapshot: empty tier name");
    }
    for (size_t i = 52; i < SNAP_HEADER_BYTES; i++) {
        if (buf[i] != 0) {
            return strata_error(STRATA_ECORRUPT, "snapshot: reserved bytes are not zero");
        }
    }
    uint64_t body_len = wire_rd64(buf + 40);
    if (body_len != (uint64_t)(len - SNAP_HEADER_BYTES)) {
        return strata_error(STRATA_ECORRUPT, "snapshot: header says %llu body bytes, file has %zu",
                            (unsigned long long)body_len, len - SNAP_HEADER_BYTES);
    }
    const uint8_t *body = buf + SNAP_HEADER_BYTES;
    if (crc32c(0, body, (size_t)body_len) != wire_rd32(buf + 48)) {
        return strata_error(STRATA_ECORRUPT, "snapshot: body checksum mismatch");
    }
    if (tier_out != NULL) {
        memcpy(tier_out, t, tl);
        tier_out[tl] = '\0';
    }
    if (lsn_out != NULL) {
        *lsn_out = wire_rd64(buf + 32);
    }
    if (body_out != NULL) {
        *body_out = body;
    }
    if (body_len_out != NULL) {
        *body_len_out = (size_t)body_len;
    }
    return STRATA_OK;
}

/* Read a whole file into a strata_malloc'ed buffer. */
static int read_file(const char *path, uint8_t **out, size_t *len_out)
{
    *out = NULL;
    *len_out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return log_io_error("cannot open snapshot", path);
    }
    int rc = STRATA_OK;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = log_io_error("cannot stat snapshot", path);
        goto done;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size >= SIZE_MAX) {
        rc = strata_error(STRATA_ETOOBIG, "snapshot %s is too big to load", path);
        goto done;
    }
    size_t size = (size_t)st.st_size;
    buf = strata_malloc(size);
    if (buf == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory loading snapshot %s (%zu bytes)", path,
                          size);
        goto done;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = log_io_error("cannot read snapshot", path);
            goto done;
        }
        if (r == 0) {
            break; /* shrank under us: parse sees the short length */
        }
        got += (size_t)r;
    }
    *out = buf;
    *len_out = got;
    buf = NULL;
done:
    strata_free(buf);
    close(fd);
    return rc;
}

/*
 * When every candidate is damaged the result is STRATA_ECORRUPT, not
 * ENOTFOUND: the caller may have dropped the log segments this snapshot
 * covered, and replaying from LSN 0 would then silently lose data.
 */
int snap_load_latest(const char *snap_dir, const char *tier, uint64_t *lsn_out,
                     void **data_out, size_t *len_out)
{
    if (lsn_out != NULL) {
        *lsn_out = 0;
    }
    if (data_out != NULL) {
        *data_out = NULL;
    }
    if (len_out != NULL) {
        *len_out = 0;
    }
    if (snap_dir == NULL || !tier_valid(tier) || data_out == NULL) {
        return strata_error(STRATA_EINVAL, "snap_load_latest: bad arguments");
    }
    uint64_t *lsns = NULL;
    size_t n = 0;
    int rc = snap_list(snap_dir, tier, &lsns, &n);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (n == 0) {
        strata_free(lsns);
        return strata_error(STRATA_ENOTFOUND, "no snapshot of tier %s in %s", tier, snap_dir);
    }
    for (size_t i = 0; i < n; i++) {
        char *path = snap_path(snap_dir, "", tier, lsns[i], ".snap");
        if (path == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory loading a snapshot");
            break;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        rc = read_file(path, &buf, &len);
        char got_tier[SNAP_TIER_MAX + 1];
        uint64_t lsn = 0;
        const uint8_t *body = NULL;
        size_t body_len = 0;
        if (rc == STRATA_OK) {
            rc = snap_parse(buf, len, got_tier, &lsn, &body, &body_len);
        }
        if (rc == STRATA_OK && (strcmp(got_tier, tier) != 0 || lsn != lsns[i])) {
            rc = strata_error(STRATA_ECORRUPT, "snapshot: header names %s at LSN %llu", got_tier,
                              (unsigned long long)lsn);
        }
        if (rc == STRATA_OK) {
            /* Hand back the file buffer itself, body moved to the front. */
            memmove(buf, body, body_len);
            *data_out = buf;
            if (len_out != NULL) {
                *len_out = body_len;
            }
            if (lsn_out != NULL) {
                *lsn_out = lsn;
            }
            strata_free(path);
            break;
        }
        strata_free(buf);
        if (rc == STRATA_ENOMEM) {
            strata_free(path);
            break; /* not the file's fault: do not fall back to older state */
        }
        slog(SLOG_WARN, "snapshot %s unusable (%s), trying an older one", path, strata_errmsg());
        strata_free(path);
        rc = strata_error(STRATA_ECORRUPT, "no valid snapshot of tier %s in %s (%zu damaged)",
                          tier, snap_dir, i + 1);
    }
    strata_free(lsns);
    return rc;
}

/*
 * Keeps the newest `keep` by name; it does not read them, so a damaged newest
 * file still counts (snap_load_latest falls back to the next one, which is
 * why callers keep at least 2). Temporary files are left alone: one may
 * belong to a snapshot in progress.
 */
int snap_prune(const char *snap_dir, const char *tier, unsigned keep)
{
    if (snap_dir == NULL || !tier_valid(tier)) {
        return strata_error(STRATA_EINVAL, "snap_prune: bad arguments");
    }
    uint64_t *lsns = NULL;
    size_t n = 0;
    int rc = snap_list(snap_dir, tier, &lsns, &n);
    if (rc != STRATA_OK) {
        return rc;
    }
    size_t removed = 0;
    for (size_t i = keep; i < n; i++) {
        char *path = snap_path(snap_dir, "", tier, lsns[i], ".snap");
        if (path == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory pruning snapshots");
            break;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = log_io_error("cannot remove snapshot", path);
            strata_free(path);
            break;
        }
        strata_free(path);
        removed++;
    }
    if (removed > 0) {
        int frc = log_fsync_dir(snap_dir);
        if (rc == STRATA_OK) {
            rc = frc;
        }
    }
    strata_free(lsns);
    return rc;
}
