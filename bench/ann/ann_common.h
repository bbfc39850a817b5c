/*
 * ann_common.h - what the three ANN benchmark programs share: the data file,
 * the clock, resident memory, recall@k, the ef_search sweep and the output
 * lines that run.sh collects. Header-only; compiles as C11 and as C++.
 *
 * Data file (written by `bench_ann gen FILE`, little-endian):
 *   off      size           field
 *     0         8           magic "STRANN01"
 *     8         4           n       base vectors
 *    12         4           nq      query vectors
 *    16         4           dim
 *    20         4           k       ground-truth neighbours per query
 *    24      4*n*dim        base vectors, float32, unit length
 *    ..      4*nq*dim       queries, float32, unit length
 *    ..      4*nq*k         exact top-k base ids per query (by inner
 *                           product), best first, uint32
 *
 * Times are CPU seconds of the process (ann_now), so build seconds and
 * queries per second are comparable between programs run at different
 * moments on a busy machine.
 *
 * Output lines (one per fact, parsed by run.sh):
 *   BUILD lib=NAME seconds=S rss_mb=R index_mb=I
 *   QUERY lib=NAME ef=E recall=R qps=Q
 */
#ifndef STRATA_BENCH_ANN_COMMON_H
#define STRATA_BENCH_ANN_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ANN_MAGIC "STRANN01"
#define ANN_K 10
#define ANN_M 16
#define ANN_EF_CONSTRUCTION 200
#define ANN_MIN_SECONDS 1.5 /* each ef is timed over at least this long */

static const int ann_efs[] = {16, 32, 64, 128, 256};
#define ANN_N_EFS ((int)(sizeof(ann_efs) / sizeof(ann_efs[0])))

typedef struct ann_data {
    uint32_t n, nq, dim, k;
    float *base;        /* n * dim */
    float *queries;     /* nq * dim */
    uint32_t *truth;    /* nq * k */
} ann_data;

/* CPU seconds used by this process. Every program runs one thread, so this
 * is the time the work took without the time-slicing a shared 2-core machine
 * adds to wall-clock figures (cache interference from neighbours remains). */
static inline double ann_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Resident set size of this process, MiB. */
static inline double ann_rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    long resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static inline int ann_load(const char *path, ann_data *d)
{
    memset(d, 0, sizeof(*d));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    char magic[8];
    uint32_t hdr[4];
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, ANN_MAGIC, 8) == 0 &&
             fread(hdr, 4, 4, f) == 4;
    if (ok) {
        d->n = hdr[0];
        d->nq = hdr[1];
        d->dim = hdr[2];
        d->k = hdr[3];
        d->base = (float *)malloc((size_t)d->n * d->dim * sizeof(float));
        d->queries = (float *)malloc((size_t)d->nq * d->dim * sizeof(float));
        d->truth = (uint32_t *)malloc((size_t)d->nq * d->k * sizeof(uint32_t));
        ok = d->base && d->queries && d->truth && d->k >= ANN_K &&
             fread(d->base, sizeof(float), (size_t)d->n * d->dim, f) == (size_t)d->n * d->dim &&
             fread(d->queries, sizeof(float), (size_t)d->nq * d->dim, f) ==
                 (size_t)d->nq * d->dim &&
             fread(d->truth, sizeof(uint32_t), (size_t)d->nq * d->k, f) ==
                 (size_t)d->nq * d->k;
    }
    fclose(f);
    if (!ok) {
        fprintf(stderr, "%s: not a benchmark data file (run `bench_ann gen`)\n", path);
        return -1;
    }
    return 0;
}

static inline void ann_unload(ann_data *d)
{
    free(d->base);
    free(d->queries);
    free(d->truth);
    memset(d, 0, sizeof(*d));
}

/* Fraction of the true top-ANN_K of query qi found among got[0..n). */
static inline double ann_recall_one(const ann_data *d, uint32_t qi, const uint64_t *got, size_t n)
{
    size_t hit = 0;
    const uint32_t *t = d->truth + (size_t)qi * d->k;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ANN_K; j++) {
            if (got[i] == t[j]) {
                hit++;
                break;
            }
        }
    }
    return (double)hit / ANN_K;
}

static inline void ann_print_build(const char *lib, double seconds, double rss_mb,
                                   double index_mb)
{
    printf("BUILD lib=%s seconds=%.2f rss_mb=%.1f index_mb=%.1f\n", lib, seconds, rss_mb,
           index_mb);
    fflush(stdout);
}

static inline void ann_print_query(const char *lib, int ef, double recall, double qps)
{
    printf("QUERY lib=%s ef=%d recall=%.4f qps=%.0f\n", lib, ef, recall, qps);
    fflush(stdout);
}

#endif /* STRATA_BENCH_ANN_COMMON_H */
