/*
 * cmd_graph.c - the CLI's L3 commands:
 *
 *   node put <id> --label L [--props JSON]      node get <id> [--as-of TS]
 *   node delete <id>
 *   edge put <from> <type> <to> [--props JSON] [--valid-from TS]
 *   edge expire <from> <type> <to>
 *   subgraph <center> [--depth N] [--types A,B] [--direction out|in|both]
 *            [--limit N] [--as-of TS] [--dot]     (tree by default, --json raw)
 *   graph restore --data-dir SRC --at TS <new-dir>   (offline, point in time)
 *
 * A subgraph prints as a tree: each node once, under the edge that reached
 * it first, arrows showing the edge's direction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* Find the value after flag in argv[from..argc); NULL if absent. */
static const char *flag_value(int argc, char **argv, int from, const char *flag)
{
    for (int i = from; i + 1 < argc; i++) {
        if (strcmp(argv[i], flag) == 0) {
            return argv[i + 1];
        }
    }
    return NULL;
}

static int node_index(json_t *nodes, const char *id)
{
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *nid = json_string_value(json_object_get(n, "id"));
        if (nid != NULL && strcmp(nid, id) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static void print_tree_node(json_t *nodes, json_t *edges, int idx, char *seen, int depth,
                            const char *prefix)
{
    size_t i;
    json_t *e;
    const char *id = json_string_value(json_object_get(json_array_get(nodes, idx), "id"));
    json_array_foreach(edges, i, e)
    {
        const char *from = json_string_value(json_object_get(e, "from"));
        const char *to = json_string_value(json_object_get(e, "to"));
        bool out = strcmp(from, id) == 0;
        bool in = strcmp(to, id) == 0;
        if (!out && !in) {
            continue;
        }
        int other = node_index(nodes, out ? to : from);
        if (other < 0 || seen[other]) {
            continue;
        }
        seen[other] = 1;
        json_t *on = json_array_get(nodes, (size_t)other);
        json_t *w = json_object_get(json_object_get(e, "properties"), "weight");
        char weight[32] = "";
        if (json_is_number(w)) {
            snprintf(weight, sizeof(weight), " %.2f", json_number_value(w));
        }
        const char *type = json_string_value(json_object_get(e, "type"));
        printf("%s%s%s[%s%s]%s %s (%s)\n", prefix, "└─", out ? "" : "←", type, weight,
               out ? "→" : "─", json_string_value(json_object_get(on, "id")),
               json_string_value(json_object_get(on, "label")));
        /* Indent one level more; deep trees stop growing the indent. */
        char deeper[256];
        size_t pl = strlen(prefix);
        if (pl + 4 > sizeof(deeper)) {
            pl = sizeof(deeper) - 4;
        }
        memcpy(deeper, prefix, pl);
        memcpy(deeper + pl, "   ", 4);
        print_tree_node(nodes, edges, other, seen, depth + 1, deeper);
    }
}

static void print_subgraph_tree(json_t *r)
{
    json_t *nodes = json_object_get(r, "nodes");
    json_t *edges = json_object_get(r, "edges");
    size_t n = json_array_size(nodes);
    if (n == 0) {
        return;
    }
    char *seen = calloc(n, 1);
    if (seen == NULL) {
        return;
    }
    json_t *c = json_array_get(nodes, 0);
    printf("%s (%s)\n", json_string_value(json_object_get(c, "id")),
           json_string_value(json_object_get(c, "label")));
    seen[0] = 1;
    print_tree_node(nodes, edges, 0, seen, 1, "");
    printf("%zu nodes, %zu edges%s\n", n, json_array_size(edges),
           json_is_true(json_object_get(r, "truncated")) ? " (truncated)" : "");
    free(seen);
}

static void print_dot_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        putchar(*s);
    }
    putchar('"');
}

