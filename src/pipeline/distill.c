/*
 * distill.c - knowledge distillation L2 -> L3 (brief §2.2.3) by built-in
 * rules, run as a job: at once for an important memory, nightly, or on
 * POST /v1/jobs/distill. Each memory queued by consolidation (with what the
 * extractor said about it) becomes nodes and edges around the user's node
 * user:<id>, ids per API.md (<label>:<slug>):
 *
 *   topic, +1     (User)-[:INTERESTED_IN {weight}]->(Topic)   expires DISLIKES
 *   topic, -1     (User)-[:DISLIKES {weight}]->(Topic)        expires INTERESTED_IN
 *   product       (User)-[:INTERESTED_IN|DISLIKES]->(Product), and
 *                 (Topic)-[:RELATED_TO]->(Product) for each topic of the user
 *                 whose name the product's name contains ("hiking" -> "hiking boots")
 *   constraint    (User)-[:HAS_CONSTRAINT]->(Constraint)
 *   preference    (User)-[:HAS_PREFERENCE {polarity}]->(Preference)
 *   employer      (User)-[:WORKS_AT]->(Organization)   expires the previous WORKS_AT
 *   location      (User)-[:LIVES_IN]->(Place)          expires the previous LIVES_IN
 *
 * Weights accumulate with evidence and decay with time: the old weight is
 * halved every interest_half_life_days since it was last reinforced, then
 * w = w + (1 - w) * 0.5 * confidence. The profile's changed single-valued
 * attributes (user:{id}:dirty) are synced as properties of the user node and
 * the dirty set is cleared in the same record.
 *
 * All changes of one memory go into one AOL_DISTILL_APPLY record together
 * with its removal from the queue (pipeline_records.c): exactly once.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/pipeline.h"



typedef struct ops_buf {
    sbuf b;
    uint32_t n;
} ops_buf;

static int op_node(ops_buf *o, const char *id, const char *label, json_t *props)
{
    char *text = json_dumps(props, JSON_COMPACT);
    json_decref(props);
    if (text == NULL) {
        return STRATA_ENOMEM;
    }
    int rc = wire_put_u8(&o->b, 1);
    rc = rc ? rc : wire_put_str(&o->b, id);
    rc = rc ? rc : wire_put_str(&o->b, label);
    rc = rc ? rc : wire_put_bytes(&o->b, text, strlen(text));
    free(text);
    o->n++;
    return rc;
}

static int op_edge(ops_buf *o, const char *from, const char *to, const char *type, json_t *props)
{
    char *text = json_dumps(props, JSON_COMPACT);
    json_decref(props);
    if (text == NULL) {
        return STRATA_ENOMEM;
    }
    int rc = wire_put_u8(&o->b, 2);
    rc = rc ? rc : wire_put_str(&o->b, from);
    rc = rc ? rc : wire_put_str(&o->b, to);
    rc = rc ? rc : wire_put_str(&o->b, type);
    rc = rc ? rc : wire_put_bytes(&o->b, text, strlen(text));
    free(text);
    o->n++;
    return rc;
}

static int op_expire(ops_buf *o, const char *from, const char *to, const char *type)
{
    int rc = wire_put_u8(&o->b, 3);
    rc = rc ? rc : wire_put_str(&o->b, from);
    rc = rc ? rc : wire_put_str(&o->b, to);
    rc = rc ? rc : wire_put_str(&o->b, type);
    o->n++;
    return rc;
}

/* The user's current out-edges of one type, as a parsed subgraph (NULL if
 * the user has no node yet). */
static json_t *user_edges(strata_db *db, const char *tenant, const char *user_node,
                          const char *type)
{
    graph_query q;
    graph_query_init(&q);
    q.center = user_node;
    q.depth = 1;
    const char *types[1] = {type};
    q.types = types;
    q.n_types = 1;
    q.direction = GRAPH_DIR_OUT;
    q.limit = 1000;
    sbuf out;
    sbuf_init(&out, 64u << 20);
    json_t *root = NULL;
    if (db->l3->ops->subgraph_json(db->l3, tenant, &q, &out) == STRATA_OK) {
        root = json_loadb(out.data, out.len, 0, NULL);
    }
    sbuf_free(&out);
    return root;
}

