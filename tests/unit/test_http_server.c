/*
 * test_http_server.c - the epoll HTTP server (http_server.c) driven over
 * raw sockets: keep-alive, pipelining, limits (413, 431, 400), Connection:
 * close, 100-continue, chunked bodies, large responses (EAGAIN path), many
 * concurrent clients, max_connections, idle and request timeouts, and a
 * graceful stop while a slow handler runs.
 *
 * Each test starts its own server on an ephemeral port with 2 loops, runs
 * http_server_run() on a background thread, and stops and frees it at the
 * end. The handler echoes {"method","path","body"} as JSON; a few paths
 * change its behaviour (/slow, /big, /close, /hdr).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server/http.h"
#include "test.h"

#define BIG_BODY_BYTES (8u * 1024u * 1024u)

static atomic_int g_slow_started;

static bool path_is(const http_request *req, const char *p)
{
    return req->path_len == strlen(p) && memcmp(req->path, p, req->path_len) == 0;
}

/* Echo handler; thread-safe (it only touches req and resp). */
static void echo_handler(void *ctx, const http_request *req, http_response *resp)
{
    (void)ctx;
    if (path_is(req, "/slow")) {
        atomic_store(&g_slow_started, 1);
        usleep(500 * 1000);
    } else if (path_is(req, "/big")) {
        resp->content_type = "text/plain";
        for (size_t i = 0; i < BIG_BODY_BYTES; i += 16) {
            if (sbuf_append(&resp->body, "0123456789abcdef", 16) != STRATA_OK) {
                resp->status = 500;
                return;
            }
        }
        return;
    } else if (path_is(req, "/close")) {
        resp->close = true;
    } else if (path_is(req, "/hdr")) {
        resp->status = 201;
        http_response_header(resp, "X-Test", "yes");
        http_response_header(resp, "X-Bad", "a\r\nInjected: 1");
    }
    int rc = sbuf_puts(&resp->body, "{\"method\":");
    rc = rc ? rc : json_put_str(&resp->body, req->method, req->method_len);
    rc = rc ? rc : sbuf_puts(&resp->body, ",\"path\":");
    rc = rc ? rc : json_put_str(&resp->body, req->path, req->path_len);
    rc = rc ? rc : sbuf_puts(&resp->body, ",\"body\":");
    rc = rc ? rc : json_put_str(&resp->body, req->body ? req->body : "", req->body_len);
    rc = rc ? rc : sbuf_puts(&resp->body, "}");
    if (rc != STRATA_OK) {
        resp->status = 500;
    }
}

/* ---- server fixture ------------------------------------------------- */

typedef struct fixture {
    http_server *srv;
    pthread_t thread;
    int run_rc;
    uint16_t port;
} fixture;

static void *run_thread(void *arg)
{
    fixture *f = arg;
    f->run_rc = http_server_run(f->srv);
    return NULL;
}

static void test_config(http_server_config *cfg)
{
    http_server_config_init(cfg);
    cfg->port = 0;
    cfg->threads = 2;
    cfg->limits.max_header_bytes = 4096;
    cfg->limits.max_body_bytes = 65536;
}

static int fixture_start(fixture *f, const http_server_config *cfg)
{
    memset(f, 0, sizeof(*f));
    int rc = http_server_create(cfg, echo_handler, NULL, &f->srv);
    if (rc != STRATA_OK) {
        return rc;
    }
    f->port = http_server_port(f->srv);
    if (pthread_create(&f->thread, NULL, run_thread, f) != 0) {
        http_server_free(f->srv);
        return STRATA_EIO;
    }
    return STRATA_OK;
}

/* Stop, wait for run() to return, free. Returns run()'s result. */
static int fixture_stop(fixture *f)
{
    http_server_stop(f->srv);
    pthread_join(f->thread, NULL);
    http_server_free(f->srv);
    f->srv = NULL;
    return f->run_rc;
}

