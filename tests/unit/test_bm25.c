/*
 * test_bm25.c - the tokenizer, stopwords and stemmer (tokenize.c) and the
 * BM25 index (bm25.c): scores against hand-computed Okapi values, ranking,
 * partition isolation, remove/re-add and compaction, a 10k-doc randomized
 * comparison with a brute-force reference, allocation-failure unwinding, and
 * concurrent readers with a writer (also run under ThreadSanitizer).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l2/bm25.h"
#include "test.h"

#define K1 1.2f
#define B 0.75f

/* ---- helpers ----------------------------------------------------------- */

typedef struct tok_list {
    char toks[64][TEXT_TOKEN_MAX + 1];
    size_t lens[64];
    size_t n;
} tok_list;

static void collect(void *ctx, const char *tok, size_t n)
{
    tok_list *l = ctx;
    if (l->n < 64) {
        memcpy(l->toks[l->n], tok, n);
        l->toks[l->n][n] = '\0';
        l->lens[l->n] = n;
    }
    l->n++;
}

static size_t tokenize_str(const char *s, tok_list *l)
{
    memset(l, 0, sizeof(*l));
    return text_tokenize(s, strlen(s), collect, l);
}

static const char *stem_of(const char *w, char *buf)
{
    size_t n = strlen(w);
    memcpy(buf, w, n);
    n = text_stem(buf, n);
    buf[n] = '\0';
    return buf;
}

static int add_str(bm25 *idx, uint64_t part, uint64_t doc, const char *text)
{
    return bm25_add(idx, part, doc, text, strlen(text));
}

static int search_str(bm25 *idx, uint64_t part, const char *q, size_t k, bm25_hit *out,
                      size_t *n)
{
    return bm25_search(idx, part, q, strlen(q), k, out, n);
}

/* The toy corpus, after stopwords and stems:
 *   1 "the cat sat on the mat"      cat sat mat          dl 3
 *   2 "the dog sat on the log"      dog sat log          dl 3
 *   3 "cats and dogs"               cat dog              dl 2
 *   4 "a bird flew over the mat mat" bird flew over mat mat  dl 5
 * N = 4, avgdl = 13 / 4. */
static int add_toy(bm25 *idx, uint64_t part)
{
    int rc = add_str(idx, part, 1, "the cat sat on the mat");
    if (rc == STRATA_OK) {
        rc = add_str(idx, part, 2, "The dog sat on the log.");
    }
    if (rc == STRATA_OK) {
        rc = add_str(idx, part, 3, "Cats and dogs!");
    }
    if (rc == STRATA_OK) {
        rc = add_str(idx, part, 4, "a bird flew over the mat, mat");
    }
    return rc;
}

/* Okapi BM25 as in bm25.h, for the expected values below. */
static double okapi(double tf, double dl, double avgdl, double n_docs, double df)
{
    double idf = log(1.0 + (n_docs - df + 0.5) / (df + 0.5));
    return idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * dl / avgdl));
}

/* ---- tokenizer --------------------------------------------------------- */

TEST(tokenize_ascii)
{
    tok_list l;
    ASSERT_EQ(tokenize_str("Hello, World! foo_bar 3.14 x-ray", &l), 8);
    const char *want[] = {"hello", "world", "foo", "bar", "3", "14", "x", "ray"};
    for (size_t i = 0; i < 8; i++) {
        ASSERT_STREQ(l.toks[i], want[i]);
    }
    ASSERT_EQ(tokenize_str("MiXeD CaSe42", &l), 2);
    ASSERT_STREQ(l.toks[0], "mixed");
    ASSERT_STREQ(l.toks[1], "case42");
}

TEST(tokenize_apostrophes)
{
    tok_list l;
    ASSERT_EQ(tokenize_str("don't Don\xE2\x80\x99t can\xCA\xBCt", &l), 3);
    ASSERT_STREQ(l.toks[0], "dont");
    ASSERT_STREQ(l.toks[1], "dont");
    ASSERT_STREQ(l.toks[2], "cant");
    /* Quotes around words and trailing possessives separate. */
    ASSERT_EQ(tokenize_str("'quoted' dogs' bowl \xE2\x80\x98hi\xE2\x80\x99", &l), 4);
    ASSERT_STREQ(l.toks[0], "quoted");
    ASSERT_STREQ(l.toks[1], "dogs");
    ASSERT_STREQ(l.toks[2], "bowl");
    ASSERT_STREQ(l.toks[3], "hi");
    ASSERT_EQ(tokenize_str("rock 'n' roll a''b user's", &l), 6);
    ASSERT_STREQ(l.toks[1], "n");
    ASSERT_STREQ(l.toks[3], "a");
    ASSERT_STREQ(l.toks[4], "b");
    ASSERT_STREQ(l.toks[5], "users");
    ASSERT_EQ(tokenize_str("'", &l), 0);
    ASSERT_EQ(tokenize_str("x'", &l), 1);
}

