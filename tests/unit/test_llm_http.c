/*
 * test_llm_http.c - the OpenAI-compatible chat-completions client against
 * tests/support/openai_stub.py: the request it sends (messages, JSON mode,
 * model, temperature, auth), the content it returns, and its error paths:
 * malformed bodies, missing choices or content, HTTP errors with and without
 * retries, timeouts, refused connections and the response-size cap.
 */
#include "core/core.h"
#include "providers/llm_http.h"
#include "test.h"
#include "../support/openai_stub.h"

static llm_http_options chat_opts(const stub_server *s)
{
    llm_http_options o;
    llm_http_options_init(&o);
    o.base_url = s->base_url;
    o.model = "chat-model";
    o.timeout_ms = 5000;
    return o;
}

static int errmsg_has(const char *needle)
{
    if (strstr(strata_errmsg(), needle) == NULL) {
        fprintf(stderr, "  errmsg \"%s\" lacks \"%s\"\n", strata_errmsg(), needle);
        return 0;
    }
    return 1;
}

/* One chat call with the given options; content freed, rc returned. */
static int chat_once(const llm_http_options *o, char **content_out)
{
    llm_http *c = NULL;
    int rc = llm_http_create(o, &c);
    if (rc != STRATA_OK) {
        return rc;
    }
    rc = llm_http_chat_json(c, "You extract facts.", "Alice lives in Paris.", content_out);
    llm_http_free(c);
    return rc;
}

/* ---- happy paths -------------------------------------------------------- */

STUB_TEST(chat_ok)
{
    ASSERT_OK(stub_control(stub, "{\"content\": \"{\\\"facts\\\": [\\\"Alice: Paris\\\"]}\"}"));
    llm_http_options o = chat_opts(stub);
    o.api_key = "sk-chat";
    o.temperature = 0.25;
    char *content = NULL;
    ASSERT_OK(chat_once(&o, &content));
    int same = content != NULL && strcmp(content, "{\"facts\": [\"Alice: Paris\"]}") == 0;
    strata_free(content);
    ASSERT_TRUE(same);

    json_t *st = stub_stats(stub);
    ASSERT_TRUE(st != NULL);
    json_t *req = json_object_get(st, "last_request");
    json_t *msgs = json_object_get(req, "messages");
    const char *r0 = json_string_value(json_object_get(json_array_get(msgs, 0), "role"));
    const char *c0 = json_string_value(json_object_get(json_array_get(msgs, 0), "content"));
    const char *r1 = json_string_value(json_object_get(json_array_get(msgs, 1), "role"));
    const char *c1 = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
    const char *fmt = json_string_value(
        json_object_get(json_object_get(req, "response_format"), "type"));
    const char *model = json_string_value(json_object_get(req, "model"));
    double temp = json_number_value(json_object_get(req, "temperature"));
    const char *auth = json_string_value(json_object_get(st, "last_auth"));
    int ok = json_array_size(msgs) == 2 && r0 && strcmp(r0, "system") == 0 && c0 &&
             strcmp(c0, "You extract facts.") == 0 && r1 && strcmp(r1, "user") == 0 && c1 &&
             strcmp(c1, "Alice lives in Paris.") == 0 && fmt && strcmp(fmt, "json_object") == 0 &&
             model && strcmp(model, "chat-model") == 0 && temp == 0.25 && auth &&
             strcmp(auth, "Bearer sk-chat") == 0;
    json_decref(st);
    ASSERT_TRUE(ok);
}

