/*
 * core.h - the internal header of src/core: allocation, errors, bounded
 * buffers, JSON writing, CRC32C, clocks, UTF-8 and id checks, a string-keyed
 * hash table, the binary field codec used by log records and snapshots, and
 * diagnostics logging. Every other folder may include this header.
 */
#ifndef STRATA_CORE_H
#define STRATA_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata/strata.h"

/* ---- allocation (alloc.c) --------------------------------------------- */
void *strata_malloc(size_t size);
void *strata_calloc(size_t n, size_t size);
void *strata_realloc(void *ptr, size_t size);
/* strata_free is public (strata.h). */
char *strata_strdup(const char *s);
char *strata_strndup(const char *s, size_t n);
void *strata_memdup(const void *p, size_t n);

/* Test hook: make the allocation after the next n succeed-calls fail
 * (n = 0: the very next one). -1 disables. Returns allocations since reset. */
void strata_alloc_fail_after(long n);
unsigned long strata_alloc_count(void);

/* ---- errors (error.c) ------------------------------------------------- */
/* Record rc and a formatted message for strata_errmsg(); returns rc, so a
 * caller can write `return strata_error(STRATA_EINVAL, "bad id %s", id);` */
int strata_error(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Translate errno into a STRATA_E* code, recording what failed. */
int strata_error_errno(const char *what, const char *path);
void strata_error_clear(void);

/* ---- bounded growable buffer (buf.c) ---------------------------------- */
/* A byte buffer that never grows past max, so hostile input cannot make us
 * allocate without bound. data is always NUL-terminated when cap > 0. */
typedef struct sbuf {
    char *data;     /* owned; NULL until first append */
    size_t len;     /* bytes used, excluding the NUL */
    size_t cap;     /* bytes allocated */
    size_t max;     /* hard limit on len */
} sbuf;

void sbuf_init(sbuf *b, size_t max);
void sbuf_free(sbuf *b);                        /* frees data, keeps max */
void sbuf_reset(sbuf *b);                       /* len = 0, keeps memory */
int sbuf_reserve(sbuf *b, size_t extra);        /* STRATA_OK, ENOMEM, ETOOBIG */
int sbuf_append(sbuf *b, const void *p, size_t n);
int sbuf_puts(sbuf *b, const char *s);
int sbuf_putc(sbuf *b, char c);
int sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the data to the caller (who frees it with strata_free); b is emptied. */
char *sbuf_take(sbuf *b, size_t *len_out);

/* ---- JSON writing (jsonw.c) ------------------------------------------- */
/* Append s as a quoted, escaped JSON string. Invalid UTF-8 is the caller's
 * problem: inputs are validated on the way in. */
int json_put_str(sbuf *b, const char *s, size_t n);
int json_put_cstr(sbuf *b, const char *s);
int json_put_i64(sbuf *b, int64_t v);
int json_put_u64(sbuf *b, uint64_t v);
/* Shortest round-trip representation; non-finite values are written as null. */
int json_put_double(sbuf *b, double v);

/* ---- checksums (crc32c.c) --------------------------------------------- */
/* CRC-32C (Castagnoli). Pass 0 to start; chain by passing the previous value. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* ---- clocks (clock.c) ------------------------------------------------- */
int64_t clock_now_ms(void);        /* wall clock, Unix milliseconds */
int64_t clock_now_s(void);         /* wall clock, Unix seconds */
uint64_t clock_mono_ns(void);      /* monotonic, for durations */
/* Test hook: when non-zero, clock_now_ms returns this (ms). */
void clock_set_fake_ms(int64_t ms);

/* ---- text checks (text.c) --------------------------------------------- */
bool utf8_valid(const char *s, size_t n);
/* Ids: 1..STRATA_ID_MAX bytes of [A-Za-z0-9_.:@-]. strata_id_valid is public. */
/* kv keys: 1..STRATA_KV_KEY_MAX bytes of valid UTF-8, no NUL, no '/'. */
bool kv_key_valid(const char *s, size_t n);

/* ---- string-keyed hash table (dict.c) --------------------------------- */
/* Keys are byte strings copied into the table; values are owned by the table
 * when the type's val_free is set. Not thread-safe: callers lock. */
typedef struct dict_type {
    void (*val_free)(void *val);    /* called on delete/overwrite/free; may be NULL */
} dict_type;

typedef struct dict dict;
typedef struct dict_iter {
    const dict *d;
    size_t bucket;
    void *entry;
} dict_iter;

dict *dict_create(const dict_type *type);      /* NULL on ENOMEM */
void dict_free(dict *d);
size_t dict_size(const dict *d);
void *dict_get(const dict *d, const void *key, size_t klen);
/* Insert or replace; on replace the old value is freed by val_free. */
int dict_set(dict *d, const void *key, size_t klen, void *val);
/* Remove; frees the value by val_free. Returns 1 if removed, 0 if absent. */
int dict_delete(dict *d, const void *key, size_t klen);
/* Remove without freeing the value; returns it (NULL if absent). */
void *dict_take(dict *d, const void *key, size_t klen);
void dict_iter_init(dict_iter *it, const dict *d);
/* Next entry or false at the end. Deleting the current entry is allowed. */
bool dict_next(dict_iter *it, const char **key, size_t *klen, void **val);
uint64_t hash_bytes(const void *p, size_t n);   /* 64-bit, seeded per process */

/* ---- binary field codec (wire.c) -------------------------------------- */
/* Little-endian fixed-width integers and u32-length-prefixed byte strings.
 * The reader is bounds-checked: any overrun sets err and returns zeros, so a
 * decoder can read every field and check err once at the end. */
int wire_put_u8(sbuf *b, uint8_t v);
int wire_put_u32(sbuf *b, uint32_t v);
int wire_put_u64(sbuf *b, uint64_t v);
int wire_put_i64(sbuf *b, int64_t v);
int wire_put_f64(sbuf *b, double v);
int wire_put_bytes(sbuf *b, const void *p, size_t n);   /* u32 len + bytes */
int wire_put_str(sbuf *b, const char *s);               /* NULL is written as "" */
void wire_le32(uint8_t out[4], uint32_t v);
void wire_le64(uint8_t out[8], uint64_t v);
uint32_t wire_rd32(const uint8_t in[4]);
uint64_t wire_rd64(const uint8_t in[8]);

typedef struct wire_reader {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool err;
} wire_reader;

void wire_reader_init(wire_reader *r, const void *p, size_t len);
uint8_t wire_get_u8(wire_reader *r);
uint32_t wire_get_u32(wire_reader *r);
uint64_t wire_get_u64(wire_reader *r);
int64_t wire_get_i64(wire_reader *r);
double wire_get_f64(wire_reader *r);
/* Borrowed pointer into the reader's buffer; *n receives the length. */
const char *wire_get_bytes(wire_reader *r, size_t *n);
/* A copy, NUL-terminated, allocated with strata_malloc (NULL on error). */
char *wire_get_strdup(wire_reader *r);
bool wire_done(const wire_reader *r);   /* no error and every byte consumed */

/* ---- diagnostics (slog.c) --------------------------------------------- */
typedef enum slog_level { SLOG_DEBUG = 0, SLOG_INFO = 1, SLOG_WARN = 2, SLOG_ERROR = 3 } slog_level;
void slog_set_level(slog_level level);
void slog(slog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- misc (misc.c) ---------------------------------------------------- */
/* Fill buf with n cryptographically random bytes (getrandom). */
int random_bytes(void *buf, size_t n);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void hex_encode(char *out, const void *p, size_t n);

#define STRATA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define STRATA_MIN(a, b) ((a) < (b) ? (a) : (b))
#define STRATA_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* STRATA_CORE_H */
