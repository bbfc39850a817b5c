/*
 * l1_mem.c - the embedded L1 backend: sessions, their turn buffers and the
 * users' dirty sets held in memory, made durable by the event log (the caller
 * logs, then applies here) and by snapshot images of the whole store.
 *
 *   l1_mem
 *   +----------------+
 *   | lock           |  one rwlock: readers share it, writers hold it alone
 *   | sessions  -----+--> dict "tenant\0session_id" -> mem_session
 *   | dirty     -----+--> dict "tenant\0user_id"    -> mem_dirty
 *   | idle_head -----+--> S <-> S <-> S <-> S <-- idle_tail
 *   | turns_buffered |      every session, by last_active ascending
 *   +----------------+
 *
 *   mem_session: key "tenant\0session_id\0" (tenant and session_id point into
 *   it), owner, stage, counters, and a ring of at most buffer_max turns:
 *
 *     ring: [ t7 | t8 | t5 | t6 ]   cap 4, head 2 (oldest), n 4
 *                     ^head
 *
 *   mem_dirty: key "tenant\0user_id\0" and a sorted array of unique strings.
 *
 * Tenancy: every key starts with the tenant and a NUL, and no id holds a NUL,
 * so no lookup for one tenant can reach another's data.
 *
 * Invariants (all under `lock`):
 *   - a session is in `sessions` iff it is on the idle list; the list is
 *     ordered by last_active (ties: least recently touched first), so expiry
 *     scans stop at the first session that is not idle: O(expired), not O(n).
 *   - ring: n <= cap <= buffer_max, and head == 0 whenever cap < buffer_max
 *     (the ring only wraps once it has its final size, so growing it is a
 *     plain realloc). The buffered turns have seq turn_count-n+1 .. turn_count.
 *   - turns_buffered is the sum of every session's n.
 *   - a dirty set in `dirty` is never empty (dirty_clear removes it), so
 *     dict_size(dirty) is the number of users with a non-empty set.
 *
 * Locking: `lock` (pthread rwlock, writer-preferring where glibc allows it, so
 * a stream of readers cannot starve appends) protects every field of l1_mem
 * and everything reachable from it. Reads (session_get, turn_check, dirty_get,
 * session_list_idle, snapshot_write, stats) take it shared and copy out what
 * they return; mutations take it exclusive. One lock is enough: every
 * operation is a hash lookup plus O(1) work (or O(N) copies), far below the
 * cost of the log write that precedes each mutation.
 *
 * Error discipline: a mutation allocates everything it needs (the content
 * copy, a grown ring, a new session and its dict entry) before changing
 * anything, so ENOMEM leaves the store exactly as it was.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "l1/l1.h"

/* ---- types ------------------------------------------------------------- */

#define MEM_RING_MIN 4u        /* first ring size; doubled up to buffer_max */
#define MEM_DIRTY_MIN 4u       /* first dirty-set array size; doubled */
#define MEM_KEY_STACK 320      /* keys shorter than this are built on the stack */
#define MEM_SNAP_VERSION 1u

typedef struct mem_turn {
    char *content;             /* owned, NUL-terminated (may hold NULs before) */
    size_t content_len;        /* bytes, excluding the terminator */
    int64_t ts;                /* Unix seconds, from the log record */
    uint32_t seq;              /* 1-based turn number within the session */
    strata_role role;
} mem_turn;

typedef struct mem_session {
    struct mem_session *prev;  /* idle list: older (or equal) last_active */
    struct mem_session *next;  /* idle list: newer (or equal) last_active */
    char *key;                 /* owned: tenant NUL session_id NUL */
    size_t klen;               /* key bytes before the final NUL */
    const char *tenant;        /* points into key */
    const char *session_id;    /* points into key */
    char *user_id;             /* owned: the owner, from the first turn */
    char *stage;               /* owned: current_stage, "" until set */
    uint32_t turn_count;       /* turns ever appended, buffered or not */
    int64_t last_active;       /* Unix seconds */
    bool ended;                /* set by session_end, cleared by an append */
    mem_turn *ring;            /* cap slots, NULL when cap == 0 */
    uint32_t cap;              /* slots allocated, <= buffer_max */
    uint32_t head;             /* slot of the oldest turn */
    uint32_t n;                /* turns held, <= cap */
} mem_session;

typedef struct mem_dirty {
    char *key;                 /* owned: tenant NUL user_id NUL */
    size_t klen;               /* key bytes before the final NUL */
    const char *tenant;        /* points into key */
    const char *user_id;       /* points into key */
    char **items;              /* owned strings, strictly ascending (strcmp) */
    size_t n;                  /* members, >= 1 while in the dict */
    size_t cap;                /* slots in items */
} mem_dirty;

typedef struct l1_mem {
    l1_store base;             /* must be first: l1_store * <-> l1_mem * */
    pthread_rwlock_t lock;     /* protects everything below */
    uint32_t buffer_max;       /* N: turns kept per session (0: none kept) */
    dict *sessions;            /* "tenant\0session_id" -> mem_session (owned) */
    dict *dirty;               /* "tenant\0user_id" -> mem_dirty (owned) */
    mem_session *idle_head;    /* least recently active session */
    mem_session *idle_tail;    /* most recently active session */
    uint64_t turns_buffered;   /* sum of every session's n */
} l1_mem;