/* No system prompt: one user message. Escapes and UTF-8 survive both ways. */
STUB_TEST(chat_user_only_and_escapes)
{
    ASSERT_OK(stub_control(stub, "{\"content\": \"{\\\"q\\\": \\\"\\u00e9\\\\n\\\\\\\"\\\"}\"}"));
    llm_http_options o = chat_opts(stub);
    llm_http *c = NULL;
    ASSERT_OK(llm_http_create(&o, &c));
    char *content = NULL;
    int rc = llm_http_chat_json(c, NULL, "line1\n\"quoted\" caf\xc3\xa9 \\ tab\t", &content);
    llm_http_free(c);
    ASSERT_OK(rc);
    int same = content != NULL && strcmp(content, "{\"q\": \"\xc3\xa9\\n\\\"\"}") == 0;
    if (!same) {
        fprintf(stderr, "  content: %s\n", content ? content : "(null)");
    }
    strata_free(content);
    ASSERT_TRUE(same);
    json_t *st = stub_stats(stub);
    json_t *msgs = json_object_get(json_object_get(st, "last_request"), "messages");
    const char *c0 = json_string_value(json_object_get(json_array_get(msgs, 0), "content"));
    int ok = json_array_size(msgs) == 1 && c0 &&
             strcmp(c0, "line1\n\"quoted\" caf\xc3\xa9 \\ tab\t") == 0;
    json_decref(st);
    ASSERT_TRUE(ok);
}

STUB_TEST(chat_retry_then_ok)
{
    ASSERT_OK(stub_control(stub, "{\"mode\": \"fail_then_ok\", \"count\": 1, "
                                 "\"content\": \"{}\"}"));
    llm_http_options o = chat_opts(stub);
    char *content = NULL;
    ASSERT_OK(chat_once(&o, &content));
    int same = content != NULL && strcmp(content, "{}") == 0;
    strata_free(content);
    ASSERT_TRUE(same);
    ASSERT_EQ(stub_count(stub, "chat"), 2);
}

/* ---- malformed responses -------------------------------------------------- */

static int chat_mode(stub_server *stub, const char *mode, unsigned max_retries, long timeout_ms)
{
    char ctl[128];
    snprintf(ctl, sizeof(ctl), "{\"mode\": \"%s\", \"retry_after\": 0, \"delay_ms\": 3000}",
             mode);
    if (stub_control(stub, ctl) != 0) {
        return 1;
    }
    llm_http_options o = chat_opts(stub);
    o.max_retries = max_retries;
    o.timeout_ms = timeout_ms;
    char *content = (char *)"sentinel";
    int rc = chat_once(&o, &content);
    if (rc != STRATA_OK && content != NULL) {
        return 2;   /* the out-parameter must be NULL on failure */
    }
    strata_free(content);
    return rc;
}

STUB_TEST(chat_malformed)
{
    ASSERT_EQ(chat_mode(stub, "malformed", 3, 5000), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("not JSON"));
    ASSERT_EQ(stub_count(stub, "chat"), 1);
}

STUB_TEST(chat_no_choices)
{
    ASSERT_EQ(chat_mode(stub, "no_choices", 3, 5000), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("choices"));
}

STUB_TEST(chat_no_content)
{
    ASSERT_EQ(chat_mode(stub, "no_content", 3, 5000), STRATA_EPROTO);
    ASSERT_TRUE(errmsg_has("content"));
}

/* ---- HTTP errors ---------------------------------------------------------- */

STUB_TEST(chat_500_gives_up)
{
    ASSERT_EQ(chat_mode(stub, "error500", 1, 5000), STRATA_EIO);
    ASSERT_TRUE(errmsg_has("HTTP 500"));
    ASSERT_TRUE(errmsg_has("stub: internal server error"));
    ASSERT_EQ(stub_count(stub, "chat"), 2);
}

STUB_TEST(chat_429_is_busy)
{
    ASSERT_EQ(chat_mode(stub, "error429", 2, 5000), STRATA_EBUSY);
    ASSERT_TRUE(errmsg_has("rate limit"));
    ASSERT_EQ(stub_count(stub, "chat"), 3);
}

STUB_TEST(chat_503_is_busy)
{
    ASSERT_EQ(chat_mode(stub, "error503", 0, 5000), STRATA_EBUSY);
    ASSERT_TRUE(errmsg_has("overloaded"));
    ASSERT_EQ(stub_count(stub, "chat"), 1);
}

STUB_TEST(chat_400_not_retried)
{
    ASSERT_EQ(chat_mode(stub, "error400", 3, 5000), STRATA_EINVAL);
    ASSERT_TRUE(errmsg_has("stub: bad request"));
    ASSERT_EQ(stub_count(stub, "chat"), 1);
}