TEST(tokenize_utf8)
{
    tok_list l;
    /* Non-ASCII letters are kept (not case-folded); ASCII parts are folded. */
    ASSERT_EQ(tokenize_str("Caf\xC3\xA9 na\xC3\xAFve \xC3\x9C" "ber", &l), 3);
    ASSERT_STREQ(l.toks[0], "caf\xC3\xA9");
    ASSERT_STREQ(l.toks[1], "na\xC3\xAFve");
    ASSERT_STREQ(l.toks[2], "\xC3\x9C" "ber");
    /* Cyrillic */
    ASSERT_EQ(tokenize_str("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "
                           "\xD0\xBC\xD0\xB8\xD1\x80", &l), 2);
    /* CJK: ideographic comma and full stop separate, runs stay whole. */
    ASSERT_EQ(tokenize_str("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x80\x81"
                           "\xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88\xE3\x80\x82", &l), 2);
    ASSERT_STREQ(l.toks[0], "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E");
    /* Em dash, NBSP, emoji with variation selector, euro sign separate. */
    ASSERT_EQ(tokenize_str("mountains\xE2\x80\x94" "and hiking\xF0\x9F\x8F\x94\xEF\xB8\x8F" "fun"
                           "\xC2\xA0" "x \xE2\x82\xAC" "50", &l), 6);
    ASSERT_STREQ(l.toks[0], "mountains");
    ASSERT_STREQ(l.toks[1], "and");
    ASSERT_STREQ(l.toks[2], "hiking");
    ASSERT_STREQ(l.toks[3], "fun");
    ASSERT_STREQ(l.toks[4], "x");
    ASSERT_STREQ(l.toks[5], "50");
    /* Invalid UTF-8 bytes are one-byte letters: any input tokenizes. */
    ASSERT_EQ(tokenize_str("\xFF\xFE" "ab \xC3", &l), 2);
    ASSERT_EQ(l.lens[0], 4);
    ASSERT_EQ(l.lens[1], 1);
    /* A cut-off sequence at the end of the buffer. */
    ASSERT_EQ(text_tokenize("ab\xE2\x80", 4, collect, &l), 1);
}

TEST(tokenize_long)
{
    tok_list l;
    char buf[512];
    memset(buf, 'A', 100);
    buf[100] = '\0';
    ASSERT_EQ(tokenize_str(buf, &l), 1);
    ASSERT_EQ(l.lens[0], TEXT_TOKEN_MAX);
    ASSERT_EQ(l.toks[0][0], 'a');
    /* 33 two-byte letters (66 bytes): cut to 32 of them. */
    size_t n = 0;
    for (int i = 0; i < 33; i++) {
        buf[n++] = '\xC3';
        buf[n++] = '\xA9';
    }
    strcpy(buf + n, " next");
    ASSERT_EQ(tokenize_str(buf, &l), 2);
    ASSERT_EQ(l.lens[0], 64);
    ASSERT_STREQ(l.toks[1], "next");
    /* "a" + 32 two-byte letters (65 bytes): never split a sequence, and
     * once one does not fit nothing later in the word is appended. */
    n = 0;
    buf[n++] = 'a';
    for (int i = 0; i < 32; i++) {
        buf[n++] = '\xC3';
        buf[n++] = '\xA9';
    }
    buf[n++] = 'z';
    buf[n] = '\0';
    ASSERT_EQ(tokenize_str(buf, &l), 1);
    ASSERT_EQ(l.lens[0], 63);
    ASSERT_EQ((unsigned char)l.toks[0][62], 0xA9);
}

TEST(tokenize_empty)
{
    tok_list l;
    ASSERT_EQ(tokenize_str("", &l), 0);
    ASSERT_EQ(text_tokenize(NULL, 0, collect, &l), 0);
    ASSERT_EQ(tokenize_str("  ,,, !? -- \t\n", &l), 0);
    ASSERT_EQ(l.n, 0);
    /* emit may be NULL: count only. */
    ASSERT_EQ(text_tokenize("one two three", 13, NULL, NULL), 3);
    /* len is honoured: no NUL needed. */
    ASSERT_EQ(text_tokenize("abc def", 3, collect, &l), 1);
}

TEST(stopwords)
{
    /* Every listed word must be found: this also proves the table is sorted. */
    static const char *const all[] = {
        "a", "about", "am", "an", "and", "are", "as", "at", "be", "been", "being", "but",
        "by", "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has",
        "have", "having", "he", "her", "here", "hers", "herself", "hes", "him", "himself",
        "his", "how", "i", "if", "im", "in", "into", "is", "it", "its", "itself", "ive",
        "just", "me", "my", "myself", "of", "on", "or", "our", "ours", "ourselves", "she",
        "shes", "should", "so", "some", "such", "than", "that", "thats", "the", "their",
        "theirs", "them", "themselves", "then", "there", "theres", "these", "they", "theyre",
        "this", "those", "to", "too", "us", "very", "was", "we", "were", "weve", "what",
        "whats", "when", "where", "which", "while", "who", "whom", "why", "will", "with",
        "would", "you", "your", "youre", "yours", "yourself", "yourselves", "youve",
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(all); i++) {
        if (!text_is_stopword(all[i], strlen(all[i]))) {
            TEST_FAIL_("\"%s\" is not a stopword", all[i]);
        }
    }
    ASSERT_TRUE(!text_is_stopword("not", 3));
    ASSERT_TRUE(!text_is_stopword("no", 2));
    ASSERT_TRUE(!text_is_stopword("dont", 4));
    ASSERT_TRUE(!text_is_stopword("hike", 4));
    ASSERT_TRUE(!text_is_stopword("", 0));
    ASSERT_TRUE(!text_is_stopword("th", 2));
    ASSERT_TRUE(!text_is_stopword("thee", 4));
    ASSERT_TRUE(!text_is_stopword("yourselvesx", 11));
    ASSERT_TRUE(!text_is_stopword("The", 3));   /* callers pass folded tokens */
}

