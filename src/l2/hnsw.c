/*
 * hnsw.c - the HNSW vector index of the L2 tier (Malkov & Yashunin, 2016).
 *
 * A layered proximity graph: every element is a node on level 0, a random
 * 1/M of them also on level 1, 1/M^2 on level 2, and so on. A search descends
 * greedily from the entry point (the node on the top level) to level 0, then
 * runs a best-first search of breadth ef there. Inserts do the same search
 * with ef_construction and link the new node to the neighbours chosen by the
 * selection heuristic.
 *
 * Memory layout (per slot = one element; slot ids are uint32):
 *
 *   l0 (one block, 64-byte aligned, elem_bytes per slot, grows by doubling)
 *   +----------------------------+-------+-------+---------------------+-----+
 *   | vector: dim floats (unit)  | label | count | links[2M]: slot ids | pad |
 *   +----------------------------+-------+-------+---------------------+-----+
 *   0                  vec_bytes (8-aligned)     off_links      elem_bytes (64k)
 *
 *   meta[slot]   16 bytes: tenant, user, importance, type, level, flags -
 *                the filter is checked here without touching the vector.
 *   upper[slot]  NULL, or levels 1..level of [count, links[M]] uint32s.
 *   pos_tenant / pos_user[slot]  the slot's position in its posting lists.
 *
 * The vector comes first so that it is 64-byte aligned (each 64-byte SIMD
 * load touches one cache line), and the label and links of the same node
 * follow it: one stream of lines serves a hop (PERFORMANCE.md).
 *
 * Side tables:
 *   labels      label -> slot, open addressing (live elements only)
 *   by_tenant   tenant -> list of live slots      (posting lists; their
 *   by_user     (tenant<<32 | user) -> live slots  lengths are the counts)
 *   free_slots  stack of tombstoned slots; inserts pop it before growing
 *
 * Deletion tombstones a slot (meta.flags), removes it from the side tables,
 * and repairs the nodes that link to it: each in-neighbour p found among the
 * deleted node's neighbours and their neighbours (2 hops; HNSW keeps no
 * reverse links, and a full scan would cost O(n) per delete) gets a new list
 * chosen by the heuristic from its old links plus the deleted node's links.
 * The tombstone keeps its vector and links, so a link the 2-hop search missed
 * still routes correctly until the slot is reused; a stale link at level l
 * may then point at a node whose new level is below l, so every upper-level
 * walk checks meta[id].level >= l before following a link.
 *
 * Invariants:
 *   - every slot id stored anywhere is < n_slots <= capacity;
 *   - entry is live and has the highest level among live nodes, or is
 *     HNSW_NONE when n_live == 0;
 *   - n_slots == n_live + n_free; free_slots holds exactly the tombstones;
 *   - labels, by_tenant and by_user hold exactly the live slots.
 *
 * Locking: lock (a writer-preferring rwlock) protects every field below it
 * in struct hnsw; searches hold it shared, add/delete exclusive. pool_lock
 * protects only the stack of search contexts (visited array + heaps), which
 * a search borrows for its duration. The fields above lock are fixed at
 * creation.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "l2/hnsw.h"

#define HNSW_NONE UINT32_MAX
#define HNSW_F_DELETED 0x01u

/* A filter whose tenant or (tenant, user) owns at most this many elements is
 * answered by an exact scan of its posting list: see want_scan(). */
#define HNSW_SCAN_EF_FACTOR 4u      /* matches <= 4 * ef */
#define HNSW_SCAN_FRACTION 50u      /* or matches <= n_live / 50 (2%) */

/* ======================================================================= */
/* ---- small containers -------------------------------------------------- */
/* ======================================================================= */

/* u64 -> u32 open-addressing map, linear probing, backward-shift deletion (no
 * tombstones), load <= 1/2. Value UINT32_MAX marks an empty cell. */
typedef struct u64map {
    uint64_t *keys;         /* cap keys */
    uint32_t *vals;         /* cap values; UINT32_MAX = empty */
    size_t cap;             /* power of two, or 0 */
    size_t n;               /* cells in use */
} u64map;

static inline size_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)x;
}

static void map_free(u64map *m)
{
    strata_free(m->keys);
    strata_free(m->vals);
    memset(m, 0, sizeof(*m));
}

static uint32_t map_get(const u64map *m, uint64_t key)
{
    if (m->cap == 0) {
        return UINT32_MAX;
    }
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->vals[i] == UINT32_MAX) {
            return UINT32_MAX;
        }
        if (m->keys[i] == key) {
            return m->vals[i];
        }
    }
}

/* Insert or overwrite; the caller has reserved room (map_reserve). */
static void map_put(u64map *m, uint64_t key, uint32_t val)
{
    size_t mask = m->cap - 1;
    size_t i = mix64(key) & mask;
    while (m->vals[i] != UINT32_MAX && m->keys[i] != key) {
        i = (i + 1) & mask;
    }
    if (m->vals[i] == UINT32_MAX) {
        m->n++;
        m->keys[i] = key;
    }
    m->vals[i] = val;
}

/* Make room for `more` new keys without exceeding half load. */
static int map_reserve(u64map *m, size_t more)
{
    size_t need = m->n + more;
    if (need * 2 <= m->cap) {
        return STRATA_OK;
    }
    size_t cap = m->cap ? m->cap : 16;
    while (cap < need * 2) {
        cap *= 2;
    }
    uint64_t *keys = strata_malloc(cap * sizeof(*keys));
    uint32_t *vals = strata_malloc(cap * sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        strata_free(keys);
        strata_free(vals);
        return strata_error(STRATA_ENOMEM, "hnsw: out of memory growing a map");
    }
    memset(vals, 0xff, cap * sizeof(*vals));
    u64map old = *m;
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.vals[i] != UINT32_MAX) {
            map_put(m, old.keys[i], old.vals[i]);
        }
    }
    strata_free(old.keys);
    strata_free(old.vals);
    return STRATA_OK;
}

static void map_del(u64map *m, uint64_t key)
{
    if (m->cap == 0) {
        return;
    }
    size_t mask = m->cap - 1;
    size_t i = mix64(key) & mask;
    while (m->vals[i] != UINT32_MAX && m->keys[i] != key) {
        i = (i + 1) & mask;
    }
    if (m->vals[i] == UINT32_MAX) {
        return;
    }
    /* Backward shift: pull later cells of the probe run into the hole when
     * their home position is not strictly between the hole and them. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->vals[j] != UINT32_MAX; j = (j + 1) & mask) {
        size_t home = mix64(m->keys[j]) & mask;
        bool movable = (j > hole) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->vals[hole] = UINT32_MAX;
    m->n--;
}

static size_t map_bytes(const u64map *m)
{
    return m->cap * (sizeof(uint64_t) + sizeof(uint32_t));
}

/* Posting lists: key -> unordered list of live slots, with each slot's
 * position kept by the caller (pos[slot]) so removal is a swap with the last
 * entry, O(1). An emptied list is freed, so the number of lists is bounded by
 * the number of live elements. */
typedef struct plist {
    uint64_t key;
    uint32_t *ids;          /* n slot ids */
    uint32_t n;
    uint32_t cap;
} plist;

typedef struct postings {
    u64map map;             /* key -> index into lists */
    plist *lists;
    size_t n;
    size_t cap;
} postings;

static void postings_free(postings *p)
{
    for (size_t i = 0; i < p->n; i++) {
        strata_free(p->lists[i].ids);
    }
    strata_free(p->lists);
    map_free(&p->map);
    memset(p, 0, sizeof(*p));
}

static const plist *postings_get(const postings *p, uint64_t key)
{
    uint32_t i = map_get(&p->map, key);
    return i == UINT32_MAX ? NULL : &p->lists[i];
}

/* Make sure postings_add(p, key, ...) cannot fail. May leave an empty list
 * behind if the caller then gives up, which is harmless (count 0). */
static int postings_reserve(postings *p, uint64_t key)
{
    uint32_t i = map_get(&p->map, key);
    if (i == UINT32_MAX) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 8;
            plist *lists = strata_realloc(p->lists, cap * sizeof(*lists));
            if (lists == NULL) {
                return strata_error(STRATA_ENOMEM, "hnsw: out of memory (posting lists)");
            }
            p->lists = lists;
            p->cap = cap;
        }
        if (map_reserve(&p->map, 1) != STRATA_OK) {
            return STRATA_ENOMEM;
        }
        i = (uint32_t)p->n;
        p->lists[i] = (plist){.key = key, .ids = NULL, .n = 0, .cap = 0};
        p->n++;
        map_put(&p->map, key, i);
    }
    plist *l = &p->lists[i];
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        uint32_t *ids = strata_realloc(l->ids, (size_t)cap * sizeof(*ids));
        if (ids == NULL) {
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory (posting list)");
        }
        l->ids = ids;
        l->cap = cap;
    }
    return STRATA_OK;
}

