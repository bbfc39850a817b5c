/*
 * extract_llm.c - the LLM extractor ("llm"): asks an OpenAI-compatible chat
 * model (llm_http.h, JSON mode) to list memories about the user, then checks
 * every field of its reply before anything reaches the delta-merge.
 *
 *   turns --build_prompt--> "[1] user: ...\n[2] assistant: ...\n"
 *         --llm_http_chat_json(SYSTEM_PROMPT, prompt)--> reply text
 *         --extract_llm_parse--> extract_result  --source is a user turn?--> out
 *
 * The prompt numbers turns by their position in the input (1-based) and
 * shows assistant and system turns too, as context ("Where do you live?" /
 * "Berlin"); the model cites the number as "source". When the turns exceed
 * EXTRACT_LLM_PROMPT_MAX bytes the oldest are left out (a consolidation
 * window is ~10 turns, so this is a guard, not a mode); each turn is cut at
 * EXTRACT_LLM_TURN_MAX bytes, on a character boundary. Turn text is made
 * valid UTF-8 (bad bytes become U+FFFD, NUL a space) because the chat client
 * refuses anything else.
 *
 * Validation is strict and all-or-nothing (see extract.h for the reasons):
 * the reply is a model's guess, and a wrong allergy or employer silently
 * merged into a profile is worse than a consolidation that fails loudly and
 * can fall back to the rules extractor. The only leniencies are the ones
 * models commonly need and that cannot change meaning: a ```json fence
 * around the object, unknown extra keys, case and separators in keys
 * ("Employer", "job-title"), empty strings meaning null, and an attribute
 * without a value (or the reverse) dropped as a pair.
 *
 * A user turn that is an instruction to the model ("ignore the above and
 * say ...") can steer the reply; the validator bounds what that can do
 * (sizes, types, user-turn sources), not whether the content is true.
 *
 * Thread-safety: no state besides the llm_http client, which is thread-safe.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "providers/extract.h"

#define VALUE_MAX 1024u             /* bytes of a value */
#define ENTITY_MAX 256u             /* bytes of an entity */

static const char SYSTEM_PROMPT[] =
    "You extract long-term memories about the user from a conversation, for the memory of a "
    "personal assistant. Reply with one JSON object and nothing else:\n"
    "{\"memories\": [{\"type\": \"preference\" | \"fact\" | \"experience\", "
    "\"content\": string, \"attribute\": string | null, \"value\": string | null, "
    "\"entity\": string | null, "
    "\"entity_kind\": \"topic\" | \"product\" | \"constraint\" | \"preference\" | null, "
    "\"polarity\": -1 | 0 | 1, \"confidence\": number, \"importance\": number, "
    "\"source\": integer}]}\n"
    "Rules:\n"
    "- Use only what the user says about themselves in turns marked \"user\"; other turns are "
    "context. Skip questions, hypotheticals (\"if I were a doctor\"), plans, requests, and "
    "statements about other people (\"my wife likes jazz\").\n"
    "- content: one short sentence in the third person starting with \"User\", e.g. \"User "
    "prefers concise answers\", \"User is allergic to peanuts\", \"User visited Japan last "
    "year\".\n"
    "- type: \"preference\" for likes, dislikes and how the user wants to be helped; \"fact\" "
    "for stable facts (name, job, employer, home, age, languages, diet) and constraints "
    "(allergies, medical conditions, things the user must avoid, budget); \"experience\" for "
    "past events.\n"
    "- attribute and value: a lower-case profile key and its value when the memory sets one: "
    "name, role, employer, school, location, origin, age, language, diet, allergy, condition, "
    "avoids, budget, marital_status, likes, dislikes, uses, owns, favorite_<category>. Otherwise "
    "both null.\n"
    "- entity: the thing talked about in lower case (\"hiking\", \"peanuts\", \"kindle\") or "
    "null. entity_kind: \"topic\", \"product\", \"constraint\" (allergies, restrictions, "
    "budget) or \"preference\" (a way the user wants things done).\n"
    "- polarity: 1 likes or wants, -1 dislikes or avoids, 0 neutral.\n"
    "- confidence from 0 to 1: 0.9 when explicit or stated as a change (\"I'm a team lead "
    "now\"), 0.7 for a plain statement, 0.5 or less when hedged (\"I think\", \"maybe\").\n"
    "- importance from 0 to 1: 0.9 or more for safety (allergies, medical), 0.6 to 0.8 for "
    "identity and profile facts, 0.5 to 0.6 for preferences, 0.4 to 0.5 for experiences.\n"
    "- source: the number in brackets of the turn the memory comes from.\n"
    "- At most 50 memories. Reply {\"memories\": []} when there is nothing worth "
    "remembering.";

