/*
 * embed_http.c - an embedder backed by an OpenAI-compatible server:
 * POST {base}/v1/embeddings {"model": m, "input": [t0, t1, ...]}
 *   -> {"data": [{"index": i, "embedding": [f, f, ...]}, ...]}
 *
 * ops->embed splits the texts into requests of at most batch_size inputs and
 * sends them one after another through the shared transport (llm_http.c:
 * handle pool, retries with backoff, capped response body). Each response is
 * checked before anything reaches the caller's buffer:
 *
 *   data        an array; every element an object
 *   index       an integer in [0, batch), each exactly once (rows may come in
 *               any order: servers that parallelise do reorder them)
 *   embedding   an array of numbers, the same length in every row, equal to
 *               the embedder's dimension; each value finite and within float
 *               range (so the norm below cannot overflow)
 *
 * then each row is L2-normalised (computed in double) into out[index].
 *
 * Dimension: fixed at create time (opts->dim) or learned by the first
 * successful embedder_http_probe(). The only write to base.dim happens under
 * eh->dim_lock while it is still 0, and ops->embed refuses to run while it is
 * 0, so after the probe the field is read-only and callers may read e->dim
 * without locking.
 */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "providers/embed.h"
#include "providers/llm_http.h"

#define DEFAULT_BATCH 64
#define DEFAULT_TIMEOUT_MS 10000L
#define EMBED_MAX_BODY ((size_t)64 << 20)      /* response cap: 64 MiB */
#define EMBED_MAX_REQUEST ((size_t)256 << 20)  /* one batch's request body */
#define EMBED_MAX_DIM 65536u                   /* larger is not an embedding */

typedef struct embed_http {
    embedder base;             /* first: the embedder * handed out points here */
    llm_http_endpoint ep;      /* POST {base}/v1/embeddings */
    char *model;               /* owned, untruncated; NULL: "model" omitted */
    size_t batch_size;         /* texts per request, >= 1 */
    pthread_mutex_t dim_lock;  /* serialises the one write of base.dim */
} embed_http;

static int http_embed(embedder *e, const char *const *texts, const size_t *lens, size_t n,
                      float *out);
static void http_close(embedder *e);

static const embedder_ops http_ops = {
    .name = "http",
    .embed = http_embed,
    .close = http_close,
};

/* ======================================================================== */
/* request and response                                                     */
/* ======================================================================== */

/* {"model": ..., "input": [texts...]} into b. */
static int embed_request(const embed_http *eh, const char *const *texts, const size_t *lens,
                         size_t n, sbuf *b)
{
    int rc = sbuf_putc(b, '{');
    if (rc == STRATA_OK && eh->model != NULL) {
        rc = sbuf_puts(b, "\"model\":");
        if (rc == STRATA_OK) {
            rc = json_put_cstr(b, eh->model);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_putc(b, ',');
        }
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(b, "\"input\":[");
    }
    for (size_t i = 0; i < n && rc == STRATA_OK; i++) {
        if (i > 0) {
            rc = sbuf_putc(b, ',');
        }
        if (rc == STRATA_OK) {
            rc = json_put_str(b, texts[i], lens ? lens[i] : strlen(texts[i]));
        }
    }
    if (rc == STRATA_OK) {
        rc = sbuf_puts(b, "]}");
    }
    return rc;
}

/*
 * Check a response to a batch of n texts and return its rows, normalised,
 * placed by index: *rows_out is n x *dim_out floats (strata_free). want_dim
 * is the dimension required, 0 for any. Errors: STRATA_EPROTO for a malformed
 * body, STRATA_EINVAL for a dimension other than want_dim, STRATA_ENOMEM.
 */
