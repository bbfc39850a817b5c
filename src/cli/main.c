/*
 * main.c - `strata`, the command-line tool for people and scripts.
 *
 *   strata [--url URL] [--api-key KEY] [--cacert PEM] [--insecure] [--json] <command> [args]
 *
 * Online commands call a running stratad; output is readable by default and
 * the server's JSON with --json. Exit status: 0 success, 1 the server refused
 * (its error is printed on stderr), 2 usage error, 3 cannot reach the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: strata [--url URL] [--api-key KEY] [--cacert PEM] [--insecure] [--json]\n"
            "              <command> [args]\n\n"
            "commands:\n"
            "  health                                   server health\n"
            "  turn add <session> --user U [--role R] <content>\n"
            "                                           append a turn (role: user, assistant,\n"
            "                                           system; default user)\n"
            "  session show <session>                   state and buffer of a session\n"
            "  session stage <session> <stage>          set current_stage\n"
            "  session end <session>                    end a session (queues consolidation)\n"
            "  dirty <user>                             the user's dirty attributes\n"
            "  user forget <user>                       right to be forgotten: delete everything\n"
            "                                           of the user (all tiers, log, snapshots)\n"
            "  job <job_id>                             status of a background job\n"
            "  memory add <user> --type T [--importance X] [--provenance ID]... <content>\n"
            "                                           store a memory (T: preference, fact,\n"
            "                                           experience)\n"
            "  memory search <user> [--mode hybrid|vector|keyword] [--limit N] [--type T]...\n"
            "                [--min-importance X] <query>\n"
            "  memory get <user> <memory_id>            one memory\n"
            "  memory delete <user> <memory_id>         remove a memory\n"
            "  node put <id> --label L [--props JSON]   create or merge a graph node\n"
            "  node get <id> [--as-of TS] | node delete <id>\n"
            "  edge put <from> <type> <to> [--props JSON] [--valid-from TS]\n"
            "  edge expire <from> <type> <to>\n"
            "  subgraph <center> [--depth N] [--types A,B] [--direction out|in|both]\n"
            "           [--limit N] [--as-of TS] [--dot]   tree, --json, or Graphviz\n"
            "  graph restore --data-dir SRC --at TS <new-dir>\n"
            "                                           point-in-time restore (offline)\n"
            "  rebuild [--data-dir SRC] <new-dir>       rebuild every tier from the log (offline)\n"
            "  rebuild --from-redis ADDRS [--redis-cluster] [--stream KEY] [--redis-tls\n"
            "          [--redis-tls-cacert PEM]] <new-dir>\n"
            "                                           rebuild from the Redis replay stream\n"
            "  reembed [--data-dir SRC] --embedder hash|minilm|http [...] <new-dir>\n"
            "                                           move a collection to another embedder\n"
            "  keyring rotate [--data-dir D] --master-key-file OLD --new-master-key-file NEW\n"
            "                                           re-seal the encryption keyring (offline)\n"
            "  admin key create|list <tenant>           manage API keys (admin key as --api-key)\n"
            "  admin key revoke <key_id>\n"
            "  admin promote | admin replication        promote a replica; role and lag\n"
            "  backup <dir>                             online backup by the server into a new\n"
            "                                           directory (admin key as --api-key)\n"
            "  restore <backup-dir> <new-dir> [--at TS] verify a backup and restore it (offline),\n"
            "                                           up to a point in time if given\n"
            "  kv put <l1|l2|l3> <key> <json>           store a JSON value\n"
            "  kv get <l1|l2|l3> <key>                  fetch a JSON value\n"
            "  kv delete <l1|l2|l3> <key>               remove a value\n\n"
            "options:\n"
            "  --url URL      server address (default $STRATA_URL or http://127.0.0.1:7700;\n"
            "                 https://host:port for a server started with --tls-cert)\n"
            "  --api-key KEY  API key (default $STRATA_API_KEY)\n"
            "  --cacert PEM   CA certificate(s) to verify an https server (default\n"
            "                 $STRATA_CACERT, else the system CAs)\n"
            "  --insecure     do not verify the https server's certificate\n"
            "  --json         print the server's JSON instead of text\n");
}

/* Print the server's error body readably; returns the exit code 1. */
static int print_error(long status, const sbuf *body)
{
    json_t *root = json_loads(body->data ? body->data : "", 0, NULL);
    json_t *err = root ? json_object_get(root, "error") : NULL;
    const char *code = err ? json_string_value(json_object_get(err, "code")) : NULL;
    const char *msg = err ? json_string_value(json_object_get(err, "message")) : NULL;
    if (code != NULL && msg != NULL) {
        fprintf(stderr, "strata: %ld %s: %s\n", status, code, msg);
    } else {
        fprintf(stderr, "strata: HTTP %ld: %s\n", status, body->data ? body->data : "");
    }
    json_decref(root);
    return 1;
}

