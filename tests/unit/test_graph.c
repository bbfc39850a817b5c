/*
 * test_graph.c - unit tests of the L3 graph store (src/l3/graph*.c): node and
 * edge upserts, validation, cascading deletes, BFS subgraphs (cycles, depth,
 * direction, type filter, limit, as_of), tenant isolation, the property
 * index, snapshots (round trip, truncation, corruption), allocation failures
 * and a concurrent read/write smoke test. Every test frees what it creates.
 */
#include <math.h>
#include <pthread.h>

#include "l3/graph.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------- */

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (v == NULL) {
        fprintf(stderr, "bad test JSON %s: %s\n", text, err.text);
        abort();
    }
    return v;
}

/* Put a node with props given as JSON text (NULL: none). */
static int put_node(graph *g, const char *tenant, const char *id, const char *label,
                    const char *props, int64_t ts)
{
    json_t *p = props ? J(props) : NULL;
    int rc = graph_node_put(g, tenant, id, label, p, ts, NULL);
    json_decref(p);
    return rc;
}

static int put_edge(graph *g, const char *tenant, const char *from, const char *to,
                    const char *type, const char *props, int64_t ts)
{
    json_t *p = props ? J(props) : NULL;
    int rc = graph_edge_put(g, tenant, from, to, type, p, 0, ts, NULL);
    json_decref(p);
    return rc;
}

/* Compact, key-sorted text of a JSON value, for comparisons (caller frees). */
static char *dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static int props_eq(const json_t *v, const char *expected)
{
    json_t *e = J(expected);
    int eq = json_equal(v, e);
    if (!eq) {
        char *s = dump(v);
        fprintf(stderr, "  props %s != %s\n", s ? s : "(null)", expected);
        free(s);
    }
    json_decref(e);
    return eq;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The node ids of r, sorted and joined by ','. Static buffer. */
static const char *ids_of(const graph_subgraph_result *r)
{
    static char buf[4096];
    const char *ids[256];
    size_t n = r->n_nodes < 256 ? r->n_nodes : 256;
    for (size_t i = 0; i < n; i++) {
        ids[i] = r->nodes[i].id;
    }
    qsort(ids, n, sizeof(ids[0]), cmp_str);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            strcat(buf, ",");
        }
        strcat(buf, ids[i]);
    }
    return buf;
}

/* The edges of r as "from>to:type", sorted and joined by ','. Static buffer. */
static const char *edges_of(const graph_subgraph_result *r)
{
    static char buf[8192];
    static char items[256][300];
    const char *ptrs[256];
    size_t n = r->n_edges < 256 ? r->n_edges : 256;
    for (size_t i = 0; i < n; i++) {
        snprintf(items[i], sizeof(items[i]), "%s>%s:%s", r->nodes[r->edges[i].from].id,
                 r->nodes[r->edges[i].to].id, r->edges[i].type);
        ptrs[i] = items[i];
    }
    qsort(ptrs, n, sizeof(ptrs[0]), cmp_str);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            strcat(buf, ",");
        }
        strcat(buf, ptrs[i]);
    }
    return buf;
}

/* Run a subgraph query; returns rc, result in *out. */
static int query(graph *g, const char *tenant, const char *center, int depth, graph_dir dir,
                 size_t limit, int64_t as_of, graph_subgraph_result **out)
{
    graph_query q;
    graph_query_init(&q);
    q.center = center;
    q.depth = depth;
    q.direction = dir;
    q.limit = limit;
    q.as_of_ms = as_of;
    return graph_subgraph(g, tenant, &q, out);
}

static int find(graph *g, const char *tenant, const char *label, const char *prop,
                const char *value, graph_ids *out)
{
    json_t *v = J(value);
    int rc = graph_find_nodes(g, tenant, label, prop, v, out);
    json_decref(v);
    return rc;
}

/* ---- nodes --------------------------------------------------------------- */

TEST(node_upsert_merge)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    bool created = false;
    json_t *p = J("{\"a\":1,\"b\":\"x\"}");
    ASSERT_OK(graph_node_put(g, "t", "user:1", "User", p, 100, &created));
    json_decref(p);
    ASSERT_TRUE(created);
    p = J("{\"b\":\"y\",\"c\":true,\"d\":{\"e\":[1,2]}}");
    ASSERT_OK(graph_node_put(g, "t", "user:1", "Person", p, 200, &created));
    ASSERT_TRUE(!created);
    /* The store copied the patch: changing it now changes nothing. */
    json_object_set_new(p, "b", json_string("changed"));
    json_decref(p);

    graph_node_info info;
    ASSERT_OK(graph_node_get(g, "t", "user:1", &info));
    ASSERT_STREQ(info.id, "user:1");
    ASSERT_STREQ(info.label, "Person");
    ASSERT_TRUE(props_eq(info.props, "{\"a\":1,\"b\":\"y\",\"c\":true,\"d\":{\"e\":[1,2]}}"));
    ASSERT_EQ(info.created_at, 100);
    ASSERT_EQ(info.updated_at, 200);
    /* The copy is the caller's own. */
    json_object_set_new(info.props, "a", json_integer(99));
    graph_node_info_free(&info);
    ASSERT_OK(graph_node_get(g, "t", "user:1", &info));
    ASSERT_TRUE(props_eq(info.props, "{\"a\":1,\"b\":\"y\",\"c\":true,\"d\":{\"e\":[1,2]}}"));
    graph_node_info_free(&info);

    /* No properties at all: an empty object, label still set. */
    ASSERT_OK(graph_node_put(g, "t", "topic:x", "Topic", NULL, 5, NULL));
    ASSERT_OK(graph_node_get(g, "t", "topic:x", &info));
    ASSERT_TRUE(props_eq(info.props, "{}"));
    graph_node_info_free(&info);

    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.nodes, 2);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

TEST(node_null_removes_key)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    /* Nulls in a creating put are not stored either. */
    ASSERT_OK(put_node(g, "t", "n", "L", "{\"a\":1,\"b\":2,\"z\":null}", 1));
    graph_node_info info;
    ASSERT_OK(graph_node_get(g, "t", "n", &info));
    ASSERT_TRUE(props_eq(info.props, "{\"a\":1,\"b\":2}"));
    graph_node_info_free(&info);
    ASSERT_OK(put_node(g, "t", "n", "L", "{\"a\":null,\"missing\":null}", 2));
    ASSERT_OK(graph_node_get(g, "t", "n", &info));
    ASSERT_TRUE(props_eq(info.props, "{\"b\":2}"));
    graph_node_info_free(&info);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

