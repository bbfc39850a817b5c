/*
 * jobs.c - the durable job queue. Jobs are born from log records (see
 * pipeline.h), so the queue itself needs no storage of its own beyond the
 * snapshot; worker threads take queued jobs in LSN order, run the handler of
 * their kind, and report the outcome through finish_fn, which logs it.
 *
 *   by_id: dict job id -> job (owns every job)
 *   queue: q_head -> job -> job -> NULL   (queued jobs, FIFO by LSN)
 *   finished: ring of ids of ended jobs, oldest evicted past JOBS_KEEP_FINISHED
 *
 * Locking: `lock` protects everything here; handlers run without it.
 * Retries: a retryable error requeues the job with exponential backoff
 * (100 ms x 2^attempt, capped at 30 s) up to JOBS_MAX_ATTEMPTS; retries are
 * not logged (a restart simply starts the count again).
 *
 * Snapshot image (wire codec): u32 version 1 | u64 count | count x job:
 *   str id | str kind | str tenant | str session | str user | u8 status |
 *   u32 attempts | str error | i64 created_ms | u64 lsn | u32 n_turns |
 *   n_turns x { u8 role | bytes content | i64 ts | u32 seq }
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/pipeline.h"

#define JOBS_KEEP_FINISHED 10000
#define JOBS_MAX_ATTEMPTS 5
#define JOBS_MAX_HANDLERS 16

typedef struct job job;

struct job {
    char id[STRATA_JOB_ID_LEN];
    char kind[32];
    char *tenant;
    char *session_id;
    char *user_id;
    strata_turn *turns;
    size_t n_turns;
    strata_job_status status;
    uint32_t attempts;
    char error[256];
    int64_t created_ms;
    uint64_t lsn;
    int64_t not_before_ms;       /* backoff: not to run before this wall time */
    struct job *next;            /* queue link while queued */
};

typedef struct job_handler {
    char kind[32];
    job_handler_fn fn;
    void *ctx;
} job_handler;

struct jobs {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    dict *by_id;
    job *q_head;
    job *q_tail;
    char (*finished)[STRATA_JOB_ID_LEN]; /* ring of JOBS_KEEP_FINISHED ids */
    size_t fin_head;
    size_t fin_count;
    job_handler handlers[JOBS_MAX_HANDLERS];
    size_t n_handlers;
    pthread_t *workers;
    unsigned n_workers;
    bool stopping;
    job_finish_fn finish;
    void *finish_ctx;
    job *active[64];             /* jobs being run, one slot per worker */
    char *hold_tenant;           /* a user being forgotten: none of their jobs */
    char *hold_user;             /* starts until jobs_release (NULL: none) */
    uint64_t n_queued;
    uint64_t n_running;
    uint64_t n_done;
    uint64_t n_failed;
};

static void job_free(void *p)
{
    job *j = p;
    if (j == NULL) {
        return;
    }
    for (size_t i = 0; i < j->n_turns; i++) {
        strata_free(j->turns[i].content);
    }
    strata_free(j->turns);
    strata_free(j->tenant);
    strata_free(j->session_id);
    strata_free(j->user_id);
    strata_free(j);
}

static const dict_type job_dict_type = {job_free};

void job_id_format(char out[STRATA_JOB_ID_LEN], uint64_t lsn)
{
    snprintf(out, STRATA_JOB_ID_LEN, "job-%016" PRIx64, lsn);
}

jobs *jobs_create(void)
{
    jobs *js = strata_calloc(1, sizeof(*js));
    if (js == NULL) {
        return NULL;
    }
    js->by_id = dict_create(&job_dict_type);
    js->finished = strata_calloc(JOBS_KEEP_FINISHED, STRATA_JOB_ID_LEN);
    if (js->by_id == NULL || js->finished == NULL) {
        dict_free(js->by_id);
        strata_free(js->finished);
        strata_free(js);
        return NULL;
    }
    pthread_mutex_init(&js->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&js->cond, &ca);
    pthread_condattr_destroy(&ca);
    return js;
}

void jobs_free(jobs *js)
{
    if (js == NULL) {
        return;
    }
    jobs_stop(js);
    strata_free(js->hold_tenant);
    strata_free(js->hold_user);
    dict_free(js->by_id);
    strata_free(js->finished);
    pthread_mutex_destroy(&js->lock);
    pthread_cond_destroy(&js->cond);
    strata_free(js);
}

