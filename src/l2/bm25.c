/*
 * bm25.c - the BM25 keyword index of the L2 tier (see bm25.h for scoring).
 *
 * The index is a map of partitions; each partition is a self-contained
 * inverted index, so a query reads only its own postings and its N, df and
 * avgdl are its own statistics (one tenant's corpus never shifts another's
 * scores):
 *
 *   bm25 { lock, parts: partition id -> bm25_part }
 *
 *   bm25_part
 *     terms  dict: term bytes -> bm25_term { id, post, df, ... }
 *     by_id  [term id] -> bm25_term, NULL for a free id (ids are reused)
 *     docs   u64map: doc id -> slot
 *     slots  [slot] -> { doc id, fwd: the doc's distinct term ids, varints }
 *     lens   [slot] -> doc length in tokens, or BM25_DEAD        (flat array)
 *
 *   bm25_term.post, ascending slots, delta + varint (LEB128) encoded:
 *     +-------------------+-----------+-------------------+-----------+---
 *     | slot0 - 0         | tf0       | slot1 - slot0     | tf1       | ...
 *     +-------------------+-----------+-------------------+-----------+---
 *
 * Slots are handed out in increasing order and never reused, so appending a
 * new doc's entry at the end of each of its terms' lists keeps every list
 * sorted without moving anything (doc ids are the caller's and arrive in any
 * order, hence the slot indirection). Removing a doc (or replacing it: a
 * re-add gets a new slot) only tombstones its slot: lens[slot] = BM25_DEAD,
 * and df of each of its terms drops by one, found through the slot's forward
 * list of term ids. Searches skip dead entries. When more than 25% of a
 * partition's slots are dead, part_compact renumbers the live slots densely
 * (keeping their order) and rewrites every posting list in place: the new
 * deltas are never larger than the old, so the varints never grow, and the
 * only allocation is the old->new slot map, so a failed compaction just waits
 * for the next removal. Terms left with df 0 are dropped then. Keeping lists
 * sorted by eager deletion was rejected: removing from the middle of a
 * varint stream costs O(list) per term per delete, which for common terms is
 * O(N) per delete.
 *
 * The forward lists are what make df exact after a removal; they store
 * varint term ids (about 2 bytes each) rather than term pointers (8): on
 * short memories they were the largest part of the index (measured at 200k
 * docs of ~20 tokens: 252 -> ~150 heap bytes per doc).
 *
 * Search is document-at-a-time: one cursor per distinct query term walks its
 * list; the smallest current slot is scored from all cursors sitting on it
 * and offered to a bounded min-heap of k hits (kept in the caller's out
 * array, so a search allocates only for tokenizing the query). This is the
 * shape WAND or block-max pruning would extend when lists get long
 * (PERFORMANCE.md); today every posting of every query term is read.
 *
 * Invariants (per partition):
 *   - n_live == number of slots with lens != BM25_DEAD == size of docs;
 *   - docs maps exactly the live docs to their slots;
 *   - total_len == sum of lens over live slots;
 *   - each term's entries are in ascending slot order, last == the last one,
 *     df == number of entries whose slot is live, n_post >= df;
 *   - a live slot's fwd lists the ids of its distinct terms, each with
 *     df >= 1; by_id[t->id] == t for every term in the dict, and the free
 *     ids are exactly the NULL entries of by_id[0..n_ids);
 *   - a partition with no live doc is freed and removed from parts.
 *
 * Locking: lock (a writer-preferring pthread rwlock) protects parts and
 * everything reachable from it; bm25_search / doc_count / stats hold it
 * shared and read only (dict_get and u64map lookups do not mutate), add and
 * remove hold it exclusive. Text is tokenized into a private bag before the
 * lock is taken. k1 and b are fixed at creation.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "l2/bm25.h"

#define BM25_DEAD UINT32_MAX
#define BM25_EMPTY UINT64_MAX           /* u64map: value of an empty cell */
#define BM25_SLOTS_MAX (1u << 26)       /* slots per partition, live + dead */
#define BM25_VARINT_MAX 5u              /* bytes of a uint32 varint */
#define BM25_BAG_BYTES_MAX (1u << 20)   /* term bytes of one doc (64 KiB of text gives less) */

/* ======================================================================= */
/* ---- u64 -> u64 map ---------------------------------------------------- */
/* ======================================================================= */

/* Open addressing, linear probing, load <= 1/2, backward-shift deletion (no
 * tombstones). A value of BM25_EMPTY marks an empty cell, so any key
 * (including 0) can be stored. Used for partition id -> part pointer and
 * doc id -> slot. */
typedef struct u64map {
    uint64_t *keys;         /* cap keys */
    uint64_t *vals;         /* cap values; BM25_EMPTY = empty cell */
    size_t cap;             /* 0 or a power of two */
    size_t n;               /* occupied cells */
} u64map;

