/*
 * fuzz_graph_load.c - libFuzzer target for the L3 snapshot loader
 * (graph_deserialize in src/l3/graph_io.c).
 *
 * Input: one mode byte, then the snapshot bytes. Mode bit 0 set: the CRC-32C
 * trailer is recomputed before loading, so mutations reach the parser instead
 * of stopping at the checksum; clear: the bytes are loaded as given.
 *
 * Whatever loads must be a consistent store (graph_check), must serialise to
 * a canonical form that loads and serialises back to the same bytes, and must
 * answer subgraph queries (tenants "t1" and "t2", the names the seed corpus
 * uses) whose JSON parses. Anything else aborts. Inputs are capped at 64 KiB
 * so the fuzzer looks for bugs, not for slow big stores.
 *
 * Seeds: tests/fuzz/corpus/fuzz_graph_load/, written by this file built with
 * -DFUZZ_GRAPH_WRITE_SEEDS (its own main, no replay_main.c):
 *   gcc -DFUZZ_GRAPH_WRITE_SEEDS -Iinclude -Isrc <src/core and src/l3 sources>
 *       tests/fuzz/fuzz_graph_load.c -ljansson -lpthread -lm && ./a.out DIR
 * Fuzz: clang -fsanitize=fuzzer,address,undefined, same sources without the
 * define; replay: the same with tests/fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3/graph.h"

#define MAX_INPUT (64 * 1024)

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_graph_load: %s (%s)\n", what, strata_errmsg());
        abort();
    }
}

/* Subgraph queries from up to 8 nodes of one tenant, in every direction and
 * at a few as_of times, each rendered as JSON that must parse. */
static void exercise_queries(graph *g, const char *tenant)
{
    graph_ids ids;
    if (graph_node_list(g, tenant, &ids) != STRATA_OK) {
        return;
    }
    static const int64_t as_ofs[] = {0, 1, 25, 1000000};
    sbuf b;
    sbuf_init(&b, 16 << 20);
    for (size_t i = 0; i < ids.n && i < 8; i++) {
        graph_query q;
        graph_query_init(&q);
        q.center = ids.ids[i];
        q.depth = (int)(i % (GRAPH_MAX_DEPTH + 1));
        q.direction = (graph_dir)(i % 3);
        q.limit = 1 + i * 3;
        q.as_of_ms = as_ofs[i % 4];
        graph_subgraph_result *r;
        int rc = graph_subgraph(g, tenant, &q, &r);
        check(rc == STRATA_OK || rc == STRATA_ENOTFOUND, "subgraph failed");
        if (rc != STRATA_OK) {
            continue;
        }
        check(r->n_nodes >= 1 && r->n_nodes <= q.limit, "node count out of range");
        for (size_t k = 0; k < r->n_edges; k++) {
            check(r->edges[k].from < r->n_nodes && r->edges[k].to < r->n_nodes, "edge ends");
        }
        sbuf_reset(&b);
        check(graph_subgraph_to_json(r, &b) == STRATA_OK, "subgraph JSON");
        json_error_t err;
        json_t *v = json_loadb(b.data, b.len, JSON_ALLOW_NUL, &err);
        check(v != NULL, "subgraph JSON does not parse");
        json_decref(v);
        graph_subgraph_free(r);
    }
    sbuf_free(&b);
    graph_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) {
        return 0;
    }
    graph *g = NULL;
    if (size == 0) {
        check(graph_deserialize(data, 0, &g) == STRATA_ECORRUPT && g == NULL, "empty input");
        return 0;
    }
    size_t len = size - 1;
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data + 1, len);
    if ((data[0] & 1) && len >= 4) {
        wire_le32(copy + len - 4, crc32c(0, copy, len - 4));
    }
    int rc = graph_deserialize(copy, len, &g);
    check(rc == STRATA_OK || rc == STRATA_ECORRUPT, "unexpected load error");
    check((rc == STRATA_OK) == (g != NULL), "out parameter");
    if (g != NULL) {
        check(graph_check(g) == STRATA_OK, "loaded store inconsistent");
        sbuf a;
        sbuf b;
        sbuf_init(&a, 64 << 20);
        sbuf_init(&b, 64 << 20);
        check(graph_serialize(g, &a) == STRATA_OK, "serialize");
        graph *h = NULL;
        check(graph_deserialize(a.data, a.len, &h) == STRATA_OK, "canonical form reloads");
        check(graph_serialize(h, &b) == STRATA_OK, "serialize again");
        check(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "round trip differs");
        exercise_queries(g, "t1");
        exercise_queries(g, "t2");
        graph_free(h);
        graph_free(g);
        sbuf_free(&a);
        sbuf_free(&b);
    }
    free(copy);
    return 0;
}