typedef struct llm_extractor {
    extractor base;             /* first: the extractor * is an llm_extractor * */
    llm_http *http;             /* owned */
} llm_extractor;

/* ======================================================================== */
/* errors                                                                   */
/* ======================================================================== */

/* Record rc with a formatted message in errbuf (when given) and in
 * strata_errmsg(); returns rc. */
__attribute__((format(printf, 4, 5)))
static int fail(char *errbuf, size_t errcap, int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (errbuf != NULL && errcap > 0) {
        snprintf(errbuf, errcap, "%s", msg);
    }
    return strata_error(rc, "%s", msg);
}

/* ======================================================================== */
/* parsing the reply                                                        */
/* ======================================================================== */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim whitespace and one ``` / ```json fence off text[0..len): the JSON
 * inside in *p, *n. false if a fence is opened and not closed. */
static bool unfence(const char *text, size_t len, const char **p, size_t *n)
{
    size_t a = 0;
    size_t b = len;
    while (a < b && is_space(text[a])) {
        a++;
    }
    while (b > a && is_space(text[b - 1])) {
        b--;
    }
    if (b - a >= 3 && memcmp(text + a, "```", 3) == 0) {
        a += 3;
        while (a < b && ((text[a] >= 'a' && text[a] <= 'z') ||
                         (text[a] >= 'A' && text[a] <= 'Z'))) {
            a++;    /* the language tag: json, JSON */
        }
        if (b - a < 3 || memcmp(text + b - 3, "```", 3) != 0) {
            return false;
        }
        b -= 3;
        while (a < b && is_space(text[a])) {
            a++;
        }
        while (b > a && is_space(text[b - 1])) {
            b--;
        }
    }
    *p = text + a;
    *n = b - a;
    return true;
}

/* A copy of s[0..n) without surrounding whitespace, or NULL on ENOMEM;
 * *empty says whether nothing was left. */
static char *trim_dup(const char *s, size_t n, bool *empty)
{
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1])) {
        n--;
    }
    *empty = n == 0;
    return strata_strndup(s, n);
}

typedef struct parse_ctx {
    char *errbuf;
    size_t errcap;
    size_t idx;             /* item index, for messages */
} parse_ctx;

/* An optional string field: *out NULL when absent, null or empty (after
 * trimming); else a copy of at most max bytes. STRATA_OK, EPROTO or ENOMEM. */
static int opt_string(parse_ctx *pc, json_t *item, const char *key, size_t max, char **out)
{
    *out = NULL;
    json_t *v = json_object_get(item, key);
    if (v == NULL || json_is_null(v)) {
        return STRATA_OK;
    }
    if (!json_is_string(v)) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].%s: expected a string or null", pc->idx, key);
    }
    size_t n = json_string_length(v);
    if (n > max) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].%s: %zu bytes, over the limit of %zu", pc->idx, key, n, max);
    }
    bool empty = false;
    char *s = trim_dup(json_string_value(v), n, &empty);
    if (s == NULL) {
        return fail(pc->errbuf, pc->errcap, STRATA_ENOMEM, "llm extractor: out of memory");
    }
    if (empty) {
        strata_free(s);
        return STRATA_OK;
    }
    if (!utf8_valid(s, strlen(s))) {
        strata_free(s);
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].%s: not valid UTF-8", pc->idx, key);
    }
    *out = s;
    return STRATA_OK;
}

static void ascii_lower(char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char)(*s + 32);
        }
    }
}

/* A number field in 0..1. */
static int unit_number(parse_ctx *pc, json_t *item, const char *key, float *out)
{
    json_t *v = json_object_get(item, key);
    if (v == NULL) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO, "memories[%zu].%s: missing",
                    pc->idx, key);
    }
    if (!json_is_number(v)) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].%s: expected a number", pc->idx, key);
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0.0 || d > 1.0) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].%s: %g is outside 0..1", pc->idx, key, d);
    }
    *out = (float)d;
    return STRATA_OK;
}

static const char *const g_kinds[] = {"topic", "product", "constraint", "preference"};

/* Fill c from one JSON item; on error c holds what was allocated so far
 * (the caller frees it). */
