/*
 * test_extract_llm.c - the LLM extractor (extract_llm.c). First the reply
 * validator extract_llm_parse on its own: valid and fenced replies, the
 * documented normalisations, and one rejection per rule, each naming the
 * field. Then the extractor against tests/support/openai_stub.py: the
 * request it sends (system prompt, numbered turns with roles, sanitised
 * UTF-8), scripted replies (valid, fenced, malformed, a source that is not a
 * user turn), and the HTTP errors it passes through (500, 429, timeout).
 */
#include "core/core.h"
#include "providers/extract.h"
#include "test.h"
#include "../support/openai_stub.h"

/* One item with every field; %s slots for overrides are not needed: tests
 * build variants by string replacement on this text. */
#define ITEM_OK                                                                       \
    "{\"type\": \"fact\", \"content\": \"User is allergic to peanuts\", "             \
    "\"attribute\": \"allergy\", \"value\": \"peanuts\", \"entity\": \"Peanuts\", "   \
    "\"entity_kind\": \"constraint\", \"polarity\": -1, \"confidence\": 0.9, "        \
    "\"importance\": 0.95, \"source\": 2}"

static int parse(const char *text, size_t n_turns, extract_result **out, char *err, size_t cap)
{
    err[0] = '\0';
    return extract_llm_parse(text, strlen(text), n_turns, out, err, cap);
}

/* Parse text expecting EPROTO with `needle` in the message. */
static int rejects(const char *text, size_t n_turns, const char *needle)
{
    extract_result *r = (extract_result *)1;
    char err[512];
    int rc = parse(text, n_turns, &r, err, sizeof(err));
    if (rc != STRATA_EPROTO || r != NULL || strstr(err, needle) == NULL ||
        strstr(strata_errmsg(), needle) == NULL) {
        fprintf(stderr, "  %.120s\n    -> rc %d, err \"%s\" (wanted \"%s\")\n", text, rc, err,
                needle);
        if (rc == STRATA_OK) {
            extract_result_free(r);
        }
        return 0;
    }
    return 1;
}

/* "{"memories": [<item with `from` replaced by `to`>]}" into buf. */
static const char *variant(char *buf, size_t cap, const char *from, const char *to)
{
    const char *item = ITEM_OK;
    const char *at = strstr(item, from);
    if (at == NULL) {
        snprintf(buf, cap, "bad test: %s", from);
        return buf;
    }
    snprintf(buf, cap, "{\"memories\": [%.*s%s%s]}", (int)(at - item), item, to,
             at + strlen(from));
    return buf;
}

/* ---- extract_llm_parse -------------------------------------------------- */

TEST(parse_valid)
{
    extract_result *r = NULL;
    char err[256];
    const char *text =
        "{\"memories\": [" ITEM_OK ", "
        "{\"type\": \"preference\", \"content\": \"  User loves hiking \", \"attribute\": "
        "\"likes\", \"value\": \"hiking\", \"entity\": \"hiking\", \"entity_kind\": \"topic\", "
        "\"polarity\": 1, \"confidence\": 0.7, \"importance\": 0.5, \"source\": 1}, "
        "{\"type\": \"experience\", \"content\": \"User visited Japan last year\", "
        "\"confidence\": 1, \"importance\": 0, \"source\": 3, \"reason\": \"ignored\"}"
        "], \"notes\": \"extra keys are ignored\"}";
    ASSERT_OK(parse(text, 3, &r, err, sizeof(err)));
    ASSERT_EQ(r->n, 3);
    const extract_candidate *c = &r->items[0];
    ASSERT_EQ(c->type, STRATA_MEM_FACT);
    ASSERT_STREQ(c->content, "User is allergic to peanuts");
    ASSERT_STREQ(c->attribute, "allergy");
    ASSERT_STREQ(c->value, "peanuts");
    ASSERT_STREQ(c->entity, "peanuts");        /* lower-cased */
    ASSERT_STREQ(c->entity_kind, "constraint");
    ASSERT_EQ(c->polarity, -1);
    ASSERT_NEAR(c->confidence, 0.9, 1e-6);
    ASSERT_NEAR(c->importance, 0.95, 1e-6);
    ASSERT_EQ(c->source, 1);                   /* turn number 2 -> index 1 */
    c = &r->items[1];
    ASSERT_EQ(c->type, STRATA_MEM_PREFERENCE);
    ASSERT_STREQ(c->content, "User loves hiking");  /* trimmed */
    ASSERT_EQ(c->source, 0);
    c = &r->items[2];
    ASSERT_EQ(c->type, STRATA_MEM_EXPERIENCE);
    ASSERT_TRUE(c->attribute == NULL && c->value == NULL && c->entity == NULL &&
                c->entity_kind == NULL);
    ASSERT_EQ(c->polarity, 0);                 /* absent: neutral */
    ASSERT_NEAR(c->confidence, 1.0, 1e-6);     /* integers are numbers */
    ASSERT_EQ(c->source, 2);
    extract_result_free(r);

    ASSERT_OK(parse("{\"memories\": []}", 0, &r, err, sizeof(err)));
    ASSERT_EQ(r->n, 0);
    extract_result_free(r);
}

