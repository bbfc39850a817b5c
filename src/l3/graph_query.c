/*
 * graph_query.c - bounded breadth-first subgraph queries over the L3 store,
 * and their JSON form.
 *
 * A query runs entirely under the read lock, in three passes over flat
 * arrays borrowed from a scratch area (graph_int.h):
 *
 *   1. BFS      order[] is the FIFO queue: level d occupies a contiguous
 *               run, so no separate frontier array is needed. For current
 *               reads of all types an adjacency entry alone decides (its
 *               expired bit, then the generation-tagged mark[] of its
 *               neighbour): no edge record is loaded. Otherwise the edge's
 *               visibility and type, and for as_of reads the node's
 *               created_at, are checked too. Stops at the limit.
 *   2. edges    for every returned node, its out-list: an entry whose
 *               neighbour is marked, visible and of an allowed type is an
 *               edge of the result. Each edge has exactly one out entry, so
 *               it is found once, whatever the traversal direction.
 *   3. copy     ids, labels, types and property texts into one string block
 *               (labels and types through a tiny cache, since few distinct
 *               ones repeat): a result is self-contained and costs four
 *               allocations whatever its size.
 *
 * Scratch areas live in a small pool under g->scratch_lock, so concurrent
 * readers each get their own; the marks are never cleared, only the
 * generation advances (a wrap to 0 clears once every 2^32 queries).
 */
#include <assert.h>
#include <string.h>

#include "l3/graph_int.h"

#define SCRATCH_POOL_MAX 8      /* idle scratch areas kept; more are freed */
#define NAME_CACHE 64           /* direct-mapped label/type offset cache */

/* ======================================================================== */
/* Scratch pool                                                              */
/* ======================================================================== */

static void scratch_free(graph_scratch *s)
{
    if (s != NULL) {
        strata_free(s->mark);
        strata_free(s->order);
        strata_free(s->depth);
        strata_free(s->found);
        strata_free(s);
    }
}

/* A scratch area whose marks cover every node slot and whose queue holds
 * `order_need` entries, with a fresh generation. Caller holds g->lock (so
 * n_node_slots is stable). NULL on ENOMEM. */
static graph_scratch *scratch_get(graph *g, size_t order_need)
{
    pthread_mutex_lock(&g->scratch_lock);
    graph_scratch *s = g->scratch;
    if (s != NULL) {
        g->scratch = s->next;
        g->n_scratch--;
    }
    pthread_mutex_unlock(&g->scratch_lock);
    if (s == NULL) {
        s = strata_calloc(1, sizeof(*s));
        if (s == NULL) {
            return NULL;
        }
    }
    if (s->n_mark < g->n_node_slots) {
        /* Some headroom so a growing store does not realloc every query. */
        uint32_t n = g->n_node_slots + g->n_node_slots / 8 + 64;
        graph_mark *m = strata_realloc(s->mark, (size_t)n * sizeof(*m));
        if (m == NULL) {
            scratch_free(s);
            return NULL;
        }
        memset(m + s->n_mark, 0, (size_t)(n - s->n_mark) * sizeof(*m));
        s->mark = m;
        s->n_mark = n;
    }
    if (s->order_cap < order_need) {
        uint32_t *order = strata_realloc(s->order, order_need * sizeof(*order));
        if (order == NULL) {
            scratch_free(s);
            return NULL;
        }
        s->order = order;
        uint32_t *depth = strata_realloc(s->depth, order_need * sizeof(*depth));
        if (depth == NULL) {
            scratch_free(s);
            return NULL;
        }
        s->depth = depth;
        s->order_cap = order_need;
    }
    s->gen++;
    if (s->gen == 0) {
        memset(s->mark, 0, (size_t)s->n_mark * sizeof(*s->mark));
        s->gen = 1;
    }
    return s;
}

static void scratch_put(graph *g, graph_scratch *s)
{
    pthread_mutex_lock(&g->scratch_lock);
    if (g->n_scratch < SCRATCH_POOL_MAX) {
        s->next = g->scratch;
        g->scratch = s;
        g->n_scratch++;
        s = NULL;
    }
    pthread_mutex_unlock(&g->scratch_lock);
    scratch_free(s);
}

/* ======================================================================== */
/* Traversal                                                                 */
/* ======================================================================== */