/* Properties of the user's current edge to `to` of `type` (borrowed from
 * edges), or NULL. */
static json_t *edge_props(json_t *edges_root, const char *to)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(edges_root, "edges"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "to"));
        if (t != NULL && strcmp(t, to) == 0) {
            return json_object_get(e, "properties");
        }
    }
    return NULL;
}

/* Expire every current edge of type from the user except the one to keep. */
static int expire_others(strata_db *db, ops_buf *o, const char *tenant, const char *user_node,
                         const char *type, const char *keep)
{
    json_t *root = user_edges(db, tenant, user_node, type);
    size_t i;
    json_t *e;
    int rc = STRATA_OK;
    json_array_foreach(json_object_get(root, "edges"), i, e)
    {
        const char *to = json_string_value(json_object_get(e, "to"));
        const char *from = json_string_value(json_object_get(e, "from"));
        if (rc == STRATA_OK && to && from && strcmp(from, user_node) == 0 &&
            strcmp(to, keep) != 0) {
            rc = op_expire(o, user_node, to, type);
        }
    }
    json_decref(root);
    return rc;
}

/* Weighted edge (User)-[type]->(to): decay then reinforce. */
static int weighted_edge(strata_db *db, ops_buf *o, const char *tenant, const char *user_node,
                         const char *to, const char *type, const distill_entry *e)
{
    json_t *root = user_edges(db, tenant, user_node, type);
    json_t *props = edge_props(root, to);
    double w = 0;
    double evidence = 0;
    if (props != NULL) {
        w = json_number_value(json_object_get(props, "weight"));
        evidence = json_number_value(json_object_get(props, "evidence"));
        double last = json_number_value(json_object_get(props, "updated"));
        double half = db->cfg.interest_half_life_days > 0 ? db->cfg.interest_half_life_days : 30;
        double age_days = (double)e->ts - last > 0 ? ((double)e->ts - last) / 86400.0 : 0;
        w *= pow(0.5, age_days / half);
    }
    json_decref(root);
    double conf = e->confidence > 0 ? e->confidence : 0.5;
    w = w + (1 - w) * 0.5 * conf;
    return op_edge(o, user_node, to, type,
                   json_pack("{s:f, s:f, s:I}", "weight", round(w * 1000) / 1000, "evidence",
                             evidence + 1, "updated", (json_int_t)e->ts));
}

/* Topic-RELATED_TO->product for the user's topics named inside the product. */
static int relate_topics(strata_db *db, ops_buf *o, const char *tenant, const char *user_node,
                         const char *product_node, const char *product_slug)
{
    json_t *root = user_edges(db, tenant, user_node, "INTERESTED_IN");
    size_t i;
    json_t *n;
    int rc = STRATA_OK;
    json_array_foreach(json_object_get(root, "nodes"), i, n)
    {
        const char *id = json_string_value(json_object_get(n, "id"));
        if (rc == STRATA_OK && id && strncmp(id, "topic:", 6) == 0 && id[6] &&
            strstr(product_slug, id + 6) != NULL) {
            rc = op_edge(o, id, product_node, "RELATED_TO", json_object());
        }
    }
    json_decref(root);
    return rc;
}