TEST(node_bad_input)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    char long_id[200];
    memset(long_id, 'a', sizeof(long_id));
    long_id[129] = '\0';
    ASSERT_EQ(put_node(g, "t", "", "L", NULL, 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, "t", "a b", "L", NULL, 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, "t", long_id, "L", NULL, 1), STRATA_EINVAL);
    long_id[128] = '\0';
    ASSERT_OK(put_node(g, "t", long_id, "L", NULL, 1));
    ASSERT_EQ(put_node(g, "t", "n", NULL, NULL, 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, "t", "n", "Bad Label", NULL, 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, NULL, "n", "L", NULL, 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, "t", "n", "L", "[1,2]", 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, "t", "n", "L", "\"str\"", 1), STRATA_EINVAL);
    ASSERT_EQ(put_node(g, "t", "n", "L", NULL, -1), STRATA_EINVAL);
    /* Nesting deeper than the limit is refused. */
    char deep[300] = "";
    for (int i = 0; i < 70; i++) {
        strcat(deep, "[");
    }
    for (int i = 0; i < 70; i++) {
        strcat(deep, "]");
    }
    char obj[400];
    snprintf(obj, sizeof(obj), "{\"d\":%s}", deep);
    ASSERT_EQ(put_node(g, "t", "n", "L", obj, 1), STRATA_EINVAL);

    graph_node_info info;
    ASSERT_EQ(graph_node_get(g, "t", "nope", &info), STRATA_ENOTFOUND);
    ASSERT_TRUE(info.props == NULL && info.id == NULL);
    ASSERT_EQ(graph_node_get(g, "other", long_id, &info), STRATA_ENOTFOUND);
    ASSERT_EQ(graph_node_delete(g, "t", "nope", NULL), STRATA_ENOTFOUND);
    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.nodes, 1);
    graph_free(g);
}

/* ---- edges --------------------------------------------------------------- */

TEST(edge_upsert_keyed)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "User", NULL, 1));
    ASSERT_OK(put_node(g, "t", "b", "Topic", NULL, 1));
    bool created = false;
    json_t *p = J("{\"weight\":0.5,\"keep\":1}");
    ASSERT_OK(graph_edge_put(g, "t", "a", "b", "LIKES", p, 0, 10, &created));
    json_decref(p);
    ASSERT_TRUE(created);
    p = J("{\"weight\":0.9,\"x\":\"y\"}");
    ASSERT_OK(graph_edge_put(g, "t", "a", "b", "LIKES", p, 0, 20, &created));
    json_decref(p);
    ASSERT_TRUE(!created);
    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.edges, 1);
    ASSERT_EQ(st.current_edges, 1);

    graph_edge_info e;
    ASSERT_OK(graph_edge_get(g, "t", "a", "b", "LIKES", 0, &e));
    ASSERT_TRUE(props_eq(e.props, "{\"weight\":0.9,\"keep\":1,\"x\":\"y\"}"));
    ASSERT_EQ(e.created_at, 10); /* merged in place: times unchanged */
    ASSERT_EQ(e.valid_from, 10);
    ASSERT_EQ(e.valid_to, 0);
    ASSERT_EQ(e.expired_at, 0);
    graph_edge_info_free(&e);

    /* Another type, or the reverse direction, is another edge. */
    ASSERT_OK(put_edge(g, "t", "a", "b", "KNOWS", NULL, 30));
    ASSERT_OK(put_edge(g, "t", "b", "a", "LIKES", "{\"weight\":1}", 30));
    /* An explicit valid_from. */
    ASSERT_OK(graph_edge_put(g, "t", "b", "b", "SELF", NULL, 5, 40, &created));
    ASSERT_TRUE(created);
    ASSERT_OK(graph_edge_get(g, "t", "b", "b", "SELF", 0, &e));
    ASSERT_EQ(e.valid_from, 5);
    ASSERT_EQ(e.created_at, 40);
    graph_edge_info_free(&e);
    graph_stats_get(g, &st);
    ASSERT_EQ(st.edges, 4);
    ASSERT_EQ(st.types, 3);
    ASSERT_EQ(graph_edge_get(g, "t", "a", "b", "NOPE", 0, &e), STRATA_ENOTFOUND);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

TEST(edge_missing_node)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "User", NULL, 1));
    ASSERT_EQ(put_edge(g, "t", "a", "zz", "LIKES", NULL, 1), STRATA_ENOTFOUND);
    ASSERT_EQ(put_edge(g, "t", "zz", "a", "LIKES", NULL, 1), STRATA_ENOTFOUND);
    ASSERT_EQ(put_edge(g, "other", "a", "a", "LIKES", NULL, 1), STRATA_ENOTFOUND);
    ASSERT_EQ(put_edge(g, "t", "a", "a", "bad type", NULL, 1), STRATA_EINVAL);
    ASSERT_EQ(graph_edge_expire(g, "t", "a", "zz", "LIKES", 5), STRATA_ENOTFOUND);
    ASSERT_EQ(graph_edge_purge(g, "t", "a", "zz", "LIKES", NULL), STRATA_ENOTFOUND);
    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.edges, 0);
    ASSERT_EQ(st.types, 0); /* a failed put interns nothing */
    graph_free(g);
}

