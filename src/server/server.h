/*
 * server.h - the internal header of stratad above the HTTP layer: settings
 * (config.c), the route table and request dispatch (router.c), the JSON
 * handlers of each route family (handlers_*.c), and metrics (metrics.c).
 *
 * Request flow:  http_server loop -> router_dispatch -> match route ->
 *   authenticate (tenant) -> handler -> JSON into resp->body -> metrics,
 *   access log.
 */
#ifndef STRATA_SERVER_H
#define STRATA_SERVER_H

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>

#include "core/core.h"
#include "server/http.h"

/* ---- settings (config.c) ---------------------------------------------- */
typedef struct server_settings {
    http_server_config http;
    strata_config db;
    char *host_owned;            /* storage behind http.host */
    char *data_dir_owned;        /* storage behind db.data_dir */
    char *access_log_path;       /* NULL: no access log; "-": stderr */
    char *log_level;             /* debug | info | warn | error */
    char *embedder_owned;        /* storage behind db.embedder etc. */
    char *embed_url_owned;
    char *embed_model_owned;
    char *embed_api_key_owned;
    char *model_dir_owned;
    char *l1_backend_owned;
    char *redis_addrs_owned;
    char *redis_password_owned;
    char *redis_tls_cacert_owned;    /* storage behind db.redis_tls_* */
    char *redis_tls_cert_owned;
    char *redis_tls_key_owned;
    char *redis_tls_server_name_owned;
    char *replay_stream_owned;
    char *admin_key;             /* NULL: no admin key (admin routes refused) */
    int rate_limit;              /* requests per second per API key, 0 = off */
    int allow_public_noauth;     /* hidden escape hatch for tests: never set in production */
    char *tls_cert;              /* PEM certificate chain; with tls_key: HTTPS only */
    char *tls_key;               /* PEM private key */
    char *tls_min_version;       /* "1.3" (default) or "1.2" */
    int allow_plain_http;        /* serve plain HTTP on a non-loopback address */
    char *replay_addrs_owned;
    char *replay_key_owned;
    char *extractor_owned;
    char *llm_url_owned;
    char *llm_model_owned;
    char *llm_api_key_owned;
    char *master_key_owned;      /* encryption at rest (db.master_key etc.) */
    char *master_key_file_owned;
    char *keyring_owned;
    /* replication (handlers_repl.c) */
    char *replica_of;            /* host:port or URL of the primary: run as its replica */
    char *replica_key;           /* the key the replica presents to the primary */
    char *replica_cacert;        /* CA bundle checking an https primary */
    char *replication_key;       /* on a primary: a key for the replication routes only */
} server_settings;

/* Fill s from defaults < config file (--config or STRATA_CONFIG) < environment
 * (STRATA_*) < command-line flags. On error prints a message into err and
 * returns STRATA_EINVAL. Returns 1 (and prints help into stdout) for --help. */
int settings_load(server_settings *s, int argc, char **argv, char *err, size_t errcap);
void settings_free(server_settings *s);
/* The help text listing every setting, its flag, env var and default. */
void settings_print_help(FILE *out);

/* ---- metrics (metrics.c) ---------------------------------------------- */
#define METRICS_MAX_ROUTES 48

typedef struct metrics metrics;
metrics *metrics_create(void);
void metrics_free(metrics *m);
/* Register a route label; returns its index (stable) or -1 when full. */
int metrics_route(metrics *m, const char *method, const char *pattern);
void metrics_observe(metrics *m, int route, int status, uint64_t duration_ns);

/* ---- the application ---------------------------------------------------- */
typedef struct rate_limiter rate_limiter;

typedef struct app {
    strata_db *db;
    rate_limiter *limiter;
    metrics *metrics;
    http_server *http;
    server_settings *settings;
    FILE *access_log;            /* NULL when off */
    pthread_mutex_t access_lock;
    int64_t started_ms;
    struct replica *replica;     /* NULL unless started with --replica-of */
} app;

/* Render every metric of the process in Prometheus text format. */
int metrics_render(app *a, sbuf *out);

