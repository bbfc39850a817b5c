/*
 * replica.c - the replica's side of replication by log shipping
 * (active-passive, brief §3.1): a follower thread pulls the primary's log
 * over HTTP(S) and applies it; the engine refuses writes meanwhile
 * (strata_db_promote lifts that).
 *
 * Follower loop:
 *
 *   after = the replica log's last LSN
 *   GET /v1/admin/replication/log?after=A&max_bytes=M&wait_ms=0
 *     200  body = records in the log's encoding; ship_parse checks each CRC
 *          and that LSNs follow A; db_append_raw re-logs each under its own
 *          LSN and timestamp and applies it; X-Strata-Last-Lsn is the
 *          primary's last record, for the lag. An empty body: sleep poll_ms.
 *     401/403  wrong key: counted, logged, retried with backoff (never applies)
 *     410  the primary dropped the records we need: counted, logged; an
 *          empty replica bootstraps at its next start
 *     transport error (primary down): backoff 100 ms doubling to 2 s
 *
 * Why polling with wait_ms=0 instead of a long poll: the primary runs a
 * handler on its event-loop thread, so a request held open would stall the
 * other connections of that loop; a 10 ms poll costs a stat() and bounds the
 * added lag.
 *
 * Lag: records = primary's last LSN (as last reported) - applied LSN;
 * seconds = 0 while caught up, else the time since the replica last knew it
 * had everything the primary had. Writes the primary acknowledged after the
 * last contact are unknown to the replica: that is the window of loss of
 * asynchronous replication.
 *
 * Bootstrap (an empty data directory): GET /v1/admin/replication/snapshot
 * names the files of a fresh snapshot set with sizes and CRC32C; each is
 * fetched in 8 MiB ranges from /v1/admin/replication/files/{name}, checked,
 * fsync'ed and renamed into snap/. The engine then opens at that LSN and the
 * follower continues from there: no replay of the primary's whole history,
 * and it works however much log retention has dropped.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/ship.h"
#include "pipeline/pipeline.h"
#include "pipeline/repl.h"
#include "privacy/crypt.h"

#define DEFAULT_POLL_MS 10
#define DEFAULT_BATCH (4u << 20)
#define FILE_CHUNK (8u << 20)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define PATH_CAP 4400

struct replica {
    char *base_url;                  /* "http://host:port", no trailing '/' */
    char *auth_header;               /* "Authorization: Bearer …" or NULL */
    char *cacert;
    uint32_t poll_ms;
    size_t max_batch;
    uint64_t id;                     /* random; the primary tracks our position by it */
    strata_db *db;

    pthread_mutex_t lock;            /* guards everything below */
    pthread_cond_t wake;             /* stop requests */
    pthread_t thread;
    bool thread_running;
    bool stopping;
    replica_stats st;
    const uint64_t *logged_kind;     /* the error counter logged last */
    int64_t caught_up_ms;
    atomic_bool abort_io;            /* read by libcurl's progress callback */
};

/* ---- libcurl ------------------------------------------------------------------- */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_rc = CURLE_OK;

static void curl_once(void)
{
    g_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct http_res {
    long status;
    sbuf body;
    uint64_t last_lsn;
    bool has_last;
    char err[CURL_ERROR_SIZE];
} http_res;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    http_res *res = ud;
    return sbuf_append(&res->body, p, size * n) == STRATA_OK ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    http_res *res = ud;
    size_t len = size * n;
    static const char name[] = "x-strata-last-lsn:";
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        char v[32];
        size_t vl = STRATA_MIN(len - (sizeof(name) - 1), sizeof(v) - 1);
        memcpy(v, p + sizeof(name) - 1, vl);
        v[vl] = '\0';
        char *end = NULL;
        unsigned long long x = strtoull(v, &end, 10);
        if (end != v) {
            res->last_lsn = x;
            res->has_last = true;
        }
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    replica *r = ud;
    return atomic_load(&r->abort_io) ? 1 : 0;
}

/* GET base_url + path into res (body capped at max_body). Returns the
 * CURLcode; res->status is 0 when no answer arrived. */
