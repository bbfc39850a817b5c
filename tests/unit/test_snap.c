/*
 * test_snap.c - unit tests of tier snapshots (src/log/snap.c): write/load
 * round trip, newest wins, fallback past a damaged newest file, pruning,
 * truncated and hand-damaged images rejected by snap_parse, and the
 * temporary-file discipline of snap_begin/snap_abort.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "test.h"

static char *path_fmt(const char *dir, const char *tier, uint64_t lsn, bool tmp)
{
    char *p = malloc(strlen(dir) + 64);
    sprintf(p, "%s/%s%s-%020llu.%s", dir, tmp ? "." : "", tier, (unsigned long long)lsn,
            tmp ? "tmp" : "snap");
    return p;
}

static uint8_t *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int file_write(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    int rc = (len == 0 || fwrite(b, 1, len, f) == len) ? 0 : -1;
    fclose(f);
    return rc;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Body of snapshot `lsn`: n bytes derived from lsn. */
static void body_fill(uint8_t *b, size_t n, uint64_t lsn)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(lsn * 7 + i * 13 + (i >> 9));
    }
}

/* Write a snapshot of `tier` at `lsn` whose body is body_fill(n), in pieces. */
static int snap_make(const char *dir, const char *tier, uint64_t lsn, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    body_fill(b, n, lsn);
    snap_writer *w = NULL;
    int rc = snap_begin(dir, tier, lsn, &w);
    /* uneven pieces: tiny, medium and bigger than the writer's buffer */
    size_t off = 0;
    size_t step = 1;
    while (rc == STRATA_OK && off < n) {
        size_t k = STRATA_MIN(step, n - off);
        rc = snap_write(w, b + off, k);
        off += k;
        step = step * 3 + 1;
    }
    if (rc == STRATA_OK) {
        rc = snap_commit(w);
    } else {
        snap_abort(w);
    }
    free(b);
    return rc;
}

static int load_check(const char *dir, const char *tier, uint64_t want_lsn, size_t want_n)
{
    uint64_t lsn = 0;
    void *data = NULL;
    size_t len = 0;
    int rc = snap_load_latest(dir, tier, &lsn, &data, &len);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint8_t *want = malloc(want_n ? want_n : 1);
    body_fill(want, want_n, want_lsn);
    int ok = lsn == want_lsn && len == want_n && (want_n == 0 || memcmp(data, want, len) == 0);
    free(want);
    strata_free(data);
    return ok ? 0 : -100;
}

TEST(roundtrip)
{
    char *dir = test_tmpdir();
    char *sdir = malloc(strlen(dir) + 16);
    sprintf(sdir, "%s/snap", dir); /* created on demand */
    ASSERT_OK(snap_make(sdir, "l2", 42, 300000));
    char *p = path_fmt(sdir, "l2", 42, false);
    ASSERT_TRUE(exists(p));
    free(p);
    p = path_fmt(sdir, "l2", 42, true);
    ASSERT_TRUE(!exists(p)); /* the temporary file was renamed */
    free(p);
    ASSERT_OK(load_check(sdir, "l2", 42, 300000));
    /* another tier is separate; an empty body is fine */
    ASSERT_EQ(snap_load_latest(sdir, "l3", NULL, &(void *){NULL}, NULL), STRATA_ENOTFOUND);
    ASSERT_OK(snap_make(sdir, "l3", 7, 0));
    ASSERT_OK(load_check(sdir, "l3", 7, 0));
    ASSERT_OK(load_check(sdir, "l2", 42, 300000));
    /* the longest tier name */
    ASSERT_OK(snap_make(sdir, "abcdefghij_12345", 1, 10));
    ASSERT_OK(load_check(sdir, "abcdefghij_12345", 1, 10));
    free(sdir);
    test_rmrf(dir);
}

TEST(missing_dir_not_found)
{
    void *data = (void *)1;
    uint64_t lsn = 5;
    ASSERT_EQ(snap_load_latest("/nonexistent/strata/snap", "l1", &lsn, &data, NULL),
              STRATA_ENOTFOUND);
    ASSERT_TRUE(data == NULL);
    ASSERT_EQ(lsn, 0);
}

TEST(bad_names)
{
    char *dir = test_tmpdir();
    snap_writer *w = (snap_writer *)1;
    ASSERT_EQ(snap_begin(dir, "", 1, &w), STRATA_EINVAL);
    ASSERT_TRUE(w == NULL);
    ASSERT_EQ(snap_begin(dir, "a/b", 1, &w), STRATA_EINVAL);
    ASSERT_EQ(snap_begin(dir, "dash-y", 1, &w), STRATA_EINVAL);
    ASSERT_EQ(snap_begin(dir, "abcdefghij_123456", 1, &w), STRATA_EINVAL); /* 17 bytes */
    ASSERT_EQ(snap_prune(dir, "../x", 1), STRATA_EINVAL);
    test_rmrf(dir);
}

