/*
 * forget.c - the right to be forgotten (brief §3.2): DELETE /user/{id}/memory.
 *
 * One user's data leaves every tier and every file:
 *
 *   1. jobs_hold_user: no job of the user starts; running ones finish first
 *      (a consolidation half way through must not write memories afterwards).
 *   2. Under write_lock the cascade is decided from the current state: the
 *      user's L1 sessions, and the L3 nodes that are only theirs (the
 *      user:<id> node and every node whose edges, current or expired, lead
 *      only to such nodes). One AOL_USER_FORGET record names them; applying it
 *      (here, and again on replay) removes those sessions and the dirty set,
 *      every L2 memory of the user, those nodes with their edges, the profile
 *      with its history, clarifications and distillation queue, and the jobs
 *      with their copied turns.
 *   3. Compaction: every earlier record of the user in the event log becomes
 *      an AOL_NOOP of the same LSN (aol_erase): turns and session records of
 *      their sessions, dirty sets, memories, profile and distillation records,
 *      graph records of the removed nodes, their jobs' records.
 *   4. A snapshot of every tier is taken and every older snapshot removed.
 *   5. The AOL_USER_FORGET record itself is erased last.
 *
 * Crash safety: <data>/forget-<lsn>.pending exists from step 3 to the end.
 * Until step 5 the AOL_USER_FORGET record is in the log, so a restart from an
 * older snapshot re-applies the deletion when it replays it; on open, a
 * pending file makes forget_resume() redo steps 3-5 from that record.
 *
 *   AOL_USER_FORGET  str user | u32 n | n x str session | u32 m | m x str node id
 *
 * Records from after the AOL_USER_FORGET record (a new session of the same
 * user id, say) are new data and are kept. Generic store (kv) entries are
 * keyed by the client and are not attributed to users.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/pipeline.h"
#include "pipeline/repl.h"
#include "pipeline/replay_stream.h"

#define FORGET_MAX_LIST (1u << 20)

static const char *const SNAP_TIERS[] = {"l1", "kv", "jobs", "l2", "l3", "profile", "keys"};

/* ---- the cascade ----------------------------------------------------------- */

typedef struct strvec {
    char **v;
    size_t n;
    size_t cap;
} strvec;

static void strvec_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++) {
        strata_free(s->v[i]);
    }
    strata_free(s->v);
    memset(s, 0, sizeof(*s));
}

static int strvec_push(strvec *s, const char *x)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 8;
        char **nv = strata_realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory forgetting a user");
        }
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n] = strata_strdup(x);
    if (s->v[s->n] == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory forgetting a user");
    }
    s->n++;
    return STRATA_OK;
}

/* The user's sessions present in L1. Caller holds write_lock. */
static int collect_sessions(strata_db *db, const char *tenant, const char *user, strvec *out)
{
    l1_session_ref *refs = NULL;
    size_t n = 0;
    int rc = db->l1->ops->session_list_idle(db->l1, INT64_MAX, FORGET_MAX_LIST, &refs, &n);
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        if (strcmp(refs[i].tenant, tenant) != 0) {
            continue;
        }
        strata_session *s = NULL;
        if (db->l1->ops->session_get(db->l1, tenant, refs[i].session_id, &s) == STRATA_OK &&
            strcmp(s->user_id, user) == 0) {
            rc = strvec_push(out, refs[i].session_id);
        }
        strata_session_free(s);
    }
    l1_session_refs_free(refs, n);
    return rc;
}

/* user:<id> and the nodes that are only theirs: the largest set of the user
 * node's neighbours whose every neighbour is the user node or in the set.
 * Caller holds write_lock. */
