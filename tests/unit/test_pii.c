/*
 * test_pii.c - PII detection and masking (privacy/pii.c).
 *
 *   corpus            every line of tests/data/pii_corpus.tsv masks exactly as
 *                     labelled; prints per-kind span precision and recall
 *   corpus_prefixes   every prefix of every corpus text, as an exact-size heap
 *                     copy, so ASan catches any read past len
 *   <kind>_*          edge cases per kind, the Luhn and mod-97 helpers
 *   names, subset, cap, errors, sbuf limits, appending
 *   linear_time       pathological inputs (runs of dots, colons, '@', digit
 *                     groups) scan in linear time
 *   throughput        MB/s on prose and on prose with PII (printed; build
 *                     with -O2 without sanitizers for a meaningful figure)
 *
 * Corpus format: "kind<TAB>text<TAB>expected masked text" per line; kind is
 * "none" or a comma-separated list of kind names; '#' lines are comments. The
 * gold spans are recovered by aligning text with expected, each placeholder
 * standing for one or more bytes; "[IP]" is ipv6 when its span holds ':'.
 * The file is found through $STRATA_SOURCE_DIR/tests/data, else ../tests/data,
 * ../../tests/data, tests/data, or next to this source file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "privacy/pii.h"
#include "test.h"

#define SBUF_MAX (1u << 24)

/* ======================================================================= */
/* ---- helpers ----------------------------------------------------------- */

/* Mask text with mask into a fresh string (malloc'd copy; caller frees).
 * The input is an exact-size heap copy so ASan sees any over-read. */
static char *mask_str(const char *text, unsigned mask, size_t *n_masked)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, text, len);
    sbuf b;
    sbuf_init(&b, SBUF_MAX);
    int rc = pii_mask(copy, len, mask, &b, n_masked);
    free(copy);
    char *out = NULL;
    if (rc == STRATA_OK) {
        out = strdup(b.data != NULL ? b.data : "");
    }
    sbuf_free(&b);
    return out;
}

/* Does masking text with mask give want? Prints the difference if not. */
static bool masks_to(const char *text, unsigned mask, const char *want, int line)
{
    char *got = mask_str(text, mask, NULL);
    bool ok = got != NULL && strcmp(got, want) == 0;
    if (!ok) {
        fprintf(stderr, "  line %d: mask(\"%s\")\n    want \"%s\"\n    got  \"%s\"\n", line, text,
                want, got != NULL ? got : "(error)");
    }
    free(got);
    return ok;
}

#define ASSERT_MASK(text, want) ASSERT_TRUE(masks_to((text), PII_ALL, (want), __LINE__))
#define ASSERT_MASK_K(text, mask, want) ASSERT_TRUE(masks_to((text), (mask), (want), __LINE__))
#define ASSERT_SAME(text) ASSERT_TRUE(masks_to((text), PII_ALL, (text), __LINE__))

/* ======================================================================= */
/* ---- corpus ------------------------------------------------------------ */

typedef struct span {
    size_t start;
    size_t len;
    pii_kind kind;
} span;

#define SPANS_MAX 32

static const struct {
    const char *text;
    pii_kind kind;      /* PII_IPV4 stands for "[IP]": resolved by content */
} g_ph[] = {
    {"[EMAIL]", PII_EMAIL}, {"[PHONE]", PII_PHONE}, {"[CARD]", PII_CARD},
    {"[IBAN]", PII_IBAN},   {"[SSN]", PII_SSN},     {"[IP]", PII_IPV4},
};

/* The placeholder starting at e, or -1. */
static int placeholder_at(const char *e)
{
    for (size_t k = 0; k < STRATA_ARRAY_LEN(g_ph); k++) {
        if (strncmp(e, g_ph[k].text, strlen(g_ph[k].text)) == 0) {
            return (int)k;
        }
    }
    return -1;
}

/* Pattern items of an expected line: a literal byte or a placeholder. */
typedef struct item {
    int ph;             /* index into g_ph, or -1 for a literal */
    char c;
} item;

/* Gold spans: align text (n bytes) with the expected line, each placeholder
 * matching one or more bytes. The alignment must be unique: taking each
 * placeholder as short as possible and as long as possible must agree, or
 * the label is ambiguous ("[PHONE] [CARD]" over "+1 415 555 2671 4111...").
 * Returns the number of spans, or -1 when text and expected cannot be
 * aligned or align in more than one way (a corpus error). */
static int gold_spans(const char *text, size_t n, const char *exp, span *out)
{
    size_t m = 0;
    size_t cap = strlen(exp) + 1;
    item *pat = malloc(cap * sizeof(*pat));
    /* reach[i * (m + 1) + j]: text[i..] matches pat[j..] */
    unsigned char *reach = NULL;
    int count = -1;
    if (pat == NULL) {
        return -1;
    }
    for (const char *e = exp; *e != '\0';) {
        int ph = placeholder_at(e);
        pat[m].ph = ph;
        pat[m].c = *e;
        e += ph >= 0 ? strlen(g_ph[ph].text) : 1;
        m++;
    }
    reach = calloc((n + 1) * (m + 1), 1);
    if (reach == NULL) {
        goto done;
    }
#define R(i, j) reach[(i) * (m + 1) + (j)]
    R(n, m) = 1;
    for (size_t j = m; j-- > 0;) {
        for (size_t i = n + 1; i-- > 0;) {
            if (pat[j].ph < 0) {
                R(i, j) = i < n && text[i] == pat[j].c && R(i + 1, j + 1);
            } else {
                /* one or more bytes: text[i] then either stop or go on */
                R(i, j) = i < n && (R(i + 1, j + 1) || R(i + 1, j));
            }
        }
    }
    if (!R(0, 0)) {
        goto done;
    }
    count = 0;
    size_t i = 0;
    size_t i_long = 0;
    for (size_t j = 0; j < m; j++) {
        if (pat[j].ph < 0) {
            i++;
            i_long++;
            continue;
        }
        size_t k = i + 1;
        while (!R(k, j + 1)) {
            k++;
        }
        size_t k_long = n;
        while (!R(k_long, j + 1)) {
            k_long--;
        }
        if (i_long != i || k_long != k) {
            count = -1;
            goto done;
        }
        i_long = k_long;
        if (count < SPANS_MAX) {
            pii_kind kind = g_ph[pat[j].ph].kind;
            if (kind == PII_IPV4 && memchr(text + i, ':', k - i) != NULL) {
                kind = PII_IPV6;
            }
            out[count].start = i;
            out[count].len = k - i;
            out[count].kind = kind;
            count++;
        }
        i = k;
    }
#undef R
done:
    free(reach);
    free(pat);
    return count;
}

