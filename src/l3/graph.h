/*
 * graph.h - the internal API of the L3 tier: an embedded, multi-tenant,
 * temporal property graph (nodes, typed directed edges, JSON properties, a
 * (label, property value) index) with bounded BFS subgraph queries and a
 * byte-buffer snapshot format. Other folders (pipeline, server) include this.
 *
 * Model
 *   node  (tenant, id) unique; id: 1..128 bytes of the id alphabet
 *         ([A-Za-z0-9_.:@-], strata_id_valid); a label (same alphabet); a
 *         JSON object of properties; created_at / updated_at (ms).
 *   edge  typed and directed, keyed on (tenant, from, to, type); a JSON object
 *         of properties ("weight", if present, is a finite number); every
 *         version carries
 *            valid_from / valid_to    when the fact held (valid_to 0: open)
 *            created_at / expired_at  when Strata learned / superseded it
 *                                     (expired_at 0: the current version)
 *         At most one current version per key. Expiring keeps the version;
 *         only the purge functions (privacy) physically delete edges.
 *   Types, labels and tenants use the id alphabet too, so "types=A,B" query
 *   strings split safely on ','.
 *
 * Visibility at as_of T: an edge version is visible when created_at <= T and
 * (expired_at == 0 or expired_at > T); a node when created_at <= T. T = 0
 * means "now": current edge versions (expired_at == 0) and every node.
 * Properties and labels are not versioned: an as_of read shows the present
 * properties of the nodes and edge versions it returns (an upsert merges
 * into the current version in place; only expire + put starts a version).
 *
 * Thread-safety: every function here is thread-safe. One rwlock guards the
 * whole store: reads (get, find, subgraph, stats, serialize) run concurrently,
 * writes (put, expire, delete, purge) run alone and are preferred over new
 * readers so they cannot starve. Caller JSON is validated and copied before
 * the lock is taken, results are parsed or printed after it is released.
 *
 * Properties: callers pass jansson objects, which the store never keeps; it
 * stores each object as its canonical compact JSON text (numbers in shortest
 * round-trip form, key order kept). graph_node_get / graph_edge_get parse a
 * new object for the caller; graph_subgraph copies the texts out, so its
 * result is self-contained and prints as JSON without any parsing.
 *
 * Property objects: a JSON object nesting at most GRAPH_PROPS_MAX_DEPTH
 * levels, with no NUL byte in a key (STRATA_EINVAL otherwise), at most
 * GRAPH_PROPS_MAX_BYTES as compact JSON once merged (STRATA_ETOOBIG).
 *
 * Errors: STRATA_EINVAL (bad argument), STRATA_ENOTFOUND (unknown node,
 * edge or tenant), STRATA_ENOMEM, STRATA_ETOOBIG (a store limit below),
 * STRATA_ECORRUPT (graph_deserialize). strata_errmsg() has the detail.
 */
#ifndef STRATA_L3_GRAPH_H
#define STRATA_L3_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"

#define GRAPH_MAX_DEPTH 5               /* subgraph depth range is 0..5 */
#define GRAPH_DEFAULT_LIMIT 1000        /* node limit when a query passes 0 */
#define GRAPH_MAX_LIMIT 100000          /* largest node limit a query may ask */
#define GRAPH_MAX_QUERY_TYPES 64        /* longest type filter list */
#define GRAPH_MAX_NODES (1u << 26)      /* nodes per store, all tenants */
#define GRAPH_MAX_EDGES (1u << 28)      /* edge versions per store */
#define GRAPH_MAX_NAMES (1u << 20)      /* distinct tenants, labels, types (each) */
#define GRAPH_INDEX_VALUE_MAX 256       /* longest string value kept in the index */
#define GRAPH_INDEX_PROP_MAX 128        /* longest property name kept in the index */
#define GRAPH_PROPS_MAX_DEPTH 64        /* nesting levels a property object may have */
#define GRAPH_PROPS_MAX_BYTES (1u << 20) /* longest property object, as compact JSON */

