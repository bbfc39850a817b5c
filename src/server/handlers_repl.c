/*
 * handlers_repl.c - backups and replication over HTTP (admin key, or the
 * replication key for the routes a replica calls), the role / replica /
 * snapshot metrics, and the replica's life around the engine in main.c.
 *
 *   POST /v1/admin/backup {"dir"}           online backup into a server-side dir
 *   POST /v1/admin/promote                  replica -> writable primary
 *   GET  /v1/admin/replication              role, positions, lag
 *   GET  /v1/admin/replication/log          raw records after an LSN (octet-stream)
 *   GET  /v1/admin/replication/snapshot     a fresh snapshot's file list (bootstrap)
 *   GET  /v1/admin/replication/files/{name} a byte range of one snapshot file
 *
 * The backup runs on the request's event-loop thread for as long as the copy
 * takes: other loops keep serving and writes keep flowing (the engine is not
 * locked during the copy), which is what an operator's occasional backup
 * needs; the CLI waits with a long timeout.
 */
#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/repl.h"
#include "server/server.h"

#define LOG_BATCH_DEFAULT (4u << 20)
#define LOG_BATCH_MAX (32u << 20)
#define WAIT_MAX_MS 1000
#define FILE_CHUNK_DEFAULT (8u << 20)
#define FILE_CHUNK_MAX (16u << 20)

/* Query parameter `name` as an unsigned integer: 1 found, 0 absent, -1 bad
 * (a 400 is written). */
static int query_u64(req_ctx *c, const char *name, uint64_t max, uint64_t *out)
{
    char v[32];
    long n = http_query_param(c->req->query, c->req->query_len, name, v, sizeof(v));
    if (n == -1) {
        return 0;
    }
    char *end = NULL;
    unsigned long long x = n > 0 ? strtoull(v, &end, 10) : 0;
    if (n <= 0 || v[0] < '0' || v[0] > '9' || end == NULL || *end != '\0' || x > max) {
        respond_error(c->resp, 400, "invalid_argument", "%s must be an integer in 0..%" PRIu64,
                      name, max);
        return -1;
    }
    *out = x;
    return 1;
}

void h_admin_backup(req_ctx *c)
{
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"dir", NULL};
    const char *dir = NULL;
    if (!body_only_keys(c, body, allowed) || !body_get_string(c, body, "dir", true, &dir, NULL)) {
        json_decref(body);
        return;
    }
    if (dir[0] != '/') {
        respond_error(c->resp, 400, "invalid_argument",
                      "dir must be an absolute path on the server");
        json_decref(body);
        return;
    }
    backup_manifest m;
    int rc = backup_create(c->a->db, dir, &m);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        json_decref(body);
        return;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"dir\":");
    json_put_cstr(b, dir);
    sbuf_putc(b, ',');
    sbuf mj;
    sbuf_init(&mj, 64u << 20);
    if (backup_manifest_json(&m, &mj) == STRATA_OK) {
        sbuf_append(b, mj.data + 1, mj.len - 1); /* the manifest's fields after "dir" */
    }
    sbuf_free(&mj);
    backup_manifest_free(&m);
    json_decref(body);
}

static void put_replica_stats(sbuf *b, const replica_stats *st)
{
    sbuf_printf(b,
                "{\"following\":%s,\"connected\":%s,\"applied_lsn\":%" PRIu64
                ",\"primary_lsn\":%" PRIu64 ",\"lag_records\":%" PRIu64 ",\"lag_seconds\":",
                st->following ? "true" : "false", st->connected ? "true" : "false",
                st->applied_lsn, st->primary_lsn,
                st->primary_lsn > st->applied_lsn ? st->primary_lsn - st->applied_lsn : 0);
    json_put_double(b, st->lag_seconds);
    sbuf_puts(b, ",\"last_error\":");
    json_put_cstr(b, st->last_error);
    sbuf_putc(b, '}');
}

void h_admin_promote(req_ctx *c)
{
    if (c->a->replica == NULL || !strata_db_is_replica(c->a->db)) {
        respond_error(c->resp, 409, "not_replica", "this server is already a primary");
        return;
    }
    int rc = replica_promote(c->a->replica, c->a->db);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    strata_db_stats st;
    strata_db_stats_get(c->a->db, &st);
    sbuf_printf(&c->resp->body, "{\"role\":\"primary\",\"lsn\":%" PRIu64 "}", st.log_last_lsn);
}

void h_repl_status(req_ctx *c)
{
    strata_db_stats st;
    strata_db_stats_get(c->a->db, &st);
    sbuf *b = &c->resp->body;
    sbuf_printf(b, "{\"role\":\"%s\",\"last_lsn\":%" PRIu64,
                strata_db_is_replica(c->a->db) ? "replica" : "primary", st.log_last_lsn);
    if (c->a->replica != NULL) {
        replica_stats rs;
        replica_stats_get(c->a->replica, &rs);
        sbuf_puts(b, ",\"replica\":");
        put_replica_stats(b, &rs);
    }
    sbuf_putc(b, '}');
}

