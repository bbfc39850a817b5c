/*
 * db.c - the strata_db handle: opens the data directory, recovers every tier
 * from its latest snapshot plus the log tail, and carries every mutation
 * through the write path drawn in pipeline.h (log, then apply, in log order;
 * acknowledge after the fsync policy is met). It also runs the background
 * ticker: idle-session expiry, periodic snapshots and log retention.
 *
 * Log payloads written here (wire codec, see core.h):
 *
 *   AOL_TURN           str session | str user | u8 role | bytes content | u8 flags
 *                      (flags bit 0: this turn queues a consolidation job)
 *   AOL_SESSION_STAGE  str session | str stage
 *   AOL_SESSION_END    str session
 *   AOL_SESSION_EXPIRE str session | u8 queues_job
 *   AOL_DIRTY_ADD      str user | str attribute
 *   AOL_DIRTY_CLEAR    str user
 *   AOL_KV_PUT         u8 tier | bytes key | bytes value
 *   AOL_KV_DELETE      u8 tier | bytes key
 *   AOL_JOB_DONE       str job id
 *   AOL_JOB_FAILED     str job id | str error
 *   AOL_MEM_ADD        str user | u8 type | bytes content | f64 importance |
 *                      i64 timestamp | u32 n_prov | n_prov x str | u32 dim |
 *                      bytes vector (dim little-endian float32)
 *   AOL_MEM_DELETE     str user | u64 memory id
 *
 * A memory's id is the LSN of its AOL_MEM_ADD record.
 *
 * A job born from a record has the id job-<LSN in hex>. Consolidation input:
 * a turn-triggered job takes the last `consolidate_every` turns; an end or an
 * expiry takes the turns after the last multiple of consolidate_every.
 *
 * Locking: write_lock orders "append + apply" so the tiers equal the log
 * prefix; it is never held while waiting for the disk. Tiers have their own
 * reader locks. ticker_lock/ticker_cond wake the ticker for shutdown.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "l1/l1_redis.h"
#include "pipeline/pipeline.h"
#include "pipeline/repl.h"
#include "pipeline/replay_stream.h"
#include "privacy/crypt.h"
#include "providers/embed.h"
#include "providers/llm_http.h"
#include "providers/embed_minilm.h"
#include "providers/extract.h"

#define TURN_FLAG_QUEUE_JOB 1u
#define STAGE_MAX_BYTES 256
#define ATTR_MAX_BYTES 256



void strata_config_init(strata_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->data_dir = "./data";
    cfg->fsync = STRATA_FSYNC_EVERYSEC;
    cfg->segment_max_bytes = 64ull << 20;
    cfg->buffer_turns = 20;
    cfg->session_ttl_s = 1800;
    cfg->consolidate_every = 10;
    cfg->retention_s = 7 * 24 * 3600;
    cfg->snapshot_every_s = 300;
    cfg->max_content_bytes = 64 * 1024;
    cfg->job_workers = 2;
    cfg->background = 1;
    cfg->embedder = "hash";
    cfg->embed_dim = 0;
    cfg->hnsw_m = 16;
    cfg->hnsw_ef_construction = 200;
    cfg->hnsw_ef_search = 64;
    cfg->weight_importance = 0.1f;
    cfg->weight_recency = 0.05f;
    cfg->extractor = "rules";
    cfg->near_duplicate = 0.92f;
    cfg->distill_importance = 0.8f;
    cfg->distill_hour = 2;
    cfg->tenant_model_calls = 4;
    cfg->merge_margin = 0.15f;
    cfg->merge_window_s = 3600;
    cfg->interest_half_life_days = 30.0f;
    cfg->snapshot_archive_every_s = 24 * 3600;
    cfg->snapshot_retain = 7;
}

int strata_fsync_parse(const char *text, strata_fsync_policy *out)
{
    if (strcmp(text, "always") == 0) {
        *out = STRATA_FSYNC_ALWAYS;
    } else if (strcmp(text, "everysec") == 0) {
        *out = STRATA_FSYNC_EVERYSEC;
    } else if (strcmp(text, "no") == 0) {
        *out = STRATA_FSYNC_NO;
    } else {
        return strata_error(STRATA_EINVAL, "fsync policy must be always, everysec or no");
    }
    return STRATA_OK;
}

const char *strata_fsync_name(strata_fsync_policy policy)
{
    switch (policy) {
    case STRATA_FSYNC_ALWAYS: return "always";
    case STRATA_FSYNC_EVERYSEC: return "everysec";
    default: return "no";
    }
}

int strata_role_parse(const char *text, strata_role *out)
{
    if (strcmp(text, "user") == 0) {
        *out = STRATA_ROLE_USER;
    } else if (strcmp(text, "assistant") == 0) {
        *out = STRATA_ROLE_ASSISTANT;
    } else if (strcmp(text, "system") == 0) {
        *out = STRATA_ROLE_SYSTEM;
    } else {
        return strata_error(STRATA_EINVAL, "role must be user, assistant or system");
    }
    return STRATA_OK;
}

const char *strata_role_name(strata_role role)
{
    switch (role) {
    case STRATA_ROLE_USER: return "user";
    case STRATA_ROLE_ASSISTANT: return "assistant";
    default: return "system";
    }
}

int strata_tier_parse(const char *text, strata_tier *out)
{
    if (strcmp(text, "l1") == 0) {
        *out = STRATA_TIER_L1;
    } else if (strcmp(text, "l2") == 0) {
        *out = STRATA_TIER_L2;
    } else if (strcmp(text, "l3") == 0) {
        *out = STRATA_TIER_L3;
    } else {
        return strata_error(STRATA_EINVAL, "tier must be l1, l2 or l3");
    }
    return STRATA_OK;
}

const char *strata_job_status_name(strata_job_status st)
{
    switch (st) {
    case STRATA_JOB_QUEUED: return "queued";
    case STRATA_JOB_RUNNING: return "running";
    case STRATA_JOB_DONE: return "done";
    default: return "failed";
    }
}

/* ---- applying records ---------------------------------------------------- */

/* Which tiers a replayed record is applied to (a tier whose snapshot already
 * covers the record skips it). */
typedef struct apply_mask {
    bool l1;
    bool kv;
    bool jobs;
    bool l2;
    bool l3;
    bool profile;
    bool keys;
} apply_mask;

static const apply_mask APPLY_ALL = {true, true, true, true, true, true, true};

/* Decode and apply an AOL_MEM_ADD payload. */
static int db_apply_mem_add(strata_db *db, const aol_record *rec, const char *tenant,
                            wire_reader *r, bool mask_profile)
{
    char *user = wire_get_strdup(r);
    uint8_t type = wire_get_u8(r);
    size_t clen;
    const char *content = wire_get_bytes(r, &clen);
    double importance = wire_get_f64(r);
    int64_t ts = wire_get_i64(r);
    uint32_t n_prov = wire_get_u32(r);
    int rc = STRATA_OK;
    char *prov[L2_PROVENANCE_MAX];
    uint32_t got = 0;
    if (r->err || n_prov > L2_PROVENANCE_MAX) {
        rc = STRATA_ECORRUPT;
    }
    for (; rc == STRATA_OK && got < n_prov; got++) {
        prov[got] = wire_get_strdup(r);
        if (prov[got] == NULL) {
            rc = STRATA_ECORRUPT;
            break;
        }
    }
    uint32_t dim = wire_get_u32(r);
    size_t vlen;
    const char *vbytes = wire_get_bytes(r, &vlen);
    distill_entry de;
    memset(&de, 0, sizeof(de));
    bool has_distill = false;
    if (rc == STRATA_OK && !r->err && r->off < r->len) {
        has_distill = wire_get_u8(r) == 1;
        de.entity = wire_get_strdup(r);
        de.kind = wire_get_strdup(r);
        de.polarity = (int)wire_get_u32(r) - 1;
        de.attribute = wire_get_strdup(r);
        de.value = wire_get_strdup(r);
        de.confidence = wire_get_f64(r);
    }
    if (rc == STRATA_OK && (!wire_done(r) || user == NULL || type > STRATA_MEM_EXPERIENCE ||
                            vlen != (size_t)dim * 4)) {
        rc = STRATA_ECORRUPT;
    }
    l2_stats st;
    db->l2->ops->stats(db->l2, &st);
    if (rc == STRATA_OK && dim != st.dim) {
        rc = strata_error(STRATA_EINVAL,
                          "log record %llu holds a %u-dimensional vector but the embedder "
                          "gives %u; configure the embedder the collection was built with",
                          (unsigned long long)rec->lsn, dim, st.dim);
    }
    float *vec = NULL;
    if (rc == STRATA_OK) {
        vec = strata_malloc((size_t)dim * sizeof(float));
        if (vec == NULL) {
            rc = STRATA_ENOMEM;
        } else {
            for (uint32_t i = 0; i < dim; i++) {
                uint32_t u = wire_rd32((const uint8_t *)vbytes + 4 * i);
                memcpy(&vec[i], &u, 4);
            }
        }
    }
    if (rc == STRATA_OK) {
        l2_memory_in in = {rec->lsn, tenant, user, (strata_memory_type)type, content, clen,
                           (float)importance, ts, vec, (const char *const *)prov, n_prov};
        rc = db->l2->ops->add(db->l2, &in);
    }
    if (rc == STRATA_OK && has_distill && mask_profile) {
        de.memory_id = rec->lsn;
        de.content = strata_strndup(content, clen);
        de.importance = importance;
        de.ts = ts;
        rc = de.content ? profile_apply_pending_add(db->profile, tenant, user, &de)
                        : STRATA_ENOMEM;
    }
    distill_entry_clear(&de);
    strata_free(vec);
    for (uint32_t i = 0; i < got; i++) {
        strata_free(prov[i]);
    }
    strata_free(user);
    return rc;
}

