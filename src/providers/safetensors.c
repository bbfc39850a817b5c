/*
 * safetensors.c - the safetensors reader (format table in safetensors.h).
 *
 * The whole file is mapped read-only (or a caller's buffer borrowed), the
 * JSON header is parsed with jansson (duplicate keys rejected), and each
 * tensor entry is validated before anything is handed out:
 *
 *   - the header length fits in the file and under ST_HEADER_MAX;
 *   - dtype is a string, shape an array of at most ST_NDIM_MAX non-negative
 *     integers, data_offsets two non-negative integers begin <= end;
 *   - end <= data region size (file size - 8 - N);
 *   - product(shape) * sizeof(dtype) == end - begin, with every multiply
 *     checked for overflow (unknown dtypes: bounds only);
 *   - no two tensors' byte ranges overlap (sorted sweep, O(n log n)).
 *
 * Layout of a handle:
 *
 *   safetensors { base, len (mapping), data (= base + 8 + N), tensors[n],
 *                 by_name: dict name -> &tensors[i] }
 *
 * Tensor names are copied out of the JSON (jansson frees its tree before
 * open returns). A little-endian host is assumed, as the format is
 * little-endian; open refuses to run on anything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "providers/safetensors.h"

struct safetensors {
    const uint8_t *base;    /* file mapping or borrowed buffer */
    size_t len;             /* bytes at base */
    bool mapped;            /* base came from mmap: munmap on close */
    const uint8_t *data;    /* start of the data region */
    uint64_t data_len;      /* bytes in the data region */
    st_tensor *tensors;     /* n_tensors, header order; names owned */
    size_t n_tensors;
    dict *by_name;          /* name -> st_tensor * (not owned) */
};

static const struct {
    const char *name;
    st_dtype dtype;
    uint32_t size;          /* bytes per element */
} st_dtypes[] = {
    {"F32", ST_DTYPE_F32, 4},   {"F16", ST_DTYPE_F16, 2},   {"BF16", ST_DTYPE_BF16, 2},
    {"F64", ST_DTYPE_F64, 8},   {"I64", ST_DTYPE_I64, 8},   {"I32", ST_DTYPE_I32, 4},
    {"I16", ST_DTYPE_I16, 2},   {"I8", ST_DTYPE_I8, 1},     {"U8", ST_DTYPE_U8, 1},
    {"BOOL", ST_DTYPE_BOOL, 1},
};

/* Element size of a dtype string, 0 for one we do not know. */
static uint32_t st_dtype_parse(const char *s, st_dtype *out)
{
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++) {
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = st_dtypes[i].dtype;
            return st_dtypes[i].size;
        }
    }
    *out = ST_DTYPE_OTHER;
    return 0;
}

/* A JSON integer in 0..INT64_MAX into *out; false otherwise. */
static bool st_json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Validate one header entry and fill t (name not set here). Returns
 * STRATA_OK or STRATA_ECORRUPT with a message naming the tensor. */
static int st_parse_entry(const safetensors *st, const char *name, const json_t *v,
                          st_tensor *t)
{
    if (!json_is_object(v)) {
        return strata_error(STRATA_ECORRUPT, "safetensors: %.64s: entry is not an object", name);
    }
    const json_t *jdtype = json_object_get(v, "dtype");
    const json_t *jshape = json_object_get(v, "shape");
    const json_t *joffs = json_object_get(v, "data_offsets");
    if (!json_is_string(jdtype) || !json_is_array(jshape) || !json_is_array(joffs)) {
        return strata_error(STRATA_ECORRUPT,
                            "safetensors: %.64s: needs dtype, shape and data_offsets", name);
    }
    uint32_t esize = st_dtype_parse(json_string_value(jdtype), &t->dtype);

    size_t ndim = json_array_size(jshape);
    if (ndim > ST_NDIM_MAX) {
        return strata_error(STRATA_ECORRUPT, "safetensors: %.64s: %zu dimensions (max %u)",
                            name, ndim, ST_NDIM_MAX);
    }
    t->ndim = (uint32_t)ndim;
    uint64_t n = 1;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!st_json_u64(json_array_get(jshape, i), &d)) {
            return strata_error(STRATA_ECORRUPT, "safetensors: %.64s: bad shape", name);
        }
        t->shape[i] = d;
        if (__builtin_mul_overflow(n, d, &n)) {
            return strata_error(STRATA_ECORRUPT, "safetensors: %.64s: shape overflows", name);
        }
    }
    t->n_elems = n;

    uint64_t begin;
    uint64_t end;
    if (json_array_size(joffs) != 2 || !st_json_u64(json_array_get(joffs, 0), &begin) ||
        !st_json_u64(json_array_get(joffs, 1), &end) || begin > end) {
        return strata_error(STRATA_ECORRUPT, "safetensors: %.64s: bad data_offsets", name);
    }
    if (end > st->data_len) {
        return strata_error(STRATA_ECORRUPT,
                            "safetensors: %.64s: data ends at %llu, past the file (%llu)", name,
                            (unsigned long long)end, (unsigned long long)st->data_len);
    }
    if (esize != 0) {
        uint64_t bytes;
        if (__builtin_mul_overflow(n, (uint64_t)esize, &bytes) || bytes != end - begin) {
            return strata_error(STRATA_ECORRUPT,
                                "safetensors: %.64s: shape needs %llu elements of %u bytes, "
                                "data_offsets give %llu bytes", name, (unsigned long long)n,
                                esize, (unsigned long long)(end - begin));
        }
    }
    t->data = st->data + begin;
    t->n_bytes = end - begin;
    return STRATA_OK;
}

