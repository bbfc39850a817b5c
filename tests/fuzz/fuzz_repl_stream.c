/*
 * fuzz_repl_stream.c - libFuzzer target for the replica's parser of a batch
 * received from a primary (ship_parse): records back to back, each checked
 * (length, CRC32C) and LSNs strictly increasing past `after`.
 *
 * Properties checked, not only "no crash": every record delivered re-encodes
 * to exactly the bytes it came from (when its flag and reserved bytes are 0),
 * LSNs delivered increase, and the delivered records tile a prefix of the
 * input; an accepted batch is the whole input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log/ship.h"

typedef struct walk {
    const uint8_t *base;
    size_t pos;                      /* end of the last record delivered */
    uint64_t prev;
    sbuf re;
} walk;

static int check_cb(void *ctx, const aol_record *rec)
{
    walk *w = ctx;
    size_t n = AOL_HEADER_BYTES + rec->tenant_len + rec->payload_len;
    if (rec->lsn <= w->prev || (const uint8_t *)rec->tenant != w->base + w->pos + 32) {
        abort();
    }
    if (rec->flags == 0 && memcmp(w->base + w->pos + 28, "\0\0\0\0", 4) == 0) {
        sbuf_reset(&w->re);
        if (aol_record_encode(&w->re, rec->lsn, rec->ts_ms, rec->type, rec->tenant,
                              rec->tenant_len, rec->payload, rec->payload_len) != STRATA_OK ||
            w->re.len != n || memcmp(w->re.data, w->base + w->pos, n) != 0) {
            abort();
        }
    }
    w->prev = rec->lsn;
    w->pos += n;
    return STRATA_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first 8 bytes choose `after` (the replica's last LSN). */
    uint64_t after = 0;
    if (size >= 8) {
        after = wire_rd64(data) % 1000;
        data += 8;
        size -= 8;
    }
    walk w = {data, 0, after, {0}};
    sbuf_init(&w.re, AOL_HEADER_BYTES + AOL_MAX_TENANT + AOL_MAX_PAYLOAD);
    int rc = ship_parse(data, size, after, check_cb, &w);
    if (rc == STRATA_OK && w.pos != size) {
        abort();
    }
    if (rc != STRATA_OK && rc != STRATA_EPROTO) {
        abort();
    }
    sbuf_free(&w.re);
    return 0;
}
