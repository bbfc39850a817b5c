/*
 * backup.c - online backup and its restore, the scheduled snapshot archive,
 * and the primary's side of replication (see repl.h for the layout).
 *
 * Consistency of an online backup without stopping writes:
 *
 *   1. strata_db_snapshot: every tier imaged under the write lock at one LSN
 *      S (the brief lock every snapshot takes), the log synced first;
 *   2. with snapshot_lock held (no other snapshot, so nothing is pruned and
 *      no segment is dropped by retention meanwhile; writes go on) copy that
 *      set, the older sets the log can continue from, and every segment; a
 *      segment is append-only, so a copy of its complete records is a
 *      consistent prefix, and the last one is cut at its last complete record;
 *   3. MANIFEST.json (size and CRC32C of every file) written last, through a
 *      temporary file and a rename: a backup without it did not finish.
 *
 * A write acknowledged before the backup was asked for has an LSN <= S, so
 * it is in the snapshot whatever happens to the log copy.
 *
 * The archive (snap/archive/) keeps one snapshot set per
 * snapshot_archive_every_s (daily), `snapshot_retain` of them, as hard links
 * to the files the regular snapshot wrote (no copy). Restore looks there too,
 * so a point in time further back than the two rolling sets stays reachable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/ship.h"
#include "pipeline/pipeline.h"
#include "pipeline/repl.h"
#include "privacy/crypt.h"

#define PATH_CAP 4400
#define DIR_CAP 4096              /* a directory; a file in it fits PATH_CAP */
#define MANIFEST_MAX_BYTES (64u << 20)

/* ---- names --------------------------------------------------------------------- */

/* "<tier>-<lsn, 20 digits>.snap" with a tier of [a-z0-9_]{1,16}. */
static bool snap_name_parse(const char *name, char tier[17], uint64_t *lsn)
{
    size_t n = strlen(name);
    if (n < 1 + 1 + 20 + 5 || n > 16 + 1 + 20 + 5 || strcmp(name + n - 5, ".snap") != 0) {
        return false;
    }
    size_t tl = n - 26;
    if (name[tl] != '-') {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = tl + 1; i < tl + 21; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    for (size_t i = 0; i < tl; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    if (tier != NULL) {
        memcpy(tier, name, tl);
        tier[tl] = '\0';
    }
    if (lsn != NULL) {
        *lsn = v;
    }
    return true;
}

static bool seg_name_valid(const char *name)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0) {
        return false;
    }
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
    }
    return true;
}

/* The only names a manifest may hold: nothing can point outside the backup. */
static bool manifest_name_valid(const char *name)
{
    if (strcmp(name, "l2.model") == 0) {
        return true;
    }
    if (strncmp(name, "log/", 4) == 0) {
        return seg_name_valid(name + 4);
    }
    if (strncmp(name, "snap/", 5) == 0) {
        return snap_name_parse(name + 5, NULL, NULL);
    }
    return false;
}

/* ---- manifest ------------------------------------------------------------------ */

void backup_manifest_free(backup_manifest *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->n_files; i++) {
        strata_free(m->files[i].name);
    }
    strata_free(m->files);
    strata_free(m->l2_model);
    memset(m, 0, sizeof(*m));
}

static int manifest_add(backup_manifest *m, const char *name, uint64_t size, uint32_t crc)
{
    if (m->n_files >= BACKUP_MAX_FILES) {
        return strata_error(STRATA_ETOOBIG, "more than %d files", BACKUP_MAX_FILES);
    }
    /* capacity: 8, then doubled whenever full */
    if (m->n_files == 0 || (m->n_files >= 8 && (m->n_files & (m->n_files - 1)) == 0)) {
        size_t cap = m->n_files ? m->n_files * 2 : 8;
        backup_file *grown = strata_realloc(m->files, cap * sizeof(*grown));
        if (grown == NULL) {
            return STRATA_ENOMEM;
        }
        m->files = grown;
    }
    char *copy = strata_strdup(name);
    if (copy == NULL) {
        return STRATA_ENOMEM;
    }
    m->files[m->n_files++] = (backup_file){copy, size, crc};
    m->bytes += size;
    return STRATA_OK;
}

