/*
 * memories.c - the L2 operations of the engine: add (embed outside every
 * lock, then log the memory with its vector and apply it), get, delete and
 * search (embed the query, then ask the tier). The embedder is the cached one
 * db.c opened, so identical content is embedded once.
 */
#include <math.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "providers/embed.h"

#define PROVENANCE_ID_MAX 256
#define QUERY_MAX_BYTES (16u << 10)

uint32_t strata_embed_dim(strata_db *db)
{
    return db->embedder->dim;
}

const char *strata_embed_model(strata_db *db)
{
    return db->embedder->model;
}

static int db_check_user_memory_id(const char *user_id, const char *memory_id, uint64_t *id)
{
    int rc = db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (l2_id_parse(memory_id, id) != STRATA_OK) {
        return strata_error(STRATA_ENOTFOUND, "no memory %s", memory_id ? memory_id : "");
    }
    return STRATA_OK;
}

int strata_memory_add(strata_db *db, const char *tenant, const char *user_id,
                      strata_memory_type type, const char *content, size_t content_len,
                      float importance, const char *const *provenance, size_t n_provenance,
                      strata_memory **out)
{
    return db_memory_add(db, tenant, user_id, type, content, content_len, importance,
                         provenance, n_provenance, NULL, out);
}

int db_memory_add(strata_db *db, const char *tenant, const char *user_id,
                  strata_memory_type type, const char *content, size_t content_len,
                  float importance, const char *const *provenance, size_t n_provenance,
                  const distill_entry *distill, strata_memory **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    rc = rc ? rc : db_check_text("content", content, content_len, L2_CONTENT_MAX, false);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (type > STRATA_MEM_EXPERIENCE) {
        return strata_error(STRATA_EINVAL, "memory_type must be preference, fact or experience");
    }
    if (!isfinite(importance) || importance < 0.0f || importance > 1.0f) {
        return strata_error(STRATA_EINVAL, "importance must be a number in [0, 1]");
    }
    if (n_provenance > L2_PROVENANCE_MAX) {
        return strata_error(STRATA_EINVAL, "at most %d provenance ids", L2_PROVENANCE_MAX);
    }
    for (size_t i = 0; i < n_provenance; i++) {
        const char *p = provenance[i];
        rc = db_check_text("provenance id", p, p ? strlen(p) : 0, PROVENANCE_ID_MAX, false);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    uint32_t dim = db->embedder->dim;
    float *vec = strata_malloc((size_t)dim * sizeof(float));
    if (vec == NULL) {
        return STRATA_ENOMEM;
    }
    const char *texts[1] = {content};
    size_t lens[1] = {content_len};
    rc = embedder_embed(db->embedder, texts, lens, 1, vec);
    if (rc != STRATA_OK) {
        strata_free(vec);
        return strata_error(rc, "embedding failed: %s", strata_errmsg());
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    int64_t now = clock_now_s();
    rc = wire_put_str(&payload, user_id);
    rc = rc ? rc : wire_put_u8(&payload, (uint8_t)type);
    rc = rc ? rc : wire_put_bytes(&payload, content, content_len);
    rc = rc ? rc : wire_put_f64(&payload, importance);
    rc = rc ? rc : wire_put_i64(&payload, now);
    rc = rc ? rc : wire_put_u32(&payload, (uint32_t)n_provenance);
    for (size_t i = 0; rc == STRATA_OK && i < n_provenance; i++) {
        rc = wire_put_str(&payload, provenance[i]);
    }
    rc = rc ? rc : wire_put_u32(&payload, dim);
    rc = rc ? rc : wire_put_u32(&payload, dim * 4);
    for (uint32_t i = 0; rc == STRATA_OK && i < dim; i++) {
        uint32_t u;
        memcpy(&u, &vec[i], 4);
        uint8_t le[4];
        wire_le32(le, u);
        rc = sbuf_append(&payload, le, 4);
    }
    strata_free(vec);
    if (rc == STRATA_OK && distill != NULL) {
        /* Optional trailer: the memory is queued for distillation by the same
         * record that stores it, so neither can happen without the other. */
        rc = wire_put_u8(&payload, 1);
        rc = rc ? rc : wire_put_str(&payload, distill->entity);
        rc = rc ? rc : wire_put_str(&payload, distill->kind);
        rc = rc ? rc : wire_put_u32(&payload, (uint32_t)(distill->polarity + 1));
        rc = rc ? rc : wire_put_str(&payload, distill->attribute);
        rc = rc ? rc : wire_put_str(&payload, distill->value);
        rc = rc ? rc : wire_put_f64(&payload, distill->confidence);
    }
    uint64_t lsn = 0;
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_MEM_ADD, tenant, &payload, NULL, NULL, &lsn);
    }
    sbuf_free(&payload);
    if (rc == STRATA_OK && out != NULL) {
        rc = db->l2->ops->get(db->l2, tenant, user_id, lsn, out);
    }
    return rc;
}