static CURLcode r_get(replica *r, CURL *h, const char *path, size_t max_body, http_res *res)
{
    sbuf_reset(&res->body);
    res->body.max = max_body;
    res->status = 0;
    res->has_last = false;
    res->err[0] = '\0';
    char url[PATH_CAP];
    snprintf(url, sizeof(url), "%s%s", r->base_url, path);
    struct curl_slist *hdrs = NULL;
    if (r->auth_header != NULL) {
        hdrs = curl_slist_append(hdrs, r->auth_header);
    }
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, res);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, res->err);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    if (r->cacert != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, r->cacert);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    } else if (res->err[0] == '\0') {
        snprintf(res->err, sizeof(res->err), "%s", curl_easy_strerror(cc));
    }
    curl_slist_free_all(hdrs);
    return cc;
}

/* ---- state ----------------------------------------------------------------------- */

int replica_create(const replica_options *o, replica **out)
{
    *out = NULL;
    if (o == NULL || o->primary == NULL || o->primary[0] == '\0') {
        return strata_error(STRATA_EINVAL, "a replica needs the primary's address");
    }
    if ((o->key != NULL && strpbrk(o->key, "\r\n") != NULL) || strpbrk(o->primary, " \r\n")) {
        return strata_error(STRATA_EINVAL, "the replica key and address must be one line");
    }
    pthread_once(&g_curl_once, curl_once);
    if (g_curl_rc != CURLE_OK) {
        return strata_error(STRATA_EIO, "libcurl initialisation failed");
    }
    replica *r = strata_calloc(1, sizeof(*r));
    if (r == NULL) {
        return STRATA_ENOMEM;
    }
    sbuf u;
    sbuf_init(&u, 2048);
    bool has_scheme = strncasecmp(o->primary, "http://", 7) == 0 ||
                      strncasecmp(o->primary, "https://", 8) == 0;
    int rc = sbuf_printf(&u, "%s%s", has_scheme ? "" : "http://", o->primary);
    while (rc == STRATA_OK && u.len > 0 && u.data[u.len - 1] == '/') {
        u.data[--u.len] = '\0';
    }
    r->base_url = rc == STRATA_OK ? sbuf_take(&u, NULL) : NULL;
    sbuf_free(&u);
    if (o->key != NULL && o->key[0] != '\0') {
        size_t n = strlen(o->key) + 32;
        r->auth_header = strata_malloc(n);
        if (r->auth_header != NULL) {
            snprintf(r->auth_header, n, "Authorization: Bearer %s", o->key);
        }
    }
    r->cacert = o->cacert ? strata_strdup(o->cacert) : NULL;
    r->poll_ms = o->poll_ms ? o->poll_ms : DEFAULT_POLL_MS;
    r->max_batch = o->max_batch_bytes ? o->max_batch_bytes : DEFAULT_BATCH;
    if (crypt_random(&r->id, sizeof(r->id)) != STRATA_OK || r->id == 0) {
        r->id = (uint64_t)clock_now_ms() ^ (uint64_t)getpid() << 40;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->abort_io, false);
    r->caught_up_ms = clock_now_ms();
    if (r->base_url == NULL || (o->key && o->key[0] && r->auth_header == NULL) ||
        (o->cacert && r->cacert == NULL)) {
        replica_free(r);
        return STRATA_ENOMEM;
    }
    *out = r;
    return STRATA_OK;
}

void replica_free(replica *r)
{
    if (r == NULL) {
        return;
    }
    replica_stop(r);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    strata_free(r->base_url);
    strata_free(r->auth_header);
    strata_free(r->cacert);
    strata_free(r);
}

/* Sleep up to ms, or less when asked to stop. Returns true when stopping. */
static bool r_sleep(replica *r, long ms)
{
    pthread_mutex_lock(&r->lock);
    if (!r->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->wake, &r->lock, &ts);
    }
    bool stop = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return stop;
}

/* Count an error of one kind; log it when the kind changes and every 100th
 * time, so a primary that stays down does not flood the log. */
static void r_error(replica *r, uint64_t *counter, const char *what, const char *detail)
{
    pthread_mutex_lock(&r->lock);
    uint64_t n = ++*counter;
    r->st.connected = false;
    snprintf(r->st.last_error, sizeof(r->st.last_error), "%.100s: %.150s", what, detail);
    bool log = r->logged_kind != counter || n % 100 == 0;
    r->logged_kind = counter;
    pthread_mutex_unlock(&r->lock);
    if (log) {
        slog(SLOG_ERROR, "replica of %s: %s: %s (%" PRIu64 " times)", r->base_url, what, detail,
             n);
    }
}

