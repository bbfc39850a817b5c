/*
 * sock_bio.h - an OpenSSL BIO over a socket fd that sends with MSG_NOSIGNAL,
 * so a peer that resets the connection never raises SIGPIPE: shared by the
 * HTTPS server (src/server/tls.c) and the TLS relay to Redis
 * (src/l1/redis_tls.c). EAGAIN/EINTR become "retry" for OpenSSL.
 */
#ifndef STRATA_SOCK_BIO_H
#define STRATA_SOCK_BIO_H

#include <openssl/bio.h>

/* The process-wide method (made once, never freed); NULL if OpenSSL is out of
 * memory. */
BIO_METHOD *sock_bio_method(void);
/* A BIO reading and writing fd (not closing it); NULL on failure. */
BIO *sock_bio_new(int fd);

#endif /* STRATA_SOCK_BIO_H */