/* Append slot to key's list (reserved beforehand); records its position. */
static void postings_add(postings *p, uint64_t key, uint32_t slot, uint32_t *pos)
{
    plist *l = &p->lists[map_get(&p->map, key)];
    pos[slot] = l->n;
    l->ids[l->n++] = slot;
}

static void postings_remove(postings *p, uint64_t key, uint32_t slot, uint32_t *pos)
{
    uint32_t i = map_get(&p->map, key);
    if (i == UINT32_MAX) {
        return;
    }
    plist *l = &p->lists[i];
    uint32_t at = pos[slot];
    if (at >= l->n || l->ids[at] != slot) {
        return; /* not listed: only a bug could get here */
    }
    uint32_t last = l->ids[l->n - 1];
    l->ids[at] = last;
    pos[last] = at;
    l->n--;
    if (l->n == 0) {
        strata_free(l->ids);
        p->n--;
        if (i != p->n) {
            p->lists[i] = p->lists[p->n];
            map_put(&p->map, p->lists[i].key, i);
        }
        map_del(&p->map, key);
    }
}

static size_t postings_bytes(const postings *p)
{
    size_t b = map_bytes(&p->map) + p->cap * sizeof(plist);
    for (size_t i = 0; i < p->n; i++) {
        b += (size_t)p->lists[i].cap * sizeof(uint32_t);
    }
    return b;
}

/* ======================================================================= */
/* ---- search contexts ---------------------------------------------------- */
/* ======================================================================= */

typedef struct hnsw_pair {
    float dist;             /* 1 - cosine similarity: lower is closer */
    uint32_t id;            /* slot */
} hnsw_pair;

typedef struct heap {
    hnsw_pair *a;
    size_t n;
    size_t cap;
} heap;

/* Scratch space for one search or write: a visited array tagged by
 * generation (so it is never cleared between searches, only when the 16-bit
 * tag wraps), two heaps, and buffers. Borrowed from the index's pool. */
typedef struct hnsw_ctx {
    struct hnsw_ctx *next;  /* pool stack link */
    uint16_t *marks;        /* n_marks visited tags, one per slot */
    size_t n_marks;
    uint16_t gen;           /* current tag; marks[i] == gen means visited */
    heap cand;              /* min-heap: candidates to expand */
    heap res;               /* max-heap: best results so far */
    hnsw_pair *tmp;         /* tmp_cap pairs: sorting, heuristic, repair */
    size_t tmp_cap;
    uint32_t *ids;          /* 2 * M0 slot ids: neighbour batches */
    float *q;               /* dim floats, 64-byte aligned: normalised query */
    void *q_raw;            /* allocation behind q */
    bool oom;               /* a heap could not grow: results may be worse */
} hnsw_ctx;

/* ======================================================================= */
/* ---- the index ---------------------------------------------------------- */
/* ======================================================================= */

typedef struct hnsw_meta {
    uint32_t tenant;
    uint32_t user;
    float importance;
    uint8_t type;           /* 0..HNSW_TYPE_MAX */
    uint8_t level;          /* top level of the node, 0..HNSW_LEVEL_MAX */
    uint8_t flags;          /* HNSW_F_DELETED */
    uint8_t pad;
} hnsw_meta;

struct hnsw {
    /* fixed at creation */
    uint32_t dim;               /* floats per vector */
    uint32_t M;                 /* max links per node, levels >= 1 */
    uint32_t M0;                /* max links per node, level 0 (2M) */
    uint32_t ef_construction;
    double level_mult;          /* 1 / ln(M): level = floor(-ln(U) * mult) */
    hnsw_dot_fn dot;            /* chosen kernel */
    size_t off_label;           /* offsets inside an l0 element, bytes */
    size_t off_links;
    size_t elem_bytes;          /* l0 bytes per slot, multiple of 64 */

    pthread_mutex_t pool_lock;  /* protects pool only */
    hnsw_ctx *pool;             /* idle search contexts */

    pthread_rwlock_t lock;      /* protects everything below */
    char *l0_raw;               /* allocation behind l0 */
    char *l0;                   /* capacity * elem_bytes, 64-byte aligned */
    hnsw_meta *meta;            /* capacity */
    uint32_t **upper;           /* capacity: links of levels >= 1, or NULL */
    uint32_t *pos_tenant;       /* capacity: position in by_tenant list */
    uint32_t *pos_user;         /* capacity: position in by_user list */
    uint32_t *free_slots;       /* capacity: stack of tombstoned slots */
    size_t n_free;
    size_t capacity;            /* slots allocated */
    size_t n_slots;             /* slots used (live + tombstoned) */
    size_t n_live;
    uint32_t entry;             /* HNSW_NONE when n_live == 0 */
    uint32_t max_level;         /* level of entry */
    uint64_t rng;               /* splitmix64 state */
    u64map labels;              /* label -> live slot */
    postings by_tenant;
    postings by_user;
};

static inline float *vec_of(const hnsw *idx, uint32_t id)
{
    return (float *)(void *)(idx->l0 + (size_t)id * idx->elem_bytes);
}

static inline uint64_t *label_of(const hnsw *idx, uint32_t id)
{
    return (uint64_t *)(void *)(idx->l0 + (size_t)id * idx->elem_bytes + idx->off_label);
}

/* [count, ids...] of node id at level; the caller knows level <= its level. */
static inline uint32_t *links_of(const hnsw *idx, uint32_t id, uint32_t level)
{
    if (level == 0) {
        return (uint32_t *)(void *)(idx->l0 + (size_t)id * idx->elem_bytes + idx->off_links);
    }
    return idx->upper[id] + (size_t)(level - 1) * (idx->M + 1);
}

static inline uint32_t max_links(const hnsw *idx, uint32_t level)
{
    return level == 0 ? idx->M0 : idx->M;
}

static inline float dist_to(const hnsw *idx, const float *q, uint32_t id)
{
    return 1.0f - idx->dot(q, vec_of(idx, id), idx->dim);
}

static inline uint64_t user_key(uint32_t tenant, uint32_t user)
{
    return ((uint64_t)tenant << 32) | user;
}

static inline bool meta_accept(const hnsw_meta *m, const hnsw_filter *f)
{
    if (m->flags & HNSW_F_DELETED) {
        return false;
    }
    if (f == NULL) {
        return true;
    }
    if (m->tenant != f->tenant || (f->has_user && m->user != f->user)) {
        return false;
    }
    if (f->type_mask != 0 && ((f->type_mask >> m->type) & 1u) == 0) {
        return false;
    }
    return !(m->importance < f->min_importance);
}

