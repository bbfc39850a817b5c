/*
 * buf.c - sbuf, the bounded growable byte buffer used for responses, log
 * records and snapshots. Growth doubles capacity but never past max, so a
 * hostile peer can make us allocate at most the configured limit.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

void sbuf_init(sbuf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sbuf_free(sbuf *b)
{
    strata_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sbuf_reset(sbuf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

int sbuf_reserve(sbuf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) {
        return strata_error(STRATA_ETOOBIG, "buffer limit of %zu bytes reached", b->max);
    }
    size_t need = b->len + extra + 1; /* + NUL */
    if (need <= b->cap) {
        return STRATA_OK;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > b->max + 1) {
        cap = b->max + 1;
    }
    char *p = strata_realloc(b->data, cap);
    if (p == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    }
    b->data = p;
    b->cap = cap;
    return STRATA_OK;
}

int sbuf_append(sbuf *b, const void *p, size_t n)
{
    int rc = sbuf_reserve(b, n);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return STRATA_OK;
}

int sbuf_puts(sbuf *b, const char *s)
{
    return sbuf_append(b, s, strlen(s));
}

int sbuf_putc(sbuf *b, char c)
{
    if (b->len + 1 < b->cap && b->len < b->max) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return STRATA_OK;
    }
    return sbuf_append(b, &c, 1);
}

int sbuf_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return strata_error(STRATA_EINVAL, "bad format");
    }
    if ((size_t)n < sizeof(small)) {
        return sbuf_append(b, small, (size_t)n);
    }
    int rc = sbuf_reserve(b, (size_t)n);
    if (rc != STRATA_OK) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return STRATA_OK;
}

char *sbuf_take(sbuf *b, size_t *len_out)
{
    char *p = b->data;
    if (p == NULL) {
        p = strata_malloc(1);
        if (p != NULL) {
            p[0] = '\0';
        }
    }
    if (len_out != NULL) {
        *len_out = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