int strata_memory_get(strata_db *db, const char *tenant, const char *user_id,
                      const char *memory_id, strata_memory **out)
{
    *out = NULL;
    uint64_t id;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_user_memory_id(user_id, memory_id, &id);
    if (rc != STRATA_OK) {
        return rc;
    }
    rc = db->l2->ops->get(db->l2, tenant, user_id, id, out);
    if (rc == STRATA_ENOTFOUND) {
        return strata_error(rc, "no memory %s", memory_id);
    }
    return rc;
}

typedef struct mem_arg {
    const char *tenant;
    const char *user_id;
    uint64_t id;
} mem_arg;

static int db_memory_exists(strata_db *db, void *argp)
{
    mem_arg *a = argp;
    strata_memory *m = NULL;
    int rc = db->l2->ops->get(db->l2, a->tenant, a->user_id, a->id, &m);
    strata_memory_free(m);
    return rc;
}

int strata_memory_delete(strata_db *db, const char *tenant, const char *user_id,
                         const char *memory_id)
{
    uint64_t id;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_user_memory_id(user_id, memory_id, &id);
    if (rc != STRATA_OK) {
        return rc;
    }
    sbuf payload;
    sbuf_init(&payload, AOL_MAX_PAYLOAD);
    rc = wire_put_str(&payload, user_id);
    rc = rc ? rc : wire_put_u64(&payload, id);
    mem_arg arg = {tenant, user_id, id};
    if (rc == STRATA_OK) {
        rc = db_write(db, AOL_MEM_DELETE, tenant, &payload, db_memory_exists, &arg, NULL);
    }
    sbuf_free(&payload);
    if (rc == STRATA_ENOTFOUND) {
        return strata_error(rc, "no memory %s", memory_id);
    }
    return rc;
}

