/*
 * l2_mem.c - the embedded L2 backend: memory payloads in a hash table, their
 * vectors in an HNSW index and their content in a BM25 index, searched by
 * meaning, by keywords, or both fused.
 *
 *   by_id: dict  8-byte id -> mem_rec { tenant_ix, user_ix, type, importance,
 *                                       timestamp, content, provenance[] }
 *   idx:   hnsw  label = id, attrs = {tenant_ix, user_ix, type, importance}
 *   kw:    bm25  partition = tenant_ix << 32 | user_ix, doc = id
 *   tenants[], users[]: interned names; the ix values are what hnsw and bm25
 *   compare, so a query never touches another tenant's or user's postings.
 *
 * Scoring (documented choice): hybrid mode fuses the vector and keyword
 * rankings by reciprocal rank fusion, rrf = sum 1/(60 + rank), normalised to
 * [0, 1] by its best possible value 2/61; vector mode uses the cosine
 * clamped to [0, 1]; keyword mode the BM25 score divided by the best in the
 * candidate list. RRF rather than a weighted sum of raw scores because BM25
 * and cosine live on unrelated scales that shift with every corpus. Then:
 *   score = (1 - wi - wr) * base + wi * importance + wr * 0.5^(age / half_life)
 * with wi = weight_importance, wr = weight_recency (0.1 and 0.05 by default).
 *
 * Locking: `lock` (rwlock) protects by_id and the intern tables; hnsw and
 * bm25 have their own locks, taken inside ours (never the other way round).
 *
 * Snapshot image (wire codec):
 *   u32 version 1 | u32 dim | u32 n_tenants | n_tenants x str |
 *   u32 n_users | n_users x {u32 tenant_ix | str user} |
 *   u64 n_mem | n_mem x {u64 id | u32 tenant_ix | u32 user_ix | u8 type |
 *   f64 importance | i64 timestamp | bytes content | u32 n_prov | n_prov x str} |
 *   bytes hnsw image (hnsw_io.c)
 * The BM25 index is rebuilt from the contents on load (tokenising 100k short
 * memories takes well under a second; storing it would double the image).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l2/bm25.h"
#include "l2/hnsw.h"
#include "l2/l2.h"

typedef struct mem_rec {
    uint64_t id;
    uint32_t tenant_ix;
    uint32_t user_ix;
    uint8_t type;
    float importance;
    int64_t timestamp;
    char *content;
    size_t content_len;
    char **prov;
    size_t n_prov;
} mem_rec;

typedef struct user_ent {
    uint32_t tenant_ix;
    char *name;
    uint64_t count;                  /* live memories */
} user_ent;

typedef struct l2_mem {
    l2_store base;
    l2_mem_options opts;
    pthread_rwlock_t lock;
    dict *by_id;
    dict *tenant_map;                /* name -> ix + 1 */
    dict *user_map;                  /* tenant_ix (4 bytes) + name -> ix + 1 */
    char **tenants;
    uint32_t n_tenants;
    user_ent *users;
    uint32_t n_users;
    hnsw *idx;
    bm25 *kw;
} l2_mem;

static void mem_rec_free(void *p)
{
    mem_rec *r = p;
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_prov; i++) {
        strata_free(r->prov[i]);
    }
    strata_free(r->prov);
    strata_free(r->content);
    strata_free(r);
}

static const dict_type rec_dict_type = {mem_rec_free};

void l2_mem_options_init(l2_mem_options *o, uint32_t dim)
{
    o->dim = dim;
    o->M = 16;
    o->ef_construction = 200;
    o->ef_search = 64;
    o->weight_importance = 0.1f;
    o->weight_recency = 0.05f;
    o->recency_half_life_days = 30.0f;
}

void l2_id_format(char out[STRATA_MEMORY_ID_LEN], uint64_t id)
{
    snprintf(out, STRATA_MEMORY_ID_LEN, "mem-%016llx", (unsigned long long)id);
}

