/*
 * embed.h - the embedder interface of src/providers: turns texts into
 * L2-normalised float vectors for the L2 tier's HNSW index.
 *
 *   embedder_hash_create   built-in, offline: signed feature hashing of words,
 *                          word pairs and character 3-grams (embed_hash.c)
 *   embedder_http_create   an OpenAI-compatible server (embed_http.c, llm_http.h)
 *   embedder_cache_create  wraps any of them in a content-hash LRU (embed_cache.c)
 *
 * An embedder is a vtable plus the fields every caller needs (dim, model);
 * implementations embed `struct embedder` as their first member and cast.
 *
 * Thread-safety: ops->embed of every embedder in this folder may be called
 * from several threads at once on the same handle; dim and model are fixed
 * once the constructor (or, for http, the probe) has returned.
 *
 * Errors: STRATA_OK or a negative STRATA_E* code with strata_errmsg() detail.
 */
#ifndef STRATA_PROVIDERS_EMBED_H
#define STRATA_PROVIDERS_EMBED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct embedder embedder;

typedef struct embedder_ops {
    const char *name;                                      /* "hash", "http", "cached", ... */
    /* Embed n texts into out (n x dim floats, row-major), each row L2-normalised.
     * lens[i] is the byte length of texts[i]; lens may be NULL for NUL-terminated
     * texts. texts[i] must not be NULL. out is unspecified on error. */
    int (*embed)(embedder *e, const char *const *texts, const size_t *lens, size_t n, float *out);
    /* Free everything, e included. */
    void (*close)(embedder *e);
} embedder_ops;

struct embedder {
    const embedder_ops *ops;
    uint32_t dim;           /* floats per vector */
    char model[64];         /* e.g. "hash-v1-384", NUL-terminated */
};

/* Embed through the vtable; see embedder_ops.embed. */
static inline int embedder_embed(embedder *e, const char *const *t, const size_t *l, size_t n,
                                 float *out)
{
    return e->ops->embed(e, t, l, n, out);
}

/* Free an embedder of any kind (calls ops->close). NULL-safe. */
void embedder_free(embedder *e);

/* ---- the hashing embedder (embed_hash.c) ------------------------------ */
#define EMBED_HASH_DIM_DEFAULT 384u
#define EMBED_HASH_DIM_MIN 16u
#define EMBED_HASH_DIM_MAX 4096u
#define EMBED_HASH_TEXT_MAX (256u * 1024u)  /* bytes of a text read; the rest is ignored */

/* The built-in offline embedder: signed feature hashing of normalised word
 * unigrams, word bigrams and character 3-grams of each word (with boundary
 * markers), sublinear tf (1 + ln tf), L2-normalised. Words come from
 * text_tokenize (l2/bm25.h) minus stopwords; unigrams and bigrams use
 * text_stem'd words. Deterministic: a fixed hash (FNV-1a 64 + murmur3
 * finaliser), no seed, so vectors are stable across runs and machines and
 * may be persisted. An empty or stopword-only text gives a fixed unit vector
 * (the "[EMPTY]" feature), never a zero vector. dim: EMBED_HASH_DIM_MIN..MAX
 * (STRATA_EINVAL otherwise). model = "hash-v1-<dim>". Texts may be any
 * bytes; only the first EMBED_HASH_TEXT_MAX bytes of each are read.
 * Stateless after creation: embed is thread-safe. Free with embedder_free. */
int embedder_hash_create(uint32_t dim, embedder **out);

/* ---- the caching wrapper (embed_cache.c) ------------------------------ */
#define EMBED_CACHE_CAPACITY_MAX (1u << 24)

/* Takes ownership of inner on success (freed by embedder_free of the
 * wrapper); on failure inner is untouched and still the caller's.
 * Caches embeddings by a 128-bit content key (the first 16 bytes of the
 * SHA-256 of the text) in an LRU of at most capacity (1..EMBED_CACHE_
 * CAPACITY_MAX) entries; identical texts in one batch are embedded once.
 * Thread-safe: a mutex guards the cache, the inner embed runs outside it (two
 * threads missing the same text at once may both embed it). dim and model
 * are copied from inner. */
int embedder_cache_create(embedder *inner, size_t capacity, embedder **out);

/* Rows served from the cache (hits) and texts passed to the inner embedder
 * (misses) since creation. Zeros for an embedder that is not a cache. */
void embedder_cache_stats(embedder *cached, uint64_t *hits, uint64_t *misses);

#endif /* STRATA_PROVIDERS_EMBED_H */
