/*
 * http_parse.c - the HTTP/1.1 request parser: request line and headers parsed
 * in place, chunked bodies de-chunked in place, percent-decoding and query
 * parameters. No allocation, no copies of header names or values: every
 * pointer handed out points into the caller's buffer.
 *
 * The parser is stateless. http_parse_head() is called again with the whole
 * buffer when more bytes arrive; it first looks for the blank line that ends
 * the head and only then parses, so an incomplete head costs one memchr pass.
 * (The server avoids even that by scanning only new bytes before calling.)
 *
 *     buf: [CRLF*] METHOD SP target SP HTTP/1.x CRLF
 *                  (name ":" OWS value OWS CRLF)*
 *                  CRLF                          <- head_len ends here
 *                  body (Content-Length bytes, or chunked)
 *
 * Strictness, and why:
 *  - Bare LF is accepted as a line end (RFC 9112 2.2 allows it, and old
 *    scripts send it); a CR not followed by LF is an error.
 *  - Control characters (NUL included) in a header value, a space before the
 *    colon, obs-fold (a continuation line), a second Content-Length, a
 *    Content-Length that is not all digits, and Content-Length together with
 *    Transfer-Encoding are 400: each is a classic request-smuggling vector
 *    when a proxy in front of us reads the message differently.
 *  - Transfer codings other than "chunked" are 501; HTTP/1.0 with
 *    Transfer-Encoding is 400 (RFC 9112 6.1: the framing is faulty).
 *  - Host is not required: internal clients and test scripts omit it and we
 *    do no virtual hosting, so rejecting it would only break callers.
 *
 * Thread-safety: all functions are pure; they touch only their arguments.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "server/http.h"

#define HTTP_DEFAULT_MAX_HEADER (16u * 1024u)
#define HTTP_DEFAULT_MAX_BODY (1024u * 1024u)

/* ---- character classes ---------------------------------------------- */

/* tchar (RFC 9110 5.6.2): the characters of a method or header name. */
static const unsigned char k_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
    ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static int is_tchar(unsigned char c)
{
    return k_tchar[c];
}

/* A byte allowed in a request-target: visible ASCII or obs-text, no blanks. */
static int is_target_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

/* A byte allowed in a header value or chunk extension: VCHAR, SP, HTAB,
 * obs-text. CR and LF end the line and are handled by the caller. */
static int is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Case-insensitive compare of n bytes of s against a lowercase literal. */
static int eq_nocase(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n == m && strncasecmp(s, lit, m) == 0;
}

/* ---- head ----------------------------------------------------------- */

/* Index just past the blank line that ends the head, searching buf[from..len),
 * or 0 when it is not there yet. Accepts CRLF CRLF, LF LF and mixtures. */
static size_t find_head_end(const char *buf, size_t from, size_t len)
{
    size_t i = from;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (nl == NULL) {
            return 0;
        }
        i = (size_t)(nl - buf) + 1;
        if (i < len && buf[i] == '\n') {
            return i + 1;
        }
        if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') {
            return i + 2;
        }
    }
    return 0;
}

/* Consume a line end at *p (CRLF or LF) within end. Returns 0 on success. */
static int eat_eol(const char *buf, size_t *p, size_t end)
{
    if (*p < end && buf[*p] == '\n') {
        *p += 1;
        return 0;
    }
    if (*p + 1 < end && buf[*p] == '\r' && buf[*p + 1] == '\n') {
        *p += 2;
        return 0;
    }
    return -1;
}

/* Parse "METHOD SP target SP HTTP/1.x" + EOL at buf[*p..end). Returns 0,
 * -400 or -505; on success *p is the start of the first header line. */
