/*
 * bench_graph.c - the L3 graph store against SQLite on the same subgraph
 * queries, in one process and one run (PERFORMANCE.md: compare ratios from
 * one run only).
 *
 * Data: a power-law graph built by preferential attachment (Barabasi-Albert,
 * fixed seed): N nodes, each new node linking M distinct older nodes chosen
 * with probability proportional to their degree, topped up with preferential
 * extra edges to exactly E edges. Node ids "n:<i>", five labels, small
 * property objects; edges carry one of four types and {"weight": w}.
 *
 * Queries: Q centres drawn uniformly (fixed seed), depth 1 and 2, node limit
 * L, directions "both" and "out", current edges (as_of 0). Each query returns
 * the nodes (id, label, properties) and the edges between them (from, to,
 * type, properties, four times), as the HTTP route needs.
 *   strata   graph_subgraph() + graph_subgraph_free(); also timed with
 *            graph_subgraph_to_json() into a reused buffer
 *   sqlite   one prepared statement: a recursive CTE over an edge table with
 *            covering indexes (src, expired_at, dst) and (dst, expired_at,
 *            src), LIMIT inside the recursion so SQLite also stops early,
 *            then the nodes and the edges among them (CROSS JOIN pins that
 *            join order); every column of every row is read. In-memory
 *            database, loaded in one transaction and indexed before timing
 *            (not ANALYZEd: see load_sqlite).
 * Prints, per variant, wall-clock p50 / p99 / mean and thread-CPU-time p50 /
 * p99 (the machine is shared: CPU time leaves out time other processes took
 * the core mid-query), and the SQLite / Strata ratios of both.
 *
 * Usage: bench_graph [--nodes N] [--edges E] [--queries Q] [--limit L] [--explain]
 *                    [--no-sqlite]
 * (--explain prints SQLite's query plans first; --no-sqlite times Strata
 * alone, for profiling).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "l3/graph.h"

#define ATTACH_M 10
#define N_LABELS 5
#define N_TYPES 4

static const char *const LABELS[N_LABELS] = {"User", "Topic", "Preference", "Product",
                                             "Constraint"};
static const char *const TYPES[N_TYPES] = {"INTERESTED_IN", "RELATED_TO", "HAS_CONSTRAINT",
                                           "PREFERS"};
static const char *const TENANT = "bench";

/* ---- utilities ----------------------------------------------------------- */

static uint64_t g_rng = 0x5eed5eed12345678ull;

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng_next() % n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of this thread: unlike wall time, it does not count the time
 * other processes on a shared machine take the core away mid-query. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Resident set size in MiB (Linux), for the memory each store takes. */
static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0;
    unsigned long resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_graph: %s: %s\n", what, strata_errmsg());
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct summary {
    double p50_us;              /* wall clock */
    double p99_us;
    double mean_us;
    double cpu_p50_us;          /* thread CPU time */
    double cpu_p99_us;
    double mean_nodes;
    double mean_edges;
    double truncated_pct;
} summary;

static summary summarise(double *lat_s, double *cpu_s_arr, size_t n, double nodes, double edges,
                         size_t truncated)
{
    summary s;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        total += lat_s[i];
    }
    qsort(lat_s, n, sizeof(*lat_s), cmp_double);
    qsort(cpu_s_arr, n, sizeof(*cpu_s_arr), cmp_double);
    s.p50_us = lat_s[n / 2] * 1e6;
    s.p99_us = lat_s[(size_t)((double)n * 0.99)] * 1e6;
    s.cpu_p50_us = cpu_s_arr[n / 2] * 1e6;
    s.cpu_p99_us = cpu_s_arr[(size_t)((double)n * 0.99)] * 1e6;
    s.mean_us = total / (double)n * 1e6;
    s.mean_nodes = nodes / (double)n;
    s.mean_edges = edges / (double)n;
    s.truncated_pct = 100.0 * (double)truncated / (double)n;
    return s;
}

/* ---- the graph ----------------------------------------------------------- */

typedef struct edge_rec {
    uint32_t from;
    uint32_t to;
    uint8_t type;
    double weight;
} edge_rec;

typedef struct dataset {
    uint32_t n_nodes;
    edge_rec *edges;
    size_t n_edges;
} dataset;

