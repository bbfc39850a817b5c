/*
 * pii.c - PII detection and masking (see pii.h for the API).
 *
 * One left-to-right scan. At each byte that can start a match and sits on a
 * word boundary, the detectors allowed by the mask are tried in a fixed order
 * (email, IBAN, IPv6, IPv4, card, SSN, phone); the first that accepts wins and
 * the scan resumes after its match, so matches come out in order and never
 * overlap. Each detector looks at a bounded window (at most ~320 bytes for an
 * email, ~150 for the others) and the email local-part run and domain are
 * cached across start positions, so the whole scan is linear in the input.
 * No detector backtracks more than over a handful of parsed groups. After a
 * failed start the rest of its letter/digit run is skipped: no position
 * inside a word can start a match.
 *
 *   "Mail jane@ex.com or call +44 20 7946 0958."
 *    ^    ^           ^  ^    ^                     starts tried (word boundaries)
 *         [EMAIL]             [PHONE]               matches
 *
 * Words and boundaries. A word character is an ASCII letter or digit or a
 * Latin letter written as a two-byte UTF-8 sequence (U+00C0..U+024F, not
 * x/÷), so "josé@ex.com" is one email and "café4111..." is one token. Other
 * non-ASCII bytes (CJK, punctuation, emoji) separate words. A match never
 * starts right after or ends right before a word character. Numeric kinds also
 * refuse "joined" neighbours: "ORD-415-555-2671" (a '-', '_' or '/' glued to a
 * word), "3.4111..." or "12:30" (a '.' or ':' between digits), '@' after.
 *
 * Rules per kind (the corpus tests/data/pii_corpus.tsv exercises each):
 *   email  local@domain. Local: 1-64 bytes of letters, digits, . _ % + -,
 *          starting with a letter, digit or '_', no "..", not ending in '.'.
 *          Domain: >= 2 dot-separated labels of letters, digits and inner
 *          '-', <= 253 bytes; the last label (TLD) 2+ ASCII letters and not an
 *          image extension ("icon@2x.png" is a file name). "@mention",
 *          "user@localhost", "pkg@1.2.3" are not emails.
 *   phone  Digit groups separated by single ' ', '-' or '.', with at most one
 *          "(ddd)" group, in one of these shapes:
 *            +CC ...      8-15 digits (10-15 when written without separators),
 *                         country code <= 4 digits, dots only between 1-4
 *                         digit groups, at most one 1-digit group after the CC;
 *                         also "(+44) 20 ..." and "+44 (0)20 ...";
 *            00CC ...     same as +CC after the 00, spaces or dashes;
 *            NANP         [1 ](NXX) NXX-XXXX / NXX-NXX-XXXX / NXX.NXX.XXXX /
 *                         NXX NXX XXXX, N = 2-9, one separator used throughout;
 *            trunk 0      0A[..] groups (2-5 then >= 2 digits), 9-12 digits,
 *                         spaces or dashes ("020 7946 0958", "06 12 34 56 78"),
 *                         or dots between five pairs ("01.23.45.67.89");
 *            bare         10 digits NANP ([1]NXXNXXXXXX) or trunk-0 10-11,
 *                         only right after a phone word ("Phone: 4155552671").
 *          A space-separated tail that makes the number invalid is dropped
 *          ("(415) 555-2671 123 times"), except for the trunk-0 shape, which
 *          must be the whole run ("020 030 040 050 060" is a list). Forms without '+' are refused after a
 *          '#', after "<digit> " (a piece of a longer spaced number) and after
 *          an id word (order, invoice, ticket, id, ref, ..., optionally
 *          followed by "no." / "number"). Dates (2024-01-15, 15/01/2024,
 *          01.02.2023), times, versions, ids and bare digit runs fit none of
 *          the shapes.
 *   card   13-19 digits, contiguous or in groups of 4 (last group 1-4) or
 *          4-6-5 / 4-6-4, one separator (' ' or '-'), Luhn-valid, with an
 *          IIN and length of Visa, Mastercard, Amex, Discover, JCB or Diners.
 *   iban   Country code from g_iban_len, 2 check digits, then alphanumerics
 *          compact or in groups of 4 separated by single spaces, exactly the
 *          country's length, ISO 7064 mod-97 == 1. Letters in any case.
 *   ssn    AAA-GG-SSSS or AAA GG SSSS (one separator), area not 000, 666 or
 *          9xx, group not 00, serial not 0000; the spaced form not inside a
 *          longer run of spaced numbers. No id-word veto here: the shape and
 *          ranges are specific, and "ID: 123-45-6789" is exactly what to hide.
 *   ipv4   Dotted quad of 0-255 without leading zeros, not inside a longer
 *          dotted run (no '.' or word byte on either side: "1.2.3.4.5" is a
 *          version), not after "Name/" ("Chrome/120.0.0.0") or a version or
 *          section word (version, release, build, section, ...).
 *   ipv6   Hex groups of 1-4 digits separated by ':', at most one "::", 8
 *          groups without "::" and <= 7 with it, an optional dotted-quad tail
 *          (counting as 2 groups), >= 2 colons and at least one decimal digit
 *          (so C++ "dead::beef" / "a::b" stay); a compressed form needs 3+
 *          hex digits or a leading "::" ("3::2" is a ratio); "12:30",
 *          "10:20:30" and MAC addresses have too few groups.
 *
 * Known misses, accepted for precision: phone numbers without a '+' in
 * national formats other than NANP and trunk-0 shapes (7-digit local numbers
 * "555-2671", the German "030/1234567"), NANP look-alikes with an exchange
 * of 0xx/1xx ("(555) 123-4567"), numbers written with letters, obfuscated
 * emails ("john(at)example.com"), IBANs of countries not in the table or
 * grouped other than in fours, emails with non-Latin scripts in the local
 * part. Known over-masking: any Luhn-valid digit run with a card IIN is a
 * card, whatever the text calls it; a dotted quad is an IPv4 address unless
 * a version or section word precedes it.
 *
 * Thread-safety: no global mutable state; every function is reentrant.
 */
#include <stdint.h>
#include <string.h>

#include "privacy/pii.h"