TEST(edge_bad_weight)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "User", NULL, 1));
    ASSERT_OK(put_node(g, "t", "b", "Topic", NULL, 1));
    ASSERT_EQ(put_edge(g, "t", "a", "b", "R", "{\"weight\":\"0.9\"}", 1), STRATA_EINVAL);
    ASSERT_EQ(put_edge(g, "t", "a", "b", "R", "{\"weight\":true}", 1), STRATA_EINVAL);
    ASSERT_EQ(put_edge(g, "t", "a", "b", "R", "{\"weight\":[1]}", 1), STRATA_EINVAL);
    ASSERT_EQ(put_edge(g, "t", "a", "b", "R", "[0.9]", 1), STRATA_EINVAL);
    ASSERT_EQ(put_edge(g, "t", "a", "b", "R", "3", 1), STRATA_EINVAL);
    /* jansson cannot hold NaN or infinity, nor parse them or overflow... */
    ASSERT_TRUE(json_real(NAN) == NULL);
    ASSERT_TRUE(json_real(INFINITY) == NULL);
    json_error_t err;
    ASSERT_TRUE(json_loads("{\"weight\":NaN}", 0, &err) == NULL);
    ASSERT_TRUE(json_loads("{\"weight\":1e400}", 0, &err) == NULL);
    /* ...so every number that reaches us is finite: these are accepted. */
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", "{\"weight\":1}", 1));
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", "{\"weight\":-1e300}", 1));
    /* An update with a bad weight leaves the edge as it was. */
    ASSERT_EQ(put_edge(g, "t", "a", "b", "R", "{\"weight\":\"high\"}", 2), STRATA_EINVAL);
    graph_edge_info e;
    ASSERT_OK(graph_edge_get(g, "t", "a", "b", "R", 0, &e));
    ASSERT_TRUE(props_eq(e.props, "{\"weight\":-1e300}"));
    graph_edge_info_free(&e);
    /* null removes the weight. */
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", "{\"weight\":null}", 3));
    ASSERT_OK(graph_edge_get(g, "t", "a", "b", "R", 0, &e));
    ASSERT_TRUE(props_eq(e.props, "{}"));
    graph_edge_info_free(&e);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

TEST(delete_cascade)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    const char *ids[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(put_node(g, "t", ids[i], "N", "{\"k\":\"v\"}", 1));
    }
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "c", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "c", "a", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "a", "a", "SELF", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "a", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "c", "d", "R", NULL, 1));
    /* An expired version touching a is removed too. */
    ASSERT_OK(graph_edge_expire(g, "t", "a", "b", "R", 5));
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", NULL, 6));
    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.edges, 7);
    ASSERT_EQ(st.current_edges, 6);

    size_t n_edges = 0;
    ASSERT_OK(graph_node_delete(g, "t", "a", &n_edges));
    ASSERT_EQ(n_edges, 5); /* a>b twice, c>a, a>a, b>a */
    graph_stats_get(g, &st);
    ASSERT_EQ(st.nodes, 3);
    ASSERT_EQ(st.edges, 2);
    ASSERT_EQ(st.current_edges, 2);
    ASSERT_OK(graph_check(g));
    graph_node_info info;
    ASSERT_EQ(graph_node_get(g, "t", "a", &info), STRATA_ENOTFOUND);
    graph_ids found;
    ASSERT_OK(find(g, "t", "N", "k", "\"v\"", &found));
    ASSERT_EQ(found.n, 3);
    graph_ids_free(&found);

    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t", "b", 5, GRAPH_DIR_BOTH, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "b,c,d");
    ASSERT_STREQ(edges_of(r), "b>c:R,c>d:R");
    graph_subgraph_free(r);

    /* The id can be used again, and starts with no edges; slots are reused. */
    ASSERT_OK(put_node(g, "t", "a", "N", NULL, 9));
    ASSERT_OK(query(g, "t", "a", 2, GRAPH_DIR_BOTH, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a");
    ASSERT_EQ(r->n_edges, 0);
    graph_subgraph_free(r);

    /* Purge: every version of one key, or every type between two nodes. */
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", NULL, 10));
    ASSERT_OK(graph_edge_expire(g, "t", "a", "b", "R", 11));
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", NULL, 12));
    ASSERT_OK(put_edge(g, "t", "a", "b", "S", NULL, 12));
    size_t n = 0;
    ASSERT_OK(graph_edge_purge(g, "t", "a", "b", "R", &n));
    ASSERT_EQ(n, 2);
    ASSERT_OK(graph_edge_purge(g, "t", "a", "b", "NOPE", &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(put_edge(g, "t", "a", "b", "T", NULL, 12));
    ASSERT_OK(graph_edge_purge(g, "t", "a", "b", NULL, &n));
    ASSERT_EQ(n, 2);
    ASSERT_OK(graph_node_purge(g, "t", "d", &n));
    ASSERT_EQ(n, 1);
    graph_stats_get(g, &st);
    ASSERT_EQ(st.nodes, 3);
    ASSERT_EQ(st.edges, 1);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

/* ---- traversal ----------------------------------------------------------- */

TEST(traversal_cycles_self_loops)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "b", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "c", "N", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "c", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "c", "a", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "a", "a", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "b", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "a", "R", NULL, 1));
    for (int dir = 0; dir < 3; dir++) {
        graph_subgraph_result *r;
        ASSERT_OK(query(g, "t", "a", 5, (graph_dir)dir, 0, 0, &r));
        ASSERT_EQ(r->n_nodes, 3);
        ASSERT_STREQ(ids_of(r), "a,b,c");
        ASSERT_STREQ(edges_of(r), "a>a:R,a>b:R,b>a:R,b>b:R,b>c:R,c>a:R");
        ASSERT_STREQ(r->nodes[0].id, "a");
        ASSERT_EQ(r->nodes[0].depth, 0);
        ASSERT_TRUE(!r->truncated);
        graph_subgraph_free(r);
    }
    /* Depth 0 still returns the self-loop of the center. */
    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t", "b", 0, GRAPH_DIR_OUT, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "b");
    ASSERT_STREQ(edges_of(r), "b>b:R");
    graph_subgraph_free(r);
    graph_free(g);
}

TEST(depth_range)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    char id[16];
    char prev[16];
    for (int i = 0; i <= 7; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        ASSERT_OK(put_node(g, "t", id, "N", NULL, 1));
        if (i > 0) {
            ASSERT_OK(put_edge(g, "t", prev, id, "NEXT", NULL, 1));
        }
        memcpy(prev, id, sizeof(id));
    }
    for (int depth = 0; depth <= 5; depth++) {
        graph_subgraph_result *r;
        ASSERT_OK(query(g, "t", "n0", depth, GRAPH_DIR_OUT, 0, 0, &r));
        ASSERT_EQ(r->n_nodes, depth + 1);
        ASSERT_EQ(r->n_edges, depth);
        for (size_t i = 0; i < r->n_nodes; i++) {
            snprintf(id, sizeof(id), "n%zu", i);
            ASSERT_STREQ(r->nodes[i].id, id); /* breadth-first order */
            ASSERT_EQ(r->nodes[i].depth, i);
        }
        graph_subgraph_free(r);
    }
    graph_subgraph_result *r = (graph_subgraph_result *)1;
    ASSERT_EQ(query(g, "t", "n0", 6, GRAPH_DIR_OUT, 0, 0, &r), STRATA_EINVAL);
    ASSERT_TRUE(r == NULL);
    ASSERT_EQ(query(g, "t", "n0", -1, GRAPH_DIR_OUT, 0, 0, &r), STRATA_EINVAL);
    ASSERT_EQ(query(g, "t", "missing", 1, GRAPH_DIR_OUT, 0, 0, &r), STRATA_ENOTFOUND);
    ASSERT_EQ(query(g, "nobody", "n0", 1, GRAPH_DIR_OUT, 0, 0, &r), STRATA_ENOTFOUND);
    ASSERT_EQ(query(g, "t", "bad id!", 1, GRAPH_DIR_OUT, 0, 0, &r), STRATA_EINVAL);
    ASSERT_EQ(query(g, "t", "n0", 1, (graph_dir)7, 0, 0, &r), STRATA_EINVAL);
    ASSERT_EQ(query(g, "t", "n0", 1, GRAPH_DIR_OUT, 0, -5, &r), STRATA_EINVAL);
    graph_free(g);
}

