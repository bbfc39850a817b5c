/*
 * bench_pipeline.c - the memory pipeline's own figures, through the public C
 * API of libstrata (strata.h), in temporary data directories with fsync
 * everysec and the background threads on. Not a test; see README.md here.
 *
 *   A  latency of one 10-turn consolidation (rules extractor, hashing
 *      embedder): 10 user/assistant turns appended to a fresh session of a
 *      fresh user; the 10th turn queues the job; strata_job_get is polled
 *      until it is done. p50/p99 of (job done - 10th turn sent), and of
 *      (queue idle - 10th turn sent), which adds the distillation the job
 *      queues at once for an important memory (the allergy, importance 0.9);
 *      then the same with that distillation deferred (distill_importance 2).
 *   A' handler time: N sessions' jobs queued while no worker runs (a db
 *      opened with background = 0, then closed), reopened with ONE worker:
 *      wall time from open to an empty queue / jobs = mean handler time.
 *   B  throughput: the same with TWO workers (sessions/s, memories/s), then
 *      strata_distill(NULL) for every user (memories distilled/s).
 *   C  write acknowledgement: one thread appends turns as fast as it can
 *      (9 turns per session, then a new session, so its own turns never
 *      queue a job) while a loader appends realistic 10-turn sessions at a
 *      fixed rate that keeps both workers busy; p50/p99/p99.9/max of
 *      strata_turn_append. Run with consolidate_every 10 and 0 (the
 *      baseline: same appends, no consolidation) in alternating rounds in
 *      one process, and the ratio.
 *
 * Build: bench/pipeline/run.sh (links /tmp/bp-build/libstrata.a).
 * usage: bench_pipeline [--iters N] [--sessions N] [--per-user K] [--duration S]
 *                       [--workers W] [--rounds R] [--loader-rate R] [--only abc]
 *                       [--probe] [--keep]
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "strata/strata.h"

#define TENANT "default"
#define TURNS_PER_SESSION 10

/* ---- small helpers ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the whole process (every thread): what the machine's other
 * tenants cannot inflate the way they inflate wall time. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_pipeline: %s: %s (%s)\n", what, strata_strerror(rc), strata_errmsg());
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in ms. */
static double pct_ms(const uint64_t *v, size_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(p / 100.0 * (double)n + 0.999999);
    i = i == 0 ? 0 : i - 1;
    if (i >= n) {
        i = n - 1;
    }
    return (double)v[i] / 1e6;
}

static double mean_ms(const uint64_t *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)v[i];
    }
    return n ? s / (double)n / 1e6 : 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char g_base[4096];
static int g_keep;

static void make_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_base, name);
}

/* ---- the conversation ------------------------------------------------------- */
/* Ten turns of a support chat: five user turns holding a job, an employer, a
 * home town, a hobby, an allergy (a constraint, importance 0.9: distilled at
 * once), a past experience and two preferences; five assistant replies. The
 * slots vary with the session index so that sessions of one user, and users,
 * do not repeat each other (which would make the memories duplicates). */

static const char *const ROLES[] = {"data scientist", "nurse", "software engineer",
                                    "teacher", "product manager", "civil engineer",
                                    "graphic designer", "pharmacist"};
static const char *const EMPLOYERS[] = {"Acme Corp", "Globex", "Initech", "Umbrella Health",
                                        "Stark Industries", "Wayne Enterprises", "Hooli"};
static const char *const CITIES[] = {"Berlin", "Lisbon", "Toronto", "Melbourne", "Osaka",
                                     "Denver", "Edinburgh", "Valencia", "Montreal"};
static const char *const HOBBIES[] = {"hiking", "rock climbing", "baking sourdough",
                                      "playing chess", "trail running", "photography",
                                      "kayaking", "gardening", "birdwatching", "cycling",
                                      "pottery"};
static const char *const ALLERGENS[] = {"peanuts", "shellfish", "penicillin", "gluten",
                                        "cats", "pollen", "sesame"};
static const char *const TRIPS[] = {"Japan", "Iceland", "Peru", "Morocco", "Norway",
                                    "Vietnam", "Chile", "Greece", "Scotland", "Kenya"};
static const char *const WHEN[] = {"last month", "last year", "last summer", "in 2019",
                                   "two weeks ago"};