int jobs_register(jobs *js, const char *kind, job_handler_fn fn, void *ctx)
{
    pthread_mutex_lock(&js->lock);
    for (size_t i = 0; i < js->n_handlers; i++) {
        if (strcmp(js->handlers[i].kind, kind) == 0) {
            js->handlers[i].fn = fn;
            js->handlers[i].ctx = ctx;
            pthread_mutex_unlock(&js->lock);
            return STRATA_OK;
        }
    }
    if (js->n_handlers == JOBS_MAX_HANDLERS || strlen(kind) >= sizeof(js->handlers[0].kind)) {
        pthread_mutex_unlock(&js->lock);
        return strata_error(STRATA_EINVAL, "cannot register job kind %s", kind);
    }
    job_handler *h = &js->handlers[js->n_handlers++];
    snprintf(h->kind, sizeof(h->kind), "%s", kind);
    h->fn = fn;
    h->ctx = ctx;
    pthread_mutex_unlock(&js->lock);
    return STRATA_OK;
}

/* Caller holds js->lock. */
static void jobs_queue_push(jobs *js, job *j)
{
    j->next = NULL;
    if (js->q_tail != NULL) {
        js->q_tail->next = j;
    } else {
        js->q_head = j;
    }
    js->q_tail = j;
    js->n_queued++;
}

/* Caller holds js->lock: remember a finished job, evicting the oldest one
 * past the cap so memory stays bounded on a long-running server. */
static void jobs_note_finished(jobs *js, const job *j)
{
    size_t slot = (js->fin_head + js->fin_count) % JOBS_KEEP_FINISHED;
    if (js->fin_count == JOBS_KEEP_FINISHED) {
        const char *old = js->finished[js->fin_head];
        dict_delete(js->by_id, old, strlen(old));
        js->fin_head = (js->fin_head + 1) % JOBS_KEEP_FINISHED;
        slot = (js->fin_head + js->fin_count - 1) % JOBS_KEEP_FINISHED;
    } else {
        js->fin_count++;
    }
    memcpy(js->finished[slot], j->id, STRATA_JOB_ID_LEN);
}

static job *job_new(const char *id, const char *kind, const char *tenant, size_t tenant_len,
                    const char *session_id, const char *user_id, const strata_turn *turns,
                    size_t n_turns)
{
    job *j = strata_calloc(1, sizeof(*j));
    if (j == NULL) {
        return NULL;
    }
    snprintf(j->id, sizeof(j->id), "%s", id);
    snprintf(j->kind, sizeof(j->kind), "%s", kind);
    j->tenant = strata_strndup(tenant, tenant_len);
    j->session_id = strata_strdup(session_id ? session_id : "");
    j->user_id = strata_strdup(user_id ? user_id : "");
    j->turns = n_turns ? strata_calloc(n_turns, sizeof(strata_turn)) : NULL;
    if (j->tenant == NULL || j->session_id == NULL || j->user_id == NULL ||
        (n_turns > 0 && j->turns == NULL)) {
        job_free(j);
        return NULL;
    }
    for (size_t i = 0; i < n_turns; i++) {
        j->turns[i] = turns[i];
        j->turns[i].content = strata_strndup(turns[i].content, turns[i].content_len);
        if (j->turns[i].content == NULL) {
            j->n_turns = i;
            job_free(j);
            return NULL;
        }
    }
    j->n_turns = n_turns;
    return j;
}

int jobs_apply_enqueue(jobs *js, uint64_t lsn, const char *kind, const char *tenant,
                       size_t tenant_len, const char *session_id, const char *user_id,
                       const strata_turn *turns, size_t n_turns, int64_t created_ms)
{
    char id[STRATA_JOB_ID_LEN];
    job_id_format(id, lsn);
    job *j = job_new(id, kind, tenant, tenant_len, session_id, user_id, turns, n_turns);
    if (j == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory creating a job");
    }
    j->lsn = lsn;
    j->created_ms = created_ms;
    j->status = STRATA_JOB_QUEUED;
    pthread_mutex_lock(&js->lock);
    if (dict_get(js->by_id, id, strlen(id)) != NULL) {
        pthread_mutex_unlock(&js->lock);
        job_free(j);
        return STRATA_OK; /* replay of a job we already know */
    }
    int rc = dict_set(js->by_id, id, strlen(id), j);
    if (rc == STRATA_OK) {
        jobs_queue_push(js, j);
        pthread_cond_signal(&js->cond);
    }
    pthread_mutex_unlock(&js->lock);
    if (rc != STRATA_OK) {
        job_free(j);
    }
    return rc;
}