/* A lookup key "a\0b", on the stack when short. */
typedef struct mem_key {
    char *p;                   /* stack or strata_malloc'ed; NUL-terminated */
    size_t len;                /* bytes before the final NUL */
    size_t alen;               /* bytes of the first part */
    char stack[MEM_KEY_STACK];
} mem_key;

/* ---- small helpers ----------------------------------------------------- */

static void mem_rdlock(l1_mem *m)
{
    /* Fails only on a bug (deadlock, uninitialised lock): not an input error. */
    int rc = pthread_rwlock_rdlock(&m->lock);
    assert(rc == 0);
    (void)rc;
}

static void mem_wrlock(l1_mem *m)
{
    int rc = pthread_rwlock_wrlock(&m->lock);
    assert(rc == 0);
    (void)rc;
}

static void mem_unlock(l1_mem *m)
{
    int rc = pthread_rwlock_unlock(&m->lock);
    assert(rc == 0);
    (void)rc;
}

/* Build "a\0b" from two byte strings into k. STRATA_ENOMEM if a long key
 * cannot be allocated. Release with mem_key_release. */
static int mem_key_make_n(mem_key *k, const char *a, size_t alen, const char *b, size_t blen)
{
    k->alen = alen;
    k->len = alen + 1 + blen;
    if (k->len < sizeof(k->stack)) {
        k->p = k->stack;
    } else {
        k->p = strata_malloc(k->len + 1);
        if (k->p == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory building an L1 key");
        }
    }
    if (alen > 0) {
        memcpy(k->p, a, alen);
    }
    k->p[alen] = '\0';
    if (blen > 0) {
        memcpy(k->p + alen + 1, b, blen);
    }
    k->p[k->len] = '\0';
    return STRATA_OK;
}

/* Build the key of C strings a and b; STRATA_EINVAL if either is NULL. */
static int mem_key_make(mem_key *k, const char *a, const char *b)
{
    k->p = NULL;
    if (a == NULL || b == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing tenant or id");
    }
    return mem_key_make_n(k, a, strlen(a), b, strlen(b));
}

static void mem_key_release(mem_key *k)
{
    if (k->p != NULL && k->p != k->stack) {
        strata_free(k->p);
    }
    k->p = NULL;
}

/* Bytewise order of (a, alen) and (b, blen), shorter prefix first. For keys
 * "tenant\0id" this orders by tenant, then id, since no id holds a NUL. */
static int mem_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* ---- sessions and the idle list ---------------------------------------- */

static void mem_session_free(void *p)
{
    mem_session *s = p;
    if (s == NULL) {
        return;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        strata_free(s->ring[(s->head + i) % s->cap].content);
    }
    strata_free(s->ring);
    strata_free(s->stage);
    strata_free(s->user_id);
    strata_free(s->key);
    strata_free(s);
}

static const dict_type mem_session_type = {mem_session_free};

/* A new, unlinked session: key copied from k, owner user (ulen bytes), stage
 * (glen bytes), an empty ring of ring_cap slots. NULL on ENOMEM. */
static mem_session *mem_session_create(const mem_key *k, const char *user, size_t ulen,
                                       const char *stage, size_t glen, uint32_t ring_cap)
{
    mem_session *s = strata_calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->key = strata_memdup(k->p, k->len + 1);
    s->user_id = strata_strndup(user, ulen);
    s->stage = strata_strndup(stage, glen);
    if (ring_cap > 0) {
        s->ring = strata_calloc(ring_cap, sizeof(*s->ring));
    }
    if (s->key == NULL || s->user_id == NULL || s->stage == NULL ||
        (ring_cap > 0 && s->ring == NULL)) {
        mem_session_free(s);
        return NULL;
    }
    s->klen = k->len;
    s->tenant = s->key;
    s->session_id = s->key + k->alen + 1;
    s->cap = ring_cap;
    return s;
}

static void idle_unlink(l1_mem *m, mem_session *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        m->idle_head = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    } else {
        m->idle_tail = s->prev;
    }
    s->prev = NULL;
    s->next = NULL;
}

/* Link s after the last session whose last_active <= s->last_active. Walks
 * back from the tail: O(1) while time moves forward (log order), O(k) for the
 * k newer sessions when a timestamp goes backwards (clock step on the host
 * that wrote the log). Caller holds the write lock. */
static void idle_insert(l1_mem *m, mem_session *s)
{
    mem_session *after = m->idle_tail;
    while (after != NULL && after->last_active > s->last_active) {
        after = after->prev;
    }
    s->prev = after;
    s->next = after != NULL ? after->next : m->idle_head;
    if (s->next != NULL) {
        s->next->prev = s;
    } else {
        m->idle_tail = s;
    }
    if (after != NULL) {
        after->next = s;
    } else {
        m->idle_head = s;
    }
}

/* last_active = ts, keeping the idle list ordered. Caller holds the write lock. */
static void mem_touch(l1_mem *m, mem_session *s, int64_t ts)
{
    idle_unlink(m, s);
    s->last_active = ts;
    idle_insert(m, s);
}

/* Make room for one more turn without evicting: grow a ring that is full but
 * below buffer_max. On ENOMEM the old ring is intact. Write lock held. */