/* murmur3's 64-bit finaliser: a bijection, so distinct keys stay distinct. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Cell holding key, or the empty cell where it would go. cap > 0. */
static size_t u64map_cell(const u64map *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)mix64(key) & mask;
    while (m->vals[i] != BM25_EMPTY && m->keys[i] != key) {
        i = (i + 1) & mask;
    }
    return i;
}

static bool u64map_get(const u64map *m, uint64_t key, uint64_t *val)
{
    if (m->cap == 0) {
        return false;
    }
    size_t i = u64map_cell(m, key);
    if (m->vals[i] == BM25_EMPTY) {
        return false;
    }
    *val = m->vals[i];
    return true;
}

/* Make room for extra more keys, so that u64map_put cannot fail. */
static int u64map_reserve(u64map *m, size_t extra)
{
    if ((m->n + extra) * 2 <= m->cap) {
        return STRATA_OK;
    }
    size_t cap = m->cap ? m->cap : 8;
    while ((m->n + extra) * 2 > cap) {
        cap *= 2;
    }
    uint64_t *keys = strata_malloc(cap * sizeof(*keys));
    uint64_t *vals = strata_malloc(cap * sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        strata_free(keys);
        strata_free(vals);
        return strata_error(STRATA_ENOMEM, "bm25: out of memory growing a map");
    }
    for (size_t i = 0; i < cap; i++) {
        vals[i] = BM25_EMPTY;
    }
    u64map old = *m;
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.vals[i] != BM25_EMPTY) {
            size_t j = u64map_cell(m, old.keys[i]);
            m->keys[j] = old.keys[i];
            m->vals[j] = old.vals[i];
        }
    }
    strata_free(old.keys);
    strata_free(old.vals);
    return STRATA_OK;
}

/* Insert or overwrite. A new key needs a prior u64map_reserve. */
static void u64map_put(u64map *m, uint64_t key, uint64_t val)
{
    size_t i = u64map_cell(m, key);
    if (m->vals[i] == BM25_EMPTY) {
        m->n++;
    }
    m->keys[i] = key;
    m->vals[i] = val;
}

