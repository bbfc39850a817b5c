/*
 * http_server.c - the epoll HTTP/1.1 server: one event loop per thread, each
 * with its own listening socket on the shared port (SO_REUSEPORT), its own
 * connections, and the request handler called inline on the loop thread.
 *
 *   http_server
 *     cfg, handler, ctx, stop_fd (eventfd, polled by every loop), open count
 *     loops[0..n)         loop 0 runs on the caller of http_server_run()
 *       epfd, listen_fd, conns (doubly linked, for the timeout scan), req
 *       http_conn
 *         fd, io (read/writev ops), rbuf[rpos..rlen) unprocessed input,
 *         whead + wbody pending output, resp (body sbuf reused per request)
 *
 * A connection's life:
 *
 *   accept -> READ --request complete--> handler --> writev --all written--> READ
 *              |  ^                                    | EAGAIN                  |
 *              |  +------------ WRITE (EPOLLOUT) <-----+        close needed ----+
 *              +-- parse error / timeout: error response, then LINGER -> close
 *
 * READ waits for EPOLLIN only and WRITE for EPOLLOUT only (level-triggered),
 * so a client that does not read its responses stops being read from: the
 * pipeline is back-pressured instead of buffered without bound. Pipelined
 * requests already in rbuf are served in order, each after the previous
 * response is fully written.
 *
 * LINGER: after the last response of a closing connection we shut down our
 * write side and discard input until EOF (at most LINGER_MS) before close().
 * Closing with unread input makes the kernel send RST, which can destroy the
 * 413/431 answer before the client reads it.
 *
 * Timeouts: each loop walks its connection list every LOOP_TICK_MS. That is
 * O(connections) per tick, a few microseconds for the 1024 we allow; a timer
 * wheel would only pay off with far more connections. Deadlines:
 *   idle (READ, nothing buffered):  last I/O + idle_timeout_ms   -> close
 *   request started (READ, bytes):  first byte + request_timeout -> 408, close
 *   WRITE with no progress:         last I/O + request_timeout   -> close
 * so a slow-loris client trickling header bytes is dropped after
 * request_timeout_ms whatever its pace.
 *
 * Stop: http_server_stop() sets `stopping` and writes the eventfd, which each
 * loop watches level-triggered, so every loop wakes. A loop then closes its
 * listener and its idle connections and marks the others close-after-
 * response; it returns when its last connection is gone. A handler that is
 * running when stop arrives finishes and its response is sent, because the
 * loop only sees the stop after the handler returns.
 *
 * TLS (cfg.tls set): every connection speaks HTTPS through the tls_* transport
 * below. The handshake runs inside the first reads (READ state, driven by
 * epoll like any read) and must finish within request_timeout_ms of the
 * accept; a failed one just closes (a plain-HTTP client gets no answer). TLS
 * can need the other direction (a read that must write first, a write that
 * must read), so the transport reports it in io_want and conn_arm() arms
 * that instead of the state's own. Decrypted input can wait inside OpenSSL
 * where epoll cannot see it: such connections are flagged io_ready and read
 * again after each epoll batch (one read each, as for sockets), with a zero
 * epoll timeout while any is left. A closing connection sends close_notify
 * before its FIN; LINGER then discards raw bytes.
 *
 * Threads and locks: a connection and everything in it belong to one loop
 * and are touched only by that loop's thread, so there are no locks. Shared
 * state is atomics: `stopping`, the open-connection count (checked against
 * max_connections), and the stats counters (per loop, summed on read).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server/http.h"
#include "server/tls.h"

#define LOOP_TICK_MS 100           /* timeout scan period */
#define LINGER_MS 2000             /* max wait for the peer's EOF after our FIN */
#define ACCEPT_PAUSE_MS 100        /* listener off after EMFILE and friends */
#define MAX_EVENTS 128             /* epoll_wait batch */
#define ACCEPT_BATCH 64            /* accepts per wakeup, so reads are not starved */
#define RBUF_INITIAL 4096          /* first read buffer; most requests fit */
#define RBUF_KEEP (64 * 1024)      /* bigger read buffers are freed when idle */
#define RESP_KEEP (256 * 1024)     /* bigger response buffers are freed after use */
#define WHEAD_MAX 1024             /* response head: status, 3 headers, extras (<= 512) */
#define CTYPE_MAX 200              /* longer content types are replaced */
#define TLS_RECORD_MAX 16384       /* one TLS record of plaintext */

/* ---- types ---------------------------------------------------------- */

typedef struct http_conn http_conn;
typedef struct http_loop http_loop;

/* The connection's byte transport: plain TCP, or TLS with a nonblocking
 * SSL kept in io_ctx, without touching the parser. Contract, shaped on
 * recv/sendmsg: return bytes moved (> 0), 0 on EOF (read only), or -1 with
 * errno set, EAGAIN meaning "try again when the fd is ready". A transport
 * that needs the other direction than the state's own sets io_want
 * (EPOLLIN/EPOLLOUT; 0 otherwise), and one that holds input epoll cannot see
 * sets io_ready (conn_set_ready). shutdown (say goodbye before our FIN) and
 * release (free io_ctx) may be NULL. */
typedef struct conn_io {
    ssize_t (*read)(http_conn *c, void *buf, size_t n);
    ssize_t (*writev)(http_conn *c, const struct iovec *iov, int iovcnt);
    void (*shutdown)(http_conn *c);
    void (*release)(http_conn *c);
} conn_io;

typedef enum conn_state {
    CONN_READ = 0,   /* waiting for / parsing a request (EPOLLIN) */
    CONN_WRITE,      /* output pending after EAGAIN (EPOLLOUT) */
    CONN_LINGER      /* write side shut down, draining input before close */
} conn_state;

/* What a step did to a connection, so callers never touch a freed one. */
typedef enum conn_rc {
    CONN_RC_READ = 0,    /* alive, in READ: may keep processing input */
    CONN_RC_BUSY,        /* alive, waiting for output space or lingering */
    CONN_RC_GONE         /* closed and freed */
} conn_rc;