/* Preferential attachment. `ends` holds every edge endpoint once, so a
 * uniform pick from it is a degree-proportional pick of a node. */
static void dataset_build(dataset *d, uint32_t n_nodes, size_t n_edges)
{
    d->n_nodes = n_nodes;
    d->edges = malloc(n_edges * sizeof(*d->edges));
    uint32_t *ends = malloc(2 * n_edges * sizeof(*ends));
    if (d->edges == NULL || ends == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    size_t n_ends = 0;
    size_t k = 0;
    uint32_t m0 = ATTACH_M + 1;
    for (uint32_t i = 0; i < m0 && k < n_edges; i++) {
        for (uint32_t j = i + 1; j < m0 && k < n_edges; j++) {
            d->edges[k++] = (edge_rec){j, i, (uint8_t)rng_below(N_TYPES), 0};
            ends[n_ends++] = i;
            ends[n_ends++] = j;
        }
    }
    for (uint32_t v = m0; v < n_nodes && k < n_edges; v++) {
        uint32_t chosen[ATTACH_M];
        int n_chosen = 0;
        while (n_chosen < ATTACH_M && k < n_edges) {
            uint32_t t = ends[rng_below((uint32_t)n_ends)];
            bool dup = false;
            for (int c = 0; c < n_chosen; c++) {
                dup = dup || chosen[c] == t;
            }
            if (dup) {
                continue;
            }
            chosen[n_chosen++] = t;
            d->edges[k++] = (edge_rec){v, t, (uint8_t)rng_below(N_TYPES), 0};
        }
        for (int c = 0; c < n_chosen; c++) {
            ends[n_ends++] = v;
            ends[n_ends++] = chosen[c];
        }
    }
    /* Top up to exactly n_edges: preferential extra edges between existing
     * nodes (a repeated (from, to, type), vanishingly rare, would merge in
     * Strata and be a second row in SQLite). */
    while (k < n_edges) {
        uint32_t a = rng_below(n_nodes);
        uint32_t b = ends[rng_below((uint32_t)n_ends)];
        if (a == b) {
            continue;
        }
        d->edges[k++] = (edge_rec){a, b, (uint8_t)rng_below(N_TYPES), 0};
    }
    for (size_t i = 0; i < k; i++) {
        d->edges[i].weight = (double)(rng_next() % 1000) / 1000.0;
    }
    d->n_edges = k;
    free(ends);
}

static void node_id(char *buf, size_t n, uint32_t i)
{
    snprintf(buf, n, "n:%u", i);
}

static graph *load_strata(const dataset *d, double *secs)
{
    graph *g;
    if (graph_create(&g) != STRATA_OK) {
        die("graph_create");
    }
    double t0 = now_s();
    char id[32];
    char from[32];
    char to[32];
    for (uint32_t i = 0; i < d->n_nodes; i++) {
        node_id(id, sizeof(id), i);
        char name[48];
        snprintf(name, sizeof(name), "node %u", i);
        json_t *p = json_pack("{s:s,s:i}", "name", name, "rank", (int)i);
        if (graph_node_put(g, TENANT, id, LABELS[i % N_LABELS], p, 1000, NULL) != STRATA_OK) {
            die("graph_node_put");
        }
        json_decref(p);
    }
    for (size_t i = 0; i < d->n_edges; i++) {
        const edge_rec *e = &d->edges[i];
        node_id(from, sizeof(from), e->from);
        node_id(to, sizeof(to), e->to);
        json_t *p = json_pack("{s:f}", "weight", e->weight);
        if (graph_edge_put(g, TENANT, from, to, TYPES[e->type], p, 0, 2000, NULL) != STRATA_OK) {
            die("graph_edge_put");
        }
        json_decref(p);
    }
    *secs = now_s() - t0;
    return g;
}

/* ---- SQLite -------------------------------------------------------------- */

static void sql_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n  in: %s\n", err, sql);
        exit(1);
    }
}

static sqlite3_stmt *sql_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
        exit(1);
    }
    return st;
}

