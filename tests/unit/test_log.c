/*
 * test_log.c - unit tests of the event log (src/log/aol.c): the record codec,
 * append/replay under each fsync policy, group commit with concurrent
 * appenders, rotation, crash recovery (a truncated copy of the last segment at
 * every offset, flipped bytes, LSN gaps, torn segment headers), retention, the
 * sticky write failure, and a small throughput figure per policy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------ */

static int log_open(const char *dir, strata_fsync_policy policy, uint64_t seg_max, aol **out,
                    aol_open_info *info)
{
    aol_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.fsync = policy;
    o.segment_max_bytes = seg_max;
    return aol_open(&o, out, info);
}

/* Deterministic payload of record `i`: length 0..199, bytes derived from i. */
static size_t payload_make(uint64_t i, uint8_t *buf)
{
    size_t n = (size_t)((i * 37) % 200);
    for (size_t k = 0; k < n; k++) {
        buf[k] = (uint8_t)(i * 131 + k * 7);
    }
    return n;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *seg_path(const char *dir, uint64_t base)
{
    char name[64];
    snprintf(name, sizeof(name), "%020llu.seg", (unsigned long long)base);
    return path_join(dir, name);
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

static int count_segments(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "exit $(ls '%s' | grep -c '\\.seg$')", dir);
    int rc = system(cmd);
    return WEXITSTATUS(rc);
}

/*
 * The crash tests reopen a log hundreds of times and each open fsyncs; their
 * subject is the recovery logic, not the disk, so they run on tmpfs when there
 * is one (fsync is free there) and fall back to test_tmpdir().
 */
static char *fast_tmpdir(void)
{
    char tmpl[] = "/dev/shm/strata-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : test_tmpdir();
}

/* The segment files of a directory, held in memory to be written back often. */
typedef struct seg_image {
    char name[32];
    uint8_t *data;
    size_t len;
} seg_image;

static size_t images_load(const char *dir, seg_image *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < max) {
        size_t l = strlen(e->d_name);
        if (l < 5 || l >= sizeof(out[n].name) || strcmp(e->d_name + l - 4, ".seg") != 0) {
            continue;
        }
        char *p = path_join(dir, e->d_name);
        memcpy(out[n].name, e->d_name, l + 1);
        out[n].data = file_read(p, &out[n].len);
        free(p);
        n++;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static void images_free(seg_image *im, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(im[i].data);
    }
}

/* Empty dir (flat), then write the images back. */
static int images_restore(const char *dir, const seg_image *im, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            char *p = path_join(dir, e->d_name);
            unlink(p);
            free(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    for (size_t i = 0; i < n; i++) {
        char *p = path_join(dir, im[i].name);
        int rc = file_write(p, im[i].data, im[i].len);
        free(p);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Replay checker: records must be lsn first, first+1, ... with the payload of
 * payload_make(lsn) (when check_payload) and tenant "t<lsn % 3>". */
typedef struct replay_check {
    uint64_t next;
    uint64_t count;
    bool check_payload;
    bool bad;
    uint64_t stop_at;            /* non-zero: return 7 at this LSN */
} replay_check;

static int replay_cb(void *ctx, const aol_record *rec)
{
    replay_check *c = ctx;
    if (rec->lsn != c->next) {
        c->bad = true;
    }
    if (c->check_payload) {
        uint8_t want[256];
        size_t n = payload_make(rec->lsn, want);
        char tenant[8];
        snprintf(tenant, sizeof(tenant), "t%llu", (unsigned long long)(rec->lsn % 3));
        if (n != rec->payload_len || (n > 0 && memcmp(want, rec->payload, n) != 0) ||
            rec->tenant_len != strlen(tenant) || memcmp(rec->tenant, tenant, rec->tenant_len) ||
            rec->type != AOL_KV_PUT || rec->ts_ms != (int64_t)(1000 + rec->lsn)) {
            c->bad = true;
        }
    }
    c->next = rec->lsn + 1;
    c->count++;
    if (c->stop_at != 0 && rec->lsn == c->stop_at) {
        return 7;
    }
    return 0;
}

/* Append record i (its LSN must come out as i) with the canonical content. */
static int append_canon(aol *log, uint64_t i, bool wait)
{
    uint8_t p[256];
    size_t n = payload_make(i, p);
    char tenant[8];
    snprintf(tenant, sizeof(tenant), "t%llu", (unsigned long long)(i % 3));
    uint64_t lsn = 0;
    int rc = aol_append(log, AOL_KV_PUT, tenant, strlen(tenant), (int64_t)(1000 + i), p, n, &lsn);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (lsn != i) {
        return -100;
    }
    return wait ? aol_wait(log, lsn) : STRATA_OK;
}

static int replay_expect(aol *log, uint64_t after, uint64_t first, uint64_t count)
{
    replay_check c = {first, 0, true, false, 0};
    int rc = aol_replay(log, after, replay_cb, &c);
    if (rc != 0) {
        return rc;
    }
    if (c.bad) {
        return -200;
    }
    return c.count == count ? 0 : -300;
}

/* Record boundaries of a segment image (offsets of each record start). */
static size_t record_offsets(const uint8_t *seg, size_t len, size_t *offs, size_t max)
{
    size_t n = 0;
    size_t off = AOL_SEGMENT_HEADER_BYTES;
    while (off < len && n < max) {
        long r = aol_record_decode(seg + off, len - off, NULL);
        if (r <= 0) {
            break;
        }
        offs[n++] = off;
        off += (size_t)r;
    }
    offs[n] = off;
    return n;
}

/* ---- record codec ------------------------------------------------------- */

TEST(record_codec)
{
    sbuf b;
    sbuf_init(&b, 1 << 20);
    const char payload[] = "hello payload";
    ASSERT_OK(aol_record_encode(&b, 42, 123456789, AOL_TURN, "acme", 4, payload, 13));
    ASSERT_EQ(b.len, AOL_HEADER_BYTES + 4 + 13);
    const uint8_t *p = (const uint8_t *)b.data;
    aol_record rec;
    ASSERT_EQ(aol_record_decode(p, b.len, &rec), (long)b.len);
    ASSERT_EQ(rec.lsn, 42);
    ASSERT_EQ(rec.ts_ms, 123456789);
    ASSERT_EQ(rec.type, AOL_TURN);
    ASSERT_EQ(rec.flags, 0);
    ASSERT_EQ(rec.tenant_len, 4);
    ASSERT_TRUE(memcmp(rec.tenant, "acme", 4) == 0);
    ASSERT_EQ(rec.payload_len, 13);
    ASSERT_TRUE(memcmp(rec.payload, payload, 13) == 0);
    /* every strict prefix is "need more", never an error */
    for (size_t i = 0; i < b.len; i++) {
        ASSERT_EQ(aol_record_decode(p, i, &rec), 0);
    }
    /* any flipped bit is caught */
    uint8_t copy[128];
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, p, b.len);
            copy[i] ^= (uint8_t)(1 << bit);
            long r = aol_record_decode(copy, b.len, &rec);
            ASSERT_TRUE(r == STRATA_ECORRUPT || r == 0);
        }
    }
    /* oversize length field */
    memcpy(copy, p, b.len);
    wire_le32(copy, AOL_MAX_PAYLOAD + 1);
    ASSERT_EQ(aol_record_decode(copy, 8, &rec), STRATA_ECORRUPT);
    /* tenant length 0 and 129 */
    memcpy(copy, p, b.len);
    copy[26] = 0;
    ASSERT_EQ(aol_record_decode(copy, b.len, &rec), STRATA_ECORRUPT);
    copy[26] = 129;
    ASSERT_EQ(aol_record_decode(copy, b.len, &rec), STRATA_ECORRUPT);
    /* bad arguments */
    ASSERT_EQ(aol_record_encode(&b, 1, 0, 1, "", 0, "x", 1), STRATA_EINVAL);
    char big[AOL_MAX_TENANT + 1];
    memset(big, 'a', sizeof(big));
    ASSERT_EQ(aol_record_encode(&b, 1, 0, 1, big, sizeof(big), "x", 1), STRATA_EINVAL);
    ASSERT_OK(aol_record_encode(&b, 1, 0, 1, big, AOL_MAX_TENANT, NULL, 0));
    ASSERT_EQ(aol_record_decode(NULL, 0, &rec), 0);
    sbuf_free(&b);
}

/* The append path folds the LSN into the CRC with a CRC-combine step; its bytes
 * must equal what the plain encoder produces. */
TEST(append_bytes_match_encoder)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_NO, 0, &log, NULL));
    sbuf want;
    sbuf_init(&want, 1 << 24);
    uint8_t big[5000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 13 + 5);
    }
    size_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4999, 5000};
    for (size_t k = 0; k < STRATA_ARRAY_LEN(sizes); k++) {
        uint64_t lsn = 0;
        ASSERT_OK(
            aol_append(log, AOL_KV_PUT, "tenant-x", 8, -5 + (int64_t)k, big, sizes[k], &lsn));
        ASSERT_EQ(lsn, k + 1);
        ASSERT_OK(aol_record_encode(&want, lsn, -5 + (int64_t)k, AOL_KV_PUT, "tenant-x", 8, big,
                                    sizes[k]));
    }
    ASSERT_OK(aol_sync(log));
    aol_close(log);
    char *p = seg_path(dir, 1);
    size_t len = 0;
    uint8_t *img = file_read(p, &len);
    ASSERT_TRUE(img != NULL);
    ASSERT_EQ(len, AOL_SEGMENT_HEADER_BYTES + want.len);
    ASSERT_TRUE(memcmp(img + AOL_SEGMENT_HEADER_BYTES, want.data, want.len) == 0);
    free(img);
    free(p);
    sbuf_free(&want);
    test_rmrf(dir);
}

