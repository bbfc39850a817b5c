/*
 * tokenize.c - the text pipeline shared by the BM25 index (bm25.c) and the
 * hashing embedder (providers/embed_hash.c): a tokenizer, an English
 * stopword list and a light suffix stripper. Keeping one implementation means
 * a word indexed by one is the same word to the other.
 *
 * Tokenizer: one pass over the bytes, no allocation. The current token is
 * built in a TEXT_TOKEN_MAX-byte buffer on the stack:
 *
 *   "Don't  STOP-believin’ 🎶 café"
 *    dont   stop believin    café      (4 tokens; ’ between letters dropped,
 *                                        the emoji and '-' separate)
 *
 * A byte < 0x80 is a letter if it is [A-Za-z0-9] (folded to lower case).
 * A UTF-8 multi-byte sequence is decoded and is a letter unless its code
 * point lies in g_sep_ranges (Unicode spaces, dashes, quotes, currency and
 * other symbols, CJK and full-width punctuation, emoji): treating all of
 * them as letters would glue "mountains—and" or "hiking🏔️" into one token.
 * Anything else - scripts, combining marks, ZWJ/ZWNJ - is a letter, so
 * non-English text still tokenizes (CJK text without spaces becomes one
 * token per punctuation-delimited run, cut at 64 bytes: no segmentation).
 * A byte that does not start a valid sequence is a one-byte letter, so any
 * input is accepted. A truncated token never ends inside a sequence: a
 * sequence is appended whole or not at all, and once one does not fit the
 * rest of the word is skipped.
 *
 * Stemmer (text_stem): a conservative rule set between Harman's S-stemmer
 * and Porter's step 1 and 5, applied only to tokens of lower-case ASCII
 * letters. m is Porter's measure (the number of vowel-consonant runs) of the
 * stem left after the suffix; "cvc" means the stem ends consonant, vowel,
 * consonant, the last not w, x or y (hop, hik, lov).
 *   1. plurals (word >= 4):  -sses -> -ss     classes -> class
 *                            -ies  -> -i      stories -> stori   (word >= 5)
 *                            -xes -ches -shes -zzes -> drop -es   boxes -> box
 *                            -s    -> drop unless after s, u, i   hikes -> hike
 *   2. past and progressive: -ied -> -i  (word >= 5)              studied -> studi
 *                            -eed -> -ee if m > 0                 agreed -> agree
 *                            -ed, -ing -> drop if the stem has 3+ letters and
 *                            a vowel, then repair it: undouble a final
 *                            double consonant except l, s, z (stopp -> stop);
 *                            else add e if m = 1 and cvc (hik -> hike)
 *   3. final y / ie:         -y  -> -i if the stem has a vowel   study -> studi
 *                            -ie -> -i  (word >= 5)              movie -> movi
 *   4. final e, ll (word >= 4): drop -e if m > 1, or m = 1 and not cvc
 *                            (create, creating -> creat; hike stays hike);
 *                            -ll -> -l if m > 1                  travell -> travel
 * The rules only ever shorten or keep length (step 2 adds an e only after
 * removing two or three letters). Stems need not be words: the same rules
 * run on documents and queries, so "hikes", "hiking", "hiked" and "hike"
 * meet at "hike". Known misses are accepted to stay conservative: irregular
 * forms (ran, children), -ing/-ed on stems of < 3 letters (using, used).
 *
 * Thread-safety: every function is pure (no state), callable from any thread.
 */
#include <string.h>

#include "l2/bm25.h"

/* ======================================================================= */
/* ---- tokenizer --------------------------------------------------------- */
/* ======================================================================= */

