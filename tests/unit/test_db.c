/*
 * test_db.c - the engine through its public API (strata.h): the write path
 * (log, apply, acknowledge), recovery from the log alone and from snapshots,
 * consolidation triggers and jobs, idle expiry, the generic store, and
 * rejection of bad input without any change to the log.
 */
#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include "core/core.h"
#include "strata/strata.h"
#include "test.h"

static strata_db *open_db(const char *dir, int background)
{
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dir;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.background = background;
    cfg.snapshot_every_s = 0;
    strata_db *db = NULL;
    if (strata_db_open(&cfg, &db, NULL) != STRATA_OK) {
        fprintf(stderr, "open failed: %s\n", strata_errmsg());
    }
    return db;
}

static uint64_t last_lsn(strata_db *db)
{
    strata_db_stats st;
    strata_db_stats_get(db, &st);
    return st.log_last_lsn;
}

static void remove_snapshots(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -f '%s'/snap/*.snap", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "rm failed\n");
    }
}

static int append(strata_db *db, const char *sid, const char *uid, const char *text,
                  strata_turn_ack *ack)
{
    return strata_turn_append(db, "default", sid, uid, STRATA_ROLE_USER, text, strlen(text), ack);
}

TEST(append_get_and_recover)
{
    char *dir = test_tmpdir();
    for (int pass = 0; pass < 2; pass++) {
        strata_db *db = open_db(dir, 0);
        ASSERT_TRUE(db != NULL);
        strata_turn_ack ack;
        for (int i = 0; i < 25; i++) {
            char text[32];
            snprintf(text, sizeof(text), "turn %d", i);
            ASSERT_OK(append(db, "s1", "u1", text, &ack));
            ASSERT_EQ(ack.turn_count, i + 1);
        }
        ASSERT_OK(strata_session_set_stage(db, "default", "s1", "onboarding", NULL));
        ASSERT_OK(strata_dirty_add(db, "default", "u1", "role"));
        ASSERT_OK(strata_dirty_add(db, "default", "u1", "employer"));
        ASSERT_OK(strata_kv_put(db, "default", STRATA_TIER_L2, "k", "{\"a\":1}", 7));
        strata_db_close(db);
        if (pass == 1) {
            remove_snapshots(dir); /* recovery from the log alone */
        }
        db = open_db(dir, 0);
        ASSERT_TRUE(db != NULL);
        strata_session *s = NULL;
        ASSERT_OK(strata_session_get(db, "default", "s1", &s));
        ASSERT_EQ(s->turn_count, 25);
        ASSERT_EQ(s->n_turns, 20);
        ASSERT_STREQ(s->turns[0].content, "turn 5");
        ASSERT_STREQ(s->turns[19].content, "turn 24");
        ASSERT_STREQ(s->current_stage, "onboarding");
        ASSERT_STREQ(s->user_id, "u1");
        strata_session_free(s);
        strata_strlist *l = NULL;
        ASSERT_OK(strata_dirty_get(db, "default", "u1", &l));
        ASSERT_EQ(l->n, 2);
        ASSERT_STREQ(l->items[0], "employer");
        strata_strlist_free(l);
        char *v = NULL;
        size_t n = 0;
        ASSERT_OK(strata_kv_get(db, "default", STRATA_TIER_L2, "k", &v, &n));
        ASSERT_STREQ(v, "{\"a\":1}");
        strata_free(v);
        ASSERT_EQ(strata_kv_get(db, "default", STRATA_TIER_L1, "k", &v, &n), STRATA_ENOTFOUND);
        strata_db_close(db);
        test_rmrf(dir);
        dir = test_tmpdir();
    }
    test_rmrf(dir);
}

