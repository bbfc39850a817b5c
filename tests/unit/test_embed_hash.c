/*
 * test_embed_hash.c - the built-in hashing embedder (embed_hash.c) and the
 * caching wrapper (embed_cache.c): determinism and a golden vector, unit
 * norm, paraphrase-versus-unrelated similarity, empty and long texts, batch
 * versus single calls, cache hit/miss counting, LRU eviction, failure
 * unwinding, and the cache under concurrent callers (also run under TSan).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/embed.h"
#include "test.h"

/* ---- helpers ----------------------------------------------------------- */

static int embed1(embedder *e, const char *text, float *out)
{
    const char *t[1] = {text};
    size_t l[1] = {strlen(text)};
    return embedder_embed(e, t, l, 1, out);
}

static double dot(const float *a, const float *b, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++) {
        s += (double)a[i] * b[i];
    }
    return s;
}

static double cosine_of(embedder *e, const char *a, const char *b)
{
    float *va = malloc(e->dim * sizeof(float));
    float *vb = malloc(e->dim * sizeof(float));
    double c = -2;
    if (va != NULL && vb != NULL && embed1(e, a, va) == STRATA_OK &&
        embed1(e, b, vb) == STRATA_OK) {
        c = dot(va, vb, e->dim);
    }
    free(va);
    free(vb);
    return c;
}

/* An inner embedder that counts the texts it is asked to embed and can be
 * told to fail; it delegates to a hash embedder. */
typedef struct count_embedder {
    embedder base;
    embedder *hash;
    unsigned long texts;    /* atomic via __atomic builtins */
    int fail;
} count_embedder;

static int count_embed(embedder *e, const char *const *t, const size_t *l, size_t n, float *out)
{
    count_embedder *c = (count_embedder *)e;
    if (c->fail) {
        return strata_error(STRATA_EIO, "count embedder told to fail");
    }
    __atomic_add_fetch(&c->texts, n, __ATOMIC_RELAXED);
    return embedder_embed(c->hash, t, l, n, out);
}

static void count_close(embedder *e)
{
    count_embedder *c = (count_embedder *)e;
    embedder_free(c->hash);
    free(c);
}

static const embedder_ops g_count_ops = {"count", count_embed, count_close};

static count_embedder *count_create(uint32_t dim)
{
    count_embedder *c = calloc(1, sizeof(*c));
    if (c == NULL || embedder_hash_create(dim, &c->hash) != STRATA_OK) {
        free(c);
        return NULL;
    }
    c->base.ops = &g_count_ops;
    c->base.dim = dim;
    snprintf(c->base.model, sizeof(c->base.model), "count-%u", dim);
    return c;
}

/* ---- the hash embedder ------------------------------------------------- */

TEST(create_and_model)
{
    embedder *e = NULL;
    ASSERT_EQ(embedder_hash_create(15, &e), STRATA_EINVAL);
    ASSERT_TRUE(e == NULL);
    ASSERT_EQ(embedder_hash_create(4097, &e), STRATA_EINVAL);
    ASSERT_OK(embedder_hash_create(EMBED_HASH_DIM_DEFAULT, &e));
    ASSERT_EQ(e->dim, 384);
    ASSERT_STREQ(e->model, "hash-v1-384");
    ASSERT_STREQ(e->ops->name, "hash");
    embedder_free(e);
    ASSERT_OK(embedder_hash_create(16, &e));
    ASSERT_STREQ(e->model, "hash-v1-16");
    embedder_free(e);
    ASSERT_OK(embedder_hash_create(4096, &e));
    embedder_free(e);
    embedder_free(NULL);
}

