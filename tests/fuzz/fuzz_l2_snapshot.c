/*
 * fuzz_l2_snapshot.c - libFuzzer target for the L2 snapshot loader (payloads,
 * intern tables and the embedded HNSW image): any input must load cleanly or
 * be refused with an error, never crash or leak; a loaded store must write a
 * snapshot that loads again.
 */
#include <stdlib.h>
#include <string.h>

#include "l2/l2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) {
        return 0;
    }
    l2_mem_options o;
    l2_mem_options_init(&o, 8);
    l2_store *s = NULL;
    if (l2_mem_open(&o, &s) != STRATA_OK) {
        return 0;
    }
    /* An exact-size heap copy, so ASan sees any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL) {
        s->ops->close(s);
        return 0;
    }
    memcpy(copy, data, size);
    if (s->ops->snapshot_load(s, copy, size) == STRATA_OK) {
        sbuf out;
        sbuf_init(&out, 64u << 20);
        if (s->ops->snapshot_write(s, &out) == STRATA_OK) {
            l2_store *t = NULL;
            if (l2_mem_open(&o, &t) == STRATA_OK) {
                if (t->ops->snapshot_load(t, out.data, out.len) != STRATA_OK) {
                    abort(); /* what we wrote must load */
                }
                t->ops->close(t);
            }
        }
        sbuf_free(&out);
    }
    free(copy);
    s->ops->close(s);
    return 0;
}