static void fmt_time(char *out, size_t cap, json_int_t ts)
{
    time_t t = (time_t)ts;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M:%SZ", &tm);
}

int cli_run(cli *c, const char *method, const char *path, const char *body,
            cli_printer_fn printer)
{
    sbuf out;
    sbuf_init(&out, 64u << 20);
    long status = 0;
    if (cli_request(c, method, path, body, &status, &out) != 0) {
        sbuf_free(&out);
        return 3;
    }
    int rc = 0;
    if (status >= 300) {
        rc = print_error(status, &out);
    } else if (out.len == 0 && !c->json) {
        printf("ok\n");
    } else if (c->json || printer == NULL) {
        printf("%s\n", out.data ? out.data : "");
    } else {
        json_t *root = json_loads(out.data ? out.data : "", JSON_DECODE_ANY, NULL);
        if (root == NULL) {
            printf("%s\n", out.data ? out.data : "");
        } else {
            printer(root);
            json_decref(root);
        }
    }
    sbuf_free(&out);
    return rc;
}

static void print_health(json_t *r)
{
    printf("status: %s\n", json_string_value(json_object_get(r, "status")));
}

static void print_turn(json_t *r)
{
    printf("session %s: turn %lld", json_string_value(json_object_get(r, "session_id")),
           (long long)json_integer_value(json_object_get(r, "turn_count")));
    const char *cons = json_string_value(json_object_get(r, "consolidation"));
    if (cons != NULL && strcmp(cons, "queued") == 0) {
        printf(", consolidation queued (%s)", json_string_value(json_object_get(r, "job_id")));
    }
    printf("\n");
}

static void print_state(json_t *st)
{
    char when[32];
    fmt_time(when, sizeof(when), json_integer_value(json_object_get(st, "last_active")));
    const char *stage = json_string_value(json_object_get(st, "current_stage"));
    printf("stage: %s  turns: %lld  last active: %s\n", stage && stage[0] ? stage : "-",
           (long long)json_integer_value(json_object_get(st, "turn_count")), when);
}

static void print_session(json_t *r)
{
    printf("session %s (user %s)\n", json_string_value(json_object_get(r, "session_id")),
           json_string_value(json_object_get(r, "user_id")));
    print_state(json_object_get(r, "state"));
    json_t *buf = json_object_get(r, "buffer");
    size_t i;
    json_t *t;
    json_array_foreach(buf, i, t)
    {
        printf("  [%lld] %-9s %s\n", (long long)json_integer_value(json_object_get(t, "seq")),
               json_string_value(json_object_get(t, "role")),
               json_string_value(json_object_get(t, "content")));
    }
}

static void print_job_id(json_t *r)
{
    printf("consolidation queued: %s\n", json_string_value(json_object_get(r, "job_id")));
}

static void print_dirty(json_t *r)
{
    json_t *attrs = json_object_get(r, "attributes");
    if (json_array_size(attrs) == 0) {
        printf("user %s: nothing dirty\n", json_string_value(json_object_get(r, "user_id")));
        return;
    }
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        printf("%s\n", json_string_value(a));
    }
}

static void print_forget(json_t *r)
{
    json_t *d = json_object_get(r, "deleted");
    printf("forgot user %s: %" JSON_INTEGER_FORMAT " sessions (L1), %" JSON_INTEGER_FORMAT
           " memories (L2), %" JSON_INTEGER_FORMAT " graph nodes and edges (L3), %"
           JSON_INTEGER_FORMAT " log records erased\n",
           json_string_value(json_object_get(r, "user_id")),
           json_integer_value(json_object_get(d, "l1")), json_integer_value(json_object_get(d, "l2")),
           json_integer_value(json_object_get(d, "l3")),
           json_integer_value(json_object_get(d, "log")));
}

