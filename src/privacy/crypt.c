/*
 * crypt.c - AES-256-GCM sealing and opening with OpenSSL EVP, random bytes,
 * and master-key parsing. The formats are in crypt.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "privacy/crypt.h"

int crypt_random(void *p, size_t n)
{
    if (n > 0 && RAND_bytes(p, (int)n) != 1) {
        return strata_error(STRATA_EIO, "the system random generator failed");
    }
    return STRATA_OK;
}

void crypt_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        OPENSSL_cleanse(p, n);
    }
}

int crypt_seal(const uint8_t key[CRYPT_KEY_BYTES], const void *aad, size_t aad_len,
               const void *pt, size_t pt_len, sbuf *out)
{
    if (pt_len > (size_t)INT32_MAX || aad_len > (size_t)INT32_MAX) {
        return strata_error(STRATA_ETOOBIG, "too much to encrypt at once");
    }
    size_t start = out->len;
    int rc = sbuf_reserve(out, CRYPT_OVERHEAD + pt_len);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint8_t *nonce = (uint8_t *)out->data + start;
    rc = crypt_random(nonce, CRYPT_NONCE_BYTES);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint8_t *ct = nonce + CRYPT_NONCE_BYTES;
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int len = 0;
    int fin = 0;
    bool ok = cx != NULL && EVP_EncryptInit_ex(cx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
              (aad_len == 0 || EVP_EncryptUpdate(cx, NULL, &len, aad, (int)aad_len) == 1) &&
              EVP_EncryptUpdate(cx, ct, &len, pt_len ? pt : (const void *)"", (int)pt_len) == 1 &&
              EVP_EncryptFinal_ex(cx, ct + len, &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_BYTES, ct + pt_len) == 1;
    EVP_CIPHER_CTX_free(cx);
    if (!ok) {
        return strata_error(STRATA_EIO, "AES-256-GCM encryption failed");
    }
    out->len = start + CRYPT_OVERHEAD + pt_len;
    return STRATA_OK;
}

int crypt_open(const uint8_t key[CRYPT_KEY_BYTES], const void *aad, size_t aad_len,
               const void *blob, size_t blob_len, sbuf *out)
{
    if (blob_len < CRYPT_OVERHEAD) {
        return strata_error(STRATA_ECORRUPT, "encrypted data too short (%zu bytes)", blob_len);
    }
    if (blob_len > (size_t)INT32_MAX || aad_len > (size_t)INT32_MAX) {
        return strata_error(STRATA_ETOOBIG, "too much to decrypt at once");
    }
    const uint8_t *nonce = blob;
    const uint8_t *ct = nonce + CRYPT_NONCE_BYTES;
    size_t ct_len = blob_len - CRYPT_OVERHEAD;
    size_t start = out->len;
    int rc = sbuf_reserve(out, ct_len + 1);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint8_t *pt = (uint8_t *)out->data + start;
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int len = 0;
    int fin = 0;
    bool ok = cx != NULL && EVP_DecryptInit_ex(cx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
              (aad_len == 0 || EVP_DecryptUpdate(cx, NULL, &len, aad, (int)aad_len) == 1) &&
              EVP_DecryptUpdate(cx, pt, &len, ct_len ? ct : (const uint8_t *)"", (int)ct_len) == 1 &&
              EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_BYTES,
                                  (void *)(ct + ct_len)) == 1;
    /* The tag is checked here: no plaintext counts before it verifies. */
    ok = ok && EVP_DecryptFinal_ex(cx, pt + len, &fin) == 1;
    EVP_CIPHER_CTX_free(cx);
    if (!ok) {
        crypt_wipe(pt, ct_len);
        return strata_error(STRATA_ECORRUPT,
                            "authentication failed: the data was altered or the key is wrong");
    }
    out->len = start + ct_len;
    return STRATA_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static int hex_key(const char *s, size_t n, uint8_t out[CRYPT_KEY_BYTES])
{
    while (n > 0 && is_space(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1])) {
        n--;
    }
    if (n != 2 * CRYPT_KEY_BYTES) {
        return strata_error(STRATA_EINVAL, "a master key is 64 hex digits (32 bytes)");
    }
    for (size_t i = 0; i < CRYPT_KEY_BYTES; i++) {
        int hi = hexval(s[2 * i]);
        int lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            crypt_wipe(out, CRYPT_KEY_BYTES);
            return strata_error(STRATA_EINVAL, "a master key is 64 hex digits (32 bytes)");
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return STRATA_OK;
}

int crypt_master_from_hex(const char *hex, uint8_t out[CRYPT_KEY_BYTES])
{
    return hex_key(hex, strlen(hex), out);
}

int crypt_master_from_file(const char *path, uint8_t out[CRYPT_KEY_BYTES])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return strata_error(STRATA_EINVAL, "cannot read the master key file %s: %s", path,
                            strerror(errno));
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0) {
        return strata_error(STRATA_EINVAL, "cannot read the master key file %s: %s", path,
                            strerror(errno));
    }
    int rc;
    if (n == CRYPT_KEY_BYTES) {
        memcpy(out, buf, CRYPT_KEY_BYTES);
        rc = STRATA_OK;
    } else {
        rc = hex_key(buf, (size_t)n, out);
        if (rc != STRATA_OK) {
            rc = strata_error(STRATA_EINVAL,
                              "master key file %s: expected 64 hex digits or 32 raw bytes", path);
        }
    }
    crypt_wipe(buf, sizeof(buf));
    return rc;
}