TEST(parse_fenced)
{
    static const char *const texts[] = {
        "```json\n{\"memories\": [" ITEM_OK "]}\n```",
        "```JSON\n{\"memories\": [" ITEM_OK "]}```\n\n",
        "  ```\n{\"memories\": [" ITEM_OK "]}\n```  ",
        "\n\n{\"memories\": [" ITEM_OK "]}\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        extract_result *r = NULL;
        char err[256];
        int rc = parse(texts[i], 2, &r, err, sizeof(err));
        if (rc != STRATA_OK) {
            fprintf(stderr, "  text %zu: %s\n", i, err);
        }
        ASSERT_OK(rc);
        ASSERT_EQ(r->n, 1);
        ASSERT_STREQ(r->items[0].value, "peanuts");
        extract_result_free(r);
    }
    ASSERT_TRUE(rejects("```json\n{\"memories\": []}", 1, "fence"));
    ASSERT_TRUE(rejects("```json {\"memories\": []}``", 1, "fence"));
    ASSERT_TRUE(rejects("Sure! Here you go: {\"memories\": []}", 1, "not JSON"));
}

TEST(parse_normalises)
{
    char buf[2048];
    extract_result *r = NULL;
    char err[256];
    /* Attribute keys: case, spaces and dashes. */
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"allergy\"", "\"Food-Allergy Type\""), 2, &r,
                    err, sizeof(err)));
    ASSERT_STREQ(r->items[0].attribute, "food_allergy_type");
    extract_result_free(r);
    /* Case-insensitive type and entity_kind. */
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"fact\"", "\"Fact\""), 2, &r, err, sizeof(err)));
    ASSERT_EQ(r->items[0].type, STRATA_MEM_FACT);
    extract_result_free(r);
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"constraint\"", "\"CONSTRAINT\""), 2, &r, err,
                    sizeof(err)));
    ASSERT_STREQ(r->items[0].entity_kind, "constraint");
    extract_result_free(r);
    /* A value without an attribute: both dropped. */
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"allergy\"", "null"), 2, &r, err, sizeof(err)));
    ASSERT_TRUE(r->items[0].attribute == NULL && r->items[0].value == NULL);
    extract_result_free(r);
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"peanuts\", \"entity\"", "\"  \", \"entity\""),
                    2, &r, err, sizeof(err)));
    ASSERT_TRUE(r->items[0].attribute == NULL && r->items[0].value == NULL);
    extract_result_free(r);
    /* An empty entity is null, and its kind goes with it. */
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"Peanuts\"", "\"\""), 2, &r, err, sizeof(err)));
    ASSERT_TRUE(r->items[0].entity == NULL && r->items[0].entity_kind == NULL);
    extract_result_free(r);
    /* Explicit nulls. */
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"polarity\": -1", "\"polarity\": null"), 2, &r,
                    err, sizeof(err)));
    ASSERT_EQ(r->items[0].polarity, 0);
    extract_result_free(r);
    ASSERT_OK(parse(variant(buf, sizeof(buf), "\"constraint\"", "null"), 2, &r, err,
                    sizeof(err)));
    ASSERT_TRUE(r->items[0].entity_kind == NULL);
    extract_result_free(r);
}