int l2_id_parse(const char *text, uint64_t *out)
{
    *out = 0;
    if (text == NULL || strncmp(text, "mem-", 4) != 0 || strlen(text) != 20) {
        return STRATA_EINVAL;
    }
    uint64_t v = 0;
    for (int i = 4; i < 20; i++) {
        char c = text[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return STRATA_EINVAL;
        }
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return STRATA_OK;
}

/* ---- interning (caller holds the write lock for *_intern) ---------------- */

static int tenant_lookup(l2_mem *m, const char *tenant, uint32_t *ix)
{
    void *v = dict_get(m->tenant_map, tenant, strlen(tenant));
    if (v == NULL) {
        return STRATA_ENOTFOUND;
    }
    *ix = (uint32_t)((uintptr_t)v - 1);
    return STRATA_OK;
}

static int tenant_intern(l2_mem *m, const char *tenant, uint32_t *ix)
{
    if (tenant_lookup(m, tenant, ix) == STRATA_OK) {
        return STRATA_OK;
    }
    char **grown = strata_realloc(m->tenants, (m->n_tenants + 1) * sizeof(char *));
    if (grown == NULL) {
        return STRATA_ENOMEM;
    }
    m->tenants = grown;
    char *copy = strata_strdup(tenant);
    if (copy == NULL) {
        return STRATA_ENOMEM;
    }
    if (dict_set(m->tenant_map, tenant, strlen(tenant), (void *)(uintptr_t)(m->n_tenants + 1)) !=
        STRATA_OK) {
        strata_free(copy);
        return STRATA_ENOMEM;
    }
    m->tenants[m->n_tenants] = copy;
    *ix = m->n_tenants++;
    return STRATA_OK;
}

static size_t user_key(char *buf, size_t cap, uint32_t tenant_ix, const char *user)
{
    size_t n = strlen(user);
    if (n + 4 > cap) {
        return 0;
    }
    memcpy(buf, &tenant_ix, 4);
    memcpy(buf + 4, user, n);
    return n + 4;
}

static int user_lookup(l2_mem *m, uint32_t tenant_ix, const char *user, uint32_t *ix)
{
    char key[STRATA_ID_MAX + 8];
    size_t klen = user_key(key, sizeof(key), tenant_ix, user);
    void *v = klen ? dict_get(m->user_map, key, klen) : NULL;
    if (v == NULL) {
        return STRATA_ENOTFOUND;
    }
    *ix = (uint32_t)((uintptr_t)v - 1);
    return STRATA_OK;
}

static int user_intern(l2_mem *m, uint32_t tenant_ix, const char *user, uint32_t *ix)
{
    if (user_lookup(m, tenant_ix, user, ix) == STRATA_OK) {
        return STRATA_OK;
    }
    char key[STRATA_ID_MAX + 8];
    size_t klen = user_key(key, sizeof(key), tenant_ix, user);
    if (klen == 0) {
        return strata_error(STRATA_EINVAL, "user id too long");
    }
    user_ent *grown = strata_realloc(m->users, (m->n_users + 1) * sizeof(user_ent));
    if (grown == NULL) {
        return STRATA_ENOMEM;
    }
    m->users = grown;
    char *copy = strata_strdup(user);
    if (copy == NULL) {
        return STRATA_ENOMEM;
    }
    if (dict_set(m->user_map, key, klen, (void *)(uintptr_t)(m->n_users + 1)) != STRATA_OK) {
        strata_free(copy);
        return STRATA_ENOMEM;
    }
    m->users[m->n_users] = (user_ent){tenant_ix, copy, 0};
    *ix = m->n_users++;
    return STRATA_OK;
}

static uint64_t partition_of(uint32_t tenant_ix, uint32_t user_ix)
{
    return (uint64_t)tenant_ix << 32 | user_ix;
}

/* ---- copies out ------------------------------------------------------------ */

/* Fill dst (zeroed by the caller) from r. Caller holds the lock. */
static int mem_copy_out(const l2_mem *m, const mem_rec *r, strata_memory *dst)
{
    l2_id_format(dst->id, r->id);
    dst->user_id = strata_strdup(m->users[r->user_ix].name);
    dst->type = (strata_memory_type)r->type;
    dst->content = strata_strndup(r->content, r->content_len);
    dst->content_len = r->content_len;
    dst->importance = r->importance;
    dst->timestamp = r->timestamp;
    dst->provenance = r->n_prov ? strata_calloc(r->n_prov, sizeof(char *)) : NULL;
    if (dst->user_id == NULL || dst->content == NULL || (r->n_prov && dst->provenance == NULL)) {
        return STRATA_ENOMEM;
    }
    for (size_t i = 0; i < r->n_prov; i++) {
        dst->provenance[i] = strata_strdup(r->prov[i]);
        if (dst->provenance[i] == NULL) {
            return STRATA_ENOMEM;
        }
        dst->n_provenance = i + 1;
    }
    return STRATA_OK;
}

/* ---- ops --------------------------------------------------------------------- */

static int l2m_add(l2_store *s, const l2_memory_in *in)
{
    l2_mem *m = (l2_mem *)s;
    if (in->type > STRATA_MEM_EXPERIENCE || in->n_provenance > L2_PROVENANCE_MAX ||
        in->content_len == 0 || in->content_len > L2_CONTENT_MAX) {
        return strata_error(STRATA_EINVAL, "memory payload out of range");
    }
    mem_rec *r = strata_calloc(1, sizeof(*r));
    if (r == NULL) {
        return STRATA_ENOMEM;
    }
    r->id = in->id;
    r->type = (uint8_t)in->type;
    r->importance = in->importance;
    r->timestamp = in->timestamp;
    r->content = strata_strndup(in->content, in->content_len);
    r->content_len = in->content_len;
    r->prov = in->n_provenance ? strata_calloc(in->n_provenance, sizeof(char *)) : NULL;
    int rc = STRATA_OK;
    if (r->content == NULL || (in->n_provenance && r->prov == NULL)) {
        rc = STRATA_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < in->n_provenance; i++) {
        r->prov[i] = strata_strdup(in->provenance[i]);
        if (r->prov[i] == NULL) {
            rc = STRATA_ENOMEM;
            goto fail;
        }
        r->n_prov = i + 1;
    }
    pthread_rwlock_wrlock(&m->lock);
    rc = tenant_intern(m, in->tenant, &r->tenant_ix);
    rc = rc ? rc : user_intern(m, r->tenant_ix, in->user_id, &r->user_ix);
    if (rc == STRATA_OK && dict_get(m->by_id, &r->id, 8) != NULL) {
        rc = strata_error(STRATA_EEXIST, "memory id already present");
    }
    if (rc == STRATA_OK) {
        hnsw_attrs attrs = {r->tenant_ix, r->user_ix, r->type, r->importance};
        rc = hnsw_add(m->idx, r->id, in->vector, &attrs);
    }
    if (rc == STRATA_OK) {
        rc = bm25_add(m->kw, partition_of(r->tenant_ix, r->user_ix), r->id, r->content,
                      r->content_len);
        if (rc != STRATA_OK) {
            hnsw_delete(m->idx, r->id);
        }
    }
    if (rc == STRATA_OK) {
        rc = dict_set(m->by_id, &r->id, 8, r);
        if (rc != STRATA_OK) {
            hnsw_delete(m->idx, r->id);
            bm25_remove(m->kw, partition_of(r->tenant_ix, r->user_ix), r->id);
        } else {
            m->users[r->user_ix].count++;
        }
    }
    pthread_rwlock_unlock(&m->lock);
    if (rc == STRATA_OK) {
        return STRATA_OK;
    }
fail:
    mem_rec_free(r);
    return rc;
}

/* Find the record of id owned by (tenant, user). Caller holds the lock. */
static mem_rec *find_owned(l2_mem *m, const char *tenant, const char *user, uint64_t id)
{
    mem_rec *r = dict_get(m->by_id, &id, 8);
    if (r == NULL) {
        return NULL;
    }
    if (strcmp(m->tenants[r->tenant_ix], tenant) != 0 ||
        strcmp(m->users[r->user_ix].name, user) != 0) {
        return NULL; /* another tenant's or user's memory is simply not found */
    }
    return r;
}

static int l2m_get(l2_store *s, const char *tenant, const char *user_id, uint64_t id,
                   strata_memory **out)
{
    l2_mem *m = (l2_mem *)s;
    *out = NULL;
    strata_memory *dst = strata_calloc(1, sizeof(*dst));
    if (dst == NULL) {
        return STRATA_ENOMEM;
    }
    pthread_rwlock_rdlock(&m->lock);
    mem_rec *r = find_owned(m, tenant, user_id, id);
    int rc = r ? mem_copy_out(m, r, dst) : STRATA_ENOTFOUND;
    pthread_rwlock_unlock(&m->lock);
    if (rc != STRATA_OK) {
        strata_memory_free(dst);
        return rc;
    }
    *out = dst;
    return STRATA_OK;
}

/* A user's last memory is gone: forget the name too (right to be forgotten:
 * snapshots must not keep it). The index stays allocated, since hnsw and
 * bm25 know users by index, under a tombstone name no valid id can take
 * ('#' is outside the id alphabet); the user's next memory gets a new index.
 * Caller holds the write lock. */
static void user_retire(l2_mem *m, uint32_t uix)
{
    user_ent *u = &m->users[uix];
    char key[STRATA_ID_MAX + 8];
    size_t klen = user_key(key, sizeof(key), u->tenant_ix, u->name);
    char tomb[16];
    snprintf(tomb, sizeof(tomb), "#%u", uix);
    char *name = strata_strdup(tomb);
    if (klen == 0 || name == NULL) {
        strata_free(name);
        return; /* out of memory: keep the name, nothing breaks */
    }
    dict_delete(m->user_map, key, klen);
    strata_free(u->name);
    u->name = name;
}

static int l2m_remove(l2_store *s, const char *tenant, const char *user_id, uint64_t id)
{
    l2_mem *m = (l2_mem *)s;
    pthread_rwlock_wrlock(&m->lock);
    mem_rec *r = find_owned(m, tenant, user_id, id);
    if (r == NULL) {
        pthread_rwlock_unlock(&m->lock);
        return STRATA_ENOTFOUND;
    }
    hnsw_delete(m->idx, id);
    bm25_remove(m->kw, partition_of(r->tenant_ix, r->user_ix), id);
    uint32_t uix = r->user_ix;
    dict_delete(m->by_id, &id, 8);
    if (--m->users[uix].count == 0) {
        user_retire(m, uix);
    }
    pthread_rwlock_unlock(&m->lock);
    return STRATA_OK;
}

typedef struct cand {
    uint64_t id;
    float vec_score;                 /* cosine, or -2 when not in the vector list */
    float kw_score;                  /* bm25, or 0 */
    int vec_rank;                    /* 1-based, 0 = absent */
    int kw_rank;
    float score;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a;
    const cand *y = b;
    if (x->score != y->score) {
        return x->score > y->score ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id; /* stable order for equal scores */
}

static cand *cand_find(cand *c, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].id == id) {
            return &c[i];
        }
    }
    return NULL;
}

