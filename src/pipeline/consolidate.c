/*
 * consolidate.c - consolidation L1 -> L2 (brief §2.2) and the delta-merge of
 * the profile (brief §2.3), run by a job worker, never on the request path.
 *
 *   job turns --extractor--> candidates --PII mask--> cheap checks
 *       exact duplicate (same content already stored: keyword lookup, no model)
 *       near duplicate  (cosine >= near_duplicate against the closest memory)
 *   --> memory add (embedded, logged, provenance = the source turn)
 *   --> delta-merge of the candidate's attribute into the profile:
 *         add | reinforce | update (old value kept in history) | keep | clarify
 *       every decision is logged (AOL_PROFILE_SET / AOL_PROFILE_CLARIFY), and
 *       a change sets user:{id}:dirty
 *   --> the memory is queued for distillation by its own AOL_MEM_ADD record;
 *       an important one (importance >= distill_importance) queues a distill job
 *
 * Idempotence: a job that runs again after a crash finds its memories as
 * exact duplicates (skipped), its profile values equal (reinforce, a no-op)
 * and its clarifications already open, so its effect happens once.
 *
 * Per-tenant limit: at most tenant_model_calls extractor calls at once per
 * tenant (tenant_calls, under tenant_calls_lock); over it the job is retried
 * later with backoff (STRATA_EBUSY).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "privacy/pii.h"
#include "providers/embed.h"
#include "providers/extract.h"

#define CANDIDATE_MAX 100

/* ---- per-tenant limit on concurrent model calls ---------------------------- */

static bool tenant_call_begin(strata_db *db, const char *tenant)
{
    uint32_t limit = db->cfg.tenant_model_calls ? db->cfg.tenant_model_calls : 4;
    pthread_mutex_lock(&db->tenant_calls_lock);
    uintptr_t n = (uintptr_t)dict_get(db->tenant_calls, tenant, strlen(tenant));
    bool ok = n < limit;
    if (ok && dict_set(db->tenant_calls, tenant, strlen(tenant), (void *)(n + 1)) != STRATA_OK) {
        ok = false;
    }
    pthread_mutex_unlock(&db->tenant_calls_lock);
    return ok;
}

static void tenant_call_end(strata_db *db, const char *tenant)
{
    pthread_mutex_lock(&db->tenant_calls_lock);
    uintptr_t n = (uintptr_t)dict_get(db->tenant_calls, tenant, strlen(tenant));
    if (n <= 1) {
        dict_delete(db->tenant_calls, tenant, strlen(tenant));
    } else {
        dict_set(db->tenant_calls, tenant, strlen(tenant), (void *)(n - 1));
    }
    pthread_mutex_unlock(&db->tenant_calls_lock);
}

/* ---- helpers ------------------------------------------------------------------ */

/* Mask PII in s (NULL or "" pass through) into a new string. */
static char *mask_text(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    sbuf b;
    sbuf_init(&b, 64u << 10);
    if (pii_mask(s, strlen(s), PII_ALL, &b, NULL) != STRATA_OK) {
        sbuf_free(&b);
        return NULL;
    }
    return sbuf_take(&b, NULL);
}

/* lower-case, words joined by '-': API.md's node id slugs. */
void pipeline_slug(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    bool dash = false;
    for (; *s && k + 2 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (dash && k > 0) {
                out[k++] = '-';
            }
            out[k++] = (char)c;
            dash = false;
        } else if (c >= 'A' && c <= 'Z') {
            if (dash && k > 0) {
                out[k++] = '-';
            }
            out[k++] = (char)(c - 'A' + 'a');
            dash = false;
        } else {
            dash = true;
        }
    }
    out[k] = '\0';
}

/* The profile key of a candidate: single-valued attributes keep their name;
 * set-valued ones (likes, dislikes, allergies, languages... see
 * extract_attribute_multi) are keyed per item, so that "I love hiking" and
 * "I love cooking" do not contradict each other, while "I hate hiking" does
 * contradict "I love hiking" (both are preference:hiking). */