TEST(parse_rejects_malformed)
{
    ASSERT_TRUE(rejects("", 1, "empty"));
    ASSERT_TRUE(rejects("   ", 1, "not JSON"));
    ASSERT_TRUE(rejects("{\"memories\": [", 1, "not JSON"));
    ASSERT_TRUE(rejects("{\"memories\": []} trailing", 1, "not JSON"));
    ASSERT_TRUE(rejects("{\"memories\": [], \"memories\": []}", 1, "not JSON"));  /* dup key */
    ASSERT_TRUE(rejects("{\"memories\": [{\"content\": \"a\xff\"}]}", 1, "not JSON"));
    ASSERT_TRUE(rejects("{\"memories\": [{\"content\": \"a\\u0000b\"}]}", 1, "not JSON"));
    ASSERT_TRUE(rejects("[{\"memories\": []}]", 1, "not a JSON object"));
    ASSERT_TRUE(rejects("{}", 1, "\"memories\": missing"));
    ASSERT_TRUE(rejects("{\"Memories\": []}", 1, "\"memories\": missing"));
    ASSERT_TRUE(rejects("{\"memories\": {}}", 1, "expected an array"));
    ASSERT_TRUE(rejects("{\"memories\": null}", 1, "expected an array"));
    ASSERT_TRUE(rejects("{\"memories\": [42]}", 1, "memories[0]: expected an object"));
    ASSERT_TRUE(rejects("{\"memories\": [" ITEM_OK ", []]}", 2, "memories[1]: expected an "
                        "object"));
    /* Too big as a whole. */
    size_t big = EXTRACT_LLM_OUTPUT_MAX + 1;
    char *text = malloc(big + 1);
    ASSERT_TRUE(text != NULL);
    memset(text, ' ', big);
    text[big] = '\0';
    int ok = rejects(text, 1, "over");
    free(text);
    ASSERT_TRUE(ok);
}

TEST(parse_rejects_fields)
{
    char buf[4096];
    static const struct {
        const char *from;
        const char *to;
        const char *needle;
    } cases[] = {
        {"\"type\": \"fact\", ", "", "memories[0].type: missing"},
        {"\"fact\"", "\"opinion\"", "memories[0].type: \"opinion\""},
        {"\"fact\"", "1", "memories[0].type: expected"},
        {"\"content\": \"User is allergic to peanuts\", ", "", "memories[0].content: missing"},
        {"\"User is allergic to peanuts\"", "\"\"", "memories[0].content: empty"},
        {"\"User is allergic to peanuts\"", "\" \\n\\t \"", "memories[0].content: empty"},
        {"\"User is allergic to peanuts\"", "42", "memories[0].content: expected a string"},
        {"\"User is allergic to peanuts\"", "null", "memories[0].content: expected a string"},
        {"\"allergy\"", "7", "memories[0].attribute: expected a string or null"},
        {"\"allergy\"", "\"food.allergy\"", "memories[0].attribute: \"food.allergy\""},
        {"\"allergy\"", "\"caf\xc3\xa9\"", "memories[0].attribute"},
        {"\"peanuts\", \"entity\"", "[\"peanuts\"], \"entity\"", "memories[0].value: expected"},
        {"\"Peanuts\"", "false", "memories[0].entity: expected"},
        {"\"constraint\"", "\"person\"", "memories[0].entity_kind: expected"},
        {"\"constraint\"", "3", "memories[0].entity_kind: expected"},
        {"-1", "2", "memories[0].polarity: expected -1, 0 or 1"},
        {"-1", "\"-1\"", "memories[0].polarity"},
        {"-1", "-1.0", "memories[0].polarity"},
        {"-1", "true", "memories[0].polarity"},
        {"0.9", "1.5", "memories[0].confidence: 1.5 is outside 0..1"},
        {"0.9", "-0.1", "memories[0].confidence: -0.1 is outside 0..1"},
        {"0.9", "\"high\"", "memories[0].confidence: expected a number"},
        {"\"confidence\": 0.9, ", "", "memories[0].confidence: missing"},
        {"0.95", "1e9", "memories[0].importance: 1e+09 is outside 0..1"},
        {"0.95", "null", "memories[0].importance: expected a number"},
        {"\"importance\": 0.95, ", "", "memories[0].importance: missing"},
        {"\"source\": 2", "\"source\": 0", "memories[0].source: 0 is not a turn number (1..3)"},
        {"\"source\": 2", "\"source\": 4", "memories[0].source: 4 is not a turn number"},
        {"\"source\": 2", "\"source\": -1", "memories[0].source: -1"},
        {"\"source\": 2", "\"source\": 2.0", "memories[0].source: expected an integer"},
        {"\"source\": 2", "\"source\": \"2\"", "memories[0].source: expected an integer"},
        {"\"source\": 2", "\"source\": 99999999999999999", "memories[0].source"},
        {", \"source\": 2", "", "memories[0].source: missing"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!rejects(variant(buf, sizeof(buf), cases[i].from, cases[i].to), 3,
                     cases[i].needle)) {
            bad++;
        }
    }
    ASSERT_EQ(bad, 0);

    /* Over-long strings. */
    size_t long_len = EXTRACT_CONTENT_MAX + 1;
    char *big = malloc(long_len + 1);
    char *text = malloc(long_len + 512);
    ASSERT_TRUE(big != NULL && text != NULL);
    memset(big, 'x', long_len);
    big[long_len] = '\0';
    snprintf(text, long_len + 512, "{\"memories\": [{\"type\": \"fact\", \"content\": \"%s\", "
             "\"confidence\": 0.5, \"importance\": 0.5, \"source\": 1}]}", big);
    int ok1 = rejects(text, 1, "memories[0].content: 16385 bytes, over the limit of 16384");
    big[EXTRACT_CONTENT_MAX] = '\0';    /* exactly the limit is fine */
    snprintf(text, long_len + 512, "{\"memories\": [{\"type\": \"fact\", \"content\": \"%s\", "
             "\"confidence\": 0.5, \"importance\": 0.5, \"source\": 1}]}", big);
    extract_result *r = NULL;
    char err[256];
    int rc = parse(text, 1, &r, err, sizeof(err));
    extract_result_free(r);
    big[EXTRACT_ATTR_MAX + 1] = '\0';
    snprintf(text, long_len + 512, "{\"memories\": [{\"type\": \"fact\", \"content\": \"c\", "
             "\"attribute\": \"%s\", \"value\": \"v\", \"confidence\": 0.5, \"importance\": 0.5, "
             "\"source\": 1}]}", big);
    int ok2 = rejects(text, 1, "memories[0].attribute: 65 bytes");
    free(big);
    free(text);
    ASSERT_TRUE(ok1);
    ASSERT_OK(rc);
    ASSERT_TRUE(ok2);
}

