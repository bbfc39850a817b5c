/*
 * redis_tls.c - TLS to Redis for hiredis 0.14 through a per-connection relay
 * thread (the picture and the contract are in redis_tls.h).
 *
 * Why a relay and not something lighter:
 *   - hiredis 0.14 does its I/O with read(2)/write(2) on ctx->fd and has no
 *     hook to put SSL_read/SSL_write there (hiredis 1.x's redisContextFuncs
 *     and hiredis_ssl are not in Debian 12). The fd it is given must carry
 *     plain RESP, so something else must do the crypto.
 *   - Kernel TLS (handshake in OpenSSL, then setsockopt TCP_ULP "tls" and hand
 *     the TCP fd itself to hiredis) would cost nothing per request, but needs
 *     the tls module (absent where this was built: tcp_available_ulp lists
 *     only mptcp) and TLS 1.3 post-handshake records (the session tickets
 *     Redis sends) make plain read(2) on a kTLS socket fail with EIO.
 *   - One thread per connection rather than one event loop for all: pools
 *     are small (pool_size per node), the crypto of different connections
 *     runs on different cores, and a connection's thread only ever waits on
 *     its own two sockets, so there is no head-of-line blocking and no shared
 *     state but the SSL_CTX (thread-safe once configured).
 *
 * Relay loop (one SSL object, one thread, non-blocking sockets, poll()):
 *   app  = our end of the socketpair (hiredis writes commands, reads replies)
 *   up   = bytes read from app, not yet accepted by SSL_write
 *   down = bytes from SSL_read, not yet written to app
 * Each pass moves whatever can move without waiting; only when a pass moves
 * nothing does the thread poll, for exactly what blocked: app readable
 * (up empty), app writable (down pending), TCP readable/writable as the last
 * SSL_read/SSL_write asked (SSL_ERROR_WANT_READ/WRITE; either op may want
 * either direction). Bytes OpenSSL already holds (SSL_has_pending: a record
 * larger than `down`, or several records in one TCP read) are drained before
 * polling, since poll() cannot see them. The TCP socket is polled only while
 * an SSL call waits on it, so a peer's hang-up cannot spin the loop.
 *
 * Ending: hiredis closing its end (redisFree), or redis_tls_conn_close()
 * shutting down the relay's end, shows as POLLHUP/EOF on app: the relay
 * sends close_notify (best effort, non-blocking) and closes TCP. Redis
 * closing (or the session failing) ends `up`; what came before is still
 * delivered down, then app is shut down so hiredis reads EOF. The socketpair
 * end is closed only after the join, by redis_tls_conn_close, so its fd
 * number cannot be reused while another thread may still shut it down.
 *
 * Our own socket BIO (recv/send with MSG_NOSIGNAL) rather than BIO_s_socket,
 * whose write(2) raises SIGPIPE when Redis resets the connection. OpenSSL's
 * error queue is per thread: every SSL call starts from ERR_clear_error().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "core/sock_bio.h"
#include "l1/redis_tls.h"

#define RELAY_BUF 16384                 /* one TLS record's worth each way */
#define RELAY_STACK (256u * 1024u)      /* the loop is shallow; OpenSSL's needs are modest */
#define TLS_KEEPALIVE_S 15              /* as hiredis's REDIS_KEEPALIVE_INTERVAL */

struct redis_tls {
    SSL_CTX *ctx;
    BIO_METHOD *bio_method;
    char *server_name;                  /* NULL: verify each host by its own name */
    char trust[300];                    /* "CA file PATH" or "the system CA store", for errors */
};

typedef enum want { W_NONE = 0, W_READ, W_WRITE } want;

struct redis_tls_conn {
    pthread_t thread;
    bool started;                       /* thread is joinable */
    int app_fd;                         /* the relay's end of the socketpair */
    int tcp_fd;                         /* owned by the relay once started */
    SSL *ssl;                           /* likewise */
    char where[300];                    /* "redis HOST:PORT", for messages */
    atomic_bool has_err;                /* err and err_rc are written, then this set */
    int err_rc;                         /* STRATA_EINVAL: our certificate was refused */
    char err[400];
    unsigned char up[RELAY_BUF];
    unsigned char down[RELAY_BUF];
};