/* Path parameters captured by the router (decoded, NUL-terminated). */
#define ROUTE_MAX_PARAMS 4
#define ROUTE_PARAM_MAX 1024
typedef struct route_params {
    int n;
    char value[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX + 1];
    size_t len[ROUTE_MAX_PARAMS];
} route_params;

typedef struct req_ctx {
    app *a;
    const http_request *req;
    const route_params *params;
    const char *tenant;          /* the caller's tenant, after authentication */
    http_response *resp;
} req_ctx;

typedef void (*route_fn)(req_ctx *c);

void router_dispatch(void *ctx, const http_request *req, http_response *resp);
int router_init(app *a);

/* ---- backups and replication (handlers_repl.c) ---------------------------- */
void h_admin_backup(req_ctx *c);
void h_admin_promote(req_ctx *c);
void h_repl_status(req_ctx *c);
void h_repl_log(req_ctx *c);
void h_repl_snapshot(req_ctx *c);
void h_repl_file(req_ctx *c);
void h_repl_keyring(req_ctx *c);
/* Render the role, replica and snapshot metrics. */
int metrics_render_repl(app *a, sbuf *out);
/* Around strata_db_open in main: prepare (bootstrap an empty replica and
 * mark the engine read-only) before, start following after; shutdown stops
 * the follower before the engine closes. No-ops unless --replica-of. */
int server_replica_prepare(app *a);
int server_replica_start(app *a);
void server_replica_shutdown(app *a);

/* ---- helpers for handlers (handlers_common.c) --------------------------- */
/* Write {"error":{"code","message"}} with status. */
void respond_error(http_response *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Map a STRATA_E* code (with strata_errmsg()) to an HTTP error response. */
void respond_strata_error(http_response *resp, int rc);

/* Parse the request body as a JSON object. On failure the error response is
 * written and NULL returned. Checks Content-Type, UTF-8 and JSON syntax. */
json_t *body_json_object(req_ctx *c);
/* Reject any key of obj not in allowed (NULL-terminated). Writes a 400. */
bool body_only_keys(req_ctx *c, json_t *obj, const char *const *allowed);
/* Required / optional typed fields; on failure write a 400 and return false. */
bool body_get_string(req_ctx *c, json_t *obj, const char *key, bool required,
                     const char **out, size_t *len_out);

/* Route handler families. */
void h_healthz(req_ctx *c);
void h_metrics(req_ctx *c);
void h_turn_append(req_ctx *c);
void h_session_get(req_ctx *c);
void h_session_stage(req_ctx *c);
void h_session_end(req_ctx *c);
void h_dirty_get(req_ctx *c);
void h_job_get(req_ctx *c);
void h_kv_put(req_ctx *c);
void h_kv_get(req_ctx *c);
void h_kv_delete(req_ctx *c);
void h_node_put(req_ctx *c);
void h_node_get(req_ctx *c);
void h_node_delete(req_ctx *c);
void h_edge_put(req_ctx *c);
void h_edge_expire(req_ctx *c);
void h_subgraph(req_ctx *c);
void h_admin_key_create(req_ctx *c);
void h_admin_key_list(req_ctx *c);
void h_admin_key_revoke(req_ctx *c);
/* Token bucket per key (ratelimit.c): true if allowed; else *retry_after_s. */
rate_limiter *rate_limiter_create(double per_second);
void rate_limiter_free(rate_limiter *rl);
bool rate_limiter_take(rate_limiter *rl, const char *key_id, int *retry_after_s);
void h_profile_get(req_ctx *c);
void h_clarification_resolve(req_ctx *c);
void h_distill(req_ctx *c);
void h_context(req_ctx *c);
void h_memory_add(req_ctx *c);
void h_memory_search(req_ctx *c);
void h_memory_get(req_ctx *c);
void h_memory_delete(req_ctx *c);
void h_user_forget(req_ctx *c);   /* handlers_privacy.c */

/* Append a session object (API.md shape) to b. */
int json_put_session(sbuf *b, const strata_session *s);
int json_put_session_state(sbuf *b, const strata_session *s);

#endif /* STRATA_SERVER_H */
