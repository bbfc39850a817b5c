/*
 * test_http_parse.c - the HTTP/1.1 request parser (http_parse.c): heads,
 * incremental and pipelined input, limits, framing conflicts, chunked
 * bodies, percent-decoding and query parameters.
 */
#include <string.h>

#include "server/http.h"
#include "test.h"

static const http_limits k_lim = { 4096, 65536 };

static int parse(const char *s, http_request *req)
{
    memset(req, 0, sizeof(*req));
    return http_parse_head(s, strlen(s), &k_lim, req);
}

static int span_eq(const char *p, size_t n, const char *s)
{
    return p != NULL && strlen(s) == n && memcmp(p, s, n) == 0;
}

TEST(simple_get)
{
    const char *s = "GET /v1/x?y=1&z=2 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n";
    http_request req;
    int rc = parse(s, &req);
    ASSERT_EQ(rc, (int)strlen(s));
    ASSERT_TRUE(span_eq(req.method, req.method_len, "GET"));
    ASSERT_TRUE(span_eq(req.target, req.target_len, "/v1/x?y=1&z=2"));
    ASSERT_TRUE(span_eq(req.path, req.path_len, "/v1/x"));
    ASSERT_TRUE(span_eq(req.query, req.query_len, "y=1&z=2"));
    ASSERT_EQ(req.minor_version, 1);
    ASSERT_EQ(req.n_headers, 2);
    ASSERT_EQ(req.head_len, strlen(s));
    ASSERT_EQ(req.content_length, -1);
    ASSERT_TRUE(!req.chunked);
    ASSERT_TRUE(req.keep_alive);
    ASSERT_TRUE(!req.expect_continue);
    ASSERT_TRUE(span_eq(req.headers[1].value, req.headers[1].value_len, "t"));
}

TEST(no_query_and_bare_lf)
{
    const char *s = "DELETE /a/b HTTP/1.1\nX-A:   spaced value \t\n\n";
    http_request req;
    ASSERT_EQ(parse(s, &req), (int)strlen(s));
    ASSERT_TRUE(req.query == NULL);
    ASSERT_TRUE(span_eq(req.path, req.path_len, "/a/b"));
    ASSERT_TRUE(span_eq(req.headers[0].value, req.headers[0].value_len, "spaced value"));
}

TEST(leading_blank_lines_skipped)
{
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    http_request req;
    ASSERT_EQ(parse(s, &req), (int)strlen(s));
    ASSERT_TRUE(span_eq(req.method, req.method_len, "GET"));
    ASSERT_EQ(parse("\r\n\r\n", &req), 0);
}

TEST(post_with_body_length)
{
    const char *s = "POST /v1/mem HTTP/1.1\r\nContent-Length: 11\r\n"
                    "Content-Type: application/json\r\n\r\n{\"a\":\"bcd\"}";
    http_request req;
    int rc = parse(s, &req);
    ASSERT_EQ(rc, (int)(strlen(s) - 11));
    ASSERT_EQ(req.content_length, 11);
    ASSERT_TRUE(memcmp(s + rc, "{\"a\":\"bcd\"}", 11) == 0);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &req) > 0, 1);
    ASSERT_EQ(req.content_length, 0);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n", &req) > 0, 1);
    ASSERT_EQ(req.content_length, 7);
}

TEST(header_lookup_case_insensitive)
{
    const char *s = "GET / HTTP/1.1\r\nX-Tenant-ID: t1\r\ncontent-type: text/plain\r\n"
                    "AUTHORIZATION: Bearer k\r\n\r\n";
    http_request req;
    ASSERT_TRUE(parse(s, &req) > 0);
    const http_header *h = http_find_header(&req, "x-tenant-id");
    ASSERT_TRUE(h != NULL);
    ASSERT_TRUE(span_eq(h->value, h->value_len, "t1"));
    h = http_find_header(&req, "Content-Type");
    ASSERT_TRUE(h != NULL && span_eq(h->value, h->value_len, "text/plain"));
    h = http_find_header(&req, "Authorization");
    ASSERT_TRUE(h != NULL && span_eq(h->value, h->value_len, "Bearer k"));
    ASSERT_TRUE(http_find_header(&req, "X-Tenant") == NULL);
    ASSERT_TRUE(http_find_header(&req, "Cookie") == NULL);
}

