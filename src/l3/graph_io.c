/*
 * graph_io.c - the L3 snapshot format: the whole graph store to and from one
 * byte buffer. The snapshot module frames and stores the buffer; this file
 * only defines its content. Loading is a parser of untrusted bytes (a disk
 * can rot, a file can be swapped): every count is checked against the bytes
 * that remain before anything is allocated for it, every index against its
 * table, and every failure is STRATA_ECORRUPT.
 *
 * Format, version 1 (all integers little-endian; "bytes" is a u32 length
 * followed by that many bytes):
 *
 *   offset  size  field
 *   0       8     magic "STRGRAPH"
 *   8       4     version = 1
 *   12      4     n_tenants
 *   16      4     n_labels
 *   20      4     n_types
 *   24      4     n_nodes
 *   28      4     n_edges
 *   32      ...   n_tenants x bytes   tenant names, id = position
 *           ...   n_labels  x bytes   label names
 *           ...   n_types   x bytes   edge type names
 *           ...   n_nodes   x node    node ordinal = position
 *           ...   n_edges   x edge
 *   len-4   4     CRC-32C of bytes [0, len-4)
 *
 *   node:  u32 tenant | u32 label | i64 created_at | i64 updated_at |
 *          bytes id | bytes properties (compact JSON object)
 *   edge:  u32 from node ordinal | u32 to node ordinal | u32 type |
 *          i64 valid_from | i64 valid_to | i64 created_at | i64 expired_at |
 *          bytes properties (compact JSON object)
 *
 * Names are 1..128 bytes of the id alphabet and unique per table; node ids
 * are unique per tenant; an edge joins two nodes of one tenant; at most one
 * version per (from, to, type) has expired_at == 0; property objects follow
 * graph_props_check (no top-level null, finite edge weight). Properties are
 * written as stored (canonical text) and re-canonicalised on load; nodes and
 * edges are written in slot order skipping free slots; so a store loaded
 * from a snapshot serialises back to the same bytes.
 */
#include <string.h>

#include "l3/graph_int.h"

#define GRAPH_MAGIC "STRGRAPH"
#define GRAPH_VERSION 1u
#define HEADER_SIZE 32
#define TRAILER_SIZE 4
/* Smallest encodings, for checking counts before allocating. */
#define NAME_MIN 5u             /* u32 + 1 byte */
#define NODE_MIN 35u            /* 4 + 4 + 8 + 8 + (4 + 1) + (4 + 2 "{}") */
#define EDGE_MIN 50u            /* 3 * 4 + 4 * 8 + (4 + 2) */

/* ======================================================================== */
/* Writing                                                                   */
/* ======================================================================== */

static int put_names(sbuf *b, const graph_names *t)
{
    int rc = STRATA_OK;
    for (uint32_t i = 0; rc == STRATA_OK && i < t->n; i++) {
        rc = wire_put_bytes(b, t->names[i], t->lens[i]);
    }
    return rc;
}

/* A property text as bytes; no text is "{}". */
static int put_text(sbuf *b, const graph_text *t)
{
    return t->p ? wire_put_bytes(b, t->p, t->len) : wire_put_bytes(b, "{}", 2);
}