static int parse_request_line(const char *buf, size_t *p, size_t end, http_request *req)
{
    size_t i = *p;
    size_t start = i;
    while (i < end && is_tchar((unsigned char)buf[i])) {
        i++;
    }
    if (i == start || i >= end || buf[i] != ' ') {
        return -400;
    }
    req->method = buf + start;
    req->method_len = i - start;
    i++;

    start = i;
    while (i < end && is_target_char((unsigned char)buf[i])) {
        i++;
    }
    if (i == start || i >= end || buf[i] != ' ') {
        return -400;
    }
    req->target = buf + start;
    req->target_len = i - start;
    const char *q = memchr(req->target, '?', req->target_len);
    if (q != NULL) {
        req->path = req->target;
        req->path_len = (size_t)(q - req->target);
        req->query = q + 1;
        req->query_len = req->target_len - req->path_len - 1;
    } else {
        req->path = req->target;
        req->path_len = req->target_len;
        req->query = NULL;
        req->query_len = 0;
    }
    i++;

    /* "HTTP/" DIGIT "." DIGIT: anything else is malformed, a major version
     * other than 1 is well-formed but not ours (505). */
    if (end - i < 8 || memcmp(buf + i, "HTTP/", 5) != 0) {
        return -400;
    }
    unsigned char major = (unsigned char)buf[i + 5];
    unsigned char minor = (unsigned char)buf[i + 7];
    if (major < '0' || major > '9' || buf[i + 6] != '.' || minor < '0' || minor > '9') {
        return -400;
    }
    i += 8;
    if (eat_eol(buf, &i, end) != 0) {
        return -400;
    }
    if (major != '1') {
        return -505;
    }
    req->minor_version = minor - '0';
    *p = i;
    return 0;
}

/* What the framing headers said, gathered while parsing and judged at the
 * end so a conflict (400) wins over a size limit (413). */
typedef struct head_flags {
    int n_cl;              /* Content-Length headers seen */
    int cl_bad;            /* a Content-Length was not a plain number */
    int cl_over;           /* the number passed max_body */
    uint64_t cl;           /* the value, valid when !cl_bad && !cl_over */
    int n_te;              /* Transfer-Encoding headers seen */
    int te_chunked;        /* the (single) coding was "chunked" */
    int conn_close;        /* Connection: close */
    int conn_keep_alive;   /* Connection: keep-alive */
    int expect_continue;   /* Expect: 100-continue */
} head_flags;

static void note_content_length(head_flags *f, const char *v, size_t n, size_t max_body)
{
    f->n_cl++;
    if (n == 0) {
        f->cl_bad = 1;
        return;
    }
    uint64_t val = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < '0' || c > '9') {
            f->cl_bad = 1;
            return;
        }
        /* Saturate: once past max_body the exact value no longer matters,
         * and this keeps 30-digit lengths from overflowing. */
        if (val <= max_body) {
            val = val * 10 + (uint64_t)(c - '0');
        }
    }
    if (val > max_body) {
        f->cl_over = 1;
    }
    f->cl = val;
}

/* Walk a comma-separated token list (Connection) for close / keep-alive. */
static void note_connection(head_flags *f, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') {
            i++;
        }
        if (eq_nocase(v + s, i - s, "close")) {
            f->conn_close = 1;
        } else if (eq_nocase(v + s, i - s, "keep-alive")) {
            f->conn_keep_alive = 1;
        }
    }
}

static void note_header(head_flags *f, const http_header *h, size_t max_body)
{
    switch (h->name_len) {
    case 6:
        if (eq_nocase(h->name, 6, "expect") && eq_nocase(h->value, h->value_len, "100-continue")) {
            f->expect_continue = 1;
        }
        break;
    case 10:
        if (eq_nocase(h->name, 10, "connection")) {
            note_connection(f, h->value, h->value_len);
        }
        break;
    case 14:
        if (eq_nocase(h->name, 14, "content-length")) {
            note_content_length(f, h->value, h->value_len, max_body);
        }
        break;
    case 17:
        if (eq_nocase(h->name, 17, "transfer-encoding")) {
            f->n_te++;
            f->te_chunked = eq_nocase(h->value, h->value_len, "chunked");
        }
        break;
    default:
        break;
    }
}

/* Parse one header line at buf[*p..end) into h. Returns 0 or -400. */
static int parse_header_line(const char *buf, size_t *p, size_t end, http_header *h)
{
    size_t i = *p;
    size_t start = i;
    while (i < end && is_tchar((unsigned char)buf[i])) {
        i++;
    }
    /* An empty name covers obs-fold (line starting with SP/HTAB) and junk;
     * no whitespace is allowed between name and colon (RFC 9112 5.1). */
    if (i == start || i >= end || buf[i] != ':') {
        return -400;
    }
    h->name = buf + start;
    h->name_len = i - start;
    i++;
    while (i < end && (buf[i] == ' ' || buf[i] == '\t')) {
        i++;
    }
    start = i;
    while (i < end && is_field_char((unsigned char)buf[i])) {
        i++;
    }
    size_t vend = i;
    if (eat_eol(buf, &i, end) != 0) {
        return -400;  /* a NUL, a control byte or a bare CR */
    }
    while (vend > start && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t')) {
        vend--;
    }
    h->value = buf + start;
    h->value_len = vend - start;
    *p = i;
    return 0;
}

