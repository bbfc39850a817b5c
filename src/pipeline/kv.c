/*
 * kv.c - the generic store behind the brief's MemoryStore.get/put: JSON
 * documents under (tenant, tier, key). Values are stored as the validated
 * JSON text the client sent.
 *
 *   dict: "<tenant>\0<tier digit>\0<key>" -> kv_value { len, bytes, NUL }
 *
 * Locking: `lock` (rwlock) protects the dict; writers also hold the db's
 * write_lock, which orders them with the log.
 *
 * Snapshot image (wire codec, little-endian):
 *   u32 version (1) | u64 count | count x { bytes composite key | bytes value }
 */
#include <pthread.h>
#include <string.h>

#include "pipeline/pipeline.h"

typedef struct kv_value {
    size_t len;
    char data[]; /* len bytes + NUL */
} kv_value;

struct kv_store {
    pthread_rwlock_t lock;
    dict *map;
};

static const dict_type kv_dict_type = {strata_free};

kv_store *kv_create(void)
{
    kv_store *kv = strata_calloc(1, sizeof(*kv));
    if (kv == NULL) {
        return NULL;
    }
    kv->map = dict_create(&kv_dict_type);
    if (kv->map == NULL) {
        strata_free(kv);
        return NULL;
    }
    pthread_rwlock_init(&kv->lock, NULL);
    return kv;
}

void kv_free(kv_store *kv)
{
    if (kv == NULL) {
        return;
    }
    dict_free(kv->map);
    pthread_rwlock_destroy(&kv->lock);
    strata_free(kv);
}

/* Compose the dict key into buf (cap bytes); returns its length or 0 if too long. */
static size_t kv_compose(char *buf, size_t cap, const char *tenant, size_t tenant_len,
                         strata_tier tier, const char *key, size_t key_len)
{
    size_t n = tenant_len + 3 + key_len;
    if (n > cap) {
        return 0;
    }
    memcpy(buf, tenant, tenant_len);
    buf[tenant_len] = '\0';
    buf[tenant_len + 1] = (char)('0' + (int)tier);
    buf[tenant_len + 2] = '\0';
    memcpy(buf + tenant_len + 3, key, key_len);
    return n;
}

#define KV_COMPOSITE_MAX (AOL_MAX_TENANT + 3 + STRATA_KV_KEY_MAX)

int kv_apply_put(kv_store *kv, const char *tenant, size_t tenant_len, strata_tier tier,
                 const char *key, size_t key_len, const char *val, size_t val_len)
{
    char ck[KV_COMPOSITE_MAX];
    size_t ck_len = kv_compose(ck, sizeof(ck), tenant, tenant_len, tier, key, key_len);
    if (ck_len == 0) {
        return strata_error(STRATA_EINVAL, "key too long");
    }
    kv_value *v = strata_malloc(sizeof(*v) + val_len + 1);
    if (v == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory storing a value");
    }
    v->len = val_len;
    memcpy(v->data, val, val_len);
    v->data[val_len] = '\0';
    pthread_rwlock_wrlock(&kv->lock);
    int rc = dict_set(kv->map, ck, ck_len, v);
    pthread_rwlock_unlock(&kv->lock);
    if (rc != STRATA_OK) {
        strata_free(v);
    }
    return rc;
}

int kv_apply_delete(kv_store *kv, const char *tenant, size_t tenant_len, strata_tier tier,
                    const char *key, size_t key_len)
{
    char ck[KV_COMPOSITE_MAX];
    size_t ck_len = kv_compose(ck, sizeof(ck), tenant, tenant_len, tier, key, key_len);
    if (ck_len == 0) {
        return STRATA_ENOTFOUND;
    }
    pthread_rwlock_wrlock(&kv->lock);
    int removed = dict_delete(kv->map, ck, ck_len);
    pthread_rwlock_unlock(&kv->lock);
    return removed ? STRATA_OK : STRATA_ENOTFOUND;
}