/* The server's {"error":{"message"}} for a log line, else the raw body. */
static void error_detail(const http_res *res, char *out, size_t cap)
{
    const char *m = res->body.data ? strstr(res->body.data, "\"message\":\"") : NULL;
    if (m != NULL) {
        m += 11;
        size_t n = strcspn(m, "\"");
        snprintf(out, cap, "HTTP %ld: %.*s", res->status, (int)STRATA_MIN(n, cap), m);
    } else {
        snprintf(out, cap, "HTTP %ld", res->status);
    }
}

void replica_stats_get(replica *r, replica_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->st;
    int64_t since = clock_now_ms() - r->caught_up_ms;
    pthread_mutex_unlock(&r->lock);
    bool caught_up = out->connected && out->applied_lsn >= out->primary_lsn;
    out->lag_seconds = caught_up || out->promoted ? 0.0 : (double)since / 1000.0;
}

/* ---- applying ---------------------------------------------------------------------- */

typedef struct apply_ctx {
    strata_db *db;
    uint64_t next;
    uint64_t applied;
    uint64_t last;
} apply_ctx;

static int apply_cb(void *ctx, const aol_record *rec)
{
    apply_ctx *a = ctx;
    if (rec->lsn < a->next) {
        return STRATA_OK;
    }
    /* LSNs are ids (memories, jobs): keep them the primary's even across a
     * gap, with no-ops, as rebuild-from-stream does. */
    while (a->next < rec->lsn) {
        aol_record noop = {a->next, rec->ts_ms, AOL_NOOP, 0, "default", 7,
                           (const uint8_t *)"", 0};
        int rc = db_append_raw(a->db, &noop);
        if (rc != STRATA_OK) {
            return rc;
        }
        a->next++;
    }
    int rc = db_append_raw(a->db, rec);
    if (rc == STRATA_OK) {
        a->next = rec->lsn + 1;
        a->applied++;
        a->last = rec->lsn;
    }
    return rc;
}

int replica_apply_batch(strata_db *db, const uint8_t *buf, size_t len, uint64_t *applied_out,
                        uint64_t *last_out)
{
    aol_stats st;
    aol_stats_get(db->log, &st);
    apply_ctx a = {db, st.last_lsn + 1, 0, st.last_lsn};
    int rc = ship_parse(buf, len, st.last_lsn, apply_cb, &a);
    if (a.applied > 0) {
        /* Count a record as applied once the replica's own policy holds it. */
        int wrc = aol_wait(db->log, a.last);
        rc = rc ? rc : wrc;
    }
    if (applied_out != NULL) {
        *applied_out = a.applied;
    }
    if (last_out != NULL) {
        *last_out = a.last;
    }
    return rc;
}

/* ---- keys of an encrypted primary ---------------------------------------------------- */

/* The primary's sealed keyring into res->body: STRATA_OK, STRATA_ENOTFOUND
 * (encryption off there), or an error. */
static int fetch_keyring(replica *r, CURL *h, http_res *res)
{
    CURLcode cc = r_get(r, h, "/v1/admin/replication/keyring", 1u << 30, res);
    if (cc != CURLE_OK) {
        return strata_error(STRATA_EIO, "primary unreachable: %s", res->err);
    }
    if (res->status == 404) {
        return STRATA_ENOTFOUND;
    }
    if (res->status != 200) {
        char detail[300];
        error_detail(res, detail, sizeof(detail));
        return strata_error(STRATA_EPROTO, "keyring: %s", detail);
    }
    return STRATA_OK;
}

int replica_fetch_keyring(replica *r, const char *path)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return strata_error(STRATA_EIO, "cannot initialise libcurl");
    }
    http_res res;
    memset(&res, 0, sizeof(res));
    sbuf_init(&res.body, 1u << 30);
    int rc = fetch_keyring(r, h, &res);
    if (rc == STRATA_OK) {
        char tmp[PATH_CAP];
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || log_write_all(fd, res.body.data, res.body.len) != 0 ||
            log_fdatasync(fd) != 0) {
            rc = strata_error_errno("cannot write", tmp);
        }
        if (fd >= 0) {
            close(fd);
        }
        if (rc == STRATA_OK && rename(tmp, path) != 0) {
            rc = strata_error_errno("cannot replace", path);
        }
    }
    sbuf_free(&res.body);
    curl_easy_cleanup(h);
    return rc;
}

