/*
 * embed_cache.c - an embedder that remembers: wraps another embedder and
 * serves texts it has embedded before from a bounded LRU, keyed by content.
 * Memories are re-embedded often (a re-ingested turn, a recall query asked
 * twice, the same fact from two sessions); an HTTP embedder costs a round
 * trip each time, and even the hash embedder is slower than a copy.
 *
 * Key: the first 16 bytes of SHA-256(text). 128 bits make an accidental
 * collision negligible (2^-64 at 2^32 entries), and a cryptographic hash
 * means a user cannot craft two texts that share a cache slot and so see
 * another text's vector.
 *
 *   buckets[key.lo64 & mask] -> ent -> ent -> NIL       (chains via hnext)
 *   head (most recent) <-> ent <-> ... <-> tail (evicted first)
 *   ents[i] and vecs[i * dim .. + dim) belong together
 *
 * Entries live in arrays that grow by doubling up to capacity, so a large
 * capacity costs nothing until it is used; a full cache reuses the tail
 * entry (and its vector row) for the new key.
 *
 * Flow of one embed call of n texts:
 *   1. hash every text (no lock);
 *   2. under mu: copy hits into out and refresh them; collect the distinct
 *      missing keys (a batch with the same text twice embeds it once);
 *   3. without the lock: the inner embedder embeds the distinct misses;
 *   4. under mu: insert them (a key another thread inserted meanwhile is
 *      just refreshed), then copy them to their rows.
 * The inner call runs unlocked so that one slow HTTP request does not stall
 * every other thread's hits. The price: two threads missing the same text at
 * the same time both embed it (no in-flight table; the second insert finds
 * the key and keeps one copy).
 *
 * Invariants: n_ents <= capacity; every entry is on the LRU list and in
 * exactly one chain; n_buckets is a power of two >= cap_ents.
 *
 * Locking: mu protects every field from ents down, the counters included.
 * inner, capacity and base are fixed at creation; the inner embedder is
 * thread-safe itself (embed.h).
 */
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>

#include "providers/embed.h"

#define CACHE_NIL UINT32_MAX
#define CACHE_KEY_BYTES 16u

typedef struct cache_ent {
    uint8_t key[CACHE_KEY_BYTES];   /* SHA-256(text)[0..16) */
    uint32_t prev;                  /* LRU neighbour towards head, CACHE_NIL at head */
    uint32_t next;                  /* LRU neighbour towards tail, CACHE_NIL at tail */
    uint32_t hnext;                 /* next entry in the same bucket, CACHE_NIL at end */
} cache_ent;

typedef struct embed_cache {
    embedder base;          /* first: the embedder * handed out points here */
    embedder *inner;        /* owned */
    size_t capacity;        /* maximum entries */
    pthread_mutex_t mu;     /* protects everything below */
    cache_ent *ents;        /* cap_ents slots, n_ents used */
    float *vecs;            /* cap_ents * dim floats */
    uint32_t n_ents;
    uint32_t cap_ents;
    uint32_t *buckets;      /* n_buckets chain heads */
    uint32_t n_buckets;
    uint32_t head;          /* most recently used, CACHE_NIL when empty */
    uint32_t tail;          /* least recently used */
    uint64_t hits;          /* rows served without the inner embedder */
    uint64_t misses;        /* texts passed to the inner embedder */
} embed_cache;

static uint64_t key_lo(const uint8_t *key)
{
    uint64_t v;
    memcpy(&v, key, sizeof(v));
    return v;
}

static void text_key(const char *text, size_t len, uint8_t key[CACHE_KEY_BYTES])
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, len, md);
    memcpy(key, md, CACHE_KEY_BYTES);
}

/* ---- LRU list and chains; caller holds mu ------------------------------ */

static void lru_unlink(embed_cache *c, uint32_t i)
{
    cache_ent *e = &c->ents[i];
    if (e->prev != CACHE_NIL) {
        c->ents[e->prev].next = e->next;
    } else {
        c->head = e->next;
    }
    if (e->next != CACHE_NIL) {
        c->ents[e->next].prev = e->prev;
    } else {
        c->tail = e->prev;
    }
}

static void lru_push_head(embed_cache *c, uint32_t i)
{
    cache_ent *e = &c->ents[i];
    e->prev = CACHE_NIL;
    e->next = c->head;
    if (c->head != CACHE_NIL) {
        c->ents[c->head].prev = i;
    } else {
        c->tail = i;
    }
    c->head = i;
}

static uint32_t cache_find(const embed_cache *c, const uint8_t *key)
{
    if (c->n_buckets == 0) {
        return CACHE_NIL;
    }
    uint32_t i = c->buckets[key_lo(key) & (c->n_buckets - 1)];
    while (i != CACHE_NIL && memcmp(c->ents[i].key, key, CACHE_KEY_BYTES) != 0) {
        i = c->ents[i].hnext;
    }
    return i;
}