/* ======================================================================= */
/* ---- names ------------------------------------------------------------- */

static const char *const g_placeholders[PII_KIND_COUNT] = {
    "[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[SSN]", "[IP]", "[IP]",
};

static const char *const g_names[PII_KIND_COUNT] = {
    "email", "phone", "card", "iban", "ssn", "ipv4", "ipv6",
};

const char *pii_placeholder(pii_kind k)
{
    return (unsigned)k < PII_KIND_COUNT ? g_placeholders[k] : "[PII]";
}

const char *pii_kind_name(pii_kind k)
{
    return (unsigned)k < PII_KIND_COUNT ? g_names[k] : "unknown";
}

/* ASCII case-insensitive comparison of s[0..n) with the NUL-terminated word. */
static bool word_eq(const char *s, size_t n, const char *word)
{
    size_t i = 0;
    for (; i < n && word[i] != '\0'; i++) {
        unsigned c = (unsigned char)s[i];
        if (c - 'A' < 26u) {
            c |= 0x20u;
        }
        if (c != (unsigned char)word[i]) {
            return false;
        }
    }
    return i == n && word[i] == '\0';
}

int pii_kind_parse(const char *name, pii_kind *out)
{
    if (name == NULL || out == NULL) {
        return strata_error(STRATA_EINVAL, "pii_kind_parse: NULL argument");
    }
    for (int k = 0; k < PII_KIND_COUNT; k++) {
        if (word_eq(name, strlen(name), g_names[k])) {
            *out = (pii_kind)k;
            return STRATA_OK;
        }
    }
    return strata_error(STRATA_EINVAL, "unknown PII kind \"%.32s\"", name);
}

int pii_kinds_parse(const char *list, unsigned *mask_out)
{
    if (mask_out == NULL) {
        return strata_error(STRATA_EINVAL, "pii_kinds_parse: NULL argument");
    }
    *mask_out = 0;
    if (list == NULL) {
        return strata_error(STRATA_EINVAL, "pii_kinds_parse: NULL argument");
    }
    unsigned mask = 0;
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        const char *e = p;
        while (*e != '\0' && *e != ',') {
            e++;
        }
        const char *w = e;
        while (w > p && (w[-1] == ' ' || w[-1] == '\t')) {
            w--;
        }
        size_t n = (size_t)(w - p);
        bool known = false;
        if (word_eq(p, n, "all")) {
            mask |= PII_ALL;
            known = true;
        } else if (word_eq(p, n, "none")) {
            known = true;
        } else if (word_eq(p, n, "ip")) {
            mask |= PII_IP;
            known = true;
        }
        for (int k = 0; !known && k < PII_KIND_COUNT; k++) {
            if (word_eq(p, n, g_names[k])) {
                mask |= PII_BIT(k);
                known = true;
            }
        }
        if (!known) {
            return strata_error(STRATA_EINVAL, "unknown PII kind \"%.*s\"",
                                (int)STRATA_MIN(n, (size_t)32), p);
        }
        p = *e == ',' ? e + 1 : e;
    }
    *mask_out = mask;
    return STRATA_OK;
}

/* ======================================================================= */
/* ---- character classes ------------------------------------------------- */

/* Byte classes for the hot loops (one lookup instead of several compares). */
enum {
    C_DIGIT = 1,        /* 0-9 */
    C_ALPHA = 2,        /* A-Z a-z */
    C_HEX = 4,          /* 0-9 A-F a-f */
    C_LOCAL = 8,        /* ASCII byte of an email local part: alnum . _ % + - */
    C_START = 16,       /* may start a match: alnum + ( : _ and Latin leads C3-C9 */
};
#define C_ALNUM (C_DIGIT | C_ALPHA)

static const uint8_t g_cls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  8,  0,  0, 16,  0,  0, 24,  0,  8,  8,  0,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 16,  0,  0,  0,  0,  0,
     0, 30, 30, 30, 30, 30, 30, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,  0,  0,  0,  0, 24,
     0, 30, 30, 30, 30, 30, 30, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0, 16, 16, 16, 16, 16, 16, 16,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
};

static inline bool is_digit(unsigned c)
{
    return c - '0' < 10u;
}

static inline bool is_alpha(unsigned c)
{
    return (c | 0x20u) - 'a' < 26u;
}

static inline bool is_alnum(unsigned c)
{
    return is_digit(c) || is_alpha(c);
}

static inline bool is_hex(unsigned c)
{
    return is_digit(c) || (c | 0x20u) - 'a' < 6u;
}

static inline unsigned to_upper(unsigned c)
{
    return c - 'a' < 26u ? c - 32u : c;
}

/* A Latin letter U+00C0..U+024F (two-byte UTF-8, lead C3..C9) at t[i],
 * excluding the signs x (C3 97) and ÷ (C3 B7). Needs both bytes below len. */
static inline bool latin_at(const uint8_t *t, size_t len, size_t i)
{
    return i + 1 < len && t[i] >= 0xC3 && t[i] <= 0xC9 && (t[i + 1] & 0xC0) == 0x80 &&
           !(t[i] == 0xC3 && (t[i + 1] == 0x97 || t[i + 1] == 0xB7));
}

/* A word character (ASCII letter or digit, or Latin letter) starts at t[i]. */
static inline bool word_at(const uint8_t *t, size_t len, size_t i)
{
    return i < len && (is_alnum(t[i]) || latin_at(t, len, i));
}

/* A word character ends just before t[i]. */
static inline bool word_before(const uint8_t *t, size_t i)
{
    if (i == 0) {
        return false;
    }
    unsigned c = t[i - 1];
    if (is_alnum(c)) {
        return true;
    }
    return i >= 2 && (c & 0xC0) == 0x80 && latin_at(t, i, i - 2);
}

/* Numeric kinds (phone, card, SSN): may a match start at t[i]? strict also
 * refuses a '#' before it ("#415-555-2671" is an id; "#4111..." may be a
 * card, whose checksum is evidence enough). */
