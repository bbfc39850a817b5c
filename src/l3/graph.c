/*
 * graph.c - the L3 property-graph store: interned names, node and edge slots,
 * adjacency arrays, temporal edge versions, the (label, property value)
 * index, and the read/write entry points other than subgraph (graph_query.c)
 * and snapshots (graph_io.c). The layout and its invariants are drawn in
 * graph_int.h; the contract of each public function is in graph.h.
 *
 * Locking: every entry point takes g->lock, as a reader for lookups and as a
 * writer for mutations, and releases it before returning. Input validation
 * and deep copies of caller JSON happen before the lock is taken; inside,
 * an update parses the stored text, merges, writes the new text (in
 * g->wbuf, which only writers touch) and updates the index.
 *
 * Known linear spots, accepted for simplicity:
 *   - finding the current version of (from, to, type) scans the shorter of
 *     out(from) and in(to);
 *   - removing or expiring an edge scans the adjacency arrays of its ends;
 *   - removing a node from a posting list scans that list (only for values
 *     that changed, or on delete).
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "l3/graph_int.h"

/* ======================================================================== */
/* Locks                                                                     */
/* ======================================================================== */

/* pthread rwlock calls fail only on misuse (deadlock, too many readers): a
 * bug, hence asserts rather than error codes. */
static void graph_rdlock(graph *g)
{
    int rc = pthread_rwlock_rdlock(&g->lock);
    assert(rc == 0);
    (void)rc;
}

static void graph_wrlock(graph *g)
{
    int rc = pthread_rwlock_wrlock(&g->lock);
    assert(rc == 0);
    (void)rc;
}

static void graph_unlock(graph *g)
{
    int rc = pthread_rwlock_unlock(&g->lock);
    assert(rc == 0);
    (void)rc;
}

/* ======================================================================== */
/* Interned names                                                            */
/* ======================================================================== */

static int names_init(graph_names *t)
{
    memset(t, 0, sizeof(*t));
    t->ids = dict_create(NULL);
    return t->ids ? STRATA_OK : STRATA_ENOMEM;
}

static void names_free(graph_names *t)
{
    dict_free(t->ids);
    for (uint32_t i = 0; i < t->n; i++) {
        strata_free(t->names[i]);
    }
    strata_free(t->names);
    strata_free(t->lens);
    memset(t, 0, sizeof(*t));
}

uint32_t graph_names_find(const graph_names *t, const char *name, size_t n)
{
    void *v = dict_get(t->ids, name, n);
    return v ? (uint32_t)((uintptr_t)v - 1) : GRAPH_NONE;
}

int graph_names_intern(graph_names *t, const char *name, size_t n, uint32_t *id_out)
{
    uint32_t id = graph_names_find(t, name, n);
    if (id != GRAPH_NONE) {
        *id_out = id;
        return STRATA_OK;
    }
    if (t->n >= GRAPH_MAX_NAMES) {
        return strata_error(STRATA_ETOOBIG, "graph: more than %u distinct names", GRAPH_MAX_NAMES);
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 16;
        char **names = strata_realloc(t->names, cap * sizeof(*names));
        if (names == NULL) {
            return strata_error(STRATA_ENOMEM, "graph: out of memory interning a name");
        }
        t->names = names;
        uint32_t *lens = strata_realloc(t->lens, cap * sizeof(*lens));
        if (lens == NULL) {
            return strata_error(STRATA_ENOMEM, "graph: out of memory interning a name");
        }
        t->lens = lens;
        t->cap = cap;
    }
    char *copy = strata_strndup(name, n);
    if (copy == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory interning a name");
    }
    id = t->n;
    int rc = dict_set(t->ids, name, n, (void *)((uintptr_t)id + 1));
    if (rc != STRATA_OK) {
        strata_free(copy);
        return rc;
    }
    t->names[id] = copy;
    t->lens[id] = (uint32_t)n;
    t->n++;
    *id_out = id;
    return STRATA_OK;
}

/* ======================================================================== */
/* Lifetime                                                                  */
/* ======================================================================== */

typedef struct graph_postings {
    uint32_t *v;                /* node slots, unordered */
    uint32_t n;
    uint32_t cap;
} graph_postings;

static void postings_free(void *p)
{
    graph_postings *ps = p;
    if (ps != NULL) {
        strata_free(ps->v);
        strata_free(ps);
    }
}

static const dict_type index_dict_type = {postings_free};

int graph_create(graph **out)
{
    *out = NULL;
    graph *g = strata_calloc(1, sizeof(*g));
    if (g == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory");
    }
    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0) {
        strata_free(g);
        return strata_error(STRATA_ENOMEM, "graph: cannot create lock attributes");
    }
    /* Writers first: a stream of subgraph readers must not starve puts. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int prc = pthread_rwlock_init(&g->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (prc != 0) {
        strata_free(g);
        return strata_error(STRATA_ENOMEM, "graph: cannot create lock");
    }
    if (pthread_mutex_init(&g->scratch_lock, NULL) != 0) {
        pthread_rwlock_destroy(&g->lock);
        strata_free(g);
        return strata_error(STRATA_ENOMEM, "graph: cannot create lock");
    }
    g->free_node = GRAPH_NONE;
    g->free_edge = GRAPH_NONE;
    sbuf_init(&g->wbuf, GRAPH_PROPS_MAX_BYTES);
    /* From here graph_free can undo a partial build. */
    if (names_init(&g->tenants) != STRATA_OK || names_init(&g->labels) != STRATA_OK ||
        names_init(&g->types) != STRATA_OK) {
        goto fail;
    }
    g->node_ids = dict_create(NULL);
    g->index = dict_create(&index_dict_type);
    if (g->node_ids == NULL || g->index == NULL) {
        goto fail;
    }
    *out = g;
    return STRATA_OK;
fail:
    graph_free(g);
    return strata_error(STRATA_ENOMEM, "graph: out of memory");
}

void graph_free(graph *g)
{
    if (g == NULL) {
        return;
    }
    for (uint32_t i = 0; i < g->n_node_slots; i++) {
        if (g->nodes[i].tenant != GRAPH_NONE) {
            strata_free(g->nodes[i].out.v);
            strata_free(g->nodes[i].in.v);
            strata_free(g->cold[i].id);
            strata_free(g->cold[i].props.p);
        }
    }
    strata_free(g->nodes);
    strata_free(g->cold);
    for (uint32_t e = 0; e < g->n_edge_slots; e++) {
        if (g->edges[e].from != GRAPH_NONE) {
            strata_free(g->edge_props[e].p);
        }
    }
    strata_free(g->edges);
    strata_free(g->edge_props);
    dict_free(g->node_ids);
    dict_free(g->index);
    names_free(&g->tenants);
    names_free(&g->labels);
    names_free(&g->types);
    graph_scratch *s = g->scratch;
    while (s != NULL) {
        graph_scratch *next = s->next;
        strata_free(s->mark);
        strata_free(s->order);
        strata_free(s->depth);
        strata_free(s->found);
        strata_free(s);
        s = next;
    }
    sbuf_free(&g->wbuf);
    pthread_mutex_destroy(&g->scratch_lock);
    pthread_rwlock_destroy(&g->lock);
    strata_free(g);
}

