/*
 * graph_int.h - the private layout of the L3 graph store, shared by graph.c
 * (mutations, index, lookups), graph_query.c (subgraph BFS) and graph_io.c
 * (snapshots). Nothing outside src/l3/graph*.c includes this; everyone else
 * uses graph.h.
 *
 * Layout (PERFORMANCE.md, "The graph (L3)"):
 *
 *   node_ids  dict: tenant id (4 bytes LE) + id bytes -> node slot + 1
 *
 *   nodes[slot]  hot, 48 bytes: what a traversal touches
 *     { out: [ {edge|X, nbr}, ... ]  compact growable adjacency arrays; nbr
 *       in:  [ {edge|X, nbr}, ... ]  is the node at the other end and X the
 *       created_at, tenant, label }  "expired" bit, so a BFS over current
 *                                    edges never loads an edge record
 *   cold[slot]   { id, props text, updated_at }   read to build results
 *
 *   edges[e]     flat array of 48-byte records { from, to, type, valid_from,
 *                valid_to, created_at, expired_at }
 *   edge_props[e] property texts, apart from the records
 *
 *   tenants / labels / types   interned names <-> dense uint32 ids
 *   index     dict: tenant, label, property, value (see index_key in graph.c)
 *             -> postings (node slots)
 *   scratch   pool of generation-tagged visited arrays and BFS queues, one
 *             per concurrent query, reused so no query clears an array
 *
 * Properties are stored as text: the canonical compact JSON of the object
 * (graph_json_write; NULL text means {}). A read copies bytes out, a snapshot
 * writes them as they are; only a merge, an index update or a get parses
 * them. This costs a parse per update and saves a jansson tree per edge
 * (about 150 bytes against 20), every reference count on the read path, and
 * any sharing of mutable jansson values between threads.
 *
 * Free node slots have tenant == GRAPH_NONE and chain through label; free
 * edge slots have from == GRAPH_NONE and chain through to. Slots are reused,
 * so arrays never shrink (a later snapshot + load compacts them).
 *
 * Invariants (graph_check verifies them): every live edge appears exactly
 * once in out(from) as {e, to} and once in in(to) as {e, from}, both with the
 * expired bit equal to (expired_at != 0); from and to belong to the same
 * tenant; at most one current version (expired_at == 0) per (from, to,
 * type); property texts are canonical, parse to objects that pass
 * graph_props_check with no top-level null; every indexable (key, value) of
 * a live node is in exactly one posting list, and nothing else is.
 *
 * Locking: g->lock (rwlock) guards everything except the scratch pool,
 * which g->scratch_lock (mutex) guards; scratch_lock is taken while holding
 * g->lock as a reader, never the other way round.
 */
#ifndef STRATA_L3_GRAPH_INT_H
#define STRATA_L3_GRAPH_INT_H

#include <pthread.h>

#include "l3/graph.h"

#define GRAPH_NONE UINT32_MAX
#define GRAPH_ADJ_EXPIRED 0x80000000u  /* graph_adj.edge bit: the version is expired */
#define GRAPH_ADJ_EDGE 0x7fffffffu     /* graph_adj.edge bits: the edge slot */
/* prop length (4) + tenant (4) + label (4) + name + tag (1) + value */
#define GRAPH_INDEX_KEY_MAX (13 + GRAPH_INDEX_PROP_MAX + GRAPH_INDEX_VALUE_MAX)

typedef struct graph_adj {
    uint32_t edge;              /* edge slot | GRAPH_ADJ_EXPIRED when expired_at != 0 */
    uint32_t nbr;               /* node slot at the other end */
} graph_adj;

typedef struct graph_adjlist {
    graph_adj *v;               /* owned; NULL while empty */
    uint32_t n;                 /* entries used */
    uint32_t cap;               /* entries allocated */
} graph_adjlist;

typedef struct graph_node {
    graph_adjlist out;          /* edges with from == this node */
    graph_adjlist in;           /* edges with to == this node */
    int64_t created_at;         /* ms */
    uint32_t tenant;            /* tenant id; GRAPH_NONE: free slot */
    uint32_t label;             /* label id; free slot: next free slot or GRAPH_NONE */
} graph_node;

typedef struct graph_text {
    char *p;                    /* owned canonical JSON object text, NUL-terminated; NULL: {} */
    uint32_t len;               /* bytes in p, 0 when NULL */
} graph_text;

typedef struct graph_node_cold {
    char *id;                   /* owned, NUL-terminated */
    uint32_t id_len;            /* bytes in id */
    graph_text props;           /* the node's properties */
    int64_t updated_at;         /* ms */
} graph_node_cold;

typedef struct graph_edge {
    uint32_t from;              /* node slot; GRAPH_NONE: free slot */
    uint32_t to;                /* node slot; free slot: next free slot or GRAPH_NONE */
    uint32_t type;              /* type id */
    uint32_t reserved;          /* 0 */
    int64_t valid_from;         /* ms */
    int64_t valid_to;           /* ms, 0: open */
    int64_t created_at;         /* ms */
    int64_t expired_at;         /* ms, 0: current */
} graph_edge;