static const char *const STYLES[] = {"concise answers", "detailed explanations",
                                     "bullet points", "step-by-step instructions",
                                     "short summaries"};
static const char *const DISLIKES[] = {"long meetings", "spicy food", "crowded beaches",
                                       "horror movies", "early mornings", "jazz"};

#define PICK(a, i) (a[(size_t)(i) % (sizeof(a) / sizeof(a[0]))])

typedef struct convo {
    char text[TURNS_PER_SESSION][320];
    strata_role role[TURNS_PER_SESSION];
} convo;

static void convo_make(convo *c, uint64_t k)
{
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    unsigned a = (unsigned)(h >> 8), b = (unsigned)(h >> 20), d = (unsigned)(h >> 32),
             e = (unsigned)(h >> 44);
    const char *hobby = PICK(HOBBIES, a);
    const char *allergen = PICK(ALLERGENS, b);
    const char *trip = PICK(TRIPS, d);
    snprintf(c->text[0], sizeof c->text[0], "Hi! I'm a %s at %s, and I live in %s.",
             PICK(ROLES, k), PICK(EMPLOYERS, a + k), PICK(CITIES, e));
    snprintf(c->text[1], sizeof c->text[1],
             "Nice to meet you! How can I help you plan your weekend?");
    snprintf(c->text[2], sizeof c->text[2],
             "I love %s, and I try to go every Saturday morning if the weather is good.",
             hobby);
    snprintf(c->text[3], sizeof c->text[3],
             "Great choice. There are a few spots for %s within an hour of the city.", hobby);
    snprintf(c->text[4], sizeof c->text[4],
             "Also, I'm allergic to %s, so please keep that in mind for any food ideas.",
             allergen);
    snprintf(c->text[5], sizeof c->text[5],
             "Noted: I will avoid anything with %s in my suggestions.", allergen);
    snprintf(c->text[6], sizeof c->text[6],
             "I visited %s %s with my sister and it was the best trip of my life.", trip,
             PICK(WHEN, a + b));
    snprintf(c->text[7], sizeof c->text[7],
             "That sounds wonderful. Would you like ideas for a similar trip this year?");
    snprintf(c->text[8], sizeof c->text[8], "Maybe later. I prefer %s, and I hate %s.",
             PICK(STYLES, d + e), PICK(DISLIKES, b + e));
    snprintf(c->text[9], sizeof c->text[9],
             "Understood, I will keep my answers that way from now on.");
    for (int i = 0; i < TURNS_PER_SESSION; i++) {
        c->role[i] = i % 2 == 0 ? STRATA_ROLE_USER : STRATA_ROLE_ASSISTANT;
    }
}

/* ---- configuration and helpers over the db ---------------------------------- */

static void cfg_base(strata_config *cfg, const char *dir, uint32_t workers, int background,
                     uint32_t every, float distill_importance)
{
    strata_config_init(cfg);
    cfg->data_dir = dir;
    cfg->fsync = STRATA_FSYNC_EVERYSEC;
    cfg->job_workers = workers;
    cfg->background = background;
    cfg->consolidate_every = every;
    cfg->buffer_turns = 20;
    cfg->session_ttl_s = 0;          /* no idle expiry during the run */
    cfg->snapshot_every_s = 0;       /* no periodic snapshot in the middle of a figure */
    cfg->distill_hour = -1;          /* no nightly distillation if run at 2 am */
    cfg->distill_importance = distill_importance;
}

static strata_db *db_open_or_die(const strata_config *cfg)
{
    strata_db *db = NULL;
    int rc = strata_db_open(cfg, &db, NULL);
    if (rc != STRATA_OK) {
        die("strata_db_open", rc);
    }
    return db;
}