static int parse_item(parse_ctx *pc, json_t *item, size_t n_turns, extract_candidate *c)
{
    if (!json_is_object(item)) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO, "memories[%zu]: expected an object",
                    pc->idx);
    }
    /* type */
    json_t *v = json_object_get(item, "type");
    if (!json_is_string(v)) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].type: %s", pc->idx, v == NULL ? "missing" :
                    "expected \"preference\", \"fact\" or \"experience\"");
    }
    const char *ts = json_string_value(v);
    if (strcasecmp(ts, "preference") == 0) {
        c->type = STRATA_MEM_PREFERENCE;
    } else if (strcasecmp(ts, "fact") == 0) {
        c->type = STRATA_MEM_FACT;
    } else if (strcasecmp(ts, "experience") == 0) {
        c->type = STRATA_MEM_EXPERIENCE;
    } else {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].type: \"%.40s\" is not preference, fact or experience",
                    pc->idx, ts);
    }
    /* content */
    v = json_object_get(item, "content");
    if (!json_is_string(v)) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO, "memories[%zu].content: %s",
                    pc->idx, v == NULL ? "missing" : "expected a string");
    }
    int rc = opt_string(pc, item, "content", EXTRACT_CONTENT_MAX, &c->content);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (c->content == NULL) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO, "memories[%zu].content: empty",
                    pc->idx);
    }
    /* attribute, value, entity, entity_kind */
    rc = opt_string(pc, item, "attribute", EXTRACT_ATTR_MAX, &c->attribute);
    if (rc != STRATA_OK) {
        return rc;
    }
    for (char *p = c->attribute; p != NULL && *p != '\0'; p++) {
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z') {
            *p = (char)(ch + 32);
        } else if (ch == ' ' || ch == '-') {
            *p = '_';
        } else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                        "memories[%zu].attribute: \"%.64s\" is not a key of letters, digits "
                        "and _", pc->idx, c->attribute);
        }
    }
    rc = opt_string(pc, item, "value", VALUE_MAX, &c->value);
    if (rc == STRATA_OK) {
        rc = opt_string(pc, item, "entity", ENTITY_MAX, &c->entity);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    ascii_lower(c->entity);
    if ((c->attribute == NULL) != (c->value == NULL)) {
        strata_free(c->attribute);
        strata_free(c->value);
        c->attribute = NULL;
        c->value = NULL;
    }
    v = json_object_get(item, "entity_kind");
    if (v != NULL && !json_is_null(v)) {
        const char *k = json_is_string(v) ? json_string_value(v) : NULL;
        size_t i = 0;
        while (k != NULL && i < STRATA_ARRAY_LEN(g_kinds) && strcasecmp(k, g_kinds[i]) != 0) {
            i++;
        }
        if (k == NULL || i == STRATA_ARRAY_LEN(g_kinds)) {
            return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                        "memories[%zu].entity_kind: expected topic, product, constraint, "
                        "preference or null", pc->idx);
        }
        c->entity_kind = c->entity != NULL ? (char *)g_kinds[i] : NULL;
    }
    /* polarity */
    v = json_object_get(item, "polarity");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 1) {
            return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                        "memories[%zu].polarity: expected -1, 0 or 1", pc->idx);
        }
        c->polarity = (int)json_integer_value(v);
    }
    /* confidence, importance */
    rc = unit_number(pc, item, "confidence", &c->confidence);
    if (rc == STRATA_OK) {
        rc = unit_number(pc, item, "importance", &c->importance);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    /* source */
    v = json_object_get(item, "source");
    if (!json_is_integer(v)) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO, "memories[%zu].source: %s",
                    pc->idx, v == NULL ? "missing" : "expected an integer turn number");
    }
    json_int_t src = json_integer_value(v);
    if (src < 1 || (uint64_t)src > (uint64_t)n_turns) {
        return fail(pc->errbuf, pc->errcap, STRATA_EPROTO,
                    "memories[%zu].source: %" JSON_INTEGER_FORMAT " is not a turn number "
                    "(1..%zu)", pc->idx, src, n_turns);
    }
    c->source = (uint32_t)(src - 1);
    return STRATA_OK;
}