static int mem_ring_reserve(l1_mem *m, mem_session *s)
{
    if (s->n < s->cap || s->cap >= m->buffer_max) {
        return STRATA_OK;
    }
    assert(s->head == 0);
    uint64_t want = (uint64_t)s->cap * 2;
    if (want < MEM_RING_MIN) {
        want = MEM_RING_MIN;
    }
    if (want > m->buffer_max) {
        want = m->buffer_max;
    }
    if (want > SIZE_MAX / sizeof(mem_turn)) {
        return strata_error(STRATA_ENOMEM, "L1 turn buffer too large");
    }
    mem_turn *ring = strata_realloc(s->ring, (size_t)want * sizeof(mem_turn));
    if (ring == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory growing a turn buffer");
    }
    s->ring = ring;
    s->cap = (uint32_t)want;
    return STRATA_OK;
}

/* Store t (taking its content) as the newest turn, evicting the oldest when
 * the ring holds buffer_max turns. Cannot fail: mem_ring_reserve ran first.
 * Write lock held. */
static void mem_ring_push(l1_mem *m, mem_session *s, mem_turn *t)
{
    if (s->n < s->cap) {
        s->ring[(s->head + s->n) % s->cap] = *t;
        s->n++;
        m->turns_buffered++;
    } else {
        strata_free(s->ring[s->head].content);
        s->ring[s->head] = *t;
        s->head = (s->head + 1) % s->cap;
    }
    t->content = NULL;
}

/* Remove s from the dict and the list, and free it. Write lock held. */
static void mem_session_remove(l1_mem *m, mem_session *s)
{
    idle_unlink(m, s);
    m->turns_buffered -= s->n;
    dict_delete(m->sessions, s->key, s->klen);
}

/* ---- dirty sets -------------------------------------------------------- */

static void mem_dirty_free(void *p)
{
    mem_dirty *d = p;
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        strata_free(d->items[i]);
    }
    strata_free(d->items);
    strata_free(d->key);
    strata_free(d);
}

static const dict_type mem_dirty_type = {mem_dirty_free};

/* A new, empty, unlinked set for key k with room for cap members. */
static mem_dirty *mem_dirty_create(const mem_key *k, size_t cap)
{
    mem_dirty *d = strata_calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    d->key = strata_memdup(k->p, k->len + 1);
    d->items = strata_calloc(cap, sizeof(*d->items));
    if (d->key == NULL || d->items == NULL) {
        mem_dirty_free(d);
        return NULL;
    }
    d->klen = k->len;
    d->tenant = d->key;
    d->user_id = d->key + k->alen + 1;
    d->cap = cap;
    return d;
}

/* Index where attr is or would be inserted; *found tells which. O(log n). */
static size_t mem_dirty_find(const mem_dirty *d, const char *attr, bool *found)
{
    size_t lo = 0;
    size_t hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->items[mid], attr);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

/* Make room for one more member. On ENOMEM the set is intact. */
static int mem_dirty_reserve(mem_dirty *d)
{
    if (d->n < d->cap) {
        return STRATA_OK;
    }
    size_t cap = d->cap < MEM_DIRTY_MIN ? MEM_DIRTY_MIN : d->cap * 2;
    if (cap > SIZE_MAX / sizeof(char *)) {
        return strata_error(STRATA_ENOMEM, "dirty set too large");
    }
    char **items = strata_realloc(d->items, cap * sizeof(char *));
    if (items == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory growing a dirty set");
    }
    d->items = items;
    d->cap = cap;
    return STRATA_OK;
}

/* Drop every session and dirty set (no allocation, cannot fail). Write lock held. */
static void mem_clear(l1_mem *m)
{
    dict_iter it;
    const char *key;
    size_t klen;
    dict_iter_init(&it, m->sessions);
    while (dict_next(&it, &key, &klen, NULL)) {
        dict_delete(m->sessions, key, klen);
    }
    dict_iter_init(&it, m->dirty);
    while (dict_next(&it, &key, &klen, NULL)) {
        dict_delete(m->dirty, key, klen);
    }
    m->idle_head = NULL;
    m->idle_tail = NULL;
    m->turns_buffered = 0;
}

/* ---- session operations ------------------------------------------------ */

/* The session's owner must be user_id, and it must have room for one more
 * turn number. Lock held (either mode). */
static int mem_check_owner(const mem_session *s, const char *user_id)
{
    if (strcmp(s->user_id, user_id) != 0) {
        return strata_error(STRATA_ECONFLICT, "session %s belongs to another user",
                            s->session_id);
    }
    if (s->turn_count == UINT32_MAX) {
        return strata_error(STRATA_ETOOBIG, "session %s has too many turns", s->session_id);
    }
    return STRATA_OK;
}