/* Caller holds js->lock. Unlink j from the queue if it is there. */
static void jobs_queue_remove(jobs *js, job *j)
{
    job **pp = &js->q_head;
    job *prev = NULL;
    while (*pp != NULL) {
        if (*pp == j) {
            *pp = j->next;
            if (js->q_tail == j) {
                js->q_tail = prev;
            }
            js->n_queued--;
            return;
        }
        prev = *pp;
        pp = &(*pp)->next;
    }
}

void jobs_apply_finish(jobs *js, const char *job_id, bool ok, const char *error)
{
    pthread_mutex_lock(&js->lock);
    job *j = dict_get(js->by_id, job_id, strlen(job_id));
    if (j != NULL && j->status != STRATA_JOB_DONE && j->status != STRATA_JOB_FAILED) {
        if (j->status == STRATA_JOB_QUEUED) {
            jobs_queue_remove(js, j);
        } else {
            js->n_running--;
        }
        j->status = ok ? STRATA_JOB_DONE : STRATA_JOB_FAILED;
        snprintf(j->error, sizeof(j->error), "%s", ok || error == NULL ? "" : error);
        if (ok) {
            js->n_done++;
        } else {
            js->n_failed++;
        }
        jobs_note_finished(js, j);
    }
    pthread_mutex_unlock(&js->lock);
}

int jobs_get(jobs *js, const char *tenant, const char *job_id, strata_job_info *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&js->lock);
    job *j = dict_get(js->by_id, job_id, strlen(job_id));
    /* Another tenant's job is reported exactly like a missing one. */
    if (j == NULL || strcmp(j->tenant, tenant) != 0) {
        pthread_mutex_unlock(&js->lock);
        return STRATA_ENOTFOUND;
    }
    memcpy(out->job_id, j->id, sizeof(out->job_id));
    memcpy(out->kind, j->kind, sizeof(out->kind));
    out->status = j->status;
    memcpy(out->error, j->error, sizeof(out->error));
    out->attempts = j->attempts;
    pthread_mutex_unlock(&js->lock);
    return STRATA_OK;
}

void jobs_counts(jobs *js, uint64_t *queued, uint64_t *running, uint64_t *done,
                 uint64_t *failed)
{
    pthread_mutex_lock(&js->lock);
    *queued = js->n_queued;
    *running = js->n_running;
    *done = js->n_done;
    *failed = js->n_failed;
    pthread_mutex_unlock(&js->lock);
}

/* ---- snapshot ---------------------------------------------------------- */

int jobs_snapshot_write(jobs *js, sbuf *out)
{
    pthread_mutex_lock(&js->lock);
    int rc = wire_put_u32(out, 1);
    if (rc == STRATA_OK) {
        rc = wire_put_u64(out, dict_size(js->by_id));
    }
    dict_iter it;
    dict_iter_init(&it, js->by_id);
    void *val;
    while (rc == STRATA_OK && dict_next(&it, NULL, NULL, &val)) {
        job *j = val;
        /* A running job is saved as queued: after a restart it runs again. */
        strata_job_status st = j->status == STRATA_JOB_RUNNING ? STRATA_JOB_QUEUED : j->status;
        rc = wire_put_str(out, j->id);
        rc = rc ? rc : wire_put_str(out, j->kind);
        rc = rc ? rc : wire_put_str(out, j->tenant);
        rc = rc ? rc : wire_put_str(out, j->session_id);
        rc = rc ? rc : wire_put_str(out, j->user_id);
        rc = rc ? rc : wire_put_u8(out, (uint8_t)st);
        rc = rc ? rc : wire_put_u32(out, j->attempts);
        rc = rc ? rc : wire_put_str(out, j->error);
        rc = rc ? rc : wire_put_i64(out, j->created_ms);
        rc = rc ? rc : wire_put_u64(out, j->lsn);
        rc = rc ? rc : wire_put_u32(out, (uint32_t)j->n_turns);
        for (size_t i = 0; rc == STRATA_OK && i < j->n_turns; i++) {
            rc = wire_put_u8(out, (uint8_t)j->turns[i].role);
            rc = rc ? rc : wire_put_bytes(out, j->turns[i].content, j->turns[i].content_len);
            rc = rc ? rc : wire_put_i64(out, j->turns[i].ts);
            rc = rc ? rc : wire_put_u32(out, j->turns[i].seq);
        }
    }
    pthread_mutex_unlock(&js->lock);
    return rc;
}