static void print_subgraph_dot(json_t *r)
{
    printf("digraph strata {\n  node [shape=box];\n");
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "nodes"), i, x)
    {
        char label[512];
        snprintf(label, sizeof(label), "%s\n%s", json_string_value(json_object_get(x, "id")),
                 json_string_value(json_object_get(x, "label")));
        printf("  ");
        print_dot_string(json_string_value(json_object_get(x, "id")));
        printf(" [label=");
        print_dot_string(label);
        printf("];\n");
    }
    json_array_foreach(json_object_get(r, "edges"), i, x)
    {
        printf("  ");
        print_dot_string(json_string_value(json_object_get(x, "from")));
        printf(" -> ");
        print_dot_string(json_string_value(json_object_get(x, "to")));
        printf(" [label=");
        print_dot_string(json_string_value(json_object_get(x, "type")));
        printf("];\n");
    }
    printf("}\n");
}

static void print_node(json_t *r)
{
    char *props = json_dumps(json_object_get(r, "properties"), JSON_COMPACT);
    printf("%s (%s) %s\n", json_string_value(json_object_get(r, "id")),
           json_string_value(json_object_get(r, "label")), props ? props : "{}");
    free(props);
}

static void print_edge(json_t *r)
{
    printf("%s -[%s]-> %s (%s)\n", json_string_value(json_object_get(r, "from")),
           json_string_value(json_object_get(r, "type")),
           json_string_value(json_object_get(r, "to")),
           json_is_true(json_object_get(r, "created")) ? "created" : "updated");
}

static void print_done(json_t *r)
{
    (void)r;
    printf("ok\n");
}

/* Parse --props into a JSON object; NULL (with a message) when invalid. */
static json_t *props_arg(const char *text)
{
    if (text == NULL) {
        return json_object();
    }
    json_error_t err;
    json_t *p = json_loads(text, 0, &err);
    if (p == NULL || !json_is_object(p)) {
        fprintf(stderr, "strata: --props must be a JSON object%s%s\n", p ? "" : ": ",
                p ? "" : err.text);
        json_decref(p);
        return NULL;
    }
    return p;
}

static int post_json(cli *c, const char *method, const char *path, json_t *body,
                     cli_printer_fn printer)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        fprintf(stderr, "strata: arguments must be valid UTF-8\n");
        return 2;
    }
    int rc = cli_run(c, method, path, text, printer);
    free(text);
    return rc;
}

int cli_cmd_node(cli *c, int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: strata node put|get|delete <id> ...\n");
        return 2;
    }
    char id[1200];
    char path[2048];
    cli_path_escape(id, sizeof(id), argv[2]);
    snprintf(path, sizeof(path), "/v1/graph/nodes/%s", id);
    if (strcmp(argv[1], "put") == 0) {
        const char *label = flag_value(argc, argv, 3, "--label");
        if (label == NULL) {
            fprintf(stderr, "strata: node put needs --label\n");
            return 2;
        }
        json_t *props = props_arg(flag_value(argc, argv, 3, "--props"));
        if (props == NULL) {
            return 2;
        }
        json_t *body = json_pack("{s:s, s:o}", "label", label, "properties", props);
        return post_json(c, "PUT", path, body, print_node);
    }
    if (strcmp(argv[1], "get") == 0) {
        const char *as_of = flag_value(argc, argv, 3, "--as-of");
        if (as_of != NULL) {
            size_t n = strlen(path);
            snprintf(path + n, sizeof(path) - n, "?as_of=%s", as_of);
        }
        return cli_run(c, "GET", path, NULL, print_node);
    }
    if (strcmp(argv[1], "delete") == 0) {
        return cli_run(c, "DELETE", path, NULL, print_done);
    }
    fprintf(stderr, "strata: unknown node command %s\n", argv[1]);
    return 2;
}

int cli_cmd_edge(cli *c, int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: strata edge put|expire <from> <type> <to> ...\n");
        return 2;
    }
    if (strcmp(argv[1], "put") == 0) {
        json_t *props = props_arg(flag_value(argc, argv, 5, "--props"));
        if (props == NULL) {
            return 2;
        }
        json_t *body = json_pack("{s:s, s:s, s:s, s:o}", "from", argv[2], "type", argv[3], "to",
                                 argv[4], "properties", props);
        const char *vf = flag_value(argc, argv, 5, "--valid-from");
        if (body != NULL && vf != NULL) {
            json_object_set_new(body, "valid_from", json_integer(atoll(vf)));
        }
        return post_json(c, "PUT", "/v1/graph/edges", body, print_edge);
    }
    if (strcmp(argv[1], "expire") == 0) {
        json_t *body = json_pack("{s:s, s:s, s:s}", "from", argv[2], "type", argv[3], "to",
                                 argv[4]);
        return post_json(c, "POST", "/v1/graph/edges/expire", body, print_done);
    }
    fprintf(stderr, "strata: unknown edge command %s\n", argv[1]);
    return 2;
}

