/*
 * tls.h - TLS for stratad's HTTP server, on OpenSSL (tls.c).
 *
 *   tls_ctx    one per server: the SSL_CTX with the certificate chain, the
 *              private key, the protocol floor (TLS 1.3, or 1.2 when asked)
 *              and the cipher choice. Immutable once created, shared by every
 *              event loop (OpenSSL makes SSL_CTX use thread-safe).
 *   tls_conn   one per accepted connection: a nonblocking SSL on the socket,
 *              created, used and freed by the loop thread that owns the
 *              connection only, so it needs no lock.
 *
 * Nonblocking contract, shaped on recv/send so http_server.c can treat TLS
 * as one more byte transport: read/write return the bytes moved (> 0), 0 on
 * EOF (read), or -1 with errno set. errno EAGAIN means "call again with the
 * same arguments once the socket is ready in the direction *want says"; TLS
 * can need to write in order to read (handshake, key update) and to read in
 * order to write, which is why the direction is returned, not assumed.
 * Decrypted bytes may stay inside OpenSSL where epoll cannot see them:
 * callers check tls_conn_has_pending() after every read.
 */
#ifndef STRATA_TLS_H
#define STRATA_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/core.h"

typedef enum tls_want {
    TLS_WANT_NONE = 0,
    TLS_WANT_READ,       /* wait until the socket is readable */
    TLS_WANT_WRITE       /* wait until the socket is writable */
} tls_want;

typedef struct tls_options {
    const char *cert_path;   /* PEM: the server certificate, then any intermediates */
    const char *key_path;    /* PEM: its private key (not encrypted) */
    int min_version;         /* 13 (default, also for 0) or 12 */
} tls_options;

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

/* Load the certificate chain and key, check they belong together, set the
 * protocol floor and ciphers. On failure *out is NULL and strata_errmsg()
 * names the file and the reason. */
int tls_ctx_create(const tls_options *opt, tls_ctx **out);
void tls_ctx_free(tls_ctx *t);
/* "TLSv1.3" or "TLSv1.2": the lowest version this context accepts. */
const char *tls_ctx_min_version_name(const tls_ctx *t);

/* A server-side SSL on fd (nonblocking, not owned: the caller closes it).
 * STRATA_ENOMEM on failure. */
int tls_conn_create(tls_ctx *t, int fd, tls_conn **out);
/* Frees the SSL without sending anything; NULL is fine. */
void tls_conn_free(tls_conn *c);

/* Advance the server handshake. Returns 1 once complete, 0 to be called
 * again when the socket is ready in direction *want, or STRATA_EPROTO when
 * it failed for good (strata_errmsg() says why: not TLS, no shared version
 * or cipher, the peer left...). */
int tls_conn_handshake(tls_conn *c, tls_want *want);
/* After the handshake: see the contract at the top. A close_notify from the
 * peer reads as EOF. */
ssize_t tls_conn_read(tls_conn *c, void *buf, size_t n, tls_want *want);
ssize_t tls_conn_write(tls_conn *c, const void *buf, size_t n, tls_want *want);
/* Input already inside OpenSSL (decrypted or not), invisible to epoll. */
bool tls_conn_has_pending(const tls_conn *c);
/* Send our close_notify if the socket takes it now; never waits. */
void tls_conn_shutdown(tls_conn *c);
/* The negotiated protocol ("TLSv1.3"), for diagnostics. */
const char *tls_conn_version(const tls_conn *c);

#endif /* STRATA_TLS_H */
