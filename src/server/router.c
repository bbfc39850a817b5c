/*
 * router.c - maps a request to its route and handler. Routes are patterns of
 * path segments in which ":name" captures one percent-decoded segment. A path
 * that matches some route but not with this method is a 405 with an Allow
 * header; no match at all is a 404. Every request is counted and timed per
 * route in the metrics, and written to the access log when one is set.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "server/server.h"

typedef enum route_auth {
    AUTH_TENANT = 0,             /* a tenant's API key (or none when auth is off) */
    AUTH_NONE = 1,               /* public: health and metrics */
    AUTH_ADMIN = 2,              /* the administrator's key */
    AUTH_REPL = 3                /* the admin key or the replication key (replicas) */
} route_auth;

typedef struct route {
    const char *method;
    const char *pattern;
    route_fn fn;
    int metric;                  /* index in the metrics table */
    route_auth auth;
} route;

static route g_routes[] = {
    {"GET", "/healthz", h_healthz, -1, AUTH_NONE},
    {"GET", "/metrics", h_metrics, -1, AUTH_NONE},
    {"POST", "/v1/admin/tenants/:tenant_id/keys", h_admin_key_create, -1, AUTH_ADMIN},
    {"GET", "/v1/admin/tenants/:tenant_id/keys", h_admin_key_list, -1, AUTH_ADMIN},
    {"DELETE", "/v1/admin/keys/:key_id", h_admin_key_revoke, -1, AUTH_ADMIN},
    {"POST", "/v1/admin/backup", h_admin_backup, -1, AUTH_ADMIN},
    {"POST", "/v1/admin/promote", h_admin_promote, -1, AUTH_ADMIN},
    {"GET", "/v1/admin/replication", h_repl_status, -1, AUTH_ADMIN},
    {"GET", "/v1/admin/replication/log", h_repl_log, -1, AUTH_REPL},
    {"GET", "/v1/admin/replication/snapshot", h_repl_snapshot, -1, AUTH_REPL},
    {"GET", "/v1/admin/replication/files/:name", h_repl_file, -1, AUTH_REPL},
    {"GET", "/v1/admin/replication/keyring", h_repl_keyring, -1, AUTH_REPL},
    {"POST", "/v1/sessions/:session_id/turns", h_turn_append, -1, AUTH_TENANT},
    {"GET", "/v1/sessions/:session_id", h_session_get, -1, AUTH_TENANT},
    {"PATCH", "/v1/sessions/:session_id/state", h_session_stage, -1, AUTH_TENANT},
    {"POST", "/v1/sessions/:session_id/end", h_session_end, -1, AUTH_TENANT},
    {"GET", "/v1/users/:user_id/dirty", h_dirty_get, -1, AUTH_TENANT},
    {"GET", "/v1/users/:user_id/profile", h_profile_get, -1, AUTH_TENANT},
    {"POST", "/v1/users/:user_id/clarifications/:clarification_id", h_clarification_resolve, -1, AUTH_TENANT},
    {"POST", "/v1/sessions/:session_id/context", h_context, -1, AUTH_TENANT},
    {"POST", "/v1/jobs/distill", h_distill, -1, AUTH_TENANT},
    {"GET", "/v1/jobs/:job_id", h_job_get, -1, AUTH_TENANT},
    {"POST", "/v1/users/:user_id/memories", h_memory_add, -1, AUTH_TENANT},
    {"POST", "/v1/users/:user_id/memories/search", h_memory_search, -1, AUTH_TENANT},
    {"GET", "/v1/users/:user_id/memories/:memory_id", h_memory_get, -1, AUTH_TENANT},
    {"DELETE", "/v1/users/:user_id/memories/:memory_id", h_memory_delete, -1, AUTH_TENANT},
    {"DELETE", "/v1/users/:user_id/memory", h_user_forget, -1, AUTH_TENANT},
    {"DELETE", "/user/:user_id/memory", h_user_forget, -1, AUTH_TENANT},
    {"PUT", "/v1/graph/nodes/:node_id", h_node_put, -1, AUTH_TENANT},
    {"GET", "/v1/graph/nodes/:node_id", h_node_get, -1, AUTH_TENANT},
    {"DELETE", "/v1/graph/nodes/:node_id", h_node_delete, -1, AUTH_TENANT},
    {"PUT", "/v1/graph/edges", h_edge_put, -1, AUTH_TENANT},
    {"POST", "/v1/graph/edges/expire", h_edge_expire, -1, AUTH_TENANT},
    {"GET", "/v1/graph/subgraph", h_subgraph, -1, AUTH_TENANT},
    {"PUT", "/v1/kv/:tier/:key", h_kv_put, -1, AUTH_TENANT},
    {"GET", "/v1/kv/:tier/:key", h_kv_get, -1, AUTH_TENANT},
    {"DELETE", "/v1/kv/:tier/:key", h_kv_delete, -1, AUTH_TENANT},
};