struct http_conn {
    int fd;
    const conn_io *io;
    void *io_ctx;                /* transport state (tls_conn); NULL for TCP */
    uint32_t io_want;            /* EPOLLIN/EPOLLOUT a TLS transport waits on, or 0 */
    uint32_t armed;              /* the epoll events currently registered */
    bool io_handshake;           /* TLS handshake not finished yet */
    bool io_ready;               /* input buffered in the transport (see the top) */
    http_loop *loop;
    http_conn *prev;             /* loop->conns list */
    http_conn *next;
    conn_state state;
    char *rbuf;                  /* input; NULL while idle and empty */
    size_t rcap;                 /* bytes allocated, <= srv->rbuf_max */
    size_t rlen;                 /* bytes read */
    size_t rpos;                 /* start of the first unprocessed request */
    size_t scan_off;             /* head-end search resumes here (index in rbuf) */
    bool head_seen;              /* the current request's head is complete */
    bool continue_sent;          /* 100 Continue sent for the current request */
    bool interim;                /* the pending output is a 100 Continue */
    bool close_after;            /* close once the pending output is written */
    char whead[WHEAD_MAX];       /* pending response head */
    size_t whead_len;
    const char *wbody;           /* pending body: resp.body.data, or NULL */
    size_t wbody_len;
    size_t woff;                 /* bytes of whead+wbody already written */
    http_response resp;          /* handed to the handler; body reused */
    int64_t req_start_ms;        /* first byte of the current request (mono) */
    int64_t last_io_ms;          /* last successful read or write (mono) */
    int64_t linger_until_ms;     /* LINGER deadline (mono) */
    char remote[64];             /* "ip:port" of the peer */
};

struct http_loop {
    http_server *srv;
    int idx;
    int epfd;
    int listen_fd;               /* -1 once closed (stop) */
    bool listening;              /* listen_fd is registered in epfd */
    int64_t accept_resume_ms;    /* re-arm the listener at this time (0: no) */
    bool draining;               /* stop seen: no accepts, close when idle */
    pthread_t thread;
    bool thread_started;
    http_conn *conns;            /* every open connection of this loop */
    size_t n_conns;
    http_request req;            /* the request being served (one at a time) */
    size_t n_io_ready;           /* connections with io_ready set */
    bool ready_left;             /* some io_ready connection could read more */
    _Atomic uint64_t conns_total;    /* stats, written by this loop only */
    _Atomic uint64_t requests_total;
    _Atomic uint64_t parse_errors;
    _Atomic uint64_t tls_handshakes;
    _Atomic uint64_t tls_failures;
};

struct http_server {
    http_server_config cfg;      /* copy; cfg.host points at host below */
    char *host;
    http_handler_fn handler;
    void *ctx;
    uint16_t port;               /* the bound port (resolved when cfg.port == 0) */
    size_t rbuf_max;             /* per-connection input cap */
    int stop_fd;                 /* eventfd written by http_server_stop */
    atomic_int stopping;
    atomic_int running;
    int n_loops;
    http_loop *loops;
    atomic_long conns_open;      /* across loops, checked against max_connections */
    _Atomic uint64_t conns_rejected;
};

/* epoll data.ptr tags for the two non-connection fds of a loop. */
static char k_tag_listen;
static char k_tag_stop;

static int64_t mono_ms(void)
{
    return (int64_t)(clock_mono_ns() / 1000000u);
}

/* ---- plain TCP transport -------------------------------------------- */

static ssize_t tcp_read(http_conn *c, void *buf, size_t n)
{
    return recv(c->fd, buf, n, 0);
}

/* sendmsg rather than writev: writev has no MSG_NOSIGNAL, and a peer that
 * resets mid-response must not raise SIGPIPE in a library. */
static ssize_t tcp_writev(http_conn *c, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    return sendmsg(c->fd, &msg, MSG_NOSIGNAL);
}

static const conn_io k_tcp_io = { tcp_read, tcp_writev, NULL, NULL };   /* shared */

/* ---- TLS transport -------------------------------------------------- */

static void conn_set_ready(http_conn *c, bool ready)
{
    if (c->io_ready != ready) {
        c->io_ready = ready;
        if (ready) {
            c->loop->n_io_ready++;
        } else {
            c->loop->n_io_ready--;
        }
    }
}

/* Record what a TLS call wants next; on EAGAIN the loop arms io_want. */
static ssize_t tls_result(http_conn *c, ssize_t n, tls_want want)
{
    c->io_want = want == TLS_WANT_READ ? EPOLLIN : want == TLS_WANT_WRITE ? EPOLLOUT : 0;
    return n;
}

/* Finish the handshake first if needed: STRATA_OK when done, else -1 with
 * errno EAGAIN (io_want set) or EPROTO (failed; counted and logged). */
static int tls_ensure_handshake(http_conn *c)
{
    if (!c->io_handshake) {
        return STRATA_OK;
    }
    tls_want want = TLS_WANT_NONE;
    int r = tls_conn_handshake(c->io_ctx, &want);
    if (r == 0) {
        tls_result(c, -1, want);
        errno = EAGAIN;
        return -1;
    }
    if (r < 0) {
        atomic_fetch_add_explicit(&c->loop->tls_failures, 1, memory_order_relaxed);
        slog(SLOG_DEBUG, "http: %s: %s", c->remote, strata_errmsg());
        c->io_want = 0;
        errno = EPROTO;
        return -1;
    }
    c->io_handshake = false;
    atomic_fetch_add_explicit(&c->loop->tls_handshakes, 1, memory_order_relaxed);
    slog(SLOG_DEBUG, "http: %s: %s", c->remote, tls_conn_version(c->io_ctx));
    return STRATA_OK;
}

static ssize_t tls_read(http_conn *c, void *buf, size_t n)
{
    if (tls_ensure_handshake(c) != STRATA_OK) {
        return -1;
    }
    tls_want want = TLS_WANT_NONE;
    ssize_t r = tls_conn_read(c->io_ctx, buf, n, &want);
    /* After EAGAIN whatever OpenSSL holds is an incomplete record that only
     * the socket can complete: flagging it ready would spin. */
    conn_set_ready(c, r > 0 && tls_conn_has_pending(c->io_ctx));
    return tls_result(c, r, want);
}

/* A small head and the start of its body go out as one record (one
 * segment on the wire); a large body is written from where it lies. The
 * copy is rebuilt identically on a retry, since woff only moves on
 * success, which is what SSL_write requires (a moving buffer is allowed). */