/* Queue a consolidation job for session (tenant, sid) taking turns with
 * seq > after_seq from the current buffer. Caller holds write_lock. */
static int db_queue_consolidation(strata_db *db, uint64_t lsn, int64_t ts_ms, const char *tenant,
                                  size_t tenant_len, const char *sid, uint32_t after_seq)
{
    char tenant_z[AOL_MAX_TENANT + 1];
    memcpy(tenant_z, tenant, tenant_len);
    tenant_z[tenant_len] = '\0';
    strata_session *s = NULL;
    int rc = db->l1->ops->session_get(db->l1, tenant_z, sid, &s);
    if (rc != STRATA_OK) {
        return rc;
    }
    size_t first = 0;
    while (first < s->n_turns && s->turns[first].seq <= after_seq) {
        first++;
    }
    rc = jobs_apply_enqueue(db->jobs, lsn, "consolidate", tenant, tenant_len, sid, s->user_id,
                            s->turns + first, s->n_turns - first, ts_ms);
    strata_session_free(s);
    return rc;
}

/* The sequence number after which an end/expiry consolidates. */
static uint32_t db_consolidated_upto(const strata_db *db, uint32_t turn_count)
{
    uint32_t every = db->cfg.consolidate_every;
    return every ? (turn_count / every) * every : 0;
}

/* Decode rec and apply it to the tiers selected by mask. Used both on the live
 * write path (right after aol_append, under write_lock) and by recovery, so
 * the two can never disagree. Returns STRATA_ECORRUPT for an undecodable
 * payload. */
static int db_apply(strata_db *db, const aol_record *rec, apply_mask mask)
{
    char tenant[AOL_MAX_TENANT + 1];
    if (rec->tenant_len == 0 || rec->tenant_len > AOL_MAX_TENANT) {
        return strata_error(STRATA_ECORRUPT, "record %" PRIu64 ": bad tenant", rec->lsn);
    }
    memcpy(tenant, rec->tenant, rec->tenant_len);
    tenant[rec->tenant_len] = '\0';
    int64_t ts_s = rec->ts_ms / 1000;
    wire_reader r;
    wire_reader_init(&r, rec->payload, rec->payload_len);
    int rc = STRATA_OK;
    char *a = NULL;
    char *b = NULL;

    switch (rec->type) {
    case AOL_TURN: {
        a = wire_get_strdup(&r); /* session */
        b = wire_get_strdup(&r); /* user */
        uint8_t role = wire_get_u8(&r);
        size_t clen;
        const char *content = wire_get_bytes(&r, &clen);
        uint8_t flags = wire_get_u8(&r);
        if (!wire_done(&r) || role > STRATA_ROLE_SYSTEM) {
            rc = STRATA_ECORRUPT;
            break;
        }
        if (mask.l1) {
            l1_turn_in in = {tenant, a, b, (strata_role)role, content, clen, ts_s};
            l1_turn_out out;
            rc = db->l1->ops->turn_append(db->l1, &in, &out);
            if (rc == STRATA_OK && (flags & TURN_FLAG_QUEUE_JOB) && mask.jobs) {
                uint32_t every = db->cfg.consolidate_every ? db->cfg.consolidate_every : 1;
                uint32_t after = out.turn_count > every ? out.turn_count - every : 0;
                rc = db_queue_consolidation(db, rec->lsn, rec->ts_ms, rec->tenant,
                                            rec->tenant_len, a, after);
            }
        }
        break;
    }
    case AOL_SESSION_STAGE:
        a = wire_get_strdup(&r);
        b = wire_get_strdup(&r);
        if (!wire_done(&r)) {
            rc = STRATA_ECORRUPT;
        } else if (mask.l1) {
            rc = db->l1->ops->session_set_stage(db->l1, tenant, a, b, ts_s);
        }
        break;
    case AOL_SESSION_END:
    case AOL_SESSION_EXPIRE: {
        a = wire_get_strdup(&r);
        uint8_t queue = rec->type == AOL_SESSION_END ? 1 : wire_get_u8(&r);
        if (!wire_done(&r)) {
            rc = STRATA_ECORRUPT;
            break;
        }
        if (!mask.l1) {
            break;
        }
        if (queue && mask.jobs) {
            strata_session *s = NULL;
            rc = db->l1->ops->session_get(db->l1, tenant, a, &s);
            uint32_t upto = rc == STRATA_OK ? db_consolidated_upto(db, s->turn_count) : 0;
            strata_session_free(s);
            if (rc == STRATA_OK) {
                rc = db_queue_consolidation(db, rec->lsn, rec->ts_ms, rec->tenant,
                                            rec->tenant_len, a, upto);
            }
        }
        if (rc == STRATA_OK) {
            rc = rec->type == AOL_SESSION_END
                     ? db->l1->ops->session_end(db->l1, tenant, a, ts_s)
                     : db->l1->ops->session_delete(db->l1, tenant, a);
        }
        break;
    }
    case AOL_DIRTY_ADD:
        a = wire_get_strdup(&r);
        b = wire_get_strdup(&r);
        if (!wire_done(&r)) {
            rc = STRATA_ECORRUPT;
        } else if (mask.l1) {
            rc = db->l1->ops->dirty_add(db->l1, tenant, a, b);
        }
        break;
    case AOL_DIRTY_CLEAR:
        a = wire_get_strdup(&r);
        if (!wire_done(&r)) {
            rc = STRATA_ECORRUPT;
        } else if (mask.l1) {
            rc = db->l1->ops->dirty_clear(db->l1, tenant, a);
        }
        break;
    case AOL_KV_PUT:
    case AOL_KV_DELETE: {
        uint8_t tier = wire_get_u8(&r);
        size_t klen;
        size_t vlen = 0;
        const char *key = wire_get_bytes(&r, &klen);
        const char *val = rec->type == AOL_KV_PUT ? wire_get_bytes(&r, &vlen) : NULL;
        if (!wire_done(&r) || tier < STRATA_TIER_L1 || tier > STRATA_TIER_L3) {
            rc = STRATA_ECORRUPT;
        } else if (mask.kv) {
            rc = rec->type == AOL_KV_PUT
                     ? kv_apply_put(db->kv, rec->tenant, rec->tenant_len, (strata_tier)tier, key,
                                    klen, val, vlen)
                     : kv_apply_delete(db->kv, rec->tenant, rec->tenant_len, (strata_tier)tier,
                                       key, klen);
            if (rc == STRATA_ENOTFOUND) {
                rc = STRATA_OK;
            }
        }
        break;
    }
    case AOL_JOB_DONE:
    case AOL_JOB_FAILED:
        a = wire_get_strdup(&r);
        b = rec->type == AOL_JOB_FAILED ? wire_get_strdup(&r) : NULL;
        if (!wire_done(&r)) {
            rc = STRATA_ECORRUPT;
        } else if (mask.jobs) {
            jobs_apply_finish(db->jobs, a, rec->type == AOL_JOB_DONE, b);
        }
        break;
    case AOL_NOOP:
        break;
    case AOL_KEY_CREATE: {
        a = wire_get_strdup(&r);
        size_t hl;
        const char *hash = wire_get_bytes(&r, &hl);
        if (!wire_done(&r) || a == NULL || hl != 32) {
            rc = STRATA_ECORRUPT;
        } else if (mask.keys) {
            rc = keys_apply_create(db->keys, a, tenant, (const uint8_t *)hash, ts_s);
        }
        break;
    }
    case AOL_KEY_REVOKE:
        a = wire_get_strdup(&r);
        if (!wire_done(&r) || a == NULL) {
            rc = STRATA_ECORRUPT;
        } else if (mask.keys) {
            rc = keys_apply_revoke(db->keys, a);
            rc = rc == STRATA_ENOTFOUND ? STRATA_OK : rc;
        }
        break;
    case AOL_JOB_ENQUEUE:
        if (mask.jobs) {
            rc = db_apply_pipeline(db, rec, tenant, &r);
        }
        break;
    case AOL_PROFILE_SET:
    case AOL_PROFILE_CLARIFY:
    case AOL_PROFILE_RESOLVE:
    case AOL_DISTILL_APPLY:
        /* Snapshots of every tier are taken together, so the profile's LSN
         * stands for the graph and dirty sets a distillation also touches. */
        if (mask.profile) {
            rc = db_apply_pipeline(db, rec, tenant, &r);
        }
        break;
    case AOL_GRAPH_NODE_PUT:
    case AOL_GRAPH_NODE_DELETE:
    case AOL_GRAPH_EDGE_PUT:
    case AOL_GRAPH_EDGE_EXPIRE:
        if (mask.l3) {
            rc = db_apply_graph(db, rec, tenant, &r);
        }
        break;
    case AOL_MEM_ADD:
        if (mask.l2) {
            rc = db_apply_mem_add(db, rec, tenant, &r, mask.profile);
        }
        break;
    case AOL_USER_FORGET:
        rc = db_apply_forget(db, rec, tenant, &r,
                             (mask.l1 ? FORGET_TIER_L1 : 0) | (mask.l2 ? FORGET_TIER_L2 : 0) |
                                 (mask.l3 ? FORGET_TIER_L3 : 0) |
                                 (mask.profile ? FORGET_TIER_PROFILE : 0) |
                                 (mask.jobs ? FORGET_TIER_JOBS : 0));
        break;
    case AOL_MEM_DELETE: {
        a = wire_get_strdup(&r);
        uint64_t id = wire_get_u64(&r);
        if (!wire_done(&r)) {
            rc = STRATA_ECORRUPT;
        } else if (mask.l2) {
            rc = db->l2->ops->remove(db->l2, tenant, a, id);
        }
        break;
    }
    default:
        /* A type from a newer version: skip it rather than refuse to start. */
        slog(SLOG_WARN, "log record %" PRIu64 " has unknown type %u; skipped", rec->lsn,
             rec->type);
        break;
    }
    strata_free(a);
    strata_free(b);
    if (rc == STRATA_ECORRUPT) {
        return strata_error(rc, "log record %" PRIu64 " (type %u) is malformed", rec->lsn,
                            rec->type);
    }
    return rc;
}