static bool num_left_ok(const uint8_t *t, size_t i, bool strict)
{
    if (i == 0) {
        return true;
    }
    unsigned c = t[i - 1];
    if (word_before(t, i) || c == '+' || c == '@' || (strict && c == '#')) {
        return false;
    }
    if ((c == '-' || c == '_' || c == '/' || c == '\\') && word_before(t, i - 1)) {
        return false;
    }
    if ((c == '.' || c == ':') && i >= 2 && is_digit(t[i - 2])) {
        return false;
    }
    return true;
}

/* Numeric kinds: may a match end just before t[e]? */
static bool num_right_ok(const uint8_t *t, size_t len, size_t e)
{
    if (e >= len) {
        return true;
    }
    unsigned c = t[e];
    if (word_at(t, len, e) || c == '@') {
        return false;
    }
    if ((c == '-' || c == '_' || c == '/' || c == '\\') && word_at(t, len, e + 1)) {
        return false;
    }
    if ((c == '.' || c == ':') && e + 1 < len && is_digit(t[e + 1])) {
        return false;
    }
    return true;
}

/* ======================================================================= */
/* ---- context words ----------------------------------------------------- */

/* Words after which a number is an identifier, not a phone number. */
static const char *const g_id_words[] = {
    "order", "orders", "invoice", "ticket", "id", "ref", "reference", "tracking", "sku",
    "po", "isbn", "issn", "serial", "transaction", "txn", "confirmation", "booking",
    "case", "item", "part", "model", "version", "build", "issue", "bug", "job", "batch",
    "lot", "receipt", "shipment", "parcel", "account", "acct", "policy", "claim", "code",
    "routing", "sort", "pin", "otp", "zip", "postcode",
};

/* Words after which a dotted quad is a version or a section number. */
static const char *const g_version_words[] = {
    "version", "ver", "v", "release", "build", "firmware", "revision", "rev", "patch",
    "update", "sdk", "api", "kernel", "protocol", "section", "sec", "chapter", "clause",
    "figure", "fig", "table", "paragraph", "step", "rule", "article", "art",
};

/* Words after which a bare digit run is a phone number. */
static const char *const g_phone_words[] = {
    "phone", "telephone", "tel", "mobile", "mob", "cell", "cellphone", "call", "fax",
    "whatsapp", "ph", "handy", "telefon", "telefono", "sms", "text", "dial", "ring",
};

/* Fillers skipped between an id word and its number: "order no. 123". */
static const char *const g_fillers[] = {"no", "nr", "num", "number"};

/* The alphabetic word before t[i], skipping up to four separator bytes
 * (blank, '#', ':', '.', '=', '-'): its start in *ws, its length returned
 * (0 for none, or for a word longer than 16 letters or glued to a digit). */
static size_t word_back(const uint8_t *t, size_t i, size_t *ws)
{
    size_t p = i;
    for (int skip = 0; skip < 4 && p > 0; skip++) {
        unsigned c = t[p - 1];
        if (c != ' ' && c != '\t' && c != '#' && c != ':' && c != '.' && c != '=' && c != '-') {
            break;
        }
        p--;
    }
    size_t e = p;
    while (p > 0 && e - p <= 16 && is_alpha(t[p - 1])) {
        p--;
    }
    if (e - p > 16 || word_before(t, p)) {
        return 0;
    }
    *ws = p;
    return e - p;
}

static bool in_list(const uint8_t *w, size_t n, const char *const *list, size_t count)
{
    for (size_t k = 0; k < count; k++) {
        if (word_eq((const char *)w, n, list[k])) {
            return true;
        }
    }
    return false;
}

/* Is the number at t[i] introduced by a word of list (after an optional
 * filler such as "no.")? Looks back at most ~45 bytes. */
static bool preceded_by(const uint8_t *t, size_t i, const char *const *list, size_t count)
{
    size_t ws = 0;
    size_t n = word_back(t, i, &ws);
    if (n > 0 && in_list(t + ws, n, g_fillers, STRATA_ARRAY_LEN(g_fillers))) {
        n = word_back(t, ws, &ws);
    }
    return n > 0 && in_list(t + ws, n, list, count);
}

/* ======================================================================= */
/* ---- checksums ---------------------------------------------------------- */

bool pii_luhn_valid(const char *digits, size_t n)
{
    if (digits == NULL || n < 2) {
        return false;
    }
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned d = (unsigned char)digits[n - 1 - k] - '0';
        if (d > 9) {
            return false;
        }
        if (k % 2 == 1) {
            d *= 2;
            if (d > 9) {
                d -= 9;
            }
        }
        sum += d;
    }
    return sum % 10 == 0;
}

int pii_mod97(const char *s, size_t n)
{
    if (s == NULL || n == 0) {
        return -1;
    }
    unsigned r = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned c = (unsigned char)s[k];
        if (is_digit(c)) {
            r = (r * 10 + (c - '0')) % 97;
        } else if (is_alpha(c)) {
            r = (r * 100 + (to_upper(c) - 'A' + 10)) % 97;
        } else {
            return -1;
        }
    }
    return (int)r;
}

/* ======================================================================= */
/* ---- IBAN -------------------------------------------------------------- */

/* IBAN length per country (ISO 13616 registry), for the countries we check. */
static const struct {
    char cc[3];
    uint8_t len;
} g_iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AT", 20}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"CH", 21},
    {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"EE", 20}, {"ES", 24}, {"FI", 18},
    {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"HR", 21},
    {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IS", 26}, {"IT", 27}, {"LI", 21}, {"LT", 20},
    {"LU", 20}, {"LV", 21}, {"MC", 27}, {"ME", 22}, {"MT", 31}, {"NL", 18}, {"NO", 15},
    {"PL", 28}, {"PT", 25}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SE", 24}, {"SI", 19},
    {"SK", 24}, {"SM", 27}, {"TR", 26},
};

#define IBAN_LEN_MAX 34u

static unsigned iban_country_len(unsigned a, unsigned b)
{
    a = to_upper(a);
    b = to_upper(b);
    for (size_t k = 0; k < STRATA_ARRAY_LEN(g_iban_len); k++) {
        if ((unsigned char)g_iban_len[k].cc[0] == a && (unsigned char)g_iban_len[k].cc[1] == b) {
            return g_iban_len[k].len;
        }
    }
    return 0;
}

