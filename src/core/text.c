/*
 * text.c - input checks shared by every entry point: UTF-8 validity (RFC 3629:
 * no overlongs, no surrogates, nothing past U+10FFFF), the id alphabet of
 * API.md, and generic-store keys.
 */
#include "core/core.h"

bool utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        uint32_t min;
        if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= need) {
            return false;
        }
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += need + 1;
    }
    return true;
}

int strata_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > STRATA_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
        if (!ok) {
            return 0;
        }
        /* ".." is in the alphabet but is a path trick; no id needs it. */
        if (c == '.' && i > 0 && id[i - 1] == '.') {
            return 0;
        }
    }
    return 1;
}

bool kv_key_valid(const char *s, size_t n)
{
    if (s == NULL || n == 0 || n > STRATA_KV_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' || s[i] == '/') {
            return false;
        }
    }
    return utf8_valid(s, n);
}