typedef struct bfs_filter {
    uint32_t types[GRAPH_MAX_QUERY_TYPES];  /* resolved type ids */
    size_t n_types;
    bool any_type;              /* no type filter */
    int64_t as_of;              /* 0: now */
} bfs_filter;

static inline bool type_ok(const bfs_filter *f, uint32_t type)
{
    if (f->any_type) {
        return true;
    }
    for (size_t i = 0; i < f->n_types; i++) {
        if (f->types[i] == type) {
            return true;
        }
    }
    return false;
}

/* Visit v at `depth` unless the limit is reached (returns false then). The
 * node record is prefetched: the next level or collect_edges reads it. */
static inline bool bfs_visit(const graph *g, graph_scratch *s, uint32_t v, size_t *n,
                             size_t limit, uint32_t depth)
{
    if (*n == limit) {
        return false;
    }
    __builtin_prefetch(&g->nodes[v]);
    s->mark[v].gen = s->gen;
    s->mark[v].pos = (uint32_t)*n;
    s->order[*n] = v;
    s->depth[*n] = depth;
    (*n)++;
    return true;
}

/* Queue the unvisited neighbours in l at `depth`, following current edges of
 * any type: adjacency entries and marks only. Returns false when the node
 * limit left out a reachable node. */
static bool bfs_expand_current(const graph *g, graph_scratch *s, const graph_adjlist *l,
                               size_t *n, size_t limit, uint32_t depth)
{
    const graph_adj *a = l->v;
    const uint32_t gen = s->gen;
    for (uint32_t i = 0; i < l->n; i++) {
        if ((a[i].edge & GRAPH_ADJ_EXPIRED) || s->mark[a[i].nbr].gen == gen) {
            continue;
        }
        if (!bfs_visit(g, s, a[i].nbr, n, limit, depth)) {
            return false;
        }
    }
    return true;
}

/* The same with a type filter or an as_of time: edge records are read. */
static bool bfs_expand_filtered(const graph *g, graph_scratch *s, const graph_adjlist *l,
                                const bfs_filter *f, size_t *n, size_t limit, uint32_t depth)
{
    const graph_adj *a = l->v;
    const uint32_t gen = s->gen;
    for (uint32_t i = 0; i < l->n; i++) {
        uint32_t v = a[i].nbr;
        if (s->mark[v].gen == gen || (f->as_of == 0 && (a[i].edge & GRAPH_ADJ_EXPIRED))) {
            continue;
        }
        const graph_edge *ed = &g->edges[a[i].edge & GRAPH_ADJ_EDGE];
        if (!graph_edge_visible(ed, f->as_of) || !type_ok(f, ed->type)) {
            continue;
        }
        if (f->as_of != 0 && g->nodes[v].created_at > f->as_of) {
            continue;
        }
        if (!bfs_visit(g, s, v, n, limit, depth)) {
            return false;
        }
    }
    return true;
}

static bool bfs_expand(const graph *g, graph_scratch *s, const graph_adjlist *l,
                       const bfs_filter *f, size_t *n, size_t limit, uint32_t depth)
{
    if (f->as_of == 0 && f->any_type) {
        return bfs_expand_current(g, s, l, n, limit, depth);
    }
    return bfs_expand_filtered(g, s, l, f, n, limit, depth);
}

/* Breadth-first from order[0] up to max_depth hops. Returns the node count;
 * *truncated when the limit cut a reachable node. */
static size_t bfs_run(const graph *g, graph_scratch *s, const bfs_filter *f, graph_dir dir,
                      int max_depth, size_t limit, bool *truncated)
{
    size_t n = 1;
    size_t level_start = 0;
    *truncated = false;
    for (int d = 0; d < max_depth; d++) {
        size_t level_end = n;
        for (size_t i = level_start; i < level_end; i++) {
            const graph_node *u = &g->nodes[s->order[i]];
            bool ok = true;
            if (dir != GRAPH_DIR_IN) {
                ok = bfs_expand(g, s, &u->out, f, &n, limit, (uint32_t)d + 1);
            }
            if (ok && dir != GRAPH_DIR_OUT) {
                ok = bfs_expand(g, s, &u->in, f, &n, limit, (uint32_t)d + 1);
            }
            if (!ok) {
                *truncated = true;
                return n;
            }
        }
        if (level_end == n) {
            break; /* nothing new: deeper levels would be empty */
        }
        level_start = level_end;
    }
    return n;
}