int backup_manifest_json(const backup_manifest *m, sbuf *b)
{
    int rc = sbuf_puts(b, "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":");
    rc = rc ? rc : json_put_u64(b, m->lsn);
    rc = rc ? rc : sbuf_puts(b, ",\"last_lsn\":");
    rc = rc ? rc : json_put_u64(b, m->last_lsn);
    rc = rc ? rc : sbuf_puts(b, ",\"created\":");
    rc = rc ? rc : json_put_i64(b, m->created_ms / 1000);
    rc = rc ? rc : sbuf_puts(b, ",\"created_ms\":");
    rc = rc ? rc : json_put_i64(b, m->created_ms);
    rc = rc ? rc : sbuf_puts(b, ",\"buffer_turns\":");
    rc = rc ? rc : json_put_u64(b, m->buffer_turns);
    rc = rc ? rc : sbuf_puts(b, ",\"consolidate_every\":");
    rc = rc ? rc : json_put_u64(b, m->consolidate_every);
    rc = rc ? rc : sbuf_puts(b, ",\"l2_model\":");
    rc = rc ? rc : (m->l2_model ? json_put_cstr(b, m->l2_model) : sbuf_puts(b, "null"));
    rc = rc ? rc : sbuf_puts(b, ",\"files\":[");
    for (size_t i = 0; rc == STRATA_OK && i < m->n_files; i++) {
        rc = sbuf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        rc = rc ? rc : json_put_cstr(b, m->files[i].name);
        rc = rc ? rc : sbuf_puts(b, ",\"size\":");
        rc = rc ? rc : json_put_u64(b, m->files[i].size);
        rc = rc ? rc : sbuf_printf(b, ",\"crc32c\":\"%08x\"}", m->files[i].crc32c);
    }
    rc = rc ? rc : sbuf_puts(b, "],\"bytes\":");
    rc = rc ? rc : json_put_u64(b, m->bytes);
    rc = rc ? rc : sbuf_putc(b, '}');
    return rc;
}

static bool json_u64(json_t *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > max) {
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool hex8(const char *s, uint32_t *out)
{
    if (s == NULL || strlen(s) != 8) {
        return false;
    }
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return false;
        }
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

int backup_manifest_parse(const char *text, size_t len, backup_manifest *out)
{
    memset(out, 0, sizeof(*out));
    if (len > MANIFEST_MAX_BYTES) {
        return strata_error(STRATA_EINVAL, "manifest: larger than %u bytes", MANIFEST_MAX_BYTES);
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return strata_error(STRATA_EINVAL, "manifest: malformed JSON at line %d: %s", jerr.line,
                            jerr.text);
    }
    int rc = STRATA_OK;
    uint64_t v = 0;
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *files = json_object_get(root, "files");
    json_t *model = json_object_get(root, "l2_model");
    if (!json_is_object(root) || fmt == NULL || strcmp(fmt, "strata-backup") != 0) {
        rc = strata_error(STRATA_EINVAL, "manifest: not a strata backup manifest");
    } else if (!json_u64(json_object_get(root, "version"), UINT32_MAX, &v) || v != 1) {
        rc = strata_error(STRATA_EINVAL, "manifest: unsupported version");
    } else if (!json_u64(json_object_get(root, "lsn"), INT64_MAX, &out->lsn) ||
               !json_u64(json_object_get(root, "last_lsn"), INT64_MAX, &out->last_lsn) ||
               out->last_lsn < out->lsn) {
        rc = strata_error(STRATA_EINVAL, "manifest: lsn and last_lsn must be integers, "
                                         "last_lsn >= lsn");
    } else if (!json_u64(json_object_get(root, "created_ms"), INT64_MAX, &v)) {
        rc = strata_error(STRATA_EINVAL, "manifest: created_ms must be an integer");
    } else if (!json_is_array(files) || json_array_size(files) > BACKUP_MAX_FILES) {
        rc = strata_error(STRATA_EINVAL, "manifest: files must be an array of at most %d",
                          BACKUP_MAX_FILES);
    } else if (model != NULL && !json_is_null(model) &&
               (!json_is_string(model) || json_string_length(model) == 0 ||
                json_string_length(model) > 127 ||
                strpbrk(json_string_value(model), "\r\n") != NULL ||
                strlen(json_string_value(model)) != json_string_length(model))) {
        rc = strata_error(STRATA_EINVAL, "manifest: l2_model must be a short one-line string");
    }
    out->created_ms = (int64_t)v;
    uint64_t bt = 0;
    uint64_t ce = 0;
    json_t *jbt = json_object_get(root, "buffer_turns");
    json_t *jce = json_object_get(root, "consolidate_every");
    if (rc == STRATA_OK && ((jbt != NULL && !json_u64(jbt, UINT32_MAX, &bt)) ||
                            (jce != NULL && !json_u64(jce, UINT32_MAX, &ce)))) {
        rc = strata_error(STRATA_EINVAL, "manifest: buffer_turns and consolidate_every must be "
                                         "integers");
    }
    out->buffer_turns = (uint32_t)bt;
    out->consolidate_every = (uint32_t)ce;
    if (rc == STRATA_OK && json_is_string(model)) {
        out->l2_model = strata_strdup(json_string_value(model));
        rc = out->l2_model ? STRATA_OK : STRATA_ENOMEM;
    }
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f)
    {
        if (rc != STRATA_OK) {
            break;
        }
        const char *name = json_string_value(json_object_get(f, "name"));
        uint64_t size = 0;
        uint32_t crc = 0;
        if (name == NULL || !manifest_name_valid(name)) {
            rc = strata_error(STRATA_EINVAL, "manifest: file %zu has a bad name", i);
        } else if (!json_u64(json_object_get(f, "size"), INT64_MAX, &size) ||
                   !hex8(json_string_value(json_object_get(f, "crc32c")), &crc)) {
            rc = strata_error(STRATA_EINVAL, "manifest: file %s needs a size and a crc32c of "
                                             "8 hex digits", name);
        } else {
            for (size_t k = 0; k < out->n_files && rc == STRATA_OK; k++) {
                if (strcmp(out->files[k].name, name) == 0) {
                    rc = strata_error(STRATA_EINVAL, "manifest: %s is listed twice", name);
                }
            }
            rc = rc ? rc : manifest_add(out, name, size, crc);
        }
    }
    if (rc == STRATA_OK && (!json_u64(json_object_get(root, "bytes"), UINT64_MAX, &v) ||
                            v != out->bytes)) {
        rc = strata_error(STRATA_EINVAL, "manifest: bytes is not the sum of the files' sizes");
    }
    json_decref(root);
    if (rc != STRATA_OK) {
        backup_manifest_free(out);
    }
    return rc;
}

/* ---- file helpers --------------------------------------------------------------- */

static int write_all_fd(int fd, const void *p, size_t n, const char *path)
{
    return log_write_all(fd, p, n) == 0 ? STRATA_OK : log_io_error("cannot write", path);
}

/* Create dst (exclusively) with data, fdatasync'ed. */
static int write_file(const char *dst, const void *data, size_t len)
{
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return log_io_error("cannot create", dst);
    }
    int rc = write_all_fd(fd, data, len, dst);
    if (rc == STRATA_OK && log_fdatasync(fd) != 0) {
        rc = log_io_error("cannot sync", dst);
    }
    close(fd);
    return rc;
}