static ssize_t tls_writev(http_conn *c, const struct iovec *iov, int iovcnt)
{
    if (tls_ensure_handshake(c) != STRATA_OK) {
        return -1;
    }
    char rec[TLS_RECORD_MAX];
    const void *p = iov[0].iov_base;
    size_t n = iov[0].iov_len;
    if (iovcnt > 1 && n < sizeof(rec)) {
        n = 0;
        for (int i = 0; i < iovcnt && n < sizeof(rec); i++) {
            size_t take = iov[i].iov_len < sizeof(rec) - n ? iov[i].iov_len : sizeof(rec) - n;
            memcpy(rec + n, iov[i].iov_base, take);
            n += take;
        }
        p = rec;
    }
    tls_want want = TLS_WANT_NONE;
    ssize_t r = tls_conn_write(c->io_ctx, p, n, &want);
    return tls_result(c, r, want);
}

static void tls_shutdown_io(http_conn *c)
{
    tls_conn_shutdown(c->io_ctx);
}

static void tls_release(http_conn *c)
{
    tls_conn_free(c->io_ctx);
    c->io_ctx = NULL;
}

static const conn_io k_tls_io = { tls_read, tls_writev, tls_shutdown_io, tls_release };

/* ---- config --------------------------------------------------------- */

void http_server_config_init(http_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 0;   /* stratad sets its configured port; 0 = ephemeral */
    cfg->threads = 0;
    cfg->max_connections = 1024;
    cfg->limits.max_header_bytes = 16 * 1024;
    cfg->limits.max_body_bytes = 1024 * 1024;
    cfg->idle_timeout_ms = 60000;
    cfg->request_timeout_ms = 10000;
    cfg->max_response_bytes = (size_t)64 * 1024 * 1024;
}

/* Append "Name: value\r\n"; ignored when full or when either part carries a
 * CR or LF (which would let a caller-supplied value inject headers). */
void http_response_header(http_response *resp, const char *name, const char *value)
{
    size_t nl = strlen(name);
    size_t vl = strlen(value);
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL || nl == 0) {
        return;
    }
    if (resp->extra_len + nl + vl + 4 >= sizeof(resp->extra_headers)) {
        return;
    }
    char *p = resp->extra_headers + resp->extra_len;
    memcpy(p, name, nl);
    p += nl;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vl);
    p += vl;
    *p++ = '\r';
    *p++ = '\n';
    *p = '\0';
    resp->extra_len = (size_t)(p - resp->extra_headers);
}

/* ---- connection basics ---------------------------------------------- */

/* Register the epoll interest c needs now: what its transport waits for
 * (io_want), else its state's own (EPOLLIN for READ/LINGER, EPOLLOUT for
 * WRITE). A no-op when already armed so, which is the common case. */
static void conn_arm(http_conn *c)
{
    uint32_t events = c->io_want;
    if (events == 0) {
        events = c->state == CONN_WRITE ? EPOLLOUT : EPOLLIN;
    }
    if (events == c->armed) {
        return;
    }
    c->armed = events;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        /* Only a bug (bad fd) gets here; the timeout scan reaps the conn. */
        slog(SLOG_ERROR, "http: epoll_ctl MOD fd %d: %s", c->fd, strerror(errno));
    }
}

/* Close the socket, unlink c from its loop, release the open slot, free c.
 * The caller must not touch c afterwards. */
static void conn_close(http_conn *c)
{
    http_loop *loop = c->loop;
    conn_set_ready(c, false);
    if (c->io->release != NULL) {
        c->io->release(c);
    }
    close(c->fd);   /* also removes it from the epoll set */
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        loop->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    loop->n_conns--;
    atomic_fetch_sub_explicit(&loop->srv->conns_open, 1, memory_order_relaxed);
    strata_free(c->rbuf);
    sbuf_free(&c->resp.body);
    strata_free(c);
}

/* Drop the read buffer if it grew large, so idle connections stay small. */
static void conn_trim(http_conn *c)
{
    if (c->rpos == c->rlen && c->rcap > RBUF_KEEP) {
        strata_free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
        c->rlen = 0;
        c->rpos = 0;
        c->scan_off = 0;
    }
}

/* Move unprocessed input to the front of rbuf. */
static void conn_compact(http_conn *c)
{
    if (c->rpos == 0) {
        return;
    }
    size_t left = c->rlen - c->rpos;
    if (left > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, left);
    }
    c->scan_off = c->scan_off > c->rpos ? c->scan_off - c->rpos : 0;
    c->rlen = left;
    c->rpos = 0;
}

/* Make rbuf hold at least `need` bytes (capped at rbuf_max). */
static int conn_reserve(http_conn *c, size_t need)
{
    size_t max = c->loop->srv->rbuf_max;
    if (need <= c->rcap) {
        return STRATA_OK;
    }
    size_t cap = c->rcap ? c->rcap : RBUF_INITIAL;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > max) {
        cap = max;
    }
    char *p = strata_realloc(c->rbuf, cap);
    if (p == NULL) {
        return STRATA_ENOMEM;
    }
    c->rbuf = p;
    c->rcap = cap;
    return STRATA_OK;
}

/* Shut down our side and wait (bounded) for the peer's EOF; see the top. */
static conn_rc conn_linger(http_conn *c, int64_t now)
{
    if (c->io->shutdown != NULL) {
        c->io->shutdown(c);   /* TLS close_notify, so the peer sees a clean end */
    }
    if (shutdown(c->fd, SHUT_WR) != 0) {
        conn_close(c);
        return CONN_RC_GONE;
    }
    strata_free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
    c->rlen = 0;
    c->rpos = 0;
    sbuf_free(&c->resp.body);
    c->state = CONN_LINGER;
    c->linger_until_ms = now + LINGER_MS;
    c->io_want = 0;
    conn_set_ready(c, false);   /* LINGER drains the socket, not the transport */
    conn_arm(c);
    return CONN_RC_BUSY;
}

/* ---- output --------------------------------------------------------- */

/* Write the pending head+body. On EAGAIN switch to WRITE and wait for
 * EPOLLOUT. When everything is written: 100 Continue returns to READ;
 * a final response returns to READ or, if close_after, lingers. */
