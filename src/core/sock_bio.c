/*
 * sock_bio.c - the socket BIO of sock_bio.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/sock_bio.h"

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_sock_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(bio_fd(b), buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_read(b);
    }
    return (int)n;
}

static int bio_sock_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_write(b);
    }
    return (int)n;
}

/* Only FLUSH matters to the SSL layer (writes are unbuffered here); every
 * other control is "not supported", which OpenSSL treats as such. */
static long bio_sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *g_method;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void method_create(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "strata socket");
    if (m != NULL && (BIO_meth_set_read(m, bio_sock_read) != 1 ||
                      BIO_meth_set_write(m, bio_sock_write) != 1 ||
                      BIO_meth_set_ctrl(m, bio_sock_ctrl) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    g_method = m;
}

BIO_METHOD *sock_bio_method(void)
{
    pthread_once(&g_once, method_create);
    return g_method;
}

BIO *sock_bio_new(int fd)
{
    BIO_METHOD *m = sock_bio_method();
    BIO *b = m != NULL ? BIO_new(m) : NULL;
    if (b != NULL) {
        BIO_set_data(b, (void *)(intptr_t)fd);
        BIO_set_init(b, 1);
    }
    return b;
}
