/*
 * llm_http.c - the HTTP transport shared by the OpenAI-compatible providers,
 * and the chat-completions client built on it (the embedder is embed_http.c).
 *
 * Transport: one llm_http_endpoint per URL.
 *
 *   llm_http_post(ep, body)
 *     take a CURL handle from ep->idle[] (or make one)       -- ep->lock
 *     attempt 0..max_retries:
 *       POST, response into an sbuf capped at ep->max_body
 *       2xx                          -> done
 *       408/429/5xx, timeout, refused -> sleep backoff(attempt) or Retry-After
 *       anything else                -> fail at once
 *     return the handle to ep->idle[] (or clean it up when the pool is full)
 *
 * Pooling keeps keep-alive connections across calls; a handle is used by one
 * thread at a time (taken out of the pool under ep->lock), which is all
 * libcurl asks. Every option is set again on each attempt, so nothing a
 * previous call did leaks into the next. curl_global_init runs once per
 * process under pthread_once; we never call curl_global_cleanup, since other
 * parts of the process may still use libcurl.
 *
 * Backoff: attempt k (0-based) waits a uniformly random time in
 * [d/2, d] with d = 200 ms * 2^k capped at 10 s ("equal jitter": spreads
 * clients apart without ever retrying immediately). A Retry-After header
 * (seconds or HTTP date, parsed by libcurl) replaces that, capped at 10 s.
 *
 * The chat client: llm_http_chat_json builds the request with the core JSON
 * writer (so request memory goes through strata_malloc) and parses the reply
 * with jansson.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/core.h"
#include "providers/llm_http.h"

#define BACKOFF_BASE_MS 200L
#define BACKOFF_MAX_MS 10000L
#define DEFAULT_TIMEOUT_MS 10000L
#define CHAT_MAX_BODY (16u << 20)       /* chat responses are small; 16 MiB is generous */
#define CHAT_MAX_REQUEST (64u << 20)    /* prompts beyond this are a caller bug */
#define URL_MAX 4096
#define SERVER_MSG_MAX 256              /* bytes of a server's error message we quote */

/* ======================================================================== */
/* libcurl process initialisation                                           */
/* ======================================================================== */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_OK;   /* written once under g_curl_once */

static void curl_init_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ======================================================================== */
/* endpoint setup                                                           */
/* ======================================================================== */

int llm_http_endpoint_init(llm_http_endpoint *ep, const char *base_url, const char *path,
                           const char *api_key, long timeout_ms, unsigned max_retries,
                           size_t max_body)
{
    memset(ep, 0, sizeof(*ep));
    if (base_url == NULL || (strncasecmp(base_url, "http://", 7) != 0 &&
                             strncasecmp(base_url, "https://", 8) != 0)) {
        return strata_error(STRATA_EINVAL, "base_url must start with http:// or https://, got %s",
                            base_url ? base_url : "(null)");
    }
    if (api_key != NULL && strpbrk(api_key, "\r\n") != NULL) {
        return strata_error(STRATA_EINVAL, "api_key contains a line break");
    }
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK) {
        return strata_error(STRATA_EIO, "libcurl initialisation failed: %s",
                            curl_easy_strerror(g_curl_init_rc));
    }

    /* base + path, without a doubled "/" or a doubled "/v1". */
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/') {
        blen--;
    }
    if (blen >= 3 && strncmp(base_url + blen - 3, "/v1", 3) == 0 &&
        strncmp(path, "/v1/", 4) == 0) {
        path += 3;
    }
    sbuf u;
    sbuf_init(&u, URL_MAX);
    int rc = sbuf_append(&u, base_url, blen);
    if (rc == STRATA_OK) {
        rc = sbuf_puts(&u, path);
    }
    if (rc != STRATA_OK) {
        sbuf_free(&u);
        return rc == STRATA_ETOOBIG ? strata_error(rc, "base_url is too long") : rc;
    }
    ep->url = sbuf_take(&u, NULL);
    if (ep->url == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory");
    }
    if (api_key != NULL && api_key[0] != '\0') {
        sbuf a;
        sbuf_init(&a, URL_MAX);
        rc = sbuf_printf(&a, "Authorization: Bearer %s", api_key);
        if (rc != STRATA_OK) {
            sbuf_free(&a);
            llm_http_endpoint_reset(ep);
            return rc == STRATA_ETOOBIG ? strata_error(rc, "api_key is too long") : rc;
        }
        ep->auth_header = sbuf_take(&a, NULL);
        if (ep->auth_header == NULL) {
            llm_http_endpoint_reset(ep);
            return strata_error(STRATA_ENOMEM, "out of memory");
        }
    }
    ep->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    ep->max_retries = max_retries;
    ep->max_body = max_body;
    if (pthread_mutex_init(&ep->lock, NULL) != 0) {
        llm_http_endpoint_reset(ep);
        return strata_error(STRATA_ENOMEM, "cannot create a mutex");
    }
    ep->lock_ready = true;
    ep->n_idle = 0;
    return STRATA_OK;
}