TEST(keep_alive_rules)
{
    http_request req;
    ASSERT_TRUE(parse("GET / HTTP/1.1\r\n\r\n", &req) > 0);
    ASSERT_TRUE(req.keep_alive);
    ASSERT_TRUE(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", &req) > 0);
    ASSERT_TRUE(!req.keep_alive);
    ASSERT_TRUE(parse("GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n", &req) > 0);
    ASSERT_TRUE(!req.keep_alive);
    ASSERT_TRUE(parse("GET / HTTP/1.0\r\n\r\n", &req) > 0);
    ASSERT_EQ(req.minor_version, 0);
    ASSERT_TRUE(!req.keep_alive);
    ASSERT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req) > 0);
    ASSERT_TRUE(req.keep_alive);
}

TEST(expect_continue)
{
    http_request req;
    ASSERT_TRUE(parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
                      &req) > 0);
    ASSERT_TRUE(req.expect_continue);
    /* Ignored from HTTP/1.0 (RFC 9110 10.1.1). */
    ASSERT_TRUE(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
                      &req) > 0);
    ASSERT_TRUE(!req.expect_continue);
}

TEST(incremental_one_byte_at_a_time)
{
    const char *s = "PUT /k/%20x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi";
    size_t head = strlen(s) - 2;
    http_request req;
    for (size_t n = 0; n < head; n++) {
        memset(&req, 0, sizeof(req));
        ASSERT_EQ(http_parse_head(s, n, &k_lim, &req), 0);
    }
    for (size_t n = head; n <= strlen(s); n++) {
        ASSERT_EQ(http_parse_head(s, n, &k_lim, &req), (int)head);
    }
    ASSERT_TRUE(span_eq(req.path, req.path_len, "/k/%20x"));
}

TEST(pipelined)
{
    const char *s = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                    "GET /c HTTP/1.1\r\n\r\n";
    size_t len = strlen(s);
    size_t off = 0;
    const char *paths[] = { "/a", "/b", "/c" };
    for (int i = 0; i < 3; i++) {
        http_request req;
        int rc = http_parse_head(s + off, len - off, &k_lim, &req);
        ASSERT_TRUE(rc > 0);
        ASSERT_TRUE(span_eq(req.path, req.path_len, paths[i]));
        off += (size_t)rc + (req.content_length > 0 ? (size_t)req.content_length : 0);
    }
    ASSERT_EQ(off, len);
}

TEST(bad_request_lines)
{
    static const char *bad[] = {
        "GET  / HTTP/1.1\r\n\r\n",             /* double space */
        "GET /\r\n\r\n",                       /* HTTP/0.9 */
        "G(T / HTTP/1.1\r\n\r\n",              /* not a token */
        " GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.x\r\n\r\n",
        "GET / HTTP/11\r\n\r\n",
        "GET / HTTP/1.1\rX\r\n\r\n",           /* bare CR */
        "GET /a\x01 HTTP/1.1\r\n\r\n",         /* control char in target */
        "GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        "GET / HTTP/1.1\r\nName : v\r\n\r\n",  /* space before colon */
        "GET / HTTP/1.1\r\n: v\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",   /* obs-fold */
        "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n",  /* obs-fold */
        "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(bad); i++) {
        http_request req;
        int rc = parse(bad[i], &req);
        if (rc != -400) {
            fprintf(stderr, "  case %zu\n", i);
        }
        ASSERT_EQ(rc, -400);
    }
    /* NUL inside a header value (strlen would stop at it). */
    const char nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    http_request req;
    ASSERT_EQ(http_parse_head(nul, sizeof(nul) - 1, &k_lim, &req), -400);
    ASSERT_EQ(parse("GET / HTTP/2.0\r\n\r\n", &req), -505);
    ASSERT_EQ(parse("GET / HTTP/0.9\r\n\r\n", &req), -505);
}

TEST(header_too_large_431)
{
    char big[6000];
    http_request req;
    /* Incomplete but already over the limit. */
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    ASSERT_EQ(http_parse_head(big, sizeof(big), &k_lim, &req), -431);
    ASSERT_EQ(http_parse_head(big, 4096, &k_lim, &req), 0);
    ASSERT_EQ(http_parse_head(big, 4097, &k_lim, &req), -431);
    /* Complete but over the limit. */
    memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
    ASSERT_EQ(http_parse_head(big, sizeof(big), &k_lim, &req), -431);
    /* Too many fields. */
    char many[4000];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++) {
        n += (size_t)snprintf(many + n, sizeof(many) - n, "H%d: v\r\n", i);
    }
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    ASSERT_EQ(http_parse_head(many, n, &k_lim, &req), -431);
}