static conn_rc conn_flush(http_conn *c, int64_t now)
{
    for (;;) {
        size_t total = c->whead_len + c->wbody_len;
        if (c->woff >= total) {
            break;
        }
        struct iovec iov[2];
        int cnt = 0;
        if (c->woff < c->whead_len) {
            iov[cnt].iov_base = c->whead + c->woff;
            iov[cnt].iov_len = c->whead_len - c->woff;
            cnt++;
            if (c->wbody_len > 0) {
                iov[cnt].iov_base = (void *)c->wbody;
                iov[cnt].iov_len = c->wbody_len;
                cnt++;
            }
        } else {
            size_t boff = c->woff - c->whead_len;
            iov[cnt].iov_base = (void *)(c->wbody + boff);
            iov[cnt].iov_len = c->wbody_len - boff;
            cnt++;
        }
        ssize_t n = c->io->writev(c, iov, cnt);
        if (n > 0) {
            c->woff += (size_t)n;
            c->last_io_ms = now;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->state = CONN_WRITE;
            conn_arm(c);
            return CONN_RC_BUSY;
        }
        conn_close(c);   /* EPIPE, ECONNRESET: the peer is gone */
        return CONN_RC_GONE;
    }

    bool was_writing = c->state == CONN_WRITE;
    c->whead_len = 0;
    c->wbody = NULL;
    c->wbody_len = 0;
    c->woff = 0;
    if (c->interim) {
        c->interim = false;
        c->continue_sent = true;
    } else {
        if (c->resp.body.cap > RESP_KEEP) {
            sbuf_free(&c->resp.body);
        }
        if (c->close_after) {
            return conn_linger(c, now);
        }
    }
    if (was_writing) {
        c->state = CONN_READ;
    }
    conn_arm(c);
    return CONN_RC_READ;
}

/* Append n bytes to the head being built; the caller sized whead. */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Build the response head in c->whead and queue head + body. The head is
 * assembled by hand: snprintf here costs more than the rest of a small
 * request. whead cannot overflow: status line < 64, Content-Type is capped
 * at CTYPE_MAX, Content-Length and Connection < 64, extras < 512. */
static void conn_queue_response(http_conn *c, int status, const char *ctype, const char *body,
                                size_t body_len, const char *extra, size_t extra_len,
                                bool head_only)
{
    if (status < 100 || status > 999) {
        status = 500;
    }
    const char *text = http_status_text(status);
    size_t text_len = strlen(text);
    if (text_len > 40) {
        text_len = 40;
    }
    if (ctype == NULL) {
        ctype = "application/json";
    }
    size_t ct_len = strlen(ctype);
    if (ct_len > CTYPE_MAX || strpbrk(ctype, "\r\n") != NULL) {
        ctype = "application/octet-stream";
        ct_len = strlen(ctype);
    }
    if (extra_len >= sizeof(c->resp.extra_headers)) {
        extra_len = 0;
    }
    /* 1xx, 204 and 304 carry no body (RFC 9110 6.4.1). */
    bool no_body = status < 200 || status == 204 || status == 304;

    char *p = c->whead;
    char num[24];
    p = put(p, "HTTP/1.1 ", 9);
    num[0] = (char)('0' + status / 100);
    num[1] = (char)('0' + status / 10 % 10);
    num[2] = (char)('0' + status % 10);
    num[3] = ' ';
    p = put(p, num, 4);
    p = put(p, text, text_len);
    p = put(p, "\r\n", 2);
    if (!no_body) {
        p = put(p, "Content-Type: ", 14);
        p = put(p, ctype, ct_len);
        p = put(p, "\r\nContent-Length: ", 18);
        int nl = snprintf(num, sizeof(num), "%zu", body_len);
        p = put(p, num, (size_t)nl);
        p = put(p, "\r\n", 2);
    }
    if (c->close_after) {
        p = put(p, "Connection: close\r\n", 19);
    } else {
        p = put(p, "Connection: keep-alive\r\n", 24);
    }
    p = put(p, extra, extra_len);
    p = put(p, "\r\n", 2);
    c->whead_len = (size_t)(p - c->whead);
    c->wbody = body;
    c->wbody_len = (no_body || head_only) ? 0 : body_len;
    c->woff = 0;
}

/* Answer a protocol error (or 408) with the JSON error body and close.
 * Called only in READ, when no output is pending. */
static conn_rc conn_error(http_conn *c, int status, int64_t now)
{
    http_server *srv = c->loop->srv;
    const char *code = "bad_request";
    char msg[96];
    switch (status) {
    case 408:
        code = "request_timeout";
        snprintf(msg, sizeof(msg), "request not completed within %d ms",
                 srv->cfg.request_timeout_ms);
        break;
    case 413:
        code = "payload_too_large";
        snprintf(msg, sizeof(msg), "request body over the limit of %zu bytes",
                 srv->cfg.limits.max_body_bytes);
        break;
    case 431:
        code = "header_too_large";
        snprintf(msg, sizeof(msg), "request head over the limit of %zu bytes or %d fields",
                 srv->cfg.limits.max_header_bytes, HTTP_MAX_HEADERS);
        break;
    case 501:
        code = "not_implemented";
        snprintf(msg, sizeof(msg), "transfer coding not supported (only chunked)");
        break;
    case 505:
        code = "http_version_not_supported";
        snprintf(msg, sizeof(msg), "only HTTP/1.0 and HTTP/1.1 are supported");
        break;
    default:
        status = 400;
        snprintf(msg, sizeof(msg), "malformed HTTP request");
        break;
    }
    if (status != 408) {
        atomic_fetch_add_explicit(&c->loop->parse_errors, 1, memory_order_relaxed);
    }
    sbuf_reset(&c->resp.body);
    c->resp.body.max = srv->cfg.max_response_bytes;
    if (sbuf_printf(&c->resp.body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                    msg) != STRATA_OK) {
        sbuf_reset(&c->resp.body);   /* ENOMEM: the status line still goes out */
    }
    c->close_after = true;
    c->interim = false;
    conn_queue_response(c, status, "application/json", c->resp.body.data, c->resp.body.len,
                        "", 0, false);
    return conn_flush(c, now);
}

/* Queue "100 Continue" when the client waits for it before sending the body. */
static conn_rc conn_send_continue(http_conn *c, int64_t now)
{
    static const char k_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    memcpy(c->whead, k_continue, sizeof(k_continue) - 1);
    c->whead_len = sizeof(k_continue) - 1;
    c->wbody = NULL;
    c->wbody_len = 0;
    c->woff = 0;
    c->interim = true;
    return conn_flush(c, now);
}

/* ---- requests ------------------------------------------------------- */