TEST(newest_wins)
{
    char *dir = test_tmpdir();
    ASSERT_OK(snap_make(dir, "l1", 10, 1000));
    ASSERT_OK(snap_make(dir, "l1", 200, 2000));
    ASSERT_OK(snap_make(dir, "l1", 30, 3000));
    ASSERT_OK(load_check(dir, "l1", 200, 2000));
    /* a stray temporary file (crash mid-write) and foreign names are ignored */
    char *tmp = path_fmt(dir, "l1", 999, true);
    ASSERT_OK(file_write(tmp, (const uint8_t *)"junk", 4));
    free(tmp);
    char junk[600];
    snprintf(junk, sizeof(junk), "%s/l1-123.snap", dir);
    ASSERT_OK(file_write(junk, (const uint8_t *)"junk", 4));
    ASSERT_OK(load_check(dir, "l1", 200, 2000));
    test_rmrf(dir);
}

TEST(corrupt_newest_falls_back)
{
    slog_set_level(SLOG_ERROR);
    char *dir = test_tmpdir();
    ASSERT_OK(snap_make(dir, "l2", 10, 5000));
    ASSERT_OK(snap_make(dir, "l2", 20, 5000));
    ASSERT_OK(snap_make(dir, "l2", 30, 5000));
    /* 30: a flipped body byte */
    char *p30 = path_fmt(dir, "l2", 30, false);
    size_t len = 0;
    uint8_t *img = file_read(p30, &len);
    img[64 + 2500] ^= 0x10;
    ASSERT_OK(file_write(p30, img, len));
    free(img);
    ASSERT_OK(load_check(dir, "l2", 20, 5000));
    /* 20: truncated */
    char *p20 = path_fmt(dir, "l2", 20, false);
    ASSERT_EQ(truncate(p20, 64 + 100), 0);
    ASSERT_OK(load_check(dir, "l2", 10, 5000));
    /* 10: renamed copy under a name that does not match its header */
    char *p10 = path_fmt(dir, "l2", 10, false);
    char *p40 = path_fmt(dir, "l2", 40, false);
    img = file_read(p10, &len);
    ASSERT_OK(file_write(p40, img, len));
    free(img);
    ASSERT_OK(load_check(dir, "l2", 10, 5000));
    /* nothing valid left: corruption, not "no snapshot" */
    ASSERT_EQ(truncate(p10, 10), 0);
    void *data = NULL;
    ASSERT_EQ(snap_load_latest(dir, "l2", NULL, &data, NULL), STRATA_ECORRUPT);
    ASSERT_TRUE(data == NULL);
    free(p10);
    free(p20);
    free(p30);
    free(p40);
    test_rmrf(dir);
    slog_set_level(SLOG_INFO);
}

TEST(prune)
{
    char *dir = test_tmpdir();
    for (uint64_t lsn = 1; lsn <= 5; lsn++) {
        ASSERT_OK(snap_make(dir, "l3", lsn * 10, 100));
    }
    ASSERT_OK(snap_make(dir, "l2", 1, 100));
    char *tmp = path_fmt(dir, "l3", 60, true);
    ASSERT_OK(file_write(tmp, (const uint8_t *)"in progress", 11));
    ASSERT_OK(snap_prune(dir, "l3", 2));
    for (uint64_t lsn = 1; lsn <= 5; lsn++) {
        char *p = path_fmt(dir, "l3", lsn * 10, false);
        ASSERT_EQ(exists(p), lsn >= 4);
        free(p);
    }
    ASSERT_TRUE(exists(tmp)); /* may belong to a writer in progress */
    char *other = path_fmt(dir, "l2", 1, false);
    ASSERT_TRUE(exists(other)); /* other tiers untouched */
    ASSERT_OK(load_check(dir, "l3", 50, 100));
    ASSERT_OK(snap_prune(dir, "l3", 5)); /* fewer than keep: nothing to do */
    ASSERT_OK(snap_prune(dir, "l3", 0));
    ASSERT_EQ(snap_load_latest(dir, "l3", NULL, &(void *){NULL}, NULL), STRATA_ENOTFOUND);
    ASSERT_OK(snap_prune("/nonexistent/strata", "l3", 1));
    free(other);
    free(tmp);
    test_rmrf(dir);
}

TEST(abort_removes_tmp)
{
    char *dir = test_tmpdir();
    snap_writer *w = NULL;
    ASSERT_OK(snap_begin(dir, "l1", 5, &w));
    char *tmp = path_fmt(dir, "l1", 5, true);
    ASSERT_TRUE(exists(tmp));
    ASSERT_OK(snap_write(w, "abc", 3));
    snap_abort(w);
    ASSERT_TRUE(!exists(tmp));
    snap_abort(NULL);
    ASSERT_EQ(snap_load_latest(dir, "l1", NULL, &(void *){NULL}, NULL), STRATA_ENOTFOUND);
    free(tmp);
    test_rmrf(dir);
}