/* The graph changes of one queued memory. */
static int distill_entry_ops(strata_db *db, ops_buf *o, const char *tenant, const char *user,
                             const char *user_node, const distill_entry *e)
{
    char slug[128];
    char node[160];
    const char *name = e->entity[0] ? e->entity : e->value;
    pipeline_slug(name, slug, sizeof(slug));
    int rc = STRATA_OK;
    const char *kind = e->kind;
    const char *attr = e->attribute;
    if (strcmp(attr, "employer") == 0 || strcmp(attr, "location") == 0) {
        /* Facts with a single current value are drawn from the profile (the
         * delta-merged truth, see sync_profile), not from each memory: a
         * value under clarification must not move an edge. */
        return STRATA_OK;
    }
    if (slug[0] == '\0') {
        return STRATA_OK;
    }
    if (strcmp(kind, "constraint") == 0 || strcmp(attr, "allergy") == 0) {
        snprintf(node, sizeof(node), "constraint:%s", slug);
        /* The user's own words go on their edge, not on the node other users
         * share, so forgetting the user (their edges go) leaves none behind. */
        rc = op_node(o, node, "Constraint", json_pack("{s:s}", "name", name));
        rc = rc ? rc : op_edge(o, user_node, node, "HAS_CONSTRAINT",
                               json_pack("{s:I, s:s}", "since", (json_int_t)e->ts, "statement",
                                         e->content));
    } else if (strcmp(kind, "preference") == 0) {
        snprintf(node, sizeof(node), "preference:%s", slug);
        rc = op_node(o, node, "Preference", json_pack("{s:s}", "name", name));
        rc = rc ? rc : op_edge(o, user_node, node, "HAS_PREFERENCE",
                               json_pack("{s:i}", "polarity", e->polarity));
    } else if (strcmp(kind, "product") == 0 || strcmp(kind, "topic") == 0 ||
               (kind[0] == '\0' && e->polarity != 0)) {
        bool product = strcmp(kind, "product") == 0;
        snprintf(node, sizeof(node), "%s:%s", product ? "product" : "topic", slug);
        rc = op_node(o, node, product ? "Product" : "Topic", json_pack("{s:s}", "name", name));
        const char *type = e->polarity < 0 ? "DISLIKES" : "INTERESTED_IN";
        const char *other = e->polarity < 0 ? "INTERESTED_IN" : "DISLIKES";
        rc = rc ? rc : weighted_edge(db, o, tenant, user_node, node, type, e);
        /* A flipped preference expires the opposite edge (kept for as_of). */
        json_t *root = rc ? NULL : user_edges(db, tenant, user_node, other);
        if (root != NULL && edge_props(root, node) != NULL) {
            rc = op_expire(o, user_node, node, other);
        }
        json_decref(root);
        if (rc == STRATA_OK && product) {
            rc = relate_topics(db, o, tenant, user_node, node, slug);
        }
    }
    (void)user;
    return rc;
}

/* Log one AOL_DISTILL_APPLY: user node, ops, queue removal of memory_id. */
static int log_apply(strata_db *db, const char *tenant, const char *user, uint64_t memory_id,
                     ops_buf *o)
{
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    int rc = wire_put_str(&payload, user);
    rc = rc ? rc : wire_put_u64(&payload, memory_id);
    rc = rc ? rc : wire_put_u32(&payload, o->n);
    rc = rc ? rc : sbuf_append(&payload, o->b.data ? o->b.data : "", o->b.len);
    rc = rc ? rc : db_log(db, AOL_DISTILL_APPLY, tenant, &payload, NULL);
    sbuf_free(&payload);
    return rc;
}

/* (User)-[type]->(<kind>:<slug of value>), expiring the previous target. */
static int fact_edge(strata_db *db, ops_buf *o, const char *tenant, const char *user_node,
                     const char *attr, const char *value, int64_t ts)
{
    bool employer = strcmp(attr, "employer") == 0;
    char slug[128];
    char node[160];
    pipeline_slug(value, slug, sizeof(slug));
    if (slug[0] == '\0') {
        return STRATA_OK;
    }
    snprintf(node, sizeof(node), "%s:%s", employer ? "organization" : "place", slug);
    const char *type = employer ? "WORKS_AT" : "LIVES_IN";
    int rc = op_node(o, node, employer ? "Organization" : "Place", json_pack("{s:s}", "name", value));
    rc = rc ? rc : expire_others(db, o, tenant, user_node, type, node);
    rc = rc ? rc : op_edge(o, user_node, node, type, json_pack("{s:I}", "since", (json_int_t)ts));
    return rc;
}

/* Sync the profile's dirty single-valued attributes onto the user node (and
 * the employer / location edges). */