int cli_cmd_subgraph(cli *c, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: strata subgraph <center> [--depth N] [--types A,B] "
                        "[--direction out|in|both] [--limit N] [--as-of TS] [--dot]\n");
        return 2;
    }
    char q[4096];
    char esc[1200];
    cli_path_escape(esc, sizeof(esc), argv[1]);
    int n = snprintf(q, sizeof(q), "/v1/graph/subgraph?center=%s", esc);
    static const char *const params[][2] = {{"--depth", "depth"},         {"--types", "types"},
                                            {"--direction", "direction"}, {"--limit", "limit"},
                                            {"--as-of", "as_of"}};
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        const char *v = flag_value(argc, argv, 2, params[i][0]);
        if (v != NULL && n > 0 && (size_t)n < sizeof(q)) {
            cli_path_escape(esc, sizeof(esc), v);
            n += snprintf(q + n, sizeof(q) - (size_t)n, "&%s=%s", params[i][1], esc);
        }
    }
    bool dot = false;
    for (int i = 2; i < argc; i++) {
        dot = dot || strcmp(argv[i], "--dot") == 0;
    }
    return cli_run(c, "GET", q, NULL, dot ? print_subgraph_dot : print_subgraph_tree);
}

int cli_cmd_graph(cli *c, int argc, char **argv)
{
    (void)c;
    if (argc < 2 || strcmp(argv[1], "restore") != 0) {
        fprintf(stderr, "usage: strata graph restore --data-dir SRC --at TS <new-dir>\n");
        return 2;
    }
    const char *src = flag_value(argc, argv, 2, "--data-dir");
    const char *at = flag_value(argc, argv, 2, "--at");
    const char *dst = argv[argc - 1];
    if (src == NULL) {
        src = "./data";
    }
    if (at == NULL || dst[0] == '-' || dst == at || dst == src) {
        fprintf(stderr, "usage: strata graph restore --data-dir SRC --at TS <new-dir>\n");
        return 2;
    }
    char *end = NULL;
    long long ts = strtoll(at, &end, 10);
    if (*end != '\0' || ts < 0) {
        fprintf(stderr, "strata: --at takes Unix seconds\n");
        return 2;
    }
    uint64_t records = 0;
    int rc = strata_restore(src, dst, ts, &records);
    if (rc != STRATA_OK) {
        fprintf(stderr, "strata: restore failed: %s\n", strata_errmsg());
        return 1;
    }
    printf("restored %s as of %lld into %s (%llu records replayed)\n", src, ts, dst,
           (unsigned long long)records);
    return 0;
}

static void print_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rrebuilding: %llu / %llu records", (unsigned long long)done,
            (unsigned long long)total);
}

/* strata rebuild [--data-dir SRC | --from-redis ADDRS [--redis-cluster] [--stream KEY]]
 *                <new-dir> */