/* ---- raw-socket client ---------------------------------------------- */

typedef struct client {
    int fd;
    char *buf;          /* received, not yet consumed */
    size_t len;
    size_t cap;
} client;

typedef struct response {
    int status;
    char *body;         /* NUL-terminated copy; free() it */
    size_t body_len;
    bool close;         /* "Connection: close" */
    char head[1024];    /* the head, NUL-terminated (truncated) */
} response;

static int client_open(client *c, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) {
        return -1;
    }
    struct timeval tv = { 5, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->cap = 65536;
    c->buf = malloc(c->cap);
    return c->buf ? 0 : -1;
}

static void client_close(client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static int client_send(client *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int client_sends(client *c, const char *s)
{
    return client_send(c, s, strlen(s));
}

/* Read more bytes. Returns > 0, 0 on EOF, -1 on error or timeout. */
static ssize_t client_fill(client *c)
{
    if (c->len == c->cap) {
        char *p = realloc(c->buf, c->cap * 2);
        if (p == NULL) {
            return -1;
        }
        c->buf = p;
        c->cap *= 2;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
    }
    return n;
}

static const char *find_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, n) == 0) {
            return p;
        }
    }
    return NULL;
}

/* Read one response (head + Content-Length body). 0, or -1 on EOF/error. */
static int client_response(client *c, response *r)
{
    memset(r, 0, sizeof(*r));
    char *end = NULL;
    for (;;) {
        if (c->len >= 4) {
            end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end != NULL) {
                break;
            }
        }
        if (client_fill(c) <= 0) {
            return -1;
        }
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    size_t copy = head_len < sizeof(r->head) - 1 ? head_len : sizeof(r->head) - 1;
    memcpy(r->head, c->buf, copy);
    r->head[copy] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) {
        return -1;
    }
    size_t cl = 0;
    const char *h = find_nocase(r->head, "\r\nContent-Length:");
    if (h != NULL) {
        cl = (size_t)strtoull(h + 17, NULL, 10);
    }
    r->close = find_nocase(r->head, "\r\nConnection: close") != NULL;
    while (c->len < head_len + cl) {
        if (client_fill(c) <= 0) {
            return -1;
        }
    }
    r->body = malloc(cl + 1);
    memcpy(r->body, c->buf + head_len, cl);
    r->body[cl] = '\0';
    r->body_len = cl;
    memmove(c->buf, c->buf + head_len + cl, c->len - head_len - cl);
    c->len -= head_len + cl;
    return 0;
}

/* True when the server closed the connection (EOF or reset) in time. */
static bool client_sees_eof(client *c)
{
    for (;;) {
        ssize_t n = client_fill(c);
        if (n == 0) {
            return true;
        }
        if (n < 0) {
            return errno == ECONNRESET;
        }
    }
}

static int64_t now_ms(void)
{
    return (int64_t)(clock_mono_ns() / 1000000u);
}

static void expect_echo(char *out, size_t cap, const char *method, const char *path,
                        const char *body)
{
    snprintf(out, cap, "{\"method\":\"%s\",\"path\":\"%s\",\"body\":\"%s\"}", method, path,
             body);
}

/* ---- tests ---------------------------------------------------------- */

