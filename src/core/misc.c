/*
 * misc.c - small helpers with no better home: random bytes from the kernel,
 * hex encoding.
 */
#include <errno.h>
#include <sys/random.h>

#include "core/core.h"

int random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return strata_error_errno("getrandom", NULL);
        }
        p += got;
        n -= (size_t)got;
    }
    return STRATA_OK;
}

void hex_encode(char *out, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[s[i] >> 4];
        out[2 * i + 1] = hex[s[i] & 15];
    }
    out[2 * n] = '\0';
}