/* ---- errors -------------------------------------------------------------- */

static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown OpenSSL error";
}

/* An alert saying the server does not accept our certificate (or the lack of
 * one): a configuration error, not a transient one. */
static bool alert_is_config(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) {
        return false;
    }
    switch (ERR_GET_REASON(e)) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return true;
    default:
        return false;
    }
}

static const char *config_hint(unsigned long e)
{
    return alert_is_config(e) ? " (the server refuses our client certificate or wants one: "
                                "--redis-tls-cert/--redis-tls-key)"
                              : "";
}

/* Record why the relay ended; readers see it after has_err (release). */
static void relay_fail(redis_tls_conn *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void relay_fail(redis_tls_conn *c, int rc, const char *fmt, ...)
{
    if (atomic_load_explicit(&c->has_err, memory_order_relaxed)) {
        return; /* the first cause is the interesting one */
    }
    c->err_rc = rc;
    int k = snprintf(c->err, sizeof(c->err), "%s: ", c->where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, sizeof(c->err) - (size_t)k, fmt, ap);
    va_end(ap);
    atomic_store_explicit(&c->has_err, true, memory_order_release);
}

const char *redis_tls_conn_error(const redis_tls_conn *c, int *rc_out)
{
    if (c == NULL || !atomic_load_explicit(&c->has_err, memory_order_acquire)) {
        return NULL;
    }
    if (rc_out != NULL) {
        *rc_out = c->err_rc;
    }
    return c->err;
}

/* ---- context ------------------------------------------------------------- */

const redis_tls_options *redis_tls_options_from_config(const strata_config *cfg,
                                                       redis_tls_options *buf)
{
    if (cfg == NULL || !cfg->redis_tls) {
        return NULL;
    }
    buf->cacert = cfg->redis_tls_cacert;
    buf->cert = cfg->redis_tls_cert;
    buf->key = cfg->redis_tls_key;
    buf->server_name = cfg->redis_tls_server_name;
    return buf;
}

/* Never prompt for a pass phrase on a daemon's terminal: refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* A file OpenSSL is about to load, checked first: for a missing file OpenSSL
 * reports only "system lib", while errno says what is wrong. */
static int readable(const char *what, const char *path)
{
    if (access(path, R_OK) != 0) {
        return strata_error(STRATA_EINVAL, "redis TLS: cannot read the %s %s: %s", what, path,
                            strerror(errno));
    }
    return STRATA_OK;
}

static int configure(redis_tls *t, const redis_tls_options *o)
{
    SSL_CTX *ctx = t->ctx;
    int rc;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        return strata_error(STRATA_EINVAL, "redis TLS: cannot set the minimum version: %s",
                            ossl_reason());
    }
    /* A peer that just closes without close_notify has ended the connection,
     * nothing more: RESP frames itself, so truncation cannot go unnoticed. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    ERR_clear_error();
    if (set(o->cacert)) {
        snprintf(t->trust, sizeof(t->trust), "CA file %s", o->cacert);
        if ((rc = readable("CA file", o->cacert)) != STRATA_OK) {
            return rc;
        }
        if (SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) != 1) {
            return strata_error(STRATA_EINVAL, "redis TLS: cannot load the CA file %s: %s",
                                o->cacert, ossl_reason());
        }
    } else {
        snprintf(t->trust, sizeof(t->trust), "the system CA store");
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            return strata_error(STRATA_EINVAL, "redis TLS: cannot load the system CA store: %s",
                                ossl_reason());
        }
    }
    if (set(o->cert) != set(o->key)) {
        return strata_error(STRATA_EINVAL, "redis TLS: a client certificate needs its key, "
                                           "and a key its certificate");
    }
    if (set(o->cert)) {
        if ((rc = readable("certificate", o->cert)) != STRATA_OK ||
            (rc = readable("key", o->key)) != STRATA_OK) {
            return rc;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
            return strata_error(STRATA_EINVAL, "redis TLS: cannot load the certificate %s: %s",
                                o->cert, ossl_reason());
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            unsigned long e = ERR_peek_error();
            if (e == 0 || (ERR_GET_LIB(e) == ERR_LIB_X509 &&
                           ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)) {
                return strata_error(STRATA_EINVAL, "redis TLS: the key %s does not match %s",
                                    o->key, o->cert);
            }
            return strata_error(STRATA_EINVAL,
                                "redis TLS: cannot load the key %s: %s (an encrypted key is "
                                "refused)", o->key, ossl_reason());
        }
    }
    return STRATA_OK;
}

int redis_tls_create(const redis_tls_options *o, redis_tls **out)
{
    *out = NULL;
    redis_tls *t = strata_calloc(1, sizeof(*t));
    if (t == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory setting up TLS to redis");
    }
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    t->bio_method = sock_bio_method(); /* process-wide, not freed */
    int rc = STRATA_OK;
    if (t->ctx == NULL || t->bio_method == NULL) {
        rc = strata_error(STRATA_ENOMEM, "redis TLS setup failed: %s", ossl_reason());
    } else if (set(o->server_name) &&
               (t->server_name = strata_strdup(o->server_name)) == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory setting up TLS to redis");
    } else {
        rc = configure(t, o);
    }
    ERR_clear_error();
    if (rc != STRATA_OK) {
        redis_tls_free(t);
        return rc;
    }
    *out = t;
    return STRATA_OK;
}

