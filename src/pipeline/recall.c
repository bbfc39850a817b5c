/*
 * recall.c - the read side of the pipeline: the user's profile, resolving
 * clarifications, queueing distillation, and context recall - the brief's
 * MemoryOrchestrator in one call: the L1 buffer, the best L2 memories, the
 * profile and the user's L3 neighbourhood, fitted into a character budget.
 *
 * The text is built by priority: profile, then relevant memories, then the
 * most recent turns, then graph facts; each line goes in whole if it fits,
 * so the budget is never exceeded and nothing is cut mid-line.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/pipeline.h"

int memory_json(sbuf *b, const strata_memory *m, bool with_score)
{
    int rc = sbuf_puts(b, "{\"id\":");
    rc = rc ? rc : json_put_cstr(b, m->id);
    rc = rc ? rc : sbuf_puts(b, ",\"user_id\":");
    rc = rc ? rc : json_put_cstr(b, m->user_id);
    rc = rc ? rc : sbuf_puts(b, ",\"memory_type\":");
    rc = rc ? rc : json_put_cstr(b, strata_memory_type_name(m->type));
    rc = rc ? rc : sbuf_puts(b, ",\"content\":");
    rc = rc ? rc : json_put_str(b, m->content, m->content_len);
    rc = rc ? rc : sbuf_puts(b, ",\"importance\":");
    rc = rc ? rc : json_put_double(b, m->importance);
    rc = rc ? rc : sbuf_puts(b, ",\"timestamp\":");
    rc = rc ? rc : json_put_i64(b, m->timestamp);
    if (with_score) {
        rc = rc ? rc : sbuf_puts(b, ",\"score\":");
        rc = rc ? rc : json_put_double(b, m->score);
    }
    rc = rc ? rc : sbuf_puts(b, ",\"provenance\":[");
    for (size_t i = 0; rc == STRATA_OK && i < m->n_provenance; i++) {
        rc = i ? sbuf_putc(b, ',') : STRATA_OK;
        rc = rc ? rc : json_put_cstr(b, m->provenance[i]);
    }
    rc = rc ? rc : sbuf_puts(b, "]}");
    return rc;
}

int strata_profile_get(strata_db *db, const char *tenant, const char *user_id, char **json_out)
{
    *json_out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf b;
    sbuf_init(&b, 64u << 20);
    rc = profile_to_json(db->profile, tenant, user_id, &b);
    if (rc != STRATA_OK) {
        sbuf_free(&b);
        return rc;
    }
    *json_out = sbuf_take(&b, NULL);
    return *json_out ? STRATA_OK : STRATA_ENOMEM;
}

static int parse_clarification_id(const char *text, uint64_t *out)
{
    if (text == NULL || strncmp(text, "clr-", 4) != 0 || strlen(text) != 20) {
        return STRATA_ENOTFOUND;
    }
    uint64_t v = 0;
    for (int i = 4; i < 20; i++) {
        char c = text[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return STRATA_ENOTFOUND;
        }
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return STRATA_OK;
}

/* Log AOL_PROFILE_SET of a value the user confirmed (confidence 1). */
static int log_confirmed(strata_db *db, const char *tenant, const char *user, const char *attr,
                         const char *value)
{
    sbuf p;
    sbuf_init(&p, AOL_MAX_PAYLOAD);
    int rc = wire_put_str(&p, user);
    rc = rc ? rc : wire_put_str(&p, attr);
    rc = rc ? rc : wire_put_str(&p, value);
    rc = rc ? rc : wire_put_f64(&p, 1.0);
    rc = rc ? rc : wire_put_u32(&p, 1);
    rc = rc ? rc : wire_put_str(&p, "clarification");
    rc = rc ? rc : db_log(db, AOL_PROFILE_SET, tenant, &p, NULL);
    sbuf_free(&p);
    return rc;
}