TEST(deterministic_golden)
{
    embedder *e1 = NULL;
    embedder *e2 = NULL;
    ASSERT_OK(embedder_hash_create(384, &e1));
    ASSERT_OK(embedder_hash_create(384, &e2));
    float a[384];
    float b[384];
    const char *text = "The user loves hiking in the Swiss Alps; don't forget the 2 dogs!";
    ASSERT_OK(embed1(e1, text, a));
    ASSERT_OK(embed1(e2, text, b));
    ASSERT_TRUE(memcmp(a, b, sizeof(a)) == 0);
    ASSERT_OK(embed1(e1, text, b));
    ASSERT_TRUE(memcmp(a, b, sizeof(a)) == 0);
    embedder_free(e1);
    embedder_free(e2);

    /* Golden values at dim 16 for "hello world": features hello, world,
     * hello|world and the 3-grams of <hello> and <world>. Any change to the
     * hash, the weights or the features moves these: bump the model name
     * ("hash-v2") when that is intended, since stored vectors change. */
    static const float golden[16] = {
        0.0f, -0.18107149f, -0.6337502f, -0.18107149f,
        0.0f, 0.0f, 0.45267874f, 0.0f,
        0.18107149f, 0.0f, 0.18107149f, -0.36214298f,
        0.0f, -0.36214298f, 0.0f, 0.0f,
    };
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(16, &e));
    float v[16];
    ASSERT_OK(embed1(e, "Hello, world!", v));
    for (int i = 0; i < 16; i++) {
        ASSERT_NEAR(v[i], golden[i], 1e-6);
    }
    embedder_free(e);
}

TEST(unit_norm)
{
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(384, &e));
    const char *texts[] = {
        "x", "hello", "User loves hiking in the mountains", "payment card declined",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
        "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80", "\xFF\xFE\xFD invalid bytes \x80",
        "repeat repeat repeat repeat repeat repeat repeat repeat repeat repeat repeat",
    };
    float v[384];
    for (size_t i = 0; i < STRATA_ARRAY_LEN(texts); i++) {
        ASSERT_OK(embed1(e, texts[i], v));
        ASSERT_NEAR(dot(v, v, 384), 1.0, 1e-5);
        for (int j = 0; j < 384; j++) {
            ASSERT_TRUE(isfinite(v[j]));
        }
    }
    embedder_free(e);
}

TEST(similarity)
{
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(384, &e));
    /* Each row: anchor, paraphrase, unrelated. */
    static const char *const rows[][3] = {
        {"User loves hiking in the mountains", "the user enjoys mountain hikes",
         "payment card declined"},
        {"My favourite food is sushi", "I really like eating sushi", "The meeting is on Tuesday"},
        {"She moved to Berlin last year", "she has been living in Berlin since last year",
         "the printer is out of paper"},
        {"I am allergic to peanuts", "peanut allergy", "I am learning to play guitar"},
        {"The user's daughter is called Emma", "Emma is the daughter of the user",
         "The weather is cold today"},
        {"running a marathon in under four hours", "ran marathons, runs every day",
         "bought a new laptop"},
        {"payment card declined", "card payment was declined at checkout",
         "User loves hiking in the mountains"},
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(rows); i++) {
        double sim = cosine_of(e, rows[i][0], rows[i][1]);
        double unrel = cosine_of(e, rows[i][0], rows[i][2]);
        if (getenv("EMBED_VERBOSE") != NULL) {
            printf("  %.3f %.3f  %s | %s | %s\n", sim, unrel, rows[i][0], rows[i][1],
                   rows[i][2]);
        }
        if (!(sim > unrel + 0.15)) {
            TEST_FAIL_("row %zu: paraphrase %.3f vs unrelated %.3f", i, sim, unrel);
        }
        ASSERT_TRUE(sim > 0.25);
        ASSERT_TRUE(fabs(unrel) < 0.2);
    }
    /* Case, punctuation and stopwords do not matter. */
    ASSERT_NEAR(cosine_of(e, "Hiking, MOUNTAINS!", "the hiking of mountains"), 1.0, 1e-6);
    /* Word order does, a little (bigrams). */
    double swapped = cosine_of(e, "dog bites man", "man bites dog");
    ASSERT_TRUE(swapped < 0.999 && swapped > 0.6);
    /* Inflections the stemmer misses still meet through 3-grams. */
    ASSERT_TRUE(cosine_of(e, "mountainous", "mountain") > 0.3);
    embedder_free(e);
}