/* Is there a head terminator (LF LF or LF CR LF) in rbuf[from..rlen)? */
static bool head_end_present(const http_conn *c, size_t from)
{
    const char *b = c->rbuf;
    size_t i = from;
    while (i < c->rlen) {
        const char *nl = memchr(b + i, '\n', c->rlen - i);
        if (nl == NULL) {
            return false;
        }
        i = (size_t)(nl - b) + 1;
        if (i < c->rlen && (b[i] == '\n' || (b[i] == '\r' && i + 1 < c->rlen
                                             && b[i + 1] == '\n'))) {
            return true;
        }
    }
    return false;
}

/* Call the handler for the complete request in loop->req and queue its
 * response. */
static conn_rc conn_serve(http_conn *c, http_request *req, int64_t now)
{
    http_loop *loop = c->loop;
    http_server *srv = loop->srv;
    http_response *resp = &c->resp;
    resp->status = 200;
    resp->content_type = "application/json";
    sbuf_reset(&resp->body);
    resp->body.max = srv->cfg.max_response_bytes;
    resp->extra_headers[0] = '\0';
    resp->extra_len = 0;
    resp->close = false;

    srv->handler(srv->ctx, req, resp);
    atomic_fetch_add_explicit(&loop->requests_total, 1, memory_order_relaxed);

    if (resp->close || !req->keep_alive || loop->draining) {
        c->close_after = true;
    }
    bool head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    conn_queue_response(c, resp->status, resp->content_type, resp->body.data, resp->body.len,
                        resp->extra_headers, resp->extra_len, head_only);
    return conn_flush(c, now);
}

/* Serve every complete request in rbuf, in order, while the connection
 * stays in READ. Stops at an incomplete request, pending output or close. */
static conn_rc conn_process(http_conn *c, int64_t now)
{
    http_loop *loop = c->loop;
    http_server *srv = loop->srv;
    const http_limits *lim = &srv->cfg.limits;
    http_request *req = &loop->req;

    while (c->state == CONN_READ && c->rpos < c->rlen) {
        size_t avail = c->rlen - c->rpos;
        char *start = c->rbuf + c->rpos;

        /* Scan only the new bytes for the end of the head (backing up two
         * for a terminator split across reads), so a head arriving a byte at
         * a time costs O(n), not O(n^2). The parser runs once it is there. */
        if (!c->head_seen) {
            size_t from = c->scan_off >= c->rpos + 2 ? c->scan_off - 2 : c->rpos;
            if (avail <= lim->max_header_bytes && !head_end_present(c, from)) {
                c->scan_off = c->rlen;
                break;
            }
        }
        int hl = http_parse_head(start, avail, lim, req);
        if (hl == 0) {
            c->scan_off = c->rlen;
            break;
        }
        if (hl < 0) {
            return conn_error(c, -hl, now);
        }
        c->head_seen = true;

        char *body = start + hl;
        size_t body_avail = avail - (size_t)hl;
        size_t body_len = 0;
        size_t consumed = 0;
        if (req->chunked) {
            long r = http_dechunk(body, body_avail, lim->max_body_bytes, &body_len);
            if (r < 0) {
                return conn_error(c, (int)-r, now);
            }
            if (r == 0) {
                if (req->expect_continue && !c->continue_sent) {
                    return conn_send_continue(c, now);
                }
                break;
            }
            consumed = (size_t)hl + (size_t)r;
        } else {
            size_t cl = req->content_length > 0 ? (size_t)req->content_length : 0;
            if (body_avail < cl) {
                /* Size the buffer once for the whole body (the parser
                 * capped cl at max_body, so this is bounded). */
                if (conn_reserve(c, c->rpos + (size_t)hl + cl) != STRATA_OK) {
                    conn_close(c);
                    return CONN_RC_GONE;
                }
                if (req->expect_continue && !c->continue_sent) {
                    return conn_send_continue(c, now);
                }
                break;
            }
            body_len = cl;
            consumed = (size_t)hl + cl;
        }
        req->body = body_len > 0 ? body : NULL;
        req->body_len = body_len;
        memcpy(req->remote_addr, c->remote, sizeof(req->remote_addr));

        c->rpos += consumed;
        c->scan_off = c->rpos;
        c->head_seen = false;
        c->continue_sent = false;
        conn_rc rc = conn_serve(c, req, now);
        if (rc == CONN_RC_GONE) {
            return rc;
        }
        if (c->rpos < c->rlen) {
            c->req_start_ms = now;   /* the next pipelined request has begun */
        }
        if (rc != CONN_RC_READ) {
            return rc;
        }
    }
    if (c->state == CONN_READ) {
        conn_compact(c);
        conn_trim(c);
    }
    return c->state == CONN_READ ? CONN_RC_READ : CONN_RC_BUSY;
}

/* EPOLLIN in READ: one read, then process. One read per wakeup keeps
 * loops fair; level-triggered epoll reports any remainder next time. */
static conn_rc conn_on_readable(http_conn *c, int64_t now)
{
    http_server *srv = c->loop->srv;
    conn_compact(c);
    if (c->rlen == c->rcap) {
        if (c->rcap >= srv->rbuf_max) {
            /* Only a chunked body with heavy framing overhead can fill it:
             * heads stop at 431 and Content-Length bodies at 413 earlier. */
            return conn_error(c, c->head_seen ? 413 : 431, now);
        }
        if (conn_reserve(c, c->rcap ? c->rcap * 2 : RBUF_INITIAL) != STRATA_OK) {
            conn_close(c);
            return CONN_RC_GONE;
        }
    }
    ssize_t n = c->io->read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (n > 0) {
        if (c->rlen == c->rpos) {
            c->req_start_ms = now;
        }
        c->rlen += (size_t)n;
        c->last_io_ms = now;
        conn_arm(c);   /* back to EPOLLIN if a TLS step had wanted EPOLLOUT */
        return conn_process(c, now);
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        conn_arm(c);
        return CONN_RC_READ;
    }
    /* EOF or error. Every complete request was already answered (we
     * process after each read), so what is left is a partial request. */
    conn_close(c);
    return CONN_RC_GONE;
}

/* LINGER: discard input until EOF or error. Raw socket reads whatever the
 * transport: after our close_notify nothing more is decrypted. */
static void conn_on_linger(http_conn *c)
{
    char sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = tcp_read(c, sink, sizeof(sink));
        if (n > 0) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        conn_close(c);
        return;
    }
}