/* Collect into s->found every visible, allowed edge between two of the n
 * returned nodes. Returns the count, or SIZE_MAX on ENOMEM. For current
 * reads of all types the adjacency entries decide alone, and each edge
 * record found is prefetched for result_build. The loop is memory-bound:
 * node records and out-arrays are prefetched a few nodes ahead. */
static size_t collect_edges(const graph *g, graph_scratch *s, const bfs_filter *f, size_t n)
{
    size_t k = 0;
    const uint32_t gen = s->gen;
    const bool fast = f->as_of == 0 && f->any_type;
    for (size_t i = 0; i < n; i++) {
        if (i + 8 < n) {
            __builtin_prefetch(&g->nodes[s->order[i + 8]]);
        }
        if (i + 4 < n) {
            __builtin_prefetch(g->nodes[s->order[i + 4]].out.v);
        }
        const graph_adjlist *l = &g->nodes[s->order[i]].out;
        for (uint32_t j = 0; j < l->n; j++) {
            if (s->mark[l->v[j].nbr].gen != gen ||
                (f->as_of == 0 && (l->v[j].edge & GRAPH_ADJ_EXPIRED))) {
                continue;
            }
            uint32_t e = l->v[j].edge & GRAPH_ADJ_EDGE;
            const graph_edge *ed = &g->edges[e];
            if (fast) {
                __builtin_prefetch(ed);
            } else if (!graph_edge_visible(ed, f->as_of) || !type_ok(f, ed->type)) {
                continue;
            }
            if (k == s->found_cap) {
                size_t cap = s->found_cap ? s->found_cap * 2 : 256;
                uint32_t *found = strata_realloc(s->found, cap * sizeof(*found));
                if (found == NULL) {
                    return SIZE_MAX;
                }
                s->found = found;
                s->found_cap = cap;
            }
            s->found[k++] = e;
        }
    }
    return k;
}

/* ======================================================================== */
/* Result building                                                           */
/* ======================================================================== */

typedef struct name_cache {
    uint32_t id[NAME_CACHE];    /* name id cached in this entry, GRAPH_NONE: empty */
    size_t off[NAME_CACHE];     /* its offset in the string block */
} name_cache;

/* Offset of name `id` of table t in the block, appending it (when block is
 * non-NULL, copying it) unless the cache already placed it. */
static size_t place_name(const graph_names *t, uint32_t id, name_cache *c, char *block,
                         size_t *size)
{
    size_t slot = id % NAME_CACHE;
    if (c->id[slot] == id) {
        return c->off[slot];
    }
    size_t off = *size;
    if (block != NULL) {
        memcpy(block + off, t->names[id], (size_t)t->lens[id] + 1);
    }
    *size += (size_t)t->lens[id] + 1;
    c->id[slot] = id;
    c->off[slot] = off;
    return off;
}

/* Place a property text (NULL: "{}") at *size, copying it when block is
 * non-NULL; returns its offset. */
static size_t place_text(const graph_text *t, char *block, size_t *size)
{
    size_t off = *size;
    const char *p = t->p ? t->p : "{}";
    size_t len = t->p ? t->len : 2;
    if (block != NULL) {
        memcpy(block + off, p, len + 1);
    }
    *size += len + 1;
    return off;
}

/* Lay out the strings of the result: with block == NULL only measure (and
 * return the size); otherwise copy them and point the result's fields at
 * them. Both calls make the same cache decisions, so offsets agree. */