static int collect_nodes(strata_db *db, const char *tenant, const char *user, strvec *out)
{
    char user_node[STRATA_ID_MAX + 8];
    snprintf(user_node, sizeof(user_node), "user:%s", user);
    if (!strata_id_valid(user_node, strlen(user_node)) ||
        db->l3->ops->node_exists(db->l3, tenant, user_node) != STRATA_OK) {
        return STRATA_OK;
    }
    graph_ids cand;
    int rc = db->l3->ops->neighbors(db->l3, tenant, user_node, &cand);
    if (rc != STRATA_OK) {
        return rc;
    }
    bool *keep = strata_calloc(cand.n ? cand.n : 1, sizeof(bool));
    graph_ids *nbrs = strata_calloc(cand.n ? cand.n : 1, sizeof(graph_ids));
    if (keep == NULL || nbrs == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory forgetting a user");
    }
    for (size_t i = 0; rc == STRATA_OK && i < cand.n; i++) {
        keep[i] = true;
        rc = db->l3->ops->neighbors(db->l3, tenant, cand.ids[i], &nbrs[i]);
    }
    /* Shrink to the fixpoint: drop a candidate with a neighbour outside. */
    for (bool changed = true; rc == STRATA_OK && changed;) {
        changed = false;
        for (size_t i = 0; i < cand.n; i++) {
            for (size_t k = 0; keep[i] && k < nbrs[i].n; k++) {
                const char *nb = nbrs[i].ids[k];
                bool inside = strcmp(nb, user_node) == 0;
                for (size_t j = 0; !inside && j < cand.n; j++) {
                    inside = keep[j] && strcmp(cand.ids[j], nb) == 0;
                }
                if (!inside) {
                    keep[i] = false;
                    changed = true;
                }
            }
        }
    }
    rc = rc ? rc : strvec_push(out, user_node);
    for (size_t i = 0; rc == STRATA_OK && i < cand.n; i++) {
        if (keep[i]) {
            rc = strvec_push(out, cand.ids[i]);
        }
    }
    for (size_t i = 0; nbrs != NULL && i < cand.n; i++) {
        graph_ids_free(&nbrs[i]);
    }
    strata_free(nbrs);
    strata_free(keep);
    graph_ids_free(&cand);
    return rc;
}

typedef struct forget_spec {
    char *user;
    strvec sessions;
    strvec nodes;
} forget_spec;

static void forget_spec_free(forget_spec *f)
{
    strata_free(f->user);
    strvec_free(&f->sessions);
    strvec_free(&f->nodes);
    memset(f, 0, sizeof(*f));
}

static int spec_decode(wire_reader *r, forget_spec *f)
{
    memset(f, 0, sizeof(*f));
    f->user = wire_get_strdup(r);
    int rc = f->user ? STRATA_OK : STRATA_ECORRUPT;
    for (int list = 0; rc == STRATA_OK && list < 2; list++) {
        uint32_t n = wire_get_u32(r);
        if (r->err || n > FORGET_MAX_LIST) {
            rc = STRATA_ECORRUPT;
        }
        for (uint32_t i = 0; rc == STRATA_OK && i < n; i++) {
            char *s = wire_get_strdup(r);
            rc = s ? strvec_push(list ? &f->nodes : &f->sessions, s) : STRATA_ECORRUPT;
            strata_free(s);
        }
    }
    if (rc == STRATA_OK && !wire_done(r)) {
        rc = STRATA_ECORRUPT;
    }
    if (rc != STRATA_OK) {
        forget_spec_free(f);
    }
    return rc;
}

int db_apply_forget(strata_db *db, const aol_record *rec, const char *tenant, wire_reader *r,
                    unsigned tiers)
{
    (void)rec;
    forget_spec f;
    int rc = spec_decode(r, &f);
    if (rc != STRATA_OK) {
        return rc;
    }
    strata_forget_receipt got = {0};
    if (tiers & FORGET_TIER_L1) {
        for (size_t i = 0; rc == STRATA_OK && i < f.sessions.n; i++) {
            int d = db->l1->ops->session_delete(db->l1, tenant, f.sessions.v[i]);
            got.l1 += d == STRATA_OK;
            rc = d == STRATA_ENOTFOUND || d == STRATA_OK ? STRATA_OK : d;
        }
        strata_strlist *dirty = NULL;
        if (rc == STRATA_OK && db->l1->ops->dirty_get(db->l1, tenant, f.user, &dirty) == STRATA_OK) {
            got.dirty = dirty->n;
        }
        strata_strlist_free(dirty);
        rc = rc ? rc : db->l1->ops->dirty_clear(db->l1, tenant, f.user);
    }
    if (rc == STRATA_OK && (tiers & FORGET_TIER_L2)) {
        uint64_t *ids = NULL;
        size_t n = 0;
        rc = db->l2->ops->list_user(db->l2, tenant, f.user, &ids, &n);
        for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
            int d = db->l2->ops->remove(db->l2, tenant, f.user, ids[i]);
            got.l2 += d == STRATA_OK;
            rc = d == STRATA_ENOTFOUND || d == STRATA_OK ? STRATA_OK : d;
        }
        strata_free(ids);
    }
    if (rc == STRATA_OK && (tiers & FORGET_TIER_L3)) {
        for (size_t i = 0; rc == STRATA_OK && i < f.nodes.n; i++) {
            size_t edges = 0;
            int d = db->l3->ops->node_delete(db->l3, tenant, f.nodes.v[i], &edges);
            got.l3 += d == STRATA_OK ? 1 + edges : 0;
            rc = d == STRATA_ENOTFOUND || d == STRATA_OK ? STRATA_OK : d;
        }
    }
    if (rc == STRATA_OK && (tiers & FORGET_TIER_PROFILE)) {
        size_t n = 0;
        rc = profile_forget(db->profile, tenant, f.user, &n);
        got.profile = n;
    }
    if (rc == STRATA_OK && (tiers & FORGET_TIER_JOBS)) {
        got.jobs = jobs_apply_forget(db->jobs, tenant, f.user, (const char *const *)f.sessions.v,
                                     f.sessions.n);
    }
    db->forget_last = got;
    forget_spec_free(&f);
    return rc;
}