TEST(stemmer)
{
    static const char *const cases[][2] = {
        {"hike", "hike"}, {"hikes", "hike"}, {"hiking", "hike"}, {"hiked", "hike"},
        {"mountains", "mountain"}, {"mountain", "mountain"},
        {"loves", "love"}, {"loving", "love"}, {"loved", "love"}, {"love", "love"},
        {"classes", "class"}, {"boxes", "box"}, {"matches", "match"}, {"wishes", "wish"},
        {"stories", "stori"}, {"story", "stori"}, {"studied", "studi"}, {"studying", "studi"},
        {"running", "run"}, {"runs", "run"}, {"stopped", "stop"}, {"hopping", "hop"},
        {"hoping", "hope"}, {"hope", "hope"}, {"falling", "fall"}, {"missing", "miss"},
        {"creating", "creat"}, {"create", "creat"}, {"eating", "eat"}, {"eat", "eat"},
        {"agreed", "agre"}, {"agree", "agre"}, {"need", "need"}, {"needed", "need"},
        {"movies", "movi"}, {"movie", "movi"}, {"ties", "tie"}, {"travelled", "travel"},
        {"traveling", "travel"}, {"users", "user"}, {"enjoys", "enjoi"}, {"enjoyed", "enjoi"},
        /* left alone: short, protected endings, no vowel in the stem, not a-z */
        {"gas", "gas"}, {"bus", "bus"}, {"class", "class"}, {"analysis", "analysis"},
        {"sky", "sky"}, {"string", "string"}, {"thing", "thing"}, {"bed", "bed"},
        {"use", "use"}, {"1990s", "1990s"}, {"caf\xC3\xA9s", "caf\xC3\xA9s"}, {"ok", "ok"},
    };
    char buf[TEXT_TOKEN_MAX + 1];
    for (size_t i = 0; i < STRATA_ARRAY_LEN(cases); i++) {
        const char *got = stem_of(cases[i][0], buf);
        if (strcmp(got, cases[i][1]) != 0) {
            TEST_FAIL_("stem(%s) = %s, want %s", cases[i][0], got, cases[i][1]);
        }
    }
    /* Never longer, whatever the input. */
    const char *words[] = {"ing", "eed", "ied", "ies", "sses", "yyyy", "eeee", "bbbing"};
    for (size_t i = 0; i < STRATA_ARRAY_LEN(words); i++) {
        size_t n = strlen(words[i]);
        memcpy(buf, words[i], n);
        ASSERT_TRUE(text_stem(buf, n) <= n);
    }
}

/* ---- scoring ----------------------------------------------------------- */

