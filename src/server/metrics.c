/*
 * metrics.c - Prometheus metrics of stratad. Per route: request counts by
 * status code and a latency histogram; plus the engine's gauges and counters
 * (tier sizes, log positions and fsyncs, job queue depth and outcomes) and the
 * HTTP layer's connection counters, rendered in the text exposition format.
 *
 * All counters are relaxed atomics indexed by (route, status slot) or
 * (route, bucket): recording a request is a few atomic adds, no lock.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "server/server.h"

static const int STATUS_SLOTS[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 409,
                                   413, 415, 422, 429, 431, 500, 501, 503, 505, 0};
#define N_STATUS (sizeof(STATUS_SLOTS) / sizeof(STATUS_SLOTS[0])) /* last: other */

static const double BUCKETS_S[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                   0.01,   0.025,   0.05,   0.1,   0.25,   0.5,  1, 2.5};
#define N_BUCKETS (sizeof(BUCKETS_S) / sizeof(BUCKETS_S[0]))

typedef struct route_metrics {
    char method[8];
    char pattern[64];
    atomic_uint_fast64_t by_status[N_STATUS];
    atomic_uint_fast64_t bucket[N_BUCKETS + 1]; /* non-cumulative; last is +Inf */
    atomic_uint_fast64_t sum_ns;
} route_metrics;

struct metrics {
    route_metrics routes[METRICS_MAX_ROUTES];
    atomic_int n_routes;
};

metrics *metrics_create(void)
{
    return strata_calloc(1, sizeof(metrics));
}

void metrics_free(metrics *m)
{
    strata_free(m);
}

int metrics_route(metrics *m, const char *method, const char *pattern)
{
    int i = atomic_load(&m->n_routes);
    if (i >= METRICS_MAX_ROUTES) {
        return -1;
    }
    snprintf(m->routes[i].method, sizeof(m->routes[i].method), "%s", method);
    snprintf(m->routes[i].pattern, sizeof(m->routes[i].pattern), "%s", pattern);
    atomic_store(&m->n_routes, i + 1);
    return i;
}

void metrics_observe(metrics *m, int route, int status, uint64_t duration_ns)
{
    if (route < 0 || route >= atomic_load(&m->n_routes)) {
        return;
    }
    route_metrics *r = &m->routes[route];
    size_t s = N_STATUS - 1;
    for (size_t i = 0; i + 1 < N_STATUS; i++) {
        if (STATUS_SLOTS[i] == status) {
            s = i;
            break;
        }
    }
    atomic_fetch_add_explicit(&r->by_status[s], 1, memory_order_relaxed);
    double secs = (double)duration_ns / 1e9;
    size_t b = 0;
    while (b < N_BUCKETS && secs > BUCKETS_S[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_ns, duration_ns, memory_order_relaxed);
}

static int metric_line(sbuf *b, const char *name, const char *type, const char *help,
                       double value)
{
    return sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                       value);
}