static void chain_insert(embed_cache *c, uint32_t i)
{
    uint32_t *head = &c->buckets[key_lo(c->ents[i].key) & (c->n_buckets - 1)];
    c->ents[i].hnext = *head;
    *head = i;
}

static void chain_remove(embed_cache *c, uint32_t i)
{
    uint32_t *pp = &c->buckets[key_lo(c->ents[i].key) & (c->n_buckets - 1)];
    while (*pp != i) {
        pp = &c->ents[*pp].hnext;
    }
    *pp = c->ents[i].hnext;
}

/* Room for one more entry below capacity: grow the arrays by doubling, and
 * the bucket array with them so chains stay short. Everything that can fail
 * is allocated before anything changes. */
static int cache_grow(embed_cache *c)
{
    size_t dim = c->base.dim;
    uint32_t cap = c->cap_ents ? c->cap_ents * 2 : 16;
    if (cap > c->capacity) {
        cap = (uint32_t)c->capacity;
    }
    uint32_t nb = c->n_buckets ? c->n_buckets : 16;
    while (nb < cap) {
        nb *= 2;
    }
    uint32_t *b = NULL;
    if (nb != c->n_buckets) {
        b = strata_malloc((size_t)nb * sizeof(*b));
        if (b == NULL) {
            return STRATA_ENOMEM;
        }
    }
    /* A realloc that succeeds before a later one fails only leaves spare room. */
    cache_ent *ents = strata_realloc(c->ents, (size_t)cap * sizeof(*ents));
    if (ents == NULL) {
        strata_free(b);
        return STRATA_ENOMEM;
    }
    c->ents = ents;
    float *vecs = strata_realloc(c->vecs, (size_t)cap * dim * sizeof(*vecs));
    if (vecs == NULL) {
        strata_free(b);
        return STRATA_ENOMEM;
    }
    c->vecs = vecs;
    c->cap_ents = cap;
    if (b != NULL) {
        for (uint32_t i = 0; i < nb; i++) {
            b[i] = CACHE_NIL;
        }
        strata_free(c->buckets);
        c->buckets = b;
        c->n_buckets = nb;
        for (uint32_t i = 0; i < c->n_ents; i++) {
            chain_insert(c, i);
        }
    }
    return STRATA_OK;
}

/* Insert key with vector vec, or refresh it if present. On ENOMEM the vector
 * is simply not cached. Caller holds mu. */
static void cache_put(embed_cache *c, const uint8_t *key, const float *vec)
{
    size_t dim = c->base.dim;
    uint32_t i = cache_find(c, key);
    if (i != CACHE_NIL) {
        lru_unlink(c, i);
        lru_push_head(c, i);
        return;
    }
    if (c->n_ents < c->capacity) {
        if (c->n_ents == c->cap_ents && cache_grow(c) != STRATA_OK) {
            return;
        }
        i = c->n_ents++;
    } else {
        i = c->tail;
        lru_unlink(c, i);
        chain_remove(c, i);
    }
    memcpy(c->ents[i].key, key, CACHE_KEY_BYTES);
    memcpy(c->vecs + (size_t)i * dim, vec, dim * sizeof(float));
    chain_insert(c, i);
    lru_push_head(c, i);
}

/* ---- ops --------------------------------------------------------------- */