void redis_tls_free(redis_tls *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    strata_free(t->server_name);
    strata_free(t);
}

/* ---- connecting ---------------------------------------------------------- */

/* Milliseconds left before deadline_ns, at least 0. */
static int ms_left(uint64_t deadline_ns)
{
    uint64_t now = clock_mono_ns();
    if (now >= deadline_ns) {
        return 0;
    }
    uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Wait for events on fd until deadline_ns: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, ms_left(deadline_ns));
        if (n >= 0) {
            return n;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

static void tcp_tune(int fd)
{
    int one = 1;
    int idle = TLS_KEEPALIVE_S;
    int intvl = TLS_KEEPALIVE_S / 3 > 0 ? TLS_KEEPALIVE_S / 3 : 1;
    int cnt = 3;
    /* Best effort, as hiredis does for plain TCP: Nagle off (requests are
     * small and latency-bound), keep-alive to notice a vanished peer. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* A non-blocking TCP connection to host:port, or -1 with the error set. */
static int tcp_connect(const char *where, const char *host, int port, uint64_t deadline_ns,
                       int *rc_out)
{
    char serv[8];
    snprintf(serv, sizeof(serv), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, serv, &hints, &res);
    if (g != 0) {
        *rc_out = strata_error(STRATA_EIO, "%s: cannot resolve: %s", where, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    int err = ECONNREFUSED;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                int w = wait_fd(fd, POLLOUT, deadline_ns);
                socklen_t len = sizeof(err);
                if (w == 0) {
                    err = ETIMEDOUT;
                } else if (w < 0) {
                    err = errno;
                } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                    err = errno;
                }
            }
            if (err != 0 && err != EINPROGRESS) {
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        *rc_out = strata_error(err == ETIMEDOUT ? STRATA_ETIMEDOUT : STRATA_EIO,
                               "%s: connect: %s", where, strerror(err));
        return -1;
    }
    tcp_tune(fd);
    return fd;
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The name the certificate must carry, and SNI for a DNS name. */
static int ssl_set_peer_name(SSL *ssl, const char *where, const char *name)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip_literal(name)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1) {
            return strata_error(STRATA_EINVAL, "%s: bad IP address %s", where, name);
        }
        return STRATA_OK;
    }
    if (SSL_set1_host(ssl, name) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1) {
        return strata_error(STRATA_EINVAL, "%s: cannot use %s as the TLS server name", where,
                            name);
    }
    return STRATA_OK;
}

