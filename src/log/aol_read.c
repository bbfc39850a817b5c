/*
 * aol_read.c - a read-only scan of a log directory, for tools that read a log
 * another process may be writing (point-in-time restore, rebuild into a new
 * directory). It takes no lock and repairs nothing: segments are append-only,
 * so every complete record it reads is final; a torn or corrupt tail of the
 * last segment (a write in progress, or a crash) simply ends the scan.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log/log.h"
#include "log/ship.h"

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Base LSNs of the *.seg files of dir, sorted (also used by log shipping). */
int aol_dir_segments(const char *dir, uint64_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return strata_error_errno("cannot open log directory", dir);
    }
    uint64_t *bases = NULL;
    size_t n = 0;
    size_t cap = 0;
    struct dirent *e;
    int rc = STRATA_OK;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != 24 || strcmp(e->d_name + 20, ".seg") != 0) {
            continue;
        }
        char *end = NULL;
        uint64_t base = strtoull(e->d_name, &end, 10);
        if (end != e->d_name + 20) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *grown = strata_realloc(bases, cap * sizeof(uint64_t));
            if (grown == NULL) {
                rc = STRATA_ENOMEM;
                break;
            }
            bases = grown;
        }
        bases[n++] = base;
    }
    closedir(d);
    if (rc != STRATA_OK) {
        strata_free(bases);
        return rc;
    }
    if (n > 0) {
        qsort(bases, n, sizeof(uint64_t), u64_cmp);
    }
    *out = bases;
    *n_out = n;
    return STRATA_OK;
}

static int read_file(const char *path, uint8_t **buf_out, size_t *len_out)
{
    *buf_out = NULL;
    *len_out = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return strata_error_errno("cannot open log segment", path);
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return strata_error_errno("cannot stat log segment", path);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = strata_malloc(len ? len : 1);
    if (buf == NULL) {
        fclose(f);
        return STRATA_ENOMEM;
    }
    size_t got = len ? fread(buf, 1, len, f) : 0;
    fclose(f);
    *buf_out = buf;
    *len_out = got; /* a file still growing may read short: fine, we stop at the tail */
    return STRATA_OK;
}

int aol_scan_dir(const char *dir, aol_replay_fn cb, void *ctx, uint64_t *first_lsn_out)
{
    if (first_lsn_out != NULL) {
        *first_lsn_out = 0;
    }
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = aol_dir_segments(dir, &bases, &n);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint64_t expect = 0;
    for (size_t i = 0; i < n && rc == STRATA_OK; i++) {
        bool last = i + 1 == n;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", dir, bases[i]);
        uint8_t *buf = NULL;
        size_t len = 0;
        rc = read_file(path, &buf, &len);
        if (rc != STRATA_OK) {
            break;
        }
        if (len < AOL_SEGMENT_HEADER_BYTES || memcmp(buf, "STRATAL1", 8) != 0) {
            strata_free(buf);
            if (!last) {
                rc = strata_error(STRATA_ECORRUPT, "%s: bad segment header", path);
            }
            break;
        }
        size_t off = AOL_SEGMENT_HEADER_BYTES;
        while (off < len) {
            aol_record rec;
            long used = aol_record_decode(buf + off, len - off, &rec);
            if (used <= 0 || (expect != 0 && rec.lsn != expect)) {
                if (!last) {
                    rc = strata_error(STRATA_ECORRUPT, "%s: bad record at offset %zu", path,
                                      off);
                }
                break;
            }
            if (expect == 0 && first_lsn_out != NULL) {
                *first_lsn_out = rec.lsn;
            }
            expect = rec.lsn + 1;
            rc = cb(ctx, &rec);
            if (rc != STRATA_OK) {
                break;
            }
            off += (size_t)used;
        }
        strata_free(buf);
        if (rc != STRATA_OK || off < len) {
            break;
        }
    }
    strata_free(bases);
    return rc;
}
