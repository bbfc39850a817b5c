/*
 * cmd_keyring.c - `strata keyring rotate`: re-seal the keyring of an
 * encrypted data directory under a new master key, offline. The data keys,
 * and so every segment and snapshot, stay as they are; only the keyring file
 * is rewritten (atomically), after which the old master key opens nothing.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "privacy/crypt.h"

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return NULL;
}

static int load_master(const char *file, const char *hex, uint8_t out[CRYPT_KEY_BYTES])
{
    if (file != NULL) {
        return crypt_master_from_file(file, out);
    }
    if (hex != NULL) {
        return crypt_master_from_hex(hex, out);
    }
    return strata_error(STRATA_EINVAL, "no master key given");
}

int cli_cmd_keyring(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "rotate") != 0) {
        fprintf(stderr, "usage: strata keyring rotate [--data-dir DIR | --keyring FILE]\n"
                        "         (--master-key-file F | $STRATA_MASTER_KEY[_FILE])\n"
                        "         --new-master-key-file F2\n");
        return 2;
    }
    const char *dir = opt(argc, argv, "--data-dir");
    const char *path = opt(argc, argv, "--keyring");
    const char *old_file = opt(argc, argv, "--master-key-file");
    const char *new_file = opt(argc, argv, "--new-master-key-file");
    if (old_file == NULL) {
        old_file = getenv("STRATA_MASTER_KEY_FILE");
    }
    if (new_file == NULL) {
        fprintf(stderr, "strata: keyring rotate needs --new-master-key-file\n");
        return 2;
    }
    char buf[4200];
    if (path == NULL) {
        snprintf(buf, sizeof(buf), "%s/keyring", dir ? dir : "./data");
        path = buf;
    }
    uint8_t old_key[CRYPT_KEY_BYTES];
    uint8_t new_key[CRYPT_KEY_BYTES];
    int rc = load_master(old_file, getenv("STRATA_MASTER_KEY"), old_key);
    if (rc == STRATA_OK) {
        rc = crypt_master_from_file(new_file, new_key);
    }
    keyring *kr = NULL;
    if (rc == STRATA_OK) {
        /* Opening an absent keyring would create an empty one: refuse instead. */
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            rc = strata_error(STRATA_ENOTFOUND, "no keyring at %s", path);
        } else {
            fclose(f);
            rc = keyring_open(path, old_key, &kr);
        }
    }
    if (rc == STRATA_OK) {
        rc = keyring_rekey(kr, new_key);
    }
    size_t n = kr ? keyring_count(kr) : 0;
    keyring_close(kr);
    crypt_wipe(old_key, sizeof(old_key));
    crypt_wipe(new_key, sizeof(new_key));
    if (rc != STRATA_OK) {
        fprintf(stderr, "strata: keyring rotate failed: %s\n", strata_errmsg());
        return 1;
    }
    printf("rotated the master key of %s (%zu data keys re-sealed)\n", path, n);
    return 0;
}
