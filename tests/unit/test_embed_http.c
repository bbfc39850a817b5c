/*
 * test_embed_http.c - the OpenAI-compatible HTTP embedder against
 * tests/support/openai_stub.py: batching and row order, dimension learning
 * and mismatches, retries (500, 429 + Retry-After), persistent failures,
 * timeouts, malformed bodies, NaN, missing and duplicate indexes, refused
 * connections, input checks and concurrent callers. Each test starts its own
 * stub (dimension 8) and stops it, pass or fail.
 */
#include <math.h>
#include <openssl/sha.h>
#include <pthread.h>

#include "core/core.h"
#include "providers/embed.h"
#include "providers/llm_http.h"
#include "test.h"
#include "../support/openai_stub.h"

#define DIM 8

/* The stub's vector for text (dimension <= 8: one sha256 block), normalised. */
static void expected_row(const char *text, size_t len, float *out)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, len, h);
    double v[DIM];
    double sum = 0.0;
    for (int i = 0; i < DIM; i++) {
        uint32_t u = (uint32_t)h[4 * i] | (uint32_t)h[4 * i + 1] << 8 |
                     (uint32_t)h[4 * i + 2] << 16 | (uint32_t)h[4 * i + 3] << 24;
        v[i] = u / 2147483648.0 - 1.0;
        sum += v[i] * v[i];
    }
    for (int i = 0; i < DIM; i++) {
        out[i] = (float)(v[i] / sqrt(sum));
    }
}

/* Max |a - b| over a row. */
static double row_diff(const float *a, const float *b)
{
    double m = 0.0;
    for (int i = 0; i < DIM; i++) {
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    }
    return m;
}

static embedder_http_options opts_for(const stub_server *s)
{
    embedder_http_options o;
    embedder_http_options_init(&o);
    o.base_url = s->base_url;
    o.model = "test-model";
    o.dim = DIM;
    o.timeout_ms = 5000;
    return o;
}

static int embed_one(embedder *e, const char *text, float *out)
{
    const char *texts[] = {text};
    return e->ops->embed(e, texts, NULL, 1, out);
}

static int errmsg_has(const char *needle)
{
    if (strstr(strata_errmsg(), needle) == NULL) {
        fprintf(stderr, "  errmsg \"%s\" lacks \"%s\"\n", strata_errmsg(), needle);
        return 0;
    }
    return 1;
}

/* ---- happy paths ------------------------------------------------------- */

STUB_TEST(batches_and_order)
{
    enum { N = 150 };
    static char bufs[N][32];
    const char *texts[N];
    for (int i = 0; i < N; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "text number %d", i);
        texts[i] = bufs[i];
    }
    ASSERT_OK(stub_control(stub, "{\"mode\": \"shuffled\"}"));
    embedder_http_options o = opts_for(stub);
    o.api_key = "sk-test";
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    ASSERT_STREQ(e->model, "test-model");
    ASSERT_EQ(e->dim, DIM);
    float *out = malloc(sizeof(float) * N * DIM);
    ASSERT_TRUE(out != NULL);
    int rc = e->ops->embed(e, texts, NULL, N, out);
    embedder_free(e);
    if (rc != STRATA_OK) {
        free(out);
    }
    ASSERT_OK(rc);
    int bad = -1;
    for (int i = 0; i < N && bad < 0; i++) {
        float want[DIM];
        expected_row(texts[i], strlen(texts[i]), want);
        if (row_diff(out + (size_t)i * DIM, want) > 1e-6) {
            bad = i;
        }
    }
    free(out);
    ASSERT_EQ(bad, -1);

    json_t *st = stub_stats(stub);
    ASSERT_TRUE(st != NULL);
    json_t *sizes = json_object_get(st, "batch_sizes");
    int ok = json_integer_value(json_object_get(st, "embeddings")) == 3 &&
             json_array_size(sizes) == 3 &&
             json_integer_value(json_array_get(sizes, 0)) == 64 &&
             json_integer_value(json_array_get(sizes, 1)) == 64 &&
             json_integer_value(json_array_get(sizes, 2)) == 22;
    const char *auth = json_string_value(json_object_get(st, "last_auth"));
    const char *model = json_string_value(json_object_get(st, "last_model"));
    int auth_ok = auth != NULL && strcmp(auth, "Bearer sk-test") == 0;
    int model_ok = model != NULL && strcmp(model, "test-model") == 0;
    json_decref(st);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(auth_ok);
    ASSERT_TRUE(model_ok);
}