static void print_job(json_t *r)
{
    printf("%s  %s  %s", json_string_value(json_object_get(r, "job_id")),
           json_string_value(json_object_get(r, "kind")),
           json_string_value(json_object_get(r, "status")));
    const char *err = json_string_value(json_object_get(r, "error"));
    if (err != NULL) {
        printf("  (%s)", err);
    }
    printf("\n");
}

static void print_ok(json_t *r);

static void print_memory_line(json_t *m)
{
    json_t *score = json_object_get(m, "score");
    if (score != NULL) {
        printf("%.3f  ", json_number_value(score));
    }
    printf("%s  %-10s imp %.2f  %s\n", json_string_value(json_object_get(m, "id")),
           json_string_value(json_object_get(m, "memory_type")),
           json_number_value(json_object_get(m, "importance")),
           json_string_value(json_object_get(m, "content")));
}

static void print_memory(json_t *r)
{
    print_memory_line(r);
    json_t *prov = json_object_get(r, "provenance");
    if (json_array_size(prov) > 0) {
        printf("  provenance:");
        size_t i;
        json_t *p;
        json_array_foreach(prov, i, p)
        {
            printf(" %s", json_string_value(p));
        }
        printf("\n");
    }
}

static void print_results(json_t *r)
{
    json_t *results = json_object_get(r, "results");
    if (json_array_size(results) == 0) {
        printf("no memories found\n");
        return;
    }
    size_t i;
    json_t *m;
    json_array_foreach(results, i, m)
    {
        print_memory_line(m);
    }
}

/* strata memory add|search|get|delete ... */
static int cmd_memory(cli *c, int argc, char **argv)
{
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    char user[1200];
    char path[4096];
    cli_path_escape(user, sizeof(user), argv[2]);
    const char *sub = argv[1];
    if (strcmp(sub, "get") == 0 || strcmp(sub, "delete") == 0) {
        if (argc < 4) {
            usage(stderr);
            return 2;
        }
        char id[1200];
        cli_path_escape(id, sizeof(id), argv[3]);
        snprintf(path, sizeof(path), "/v1/users/%s/memories/%s", user, id);
        return strcmp(sub, "get") == 0 ? cli_run(c, "GET", path, NULL, print_memory)
                                       : cli_run(c, "DELETE", path, NULL, print_ok);
    }
    bool add = strcmp(sub, "add") == 0;
    if (!add && strcmp(sub, "search") != 0) {
        usage(stderr);
        return 2;
    }
    json_t *body = json_object();
    json_t *prov = json_array();
    json_t *types = json_array();
    const char *text = NULL;
    int rc = 2;
    for (int k = 3; k < argc; k++) {
        const char *a = argv[k];
        bool has_val = k + 1 < argc;
        if (strcmp(a, "--type") == 0 && has_val) {
            if (add) {
                json_object_set_new(body, "memory_type", json_string(argv[++k]));
            } else {
                json_array_append_new(types, json_string(argv[++k]));
            }
        } else if ((strcmp(a, "--importance") == 0 || strcmp(a, "--min-importance") == 0) &&
                   has_val) {
            char *end;
            double v = strtod(argv[++k], &end);
            if (*end != '\0') {
                fprintf(stderr, "strata: %s needs a number\n", a);
                goto out;
            }
            json_object_set_new(body, add ? "importance" : "min_importance", json_real(v));
        } else if (strcmp(a, "--provenance") == 0 && has_val) {
            json_array_append_new(prov, json_string(argv[++k]));
        } else if (strcmp(a, "--mode") == 0 && has_val) {
            json_object_set_new(body, "mode", json_string(argv[++k]));
        } else if (strcmp(a, "--limit") == 0 && has_val) {
            json_object_set_new(body, "limit", json_integer(atoll(argv[++k])));
        } else if (text == NULL) {
            text = a;
        } else {
            usage(stderr);
            goto out;
        }
    }
    if (text == NULL) {
        fprintf(stderr, "strata: memory %s needs the %s text\n", sub, add ? "content" : "query");
        goto out;
    }
    json_object_set_new(body, add ? "content" : "query", json_string(text));
    if (add && json_array_size(prov) > 0) {
        json_object_set(body, "provenance", prov);
    }
    if (!add && json_array_size(types) > 0) {
        json_object_set(body, "memory_types", types);
    }
    char *payload = json_dumps(body, JSON_COMPACT);
    if (payload == NULL) {
        fprintf(stderr, "strata: text must be valid UTF-8\n");
        goto out;
    }
    snprintf(path, sizeof(path), "/v1/users/%s/memories%s", user, add ? "" : "/search");
    rc = cli_run(c, "POST", path, payload, add ? print_memory : print_results);
    free(payload);
out:
    json_decref(body);
    json_decref(prov);
    json_decref(types);
    return rc;
}

