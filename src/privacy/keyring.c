/*
 * keyring.c - the data keys of encryption at rest, sealed in one file under
 * the master key (format in crypt.h).
 *
 * A new key is one sealed record appended and fdatasync'ed (O(1), whatever
 * the number of users: a million users must not mean a million rewrites of a
 * growing file). Removing keys (shredding a user) and a new master key
 * rewrite the whole file atomically: temporary file, fdatasync, rename,
 * directory fsync; so a crash leaves the old or the new keyring, and a
 * shredded key never comes back. A torn last record (a crash during an
 * append, before the key was ever used) is cut off at open.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log/log.h"
#include "privacy/crypt.h"

#define KEYRING_MAGIC "STRATAK2"
#define KEYRING_VERSION 2u
#define KEYRING_REC_MAX (1u << 30)
#define KEYRING_HEADER 24
#define KEYRING_MAX_KEYS (1u << 24)
#define KEYRING_MAX_BYTES (1u << 30)

typedef struct kr_entry {
    uint32_t id;
    char *scope;
    uint8_t key[CRYPT_KEY_BYTES];
} kr_entry;

struct keyring {
    pthread_mutex_t lock;
    char *path;                      /* NULL: in memory only (fuzzing) */
    uint8_t master[CRYPT_KEY_BYTES];
    uint32_t next_id;
    uint32_t n_records;              /* sealed records in the file (their AAD index) */
    uint64_t file_len;               /* bytes of valid records (appends go here) */
    kr_entry *v;
    size_t n;
    size_t cap;
};

static void master_check(const uint8_t master[CRYPT_KEY_BYTES], uint8_t out[8])
{
    uint8_t in[13 + CRYPT_KEY_BYTES];
    memcpy(in, "strata-master", 13);
    memcpy(in + 13, master, CRYPT_KEY_BYTES);
    uint8_t md[32];
    unsigned mdlen = 0;
    EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha256(), NULL);
    memcpy(out, md, 8);
    crypt_wipe(in, sizeof(in));
}

static void entries_free(keyring *kr)
{
    for (size_t i = 0; i < kr->n; i++) {
        strata_free(kr->v[i].scope);
        crypt_wipe(kr->v[i].key, CRYPT_KEY_BYTES);
    }
    strata_free(kr->v);
    kr->v = NULL;
    kr->n = 0;
    kr->cap = 0;
}

static int entry_push(keyring *kr, uint32_t id, const char *scope, size_t scope_len,
                      const uint8_t key[CRYPT_KEY_BYTES])
{
    if (kr->n == kr->cap) {
        size_t ncap = kr->cap ? kr->cap * 2 : 16;
        kr_entry *nv = strata_realloc(kr->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory in the keyring");
        }
        kr->v = nv;
        kr->cap = ncap;
    }
    char *s = strata_strndup(scope, scope_len);
    if (s == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory in the keyring");
    }
    kr->v[kr->n].id = id;
    kr->v[kr->n].scope = s;
    memcpy(kr->v[kr->n].key, key, CRYPT_KEY_BYTES);
    kr->n++;
    return STRATA_OK;
}

static keyring *keyring_new(void)
{
    keyring *kr = strata_calloc(1, sizeof(*kr));
    if (kr != NULL) {
        pthread_mutex_init(&kr->lock, NULL);
        kr->next_id = 1;
    }
    return kr;
}

void keyring_close(keyring *kr)
{
    if (kr == NULL) {
        return;
    }
    entries_free(kr);
    crypt_wipe(kr->master, sizeof(kr->master));
    strata_free(kr->path);
    pthread_mutex_destroy(&kr->lock);
    strata_free(kr);
}