int metrics_render(app *a, sbuf *b)
{
    metrics *m = a->metrics;
    int n = atomic_load(&m->n_routes);
    int rc = sbuf_puts(b, "# HELP strata_http_requests_total HTTP requests by route and status.\n"
                          "# TYPE strata_http_requests_total counter\n");
    for (int i = 0; rc == STRATA_OK && i < n; i++) {
        route_metrics *r = &m->routes[i];
        for (size_t s = 0; s < N_STATUS && rc == STRATA_OK; s++) {
            uint64_t v = atomic_load_explicit(&r->by_status[s], memory_order_relaxed);
            if (v == 0) {
                continue;
            }
            char code[8];
            snprintf(code, sizeof(code), "%d", STATUS_SLOTS[s]);
            rc = sbuf_printf(b,
                             "strata_http_requests_total{method=\"%s\",route=\"%s\","
                             "status=\"%s\"} %llu\n",
                             r->method, r->pattern, STATUS_SLOTS[s] ? code : "other",
                             (unsigned long long)v);
        }
    }
    rc = rc ? rc
            : sbuf_puts(b, "# HELP strata_http_request_duration_seconds Request latency.\n"
                           "# TYPE strata_http_request_duration_seconds histogram\n");
    for (int i = 0; rc == STRATA_OK && i < n; i++) {
        route_metrics *r = &m->routes[i];
        uint64_t cum = 0;
        for (size_t k = 0; k <= N_BUCKETS && rc == STRATA_OK; k++) {
            cum += atomic_load_explicit(&r->bucket[k], memory_order_relaxed);
            char le[32];
            if (k < N_BUCKETS) {
                snprintf(le, sizeof(le), "%g", BUCKETS_S[k]);
            } else {
                snprintf(le, sizeof(le), "+Inf");
            }
            rc = sbuf_printf(b,
                             "strata_http_request_duration_seconds_bucket{method=\"%s\","
                             "route=\"%s\",le=\"%s\"} %llu\n",
                             r->method, r->pattern, le, (unsigned long long)cum);
        }
        rc = rc ? rc
                : sbuf_printf(b,
                              "strata_http_request_duration_seconds_sum{method=\"%s\","
                              "route=\"%s\"} %.9f\n"
                              "strata_http_request_duration_seconds_count{method=\"%s\","
                              "route=\"%s\"} %llu\n",
                              r->method, r->pattern,
                              (double)atomic_load(&r->sum_ns) / 1e9, r->method, r->pattern,
                              (unsigned long long)cum);
    }

    strata_db_stats st;
    strata_db_stats_get(a->db, &st);
    struct {
        const char *name;
        const char *type;
        const char *help;
        double v;
    } gauges[] = {
        {"strata_l1_sessions", "gauge", "Live sessions in L1.", (double)st.sessions},
        {"strata_l1_turns_buffered", "gauge", "Turns held in session buffers.",
         (double)st.turns_buffered},
        {"strata_l1_dirty_users", "gauge", "Users with a non-empty dirty set.",
         (double)st.dirty_users},
        {"strata_kv_keys", "gauge", "Generic-store keys across tiers.", (double)st.kv_keys},
        {"strata_l1_sessions_expired_total", "counter", "Sessions expired for idleness.",
         (double)st.sessions_expired},
        {"strata_log_last_lsn", "gauge", "Highest assigned log sequence number.",
         (double)st.log_last_lsn},
        {"strata_log_durable_lsn", "gauge", "Highest fsynced log sequence number.",
         (double)st.log_durable_lsn},
        {"strata_log_bytes", "gauge", "Bytes in live log segments.", (double)st.log_bytes},
        {"strata_log_segments", "gauge", "Live log segment files.", (double)st.log_segments},
        {"strata_log_fsyncs_total", "counter", "fdatasync calls on the log.",
         (double)st.log_fsyncs},
        {"strata_log_appends_total", "counter", "Records appended to the log.",
         (double)st.log_appends},
        {"strata_snapshots_total", "counter", "Snapshots written.", (double)st.snapshots_written},
        {"strata_log_segments_dropped_total", "counter", "Segments removed by retention.",
         (double)st.segments_dropped},
        {"strata_users_forgotten_total", "counter", "Right-to-be-forgotten deletions.",
         (double)st.users_forgotten},
        {"strata_forget_log_records_erased_total", "counter",
         "Log records of forgotten users rewritten as no-ops.", (double)st.forget_records_erased},
        {"strata_jobs_queued", "gauge", "Jobs waiting to run.", (double)st.jobs_queued},
        {"strata_jobs_running", "gauge", "Jobs running.", (double)st.jobs_running},
        {"strata_jobs_done_total", "counter", "Jobs finished.", (double)st.jobs_done},
        {"strata_jobs_failed_total", "counter", "Jobs failed for good.", (double)st.jobs_failed},
        {"strata_l2_memories", "gauge", "Memories in L2.", (double)st.memories},
        {"strata_l3_nodes", "gauge", "Nodes in L3.", (double)st.graph_nodes},
        {"strata_replay_stream_appended_total", "counter",
         "Records XADDed to the Redis replay stream.", (double)st.replay_appended},
        {"strata_replay_stream_errors_total", "counter",
         "Replay stream XADDs that failed (the file log has the records).",
         (double)st.replay_errors},
        {"strata_pipeline_memories_consolidated_total", "counter",
         "Memories created by consolidation.", (double)st.memories_consolidated},
        {"strata_pipeline_duplicates_skipped_total", "counter",
         "Candidates dropped as exact or near duplicates.", (double)st.duplicates_skipped},
        {"strata_pipeline_clarifications_total", "counter", "Contradictions flagged.",
         (double)st.clarifications_opened},
        {"strata_pipeline_distilled_total", "counter", "Memories distilled into L3.",
         (double)st.distilled},
        {"strata_l3_edges", "gauge", "Edge versions in L3 (current and expired).",
         (double)st.graph_edges},
        {"strata_l3_current_edges", "gauge", "Current (not expired) edges in L3.",
         (double)st.graph_current_edges},
        {"strata_embed_cache_hits_total", "counter", "Embeddings served from the cache.",
         (double)st.embed_cache_hits},
        {"strata_embed_cache_misses_total", "counter", "Embeddings computed.",
         (double)st.embed_cache_misses},
    };
    for (size_t i = 0; rc == STRATA_OK && i < STRATA_ARRAY_LEN(gauges); i++) {
        rc = metric_line(b, gauges[i].name, gauges[i].type, gauges[i].help, gauges[i].v);
    }
    if (a->http != NULL && rc == STRATA_OK) {
        http_server_stats hs;
        http_server_stats_get(a->http, &hs);
        rc = metric_line(b, "strata_http_connections_open", "gauge", "Open HTTP connections.",
                         (double)hs.connections_open);
        rc = rc ? rc
                : metric_line(b, "strata_http_connections_total", "counter",
                              "Accepted HTTP connections.", (double)hs.connections_total);
        rc = rc ? rc
                : metric_line(b, "strata_http_connections_rejected_total", "counter",
                              "Connections refused over max_connections.",
                              (double)hs.connections_rejected);
        if (a->settings != NULL && a->settings->http.tls != NULL) {
            rc = rc ? rc
                    : metric_line(b, "strata_tls_handshakes_total", "counter",
                                  "TLS handshakes completed.", (double)hs.tls_handshakes);
            rc = rc ? rc
                    : metric_line(b, "strata_tls_handshake_failures_total", "counter",
                                  "TLS handshakes failed or timed out.",
                                  (double)hs.tls_handshake_failures);
        }
    }
    rc = rc ? rc : metrics_render_repl(a, b);
    rc = rc ? rc
            : metric_line(b, "strata_uptime_seconds", "gauge", "Seconds since start.",
                          (double)(clock_now_ms() - a->started_ms) / 1000.0);
    return rc;
}

void h_metrics(req_ctx *c)
{
    c->resp->content_type = "text/plain; version=0.0.4";
    int rc = metrics_render(c->a, &c->resp->body);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
    }
}

void h_healthz(req_ctx *c)
{
    sbuf_puts(&c->resp->body, "{\"status\":\"ok\",\"version\":\"" STRATA_VERSION "\"}");
}