typedef struct graph graph;

/* ---- lifetime ------------------------------------------------------------ */

/* An empty store. *out is NULL on failure (STRATA_ENOMEM). */
int graph_create(graph **out);

/* Free the store and everything in it. Accepts NULL. No other thread may use
 * g during or after the call. Subgraph results stay valid (they hold copies). */
void graph_free(graph *g);

/* ---- nodes --------------------------------------------------------------- */

/* Create or update node (tenant, id). label is set (required). props (NULL =
 * {}) must be an object; it is merged into the node's properties: its keys
 * overwrite, other keys are kept, a key whose value is JSON null is removed.
 * The caller keeps props (the store copies it). ts_ms (>= 0) is the node's
 * created_at when created and its updated_at always. *created (may be NULL)
 * is set to whether the node was created. */
int graph_node_put(graph *g, const char *tenant, const char *id, const char *label,
                   const json_t *props, int64_t ts_ms, bool *created);

/* A copy of one node; free with graph_node_info_free. */
typedef struct graph_node_info {
    char *id;                   /* owned copy */
    char *label;                /* owned copy */
    json_t *props;              /* owned new object; the caller may modify it */
    int64_t created_at;         /* ms */
    int64_t updated_at;         /* ms, last put */
} graph_node_info;

/* Copy node (tenant, id) into *out. STRATA_ENOTFOUND if absent; on failure
 * *out is zeroed. */
int graph_node_get(graph *g, const char *tenant, const char *id, graph_node_info *out);
void graph_node_info_free(graph_node_info *info);   /* accepts NULL / zeroed */

/* Remove node (tenant, id) and every version of every edge touching it,
 * physically (nothing of it remains in memory structures or in later
 * snapshots). *n_edges_out (may be NULL) gets the edge versions removed.
 * STRATA_ENOTFOUND if absent. */
int graph_node_delete(graph *g, const char *tenant, const char *id, size_t *n_edges_out);

/* Privacy purge of a node: the same physical removal as graph_node_delete,
 * spelled separately so callers state intent (and so a future soft delete
 * cannot change what a purge means). */
int graph_node_purge(graph *g, const char *tenant, const char *id, size_t *n_edges_out);

/* ---- edges --------------------------------------------------------------- */

/* Upsert edge (tenant, from, to, type). Both nodes must exist, else
 * STRATA_ENOTFOUND (the HTTP layer answers 422). props (NULL = {}) must be an
 * object; "weight", if present and not null, must be a finite number
 * (STRATA_EINVAL otherwise).
 *  - A current version exists: its properties are MERGED in place (keys of
 *    props overwrite, JSON null removes a key, others kept); its times are
 *    unchanged. *created = false.
 *  - None (never, or only expired versions): a new version with
 *    created_at = ts_ms, valid_from = valid_from_ms (0: ts_ms), valid_to = 0,
 *    expired_at = 0. *created = true.
 * The caller keeps props. */
int graph_edge_put(graph *g, const char *tenant, const char *from, const char *to,
                   const char *type, const json_t *props, int64_t valid_from_ms,
                   int64_t ts_ms, bool *created);

/* Expire the current version of (tenant, from, to, type) at ts_ms: expired_at
 * = ts_ms, and valid_to = ts_ms unless already set. The version is kept for
 * as_of reads. STRATA_ENOTFOUND if there is no current version;
 * STRATA_EINVAL if ts_ms is before the version's created_at. */
int graph_edge_expire(graph *g, const char *tenant, const char *from, const char *to,
                      const char *type, int64_t ts_ms);

/* Privacy purge: physically delete every version (current and expired) of
 * (tenant, from, to, type), or of every type between from and to when type is
 * NULL. *n_out (may be NULL) gets the versions removed (0 is not an error).
 * STRATA_ENOTFOUND if either node is absent. */
