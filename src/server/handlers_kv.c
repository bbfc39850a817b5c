/*
 * handlers_kv.c - the generic store of API.md (the brief's MemoryStore
 * get/put): PUT /v1/kv/{tier}/{key} stores any JSON document, GET returns it,
 * DELETE removes it. Values are stored in compact canonical form.
 */
#include <string.h>

#include "server/server.h"

/* Parse and check the {tier}/{key} parameters; writes a 400 on error. */
static bool kv_params(req_ctx *c, strata_tier *tier)
{
    if (strata_tier_parse(c->params->value[0], tier) != STRATA_OK) {
        respond_error(c->resp, 400, "invalid_tier", "tier must be l1, l2 or l3");
        return false;
    }
    if (!kv_key_valid(c->params->value[1], c->params->len[1])) {
        respond_error(c->resp, 400, "invalid_key",
                      "key must be 1-%d bytes of UTF-8 without '/' or NUL", STRATA_KV_KEY_MAX);
        return false;
    }
    return true;
}

void h_kv_put(req_ctx *c)
{
    strata_tier tier;
    if (!kv_params(c, &tier)) {
        return;
    }
    const http_request *req = c->req;
    const http_header *ct = http_find_header(req, "content-type");
    if (ct == NULL || ct->value_len < 16 || strncasecmp(ct->value, "application/json", 16) != 0) {
        respond_error(c->resp, 415, "unsupported_media_type",
                      "send the body as Content-Type: application/json");
        return;
    }
    if (req->body_len == 0 || !utf8_valid(req->body, req->body_len)) {
        respond_error(c->resp, 400, req->body_len ? "invalid_utf8" : "invalid_json",
                      req->body_len ? "the body is not valid UTF-8" : "a JSON body is required");
        return;
    }
    json_error_t err;
    json_t *v = json_loadb(req->body, req->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                           &err);
    if (v == NULL) {
        respond_error(c->resp, 400, "invalid_json", "malformed JSON at line %d column %d: %s",
                      err.line, err.column, err.text);
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (text == NULL) {
        respond_error(c->resp, 500, "internal", "cannot encode the value");
        return;
    }
    int rc = strata_kv_put(c->a->db, c->tenant, tier, c->params->value[1], text, strlen(text));
    if (rc != STRATA_OK) {
        free(text);
        respond_strata_error(c->resp, rc);
        return;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"tier\":");
    json_put_cstr(b, c->params->value[0]);
    sbuf_puts(b, ",\"key\":");
    json_put_cstr(b, c->params->value[1]);
    sbuf_puts(b, ",\"value\":");
    sbuf_puts(b, text);
    sbuf_putc(b, '}');
    free(text);
}

void h_kv_get(req_ctx *c)
{
    strata_tier tier;
    if (!kv_params(c, &tier)) {
        return;
    }
    char *val = NULL;
    size_t len = 0;
    int rc = strata_kv_get(c->a->db, c->tenant, tier, c->params->value[1], &val, &len);
    if (rc == STRATA_ENOTFOUND) {
        respond_error(c->resp, 404, "not_found", "no key %s in %s", c->params->value[1],
                      c->params->value[0]);
        return;
    }
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    sbuf_append(&c->resp->body, val, len);
    strata_free(val);
}

void h_kv_delete(req_ctx *c)
{
    strata_tier tier;
    if (!kv_params(c, &tier)) {
        return;
    }
    int rc = strata_kv_delete(c->a->db, c->tenant, tier, c->params->value[1]);
    if (rc == STRATA_ENOTFOUND) {
        respond_error(c->resp, 404, "not_found", "no key %s in %s", c->params->value[1],
                      c->params->value[0]);
        return;
    }
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 204;
}