/* Explicit lengths: texts need not be NUL-terminated; rows are unit length. */
STUB_TEST(lens_and_norm)
{
    const char *buf = "alphabetagamma";
    const char *texts[] = {buf, buf + 5, buf + 9};
    const size_t lens[] = {5, 4, 5};
    embedder_http_options o = opts_for(stub);
    o.batch_size = 2;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[3 * DIM];
    int rc = e->ops->embed(e, texts, lens, 3, out);
    embedder_free(e);
    ASSERT_OK(rc);
    for (int i = 0; i < 3; i++) {
        float want[DIM];
        expected_row(texts[i], lens[i], want);
        ASSERT_TRUE(row_diff(out + i * DIM, want) < 1e-6);
        double sum = 0.0;
        for (int j = 0; j < DIM; j++) {
            sum += (double)out[i * DIM + j] * out[i * DIM + j];
        }
        ASSERT_NEAR(sum, 1.0, 1e-5);
    }
    ASSERT_EQ(stub_count(stub, "embeddings"), 2);
}

/* A base_url that already ends in /v1/ is not doubled; no key, no header. */
STUB_TEST(base_url_with_v1)
{
    char url[96];
    snprintf(url, sizeof(url), "%s/v1/", stub->base_url);
    embedder_http_options o = opts_for(stub);
    o.base_url = url;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    embedder_free(e);
    ASSERT_OK(rc);
    json_t *st = stub_stats(stub);
    int no_auth = json_is_null(json_object_get(st, "last_auth"));
    json_decref(st);
    ASSERT_TRUE(no_auth);
}

/* ---- dimension ---------------------------------------------------------- */

STUB_TEST(learns_dimension)
{
    embedder_http_options o = opts_for(stub);
    o.dim = 0;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int before = embed_one(e, "x", out);           /* refused: dim unknown */
    int probe = embedder_http_probe(e);
    uint32_t dim = e->dim;
    int after = embed_one(e, "hello", out);
    int again = embedder_http_probe(e);             /* verifies, no change */
    embedder_free(e);
    ASSERT_EQ(before, STRATA_EINVAL);
    ASSERT_OK(probe);
    ASSERT_EQ(dim, DIM);
    ASSERT_OK(after);
    ASSERT_OK(again);
    float want[DIM];
    expected_row("hello", 5, want);
    ASSERT_TRUE(row_diff(out, want) < 1e-6);
}

STUB_TEST(dimension_mismatch)
{
    embedder_http_options o = opts_for(stub);
    o.dim = 16;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    int rc = embedder_http_probe(e);
    int named = errmsg_has("expected 16") && errmsg_has("returned 8");
    float out[16];
    int rc2 = embed_one(e, "hello", out);
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_EINVAL);
    ASSERT_TRUE(named);
    ASSERT_EQ(rc2, STRATA_EINVAL);
}

/* A server that changes its dimension after the probe. */
STUB_TEST(wrong_dim_after_probe)
{
    embedder_http_options o = opts_for(stub);
    o.dim = 0;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    int probe = embedder_http_probe(e);
    ASSERT_OK(stub_control(stub, "{\"mode\": \"wrong_dim\"}"));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    int named = errmsg_has("expected 8") && errmsg_has("returned 9");
    embedder_free(e);
    ASSERT_OK(probe);
    ASSERT_EQ(rc, STRATA_EINVAL);
    ASSERT_TRUE(named);
}

/* ---- retries ------------------------------------------------------------ */

STUB_TEST(retry_500_then_ok)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"fail_then_ok\", \"count\": 2}"));
    embedder_http_options o = opts_for(stub);
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    embedder_free(e);
    ASSERT_OK(rc);
    ASSERT_EQ(stub_count(stub, "embeddings"), 3);
}

STUB_TEST(retry_429_honours_retry_after)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"error429\", \"count\": 1, \"retry_after\": 1}"));
    embedder_http_options o = opts_for(stub);
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = embed_one(e, "hello", out);
    long ms = stub_elapsed_ms(&t0);
    embedder_free(e);
    ASSERT_OK(rc);
    ASSERT_TRUE(ms >= 950);          /* Retry-After: 1, not the 100-200 ms backoff */
    ASSERT_TRUE(ms < 5000);
    ASSERT_EQ(stub_count(stub, "embeddings"), 2);
}

STUB_TEST(persistent_500_gives_up)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"error500\"}"));
    embedder_http_options o = opts_for(stub);
    o.max_retries = 2;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    int named = errmsg_has("HTTP 500") && errmsg_has("stub: internal server error") &&
                errmsg_has("3 attempts");
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_EIO);
    ASSERT_TRUE(named);
    ASSERT_EQ(stub_count(stub, "embeddings"), 3);
}