/* Stream src into dst (NULL: only read), computing size and CRC32C. */
static int copy_crc(const char *src, const char *dst, uint64_t *size_out, uint32_t *crc_out)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return log_io_error("cannot open", src);
    }
    int out = -1;
    if (dst != NULL) {
        out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0) {
            close(in);
            return log_io_error("cannot create", dst);
        }
    }
    static const size_t CHUNK = 1u << 20;
    uint8_t *buf = strata_malloc(CHUNK);
    int rc = buf ? STRATA_OK : STRATA_ENOMEM;
    uint64_t size = 0;
    uint32_t crc = 0;
    while (rc == STRATA_OK) {
        ssize_t n = read(in, buf, CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = log_io_error("cannot read", src);
            break;
        }
        if (n == 0) {
            break;
        }
        crc = crc32c(crc, buf, (size_t)n);
        size += (uint64_t)n;
        if (out >= 0) {
            rc = write_all_fd(out, buf, (size_t)n, dst);
        }
    }
    if (rc == STRATA_OK && out >= 0 && log_fdatasync(out) != 0) {
        rc = log_io_error("cannot sync", dst);
    }
    strata_free(buf);
    close(in);
    if (out >= 0) {
        close(out);
    }
    *size_out = size;
    *crc_out = crc;
    return rc;
}