/* ======================================================================== */
/* Validation and property objects                                           */
/* ======================================================================== */

/* s must be a NUL-terminated id-alphabet name (tenant, node id, label, type). */
static int check_name(const char *what, const char *s, size_t *len_out)
{
    *len_out = 0;
    if (s == NULL) {
        return strata_error(STRATA_EINVAL, "graph: %s is required", what);
    }
    size_t n = strnlen(s, STRATA_ID_MAX + 1);
    if (!strata_id_valid(s, n)) {
        return strata_error(STRATA_EINVAL, "graph: invalid %s (1..%d bytes of [A-Za-z0-9_.:@-])",
                            what, STRATA_ID_MAX);
    }
    *len_out = n;
    return STRATA_OK;
}

/* v nests at most levels_left levels and no key holds a NUL byte. */
static bool json_shape_ok(const json_t *v, int levels_left)
{
    if (json_is_object(v)) {
        if (levels_left == 0) {
            return false;
        }
        const char *key;
        size_t klen;
        json_t *child;
        json_object_keylen_foreach((json_t *)v, key, klen, child) {
            if (memchr(key, '\0', klen) != NULL || !json_shape_ok(child, levels_left - 1)) {
                return false;
            }
        }
    } else if (json_is_array(v)) {
        if (levels_left == 0) {
            return false;
        }
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            if (!json_shape_ok(child, levels_left - 1)) {
                return false;
            }
        }
    }
    return true;
}

int graph_props_check(const json_t *props, bool is_edge, bool top_null_ok)
{
    if (props == NULL) {
        return STRATA_OK;
    }
    if (!json_is_object(props)) {
        return strata_error(STRATA_EINVAL, "graph: properties must be a JSON object");
    }
    if (!json_shape_ok(props, GRAPH_PROPS_MAX_DEPTH)) {
        return strata_error(STRATA_EINVAL,
                            "graph: properties nest deeper than %d levels or have a NUL in a key",
                            GRAPH_PROPS_MAX_DEPTH);
    }
    if (!top_null_ok) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)props, key, v) {
            if (json_is_null(v)) {
                return strata_error(STRATA_EINVAL, "graph: property %s is null", key);
            }
        }
    }
    if (is_edge) {
        const json_t *w = json_object_get(props, "weight");
        if (w != NULL && !json_is_null(w) &&
            (!json_is_number(w) || !isfinite(json_number_value(w)))) {
            return strata_error(STRATA_EINVAL, "graph: weight must be a finite number");
        }
    }
    return STRATA_OK;
}

/* A private deep copy of a caller's patch (NULL: {}). NULL on ENOMEM. */
static json_t *props_copy(const json_t *props)
{
    return props ? json_deep_copy(props) : json_object();
}

/* Remove the top-level nulls of an object we own, before storing it. */
static void props_strip_nulls(json_t *obj)
{
    const char *key;
    size_t klen;
    json_t *v;
    void *tmp;
    json_object_keylen_foreach_safe(obj, tmp, key, klen, v) {
        if (json_is_null(v)) {
            json_object_deln(obj, key, klen);
        }
    }
}

/* A new object: base's pairs, then patch's: a null removes the key, anything
 * else overwrites or adds it. Values are shared with the inputs by reference
 * (all three are private to the caller and short-lived); neither input is
 * modified. NULL on ENOMEM. */
static json_t *props_merge(const json_t *base, const json_t *patch)
{
    json_t *m = json_object();
    if (m == NULL) {
        return NULL;
    }
    if (json_object_update(m, (json_t *)base) != 0) {
        json_decref(m);
        return NULL;
    }
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)patch, key, klen, v) {
        if (json_is_null(v)) {
            json_object_deln(m, key, klen);
        } else if (json_object_setn(m, key, klen, v) != 0) {
            json_decref(m);
            return NULL;
        }
    }
    return m;
}

/* The canonical text of obj (which passed graph_props_check) into *t; an
 * empty object is stored as no text at all. Caller holds g->lock for
 * writing (g->wbuf is the writers' scratch buffer). */