typedef struct key_scan {
    strata_db *db;
    bool unknown;
} key_scan;

static int key_scan_cb(void *ctx, const aol_record *rec)
{
    key_scan *k = ctx;
    k->unknown |= db_record_key_unknown(k->db, rec);
    return STRATA_OK;
}

/* A batch sealed under keys made on the primary since our last copy of its
 * keyring: fetch it again before applying. */
static int keys_for_batch(replica *r, CURL *h, const uint8_t *buf, size_t len)
{
    if (r->db->keyring == NULL) {
        return STRATA_OK;
    }
    aol_stats st;
    aol_stats_get(r->db->log, &st);
    key_scan k = {r->db, false};
    int rc = ship_parse(buf, len, st.last_lsn, key_scan_cb, &k);
    if (rc != STRATA_OK || !k.unknown) {
        return rc;
    }
    http_res res;
    memset(&res, 0, sizeof(res));
    sbuf_init(&res.body, 1u << 30);
    rc = fetch_keyring(r, h, &res);
    if (rc == STRATA_OK) {
        rc = keyring_replace(r->db->keyring, res.body.data, res.body.len);
    }
    sbuf_free(&res.body);
    return rc;
}

/* ---- the follower -------------------------------------------------------------------- */

static void *follow_main(void *arg)
{
    replica *r = arg;
    CURL *h = curl_easy_init();
    http_res res;
    memset(&res, 0, sizeof(res));
    sbuf_init(&res.body, r->max_batch + (AOL_MAX_PAYLOAD + 4096));
    long backoff = BACKOFF_MIN_MS;
    bool was_connected = false;
    while (h != NULL) {
        pthread_mutex_lock(&r->lock);
        bool stop = r->stopping;
        pthread_mutex_unlock(&r->lock);
        if (stop) {
            break;
        }
        aol_stats st;
        aol_stats_get(r->db->log, &st);
        uint64_t after = st.last_lsn;
        char path[256];
        snprintf(path, sizeof(path),
                 "/v1/admin/replication/log?after=%" PRIu64 "&max_bytes=%zu&wait_ms=0&replica=%"
                 PRIu64, after, r->max_batch, r->id);
        int64_t sent_ms = clock_now_ms();
        CURLcode cc = r_get(r, h, path, res.body.max, &res);
        char detail[300];
        long pause = 0;
        if (cc != CURLE_OK) {
            if (atomic_load(&r->abort_io)) {
                break;
            }
            r_error(r, &r->st.err_connect, "primary unreachable", res.err);
            was_connected = false;
            pause = backoff;
        } else if (res.status == 401 || res.status == 403) {
            error_detail(&res, detail, sizeof(detail));
            r_error(r, &r->st.err_unauthorized, "unauthorized (check --replica-key)", detail);
            was_connected = false;
            pause = BACKOFF_MAX_MS;
        } else if (res.status == 410) {
            error_detail(&res, detail, sizeof(detail));
            r_error(r, &r->st.err_gone,
                    "the primary no longer has the records this replica needs; restart it on "
                    "an empty data directory to bootstrap from a snapshot",
                    detail);
            was_connected = false;
            pause = BACKOFF_MAX_MS;
        } else if (res.status != 200) {
            error_detail(&res, detail, sizeof(detail));
            r_error(r, &r->st.err_http, "unexpected answer", detail);
            was_connected = false;
            pause = backoff;
        } else if (res.has_last && after > res.last_lsn) {
            snprintf(detail, sizeof(detail),
                     "this replica holds LSN %" PRIu64 " but the primary's log ends at %" PRIu64
                     " (the primary lost records, or is another server); not applying",
                     after, res.last_lsn);
            r_error(r, &r->st.err_protocol, "diverged", detail);
            pause = BACKOFF_MAX_MS;
        } else {
            uint64_t applied = 0;
            uint64_t last = 0;
            int rc = keys_for_batch(r, h, (const uint8_t *)res.body.data, res.body.len);
            rc = rc ? rc
                    : replica_apply_batch(r->db, (const uint8_t *)res.body.data, res.body.len,
                                          &applied, &last);
            if (rc != STRATA_OK) {
                r_error(r, rc == STRATA_EPROTO ? &r->st.err_protocol : &r->st.err_apply,
                        rc == STRATA_EPROTO ? "bad batch" : "cannot apply", strata_errmsg());
                pause = backoff;
            } else {
                if (!was_connected) {
                    slog(SLOG_INFO, "replica following %s from LSN %" PRIu64, r->base_url,
                         after);
                    was_connected = true;
                }
                aol_stats_get(r->db->log, &st);
                pthread_mutex_lock(&r->lock);
                r->st.connected = true;
                r->st.last_contact_ms = sent_ms;
                r->st.applied_lsn = st.last_lsn;
                r->st.primary_lsn = res.has_last ? STRATA_MAX(res.last_lsn, st.last_lsn)
                                                 : st.last_lsn;
                r->st.records_applied += applied;
                r->st.batches++;
                if (r->st.applied_lsn >= r->st.primary_lsn) {
                    r->caught_up_ms = clock_now_ms();
                }
                pthread_mutex_unlock(&r->lock);
                backoff = BACKOFF_MIN_MS;
                pause = res.body.len == 0 ? (long)r->poll_ms : 0;
            }
        }
        if (pause > 0) {
            if (pause == backoff) {
                backoff = STRATA_MIN(backoff * 2, BACKOFF_MAX_MS);
            }
            if (r_sleep(r, pause)) {
                break;
            }
        }
    }
    sbuf_free(&res.body);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    pthread_mutex_lock(&r->lock);
    r->st.following = false;
    r->st.connected = false;
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int replica_start(replica *r, strata_db *db)
{
    aol_stats st;
    aol_stats_get(db->log, &st);
    pthread_mutex_lock(&r->lock);
    r->db = db;
    r->st.applied_lsn = st.last_lsn;
    r->st.primary_lsn = STRATA_MAX(r->st.primary_lsn, st.last_lsn);
    r->st.following = true;
    r->stopping = false;
    int rc = STRATA_OK;
    if (pthread_create(&r->thread, NULL, follow_main, r) != 0) {
        r->st.following = false;
        rc = strata_error(STRATA_EIO, "cannot start the replica thread");
    } else {
        r->thread_running = true;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void replica_stop(replica *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->lock);
    bool join = r->thread_running;
    r->thread_running = false;
    r->stopping = true;
    atomic_store(&r->abort_io, true);
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    if (join) {
        pthread_join(r->thread, NULL);
    }
}

int replica_check_not_promoted(const char *data_dir)
{
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/%s", data_dir, REPLICA_PROMOTED_FILE);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return STRATA_OK;
    }
    char line[64] = "";
    if (fgets(line, sizeof(line), f) == NULL) {
        line[0] = '\0';
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return strata_error(STRATA_ECONFLICT,
                        "%s was promoted to a primary (%s): it has writes its old primary "
                        "never had, so it cannot follow one again; start without --replica-of, "
                        "or make a new replica on an empty directory",
                        data_dir, line);
}

int replica_promote(replica *r, strata_db *db)
{
    /* Stop first: nothing may be applied once local writes take LSNs. */
    replica_stop(r);
    int rc = strata_db_promote(db);
    if (rc == STRATA_OK) {
        aol_stats st;
        aol_stats_get(db->log, &st);
        /* Remembered across restarts: restarted with --replica-of by
         * mistake, it must not mix another primary's records into its log. */
        char path[PATH_CAP];
        snprintf(path, sizeof(path), "%s/%s", db->data_dir, REPLICA_PROMOTED_FILE);
        FILE *f = fopen(path, "w");
        if (f == NULL || fprintf(f, "at LSN %" PRIu64 "\n", st.last_lsn) < 0 || fclose(f) != 0 ||
            log_fsync_dir(db->data_dir) != STRATA_OK) {
            slog(SLOG_ERROR, "promoted, but cannot write %s: %s", path, strerror(errno));
        }
        pthread_mutex_lock(&r->lock);
        r->st.promoted = true;
        r->st.applied_lsn = st.last_lsn;
        pthread_mutex_unlock(&r->lock);
        slog(SLOG_WARN, "promoted to primary at LSN %" PRIu64 " (was a replica of %s)",
             st.last_lsn, r->base_url);
    }
    return rc;
}

/* ---- bootstrap ----------------------------------------------------------------------- */

/* No segment and no snapshot: nothing a bootstrap could overwrite. */
static bool dir_has(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return false;
    }
    bool found = false;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while (!found && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        found = n > sl && strcmp(e->d_name + n - sl, suffix) == 0;
    }
    closedir(d);
    return found;
}

/* Fetch one file of the export into snap/ (checked, synced, renamed).
 * STRATA_ENOTFOUND when the primary pruned it meanwhile. */
static int fetch_file(replica *r, CURL *h, const char *snap_dir, const backup_file *f,
                      http_res *res)
{
    const char *name = f->name + 5; /* "snap/" */
    char part[PATH_CAP + 64];
    char final[PATH_CAP + 64];
    snprintf(part, sizeof(part), "%s/%.47s.part", snap_dir, name);
    snprintf(final, sizeof(final), "%s/%.47s", snap_dir, name);
    int fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return strata_error_errno("cannot create", part);
    }
    uint64_t off = 0;
    uint32_t crc = 0;
    int rc = STRATA_OK;
    while (rc == STRATA_OK && off < f->size) {
        uint64_t want = STRATA_MIN((uint64_t)FILE_CHUNK, f->size - off);
        char path[256];
        snprintf(path, sizeof(path),
                 "/v1/admin/replication/files/%s?offset=%" PRIu64 "&length=%" PRIu64, name, off,
                 want);
        CURLcode cc = r_get(r, h, path, FILE_CHUNK + 1024, res);
        if (cc != CURLE_OK) {
            rc = strata_error(STRATA_EIO, "fetching %s: %s", name, res->err);
        } else if (res->status == 404) {
            rc = strata_error(STRATA_ENOTFOUND, "%s was pruned on the primary", name);
        } else if (res->status != 200 || res->body.len != want) {
            char detail[300];
            error_detail(res, detail, sizeof(detail));
            rc = strata_error(res->status == 401 || res->status == 403 ? STRATA_EINVAL
                                                                        : STRATA_EPROTO,
                              "fetching %s: %s (%zu bytes)", name, detail, res->body.len);
        } else if (log_write_all(fd, res->body.data, res->body.len) != 0) {
            rc = strata_error_errno("cannot write", part);
        } else {
            crc = crc32c(crc, res->body.data, res->body.len);
            off += res->body.len;
        }
    }
    if (rc == STRATA_OK && crc != f->crc32c) {
        rc = strata_error(STRATA_EPROTO, "%s arrived with CRC32C %08x, expected %08x", name, crc,
                          f->crc32c);
    }
    if (rc == STRATA_OK && log_fdatasync(fd) != 0) {
        rc = strata_error_errno("cannot sync", part);
    }
    close(fd);
    if (rc == STRATA_OK && rename(part, final) != 0) {
        rc = strata_error_errno("cannot rename", part);
    }
    if (rc != STRATA_OK) {
        unlink(part);
    }
    return rc;
}