static sqlite3 *load_sqlite(const dataset *d, double *secs)
{
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        fprintf(stderr, "sqlite open failed\n");
        exit(1);
    }
    double t0 = now_s();
    sql_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;");
    sql_exec(db, "CREATE TABLE node(nid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, "
                 "id TEXT NOT NULL, label TEXT NOT NULL, props TEXT NOT NULL, "
                 "created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)");
    sql_exec(db, "CREATE TABLE edge(eid INTEGER PRIMARY KEY, src INTEGER NOT NULL, "
                 "dst INTEGER NOT NULL, type TEXT NOT NULL, props TEXT NOT NULL, "
                 "valid_from INTEGER NOT NULL, valid_to INTEGER NOT NULL, "
                 "created_at INTEGER NOT NULL, expired_at INTEGER NOT NULL)");
    sql_exec(db, "BEGIN");
    sqlite3_stmt *ins_node = sql_prepare(db, "INSERT INTO node VALUES(?1, ?2, ?3, ?4, ?5, 1000, 1000)");
    char id[32];
    char props[96];
    for (uint32_t i = 0; i < d->n_nodes; i++) {
        node_id(id, sizeof(id), i);
        snprintf(props, sizeof(props), "{\"name\":\"node %u\",\"rank\":%u}", i, i);
        sqlite3_bind_int64(ins_node, 1, i);
        sqlite3_bind_text(ins_node, 2, TENANT, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_node, 3, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins_node, 4, LABELS[i % N_LABELS], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_node, 5, props, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins_node) != SQLITE_DONE) {
            fprintf(stderr, "sqlite insert: %s\n", sqlite3_errmsg(db));
            exit(1);
        }
        sqlite3_reset(ins_node);
    }
    sqlite3_finalize(ins_node);
    sqlite3_stmt *ins_edge =
        sql_prepare(db, "INSERT INTO edge(src, dst, type, props, valid_from, valid_to, "
                        "created_at, expired_at) VALUES(?1, ?2, ?3, ?4, 2000, 0, 2000, 0)");
    for (size_t i = 0; i < d->n_edges; i++) {
        const edge_rec *e = &d->edges[i];
        snprintf(props, sizeof(props), "{\"weight\":%.17g}", e->weight);
        sqlite3_bind_int64(ins_edge, 1, e->from);
        sqlite3_bind_int64(ins_edge, 2, e->to);
        sqlite3_bind_text(ins_edge, 3, TYPES[e->type], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_edge, 4, props, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins_edge) != SQLITE_DONE) {
            fprintf(stderr, "sqlite insert: %s\n", sqlite3_errmsg(db));
            exit(1);
        }
        sqlite3_reset(ins_edge);
    }
    sqlite3_finalize(ins_edge);
    sql_exec(db, "COMMIT");
    sql_exec(db, "CREATE UNIQUE INDEX node_key ON node(tenant, id)");
    sql_exec(db, "CREATE INDEX edge_out ON edge(src, expired_at, dst)");
    sql_exec(db, "CREATE INDEX edge_in ON edge(dst, expired_at, src)");
    /* No ANALYZE: with statistics SQLite 3.40 adds a Bloom filter per edge
     * lookup, sized to the table and rebuilt by every execution, which made
     * these queries ~100x slower. Without it the plan is the indexed one
     * (see --explain), SQLite's best here. */
    *secs = now_s() - t0;
    return db;
}

/* ?1 tenant, ?2 center id, ?3 depth, ?4 node limit. The first column tells
 * node rows ('n') from edge rows ('e'). */
static const char *const SQL_BOTH =
    "WITH RECURSIVE bfs(nid, d) AS ("
    "  SELECT nid, 0 FROM node WHERE tenant = ?1 AND id = ?2"
    "  UNION"
    "  SELECT e.dst, b.d + 1 FROM bfs b JOIN edge e ON e.src = b.nid AND e.expired_at = 0"
    "   WHERE b.d < ?3"
    "  UNION"
    "  SELECT e.src, b.d + 1 FROM bfs b JOIN edge e ON e.dst = b.nid AND e.expired_at = 0"
    "   WHERE b.d < ?3"
    "  LIMIT ?4"
    "),"
    " ns(nid, d) AS MATERIALIZED (SELECT nid, min(d) FROM bfs GROUP BY nid ORDER BY 2 LIMIT ?4)"
    " SELECT 'n', n.id, n.label, n.props, NULL, NULL, NULL, NULL, NULL"
    "   FROM ns JOIN node n ON n.nid = ns.nid"
    " UNION ALL"
    " SELECT 'e', a.id, b.id, e.type, e.props, e.valid_from, e.valid_to, e.created_at,"
    "        e.expired_at"
    "   FROM ns s CROSS JOIN edge e ON e.src = s.nid AND e.expired_at = 0"
    "   CROSS JOIN ns t ON t.nid = e.dst CROSS JOIN node a ON a.nid = e.src"
    "   CROSS JOIN node b ON b.nid = e.dst";