/* The corpus file, found as the header comment says. NULL if absent. */
static FILE *corpus_open(char *path, size_t cap)
{
    const char *rel = "pii_corpus.tsv";
    const char *env = getenv("STRATA_SOURCE_DIR");
    char here[1024];
    snprintf(here, sizeof(here), "%s", __FILE__);
    char *slash = strrchr(here, '/');
    if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(here, sizeof(here), ".");
    }
    char dirs[5][1100];
    size_t nd = 0;
    if (env != NULL && *env != '\0') {
        snprintf(dirs[nd++], sizeof(dirs[0]), "%s/tests/data", env);
    }
    snprintf(dirs[nd++], sizeof(dirs[0]), "../tests/data");
    snprintf(dirs[nd++], sizeof(dirs[0]), "../../tests/data");
    snprintf(dirs[nd++], sizeof(dirs[0]), "tests/data");
    snprintf(dirs[nd++], sizeof(dirs[0]), "%s/../data", here);
    for (size_t k = 0; k < nd; k++) {
        snprintf(path, cap, "%s/%s", dirs[k], rel);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            return f;
        }
    }
    return NULL;
}

typedef struct corpus_line {
    int lineno;
    unsigned kinds;     /* declared in column 1 */
    char *text;
    char *expected;
} corpus_line;

typedef struct corpus {
    corpus_line *lines;
    size_t n;
    char *buf;          /* the file, cut into fields in place */
} corpus;

static void corpus_free(corpus *c)
{
    free(c->lines);
    free(c->buf);
    c->lines = NULL;
    c->buf = NULL;
    c->n = 0;
}