static int g_metric_unmatched = -1;

/* Does the route change state? Every method but GET does, except these
 * reads that take a body and the admin actions a replica must serve. A new
 * route is a write unless listed: a replica then refuses it, the safe side. */
static bool route_writes(const route *r)
{
    if (strcmp(r->method, "GET") == 0) {
        return false;
    }
    return r->fn != h_memory_search && r->fn != h_context && r->fn != h_admin_backup &&
           r->fn != h_admin_promote;
}

int router_init(app *a)
{
    for (size_t i = 0; i < STRATA_ARRAY_LEN(g_routes); i++) {
        g_routes[i].metric = metrics_route(a->metrics, g_routes[i].method, g_routes[i].pattern);
    }
    g_metric_unmatched = metrics_route(a->metrics, "ANY", "unmatched");
    return STRATA_OK;
}

/* Match path against pattern, capturing ":params". Returns 1 on a match,
 * 0 on no match, -1 when a segment is malformed (bad escape, too long). */
static int route_match(const char *pattern, const char *path, size_t path_len,
                       route_params *params)
{
    params->n = 0;
    const char *p = pattern;
    size_t i = 0;
    while (*p != '\0') {
        if (*p != '/' || i >= path_len || path[i] != '/') {
            return 0;
        }
        p++;
        i++;
        const char *pend = strchr(p, '/');
        size_t plen = pend ? (size_t)(pend - p) : strlen(p);
        size_t seg_start = i;
        while (i < path_len && path[i] != '/') {
            i++;
        }
        size_t seg_len = i - seg_start;
        if (p[0] == ':') {
            if (seg_len == 0 || params->n == ROUTE_MAX_PARAMS) {
                return 0;
            }
            int k = params->n;
            long n = http_pct_decode(path + seg_start, seg_len, params->value[k],
                                     sizeof(params->value[k]));
            if (n < 0) {
                return -1;
            }
            params->value[k][n] = '\0';
            params->len[k] = (size_t)n;
            params->n++;
        } else if (seg_len != plen || memcmp(path + seg_start, p, plen) != 0) {
            return 0;
        }
        p += plen;
    }
    return i == path_len ? 1 : 0;
}

static void access_log_write(app *a, const http_request *req, int status, size_t bytes,
                             uint64_t ns)
{
    if (a->access_log == NULL) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_lock(&a->access_lock);
    fprintf(a->access_log, "%s %s \"%.*s %.*s\" %d %zu %.3fms\n", when, req->remote_addr,
            (int)req->method_len, req->method, (int)STRATA_MIN(req->target_len, 512),
            req->target, status, bytes, (double)ns / 1e6);
    fflush(a->access_log);
    pthread_mutex_unlock(&a->access_lock);
}

/* The bearer token of the request, or NULL. */
static const char *bearer(const http_request *req, size_t *len)
{
    const http_header *h = http_find_header(req, "authorization");
    if (h == NULL || h->value_len < 8 || strncasecmp(h->value, "Bearer ", 7) != 0) {
        return NULL;
    }
    *len = h->value_len - 7;
    return h->value + 7;
}

static bool secret_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

/* The tenant a request acts for, written into tenant (STRATA_ID_MAX + 1).
 * With no admin key and no API keys, auth is off and every call acts for
 * "default" (API.md; main refuses that mode off loopback). Failures answer
 * 401 (no or unknown key) or 403 (a key without the right), the same for
 * every route and user, so they reveal nothing about what exists. */