TEST(keep_alive_several_requests)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    client c;
    ASSERT_EQ(client_open(&c, f.port), 0);
    int failed = 0;
    for (int i = 0; i < 6 && !failed; i++) {
        char req[256];
        char path[32];
        char body[32];
        snprintf(path, sizeof(path), "/k%d", i);
        snprintf(body, sizeof(body), "b%d", i);
        if (i % 2 == 0) {
            snprintf(req, sizeof(req), "GET %s?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", path);
            body[0] = '\0';
        } else {
            snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
                     "\r\n%s", path, strlen(body), body);
        }
        response r;
        char want[256];
        expect_echo(want, sizeof(want), i % 2 ? "POST" : "GET", path, body);
        if (client_sends(&c, req) != 0 || client_response(&c, &r) != 0) {
            failed = 1;
            break;
        }
        failed = r.status != 200 || strcmp(r.body, want) != 0 || r.close
                 || find_nocase(r.head, "Content-Type: application/json") == NULL;
        free(r.body);
    }
    ASSERT_EQ(failed, 0);
    /* Extra headers and HEAD (Content-Length but no body), same connection. */
    response r;
    ASSERT_OK(client_sends(&c, "GET /hdr HTTP/1.1\r\n\r\n"));
    ASSERT_OK(client_response(&c, &r));
    free(r.body);
    ASSERT_EQ(r.status, 201);
    ASSERT_TRUE(strstr(r.head, "\r\nX-Test: yes\r\n") != NULL);
    ASSERT_TRUE(strstr(r.head, "Injected") == NULL);
    ASSERT_OK(client_sends(&c, "HEAD /h HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n"));
    c.len = 0;
    ASSERT_TRUE(client_fill(&c) > 0);
    while (memmem(c.buf, c.len, "/after", 6) == NULL) {
        ASSERT_TRUE(client_fill(&c) > 0);
    }
    char want_cl[64];
    char head_echo[128];
    expect_echo(head_echo, sizeof(head_echo), "HEAD", "/h", "");
    snprintf(want_cl, sizeof(want_cl), "Content-Length: %zu\r\n", strlen(head_echo));
    ASSERT_TRUE(memmem(c.buf, c.len, want_cl, strlen(want_cl)) != NULL);
    ASSERT_TRUE(memmem(c.buf, c.len, "\"path\":\"/h\"", 11) == NULL);
    client_close(&c);

    http_server_stats st;
    http_server_stats_get(f.srv, &st);
    ASSERT_EQ(st.requests_total, 9);
    ASSERT_EQ(st.connections_total, 1);
    ASSERT_EQ(st.parse_errors, 0);
    ASSERT_OK(fixture_stop(&f));
}

TEST(pipelining)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    client c;
    ASSERT_EQ(client_open(&c, f.port), 0);
    /* Three whole requests and half of a fourth in one send. */
    ASSERT_OK(client_sends(&c, "GET /p1 HTTP/1.1\r\n\r\n"
                               "POST /p2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                               "GET /p3?q=1 HTTP/1.1\r\n\r\n"
                               "POST /p4 HTTP/1.1\r\nContent-Le"));
    const char *paths[] = { "/p1", "/p2", "/p3" };
    const char *bodies[] = { "", "xyz", "" };
    const char *methods[] = { "GET", "POST", "GET" };
    for (int i = 0; i < 3; i++) {
        response r;
        char want[256];
        expect_echo(want, sizeof(want), methods[i], paths[i], bodies[i]);
        ASSERT_OK(client_response(&c, &r));
        ASSERT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, want);
        free(r.body);
    }
    usleep(50 * 1000);
    ASSERT_OK(client_sends(&c, "ngth: 2\r\n\r\nok"));
    response r;
    ASSERT_OK(client_response(&c, &r));
    ASSERT_STREQ(r.body, "{\"method\":\"POST\",\"path\":\"/p4\",\"body\":\"ok\"}");
    free(r.body);

    /* Two large responses pipelined: the second waits behind the first's
     * EAGAIN/EPOLLOUT phase. The client reads late to force it. */
    ASSERT_OK(client_sends(&c, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n"
                               "GET /end HTTP/1.1\r\n\r\n"));
    usleep(300 * 1000);
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(client_response(&c, &r));
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.body_len, BIG_BODY_BYTES);
        bool ok = true;
        for (size_t k = 0; k < r.body_len; k += 4099) {
            ok = ok && r.body[k] == "0123456789abcdef"[k % 16];
        }
        free(r.body);
        ASSERT_TRUE(ok);
    }
    ASSERT_OK(client_response(&c, &r));
    ASSERT_TRUE(strstr(r.body, "/end") != NULL);
    free(r.body);
    client_close(&c);
    ASSERT_OK(fixture_stop(&f));
}

