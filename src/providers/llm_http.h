/*
 * llm_http.h - providers that talk to an OpenAI-compatible model server over
 * HTTP (OpenAI itself, vLLM, llama.cpp server, Ollama, TEI, LiteLLM, ...):
 *
 *   embedder_http   POST {base}/v1/embeddings        -> an embedder (embed.h)
 *   llm_http        POST {base}/v1/chat/completions  -> JSON-mode chat, for the
 *                                                      LLM extractor
 *
 * Both sit on one small transport (llm_http_endpoint, in llm_http.c): libcurl
 * easy handles kept in a small pool under a mutex, a bounded response buffer,
 * and retries of transient failures (HTTP 408, 429 and 5xx, timeouts,
 * connection errors) with exponential backoff plus jitter (base 200 ms,
 * doubling, capped at 10 s) or the server's Retry-After (honoured up to 10 s).
 *
 * Error codes, after retries are exhausted (strata_errmsg() carries the URL,
 * the HTTP status, the server's {"error":{"message"}} and the attempt count):
 *   STRATA_ETIMEDOUT   an attempt exceeded timeout_ms (or HTTP 408)
 *   STRATA_EBUSY       HTTP 429 or 503
 *   STRATA_EIO         connection refused/reset, DNS failure, other HTTP 5xx
 *   STRATA_EPROTO      a 2xx whose body is not the expected JSON shape
 *   STRATA_ETOOBIG     a response over the body cap, HTTP 413
 *   STRATA_ENOTFOUND   HTTP 404 (wrong base URL or unknown model)
 *   STRATA_EINVAL      other HTTP 4xx (401, 400, ...), bad options or input,
 *                      an embedding dimension that differs from the expected one
 *   STRATA_ENOMEM      allocation failed
 *
 * Thread-safety: every function here may be called concurrently on one handle,
 * except create/free. Requests are retried, so POSTs must be idempotent (both
 * endpoints are, at the cost of repeated tokens).
 */
#ifndef STRATA_PROVIDERS_LLM_HTTP_H
#define STRATA_PROVIDERS_LLM_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "providers/embed.h"

/* ---- embeddings --------------------------------------------------------- */

typedef struct embedder_http_options {
    const char *base_url;      /* e.g. http://127.0.0.1:8080 ; "/v1/embeddings" appended
                                  (only "/embeddings" when it already ends in "/v1") */
    const char *api_key;       /* NULL: no Authorization header; else "Bearer <key>" */
    const char *model;         /* sent as "model"; NULL: field omitted */
    uint32_t dim;              /* expected dimension; 0 = learn it from the first response */
    long timeout_ms;           /* per HTTP attempt; <= 0: 10000 */
    unsigned max_retries;      /* retries after the first attempt, taken literally
                                  (0 = none); embedder_http_options_init sets 3 */
    size_t batch_size;         /* max texts per request; 0: 64 */
} embedder_http_options;

/* Zero *o and set the defaults: timeout_ms 10000, max_retries 3, batch_size 64. */
void embedder_http_options_init(embedder_http_options *o);

/*
 * Create an embedder for an OpenAI-compatible /v1/embeddings endpoint. No
 * request is made here. The options' strings are copied; e->model is
 * opts->model truncated to 63 bytes. Returns STRATA_OK, STRATA_EINVAL (no or
 * non-http(s) base_url, a CR/LF in api_key), STRATA_ENOMEM or STRATA_EIO
 * (libcurl failed to initialise). Free with embedder_free().
 *
 * The embedder's ops->embed(e, texts, lens, n, out) writes n rows of e->dim
 * floats, each L2-normalised (a row the server sends as all zeros stays zero).
 * lens may be NULL for NUL-terminated texts; texts must be valid UTF-8. Texts
 * are sent in requests of at most batch_size inputs; rows are placed by the
 * response's "index", and the response is checked: every index exactly once,
 * one dimension for all rows, equal to e->dim (else STRATA_EINVAL naming both),
 * every value a finite float. On any error out's contents are unspecified.
 */
int embedder_http_create(const embedder_http_options *opts, embedder **out);