static int read_whole(const char *path, size_t max, uint8_t **out, size_t *len_out)
{
    *out = NULL;
    *len_out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return log_io_error("cannot open", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return log_io_error("cannot stat", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return strata_error(STRATA_ETOOBIG, "%s is larger than %zu bytes", path, max);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = strata_malloc(len + 1);
    if (buf == NULL) {
        close(fd);
        return STRATA_ENOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* a shorter file than its stat (still growing is fine) */
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *len_out = got;
    return STRATA_OK;
}

/* The names of the files of the snapshot set at lsn in dir. */
static int snapset_names(const char *dir, uint64_t lsn, char names[][48], size_t cap,
                         size_t *n_out)
{
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? STRATA_OK : log_io_error("cannot open", dir);
    }
    struct dirent *e;
    uint64_t v = 0;
    while ((e = readdir(d)) != NULL) {
        if (snap_name_parse(e->d_name, NULL, &v) && v == lsn && *n_out < cap) {
            snprintf(names[(*n_out)++], 48, "%.47s", e->d_name);
        }
    }
    closedir(d);
    return STRATA_OK;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* LSNs of the sets in dir (every set has a "kv" snapshot), ascending. */
static int snapset_lsns(const char *dir, uint64_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? STRATA_OK : log_io_error("cannot open", dir);
    }
    uint64_t *v = NULL;
    size_t n = 0;
    int rc = STRATA_OK;
    struct dirent *e;
    char tier[17];
    uint64_t lsn;
    while ((e = readdir(d)) != NULL) {
        if (!snap_name_parse(e->d_name, tier, &lsn) || strcmp(tier, "kv") != 0) {
            continue;
        }
        if (n == 0 || (n >= 8 && (n & (n - 1)) == 0)) {
            uint64_t *g = strata_realloc(v, (n ? n * 2 : 8) * sizeof(uint64_t));
            if (g == NULL) {
                rc = STRATA_ENOMEM;
                break;
            }
            v = g;
        }
        v[n++] = lsn;
    }
    closedir(d);
    if (rc != STRATA_OK) {
        strata_free(v);
        return rc;
    }
    if (n > 1) {
        qsort(v, n, sizeof(uint64_t), u64_cmp);
    }
    *out = v;
    *n_out = n;
    return STRATA_OK;
}

#define SET_MAX_FILES 32

/* Copy the set at lsn from src_dir into dst_snap, adding it to m. */
static int copy_set(const char *src_dir, uint64_t lsn, const char *dst_snap, backup_manifest *m)
{
    char names[SET_MAX_FILES][48];
    size_t n = 0;
    int rc = snapset_names(src_dir, lsn, names, SET_MAX_FILES, &n);
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "snap/%.47s", names[i]);
        bool dup = false;
        for (size_t k = 0; k < m->n_files && !dup; k++) {
            dup = strcmp(m->files[k].name, rel) == 0;
        }
        if (dup) {
            continue; /* the same set in snap/ and in the archive */
        }
        char from[PATH_CAP];
        char to[PATH_CAP];
        snprintf(from, sizeof(from), "%s/%.47s", src_dir, names[i]);
        snprintf(to, sizeof(to), "%s/%.47s", dst_snap, names[i]);
        uint64_t size = 0;
        uint32_t crc = 0;
        rc = copy_crc(from, to, &size, &crc);
        rc = rc ? rc : manifest_add(m, rel, size, crc);
    }
    return rc;
}

/* Copy one log segment, cut after its last complete record when it is the
 * active one (a write may be in progress). *last_lsn gets its last record. */
static int copy_segment(const char *src, const char *dst, const char *rel, bool last,
                        backup_manifest *m, uint64_t *last_lsn)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = read_whole(src, (size_t)AOL_MAX_PAYLOAD * 4 + (1u << 30), &buf, &len);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (len < AOL_SEGMENT_HEADER_BYTES || memcmp(buf, "STRATAL1", 8) != 0) {
        strata_free(buf);
        /* The active segment may be being created: it holds nothing yet. */
        return last ? STRATA_OK : strata_error(STRATA_ECORRUPT, "%s: bad segment header", src);
    }
    size_t off = AOL_SEGMENT_HEADER_BYTES;
    while (off < len) {
        aol_record rec;
        long used = aol_record_decode(buf + off, len - off, &rec);
        if (used <= 0) {
            if (!last) {
                strata_free(buf);
                return strata_error(STRATA_ECORRUPT, "%s: bad record at offset %zu", src, off);
            }
            break;
        }
        *last_lsn = rec.lsn;
        off += (size_t)used;
    }
    rc = write_file(dst, buf, off);
    rc = rc ? rc : manifest_add(m, rel, off, crc32c(0, buf, off));
    strata_free(buf);
    return rc;
}

static char *read_model(const char *data_dir)
{
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/l2.model", data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    char line[128] = "";
    if (fgets(line, sizeof(line), f) == NULL) {
        line[0] = '\0';
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return line[0] ? strata_strdup(line) : NULL;
}

/* ---- backup ---------------------------------------------------------------------- */

/* Step 2 of the header comment: caller holds snapshot_lock. */
static int backup_copy_locked(strata_db *db, const char *dir, uint64_t lsn, backup_manifest *m)
{
    char dst_snap[DIR_CAP];
    char dst_log[DIR_CAP];
    char archive[DIR_CAP];
    snprintf(dst_snap, sizeof(dst_snap), "%s/snap", dir);
    snprintf(dst_log, sizeof(dst_log), "%s/log", dir);
    snprintf(archive, sizeof(archive), "%s/archive", db->snap_dir);
    uint64_t *bases = NULL;
    size_t n_seg = 0;
    int rc = aol_dir_segments(db->log_dir, &bases, &n_seg);
    uint64_t first = n_seg ? bases[0] : 0;
    rc = rc ? rc : copy_set(db->snap_dir, lsn, dst_snap, m);
    /* Older sets the copied log continues from: bases for a restore to an
     * earlier time. A set before the log's first record would leave a gap. */
    for (int pass = 0; pass < 2 && rc == STRATA_OK; pass++) {
        const char *src = pass == 0 ? db->snap_dir : archive;
        uint64_t *lsns = NULL;
        size_t n = 0;
        rc = snapset_lsns(src, &lsns, &n);
        for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
            if (lsns[i] < lsn && (first == 0 || lsns[i] + 1 >= first)) {
                rc = copy_set(src, lsns[i], dst_snap, m);
            }
        }
        strata_free(lsns);
    }
    m->last_lsn = lsn;
    for (size_t i = 0; rc == STRATA_OK && i < n_seg; i++) {
        char name[32];
        char from[PATH_CAP];
        char to[PATH_CAP];
        char rel[64];
        snprintf(name, sizeof(name), "%020" PRIu64 ".seg", bases[i]);
        snprintf(from, sizeof(from), "%s/%s", db->log_dir, name);
        snprintf(to, sizeof(to), "%s/%s", dst_log, name);
        snprintf(rel, sizeof(rel), "log/%s", name);
        uint64_t last = 0;
        rc = copy_segment(from, to, rel, i + 1 == n_seg, m, &last);
        m->last_lsn = STRATA_MAX(m->last_lsn, last);
    }
    strata_free(bases);
    return rc;
}