static int embed_parse(const embed_http *eh, const char *body, size_t len, size_t n,
                       uint32_t want_dim, float **rows_out, uint32_t *dim_out)
{
    *rows_out = NULL;
    *dim_out = 0;
    const char *url = eh->ep.url;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (root == NULL) {
        return strata_error(STRATA_EPROTO, "POST %s: response is not JSON: %s (line %d)", url,
                            jerr.text, jerr.line);
    }
    int rc = STRATA_OK;
    float *rows = NULL;
    bool *seen = NULL;
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        rc = strata_error(STRATA_EPROTO, "POST %s: response has no \"data\" array", url);
        goto fail;
    }
    size_t m = json_array_size(data);
    if (m == 0) {
        rc = strata_error(STRATA_EPROTO, "POST %s: response has no embeddings for %zu inputs",
                          url, n);
        goto fail;
    }
    /* The dimension comes from the first row; every row must agree. */
    json_t *first = json_object_get(json_array_get(data, 0), "embedding");
    if (!json_is_array(first) || json_array_size(first) == 0 ||
        json_array_size(first) > EMBED_MAX_DIM) {
        rc = strata_error(STRATA_EPROTO, "POST %s: data[0].embedding is not an array of 1..%u "
                          "numbers", url, EMBED_MAX_DIM);
        goto fail;
    }
    uint32_t dim = (uint32_t)json_array_size(first);
    if (want_dim != 0 && dim != want_dim) {
        rc = strata_error(STRATA_EINVAL, "POST %s: embedding dimension mismatch: expected %u, "
                          "server returned %u", url, want_dim, dim);
        goto fail;
    }
    rows = strata_calloc(n, (size_t)dim * sizeof(float));
    seen = strata_calloc(n, sizeof(bool));
    if (rows == NULL || seen == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory for %zu embeddings of %u", n, dim);
        goto fail;
    }
    for (size_t i = 0; i < m; i++) {
        json_t *item = json_array_get(data, i);
        json_t *jidx = json_object_get(item, "index");
        json_t *emb = json_object_get(item, "embedding");
        if (!json_is_integer(jidx) || !json_is_array(emb)) {
            rc = strata_error(STRATA_EPROTO, "POST %s: data[%zu] lacks an integer \"index\" or "
                              "an \"embedding\" array", url, i);
            goto fail;
        }
        json_int_t idx = json_integer_value(jidx);
        if (idx < 0 || (uint64_t)idx >= n) {
            rc = strata_error(STRATA_EPROTO, "POST %s: data[%zu].index %lld is outside 0..%zu",
                              url, i, (long long)idx, n - 1);
            goto fail;
        }
        if (seen[idx]) {
            rc = strata_error(STRATA_EPROTO, "POST %s: index %lld appears twice", url,
                              (long long)idx);
            goto fail;
        }
        seen[idx] = true;
        if (json_array_size(emb) != dim) {
            rc = strata_error(STRATA_EPROTO, "POST %s: rows of different dimensions: data[0] "
                              "has %u, data[%zu] has %zu", url, dim, i, json_array_size(emb));
            goto fail;
        }
        float *row = rows + (size_t)idx * dim;
        double sum = 0.0;
        for (uint32_t j = 0; j < dim; j++) {
            json_t *v = json_array_get(emb, j);
            double x = json_is_number(v) ? json_number_value(v) : NAN;
            if (!isfinite(x) || fabs(x) > FLT_MAX) {
                rc = strata_error(STRATA_EPROTO, "POST %s: data[%zu].embedding[%u] is not a "
                                  "finite number", url, i, j);
                goto fail;
            }
            sum += x * x;
        }
        double inv = sum > 0.0 ? 1.0 / sqrt(sum) : 0.0;   /* an all-zero row stays zero */
        for (uint32_t j = 0; j < dim; j++) {
            row[j] = (float)(json_number_value(json_array_get(emb, j)) * inv);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!seen[i]) {
            rc = strata_error(STRATA_EPROTO, "POST %s: no embedding for input %zu (%zu rows for "
                              "%zu inputs)", url, i, m, n);
            goto fail;
        }
    }
    strata_free(seen);
    json_decref(root);
    *rows_out = rows;
    *dim_out = dim;
    return STRATA_OK;
fail:
    strata_free(seen);
    strata_free(rows);
    json_decref(root);
    return rc;
}

/* One request for n texts; rows and dim as embed_parse. */
static int embed_batch(embed_http *eh, const char *const *texts, const size_t *lens, size_t n,
                       uint32_t want_dim, float **rows_out, uint32_t *dim_out)
{
    sbuf req;
    sbuf_init(&req, EMBED_MAX_REQUEST);
    char *resp = NULL;
    size_t resp_len = 0;
    int rc = embed_request(eh, texts, lens, n, &req);
    if (rc != STRATA_OK) {
        if (rc == STRATA_ETOOBIG) {
            rc = strata_error(rc, "embeddings: a batch of %zu texts exceeds the %zu byte "
                              "request limit", n, EMBED_MAX_REQUEST);
        }
        goto done;
    }
    rc = llm_http_post(&eh->ep, req.data, req.len, &resp, &resp_len);
    if (rc != STRATA_OK) {
        goto done;
    }
    rc = embed_parse(eh, resp, resp_len, n, want_dim, rows_out, dim_out);
done:
    strata_free(resp);
    sbuf_free(&req);
    return rc;
}

/* ======================================================================== */
/* embedder ops                                                             */
/* ======================================================================== */

static uint32_t dim_get(embed_http *eh)
{
    pthread_mutex_lock(&eh->dim_lock);
    uint32_t d = eh->base.dim;
    pthread_mutex_unlock(&eh->dim_lock);
    return d;
}