static void profile_key(const extract_candidate *c, char *key, size_t cap, const char **value)
{
    char slug[96];
    const char *item = c->entity && c->entity[0] ? c->entity : c->value;
    pipeline_slug(item ? item : "", slug, sizeof(slug));
    if ((strcmp(c->attribute, "likes") == 0 || strcmp(c->attribute, "dislikes") == 0) &&
        slug[0]) {
        snprintf(key, cap, "preference:%s", slug);
        *value = c->attribute;
    } else if (extract_attribute_multi(c->attribute) && slug[0]) {
        snprintf(key, cap, "%s:%s", c->attribute, slug);
        *value = "yes";
    } else {
        snprintf(key, cap, "%s", c->attribute);
        *value = c->value;
    }
}

/* Is content already stored for this user, exactly (case-insensitive)?
 * A keyword lookup: no model involved. *id_out receives its id. */
static bool find_exact(strata_db *db, const char *tenant, const char *user, const char *content,
                       char id_out[STRATA_MEMORY_ID_LEN])
{
    strata_search_opts so;
    strata_search_opts_init(&so);
    so.query = content;
    so.query_len = strlen(content);
    so.mode = STRATA_SEARCH_KEYWORD;
    so.limit = 10;
    strata_memory_list *l = NULL;
    bool found = false;
    if (strata_memory_search(db, tenant, user, &so, &l) == STRATA_OK) {
        for (size_t i = 0; i < l->n && !found; i++) {
            if (profile_same_value(l->items[i].content, content)) {
                memcpy(id_out, l->items[i].id, STRATA_MEMORY_ID_LEN);
                found = true;
            }
        }
    }
    strata_memory_list_free(l);
    return found;
}

/* Cosine of the candidate against its nearest stored memory >= threshold? */
static bool find_near(strata_db *db, const char *tenant, const char *user, const char *content,
                      char id_out[STRATA_MEMORY_ID_LEN])
{
    float thr = db->cfg.near_duplicate > 0 ? db->cfg.near_duplicate : 0.92f;
    if (thr >= 1.0f) {
        return false;
    }
    strata_search_opts so;
    strata_search_opts_init(&so);
    so.query = content;
    so.query_len = strlen(content);
    so.mode = STRATA_SEARCH_VECTOR;
    so.limit = 1;
    strata_memory_list *l = NULL;
    bool near = false;
    if (strata_memory_search(db, tenant, user, &so, &l) == STRATA_OK && l->n == 1) {
        /* The search score is adjusted by importance and recency: recompute
         * the plain cosine (both embeddings come from the cache). */
        uint32_t dim = db->embedder->dim;
        float *v = strata_malloc(2 * (size_t)dim * sizeof(float));
        const char *texts[2] = {content, l->items[0].content};
        size_t lens[2] = {strlen(content), l->items[0].content_len};
        if (v != NULL && embedder_embed(db->embedder, texts, lens, 2, v) == STRATA_OK) {
            double dot = 0;
            for (uint32_t i = 0; i < dim; i++) {
                dot += (double)v[i] * v[dim + i];
            }
            if (dot >= thr) {
                near = true;
                memcpy(id_out, l->items[0].id, STRATA_MEMORY_ID_LEN);
            }
        }
        strata_free(v);
    }
    strata_memory_list_free(l);
    return near;
}