static int mem_turn_append(l1_store *st, const l1_turn_in *in, l1_turn_out *out)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    mem_turn t = {0};
    mem_session *created = NULL;
    if (out != NULL) {
        out->turn_count = 0;
    }
    if (in->user_id == NULL || (in->content == NULL && in->content_len > 0) ||
        (unsigned)in->role > STRATA_ROLE_SYSTEM) {
        return strata_error(STRATA_EINVAL, "L1: bad turn");
    }
    int rc = mem_key_make(&k, in->tenant, in->session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    mem_wrlock(m);
    mem_session *s = dict_get(m->sessions, k.p, k.len);
    if (s != NULL) {
        rc = mem_check_owner(s, in->user_id);
        if (rc != STRATA_OK) {
            goto done;
        }
    }
    /* Allocate everything first: nothing below the commit line may fail. */
    if (m->buffer_max > 0) {
        t.content = strata_strndup(in->content != NULL ? in->content : "", in->content_len);
        if (t.content == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory copying a turn");
            goto done;
        }
    }
    if (s == NULL) {
        uint32_t cap = STRATA_MIN(MEM_RING_MIN, m->buffer_max);
        created = mem_session_create(&k, in->user_id, strlen(in->user_id), "", 0, cap);
        if (created == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory creating a session");
            goto done;
        }
        rc = dict_set(m->sessions, k.p, k.len, created);
        if (rc != STRATA_OK) {
            mem_session_free(created);
            goto done;
        }
        s = created;
        s->last_active = in->ts;
        idle_insert(m, s);
    } else {
        rc = mem_ring_reserve(m, s);
        if (rc != STRATA_OK) {
            goto done;
        }
    }
    /* ---- commit: cannot fail from here on ---- */
    s->turn_count++;
    t.content_len = in->content_len;
    t.ts = in->ts;
    t.seq = s->turn_count;
    t.role = in->role;
    if (m->buffer_max > 0) {
        mem_ring_push(m, s, &t);
    }
    s->ended = false;
    mem_touch(m, s, in->ts);
    if (out != NULL) {
        out->turn_count = s->turn_count;
    }
done:
    mem_unlock(m);
    strata_free(t.content);
    mem_key_release(&k);
    return rc;
}

static int mem_turn_check(l1_store *st, const char *tenant, const char *session_id,
                          const char *user_id, uint32_t *turn_count_out)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    if (turn_count_out != NULL) {
        *turn_count_out = 0;
    }
    if (user_id == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing user id");
    }
    int rc = mem_key_make(&k, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    mem_rdlock(m);
    const mem_session *s = dict_get(m->sessions, k.p, k.len);
    if (s != NULL) {
        rc = mem_check_owner(s, user_id);
        if (rc == STRATA_OK && turn_count_out != NULL) {
            *turn_count_out = s->turn_count;
        }
    }
    mem_unlock(m);
    mem_key_release(&k);
    return rc;
}

/* A copy of s for the caller (strata_session_free). Lock held (either mode). */
static int mem_session_copy(const mem_session *s, strata_session **out)
{
    strata_session *c = strata_calloc(1, sizeof(*c));
    if (c == NULL) {
        goto fail;
    }
    c->session_id = strata_strdup(s->session_id);
    c->user_id = strata_strdup(s->user_id);
    c->current_stage = strata_strdup(s->stage);
    if (c->session_id == NULL || c->user_id == NULL || c->current_stage == NULL) {
        goto fail;
    }
    c->turn_count = s->turn_count;
    c->last_active = s->last_active;
    c->ended = s->ended ? 1 : 0;
    if (s->n > 0) {
        c->turns = strata_calloc(s->n, sizeof(*c->turns));
        if (c->turns == NULL) {
            goto fail;
        }
        /* Set before the copies so strata_session_free sees every slot. */
        c->n_turns = s->n;
        for (uint32_t i = 0; i < s->n; i++) {
            const mem_turn *t = &s->ring[(s->head + i) % s->cap];
            strata_turn *d = &c->turns[i];
            d->content = strata_memdup(t->content, t->content_len + 1);
            if (d->content == NULL) {
                goto fail;
            }
            d->content_len = t->content_len;
            d->role = t->role;
            d->ts = t->ts;
            d->seq = t->seq;
        }
    }
    *out = c;
    return STRATA_OK;
fail:
    strata_session_free(c);
    return strata_error(STRATA_ENOMEM, "out of memory copying a session");
}

static int mem_session_get(l1_store *st, const char *tenant, const char *session_id,
                           strata_session **out)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    *out = NULL;
    int rc = mem_key_make(&k, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    mem_rdlock(m);
    const mem_session *s = dict_get(m->sessions, k.p, k.len);
    if (s == NULL) {
        rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
    } else {
        rc = mem_session_copy(s, out);
    }
    mem_unlock(m);
    mem_key_release(&k);
    return rc;
}

static int mem_session_set_stage(l1_store *st, const char *tenant, const char *session_id,
                                 const char *stage, int64_t ts)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    if (stage == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing stage");
    }
    int rc = mem_key_make(&k, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* Copy before locking: shorter critical section, and nothing changes on ENOMEM. */
    char *copy = strata_strdup(stage);
    if (copy == NULL) {
        mem_key_release(&k);
        return strata_error(STRATA_ENOMEM, "out of memory copying a stage");
    }
    mem_wrlock(m);
    mem_session *s = dict_get(m->sessions, k.p, k.len);
    if (s == NULL) {
        rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
    } else {
        strata_free(s->stage);
        s->stage = copy;
        copy = NULL;
        mem_touch(m, s, ts);
    }
    mem_unlock(m);
    strata_free(copy);
    mem_key_release(&k);
    return rc;
}

/* Ending counts as activity: last_active = ts, so an ended session is listed
 * idle (and expired) only after the idle period has passed since its end. */
static int mem_session_end(l1_store *st, const char *tenant, const char *session_id, int64_t ts)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    int rc = mem_key_make(&k, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    mem_wrlock(m);
    mem_session *s = dict_get(m->sessions, k.p, k.len);
    if (s == NULL) {
        rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
    } else {
        s->ended = true;
        mem_touch(m, s, ts);
    }
    mem_unlock(m);
    mem_key_release(&k);
    return rc;
}