TEST(bad_input_changes_nothing)
{
    char *dir = test_tmpdir();
    strata_db *db = open_db(dir, 0);
    strata_turn_ack ack;
    ASSERT_OK(append(db, "s1", "u1", "hello", &ack));
    uint64_t before = last_lsn(db);
    ASSERT_EQ(append(db, "s1", "u2", "other user", &ack), STRATA_ECONFLICT);
    ASSERT_EQ(append(db, "bad id", "u1", "x", &ack), STRATA_EINVAL);
    ASSERT_EQ(append(db, "s1", "u/1", "x", &ack), STRATA_EINVAL);
    ASSERT_EQ(append(db, "s1", "u1", "", &ack), STRATA_EINVAL);
    ASSERT_EQ(append(db, "s1", "u1", "bad \xff utf8", &ack), STRATA_EINVAL);
    ASSERT_EQ(strata_turn_append(db, "default", "s1", "u1", (strata_role)9, "x", 1, &ack),
              STRATA_EINVAL);
    char *big = malloc(70000);
    memset(big, 'a', 70000);
    ASSERT_EQ(strata_turn_append(db, "default", "s1", "u1", STRATA_ROLE_USER, big, 70000, &ack),
              STRATA_ETOOBIG);
    free(big);
    ASSERT_EQ(strata_session_set_stage(db, "default", "nope", "x", NULL), STRATA_ENOTFOUND);
    char job[STRATA_JOB_ID_LEN];
    ASSERT_EQ(strata_session_end(db, "default", "nope", job), STRATA_ENOTFOUND);
    ASSERT_EQ(strata_kv_put(db, "default", STRATA_TIER_L1, "a/b", "1", 1), STRATA_EINVAL);
    ASSERT_EQ(strata_kv_delete(db, "default", STRATA_TIER_L1, "absent"), STRATA_ENOTFOUND);
    ASSERT_EQ(last_lsn(db), before);
    /* Tenants do not see each other. */
    strata_session *s = NULL;
    ASSERT_EQ(strata_session_get(db, "other", "s1", &s), STRATA_ENOTFOUND);
    strata_db_close(db);
    test_rmrf(dir);
}

TEST(consolidation_jobs_queue_and_run)
{
    char *dir = test_tmpdir();
    strata_db *db = open_db(dir, 0);
    strata_turn_ack ack;
    char first_job[STRATA_JOB_ID_LEN] = "";
    for (int i = 1; i <= 23; i++) {
        ASSERT_OK(append(db, "s1", "u1", "text", &ack));
        ASSERT_EQ(ack.consolidation_queued, i % 10 == 0);
        if (i == 10) {
            memcpy(first_job, ack.job_id, sizeof(first_job));
        }
    }
    strata_job_info info;
    ASSERT_OK(strata_job_get(db, "default", first_job, &info));
    ASSERT_STREQ(info.kind, "consolidate");
    ASSERT_EQ(info.status, STRATA_JOB_QUEUED);
    ASSERT_EQ(strata_job_get(db, "other", first_job, &info), STRATA_ENOTFOUND);
    char end_job[STRATA_JOB_ID_LEN];
    ASSERT_OK(strata_session_end(db, "default", "s1", end_job));
    strata_db_close(db);

    /* After a restart with workers, the queued jobs run to completion. */
    db = open_db(dir, 1);
    ASSERT_TRUE(db != NULL);
    for (int tries = 0; tries < 200; tries++) {
        ASSERT_OK(strata_job_get(db, "default", end_job, &info));
        if (info.status == STRATA_JOB_DONE) {
            break;
        }
        usleep(10000);
    }
    ASSERT_EQ(info.status, STRATA_JOB_DONE);
    ASSERT_OK(strata_job_get(db, "default", first_job, &info));
    ASSERT_EQ(info.status, STRATA_JOB_DONE);
    strata_db_close(db);
    /* And they stay done (not re-run) after another restart. */
    db = open_db(dir, 0);
    ASSERT_OK(strata_job_get(db, "default", first_job, &info));
    ASSERT_EQ(info.status, STRATA_JOB_DONE);
    strata_db_close(db);
    test_rmrf(dir);
}