/* Free what init made; idempotent. */
void llm_http_endpoint_reset(llm_http_endpoint *ep)
{
    if (ep == NULL) {
        return;
    }
    for (size_t i = 0; i < ep->n_idle; i++) {
        curl_easy_cleanup(ep->idle[i]);
    }
    if (ep->lock_ready) {
        pthread_mutex_destroy(&ep->lock);
    }
    strata_free(ep->url);
    strata_free(ep->auth_header);
    memset(ep, 0, sizeof(*ep));
}

/* ======================================================================== */
/* handle pool                                                              */
/* ======================================================================== */

static CURL *pool_take(llm_http_endpoint *ep)
{
    CURL *h = NULL;
    pthread_mutex_lock(&ep->lock);
    if (ep->n_idle > 0) {
        h = ep->idle[--ep->n_idle];
    }
    pthread_mutex_unlock(&ep->lock);
    return h != NULL ? h : curl_easy_init();
}

static void pool_give(llm_http_endpoint *ep, CURL *h)
{
    pthread_mutex_lock(&ep->lock);
    if (ep->n_idle < LLM_HTTP_POOL_MAX) {
        ep->idle[ep->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&ep->lock);
    curl_easy_cleanup(h);   /* NULL-safe */
}

/* ======================================================================== */
/* one attempt                                                              */
/* ======================================================================== */

typedef struct sink {
    sbuf *buf;                 /* capped at the endpoint's max_body */
    bool over_cap;             /* the body did not fit */
    bool no_mem;               /* growing the buffer failed */
} sink;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;
    int rc = sbuf_append(s->buf, ptr, n);
    if (rc == STRATA_ETOOBIG) {
        s->over_cap = true;
    } else if (rc != STRATA_OK) {
        s->no_mem = true;
    }
    return rc == STRATA_OK ? n : 0;   /* 0 makes libcurl abort with CURLE_WRITE_ERROR */
}

typedef struct attempt_result {
    CURLcode cc;               /* transfer outcome */
    long status;               /* HTTP status; 0 when none was received */
    long retry_after_ms;       /* from Retry-After; -1 when absent */
    char curl_err[CURL_ERROR_SIZE]; /* libcurl's detail for cc */
} attempt_result;

/* Run one POST on h into s. Every option is set here, on every attempt. */
static void attempt_run(llm_http_endpoint *ep, CURL *h, struct curl_slist *hdrs,
                        const char *body, size_t body_len, sink *s, attempt_result *r)
{
    r->curl_err[0] = '\0';
    r->status = 0;
    r->retry_after_ms = -1;
    curl_easy_setopt(h, CURLOPT_URL, ep->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ep->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ep->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ep->max_body);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");   /* any encoding libcurl decodes */
    curl_easy_setopt(h, CURLOPT_USERAGENT, "strata/" STRATA_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    r->cc = curl_easy_perform(h);
    if (r->cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        /* CURLINFO_RETRY_AFTER parses both seconds and HTTP dates, but says 0
         * both for "Retry-After: 0" and for no header: ask whether it is there. */
        curl_off_t ra = 0;
        bool present = curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0;
#if LIBCURL_VERSION_NUM >= 0x075400
        struct curl_header *hh = NULL;
        present = curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &hh) == CURLHE_OK;
#endif
        if (present && ra >= 0) {
            r->retry_after_ms = ra > BACKOFF_MAX_MS / 1000 ? BACKOFF_MAX_MS : (long)ra * 1000;
        }
    }
    /* The handle outlives this call in the pool: drop pointers to our stack,
     * the caller's body and the header list, which are about to go away. */
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
}