TEST(empty_text)
{
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(64, &e));
    float a[64];
    float b[64];
    float c[64];
    ASSERT_OK(embed1(e, "", a));
    ASSERT_NEAR(dot(a, a, 64), 1.0, 1e-6);
    ASSERT_OK(embed1(e, "the of and to a is", b));     /* stopwords only */
    ASSERT_TRUE(memcmp(a, b, sizeof(a)) == 0);
    ASSERT_OK(embed1(e, " ,.;!? -- ", c));               /* punctuation only */
    ASSERT_TRUE(memcmp(a, c, sizeof(a)) == 0);
    /* One-hot: a single component of magnitude 1. */
    int nonzero = 0;
    for (int i = 0; i < 64; i++) {
        nonzero += a[i] != 0.0f;
    }
    ASSERT_EQ(nonzero, 1);
    /* A text of length 0 via a non-NUL-terminated pointer. */
    const char *t[1] = {"ignored"};
    size_t l[1] = {0};
    ASSERT_OK(embedder_embed(e, t, l, 1, c));
    ASSERT_TRUE(memcmp(a, c, sizeof(a)) == 0);
    /* n = 0 is a no-op; bad arguments are EINVAL. */
    ASSERT_OK(embedder_embed(e, NULL, NULL, 0, NULL));
    const char *tn[1] = {NULL};
    ASSERT_EQ(embedder_embed(e, tn, l, 1, c), STRATA_EINVAL);
    ASSERT_EQ(embedder_embed(e, t, l, 1, NULL), STRATA_EINVAL);
    embedder_free(e);
}

TEST(long_text)
{
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(384, &e));
    size_t len = 1u << 20;
    char *big = malloc(len + 1);
    ASSERT_TRUE(big != NULL);
    uint64_t s = 7;
    for (size_t i = 0; i < len; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        big[i] = (s >> 60) < 3 ? ' ' : (char)('a' + (s >> 40) % 26);
    }
    big[len] = '\0';
    float a[384];
    float b[384];
    const char *t[1] = {big};
    size_t l[1] = {len};
    ASSERT_OK(embedder_embed(e, t, l, 1, a));
    ASSERT_NEAR(dot(a, a, 384), 1.0, 1e-5);
    /* Only the first EMBED_HASH_TEXT_MAX bytes count. */
    l[0] = EMBED_HASH_TEXT_MAX;
    ASSERT_OK(embedder_embed(e, t, l, 1, b));
    ASSERT_TRUE(memcmp(a, b, sizeof(a)) == 0);
    /* A long text is still close to itself with a little appended. */
    l[0] = 100000;
    ASSERT_OK(embedder_embed(e, t, l, 1, a));
    l[0] = 101000;
    ASSERT_OK(embedder_embed(e, t, l, 1, b));
    ASSERT_TRUE(dot(a, b, 384) > 0.95);
    free(big);
    embedder_free(e);
}

TEST(batch_equals_single)
{
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(128, &e));
    const char *texts[] = {"first text", "", "a much longer third text with many words in it",
                           "first text", "the", "\xC3\xA9t\xC3\xA9 \xC3\xA0 Paris"};
    enum { N = 6 };
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        lens[i] = strlen(texts[i]);
    }
    float batch[N * 128];
    float nolens[N * 128];
    float one[128];
    ASSERT_OK(embedder_embed(e, texts, lens, N, batch));
    ASSERT_OK(embedder_embed(e, texts, NULL, N, nolens));
    ASSERT_TRUE(memcmp(batch, nolens, sizeof(batch)) == 0);
    for (int i = 0; i < N; i++) {
        ASSERT_OK(embed1(e, texts[i], one));
        ASSERT_TRUE(memcmp(batch + i * 128, one, sizeof(one)) == 0);
    }
    embedder_free(e);
}