static int l2m_search(l2_store *s, const l2_search_opts *o, strata_memory_list **out)
{
    l2_mem *m = (l2_mem *)s;
    *out = NULL;
    strata_memory_list *list = strata_calloc(1, sizeof(*list));
    if (list == NULL) {
        return STRATA_ENOMEM;
    }
    size_t n_cand_max = STRATA_MAX(o->limit * 4, (size_t)50);
    n_cand_max = STRATA_MIN(n_cand_max, (size_t)4000);
    cand *cands = strata_calloc(2 * n_cand_max, sizeof(cand));
    hnsw_result *vres = strata_calloc(n_cand_max, sizeof(hnsw_result));
    bm25_hit *kres = strata_calloc(n_cand_max, sizeof(bm25_hit));
    int rc = STRATA_OK;
    size_t n_cands = 0;
    if (cands == NULL || vres == NULL || kres == NULL) {
        rc = STRATA_ENOMEM;
        goto done;
    }
    pthread_rwlock_rdlock(&m->lock);
    uint32_t tix;
    uint32_t uix;
    if (tenant_lookup(m, o->tenant, &tix) != STRATA_OK ||
        user_lookup(m, tix, o->user_id, &uix) != STRATA_OK || m->users[uix].count == 0) {
        pthread_rwlock_unlock(&m->lock);
        goto done; /* no memories: an empty list */
    }
    bool use_vec = o->mode != STRATA_SEARCH_KEYWORD && o->query_vector != NULL;
    bool use_kw = o->mode != STRATA_SEARCH_VECTOR && o->query != NULL && o->query_len > 0;
    if (use_vec) {
        hnsw_filter f;
        hnsw_filter_init(&f, tix);
        f.has_user = true;
        f.user = uix;
        f.type_mask = o->type_mask;
        f.min_importance = o->min_importance > 0 ? o->min_importance : -INFINITY;
        size_t nv = 0;
        size_t ef = STRATA_MAX((size_t)m->opts.ef_search, n_cand_max);
        rc = hnsw_search(m->idx, o->query_vector, n_cand_max, ef, &f, vres, &nv);
        for (size_t i = 0; rc == STRATA_OK && i < nv; i++) {
            cands[n_cands++] = (cand){vres[i].label, vres[i].score, 0, (int)i + 1, 0, 0};
        }
    }
    if (use_kw && rc == STRATA_OK) {
        size_t nk = 0;
        rc = bm25_search(m->kw, partition_of(tix, uix), o->query, o->query_len, n_cand_max, kres,
                         &nk);
        int rank = 0;
        for (size_t i = 0; rc == STRATA_OK && i < nk; i++) {
            mem_rec *r = dict_get(m->by_id, &kres[i].doc, 8);
            if (r == NULL || (o->type_mask && !(o->type_mask & (1u << r->type))) ||
                r->importance < o->min_importance) {
                continue;
            }
            rank++;
            cand *c = cand_find(cands, n_cands, r->id);
            if (c == NULL) {
                c = &cands[n_cands++];
                *c = (cand){r->id, -2.0f, 0, 0, 0, 0};
            }
            c->kw_score = kres[i].score;
            c->kw_rank = rank;
        }
    }
    float kw_best = 0;
    for (size_t i = 0; i < n_cands; i++) {
        kw_best = STRATA_MAX(kw_best, cands[i].kw_score);
    }
    float wi = m->opts.weight_importance;
    float wr = m->opts.weight_recency;
    float half_life_s = m->opts.recency_half_life_days * 86400.0f;
    for (size_t i = 0; i < n_cands; i++) {
        cand *c = &cands[i];
        float base;
        if (use_vec && use_kw) {
            float rrf = (c->vec_rank ? 1.0f / (60.0f + (float)c->vec_rank) : 0) +
                        (c->kw_rank ? 1.0f / (60.0f + (float)c->kw_rank) : 0);
            base = rrf / (2.0f / 61.0f);
        } else if (use_vec) {
            base = STRATA_MAX(c->vec_score, 0.0f);
        } else {
            base = kw_best > 0 ? c->kw_score / kw_best : 0;
        }
        mem_rec *r = dict_get(m->by_id, &c->id, 8);
        float recency = 0;
        if (r != NULL && half_life_s > 0) {
            float age = (float)STRATA_MAX((int64_t)0, o->now - r->timestamp);
            recency = powf(0.5f, age / half_life_s);
        }
        c->score = (1.0f - wi - wr) * base + wi * (r ? r->importance : 0) + wr * recency;
    }
    qsort(cands, n_cands, sizeof(cand), cand_cmp);
    size_t n = STRATA_MIN(n_cands, o->limit);
    list->items = n ? strata_calloc(n, sizeof(strata_memory)) : NULL;
    if (n && list->items == NULL) {
        rc = STRATA_ENOMEM;
    }
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        mem_rec *r = dict_get(m->by_id, &cands[i].id, 8);
        if (r == NULL) {
            continue;
        }
        rc = mem_copy_out(m, r, &list->items[list->n]);
        list->items[list->n].score = cands[i].score;
        list->n++;
    }
    pthread_rwlock_unlock(&m->lock);