STUB_TEST(chat_timeout)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASSERT_EQ(chat_mode(stub, "slow", 0, 300), STRATA_ETIMEDOUT);
    long ms = stub_elapsed_ms(&t0);
    ASSERT_TRUE(errmsg_has("timed out"));
    ASSERT_TRUE(ms < 2500);
}

STUB_TEST_DIM(chat_body_cap, 8, "--big-mb", "17")
{
    ASSERT_EQ(chat_mode(stub, "big", 3, 5000), STRATA_ETOOBIG);
    ASSERT_EQ(stub_count(stub, "chat"), 1);
}

/* The same without Content-Length: refused while reading, at the cap. */
STUB_TEST_DIM(chat_body_cap_stream, 8, "--big-mb", "17")
{
    ASSERT_EQ(chat_mode(stub, "big_stream", 3, 5000), STRATA_ETOOBIG);
    ASSERT_TRUE(errmsg_has("byte limit"));
    ASSERT_EQ(stub_count(stub, "chat"), 1);
}

TEST(chat_connection_refused)
{
    int port = stub_dead_port();
    ASSERT_TRUE(port > 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    llm_http_options o;
    llm_http_options_init(&o);
    o.base_url = url;
    o.max_retries = 1;
    char *content = NULL;
    ASSERT_EQ(chat_once(&o, &content), STRATA_EIO);
    ASSERT_TRUE(content == NULL);
    ASSERT_TRUE(errmsg_has("/v1/chat/completions"));
}

/* Fail each strata_malloc in turn: a clean STRATA_ENOMEM, no leak. */
STUB_TEST(chat_alloc_failures)
{
    int succeeded = 0;
    for (long n = 0; n < 500 && !succeeded; n++) {
        llm_http_options o = chat_opts(stub);
        char *content = NULL;
        strata_alloc_fail_after(n);
        int rc = chat_once(&o, &content);
        strata_alloc_fail_after(-1);
        ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
        ASSERT_TRUE((rc == STRATA_OK) == (content != NULL));
        strata_free(content);
        succeeded = rc == STRATA_OK;
    }
    ASSERT_TRUE(succeeded);
}

/* ---- options and input ---------------------------------------------------- */

TEST(chat_bad_options)
{
    llm_http_options o;
    llm_http_options_init(&o);
    ASSERT_EQ(o.max_retries, 3);
    ASSERT_EQ(o.timeout_ms, 10000);
    llm_http *c = (llm_http *)&o;
    ASSERT_EQ(llm_http_create(&o, &c), STRATA_EINVAL);       /* no base_url */
    ASSERT_TRUE(c == NULL);
    o.base_url = "http://127.0.0.1:1";
    o.temperature = 3.0;
    ASSERT_EQ(llm_http_create(&o, &c), STRATA_EINVAL);
    o.temperature = 0.0;
    ASSERT_OK(llm_http_create(&o, &c));
    char *content = NULL;
    ASSERT_EQ(llm_http_chat_json(c, "sys", "bad \xc3 utf-8", &content), STRATA_EINVAL);
    ASSERT_EQ(llm_http_chat_json(c, "sys", NULL, &content), STRATA_EINVAL);
    llm_http_free(c);
    llm_http_free(NULL);
}

TEST_MAIN(TEST_ENTRY(chat_ok), TEST_ENTRY(chat_user_only_and_escapes),
          TEST_ENTRY(chat_retry_then_ok), TEST_ENTRY(chat_malformed), TEST_ENTRY(chat_no_choices),
          TEST_ENTRY(chat_no_content), TEST_ENTRY(chat_500_gives_up), TEST_ENTRY(chat_429_is_busy),
          TEST_ENTRY(chat_503_is_busy), TEST_ENTRY(chat_400_not_retried), TEST_ENTRY(chat_timeout),
          TEST_ENTRY(chat_body_cap), TEST_ENTRY(chat_body_cap_stream),
          TEST_ENTRY(chat_connection_refused), TEST_ENTRY(chat_alloc_failures),
          TEST_ENTRY(chat_bad_options))