TEST(idle_sessions_expire)
{
    char *dir = test_tmpdir();
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dir;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.session_ttl_s = 60;
    cfg.snapshot_every_s = 0;
    strata_db *db = NULL;
    ASSERT_OK(strata_db_open(&cfg, &db, NULL));
    strata_turn_ack ack;
    ASSERT_OK(append(db, "idle", "u1", "hello", &ack));
    int64_t now = clock_now_ms();
    clock_set_fake_ms(now + 120 * 1000);
    ASSERT_OK(append(db, "fresh", "u1", "hello", &ack));
    strata_session *s = NULL;
    int rc = STRATA_OK;
    for (int tries = 0; tries < 300 && rc == STRATA_OK; tries++) {
        strata_session_free(s);
        s = NULL;
        rc = strata_session_get(db, "default", "idle", &s);
        usleep(10000);
    }
    strata_session_free(s);
    clock_set_fake_ms(0);
    ASSERT_EQ(rc, STRATA_ENOTFOUND);
    ASSERT_OK(strata_session_get(db, "default", "fresh", &s));
    strata_session_free(s);
    strata_db_stats st;
    strata_db_stats_get(db, &st);
    ASSERT_EQ(st.sessions_expired, 1);
    strata_db_close(db);
    /* The expiry is in the log: it stays expired after recovery. */
    remove_snapshots(dir);
    cfg.background = 0;
    ASSERT_OK(strata_db_open(&cfg, &db, NULL));
    ASSERT_EQ(strata_session_get(db, "default", "idle", &s), STRATA_ENOTFOUND);
    strata_db_close(db);
    test_rmrf(dir);
}

typedef struct writer_arg {
    strata_db *db;
    int idx;
    int failures;
} writer_arg;

/* Appends "0".."199" to session s<idx>, one acknowledged turn at a time. */
static void *db_test_writer(void *p)
{
    writer_arg *a = p;
    char sid[16];
    snprintf(sid, sizeof(sid), "s%d", a->idx);
    for (int i = 0; i < 200; i++) {
        char text[16];
        snprintf(text, sizeof(text), "%d", i);
        strata_turn_ack ack;
        if (append(a->db, sid, "u1", text, &ack) != STRATA_OK || ack.turn_count != (uint32_t)i + 1) {
            a->failures++;
        }
    }
    return NULL;
}

TEST(concurrent_writers)
{
    char *dir = test_tmpdir();
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dir;
    cfg.fsync = STRATA_FSYNC_ALWAYS;
    cfg.background = 0;
    cfg.buffer_turns = 1000;
    strata_db *db = NULL;
    ASSERT_OK(strata_db_open(&cfg, &db, NULL));
    enum { THREADS = 4, PER = 200 };
    pthread_t th[THREADS];
    writer_arg args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t].db = db;
        args[t].idx = t;
        args[t].failures = 0;
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_create(&th[t], NULL, db_test_writer, &args[t]);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        ASSERT_EQ(args[t].failures, 0);
    }
    strata_db_stats st;
    strata_db_stats_get(db, &st);
    ASSERT_TRUE(st.log_fsyncs < st.log_appends); /* group commit shared fsyncs */
    strata_db_close(db);
    remove_snapshots(dir);
    cfg.background = 0;
    ASSERT_OK(strata_db_open(&cfg, &db, NULL));
    for (int t = 0; t < THREADS; t++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "s%d", t);
        strata_session *s = NULL;
        ASSERT_OK(strata_session_get(db, "default", sid, &s));
        ASSERT_EQ(s->turn_count, PER);
        for (size_t i = 0; i < s->n_turns; i++) {
            char want[32];
            snprintf(want, sizeof(want), "%d", (int)i);
            ASSERT_STREQ(s->turns[i].content, want);
        }
        strata_session_free(s);
    }
    strata_db_close(db);
    test_rmrf(dir);
}

TEST_MAIN(TEST_ENTRY(append_get_and_recover), TEST_ENTRY(bad_input_changes_nothing),
          TEST_ENTRY(consolidation_jobs_queue_and_run), TEST_ENTRY(idle_sessions_expire),
          TEST_ENTRY(concurrent_writers))