done:
    strata_free(cands);
    strata_free(vres);
    strata_free(kres);
    if (rc != STRATA_OK) {
        strata_memory_list_free(list);
        return rc;
    }
    *out = list;
    return STRATA_OK;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int l2m_list_user(l2_store *s, const char *tenant, const char *user_id,
                         uint64_t **ids_out, size_t *n_out)
{
    l2_mem *m = (l2_mem *)s;
    *ids_out = NULL;
    *n_out = 0;
    pthread_rwlock_rdlock(&m->lock);
    uint32_t tix;
    uint32_t uix;
    if (tenant_lookup(m, tenant, &tix) != STRATA_OK ||
        user_lookup(m, tix, user_id, &uix) != STRATA_OK || m->users[uix].count == 0) {
        pthread_rwlock_unlock(&m->lock);
        return STRATA_OK;
    }
    uint64_t *ids = strata_calloc(m->users[uix].count, sizeof(uint64_t));
    if (ids == NULL) {
        pthread_rwlock_unlock(&m->lock);
        return STRATA_ENOMEM;
    }
    /* O(all memories): used by deletion and rebuild, not on the request path. */
    size_t n = 0;
    dict_iter it;
    dict_iter_init(&it, m->by_id);
    void *val;
    while (dict_next(&it, NULL, NULL, &val) && n < m->users[uix].count) {
        mem_rec *r = val;
        if (r->user_ix == uix) {
            ids[n++] = r->id;
        }
    }
    pthread_rwlock_unlock(&m->lock);
    qsort(ids, n, sizeof(uint64_t), u64_cmp);
    *ids_out = ids;
    *n_out = n;
    return STRATA_OK;
}

