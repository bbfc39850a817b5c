/*
 * graph_ops.c - the L3 operations of the engine: validate, log, apply, and
 * the replay side of the graph's log records.
 *
 * Log payloads:
 *   AOL_GRAPH_NODE_PUT    str id | str label | bytes properties (JSON object text)
 *   AOL_GRAPH_NODE_DELETE str id
 *   AOL_GRAPH_EDGE_PUT    str from | str to | str type | bytes properties | i64 valid_from ms
 *   AOL_GRAPH_EDGE_EXPIRE str from | str to | str type
 * Every time the graph stores comes from the record's timestamp.
 */
#include <math.h>
#include <string.h>

#include "pipeline/pipeline.h"

#define GRAPH_NAME_MAX 64
#define GRAPH_PROPS_MAX (64u << 10)

static int check_name(const char *what, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > GRAPH_NAME_MAX) {
        return strata_error(STRATA_EINVAL, "%s must be 1..%d characters of [A-Za-z0-9_]", what,
                            GRAPH_NAME_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return strata_error(STRATA_EINVAL, "%s must be 1..%d characters of [A-Za-z0-9_]",
                                what, GRAPH_NAME_MAX);
        }
    }
    return STRATA_OK;
}

/* Parse and check a properties document; *out is a new reference (an empty
 * object for NULL). */
static int parse_props(const char *json, json_t **out)
{
    *out = NULL;
    if (json == NULL || json[0] == '\0') {
        *out = json_object();
        return *out ? STRATA_OK : STRATA_ENOMEM;
    }
    size_t n = strlen(json);
    if (n > GRAPH_PROPS_MAX) {
        return strata_error(STRATA_ETOOBIG, "properties over %u bytes", GRAPH_PROPS_MAX);
    }
    json_error_t err;
    json_t *v = json_loadb(json, n, JSON_REJECT_DUPLICATES, &err);
    if (v == NULL) {
        return strata_error(STRATA_EINVAL, "properties: %s", err.text);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return strata_error(STRATA_EINVAL, "properties must be a JSON object");
    }
    json_t *w = json_object_get(v, "weight");
    if (w != NULL && !json_is_null(w) && (!json_is_number(w) || !isfinite(json_number_value(w)))) {
        json_decref(v);
        return strata_error(STRATA_EINVAL, "weight must be a finite number");
    }
    *out = v;
    return STRATA_OK;
}

/* ---- replay / apply (caller holds write_lock or is recovering) ------------- */

int db_apply_graph(strata_db *db, const aol_record *rec, const char *tenant, wire_reader *r)
{
    char *a = NULL;
    char *b = NULL;
    char *c = NULL;
    json_t *props = NULL;
    int rc = STRATA_OK;
    switch (rec->type) {
    case AOL_GRAPH_NODE_PUT:
    case AOL_GRAPH_EDGE_PUT: {
        a = wire_get_strdup(r);
        b = wire_get_strdup(r);
        if (rec->type == AOL_GRAPH_EDGE_PUT) {
            c = wire_get_strdup(r);
        }
        size_t plen;
        const char *ptext = wire_get_bytes(r, &plen);
        int64_t valid_from = rec->type == AOL_GRAPH_EDGE_PUT ? wire_get_i64(r) : 0;
        if (!wire_done(r) || a == NULL || b == NULL) {
            rc = STRATA_ECORRUPT;
            break;
        }
        props = json_loadb(ptext, plen, 0, NULL);
        if (props == NULL || !json_is_object(props)) {
            rc = STRATA_ECORRUPT;
            break;
        }
        bool created;
        rc = rec->type == AOL_GRAPH_NODE_PUT
                 ? db->l3->ops->node_put(db->l3, tenant, a, b, props, rec->ts_ms, &created)
                 : db->l3->ops->edge_put(db->l3, tenant, a, b, c, props, valid_from,
                                         rec->ts_ms, &created);
        break;
    }
    case AOL_GRAPH_NODE_DELETE:
        a = wire_get_strdup(r);
        if (!wire_done(r) || a == NULL) {
            rc = STRATA_ECORRUPT;
        } else {
            rc = db->l3->ops->node_delete(db->l3, tenant, a, NULL);
        }
        break;
    case AOL_GRAPH_EDGE_EXPIRE:
        a = wire_get_strdup(r);
        b = wire_get_strdup(r);
        c = wire_get_strdup(r);
        if (!wire_done(r) || a == NULL || b == NULL || c == NULL) {
            rc = STRATA_ECORRUPT;
        } else {
            rc = db->l3->ops->edge_expire(db->l3, tenant, a, b, c, rec->ts_ms);
        }
        break;
    default:
        rc = STRATA_EINVAL;
    }
    json_decref(props);
    strata_free(a);
    strata_free(b);
    strata_free(c);
    return rc;
}