TEST(parse_item_limit)
{
    size_t cap = (EXTRACT_LLM_ITEMS_MAX + 2) * (sizeof(ITEM_OK) + 2) + 64;
    char *text = malloc(cap);
    ASSERT_TRUE(text != NULL);
    for (size_t n = EXTRACT_LLM_ITEMS_MAX; n <= EXTRACT_LLM_ITEMS_MAX + 1; n++) {
        size_t len = (size_t)snprintf(text, cap, "{\"memories\": [");
        for (size_t i = 0; i < n; i++) {
            len += (size_t)snprintf(text + len, cap - len, "%s" ITEM_OK, i ? "," : "");
        }
        snprintf(text + len, cap - len, "]}");
        extract_result *r = NULL;
        char err[256];
        int rc = parse(text, 2, &r, err, sizeof(err));
        if (n == EXTRACT_LLM_ITEMS_MAX) {
            ASSERT_OK(rc);
            ASSERT_EQ(r->n, EXTRACT_LLM_ITEMS_MAX);
            extract_result_free(r);
        } else {
            ASSERT_EQ(rc, STRATA_EPROTO);
            ASSERT_TRUE(strstr(err, "101 memories, over the limit of 100") != NULL);
        }
    }
    free(text);
}

TEST(parse_bad_item_rejects_all)
{
    /* The documented choice: one bad item fails the whole reply. */
    extract_result *r = (extract_result *)1;
    char err[256];
    ASSERT_EQ(parse("{\"memories\": [" ITEM_OK ", " ITEM_OK ", {\"type\": \"fact\"}]}", 2, &r,
                    err, sizeof(err)), STRATA_EPROTO);
    ASSERT_TRUE(r == NULL);
    ASSERT_TRUE(strstr(err, "memories[2].content: missing") != NULL);
    /* NULL errbuf is fine; the message is still in strata_errmsg(). */
    ASSERT_EQ(extract_llm_parse("{}", 2, 1, &r, NULL, 0), STRATA_EPROTO);
    ASSERT_TRUE(strstr(strata_errmsg(), "memories") != NULL);
    /* A short errbuf is cut, not overrun. */
    char small[8];
    ASSERT_EQ(extract_llm_parse("{}", 2, 1, &r, small, sizeof(small)), STRATA_EPROTO);
    ASSERT_EQ(strlen(small), 7);
}