int cli_cmd_rebuild(int argc, char **argv)
{
    const char *src = flag_value(argc, argv, 1, "--data-dir");
    const char *redis = flag_value(argc, argv, 1, "--from-redis");
    const char *dst = argv[argc - 1];
    if (redis != NULL) {
        int cluster = 0;
        for (int i = 1; i < argc; i++) {
            cluster = cluster || strcmp(argv[i], "--redis-cluster") == 0;
            if (strcmp(argv[i], "--redis-tls") == 0) {
                setenv("STRATA_REDIS_TLS", "1", 1);
            }
        }
        /* TLS settings travel as the server's environment variables. */
        static const char *const tls_flags[][2] = {
            {"--redis-tls-cacert", "STRATA_REDIS_TLS_CACERT"},
            {"--redis-tls-cert", "STRATA_REDIS_TLS_CERT"},
            {"--redis-tls-key", "STRATA_REDIS_TLS_KEY"},
            {"--redis-tls-server-name", "STRATA_REDIS_TLS_SERVER_NAME"},
        };
        for (size_t f = 0; f < sizeof(tls_flags) / sizeof(tls_flags[0]); f++) {
            const char *v = flag_value(argc, argv, 1, tls_flags[f][0]);
            if (v != NULL) {
                setenv(tls_flags[f][1], v, 1);
            }
        }
        if (argc < 3 || dst[0] == '-' || dst == redis) {
            fprintf(stderr, "usage: strata rebuild --from-redis ADDRS [--redis-cluster] "
                            "[--stream KEY] [--redis-tls [--redis-tls-cacert PEM] "
                            "[--redis-tls-cert PEM --redis-tls-key PEM] "
                            "[--redis-tls-server-name N]] <new-dir>\n");
            return 2;
        }
        uint64_t n = 0;
        int rc = strata_rebuild_from_stream(redis, cluster, flag_value(argc, argv, 1, "--stream"),
                                            dst, isatty(2) ? print_progress : NULL, NULL, &n);
        if (isatty(2)) {
            fprintf(stderr, "\n");
        }
        if (rc != STRATA_OK) {
            fprintf(stderr, "strata: rebuild failed: %s\n", strata_errmsg());
            return 1;
        }
        printf("rebuilt from the replay stream at %s into %s: %llu records replayed\n", redis,
               dst, (unsigned long long)n);
        return 0;
    }
    if (src == NULL) {
        src = "./data";
    }
    if (argc < 2 || dst[0] == '-' || dst == src) {
        fprintf(stderr, "usage: strata rebuild [--data-dir SRC] <new-dir>\n");
        return 2;
    }
    uint64_t records = 0;
    int rc = strata_rebuild(src, dst, isatty(2) ? print_progress : NULL, NULL, &records);
    if (isatty(2)) {
        fprintf(stderr, "\n");
    }
    if (rc != STRATA_OK) {
        fprintf(stderr, "strata: rebuild failed: %s\n", strata_errmsg());
        return 1;
    }
    printf("rebuilt %s into %s: %llu records replayed\n", src, dst, (unsigned long long)records);
    return 0;
}

/* strata reembed [--data-dir SRC] --embedder E [--model-dir M] [--embed-dim N]
 *                [--embed-url U --embed-model M] <new-dir> */
int cli_cmd_reembed(int argc, char **argv)
{
    const char *src = flag_value(argc, argv, 1, "--data-dir");
    const char *dst = argv[argc - 1];
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.embedder = flag_value(argc, argv, 1, "--embedder");
    cfg.model_dir = flag_value(argc, argv, 1, "--model-dir");
    cfg.embed_url = flag_value(argc, argv, 1, "--embed-url");
    cfg.embed_model = flag_value(argc, argv, 1, "--embed-model");
    const char *dim = flag_value(argc, argv, 1, "--embed-dim");
    cfg.embed_dim = dim ? (uint32_t)strtoul(dim, NULL, 10) : 0;
    if (src == NULL) {
        src = "./data";
    }
    if (argc < 4 || cfg.embedder == NULL || dst[0] == '-' || dst == cfg.embedder) {
        fprintf(stderr, "usage: strata reembed [--data-dir SRC] --embedder hash|minilm|http "
                        "[--model-dir M] [--embed-dim N] [--embed-url U --embed-model M] "
                        "<new-dir>\n");
        return 2;
    }
    uint64_t n = 0;
    int rc = strata_reembed(src, dst, &cfg, isatty(2) ? print_progress : NULL, NULL, &n);
    if (isatty(2)) {
        fprintf(stderr, "\n");
    }
    if (rc != STRATA_OK) {
        fprintf(stderr, "strata: reembed failed: %s\n", strata_errmsg());
        return 1;
    }
    printf("re-embedded %s into %s with %s: %llu records replayed\n", src, dst, cfg.embedder,
           (unsigned long long)n);
    return 0;
}
