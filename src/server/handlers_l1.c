/*
 * handlers_l1.c - the L1 routes of API.md: turns, sessions, state, end,
 * dirty sets, and job status. Each handler validates everything before it
 * calls the engine, so a rejected request changes nothing.
 */
#include <string.h>

#include "server/server.h"

/* Validate a captured id parameter; writes a 400 when it is not an id. */
static bool param_id(req_ctx *c, int idx, const char *what)
{
    if (!strata_id_valid(c->params->value[idx], c->params->len[idx])) {
        respond_error(c->resp, 400, "invalid_id",
                      "%s must be 1-128 characters of [A-Za-z0-9_.:@-]", what);
        return false;
    }
    return true;
}

void h_turn_append(req_ctx *c)
{
    if (!param_id(c, 0, "session_id")) {
        return;
    }
    const char *sid = c->params->value[0];
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"user_id", "role", "content", NULL};
    const char *user_id;
    const char *role_s;
    const char *content;
    size_t content_len;
    strata_role role;
    if (!body_only_keys(c, body, allowed) ||
        !body_get_string(c, body, "user_id", true, &user_id, NULL) ||
        !body_get_string(c, body, "role", true, &role_s, NULL) ||
        !body_get_string(c, body, "content", true, &content, &content_len)) {
        goto out;
    }
    if (!strata_id_valid(user_id, strlen(user_id))) {
        respond_error(c->resp, 400, "invalid_id",
                      "user_id must be 1-128 characters of [A-Za-z0-9_.:@-]");
        goto out;
    }
    if (strata_role_parse(role_s, &role) != STRATA_OK) {
        respond_error(c->resp, 422, "invalid_value",
                      "role must be \"user\", \"assistant\" or \"system\"");
        goto out;
    }
    if (content_len == 0) {
        respond_error(c->resp, 422, "invalid_value", "content must not be empty");
        goto out;
    }
    strata_turn_ack ack;
    int rc = strata_turn_append(c->a->db, c->tenant, sid, user_id, role, content, content_len,
                                &ack);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        goto out;
    }
    sbuf *b = &c->resp->body;
    c->resp->status = 201;
    sbuf_puts(b, "{\"session_id\":");
    json_put_cstr(b, sid);
    sbuf_puts(b, ",\"turn_count\":");
    json_put_u64(b, ack.turn_count);
    if (ack.consolidation_queued) {
        sbuf_puts(b, ",\"consolidation\":\"queued\",\"job_id\":");
        json_put_cstr(b, ack.job_id);
    } else {
        sbuf_puts(b, ",\"consolidation\":\"none\"");
    }
    sbuf_putc(b, '}');
out:
    json_decref(body);
}

void h_session_get(req_ctx *c)
{
    if (!param_id(c, 0, "session_id")) {
        return;
    }
    strata_session *s = NULL;
    int rc = strata_session_get(c->a->db, c->tenant, c->params->value[0], &s);
    if (rc != STRATA_OK) {
        if (rc == STRATA_ENOTFOUND) {
            respond_error(c->resp, 404, "not_found", "no session %s", c->params->value[0]);
        } else {
            respond_strata_error(c->resp, rc);
        }
        return;
    }
    rc = json_put_session(&c->resp->body, s);
    strata_session_free(s);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
    }
}

void h_session_stage(req_ctx *c)
{
    if (!param_id(c, 0, "session_id")) {
        return;
    }
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"current_stage", NULL};
    const char *stage;
    if (!body_only_keys(c, body, allowed) ||
        !body_get_string(c, body, "current_stage", true, &stage, NULL)) {
        json_decref(body);
        return;
    }
    strata_session *s = NULL;
    int rc = strata_session_set_stage(c->a->db, c->tenant, c->params->value[0], stage, &s);
    json_decref(body);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    rc = json_put_session_state(&c->resp->body, s);
    strata_session_free(s);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
    }
}

void h_session_end(req_ctx *c)
{
    if (!param_id(c, 0, "session_id")) {
        return;
    }
    /* No body is needed; one that is sent must be an empty JSON object. */
    if (c->req->body_len > 0) {
        json_t *body = body_json_object(c);
        if (body == NULL) {
            return;
        }
        static const char *const allowed[] = {NULL};
        bool ok = body_only_keys(c, body, allowed);
        json_decref(body);
        if (!ok) {
            return;
        }
    }
    char job_id[STRATA_JOB_ID_LEN];
    int rc = strata_session_end(c->a->db, c->tenant, c->params->value[0], job_id);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 202;
    sbuf_puts(&c->resp->body, "{\"job_id\":");
    json_put_cstr(&c->resp->body, job_id);
    sbuf_putc(&c->resp->body, '}');
}

void h_dirty_get(req_ctx *c)
{
    if (!param_id(c, 0, "user_id")) {
        return;
    }
    strata_strlist *l = NULL;
    int rc = strata_dirty_get(c->a->db, c->tenant, c->params->value[0], &l);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"user_id\":");
    json_put_cstr(b, c->params->value[0]);
    sbuf_puts(b, ",\"attributes\":[");
    for (size_t i = 0; i < l->n; i++) {
        if (i > 0) {
            sbuf_putc(b, ',');
        }
        json_put_cstr(b, l->items[i]);
    }
    sbuf_puts(b, "]}");
    strata_strlist_free(l);
}

void h_job_get(req_ctx *c)
{
    if (!param_id(c, 0, "job_id")) {
        return;
    }
    strata_job_info info;
    int rc = strata_job_get(c->a->db, c->tenant, c->params->value[0], &info);
    if (rc != STRATA_OK) {
        if (rc == STRATA_ENOTFOUND) {
            respond_error(c->resp, 404, "not_found", "no job %s", c->params->value[0]);
        } else {
            respond_strata_error(c->resp, rc);
        }
        return;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"job_id\":");
    json_put_cstr(b, info.job_id);
    sbuf_puts(b, ",\"kind\":");
    json_put_cstr(b, info.kind);
    sbuf_puts(b, ",\"status\":");
    json_put_cstr(b, strata_job_status_name(info.status));
    sbuf_puts(b, ",\"attempts\":");
    json_put_u64(b, info.attempts);
    if (info.status == STRATA_JOB_FAILED) {
        sbuf_puts(b, ",\"error\":");
        json_put_cstr(b, info.error);
    }
    sbuf_putc(b, '}');
}
