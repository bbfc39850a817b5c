/*
 * fuzz_pii.c - libFuzzer target for PII detection and masking
 * (privacy/pii.c). Input: byte 0 is the kind mask (low 7 bits; bit 7 also
 * runs a capped pii_find), the rest is the text, copied to an exact-size heap
 * buffer so that any read past len is caught by ASan. Properties checked:
 *   - matches are in order, non-overlapping, non-empty, within the text, of
 *     a kind in the mask;
 *   - a capped find (max = 1..3) returns a prefix of the full result;
 *   - pii_mask counts as many replacements as pii_find finds and its output
 *     equals the text with each match replaced by its placeholder;
 *   - masking with no kinds returns the input unchanged;
 *   - valid UTF-8 in gives valid UTF-8 out (matches never cut a sequence);
 *   - a match copied out on its own is detected again at offset 0: removing
 *     the context around a match only removes reasons to refuse it. (Except
 *     a bare digit-run phone number, which needs a phone word before it.)
 * Also linked with replay_main.c so the seed corpus runs in the test suite.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "privacy/pii.h"

#define FUZZ_MAX_INPUT (64u * 1024u)

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_pii: %s\n", what);
    abort();
}

/* The text with each match replaced by its placeholder, built by hand. */
static void expect_masked(const char *text, size_t len, const pii_match *m, size_t n, sbuf *out)
{
    size_t copied = 0;
    for (size_t k = 0; k < n; k++) {
        if (sbuf_append(out, text + copied, m[k].start - copied) != STRATA_OK ||
            sbuf_puts(out, pii_placeholder(m[k].kind)) != STRATA_OK) {
            fuzz_fail("building the expected output");
        }
        copied = m[k].start + m[k].len;
    }
    if (sbuf_append(out, text + copied, len - copied) != STRATA_OK) {
        fuzz_fail("building the expected output");
    }
}

/* Re-detect one match on an exact-size copy of its bytes. */
static void check_isolated(const char *text, const pii_match *m, unsigned mask)
{
    bool bare = m->kind == PII_PHONE;
    for (size_t k = 0; bare && k < m->len; k++) {
        bare = text[m->start + k] >= '0' && text[m->start + k] <= '9';
    }
    if (bare) {
        return;
    }
    char *copy = malloc(m->len);
    if (copy == NULL) {
        return;
    }
    memcpy(copy, text + m->start, m->len);
    pii_match again[1];
    size_t n = 0;
    if (pii_find(copy, m->len, mask, again, 1, &n) != STRATA_OK) {
        fuzz_fail("pii_find failed on an isolated match");
    }
    if (n != 1 || again[0].start != 0) {
        fuzz_fail("an isolated match is not found again at offset 0");
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > FUZZ_MAX_INPUT) {
        return 0;
    }
    unsigned mask = data[0] & PII_ALL;
    bool capped = (data[0] & 0x80) != 0;
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    /* Every match is >= 3 bytes ("::1"), so len / 3 + 1 slots hold them all. */
    size_t max = len / 3 + 1;
    pii_match *m = malloc(max * sizeof(*m));
    if (text == NULL || m == NULL) {
        free(text);
        free(m);
        return 0;
    }
    memcpy(text, data + 1, len);

    size_t n = 0;
    if (pii_find(text, len, mask, m, max, &n) != STRATA_OK) {
        fuzz_fail("pii_find failed");
    }
    if (n == max) {
        fuzz_fail("more matches than len / 3");
    }
    for (size_t k = 0; k < n; k++) {
        if (m[k].len < 3 || m[k].start > len || m[k].len > len - m[k].start) {
            fuzz_fail("match out of bounds or too short");
        }
        if ((unsigned)m[k].kind >= PII_KIND_COUNT || !(mask & PII_BIT(m[k].kind))) {
            fuzz_fail("match of a kind not in the mask");
        }
        if (k > 0 && m[k].start < m[k - 1].start + m[k - 1].len) {
            fuzz_fail("matches overlap or are out of order");
        }
        check_isolated(text, &m[k], mask);
    }

    if (capped) {
        for (size_t cap = 1; cap <= 3; cap++) {
            pii_match few[3];
            size_t nf = 0;
            if (pii_find(text, len, mask, few, cap, &nf) != STRATA_OK) {
                fuzz_fail("capped pii_find failed");
            }
            if (nf != STRATA_MIN(cap, n)) {
                fuzz_fail("capped count is not min(max, found)");
            }
            for (size_t k = 0; k < nf; k++) {
                if (few[k].start != m[k].start || few[k].len != m[k].len ||
                    few[k].kind != m[k].kind) {
                    fuzz_fail("capped result is not a prefix of the full one");
                }
            }
        }
    }

    sbuf got;
    sbuf want;
    sbuf_init(&got, 8 * (size_t)FUZZ_MAX_INPUT);
    sbuf_init(&want, 8 * (size_t)FUZZ_MAX_INPUT);
    size_t n_masked = 0;
    if (pii_mask(text, len, mask, &got, &n_masked) != STRATA_OK) {
        fuzz_fail("pii_mask failed");
    }
    if (n_masked != n) {
        fuzz_fail("pii_mask and pii_find disagree on the count");
    }
    expect_masked(text, len, m, n, &want);
    if (got.len != want.len || (got.len > 0 && memcmp(got.data, want.data, got.len) != 0)) {
        fuzz_fail("pii_mask output differs from the matches");
    }
    if (utf8_valid(text, len) && !utf8_valid(got.data != NULL ? got.data : "", got.len)) {
        fuzz_fail("masking broke valid UTF-8");
    }

    sbuf_reset(&got);
    if (pii_mask(text, len, 0, &got, &n_masked) != STRATA_OK || n_masked != 0 ||
        got.len != len || (len > 0 && memcmp(got.data, text, len) != 0)) {
        fuzz_fail("masking with no kinds changed the text");
    }
    sbuf_free(&got);
    sbuf_free(&want);
    free(m);
    free(text);
    return 0;
}
