/*
 * crypt.h - encryption at rest (brief §3.2): AES-256-GCM through OpenSSL's
 * EVP interface (crypt.c) and the keyring of data keys (keyring.c).
 *
 * Envelope encryption: a master key (32 bytes, from a key file or the
 * environment, never stored by us) seals the keyring file; the keyring holds
 * one random data key per scope: one per user ("u/<tenant>/<user>"), one per
 * tenant for records no user owns ("t/<tenant>"), one per snapshot
 * ("snap/<lsn>"). Log records and snapshots are sealed with a data key and
 * name it by a 32-bit key id. Forgetting a user removes their key from the
 * keyring (crypto-shredding): every copy of their records, in old segments and
 * in backups, is then ciphertext nobody can open.
 *
 * Sealed blob: nonce (12, random) | ciphertext | tag (16). The caller's
 * additional authenticated data (a record's header, a file's header) binds
 * the ciphertext to its place, so moving or altering it is detected.
 */
#ifndef STRATA_CRYPT_H
#define STRATA_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define CRYPT_KEY_BYTES 32
#define CRYPT_NONCE_BYTES 12
#define CRYPT_TAG_BYTES 16
#define CRYPT_OVERHEAD (CRYPT_NONCE_BYTES + CRYPT_TAG_BYTES)

/* Append nonce | AES-256-GCM(pt) | tag to out. */
int crypt_seal(const uint8_t key[CRYPT_KEY_BYTES], const void *aad, size_t aad_len,
               const void *pt, size_t pt_len, sbuf *out);
/* Append the plaintext of a sealed blob to out. STRATA_ECORRUPT when the tag
 * does not verify (tampered data, wrong key or wrong aad); out is unchanged
 * then. */
int crypt_open(const uint8_t key[CRYPT_KEY_BYTES], const void *aad, size_t aad_len,
               const void *blob, size_t blob_len, sbuf *out);
/* Cryptographically strong random bytes (RAND_bytes). */
int crypt_random(void *p, size_t n);
/* A master key from 64 hex digits (surrounding whitespace allowed), or from a
 * file holding either 64 hex digits or exactly 32 raw bytes. */
int crypt_master_from_hex(const char *hex, uint8_t out[CRYPT_KEY_BYTES]);
int crypt_master_from_file(const char *path, uint8_t out[CRYPT_KEY_BYTES]);
/* Wipe secrets (not optimised away). */
void crypt_wipe(void *p, size_t n);

/* ---- keyring (keyring.c) ------------------------------------------------ */
/*
 * File <path> (default <data>/keyring):
 *
 *   offset size  field
 *   0      8     magic "STRATAK2"
 *   8      4     format version (2)
 *   12     4     reserved, 0
 *   16     8     key check: first 8 bytes of SHA-256("strata-master" | master)
 *   24     ...   records, each u32 length L | sealed blob of L bytes
 *                (AAD: bytes 0..23 and the record's index as u32)
 *
 *   record 0:    'B' | u32 next_id | u32 n | n x { u32 id | str scope | 32 key }
 *   record k>0:  'E' | u32 id | str scope | 32 key      (a key added since)
 *
 * Adding a key appends one record; removing keys or a new master key
 * rewrites the file as one 'B' record. The key check tells "wrong master
 * key" apart from "tampered file".
 */
typedef struct keyring keyring;

/* Open the keyring at path, creating an empty one when absent. A wrong
 * master key is STRATA_EINVAL, a damaged file STRATA_ECORRUPT (never a crash). */
int keyring_open(const char *path, const uint8_t master[CRYPT_KEY_BYTES], keyring **out);
void keyring_close(keyring *kr);   /* NULL-safe; wipes the keys */
/* The current data key of scope, created (and persisted) on first use. Thread-safe. */
int keyring_key_for(keyring *kr, const char *scope, uint32_t *id_out,
                    uint8_t key[CRYPT_KEY_BYTES]);
/* The data key with this id: STRATA_ENOTFOUND once shredded (or never made). */
int keyring_key_get(keyring *kr, uint32_t id, uint8_t key[CRYPT_KEY_BYTES]);
/* Crypto-shredding: remove every key whose scope equals scope, or starts with
 * it when prefix is true; persisted before returning. *n_out gets the count. */
int keyring_shred(keyring *kr, const char *scope, bool prefix, size_t *n_out);
/* A new current key for scope even when one exists (older ones stay for
 * reading): writes after a user's deletion must not share the key shredded
 * for it. *id_out gets the new key's id. */
int keyring_key_renew(keyring *kr, const char *scope, uint32_t *id_out);
/* Remove the keys of scope whose id is <= max_id (crypto-shredding of what a
 * deletion covered, not of what was written after it). */
int keyring_shred_upto(keyring *kr, const char *scope, uint32_t max_id, size_t *n_out);
/* Remove snapshot keys "snap/<lsn>" with lsn < below (their snapshots hold data
 * that was since forgotten). */
int keyring_shred_snapshots_below(keyring *kr, uint64_t below, size_t *n_out);
/* Re-seal the keyring under a new master key (key rotation); the data keys,
 * and so every file, stay as they are. */
int keyring_rekey(keyring *kr, const uint8_t new_master[CRYPT_KEY_BYTES]);
size_t keyring_count(keyring *kr);
/* Replication of an encrypted primary: the keyring file as it is (sealed
 * under the master key, so it may travel), appended to out... */
int keyring_image(keyring *kr, sbuf *out);
/* ...and, on the replica (same master key), that image replacing its own:
 * checked to open first, then renamed into place and loaded. */
int keyring_replace(keyring *kr, const void *img, size_t len);
/* Ids below this exist or were shredded; at or above, not made yet. */
uint32_t keyring_next_id(keyring *kr);

/* A keyring from records' plaintexts (each u16 length | plaintext), not
 * tied to a file: the fuzz target of the record parsers. STRATA_ECORRUPT on
 * anything malformed. */
int keyring_from_body(const uint8_t *body, size_t len, keyring **out);

#endif /* STRATA_CRYPT_H */
