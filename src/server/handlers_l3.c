/*
 * handlers_l3.c - the L3 routes of API.md: nodes (PUT merges, GET with
 * as_of, DELETE), edges (PUT upserts on from/to/type; expire), and subgraph
 * queries. An edge to a missing node is 422; a weight that is not a finite
 * number, or properties that are not an object, 400.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Read an integer query parameter into *out (unchanged when absent).
 * Writes a 400 and returns false when malformed or outside [lo, hi]. */
static bool query_int(req_ctx *c, const char *name, long long lo, long long hi, long long *out)
{
    char buf[32];
    long n = http_query_param(c->req->query, c->req->query_len, name, buf, sizeof(buf));
    if (n == -1) {
        return true;
    }
    char *end = NULL;
    errno = 0;
    long long v = n > 0 ? strtoll(buf, &end, 10) : 0;
    if (n <= 0 || errno != 0 || *end != '\0' || v < lo || v > hi) {
        respond_error(c->resp, 400, "invalid_query", "%s must be an integer in %lld..%lld", name,
                      lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* properties: absent -> NULL (= {}); otherwise its JSON text (free()). */
static bool props_text(req_ctx *c, json_t *body, char **out)
{
    *out = NULL;
    json_t *p = json_object_get(body, "properties");
    if (p == NULL || json_is_null(p)) {
        return true;
    }
    if (!json_is_object(p)) {
        respond_error(c->resp, 400, "wrong_type", "properties must be a JSON object");
        return false;
    }
    *out = json_dumps(p, JSON_COMPACT);
    if (*out == NULL) {
        respond_strata_error(c->resp, STRATA_ENOMEM);
        return false;
    }
    return true;
}

static void respond_node(req_ctx *c, const char *id, int status)
{
    char *json = NULL;
    int rc = strata_graph_node_get(c->a->db, c->tenant, id, 0, &json);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = status;
    sbuf_puts(&c->resp->body, json);
    strata_free(json);
}

void h_node_put(req_ctx *c)
{
    const char *id = c->params->value[0];
    if (!strata_id_valid(id, c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id", "node id must be 1-128 characters of "
                                                  "[A-Za-z0-9_.:@-]");
        return;
    }
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"label", "properties", NULL};
    const char *label;
    char *props = NULL;
    if (!body_only_keys(c, body, allowed) || !body_get_string(c, body, "label", true, &label, NULL) ||
        !props_text(c, body, &props)) {
        json_decref(body);
        return;
    }
    int created = 0;
    int rc = strata_graph_node_put(c->a->db, c->tenant, id, label, props, &created);
    free(props);
    json_decref(body);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    respond_node(c, id, created ? 201 : 200);
}

void h_node_get(req_ctx *c)
{
    const char *id = c->params->value[0];
    if (!strata_id_valid(id, c->params->len[0])) {
        respond_error(c->resp, 400, "invalid_id", "node id must be 1-128 characters of "
                                                  "[A-Za-z0-9_.:@-]");
        return;
    }
    long long as_of = 0;
    if (!query_int(c, "as_of", 0, 1LL << 40, &as_of)) {
        return;
    }
    char *json = NULL;
    int rc = strata_graph_node_get(c->a->db, c->tenant, id, as_of, &json);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    sbuf_puts(&c->resp->body, json);
    strata_free(json);
}

void h_node_delete(req_ctx *c)
{
    int rc = strata_graph_node_delete(c->a->db, c->tenant, c->params->value[0]);
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        return;
    }
    c->resp->status = 204;
}

/* Common part of the edge routes: from, to, type strings. */
static bool edge_fields(req_ctx *c, json_t *body, const char **from, const char **to,
                        const char **type)
{
    return body_get_string(c, body, "from", true, from, NULL) &&
           body_get_string(c, body, "to", true, to, NULL) &&
           body_get_string(c, body, "type", true, type, NULL);
}

void h_edge_put(req_ctx *c)
{
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"from", "to", "type", "properties", "valid_from", NULL};
    const char *from;
    const char *to;
    const char *type;
    char *props = NULL;
    long long valid_from = 0;
    if (!body_only_keys(c, body, allowed) || !edge_fields(c, body, &from, &to, &type) ||
        !props_text(c, body, &props)) {
        goto out;
    }
    json_t *vf = json_object_get(body, "valid_from");
    if (vf != NULL && !json_is_null(vf)) {
        if (!json_is_integer(vf) || json_integer_value(vf) < 0) {
            respond_error(c->resp, 400, "wrong_type", "valid_from must be Unix seconds");
            goto out;
        }
        valid_from = json_integer_value(vf);
    }
    int created = 0;
    int rc = strata_graph_edge_put(c->a->db, c->tenant, from, to, type, props, valid_from,
                                   &created);
    if (rc == STRATA_ENOTFOUND) {
        respond_error(c->resp, 422, "missing_node", "%s", strata_errmsg());
        goto out;
    }
    if (rc != STRATA_OK) {
        respond_strata_error(c->resp, rc);
        goto out;
    }
    c->resp->status = created ? 201 : 200;
    sbuf *b = &c->resp->body;
    sbuf_puts(b, "{\"from\":");
    json_put_cstr(b, from);
    sbuf_puts(b, ",\"to\":");
    json_put_cstr(b, to);
    sbuf_puts(b, ",\"type\":");
    json_put_cstr(b, type);
    sbuf_puts(b, ",\"created\":");
    sbuf_puts(b, created ? "true" : "false");
    sbuf_putc(b, '}');
out:
    free(props);
    json_decref(body);
}