void h_repl_log(req_ctx *c)
{
    uint64_t after = 0;
    uint64_t max_bytes = LOG_BATCH_DEFAULT;
    uint64_t wait_ms = 0;
    int got = query_u64(c, "after", INT64_MAX, &after);
    if (got == 0) {
        respond_error(c->resp, 400, "missing_field", "after (an LSN) is required");
        return;
    }
    uint64_t replica_id = 0;
    if (got < 0 || query_u64(c, "max_bytes", LOG_BATCH_MAX, &max_bytes) < 0 ||
        query_u64(c, "wait_ms", WAIT_MAX_MS, &wait_ms) < 0 ||
        query_u64(c, "replica", UINT64_MAX, &replica_id) < 0) {
        return;
    }
    /* A replica asking for records after `after` has applied everything up
     * to it: a right-to-be-forgotten waits for that before erasing its own
     * record, so the replica learns of the deletion. */
    if (replica_id != 0) {
        forget_note_replica(c->a->db, replica_id, after);
    }
    repl_log_info info;
    int rc = repl_log_read(c->a->db, after, max_bytes ? max_bytes : 1, (int)wait_ms,
                           &c->resp->body, &info);
    if (rc == STRATA_ENOTFOUND) {
        sbuf_reset(&c->resp->body);
        respond_error(c->resp, 410, "gone",
                      "the log starts at LSN %" PRIu64 ": records after %" PRIu64
                      " were dropped; bootstrap from /v1/admin/replication/snapshot",
                      info.first_lsn, after);
        return;
    }
    if (rc != STRATA_OK) {
        sbuf_reset(&c->resp->body);
        respond_strata_error(c->resp, rc);
        return;
    }
    char v[32];
    snprintf(v, sizeof(v), "%" PRIu64, info.primary_lsn);
    http_response_header(c->resp, "X-Strata-Last-Lsn", v);
    snprintf(v, sizeof(v), "%" PRIu64, info.records);
    http_response_header(c->resp, "X-Strata-Records", v);
    c->resp->content_type = "application/octet-stream";
}

void h_repl_snapshot(req_ctx *c)
{
    backup_manifest m;
    int rc = repl_snapshot_export(c->a->db, &m);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    backup_manifest_json(&m, &c->resp->body);
    backup_manifest_free(&m);
}

/* The sealed keyring of an encrypted primary: a replica started with the same
 * master key opens it; to anybody else it is ciphertext. */
