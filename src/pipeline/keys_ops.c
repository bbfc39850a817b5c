/*
 * keys_ops.c - the engine's API-key operations: create (the secret is made
 * here, shown once, logged only as its SHA-256), list, revoke, authenticate.
 */
#include <openssl/sha.h>
#include <string.h>

#include "pipeline/pipeline.h"

int strata_key_create(strata_db *db, const char *tenant, char key_id_out[STRATA_JOB_ID_LEN],
                      char key_out[STRATA_KEY_LEN])
{
    key_id_out[0] = '\0';
    key_out[0] = '\0';
    int rc = db_check_tenant(tenant);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint8_t secret[32];
    uint8_t idr[8];
    rc = random_bytes(secret, sizeof(secret));
    rc = rc ? rc : random_bytes(idr, sizeof(idr));
    if (rc != STRATA_OK) {
        return rc;
    }
    char key[STRATA_KEY_LEN];
    memcpy(key, "sk_", 3);
    hex_encode(key + 3, secret, sizeof(secret));
    char key_id[STRATA_JOB_ID_LEN];
    memcpy(key_id, "key_", 4);
    hex_encode(key_id + 4, idr, sizeof(idr));
    uint8_t hash[32];
    SHA256((const unsigned char *)key, strlen(key), hash);
    sbuf p;
    sbuf_init(&p, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&p, key_id);
    rc = rc ? rc : wire_put_bytes(&p, hash, sizeof(hash));
    rc = rc ? rc : db_log(db, AOL_KEY_CREATE, tenant, &p, NULL);
    sbuf_free(&p);
    if (rc == STRATA_OK) {
        memcpy(key_id_out, key_id, strlen(key_id) + 1);
        memcpy(key_out, key, strlen(key) + 1);
    }
    return rc;
}

int strata_key_list(strata_db *db, const char *tenant, strata_strlist **out)
{
    *out = NULL;
    int rc = db_check_tenant(tenant);
    return rc ? rc : keys_list(db->keys, tenant, out);
}

typedef struct revoke_arg {
    const char *key_id;
    char tenant[STRATA_ID_MAX + 1];
} revoke_arg;

static int revoke_precheck(strata_db *db, void *argp)
{
    revoke_arg *a = argp;
    if (!keys_exists(db->keys, a->key_id, a->tenant)) {
        return strata_error(STRATA_ENOTFOUND, "no key %s", a->key_id);
    }
    return STRATA_OK;
}

int strata_key_revoke(strata_db *db, const char *key_id)
{
    int rc = db_check_id("key_id", key_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    revoke_arg a = {key_id, ""};
    if (!keys_exists(db->keys, key_id, a.tenant)) {
        return strata_error(STRATA_ENOTFOUND, "no key %s", key_id);
    }
    sbuf p;
    sbuf_init(&p, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&p, key_id);
    rc = rc ? rc : db_write(db, AOL_KEY_REVOKE, a.tenant, &p, revoke_precheck, &a, NULL);
    sbuf_free(&p);
    return rc;
}

int strata_key_authenticate(strata_db *db, const char *key, char tenant_out[STRATA_ID_MAX + 1],
                            char key_id_out[STRATA_JOB_ID_LEN])
{
    tenant_out[0] = '\0';
    key_id_out[0] = '\0';
    if (key == NULL || key[0] == '\0' || strlen(key) >= STRATA_KEY_LEN) {
        return STRATA_ENOTFOUND;
    }
    uint8_t hash[32];
    SHA256((const unsigned char *)key, strlen(key), hash);
    return keys_lookup(db->keys, hash, tenant_out, key_id_out);
}

uint64_t strata_key_count(strata_db *db)
{
    return keys_count(db->keys);
}
