/*
 * test_repl.c - backups and replication below the HTTP layer: the log
 * shipping reader and batch checker (ship.c), the backup manifest, online
 * backup + verify + (point-in-time) restore with a writer running, the
 * scheduled snapshot archive, and a replica engine fed batches from a
 * primary's log (same LSNs, same answers, writes refused until promotion).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/ship.h"
#include "pipeline/pipeline.h"
#include "pipeline/repl.h"
#include "test.h"

static strata_db *open_db(const char *dir, int as_replica)
{
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dir;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.background = 0;
    cfg.snapshot_every_s = 0;
    cfg.embedder = "hash";
    cfg.replica = as_replica;
    strata_db *db = NULL;
    if (strata_db_open(&cfg, &db, NULL) != STRATA_OK) {
        fprintf(stderr, "open %s failed: %s\n", dir, strata_errmsg());
    }
    return db;
}

static uint64_t last_lsn(strata_db *db)
{
    strata_db_stats st;
    strata_db_stats_get(db, &st);
    return st.log_last_lsn;
}

static int turn(strata_db *db, const char *sid, const char *text)
{
    strata_turn_ack ack;
    return strata_turn_append(db, "default", sid, "u1", STRATA_ROLE_USER, text, strlen(text),
                              &ack);
}

/* ---- ship.c ------------------------------------------------------------------ */

typedef struct collect {
    uint64_t lsns[4096];
    size_t n;
} collect;

static int collect_cb(void *ctx, const aol_record *rec)
{
    collect *c = ctx;
    if (c->n < 4096) {
        c->lsns[c->n++] = rec->lsn;
    }
    return STRATA_OK;
}

TEST(ship_parse_checks_every_record)
{
    sbuf b;
    sbuf_init(&b, 1 << 20);
    for (uint64_t lsn = 5; lsn <= 7; lsn++) {
        ASSERT_OK(aol_record_encode(&b, lsn, 1000, AOL_NOOP, "t", 1, "abc", 3));
    }
    collect c = {{0}, 0};
    ASSERT_OK(ship_parse((const uint8_t *)b.data, b.len, 4, collect_cb, &c));
    ASSERT_EQ(c.n, 3);
    ASSERT_EQ(c.lsns[2], 7);
    ASSERT_OK(ship_parse((const uint8_t *)"", 0, 4, collect_cb, &c)); /* nothing new */
    /* the first record must follow `after` */
    c.n = 0;
    ASSERT_EQ(ship_parse((const uint8_t *)b.data, b.len, 5, collect_cb, &c), STRATA_EPROTO);
    ASSERT_EQ(c.n, 0);
    /* a cut record */
    c.n = 0;
    ASSERT_EQ(ship_parse((const uint8_t *)b.data, b.len - 1, 4, collect_cb, &c), STRATA_EPROTO);
    ASSERT_EQ(c.n, 2);
    /* a flipped bit fails the CRC: nothing from it on is delivered */
    size_t rec_len = b.len / 3;
    b.data[rec_len + 20] ^= 1; /* the second record's timestamp */
    c.n = 0;
    ASSERT_EQ(ship_parse((const uint8_t *)b.data, b.len, 4, collect_cb, &c), STRATA_EPROTO);
    ASSERT_EQ(c.n, 1);
    /* LSNs going backwards */
    sbuf_reset(&b);
    ASSERT_OK(aol_record_encode(&b, 9, 1000, AOL_NOOP, "t", 1, "", 0));
    ASSERT_OK(aol_record_encode(&b, 8, 1000, AOL_NOOP, "t", 1, "", 0));
    c.n = 0;
    ASSERT_EQ(ship_parse((const uint8_t *)b.data, b.len, 0, collect_cb, &c), STRATA_EPROTO);
    ASSERT_EQ(c.n, 1);
    sbuf_free(&b);
}

static int open_log(const char *dir, aol **out)
{
    aol_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.fsync = STRATA_FSYNC_NO;
    o.segment_max_bytes = 300; /* a segment every few records */
    return aol_open(&o, out, NULL);
}