/* Load and split the corpus; false (with a message) on any format error. */
static bool corpus_load(corpus *c)
{
    memset(c, 0, sizeof(*c));
    char path[8192];
    FILE *f = corpus_open(path, sizeof(path));
    if (f == NULL) {
        fprintf(stderr, "  pii_corpus.tsv not found (set STRATA_SOURCE_DIR)\n");
        return false;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    c->buf = malloc((size_t)size + 1);
    if (c->buf == NULL || fread(c->buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        return false;
    }
    fclose(f);
    c->buf[size] = '\0';
    size_t max_lines = 1;
    for (long k = 0; k < size; k++) {
        max_lines += c->buf[k] == '\n';
    }
    c->lines = calloc(max_lines, sizeof(*c->lines));
    if (c->lines == NULL) {
        return false;
    }
    int lineno = 0;
    for (char *p = c->buf; *p != '\0';) {
        char *nl = strchr(p, '\n');
        char *next = nl != NULL ? nl + 1 : p + strlen(p);
        if (nl != NULL) {
            *nl = '\0';
        }
        lineno++;
        if (*p != '\0' && *p != '#') {
            char *t1 = strchr(p, '\t');
            char *t2 = t1 != NULL ? strchr(t1 + 1, '\t') : NULL;
            if (t2 == NULL || strchr(t2 + 1, '\t') != NULL) {
                fprintf(stderr, "  %s:%d: want 3 tab-separated fields\n", path, lineno);
                return false;
            }
            *t1 = '\0';
            *t2 = '\0';
            unsigned kinds = 0;
            if (strcmp(p, "none") != 0 && pii_kinds_parse(p, &kinds) != STRATA_OK) {
                fprintf(stderr, "  %s:%d: bad kind list \"%s\"\n", path, lineno, p);
                return false;
            }
            corpus_line *l = &c->lines[c->n++];
            l->lineno = lineno;
            l->kinds = kinds;
            l->text = t1 + 1;
            l->expected = t2 + 1;
        }
        p = next;
    }
    printf("  corpus: %s, %zu lines\n", path, c->n);
    return true;
}

typedef struct prf {
    size_t gold;
    size_t pred;
    size_t tp;
} prf;

static void print_prf(const char *name, const prf *s)
{
    double p = s->pred ? (double)s->tp / (double)s->pred : 1.0;
    double r = s->gold ? (double)s->tp / (double)s->gold : 1.0;
    printf("  %-8s gold %4zu  found %4zu  correct %4zu  precision %.3f  recall %.3f\n", name,
           s->gold, s->pred, s->tp, p, r);
}

TEST(corpus)
{
    corpus c;
    bool loaded = corpus_load(&c);
    if (!loaded) {
        corpus_free(&c);
    }
    ASSERT_TRUE(loaded);
    ASSERT_TRUE(c.n >= 150);
    prf per[PII_KIND_COUNT];
    memset(per, 0, sizeof(per));
    size_t mismatches = 0;
    size_t bad_labels = 0;
    size_t negatives = 0;
    for (size_t k = 0; k < c.n; k++) {
        const corpus_line *l = &c.lines[k];
        size_t n = strlen(l->text);
        span gold[SPANS_MAX];
        int ng = gold_spans(l->text, n, l->expected, gold);
        unsigned gold_kinds = 0;
        for (int g = 0; g < ng; g++) {
            gold_kinds |= PII_BIT(gold[g].kind);
        }
        if (ng < 0 || gold_kinds != l->kinds) {
            fprintf(stderr, "  line %d: label does not fit the expected text\n", l->lineno);
            bad_labels++;
            continue;
        }
        negatives += ng == 0;
        /* Detection, on an exact-size heap copy. */
        char *copy = malloc(n ? n : 1);
        ASSERT_TRUE(copy != NULL);
        memcpy(copy, l->text, n);
        pii_match m[SPANS_MAX];
        size_t nm = 0;
        int rc = pii_find(copy, n, PII_ALL, m, SPANS_MAX, &nm);
        free(copy);
        ASSERT_OK(rc);
        for (int g = 0; g < ng; g++) {
            per[gold[g].kind].gold++;
        }
        for (size_t j = 0; j < nm; j++) {
            per[m[j].kind].pred++;
            bool hit = false;
            for (int g = 0; g < ng && !hit; g++) {
                hit = gold[g].start == m[j].start && gold[g].len == m[j].len &&
                      gold[g].kind == m[j].kind;
            }
            per[m[j].kind].tp += hit;
            if (!hit && getenv("PII_VERBOSE") != NULL) {
                fprintf(stderr, "  line %d: %s at %zu+%zu is not gold\n", l->lineno,
                        pii_kind_name(m[j].kind), m[j].start, m[j].len);
            }
        }
        /* Masking, compared with the label. */
        char *got = mask_str(l->text, PII_ALL, NULL);
        ASSERT_TRUE(got != NULL);
        if (strcmp(got, l->expected) != 0) {
            fprintf(stderr, "  line %d mismatch\n    text %s\n    want %s\n    got  %s\n",
                    l->lineno, l->text, l->expected, got);
            mismatches++;
        }
        free(got);
    }
    prf all = {0, 0, 0};
    printf("  %zu lines (%zu without PII), span-exact scores:\n", c.n, negatives);
    for (int k = 0; k < PII_KIND_COUNT; k++) {
        print_prf(pii_kind_name((pii_kind)k), &per[k]);
        all.gold += per[k].gold;
        all.pred += per[k].pred;
        all.tp += per[k].tp;
    }
    print_prf("overall", &all);
    printf("  %zu of %zu lines mismatch\n", mismatches, c.n);
    corpus_free(&c);
    ASSERT_EQ(bad_labels, 0);
    ASSERT_EQ(mismatches, 0);
}

/* Every prefix of every corpus text as an exact-size heap copy: ASan reports
 * any read past len. Also checks the find/mask agreement on each. */
TEST(corpus_prefixes)
{
    corpus c;
    bool loaded = corpus_load(&c);
    if (!loaded) {
        corpus_free(&c);
    }
    ASSERT_TRUE(loaded);
    size_t runs = 0;
    for (size_t k = 0; k < c.n; k++) {
        const char *text = c.lines[k].text;
        size_t n = strlen(text);
        for (size_t len = 0; len <= n; len++) {
            char *copy = malloc(len ? len : 1);
            ASSERT_TRUE(copy != NULL);
            memcpy(copy, text, len);
            pii_match m[SPANS_MAX];
            size_t nm = 0;
            ASSERT_OK(pii_find(copy, len, PII_ALL, m, SPANS_MAX, &nm));
            sbuf b;
            sbuf_init(&b, SBUF_MAX);
            size_t nmask = 0;
            int rc = pii_mask(copy, len, PII_ALL, &b, &nmask);
            free(copy);
            sbuf_free(&b);
            ASSERT_OK(rc);
            ASSERT_EQ(nmask, nm);
            for (size_t j = 0; j < nm; j++) {
                ASSERT_TRUE(m[j].start + m[j].len <= len);
            }
            runs++;
        }
    }
    printf("  %zu prefixes scanned\n", runs);
    corpus_free(&c);
}

/* ======================================================================= */
/* ---- names ------------------------------------------------------------- */

TEST(names)
{
    static const char *const ph[] = {"[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]",
                                     "[SSN]",   "[IP]",    "[IP]"};
    static const char *const nm[] = {"email", "phone", "card", "iban", "ssn", "ipv4", "ipv6"};
    for (int k = 0; k < PII_KIND_COUNT; k++) {
        ASSERT_STREQ(pii_placeholder((pii_kind)k), ph[k]);
        ASSERT_STREQ(pii_kind_name((pii_kind)k), nm[k]);
        pii_kind back = PII_KIND_COUNT;
        ASSERT_OK(pii_kind_parse(nm[k], &back));
        ASSERT_EQ(back, k);
    }
    ASSERT_EQ(PII_ALL, 0x7f);
    ASSERT_STREQ(pii_placeholder(PII_KIND_COUNT), "[PII]");
    ASSERT_STREQ(pii_kind_name((pii_kind)99), "unknown");
    pii_kind k = PII_EMAIL;
    ASSERT_OK(pii_kind_parse("IPv6", &k));
    ASSERT_EQ(k, PII_IPV6);
    ASSERT_EQ(pii_kind_parse("ip", &k), STRATA_EINVAL);
    ASSERT_EQ(pii_kind_parse("", &k), STRATA_EINVAL);
    ASSERT_EQ(pii_kind_parse("emails", &k), STRATA_EINVAL);
    ASSERT_EQ(pii_kind_parse(NULL, &k), STRATA_EINVAL);

    unsigned mask = 99;
    ASSERT_OK(pii_kinds_parse("email, phone ,ip", &mask));
    ASSERT_EQ(mask, PII_BIT(PII_EMAIL) | PII_BIT(PII_PHONE) | PII_IP);
    ASSERT_OK(pii_kinds_parse("all", &mask));
    ASSERT_EQ(mask, PII_ALL);
    ASSERT_OK(pii_kinds_parse("none", &mask));
    ASSERT_EQ(mask, 0);
    ASSERT_OK(pii_kinds_parse("", &mask));
    ASSERT_EQ(mask, 0);
    ASSERT_OK(pii_kinds_parse("SSN,card", &mask));
    ASSERT_EQ(mask, PII_BIT(PII_SSN) | PII_BIT(PII_CARD));
    ASSERT_EQ(pii_kinds_parse("email,bogus", &mask), STRATA_EINVAL);
    ASSERT_EQ(mask, 0);
    ASSERT_EQ(pii_kinds_parse("email,,phone", &mask), STRATA_EINVAL);
    ASSERT_EQ(pii_kinds_parse(NULL, &mask), STRATA_EINVAL);
}

/* ======================================================================= */
/* ---- checksum helpers -------------------------------------------------- */

TEST(luhn)
{
    static const char *const valid[] = {
        "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
        "30569309025904",   "79927398713",      "0000000000000000", "18", "00",
    };
    for (size_t k = 0; k < STRATA_ARRAY_LEN(valid); k++) {
        ASSERT_TRUE(pii_luhn_valid(valid[k], strlen(valid[k])));
    }
    static const char *const invalid[] = {
        "4111111111111112", "79927398710", "1234567890123456", "19", "4111 1111 1111 1111",
        "411111111111111a",
    };
    for (size_t k = 0; k < STRATA_ARRAY_LEN(invalid); k++) {
        ASSERT_TRUE(!pii_luhn_valid(invalid[k], strlen(invalid[k])));
    }
    ASSERT_TRUE(!pii_luhn_valid("0", 1));
    ASSERT_TRUE(!pii_luhn_valid("", 0));
    ASSERT_TRUE(!pii_luhn_valid(NULL, 5));
    /* Every single-digit change of a valid number breaks the check. */
    char num[] = "4012888888881881";
    for (size_t pos = 0; pos < 16; pos++) {
        char orig = num[pos];
        for (char d = '0'; d <= '9'; d++) {
            num[pos] = d;
            ASSERT_EQ(pii_luhn_valid(num, 16), d == orig);
        }
        num[pos] = orig;
    }
}

TEST(mod97)
{
    ASSERT_EQ(pii_mod97("0", 1), 0);
    ASSERT_EQ(pii_mod97("96", 2), 96);
    ASSERT_EQ(pii_mod97("97", 2), 0);
    ASSERT_EQ(pii_mod97("98", 2), 1);
    ASSERT_EQ(pii_mod97("A", 1), 10);
    ASSERT_EQ(pii_mod97("z", 1), 35);
    ASSERT_EQ(pii_mod97("1A", 2), 110 % 97);
    /* 10^30 mod 97, computed on 31 digits: exercises the running remainder. */
    ASSERT_EQ(pii_mod97("1000000000000000000000000000000", 31), 85);
    /* GB82WEST12345698765432 rearranged: WEST12345698765432GB82 -> 1. */
    ASSERT_EQ(pii_mod97("WEST12345698765432GB82", 22), 1);
    ASSERT_EQ(pii_mod97("370400440532013000DE89", 22), 1);
    ASSERT_EQ(pii_mod97("370400440532013000DE88", 22), 0);
    ASSERT_EQ(pii_mod97("12 3", 4), -1);
    ASSERT_EQ(pii_mod97("", 0), -1);
    ASSERT_EQ(pii_mod97(NULL, 3), -1);

    ASSERT_TRUE(pii_iban_valid("DE89370400440532013000", 22));
    ASSERT_TRUE(pii_iban_valid("DE89 3704 0044 0532 0130 00", 27));
    ASSERT_TRUE(pii_iban_valid("gb82 west 1234 5698 7654 32", 27));
    ASSERT_TRUE(pii_iban_valid("NO9386011117947", 15));
    ASSERT_TRUE(pii_iban_valid("MT84MALT011000012345MTLCAST001S", 31));
    ASSERT_TRUE(!pii_iban_valid("DE88370400440532013000", 22));        /* check digits */
    ASSERT_TRUE(!pii_iban_valid("DE8937040044053201300", 21));         /* length */
    ASSERT_TRUE(!pii_iban_valid("DE893704004405320130000", 23));
    ASSERT_TRUE(!pii_iban_valid("XX89370400440532013000", 22));        /* country */
    ASSERT_TRUE(!pii_iban_valid("DE89 37040044 0532 0130 00", 26));    /* grouping */
    ASSERT_TRUE(!pii_iban_valid("DE89  3704 0044 0532 0130 00", 28));
    ASSERT_TRUE(!pii_iban_valid("DE89-3704-0044-0532-0130-00", 27));
    ASSERT_TRUE(!pii_iban_valid("", 0));
    ASSERT_TRUE(!pii_iban_valid(NULL, 22));
}

/* ======================================================================= */
/* ---- per-kind edge cases ---------------------------------------------- */

TEST(email_edges)
{
    ASSERT_MASK("a@b.io", "[EMAIL]");
    ASSERT_MASK("x a@b.io.", "x [EMAIL].");
    ASSERT_MASK("first.m.last@dept.uni.example.edu!", "[EMAIL]!");
    ASSERT_MASK("_svc@example.com", "[EMAIL]");
    ASSERT_MASK("-john@example.com", "-[EMAIL]");
    ASSERT_MASK(".john@example.com", ".[EMAIL]");
    ASSERT_MASK("x..y@example.com", "x..[EMAIL]");       /* only the valid tail */
    ASSERT_MASK("a@b.com@c.com", "a@[EMAIL]");            /* first domain glued to '@' */
    ASSERT_MASK("john@example.com_", "john@example.com_");
    ASSERT_MASK("john@-example.com", "john@-example.com");
    ASSERT_MASK("john@example-.com", "john@example-.com");
    ASSERT_MASK("john.@example.com", "john.@example.com");
    ASSERT_MASK("john@example.c0m", "john@example.c0m");
    ASSERT_MASK("john@sub..example.com", "john@sub..example.com");
    ASSERT_SAME("@everyone hi");
    ASSERT_SAME("foo@bar");
    ASSERT_SAME("avatar@2x.PNG");
    ASSERT_MASK("x@1.2.3.4", "x@[IP]");                   /* no alphabetic TLD */
    /* 64-byte local part is the limit. */
    char buf[200];
    memset(buf, 'a', 64);
    strcpy(buf + 64, "@example.com");
    ASSERT_MASK(buf, "[EMAIL]");
    memset(buf, 'a', 65);
    strcpy(buf + 65, "@example.com");
    ASSERT_SAME(buf);
    /* A label longer than 63 bytes is refused. */
    strcpy(buf, "a@");
    memset(buf + 2, 'b', 64);
    strcpy(buf + 66, ".com");
    ASSERT_SAME(buf);
    /* Latin letters belong to words: no match starting mid-word. */
    ASSERT_MASK("Grüße an anna@example.de", "Grüße an [EMAIL]");
    ASSERT_SAME("née4111111111111111");
}

TEST(phone_edges)
{
    ASSERT_MASK("+442079460958", "[PHONE]");
    ASSERT_SAME("+123456789");                /* compact needs >= 10 digits */
    ASSERT_SAME("+0 20 7946 0958");           /* no country code 0 */
    ASSERT_MASK("+1 415 555 2671", "[PHONE]");
    ASSERT_SAME("+1 2 3 4 5 6 7 8");          /* single-digit groups */
    ASSERT_SAME("+3.14159265358");            /* dots need short groups */
    ASSERT_MASK("(415)555-2671", "[PHONE]");
    ASSERT_MASK("(415)-555-2671", "[PHONE]");
    ASSERT_SAME("(415).555.2671");
    ASSERT_SAME("415-555.2671");              /* mixed separators */
    ASSERT_SAME("415 555-2671 x");            /* mixed */
    ASSERT_SAME("115-555-2671");              /* area starts with 1 */
    ASSERT_SAME("415-155-2671");              /* exchange starts with 1 */
    ASSERT_SAME("911-555-2671");              /* N11 */
    ASSERT_MASK("1.415.555.2671", "[PHONE]");
    ASSERT_SAME("2-415-555-2671");
    ASSERT_SAME("415-555-26710");
    ASSERT_SAME("415-555-2671-9");            /* joined to more digits */
    ASSERT_SAME("415-555-2671.5");
    ASSERT_SAME("x415-555-2671");
    ASSERT_SAME("#415-555-2671");
    ASSERT_SAME("A-415-555-2671");
    ASSERT_MASK("(415-555-2671)", "([PHONE])");
    ASSERT_MASK("415-555-2671, 415-555-2672", "[PHONE], [PHONE]");
    ASSERT_MASK("415-555-2671,415-555-2672", "[PHONE],[PHONE]");
    ASSERT_SAME("00 44 20 7946 0958");
    ASSERT_SAME("0044-20 7946-0958");         /* 00 form needs one separator */
    ASSERT_MASK("0049-30-1234567", "[PHONE]");
    ASSERT_SAME("020 794");                   /* too short */
    ASSERT_SAME("020 030 040 050 060");       /* trunk-0 must be the whole run */
    ASSERT_MASK("020 7946 0958 and 5", "[PHONE] and 5");
    ASSERT_SAME("01-02-2023-1234");           /* date first */
    ASSERT_MASK("(020) 7946 0958", "[PHONE]");
    ASSERT_SAME("12.34.56.78.90");            /* dotted pairs need the trunk 0 */
    ASSERT_SAME("Phone: 1234567890");         /* bare, not NANP */
    ASSERT_SAME("Price: 4155552671");         /* bare, no phone word */
    ASSERT_MASK("Tel 0201234567", "Tel [PHONE]");
    ASSERT_MASK("Order: call 415-555-2671", "Order: call [PHONE]");
    ASSERT_SAME("Invoice number: 415-555-2671");
    ASSERT_SAME("paid 123 415-555-2671");     /* continues a spaced number */
    ASSERT_MASK("+1 415-555-2671 ext 9", "[PHONE] ext 9");
    ASSERT_MASK("+44 20 7946 0958 2024", "[PHONE] 2024");
}

TEST(card_edges)
{
    ASSERT_MASK("4111111111111111", "[CARD]");
    ASSERT_MASK("4111 1111 1111 1111", "[CARD]");
    ASSERT_SAME("4111 1111-1111 1111");       /* mixed separators */
    ASSERT_SAME("411 11111 1111 1111");       /* grouping */
    ASSERT_SAME("41111111 11111111");
    ASSERT_MASK("4111111111111111,", "[CARD],");
    ASSERT_SAME("x4111111111111111");
    ASSERT_SAME("4111111111111111x");
    ASSERT_SAME("4111111111111111-7");
    ASSERT_SAME("41111111111111111111");      /* 20 digits */
    ASSERT_MASK("4111111111111111110", "[CARD]");     /* Visa 19, Luhn-valid */
    ASSERT_SAME("5111111111111111119");       /* Luhn-valid, but MC must be 16 */
    ASSERT_SAME("3782822463100055");          /* Amex must be 15 */
    ASSERT_SAME("9111111111111111");          /* no issuer */
    ASSERT_MASK("Card #4111111111111111", "Card #[CARD]");
    ASSERT_MASK("6500000000000002", "[CARD]");        /* Discover 65 */
    ASSERT_MASK("2720990000000007", "[CARD]");        /* MC 2-series end */
    ASSERT_SAME("2721000000000004");          /* just past it, Luhn-valid */
}

TEST(iban_edges)
{
    ASSERT_MASK("GB82WEST12345698765432", "[IBAN]");
    ASSERT_MASK("(GB82 WEST 1234 5698 7654 32)", "([IBAN])");
    ASSERT_MASK("DE89 3704 0044 0532 0130 00.", "[IBAN].");
    ASSERT_SAME("DE89370400440532013000X");
    ASSERT_SAME("XDE89370400440532013000");
    ASSERT_SAME("DE89 3704 0044 0532 0130 0");
    ASSERT_MASK("IBAN:NL91ABNA0417164300", "IBAN:[IBAN]");
    ASSERT_MASK("FR1420041010050500013M02606", "[IBAN]");
    /* Only IBAN on: the digits inside are nothing else. */
    ASSERT_MASK_K("DE89 3704 0044 0532 0130 00", PII_BIT(PII_IBAN), "[IBAN]");
    ASSERT_MASK_K("DE89 3704 0044 0532 0130 00", PII_BIT(PII_PHONE),
                  "DE89 3704 0044 0532 0130 00");
}

TEST(ssn_edges)
{
    ASSERT_MASK("123-45-6789", "[SSN]");
    ASSERT_MASK("123 45 6789", "[SSN]");
    ASSERT_SAME("123-45 6789");
    ASSERT_SAME("123456789");
    ASSERT_SAME("000-45-6789");
    ASSERT_SAME("666-45-6789");
    ASSERT_SAME("900-45-6789");
    ASSERT_SAME("999-45-6789");
    ASSERT_MASK("899-45-6789", "[SSN]");
    ASSERT_MASK("001-01-0001", "[SSN]");
    ASSERT_SAME("123-00-6789");
    ASSERT_SAME("123-45-0000");
    ASSERT_SAME("1123-45-6789");
    ASSERT_SAME("123-45-67890");
    ASSERT_SAME("123-45-6789-1");
    ASSERT_SAME("x123-45-6789");
    ASSERT_SAME("1 123 45 6789");
    ASSERT_SAME("123 45 6789 1");
    ASSERT_MASK("(123-45-6789)", "([SSN])");
    ASSERT_SAME("123-45-678");
}

TEST(ipv4_edges)
{
    ASSERT_MASK("0.0.0.0", "[IP]");
    ASSERT_MASK("255.255.255.255", "[IP]");
    ASSERT_SAME("255.255.255.256");
    ASSERT_SAME("1.2.3");
    ASSERT_SAME("1.2.3.4.5");
    ASSERT_MASK("1.2.3.4.", "[IP].");        /* a full stop is not a dotted run */
    ASSERT_SAME("01.2.3.4");
    ASSERT_SAME("1.2.3.04");
    ASSERT_SAME("1.2.3.1000");
    ASSERT_SAME("a1.2.3.4");
    ASSERT_SAME("1.2.3.4a");
    ASSERT_SAME(".1.2.3.4");
    ASSERT_SAME("1.2.3.4.x");
    ASSERT_MASK("at 1.2.3.4. Then", "at [IP]. Then");
    ASSERT_MASK("[10.0.0.1]", "[[IP]]");
    ASSERT_MASK("10.0.0.1:22", "[IP]:22");
    ASSERT_SAME("build-10.0.0.1");
    ASSERT_SAME("release 10.0.0.1");
    ASSERT_MASK("host-1 10.0.0.1", "host-1 [IP]");
}

TEST(ipv6_edges)
{
    ASSERT_MASK("::1", "[IP]");
    ASSERT_SAME("::");                        /* no digit */
    ASSERT_SAME(":::1");
    ASSERT_SAME("1::2::3");
    ASSERT_MASK("1:2:3:4:5:6:7:8", "[IP]");
    ASSERT_SAME("1:2:3:4:5:6:7");
    ASSERT_SAME("1:2:3:4:5:6:7:8:9");
    ASSERT_MASK("1:2:3:4:5:6:7::", "[IP]");
    ASSERT_SAME("1:2:3:4:5:6:7:8::");         /* 8 groups plus :: */
    ASSERT_MASK("::ffff:10.0.0.1", "[IP]");
    ASSERT_MASK("1:2:3:4:5:6:1.2.3.4", "[IP]");
    /* Too many groups for v6; the quad after the last ':' is still an IPv4
     * address, as in "IP:10.0.0.1". */
    ASSERT_MASK("1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5:6:7:[IP]");
    ASSERT_SAME("::ffff:1.2.3");
    ASSERT_SAME("2001:db8::12345");
    ASSERT_SAME("2001:db8::1g");
    ASSERT_SAME("x2001:db8::1");
    ASSERT_SAME("12:30");
    ASSERT_SAME("10:20:30");
    ASSERT_SAME("cafe::babe");
    ASSERT_SAME("3::2");                      /* compressed needs 3+ hex digits */
    ASSERT_MASK("1::2:3", "[IP]");
    ASSERT_MASK("cafe::1", "[IP]");
    ASSERT_MASK("FE80::1", "[IP]");
    ASSERT_MASK("[::1]:8080", "[[IP]]:8080");
    /* Only the v6 kind: the embedded v4 is part of it, not separate. */
    ASSERT_MASK_K("::ffff:10.0.0.1 and 10.0.0.2", PII_BIT(PII_IPV6), "[IP] and 10.0.0.2");
    ASSERT_MASK_K("::ffff:10.0.0.1 and 10.0.0.2", PII_BIT(PII_IPV4),
                  "::ffff:[IP] and [IP]");
}

/* ======================================================================= */
/* ---- API behaviour ----------------------------------------------------- */

static const char g_all[] =
    "mail a@b.io, call +44 20 7946 0958, card 4111111111111111, iban "
    "GB82WEST12345698765432, ssn 123-45-6789, ip 10.0.0.1 and ::1.";

TEST(subset)
{
    ASSERT_MASK(g_all, "mail [EMAIL], call [PHONE], card [CARD], iban [IBAN], ssn [SSN], "
                       "ip [IP] and [IP].");
    ASSERT_MASK_K(g_all, 0, g_all);
    ASSERT_MASK_K(g_all, PII_BIT(PII_EMAIL) | PII_BIT(PII_IPV4),
                  "mail [EMAIL], call +44 20 7946 0958, card 4111111111111111, iban "
                  "GB82WEST12345698765432, ssn 123-45-6789, ip [IP] and ::1.");
    ASSERT_MASK_K(g_all, PII_BIT(PII_CARD) | PII_BIT(PII_SSN),
                  "mail a@b.io, call +44 20 7946 0958, card [CARD], iban "
                  "GB82WEST12345698765432, ssn [SSN], ip 10.0.0.1 and ::1.");
    ASSERT_MASK_K(g_all, PII_IP | 0x80000000u,       /* stray high bits ignored */
                  "mail a@b.io, call +44 20 7946 0958, card 4111111111111111, iban "
                  "GB82WEST12345698765432, ssn 123-45-6789, ip [IP] and [IP].");
    for (int k = 0; k < PII_KIND_COUNT; k++) {
        pii_match m[16];
        size_t n = 0;
        ASSERT_OK(pii_find(g_all, strlen(g_all), PII_BIT(k), m, 16, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(m[0].kind, k);
    }
    size_t nm = 0;
    char *s = mask_str(g_all, PII_ALL, &nm);
    ASSERT_TRUE(s != NULL);
    free(s);
    ASSERT_EQ(nm, 7);
}

TEST(find_cap)
{
    size_t len = strlen(g_all);
    pii_match all[16];
    size_t n = 0;
    ASSERT_OK(pii_find(g_all, len, PII_ALL, all, 16, &n));
    ASSERT_EQ(n, 7);
    static const pii_kind order[] = {PII_EMAIL, PII_PHONE, PII_CARD, PII_IBAN,
                                     PII_SSN,   PII_IPV4,  PII_IPV6};
    for (size_t k = 0; k < n; k++) {
        ASSERT_EQ(all[k].kind, order[k]);
        ASSERT_TRUE(k == 0 || all[k].start >= all[k - 1].start + all[k - 1].len);
    }
    ASSERT_EQ(all[0].start, 5);
    ASSERT_EQ(all[0].len, 6);
    pii_match two[2];
    ASSERT_OK(pii_find(g_all, len, PII_ALL, two, 2, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(two[1].start, all[1].start);
    ASSERT_EQ(two[1].len, all[1].len);
    ASSERT_OK(pii_find(g_all, len, PII_ALL, NULL, 0, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(pii_find(NULL, 0, PII_ALL, all, 16, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(pii_find(g_all, len, 0, all, 16, &n));
    ASSERT_EQ(n, 0);
    /* len bounds the scan even inside a NUL-terminated string. */
    ASSERT_OK(pii_find(g_all, 10, PII_ALL, all, 16, &n));   /* "mail a@b.i" */
    ASSERT_EQ(n, 0);
    ASSERT_OK(pii_find(g_all, 11, PII_ALL, all, 16, &n));
    ASSERT_EQ(n, 1);
}

TEST(errors)
{
    pii_match m[4];
    size_t n = 7;
    ASSERT_EQ(pii_find(NULL, 3, PII_ALL, m, 4, &n), STRATA_EINVAL);
    ASSERT_EQ(n, 0);
    n = 7;
    ASSERT_EQ(pii_find("abc", 3, PII_ALL, NULL, 4, &n), STRATA_EINVAL);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(pii_find("abc", 3, PII_ALL, m, 4, NULL), STRATA_EINVAL);
    sbuf b;
    sbuf_init(&b, 64);
    size_t nm = 5;
    ASSERT_EQ(pii_mask(NULL, 3, PII_ALL, &b, &nm), STRATA_EINVAL);
    ASSERT_EQ(nm, 0);
    ASSERT_EQ(pii_mask("abc", 3, PII_ALL, NULL, &nm), STRATA_EINVAL);
    ASSERT_OK(pii_mask(NULL, 0, PII_ALL, &b, NULL));
    ASSERT_EQ(b.len, 0);
    sbuf_free(&b);
}

TEST(mask_appends_and_limits)
{
    sbuf b;
    sbuf_init(&b, 40);
    ASSERT_OK(sbuf_puts(&b, "prefix: "));
    size_t nm = 0;
    const char *t = "to a@b.io now";
    ASSERT_OK(pii_mask(t, strlen(t), PII_ALL, &b, &nm));
    ASSERT_STREQ(b.data, "prefix: to [EMAIL] now");
    ASSERT_EQ(nm, 1);
    /* Over the limit: ETOOBIG, and the buffer is back as it was. */
    const char *u = "x@example.com and y@example.com and z@example.com";
    nm = 9;
    ASSERT_EQ(pii_mask(u, strlen(u), PII_ALL, &b, &nm), STRATA_ETOOBIG);
    ASSERT_EQ(nm, 0);
    ASSERT_STREQ(b.data, "prefix: to [EMAIL] now");
    ASSERT_EQ(b.len, strlen("prefix: to [EMAIL] now"));
    sbuf_free(&b);
    /* Allocation failure unwinds the same way, at each allocation. */
    for (long fail = 0; fail < 4; fail++) {
        sbuf c;
        sbuf_init(&c, SBUF_MAX);
        strata_alloc_fail_after(fail);
        int rc = pii_mask(u, strlen(u), PII_ALL, &c, &nm);
        strata_alloc_fail_after(-1);
        ASSERT_TRUE(rc == STRATA_OK || rc == STRATA_ENOMEM);
        if (rc == STRATA_OK) {
            ASSERT_STREQ(c.data, "[EMAIL] and [EMAIL] and [EMAIL]");
        } else {
            ASSERT_EQ(c.len, 0);
        }
        sbuf_free(&c);
    }
}

/* Valid UTF-8 in, valid UTF-8 out: matches never cut a sequence. */
TEST(utf8)
{
    static const char *const texts[] = {
        "Zoë: zoë@exämple.de, ☎ +33 1 23 45 67 89 — ok",
        "電話 415-555-2671 メール taro@example.jp 🎉",
        "Ünïcödé 4111 1111 1111 1111 ñ 10.0.0.1 ß",
        "é123-45-6789",             /* é glued: no match */
    };
    for (size_t k = 0; k < STRATA_ARRAY_LEN(texts); k++) {
        size_t n = 0;
        char *m = mask_str(texts[k], PII_ALL, &n);
        ASSERT_TRUE(m != NULL);
        bool ok = utf8_valid(m, strlen(m));
        if (k < 3) {
            ASSERT_TRUE(n >= 2);
        } else {
            ASSERT_EQ(n, 0);
        }
        free(m);
        ASSERT_TRUE(ok);
    }
    ASSERT_MASK("Zoë: zoë@exämple.de", "Zoë: [EMAIL]");
}

/* ======================================================================= */
/* ---- cost -------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds to mask n bytes made by repeating unit (best of three). */
static double time_mask(const char *unit, size_t n, size_t *n_masked)
{
    size_t ul = strlen(unit);
    char *text = malloc(n);
    if (text == NULL) {
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        text[k] = unit[k % ul];
    }
    double best = 1e9;
    int rc = STRATA_OK;
    for (int rep = 0; rep < 3 && rc == STRATA_OK; rep++) {
        sbuf b;
        sbuf_init(&b, 4 * n + 64);
        double t0 = now_s();
        rc = pii_mask(text, n, PII_ALL, &b, n_masked);
        double dt = now_s() - t0;
        sbuf_free(&b);
        best = STRATA_MIN(best, dt);
    }
    free(text);
    return rc == STRATA_OK ? best : -1;
}

/* Hostile inputs: every position may start a candidate. Doubling the input
 * must not much more than double the time (quadratic would quadruple). */
TEST(linear_time)
{
    static const char *const units[] = {
        "a.",        "1.",       "1:",    ":",        "a@",        "1-",      "1 ",
        "+1 ",       "(1) ",     "a",     "@a.",      "a.a@",      "1.1.1.1.", "f:f:",
        "DE89 ",     "4111 ",    "00",    "aa-",      "x@y.co",    "0 0 ",    "é",
    };
    double worst = 0;
    for (size_t k = 0; k < STRATA_ARRAY_LEN(units); k++) {
        size_t nm = 0;
        double t1 = time_mask(units[k], 1u << 17, &nm);
        double t2 = time_mask(units[k], 1u << 19, &nm);
        ASSERT_TRUE(t1 >= 0 && t2 >= 0);
        double ratio = t2 / (t1 > 1e-4 ? t1 : 1e-4);
        if (t2 > worst) {
            worst = t2;
        }
        bool linear = ratio <= 12 || t2 < 0.05;  /* 4x the bytes: linear ~4, quadratic ~16 */
        if (!linear) {
            fprintf(stderr, "  unit \"%s\": %.4fs for 128 KiB, %.4fs for 512 KiB\n", units[k],
                    t1, t2);
        }
        ASSERT_TRUE(linear);
    }
    printf("  slowest hostile 512 KiB input: %.1f ms\n", worst * 1e3);
}

/* ~4 MB of sentences drawn from list; MB/s of find and mask printed. */
static bool measure(const char *what, const char *const *list, size_t count)
{
    size_t n = 4u << 20;
    char *text = malloc(n);
    pii_match *m = malloc(sizeof(*m) * (n / 16));
    bool ok = text != NULL && m != NULL;
    size_t pos = 0;
    unsigned seed = 12345;
    while (ok && pos < n) {
        seed = seed * 1103515245u + 12345u;
        const char *s = list[(seed >> 16) % count];
        size_t l = STRATA_MIN(strlen(s), n - pos);
        memcpy(text + pos, s, l);
        pos += l;
    }
    size_t nm = 0;
    double best_find = 1e9;
    double best_mask = 1e9;
    for (int rep = 0; ok && rep < 3; rep++) {
        double t0 = now_s();
        ok = pii_find(text, n, PII_ALL, m, n / 16, &nm) == STRATA_OK;
        double t1 = now_s();
        sbuf b;
        sbuf_init(&b, 2 * n);
        size_t nmask = 0;
        ok = ok && pii_mask(text, n, PII_ALL, &b, &nmask) == STRATA_OK && nmask == nm;
        double t2 = now_s();
        sbuf_free(&b);
        best_find = STRATA_MIN(best_find, t1 - t0);
        best_mask = STRATA_MIN(best_mask, t2 - t1);
    }
    if (ok) {
        printf("  %s: %.1f MB, %zu matches: find %.1f MB/s, mask %.1f MB/s\n", what, n / 1e6,
               nm, n / 1e6 / best_find, n / 1e6 / best_mask);
    }
    free(m);
    free(text);
    return ok;
}

/* Ordinary prose, then prose with numbers and PII in every other sentence. */
TEST(throughput)
{
    static const char *const prose[] = {
        "The meeting moved to Thursday because the quarterly numbers were late. ",
        "She said the hiking trail near the lake was closed after the storm, ",
        "so we took the long way round and stopped for coffee in town. ",
        "My favourite books are about history, cooking and the sea. ",
        "He remembered that the dog prefers the blue blanket to the red one. ",
        "I would rather fly to Lisbon in May, when the weather is milder. ",
        "Remind me to buy flour, eggs, and a decent bread knife tomorrow. ",
        "Our daughter started piano lessons and practises every evening. ",
    };
    static const char *const mixed[] = {
        "The meeting moved to Thursday because the quarterly numbers were late. ",
        "She said the hiking trail near the lake was closed after the storm, ",
        "so we took the long way round and stopped for coffee in town. ",
        "Version 2.4.1 fixed the crash reported on 2024-01-15 at 12:30. ",
        "Please send the slides to maria.lopez@example.com before noon. ",
        "Order #123456789 shipped; total was $1,234.56 including tax. ",
        "My favourite books are about history, cooking and the sea. ",
        "Call me at +44 20 7946 0958 if the train is delayed again. ",
        "He remembered that the dog prefers the blue blanket to the red one. ",
        "The server at 10.0.0.12 restarted twice during the night. ",
    };
    ASSERT_TRUE(measure("prose", prose, STRATA_ARRAY_LEN(prose)));
    ASSERT_TRUE(measure("mixed", mixed, STRATA_ARRAY_LEN(mixed)));
}

TEST_MAIN(TEST_ENTRY(corpus), TEST_ENTRY(corpus_prefixes), TEST_ENTRY(names), TEST_ENTRY(luhn),
          TEST_ENTRY(mod97), TEST_ENTRY(email_edges), TEST_ENTRY(phone_edges),
          TEST_ENTRY(card_edges), TEST_ENTRY(iban_edges), TEST_ENTRY(ssn_edges),
          TEST_ENTRY(ipv4_edges), TEST_ENTRY(ipv6_edges), TEST_ENTRY(subset), TEST_ENTRY(find_cap),
          TEST_ENTRY(errors), TEST_ENTRY(mask_appends_and_limits), TEST_ENTRY(utf8),
          TEST_ENTRY(linear_time), TEST_ENTRY(throughput))
