/*
 * bench_ann_hnswlib.cpp - the hnswlib reference for the ANN benchmark.
 *
 *   bench_ann_hnswlib FILE
 *
 * Same data, parameters and sweep as bench_ann run (ann_common.h):
 * InnerProductSpace on the unit vectors (cosine), M=16, ef_construction=200,
 * one thread, one query per searchKnn call. index_mb is hnswlib's own
 * accounting: the level-0 block plus the upper-level link lists.
 */
#include <hnswlib/hnswlib.h>

#include <vector>

#include "ann_common.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_ann_hnswlib FILE\n");
        return 2;
    }
    ann_data d;
    if (ann_load(argv[1], &d) != 0) {
        return 1;
    }
    printf("hnswlib: %u x %u\n", d.n, d.dim);
    double rss0 = ann_rss_mb();
    double t0 = ann_now();
    hnswlib::InnerProductSpace space(d.dim);
    auto *alg = new hnswlib::HierarchicalNSW<float>(&space, d.n, ANN_M, ANN_EF_CONSTRUCTION, 42);
    for (uint32_t i = 0; i < d.n; i++) {
        alg->addPoint(d.base + (size_t)i * d.dim, i);
    }
    double build_s = ann_now() - t0;
    double bytes = (double)alg->max_elements_ * (double)alg->size_data_per_element_;
    for (size_t i = 0; i < alg->cur_element_count; i++) {
        if (alg->element_levels_[i] > 0) {
            bytes += (double)alg->size_links_per_element_ * alg->element_levels_[i];
        }
    }
    bytes += (double)alg->max_elements_ * (sizeof(void *) + sizeof(int)); /* linkLists_, levels */
    ann_print_build("hnswlib", build_s, ann_rss_mb() - rss0, bytes / (1 << 20));

    for (int e = 0; e < ANN_N_EFS; e++) {
        int ef = ann_efs[e];
        alg->setEf(ef);
        double recall = 0.0;
        uint64_t got[ANN_K];
        for (uint32_t qi = 0; qi < d.nq; qi++) {
            auto r = alg->searchKnn(d.queries + (size_t)qi * d.dim, ANN_K);
            size_t n = 0;
            while (!r.empty()) {
                got[n++] = r.top().second;
                r.pop();
            }
            recall += ann_recall_one(&d, qi, got, n);
        }
        double t1 = ann_now();
        size_t done = 0;
        size_t sink = 0;
        while (ann_now() - t1 < ANN_MIN_SECONDS) {
            for (uint32_t qi = 0; qi < d.nq; qi++) {
                auto r = alg->searchKnn(d.queries + (size_t)qi * d.dim, ANN_K);
                sink += r.size();
            }
            done += d.nq;
        }
        if (sink == 0) {
            return 1;
        }
        ann_print_query("hnswlib", ef, recall / d.nq, (double)done / (ann_now() - t1));
    }
    delete alg;
    ann_unload(&d);
    return 0;
}
