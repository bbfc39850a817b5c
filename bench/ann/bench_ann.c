/*
 * bench_ann.c - the Strata side of the ANN benchmark, and the data generator.
 *
 *   bench_ann gen FILE [n nq dim clusters spread seed]
 *       Write the data set of ann_common.h: n base vectors and nq queries
 *       drawn from one mixture of Gaussian clusters (defaults: 100000, 1000,
 *       384, 1000 clusters, spread 1.0, seed 1), L2-normalised, plus the exact
 *       top-10 of every query by brute force.
 *   bench_ann run FILE
 *       Build a Strata HNSW index (M=16, ef_construction=200, one thread),
 *       then sweep ef_search and print BUILD / QUERY lines; then filtered
 *       searches (a user owning 0.5% of the elements: the exact-scan path;
 *       a tenant owning 50%: the filtered graph walk), as FILTER lines.
 *
 * Cluster model: a point is centre + spread * g / sqrt(dim) with g standard
 * normal per coordinate, then normalised; the noise has about the norm of
 * the centre at spread 1, so neighbours sit mostly but not only inside the
 * query's own cluster, like sentence embeddings around topics.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ann_common.h"
#include "l2/hnsw.h"

/* ---- generation --------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_gauss(uint64_t *s)
{
    double u = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void gen_points(float *out, size_t n, uint32_t dim, const float *centres,
                       uint32_t n_clusters, float spread, uint64_t *s)
{
    float scale = spread / sqrtf((float)dim);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (rng_next(s) % n_clusters) * dim;
        float *x = out + i * dim;
        for (uint32_t j = 0; j < dim; j++) {
            x[j] = c[j] + scale * rng_gauss(s);
        }
        hnsw_normalize(x, dim);
    }
}

typedef struct top {
    float score;
    uint32_t id;
} top;

/* Insert (score, id) into the best-first list t[0..k), k full. */
static void top_insert(top *t, size_t k, float score, uint32_t id)
{
    if (score <= t[k - 1].score) {
        return;
    }
    size_t i = k - 1;
    while (i > 0 && t[i - 1].score < score) {
        t[i] = t[i - 1];
        i--;
    }
    t[i] = (top){score, id};
}

/* Exact top-k for every query; blocks of queries share one pass over the
 * base so the base streams from memory once per block, not once per query. */
static void brute_truth(const float *base, size_t n, const float *queries, size_t nq,
                        uint32_t dim, uint32_t k, uint32_t *truth)
{
    enum { BLOCK = 64 };
    hnsw_dot_fn dot = hnsw_dot_select(dim);
    top *t = malloc((size_t)BLOCK * k * sizeof(top));
    for (size_t q0 = 0; q0 < nq; q0 += BLOCK) {
        size_t nb = nq - q0 < BLOCK ? nq - q0 : BLOCK;
        for (size_t i = 0; i < nb * k; i++) {
            t[i] = (top){-INFINITY, UINT32_MAX};
        }
        for (size_t i = 0; i < n; i++) {
            const float *v = base + i * dim;
            for (size_t b = 0; b < nb; b++) {
                top_insert(t + b * k, k, dot(queries + (q0 + b) * dim, v, dim), (uint32_t)i);
            }
        }
        for (size_t b = 0; b < nb; b++) {
            for (size_t j = 0; j < k; j++) {
                truth[(q0 + b) * k + j] = t[b * k + j].id;
            }
        }
    }
    free(t);
}

static int cmd_gen(int argc, char **argv)
{
    const char *path = argv[2];
    size_t n = argc > 3 ? strtoul(argv[3], NULL, 10) : 100000;
    size_t nq = argc > 4 ? strtoul(argv[4], NULL, 10) : 1000;
    uint32_t dim = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 384;
    uint32_t n_clusters = argc > 6 ? (uint32_t)strtoul(argv[6], NULL, 10) : 1000;
    float spread = argc > 7 ? strtof(argv[7], NULL) : 1.0f;
    uint64_t seed = argc > 8 ? strtoull(argv[8], NULL, 10) : 1;
    uint32_t k = ANN_K;
    if (n == 0 || nq == 0 || dim == 0 || n_clusters == 0) {
        fprintf(stderr, "bench_ann gen: bad sizes\n");
        return 2;
    }
    double t0 = ann_now();
    float *centres = malloc((size_t)n_clusters * dim * sizeof(float));
    float *base = malloc(n * dim * sizeof(float));
    float *queries = malloc(nq * dim * sizeof(float));
    uint32_t *truth = malloc(nq * k * sizeof(uint32_t));
    uint64_t s = seed;
    for (size_t i = 0; i < (size_t)n_clusters * dim; i++) {
        centres[i] = rng_gauss(&s);
    }
    for (uint32_t c = 0; c < n_clusters; c++) {
        hnsw_normalize(centres + (size_t)c * dim, dim);
    }
    gen_points(base, n, dim, centres, n_clusters, spread, &s);
    gen_points(queries, nq, dim, centres, n_clusters, spread, &s);
    brute_truth(base, n, queries, nq, dim, k, truth);

    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    uint32_t hdr[4] = {(uint32_t)n, (uint32_t)nq, dim, k};
    int ok = fwrite(ANN_MAGIC, 1, 8, f) == 8 && fwrite(hdr, 4, 4, f) == 4 &&
             fwrite(base, sizeof(float), n * dim, f) == n * dim &&
             fwrite(queries, sizeof(float), nq * dim, f) == nq * dim &&
             fwrite(truth, sizeof(uint32_t), nq * k, f) == nq * k;
    ok = fclose(f) == 0 && ok;
    free(centres);
    free(base);
    free(queries);
    free(truth);
    if (!ok) {
        fprintf(stderr, "%s: write failed\n", path);
        return 1;
    }
    printf("wrote %s: %zu x %u base, %zu queries, %u clusters, spread %.2f (%.1f s)\n", path,
           n, dim, nq, n_clusters, spread, ann_now() - t0);
    return 0;
}