static void db_close_and_remove(strata_db *db, const char *dir)
{
    strata_db_close(db);
    if (!g_keep) {
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static void append_or_die(strata_db *db, const char *sid, const char *uid, strata_role role,
                          const char *text, strata_turn_ack *ack)
{
    int rc = strata_turn_append(db, TENANT, sid, uid, role, text, strlen(text), ack);
    if (rc != STRATA_OK) {
        die("strata_turn_append", rc);
    }
}

/* Wait until no job is queued or running; returns the time it became so. */
static uint64_t wait_idle(strata_db *db, uint64_t poll_ns)
{
    strata_db_stats st;
    for (;;) {
        strata_db_stats_get(db, &st);
        if (st.jobs_queued == 0 && st.jobs_running == 0) {
            return now_ns();
        }
        if (poll_ns) {
            sleep_ns(poll_ns);
        } else {
            sched_yield();
        }
    }
}

static void wait_job(strata_db *db, const char *job_id, uint64_t poll_ns)
{
    strata_job_info ji;
    for (;;) {
        int rc = strata_job_get(db, TENANT, job_id, &ji);
        if (rc != STRATA_OK) {
            die("strata_job_get", rc);
        }
        if (ji.status == STRATA_JOB_DONE) {
            return;
        }
        if (ji.status == STRATA_JOB_FAILED) {
            fprintf(stderr, "bench_pipeline: job %s failed: %s\n", job_id, ji.error);
            exit(1);
        }
        if (poll_ns) {
            sleep_ns(poll_ns);
        } else {
            sched_yield();
        }
    }
}

/* ---- A: one consolidation's latency ---------------------------------------- */

typedef struct res_a {
    size_t n;
    double done_p50, done_p99, done_mean, done_max;
    double idle_p50, idle_p99, idle_mean, idle_max;
    double mem_per_job;
    double distilled_per_job;
    size_t over_5ms;
} res_a;

static void bench_a(size_t iters, size_t warm, uint32_t workers, float distill_importance,
                    res_a *out)
{
    char dir[4200];
    make_dir(dir, sizeof dir, distill_importance > 1 ? "a-deferred" : "a");
    strata_config cfg;
    cfg_base(&cfg, dir, workers, 1, TURNS_PER_SESSION, distill_importance);
    strata_db *db = db_open_or_die(&cfg);
    uint64_t *done = calloc(iters, sizeof(uint64_t));
    uint64_t *idle = calloc(iters, sizeof(uint64_t));
    strata_db_stats st0, st1;
    for (size_t it = 0; it < warm + iters; it++) {
        if (it == warm) {
            strata_db_stats_get(db, &st0);
        }
        char sid[64], uid[64];
        snprintf(sid, sizeof sid, "a-s-%zu", it);
        snprintf(uid, sizeof uid, "a-user-%zu", it);
        convo c;
        convo_make(&c, it);
        strata_turn_ack ack;
        uint64_t t_ack = 0;
        for (int t = 0; t < TURNS_PER_SESSION; t++) {
            /* The clock starts when the 10th turn is sent: the job is queued
             * while that turn is applied, and on a busy machine a worker can
             * finish it before the appending thread runs again. */
            t_ack = now_ns();
            append_or_die(db, sid, uid, c.role[t], c.text[t], &ack);
        }
        if (!ack.consolidation_queued) {
            fprintf(stderr, "bench_pipeline: the 10th turn queued no job\n");
            exit(1);
        }
        wait_job(db, ack.job_id, 0);
        uint64_t t_done = now_ns();
        uint64_t t_idle = wait_idle(db, 20000);
        if (it >= warm) {
            done[it - warm] = t_done - t_ack;
            idle[it - warm] = t_idle - t_ack;
        }
    }
    strata_db_stats_get(db, &st1);
    qsort(done, iters, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < iters; i++) {
        out->over_5ms += done[i] > 5000000u;
    }
    qsort(idle, iters, sizeof(uint64_t), cmp_u64);
    out->n = iters;
    out->done_p50 = pct_ms(done, iters, 50);
    out->done_p99 = pct_ms(done, iters, 99);
    out->done_mean = mean_ms(done, iters);
    out->done_max = (double)done[iters - 1] / 1e6;
    out->idle_p50 = pct_ms(idle, iters, 50);
    out->idle_p99 = pct_ms(idle, iters, 99);
    out->idle_mean = mean_ms(idle, iters);
    out->idle_max = (double)idle[iters - 1] / 1e6;
    out->mem_per_job = (double)(st1.memories_consolidated - st0.memories_consolidated) /
                       (double)iters;
    out->distilled_per_job = (double)(st1.distilled - st0.distilled) / (double)iters;
    free(done);
    free(idle);
    db_close_and_remove(db, dir);
}

/* ---- A' and B: a queue of sessions, then the workers ------------------------- */

/* Append n sessions of 10 turns (session i belongs to user i % users, so
 * consecutive jobs belong to different users and the per-user ordering of
 * jobs never holds a worker back) into a db with no background threads: the
 * jobs stay queued in the log, and run when the directory is opened again. */
static void build_queue(const char *dir, size_t n, size_t users, double *append_s)
{
    strata_config cfg;
    cfg_base(&cfg, dir, 1, 0, TURNS_PER_SESSION, 2.0f);
    strata_db *db = db_open_or_die(&cfg);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        char sid[64], uid[64];
        snprintf(sid, sizeof sid, "b-s-%zu", i);
        snprintf(uid, sizeof uid, "b-user-%zu", i % users);
        convo c;
        convo_make(&c, i);
        strata_turn_ack ack;
        for (int t = 0; t < TURNS_PER_SESSION; t++) {
            append_or_die(db, sid, uid, c.role[t], c.text[t], &ack);
        }
    }
    *append_s = (double)(now_ns() - t0) / 1e9;
    strata_db_sync(db);
    strata_db_close(db);
}

typedef struct res_b {
    size_t jobs;
    double open_s;
    double run_s;
    double sessions_per_s;
    double memories;
    double memories_per_s;
    double handler_ms;               /* run_s / jobs (meaningful with one worker) */
    double cpu_ms_per_job;           /* process CPU time while the queue ran / jobs */
    double distill_s;
    double distilled;
    double distilled_per_s;
    uint64_t failed;
} res_b;

/* Open the queued dir with `workers` workers; time until the queue is empty.
 * With distill = 1, then distil every user through strata_distill(NULL). */
static void run_queue(const char *dir, uint32_t workers, int distill, res_b *out)
{
    strata_config cfg;
    cfg_base(&cfg, dir, workers, 1, TURNS_PER_SESSION, 2.0f);
    uint64_t t0 = now_ns();
    strata_db *db = db_open_or_die(&cfg);
    uint64_t t1 = now_ns();
    uint64_t c1 = cpu_ns();
    uint64_t t2 = wait_idle(db, 200000);
    uint64_t c2 = cpu_ns();
    strata_db_stats st1;
    strata_db_stats_get(db, &st1);
    memset(out, 0, sizeof(*out));
    out->jobs = (size_t)st1.jobs_done;
    out->failed = st1.jobs_failed;
    out->open_s = (double)(t1 - t0) / 1e9;
    out->run_s = (double)(t2 - t1) / 1e9;
    out->sessions_per_s = (double)out->jobs / out->run_s;
    out->memories = (double)st1.memories_consolidated;
    out->memories_per_s = out->memories / out->run_s;
    out->handler_ms = out->run_s * 1e3 / (double)(out->jobs ? out->jobs : 1);
    out->cpu_ms_per_job = (double)(c2 - c1) / 1e6 / (double)(out->jobs ? out->jobs : 1);
    if (distill) {
        char job[STRATA_JOB_ID_LEN];
        uint64_t d0 = now_ns();
        int rc = strata_distill(db, TENANT, NULL, job);
        if (rc != STRATA_OK) {
            die("strata_distill", rc);
        }
        wait_job(db, job, 200000);
        uint64_t d1 = now_ns();
        strata_db_stats st2;
        strata_db_stats_get(db, &st2);
        out->distill_s = (double)(d1 - d0) / 1e9;
        out->distilled = (double)(st2.distilled - st1.distilled);
        out->distilled_per_s = out->distilled / out->distill_s;
    }
    db_close_and_remove(db, dir);
}

/* ---- C: acknowledgement latency under consolidation ------------------------ */

typedef struct c_shared {
    strata_db *db;
    atomic_int stop;
    double loader_rate;              /* sessions/s the loader aims at */
    size_t max_queued;               /* loader backpressure */
    /* results */
    uint64_t *lat;
    size_t n_lat, cap_lat;
    uint64_t loader_sessions;
    uint64_t loader_waits;
} c_shared;

static void *c_measurer(void *arg)
{
    c_shared *s = arg;
    convo c;
    uint64_t sess = 0;
    int t = 0;
    char sid[64], uid[64];
    convo_make(&c, 1000003);
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed) && s->n_lat < s->cap_lat) {
        if (t == 0) {
            snprintf(sid, sizeof sid, "c-m-%" PRIu64, sess);
            snprintf(uid, sizeof uid, "c-muser-%" PRIu64, sess % 512);
            convo_make(&c, sess + 5000000);
        }
        /* 9 turns per session: the measured turns never queue a job themselves. */
        strata_turn_ack ack;
        uint64_t a = now_ns();
        append_or_die(s->db, sid, uid, c.role[t], c.text[t], &ack);
        s->lat[s->n_lat++] = now_ns() - a;
        if (++t == TURNS_PER_SESSION - 1) {
            t = 0;
            sess++;
        }
    }
    return NULL;
}

