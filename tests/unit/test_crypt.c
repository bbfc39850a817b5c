/*
 * test_crypt.c - AES-256-GCM sealing (round trip, every flipped byte of the
 * blob and of the associated data detected, wrong key refused) and the
 * keyring (persistence, a wrong master key told apart from a damaged file,
 * shredding that survives a reopen, master-key rotation).
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privacy/crypt.h"
#include "test.h"

static const char *HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(seal_roundtrip_and_tamper)
{
    uint8_t key[CRYPT_KEY_BYTES];
    ASSERT_OK(crypt_master_from_hex(HEX, key));
    const char *aad = "header";
    const char *msg = "the user's secret marker zq1234";
    sbuf s;
    sbuf_init(&s, 1 << 20);
    ASSERT_OK(crypt_seal(key, aad, 6, msg, strlen(msg), &s));
    ASSERT_EQ(s.len, strlen(msg) + CRYPT_OVERHEAD);
    ASSERT_TRUE(memmem(s.data, s.len, "marker", 6) == NULL);
    sbuf p;
    sbuf_init(&p, 1 << 20);
    ASSERT_OK(crypt_open(key, aad, 6, s.data, s.len, &p));
    ASSERT_EQ(p.len, strlen(msg));
    ASSERT_TRUE(memcmp(p.data, msg, p.len) == 0);
    /* every single flipped bit of the blob is detected */
    for (size_t i = 0; i < s.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            s.data[i] ^= (char)(1 << bit);
            sbuf_reset(&p);
            ASSERT_EQ(crypt_open(key, aad, 6, s.data, s.len, &p), STRATA_ECORRUPT);
            ASSERT_EQ(p.len, 0);
            s.data[i] ^= (char)(1 << bit);
        }
    }
    /* other associated data, a truncated blob, another key */
    sbuf_reset(&p);
    ASSERT_EQ(crypt_open(key, "headeR", 6, s.data, s.len, &p), STRATA_ECORRUPT);
    ASSERT_EQ(crypt_open(key, aad, 6, s.data, s.len - 1, &p), STRATA_ECORRUPT);
    ASSERT_EQ(crypt_open(key, aad, 6, s.data, 5, &p), STRATA_ECORRUPT);
    uint8_t other[CRYPT_KEY_BYTES];
    memcpy(other, key, sizeof(other));
    other[0] ^= 1;
    ASSERT_EQ(crypt_open(other, aad, 6, s.data, s.len, &p), STRATA_ECORRUPT);
    /* two seals of the same text differ (random nonces) */
    sbuf s2;
    sbuf_init(&s2, 1 << 20);
    ASSERT_OK(crypt_seal(key, aad, 6, msg, strlen(msg), &s2));
    ASSERT_TRUE(memcmp(s.data, s2.data, CRYPT_NONCE_BYTES) != 0);
    /* empty plaintext */
    sbuf_reset(&s2);
    ASSERT_OK(crypt_seal(key, NULL, 0, "", 0, &s2));
    sbuf_reset(&p);
    ASSERT_OK(crypt_open(key, NULL, 0, s2.data, s2.len, &p));
    ASSERT_EQ(p.len, 0);
    sbuf_free(&s);
    sbuf_free(&s2);
    sbuf_free(&p);
}

TEST(master_key_parsing)
{
    uint8_t k[CRYPT_KEY_BYTES];
    ASSERT_OK(crypt_master_from_hex(HEX, k));
    ASSERT_EQ(k[31], 0x1f);
    ASSERT_EQ(crypt_master_from_hex("abc", k), STRATA_EINVAL);
    ASSERT_EQ(crypt_master_from_hex("zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", k),
              STRATA_EINVAL);
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/mk", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "  %s\n", HEX);
    fclose(f);
    ASSERT_OK(crypt_master_from_file(path, k));
    ASSERT_EQ(k[1], 1);
    f = fopen(path, "w");
    fwrite("0123456789abcdef0123456789abcdef", 1, 32, f); /* 32 raw bytes */
    fclose(f);
    ASSERT_OK(crypt_master_from_file(path, k));
    ASSERT_EQ(k[0], '0');
    f = fopen(path, "w");
    fprintf(f, "short");
    fclose(f);
    ASSERT_EQ(crypt_master_from_file(path, k), STRATA_EINVAL);
    snprintf(path, sizeof(path), "%s/missing", dir);
    ASSERT_EQ(crypt_master_from_file(path, k), STRATA_EINVAL);
    test_rmrf(dir);
}