int backup_create(strata_db *db, const char *dir, backup_manifest *out)
{
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (dir == NULL || dir[0] != '/') {
        return strata_error(STRATA_EINVAL, "the backup directory must be an absolute path");
    }
    if (strlen(dir) > 3000) {
        return strata_error(STRATA_EINVAL, "the backup directory's path is too long");
    }
    if (!log_dir_empty_or_absent(dir)) {
        return strata_error(STRATA_EEXIST, "%s exists and is not empty", dir);
    }
    char sub[PATH_CAP];
    int rc = log_mkdir_p(dir);
    snprintf(sub, sizeof(sub), "%s/snap", dir);
    rc = rc ? rc : log_mkdir_p(sub);
    snprintf(sub, sizeof(sub), "%s/log", dir);
    rc = rc ? rc : log_mkdir_p(sub);
    rc = rc ? rc : strata_db_snapshot(db);
    if (rc != STRATA_OK) {
        return rc;
    }
    backup_manifest m;
    memset(&m, 0, sizeof(m));
    pthread_mutex_lock(&db->snapshot_lock);
    m.lsn = atomic_load(&db->snap_last_lsn);
    rc = backup_copy_locked(db, dir, m.lsn, &m);
    pthread_mutex_unlock(&db->snapshot_lock);
    m.created_ms = clock_now_ms();
    m.buffer_turns = db->cfg.buffer_turns;
    m.consolidate_every = db->cfg.consolidate_every;
    m.l2_model = read_model(db->data_dir);
    if (rc == STRATA_OK && m.l2_model != NULL) {
        char from[PATH_CAP];
        char to[PATH_CAP];
        snprintf(from, sizeof(from), "%s/l2.model", db->data_dir);
        snprintf(to, sizeof(to), "%s/l2.model", dir);
        uint64_t size = 0;
        uint32_t crc = 0;
        rc = copy_crc(from, to, &size, &crc);
        rc = rc ? rc : manifest_add(&m, "l2.model", size, crc);
    }
    snprintf(sub, sizeof(sub), "%s/snap", dir);
    rc = rc ? rc : log_fsync_dir(sub);
    snprintf(sub, sizeof(sub), "%s/log", dir);
    rc = rc ? rc : log_fsync_dir(sub);
    /* The manifest last: its presence says every file above is complete. */
    sbuf json;
    sbuf_init(&json, MANIFEST_MAX_BYTES);
    rc = rc ? rc : backup_manifest_json(&m, &json);
    char tmp[PATH_CAP];
    char final[PATH_CAP];
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, BACKUP_MANIFEST);
    snprintf(final, sizeof(final), "%s/%s", dir, BACKUP_MANIFEST);
    rc = rc ? rc : write_file(tmp, json.data, json.len);
    if (rc == STRATA_OK && rename(tmp, final) != 0) {
        rc = log_io_error("cannot rename", tmp);
    }
    rc = rc ? rc : log_fsync_dir(dir);
    sbuf_free(&json);
    if (rc == STRATA_OK) {
        slog(SLOG_INFO, "backup of LSN %" PRIu64 " (log to %" PRIu64 ") in %s: %zu files, "
                        "%" PRIu64 " bytes",
             m.lsn, m.last_lsn, dir, m.n_files, m.bytes);
    }
    if (rc == STRATA_OK && out != NULL) {
        *out = m;
    } else {
        backup_manifest_free(&m);
    }
    return rc;
}

/* ---- verify and restore ---------------------------------------------------------- */

static bool manifest_has(const backup_manifest *m, const char *rel)
{
    for (size_t i = 0; i < m->n_files; i++) {
        if (strcmp(m->files[i].name, rel) == 0) {
            return true;
        }
    }
    return false;
}

