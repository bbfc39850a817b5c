/*
 * seal.c - encryption at rest on the engine side: which data key seals a log
 * record (its owner's), sealing on append, opening on replay, and sealed
 * snapshot bodies. The primitives and the keyring are in src/privacy/crypt.h.
 *
 * Sealed record (flags & AOL_FLAG_SEALED): the payload becomes
 *
 *   u32 key id | nonce (12) | AES-256-GCM(plain payload) | tag (16)
 *
 * with the record's LSN, timestamp, type and tenant as associated data, so a
 * sealed payload cannot be moved to another record unnoticed. The key is the
 * owner's: "u/<tenant>/<user>" for records about a user (turns, session
 * records, memories, profile, distillation, their jobs, the user:<id> node and
 * its edges), "t/<tenant>" for the rest (generic store, API keys, other graph
 * records). Forgetting a user shreds their key, so records that survive
 * somewhere (an old backup) can no longer be read: replay skips them.
 *
 * Sealed snapshot body: "STRATAE1" | u32 key id | sealed image, the key
 * "snap/<lsn>" shared by the tiers of one snapshot, associated data
 * "<tier>/<lsn>". A forget shreds the keys of every older snapshot (they hold
 * the user) once a new snapshot exists.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "privacy/crypt.h"

#define SNAP_SEAL_MAGIC "STRATAE1"

int db_crypto_open(strata_db *db, const strata_config *cfg)
{
    uint8_t master[CRYPT_KEY_BYTES];
    int rc;
    if (cfg->master_key_file != NULL && cfg->master_key_file[0] != '\0') {
        rc = crypt_master_from_file(cfg->master_key_file, master);
    } else if (cfg->master_key != NULL && cfg->master_key[0] != '\0') {
        rc = crypt_master_from_hex(cfg->master_key, master);
    } else {
        return STRATA_OK; /* encryption at rest is off */
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    char path[4200];
    if (cfg->keyring_path != NULL && cfg->keyring_path[0] != '\0') {
        snprintf(path, sizeof(path), "%s", cfg->keyring_path);
    } else {
        snprintf(path, sizeof(path), "%s/keyring", db->data_dir);
    }
    rc = keyring_open(path, master, &db->keyring);
    crypt_wipe(master, sizeof(master));
    return rc;
}

void db_crypto_close(strata_db *db)
{
    keyring_close(db->keyring);
    db->keyring = NULL;
}

bool db_type_user_first(uint8_t type)
{
    switch (type) {
    case AOL_DIRTY_ADD:
    case AOL_DIRTY_CLEAR:
    case AOL_MEM_ADD:
    case AOL_MEM_DELETE:
    case AOL_PROFILE_SET:
    case AOL_PROFILE_CLARIFY:
    case AOL_PROFILE_RESOLVE:
    case AOL_DISTILL_APPLY:
    case AOL_USER_FORGET:
        return true;
    default:
        return false;
    }
}

/* The user a record is about ("" when none). Caller holds write_lock (session
 * and job lookups read the current state). */
static void record_owner(strata_db *db, uint8_t type, const char *tenant, const uint8_t *p,
                         size_t n, char user[STRATA_ID_MAX + 1])
{
    user[0] = '\0';
    wire_reader r;
    wire_reader_init(&r, p, n);
    size_t an = 0;
    const char *a = wire_get_bytes(&r, &an);
    if (r.err) {
        return;
    }
    const char *u = NULL;
    size_t un = 0;
    char session[STRATA_ID_MAX + 1] = "";
    switch (type) {
    case AOL_TURN:
        u = wire_get_bytes(&r, &un);
        break;
    case AOL_JOB_ENQUEUE: {
        size_t sn = 0;
        const char *s = wire_get_bytes(&r, &sn);
        u = wire_get_bytes(&r, &un);
        if (!r.err && un == 0 && sn > 0 && sn <= STRATA_ID_MAX) {
            memcpy(session, s, sn);
            session[sn] = '\0';
        }
        break;
    }
    case AOL_SESSION_STAGE:
    case AOL_SESSION_END:
    case AOL_SESSION_EXPIRE:
        if (an <= STRATA_ID_MAX) {
            memcpy(session, a, an);
            session[an] = '\0';
        }
        break;
    case AOL_JOB_DONE:
    case AOL_JOB_FAILED:
        if (an < STRATA_JOB_ID_LEN) {
            char id[STRATA_JOB_ID_LEN];
            memcpy(id, a, an);
            id[an] = '\0';
            jobs_owner(db->jobs, id, user);
        }
        return;
    case AOL_GRAPH_NODE_PUT:
    case AOL_GRAPH_NODE_DELETE:
    case AOL_GRAPH_EDGE_PUT:
    case AOL_GRAPH_EDGE_EXPIRE:
        if (an > 5 && memcmp(a, "user:", 5) == 0) {
            u = a + 5;
            un = an - 5;
        }
        break;
    default:
        if (!db_type_user_first(type)) {
            return;
        }
        u = a;
        un = an;
        break;
    }
    if (session[0] != '\0') {
        strata_session *s = NULL;
        if (db->l1->ops->session_get(db->l1, tenant, session, &s) == STRATA_OK) {
            snprintf(user, STRATA_ID_MAX + 1, "%s", s->user_id);
        }
        strata_session_free(s);
        return;
    }
    if (u != NULL && !r.err && un > 0 && un <= STRATA_ID_MAX) {
        memcpy(user, u, un);
        user[un] = '\0';
    }
}