/* ---- round trips ---------------------------------------------------------- */

static void roundtrip(int *test_failed_, strata_fsync_policy policy)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, policy, 0, &log, &info));
    ASSERT_EQ(info.last_lsn, 0);
    ASSERT_EQ(info.records, 0);
    ASSERT_EQ(info.segments, 1);
    ASSERT_EQ(count_segments(dir), 1);
    for (uint64_t i = 1; i <= 300; i++) {
        ASSERT_OK(append_canon(log, i, true));
    }
    aol_stats st;
    aol_stats_get(log, &st);
    ASSERT_EQ(st.last_lsn, 300);
    ASSERT_EQ(st.written_lsn, 300);
    ASSERT_EQ(st.appends, 300);
    if (policy == STRATA_FSYNC_ALWAYS) {
        ASSERT_EQ(st.durable_lsn, 300);
    }
    ASSERT_OK(replay_expect(log, 0, 1, 300));
    ASSERT_OK(replay_expect(log, 250, 251, 50));
    ASSERT_OK(replay_expect(log, 300, 1, 0));
    /* a callback's non-zero return stops the replay and comes back */
    replay_check c = {1, 0, true, false, 10};
    ASSERT_EQ(aol_replay(log, 0, replay_cb, &c), 7);
    ASSERT_EQ(c.count, 10);
    aol_close(log);

    log = NULL;
    ASSERT_OK(log_open(dir, policy, 0, &log, &info));
    ASSERT_EQ(info.last_lsn, 300);
    ASSERT_EQ(info.records, 300);
    ASSERT_EQ(info.bytes_truncated, 0);
    ASSERT_EQ(info.segments, 1);
    aol_stats_get(log, &st);
    ASSERT_EQ(st.durable_lsn, 300);
    ASSERT_OK(replay_expect(log, 0, 1, 300));
    for (uint64_t i = 301; i <= 320; i++) {
        ASSERT_OK(append_canon(log, i, i % 2 == 0)); /* some never waited for */
    }
    aol_close(log); /* flushes what nobody waited for */
    log = NULL;
    ASSERT_OK(log_open(dir, policy, 0, &log, &info));
    ASSERT_EQ(info.last_lsn, 320);
    ASSERT_OK(replay_expect(log, 0, 1, 320));
    aol_close(log);
    test_rmrf(dir);
}

TEST(roundtrip_always) { roundtrip(test_failed_, STRATA_FSYNC_ALWAYS); }
TEST(roundtrip_everysec) { roundtrip(test_failed_, STRATA_FSYNC_EVERYSEC); }
TEST(roundtrip_no) { roundtrip(test_failed_, STRATA_FSYNC_NO); }