/* A segment or snapshot file the manifest does not list would be read by
 * the restore: refuse it rather than restore something unchecked. */
static int check_strays(const char *dir, const char *sub, const backup_manifest *m)
{
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (d == NULL) {
        return STRATA_OK;
    }
    int rc = STRATA_OK;
    struct dirent *e;
    while (rc == STRATA_OK && (e = readdir(d)) != NULL) {
        bool counts = strcmp(sub, "log") == 0 ? seg_name_valid(e->d_name)
                                              : snap_name_parse(e->d_name, NULL, NULL);
        char rel[300];
        snprintf(rel, sizeof(rel), "%s/%.255s", sub, e->d_name);
        if (counts && !manifest_has(m, rel)) {
            rc = strata_error(STRATA_ECORRUPT, "%s/%s is not part of the backup (not in %s)",
                              dir, rel, BACKUP_MANIFEST);
        }
    }
    closedir(d);
    return rc;
}

int backup_verify(const char *dir, backup_manifest *out)
{
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/%s", dir, BACKUP_MANIFEST);
    uint8_t *text = NULL;
    size_t len = 0;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        return strata_error(STRATA_ENOTFOUND,
                            "%s has no %s: not a backup, or a backup that did not finish", dir,
                            BACKUP_MANIFEST);
    }
    int rc = read_whole(path, MANIFEST_MAX_BYTES, &text, &len);
    if (rc != STRATA_OK) {
        return rc;
    }
    backup_manifest m;
    rc = backup_manifest_parse((const char *)text, len, &m);
    strata_free(text);
    if (rc != STRATA_OK) {
        return strata_error(STRATA_ECORRUPT, "%s: %s", path, strata_errmsg());
    }
    for (size_t i = 0; rc == STRATA_OK && i < m.n_files; i++) {
        const backup_file *f = &m.files[i];
        snprintf(path, sizeof(path), "%s/%s", dir, f->name);
        if (stat(path, &st) != 0) {
            rc = strata_error(STRATA_ECORRUPT, "%s is missing from the backup", path);
            break;
        }
        uint64_t size = 0;
        uint32_t crc = 0;
        rc = copy_crc(path, NULL, &size, &crc);
        if (rc == STRATA_OK && size != f->size) {
            rc = strata_error(STRATA_ECORRUPT,
                              "%s has %" PRIu64 " bytes, the manifest says %" PRIu64, path,
                              size, f->size);
        } else if (rc == STRATA_OK && crc != f->crc32c) {
            rc = strata_error(STRATA_ECORRUPT,
                              "%s is corrupt: CRC32C %08x, the manifest says %08x", path, crc,
                              f->crc32c);
        }
    }
    rc = rc ? rc : check_strays(dir, "log", &m);
    rc = rc ? rc : check_strays(dir, "snap", &m);
    if (rc == STRATA_OK && out != NULL) {
        *out = m;
    } else {
        backup_manifest_free(&m);
    }
    return rc;
}

int backup_restore(const char *backup_dir, const char *dst_dir, bool has_at, int64_t at_s,
                   uint64_t *records_out)
{
    if (records_out != NULL) {
        *records_out = 0;
    }
    backup_manifest m;
    int rc = backup_verify(backup_dir, &m);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* No time: everything the backup holds (as rebuild does). */
    int64_t at = has_at ? at_s : INT64_MAX / 1000 - 1;
    rc = restore_with_settings(backup_dir, dst_dir, at, m.buffer_turns, m.consolidate_every,
                               records_out);
    backup_manifest_free(&m);
    return rc;
}

/* ---- the snapshot archive ---------------------------------------------------------- */