STUB_TEST(persistent_429_is_busy)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"error429\", \"retry_after\": 0}"));
    embedder_http_options o = opts_for(stub);
    o.max_retries = 1;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    int named = errmsg_has("rate limit");
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_EBUSY);
    ASSERT_TRUE(named);
    ASSERT_EQ(stub_count(stub, "embeddings"), 2);
}

/* 4xx other than 429 is the caller's fault: not retried. */
STUB_TEST(client_error_not_retried)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"error400\"}"));
    embedder_http_options o = opts_for(stub);
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    int named = errmsg_has("HTTP 400") && errmsg_has("stub: bad request");
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_EINVAL);
    ASSERT_TRUE(named);
    ASSERT_EQ(stub_count(stub, "embeddings"), 1);
}

STUB_TEST(timeout)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"slow\", \"delay_ms\": 3000}"));
    embedder_http_options o = opts_for(stub);
    o.timeout_ms = 300;
    o.max_retries = 1;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = embed_one(e, "hello", out);
    long ms = stub_elapsed_ms(&t0);
    int named = errmsg_has("timed out after 300 ms") && errmsg_has("2 attempts");
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_ETIMEDOUT);
    ASSERT_TRUE(named);
    ASSERT_TRUE(ms >= 600);
    ASSERT_TRUE(ms < 2500);
}

/* Nothing listens on the port: connection refused, after the retries. */
TEST(connection_refused)
{
    int port = stub_dead_port();
    ASSERT_TRUE(port > 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    embedder_http_options o;
    embedder_http_options_init(&o);
    o.base_url = url;
    o.dim = DIM;
    o.max_retries = 1;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    float out[DIM];
    int rc = embed_one(e, "hello", out);
    int named = errmsg_has(url) && errmsg_has("2 attempts");
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_EIO);
    ASSERT_TRUE(named);
}

/* ---- malformed responses (none retried) ----------------------------------- */

static int run_bad_mode(stub_server *stub, const char *mode, size_t n_texts)
{
    char ctl[96];
    snprintf(ctl, sizeof(ctl), "{\"mode\": \"%s\"}", mode);
    if (stub_control(stub, ctl) != 0) {
        return 1;
    }
    embedder_http_options o = opts_for(stub);
    embedder *e = NULL;
    int rc = embedder_http_create(&o, &e);
    if (rc != STRATA_OK) {
        return rc;
    }
    const char *texts[] = {"a", "b", "c", "d"};
    float out[4 * DIM];
    rc = e->ops->embed(e, texts, NULL, n_texts, out);
    embedder_free(e);
    return rc;
}

STUB_TEST(malformed_json)
{
    ASSERT_EQ(run_bad_mode(stub, "malformed", 2), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("not JSON"));
    ASSERT_EQ(stub_count(stub, "embeddings"), 1);
}

STUB_TEST(nan_value)
{
    ASSERT_EQ(run_bad_mode(stub, "nan", 2), STRATA_EPROTO);
}

STUB_TEST(missing_index)
{
    ASSERT_EQ(run_bad_mode(stub, "missing_index", 3), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("no embedding for input 1"));
}

STUB_TEST(duplicate_index)
{
    ASSERT_EQ(run_bad_mode(stub, "duplicate_index", 3), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("appears twice"));
}

STUB_TEST(ragged_rows)
{
    ASSERT_EQ(run_bad_mode(stub, "ragged", 3), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("different dimensions"));
}

/* The response-size cap: a 65 MiB body against the 64 MiB limit. */
STUB_TEST_DIM(body_cap, 8, "--big-mb", "65")
{
    ASSERT_EQ(run_bad_mode(stub, "big", 1), STRATA_ETOOBIG);
    ASSERT_TRUE(errmsg_has("byte limit"));
}

/* ---- input and option checks -------------------------------------------- */

STUB_TEST(bad_input)
{
    embedder_http_options o = opts_for(stub);
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    const char *texts[] = {"ok", "bad \xff utf-8"};
    float out[2 * DIM];
    int rc = e->ops->embed(e, texts, NULL, 2, out);
    int rc0 = e->ops->embed(e, texts, NULL, 0, out);
    embedder_free(e);
    ASSERT_EQ(rc, STRATA_EINVAL);
    ASSERT_OK(rc0);
    ASSERT_EQ(stub_count(stub, "embeddings"), 0);
}