TEST(ship_read_across_segments_with_cursor)
{
    char *dir = test_tmpdir();
    aol *log = NULL;
    ASSERT_OK(open_log(dir, &log));
    char payload[100];
    memset(payload, 'p', sizeof(payload));
    uint64_t lsn = 0;
    for (int i = 0; i < 60; i++) {
        ASSERT_OK(aol_append(log, AOL_NOOP, "tenant", 6, 1000 + i, payload, (size_t)(i % 90),
                             &lsn));
        ASSERT_OK(aol_wait(log, lsn)); /* written one by one: the segments rotate */
    }
    ASSERT_OK(aol_sync(log));
    ASSERT_EQ(lsn, 60);
    aol_stats st;
    aol_stats_get(log, &st);
    ASSERT_TRUE(st.segments > 5);

    /* everything at once */
    sbuf out;
    sbuf_init(&out, 1 << 24);
    ship_read_info info;
    ASSERT_OK(ship_read(dir, 0, 60, 1 << 20, &out, NULL, &info));
    ASSERT_EQ(info.records, 60);
    ASSERT_EQ(info.last_lsn, 60);
    ASSERT_EQ(info.first_lsn, 1);
    collect c = {{0}, 0};
    ASSERT_OK(ship_parse((const uint8_t *)out.data, out.len, 0, collect_cb, &c));
    ASSERT_EQ(c.n, 60);

    /* in small batches, each continuing from the cursor; upto caps the end */
    ship_cursor cur = {0, 0, 0};
    uint64_t after = 0;
    size_t batches = 0;
    c.n = 0;
    while (after < 55) {
        sbuf_reset(&out);
        ASSERT_OK(ship_read(dir, after, 55, 200, &out, &cur, &info));
        ASSERT_TRUE(info.records >= 1);
        ASSERT_TRUE(out.len <= 200 || info.records == 1);
        ASSERT_OK(ship_parse((const uint8_t *)out.data, out.len, after, collect_cb, &c));
        after = info.last_lsn;
        ASSERT_EQ(cur.next_lsn, after + 1);
        batches++;
    }
    ASSERT_EQ(after, 55);
    ASSERT_EQ(c.n, 55);
    for (size_t i = 0; i < c.n; i++) {
        ASSERT_EQ(c.lsns[i], i + 1);
    }
    ASSERT_TRUE(batches > 10);
    /* nothing past upto, and nothing at all when caught up */
    sbuf_reset(&out);
    ASSERT_OK(ship_read(dir, 55, 55, 1 << 20, &out, &cur, &info));
    ASSERT_EQ(out.len, 0);

    /* a stale cursor (wrong offset) is noticed and costs only a scan */
    cur.off += 7;
    sbuf_reset(&out);
    ASSERT_OK(ship_read(dir, 55, 60, 1 << 20, &out, &cur, &info));
    ASSERT_EQ(info.records, 5);
    c.n = 0;
    ASSERT_OK(ship_parse((const uint8_t *)out.data, out.len, 55, collect_cb, &c));
    ASSERT_EQ(c.lsns[0], 56);
    aol_close(log);

    /* a torn tail of the last segment: the complete records still come */
    uint64_t *bases = NULL;
    size_t n = 0;
    ASSERT_OK(aol_dir_segments(dir, &bases, &n));
    char path[512];
    snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", dir, bases[n - 1]);
    FILE *f = fopen(path, "ab");
    ASSERT_TRUE(f != NULL);
    fwrite("\x40\x00\x00\x00garbage", 1, 11, f);
    fclose(f);
    sbuf_reset(&out);
    ASSERT_OK(ship_read(dir, 50, 61, 1 << 20, &out, NULL, &info));
    ASSERT_EQ(info.last_lsn, 60);

    /* the first segment dropped: a reader that needs it is told so */
    snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", dir, bases[0]);
    ASSERT_OK(unlink(path));
    sbuf_reset(&out);
    ASSERT_EQ(ship_read(dir, 0, 60, 1 << 20, &out, NULL, &info), STRATA_ENOTFOUND);
    ASSERT_EQ(info.first_lsn, bases[1]);
    ASSERT_OK(ship_read(dir, bases[1] - 1, 60, 1 << 20, &out, NULL, &info));
    ASSERT_EQ(info.last_lsn, 60);
    strata_free(bases);
    sbuf_free(&out);
    test_rmrf(dir);
}

/* ---- manifest ---------------------------------------------------------------- */