TEST(bad_arguments)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_options o = {dir, (strata_fsync_policy)9, 0, 0};
    ASSERT_EQ(aol_open(&o, &log, NULL), STRATA_EINVAL);
    ASSERT_TRUE(log == NULL);
    ASSERT_OK(log_open(dir, STRATA_FSYNC_NO, 0, &log, NULL));
    /* a second writer on the same directory is refused */
    aol *two = NULL;
    ASSERT_EQ(log_open(dir, STRATA_FSYNC_NO, 0, &two, NULL), STRATA_EBUSY);
    ASSERT_TRUE(two == NULL);
    uint64_t lsn = 99;
    ASSERT_EQ(aol_append(log, 1, "", 0, 0, "x", 1, &lsn), STRATA_EINVAL);
    ASSERT_EQ(lsn, 0);
    ASSERT_EQ(aol_append(log, 1, "t", 1, 0, NULL, 5, &lsn), STRATA_EINVAL);
    ASSERT_EQ(aol_wait(log, 1), STRATA_EINVAL); /* never assigned */
    ASSERT_OK(aol_wait(log, 0));
    ASSERT_OK(aol_append(log, 1, "t", 1, 0, NULL, 0, &lsn));
    ASSERT_EQ(lsn, 1);
    ASSERT_OK(aol_wait(log, 1));
    ASSERT_EQ(aol_replay(log, 0, NULL, NULL), STRATA_EINVAL);
    aol_close(log);
    aol_close(NULL);
    /* a nested directory is created */
    char *nested = path_join(dir, "a/b/log");
    ASSERT_OK(log_open(nested, STRATA_FSYNC_NO, 0, &log, NULL));
    aol_close(log);
    free(nested);
    test_rmrf(dir);
}

/* ---- concurrency / group commit ------------------------------------------ */

#define MT_THREADS 4
#define MT_PER_THREAD 2000

typedef struct mt_arg {
    aol *log;
    int id;
    int rc;
    double until_s;              /* keep going past MT_PER_THREAD until this time */
    int done;                    /* records appended */
} mt_arg;

static double now_s(void)
{
    return (double)clock_mono_ns() / 1e9;
}

static void *mt_main(void *p)
{
    mt_arg *a = p;
    for (int i = 0; i < MT_PER_THREAD || now_s() < a->until_s; i++) {
        uint8_t payload[64];
        size_t n = 8 + (size_t)(i % 50);
        payload[0] = (uint8_t)a->id;
        memcpy(payload + 1, &i, sizeof(i));
        for (size_t k = 5; k < n; k++) {
            payload[k] = (uint8_t)(a->id * 31 + i + k);
        }
        uint64_t lsn = 0;
        int rc = aol_append(a->log, AOL_TURN, "mt", 2, i, payload, n, &lsn);
        if (rc == STRATA_OK) {
            rc = aol_wait(a->log, lsn);
        }
        if (rc != STRATA_OK) {
            a->rc = rc;
            return NULL;
        }
        a->done = i + 1;
        if (a->until_s > 0) {
            usleep(500); /* a steady trickle, not a flood, while the clock runs */
        }
    }
    return NULL;
}

typedef struct mt_check {
    uint64_t next;
    int next_seq[MT_THREADS];
    bool bad;
} mt_check;

static int mt_cb(void *ctx, const aol_record *rec)
{
    mt_check *c = ctx;
    if (rec->lsn != c->next++ || rec->payload_len < 8) {
        c->bad = true;
        return 0;
    }
    int id = rec->payload[0];
    int i;
    memcpy(&i, rec->payload + 1, sizeof(i));
    /* each thread's records appear in its own order, payload intact */
    if (id >= MT_THREADS || i != c->next_seq[id] || rec->payload_len != 8 + (size_t)(i % 50) ||
        rec->ts_ms != i) {
        c->bad = true;
        return 0;
    }
    for (size_t k = 5; k < rec->payload_len; k++) {
        if (rec->payload[k] != (uint8_t)(id * 31 + i + k)) {
            c->bad = true;
        }
    }
    c->next_seq[id]++;
    return 0;
}

/* Run the 4 x 2000 workload (for at least min_s seconds); verify replay, also
 * after reopen. Prints a figure. */
static void mt_run(int *test_failed_, strata_fsync_policy policy, uint64_t seg_max, double min_s)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    ASSERT_OK(log_open(dir, policy, seg_max, &log, NULL));
    pthread_t th[MT_THREADS];
    mt_arg args[MT_THREADS];
    double t0 = now_s();
    for (int i = 0; i < MT_THREADS; i++) {
        args[i] = (mt_arg){log, i, 0, min_s > 0 ? t0 + min_s : 0, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, mt_main, &args[i]), 0);
    }
    for (int i = 0; i < MT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    double dt = now_s() - t0;
    uint64_t total = 0;
    for (int i = 0; i < MT_THREADS; i++) {
        ASSERT_OK(args[i].rc);
        total += (uint64_t)args[i].done;
    }
    aol_stats st;
    aol_stats_get(log, &st);
    ASSERT_EQ(st.appends, total);
    ASSERT_EQ(st.last_lsn, total);
    printf("     %-8s %d threads: %llu appends+waits in %.2f s = %.0f/s, %llu fsyncs, "
           "%llu segments\n",
           policy == STRATA_FSYNC_ALWAYS ? "always" : policy == STRATA_FSYNC_EVERYSEC ? "everysec"
                                                                                     : "no",
           MT_THREADS, (unsigned long long)total, dt, (double)total / dt,
           (unsigned long long)st.fsyncs, (unsigned long long)st.segments);
    if (policy == STRATA_FSYNC_ALWAYS) {
        ASSERT_EQ(st.durable_lsn, total);
        /* group commit: concurrent waiters shared fsyncs */
        ASSERT_TRUE(st.fsyncs < st.appends);
    }
    mt_check c;
    memset(&c, 0, sizeof(c));
    c.next = 1;
    ASSERT_OK(aol_replay(log, 0, mt_cb, &c));
    ASSERT_TRUE(!c.bad);
    ASSERT_EQ(c.next, total + 1);
    aol_close(log);

    aol_open_info info;
    ASSERT_OK(log_open(dir, policy, seg_max, &log, &info));
    ASSERT_EQ(info.records, total);
    ASSERT_EQ(info.last_lsn, total);
    memset(&c, 0, sizeof(c));
    c.next = 1;
    ASSERT_OK(aol_replay(log, 0, mt_cb, &c));
    ASSERT_TRUE(!c.bad);
    ASSERT_EQ(c.next, total + 1);
    aol_close(log);
    test_rmrf(dir);
}