void h_edge_expire(req_ctx *c)
{
    json_t *body = body_json_object(c);
    if (body == NULL) {
        return;
    }
    static const char *const allowed[] = {"from", "to", "type", NULL};
    const char *from;
    const char *to;
    const char *type;
    if (body_only_keys(c, body, allowed) && edge_fields(c, body, &from, &to, &type)) {
        int rc = strata_graph_edge_expire(c->a->db, c->tenant, from, to, type);
        if (rc != STRATA_OK) {
            respond_strata_error(c->resp, rc);
        } else {
            sbuf_puts(&c->resp->body, "{\"expired\":true}");
        }
    }
    json_decref(body);
}

void h_subgraph(req_ctx *c)
{
    const http_request *req = c->req;
    strata_subgraph_opts o;
    strata_subgraph_opts_init(&o);
    char center[STRATA_ID_MAX + 2];
    long n = http_query_param(req->query, req->query_len, "center", center, sizeof(center));
    if (n <= 0 || !strata_id_valid(center, (size_t)n)) {
        respond_error(c->resp, 400, "invalid_query", "center must be a node id");
        return;
    }
    o.center = center;
    long long depth = 2;
    long long limit = 1000;
    long long as_of = 0;
    if (!query_int(c, "depth", 0, 5, &depth) || !query_int(c, "limit", 1, 100000, &limit) ||
        !query_int(c, "as_of", 0, 1LL << 40, &as_of)) {
        return;
    }
    o.depth = (int)depth;
    o.limit = (size_t)limit;
    o.as_of = as_of;
    char dir[16];
    n = http_query_param(req->query, req->query_len, "direction", dir, sizeof(dir));
    if (n >= 0) {
        if (strcmp(dir, "out") == 0) {
            o.direction = STRATA_DIR_OUT;
        } else if (strcmp(dir, "in") == 0) {
            o.direction = STRATA_DIR_IN;
        } else if (strcmp(dir, "both") == 0) {
            o.direction = STRATA_DIR_BOTH;
        } else {
            respond_error(c->resp, 400, "invalid_query", "direction must be out, in or both");
            return;
        }
    } else if (n == -2) {
        respond_error(c->resp, 400, "invalid_query", "direction must be out, in or both");
        return;
    }
    char types_buf[4096];
    const char *types[64];
    n = http_query_param(req->query, req->query_len, "types", types_buf, sizeof(types_buf));
    if (n == -2) {
        respond_error(c->resp, 400, "invalid_query", "types is malformed or too long");
        return;
    }
    if (n > 0) {
        char *save = NULL;
        for (char *t = strtok_r(types_buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
            if (o.n_types == 64) {
                respond_error(c->resp, 400, "invalid_query", "at most 64 types");
                return;
            }
            types[o.n_types++] = t;
        }
        o.types = types;
    }
    char *json = NULL;
    int rc = strata_graph_subgraph(c->a->db, c->tenant, &o, &json);
    if (rc != STRATA_OK) {
        if (rc == STRATA_EINVAL) {
            respond_error(c->resp, 400, "invalid_query", "%s", strata_errmsg());
        } else {
            respond_strata_error(c->resp, rc);
        }
        return;
    }
    sbuf_puts(&c->resp->body, json);
    strata_free(json);
}