/* Dispatch one epoll event for c by state. c may be freed on return. */
static void conn_on_event(http_conn *c, int64_t now)
{
    switch (c->state) {
    case CONN_READ:
        conn_on_readable(c, now);   /* HUP/ERR show up as EOF or an error */
        break;
    case CONN_WRITE:
        if (conn_flush(c, now) == CONN_RC_READ) {
            conn_process(c, now);   /* pipelined requests waiting behind it */
        }
        break;
    case CONN_LINGER:
        conn_on_linger(c);
        break;
    }
}

/* ---- the loop ------------------------------------------------------- */

/* Add (on) or remove the loop's listener from its epoll set. */
static void loop_listen_arm(http_loop *loop, bool on)
{
    if (loop->listen_fd < 0 || loop->listening == on) {
        return;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &k_tag_listen;
    int rc = epoll_ctl(loop->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, loop->listen_fd, &ev);
    if (rc == 0) {
        loop->listening = on;
    }
}

/* "ip:port" or "[ip6]:port" for the access log. */
static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
}

/* Accept up to ACCEPT_BATCH connections. Over max_connections a new one
 * is accepted and closed at once: leaving it in the backlog would only make
 * the client wait, and refusing at SYN time is not possible from here. */
static void loop_accept(http_loop *loop, int64_t now)
{
    http_server *srv = loop->srv;
    for (int i = 0; i < ACCEPT_BATCH && loop->listen_fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(loop->listen_fd, (struct sockaddr *)&ss, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered, the pending connection would wake us in
                 * a tight loop: park the listener for a moment instead. */
                slog(SLOG_WARN, "http: accept: %s; pausing %d ms", strerror(errno),
                     ACCEPT_PAUSE_MS);
                loop_listen_arm(loop, false);
                loop->accept_resume_ms = now + ACCEPT_PAUSE_MS;
            }
            return;
        }
        long open = atomic_fetch_add_explicit(&srv->conns_open, 1, memory_order_relaxed) + 1;
        if (open > srv->cfg.max_connections) {
            atomic_fetch_sub_explicit(&srv->conns_open, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&srv->conns_rejected, 1, memory_order_relaxed);
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        http_conn *c = strata_calloc(1, sizeof(*c));
        if (c == NULL) {
            atomic_fetch_sub_explicit(&srv->conns_open, 1, memory_order_relaxed);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->io = &k_tcp_io;
        if (srv->cfg.tls != NULL) {
            if (tls_conn_create(srv->cfg.tls, fd, (tls_conn **)&c->io_ctx) != STRATA_OK) {
                atomic_fetch_sub_explicit(&srv->conns_open, 1, memory_order_relaxed);
                close(fd);
                strata_free(c);
                continue;
            }
            c->io = &k_tls_io;
            c->io_handshake = true;
        }
        c->armed = EPOLLIN;
        c->loop = loop;
        c->state = CONN_READ;
        c->last_io_ms = now;
        c->req_start_ms = now;
        sbuf_init(&c->resp.body, srv->cfg.max_response_bytes);
        format_addr(&ss, c->remote, sizeof(c->remote));
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            atomic_fetch_sub_explicit(&srv->conns_open, 1, memory_order_relaxed);
            if (c->io->release != NULL) {
                c->io->release(c);
            }
            close(fd);
            strata_free(c);
            continue;
        }
        c->next = loop->conns;
        if (loop->conns != NULL) {
            loop->conns->prev = c;
        }
        loop->conns = c;
        loop->n_conns++;
        atomic_fetch_add_explicit(&loop->conns_total, 1, memory_order_relaxed);
    }
}

/* Stop seen: no more accepts; idle connections close now, busy ones after
 * their current response. */
static void loop_begin_drain(http_loop *loop)
{
    http_server *srv = loop->srv;
    loop->draining = true;
    /* The eventfd stays readable (it is never read, so every loop sees it);
     * unregister it or level-triggered epoll would spin. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, srv->stop_fd, NULL);
    loop_listen_arm(loop, false);
    if (loop->listen_fd >= 0) {
        close(loop->listen_fd);
        loop->listen_fd = -1;
    }
    http_conn *next = NULL;
    for (http_conn *c = loop->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_READ && c->rpos == c->rlen) {
            conn_close(c);
        } else if (c->state != CONN_LINGER) {
            c->close_after = true;
        }
    }
}

/* The timeout scan (see the top comment for the deadlines). */
static void loop_scan(http_loop *loop, int64_t now)
{
    http_server *srv = loop->srv;
    if (loop->accept_resume_ms != 0 && now >= loop->accept_resume_ms && !loop->draining) {
        loop->accept_resume_ms = 0;
        loop_listen_arm(loop, true);
    }
    http_conn *next = NULL;
    for (http_conn *c = loop->conns; c != NULL; c = next) {
        next = c->next;
        switch (c->state) {
        case CONN_READ:
            if (c->io_handshake) {
                /* No TLS yet, so no 408 to send: a stalled handshake just ends. */
                if (now - c->req_start_ms >= srv->cfg.request_timeout_ms) {
                    atomic_fetch_add_explicit(&loop->tls_failures, 1, memory_order_relaxed);
                    slog(SLOG_DEBUG, "http: %s: TLS handshake timed out", c->remote);
                    conn_close(c);
                }
            } else if (c->rpos < c->rlen) {
                if (now - c->req_start_ms >= srv->cfg.request_timeout_ms) {
                    conn_error(c, 408, now);
                }
            } else if (now - c->last_io_ms >= srv->cfg.idle_timeout_ms) {
                conn_close(c);
            }
            break;
        case CONN_WRITE:
            if (now - c->last_io_ms >= srv->cfg.request_timeout_ms) {
                conn_close(c);
            }
            break;
        case CONN_LINGER:
            if (now >= c->linger_until_ms) {
                conn_close(c);
            }
            break;
        }
    }
}

/* Read once more from each READ connection whose transport holds input
 * (io_ready, TLS only); see the top comment. Sets loop->ready_left when one
 * could still read more, so the next epoll_wait does not sleep. */
static void loop_service_ready(http_loop *loop, int64_t now)
{
    loop->ready_left = false;
    http_conn *next = NULL;
    for (http_conn *c = loop->conns; c != NULL && loop->n_io_ready > 0; c = next) {
        next = c->next;   /* conn_on_readable may free c, never another */
        if (c->io_ready && c->state == CONN_READ) {
            if (conn_on_readable(c, now) != CONN_RC_GONE && c->io_ready &&
                c->state == CONN_READ) {
                loop->ready_left = true;
            }
        }
    }
}

/* One event loop: wait (at most a tick), handle the batch, then act on a
 * stop and run the timeout scan. Returns when draining and no connection
 * is left (or epoll itself failed, which only a bug can cause). */
static void loop_run(http_loop *loop)
{
    http_server *srv = loop->srv;
    struct epoll_event events[MAX_EVENTS];
    int64_t last_scan = mono_ms();
    for (;;) {
        if (loop->draining && loop->n_conns == 0) {
            break;
        }
        int n = epoll_wait(loop->epfd, events, MAX_EVENTS, loop->ready_left ? 0 : LOOP_TICK_MS);
        if (n < 0 && errno != EINTR) {
            slog(SLOG_ERROR, "http: epoll_wait: %s", strerror(errno));
            break;
        }
        int64_t now = mono_ms();
        bool stop_seen = false;
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &k_tag_stop) {
                stop_seen = true;   /* acted on after the batch: see below */
            } else if (tag == &k_tag_listen) {
                if (!loop->draining) {
                    loop_accept(loop, now);
                }
            } else {
                conn_on_event(tag, now);
            }
        }
        if (loop->n_io_ready > 0) {
            loop_service_ready(loop, now);
        } else {
            loop->ready_left = false;
        }
        /* Draining closes connections, which may still have events later in
         * this batch; doing it here, after the batch, avoids a use after
         * free. Same for the scan. */
        if (!loop->draining && (stop_seen || atomic_load(&srv->stopping))) {
            loop_begin_drain(loop);
        }
        if (now - last_scan >= LOOP_TICK_MS) {
            loop_scan(loop, now);
            last_scan = now;
        }
    }
    while (loop->conns != NULL) {
        conn_close(loop->conns);   /* only after an epoll failure */
    }
}