/* Log one record and apply it, under write_lock; then wait for durability.
 * precheck (may be NULL) runs under the lock before anything is logged and
 * can veto the write. */
int db_write(strata_db *db, uint8_t type, const char *tenant, const sbuf *payload,
             db_precheck_fn precheck, void *arg, uint64_t *lsn_out)
{
    if (atomic_load(&db->read_only)) {
        /* A replica's LSNs are the primary's: a local write would take one. */
        return strata_error(STRATA_EUNSUPPORTED, "this server is a read-only replica");
    }
    size_t tenant_len = strlen(tenant);
    int64_t now_ms = clock_now_ms();
    pthread_mutex_lock(&db->write_lock);
    int rc = precheck ? precheck(db, arg) : STRATA_OK;
    uint64_t lsn = 0;
    if (rc == STRATA_OK) {
        rc = db_seal_append(db, type, tenant, tenant_len, now_ms, payload->data, payload->len,
                            &lsn);
    }
    if (rc == STRATA_OK) {
        aol_record rec = {lsn, now_ms, type, 0, tenant, tenant_len,
                          (const uint8_t *)payload->data, payload->len};
        rc = db_apply(db, &rec, APPLY_ALL);
        if (rc != STRATA_OK) {
            /* Logged but not applied (out of memory): the log is right and a
             * restart converges; report the failure rather than acknowledge. */
            slog(SLOG_ERROR, "record %" PRIu64 " logged but not applied: %s", lsn,
                 strata_errmsg());
        }
    }
    pthread_mutex_unlock(&db->write_lock);
    if (rc == STRATA_OK) {
        rc = aol_wait(db->log, lsn);
    }
    if (rc == STRATA_OK && db->replay != NULL) {
        aol_record rec = {lsn, now_ms, type, 0, tenant, tenant_len,
                          (const uint8_t *)payload->data, payload->len};
        db_replay_ship(db, &rec);
    }
    if (lsn_out != NULL) {
        *lsn_out = lsn;
    }
    return rc;
}

/* The file log is the source of truth: a failed XADD is counted and logged,
 * never turned into a failed write. Shipped after the record is durable, so
 * the stream never holds a write the log could lose. */
void db_replay_ship(strata_db *db, const aol_record *rec)
{
    if (db->replay == NULL) {
        return;
    }
    if (replay_stream_append(db->replay, rec) == STRATA_OK) {
        atomic_fetch_add(&db->replay_appended, 1);
    } else if (atomic_fetch_add(&db->replay_errors, 1) % 1000 == 0) {
        slog(SLOG_WARN, "replay stream: %s", strata_errmsg());
    }
}

int db_log(strata_db *db, uint8_t type, const char *tenant, const sbuf *payload,
           uint64_t *lsn_out)
{
    return db_write(db, type, tenant, payload, NULL, NULL, lsn_out);
}

int db_enqueue_job(strata_db *db, const char *tenant, const char *kind, const char *user,
                   char job_id[STRATA_JOB_ID_LEN])
{
    job_id[0] = '\0';
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    int rc = wire_put_str(&payload, kind);
    rc = rc ? rc : wire_put_str(&payload, "");
    rc = rc ? rc : wire_put_str(&payload, user ? user : "");
    uint64_t lsn = 0;
    rc = rc ? rc : db_log(db, AOL_JOB_ENQUEUE, tenant, &payload, &lsn);
    sbuf_free(&payload);
    if (rc == STRATA_OK) {
        job_id_format(job_id, lsn);
    }
    return rc;
}

/* Re-log a record read from another log under its own LSN and timestamp and
 * apply it (restore, rebuild). The LSN the log assigns must be the record's:
 * callers feed records in order into a log that starts right before them. */
int db_append_raw(strata_db *db, const aol_record *rec)
{
    pthread_mutex_lock(&db->write_lock);
    uint64_t lsn = 0;
    /* A sealed record is copied as it is (same keyring); a plain one is
     * sealed on the way in when this log is encrypted. */
    sbuf scratch;
    sbuf_init(&scratch, AOL_MAX_PAYLOAD);
    aol_record plain;
    int rc = db_unseal(db, rec, &scratch, &plain);
    bool shredded = rc == STRATA_ENOTFOUND;
    if (shredded) {
        rc = STRATA_OK;
    }
    if (rc == STRATA_OK && (rec->flags & AOL_FLAG_SEALED)) {
        rc = aol_append_flags(db->log, rec->type, rec->flags, rec->tenant, rec->tenant_len,
                              rec->ts_ms, rec->payload_len ? (const void *)rec->payload : "",
                              rec->payload_len, &lsn);
    } else if (rc == STRATA_OK) {
        rc = db_seal_append(db, rec->type, rec->tenant, rec->tenant_len, rec->ts_ms,
                            rec->payload_len ? (const void *)rec->payload : "", rec->payload_len,
                            &lsn);
    }
    if (rc == STRATA_OK && lsn != rec->lsn) {
        rc = strata_error(STRATA_ECORRUPT, "restore: record %" PRIu64 " landed at LSN %" PRIu64,
                          rec->lsn, lsn);
    }
    if (rc == STRATA_OK && !shredded) {
        rc = db_apply(db, &plain, APPLY_ALL);
        if (rc == STRATA_ENOTFOUND || rc == STRATA_ECONFLICT) {
            rc = STRATA_OK; /* as in recovery: a record that no longer applies */
        }
    }
    bool forget = rc == STRATA_OK && !shredded && plain.type == AOL_USER_FORGET;
    pthread_mutex_unlock(&db->write_lock);
    if (forget) {
        rc = forget_after_apply(db, &plain);
    }
    sbuf_free(&scratch);
    return rc;
}

/* ---- validation helpers ---------------------------------------------------- */

int db_check_id(const char *what, const char *id)
{
    if (id == NULL || !strata_id_valid(id, strlen(id))) {
        return strata_error(STRATA_EINVAL,
                            "%s must be 1-128 characters of [A-Za-z0-9_.:@-]", what);
    }
    return STRATA_OK;
}

int db_check_tenant(const char *tenant)
{
    return db_check_id("tenant", tenant);
}

int db_check_text(const char *what, const char *s, size_t len, size_t max, bool empty_ok)
{
    if (s == NULL || (!empty_ok && len == 0)) {
        return strata_error(STRATA_EINVAL, "%s must not be empty", what);
    }
    if (len > max) {
        return strata_error(STRATA_ETOOBIG, "%s is longer than %zu bytes", what, max);
    }
    if (memchr(s, '\0', len) != NULL || !utf8_valid(s, len)) {
        return strata_error(STRATA_EINVAL, "%s must be valid UTF-8 without NUL", what);
    }
    return STRATA_OK;
}

/* ---- sessions ----------------------------------------------------------------- */