/* Code point ranges (inclusive) that separate tokens. Sorted, disjoint. */
static const uint32_t g_sep_ranges[][2] = {
    {0x00A0, 0x00A9},   /* NBSP ¡ ¢ £ ¤ ¥ ¦ § ¨ © */
    {0x00AB, 0x00B1},   /* « ¬ SHY ® ¯ ° ± */
    {0x00B4, 0x00B4},   /* ´ */
    {0x00B6, 0x00B8},   /* ¶ · ¸ */
    {0x00BB, 0x00BB},   /* » */
    {0x00BF, 0x00BF},   /* ¿ */
    {0x00D7, 0x00D7},   /* × */
    {0x00F7, 0x00F7},   /* ÷ */
    {0x2000, 0x200B},   /* spaces, zero-width space (ZWNJ/ZWJ stay letters) */
    {0x200E, 0x206F},   /* marks, dashes, quotes, bullets, ellipsis, ... */
    {0x20A0, 0x20CF},   /* currency symbols (€) */
    {0x2190, 0x23FF},   /* arrows, math operators, technical symbols */
    {0x2500, 0x27BF},   /* box drawing, shapes, misc symbols, dingbats */
    {0x2900, 0x2BFF},   /* arrows, math symbols, misc symbols (⭐) */
    {0x3000, 0x3003},   /* ideographic space 、 。 〃 */
    {0x3008, 0x301F},   /* CJK brackets and marks */
    {0xFE00, 0xFE0F},   /* variation selectors (emoji presentation) */
    {0xFEFF, 0xFEFF},   /* byte order mark */
    {0xFF01, 0xFF0F},   /* full-width ! " # ... / */
    {0xFF1A, 0xFF20},   /* full-width : ; < = > ? @ */
    {0xFF3B, 0xFF40},   /* full-width [ \ ] ^ _ ` */
    {0xFF5B, 0xFF65},   /* full-width { | } ~ and half-width CJK punctuation */
    {0x1F000, 0x1FAFF}, /* emoji, pictographs, regional indicators, skin tones */
    {0xE0000, 0xE007F}, /* tag characters (emoji flag sequences) */
};

typedef enum tok_class { TOK_SEP, TOK_LETTER, TOK_APOS } tok_class;

/* Length of the UTF-8 sequence at s (avail >= 1 bytes) and its code point.
 * An invalid or cut-off sequence gives length 1 and *cp = UINT32_MAX (a
 * letter). Overlong forms are not rejected: they decode to some code point
 * and are classified by it, which is harmless for tokenizing. */
static size_t utf8_next(const unsigned char *s, size_t avail, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07u;
    } else {
        *cp = UINT32_MAX;
        return 1;
    }
    if (n > avail) {
        *cp = UINT32_MAX;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u) {
            *cp = UINT32_MAX;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    *cp = v;
    return n;
}

static tok_class classify_cp(uint32_t cp)
{
    if (cp == 0x2019 || cp == 0x02BC) {
        return TOK_APOS;
    }
    if (cp == UINT32_MAX || cp < 0xA0) {
        return TOK_LETTER;
    }
    /* Binary search: the table is short, but this runs once per non-ASCII char. */
    size_t lo = 0;
    size_t hi = STRATA_ARRAY_LEN(g_sep_ranges);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < g_sep_ranges[mid][0]) {
            hi = mid;
        } else if (cp > g_sep_ranges[mid][1]) {
            lo = mid + 1;
        } else {
            return TOK_SEP;
        }
    }
    return TOK_LETTER;
}

/* Class of the character at s (avail >= 1 bytes); *len gets its length and
 * *fold the lower-cased byte for an ASCII letter/digit. */
static tok_class char_class(const unsigned char *s, size_t avail, size_t *len, char *fold)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *len = 1;
        if (c >= 'A' && c <= 'Z') {
            *fold = (char)(c + ('a' - 'A'));
            return TOK_LETTER;
        }
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            *fold = (char)c;
            return TOK_LETTER;
        }
        return c == '\'' ? TOK_APOS : TOK_SEP;
    }
    uint32_t cp;
    *len = utf8_next(s, avail, &cp);
    *fold = 0;
    return classify_cp(cp);
}