static int text_make(graph *g, const json_t *obj, graph_text *t)
{
    t->p = NULL;
    t->len = 0;
    if (json_object_size(obj) == 0) {
        return STRATA_OK;
    }
    sbuf_reset(&g->wbuf);
    int rc = graph_json_write(&g->wbuf, obj);
    if (rc == STRATA_ETOOBIG) {
        return strata_error(STRATA_ETOOBIG, "graph: properties over %u bytes of JSON",
                            GRAPH_PROPS_MAX_BYTES);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    /* An exact-size copy: millions of small texts, no slack. */
    t->p = strata_memdup(g->wbuf.data, g->wbuf.len + 1);
    if (t->p == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory storing properties");
    }
    t->len = (uint32_t)g->wbuf.len;
    return STRATA_OK;
}

/* A new object parsed from stored text, or NULL on ENOMEM (stored text is
 * always well-formed). */
static json_t *text_parse(const char *p, size_t len)
{
    if (p == NULL) {
        return json_object();
    }
    return json_loadb(p, len, JSON_ALLOW_NUL, NULL);
}

/* A copy of stored text (NULL text stays NULL) for parsing outside the lock;
 * false on ENOMEM. */
static bool text_copy(const graph_text *t, char **out)
{
    *out = NULL;
    if (t->p == NULL) {
        return true;
    }
    *out = strata_memdup(t->p, (size_t)t->len + 1);
    return *out != NULL;
}

/* ======================================================================== */
/* The (tenant, label, property, value) index                                */
/* ======================================================================== */

/* Index key layout, all little-endian:
 *   u32 tenant | u32 label | u32 name length | name | tag | value text
 * tag 's' string bytes, 'n' number (integral values as a decimal integer so
 * 1 and 1.0 meet, others %.17g), 't' true, 'f' false. Returns the key length,
 * or 0 when (name, value) is not indexed (see graph_find_nodes). */
static size_t index_key(uint8_t *buf, uint32_t tenant, uint32_t label, const char *name,
                        size_t name_len, const json_t *v)
{
    if (name_len > GRAPH_INDEX_PROP_MAX) {
        return 0;
    }
    size_t off = 12 + name_len;
    char *val = (char *)buf + off + 1;
    size_t val_len;
    char tag;
    switch (json_typeof(v)) {
    case JSON_STRING:
        val_len = json_string_length(v);
        if (val_len > GRAPH_INDEX_VALUE_MAX) {
            return 0;
        }
        memcpy(val, json_string_value(v), val_len);
        tag = 's';
        break;
    case JSON_INTEGER:
        val_len = (size_t)snprintf(val, 32, "%lld", (long long)json_integer_value(v));
        tag = 'n';
        break;
    case JSON_REAL: {
        double x = json_real_value(v);
        if (x == trunc(x) && x >= -9.2e18 && x <= 9.2e18) {
            val_len = (size_t)snprintf(val, 32, "%lld", (long long)x);
        } else {
            val_len = (size_t)snprintf(val, 32, "%.17g", x);
        }
        tag = 'n';
        break;
    }
    case JSON_TRUE:
        val_len = 0;
        tag = 't';
        break;
    case JSON_FALSE:
        val_len = 0;
        tag = 'f';
        break;
    default:
        return 0;
    }
    wire_le32(buf, tenant);
    wire_le32(buf + 4, label);
    wire_le32(buf + 8, (uint32_t)name_len);
    memcpy(buf + 12, name, name_len);
    buf[off] = (uint8_t)tag;
    return off + 1 + val_len;
}

static int postings_add(graph *g, const uint8_t *key, size_t klen, uint32_t slot)
{
    graph_postings *ps = dict_get(g->index, key, klen);
    if (ps == NULL) {
        ps = strata_calloc(1, sizeof(*ps));
        if (ps == NULL) {
            return strata_error(STRATA_ENOMEM, "graph: out of memory in the index");
        }
        int rc = dict_set(g->index, key, klen, ps);
        if (rc != STRATA_OK) {
            strata_free(ps);
            return rc;
        }
    }
    if (ps->n == ps->cap) {
        uint32_t cap = ps->cap ? ps->cap * 2 : 4;
        uint32_t *v = strata_realloc(ps->v, cap * sizeof(*v));
        if (v == NULL) {
            if (ps->n == 0) {
                dict_delete(g->index, key, klen);
            }
            return strata_error(STRATA_ENOMEM, "graph: out of memory in the index");
        }
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n++] = slot;
    return STRATA_OK;
}

/* Remove slot from the key's list if there (O(list)); drop an emptied list. */
static void postings_remove(graph *g, const uint8_t *key, size_t klen, uint32_t slot)
{
    graph_postings *ps = dict_get(g->index, key, klen);
    if (ps == NULL) {
        return;
    }
    for (uint32_t i = 0; i < ps->n; i++) {
        if (ps->v[i] == slot) {
            ps->v[i] = ps->v[--ps->n];
            break;
        }
    }
    if (ps->n == 0) {
        dict_delete(g->index, key, klen);
    }
}

/* Add (add == true) or remove the index entries of slot for every indexable
 * pair of `props` under `label`, except pairs that `keep_props` under
 * `keep_label` maps to the very same key (those are unchanged). keep_props may
 * be NULL. An add that fails removes what it added and returns the error;
 * a remove cannot fail. Caller holds g->lock for writing. */
static int index_update(graph *g, uint32_t tenant, uint32_t label, const json_t *props,
                        uint32_t keep_label, const json_t *keep_props, uint32_t slot, bool add)
{
    uint8_t key[GRAPH_INDEX_KEY_MAX];
    uint8_t old[GRAPH_INDEX_KEY_MAX];
    const char *name;
    size_t name_len;
    json_t *v;
    json_object_keylen_foreach((json_t *)props, name, name_len, v) {
        size_t klen = index_key(key, tenant, label, name, name_len, v);
        if (klen == 0) {
            continue;
        }
        if (keep_props != NULL && keep_label == label) {
            const json_t *ov = json_object_getn(keep_props, name, name_len);
            size_t olen = ov ? index_key(old, tenant, label, name, name_len, ov) : 0;
            if (olen == klen && memcmp(old, key, klen) == 0) {
                continue;
            }
        }
        if (!add) {
            postings_remove(g, key, klen, slot);
            continue;
        }
        int rc = postings_add(g, key, klen, slot);
        if (rc != STRATA_OK) {
            /* Keys added so far never held slot before (each differs from
             * the kept pair of its name), so removing them all is exact. */
            index_update(g, tenant, label, props, keep_label, keep_props, slot, false);
            return rc;
        }
    }
    return STRATA_OK;
}

/* ======================================================================== */
/* Slots and adjacency                                                       */
/* ======================================================================== */

static size_t node_key(uint8_t *buf, uint32_t tenant, const char *id, size_t id_len)
{
    wire_le32(buf, tenant);
    memcpy(buf + 4, id, id_len);
    return 4 + id_len;
}

uint32_t graph_node_find(const graph *g, uint32_t tenant, const char *id, size_t id_len)
{
    uint8_t key[4 + STRATA_ID_MAX];
    if (tenant == GRAPH_NONE || id_len > STRATA_ID_MAX) {
        return GRAPH_NONE;
    }
    void *v = dict_get(g->node_ids, key, node_key(key, tenant, id, id_len));
    return v ? (uint32_t)((uintptr_t)v - 1) : GRAPH_NONE;
}

/* Room for one more node slot. */
static int node_reserve(graph *g)
{
    if (g->free_node != GRAPH_NONE || g->n_node_slots < g->cap_nodes) {
        return STRATA_OK;
    }
    if (g->n_node_slots >= GRAPH_MAX_NODES) {
        return strata_error(STRATA_ETOOBIG, "graph: more than %u nodes", GRAPH_MAX_NODES);
    }
    uint32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
    cap = STRATA_MIN(cap, GRAPH_MAX_NODES);
    graph_node *nodes = strata_realloc(g->nodes, (size_t)cap * sizeof(*nodes));
    if (nodes == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory growing nodes");
    }
    g->nodes = nodes;
    graph_node_cold *cold = strata_realloc(g->cold, (size_t)cap * sizeof(*cold));
    if (cold == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory growing nodes");
    }
    g->cold = cold;
    g->cap_nodes = cap;
    return STRATA_OK;
}

/* Room for one more edge slot. */
static int edge_reserve(graph *g)
{
    if (g->free_edge != GRAPH_NONE || g->n_edge_slots < g->cap_edges) {
        return STRATA_OK;
    }
    if (g->n_edge_slots >= GRAPH_MAX_EDGES) {
        return strata_error(STRATA_ETOOBIG, "graph: more than %u edge versions", GRAPH_MAX_EDGES);
    }
    uint32_t cap = g->cap_edges ? g->cap_edges * 2 : 256;
    cap = STRATA_MIN(cap, GRAPH_MAX_EDGES);
    graph_edge *edges = strata_realloc(g->edges, (size_t)cap * sizeof(*edges));
    if (edges == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory growing edges");
    }
    g->edges = edges;
    graph_text *props = strata_realloc(g->edge_props, (size_t)cap * sizeof(*props));
    if (props == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory growing edges");
    }
    g->edge_props = props;
    g->cap_edges = cap;
    return STRATA_OK;
}

/* Room for one more entry in l. */
static int adj_reserve(graph_adjlist *l)
{
    if (l->n < l->cap) {
        return STRATA_OK;
    }
    uint32_t cap = l->cap ? l->cap * 2 : 4;
    graph_adj *v = strata_realloc(l->v, (size_t)cap * sizeof(*v));
    if (v == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory growing an adjacency list");
    }
    l->v = v;
    l->cap = cap;
    return STRATA_OK;
}

/* Set the expired bit of edge e's entry in l (O(l->n)). */
static void adj_mark_expired(graph_adjlist *l, uint32_t e)
{
    for (uint32_t i = 0; i < l->n; i++) {
        if ((l->v[i].edge & GRAPH_ADJ_EDGE) == e) {
            l->v[i].edge |= GRAPH_ADJ_EXPIRED;
            return;
        }
    }
}

/* Remove edge e from l (O(l->n)); the order of the rest changes. */
static void adj_remove(graph_adjlist *l, uint32_t e)
{
    for (uint32_t i = 0; i < l->n; i++) {
        if ((l->v[i].edge & GRAPH_ADJ_EDGE) == e) {
            l->v[i] = l->v[--l->n];
            break;
        }
    }
    if (l->n == 0) {
        strata_free(l->v);
        l->v = NULL;
        l->cap = 0;
    }
}

int graph_node_insert(graph *g, uint32_t tenant, uint32_t label, const char *id, size_t id_len,
                      const json_t *props, int64_t created_at, int64_t updated_at,
                      uint32_t *slot_out)
{
    uint8_t key[4 + STRATA_ID_MAX];
    size_t klen = node_key(key, tenant, id, id_len);
    char *id_copy = NULL;
    graph_text text = {NULL, 0};
    int rc = node_reserve(g);
    if (rc == STRATA_OK) {
        rc = text_make(g, props, &text);
    }
    if (rc != STRATA_OK) {
        goto fail;
    }
    id_copy = strata_strndup(id, id_len);
    if (id_copy == NULL) {
        rc = strata_error(STRATA_ENOMEM, "graph: out of memory adding a node");
        goto fail;
    }
    uint32_t slot = g->free_node != GRAPH_NONE ? g->free_node : g->n_node_slots;
    rc = dict_set(g->node_ids, key, klen, (void *)((uintptr_t)slot + 1));
    if (rc != STRATA_OK) {
        goto fail;
    }
    rc = index_update(g, tenant, label, props, 0, NULL, slot, true);
    if (rc != STRATA_OK) {
        dict_delete(g->node_ids, key, klen);
        goto fail;
    }
    /* Commit: nothing below can fail. */
    if (slot == g->free_node) {
        g->free_node = g->nodes[slot].label;
    } else {
        g->n_node_slots++;
    }
    graph_node *n = &g->nodes[slot];
    memset(n, 0, sizeof(*n));
    n->created_at = created_at;
    n->tenant = tenant;
    n->label = label;
    graph_node_cold *c = &g->cold[slot];
    c->id = id_copy;
    c->id_len = (uint32_t)id_len;
    c->props = text;
    c->updated_at = updated_at;
    g->n_nodes++;
    if (slot_out != NULL) {
        *slot_out = slot;
    }
    return STRATA_OK;
fail:
    strata_free(id_copy);
    strata_free(text.p);
    return rc;
}

int graph_edge_insert(graph *g, uint32_t from, uint32_t to, uint32_t type, const json_t *props,
                      const graph_edge *times, uint32_t *slot_out)
{
    graph_text text = {NULL, 0};
    int rc = edge_reserve(g);
    if (rc == STRATA_OK) {
        rc = adj_reserve(&g->nodes[from].out);
    }
    if (rc == STRATA_OK) {
        rc = adj_reserve(&g->nodes[to].in);
    }
    if (rc == STRATA_OK) {
        rc = text_make(g, props, &text);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    uint32_t e;
    if (g->free_edge != GRAPH_NONE) {
        e = g->free_edge;
        g->free_edge = g->edges[e].to;
    } else {
        e = g->n_edge_slots++;
    }
    graph_edge *ed = &g->edges[e];
    *ed = *times;
    ed->from = from;
    ed->to = to;
    ed->type = type;
    ed->reserved = 0;
    g->edge_props[e] = text;
    uint32_t tag = e | (ed->expired_at != 0 ? GRAPH_ADJ_EXPIRED : 0);
    graph_adjlist *out = &g->nodes[from].out;
    out->v[out->n++] = (graph_adj){tag, to};
    graph_adjlist *in = &g->nodes[to].in;
    in->v[in->n++] = (graph_adj){tag, from};
    g->n_edges++;
    if (ed->expired_at == 0) {
        g->n_current++;
    }
    if (slot_out != NULL) {
        *slot_out = e;
    }
    return STRATA_OK;
}

/* Free edge slot e, which the caller has already unlinked from both
 * adjacency lists. */
static void edge_release(graph *g, uint32_t e)
{
    graph_edge *ed = &g->edges[e];
    if (ed->expired_at == 0) {
        g->n_current--;
    }
    strata_free(g->edge_props[e].p);
    g->edge_props[e] = (graph_text){NULL, 0};
    memset(ed, 0, sizeof(*ed));
    ed->from = GRAPH_NONE;
    ed->to = g->free_edge;
    g->free_edge = e;
    g->n_edges--;
}

enum { FIND_CURRENT, FIND_AT, FIND_ANY };

/* An edge slot between from and to of `type` (GRAPH_NONE: any type, FIND_ANY
 * only): FIND_CURRENT the current version, FIND_AT the latest version visible
 * at as_of, FIND_ANY any version. Scans the shorter of out(from), in(to).
 * GRAPH_NONE if none. */
static uint32_t edge_find(const graph *g, uint32_t from, uint32_t to, uint32_t type, int mode,
                          int64_t as_of)
{
    const graph_adjlist *out = &g->nodes[from].out;
    const graph_adjlist *in = &g->nodes[to].in;
    bool use_out = out->n <= in->n;
    const graph_adjlist *l = use_out ? out : in;
    uint32_t want = use_out ? to : from;
    uint32_t best = GRAPH_NONE;
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->v[i].nbr != want) {
            continue;
        }
        uint32_t e = l->v[i].edge & GRAPH_ADJ_EDGE;
        const graph_edge *ed = &g->edges[e];
        if (type != GRAPH_NONE && ed->type != type) {
            continue;
        }
        if (mode == FIND_ANY || (mode == FIND_CURRENT && ed->expired_at == 0)) {
            return e;
        }
        if (mode == FIND_AT && graph_edge_visible(ed, as_of) &&
            (best == GRAPH_NONE || ed->created_at >= g->edges[best].created_at)) {
            best = e;
        }
    }
    return best;
}