int strata_turn_append(strata_db *db, const char *tenant, const char *session_id,
                       const char *user_id, strata_role role, const char *content,
                       size_t content_len, strata_turn_ack *out)
{
    memset(out, 0, sizeof(*out));
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("session_id", session_id);
    rc = rc ? rc : db_check_id("user_id", user_id);
    rc = rc ? rc : db_check_text("content", content, content_len, db->cfg.max_content_bytes,
                                 false);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (role > STRATA_ROLE_SYSTEM) {
        return strata_error(STRATA_EINVAL, "role must be user, assistant or system");
    }
    if (atomic_load(&db->read_only)) {
        return strata_error(STRATA_EUNSUPPORTED, "this server is a read-only replica");
    }
    /* Whether this turn queues consolidation depends on the session's current
     * turn_count, which only the write lock makes stable; the flag is decided
     * inside the precheck below via the session's state. */
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    /* Read the count under the write lock: append the record with the right
     * flag. We do this by taking the lock here rather than in db_write. */
    size_t tenant_len = strlen(tenant);
    int64_t now_ms = clock_now_ms();
    uint64_t lsn = 0;
    pthread_mutex_lock(&db->write_lock);
    uint32_t count_before = 0;
    rc = db->l1->ops->turn_check(db->l1, tenant, session_id, user_id, &count_before);
    if (rc == STRATA_OK) {
        uint32_t every = db->cfg.consolidate_every;
        uint8_t flags = (every && (count_before + 1) % every == 0) ? TURN_FLAG_QUEUE_JOB : 0;
        rc = wire_put_str(&payload, session_id);
        rc = rc ? rc : wire_put_str(&payload, user_id);
        rc = rc ? rc : wire_put_u8(&payload, (uint8_t)role);
        rc = rc ? rc : wire_put_bytes(&payload, content, content_len);
        rc = rc ? rc : wire_put_u8(&payload, flags);
        if (rc == STRATA_OK) {
            rc = db_seal_append(db, AOL_TURN, tenant, tenant_len, now_ms, payload.data,
                            payload.len, &lsn);
        }
        if (rc == STRATA_OK) {
            aol_record rec = {lsn, now_ms, AOL_TURN, 0, tenant, tenant_len,
                              (const uint8_t *)payload.data, payload.len};
            rc = db_apply(db, &rec, APPLY_ALL);
            if (rc == STRATA_OK) {
                out->turn_count = count_before + 1;
                out->lsn = lsn;
                if (flags & TURN_FLAG_QUEUE_JOB) {
                    out->consolidation_queued = 1;
                    job_id_format(out->job_id, lsn);
                }
            }
        }
    }
    pthread_mutex_unlock(&db->write_lock);
    if (rc == STRATA_OK) {
        rc = aol_wait(db->log, lsn);
    }
    if (rc == STRATA_OK && db->replay != NULL) {
        aol_record rec = {lsn, now_ms, AOL_TURN, 0, tenant, tenant_len,
                          (const uint8_t *)payload.data, payload.len};
        db_replay_ship(db, &rec);
    }
    sbuf_free(&payload);
    if (rc != STRATA_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

int strata_session_get(strata_db *db, const char *tenant, const char *session_id,
                       strata_session **out)
{
    *out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("session_id", session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    return db->l1->ops->session_get(db->l1, tenant, session_id, out);
}

typedef struct session_arg {
    const char *tenant;
    const char *session_id;
} session_arg;

static int db_session_exists(strata_db *db, void *argp)
{
    session_arg *arg = argp;
    strata_session *s = NULL;
    int rc = db->l1->ops->session_get(db->l1, arg->tenant, arg->session_id, &s);
    strata_session_free(s);
    if (rc == STRATA_ENOTFOUND) {
        return strata_error(rc, "no session %s", arg->session_id);
    }
    return rc;
}

int strata_session_set_stage(strata_db *db, const char *tenant, const char *session_id,
                             const char *stage, strata_session **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("session_id", session_id);
    rc = rc ? rc : db_check_text("current_stage", stage, stage ? strlen(stage) : 0,
                                 STAGE_MAX_BYTES, true);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, session_id);
    rc = rc ? rc : wire_put_str(&payload, stage);
    session_arg arg = {tenant, session_id};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_SESSION_STAGE, tenant, &payload, db_session_exists, &arg, NULL);
    }
    sbuf_free(&payload);
    if (rc == STRATA_OK && out != NULL) {
        rc = db->l1->ops->session_get(db->l1, tenant, session_id, out);
    }
    return rc;
}

int strata_session_end(strata_db *db, const char *tenant, const char *session_id,
                       char job_id[STRATA_JOB_ID_LEN])
{
    job_id[0] = '\0';
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("session_id", session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, session_id);
    session_arg arg = {tenant, session_id};
    uint64_t lsn = 0;
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_SESSION_END, tenant, &payload, db_session_exists, &arg, &lsn);
    }
    sbuf_free(&payload);
    if (rc == STRATA_OK) {
        job_id_format(job_id, lsn);
    }
    return rc;
}

/* ---- dirty sets ------------------------------------------------------------- */

int strata_dirty_get(strata_db *db, const char *tenant, const char *user_id,
                     strata_strlist **out)
{
    *out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    return db->l1->ops->dirty_get(db->l1, tenant, user_id, out);
}

int strata_dirty_add(strata_db *db, const char *tenant, const char *user_id,
                     const char *attribute)
{
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    rc = rc ? rc : db_check_text("attribute", attribute, attribute ? strlen(attribute) : 0,
                                 ATTR_MAX_BYTES, false);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, user_id);
    rc = rc ? rc : wire_put_str(&payload, attribute);
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_DIRTY_ADD, tenant, &payload, NULL, NULL, NULL);
    }
    sbuf_free(&payload);
    return rc;
}

int strata_dirty_clear(strata_db *db, const char *tenant, const char *user_id)
{
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, user_id);
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_DIRTY_CLEAR, tenant, &payload, NULL, NULL, NULL);
    }
    sbuf_free(&payload);
    return rc;
}

/* ---- generic store ---------------------------------------------------------- */

static int db_check_kv(const char *tenant, strata_tier tier, const char *key)
{
    int rc = db_check_tenant(tenant);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (tier < STRATA_TIER_L1 || tier > STRATA_TIER_L3) {
        return strata_error(STRATA_EINVAL, "tier must be l1, l2 or l3");
    }
    if (key == NULL || !kv_key_valid(key, strlen(key))) {
        return strata_error(STRATA_EINVAL,
                            "key must be 1-%d bytes of UTF-8 without '/' or NUL",
                            STRATA_KV_KEY_MAX);
    }
    return STRATA_OK;
}

int strata_kv_put(strata_db *db, const char *tenant, strata_tier tier, const char *key,
                  const char *json, size_t json_len)
{
    int rc = db_check_kv(tenant, tier, key);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (json == NULL || json_len == 0 || json_len > STRATA_KV_VALUE_MAX) {
        return strata_error(STRATA_ETOOBIG, "value must be 1..%u bytes", STRATA_KV_VALUE_MAX);
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_u8(&payload, (uint8_t)tier);
    rc = rc ? rc : wire_put_bytes(&payload, key, strlen(key));
    rc = rc ? rc : wire_put_bytes(&payload, json, json_len);
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_KV_PUT, tenant, &payload, NULL, NULL, NULL);
    }
    sbuf_free(&payload);
    return rc;
}

int strata_kv_get(strata_db *db, const char *tenant, strata_tier tier, const char *key,
                  char **json_out, size_t *len_out)
{
    *json_out = NULL;
    *len_out = 0;
    int rc = db_check_kv(tenant, tier, key);
    if (rc != STRATA_OK) {
        return rc;
    }
    return kv_get(db->kv, tenant, tier, key, json_out, len_out);
}

typedef struct kv_arg {
    const char *tenant;
    strata_tier tier;
    const char *key;
} kv_arg;

static int db_kv_exists(strata_db *db, void *argp)
{
    kv_arg *arg = argp;
    char *v = NULL;
    size_t n = 0;
    int rc = kv_get(db->kv, arg->tenant, arg->tier, arg->key, &v, &n);
    strata_free(v);
    return rc;
}

int strata_kv_delete(strata_db *db, const char *tenant, strata_tier tier, const char *key)
{
    int rc = db_check_kv(tenant, tier, key);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_u8(&payload, (uint8_t)tier);
    rc = rc ? rc : wire_put_bytes(&payload, key, strlen(key));
    kv_arg arg = {tenant, tier, key};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_KV_DELETE, tenant, &payload, db_kv_exists, &arg, NULL);
    }
    sbuf_free(&payload);
    return rc;
}

/* ---- jobs ---------------------------------------------------------------------- */