static const char *const SQL_OUT =
    "WITH RECURSIVE bfs(nid, d) AS ("
    "  SELECT nid, 0 FROM node WHERE tenant = ?1 AND id = ?2"
    "  UNION"
    "  SELECT e.dst, b.d + 1 FROM bfs b JOIN edge e ON e.src = b.nid AND e.expired_at = 0"
    "   WHERE b.d < ?3"
    "  LIMIT ?4"
    "),"
    " ns(nid, d) AS MATERIALIZED (SELECT nid, min(d) FROM bfs GROUP BY nid ORDER BY 2 LIMIT ?4)"
    " SELECT 'n', n.id, n.label, n.props, NULL, NULL, NULL, NULL, NULL"
    "   FROM ns JOIN node n ON n.nid = ns.nid"
    " UNION ALL"
    " SELECT 'e', a.id, b.id, e.type, e.props, e.valid_from, e.valid_to, e.created_at,"
    "        e.expired_at"
    "   FROM ns s CROSS JOIN edge e ON e.src = s.nid AND e.expired_at = 0"
    "   CROSS JOIN ns t ON t.nid = e.dst CROSS JOIN node a ON a.nid = e.src"
    "   CROSS JOIN node b ON b.nid = e.dst";

/* Run one query; counts node and edge rows; touches every column. */
static void sqlite_query(sqlite3_stmt *st, const char *center, int depth, int limit,
                         size_t *n_nodes, size_t *n_edges)
{
    sqlite3_bind_text(st, 1, TENANT, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, center, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, depth);
    sqlite3_bind_int(st, 4, limit);
    *n_nodes = 0;
    *n_edges = 0;
    size_t bytes = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *kind = sqlite3_column_text(st, 0);
        for (int c = 1; c < 9; c++) {
            if (sqlite3_column_type(st, c) == SQLITE_TEXT) {
                bytes += (size_t)sqlite3_column_bytes(st, c);
                (void)sqlite3_column_text(st, c);
            } else {
                bytes += (size_t)sqlite3_column_int64(st, c);
            }
        }
        if (kind[0] == 'n') {
            (*n_nodes)++;
        } else {
            (*n_edges)++;
        }
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "sqlite query failed (%d)\n", rc);
        exit(1);
    }
    sqlite3_reset(st);
    if (bytes == 0) {
        fprintf(stderr, "sqlite returned nothing\n");
        exit(1);
    }
}

/* ---- runs ---------------------------------------------------------------- */

typedef struct variant {
    const char *name;
    int depth;
    graph_dir dir;
} variant;

static summary run_strata(graph *g, const uint32_t *centres, size_t nq, const variant *v,
                          size_t limit, bool with_json, double *lat, double *cpu)
{
    char id[32];
    double nodes = 0;
    double edges = 0;
    size_t truncated = 0;
    sbuf b;
    sbuf_init(&b, 64 << 20);
    for (size_t i = 0; i < nq; i++) {
        node_id(id, sizeof(id), centres[i]);
        graph_query q;
        graph_query_init(&q);
        q.center = id;
        q.depth = v->depth;
        q.direction = v->dir;
        q.limit = limit;
        double c0 = cpu_s();
        double t0 = now_s();
        graph_subgraph_result *r;
        if (graph_subgraph(g, TENANT, &q, &r) != STRATA_OK) {
            die("graph_subgraph");
        }
        if (with_json) {
            sbuf_reset(&b);
            if (graph_subgraph_to_json(r, &b) != STRATA_OK) {
                die("graph_subgraph_to_json");
            }
        }
        nodes += (double)r->n_nodes;
        edges += (double)r->n_edges;
        truncated += r->truncated;
        graph_subgraph_free(r);
        lat[i] = now_s() - t0;
        cpu[i] = cpu_s() - c0;
    }
    sbuf_free(&b);
    return summarise(lat, cpu, nq, nodes, edges, truncated);
}