/* See http.h. The head is located first (cheap), then parsed in one pass. */
int http_parse_head(const char *buf, size_t len, const http_limits *lim, http_request *req)
{
    size_t max_head = lim ? lim->max_header_bytes : HTTP_DEFAULT_MAX_HEADER;
    size_t max_body = lim ? lim->max_body_bytes : HTTP_DEFAULT_MAX_BODY;
    if (max_head > INT_MAX) {
        max_head = INT_MAX;  /* the head length must fit the int return */
    }

    /* RFC 9112 2.2: ignore empty lines before the request line (clients
     * sometimes send a stray CRLF after a POST body). They count toward the
     * head size so an endless stream of them still ends in 431. */
    size_t off = 0;
    for (;;) {
        if (off < len && buf[off] == '\n') {
            off++;
        } else if (off + 1 < len && buf[off] == '\r' && buf[off + 1] == '\n') {
            off += 2;
        } else {
            break;
        }
    }
    size_t end = find_head_end(buf, off, len);
    if (end == 0) {
        return len > max_head ? -431 : 0;
    }
    if (end > max_head) {
        return -431;
    }

    size_t p = off;
    int rc = parse_request_line(buf, &p, end, req);
    if (rc != 0) {
        return rc;
    }
    head_flags f;
    memset(&f, 0, sizeof(f));
    req->n_headers = 0;
    while (eat_eol(buf, &p, end) != 0) {
        if (req->n_headers == HTTP_MAX_HEADERS) {
            return -431;
        }
        http_header *h = &req->headers[req->n_headers];
        rc = parse_header_line(buf, &p, end, h);
        if (rc != 0) {
            return rc;
        }
        req->n_headers++;
        note_header(&f, h, max_body);
    }

    if (f.n_cl > 1 || f.cl_bad || f.n_te > 1) {
        return -400;
    }
    if (f.n_te == 1 && (f.n_cl == 1 || req->minor_version == 0)) {
        return -400;
    }
    if (f.n_te == 1 && !f.te_chunked) {
        return -501;
    }
    if (f.cl_over) {
        return -413;
    }
    req->head_len = p;
    req->content_length = f.n_cl ? (int64_t)f.cl : -1;
    req->chunked = f.n_te == 1;
    if (req->minor_version >= 1) {
        req->keep_alive = !f.conn_close;
    } else {
        req->keep_alive = f.conn_keep_alive && !f.conn_close;
    }
    /* RFC 9110 10.1.1: a server must ignore 100-continue from HTTP/1.0. */
    req->expect_continue = f.expect_continue && req->minor_version >= 1;
    return (int)p;
}

const http_header *http_find_header(const http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
            return h;
        }
    }
    return NULL;
}

/* ---- chunked bodies ------------------------------------------------- */

/* One pass over a chunked body. With move == false it only validates and
 * finds the end; with move == true (called only once the body is known to be
 * complete and valid) it also slides each chunk's data to the front.
 * Two passes because the API is stateless: moving data while the body is
 * still incomplete would destroy the chunk headers the next call re-reads.
 * The first pass hops over chunk data, so it costs O(chunks), not O(bytes). */