int strata_job_get(strata_db *db, const char *tenant, const char *job_id, strata_job_info *out)
{
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("job_id", job_id);
    if (rc != STRATA_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    return jobs_get(db->jobs, tenant, job_id, out);
}

/* Worker callback: log a job's outcome, then apply it. */
static int db_job_finish(void *ctx, const char *tenant, const char *job_id, bool ok,
                         const char *error)
{
    strata_db *db = ctx;
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    int rc = wire_put_str(&payload, job_id);
    if (rc == STRATA_OK && !ok) {
        rc = wire_put_str(&payload, error ? error : "failed");
    }
    if (rc == STRATA_OK) {
        rc = db_write(db, ok ? AOL_JOB_DONE : AOL_JOB_FAILED, tenant, &payload, NULL, NULL,
                      NULL);
    }
    sbuf_free(&payload);
    return rc;
}

/* ---- snapshots, retention, expiry ------------------------------------------------ */

int strata_db_sync(strata_db *db)
{
    return aol_sync(db->log);
}

typedef int (*snap_encode_fn)(void *tier, sbuf *out);

static int db_snapshot_one(strata_db *db, const char *name, const sbuf *image, uint64_t lsn)
{
    sbuf sealed;
    sbuf_init(&sealed, SIZE_MAX / 2);
    if (db->keyring != NULL) {
        int src = db_seal_snapshot(db, name, lsn, image, &sealed);
        if (src != STRATA_OK) {
            sbuf_free(&sealed);
            return src;
        }
        image = &sealed;
    }
    snap_writer *w = NULL;
    int rc = snap_begin(db->snap_dir, name, lsn, &w);
    if (rc == STRATA_OK) {
        rc = snap_write(w, image->data, image->len);
        if (rc == STRATA_OK) {
            rc = snap_commit(w);
        } else {
            snap_abort(w);
        }
    }
    sbuf_free(&sealed);
    if (rc == STRATA_OK) {
        snap_prune(db->snap_dir, name, 2);
    }
    return rc;
}

int strata_db_snapshot(strata_db *db)
{
    pthread_mutex_lock(&db->snapshot_lock);
    sbuf img_l1;
    sbuf img_kv;
    sbuf img_jobs;
    sbuf img_l2;
    sbuf img_l3;
    sbuf img_profile;
    sbuf img_keys;
    sbuf_init(&img_profile, SIZE_MAX / 2);
    sbuf_init(&img_keys, SIZE_MAX / 2);
    sbuf_init(&img_l2, SIZE_MAX / 2);
    sbuf_init(&img_l3, SIZE_MAX / 2);
    sbuf_init(&img_l1, SIZE_MAX / 2);
    sbuf_init(&img_kv, SIZE_MAX / 2);
    sbuf_init(&img_jobs, SIZE_MAX / 2);

    /* Images are taken under write_lock so all three reflect the same LSN. */
    pthread_mutex_lock(&db->write_lock);
    aol_stats st;
    aol_stats_get(db->log, &st);
    uint64_t lsn = st.last_lsn;
    int rc = db->l1_external ? STRATA_OK : db->l1->ops->snapshot_write(db->l1, &img_l1);
    rc = rc ? rc : kv_snapshot_write(db->kv, &img_kv);
    rc = rc ? rc : jobs_snapshot_write(db->jobs, &img_jobs);
    rc = rc ? rc : db->l2->ops->snapshot_write(db->l2, &img_l2);
    rc = rc ? rc : db->l3->ops->snapshot_write(db->l3, &img_l3);
    rc = rc ? rc : profile_snapshot_write(db->profile, &img_profile);
    rc = rc ? rc : keys_snapshot_write(db->keys, &img_keys);
    pthread_mutex_unlock(&db->write_lock);

    /* The log must hold everything the snapshot covers before the snapshot
     * exists; otherwise a crash could leave a snapshot ahead of the log and
     * new records would reuse its LSNs. */
    rc = rc ? rc : aol_sync(db->log);
    if (!db->l1_external) {
        rc = rc ? rc : db_snapshot_one(db, "l1", &img_l1, lsn);
    }
    rc = rc ? rc : db_snapshot_one(db, "kv", &img_kv, lsn);
    rc = rc ? rc : db_snapshot_one(db, "jobs", &img_jobs, lsn);
    rc = rc ? rc : db_snapshot_one(db, "l2", &img_l2, lsn);
    rc = rc ? rc : db_snapshot_one(db, "l3", &img_l3, lsn);
    rc = rc ? rc : db_snapshot_one(db, "profile", &img_profile, lsn);
    rc = rc ? rc : db_snapshot_one(db, "keys", &img_keys, lsn);
    sbuf_free(&img_profile);
    sbuf_free(&img_keys);
    sbuf_free(&img_l2);
    sbuf_free(&img_l3);
    sbuf_free(&img_l1);
    sbuf_free(&img_kv);
    sbuf_free(&img_jobs);
    if (rc == STRATA_OK) {
        db->snap_lsn_l1 = lsn;
        db->snap_lsn_kv = lsn;
        db->snap_lsn_jobs = lsn;
        db->snap_lsn_l2 = lsn;
        db->snap_lsn_l3 = lsn;
        db->snap_lsn_profile = lsn;
        db->snap_lsn_keys = lsn;
        atomic_fetch_add(&db->snapshots_written, 1);
        atomic_store(&db->snap_last_lsn, lsn);
        atomic_store(&db->snap_last_ms, clock_now_ms());
        uint64_t dropped = 0;
        int64_t older_than = clock_now_ms() - (int64_t)db->cfg.retention_s * 1000;
        if (aol_drop_segments(db->log, lsn, older_than, &dropped) == STRATA_OK) {
            atomic_fetch_add(&db->segments_dropped, dropped);
        }
    } else {
        slog(SLOG_ERROR, "snapshot failed: %s", strata_errmsg());
    }
    pthread_mutex_unlock(&db->snapshot_lock);
    return rc;
}

/* Expire sessions idle for longer than the TTL: each gets an
 * AOL_SESSION_EXPIRE record (queuing its consolidation if it has turns not yet
 * consolidated) and its keys are removed. */
static void db_expire_idle(strata_db *db)
{
    if (db->cfg.session_ttl_s == 0) {
        return;
    }
    int64_t idle_before = clock_now_s() - (int64_t)db->cfg.session_ttl_s;
    l1_session_ref *refs = NULL;
    size_t n = 0;
    if (db->l1->ops->session_list_idle(db->l1, idle_before, 1024, &refs, &n) != STRATA_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sbuf payload;
        sbuf_init(&payload, AOL_MAX_PAYLOAD);
        uint64_t shipped_lsn = 0;
        int64_t shipped_ms = 0;
        pthread_mutex_lock(&db->write_lock);
        strata_session *s = NULL;
        int rc = db->l1->ops->session_get(db->l1, refs[i].tenant, refs[i].session_id, &s);
        /* Re-check under the lock: a turn may have arrived since the scan. */
        if (rc == STRATA_OK && s->last_active < idle_before) {
            uint32_t upto = db_consolidated_upto(db, s->turn_count);
            bool pending = !s->ended && s->n_turns > 0 && s->turns[s->n_turns - 1].seq > upto;
            rc = wire_put_str(&payload, refs[i].session_id);
            rc = rc ? rc : wire_put_u8(&payload, pending ? 1 : 0);
            uint64_t lsn = 0;
            size_t tlen = strlen(refs[i].tenant);
            int64_t now_ms = clock_now_ms();
            rc = rc ? rc : db_seal_append(db, AOL_SESSION_EXPIRE, refs[i].tenant, tlen, now_ms,
                                          payload.data, payload.len, &lsn);
            if (rc == STRATA_OK) {
                aol_record rec = {lsn, now_ms, AOL_SESSION_EXPIRE, 0, refs[i].tenant, tlen,
                                  (const uint8_t *)payload.data, payload.len};
                rc = db_apply(db, &rec, APPLY_ALL);
            }
            if (rc == STRATA_OK) {
                atomic_fetch_add(&db->sessions_expired, 1);
                shipped_lsn = lsn;
                shipped_ms = now_ms;
            }
        }
        pthread_mutex_unlock(&db->write_lock);
        if (shipped_lsn != 0 && db->replay != NULL && aol_wait(db->log, shipped_lsn) == STRATA_OK) {
            aol_record rec = {shipped_lsn, shipped_ms, AOL_SESSION_EXPIRE, 0, refs[i].tenant,
                              strlen(refs[i].tenant), (const uint8_t *)payload.data,
                              payload.len};
            db_replay_ship(db, &rec);
        }
        strata_session_free(s);
        sbuf_free(&payload);
    }
    l1_session_refs_free(refs, n);
}

/* Once a day at distill_hour (local time), queue distillation for every
 * tenant with memories waiting. */
static void db_nightly_distill(strata_db *db)
{
    if (db->cfg.distill_hour < 0 || db->cfg.distill_hour > 23) {
        return;
    }
    time_t now = (time_t)clock_now_s();
    struct tm tm;
    localtime_r(&now, &tm);
    int64_t day = (int64_t)now / 86400;
    if (tm.tm_hour != db->cfg.distill_hour || day == db->last_daily_distill_day) {
        return;
    }
    db->last_daily_distill_day = day;
    char **keys = NULL;
    size_t n = 0;
    if (profile_users_with_pending(db->profile, &keys, &n) != STRATA_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) {
            seen = strcmp(keys[k], keys[i]) == 0;
        }
        char job_id[STRATA_JOB_ID_LEN];
        if (!seen && db_enqueue_job(db, keys[i], "distill", "", job_id) != STRATA_OK) {
            slog(SLOG_WARN, "nightly distillation of tenant %s: %s", keys[i], strata_errmsg());
        }
    }
    for (size_t i = 0; i < n; i++) {
        strata_free(keys[i]);
    }
    strata_free(keys);
}

static void *db_ticker_main(void *arg)
{
    strata_db *db = arg;
    uint64_t last_snapshot_ns = clock_mono_ns();
    pthread_mutex_lock(&db->ticker_lock);
    while (!db->closing) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&db->ticker_cond, &db->ticker_lock, &ts);
        if (db->closing) {
            break;
        }
        pthread_mutex_unlock(&db->ticker_lock);
        /* A replica writes nothing of its own: expiries and nightly jobs
         * reach it through the primary's log. */
        if (!atomic_load(&db->read_only)) {
            db_expire_idle(db);
            db_nightly_distill(db);
        }
        db_archive_tick(db);
        forget_tick(db);
        uint64_t now_ns = clock_mono_ns();
        if (db->cfg.snapshot_every_s > 0 &&
            now_ns - last_snapshot_ns >= (uint64_t)db->cfg.snapshot_every_s * 1000000000ull) {
            strata_db_snapshot(db);
            last_snapshot_ns = now_ns;
        }
        pthread_mutex_lock(&db->ticker_lock);
    }
    pthread_mutex_unlock(&db->ticker_lock);
    return NULL;
}

/* ---- open / close / stats ------------------------------------------------------ */

static int db_mkdir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        return strata_error_errno("cannot create directory", path);
    }
    return STRATA_OK;
}

static char *db_path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = strata_malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", a, b);
    }
    return p;
}