static void *c_loader(void *arg)
{
    c_shared *s = arg;
    uint64_t start = now_ns();
    uint64_t period = (uint64_t)(1e9 / s->loader_rate);
    for (uint64_t i = 0; !atomic_load_explicit(&s->stop, memory_order_relaxed); i++) {
        uint64_t due = start + i * period;
        uint64_t now = now_ns();
        if (due > now) {
            sleep_ns(due - now);
        }
        strata_db_stats st;
        strata_db_stats_get(s->db, &st);
        while (st.jobs_queued > s->max_queued &&
               !atomic_load_explicit(&s->stop, memory_order_relaxed)) {
            s->loader_waits++;
            sleep_ns(500000);
            strata_db_stats_get(s->db, &st);
        }
        char sid[64], uid[64];
        snprintf(sid, sizeof sid, "c-l-%" PRIu64, i);
        snprintf(uid, sizeof uid, "c-luser-%" PRIu64, i % 1024);
        convo c;
        convo_make(&c, i + 9000000);
        strata_turn_ack ack;
        for (int t = 0; t < TURNS_PER_SESSION; t++) {
            append_or_die(s->db, sid, uid, c.role[t], c.text[t], &ack);
        }
        s->loader_sessions++;
    }
    return NULL;
}

typedef struct res_c {
    size_t n;
    double rate;                     /* measured appends/s */
    double p50, p99, p999, max, mean;
    double loader_rate;              /* loader sessions/s achieved */
    uint64_t jobs_done;
    uint64_t memories;
    uint64_t waits;
    /* accumulated over rounds */
    uint64_t *lat;
    size_t cap;
    double secs;
    uint64_t loader_sessions;
} res_c;