/* Send raw, expect an error status with the JSON code, then EOF. */
static int expect_error(uint16_t port, const char *raw, size_t raw_len, int status,
                        const char *code)
{
    client c;
    if (client_open(&c, port) != 0) {
        return -1;
    }
    int rc = 0;
    response r;
    if (client_send(&c, raw, raw_len) != 0 || client_response(&c, &r) != 0) {
        client_close(&c);
        return -2;
    }
    char want[128];
    snprintf(want, sizeof(want), "{\"error\":{\"code\":\"%s\"", code);
    if (r.status != status || strncmp(r.body, want, strlen(want)) != 0 || !r.close) {
        fprintf(stderr, "  got %d %s\n", r.status, r.body);
        rc = -3;
    }
    free(r.body);
    if (rc == 0 && !client_sees_eof(&c)) {
        rc = -4;
    }
    client_close(&c);
    return rc;
}

TEST(limits_413_431_400)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    const char *too_long = "POST /x HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
    ASSERT_EQ(expect_error(f.port, too_long, strlen(too_long), 413, "payload_too_large"), 0);

    /* A chunked body passing max_body (64 KiB) in 8 KiB chunks. */
    size_t cap = 100000;
    char *raw = malloc(cap);
    ASSERT_TRUE(raw != NULL);
    size_t n = (size_t)snprintf(raw, cap,
                                "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 9; i++) {
        n += (size_t)snprintf(raw + n, cap - n, "2000\r\n");
        memset(raw + n, 'z', 8192);
        n += 8192;
        n += (size_t)snprintf(raw + n, cap - n, "\r\n");
    }
    int rc = expect_error(f.port, raw, n, 413, "payload_too_large");
    ASSERT_EQ(rc, 0);

    /* Head over 4 KiB, with and without its final blank line. */
    n = (size_t)snprintf(raw, cap, "GET / HTTP/1.1\r\nX-Big: ");
    memset(raw + n, 'h', 5000);
    n += 5000;
    ASSERT_EQ(expect_error(f.port, raw, n, 431, "header_too_large"), 0);
    memcpy(raw + n, "\r\n\r\n", 4);
    ASSERT_EQ(expect_error(f.port, raw, n + 4, 431, "header_too_large"), 0);
    free(raw);

    const char *bad = "GET /a b HTTP/1.1\r\n\r\n";
    ASSERT_EQ(expect_error(f.port, bad, strlen(bad), 400, "bad_request"), 0);
    bad = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    ASSERT_EQ(expect_error(f.port, bad, strlen(bad), 400, "bad_request"), 0);
    bad = "GET / HTTP/2.0\r\n\r\n";
    ASSERT_EQ(expect_error(f.port, bad, strlen(bad), 505, "http_version_not_supported"), 0);
    bad = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    ASSERT_EQ(expect_error(f.port, bad, strlen(bad), 501, "not_implemented"), 0);

    http_server_stats st;
    http_server_stats_get(f.srv, &st);
    ASSERT_EQ(st.parse_errors, 8);
    ASSERT_EQ(st.requests_total, 0);
    ASSERT_OK(fixture_stop(&f));
}

TEST(connection_close)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    const char *reqs[] = {
        "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /c HTTP/1.0\r\n\r\n",
        "GET /close HTTP/1.1\r\n\r\n",   /* the handler asks for it */
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(reqs); i++) {
        client c;
        response r;
        ASSERT_EQ(client_open(&c, f.port), 0);
        ASSERT_OK(client_sends(&c, reqs[i]));
        ASSERT_OK(client_response(&c, &r));
        free(r.body);
        ASSERT_EQ(r.status, 200);
        ASSERT_TRUE(r.close);
        ASSERT_TRUE(client_sees_eof(&c));
        client_close(&c);
    }
    /* HTTP/1.0 asking for keep-alive keeps the connection. */
    client c;
    response r;
    ASSERT_EQ(client_open(&c, f.port), 0);
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(client_sends(&c, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        ASSERT_OK(client_response(&c, &r));
        free(r.body);
        ASSERT_TRUE(!r.close);
    }
    client_close(&c);
    ASSERT_OK(fixture_stop(&f));
}