size_t text_tokenize(const char *text, size_t len, token_emit_fn emit, void *ctx)
{
    const unsigned char *s = (const unsigned char *)text;
    char tok[TEXT_TOKEN_MAX];
    size_t n = 0;           /* bytes in tok */
    bool in_word = false;   /* inside a run of letters (even if tok is full) */
    bool full = false;      /* a character did not fit: skip the rest of the word */
    size_t count = 0;
    size_t i = 0;
    if (text == NULL) {
        return 0;
    }
    while (i < len) {
        size_t cl;
        char fold;
        tok_class k = char_class(s + i, len - i, &cl, &fold);
        if (k == TOK_APOS && in_word && i + cl < len) {
            /* Dropped only between two letters: "don't" -> "dont", but
             * "'quoted'" and "dogs' " separate. */
            size_t nl;
            char nf;
            if (char_class(s + i + cl, len - i - cl, &nl, &nf) == TOK_LETTER) {
                i += cl;
                continue;
            }
        }
        if (k != TOK_LETTER) {
            if (in_word) {
                if (emit != NULL) {
                    emit(ctx, tok, n);
                }
                count++;
            }
            in_word = false;
            full = false;
            n = 0;
            i += cl;
            continue;
        }
        in_word = true;
        if (!full) {
            if (n + cl > TEXT_TOKEN_MAX) {
                full = true;
            } else if (cl == 1 && fold != 0) {
                tok[n++] = fold;
            } else {
                memcpy(tok + n, s + i, cl);
                n += cl;
            }
        }
        i += cl;
    }
    if (in_word) {
        if (emit != NULL) {
            emit(ctx, tok, n);
        }
        count++;
    }
    return count;
}

/* ======================================================================= */
/* ---- stopwords --------------------------------------------------------- */
/* ======================================================================= */

/* Function words that carry little meaning for keyword or bag-of-words
 * matching, in strcmp order (binary search; test_bm25 checks the order).
 * Contractions appear as the tokenizer leaves them (it's -> its, I'm -> im).
 * "no", "not", "nor" and the -n't forms are deliberately absent: "user does
 * not eat meat" must keep its negation. */
static const char *const g_stopwords[] = {
    "a", "about", "am", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by",
    "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have",
    "having", "he", "her", "here", "hers", "herself", "hes", "him", "himself", "his", "how",
    "i", "if", "im", "in", "into", "is", "it", "its", "itself", "ive", "just", "me", "my",
    "myself", "of", "on", "or", "our", "ours", "ourselves", "she", "shes", "should", "so",
    "some", "such", "than", "that", "thats", "the", "their", "theirs", "them", "themselves",
    "then", "there", "theres", "these", "they", "theyre", "this", "those", "to", "too", "us",
    "very", "was", "we", "were", "weve", "what", "whats", "when", "where", "which", "while",
    "who", "whom", "why", "will", "with", "would", "you", "your", "youre", "yours",
    "yourself", "yourselves", "youve",
};

#define STOPWORD_LEN_MAX 10u   /* "yourselves" */

bool text_is_stopword(const char *tok, size_t n)
{
    if (tok == NULL || n == 0 || n > STOPWORD_LEN_MAX) {
        return false;
    }
    size_t lo = 0;
    size_t hi = STRATA_ARRAY_LEN(g_stopwords);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *w = g_stopwords[mid];
        size_t wl = strlen(w);
        int c = memcmp(tok, w, STRATA_MIN(n, wl));
        if (c == 0) {
            c = (n > wl) - (n < wl);
        }
        if (c == 0) {
            return true;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return false;
}

/* ======================================================================= */
/* ---- stemmer ----------------------------------------------------------- */
/* ======================================================================= */

/* Porter's consonant: not a e i o u, and y only after a vowel or at the start. */
static bool stem_cons(const char *w, size_t i)
{
    switch (w[i]) {
    case 'a':
    case 'e':
    case 'i':
    case 'o':
    case 'u':
        return false;
    case 'y':
        return i == 0 ? true : !stem_cons(w, i - 1);
    default:
        return true;
    }
}

/* Porter's measure m of w[0..n): the word is [C](VC)^m[V]. */
static size_t stem_measure(const char *w, size_t n)
{
    size_t i = 0;
    size_t m = 0;
    while (i < n && stem_cons(w, i)) {
        i++;
    }
    while (i < n) {
        while (i < n && !stem_cons(w, i)) {
            i++;
        }
        if (i >= n) {
            break;
        }
        while (i < n && stem_cons(w, i)) {
            i++;
        }
        m++;
    }
    return m;
}

static bool stem_has_vowel(const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!stem_cons(w, i)) {
            return true;
        }
    }
    return false;
}

