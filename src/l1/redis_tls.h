/*
 * redis_tls.h - TLS to Redis under hiredis 0.14, which has none: an
 * in-process relay per connection. The TLS session lives in a small relay
 * thread; hiredis gets the other end of a socketpair through redisConnectFd
 * and keeps speaking plain RESP, so everything above it (pipelining, MULTI,
 * MOVED/ASK, redisSetTimeout) is unchanged.
 *
 *   hiredis (blocking)           relay thread                    Redis
 *   ctx->fd = sv[0] <==unix==> sv[1]  [SSL *] --TLS over TCP--> tls-port
 *                     plain RESP       poll(): copy both ways
 *
 *   redis_tls *t;                            one per connection pool: the
 *   redis_tls_create(&opts, &t);             SSL_CTX (CA, client cert) loaded once
 *   redisContext *ctx; redis_tls_conn *rc;
 *   redis_tls_connect(t, host, port, timeout_ms, &ctx, &rc);
 *       TCP connect + handshake + certificate check happen here, in the
 *       caller's thread, within timeout_ms: a bad CA, a wrong host name, a
 *       refused connection or a plain-text server is this call's error.
 *   ... use ctx as any blocking hiredis context (but not redisEnableKeepAlive:
 *       the relay sets keep-alive on the TCP socket itself) ...
 *   redisFree(ctx); redis_tls_conn_close(rc);   stops and joins the relay
 *   redis_tls_free(t);                           after all its connections
 *
 * When Redis closes the connection or the TLS session fails, the relay ends
 * the socketpair, so hiredis sees an ordinary EOF; redis_tls_conn_error()
 * then says what happened (e.g. a TLS alert "certificate required"), for a
 * clearer message than hiredis's "Server closed the connection".
 *
 * Verification is always on: the server's chain must lead to cacert (or the
 * system store), and its certificate must name server_name (or the host
 * connected to): a DNS name is checked against DNS SANs and sent as SNI; an
 * IP literal is checked against IP SANs (no SNI, as RFC 6066 says). TLS 1.2
 * is the floor; Redis offers 1.3.
 *
 * Thread-safety: a redis_tls may be used from any thread; a redis_tls_conn
 * belongs to whoever owns its hiredis context.
 */
#ifndef STRATA_REDIS_TLS_H
#define STRATA_REDIS_TLS_H

#include <stdbool.h>

#include <hiredis/hiredis.h>

typedef struct redis_tls_options {
    const char *cacert;        /* PEM CA bundle; NULL or "": the system's trust store */
    const char *cert;          /* PEM client certificate chain (tls-auth-clients); NULL: none */
    const char *key;           /* PEM private key of cert, unencrypted; needed with cert */
    const char *server_name;   /* name (or IP) to verify and send as SNI; NULL or "":
                                  the host of each address connected to */
} redis_tls_options;

typedef struct redis_tls redis_tls;
typedef struct redis_tls_conn redis_tls_conn;
struct strata_config;

/* The redis_tls_* settings of a strata_config as options, written to *buf;
 * returns buf, or NULL when cfg->redis_tls is 0 (plain TCP). */
const redis_tls_options *redis_tls_options_from_config(const struct strata_config *cfg,
                                                       redis_tls_options *buf);

/* Load the CA bundle and the client certificate/key. STRATA_EINVAL with a
 * message naming the file when one cannot be used, STRATA_ENOMEM. */
int redis_tls_create(const redis_tls_options *o, redis_tls **out);
void redis_tls_free(redis_tls *t);

/* Connect to host:port, handshake, verify, start the relay and return a
 * blocking hiredis context over it (no socket timeout set yet). Errors, with
 * a message "redis HOST:PORT: ...": STRATA_EINVAL when the certificate does
 * not verify (retrying will not help), STRATA_ETIMEDOUT when the connect or
 * the handshake outlasts timeout_ms, STRATA_EIO otherwise (refused, reset,
 * not a TLS server), STRATA_ENOMEM. */
int redis_tls_connect(redis_tls *t, const char *host, int port, int timeout_ms,
                      redisContext **ctx_out, redis_tls_conn **conn_out);

/* Stop the relay (if still running), join it and free the connection. Its
 * hiredis context may be freed before or after; it sees EOF from now on.
 * NULL is a no-op. */
void redis_tls_conn_close(redis_tls_conn *c);

/* Why the relay ended the connection, or NULL while it is up (or when the
 * application side closed it). Stable once non-NULL. *rc_out (may be NULL):
 * STRATA_EINVAL when the server refused our certificate (or its absence: a
 * TLS 1.3 server says so only after the handshake), else STRATA_EIO. */
const char *redis_tls_conn_error(const redis_tls_conn *c, int *rc_out);

#endif /* STRATA_REDIS_TLS_H */