TEST(parse_alloc_failures)
{
    const char *text = "{\"memories\": [" ITEM_OK ", " ITEM_OK "]}";
    bool done = false;
    for (long n = 0; n < 200 && !done; n++) {
        extract_result *r = NULL;
        char err[128];
        strata_alloc_fail_after(n);
        int rc = extract_llm_parse(text, strlen(text), 2, &r, err, sizeof(err));
        unsigned long used = strata_alloc_count();
        strata_alloc_fail_after(-1);
        if (rc == STRATA_OK) {
            done = used <= (unsigned long)n;
            extract_result_free(r);
        } else {
            ASSERT_EQ(rc, STRATA_ENOMEM);
            ASSERT_TRUE(r == NULL);
        }
    }
    ASSERT_TRUE(done);
}

/* ---- against the stub server -------------------------------------------- */

static llm_http_options opts_for(const stub_server *s)
{
    llm_http_options o;
    llm_http_options_init(&o);
    o.base_url = s->base_url;
    o.model = "extract-model";
    o.timeout_ms = 5000;
    o.max_retries = 0;
    return o;
}

/* Script the stub's chat content. */
static int set_content(stub_server *s, const char *mode, const char *content)
{
    json_t *ctl = json_pack("{s:s, s:s, s:i, s:i}", "mode", mode, "content", content,
                            "retry_after", 0, "delay_ms", 3000);
    char *body = json_dumps(ctl, 0);
    json_decref(ctl);
    int rc = body != NULL ? stub_control(s, body) : -1;
    free(body);
    return rc;
}

static const strata_turn g_turns[] = {
    {STRATA_ROLE_USER, (char *)"I'm a senior developer at Acme", 30, 0, 1},
    {STRATA_ROLE_ASSISTANT, (char *)"Congrats! Where do you live?", 28, 0, 2},
    {STRATA_ROLE_USER, (char *)"Berlin. I'm allergic to peanuts", 31, 0, 3},
};

/* Run the extractor once over g_turns (or turns); rc, *out and err filled. */
static int extract_with(const llm_http_options *o, const strata_turn *turns, size_t n,
                        extract_result **out, char *err, size_t cap)
{
    extractor *x = NULL;
    int rc = extractor_llm_create(o, &x);
    if (rc != STRATA_OK) {
        return rc;
    }
    *out = (extract_result *)1;
    rc = x->ops->extract(x, turns, n, out, err, cap);
    if (rc != STRATA_OK && *out != NULL) {
        rc = 1000;  /* *out must be NULL on failure */
    }
    extractor_free(x);
    return rc;
}

