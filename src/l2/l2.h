/*
 * l2.h - the internal header of src/l2's tier: medium-term semantic memory,
 * the brief's collection `user_memories`, behind a vtable so Qdrant/Milvus
 * class engines can plug in later. The embedded backend (l2_mem.c) keeps the
 * payloads in memory, their vectors in an HNSW index (hnsw.h) and their
 * content in a BM25 index (bm25.h), and fuses both for hybrid search.
 *
 * Payload of a memory (brief §2.1 plus tenant and provenance):
 *   id, tenant_id, user_id, memory_type (preference | fact | experience),
 *   content, vector, timestamp, importance, provenance (source ids).
 *
 * Like L1, mutations are applied in log order by pipeline/db.c; the vector is
 * part of the log record, so replay never calls an embedder.
 */
#ifndef STRATA_L2_H
#define STRATA_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define L2_PROVENANCE_MAX 64          /* source ids per memory */
#define L2_CONTENT_MAX (16u << 10)    /* bytes of content */

typedef struct l2_store l2_store;

/* A memory as handed to add (borrowed pointers). */
typedef struct l2_memory_in {
    uint64_t id;                      /* assigned by the caller (the LSN of its record) */
    const char *tenant;
    const char *user_id;
    strata_memory_type type;
    const char *content;
    size_t content_len;
    float importance;                 /* 0..1 */
    int64_t timestamp;                /* Unix seconds */
    const float *vector;              /* dim floats */
    const char *const *provenance;
    size_t n_provenance;
} l2_memory_in;

typedef struct l2_search_opts {
    const char *tenant;
    const char *user_id;
    const char *query;                /* for keyword and hybrid modes */
    size_t query_len;
    const float *query_vector;        /* for vector and hybrid modes (may be NULL: keyword) */
    size_t limit;                     /* 1..1000 */
    strata_search_mode mode;
    uint32_t type_mask;               /* bit t accepts strata_memory_type t; 0 = all */
    float min_importance;
    int64_t now;                      /* Unix seconds, for recency */
} l2_search_opts;

typedef struct l2_stats {
    uint64_t memories;
    uint64_t users;
    uint32_t dim;
} l2_stats;

typedef struct l2_ops {
    const char *name;
    int (*add)(l2_store *s, const l2_memory_in *m);
    /* Copy of a memory of (tenant, user). STRATA_ENOTFOUND otherwise. */
    int (*get)(l2_store *s, const char *tenant, const char *user_id, uint64_t id,
               strata_memory **out);
    int (*remove)(l2_store *s, const char *tenant, const char *user_id, uint64_t id);
    int (*search)(l2_store *s, const l2_search_opts *opts, strata_memory_list **out);
    /* Ids of every memory of (tenant, user), ascending (privacy, rebuild). */
    int (*list_user)(l2_store *s, const char *tenant, const char *user_id, uint64_t **ids_out,
                     size_t *n_out);
    int (*snapshot_write)(l2_store *s, sbuf *out);
    int (*snapshot_load)(l2_store *s, const void *data, size_t len);
    void (*stats)(l2_store *s, l2_stats *out);
    void (*close)(l2_store *s);
} l2_ops;

struct l2_store {
    const l2_ops *ops;
};

typedef struct l2_mem_options {
    uint32_t dim;                     /* vector dimension of the collection */
    uint32_t M;                       /* HNSW links per node, default 16 */
    uint32_t ef_construction;         /* default 200 */
    uint32_t ef_search;               /* default 64 */
    float weight_importance;          /* hybrid/vector/keyword score adjustment, default 0.1 */
    float weight_recency;             /* default 0.05 */
    float recency_half_life_days;     /* default 30 */
} l2_mem_options;

void l2_mem_options_init(l2_mem_options *o, uint32_t dim);
int l2_mem_open(const l2_mem_options *opts, l2_store **out);

/* Memory ids are "mem-" + 16 hex digits of the number. */
void l2_id_format(char out[STRATA_MEMORY_ID_LEN], uint64_t id);
int l2_id_parse(const char *text, uint64_t *out);

#endif /* STRATA_L2_H */
