/*
 * pipeline.h - the internal header of src/pipeline, where the tiers meet:
 * the database handle (db.c: log first, then apply, in log order), the
 * generic key-value store (kv.c), and the durable job queue (jobs.c).
 *
 * Write path of every mutation:
 *
 *   request thread                      db->write_lock held
 *   ---------------                     -------------------
 *   validate (no lock)
 *   lock ----------------------------->  precheck against current state
 *                                        aol_append (LSN n, bytes queued)
 *                                        apply to the in-memory tier(s)
 *   unlock <--------------------------
 *   aol_wait(n)  (group commit, no lock held)
 *   acknowledge
 *
 * So the in-memory tiers always equal "the log up to last_lsn" and a replay
 * of the log reproduces them exactly. A reader may see a write a few
 * microseconds before it is durable; it is never acknowledged before that.
 */
#ifndef STRATA_PIPELINE_H
#define STRATA_PIPELINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/core.h"
#include "l1/l1.h"
#include "l2/l2.h"
#include "l3/l3.h"
#include "pipeline/profile.h"
#include "privacy/keys.h"
#include "log/log.h"

/* ---- generic key-value store (kv.c) ---------------------------------- */
typedef struct kv_store kv_store;

kv_store *kv_create(void);
void kv_free(kv_store *kv);
/* Caller holds db->write_lock for writes. Thread-safe for readers (own rwlock). */
int kv_apply_put(kv_store *kv, const char *tenant, size_t tenant_len, strata_tier tier,
                 const char *key, size_t key_len, const char *val, size_t val_len);
int kv_apply_delete(kv_store *kv, const char *tenant, size_t tenant_len, strata_tier tier,
                    const char *key, size_t key_len);
int kv_get(kv_store *kv, const char *tenant, strata_tier tier, const char *key, char **val_out,
           size_t *len_out);
uint64_t kv_count(kv_store *kv);
int kv_snapshot_write(kv_store *kv, sbuf *out);
int kv_snapshot_load(kv_store *kv, const void *data, size_t len);

/* ---- jobs (jobs.c) ---------------------------------------------------- */
/*
 * A job is born from a log record (a turn that reaches the consolidation
 * interval, a session end or expiry, a distill request): its id is derived
 * from that record's LSN, so a replay re-creates the same job. Its input (the
 * turns to consolidate) is copied into the job when the record is applied.
 * Finishing a job logs AOL_JOB_DONE / AOL_JOB_FAILED; a job without one after
 * a restart runs again, and handlers are idempotent, so the effect is once.
 */
typedef struct jobs jobs;


/* What a handler sees. Pointers are valid during the call. */
typedef struct job_view {
    const char *id;
    const char *kind;
    const char *tenant;
    const char *session_id;     /* "" if none */
    const char *user_id;        /* "" if none */
    const strata_turn *turns;   /* input turns, oldest first */
    size_t n_turns;
    uint32_t attempt;           /* 1 on the first run */
} job_view;

/* Returns STRATA_OK, or an error with errbuf filled; retryable errors
 * (STRATA_EBUSY, STRATA_ETIMEDOUT, STRATA_EIO) are retried with backoff. */
typedef int (*job_handler_fn)(void *ctx, const job_view *view, char *errbuf, size_t errcap);

void job_id_format(char out[STRATA_JOB_ID_LEN], uint64_t lsn);

jobs *jobs_create(void);
void jobs_free(jobs *js);
/* Register the handler of a kind (before jobs_start). */
int jobs_register(jobs *js, const char *kind, job_handler_fn fn, void *ctx);

/* Apply side (caller holds db->write_lock): create a queued job. turns are
 * copied. Idempotent on id. */
int jobs_apply_enqueue(jobs *js, uint64_t lsn, const char *kind, const char *tenant,
                       size_t tenant_len, const char *session_id, const char *user_id,
                       const strata_turn *turns, size_t n_turns, int64_t created_ms);
/* Apply a JOB_DONE/JOB_FAILED record. Unknown ids are ignored (pruned jobs). */
void jobs_apply_finish(jobs *js, const char *job_id, bool ok, const char *error);

int jobs_get(jobs *js, const char *tenant, const char *job_id, strata_job_info *out);
void jobs_counts(jobs *js, uint64_t *queued, uint64_t *running, uint64_t *done,
                 uint64_t *failed);

/* Right to be forgotten. jobs_hold_user: no job of (tenant, user) starts
 * from now until jobs_release, and it returns once none is running (call it
 * without db->write_lock: running jobs need it to finish). jobs_apply_forget
 * (apply side) drops every job of the user or of one of the sessions, queued
 * or finished, with its copied turns; returns how many. */
/* The user of a job ("" if none or unknown). */
void jobs_owner(jobs *js, const char *job_id, char user[STRATA_ID_MAX + 1]);
int jobs_hold_user(jobs *js, const char *tenant, const char *user);
void jobs_release(jobs *js);
size_t jobs_apply_forget(jobs *js, const char *tenant, const char *user,
                         const char *const *sessions, size_t n_sessions);