static void *loop_thread(void *arg)
{
    loop_run(arg);
    return NULL;
}

/* ---- server --------------------------------------------------------- */

/* Why SO_REUSEPORT (one listening socket per loop) rather than one shared
 * socket with EPOLLEXCLUSIVE: the kernel spreads new connections across the
 * sockets by hash, so long-lived keep-alive connections end up balanced over
 * the loops, with no shared accept queue to contend on. EPOLLEXCLUSIVE wakes
 * waiters in LIFO order and one loop tends to take a whole burst of
 * connections (wrk's 50 land on one core). The cost: a connection hashed to
 * a loop busy in a slow handler waits for that loop, and on stop connections
 * still queued on a closed listener are reset. With port 0 the first socket
 * gets an ephemeral port and the others bind that same port; Linux never
 * hands a port-0 bind a port that other SO_REUSEPORT sockets already use,
 * so two servers started on port 0 cannot end up sharing one. */
static int listen_socket(const struct sockaddr *addr, socklen_t alen, int *out)
{
    *out = -1;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return strata_error_errno("socket", NULL);
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        int rc = strata_error_errno("setsockopt", NULL);
        close(fd);
        return rc;
    }
    if (bind(fd, addr, alen) != 0) {
        int rc = strata_error_errno("bind", NULL);
        close(fd);
        return rc;
    }
    if (listen(fd, SOMAXCONN) != 0) {
        int rc = strata_error_errno("listen", NULL);
        close(fd);
        return rc;
    }
    *out = fd;
    return STRATA_OK;
}

/* SO_REUSEPORT would let a second server (same user) join a port this one
 * already serves and silently split its traffic. So before binding the
 * loops' sockets, bind the port once without SO_REUSEPORT: that fails with
 * EADDRINUSE when anyone listens there. The probe is closed at once. */
static int probe_port_free(const struct sockaddr *addr, socklen_t alen)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return strata_error_errno("socket", NULL);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = STRATA_OK;
    if (bind(fd, addr, alen) != 0) {
        rc = errno == EADDRINUSE ? strata_error(STRATA_EBUSY, "address already in use")
                                 : strata_error_errno("bind", NULL);
    }
    close(fd);
    return rc;
}

/* Set the port of an IPv4 or IPv6 address. */
static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    } else if (ss->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    }
}

/* Resolve host into a numeric-port-agnostic address (first result). */
static int resolve_host(const char *host, struct sockaddr_storage *ss, socklen_t *alen)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, "0", &hints, &res);
    if (gai != 0 || res == NULL) {
        return strata_error(STRATA_EINVAL, "cannot resolve listen host '%s': %s",
                            host ? host : "(any)", gai_strerror(gai));
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *alen = res->ai_addrlen;
    freeaddrinfo(res);
    return STRATA_OK;
}

/* Replace zero / negative settings by their defaults, so a config built by
 * hand (not via http_server_config_init) still gets sane limits. */
static void normalize_config(http_server_config *cfg)
{
    http_server_config def;
    http_server_config_init(&def);
    if (cfg->threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = cores > 0 ? (int)(2 * cores) : 2;
    }
    if (cfg->max_connections <= 0) {
        cfg->max_connections = def.max_connections;
    }
    if (cfg->limits.max_header_bytes == 0) {
        cfg->limits.max_header_bytes = def.limits.max_header_bytes;
    }
    if (cfg->limits.max_body_bytes == 0) {
        cfg->limits.max_body_bytes = def.limits.max_body_bytes;
    }
    if (cfg->idle_timeout_ms <= 0) {
        cfg->idle_timeout_ms = def.idle_timeout_ms;
    }
    if (cfg->request_timeout_ms <= 0) {
        cfg->request_timeout_ms = def.request_timeout_ms;
    }
    if (cfg->max_response_bytes == 0) {
        cfg->max_response_bytes = def.max_response_bytes;
    }
}

/* See http.h. Creates the eventfd and, per loop, an epoll set and a bound,
 * listening socket, so the port is known (and connections queue) before
 * run(). On failure everything made so far is released and *out is NULL. */
