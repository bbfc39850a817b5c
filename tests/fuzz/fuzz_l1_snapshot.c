/*
 * fuzz_l1_snapshot.c - libFuzzer target for the embedded L1 backend's
 * snapshot loader (l1_mem.c, snapshot_load). The input is a snapshot body.
 * Properties checked:
 *   - hostile input never crashes, leaks or reads out of bounds (sanitizers);
 *   - a rejected image gives STRATA_ECORRUPT (or ENOMEM) and an empty store;
 *   - an accepted image writes back to a canonical image W1 that loads into a
 *     fresh store and writes back to exactly W1 again, with equal stats.
 * buffer_max is small so that images with long buffers exercise trimming.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l1/l1.h"

#define FUZZ_MAX_INPUT (1u << 20)   /* past this, nothing new is learnt, only time */
#define FUZZ_SNAP_MAX (64u << 20)

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_l1_snapshot: %s (%s)\n", what, strata_errmsg());
    abort();
}

static void stats_of(l1_store *s, l1_stats *st)
{
    s->ops->stats(s, st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) {
        return 0;
    }
    l1_mem_options o = {.buffer_max = 3};
    l1_store *a = NULL;
    l1_store *b = NULL;
    sbuf w1;
    sbuf w2;
    sbuf_init(&w1, FUZZ_SNAP_MAX);
    sbuf_init(&w2, FUZZ_SNAP_MAX);
    if (l1_mem_open(&o, &a) != STRATA_OK || l1_mem_open(&o, &b) != STRATA_OK) {
        goto done;
    }
    l1_stats sa;
    l1_stats sb;
    int rc = a->ops->snapshot_load(a, data, size);
    if (rc != STRATA_OK) {
        stats_of(a, &sa);
        if (rc != STRATA_ECORRUPT && rc != STRATA_ENOMEM) {
            fuzz_fail("unexpected error code");
        }
        if (sa.sessions != 0 || sa.turns_buffered != 0 || sa.dirty_users != 0) {
            fuzz_fail("a rejected image left data behind");
        }
        goto done;
    }
    if (a->ops->snapshot_write(a, &w1) != STRATA_OK) {
        fuzz_fail("cannot write back a loaded image");
    }
    if (b->ops->snapshot_load(b, w1.data, w1.len) != STRATA_OK) {
        fuzz_fail("cannot load an image we wrote");
    }
    if (b->ops->snapshot_write(b, &w2) != STRATA_OK) {
        fuzz_fail("cannot write back the second image");
    }
    if (w1.len != w2.len || memcmp(w1.data, w2.data, w1.len) != 0) {
        fuzz_fail("round trip changed the image");
    }
    stats_of(a, &sa);
    stats_of(b, &sb);
    if (sa.sessions != sb.sessions || sa.turns_buffered != sb.turns_buffered ||
        sa.dirty_users != sb.dirty_users) {
        fuzz_fail("round trip changed the stats");
    }
done:
    sbuf_free(&w1);
    sbuf_free(&w2);
    if (a != NULL) {
        a->ops->close(a);
    }
    if (b != NULL) {
        b->ops->close(b);
    }
    return 0;
}