/* The IBAN starting at t[i] (context not checked): its length in bytes, or 0.
 * Compact, or printed with single spaces after every 4 characters. */
static size_t iban_parse(const uint8_t *t, size_t len, size_t i)
{
    if (i + 4 > len || !is_alpha(t[i]) || !is_alpha(t[i + 1]) || !is_digit(t[i + 2]) ||
        !is_digit(t[i + 3])) {
        return 0;
    }
    unsigned want = iban_country_len(t[i], t[i + 1]);
    if (want == 0) {
        return 0;
    }
    bool spaced = i + 4 < len && t[i + 4] == ' ';
    char buf[IBAN_LEN_MAX];
    size_t n = 0;
    size_t p = i;
    while (n < want) {
        if (spaced && n > 0 && n % 4 == 0) {
            if (p >= len || t[p] != ' ') {
                return 0;
            }
            p++;
        }
        if (p >= len || !is_alnum(t[p])) {
            return 0;
        }
        buf[n++] = (char)to_upper(t[p]);
        p++;
    }
    /* Check: move the first four characters to the end, mod 97 must be 1. */
    char rot[IBAN_LEN_MAX];
    memcpy(rot, buf + 4, n - 4);
    memcpy(rot + n - 4, buf, 4);
    return pii_mod97(rot, n) == 1 ? p - i : 0;
}

bool pii_iban_valid(const char *s, size_t n)
{
    if (s == NULL) {
        return false;
    }
    return n > 0 && iban_parse((const uint8_t *)s, n, 0) == n;
}

/* ======================================================================= */
/* ---- the scanner -------------------------------------------------------- */

#define EMAIL_LOCAL_MAX 64u
#define EMAIL_DOMAIN_MAX 253u
#define EMAIL_LABEL_MAX 63u
#define NO_POS SIZE_MAX

/* Scan state shared by pii_find and pii_mask. The email fields cache work
 * that every start position inside one local-part run would repeat. */
typedef struct pii_scan {
    const uint8_t *t;
    size_t len;
    unsigned mask;      /* kinds to find, within PII_ALL */
    size_t pos;         /* next byte to examine */
    size_t run_start;   /* email: the local-part run [run_start, run_end) */
    size_t run_end;     /*        computed last (empty when equal) */
    size_t run_dd;      /*        start of its last "..", NO_POS for none */
    size_t dom_at;      /* email: the '@' whose domain was checked last */
    size_t dom_end;     /*        end of that domain, 0 when invalid */
} pii_scan;

/* ---- email ------------------------------------------------------------- */

/* Byte width of the local-part character at t[i]: 1, 2 (Latin letter) or 0. */
static inline size_t local_char(const uint8_t *t, size_t len, size_t i)
{
    if (g_cls[t[i]] & C_LOCAL) {
        return 1;
    }
    return latin_at(t, len, i) ? 2 : 0;
}

static const char *const g_file_exts[] = {
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "heic", "avif",
};

/* The domain after the '@' at t[at]: the end of the domain, or 0 if invalid.
 * Labels of letters, digits and inner '-' joined by single dots; >= 2
 * labels; the last 2+ ASCII letters and not an image file extension. */
static size_t email_domain(const uint8_t *t, size_t len, size_t at)
{
    size_t p = at + 1;
    size_t end = 0;
    size_t labels = 0;
    size_t tld = 0;
    for (;;) {
        size_t q = p;
        while (q < len && q - p <= EMAIL_LABEL_MAX) {
            if (is_alnum(t[q]) || t[q] == '-') {
                q++;
            } else if (latin_at(t, len, q)) {
                q += 2;
            } else {
                break;
            }
        }
        if (q == p) {
            break;
        }
        if (q - p > EMAIL_LABEL_MAX || t[p] == '-' || t[q - 1] == '-' ||
            q - at - 1 > EMAIL_DOMAIN_MAX) {
            return 0;
        }
        labels++;
        tld = p;
        end = q;
        if (q + 1 < len && t[q] == '.' && word_at(t, len, q + 1)) {
            p = q + 1;
            continue;
        }
        break;
    }
    if (labels < 2 || end - tld < 2) {
        return 0;
    }
    for (size_t k = tld; k < end; k++) {
        if (!is_alpha(t[k])) {
            return 0;
        }
    }
    if (in_list(t + tld, end - tld, g_file_exts, STRATA_ARRAY_LEN(g_file_exts))) {
        return 0;
    }
    /* Not glued to more address-like text: "a@b.com@c", "a@b.com_x". */
    if (end < len && (t[end] == '@' || t[end] == '_' || word_at(t, len, end))) {
        return 0;
    }
    return end;
}

static size_t det_email(pii_scan *s, size_t i)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    if (!(is_alnum(t[i]) || t[i] == '_' || latin_at(t, len, i))) {
        return 0;
    }
    if (i < s->run_start || i >= s->run_end) {
        /* A new run; every later start inside it ends at the same place. */
        size_t p = i;
        size_t dd = NO_POS;
        size_t w = 0;
        while (p < len && (w = local_char(t, len, p)) > 0) {
            if (t[p] == '.' && p > i && t[p - 1] == '.') {
                dd = p - 1;
            }
            p += w;
        }
        s->run_start = i;
        s->run_end = p;
        s->run_dd = dd;
    }
    size_t at = s->run_end;
    if (at >= len || t[at] != '@' || at - i > EMAIL_LOCAL_MAX || t[at - 1] == '.' ||
        (s->run_dd != NO_POS && s->run_dd >= i)) {
        return 0;
    }
    if (s->dom_at != at) {
        s->dom_at = at;
        s->dom_end = email_domain(t, len, at);
    }
    return s->dom_end > 0 ? s->dom_end - i : 0;
}

/* ---- IPv4 / IPv6 --------------------------------------------------------- */

