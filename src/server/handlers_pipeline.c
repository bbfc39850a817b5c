/*
 * handlers_pipeline.c - the pipeline routes of API.md: the profile,
 * clarifications, distillation jobs and context recall.
 */
#include <string.h>

#include "server/server.h"

static bool param_id_ok(req_ctx *c, int i, const char *what)
{
    if (!strata_id_valid(c->params->value[i], c->params->len[i])) {
        respond_error(c->resp, 400, "invalid_id",
                      "%s must be 1-128 characters of [A-Za-z0-9_.:@-]", what);
        return false;
    }
    return true;
}

/* Write a JSON text produced by the engine, or the error. */
static void respond_json_text(req_ctx *c, int rc, char *json, int status)
{
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = status;
    sbuf_puts(&c->resp->body, json);
    strata_free(json);
}

void h_profile_get(req_ctx *c)
{
    if (!param_id_ok(c, 0, "user_id")) {
        return;
    }
    char *json = NULL;
    int rc = strata_profile_get(c->a->db, c->tenant, c->params->value[0], &json);
    respond_json_text(c, rc, json, 200);
}

void h_clarification_resolve(req_ctx *c)
{
    if (!param_id_ok(c, 0, "user_id")) {
        return;
    }
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"choose", "value", NULL};
    const char *choose = NULL;
    char *value = NULL;
    if (!body_only_keys(c, body, allowed) ||
        !body_get_string(c, body, "choose", false, &choose, NULL)) {
        goto out;
    }
    json_t *v = json_object_get(body, "value");
    if (v != NULL) {
        value = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    }
    if ((choose == NULL) == (value == NULL)) {
        respond_error(c->resp, 400, "invalid_argument",
                      "send {\"choose\": \"old\" | \"new\"} or {\"value\": ...}");
        goto out;
    }
    char *json = NULL;
    int rc = strata_clarification_resolve(c->a->db, c->tenant, c->params->value[0],
                                          c->params->value[1], choose, value, &json);
    if (rc == STRATA_EINVAL) {
        respond_error(c->resp, 422, "invalid_value", "%s", strata_errmsg());
    } else {
        respond_json_text(c, rc, json, 200);
    }
out:
    free(value);
    json_decref(body);
}

void h_distill(req_ctx *c)
{
    const char *user = NULL;
    json_t *body = NULL;
    if (c->req->body_len > 0) {
        body = body_json_object(c);
        if (body == NULL) {
            return;
        }
        static const char *const allowed[] = {"user_id", NULL};
        if (!body_only_keys(c, body, allowed) ||
            !body_get_string(c, body, "user_id", false, &user, NULL)) {
            json_decref(body);
            return;
        }
        if (user != NULL && !strata_id_valid(user, strlen(user))) {
            respond_error(c->resp, 400, "invalid_id",
                          "user_id must be 1-128 characters of [A-Za-z0-9_.:@-]");
            json_decref(body);
            return;
        }
    }
    char job_id[STRATA_JOB_ID_LEN];
    int rc = strata_distill(c->a->db, c->tenant, user, job_id);
    json_decref(body);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 202;
    sbuf_puts(&c->resp->body, "{\"job_id\":");
    json_put_cstr(&c->resp->body, job_id);
    sbuf_putc(&c->resp->body, '}');
}

void h_context(req_ctx *c)
{
    if (!param_id_ok(c, 0, "session_id")) {
        return;
    }
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"query", "budget_chars", NULL};
    const char *query = NULL;
    size_t budget = 4000;
    if (!body_only_keys(c, body, allowed) ||
        !body_get_string(c, body, "query", false, &query, NULL)) {
        json_decref(body);
        return;
    }
    json_t *b = json_object_get(body, "budget_chars");
    if (b != NULL && !json_is_null(b)) {
        if (!json_is_integer(b)) {
            respond_error(c->resp, 400, "wrong_type", "budget_chars must be an integer");
            json_decref(body);
            return;
        }
        json_int_t v = json_integer_value(b);
        if (v <= 0 || v > 1000000) {
            respond_error(c->resp, 422, "invalid_value", "budget_chars must be 1..1000000");
            json_decref(body);
            return;
        }
        budget = (size_t)v;
    }
    char *json = NULL;
    int rc = strata_context(c->a->db, c->tenant, c->params->value[0], query, budget, &json);
    json_decref(body);
    respond_json_text(c, rc, json, 200);
}
