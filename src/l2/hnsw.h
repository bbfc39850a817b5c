/*
 * hnsw.h - the internal header of src/l2: an HNSW (hierarchical navigable
 * small world) index over float vectors, searched by cosine similarity, with
 * per-element attributes that searches can filter on.
 *
 * What it is for: the L2 tier keeps one index of memory embeddings; pipeline/
 * adds, deletes and searches them by an external 64-bit label, restricted to
 * one tenant (and optionally one user, a set of types, a minimum importance).
 *
 *   hnsw_create ---> hnsw_add / hnsw_delete (one writer at a time)
 *                \-> hnsw_search            (any number of readers)
 *   hnsw_serialize / hnsw_deserialize       (snapshots, see hnsw_io.c)
 *
 * Metric: vectors are L2-normalised on insert and queries on search, and the
 * score is their inner product, i.e. the cosine similarity in [-1, 1]; a
 * higher score is better. A zero or non-finite vector is STRATA_EINVAL.
 *
 * Thread-safety: every function below may be called from any thread. The
 * index carries a pthread rwlock: hnsw_search, hnsw_count and hnsw_serialize
 * take it shared, hnsw_add and hnsw_delete exclusive (writer-preferring, so a
 * stream of searches cannot starve a writer). One lock for the whole index is
 * the simple choice for now; hnswlib-style per-element locks would let
 * inserts run in parallel, which the single-writer log replay does not need.
 *
 * Errors: functions return STRATA_OK or a negative STRATA_E* code, with the
 * detail recorded by strata_error() for strata_errmsg().
 */
#ifndef STRATA_L2_HNSW_H
#define STRATA_L2_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- limits ----------------------------------------------------------- */
#define HNSW_DIM_MAX 4096u            /* largest vector dimension accepted */
#define HNSW_M_MIN 2u                 /* smallest M (links per node, upper levels) */
#define HNSW_M_MAX 128u               /* largest M; level 0 keeps 2*M links */
#define HNSW_EF_MAX 100000u           /* largest ef_construction / ef_search */
#define HNSW_LEVEL_MAX 15u            /* levels are 0..HNSW_LEVEL_MAX */
#define HNSW_ELEMENTS_MAX (1u << 30)  /* slots per index; capacity never grows past */
#define HNSW_TYPE_MAX 63u             /* hnsw_attrs.type is 0..HNSW_TYPE_MAX */

/* ---- types ------------------------------------------------------------ */
typedef struct hnsw hnsw;

/* Filterable fields of one element. tenant and user are interned ids that
 * the caller maps from strings; the index only compares them. */
typedef struct hnsw_attrs {
    uint32_t tenant;        /* owning tenant */
    uint32_t user;          /* owning user within the tenant */
    uint8_t type;           /* memory type, 0..HNSW_TYPE_MAX */
    float importance;       /* any finite value; filters compare with >= */
} hnsw_attrs;

/* Which elements a search may return. Fill with hnsw_filter_init(), then set
 * the optional fields. Every condition must hold (logical AND). */
typedef struct hnsw_filter {
    uint32_t tenant;        /* required: only this tenant's elements match */
    bool has_user;          /* false: any user of the tenant */
    uint32_t user;          /* only this user's elements, when has_user */
    uint64_t type_mask;     /* bit t accepts type t; 0 accepts every type */
    float min_importance;   /* reject importance < this; -INFINITY accepts all */
} hnsw_filter;

/* One search hit. */
typedef struct hnsw_result {
    uint64_t label;         /* the caller's label given to hnsw_add */
    float score;            /* cosine similarity, higher is better */
} hnsw_result;

/* Counters for tests and benchmarks; a snapshot under the read lock. */
typedef struct hnsw_stats {
    size_t n_live;          /* elements searchable (hnsw_count) */
    size_t n_deleted;       /* tombstoned slots waiting for reuse */
    size_t n_slots;         /* slots ever used: n_live + n_deleted */
    size_t capacity;        /* slots allocated in the level-0 block */
    size_t bytes;           /* heap bytes owned by the index (approximate) */
    uint32_t max_level;     /* level of the entry point */
} hnsw_stats;

/* ---- lifetime --------------------------------------------------------- */