/*
 * Copy the server's explanation out of an error body into out: the OpenAI
 * {"error": {"message"}}, a bare {"error": "..."}, {"message"} or {"detail"}
 * (FastAPI), else the start of the body with control bytes replaced.
 */
static void server_message(const char *body, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    const char *msg = NULL;
    json_t *root = len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    if (json_is_object(root)) {
        json_t *err = json_object_get(root, "error");
        if (json_is_object(err)) {
            msg = json_string_value(json_object_get(err, "message"));
        } else if (json_is_string(err)) {
            msg = json_string_value(err);
        }
        if (msg == NULL) {
            msg = json_string_value(json_object_get(root, "message"));
        }
        if (msg == NULL) {
            msg = json_string_value(json_object_get(root, "detail"));
        }
    }
    if (msg != NULL) {
        snprintf(out, cap, "%s", msg);
    } else if (len == 0) {
        snprintf(out, cap, "(empty body)");
    } else {
        size_t n = STRATA_MIN(len, cap - 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)body[i];
            out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        }
        out[n] = '\0';
    }
    json_decref(root);
}

/*
 * Classify an attempt: returns STRATA_OK for a 2xx, else an error code with
 * msg filled in and *retry telling whether another attempt may help.
 */
static int attempt_classify(const llm_http_endpoint *ep, const attempt_result *r, const sink *s,
                            char *msg, size_t cap, bool *retry)
{
    *retry = false;
    if (r->cc != CURLE_OK) {
        const char *detail = r->curl_err[0] != '\0' ? r->curl_err : curl_easy_strerror(r->cc);
        switch (r->cc) {
        case CURLE_OPERATION_TIMEDOUT:
            *retry = true;
            snprintf(msg, cap, "POST %s: timed out after %ld ms", ep->url, ep->timeout_ms);
            return STRATA_ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            *retry = true;
            snprintf(msg, cap, "POST %s: %s", ep->url, detail);
            return STRATA_EIO;
        case CURLE_FILESIZE_EXCEEDED:
            snprintf(msg, cap, "POST %s: response larger than the %zu byte limit", ep->url,
                     ep->max_body);
            return STRATA_ETOOBIG;
        case CURLE_WRITE_ERROR:
            if (s->over_cap) {
                snprintf(msg, cap, "POST %s: response larger than the %zu byte limit", ep->url,
                         ep->max_body);
                return STRATA_ETOOBIG;
            }
            snprintf(msg, cap, "POST %s: out of memory reading the response", ep->url);
            return STRATA_ENOMEM;
        case CURLE_OUT_OF_MEMORY:
            snprintf(msg, cap, "POST %s: %s", ep->url, detail);
            return STRATA_ENOMEM;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
            snprintf(msg, cap, "POST %s: %s", ep->url, detail);
            return STRATA_EINVAL;
        default:
            snprintf(msg, cap, "POST %s: %s", ep->url, detail);
            return STRATA_EIO;
        }
    }
    long st = r->status;
    if (st >= 200 && st < 300) {
        return STRATA_OK;
    }
    char smsg[SERVER_MSG_MAX];
    server_message(s->buf->data, s->buf->len, smsg, sizeof(smsg));
    snprintf(msg, cap, "POST %s: HTTP %ld: %s", ep->url, st, smsg);
    if (st == 429 || st == 503) {
        *retry = true;
        return STRATA_EBUSY;
    }
    if (st == 408) {
        *retry = true;
        return STRATA_ETIMEDOUT;
    }
    if (st >= 500 && st < 600) {
        *retry = true;
        return STRATA_EIO;
    }
    if (st == 404) {
        return STRATA_ENOTFOUND;
    }
    if (st == 413) {
        return STRATA_ETOOBIG;
    }
    if (st >= 400 && st < 500) {
        return STRATA_EINVAL;
    }
    return STRATA_EPROTO;   /* 1xx after the exchange, 3xx (redirects are not followed) */
}