TEST(expect_100_continue)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    client c;
    response r;
    ASSERT_EQ(client_open(&c, f.port), 0);
    ASSERT_OK(client_sends(&c, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\n"
                               "Content-Length: 5\r\n\r\n"));
    ASSERT_OK(client_response(&c, &r));
    free(r.body);
    ASSERT_EQ(r.status, 100);
    ASSERT_STREQ(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_OK(client_sends(&c, "hello"));
    ASSERT_OK(client_response(&c, &r));
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"method\":\"POST\",\"path\":\"/e\",\"body\":\"hello\"}");
    free(r.body);
    /* A too-large body gets the 413 instead of 100 Continue. */
    ASSERT_OK(client_sends(&c, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\n"
                               "Content-Length: 70000\r\n\r\n"));
    ASSERT_OK(client_response(&c, &r));
    free(r.body);
    ASSERT_EQ(r.status, 413);
    client_close(&c);
    ASSERT_OK(fixture_stop(&f));
}

TEST(chunked_body)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    client c;
    response r;
    ASSERT_EQ(client_open(&c, f.port), 0);
    const char *parts[] = {
        "POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "lo\r\n9;name=v\r\n, chun",
        "ked\r",
        "\n0\r\nX-Trailer: t\r\n",
        "\r\nGET /next HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(parts); i++) {
        ASSERT_OK(client_sends(&c, parts[i]));
        usleep(20 * 1000);
    }
    ASSERT_OK(client_response(&c, &r));
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"method\":\"POST\",\"path\":\"/ch\",\"body\":\"hello, chunked\"}");
    free(r.body);
    ASSERT_OK(client_response(&c, &r));
    ASSERT_STREQ(r.body, "{\"method\":\"GET\",\"path\":\"/next\",\"body\":\"\"}");
    free(r.body);
    client_close(&c);
    ASSERT_OK(fixture_stop(&f));
}

#define CONC_THREADS 50
#define CONC_REQUESTS 200

typedef struct conc_arg {
    uint16_t port;
    int id;
    int ok;              /* responses that matched */
} conc_arg;

static void *conc_client(void *p)
{
    conc_arg *a = p;
    client c;
    bool open = false;
    for (int i = 0; i < CONC_REQUESTS; i++) {
        /* Reconnect now and then to exercise accept under load too. */
        if (!open || i % 50 == 0) {
            if (open) {
                client_close(&c);
            }
            if (client_open(&c, a->port) != 0) {
                return NULL;
            }
            open = true;
        }
        char body[64];
        char path[64];
        char req[256];
        char want[256];
        snprintf(body, sizeof(body), "thread %d request %d", a->id, i);
        snprintf(path, sizeof(path), "/c/%d/%d", a->id, i);
        snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", path,
                 strlen(body), body);
        expect_echo(want, sizeof(want), "POST", path, body);
        response r;
        if (client_sends(&c, req) != 0 || client_response(&c, &r) != 0) {
            break;
        }
        if (r.status == 200 && strcmp(r.body, want) == 0) {
            a->ok++;
        }
        free(r.body);
    }
    if (open) {
        client_close(&c);
    }
    return NULL;
}

