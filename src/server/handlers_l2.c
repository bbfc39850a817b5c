/*
 * handlers_l2.c - the L2 routes of API.md: add a memory, search memories
 * (hybrid, vector or keyword), get and delete one. Validation happens here
 * and in the engine; a rejected request stores nothing.
 */
#include <math.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "server/server.h"

#define SEARCH_VECTOR_MAX 4096

static bool param_user(req_ctx *c)
{
    if (!strata_id_valid(c->params->value[0], c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id",
                      "user_id must be 1-128 characters of [A-Za-z0-9_.:@-]");
        return false;
    }
    return true;
}

/* Read an optional number in [lo, hi]; writes 400 (type) or 422 (range). */
static bool body_get_unit(req_ctx *c, json_t *obj, const char *key, double lo, double hi,
                          double *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_number(v)) {
        respond_error(c->resp, 400, "wrong_type", "field \"%s\" must be a number", key);
        return false;
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) {
        respond_error(c->resp, 422, "invalid_value", "field \"%s\" must be in [%g, %g]", key, lo,
                      hi);
        return false;
    }
    *out = d;
    return true;
}

void h_memory_add(req_ctx *c)
{
    if (!param_user(c)) {
        return;
    }
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"memory_type", "content", "importance", "provenance",
                                          NULL};
    const char *type_s;
    const char *content;
    size_t content_len;
    double importance = 0.5;
    strata_memory_type type;
    const char *prov[64];
    size_t n_prov = 0;
    if (!body_only_keys(c, body, allowed) ||
        !body_get_string(c, body, "memory_type", true, &type_s, NULL) ||
        !body_get_string(c, body, "content", true, &content, &content_len) ||
        !body_get_unit(c, body, "importance", 0.0, 1.0, &importance)) {
        goto out;
    }
    if (strata_memory_type_parse(type_s, &type) != STRATA_OK) {
        respond_error(c->resp, 422, "invalid_value",
                      "memory_type must be \"preference\", \"fact\" or \"experience\"");
        goto out;
    }
    if (content_len == 0) {
        respond_error(c->resp, 422, "invalid_value", "content must not be empty");
        goto out;
    }
    json_t *pv = json_object_get(body, "provenance");
    if (pv != NULL && !json_is_null(pv)) {
        if (!json_is_array(pv) || json_array_size(pv) > 64) {
            respond_error(c->resp, 400, "wrong_type",
                          "provenance must be an array of at most 64 strings");
            goto out;
        }
        size_t i;
        json_t *e;
        json_array_foreach(pv, i, e)
        {
            if (!json_is_string(e) || json_string_length(e) == 0) {
                respond_error(c->resp, 400, "wrong_type",
                              "provenance entries must be non-empty strings");
                goto out;
            }
            prov[n_prov++] = json_string_value(e);
        }
    }
    strata_memory *m = NULL;
    int rc = strata_memory_add(c->a->db, c->tenant, c->params->value[0], type, content,
                               content_len, (float)importance, prov, n_prov, &m);
    if (rc != STRATA_OK) {
        if (rc == STRATA_EINVAL) {
            respond_error(c->resp, 422, "invalid_value", "%s", strata_errmsg());
        } else {
            respond_strata_error(c->resp, rc);
        }
        goto out;
    }
    c->resp->status = 201;
    memory_json(&c->resp->body, m, false);
    strata_memory_free(m);
out:
    json_decref(body);
}