/* ---- the public operations --------------------------------------------------- */

typedef struct node_arg {
    const char *tenant;
    const char *id;
    int created;
} node_arg;

static int node_put_precheck(strata_db *db, void *argp)
{
    node_arg *a = argp;
    a->created = db->l3->ops->node_exists(db->l3, a->tenant, a->id) == STRATA_ENOTFOUND;
    return STRATA_OK;
}

int strata_graph_node_put(strata_db *db, const char *tenant, const char *id, const char *label,
                          const char *props_json, int *created)
{
    if (created != NULL) {
        *created = 0;
    }
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("node id", id);
    rc = rc ? rc : check_name("label", label);
    json_t *props = NULL;
    rc = rc ? rc : parse_props(props_json, &props);
    if (rc != STRATA_OK) {
        return rc;
    }
    char *canon = json_dumps(props, JSON_COMPACT);
    json_decref(props);
    if (canon == NULL) {
        return STRATA_ENOMEM;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, id);
    rc = rc ? rc : wire_put_str(&payload, label);
    rc = rc ? rc : wire_put_bytes(&payload, canon, strlen(canon));
    free(canon);
    node_arg arg = {tenant, id, 0};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_GRAPH_NODE_PUT, tenant, &payload, node_put_precheck, &arg, NULL);
    }
    sbuf_free(&payload);
    if (rc == STRATA_OK && created != NULL) {
        *created = arg.created;
    }
    return rc;
}

int strata_graph_node_get(strata_db *db, const char *tenant, const char *id, int64_t as_of,
                          char **json_out)
{
    *json_out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("node id", id);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (as_of < 0) {
        return strata_error(STRATA_EINVAL, "as_of must be a Unix time in seconds");
    }
    sbuf out;
    sbuf_init(&out, 64u << 20);
    rc = db->l3->ops->node_get_json(db->l3, tenant, id, as_of ? as_of * 1000 + 999 : 0, &out);
    if (rc != STRATA_OK) {
        sbuf_free(&out);
        if (rc == STRATA_ENOTFOUND) {
            return strata_error(rc, "no node %s", id);
        }
        return rc;
    }
    *json_out = sbuf_take(&out, NULL);
    return *json_out ? STRATA_OK : STRATA_ENOMEM;
}

static int node_exists_precheck(strata_db *db, void *argp)
{
    node_arg *a = argp;
    int rc = db->l3->ops->node_exists(db->l3, a->tenant, a->id);
    if (rc == STRATA_ENOTFOUND) {
        return strata_error(rc, "no node %s", a->id);
    }
    return rc;
}

int strata_graph_node_delete(strata_db *db, const char *tenant, const char *id)
{
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("node id", id);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, id);
    node_arg arg = {tenant, id, 0};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_GRAPH_NODE_DELETE, tenant, &payload, node_exists_precheck, &arg,
                      NULL);
    }
    sbuf_free(&payload);
    return rc;
}

typedef struct edge_arg {
    const char *tenant;
    const char *from;
    const char *to;
    const char *type;
    int created;
} edge_arg;

static int edge_put_precheck(strata_db *db, void *argp)
{
    edge_arg *a = argp;
    if (db->l3->ops->node_exists(db->l3, a->tenant, a->from) != STRATA_OK) {
        return strata_error(STRATA_ENOTFOUND, "no node %s", a->from);
    }
    if (db->l3->ops->node_exists(db->l3, a->tenant, a->to) != STRATA_OK) {
        return strata_error(STRATA_ENOTFOUND, "no node %s", a->to);
    }
    a->created =
        db->l3->ops->edge_exists(db->l3, a->tenant, a->from, a->to, a->type) == STRATA_ENOTFOUND;
    return STRATA_OK;
}

