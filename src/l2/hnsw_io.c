/*
 * hnsw_io.c - the HNSW index as a byte image, for snapshots.
 *
 * The image holds the whole graph, tombstones included, so a loaded index
 * answers every search exactly as the saved one did. It is written to and
 * read from memory; the snapshot code decides where the bytes go. All
 * integers are little-endian; floats are IEEE-754 binary32 bit patterns.
 *
 * Header (48 bytes):
 *   off  size  field
 *     0     8  magic "STRHNSW1"
 *     8     4  format version, 1
 *    12     4  dim               1..HNSW_DIM_MAX
 *    16     4  M                 HNSW_M_MIN..HNSW_M_MAX
 *    20     4  ef_construction   1..HNSW_EF_MAX
 *    24     4  n_slots           slot records that follow
 *    28     4  n_live            slots not tombstoned
 *    32     4  entry             entry slot, 0xFFFFFFFF when n_live == 0
 *    36     4  max_level         level of the entry slot, 0..HNSW_LEVEL_MAX
 *    40     8  rng               level generator state (future inserts)
 *
 * Then n_slots slot records, in slot order (slot ids are positions):
 *   off  size    field
 *     0     8    label
 *     8     4    tenant
 *    12     4    user
 *    16     4    importance (float, finite)
 *    20     1    type, 0..HNSW_TYPE_MAX
 *    21     1    flags: bit 0 = tombstone; other bits 0
 *    22     1    level L, 0..HNSW_LEVEL_MAX
 *    23     1    reserved, 0
 *    24  4*dim   vector (unit length within 1e-3)
 *    then L+1 link lists, levels 0..L, each:
 *           4    count c (<= 2*M on level 0, <= M above)
 *         4*c    slot ids (< n_slots, not the slot itself, on a level <= the
 *                target's level)
 *
 * Trailer (4 bytes): CRC-32C of every byte before it.
 *
 * Validation: the CRC first; then every field before it is used. n_slots is
 * bounded by the bytes present (each record takes at least 28 + 4*dim) before
 * anything is allocated, so the memory a hostile image can make us allocate
 * is a small multiple of its own size. Any violation is STRATA_ECORRUPT.
 * Tombstones are rebuilt onto the free stack in ascending order.
 */
#include <string.h>

#include "l2/hnsw.h"

#define IMAGE_MAGIC "STRHNSW1"
#define IMAGE_VERSION 1u
#define IMAGE_HEADER_BYTES 48u
#define IMAGE_TRAILER_BYTES 4u
#define SLOT_FIXED_BYTES 24u
#define SLOT_FLAG_DELETED 0x01u

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* Bytes of the largest slot record for these parameters. */
static size_t slot_max_bytes(uint32_t dim, uint32_t M)
{
    return SLOT_FIXED_BYTES + 4 * (size_t)dim + 4 * (1 + 2 * (size_t)M) +
           (size_t)HNSW_LEVEL_MAX * 4 * (1 + (size_t)M);
}

int hnsw_serialize(hnsw *idx, sbuf *out)
{
    if (idx == NULL || out == NULL) {
        return strata_error(STRATA_EINVAL, "hnsw_serialize: NULL argument");
    }
    hnsw_read_lock(idx);
    hnsw_image img;
    hnsw_image_get(idx, &img);
    size_t start = out->len;
    uint8_t *rec = strata_malloc(slot_max_bytes(img.dim, img.M));
    int rc = STRATA_OK;
    if (rec == NULL) {
        rc = strata_error(STRATA_ENOMEM, "hnsw_serialize: out of memory");
        goto done;
    }

    uint8_t hdr[IMAGE_HEADER_BYTES];
    memcpy(hdr, IMAGE_MAGIC, 8);
    wire_le32(hdr + 8, IMAGE_VERSION);
    wire_le32(hdr + 12, img.dim);
    wire_le32(hdr + 16, img.M);
    wire_le32(hdr + 20, img.ef_construction);
    wire_le32(hdr + 24, img.n_slots);
    wire_le32(hdr + 28, img.n_live);
    wire_le32(hdr + 32, img.entry);
    wire_le32(hdr + 36, img.max_level);
    wire_le64(hdr + 40, img.rng);
    rc = sbuf_append(out, hdr, sizeof(hdr));

    for (uint32_t s = 0; s < img.n_slots && rc == STRATA_OK; s++) {
        hnsw_slot v;
        hnsw_slot_get(idx, s, &v);
        wire_le64(rec, v.label);
        wire_le32(rec + 8, v.attrs.tenant);
        wire_le32(rec + 12, v.attrs.user);
        wire_le32(rec + 16, float_bits(v.attrs.importance));
        rec[20] = v.attrs.type;
        rec[21] = v.deleted ? SLOT_FLAG_DELETED : 0;
        rec[22] = (uint8_t)v.level;
        rec[23] = 0;
        size_t n = SLOT_FIXED_BYTES;
        for (uint32_t i = 0; i < img.dim; i++) {
            wire_le32(rec + n, float_bits(v.vec[i]));
            n += 4;
        }
        for (uint32_t l = 0; l <= v.level; l++) {
            wire_le32(rec + n, v.n_links[l]);
            n += 4;
            for (uint32_t j = 0; j < v.n_links[l]; j++) {
                wire_le32(rec + n, v.links[l][j]);
                n += 4;
            }
        }
        rc = sbuf_append(out, rec, n);
    }
    if (rc == STRATA_OK) {
        uint8_t crc[IMAGE_TRAILER_BYTES];
        wire_le32(crc, crc32c(0, out->data + start, out->len - start));
        rc = sbuf_append(out, crc, sizeof(crc));
    }

done:
    strata_free(rec);
    hnsw_read_unlock(idx);
    return rc;
}