int graph_serialize(graph *g, sbuf *out)
{
    size_t start = out->len;
    pthread_rwlock_rdlock(&g->lock);
    /* Node slot -> ordinal among live nodes. */
    uint32_t *ord = NULL;
    int rc = STRATA_OK;
    if (g->n_node_slots > 0) {
        ord = strata_malloc((size_t)g->n_node_slots * sizeof(*ord));
        if (ord == NULL) {
            rc = strata_error(STRATA_ENOMEM, "graph: out of memory writing a snapshot");
            goto out;
        }
    }
    uint32_t next = 0;
    for (uint32_t s = 0; s < g->n_node_slots; s++) {
        ord[s] = g->nodes[s].tenant == GRAPH_NONE ? GRAPH_NONE : next++;
    }
    rc = sbuf_append(out, GRAPH_MAGIC, 8);
    if (rc == STRATA_OK) {
        rc = wire_put_u32(out, GRAPH_VERSION);
    }
    uint32_t counts[5] = {g->tenants.n, g->labels.n, g->types.n, g->n_nodes, g->n_edges};
    for (int i = 0; rc == STRATA_OK && i < 5; i++) {
        rc = wire_put_u32(out, counts[i]);
    }
    if (rc == STRATA_OK) {
        rc = put_names(out, &g->tenants);
    }
    if (rc == STRATA_OK) {
        rc = put_names(out, &g->labels);
    }
    if (rc == STRATA_OK) {
        rc = put_names(out, &g->types);
    }
    for (uint32_t s = 0; rc == STRATA_OK && s < g->n_node_slots; s++) {
        const graph_node *n = &g->nodes[s];
        const graph_node_cold *c = &g->cold[s];
        if (n->tenant == GRAPH_NONE) {
            continue;
        }
        rc = wire_put_u32(out, n->tenant);
        if (rc == STRATA_OK) {
            rc = wire_put_u32(out, n->label);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_i64(out, n->created_at);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_i64(out, c->updated_at);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_bytes(out, c->id, c->id_len);
        }
        if (rc == STRATA_OK) {
            rc = put_text(out, &c->props);
        }
    }
    for (uint32_t e = 0; rc == STRATA_OK && e < g->n_edge_slots; e++) {
        const graph_edge *ed = &g->edges[e];
        if (ed->from == GRAPH_NONE) {
            continue;
        }
        rc = wire_put_u32(out, ord[ed->from]);
        if (rc == STRATA_OK) {
            rc = wire_put_u32(out, ord[ed->to]);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_u32(out, ed->type);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_i64(out, ed->valid_from);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_i64(out, ed->valid_to);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_i64(out, ed->created_at);
        }
        if (rc == STRATA_OK) {
            rc = wire_put_i64(out, ed->expired_at);
        }
        if (rc == STRATA_OK) {
            rc = put_text(out, &g->edge_props[e]);
        }
    }
    if (rc == STRATA_OK) {
        rc = wire_put_u32(out, crc32c(0, out->data + start, out->len - start));
    }
out:
    pthread_rwlock_unlock(&g->lock);
    strata_free(ord);
    if (rc != STRATA_OK && out->data != NULL) {
        out->len = start; /* leave out as it was */
        out->data[start] = '\0';
    }
    return rc;
}

/* ======================================================================== */
/* Reading                                                                   */
/* ======================================================================== */

static int corrupt(const char *what)
{
    return strata_error(STRATA_ECORRUPT, "graph snapshot: %s", what);
}

static int get_names(wire_reader *r, graph_names *t, uint32_t n, const char *what)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *p = wire_get_bytes(r, &len);
        if (p == NULL || !strata_id_valid(p, len)) {
            return corrupt(what);
        }
        uint32_t id;
        int rc = graph_names_intern(t, p, len, &id);
        if (rc != STRATA_OK) {
            return rc;
        }
        if (id != i) {
            return corrupt(what); /* a duplicate name */
        }
    }
    return STRATA_OK;
}