static int body_parse(keyring *kr, const uint8_t *body, size_t len)
{
    wire_reader r;
    wire_reader_init(&r, body, len);
    uint32_t next_id = wire_get_u32(&r);
    uint32_t n = wire_get_u32(&r);
    if (r.err || n > KEYRING_MAX_KEYS || n > len / (4 + 4 + CRYPT_KEY_BYTES)) {
        return strata_error(STRATA_ECORRUPT, "keyring: bad key count");
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = wire_get_u32(&r);
        size_t slen = 0;
        const char *scope = wire_get_bytes(&r, &slen);
        if (r.err || r.len - r.off < CRYPT_KEY_BYTES || id == 0 || id >= next_id ||
            slen == 0 || slen > 512 || memchr(scope, '\0', slen) != NULL) {
            return strata_error(STRATA_ECORRUPT, "keyring: bad entry %u", i);
        }
        const uint8_t *key = (const uint8_t *)r.p + r.off;
        r.off += CRYPT_KEY_BYTES;
        for (size_t k = 0; k < kr->n; k++) {
            if (kr->v[k].id == id) {
                return strata_error(STRATA_ECORRUPT, "keyring: key id %u twice", id);
            }
        }
        int rc = entry_push(kr, id, scope, slen, key);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    if (!wire_done(&r)) {
        return strata_error(STRATA_ECORRUPT, "keyring: trailing bytes");
    }
    kr->next_id = next_id;
    return STRATA_OK;
}

/* An appended record: 'E' | u32 id | str scope | key. */
static int entry_parse(keyring *kr, const uint8_t *p, size_t len)
{
    wire_reader r;
    wire_reader_init(&r, p, len);
    uint32_t id = wire_get_u32(&r);
    size_t slen = 0;
    const char *scope = wire_get_bytes(&r, &slen);
    if (r.err || r.len - r.off != CRYPT_KEY_BYTES || id == 0 || id == UINT32_MAX || slen == 0 ||
        slen > 512 || memchr(scope, '\0', slen) != NULL) {
        return strata_error(STRATA_ECORRUPT, "keyring: bad key record");
    }
    for (size_t k = 0; k < kr->n; k++) {
        if (kr->v[k].id == id) {
            return strata_error(STRATA_ECORRUPT, "keyring: key id %u twice", id);
        }
    }
    int rc = entry_push(kr, id, scope, slen, (const uint8_t *)r.p + r.off);
    if (rc == STRATA_OK && id >= kr->next_id) {
        kr->next_id = id + 1;
    }
    return rc;
}

/* One record's plaintext: 'B' base (only first) or 'E' appended key. */
static int record_parse(keyring *kr, uint32_t index, const uint8_t *p, size_t len)
{
    if (len == 0 || (index == 0) != (p[0] == 'B') || (p[0] != 'B' && p[0] != 'E')) {
        return strata_error(STRATA_ECORRUPT, "keyring: record %u has the wrong kind", index);
    }
    return p[0] == 'B' ? body_parse(kr, p + 1, len - 1) : entry_parse(kr, p + 1, len - 1);
}

int keyring_from_body(const uint8_t *body, size_t len, keyring **out)
{
    *out = NULL;
    keyring *kr = keyring_new();
    if (kr == NULL) {
        return STRATA_ENOMEM;
    }
    /* The fuzz input is a sequence of records' plaintexts: u16 length each. */
    int rc = STRATA_OK;
    size_t off = 0;
    for (uint32_t i = 0; rc == STRATA_OK && off < len; i++) {
        size_t n = len - off >= 2 ? (size_t)body[off] | (size_t)body[off + 1] << 8 : 0;
        if (n == 0 || n > len - off - 2) {
            rc = strata_error(STRATA_ECORRUPT, "keyring: truncated record");
            break;
        }
        rc = record_parse(kr, i, body + off + 2, n);
        off += 2 + n;
    }
    if (rc != STRATA_OK) {
        keyring_close(kr);
        return rc;
    }
    *out = kr;
    return STRATA_OK;
}

static void file_header(const keyring *kr, uint8_t hdr[KEYRING_HEADER])
{
    memset(hdr, 0, KEYRING_HEADER);
    memcpy(hdr, KEYRING_MAGIC, 8);
    wire_le32(hdr + 8, KEYRING_VERSION);
    master_check(kr->master, hdr + 16);
}

/* Append record `index` (u32 length | sealed plaintext) to out; its AAD is the
 * file header and the index, so records cannot be reordered or moved between
 * keyrings unnoticed. */
static int record_seal(const keyring *kr, uint32_t index, const sbuf *plain, sbuf *out)
{
    uint8_t aad[KEYRING_HEADER + 4];
    file_header(kr, aad);
    wire_le32(aad + KEYRING_HEADER, index);
    size_t at = out->len;
    uint8_t len4[4] = {0};
    int rc = sbuf_append(out, len4, 4);
    rc = rc ? rc : crypt_seal(kr->master, aad, sizeof(aad), plain->data ? plain->data : "",
                              plain->len, out);
    if (rc == STRATA_OK) {
        wire_le32((uint8_t *)out->data + at, (uint32_t)(out->len - at - 4));
    }
    return rc;
}

static int entry_encode(sbuf *b, uint32_t id, const char *scope, const uint8_t *key)
{
    int rc = wire_put_u8(b, 'E');
    rc = rc ? rc : wire_put_u32(b, id);
    rc = rc ? rc : wire_put_str(b, scope);
    return rc ? rc : sbuf_append(b, key, CRYPT_KEY_BYTES);
}

static void plain_free(sbuf *b)
{
    if (b->data != NULL) {
        crypt_wipe(b->data, b->len);
    }
    sbuf_free(b);
}

/* Rewrite the whole file: header | record 0 = "B" + body (every key).
 * Caller holds the lock (or owns kr alone). */
static int keyring_save(keyring *kr)
{
    if (kr->path == NULL) {
        return STRATA_OK;
    }
    sbuf body;
    sbuf_init(&body, KEYRING_REC_MAX);
    int rc = wire_put_u8(&body, 'B');
    rc = rc ? rc : wire_put_u32(&body, kr->next_id);
    rc = rc ? rc : wire_put_u32(&body, (uint32_t)kr->n);
    for (size_t i = 0; rc == STRATA_OK && i < kr->n; i++) {
        rc = wire_put_u32(&body, kr->v[i].id);
        rc = rc ? rc : wire_put_str(&body, kr->v[i].scope);
        rc = rc ? rc : sbuf_append(&body, kr->v[i].key, CRYPT_KEY_BYTES);
    }
    uint8_t hdr[KEYRING_HEADER];
    file_header(kr, hdr);
    sbuf file;
    sbuf_init(&file, KEYRING_MAX_BYTES);
    rc = rc ? rc : sbuf_append(&file, hdr, sizeof(hdr));
    rc = rc ? rc : record_seal(kr, 0, &body, &file);
    plain_free(&body);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", kr->path);
    if (rc == STRATA_OK) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || log_write_all(fd, file.data, file.len) != 0 || log_fdatasync(fd) != 0) {
            rc = log_io_error("cannot write the keyring", tmp);
        }
        if (fd >= 0) {
            close(fd);
        }
        if (rc == STRATA_OK && rename(tmp, kr->path) != 0) {
            rc = log_io_error("cannot replace the keyring", kr->path);
        }
        if (rc != STRATA_OK) {
            unlink(tmp);
        }
    }
    if (rc == STRATA_OK) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", kr->path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
        } else {
            snprintf(dir, sizeof(dir), ".");
        }
        if (log_fsync_dir(dir[0] ? dir : "/") != 0) {
            rc = log_io_error("cannot fsync", dir);
        }
    }
    if (rc == STRATA_OK) {
        kr->n_records = 1;
        kr->file_len = file.len;
    }
    sbuf_free(&file);
    return rc;
}