static void u64map_del(u64map *m, uint64_t key)
{
    if (m->cap == 0) {
        return;
    }
    size_t mask = m->cap - 1;
    size_t i = u64map_cell(m, key);
    if (m->vals[i] == BM25_EMPTY) {
        return;
    }
    /* Backward shift: pull later cells of the probe run into the hole unless
     * their home lies cyclically in (hole, cell]. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->vals[j] == BM25_EMPTY) {
            break;
        }
        size_t k = (size_t)mix64(m->keys[j]) & mask;
        bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->vals[i] = BM25_EMPTY;
    m->n--;
}

static void u64map_free(u64map *m)
{
    strata_free(m->keys);
    strata_free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* ======================================================================= */
/* ---- varints ----------------------------------------------------------- */
/* ======================================================================= */

static size_t varint_put(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80u) {
        p[n++] = (uint8_t)(v | 0x80u);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Decode at *p (< end); the lists are ours, so a bad byte is a bug, but the
 * read still never passes end. */
static uint32_t varint_get(const uint8_t **p, const uint8_t *end)
{
    uint32_t v = 0;
    unsigned shift = 0;
    while (*p < end) {
        uint8_t b = *(*p)++;
        v |= (uint32_t)(b & 0x7Fu) << shift;
        if (b < 0x80u || shift >= 28) {
            break;
        }
        shift += 7;
    }
    return v;
}

/* ======================================================================= */
/* ---- terms, partitions ------------------------------------------------- */
/* ======================================================================= */

typedef struct bm25_term {
    uint8_t *post;          /* owned: (slot delta, tf) varint pairs, ascending slots */
    size_t len;             /* bytes used */
    size_t cap;             /* bytes allocated */
    uint32_t n_post;        /* entries, live and dead */
    uint32_t df;            /* entries whose slot is live */
    uint32_t last;          /* slot of the last entry (when n_post > 0) */
    uint32_t id;            /* index in the partition's by_id */
} bm25_term;

typedef struct bm25_slot {
    uint64_t doc;           /* the caller's doc id */
    uint8_t *fwd;           /* owned: varint ids of the doc's distinct terms;
                               NULL when dead or when the doc has no term */
    uint32_t fwd_len;       /* bytes */
} bm25_slot;

typedef struct bm25_part {
    dict *terms;            /* term bytes -> bm25_term (owned, term_free) */
    bm25_term **by_id;      /* cap_ids entries; [id] -> term (borrowed) or NULL */
    uint32_t *free_ids;     /* cap_ids entries, n_free used: a stack of free ids */
    uint32_t n_ids;         /* ids handed out so far (high-water mark) */
    uint32_t n_free;
    uint32_t cap_ids;
    u64map docs;            /* doc id -> slot, live docs only */
    bm25_slot *slots;       /* cap_slots entries, n_slots used */
    uint32_t *lens;         /* doc length in tokens per slot, BM25_DEAD if removed */
    uint32_t n_slots;       /* slots handed out since the last compaction */
    uint32_t cap_slots;
    uint32_t n_live;        /* live docs: N in the idf */
    uint64_t total_len;     /* sum of live lens: avgdl = total_len / n_live */
    size_t post_bytes;      /* sum of term len, for stats */
} bm25_part;

struct bm25 {
    double k1;              /* term-frequency saturation, fixed at creation */
    double b;               /* length normalisation, fixed at creation */
    pthread_rwlock_t lock;  /* protects everything below */
    u64map parts;           /* partition id -> (uintptr_t)bm25_part * */
};

static void term_free(void *val)
{
    bm25_term *t = val;
    if (t != NULL) {
        strata_free(t->post);
        strata_free(t);
    }
}

static const dict_type g_term_type = {term_free};

/* Make room for one more entry, so that term_append cannot fail. */
static int term_reserve(bm25_term *t)
{
    size_t need = t->len + 2 * BM25_VARINT_MAX;
    if (need <= t->cap) {
        return STRATA_OK;
    }
    size_t cap = t->cap ? t->cap * 2 : 16;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t *p = strata_realloc(t->post, cap);
    if (p == NULL) {
        return strata_error(STRATA_ENOMEM, "bm25: out of memory growing a posting list");
    }
    t->post = p;
    t->cap = cap;
    return STRATA_OK;
}

/* Append (slot, tf); slot is greater than every slot in the list. */
static size_t term_append(bm25_term *t, uint32_t slot, uint32_t tf)
{
    size_t before = t->len;
    t->len += varint_put(t->post + t->len, slot - (t->n_post ? t->last : 0));
    t->len += varint_put(t->post + t->len, tf);
    t->last = slot;
    t->n_post++;
    return t->len - before;
}

/* Rewrite the list with slots renumbered by remap, dropping dead ones, in
 * place: see the file comment for why the writer never overtakes the reader.
 * Returns the bytes freed. */
static size_t term_compact(bm25_term *t, const uint32_t *remap)
{
    const uint8_t *r = t->post;
    const uint8_t *end = t->post + t->len;
    size_t w = 0;
    uint32_t old_slot = 0;
    uint32_t new_prev = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n_post; i++) {
        old_slot += varint_get(&r, end);
        uint32_t tf = varint_get(&r, end);
        uint32_t ns = remap[old_slot];
        if (ns == BM25_DEAD) {
            continue;
        }
        w += varint_put(t->post + w, ns - (n ? new_prev : 0));
        w += varint_put(t->post + w, tf);
        new_prev = ns;
        n++;
    }
    size_t freed = t->len - w;
    t->len = w;
    t->n_post = n;
    t->last = new_prev;
    /* Give back memory when the list shrank a lot; failure keeps the old block. */
    if (t->cap > 64 && t->cap > 4 * (w + 2 * BM25_VARINT_MAX)) {
        size_t cap = 2 * (w + 2 * BM25_VARINT_MAX);
        uint8_t *p = strata_realloc(t->post, cap);
        if (p != NULL) {
            t->post = p;
            t->cap = cap;
        }
    }
    return freed;
}

static bm25_part *part_create(void)
{
    bm25_part *p = strata_calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->terms = dict_create(&g_term_type);
    if (p->terms == NULL) {
        strata_free(p);
        return NULL;
    }
    return p;
}

static void part_free(bm25_part *p)
{
    if (p == NULL) {
        return;
    }
    for (uint32_t s = 0; s < p->n_slots; s++) {
        strata_free(p->slots[s].fwd);
    }
    dict_free(p->terms);
    strata_free(p->by_id);
    strata_free(p->free_ids);
    u64map_free(&p->docs);
    strata_free(p->slots);
    strata_free(p->lens);
    strata_free(p);
}

static bm25_part *part_get(const bm25 *idx, uint64_t partition)
{
    uint64_t v;
    if (!u64map_get(&idx->parts, partition, &v)) {
        return NULL;
    }
    return (bm25_part *)(uintptr_t)v;
}

/* Room for one more slot. */
static int part_reserve_slot(bm25_part *p)
{
    if (p->n_slots < p->cap_slots) {
        return STRATA_OK;
    }
    uint32_t cap = p->cap_slots ? p->cap_slots * 2 : 8;
    bm25_slot *slots = strata_realloc(p->slots, (size_t)cap * sizeof(*slots));
    if (slots == NULL) {
        return strata_error(STRATA_ENOMEM, "bm25: out of memory growing a partition");
    }
    p->slots = slots;
    uint32_t *lens = strata_realloc(p->lens, (size_t)cap * sizeof(*lens));
    if (lens == NULL) {
        return strata_error(STRATA_ENOMEM, "bm25: out of memory growing a partition");
    }
    p->lens = lens;
    p->cap_slots = cap;
    return STRATA_OK;
}

/* Make sure a term id can be taken without allocating. */
static int part_reserve_id(bm25_part *p)
{
    if (p->n_free > 0 || p->n_ids < p->cap_ids) {
        return STRATA_OK;
    }
    uint32_t cap = p->cap_ids ? p->cap_ids * 2 : 64;
    bm25_term **by_id = strata_realloc(p->by_id, (size_t)cap * sizeof(*by_id));
    if (by_id == NULL) {
        return strata_error(STRATA_ENOMEM, "bm25: out of memory growing the term table");
    }
    p->by_id = by_id;
    /* free_ids keeps the capacity of by_id, so returning an id never allocates. */
    uint32_t *free_ids = strata_realloc(p->free_ids, (size_t)cap * sizeof(*free_ids));
    if (free_ids == NULL) {
        return strata_error(STRATA_ENOMEM, "bm25: out of memory growing the term table");
    }
    p->free_ids = free_ids;
    p->cap_ids = cap;
    return STRATA_OK;
}

/* Give t an id (after part_reserve_id). */
static void part_take_id(bm25_part *p, bm25_term *t)
{
    t->id = p->n_free > 0 ? p->free_ids[--p->n_free] : p->n_ids++;
    p->by_id[t->id] = t;
}

static void part_release_id(bm25_part *p, const bm25_term *t)
{
    p->by_id[t->id] = NULL;
    p->free_ids[p->n_free++] = t->id;
}

/* Tombstone a live slot: its terms lose one df, its length leaves the total.
 * The caller updates p->docs. */
static void part_kill_slot(bm25_part *p, uint32_t s)
{
    bm25_slot *sl = &p->slots[s];
    if (sl->fwd != NULL) {      /* NULL for a doc without terms (NULL + 0 is UB) */
        const uint8_t *q = sl->fwd;
        const uint8_t *end = sl->fwd + sl->fwd_len;
        while (q < end) {
            p->by_id[varint_get(&q, end)]->df--;
        }
    }
    strata_free(sl->fwd);
    sl->fwd = NULL;
    sl->fwd_len = 0;
    p->total_len -= p->lens[s];
    p->lens[s] = BM25_DEAD;
    p->n_live--;
}

/* Renumber live slots densely and purge dead postings and unused terms.
 * STRATA_ENOMEM leaves the partition as it was (still correct). Caller holds
 * the write lock. */
static int part_compact(bm25_part *p)
{
    uint32_t *remap = strata_malloc((size_t)p->n_slots * sizeof(*remap) + 1);
    if (remap == NULL) {
        return STRATA_ENOMEM;
    }
    uint32_t j = 0;
    for (uint32_t s = 0; s < p->n_slots; s++) {
        if (p->lens[s] == BM25_DEAD) {
            remap[s] = BM25_DEAD;
            continue;
        }
        remap[s] = j;
        if (j != s) {
            p->slots[j] = p->slots[s];
            p->lens[j] = p->lens[s];
            u64map_put(&p->docs, p->slots[j].doc, j);   /* existing key: no growth */
        }
        j++;
    }
    p->n_slots = j;
    dict_iter it;
    const char *key;
    size_t klen;
    void *val;
    dict_iter_init(&it, p->terms);
    while (dict_next(&it, &key, &klen, &val)) {
        bm25_term *t = val;
        if (t->df == 0) {
            p->post_bytes -= t->len;
            part_release_id(p, t);
            dict_delete(p->terms, key, klen);   /* deleting the current entry is allowed */
        } else {
            p->post_bytes -= term_compact(t, remap);
        }
    }
    strata_free(remap);
    return STRATA_OK;
}

static void part_maybe_compact(bm25_part *p)
{
    if ((uint64_t)(p->n_slots - p->n_live) * 4 > p->n_slots) {
        (void)part_compact(p);  /* ENOMEM: retried at the next removal */
    }
}

/* ======================================================================= */
/* ---- bags: the distinct terms of one text ------------------------------ */
/* ======================================================================= */

typedef struct bag_ent {
    uint32_t off;           /* term bytes at bytes.data + off */
    uint32_t n;             /* term length, 1..TEXT_TOKEN_MAX */
    uint32_t tf;            /* occurrences in the text */
    bm25_term *term;        /* resolved by part_add under the lock; NULL before */
} bag_ent;

/* Built by text_tokenize's callback outside the index lock: stopwords
 * dropped, stems counted. Bounded by the text length (64 KiB for docs). */
typedef struct bag {
    sbuf bytes;             /* term bytes, back to back */
    bag_ent *ents;          /* n_ents distinct terms, in first-seen order */
    size_t n_ents;
    size_t cap_ents;
    uint32_t *table;        /* open addressing: ent index + 1, 0 = empty */
    size_t table_cap;       /* power of two, >= 2 * n_ents */
    size_t max_terms;       /* distinct terms kept; later new terms ignored */
    uint32_t n_tokens;      /* terms counted (the doc length) */
    int err;                /* first error; stops collection */
} bag;

static void bag_init(bag *bg, size_t max_terms)
{
    memset(bg, 0, sizeof(*bg));
    sbuf_init(&bg->bytes, BM25_BAG_BYTES_MAX);
    bg->max_terms = max_terms;
}

static void bag_free(bag *bg)
{
    sbuf_free(&bg->bytes);
    strata_free(bg->ents);
    strata_free(bg->table);
}

static int bag_grow(bag *bg)
{
    if (bg->n_ents == bg->cap_ents) {
        size_t cap = bg->cap_ents ? bg->cap_ents * 2 : 16;
        bag_ent *e = strata_realloc(bg->ents, cap * sizeof(*e));
        if (e == NULL) {
            return STRATA_ENOMEM;
        }
        bg->ents = e;
        bg->cap_ents = cap;
    }
    if ((bg->n_ents + 1) * 2 > bg->table_cap) {
        size_t cap = bg->table_cap ? bg->table_cap * 2 : 32;
        uint32_t *t = strata_calloc(cap, sizeof(*t));
        if (t == NULL) {
            return STRATA_ENOMEM;
        }
        for (size_t i = 0; i < bg->n_ents; i++) {
            const bag_ent *e = &bg->ents[i];
            size_t h = (size_t)hash_bytes(bg->bytes.data + e->off, e->n) & (cap - 1);
            while (t[h] != 0) {
                h = (h + 1) & (cap - 1);
            }
            t[h] = (uint32_t)i + 1;
        }
        strata_free(bg->table);
        bg->table = t;
        bg->table_cap = cap;
    }
    return STRATA_OK;
}

/* token_emit_fn: stopword filter, stem, count. */
static void bag_emit(void *ctx, const char *tok, size_t n)
{
    bag *bg = ctx;
    char w[TEXT_TOKEN_MAX];
    if (bg->err != 0 || text_is_stopword(tok, n)) {
        return;
    }
    memcpy(w, tok, n);
    n = text_stem(w, n);
    if (bg->table_cap > 0) {
        size_t mask = bg->table_cap - 1;
        size_t h = (size_t)hash_bytes(w, n) & mask;
        while (bg->table[h] != 0) {
            bag_ent *e = &bg->ents[bg->table[h] - 1];
            if (e->n == n && memcmp(bg->bytes.data + e->off, w, n) == 0) {
                e->tf++;
                bg->n_tokens++;
                return;
            }
            h = (h + 1) & mask;
        }
    }
    if (bg->n_ents >= bg->max_terms) {
        return;
    }
    int rc = bag_grow(bg);
    if (rc == STRATA_OK) {
        rc = sbuf_append(&bg->bytes, w, n);
    }
    if (rc != STRATA_OK) {
        bg->err = rc;
        return;
    }
    size_t mask = bg->table_cap - 1;
    size_t h = (size_t)hash_bytes(w, n) & mask;
    while (bg->table[h] != 0) {
        h = (h + 1) & mask;
    }
    bag_ent *e = &bg->ents[bg->n_ents];
    e->off = (uint32_t)(bg->bytes.len - n);
    e->n = (uint32_t)n;
    e->tf = 1;
    e->term = NULL;
    bg->n_ents++;
    bg->table[h] = (uint32_t)bg->n_ents;
    bg->n_tokens++;
}

/* ======================================================================= */
/* ---- public API -------------------------------------------------------- */
/* ======================================================================= */

int bm25_create(float k1, float b, bm25 **out)
{
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "bm25_create: out is NULL");
    }
    *out = NULL;
    if (!(k1 >= 0.0f && k1 <= 100.0f) || !(b >= 0.0f && b <= 1.0f)) {
        return strata_error(STRATA_EINVAL, "bm25_create: k1 must be in [0, 100] and b in [0, 1]");
    }
    bm25 *idx = strata_calloc(1, sizeof(*idx));
    if (idx == NULL) {
        return strata_error(STRATA_ENOMEM, "bm25_create: out of memory");
    }
    idx->k1 = k1;
    idx->b = b;
    /* Writer-preferring, as in hnsw.c: a stream of searches must not starve adds. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int e = pthread_rwlock_init(&idx->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (e != 0) {
        strata_free(idx);
        return strata_error(STRATA_ENOMEM, "bm25_create: cannot create lock");
    }
    *out = idx;
    return STRATA_OK;
}

void bm25_free(bm25 *idx)
{
    if (idx == NULL) {
        return;
    }
    for (size_t i = 0; i < idx->parts.cap; i++) {
        if (idx->parts.vals[i] != BM25_EMPTY) {
            part_free((bm25_part *)(uintptr_t)idx->parts.vals[i]);
        }
    }
    u64map_free(&idx->parts);
    pthread_rwlock_destroy(&idx->lock);
    strata_free(idx);
}

/* The locked half of bm25_add: every allocation happens before the first
 * change, so a failure unwinds to the index as it was. Caller holds the
 * write lock. */