/* Parse a property object; NULL (with *rc set) when malformed. */
static json_t *get_props(wire_reader *r, bool is_edge, int *rc)
{
    size_t len;
    const char *p = wire_get_bytes(r, &len);
    if (p == NULL) {
        *rc = corrupt("truncated properties");
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(p, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (v == NULL || graph_props_check(v, is_edge, false) != STRATA_OK) {
        json_decref(v);
        *rc = corrupt("bad property object");
        return NULL;
    }
    return v;
}

/* Preallocate the slot arrays for exactly the counts announced (already
 * checked against the input size). */
static int reserve_slots(graph *g, uint32_t n_nodes, uint32_t n_edges)
{
    if (n_nodes > 0) {
        g->nodes = strata_malloc((size_t)n_nodes * sizeof(*g->nodes));
        g->cold = strata_malloc((size_t)n_nodes * sizeof(*g->cold));
        if (g->nodes == NULL || g->cold == NULL) {
            return strata_error(STRATA_ENOMEM, "graph: out of memory loading a snapshot");
        }
        g->cap_nodes = n_nodes;
    }
    if (n_edges > 0) {
        g->edges = strata_malloc((size_t)n_edges * sizeof(*g->edges));
        g->edge_props = strata_malloc((size_t)n_edges * sizeof(*g->edge_props));
        if (g->edges == NULL || g->edge_props == NULL) {
            return strata_error(STRATA_ENOMEM, "graph: out of memory loading a snapshot");
        }
        g->cap_edges = n_edges;
    }
    return STRATA_OK;
}

static int get_nodes(wire_reader *r, graph *g, uint32_t n_nodes)
{
    for (uint32_t i = 0; i < n_nodes; i++) {
        uint32_t tenant = wire_get_u32(r);
        uint32_t label = wire_get_u32(r);
        int64_t created_at = wire_get_i64(r);
        int64_t updated_at = wire_get_i64(r);
        size_t id_len;
        const char *id = wire_get_bytes(r, &id_len);
        if (id == NULL || tenant >= g->tenants.n || label >= g->labels.n ||
            !strata_id_valid(id, id_len)) {
            return corrupt("bad node");
        }
        if (graph_node_find(g, tenant, id, id_len) != GRAPH_NONE) {
            return corrupt("duplicate node id");
        }
        int rc;
        json_t *props = get_props(r, false, &rc);
        if (props == NULL) {
            return rc;
        }
        rc = graph_node_insert(g, tenant, label, id, id_len, props, created_at, updated_at, NULL);
        json_decref(props);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    return STRATA_OK;
}

static int get_edges(wire_reader *r, graph *g, uint32_t n_edges)
{
    for (uint32_t i = 0; i < n_edges; i++) {
        uint32_t from = wire_get_u32(r);
        uint32_t to = wire_get_u32(r);
        uint32_t type = wire_get_u32(r);
        graph_edge times = {0};
        times.valid_from = wire_get_i64(r);
        times.valid_to = wire_get_i64(r);
        times.created_at = wire_get_i64(r);
        times.expired_at = wire_get_i64(r);
        /* Nodes were loaded without holes: ordinal == slot. */
        if (r->err || from >= g->n_nodes || to >= g->n_nodes || type >= g->types.n ||
            g->nodes[from].tenant != g->nodes[to].tenant) {
            return corrupt("bad edge");
        }
        if (times.expired_at == 0 &&
            graph_edge_find_current(g, from, to, type) != GRAPH_NONE) {
            return corrupt("two current versions of an edge");
        }
        int rc;
        json_t *props = get_props(r, true, &rc);
        if (props == NULL) {
            return rc;
        }
        rc = graph_edge_insert(g, from, to, type, props, &times, NULL);
        json_decref(props);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    return STRATA_OK;
}

int graph_deserialize(const void *buf, size_t len, graph **out)
{
    *out = NULL;
    const uint8_t *p = buf;
    if (p == NULL || len < HEADER_SIZE + TRAILER_SIZE) {
        return corrupt("too short");
    }
    if (crc32c(0, p, len - TRAILER_SIZE) != wire_rd32(p + len - TRAILER_SIZE)) {
        return corrupt("checksum mismatch");
    }
    if (memcmp(p, GRAPH_MAGIC, 8) != 0) {
        return corrupt("bad magic");
    }
    wire_reader r;
    wire_reader_init(&r, p + 8, len - 8 - TRAILER_SIZE);
    uint32_t version = wire_get_u32(&r);
    uint32_t n_tenants = wire_get_u32(&r);
    uint32_t n_labels = wire_get_u32(&r);
    uint32_t n_types = wire_get_u32(&r);
    uint32_t n_nodes = wire_get_u32(&r);
    uint32_t n_edges = wire_get_u32(&r);
    if (version != GRAPH_VERSION) {
        return corrupt("unknown version");
    }
    uint64_t need = ((uint64_t)n_tenants + n_labels + n_types) * NAME_MIN +
                    (uint64_t)n_nodes * NODE_MIN + (uint64_t)n_edges * EDGE_MIN;
    if (n_tenants > GRAPH_MAX_NAMES || n_labels > GRAPH_MAX_NAMES || n_types > GRAPH_MAX_NAMES ||
        n_nodes > GRAPH_MAX_NODES || n_edges > GRAPH_MAX_EDGES || need > r.len - r.off) {
        return corrupt("counts exceed the data");
    }
    graph *g;
    int rc = graph_create(&g);
    if (rc != STRATA_OK) {
        return rc;
    }
    rc = get_names(&r, &g->tenants, n_tenants, "bad tenant name");
    if (rc == STRATA_OK) {
        rc = get_names(&r, &g->labels, n_labels, "bad label");
    }
    if (rc == STRATA_OK) {
        rc = get_names(&r, &g->types, n_types, "bad edge type");
    }
    if (rc == STRATA_OK) {
        rc = reserve_slots(g, n_nodes, n_edges);
    }
    if (rc == STRATA_OK) {
        rc = get_nodes(&r, g, n_nodes);
    }
    if (rc == STRATA_OK) {
        rc = get_edges(&r, g, n_edges);
    }
    if (rc == STRATA_OK && !wire_done(&r)) {
        rc = corrupt("trailing bytes");
    }
    if (rc != STRATA_OK) {
        graph_free(g);
        return rc == STRATA_ENOMEM ? rc : (rc == STRATA_ECORRUPT ? rc : corrupt("invalid"));
    }
    *out = g;
    return STRATA_OK;
}