TEST(threads_always) { mt_run(test_failed_, STRATA_FSYNC_ALWAYS, 0, 0); }
TEST(threads_everysec) { mt_run(test_failed_, STRATA_FSYNC_EVERYSEC, 0, 0); }
TEST(threads_no) { mt_run(test_failed_, STRATA_FSYNC_NO, 0, 0); }
/* concurrent appenders while the leader keeps rotating (each rotation syncs) */
TEST(threads_rotating) { mt_run(test_failed_, STRATA_FSYNC_NO, 8192, 0); }
/* the sync thread's dup+fdatasync racing writers and rotations */
TEST(threads_everysec_rotating) { mt_run(test_failed_, STRATA_FSYNC_EVERYSEC, 8192, 2.2); }

/* Single-threaded append+wait rate per policy (the figures in the report). */
TEST(throughput)
{
    strata_fsync_policy pol[] = {STRATA_FSYNC_ALWAYS, STRATA_FSYNC_EVERYSEC, STRATA_FSYNC_NO};
    const char *names[] = {"always", "everysec", "no"};
    for (int k = 0; k < 3; k++) {
        char *dir = test_tmpdir();
        aol *log = NULL;
        ASSERT_OK(log_open(dir, pol[k], 0, &log, NULL));
        int n = pol[k] == STRATA_FSYNC_ALWAYS ? 300 : 20000;
        uint8_t payload[100];
        memset(payload, 'p', sizeof(payload));
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            uint64_t lsn;
            ASSERT_OK(aol_append(log, AOL_TURN, "tenant", 6, i, payload, sizeof(payload), &lsn));
            ASSERT_OK(aol_wait(log, lsn));
        }
        double dt = now_s() - t0;
        aol_stats st;
        aol_stats_get(log, &st);
        printf("     %-8s 1 thread: %d appends+waits in %.2f s = %.0f/s, %llu fsyncs\n",
               names[k], n, dt, n / dt, (unsigned long long)st.fsyncs);
        aol_close(log);
        test_rmrf(dir);
    }
}

TEST(everysec_thread_syncs)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_EVERYSEC, 0, &log, NULL));
    for (uint64_t i = 1; i <= 10; i++) {
        ASSERT_OK(append_canon(log, i, true));
    }
    /* appended but never waited for: the sync thread writes it too */
    ASSERT_OK(append_canon(log, 11, false));
    aol_stats st;
    aol_stats_get(log, &st);
    uint64_t fsyncs0 = st.fsyncs;
    for (int i = 0; i < 40; i++) {
        aol_stats_get(log, &st);
        if (st.durable_lsn == 11) {
            break;
        }
        usleep(100 * 1000);
    }
    ASSERT_EQ(st.written_lsn, 11);
    ASSERT_EQ(st.durable_lsn, 11);
    ASSERT_TRUE(st.fsyncs > fsyncs0);
    /* nothing new: the thread does not sync again */
    uint64_t fsyncs1 = st.fsyncs;
    usleep(1300 * 1000);
    aol_stats_get(log, &st);
    ASSERT_EQ(st.fsyncs, fsyncs1);
    aol_close(log);
    test_rmrf(dir);
}

/* ---- rotation --------------------------------------------------------------- */

TEST(rotation)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_EVERYSEC, 2048, &log, &info));
    for (uint64_t i = 1; i <= 400; i++) {
        ASSERT_OK(append_canon(log, i, true));
    }
    aol_stats st;
    aol_stats_get(log, &st);
    ASSERT_TRUE(st.segments >= 10);
    ASSERT_EQ(st.segments, (uint64_t)count_segments(dir));
    /* the finished segments were synced when closed */
    ASSERT_TRUE(st.durable_lsn > 300);
    ASSERT_OK(replay_expect(log, 0, 1, 400));
    ASSERT_OK(replay_expect(log, 333, 334, 67));
    uint64_t segs = st.segments;
    uint64_t bytes = st.bytes;
    aol_close(log);

    ASSERT_OK(log_open(dir, STRATA_FSYNC_EVERYSEC, 2048, &log, &info));
    ASSERT_EQ(info.segments, segs);
    ASSERT_EQ(info.records, 400);
    ASSERT_EQ(info.last_lsn, 400);
    aol_stats_get(log, &st);
    ASSERT_EQ(st.bytes, bytes);
    ASSERT_OK(replay_expect(log, 0, 1, 400));
    for (uint64_t i = 401; i <= 450; i++) {
        ASSERT_OK(append_canon(log, i, true));
    }
    ASSERT_OK(replay_expect(log, 0, 1, 450));
    aol_close(log);
    /* every segment is named by the LSN of its first record */
    ASSERT_OK(log_open(dir, STRATA_FSYNC_EVERYSEC, 2048, &log, &info));
    ASSERT_EQ(info.records, 450);
    aol_close(log);
    test_rmrf(dir);
}

/* ---- recovery ------------------------------------------------------------ */

/* Build a log of n canonical records in dir (closed afterwards). */
static int build_log(const char *dir, uint64_t n, uint64_t seg_max)
{
    aol *log = NULL;
    int rc = log_open(dir, STRATA_FSYNC_NO, seg_max, &log, NULL);
    if (rc != STRATA_OK) {
        return rc;
    }
    for (uint64_t i = 1; i <= n && rc == STRATA_OK; i++) {
        rc = append_canon(log, i, true);
    }
    aol_close(log);
    return rc;
}

/*
 * THE KEY TEST: a crash can cut the last segment anywhere. For every offset
 * inside the last record, a copy cut there must reopen with every complete
 * record, report exactly the cut bytes, and take new appends.
 */