static int part_add(bm25 *idx, uint64_t partition, uint64_t doc, bag *bg)
{
    int rc;
    uint8_t *fwd = NULL;
    size_t fwd_len = 0;
    bool created = false;
    uint64_t old_slot = 0;
    bm25_part *p = part_get(idx, partition);
    /* Slots run out only if compactions kept failing; compact before looking
     * up the doc's slot, since compaction renumbers slots. */
    if (p != NULL && p->n_slots >= BM25_SLOTS_MAX && part_compact(p) != STRATA_OK) {
        return strata_error(STRATA_ENOMEM, "bm25_add: out of memory compacting");
    }
    bool had = p != NULL && u64map_get(&p->docs, doc, &old_slot);
    if (p == NULL) {
        rc = u64map_reserve(&idx->parts, 1);
        if (rc != STRATA_OK) {
            return rc;
        }
        p = part_create();
        if (p == NULL) {
            return strata_error(STRATA_ENOMEM, "bm25_add: out of memory");
        }
        u64map_put(&idx->parts, partition, (uint64_t)(uintptr_t)p);
        created = true;
    }
    if (!had && p->n_live >= BM25_PART_DOCS_MAX) {
        rc = strata_error(STRATA_ETOOBIG, "bm25_add: partition holds %u docs", p->n_live);
        goto fail;
    }
    if (p->n_slots >= BM25_SLOTS_MAX) {
        rc = strata_error(STRATA_ETOOBIG, "bm25_add: partition out of slots");
        goto fail;
    }
    rc = part_reserve_slot(p);
    if (rc == STRATA_OK) {
        rc = u64map_reserve(&p->docs, 1);
    }
    if (rc != STRATA_OK) {
        goto fail;
    }
    for (size_t i = 0; i < bg->n_ents; i++) {
        bag_ent *e = &bg->ents[i];
        const char *key = bg->bytes.data + e->off;
        bm25_term *t = dict_get(p->terms, key, e->n);
        if (t == NULL) {
            rc = part_reserve_id(p);
            if (rc != STRATA_OK) {
                goto fail;
            }
            t = strata_calloc(1, sizeof(*t));
            if (t == NULL) {
                rc = strata_error(STRATA_ENOMEM, "bm25_add: out of memory");
                goto fail;
            }
            rc = dict_set(p->terms, key, e->n, t);
            if (rc != STRATA_OK) {
                term_free(t);
                goto fail;
            }
            part_take_id(p, t);
        }
        e->term = t;
        rc = term_reserve(t);
        if (rc != STRATA_OK) {
            goto fail;
        }
        fwd_len += BM25_VARINT_MAX;
    }
    if (fwd_len > 0) {
        fwd = strata_malloc(fwd_len);
        if (fwd == NULL) {
            rc = strata_error(STRATA_ENOMEM, "bm25_add: out of memory");
            goto fail;
        }
        fwd_len = 0;
        for (size_t i = 0; i < bg->n_ents; i++) {
            fwd_len += varint_put(fwd + fwd_len, bg->ents[i].term->id);
        }
        /* Trim the worst-case block to its size; failure keeps the larger block. */
        uint8_t *f = strata_realloc(fwd, fwd_len);
        if (f != NULL) {
            fwd = f;
        }
    }

    /* Commit: nothing below can fail. */
    if (had) {
        part_kill_slot(p, (uint32_t)old_slot);
    }
    uint32_t s = p->n_slots++;
    p->slots[s].doc = doc;
    p->slots[s].fwd = fwd;
    p->slots[s].fwd_len = (uint32_t)fwd_len;
    p->lens[s] = bg->n_tokens;
    for (size_t i = 0; i < bg->n_ents; i++) {
        bm25_term *t = bg->ents[i].term;
        p->post_bytes += term_append(t, s, bg->ents[i].tf);
        t->df++;
    }
    p->n_live++;
    p->total_len += bg->n_tokens;
    u64map_put(&p->docs, doc, s);
    part_maybe_compact(p);
    return STRATA_OK;

fail:
    strata_free(fwd);
    /* Terms this call created have no entry yet: drop them. */
    for (size_t i = 0; i < bg->n_ents; i++) {
        bag_ent *e = &bg->ents[i];
        if (e->term != NULL && e->term->n_post == 0) {
            part_release_id(p, e->term);
            dict_delete(p->terms, bg->bytes.data + e->off, e->n);
        }
        e->term = NULL;
    }
    if (created) {
        u64map_del(&idx->parts, partition);
        part_free(p);
    }
    return rc;
}

