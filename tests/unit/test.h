/*
 * test.h - the in-house unit-test harness. A test file defines tests with
 * TEST(name) { ... }, lists them in TEST_MAIN(...), and can be run whole or
 * for one test by name: `test_log truncate_every_offset`. ASSERT_* print both
 * values and the line, then fail the current test only.
 */
#ifndef STRATA_TEST_H
#define STRATA_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_case {
    const char *name;
    void (*fn)(int *failed);
} test_case;

#define TEST(name) static void test_##name(int *test_failed_)
#define TEST_ENTRY(name) { #name, test_##name }

#define TEST_FAIL_(fmt, ...)                                                     \
    do {                                                                         \
        fprintf(stderr, "  %s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__); \
        *test_failed_ = 1;                                                       \
        return;                                                                  \
    } while (0)

#define ASSERT_TRUE(c)                                      \
    do {                                                    \
        if (!(c)) {                                         \
            TEST_FAIL_("expected true: %s", #c);            \
        }                                                   \
    } while (0)

#define ASSERT_EQ(a, b)                                                               \
    do {                                                                              \
        long long a_ = (long long)(a);                                                \
        long long b_ = (long long)(b);                                                \
        if (a_ != b_) {                                                               \
            TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                     \
        }                                                                             \
    } while (0)

#define ASSERT_NE(a, b)                                                               \
    do {                                                                              \
        long long a_ = (long long)(a);                                                \
        long long b_ = (long long)(b);                                                \
        if (a_ == b_) {                                                               \
            TEST_FAIL_("%s != %s: both %lld", #a, #b, a_);                            \
        }                                                                             \
    } while (0)

#define ASSERT_STREQ(a, b)                                                            \
    do {                                                                              \
        const char *a_ = (a);                                                         \
        const char *b_ = (b);                                                         \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                        \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",      \
                       b_ ? b_ : "(null)");                                           \
        }                                                                             \
    } while (0)

#define ASSERT_NEAR(a, b, eps)                                                        \
    do {                                                                              \
        double a_ = (double)(a);                                                      \
        double b_ = (double)(b);                                                      \
        if (!(a_ - b_ <= (eps) && b_ - a_ <= (eps))) {                                \
            TEST_FAIL_("%s ~= %s: %.9g vs %.9g", #a, #b, a_, b_);                     \
        }                                                                             \
    } while (0)

#define ASSERT_OK(rc) ASSERT_EQ((rc), 0)

static inline int test_run_all(const test_case *tests, size_t n, int argc, char **argv)
{
    int failures = 0;
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) {
            continue;
        }
        int failed = 0;
        tests[i].fn(&failed);
        ran++;
        printf("%s %s\n", failed ? "FAIL" : "ok  ", tests[i].name);
        fflush(stdout);
        failures += failed;
    }
    if (ran == 0) {
        fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(any)");
        return 2;
    }
    printf("%d passed, %d failed\n", ran - failures, failures);
    return failures ? 1 : 0;
}

#define TEST_MAIN(...)                                                        \
    int main(int argc, char **argv)                                           \
    {                                                                         \
        static const test_case tests_[] = {__VA_ARGS__};                      \
        return test_run_all(tests_, sizeof(tests_) / sizeof(tests_[0]), argc, argv); \
    }

/* A fresh temporary directory for a test; caller removes it with test_rmrf. */
static inline char *test_tmpdir(void)
{
    char tmpl[] = "/tmp/strata-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void test_rmrf(char *dir)
{
    if (dir != NULL) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", dir);
        }
        free(dir);
    }
}

#endif /* STRATA_TEST_H */