int strata_memory_search(strata_db *db, const char *tenant, const char *user_id,
                         const strata_search_opts *opts, strata_memory_list **out)
{
    *out = NULL;
    int rc = db_check_tenant(tenant);
    rc = rc ? rc : db_check_id("user_id", user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (opts->limit == 0 || opts->limit > 1000) {
        return strata_error(STRATA_EINVAL, "limit must be 1..1000");
    }
    if (opts->mode > STRATA_SEARCH_KEYWORD) {
        return strata_error(STRATA_EINVAL, "mode must be hybrid, vector or keyword");
    }
    if (!isfinite(opts->min_importance) || opts->min_importance < 0 ||
        opts->min_importance > 1) {
        return strata_error(STRATA_EINVAL, "min_importance must be in [0, 1]");
    }
    if (opts->type_mask >= (1u << (STRATA_MEM_EXPERIENCE + 1))) {
        return strata_error(STRATA_EINVAL, "unknown memory type in the filter");
    }
    bool have_text = opts->query != NULL && opts->query_len > 0;
    if (have_text) {
        rc = db_check_text("query", opts->query, opts->query_len, QUERY_MAX_BYTES, false);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    uint32_t dim = db->embedder->dim;
    if (opts->query_vector != NULL) {
        if (opts->query_vector_dim != dim) {
            return strata_error(STRATA_EINVAL, "query_vector has %zu dimensions, expected %u",
                                opts->query_vector_dim, dim);
        }
        double norm = 0;
        for (size_t i = 0; i < dim; i++) {
            if (!isfinite(opts->query_vector[i])) {
                return strata_error(STRATA_EINVAL, "query_vector holds NaN or Inf");
            }
            norm += (double)opts->query_vector[i] * opts->query_vector[i];
        }
        if (norm == 0) {
            return strata_error(STRATA_EINVAL, "query_vector must not be all zeros");
        }
    } else if (!have_text) {
        return strata_error(STRATA_EINVAL, "a query (text or vector) is required");
    }
    if (opts->mode == STRATA_SEARCH_KEYWORD && !have_text) {
        return strata_error(STRATA_EINVAL, "keyword search needs a text query");
    }
    float *qvec = NULL;
    const float *use_vec = opts->query_vector;
    if (use_vec == NULL && opts->mode != STRATA_SEARCH_KEYWORD) {
        qvec = strata_malloc((size_t)dim * sizeof(float));
        if (qvec == NULL) {
            return STRATA_ENOMEM;
        }
        const char *texts[1] = {opts->query};
        size_t lens[1] = {opts->query_len};
        rc = embedder_embed(db->embedder, texts, lens, 1, qvec);
        if (rc != STRATA_OK) {
            strata_free(qvec);
            return strata_error(rc, "embedding the query failed: %s", strata_errmsg());
        }
        use_vec = qvec;
    }
    l2_search_opts so = {tenant,           user_id,         have_text ? opts->query : NULL,
                         opts->query_len,  use_vec,         opts->limit,
                         opts->mode,       opts->type_mask, opts->min_importance,
                         clock_now_s()};
    rc = db->l2->ops->search(db->l2, &so, out);
    strata_free(qvec);
    return rc;
}

/* Rewrite an AOL_MEM_ADD payload with the vector of its content under
 * another embedder (strata reembed): every field is kept but dim and vector. */
int db_mem_add_reembed(embedder *e, const uint8_t *p, size_t n, sbuf *out)
{
    wire_reader r;
    wire_reader_init(&r, p, n);
    size_t ulen;
    size_t clen;
    const char *user = wire_get_bytes(&r, &ulen);
    uint8_t type = wire_get_u8(&r);
    const char *content = wire_get_bytes(&r, &clen);
    double importance = wire_get_f64(&r);
    int64_t ts = wire_get_i64(&r);
    uint32_t n_prov = wire_get_u32(&r);
    size_t prov_start = r.off;
    for (uint32_t i = 0; i < n_prov && !r.err; i++) {
        size_t pl;
        wire_get_bytes(&r, &pl);
    }
    size_t prov_end = r.off;
    wire_get_u32(&r); /* old dim */
    size_t vlen;
    wire_get_bytes(&r, &vlen);
    if (r.err || user == NULL || content == NULL || n_prov > L2_PROVENANCE_MAX) {
        return strata_error(STRATA_ECORRUPT, "malformed memory record");
    }
    size_t trailer = r.off; /* optional distillation trailer: copied as is */
    float *vec = strata_malloc((size_t)e->dim * sizeof(float));
    if (vec == NULL) {
        return STRATA_ENOMEM;
    }
    const char *texts[1] = {content};
    size_t lens[1] = {clen};
    int rc = embedder_embed(e, texts, lens, 1, vec);
    rc = rc ? rc : wire_put_bytes(out, user, ulen);
    rc = rc ? rc : wire_put_u8(out, type);
    rc = rc ? rc : wire_put_bytes(out, content, clen);
    rc = rc ? rc : wire_put_f64(out, importance);
    rc = rc ? rc : wire_put_i64(out, ts);
    rc = rc ? rc : wire_put_u32(out, n_prov);
    rc = rc ? rc : sbuf_append(out, p + prov_start, prov_end - prov_start);
    rc = rc ? rc : wire_put_u32(out, e->dim);
    rc = rc ? rc : wire_put_u32(out, e->dim * 4);
    for (uint32_t i = 0; rc == STRATA_OK && i < e->dim; i++) {
        uint32_t u;
        memcpy(&u, &vec[i], 4);
        uint8_t le[4];
        wire_le32(le, u);
        rc = sbuf_append(out, le, 4);
    }
    rc = rc ? rc : sbuf_append(out, p + trailer, n - trailer);
    strata_free(vec);
    return rc;
}