/* ---- snapshots -------------------------------------------------------------- */

static int l2m_snapshot_write(l2_store *s, sbuf *out)
{
    l2_mem *m = (l2_mem *)s;
    pthread_rwlock_rdlock(&m->lock);
    int rc = wire_put_u32(out, 1);
    rc = rc ? rc : wire_put_u32(out, m->opts.dim);
    rc = rc ? rc : wire_put_u32(out, m->n_tenants);
    for (uint32_t i = 0; rc == STRATA_OK && i < m->n_tenants; i++) {
        rc = wire_put_str(out, m->tenants[i]);
    }
    rc = rc ? rc : wire_put_u32(out, m->n_users);
    for (uint32_t i = 0; rc == STRATA_OK && i < m->n_users; i++) {
        rc = wire_put_u32(out, m->users[i].tenant_ix);
        rc = rc ? rc : wire_put_str(out, m->users[i].name);
    }
    rc = rc ? rc : wire_put_u64(out, dict_size(m->by_id));
    dict_iter it;
    dict_iter_init(&it, m->by_id);
    void *val;
    while (rc == STRATA_OK && dict_next(&it, NULL, NULL, &val)) {
        mem_rec *r = val;
        rc = wire_put_u64(out, r->id);
        rc = rc ? rc : wire_put_u32(out, r->tenant_ix);
        rc = rc ? rc : wire_put_u32(out, r->user_ix);
        rc = rc ? rc : wire_put_u8(out, r->type);
        rc = rc ? rc : wire_put_f64(out, r->importance);
        rc = rc ? rc : wire_put_i64(out, r->timestamp);
        rc = rc ? rc : wire_put_bytes(out, r->content, r->content_len);
        rc = rc ? rc : wire_put_u32(out, (uint32_t)r->n_prov);
        for (size_t i = 0; rc == STRATA_OK && i < r->n_prov; i++) {
            rc = wire_put_str(out, r->prov[i]);
        }
    }
    /* The HNSW image is length-prefixed: reserve the prefix, then patch it. */
    size_t len_at = out->len;
    rc = rc ? rc : wire_put_u32(out, 0);
    size_t start = out->len;
    rc = rc ? rc : hnsw_serialize(m->idx, out);
    if (rc == STRATA_OK) {
        size_t img = out->len - start;
        if (img > UINT32_MAX) {
            rc = strata_error(STRATA_ETOOBIG, "vector index image over 4 GiB");
        } else {
            wire_le32((uint8_t *)out->data + len_at, (uint32_t)img);
        }
    }
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

static void l2m_clear(l2_mem *m)
{
    dict_free(m->by_id);
    dict_free(m->tenant_map);
    dict_free(m->user_map);
    for (uint32_t i = 0; i < m->n_tenants; i++) {
        strata_free(m->tenants[i]);
    }
    strata_free(m->tenants);
    for (uint32_t i = 0; i < m->n_users; i++) {
        strata_free(m->users[i].name);
    }
    strata_free(m->users);
    hnsw_free(m->idx);
    bm25_free(m->kw);
    m->by_id = NULL;
    m->tenant_map = NULL;
    m->user_map = NULL;
    m->tenants = NULL;
    m->users = NULL;
    m->n_tenants = 0;
    m->n_users = 0;
    m->idx = NULL;
    m->kw = NULL;
}

static int l2m_init_empty(l2_mem *m)
{
    m->by_id = dict_create(&rec_dict_type);
    m->tenant_map = dict_create(NULL);
    m->user_map = dict_create(NULL);
    if (m->by_id == NULL || m->tenant_map == NULL || m->user_map == NULL) {
        return STRATA_ENOMEM;
    }
    int rc = hnsw_create(m->opts.dim, m->opts.M, m->opts.ef_construction, 1024, 0x5eed, &m->idx);
    rc = rc ? rc : bm25_create(1.2f, 0.75f, &m->kw);
    return rc;
}

/* Decode the payload part of a snapshot into m (empty, with fresh tables). */
static int l2m_decode(l2_mem *m, wire_reader *r)
{
    uint32_t version = wire_get_u32(r);
    uint32_t dim = wire_get_u32(r);
    if (r->err || version != 1) {
        return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad header");
    }
    if (dim != m->opts.dim) {
        return strata_error(STRATA_EINVAL,
                            "the L2 collection has dimension %u but the embedder gives %u; "
                            "re-embed the collection or configure the embedder it was built with",
                            dim, m->opts.dim);
    }
    uint32_t n_tenants = wire_get_u32(r);
    if (r->err || n_tenants > (r->len - r->off) / 4) {
        return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad tenant count");
    }
    for (uint32_t i = 0; i < n_tenants; i++) {
        char *t = wire_get_strdup(r);
        uint32_t ix;
        if (t == NULL || tenant_intern(m, t, &ix) != STRATA_OK || ix != i) {
            strata_free(t);
            return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad tenant %u", i);
        }
        strata_free(t);
    }
    uint32_t n_users = wire_get_u32(r);
    if (r->err || n_users > (r->len - r->off) / 8) {
        return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad user count");
    }
    for (uint32_t i = 0; i < n_users; i++) {
        uint32_t tix = wire_get_u32(r);
        char *u = wire_get_strdup(r);
        uint32_t ix;
        if (u == NULL || tix >= n_tenants || user_intern(m, tix, u, &ix) != STRATA_OK ||
            ix != i) {
            strata_free(u);
            return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad user %u", i);
        }
        strata_free(u);
    }
    uint64_t n_mem = wire_get_u64(r);
    if (r->err || n_mem > (r->len - r->off) / 37) {
        return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad memory count");
    }
    for (uint64_t i = 0; i < n_mem; i++) {
        mem_rec *rec = strata_calloc(1, sizeof(*rec));
        if (rec == NULL) {
            return STRATA_ENOMEM;
        }
        rec->id = wire_get_u64(r);
        rec->tenant_ix = wire_get_u32(r);
        rec->user_ix = wire_get_u32(r);
        rec->type = wire_get_u8(r);
        rec->importance = (float)wire_get_f64(r);
        rec->timestamp = wire_get_i64(r);
        size_t clen;
        const char *content = wire_get_bytes(r, &clen);
        uint32_t n_prov = wire_get_u32(r);
        bool bad = r->err || rec->user_ix >= n_users ||
                   m->users[rec->user_ix].tenant_ix != rec->tenant_ix ||
                   rec->type > STRATA_MEM_EXPERIENCE || !isfinite(rec->importance) ||
                   clen == 0 || clen > L2_CONTENT_MAX || n_prov > L2_PROVENANCE_MAX;
        if (!bad) {
            rec->content = strata_strndup(content, clen);
            rec->content_len = clen;
            rec->prov = n_prov ? strata_calloc(n_prov, sizeof(char *)) : NULL;
            bad = rec->content == NULL || (n_prov && rec->prov == NULL);
        }
        for (uint32_t k = 0; !bad && k < n_prov; k++) {
            rec->prov[k] = wire_get_strdup(r);
            bad = rec->prov[k] == NULL;
            rec->n_prov = k + 1;
        }
        if (bad || dict_get(m->by_id, &rec->id, 8) != NULL ||
            dict_set(m->by_id, &rec->id, 8, rec) != STRATA_OK) {
            mem_rec_free(rec);
            return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad memory %llu",
                                (unsigned long long)i);
        }
        m->users[rec->user_ix].count++;
        if (bm25_add(m->kw, partition_of(rec->tenant_ix, rec->user_ix), rec->id, rec->content,
                     rec->content_len) != STRATA_OK) {
            return STRATA_ENOMEM;
        }
    }
    size_t img_len;
    const char *img = wire_get_bytes(r, &img_len);
    if (img == NULL || !wire_done(r)) {
        return strata_error(STRATA_ECORRUPT, "L2 snapshot: bad vector index image");
    }
    hnsw *idx = NULL;
    int rc = hnsw_deserialize(img, img_len, &idx);
    if (rc != STRATA_OK) {
        return rc;
    }
    hnsw_free(m->idx);
    m->idx = idx;
    /* The two halves must describe the same memories. */
    if (hnsw_count(idx) != dict_size(m->by_id) || hnsw_dim(idx) != m->opts.dim) {
        return strata_error(STRATA_ECORRUPT, "L2 snapshot: index and payloads disagree");
    }
    dict_iter it;
    dict_iter_init(&it, m->by_id);
    void *val;
    while (dict_next(&it, NULL, NULL, &val)) {
        mem_rec *rec = val;
        hnsw_attrs a;
        if (!hnsw_contains(idx, rec->id, &a) || a.user != rec->user_ix ||
            a.tenant != rec->tenant_ix) {
            return strata_error(STRATA_ECORRUPT, "L2 snapshot: memory missing from the index");
        }
    }
    return STRATA_OK;
}