/* Wait before retry number attempt + 1: Retry-After when given, else backoff. */
static long backoff_ms(unsigned attempt, long retry_after_ms)
{
    if (retry_after_ms >= 0) {
        return STRATA_MIN(retry_after_ms, BACKOFF_MAX_MS);
    }
    long d = BACKOFF_MAX_MS;
    if (attempt < 16) {
        d = STRATA_MIN(BACKOFF_BASE_MS << attempt, BACKOFF_MAX_MS);
    }
    uint32_t r = 0;
    if (random_bytes(&r, sizeof(r)) != STRATA_OK) {
        r = (uint32_t)clock_mono_ns();   /* jitter only needs to differ between clients */
    }
    return d / 2 + (long)(r % (uint32_t)(d / 2 + 1));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int llm_http_post(llm_http_endpoint *ep, const char *body, size_t body_len, char **resp_out,
                  size_t *resp_len_out)
{
    *resp_out = NULL;
    *resp_len_out = 0;
    struct curl_slist *hdrs = NULL;
    const char *lines[] = {"Content-Type: application/json", "Accept: application/json",
                           "Expect:", ep->auth_header};
    for (size_t i = 0; i < STRATA_ARRAY_LEN(lines); i++) {
        if (lines[i] == NULL) {
            continue;
        }
        struct curl_slist *next = curl_slist_append(hdrs, lines[i]);
        if (next == NULL) {
            curl_slist_free_all(hdrs);
            return strata_error(STRATA_ENOMEM, "out of memory building request headers");
        }
        hdrs = next;
    }
    CURL *h = pool_take(ep);
    if (h == NULL) {
        curl_slist_free_all(hdrs);
        return strata_error(STRATA_ENOMEM, "cannot create a libcurl handle");
    }
    sbuf resp;
    sbuf_init(&resp, ep->max_body);
    int rc = STRATA_OK;
    for (unsigned attempt = 0;; attempt++) {
        sbuf_reset(&resp);
        sink s = {&resp, false, false};
        attempt_result r;
        attempt_run(ep, h, hdrs, body, body_len, &s, &r);
        char msg[512];
        bool retry = false;
        rc = attempt_classify(ep, &r, &s, msg, sizeof(msg), &retry);
        if (rc == STRATA_OK) {
            break;
        }
        if (!retry || attempt >= ep->max_retries) {
            rc = strata_error(rc, "%s (%u attempt%s)", msg, attempt + 1, attempt ? "s" : "");
            break;
        }
        long wait_ms = backoff_ms(attempt, r.retry_after_ms);
        slog(SLOG_WARN, "%s; retry %u of %u in %ld ms", msg, attempt + 1, ep->max_retries,
             wait_ms);
        sleep_ms(wait_ms);
    }
    /* A handle whose transfer was cut short still works: libcurl closes the
     * connection it cannot reuse, so the handle goes back to the pool. */
    pool_give(ep, h);
    curl_slist_free_all(hdrs);
    if (rc == STRATA_OK) {
        *resp_out = sbuf_take(&resp, resp_len_out);
        if (*resp_out == NULL) {
            *resp_len_out = 0;
            rc = strata_error(STRATA_ENOMEM, "out of memory");
        }
    }
    sbuf_free(&resp);
    return rc;
}

/* ======================================================================== */
/* chat completions                                                         */
/* ======================================================================== */

struct llm_http {
    llm_http_endpoint ep;      /* POST {base}/v1/chat/completions */
    char *model;               /* owned; NULL: "model" omitted */
    double temperature;        /* 0..2 */
};

void llm_http_options_init(llm_http_options *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->max_retries = 3;
    o->temperature = 0.0;
}

int llm_http_create(const llm_http_options *opts, llm_http **out)
{
    *out = NULL;
    if (opts == NULL) {
        return strata_error(STRATA_EINVAL, "llm_http_create: no options");
    }
    if (!(opts->temperature >= 0.0 && opts->temperature <= 2.0)) {
        return strata_error(STRATA_EINVAL, "temperature %g is outside 0..2", opts->temperature);
    }
    llm_http *c = strata_calloc(1, sizeof(*c));
    if (c == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory");
    }
    int rc = llm_http_endpoint_init(&c->ep, opts->base_url, "/v1/chat/completions",
                                    opts->api_key, opts->timeout_ms, opts->max_retries,
                                    CHAT_MAX_BODY);
    if (rc != STRATA_OK) {
        goto fail;
    }
    if (opts->model != NULL) {
        c->model = strata_strdup(opts->model);
        if (c->model == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory");
            goto fail;
        }
    }
    c->temperature = opts->temperature;
    *out = c;
    return STRATA_OK;
fail:
    llm_http_free(c);
    return rc;
}

void llm_http_free(llm_http *c)
{
    if (c == NULL) {
        return;
    }
    llm_http_endpoint_reset(&c->ep);
    strata_free(c->model);
    strata_free(c);
}

/* Append {"role": role, "content": text} to b. */
static int put_message(sbuf *b, const char *role, const char *text)
{
    int rc = sbuf_puts(b, "{\"role\":");
    if (rc == STRATA_OK) {
        rc = json_put_cstr(b, role);
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(b, ",\"content\":");
    }
    if (rc == STRATA_OK) {
        rc = json_put_cstr(b, text);
    }
    if (rc == STRATA_OK) {
        rc = sbuf_putc(b, '}');
    }
    return rc;
}

/* The request body, into b. */
static int chat_request(const llm_http *c, const char *system_prompt, const char *user_prompt,
                        sbuf *b)
{
    int rc = sbuf_putc(b, '{');
    if (rc == STRATA_OK && c->model != NULL) {
        rc = sbuf_puts(b, "\"model\":");
        if (rc == STRATA_OK) {
            rc = json_put_cstr(b, c->model);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_putc(b, ',');
        }
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(b, "\"messages\":[");
    }
    if (rc == STRATA_OK && system_prompt != NULL) {
        rc = put_message(b, "system", system_prompt);
        if (rc == STRATA_OK) {
            rc = sbuf_putc(b, ',');
        }
    }
    if (rc == STRATA_OK) {
        rc = put_message(b, "user", user_prompt);
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(b, "],\"temperature\":");
    }
    if (rc == STRATA_OK) {
        rc = json_put_double(b, c->temperature);
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(b, ",\"response_format\":{\"type\":\"json_object\"},\"stream\":false}");
    }
    return rc;
}

/* Pull choices[0].message.content out of a response body. */
static int chat_parse(const llm_http *c, const char *body, size_t len, char **content_out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    int rc = STRATA_OK;
    if (root == NULL) {
        return strata_error(STRATA_EPROTO, "POST %s: response is not JSON: %s (line %d)",
                            c->ep.url, jerr.text, jerr.line);
    }
    json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        rc = strata_error(STRATA_EPROTO, "POST %s: response has no \"choices\"", c->ep.url);
        goto done;
    }
    json_t *message = json_object_get(json_array_get(choices, 0), "message");
    json_t *content = json_object_get(message, "content");
    if (!json_is_string(content)) {
        const char *refusal = json_string_value(json_object_get(message, "refusal"));
        if (refusal != NULL) {
            rc = strata_error(STRATA_EPROTO, "POST %s: the model refused: %.200s", c->ep.url,
                              refusal);
        } else {
            rc = strata_error(STRATA_EPROTO, "POST %s: choices[0].message has no string "
                              "\"content\"", c->ep.url);
        }
        goto done;
    }
    size_t n = json_string_length(content);
    char *copy = strata_malloc(n + 1);
    if (copy == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(copy, json_string_value(content), n);
    copy[n] = '\0';
    *content_out = copy;
done:
    json_decref(root);
    return rc;
}

int llm_http_chat_json(llm_http *c, const char *system_prompt, const char *user_prompt,
                       char **content_out)
{
    *content_out = NULL;
    if (user_prompt == NULL) {
        return strata_error(STRATA_EINVAL, "chat: no user prompt");
    }
    if (!utf8_valid(user_prompt, strlen(user_prompt)) ||
        (system_prompt != NULL && !utf8_valid(system_prompt, strlen(system_prompt)))) {
        return strata_error(STRATA_EINVAL, "chat: prompt is not valid UTF-8");
    }
    sbuf req;
    sbuf_init(&req, CHAT_MAX_REQUEST);
    char *resp = NULL;
    size_t resp_len = 0;
    int rc = chat_request(c, system_prompt, user_prompt, &req);
    if (rc != STRATA_OK) {
        rc = rc == STRATA_ETOOBIG ? strata_error(rc, "chat: prompts exceed %u bytes",
                                                 CHAT_MAX_REQUEST) : rc;
        goto done;
    }
    rc = llm_http_post(&c->ep, req.data, req.len, &resp, &resp_len);
    if (rc != STRATA_OK) {
        goto done;
    }
    rc = chat_parse(c, resp, resp_len, content_out);
done:
    strata_free(resp);
    sbuf_free(&req);
    return rc;
}