static void truncate_every_offset(int *test_failed_, uint64_t seg_max)
{
    slog_set_level(SLOG_ERROR); /* one warning per cut is expected */
    char *src = fast_tmpdir();
    char *dst = fast_tmpdir();
    const uint64_t n = 25;
    ASSERT_OK(build_log(src, n, seg_max));
    seg_image im[64];
    size_t nim = images_load(src, im, 64);
    ASSERT_TRUE(nim >= 1);
    /* the last segment is the one with the highest base (names sort as numbers) */
    size_t last = 0;
    for (size_t i = 1; i < nim; i++) {
        if (strcmp(im[i].name, im[last].name) > 0) {
            last = i;
        }
    }
    uint64_t last_base = strtoull(im[last].name, NULL, 10);
    uint8_t *img = im[last].data;
    size_t len = im[last].len;
    size_t offs[256];
    size_t nrec = record_offsets(img, len, offs, 255);
    ASSERT_TRUE(nrec >= 2);
    ASSERT_EQ(offs[nrec], len);
    ASSERT_EQ(last_base + nrec - 1, n);
    size_t start = offs[nrec - 1];
    ASSERT_TRUE(len - start > 100); /* a record worth cutting */

    for (size_t cut = start; cut <= len; cut++) {
        im[last].len = cut;
        ASSERT_OK(images_restore(dst, im, nim));
        aol *log = NULL;
        aol_open_info info;
        ASSERT_OK(log_open(dst, STRATA_FSYNC_NO, seg_max, &log, &info));
        uint64_t survive = cut == len ? n : n - 1;
        ASSERT_EQ(info.last_lsn, survive);
        ASSERT_EQ(info.records, survive);
        ASSERT_EQ(info.bytes_truncated, cut == len ? 0 : cut - start);
        ASSERT_EQ(info.segments, nim);
        ASSERT_OK(replay_expect(log, 0, 1, survive));
        /* appends continue right after the survivors */
        ASSERT_OK(append_canon(log, survive + 1, true));
        aol_close(log);
        log = NULL;
        ASSERT_OK(log_open(dst, STRATA_FSYNC_NO, seg_max, &log, &info));
        ASSERT_EQ(info.bytes_truncated, 0);
        ASSERT_EQ(info.last_lsn, survive + 1);
        ASSERT_OK(replay_expect(log, 0, 1, survive + 1));
        aol_close(log);
    }
    im[last].len = len;
    images_free(im, nim);
    test_rmrf(src);
    test_rmrf(dst);
    slog_set_level(SLOG_INFO);
}

TEST(truncate_every_offset) { truncate_every_offset(test_failed_, 0); }
TEST(truncate_every_offset_multi_segment) { truncate_every_offset(test_failed_, 2048); }

/* Rotation crashed while creating the next segment: its header is torn. */
TEST(torn_segment_header)
{
    slog_set_level(SLOG_ERROR);
    char *src = fast_tmpdir();
    char *dst = fast_tmpdir();
    ASSERT_OK(build_log(src, 10, 0));
    seg_image im[2];
    ASSERT_EQ(images_load(src, im, 1), 1);
    /* a valid header for segment 11, as the rotation would write it */
    uint8_t h[AOL_SEGMENT_HEADER_BYTES];
    memcpy(h, im[0].data, sizeof(h));
    wire_le64(h + 16, 11);
    wire_le32(h + 12, crc32c(crc32c(0, h, 12), h + 16, 16));
    snprintf(im[1].name, sizeof(im[1].name), "%020llu.seg", 11ULL);
    im[1].data = h;
    for (size_t cut = 0; cut <= AOL_SEGMENT_HEADER_BYTES; cut++) {
        im[1].len = cut;
        ASSERT_OK(images_restore(dst, im, 2));
        aol *log = NULL;
        aol_open_info info;
        ASSERT_OK(log_open(dst, STRATA_FSYNC_NO, 0, &log, &info));
        ASSERT_EQ(info.last_lsn, 10);
        ASSERT_EQ(info.records, 10);
        ASSERT_EQ(info.segments, 2);
        ASSERT_EQ(info.bytes_truncated, cut == AOL_SEGMENT_HEADER_BYTES ? 0 : cut);
        ASSERT_OK(append_canon(log, 11, true));
        ASSERT_OK(replay_expect(log, 0, 1, 11));
        aol_close(log);
        ASSERT_OK(log_open(dst, STRATA_FSYNC_NO, 0, &log, &info));
        ASSERT_EQ(info.records, 11);
        aol_close(log);
    }
    /* a torn header that is the only segment: a fresh log named after it */
    im[1].len = 5;
    ASSERT_OK(images_restore(dst, im + 1, 1));
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dst, STRATA_FSYNC_NO, 0, &log, &info));
    ASSERT_EQ(info.last_lsn, 10);
    ASSERT_EQ(info.bytes_truncated, 5);
    ASSERT_OK(append_canon(log, 11, true));
    aol_close(log);
    /* a bad header with data behind it is damage, not a torn creation */
    uint8_t bad[AOL_SEGMENT_HEADER_BYTES + 8];
    memset(bad, 'x', sizeof(bad));
    memcpy(bad, h, sizeof(h));
    bad[0] ^= 1;
    im[1].data = bad;
    im[1].len = sizeof(bad);
    ASSERT_OK(images_restore(dst, im, 2));
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 0, &log, &info), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "bad header") != NULL);
    images_free(im, 1);
    test_rmrf(src);
    test_rmrf(dst);
    slog_set_level(SLOG_INFO);
}