/* Run the handshake on the connected, non-blocking tcp_fd until deadline_ns. */
static int handshake(const redis_tls *t, SSL *ssl, int tcp_fd, const char *where,
                     const char *name, uint64_t deadline_ns)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(ssl);
        if (r == 1) {
            return STRATA_OK;
        }
        int e = SSL_get_error(ssl, r);
        int w = 1;
        if (e == SSL_ERROR_WANT_READ) {
            w = wait_fd(tcp_fd, POLLIN, deadline_ns);
        } else if (e == SSL_ERROR_WANT_WRITE) {
            w = wait_fd(tcp_fd, POLLOUT, deadline_ns);
        } else {
            long v = SSL_get_verify_result(ssl);
            if (v != X509_V_OK) {
                return strata_error(STRATA_EINVAL,
                                    "%s: TLS: the server's certificate is not accepted: %s "
                                    "(checked against %s, for the name %s)",
                                    where, X509_verify_cert_error_string(v), t->trust, name);
            }
            unsigned long err = ERR_peek_error();
            if (e == SSL_ERROR_SSL && err != 0) {
                const char *reason = ossl_reason();
                bool not_tls = ERR_GET_LIB(err) == ERR_LIB_SSL &&
                               (ERR_GET_REASON(err) == SSL_R_WRONG_VERSION_NUMBER ||
                                ERR_GET_REASON(err) == SSL_R_PACKET_LENGTH_TOO_LONG);
                return strata_error(alert_is_config(err) ? STRATA_EINVAL : STRATA_EIO,
                                    "%s: TLS handshake failed: %s%s%s", where, reason,
                                    not_tls ? " (is this a TLS port? redis-server needs "
                                              "--tls-port)" : "",
                                    config_hint(err));
            }
            int sys = e == SSL_ERROR_SYSCALL ? errno : 0;
            return strata_error(STRATA_EIO, "%s: TLS handshake failed: %s", where,
                                sys != 0 ? strerror(sys) : "the server closed the connection");
        }
        if (w == 0) {
            return strata_error(STRATA_ETIMEDOUT,
                                "%s: TLS handshake timed out (is this a TLS port?)", where);
        }
        if (w < 0) {
            return strata_error_errno("TLS handshake poll", where);
        }
    }
}

/* ---- the relay ----------------------------------------------------------- */

/* What the relay does after an SSL call failed: want more I/O, or stop. */
static want ssl_want(redis_tls_conn *c, int r, const char *op, bool *eof, bool *failed)
{
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return W_READ;
    case SSL_ERROR_WANT_WRITE:
        return W_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        *eof = true; /* close_notify: Redis closed cleanly */
        relay_fail(c, STRATA_EIO, "the server closed the TLS connection");
        return W_NONE;
    case SSL_ERROR_SYSCALL:
        *eof = true;
        *failed = true;
        relay_fail(c, STRATA_EIO, "TLS %s: %s", op,
                   errno != 0 ? strerror(errno) : "the server closed the connection");
        return W_NONE;
    default: {
        unsigned long err = ERR_peek_error();
        *eof = true;
        *failed = true;
        /* With SSL_OP_IGNORE_UNEXPECTED_EOF a bare close is ZERO_RETURN, so
         * this is a real protocol error, e.g. an alert. */
        relay_fail(c, alert_is_config(err) ? STRATA_EINVAL : STRATA_EIO, "TLS %s: %s%s", op,
                   ossl_reason(), config_hint(err));
        return W_NONE;
    }
    }
}

