/*
 * keys.h - API keys per tenant (keys.c). A key is shown once when created and
 * stored only as its SHA-256; a request presents the key and gets the tenant.
 */
#ifndef STRATA_KEYS_H
#define STRATA_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

typedef struct key_store key_store;

key_store *keys_create(void);
void keys_free(key_store *ks);
/* Apply side (log order; caller holds the db write lock). */
int keys_apply_create(key_store *ks, const char *key_id, const char *tenant,
                      const uint8_t hash[32], int64_t created_at);
int keys_apply_revoke(key_store *ks, const char *key_id);
/* Tenant of the key whose SHA-256 is hash; STRATA_ENOTFOUND if none. */
int keys_lookup(key_store *ks, const uint8_t hash[32], char tenant_out[STRATA_ID_MAX + 1],
                char key_id_out[STRATA_JOB_ID_LEN]);
bool keys_exists(key_store *ks, const char *key_id, char tenant_out[STRATA_ID_MAX + 1]);
/* Key ids of a tenant, sorted. */
int keys_list(key_store *ks, const char *tenant, strata_strlist **out);
uint64_t keys_count(key_store *ks);
int keys_snapshot_write(key_store *ks, sbuf *out);
int keys_snapshot_load(key_store *ks, const void *data, size_t len);

#endif /* STRATA_KEYS_H */