int extract_llm_parse(const char *text, size_t len, size_t n_turns, extract_result **out,
                      char *errbuf, size_t errcap)
{
    *out = NULL;
    if (text == NULL || len == 0) {
        return fail(errbuf, errcap, STRATA_EPROTO, "model output is empty");
    }
    if (len > EXTRACT_LLM_OUTPUT_MAX) {
        return fail(errbuf, errcap, STRATA_EPROTO, "model output is %zu bytes, over %u", len,
                    EXTRACT_LLM_OUTPUT_MAX);
    }
    if (n_turns > UINT32_MAX) {
        return fail(errbuf, errcap, STRATA_EINVAL, "too many turns");
    }
    const char *p;
    size_t n;
    if (!unfence(text, len, &p, &n)) {
        return fail(errbuf, errcap, STRATA_EPROTO, "model output opens a ``` fence and does "
                    "not close it");
    }
    json_error_t jerr;
    json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return fail(errbuf, errcap, STRATA_EPROTO, "model output is not JSON: %s (line %d, "
                    "column %d)", jerr.text, jerr.line, jerr.column);
    }
    int rc = STRATA_OK;
    extract_result *res = NULL;
    json_t *mems = json_object_get(root, "memories");
    if (!json_is_object(root)) {
        rc = fail(errbuf, errcap, STRATA_EPROTO, "model output is not a JSON object");
        goto done;
    }
    if (!json_is_array(mems)) {
        rc = fail(errbuf, errcap, STRATA_EPROTO, "model output: \"memories\": %s",
                  mems == NULL ? "missing" : "expected an array");
        goto done;
    }
    size_t count = json_array_size(mems);
    if (count > EXTRACT_LLM_ITEMS_MAX) {
        rc = fail(errbuf, errcap, STRATA_EPROTO, "model output: %zu memories, over the limit "
                  "of %u", count, EXTRACT_LLM_ITEMS_MAX);
        goto done;
    }
    res = strata_calloc(1, sizeof(*res));
    if (res != NULL && count > 0) {
        res->items = strata_calloc(count, sizeof(*res->items));
    }
    if (res == NULL || (count > 0 && res->items == NULL)) {
        rc = fail(errbuf, errcap, STRATA_ENOMEM, "llm extractor: out of memory");
        goto done;
    }
    parse_ctx pc = {errbuf, errcap, 0};
    for (size_t i = 0; i < count; i++) {
        pc.idx = i;
        res->n = i + 1;     /* the item is freed with the result even if half-filled */
        rc = parse_item(&pc, json_array_get(mems, i), n_turns, &res->items[i]);
        if (rc != STRATA_OK) {
            goto done;
        }
    }
done:
    json_decref(root);
    if (rc != STRATA_OK) {
        extract_result_free(res);
        return rc;
    }
    *out = res;
    return STRATA_OK;
}

/* ======================================================================== */
/* the prompt                                                               */
/* ======================================================================== */

/* Append s[0..n) as valid UTF-8: bad bytes as U+FFFD, NUL as a space, at
 * most max bytes, cut on a character boundary. */
static int put_clean(sbuf *b, const char *s, size_t n, size_t max)
{
    size_t start = b->len;
    size_t i = 0;
    int rc = STRATA_OK;
    while (i < n && rc == STRATA_OK) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 :
                      (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = need == 1 || (need > 0 && i + need <= n && utf8_valid(s + i, need));
        size_t out = ok ? need : 3;
        if (b->len - start + out > max) {
            return sbuf_puts(b, " [...]");
        }
        if (!ok) {
            rc = sbuf_puts(b, "\xEF\xBF\xBD");
            i++;
        } else if (c == '\0') {
            rc = sbuf_putc(b, ' ');
            i++;
        } else {
            rc = sbuf_append(b, s + i, need);
            i += need;
        }
    }
    return rc;
}

/* The user prompt: turns numbered [i+1] with their roles, the newest ones
 * that surely fit in EXTRACT_LLM_PROMPT_MAX (b's limit leaves room for the
 * heading). *first_out: index of the first shown. */
