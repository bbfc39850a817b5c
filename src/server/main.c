/*
 * main.c - stratad: load settings, set up TLS, open the engine (recovering
 * from the data directory), serve HTTP or HTTPS until SIGTERM/SIGINT, then
 * shut down gracefully: stop accepting, finish in-flight requests, stop
 * background jobs, snapshot and sync the log.
 *
 * Start-up refusals: no authentication off loopback (API.md); plain HTTP off
 * loopback unless --allow-plain-http (keys and data would cross the network
 * in clear); a certificate without its key, or files that cannot be used.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "server/tls.h"

static http_server *volatile g_server;

static void on_signal(int sig)
{
    (void)sig;
    if (g_server != NULL) {
        http_server_stop(g_server);
    }
}

/* 127.0.0.0/8, ::1 and localhost. */
static bool host_is_loopback(const char *host)
{
    return host != NULL && (strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
                            strcmp(host, "localhost") == 0);
}

/* Build the TLS context when a certificate or a key is configured. Returns
 * false, with the reason printed, when only one of them is given or they
 * cannot be used (unreadable, not PEM, not a pair). *out stays NULL for
 * plain HTTP. Done before the engine opens, so a typo fails fast. */
static bool tls_setup(const server_settings *s, tls_ctx **out)
{
    *out = NULL;
    bool cert = s->tls_cert != NULL && s->tls_cert[0] != '\0';
    bool key = s->tls_key != NULL && s->tls_key[0] != '\0';
    if (!cert && !key) {
        return true;
    }
    if (!key) {
        fprintf(stderr, "stratad: --tls-cert %s needs --tls-key (the certificate's private "
                        "key)\n", s->tls_cert);
        return false;
    }
    if (!cert) {
        fprintf(stderr, "stratad: --tls-key %s needs --tls-cert (the certificate chain)\n",
                s->tls_key);
        return false;
    }
    tls_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.cert_path = s->tls_cert;
    opt.key_path = s->tls_key;
    opt.min_version = strcmp(s->tls_min_version, "1.2") == 0 ? 12 : 13;
    if (tls_ctx_create(&opt, out) != STRATA_OK) {
        fprintf(stderr, "stratad: %s\n", strata_errmsg());
        return false;
    }
    return true;
}

static slog_level parse_level(const char *s)
{
    if (strcmp(s, "debug") == 0) {
        return SLOG_DEBUG;
    }
    if (strcmp(s, "warn") == 0) {
        return SLOG_WARN;
    }
    if (strcmp(s, "error") == 0) {
        return SLOG_ERROR;
    }
    return SLOG_INFO;
}