static size_t layout_strings(const graph *g, const graph_scratch *s, graph_subgraph_result *r,
                             char *block)
{
    name_cache labels;
    name_cache types;
    memset(labels.id, 0xff, sizeof(labels.id));
    memset(types.id, 0xff, sizeof(types.id));
    size_t size = 0;
    for (size_t i = 0; i < r->n_nodes; i++) {
        uint32_t slot = s->order[i];
        const graph_node_cold *c = &g->cold[slot];
        if (i + 4 < r->n_nodes) {
            __builtin_prefetch(&g->cold[s->order[i + 4]]);
        }
        if (block == NULL) {
            /* Start loading what the copy pass will read: the misses of
             * the whole result overlap instead of coming one by one. */
            __builtin_prefetch(c->id);
            if (c->props.p != NULL) {
                __builtin_prefetch(c->props.p);
            }
        }
        size_t id_off = size;
        if (block != NULL) {
            memcpy(block + size, c->id, (size_t)c->id_len + 1);
        }
        size += (size_t)c->id_len + 1;
        size_t label_off = place_name(&g->labels, g->nodes[slot].label, &labels, block, &size);
        size_t props_off = place_text(&c->props, block, &size);
        if (block != NULL) {
            graph_sub_node *out = &r->nodes[i];
            out->id = block + id_off;
            out->label = block + label_off;
            out->props = block + props_off;
            out->props_len = c->props.p ? c->props.len : 2;
        }
    }
    for (size_t i = 0; i < r->n_edges; i++) {
        uint32_t e = s->found[i];
        if (i + 4 < r->n_edges) {
            __builtin_prefetch(&g->edge_props[s->found[i + 4]]);
        }
        if (block == NULL && g->edge_props[e].p != NULL) {
            __builtin_prefetch(g->edge_props[e].p);
        }
        size_t type_off = place_name(&g->types, g->edges[e].type, &types, block, &size);
        size_t props_off = place_text(&g->edge_props[e], block, &size);
        if (block != NULL) {
            graph_sub_edge *out = &r->edges[i];
            out->type = block + type_off;
            out->props = block + props_off;
            out->props_len = g->edge_props[e].p ? g->edge_props[e].len : 2;
        }
    }
    return size;
}

/* Build the result of n nodes and k edges from the scratch area. Caller
 * holds g->lock. NULL on ENOMEM. */
static graph_subgraph_result *result_build(const graph *g, const graph_scratch *s, size_t n,
                                           size_t k, bool truncated)
{
    graph_subgraph_result *r = strata_calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->nodes = strata_malloc(n * sizeof(*r->nodes));
    r->edges = k ? strata_malloc(k * sizeof(*r->edges)) : NULL;
    r->n_nodes = n;
    r->n_edges = k;
    size_t size = layout_strings(g, s, r, NULL);
    r->strings = strata_malloc(size);
    if (r->nodes == NULL || (k > 0 && r->edges == NULL) || r->strings == NULL) {
        graph_subgraph_free(r);
        return NULL;
    }
    layout_strings(g, s, r, r->strings);
    r->truncated = truncated;
    for (size_t i = 0; i < n; i++) {
        r->nodes[i].depth = s->depth[i];
    }
    for (size_t i = 0; i < k; i++) {
        const graph_edge *ed = &g->edges[s->found[i]];
        graph_sub_edge *out = &r->edges[i];
        out->from = s->mark[ed->from].pos;
        out->to = s->mark[ed->to].pos;
        out->valid_from = ed->valid_from;
        out->valid_to = ed->valid_to;
        out->created_at = ed->created_at;
        out->expired_at = ed->expired_at;
    }
    return r;
}

void graph_subgraph_free(graph_subgraph_result *r)
{
    if (r == NULL) {
        return;
    }
    strata_free(r->nodes);
    strata_free(r->edges);
    strata_free(r->strings);
    strata_free(r);
}

/* ======================================================================== */
/* Entry point                                                               */
/* ======================================================================== */

void graph_query_init(graph_query *q)
{
    memset(q, 0, sizeof(*q));
    q->depth = 1;
    q->direction = GRAPH_DIR_BOTH;
}

int graph_dir_parse(const char *text, size_t n, graph_dir *out)
{
    if (text != NULL && n == 3 && memcmp(text, "out", 3) == 0) {
        *out = GRAPH_DIR_OUT;
    } else if (text != NULL && n == 2 && memcmp(text, "in", 2) == 0) {
        *out = GRAPH_DIR_IN;
    } else if (text != NULL && n == 4 && memcmp(text, "both", 4) == 0) {
        *out = GRAPH_DIR_BOTH;
    } else {
        return strata_error(STRATA_EINVAL, "graph: direction must be out, in or both");
    }
    return STRATA_OK;
}

static bool name_ok(const char *s)
{
    return s != NULL && strata_id_valid(s, strnlen(s, STRATA_ID_MAX + 1));
}

