/*
 * fuzz_request.c - libFuzzer target for request handling end to end: the
 * input is parsed as an HTTP request and dispatched through the router into a
 * real engine (a temporary data directory, fsync=no, no background threads).
 * Inputs that do not start like a request line are used as a JSON body for
 * one of the body-taking routes (chosen by the first byte), so the JSON
 * decoding and validation of every handler is exercised directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static app g_app;
static server_settings g_settings; /* no admin key, no API keys: auth off, as on loopback */
static char g_dir[64];

static void cleanup(void)
{
    strata_db_close(g_app.db);
    metrics_free(g_app.metrics);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup failed\n");
    }
}

static void setup(void)
{
    if (g_app.db != NULL) {
        return;
    }
    snprintf(g_dir, sizeof(g_dir), "/tmp/strata-fuzz-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        abort();
    }
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = g_dir;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.background = 0;
    cfg.snapshot_every_s = 0;
    if (strata_db_open(&cfg, &g_app.db, NULL) != STRATA_OK) {
        abort();
    }
    g_app.settings = &g_settings;
    g_app.metrics = metrics_create();
    router_init(&g_app);
    pthread_mutex_init(&g_app.access_lock, NULL);
    atexit(cleanup);
}

static void dispatch(const http_request *req)
{
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.status = 200;
    resp.content_type = "application/json";
    sbuf_init(&resp.body, 1u << 20);
    router_dispatch(&g_app, req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        abort();
    }
    sbuf_free(&resp.body);
}

static const char *const BODY_ROUTES[][2] = {
    {"POST", "/v1/sessions/fz/turns"},
    {"PATCH", "/v1/sessions/fz/state"},
    {"POST", "/v1/sessions/fz/end"},
    {"PUT", "/v1/kv/l1/fz"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size > 65536) {
        return 0;
    }
    http_request req;
    memset(&req, 0, sizeof(req));
    http_limits lim = {16384, 65536};
    if (size > 0 && data[0] >= 'A' && data[0] <= 'Z') {
        int head = http_parse_head((const char *)data, size, &lim, &req);
        if (head <= 0) {
            return 0;
        }
        size_t rest = size - (size_t)head;
        if (req.content_length >= 0 && (size_t)req.content_length <= rest) {
            req.body = (const char *)data + head;
            req.body_len = (size_t)req.content_length;
        } else if (req.content_length < 0 && !req.chunked) {
            req.body = NULL;
            req.body_len = 0;
        } else {
            return 0;
        }
        dispatch(&req);
        return 0;
    }
    /* A JSON body for a body-taking route. */
    static char head[256];
    size_t pick = size ? data[0] % STRATA_ARRAY_LEN(BODY_ROUTES) : 0;
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     BODY_ROUTES[pick][0], BODY_ROUTES[pick][1], size ? size - 1 : 0);
    if (http_parse_head(head, (size_t)n, &lim, &req) <= 0) {
        abort(); /* our own request must parse */
    }
    req.body = size ? (const char *)data + 1 : NULL;
    req.body_len = size ? size - 1 : 0;
    dispatch(&req);
    return 0;
}