TEST(bad_options)
{
    embedder_http_options o;
    embedder_http_options_init(&o);
    ASSERT_EQ(o.max_retries, 3);
    ASSERT_EQ(o.batch_size, 64);
    ASSERT_EQ(o.timeout_ms, 10000);
    embedder *e = (embedder *)&o;
    ASSERT_EQ(embedder_http_create(&o, &e), STRATA_EINVAL);      /* no base_url */
    ASSERT_TRUE(e == NULL);
    o.base_url = "ftp://127.0.0.1:1";
    ASSERT_EQ(embedder_http_create(&o, &e), STRATA_EINVAL);
    o.base_url = "http://127.0.0.1:1";
    o.api_key = "key\r\nX-Injected: 1";
    ASSERT_EQ(embedder_http_create(&o, &e), STRATA_EINVAL);
    o.api_key = NULL;
    o.model = "a-model-name-that-is-much-longer-than-sixty-three-bytes-0123456789abcdef";
    ASSERT_OK(embedder_http_create(&o, &e));
    ASSERT_EQ(strlen(e->model), 63);
    embedder_free(e);
    embedder_free(NULL);
}

/* Fail each strata_malloc in turn: every failure is a clean STRATA_ENOMEM
 * (ASan reports any leak on the error paths). */
STUB_TEST(alloc_failures)
{
    const char *texts[] = {"one", "two", "three"};
    int succeeded = 0;
    for (long n = 0; n < 500 && !succeeded; n++) {
        embedder_http_options o = opts_for(stub);
        o.dim = 0;
        o.batch_size = 2;
        embedder *e = NULL;
        float out[3 * DIM];
        strata_alloc_fail_after(n);
        int rc = embedder_http_create(&o, &e);
        if (rc == STRATA_OK) {
            rc = embedder_http_probe(e);
        }
        if (rc == STRATA_OK) {
            rc = e->ops->embed(e, texts, NULL, 3, out);
        }
        strata_alloc_fail_after(-1);
        embedder_free(e);
        if (rc != STRATA_OK && rc != STRATA_ENOMEM) {
            fprintf(stderr, "  n=%ld: %s\n", n, strata_errmsg());
        }
        ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
        succeeded = rc == STRATA_OK;
    }
    ASSERT_TRUE(succeeded);
}

/* ---- concurrency ---------------------------------------------------------- */

typedef struct worker {
    embedder *e;
    int id;
    int rc;
    int wrong;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int round = 0; round < 5 && w->rc == STRATA_OK; round++) {
        char bufs[10][32];
        const char *texts[10];
        for (int i = 0; i < 10; i++) {
            snprintf(bufs[i], sizeof(bufs[i]), "w%d r%d t%d", w->id, round, i);
            texts[i] = bufs[i];
        }
        float out[10 * DIM];
        w->rc = w->e->ops->embed(w->e, texts, NULL, 10, out);
        for (int i = 0; i < 10 && w->rc == STRATA_OK; i++) {
            float want[DIM];
            expected_row(texts[i], strlen(texts[i]), want);
            w->wrong += row_diff(out + i * DIM, want) > 1e-6;
        }
    }
    return NULL;
}

STUB_TEST(concurrent_callers)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"shuffled\"}"));
    embedder_http_options o = opts_for(stub);
    o.batch_size = 4;
    embedder *e = NULL;
    ASSERT_OK(embedder_http_create(&o, &e));
    enum { T = 4 };
    worker w[T];
    pthread_t th[T];
    int started = 0;
    for (int i = 0; i < T; i++) {
        w[i] = (worker){e, i, STRATA_OK, 0};
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) == 0) {
            started++;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    embedder_free(e);
    ASSERT_EQ(started, T);
    for (int i = 0; i < T; i++) {
        ASSERT_OK(w[i].rc);
        ASSERT_EQ(w[i].wrong, 0);
    }
    ASSERT_EQ(stub_count(stub, "embeddings"), T * 5 * 3);
}

TEST_MAIN(TEST_ENTRY(batches_and_order), TEST_ENTRY(lens_and_norm), TEST_ENTRY(base_url_with_v1),
          TEST_ENTRY(learns_dimension), TEST_ENTRY(dimension_mismatch),
          TEST_ENTRY(wrong_dim_after_probe), TEST_ENTRY(retry_500_then_ok),
          TEST_ENTRY(retry_429_honours_retry_after), TEST_ENTRY(persistent_500_gives_up),
          TEST_ENTRY(persistent_429_is_busy), TEST_ENTRY(client_error_not_retried),
          TEST_ENTRY(timeout), TEST_ENTRY(connection_refused), TEST_ENTRY(malformed_json),
          TEST_ENTRY(nan_value), TEST_ENTRY(missing_index), TEST_ENTRY(duplicate_index),
          TEST_ENTRY(ragged_rows), TEST_ENTRY(body_cap), TEST_ENTRY(bad_input),
          TEST_ENTRY(bad_options), TEST_ENTRY(alloc_failures),
          TEST_ENTRY(concurrent_callers))
