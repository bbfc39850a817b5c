/*
 * bm25.h - keyword search for the L2 tier: an Okapi BM25 inverted index,
 * partitioned so that a query only touches the postings of its own partition,
 * and the tokenizer it shares with the hashing embedder (src/providers).
 *
 * What it is for: next to the HNSW vector index, pipeline/ keeps one bm25
 * index of the memory texts, partitioned by a 64-bit id it derives from
 * (tenant, user). Recall runs both and fuses the rankings; BM25 catches exact
 * names, numbers and rare words that an embedding blurs.
 *
 *   bm25_create ---> bm25_add / bm25_remove   (one writer at a time)
 *               \--> bm25_search / bm25_doc_count (any number of readers)
 *
 * Text pipeline, identical for documents and queries:
 *   text_tokenize (runs of letters/digits, ASCII case-folded)
 *     -> drop text_is_stopword tokens -> text_stem (light suffix stripping)
 *
 * Scoring (per partition: N live docs, df of the term among them, avgdl the
 * mean doc length; a doc's length is its number of indexed tokens):
 *
 *   idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
 *   score(d, q) = sum over distinct t in q of
 *                 idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
 *
 * A term repeated in the query counts once. Ties are ordered by ascending doc
 * id, so results are deterministic.
 *
 * Thread-safety: every bm25_* function may be called from any thread; the
 * index holds one rwlock (searches shared, add/remove exclusive). The text_*
 * functions are pure and thread-safe.
 *
 * Errors: STRATA_OK or a negative STRATA_E* code, with the detail recorded by
 * strata_error() for strata_errmsg().
 */
#ifndef STRATA_L2_BM25_H
#define STRATA_L2_BM25_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- limits ----------------------------------------------------------- */
#define BM25_DOC_BYTES_MAX (64u * 1024u)  /* only the first 64 KiB of a doc is indexed */
#define BM25_QUERY_BYTES_MAX 4096u        /* only the first 4 KiB of a query is read */
#define BM25_QUERY_TERMS_MAX 64u          /* distinct query terms used; the rest ignored */
#define BM25_PART_DOCS_MAX (1u << 24)     /* live docs per partition */
#define TEXT_TOKEN_MAX 64u                /* bytes; longer tokens are truncated */

/* ---- the index -------------------------------------------------------- */
typedef struct bm25 bm25;

/* One search hit. */
typedef struct bm25_hit {
    uint64_t doc;           /* the caller's doc id given to bm25_add */
    float score;            /* BM25 score, > 0, higher is better */
} bm25_hit;

/* Create an empty index with the BM25 parameters k1 (term-frequency
 * saturation, typically 1.2; 0..100) and b (length normalisation, typically
 * 0.75; 0..1). STRATA_EINVAL for out-of-range values, STRATA_ENOMEM.
 * *out is NULL on failure; free with bm25_free. */
int bm25_create(float k1, float b, bm25 **out);

/* Free the index and everything it holds. NULL-safe. No other call on idx
 * may be running. */
void bm25_free(bm25 *idx);

/* Index text (any bytes; NULL allowed when len is 0) under doc in partition.
 * Only the first BM25_DOC_BYTES_MAX bytes are read. Re-adding an existing doc
 * replaces it. A doc with no indexable token still counts in doc_count (and
 * N) but never matches. On error the index is unchanged: STRATA_EINVAL,
 * STRATA_ENOMEM, STRATA_ETOOBIG (partition holds BM25_PART_DOCS_MAX docs).
 * The text is not kept. Takes the write lock. */
int bm25_add(bm25 *idx, uint64_t partition, uint64_t doc, const char *text, size_t len);

/* Remove doc from partition: STRATA_OK, or STRATA_ENOTFOUND if absent.
 * Takes the write lock. */
int bm25_remove(bm25 *idx, uint64_t partition, uint64_t doc);

/* Top-k docs of partition for query, best first, into out[0..*n_out) with
 * *n_out <= k. Docs without any query term are not returned; an unknown
 * partition or a query of only stopwords gives 0 hits. out may be NULL when
 * k is 0. Only the first BM25_QUERY_BYTES_MAX bytes and the first
 * BM25_QUERY_TERMS_MAX distinct terms of the query are used. STRATA_EINVAL,
 * STRATA_ENOMEM (*n_out is 0 on error). Takes the read lock. */
int bm25_search(bm25 *idx, uint64_t partition, const char *query, size_t len, size_t k,
                bm25_hit *out, size_t *n_out);

/* Live docs in partition (0 for an unknown one). Takes the read lock. */
size_t bm25_doc_count(bm25 *idx, uint64_t partition);

/* Counters for tests and benchmarks; a snapshot under the read lock. */
typedef struct bm25_stats {
    size_t n_partitions;    /* partitions holding at least one doc */
    size_t n_docs;          /* live docs, all partitions */
    size_t n_dead;          /* removed/replaced docs whose postings await compaction */
    size_t n_terms;         /* dictionary entries, all partitions */
    size_t posting_bytes;   /* encoded posting bytes in use */
    size_t bytes;           /* heap bytes owned by the index (approximate) */
} bm25_stats;
void bm25_stats_get(bm25 *idx, bm25_stats *out);

/* ---- text processing (tokenize.c) ------------------------------------- */
/* Called once per token; tok is valid only during the call, is not
 * NUL-terminated, and holds 1..TEXT_TOKEN_MAX bytes. */
typedef void (*token_emit_fn)(void *ctx, const char *tok, size_t n);

/* Split text into tokens and call emit (may be NULL: just count) for each.
 * Tokens are maximal runs of letters/digits: ASCII alphanumerics, plus every
 * UTF-8 multi-byte sequence except a small set of Unicode punctuation,
 * spaces and emoji (see tokenize.c), so non-English text still tokenizes;
 * bytes that are not valid UTF-8 count as letters. ASCII letters are
 * lower-cased. An apostrophe (' or U+2019 or U+02BC) between two letters is
 * dropped ("don't" -> "dont"); elsewhere it separates. A token longer than
 * TEXT_TOKEN_MAX bytes is cut to its first TEXT_TOKEN_MAX bytes, never
 * inside a UTF-8 sequence. Returns the number of tokens. */
size_t text_tokenize(const char *text, size_t len, token_emit_fn emit, void *ctx);

/* True if the lower-case token is in the built-in English stopword list
 * (a, an, the, is, of, to, and, ... 107 words; "no"/"not" are kept because
 * negation carries meaning in a memory). */
bool text_is_stopword(const char *tok, size_t n);

/* Light English suffix stripping, in place; returns the new length (never
 * longer than n). Only tokens of 3+ lower-case ASCII letters are touched.
 * Plurals (-s, -es, -ies), then -ed / -ing with Porter's repairs, so that
 * "hikes", "hiking", "hiked" and "hike" all give "hike". See tokenize.c. */
size_t text_stem(char *tok, size_t n);

#endif /* STRATA_L2_BM25_H */
