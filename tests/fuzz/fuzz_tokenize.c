/*
 * fuzz_tokenize.c - libFuzzer target for the shared text pipeline: the
 * tokenizer and stemmer (l2/tokenize.c), the hashing embedder
 * (providers/embed_hash.c) and the BM25 index (l2/bm25.c). The input is any
 * bytes, taken as text. Properties checked:
 *   - nothing crashes, leaks or reads out of bounds (sanitizers);
 *   - every token has 1..TEXT_TOKEN_MAX bytes, no ASCII upper case or ASCII
 *     separator, and is valid UTF-8 whenever the input is;
 *   - text_stem never lengthens a token and leaves only a-z in a-z tokens;
 *   - the embedding is finite and unit-norm, and a batch equals single calls;
 *   - BM25: hits are <= k, positive, best first; a doc holding exactly the
 *     query text is found whenever the query has an indexable term; remove,
 *     a second remove (ENOTFOUND) and re-add keep doc_count right.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l2/bm25.h"
#include "providers/embed.h"

#define FUZZ_MAX_INPUT (64u * 1024u)   /* a doc is indexed up to 64 KiB anyway */
#define FUZZ_DIM 32u

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_tokenize: %s (%s)\n", what, strata_errmsg());
    abort();
}

typedef struct tok_check {
    bool input_utf8;        /* the input is valid UTF-8 */
    size_t n_indexable;     /* tokens that are not stopwords */
} tok_check;

static void check_token(void *ctx, const char *tok, size_t n)
{
    tok_check *c = ctx;
    if (n == 0 || n > TEXT_TOKEN_MAX) {
        fuzz_fail("token length out of range");
    }
    bool az = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)tok[i];
        if (ch < 0x80 && !((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) {
            fuzz_fail("token holds an ASCII upper-case letter or separator");
        }
        az = az && ch >= 'a' && ch <= 'z';
    }
    if (c->input_utf8 && !utf8_valid(tok, n)) {
        fuzz_fail("a token of valid UTF-8 input is not valid UTF-8");
    }
    if (!text_is_stopword(tok, n)) {
        c->n_indexable++;
    }
    char w[TEXT_TOKEN_MAX];
    memcpy(w, tok, n);
    size_t sn = text_stem(w, n);
    if (sn == 0 || sn > n) {
        fuzz_fail("stem length out of range");
    }
    for (size_t i = 0; az && i < sn; i++) {
        if (w[i] < 'a' || w[i] > 'z') {
            fuzz_fail("stem of an a-z token left a-z");
        }
    }
}

static void check_embedder(const char *text, size_t len)
{
    embedder *e = NULL;
    if (embedder_hash_create(FUZZ_DIM, &e) != STRATA_OK) {
        return;     /* ENOMEM */
    }
    const char *texts[2] = {text, text + len / 2};
    size_t lens[2] = {len, len - len / 2};
    float batch[2 * FUZZ_DIM];
    float one[FUZZ_DIM];
    if (embedder_embed(e, texts, lens, 2, batch) == STRATA_OK) {
        for (size_t r = 0; r < 2; r++) {
            double norm2 = 0;
            for (size_t i = 0; i < FUZZ_DIM; i++) {
                float v = batch[r * FUZZ_DIM + i];
                if (!isfinite(v)) {
                    fuzz_fail("non-finite embedding");
                }
                norm2 += (double)v * v;
            }
            if (fabs(norm2 - 1.0) > 1e-4) {
                fuzz_fail("embedding is not unit-norm");
            }
            if (embedder_embed(e, texts + r, lens + r, 1, one) == STRATA_OK &&
                memcmp(one, batch + r * FUZZ_DIM, sizeof(one)) != 0) {
                fuzz_fail("batch and single embeddings differ");
            }
        }
    }
    embedder_free(e);
}

static void check_hits(const bm25_hit *hits, size_t n, size_t k)
{
    if (n > k) {
        fuzz_fail("more hits than k");
    }
    for (size_t i = 0; i < n; i++) {
        if (!(hits[i].score > 0.0f) || !isfinite(hits[i].score)) {
            fuzz_fail("hit score not positive and finite");
        }
        if (i > 0 && hits[i].score > hits[i - 1].score) {
            fuzz_fail("hits not best first");
        }
    }
}

static void check_bm25(const char *text, size_t len, size_t n_query_terms)
{
    bm25 *idx = NULL;
    if (bm25_create(1.2f, 0.75f, &idx) != STRATA_OK) {
        return;
    }
    /* doc 1: all of it; doc 2: the second half; doc 3: exactly the query. */
    size_t qlen = STRATA_MIN(len, (size_t)BM25_QUERY_BYTES_MAX);
    if (bm25_add(idx, 1, 1, text, len) != STRATA_OK ||
        bm25_add(idx, 1, 2, text + len / 2, len - len / 2) != STRATA_OK ||
        bm25_add(idx, 1, 3, text, qlen) != STRATA_OK) {
        goto done;
    }
    if (bm25_doc_count(idx, 1) != 3) {
        fuzz_fail("doc count after adds");
    }
    bm25_hit hits[3];
    size_t n = 0;
    if (bm25_search(idx, 1, text, len, 3, hits, &n) == STRATA_OK) {
        check_hits(hits, n, 3);
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            found = found || hits[i].doc == 3;
        }
        if (n_query_terms > 0 && !found) {
            fuzz_fail("a doc equal to the query was not found");
        }
        if (n_query_terms == 0 && n != 0) {
            fuzz_fail("a query without terms found something");
        }
    }
    /* A short query cut from the middle. */
    size_t off = len / 3;
    if (bm25_search(idx, 1, text + off, STRATA_MIN(len - off, (size_t)40), 2, hits, &n) ==
        STRATA_OK) {
        check_hits(hits, n, 2);
    }
    if (bm25_remove(idx, 1, 1) != STRATA_OK) {
        fuzz_fail("remove of a present doc");
    }
    if (bm25_remove(idx, 1, 1) != STRATA_ENOTFOUND) {
        fuzz_fail("second remove is not ENOTFOUND");
    }
    if (bm25_doc_count(idx, 1) != 2) {
        fuzz_fail("doc count after remove");
    }
    if (bm25_add(idx, 1, 2, text, len / 3) == STRATA_OK && bm25_doc_count(idx, 1) != 2) {
        fuzz_fail("doc count after replace");
    }
    if (bm25_search(idx, 1, text, len, 3, hits, &n) == STRATA_OK) {
        check_hits(hits, n, 3);
    }
    if (bm25_search(idx, 2, text, len, 3, hits, &n) != STRATA_OK || n != 0) {
        fuzz_fail("an empty partition found something");
    }
done:
    bm25_free(idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) {
        return 0;
    }
    /* A private copy so that a read past size is caught by ASan. */
    char *text = malloc(size ? size : 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    tok_check c = {utf8_valid(text, size), 0};
    size_t n_tok = text_tokenize(text, size, check_token, &c);
    if (text_tokenize(text, size, NULL, NULL) != n_tok) {
        fuzz_fail("token count differs without a callback");
    }
    tok_check q = {false, 0};
    text_tokenize(text, STRATA_MIN(size, (size_t)BM25_QUERY_BYTES_MAX), check_token, &q);
    check_embedder(text, size);
    check_bm25(text, size, q.n_indexable);
    free(text);
    return 0;
}