int bm25_add(bm25 *idx, uint64_t partition, uint64_t doc, const char *text, size_t len)
{
    if (idx == NULL || (text == NULL && len > 0)) {
        return strata_error(STRATA_EINVAL, "bm25_add: bad argument");
    }
    if (len > BM25_DOC_BYTES_MAX) {
        len = BM25_DOC_BYTES_MAX;
    }
    bag bg;
    bag_init(&bg, SIZE_MAX);
    text_tokenize(text, len, bag_emit, &bg);
    int rc = bg.err;
    if (rc != STRATA_OK) {
        rc = strata_error(rc, "bm25_add: out of memory tokenizing");
    } else {
        pthread_rwlock_wrlock(&idx->lock);
        rc = part_add(idx, partition, doc, &bg);
        pthread_rwlock_unlock(&idx->lock);
    }
    bag_free(&bg);
    return rc;
}

int bm25_remove(bm25 *idx, uint64_t partition, uint64_t doc)
{
    if (idx == NULL) {
        return strata_error(STRATA_EINVAL, "bm25_remove: idx is NULL");
    }
    int rc = STRATA_OK;
    uint64_t slot;
    pthread_rwlock_wrlock(&idx->lock);
    bm25_part *p = part_get(idx, partition);
    if (p == NULL || !u64map_get(&p->docs, doc, &slot)) {
        rc = strata_error(STRATA_ENOTFOUND, "bm25_remove: no doc %llu in partition %llu",
                          (unsigned long long)doc, (unsigned long long)partition);
        goto out;
    }
    part_kill_slot(p, (uint32_t)slot);
    u64map_del(&p->docs, doc);
    if (p->n_live == 0) {
        /* Empty partitions go away, so tenant/user churn cannot pile them up. */
        u64map_del(&idx->parts, partition);
        part_free(p);
    } else {
        part_maybe_compact(p);
    }
out:
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

/* One query term's walk over its posting list. */
typedef struct bm25_cursor {
    const uint8_t *p;       /* next undecoded byte */
    const uint8_t *end;
    uint32_t left;          /* entries not yet decoded */
    uint32_t slot;          /* current entry; BM25_DEAD when exhausted */
    uint32_t tf;
    double w;               /* idf * (k1 + 1) */
} bm25_cursor;

static void cursor_next(bm25_cursor *c)
{
    if (c->left == 0) {
        c->slot = BM25_DEAD;
        return;
    }
    c->left--;
    uint32_t delta = varint_get(&c->p, c->end);
    c->slot = (c->slot == BM25_DEAD ? 0 : c->slot) + delta;
    c->tf = varint_get(&c->p, c->end);
}

/* True if a ranks below b: lower score, or equal score and larger doc id. */
static bool hit_worse(const bm25_hit *a, const bm25_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->doc > b->doc);
}