TEST(manifest_roundtrip_and_rejects)
{
    backup_manifest m;
    memset(&m, 0, sizeof(m));
    m.lsn = 42;
    m.last_lsn = 50;
    m.created_ms = 1700000000123;
    m.buffer_turns = 20;
    m.consolidate_every = 10;
    m.l2_model = strata_strdup("hash-v1-384");
    backup_file files[] = {{(char *)"snap/l2-00000000000000000042.snap", 1000, 0xdeadbeef},
                           {(char *)"log/00000000000000000001.seg", 77, 1},
                           {(char *)"l2.model", 12, 0}};
    m.files = files;
    m.n_files = 3;
    m.bytes = 1089;
    sbuf j;
    sbuf_init(&j, 1 << 20);
    ASSERT_OK(backup_manifest_json(&m, &j));
    backup_manifest p;
    ASSERT_OK(backup_manifest_parse(j.data, j.len, &p));
    ASSERT_EQ(p.lsn, 42);
    ASSERT_EQ(p.last_lsn, 50);
    ASSERT_EQ(p.created_ms, 1700000000123);
    ASSERT_EQ(p.buffer_turns, 20);
    ASSERT_STREQ(p.l2_model, "hash-v1-384");
    ASSERT_EQ(p.n_files, 3);
    ASSERT_STREQ(p.files[0].name, files[0].name);
    ASSERT_EQ(p.files[0].crc32c, 0xdeadbeef);
    ASSERT_EQ(p.bytes, 1089);
    backup_manifest_free(&p);
    strata_free(m.l2_model);

    static const char *const bad[] = {
        "",
        "[]",
        "{\"format\":\"other\"}",
        /* a name out of the backup */
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[{\"name\":\"../etc/passwd\",\"size\":1,\"crc32c\":\"00000000\"}],\"bytes\":1}",
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[{\"name\":\"/log/00000000000000000001.seg\",\"size\":1,\"crc32c\":\"00000000\"}"
        "],\"bytes\":1}",
        /* bytes not the sum */
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[{\"name\":\"l2.model\",\"size\":1,\"crc32c\":\"00000000\"}],\"bytes\":2}",
        /* a file twice */
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[{\"name\":\"l2.model\",\"size\":1,\"crc32c\":\"00000000\"},"
        "{\"name\":\"l2.model\",\"size\":1,\"crc32c\":\"00000000\"}],\"bytes\":2}",
        /* a bad CRC text, a negative size, a future version, last_lsn < lsn */
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[{\"name\":\"l2.model\",\"size\":1,\"crc32c\":\"xyz\"}],\"bytes\":1}",
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[{\"name\":\"l2.model\",\"size\":-1,\"crc32c\":\"00000000\"}],\"bytes\":-1}",
        "{\"format\":\"strata-backup\",\"version\":2,\"lsn\":1,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[],\"bytes\":0}",
        "{\"format\":\"strata-backup\",\"version\":1,\"lsn\":5,\"last_lsn\":1,\"created_ms\":0,"
        "\"files\":[],\"bytes\":0}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = backup_manifest_parse(bad[i], strlen(bad[i]), &p);
        if (rc != STRATA_EINVAL) {
            fprintf(stderr, "  accepted bad manifest %zu\n", i);
        }
        ASSERT_EQ(rc, STRATA_EINVAL);
        ASSERT_EQ(p.n_files, 0);
    }
    sbuf_free(&j);
}

/* ---- backup and restore ------------------------------------------------------ */

typedef struct writer_arg {
    strata_db *db;
    atomic_bool stop;
    uint64_t acked_lsn[20000];       /* LSN of each acknowledged turn, in order */
    atomic_size_t n;                 /* read by the main thread while it runs */
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    while (!atomic_load(&w->stop) && atomic_load(&w->n) < 20000) {
        size_t i = atomic_load(&w->n);
        char text[32];
        snprintf(text, sizeof(text), "w%zu", i);
        strata_turn_ack ack;
        if (strata_turn_append(w->db, "default", "busy", "u9", STRATA_ROLE_USER, text,
                               strlen(text), &ack) != STRATA_OK) {
            break;
        }
        w->acked_lsn[i] = ack.lsn;
        atomic_store(&w->n, i + 1);
    }
    return NULL;
}

static void corrupt_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    if (f == NULL) {
        return;
    }
    fseek(f, off, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
}

TEST(backup_under_writes_verify_restore)
{
    char *root = test_tmpdir();
    char dir[512], bk[512], r1[512], r2[512], path[700];
    snprintf(dir, sizeof(dir), "%s/data", root);
    snprintf(bk, sizeof(bk), "%s/bk", root);
    snprintf(r1, sizeof(r1), "%s/r1", root);
    snprintf(r2, sizeof(r2), "%s/r2", root);
    strata_db *db = open_db(dir, 0);
    ASSERT_TRUE(db != NULL);
    ASSERT_OK(turn(db, "s1", "before the backup"));
    strata_memory *mem = NULL;
    ASSERT_OK(strata_memory_add(db, "default", "u1", STRATA_MEM_FACT, "u1 lives in Lyon", 16,
                                0.5f, NULL, 0, &mem));
    ASSERT_OK(strata_graph_node_put(db, "default", "user:u1", "User", "{\"a\":1}", NULL));
    ASSERT_OK(strata_kv_put(db, "default", STRATA_TIER_L3, "k", "{\"v\":1}", 7));

    writer_arg *w = calloc(1, sizeof(*w));
    w->db = db;
    pthread_t t;
    ASSERT_OK(pthread_create(&t, NULL, writer_main, w));
    while (atomic_load(&w->n) < 50) {
        usleep(1000);
    }
    ASSERT_EQ(backup_create(db, "relative/dir", NULL), STRATA_EINVAL);
    backup_manifest m;
    ASSERT_OK(backup_create(db, bk, &m));
    size_t acked_before = 0;
    atomic_store(&w->stop, true);
    pthread_join(t, NULL);
    /* every turn acknowledged before the snapshot LSN is covered */
    for (size_t i = 0; i < w->n; i++) {
        if (w->acked_lsn[i] <= m.lsn) {
            acked_before++;
        }
    }
    ASSERT_TRUE(acked_before >= 50);
    ASSERT_TRUE(m.last_lsn >= m.lsn);
    ASSERT_EQ(backup_create(db, bk, NULL), STRATA_EEXIST);
    ASSERT_OK(backup_verify(bk, NULL));

    /* restore everything the backup holds */
    uint64_t records = 0;
    ASSERT_OK(backup_restore(bk, r1, false, 0, &records));
    strata_db *r = open_db(r1, 0);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(last_lsn(r), m.last_lsn);
    strata_session *s = NULL;
    ASSERT_OK(strata_session_get(r, "default", "busy", &s));
    ASSERT_TRUE(s->turn_count >= acked_before);
    strata_session_free(s);
    ASSERT_OK(strata_session_get(r, "default", "s1", &s));
    ASSERT_STREQ(s->turns[0].content, "before the backup");
    strata_session_free(s);
    strata_memory *got = NULL;
    ASSERT_OK(strata_memory_get(r, "default", "u1", mem->id, &got));
    ASSERT_STREQ(got->content, "u1 lives in Lyon");
    strata_memory_free(got);
    char *json = NULL;
    ASSERT_OK(strata_graph_node_get(r, "default", "user:u1", 0, &json));
    ASSERT_TRUE(strstr(json, "\"User\"") != NULL);
    strata_free(json);
    size_t vl = 0;
    ASSERT_OK(strata_kv_get(r, "default", STRATA_TIER_L3, "k", &json, &vl));
    strata_free(json);
    strata_db_close(r);
    ASSERT_EQ(backup_restore(bk, r1, false, 0, NULL), STRATA_EEXIST); /* not empty */

    /* damage: a flipped byte, a missing file, a stray segment, no manifest */
    snprintf(path, sizeof(path), "%s/%s", bk, m.files[0].name);
    corrupt_byte(path, 70);
    ASSERT_EQ(backup_verify(bk, NULL), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), m.files[0].name) != NULL);
    ASSERT_EQ(backup_restore(bk, r2, false, 0, NULL), STRATA_ECORRUPT);
    corrupt_byte(path, 70); /* flip it back */
    ASSERT_OK(backup_verify(bk, NULL));
    char moved[720];
    snprintf(moved, sizeof(moved), "%s.away", path);
    ASSERT_OK(rename(path, moved));
    ASSERT_EQ(backup_verify(bk, NULL), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "missing") != NULL);
    ASSERT_OK(rename(moved, path));
    snprintf(path, sizeof(path), "%s/log/99999999999999999999.seg", bk);
    FILE *f = fopen(path, "w");
    fclose(f);
    ASSERT_EQ(backup_verify(bk, NULL), STRATA_ECORRUPT);
    ASSERT_OK(unlink(path));
    snprintf(path, sizeof(path), "%s/MANIFEST.json", bk);
    ASSERT_OK(unlink(path));
    ASSERT_EQ(backup_verify(bk, NULL), STRATA_ENOTFOUND);
    backup_manifest_free(&m);
    strata_memory_free(mem);
    strata_db_close(db);
    free(w);
    test_rmrf(root);
}

TEST(point_in_time_restore_from_backup)
{
    char *root = test_tmpdir();
    char dir[512], bk[512], r1[512];
    snprintf(dir, sizeof(dir), "%s/data", root);
    snprintf(bk, sizeof(bk), "%s/bk", root);
    snprintf(r1, sizeof(r1), "%s/r1", root);
    clock_set_fake_ms(1700000000000);
    strata_db *db = open_db(dir, 0);
    ASSERT_TRUE(db != NULL);
    for (int i = 0; i < 5; i++) {
        ASSERT_OK(turn(db, "s1", "early"));
    }
    /* a snapshot between the batches: the restore must not start from it */
    ASSERT_OK(strata_db_snapshot(db));
    clock_set_fake_ms(1700000100000);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(turn(db, "s1", "late"));
    }
    ASSERT_OK(strata_kv_put(db, "default", STRATA_TIER_L1, "late", "1", 1));
    backup_manifest m;
    ASSERT_OK(backup_create(db, bk, &m));
    backup_manifest_free(&m);
    strata_db_close(db);
    clock_set_fake_ms(0);
    ASSERT_OK(backup_restore(bk, r1, true, 1700000050, NULL));
    strata_db *r = open_db(r1, 0);
    ASSERT_TRUE(r != NULL);
    strata_session *s = NULL;
    ASSERT_OK(strata_session_get(r, "default", "s1", &s));
    ASSERT_EQ(s->turn_count, 5);
    strata_session_free(s);
    char *v = NULL;
    size_t vl = 0;
    ASSERT_EQ(strata_kv_get(r, "default", STRATA_TIER_L1, "late", &v, &vl), STRATA_ENOTFOUND);
    strata_db_close(r);
    test_rmrf(root);
}

TEST(archive_keeps_retained_sets)
{
    char *dir = test_tmpdir();
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dir;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.background = 0;
    cfg.embedder = "hash";
    cfg.snapshot_archive_every_s = 10;
    cfg.snapshot_retain = 2;
    strata_db *db = NULL;
    ASSERT_OK(strata_db_open(&cfg, &db, NULL));
    int64_t t = 1700000000000;
    clock_set_fake_ms(t);
    snapshot_stats ss;
    for (int round = 0; round < 4; round++) {
        ASSERT_OK(turn(db, "s1", "x"));
        db_archive_tick(db);
        db_snapshot_stats(db, &ss);
        ASSERT_EQ(ss.archives_taken, (uint64_t)round + 1);
        ASSERT_EQ(ss.last_lsn, last_lsn(db));
        ASSERT_OK(turn(db, "s1", "y"));
        db_archive_tick(db); /* not due yet */
        db_snapshot_stats(db, &ss);
        ASSERT_EQ(ss.archives_taken, (uint64_t)round + 1);
        t += 11000;
        clock_set_fake_ms(t);
    }
    clock_set_fake_ms(0);
    ASSERT_EQ(ss.archived_sets, 2);
    /* the newest archived set is complete: every tier, hard-linked */
    char path[600];
    uint64_t lsn = ss.last_lsn;
    static const char *const tiers[] = {"l1", "kv", "jobs", "l2", "l3", "profile", "keys"};
    for (size_t i = 0; i < 7; i++) {
        snprintf(path, sizeof(path), "%s/snap/archive/%s-%020" PRIu64 ".snap", dir, tiers[i],
                 lsn);
        struct stat st;
        ASSERT_OK(stat(path, &st));
    }
    /* dropped (the right to be forgotten), then archived again at once */
    ASSERT_OK(db_archive_drop(db));
    db_snapshot_stats(db, &ss);
    ASSERT_EQ(ss.archived_sets, 0);
    db_archive_tick(db);
    db_snapshot_stats(db, &ss);
    ASSERT_EQ(ss.archived_sets, 1);
    ASSERT_EQ(ss.archives_taken, 5);
    strata_db_close(db);
    test_rmrf(dir);
}

/* The log before a time was dropped by retention and the rolling snapshots
 * are newer than that time: only the archived set can be the base. */
TEST(point_in_time_restore_needs_the_archive)
{
    char *root = test_tmpdir();
    char dir[512], bk[512], r1[512], r2[512];
    snprintf(dir, sizeof(dir), "%s/data", root);
    snprintf(bk, sizeof(bk), "%s/bk", root);
    snprintf(r1, sizeof(r1), "%s/r1", root);
    snprintf(r2, sizeof(r2), "%s/r2", root);
    int64_t t0 = 1700000000000;
    clock_set_fake_ms(t0);
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dir;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.background = 0;
    cfg.embedder = "hash";
    cfg.segment_max_bytes = 512;
    cfg.retention_s = 1000;
    cfg.buffer_turns = 100;
    cfg.snapshot_archive_every_s = 3600;
    strata_db *db = NULL;
    ASSERT_OK(strata_db_open(&cfg, &db, NULL));
    for (int i = 0; i < 30; i++) {
        ASSERT_OK(turn(db, "s", "batch A"));
    }
    clock_set_fake_ms(t0 + 5000000);
    for (int i = 0; i < 5; i++) {
        ASSERT_OK(turn(db, "s", "batch B1"));
    }
    db_archive_tick(db); /* archived set S1; batch A's segments dropped */
    strata_db_stats st;
    strata_db_stats_get(db, &st);
    ASSERT_TRUE(st.segments_dropped > 0);
    clock_set_fake_ms(t0 + 5010000);
    for (int i = 0; i < 5; i++) {
        ASSERT_OK(turn(db, "s", "batch B2"));
    }
    ASSERT_OK(strata_db_snapshot(db)); /* the two rolling sets move past B2 */
    ASSERT_OK(turn(db, "s2", "later"));
    ASSERT_OK(strata_db_snapshot(db));
    backup_manifest m;
    ASSERT_OK(backup_create(db, bk, &m));
    backup_manifest_free(&m);
    strata_db_close(db);
    clock_set_fake_ms(0);
    int64_t at = (t0 + 5005000) / 1000;
    ASSERT_OK(strata_restore(dir, r1, at, NULL)); /* from the data dir's archive */
    ASSERT_OK(backup_restore(bk, r2, true, at, NULL)); /* from the backup's copy of it */
    const char *dirs[] = {r1, r2};
    for (int k = 0; k < 2; k++) {
        strata_config rc;
        strata_config_init(&rc);
        rc.data_dir = dirs[k];
        rc.background = 0;
        rc.embedder = "hash";
        rc.buffer_turns = 100;
        strata_db *r = NULL;
        ASSERT_OK(strata_db_open(&rc, &r, NULL));
        strata_session *s = NULL;
        ASSERT_OK(strata_session_get(r, "default", "s", &s));
        ASSERT_EQ(s->turn_count, 35);
        /* strata_restore replays with the default buffer (20 turns), the
         * backup with the source's own (100): all 35 are there */
        ASSERT_EQ(s->n_turns, k == 0 ? 20 : 35);
        ASSERT_STREQ(s->turns[s->n_turns - 16].content, "batch A");
        ASSERT_STREQ(s->turns[s->n_turns - 1].content, "batch B1");
        strata_session_free(s);
        strata_db_close(r);
    }
    test_rmrf(root);
}

/* ---- a replica fed from a primary's log ---------------------------------------- */

static int ship_all(strata_db *p, strata_db *r, size_t max_bytes)
{
    for (int i = 0; i < 10000; i++) {
        sbuf b;
        sbuf_init(&b, 64u << 20);
        repl_log_info info;
        int rc = repl_log_read(p, last_lsn(r), max_bytes, 0, &b, &info);
        if (rc == STRATA_OK && b.len > 0) {
            rc = replica_apply_batch(r, (const uint8_t *)b.data, b.len, NULL, NULL);
        }
        size_t len = b.len;
        sbuf_free(&b);
        if (rc != STRATA_OK || len == 0) {
            return rc;
        }
    }
    return STRATA_EIO;
}

TEST(replica_follows_refuses_writes_and_promotes)
{
    char *root = test_tmpdir();
    char pd[512], rd[512];
    snprintf(pd, sizeof(pd), "%s/p", root);
    snprintf(rd, sizeof(rd), "%s/r", root);
    strata_db *p = open_db(pd, 0);
    strata_db *r = open_db(rd, 1);
    ASSERT_TRUE(p != NULL && r != NULL);
    ASSERT_EQ(strata_db_is_replica(r), 1);
    for (int i = 0; i < 30; i++) {
        ASSERT_OK(turn(p, "s1", "hello there"));
    }
    strata_memory *mem = NULL;
    ASSERT_OK(strata_memory_add(p, "default", "u1", STRATA_MEM_PREFERENCE, "likes tea", 9, 0.4f,
                                NULL, 0, &mem));
    ASSERT_OK(strata_graph_node_put(p, "default", "topic:tea", "Topic", "{}", NULL));
    ASSERT_OK(ship_all(p, r, 300)); /* small batches */
    ASSERT_EQ(last_lsn(r), last_lsn(p));
    strata_session *s = NULL;
    ASSERT_OK(strata_session_get(r, "default", "s1", &s));
    ASSERT_EQ(s->turn_count, 30);
    strata_session_free(s);
    strata_memory *got = NULL;
    ASSERT_OK(strata_memory_get(r, "default", "u1", mem->id, &got)); /* same id: same LSN */
    strata_memory_free(got);
    char *json = NULL;
    ASSERT_OK(strata_graph_node_get(r, "default", "topic:tea", 0, &json));
    strata_free(json);

    /* writes refused on the replica, nothing logged */
    uint64_t before = last_lsn(r);
    ASSERT_EQ(turn(r, "s2", "nope"), STRATA_EUNSUPPORTED);
    ASSERT_EQ(strata_kv_put(r, "default", STRATA_TIER_L1, "k", "1", 1), STRATA_EUNSUPPORTED);
    ASSERT_EQ(last_lsn(r), before);

    /* a bad batch applies nothing */
    sbuf b;
    sbuf_init(&b, 1 << 20);
    ASSERT_OK(aol_record_encode(&b, before + 1, 1000, AOL_NOOP, "default", 7, "", 0));
    b.data[10] ^= 1;
    ASSERT_EQ(replica_apply_batch(r, (const uint8_t *)b.data, b.len, NULL, NULL), STRATA_EPROTO);
    ASSERT_EQ(last_lsn(r), before);
    /* a gap keeps LSNs with no-ops */
    sbuf_reset(&b);
    ASSERT_OK(aol_record_encode(&b, before + 3, 1000, AOL_NOOP, "default", 7, "", 0));
    uint64_t applied = 0, last = 0;
    ASSERT_OK(replica_apply_batch(r, (const uint8_t *)b.data, b.len, &applied, &last));
    ASSERT_EQ(applied, 1);
    ASSERT_EQ(last, before + 3);
    ASSERT_EQ(last_lsn(r), before + 3);
    sbuf_free(&b);

    /* long poll: nothing new, the read waits and comes back empty */
    sbuf_init(&b, 1 << 20);
    repl_log_info info;
    uint64_t t0 = clock_mono_ns();
    ASSERT_OK(repl_log_read(p, last_lsn(p), 1 << 20, 50, &b, &info));
    ASSERT_EQ(b.len, 0);
    ASSERT_TRUE(clock_mono_ns() - t0 >= 40u * 1000000u);
    ASSERT_EQ(info.primary_lsn, last_lsn(p));
    sbuf_free(&b);

    ASSERT_OK(strata_db_promote(r));
    ASSERT_EQ(strata_db_is_replica(r), 0);
    ASSERT_EQ(strata_db_promote(r), STRATA_ECONFLICT);
    ASSERT_OK(turn(r, "s2", "now a primary"));
    ASSERT_EQ(last_lsn(r), before + 4);
    strata_memory_free(mem);
    strata_db_close(p);
    strata_db_close(r);
    test_rmrf(root);
}

TEST_MAIN(TEST_ENTRY(ship_parse_checks_every_record),
          TEST_ENTRY(ship_read_across_segments_with_cursor),
          TEST_ENTRY(manifest_roundtrip_and_rejects),
          TEST_ENTRY(backup_under_writes_verify_restore),
          TEST_ENTRY(point_in_time_restore_from_backup),
          TEST_ENTRY(archive_keeps_retained_sets),
          TEST_ENTRY(point_in_time_restore_needs_the_archive),
          TEST_ENTRY(replica_follows_refuses_writes_and_promotes))