/* ---- run ---------------------------------------------------------------- */

/* Element i: tenant i % 2, user (i / 2) % 100: a user owns 0.5%. */
static hnsw_attrs bench_attrs(size_t i)
{
    hnsw_attrs a = {.tenant = (uint32_t)(i % 2), .user = (uint32_t)((i / 2) % 100), .type = 0,
                    .importance = 0.5f};
    return a;
}

/* Sweep one filter kind: recall against brute force over the matching
 * elements, and queries per second at ef = 64. */
static void run_filter(hnsw *idx, const ann_data *d, const char *kind, bool by_user)
{
    top t[ANN_K];
    hnsw_result res[ANN_K];
    uint64_t got[ANN_K];
    hnsw_dot_fn dot = hnsw_dot_select(d->dim);
    double recall = 0.0;
    for (uint32_t qi = 0; qi < d->nq; qi++) {
        hnsw_filter f;
        hnsw_filter_init(&f, qi % 2);
        f.has_user = by_user;
        f.user = (qi / 2) % 100;
        for (uint32_t j = 0; j < ANN_K; j++) {
            t[j] = (top){-INFINITY, UINT32_MAX};
        }
        const float *q = d->queries + (size_t)qi * d->dim;
        for (size_t i = 0; i < d->n; i++) {
            hnsw_attrs a = bench_attrs(i);
            if (a.tenant == f.tenant && (!by_user || a.user == f.user)) {
                top_insert(t, ANN_K, dot(q, d->base + i * d->dim, d->dim), (uint32_t)i);
            }
        }
        size_t n = 0;
        hnsw_search(idx, q, ANN_K, 64, &f, res, &n);
        size_t hit = 0;
        for (size_t i = 0; i < n; i++) {
            got[i] = res[i].label;
            for (size_t j = 0; j < ANN_K; j++) {
                hit += t[j].id == got[i];
            }
        }
        recall += (double)hit / ANN_K;
    }
    double t0 = ann_now();
    size_t done = 0;
    while (ann_now() - t0 < ANN_MIN_SECONDS / 2) {
        for (uint32_t qi = 0; qi < d->nq; qi++) {
            hnsw_filter f;
            hnsw_filter_init(&f, qi % 2);
            f.has_user = by_user;
            f.user = (qi / 2) % 100;
            size_t n = 0;
            hnsw_search(idx, d->queries + (size_t)qi * d->dim, ANN_K, 64, &f, res, &n);
        }
        done += d->nq;
    }
    double qps = (double)done / (ann_now() - t0);
    printf("FILTER lib=strata kind=%s ef=64 recall=%.4f qps=%.0f\n", kind, recall / d->nq, qps);
}

static int cmd_run(const char *path)
{
    ann_data d;
    if (ann_load(path, &d) != 0) {
        return 1;
    }
    printf("strata: %u x %u, kernel %s\n", d.n, d.dim, hnsw_isa_name(hnsw_isa_best()));
    double rss0 = ann_rss_mb();
    double t0 = ann_now();
    hnsw *idx = NULL;
    if (hnsw_create(d.dim, ANN_M, ANN_EF_CONSTRUCTION, d.n, 42, &idx) != STRATA_OK) {
        fprintf(stderr, "hnsw_create: %s\n", strata_errmsg());
        return 1;
    }
    for (uint32_t i = 0; i < d.n; i++) {
        hnsw_attrs a = bench_attrs(i);
        if (hnsw_add(idx, i, d.base + (size_t)i * d.dim, &a) != STRATA_OK) {
            fprintf(stderr, "hnsw_add: %s\n", strata_errmsg());
            return 1;
        }
    }
    double build_s = ann_now() - t0;
    hnsw_stats st;
    hnsw_stats_get(idx, &st);
    ann_print_build("strata", build_s, ann_rss_mb() - rss0, (double)st.bytes / (1 << 20));

    hnsw_result res[ANN_K];
    uint64_t got[ANN_K];
    for (int e = 0; e < ANN_N_EFS; e++) {
        int ef = ann_efs[e];
        double recall = 0.0;
        for (uint32_t qi = 0; qi < d.nq; qi++) {
            size_t n = 0;
            hnsw_search(idx, d.queries + (size_t)qi * d.dim, ANN_K, (size_t)ef, NULL, res, &n);
            for (size_t i = 0; i < n; i++) {
                got[i] = res[i].label;
            }
            recall += ann_recall_one(&d, qi, got, n);
        }
        double t1 = ann_now();
        size_t done = 0;
        while (ann_now() - t1 < ANN_MIN_SECONDS) {
            for (uint32_t qi = 0; qi < d.nq; qi++) {
                size_t n = 0;
                hnsw_search(idx, d.queries + (size_t)qi * d.dim, ANN_K, (size_t)ef, NULL, res,
                            &n);
            }
            done += d.nq;
        }
        ann_print_query("strata", ef, recall / d.nq, (double)done / (ann_now() - t1));
    }
    run_filter(idx, &d, "user_0.5pct", true);
    run_filter(idx, &d, "tenant_50pct", false);
    hnsw_free(idx);
    ann_unload(&d);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "gen") == 0) {
        return cmd_gen(argc, argv);
    }
    if (argc == 3 && strcmp(argv[1], "run") == 0) {
        return cmd_run(argv[2]);
    }
    fprintf(stderr, "usage: bench_ann gen FILE [n nq dim clusters spread seed]\n"
                    "       bench_ann run FILE\n");
    return 2;
}