TEST(hash_alloc_failures)
{
    embedder *e = NULL;
    ASSERT_OK(embedder_hash_create(64, &e));
    float v[2 * 64];
    const char *t[2] = {"some words here", "and more"};
    for (long n = 0; n < 10; n++) {
        strata_alloc_fail_after(n);
        int rc = embedder_embed(e, t, NULL, 2, v);
        strata_alloc_fail_after(-1);
        ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
    }
    embedder_free(e);
    for (long n = 0; n < 2; n++) {
        strata_alloc_fail_after(n);
        int rc = embedder_hash_create(64, &e);
        strata_alloc_fail_after(-1);
        ASSERT_TRUE(rc == STRATA_OK || (rc == STRATA_ENOMEM && e == NULL));
        embedder_free(e);
    }
}

/* ---- the cache --------------------------------------------------------- */

TEST(cache_hits_misses)
{
    count_embedder *inner = count_create(64);
    ASSERT_TRUE(inner != NULL);
    embedder *c = NULL;
    ASSERT_OK(embedder_cache_create(&inner->base, 100, &c));
    ASSERT_EQ(c->dim, 64);
    ASSERT_STREQ(c->model, "count-64");
    ASSERT_STREQ(c->ops->name, "cached");
    embedder *ref = NULL;
    ASSERT_OK(embedder_hash_create(64, &ref));

    const char *texts[] = {"alpha beta", "gamma", "alpha beta", "delta", "gamma"};
    float out[5 * 64];
    float want[5 * 64];
    ASSERT_OK(embedder_embed(c, texts, NULL, 5, out));
    ASSERT_OK(embedder_embed(ref, texts, NULL, 5, want));
    ASSERT_TRUE(memcmp(out, want, sizeof(out)) == 0);
    uint64_t hits = 0;
    uint64_t misses = 0;
    embedder_cache_stats(c, &hits, &misses);
    ASSERT_EQ(misses, 3);   /* identical texts in a batch are embedded once */
    ASSERT_EQ(hits, 2);
    ASSERT_EQ(inner->texts, 3);
    /* Second round: all hits, no inner call, same bits. */
    memset(out, 0, sizeof(out));
    ASSERT_OK(embedder_embed(c, texts, NULL, 5, out));
    ASSERT_TRUE(memcmp(out, want, sizeof(out)) == 0);
    embedder_cache_stats(c, &hits, &misses);
    ASSERT_EQ(misses, 3);
    ASSERT_EQ(hits, 7);
    ASSERT_EQ(inner->texts, 3);
    /* Content, not pointer or NUL: the same bytes via lens hit. */
    const char *t1[1] = {"gamma and more"};
    size_t l1[1] = {5};
    ASSERT_OK(embedder_embed(c, t1, l1, 1, out));
    ASSERT_TRUE(memcmp(out, want + 64, 64 * sizeof(float)) == 0);
    embedder_cache_stats(c, &hits, &misses);
    ASSERT_EQ(hits, 8);
    /* An inner failure is returned and nothing is cached. */
    inner->fail = 1;
    const char *t2[1] = {"never seen"};
    ASSERT_EQ(embedder_embed(c, t2, NULL, 1, out), STRATA_EIO);
    inner->fail = 0;
    ASSERT_OK(embedder_embed(c, t2, NULL, 1, out));
    ASSERT_EQ(inner->texts, 4);
    /* Stats of a non-cache embedder are zeros; NULL out-params are fine. */
    embedder_cache_stats(ref, &hits, &misses);
    ASSERT_EQ(hits, 0);
    ASSERT_EQ(misses, 0);
    embedder_cache_stats(c, NULL, NULL);
    embedder_free(ref);
    embedder_free(c);   /* frees inner */
}

