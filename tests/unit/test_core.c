/*
 * test_core.c - unit tests of src/core: CRC32C vectors, UTF-8 and id checks,
 * the bounded buffer, JSON string escaping, the wire codec's bounds checks,
 * the hash table, and allocation fault injection.
 */
#include "core/core.h"
#include "test.h"

TEST(crc32c_vectors)
{
    ASSERT_EQ(crc32c(0, "123456789", 9), 0xE3069283u);
    ASSERT_EQ(crc32c(0, "", 0), 0);
    /* Chaining equals one pass. */
    uint32_t a = crc32c(0, "12345", 5);
    ASSERT_EQ(crc32c(a, "6789", 4), 0xE3069283u);
    /* Long input exercises the 8-byte path against the bytewise one. */
    char big[1000];
    for (int i = 0; i < 1000; i++) {
        big[i] = (char)(i * 7);
    }
    uint32_t c = 0;
    for (int i = 0; i < 1000; i++) {
        c = crc32c(c, big + i, 1);
    }
    ASSERT_EQ(crc32c(0, big, 1000), c);
}

TEST(utf8_validation)
{
    ASSERT_TRUE(utf8_valid("hello", 5));
    ASSERT_TRUE(utf8_valid("h\xc3\xa9llo", 6));
    ASSERT_TRUE(utf8_valid("\xf0\x9f\x98\x80", 4));
    ASSERT_TRUE(!utf8_valid("\xc3", 1));             /* truncated */
    ASSERT_TRUE(!utf8_valid("\xc0\xaf", 2));         /* overlong */
    ASSERT_TRUE(!utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT_TRUE(!utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ASSERT_TRUE(!utf8_valid("\xff", 1));
}

TEST(id_validation)
{
    ASSERT_TRUE(strata_id_valid("user-1_a.b:c@d", 14));
    ASSERT_TRUE(!strata_id_valid("", 0));
    ASSERT_TRUE(!strata_id_valid("a/b", 3));
    ASSERT_TRUE(!strata_id_valid("a b", 3));
    ASSERT_TRUE(!strata_id_valid("..", 2));
    ASSERT_TRUE(!strata_id_valid("a..b", 4));
    ASSERT_TRUE(!strata_id_valid("a\0b", 3));
    char long_id[130];
    memset(long_id, 'a', sizeof(long_id));
    ASSERT_TRUE(strata_id_valid(long_id, 128));
    ASSERT_TRUE(!strata_id_valid(long_id, 129));
    ASSERT_TRUE(kv_key_valid("a key with spaces", 17));
    ASSERT_TRUE(!kv_key_valid("a/b", 3));
}

TEST(sbuf_limits)
{
    sbuf b;
    sbuf_init(&b, 10);
    ASSERT_OK(sbuf_puts(&b, "12345"));
    ASSERT_OK(sbuf_puts(&b, "67890"));
    ASSERT_EQ(sbuf_putc(&b, 'x'), STRATA_ETOOBIG);
    ASSERT_EQ(b.len, 10);
    ASSERT_STREQ(b.data, "1234567890");
    sbuf_reset(&b);
    ASSERT_OK(sbuf_printf(&b, "%d-%s", 42, "x"));
    ASSERT_STREQ(b.data, "42-x");
    size_t n;
    char *p = sbuf_take(&b, &n);
    ASSERT_EQ(n, 4);
    ASSERT_STREQ(p, "42-x");
    strata_free(p);
    ASSERT_TRUE(b.data == NULL);
    sbuf_free(&b);
}

TEST(json_escaping)
{
    sbuf b;
    sbuf_init(&b, 1024);
    ASSERT_OK(json_put_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9));
    ASSERT_STREQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    sbuf_reset(&b);
    ASSERT_OK(json_put_double(&b, 0.85));
    ASSERT_STREQ(b.data, "0.85");
    sbuf_reset(&b);
    ASSERT_OK(json_put_double(&b, 2.0));
    ASSERT_STREQ(b.data, "2.0");
    sbuf_reset(&b);
    ASSERT_OK(json_put_i64(&b, -5));
    ASSERT_STREQ(b.data, "-5");
    sbuf_free(&b);
}

TEST(wire_roundtrip_and_bounds)
{
    sbuf b;
    sbuf_init(&b, 1024);
    ASSERT_OK(wire_put_u8(&b, 7));
    ASSERT_OK(wire_put_u32(&b, 0xdeadbeef));
    ASSERT_OK(wire_put_u64(&b, 1ull << 40));
    ASSERT_OK(wire_put_str(&b, "hello"));
    ASSERT_OK(wire_put_f64(&b, 0.25));
    wire_reader r;
    wire_reader_init(&r, b.data, b.len);
    ASSERT_EQ(wire_get_u8(&r), 7);
    ASSERT_EQ(wire_get_u32(&r), 0xdeadbeef);
    ASSERT_EQ(wire_get_u64(&r), 1ull << 40);
    char *s = wire_get_strdup(&r);
    ASSERT_STREQ(s, "hello");
    strata_free(s);
    ASSERT_NEAR(wire_get_f64(&r), 0.25, 0);
    ASSERT_TRUE(wire_done(&r));
    /* Every truncation is detected, never read past. */
    for (size_t cut = 0; cut < b.len; cut++) {
        wire_reader t;
        wire_reader_init(&t, b.data, cut);
        wire_get_u8(&t);
        wire_get_u32(&t);
        wire_get_u64(&t);
        size_t n;
        wire_get_bytes(&t, &n);
        wire_get_f64(&t);
        ASSERT_TRUE(t.err);
    }
    /* A length prefix larger than the buffer is an error. */
    uint8_t lie[8] = {0xff, 0xff, 0xff, 0x7f, 'a', 'b', 'c', 'd'};
    wire_reader_init(&r, lie, sizeof(lie));
    size_t n;
    ASSERT_TRUE(wire_get_bytes(&r, &n) == NULL);
    ASSERT_TRUE(r.err);
    sbuf_free(&b);
}

static int g_freed;
static void count_free(void *p)
{
    g_freed++;
    strata_free(p);
}

TEST(dict_operations)
{
    static const dict_type t = {count_free};
    dict *d = dict_create(&t);
    ASSERT_TRUE(d != NULL);
    g_freed = 0;
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ASSERT_OK(dict_set(d, key, strlen(key), strata_strdup(key)));
    }
    ASSERT_EQ(dict_size(d), 5000);
    ASSERT_STREQ(dict_get(d, "k1234", 5), "k1234");
    ASSERT_TRUE(dict_get(d, "nope", 4) == NULL);
    ASSERT_OK(dict_set(d, "k1", 2, strata_strdup("new")));
    ASSERT_EQ(g_freed, 1);
    ASSERT_STREQ(dict_get(d, "k1", 2), "new");
    ASSERT_EQ(dict_delete(d, "k2", 2), 1);
    ASSERT_EQ(dict_delete(d, "k2", 2), 0);
    /* Delete while iterating. */
    dict_iter it;
    dict_iter_init(&it, d);
    const char *k;
    size_t kl;
    size_t seen = 0;
    while (dict_next(&it, &k, &kl, NULL)) {
        seen++;
        if (seen % 2 == 0) {
            dict_delete(d, k, kl);
        }
    }
    ASSERT_EQ(seen, 4999);
    ASSERT_EQ(dict_size(d), 4999 - 4999 / 2);
    /* Binary keys with NULs. */
    ASSERT_OK(dict_set(d, "a\0b", 3, strata_strdup("x")));
    ASSERT_TRUE(dict_get(d, "a\0c", 3) == NULL);
    ASSERT_STREQ(dict_get(d, "a\0b", 3), "x");
    dict_free(d);
}

