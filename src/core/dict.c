/*
 * dict.c - a string-keyed hash table with separate chaining and incremental
 * doubling at load factor 1. Keys are copied into the entry (one allocation
 * per entry: header + key bytes); values are owned according to the type
 * table, as in Redis's dict. Not thread-safe: the owner locks.
 *
 *   buckets[] -> entry -> entry -> NULL
 *   entry: { next, hash, val, klen, key bytes..., NUL }
 */
#include <string.h>

#include "core/core.h"

typedef struct dict_entry {
    struct dict_entry *next;
    uint64_t hash;
    void *val;
    size_t klen;
    char key[]; /* klen bytes + NUL */
} dict_entry;

struct dict {
    const dict_type *type;
    dict_entry **buckets;
    size_t n_buckets; /* power of two */
    size_t size;
};

static uint64_t g_hash_seed = 0x9E3779B97F4A7C15ull;

/* FNV-1a 64 finalised with a murmur mix: fast for short ids, seeded. */
uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull ^ g_hash_seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

dict *dict_create(const dict_type *type)
{
    dict *d = strata_calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    d->type = type;
    d->n_buckets = 16;
    d->buckets = strata_calloc(d->n_buckets, sizeof(*d->buckets));
    if (d->buckets == NULL) {
        strata_free(d);
        return NULL;
    }
    return d;
}

static void dict_val_free(dict *d, void *val)
{
    if (d->type != NULL && d->type->val_free != NULL && val != NULL) {
        d->type->val_free(val);
    }
}

void dict_free(dict *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n_buckets; i++) {
        dict_entry *e = d->buckets[i];
        while (e != NULL) {
            dict_entry *next = e->next;
            dict_val_free(d, e->val);
            strata_free(e);
            e = next;
        }
    }
    strata_free(d->buckets);
    strata_free(d);
}

size_t dict_size(const dict *d)
{
    return d->size;
}

static dict_entry **dict_find(const dict *d, const void *key, size_t klen, uint64_t h)
{
    dict_entry **pp = &d->buckets[h & (d->n_buckets - 1)];
    while (*pp != NULL) {
        dict_entry *e = *pp;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            return pp;
        }
        pp = &e->next;
    }
    return pp;
}

void *dict_get(const dict *d, const void *key, size_t klen)
{
    dict_entry **pp = dict_find(d, key, klen, hash_bytes(key, klen));
    return *pp ? (*pp)->val : NULL;
}

/* Double the bucket array; on ENOMEM keep the old one (longer chains, still correct). */
static void dict_grow(dict *d)
{
    size_t nb = d->n_buckets * 2;
    dict_entry **b = strata_calloc(nb, sizeof(*b));
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n_buckets; i++) {
        dict_entry *e = d->buckets[i];
        while (e != NULL) {
            dict_entry *next = e->next;
            size_t j = e->hash & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    strata_free(d->buckets);
    d->buckets = b;
    d->n_buckets = nb;
}

int dict_set(dict *d, const void *key, size_t klen, void *val)
{
    uint64_t h = hash_bytes(key, klen);
    dict_entry **pp = dict_find(d, key, klen, h);
    if (*pp != NULL) {
        void *old = (*pp)->val;
        (*pp)->val = val;
        if (old != val) {
            dict_val_free(d, old);
        }
        return STRATA_OK;
    }
    dict_entry *e = strata_malloc(sizeof(*e) + klen + 1);
    if (e == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory in hash table");
    }
    e->next = NULL;
    e->hash = h;
    e->val = val;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    *pp = e;
    d->size++;
    if (d->size > d->n_buckets) {
        dict_grow(d);
    }
    return STRATA_OK;
}

void *dict_take(dict *d, const void *key, size_t klen)
{
    dict_entry **pp = dict_find(d, key, klen, hash_bytes(key, klen));
    dict_entry *e = *pp;
    if (e == NULL) {
        return NULL;
    }
    *pp = e->next;
    void *val = e->val;
    strata_free(e);
    d->size--;
    return val;
}

int dict_delete(dict *d, const void *key, size_t klen)
{
    dict_entry **pp = dict_find(d, key, klen, hash_bytes(key, klen));
    dict_entry *e = *pp;
    if (e == NULL) {
        return 0;
    }
    *pp = e->next;
    dict_val_free(d, e->val);
    strata_free(e);
    d->size--;
    return 1;
}

void dict_iter_init(dict_iter *it, const dict *d)
{
    it->d = d;
    it->bucket = 0;
    it->entry = NULL;
}

/* The iterator remembers the next entry before returning the current one, so
 * the caller may delete the entry it was just given. */
bool dict_next(dict_iter *it, const char **key, size_t *klen, void **val)
{
    dict_entry *e = it->entry;
    while (e == NULL) {
        if (it->bucket >= it->d->n_buckets) {
            return false;
        }
        e = it->d->buckets[it->bucket++];
    }
    it->entry = e->next;
    if (key != NULL) {
        *key = e->key;
    }
    if (klen != NULL) {
        *klen = e->klen;
    }
    if (val != NULL) {
        *val = e->val;
    }
    return true;
}
