/*
 * l3.h - long-term memory (the knowledge graph) behind a vtable, so
 * Neo4j/Nebula-class engines can plug in later; the embedded backend
 * (l3_mem.c) is the temporal property graph of graph.h.
 *
 * Times: the graph keeps milliseconds; the API speaks Unix seconds. Callers
 * pass the log record's timestamp, so replay reproduces the same graph.
 */
#ifndef STRATA_L3_H
#define STRATA_L3_H

#include <jansson.h>

#include "core/core.h"
#include "l3/graph.h"

typedef struct l3_store l3_store;

typedef struct l3_ops {
    const char *name;
    int (*node_put)(l3_store *s, const char *tenant, const char *id, const char *label,
                    const json_t *props, int64_t ts_ms, bool *created);
    /* JSON {"id","label","properties","created_at","updated_at"} (seconds) appended
     * to out; as_of_ms 0 = now; a node created after as_of is STRATA_ENOTFOUND. */
    int (*node_get_json)(l3_store *s, const char *tenant, const char *id, int64_t as_of_ms,
                         sbuf *out);
    int (*node_exists)(l3_store *s, const char *tenant, const char *id);
    int (*node_delete)(l3_store *s, const char *tenant, const char *id, size_t *n_edges);
    int (*edge_put)(l3_store *s, const char *tenant, const char *from, const char *to,
                    const char *type, const json_t *props, int64_t valid_from_ms,
                    int64_t ts_ms, bool *created);
    int (*edge_expire)(l3_store *s, const char *tenant, const char *from, const char *to,
                       const char *type, int64_t ts_ms);
    int (*edge_exists)(l3_store *s, const char *tenant, const char *from, const char *to,
                       const char *type);
    int (*subgraph_json)(l3_store *s, const char *tenant, const graph_query *q, sbuf *out);
    int (*find_nodes)(l3_store *s, const char *tenant, const char *label, const char *prop,
                      const json_t *value, graph_ids *out);
    int (*snapshot_write)(l3_store *s, sbuf *out);
    int (*snapshot_load)(l3_store *s, const void *data, size_t len);
    void (*stats)(l3_store *s, graph_stats *out);
    void (*close)(l3_store *s);
    /* Nodes joined to id by any edge version (graph_neighbors). */
    int (*neighbors)(l3_store *s, const char *tenant, const char *id, graph_ids *out);
} l3_ops;

struct l3_store {
    const l3_ops *ops;
};

int l3_mem_open(l3_store **out);

#endif /* STRATA_L3_H */