static inline void prefetch_lines(const void *p, size_t bytes)
{
    const char *c = p;
    for (size_t off = 0; off < bytes; off += 64) {
        __builtin_prefetch(c + off, 0, 3);
    }
}

static uint64_t rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t random_level(hnsw *idx)
{
    /* U in (0, 1]: 53 random bits, never 0, so log() is finite. */
    double u = ((double)(rng_next(&idx->rng) >> 11) + 1.0) / 9007199254740992.0;
    double l = -log(u) * idx->level_mult;
    return l >= (double)HNSW_LEVEL_MAX ? HNSW_LEVEL_MAX : (uint32_t)l;
}

/* ---- heaps -------------------------------------------------------------- */

/* Grow h to hold one more; on failure flag c->oom and return false: the
 * caller drops the entry (a slightly worse search rather than a failed
 * insert halfway through linking; searches report STRATA_ENOMEM). */
static bool heap_room(hnsw_ctx *c, heap *h)
{
    if (h->n < h->cap) {
        return true;
    }
    size_t cap = h->cap ? h->cap * 2 : 256;
    hnsw_pair *a = strata_realloc(h->a, cap * sizeof(*a));
    if (a == NULL) {
        c->oom = true;
        return false;
    }
    h->a = a;
    h->cap = cap;
    return true;
}

static inline void minheap_push(hnsw_ctx *c, heap *h, float d, uint32_t id)
{
    if (!heap_room(c, h)) {
        return;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].dist <= d) {
            break;
        }
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = (hnsw_pair){d, id};
}

static inline void minheap_pop(heap *h)
{
    hnsw_pair x = h->a[--h->n];
    size_t n = h->n;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) {
            break;
        }
        size_t s = (l + 1 < n && h->a[l + 1].dist < h->a[l].dist) ? l + 1 : l;
        if (h->a[s].dist >= x.dist) {
            break;
        }
        h->a[i] = h->a[s];
        i = s;
    }
    if (n > 0) {
        h->a[i] = x;
    }
}

static inline void maxheap_push(hnsw_ctx *c, heap *h, float d, uint32_t id)
{
    if (!heap_room(c, h)) {
        return;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].dist >= d) {
            break;
        }
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = (hnsw_pair){d, id};
}

/* Replace the root (the worst) with x and sift it down. */
static inline void maxheap_replace_top(heap *h, hnsw_pair x)
{
    size_t n = h->n;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) {
            break;
        }
        size_t s = (l + 1 < n && h->a[l + 1].dist > h->a[l].dist) ? l + 1 : l;
        if (h->a[s].dist <= x.dist) {
            break;
        }
        h->a[i] = h->a[s];
        i = s;
    }
    h->a[i] = x;
}

static inline void maxheap_pop(heap *h)
{
    h->n--;
    if (h->n > 0) {
        maxheap_replace_top(h, h->a[h->n]);
    }
}

/* Sort the max-heap's contents ascending into out (n pairs); empties h. */
static size_t maxheap_drain_sorted(heap *h, hnsw_pair *out)
{
    size_t n = h->n;
    for (size_t i = n; i > 0; i--) {
        out[i - 1] = h->a[0];
        maxheap_pop(h);
    }
    return n;
}