/* Min-heap on hit_worse: h[0] is the worst kept hit. */
static void heap_sift_down(bm25_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1;
        size_t m = i;
        if (l < n && hit_worse(&h[l], &h[m])) {
            m = l;
        }
        if (l + 1 < n && hit_worse(&h[l + 1], &h[m])) {
            m = l + 1;
        }
        if (m == i) {
            return;
        }
        bm25_hit tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static void heap_push(bm25_hit *h, size_t *n, size_t cap, bm25_hit hit)
{
    if (*n == cap) {
        if (!hit_worse(&h[0], &hit)) {
            return;
        }
        h[0] = hit;
        heap_sift_down(h, *n, 0);
        return;
    }
    size_t i = (*n)++;
    h[i] = hit;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!hit_worse(&h[i], &h[parent])) {
            break;
        }
        bm25_hit tmp = h[i];
        h[i] = h[parent];
        h[parent] = tmp;
        i = parent;
    }
}

/* Score partition p for the bag's terms into the heap out[0..*n) of capacity
 * cap. Caller holds the read lock. */
static void part_search(const bm25 *idx, const bm25_part *p, const bag *bg, bm25_hit *out,
                        size_t cap, size_t *n)
{
    bm25_cursor cur[BM25_QUERY_TERMS_MAX];
    size_t nc = 0;
    double n_docs = (double)p->n_live;
    double avgdl = (double)p->total_len / n_docs;
    if (avgdl <= 0.0) {
        avgdl = 1.0;    /* every doc empty: no term has a live posting anyway */
    }
    for (size_t i = 0; i < bg->n_ents && nc < BM25_QUERY_TERMS_MAX; i++) {
        const bag_ent *e = &bg->ents[i];
        const bm25_term *t = dict_get(p->terms, bg->bytes.data + e->off, e->n);
        if (t == NULL || t->df == 0) {
            continue;
        }
        double df = (double)t->df;
        double idf = log(1.0 + (n_docs - df + 0.5) / (df + 0.5));
        bm25_cursor *c = &cur[nc++];
        c->p = t->post;
        c->end = t->post + t->len;
        c->left = t->n_post;
        c->slot = BM25_DEAD;
        c->w = idf * (idx->k1 + 1.0);
        cursor_next(c);
    }
    /* Constant parts of the length normalisation. */
    double k_fixed = idx->k1 * (1.0 - idx->b);
    double k_len = idx->k1 * idx->b / avgdl;
    for (;;) {
        uint32_t slot = BM25_DEAD;
        for (size_t i = 0; i < nc; i++) {
            if (cur[i].slot < slot) {
                slot = cur[i].slot;
            }
        }
        if (slot == BM25_DEAD) {
            break;
        }
        uint32_t dl = p->lens[slot];
        double score = 0.0;
        double k = k_fixed + k_len * (double)dl;
        for (size_t i = 0; i < nc; i++) {
            if (cur[i].slot == slot) {
                if (dl != BM25_DEAD) {
                    double tf = (double)cur[i].tf;
                    score += cur[i].w * tf / (tf + k);
                }
                cursor_next(&cur[i]);
            }
        }
        if (dl != BM25_DEAD && score > 0.0) {
            bm25_hit h = {p->slots[slot].doc, (float)score};
            heap_push(out, n, cap, h);
        }
    }
}