static int st_cmp_data(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a;
    const st_tensor *y = *(const st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* No two non-empty tensors share a byte. O(n log n). */
static int st_check_overlap(safetensors *st)
{
    if (st->n_tensors < 2) {
        return STRATA_OK;
    }
    const st_tensor **order = strata_malloc(st->n_tensors * sizeof(*order));
    if (order == NULL) {
        return strata_error(STRATA_ENOMEM, "safetensors: out of memory");
    }
    for (size_t i = 0; i < st->n_tensors; i++) {
        order[i] = &st->tensors[i];
    }
    qsort(order, st->n_tensors, sizeof(*order), st_cmp_data);
    int rc = STRATA_OK;
    const uint8_t *prev_end = st->data;
    for (size_t i = 0; i < st->n_tensors; i++) {
        if (order[i]->n_bytes == 0) {
            continue;
        }
        if (order[i]->data < prev_end) {
            rc = strata_error(STRATA_ECORRUPT, "safetensors: %.64s overlaps another tensor",
                              order[i]->name);
            break;
        }
        prev_end = order[i]->data + order[i]->n_bytes;
    }
    strata_free(order);
    return rc;
}

/* Parse and validate the header of st->base/len; fills the rest of st. */
static int st_parse(safetensors *st)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    return strata_error(STRATA_EUNSUPPORTED, "safetensors: big-endian hosts not supported");
#endif
    if (st->len < 8) {
        return strata_error(STRATA_ECORRUPT, "safetensors: file too short (%zu bytes)", st->len);
    }
    uint64_t hlen = wire_rd64(st->base);
    if (hlen > ST_HEADER_MAX || hlen > st->len - 8) {
        return strata_error(STRATA_ECORRUPT,
                            "safetensors: header length %llu does not fit the file (%zu bytes)",
                            (unsigned long long)hlen, st->len);
    }
    st->data = st->base + 8 + hlen;
    st->data_len = st->len - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)st->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES,
                              &jerr);
    if (root == NULL) {
        return strata_error(STRATA_ECORRUPT, "safetensors: bad JSON header: %.80s (offset %d)",
                            jerr.text, jerr.position);
    }
    int rc = STRATA_OK;
    if (!json_is_object(root)) {
        rc = strata_error(STRATA_ECORRUPT, "safetensors: header is not a JSON object");
        goto done;
    }
    size_t cap = json_object_size(root);
    if (cap > ST_TENSORS_MAX + 1) {
        rc = strata_error(STRATA_ECORRUPT, "safetensors: %zu tensors (max %u)", cap,
                          ST_TENSORS_MAX);
        goto done;
    }
    static const dict_type by_name_type = {NULL};
    st->tensors = strata_calloc(cap ? cap : 1, sizeof(st_tensor));
    st->by_name = dict_create(&by_name_type);
    if (st->tensors == NULL || st->by_name == NULL) {
        rc = strata_error(STRATA_ENOMEM, "safetensors: out of memory");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            continue;   /* free-form string map; nothing we need */
        }
        size_t klen = strlen(key);
        if (klen == 0 || klen > ST_NAME_MAX) {
            rc = strata_error(STRATA_ECORRUPT, "safetensors: tensor name of %zu bytes", klen);
            goto done;
        }
        st_tensor *t = &st->tensors[st->n_tensors];
        rc = st_parse_entry(st, key, val, t);
        if (rc != STRATA_OK) {
            goto done;
        }
        t->name = strata_strndup(key, klen);
        if (t->name == NULL) {
            rc = strata_error(STRATA_ENOMEM, "safetensors: out of memory");
            goto done;
        }
        st->n_tensors++;    /* now owned: freed by close even if dict_set fails */
        rc = dict_set(st->by_name, key, klen, t);
        if (rc != STRATA_OK) {
            rc = strata_error(rc, "safetensors: out of memory");
            goto done;
        }
    }
    rc = st_check_overlap(st);