static bool router_authenticate(app *a, const route *r, const http_request *req,
                                http_response *resp, char *tenant)
{
    size_t tlen = 0;
    const char *tok = bearer(req, &tlen);
    const char *admin = a->settings->admin_key;
    if (r->auth == AUTH_NONE) {
        tenant[0] = '\0';
        return true;
    }
    /* A replica holds the replication key, which reads the log but cannot
     * manage tenants; the admin key may do both. */
    const char *repl = a->settings->replication_key;
    if (r->auth == AUTH_REPL && tok != NULL && repl != NULL && repl[0] != '\0' &&
        secret_equal(tok, tlen, repl)) {
        tenant[0] = '\0';
        return true;
    }
    if (r->auth == AUTH_ADMIN || r->auth == AUTH_REPL) {
        if (admin == NULL || admin[0] == '\0') {
            /* With authentication off (a loopback-only server: main refuses
             * it elsewhere) the operator's own routes work as every other
             * route does: backup, promotion, replication. Managing tenants'
             * keys still needs an admin key: keys would turn auth on with
             * nobody able to manage them. */
            bool ops = strncmp(r->pattern, "/v1/admin/backup", 16) == 0 ||
                       strncmp(r->pattern, "/v1/admin/promote", 17) == 0 ||
                       strncmp(r->pattern, "/v1/admin/replication", 21) == 0;
            if (ops && strata_key_count(a->db) == 0) {
                tenant[0] = '\0';
                return true;
            }
            respond_error(resp, 403, "forbidden", "no admin key is configured on this server");
            return false;
        }
        if (tok == NULL) {
            http_response_header(resp, "WWW-Authenticate", "Bearer");
            respond_error(resp, 401, "unauthorized", "send the admin key as a Bearer token");
            return false;
        }
        if (!secret_equal(tok, tlen, admin)) {
            respond_error(resp, 403, "forbidden", "%s",
                          r->auth == AUTH_REPL ? "this key may not read the replication log"
                                               : "this key may not manage tenants");
            return false;
        }
        tenant[0] = '\0';
        return true;
    }
    bool auth_on = (admin != NULL && admin[0] != '\0') || strata_key_count(a->db) > 0;
    if (!auth_on) {
        memcpy(tenant, "default", 8);
        return true;
    }
    if (tok == NULL) {
        http_response_header(resp, "WWW-Authenticate", "Bearer");
        respond_error(resp, 401, "unauthorized", "send an API key as a Bearer token");
        return false;
    }
    char key[STRATA_KEY_LEN];
    char key_id[STRATA_JOB_ID_LEN];
    if (tlen >= sizeof(key)) {
        respond_error(resp, 401, "unauthorized", "unknown API key");
        return false;
    }
    memcpy(key, tok, tlen);
    key[tlen] = '\0';
    if (strata_key_authenticate(a->db, key, tenant, key_id) != STRATA_OK) {
        if (admin != NULL && secret_equal(tok, tlen, admin)) {
            respond_error(resp, 403, "forbidden", "the admin key does not act for a tenant");
        } else {
            http_response_header(resp, "WWW-Authenticate", "Bearer");
            respond_error(resp, 401, "unauthorized", "unknown API key");
        }
        return false;
    }
    int retry_after = 0;
    if (a->limiter != NULL && !rate_limiter_take(a->limiter, key_id, &retry_after)) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry_after);
        http_response_header(resp, "Retry-After", ra);
        respond_error(resp, 429, "rate_limited", "over the request rate allowed for this key");
        return false;
    }
    return true;
}

void router_dispatch(void *ctx, const http_request *req, http_response *resp)
{
    app *a = ctx;
    uint64_t t0 = clock_mono_ns();
    route_params params;
    int metric = g_metric_unmatched;
    char allow[128] = "";
    bool path_matched = false;
    const route *hit = NULL;

    for (size_t i = 0; i < STRATA_ARRAY_LEN(g_routes); i++) {
        int m = route_match(g_routes[i].pattern, req->path, req->path_len, &params);
        if (m < 0) {
            respond_error(resp, 400, "bad_path", "the path has a malformed percent-escape");
            goto done;
        }
        if (m == 0) {
            continue;
        }
        path_matched = true;
        if (strlen(g_routes[i].method) == req->method_len &&
            memcmp(g_routes[i].method, req->method, req->method_len) == 0) {
            hit = &g_routes[i];
            break;
        }
        size_t al = strlen(allow);
        snprintf(allow + al, sizeof(allow) - al, "%s%s", al ? ", " : "", g_routes[i].method);
    }
    if (hit == NULL) {
        if (path_matched) {
            http_response_header(resp, "Allow", allow);
            respond_error(resp, 405, "method_not_allowed", "use %s for this path", allow);
        } else {
            respond_error(resp, 404, "not_found", "no route for %.*s",
                          (int)STRATA_MIN(req->path_len, 200), req->path);
        }
        goto done;
    }
    metric = hit->metric;
    char tenant[STRATA_ID_MAX + 1];
    if (!router_authenticate(a, hit, req, resp, tenant)) {
        goto done;
    }
    if (route_writes(hit) && strata_db_is_replica(a->db)) {
        respond_error(resp, 503, "read_only",
                      "this server is a read-only replica; write to the primary (or promote "
                      "this one with POST /v1/admin/promote)");
        goto done;
    }
    req_ctx c = {a, req, &params, tenant, resp};
    hit->fn(&c);

done:;
    uint64_t ns = clock_mono_ns() - t0;
    metrics_observe(a->metrics, metric, resp->status, ns);
    access_log_write(a, req, resp->status, resp->body.len, ns);
}
