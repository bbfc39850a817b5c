/*
 * l3_mem.c - the embedded L3 backend: the l3 vtable over the in-process
 * temporal graph of graph.h. It converts the graph's millisecond times to the
 * API's seconds and swaps in a whole new graph on snapshot load. The graph
 * has its own rwlock; `swap_lock` only guards the pointer swap on load.
 */
#include <pthread.h>
#include <string.h>

#include "l3/l3.h"

typedef struct l3_mem {
    l3_store base;
    pthread_rwlock_t swap_lock;
    graph *g;
} l3_mem;

#define G(s) (((l3_mem *)(s))->g)

static int l3m_node_put(l3_store *s, const char *tenant, const char *id, const char *label,
                        const json_t *props, int64_t ts_ms, bool *created)
{
    return graph_node_put(G(s), tenant, id, label, props, ts_ms, created);
}

static int l3m_node_get_json(l3_store *s, const char *tenant, const char *id, int64_t as_of_ms,
                             sbuf *out)
{
    graph_node_info info;
    int rc = graph_node_get(G(s), tenant, id, &info);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (as_of_ms > 0 && info.created_at > as_of_ms) {
        graph_node_info_free(&info);
        return strata_error(STRATA_ENOTFOUND, "node %s did not exist then", id);
    }
    char *props = json_dumps(info.props, JSON_COMPACT);
    rc = props ? STRATA_OK : STRATA_ENOMEM;
    rc = rc ? rc : sbuf_puts(out, "{\"id\":");
    rc = rc ? rc : json_put_cstr(out, info.id);
    rc = rc ? rc : sbuf_puts(out, ",\"label\":");
    rc = rc ? rc : json_put_cstr(out, info.label);
    rc = rc ? rc : sbuf_puts(out, ",\"properties\":");
    rc = rc ? rc : sbuf_puts(out, props);
    rc = rc ? rc : sbuf_puts(out, ",\"created_at\":");
    rc = rc ? rc : json_put_i64(out, info.created_at / 1000);
    rc = rc ? rc : sbuf_puts(out, ",\"updated_at\":");
    rc = rc ? rc : json_put_i64(out, info.updated_at / 1000);
    rc = rc ? rc : sbuf_putc(out, '}');
    free(props);
    graph_node_info_free(&info);
    return rc;
}

static int l3m_node_exists(l3_store *s, const char *tenant, const char *id)
{
    graph_node_info info;
    int rc = graph_node_get(G(s), tenant, id, &info);
    graph_node_info_free(&info);
    return rc;
}

static int l3m_node_delete(l3_store *s, const char *tenant, const char *id, size_t *n_edges)
{
    return graph_node_delete(G(s), tenant, id, n_edges);
}

static int l3m_edge_put(l3_store *s, const char *tenant, const char *from, const char *to,
                        const char *type, const json_t *props, int64_t valid_from_ms,
                        int64_t ts_ms, bool *created)
{
    return graph_edge_put(G(s), tenant, from, to, type, props, valid_from_ms, ts_ms, created);
}

static int l3m_edge_expire(l3_store *s, const char *tenant, const char *from, const char *to,
                           const char *type, int64_t ts_ms)
{
    return graph_edge_expire(G(s), tenant, from, to, type, ts_ms);
}

static int l3m_edge_exists(l3_store *s, const char *tenant, const char *from, const char *to,
                           const char *type)
{
    graph_edge_info info;
    int rc = graph_edge_get(G(s), tenant, from, to, type, 0, &info);
    graph_edge_info_free(&info);
    return rc;
}

static int l3m_subgraph_json(l3_store *s, const char *tenant, const graph_query *q, sbuf *out)
{
    graph_subgraph_result *r = NULL;
    int rc = graph_subgraph(G(s), tenant, q, &r);
    if (rc == STRATA_OK) {
        rc = graph_subgraph_to_json(r, out);
    }
    graph_subgraph_free(r);
    return rc;
}

static int l3m_find_nodes(l3_store *s, const char *tenant, const char *label, const char *prop,
                          const json_t *value, graph_ids *out)
{
    return graph_find_nodes(G(s), tenant, label, prop, value, out);
}

static int l3m_snapshot_write(l3_store *s, sbuf *out)
{
    return graph_serialize(G(s), out);
}

/* Caller (recovery) runs before any reader exists, so swapping is safe. */
static int l3m_snapshot_load(l3_store *s, const void *data, size_t len)
{
    graph *g = NULL;
    int rc = graph_deserialize(data, len, &g);
    if (rc != STRATA_OK) {
        return rc;
    }
    l3_mem *m = (l3_mem *)s;
    pthread_rwlock_wrlock(&m->swap_lock);
    graph *old = m->g;
    m->g = g;
    pthread_rwlock_unlock(&m->swap_lock);
    graph_free(old);
    return STRATA_OK;
}

static void l3m_stats(l3_store *s, graph_stats *out)
{
    graph_stats_get(G(s), out);
}

static void l3m_close(l3_store *s)
{
    l3_mem *m = (l3_mem *)s;
    if (m == NULL) {
        return;
    }
    graph_free(m->g);
    pthread_rwlock_destroy(&m->swap_lock);
    strata_free(m);
}

static int l3m_neighbors(l3_store *s, const char *tenant, const char *id, graph_ids *out)
{
    return graph_neighbors(G(s), tenant, id, out);
}

static const l3_ops L3_MEM_OPS = {
    "embedded",      l3m_node_put,      l3m_node_get_json, l3m_node_exists,
    l3m_node_delete, l3m_edge_put,      l3m_edge_expire,   l3m_edge_exists,
    l3m_subgraph_json, l3m_find_nodes,  l3m_snapshot_write, l3m_snapshot_load,
    l3m_stats,       l3m_close,         l3m_neighbors,
};

int l3_mem_open(l3_store **out)
{
    *out = NULL;
    l3_mem *m = strata_calloc(1, sizeof(*m));
    if (m == NULL) {
        return STRATA_ENOMEM;
    }
    int rc = graph_create(&m->g);
    if (rc != STRATA_OK) {
        strata_free(m);
        return rc;
    }
    pthread_rwlock_init(&m->swap_lock, NULL);
    m->base.ops = &L3_MEM_OPS;
    *out = &m->base;
    return STRATA_OK;
}