TEST(direction)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "b", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "c", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "d", "N", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "c", "a", "R", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "d", "R", NULL, 1));
    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t", "a", 1, GRAPH_DIR_OUT, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a,b");
    ASSERT_STREQ(edges_of(r), "a>b:R");
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "a", 1, GRAPH_DIR_IN, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a,c");
    ASSERT_STREQ(edges_of(r), "c>a:R");
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "a", 1, GRAPH_DIR_BOTH, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a,b,c");
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "d", 2, GRAPH_DIR_IN, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a,b,d");
    ASSERT_STREQ(edges_of(r), "a>b:R,b>d:R");
    graph_subgraph_free(r);

    graph_dir dir;
    ASSERT_OK(graph_dir_parse("in", 2, &dir));
    ASSERT_EQ(dir, GRAPH_DIR_IN);
    ASSERT_OK(graph_dir_parse("out", 3, &dir));
    ASSERT_EQ(dir, GRAPH_DIR_OUT);
    ASSERT_OK(graph_dir_parse("both", 4, &dir));
    ASSERT_EQ(dir, GRAPH_DIR_BOTH);
    ASSERT_EQ(graph_dir_parse("sideways", 8, &dir), STRATA_EINVAL);
    ASSERT_EQ(graph_dir_parse("outx", 3 + 1, &dir), STRATA_EINVAL);
    graph_free(g);
}

TEST(type_filter)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "b", "N", NULL, 1));
    ASSERT_OK(put_node(g, "t", "c", "N", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "a", "b", "LIKES", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "b", "a", "KNOWS", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "a", "c", "KNOWS", NULL, 1));
    graph_query q;
    graph_query_init(&q);
    q.center = "a";
    q.depth = 2;
    const char *likes[] = {"LIKES"};
    q.types = likes;
    q.n_types = 1;
    graph_subgraph_result *r;
    ASSERT_OK(graph_subgraph(g, "t", &q, &r));
    ASSERT_STREQ(ids_of(r), "a,b");
    ASSERT_STREQ(edges_of(r), "a>b:LIKES"); /* b>a:KNOWS is filtered out too */
    graph_subgraph_free(r);
    const char *both[] = {"NOPE", "KNOWS", "LIKES"};
    q.types = both;
    q.n_types = 3;
    ASSERT_OK(graph_subgraph(g, "t", &q, &r));
    ASSERT_STREQ(ids_of(r), "a,b,c");
    ASSERT_STREQ(edges_of(r), "a>b:LIKES,a>c:KNOWS,b>a:KNOWS");
    graph_subgraph_free(r);
    const char *none[] = {"NOPE"};
    q.types = none;
    q.n_types = 1;
    ASSERT_OK(graph_subgraph(g, "t", &q, &r));
    ASSERT_STREQ(ids_of(r), "a");
    ASSERT_EQ(r->n_edges, 0);
    graph_subgraph_free(r);
    const char *bad[] = {"a,b"};
    q.types = bad;
    ASSERT_EQ(graph_subgraph(g, "t", &q, &r), STRATA_EINVAL);
    q.types = NULL;
    q.n_types = 2;
    ASSERT_EQ(graph_subgraph(g, "t", &q, &r), STRATA_EINVAL);
    graph_free(g);
}

TEST(limit_truncated)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "hub", "N", NULL, 1));
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "leaf%d", i);
        ASSERT_OK(put_node(g, "t", id, "N", NULL, 1));
        ASSERT_OK(put_edge(g, "t", "hub", id, "R", NULL, 1));
        ASSERT_OK(put_edge(g, "t", id, "hub", "R", NULL, 1));
    }
    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t", "hub", 1, GRAPH_DIR_BOTH, 5, 0, &r));
    ASSERT_EQ(r->n_nodes, 5);
    ASSERT_TRUE(r->truncated);
    ASSERT_EQ(r->n_edges, 8); /* both directions to each of the 4 leaves kept */
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "hub", 1, GRAPH_DIR_BOTH, 11, 0, &r));
    ASSERT_EQ(r->n_nodes, 11);
    ASSERT_TRUE(!r->truncated);
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "hub", 1, GRAPH_DIR_BOTH, 1, 0, &r));
    ASSERT_EQ(r->n_nodes, 1);
    ASSERT_TRUE(r->truncated);
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "hub", 0, GRAPH_DIR_BOTH, 1, 0, &r));
    ASSERT_TRUE(!r->truncated); /* depth 0 reaches nothing else */
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t", "hub", 2, GRAPH_DIR_BOTH, 0, 0, &r)); /* default limit */
    ASSERT_EQ(r->n_nodes, 11);
    graph_subgraph_free(r);
    ASSERT_EQ(query(g, "t", "hub", 1, GRAPH_DIR_BOTH, GRAPH_MAX_LIMIT + 1, 0, &r),
              STRATA_EINVAL);
    graph_free(g);
}

