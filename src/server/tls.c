/*
 * tls.c - the OpenSSL side of stratad's HTTPS (the contract is in tls.h).
 *
 *   tls_ctx { SSL_CTX *ctx; BIO_METHOD *bio_method; min_version }
 *   tls_conn { SSL *ssl -> BIO (bio_method, fd); failed }
 *
 * Choices, and why:
 *   - TLS 1.3 is the floor; 1.2 only when configured (--tls-min-version 1.2),
 *     then with ECDHE key exchange and AEAD ciphers only, so every session
 *     has forward secrecy. Renegotiation is off (1.2 only; 1.3 has none).
 *   - Our own socket BIO (recv / send with MSG_NOSIGNAL) instead of
 *     BIO_s_socket, whose write(2) raises SIGPIPE when a peer resets the
 *     connection; the HTTP server is a library and must not rely on its host
 *     ignoring that signal.
 *   - SSL_MODE_ENABLE_PARTIAL_WRITE: a large body goes out record by record
 *     and each one counts as progress for the write timeout.
 *     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: the caller may rebuild its output
 *     (e.g. copy head + body into one record) between retries, as long as
 *     the bytes are the same. SSL_MODE_RELEASE_BUFFERS: an idle keep-alive
 *     connection does not hold 2 x 16 KiB of record buffers.
 *   - An encrypted private key is refused at start-up rather than asking for
 *     a pass phrase on the terminal of a daemon.
 *   - ALPN: "http/1.1" is selected when offered; a client offering only h2
 *     gets no ALPN answer and may fall back.
 *   - SSL_OP_IGNORE_UNEXPECTED_EOF: many clients close without close_notify;
 *     that is an ordinary end of a keep-alive connection for us (responses
 *     carry Content-Length, so truncation is detectable by the client).
 *
 * OpenSSL keeps its errors in a per-thread queue that SSL_get_error() reads,
 * so every SSL call here starts with ERR_clear_error(): a stale error left by
 * another connection of the same loop thread would otherwise be blamed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/sock_bio.h"
#include "server/tls.h"

struct tls_ctx {
    SSL_CTX *ctx;
    BIO_METHOD *bio_method;      /* shared by every connection's BIO */
    int min_version;             /* TLS1_3_VERSION or TLS1_2_VERSION */
};

struct tls_conn {
    SSL *ssl;
    bool failed;                 /* fatal error seen: no close_notify may follow */
};

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* ---- context ---------------------------------------------------------- */

/* The reason of the first queued OpenSSL error, the specific one ("no start
 * line"), not the wrappers added as it travelled up ("PEM lib"). */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown OpenSSL error";
}

/* Refuse pass-phrase prompts: see the top comment. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char k_http11[] = "\x08http/1.1";
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, k_http11, sizeof(k_http11) - 1, in, inlen)
        != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Open and read a byte first, so a missing or unreadable file (or a
 * directory) gets errno's words rather than OpenSSL's. */
static int check_readable(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    int err = f == NULL ? errno : 0;
    if (f != NULL && fgetc(f) == EOF && ferror(f)) {
        err = errno;
    }
    if (f != NULL) {
        fclose(f);
    }
    if (err != 0) {
        return strata_error(STRATA_EINVAL, "cannot read TLS %s %s: %s", what, path,
                            strerror(err));
    }
    return STRATA_OK;
}

static int load_credentials(SSL_CTX *ctx, const tls_options *opt)
{
    int rc = check_readable("certificate", opt->cert_path);
    if (rc == STRATA_OK) {
        rc = check_readable("private key", opt->key_path);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, opt->cert_path) != 1) {
        return strata_error(STRATA_EINVAL, "TLS certificate %s: not a usable PEM certificate "
                            "chain (%s)", opt->cert_path, ossl_reason());
    }
    ERR_clear_error();
    if (SSL_CTX_use_PrivateKey_file(ctx, opt->key_path, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH
            || ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            return strata_error(STRATA_EINVAL, "TLS private key %s does not match the "
                                "certificate %s", opt->key_path, opt->cert_path);
        }
        return strata_error(STRATA_EINVAL, "TLS private key %s: not a usable unencrypted PEM "
                            "key (%s)", opt->key_path, ossl_reason());
    }
    ERR_clear_error();
    if (SSL_CTX_check_private_key(ctx) != 1) {
        return strata_error(STRATA_EINVAL, "TLS private key %s does not match the "
                            "certificate %s", opt->key_path, opt->cert_path);
    }
    return STRATA_OK;
}

static int configure(tls_ctx *t, const tls_options *opt)
{
    SSL_CTX *ctx = t->ctx;
    uint64_t ops = SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                   SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_COMPRESSION;
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    ops |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
    SSL_CTX_set_options(ctx, ops);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    static const unsigned char k_sid_ctx[] = "stratad";
    if (SSL_CTX_set_min_proto_version(ctx, t->min_version) != 1
        || SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1
        || SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1
        || SSL_CTX_set_session_id_context(ctx, k_sid_ctx, sizeof(k_sid_ctx) - 1) != 1) {
        return strata_error(STRATA_EINVAL, "TLS setup failed: %s", ossl_reason());
    }
    return load_credentials(ctx, opt);
}