/* The L1 backend: in-process, or Redis (standalone or Cluster). */
static int db_l1_open(strata_db *db, const strata_config *cfg)
{
    const char *kind = cfg->l1_backend ? cfg->l1_backend : "embedded";
    if (strcmp(kind, "embedded") == 0) {
        l1_mem_options o = {cfg->buffer_turns};
        return l1_mem_open(&o, &db->l1);
    }
    if (strcmp(kind, "redis") != 0) {
        return strata_error(STRATA_EINVAL, "l1 backend must be embedded or redis");
    }
    if (cfg->redis_addrs == NULL || cfg->redis_addrs[0] == '\0') {
        return strata_error(STRATA_EINVAL, "the redis backend needs redis_addrs");
    }
    char *copy = strata_strdup(cfg->redis_addrs);
    const char *addrs[64];
    size_t n = db_split_addrs(copy, addrs, 64);
    l1_redis_options o;
    l1_redis_options_init(&o);
    o.addresses = addrs;
    o.n_addresses = n;
    o.password = cfg->redis_password;
    o.cluster = cfg->redis_cluster != 0;
    o.wait_replicas = cfg->redis_wait;
    o.buffer_max = cfg->buffer_turns;
    o.pool_size = 8;
    redis_tls_options tls;
    o.tls = redis_tls_options_from_config(cfg, &tls);
    int rc = copy ? l1_redis_open(&o, &db->l1) : STRATA_ENOMEM;
    strata_free(copy);
    if (rc != STRATA_OK) {
        char why[512]; /* a copy: strata_error writes the buffer strata_errmsg reads */
        snprintf(why, sizeof(why), "%s", strata_errmsg());
        rc = strata_error(rc, "L1 on Redis: %s", why);
    }
    /* Redis keeps L1 itself (AOF): replaying L1 records into it again would
     * append every turn twice, and it has no snapshot of ours. */
    db->l1_external = rc == STRATA_OK;
    return rc;
}

/* Split "a,b,c" into at most max pointers into copy (which the caller frees). */
size_t db_split_addrs(char *copy, const char **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t != NULL && n < max;
         t = strtok_r(NULL, ",", &save)) {
        out[n++] = t;
    }
    return n;
}

static int db_replay_open(strata_db *db, const strata_config *cfg)
{
    const char *addrs_s = cfg->replay_addrs ? cfg->replay_addrs : cfg->redis_addrs;
    if (addrs_s == NULL || addrs_s[0] == '\0') {
        return strata_error(STRATA_EINVAL, "the replay stream needs replay_addrs or redis_addrs");
    }
    char *copy = strata_strdup(addrs_s);
    const char *addrs[64];
    size_t n = db_split_addrs(copy, addrs, 64);
    replay_stream_options o;
    replay_stream_options_init(&o);
    o.addresses = addrs;
    o.n_addresses = n;
    o.cluster = cfg->replay_cluster != 0;
    o.password = cfg->redis_password;
    redis_tls_options tls;
    o.tls = redis_tls_options_from_config(cfg, &tls); /* the same TLS settings as L1 */
    if (cfg->replay_key != NULL) {
        o.key = cfg->replay_key;
    }
    o.retention_s = cfg->retention_s;
    int rc = copy ? replay_stream_open(&o, &db->replay) : STRATA_ENOMEM;
    strata_free(copy);
    if (rc != STRATA_OK) {
        char why[512]; /* a copy: strata_error writes the buffer strata_errmsg reads */
        snprintf(why, sizeof(why), "%s", strata_errmsg());
        rc = strata_error(rc, "replay stream: %s", why);
    }
    return rc;
}

typedef int (*snap_load_fn)(void *tier, const void *data, size_t len);

/* Load a tier's newest snapshot; returns its LSN through lsn_out (0 if none). */
static int db_load_snapshot(strata_db *db, const char *name, void *tier, snap_load_fn load,
                            uint64_t *lsn_out)
{
    void *data = NULL;
    size_t len = 0;
    *lsn_out = 0;
    int rc = snap_load_latest(db->snap_dir, name, lsn_out, &data, &len);
    if (rc == STRATA_ENOTFOUND) {
        *lsn_out = 0;
        return STRATA_OK;
    }
    if (rc == STRATA_ECORRUPT) {
        /* Every snapshot of the tier is damaged: reported, and the log alone
         * rebuilds the tier when it reaches back to LSN 1 (checked once open). */
        slog(SLOG_WARN, "%s; rebuilding tier %s from the log instead", strata_errmsg(), name);
        db->snapshot_shredded = true;
        *lsn_out = 0;
        return STRATA_OK;
    }
    sbuf plain;
    sbuf_init(&plain, SIZE_MAX / 2);
    bool sealed = false;
    if (rc == STRATA_OK) {
        rc = db_unseal_snapshot(db, name, *lsn_out, data, len, &plain, &sealed);
        if (rc == STRATA_ENOTFOUND) {
            /* A copy made before a right-to-be-forgotten (a backup): its
             * snapshot key is shredded; the log alone must then rebuild the
             * tier (checked once the log is open). */
            slog(SLOG_WARN, "%s; rebuilding from the log instead", strata_errmsg());
            db->snapshot_shredded = true;
            *lsn_out = 0;
            sbuf_free(&plain);
            strata_free(data);
            return STRATA_OK;
        }
    }
    if (rc == STRATA_OK) {
        rc = sealed ? load(tier, plain.data ? plain.data : "", plain.len) : load(tier, data, len);
        if (rc != STRATA_OK) {
            rc = strata_error(rc, "snapshot %s at LSN %" PRIu64 " cannot be loaded: %s", name,
                              *lsn_out, strata_errmsg());
        }
    }
    if (plain.data != NULL) {
        crypt_wipe(plain.data, plain.len);
    }
    sbuf_free(&plain);
    strata_free(data);
    return rc;
}

static int db_l1_snapshot_load(void *tier, const void *data, size_t len)
{
    l1_store *l1 = tier;
    return l1->ops->snapshot_load(l1, data, len);
}

static int db_kv_snapshot_load(void *tier, const void *data, size_t len)
{
    return kv_snapshot_load(tier, data, len);
}

static int db_jobs_snapshot_load(void *tier, const void *data, size_t len)
{
    return jobs_snapshot_load(tier, data, len);
}

static int db_keys_snapshot_load(void *tier, const void *data, size_t len)
{
    return keys_snapshot_load(tier, data, len);
}

static int db_profile_snapshot_load(void *tier, const void *data, size_t len)
{
    return profile_snapshot_load(tier, data, len);
}

/* The consolidation extractor: built-in rules, or an LLM server. */
static int db_extractor_open(const strata_config *cfg, extractor **out)
{
    const char *kind = cfg->extractor ? cfg->extractor : "rules";
    if (strcmp(kind, "rules") == 0) {
        return extractor_rules_create(out);
    }
    if (strcmp(kind, "llm") == 0) {
        if (cfg->llm_url == NULL || cfg->llm_url[0] == '\0') {
            return strata_error(STRATA_EINVAL, "extractor llm needs llm_url");
        }
        llm_http_options o;
        llm_http_options_init(&o);
        o.base_url = cfg->llm_url;
        o.api_key = cfg->llm_api_key;
        o.model = cfg->llm_model ? cfg->llm_model : "gpt-4o-mini";
        return extractor_llm_create(&o, out);
    }
    return strata_error(STRATA_EINVAL, "extractor must be rules or llm");
}

static int db_l3_snapshot_load(void *tier, const void *data, size_t len)
{
    l3_store *l3 = tier;
    return l3->ops->snapshot_load(l3, data, len);
}

static int db_l2_snapshot_load(void *tier, const void *data, size_t len)
{
    l2_store *l2 = tier;
    return l2->ops->snapshot_load(l2, data, len);
}

/* Open the configured embedder, wrapped in the content-hash cache. */
/* "auto": follow the collection's recorded model (data/l2.model) so an
 * existing collection keeps its embedder; a new one gets the neural embedder
 * when its model is present, else the built-in hashing one. */
static const char *db_embedder_auto(const strata_config *cfg, const char *data_dir,
                                    uint32_t *dim_out)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/l2.model", data_dir);
    char stored[128] = "";
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(stored, sizeof(stored), f) == NULL) {
            stored[0] = '\0';
        }
        fclose(f);
        stored[strcspn(stored, "\n")] = '\0';
    }
    if (strncmp(stored, "hash-v1-", 8) == 0) {
        *dim_out = (uint32_t)strtoul(stored + 8, NULL, 10);
        return "hash";
    }
    if (strcmp(stored, "all-MiniLM-L6-v2") == 0) {
        return "minilm";
    }
    if (stored[0] != '\0') {
        return "http"; /* fails clearly below unless embed_url is configured */
    }
    snprintf(path, sizeof(path), "%s/model.safetensors",
             cfg->model_dir ? cfg->model_dir : "models/all-MiniLM-L6-v2");
    return access(path, R_OK) == 0 ? "minilm" : "hash";
}

static int db_embedder_open(const strata_config *cfg, const char *data_dir, embedder **out)
{
    *out = NULL;
    embedder *inner = NULL;
    const char *kind = cfg->embedder ? cfg->embedder : "hash";
    uint32_t auto_dim = 0;
    if (strcmp(kind, "auto") == 0) {
        kind = db_embedder_auto(cfg, data_dir, &auto_dim);
        slog(SLOG_INFO, "embedder auto: using %s", kind);
    }
    int rc;
    if (strcmp(kind, "hash") == 0) {
        uint32_t dim = cfg->embed_dim ? cfg->embed_dim : auto_dim;
        rc = embedder_hash_create(dim ? dim : 384, &inner);
    } else if (strcmp(kind, "http") == 0) {
        if (cfg->embed_url == NULL || cfg->embed_url[0] == '\0') {
            return strata_error(STRATA_EINVAL, "embedder http needs embed_url");
        }
        embedder_http_options o;
        memset(&o, 0, sizeof(o));
        o.base_url = cfg->embed_url;
        o.api_key = cfg->embed_api_key;
        o.model = cfg->embed_model ? cfg->embed_model : "text-embedding-3-small";
        o.dim = cfg->embed_dim;
        o.timeout_ms = 10000;
        o.max_retries = 3;
        o.batch_size = 64;
        rc = embedder_http_create(&o, &inner);
        if (rc == STRATA_OK) {
            /* Learn and check the dimension now: a mismatch with the collection
             * must stop the start, not fail the first write. */
            rc = embedder_http_probe(inner);
            if (rc != STRATA_OK) {
                rc = strata_error(rc, "embedding server %s: %s", cfg->embed_url,
                                  strata_errmsg());
            }
        }
    } else if (strcmp(kind, "minilm") == 0) {
        const char *dir = cfg->model_dir ? cfg->model_dir : "models/all-MiniLM-L6-v2";
        rc = embedder_minilm_create(dir, cfg->max_len > 0 ? cfg->max_len : 256, &inner);
        if (rc != STRATA_OK) {
            /* No model (an offline machine, or not fetched yet): fall back to
             * the built-in embedder and say so loudly. */
            slog(SLOG_WARN, "embedder minilm unavailable (%s); using the built-in hashing "
                            "embedder", strata_errmsg());
            rc = embedder_hash_create(cfg->embed_dim ? cfg->embed_dim : 384, &inner);
        }
    } else {
        return strata_error(STRATA_EINVAL, "embedder must be auto, hash, http or minilm");
    }
    if (rc != STRATA_OK) {
        embedder_free(inner);
        return rc;
    }
    rc = embedder_cache_create(inner, 10000, out);
    if (rc != STRATA_OK) {
        embedder_free(inner);
    }
    return rc;
}