/* A dotted quad at t[i] (context not checked): its length, or 0. */
static size_t ipv4_parse(const uint8_t *t, size_t len, size_t i)
{
    size_t p = i;
    for (int k = 0; k < 4; k++) {
        if (k > 0) {
            if (p >= len || t[p] != '.') {
                return 0;
            }
            p++;
        }
        size_t q = p;
        unsigned v = 0;
        while (q < len && is_digit(t[q]) && q - p < 4) {
            v = v * 10 + (t[q] - '0');
            q++;
        }
        size_t nd = q - p;
        if (nd == 0 || nd > 3 || v > 255 || (nd > 1 && t[p] == '0')) {
            return 0;
        }
        p = q;
    }
    return p - i;
}

static size_t det_ipv4(const pii_scan *s, size_t i)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    if (i > 0) {
        unsigned c = t[i - 1];
        if (c == '.' || ((c == '-' || c == '_' || c == '/') && i >= 2 && is_alpha(t[i - 2]))) {
            return 0;
        }
    }
    size_t n = ipv4_parse(t, len, i);
    if (n == 0) {
        return 0;
    }
    size_t e = i + n;
    if (word_at(t, len, e) || (e + 1 < len && t[e] == '.' && word_at(t, len, e + 1)) ||
        (e + 1 < len && (t[e] == '-' || t[e] == '_') && is_alpha(t[e + 1]))) {
        return 0;
    }
    if (preceded_by(t, i, g_version_words, STRATA_ARRAY_LEN(g_version_words))) {
        return 0;
    }
    return n;
}

static size_t det_ipv6(const pii_scan *s, size_t i)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    if (i > 0 && (t[i - 1] == ':' || t[i - 1] == '.')) {
        return 0;
    }
    size_t p = i;
    size_t end = i;
    unsigned groups = 0;
    unsigned colons = 0;
    unsigned hexdigits = 0;
    bool dcolon = false;
    bool digit = false;
    if (t[p] == ':') {
        if (p + 1 >= len || t[p + 1] != ':') {
            return 0;
        }
        dcolon = true;
        colons = 2;
        p += 2;
        end = p;
    }
    while (p < len && is_hex(t[p])) {
        size_t q = p;
        bool dec = true;
        while (q < len && is_hex(t[q]) && q - p < 5) {
            dec = dec && is_digit(t[q]);
            q++;
        }
        if (q - p > 4) {
            return 0;
        }
        if (q + 1 < len && t[q] == '.' && is_digit(t[q + 1])) {
            /* An embedded IPv4 tail ends the address. */
            size_t n4 = dec ? ipv4_parse(t, len, p) : 0;
            if (n4 == 0 || groups > (dcolon ? 5u : 6u) || colons == 0) {
                return 0;
            }
            groups += 2;
            digit = true;
            end = p + n4;
            break;
        }
        for (size_t k = p; k < q; k++) {
            digit = digit || is_digit(t[k]);
        }
        hexdigits += (unsigned)(q - p);
        groups++;
        end = q;
        p = q;
        if (groups > 8) {
            return 0;
        }
        if (p + 1 < len && t[p] == ':' && t[p + 1] == ':') {
            if (dcolon) {
                return 0;
            }
            dcolon = true;
            colons += 2;
            p += 2;
            end = p;
        } else if (p + 1 < len && t[p] == ':' && is_hex(t[p + 1])) {
            colons++;
            p++;
        } else {
            break;
        }
    }
    /* A compressed address needs 3+ hex digits or a leading "::" ("::1",
     * "fe80::1"), so that ratios like "3::2" stay text. */
    if (colons < 2 || !digit || (dcolon ? groups > 7 : groups != 8) ||
        (dcolon && t[i] != ':' && hexdigits < 3)) {
        return 0;
    }
    if (word_at(t, len, end) ||
        (end + 1 < len && t[end] == ':' && (word_at(t, len, end + 1) || t[end + 1] == ':')) ||
        (end + 1 < len && t[end] == '.' && is_digit(t[end + 1]))) {
        return 0;
    }
    return end - i;
}

/* ---- payment cards ------------------------------------------------------ */

/* Issuer prefix and length plausible for a network we know. d: n digits. */
static bool card_iin_ok(const char *d, size_t n)
{
    unsigned p2 = (unsigned)(d[0] - '0') * 10 + (unsigned)(d[1] - '0');
    unsigned p3 = p2 * 10 + (unsigned)(d[2] - '0');
    unsigned p4 = p3 * 10 + (unsigned)(d[3] - '0');
    if (d[0] == '4') {
        return n == 13 || n == 16 || n == 19;                   /* Visa */
    }
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) {
        return n == 16;                                         /* Mastercard */
    }
    if (p2 == 34 || p2 == 37) {
        return n == 15;                                         /* Amex */
    }
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p4 >= 3528 && p4 <= 3589)) {
        return n >= 16 && n <= 19;                              /* Discover, JCB */
    }
    if (p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305)) {
        return n >= 14 && n <= 19;                              /* Diners */
    }
    return false;
}

#define CARD_GROUPS_MAX 6

static size_t det_card(const pii_scan *s, size_t i)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    if (!num_left_ok(t, i, false)) {
        return 0;
    }
    size_t gs[CARD_GROUPS_MAX];
    size_t ge[CARD_GROUPS_MAX];
    size_t n = 0;
    unsigned sep = 0;
    size_t p = i;
    while (n < CARD_GROUPS_MAX) {
        size_t q = p;
        while (q < len && is_digit(t[q]) && q - p <= 19) {
            q++;
        }
        if (q - p > 19) {
            return 0;
        }
        gs[n] = p;
        ge[n] = q;
        n++;
        if (n == 1 && q - p != 4 && q - p < 13) {
            return 0; /* neither contiguous nor starting with a group of 4 */
        }
        if (q + 1 < len && (t[q] == ' ' || t[q] == '-') && (sep == 0 || sep == t[q]) &&
            is_digit(t[q + 1])) {
            sep = t[q];
            p = q + 1;
        } else {
            break;
        }
    }
    if (ge[0] - gs[0] >= 13) {
        n = 1; /* contiguous: later groups are a different number */
    }
    for (size_t k = n; k >= 1; k--) {
        if (k < n && sep != ' ') {
            break; /* cannot end inside a dash-joined token */
        }
        size_t l0 = ge[0] - gs[0];
        bool shape;
        if (k == 1) {
            shape = l0 >= 13 && l0 <= 19;
        } else if (k == 3 && l0 == 4 && ge[1] - gs[1] == 6) {
            shape = ge[2] - gs[2] == 5 || ge[2] - gs[2] == 4;   /* Amex, Diners */
        } else {
            shape = k >= 4 && ge[k - 1] - gs[k - 1] <= 4;
            for (size_t g = 0; shape && g + 1 < k; g++) {
                shape = ge[g] - gs[g] == 4;
            }
        }
        size_t nd = 0;
        for (size_t g = 0; g < k; g++) {
            nd += ge[g] - gs[g];
        }
        if (!shape || nd < 13 || nd > 19) {
            continue;
        }
        char d[19] = {0};
        nd = 0;
        for (size_t g = 0; g < k; g++) {
            memcpy(d + nd, t + gs[g], ge[g] - gs[g]);
            nd += ge[g] - gs[g];
        }
        if (card_iin_ok(d, nd) && pii_luhn_valid(d, nd) &&
            num_right_ok(t, len, ge[k - 1])) {
            return ge[k - 1] - i;
        }
    }
    return 0;
}