/* One round of `seconds` in a fresh data directory; latencies are appended
 * to out->lat. */
static void bench_c_round(uint32_t every, uint32_t workers, double seconds, double loader_rate,
                          res_c *out)
{
    char dir[4200];
    make_dir(dir, sizeof dir, every ? "c-on" : "c-off");
    strata_config cfg;
    cfg_base(&cfg, dir, workers, 1, every, 0.8f);
    c_shared s;
    memset(&s, 0, sizeof s);
    s.db = db_open_or_die(&cfg);
    s.loader_rate = loader_rate;
    s.max_queued = 16;
    s.lat = out->lat + out->n;
    s.cap_lat = out->cap - out->n;
    atomic_init(&s.stop, 0);
    pthread_t tm, tl;
    uint64_t t0 = now_ns();
    pthread_create(&tl, NULL, c_loader, &s);
    pthread_create(&tm, NULL, c_measurer, &s);
    sleep_ns((uint64_t)(seconds * 1e9));
    atomic_store(&s.stop, 1);
    pthread_join(tm, NULL);
    pthread_join(tl, NULL);
    uint64_t t1 = now_ns();
    strata_db_stats st;
    strata_db_stats_get(s.db, &st);
    out->n += s.n_lat;
    out->secs += (double)(t1 - t0) / 1e9;
    out->loader_sessions += s.loader_sessions;
    out->jobs_done += st.jobs_done;
    out->memories += st.memories_consolidated;
    out->waits += s.loader_waits;
    db_close_and_remove(s.db, dir);
}