/* Every truncation of a valid image and every single-bit flip is rejected. */
TEST(parse_rejects_damage)
{
    char *dir = test_tmpdir();
    ASSERT_OK(snap_make(dir, "l1", 77, 40));
    char *p = path_fmt(dir, "l1", 77, false);
    size_t len = 0;
    uint8_t *img = file_read(p, &len);
    ASSERT_EQ(len, 64 + 40);
    char tier[17];
    uint64_t lsn = 0;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    ASSERT_OK(snap_parse(img, len, tier, &lsn, &body, &body_len));
    ASSERT_STREQ(tier, "l1");
    ASSERT_EQ(lsn, 77);
    ASSERT_EQ(body_len, 40);
    ASSERT_TRUE(body == img + 64);
    for (size_t cut = 0; cut < len; cut++) {
        ASSERT_EQ(snap_parse(img, cut, tier, &lsn, &body, &body_len), STRATA_ECORRUPT);
        ASSERT_TRUE(body == NULL);
        ASSERT_EQ(tier[0], '\0');
    }
    uint8_t *copy = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, img, len);
            copy[i] ^= (uint8_t)(1 << bit);
            ASSERT_EQ(snap_parse(copy, len, tier, &lsn, &body, &body_len), STRATA_ECORRUPT);
        }
    }
    /* trailing bytes */
    memcpy(copy, img, len);
    copy[len] = 0;
    ASSERT_EQ(snap_parse(copy, len + 1, tier, &lsn, &body, &body_len), STRATA_ECORRUPT);
    /* headers with a valid CRC but a bad tier field */
    const char *bad_tiers[] = {"", "a\0b", "a-b", "\xff"};
    size_t bad_lens[] = {0, 3, 3, 1};
    for (size_t k = 0; k < 4; k++) {
        memcpy(copy, img, len);
        memset(copy + 16, 0, 16);
        memcpy(copy + 16, bad_tiers[k], bad_lens[k]);
        wire_le32(copy + 12, crc32c(crc32c(0, copy, 12), copy + 16, 48));
        ASSERT_EQ(snap_parse(copy, len, tier, &lsn, &body, &body_len), STRATA_ECORRUPT);
    }
    /* 16 name bytes, no NUL in the field: valid, and tier_out is terminated */
    memcpy(copy, img, len);
    memcpy(copy + 16, "ABCDEFGHIJKLMNOP", 16);
    wire_le32(copy + 12, crc32c(crc32c(0, copy, 12), copy + 16, 48));
    ASSERT_OK(snap_parse(copy, len, tier, &lsn, &body, &body_len));
    ASSERT_STREQ(tier, "ABCDEFGHIJKLMNOP");
    /* a body length that would overflow */
    memcpy(copy, img, len);
    wire_le64(copy + 40, UINT64_MAX);
    wire_le32(copy + 12, crc32c(crc32c(0, copy, 12), copy + 16, 48));
    ASSERT_EQ(snap_parse(copy, len, tier, &lsn, &body, &body_len), STRATA_ECORRUPT);
    ASSERT_EQ(snap_parse(NULL, 0, NULL, NULL, NULL, NULL), STRATA_ECORRUPT);
    free(copy);
    free(img);
    free(p);
    test_rmrf(dir);
}

/* Fail the Nth allocation along write / load / prune: clean errors, no leaks,
 * and never a half-written snapshot that loads. */
TEST(alloc_failures)
{
    slog_set_level(SLOG_ERROR);
    char *dir = test_tmpdir();
    ASSERT_OK(snap_make(dir, "l1", 1, 100));
    long n;
    for (n = 0; n < 1000; n++) {
        strata_alloc_fail_after(n);
        int rc = snap_make(dir, "l1", 2, 70000);
        ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
        int lrc = load_check(dir, "l1", rc == STRATA_OK ? 2 : 1, rc == STRATA_OK ? 70000 : 100);
        ASSERT_TRUE(lrc == STRATA_OK || lrc == STRATA_ENOMEM);
        int prc = snap_prune(dir, "l1", 5);
        ASSERT_TRUE(prc == STRATA_OK || prc == STRATA_ENOMEM);
        unsigned long used = strata_alloc_count();
        strata_alloc_fail_after(-1);
        if (rc == STRATA_OK) {
            char *p2 = path_fmt(dir, "l1", 2, false);
            unlink(p2);
            free(p2);
        }
        if (used <= (unsigned long)n) {
            break;
        }
    }
    ASSERT_TRUE(n > 3 && n < 1000);
    ASSERT_OK(load_check(dir, "l1", 1, 100));
    test_rmrf(dir);
    slog_set_level(SLOG_INFO);
}

TEST_MAIN(TEST_ENTRY(roundtrip), TEST_ENTRY(missing_dir_not_found), TEST_ENTRY(bad_names),
          TEST_ENTRY(newest_wins), TEST_ENTRY(corrupt_newest_falls_back), TEST_ENTRY(prune),
          TEST_ENTRY(abort_removes_tmp), TEST_ENTRY(parse_rejects_damage),
          TEST_ENTRY(alloc_failures))