TEST(flipped_byte)
{
    char *src = test_tmpdir();
    ASSERT_OK(build_log(src, 60, 2048));
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(src, STRATA_FSYNC_NO, 2048, &log, &info));
    ASSERT_TRUE(info.segments >= 3);
    aol_close(log);

    /* find the last segment's base */
    uint64_t last_base = 0;
    for (uint64_t b = 1; b <= 60; b++) {
        char *p = seg_path(src, b);
        if (access(p, F_OK) == 0) {
            last_base = b;
        }
        free(p);
    }
    ASSERT_TRUE(last_base > 1);

    /* in the last segment, with intact records after it: damage, refused
     * (truncating would drop acknowledged writes) */
    char *dst = test_tmpdir();
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cp '%s'/*.seg '%s'/", src, dst);
    ASSERT_EQ(system(cmd), 0);
    char *lp = seg_path(dst, last_base);
    size_t len = 0;
    uint8_t *img = file_read(lp, &len);
    size_t offs[256];
    size_t nrec = record_offsets(img, len, offs, 255);
    ASSERT_TRUE(nrec >= 3);
    size_t k = nrec / 2; /* damage record k (0-based) in the middle */
    img[offs[k] + AOL_HEADER_BYTES + 1] ^= 0x40;
    ASSERT_OK(file_write(lp, img, len));
    log = NULL;
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "intact records follow") != NULL);
    /* the same in the length field: found by scanning for the next record */
    img[offs[k] + AOL_HEADER_BYTES + 1] ^= 0x40;
    img[offs[k] + 1] ^= 0x10;
    ASSERT_OK(file_write(lp, img, len));
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info), STRATA_ECORRUPT);
    img[offs[k] + 1] ^= 0x10;
    /* in the last record: a torn write, truncated from there on */
    k = nrec - 1;
    img[offs[k] + AOL_HEADER_BYTES + 1] ^= 0x40;
    ASSERT_OK(file_write(lp, img, len));
    ASSERT_OK(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info));
    ASSERT_EQ(info.last_lsn, last_base + k - 1);
    ASSERT_EQ(info.bytes_truncated, len - offs[k]);
    ASSERT_OK(replay_expect(log, 0, 1, last_base + k - 1));
    ASSERT_OK(append_canon(log, last_base + k, true));
    aol_close(log);
    free(img);
    free(lp);
    test_rmrf(dst);

    /* in an earlier segment: an error naming the file and offset */
    dst = test_tmpdir();
    snprintf(cmd, sizeof(cmd), "cp '%s'/*.seg '%s'/", src, dst);
    ASSERT_EQ(system(cmd), 0);
    char *fp = seg_path(dst, 1);
    img = file_read(fp, &len);
    nrec = record_offsets(img, len, offs, 255);
    ASSERT_TRUE(nrec >= 3);
    img[offs[2] + 10] ^= 0x01;
    ASSERT_OK(file_write(fp, img, len));
    log = NULL;
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info), STRATA_ECORRUPT);
    ASSERT_TRUE(log == NULL);
    ASSERT_TRUE(strstr(strata_errmsg(), "00000000000000000001.seg") != NULL);
    char want_off[32];
    snprintf(want_off, sizeof(want_off), "offset %zu", offs[2]);
    ASSERT_TRUE(strstr(strata_errmsg(), want_off) != NULL);
    /* a torn tail in an earlier segment is corruption as well */
    ASSERT_OK(file_write(fp, img, offs[1] + 3));
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info), STRATA_ECORRUPT);
    /* and so is a bad header */
    img[3] ^= 1;
    ASSERT_OK(file_write(fp, img, len));
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info), STRATA_ECORRUPT);
    free(img);
    free(fp);
    test_rmrf(dst);

    /* a missing middle segment is a gap */
    dst = test_tmpdir();
    snprintf(cmd, sizeof(cmd), "cp '%s'/*.seg '%s'/ && rm \"$(ls -d '%s'/*.seg | sed -n 2p)\"",
             src, dst, dst);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(log_open(dst, STRATA_FSYNC_NO, 2048, &log, &info), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "gap") != NULL);
    test_rmrf(dst);
    test_rmrf(src);
}

/* Hand-made segment with LSNs 1, 2, 4: a gap is corruption. */
TEST(lsn_gap)
{
    char *dir = test_tmpdir();
    ASSERT_OK(build_log(dir, 0, 0)); /* a header-only segment 1 */
    char *p = seg_path(dir, 1);
    size_t len = 0;
    uint8_t *img = file_read(p, &len);
    ASSERT_EQ(len, AOL_SEGMENT_HEADER_BYTES);
    sbuf b;
    sbuf_init(&b, 1 << 20);
    ASSERT_OK(sbuf_append(&b, img, len));
    uint64_t lsns[] = {1, 2, 4, 5};
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(aol_record_encode(&b, lsns[i], 0, AOL_TURN, "t", 1, "abc", 3));
    }
    size_t rec_len = AOL_HEADER_BYTES + 1 + 3;
    /* 1, 2, 4, 5 in the last segment: intact records after the gap, damage */
    ASSERT_OK(file_write(p, (const uint8_t *)b.data, b.len));
    aol *log = NULL;
    aol_open_info info;
    ASSERT_EQ(log_open(dir, STRATA_FSYNC_NO, 0, &log, &info), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "intact records follow") != NULL);
    /* 1, 2, 4 with 4 last: cut like a torn tail */
    ASSERT_OK(file_write(p, (const uint8_t *)b.data, b.len - rec_len));
    ASSERT_OK(log_open(dir, STRATA_FSYNC_NO, 0, &log, &info));
    ASSERT_EQ(info.last_lsn, 2);
    ASSERT_EQ(info.bytes_truncated, rec_len);
    uint64_t lsn = 0;
    ASSERT_OK(aol_append(log, AOL_TURN, "t", 1, 0, "x", 1, &lsn));
    ASSERT_EQ(lsn, 3);
    aol_close(log);

    /* the same gap in an earlier segment: 1 (1,2,4,5) then an empty 6 */
    ASSERT_OK(file_write(p, (const uint8_t *)b.data, b.len));
    uint8_t h6[AOL_SEGMENT_HEADER_BYTES];
    memcpy(h6, img, sizeof(h6));
    wire_le64(h6 + 16, 6);
    wire_le32(h6 + 12, crc32c(crc32c(0, h6, 12), h6 + 16, 16));
    char *p6 = seg_path(dir, 6);
    ASSERT_OK(file_write(p6, h6, sizeof(h6)));
    ASSERT_EQ(log_open(dir, STRATA_FSYNC_NO, 0, &log, &info), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "out of sequence") != NULL);
    ASSERT_TRUE(strstr(strata_errmsg(), "00000000000000000001.seg") != NULL);
    free(p6);
    free(p);
    free(img);
    sbuf_free(&b);
    test_rmrf(dir);
}

/* ---- retention --------------------------------------------------------- */

typedef struct first_count {
    uint64_t first;
    uint64_t count;
} first_count;

static int first_count_cb(void *ctx, const aol_record *rec)
{
    first_count *fc = ctx;
    if (fc->count++ == 0) {
        fc->first = rec->lsn;
    }
    return 0;
}

static int first_and_count(aol *log, uint64_t *first, uint64_t *count)
{
    first_count fc = {0, 0};
    int rc = aol_replay(log, 0, first_count_cb, &fc);
    *first = fc.first;
    *count = fc.count;
    return rc;
}