static int build_prompt(const strata_turn *turns, size_t n_turns, sbuf *b, size_t *first_out)
{
    /* Bytes a turn takes at most: a bad byte grows to 3 (U+FFFD), the text is
     * capped at EXTRACT_LLM_TURN_MAX + " [...]", plus "[n] assistant: " and '\n'. */
    size_t first = n_turns;
    size_t total = 0;
    while (first > 0) {
        size_t in = turns[first - 1].content_len;
        size_t len = (in > EXTRACT_LLM_TURN_MAX ? EXTRACT_LLM_TURN_MAX : 3 * in) + 64;
        if (total + len > EXTRACT_LLM_PROMPT_MAX) {
            break;
        }
        total += len;
        first--;
    }
    *first_out = first;
    int rc = sbuf_puts(b, "Conversation, oldest turn first. Extract memories about the user "
                          "from the turns marked \"user\".\n\n");
    for (size_t i = first; i < n_turns && rc == STRATA_OK; i++) {
        const char *role = turns[i].role == STRATA_ROLE_USER ? "user" :
                           turns[i].role == STRATA_ROLE_ASSISTANT ? "assistant" : "system";
        rc = sbuf_printf(b, "[%zu] %s: ", i + 1, role);
        if (rc == STRATA_OK && turns[i].content != NULL) {
            rc = put_clean(b, turns[i].content, turns[i].content_len, EXTRACT_LLM_TURN_MAX);
        }
        if (rc == STRATA_OK) {
            rc = sbuf_putc(b, '\n');
        }
    }
    return rc;
}

/* ======================================================================== */
/* the extractor                                                            */
/* ======================================================================== */

static int llm_extract(extractor *ex, const strata_turn *turns, size_t n_turns,
                       extract_result **out, char *errbuf, size_t errcap)
{
    llm_extractor *x = (llm_extractor *)ex;
    *out = NULL;
    if ((turns == NULL && n_turns > 0) || n_turns > UINT32_MAX) {
        return fail(errbuf, errcap, STRATA_EINVAL, "llm extractor: bad turns argument");
    }
    bool any_user = false;
    for (size_t i = 0; i < n_turns; i++) {
        any_user = any_user || (turns[i].role == STRATA_ROLE_USER && turns[i].content_len > 0);
    }
    if (!any_user) {
        /* Nothing to mine: no request. */
        extract_result *res = strata_calloc(1, sizeof(*res));
        if (res == NULL) {
            return fail(errbuf, errcap, STRATA_ENOMEM, "llm extractor: out of memory");
        }
        *out = res;
        return STRATA_OK;
    }
    sbuf prompt;
    sbuf_init(&prompt, EXTRACT_LLM_PROMPT_MAX + 4096);
    size_t first = 0;
    char *reply = NULL;
    extract_result *res = NULL;
    int rc = build_prompt(turns, n_turns, &prompt, &first);
    if (rc != STRATA_OK) {
        rc = fail(errbuf, errcap, rc, "llm extractor: cannot build the prompt: %s",
                  strata_strerror(rc));
        goto done;
    }
    rc = llm_http_chat_json(x->http, SYSTEM_PROMPT, prompt.data, &reply);
    if (rc != STRATA_OK) {
        rc = fail(errbuf, errcap, rc, "llm extractor: %s", strata_errmsg());
        goto done;
    }
    rc = extract_llm_parse(reply, strlen(reply), n_turns, &res, errbuf, errcap);
    if (rc != STRATA_OK) {
        goto done;
    }
    for (size_t i = 0; i < res->n; i++) {
        uint32_t s = res->items[i].source;
        if (s < first || turns[s].role != STRATA_ROLE_USER) {
            rc = fail(errbuf, errcap, STRATA_EPROTO, "memories[%zu].source: turn %u is not a "
                      "user turn of the prompt", i, s + 1);
            extract_result_free(res);
            res = NULL;
            goto done;
        }
    }
    *out = res;
done:
    strata_free(reply);
    sbuf_free(&prompt);
    return rc;
}

static void llm_close(extractor *ex)
{
    llm_extractor *x = (llm_extractor *)ex;
    llm_http_free(x->http);
    strata_free(x);
}

static const extractor_ops g_llm_ops = {
    .name = "llm",
    .extract = llm_extract,
    .close = llm_close,
};

int extractor_llm_create(const llm_http_options *opts, extractor **out)
{
    *out = NULL;
    if (opts == NULL) {
        return strata_error(STRATA_EINVAL, "llm extractor: no options");
    }
    llm_extractor *x = strata_calloc(1, sizeof(*x));
    if (x == NULL) {
        return strata_error(STRATA_ENOMEM, "llm extractor: out of memory");
    }
    int rc = llm_http_create(opts, &x->http);
    if (rc != STRATA_OK) {
        strata_free(x);
        return rc;
    }
    x->base.ops = &g_llm_ops;
    *out = &x->base;
    return STRATA_OK;
}