TEST(cache_lru_eviction)
{
    count_embedder *inner = count_create(32);
    ASSERT_TRUE(inner != NULL);
    embedder *c = NULL;
    ASSERT_OK(embedder_cache_create(&inner->base, 2, &c));
    float v[32];
    ASSERT_OK(embed1(c, "a", v));       /* miss: [a] */
    ASSERT_OK(embed1(c, "b", v));       /* miss: [b a] */
    ASSERT_OK(embed1(c, "a", v));       /* hit:  [a b] */
    ASSERT_OK(embed1(c, "c", v));       /* miss, evicts b: [c a] */
    ASSERT_EQ(inner->texts, 3);
    ASSERT_OK(embed1(c, "a", v));       /* hit: [a c] */
    ASSERT_EQ(inner->texts, 3);
    ASSERT_OK(embed1(c, "b", v));       /* miss, evicts c: [b a] */
    ASSERT_EQ(inner->texts, 4);
    ASSERT_OK(embed1(c, "a", v));       /* hit */
    ASSERT_OK(embed1(c, "c", v));       /* miss */
    ASSERT_EQ(inner->texts, 5);
    uint64_t hits = 0;
    uint64_t misses = 0;
    embedder_cache_stats(c, &hits, &misses);
    ASSERT_EQ(hits, 3);
    ASSERT_EQ(misses, 5);
    /* A batch larger than the capacity still returns every row right. */
    const char *many[6] = {"m1", "m2", "m3", "m4", "m5", "m1"};
    float out[6 * 32];
    float want[6 * 32];
    ASSERT_OK(embedder_embed(c, many, NULL, 6, out));
    ASSERT_OK(embedder_embed(inner->hash, many, NULL, 6, want));
    ASSERT_TRUE(memcmp(out, want, sizeof(out)) == 0);
    embedder_free(c);

    /* Larger capacity: entries grow by doubling, old keys stay findable
     * across the rehash, and the cache never holds more than capacity. */
    inner = count_create(16);
    ASSERT_TRUE(inner != NULL);
    ASSERT_OK(embedder_cache_create(&inner->base, 1000, &c));
    char text[32];
    float w[16];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 1500; i++) {
            snprintf(text, sizeof(text), "text %d", i);
            ASSERT_OK(embed1(c, text, w));
        }
    }
    /* Round 1: 1500 misses. Round 2: texts 0..499 were evicted by 1000..1499
     * and in turn evict the oldest, so every access misses again (LRU with a
     * cyclic scan longer than the capacity). */
    ASSERT_EQ(inner->texts, 3000);
    for (int i = 1499; i >= 500; i--) {
        snprintf(text, sizeof(text), "text %d", i);
        ASSERT_OK(embed1(c, text, w));
    }
    ASSERT_EQ(inner->texts, 3000);  /* the last 1000 are all cached */
    embedder_free(c);
}

TEST(cache_create_errors)
{
    count_embedder *inner = count_create(16);
    ASSERT_TRUE(inner != NULL);
    embedder *c = NULL;
    ASSERT_EQ(embedder_cache_create(&inner->base, 0, &c), STRATA_EINVAL);
    ASSERT_TRUE(c == NULL);
    ASSERT_EQ(embedder_cache_create(&inner->base, (size_t)EMBED_CACHE_CAPACITY_MAX + 1, &c),
              STRATA_EINVAL);
    ASSERT_EQ(embedder_cache_create(NULL, 10, &c), STRATA_EINVAL);
    /* On failure the caller still owns inner. */
    for (long n = 0; n < 3; n++) {
        strata_alloc_fail_after(n);
        int rc = embedder_cache_create(&inner->base, 10, &c);
        strata_alloc_fail_after(-1);
        if (rc == STRATA_OK) {
            break;
        }
        ASSERT_EQ(rc, STRATA_ENOMEM);
        ASSERT_TRUE(c == NULL);
    }
    ASSERT_TRUE(c != NULL);
    /* Allocation failures inside embed: an error or a right answer. */
    float v[3 * 16];
    float want[3 * 16];
    const char *t[3] = {"one", "two", "one"};
    ASSERT_OK(embedder_embed(inner->hash, t, NULL, 3, want));
    for (long n = 0; n < 40; n++) {
        embedder *c2 = NULL;
        count_embedder *in2 = count_create(16);
        ASSERT_TRUE(in2 != NULL);
        ASSERT_OK(embedder_cache_create(&in2->base, 2, &c2));
        ASSERT_OK(embed1(c2, "zero", v));
        strata_alloc_fail_after(n);
        int rc = embedder_embed(c2, t, NULL, 3, v);
        strata_alloc_fail_after(-1);
        ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
        if (rc == STRATA_OK) {
            ASSERT_TRUE(memcmp(v, want, sizeof(v)) == 0);
        }
        ASSERT_OK(embedder_embed(c2, t, NULL, 3, v));
        ASSERT_TRUE(memcmp(v, want, sizeof(v)) == 0);
        embedder_free(c2);
    }
    embedder_free(c);
}