typedef struct graph_names {
    dict *ids;                  /* name -> (void *)(id + 1) */
    char **names;               /* id -> owned NUL-terminated name */
    uint32_t *lens;             /* id -> strlen(name) */
    uint32_t n;                 /* names interned */
    uint32_t cap;               /* entries allocated in names / lens */
} graph_names;

typedef struct graph_mark {
    uint32_t gen;               /* == scratch gen: visited by the current query */
    uint32_t pos;               /* position in the BFS order when visited */
} graph_mark;

typedef struct graph_scratch {
    struct graph_scratch *next; /* pool link */
    graph_mark *mark;           /* one per node slot */
    uint32_t n_mark;            /* slots covered by mark */
    uint32_t gen;               /* current generation, 1.. */
    uint32_t *order;            /* BFS queue, which is also the result order */
    uint32_t *depth;            /* hops of order[i] */
    size_t order_cap;           /* entries allocated in order / depth */
    uint32_t *found;            /* edge slots collected for the result */
    size_t found_cap;           /* entries allocated in found */
} graph_scratch;

struct graph {
    pthread_rwlock_t lock;      /* guards everything below but the scratch pool */
    graph_names tenants;
    graph_names labels;
    graph_names types;
    dict *node_ids;             /* tenant + id -> slot + 1 */
    graph_node *nodes;          /* cap_nodes entries, n_node_slots used */
    graph_node_cold *cold;      /* parallel to nodes */
    uint32_t n_node_slots;      /* slots ever used (live + free) */
    uint32_t cap_nodes;         /* slots allocated */
    uint32_t free_node;         /* head of the free-slot chain, GRAPH_NONE if empty */
    uint32_t n_nodes;           /* live nodes */
    graph_edge *edges;          /* cap_edges entries, n_edge_slots used */
    graph_text *edge_props;     /* parallel to edges */
    uint32_t n_edge_slots;
    uint32_t cap_edges;
    uint32_t free_edge;
    uint32_t n_edges;           /* live edge versions */
    uint32_t n_current;         /* live versions with expired_at == 0 */
    dict *index;                /* index key -> graph_postings */
    sbuf wbuf;                  /* writers' scratch for property texts */
    pthread_mutex_t scratch_lock;   /* guards scratch and n_scratch */
    graph_scratch *scratch;     /* idle scratch areas */
    uint32_t n_scratch;         /* entries in the scratch pool */
};

/* An edge version is visible at as_of (0: now). */
static inline bool graph_edge_visible(const graph_edge *e, int64_t as_of)
{
    if (as_of == 0) {
        return e->expired_at == 0;
    }
    return e->created_at <= as_of && (e->expired_at == 0 || e->expired_at > as_of);
}

/* ---- graph.c, used by graph_query.c and graph_io.c ------------------------ */
/* Id of name (n bytes) or GRAPH_NONE. Caller holds g->lock. */
uint32_t graph_names_find(const graph_names *t, const char *name, size_t n);
/* Id of name, adding it if new. Caller holds g->lock for writing. */
int graph_names_intern(graph_names *t, const char *name, size_t n, uint32_t *id_out);
/* Slot of (tenant id, id) or GRAPH_NONE. Caller holds g->lock. */
uint32_t graph_node_find(const graph *g, uint32_t tenant, const char *id, size_t id_len);
/* Add a node with validated fields; props (borrowed) must pass
 * graph_props_check with no top-level null. Indexes it. Caller holds g->lock
 * for writing. */
int graph_node_insert(graph *g, uint32_t tenant, uint32_t label, const char *id, size_t id_len,
                      const json_t *props, int64_t created_at, int64_t updated_at,
                      uint32_t *slot_out);
/* Add an edge version between two live nodes of one tenant; props as above.
 * Caller holds g->lock for writing. */
int graph_edge_insert(graph *g, uint32_t from, uint32_t to, uint32_t type, const json_t *props,
                      const graph_edge *times, uint32_t *slot_out);
/* Slot of the current version of (from, to, type), or GRAPH_NONE. Caller
 * holds g->lock. */
uint32_t graph_edge_find_current(const graph *g, uint32_t from, uint32_t to, uint32_t type);
/* Check a property object: an object, nesting <= GRAPH_PROPS_MAX_DEPTH, no
 * NUL byte in any key (the JSON reader would refuse it on reload), and for
 * edges a finite numeric "weight" if present. top_null_ok lets top-level
 * nulls through (a patch). STRATA_OK or STRATA_EINVAL with a message. */
int graph_props_check(const json_t *props, bool is_edge, bool top_null_ok);

/* ---- graph_query.c, used by graph.c and graph_io.c ------------------------ */
/* Append v as compact JSON (numbers in shortest round-trip form): the
 * canonical property text. */
int graph_json_write(sbuf *b, const json_t *v);

#endif /* STRATA_L3_GRAPH_INT_H */