/* Modification time (ms) of the newest archived set; INT64_MIN if none. */
static int64_t archive_newest_ms(const char *archive)
{
    uint64_t *lsns = NULL;
    size_t n = 0;
    if (snapset_lsns(archive, &lsns, &n) != STRATA_OK || n == 0) {
        strata_free(lsns);
        return INT64_MIN;
    }
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/kv-%020" PRIu64 ".snap", archive, lsns[n - 1]);
    strata_free(lsns);
    struct stat st;
    if (stat(path, &st) != 0) {
        return INT64_MIN;
    }
    return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

/* Count the archived sets for /metrics, once they are settled (caller holds
 * snapshot_lock, so a reader never sees a set linked but not yet pruned). */
static void archive_count_locked(strata_db *db, const char *archive)
{
    uint64_t *lsns = NULL;
    size_t n = 0;
    if (snapset_lsns(archive, &lsns, &n) == STRATA_OK) {
        atomic_store(&db->archived_sets, n);
    }
    strata_free(lsns);
}

/* Keep the set at lsn in the archive (caller holds snapshot_lock). */
static int archive_set_locked(strata_db *db, uint64_t lsn)
{
    char archive[DIR_CAP];
    snprintf(archive, sizeof(archive), "%s/archive", db->snap_dir);
    int rc = log_mkdir_p(archive);
    char names[SET_MAX_FILES][48];
    size_t n = 0;
    rc = rc ? rc : snapset_names(db->snap_dir, lsn, names, SET_MAX_FILES, &n);
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        char from[PATH_CAP];
        char to[PATH_CAP];
        snprintf(from, sizeof(from), "%s/%.47s", db->snap_dir, names[i]);
        snprintf(to, sizeof(to), "%s/%.47s", archive, names[i]);
        if (link(from, to) == 0 || errno == EEXIST) {
            continue;
        }
        /* A file system without hard links: a copy does as well. */
        uint64_t size;
        uint32_t crc;
        rc = copy_crc(from, to, &size, &crc);
    }
    rc = rc ? rc : log_fsync_dir(archive);
    unsigned keep = db->cfg.snapshot_retain ? db->cfg.snapshot_retain : 1;
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        char tier[17];
        if (snap_name_parse(names[i], tier, NULL)) {
            rc = snap_prune(archive, tier, keep);
        }
    }
    archive_count_locked(db, archive);
    return rc;
}

void db_archive_tick(strata_db *db)
{
    uint32_t every = db->cfg.snapshot_archive_every_s;
    if (every == 0) {
        return;
    }
    int64_t now = clock_now_ms();
    int64_t last = atomic_load(&db->archive_last_ms);
    if (last == 0) {
        char archive[DIR_CAP];
        snprintf(archive, sizeof(archive), "%s/archive", db->snap_dir);
        last = archive_newest_ms(archive);
        atomic_store(&db->archive_last_ms, last);
        pthread_mutex_lock(&db->snapshot_lock);
        archive_count_locked(db, archive);
        pthread_mutex_unlock(&db->snapshot_lock);
    }
    if (last != INT64_MIN && now - last < (int64_t)every * 1000) {
        return;
    }
    int rc = strata_db_snapshot(db);
    if (rc == STRATA_OK) {
        pthread_mutex_lock(&db->snapshot_lock);
        rc = archive_set_locked(db, atomic_load(&db->snap_last_lsn));
        pthread_mutex_unlock(&db->snapshot_lock);
    }
    if (rc == STRATA_OK) {
        atomic_fetch_add(&db->archives_taken, 1);
        atomic_store(&db->archive_last_ms, now);
    } else {
        slog(SLOG_ERROR, "scheduled snapshot failed: %s; retrying in a minute", strata_errmsg());
        atomic_store(&db->archive_last_ms, now - (int64_t)every * 1000 + 60000);
    }
}

int db_archive_drop(strata_db *db)
{
    char archive[DIR_CAP];
    snprintf(archive, sizeof(archive), "%s/archive", db->snap_dir);
    /* Under snapshot_lock: an archiving tick either ran before (its set is
     * removed here) or runs after, on a snapshot taken after the caller's. */
    pthread_mutex_lock(&db->snapshot_lock);
    DIR *d = opendir(archive);
    if (d == NULL) {
        pthread_mutex_unlock(&db->snapshot_lock);
        return errno == ENOENT ? STRATA_OK : log_io_error("cannot open", archive);
    }
    int rc = STRATA_OK;
    struct dirent *e;
    while (rc == STRATA_OK && (e = readdir(d)) != NULL) {
        if (snap_name_parse(e->d_name, NULL, NULL)) {
            char path[PATH_CAP];
            snprintf(path, sizeof(path), "%s/%.64s", archive, e->d_name);
            if (unlink(path) != 0 && errno != ENOENT) {
                rc = log_io_error("cannot remove", path);
            }
        }
    }
    closedir(d);
    rc = rc ? rc : log_fsync_dir(archive);
    archive_count_locked(db, archive);
    /* The next tick archives the current (clean) state again. */
    atomic_store(&db->archive_last_ms, INT64_MIN);
    pthread_mutex_unlock(&db->snapshot_lock);
    return rc;
}

void db_snapshot_stats(strata_db *db, snapshot_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->last_lsn = atomic_load(&db->snap_last_lsn);
    out->last_ms = atomic_load(&db->snap_last_ms);
    out->written = atomic_load(&db->snapshots_written);
    out->archives_taken = atomic_load(&db->archives_taken);
    out->archived_sets = atomic_load(&db->archived_sets);
}

/* ---- the primary's side of replication ------------------------------------------------ */

/* A few cursors, so each of a handful of replicas reading in turn keeps its
 * place; a wrong one is detected by ship_read and only costs a scan. */
static pthread_mutex_t g_cursor_lock = PTHREAD_MUTEX_INITIALIZER;
static ship_cursor g_cursors[4];
static unsigned g_cursor_turn;