int tls_ctx_create(const tls_options *opt, tls_ctx **out)
{
    *out = NULL;
    if (opt == NULL || opt->cert_path == NULL || opt->key_path == NULL) {
        return strata_error(STRATA_EINVAL, "TLS needs both a certificate and a private key");
    }
    if (opt->min_version != 0 && opt->min_version != 12 && opt->min_version != 13) {
        return strata_error(STRATA_EINVAL, "TLS minimum version must be 1.2 or 1.3");
    }
    tls_ctx *t = strata_calloc(1, sizeof(*t));
    if (t == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory setting up TLS");
    }
    t->min_version = opt->min_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_server_method());
    t->bio_method = sock_bio_method(); /* process-wide, not freed */
    int rc = STRATA_OK;
    if (t->ctx == NULL || t->bio_method == NULL) {
        rc = strata_error(STRATA_ENOMEM, "TLS setup failed: %s", ossl_reason());
    } else {
        rc = configure(t, opt);
    }
    ERR_clear_error();
    if (rc != STRATA_OK) {
        tls_ctx_free(t);
        return rc;
    }
    *out = t;
    return STRATA_OK;
}

void tls_ctx_free(tls_ctx *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    strata_free(t);
}

const char *tls_ctx_min_version_name(const tls_ctx *t)
{
    return t->min_version == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3";
}

/* ---- connections ------------------------------------------------------- */

int tls_conn_create(tls_ctx *t, int fd, tls_conn **out)
{
    *out = NULL;
    tls_conn *c = strata_calloc(1, sizeof(*c));
    if (c == NULL) {
        return STRATA_ENOMEM;
    }
    ERR_clear_error();
    c->ssl = SSL_new(t->ctx);
    BIO *bio = sock_bio_new(fd);
    if (c->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        tls_conn_free(c);
        ERR_clear_error();
        return STRATA_ENOMEM;
    }
    SSL_set_bio(c->ssl, bio, bio);   /* the SSL owns the one reference */
    SSL_set_accept_state(c->ssl);
    *out = c;
    return STRATA_OK;
}

void tls_conn_free(tls_conn *c)
{
    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl);
    strata_free(c);
}

/* Map a failed SSL call to the recv/send contract. EOF is 0 for a read;
 * errno is EAGAIN (with *want), ECONNRESET, EPIPE or EPROTO otherwise. */
static ssize_t map_failure(tls_conn *c, int ret, bool reading, tls_want *want)
{
    int saved = errno;
    int err = SSL_get_error(c->ssl, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        *want = TLS_WANT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = TLS_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        if (reading) {
            return 0;
        }
        errno = EPIPE;
        return -1;
    case SSL_ERROR_SYSCALL:
        c->failed = true;
        if (saved == 0 && reading) {
            return 0;   /* EOF without close_notify */
        }
        errno = saved != 0 ? saved : EPIPE;
        return -1;
    default:
        c->failed = true;
        slog(SLOG_DEBUG, "tls: %s failed: %s", reading ? "read" : "write", ossl_reason());
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

int tls_conn_handshake(tls_conn *c, tls_want *want)
{
    *want = TLS_WANT_NONE;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        return 1;
    }
    int saved = errno;
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        *want = err == SSL_ERROR_WANT_READ ? TLS_WANT_READ : TLS_WANT_WRITE;
        return 0;
    }
    c->failed = true;
    const char *why = "the peer closed the connection";
    if (err == SSL_ERROR_SSL) {
        why = ossl_reason();
    } else if (err == SSL_ERROR_SYSCALL && saved != 0) {
        why = strerror(saved);
    }
    int rc = strata_error(STRATA_EPROTO, "TLS handshake failed: %s", why);
    ERR_clear_error();
    return rc;
}

ssize_t tls_conn_read(tls_conn *c, void *buf, size_t n, tls_want *want)
{
    *want = TLS_WANT_NONE;
    if (n > INT32_MAX) {
        n = INT32_MAX;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(c->ssl, buf, (int)n);
    if (r > 0) {
        return r;
    }
    return map_failure(c, r, true, want);
}

ssize_t tls_conn_write(tls_conn *c, const void *buf, size_t n, tls_want *want)
{
    *want = TLS_WANT_NONE;
    if (n > INT32_MAX) {
        n = INT32_MAX;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(c->ssl, buf, (int)n);
    if (r > 0) {
        return r;
    }
    return map_failure(c, r, false, want);
}

bool tls_conn_has_pending(const tls_conn *c)
{
    return SSL_has_pending(c->ssl) == 1;
}

void tls_conn_shutdown(tls_conn *c)
{
    if (c->failed || !SSL_is_init_finished(c->ssl)) {
        return;   /* OpenSSL forbids close_notify after a fatal error */
    }
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
}

const char *tls_conn_version(const tls_conn *c)
{
    return SSL_get_version(c->ssl);
}