static long dechunk_walk(char *buf, size_t len, size_t max_body, size_t *body_len, int move)
{
    size_t p = 0;
    size_t out = 0;
    for (;;) {
        /* chunk-size = 1*HEXDIG */
        size_t size = 0;
        size_t start = p;
        while (p < len) {
            int v = hex_val((unsigned char)buf[p]);
            if (v < 0) {
                break;
            }
            /* Checked before the shift, so size can never wrap. */
            if (size > max_body || size > (SIZE_MAX >> 4)) {
                return -413;
            }
            size = size * 16 + (size_t)v;
            p++;
        }
        if (p == len) {
            return 0;
        }
        if (p == start) {
            return -400;
        }
        if (size > max_body || out > max_body - size) {
            return -413;
        }
        /* BWS, then chunk-ext: ";" name["=" value], kept loose but free of
         * control bytes. */
        while (p < len && (buf[p] == ' ' || buf[p] == '\t')) {
            p++;
        }
        if (p < len && buf[p] == ';') {
            while (p < len && is_field_char((unsigned char)buf[p])) {
                p++;
            }
        }
        if (p == len || (buf[p] == '\r' && p + 1 == len)) {
            return 0;
        }
        if (eat_eol(buf, &p, len) != 0) {
            return -400;
        }

        if (size == 0) {
            /* trailer-section: header-like lines up to an empty line; we
             * validate the bytes and drop the fields. */
            for (;;) {
                if (p == len || (buf[p] == '\r' && p + 1 == len)) {
                    return 0;
                }
                if (eat_eol(buf, &p, len) == 0) {
                    *body_len = out;
                    return (long)p;
                }
                while (p < len && is_field_char((unsigned char)buf[p])) {
                    p++;
                }
                if (p == len || (buf[p] == '\r' && p + 1 == len)) {
                    return 0;
                }
                if (eat_eol(buf, &p, len) != 0) {
                    return -400;
                }
            }
        }

        if (len - p < size) {
            return 0;
        }
        if (move && out != p) {
            memmove(buf + out, buf + p, size);
        }
        out += size;
        p += size;
        if (p == len || (buf[p] == '\r' && p + 1 == len)) {
            return 0;
        }
        if (eat_eol(buf, &p, len) != 0) {
            return -400;
        }
    }
}

long http_dechunk(char *buf, size_t len, size_t max_body, size_t *body_len)
{
    size_t n = 0;
    long rc = dechunk_walk(buf, len, max_body, &n, 0);
    if (rc <= 0) {
        return rc;
    }
    long again = dechunk_walk(buf, len, max_body, &n, 1);
    (void)again;  /* same input, same answer: the first pass validated it */
    *body_len = n;
    return rc;
}

/* ---- percent-decoding and query strings ----------------------------- */

/* Decode src into dst with room for a NUL; plus_space turns '+' into ' '
 * (form encoding, used in query strings but not in paths). Returns the
 * length or -1 on a bad escape, a NUL (decoded or literal) or overflow. */
static long pct_decode(const char *src, size_t len, char *dst, size_t dst_cap, int plus_space)
{
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (len - i < 3) {
                return -1;
            }
            int hi = hex_val((unsigned char)src[i + 1]);
            int lo = hex_val((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == '\0' || j + 1 >= dst_cap) {
            return -1;
        }
        dst[j++] = (char)c;
    }
    if (dst_cap == 0) {
        return -1;
    }
    dst[j] = '\0';
    return (long)j;
}

/* See http.h. dst is always NUL-terminated on success, so the decoded
 * length must be below dst_cap. */
long http_pct_decode(const char *src, size_t len, char *dst, size_t dst_cap)
{
    return pct_decode(src, len, dst, dst_cap, 0);
}

/* Does the encoded key k[0..n) decode (form rules) to exactly name? */
static int key_matches(const char *k, size_t n, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c == '%') {
            if (n - i < 3) {
                return 0;
            }
            int hi = hex_val((unsigned char)k[i + 1]);
            int lo = hex_val((unsigned char)k[i + 2]);
            if (hi < 0 || lo < 0) {
                return 0;
            }
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0' || (unsigned char)name[j] != c) {
            return 0;
        }
        j++;
    }
    return name[j] == '\0';
}

/* See http.h. Pairs are split on '&'; "k" alone is k with an empty value;
 * the first matching pair wins. */
long http_query_param(const char *query, size_t query_len, const char *name, char *dst,
                      size_t dst_cap)
{
    if (query == NULL || name == NULL) {
        return -1;
    }
    size_t i = 0;
    while (i < query_len) {
        const char *amp = memchr(query + i, '&', query_len - i);
        size_t seg_end = amp ? (size_t)(amp - query) : query_len;
        const char *seg = query + i;
        size_t seg_len = seg_end - i;
        const char *eq = memchr(seg, '=', seg_len);
        size_t key_len = eq ? (size_t)(eq - seg) : seg_len;
        if (seg_len > 0 && key_matches(seg, key_len, name)) {
            const char *val = eq ? eq + 1 : seg + seg_len;
            size_t val_len = seg_len - (size_t)(val - seg);
            long n = pct_decode(val, val_len, dst, dst_cap, 1);
            return n < 0 ? -2 : n;
        }
        i = seg_end + 1;
    }
    return -1;
}

/* ---- status text ---------------------------------------------------- */

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