TEST(as_of_reads)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "a", "N", NULL, 100));
    ASSERT_OK(put_node(g, "t", "b", "N", NULL, 100));
    ASSERT_OK(put_edge(g, "t", "a", "b", "R", "{\"weight\":1}", 200));
    ASSERT_EQ(graph_edge_expire(g, "t", "a", "b", "R", 150), STRATA_EINVAL);
    ASSERT_EQ(graph_edge_expire(g, "t", "a", "b", "R", 0), STRATA_EINVAL);
    ASSERT_OK(graph_edge_expire(g, "t", "a", "b", "R", 300));
    ASSERT_EQ(graph_edge_expire(g, "t", "a", "b", "R", 310), STRATA_ENOTFOUND);
    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t", "a", 1, GRAPH_DIR_OUT, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a"); /* expired: gone from current reads */
    graph_subgraph_free(r);
    bool created = false;
    json_t *p = J("{\"weight\":2}");
    ASSERT_OK(graph_edge_put(g, "t", "a", "b", "R", p, 0, 400, &created));
    json_decref(p);
    ASSERT_TRUE(created); /* a new version */
    ASSERT_OK(put_node(g, "t", "c", "N", NULL, 500));
    ASSERT_OK(put_edge(g, "t", "a", "c", "R", NULL, 500));

    static const struct {
        int64_t as_of;
        const char *ids;
        int64_t created_at;     /* of the a>b version seen, -1: none */
        int64_t expired_at;
    } cases[] = {
        {150, "a", -1, 0},   {200, "a,b", 200, 300}, {299, "a,b", 200, 300},
        {300, "a", -1, 0},   {350, "a", -1, 0},       {400, "a,b", 400, 0},
        {450, "a,b", 400, 0}, {500, "a,b,c", 400, 0}, {0, "a,b,c", 400, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ASSERT_OK(query(g, "t", "a", 1, GRAPH_DIR_OUT, 0, cases[i].as_of, &r));
        ASSERT_STREQ(ids_of(r), cases[i].ids);
        int64_t seen = -1;
        int64_t expired = 0;
        for (size_t k = 0; k < r->n_edges; k++) {
            if (strcmp(r->nodes[r->edges[k].to].id, "b") == 0) {
                seen = r->edges[k].created_at;
                expired = r->edges[k].expired_at;
                if (expired != 0) {
                    ASSERT_EQ(r->edges[k].valid_to, expired);
                }
            }
        }
        ASSERT_EQ(seen, cases[i].created_at);
        ASSERT_EQ(expired, cases[i].expired_at);
        graph_subgraph_free(r);
    }
    /* A center that did not exist yet at as_of. */
    ASSERT_EQ(query(g, "t", "c", 1, GRAPH_DIR_BOTH, 0, 450, &r), STRATA_ENOTFOUND);
    ASSERT_OK(query(g, "t", "c", 1, GRAPH_DIR_BOTH, 0, 500, &r));
    ASSERT_STREQ(ids_of(r), "a,c");
    graph_subgraph_free(r);

    graph_edge_info e;
    ASSERT_OK(graph_edge_get(g, "t", "a", "b", "R", 250, &e));
    ASSERT_TRUE(props_eq(e.props, "{\"weight\":1}"));
    ASSERT_EQ(e.expired_at, 300);
    graph_edge_info_free(&e);
    ASSERT_OK(graph_edge_get(g, "t", "a", "b", "R", 0, &e));
    ASSERT_TRUE(props_eq(e.props, "{\"weight\":2}"));
    graph_edge_info_free(&e);
    ASSERT_EQ(graph_edge_get(g, "t", "a", "b", "R", 350, &e), STRATA_ENOTFOUND);
    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.edges, 3);
    ASSERT_EQ(st.current_edges, 2);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

TEST(tenant_isolation)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t1", "a", "User", "{\"name\":\"x\"}", 1));
    ASSERT_OK(put_node(g, "t1", "b", "User", "{\"name\":\"x\"}", 1));
    ASSERT_OK(put_node(g, "t2", "a", "User", "{\"name\":\"x\"}", 1));
    ASSERT_OK(put_node(g, "t2", "b", "Topic", "{\"name\":\"y\"}", 1));
    ASSERT_OK(put_edge(g, "t1", "a", "b", "R", NULL, 1));
    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t2", "a", 3, GRAPH_DIR_BOTH, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a");
    ASSERT_EQ(r->n_edges, 0);
    graph_subgraph_free(r);
    ASSERT_OK(query(g, "t1", "a", 3, GRAPH_DIR_BOTH, 0, 0, &r));
    ASSERT_STREQ(ids_of(r), "a,b");
    graph_subgraph_free(r);

    graph_ids ids;
    ASSERT_OK(find(g, "t1", "User", "name", "\"x\"", &ids));
    ASSERT_EQ(ids.n, 2);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t2", "User", "name", "\"x\"", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t3", "User", "name", "\"x\"", &ids));
    ASSERT_EQ(ids.n, 0);
    graph_ids_free(&ids);

    graph_node_info info;
    ASSERT_OK(graph_node_get(g, "t2", "b", &info));
    ASSERT_STREQ(info.label, "Topic");
    graph_node_info_free(&info);
    ASSERT_OK(graph_node_delete(g, "t1", "b", NULL));
    ASSERT_OK(graph_node_get(g, "t2", "b", &info));
    graph_node_info_free(&info);
    ASSERT_OK(graph_node_list(g, "t1", &ids));
    ASSERT_EQ(ids.n, 1);
    ASSERT_STREQ(ids.ids[0], "a");
    graph_ids_free(&ids);
    ASSERT_OK(graph_node_list(g, "t2", &ids));
    ASSERT_EQ(ids.n, 2);
    graph_ids_free(&ids);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

/* ---- index --------------------------------------------------------------- */