int http_server_create(const http_server_config *cfg, http_handler_fn handler, void *ctx,
                       http_server **out)
{
    int rc = STRATA_OK;
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "http_server_create: out is NULL");
    }
    *out = NULL;
    if (cfg == NULL || handler == NULL) {
        return strata_error(STRATA_EINVAL, "http_server_create: config and handler required");
    }
    http_server *srv = strata_calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory creating the HTTP server");
    }
    srv->stop_fd = -1;
    srv->cfg = *cfg;
    normalize_config(&srv->cfg);
    srv->host = strata_strdup(cfg->host ? cfg->host : "127.0.0.1");
    if (srv->host == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory creating the HTTP server");
        goto fail;
    }
    srv->cfg.host = srv->host;
    srv->handler = handler;
    srv->ctx = ctx;
    /* Head + body of one request, plus slack for chunked framing overhead. */
    size_t body = srv->cfg.limits.max_body_bytes;
    srv->rbuf_max = srv->cfg.limits.max_header_bytes + body + body / 4 + 16 * 1024;

    srv->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->stop_fd < 0) {
        rc = strata_error_errno("eventfd", NULL);
        goto fail;
    }
    srv->loops = strata_calloc((size_t)srv->cfg.threads, sizeof(http_loop));
    if (srv->loops == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory creating %d HTTP loops",
                          srv->cfg.threads);
        goto fail;
    }
    for (int i = 0; i < srv->cfg.threads; i++) {
        srv->loops[i].epfd = -1;
        srv->loops[i].listen_fd = -1;
    }
    srv->n_loops = srv->cfg.threads;

    struct sockaddr_storage ss;
    socklen_t alen = 0;
    rc = resolve_host(srv->host, &ss, &alen);
    if (rc != STRATA_OK) {
        goto fail;
    }
    set_port(&ss, srv->cfg.port);
    if (srv->cfg.port != 0) {
        rc = probe_port_free((struct sockaddr *)&ss, alen);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    for (int i = 0; i < srv->n_loops; i++) {
        http_loop *loop = &srv->loops[i];
        loop->srv = srv;
        loop->idx = i;
        rc = listen_socket((struct sockaddr *)&ss, alen, &loop->listen_fd);
        if (rc != STRATA_OK) {
            goto fail;
        }
        if (i == 0) {
            struct sockaddr_storage bound;
            socklen_t blen = sizeof(bound);
            if (getsockname(loop->listen_fd, (struct sockaddr *)&bound, &blen) != 0) {
                rc = strata_error_errno("getsockname", NULL);
                goto fail;
            }
            srv->port = ntohs(bound.ss_family == AF_INET6
                                  ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                  : ((struct sockaddr_in *)&bound)->sin_port);
            set_port(&ss, srv->port);
        }
        loop->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (loop->epfd < 0) {
            rc = strata_error_errno("epoll_create1", NULL);
            goto fail;
        }
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = &k_tag_stop;
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, srv->stop_fd, &ev) != 0) {
            rc = strata_error_errno("epoll_ctl", NULL);
            goto fail;
        }
        loop_listen_arm(loop, true);
        if (!loop->listening) {
            rc = strata_error_errno("epoll_ctl", NULL);
            goto fail;
        }
    }
    *out = srv;
    return STRATA_OK;

fail:
    http_server_free(srv);
    return rc;
}

/* The bound port; the ephemeral one when cfg.port was 0. */
uint16_t http_server_port(const http_server *srv)
{
    return srv->port;
}

/* Runs once: after a stop the eventfd stays set and a second run() returns
 * at once. Returns STRATA_OK, or an error if a loop thread could not start
 * (the started ones are stopped and joined first). */
int http_server_run(http_server *srv)
{
    int rc = STRATA_OK;
    if (atomic_exchange(&srv->running, 1) != 0) {
        return strata_error(STRATA_EBUSY, "http_server_run: already running");
    }
    for (int i = 1; i < srv->n_loops; i++) {
        http_loop *loop = &srv->loops[i];
        int err = pthread_create(&loop->thread, NULL, loop_thread, loop);
        if (err != 0) {
            rc = strata_error(STRATA_EIO, "cannot start HTTP loop thread: %s", strerror(err));
            http_server_stop(srv);
            break;
        }
        loop->thread_started = true;
    }
    loop_run(&srv->loops[0]);
    for (int i = 1; i < srv->n_loops; i++) {
        if (srv->loops[i].thread_started) {
            pthread_join(srv->loops[i].thread, NULL);
            srv->loops[i].thread_started = false;
        }
    }
    return rc;
}

/* Async-signal-safe: an atomic store and write(2), errno preserved. */
void http_server_stop(http_server *srv)
{
    if (srv == NULL) {
        return;
    }
    int saved = errno;
    atomic_store(&srv->stopping, 1);
    uint64_t one = 1;
    ssize_t n = write(srv->stop_fd, &one, sizeof(one));
    (void)n;   /* EAGAIN means the counter is already set: still woken */
    errno = saved;
}

/* A snapshot of the counters; any thread, any time (relaxed atomics, so
 * the fields are each exact but not taken at one instant). */
void http_server_stats_get(http_server *srv, http_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    long open = atomic_load_explicit(&srv->conns_open, memory_order_relaxed);
    out->connections_open = open > 0 ? (uint64_t)open : 0;
    out->connections_rejected = atomic_load_explicit(&srv->conns_rejected,
                                                     memory_order_relaxed);
    for (int i = 0; i < srv->n_loops; i++) {
        http_loop *loop = &srv->loops[i];
        out->connections_total += atomic_load_explicit(&loop->conns_total,
                                                       memory_order_relaxed);
        out->requests_total += atomic_load_explicit(&loop->requests_total,
                                                    memory_order_relaxed);
        out->parse_errors += atomic_load_explicit(&loop->parse_errors, memory_order_relaxed);
        out->tls_handshakes += atomic_load_explicit(&loop->tls_handshakes,
                                                    memory_order_relaxed);
        out->tls_handshake_failures += atomic_load_explicit(&loop->tls_failures,
                                                            memory_order_relaxed);
    }
}

/* Not while run() is active. Closes whatever is still open. */
void http_server_free(http_server *srv)
{
    if (srv == NULL) {
        return;
    }
    for (int i = 0; i < srv->n_loops; i++) {
        http_loop *loop = &srv->loops[i];
        while (loop->conns != NULL) {
            conn_close(loop->conns);
        }
        if (loop->listen_fd >= 0) {
            close(loop->listen_fd);
        }
        if (loop->epfd >= 0) {
            close(loop->epfd);
        }
    }
    strata_free(srv->loops);
    if (srv->stop_fd >= 0) {
        close(srv->stop_fd);
    }
    strata_free(srv->host);
    strata_free(srv);
}