static void bench_c_finish(res_c *out)
{
    qsort(out->lat, out->n, sizeof(uint64_t), cmp_u64);
    out->rate = (double)out->n / out->secs;
    out->p50 = pct_ms(out->lat, out->n, 50);
    out->p99 = pct_ms(out->lat, out->n, 99);
    out->p999 = pct_ms(out->lat, out->n, 99.9);
    out->max = out->n ? (double)out->lat[out->n - 1] / 1e6 : 0;
    out->mean = mean_ms(out->lat, out->n);
    out->loader_rate = (double)out->loader_sessions / out->secs;
    free(out->lat);
    out->lat = NULL;
}

/* ---- probe: what one session yields ------------------------------------------- */

static void probe(void)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "probe");
    strata_config cfg;
    cfg_base(&cfg, dir, 1, 1, TURNS_PER_SESSION, 0.8f);
    strata_db *db = db_open_or_die(&cfg);
    for (uint64_t k = 0; k < 3; k++) {
        char sid[32], uid[32];
        snprintf(sid, sizeof sid, "p-%" PRIu64, k);
        snprintf(uid, sizeof uid, "puser-%" PRIu64, k);
        convo c;
        convo_make(&c, k);
        strata_turn_ack ack;
        for (int t = 0; t < TURNS_PER_SESSION; t++) {
            printf("  [%s] %s\n", strata_role_name(c.role[t]), c.text[t]);
            append_or_die(db, sid, uid, c.role[t], c.text[t], &ack);
        }
        wait_job(db, ack.job_id, 100000);
        wait_idle(db, 100000);
        strata_search_opts so;
        strata_search_opts_init(&so);
        so.query = "user";
        so.query_len = 4;
        so.mode = STRATA_SEARCH_KEYWORD;
        so.limit = 100;
        strata_memory_list *l = NULL;
        if (strata_memory_search(db, TENANT, uid, &so, &l) == STRATA_OK) {
            for (size_t i = 0; i < l->n; i++) {
                printf("    -> %-10s imp %.2f %s  (%s)\n", strata_memory_type_name(l->items[i].type),
                       l->items[i].importance, l->items[i].content,
                       l->items[i].n_provenance ? l->items[i].provenance[0] : "");
            }
        }
        strata_memory_list_free(l);
    }
    strata_db_stats st;
    strata_db_stats_get(db, &st);
    printf("memories %" PRIu64 ", distilled %" PRIu64 ", graph edges %" PRIu64 "\n",
           st.memories_consolidated, st.distilled, st.graph_current_edges);
    db_close_and_remove(db, dir);
}