int main(int argc, char **argv)
{
    server_settings settings;
    char err[512] = "";
    int rc = settings_load(&settings, argc, argv, err, sizeof(err));
    if (rc == 1) {
        settings_print_help(stdout);
        settings_free(&settings);
        return 0;
    }
    if (rc != STRATA_OK) {
        fprintf(stderr, "stratad: %s\n", err);
        settings_free(&settings);
        return 2;
    }
    slog_set_level(parse_level(settings.log_level));
    signal(SIGPIPE, SIG_IGN);

    app a;
    memset(&a, 0, sizeof(a));
    a.settings = &settings;
    a.started_ms = clock_now_ms();
    pthread_mutex_init(&a.access_lock, NULL);
    int exit_code = 1;
    tls_ctx *tls = NULL;
    if (!tls_setup(&settings, &tls)) {
        goto out;
    }

    if (settings.access_log_path != NULL) {
        if (strcmp(settings.access_log_path, "-") == 0) {
            a.access_log = stderr;
        } else {
            a.access_log = fopen(settings.access_log_path, "a");
            if (a.access_log == NULL) {
                fprintf(stderr, "stratad: cannot open access log %s\n",
                        settings.access_log_path);
                goto out;
            }
        }
    }
    a.metrics = metrics_create();
    if (a.metrics == NULL || router_init(&a) != STRATA_OK) {
        fprintf(stderr, "stratad: out of memory\n");
        goto out;
    }
    if (server_replica_prepare(&a) != STRATA_OK) {
        goto out;
    }
    strata_recovery_info info;
    rc = strata_db_open(&settings.db, &a.db, &info);
    if (rc != STRATA_OK) {
        fprintf(stderr, "stratad: cannot open %s: %s\n", settings.db.data_dir,
                strata_errmsg());
        goto out;
    }
    slog(SLOG_INFO,
         "opened %s: replayed %llu records after snapshot LSN %llu, last LSN %llu, "
         "dropped %llu torn bytes, fsync=%s, encryption at rest %s",
         settings.db.data_dir, (unsigned long long)info.records_replayed,
         (unsigned long long)info.snapshot_lsn, (unsigned long long)info.last_lsn,
         (unsigned long long)info.bytes_truncated, strata_fsync_name(settings.db.fsync),
         (settings.db.master_key && settings.db.master_key[0]) ||
                 (settings.db.master_key_file && settings.db.master_key_file[0])
             ? "on (AES-256-GCM)"
             : "off");
    if (server_replica_start(&a) != STRATA_OK) {
        goto out;
    }

    /* With no admin key and no API key, every call acts for "default" with
     * no authentication: API.md allows that only on a loopback address. */
    bool auth_off = (settings.admin_key == NULL || settings.admin_key[0] == '\0') &&
                    strata_key_count(a.db) == 0;
    if (auth_off && !host_is_loopback(settings.http.host)) {
        fprintf(stderr,
                "stratad: refusing to serve %s without authentication: configure --admin-key "
                "(and create API keys) or listen on a loopback address\n",
                settings.http.host);
        goto out;
    }
    /* Bearer keys and memories must not cross a network in clear. */
    if (tls == NULL && !settings.allow_plain_http && !host_is_loopback(settings.http.host)) {
        fprintf(stderr,
                "stratad: refusing to serve plain HTTP on %s: configure --tls-cert and "
                "--tls-key, listen on a loopback address, or pass --allow-plain-http\n",
                settings.http.host);
        goto out;
    }
    settings.http.tls = tls;
    if (settings.rate_limit > 0) {
        a.limiter = rate_limiter_create((double)settings.rate_limit);
        if (a.limiter == NULL) {
            fprintf(stderr, "stratad: out of memory\n");
            goto out;
        }
    }
    http_server *srv = NULL;
    rc = http_server_create(&settings.http, router_dispatch, &a, &srv);
    if (rc != STRATA_OK) {
        fprintf(stderr, "stratad: cannot listen on %s:%u: %s\n", settings.http.host,
                settings.http.port, strata_errmsg());
        goto out;
    }
    a.http = srv;
    g_server = srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (tls != NULL) {
        slog(SLOG_INFO, "stratad %s listening on https://%s:%u (TLS only, minimum %s)",
             STRATA_VERSION, settings.http.host, http_server_port(srv),
             tls_ctx_min_version_name(tls));
    } else {
        slog(SLOG_INFO, "stratad %s listening on http://%s:%u (plain HTTP, no TLS)",
             STRATA_VERSION, settings.http.host, http_server_port(srv));
    }
    rc = http_server_run(srv);
    slog(SLOG_INFO, "shutting down");
    exit_code = rc == STRATA_OK ? 0 : 1;

out:
    g_server = NULL;
    /* Close the engine after the HTTP loops have finished in-flight requests
     * and the replica's follower (which writes into it) has stopped. */
    server_replica_shutdown(&a);
    strata_db_close(a.db);
    http_server_free(a.http);
    tls_ctx_free(tls);   /* after the server: its connections borrowed it */
    metrics_free(a.metrics);
    rate_limiter_free(a.limiter);
    if (a.access_log != NULL && a.access_log != stderr) {
        fclose(a.access_log);
    }
    pthread_mutex_destroy(&a.access_lock);
    settings_free(&settings);
    return exit_code;
}