static int mem_session_delete(l1_store *st, const char *tenant, const char *session_id)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    int rc = mem_key_make(&k, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    mem_wrlock(m);
    mem_session *s = dict_get(m->sessions, k.p, k.len);
    if (s == NULL) {
        rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
    } else {
        mem_session_remove(m, s);
    }
    mem_unlock(m);
    mem_key_release(&k);
    return rc;
}

/* Walks the idle list from its oldest end and stops at the first session
 * active at or after idle_before: O(listed), whatever the store's size. An
 * empty result is *out = NULL, *n_out = 0. */
static int mem_session_list_idle(l1_store *st, int64_t idle_before, size_t max,
                                 l1_session_ref **out, size_t *n_out)
{
    l1_mem *m = (l1_mem *)st;
    int rc = STRATA_OK;
    l1_session_ref *refs = NULL;
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    mem_rdlock(m);
    size_t count = 0;
    for (const mem_session *s = m->idle_head; s != NULL && count < max; s = s->next) {
        if (s->last_active >= idle_before) {
            break;
        }
        count++;
    }
    if (count == 0) {
        goto done;
    }
    refs = strata_calloc(count, sizeof(*refs));
    if (refs == NULL) {
        goto nomem;
    }
    for (const mem_session *s = m->idle_head; n < count; s = s->next) {
        refs[n].tenant = strata_strdup(s->tenant);
        refs[n].session_id = strata_strdup(s->session_id);
        n++;
        if (refs[n - 1].tenant == NULL || refs[n - 1].session_id == NULL) {
            goto nomem;
        }
    }
    *out = refs;
    *n_out = n;
    goto done;
nomem:
    l1_session_refs_free(refs, n);
    rc = strata_error(STRATA_ENOMEM, "out of memory listing idle sessions");
done:
    mem_unlock(m);
    return rc;
}

/* ---- dirty-set operations ---------------------------------------------- */

static int mem_dirty_add(l1_store *st, const char *tenant, const char *user_id, const char *attr)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    mem_dirty *created = NULL;
    if (attr == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing attribute");
    }
    int rc = mem_key_make(&k, tenant, user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    char *copy = strata_strdup(attr);
    if (copy == NULL) {
        mem_key_release(&k);
        return strata_error(STRATA_ENOMEM, "out of memory copying an attribute");
    }
    mem_wrlock(m);
    mem_dirty *d = dict_get(m->dirty, k.p, k.len);
    bool found = false;
    size_t at = 0;
    if (d != NULL) {
        at = mem_dirty_find(d, attr, &found);
        if (found) {
            goto done;
        }
        rc = mem_dirty_reserve(d);
        if (rc != STRATA_OK) {
            goto done;
        }
    } else {
        created = mem_dirty_create(&k, MEM_DIRTY_MIN);
        if (created == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory creating a dirty set");
            goto done;
        }
        rc = dict_set(m->dirty, k.p, k.len, created);
        if (rc != STRATA_OK) {
            mem_dirty_free(created);
            goto done;
        }
        d = created;
    }
    /* Sorted insert: O(n) memmove, fine for the handful of attributes a
     * profile has; a set of thousands would want a tree instead. */
    memmove(&d->items[at + 1], &d->items[at], (d->n - at) * sizeof(char *));
    d->items[at] = copy;
    d->n++;
    copy = NULL;
done:
    mem_unlock(m);
    strata_free(copy);
    mem_key_release(&k);
    return rc;
}

static int mem_dirty_get(l1_store *st, const char *tenant, const char *user_id,
                         strata_strlist **out)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    *out = NULL;
    int rc = mem_key_make(&k, tenant, user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    strata_strlist *l = strata_calloc(1, sizeof(*l));
    if (l == NULL) {
        mem_key_release(&k);
        return strata_error(STRATA_ENOMEM, "out of memory listing a dirty set");
    }
    mem_rdlock(m);
    const mem_dirty *d = dict_get(m->dirty, k.p, k.len);
    if (d != NULL) {
        l->items = strata_calloc(d->n, sizeof(char *));
        if (l->items == NULL) {
            goto nomem;
        }
        l->n = d->n;
        for (size_t i = 0; i < d->n; i++) {
            l->items[i] = strata_strdup(d->items[i]);
            if (l->items[i] == NULL) {
                goto nomem;
            }
        }
    }
    mem_unlock(m);
    mem_key_release(&k);
    *out = l;
    return STRATA_OK;
nomem:
    mem_unlock(m);
    mem_key_release(&k);
    strata_strlist_free(l);
    return strata_error(STRATA_ENOMEM, "out of memory listing a dirty set");
}

