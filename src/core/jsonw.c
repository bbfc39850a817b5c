/*
 * jsonw.c - writing JSON straight into an sbuf. Responses are built this way
 * rather than as a jansson tree that is then printed: one pass, no per-node
 * allocation (PERFORMANCE.md, "Build JSON responses into a reusable buffer").
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int json_put_str(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX: reserve once, then write freely. */
    if (n > (b->max / 6) + 2) {
        int rc = sbuf_reserve(b, n + 2);
        if (rc != STRATA_OK) {
            return rc;
        }
    } else {
        int rc = sbuf_reserve(b, n * 6 + 2);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    int rc = sbuf_putc(b, '"');
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n && rc == STRATA_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        rc = sbuf_append(b, s + run, i - run);
        if (rc != STRATA_OK) {
            break;
        }
        run = i + 1;
        char esc[7] = {'\\', 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        rc = sbuf_append(b, esc, elen);
    }
    if (rc == STRATA_OK) {
        rc = sbuf_append(b, s + run, n - run);
    }
    if (rc == STRATA_OK) {
        rc = sbuf_putc(b, '"');
    }
    return rc;
}

int json_put_cstr(sbuf *b, const char *s)
{
    return json_put_str(b, s ? s : "", s ? strlen(s) : 0);
}

int json_put_i64(sbuf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    return sbuf_append(b, tmp, (size_t)n);
}

int json_put_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    return sbuf_append(b, tmp, (size_t)n);
}

int json_put_double(sbuf *b, double v)
{
    if (!isfinite(v)) {
        return sbuf_append(b, "null", 4);
    }
    char tmp[40];
    /* %.17g round-trips; try shorter first for readable output. */
    int n = snprintf(tmp, sizeof(tmp), "%.6g", v);
    if (strtod(tmp, NULL) != v) {
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    }
    /* Keep it a JSON number that parses back as a real when integral. */
    if (strpbrk(tmp, ".eEn") == NULL && n < (int)sizeof(tmp) - 2) {
        tmp[n++] = '.';
        tmp[n++] = '0';
        tmp[n] = '\0';
    }
    return sbuf_append(b, tmp, (size_t)n);
}