uint32_t graph_edge_find_current(const graph *g, uint32_t from, uint32_t to, uint32_t type)
{
    return edge_find(g, from, to, type, FIND_CURRENT, 0);
}

/* ======================================================================== */
/* Nodes                                                                     */
/* ======================================================================== */

int graph_node_put(graph *g, const char *tenant, const char *id, const char *label,
                   const json_t *props, int64_t ts_ms, bool *created)
{
    size_t tlen;
    size_t idlen;
    size_t llen;
    if (created != NULL) {
        *created = false;
    }
    int rc = check_name("tenant", tenant, &tlen);
    if (rc == STRATA_OK) {
        rc = check_name("node id", id, &idlen);
    }
    if (rc == STRATA_OK) {
        rc = check_name("label", label, &llen);
    }
    if (rc == STRATA_OK && ts_ms < 0) {
        rc = strata_error(STRATA_EINVAL, "graph: negative timestamp");
    }
    if (rc == STRATA_OK) {
        rc = graph_props_check(props, false, true);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    json_t *patch = props_copy(props);
    if (patch == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory copying properties");
    }

    json_t *old = NULL;
    json_t *merged = NULL;
    graph_wrlock(g);
    uint32_t t;
    uint32_t lab;
    rc = graph_names_intern(&g->tenants, tenant, tlen, &t);
    if (rc == STRATA_OK) {
        rc = graph_names_intern(&g->labels, label, llen, &lab);
    }
    if (rc != STRATA_OK) {
        goto out;
    }
    uint32_t slot = graph_node_find(g, t, id, idlen);
    if (slot == GRAPH_NONE) {
        props_strip_nulls(patch);
        rc = graph_node_insert(g, t, lab, id, idlen, patch, ts_ms, ts_ms, NULL);
        if (rc == STRATA_OK && created != NULL) {
            *created = true;
        }
        goto out;
    }
    graph_node *n = &g->nodes[slot];
    graph_node_cold *c = &g->cold[slot];
    old = text_parse(c->props.p, c->props.len);
    merged = old ? props_merge(old, patch) : NULL;
    if (merged == NULL) {
        rc = strata_error(STRATA_ENOMEM, "graph: out of memory merging properties");
        goto out;
    }
    graph_text text;
    rc = text_make(g, merged, &text);
    if (rc != STRATA_OK) {
        goto out;
    }
    rc = index_update(g, t, lab, merged, n->label, old, slot, true);
    if (rc != STRATA_OK) {
        strata_free(text.p);
        goto out;
    }
    index_update(g, t, n->label, old, lab, merged, slot, false);
    strata_free(c->props.p);
    c->props = text;
    c->updated_at = ts_ms;
    n->label = lab;
out:
    graph_unlock(g);
    json_decref(patch);
    json_decref(old);
    json_decref(merged);
    return rc;
}

/* Validate (tenant, id), take the lock (write or read) and find the node.
 * On success the lock is held and *slot_out / *tenant_out are set; on failure
 * (bad name, STRATA_ENOTFOUND) it is not. */
static int node_open(graph *g, bool write, const char *tenant, const char *id,
                     uint32_t *tenant_out, uint32_t *slot_out)
{
    size_t tlen;
    size_t idlen;
    int rc = check_name("tenant", tenant, &tlen);
    if (rc == STRATA_OK) {
        rc = check_name("node id", id, &idlen);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    if (write) {
        graph_wrlock(g);
    } else {
        graph_rdlock(g);
    }
    uint32_t t = graph_names_find(&g->tenants, tenant, tlen);
    uint32_t slot = graph_node_find(g, t, id, idlen);
    if (slot == GRAPH_NONE) {
        graph_unlock(g);
        return strata_error(STRATA_ENOTFOUND, "graph: no node %s", id);
    }
    *tenant_out = t;
    *slot_out = slot;
    return STRATA_OK;
}

int graph_node_get(graph *g, const char *tenant, const char *id, graph_node_info *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t t;
    uint32_t slot;
    int rc = node_open(g, false, tenant, id, &t, &slot);
    if (rc != STRATA_OK) {
        return rc;
    }
    const graph_node *n = &g->nodes[slot];
    const graph_node_cold *c = &g->cold[slot];
    char *text;
    bool text_ok = text_copy(&c->props, &text);
    size_t text_len = c->props.len;
    out->id = strata_strndup(c->id, c->id_len);
    out->label = strata_strdup(g->labels.names[n->label]);
    out->created_at = n->created_at;
    out->updated_at = c->updated_at;
    graph_unlock(g);
    out->props = text_ok ? text_parse(text, text_len) : NULL;
    strata_free(text);
    if (out->id == NULL || out->label == NULL || out->props == NULL) {
        graph_node_info_free(out);
        return strata_error(STRATA_ENOMEM, "graph: out of memory copying a node");
    }
    return STRATA_OK;
}

void graph_node_info_free(graph_node_info *info)
{
    if (info == NULL) {
        return;
    }
    strata_free(info->id);
    strata_free(info->label);
    json_decref(info->props);
    memset(info, 0, sizeof(*info));
}

int graph_node_delete(graph *g, const char *tenant, const char *id, size_t *n_edges_out)
{
    if (n_edges_out != NULL) {
        *n_edges_out = 0;
    }
    uint32_t t;
    uint32_t slot;
    int rc = node_open(g, true, tenant, id, &t, &slot);
    if (rc != STRATA_OK) {
        return rc;
    }
    size_t idlen = strlen(id);
    graph_node *n = &g->nodes[slot];
    graph_node_cold *c = &g->cold[slot];
    /* Parsed first: the only step that can fail, before anything changes. */
    json_t *props = text_parse(c->props.p, c->props.len);
    if (props == NULL) {
        graph_unlock(g);
        return strata_error(STRATA_ENOMEM, "graph: out of memory deleting a node");
    }
    size_t removed = 0;
    /* A self-loop sits in both out and in of this node: freed via out, and
     * skipped (by nbr == slot) when walking in. */
    for (uint32_t i = 0; i < n->out.n; i++) {
        graph_adj a = n->out.v[i];
        uint32_t e = a.edge & GRAPH_ADJ_EDGE;
        if (a.nbr != slot) {
            adj_remove(&g->nodes[a.nbr].in, e);
        }
        edge_release(g, e);
        removed++;
    }
    for (uint32_t i = 0; i < n->in.n; i++) {
        graph_adj a = n->in.v[i];
        uint32_t e = a.edge & GRAPH_ADJ_EDGE;
        if (a.nbr == slot) {
            continue;
        }
        adj_remove(&g->nodes[a.nbr].out, e);
        edge_release(g, e);
        removed++;
    }
    strata_free(n->out.v);
    strata_free(n->in.v);
    index_update(g, t, n->label, props, 0, NULL, slot, false);
    json_decref(props);
    uint8_t key[4 + STRATA_ID_MAX];
    dict_delete(g->node_ids, key, node_key(key, t, id, idlen));
    strata_free(c->id);
    strata_free(c->props.p);
    memset(c, 0, sizeof(*c));
    memset(n, 0, sizeof(*n));
    n->tenant = GRAPH_NONE;
    n->label = g->free_node;
    g->free_node = slot;
    g->n_nodes--;
    graph_unlock(g);
    if (n_edges_out != NULL) {
        *n_edges_out = removed;
    }
    return STRATA_OK;
}

int graph_node_purge(graph *g, const char *tenant, const char *id, size_t *n_edges_out)
{
    return graph_node_delete(g, tenant, id, n_edges_out);
}

/* ======================================================================== */
/* Edges                                                                     */
/* ======================================================================== */

/* Validate the four names of an edge key; type may be NULL when type_optional. */
static int check_edge_key(const char *tenant, const char *from, const char *to,
                          const char *type, bool type_optional, size_t lens[4])
{
    int rc = check_name("tenant", tenant, &lens[0]);
    if (rc == STRATA_OK) {
        rc = check_name("from", from, &lens[1]);
    }
    if (rc == STRATA_OK) {
        rc = check_name("to", to, &lens[2]);
    }
    lens[3] = 0;
    if (rc == STRATA_OK && !(type_optional && type == NULL)) {
        rc = check_name("edge type", type, &lens[3]);
    }
    return rc;
}

/* Resolve the two ends. Caller holds g->lock. */
static int edge_ends(const graph *g, const char *tenant, const char *from, const char *to,
                     const size_t lens[4], uint32_t *fi, uint32_t *ti)
{
    uint32_t t = graph_names_find(&g->tenants, tenant, lens[0]);
    *fi = graph_node_find(g, t, from, lens[1]);
    if (*fi == GRAPH_NONE) {
        return strata_error(STRATA_ENOTFOUND, "graph: edge source node %s does not exist", from);
    }
    *ti = graph_node_find(g, t, to, lens[2]);
    if (*ti == GRAPH_NONE) {
        return strata_error(STRATA_ENOTFOUND, "graph: edge target node %s does not exist", to);
    }
    return STRATA_OK;
}

int graph_edge_put(graph *g, const char *tenant, const char *from, const char *to,
                   const char *type, const json_t *props, int64_t valid_from_ms,
                   int64_t ts_ms, bool *created)
{
    size_t lens[4];
    if (created != NULL) {
        *created = false;
    }
    int rc = check_edge_key(tenant, from, to, type, false, lens);
    if (rc == STRATA_OK && (ts_ms < 0 || valid_from_ms < 0)) {
        rc = strata_error(STRATA_EINVAL, "graph: negative timestamp");
    }
    if (rc == STRATA_OK) {
        rc = graph_props_check(props, true, true);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    json_t *patch = props_copy(props);
    if (patch == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory copying properties");
    }

    json_t *old = NULL;
    json_t *merged = NULL;
    graph_wrlock(g);
    uint32_t fi;
    uint32_t ti;
    uint32_t ty;
    rc = edge_ends(g, tenant, from, to, lens, &fi, &ti);
    if (rc == STRATA_OK) {
        rc = graph_names_intern(&g->types, type, lens[3], &ty);
    }
    if (rc != STRATA_OK) {
        goto out;
    }
    uint32_t e = edge_find(g, fi, ti, ty, FIND_CURRENT, 0);
    if (e != GRAPH_NONE) {
        old = text_parse(g->edge_props[e].p, g->edge_props[e].len);
        merged = old ? props_merge(old, patch) : NULL;
        if (merged == NULL) {
            rc = strata_error(STRATA_ENOMEM, "graph: out of memory merging properties");
            goto out;
        }
        graph_text text;
        rc = text_make(g, merged, &text);
        if (rc == STRATA_OK) {
            strata_free(g->edge_props[e].p);
            g->edge_props[e] = text;
        }
        goto out;
    }
    props_strip_nulls(patch);
    graph_edge times = {0};
    times.valid_from = valid_from_ms ? valid_from_ms : ts_ms;
    times.created_at = ts_ms;
    rc = graph_edge_insert(g, fi, ti, ty, patch, &times, NULL);
    if (rc == STRATA_OK && created != NULL) {
        *created = true;
    }
out:
    graph_unlock(g);
    json_decref(patch);
    json_decref(old);
    json_decref(merged);
    return rc;
}

int graph_edge_expire(graph *g, const char *tenant, const char *from, const char *to,
                      const char *type, int64_t ts_ms)
{
    size_t lens[4];
    int rc = check_edge_key(tenant, from, to, type, false, lens);
    if (rc == STRATA_OK && ts_ms <= 0) {
        rc = strata_error(STRATA_EINVAL, "graph: expiry time must be positive");
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    graph_wrlock(g);
    uint32_t fi;
    uint32_t ti;
    rc = edge_ends(g, tenant, from, to, lens, &fi, &ti);
    if (rc == STRATA_OK) {
        uint32_t ty = graph_names_find(&g->types, type, lens[3]);
        uint32_t e = ty == GRAPH_NONE ? GRAPH_NONE : edge_find(g, fi, ti, ty, FIND_CURRENT, 0);
        if (e == GRAPH_NONE) {
            rc = strata_error(STRATA_ENOTFOUND, "graph: no current %s edge %s -> %s", type, from,
                              to);
        } else if (ts_ms < g->edges[e].created_at) {
            rc = strata_error(STRATA_EINVAL, "graph: expiry before the edge was created");
        } else {
            graph_edge *ed = &g->edges[e];
            ed->expired_at = ts_ms;
            if (ed->valid_to == 0) {
                ed->valid_to = ts_ms;
            }
            adj_mark_expired(&g->nodes[fi].out, e);
            adj_mark_expired(&g->nodes[ti].in, e);
            g->n_current--;
        }
    }
    graph_unlock(g);
    return rc;
}

int graph_edge_purge(graph *g, const char *tenant, const char *from, const char *to,
                     const char *type, size_t *n_out)
{
    size_t lens[4];
    if (n_out != NULL) {
        *n_out = 0;
    }
    int rc = check_edge_key(tenant, from, to, type, true, lens);
    if (rc != STRATA_OK) {
        return rc;
    }
    graph_wrlock(g);
    uint32_t fi;
    uint32_t ti;
    size_t removed = 0;
    rc = edge_ends(g, tenant, from, to, lens, &fi, &ti);
    if (rc == STRATA_OK) {
        uint32_t ty = type ? graph_names_find(&g->types, type, lens[3]) : GRAPH_NONE;
        if (type == NULL || ty != GRAPH_NONE) {
            /* Few versions per key: rescanning after each removal is fine. */
            uint32_t e;
            while ((e = edge_find(g, fi, ti, ty, FIND_ANY, 0)) != GRAPH_NONE) {
                adj_remove(&g->nodes[fi].out, e);
                adj_remove(&g->nodes[ti].in, e);
                edge_release(g, e);
                removed++;
            }
        }
    }
    graph_unlock(g);
    if (n_out != NULL) {
        *n_out = removed;
    }
    return rc;
}

int graph_edge_get(graph *g, const char *tenant, const char *from, const char *to,
                   const char *type, int64_t as_of_ms, graph_edge_info *out)
{
    size_t lens[4];
    memset(out, 0, sizeof(*out));
    int rc = check_edge_key(tenant, from, to, type, false, lens);
    if (rc == STRATA_OK && as_of_ms < 0) {
        rc = strata_error(STRATA_EINVAL, "graph: negative as_of");
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    char *text = NULL;
    size_t text_len = 0;
    graph_rdlock(g);
    uint32_t fi;
    uint32_t ti;
    rc = edge_ends(g, tenant, from, to, lens, &fi, &ti);
    if (rc == STRATA_OK) {
        uint32_t ty = graph_names_find(&g->types, type, lens[3]);
        uint32_t e = ty == GRAPH_NONE ? GRAPH_NONE
                                      : edge_find(g, fi, ti, ty, as_of_ms ? FIND_AT : FIND_CURRENT,
                                                  as_of_ms);
        if (e == GRAPH_NONE) {
            rc = strata_error(STRATA_ENOTFOUND, "graph: no %s edge %s -> %s", type, from, to);
        } else {
            const graph_edge *ed = &g->edges[e];
            out->valid_from = ed->valid_from;
            out->valid_to = ed->valid_to;
            out->created_at = ed->created_at;
            out->expired_at = ed->expired_at;
            text_len = g->edge_props[e].len;
            if (!text_copy(&g->edge_props[e], &text)) {
                rc = strata_error(STRATA_ENOMEM, "graph: out of memory copying an edge");
            }
        }
    }
    graph_unlock(g);
    if (rc == STRATA_OK) {
        out->props = text_parse(text, text_len);
        if (out->props == NULL) {
            rc = strata_error(STRATA_ENOMEM, "graph: out of memory copying an edge");
        }
    }
    strata_free(text);
    if (rc != STRATA_OK) {
        graph_edge_info_free(out);
    }
    return rc;
}

void graph_edge_info_free(graph_edge_info *info)
{
    if (info == NULL) {
        return;
    }
    json_decref(info->props);
    memset(info, 0, sizeof(*info));
}

/* ======================================================================== */
/* Lookups                                                                   */
/* ======================================================================== */

static int ids_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy the ids of n slots into out (sorted). Caller holds g->lock. */
static int ids_copy(const graph *g, const uint32_t *slots, size_t n, graph_ids *out)
{
    if (n == 0) {
        return STRATA_OK;
    }
    out->ids = strata_calloc(n, sizeof(*out->ids));
    if (out->ids == NULL) {
        return strata_error(STRATA_ENOMEM, "graph: out of memory listing nodes");
    }
    for (size_t i = 0; i < n; i++) {
        const graph_node_cold *c = &g->cold[slots[i]];
        out->ids[i] = strata_strndup(c->id, c->id_len);
        if (out->ids[i] == NULL) {
            out->n = i;
            graph_ids_free(out);
            return strata_error(STRATA_ENOMEM, "graph: out of memory listing nodes");
        }
    }
    out->n = n;
    return STRATA_OK;
}

int graph_find_nodes(graph *g, const char *tenant, const char *label, const char *prop,
                     const json_t *value, graph_ids *out)
{
    size_t tlen;
    size_t llen;
    uint8_t key[GRAPH_INDEX_KEY_MAX];
    memset(out, 0, sizeof(*out));
    int rc = check_name("tenant", tenant, &tlen);
    if (rc == STRATA_OK) {
        rc = check_name("label", label, &llen);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    size_t plen = prop ? strnlen(prop, GRAPH_INDEX_PROP_MAX + 1) : 0;
    if (prop == NULL || value == NULL || index_key(key, 0, 0, prop, plen, value) == 0) {
        return strata_error(STRATA_EINVAL,
                            "graph: lookups need a property name of at most %d bytes and a "
                            "string (<= %d bytes), number or boolean value",
                            GRAPH_INDEX_PROP_MAX, GRAPH_INDEX_VALUE_MAX);
    }
    graph_rdlock(g);
    uint32_t t = graph_names_find(&g->tenants, tenant, tlen);
    uint32_t lab = graph_names_find(&g->labels, label, llen);
    if (t != GRAPH_NONE && lab != GRAPH_NONE) {
        size_t klen = index_key(key, t, lab, prop, plen, value);
        const graph_postings *ps = dict_get(g->index, key, klen);
        if (ps != NULL) {
            rc = ids_copy(g, ps->v, ps->n, out);
        }
    }
    graph_unlock(g);
    if (rc == STRATA_OK && out->n > 1) {
        qsort(out->ids, out->n, sizeof(*out->ids), ids_cmp);
    }
    return rc;
}

int graph_node_list(graph *g, const char *tenant, graph_ids *out)
{
    size_t tlen;
    memset(out, 0, sizeof(*out));
    int rc = check_name("tenant", tenant, &tlen);
    if (rc != STRATA_OK) {
        return rc;
    }
    graph_rdlock(g);
    uint32_t t = graph_names_find(&g->tenants, tenant, tlen);
    uint32_t *slots = NULL;
    size_t n = 0;
    if (t != GRAPH_NONE && g->n_nodes > 0) {
        slots = strata_malloc((size_t)g->n_nodes * sizeof(*slots));
        if (slots == NULL) {
            rc = strata_error(STRATA_ENOMEM, "graph: out of memory listing nodes");
        }
        for (uint32_t i = 0; slots != NULL && i < g->n_node_slots; i++) {
            if (g->nodes[i].tenant == t) {
                slots[n++] = i;
            }
        }
    }
    if (rc == STRATA_OK) {
        rc = ids_copy(g, slots, n, out);
    }
    graph_unlock(g);
    strata_free(slots);
    if (rc == STRATA_OK && out->n > 1) {
        qsort(out->ids, out->n, sizeof(*out->ids), ids_cmp);
    }
    return rc;
}

int graph_neighbors(graph *g, const char *tenant, const char *id, graph_ids *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t t;
    uint32_t slot;
    int rc = node_open(g, false, tenant, id, &t, &slot);
    if (rc != STRATA_OK) {
        return rc;
    }
    const graph_node *n = &g->nodes[slot];
    size_t cap = (size_t)n->out.n + n->in.n;
    uint32_t *slots = cap ? strata_malloc(cap * sizeof(*slots)) : NULL;
    size_t k = 0;
    if (cap > 0 && slots == NULL) {
        rc = strata_error(STRATA_ENOMEM, "graph: out of memory listing neighbours");
    }
    for (int dir = 0; slots != NULL && dir < 2; dir++) {
        const graph_adjlist *l = dir == 0 ? &n->out : &n->in;
        for (uint32_t i = 0; i < l->n; i++) {
            uint32_t nbr = l->v[i].nbr;
            bool seen = nbr == slot;
            for (size_t j = 0; j < k && !seen; j++) {
                seen = slots[j] == nbr;
            }
            if (!seen) {
                slots[k++] = nbr;
            }
        }
    }
    if (rc == STRATA_OK) {
        rc = ids_copy(g, slots, k, out);
    }
    graph_unlock(g);
    strata_free(slots);
    if (rc == STRATA_OK && out->n > 1) {
        qsort(out->ids, out->n, sizeof(*out->ids), ids_cmp);
    }
    return rc;
}

void graph_ids_free(graph_ids *ids)
{
    if (ids == NULL) {
        return;
    }
    for (size_t i = 0; i < ids->n; i++) {
        strata_free(ids->ids[i]);
    }
    strata_free(ids->ids);
    ids->ids = NULL;
    ids->n = 0;
}

/* ======================================================================== */
/* Statistics and checks                                                     */
/* ======================================================================== */

void graph_stats_get(graph *g, graph_stats *out)
{
    graph_rdlock(g);
    out->nodes = g->n_nodes;
    out->edges = g->n_edges;
    out->current_edges = g->n_current;
    out->tenants = g->tenants.n;
    out->labels = g->labels.n;
    out->types = g->types.n;
    out->index_keys = dict_size(g->index);
    graph_unlock(g);
}

static int check_names(const graph_names *t, const char *what)
{
    if (dict_size(t->ids) != t->n) {
        return strata_error(STRATA_ECORRUPT, "graph check: %s table size", what);
    }
    for (uint32_t i = 0; i < t->n; i++) {
        if (strlen(t->names[i]) != t->lens[i] ||
            graph_names_find(t, t->names[i], t->lens[i]) != i) {
            return strata_error(STRATA_ECORRUPT, "graph check: %s %u", what, i);
        }
    }
    return STRATA_OK;
}

/* A stored property text parses to a valid object and is canonical. *out
 * (may be NULL) receives the object. STRATA_OK, ECORRUPT or ENOMEM. */
static int check_text(const graph_text *t, bool is_edge, json_t **out)
{
    json_t *v = text_parse(t->p, t->len);
    if (v == NULL && t->p != NULL) {
        json_error_t err;
        json_t *again = json_loadb(t->p, t->len, JSON_ALLOW_NUL, &err);
        json_decref(again);
        if (json_error_code(&err) != json_error_out_of_memory) {
            return strata_error(STRATA_ECORRUPT, "graph check: property text does not parse");
        }
    }
    if (v == NULL) {
        return strata_error(STRATA_ENOMEM, "graph check: out of memory");
    }
    int rc = STRATA_OK;
    if (graph_props_check(v, is_edge, false) != STRATA_OK ||
        (t->p == NULL) != (json_object_size(v) == 0)) {
        rc = strata_error(STRATA_ECORRUPT, "graph check: bad property object");
    }
    sbuf b;
    sbuf_init(&b, GRAPH_PROPS_MAX_BYTES);
    if (rc == STRATA_OK && t->p != NULL) {
        rc = graph_json_write(&b, v);
        if (rc == STRATA_OK && (b.len != t->len || memcmp(b.data, t->p, b.len) != 0)) {
            rc = strata_error(STRATA_ECORRUPT, "graph check: property text not canonical");
        }
    }
    sbuf_free(&b);
    if (rc == STRATA_OK && out != NULL) {
        *out = v;
    } else {
        json_decref(v);
    }
    return rc;
}

/* Nodes, adjacency and edges. Caller holds g->lock. */
static int check_structure(const graph *g)
{
    uint32_t free_nodes = 0;
    for (uint32_t s = g->free_node; s != GRAPH_NONE; s = g->nodes[s].label) {
        if (s >= g->n_node_slots || g->nodes[s].tenant != GRAPH_NONE ||
            ++free_nodes > g->n_node_slots) {
            return strata_error(STRATA_ECORRUPT, "graph check: node free chain");
        }
    }
    if (free_nodes + g->n_nodes != g->n_node_slots || dict_size(g->node_ids) != g->n_nodes) {
        return strata_error(STRATA_ECORRUPT, "graph check: node counts");
    }
    uint64_t n_out = 0;
    uint64_t n_in = 0;
    for (uint32_t s = 0; s < g->n_node_slots; s++) {
        const graph_node *n = &g->nodes[s];
        const graph_node_cold *c = &g->cold[s];
        if (n->tenant == GRAPH_NONE) {
            continue;
        }
        if (n->tenant >= g->tenants.n || n->label >= g->labels.n ||
            graph_node_find(g, n->tenant, c->id, c->id_len) != s) {
            return strata_error(STRATA_ECORRUPT, "graph check: node %u", s);
        }
        int rc = check_text(&c->props, false, NULL);
        if (rc != STRATA_OK) {
            return rc;
        }
        for (int dir = 0; dir < 2; dir++) {
            const graph_adjlist *l = dir == 0 ? &n->out : &n->in;
            for (uint32_t i = 0; i < l->n; i++) {
                uint32_t e = l->v[i].edge & GRAPH_ADJ_EDGE;
                bool expired = (l->v[i].edge & GRAPH_ADJ_EXPIRED) != 0;
                bool ok = e < g->n_edge_slots;
                if (ok) {
                    const graph_edge *ed = &g->edges[e];
                    ok = ed->from != GRAPH_NONE && expired == (ed->expired_at != 0) &&
                         (dir == 0 ? ed->from == s && ed->to == l->v[i].nbr
                                   : ed->to == s && ed->from == l->v[i].nbr);
                }
                if (!ok) {
                    return strata_error(STRATA_ECORRUPT, "graph check: adjacency of node %u", s);
                }
            }
            *(dir == 0 ? &n_out : &n_in) += l->n;
        }
    }
    uint32_t live = 0;
    uint32_t current = 0;
    for (uint32_t e = 0; e < g->n_edge_slots; e++) {
        const graph_edge *ed = &g->edges[e];
        if (ed->from == GRAPH_NONE) {
            continue;
        }
        live++;
        if (ed->to >= g->n_node_slots || ed->from >= g->n_node_slots ||
            g->nodes[ed->from].tenant == GRAPH_NONE ||
            g->nodes[ed->from].tenant != g->nodes[ed->to].tenant || ed->type >= g->types.n) {
            return strata_error(STRATA_ECORRUPT, "graph check: edge %u", e);
        }
        int rc = check_text(&g->edge_props[e], true, NULL);
        if (rc != STRATA_OK) {
            return rc;
        }
        if (ed->expired_at == 0) {
            current++;
            if (edge_find(g, ed->from, ed->to, ed->type, FIND_CURRENT, 0) != e) {
                return strata_error(STRATA_ECORRUPT, "graph check: two current versions");
            }
        }
    }
    if (live != g->n_edges || current != g->n_current || n_out != live || n_in != live) {
        return strata_error(STRATA_ECORRUPT, "graph check: edge counts");
    }
    return STRATA_OK;
}

/* Every indexable pair of every node is in its list, and nothing else is. */
static int check_index(const graph *g)
{
    uint64_t expected = 0;
    uint8_t key[GRAPH_INDEX_KEY_MAX];
    for (uint32_t s = 0; s < g->n_node_slots; s++) {
        const graph_node *n = &g->nodes[s];
        if (n->tenant == GRAPH_NONE) {
            continue;
        }
        json_t *props;
        int rc = check_text(&g->cold[s].props, false, &props);
        if (rc != STRATA_OK) {
            return rc;
        }
        const char *name;
        size_t name_len;
        json_t *v;
        json_object_keylen_foreach(props, name, name_len, v) {
            size_t klen = index_key(key, n->tenant, n->label, name, name_len, v);
            if (klen == 0) {
                continue;
            }
            expected++;
            const graph_postings *ps = dict_get(g->index, key, klen);
            bool found = false;
            for (uint32_t i = 0; ps != NULL && i < ps->n && !found; i++) {
                found = ps->v[i] == s;
            }
            if (!found) {
                json_decref(props);
                return strata_error(STRATA_ECORRUPT, "graph check: node %u not indexed", s);
            }
        }
        json_decref(props);
    }
    uint64_t total = 0;
    dict_iter it;
    void *val;
    dict_iter_init(&it, g->index);
    while (dict_next(&it, NULL, NULL, &val)) {
        const graph_postings *ps = val;
        if (ps->n == 0) {
            return strata_error(STRATA_ECORRUPT, "graph check: empty posting list");
        }
        total += ps->n;
    }
    if (total != expected) {
        return strata_error(STRATA_ECORRUPT, "graph check: index holds stale entries");
    }
    return STRATA_OK;
}

int graph_check(graph *g)
{
    graph_rdlock(g);
    int rc = check_names(&g->tenants, "tenant");
    if (rc == STRATA_OK) {
        rc = check_names(&g->labels, "label");
    }
    if (rc == STRATA_OK) {
        rc = check_names(&g->types, "type");
    }
    if (rc == STRATA_OK) {
        rc = check_structure(g);
    }
    if (rc == STRATA_OK) {
        rc = check_index(g);
    }
    graph_unlock(g);
    return rc;
}