/* Log a profile decision for one candidate. */
static int merge_candidate(strata_db *db, const char *tenant, const char *user,
                           const extract_candidate *c, const char *value, const char *key,
                           const char *source, int64_t ts)
{
    merge_params p = {db->cfg.merge_margin > 0 ? db->cfg.merge_margin : 0.15,
                      db->cfg.merge_window_s ? (int64_t)db->cfg.merge_window_s : 3600};
    merge_decision d = profile_decide(db->profile, tenant, user, key, value, c->confidence, ts,
                                      &p);
    if (d == MERGE_KEEP) {
        return STRATA_OK;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    int rc = wire_put_str(&payload, user);
    rc = rc ? rc : wire_put_str(&payload, key);
    rc = rc ? rc : wire_put_str(&payload, value);
    rc = rc ? rc : wire_put_f64(&payload, c->confidence);
    if (d == MERGE_CLARIFY) {
        if (!profile_has_open_clarification(db->profile, tenant, user, key, value)) {
            rc = rc ? rc : db_log(db, AOL_PROFILE_CLARIFY, tenant, &payload, NULL);
            if (rc == STRATA_OK) {
                atomic_fetch_add(&db->clarifications_opened, 1);
            }
        }
    } else {
        rc = rc ? rc : wire_put_u32(&payload, 1);
        rc = rc ? rc : wire_put_str(&payload, source);
        rc = rc ? rc : db_log(db, AOL_PROFILE_SET, tenant, &payload, NULL);
    }
    sbuf_free(&payload);
    return rc;
}

/* ---- the job ----------------------------------------------------------------- */

int consolidate_job(void *ctx, const job_view *v, char *errbuf, size_t errcap)
{
    strata_db *db = ctx;
    if (v->n_turns == 0 || v->user_id[0] == '\0') {
        return STRATA_OK;
    }
    if (!tenant_call_begin(db, v->tenant)) {
        snprintf(errbuf, errcap, "tenant %s is at its limit of concurrent model calls",
                 v->tenant);
        return STRATA_EBUSY;
    }
    extract_result *res = NULL;
    int rc = db->extractor->ops->extract(db->extractor, v->turns, v->n_turns, &res, errbuf,
                                         errcap);
    tenant_call_end(db, v->tenant);
    if (rc != STRATA_OK) {
        if (errbuf[0] == '\0') {
            snprintf(errbuf, errcap, "extractor failed: %s", strata_errmsg());
        }
        return rc;
    }
    bool important = false;
    float distill_at = db->cfg.distill_importance > 0 ? db->cfg.distill_importance : 0.8f;
    for (size_t i = 0; i < res->n && i < CANDIDATE_MAX && rc == STRATA_OK; i++) {
        const extract_candidate *c = &res->items[i];
        char *content = mask_text(c->content);
        char *value = mask_text(c->value);
        char *entity = mask_text(c->entity);
        if (content == NULL || content[0] == '\0' || (c->value && value == NULL) ||
            (c->entity && entity == NULL)) {
            strata_free(content);
            strata_free(value);
            strata_free(entity);
            continue;
        }
        const strata_turn *t = &v->turns[c->source < v->n_turns ? c->source : 0];
        char source[STRATA_ID_MAX + 32];
        snprintf(source, sizeof(source), "turn:%s:%u", v->session_id, t->seq);
        int64_t ts = t->ts;
        char mem_id[STRATA_MEMORY_ID_LEN] = "";
        bool dup = find_exact(db, v->tenant, v->user_id, content, mem_id) ||
                   find_near(db, v->tenant, v->user_id, content, mem_id);
        if (dup) {
            atomic_fetch_add(&db->duplicates_skipped, 1);
        } else {
            const char *prov[1] = {source};
            strata_memory *m = NULL;
            float imp = isfinite(c->importance) ? fminf(fmaxf(c->importance, 0), 1) : 0.5f;
            bool distillable = (entity && entity[0]) || (c->attribute && c->attribute[0]);
            distill_entry de = {0,
                                entity ? entity : (char *)"",
                                c->entity_kind ? c->entity_kind : (char *)"",
                                c->polarity,
                                c->attribute ? c->attribute : (char *)"",
                                value ? value : (char *)"",
                                NULL,
                                c->confidence,
                                imp,
                                ts};
            rc = db_memory_add(db, v->tenant, v->user_id, c->type, content, strlen(content), imp,
                               prov, 1, distillable ? &de : NULL, &m);
            if (rc == STRATA_OK) {
                memcpy(mem_id, m->id, sizeof(mem_id));
                atomic_fetch_add(&db->memories_consolidated, 1);
                important = important || imp >= distill_at;
            }
            strata_memory_free(m);
        }
        if (rc == STRATA_OK && c->attribute && c->attribute[0] && value && value[0]) {
            char key[192];
            const char *pval = value;
            extract_candidate masked = *c;
            masked.entity = entity;
            masked.value = value;
            profile_key(&masked, key, sizeof(key), &pval);
            rc = merge_candidate(db, v->tenant, v->user_id, c, pval, key,
                                 mem_id[0] ? mem_id : source, ts);
        }
        strata_free(content);
        strata_free(value);
        strata_free(entity);
    }
    extract_result_free(res);
    if (rc == STRATA_OK && important) {
        char job_id[STRATA_JOB_ID_LEN];
        rc = db_enqueue_job(db, v->tenant, "distill", v->user_id, job_id);
    }
    if (rc != STRATA_OK && errbuf[0] == '\0') {
        snprintf(errbuf, errcap, "%s", strata_errmsg());
    }
    return rc;
}