static int sync_profile(strata_db *db, ops_buf *o, const char *tenant, const char *user,
                        const char *user_node)
{
    strata_strlist *dirty = NULL;
    int rc = strata_dirty_get(db, tenant, user, &dirty);
    if (rc != STRATA_OK || dirty->n == 0) {
        strata_strlist_free(dirty);
        return rc;
    }
    sbuf pj;
    sbuf_init(&pj, 16u << 20);
    rc = profile_to_json(db->profile, tenant, user, &pj);
    json_t *prof = rc ? NULL : json_loadb(pj.data, pj.len, 0, NULL);
    sbuf_free(&pj);
    json_t *attrs = json_object_get(prof, "attributes");
    json_t *props = json_object();
    for (size_t i = 0; i < dirty->n; i++) {
        json_t *a = json_object_get(attrs, dirty->items[i]);
        if (a != NULL && strchr(dirty->items[i], ':') == NULL) {
            json_t *value = json_object_get(a, "value");
            json_object_set(props, dirty->items[i], value);
            if (rc == STRATA_OK && (strcmp(dirty->items[i], "employer") == 0 ||
                                    strcmp(dirty->items[i], "location") == 0)) {
                rc = fact_edge(db, o, tenant, user_node, dirty->items[i],
                               json_string_value(value),
                               (int64_t)json_integer_value(json_object_get(a, "valid_from")));
            }
        }
    }
    rc = rc ? rc : op_node(o, user_node, "User", props);
    rc = rc ? rc : wire_put_u8(&o->b, 4); /* clear the dirty set */
    o->n++;
    json_decref(prof);
    strata_strlist_free(dirty);
    return rc;
}

static int distill_user(strata_db *db, const char *tenant, const char *user)
{
    char user_node[STRATA_ID_MAX + 8];
    snprintf(user_node, sizeof(user_node), "user:%s", user);
    if (!strata_id_valid(user_node, strlen(user_node))) {
        return STRATA_OK; /* a user id too long for a node id: nothing to anchor */
    }
    distill_entry *pending = NULL;
    size_t n = 0;
    int rc = profile_pending_copy(db->profile, tenant, user, &pending, &n);
    for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
        ops_buf o;
        sbuf_init(&o.b, AOL_MAX_PAYLOAD / 2);
        o.n = 0;
        rc = op_node(&o, user_node, "User", json_pack("{s:s}", "user_id", user));
        rc = rc ? rc : distill_entry_ops(db, &o, tenant, user, user_node, &pending[i]);
        rc = rc ? rc : log_apply(db, tenant, user, pending[i].memory_id, &o);
        if (rc == STRATA_OK) {
            atomic_fetch_add(&db->distilled, 1);
        }
        sbuf_free(&o.b);
    }
    for (size_t i = 0; i < n; i++) {
        distill_entry_clear(&pending[i]);
    }
    strata_free(pending);
    if (rc == STRATA_OK) {
        ops_buf o;
        sbuf_init(&o.b, AOL_MAX_PAYLOAD / 2);
        o.n = 0;
        rc = sync_profile(db, &o, tenant, user, user_node);
        if (rc == STRATA_OK && o.n > 0) {
            rc = log_apply(db, tenant, user, 0, &o);
        }
        sbuf_free(&o.b);
    }
    return rc;
}

int distill_job(void *ctx, const job_view *v, char *errbuf, size_t errcap)
{
    strata_db *db = ctx;
    int rc = STRATA_OK;
    if (v->user_id[0] != '\0') {
        rc = distill_user(db, v->tenant, v->user_id);
    } else {
        char **keys = NULL;
        size_t n = 0;
        rc = profile_users_with_pending(db->profile, &keys, &n);
        for (size_t i = 0; i < n; i++) {
            const char *user = keys[i] + strlen(keys[i]) + 1;
            if (rc == STRATA_OK && strcmp(keys[i], v->tenant) == 0) {
                rc = distill_user(db, v->tenant, user);
            }
            strata_free(keys[i]);
        }
        strata_free(keys);
    }
    if (rc != STRATA_OK) {
        snprintf(errbuf, errcap, "distillation failed: %s", strata_errmsg());
    }
    return rc;
}