#ifdef FUZZ_GRAPH_WRITE_SEEDS
/* ---- seed corpus writer ---------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    check(v != NULL, "seed JSON");
    return v;
}

static void node(graph *g, const char *tenant, const char *id, const char *label,
                 const char *props, int64_t ts)
{
    json_t *p = props ? parse(props) : NULL;
    check(graph_node_put(g, tenant, id, label, p, ts, NULL) == STRATA_OK, "seed node");
    json_decref(p);
}

static void edge(graph *g, const char *tenant, const char *from, const char *to,
                 const char *type, const char *props, int64_t ts)
{
    json_t *p = props ? parse(props) : NULL;
    check(graph_edge_put(g, tenant, from, to, type, p, 0, ts, NULL) == STRATA_OK, "seed edge");
    json_decref(p);
}

static void write_seed(const char *dir, const char *name, uint8_t mode, graph *g, size_t cut)
{
    sbuf b;
    sbuf_init(&b, 1 << 20);
    check(graph_serialize(g, &b) == STRATA_OK, "seed serialize");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    check(f != NULL, "seed file");
    size_t n = cut && cut < b.len ? cut : b.len;
    fputc(mode, f);
    fwrite(b.data, 1, n, f);
    fclose(f);
    sbuf_free(&b);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    graph *g;
    check(graph_create(&g) == STRATA_OK, "create");
    write_seed(dir, "empty", 0, g, 0);

    node(g, "t1", "user:1", "User", "{\"name\":\"Ada\",\"age\":36}", 10);
    node(g, "t1", "topic:coffee", "Topic", "{\"slug\":\"coffee\"}", 11);
    node(g, "t1", "product:beans", "Product", "{\"price\":9.5,\"tags\":[\"a\",{\"b\":null}]}", 12);
    node(g, "t1", "constraint:no-sugar", "Constraint", NULL, 13);
    node(g, "t2", "user:1", "User", "{\"name\":\"Other\"}", 14);
    edge(g, "t1", "user:1", "topic:coffee", "INTERESTED_IN", "{\"weight\":0.9}", 20);
    edge(g, "t1", "user:1", "constraint:no-sugar", "HAS_CONSTRAINT", NULL, 21);
    edge(g, "t1", "topic:coffee", "product:beans", "RELATED_TO", "{\"weight\":1}", 22);
    check(graph_edge_expire(g, "t1", "topic:coffee", "product:beans", "RELATED_TO", 30) == 0,
          "expire");
    edge(g, "t1", "topic:coffee", "product:beans", "RELATED_TO", "{\"weight\":0.5}", 31);
    edge(g, "t1", "product:beans", "product:beans", "SELF", NULL, 32);
    edge(g, "t2", "user:1", "user:1", "SELF", NULL, 33);
    write_seed(dir, "small", 0, g, 0);
    write_seed(dir, "small_fixcrc", 1, g, 0);
    write_seed(dir, "small_truncated", 1, g, 100);

    /* A denser one: a ring with chords in each tenant. */
    char a[32];
    char b[32];
    for (int i = 0; i < 40; i++) {
        snprintf(a, sizeof(a), "n%d", i);
        node(g, i % 2 ? "t1" : "t2", a, i % 3 ? "Topic" : "User", "{\"k\":1}", 40 + i);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(a, sizeof(a), "n%d", i);
        snprintf(b, sizeof(b), "n%d", (i + 2) % 40);
        edge(g, i % 2 ? "t1" : "t2", a, b, "NEXT", NULL, 100 + i);
        snprintf(b, sizeof(b), "n%d", (i * 7 + 4) % 40);
        if ((i % 2) == (((i * 7 + 4) % 40) % 2)) {
            edge(g, i % 2 ? "t1" : "t2", a, b, "CHORD", "{\"weight\":-2.25}", 150 + i);
        }
    }
    write_seed(dir, "ring", 1, g, 0);
    graph_free(g);
    return 0;
}
#endif