static int pair_cmp(const void *a, const void *b)
{
    const hnsw_pair *x = a;
    const hnsw_pair *y = b;
    if (x->dist != y->dist) {
        return x->dist < y->dist ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

/* ---- context pool ------------------------------------------------------- */

static void ctx_free(hnsw_ctx *c)
{
    if (c == NULL) {
        return;
    }
    strata_free(c->marks);
    strata_free(c->cand.a);
    strata_free(c->res.a);
    strata_free(c->tmp);
    strata_free(c->ids);
    strata_free(c->q_raw);
    strata_free(c);
}

/* Borrow a context fit for a search of breadth ef on idx as it is now.
 * Caller holds idx->lock (shared or exclusive), so capacity is stable. */
static int ctx_acquire(hnsw *idx, size_t ef, hnsw_ctx **out)
{
    *out = NULL;
    pthread_mutex_lock(&idx->pool_lock);
    hnsw_ctx *c = idx->pool;
    if (c != NULL) {
        idx->pool = c->next;
    }
    pthread_mutex_unlock(&idx->pool_lock);
    if (c == NULL) {
        c = strata_calloc(1, sizeof(*c));
        if (c == NULL) {
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory (search context)");
        }
        c->ids = strata_malloc(2 * (size_t)idx->M0 * sizeof(*c->ids));
        c->q_raw = strata_malloc((size_t)idx->dim * sizeof(float) + 64);
        if (c->ids == NULL || c->q_raw == NULL) {
            ctx_free(c);
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory (search context)");
        }
        c->q = (float *)(((uintptr_t)c->q_raw + 63) & ~(uintptr_t)63);
    }
    if (c->n_marks < idx->capacity) {
        uint16_t *marks = strata_calloc(idx->capacity, sizeof(*marks));
        if (marks == NULL) {
            pthread_mutex_lock(&idx->pool_lock);
            c->next = idx->pool;
            idx->pool = c;
            pthread_mutex_unlock(&idx->pool_lock);
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory (visited array)");
        }
        strata_free(c->marks);
        c->marks = marks;
        c->n_marks = idx->capacity;
        c->gen = 0;
    }
    size_t need = STRATA_MAX(ef, (size_t)idx->ef_construction) + 2 * (size_t)idx->M0 + 2;
    if (c->tmp_cap < need) {
        hnsw_pair *tmp = strata_realloc(c->tmp, need * sizeof(*tmp));
        if (tmp == NULL) {
            pthread_mutex_lock(&idx->pool_lock);
            c->next = idx->pool;
            idx->pool = c;
            pthread_mutex_unlock(&idx->pool_lock);
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory (search scratch)");
        }
        c->tmp = tmp;
        c->tmp_cap = need;
    }
    c->oom = false;
    *out = c;
    return STRATA_OK;
}

static void ctx_release(hnsw *idx, hnsw_ctx *c)
{
    pthread_mutex_lock(&idx->pool_lock);
    c->next = idx->pool;
    idx->pool = c;
    pthread_mutex_unlock(&idx->pool_lock);
}

static inline uint16_t ctx_next_gen(hnsw_ctx *c)
{
    c->gen++;
    if (c->gen == 0) {
        memset(c->marks, 0, c->n_marks * sizeof(*c->marks));
        c->gen = 1;
    }
    return c->gen;
}

/* ======================================================================= */
/* ---- creation and growth ------------------------------------------------ */
/* ======================================================================= */

/* Resize every per-slot array to new_cap slots. A failure part way leaves
 * some arrays larger than capacity, which is harmless; capacity only
 * changes when all succeeded. Caller holds the write lock (or owns idx). */
static int grow_to(hnsw *idx, size_t new_cap)
{
    size_t used = idx->n_slots * idx->elem_bytes;
    size_t old_off = idx->l0_raw ? (size_t)(idx->l0 - idx->l0_raw) : 0;
    char *raw = strata_realloc(idx->l0_raw, new_cap * idx->elem_bytes + 64);
    if (raw == NULL) {
        return strata_error(STRATA_ENOMEM, "hnsw: out of memory growing to %zu elements",
                            new_cap);
    }
    char *aligned = (char *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    if ((size_t)(aligned - raw) != old_off && used > 0) {
        memmove(aligned, raw + old_off, used);
    }
    idx->l0_raw = raw;
    idx->l0 = aligned;

#define GROW_ARRAY(field)                                                       \
    do {                                                                        \
        void *p_ = strata_realloc(idx->field, new_cap * sizeof(*idx->field));   \
        if (p_ == NULL) {                                                       \
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory growing"); \
        }                                                                       \
        idx->field = p_;                                                        \
    } while (0)
    GROW_ARRAY(meta);
    GROW_ARRAY(upper);
    GROW_ARRAY(pos_tenant);
    GROW_ARRAY(pos_user);
    GROW_ARRAY(free_slots);
#undef GROW_ARRAY
    for (size_t i = idx->capacity; i < new_cap; i++) {
        idx->upper[i] = NULL;
    }
    idx->capacity = new_cap;
    return STRATA_OK;
}

static int check_params(uint32_t dim, uint32_t M, uint32_t ef_construction)
{
    if (dim == 0 || dim > HNSW_DIM_MAX) {
        return strata_error(STRATA_EINVAL, "hnsw: dim %u outside 1..%u", dim, HNSW_DIM_MAX);
    }
    if (M < HNSW_M_MIN || M > HNSW_M_MAX) {
        return strata_error(STRATA_EINVAL, "hnsw: M %u outside %u..%u", M, HNSW_M_MIN,
                            HNSW_M_MAX);
    }
    if (ef_construction == 0 || ef_construction > HNSW_EF_MAX) {
        return strata_error(STRATA_EINVAL, "hnsw: ef_construction %u outside 1..%u",
                            ef_construction, HNSW_EF_MAX);
    }
    return STRATA_OK;
}

int hnsw_create(uint32_t dim, uint32_t M, uint32_t ef_construction, size_t max_elements,
                uint64_t seed, hnsw **out)
{
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "hnsw_create: out is NULL");
    }
    *out = NULL;
    int rc = check_params(dim, M, ef_construction);
    if (rc != STRATA_OK) {
        return rc;
    }
    hnsw *idx = strata_calloc(1, sizeof(*idx));
    if (idx == NULL) {
        return strata_error(STRATA_ENOMEM, "hnsw: out of memory");
    }
    idx->dim = dim;
    idx->M = M;
    idx->M0 = 2 * M;
    idx->ef_construction = ef_construction;
    idx->level_mult = 1.0 / log((double)M);
    idx->dot = hnsw_dot_select(dim);
    size_t vec_bytes = ((size_t)dim * sizeof(float) + 7) & ~(size_t)7;
    idx->off_label = vec_bytes;
    idx->off_links = vec_bytes + sizeof(uint64_t);
    idx->elem_bytes = (idx->off_links + (1 + (size_t)idx->M0) * sizeof(uint32_t) + 63) &
                      ~(size_t)63;
    idx->entry = HNSW_NONE;
    idx->rng = seed;

    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int e1 = pthread_rwlock_init(&idx->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (e1 != 0) {
        strata_free(idx);
        return strata_error(STRATA_ENOMEM, "hnsw: cannot create lock");
    }
    if (pthread_mutex_init(&idx->pool_lock, NULL) != 0) {
        pthread_rwlock_destroy(&idx->lock);
        strata_free(idx);
        return strata_error(STRATA_ENOMEM, "hnsw: cannot create lock");
    }
    size_t cap = max_elements < 16 ? 16 : max_elements;
    if (cap > HNSW_ELEMENTS_MAX) {
        cap = HNSW_ELEMENTS_MAX;
    }
    rc = grow_to(idx, cap);
    if (rc != STRATA_OK) {
        hnsw_free(idx);
        return rc;
    }
    *out = idx;
    return STRATA_OK;
}

void hnsw_free(hnsw *idx)
{
    if (idx == NULL) {
        return;
    }
    while (idx->pool != NULL) {
        hnsw_ctx *c = idx->pool;
        idx->pool = c->next;
        ctx_free(c);
    }
    if (idx->upper != NULL) {
        for (size_t i = 0; i < idx->capacity; i++) {
            strata_free(idx->upper[i]);
        }
    }
    strata_free(idx->l0_raw);
    strata_free(idx->meta);
    strata_free(idx->upper);
    strata_free(idx->pos_tenant);
    strata_free(idx->pos_user);
    strata_free(idx->free_slots);
    map_free(&idx->labels);
    postings_free(&idx->by_tenant);
    postings_free(&idx->by_user);
    pthread_mutex_destroy(&idx->pool_lock);
    pthread_rwlock_destroy(&idx->lock);
    strata_free(idx);
}

/* ======================================================================= */
/* ---- graph search ------------------------------------------------------- */
/* ======================================================================= */

/* Greedy descent (breadth 1) from cur on levels from_level .. to_level+1.
 * Tombstones route like live nodes here: only level 0 returns results. */
static uint32_t greedy_descend(const hnsw *idx, const float *q, uint32_t cur, float *cur_dist,
                               uint32_t from_level, uint32_t to_level)
{
    for (uint32_t l = from_level; l > to_level; l--) {
        bool changed = true;
        while (changed) {
            changed = false;
            const uint32_t *links = links_of(idx, cur, l);
            uint32_t n = links[0];
            for (uint32_t j = 0; j < n; j++) {
                uint32_t id = links[1 + j];
                if (idx->meta[id].level < l) {
                    continue; /* stale link to a reused slot */
                }
                float d = dist_to(idx, q, id);
                if (d < *cur_dist) {
                    *cur_dist = d;
                    cur = id;
                    changed = true;
                }
            }
        }
    }
    return cur;
}

/* Best-first search of breadth ef on one level, from ep (at distance
 * ep_dist). Leaves the best ef accepted nodes in c->res (a max-heap). With
 * check set, nodes failing meta_accept(f) (tombstones, filtered out) are
 * expanded like any other but never enter c->res, so a selective filter
 * walks further instead of returning fewer results. Caller holds the lock. */
static void search_layer(const hnsw *idx, hnsw_ctx *c, const float *q, uint32_t ep,
                         float ep_dist, uint32_t level, size_t ef, const hnsw_filter *f,
                         bool check)
{
    uint16_t *marks = c->marks;
    uint16_t gen = ctx_next_gen(c);
    uint32_t *batch = c->ids;
    const hnsw_meta *meta = idx->meta;
    size_t vec_bytes = (size_t)idx->dim * sizeof(float);
    size_t rest_bytes = vec_bytes > 64 ? vec_bytes - 64 : 0; /* past the first line */
    c->cand.n = 0;
    c->res.n = 0;

    float bound = INFINITY; /* worst distance in res */
    marks[ep] = gen;
    if (!check || meta_accept(&meta[ep], f)) {
        maxheap_push(c, &c->res, ep_dist, ep);
        bound = ep_dist;
    }
    minheap_push(c, &c->cand, ep_dist, ep);

    while (c->cand.n > 0) {
        hnsw_pair top = c->cand.a[0];
        if (top.dist > bound && c->res.n >= ef) {
            break;
        }
        minheap_pop(&c->cand);

        /* Pass 1: pick the unvisited neighbours and start fetching their
         * vectors, so the loads of the whole batch overlap. */
        const uint32_t *links = links_of(idx, top.id, level);
        uint32_t n = links[0];
        uint32_t m = 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t id = links[1 + j];
            if (marks[id] == gen) {
                continue;
            }
            marks[id] = gen;
            if (level > 0 && meta[id].level < level) {
                continue; /* stale link to a reused slot */
            }
            batch[m++] = id;
            __builtin_prefetch(vec_of(idx, id), 0, 3);
        }
        /* Pass 2: distances, fetching the rest of the next vector. */
        for (uint32_t j = 0; j < m; j++) {
            uint32_t id = batch[j];
            if (j + 1 < m) {
                prefetch_lines((const char *)vec_of(idx, batch[j + 1]) + 64, rest_bytes);
            }
            float d = dist_to(idx, q, id);
            if (c->res.n < ef || d < bound) {
                minheap_push(c, &c->cand, d, id);
                __builtin_prefetch(links_of(idx, c->cand.a[0].id, level), 0, 3);
                if (!check || meta_accept(&meta[id], f)) {
                    if (c->res.n < ef) {
                        maxheap_push(c, &c->res, d, id);
                    } else {
                        maxheap_replace_top(&c->res, (hnsw_pair){d, id});
                    }
                    bound = c->res.a[0].dist;
                }
            }
        }
    }
}

/* The neighbour-selection heuristic: from cand[0..n) sorted ascending by
 * distance to the base node, keep a candidate only if it is closer to the
 * base than to every candidate kept before it; stop at m. Plain "closest m"
 * clusters links inside one dense region and loses recall on clustered
 * data; this keeps links pointing in different directions. Kept pairs are
 * compacted to cand[0..ret). Fewer than m candidates are all kept. */
static size_t select_heuristic(const hnsw *idx, hnsw_pair *cand, size_t n, size_t m)
{
    if (n < m) {
        return n;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < m; i++) {
        const float *vi = vec_of(idx, cand[i].id);
        bool good = true;
        for (size_t j = 0; j < kept; j++) {
            if (dist_to(idx, vi, cand[j].id) < cand[i].dist) {
                good = false;
                break;
            }
        }
        if (good) {
            cand[kept++] = cand[i];
        }
    }
    return kept;
}

static void set_links(hnsw *idx, uint32_t id, uint32_t level, const hnsw_pair *p, size_t n)
{
    uint32_t *links = links_of(idx, id, level);
    links[0] = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        links[1 + i] = p[i].id;
    }
}

/* Add a link nb -> id at level; when nb's list is full, rechoose it by the
 * heuristic among its links (tombstones dropped) and id. Caller holds the
 * write lock; tmp has room for M0 + 1 pairs. */
static void link_back(hnsw *idx, hnsw_pair *tmp, uint32_t nb, uint32_t id, uint32_t level)
{
    uint32_t *links = links_of(idx, nb, level);
    uint32_t n = links[0];
    uint32_t cap = max_links(idx, level);
    for (uint32_t j = 0; j < n; j++) {
        if (links[1 + j] == id) {
            return;
        }
    }
    if (n < cap) {
        links[1 + n] = id;
        links[0] = n + 1;
        return;
    }
    const float *vb = vec_of(idx, nb);
    size_t k = 0;
    tmp[k++] = (hnsw_pair){dist_to(idx, vb, id), id};
    for (uint32_t j = 0; j < n; j++) {
        uint32_t o = links[1 + j];
        if (idx->meta[o].flags & HNSW_F_DELETED) {
            continue;
        }
        tmp[k++] = (hnsw_pair){dist_to(idx, vb, o), o};
    }
    qsort(tmp, k, sizeof(*tmp), pair_cmp);
    size_t kept = select_heuristic(idx, tmp, k, cap);
    set_links(idx, nb, level, tmp, kept);
}

/* ======================================================================= */
/* ---- insert ------------------------------------------------------------- */
/* ======================================================================= */

/* Link the freshly written slot s (vector and level set) into the graph.
 * reused: s was a tombstone, so stale links may lead back to it, and the
 * search must check flags (s itself is flagged deleted meanwhile).
 * Cannot fail: every buffer it touches was reserved by the caller. */
static void insert_links(hnsw *idx, hnsw_ctx *c, uint32_t s, uint32_t level, bool reused)
{
    const float *q = vec_of(idx, s);
    if (idx->entry == HNSW_NONE) {
        idx->entry = s;
        idx->max_level = level;
        return;
    }
    uint32_t cur = idx->entry;
    float cur_dist = dist_to(idx, q, cur);
    cur = greedy_descend(idx, q, cur, &cur_dist, idx->max_level, level);
    uint32_t top = STRATA_MIN(level, idx->max_level);
    for (uint32_t l = top + 1; l-- > 0;) {
        search_layer(idx, c, q, cur, cur_dist, l, idx->ef_construction, NULL,
                     reused || idx->n_free > 0);
        size_t n = maxheap_drain_sorted(&c->res, c->tmp);
        if (n == 0) {
            continue;
        }
        cur = c->tmp[0].id;
        cur_dist = c->tmp[0].dist;
        size_t kept = select_heuristic(idx, c->tmp, n, idx->M);
        set_links(idx, s, l, c->tmp, kept);
        /* Copy the ids out: link_back reuses tmp for its own sorting. */
        uint32_t *nbrs = c->ids;
        for (size_t i = 0; i < kept; i++) {
            nbrs[i] = c->tmp[i].id;
        }
        for (size_t i = 0; i < kept; i++) {
            link_back(idx, c->tmp, nbrs[i], s, l);
        }
    }
    if (level > idx->max_level) {
        idx->entry = s;
        idx->max_level = level;
    }
}

static void delete_slot(hnsw *idx, hnsw_ctx *c, uint32_t x);

int hnsw_add(hnsw *idx, uint64_t label, const float *vec, const hnsw_attrs *attrs)
{
    if (idx == NULL || vec == NULL || attrs == NULL) {
        return strata_error(STRATA_EINVAL, "hnsw_add: NULL argument");
    }
    if (attrs->type > HNSW_TYPE_MAX || !isfinite(attrs->importance)) {
        return strata_error(STRATA_EINVAL, "hnsw_add: bad attributes (type %u)",
                            (unsigned)attrs->type);
    }
    pthread_rwlock_wrlock(&idx->lock);
    hnsw_ctx *c = NULL;
    uint32_t *up = NULL;
    int rc = STRATA_OK;

    /* Phase 1: everything that can fail, before the index changes. */
    if (idx->n_free == 0 && idx->n_slots == idx->capacity) {
        if (idx->capacity >= HNSW_ELEMENTS_MAX) {
            rc = strata_error(STRATA_ETOOBIG, "hnsw: index full (%u elements)",
                              HNSW_ELEMENTS_MAX);
            goto fail;
        }
        rc = grow_to(idx, STRATA_MIN(idx->capacity * 2, (size_t)HNSW_ELEMENTS_MAX));
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    rc = ctx_acquire(idx, idx->ef_construction, &c);
    if (rc != STRATA_OK) {
        goto fail;
    }
    memcpy(c->q, vec, (size_t)idx->dim * sizeof(float));
    if (!hnsw_normalize(c->q, idx->dim)) {
        rc = strata_error(STRATA_EINVAL, "hnsw_add: vector is zero or not finite");
        goto fail;
    }
    uint32_t level = random_level(idx);
    if (level > 0) {
        up = strata_calloc((size_t)level * (idx->M + 1), sizeof(uint32_t));
        if (up == NULL) {
            rc = strata_error(STRATA_ENOMEM, "hnsw: out of memory (links)");
            goto fail;
        }
    }
    rc = map_reserve(&idx->labels, 1);
    if (rc == STRATA_OK) {
        rc = postings_reserve(&idx->by_tenant, attrs->tenant);
    }
    if (rc == STRATA_OK) {
        rc = postings_reserve(&idx->by_user, user_key(attrs->tenant, attrs->user));
    }
    if (rc != STRATA_OK) {
        goto fail;
    }

    /* Phase 2: claim a slot (a tombstone first) and write the element. */
    uint32_t s;
    bool reused = idx->n_free > 0;
    if (reused) {
        s = idx->free_slots[--idx->n_free];
        strata_free(idx->upper[s]);
    } else {
        s = (uint32_t)idx->n_slots++;
    }
    idx->upper[s] = up;
    up = NULL;
    memcpy(vec_of(idx, s), c->q, (size_t)idx->dim * sizeof(float));
    *label_of(idx, s) = label;
    links_of(idx, s, 0)[0] = 0;
    idx->meta[s] = (hnsw_meta){
        .tenant = attrs->tenant,
        .user = attrs->user,
        .importance = attrs->importance,
        .type = attrs->type,
        .level = (uint8_t)level,
        .flags = 0,
    };

    /* Phase 3: link it in. The old element of a replaced label stays live
     * until now, so a failure above left it untouched. The new node is
     * flagged deleted while it links, so a stale link to a reused slot
     * cannot make it its own neighbour. Posting lists take the new slot
     * before the old one leaves, so a list shared by both never empties. */
    uint32_t old = map_get(&idx->labels, label);
    idx->meta[s].flags = HNSW_F_DELETED;
    insert_links(idx, c, s, level, reused);
    idx->meta[s].flags = 0;
    postings_add(&idx->by_tenant, attrs->tenant, s, idx->pos_tenant);
    postings_add(&idx->by_user, user_key(attrs->tenant, attrs->user), s, idx->pos_user);
    idx->n_live++;
    if (old != UINT32_MAX) {
        delete_slot(idx, c, old);
    }
    map_put(&idx->labels, label, s);

fail:
    strata_free(up);
    if (c != NULL) {
        ctx_release(idx, c);
    }
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

/* ======================================================================= */
/* ---- delete ------------------------------------------------------------- */
/* ======================================================================= */

/* Give p (which linked to the deleted x at level) a new list chosen by the
 * heuristic from its other links and x's links. */
static void repair_node(hnsw *idx, hnsw_ctx *c, uint32_t p, uint32_t x, uint32_t level)
{
    hnsw_pair *cand = c->tmp; /* room for 2 * M0 + 2 */
    const float *vp = vec_of(idx, p);
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        const uint32_t *links = links_of(idx, pass == 0 ? p : x, level);
        uint32_t n = links[0];
        for (uint32_t j = 0; j < n; j++) {
            uint32_t o = links[1 + j];
            if (o == x || o == p || (idx->meta[o].flags & HNSW_F_DELETED) ||
                idx->meta[o].level < level) {
                continue;
            }
            bool dup = false;
            for (size_t i = 0; i < k; i++) {
                if (cand[i].id == o) {
                    dup = true;
                    break;
                }
            }
            if (!dup) {
                cand[k++] = (hnsw_pair){dist_to(idx, vp, o), o};
            }
        }
    }
    qsort(cand, k, sizeof(*cand), pair_cmp);
    size_t kept = select_heuristic(idx, cand, k, max_links(idx, level));
    set_links(idx, p, level, cand, kept);
}

static bool links_contain(const uint32_t *links, uint32_t id)
{
    for (uint32_t j = 0; j < links[0]; j++) {
        if (links[1 + j] == id) {
            return true;
        }
    }
    return false;
}

/* If p is a live node on level that links to x, repair it; each node is
 * looked at once per level (marks). */
static void repair_if_linked(hnsw *idx, hnsw_ctx *c, uint32_t p, uint32_t x, uint32_t level)
{
    if (c->marks[p] == c->gen) {
        return;
    }
    c->marks[p] = c->gen;
    if (idx->meta[p].level < level || (idx->meta[p].flags & HNSW_F_DELETED)) {
        return;
    }
    if (links_contain(links_of(idx, p, level), x)) {
        repair_node(idx, c, p, x, level);
    }
}

/* Repair, at every level of x, the live nodes within two hops of x that link
 * to x. Two hops catch nearly all in-neighbours (links are mostly mutual and
 * local); a missed one keeps a link to the tombstone, which still routes.
 * Lists are copied before walking them, as repair_node rewrites lists. */
static void repair_in_neighbours(hnsw *idx, hnsw_ctx *c, uint32_t x)
{
    uint32_t *hop1 = c->ids;               /* M0 ids */
    uint32_t *hop2 = c->ids + idx->M0;     /* M0 ids */
    for (uint32_t l = 0; l <= idx->meta[x].level; l++) {
        ctx_next_gen(c);
        c->marks[x] = c->gen;
        const uint32_t *xl = links_of(idx, x, l);
        uint32_t n1 = xl[0];
        memcpy(hop1, xl + 1, n1 * sizeof(uint32_t));
        for (uint32_t i = 0; i < n1; i++) {
            repair_if_linked(idx, c, hop1[i], x, l);
        }
        for (uint32_t i = 0; i < n1; i++) {
            if (idx->meta[hop1[i]].level < l) {
                continue;
            }
            const uint32_t *hl = links_of(idx, hop1[i], l);
            uint32_t n2 = hl[0];
            memcpy(hop2, hl + 1, n2 * sizeof(uint32_t));
            for (uint32_t a = 0; a < n2; a++) {
                repair_if_linked(idx, c, hop2[a], x, l);
            }
        }
    }
}

/* A new entry point after the entry x was deleted: a live neighbour of x on
 * the top level if there is one, else the live node of highest level (an
 * O(n) scan, only when x was alone on its level). */
static void choose_entry(hnsw *idx, uint32_t x)
{
    uint32_t top = idx->meta[x].level;
    const uint32_t *links = links_of(idx, x, top);
    for (uint32_t j = 0; j < links[0]; j++) {
        uint32_t o = links[1 + j];
        if (!(idx->meta[o].flags & HNSW_F_DELETED) && idx->meta[o].level >= top) {
            idx->entry = o;
            idx->max_level = idx->meta[o].level;
            return;
        }
    }
    uint32_t best = HNSW_NONE;
    for (size_t i = 0; i < idx->n_slots; i++) {
        if (!(idx->meta[i].flags & HNSW_F_DELETED) &&
            (best == HNSW_NONE || idx->meta[i].level > idx->meta[best].level)) {
            best = (uint32_t)i;
        }
    }
    idx->entry = best;
    idx->max_level = best == HNSW_NONE ? 0 : idx->meta[best].level;
}

/* Tombstone the live slot x: out of the side tables, in-neighbours repaired,
 * slot onto the free stack. Cannot fail. Caller holds the write lock. */
static void delete_slot(hnsw *idx, hnsw_ctx *c, uint32_t x)
{
    hnsw_meta *m = &idx->meta[x];
    m->flags |= HNSW_F_DELETED;
    map_del(&idx->labels, *label_of(idx, x));
    postings_remove(&idx->by_tenant, m->tenant, x, idx->pos_tenant);
    postings_remove(&idx->by_user, user_key(m->tenant, m->user), x, idx->pos_user);
    idx->free_slots[idx->n_free++] = x;
    idx->n_live--;
    repair_in_neighbours(idx, c, x);
    if (idx->entry == x) {
        choose_entry(idx, x);
    }
}

int hnsw_delete(hnsw *idx, uint64_t label)
{
    if (idx == NULL) {
        return strata_error(STRATA_EINVAL, "hnsw_delete: NULL index");
    }
    pthread_rwlock_wrlock(&idx->lock);
    int rc = STRATA_OK;
    uint32_t x = map_get(&idx->labels, label);
    if (x == UINT32_MAX) {
        rc = strata_error(STRATA_ENOTFOUND, "hnsw: no element with label %llu",
                          (unsigned long long)label);
    } else {
        hnsw_ctx *c = NULL;
        rc = ctx_acquire(idx, 0, &c);
        if (rc == STRATA_OK) {
            delete_slot(idx, c, x);
            ctx_release(idx, c);
        }
    }
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

/* ======================================================================= */
/* ---- search ------------------------------------------------------------- */
/* ======================================================================= */

/* Exact top-k over the slots of a posting list: the path for filters that
 * match few elements. Cost: one distance per listed slot. */
static void scan_list(const hnsw *idx, hnsw_ctx *c, const float *q, const plist *l,
                      const hnsw_filter *f, size_t k)
{
    c->res.n = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        uint32_t id = l->ids[i];
        if (i + 1 < l->n) {
            __builtin_prefetch(vec_of(idx, l->ids[i + 1]), 0, 3);
        }
        if (!meta_accept(&idx->meta[id], f)) {
            continue;
        }
        float d = dist_to(idx, q, id);
        if (c->res.n < k) {
            maxheap_push(c, &c->res, d, id);
        } else if (d < c->res.a[0].dist) {
            maxheap_replace_top(&c->res, (hnsw_pair){d, id});
        }
    }
}

/* Scan instead of walking the graph? A filtered walk must expand about
 * 1/selectivity times more nodes than an unfiltered one to fill ef results,
 * while the scan costs one distance per match: at 2% of the index (or a few
 * times ef) the scan is cheaper, and exact. The threshold is deliberately
 * conservative; the graph stays the path for big tenants. A per-list scan
 * rather than a pass over meta[] keeps the cost O(matches), independent of
 * the index size, at 8 bytes per element for the two posting lists. */
static bool want_scan(size_t matches, size_t ef, size_t n_live)
{
    return matches <= HNSW_SCAN_EF_FACTOR * ef || matches * HNSW_SCAN_FRACTION <= n_live;
}

/* Move c->res into results (best first), at most k; returns the count. */
static size_t emit_results(const hnsw *idx, hnsw_ctx *c, size_t k, hnsw_result *results)
{
    size_t n = maxheap_drain_sorted(&c->res, c->tmp);
    size_t out = STRATA_MIN(n, k);
    for (size_t i = 0; i < out; i++) {
        results[i].label = *label_of(idx, c->tmp[i].id);
        results[i].score = 1.0f - c->tmp[i].dist;
    }
    return out;
}

void hnsw_filter_init(hnsw_filter *f, uint32_t tenant)
{
    memset(f, 0, sizeof(*f));
    f->tenant = tenant;
    f->min_importance = -INFINITY;
}

int hnsw_search(hnsw *idx, const float *query, size_t k, size_t ef, const hnsw_filter *filter,
                hnsw_result *results, size_t *n_out)
{
    if (n_out != NULL) {
        *n_out = 0;
    }
    if (idx == NULL || query == NULL || results == NULL || n_out == NULL) {
        return strata_error(STRATA_EINVAL, "hnsw_search: NULL argument");
    }
    if (k == 0 || k > HNSW_EF_MAX) {
        return strata_error(STRATA_EINVAL, "hnsw_search: k %zu outside 1..%u", k, HNSW_EF_MAX);
    }
    ef = STRATA_MAX(ef, k);
    ef = STRATA_MIN(ef, (size_t)HNSW_EF_MAX);

    pthread_rwlock_rdlock(&idx->lock);
    hnsw_ctx *c = NULL;
    int rc = STRATA_OK;
    if (idx->n_live == 0) {
        goto done;
    }
    rc = ctx_acquire(idx, ef, &c);
    if (rc != STRATA_OK) {
        goto done;
    }
    float *q = c->q;
    memcpy(q, query, (size_t)idx->dim * sizeof(float));
    if (!hnsw_normalize(q, idx->dim)) {
        rc = strata_error(STRATA_EINVAL, "hnsw_search: query is zero or not finite");
        goto done;
    }

    const plist *list = NULL;
    if (filter != NULL) {
        list = filter->has_user ? postings_get(&idx->by_user, user_key(filter->tenant,
                                                                       filter->user))
                                : postings_get(&idx->by_tenant, filter->tenant);
        if (list == NULL || list->n == 0) {
            goto done; /* nothing can match */
        }
    }
    if (list != NULL && want_scan(list->n, ef, idx->n_live)) {
        scan_list(idx, c, q, list, filter, k);
        *n_out = emit_results(idx, c, k, results);
    } else {
        uint32_t cur = idx->entry;
        float cur_dist = dist_to(idx, q, cur);
        cur = greedy_descend(idx, q, cur, &cur_dist, idx->max_level, 0);
        search_layer(idx, c, q, cur, cur_dist, 0, ef, filter,
                     filter != NULL || idx->n_free > 0);
        *n_out = emit_results(idx, c, k, results);
        if (list != NULL && *n_out < k) {
            /* The walk ran out of reachable matches (type or importance
             * filters can make them rarer than the list says): scan. */
            scan_list(idx, c, q, list, filter, k);
            *n_out = emit_results(idx, c, k, results);
        }
    }
    if (c->oom) {
        *n_out = 0;
        rc = strata_error(STRATA_ENOMEM, "hnsw_search: out of memory");
    }

done:
    if (c != NULL) {
        ctx_release(idx, c);
    }
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

/* ======================================================================= */
/* ---- small accessors ---------------------------------------------------- */
/* ======================================================================= */

size_t hnsw_count(hnsw *idx)
{
    pthread_rwlock_rdlock(&idx->lock);
    size_t n = idx->n_live;
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

bool hnsw_contains(hnsw *idx, uint64_t label, hnsw_attrs *attrs_out)
{
    pthread_rwlock_rdlock(&idx->lock);
    uint32_t s = map_get(&idx->labels, label);
    if (s != UINT32_MAX && attrs_out != NULL) {
        const hnsw_meta *m = &idx->meta[s];
        *attrs_out = (hnsw_attrs){m->tenant, m->user, m->type, m->importance};
    }
    pthread_rwlock_unlock(&idx->lock);
    return s != UINT32_MAX;
}

void hnsw_stats_get(hnsw *idx, hnsw_stats *out)
{
    pthread_rwlock_rdlock(&idx->lock);
    /* O(n_slots) for the upper-level lists: for tests and benchmarks. */
    size_t bytes = sizeof(*idx) + idx->capacity * (idx->elem_bytes + sizeof(hnsw_meta) +
                                                   sizeof(uint32_t *) + 3 * sizeof(uint32_t));
    for (size_t i = 0; i < idx->n_slots; i++) {
        if (idx->upper[i] != NULL) {
            bytes += (size_t)idx->meta[i].level * (idx->M + 1) * sizeof(uint32_t);
        }
    }
    bytes += map_bytes(&idx->labels) + postings_bytes(&idx->by_tenant) +
             postings_bytes(&idx->by_user);
    pthread_mutex_lock(&idx->pool_lock);
    for (const hnsw_ctx *c = idx->pool; c != NULL; c = c->next) {
        bytes += c->n_marks * sizeof(uint16_t) + (c->cand.cap + c->res.cap + c->tmp_cap) *
                 sizeof(hnsw_pair);
    }
    pthread_mutex_unlock(&idx->pool_lock);
    *out = (hnsw_stats){
        .n_live = idx->n_live,
        .n_deleted = idx->n_free,
        .n_slots = idx->n_slots,
        .capacity = idx->capacity,
        .bytes = bytes,
        .max_level = idx->max_level,
    };
    pthread_rwlock_unlock(&idx->lock);
}

uint32_t hnsw_dim(const hnsw *idx)
{
    return idx->dim;
}

uint32_t hnsw_M(const hnsw *idx)
{
    return idx->M;
}

/* ======================================================================= */
/* ---- raw access for hnsw_io.c ------------------------------------------- */
/* ======================================================================= */

void hnsw_read_lock(hnsw *idx)
{
    pthread_rwlock_rdlock(&idx->lock);
}

void hnsw_read_unlock(hnsw *idx)
{
    pthread_rwlock_unlock(&idx->lock);
}

void hnsw_image_get(const hnsw *idx, hnsw_image *out)
{
    *out = (hnsw_image){
        .dim = idx->dim,
        .M = idx->M,
        .ef_construction = idx->ef_construction,
        .n_slots = (uint32_t)idx->n_slots,
        .n_live = (uint32_t)idx->n_live,
        .entry = idx->entry,
        .max_level = idx->max_level,
        .rng = idx->rng,
    };
}

void hnsw_slot_get(const hnsw *idx, uint32_t slot, hnsw_slot *out)
{
    const hnsw_meta *m = &idx->meta[slot];
    memset(out, 0, sizeof(*out));
    out->label = *label_of(idx, slot);
    out->attrs = (hnsw_attrs){m->tenant, m->user, m->type, m->importance};
    out->deleted = (m->flags & HNSW_F_DELETED) != 0;
    out->level = m->level;
    out->vec = vec_of(idx, slot);
    for (uint32_t l = 0; l <= m->level; l++) {
        const uint32_t *links = links_of(idx, slot, l);
        out->n_links[l] = links[0];
        out->links[l] = links + 1;
    }
}

int hnsw_load_begin(const hnsw_image *img, hnsw **out)
{
    *out = NULL;
    if (check_params(img->dim, img->M, img->ef_construction) != STRATA_OK ||
        img->n_slots > HNSW_ELEMENTS_MAX || img->n_live > img->n_slots ||
        img->max_level > HNSW_LEVEL_MAX) {
        return strata_error(STRATA_ECORRUPT, "hnsw image: parameters out of range");
    }
    hnsw *idx = NULL;
    int rc = hnsw_create(img->dim, img->M, img->ef_construction, img->n_slots, img->rng, &idx);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* Every slot starts as an empty tombstone until hnsw_load_slot fills
     * it, so a loader that stops early cannot leave junk links behind. */
    idx->n_slots = img->n_slots;
    for (size_t i = 0; i < idx->n_slots; i++) {
        idx->meta[i] = (hnsw_meta){.flags = HNSW_F_DELETED};
        links_of(idx, (uint32_t)i, 0)[0] = 0;
        memset(vec_of(idx, (uint32_t)i), 0, (size_t)idx->dim * sizeof(float));
    }
    idx->n_live = img->n_live;
    idx->entry = img->entry;
    idx->max_level = img->max_level;
    *out = idx;
    return STRATA_OK;
}

int hnsw_load_slot(hnsw *idx, uint32_t slot, uint64_t label, const hnsw_attrs *attrs,
                   bool deleted, uint32_t level, const float *vec)
{
    if (slot >= idx->n_slots || level > HNSW_LEVEL_MAX || attrs->type > HNSW_TYPE_MAX ||
        !isfinite(attrs->importance)) {
        return strata_error(STRATA_ECORRUPT, "hnsw image: slot %u: bad attributes", slot);
    }
    double ss = 0.0;
    for (uint32_t i = 0; i < idx->dim; i++) {
        if (!isfinite(vec[i])) {
            return strata_error(STRATA_ECORRUPT, "hnsw image: slot %u: bad vector", slot);
        }
        ss += (double)vec[i] * (double)vec[i];
    }
    if (fabs(ss - 1.0) > 1e-3) {
        return strata_error(STRATA_ECORRUPT, "hnsw image: slot %u: vector not unit length",
                            slot);
    }
    strata_free(idx->upper[slot]);
    idx->upper[slot] = NULL;
    if (level > 0) {
        idx->upper[slot] = strata_calloc((size_t)level * (idx->M + 1), sizeof(uint32_t));
        if (idx->upper[slot] == NULL) {
            return strata_error(STRATA_ENOMEM, "hnsw: out of memory loading links");
        }
    }
    memcpy(vec_of(idx, slot), vec, (size_t)idx->dim * sizeof(float));
    *label_of(idx, slot) = label;
    links_of(idx, slot, 0)[0] = 0;
    idx->meta[slot] = (hnsw_meta){
        .tenant = attrs->tenant,
        .user = attrs->user,
        .importance = attrs->importance,
        .type = attrs->type,
        .level = (uint8_t)level,
        .flags = deleted ? HNSW_F_DELETED : 0,
    };
    return STRATA_OK;
}

int hnsw_load_links(hnsw *idx, uint32_t slot, uint32_t level, const uint32_t *ids, uint32_t n)
{
    if (slot >= idx->n_slots || level > idx->meta[slot].level || n > max_links(idx, level)) {
        return strata_error(STRATA_ECORRUPT, "hnsw image: slot %u: bad link list", slot);
    }
    uint32_t *links = links_of(idx, slot, level);
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] >= idx->n_slots || ids[i] == slot) {
            return strata_error(STRATA_ECORRUPT, "hnsw image: slot %u: bad link", slot);
        }
        links[1 + i] = ids[i];
    }
    links[0] = n;
    return STRATA_OK;
}

int hnsw_load_end(hnsw *idx)
{
    size_t live = 0;
    for (size_t i = 0; i < idx->n_slots; i++) {
        const hnsw_meta *m = &idx->meta[i];
        if (!(m->flags & HNSW_F_DELETED)) {
            live++;
            if (m->level > idx->max_level) {
                return strata_error(STRATA_ECORRUPT, "hnsw image: level above the entry's");
            }
        }
        for (uint32_t l = 1; l <= m->level; l++) {
            const uint32_t *links = links_of(idx, (uint32_t)i, l);
            for (uint32_t j = 0; j < links[0]; j++) {
                if (idx->meta[links[1 + j]].level < l) {
                    return strata_error(STRATA_ECORRUPT, "hnsw image: link below its level");
                }
            }
        }
    }
    if (live != idx->n_live) {
        return strata_error(STRATA_ECORRUPT, "hnsw image: live count mismatch");
    }
    if (live == 0 ? (idx->entry != HNSW_NONE || idx->max_level != 0)
                  : (idx->entry >= idx->n_slots ||
                     (idx->meta[idx->entry].flags & HNSW_F_DELETED) ||
                     idx->meta[idx->entry].level != idx->max_level)) {
        return strata_error(STRATA_ECORRUPT, "hnsw image: bad entry point");
    }
    int rc = map_reserve(&idx->labels, live);
    if (rc != STRATA_OK) {
        return rc;
    }
    idx->n_free = 0;
    for (size_t i = idx->n_slots; i-- > 0;) {
        uint32_t s = (uint32_t)i;
        const hnsw_meta *m = &idx->meta[s];
        if (m->flags & HNSW_F_DELETED) {
            idx->free_slots[idx->n_free++] = s;
            continue;
        }
        uint64_t label = *label_of(idx, s);
        if (map_get(&idx->labels, label) != UINT32_MAX) {
            return strata_error(STRATA_ECORRUPT, "hnsw image: label %llu twice",
                                (unsigned long long)label);
        }
        map_put(&idx->labels, label, s);
        rc = postings_reserve(&idx->by_tenant, m->tenant);
        if (rc == STRATA_OK) {
            rc = postings_reserve(&idx->by_user, user_key(m->tenant, m->user));
        }
        if (rc != STRATA_OK) {
            return rc;
        }
        postings_add(&idx->by_tenant, m->tenant, s, idx->pos_tenant);
        postings_add(&idx->by_user, user_key(m->tenant, m->user), s, idx->pos_user);
    }
    return STRATA_OK;
}