/* ---- compaction ------------------------------------------------------------ */

typedef struct erase_ctx {
    strata_db *db;
    sbuf scratch;             /* plaintext of a sealed record */
    const char *tenant;
    size_t tenant_len;
    const forget_spec *spec;
    strvec sessions;          /* the record's, plus every session of theirs in the log */
    dict *jobs;               /* ids of jobs born from an erased record */
    uint64_t forget_lsn;      /* records after it are new data */
    bool only_forget_record;  /* the last step: just the AOL_USER_FORGET itself */
} erase_ctx;

/* The first string field of a payload, as a borrowed span. */
static bool first_str(const aol_record *rec, wire_reader *r, const char **s, size_t *n)
{
    wire_reader_init(r, rec->payload, rec->payload_len);
    *s = wire_get_bytes(r, n);
    return !r->err;
}

static bool span_is(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(s, want, n) == 0;
}

static bool span_in(const strvec *v, const char *s, size_t n)
{
    for (size_t i = 0; i < v->n; i++) {
        if (span_is(s, n, v->v[i])) {
            return true;
        }
    }
    return false;
}

/* Does rec belong to the user being forgotten? */
static bool record_is_theirs(erase_ctx *c, const aol_record *rec)
{
    wire_reader r;
    const char *a;
    size_t an;
    if (!first_str(rec, &r, &a, &an)) {
        return false;
    }
    const char *user = c->spec->user;
    switch (rec->type) {
    case AOL_TURN: {
        size_t un;
        const char *u = wire_get_bytes(&r, &un);
        return span_in(&c->sessions, a, an) || (!r.err && span_is(u, un, user));
    }
    case AOL_SESSION_STAGE:
    case AOL_SESSION_END:
    case AOL_SESSION_EXPIRE:
        return span_in(&c->sessions, a, an);
    case AOL_JOB_ENQUEUE: {
        size_t sn;
        size_t un;
        const char *s = wire_get_bytes(&r, &sn);
        const char *u = wire_get_bytes(&r, &un);
        return !r.err && (span_is(u, un, user) || (sn > 0 && span_in(&c->sessions, s, sn)));
    }
    case AOL_JOB_DONE:
    case AOL_JOB_FAILED:
        return dict_get(c->jobs, a, an) != NULL;
    case AOL_GRAPH_NODE_PUT:
    case AOL_GRAPH_NODE_DELETE:
        return span_in(&c->spec->nodes, a, an);
    case AOL_GRAPH_EDGE_PUT:
    case AOL_GRAPH_EDGE_EXPIRE: {
        size_t bn;
        const char *b = wire_get_bytes(&r, &bn);
        return span_in(&c->spec->nodes, a, an) || (!r.err && span_in(&c->spec->nodes, b, bn));
    }
    default:
        return db_type_user_first(rec->type) && span_is(a, an, user);
    }
}