int strata_graph_edge_put(strata_db *db, const char *tenant, const char *from, const char *to,
                          const char *type, const char *props_json, int64_t valid_from,
                          int *created)
{
    if (created != NULL) {
        *created = 0;
    }
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("from", from);
    rc = rc ? rc : db_check_id("to", to);
    rc = rc ? rc : check_name("type", type);
    if (rc == STRATA_OK && valid_from < 0) {
        rc = strata_error(STRATA_EINVAL, "valid_from must be a Unix time in seconds");
    }
    json_t *props = NULL;
    rc = rc ? rc : parse_props(props_json, &props);
    if (rc != STRATA_OK) {
        return rc;
    }
    char *canon = json_dumps(props, JSON_COMPACT);
    json_decref(props);
    if (canon == NULL) {
        return STRATA_ENOMEM;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, from);
    rc = rc ? rc : wire_put_str(&payload, to);
    rc = rc ? rc : wire_put_str(&payload, type);
    rc = rc ? rc : wire_put_bytes(&payload, canon, strlen(canon));
    rc = rc ? rc : wire_put_i64(&payload, valid_from * 1000);
    free(canon);
    edge_arg arg = {tenant, from, to, type, 0};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_GRAPH_EDGE_PUT, tenant, &payload, edge_put_precheck, &arg, NULL);
    }
    sbuf_free(&payload);
    if (rc == STRATA_OK && created != NULL) {
        *created = arg.created;
    }
    return rc;
}

static int edge_current_precheck(strata_db *db, void *argp)
{
    edge_arg *a = argp;
    int rc = db->l3->ops->edge_exists(db->l3, a->tenant, a->from, a->to, a->type);
    if (rc == STRATA_ENOTFOUND) {
        return strata_error(rc, "no current edge %s -[%s]-> %s", a->from, a->type, a->to);
    }
    return rc;
}

int strata_graph_edge_expire(strata_db *db, const char *tenant, const char *from, const char *to,
                             const char *type)
{
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("from", from);
    rc = rc ? rc : db_check_id("to", to);
    rc = rc ? rc : check_name("type", type);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, from);
    rc = rc ? rc : wire_put_str(&payload, to);
    rc = rc ? rc : wire_put_str(&payload, type);
    edge_arg arg = {tenant, from, to, type, 0};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_GRAPH_EDGE_EXPIRE, tenant, &payload, edge_current_precheck, &arg,
                      NULL);
    }
    sbuf_free(&payload);
    return rc;
}

void strata_subgraph_opts_init(strata_subgraph_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->depth = 2;
    o->direction = STRATA_DIR_BOTH;
    o->limit = 1000;
}

int strata_graph_subgraph(strata_db *db, const char *tenant, const strata_subgraph_opts *opts,
                          char **json_out)
{
    *json_out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("center", opts->center);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (opts->depth < 0 || opts->depth > GRAPH_MAX_DEPTH) {
        return strata_error(STRATA_EINVAL, "depth must be 0..%d", GRAPH_MAX_DEPTH);
    }
    if (opts->limit == 0 || opts->limit > GRAPH_MAX_LIMIT) {
        return strata_error(STRATA_EINVAL, "limit must be 1..%d", GRAPH_MAX_LIMIT);
    }
    if (opts->n_types > GRAPH_MAX_QUERY_TYPES || opts->as_of < 0 ||
        opts->direction > STRATA_DIR_BOTH) {
        return strata_error(STRATA_EINVAL, "bad types, direction or as_of");
    }
    for (size_t i = 0; i < opts->n_types; i++) {
        rc = check_name("type", opts->types[i]);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    graph_query q;
    graph_query_init(&q);
    q.center = opts->center;
    q.depth = opts->depth;
    q.types = opts->n_types ? opts->types : NULL;
    q.n_types = opts->n_types;
    q.direction = (graph_dir)opts->direction;
    q.limit = opts->limit;
    q.as_of_ms = opts->as_of ? opts->as_of * 1000 + 999 : 0;
    sbuf out;
    sbuf_init(&out, 256u << 20);
    rc = db->l3->ops->subgraph_json(db->l3, tenant, &q, &out);
    if (rc != STRATA_OK) {
        sbuf_free(&out);
        if (rc == STRATA_ENOTFOUND) {
            return strata_error(rc, "no node %s", opts->center);
        }
        return rc;
    }
    *json_out = sbuf_take(&out, NULL);
    return *json_out ? STRATA_OK : STRATA_ENOMEM;
}
