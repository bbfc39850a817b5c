/*
 * pii.h - detection and masking of personal data (PII) in free text, run on
 * memory texts before they are stored in L2/L3 (design doc §3.2: "automatic
 * PII detection and redaction ... unless explicitly authorized").
 *
 * What is found (one bit per kind in a mask; PII_ALL is every kind):
 *
 *   kind    example                          placeholder
 *   email   jane.doe+news@mail.example.co.uk [EMAIL]
 *   phone   +44 20 7946 0958, (415) 555-2671 [PHONE]
 *   card    4111 1111 1111 1111 (Luhn, IIN)  [CARD]
 *   iban    DE89 3704 0044 0532 0130 00      [IBAN]
 *   ssn     123-45-6789 (US, dashed/spaced)  [SSN]
 *   ipv4    192.168.10.1                     [IP]
 *   ipv6    2001:db8::8a2e:370:7334          [IP]
 *
 * Precision matters as much as recall: dates, times, version numbers, order
 * ids, timestamps, prices, ISBNs and Luhn-invalid digit runs are left alone.
 * The exact rules are in the comment at the top of pii.c.
 *
 * Cost: one left-to-right pass; each position is examined by a bounded
 * amount of work, so time is linear in the input. No allocation, no state:
 * every function is thread-safe. Input is taken as UTF-8 but any bytes are
 * accepted, and nothing at or past len is ever read (no NUL needed).
 *
 * Errors: STRATA_OK or a negative STRATA_E* code, with the detail recorded by
 * strata_error() for strata_errmsg().
 */
#ifndef STRATA_PRIVACY_PII_H
#define STRATA_PRIVACY_PII_H

#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"

typedef enum pii_kind {
    PII_EMAIL = 0,
    PII_PHONE,
    PII_CARD,
    PII_IBAN,
    PII_SSN,
    PII_IPV4,
    PII_IPV6,
    PII_KIND_COUNT
} pii_kind;

#define PII_ALL ((1u << PII_KIND_COUNT) - 1)
#define PII_BIT(k) (1u << (k))
#define PII_IP (PII_BIT(PII_IPV4) | PII_BIT(PII_IPV6))

/* "[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[SSN]", "[IP]", "[IP]";
 * "[PII]" for a value out of range. Static strings. */
const char *pii_placeholder(pii_kind k);

/* "email", "phone", "card", "iban", "ssn", "ipv4", "ipv6"; "unknown" for a
 * value out of range. Static strings. */
const char *pii_kind_name(pii_kind k);

/* The kind named name (as pii_kind_name spells it, any case) into *out.
 * STRATA_OK, or STRATA_EINVAL for an unknown or NULL name. */
int pii_kind_parse(const char *name, pii_kind *out);

/* A comma-separated list of kind names, plus "ip" (ipv4 and ipv6), "all" and
 * "none", into a mask: "email,phone,ip". Blanks around names are ignored; an
 * empty list is 0. STRATA_OK, or STRATA_EINVAL (and *mask_out = 0). */
int pii_kinds_parse(const char *list, unsigned *mask_out);

/* One detected span: text[start .. start + len), len > 0. */
typedef struct pii_match {
    size_t start;       /* byte offset of the first byte */
    size_t len;         /* bytes */
    pii_kind kind;
} pii_match;

/* Find PII of the kinds in mask in text[0..len) (UTF-8), non-overlapping, in
 * order; at most max matches into out; *n_out the number found (capped at
 * max: the scan stops at the max-th match). Never reads past len. Bits of
 * mask outside PII_ALL are ignored. text may be NULL when len is 0, out when
 * max is 0. STRATA_OK, or STRATA_EINVAL for a NULL argument (*n_out = 0). */
int pii_find(const char *text, size_t len, unsigned mask, pii_match *out, size_t max,
             size_t *n_out);

/* Append text to out with every match replaced by its placeholder; *n_masked
 * (may be NULL) counts replacements. out is an sbuf (core.h) the caller
 * initialised; it still holds what it held before plus the masked text. On
 * failure (STRATA_EINVAL, or STRATA_ENOMEM / STRATA_ETOOBIG from the buffer)
 * out is truncated back to its length at entry and *n_masked is 0. Matches
 * never split a UTF-8 sequence, so valid UTF-8 in gives valid UTF-8 out. */
int pii_mask(const char *text, size_t len, unsigned mask, sbuf *out, size_t *n_masked);

/* ---- checksum helpers (exposed for tests and for callers that validate a
 * single field) ---------------------------------------------------------- */

/* True when digits[0..n) are all ASCII digits, n >= 2, and the Luhn
 * (mod-10) checksum holds. */
bool pii_luhn_valid(const char *digits, size_t n);

/* s[0..n) read as one big number, each digit as itself and each letter as
 * 10 (A/a) .. 35 (Z/z), modulo 97 - the ISO 7064 MOD 97-10 step of the IBAN
 * check. -1 if n is 0 or s holds anything but ASCII letters and digits. */
int pii_mod97(const char *s, size_t n);

/* True when s[0..n) is exactly one IBAN of a country in the table, compact
 * ("DE89370400440532013000") or printed in groups of four separated by single
 * spaces, of the country's length and with a valid check (mod-97 == 1). */
bool pii_iban_valid(const char *s, size_t n);

#endif /* STRATA_PRIVACY_PII_H */