static void *relay_main(void *arg)
{
    redis_tls_conn *c = arg;
    size_t up_off = 0, up_len = 0, down_off = 0, down_len = 0;
    bool app_eof = false;      /* hiredis (or close) ended its side */
    bool tls_eof = false;      /* Redis ended, or the session failed */
    bool failed = false;       /* fatal SSL error: no close_notify may follow */
    bool app_rd = true;        /* app may have bytes to read (no EAGAIN since POLLIN) */
    bool app_wr = true;        /* app may take bytes */
    want rd_want = W_NONE;     /* what the last SSL_read waits for */
    want wr_want = W_NONE;     /* what the last SSL_write waits for */
    for (;;) {
        bool progress = true;
        while (progress && !app_eof) {
            progress = false;
            if (!tls_eof && up_len == 0 && app_rd) {
                ssize_t n = recv(c->app_fd, c->up, sizeof(c->up), 0);
                if (n > 0) {
                    up_off = 0;
                    up_len = (size_t)n;
                    progress = true;
                    /* A short read most likely drained the socket: let poll
                     * say when there is more instead of a recv that fails. */
                    app_rd = (size_t)n == sizeof(c->up);
                } else if (n == 0) {
                    app_eof = true;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    app_rd = false;
                } else if (errno != EINTR) {
                    app_eof = true;
                }
            }
            if (!tls_eof && up_off < up_len && wr_want == W_NONE) {
                ERR_clear_error();
                int n = SSL_write(c->ssl, c->up + up_off, (int)(up_len - up_off));
                if (n > 0) {
                    up_off += (size_t)n;
                    if (up_off == up_len) {
                        up_off = up_len = 0;
                    }
                    progress = true;
                    if (rd_want == W_WRITE) {
                        rd_want = W_NONE; /* what the read waited for may have happened */
                    }
                } else {
                    wr_want = ssl_want(c, n, "write", &tls_eof, &failed);
                }
            }
            if (!tls_eof && down_len == 0 && rd_want == W_NONE) {
                ERR_clear_error();
                int n = SSL_read(c->ssl, c->down, (int)sizeof(c->down));
                if (n > 0) {
                    down_off = 0;
                    down_len = (size_t)n;
                    progress = true;
                    if (wr_want == W_READ) {
                        wr_want = W_NONE;
                    }
                    /* Nothing buffered in OpenSSL: the next read needs the
                     * socket, so wait for it rather than fail a recv. */
                    if (!SSL_has_pending(c->ssl)) {
                        rd_want = W_READ;
                    }
                } else {
                    rd_want = ssl_want(c, n, "read", &tls_eof, &failed);
                }
            }
            if (down_off < down_len && app_wr) {
                ssize_t n = send(c->app_fd, c->down + down_off, down_len - down_off,
                                 MSG_NOSIGNAL);
                if (n > 0) {
                    down_off += (size_t)n;
                    if (down_off == down_len) {
                        down_off = down_len = 0;
                    }
                    progress = true;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    app_wr = false;
                } else if (n < 0 && errno != EINTR) {
                    app_eof = true; /* hiredis is gone; nobody wants the rest */
                }
            }
        }
        if (app_eof || (tls_eof && down_off == down_len)) {
            break;
        }
        struct pollfd p[2] = {{c->app_fd, 0, 0}, {-1, 0, 0}};
        if (!tls_eof && up_len == 0) {
            p[0].events |= POLLIN;
        }
        if (down_off < down_len) {
            p[0].events |= POLLOUT;
        }
        if (!tls_eof) {
            short ev = (short)(((rd_want == W_READ || wr_want == W_READ) ? POLLIN : 0) |
                               ((rd_want == W_WRITE || wr_want == W_WRITE) ? POLLOUT : 0));
            if (ev != 0) {
                p[1].fd = c->tcp_fd;
                p[1].events = ev;
            }
        }
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            relay_fail(c, STRATA_EIO, "relay poll: %s", strerror(errno));
            failed = true;
            break;
        }
        short a = p[0].revents;
        if (a & (POLLHUP | POLLERR)) {
            /* Both directions of the socketpair are shut: hiredis closed its
             * end, or redis_tls_conn_close shut ours. Nothing more to do. */
            app_eof = true;
            break;
        }
        app_rd = app_rd || (a & POLLIN);
        app_wr = app_wr || (a & POLLOUT);
        short t = p[1].revents;
        if (t & (POLLIN | POLLHUP | POLLERR)) {
            rd_want = rd_want == W_READ ? W_NONE : rd_want;
            wr_want = wr_want == W_READ ? W_NONE : wr_want;
        }
        if (t & (POLLOUT | POLLHUP | POLLERR)) {
            rd_want = rd_want == W_WRITE ? W_NONE : rd_want;
            wr_want = wr_want == W_WRITE ? W_NONE : wr_want;
        }
    }
    /* hiredis reads EOF from now on (a no-op if it closed already). */
    shutdown(c->app_fd, SHUT_RDWR);
    if (!failed) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl); /* one non-blocking close_notify; no waiting for Redis's */
    }
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->tcp_fd);
    c->tcp_fd = -1;
    ERR_clear_error();
    return NULL;
}