TEST(drop_segments)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_NO, 2048, &log, &info));
    for (uint64_t i = 1; i <= 300; i++) {
        ASSERT_OK(append_canon(log, i, true)); /* ts_ms = 1000 + i */
    }
    aol_stats st;
    aol_stats_get(log, &st);
    uint64_t segs0 = st.segments;
    ASSERT_TRUE(segs0 >= 8);

    uint64_t dropped = 99;
    /* nothing is old enough */
    ASSERT_OK(aol_drop_segments(log, UINT64_MAX, 1000, &dropped));
    ASSERT_EQ(dropped, 0);
    /* nothing is covered */
    ASSERT_OK(aol_drop_segments(log, 0, INT64_MAX, &dropped));
    ASSERT_EQ(dropped, 0);

    /* by LSN: only segments entirely <= 100 go */
    ASSERT_OK(aol_drop_segments(log, 100, INT64_MAX, &dropped));
    ASSERT_TRUE(dropped >= 1);
    aol_stats_get(log, &st);
    ASSERT_EQ(st.segments, segs0 - dropped);
    ASSERT_EQ(st.segments_dropped, dropped);
    ASSERT_EQ((uint64_t)count_segments(dir), st.segments);
    uint64_t first = 0;
    uint64_t count = 0;
    ASSERT_OK(first_and_count(log, &first, &count));
    /* the first remaining record is the first one past a dropped segment */
    ASSERT_TRUE(first > 1 && first <= 101);
    ASSERT_EQ(count, 300 - first + 1);
    ASSERT_OK(replay_expect(log, 0, first, count));

    /* by age: records with ts < 1000 + 200 (lsn < 200) go, whatever their LSN */
    uint64_t before = st.segments;
    ASSERT_OK(aol_drop_segments(log, UINT64_MAX, 1200, &dropped));
    ASSERT_TRUE(dropped >= 1);
    aol_stats_get(log, &st);
    ASSERT_EQ(st.segments, before - dropped);
    ASSERT_OK(first_and_count(log, &first, &count));
    ASSERT_TRUE(first > 101 && first <= 200);
    ASSERT_OK(replay_expect(log, 0, first, count));

    /* everything qualifies: still never the active segment */
    ASSERT_OK(aol_drop_segments(log, UINT64_MAX, INT64_MAX, &dropped));
    aol_stats_get(log, &st);
    ASSERT_EQ(st.segments, 1);
    ASSERT_EQ(st.segments_dropped, segs0 - 1);
    aol_close(log);

    /* the trimmed log reopens and continues */
    ASSERT_OK(log_open(dir, STRATA_FSYNC_NO, 2048, &log, &info));
    ASSERT_EQ(info.last_lsn, 300);
    ASSERT_EQ(info.segments, 1);
    ASSERT_OK(append_canon(log, 301, true));
    aol_close(log);
    test_rmrf(dir);
}

/* ---- erasure (right to be forgotten) ------------------------------------ */

static bool erase_multiple_of_7(void *ctx, const aol_record *rec)
{
    (void)ctx;
    return rec->lsn % 7 == 0;
}

typedef struct erase_check {
    uint64_t next;
    uint64_t noops;
    bool bad;
} erase_check;

static int erase_check_cb(void *ctx, const aol_record *rec)
{
    erase_check *c = ctx;
    uint8_t p[256];
    size_t n = payload_make(rec->lsn, p);
    char tenant[8];
    snprintf(tenant, sizeof(tenant), "t%llu", (unsigned long long)(rec->lsn % 3));
    bool tenant_ok = rec->tenant_len == strlen(tenant) && memcmp(rec->tenant, tenant, rec->tenant_len) == 0;
    if (rec->lsn != c->next || !tenant_ok || rec->ts_ms != (int64_t)(1000 + rec->lsn)) {
        c->bad = true;
    } else if (rec->lsn % 7 == 0 && rec->lsn <= 200) {
        c->bad |= rec->type != AOL_NOOP || rec->payload_len != 0;
        c->noops++;
    } else {
        c->bad |= rec->type != AOL_KV_PUT || rec->payload_len != n ||
                  memcmp(rec->payload, p, n) != 0;
    }
    c->next++;
    return 0;
}

/* Erased records become NOOPs with the same LSN, time and tenant; their bytes
 * are gone from every file; appends continue on the rewritten active segment;
 * it all survives a reopen. */
TEST(erase_records)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_EVERYSEC, 2048, &log, &info));
    for (uint64_t i = 1; i <= 200; i++) {
        ASSERT_OK(append_canon(log, i, i % 50 == 0)); /* some still only queued */
    }
    uint64_t erased = 0;
    ASSERT_OK(aol_erase(log, erase_multiple_of_7, NULL, &erased));
    ASSERT_EQ(erased, 200 / 7);
    /* erasing again finds nothing new (NOOPs are never offered) */
    ASSERT_OK(aol_erase(log, erase_multiple_of_7, NULL, &erased));
    ASSERT_EQ(erased, 0);
    for (uint64_t i = 201; i <= 260; i++) {
        ASSERT_OK(append_canon(log, i, true));
    }
    erase_check c = {1, 0, false};
    ASSERT_OK(aol_replay(log, 0, erase_check_cb, &c));
    ASSERT_TRUE(!c.bad);
    ASSERT_EQ(c.next, 261);
    ASSERT_EQ(c.noops, 200 / 7);
    aol_close(log);

    ASSERT_OK(log_open(dir, STRATA_FSYNC_EVERYSEC, 2048, &log, &info));
    ASSERT_EQ(info.last_lsn, 260);
    ASSERT_EQ(info.bytes_truncated, 0);
    c = (erase_check){1, 0, false};
    ASSERT_OK(aol_replay(log, 0, erase_check_cb, &c));
    ASSERT_TRUE(!c.bad);
    ASSERT_EQ(c.next, 261);
    ASSERT_OK(append_canon(log, 261, true));
    aol_close(log);
    test_rmrf(dir);
}

static const char ERASE_MARKER[] = "forget-me-zq81e7c4a9";

static bool erase_marker(void *ctx, const aol_record *rec)
{
    (void)ctx;
    return rec->payload_len == sizeof(ERASE_MARKER) - 1 &&
           memcmp(rec->payload, ERASE_MARKER, rec->payload_len) == 0;
}

/* The erased bytes are gone from every segment file, the finished ones and
 * the active one alike. */