static bool erase_pick(void *ctx, const aol_record *rec)
{
    erase_ctx *c = ctx;
    if (rec->lsn > c->forget_lsn || rec->tenant_len != c->tenant_len ||
        memcmp(rec->tenant, c->tenant, c->tenant_len) != 0) {
        return false;
    }
    if (c->only_forget_record) {
        return rec->lsn == c->forget_lsn;
    }
    aol_record plain;
    /* A record whose key is already shredded is unreadable: nothing to match. */
    if (rec->lsn == c->forget_lsn || db_unseal(c->db, rec, &c->scratch, &plain) != STRATA_OK ||
        !record_is_theirs(c, &plain)) {
        return false;
    }
    /* Jobs born from this record finish in later records: erase those too. */
    char id[STRATA_JOB_ID_LEN];
    job_id_format(id, rec->lsn);
    dict_set(c->jobs, id, strlen(id), (void *)1);
    return true;
}

/* Pass 1: every session the user ever wrote a turn in (expired ones too). */
static int collect_cb(void *ctx, const aol_record *rec)
{
    erase_ctx *c = ctx;
    if (rec->type != AOL_TURN || rec->lsn > c->forget_lsn || rec->tenant_len != c->tenant_len ||
        memcmp(rec->tenant, c->tenant, c->tenant_len) != 0) {
        return 0;
    }
    aol_record plain;
    if (db_unseal(c->db, rec, &c->scratch, &plain) != STRATA_OK) {
        return 0;
    }
    rec = &plain;
    wire_reader r;
    const char *s;
    size_t sn;
    if (!first_str(rec, &r, &s, &sn)) {
        return 0;
    }
    size_t un;
    const char *u = wire_get_bytes(&r, &un);
    if (r.err || !span_is(u, un, c->spec->user) || span_in(&c->sessions, s, sn)) {
        return 0;
    }
    char *copy = strata_strndup(s, sn);
    int rc = copy ? strvec_push(&c->sessions, copy) : STRATA_ENOMEM;
    strata_free(copy);
    return rc;
}

static void pending_path(const strata_db *db, uint64_t lsn, char *out, size_t cap)
{
    snprintf(out, cap, "%s/forget-%020" PRIu64 ".pending", db->data_dir, lsn);
}