/* Ends consonant-vowel-consonant, the last not w, x, y (Porter's *o). */
static bool stem_cvc(const char *w, size_t n)
{
    if (n < 3 || !stem_cons(w, n - 3) || stem_cons(w, n - 2) || !stem_cons(w, n - 1)) {
        return false;
    }
    char c = w[n - 1];
    return c != 'w' && c != 'x' && c != 'y';
}

static bool stem_ends(const char *w, size_t n, const char *suf)
{
    size_t sl = strlen(suf);
    return n >= sl && memcmp(w + n - sl, suf, sl) == 0;
}

/* Repair a stem left by removing -ed / -ing (rule 2); returns its length. */
static size_t stem_repair(char *w, size_t n)
{
    char c = w[n - 1];
    if (w[n - 2] == c && stem_cons(w, n - 1) && c != 'l' && c != 's' && c != 'z') {
        return n - 1;
    }
    if (stem_measure(w, n) == 1 && stem_cvc(w, n)) {
        w[n] = 'e';
        return n + 1;
    }
    return n;
}

size_t text_stem(char *w, size_t n)
{
    if (w == NULL || n < 3 || n > TEXT_TOKEN_MAX) {
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        if (w[i] < 'a' || w[i] > 'z') {
            return n;
        }
    }
    /* 1. plurals */
    if (n >= 4 && w[n - 1] == 's') {
        if (stem_ends(w, n, "sses")) {
            n -= 2;
        } else if (stem_ends(w, n, "ies")) {
            if (n >= 5) {
                n -= 2;
            } else {
                n -= 1;     /* ties -> tie */
            }
        } else if (stem_ends(w, n, "xes") || stem_ends(w, n, "ches") ||
                   stem_ends(w, n, "shes") || stem_ends(w, n, "zzes")) {
            n -= 2;
        } else if (w[n - 2] != 's' && w[n - 2] != 'u' && w[n - 2] != 'i') {
            n -= 1;
        }
    }
    /* 2. -ied, -eed, -ed, -ing */
    if (n >= 5 && stem_ends(w, n, "ied")) {
        n -= 2;
    } else if (stem_ends(w, n, "eed")) {
        if (stem_measure(w, n - 3) > 0) {
            n -= 1;
        }
    } else if (n >= 5 && stem_ends(w, n, "ed") && stem_has_vowel(w, n - 2)) {
        n = stem_repair(w, n - 2);
    } else if (n >= 6 && stem_ends(w, n, "ing") && stem_has_vowel(w, n - 3)) {
        n = stem_repair(w, n - 3);
    }
    /* 3. final y / ie */
    if (w[n - 1] == 'y' && stem_has_vowel(w, n - 1)) {
        w[n - 1] = 'i';
    } else if (n >= 5 && stem_ends(w, n, "ie")) {
        n -= 1;
    }
    /* 4. final e, ll */
    if (n >= 4 && w[n - 1] == 'e') {
        size_t m = stem_measure(w, n - 1);
        if (m > 1 || (m == 1 && !stem_cvc(w, n - 1))) {
            n -= 1;
        }
    } else if (n >= 4 && stem_ends(w, n, "ll") && stem_measure(w, n) > 1) {
        n -= 1;
    }
    return n;
}