/* Clearing an unknown or already clear set is not an error (as Redis DEL). */
static int mem_dirty_clear(l1_store *st, const char *tenant, const char *user_id)
{
    l1_mem *m = (l1_mem *)st;
    mem_key k;
    int rc = mem_key_make(&k, tenant, user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    mem_wrlock(m);
    dict_delete(m->dirty, k.p, k.len);
    mem_unlock(m);
    mem_key_release(&k);
    return STRATA_OK;
}

/* ---- snapshots ----------------------------------------------------------- */
/*
 * The snapshot body (wrapped by the log's snap_* header and CRC). Integers are
 * little-endian; str is a u32 byte length followed by the bytes, no NUL.
 *
 *   field            type   meaning / constraint checked on load
 *   version          u32    1
 *   n_sessions       u64    sessions that follow
 *   n_dirty          u64    dirty sets that follow the sessions
 *   n_sessions times, in idle-list order (last_active ascending):
 *     tenant         str    UTF-8, no NUL
 *     session_id     str    UTF-8, no NUL; (tenant, session_id) unique
 *     user_id        str    UTF-8, no NUL; the owner
 *     current_stage  str    UTF-8, no NUL; "" until set
 *     turn_count     u32    >= 1, every turn ever appended
 *     last_active    i64    Unix s, >= the previous session's
 *     ended          u8     0 or 1
 *     n_turns        u32    <= turn_count; buffered turns that follow
 *     n_turns times, oldest first (seq = turn_count - n_turns + 1 + i):
 *       role         u8     0 user, 1 assistant, 2 system
 *       ts           i64    Unix s
 *       content      str    UTF-8 (NULs allowed)
 *   n_dirty times, (tenant, user_id) strictly ascending bytewise:
 *     tenant         str    UTF-8, no NUL
 *     user_id        str    UTF-8, no NUL
 *     n_attrs        u32    >= 1
 *     attr           str    n_attrs times, strictly ascending, UTF-8, no NUL
 *
 * The order makes the image canonical: the same state always gives the same
 * bytes, so load + write reproduces an image exactly. Every count is checked
 * against the bytes left (at the minimum encoded size of what it counts)
 * before anything is allocated for it. A session with more turns than this
 * store's buffer_max (the setting changed between runs) keeps its newest.
 */
#define SNAP_MIN_SESSION (4 * 4 + 4 + 8 + 1 + 4)   /* four empty strs + fixed fields */
#define SNAP_MIN_TURN (1 + 8 + 4)
#define SNAP_MIN_DIRTY (4 + 4 + 4 + 4)             /* two empty strs, count, one attr */
#define SNAP_MIN_ATTR 4

static int snap_put_session(sbuf *b, const mem_session *s)
{
    int rc = wire_put_str(b, s->tenant);
    if (rc == STRATA_OK) {
        rc = wire_put_str(b, s->session_id);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_str(b, s->user_id);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_str(b, s->stage);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_u32(b, s->turn_count);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_i64(b, s->last_active);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_u8(b, s->ended ? 1 : 0);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_u32(b, s->n);
    }
    for (uint32_t i = 0; i < s->n && rc == STRATA_OK; i++) {
        const mem_turn *t = &s->ring[(s->head + i) % s->cap];
        rc = wire_put_u8(b, (uint8_t)t->role);
        if (rc == STRATA_OK) {
            rc = wire_put_i64(b, t->ts);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_bytes(b, t->content, t->content_len);
        }
    }
    return rc;
}

static int snap_put_dirty(sbuf *b, const mem_dirty *d)
{
    if (d->n > UINT32_MAX) {
        return strata_error(STRATA_ETOOBIG, "dirty set of %zu members", d->n);
    }
    int rc = wire_put_str(b, d->tenant);
    if (rc == STRATA_OK) {
        rc = wire_put_str(b, d->user_id);
    }
    if (rc == STRATA_OK) {
        rc = wire_put_u32(b, (uint32_t)d->n);
    }
    for (size_t i = 0; i < d->n && rc == STRATA_OK; i++) {
        rc = wire_put_str(b, d->items[i]);
    }
    return rc;
}

static int snap_dirty_cmp(const void *a, const void *b)
{
    const mem_dirty *x = *(const mem_dirty *const *)a;
    const mem_dirty *y = *(const mem_dirty *const *)b;
    return mem_bytes_cmp(x->key, x->klen, y->key, y->klen);
}

/* Appends the image to out (whose max bounds it). On failure out is restored
 * to its previous length. Takes the lock shared: appends wait, reads go on. */
static int mem_snapshot_write(l1_store *st, sbuf *out)
{
    l1_mem *m = (l1_mem *)st;
    size_t start = out->len;
    const mem_dirty **sorted = NULL;
    mem_rdlock(m);
    size_t n_dirty = dict_size(m->dirty);
    int rc = wire_put_u32(out, MEM_SNAP_VERSION);
    if (rc == STRATA_OK) {
        rc = wire_put_u64(out, dict_size(m->sessions));
    }
    if (rc == STRATA_OK) {
        rc = wire_put_u64(out, n_dirty);
    }
    for (const mem_session *s = m->idle_head; s != NULL && rc == STRATA_OK; s = s->next) {
        rc = snap_put_session(out, s);
    }
    if (rc != STRATA_OK || n_dirty == 0) {
        goto done;
    }
    /* The dict's order depends on its history; sorting makes the image canonical. */
    sorted = strata_malloc(n_dirty * sizeof(*sorted));
    if (sorted == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory writing the L1 snapshot");
        goto done;
    }
    dict_iter it;
    void *val;
    size_t i = 0;
    dict_iter_init(&it, m->dirty);
    while (dict_next(&it, NULL, NULL, &val)) {
        sorted[i++] = val;
    }
    qsort(sorted, n_dirty, sizeof(*sorted), snap_dirty_cmp);
    for (i = 0; i < n_dirty && rc == STRATA_OK; i++) {
        rc = snap_put_dirty(out, sorted[i]);
    }
done:
    mem_unlock(m);
    strata_free(sorted);
    if (rc != STRATA_OK) {
        out->len = start;
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
    }
    return rc;
}

/* Stored text: valid UTF-8 and, if it is an id or a key part, no NUL. */
static bool snap_text_ok(const char *p, size_t n, bool allow_nul)
{
    if (!allow_nul && n > 0 && memchr(p, '\0', n) != NULL) {
        return false;
    }
    return utf8_valid(p, n);
}

static size_t snap_left(const wire_reader *r)
{
    return r->err ? 0 : r->len - r->off;
}

/* Read one session and link it into m. *prev_active: the previous session's
 * last_active (order check). Write lock held. */
static int snap_load_session(l1_mem *m, wire_reader *r, int64_t *prev_active)
{
    size_t tl;
    size_t sl;
    size_t ul;
    size_t gl;
    mem_key k = {0};
    mem_session *s = NULL;
    int rc = STRATA_ECORRUPT;
    const char *tenant = wire_get_bytes(r, &tl);
    const char *sid = wire_get_bytes(r, &sl);
    const char *user = wire_get_bytes(r, &ul);
    const char *stage = wire_get_bytes(r, &gl);
    uint32_t turn_count = wire_get_u32(r);
    int64_t last_active = wire_get_i64(r);
    uint8_t ended = wire_get_u8(r);
    uint32_t n_turns = wire_get_u32(r);
    if (r->err) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: truncated session");
    }
    if (!snap_text_ok(tenant, tl, false) || !snap_text_ok(sid, sl, false) ||
        !snap_text_ok(user, ul, false) || !snap_text_ok(stage, gl, false)) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: bad session text");
    }
    if (ended > 1 || turn_count == 0 || n_turns > turn_count) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: bad session counters");
    }
    if (last_active < *prev_active) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: sessions out of order");
    }
    if (n_turns > snap_left(r) / SNAP_MIN_TURN) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: turn count past the end");
    }
    rc = mem_key_make_n(&k, tenant, tl, sid, sl);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (dict_get(m->sessions, k.p, k.len) != NULL) {
        rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: duplicate session");
        goto fail;
    }
    uint32_t keep = STRATA_MIN(n_turns, m->buffer_max);
    uint32_t cap = keep > 0 ? keep : STRATA_MIN(MEM_RING_MIN, m->buffer_max);
    s = mem_session_create(&k, user, ul, stage, gl, cap);
    if (s == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory loading the L1 snapshot");
        goto fail;
    }
    s->turn_count = turn_count;
    s->last_active = last_active;
    s->ended = ended != 0;
    for (uint32_t i = 0; i < n_turns; i++) {
        size_t cl;
        uint8_t role = wire_get_u8(r);
        int64_t ts = wire_get_i64(r);
        const char *content = wire_get_bytes(r, &cl);
        if (r->err || role > STRATA_ROLE_SYSTEM || !snap_text_ok(content, cl, true)) {
            rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: bad turn");
            goto fail;
        }
        if (i < n_turns - keep) {
            continue; /* older than this store's buffer keeps */
        }
        mem_turn *t = &s->ring[s->n];
        t->content = strata_strndup(content != NULL ? content : "", cl);
        if (t->content == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory loading the L1 snapshot");
            goto fail;
        }
        t->content_len = cl;
        t->ts = ts;
        t->role = (strata_role)role;
        t->seq = turn_count - n_turns + 1 + i;
        s->n++;
    }
    rc = dict_set(m->sessions, k.p, k.len, s);
    if (rc != STRATA_OK) {
        goto fail;
    }
    /* Order was checked, so appending at the tail keeps the list sorted. */
    idle_insert(m, s);
    m->turns_buffered += s->n;
    *prev_active = last_active;
    mem_key_release(&k);
    return STRATA_OK;
