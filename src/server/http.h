/*
 * http.h - the HTTP/1.1 layer of stratad: an in-place request parser
 * (http_parse.c) and an epoll server (http_server.c) with one event loop per
 * thread, all loops accepting on one port through SO_REUSEPORT.
 *
 * Why our own server rather than libmicrohttpd/civetweb/h2o: requests are tiny
 * JSON documents and the fastest path is parse-in-place + handler inline on
 * the loop thread + one writev per response, with no per-header allocation;
 * TLS 1.3 comes from OpenSSL (already our crypto library for AES-256-GCM)
 * instead of a second TLS stack (GnuTLS under libmicrohttpd); and a parser we
 * own is a parser we fuzz. See README "HTTP server" for the measurement.
 *
 * A request handler runs on the loop thread that read the request and may
 * block (e.g. waiting for the log's group commit under fsync=always); other
 * loops keep serving. Loops: `threads` in the config (default 2 x cores).
 */
#ifndef STRATA_HTTP_H
#define STRATA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define HTTP_MAX_HEADERS 64

typedef struct http_header {
    const char *name;        /* points into the connection's buffer */
    size_t name_len;
    const char *value;       /* leading/trailing blanks stripped */
    size_t value_len;
} http_header;

typedef struct http_limits {
    size_t max_header_bytes;     /* request line + headers, default 16 KiB -> 431 */
    size_t max_body_bytes;       /* default 1 MiB -> 413 */
} http_limits;

/* A parsed request. Every pointer points into the connection's read buffer
 * and is valid until the handler returns. */
typedef struct http_request {
    const char *method;
    size_t method_len;
    const char *target;          /* raw request-target, e.g. "/v1/x?y=1" */
    size_t target_len;
    const char *path;            /* target up to '?', still percent-encoded */
    size_t path_len;
    const char *query;           /* after '?', or NULL */
    size_t query_len;
    int minor_version;           /* HTTP/1.<minor> */
    size_t n_headers;
    http_header headers[HTTP_MAX_HEADERS];
    size_t head_len;             /* bytes of request line + headers + CRLFCRLF */
    int64_t content_length;      /* -1 when absent */
    bool chunked;                /* Transfer-Encoding: chunked */
    bool keep_alive;             /* after this request (HTTP/1.1 default yes) */
    bool expect_continue;        /* Expect: 100-continue */
    const char *body;            /* the complete body (de-chunked), or NULL */
    size_t body_len;
    char remote_addr[64];        /* peer "ip:port", for the access log */
} http_request;

/* Parse the request line and headers held in buf[0..len).
 * Returns the head length (> 0) when complete, 0 when more bytes are needed,
 * or a negative HTTP status to answer with before closing:
 *   -400 malformed, -431 head over max_header_bytes (checked even when
 *   incomplete), -413 Content-Length over max_body_bytes, -501 a transfer
 *   coding other than chunked, -505 not HTTP/1.x.
 * Sets every field of req except body/body_len/remote_addr. */
int http_parse_head(const char *buf, size_t len, const http_limits *lim, http_request *req);

/* Decode a chunked body held in buf[0..len) in place (the decoded bytes are
 * moved to the front of buf). Returns the number of bytes of buf consumed
 * (> 0) with *body_len set when the final chunk and trailers were seen, 0 if
 * more bytes are needed, -400 on a malformed chunk, -413 when the decoded
 * body would pass max_body. */
long http_dechunk(char *buf, size_t len, size_t max_body, size_t *body_len);

/* Case-insensitive header lookup; NULL if absent. */
const http_header *http_find_header(const http_request *req, const char *name);

/* Percent-decode src into dst (dst_cap bytes). Returns the decoded length or
 * -1 on a bad escape or overflow. A decoded NUL is an error. */
long http_pct_decode(const char *src, size_t len, char *dst, size_t dst_cap);

/* Find query parameter `name`; decodes its value into dst. Returns length,
 * -1 if absent, -2 if malformed or too long. */
long http_query_param(const char *query, size_t query_len, const char *name, char *dst,
                      size_t dst_cap);

const char *http_status_text(int status);

typedef struct http_response {
    int status;                  /* default 200 */
    const char *content_type;    /* default "application/json" */
    sbuf body;                   /* the handler appends here (bounded) */
    char extra_headers[512];     /* "Name: value\r\n" lines, e.g. Retry-After, Allow */
    size_t extra_len;
    bool close;                  /* handler asks to close after responding */
} http_response;

/* Append "Name: value\r\n" to the response's extra headers (ignored if full). */
void http_response_header(http_response *resp, const char *name, const char *value);

typedef void (*http_handler_fn)(void *ctx, const http_request *req, http_response *resp);

typedef struct http_server_config {
    const char *host;            /* "127.0.0.1" */
    uint16_t port;               /* 0 picks a free port (see http_server_port) */
    int threads;                 /* event loops; <= 0: 2 x online cores */
    int max_connections;         /* across all loops; over it new ones are closed. 1024 */
    http_limits limits;
    int idle_timeout_ms;         /* keep-alive idle close, default 60000 */
    int request_timeout_ms;      /* a started request must complete within, default 10000 */
    size_t max_response_bytes;   /* response body cap, default 64 MiB */
    struct tls_ctx *tls;         /* NULL: plain TCP; else HTTPS only (tls.h). Borrowed:
                                  * must outlive the server */
} http_server_config;

void http_server_config_init(http_server_config *cfg);

typedef struct http_server_stats {
    uint64_t connections_open;
    uint64_t connections_total;
    uint64_t connections_rejected;   /* over max_connections */
    uint64_t requests_total;
    uint64_t parse_errors;           /* requests answered 4xx/5xx by the parser */
    uint64_t tls_handshakes;         /* TLS handshakes completed */
    uint64_t tls_handshake_failures; /* failed, or timed out (request_timeout_ms) */
} http_server_stats;

typedef struct http_server http_server;

/* Bind and listen (so the port is known at once); loops start in run(). */
int http_server_create(const http_server_config *cfg, http_handler_fn handler, void *ctx,
                       http_server **out);
uint16_t http_server_port(const http_server *srv);
/* Run every loop (the calling thread is one of them) until stopped. Then
 * finishes in-flight requests, closes connections and returns. */
int http_server_run(http_server *srv);
/* Ask the loops to stop. Async-signal-safe (writes an eventfd). */
void http_server_stop(http_server *srv);
void http_server_stats_get(http_server *srv, http_server_stats *out);
void http_server_free(http_server *srv);

#endif /* STRATA_HTTP_H */