int strata_clarification_resolve(strata_db *db, const char *tenant, const char *user_id,
                                 const char *clarification_id, const char *choose,
                                 const char *value_json, char **json_out)
{
    *json_out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    if ((choose == NULL) == (value_json == NULL)) {
        return strata_error(STRATA_EINVAL, "give exactly one of choose or value");
    }
    if (choose != NULL && strcmp(choose, "old") != 0 && strcmp(choose, "new") != 0) {
        return strata_error(STRATA_EINVAL, "choose must be \"old\" or \"new\"");
    }
    uint64_t id;
    if (parse_clarification_id(clarification_id, &id) != STRATA_OK) {
        return strata_error(STRATA_ENOTFOUND, "no clarification %s",
                            clarification_id ? clarification_id : "");
    }
    char *attr = NULL;
    char *old_v = NULL;
    char *new_v = NULL;
    double conf;
    bool open;
    rc = profile_clarification_get(db->profile, tenant, user_id, id, &attr, &old_v, &new_v,
                                   &conf, &open);
    if (rc == STRATA_ENOTFOUND) {
        return strata_error(rc, "no clarification %s", clarification_id);
    }
    char *given = NULL;
    if (rc == STRATA_OK && !open) {
        rc = strata_error(STRATA_ECONFLICT, "clarification %s is already resolved",
                          clarification_id);
    }
    if (rc == STRATA_OK && value_json != NULL) {
        json_t *v = json_loads(value_json, JSON_DECODE_ANY, NULL);
        if (v == NULL || json_is_null(v) || json_is_object(v) || json_is_array(v)) {
            rc = strata_error(STRATA_EINVAL, "value must be a string, number or boolean");
        } else if (json_is_string(v)) {
            given = strata_strdup(json_string_value(v));
        } else {
            char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            given = t ? strata_strdup(t) : NULL;
            free(t);
        }
        json_decref(v);
        if (rc == STRATA_OK && (given == NULL || given[0] == '\0')) {
            rc = given ? strata_error(STRATA_EINVAL, "value must not be empty") : STRATA_ENOMEM;
        }
    }
    const char *chosen = given ? given : (choose && strcmp(choose, "new") == 0 ? new_v : old_v);
    if (rc == STRATA_OK && chosen[0] != '\0') {
        rc = log_confirmed(db, tenant, user_id, attr, chosen);
    }
    if (rc == STRATA_OK) {
        sbuf p;
        sbuf_init(&p, AOL_MAX_PAYLOAD);
        rc = wire_put_str(&p, user_id);
        rc = rc ? rc : wire_put_u64(&p, id);
        rc = rc ? rc : wire_put_str(&p, chosen);
        rc = rc ? rc : db_log(db, AOL_PROFILE_RESOLVE, tenant, &p, NULL);
        sbuf_free(&p);
    }
    if (rc == STRATA_OK) {
        sbuf out;
        sbuf_init(&out, 16u << 20);
        rc = profile_attribute_json(db->profile, tenant, user_id, attr, &out);
        if (rc == STRATA_ENOTFOUND) {
            sbuf_reset(&out);
            rc = sbuf_puts(&out, "{\"attribute\":");
            rc = rc ? rc : json_put_cstr(&out, attr);
            rc = rc ? rc : sbuf_puts(&out, ",\"state\":null}");
        }
        *json_out = rc ? NULL : sbuf_take(&out, NULL);
        sbuf_free(&out);
    }
    strata_free(given);
    strata_free(attr);
    strata_free(old_v);
    strata_free(new_v);
    return rc;
}

int strata_distill(strata_db *db, const char *tenant, const char *user_id,
                   char job_id[STRATA_JOB_ID_LEN])
{
    job_id[0] = '\0';
    int rc = db_check_tenant(tenant);
    if (rc == STRATA_OK && user_id != NULL) {
        rc = db_check_id("user_id", user_id);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    return db_enqueue_job(db, tenant, "distill", user_id ? user_id : "", job_id);
}

/* ---- context recall ------------------------------------------------------------ */

/* Code points in s[0..n): the budget counts characters, not bytes. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return c;
}

typedef struct budget_text {
    sbuf b;
    size_t used;                     /* characters */
    size_t budget;
} budget_text;