/* Read n little-endian u32s into out; false (and r->err) on overrun. */
static bool read_u32s(wire_reader *r, uint32_t *out, size_t n)
{
    if (r->err || r->len - r->off < n * 4) {
        r->err = true;
        return false;
    }
    const uint8_t *p = r->p + r->off;
    for (size_t i = 0; i < n; i++) {
        out[i] = wire_rd32(p + 4 * i);
    }
    r->off += n * 4;
    return true;
}

static int corrupt(const char *what)
{
    return strata_error(STRATA_ECORRUPT, "hnsw image: %s", what);
}

/* Decode the slot records into idx (from hnsw_load_begin). */
static int load_slots(hnsw *idx, wire_reader *r, const hnsw_image *img)
{
    uint32_t max_links = 2 * img->M;
    float *vec = strata_malloc((size_t)img->dim * sizeof(float));
    uint32_t *ids = strata_malloc((size_t)max_links * sizeof(uint32_t));
    int rc = STRATA_OK;
    if (vec == NULL || ids == NULL) {
        rc = strata_error(STRATA_ENOMEM, "hnsw_deserialize: out of memory");
        goto done;
    }
    for (uint32_t s = 0; s < img->n_slots; s++) {
        uint64_t label = wire_get_u64(r);
        hnsw_attrs attrs;
        attrs.tenant = wire_get_u32(r);
        attrs.user = wire_get_u32(r);
        attrs.importance = bits_float(wire_get_u32(r));
        attrs.type = wire_get_u8(r);
        uint8_t flags = wire_get_u8(r);
        uint8_t level = wire_get_u8(r);
        uint8_t reserved = wire_get_u8(r);
        if (r->err || (flags & ~SLOT_FLAG_DELETED) != 0 || reserved != 0 ||
            level > HNSW_LEVEL_MAX) {
            rc = corrupt("bad slot header");
            goto done;
        }
        /* The vector's bits go through a u32 array of the same size. */
        uint32_t *bits = (uint32_t *)(void *)vec;
        if (!read_u32s(r, bits, img->dim)) {
            rc = corrupt("truncated vector");
            goto done;
        }
        for (uint32_t i = 0; i < img->dim; i++) {
            vec[i] = bits_float(bits[i]);
        }
        rc = hnsw_load_slot(idx, s, label, &attrs, (flags & SLOT_FLAG_DELETED) != 0, level,
                            vec);
        if (rc != STRATA_OK) {
            goto done;
        }
        for (uint32_t l = 0; l <= level; l++) {
            uint32_t n = wire_get_u32(r);
            if (r->err || n > (l == 0 ? max_links : img->M)) {
                rc = corrupt("bad link count");
                goto done;
            }
            if (!read_u32s(r, ids, n)) {
                rc = corrupt("truncated links");
                goto done;
            }
            rc = hnsw_load_links(idx, s, l, ids, n);
            if (rc != STRATA_OK) {
                goto done;
            }
        }
    }
done:
    strata_free(vec);
    strata_free(ids);
    return rc;
}

int hnsw_deserialize(const void *buf, size_t len, hnsw **out)
{
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "hnsw_deserialize: out is NULL");
    }
    *out = NULL;
    if (buf == NULL || len < IMAGE_HEADER_BYTES + IMAGE_TRAILER_BYTES) {
        return corrupt("too short");
    }
    const uint8_t *p = buf;
    size_t body = len - IMAGE_TRAILER_BYTES;
    if (crc32c(0, p, body) != wire_rd32(p + body)) {
        return corrupt("checksum mismatch");
    }
    if (memcmp(p, IMAGE_MAGIC, 8) != 0) {
        return corrupt("bad magic");
    }
    wire_reader r;
    wire_reader_init(&r, p + 8, body - 8);
    uint32_t version = wire_get_u32(&r);
    hnsw_image img;
    img.dim = wire_get_u32(&r);
    img.M = wire_get_u32(&r);
    img.ef_construction = wire_get_u32(&r);
    img.n_slots = wire_get_u32(&r);
    img.n_live = wire_get_u32(&r);
    img.entry = wire_get_u32(&r);
    img.max_level = wire_get_u32(&r);
    img.rng = wire_get_u64(&r);
    if (r.err || version != IMAGE_VERSION) {
        return corrupt("unsupported version");
    }
    if (img.dim == 0 || img.dim > HNSW_DIM_MAX || img.M < HNSW_M_MIN || img.M > HNSW_M_MAX) {
        return corrupt("parameters out of range");
    }
    /* Bound the slot count by the bytes present before allocating. */
    size_t min_slot = SLOT_FIXED_BYTES + 4 * (size_t)img.dim + 4;
    if (img.n_slots > (body - IMAGE_HEADER_BYTES) / min_slot) {
        return corrupt("slot count exceeds the image");
    }

    hnsw *idx = NULL;
    int rc = hnsw_load_begin(&img, &idx);
    if (rc == STRATA_OK) {
        rc = load_slots(idx, &r, &img);
    }
    if (rc == STRATA_OK && !wire_done(&r)) {
        rc = corrupt("trailing bytes");
    }
    if (rc == STRATA_OK) {
        rc = hnsw_load_end(idx);
    }
    if (rc != STRATA_OK) {
        hnsw_free(idx);
        return rc;
    }
    *out = idx;
    return STRATA_OK;
}