TEST(body_too_large_413)
{
    http_request req;
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", &req), -413);
    ASSERT_TRUE(parse("POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n", &req) > 0);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                    &req), -413);
}

TEST(content_length_conflicts)
{
    http_request req;
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &req),
              -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &req),
              -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n", &req), -400);
    /* A conflict is reported even when the length is also too large. */
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 9999999\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &req), -501);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &req),
              -501);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n", &req), -400);
    ASSERT_EQ(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &req), -400);
    ASSERT_TRUE(parse("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &req) > 0);
    ASSERT_TRUE(req.chunked);
    ASSERT_EQ(req.content_length, -1);
}

static long dechunk_str(const char *s, char *buf, size_t cap, size_t max, size_t *out)
{
    size_t n = strlen(s);
    if (n > cap) {
        return -9999;
    }
    memcpy(buf, s, n);
    return http_dechunk(buf, n, max, out);
}

TEST(chunked_decoding)
{
    char buf[256];
    size_t blen = 0;
    const char *s = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nGET /next";
    long rc = dechunk_str(s, buf, sizeof(buf), 1000, &blen);
    ASSERT_EQ(rc, (long)(strlen(s) - 9));
    ASSERT_EQ(blen, 12);
    ASSERT_TRUE(memcmp(buf, "hello, world", 12) == 0);
    ASSERT_TRUE(memcmp(buf + rc, "GET /next", 9) == 0);

    /* Trailers, uppercase hex, bare LF line ends. */
    s = "A\nabcdefghij\n0\nX-Trailer: 1\n\n";
    rc = dechunk_str(s, buf, sizeof(buf), 1000, &blen);
    ASSERT_EQ(rc, (long)strlen(s));
    ASSERT_EQ(blen, 10);
    ASSERT_TRUE(memcmp(buf, "abcdefghij", 10) == 0);

    /* Empty body. */
    rc = dechunk_str("0\r\n\r\n", buf, sizeof(buf), 1000, &blen);
    ASSERT_EQ(rc, 5);
    ASSERT_EQ(blen, 0);
}

TEST(chunked_split_input)
{
    const char *s = "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: x\r\n\r\n";
    size_t n = strlen(s);
    char buf[256];
    /* Every proper prefix is incomplete and leaves the buffer untouched. */
    for (size_t k = 0; k < n; k++) {
        memcpy(buf, s, n);
        size_t blen = 12345;
        ASSERT_EQ(http_dechunk(buf, k, 1000, &blen), 0);
        ASSERT_EQ(blen, 12345);
        ASSERT_TRUE(memcmp(buf, s, n) == 0);
    }
    size_t blen = 0;
    memcpy(buf, s, n);
    ASSERT_EQ(http_dechunk(buf, n, 1000, &blen), (long)n);
    ASSERT_EQ(blen, 19);
    ASSERT_TRUE(memcmp(buf, "abc0123456789abcdef", 19) == 0);
}

TEST(chunked_malformed)
{
    static const char *bad[] = {
        "x\r\nabc\r\n0\r\n\r\n",          /* not hex */
        "\r\nabc\r\n0\r\n\r\n",           /* no size */
        "3\r\nabcd\r\n0\r\n\r\n",         /* data longer than size */
        "3\r\nabc0\r\n\r\n",              /* missing CRLF after data */
        "3\rabc\r\n0\r\n\r\n",            /* bare CR */
        "-3\r\nabc\r\n0\r\n\r\n",
        "3\r\nabc\r\n0\r\nT\x01: x\r\n\r\n",  /* control char in trailer */
        "3;\x01\r\nabc\r\n0\r\n\r\n",     /* control char in extension */
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(bad); i++) {
        char buf[64];
        size_t blen = 0;
        long rc = dechunk_str(bad[i], buf, sizeof(buf), 1000, &blen);
        if (rc != -400) {
            fprintf(stderr, "  case %zu\n", i);
        }
        ASSERT_EQ(rc, -400);
    }
    char buf[64];
    size_t blen = 0;
    ASSERT_EQ(dechunk_str("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", buf, sizeof(buf), 9, &blen),
              -413);
    ASSERT_EQ(dechunk_str("ffffffffffffffffffffffff\r\n", buf, sizeof(buf), 1000, &blen), -413);
    /* The 413 is seen before the data arrives. */
    ASSERT_EQ(dechunk_str("100000\r\n", buf, sizeof(buf), 1000, &blen), -413);
}

TEST(pct_decode)
{
    char out[32];
    ASSERT_EQ(http_pct_decode("a%20b%2Fc", 9, out, sizeof(out)), 5);
    ASSERT_STREQ(out, "a b/c");
    ASSERT_EQ(http_pct_decode("%e2%82%AC", 9, out, sizeof(out)), 3);
    ASSERT_STREQ(out, "\xe2\x82\xac");
    ASSERT_EQ(http_pct_decode("a+b", 3, out, sizeof(out)), 3);
    ASSERT_STREQ(out, "a+b");   /* '+' is literal outside query strings */
    ASSERT_EQ(http_pct_decode("", 0, out, sizeof(out)), 0);
    ASSERT_STREQ(out, "");
    ASSERT_EQ(http_pct_decode("%", 1, out, sizeof(out)), -1);
    ASSERT_EQ(http_pct_decode("%2", 2, out, sizeof(out)), -1);
    ASSERT_EQ(http_pct_decode("%zz", 3, out, sizeof(out)), -1);
    ASSERT_EQ(http_pct_decode("%g0", 3, out, sizeof(out)), -1);
    ASSERT_EQ(http_pct_decode("a%00b", 5, out, sizeof(out)), -1);
    ASSERT_EQ(http_pct_decode("abcd", 4, out, 4), -1);   /* no room for the NUL */
    ASSERT_EQ(http_pct_decode("abcd", 4, out, 5), 4);
    ASSERT_EQ(http_pct_decode("abcd", 4, out, 0), -1);
}

TEST(query_params)
{
    const char *q = "limit=10&user=al%20ice&empty=&flag&q=a+b%2Bc&limit=99&bad=%zz";
    size_t n = strlen(q);
    char out[16];
    ASSERT_EQ(http_query_param(q, n, "limit", out, sizeof(out)), 2);
    ASSERT_STREQ(out, "10");   /* first one wins */
    ASSERT_EQ(http_query_param(q, n, "user", out, sizeof(out)), 6);
    ASSERT_STREQ(out, "al ice");
    ASSERT_EQ(http_query_param(q, n, "empty", out, sizeof(out)), 0);
    ASSERT_STREQ(out, "");
    ASSERT_EQ(http_query_param(q, n, "flag", out, sizeof(out)), 0);
    ASSERT_EQ(http_query_param(q, n, "q", out, sizeof(out)), 5);
    ASSERT_STREQ(out, "a b+c");
    ASSERT_EQ(http_query_param(q, n, "missing", out, sizeof(out)), -1);
    ASSERT_EQ(http_query_param(q, n, "lim", out, sizeof(out)), -1);
    ASSERT_EQ(http_query_param(q, n, "bad", out, sizeof(out)), -2);
    ASSERT_EQ(http_query_param(q, n, "user", out, 4), -2);   /* too long */
    ASSERT_EQ(http_query_param(NULL, 0, "x", out, sizeof(out)), -1);
    ASSERT_EQ(http_query_param("a%62c=1", 7, "abc", out, sizeof(out)), 1);  /* encoded key */
    /* query_len bounds the search: no reading past it. */
    ASSERT_EQ(http_query_param("a=1&b=2", 3, "b", out, sizeof(out)), -1);
}

TEST(status_text)
{
    ASSERT_STREQ(http_status_text(200), "OK");
    ASSERT_STREQ(http_status_text(404), "Not Found");
    ASSERT_STREQ(http_status_text(431), "Request Header Fields Too Large");
    ASSERT_STREQ(http_status_text(799), "Unknown");
}

TEST_MAIN(TEST_ENTRY(simple_get), TEST_ENTRY(no_query_and_bare_lf),
          TEST_ENTRY(leading_blank_lines_skipped), TEST_ENTRY(post_with_body_length),
          TEST_ENTRY(header_lookup_case_insensitive), TEST_ENTRY(keep_alive_rules),
          TEST_ENTRY(expect_continue), TEST_ENTRY(incremental_one_byte_at_a_time),
          TEST_ENTRY(pipelined), TEST_ENTRY(bad_request_lines),
          TEST_ENTRY(header_too_large_431), TEST_ENTRY(body_too_large_413),
          TEST_ENTRY(content_length_conflicts), TEST_ENTRY(chunked_decoding),
          TEST_ENTRY(chunked_split_input), TEST_ENTRY(chunked_malformed),
          TEST_ENTRY(pct_decode), TEST_ENTRY(query_params), TEST_ENTRY(status_text))
