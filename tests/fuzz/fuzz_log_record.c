/*
 * fuzz_log_record.c - libFuzzer target for the two on-disk readers of
 * src/log: log records decoded back to back with aol_record_decode, as
 * recovery reads a segment (also skipping a segment header when the input
 * starts with one), and snapshot images through snap_parse.
 *
 * Every record that decodes is re-encoded and must come out byte-identical,
 * so the codec is checked for agreement, not only for not crashing. Prefixes
 * of a decodable record must decode as "need more" (0), never as a record:
 * that is the property that makes torn tails detectable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"

static void check_records(const uint8_t *data, size_t size)
{
    sbuf re;
    sbuf_init(&re, AOL_HEADER_BYTES + AOL_MAX_TENANT + AOL_MAX_PAYLOAD);
    size_t off = 0;
    while (off < size) {
        aol_record rec;
        long n = aol_record_decode(data + off, size - off, &rec);
        if (n <= 0) {
            break;
        }
        if ((size_t)n > size - off || rec.tenant_len == 0 || rec.tenant_len > AOL_MAX_TENANT ||
            rec.payload_len > AOL_MAX_PAYLOAD ||
            (size_t)n != AOL_HEADER_BYTES + rec.tenant_len + rec.payload_len) {
            abort();
        }
        /* a record with non-zero flags or reserved bytes re-encodes differently */
        if (rec.flags == 0 && memcmp(data + off + 28, "\0\0\0\0", 4) == 0) {
            sbuf_reset(&re);
            if (aol_record_encode(&re, rec.lsn, rec.ts_ms, rec.type, rec.tenant, rec.tenant_len,
                                  rec.payload, rec.payload_len) != STRATA_OK ||
                re.len != (size_t)n || memcmp(re.data, data + off, re.len) != 0) {
                abort();
            }
        }
        /* a cut inside the record is "need more" (bounded: the first 64 cuts) */
        for (size_t cut = 0; cut < (size_t)n && cut < 64; cut++) {
            if (aol_record_decode(data + off, cut, NULL) != 0) {
                abort();
            }
        }
        off += (size_t)n;
    }
    sbuf_free(&re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_records(data, size);
    if (size >= AOL_SEGMENT_HEADER_BYTES && memcmp(data, "STRATAL1", 8) == 0) {
        check_records(data + AOL_SEGMENT_HEADER_BYTES, size - AOL_SEGMENT_HEADER_BYTES);
    }

    char tier[17];
    uint64_t lsn = 0;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    if (snap_parse(data, size, tier, &lsn, &body, &body_len) == STRATA_OK) {
        if (body != data + 64 || body_len != size - 64 || strlen(tier) == 0 ||
            strlen(tier) > 16) {
            abort();
        }
    } else if (body != NULL || body_len != 0 || tier[0] != '\0') {
        abort();
    }
    return 0;
}