static int l2m_snapshot_load(l2_store *s, const void *data, size_t len)
{
    l2_mem *m = (l2_mem *)s;
    pthread_rwlock_wrlock(&m->lock);
    l2m_clear(m);
    int rc = l2m_init_empty(m);
    if (rc == STRATA_OK) {
        wire_reader r;
        wire_reader_init(&r, data, len);
        rc = l2m_decode(m, &r);
    }
    if (rc != STRATA_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", strata_errmsg());
        l2m_clear(m);
        if (l2m_init_empty(m) != STRATA_OK) {
            slog(SLOG_ERROR, "L2: out of memory resetting the store");
        }
        strata_error(rc, "%s", msg);
    }
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

static void l2m_stats(l2_store *s, l2_stats *out)
{
    l2_mem *m = (l2_mem *)s;
    pthread_rwlock_rdlock(&m->lock);
    out->memories = dict_size(m->by_id);
    out->users = 0;
    for (uint32_t i = 0; i < m->n_users; i++) {
        out->users += m->users[i].count > 0;
    }
    out->dim = m->opts.dim;
    pthread_rwlock_unlock(&m->lock);
}

static void l2m_close(l2_store *s)
{
    l2_mem *m = (l2_mem *)s;
    if (m == NULL) {
        return;
    }
    l2m_clear(m);
    pthread_rwlock_destroy(&m->lock);
    strata_free(m);
}

static const l2_ops L2_MEM_OPS = {
    "embedded",        l2m_add,           l2m_get,  l2m_remove, l2m_search, l2m_list_user,
    l2m_snapshot_write, l2m_snapshot_load, l2m_stats, l2m_close,
};

int l2_mem_open(const l2_mem_options *opts, l2_store **out)
{
    *out = NULL;
    if (opts->dim == 0 || opts->dim > HNSW_DIM_MAX) {
        return strata_error(STRATA_EINVAL, "vector dimension must be 1..%u", HNSW_DIM_MAX);
    }
    l2_mem *m = strata_calloc(1, sizeof(*m));
    if (m == NULL) {
        return STRATA_ENOMEM;
    }
    m->base.ops = &L2_MEM_OPS;
    m->opts = *opts;
    pthread_rwlock_init(&m->lock, NULL);
    int rc = l2m_init_empty(m);
    if (rc != STRATA_OK) {
        l2m_close(&m->base);
        return rc;
    }
    *out = &m->base;
    return STRATA_OK;
}