static int query_check(const char *tenant, const graph_query *q)
{
    if (!name_ok(tenant)) {
        return strata_error(STRATA_EINVAL, "graph: invalid tenant");
    }
    if (!name_ok(q->center)) {
        return strata_error(STRATA_EINVAL, "graph: invalid center node id");
    }
    if (q->depth < 0 || q->depth > GRAPH_MAX_DEPTH) {
        return strata_error(STRATA_EINVAL, "graph: depth must be 0..%d", GRAPH_MAX_DEPTH);
    }
    if (q->limit > GRAPH_MAX_LIMIT) {
        return strata_error(STRATA_EINVAL, "graph: limit must be at most %d", GRAPH_MAX_LIMIT);
    }
    if (q->direction != GRAPH_DIR_OUT && q->direction != GRAPH_DIR_IN &&
        q->direction != GRAPH_DIR_BOTH) {
        return strata_error(STRATA_EINVAL, "graph: bad direction");
    }
    if (q->as_of_ms < 0) {
        return strata_error(STRATA_EINVAL, "graph: negative as_of");
    }
    if (q->n_types > GRAPH_MAX_QUERY_TYPES || (q->types == NULL && q->n_types > 0)) {
        return strata_error(STRATA_EINVAL, "graph: at most %d edge types per query",
                            GRAPH_MAX_QUERY_TYPES);
    }
    for (size_t i = 0; q->types != NULL && i < q->n_types; i++) {
        if (!name_ok(q->types[i])) {
            return strata_error(STRATA_EINVAL, "graph: invalid edge type in filter");
        }
    }
    return STRATA_OK;
}

int graph_subgraph(graph *g, const char *tenant, const graph_query *q,
                   graph_subgraph_result **out)
{
    *out = NULL;
    int rc = query_check(tenant, q);
    if (rc != STRATA_OK) {
        return rc;
    }
    size_t limit = q->limit ? q->limit : GRAPH_DEFAULT_LIMIT;
    bfs_filter f;
    f.as_of = q->as_of_ms;
    f.any_type = q->types == NULL;
    f.n_types = 0;

    rc = pthread_rwlock_rdlock(&g->lock);
    assert(rc == 0);
    uint32_t t = graph_names_find(&g->tenants, tenant, strlen(tenant));
    uint32_t center = graph_node_find(g, t, q->center, strlen(q->center));
    if (center == GRAPH_NONE || (f.as_of != 0 && g->nodes[center].created_at > f.as_of)) {
        rc = strata_error(STRATA_ENOTFOUND, "graph: no node %s", q->center);
        goto out;
    }
    /* Unknown type names cannot match any edge: they are simply dropped. */
    for (size_t i = 0; !f.any_type && i < q->n_types; i++) {
        uint32_t ty = graph_names_find(&g->types, q->types[i], strlen(q->types[i]));
        if (ty != GRAPH_NONE) {
            f.types[f.n_types++] = ty;
        }
    }
    graph_scratch *s = scratch_get(g, STRATA_MIN(limit, (size_t)g->n_nodes));
    if (s == NULL) {
        rc = strata_error(STRATA_ENOMEM, "graph: out of memory for a query");
        goto out;
    }
    s->mark[center].gen = s->gen;
    s->mark[center].pos = 0;
    s->order[0] = center;
    s->depth[0] = 0;
    bool truncated;
    size_t n = bfs_run(g, s, &f, q->direction, q->depth, limit, &truncated);
    size_t k = collect_edges(g, s, &f, n);
    graph_subgraph_result *r = k == SIZE_MAX ? NULL : result_build(g, s, n, k, truncated);
    scratch_put(g, s);
    if (r == NULL) {
        rc = strata_error(STRATA_ENOMEM, "graph: out of memory building a subgraph");
        goto out;
    }
    *out = r;
out:
    pthread_rwlock_unlock(&g->lock);
    return rc;
}

/* ======================================================================== */
/* JSON                                                                      */
/* ======================================================================== */