fail:
    mem_session_free(s);
    mem_key_release(&k);
    return rc;
}

/* Read one dirty set into m; *prev: the previous set (order check), updated.
 * Write lock held. */
static int snap_load_dirty(l1_mem *m, wire_reader *r, const mem_dirty **prev)
{
    size_t tl;
    size_t ul;
    mem_key k = {0};
    mem_dirty *d = NULL;
    int rc;
    const char *tenant = wire_get_bytes(r, &tl);
    const char *user = wire_get_bytes(r, &ul);
    uint32_t n_attrs = wire_get_u32(r);
    if (r->err) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: truncated dirty set");
    }
    if (!snap_text_ok(tenant, tl, false) || !snap_text_ok(user, ul, false) || n_attrs == 0 ||
        n_attrs > snap_left(r) / SNAP_MIN_ATTR) {
        return strata_error(STRATA_ECORRUPT, "L1 snapshot: bad dirty set");
    }
    rc = mem_key_make_n(&k, tenant, tl, user, ul);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* Strictly ascending keys: canonical, and rules out duplicates. */
    if (*prev != NULL && mem_bytes_cmp((*prev)->key, (*prev)->klen, k.p, k.len) >= 0) {
        rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: dirty sets out of order");
        goto fail;
    }
    d = mem_dirty_create(&k, n_attrs);
    if (d == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory loading the L1 snapshot");
        goto fail;
    }
    for (uint32_t i = 0; i < n_attrs; i++) {
        size_t al;
        const char *attr = wire_get_bytes(r, &al);
        if (r->err || !snap_text_ok(attr, al, false) ||
            (i > 0 && mem_bytes_cmp(d->items[i - 1], strlen(d->items[i - 1]), attr, al) >= 0)) {
            rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: bad dirty attribute");
            goto fail;
        }
        d->items[i] = strata_strndup(attr != NULL ? attr : "", al);
        if (d->items[i] == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory loading the L1 snapshot");
            goto fail;
        }
        d->n++;
    }
    rc = dict_set(m->dirty, k.p, k.len, d);
    if (rc != STRATA_OK) {
        goto fail;
    }
    *prev = d;
    mem_key_release(&k);
    return STRATA_OK;