static summary run_sqlite(sqlite3 *db, const uint32_t *centres, size_t nq, const variant *v,
                          size_t limit, double *lat, double *cpu)
{
    sqlite3_stmt *st = sql_prepare(db, v->dir == GRAPH_DIR_OUT ? SQL_OUT : SQL_BOTH);
    char id[32];
    double nodes = 0;
    double edges = 0;
    size_t truncated = 0;
    for (size_t i = 0; i < nq; i++) {
        node_id(id, sizeof(id), centres[i]);
        size_t n_nodes;
        size_t n_edges;
        double c0 = cpu_s();
        double t0 = now_s();
        sqlite_query(st, id, v->depth, (int)limit, &n_nodes, &n_edges);
        lat[i] = now_s() - t0;
        cpu[i] = cpu_s() - c0;
        nodes += (double)n_nodes;
        edges += (double)n_edges;
        truncated += n_nodes >= limit;
    }
    sqlite3_finalize(st);
    return summarise(lat, cpu, nq, nodes, edges, truncated);
}

/* Print SQLite's plan for a statement (bench_graph --explain). */
static void explain(sqlite3 *db, const char *sql)
{
    size_t n = strlen(sql) + 32;
    char *text = malloc(n);
    snprintf(text, n, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st = sql_prepare(db, text);
    sqlite3_bind_text(st, 1, TENANT, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "n:1", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, 2);
    sqlite3_bind_int(st, 4, 1000);
    while (sqlite3_step(st) == SQLITE_ROW) {
        printf("    %3d %3d  %s\n", sqlite3_column_int(st, 0), sqlite3_column_int(st, 1),
               (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    free(text);
}

static void print_row(const char *engine, const variant *v, const summary *s)
{
    printf("  %-12s %-12s p50 %8.1f  p99 %8.1f  mean %8.1f | cpu p50 %8.1f  p99 %8.1f |"
           " nodes %6.1f  edges %7.1f  at-limit %4.1f%%\n",
           engine, v->name, s->p50_us, s->p99_us, s->mean_us, s->cpu_p50_us, s->cpu_p99_us,
           s->mean_nodes, s->mean_edges, s->truncated_pct);
}

int main(int argc, char **argv)
{
    uint32_t n_nodes = 100000;
    size_t n_edges = 1000000;
    size_t nq = 10000;
    size_t limit = 1000;
    bool do_explain = false;
    bool no_sqlite = false;
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--explain") == 0) {
            do_explain = true;
            i--;
        } else if (strcmp(argv[i], "--no-sqlite") == 0) {
            no_sqlite = true;
            i--;
        } else if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--nodes") == 0) {
            n_nodes = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--edges") == 0) {
            n_edges = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--queries") == 0) {
            nq = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--limit") == 0) {
            limit = strtoull(argv[i + 1], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--nodes N] [--edges E] [--queries Q] [--limit L] [--explain] [--no-sqlite]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n_nodes <= ATTACH_M + 1 || nq == 0 || limit == 0) {
        fprintf(stderr, "need more than %d nodes, some queries and a limit\n", ATTACH_M + 1);
        return 2;
    }

    dataset d;
    dataset_build(&d, n_nodes, n_edges);
    size_t max_in = 0;
    size_t max_out = 0;
    {
        uint32_t *in = calloc(n_nodes, sizeof(*in));
        uint32_t *out = calloc(n_nodes, sizeof(*out));
        for (size_t i = 0; i < d.n_edges; i++) {
            out[d.edges[i].from]++;
            in[d.edges[i].to]++;
        }
        for (uint32_t i = 0; i < n_nodes; i++) {
            max_in = in[i] > max_in ? in[i] : max_in;
            max_out = out[i] > max_out ? out[i] : max_out;
        }
        free(in);
        free(out);
    }
    printf("graph: %u nodes, %zu edges (preferential attachment, m=%d), max in-degree %zu, "
           "max out-degree %zu\n",
           n_nodes, d.n_edges, ATTACH_M, max_in, max_out);

    double t_strata;
    double t_sqlite;
    double rss0 = rss_mib();
    graph *g = load_strata(&d, &t_strata);
    double rss_strata = rss_mib() - rss0;
    graph_stats st;
    graph_stats_get(g, &st);
    printf("load: strata %.2f s (%" PRIu64 " nodes, %" PRIu64 " edges), resident +%.0f MiB\n",
           t_strata, st.nodes, st.edges, rss_strata);
    sqlite3 *db = NULL;
    if (!no_sqlite) {
        db = load_sqlite(&d, &t_sqlite);
        printf("load: sqlite %.2f s (in memory, indexed; SQLite %s), %.0f MiB in use\n",
               t_sqlite, sqlite3_libversion(),
               (double)sqlite3_memory_used() / (1024.0 * 1024.0));
    }

    if (do_explain && db != NULL) {
        printf("sqlite plan, direction both:\n");
        explain(db, SQL_BOTH);
        printf("sqlite plan, direction out:\n");
        explain(db, SQL_OUT);
    }

    uint32_t *centres = malloc(nq * sizeof(*centres));
    double *lat = malloc(nq * sizeof(*lat));
    double *cpu = malloc(nq * sizeof(*cpu));
    for (size_t i = 0; i < nq; i++) {
        centres[i] = rng_below(n_nodes);
    }
    printf("queries: %zu random centres, node limit %zu, current edges; times in us:\n"
           "wall clock, then thread CPU time (immune to other processes on the machine)\n\n",
           nq, limit);

    static const variant variants[] = {
        {"depth1/both", 1, GRAPH_DIR_BOTH},
        {"depth2/both", 2, GRAPH_DIR_BOTH},
        {"depth1/out", 1, GRAPH_DIR_OUT},
        {"depth2/out", 2, GRAPH_DIR_OUT},
    };
    summary s_strata[4];
    summary s_json[4];
    summary s_sqlite[4];
    for (size_t v = 0; v < 4; v++) {
        /* Warm-up pass over a few centres so neither side pays first-touch costs. */
        run_strata(g, centres, nq < 200 ? nq : 200, &variants[v], limit, false, lat, cpu);
        s_strata[v] = run_strata(g, centres, nq, &variants[v], limit, false, lat, cpu);
        print_row("strata", &variants[v], &s_strata[v]);
        s_json[v] = run_strata(g, centres, nq, &variants[v], limit, true, lat, cpu);
        print_row("strata+json", &variants[v], &s_json[v]);
        fflush(stdout);
        if (db == NULL) {
            continue;
        }
        run_sqlite(db, centres, nq < 20 ? nq : 20, &variants[v], limit, lat, cpu);
        s_sqlite[v] = run_sqlite(db, centres, nq, &variants[v], limit, lat, cpu);
        print_row("sqlite", &variants[v], &s_sqlite[v]);
        fflush(stdout);
    }
    if (db == NULL) {
        free(centres);
        free(lat);
        free(cpu);
        free(d.edges);
        graph_free(g);
        return 0;
    }

    printf("\nratios sqlite / strata (higher is better for strata):\n");
    for (size_t v = 0; v < 4; v++) {
        printf("  %-12s wall p50 %6.1fx  p99 %6.1fx | cpu p50 %6.1fx  p99 %6.1fx |"
               " with JSON, wall p50 %6.1fx  p99 %6.1fx\n",
               variants[v].name, s_sqlite[v].p50_us / s_strata[v].p50_us,
               s_sqlite[v].p99_us / s_strata[v].p99_us,
               s_sqlite[v].cpu_p50_us / s_strata[v].cpu_p50_us,
               s_sqlite[v].cpu_p99_us / s_strata[v].cpu_p99_us,
               s_sqlite[v].p50_us / s_json[v].p50_us, s_sqlite[v].p99_us / s_json[v].p99_us);
    }
    printf("\ntarget: depth-2 p99 < 1000 us in process and >= 10x faster than SQLite\n");
    for (size_t v = 1; v < 4; v += 2) {
        printf("  %-12s p99 wall %.1f us (cpu %.1f us), %.1fx SQLite's p99 (cpu %.1fx)\n",
               variants[v].name, s_strata[v].p99_us, s_strata[v].cpu_p99_us,
               s_sqlite[v].p99_us / s_strata[v].p99_us,
               s_sqlite[v].cpu_p99_us / s_strata[v].cpu_p99_us);
    }

    free(centres);
    free(lat);
    free(cpu);
    free(d.edges);
    sqlite3_close(db);
    graph_free(g);
    return 0;
}
