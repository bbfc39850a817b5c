/*
 * fuzz_http.c - libFuzzer target for the HTTP request parser (http_parse.c).
 *
 * Input layout: byte 0 picks the limits and the output capacity used for
 * percent-decoding, bytes 1..3 seed the split sizes, the rest is the wire.
 * The wire is fed to http_parse_head() as a growing prefix, in pieces of
 * 1..32 bytes as a socket would deliver it, checking that the stateless
 * parser gives the same answer for every prefix once it has one. The bytes
 * after the head go to http_dechunk() the same way, and the target, query
 * and wire slices go through http_query_param() and http_pct_decode().
 * A broken invariant aborts, so the fuzzer reports it like a crash.
 *
 * Inputs are capped at 32 KiB so the fuzzer looks for bugs, not timeouts.
 * Links with libFuzzer (-fsanitize=fuzzer) or with replay_main.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"

#define FUZZ_MAX_INPUT (32 * 1024)

#define CHECK(c)        \
    do {                \
        if (!(c)) {     \
            abort();    \
        }               \
    } while (0)

/* xorshift32: deterministic split sizes from the input's own bytes. */
static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static int in_buf(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p <= buf + len && n <= (size_t)(buf + len - p);
}

static void check_request(const http_request *req, const char *buf, size_t len, int rc)
{
    CHECK((size_t)rc == req->head_len && req->head_len <= len);
    CHECK(req->method_len > 0 && in_buf(req->method, req->method_len, buf, req->head_len));
    CHECK(req->target_len > 0 && in_buf(req->target, req->target_len, buf, req->head_len));
    CHECK(in_buf(req->path, req->path_len, buf, req->head_len));
    CHECK(req->query == NULL || in_buf(req->query, req->query_len, buf, req->head_len));
    CHECK(req->n_headers <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < req->n_headers; i++) {
        const http_header *h = &req->headers[i];
        CHECK(h->name_len > 0 && in_buf(h->name, h->name_len, buf, req->head_len));
        CHECK(in_buf(h->value, h->value_len, buf, req->head_len));
        CHECK(memchr(h->value, '\n', h->value_len) == NULL);
        CHECK(memchr(h->value, '\0', h->value_len) == NULL);
    }
    CHECK(!(req->chunked && req->content_length >= 0));
}

static void fuzz_decode(const char *src, size_t n, size_t cap)
{
    char *dst = malloc(cap ? cap : 1);
    if (dst == NULL) {
        return;
    }
    long r = http_pct_decode(src, n, dst, cap);
    CHECK(r == -1 || ((size_t)r < cap && r <= (long)n && dst[r] == '\0'));
    static const char *names[] = { "q", "limit", "user_id", "", "a b" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        r = http_query_param(src, n, names[i], dst, cap);
        CHECK(r == -1 || r == -2 || ((size_t)r < cap && dst[r] == '\0'));
    }
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > FUZZ_MAX_INPUT) {
        return 0;
    }
    uint8_t ctl = data[0];
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16;
    size_t len = size - 4;
    /* An exact-size heap copy, so ASan catches a read one past the end. */
    char *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data + 4, len);

    http_limits lim;
    lim.max_header_bytes = (ctl & 1) ? 256 : 8192;
    lim.max_body_bytes = (ctl & 2) ? 64 : 65536;
    size_t dcap = (size_t)(ctl >> 2);   /* 0..63, includes too-small caps */

    http_request req;
    int first = 0;          /* first non-zero answer */
    size_t fed = 0;
    while (fed < len) {
        fed += 1 + next_rand(&seed) % 32;
        if (fed > len) {
            fed = len;
        }
        memset(&req, 0xa5, sizeof(req));
        int rc = http_parse_head(buf, fed, &lim, &req);
        if (first != 0) {
            CHECK(rc == first);   /* stateless: more bytes never change it */
        } else if (rc != 0) {
            first = rc;
        }
        CHECK(rc == 0 || rc > 0 || rc == -400 || rc == -413 || rc == -431 || rc == -501
              || rc == -505);
        if (rc > 0) {
            check_request(&req, buf, fed, rc);
            break;   /* later prefixes give the same head (checked above once) */
        }
        if (rc < 0 && (seed & 7) != 0) {
            break;
        }
    }

    if (first > 0) {
        const http_header *h = http_find_header(&req, "content-length");
        CHECK(h == NULL || req.content_length >= 0 || req.chunked);
        fuzz_decode(req.path, req.path_len, dcap);
        if (req.query != NULL) {
            fuzz_decode(req.query, req.query_len, dcap);
        }

        /* De-chunk what follows the head, growing the prefix as above. */
        char *body = buf + first;
        size_t body_avail = len - (size_t)first;
        char *snap = malloc(body_avail ? body_avail : 1);
        if (snap != NULL) {
            memcpy(snap, body, body_avail);
            size_t bfed = 0;
            while (bfed < body_avail) {
                bfed += 1 + next_rand(&seed) % 32;
                if (bfed > body_avail) {
                    bfed = body_avail;
                }
                size_t blen = (size_t)-1;
                long r = http_dechunk(body, bfed, lim.max_body_bytes, &blen);
                CHECK(r == 0 || r > 0 || r == -400 || r == -413);
                if (r == 0) {
                    /* Incomplete input is left untouched for the next call. */
                    CHECK(blen == (size_t)-1);
                    CHECK(bfed > 4096 || memcmp(body, snap, bfed) == 0);
                    continue;
                }
                if (r > 0) {
                    CHECK((size_t)r <= bfed && blen < (size_t)r
                          && blen <= lim.max_body_bytes);
                }
                break;
            }
            free(snap);
        }
    }

    /* Raw slices of the wire through the decoders too. */
    size_t cut = len ? next_rand(&seed) % (len + 1) : 0;
    fuzz_decode(buf, cut, dcap);
    fuzz_decode(buf + cut, len - cut, 64);
    free(buf);
    return 0;
}
