/*
 * wire.c - the binary field codec of log payloads and snapshots:
 * little-endian fixed-width integers and u32-length-prefixed byte strings.
 * The reader never reads past its buffer: an overrun sets `err` and yields
 * zeros, so decoders read every field and check the error once.
 */
#include <string.h>

#include "core/core.h"

void wire_le32(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)(v >> 16);
    out[3] = (uint8_t)(v >> 24);
}

void wire_le64(uint8_t out[8], uint64_t v)
{
    wire_le32(out, (uint32_t)v);
    wire_le32(out + 4, (uint32_t)(v >> 32));
}

uint32_t wire_rd32(const uint8_t in[4])
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
           (uint32_t)in[3] << 24;
}

uint64_t wire_rd64(const uint8_t in[8])
{
    return (uint64_t)wire_rd32(in) | (uint64_t)wire_rd32(in + 4) << 32;
}

int wire_put_u8(sbuf *b, uint8_t v)
{
    return sbuf_append(b, &v, 1);
}

int wire_put_u32(sbuf *b, uint32_t v)
{
    uint8_t tmp[4];
    wire_le32(tmp, v);
    return sbuf_append(b, tmp, 4);
}

int wire_put_u64(sbuf *b, uint64_t v)
{
    uint8_t tmp[8];
    wire_le64(tmp, v);
    return sbuf_append(b, tmp, 8);
}

int wire_put_i64(sbuf *b, int64_t v)
{
    return wire_put_u64(b, (uint64_t)v);
}

int wire_put_f64(sbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return wire_put_u64(b, u);
}

int wire_put_bytes(sbuf *b, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        return strata_error(STRATA_ETOOBIG, "field of %zu bytes is too big", n);
    }
    int rc = wire_put_u32(b, (uint32_t)n);
    if (rc == STRATA_OK) {
        rc = sbuf_append(b, p, n);
    }
    return rc;
}

int wire_put_str(sbuf *b, const char *s)
{
    return wire_put_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

void wire_reader_init(wire_reader *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = false;
}

/* Pointer to the next n bytes, or NULL (setting err) if fewer remain. */
static const uint8_t *wire_take(wire_reader *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t wire_get_u8(wire_reader *r)
{
    const uint8_t *p = wire_take(r, 1);
    return p ? p[0] : 0;
}

uint32_t wire_get_u32(wire_reader *r)
{
    const uint8_t *p = wire_take(r, 4);
    return p ? wire_rd32(p) : 0;
}

uint64_t wire_get_u64(wire_reader *r)
{
    const uint8_t *p = wire_take(r, 8);
    return p ? wire_rd64(p) : 0;
}

int64_t wire_get_i64(wire_reader *r)
{
    return (int64_t)wire_get_u64(r);
}

double wire_get_f64(wire_reader *r)
{
    uint64_t u = wire_get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

const char *wire_get_bytes(wire_reader *r, size_t *n)
{
    uint32_t len = wire_get_u32(r);
    const uint8_t *p = wire_take(r, len);
    *n = p ? len : 0;
    return (const char *)p;
}

char *wire_get_strdup(wire_reader *r)
{
    size_t n;
    const char *p = wire_get_bytes(r, &n);
    if (p == NULL) {
        return NULL;
    }
    char *s = strata_strndup(p, n);
    if (s == NULL) {
        r->err = true;
    }
    return s;
}

bool wire_done(const wire_reader *r)
{
    return !r->err && r->off == r->len;
}