/* A replica of an encrypted primary would need every data key, including
 * those created after it started (keyring shipping is not built): records it
 * cannot open would be skipped as shredded, silently. Refuse instead. */
int repl_keyring_image(strata_db *db, sbuf *out)
{
    if (db->keyring == NULL) {
        return strata_error(STRATA_ENOTFOUND, "encryption at rest is off on this server");
    }
    /* Sealed under the master key: only a replica holding that key opens it. */
    return keyring_image(db->keyring, out);
}

int repl_log_read(strata_db *db, uint64_t after, size_t max_bytes, int wait_ms, sbuf *out,
                  repl_log_info *info)
{
    memset(info, 0, sizeof(*info));
    uint64_t deadline = clock_mono_ns() + (uint64_t)(wait_ms > 0 ? wait_ms : 0) * 1000000ull;
    for (;;) {
        aol_stats st;
        aol_stats_get(db->log, &st);
        /* Only what may have been acknowledged: under fsync=always that is
         * what is on disk, otherwise what was handed to write(). */
        info->primary_lsn = db->cfg.fsync == STRATA_FSYNC_ALWAYS ? st.durable_lsn
                                                                 : st.written_lsn;
        if (after < info->primary_lsn || clock_mono_ns() >= deadline) {
            break;
        }
        /* The log has no hook for new appends (aol.c); a 2 ms poll is
         * cheap and bounds the added latency. */
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (after >= info->primary_lsn) {
        return STRATA_OK;
    }
    ship_cursor cur = {0, 0, 0};
    pthread_mutex_lock(&g_cursor_lock);
    unsigned slot = g_cursor_turn++ % STRATA_ARRAY_LEN(g_cursors);
    for (unsigned i = 0; i < STRATA_ARRAY_LEN(g_cursors); i++) {
        if (g_cursors[i].next_lsn == after + 1) {
            slot = i;
            break;
        }
    }
    cur = g_cursors[slot];
    pthread_mutex_unlock(&g_cursor_lock);
    ship_read_info si;
    int rc = ship_read(db->log_dir, after, info->primary_lsn, max_bytes, out, &cur, &si);
    info->first_lsn = si.first_lsn;
    info->last_lsn = si.last_lsn;
    info->records = si.records;
    if (rc == STRATA_OK) {
        pthread_mutex_lock(&g_cursor_lock);
        g_cursors[slot] = cur;
        pthread_mutex_unlock(&g_cursor_lock);
    }
    return rc;
}

int repl_snapshot_export(strata_db *db, backup_manifest *out)
{
    memset(out, 0, sizeof(*out));
    int rc = strata_db_snapshot(db);
    if (rc != STRATA_OK) {
        return rc;
    }
    pthread_mutex_lock(&db->snapshot_lock);
    out->lsn = atomic_load(&db->snap_last_lsn);
    out->last_lsn = out->lsn;
    char names[SET_MAX_FILES][48];
    size_t n = 0;
    rc = snapset_names(db->snap_dir, out->lsn, names, SET_MAX_FILES, &n);
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        char path[PATH_CAP];
        char rel[64];
        snprintf(path, sizeof(path), "%s/%.47s", db->snap_dir, names[i]);
        snprintf(rel, sizeof(rel), "snap/%.47s", names[i]);
        uint64_t size = 0;
        uint32_t crc = 0;
        rc = copy_crc(path, NULL, &size, &crc);
        rc = rc ? rc : manifest_add(out, rel, size, crc);
    }
    pthread_mutex_unlock(&db->snapshot_lock);
    out->created_ms = clock_now_ms();
    out->buffer_turns = db->cfg.buffer_turns;
    out->consolidate_every = db->cfg.consolidate_every;
    out->l2_model = read_model(db->data_dir);
    if (rc != STRATA_OK) {
        backup_manifest_free(out);
    }
    return rc;
}

int repl_snapshot_read(strata_db *db, const char *name, uint64_t off, size_t len, sbuf *out)
{
    if (name == NULL || !snap_name_parse(name, NULL, NULL)) {
        return strata_error(STRATA_EINVAL, "not a snapshot file name");
    }
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/%s", db->snap_dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* Pruned from snap/ since the export; the archive may still hold it. */
        snprintf(path, sizeof(path), "%s/archive/%s", db->snap_dir, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        return errno == ENOENT ? strata_error(STRATA_ENOTFOUND, "snapshot %s is gone", name)
                               : log_io_error("cannot open", path);
    }
    int rc = sbuf_reserve(out, len);
    size_t got = 0;
    while (rc == STRATA_OK && got < len) {
        ssize_t n = pread(fd, out->data + out->len + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = log_io_error("cannot read", path);
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (rc == STRATA_OK) {
        out->len += got;
        out->data[out->len] = '\0';
    }
    return rc;
}
