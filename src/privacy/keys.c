/*
 * keys.c - the API key table. Keys are random 32-byte secrets shown to the
 * administrator once ("sk_" + 64 hex digits); only their SHA-256 is kept, in
 * the log and in snapshots, so a stolen data directory yields no usable key.
 *
 *   by_id:   dict key id  -> key_ent { tenant, hash, created_at }
 *   by_hash: dict 32-byte hash -> key_ent (borrowed from by_id)
 *
 * Locking: `lock` (rwlock); writers also hold the db write lock.
 *
 * Snapshot image: u32 version 1 | u32 n | n x {str key id | str tenant |
 *   bytes hash (32) | i64 created_at}
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "privacy/keys.h"

typedef struct key_ent {
    char id[STRATA_JOB_ID_LEN];
    char tenant[STRATA_ID_MAX + 1];
    uint8_t hash[32];
    int64_t created_at;
} key_ent;

struct key_store {
    pthread_rwlock_t lock;
    dict *by_id;
    dict *by_hash;
};

static const dict_type key_dict_type = {strata_free};

key_store *keys_create(void)
{
    key_store *ks = strata_calloc(1, sizeof(*ks));
    if (ks == NULL) {
        return NULL;
    }
    ks->by_id = dict_create(&key_dict_type);
    ks->by_hash = dict_create(NULL);
    if (ks->by_id == NULL || ks->by_hash == NULL) {
        dict_free(ks->by_id);
        dict_free(ks->by_hash);
        strata_free(ks);
        return NULL;
    }
    pthread_rwlock_init(&ks->lock, NULL);
    return ks;
}

void keys_free(key_store *ks)
{
    if (ks == NULL) {
        return;
    }
    dict_free(ks->by_hash);
    dict_free(ks->by_id);
    pthread_rwlock_destroy(&ks->lock);
    strata_free(ks);
}

/* Caller holds the write lock. */
static int keys_insert(key_store *ks, const char *key_id, const char *tenant,
                       const uint8_t hash[32], int64_t created_at)
{
    if (strlen(key_id) >= STRATA_JOB_ID_LEN || strlen(tenant) > STRATA_ID_MAX) {
        return strata_error(STRATA_EINVAL, "bad key id or tenant");
    }
    if (dict_get(ks->by_id, key_id, strlen(key_id)) != NULL) {
        return STRATA_OK; /* replayed */
    }
    key_ent *e = strata_calloc(1, sizeof(*e));
    if (e == NULL) {
        return STRATA_ENOMEM;
    }
    memcpy(e->id, key_id, strlen(key_id) + 1);
    memcpy(e->tenant, tenant, strlen(tenant) + 1);
    memcpy(e->hash, hash, 32);
    e->created_at = created_at;
    if (dict_set(ks->by_id, key_id, strlen(key_id), e) != STRATA_OK) {
        strata_free(e);
        return STRATA_ENOMEM;
    }
    if (dict_set(ks->by_hash, hash, 32, e) != STRATA_OK) {
        dict_delete(ks->by_id, key_id, strlen(key_id));
        return STRATA_ENOMEM;
    }
    return STRATA_OK;
}