void h_memory_search(req_ctx *c)
{
    if (!param_user(c)) {
        return;
    }
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"query", "limit", "mode", "memory_types",
                                          "min_importance", "query_vector", NULL};
    strata_search_opts so;
    strata_search_opts_init(&so);
    float *qvec = NULL;
    const char *mode_s = NULL;
    double min_imp = 0;
    if (!body_only_keys(c, body, allowed) ||
        !body_get_string(c, body, "query", false, &so.query, &so.query_len) ||
        !body_get_string(c, body, "mode", false, &mode_s, NULL) ||
        !body_get_unit(c, body, "min_importance", 0.0, 1.0, &min_imp)) {
        goto out;
    }
    so.min_importance = (float)min_imp;
    json_t *lim = json_object_get(body, "limit");
    if (lim != NULL && !json_is_null(lim)) {
        if (!json_is_integer(lim)) {
            respond_error(c->resp, 400, "wrong_type", "limit must be an integer");
            goto out;
        }
        json_int_t l = json_integer_value(lim);
        if (l <= 0 || l > 1000) {
            respond_error(c->resp, 422, "invalid_value", "limit must be 1..1000");
            goto out;
        }
        so.limit = (size_t)l;
    }
    if (mode_s != NULL && strata_search_mode_parse(mode_s, &so.mode) != STRATA_OK) {
        respond_error(c->resp, 422, "invalid_value",
                      "mode must be \"hybrid\", \"vector\" or \"keyword\"");
        goto out;
    }
    json_t *types = json_object_get(body, "memory_types");
    if (types != NULL && !json_is_null(types)) {
        if (!json_is_array(types)) {
            respond_error(c->resp, 400, "wrong_type", "memory_types must be an array");
            goto out;
        }
        size_t i;
        json_t *e;
        json_array_foreach(types, i, e)
        {
            strata_memory_type t;
            if (!json_is_string(e)) {
                respond_error(c->resp, 400, "wrong_type", "memory_types holds strings");
                goto out;
            }
            if (strata_memory_type_parse(json_string_value(e), &t) != STRATA_OK) {
                respond_error(c->resp, 422, "invalid_value",
                              "memory_types: preference, fact or experience");
                goto out;
            }
            so.type_mask |= 1u << t;
        }
    }
    json_t *qv = json_object_get(body, "query_vector");
    if (qv != NULL && !json_is_null(qv)) {
        if (!json_is_array(qv) || json_array_size(qv) == 0 ||
            json_array_size(qv) > SEARCH_VECTOR_MAX) {
            respond_error(c->resp, 400, "wrong_type", "query_vector must be an array of numbers");
            goto out;
        }
        qvec = strata_malloc(json_array_size(qv) * sizeof(float));
        if (qvec == NULL) {
            respond_strata_error(c->resp, STRATA_ENOMEM);
            goto out;
        }
        size_t i;
        json_t *e;
        json_array_foreach(qv, i, e)
        {
            if (!json_is_number(e)) {
                respond_error(c->resp, 400, "wrong_type", "query_vector must hold numbers");
                goto out;
            }
            qvec[i] = (float)json_number_value(e);
        }
        so.query_vector = qvec;
        so.query_vector_dim = json_array_size(qv);
    }
    strata_memory_list *list = NULL;
    int rc = strata_memory_search(c->a->db, c->tenant, c->params->value[0], &so, &list);
    if (rc != STRATA_OK) {
        if (rc == STRATA_EINVAL) {
            respond_error(c->resp, 422, "invalid_value", "%s", strata_errmsg());
        } else {
            respond_strata_error(c->resp, rc);
        }
        goto out;
    }
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"results\":[");
    for (size_t i = 0; i < list->n; i++) {
        if (i > 0) {
            sbuf_putc(b, ',');
        }
        memory_json(b, &list->items[i], true);
    }
    sbuf_puts(b, "]}");
    strata_memory_list_free(list);
out:
    strata_free(qvec);
    json_decref(body);
}

void h_memory_get(req_ctx *c)
{
    if (!param_user(c)) {
        return;
    }
    strata_memory *m = NULL;
    int rc = strata_memory_get(c->a->db, c->tenant, c->params->value[0], c->params->value[1], &m);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    memory_json(&c->resp->body, m, false);
    strata_memory_free(m);
}

void h_memory_delete(req_ctx *c)
{
    if (!param_user(c)) {
        return;
    }
    int rc = strata_memory_delete(c->a->db, c->tenant, c->params->value[0], c->params->value[1]);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 204;
}