TEST(scores_hand_computed)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ASSERT_OK(add_toy(idx, 7));
    ASSERT_EQ(bm25_doc_count(idx, 7), 4);
    bm25_hit hits[8];
    size_t n = 0;

    /* "cat": df 2 -> idf ln 2; doc 3 is shorter so ranks first. */
    ASSERT_OK(search_str(idx, 7, "cat", 10, hits, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(hits[0].doc, 3);
    ASSERT_NEAR(hits[0].score, 0.8225730026562006, 1e-4);
    ASSERT_EQ(hits[1].doc, 1);
    ASSERT_NEAR(hits[1].score, 0.7156682080871637, 1e-4);
    ASSERT_NEAR(hits[1].score, okapi(1, 3, 13.0 / 4, 4, 2), 1e-4);

    /* "mat sat": doc 1 has both; doc 4 has mat twice in a long doc. */
    ASSERT_OK(search_str(idx, 7, "Mat SAT", 10, hits, &n));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(hits[0].doc, 1);
    ASSERT_NEAR(hits[0].score, 1.4313364161743274, 1e-4);
    ASSERT_EQ(hits[1].doc, 4);
    ASSERT_NEAR(hits[1].score, 0.8277248168690787, 1e-4);
    ASSERT_EQ(hits[2].doc, 2);
    ASSERT_NEAR(hits[2].score, 0.7156682080871637, 1e-4);

    /* A rare term: df 1. */
    ASSERT_OK(search_str(idx, 7, "birds", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 4);
    ASSERT_NEAR(hits[0].score, 0.9866367393616555, 1e-4);

    /* A repeated query term counts once. */
    ASSERT_OK(search_str(idx, 7, "bird bird birds", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_NEAR(hits[0].score, 0.9866367393616555, 1e-4);

    /* No match, unknown term, k = 0. */
    ASSERT_OK(search_str(idx, 7, "zebra", 10, hits, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(search_str(idx, 7, "cat", 0, NULL, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(bm25_search(idx, 7, NULL, 0, 5, hits, &n));
    ASSERT_EQ(n, 0);
    bm25_free(idx);
}

TEST(ranking_topk)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ASSERT_OK(add_toy(idx, 1));
    bm25_hit hits[8];
    size_t n = 0;
    ASSERT_OK(search_str(idx, 1, "mat sat", 1, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 1);
    ASSERT_OK(search_str(idx, 1, "mat sat", 2, hits, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(hits[0].doc, 1);
    ASSERT_EQ(hits[1].doc, 4);
    /* Equal scores: ascending doc id. */
    ASSERT_OK(add_str(idx, 2, 30, "apple pie"));
    ASSERT_OK(add_str(idx, 2, 10, "apple pie"));
    ASSERT_OK(add_str(idx, 2, 20, "apple pie"));
    ASSERT_OK(search_str(idx, 2, "apple", 3, hits, &n));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(hits[0].doc, 10);
    ASSERT_EQ(hits[1].doc, 20);
    ASSERT_EQ(hits[2].doc, 30);
    ASSERT_OK(search_str(idx, 2, "apple", 2, hits, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(hits[0].doc, 10);
    ASSERT_EQ(hits[1].doc, 20);
    /* Bad arguments. */
    ASSERT_EQ(bm25_search(idx, 1, "x", 1, 3, NULL, &n), STRATA_EINVAL);
    ASSERT_EQ(bm25_search(idx, 1, NULL, 3, 3, hits, &n), STRATA_EINVAL);
    ASSERT_EQ(bm25_add(idx, 1, 1, NULL, 3), STRATA_EINVAL);
    bm25 *bad = NULL;
    ASSERT_EQ(bm25_create(-1.0f, B, &bad), STRATA_EINVAL);
    ASSERT_TRUE(bad == NULL);
    ASSERT_EQ(bm25_create(K1, 1.5f, &bad), STRATA_EINVAL);
    ASSERT_EQ(bm25_create(NAN, B, &bad), STRATA_EINVAL);
    bm25_free(NULL);
    bm25_free(idx);
}

TEST(partitions_isolated)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ASSERT_OK(add_toy(idx, 100));
    /* Partition 200 has only one doc with "cat": its own N, df and avgdl. */
    ASSERT_OK(add_str(idx, 200, 1, "cat"));
    ASSERT_OK(add_str(idx, 200, 2, "dog dog"));
    ASSERT_EQ(bm25_doc_count(idx, 100), 4);
    ASSERT_EQ(bm25_doc_count(idx, 200), 2);
    ASSERT_EQ(bm25_doc_count(idx, 300), 0);
    bm25_hit hits[8];
    size_t n = 0;
    ASSERT_OK(search_str(idx, 200, "cat", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 1);
    ASSERT_NEAR(hits[0].score, okapi(1, 1, 1.5, 2, 1), 1e-4);
    /* Partition 100 is unchanged by 200's docs. */
    ASSERT_OK(search_str(idx, 100, "cat", 10, hits, &n));
    ASSERT_EQ(n, 2);
    ASSERT_NEAR(hits[0].score, 0.8225730026562006, 1e-4);
    /* Unknown partition: 0 hits, not an error. */
    ASSERT_OK(search_str(idx, 300, "cat", 10, hits, &n));
    ASSERT_EQ(n, 0);
    /* Removing from one partition does not touch the other. */
    ASSERT_EQ(bm25_remove(idx, 200, 3), STRATA_ENOTFOUND);
    ASSERT_OK(bm25_remove(idx, 100, 3));
    ASSERT_EQ(bm25_doc_count(idx, 200), 2);
    /* Partition ids and doc ids span the whole uint64 range. */
    ASSERT_OK(add_str(idx, 0, 0, "zero"));
    ASSERT_OK(add_str(idx, UINT64_MAX, UINT64_MAX, "max"));
    ASSERT_OK(search_str(idx, UINT64_MAX, "max", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_TRUE(hits[0].doc == UINT64_MAX);
    ASSERT_OK(search_str(idx, 0, "zero", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 0);
    bm25_stats st;
    bm25_stats_get(idx, &st);
    ASSERT_EQ(st.n_partitions, 4);
    ASSERT_EQ(st.n_docs, 7);
    bm25_free(idx);
}

TEST(remove_and_readd)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ASSERT_OK(add_toy(idx, 5));
    bm25_hit hits[8];
    size_t n = 0;
    ASSERT_OK(bm25_remove(idx, 5, 3));
    ASSERT_EQ(bm25_remove(idx, 5, 3), STRATA_ENOTFOUND);
    ASSERT_EQ(bm25_remove(idx, 6, 3), STRATA_ENOTFOUND);
    ASSERT_EQ(bm25_doc_count(idx, 5), 3);
    /* N = 3, avgdl = 11/3, df(cat) = 1. */
    ASSERT_OK(search_str(idx, 5, "cat", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 1);
    ASSERT_NEAR(hits[0].score, 1.0596458894144545, 1e-4);
    /* Re-adding replaces: doc 1 no longer mentions cats. */
    ASSERT_OK(add_str(idx, 5, 1, "a dog sat on a mat"));
    ASSERT_EQ(bm25_doc_count(idx, 5), 3);
    ASSERT_OK(search_str(idx, 5, "cat", 10, hits, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(search_str(idx, 5, "dog", 10, hits, &n));
    ASSERT_EQ(n, 2);
    /* docs: 1 "dog sat mat" (3), 2 "dog sat log" (3), 4 (5): N 3, df 2. */
    ASSERT_NEAR(hits[0].score, okapi(1, 3, 11.0 / 3, 3, 2), 1e-4);
    ASSERT_EQ(hits[0].doc, 1);
    ASSERT_EQ(hits[1].doc, 2);
    /* Add back doc 3; the result is as if it had never been removed,
     * except for doc 1's new text. */
    ASSERT_OK(add_str(idx, 5, 3, "cats and dogs"));
    ASSERT_OK(search_str(idx, 5, "cat", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 3);
    ASSERT_NEAR(hits[0].score, okapi(1, 2, 13.0 / 4, 4, 1), 1e-4);
    /* Removing every doc frees the partition. */
    for (uint64_t d = 1; d <= 4; d++) {
        ASSERT_OK(bm25_remove(idx, 5, d));
    }
    ASSERT_EQ(bm25_doc_count(idx, 5), 0);
    bm25_stats st;
    bm25_stats_get(idx, &st);
    ASSERT_EQ(st.n_partitions, 0);
    ASSERT_EQ(st.n_terms, 0);
    ASSERT_OK(search_str(idx, 5, "cat", 10, hits, &n));
    ASSERT_EQ(n, 0);
    bm25_free(idx);
}

TEST(compaction)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    char text[64];
    for (uint64_t d = 0; d < 1000; d++) {
        snprintf(text, sizeof(text), "common w%llu w%llu", (unsigned long long)d,
                 (unsigned long long)(d % 10));
        ASSERT_OK(add_str(idx, 1, d, text));
    }
    bm25_stats st;
    bm25_stats_get(idx, &st);
    ASSERT_EQ(st.n_terms, 1001);
    size_t bytes_full = st.posting_bytes;
    /* Remove 90%: compactions along the way keep dead slots <= 25%. */
    for (uint64_t d = 0; d < 900; d++) {
        ASSERT_OK(bm25_remove(idx, 1, d));
        bm25_stats_get(idx, &st);
        ASSERT_TRUE(st.n_dead * 4 <= st.n_dead + st.n_docs);
    }
    bm25_stats_get(idx, &st);
    ASSERT_EQ(st.n_docs, 100);
    ASSERT_TRUE(st.n_terms < 200);
    ASSERT_TRUE(st.posting_bytes < bytes_full / 4);
    /* The survivors score as a fresh index of the same docs would. */
    bm25 *fresh = NULL;
    ASSERT_OK(bm25_create(K1, B, &fresh));
    for (uint64_t d = 900; d < 1000; d++) {
        snprintf(text, sizeof(text), "common w%llu w%llu", (unsigned long long)d,
                 (unsigned long long)(d % 10));
        ASSERT_OK(add_str(fresh, 1, d, text));
    }
    bm25_hit a[50];
    bm25_hit b[50];
    size_t na = 0;
    size_t nb = 0;
    const char *queries[] = {"common", "w3", "w950 w7", "w999 common w0"};
    for (size_t q = 0; q < STRATA_ARRAY_LEN(queries); q++) {
        ASSERT_OK(search_str(idx, 1, queries[q], 50, a, &na));
        ASSERT_OK(search_str(fresh, 1, queries[q], 50, b, &nb));
        ASSERT_EQ(na, nb);
        for (size_t i = 0; i < na; i++) {
            ASSERT_EQ(a[i].doc, b[i].doc);
            ASSERT_NEAR(a[i].score, b[i].score, 1e-6);
        }
    }
    /* Replacing the same doc over and over stays bounded. */
    for (int i = 0; i < 5000; i++) {
        snprintf(text, sizeof(text), "version v%d", i);
        ASSERT_OK(add_str(idx, 1, 950, text));
    }
    bm25_stats_get(idx, &st);
    ASSERT_EQ(st.n_docs, 100);
    ASSERT_TRUE(st.n_dead <= 34);
    ASSERT_TRUE(st.n_terms < 250);
    size_t n = 0;
    ASSERT_OK(search_str(idx, 1, "v4999", 5, a, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(a[0].doc, 950);
    ASSERT_OK(search_str(idx, 1, "v4998", 5, a, &n));
    ASSERT_EQ(n, 0);
    bm25_free(fresh);
    bm25_free(idx);
}

TEST(stopwords_ignored)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ASSERT_OK(add_str(idx, 1, 1, "the the the the cat"));
    ASSERT_OK(add_str(idx, 1, 2, "a dog"));
    ASSERT_OK(add_str(idx, 1, 3, "of and to"));     /* no indexable token: dl 0 */
    ASSERT_OK(add_str(idx, 1, 4, ""));
    ASSERT_EQ(bm25_doc_count(idx, 1), 4);
    bm25_hit hits[8];
    size_t n = 0;
    ASSERT_OK(search_str(idx, 1, "the", 10, hits, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(search_str(idx, 1, "the and of a", 10, hits, &n));
    ASSERT_EQ(n, 0);
    /* Doc 1 has length 1 (stopwords do not count): N 4, avgdl 2/4. */
    ASSERT_OK(search_str(idx, 1, "the cat", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_NEAR(hits[0].score, okapi(1, 1, 0.5, 4, 1), 1e-4);
    /* Negation is not a stopword. */
    ASSERT_OK(add_str(idx, 1, 5, "user does not eat meat"));
    ASSERT_OK(search_str(idx, 1, "not", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 5);
    /* Docs without terms remove and re-add like any other. */
    ASSERT_OK(bm25_remove(idx, 1, 3));
    ASSERT_OK(bm25_remove(idx, 1, 4));
    ASSERT_OK(add_str(idx, 1, 4, "the"));
    ASSERT_EQ(bm25_doc_count(idx, 1), 4);
    bm25_free(idx);
}

TEST(stemming_matches)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ASSERT_OK(add_str(idx, 1, 1, "I love hiking in the Alps"));
    ASSERT_OK(add_str(idx, 1, 2, "She hikes every weekend"));
    ASSERT_OK(add_str(idx, 1, 3, "We hiked up the hill"));
    ASSERT_OK(add_str(idx, 1, 4, "payment card declined"));
    bm25_hit hits[8];
    size_t n = 0;
    const char *queries[] = {"hike", "hikes", "hiking", "Hiked"};
    for (size_t q = 0; q < STRATA_ARRAY_LEN(queries); q++) {
        ASSERT_OK(search_str(idx, 1, queries[q], 10, hits, &n));
        ASSERT_EQ(n, 3);
        for (size_t i = 0; i < n; i++) {
            ASSERT_TRUE(hits[i].doc != 4);
        }
    }
    ASSERT_OK(search_str(idx, 1, "declining payments", 10, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(hits[0].doc, 4);
    bm25_free(idx);
}

TEST(long_doc_bounded)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    size_t len = 200 * 1024;
    char *big = malloc(len);
    ASSERT_TRUE(big != NULL);
    for (size_t i = 0; i < len; i++) {
        big[i] = (i % 6 == 5) ? ' ' : (char)('a' + (i / 6) % 26);
    }
    memcpy(big + len - 12, " tailmarker ", 12);    /* past 64 KiB: not indexed */
    ASSERT_OK(bm25_add(idx, 1, 1, big, len));
    bm25_hit hits[2];
    size_t n = 0;
    ASSERT_OK(search_str(idx, 1, "aaaaa", 2, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_OK(search_str(idx, 1, "tailmarker", 2, hits, &n));
    ASSERT_EQ(n, 0);
    /* A long query is cut too, and never fails. */
    ASSERT_OK(bm25_search(idx, 1, big, len, 2, hits, &n));
    ASSERT_EQ(n, 1);
    free(big);
    bm25_free(idx);
}

/* ---- randomized comparison with a brute-force reference ---------------- */

#define STRESS_DOCS 10000u
#define STRESS_VOCAB 600u
#define STRESS_PARTS 4u
#define STRESS_MAXLEN 24u

typedef struct ref_doc {
    bool live;
    uint32_t part;
    uint32_t n;                         /* tokens */
    uint16_t words[STRESS_MAXLEN];      /* vocabulary indices */
} ref_doc;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

/* Zipf-like word choice so that df varies widely. */
static uint16_t rnd_word(void)
{
    uint32_t r = rnd(STRESS_VOCAB);
    return (uint16_t)(r * r / STRESS_VOCAB);
}

/* Words "t<number>" contain a digit: the stemmer leaves them alone. */
static void ref_text(const ref_doc *d, char *out, size_t cap)
{
    size_t off = 0;
    for (uint32_t i = 0; i < d->n; i++) {
        off += (size_t)snprintf(out + off, cap - off, "%sT%u", i ? " the " : "", d->words[i]);
    }
    out[off] = '\0';
}

/* Reference BM25 of every live doc of part for the distinct query words
 * q[0..nq) into ref[] (0 for other docs), straight from the definition.
 * Returns the number of docs scoring > 0. */
static size_t ref_scores(const ref_doc *docs, uint32_t part, const uint16_t *q, size_t nq,
                         double *ref)
{
    double n_docs = 0;
    double total = 0;
    double df[3] = {0, 0, 0};
    for (uint32_t i = 0; i < STRESS_DOCS; i++) {
        if (!docs[i].live || docs[i].part != part) {
            continue;
        }
        n_docs++;
        total += docs[i].n;
        for (size_t j = 0; j < nq; j++) {
            for (uint32_t w = 0; w < docs[i].n; w++) {
                if (docs[i].words[w] == q[j]) {
                    df[j]++;
                    break;
                }
            }
        }
    }
    size_t n_pos = 0;
    for (uint32_t i = 0; i < STRESS_DOCS; i++) {
        ref[i] = 0;
        if (!docs[i].live || docs[i].part != part) {
            continue;
        }
        for (size_t j = 0; j < nq; j++) {
            double tf = 0;
            for (uint32_t w = 0; w < docs[i].n; w++) {
                tf += docs[i].words[w] == q[j];
            }
            if (tf > 0) {
                ref[i] += okapi(tf, docs[i].n, total / n_docs, n_docs, df[j]);
            }
        }
        n_pos += ref[i] > 0;
    }
    return n_pos;
}

TEST(stress_10k_random)
{
    bm25 *idx = NULL;
    ASSERT_OK(bm25_create(K1, B, &idx));
    ref_doc *docs = calloc(STRESS_DOCS, sizeof(*docs));
    ASSERT_TRUE(docs != NULL);
    char text[STRESS_MAXLEN * 12];
    /* Add all, then churn: remove, replace, re-add. */
    for (uint32_t i = 0; i < STRESS_DOCS; i++) {
        ref_doc *d = &docs[i];
        d->live = true;
        d->part = rnd(STRESS_PARTS);
        d->n = 1 + rnd(STRESS_MAXLEN);
        for (uint32_t w = 0; w < d->n; w++) {
            d->words[w] = rnd_word();
        }
        ref_text(d, text, sizeof(text));
        ASSERT_OK(add_str(idx, d->part, i, text));
    }
    for (uint32_t step = 0; step < 6000; step++) {
        uint32_t i = rnd(STRESS_DOCS);
        ref_doc *d = &docs[i];
        uint32_t op = rnd(3);
        if (op == 0 && d->live) {
            ASSERT_OK(bm25_remove(idx, d->part, i));
            d->live = false;
        } else if (op == 0) {
            ASSERT_EQ(bm25_remove(idx, d->part, i), STRATA_ENOTFOUND);
        } else {
            uint32_t part = rnd(STRESS_PARTS);
            if (d->live && d->part != part) {
                /* Moving partitions is remove + add, as the caller would. */
                ASSERT_OK(bm25_remove(idx, d->part, i));
            }
            d->live = true;
            d->part = part;
            d->n = 1 + rnd(STRESS_MAXLEN);
            for (uint32_t w = 0; w < d->n; w++) {
                d->words[w] = rnd_word();
            }
            ref_text(d, text, sizeof(text));
            ASSERT_OK(add_str(idx, d->part, i, text));
        }
    }
    size_t live[STRESS_PARTS] = {0};
    for (uint32_t i = 0; i < STRESS_DOCS; i++) {
        if (docs[i].live) {
            live[docs[i].part]++;
        }
    }
    for (uint32_t p = 0; p < STRESS_PARTS; p++) {
        ASSERT_EQ(bm25_doc_count(idx, p), live[p]);
    }
    /* Queries: top-10 scores must match the reference ranking's scores, and
     * each returned doc's reference score must equal its reported score. */
    bm25_hit hits[10];
    double *ref = malloc(STRESS_DOCS * sizeof(*ref));
    ASSERT_TRUE(ref != NULL);
    for (uint32_t qi = 0; qi < 60; qi++) {
        uint32_t part = rnd(STRESS_PARTS);
        uint16_t q[3];
        size_t nq = 0;
        char qtext[64];
        size_t off = 0;
        for (uint32_t j = 0; j < 1 + rnd(3); j++) {
            uint16_t w = rnd_word();
            bool dup = false;
            for (size_t k = 0; k < nq; k++) {
                dup |= q[k] == w;
            }
            if (!dup) {
                q[nq++] = w;
            }
            off += (size_t)snprintf(qtext + off, sizeof(qtext) - off, "t%u ", w);
        }
        size_t n = 0;
        ASSERT_OK(bm25_search(idx, part, qtext, off, 10, hits, &n));
        size_t n_ref = ref_scores(docs, part, q, nq, ref);
        ASSERT_EQ(n, STRATA_MIN(n_ref, (size_t)10));
        for (size_t r = 0; r < n; r++) {
            uint64_t doc = hits[r].doc;
            ASSERT_TRUE(doc < STRESS_DOCS);
            ASSERT_NEAR(hits[r].score, ref[doc], 1e-4);
            if (r > 0) {
                ASSERT_TRUE(hits[r].score <= hits[r - 1].score);
            }
            /* No doc outside the result beats the r-th hit. */
            size_t better = 0;
            for (uint32_t i = 0; i < STRESS_DOCS; i++) {
                better += ref[i] > hits[r].score + 1e-4;
            }
            ASSERT_TRUE(better <= r);
        }
    }
    free(ref);
    free(docs);
    bm25_free(idx);
}

/* ---- allocation failures ----------------------------------------------- */

TEST(alloc_failures)
{
    /* Fail each allocation of an add (new terms, new partition, re-add),
     * a search and a remove in turn: errors are ENOMEM, the index is left as
     * it was, and nothing leaks (ASan). */
    for (long fail_at = 0; fail_at < 200; fail_at++) {
        bm25 *idx = NULL;
        ASSERT_OK(bm25_create(K1, B, &idx));
        ASSERT_OK(add_toy(idx, 1));
        strata_alloc_fail_after(fail_at);
        int rc1 = add_str(idx, 1, 9, "zebra giraffe cat and many more new words here");
        int rc2 = add_str(idx, 2, 1, "a new partition");
        int rc3 = add_str(idx, 1, 2, "dog replaced");
        bm25_hit hits[4];
        size_t n = 0;
        int rc4 = search_str(idx, 1, "zebra cat", 4, hits, &n);
        int rc5 = bm25_remove(idx, 1, 3);
        strata_alloc_fail_after(-1);
        ASSERT_TRUE(rc1 == STRATA_OK || rc1 == STRATA_ENOMEM);
        ASSERT_TRUE(rc2 == STRATA_OK || rc2 == STRATA_ENOMEM);
        ASSERT_TRUE(rc3 == STRATA_OK || rc3 == STRATA_ENOMEM);
        ASSERT_TRUE(rc4 == STRATA_OK || rc4 == STRATA_ENOMEM);
        ASSERT_OK(rc5);
        ASSERT_EQ(bm25_doc_count(idx, 1), rc1 == STRATA_OK ? 4 : 3);
        ASSERT_EQ(bm25_doc_count(idx, 2), rc2 == STRATA_OK ? 1 : 0);
        ASSERT_OK(search_str(idx, 1, "zebra", 4, hits, &n));
        ASSERT_EQ(n, rc1 == STRATA_OK ? 1 : 0);
        ASSERT_OK(search_str(idx, 1, "replaced", 4, hits, &n));
        ASSERT_EQ(n, rc3 == STRATA_OK ? 1 : 0);
        ASSERT_OK(search_str(idx, 1, "log", 4, hits, &n));
        ASSERT_EQ(n, rc3 == STRATA_OK ? 0 : 1);
        bm25_stats st;
        bm25_stats_get(idx, &st);
        ASSERT_EQ(st.n_docs, (rc1 == STRATA_OK ? 4u : 3u) + (rc2 == STRATA_OK ? 1u : 0u));
        bm25_free(idx);
    }
}

/* ---- concurrency ------------------------------------------------------- */

typedef struct conc_ctx {
    bm25 *idx;
    int stop;               /* atomic via __atomic builtins */
    int bad;
    unsigned long searches;
} conc_ctx;

static void *conc_reader(void *arg)
{
    conc_ctx *c = arg;
    bm25_hit hits[10];
    const char *queries[] = {"alpha", "beta gamma", "t1 t2 t3", "delta alpha t7", "omega"};
    unsigned long i = 0;
    /* At least one search even when the writer finishes first (a loaded CI
     * machine may not schedule this thread before that). */
    do {
        size_t n = 0;
        const char *q = queries[i % 5];
        uint64_t part = i % 3;
        if (bm25_search(c->idx, part, q, strlen(q), 10, hits, &n) != STRATA_OK || n > 10) {
            __atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
        }
        for (size_t r = 0; r < n; r++) {
            if (!(hits[r].score > 0) || (r > 0 && hits[r].score > hits[r - 1].score) ||
                hits[r].doc >= 2000) {
                __atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
            }
        }
        (void)bm25_doc_count(c->idx, part);
        i++;
    } while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE));
    c->searches = i;
    return NULL;
}

TEST(concurrent_readers_writer)
{
    conc_ctx c = {0};
    ASSERT_OK(bm25_create(K1, B, &c.idx));
    static const char *const words[] = {"alpha", "beta", "gamma", "delta", "t1", "t2", "t3", "t7"};
    char text[128];
    pthread_t th[3];
    conc_ctx rc[3];
    for (int i = 0; i < 3; i++) {
        rc[i] = c;
        ASSERT_EQ(pthread_create(&th[i], NULL, conc_reader, &rc[i]), 0);
    }
    uint64_t state = 12345;
    for (int step = 0; step < 6000; step++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t doc = (state >> 33) % 2000;
        uint64_t part = doc % 3;
        if ((state >> 20) % 4 == 0) {
            int r = bm25_remove(c.idx, part, doc);
            ASSERT_TRUE(r == STRATA_OK || r == STRATA_ENOTFOUND);
        } else {
            snprintf(text, sizeof(text), "%s %s %s", words[(state >> 40) % 8],
                     words[(state >> 44) % 8], words[(state >> 48) % 8]);
            ASSERT_OK(add_str(c.idx, part, doc, text));
        }
    }
    for (int i = 0; i < 3; i++) {
        __atomic_store_n(&rc[i].stop, 1, __ATOMIC_RELEASE);
        pthread_join(th[i], NULL);
        ASSERT_EQ(rc[i].bad, 0);
        ASSERT_TRUE(rc[i].searches > 0);
    }
    bm25_free(c.idx);
}

TEST_MAIN(TEST_ENTRY(tokenize_ascii), TEST_ENTRY(tokenize_apostrophes), TEST_ENTRY(tokenize_utf8),
          TEST_ENTRY(tokenize_long), TEST_ENTRY(tokenize_empty), TEST_ENTRY(stopwords),
          TEST_ENTRY(stemmer), TEST_ENTRY(scores_hand_computed), TEST_ENTRY(ranking_topk),
          TEST_ENTRY(partitions_isolated), TEST_ENTRY(remove_and_readd), TEST_ENTRY(compaction),
          TEST_ENTRY(stopwords_ignored), TEST_ENTRY(stemming_matches),
          TEST_ENTRY(long_doc_bounded), TEST_ENTRY(stress_10k_random),
          TEST_ENTRY(alloc_failures), TEST_ENTRY(concurrent_readers_writer))