STUB_TEST(llm_valid_output)
{
    const char *reply =
        "{\"memories\": ["
        "{\"type\": \"fact\", \"content\": \"User is a senior developer\", \"attribute\": "
        "\"role\", \"value\": \"senior developer\", \"entity\": null, \"entity_kind\": null, "
        "\"polarity\": 0, \"confidence\": 0.8, \"importance\": 0.7, \"source\": 1}, "
        "{\"type\": \"fact\", \"content\": \"User lives in Berlin\", \"attribute\": "
        "\"location\", \"value\": \"Berlin\", \"entity\": \"berlin\", \"entity_kind\": "
        "\"topic\", \"polarity\": 0, \"confidence\": 0.7, \"importance\": 0.6, \"source\": 3}, "
        "{\"type\": \"fact\", \"content\": \"User is allergic to peanuts\", \"attribute\": "
        "\"allergy\", \"value\": \"peanuts\", \"entity\": \"peanuts\", \"entity_kind\": "
        "\"constraint\", \"polarity\": -1, \"confidence\": 0.9, \"importance\": 0.95, "
        "\"source\": 3}]}";
    ASSERT_OK(set_content(stub, "ok", reply));
    llm_http_options o = opts_for(stub);
    extract_result *r = NULL;
    char err[256] = "";
    int rc = extract_with(&o, g_turns, 3, &r, err, sizeof(err));
    if (rc != STRATA_OK) {
        fprintf(stderr, "  %s\n", err);
    }
    ASSERT_OK(rc);
    ASSERT_EQ(r->n, 3);
    ASSERT_STREQ(r->items[0].attribute, "role");
    ASSERT_EQ(r->items[0].source, 0);
    ASSERT_STREQ(r->items[1].value, "Berlin");
    ASSERT_EQ(r->items[1].source, 2);
    ASSERT_STREQ(r->items[2].entity_kind, "constraint");
    ASSERT_NEAR(r->items[2].importance, 0.95, 1e-6);
    extract_result_free(r);

    /* What was sent: a system prompt asking for JSON, the numbered turns. */
    json_t *st = stub_stats(stub);
    ASSERT_TRUE(st != NULL);
    json_t *req = json_object_get(st, "last_request");
    json_t *msgs = json_object_get(req, "messages");
    const char *sys = json_string_value(json_object_get(json_array_get(msgs, 0), "content"));
    const char *usr = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
    const char *fmt = json_string_value(
        json_object_get(json_object_get(req, "response_format"), "type"));
    int ok = json_array_size(msgs) == 2 && sys != NULL && strstr(sys, "\"memories\"") &&
             strstr(sys, "third person") && usr != NULL &&
             strstr(usr, "[1] user: I'm a senior developer at Acme\n") &&
             strstr(usr, "[2] assistant: Congrats! Where do you live?\n") &&
             strstr(usr, "[3] user: Berlin. I'm allergic to peanuts\n") && fmt &&
             strcmp(fmt, "json_object") == 0 &&
             json_integer_value(json_object_get(st, "chat")) == 1;
    if (!ok) {
        fprintf(stderr, "  request: %s\n", usr ? usr : "(none)");
    }
    json_decref(st);
    ASSERT_TRUE(ok);
}

STUB_TEST(llm_fenced_output)
{
    ASSERT_OK(set_content(stub, "ok", "```json\n{\"memories\": [{\"type\": \"preference\", "
                          "\"content\": \"User loves hiking\", \"attribute\": \"likes\", "
                          "\"value\": \"hiking\", \"entity\": \"hiking\", \"entity_kind\": "
                          "\"topic\", \"polarity\": 1, \"confidence\": 0.7, \"importance\": "
                          "0.5, \"source\": 1}]}\n```"));
    llm_http_options o = opts_for(stub);
    extract_result *r = NULL;
    char err[256] = "";
    ASSERT_OK(extract_with(&o, g_turns, 3, &r, err, sizeof(err)));
    ASSERT_EQ(r->n, 1);
    ASSERT_STREQ(r->items[0].content, "User loves hiking");
    extract_result_free(r);
}

STUB_TEST(llm_bad_output)
{
    static const struct {
        const char *content;
        const char *needle;
    } cases[] = {
        {"{\"memories\": [", "not JSON"},
        {"I found these memories: the user likes hiking.", "not JSON"},
        {"{\"facts\": []}", "\"memories\": missing"},
        {"{\"memories\": [{\"type\": \"fact\", \"content\": 5, \"confidence\": 0.5, "
         "\"importance\": 0.5, \"source\": 1}]}", "memories[0].content"},
        {"{\"memories\": [{\"type\": \"fact\", \"content\": \"User x\", \"confidence\": 7, "
         "\"importance\": 0.5, \"source\": 1}]}", "memories[0].confidence: 7 is outside"},
        {"{\"memories\": [{\"type\": \"fact\", \"content\": \"User x\", \"confidence\": 0.5, "
         "\"importance\": 0.5, \"source\": 9}]}", "memories[0].source: 9"},
        /* Turn 2 is the assistant's: not a source of facts about the user. */
        {"{\"memories\": [{\"type\": \"fact\", \"content\": \"User x\", \"confidence\": 0.5, "
         "\"importance\": 0.5, \"source\": 2}]}", "memories[0].source: turn 2 is not a user"},
    };
    llm_http_options o = opts_for(stub);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ASSERT_OK(set_content(stub, "ok", cases[i].content));
        extract_result *r = NULL;
        char err[256] = "";
        int rc = extract_with(&o, g_turns, 3, &r, err, sizeof(err));
        if (rc != STRATA_EPROTO || strstr(err, cases[i].needle) == NULL) {
            fprintf(stderr, "  case %zu: rc %d \"%s\", wanted \"%s\"\n", i, rc, err,
                    cases[i].needle);
        }
        ASSERT_EQ(rc, STRATA_EPROTO);
        ASSERT_TRUE(strstr(err, cases[i].needle) != NULL);
    }
}

