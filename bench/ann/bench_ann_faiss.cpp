/*
 * bench_ann_faiss.cpp - the FAISS reference for the ANN benchmark.
 *
 *   OMP_NUM_THREADS=1 bench_ann_faiss FILE
 *
 * Same data, parameters and sweep as bench_ann run (ann_common.h):
 * IndexHNSWFlat with METRIC_INNER_PRODUCT on the unit vectors (cosine),
 * M=16, efConstruction=200, one thread, one query per search() call (the
 * latency-bound way a memory server queries; batching would amortise
 * FAISS's per-call overhead). FAISS has no cheap size accounting, so
 * index_mb is the resident-memory growth, like rss_mb.
 */
#include <faiss/IndexHNSW.h>
#include <omp.h>

#include <vector>

#include "ann_common.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_ann_faiss FILE\n");
        return 2;
    }
    omp_set_num_threads(1);
    ann_data d;
    if (ann_load(argv[1], &d) != 0) {
        return 1;
    }
    printf("faiss: %u x %u\n", d.n, d.dim);
    double rss0 = ann_rss_mb();
    double t0 = ann_now();
    faiss::IndexHNSWFlat index((int)d.dim, ANN_M, faiss::METRIC_INNER_PRODUCT);
    index.hnsw.efConstruction = ANN_EF_CONSTRUCTION;
    index.add((faiss::Index::idx_t)d.n, d.base);
    double build_s = ann_now() - t0;
    double rss = ann_rss_mb() - rss0;
    ann_print_build("faiss", build_s, rss, rss);

    std::vector<float> dist(ANN_K);
    std::vector<faiss::Index::idx_t> ids(ANN_K);
    for (int e = 0; e < ANN_N_EFS; e++) {
        int ef = ann_efs[e];
        index.hnsw.efSearch = ef;
        double recall = 0.0;
        uint64_t got[ANN_K];
        for (uint32_t qi = 0; qi < d.nq; qi++) {
            index.search(1, d.queries + (size_t)qi * d.dim, ANN_K, dist.data(), ids.data());
            size_t n = 0;
            for (int i = 0; i < ANN_K; i++) {
                if (ids[i] >= 0) {
                    got[n++] = (uint64_t)ids[i];
                }
            }
            recall += ann_recall_one(&d, qi, got, n);
        }
        double t1 = ann_now();
        size_t done = 0;
        while (ann_now() - t1 < ANN_MIN_SECONDS) {
            for (uint32_t qi = 0; qi < d.nq; qi++) {
                index.search(1, d.queries + (size_t)qi * d.dim, ANN_K, dist.data(), ids.data());
            }
            done += d.nq;
        }
        ann_print_query("faiss", ef, recall / d.nq, (double)done / (ann_now() - t1));
    }
    ann_unload(&d);
    return 0;
}