TEST(index_lookups)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "topic:coffee", "Topic", "{\"slug\":\"coffee\",\"n\":1}", 1));
    ASSERT_OK(put_node(g, "t", "topic:beans", "Topic", "{\"slug\":\"coffee\",\"n\":2.5}", 1));
    ASSERT_OK(put_node(g, "t", "user:1", "User", "{\"slug\":\"coffee\",\"vip\":true}", 1));
    graph_ids ids;
    ASSERT_OK(find(g, "t", "Topic", "slug", "\"coffee\"", &ids));
    ASSERT_EQ(ids.n, 2);
    ASSERT_STREQ(ids.ids[0], "topic:beans"); /* sorted */
    ASSERT_STREQ(ids.ids[1], "topic:coffee");
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "Topic", "n", "1.0", &ids)); /* 1.0 finds 1 */
    ASSERT_EQ(ids.n, 1);
    ASSERT_STREQ(ids.ids[0], "topic:coffee");
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "Topic", "n", "2.5", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "User", "vip", "true", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "User", "vip", "false", &ids));
    ASSERT_EQ(ids.n, 0);
    graph_ids_free(&ids);

    /* A changed value moves; an unchanged one stays; null removes. */
    ASSERT_OK(put_node(g, "t", "topic:coffee", "Topic", "{\"slug\":\"tea\"}", 2));
    ASSERT_OK(find(g, "t", "Topic", "slug", "\"coffee\"", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "Topic", "slug", "\"tea\"", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "Topic", "n", "1", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(put_node(g, "t", "topic:coffee", "Topic", "{\"n\":null}", 3));
    ASSERT_OK(find(g, "t", "Topic", "n", "1", &ids));
    ASSERT_EQ(ids.n, 0);
    graph_ids_free(&ids);
    /* A label change moves every entry. */
    ASSERT_OK(put_node(g, "t", "topic:coffee", "Product", NULL, 4));
    ASSERT_OK(find(g, "t", "Topic", "slug", "\"tea\"", &ids));
    ASSERT_EQ(ids.n, 0);
    graph_ids_free(&ids);
    ASSERT_OK(find(g, "t", "Product", "slug", "\"tea\"", &ids));
    ASSERT_EQ(ids.n, 1);
    graph_ids_free(&ids);
    ASSERT_OK(graph_check(g));

    /* Not indexable: refused rather than silently empty. */
    ASSERT_EQ(find(g, "t", "Topic", "slug", "{\"a\":1}", &ids), STRATA_EINVAL);
    ASSERT_EQ(find(g, "t", "Topic", "slug", "null", &ids), STRATA_EINVAL);
    ASSERT_EQ(graph_find_nodes(g, "t", "Topic", NULL, json_true(), &ids), STRATA_EINVAL);
    char big[GRAPH_INDEX_VALUE_MAX + 10];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_t *bigv = json_string(big);
    ASSERT_OK(graph_node_put(g, "t", "long", "Topic", NULL, 1, NULL));
    json_t *obj = json_pack("{s:O}", "slug", bigv);
    ASSERT_OK(graph_node_put(g, "t", "long", "Topic", obj, 1, NULL));
    ASSERT_EQ(graph_find_nodes(g, "t", "Topic", "slug", bigv, &ids), STRATA_EINVAL);
    json_decref(obj);
    json_decref(bigv);
    ASSERT_OK(graph_check(g));

    /* Delete empties the index. */
    ASSERT_OK(graph_node_delete(g, "t", "topic:coffee", NULL));
    ASSERT_OK(graph_node_delete(g, "t", "topic:beans", NULL));
    ASSERT_OK(graph_node_delete(g, "t", "user:1", NULL));
    ASSERT_OK(graph_node_delete(g, "t", "long", NULL));
    graph_stats st;
    graph_stats_get(g, &st);
    ASSERT_EQ(st.index_keys, 0);
    ASSERT_EQ(st.nodes, 0);
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

/* ---- JSON ---------------------------------------------------------------- */

TEST(subgraph_json)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    ASSERT_OK(put_node(g, "t", "user:1", "User", "{\"name\":\"A \\\"q\\\"\",\"age\":30}", 1));
    ASSERT_OK(put_node(g, "t", "topic:x", "Topic", NULL, 1));
    ASSERT_OK(put_edge(g, "t", "user:1", "topic:x", "INTERESTED_IN", "{\"weight\":0.9}", 7000));
    graph_subgraph_result *r;
    ASSERT_OK(query(g, "t", "user:1", 1, GRAPH_DIR_BOTH, 0, 0, &r));
    sbuf b;
    sbuf_init(&b, 1 << 20);
    ASSERT_OK(graph_subgraph_to_json(r, &b));
    ASSERT_STREQ(b.data,
                 "{\"nodes\":[{\"id\":\"user:1\",\"label\":\"User\",\"properties\":"
                 "{\"name\":\"A \\\"q\\\"\",\"age\":30}},{\"id\":\"topic:x\",\"label\":"
                 "\"Topic\",\"properties\":{}}],\"edges\":[{\"from\":\"user:1\",\"to\":"
                 "\"topic:x\",\"type\":\"INTERESTED_IN\",\"properties\":{\"weight\":0.9},"
                 "\"valid_from\":7,\"valid_to\":0,\"created_at\":7,\"expired_at\":0}],"
                 "\"truncated\":false}");
    /* It parses, and a result outlives both later writes and the store. */
    json_error_t err;
    json_t *parsed = json_loads(b.data, 0, &err);
    ASSERT_TRUE(parsed != NULL);
    json_decref(parsed);
    ASSERT_OK(put_node(g, "t", "user:1", "User", "{\"name\":\"B\"}", 2));
    graph_free(g);
    sbuf_reset(&b);
    ASSERT_OK(graph_subgraph_to_json(r, &b));
    ASSERT_TRUE(strstr(b.data, "\"A \\\"q\\\"\"") != NULL);
    graph_subgraph_free(r);
    sbuf_free(&b);
}

/* ---- snapshots ----------------------------------------------------------- */

/* Fill g with every feature: several tenants, labels and types, expired
 * versions, a freed and reused slot, nested and unusual property values.
 * Stops at the first error and returns it. */
static int build_sample(graph *g)
{
    json_t *odd = json_pack("{s:s#,s:f,s:f,s:I,s:[i,{s:n}]}", "nul", "a\0b", (int)3, "neg",
                            -0.0, "big", 1e300, "i", (json_int_t)-9007199254740993LL, "arr", 1,
                            "x");
    int rc = graph_node_put(g, "t1", "user:1", "User", odd, 10, NULL);
    json_decref(odd);
#define STEP(call)              \
    do {                        \
        if (rc == STRATA_OK) {  \
            rc = (call);        \
        }                       \
    } while (0)
    STEP(put_node(g, "t1", "topic:cafe", "Topic", "{\"title\":\"Caf\\u00e9 \\u2615\"}", 11));
    STEP(put_node(g, "t1", "gone", "Topic", NULL, 11));
    STEP(put_node(g, "t1", "product:p", "Product", "{\"price\":9.99,\"ok\":false}", 12));
    STEP(put_node(g, "t2", "user:1", "User", "{\"a\":{\"b\":{\"c\":[]}}}", 13));
    STEP(put_edge(g, "t1", "user:1", "topic:cafe", "INTERESTED_IN", "{\"weight\":0.9}", 20));
    STEP(put_edge(g, "t1", "user:1", "gone", "INTERESTED_IN", NULL, 20));
    STEP(put_edge(g, "t1", "topic:cafe", "product:p", "RELATED_TO", NULL, 21));
    STEP(graph_edge_expire(g, "t1", "topic:cafe", "product:p", "RELATED_TO", 30));
    STEP(put_edge(g, "t1", "topic:cafe", "product:p", "RELATED_TO", "{\"w\":1}", 31));
    STEP(put_edge(g, "t1", "product:p", "product:p", "SELF", NULL, 32));
    STEP(put_edge(g, "t2", "user:1", "user:1", "SELF", NULL, 33));
    STEP(graph_node_delete(g, "t1", "gone", NULL));
    STEP(put_node(g, "t1", "reused", "Topic", NULL, 40)); /* takes the freed slot */
#undef STEP
    return rc;
}

static graph *sample_graph(void)
{
    graph *g;
    if (graph_create(&g) != STRATA_OK) {
        return NULL;
    }
    if (build_sample(g) != STRATA_OK) {
        graph_free(g);
        return NULL;
    }
    return g;
}

TEST(serialize_round_trip)
{
    graph *g = sample_graph();
    ASSERT_TRUE(g != NULL);
    sbuf a;
    sbuf b;
    sbuf_init(&a, 1 << 24);
    sbuf_init(&b, 1 << 24);
    ASSERT_OK(graph_serialize(g, &a));
    graph *h;
    ASSERT_OK(graph_deserialize(a.data, a.len, &h));
    ASSERT_OK(graph_check(h));
    ASSERT_OK(graph_serialize(h, &b));
    ASSERT_EQ(a.len, b.len);
    ASSERT_TRUE(memcmp(a.data, b.data, a.len) == 0);

    graph_stats sg;
    graph_stats sh;
    graph_stats_get(g, &sg);
    graph_stats_get(h, &sh);
    ASSERT_TRUE(memcmp(&sg, &sh, sizeof(sg)) == 0);
    const char *tenants[] = {"t1", "t1", "t1", "t2"};
    const char *ids[] = {"user:1", "topic:cafe", "product:p", "user:1"};
    for (int i = 0; i < 4; i++) {
        graph_node_info x;
        graph_node_info y;
        ASSERT_OK(graph_node_get(g, tenants[i], ids[i], &x));
        ASSERT_OK(graph_node_get(h, tenants[i], ids[i], &y));
        ASSERT_STREQ(x.label, y.label);
        ASSERT_TRUE(json_equal(x.props, y.props));
        ASSERT_EQ(x.created_at, y.created_at);
        ASSERT_EQ(x.updated_at, y.updated_at);
        graph_node_info_free(&x);
        graph_node_info_free(&y);
        for (int64_t as_of = 0; as_of <= 40; as_of += 10) {
            graph_subgraph_result *rx;
            graph_subgraph_result *ry;
            int rx_rc = query(g, tenants[i], ids[i], 5, GRAPH_DIR_BOTH, 0, as_of, &rx);
            ASSERT_EQ(query(h, tenants[i], ids[i], 5, GRAPH_DIR_BOTH, 0, as_of, &ry), rx_rc);
            if (rx_rc == STRATA_OK) {
                sbuf_reset(&a);
                sbuf_reset(&b);
                ASSERT_OK(graph_subgraph_to_json(rx, &a));
                ASSERT_OK(graph_subgraph_to_json(ry, &b));
                ASSERT_STREQ(a.data, b.data);
                graph_subgraph_free(rx);
                graph_subgraph_free(ry);
            }
        }
    }
    graph_ids found;
    ASSERT_OK(find(h, "t1", "Product", "price", "9.99", &found));
    ASSERT_EQ(found.n, 1);
    graph_ids_free(&found);

    /* An empty store round-trips too. */
    graph *e;
    ASSERT_OK(graph_create(&e));
    sbuf_reset(&a);
    ASSERT_OK(graph_serialize(e, &a));
    graph_free(e);
    ASSERT_OK(graph_deserialize(a.data, a.len, &e));
    graph_stats st;
    graph_stats_get(e, &st);
    ASSERT_EQ(st.nodes, 0);
    graph_free(e);
    graph_free(h);
    graph_free(g);
    sbuf_free(&a);
    sbuf_free(&b);
}

/* Recompute the trailer so a mutation reaches the parser. */
static void fix_crc(uint8_t *p, size_t len)
{
    if (len >= 4) {
        wire_le32(p + len - 4, crc32c(0, p, len - 4));
    }
}

TEST(corrupt_buffers)
{
    graph *g = sample_graph();
    ASSERT_TRUE(g != NULL);
    sbuf a;
    sbuf_init(&a, 1 << 24);
    ASSERT_OK(graph_serialize(g, &a));
    graph_free(g);
    uint8_t *copy = malloc(a.len);
    ASSERT_TRUE(copy != NULL);
    graph *h = (graph *)1;

    /* Every truncation, with or without a valid checksum. */
    for (size_t n = 0; n < a.len; n++) {
        memcpy(copy, a.data, n);
        ASSERT_EQ(graph_deserialize(copy, n, &h), STRATA_ECORRUPT);
        ASSERT_TRUE(h == NULL);
        fix_crc(copy, n);
        ASSERT_EQ(graph_deserialize(copy, n, &h), STRATA_ECORRUPT);
    }
    /* Every byte changed: a bad checksum is always caught; with the checksum
     * fixed the parser either rejects it or builds a consistent store. */
    int accepted = 0;
    for (size_t i = 0; i + 4 < a.len; i++) {
        static const uint8_t deltas[] = {0x01, 0x80, 0xff};
        for (size_t d = 0; d < sizeof(deltas); d++) {
            memcpy(copy, a.data, a.len);
            copy[i] ^= deltas[d];
            ASSERT_EQ(graph_deserialize(copy, a.len, &h), STRATA_ECORRUPT);
            fix_crc(copy, a.len);
            int rc = graph_deserialize(copy, a.len, &h);
            ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ECORRUPT);
            if (rc == STRATA_OK) {
                accepted++;
                ASSERT_OK(graph_check(h));
                graph_free(h);
            }
        }
    }
    ASSERT_TRUE(accepted > 0); /* e.g. timestamps: any value is well-formed */

    /* Hostile counts: claims far beyond the data. */
    uint8_t hdr[40] = "STRGRAPH";
    wire_le32(hdr + 8, 1);
    for (int field = 0; field < 5; field++) {
        memset(hdr + 12, 0, 20);
        wire_le32(hdr + 12 + 4 * field, 0xffffffffu);
        fix_crc(hdr, 36);
        ASSERT_EQ(graph_deserialize(hdr, 36, &h), STRATA_ECORRUPT);
        wire_le32(hdr + 12 + 4 * field, 1);
        fix_crc(hdr, 36);
        ASSERT_EQ(graph_deserialize(hdr, 36, &h), STRATA_ECORRUPT);
    }
    memset(hdr + 12, 0, 20);
    fix_crc(hdr, 36);
    ASSERT_OK(graph_deserialize(hdr, 36, &h)); /* the minimal empty snapshot */
    graph_free(h);
    wire_le32(hdr + 8, 2);
    fix_crc(hdr, 36);
    ASSERT_EQ(graph_deserialize(hdr, 36, &h), STRATA_ECORRUPT);
    ASSERT_EQ(graph_deserialize(NULL, 0, &h), STRATA_ECORRUPT);
    free(copy);
    sbuf_free(&a);
}