fail:
    mem_dirty_free(d);
    mem_key_release(&k);
    return rc;
}

/* Replace the contents with the image. On any failure (STRATA_ECORRUPT, or
 * STRATA_ENOMEM) the store is left empty. Takes the write lock throughout, so
 * no reader sees a half-loaded store. */
static int mem_snapshot_load(l1_store *st, const void *data, size_t len)
{
    l1_mem *m = (l1_mem *)st;
    wire_reader r;
    int rc = STRATA_OK;
    mem_wrlock(m);
    mem_clear(m);
    wire_reader_init(&r, data, len);
    uint32_t version = wire_get_u32(&r);
    uint64_t n_sessions = wire_get_u64(&r);
    uint64_t n_dirty = wire_get_u64(&r);
    if (r.err) {
        rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: truncated header");
        goto fail;
    }
    if (version != MEM_SNAP_VERSION) {
        rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: unknown version %u", version);
        goto fail;
    }
    size_t left = snap_left(&r);
    if (n_sessions > left / SNAP_MIN_SESSION ||
        n_dirty > (left - (size_t)n_sessions * SNAP_MIN_SESSION) / SNAP_MIN_DIRTY) {
        rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: counts past the end");
        goto fail;
    }
    int64_t prev_active = INT64_MIN;
    for (uint64_t i = 0; i < n_sessions; i++) {
        rc = snap_load_session(m, &r, &prev_active);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    const mem_dirty *prev = NULL;
    for (uint64_t i = 0; i < n_dirty; i++) {
        rc = snap_load_dirty(m, &r, &prev);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    if (!wire_done(&r)) {
        rc = strata_error(STRATA_ECORRUPT, "L1 snapshot: trailing bytes");
        goto fail;
    }
    mem_unlock(m);
    return STRATA_OK;
fail:
    mem_clear(m);
    mem_unlock(m);
    return rc;
}

/* ---- stats, open, close ------------------------------------------------ */

static void mem_stats(l1_store *st, l1_stats *out)
{
    l1_mem *m = (l1_mem *)st;
    mem_rdlock(m);
    out->sessions = dict_size(m->sessions);
    out->turns_buffered = m->turns_buffered;
    out->dirty_users = dict_size(m->dirty);
    mem_unlock(m);
}

static void mem_close(l1_store *st)
{
    l1_mem *m = (l1_mem *)st;
    if (m == NULL) {
        return;
    }
    dict_free(m->sessions);
    dict_free(m->dirty);
    pthread_rwlock_destroy(&m->lock);
    strata_free(m);
}

static const l1_ops mem_ops = {
    .name = "embedded",
    .turn_append = mem_turn_append,
    .turn_check = mem_turn_check,
    .session_get = mem_session_get,
    .session_set_stage = mem_session_set_stage,
    .session_end = mem_session_end,
    .session_delete = mem_session_delete,
    .session_list_idle = mem_session_list_idle,
    .dirty_add = mem_dirty_add,
    .dirty_get = mem_dirty_get,
    .dirty_clear = mem_dirty_clear,
    .snapshot_write = mem_snapshot_write,
    .snapshot_load = mem_snapshot_load,
    .stats = mem_stats,
    .close = mem_close,
};

/* opts NULL: buffer_max 20 (the config default). buffer_max 0 keeps no turns
 * but still counts them. The ring grows on demand, so a large buffer_max
 * costs nothing until a session uses it. */
int l1_mem_open(const l1_mem_options *opts, l1_store **out)
{
    *out = NULL;
    l1_mem *m = strata_calloc(1, sizeof(*m));
    if (m == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory opening the L1 store");
    }
    m->base.ops = &mem_ops;
    m->buffer_max = opts != NULL ? opts->buffer_max : 20;
    pthread_rwlockattr_t attr;
    int err = pthread_rwlockattr_init(&attr);
    if (err != 0) {
        strata_free(m);
        return strata_error(STRATA_ENOMEM, "cannot initialise an rwlock attribute");
    }
#if defined(__GLIBC__)
    /* glibc's default prefers readers, which lets steady reads starve appends. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    err = pthread_rwlock_init(&m->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (err != 0) {
        strata_free(m);
        return strata_error(err == ENOMEM ? STRATA_ENOMEM : STRATA_EIO,
                            "cannot initialise the L1 lock");
    }
    m->sessions = dict_create(&mem_session_type);
    m->dirty = dict_create(&mem_dirty_type);
    if (m->sessions == NULL || m->dirty == NULL) {
        mem_close(&m->base);
        return strata_error(STRATA_ENOMEM, "out of memory opening the L1 store");
    }
    *out = &m->base;
    return STRATA_OK;
}
