/*
 * handlers_admin.c - tenant administration with the admin key: create an API
 * key for a tenant (the secret is in this response only), list a tenant's
 * key ids, revoke a key.
 */
#include <string.h>

#include "server/server.h"

void h_admin_key_create(req_ctx *c)
{
    const char *tenant = c->params->value[0];
    if (!strata_id_valid(tenant, c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id",
                      "tenant_id must be 1-128 characters of [A-Za-z0-9_.:@-]");
        return;
    }
    char key_id[STRATA_JOB_ID_LEN];
    char key[STRATA_KEY_LEN];
    int rc = strata_key_create(c->a->db, tenant, key_id, key);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 201;
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"key_id\":");
    json_put_cstr(b, key_id);
    sbuf_puts(b, ",\"key\":");
    json_put_cstr(b, key);
    sbuf_puts(b, ",\"tenant_id\":");
    json_put_cstr(b, tenant);
    sbuf_putc(b, '}');
}

void h_admin_key_list(req_ctx *c)
{
    const char *tenant = c->params->value[0];
    if (!strata_id_valid(tenant, c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id",
                      "tenant_id must be 1-128 characters of [A-Za-z0-9_.:@-]");
        return;
    }
    strata_strlist *l = NULL;
    int rc = strata_key_list(c->a->db, tenant, &l);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"tenant_id\":");
    json_put_cstr(b, tenant);
    sbuf_puts(b, ",\"keys\":[");
    for (size_t i = 0; i < l->n; i++) {
        sbuf_puts(b, i ? ",{\"key_id\":" : "{\"key_id\":");
        json_put_cstr(b, l->items[i]);
        sbuf_putc(b, '}');
    }
    sbuf_puts(b, "]}");
    strata_strlist_free(l);
}

void h_admin_key_revoke(req_ctx *c)
{
    if (!strata_id_valid(c->params->value[0], c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id", "bad key id");
        return;
    }
    int rc = strata_key_revoke(c->a->db, c->params->value[0]);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 204;
}