int jobs_snapshot_write(jobs *js, sbuf *out);
int jobs_snapshot_load(jobs *js, const void *data, size_t len);

/* Worker threads. finish_fn is called by a worker when a job ends, to log
 * its outcome (db.c logs AOL_JOB_DONE/FAILED and then calls
 * jobs_apply_finish). */
typedef int (*job_finish_fn)(void *ctx, const char *tenant, const char *job_id, bool ok,
                             const char *error);
int jobs_start(jobs *js, unsigned n_workers, job_finish_fn finish, void *finish_ctx);
/* Stop accepting work, let running jobs end, join workers. Queued jobs stay
 * queued (they are in the log and run after the next start). */
void jobs_stop(jobs *js);

/* ---- the engine handle (db.c) ----------------------------------------- */
typedef struct embedder embedder;

struct strata_db {
    strata_config cfg;
    char *data_dir;
    char *log_dir;
    char *snap_dir;
    aol *log;
    l1_store *l1;
    bool l1_external;                /* L1 persists itself (Redis): no L1 replay or snapshot */
    l2_store *l2;
    l3_store *l3;
    profile_store *profile;
    key_store *keys;                 /* API keys (hashed) */
    struct extractor *extractor;     /* consolidation's extractor (rules or llm) */
    embedder *embedder;              /* cached; used outside every lock */
    struct replay_stream *replay;    /* NULL unless the Redis Streams replay log is on */
    atomic_uint_fast64_t replay_appended;
    atomic_uint_fast64_t replay_errors;
    kv_store *kv;
    jobs *jobs;
    pthread_mutex_t write_lock;      /* orders log append + apply */
    pthread_mutex_t snapshot_lock;   /* one snapshot at a time */
    pthread_t ticker;
    bool ticker_running;
    pthread_mutex_t ticker_lock;
    pthread_cond_t ticker_cond;
    bool closing;                    /* under ticker_lock */
    uint64_t snap_lsn_l1;            /* LSN covered by each tier's loaded/last snapshot */
    uint64_t snap_lsn_kv;
    uint64_t snap_lsn_jobs;
    uint64_t snap_lsn_l2;
    uint64_t snap_lsn_l3;
    uint64_t snap_lsn_profile;        /* profile, clarifications, distillation queue */
    uint64_t snap_lsn_keys;
    pthread_mutex_t tenant_calls_lock; /* per-tenant model-call limits (consolidate.c) */
    dict *tenant_calls;
    atomic_uint_fast64_t memories_consolidated;
    atomic_uint_fast64_t duplicates_skipped;
    atomic_uint_fast64_t clarifications_opened;
    atomic_uint_fast64_t distilled;
    int64_t last_daily_distill_day;  /* ticker: local day number of the last nightly run */
    atomic_uint_fast64_t sessions_expired;
    atomic_uint_fast64_t snapshots_written;
    atomic_uint_fast64_t segments_dropped;
    /* backups and replication (repl.h, backup.c) */
    atomic_bool read_only;           /* a replica: only db_append_raw writes */
    atomic_uint_fast64_t snap_last_lsn; /* newest snapshot set written */
    atomic_int_fast64_t snap_last_ms;
    atomic_uint_fast64_t archives_taken;
    atomic_uint_fast64_t archived_sets;  /* sets in snap/archive, counted after each change */
    atomic_int_fast64_t archive_last_ms; /* newest archived set (0: not looked yet) */
    struct keyring *keyring;         /* encryption at rest; NULL when off (seal.c) */
    bool snapshot_shredded;          /* open: a snapshot was unusable (damaged, shredded key) */
    pthread_mutex_t forget_lock;     /* one right-to-be-forgotten at a time (forget.c) */
    strata_forget_receipt forget_last; /* what the last AOL_USER_FORGET apply removed */
    pthread_mutex_t replicas_lock;   /* replicas seen polling (forget.c) */
    struct { uint64_t id, after; int64_t seen_ms; } replicas[8];
    /* deletions whose own record waits for replicas (forget_tick), under forget_lock */
    struct { uint64_t lsn; int64_t since_ms; char tenant[AOL_MAX_TENANT + 1]; }
        forget_deferred[16];
    size_t n_forget_deferred;
    atomic_uint_fast64_t users_forgotten;
    atomic_uint_fast64_t forget_records_erased;
};

/* Log one record and apply it under write_lock, then wait for durability.
 * precheck (may be NULL) runs under the lock first and can veto the write. */
typedef int (*db_precheck_fn)(strata_db *db, void *arg);
int db_write(strata_db *db, uint8_t type, const char *tenant, const sbuf *payload,
             db_precheck_fn precheck, void *arg, uint64_t *lsn_out);
/* Input checks shared by every entry point; they record a message and return
 * STRATA_EINVAL / STRATA_ETOOBIG. */