static void conn_free(redis_tls_conn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
    }
    if (c->tcp_fd >= 0) {
        close(c->tcp_fd);
    }
    if (c->app_fd >= 0) {
        close(c->app_fd);
    }
    strata_free(c);
}

void redis_tls_conn_close(redis_tls_conn *c)
{
    if (c == NULL) {
        return;
    }
    if (c->started) {
        shutdown(c->app_fd, SHUT_RDWR); /* wakes the relay with POLLHUP */
        pthread_join(c->thread, NULL);
    }
    conn_free(c);
}

/* Start the relay with asynchronous signals blocked, so SIGTERM and friends
 * go to the application's threads, and with a small stack. */
static int relay_start(redis_tls_conn *c)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) {
        return strata_error(STRATA_ENOMEM, "%s: cannot start the TLS relay", c->where);
    }
    (void)pthread_attr_setstacksize(&attr, RELAY_STACK);
    sigset_t block;
    sigset_t old;
    sigemptyset(&block);
    static const int k_async[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE,
                                  SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM};
    for (size_t i = 0; i < sizeof(k_async) / sizeof(k_async[0]); i++) {
        sigaddset(&block, k_async[i]);
    }
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int e = pthread_create(&c->thread, &attr, relay_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        return strata_error(STRATA_ENOMEM, "%s: cannot start the TLS relay: %s", c->where,
                            strerror(e));
    }
    c->started = true;
    return STRATA_OK;
}

int redis_tls_connect(redis_tls *t, const char *host, int port, int timeout_ms,
                      redisContext **ctx_out, redis_tls_conn **conn_out)
{
    *ctx_out = NULL;
    *conn_out = NULL;
    uint64_t deadline = clock_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000000u;
    redis_tls_conn *c = strata_calloc(1, sizeof(*c));
    if (c == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory connecting to redis");
    }
    c->app_fd = -1;
    c->tcp_fd = -1;
    snprintf(c->where, sizeof(c->where), "redis %s:%d", host, port);
    int rc = STRATA_OK;
    int sv[2] = {-1, -1};
    c->tcp_fd = tcp_connect(c->where, host, port, deadline, &rc);
    if (c->tcp_fd < 0) {
        goto fail;
    }
    ERR_clear_error();
    c->ssl = SSL_new(t->ctx);
    BIO *bio = sock_bio_new(c->tcp_fd);
    if (c->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        rc = strata_error(STRATA_ENOMEM, "out of memory connecting to redis");
        goto fail;
    }
    SSL_set_bio(c->ssl, bio, bio); /* the SSL owns the BIO */
    SSL_set_connect_state(c->ssl);
    const char *name = t->server_name != NULL ? t->server_name : host;
    rc = ssl_set_peer_name(c->ssl, c->where, name);
    if (rc == STRATA_OK) {
        rc = handshake(t, c->ssl, c->tcp_fd, c->where, name, deadline);
    }
    if (rc != STRATA_OK) {
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = strata_error_errno("socketpair for the redis TLS relay", c->where);
        goto fail;
    }
    /* The relay's end is non-blocking (it polls); hiredis's stays blocking,
     * as its blocking API and redisSetTimeout expect. */
    if (fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK) != 0) {
        rc = strata_error_errno("fcntl on the redis TLS relay", c->where);
        goto fail;
    }
    c->app_fd = sv[1];
    sv[1] = -1;
    redisContext *ctx = redisConnectFd(sv[0]);
    if (ctx == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory connecting to redis");
        goto fail;
    }
    sv[0] = -1; /* the context owns it: redisFree closes it */
    rc = relay_start(c);
    if (rc != STRATA_OK) {
        redisFree(ctx);
        goto fail;
    }
    *ctx_out = ctx;
    *conn_out = c;
    return STRATA_OK;
fail:
    if (sv[0] >= 0) {
        close(sv[0]);
    }
    if (sv[1] >= 0) {
        close(sv[1]);
    }
    conn_free(c);
    ERR_clear_error();
    return rc;
}