/* ---- main ----------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    size_t iters = 1000, sessions = 1000, per_user = 4;
    double duration = 10, loader_rate = 0;
    unsigned rounds = 2;
    uint32_t workers = 2;
    int do_probe = 0;
    const char *only = "abc";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--iters") == 0 && v) {
            iters = strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--sessions") == 0 && v) {
            sessions = strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--per-user") == 0 && v) {
            per_user = strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--duration") == 0 && v) {
            duration = strtod(v, NULL), i++;
        } else if (strcmp(a, "--workers") == 0 && v) {
            workers = (uint32_t)strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--rounds") == 0 && v) {
            rounds = (unsigned)strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--loader-rate") == 0 && v) {
            loader_rate = strtod(v, NULL), i++;
        } else if (strcmp(a, "--only") == 0 && v) {
            only = v, i++;
        } else if (strcmp(a, "--probe") == 0) {
            do_probe = 1;
        } else if (strcmp(a, "--keep") == 0) {
            g_keep = 1;
        } else {
            fprintf(stderr,
                    "usage: %s [--iters N] [--sessions N] [--per-user K] [--duration S] "
                    "[--workers W] [--rounds R] [--loader-rate R] [--only abc] [--probe] [--keep]\n",
                    argv[0]);
            return 2;
        }
    }
    if (iters < 1 || sessions < 1 || per_user < 1 || workers < 1 || duration <= 0 ||
        rounds < 1) {
        fprintf(stderr, "bench_pipeline: bad argument\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(g_base, sizeof g_base, "%s/strata-bench-pipeline.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(g_base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (do_probe) {
        probe();
        if (!g_keep) {
            nftw(g_base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        }
        return 0;
    }
    uint64_t T0 = now_ns();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t users = (sessions + per_user - 1) / per_user;
    int run_a = strchr(only, 'a') != NULL, run_b = strchr(only, 'b') != NULL,
        run_c = strchr(only, 'c') != NULL;

    res_a A, Ad;
    memset(&A, 0, sizeof A);
    memset(&Ad, 0, sizeof Ad);
    if (run_a) {
        fprintf(stderr, "== A: %zu single consolidations (after 20 warm-up), %u workers\n",
                iters, workers);
        bench_a(iters, 20, workers, 0.8f, &A);
        fprintf(stderr, "== A: the same with distillation deferred\n");
        bench_a(iters, 20, workers, 2.0f, &Ad);
    }
    res_b B1, B2;
    memset(&B1, 0, sizeof B1);
    memset(&B2, 0, sizeof B2);
    double app2 = 0;
    if (run_a || run_b) {
        char qdir[4200];
        double app1;
        make_dir(qdir, sizeof qdir, "q1");
        fprintf(stderr, "== A': %zu sessions queued, one worker\n", sessions);
        build_queue(qdir, sessions, users, &app1);
        run_queue(qdir, 1, 0, &B1);
    }
    if (run_b || (run_c && loader_rate <= 0)) {
        char qdir[4200];
        make_dir(qdir, sizeof qdir, "q2");
        fprintf(stderr, "== B: %zu sessions queued, %u workers, then distil all users\n",
                sessions, workers);
        build_queue(qdir, sessions, users, &app2);
        run_queue(qdir, workers, 1, &B2);
    }
    res_c Con, Coff;
    memset(&Con, 0, sizeof Con);
    memset(&Coff, 0, sizeof Coff);
    if (run_c) {
        /* The loader aims at the measured capacity of the workers, so that
         * they stay busy for the whole run (backpressure at 16 queued jobs). */
        if (loader_rate <= 0) {
            loader_rate = B2.sessions_per_s > 1 ? B2.sessions_per_s : 100;
        }
        /* Alternate on and off in `rounds` rounds, each in a fresh directory,
         * so that a change in the machine's other load hits both alike. */
        Con.cap = Coff.cap = 16u << 20;
        Con.lat = malloc(Con.cap * sizeof(uint64_t));
        Coff.lat = malloc(Coff.cap * sizeof(uint64_t));
        if (Con.lat == NULL || Coff.lat == NULL) {
            fprintf(stderr, "bench_pipeline: out of memory\n");
            return 1;
        }
        for (unsigned r = 0; r < rounds; r++) {
            fprintf(stderr, "== C round %u/%u: %.1f s consolidate_every 10 (loader %.0f "
                    "sessions/s), then %.1f s consolidate_every 0\n",
                    r + 1, rounds, duration / rounds, loader_rate, duration / rounds);
            bench_c_round(TURNS_PER_SESSION, workers, duration / rounds, loader_rate, &Con);
            bench_c_round(0, workers, duration / rounds, loader_rate, &Coff);
        }
        bench_c_finish(&Con);
        bench_c_finish(&Coff);
    }
    double total = (double)(now_ns() - T0) / 1e9;

    printf("\nStrata pipeline benchmark: libstrata in-process, %ld cores, fsync everysec, "
           "rules extractor, hash embedder (384), job_workers %u\n",
           cores, workers);
    if (run_a) {
        printf("\nA. one 10-turn consolidation (5 user + 5 assistant turns, 8 memories), %zu "
               "sessions, a fresh user each\n",
               A.n);
        printf("%-58s %8s %8s %8s %8s %8s\n", "", "p50 ms", "p99 ms", "mean ms", "max ms",
               ">5 ms");
        printf("%-58s %8.3f %8.3f %8.3f %8.3f %8zu\n",
               "10th turn sent -> job done (default config)", A.done_p50,
               A.done_p99, A.done_mean, A.done_max, A.over_5ms);
        printf("%-58s %8.3f %8.3f %8.3f %8.3f\n", "10th turn sent -> queue idle (+ its distill "
               "job)", A.idle_p50, A.idle_p99, A.idle_mean, A.idle_max);
        printf("%-58s %8.3f %8.3f %8.3f %8.3f %8zu\n",
               "10th turn sent -> job done (distillation deferred)", Ad.done_p50, Ad.done_p99,
               Ad.done_mean, Ad.done_max, Ad.over_5ms);
        printf("%-58s %8s %8s %8.3f   (%zu jobs in %.3f s, one worker, deferred)\n",
               "handler time (A': wall / jobs)", "", "", B1.handler_ms, B1.jobs, B1.run_s);
        printf("%-58s %8s %8s %8.3f   (process CPU time / jobs: robust to other load)\n",
               "handler CPU time (A')", "", "", B1.cpu_ms_per_job);
        printf("target < 5 ms: p50 %s, p99 %s; memories per job %.2f, distilled at once per "
               "job %.2f\n",
               A.done_p50 < 5 ? "met" : "MISSED", A.done_p99 < 5 ? "met" : "MISSED",
               A.mem_per_job, A.distilled_per_job);
    }
    if (run_b) {
        printf("\nB. throughput: %zu sessions queued (%zu users, %zu sessions each, "
               "distillation deferred), then strata_distill(every user)\n",
               sessions, users, per_user);
        printf("%-40s %12s %12s %10s %10s %12s\n", "", "sessions/s", "memories/s", "memories",
               "wall s", "CPU ms/job");
        printf("%-40s %12.0f %12.0f %10.0f %10.3f %12.3f\n", "consolidation, 1 worker",
               B1.sessions_per_s, B1.memories_per_s, B1.memories, B1.run_s, B1.cpu_ms_per_job);
        printf("%-40s %12.0f %12.0f %10.0f %10.3f %12.3f\n", "consolidation, 2 workers",
               B2.sessions_per_s, B2.memories_per_s, B2.memories, B2.run_s, B2.cpu_ms_per_job);
        printf("%-40s %12s %12.0f %10.0f %10.3f   (memories distilled/s)\n",
               "distillation, strata_distill(NULL)", "", B2.distilled_per_s, B2.distilled,
               B2.distill_s);
        printf("scaling 2 workers / 1 worker %.2f; replay of the queued log at open %.3f s; "
               "appending %zu x 10 turns (no job running) %.0f turns/s; failed jobs %" PRIu64
               "\n",
               B2.sessions_per_s / B1.sessions_per_s, B2.open_s, sessions,
               (double)sessions * TURNS_PER_SESSION / app2, B1.failed + B2.failed);
    }
    if (run_c) {
        printf("\nC. strata_turn_append latency, one thread as fast as it can, %.0f s each "
               "(%u alternating rounds); loader target %.0f sessions/s\n",
               duration, rounds, loader_rate);
        printf("%-24s %10s %9s %9s %9s %9s %9s %10s %7s\n", "", "appends/s", "p50 ms",
               "p99 ms", "p99.9 ms", "max ms", "mean ms", "loader s/s", "jobs");
        printf("%-24s %10.0f %9.4f %9.4f %9.4f %9.3f %9.4f %10.0f %7" PRIu64 "\n",
               "consolidate_every 10", Con.rate, Con.p50, Con.p99, Con.p999, Con.max, Con.mean,
               Con.loader_rate, Con.jobs_done);
        printf("%-24s %10.0f %9.4f %9.4f %9.4f %9.3f %9.4f %10.0f %7" PRIu64 "\n",
               "consolidate_every 0", Coff.rate, Coff.p50, Coff.p99, Coff.p999, Coff.max,
               Coff.mean, Coff.loader_rate, Coff.jobs_done);
        printf("%-24s %10.2f %9.2f %9.2f %9.2f %9.2f %9.2f %10.2f\n", "ratio on / off",
               Con.rate / Coff.rate, Con.p50 / Coff.p50, Con.p99 / Coff.p99,
               Con.p999 / Coff.p999, Con.max / Coff.max, Con.mean / Coff.mean,
               Con.loader_rate / Coff.loader_rate);
        printf("target p99 < 2 ms with consolidation: %s; memories made during the run %" PRIu64
               "; loader backpressure waits %" PRIu64 "\n",
               Con.p99 < 2 ? "met" : "MISSED", Con.memories, Con.waits);
    }
    printf("\ntotal %.1f s\n", total);
    if (!g_keep) {
        nftw(g_base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    } else {
        fprintf(stderr, "kept %s\n", g_base);
    }
    return 0;
}