/*
 * Embed the text "probe" once, to learn e->dim (when created with dim 0) or to
 * verify it against the server (dim set: a mismatch is STRATA_EINVAL). Call it
 * once at startup, before sharing the embedder between threads: ops->embed
 * refuses with STRATA_EINVAL while the dimension is unknown (callers size their
 * output as n * e->dim), and e->dim never changes once known.
 */
int embedder_http_probe(embedder *e);

/* ---- chat completions --------------------------------------------------- */

typedef struct llm_http_options {
    const char *base_url;      /* as for embeddings; "/v1/chat/completions" appended */
    const char *api_key;       /* NULL: no Authorization header */
    const char *model;         /* sent as "model"; NULL: field omitted */
    long timeout_ms;           /* per HTTP attempt; <= 0: 10000 (LLMs are slow: raise it) */
    unsigned max_retries;      /* taken literally; llm_http_options_init sets 3 */
    double temperature;        /* sent as "temperature", 0..2 */
} llm_http_options;

typedef struct llm_http llm_http;

/* Zero *o and set the defaults: timeout_ms 10000, max_retries 3, temperature 0. */
void llm_http_options_init(llm_http_options *o);

/* Create a chat client; copies the options' strings. Errors as embedder_http_create,
 * plus STRATA_EINVAL for a temperature outside 0..2. Free with llm_http_free. */
int llm_http_create(const llm_http_options *opts, llm_http **out);
void llm_http_free(llm_http *c);

/*
 * POST /v1/chat/completions with a system message (omitted when system_prompt
 * is NULL) and a user message, asking for JSON output
 * ("response_format": {"type": "json_object"}). On STRATA_OK *content_out is
 * the assistant message content as sent (the caller parses it; it is not
 * checked to be JSON), NUL-terminated, freed with strata_free. Errors:
 * STRATA_ETIMEDOUT, STRATA_EBUSY (429/503 after retries), STRATA_EPROTO
 * (malformed response: not JSON, no choices, no content), STRATA_EIO
 * (connection) and the others listed at the top; *content_out is then NULL.
 */
int llm_http_chat_json(llm_http *c, const char *system_prompt, const char *user_prompt,
                       char **content_out);

/* ---- shared transport (used by embed_http.c and llm_http.c) ------------- */

#define LLM_HTTP_POOL_MAX 8    /* idle curl handles kept per endpoint */

/* One endpoint: a URL, its auth header and retry policy, and a handle pool. */
typedef struct llm_http_endpoint {
    char *url;                 /* owned: base URL + path */
    char *auth_header;         /* owned: "Authorization: Bearer ..." or NULL */
    long timeout_ms;           /* per attempt, > 0 */
    unsigned max_retries;      /* retries after the first attempt */
    size_t max_body;           /* response body cap, bytes */
    bool lock_ready;           /* lock has been initialised */
    pthread_mutex_t lock;      /* protects idle[] and n_idle */
    void *idle[LLM_HTTP_POOL_MAX]; /* CURL * easy handles ready for reuse */
    size_t n_idle;             /* 0..LLM_HTTP_POOL_MAX */
} llm_http_endpoint;

/*
 * Set up ep for base_url + path (path starts with "/v1/"; a base_url ending
 * in "/v1" is not doubled). Initialises libcurl once per process. Returns
 * STRATA_OK, STRATA_EINVAL, STRATA_ENOMEM or STRATA_EIO. Undo with
 * llm_http_endpoint_reset (also safe on a zeroed, never-initialised ep).
 */
int llm_http_endpoint_init(llm_http_endpoint *ep, const char *base_url, const char *path,
                           const char *api_key, long timeout_ms, unsigned max_retries,
                           size_t max_body);
void llm_http_endpoint_reset(llm_http_endpoint *ep);

/*
 * POST a JSON body to ep, retrying as described at the top. On STRATA_OK
 * (HTTP 2xx) *resp_out is the response body, NUL-terminated, *resp_len_out
 * its length; the caller frees it with strata_free. On error both are NULL/0
 * and strata_errmsg() says what failed. Thread-safe.
 */
int llm_http_post(llm_http_endpoint *ep, const char *body, size_t body_len, char **resp_out,
                  size_t *resp_len_out);

#endif /* STRATA_PROVIDERS_LLM_HTTP_H */