/* ---- robustness ---------------------------------------------------------- */

/* Fail the Nth allocation for every N until a full run succeeds: every error
 * unwinds, the store stays consistent, and ASan sees no leak. */
TEST(alloc_failures)
{
    for (long n = 0; n < 100000; n++) {
        strata_alloc_fail_after(n);
        graph *g = NULL;
        graph *h = NULL;
        graph_subgraph_result *r = NULL;
        sbuf b;
        sbuf_init(&b, 1 << 20);
        int rc = graph_create(&g);
        if (rc == STRATA_OK) {
            rc = build_sample(g);
        }
        if (rc == STRATA_OK) {
            rc = query(g, "t1", "user:1", 3, GRAPH_DIR_BOTH, 0, 0, &r);
        }
        if (rc == STRATA_OK) {
            rc = graph_serialize(g, &b);
        }
        if (rc == STRATA_OK) {
            rc = graph_deserialize(b.data, b.len, &h);
        }
        strata_alloc_fail_after(-1);
        if (g != NULL) {
            ASSERT_OK(graph_check(g));
        }
        if (h != NULL) {
            ASSERT_OK(graph_check(h));
        }
        graph_subgraph_free(r);
        graph_free(h);
        graph_free(g);
        sbuf_free(&b);
        if (rc == STRATA_OK) {
            return; /* no failure was injected: every allocation was covered */
        }
        ASSERT_EQ(rc, STRATA_ENOMEM);
    }
    ASSERT_TRUE(!"alloc failure loop did not converge");
}

