/*
 * fuzz_manifest.c - libFuzzer target for the backup manifest parser
 * (backup_manifest_parse): MANIFEST.json read from a backup directory, and
 * the same document a primary sends a replica to bootstrap from.
 *
 * Properties: anything accepted names only files inside the backup
 * ("log/<20 digits>.seg", "snap/<tier>-<20 digits>.snap", "l2.model"), its
 * sizes add up to "bytes", and writing it back out and parsing that again
 * gives the same manifest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/repl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    backup_manifest m;
    if (backup_manifest_parse((const char *)data, size, &m) != STRATA_OK) {
        if (m.n_files != 0 || m.files != NULL || m.l2_model != NULL) {
            abort();
        }
        return 0;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < m.n_files; i++) {
        const char *n = m.files[i].name;
        if (n[0] == '/' || strstr(n, "..") != NULL ||
            (strncmp(n, "log/", 4) != 0 && strncmp(n, "snap/", 5) != 0 &&
             strcmp(n, "l2.model") != 0)) {
            abort();
        }
        sum += m.files[i].size;
    }
    if (sum != m.bytes || m.last_lsn < m.lsn) {
        abort();
    }
    sbuf j;
    sbuf_init(&j, 128u << 20);
    backup_manifest again;
    if (backup_manifest_json(&m, &j) != STRATA_OK ||
        backup_manifest_parse(j.data, j.len, &again) != STRATA_OK || again.lsn != m.lsn ||
        again.last_lsn != m.last_lsn || again.n_files != m.n_files || again.bytes != m.bytes ||
        (m.l2_model == NULL) != (again.l2_model == NULL) ||
        (m.l2_model != NULL && strcmp(m.l2_model, again.l2_model) != 0)) {
        abort();
    }
    for (size_t i = 0; i < m.n_files; i++) {
        if (strcmp(m.files[i].name, again.files[i].name) != 0 ||
            m.files[i].size != again.files[i].size ||
            m.files[i].crc32c != again.files[i].crc32c) {
            abort();
        }
    }
    backup_manifest_free(&again);
    backup_manifest_free(&m);
    sbuf_free(&j);
    return 0;
}