int keys_apply_create(key_store *ks, const char *key_id, const char *tenant,
                      const uint8_t hash[32], int64_t created_at)
{
    pthread_rwlock_wrlock(&ks->lock);
    int rc = keys_insert(ks, key_id, tenant, hash, created_at);
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int keys_apply_revoke(key_store *ks, const char *key_id)
{
    pthread_rwlock_wrlock(&ks->lock);
    key_ent *e = dict_get(ks->by_id, key_id, strlen(key_id));
    int rc = STRATA_ENOTFOUND;
    if (e != NULL) {
        dict_delete(ks->by_hash, e->hash, 32);
        dict_delete(ks->by_id, key_id, strlen(key_id));
        rc = STRATA_OK;
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int keys_lookup(key_store *ks, const uint8_t hash[32], char tenant_out[STRATA_ID_MAX + 1],
                char key_id_out[STRATA_JOB_ID_LEN])
{
    pthread_rwlock_rdlock(&ks->lock);
    /* A hash lookup compares digests, not secrets: timing reveals nothing
     * about the key itself. */
    key_ent *e = dict_get(ks->by_hash, hash, 32);
    int rc = STRATA_ENOTFOUND;
    if (e != NULL) {
        memcpy(tenant_out, e->tenant, sizeof(e->tenant));
        memcpy(key_id_out, e->id, sizeof(e->id));
        rc = STRATA_OK;
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

bool keys_exists(key_store *ks, const char *key_id, char tenant_out[STRATA_ID_MAX + 1])
{
    pthread_rwlock_rdlock(&ks->lock);
    key_ent *e = dict_get(ks->by_id, key_id, strlen(key_id));
    if (e != NULL && tenant_out != NULL) {
        memcpy(tenant_out, e->tenant, sizeof(e->tenant));
    }
    pthread_rwlock_unlock(&ks->lock);
    return e != NULL;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int keys_list(key_store *ks, const char *tenant, strata_strlist **out)
{
    *out = NULL;
    strata_strlist *l = strata_calloc(1, sizeof(*l));
    if (l == NULL) {
        return STRATA_ENOMEM;
    }
    pthread_rwlock_rdlock(&ks->lock);
    l->items = strata_calloc(dict_size(ks->by_id) + 1, sizeof(char *));
    int rc = l->items ? STRATA_OK : STRATA_ENOMEM;
    dict_iter it;
    dict_iter_init(&it, ks->by_id);
    void *val;
    while (rc == STRATA_OK && dict_next(&it, NULL, NULL, &val)) {
        key_ent *e = val;
        if (strcmp(e->tenant, tenant) == 0) {
            l->items[l->n] = strata_strdup(e->id);
            rc = l->items[l->n] ? STRATA_OK : STRATA_ENOMEM;
            l->n += rc == STRATA_OK;
        }
    }
    pthread_rwlock_unlock(&ks->lock);
    if (rc != STRATA_OK) {
        strata_strlist_free(l);
        return rc;
    }
    if (l->n > 1) {
        qsort(l->items, l->n, sizeof(char *), str_cmp);
    }
    *out = l;
    return STRATA_OK;
}

uint64_t keys_count(key_store *ks)
{
    pthread_rwlock_rdlock(&ks->lock);
    uint64_t n = dict_size(ks->by_id);
    pthread_rwlock_unlock(&ks->lock);
    return n;
}

int keys_snapshot_write(key_store *ks, sbuf *out)
{
    pthread_rwlock_rdlock(&ks->lock);
    int rc = wire_put_u32(out, 1);
    rc = rc ? rc : wire_put_u32(out, (uint32_t)dict_size(ks->by_id));
    dict_iter it;
    dict_iter_init(&it, ks->by_id);
    void *val;
    while (rc == STRATA_OK && dict_next(&it, NULL, NULL, &val)) {
        key_ent *e = val;
        rc = wire_put_str(out, e->id);
        rc = rc ? rc : wire_put_str(out, e->tenant);
        rc = rc ? rc : wire_put_bytes(out, e->hash, 32);
        rc = rc ? rc : wire_put_i64(out, e->created_at);
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int keys_snapshot_load(key_store *ks, const void *data, size_t len)
{
    wire_reader r;
    wire_reader_init(&r, data, len);
    uint32_t version = wire_get_u32(&r);
    uint32_t n = wire_get_u32(&r);
    if (r.err || version != 1 || n > (len - r.off) / 48) {
        return strata_error(STRATA_ECORRUPT, "keys snapshot: bad header");
    }
    pthread_rwlock_wrlock(&ks->lock);
    int rc = STRATA_OK;
    for (uint32_t i = 0; i < n && rc == STRATA_OK; i++) {
        char *id = wire_get_strdup(&r);
        char *tenant = wire_get_strdup(&r);
        size_t hl;
        const char *hash = wire_get_bytes(&r, &hl);
        int64_t created = wire_get_i64(&r);
        if (r.err || id == NULL || tenant == NULL || hl != 32 ||
            !strata_id_valid(tenant, strlen(tenant))) {
            rc = strata_error(STRATA_ECORRUPT, "keys snapshot: bad key %u", i);
        } else {
            rc = keys_insert(ks, id, tenant, (const uint8_t *)hash, created);
        }
        strata_free(id);
        strata_free(tenant);
    }
    if (rc == STRATA_OK && !wire_done(&r)) {
        rc = strata_error(STRATA_ECORRUPT, "keys snapshot: trailing bytes");
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}