static size_t record_aad(uint8_t *aad, uint64_t lsn, int64_t ts_ms, uint8_t type,
                         const char *tenant, size_t tenant_len)
{
    wire_le64(aad, lsn);
    wire_le64(aad + 8, (uint64_t)ts_ms);
    aad[16] = type;
    memcpy(aad + 17, tenant, tenant_len);
    return 17 + tenant_len;
}

int db_seal_append(strata_db *db, uint8_t type, const char *tenant, size_t tenant_len,
                   int64_t ts_ms, const void *payload, size_t len, uint64_t *lsn_out)
{
    if (db->keyring == NULL || type == AOL_NOOP) {
        return aol_append(db->log, type, tenant, tenant_len, ts_ms, payload, len, lsn_out);
    }
    char t[AOL_MAX_TENANT + 1];
    if (tenant_len == 0 || tenant_len > AOL_MAX_TENANT) {
        return strata_error(STRATA_EINVAL, "log record: bad tenant length");
    }
    memcpy(t, tenant, tenant_len);
    t[tenant_len] = '\0';
    char user[STRATA_ID_MAX + 1];
    record_owner(db, type, t, payload, len, user);
    char scope[AOL_MAX_TENANT + STRATA_ID_MAX + 8];
    if (user[0] != '\0') {
        snprintf(scope, sizeof(scope), "u/%s/%s", t, user);
    } else {
        snprintf(scope, sizeof(scope), "t/%s", t);
    }
    uint32_t key_id = 0;
    uint8_t key[CRYPT_KEY_BYTES];
    int rc = keyring_key_for(db->keyring, scope, &key_id, key);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* Every append holds write_lock, so the LSN the log will assign is known
     * and can be authenticated with the payload. */
    aol_stats st;
    aol_stats_get(db->log, &st);
    uint64_t lsn = st.last_lsn + 1;
    uint8_t aad[17 + AOL_MAX_TENANT];
    size_t aad_len = record_aad(aad, lsn, ts_ms, type, tenant, tenant_len);
    sbuf sealed;
    sbuf_init(&sealed, AOL_MAX_PAYLOAD);
    uint8_t kid[4];
    wire_le32(kid, key_id);
    rc = sbuf_append(&sealed, kid, 4);
    rc = rc ? rc : crypt_seal(key, aad, aad_len, payload, len, &sealed);
    crypt_wipe(key, sizeof(key));
    uint64_t got = 0;
    rc = rc ? rc
            : aol_append_flags(db->log, type, AOL_FLAG_SEALED, tenant, tenant_len, ts_ms,
                               sealed.data, sealed.len, &got);
    sbuf_free(&sealed);
    if (rc == STRATA_OK && got != lsn) {
        rc = strata_error(STRATA_EIO, "sealed record expected LSN %" PRIu64 " got %" PRIu64,
                          lsn, got);
    }
    if (lsn_out != NULL) {
        *lsn_out = got;
    }
    return rc;
}