static int json_write_at(sbuf *b, const json_t *v, int depth)
{
    if (depth > GRAPH_PROPS_MAX_DEPTH + 1) {
        return strata_error(STRATA_EINVAL, "graph: JSON nested too deep to write");
    }
    int rc = STRATA_OK;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *child;
        bool first = true;
        rc = sbuf_putc(b, '{');
        json_object_keylen_foreach((json_t *)v, key, klen, child) {
            if (rc == STRATA_OK && !first) {
                rc = sbuf_putc(b, ',');
            }
            first = false;
            if (rc == STRATA_OK) {
                rc = json_put_str(b, key, klen);
            }
            if (rc == STRATA_OK) {
                rc = sbuf_putc(b, ':');
            }
            if (rc == STRATA_OK) {
                rc = json_write_at(b, child, depth + 1);
            }
            if (rc != STRATA_OK) {
                return rc;
            }
        }
        return sbuf_putc(b, '}');
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *child;
        rc = sbuf_putc(b, '[');
        json_array_foreach(v, i, child) {
            if (rc == STRATA_OK && i > 0) {
                rc = sbuf_putc(b, ',');
            }
            if (rc == STRATA_OK) {
                rc = json_write_at(b, child, depth + 1);
            }
            if (rc != STRATA_OK) {
                return rc;
            }
        }
        return sbuf_putc(b, ']');
    }
    case JSON_STRING:
        return json_put_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return json_put_i64(b, (int64_t)json_integer_value(v));
    case JSON_REAL:
        return json_put_double(b, json_real_value(v));
    case JSON_TRUE:
        return sbuf_append(b, "true", 4);
    case JSON_FALSE:
        return sbuf_append(b, "false", 5);
    default:
        return sbuf_append(b, "null", 4);
    }
}

int graph_json_write(sbuf *b, const json_t *v)
{
    return json_write_at(b, v, 0);
}

/* Append name (the literal `,"field":`) and the integer v, without printf:
 * four per edge, so it shows in profiles. */
static int put_i64_field(sbuf *b, const char *name, int64_t v)
{
    char tmp[48];
    size_t name_len = strlen(name);
    memcpy(tmp, name, name_len);
    char digits[20];
    size_t nd = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[nd++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    size_t n = name_len;
    if (v < 0) {
        tmp[n++] = '-';
    }
    while (nd > 0) {
        tmp[n++] = digits[--nd];
    }
    return sbuf_append(b, tmp, n);
}

/* Append name, then s quoted. s is a node id, label or type: the id
 * alphabet needs no escaping. */
static int put_name_field(sbuf *b, const char *name, const char *s)
{
    size_t name_len = strlen(name);
    size_t len = strlen(s);
    int rc = sbuf_reserve(b, name_len + len + 2);
    if (rc == STRATA_OK) {
        char *p = b->data + b->len;
        memcpy(p, name, name_len);
        p[name_len] = '"';
        memcpy(p + name_len + 1, s, len);
        p[name_len + 1 + len] = '"';
        b->len += name_len + len + 2;
        b->data[b->len] = '\0';
    }
    return rc;
}

int graph_subgraph_to_json(const graph_subgraph_result *r, sbuf *out)
{
    int rc = sbuf_puts(out, "{\"nodes\":[");
    for (size_t i = 0; rc == STRATA_OK && i < r->n_nodes; i++) {
        const graph_sub_node *n = &r->nodes[i];
        rc = put_name_field(out, i ? ",{\"id\":" : "{\"id\":", n->id);
        if (rc == STRATA_OK) {
            rc = put_name_field(out, ",\"label\":", n->label);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_puts(out, ",\"properties\":");
        }
        if (rc == STRATA_OK) {
            rc = sbuf_append(out, n->props, n->props_len);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_putc(out, '}');
        }
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(out, "],\"edges\":[");
    }
    for (size_t i = 0; rc == STRATA_OK && i < r->n_edges; i++) {
        const graph_sub_edge *e = &r->edges[i];
        rc = put_name_field(out, i ? ",{\"from\":" : "{\"from\":", r->nodes[e->from].id);
        if (rc == STRATA_OK) {
            rc = put_name_field(out, ",\"to\":", r->nodes[e->to].id);
        }
        if (rc == STRATA_OK) {
            rc = put_name_field(out, ",\"type\":", e->type);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_puts(out, ",\"properties\":");
        }
        if (rc == STRATA_OK) {
            rc = sbuf_append(out, e->props, e->props_len);
        }
        /* The API speaks Unix seconds; the store keeps milliseconds. */
        if (rc == STRATA_OK) {
            rc = put_i64_field(out, ",\"valid_from\":", e->valid_from / 1000);
        }
        if (rc == STRATA_OK) {
            rc = put_i64_field(out, ",\"valid_to\":", e->valid_to / 1000);
        }
        if (rc == STRATA_OK) {
            rc = put_i64_field(out, ",\"created_at\":", e->created_at / 1000);
        }
        if (rc == STRATA_OK) {
            rc = put_i64_field(out, ",\"expired_at\":", e->expired_at / 1000);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_putc(out, '}');
        }
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(out, r->truncated ? "],\"truncated\":true}" : "],\"truncated\":false}");
    }
    return rc;
}
