/*
 * fuzz_keyring.c - the keyring body parser (privacy/keyring.c) on arbitrary
 * bytes. The sealed file around it only opens with the right key and tag, so
 * the parser behind the tag is fuzzed directly: it must refuse, never crash.
 */
#include <stddef.h>
#include <stdint.h>

#include "privacy/crypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keyring *kr = NULL;
    if (keyring_from_body(data, size, &kr) == STRATA_OK) {
        uint8_t key[CRYPT_KEY_BYTES];
        (void)keyring_key_get(kr, 1, key);
        (void)keyring_count(kr);
        keyring_close(kr);
    }
    return 0;
}
