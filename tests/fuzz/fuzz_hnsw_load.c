/*
 * fuzz_hnsw_load.c - libFuzzer target for the HNSW image loader
 * (hnsw_deserialize in src/l2/hnsw_io.c).
 *
 * Each input is tried twice: as is, which mostly exercises the checksum and
 * length checks, and with its trailing CRC-32C recomputed, so that mutations
 * reach the structural validation behind the checksum (counts, ids, levels,
 * floats, entry point, labels). An image that loads is searched (with and
 * without a filter), deleted from, inserted into and saved again, so a graph
 * that passed validation but could still misbehave shows up here. Inputs are
 * capped at 1 MiB: the loader allocates a small multiple of its input, and
 * the cap keeps the fuzzer hunting bugs rather than OOMs. Must never crash
 * or leak; run the corpus with tests/fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l2/hnsw.h"

#define FUZZ_MAX_INPUT (1u << 20)

static void exercise(hnsw *idx)
{
    uint32_t dim = hnsw_dim(idx);
    float *q = malloc(dim * sizeof(float));
    if (q == NULL) {
        return;
    }
    for (uint32_t i = 0; i < dim; i++) {
        q[i] = (float)((i % 7) + 1) * (i % 2 ? -1.0f : 1.0f);
    }
    hnsw_result res[8];
    size_t n = 0;
    (void)hnsw_search(idx, q, 8, 16, NULL, res, &n);
    hnsw_filter f;
    hnsw_filter_init(&f, 0);
    (void)hnsw_search(idx, q, 8, 16, &f, res, &n);
    f.has_user = true;
    (void)hnsw_search(idx, q, 8, 16, &f, res, &n);
    if (n > 0) {
        (void)hnsw_delete(idx, res[0].label);
    }
    hnsw_attrs a = {.tenant = 0, .user = 0, .type = 1, .importance = 0.5f};
    (void)hnsw_add(idx, 0x5eed, q, &a);
    (void)hnsw_search(idx, q, 8, 16, NULL, res, &n);
    sbuf out;
    sbuf_init(&out, 4u * FUZZ_MAX_INPUT);
    (void)hnsw_serialize(idx, &out);
    sbuf_free(&out);
    free(q);
}

static void load(const uint8_t *data, size_t size)
{
    hnsw *idx = NULL;
    if (hnsw_deserialize(data, size, &idx) == STRATA_OK) {
        exercise(idx);
    }
    hnsw_free(idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) {
        return 0;
    }
    load(data, size);
    if (size >= 8) {
        uint8_t *copy = malloc(size);
        if (copy == NULL) {
            return 0;
        }
        memcpy(copy, data, size);
        wire_le32(copy + size - 4, crc32c(0, copy, size - 4));
        load(copy, size);
        free(copy);
    }
    return 0;
}