TEST(concurrent_clients)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    pthread_t th[CONC_THREADS];
    conc_arg args[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        args[i].port = f.port;
        args[i].id = i;
        args[i].ok = 0;
        ASSERT_EQ(pthread_create(&th[i], NULL, conc_client, &args[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(th[i], NULL);
        total += args[i].ok;
    }
    ASSERT_EQ(total, CONC_THREADS * CONC_REQUESTS);
    http_server_stats st;
    http_server_stats_get(f.srv, &st);
    ASSERT_EQ(st.requests_total, CONC_THREADS * CONC_REQUESTS);
    ASSERT_EQ(st.connections_total, CONC_THREADS * (CONC_REQUESTS / 50));
    ASSERT_OK(fixture_stop(&f));
}

/* Poll the stats until connections_open reaches want (or 2 s pass). */
static bool wait_open(http_server *srv, uint64_t want)
{
    for (int i = 0; i < 200; i++) {
        http_server_stats st;
        http_server_stats_get(srv, &st);
        if (st.connections_open == want) {
            return true;
        }
        usleep(10 * 1000);
    }
    return false;
}

TEST(max_connections)
{
    http_server_config cfg;
    test_config(&cfg);
    cfg.max_connections = 2;
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    client c1;
    client c2;
    client c3;
    response r;
    ASSERT_EQ(client_open(&c1, f.port), 0);
    ASSERT_EQ(client_open(&c2, f.port), 0);
    ASSERT_OK(client_sends(&c1, "GET /1 HTTP/1.1\r\n\r\n"));
    ASSERT_OK(client_response(&c1, &r));
    free(r.body);
    ASSERT_OK(client_sends(&c2, "GET /2 HTTP/1.1\r\n\r\n"));
    ASSERT_OK(client_response(&c2, &r));
    free(r.body);
    /* The third is accepted by the kernel, then closed by the server. */
    ASSERT_EQ(client_open(&c3, f.port), 0);
    ASSERT_TRUE(client_sees_eof(&c3));
    client_close(&c3);
    http_server_stats st;
    http_server_stats_get(f.srv, &st);
    ASSERT_EQ(st.connections_rejected, 1);
    ASSERT_EQ(st.connections_open, 2);
    /* A slot frees up when a client leaves. */
    client_close(&c1);
    ASSERT_TRUE(wait_open(f.srv, 1));
    ASSERT_EQ(client_open(&c3, f.port), 0);
    ASSERT_OK(client_sends(&c3, "GET /3 HTTP/1.1\r\n\r\n"));
    ASSERT_OK(client_response(&c3, &r));
    ASSERT_EQ(r.status, 200);
    free(r.body);
    client_close(&c3);
    client_close(&c2);
    ASSERT_OK(fixture_stop(&f));
}

TEST(idle_and_request_timeouts)
{
    http_server_config cfg;
    test_config(&cfg);
    cfg.idle_timeout_ms = 300;
    cfg.request_timeout_ms = 600;
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));

    /* Idle keep-alive connection: closed after ~300 ms. */
    client c;
    response r;
    ASSERT_EQ(client_open(&c, f.port), 0);
    ASSERT_OK(client_sends(&c, "GET /i HTTP/1.1\r\n\r\n"));
    ASSERT_OK(client_response(&c, &r));
    free(r.body);
    int64_t t0 = now_ms();
    ASSERT_TRUE(client_sees_eof(&c));
    int64_t waited = now_ms() - t0;
    ASSERT_TRUE(waited >= 250 && waited < 2000);
    client_close(&c);

    /* Slow loris: a byte every 50 ms keeps the connection busy but never
     * completes the head; dropped (with a 408) after ~600 ms. */
    ASSERT_EQ(client_open(&c, f.port), 0);
    ASSERT_OK(client_sends(&c, "GET /loris HTTP/1.1\r\nX-A: "));
    t0 = now_ms();
    bool dropped = false;
    while (now_ms() - t0 < 3000 && !dropped) {
        if (send(c.fd, "a", 1, MSG_NOSIGNAL) != 1) {
            dropped = true;
            break;
        }
        usleep(50 * 1000);
        ssize_t n = recv(c.fd, c.buf + c.len, c.cap - c.len, MSG_DONTWAIT);
        if (n > 0) {
            c.len += (size_t)n;
        }
        if (n == 0 || c.len > 0 || (n < 0 && errno != EAGAIN)) {
            dropped = true;
        }
    }
    waited = now_ms() - t0;
    ASSERT_TRUE(dropped);
    ASSERT_TRUE(waited >= 500 && waited < 2000);
    if (c.len > 0) {
        ASSERT_TRUE(strncmp(c.buf, "HTTP/1.1 408", 12) == 0);
    }
    client_close(&c);
    ASSERT_OK(fixture_stop(&f));
}

