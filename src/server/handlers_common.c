/*
 * handlers_common.c - what every JSON handler needs: error bodies in the
 * API.md shape, the mapping from STRATA_E* codes to HTTP statuses, and strict
 * body parsing (content type, UTF-8, syntax, no unknown fields, typed fields).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/server.h"

void respond_error(http_response *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The message may quote client input: keep it valid UTF-8 for the JSON. */
    if (!utf8_valid(msg, strlen(msg))) {
        snprintf(msg, sizeof(msg), "%s", http_status_text(status));
    }
    resp->status = status;
    resp->content_type = "application/json";
    sbuf_reset(&resp->body);
    sbuf_puts(&resp->body, "{\"error\":{\"code\":");
    json_put_cstr(&resp->body, code);
    sbuf_puts(&resp->body, ",\"message\":");
    json_put_cstr(&resp->body, msg);
    sbuf_puts(&resp->body, "}}");
}

void respond_strata_error(http_response *resp, int rc)
{
    const char *msg = strata_errmsg();
    if (msg[0] == '\0') {
        msg = strata_strerror(rc);
    }
    switch (rc) {
    case STRATA_EINVAL:
        respond_error(resp, 400, "invalid_argument", "%s", msg);
        break;
    case STRATA_ENOTFOUND:
        respond_error(resp, 404, "not_found", "%s", msg);
        break;
    case STRATA_ECONFLICT:
        respond_error(resp, 409, "conflict", "%s", msg);
        break;
    case STRATA_EEXIST:
        respond_error(resp, 409, "already_exists", "%s", msg);
        break;
    case STRATA_ETOOBIG:
        respond_error(resp, 413, "too_large", "%s", msg);
        break;
    case STRATA_EBUSY:
        http_response_header(resp, "Retry-After", "1");
        respond_error(resp, 503, "busy", "%s", msg);
        break;
    case STRATA_ECLOSED:
        respond_error(resp, 503, "shutting_down", "%s", msg);
        break;
    case STRATA_EUNSUPPORTED:
        respond_error(resp, 501, "unsupported", "%s", msg);
        break;
    default:
        respond_error(resp, 500, "internal", "%s", msg);
        break;
    }
}

/* "application/json" optionally followed by parameters (charset=utf-8). */
static bool content_type_is_json(const http_request *req)
{
    const http_header *h = http_find_header(req, "content-type");
    if (h == NULL) {
        return false;
    }
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;
    if (h->value_len < n || strncasecmp(h->value, want, n) != 0) {
        return false;
    }
    return h->value_len == n || h->value[n] == ';' || h->value[n] == ' ';
}

json_t *body_json_object(req_ctx *c)
{
    const http_request *req = c->req;
    if (!content_type_is_json(req)) {
        respond_error(c->resp, 415, "unsupported_media_type",
                      "send the body as Content-Type: application/json");
        return NULL;
    }
    if (req->body == NULL || req->body_len == 0) {
        respond_error(c->resp, 400, "invalid_json", "the request needs a JSON body");
        return NULL;
    }
    if (!utf8_valid(req->body, req->body_len)) {
        respond_error(c->resp, 400, "invalid_utf8", "the body is not valid UTF-8");
        return NULL;
    }
    json_error_t err;
    json_t *root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        respond_error(c->resp, 400, "invalid_json", "malformed JSON at line %d column %d: %s",
                      err.line, err.column, err.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        respond_error(c->resp, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

bool body_only_keys(req_ctx *c, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            if (strcmp(allowed[i], key) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            respond_error(c->resp, 400, "unknown_field", "unknown field \"%.100s\"", key);
            return false;
        }
    }
    return true;
}

bool body_get_string(req_ctx *c, json_t *obj, const char *key, bool required,
                     const char **out, size_t *len_out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (len_out != NULL) {
        *len_out = 0;
    }
    if (v == NULL || json_is_null(v)) {
        if (required) {
            respond_error(c->resp, 400, "missing_field", "field \"%s\" is required", key);
            return false;
        }
        return true;
    }
    if (!json_is_string(v)) {
        respond_error(c->resp, 400, "wrong_type", "field \"%s\" must be a string", key);
        return false;
    }
    *out = json_string_value(v);
    if (len_out != NULL) {
        *len_out = json_string_length(v);
    }
    return true;
}

int json_put_session_state(sbuf *b, const strata_session *s)
{
    int rc = sbuf_puts(b, "{\"current_stage\":");
    rc = rc ? rc : json_put_cstr(b, s->current_stage);
    rc = rc ? rc : sbuf_puts(b, ",\"turn_count\":");
    rc = rc ? rc : json_put_u64(b, s->turn_count);
    rc = rc ? rc : sbuf_puts(b, ",\"last_active\":");
    rc = rc ? rc : json_put_i64(b, s->last_active);
    rc = rc ? rc : sbuf_putc(b, '}');
    return rc;
}

int json_put_session(sbuf *b, const strata_session *s)
{
    int rc = sbuf_puts(b, "{\"session_id\":");
    rc = rc ? rc : json_put_cstr(b, s->session_id);
    rc = rc ? rc : sbuf_puts(b, ",\"user_id\":");
    rc = rc ? rc : json_put_cstr(b, s->user_id);
    rc = rc ? rc : sbuf_puts(b, ",\"state\":");
    rc = rc ? rc : json_put_session_state(b, s);
    rc = rc ? rc : sbuf_puts(b, ",\"ended\":");
    rc = rc ? rc : sbuf_puts(b, s->ended ? "true" : "false");
    rc = rc ? rc : sbuf_puts(b, ",\"buffer\":[");
    for (size_t i = 0; rc == STRATA_OK && i < s->n_turns; i++) {
        const strata_turn *t = &s->turns[i];
        rc = sbuf_puts(b, i ? ",{\"role\":" : "{\"role\":");
        rc = rc ? rc : json_put_cstr(b, strata_role_name(t->role));
        rc = rc ? rc : sbuf_puts(b, ",\"content\":");
        rc = rc ? rc : json_put_str(b, t->content, t->content_len);
        rc = rc ? rc : sbuf_puts(b, ",\"ts\":");
        rc = rc ? rc : json_put_i64(b, t->ts);
        rc = rc ? rc : sbuf_puts(b, ",\"seq\":");
        rc = rc ? rc : json_put_u64(b, t->seq);
        rc = rc ? rc : sbuf_putc(b, '}');
    }
    rc = rc ? rc : sbuf_puts(b, "]}");
    return rc;
}