done:
    json_decref(root);
    return rc;
}

/* Shared tail of both opens: parse, or undo. */
static int st_finish_open(safetensors *st, safetensors **out)
{
    int rc = st_parse(st);
    if (rc != STRATA_OK) {
        safetensors_close(st);
        return rc;
    }
    *out = st;
    return STRATA_OK;
}

int safetensors_open_mem(const void *data, size_t len, safetensors **out)
{
    *out = NULL;
    if (data == NULL && len > 0) {
        return strata_error(STRATA_EINVAL, "safetensors: NULL buffer");
    }
    safetensors *st = strata_calloc(1, sizeof(*st));
    if (st == NULL) {
        return strata_error(STRATA_ENOMEM, "safetensors: out of memory");
    }
    st->base = data;
    st->len = len;
    return st_finish_open(st, out);
}

int safetensors_open(const char *path, safetensors **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return strata_error_errno("open", path);
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int rc = strata_error_errno("fstat", path);
        close(fd);
        return rc;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
        close(fd);
        return strata_error(STRATA_ECORRUPT, "safetensors: %s: not a regular file of >= 8 bytes",
                            path);
    }
    size_t len = (size_t)sb.st_size;
    void *base = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  /* the mapping keeps the file */
    if (base == MAP_FAILED) {
        return strata_error_errno("mmap", path);
    }
    safetensors *st = strata_calloc(1, sizeof(*st));
    if (st == NULL) {
        munmap(base, len);
        return strata_error(STRATA_ENOMEM, "safetensors: out of memory");
    }
    st->base = base;
    st->len = len;
    st->mapped = true;
    return st_finish_open(st, out);
}

void safetensors_close(safetensors *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->n_tensors; i++) {
        strata_free((void *)st->tensors[i].name);
    }
    strata_free(st->tensors);
    dict_free(st->by_name);
    if (st->mapped) {
        munmap((void *)st->base, st->len);
    }
    strata_free(st);
}

size_t safetensors_count(const safetensors *st)
{
    return st->n_tensors;
}

const st_tensor *safetensors_at(const safetensors *st, size_t i)
{
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const st_tensor *safetensors_find(const safetensors *st, const char *name)
{
    return dict_get(st->by_name, name, strlen(name));
}

int safetensors_f32(const safetensors *st, const char *name, uint32_t ndim,
                    const uint64_t *shape, const float **out)
{
    *out = NULL;
    const st_tensor *t = safetensors_find(st, name);
    if (t == NULL) {
        return strata_error(STRATA_ENOTFOUND, "safetensors: no tensor %.128s", name);
    }
    if (t->dtype != ST_DTYPE_F32) {
        return strata_error(STRATA_ECORRUPT, "safetensors: %.128s is not F32", name);
    }
    bool same = t->ndim == ndim;
    for (uint32_t i = 0; same && i < ndim; i++) {
        same = t->shape[i] == shape[i];
    }
    if (!same) {
        char got[128];
        size_t off = 0;
        for (uint32_t i = 0; i < t->ndim && off < sizeof(got) - 24; i++) {
            off += (size_t)snprintf(got + off, sizeof(got) - off, "%s%llu", i ? "x" : "",
                                    (unsigned long long)t->shape[i]);
        }
        got[off] = '\0';
        return strata_error(STRATA_ECORRUPT, "safetensors: %.128s has shape [%s], expected "
                            "%u dimensions starting %llu", name, got, ndim,
                            ndim ? (unsigned long long)shape[0] : 0ull);
    }
    if (((uintptr_t)t->data & 3u) != 0) {
        return strata_error(STRATA_ECORRUPT, "safetensors: %.128s is not 4-byte aligned", name);
    }
    *out = (const float *)(const void *)t->data;
    return STRATA_OK;
}