static int cache_embed(embedder *e, const char *const *texts, const size_t *lens, size_t n,
                       float *out)
{
    embed_cache *c = (embed_cache *)e;
    if (n == 0) {
        return STRATA_OK;
    }
    if (texts == NULL || out == NULL) {
        return strata_error(STRATA_EINVAL, "embed: texts and out are required");
    }
    size_t dim = c->base.dim;
    uint8_t *keys = strata_malloc(n * CACHE_KEY_BYTES);
    size_t *row_miss = strata_malloc(n * sizeof(*row_miss));   /* miss index, or SIZE_MAX */
    size_t *miss_row = strata_malloc(n * sizeof(*miss_row));   /* first row of each miss */
    const char **miss_text = strata_malloc(n * sizeof(*miss_text));
    size_t *miss_len = strata_malloc(n * sizeof(*miss_len));
    size_t tcap = 16;
    while (tcap < 2 * n) {
        tcap *= 2;
    }
    size_t *dedup = strata_calloc(tcap, sizeof(*dedup));       /* miss index + 1, 0 empty */
    float *vecs = NULL;
    int rc = STRATA_OK;
    if (keys == NULL || row_miss == NULL || miss_row == NULL || miss_text == NULL ||
        miss_len == NULL || dedup == NULL) {
        rc = strata_error(STRATA_ENOMEM, "embed cache: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (texts[i] == NULL) {
            rc = strata_error(STRATA_EINVAL, "embed: text %zu is NULL", i);
            goto done;
        }
        size_t len = lens != NULL ? lens[i] : strlen(texts[i]);
        text_key(texts[i], len, keys + i * CACHE_KEY_BYTES);
    }

    size_t n_miss = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *key = keys + i * CACHE_KEY_BYTES;
        uint32_t ent = cache_find(c, key);
        if (ent != CACHE_NIL) {
            memcpy(out + i * dim, c->vecs + (size_t)ent * dim, dim * sizeof(float));
            lru_unlink(c, ent);
            lru_push_head(c, ent);
            row_miss[i] = SIZE_MAX;
            c->hits++;
            continue;
        }
        size_t h = (size_t)key_lo(key) & (tcap - 1);
        while (dedup[h] != 0) {
            const uint8_t *seen = keys + miss_row[dedup[h] - 1] * CACHE_KEY_BYTES;
            if (memcmp(seen, key, CACHE_KEY_BYTES) == 0) {
                break;
            }
            h = (h + 1) & (tcap - 1);
        }
        if (dedup[h] != 0) {
            row_miss[i] = dedup[h] - 1;     /* same text earlier in the batch */
            c->hits++;
            continue;
        }
        miss_row[n_miss] = i;
        miss_text[n_miss] = texts[i];
        miss_len[n_miss] = lens != NULL ? lens[i] : strlen(texts[i]);
        row_miss[i] = n_miss;
        n_miss++;
        dedup[h] = n_miss;
    }
    c->misses += n_miss;
    pthread_mutex_unlock(&c->mu);
    if (n_miss == 0) {
        goto done;
    }

    vecs = strata_malloc(n_miss * dim * sizeof(*vecs));
    if (vecs == NULL) {
        rc = strata_error(STRATA_ENOMEM, "embed cache: out of memory");
        goto done;
    }
    rc = c->inner->ops->embed(c->inner, miss_text, miss_len, n_miss, vecs);
    if (rc != STRATA_OK) {
        goto done;
    }
    pthread_mutex_lock(&c->mu);
    for (size_t m = 0; m < n_miss; m++) {
        cache_put(c, keys + miss_row[m] * CACHE_KEY_BYTES, vecs + m * dim);
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        if (row_miss[i] != SIZE_MAX) {
            memcpy(out + i * dim, vecs + row_miss[i] * dim, dim * sizeof(float));
        }
    }
done:
    strata_free(vecs);
    strata_free(dedup);
    strata_free(miss_len);
    strata_free(miss_text);
    strata_free(miss_row);
    strata_free(row_miss);
    strata_free(keys);
    return rc;
}

static void cache_close(embedder *e)
{
    embed_cache *c = (embed_cache *)e;
    if (c == NULL) {
        return;
    }
    embedder_free(c->inner);
    pthread_mutex_destroy(&c->mu);
    strata_free(c->ents);
    strata_free(c->vecs);
    strata_free(c->buckets);
    strata_free(c);
}

static const embedder_ops g_cache_ops = {
    .name = "cached",
    .embed = cache_embed,
    .close = cache_close,
};

int embedder_cache_create(embedder *inner, size_t capacity, embedder **out)
{
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "embedder_cache_create: out is NULL");
    }
    *out = NULL;
    if (inner == NULL || inner->dim == 0) {
        return strata_error(STRATA_EINVAL, "embedder_cache_create: no inner embedder, or its "
                            "dimension is not known yet");
    }
    if (capacity == 0 || capacity > EMBED_CACHE_CAPACITY_MAX) {
        return strata_error(STRATA_EINVAL, "embedder cache: capacity %zu is not in 1..%u",
                            capacity, EMBED_CACHE_CAPACITY_MAX);
    }
    embed_cache *c = strata_calloc(1, sizeof(*c));
    if (c == NULL) {
        return strata_error(STRATA_ENOMEM, "embedder cache: out of memory");
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        strata_free(c);
        return strata_error(STRATA_ENOMEM, "embedder cache: cannot create a mutex");
    }
    c->base.ops = &g_cache_ops;
    c->base.dim = inner->dim;
    memcpy(c->base.model, inner->model, sizeof(c->base.model));
    c->base.model[sizeof(c->base.model) - 1] = '\0';
    c->inner = inner;
    c->capacity = capacity;
    c->head = CACHE_NIL;
    c->tail = CACHE_NIL;
    *out = &c->base;
    return STRATA_OK;
}

void embedder_cache_stats(embedder *cached, uint64_t *hits, uint64_t *misses)
{
    uint64_t h = 0;
    uint64_t m = 0;
    if (cached != NULL && cached->ops == &g_cache_ops) {
        embed_cache *c = (embed_cache *)cached;
        pthread_mutex_lock(&c->mu);
        h = c->hits;
        m = c->misses;
        pthread_mutex_unlock(&c->mu);
    }
    if (hits != NULL) {
        *hits = h;
    }
    if (misses != NULL) {
        *misses = m;
    }
}