/* Create an empty index for vectors of dim floats. M is the number of links
 * per node on the upper levels (level 0 keeps 2*M), ef_construction the
 * breadth of the insertion search (typical: M=16, ef_construction=200).
 * max_elements is a capacity hint: the index grows past it by doubling. seed
 * drives the random level assignment, so the same inserts in the same order
 * build the same graph. Returns STRATA_OK and *out, STRATA_EINVAL for a value
 * outside the limits above, STRATA_ENOMEM; *out is NULL on failure. */
int hnsw_create(uint32_t dim, uint32_t M, uint32_t ef_construction, size_t max_elements,
                uint64_t seed, hnsw **out);

/* Free the index and everything it owns. NULL is a no-op. No other thread may
 * be using idx. */
void hnsw_free(hnsw *idx);

/* ---- writes (exclusive lock) ------------------------------------------ */

/* Insert vec (dim floats, copied and normalised) under label with attrs.
 * A label already present is replaced: the old element is deleted (as by
 * hnsw_delete) and the new one inserted, so a label is never in the index
 * twice. Capacity grows automatically; slots of deleted elements are reused
 * first. Returns STRATA_OK, STRATA_EINVAL (NULL argument, zero or non-finite
 * vector, type > HNSW_TYPE_MAX, non-finite importance), STRATA_ETOOBIG (past
 * HNSW_ELEMENTS_MAX) or STRATA_ENOMEM (the index is unchanged). */
int hnsw_add(hnsw *idx, uint64_t label, const float *vec, const hnsw_attrs *attrs);

/* Delete the element with this label: it is tombstoned (never returned
 * again), the nodes that linked to it are relinked among its neighbours with
 * the selection heuristic, and its slot is reused by a later insert.
 * Repair looks two hops around the deleted node for nodes linking to it; a
 * rare link it misses keeps pointing at the tombstone, which still routes.
 * Returns STRATA_OK, STRATA_ENOTFOUND, or STRATA_ENOMEM (nothing changed). */
int hnsw_delete(hnsw *idx, uint64_t label);

/* ---- reads (shared lock) ---------------------------------------------- */

/* Number of live (searchable) elements. */
size_t hnsw_count(hnsw *idx);

/* True when label is live in the index; *attrs_out (may be NULL) receives its
 * attributes. */
bool hnsw_contains(hnsw *idx, uint64_t label, hnsw_attrs *attrs_out);

void hnsw_stats_get(hnsw *idx, hnsw_stats *out);

/* Set *f to match every element of tenant: any user, type and importance. */
void hnsw_filter_init(hnsw_filter *f, uint32_t tenant);

/* The k elements most similar to query (dim floats, not modified), best
 * first, into results[0..*n_out) (results has room for k). ef is the breadth
 * of the search (higher: better recall, slower); it is raised to k when
 * smaller. filter may be NULL (every element matches). With a filter, the
 * graph walk passes through rejected nodes without returning them; when the
 * filter's tenant or (tenant, user) owns few elements the matching elements
 * are scanned exactly instead, and a walk that finds fewer than k matches
 * falls back to that scan, so *n_out < k only when fewer than k elements
 * match. Returns STRATA_OK, STRATA_EINVAL (NULL argument, k == 0, zero or
 * non-finite query) or STRATA_ENOMEM; *n_out is 0 on failure. */
int hnsw_search(hnsw *idx, const float *query, size_t k, size_t ef, const hnsw_filter *filter,
                hnsw_result *results, size_t *n_out);

/* Accessors for values fixed at creation. */
uint32_t hnsw_dim(const hnsw *idx);
uint32_t hnsw_M(const hnsw *idx);

/* ---- snapshots (hnsw_io.c) -------------------------------------------- */

/* Append the whole index (graph, vectors, labels, attributes, tombstones) to
 * out in the format documented in hnsw_io.c. Takes the read lock for the
 * whole copy (about 0.2 s per 100k x 384 elements), so writers wait. Returns
 * STRATA_OK, STRATA_ENOMEM or STRATA_ETOOBIG (out's max reached; out then
 * holds a partial image the caller should discard). */
int hnsw_serialize(hnsw *idx, sbuf *out);

/* Build an index from buf[0..len) produced by hnsw_serialize. Every count,
 * id, level and float is validated before it is used or allocated for, so
 * hostile input yields STRATA_ECORRUPT, never a crash. The image's search
 * results are reproduced exactly. Returns STRATA_OK and *out (freed with
 * hnsw_free), STRATA_ECORRUPT or STRATA_ENOMEM; *out is NULL on failure. */
