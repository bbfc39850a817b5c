/*
 * minilm_vectors.c - token ids and embeddings of the built-in
 * all-MiniLM-L6-v2 embedder for texts on stdin, so that Python tests can
 * hold them against an independent implementation
 * (tests/integration/test_minilm_reference.py, onnxruntime + HF tokenizers).
 *
 *   minilm_vectors MODEL_DIR [MAX_LEN]
 *
 * stdin: one JSON string per line (JSON so that texts may hold newlines,
 * tabs and NULs). stdout: one line per text,
 *   {"ids": [101, ...], "vec": [0.0123, ...]}
 * The texts are embedded in a single embed call, i.e. batched the way the
 * server batches them; ids come from a separate wordpiece handle over the
 * same vocab.txt with the same max_len. Exit 1 on any error.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/embed_minilm.h"
#include "providers/wordpiece.h"

typedef struct texts {
    char **s;
    size_t *len;
    size_t n, cap;
} texts;

static int read_texts(texts *t)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        if (got == 0 || (got == 1 && line[0] == '\n')) {
            continue;
        }
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (j == NULL || !json_is_string(j)) {
            fprintf(stderr, "minilm_vectors: line %zu: not a JSON string\n", t->n + 1);
            rc = 1;
        } else {
            if (t->n == t->cap) {
                t->cap = t->cap ? 2 * t->cap : 64;
                t->s = realloc(t->s, t->cap * sizeof(*t->s));
                t->len = realloc(t->len, t->cap * sizeof(*t->len));
                if (t->s == NULL || t->len == NULL) {
                    rc = 1;
                }
            }
            if (rc == 0) {
                t->len[t->n] = json_string_length(j);
                t->s[t->n] = malloc(t->len[t->n] + 1);
                if (t->s[t->n] == NULL) {
                    rc = 1;
                } else {
                    memcpy(t->s[t->n], json_string_value(j), t->len[t->n] + 1);
                    t->n++;
                }
            }
        }
        json_decref(j);
    }
    free(line);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [MAX_LEN] < json-string-lines\n", argv[0]);
        return 2;
    }
    int max_len = argc > 2 ? atoi(argv[2]) : EMBED_MINILM_MAX_LEN_DEFAULT;
    embedder *e = NULL;
    wordpiece *wp = NULL;
    char vocab[4096];
    snprintf(vocab, sizeof(vocab), "%s/vocab.txt", argv[1]);
    if (embedder_minilm_create(argv[1], max_len, &e) != 0 || wordpiece_load(vocab, &wp) != 0) {
        fprintf(stderr, "minilm_vectors: %s\n", strata_errmsg());
        return 1;
    }
    texts t = {0};
    int rc = read_texts(&t);
    float *vecs = malloc((t.n ? t.n : 1) * EMBED_MINILM_DIM * sizeof(float));
    int32_t *ids = malloc((size_t)max_len * sizeof(int32_t));
    if (rc == 0 && (vecs == NULL || ids == NULL)) {
        rc = 1;
    }
    if (rc == 0 && embedder_embed(e, (const char *const *)t.s, t.len, t.n, vecs) != 0) {
        fprintf(stderr, "minilm_vectors: embed: %s\n", strata_errmsg());
        rc = 1;
    }
    for (size_t i = 0; rc == 0 && i < t.n; i++) {
        size_t k = 0;
        if (wordpiece_encode(wp, t.s[i], t.len[i], (uint32_t)max_len, ids, &k) != 0) {
            rc = 1;
            break;
        }
        fputs("{\"ids\": [", stdout);
        for (size_t j = 0; j < k; j++) {
            printf(j ? ", %d" : "%d", ids[j]);
        }
        fputs("], \"vec\": [", stdout);
        for (size_t j = 0; j < EMBED_MINILM_DIM; j++) {
            printf(j ? ", %.9g" : "%.9g", (double)vecs[i * EMBED_MINILM_DIM + j]);
        }
        fputs("]}\n", stdout);
    }
    for (size_t i = 0; i < t.n; i++) {
        free(t.s[i]);
    }
    free(t.s);
    free(t.len);
    free(vecs);
    free(ids);
    wordpiece_free(wp);
    embedder_free(e);
    return rc;
}