int bm25_search(bm25 *idx, uint64_t partition, const char *query, size_t len, size_t k,
                bm25_hit *out, size_t *n_out)
{
    if (n_out != NULL) {
        *n_out = 0;
    }
    if (idx == NULL || n_out == NULL || (query == NULL && len > 0) || (out == NULL && k > 0)) {
        return strata_error(STRATA_EINVAL, "bm25_search: bad argument");
    }
    if (k == 0) {
        return STRATA_OK;
    }
    if (len > BM25_QUERY_BYTES_MAX) {
        len = BM25_QUERY_BYTES_MAX;
    }
    bag bg;
    bag_init(&bg, BM25_QUERY_TERMS_MAX);
    text_tokenize(query, len, bag_emit, &bg);
    if (bg.err != STRATA_OK) {
        int rc = strata_error(bg.err, "bm25_search: out of memory tokenizing");
        bag_free(&bg);
        return rc;
    }
    size_t n = 0;
    if (bg.n_ents > 0) {
        pthread_rwlock_rdlock(&idx->lock);
        const bm25_part *p = part_get(idx, partition);
        if (p != NULL) {
            part_search(idx, p, &bg, out, STRATA_MIN(k, (size_t)p->n_live), &n);
        }
        pthread_rwlock_unlock(&idx->lock);
    }
    bag_free(&bg);
    /* Heap sort in place: popping the worst to the back leaves best first. */
    for (size_t end = n; end > 1; end--) {
        bm25_hit tmp = out[0];
        out[0] = out[end - 1];
        out[end - 1] = tmp;
        heap_sift_down(out, end - 1, 0);
    }
    *n_out = n;
    return STRATA_OK;
}

