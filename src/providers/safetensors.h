/*
 * safetensors.h - a bounds-checked reader for the safetensors weight format
 * (Hugging Face), used to load the neural embedder's weights.
 *
 *   offset     size  meaning
 *   0          8     N: header length in bytes, u64 little-endian
 *   8          N     JSON object, UTF-8, possibly padded with spaces:
 *                      "name": {"dtype": "F32", "shape": [d0, d1, ...],
 *                               "data_offsets": [begin, end]}, ...
 *                      "__metadata__": {"k": "v", ...}   (optional, ignored)
 *   8 + N      ...   the data region; a tensor's bytes are data[begin, end)
 *
 * Every offset, size and shape product is checked against the file size
 * before the handle is returned, so a tensor handed out is always entirely
 * inside the mapping. Only F32 tensors can be read as floats; other dtypes
 * are parsed and validated (their size must match) but not converted.
 *
 * Thread-safety: a handle is read-only after open; any thread may look up
 * tensors concurrently. Pointers into the data stay valid until close.
 */
#ifndef STRATA_PROVIDERS_SAFETENSORS_H
#define STRATA_PROVIDERS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_HEADER_MAX (100u * 1024u * 1024u)   /* bytes; the format's own limit */
#define ST_TENSORS_MAX 65536u                  /* tensors per file */
#define ST_NDIM_MAX 8u                         /* dimensions per tensor */
#define ST_NAME_MAX 1024u                      /* bytes of a tensor name */

typedef enum st_dtype {
    ST_DTYPE_OTHER = 0,     /* any other dtype string: bounds checked, size not */
    ST_DTYPE_F32,
    ST_DTYPE_F16,
    ST_DTYPE_BF16,
    ST_DTYPE_F64,
    ST_DTYPE_I64,
    ST_DTYPE_I32,
    ST_DTYPE_I16,
    ST_DTYPE_I8,
    ST_DTYPE_U8,
    ST_DTYPE_BOOL,
} st_dtype;

typedef struct st_tensor {
    const char *name;               /* NUL-terminated, owned by the handle */
    st_dtype dtype;
    uint32_t ndim;                  /* 0..ST_NDIM_MAX; 0 is a scalar */
    uint64_t shape[ST_NDIM_MAX];    /* elements per dimension */
    uint64_t n_elems;               /* product of shape (1 for a scalar) */
    const uint8_t *data;            /* into the mapping; n_bytes long */
    uint64_t n_bytes;               /* end - begin */
} st_tensor;

typedef struct safetensors safetensors;

/* Map the file at path read-only and validate it. STRATA_OK, STRATA_EIO (with
 * errno detail), STRATA_ECORRUPT (bad format, with the reason), STRATA_ENOMEM.
 * *out is NULL on failure. Free with safetensors_close. */
int safetensors_open(const char *path, safetensors **out);

/* The same over a caller's buffer, which is borrowed and must outlive the
 * handle (used by the fuzzer and tests). */
int safetensors_open_mem(const void *data, size_t len, safetensors **out);

/* Unmap and free. NULL-safe. */
void safetensors_close(safetensors *st);

/* Number of tensors (excluding __metadata__), and the i-th in file order of
 * the JSON header. NULL when i is out of range. */
size_t safetensors_count(const safetensors *st);
const st_tensor *safetensors_at(const safetensors *st, size_t i);

/* The tensor named name, or NULL. */
const st_tensor *safetensors_find(const safetensors *st, const char *name);

/* The F32 tensor named name with exactly the given shape (ndim dimensions).
 * *out points into the mapping (4-byte aligned, read-only). STRATA_ENOTFOUND
 * when absent, STRATA_ECORRUPT on a wrong dtype, shape or alignment, each
 * with a message naming the tensor. */
int safetensors_f32(const safetensors *st, const char *name, uint32_t ndim,
                    const uint64_t *shape, const float **out);

#endif /* STRATA_PROVIDERS_SAFETENSORS_H */