typedef struct rw_ctx {
    graph *g;
    int failures;
} rw_ctx;

static void *reader_main(void *arg)
{
    rw_ctx *c = arg;
    for (int i = 0; i < 2000; i++) {
        graph_subgraph_result *r;
        int rc = query(c->g, "t", "n0", 3, GRAPH_DIR_BOTH, 50, 0, &r);
        if (rc != STRATA_OK) {
            c->failures++;
            continue;
        }
        sbuf b;
        sbuf_init(&b, 1 << 20);
        if (graph_subgraph_to_json(r, &b) != STRATA_OK) {
            c->failures++;
        }
        sbuf_free(&b);
        graph_subgraph_free(r);
    }
    return NULL;
}

TEST(concurrent_readers_writer)
{
    graph *g;
    ASSERT_OK(graph_create(&g));
    char id[16];
    char to[16];
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        ASSERT_OK(put_node(g, "t", id, "N", "{\"v\":0}", 1));
    }
    rw_ctx ctx[2] = {{g, 0}, {g, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(pthread_create(&th[i], NULL, reader_main, &ctx[i]), 0);
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "n%d", i % 64);
        snprintf(to, sizeof(to), "n%d", (i * 7 + 1) % 64);
        char props[32];
        snprintf(props, sizeof(props), "{\"v\":%d}", i);
        ASSERT_OK(put_node(g, "t", id, "N", props, 2));
        ASSERT_OK(put_edge(g, "t", id, to, "R", props, 2));
        if (i % 3 == 0) {
            graph_edge_expire(g, "t", id, to, "R", 3);
        }
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(ctx[i].failures, 0);
    }
    ASSERT_OK(graph_check(g));
    graph_free(g);
}

TEST_MAIN(TEST_ENTRY(node_upsert_merge), TEST_ENTRY(node_null_removes_key),
          TEST_ENTRY(node_bad_input), TEST_ENTRY(edge_upsert_keyed),
          TEST_ENTRY(edge_missing_node), TEST_ENTRY(edge_bad_weight),
          TEST_ENTRY(delete_cascade), TEST_ENTRY(traversal_cycles_self_loops),
          TEST_ENTRY(depth_range), TEST_ENTRY(direction), TEST_ENTRY(type_filter),
          TEST_ENTRY(limit_truncated), TEST_ENTRY(as_of_reads), TEST_ENTRY(tenant_isolation),
          TEST_ENTRY(index_lookups), TEST_ENTRY(subgraph_json),
          TEST_ENTRY(serialize_round_trip), TEST_ENTRY(corrupt_buffers),
          TEST_ENTRY(alloc_failures), TEST_ENTRY(concurrent_readers_writer))
