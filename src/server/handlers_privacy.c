/*
 * handlers_privacy.c - the right to be forgotten over HTTP:
 * DELETE /user/{user_id}/memory (the brief's path) and its twin
 * DELETE /v1/users/{user_id}/memory, answering with a receipt of what each
 * tier lost. The work is strata_forget_user (src/pipeline/forget.c).
 */
#include <inttypes.h>

#include "server/server.h"

void h_user_forget(req_ctx *c)
{
    if (!strata_id_valid(c->params->value[0], c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id",
                      "user_id must be 1-128 characters of [A-Za-z0-9_.:@-]");
        return;
    }
    /* No body is expected; one that is sent must be an empty JSON object, so a
     * client that thinks it passes options learns that it does not. */
    if (c->req->body_len > 0) {
        json_t *obj = body_json_object(c);
        if (obj == NULL) {
            return;
        }
        static const char *const none[] = {NULL};
        bool ok = body_only_keys(c, obj, none);
        json_decref(obj);
        if (!ok) {
            return;
        }
    }
    strata_forget_receipt r;
    int rc = strata_forget_user(c->a->db, c->tenant, c->params->value[0], &r);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"user_id\":");
    json_put_cstr(b, c->params->value[0]);
    sbuf_printf(b,
                ",\"deleted\":{\"l1\":%" PRIu64 ",\"l2\":%" PRIu64 ",\"l3\":%" PRIu64
                ",\"log\":%" PRIu64 ",\"dirty\":%" PRIu64 ",\"profile\":%" PRIu64
                ",\"jobs\":%" PRIu64 "}}",
                r.l1, r.l2, r.l3, r.log, r.dirty, r.profile, r.jobs);
}