int graph_edge_purge(graph *g, const char *tenant, const char *from, const char *to,
                     const char *type, size_t *n_out);

/* A copy of one edge version; free with graph_edge_info_free. */
typedef struct graph_edge_info {
    json_t *props;              /* owned new object */
    int64_t valid_from;         /* ms */
    int64_t valid_to;           /* ms, 0: still holds */
    int64_t created_at;         /* ms */
    int64_t expired_at;         /* ms, 0: current */
} graph_edge_info;

/* Copy the version of (tenant, from, to, type) visible at as_of_ms (0: the
 * current one). STRATA_ENOTFOUND if none; on failure *out is zeroed. */
int graph_edge_get(graph *g, const char *tenant, const char *from, const char *to,
                   const char *type, int64_t as_of_ms, graph_edge_info *out);
void graph_edge_info_free(graph_edge_info *info);   /* accepts NULL / zeroed */

/* ---- lookups ------------------------------------------------------------- */

/* A list of node ids; free with graph_ids_free. */
typedef struct graph_ids {
    char **ids;                 /* n owned NUL-terminated strings, sorted bytewise */
    size_t n;
} graph_ids;

/* Ids of the tenant's nodes with this label whose property `prop` equals
 * `value`. Indexed values are scalars: strings up to GRAPH_INDEX_VALUE_MAX
 * bytes, numbers (1 and 1.0 are equal), true, false; property names up to
 * GRAPH_INDEX_PROP_MAX bytes. Any other value (null, object, array, a longer
 * string or name) is STRATA_EINVAL. Unknown tenant or label: an empty list.
 * Cost: one hash lookup plus the matches (and a sort of them). */
int graph_find_nodes(graph *g, const char *tenant, const char *label, const char *prop,
                     const json_t *value, graph_ids *out);

/* Every node id of a tenant (export, purge, fuzzing). O(all nodes of all
 * tenants): not for request paths. Unknown tenant: an empty list. */
int graph_node_list(graph *g, const char *tenant, graph_ids *out);

/* Ids of the nodes joined to (tenant, id) by any edge version, current or
 * expired, in either direction, the node itself excluded; sorted. O(degree^2)
 * in the worst case: for the privacy cascade, not request paths.
 * STRATA_ENOTFOUND if the node is absent. */
int graph_neighbors(graph *g, const char *tenant, const char *id, graph_ids *out);

void graph_ids_free(graph_ids *ids);                /* accepts NULL / zeroed */

/* ---- subgraph (graph_query.c) -------------------------------------------- */

typedef enum graph_dir {
    GRAPH_DIR_OUT = 0,          /* follow edges from -> to */
    GRAPH_DIR_IN = 1,           /* follow edges to -> from */
    GRAPH_DIR_BOTH = 2
} graph_dir;

/* "out" | "in" | "both" (n bytes) -> *out. STRATA_OK or STRATA_EINVAL. */
int graph_dir_parse(const char *text, size_t n, graph_dir *out);

typedef struct graph_query {
    const char *center;         /* node id, required */
    int depth;                  /* hops, 0..GRAPH_MAX_DEPTH */
    const char *const *types;   /* edge types to follow and return; NULL: all */
    size_t n_types;             /* entries in types, <= GRAPH_MAX_QUERY_TYPES */
    graph_dir direction;        /* which way edges are followed */
    size_t limit;               /* max nodes returned, 0: GRAPH_DEFAULT_LIMIT */
    int64_t as_of_ms;           /* read the graph as it was then (ms), 0: now */
} graph_query;

/* Defaults: center NULL, depth 1, all types, both directions, limit 0 (the
 * default), as_of 0. */
void graph_query_init(graph_query *q);

typedef struct graph_sub_node {
    const char *id;             /* in the result's string block */
    const char *label;          /* in the result's string block */
    const char *props;          /* compact JSON object text, in the string block */
    uint32_t props_len;         /* bytes in props */
    uint32_t depth;             /* hops from the center */
} graph_sub_node;