typedef struct slow_arg {
    uint16_t port;
    int status;
    char body[256];
} slow_arg;

static void *slow_client(void *p)
{
    slow_arg *a = p;
    client c;
    response r;
    a->status = -1;
    if (client_open(&c, a->port) != 0) {
        return NULL;
    }
    if (client_sends(&c, "GET /slow HTTP/1.1\r\n\r\n") == 0 && client_response(&c, &r) == 0) {
        a->status = r.status;
        snprintf(a->body, sizeof(a->body), "%s", r.body);
        free(r.body);
    }
    client_close(&c);
    return NULL;
}

TEST(graceful_stop_with_slow_handler)
{
    http_server_config cfg;
    test_config(&cfg);
    fixture f;
    ASSERT_OK(fixture_start(&f, &cfg));
    /* An idle keep-alive connection, closed by the stop. */
    client idle;
    response r;
    ASSERT_EQ(client_open(&idle, f.port), 0);
    ASSERT_OK(client_sends(&idle, "GET /idle HTTP/1.1\r\n\r\n"));
    ASSERT_OK(client_response(&idle, &r));
    free(r.body);

    atomic_store(&g_slow_started, 0);
    slow_arg a;
    memset(&a, 0, sizeof(a));
    a.port = f.port;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, slow_client, &a), 0);
    for (int i = 0; i < 500 && !atomic_load(&g_slow_started); i++) {
        usleep(2000);
    }
    ASSERT_TRUE(atomic_load(&g_slow_started));
    int64_t t0 = now_ms();
    ASSERT_OK(fixture_stop(&f));   /* returns once every loop has exited */
    int64_t took = now_ms() - t0;
    pthread_join(th, NULL);
    ASSERT_EQ(a.status, 200);
    ASSERT_STREQ(a.body, "{\"method\":\"GET\",\"path\":\"/slow\",\"body\":\"\"}");
    ASSERT_TRUE(client_sees_eof(&idle));
    client_close(&idle);
    ASSERT_TRUE(took < 3000);
    /* New connections are refused once stopped. */
    client late;
    ASSERT_TRUE(client_open(&late, f.port) != 0);
}

TEST(stop_before_run_and_bad_host)
{
    http_server_config cfg;
    test_config(&cfg);
    http_server *srv = NULL;
    ASSERT_OK(http_server_create(&cfg, echo_handler, NULL, &srv));
    ASSERT_TRUE(http_server_port(srv) != 0);
    http_server_stop(srv);
    ASSERT_OK(http_server_run(srv));   /* returns at once */
    http_server_free(srv);

    cfg.host = "no-such-host.invalid";
    srv = (http_server *)&cfg;
    ASSERT_TRUE(http_server_create(&cfg, echo_handler, NULL, &srv) < 0);
    ASSERT_TRUE(srv == NULL);
}

TEST_MAIN(TEST_ENTRY(keep_alive_several_requests), TEST_ENTRY(pipelining),
          TEST_ENTRY(limits_413_431_400), TEST_ENTRY(connection_close),
          TEST_ENTRY(expect_100_continue), TEST_ENTRY(chunked_body),
          TEST_ENTRY(concurrent_clients), TEST_ENTRY(max_connections),
          TEST_ENTRY(idle_and_request_timeouts), TEST_ENTRY(graceful_stop_with_slow_handler),
          TEST_ENTRY(stop_before_run_and_bad_host))