typedef struct cache_thread {
    embedder *c;
    const float *want;      /* N_POOL x 64 expected rows */
    unsigned seed;
    int bad;
} cache_thread;

#define N_POOL 60

static char g_pool[N_POOL][32];

static void *cache_worker(void *arg)
{
    cache_thread *t = arg;
    float out[4 * 64];
    for (int i = 0; i < 1500; i++) {
        const char *texts[4];
        int which[4];
        for (int j = 0; j < 4; j++) {
            t->seed = t->seed * 1103515245u + 12345u;
            which[j] = (int)((t->seed >> 16) % N_POOL);
            texts[j] = g_pool[which[j]];
        }
        size_t n = 1 + (size_t)(i % 4);
        if (embedder_embed(t->c, texts, NULL, n, out) != STRATA_OK) {
            t->bad = 1;
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            if (memcmp(out + j * 64, t->want + which[j] * 64, 64 * sizeof(float)) != 0) {
                t->bad = 1;
            }
        }
    }
    return NULL;
}

TEST(cache_concurrent)
{
    count_embedder *inner = count_create(64);
    ASSERT_TRUE(inner != NULL);
    embedder *c = NULL;
    ASSERT_OK(embedder_cache_create(&inner->base, 20, &c));    /* < pool: evictions */
    static float want[N_POOL * 64];
    for (int i = 0; i < N_POOL; i++) {
        snprintf(g_pool[i], sizeof(g_pool[i]), "pool text number %d", i);
        ASSERT_OK(embed1(inner->hash, g_pool[i], want + i * 64));
    }
    enum { T = 4 };
    pthread_t th[T];
    cache_thread ct[T];
    for (int i = 0; i < T; i++) {
        ct[i].c = c;
        ct[i].want = want;
        ct[i].seed = 17u + (unsigned)i * 7919u;
        ct[i].bad = 0;
        ASSERT_EQ(pthread_create(&th[i], NULL, cache_worker, &ct[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(ct[i].bad, 0);
    }
    uint64_t hits = 0;
    uint64_t misses = 0;
    embedder_cache_stats(c, &hits, &misses);
    ASSERT_EQ(hits + misses, (uint64_t)T * (1500 / 4) * (1 + 2 + 3 + 4));
    ASSERT_EQ(misses, __atomic_load_n(&inner->texts, __ATOMIC_RELAXED));
    ASSERT_TRUE(hits > 0);
    embedder_free(c);
}

TEST_MAIN(TEST_ENTRY(create_and_model), TEST_ENTRY(deterministic_golden), TEST_ENTRY(unit_norm),
          TEST_ENTRY(similarity), TEST_ENTRY(empty_text), TEST_ENTRY(long_text),
          TEST_ENTRY(batch_equals_single), TEST_ENTRY(hash_alloc_failures),
          TEST_ENTRY(cache_hits_misses), TEST_ENTRY(cache_lru_eviction),
          TEST_ENTRY(cache_create_errors), TEST_ENTRY(cache_concurrent))