void h_repl_keyring(req_ctx *c)
{
    int rc = repl_keyring_image(c->a->db, &c->resp->body);
    if (rc != STRATA_OK) {
        sbuf_reset(&c->resp->body);
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->content_type = "application/octet-stream";
}

void h_repl_file(req_ctx *c)
{
    uint64_t off = 0;
    uint64_t len = FILE_CHUNK_DEFAULT;
    if (query_u64(c, "offset", INT64_MAX, &off) < 0 ||
        query_u64(c, "length", FILE_CHUNK_MAX, &len) < 0) {
        return;
    }
    int rc = repl_snapshot_read(c->a->db, c->params->value[0], off, len, &c->resp->body);
    if (rc != STRATA_OK) {
        sbuf_reset(&c->resp->body);
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->content_type = "application/octet-stream";
}

static int gauge(sbuf *b, const char *name, const char *type, const char *help, double v)
{
    return sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                       v);
}

int metrics_render_repl(app *a, sbuf *b)
{
    bool is_replica = strata_db_is_replica(a->db) != 0;
    int rc = sbuf_printf(b,
                         "# HELP strata_role The server's role (1 for the current one).\n"
                         "# TYPE strata_role gauge\n"
                         "strata_role{role=\"primary\"} %d\nstrata_role{role=\"replica\"} %d\n",
                         is_replica ? 0 : 1, is_replica ? 1 : 0);
    snapshot_stats ss;
    db_snapshot_stats(a->db, &ss);
    rc = rc ? rc
            : gauge(b, "strata_snapshot_last_lsn", "gauge",
                    "Log position covered by the newest snapshot set written.",
                    (double)ss.last_lsn);
    rc = rc ? rc
            : gauge(b, "strata_snapshot_last_timestamp_seconds", "gauge",
                    "When the newest snapshot set was written (Unix seconds).",
                    (double)ss.last_ms / 1000.0);
    rc = rc ? rc
            : gauge(b, "strata_snapshot_archived_sets", "gauge",
                    "Snapshot sets kept in snap/archive for point-in-time restore.",
                    (double)ss.archived_sets);
    rc = rc ? rc
            : gauge(b, "strata_snapshot_archives_total", "counter",
                    "Scheduled (archived) snapshots taken since start.",
                    (double)ss.archives_taken);
    if (a->replica == NULL || rc != STRATA_OK) {
        return rc;
    }
    replica_stats st;
    replica_stats_get(a->replica, &st);
    uint64_t lag = st.primary_lsn > st.applied_lsn ? st.primary_lsn - st.applied_lsn : 0;
    rc = gauge(b, "strata_replica_applied_lsn", "gauge", "Last primary record applied here.",
               (double)st.applied_lsn);
    rc = rc ? rc
            : gauge(b, "strata_replica_primary_lsn", "gauge",
                    "The primary's last record, as last reported to this replica.",
                    (double)st.primary_lsn);
    rc = rc ? rc
            : gauge(b, "strata_replica_lag_records", "gauge",
                    "Records the primary reported that this replica has not applied.",
                    (double)lag);
    rc = rc ? rc
            : gauge(b, "strata_replica_lag_seconds", "gauge",
                    "0 when caught up, else seconds since this replica last was.",
                    st.lag_seconds);
    rc = rc ? rc
            : gauge(b, "strata_replica_last_contact_timestamp_seconds", "gauge",
                    "When the last successful fetch from the primary was sent (Unix s); "
                    "writes the primary took after it are not in the lag.",
                    (double)st.last_contact_ms / 1000.0);
    rc = rc ? rc
            : gauge(b, "strata_replica_connected", "gauge",
                    "1 while the primary answers the follower.", st.connected ? 1.0 : 0.0);
    rc = rc ? rc
            : gauge(b, "strata_replica_records_applied_total", "counter",
                    "Records applied from the primary since start.",
                    (double)st.records_applied);
    rc = rc ? rc
            : sbuf_printf(b,
                          "# HELP strata_replica_errors_total Follower failures by kind.\n"
                          "# TYPE strata_replica_errors_total counter\n"
                          "strata_replica_errors_total{kind=\"connect\"} %" PRIu64 "\n"
                          "strata_replica_errors_total{kind=\"unauthorized\"} %" PRIu64 "\n"
                          "strata_replica_errors_total{kind=\"gone\"} %" PRIu64 "\n"
                          "strata_replica_errors_total{kind=\"protocol\"} %" PRIu64 "\n"
                          "strata_replica_errors_total{kind=\"apply\"} %" PRIu64 "\n"
                          "strata_replica_errors_total{kind=\"http\"} %" PRIu64 "\n",
                          st.err_connect, st.err_unauthorized, st.err_gone, st.err_protocol,
                          st.err_apply, st.err_http);
    return rc;
}

/* ---- the replica's life in main.c ------------------------------------------------- */

int server_replica_prepare(app *a)
{
    server_settings *s = a->settings;
    if (s->replica_of == NULL || s->replica_of[0] == '\0') {
        return STRATA_OK;
    }
    if (replica_check_not_promoted(s->db.data_dir) != STRATA_OK) {
        fprintf(stderr, "stratad: %s\n", strata_errmsg());
        return STRATA_ECONFLICT;
    }
    replica_options o;
    memset(&o, 0, sizeof(o));
    o.primary = s->replica_of;
    o.key = s->replica_key;
    o.cacert = s->replica_cacert;
    int rc = replica_create(&o, &a->replica);
    if (rc != STRATA_OK) {
        fprintf(stderr, "stratad: --replica-of %s: %s\n", s->replica_of, strata_errmsg());
        return rc;
    }
    /* An encrypted primary: its keyring (sealed under the master key this
     * replica must share) comes first, so snapshots and records open. */
    bool encrypted = (s->db.master_key != NULL && s->db.master_key[0] != '\0') ||
                     (s->db.master_key_file != NULL && s->db.master_key_file[0] != '\0');
    if (encrypted) {
        char path[4200];
        if (s->db.keyring_path != NULL && s->db.keyring_path[0] != '\0') {
            snprintf(path, sizeof(path), "%s", s->db.keyring_path);
        } else {
            snprintf(path, sizeof(path), "%s/keyring", s->db.data_dir);
        }
        rc = mkdir(s->db.data_dir, 0700) == 0 || errno == EEXIST ? STRATA_OK : STRATA_EIO;
        rc = rc ? rc : replica_fetch_keyring(a->replica, path);
        if (rc == STRATA_ENOTFOUND) {
            slog(SLOG_WARN, "the primary does not encrypt at rest; this replica will");
        } else if (rc != STRATA_OK) {
            slog(SLOG_WARN, "cannot fetch the primary's keyring (%s); using the local copy",
                 strata_errmsg());
        }
    }
    /* An empty replica starts from the primary's snapshot. If the primary
     * cannot be reached or refuses the key, start anyway, empty and
     * read-only: the follower keeps reporting the problem in the log and in
     * /metrics. Diverging settings are a configuration error. */
    rc = replica_bootstrap(a->replica, s->db.data_dir, s->db.buffer_turns,
                           s->db.consolidate_every, 10000);
    if (rc == STRATA_ECONFLICT) {
        fprintf(stderr, "stratad: %s\n", strata_errmsg());
        return rc;
    }
    s->db.replica = 1;
    return STRATA_OK;
}

int server_replica_start(app *a)
{
    if (a->replica == NULL) {
        return STRATA_OK;
    }
    int rc = replica_start(a->replica, a->db);
    if (rc != STRATA_OK) {
        fprintf(stderr, "stratad: %s\n", strata_errmsg());
        return rc;
    }
    slog(SLOG_INFO, "read-only replica of %s", a->settings->replica_of);
    return STRATA_OK;
}

void server_replica_shutdown(app *a)
{
    replica_free(a->replica);
    a->replica = NULL;
}