STUB_TEST(llm_server_errors)
{
    llm_http_options o = opts_for(stub);
    extract_result *r = NULL;
    char err[512] = "";
    /* Malformed HTTP body (not our validator: the chat client's). */
    ASSERT_OK(set_content(stub, "malformed", "{}"));
    ASSERT_EQ(extract_with(&o, g_turns, 3, &r, err, sizeof(err)), STRATA_EPROTO);
    ASSERT_TRUE(strstr(err, "llm extractor") != NULL);
    /* 500 after retries: EIO, with the server's message. */
    o.max_retries = 1;
    ASSERT_OK(set_content(stub, "error500", "{}"));
    ASSERT_EQ(extract_with(&o, g_turns, 3, &r, err, sizeof(err)), STRATA_EIO);
    ASSERT_TRUE(strstr(err, "HTTP 500") != NULL);
    ASSERT_TRUE(strstr(strata_errmsg(), "HTTP 500") != NULL);
    ASSERT_EQ(stub_count(stub, "chat"), 2);
    /* 429: busy. */
    o.max_retries = 0;
    ASSERT_OK(set_content(stub, "error429", "{}"));
    ASSERT_EQ(extract_with(&o, g_turns, 3, &r, err, sizeof(err)), STRATA_EBUSY);
    /* Timeout. */
    o.timeout_ms = 300;
    ASSERT_OK(set_content(stub, "slow", "{\"memories\": []}"));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASSERT_EQ(extract_with(&o, g_turns, 3, &r, err, sizeof(err)), STRATA_ETIMEDOUT);
    ASSERT_TRUE(stub_elapsed_ms(&t0) < 2500);
    ASSERT_TRUE(strstr(err, "timed out") != NULL);
    /* Refused connection. */
    int port = stub_dead_port();
    ASSERT_TRUE(port > 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    o.base_url = url;
    o.timeout_ms = 2000;
    ASSERT_EQ(extract_with(&o, g_turns, 3, &r, err, sizeof(err)), STRATA_EIO);
}

STUB_TEST(llm_no_user_turns_no_request)
{
    ASSERT_OK(set_content(stub, "ok", "{\"memories\": []}"));
    llm_http_options o = opts_for(stub);
    strata_turn turns[] = {
        {STRATA_ROLE_ASSISTANT, (char *)"I'm a doctor", 12, 0, 1},
        {STRATA_ROLE_USER, (char *)"", 0, 0, 2},
    };
    extract_result *r = NULL;
    char err[256] = "";
    ASSERT_OK(extract_with(&o, turns, 2, &r, err, sizeof(err)));
    ASSERT_EQ(r->n, 0);
    extract_result_free(r);
    ASSERT_OK(extract_with(&o, NULL, 0, &r, err, sizeof(err)));
    ASSERT_EQ(r->n, 0);
    extract_result_free(r);
    ASSERT_EQ(stub_count(stub, "chat"), 0);
}

STUB_TEST(llm_prompt_is_clean_utf8_and_bounded)
{
    ASSERT_OK(set_content(stub, "ok", "{\"memories\": []}"));
    llm_http_options o = opts_for(stub);
    /* Invalid UTF-8 and a NUL inside: sent as U+FFFD and a space. */
    static const char bad[] = "I love caf\xc3 and \xff\0tea";
    /* A turn over EXTRACT_LLM_TURN_MAX, and many turns over the prompt cap. */
    size_t big_len = EXTRACT_LLM_TURN_MAX * 2;
    char *big = malloc(big_len);
    ASSERT_TRUE(big != NULL);
    memset(big, 'y', big_len);
    enum { N = 40 };
    strata_turn turns[N];
    for (size_t i = 0; i < N; i++) {
        turns[i] = (strata_turn){STRATA_ROLE_USER, big, big_len, 0, (uint32_t)i + 1};
    }
    turns[N - 1] = (strata_turn){STRATA_ROLE_USER, (char *)bad, sizeof(bad) - 1, 0, N};
    extract_result *r = NULL;
    char err[256] = "";
    int rc = extract_with(&o, turns, N, &r, err, sizeof(err));
    free(big);
    if (rc != STRATA_OK) {
        fprintf(stderr, "  %s\n", err);
    }
    ASSERT_OK(rc);
    extract_result_free(r);
    json_t *st = stub_stats(stub);
    json_t *msgs = json_object_get(json_object_get(st, "last_request"), "messages");
    const char *usr = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
    int ok = usr != NULL && strlen(usr) <= EXTRACT_LLM_PROMPT_MAX + 4096 &&
             strstr(usr, "[40] user: I love caf\xef\xbf\xbd and \xef\xbf\xbd tea\n") != NULL &&
             strstr(usr, "[1] user:") == NULL &&       /* the oldest were left out */
             strstr(usr, "[39] user: yyy") != NULL && strstr(usr, "[...]") != NULL;
    if (!ok) {
        fprintf(stderr, "  prompt of %zu bytes: %.200s\n", usr ? strlen(usr) : 0,
                usr ? usr : "(none)");
    }
    json_decref(st);
    ASSERT_TRUE(ok);

    /* Turns of invalid bytes triple in size as U+FFFD: still within the limit. */
    char *junk = malloc(EXTRACT_LLM_TURN_MAX);
    ASSERT_TRUE(junk != NULL);
    memset(junk, 0xff, EXTRACT_LLM_TURN_MAX);
    strata_turn jt[N];
    for (size_t i = 0; i < N; i++) {
        jt[i] = (strata_turn){STRATA_ROLE_USER, junk, 1000 + i * 100, 0, (uint32_t)i + 1};
    }
    rc = extract_with(&o, jt, N, &r, err, sizeof(err));
    free(junk);
    if (rc != STRATA_OK) {
        fprintf(stderr, "  %s\n", err);
    }
    ASSERT_OK(rc);
    extract_result_free(r);

    /* A source among the left-out turns is rejected. */
    ASSERT_OK(set_content(stub, "ok", "{\"memories\": [{\"type\": \"fact\", \"content\": "
                          "\"User x\", \"confidence\": 0.5, \"importance\": 0.5, "
                          "\"source\": 1}]}"));
    big = malloc(big_len);
    ASSERT_TRUE(big != NULL);
    memset(big, 'y', big_len);
    for (size_t i = 0; i + 1 < N; i++) {
        turns[i].content = big;
    }
    rc = extract_with(&o, turns, N, &r, err, sizeof(err));
    free(big);
    ASSERT_EQ(rc, STRATA_EPROTO);
    ASSERT_TRUE(strstr(err, "not a user turn of the prompt") != NULL);
}

TEST(llm_create_errors)
{
    extractor *x = (extractor *)1;
    ASSERT_EQ(extractor_llm_create(NULL, &x), STRATA_EINVAL);
    ASSERT_TRUE(x == NULL);
    llm_http_options o;
    llm_http_options_init(&o);
    o.base_url = "ftp://example.com";
    ASSERT_EQ(extractor_llm_create(&o, &x), STRATA_EINVAL);
    ASSERT_TRUE(x == NULL);
    o.base_url = "http://127.0.0.1:1";
    ASSERT_OK(extractor_llm_create(&o, &x));
    ASSERT_STREQ(x->ops->name, "llm");
    extract_result *r = (extract_result *)1;
    char err[128];
    ASSERT_EQ(x->ops->extract(x, NULL, 2, &r, err, sizeof(err)), STRATA_EINVAL);
    ASSERT_TRUE(r == NULL);
    extractor_free(x);
}

TEST_MAIN(TEST_ENTRY(parse_valid), TEST_ENTRY(parse_fenced), TEST_ENTRY(parse_normalises),
          TEST_ENTRY(parse_rejects_malformed), TEST_ENTRY(parse_rejects_fields),
          TEST_ENTRY(parse_item_limit), TEST_ENTRY(parse_bad_item_rejects_all),
          TEST_ENTRY(parse_alloc_failures), TEST_ENTRY(llm_valid_output),
          TEST_ENTRY(llm_fenced_output), TEST_ENTRY(llm_bad_output),
          TEST_ENTRY(llm_server_errors), TEST_ENTRY(llm_no_user_turns_no_request),
          TEST_ENTRY(llm_prompt_is_clean_utf8_and_bounded), TEST_ENTRY(llm_create_errors))