/* ---- US social security numbers ---------------------------------------- */

static unsigned digits_val(const uint8_t *t, size_t n)
{
    unsigned v = 0;
    for (size_t k = 0; k < n; k++) {
        v = v * 10 + (t[k] - '0');
    }
    return v;
}

static bool all_digits(const uint8_t *t, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!is_digit(t[k])) {
            return false;
        }
    }
    return true;
}

static size_t det_ssn(const pii_scan *s, size_t i)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    if (len - i < 11) {
        return 0;
    }
    unsigned sep = t[i + 3];
    if ((sep != '-' && sep != ' ') || t[i + 6] != sep || !all_digits(t + i, 3) ||
        !all_digits(t + i + 4, 2) || !all_digits(t + i + 7, 4)) {
        return 0;
    }
    unsigned area = digits_val(t + i, 3);
    unsigned group = digits_val(t + i + 4, 2);
    unsigned serial = digits_val(t + i + 7, 4);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) {
        return 0;
    }
    if (!num_left_ok(t, i, true) || !num_right_ok(t, len, i + 11)) {
        return 0;
    }
    if (sep == ' ' && ((i + 12 < len && t[i + 11] == ' ' && is_digit(t[i + 12])) ||
                       (i >= 2 && t[i - 1] == ' ' && is_digit(t[i - 2])))) {
        return 0; /* one piece of a longer run of spaced numbers */
    }
    return 11;
}

/* ---- phone numbers ------------------------------------------------------ */

#define PHONE_GROUPS_MAX 8
#define PHONE_DIGITS_MAX 15u

typedef struct phone_group {
    size_t start;       /* first digit */
    size_t ndig;        /* digits in the group */
    size_t end;         /* byte after the group (after ')' for a paren group) */
    unsigned sep;       /* byte before it: ' ', '-', '.', or 0 (first / glued) */
    bool paren;         /* written "(ddd)" */
} phone_group;

/* Split the candidate whose first digit is t[p] into digit groups; plus: it
 * follows a '+'; cc_paren: it follows "(+" and the first group must be closed
 * by ')' ("(+44) 20 ..."). Returns the number of groups (0: none). A digit
 * run longer than any phone number ends the parse before it. A separator is
 * taken only when a group follows it. */
static size_t phone_parse(const uint8_t *t, size_t len, size_t p, bool plus, bool cc_paren,
                          phone_group *g)
{
    size_t n = 0;
    bool paren_seen = false;
    unsigned sep = 0;
    while (n < PHONE_GROUPS_MAX) {
        phone_group *cur = &g[n];
        cur->sep = sep;
        if (p < len && t[p] == '(') {
            size_t q = p + 1;
            while (q < len && is_digit(t[q]) && q - p <= 5) {
                q++;
            }
            size_t nd = q - p - 1;
            if (paren_seen || nd == 0 || nd > 4 || q >= len || t[q] != ')') {
                break;
            }
            cur->start = p + 1;
            cur->ndig = nd;
            cur->end = q + 1;
            cur->paren = true;
            paren_seen = true;
            p = q + 1;
        } else if (p < len && is_digit(t[p])) {
            size_t q = p;
            while (q < len && is_digit(t[q]) && q - p <= PHONE_DIGITS_MAX) {
                q++;
            }
            if (q - p > PHONE_DIGITS_MAX) {
                break; /* a different, longer number: end before it */
            }
            cur->start = p;
            cur->ndig = q - p;
            cur->end = q;
            cur->paren = false;
            p = q;
            if (cc_paren && n == 0) {
                if (p >= len || t[p] != ')') {
                    return 0;
                }
                p++;
                cur->end = p;
            }
        } else {
            break;
        }
        n++;
        if (p >= len) {
            break;
        }
        unsigned c = t[p];
        bool closed = cur->paren || (cc_paren && n == 1);
        if (closed && is_digit(c)) {
            sep = 0;                        /* "(415)555-2671", "+44 (0)20" */
        } else if (plus && c == '(' && !paren_seen) {
            sep = 0;                        /* "+44(0)20 ..." */
        } else if ((c == ' ' || c == '-' || c == '.') && p + 1 < len &&
                   (is_digit(t[p + 1]) || (c != '.' && t[p + 1] == '(' && !paren_seen))) {
            sep = c;
            p++;
        } else {
            break;
        }
    }
    return n;
}

static size_t phone_digits(const phone_group *g, size_t k)
{
    size_t d = 0;
    for (size_t j = 0; j < k; j++) {
        d += g[j].ndig;
    }
    return d;
}