int db_unseal(strata_db *db, const aol_record *rec, sbuf *scratch, aol_record *out)
{
    *out = *rec;
    if (!(rec->flags & AOL_FLAG_SEALED)) {
        return STRATA_OK;
    }
    if (db->keyring == NULL) {
        return strata_error(STRATA_EINVAL,
                            "log record %" PRIu64 " is encrypted: start with the master key "
                            "(--master-key-file or STRATA_MASTER_KEY)",
                            rec->lsn);
    }
    if (rec->payload_len < 4 + CRYPT_OVERHEAD || rec->tenant_len > AOL_MAX_TENANT) {
        return strata_error(STRATA_ECORRUPT, "log record %" PRIu64 ": sealed payload too short",
                            rec->lsn);
    }
    uint32_t key_id = wire_rd32(rec->payload);
    uint8_t key[CRYPT_KEY_BYTES];
    if (keyring_key_get(db->keyring, key_id, key) != STRATA_OK) {
        return STRATA_ENOTFOUND; /* shredded: the record is gone for good */
    }
    uint8_t aad[17 + AOL_MAX_TENANT];
    size_t aad_len = record_aad(aad, rec->lsn, rec->ts_ms, rec->type, rec->tenant,
                                rec->tenant_len);
    sbuf_reset(scratch);
    int rc = crypt_open(key, aad, aad_len, rec->payload + 4, rec->payload_len - 4, scratch);
    crypt_wipe(key, sizeof(key));
    if (rc == STRATA_ECORRUPT) {
        return strata_error(STRATA_ECORRUPT,
                            "log record %" PRIu64 ": authentication failed (altered or moved)",
                            rec->lsn);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    out->flags = (uint8_t)(rec->flags & ~AOL_FLAG_SEALED);
    out->payload = (const uint8_t *)(scratch->data ? scratch->data : "");
    out->payload_len = scratch->len;
    return STRATA_OK;
}

int db_seal_snapshot(strata_db *db, const char *tier, uint64_t lsn, const sbuf *image, sbuf *out)
{
    char scope[40];
    snprintf(scope, sizeof(scope), "snap/%" PRIu64, lsn);
    uint32_t key_id = 0;
    uint8_t key[CRYPT_KEY_BYTES];
    int rc = keyring_key_for(db->keyring, scope, &key_id, key);
    if (rc != STRATA_OK) {
        return rc;
    }
    char aad[64];
    int aad_len = snprintf(aad, sizeof(aad), "%s/%" PRIu64, tier, lsn);
    uint8_t kid[4];
    wire_le32(kid, key_id);
    rc = sbuf_append(out, SNAP_SEAL_MAGIC, 8);
    rc = rc ? rc : sbuf_append(out, kid, 4);
    rc = rc ? rc : crypt_seal(key, aad, (size_t)aad_len, image->data ? image->data : "",
                              image->len, out);
    crypt_wipe(key, sizeof(key));
    return rc;
}

int db_unseal_snapshot(strata_db *db, const char *tier, uint64_t lsn, const void *body,
                       size_t len, sbuf *out, bool *sealed)
{
    *sealed = len >= 12 && memcmp(body, SNAP_SEAL_MAGIC, 8) == 0;
    if (!*sealed) {
        return STRATA_OK;
    }
    if (db->keyring == NULL) {
        return strata_error(STRATA_EINVAL,
                            "snapshot %s at LSN %" PRIu64 " is encrypted: start with the master "
                            "key (--master-key-file or STRATA_MASTER_KEY)",
                            tier, lsn);
    }
    uint32_t key_id = wire_rd32((const uint8_t *)body + 8);
    uint8_t key[CRYPT_KEY_BYTES];
    if (keyring_key_get(db->keyring, key_id, key) != STRATA_OK) {
        return strata_error(STRATA_ENOTFOUND,
                            "snapshot %s at LSN %" PRIu64 ": its key was shredded (it held "
                            "data of a user forgotten since)",
                            tier, lsn);
    }
    char aad[64];
    int aad_len = snprintf(aad, sizeof(aad), "%s/%" PRIu64, tier, lsn);
    int rc = crypt_open(key, aad, (size_t)aad_len, (const uint8_t *)body + 12, len - 12, out);
    crypt_wipe(key, sizeof(key));
    if (rc == STRATA_ECORRUPT) {
        rc = strata_error(STRATA_ECORRUPT,
                          "snapshot %s at LSN %" PRIu64 ": authentication failed (altered)",
                          tier, lsn);
    }
    return rc;
}

int db_crypto_renew_user(strata_db *db, const char *tenant, const char *user,
                         uint32_t *old_max_id)
{
    *old_max_id = 0;
    if (db->keyring == NULL) {
        return STRATA_OK;
    }
    char scope[AOL_MAX_TENANT + STRATA_ID_MAX + 8];
    snprintf(scope, sizeof(scope), "u/%s/%s", tenant, user);
    uint32_t id = 0;
    int rc = keyring_key_renew(db->keyring, scope, &id);
    if (rc == STRATA_OK) {
        *old_max_id = id - 1; /* ids only grow: every older key of the scope is below */
    }
    return rc;
}

int db_crypto_forget(strata_db *db, const char *tenant, const char *user, uint32_t max_key_id,
                     uint64_t snap_lsn)
{
    if (db->keyring == NULL) {
        return STRATA_OK;
    }
    char scope[AOL_MAX_TENANT + STRATA_ID_MAX + 8];
    snprintf(scope, sizeof(scope), "u/%s/%s", tenant, user);
    size_t n = 0;
    int rc = max_key_id == UINT32_MAX ? keyring_shred(db->keyring, scope, false, &n)
                                      : keyring_shred_upto(db->keyring, scope, max_key_id, &n);
    return rc ? rc : keyring_shred_snapshots_below(db->keyring, snap_lsn, &n);
}

bool db_record_key_unknown(strata_db *db, const aol_record *rec)
{
    if (db->keyring == NULL || !(rec->flags & AOL_FLAG_SEALED) || rec->payload_len < 4) {
        return false;
    }
    return wire_rd32(rec->payload) >= keyring_next_id(db->keyring);
}