TEST(alloc_fault_injection)
{
    strata_alloc_fail_after(2);
    void *a = strata_malloc(8);
    void *b = strata_malloc(8);
    void *c = strata_malloc(8);
    void *d = strata_malloc(8);
    strata_alloc_fail_after(-1);
    ASSERT_TRUE(a != NULL && b != NULL);
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(d != NULL);
    strata_free(a);
    strata_free(b);
    strata_free(d);
    /* A dict survives allocation failures without leaking. */
    for (long n = 0; n < 40; n++) {
        dict *dd = NULL;
        strata_alloc_fail_after(n);
        dd = dict_create(NULL);
        for (int i = 0; dd != NULL && i < 20; i++) {
            char key[16];
            snprintf(key, sizeof(key), "%d", i);
            dict_set(dd, key, strlen(key), NULL);
        }
        strata_alloc_fail_after(-1);
        dict_free(dd);
    }
}

TEST(errors_have_messages)
{
    int rc = strata_error(STRATA_EINVAL, "bad %s", "thing");
    ASSERT_EQ(rc, STRATA_EINVAL);
    ASSERT_STREQ(strata_errmsg(), "bad thing");
    ASSERT_STREQ(strata_strerror(STRATA_ENOTFOUND), "not found");
}

TEST_MAIN(TEST_ENTRY(crc32c_vectors), TEST_ENTRY(utf8_validation), TEST_ENTRY(id_validation),
          TEST_ENTRY(sbuf_limits), TEST_ENTRY(json_escaping), TEST_ENTRY(wire_roundtrip_and_bounds),
          TEST_ENTRY(dict_operations), TEST_ENTRY(alloc_fault_injection),
          TEST_ENTRY(errors_have_messages))