/* +CC ...: k groups after the '+'. */
static bool phone_plus_ok(const phone_group *g, size_t k)
{
    if (g[0].paren) {
        return false;
    }
    size_t d = phone_digits(g, k);
    if (k == 1) {
        return d >= 10 && d <= PHONE_DIGITS_MAX;  /* compact E.164 */
    }
    if (g[0].ndig > 4 || d < 8 || d > PHONE_DIGITS_MAX || g[k - 1].ndig < 2) {
        return false;
    }
    bool dots = false;
    size_t singles = 0;
    for (size_t j = 1; j < k; j++) {
        dots = dots || g[j].sep == '.';
        singles += !g[j].paren && g[j].ndig == 1;
    }
    for (size_t j = 1; dots && j < k; j++) {
        if (g[j].sep != '.' || g[j].paren || g[j].ndig > 4) {
            return false;
        }
    }
    return singles <= 1;
}

/* 00CC ...: the international prefix written as 00. */
static bool phone_00_ok(const uint8_t *t, const phone_group *g, size_t k)
{
    if (k < 3 || g[0].paren || g[0].ndig < 3 || g[0].ndig > 5 || t[g[0].start] != '0' ||
        t[g[0].start + 1] != '0' || t[g[0].start + 2] == '0') {
        return false;
    }
    size_t d = phone_digits(g, k) - 2;
    if (d < 8 || d > PHONE_DIGITS_MAX || g[k - 1].ndig < 2) {
        return false;
    }
    size_t singles = 0;
    for (size_t j = 1; j < k; j++) {
        if (g[j].paren || (g[j].sep != ' ' && g[j].sep != '-') || g[j].sep != g[1].sep) {
            return false;
        }
        singles += g[j].ndig == 1;
    }
    return singles <= 1;
}

/* North American: [1 ](NXX) NXX-XXXX, [1-]NXX-NXX-XXXX and friends. */
static bool phone_nanp_ok(const uint8_t *t, const phone_group *g, size_t k)
{
    size_t a = 0;
    if (k == 4) {
        if (g[0].paren || g[0].ndig != 1 || t[g[0].start] != '1' || g[1].sep == 0) {
            return false;
        }
        a = 1;
    } else if (k != 3) {
        return false;
    }
    const phone_group *area = &g[a];
    const phone_group *exch = &g[a + 1];
    const phone_group *line = &g[a + 2];
    if (area->ndig != 3 || exch->ndig != 3 || line->ndig != 4 || exch->paren || line->paren) {
        return false;
    }
    unsigned a0 = t[area->start];
    unsigned e0 = t[exch->start];
    if (a0 < '2' || e0 < '2' || (t[area->start + 1] == '1' && t[area->start + 2] == '1')) {
        return false; /* N = 2-9; N11 codes are services, not areas */
    }
    if (area->paren) {
        if (a == 1 && area->sep != ' ' && area->sep != '-') {
            return false;
        }
        return exch->sep != '.' && line->sep != 0;
    }
    if (exch->sep == 0 || line->sep != exch->sep) {
        return false;
    }
    return a == 0 || area->sep == exch->sep;
}

/* National with trunk prefix 0: "020 7946 0958", "030-1234567". */
static bool phone_trunk_ok(const uint8_t *t, const phone_group *g, size_t k)
{
    if (k < 2 || k > 5 || g[0].ndig < 2 || g[0].ndig > 5 || t[g[0].start] != '0' ||
        t[g[0].start + 1] == '0') {
        return false;
    }
    size_t d = phone_digits(g, k);
    if (d < 9 || d > 12) {
        return false;
    }
    /* One separator, ' ' or '-', or '.' in the French "01.23.45.67.89";
     * "(020)7946 0958" may glue the paren group. */
    bool pairs = k == 5 && d == 10 && !g[0].paren;
    size_t ref = g[0].paren && k > 2 ? 2 : 1;
    for (size_t j = 1; j < k; j++) {
        if (g[j].paren || g[j].ndig < 2) {
            return false;
        }
        if (j == 1 && g[0].paren && g[1].sep == 0) {
            continue;
        }
        bool sep_ok = g[j].sep == ' ' || g[j].sep == '-' || (pairs && g[j].sep == '.');
        if (!sep_ok || (pairs && g[j].ndig != 2) ||
            (j >= ref && g[j].sep != g[ref].sep)) {
            return false;
        }
    }
    /* "01-02-2023-12": day, month, year, ... is a date. */
    if (k >= 3 && g[0].ndig == 2 && g[1].ndig == 2 && g[2].ndig == 4) {
        unsigned day = digits_val(t + g[0].start, 2);
        unsigned mon = digits_val(t + g[1].start, 2);
        unsigned yr = digits_val(t + g[2].start, 2);
        if (day >= 1 && day <= 31 && mon >= 1 && mon <= 12 && (yr == 19 || yr == 20)) {
            return false;
        }
    }
    return true;
}

/* A bare run of digits, only taken after a phone word ("Phone: 4155552671"):
 * a valid NANP number with or without the leading 1, or trunk-0 10-11. */
static bool phone_bare_ok(const uint8_t *t, const phone_group *g)
{
    const uint8_t *d = t + g[0].start;
    size_t n = g[0].ndig;
    if (g[0].paren || n < 10 || n > 11) {
        return false;
    }
    if (d[0] == '0') {
        return d[1] != '0';                     /* trunk 0, 10-11 digits */
    }
    if (n == 11 && d[0] == '1') {
        d++;
        n--;
    }
    return n == 10 && d[0] >= '2' && d[3] >= '2' && !(d[1] == '1' && d[2] == '1');
}