static int bootstrap_once(replica *r, CURL *h, const char *data_dir, uint32_t buffer_turns,
                          uint32_t consolidate_every, http_res *res, uint64_t *lsn_out)
{
    CURLcode cc = r_get(r, h, "/v1/admin/replication/snapshot", 64u << 20, res);
    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE) {
        /* Waiting will not make the certificate trusted. */
        return strata_error(STRATA_EINVAL, "TLS: %s (check --replica-cacert)", res->err);
    }
    if (cc != CURLE_OK) {
        return strata_error(STRATA_EIO, "primary unreachable: %s", res->err);
    }
    if (res->status != 200) {
        char detail[300];
        error_detail(res, detail, sizeof(detail));
        return strata_error(res->status == 401 || res->status == 403 ? STRATA_EINVAL
                                                                      : STRATA_EPROTO,
                            "snapshot export: %s", detail);
    }
    backup_manifest m;
    int rc = backup_manifest_parse(res->body.data, res->body.len, &m);
    if (rc != STRATA_OK) {
        return strata_error(STRATA_EPROTO, "snapshot export: %s", strata_errmsg());
    }
    if (m.buffer_turns != 0 &&
        (m.buffer_turns != buffer_turns || m.consolidate_every != consolidate_every)) {
        rc = strata_error(STRATA_ECONFLICT,
                          "the primary runs with buffer-turns %u and consolidate-every %u, this "
                          "replica with %u and %u: replaying its log would diverge",
                          m.buffer_turns, m.consolidate_every, buffer_turns, consolidate_every);
    }
    char snap_dir[PATH_CAP];
    snprintf(snap_dir, sizeof(snap_dir), "%s/snap", data_dir);
    rc = rc ? rc : log_mkdir_p(snap_dir);
    for (size_t i = 0; rc == STRATA_OK && i < m.n_files; i++) {
        if (strncmp(m.files[i].name, "snap/", 5) != 0) {
            rc = strata_error(STRATA_EPROTO, "snapshot export lists %s", m.files[i].name);
        } else {
            rc = fetch_file(r, h, snap_dir, &m.files[i], res);
        }
    }
    if (rc == STRATA_OK && m.l2_model != NULL) {
        /* The collection's embedder: a promoted replica embeds new writes in
         * the same space. */
        char path[PATH_CAP];
        snprintf(path, sizeof(path), "%s/l2.model", data_dir);
        FILE *f = fopen(path, "w");
        if (f == NULL || fprintf(f, "%s\n", m.l2_model) < 0 || fclose(f) != 0) {
            rc = strata_error_errno("cannot write", path);
        }
    }
    rc = rc ? rc : log_fsync_dir(snap_dir);
    *lsn_out = m.lsn;
    backup_manifest_free(&m);
    return rc;
}