/* Append one new key as a sealed record and fdatasync it. Caller holds the lock. */
static int keyring_append(keyring *kr, uint32_t id, const char *scope, const uint8_t *key)
{
    if (kr->path == NULL) {
        return STRATA_OK;
    }
    sbuf plain;
    sbuf_init(&plain, KEYRING_REC_MAX);
    sbuf rec;
    sbuf_init(&rec, KEYRING_REC_MAX);
    int rc = entry_encode(&plain, id, scope, key);
    rc = rc ? rc : record_seal(kr, kr->n_records, &plain, &rec);
    plain_free(&plain);
    if (rc == STRATA_OK) {
        int fd = open(kr->path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || pwrite(fd, rec.data, rec.len, (off_t)kr->file_len) != (ssize_t)rec.len ||
            log_fdatasync(fd) != 0) {
            rc = log_io_error("cannot append to the keyring", kr->path);
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    if (rc == STRATA_OK) {
        kr->n_records++;
        kr->file_len += rec.len;
    }
    sbuf_free(&rec);
    return rc;
}

int keyring_open(const char *path, const uint8_t master[CRYPT_KEY_BYTES], keyring **out)
{
    *out = NULL;
    keyring *kr = keyring_new();
    if (kr == NULL || (kr->path = strata_strdup(path)) == NULL) {
        keyring_close(kr);
        return STRATA_ENOMEM;
    }
    memcpy(kr->master, master, CRYPT_KEY_BYTES);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        int rc = keyring_save(kr); /* a new, empty keyring */
        if (rc != STRATA_OK) {
            keyring_close(kr);
            return rc;
        }
        *out = kr;
        return STRATA_OK;
    }
    if (fd < 0) {
        int rc = log_io_error("cannot open the keyring", path);
        keyring_close(kr);
        return rc;
    }
    struct stat st;
    int rc = STRATA_OK;
    uint8_t *img = NULL;
    if (fstat(fd, &st) != 0) {
        rc = log_io_error("cannot stat the keyring", path);
    } else if (st.st_size < KEYRING_HEADER + 4 + CRYPT_OVERHEAD ||
               st.st_size > KEYRING_MAX_BYTES) {
        rc = strata_error(STRATA_ECORRUPT, "keyring %s: bad size %lld", path,
                          (long long)st.st_size);
    } else if ((img = strata_malloc((size_t)st.st_size)) == NULL) {
        rc = STRATA_ENOMEM;
    } else if (read(fd, img, (size_t)st.st_size) != (ssize_t)st.st_size) {
        rc = log_io_error("cannot read the keyring", path);
    }
    close(fd);
    size_t len = (size_t)st.st_size;
    if (rc == STRATA_OK && (memcmp(img, KEYRING_MAGIC, 8) != 0 ||
                            wire_rd32(img + 8) != KEYRING_VERSION)) {
        rc = strata_error(STRATA_ECORRUPT, "keyring %s: not a Strata keyring (bad magic)", path);
    }
    uint8_t check[8];
    master_check(master, check);
    if (rc == STRATA_OK && memcmp(check, img + 16, 8) != 0) {
        rc = strata_error(STRATA_EINVAL, "keyring %s: the master key does not open it", path);
    }
    /* Records: a bad one in the middle is damage; a bad or partial last one
     * is an append a crash cut short (its key never sealed anything). */
    size_t off = KEYRING_HEADER;
    uint32_t index = 0;
    sbuf plain;
    sbuf_init(&plain, KEYRING_REC_MAX);
    while (rc == STRATA_OK && off < len) {
        size_t n = len - off >= 4 ? wire_rd32(img + off) : 0;
        bool whole = len - off >= 4 && n >= CRYPT_OVERHEAD && n <= len - off - 4;
        uint8_t aad[KEYRING_HEADER + 4];
        memcpy(aad, img, KEYRING_HEADER);
        wire_le32(aad + KEYRING_HEADER, index);
        sbuf_reset(&plain);
        int orc = whole ? crypt_open(master, aad, sizeof(aad), img + off + 4, n, &plain)
                        : STRATA_ECORRUPT;
        /* Only a short record is torn; a whole one that fails its tag is
         * damage, which must not silently turn into a shredded key. */
        if (!whole && index > 0) {
            slog(SLOG_WARN, "keyring %s: dropping a torn last record (%zu bytes)", path,
                 len - off);
            rc = truncate(path, (off_t)off) == 0 ? STRATA_OK
                                                 : log_io_error("cannot truncate", path);
            break;
        }
        if (orc != STRATA_OK) {
            rc = orc == STRATA_ECORRUPT
                     ? strata_error(STRATA_ECORRUPT,
                                    "keyring %s: damaged (authentication failed at record %u)",
                                    path, index)
                     : orc;
            break;
        }
        rc = record_parse(kr, index, (const uint8_t *)plain.data, plain.len);
        off += 4 + n;
        index++;
    }
    if (rc == STRATA_OK && index == 0) {
        rc = strata_error(STRATA_ECORRUPT, "keyring %s: no keys record", path);
    }
    kr->n_records = index;
    kr->file_len = off;
    plain_free(&plain);
    strata_free(img);
    if (rc != STRATA_OK) {
        keyring_close(kr);
        return rc;
    }
    *out = kr;
    return STRATA_OK;
}

/* Make, persist and return a new key for scope. Caller holds the lock. */
static int key_create(keyring *kr, const char *scope, uint32_t *id_out,
                      uint8_t key[CRYPT_KEY_BYTES])
{
    uint8_t fresh[CRYPT_KEY_BYTES];
    int rc = kr->next_id == UINT32_MAX ? strata_error(STRATA_EBUSY, "keyring: out of key ids")
                                       : crypt_random(fresh, sizeof(fresh));
    uint32_t id = kr->next_id;
    rc = rc ? rc : entry_push(kr, id, scope, strlen(scope), fresh);
    if (rc == STRATA_OK) {
        kr->next_id++;
        rc = keyring_append(kr, id, scope, fresh);
        if (rc != STRATA_OK) {
            /* not durable: the key must not be used */
            kr->next_id--;
            kr->n--;
            strata_free(kr->v[kr->n].scope);
            crypt_wipe(kr->v[kr->n].key, CRYPT_KEY_BYTES);
        }
    }
    if (rc == STRATA_OK) {
        *id_out = id;
        if (key != NULL) {
            memcpy(key, fresh, CRYPT_KEY_BYTES);
        }
    }
    crypt_wipe(fresh, sizeof(fresh));
    return rc;
}

int keyring_key_for(keyring *kr, const char *scope, uint32_t *id_out,
                    uint8_t key[CRYPT_KEY_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    /* The newest key of a scope is the current one. */
    for (size_t i = kr->n; i-- > 0;) {
        if (strcmp(kr->v[i].scope, scope) == 0) {
            *id_out = kr->v[i].id;
            memcpy(key, kr->v[i].key, CRYPT_KEY_BYTES);
            pthread_mutex_unlock(&kr->lock);
            return STRATA_OK;
        }
    }
    int rc = key_create(kr, scope, id_out, key);
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

int keyring_key_renew(keyring *kr, const char *scope, uint32_t *id_out)
{
    pthread_mutex_lock(&kr->lock);
    int rc = key_create(kr, scope, id_out, NULL);
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

int keyring_key_get(keyring *kr, uint32_t id, uint8_t key[CRYPT_KEY_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    for (size_t i = 0; i < kr->n; i++) {
        if (kr->v[i].id == id) {
            memcpy(key, kr->v[i].key, CRYPT_KEY_BYTES);
            pthread_mutex_unlock(&kr->lock);
            return STRATA_OK;
        }
    }
    pthread_mutex_unlock(&kr->lock);
    return STRATA_ENOTFOUND;
}

typedef bool (*entry_pred)(const kr_entry *e, const void *arg);

static int shred_where(keyring *kr, entry_pred pred, const void *arg, size_t *n_out)
{
    pthread_mutex_lock(&kr->lock);
    size_t kept = 0;
    size_t gone = 0;
    for (size_t i = 0; i < kr->n; i++) {
        if (pred(&kr->v[i], arg)) {
            strata_free(kr->v[i].scope);
            crypt_wipe(kr->v[i].key, CRYPT_KEY_BYTES);
            gone++;
        } else {
            kr->v[kept++] = kr->v[i];
        }
    }
    kr->n = kept;
    int rc = gone > 0 ? keyring_save(kr) : STRATA_OK;
    pthread_mutex_unlock(&kr->lock);
    if (n_out != NULL) {
        *n_out = gone;
    }
    return rc;
}

typedef struct scope_arg {
    const char *scope;
    bool prefix;
} scope_arg;

static bool scope_matches(const kr_entry *e, const void *arg)
{
    const scope_arg *a = arg;
    return a->prefix ? strncmp(e->scope, a->scope, strlen(a->scope)) == 0
                     : strcmp(e->scope, a->scope) == 0;
}

int keyring_shred(keyring *kr, const char *scope, bool prefix, size_t *n_out)
{
    scope_arg a = {scope, prefix};
    return shred_where(kr, scope_matches, &a, n_out);
}

typedef struct upto_arg {
    const char *scope;
    uint32_t max_id;
} upto_arg;

static bool scope_upto(const kr_entry *e, const void *arg)
{
    const upto_arg *a = arg;
    return e->id <= a->max_id && strcmp(e->scope, a->scope) == 0;
}

int keyring_shred_upto(keyring *kr, const char *scope, uint32_t max_id, size_t *n_out)
{
    upto_arg a = {scope, max_id};
    return shred_where(kr, scope_upto, &a, n_out);
}

static bool snapshot_below(const kr_entry *e, const void *arg)
{
    uint64_t below = *(const uint64_t *)arg;
    if (strncmp(e->scope, "snap/", 5) != 0) {
        return false;
    }
    return strtoull(e->scope + 5, NULL, 10) < below;
}

int keyring_shred_snapshots_below(keyring *kr, uint64_t below, size_t *n_out)
{
    return shred_where(kr, snapshot_below, &below, n_out);
}

int keyring_rekey(keyring *kr, const uint8_t new_master[CRYPT_KEY_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    uint8_t old[CRYPT_KEY_BYTES];
    memcpy(old, kr->master, sizeof(old));
    memcpy(kr->master, new_master, CRYPT_KEY_BYTES);
    int rc = keyring_save(kr);
    if (rc != STRATA_OK) {
        memcpy(kr->master, old, sizeof(old)); /* the file still has the old one */
    }
    crypt_wipe(old, sizeof(old));
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

size_t keyring_count(keyring *kr)
{
    pthread_mutex_lock(&kr->lock);
    size_t n = kr->n;
    pthread_mutex_unlock(&kr->lock);
    return n;
}

int keyring_image(keyring *kr, sbuf *out)
{
    pthread_mutex_lock(&kr->lock); /* no append half written while we read */
    int rc = STRATA_OK;
    int fd = kr->path ? open(kr->path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        rc = log_io_error("cannot open the keyring", kr->path ? kr->path : "(memory)");
    }
    char buf[65536];
    for (ssize_t n = 1; rc == STRATA_OK && n > 0;) {
        n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            rc = log_io_error("cannot read the keyring", kr->path);
        } else if (n > 0) {
            rc = sbuf_append(out, buf, (size_t)n);
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

int keyring_replace(keyring *kr, const void *img, size_t len)
{
    if (kr->path == NULL) {
        return strata_error(STRATA_EINVAL, "keyring: not backed by a file");
    }
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", kr->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = STRATA_OK;
    if (fd < 0 || log_write_all(fd, img, len) != 0 || log_fdatasync(fd) != 0) {
        rc = log_io_error("cannot write", tmp);
    }
    if (fd >= 0) {
        close(fd);
    }
    /* Parse it before trusting it: the same master key must open it. */
    keyring *fresh = NULL;
    rc = rc ? rc : keyring_open(tmp, kr->master, &fresh);
    pthread_mutex_lock(&kr->lock);
    if (rc == STRATA_OK && rename(tmp, kr->path) != 0) {
        rc = log_io_error("cannot replace the keyring", kr->path);
    }
    if (rc == STRATA_OK) {
        entries_free(kr);
        kr->v = fresh->v;
        kr->n = fresh->n;
        kr->cap = fresh->cap;
        kr->next_id = fresh->next_id;
        kr->n_records = fresh->n_records;
        kr->file_len = fresh->file_len;
        fresh->v = NULL;
        fresh->n = 0;
        fresh->cap = 0;
    }
    pthread_mutex_unlock(&kr->lock);
    keyring_close(fresh);
    if (rc != STRATA_OK) {
        unlink(tmp);
    }
    return rc;
}

uint32_t keyring_next_id(keyring *kr)
{
    pthread_mutex_lock(&kr->lock);
    uint32_t n = kr->next_id;
    pthread_mutex_unlock(&kr->lock);
    return n;
}