typedef struct graph_sub_edge {
    uint32_t from;              /* index into nodes[] */
    uint32_t to;                /* index into nodes[] */
    const char *type;           /* in the result's string block */
    const char *props;          /* compact JSON object text, in the string block */
    uint32_t props_len;         /* bytes in props */
    int64_t valid_from;         /* ms */
    int64_t valid_to;           /* ms, 0: open */
    int64_t created_at;         /* ms */
    int64_t expired_at;         /* ms, 0: current */
} graph_sub_edge;

typedef struct graph_subgraph_result {
    graph_sub_node *nodes;      /* n_nodes, breadth-first order; nodes[0] is the center */
    size_t n_nodes;
    graph_sub_edge *edges;      /* n_edges, each visible edge between two returned nodes */
    size_t n_edges;
    bool truncated;             /* the limit left out reachable nodes */
    char *strings;              /* owned block holding ids, labels, types and properties */
} graph_subgraph_result;

/* Breadth-first subgraph around q->center in one tenant: every node within
 * q->depth hops along edges of the allowed types, followed in q->direction,
 * visible at q->as_of_ms, each node once, at most q->limit nodes (truncated
 * set when a reachable node was left out). Edges returned: every edge visible
 * at as_of and of an allowed type whose two ends were both returned, whatever
 * its direction. Unknown tenant or center, or a center not yet created at
 * as_of: STRATA_ENOTFOUND. Bad depth, limit or type list: STRATA_EINVAL.
 * *out is freed with graph_subgraph_free; NULL on failure. It holds copies
 * only, so it stays valid after later writes and after graph_free. Runs under
 * the read lock; cost is bounded by the adjacency lists of the nodes
 * expanded. */
int graph_subgraph(graph *g, const char *tenant, const graph_query *q,
                   graph_subgraph_result **out);
void graph_subgraph_free(graph_subgraph_result *r);  /* accepts NULL */

/* Append r as {"nodes":[{"id","label","properties"}],"edges":[{"from","to",
 * "type","properties","valid_from","valid_to","created_at","expired_at"}],
 * "truncated":bool}, the four times in Unix seconds (the API's unit; the store
 * keeps milliseconds). Needs no lock. STRATA_ENOMEM / STRATA_ETOOBIG from out. */
int graph_subgraph_to_json(const graph_subgraph_result *r, sbuf *out);

/* ---- statistics and checks ----------------------------------------------- */

typedef struct graph_stats {
    uint64_t nodes;             /* nodes, all tenants */
    uint64_t edges;             /* edge versions, current and expired */
    uint64_t current_edges;     /* versions with expired_at == 0 */
    uint64_t tenants;           /* tenant names ever interned */
    uint64_t labels;            /* label names ever interned */
    uint64_t types;             /* edge type names ever interned */
    uint64_t index_keys;        /* distinct (tenant, label, property, value) keys */
} graph_stats;

void graph_stats_get(graph *g, graph_stats *out);

/* Verify every internal invariant (adjacency <-> edges, counters, the id
 * table, the property index). STRATA_OK or STRATA_ECORRUPT with a message.
 * O(everything): for tests and fuzzing. */
int graph_check(graph *g);

/* ---- snapshots (graph_io.c) ---------------------------------------------- */

/* Append the whole store to out in the format documented in graph_io.c.
 * Runs under the read lock. STRATA_ENOMEM / STRATA_ETOOBIG from out. */
int graph_serialize(graph *g, sbuf *out);

/* Build a new store from buf. Any malformed, truncated or hostile input is
 * STRATA_ECORRUPT (never a crash, a leak or an allocation larger than the
 * input justifies). *out is NULL on failure. */
int graph_deserialize(const void *buf, size_t len, graph **out);

#endif /* STRATA_L3_GRAPH_H */