int replica_bootstrap(replica *r, const char *data_dir, uint32_t buffer_turns,
                      uint32_t consolidate_every, int timeout_ms)
{
    char log_dir[PATH_CAP];
    char snap_dir[PATH_CAP];
    snprintf(log_dir, sizeof(log_dir), "%s/log", data_dir);
    snprintf(snap_dir, sizeof(snap_dir), "%s/snap", data_dir);
    if (dir_has(log_dir, ".seg") || dir_has(snap_dir, ".snap")) {
        return STRATA_OK; /* a replica that ran before: it follows from its own LSN */
    }
    int rc = log_mkdir_p(data_dir);
    if (rc != STRATA_OK) {
        return rc;
    }
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return strata_error(STRATA_EIO, "cannot initialise libcurl");
    }
    http_res res;
    memset(&res, 0, sizeof(res));
    sbuf_init(&res.body, 64u << 20);
    uint64_t deadline = clock_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    uint64_t lsn = 0;
    long backoff = BACKOFF_MIN_MS;
    for (;;) {
        rc = bootstrap_once(r, h, data_dir, buffer_turns, consolidate_every, &res, &lsn);
        if (rc == STRATA_OK || rc == STRATA_EINVAL || rc == STRATA_ECONFLICT ||
            clock_mono_ns() >= deadline ||
            atomic_load(&r->abort_io)) {
            break;
        }
        /* Unreachable, or a file pruned meanwhile: ask again. */
        struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        backoff = STRATA_MIN(backoff * 2, BACKOFF_MAX_MS);
    }
    sbuf_free(&res.body);
    curl_easy_cleanup(h);
    if (rc == STRATA_OK) {
        pthread_mutex_lock(&r->lock);
        r->st.applied_lsn = lsn;
        r->st.primary_lsn = lsn;
        pthread_mutex_unlock(&r->lock);
        slog(SLOG_INFO, "replica bootstrapped from %s's snapshot at LSN %" PRIu64, r->base_url,
             lsn);
    } else {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", strata_errmsg());
        /* Leave nothing half-fetched behind: the next start tries again. */
        DIR *d = opendir(snap_dir);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                char p[PATH_CAP + 256];
                snprintf(p, sizeof(p), "%s/%s", snap_dir, e->d_name);
                unlink(p);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        bool refused = strstr(msg, "HTTP 401") != NULL || strstr(msg, "HTTP 403") != NULL;
        r_error(r, refused ? &r->st.err_unauthorized
                           : rc == STRATA_ECONFLICT ? &r->st.err_http : &r->st.err_connect,
                refused ? "unauthorized (check --replica-key): bootstrap from the primary's "
                          "snapshot failed"
                        : "bootstrap from the primary's snapshot failed",
                msg);
        rc = strata_error(rc, "%s", msg);
    }
    return rc;
}