TEST(keyring_lifecycle)
{
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/keyring", dir);
    uint8_t master[CRYPT_KEY_BYTES];
    ASSERT_OK(crypt_master_from_hex(HEX, master));
    keyring *kr = NULL;
    ASSERT_OK(keyring_open(path, master, &kr));
    ASSERT_EQ(keyring_count(kr), 0);
    uint32_t a_id, b_id, a2_id, s_id;
    uint8_t a[32], b[32], a2[32], got[32];
    ASSERT_OK(keyring_key_for(kr, "u/t1/alice", &a_id, a));
    ASSERT_OK(keyring_key_for(kr, "u/t1/bob", &b_id, b));
    ASSERT_OK(keyring_key_for(kr, "u/t1/alice", &a2_id, a2));
    ASSERT_OK(keyring_key_for(kr, "snap/100", &s_id, got));
    ASSERT_EQ(a_id, a2_id);
    ASSERT_TRUE(memcmp(a, a2, 32) == 0);
    ASSERT_TRUE(memcmp(a, b, 32) != 0);
    keyring_close(kr);

    /* persisted; a wrong master is told apart from damage */
    uint8_t wrong[CRYPT_KEY_BYTES];
    memcpy(wrong, master, sizeof(wrong));
    wrong[5] ^= 0x40;
    ASSERT_EQ(keyring_open(path, wrong, &kr), STRATA_EINVAL);
    ASSERT_OK(keyring_open(path, master, &kr));
    ASSERT_EQ(keyring_count(kr), 3);
    ASSERT_OK(keyring_key_get(kr, b_id, got));
    ASSERT_TRUE(memcmp(got, b, 32) == 0);
    ASSERT_EQ(keyring_key_get(kr, 999, got), STRATA_ENOTFOUND);

    /* shredding survives a reopen; ids are never reused */
    size_t n = 0;
    ASSERT_OK(keyring_shred(kr, "u/t1/alice", false, &n));
    ASSERT_EQ(n, 1);
    ASSERT_OK(keyring_shred_snapshots_below(kr, 101, &n));
    ASSERT_EQ(n, 1);
    keyring_close(kr);
    ASSERT_OK(keyring_open(path, master, &kr));
    ASSERT_EQ(keyring_count(kr), 1);
    ASSERT_EQ(keyring_key_get(kr, a_id, got), STRATA_ENOTFOUND);
    uint32_t a3_id;
    ASSERT_OK(keyring_key_for(kr, "u/t1/alice", &a3_id, got));
    ASSERT_TRUE(a3_id > s_id);
    ASSERT_TRUE(memcmp(got, a, 32) != 0);

    /* a deletion renews the key first and shreds only what it covers */
    uint32_t renewed = 0;
    ASSERT_OK(keyring_key_renew(kr, "u/t1/alice", &renewed));
    ASSERT_TRUE(renewed > a3_id);
    uint32_t cur = 0;
    ASSERT_OK(keyring_key_for(kr, "u/t1/alice", &cur, got));
    ASSERT_EQ(cur, renewed);
    ASSERT_OK(keyring_shred_upto(kr, "u/t1/alice", renewed - 1, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(keyring_key_get(kr, a3_id, got), STRATA_ENOTFOUND);
    ASSERT_OK(keyring_key_get(kr, renewed, got));

    /* master-key rotation: the old key no longer opens it, the new one does */
    uint8_t next[CRYPT_KEY_BYTES];
    ASSERT_OK(crypt_random(next, sizeof(next)));
    ASSERT_OK(keyring_rekey(kr, next));
    keyring_close(kr);
    ASSERT_EQ(keyring_open(path, master, &kr), STRATA_EINVAL);
    ASSERT_OK(keyring_open(path, next, &kr));
    ASSERT_OK(keyring_key_get(kr, b_id, got));
    ASSERT_TRUE(memcmp(got, b, 32) == 0);
    keyring_close(kr);

    /* every flipped byte of the file is reported, never a crash */
    int fd = open(path, O_RDONLY);
    uint8_t img[4096];
    ssize_t len = read(fd, img, sizeof(img));
    close(fd);
    ASSERT_TRUE(len > 24);
    for (ssize_t i = 0; i < len; i++) {
        img[i] ^= 0x01;
        fd = open(path, O_WRONLY | O_TRUNC);
        ASSERT_EQ(write(fd, img, (size_t)len), len);
        close(fd);
        int rc = keyring_open(path, next, &kr);
        ASSERT_TRUE(rc == STRATA_ECORRUPT || rc == STRATA_EINVAL);
        img[i] ^= 0x01;
    }
    fd = open(path, O_WRONLY | O_TRUNC);
    ASSERT_EQ(write(fd, img, (size_t)len - 1), len - 1);
    close(fd);
    ASSERT_EQ(keyring_open(path, next, &kr), STRATA_ECORRUPT);
    test_rmrf(dir);
}

/* New keys are appended records: a torn last one is dropped at open, a
 * damaged earlier one is refused, and a thousand keys cost a thousand small
 * appends, not a thousand rewrites. */
TEST(keyring_appends)
{
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/keyring", dir);
    uint8_t master[CRYPT_KEY_BYTES];
    ASSERT_OK(crypt_master_from_hex(HEX, master));
    keyring *kr = NULL;
    ASSERT_OK(keyring_open(path, master, &kr));
    uint32_t id = 0;
    uint8_t key[32];
    uint8_t last[32];
    char scope[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(scope, sizeof(scope), "u/t/user-%d", i);
        ASSERT_OK(keyring_key_for(kr, scope, &id, key));
    }
    memcpy(last, key, 32);
    keyring_close(kr);
    struct stat st;
    ASSERT_OK(stat(path, &st));
    ASSERT_TRUE(st.st_size < 1000 * 120); /* one small record each */
    ASSERT_OK(keyring_open(path, master, &kr));
    ASSERT_EQ(keyring_count(kr), 1000);
    ASSERT_OK(keyring_key_get(kr, id, key));
    ASSERT_TRUE(memcmp(key, last, 32) == 0);
    keyring_close(kr);
    /* a torn last append: dropped, the rest intact, appends continue */
    ASSERT_OK(truncate(path, st.st_size - 5));
    ASSERT_OK(keyring_open(path, master, &kr));
    ASSERT_EQ(keyring_count(kr), 999);
    ASSERT_EQ(keyring_key_get(kr, id, key), STRATA_ENOTFOUND);
    uint32_t id2 = 0;
    ASSERT_OK(keyring_key_for(kr, "u/t/late", &id2, key));
    keyring_close(kr);
    ASSERT_OK(keyring_open(path, master, &kr));
    ASSERT_EQ(keyring_count(kr), 1000);
    keyring_close(kr);
    /* a flipped byte in the last (whole) record is damage too, not a tear */
    ASSERT_OK(stat(path, &st));
    int fd = open(path, O_RDWR);
    uint8_t b;
    ASSERT_EQ(pread(fd, &b, 1, st.st_size - 3), 1);
    b ^= 0x08;
    ASSERT_EQ(pwrite(fd, &b, 1, st.st_size - 3), 1);
    ASSERT_EQ(keyring_open(path, master, &kr), STRATA_ECORRUPT);
    b ^= 0x08;
    ASSERT_EQ(pwrite(fd, &b, 1, st.st_size - 3), 1);
    ASSERT_OK(keyring_open(path, master, &kr));
    keyring_close(kr);
    /* a flipped byte in an earlier record: damage, refused */
    ASSERT_EQ(pread(fd, &b, 1, 500), 1);
    b ^= 0x08;
    ASSERT_EQ(pwrite(fd, &b, 1, 500), 1);
    close(fd);
    ASSERT_EQ(keyring_open(path, master, &kr), STRATA_ECORRUPT);
    test_rmrf(dir);
}

TEST_MAIN(TEST_ENTRY(seal_roundtrip_and_tamper), TEST_ENTRY(master_key_parsing),
          TEST_ENTRY(keyring_lifecycle), TEST_ENTRY(keyring_appends))