static int job_lsn_cmp(const void *a, const void *b)
{
    const job *x = *(job *const *)a;
    const job *y = *(job *const *)b;
    return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

/* Decode one job from r; NULL (with r->err or ENOMEM) on failure. */
static job *job_decode(wire_reader *r)
{
    size_t n_id;
    size_t n_kind;
    size_t n_tenant;
    const char *id = wire_get_bytes(r, &n_id);
    const char *kind = wire_get_bytes(r, &n_kind);
    const char *tenant = wire_get_bytes(r, &n_tenant);
    char *session = wire_get_strdup(r);
    char *user = wire_get_strdup(r);
    uint8_t status = wire_get_u8(r);
    uint32_t attempts = wire_get_u32(r);
    size_t n_err;
    const char *err = wire_get_bytes(r, &n_err);
    int64_t created = wire_get_i64(r);
    uint64_t lsn = wire_get_u64(r);
    uint32_t n_turns = wire_get_u32(r);
    job *j = NULL;
    if (r->err || n_id == 0 || n_id >= STRATA_JOB_ID_LEN || n_kind == 0 || n_kind >= 32 ||
        n_tenant == 0 || n_tenant > AOL_MAX_TENANT || status > STRATA_JOB_FAILED ||
        n_turns > (r->len - r->off) / 17) {
        r->err = true;
        goto done;
    }
    char idz[STRATA_JOB_ID_LEN];
    char kindz[32];
    memcpy(idz, id, n_id);
    idz[n_id] = '\0';
    memcpy(kindz, kind, n_kind);
    kindz[n_kind] = '\0';
    j = job_new(idz, kindz, tenant, n_tenant, session, user, NULL, 0);
    if (j == NULL) {
        r->err = true;
        goto done;
    }
    j->status = (strata_job_status)status;
    j->attempts = attempts;
    snprintf(j->error, sizeof(j->error), "%.*s", (int)STRATA_MIN(n_err, 255), err ? err : "");
    j->created_ms = created;
    j->lsn = lsn;
    if (n_turns > 0) {
        j->turns = strata_calloc(n_turns, sizeof(strata_turn));
        if (j->turns == NULL) {
            r->err = true;
            goto done;
        }
    }
    for (uint32_t i = 0; i < n_turns; i++) {
        uint8_t role = wire_get_u8(r);
        size_t clen;
        const char *content = wire_get_bytes(r, &clen);
        int64_t ts = wire_get_i64(r);
        uint32_t seq = wire_get_u32(r);
        if (r->err || role > STRATA_ROLE_SYSTEM) {
            r->err = true;
            goto done;
        }
        j->turns[i].content = strata_strndup(content, clen);
        if (j->turns[i].content == NULL) {
            r->err = true;
            goto done;
        }
        j->turns[i].role = (strata_role)role;
        j->turns[i].content_len = clen;
        j->turns[i].ts = ts;
        j->turns[i].seq = seq;
        j->n_turns = i + 1;
    }
done:
    strata_free(session);
    strata_free(user);
    if (r->err && j != NULL) {
        job_free(j);
        j = NULL;
    }
    return j;
}

int jobs_snapshot_load(jobs *js, const void *data, size_t len)
{
    wire_reader r;
    wire_reader_init(&r, data, len);
    uint32_t version = wire_get_u32(&r);
    uint64_t count = wire_get_u64(&r);
    if (r.err || version != 1 || count > (len - r.off) / 40) {
        return strata_error(STRATA_ECORRUPT, "jobs snapshot: bad header");
    }
    job **all = count ? strata_calloc((size_t)count, sizeof(job *)) : NULL;
    if (count > 0 && all == NULL) {
        return STRATA_ENOMEM;
    }
    size_t n = 0;
    int rc = STRATA_OK;
    for (uint64_t i = 0; i < count; i++) {
        job *j = job_decode(&r);
        if (j == NULL) {
            rc = strata_error(STRATA_ECORRUPT, "jobs snapshot: bad job %llu",
                              (unsigned long long)i);
            break;
        }
        all[n++] = j;
    }
    if (rc == STRATA_OK && !wire_done(&r)) {
        rc = strata_error(STRATA_ECORRUPT, "jobs snapshot: trailing bytes");
    }
    if (rc != STRATA_OK) {
        for (size_t i = 0; i < n; i++) {
            job_free(all[i]);
        }
        strata_free(all);
        return rc;
    }
    if (n > 0) {
        qsort(all, n, sizeof(job *), job_lsn_cmp);
    }
    pthread_mutex_lock(&js->lock);
    for (size_t i = 0; i < n; i++) {
        job *j = all[i];
        if (dict_get(js->by_id, j->id, strlen(j->id)) != NULL ||
            dict_set(js->by_id, j->id, strlen(j->id), j) != STRATA_OK) {
            job_free(j);
            continue;
        }
        if (j->status == STRATA_JOB_QUEUED) {
            jobs_queue_push(js, j);
        } else if (j->status == STRATA_JOB_DONE) {
            js->n_done++;
            jobs_note_finished(js, j);
        } else {
            js->n_failed++;
            jobs_note_finished(js, j);
        }
    }
    pthread_cond_broadcast(&js->cond);
    pthread_mutex_unlock(&js->lock);
    strata_free(all);
    return STRATA_OK;
}

/* ---- workers ------------------------------------------------------------ */

static bool job_error_retryable(int rc)
{
    return rc == STRATA_EBUSY || rc == STRATA_ETIMEDOUT || rc == STRATA_EIO;
}

/* Caller holds js->lock. Is a job of the same tenant and user running? The
 * jobs of one user run one at a time, in LSN order, so the profile's
 * delta-merge sees their statements in the order the user made them. */
static bool jobs_user_busy(const jobs *js, const job *j)
{
    if (j->user_id[0] == '\0') {
        return false;
    }
    for (size_t i = 0; i < STRATA_ARRAY_LEN(js->active); i++) {
        const job *r = js->active[i];
        if (r != NULL && r != j && strcmp(r->user_id, j->user_id) == 0 &&
            strcmp(r->tenant, j->tenant) == 0) {
            return true;
        }
    }
    return false;
}

/* Caller holds js->lock. Pop the first job whose backoff has passed and
 * whose user has no job running; sets *wait_ms to the shortest remaining
 * backoff when none is ready. */
static job *jobs_pop_ready(jobs *js, int64_t now_ms, int64_t *wait_ms)
{
    *wait_ms = -1;
    job *prev = NULL;
    for (job *j = js->q_head; j != NULL; prev = j, j = j->next) {
        if (j->not_before_ms <= now_ms && js->n_running > 0 && jobs_user_busy(js, j)) {
            continue;
        }
        if (js->hold_user != NULL && strcmp(j->user_id, js->hold_user) == 0 &&
            strcmp(j->tenant, js->hold_tenant) == 0) {
            continue;
        }
        if (j->not_before_ms <= now_ms) {
            if (prev != NULL) {
                prev->next = j->next;
            } else {
                js->q_head = j->next;
            }
            if (js->q_tail == j) {
                js->q_tail = prev;
            }
            js->n_queued--;
            j->next = NULL;
            return j;
        }
        int64_t w = j->not_before_ms - now_ms;
        if (*wait_ms < 0 || w < *wait_ms) {
            *wait_ms = w;
        }
    }
    return NULL;
}

typedef struct worker_arg {
    jobs *js;
    unsigned slot;               /* this worker's index in js->active */
} worker_arg;

static void *jobs_worker_main(void *arg)
{
    worker_arg *wa = arg;
    jobs *js = wa->js;
    unsigned slot = wa->slot;
    strata_free(wa);
    pthread_mutex_lock(&js->lock);
    while (!js->stopping) {
        int64_t wait_ms;
        job *j = jobs_pop_ready(js, clock_now_ms(), &wait_ms);
        if (j == NULL) {
            if (wait_ms < 0) {
                pthread_cond_wait(&js->cond, &js->lock);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += wait_ms / 1000;
                ts.tv_nsec += (wait_ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&js->cond, &js->lock, &ts);
            }
            continue;
        }
        j->status = STRATA_JOB_RUNNING;
        j->attempts++;
        js->n_running++;
        js->active[slot] = j;
        job_handler h = {{0}, NULL, NULL};
        for (size_t i = 0; i < js->n_handlers; i++) {
            if (strcmp(js->handlers[i].kind, j->kind) == 0) {
                h = js->handlers[i];
            }
        }
        job_view view = {j->id, j->kind, j->tenant, j->session_id, j->user_id,
                         j->turns, j->n_turns, j->attempts};
        /* The job cannot be freed while running: only jobs_apply_finish ends
         * it, and that comes from this thread's finish call below. */
        pthread_mutex_unlock(&js->lock);

        char err[256] = "";
        int rc;
        if (h.fn == NULL) {
            snprintf(err, sizeof(err), "no handler for job kind %s", view.kind);
            rc = STRATA_EUNSUPPORTED;
        } else {
            rc = h.fn(h.ctx, &view, err, sizeof(err));
        }

        pthread_mutex_lock(&js->lock);
        js->active[slot] = NULL;
        pthread_cond_broadcast(&js->cond); /* a job of the same user may run now */
        if (rc != STRATA_OK && job_error_retryable(rc) && j->attempts < JOBS_MAX_ATTEMPTS &&
            !js->stopping) {
            js->n_running--;
            j->status = STRATA_JOB_QUEUED;
            int64_t backoff = STRATA_MIN(100LL << j->attempts, 30000LL);
            j->not_before_ms = clock_now_ms() + backoff;
            snprintf(j->error, sizeof(j->error), "%s", err);
            jobs_queue_push(js, j);
            continue;
        }
        if (rc != STRATA_OK && js->stopping && job_error_retryable(rc)) {
            /* Shutting down: leave it queued; the log still says queued. */
            js->n_running--;
            j->status = STRATA_JOB_QUEUED;
            jobs_queue_push(js, j);
            continue;
        }
        char id[STRATA_JOB_ID_LEN];
        char tenant[AOL_MAX_TENANT + 1];
        memcpy(id, j->id, sizeof(id));
        snprintf(tenant, sizeof(tenant), "%s", j->tenant);
        pthread_mutex_unlock(&js->lock);
        int frc = js->finish(js->finish_ctx, tenant, id, rc == STRATA_OK,
                             rc == STRATA_OK ? NULL : (err[0] ? err : strata_strerror(rc)));
        pthread_mutex_lock(&js->lock);
        if (frc != STRATA_OK) {
            /* The outcome could not be logged: keep the job visible as failed
             * in memory; the log still has it queued, so it runs after restart. */
            if (j->status == STRATA_JOB_RUNNING) {
                js->n_running--;
                j->status = STRATA_JOB_FAILED;
                snprintf(j->error, sizeof(j->error), "could not log job outcome");
                js->n_failed++;
                jobs_note_finished(js, j);
            }
        }
    }
    pthread_mutex_unlock(&js->lock);
    return NULL;
}

int jobs_start(jobs *js, unsigned n_workers, job_finish_fn finish, void *finish_ctx)
{
    if (n_workers == 0) {
        return STRATA_OK;
    }
    if (n_workers > STRATA_ARRAY_LEN(js->active)) {
        n_workers = STRATA_ARRAY_LEN(js->active);
    }
    js->workers = strata_calloc(n_workers, sizeof(pthread_t));
    if (js->workers == NULL) {
        return STRATA_ENOMEM;
    }
    js->finish = finish;
    js->finish_ctx = finish_ctx;
    js->stopping = false;
    for (unsigned i = 0; i < n_workers; i++) {
        worker_arg *wa = strata_malloc(sizeof(*wa));
        if (wa != NULL) {
            wa->js = js;
            wa->slot = i;
        }
        if (wa == NULL || pthread_create(&js->workers[i], NULL, jobs_worker_main, wa) != 0) {
            strata_free(wa);
            jobs_stop(js);
            return strata_error(STRATA_EIO, "cannot start job worker threads");
        }
        js->n_workers = i + 1;
    }
    return STRATA_OK;
}

void jobs_stop(jobs *js)
{
    pthread_mutex_lock(&js->lock);
    js->stopping = true;
    pthread_cond_broadcast(&js->cond);
    pthread_mutex_unlock(&js->lock);
    for (unsigned i = 0; i < js->n_workers; i++) {
        pthread_join(js->workers[i], NULL);
    }
    strata_free(js->workers);
    js->workers = NULL;
    js->n_workers = 0;
}

/* Caller holds js->lock. Is a job of (tenant, user) or of one of the
 * sessions running? */
static bool jobs_user_running(const jobs *js, const char *tenant, const char *user)
{
    for (size_t i = 0; i < STRATA_ARRAY_LEN(js->active); i++) {
        const job *r = js->active[i];
        if (r != NULL && strcmp(r->user_id, user) == 0 && strcmp(r->tenant, tenant) == 0) {
            return true;
        }
    }
    return false;
}

int jobs_hold_user(jobs *js, const char *tenant, const char *user)
{
    char *t = strata_strdup(tenant);
    char *u = strata_strdup(user);
    if (t == NULL || u == NULL) {
        strata_free(t);
        strata_free(u);
        return strata_error(STRATA_ENOMEM, "out of memory holding jobs");
    }
    pthread_mutex_lock(&js->lock);
    strata_free(js->hold_tenant);
    strata_free(js->hold_user);
    js->hold_tenant = t;
    js->hold_user = u;
    /* Workers broadcast `cond` whenever a job ends. */
    while (jobs_user_running(js, tenant, user)) {
        pthread_cond_wait(&js->cond, &js->lock);
    }
    pthread_mutex_unlock(&js->lock);
    return STRATA_OK;
}

void jobs_release(jobs *js)
{
    pthread_mutex_lock(&js->lock);
    strata_free(js->hold_tenant);
    strata_free(js->hold_user);
    js->hold_tenant = NULL;
    js->hold_user = NULL;
    pthread_cond_broadcast(&js->cond);
    pthread_mutex_unlock(&js->lock);
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

size_t jobs_apply_forget(jobs *js, const char *tenant, const char *user,
                         const char *const *sessions, size_t n_sessions)
{
    size_t removed = 0;
    pthread_mutex_lock(&js->lock);
    dict_iter it;
    const char *key;
    size_t klen;
    void *val;
    /* Collect first: deleting while iterating is not allowed. */
    job **doomed = NULL;
    size_t n = 0;
    size_t cap = 0;
    dict_iter_init(&it, js->by_id);
    while (dict_next(&it, &key, &klen, &val)) {
        job *j = val;
        if (strcmp(j->tenant, tenant) != 0 || j->status == STRATA_JOB_RUNNING) {
            continue;
        }
        if (strcmp(j->user_id, user) != 0 &&
            !(j->session_id[0] && in_list(j->session_id, sessions, n_sessions))) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            job **nd = strata_realloc(doomed, ncap * sizeof(*nd));
            if (nd == NULL) {
                break; /* the rest stay; their content is erased with the log */
            }
            doomed = nd;
            cap = ncap;
        }
        doomed[n++] = j;
    }
    for (size_t i = 0; i < n; i++) {
        job *j = doomed[i];
        if (j->status == STRATA_JOB_QUEUED) {
            jobs_queue_remove(js, j);
        }
        /* A finished id left in the ring is harmless: its eviction is a
         * delete of a missing key. */
        dict_delete(js->by_id, j->id, strlen(j->id));
        removed++;
    }
    strata_free(doomed);
    pthread_mutex_unlock(&js->lock);
    return removed;
}

void jobs_owner(jobs *js, const char *job_id, char user[STRATA_ID_MAX + 1])
{
    user[0] = '\0';
    pthread_mutex_lock(&js->lock);
    const job *j = dict_get(js->by_id, job_id, strlen(job_id));
    if (j != NULL) {
        snprintf(user, STRATA_ID_MAX + 1, "%s", j->user_id);
    }
    pthread_mutex_unlock(&js->lock);
}