int kv_get(kv_store *kv, const char *tenant, strata_tier tier, const char *key, char **val_out,
           size_t *len_out)
{
    *val_out = NULL;
    *len_out = 0;
    char ck[KV_COMPOSITE_MAX];
    size_t ck_len = kv_compose(ck, sizeof(ck), tenant, strlen(tenant), tier, key, strlen(key));
    if (ck_len == 0) {
        return STRATA_ENOTFOUND;
    }
    int rc = STRATA_ENOTFOUND;
    pthread_rwlock_rdlock(&kv->lock);
    kv_value *v = dict_get(kv->map, ck, ck_len);
    if (v != NULL) {
        *val_out = strata_strndup(v->data, v->len);
        if (*val_out == NULL) {
            rc = STRATA_ENOMEM;
        } else {
            *len_out = v->len;
            rc = STRATA_OK;
        }
    }
    pthread_rwlock_unlock(&kv->lock);
    return rc;
}

uint64_t kv_count(kv_store *kv)
{
    pthread_rwlock_rdlock(&kv->lock);
    uint64_t n = dict_size(kv->map);
    pthread_rwlock_unlock(&kv->lock);
    return n;
}

int kv_snapshot_write(kv_store *kv, sbuf *out)
{
    pthread_rwlock_rdlock(&kv->lock);
    int rc = wire_put_u32(out, 1);
    if (rc == STRATA_OK) {
        rc = wire_put_u64(out, dict_size(kv->map));
    }
    dict_iter it;
    dict_iter_init(&it, kv->map);
    const char *k;
    size_t klen;
    void *val;
    while (rc == STRATA_OK && dict_next(&it, &k, &klen, &val)) {
        kv_value *v = val;
        rc = wire_put_bytes(out, k, klen);
        if (rc == STRATA_OK) {
            rc = wire_put_bytes(out, v->data, v->len);
        }
    }
    pthread_rwlock_unlock(&kv->lock);
    return rc;
}

int kv_snapshot_load(kv_store *kv, const void *data, size_t len)
{
    wire_reader r;
    wire_reader_init(&r, data, len);
    uint32_t version = wire_get_u32(&r);
    uint64_t count = wire_get_u64(&r);
    /* Each entry takes at least 8 bytes: a count past that is a lie. */
    if (r.err || version != 1 || count > (len - r.off) / 8) {
        return strata_error(STRATA_ECORRUPT, "kv snapshot: bad header");
    }
    dict *map = dict_create(&kv_dict_type);
    if (map == NULL) {
        return STRATA_ENOMEM;
    }
    int rc = STRATA_OK;
    for (uint64_t i = 0; i < count && rc == STRATA_OK; i++) {
        size_t klen;
        size_t vlen;
        const char *k = wire_get_bytes(&r, &klen);
        const char *v = wire_get_bytes(&r, &vlen);
        if (r.err || klen == 0 || klen > KV_COMPOSITE_MAX) {
            rc = strata_error(STRATA_ECORRUPT, "kv snapshot: bad entry %llu",
                              (unsigned long long)i);
            break;
        }
        kv_value *kvv = strata_malloc(sizeof(*kvv) + vlen + 1);
        if (kvv == NULL) {
            rc = STRATA_ENOMEM;
            break;
        }
        kvv->len = vlen;
        memcpy(kvv->data, v, vlen);
        kvv->data[vlen] = '\0';
        rc = dict_set(map, k, klen, kvv);
        if (rc != STRATA_OK) {
            strata_free(kvv);
        }
    }
    if (rc == STRATA_OK && !wire_done(&r)) {
        rc = strata_error(STRATA_ECORRUPT, "kv snapshot: trailing bytes");
    }
    if (rc != STRATA_OK) {
        dict_free(map);
        return rc;
    }
    pthread_rwlock_wrlock(&kv->lock);
    dict *old = kv->map;
    kv->map = map;
    pthread_rwlock_unlock(&kv->lock);
    dict_free(old);
    return STRATA_OK;
}