int db_check_id(const char *what, const char *id);
int db_check_tenant(const char *tenant);
int db_check_text(const char *what, const char *s, size_t len, size_t max, bool empty_ok);
/* Split "host:port,host:port" in place into at most max pointers into copy. */
size_t db_split_addrs(char *copy, const char **out, size_t max);
/* Ship an acknowledged record to the replay stream, if configured. */
void db_replay_ship(strata_db *db, const aol_record *rec);
/* Re-log a record from another log under its own LSN and apply it. */
int db_append_raw(strata_db *db, const aol_record *rec);
/* Encryption at rest (seal.c). db_seal_append: aol_append, sealing the
 * payload with its owner's data key when encryption is on (caller holds
 * write_lock). db_unseal: a plaintext view of rec (payload in scratch);
 * STRATA_ENOTFOUND when its key was shredded (skip the record). */
int db_crypto_open(strata_db *db, const strata_config *cfg);
/* Record types whose payload starts with the user id (str user | ...): what
 * sealing (whose key) and forgetting (whose record) both need to know. */
bool db_type_user_first(uint8_t type);
/* A sealed record under a key this keyring has not seen yet (a replica must
 * fetch the primary's keyring before applying it). */
bool db_record_key_unknown(strata_db *db, const aol_record *rec);
void db_crypto_close(strata_db *db);
int db_seal_append(strata_db *db, uint8_t type, const char *tenant, size_t tenant_len,
                   int64_t ts_ms, const void *payload, size_t len, uint64_t *lsn_out);
int db_unseal(strata_db *db, const aol_record *rec, sbuf *scratch, aol_record *out);
int db_seal_snapshot(strata_db *db, const char *tier, uint64_t lsn, const sbuf *image, sbuf *out);
int db_unseal_snapshot(strata_db *db, const char *tier, uint64_t lsn, const void *body,
                       size_t len, sbuf *out, bool *sealed);
/* A deletion starts: the user's later writes get a new data key; every key
 * the deletion covers has an id <= *old_max_id. */
int db_crypto_renew_user(strata_db *db, const char *tenant, const char *user,
                         uint32_t *old_max_id);
/* Shred the user's data keys up to max_key_id (UINT32_MAX: all) and the keys
 * of snapshots older than snap_lsn. */
int db_crypto_forget(strata_db *db, const char *tenant, const char *user, uint32_t max_key_id,
                     uint64_t snap_lsn);

/* Right to be forgotten (forget.c). db_apply_forget applies an
 * AOL_USER_FORGET record to the tiers named by `tiers`; forget_resume (at
 * open) finishes a deletion a crash interrupted. */
#define FORGET_TIER_L1 1u
#define FORGET_TIER_L2 2u
#define FORGET_TIER_L3 4u
#define FORGET_TIER_PROFILE 8u
#define FORGET_TIER_JOBS 16u
int db_apply_forget(strata_db *db, const aol_record *rec, const char *tenant, wire_reader *r,
                    unsigned tiers);
int forget_resume(strata_db *db);
/* A replicated or restored AOL_USER_FORGET was applied (db_append_raw):
 * erase the user's records from this copy's log and snapshots too. */
int forget_after_apply(strata_db *db, const aol_record *plain);
/* Ticker: finish deletions that waited for replicas. */
void forget_tick(strata_db *db);
/* Apply a pipeline record (pipeline_records.c). */
int db_apply_pipeline(strata_db *db, const aol_record *rec, const char *tenant, wire_reader *r);
/* Log one record and apply it (no precheck): db_write's common case. */
int db_log(strata_db *db, uint8_t type, const char *tenant, const sbuf *payload,
           uint64_t *lsn_out);
/* Job handlers (consolidate.c, distill.c) and the nightly trigger. */
int consolidate_job(void *ctx, const job_view *view, char *errbuf, size_t errcap);
int distill_job(void *ctx, const job_view *view, char *errbuf, size_t errcap);
/* Queue a distill job for one user ("" = every user with pending memories). */
int db_enqueue_job(strata_db *db, const char *tenant, const char *kind, const char *user,
                   char job_id[STRATA_JOB_ID_LEN]);
/* strata_memory_add, optionally queueing the memory for distillation in the
 * same log record (distill may be NULL; its memory_id, content, importance
 * and ts are taken from the memory itself). */
int db_memory_add(strata_db *db, const char *tenant, const char *user_id,
                  strata_memory_type type, const char *content, size_t content_len,
                  float importance, const char *const *provenance, size_t n_provenance,
                  const distill_entry *distill, strata_memory **out);
/* An AOL_MEM_ADD payload re-embedded with e (memories.c). */
int db_mem_add_reembed(embedder *e, const uint8_t *p, size_t n, sbuf *out);
/* A memory as API.md's JSON object (recall.c). */
int memory_json(sbuf *b, const strata_memory *m, bool with_score);
/* lower case, words joined by '-' (node id slugs). */
void pipeline_slug(const char *s, char *out, size_t cap);
/* Apply a graph record (graph_ops.c). */
int db_apply_graph(strata_db *db, const aol_record *rec, const char *tenant, wire_reader *r);

#endif /* STRATA_PIPELINE_H */