static int pending_create(strata_db *db, uint64_t lsn)
{
    char path[4200];
    pending_path(db, lsn, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || log_fdatasync(fd) != 0) {
        int rc = log_io_error("cannot create", path);
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    close(fd);
    return log_fsync_dir(db->data_dir) == 0 ? STRATA_OK
                                            : log_io_error("cannot fsync", db->data_dir);
}

/* Crash tests: STRATA_FAILPOINT=<name> makes the process die here, as a
 * power cut would, so a test can check the next start finishes the work. */
static void failpoint(const char *name)
{
    const char *fp = getenv("STRATA_FAILPOINT");
    if (fp != NULL && strcmp(fp, name) == 0) {
        slog(SLOG_WARN, "failpoint %s: exiting", name);
        _exit(99);
    }
}

/* ---- replicas --------------------------------------------------------------- */

#define REPLICA_FRESH_MS 30000     /* a replica polled this recently is attached */
#define REPLICA_WAIT_MS 10000      /* how long a deletion waits for them */

void forget_note_replica(strata_db *db, uint64_t id, uint64_t after)
{
    int64_t now = clock_now_ms();
    pthread_mutex_lock(&db->replicas_lock);
    size_t slot = 0;
    for (size_t i = 0; i < STRATA_ARRAY_LEN(db->replicas); i++) {
        if (db->replicas[i].id == id) {
            slot = i;
            break;
        }
        if (db->replicas[i].seen_ms < db->replicas[slot].seen_ms) {
            slot = i; /* otherwise the stalest slot is reused */
        }
    }
    db->replicas[slot].id = id;
    db->replicas[slot].after = after;
    db->replicas[slot].seen_ms = now;
    pthread_mutex_unlock(&db->replicas_lock);
}

/* Is an attached replica still before lsn? */
static bool replicas_behind(strata_db *db, uint64_t lsn)
{
    int64_t now = clock_now_ms();
    bool behind = false;
    pthread_mutex_lock(&db->replicas_lock);
    for (size_t i = 0; i < STRATA_ARRAY_LEN(db->replicas); i++) {
        behind |= db->replicas[i].id != 0 && now - db->replicas[i].seen_ms < REPLICA_FRESH_MS &&
                  db->replicas[i].after < lsn;
    }
    pthread_mutex_unlock(&db->replicas_lock);
    return behind;
}

/* Step 5: erase the deletion's own record and drop the pending mark. */
static int forget_finish(strata_db *db, const char *tenant, uint64_t lsn)
{
    erase_ctx c;
    memset(&c, 0, sizeof(c));
    c.db = db;
    c.tenant = tenant;
    c.tenant_len = strlen(tenant);
    c.forget_lsn = lsn;
    c.only_forget_record = true;
    uint64_t n = 0;
    int rc = aol_erase(db->log, erase_pick, &c, &n);
    if (rc == STRATA_OK && db->replay != NULL) {
        rc = replay_stream_erase(db->replay, erase_pick, &c, &n);
    }
    if (rc == STRATA_OK) {
        char path[4200];
        pending_path(db, lsn, path, sizeof(path));
        if (unlink(path) != 0 || log_fsync_dir(db->data_dir) != 0) {
            rc = log_io_error("cannot remove", path);
        }
    }
    return rc;
}

/* The deletion's own record is the only way a replica learns of it, so with
 * replicas attached and behind it, step 5 waits (in the background, never
 * holding a request) until they fetched it, at most REPLICA_WAIT_MS; one that
 * did not by then is reported: it keeps the user until bootstrapped again. */
void forget_tick(strata_db *db)
{
    pthread_mutex_lock(&db->forget_lock);
    int64_t now = clock_now_ms();
    size_t kept = 0;
    for (size_t i = 0; i < db->n_forget_deferred; i++) {
        uint64_t lsn = db->forget_deferred[i].lsn;
        bool late = now - db->forget_deferred[i].since_ms > REPLICA_WAIT_MS;
        if (replicas_behind(db, lsn) && !late) {
            db->forget_deferred[kept++] = db->forget_deferred[i];
            continue;
        }
        if (late) {
            slog(SLOG_WARN, "a replica did not fetch the right-to-be-forgotten at LSN %" PRIu64
                            " within %d ms: it keeps that user's data until re-bootstrapped",
                 lsn, REPLICA_WAIT_MS);
        }
        if (forget_finish(db, db->forget_deferred[i].tenant, lsn) != STRATA_OK) {
            slog(SLOG_ERROR, "finishing the right-to-be-forgotten at LSN %" PRIu64 ": %s", lsn,
                 strata_errmsg());
            db->forget_deferred[kept++] = db->forget_deferred[i]; /* try again */
        }
    }
    db->n_forget_deferred = kept;
    pthread_mutex_unlock(&db->forget_lock);
}

/* Steps 3-5 for the AOL_USER_FORGET record at lsn. */
static int forget_compact(strata_db *db, const char *tenant, const forget_spec *spec,
                          uint64_t lsn, uint32_t max_key_id, uint64_t *erased_out)
{
    *erased_out = 0;
    int rc = pending_create(db, lsn);
    if (rc != STRATA_OK) {
        return rc;
    }
    erase_ctx c;
    memset(&c, 0, sizeof(c));
    c.db = db;
    sbuf_init(&c.scratch, AOL_MAX_PAYLOAD);
    c.tenant = tenant;
    c.tenant_len = strlen(tenant);
    c.spec = spec;
    c.forget_lsn = lsn;
    c.jobs = dict_create(NULL);
    rc = c.jobs ? STRATA_OK : strata_error(STRATA_ENOMEM, "out of memory forgetting a user");
    for (size_t i = 0; rc == STRATA_OK && i < spec->sessions.n; i++) {
        rc = strvec_push(&c.sessions, spec->sessions.v[i]);
    }
    rc = rc ? rc : aol_scan_dir(db->log_dir, collect_cb, &c, NULL);
    uint64_t erased = 0;
    rc = rc ? rc : aol_erase(db->log, erase_pick, &c, &erased);
    /* The optional copy of the log on a Redis Stream holds them too. */
    if (rc == STRATA_OK && db->replay != NULL) {
        uint64_t n = 0;
        rc = replay_stream_erase(db->replay, erase_pick, &c, &n);
        if (rc != STRATA_OK) {
            rc = strata_error(rc, "replay stream: %s", strata_errmsg());
        }
    }
    failpoint("forget-after-erase");
    /* Every older snapshot holds the user: replace them all. */
    rc = rc ? rc : strata_db_snapshot(db);
    for (size_t i = 0; rc == STRATA_OK && i < STRATA_ARRAY_LEN(SNAP_TIERS); i++) {
        rc = snap_prune(db->snap_dir, SNAP_TIERS[i], 1);
    }
    /* The archived sets for point-in-time restore hold the user too. */
    rc = rc ? rc : db_archive_drop(db);
    /* Crypto-shredding: copies elsewhere (backups, archived snapshots) of the
     * user's records and of the older snapshots become unreadable. */
    if (rc == STRATA_OK) {
        rc = db_crypto_forget(db, tenant, spec->user, max_key_id, db->snap_lsn_l2);
    }
    bool defer = rc == STRATA_OK && db->cfg.background && replicas_behind(db, lsn) &&
                 db->n_forget_deferred < STRATA_ARRAY_LEN(db->forget_deferred);
    if (defer) {
        /* caller holds forget_lock */
        db->forget_deferred[db->n_forget_deferred].lsn = lsn;
        db->forget_deferred[db->n_forget_deferred].since_ms = clock_now_ms();
        snprintf(db->forget_deferred[db->n_forget_deferred].tenant,
                 sizeof(db->forget_deferred[0].tenant), "%s", tenant);
        db->n_forget_deferred++;
    } else if (rc == STRATA_OK) {
        rc = forget_finish(db, tenant, lsn);
    }
    dict_free(c.jobs);
    strvec_free(&c.sessions);
    sbuf_free(&c.scratch);
    *erased_out = erased; /* the user's records; not the deletion's own */
    return rc;
}

/* ---- the operation --------------------------------------------------------- */

typedef struct forget_call {
    const char *tenant;
    const char *user;
    sbuf *payload;
    forget_spec spec;
    uint32_t old_key_max;     /* the user's data keys the deletion shreds: ids <= this */
} forget_call;

/* Runs under write_lock before the record is logged: decide the cascade from
 * the current state and encode it into the payload db_write is about to log. */
static int forget_precheck(strata_db *db, void *arg)
{
    forget_call *fc = arg;
    /* The record will take the next LSN (every append holds write_lock): mark
     * it pending before it exists, so no crash point can leave it unfinished. */
    aol_stats st;
    aol_stats_get(db->log, &st);
    int rc = pending_create(db, st.last_lsn + 1);
    /* Writes of this user id from now on are new data: a new key for them. */
    rc = rc ? rc : db_crypto_renew_user(db, fc->tenant, fc->user, &fc->old_key_max);
    rc = rc ? rc : collect_sessions(db, fc->tenant, fc->user, &fc->spec.sessions);
    rc = rc ? rc : collect_nodes(db, fc->tenant, fc->user, &fc->spec.nodes);
    rc = rc ? rc : wire_put_str(fc->payload, fc->user);
    rc = rc ? rc : wire_put_u32(fc->payload, (uint32_t)fc->spec.sessions.n);
    for (size_t i = 0; rc == STRATA_OK && i < fc->spec.sessions.n; i++) {
        rc = wire_put_str(fc->payload, fc->spec.sessions.v[i]);
    }
    rc = rc ? rc : wire_put_u32(fc->payload, (uint32_t)fc->spec.nodes.n);
    for (size_t i = 0; rc == STRATA_OK && i < fc->spec.nodes.n; i++) {
        rc = wire_put_str(fc->payload, fc->spec.nodes.v[i]);
    }
    return rc;
}

int strata_forget_user(strata_db *db, const char *tenant, const char *user_id,
                       strata_forget_receipt *out)
{
    memset(out, 0, sizeof(*out));
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    pthread_mutex_lock(&db->forget_lock);
    rc = jobs_hold_user(db->jobs, tenant, user_id);
    if (rc != STRATA_OK) {
        pthread_mutex_unlock(&db->forget_lock);
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    forget_call fc = {tenant, user_id, &payload, {NULL, {0}, {0}}, 0};
    fc.spec.user = strata_strdup(user_id);
    uint64_t lsn = 0;
    rc = fc.spec.user ? STRATA_OK : STRATA_ENOMEM;
    /* forget_precheck fills `payload` under the lock, before db_write reads it. */
    rc = rc ? rc : db_write(db, AOL_USER_FORGET, tenant, &payload, forget_precheck, &fc, &lsn);
    if (rc == STRATA_OK) {
        *out = db->forget_last; /* set by the apply; forget_lock keeps it ours */
        rc = forget_compact(db, tenant, &fc.spec, lsn, fc.old_key_max, &out->log);
    }
    if (rc == STRATA_OK) {
        atomic_fetch_add(&db->users_forgotten, 1);
        atomic_fetch_add(&db->forget_records_erased, out->log);
        slog(SLOG_INFO, "forgot a user of tenant %s: l1 %" PRIu64 ", l2 %" PRIu64
                        ", l3 %" PRIu64 ", log %" PRIu64 " records",
             tenant, out->l1, out->l2, out->l3, out->log);
    }
    sbuf_free(&payload);
    forget_spec_free(&fc.spec);
    jobs_release(db->jobs);
    pthread_mutex_unlock(&db->forget_lock);
    return rc;
}

/* ---- recovery -------------------------------------------------------------- */

typedef struct find_ctx {
    strata_db *db;
    uint64_t lsn;
    bool found;
    char tenant[AOL_MAX_TENANT + 1];
    forget_spec spec;
} find_ctx;

static int find_cb(void *ctx, const aol_record *sealed)
{
    find_ctx *f = ctx;
    if (sealed->lsn != f->lsn) {
        return 0;
    }
    sbuf scratch;
    sbuf_init(&scratch, AOL_MAX_PAYLOAD);
    aol_record plain;
    const aol_record *rec = &plain;
    if (sealed->type == AOL_USER_FORGET && db_unseal(f->db, sealed, &scratch, &plain) == STRATA_OK) {
        wire_reader r;
        wire_reader_init(&r, rec->payload, rec->payload_len);
        if (spec_decode(&r, &f->spec) == STRATA_OK) {
            memcpy(f->tenant, rec->tenant, rec->tenant_len);
            f->tenant[rec->tenant_len] = '\0';
            f->found = true;
        }
    }
    sbuf_free(&scratch);
    return 1; /* stop: found the LSN */
}

int forget_resume(strata_db *db)
{
    DIR *d = opendir(db->data_dir);
    if (d == NULL) {
        return STRATA_OK;
    }
    int rc = STRATA_OK;
    struct dirent *e;
    while (rc == STRATA_OK && (e = readdir(d)) != NULL) {
        uint64_t lsn = 0;
        if (sscanf(e->d_name, "forget-%20" SCNu64 ".pending", &lsn) != 1 || lsn == 0) {
            continue;
        }
        find_ctx f;
        memset(&f, 0, sizeof(f));
        f.db = db;
        f.lsn = lsn;
        int s = aol_scan_dir(db->log_dir, find_cb, &f, NULL);
        if (s < 0 && s != 1) {
            rc = s;
            break;
        }
        if (f.found) {
            uint64_t erased = 0;
            slog(SLOG_WARN, "finishing an interrupted right-to-be-forgotten (log record %" PRIu64
                            ")", lsn);
            rc = forget_compact(db, f.tenant, &f.spec, lsn, UINT32_MAX, &erased);
            forget_spec_free(&f.spec);
        } else {
            /* The record is already erased: only the file was left. */
            char path[4200];
            pending_path(db, lsn, path, sizeof(path));
            unlink(path);
        }
    }
    closedir(d);
    return rc;
}

int forget_after_apply(strata_db *db, const aol_record *plain)
{
    forget_spec f;
    wire_reader r;
    wire_reader_init(&r, plain->payload, plain->payload_len);
    int rc = spec_decode(&r, &f);
    if (rc != STRATA_OK) {
        return strata_error(rc, "log record %" PRIu64 ": malformed deletion", plain->lsn);
    }
    char tenant[AOL_MAX_TENANT + 1];
    memcpy(tenant, plain->tenant, plain->tenant_len);
    tenant[plain->tenant_len] = '\0';
    uint64_t erased = 0;
    pthread_mutex_lock(&db->forget_lock);
    rc = forget_compact(db, tenant, &f, plain->lsn, UINT32_MAX, &erased);
    pthread_mutex_unlock(&db->forget_lock);
    if (rc == STRATA_OK) {
        atomic_fetch_add(&db->users_forgotten, 1);
        atomic_fetch_add(&db->forget_records_erased, erased);
    }
    forget_spec_free(&f);
    return rc;
}