TEST(erase_leaves_no_bytes)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_ALWAYS, 1024, &log, &info));
    uint64_t lsn = 0;
    for (int i = 0; i < 40; i++) {
        const char *p = i % 10 == 3 ? ERASE_MARKER : "other data";
        ASSERT_OK(aol_append(log, AOL_KV_PUT, "t", 1, 1000 + i, p, strlen(p), &lsn));
        ASSERT_OK(aol_wait(log, lsn)); /* one batch each, so segments rotate */
    }
    seg_image imgs[64];
    size_t n = images_load(dir, imgs, 64);
    size_t holding = 0;
    for (size_t k = 0; k < n; k++) {
        holding += memmem(imgs[k].data, imgs[k].len, ERASE_MARKER, strlen(ERASE_MARKER)) != NULL;
        free(imgs[k].data);
    }
    ASSERT_TRUE(n >= 2 && holding >= 2);
    uint64_t erased = 0;
    ASSERT_OK(aol_erase(log, erase_marker, NULL, &erased));
    ASSERT_EQ(erased, 4);
    ASSERT_OK(aol_append(log, AOL_KV_PUT, "t", 1, 2000, "after", 5, &lsn));
    ASSERT_EQ(lsn, 41);
    aol_close(log);
    n = images_load(dir, imgs, 64);
    holding = 0;
    for (size_t k = 0; k < n; k++) {
        holding += memmem(imgs[k].data, imgs[k].len, ERASE_MARKER, strlen(ERASE_MARKER)) != NULL;
        free(imgs[k].data);
    }
    ASSERT_EQ(holding, 0);
    ASSERT_OK(log_open(dir, STRATA_FSYNC_ALWAYS, 1024, &log, &info));
    ASSERT_EQ(info.last_lsn, 41);
    aol_close(log);
    test_rmrf(dir);
}

/* ---- failure handling -------------------------------------------------- */

/* A write that fails (here: the file size limit) makes the log refuse all
 * later writes, like Redis after an AOF error; the next open repairs it. */
TEST(write_failure_is_sticky)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_ALWAYS, 0, &log, &info));
    ASSERT_OK(append_canon(log, 1, true));
    aol_stats st;
    aol_stats_get(log, &st);

    struct rlimit old;
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = st.bytes + 10;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    uint8_t big[1000];
    memset(big, 'b', sizeof(big));
    uint64_t lsn = 0;
    int rc_append = aol_append(log, AOL_TURN, "t", 1, 0, big, sizeof(big), &lsn);
    int rc_wait = aol_wait(log, lsn);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_sig);
    ASSERT_OK(rc_append);
    ASSERT_EQ(rc_wait, STRATA_EIO);
    ASSERT_TRUE(strstr(strata_errmsg(), "read-only") != NULL);
    ASSERT_EQ(aol_append(log, AOL_TURN, "t", 1, 0, "x", 1, &lsn), STRATA_EIO);
    ASSERT_EQ(aol_sync(log), STRATA_EIO);
    ASSERT_EQ(aol_wait(log, 1), STRATA_OK); /* was durable before the failure */
    aol_close(log);

    ASSERT_OK(log_open(dir, STRATA_FSYNC_ALWAYS, 0, &log, &info));
    ASSERT_EQ(info.last_lsn, 1);
    ASSERT_EQ(info.bytes_truncated, 10); /* the partial write */
    ASSERT_OK(append_canon(log, 2, true));
    aol_close(log);
    test_rmrf(dir);
}

/* ---- allocation failures ------------------------------------------------ */

/* Fail the Nth allocation for every N along open / append / replay / close:
 * each step must fail cleanly (ASan reports any leak) and leave a log that
 * reopens with contiguous records. */
TEST(alloc_failures)
{
    slog_set_level(SLOG_ERROR);
    char *dir = fast_tmpdir();
    ASSERT_OK(build_log(dir, 30, 2048));
    long n;
    for (n = 0; n < 1000; n++) {
        strata_alloc_fail_after(n);
        aol *log = NULL;
        aol_open_info info;
        int rc = log_open(dir, STRATA_FSYNC_EVERYSEC, 2048, &log, &info);
        if (rc == STRATA_OK) {
            for (int k = 0; k < 3; k++) {
                aol_stats st;
                aol_stats_get(log, &st);
                rc = append_canon(log, st.last_lsn + 1, true);
                ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
            }
            replay_check c = {1, 0, true, false, 0};
            rc = aol_replay(log, 0, replay_cb, &c);
            ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
            ASSERT_TRUE(!c.bad);
            aol_close(log);
        } else {
            ASSERT_EQ(rc, STRATA_ENOMEM);
            ASSERT_TRUE(log == NULL);
        }
        unsigned long used = strata_alloc_count();
        strata_alloc_fail_after(-1);
        if (used <= (unsigned long)n) {
            break; /* this round injected nothing: every allocation was covered */
        }
    }
    ASSERT_TRUE(n > 5 && n < 1000);
    aol *log = NULL;
    aol_open_info info;
    ASSERT_OK(log_open(dir, STRATA_FSYNC_NO, 2048, &log, &info));
    ASSERT_EQ(info.bytes_truncated, 0);
    ASSERT_EQ(info.records, info.last_lsn);
    ASSERT_TRUE(info.last_lsn > 30);
    ASSERT_OK(replay_expect(log, 0, 1, info.last_lsn));
    aol_close(log);
    test_rmrf(dir);
    slog_set_level(SLOG_INFO);
}

TEST_MAIN(TEST_ENTRY(record_codec), TEST_ENTRY(append_bytes_match_encoder),
          TEST_ENTRY(roundtrip_always), TEST_ENTRY(roundtrip_everysec), TEST_ENTRY(roundtrip_no),
          TEST_ENTRY(bad_arguments), TEST_ENTRY(threads_always), TEST_ENTRY(threads_everysec),
          TEST_ENTRY(threads_no), TEST_ENTRY(threads_rotating),
          TEST_ENTRY(threads_everysec_rotating), TEST_ENTRY(throughput),
          TEST_ENTRY(everysec_thread_syncs), TEST_ENTRY(rotation),
          TEST_ENTRY(truncate_every_offset), TEST_ENTRY(truncate_every_offset_multi_segment),
          TEST_ENTRY(torn_segment_header), TEST_ENTRY(flipped_byte), TEST_ENTRY(lsn_gap),
          TEST_ENTRY(drop_segments), TEST_ENTRY(erase_records), TEST_ENTRY(erase_leaves_no_bytes), TEST_ENTRY(write_failure_is_sticky),
          TEST_ENTRY(alloc_failures))