typedef struct replay_ctx {
    strata_db *db;
    uint64_t applied;
    sbuf scratch;                    /* plaintext of sealed records */
} replay_ctx;

static int db_replay_cb(void *ctx, const aol_record *rec)
{
    replay_ctx *rc_ctx = ctx;
    strata_db *db = rc_ctx->db;
    apply_mask mask = {!db->l1_external && rec->lsn > db->snap_lsn_l1, rec->lsn > db->snap_lsn_kv,
                       rec->lsn > db->snap_lsn_jobs, rec->lsn > db->snap_lsn_l2,
                       rec->lsn > db->snap_lsn_l3, rec->lsn > db->snap_lsn_profile,
                       rec->lsn > db->snap_lsn_keys};
    aol_record plain;
    int rc = db_unseal(db, rec, &rc_ctx->scratch, &plain);
    if (rc == STRATA_ENOTFOUND) {
        rc_ctx->applied++;
        return STRATA_OK; /* its key was shredded: the record is forgotten */
    }
    rc = rc ? rc : db_apply(db, &plain, mask);
    /* A record that no longer applies (e.g. an expiry of a session a newer
     * snapshot already removed) is not an error worth refusing to start for. */
    if (rc == STRATA_ENOTFOUND || rc == STRATA_ECONFLICT) {
        rc = STRATA_OK;
    }
    rc_ctx->applied++;
    return rc;
}

/* A snapshot can only be ahead of the log if the log lost synced records
 * (snapshots are written after an aol_sync), e.g. a disk that lied about a
 * flush. New records must never reuse LSNs a snapshot covers, or the next
 * recovery would skip them: pad the log with no-op records up to the newest
 * snapshot's LSN. A gap too large to be a lost tail is refused. */
/* A collection keeps the embedder it was built with: vectors of two models
 * of the same dimension would mix silently. The model's name is kept in
 * <data>/l2.model; a non-empty collection refuses another model. */
static int db_check_embedder_model(strata_db *db)
{
    char *path = db_path_join(db->data_dir, "l2.model");
    if (path == NULL) {
        return STRATA_ENOMEM;
    }
    char stored[128] = "";
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(stored, sizeof(stored), f) == NULL) {
            stored[0] = '\0';
        }
        fclose(f);
        stored[strcspn(stored, "\n")] = '\0';
    }
    l2_stats st;
    db->l2->ops->stats(db->l2, &st);
    const char *model = db->embedder->model;
    int rc = STRATA_OK;
    if (stored[0] != '\0' && strcmp(stored, model) != 0 && st.memories > 0) {
        rc = strata_error(STRATA_EINVAL,
                          "the L2 collection was embedded with %s but the embedder is %s; "
                          "configure the embedder it was built with",
                          stored, model);
    } else if (strcmp(stored, model) != 0) {
        f = fopen(path, "w");
        if (f == NULL) {
            rc = strata_error_errno("cannot write", path);
        } else {
            int w = fprintf(f, "%s\n", model);
            if (fclose(f) != 0 || w < 0) {
                rc = strata_error_errno("cannot write", path);
            }
        }
    }
    strata_free(path);
    return rc;
}

static uint64_t db_snapshot_max(const strata_db *db)
{
    return STRATA_MAX(STRATA_MAX(STRATA_MAX(db->snap_lsn_l1, db->snap_lsn_l2),
                                 STRATA_MAX(db->snap_lsn_kv, db->snap_lsn_jobs)),
                      STRATA_MAX(db->snap_lsn_l3,
                                 STRATA_MAX(db->snap_lsn_profile, db->snap_lsn_keys)));
}