static size_t det_phone(const pii_scan *s, size_t i)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    size_t p0 = i;
    bool plus = false;
    bool cc_paren = false;
    if (t[i] == '+') {
        plus = true;
        p0 = i + 1;
    } else if (t[i] == '(' && i + 1 < len && t[i + 1] == '+') {
        plus = true;
        cc_paren = true;
        p0 = i + 2;
    }
    if (plus && (p0 >= len || t[p0] < '1' || t[p0] > '9')) {
        return 0;
    }
    /* Without a '+', refuse a number that continues a run of spaced digit
     * groups ("DE88 3704 0044 0532 ...") or is introduced by an id word. */
    if (!num_left_ok(t, i, true) || (!plus && i >= 2 && t[i - 1] == ' ' && is_digit(t[i - 2]))) {
        return 0;
    }
    phone_group g[PHONE_GROUPS_MAX];
    size_t n = phone_parse(t, len, p0, plus, cc_paren, g);
    if (n == 0 || (!plus && preceded_by(t, i, g_id_words, STRATA_ARRAY_LEN(g_id_words)))) {
        return 0;
    }
    for (size_t k = n; k >= 1; k--) {
        if (k < n && g[k].sep != ' ') {
            continue; /* may only drop a tail that follows a blank */
        }
        /* A trunk-0 number is weak evidence: only as the whole digit run, so
         * "020 030 040 050 060" is a list, not a phone number plus "060". */
        bool ok = plus ? phone_plus_ok(g, k)
                       : (phone_nanp_ok(t, g, k) || (k == n && phone_trunk_ok(t, g, k)) ||
                          phone_00_ok(t, g, k) ||
                          (k == 1 && phone_bare_ok(t, g) &&
                           preceded_by(t, i, g_phone_words, STRATA_ARRAY_LEN(g_phone_words))));
        if (ok && num_right_ok(t, len, g[k - 1].end)) {
            return g[k - 1].end - i;
        }
    }
    return 0;
}

/* ---- the main loop ------------------------------------------------------- */

static void scan_init(pii_scan *s, const char *text, size_t len, unsigned mask)
{
    s->t = (const uint8_t *)text;
    s->len = len;
    s->mask = mask & PII_ALL;
    s->pos = 0;
    s->run_start = 0;
    s->run_end = 0;
    s->run_dd = NO_POS;
    s->dom_at = NO_POS;
    s->dom_end = 0;
}

/* The end of the ASCII letter/digit run containing t[i] (t[i] included). */
static inline size_t skip_alnum(const uint8_t *t, size_t len, size_t i)
{
    while (i < len && (g_cls[t[i]] & C_ALNUM)) {
        i++;
    }
    return i;
}

/* The next match at or after s->pos into *m; false when there is none. */
static bool scan_next(pii_scan *s, pii_match *m)
{
    const uint8_t *t = s->t;
    size_t len = s->len;
    unsigned mask = s->mask;
    if (mask == 0) {
        return false;
    }
    size_t i = s->pos;
    while (i < len) {
        unsigned c = t[i];
        if (!(g_cls[c] & C_START)) {
            i++;
            continue;
        }
        if (word_before(t, i)) {
            /* Inside a word: no position up to its end can start a match. */
            i = (g_cls[c] & C_ALNUM) ? skip_alnum(t, len, i + 1) : i + 1;
            continue;
        }
        size_t n = 0;
        pii_kind kind = PII_EMAIL;
        if ((mask & PII_BIT(PII_EMAIL)) && c != '+' && c != '(' && c != ':') {
            n = det_email(s, i);
            kind = PII_EMAIL;
        }
        if (n == 0 && (mask & PII_BIT(PII_IBAN)) && is_alpha(c)) {
            n = iban_parse(t, len, i);
            n = n > 0 && !word_at(t, len, i + n) ? n : 0;
            kind = PII_IBAN;
        }
        if (n == 0 && (mask & PII_BIT(PII_IPV6)) && (is_hex(c) || c == ':')) {
            n = det_ipv6(s, i);
            kind = PII_IPV6;
        }
        if (is_digit(c)) {
            if (n == 0 && (mask & PII_BIT(PII_IPV4))) {
                n = det_ipv4(s, i);
                kind = PII_IPV4;
            }
            if (n == 0 && (mask & PII_BIT(PII_CARD))) {
                n = det_card(s, i);
                kind = PII_CARD;
            }
            if (n == 0 && (mask & PII_BIT(PII_SSN))) {
                n = det_ssn(s, i);
                kind = PII_SSN;
            }
        }
        if (n == 0 && (mask & PII_BIT(PII_PHONE)) && (is_digit(c) || c == '+' || c == '(')) {
            n = det_phone(s, i);
            kind = PII_PHONE;
        }
        if (n > 0) {
            m->start = i;
            m->len = n;
            m->kind = kind;
            s->pos = i + n;
            return true;
        }
        /* The rest of a letter/digit run follows a word byte: skip it. */
        i = (g_cls[c] & C_ALNUM) ? skip_alnum(t, len, i + 1) : i + 1;
    }
    s->pos = len;
    return false;
}

/* ======================================================================= */
/* ---- API --------------------------------------------------------------- */

int pii_find(const char *text, size_t len, unsigned mask, pii_match *out, size_t max,
             size_t *n_out)
{
    if (n_out != NULL) {
        *n_out = 0;
    }
    if (n_out == NULL || (text == NULL && len > 0) || (out == NULL && max > 0)) {
        return strata_error(STRATA_EINVAL, "pii_find: NULL argument");
    }
    pii_scan s;
    scan_init(&s, text, len, mask);
    size_t n = 0;
    while (n < max && scan_next(&s, &out[n])) {
        n++;
    }
    *n_out = n;
    return STRATA_OK;
}

int pii_mask(const char *text, size_t len, unsigned mask, sbuf *out, size_t *n_masked)
{
    if (n_masked != NULL) {
        *n_masked = 0;
    }
    if (out == NULL || (text == NULL && len > 0)) {
        return strata_error(STRATA_EINVAL, "pii_mask: NULL argument");
    }
    if (text == NULL) {
        text = "";
    }
    size_t len0 = out->len;
    pii_scan s;
    scan_init(&s, text, len, mask);
    size_t copied = 0;
    size_t n = 0;
    pii_match m;
    int rc = STRATA_OK;
    while (scan_next(&s, &m)) {
        rc = sbuf_append(out, text + copied, m.start - copied);
        if (rc != STRATA_OK) {
            goto fail;
        }
        rc = sbuf_puts(out, pii_placeholder(m.kind));
        if (rc != STRATA_OK) {
            goto fail;
        }
        copied = m.start + m.len;
        n++;
    }
    rc = sbuf_append(out, text + copied, len - copied);
    if (rc != STRATA_OK) {
        goto fail;
    }
    if (n_masked != NULL) {
        *n_masked = n;
    }
    return STRATA_OK;

fail:
    out->len = len0;
    if (out->data != NULL) {
        out->data[len0] = '\0';
    }
    return rc;
}