int hnsw_deserialize(const void *buf, size_t len, hnsw **out);

/* ---- raw access, for hnsw_io.c only ----------------------------------- */
/* hnsw.c owns the in-memory layout, hnsw_io.c the byte format; these calls
 * are the seam between them. Nothing else should use them. */

/* Index-wide values of an image. */
typedef struct hnsw_image {
    uint32_t dim;               /* floats per vector */
    uint32_t M;                 /* links per node on levels >= 1 (level 0: 2*M) */
    uint32_t ef_construction;   /* insertion search breadth */
    uint32_t n_slots;           /* slots in use, live or tombstoned */
    uint32_t n_live;            /* slots not tombstoned */
    uint32_t entry;             /* entry slot; UINT32_MAX when n_live == 0 */
    uint32_t max_level;         /* level of the entry slot (0 when none) */
    uint64_t rng;               /* level generator state */
} hnsw_image;

/* One slot, as borrowed pointers into the index. */
typedef struct hnsw_slot {
    uint64_t label;
    hnsw_attrs attrs;
    bool deleted;                               /* tombstone */
    uint32_t level;                             /* top level, 0..HNSW_LEVEL_MAX */
    const float *vec;                           /* dim floats, unit norm */
    uint32_t n_links[HNSW_LEVEL_MAX + 1];       /* link counts, levels 0..level */
    const uint32_t *links[HNSW_LEVEL_MAX + 1];  /* link slot ids, levels 0..level */
} hnsw_slot;

void hnsw_read_lock(hnsw *idx);
void hnsw_read_unlock(hnsw *idx);
/* Caller holds the read lock; pointers stay valid while it does. */
void hnsw_image_get(const hnsw *idx, hnsw_image *out);
void hnsw_slot_get(const hnsw *idx, uint32_t slot, hnsw_slot *out);

/* Loading: hnsw_load_begin allocates an index for img (parameters checked,
 * STRATA_ECORRUPT when out of range); every slot 0..n_slots-1 must then be
 * given once by hnsw_load_slot and its links by hnsw_load_links (ids copied,
 * checked against n_slots and the level's maximum); hnsw_load_end checks the
 * whole graph (entry point, link targets' levels, live label uniqueness,
 * counts) and builds the label map and filter tables. Any failure leaves an
 * index the caller frees with hnsw_free. Not locked: the index is private to
 * the loader until hnsw_load_end returns. */
int hnsw_load_begin(const hnsw_image *img, hnsw **out);
int hnsw_load_slot(hnsw *idx, uint32_t slot, uint64_t label, const hnsw_attrs *attrs,
                   bool deleted, uint32_t level, const float *vec);
int hnsw_load_links(hnsw *idx, uint32_t slot, uint32_t level, const uint32_t *ids, uint32_t n);
int hnsw_load_end(hnsw *idx);

/* ---- dot-product kernels (distance.c) --------------------------------- */

/* Inner product of two float arrays of dim elements. */
typedef float (*hnsw_dot_fn)(const float *a, const float *b, size_t dim);

typedef enum hnsw_isa {
    HNSW_ISA_SCALAR = 0,    /* portable C */
    HNSW_ISA_AVX2 = 1,      /* AVX2 + FMA, 8 lanes */
    HNSW_ISA_AVX512 = 2     /* AVX-512F, 16 lanes */
} hnsw_isa;

/* The best instruction set this CPU supports (detected once, thread-safe).
 * The environment variable STRATA_SIMD=scalar|avx2|avx512 caps it, so tests
 * and benchmarks can exercise the fallbacks. */
hnsw_isa hnsw_isa_best(void);
const char *hnsw_isa_name(hnsw_isa isa);

/* The kernel for isa, specialised when dim allows it (384 = 24 x 16 floats
 * is unrolled fully). NULL when the CPU lacks isa. */
hnsw_dot_fn hnsw_dot_get(hnsw_isa isa, size_t dim);

/* hnsw_dot_get(hnsw_isa_best(), dim): what the index uses. */
hnsw_dot_fn hnsw_dot_select(size_t dim);

/* Scale v[0..dim) to unit L2 norm. Returns false (v unchanged) when the
 * norm is zero or v holds a non-finite value. */
bool hnsw_normalize(float *v, size_t dim);

#endif /* STRATA_L2_HNSW_H */