/* Append line (plus '\n') only if it fits entirely. */
static bool bt_line(budget_text *t, const char *line, size_t n)
{
    size_t chars = utf8_chars(line, n) + 1;
    if (t->used + chars > t->budget) {
        return false;
    }
    if (sbuf_append(&t->b, line, n) != STRATA_OK || sbuf_putc(&t->b, '\n') != STRATA_OK) {
        return false;
    }
    t->used += chars;
    return true;
}

static void bt_fmt(budget_text *t, const char *fmt, const char *a, const char *b)
{
    char line[2048];
    int n = snprintf(line, sizeof(line), fmt, a, b ? b : "");
    if (n > 0) {
        bt_line(t, line, (size_t)STRATA_MIN((size_t)n, sizeof(line) - 1));
    }
}

int strata_context(strata_db *db, const char *tenant, const char *session_id, const char *query,
                   size_t budget_chars, char **json_out)
{
    *json_out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("session_id", session_id);
    if (rc == STRATA_OK && query != NULL) {
        rc = db_check_text("query", query, strlen(query), 16384, true);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    if (budget_chars == 0 || budget_chars > 1000000) {
        return strata_error(STRATA_EINVAL, "budget_chars must be 1..1000000");
    }
    strata_session *s = NULL;
    rc = strata_session_get(db, tenant, session_id, &s);
    if (rc != STRATA_OK) {
        return rc == STRATA_ENOTFOUND ? strata_error(rc, "no session %s", session_id) : rc;
    }
    const char *user = s->user_id;
    strata_memory_list *mems = NULL;
    if (query != NULL && query[0] != '\0') {
        strata_search_opts so;
        strata_search_opts_init(&so);
        so.query = query;
        so.query_len = strlen(query);
        so.limit = 10;
        rc = strata_memory_search(db, tenant, user, &so, &mems);
    }
    char user_node[STRATA_ID_MAX + 8];
    snprintf(user_node, sizeof(user_node), "user:%s", user);
    json_t *neighbourhood = NULL;
    if (rc == STRATA_OK && strata_id_valid(user_node, strlen(user_node))) {
        strata_subgraph_opts go;
        strata_subgraph_opts_init(&go);
        go.center = user_node;
        go.depth = 1;
        go.limit = 50;
        go.direction = STRATA_DIR_OUT;
        char *gj = NULL;
        if (strata_graph_subgraph(db, tenant, &go, &gj) == STRATA_OK) {
            neighbourhood = json_loads(gj, 0, NULL);
        }
        strata_free(gj);
    }
    sbuf pj;
    sbuf_init(&pj, 64u << 20);
    if (rc == STRATA_OK) {
        rc = profile_to_json(db->profile, tenant, user, &pj);
    }
    json_t *prof = rc ? NULL : json_loadb(pj.data, pj.len, 0, NULL);

    /* The text, by priority. */
    budget_text t;
    sbuf_init(&t.b, 4 * budget_chars + 16);
    t.used = 0;
    t.budget = budget_chars;
    const char *k;
    json_t *a;
    json_t *attrs = json_object_get(prof, "attributes");
    if (json_object_size(attrs) > 0) {
        bt_line(&t, "## User profile", 15);
        json_object_foreach(attrs, k, a)
        {
            bt_fmt(&t, "- %s: %s", k, json_string_value(json_object_get(a, "value")));
        }
    }
    if (mems != NULL && mems->n > 0) {
        bt_line(&t, "## Relevant memories", 20);
        for (size_t i = 0; i < mems->n; i++) {
            bt_fmt(&t, "- %s", mems->items[i].content, NULL);
        }
    }
    if (s->n_turns > 0) {
        /* The most recent turns that fit, printed oldest first. */
        size_t first = s->n_turns;
        size_t need = t.used + 23;
        while (first > 0) {
            const strata_turn *turn = &s->turns[first - 1];
            size_t c = utf8_chars(turn->content, turn->content_len) +
                       strlen(strata_role_name(turn->role)) + 3;
            if (need + c > budget_chars) {
                break;
            }
            need += c;
            first--;
        }
        if (first < s->n_turns) {
            bt_line(&t, "## Recent conversation", 22);
            for (size_t i = first; i < s->n_turns; i++) {
                bt_fmt(&t, "%s: %s", strata_role_name(s->turns[i].role), s->turns[i].content);
            }
        }
    }
    json_t *edges = json_object_get(neighbourhood, "edges");
    if (json_array_size(edges) > 0) {
        bt_line(&t, "## Known about the user", 23);
        size_t i;
        json_t *e;
        json_array_foreach(edges, i, e)
        {
            bt_fmt(&t, "- %s %s", json_string_value(json_object_get(e, "type")),
                   json_string_value(json_object_get(e, "to")));
        }
    }

    sbuf out;
    sbuf_init(&out, 256u << 20);
    if (rc == STRATA_OK) {
        rc = sbuf_puts(&out, "{\"session_id\":");
        rc = rc ? rc : json_put_cstr(&out, session_id);
        rc = rc ? rc : sbuf_puts(&out, ",\"user_id\":");
        rc = rc ? rc : json_put_cstr(&out, user);
        rc = rc ? rc : sbuf_puts(&out, ",\"buffer\":[");
        for (size_t i = 0; rc == STRATA_OK && i < s->n_turns; i++) {
            rc = sbuf_puts(&out, i ? ",{\"role\":" : "{\"role\":");
            rc = rc ? rc : json_put_cstr(&out, strata_role_name(s->turns[i].role));
            rc = rc ? rc : sbuf_puts(&out, ",\"content\":");
            rc = rc ? rc : json_put_str(&out, s->turns[i].content, s->turns[i].content_len);
            rc = rc ? rc : sbuf_puts(&out, ",\"ts\":");
            rc = rc ? rc : json_put_i64(&out, s->turns[i].ts);
            rc = rc ? rc : sbuf_putc(&out, '}');
        }
        rc = rc ? rc : sbuf_puts(&out, "],\"memories\":[");
        for (size_t i = 0; rc == STRATA_OK && mems != NULL && i < mems->n; i++) {
            rc = i ? sbuf_putc(&out, ',') : STRATA_OK;
            rc = rc ? rc : memory_json(&out, &mems->items[i], true);
        }
        rc = rc ? rc : sbuf_puts(&out, "],\"profile\":");
        rc = rc ? rc : sbuf_append(&out, pj.data, pj.len);
        rc = rc ? rc : sbuf_puts(&out, ",\"graph\":{\"nodes\":");
        char *nodes = json_dumps(neighbourhood ? json_object_get(neighbourhood, "nodes") : NULL,
                                 JSON_COMPACT | JSON_ENCODE_ANY);
        char *edgs = json_dumps(edges, JSON_COMPACT | JSON_ENCODE_ANY);
        rc = rc ? rc : sbuf_puts(&out, nodes ? nodes : "[]");
        rc = rc ? rc : sbuf_puts(&out, ",\"edges\":");
        rc = rc ? rc : sbuf_puts(&out, edgs ? edgs : "[]");
        free(nodes);
        free(edgs);
        rc = rc ? rc : sbuf_puts(&out, "},\"text\":");
        rc = rc ? rc : json_put_str(&out, t.b.data ? t.b.data : "", t.b.len);
        rc = rc ? rc : sbuf_puts(&out, ",\"budget_chars\":");
        rc = rc ? rc : json_put_u64(&out, budget_chars);
        rc = rc ? rc : sbuf_puts(&out, ",\"text_chars\":");
        rc = rc ? rc : json_put_u64(&out, t.used);
        rc = rc ? rc : sbuf_putc(&out, '}');
    }
    if (rc == STRATA_OK) {
        *json_out = sbuf_take(&out, NULL);
    }
    sbuf_free(&out);
    sbuf_free(&t.b);
    sbuf_free(&pj);
    json_decref(prof);
    json_decref(neighbourhood);
    strata_memory_list_free(mems);
    strata_session_free(s);
    return rc;
}