static void print_pretty(json_t *r)
{
    char *s = json_dumps(r, JSON_INDENT(2) | JSON_ENCODE_ANY);
    printf("%s\n", s ? s : "");
    free(s);
}

static void print_ok(json_t *r)
{
    (void)r;
    printf("ok\n");
}

static int need(int argc, int n)
{
    if (argc < n) {
        usage(stderr);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    cli c = {getenv("STRATA_URL"), getenv("STRATA_API_KEY"), false, 30000,
             getenv("STRATA_CACERT"), false};
    if (c.url == NULL || c.url[0] == '\0') {
        c.url = "http://127.0.0.1:7700";
    }
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c.json = true;
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            c.url = argv[++i];
        } else if (strcmp(argv[i], "--api-key") == 0 && i + 1 < argc) {
            c.api_key = argv[++i];
        } else if (strcmp(argv[i], "--cacert") == 0 && i + 1 < argc) {
            c.cacert = argv[++i];
        } else if (strcmp(argv[i], "--insecure") == 0) {
            c.insecure = true;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "strata: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    argc -= i;
    argv += i;
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    char p1[1200];
    char p2[1200];
    char path[4096];
    const char *cmd = argv[0];
    int rc = 2;

    if (strcmp(cmd, "health") == 0) {
        rc = cli_run(&c, "GET", "/healthz", NULL, print_health);
    } else if (strcmp(cmd, "turn") == 0 && argc >= 2 && strcmp(argv[1], "add") == 0) {
        const char *session = NULL;
        const char *user = NULL;
        const char *role = "user";
        const char *content = NULL;
        for (int k = 2; k < argc; k++) {
            if (strcmp(argv[k], "--user") == 0 && k + 1 < argc) {
                user = argv[++k];
            } else if (strcmp(argv[k], "--role") == 0 && k + 1 < argc) {
                role = argv[++k];
            } else if (session == NULL) {
                session = argv[k];
            } else if (content == NULL) {
                content = argv[k];
            } else {
                usage(stderr);
                return 2;
            }
        }
        if (session == NULL || user == NULL || content == NULL) {
            fprintf(stderr, "strata: turn add needs <session> --user U <content>\n");
            return 2;
        }
        json_t *body = json_pack("{s:s, s:s, s:s}", "user_id", user, "role", role, "content",
                                 content);
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (text == NULL) {
            fprintf(stderr, "strata: content must be valid UTF-8\n");
            return 2;
        }
        cli_path_escape(p1, sizeof(p1), session);
        snprintf(path, sizeof(path), "/v1/sessions/%s/turns", p1);
        rc = cli_run(&c, "POST", path, text, print_turn);
        free(text);
    } else if (strcmp(cmd, "session") == 0 && argc >= 3) {
        cli_path_escape(p1, sizeof(p1), argv[2]);
        if (strcmp(argv[1], "show") == 0) {
            snprintf(path, sizeof(path), "/v1/sessions/%s", p1);
            rc = cli_run(&c, "GET", path, NULL, print_session);
        } else if (strcmp(argv[1], "stage") == 0 && need(argc, 4)) {
            json_t *body = json_pack("{s:s}", "current_stage", argv[3]);
            char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
            json_decref(body);
            if (text == NULL) {
                return 2;
            }
            snprintf(path, sizeof(path), "/v1/sessions/%s/state", p1);
            rc = cli_run(&c, "PATCH", path, text, print_state);
            free(text);
        } else if (strcmp(argv[1], "end") == 0) {
            snprintf(path, sizeof(path), "/v1/sessions/%s/end", p1);
            rc = cli_run(&c, "POST", path, NULL, print_job_id);
        } else {
            usage(stderr);
        }
    } else if (strcmp(cmd, "dirty") == 0 && need(argc, 2)) {
        cli_path_escape(p1, sizeof(p1), argv[1]);
        snprintf(path, sizeof(path), "/v1/users/%s/dirty", p1);
        rc = cli_run(&c, "GET", path, NULL, print_dirty);
    } else if (strcmp(cmd, "user") == 0 && argc == 3 && strcmp(argv[1], "forget") == 0) {
        cli_path_escape(p1, sizeof(p1), argv[2]);
        snprintf(path, sizeof(path), "/v1/users/%s/memory", p1);
        rc = cli_run(&c, "DELETE", path, NULL, print_forget);
    } else if (strcmp(cmd, "job") == 0 && need(argc, 2)) {
        cli_path_escape(p1, sizeof(p1), argv[1]);
        snprintf(path, sizeof(path), "/v1/jobs/%s", p1);
        rc = cli_run(&c, "GET", path, NULL, print_job);
    } else if (strcmp(cmd, "node") == 0) {
        rc = cli_cmd_node(&c, argc, argv);
    } else if (strcmp(cmd, "edge") == 0) {
        rc = cli_cmd_edge(&c, argc, argv);
    } else if (strcmp(cmd, "subgraph") == 0) {
        rc = cli_cmd_subgraph(&c, argc, argv);
    } else if (strcmp(cmd, "graph") == 0) {
        rc = cli_cmd_graph(&c, argc, argv);
    } else if (strcmp(cmd, "admin") == 0 && argc >= 4 && strcmp(argv[1], "key") == 0) {
        /* The admin key travels as --api-key / STRATA_API_KEY. */
        cli_path_escape(p1, sizeof(p1), argv[3]);
        if (strcmp(argv[2], "create") == 0) {
            snprintf(path, sizeof(path), "/v1/admin/tenants/%s/keys", p1);
            rc = cli_run(&c, "POST", path, NULL, print_pretty);
        } else if (strcmp(argv[2], "list") == 0) {
            snprintf(path, sizeof(path), "/v1/admin/tenants/%s/keys", p1);
            rc = cli_run(&c, "GET", path, NULL, print_pretty);
        } else if (strcmp(argv[2], "revoke") == 0) {
            snprintf(path, sizeof(path), "/v1/admin/keys/%s", p1);
            rc = cli_run(&c, "DELETE", path, NULL, print_ok);
        } else {
            usage(stderr);
        }
    } else if (strcmp(cmd, "admin") == 0 && argc == 2) {
        rc = cli_cmd_admin_repl(&c, argc, argv);
    } else if (strcmp(cmd, "backup") == 0) {
        rc = cli_cmd_backup(&c, argc, argv);
    } else if (strcmp(cmd, "restore") == 0) {
        rc = cli_cmd_restore(argc, argv);
    } else if (strcmp(cmd, "reembed") == 0) {
        rc = cli_cmd_reembed(argc, argv);
    } else if (strcmp(cmd, "rebuild") == 0) {
        rc = cli_cmd_rebuild(argc, argv);
    } else if (strcmp(cmd, "keyring") == 0) {
        rc = cli_cmd_keyring(argc, argv);
    } else if (strcmp(cmd, "memory") == 0) {
        rc = cmd_memory(&c, argc, argv);
    } else if (strcmp(cmd, "kv") == 0 && need(argc, 4)) {
        cli_path_escape(p1, sizeof(p1), argv[2]);
        cli_path_escape(p2, sizeof(p2), argv[3]);
        snprintf(path, sizeof(path), "/v1/kv/%s/%s", p1, p2);
        if (strcmp(argv[1], "get") == 0) {
            rc = cli_run(&c, "GET", path, NULL, print_pretty);
        } else if (strcmp(argv[1], "put") == 0 && need(argc, 5)) {
            rc = cli_run(&c, "PUT", path, argv[4], print_ok);
        } else if (strcmp(argv[1], "delete") == 0) {
            rc = cli_run(&c, "DELETE", path, NULL, print_ok);
        } else {
            usage(stderr);
        }
    } else {
        fprintf(stderr, "strata: unknown command '%s'\n", cmd);
        usage(stderr);
    }
    return rc;
}