size_t bm25_doc_count(bm25 *idx, uint64_t partition)
{
    if (idx == NULL) {
        return 0;
    }
    pthread_rwlock_rdlock(&idx->lock);
    const bm25_part *p = part_get(idx, partition);
    size_t n = p != NULL ? p->n_live : 0;
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

void bm25_stats_get(bm25 *idx, bm25_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (idx == NULL) {
        return;
    }
    pthread_rwlock_rdlock(&idx->lock);
    out->bytes = sizeof(*idx) + idx->parts.cap * 2 * sizeof(uint64_t);
    for (size_t i = 0; i < idx->parts.cap; i++) {
        if (idx->parts.vals[i] == BM25_EMPTY) {
            continue;
        }
        const bm25_part *p = (const bm25_part *)(uintptr_t)idx->parts.vals[i];
        out->n_partitions++;
        out->n_docs += p->n_live;
        out->n_dead += p->n_slots - p->n_live;
        out->n_terms += dict_size(p->terms);
        out->posting_bytes += p->post_bytes;
        out->bytes += sizeof(*p) + p->docs.cap * 2 * sizeof(uint64_t) +
                      (size_t)p->cap_slots * (sizeof(bm25_slot) + sizeof(uint32_t)) +
                      (size_t)p->cap_ids * (sizeof(bm25_term *) + sizeof(uint32_t));
        /* Dict entries (~48 B + key) and term structs; posting capacity is
         * approximated by the bytes in use. */
        out->bytes += dict_size(p->terms) * (48 + 16 + sizeof(bm25_term)) + p->post_bytes;
        for (uint32_t s = 0; s < p->n_slots; s++) {
            out->bytes += p->slots[s].fwd_len;
        }
    }
    pthread_rwlock_unlock(&idx->lock);
}