static int http_embed(embedder *e, const char *const *texts, const size_t *lens, size_t n,
                      float *out)
{
    embed_http *eh = (embed_http *)e;
    if (n == 0) {
        return STRATA_OK;
    }
    if (texts == NULL || out == NULL) {
        return strata_error(STRATA_EINVAL, "embed: texts and out are required");
    }
    uint32_t dim = dim_get(eh);
    if (dim == 0) {
        return strata_error(STRATA_EINVAL, "embed: the embedding dimension is not known yet; "
                            "call embedder_http_probe() once at startup");
    }
    for (size_t i = 0; i < n; i++) {
        if (texts[i] == NULL) {
            return strata_error(STRATA_EINVAL, "embed: text %zu is NULL", i);
        }
        if (!utf8_valid(texts[i], lens ? lens[i] : strlen(texts[i]))) {
            return strata_error(STRATA_EINVAL, "embed: text %zu is not valid UTF-8", i);
        }
    }
    for (size_t off = 0; off < n; off += eh->batch_size) {
        size_t k = STRATA_MIN(eh->batch_size, n - off);
        float *rows = NULL;
        uint32_t got = 0;
        int rc = embed_batch(eh, texts + off, lens ? lens + off : NULL, k, dim, &rows, &got);
        if (rc != STRATA_OK) {
            return rc;
        }
        memcpy(out + off * dim, rows, k * (size_t)dim * sizeof(float));
        strata_free(rows);
    }
    return STRATA_OK;
}

static void http_close(embedder *e)
{
    embed_http *eh = (embed_http *)e;
    if (eh == NULL) {
        return;
    }
    llm_http_endpoint_reset(&eh->ep);
    pthread_mutex_destroy(&eh->dim_lock);
    strata_free(eh->model);
    strata_free(eh);
}

/* ======================================================================== */
/* construction                                                             */
/* ======================================================================== */

void embedder_http_options_init(embedder_http_options *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->max_retries = 3;
    o->batch_size = DEFAULT_BATCH;
}

int embedder_http_create(const embedder_http_options *opts, embedder **out)
{
    *out = NULL;
    if (opts == NULL) {
        return strata_error(STRATA_EINVAL, "embedder_http_create: no options");
    }
    if (opts->dim > EMBED_MAX_DIM) {
        return strata_error(STRATA_EINVAL, "embedding dimension %u is over %u", opts->dim,
                            EMBED_MAX_DIM);
    }
    embed_http *eh = strata_calloc(1, sizeof(*eh));
    if (eh == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory");
    }
    if (pthread_mutex_init(&eh->dim_lock, NULL) != 0) {
        strata_free(eh);
        return strata_error(STRATA_ENOMEM, "cannot create a mutex");
    }
    eh->base.ops = &http_ops;
    eh->base.dim = opts->dim;
    eh->batch_size = opts->batch_size > 0 ? opts->batch_size : DEFAULT_BATCH;
    int rc = llm_http_endpoint_init(&eh->ep, opts->base_url, "/v1/embeddings", opts->api_key,
                                    opts->timeout_ms, opts->max_retries, EMBED_MAX_BODY);
    if (rc != STRATA_OK) {
        goto fail;
    }
    if (opts->model != NULL) {
        snprintf(eh->base.model, sizeof(eh->base.model), "%s", opts->model);
        eh->model = strata_strdup(opts->model);
        if (eh->model == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory");
            goto fail;
        }
    }
    *out = &eh->base;
    return STRATA_OK;
fail:
    http_close(&eh->base);
    return rc;
}

int embedder_http_probe(embedder *e)
{
    if (e == NULL || e->ops != &http_ops) {
        return strata_error(STRATA_EINVAL, "embedder_http_probe: not an HTTP embedder");
    }
    embed_http *eh = (embed_http *)e;
    static const char *const probe[] = {"probe"};
    uint32_t want = dim_get(eh);
    float *rows = NULL;
    uint32_t got = 0;
    int rc = embed_batch(eh, probe, NULL, 1, want, &rows, &got);
    strata_free(rows);
    if (rc != STRATA_OK) {
        return rc;
    }
    pthread_mutex_lock(&eh->dim_lock);
    if (eh->base.dim == 0) {
        eh->base.dim = got;
    } else if (eh->base.dim != got) {
        /* Two probes raced and the server changed its answer in between. */
        rc = strata_error(STRATA_EINVAL, "embedding dimension mismatch: expected %u, server "
                          "returned %u", eh->base.dim, got);
    }
    pthread_mutex_unlock(&eh->dim_lock);
    return rc;
}