static int db_catch_up_log(strata_db *db, uint64_t log_last)
{
    uint64_t snap = db_snapshot_max(db);
    if (log_last >= snap) {
        return STRATA_OK;
    }
    uint64_t gap = snap - log_last;
    if (gap > 10000000) {
        return strata_error(STRATA_ECORRUPT,
                            "snapshots cover LSN %" PRIu64 " but the log ends at %" PRIu64
                            ": the log has lost data",
                            snap, log_last);
    }
    slog(SLOG_WARN, "snapshot covers LSN %" PRIu64 " but the log ends at %" PRIu64
                    "; padding the log so new records follow the snapshot",
         snap, log_last);
    uint64_t lsn = 0;
    int64_t now = clock_now_ms();
    for (uint64_t i = 0; i < gap; i++) {
        int rc = aol_append(db->log, AOL_NOOP, "default", 7, now, "", 0, &lsn);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    return aol_sync(db->log);
}

int strata_db_open(const strata_config *cfg, strata_db **out, strata_recovery_info *info)
{
    *out = NULL;
    if (info != NULL) {
        memset(info, 0, sizeof(*info));
    }
    if (cfg == NULL || cfg->data_dir == NULL || cfg->data_dir[0] == '\0') {
        return strata_error(STRATA_EINVAL, "a data directory is required");
    }
    if (cfg->buffer_turns == 0 || cfg->buffer_turns > 100000) {
        return strata_error(STRATA_EINVAL, "buffer_turns must be 1..100000");
    }
    if (cfg->consolidate_every > cfg->buffer_turns) {
        return strata_error(STRATA_EINVAL,
                            "consolidate_every (%u) must not exceed buffer_turns (%u)",
                            cfg->consolidate_every, cfg->buffer_turns);
    }
    strata_db *db = strata_calloc(1, sizeof(*db));
    if (db == NULL) {
        return STRATA_ENOMEM;
    }
    db->cfg = *cfg;
    pthread_mutex_init(&db->write_lock, NULL);
    pthread_mutex_init(&db->snapshot_lock, NULL);
    pthread_mutex_init(&db->forget_lock, NULL);
    pthread_mutex_init(&db->replicas_lock, NULL);
    pthread_mutex_init(&db->ticker_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&db->ticker_cond, &ca);
    pthread_condattr_destroy(&ca);

    int rc = STRATA_ENOMEM;
    db->data_dir = strata_strdup(cfg->data_dir);
    db->log_dir = db_path_join(cfg->data_dir, "log");
    db->snap_dir = db_path_join(cfg->data_dir, "snap");
    if (db->data_dir == NULL || db->log_dir == NULL || db->snap_dir == NULL) {
        goto fail;
    }
    db->cfg.data_dir = db->data_dir;
    rc = db_mkdir(db->data_dir);
    rc = rc ? rc : db_mkdir(db->snap_dir);
    if (rc != STRATA_OK) {
        goto fail;
    }
    rc = db_crypto_open(db, cfg);
    if (rc != STRATA_OK) {
        goto fail;
    }
    rc = db_l1_open(db, cfg);
    if (rc != STRATA_OK) {
        goto fail;
    }
    rc = db_embedder_open(cfg, db->data_dir, &db->embedder);
    if (rc != STRATA_OK) {
        goto fail;
    }
    l2_mem_options l2opts;
    l2_mem_options_init(&l2opts, db->embedder->dim);
    l2opts.M = cfg->hnsw_m ? cfg->hnsw_m : 16;
    l2opts.ef_construction = cfg->hnsw_ef_construction ? cfg->hnsw_ef_construction : 200;
    l2opts.ef_search = cfg->hnsw_ef_search ? cfg->hnsw_ef_search : 64;
    l2opts.weight_importance = cfg->weight_importance;
    l2opts.weight_recency = cfg->weight_recency;
    rc = l2_mem_open(&l2opts, &db->l2);
    if (rc != STRATA_OK) {
        goto fail;
    }
    rc = l3_mem_open(&db->l3);
    if (rc != STRATA_OK) {
        goto fail;
    }
    db->profile = profile_create();
    db->keys = keys_create();
    db->tenant_calls = dict_create(NULL);
    pthread_mutex_init(&db->tenant_calls_lock, NULL);
    if (db->profile == NULL || db->keys == NULL || db->tenant_calls == NULL) {
        rc = STRATA_ENOMEM;
        goto fail;
    }
    rc = db_extractor_open(cfg, &db->extractor);
    if (rc != STRATA_OK) {
        goto fail;
    }
    db->kv = kv_create();
    db->jobs = jobs_create();
    if (db->kv == NULL || db->jobs == NULL) {
        rc = STRATA_ENOMEM;
        goto fail;
    }
    rc = db->l1_external
             ? STRATA_OK
             : db_load_snapshot(db, "l1", db->l1, db_l1_snapshot_load, &db->snap_lsn_l1);
    rc = rc ? rc : db_load_snapshot(db, "kv", db->kv, db_kv_snapshot_load, &db->snap_lsn_kv);
    rc = rc ? rc
            : db_load_snapshot(db, "jobs", db->jobs, db_jobs_snapshot_load, &db->snap_lsn_jobs);
    rc = rc ? rc : db_load_snapshot(db, "l2", db->l2, db_l2_snapshot_load, &db->snap_lsn_l2);
    rc = rc ? rc : db_load_snapshot(db, "l3", db->l3, db_l3_snapshot_load, &db->snap_lsn_l3);
    rc = rc ? rc
            : db_load_snapshot(db, "profile", db->profile, db_profile_snapshot_load,
                               &db->snap_lsn_profile);
    rc = rc ? rc
            : db_load_snapshot(db, "keys", db->keys, db_keys_snapshot_load, &db->snap_lsn_keys);
    if (rc != STRATA_OK) {
        goto fail;
    }
    uint64_t snap_max = db_snapshot_max(db);
    aol_options lopts = {db->log_dir, cfg->fsync, cfg->segment_max_bytes,
                         STRATA_MAX(snap_max + 1, cfg->log_first_lsn)};
    aol_open_info linfo;
    rc = aol_open(&lopts, &db->log, &linfo);
    if (rc != STRATA_OK) {
        goto fail;
    }
    uint64_t l1_from = db->l1_external ? UINT64_MAX : db->snap_lsn_l1;
    uint64_t from = STRATA_MIN(STRATA_MIN(l1_from, db->snap_lsn_l2),
                               STRATA_MIN(STRATA_MIN(db->snap_lsn_kv, db->snap_lsn_jobs),
                                          STRATA_MIN(db->snap_lsn_l3,
                                                     STRATA_MIN(db->snap_lsn_profile,
                                                                db->snap_lsn_keys))));
    if (db->snapshot_shredded) {
        aol_stats ls;
        aol_stats_get(db->log, &ls);
        if (ls.base_lsn > 1) {
            rc = strata_error(STRATA_ECORRUPT,
                              "a snapshot is unusable (damaged, or its key shredded by a later "
                              "right-to-be-forgotten) and the log here starts at LSN %" PRIu64
                              ", not 1: the state cannot be rebuilt",
                              ls.base_lsn);
            goto fail;
        }
    }
    replay_ctx rctx = {db, 0, {NULL, 0, 0, 0}};
    sbuf_init(&rctx.scratch, AOL_MAX_PAYLOAD);
    rc = aol_replay(db->log, from, db_replay_cb, &rctx);
    sbuf_free(&rctx.scratch);
    if (rc != STRATA_OK) {
        rc = strata_error(rc, "log replay failed: %s", strata_errmsg());
        goto fail;
    }
    rc = db_catch_up_log(db, linfo.last_lsn);
    rc = rc ? rc : db_check_embedder_model(db);
    if (rc != STRATA_OK) {
        goto fail;
    }
    if (linfo.bytes_truncated > 0) {
        slog(SLOG_WARN, "recovery dropped a torn log tail of %" PRIu64 " bytes",
             linfo.bytes_truncated);
    }
    if (info != NULL) {
        info->records_replayed = rctx.applied;
        info->bytes_truncated = linfo.bytes_truncated;
        info->snapshot_lsn = db->snap_lsn_l1;
        info->last_lsn = linfo.last_lsn;
    }
    if (cfg->replay_stream != NULL && strcmp(cfg->replay_stream, "redis") == 0) {
        rc = db_replay_open(db, cfg);
        if (rc != STRATA_OK) {
            goto fail;
        }
    } else if (cfg->replay_stream != NULL && strcmp(cfg->replay_stream, "off") != 0) {
        rc = strata_error(STRATA_EINVAL, "replay stream must be off or redis");
        goto fail;
    }
    rc = jobs_register(db->jobs, "consolidate", consolidate_job, db);
    rc = rc ? rc : jobs_register(db->jobs, "distill", distill_job, db);
    /* A right-to-be-forgotten cut short by a crash is finished before anything
     * else runs (its deletion is already applied by the replay). */
    rc = rc ? rc : forget_resume(db);
    if (rc != STRATA_OK) {
        goto fail;
    }
    atomic_store(&db->read_only, cfg->replica != 0);
    if (cfg->background) {
        /* A replica's jobs run on the primary; promotion starts them here. */
        rc = cfg->replica ? STRATA_OK : jobs_start(db->jobs, cfg->job_workers, db_job_finish, db);
        if (rc != STRATA_OK) {
            goto fail;
        }
        if (pthread_create(&db->ticker, NULL, db_ticker_main, db) != 0) {
            rc = strata_error(STRATA_EIO, "cannot start the background thread");
            goto fail;
        }
        db->ticker_running = true;
    }
    *out = db;
    return STRATA_OK;

fail:
    strata_db_close(db);
    return rc;
}

int strata_db_promote(strata_db *db)
{
    if (!atomic_exchange(&db->read_only, false)) {
        return strata_error(STRATA_ECONFLICT, "this server is not a replica");
    }
    /* Jobs the primary queued and did not finish run here now. */
    return db->cfg.background ? jobs_start(db->jobs, db->cfg.job_workers, db_job_finish, db)
                              : STRATA_OK;
}

int strata_db_is_replica(strata_db *db)
{
    return atomic_load(&db->read_only) ? 1 : 0;
}

void strata_db_close(strata_db *db)
{
    if (db == NULL) {
        return;
    }
    pthread_mutex_lock(&db->ticker_lock);
    db->closing = true;
    pthread_cond_broadcast(&db->ticker_cond);
    pthread_mutex_unlock(&db->ticker_lock);
    if (db->ticker_running) {
        pthread_join(db->ticker, NULL);
    }
    if (db->jobs != NULL) {
        jobs_stop(db->jobs);
    }
    if (db->log != NULL && db->l1 != NULL && db->l2 != NULL && db->l3 != NULL &&
        db->profile != NULL && db->keys != NULL && db->cfg.background) {
        /* A snapshot at shutdown makes the next start a short replay. */
        strata_db_snapshot(db);
    }
    aol_close(db->log);
    db_crypto_close(db);
    replay_stream_close(db->replay);
    jobs_free(db->jobs);
    kv_free(db->kv);
    if (db->l1 != NULL) {
        db->l1->ops->close(db->l1);
    }
    if (db->l2 != NULL) {
        db->l2->ops->close(db->l2);
    }
    if (db->l3 != NULL) {
        db->l3->ops->close(db->l3);
    }
    profile_free(db->profile);
    keys_free(db->keys);
    extractor_free(db->extractor);
    if (db->tenant_calls != NULL) {
        dict_free(db->tenant_calls);
        pthread_mutex_destroy(&db->tenant_calls_lock);
    }
    embedder_free(db->embedder);
    strata_free(db->data_dir);
    strata_free(db->log_dir);
    strata_free(db->snap_dir);
    pthread_mutex_destroy(&db->write_lock);
    pthread_mutex_destroy(&db->snapshot_lock);
    pthread_mutex_destroy(&db->forget_lock);
    pthread_mutex_destroy(&db->replicas_lock);
    pthread_mutex_destroy(&db->ticker_lock);
    pthread_cond_destroy(&db->ticker_cond);
    strata_free(db);
}

void strata_db_stats_get(strata_db *db, strata_db_stats *out)
{
    memset(out, 0, sizeof(*out));
    l1_stats l1s;
    db->l1->ops->stats(db->l1, &l1s);
    out->sessions = l1s.sessions;
    out->turns_buffered = l1s.turns_buffered;
    out->dirty_users = l1s.dirty_users;
    out->kv_keys = kv_count(db->kv);
    aol_stats ls;
    aol_stats_get(db->log, &ls);
    out->log_last_lsn = ls.last_lsn;
    out->log_durable_lsn = ls.durable_lsn;
    out->log_bytes = ls.bytes;
    out->log_segments = ls.segments;
    out->log_fsyncs = ls.fsyncs;
    out->log_appends = ls.appends;
    out->sessions_expired = atomic_load(&db->sessions_expired);
    out->snapshots_written = atomic_load(&db->snapshots_written);
    out->segments_dropped = atomic_load(&db->segments_dropped);
    out->users_forgotten = atomic_load(&db->users_forgotten);
    out->forget_records_erased = atomic_load(&db->forget_records_erased);
    jobs_counts(db->jobs, &out->jobs_queued, &out->jobs_running, &out->jobs_done,
                &out->jobs_failed);
    l2_stats l2s;
    db->l2->ops->stats(db->l2, &l2s);
    out->memories = l2s.memories;
    embedder_cache_stats(db->embedder, &out->embed_cache_hits, &out->embed_cache_misses);
    graph_stats gs;
    db->l3->ops->stats(db->l3, &gs);
    out->graph_nodes = gs.nodes;
    out->graph_edges = gs.edges;
    out->graph_current_edges = gs.current_edges;
    out->memories_consolidated = atomic_load(&db->memories_consolidated);
    out->duplicates_skipped = atomic_load(&db->duplicates_skipped);
    out->clarifications_opened = atomic_load(&db->clarifications_opened);
    out->distilled = atomic_load(&db->distilled);
    out->replay_appended = atomic_load(&db->replay_appended);
    out->replay_errors = atomic_load(&db->replay_errors);
}
