/*
 * extract_rules.c - the built-in extractor ("rules"): English patterns over
 * word tokens, no model, no network. The offline default of the
 * consolidation pipeline, and the fallback when no chat model is configured.
 * It finds the statements people most often make about themselves in a chat
 * (likes, job, home, allergies, past events) and misses everything else; a
 * missed memory costs less than a wrong one, so every rule is narrow.
 *
 * Data flow, per user turn (other roles are skipped):
 *
 *   text --scan_turn--> tokens of one sentence --do_sentence--> triggers
 *        "I" "my" "call me"  --rule_i / rule_my / rule_call--> emit()
 *                                                      --> rx.items (merged)
 *
 * Tokens. A word is a run of ASCII letters and digits, bytes >= 0x80 (so any
 * script, and invalid UTF-8, stays inside words) and inner ' ’ - and, between
 * digits, . and , ("3.5", "$1,200"). Each token keeps its span in the turn
 * (for values and content, which copy the user's own spelling), a lower-case
 * ASCII form of at most TOK_W - 1 bytes, and keyword classes (K_*) looked up
 * once in a hash table of about 600 words. Contractions are split into two
 * tokens sharing one span: "I'm" -> i am, "can't" -> can not, "don't" -> do
 * not. Sentences end at . ! ? and newlines; , ; : ( ) dashes and quotes mark
 * clause breaks (tok.brk on the token before). A sentence longer than
 * SENT_TOKENS_MAX tokens is cut there and the rest read as a new sentence.
 *
 * Context rules, decided per sentence or per clause before a pattern runs:
 *   - a sentence ending in '?', or a clause opening with an auxiliary before
 *     "I" ("Do I like...", "What am I..."), is a question: nothing;
 *   - a clause holding if / unless / suppose / imagine / wish before the
 *     trigger is hypothetical ("if I were a doctor"): nothing;
 *   - "she says / my wife thinks / he told me I ..." is reported speech about
 *     the user by someone else: only constraints (allergies, "can't eat")
 *     are kept, at confidence <= 0.5, because a doctor's "you are allergic
 *     to X" matters; everything else is dropped;
 *   - statements about others ("my wife likes jazz") have no "I" subject and
 *     are never extracted: they are not about the user, and a relation
 *     extractor would be the place for them;
 *   - words inside double quotes are quoted speech: no trigger there;
 *   - hedges anywhere in the sentence (maybe, probably, I think, not sure,
 *     might be) cap confidence at 0.45; negated facts ("I'm not a doctor")
 *     give nothing; negated likes give dislikes.
 *   - explicit change words (now, promoted, became, moved, just started, no
 *     longer, ...) in the sentence, or a promotion/move in the sentence
 *     before, raise a fact's or preference's confidence to 0.9 and its
 *     importance by 0.1: the delta-merge then prefers it over an older value.
 *
 * Scores: confidence 0.7 for a plain statement, 0.8 for an explicit one
 * (my name is, I'm allergic to), 0.9 for a stated change, 0.6 for weak forms
 * ("I don't love X", "I'd prefer"). Importance by kind: safety constraints
 * (allergy, condition, can't eat) 0.9-0.95, diet/budget/avoid 0.8-0.85,
 * identity facts (name, role) 0.7, other facts 0.55-0.65, preferences 0.55-0.6,
 * experiences 0.45-0.6.
 *
 * Content is written in the third person from the user's words: "User" +
 * the verb conjugated for the pattern ("likes", "is", "works at") + the
 * user's phrase with I / me / my / mine replaced by User / User / User's.
 * Values and content are capped (VALUE_MAX, CONTENT_MAX bytes, cut at a
 * character boundary) and scrubbed to valid UTF-8 ('?' for bad bytes).
 *
 * Cost: a sentence is tokenized once (a hash lookup per word) and only the
 * tokens "i", "my", "call" start pattern matching: 0.7-1.2 us per short chat
 * sentence at -O2 (0.85-1.5 M sentences/s on one shared EPYC core, mixed
 * chat text, results included), 25-50 MB/s on long turns. Memory: one rx
 * context per call (~5 KiB) plus the results. Thread-safety: no mutable
 * globals but the keyword table, built once under pthread_once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "providers/extract.h"

#define TOK_W 24                /* bytes of a token's lower-case form, NUL included */
#define SENT_TOKENS_MAX 96      /* tokens of one sentence; longer ones are cut */
#define VALUE_MAX 256           /* bytes of a value or entity */
#define CONTENT_MAX 1024        /* bytes of a rules content */
#define NP_MAX 6                /* tokens of a value phrase */
#define TAIL_MAX 20             /* tokens of a content tail */
#define LIST_MAX 6              /* items of "X, Y and Z" */

#define CONF_BASE 0.7f
#define CONF_EXPLICIT 0.8f
#define CONF_CHANGE 0.9f
#define CONF_WEAK 0.6f
#define CONF_HEDGE_CAP 0.45f
#define CONF_REPORTED_CAP 0.5f

#define IMP_CONSTRAINT 0.95f    /* allergy, intolerance, condition */
#define IMP_CANNOT 0.9f         /* can't / must not eat|use */
#define IMP_AVOID 0.85f         /* shouldn't, don't eat, avoid, budget */
#define IMP_DIET 0.8f
#define IMP_IDENTITY 0.7f       /* name, role */
#define IMP_FACT 0.65f          /* employer, location */
#define IMP_FACT_LOW 0.55f      /* origin, age, language, marital status */
#define IMP_USES 0.45f
#define IMP_PREF 0.55f
#define IMP_PREF_STRONG 0.6f
#define IMP_EXP 0.45f
#define IMP_EXP_PURCHASE 0.5f
#define IMP_EXP_LIFE 0.6f
#define IMP_CHANGE_BOOST 0.1f

/* ======================================================================== */
/* keywords                                                                 */
/* ======================================================================== */

enum {
    K_HEDGE = 1u << 0,      /* maybe, probably */
    K_CHANGE = 1u << 1,     /* now, promoted, moved */
    K_TIME = 1u << 2,       /* yesterday, ago: a past time on its own */
    K_PERIOD = 1u << 3,     /* week, summer: after "last" / "this" */
    K_WEEKDAY = 1u << 4,
    K_MONTH = 1u << 5,
    K_UNIT = 1u << 6,       /* days, years: after a number */
    K_NUMW = 1u << 7,       /* a, two, several */
    K_STOP = 1u << 8,       /* conjunctions and relatives: end a phrase */
    K_PREP = 1u << 9,
    K_DET = 1u << 10,       /* stripped from the front of a value */
    K_PRON = 1u << 11,      /* objects that are no topic: it, you, that */
    K_AUX = 1u << 12,       /* do, am, can: a question when before "I" */
    K_WH = 1u << 13,
    K_REPORT = 1u << 14,    /* said, thinks */
    K_HYPO = 1u << 15,      /* if, imagine */
    K_ADV = 1u << 16,       /* skipped between subject and verb */
    K_FAMILY = 1u << 17,    /* "I love my wife" is no topic */
    K_PAST = 1u << 18,      /* simple past of experience verbs */
    K_PART = 1u << 19,      /* participles after "I have" */
    K_VERB = 1u << 20,      /* ends a list item */
    K_SUBJ = 1u << 21,      /* "and I ...": a new clause */
    K_TAIL = 1u << 22,      /* fillers that end a value: too, now, a lot */
    K_DIET = 1u << 23,
    K_COND = 1u << 24,      /* medical conditions */
    K_PRES = 1u << 25,      /* present verbs conjugated after "I" in content */
};

typedef struct kw_group {
    unsigned flags;
    const char *words;      /* space-separated, lower case, each < TOK_W bytes */
} kw_group;

static const kw_group g_kw_groups[] = {
    {K_HEDGE, "maybe probably perhaps possibly might apparently kinda sorta presumably "
              "supposedly"},
    {K_CHANGE, "now promoted became become recently anymore switched changed moved relocated "
               "started joined turned nowadays"},
    {K_TIME, "yesterday recently earlier ago today tonight"},
    {K_PERIOD, "morning afternoon evening night weekend week month year summer winter spring "
               "fall autumn semester holiday holidays vacation time christmas easter decade "
               "season quarter term"},
    {K_WEEKDAY, "monday tuesday wednesday thursday friday saturday sunday"},
    {K_MONTH, "january february march april may june july august september october november "
              "december"},
    {K_UNIT, "second seconds minute minutes hour hours day days week weeks month months year "
             "years decade decades"},
    {K_NUMW, "a an one two three four five six seven eight nine ten eleven twelve fifteen "
             "twenty thirty forty fifty couple few several many"},
    {K_STOP, "and but or because since so as than though although while when whenever where "
             "which who whom whose that if unless until till before after then whereas cause "
             "cuz plus nor yet except especially particularly even including such like whether"},
    {K_PREP, "at for in on with from to by near about over under into during without around "
             "across through before after against between among via per outside inside within "
             "onto toward towards upon behind beside besides beyond throughout off"},
    {K_DET, "a an the my your our his her their this that these those some any all every each "
             "its new"},
    {K_PRON, "it this that these those you them him her me us everything anything something "
             "nothing everyone anyone someone everybody anybody somebody nobody it's that's "
             "there's they're we're you're he's she's what's one both either neither none "
             "myself yourself yourselves themselves what how whatever whoever there here lots"},
    {K_AUX, "do does did am are is can could should would will have has had was were shall may "
            "might must"},
    {K_WH, "what who where when why how which whom whose"},
    {K_REPORT, "said says say told tells tell thinks think thought believes believe believed "
               "claims claim claimed guess guesses suppose supposed reckon assume assumes "
               "assumed feel feels mentioned insists insisted"},
    {K_HYPO, "if unless suppose supposing imagine imagining pretend pretending hypothetically "
             "whether wish wished assuming"},
    {K_ADV, "really also actually truly totally absolutely definitely still currently just now "
            "genuinely honestly personally generally usually always mostly originally recently "
            "finally officially seriously sincerely so very quite pretty super extremely deeply "
            "severely deathly highly already literally basically certainly obviously "
            "completely simply mainly primarily kinda maybe probably perhaps possibly "
            "apparently supposedly presumably"},
    {K_FAMILY, "wife husband kids kid children child son sons daughter daughters mom mum mother "
               "dad father family parents partner girlfriend boyfriend friend friends brother "
               "brothers sister sisters boss colleague colleagues coworker coworkers grandma "
               "grandpa grandmother grandfather baby fiance fiancee cousin cousins neighbor "
               "neighbour"},
    {K_PAST, "went visited traveled travelled flew drove started finished completed bought "
             "purchased ordered booked got attended saw watched read met ran graduated joined "
             "left quit tried ate climbed hiked played won lost enjoyed loved liked hated had "
             "did made took spent learned learnt signed launched adopted built wrote lived "
             "worked returned received married celebrated passed failed sold fixed painted "
             "cooked baked camped swam skied biked cycled walked studied taught organized "
             "organised hosted presented published released shipped broke injured hurt stayed "
             "explored moved became turned"},
    {K_PART, "been visited traveled travelled flown driven started finished completed bought "
             "purchased ordered booked attended seen watched read met run tried eaten climbed "
             "hiked played won lost had done made taken learned learnt lived worked written "
             "built adopted studied published quit left joined graduated used"},
    {K_VERB, "am is are was were be been being have has had do does did like likes love loves "
             "enjoy enjoys prefer prefers adore hate hates dislike dislikes detest loathe "
             "despise work works live lives speak speaks use uses own owns eat eats drink drinks "
             "want wants need needs think go goes get gets can could should would will must "
             "may might shall avoid moving working living"},
    {K_SUBJ, "i we he she they you it there"},
    {K_TAIL, "too also anymore now currently nowadays lately either though again already here "
             "there right very much lot today tonight yesterday recently ago last next every "
             "really actually so honestly anyway please thanks especially particularly mostly "
             "more most best better least rather instead sometimes often usually always never "
             "ever etc lol haha btw daily weekly once twice thrice not"},
    {K_DIET, "vegetarian vegan pescatarian pescetarian flexitarian gluten-free dairy-free "
             "lactose-free kosher halal keto paleo"},
    {K_COND, "diabetes diabetic celiac coeliac asthma asthmatic epilepsy epileptic hypertension "
             "migraines migraine adhd autism dyslexia dyslexic pregnant"},
    {K_PRES, "like love enjoy prefer adore hate dislike work live speak use own eat drink want "
             "need go know think play watch try study teach run cook travel visit write have do"},
};

#define KW_SLOTS 2048u          /* power of two, > 2x the words */

typedef struct kw_slot {
    char w[TOK_W];          /* "" = empty */
    unsigned flags;
} kw_slot;

static kw_slot g_kw[KW_SLOTS];
static pthread_once_t g_kw_once = PTHREAD_ONCE_INIT;

static uint32_t kw_hash(const char *w, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)w[i]) * 16777619u;
    }
    return h ^ (h >> 15);
}

static void kw_add(const char *w, size_t n, unsigned flags)
{
    uint32_t i = kw_hash(w, n) & (KW_SLOTS - 1);
    while (g_kw[i].w[0] != '\0') {
        if (strlen(g_kw[i].w) == n && memcmp(g_kw[i].w, w, n) == 0) {
            g_kw[i].flags |= flags;
            return;
        }
        i = (i + 1) & (KW_SLOTS - 1);
    }
    memcpy(g_kw[i].w, w, n);
    g_kw[i].w[n] = '\0';
    g_kw[i].flags = flags;
}

static void kw_init(void)
{
    for (size_t g = 0; g < STRATA_ARRAY_LEN(g_kw_groups); g++) {
        const char *p = g_kw_groups[g].words;
        while (*p != '\0') {
            while (*p == ' ') {
                p++;
            }
            const char *e = p;
            while (*e != '\0' && *e != ' ') {
                e++;
            }
            if (e > p && (size_t)(e - p) < TOK_W) {
                kw_add(p, (size_t)(e - p), g_kw_groups[g].flags);
            }
            p = e;
        }
    }
}

static unsigned kw_lookup(const char *w, size_t n)
{
    if (n == 0 || n >= TOK_W) {
        return 0;
    }
    uint32_t i = kw_hash(w, n) & (KW_SLOTS - 1);
    while (g_kw[i].w[0] != '\0') {
        if (g_kw[i].w[0] == w[0] && strncmp(g_kw[i].w, w, n) == 0 && g_kw[i].w[n] == '\0') {
            return g_kw[i].flags;
        }
        i = (i + 1) & (KW_SLOTS - 1);
    }
    return 0;
}

/* ======================================================================== */
/* context and tokens                                                       */
/* ======================================================================== */

typedef struct tok {
    uint32_t off;           /* byte offset of the word in the turn */
    uint32_t len;           /* bytes of the word (a contraction: both halves share it) */
    unsigned k;             /* K_* classes of w */
    uint8_t wlen;           /* bytes of w */
    uint8_t brk;            /* 1: a clause break follows */
    uint8_t cap;            /* 1: the word starts with A-Z */
    uint8_t mixed;          /* 1: brand-like (iPhone, PS5, not PhD) */
    uint8_t digits;         /* 1: only ASCII digits */
    uint8_t quoted;         /* 1: inside double quotes */
    uint8_t half;           /* 0: a word; 1/2: first/second half of a contraction */
    char w[TOK_W];          /* lower-case ASCII form, ’ as ', NUL-terminated, maybe cut */
} tok;

/* One extract call: the current sentence and the results so far. */
typedef struct rx {
    const char *s;              /* text of the current turn (borrowed) */
    size_t slen;                /* bytes of it read */
    uint32_t source;            /* index of the current turn */
    tok t[SENT_TOKENS_MAX + 2]; /* the current sentence; +2: a contraction at the end */
    size_t n;                   /* tokens in t */
    uint8_t cs[SENT_TOKENS_MAX + 2]; /* clause start of each token */
    bool hedge;                 /* the sentence hedges */
    bool change;                /* the sentence states a change */
    bool prev_change;           /* the previous sentence of the turn did (promoted, moved) */
    bool reported;              /* the current trigger is in reported speech */
    bool clause_hedge;          /* the current trigger follows "I think" */
    extract_candidate *items;   /* results (strata_malloc) */
    size_t n_items;
    size_t cap_items;
    int rc;                     /* first error (ENOMEM); once set, nothing more is emitted */
} rx;

/* Accessors that treat a position past the sentence as an empty word, so
 * patterns can look ahead without bounds checks: keyword classes of token j,
 * token j is w, token j is one of the space-separated words of list, a
 * clause break follows token j. */
static unsigned kw_at(const rx *x, size_t j)
{
    return j < x->n ? x->t[j].k : 0;
}

static bool is_w(const rx *x, size_t j, const char *w)
{
    return j < x->n && strcmp(x->t[j].w, w) == 0;
}

/* w is one of the space-separated words of list. */
static bool word_in(const char *w, const char *list)
{
    size_t n = strlen(w);
    if (n == 0) {
        return false;
    }
    const char *p = strstr(list, w);
    while (p != NULL) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) {
            return true;
        }
        p = strstr(p + n, w);
    }
    return false;
}

static bool in_w(const rx *x, size_t j, const char *list)
{
    return j < x->n && word_in(x->t[j].w, list);
}

static bool brk_at(const rx *x, size_t j)
{
    return j < x->n && x->t[j].brk;
}

/* ======================================================================== */
/* tokenizer                                                                */
/* ======================================================================== */

static bool is_alnum_c(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_digit_c(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Length of a UTF-8 punctuation mark at s[i] that we treat as punctuation
 * (’ ‘ “ ” – — … ¿ ¡), else 0. *what: '\'' apostrophe, '"' open or close
 * quote ('<' open, '>' close), '-' dash, ',' ellipsis, ' ' other. */
static size_t upunct(const char *str, size_t n, size_t i, char *what)
{
    const unsigned char *s = (const unsigned char *)str;
    if (s[i] == 0xE2 && i + 2 < n && s[i + 1] == 0x80) {
        switch (s[i + 2]) {
        case 0x98: case 0x99: *what = '\''; return 3;
        case 0x9C: *what = '<'; return 3;
        case 0x9D: *what = '>'; return 3;
        case 0x93: case 0x94: *what = '-'; return 3;
        case 0xA6: *what = ','; return 3;
        default: return 0;
        }
    }
    if (s[i] == 0xC2 && i + 1 < n && (s[i + 1] == 0xBF || s[i + 1] == 0xA1)) {
        *what = ' ';
        return 2;
    }
    return 0;
}

/* A byte that is part of a word (not counting the inner-only characters). */
static bool word_byte(const char *s, size_t n, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    if (is_alnum_c(c)) {
        return true;
    }
    if (c >= 0x80) {
        char what;
        return upunct(s, n, i, &what) == 0;
    }
    return false;
}

/* End of the word whose first byte is s[i]. */
static size_t word_end(const char *s, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n) {
        unsigned char c = (unsigned char)s[j];
        if (word_byte(s, n, j)) {
            j++;
            continue;
        }
        unsigned char prev = (unsigned char)s[j - 1];
        unsigned char next = j + 1 < n ? (unsigned char)s[j + 1] : 0;
        char what = 0;
        size_t ul = c >= 0x80 ? upunct(s, n, j, &what) : 0;
        if ((c == '\'' || (ul > 0 && what == '\'')) && j > i) {
            size_t after = j + (ul > 0 ? ul : 1);
            unsigned char a = after < n ? (unsigned char)s[after] : 0;
            if ((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) {
                j = after;
                continue;
            }
            break;
        }
        if (c == '-' && is_alnum_c(prev) && is_alnum_c(next)) {
            j++;
            continue;
        }
        if ((c == '.' || c == ',') && is_digit_c(prev) && is_digit_c(next)) {
            j++;
            continue;
        }
        if (c == '.' && is_alnum_c(prev) && is_alnum_c(next)) {
            j++;    /* node.js, e.g */
            continue;
        }
        if ((c == '+' || c == '#') && j - i <= 2 && ((prev >= 'A' && prev <= 'Z') || prev == '+')) {
            j++;    /* C++, C#, F# */
            continue;
        }
        if (c == '%' && is_digit_c(prev)) {
            j++;
            continue;
        }
        break;
    }
    return j;
}

/* Fill t's lower-case form from the bytes s[0..n), ’ folded to '. */
static void tok_set_w(tok *t, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < TOK_W - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0x99 || (unsigned char)s[i + 2] == 0x98)) {
            t->w[o++] = '\'';
            i += 2;
            continue;
        }
        t->w[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    t->w[o] = '\0';
    t->wlen = (uint8_t)o;
}

static void tok_set_word(tok *t, const char *w)
{
    size_t n = strlen(w);
    memcpy(t->w, w, n + 1);
    t->wlen = (uint8_t)n;
}

/* Split a contraction in the lower-case form w: the two halves, or false.
 * "i'm" -> i am, "i've" -> i have, "i'd" -> i would, "i'll" -> i will,
 * "im" -> i am, "cannot" -> can not, "X n't" -> X not (can't, won't). */
static bool contraction(const char *w, size_t n, char *a, char *b)
{
    static const char *const pairs[][3] = {
        {"i'm", "i", "am"}, {"im", "i", "am"}, {"i've", "i", "have"}, {"i'd", "i", "would"},
        {"i'll", "i", "will"}, {"cannot", "can", "not"}, {"can't", "can", "not"},
        {"won't", "will", "not"}, {"ain't", "am", "not"}, {"shan't", "shall", "not"},
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(pairs); i++) {
        if (strcmp(w, pairs[i][0]) == 0) {
            strcpy(a, pairs[i][1]);
            strcpy(b, pairs[i][2]);
            return true;
        }
    }
    if (n >= 4 && n < TOK_W - 1 && strcmp(w + n - 3, "n't") == 0) {
        memcpy(a, w, n - 3);
        a[n - 3] = '\0';
        strcpy(b, "not");
        return true;
    }
    return false;
}

static void sentence_end(rx *x);

/* Append the word s[i..e) to the sentence (two tokens for a contraction). */
static void push_word(rx *x, size_t i, size_t e, bool quoted)
{
    if (x->n >= SENT_TOKENS_MAX) {
        sentence_end(x);
    }
    tok *t = &x->t[x->n];
    const char *s = x->s + i;
    size_t n = e - i;
    memset(t, 0, offsetof(tok, w));
    t->off = (uint32_t)i;
    t->len = (uint32_t)n;
    t->quoted = quoted;
    t->cap = s[0] >= 'A' && s[0] <= 'Z';
    bool camel = false;         /* an inner capital before a small letter: iPhone, MacBook */
    bool alpha = false;
    bool digit = false;
    bool only_digits = true;
    for (size_t j = 0; j < n; j++) {
        unsigned char c = (unsigned char)s[j];
        camel = camel || (j > 0 && j + 1 < n && c >= 'A' && c <= 'Z' && s[j + 1] >= 'a' &&
                          s[j + 1] <= 'z');
        alpha = alpha || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        digit = digit || is_digit_c(c);
        only_digits = only_digits && is_digit_c(c);
    }
    t->mixed = camel || (alpha && digit && n >= 2);
    t->digits = only_digits;
    tok_set_w(t, s, n);
    char a[TOK_W];
    char b[TOK_W];
    if (t->wlen < TOK_W - 1 && contraction(t->w, t->wlen, a, b)) {
        tok *t2 = &x->t[x->n + 1];
        *t2 = *t;
        tok_set_word(t, a);
        tok_set_word(t2, b);
        t->half = 1;
        t2->half = 2;
        t2->cap = 0;
        t->k = kw_lookup(t->w, t->wlen);
        t2->k = kw_lookup(t2->w, t2->wlen);
        x->n += 2;
        return;
    }
    t->k = kw_lookup(t->w, t->wlen);
    x->n++;
}

static void set_brk(rx *x)
{
    if (x->n > 0) {
        x->t[x->n - 1].brk = 1;
    }
}

static void do_sentence(rx *x, bool question);

static void sentence_end(rx *x)
{
    do_sentence(x, false);
}

/* Tokenize one turn and run do_sentence on each sentence. */
static void scan_turn(rx *x)
{
    const char *s = x->s;
    size_t n = x->slen;
    size_t i = 0;
    bool quoted = false;
    x->n = 0;
    x->prev_change = false;
    while (i < n && x->rc == STRATA_OK) {
        unsigned char c = (unsigned char)s[i];
        if (word_byte(s, n, i) || (c == '$' && i + 1 < n && is_digit_c((unsigned char)s[i + 1]))) {
            size_t e = word_end(s, n, i);
            push_word(x, i, e, quoted);
            i = e;
            continue;
        }
        char what = 0;
        size_t ul = c >= 0x80 ? upunct(s, n, i, &what) : 0;
        if (ul > 0) {
            if (what == '<' || what == '>') {
                quoted = what == '<';
                set_brk(x);
            } else if (what == '-' || what == ',') {
                set_brk(x);
            }
            i += ul;
            continue;
        }
        switch (c) {
        case '.': case '!': case '\n': case '\r':
            do_sentence(x, false);
            break;
        case '?':
            do_sentence(x, true);
            break;
        case ',': case ';': case ':': case '(': case ')': case '[': case ']': case '{': case '}':
            set_brk(x);
            break;
        case '"':
            quoted = !quoted;
            set_brk(x);
            break;
        case '-':
            if (i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '-')) {
                set_brk(x);
            }
            break;
        default:
            break;
        }
        i++;
    }
    do_sentence(x, false);
}

/* ======================================================================== */
/* strings: values, entities, content                                       */
/* ======================================================================== */

/* Replace the bytes of invalid UTF-8 sequences in s[0..n) by '?'. */
static void utf8_scrub(char *str, size_t n)
{
    unsigned char *s = (unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t need = (s[i] & 0xE0) == 0xC0 ? 2 : (s[i] & 0xF0) == 0xE0 ? 3 :
                      (s[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (need > 0 && i + need <= n && utf8_valid(str + i, need)) {
            i += need;
        } else {
            s[i] = '?';
            i++;
        }
    }
}

/* A bounded string under construction; errors latch into x->rc. */
typedef struct cbuf {
    rx *x;
    sbuf b;
    size_t max;             /* bytes kept; the rest is cut at a character boundary */
    bool full;
} cbuf;

static void cb_init(cbuf *c, rx *x, size_t max)
{
    c->x = x;
    sbuf_init(&c->b, max + 8);
    c->max = max;
    c->full = false;
}

static void cb_put(cbuf *c, const char *p, size_t n)
{
    if (c->full || c->x->rc != STRATA_OK) {
        return;
    }
    if (c->b.len + n > c->max) {
        n = c->max - c->b.len;
        while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80) {
            n--;    /* do not cut a character */
        }
        c->full = true;
    }
    if (sbuf_append(&c->b, p, n) != STRATA_OK) {
        c->x->rc = STRATA_ENOMEM;
    }
}

static void cb_puts(cbuf *c, const char *s)
{
    cb_put(c, s, strlen(s));
}

/* The finished string (scrubbed, trailing spaces dropped), or NULL with x->rc
 * set on failure. */
static char *cb_take(cbuf *c)
{
    if (c->x->rc != STRATA_OK) {
        sbuf_free(&c->b);
        return NULL;
    }
    size_t n = 0;
    char *s = sbuf_take(&c->b, &n);
    if (s == NULL) {
        c->x->rc = STRATA_ENOMEM;
        return NULL;
    }
    while (n > 0 && s[n - 1] == ' ') {
        s[--n] = '\0';
    }
    utf8_scrub(s, n);
    return s;
}

/* 3rd person singular of a present verb: like -> likes, have -> has. */
static void conj3(char *out, size_t cap, const char *v)
{
    static const char *const irr[][2] = {
        {"am", "is"}, {"have", "has"}, {"do", "does"}, {"go", "goes"}, {"can", "can"},
        {"will", "will"}, {"would", "would"}, {"must", "must"}, {"should", "should"},
    };
    for (size_t i = 0; i < STRATA_ARRAY_LEN(irr); i++) {
        if (strcmp(v, irr[i][0]) == 0) {
            snprintf(out, cap, "%s", irr[i][1]);
            return;
        }
    }
    size_t n = strlen(v);
    const char *end2 = n >= 2 ? v + n - 2 : v;
    char last = n > 0 ? v[n - 1] : '\0';
    if (last == 's' || last == 'x' || last == 'z' || last == 'o' || strcmp(end2, "ch") == 0 ||
        strcmp(end2, "sh") == 0) {
        snprintf(out, cap, "%ses", v);
    } else if (last == 'y' && n >= 2 && !strchr("aeiou", v[n - 2])) {
        snprintf(out, cap, "%.*sies", (int)(n - 1), v);
    } else {
        snprintf(out, cap, "%ss", v);
    }
}

/* Copy the user's words of tokens [a, b) into c, whitespace runs collapsed
 * to one space, with I / me / my / mine / myself in the third person and a
 * present verb right after "I" conjugated ("I live" -> "User lives"). */
static void cb_span(cbuf *c, size_t a, size_t b)
{
    rx *x = c->x;
    bool after_i = false;
    b = STRATA_MIN(b, x->n);
    for (size_t j = a; j < b; j++) {
        const tok *t = &x->t[j];
        if (t->half == 2 && j > a) {
            continue;   /* printed with its first half */
        }
        if (j > a) {
            const tok *p = &x->t[j - 1];
            size_t g0 = p->off + p->len;
            size_t g1 = t->off;
            bool space = false;
            for (size_t i = g0; i < g1; i++) {
                unsigned char ch = (unsigned char)x->s[i];
                if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f') {
                    space = true;
                    continue;
                }
                if (space) {
                    cb_put(c, " ", 1);
                    space = false;
                }
                cb_put(c, x->s + i, 1);
            }
            if (space) {
                cb_put(c, " ", 1);
            }
        }
        const char *w = t->w;
        if (t->half == 1 && strcmp(w, "i") == 0) {
            const char *second = j + 1 < x->n ? x->t[j + 1].w : "";
            if (strcmp(second, "am") == 0) {
                cb_puts(c, "User is");
            } else if (strcmp(second, "have") == 0) {
                cb_puts(c, "User has");
            } else {
                cb_puts(c, "User ");
                cb_puts(c, second);
            }
            continue;
        }
        if (t->half == 0 && strcmp(w, "i") == 0) {
            cb_puts(c, "User");
            after_i = true;
            continue;
        }
        if (after_i) {
            after_i = false;
            if (t->half == 1 && strcmp(w, "do") == 0) {
                cb_puts(c, "doesn't");
                continue;
            }
            if (t->half == 0 && (strcmp(w, "am") == 0 || (t->k & K_PRES))) {
                char v[TOK_W + 4];
                conj3(v, sizeof(v), w);
                cb_puts(c, v);
                continue;
            }
        }
        if (t->half == 0 && (strcmp(w, "my") == 0 || strcmp(w, "mine") == 0)) {
            cb_puts(c, "User's");
            continue;
        }
        if (t->half == 0 && (strcmp(w, "me") == 0 || strcmp(w, "myself") == 0)) {
            cb_puts(c, "User");
            continue;
        }
        cb_put(c, x->s + t->off, t->len);
    }
}

/* The user's words of [a, b) as a new string (VALUE_MAX), or NULL. */
static char *span_dup(rx *x, size_t a, size_t b)
{
    cbuf c;
    cb_init(&c, x, VALUE_MAX);
    cb_span(&c, a, b);
    return cb_take(&c);
}

static char *str_dup(rx *x, const char *s)
{
    if (x->rc != STRATA_OK) {
        return NULL;
    }
    char *d = strata_strdup(s);
    if (d == NULL) {
        x->rc = STRATA_ENOMEM;
    }
    return d;
}

/* ASCII-lower-cased copy of s, or NULL (s NULL or ENOMEM). */
static char *lower_dup(rx *x, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = str_dup(x, s);
    for (char *p = d; p != NULL && *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (char)(*p + 32);
        }
    }
    return d;
}

/* ======================================================================== */
/* emitting candidates                                                      */
/* ======================================================================== */

enum {
    EM_CHANGE = 1u << 0,        /* a stated change raises confidence and importance */
    EM_CONSTRAINT = 1u << 1,    /* kept (capped) in reported speech */
    EM_ENTITY = 1u << 2,        /* entity = lower-cased value */
};

static bool streq_null(const char *a, const char *b, bool nocase)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return nocase ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

static float clamp01(float v)
{
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

/*
 * Add one candidate. Takes ownership of value, entity and content (any may
 * be NULL after a failed allocation: then x->rc is set and nothing is
 * added); with EM_ENTITY and no entity, the entity is the lower-cased value.
 * attr and kind are static strings; attr is copied; kind is kept only with
 * an entity. Applies the sentence context (hedge, change, reported speech)
 * to the scores, and merges with an equal candidate (type, attribute, value,
 * entity) of this call.
 */
static void emit_full(rx *x, strata_memory_type type, const char *attr, char *value,
                      char *entity, const char *kind, int pol, float conf, float imp,
                      unsigned flags, char *content)
{
    char *attr_copy = NULL;
    if (x->rc != STRATA_OK || content == NULL || content[0] == '\0' ||
        (attr != NULL && (value == NULL || value[0] == '\0'))) {
        goto drop;
    }
    if (x->reported) {
        if (!(flags & EM_CONSTRAINT)) {
            goto drop;
        }
        conf = STRATA_MIN(conf, CONF_REPORTED_CAP);
    }
    if ((flags & EM_CHANGE) && x->change) {
        conf = STRATA_MAX(conf, CONF_CHANGE);
        imp += IMP_CHANGE_BOOST;
    }
    if (x->hedge || x->clause_hedge) {
        conf = STRATA_MIN(conf, CONF_HEDGE_CAP);
    }
    if ((flags & EM_ENTITY) && entity == NULL) {
        entity = lower_dup(x, value);
        if (entity == NULL) {
            goto drop;
        }
    }
    for (size_t i = 0; i < x->n_items; i++) {
        extract_candidate *o = &x->items[i];
        if (o->type == type && streq_null(o->attribute, attr, false) &&
            streq_null(o->value, value, true) && streq_null(o->entity, entity, false)) {
            if (conf >= o->confidence) {
                strata_free(o->content);
                o->content = content;
                content = NULL;
            }
            o->confidence = STRATA_MAX(o->confidence, clamp01(conf));
            o->importance = STRATA_MAX(o->importance, clamp01(imp));
            o->source = x->source;
            goto drop;
        }
    }
    if (x->n_items >= EXTRACT_RULES_ITEMS_MAX) {
        goto drop;
    }
    if (attr != NULL) {
        attr_copy = str_dup(x, attr);
        if (attr_copy == NULL) {
            goto drop;
        }
    }
    if (x->n_items == x->cap_items) {
        size_t cap = x->cap_items ? x->cap_items * 2 : 8;
        extract_candidate *p = strata_realloc(x->items, cap * sizeof(*p));
        if (p == NULL) {
            x->rc = STRATA_ENOMEM;
            goto drop;
        }
        x->items = p;
        x->cap_items = cap;
    }
    extract_candidate *c = &x->items[x->n_items++];
    c->type = type;
    c->content = content;
    c->attribute = attr_copy;
    c->value = attr_copy != NULL ? value : NULL;
    c->entity = entity;
    c->entity_kind = entity != NULL ? (char *)kind : NULL;
    c->polarity = pol;
    c->confidence = clamp01(conf);
    c->importance = clamp01(imp);
    c->source = x->source;
    if (attr_copy == NULL) {
        strata_free(value);
    }
    return;
drop:
    strata_free(attr_copy);
    strata_free(entity);
    strata_free(value);
    strata_free(content);
}

static void emit(rx *x, strata_memory_type type, const char *attr, char *value, const char *kind,
                 int pol, float conf, float imp, unsigned flags, char *content)
{
    emit_full(x, type, attr, value, NULL, kind, pol, conf, imp, flags, content);
}

/* ======================================================================== */
/* phrases                                                                  */
/* ======================================================================== */

/* A four-digit year 1900..2099. */
static bool is_year(const rx *x, size_t j)
{
    if (j >= x->n || !x->t[j].digits || x->t[j].wlen != 4) {
        return false;
    }
    const char *w = x->t[j].w;
    return (w[0] == '1' && w[1] == '9') || (w[0] == '2' && w[1] == '0');
}

/* Is there a past time expression in tokens [a, b)? "yesterday", "last
 * week", "3 years ago", "in 2023", "on Monday", "the other day", "when I
 * was a kid", "for two years". */
static bool has_time(const rx *x, size_t a, size_t b)
{
    for (size_t j = a; j < b && j < x->n; j++) {
        unsigned k = x->t[j].k;
        if (k & K_TIME) {
            return true;
        }
        if (is_w(x, j, "last") && (kw_at(x, j + 1) & (K_PERIOD | K_WEEKDAY | K_MONTH))) {
            return true;
        }
        if (is_w(x, j, "this") && (kw_at(x, j + 1) & K_PERIOD)) {
            return true;
        }
        if ((is_w(x, j, "in") || is_w(x, j, "back")) && (is_year(x, j + 1) ||
                                                     (kw_at(x, j + 1) & K_MONTH))) {
            return true;
        }
        if (is_w(x, j, "on") && (kw_at(x, j + 1) & K_WEEKDAY)) {
            return true;
        }
        if (is_w(x, j, "other") && in_w(x, j + 1, "day week night")) {
            return true;
        }
        if (is_w(x, j, "when") && is_w(x, j + 1, "i") && in_w(x, j + 2, "was were")) {
            return true;
        }
        if (is_w(x, j, "for") && (x->t[j + 1 < x->n ? j + 1 : j].digits ||
                                (kw_at(x, j + 1) & K_NUMW)) && (kw_at(x, j + 2) & K_UNIT)) {
            return true;
        }
    }
    return false;
}

/* Skip determiners from a; *your set if "your" was among them. A capital
 * one inside a sentence belongs to a name ("New York", "The Beatles"). */
static size_t skip_det(const rx *x, size_t a, bool *your)
{
    while (a < x->n && (x->t[a].k & K_DET) && !x->t[a].brk && !(x->t[a].cap && a > 0)) {
        if (your != NULL && strcmp(x->t[a].w, "your") == 0) {
            *your = true;
        }
        a++;
    }
    return a;
}

/* End of the noun phrase starting at a (determiners already skipped): at
 * most max tokens, stopping before a conjunction, preposition (except "of"
 * inside), filler, subject pronoun, verb (except first) or determiner
 * (except after "of"), and after a token followed by a clause break. */
static size_t np_end(const rx *x, size_t a, size_t max)
{
    size_t j = a;
    while (j < x->n && j - a < max) {
        unsigned k = x->t[j].k;
        if (j == a) {
            if (k & (K_STOP | K_PREP | K_TAIL | K_SUBJ | K_PRON | K_AUX | K_HEDGE)) {
                break;
            }
        } else {
            bool after_of = is_w(x, j - 1, "of");
            if (is_w(x, j, "of")) {
                if (x->t[j].brk || j + 1 >= x->n ||
                    (kw_at(x, j + 1) & (K_STOP | K_PREP | K_TAIL | K_SUBJ | K_PRON))) {
                    break;
                }
            } else if (k & (K_STOP | K_PREP | K_TAIL | K_SUBJ | K_VERB | K_PAST | K_AUX |
                            K_HEDGE)) {
                break;
            } else if (((k & K_NUMW) || x->t[j].digits) && (kw_at(x, j + 1) & K_UNIT)) {
                break;  /* "three years ago" */
            } else if ((k & K_DET) && !after_of) {
                break;
            } else if ((k & K_PRON) && !after_of) {
                break;
            }
        }
        j++;
        if (x->t[j - 1].brk) {
            break;
        }
    }
    while (j > a && is_w(x, j - 1, "of")) {
        j--;
    }
    return j;
}

/* The preference object's end: a noun phrase, and a gerund takes its
 * particle or its to/for/with/about phrase ("going to the gym"). */
static size_t pref_end(const rx *x, size_t a)
{
    size_t b = np_end(x, a, NP_MAX);
    if (b == a || x->t[b - 1].brk || b >= x->n) {
        return b;
    }
    const char *last = x->t[b - 1].w;
    size_t ln = x->t[b - 1].wlen;
    if (ln > 4 && strcmp(last + ln - 3, "ing") == 0) {
        if (in_w(x, b, "out up")) {
            return b + 1;
        }
        if (in_w(x, b, "to for with about") && !x->t[b].brk) {
            size_t c = skip_det(x, b + 1, NULL);
            size_t e = np_end(x, c, NP_MAX);
            if (e > c) {
                return e;
            }
        }
    }
    return b;
}

/* End of a content tail from a: to the clause break, before a conjunction
 * (but "and"/"or" not followed by a subject continue; "than" continues when
 * allow_than), at most TAIL_MAX tokens. */
static size_t tail_end(const rx *x, size_t a, bool allow_than)
{
    size_t j = a;
    while (j < x->n && j - a < TAIL_MAX) {
        if (j > a && (x->t[j].k & K_STOP)) {
            bool cont = false;
            if (in_w(x, j, "and or")) {
                cont = !(kw_at(x, j + 1) & K_SUBJ) && !is_w(x, j + 1, "my") &&
                       !(kw_at(x, j + 1) & (K_STOP | K_AUX));
            } else if (allow_than && in_w(x, j, "than")) {
                cont = true;
            } else if (in_w(x, j, "like") && j == a) {
                cont = true;
            }
            if (!cont) {
                break;
            }
        }
        j++;
        if (x->t[j - 1].brk) {
            break;
        }
    }
    return j;
}

typedef struct item {
    size_t d;       /* start with determiners ("the beach") */
    size_t a;       /* core start ("beach") */
    size_t b;       /* core end */
    bool your;      /* "your X": the assistant's thing, not the user's interest */
} item;

/* A list "X, Y and Z" from a: up to max items; each continuation must be a
 * clean short phrase ending at a break, "and"/"or" or the clause end. */
static size_t np_list(const rx *x, size_t a, item *items, size_t max, bool pref)
{
    size_t n = 0;
    size_t d = a;
    while (n < max && d < x->n) {
        bool your = false;
        size_t c = skip_det(x, d, &your);
        size_t e = pref ? pref_end(x, c) : np_end(x, c, NP_MAX);
        if (e == c) {
            break;
        }
        if (n > 0) {
            bool clean_end = e >= x->n || x->t[e - 1].brk || in_w(x, e, "and or") ||
                             (kw_at(x, e) & K_TAIL);
            if (!clean_end) {
                break;
            }
        }
        items[n].d = d;
        items[n].a = c;
        items[n].b = e;
        items[n].your = your;
        n++;
        size_t next;
        if (x->t[e - 1].brk) {
            next = e;
            if (in_w(x, next, "and or")) {
                next++;
            }
        } else if (in_w(x, e, "and or")) {
            next = e + 1;
        } else {
            break;
        }
        if (next >= x->n || (kw_at(x, next) & (K_SUBJ | K_STOP | K_ADV | K_TAIL | K_HEDGE)) ||
            is_w(x, next, "my")) {
            break;
        }
        d = next;
    }
    return n;
}

/* The product-or-topic kind of an object: product when it is brand-like
 * (iPhone, PS5, "Pixel 8") or new ("my new Kindle"); bought things are
 * products too, but the caller knows that. */
static const char *kind_of(const rx *x, size_t d, size_t a, size_t b)
{
    bool owned = false;
    for (size_t j = d; j < a; j++) {
        owned = owned || is_w(x, j, "new");
    }
    for (size_t j = a; j < b; j++) {
        if (x->t[j].mixed || (x->t[j].cap && j + 1 < b && x->t[j + 1].digits)) {
            return "product";
        }
    }
    return owned ? "product" : "topic";
}

/* ======================================================================== */
/* patterns                                                                 */
/* ======================================================================== */

/* Content "User <verb> <tail>" built from a prefix and a token range. */
static char *content_of(rx *x, const char *prefix, size_t a, size_t b, const char *suffix)
{
    cbuf c;
    cb_init(&c, x, CONTENT_MAX);
    cb_puts(&c, prefix);
    if (b > a) {
        cb_span(&c, a, b);
    }
    if (suffix != NULL) {
        cb_puts(&c, suffix);
    }
    return cb_take(&c);
}

/* Value of a core [a, b), or NULL. */
static char *value_of(rx *x, size_t a, size_t b)
{
    return b > a ? span_dup(x, a, b) : NULL;
}

/* One preference per list item from a: "User <verb3> <item>". A single item's
 * content runs from cfrom (SIZE_MAX: the item) to the end of its tail. */
static void emit_prefs(rx *x, size_t a, size_t cfrom, const char *verb3, int pol, float conf,
                       float imp, const char *kind_override)
{
    item it[LIST_MAX];
    size_t n = np_list(x, a, it, LIST_MAX, true);
    for (size_t i = 0; i < n; i++) {
        const tok *first = &x->t[it[i].a];
        bool vague = it[i].b == it[i].a + 1 &&
                     in_w(x, it[i].a, "idea way thing things stuff one ones part fact point "
                                      "sound look feeling");
        if (it[i].your || vague || (first->k & (K_PRON | K_FAMILY | K_REPORT | K_AUX)) ||
            (kw_at(x, it[i].a + 1) & K_FAMILY)) {
            continue;   /* "I like your answer", "I like the idea", "I like to think" */
        }
        size_t cstart = n == 1 && cfrom < it[i].d ? cfrom : it[i].d;
        size_t cend = n == 1 ? tail_end(x, cstart, true) : it[i].b;
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "User %s ", verb3);
        const char *kind = kind_override ? kind_override :
                           kind_of(x, it[i].d, it[i].a, it[i].b);
        emit(x, STRATA_MEM_PREFERENCE, pol > 0 ? "likes" : "dislikes",
             value_of(x, it[i].a, it[i].b), kind, pol, conf, imp, EM_CHANGE | EM_ENTITY,
             content_of(x, prefix, cstart, cend, NULL));
    }
}

/* Constraint objects: "User can't eat X" per item. */
static void emit_avoids(rx *x, size_t a, const char *phrase, float imp)
{
    item it[LIST_MAX];
    size_t n = np_list(x, a, it, LIST_MAX, false);
    for (size_t i = 0; i < n; i++) {
        if (x->t[it[i].a].k & (K_PRON | K_FAMILY)) {
            continue;
        }
        size_t cend = n == 1 ? tail_end(x, it[i].d, false) : it[i].b;
        emit(x, STRATA_MEM_FACT, "avoids", value_of(x, it[i].a, it[i].b), "constraint", -1,
             CONF_BASE, imp, EM_CHANGE | EM_CONSTRAINT | EM_ENTITY,
             content_of(x, phrase, it[i].d, cend, NULL));
    }
}

static void emit_allergies(rx *x, size_t a, const char *attr, const char *prefix)
{
    item it[LIST_MAX];
    size_t n = np_list(x, a, it, LIST_MAX, false);
    for (size_t i = 0; i < n; i++) {
        if (x->t[it[i].a].k & K_PRON) {
            continue;
        }
        emit(x, STRATA_MEM_FACT, attr, value_of(x, it[i].a, it[i].b), "constraint", -1,
             CONF_EXPLICIT, IMP_CONSTRAINT, EM_CONSTRAINT | EM_ENTITY,
             content_of(x, prefix, it[i].a, it[i].b, NULL));
    }
}

/* A place after "in"/"to" at a: location or origin. */
static bool emit_place(rx *x, size_t a, const char *attr, const char *prefix, float conf,
                       float imp)
{
    size_t c = skip_det(x, a, NULL);
    size_t e = np_end(x, c, 5);
    if (e == c || in_w(x, c, "fear hope denial peace debt") || (x->t[c].k & K_PRON)) {
        return false;
    }
    emit(x, STRATA_MEM_FACT, attr, value_of(x, c, e), "topic", 0, conf, imp,
         EM_CHANGE | EM_ENTITY, content_of(x, prefix, a, e, NULL));
    return true;
}

/* An organisation after "at"/"for" at a: employer (or school). */
static bool emit_org(rx *x, size_t a, const char *attr, const char *prefix, float conf,
                     float imp)
{
    size_t c = skip_det(x, a, NULL);
    size_t e = np_end(x, c, 5);
    if (e == c || (x->t[c].k & K_PRON) ||
        in_w(x, c, "home night nights weekend weekends moment least once times work remote "
                 "remotely present first myself")) {
        return false;
    }
    emit(x, STRATA_MEM_FACT, attr, value_of(x, c, e), "topic", 0, conf, imp,
         EM_CHANGE | EM_ENTITY, content_of(x, prefix, a, e, NULL));
    return true;
}

static void emit_age(rx *x, size_t j, const char *prefix, float conf)
{
    const tok *t = &x->t[j];
    if (t->wlen > 3) {
        return;
    }
    int age = atoi(t->w);
    if (age < 1 || age > 130) {
        return;
    }
    char *value = span_dup(x, j, j + 1);
    cbuf c;
    cb_init(&c, x, CONTENT_MAX);
    cb_puts(&c, prefix);
    cb_put(&c, x->s + t->off, t->len);
    cb_puts(&c, strcmp(prefix, "User is ") == 0 ? " years old" : "");
    emit(x, STRATA_MEM_FACT, "age", value, NULL, 0, conf, IMP_FACT_LOW, EM_CHANGE, cb_take(&c));
}

/* A role noun phrase at a (after "a"/"an"/"the" at art, or none): emits the
 * role and an employer after "at"/"for". Returns true if a role was found. */
static bool emit_role(rx *x, size_t art, size_t a, const char *verb, float conf, float imp)
{
    /* "a 34 year old developer", "a 34-year-old developer": the age too. */
    if (a + 2 < x->n && x->t[a].digits && in_w(x, a + 1, "year years") && is_w(x, a + 2, "old")) {
        emit_age(x, a, "User is ", conf);
        a += 3;
    } else if (a < x->n && x->t[a].wlen > 8 && x->t[a].w[0] >= '0' && x->t[a].w[0] <= '9' &&
               (strstr(x->t[a].w, "-year-old") != NULL || strstr(x->t[a].w, "-years-old"))) {
        a++;
    }
    size_t e = np_end(x, a, 5);
    if (e == a || in_w(x, a, "bit little lot tad kind sort part bunch couple few only") ||
        in_w(x, e - 1, "person guy girl fan one") || (x->t[a].k & (K_PRON | K_NUMW))) {
        return false;
    }
    bool the = art < x->n && is_w(x, art, "the");
    if (the && !in_w(x, e, "at for")) {
        return false;   /* "I'm the best" is no role; "the CTO at Acme" is */
    }
    char prefix[48];
    const char *article = the ? "the" : strchr("aeiouAEIOU", x->s[x->t[a].off]) ? "an" : "a";
    snprintf(prefix, sizeof(prefix), "User %s %s ", verb, article);
    emit(x, STRATA_MEM_FACT, "role", value_of(x, a, e), NULL, 0, conf, imp, EM_CHANGE,
         content_of(x, prefix, a, e, NULL));
    if (in_w(x, e, "at for") && !brk_at(x, e)) {
        /* "a student at Stanford" studies there; anyone else works there. */
        bool student = in_w(x, e - 1, "student undergrad undergraduate");
        char ep[32];
        snprintf(ep, sizeof(ep), student ? "User studies %s " : "User works %s ", x->t[e].w);
        emit_org(x, e + 1, student ? "school" : "employer", ep, conf, IMP_FACT);
    }
    return true;
}

/* "on a keto diet" / a diet word at j: diet. */
static bool emit_diet(rx *x, size_t j, const char *prefix)
{
    if (j >= x->n) {
        return false;
    }
    if (is_w(x, j, "on")) {
        size_t c = skip_det(x, j + 1, NULL);
        if (c + 1 < x->n && is_w(x, c + 1, "diet") && !(x->t[c].k & (K_STOP | K_PREP))) {
            emit(x, STRATA_MEM_FACT, "diet", lower_dup(x, x->t[c].w), "constraint", 0, CONF_BASE,
                 IMP_DIET, EM_CHANGE | EM_ENTITY, content_of(x, prefix, j, c + 2, NULL));
            return true;
        }
        return false;
    }
    if (!(x->t[j].k & K_DIET)) {
        return false;
    }
    emit(x, STRATA_MEM_FACT, "diet", lower_dup(x, x->t[j].w), "constraint", 0, CONF_BASE,
         IMP_DIET, EM_CHANGE | EM_ENTITY, content_of(x, prefix, j, j + 1, NULL));
    return true;
}

/* A medical condition at j ("diabetes", "celiac disease"). */
static bool emit_condition(rx *x, size_t j, const char *prefix)
{
    if (j >= x->n || !(x->t[j].k & K_COND)) {
        return false;
    }
    const char *w = x->t[j].w;
    size_t e = in_w(x, j + 1, "disease") ? j + 2 : j + 1;
    char *value;
    if (strcmp(w, "diabetic") == 0) {
        value = str_dup(x, "diabetes");
    } else if (strcmp(w, "asthmatic") == 0) {
        value = str_dup(x, "asthma");
    } else if (strcmp(w, "epileptic") == 0) {
        value = str_dup(x, "epilepsy");
    } else if (strcmp(w, "dyslexic") == 0) {
        value = str_dup(x, "dyslexia");
    } else {
        value = span_dup(x, j, e);
    }
    char *content = NULL;
    if (value != NULL) {
        cbuf c;
        cb_init(&c, x, CONTENT_MAX);
        cb_puts(&c, prefix);
        cb_puts(&c, value);
        content = cb_take(&c);
    }
    emit(x, STRATA_MEM_FACT, "condition", value, "constraint", 0, CONF_EXPLICIT, IMP_CONSTRAINT,
         EM_CONSTRAINT | EM_ENTITY, content);
    return true;
}

/* Languages after "speak" / "fluent in". */
static void emit_languages(rx *x, size_t a, const char *prefix)
{
    while (in_w(x, a, "fluent some little bit basic conversational native good decent broken "
                    "a an")) {
        a++;
    }
    item it[LIST_MAX];
    size_t n = np_list(x, a, it, LIST_MAX, false);
    for (size_t i = 0; i < n; i++) {
        if (x->t[it[i].a].k & (K_PRON | K_PREP)) {
            continue;
        }
        emit(x, STRATA_MEM_FACT, "language", value_of(x, it[i].a, it[i].b), "topic", 0,
             CONF_BASE, IMP_FACT_LOW, EM_CHANGE | EM_ENTITY,
             content_of(x, prefix, it[i].a, it[i].b, NULL));
    }
}

/* "I use X" / "I own X": products. */
static void emit_uses(rx *x, size_t a, const char *attr, const char *prefix)
{
    item it[LIST_MAX];
    size_t n = np_list(x, a, it, LIST_MAX, false);
    for (size_t i = 0; i < n; i++) {
        if (it[i].your || (x->t[it[i].a].k & (K_PRON | K_FAMILY))) {
            continue;
        }
        size_t cend = n == 1 ? tail_end(x, it[i].d, false) : it[i].b;
        emit(x, STRATA_MEM_FACT, attr, value_of(x, it[i].a, it[i].b), "product", 0, CONF_BASE,
             IMP_USES, EM_CHANGE | EM_ENTITY, content_of(x, prefix, it[i].d, cend, NULL));
    }
}

/* After "work"/"working" at p: at|for X [as a Y], as a Y [at|for X]. */
static bool rule_work(rx *x, size_t p, const char *verb3, float conf, float imp)
{
    while (in_w(x, p, "remotely full-time part-time freelance currently mainly mostly now "
                    "still there here")) {
        p++;
    }
    if (in_w(x, p, "at for") && !brk_at(x, p)) {
        char prefix[48];
        snprintf(prefix, sizeof(prefix), "User %s %s ", verb3, x->t[p].w);
        bool ok = emit_org(x, p + 1, "employer", prefix, conf, imp);
        size_t c = skip_det(x, p + 1, NULL);
        size_t e = np_end(x, c, 5);
        if (ok && is_w(x, e, "as")) {
            size_t art = e + 1;
            size_t r = in_w(x, art, "a an") ? art + 1 : art;
            emit_role(x, art, r, "is", conf, IMP_IDENTITY);
        }
        return ok;
    }
    if (is_w(x, p, "as") && !brk_at(x, p)) {
        size_t art = p + 1;
        size_t r = in_w(x, art, "a an") ? art + 1 : art;
        return emit_role(x, art, r, "is", conf, IMP_IDENTITY);
    }
    return false;
}

/* Experience: "I <past verb> ... <time>" or "I have <participle> ...". vi is
 * the verb's index, t the subject's; perfect: "have" + participle. */
static bool rule_experience(rx *x, size_t t, size_t vi, bool perfect, bool just)
{
    size_t cs = x->cs[t];
    size_t end = tail_end(x, vi, false);
    bool lead_time = t > cs && t - cs <= 6 && has_time(x, cs, t);
    if (!perfect && !just && !lead_time && !has_time(x, vi, end)) {
        return false;
    }
    const char *v = x->t[vi].w;
    if (in_w(x, vi, "had did made got was were left lost") && end <= vi + 2) {
        return false;   /* "I had it yesterday": too little to keep */
    }
    /* The thing the event was about, for the graph. */
    size_t oa = vi + 1;
    bool to_verb = word_in(v, "went flew traveled travelled drove returned been");
    if (to_verb && in_w(x, oa, "to back")) {
        oa = is_w(x, oa, "back") && is_w(x, oa + 1, "to") ? oa + 2 : oa + 1;
    } else if (to_verb && !(oa < x->n && x->t[oa].wlen > 4 &&
                            strcmp(x->t[oa].w + x->t[oa].wlen - 3, "ing") == 0)) {
        oa = x->n;  /* "went home": no entity */
    }
    bool purchase = word_in(v, "bought purchased ordered booked got");
    bool objecty = to_verb || purchase ||
                   word_in(v, "visited watched read played finished completed attended tried "
                              "climbed adopted saw seen ate eaten started learned learnt "
                              "studied built enjoyed loved liked hated ran won hosted organized "
                              "organised launched published wrote sold painted cooked baked");
    char *value = NULL;
    const char *kind = NULL;
    if (objecty && oa < x->n) {
        size_t c = skip_det(x, oa, NULL);
        size_t e = np_end(x, c, 5);
        if (e > c && !(x->t[c].k & (K_PRON | K_FAMILY))) {
            value = value_of(x, c, e);
            kind = purchase ? "product" : kind_of(x, oa, c, e);
        }
    }
    cbuf cb;
    cb_init(&cb, x, CONTENT_MAX);
    cb_puts(&cb, perfect ? "User has " : just ? "User just " : "User ");
    cb_span(&cb, vi, end);
    if (lead_time) {
        /* "Last year I ..." -> "User ... last year"; "On Monday" keeps its capital. */
        cb_puts(&cb, " ");
        size_t mark = cb.b.len;
        cb_span(&cb, cs, t);
        bool lower = x->t[cs].cap && x->t[cs].k != 0 && !(x->t[cs].k & (K_WEEKDAY | K_MONTH));
        if (lower && cb.b.data != NULL && mark < cb.b.len && cb.b.data[mark] >= 'A' &&
            cb.b.data[mark] <= 'Z') {
            cb.b.data[mark] = (char)(cb.b.data[mark] + 32);
        }
    }
    char *content = cb_take(&cb);
    int pol = word_in(v, "enjoyed loved liked") ? 1 : strcmp(v, "hated") == 0 ? -1 : 0;
    float imp = purchase ? IMP_EXP_PURCHASE :
                word_in(v, "graduated adopted married") ? IMP_EXP_LIFE : IMP_EXP;
    /* No attribute for experiences: the object is only the entity. */
    char *entity = lower_dup(x, value);
    strata_free(value);
    emit_full(x, STRATA_MEM_EXPERIENCE, NULL, NULL, entity, kind, pol, CONF_BASE, imp, 0,
              content);
    return true;
}

/* Patterns after "am" at p (the "I'm ..." family). */
static void rule_am(rx *x, size_t p, float conf)
{
    while (p < x->n && (x->t[p].k & K_ADV) && !x->t[p].brk) {
        p++;
    }
    bool neg = false;
    if (is_w(x, p, "not") || is_w(x, p, "never")) {
        neg = true;
        p++;
    } else if (is_w(x, p, "no") && is_w(x, p + 1, "longer")) {
        neg = true;
        p += 2;
    }
    while (p < x->n && (x->t[p].k & K_ADV) && !x->t[p].brk) {
        p++;
    }
    if (p >= x->n) {
        return;
    }
    /* "a (big|huge) fan of X" - the one negation we keep. */
    size_t f = p;
    if (in_w(x, f, "a an")) {
        f++;
        while (in_w(x, f, "big huge massive great total real")) {
            f++;
        }
        if (is_w(x, f, "fan") && is_w(x, f + 1, "of") && !brk_at(x, f + 1)) {
            emit_prefs(x, f + 2, SIZE_MAX, neg ? "is not a fan of" : "is a fan of", neg ? -1 : 1,
                       conf, IMP_PREF, NULL);
            return;
        }
    }
    if (neg) {
        if (is_w(x, p, "allowed") && is_w(x, p + 1, "to") &&
            in_w(x, p + 2, "eat have drink use consume take")) {
            char prefix[48];
            snprintf(prefix, sizeof(prefix), "User is not allowed to %s ", x->t[p + 2].w);
            emit_avoids(x, p + 3, prefix, IMP_CANNOT);
        }
        return;     /* "I'm not a doctor", "I'm no longer vegan": nothing */
    }
    if (is_w(x, p, "into") && !brk_at(x, p)) {
        emit_prefs(x, p + 1, SIZE_MAX, "is into", 1, conf, IMP_PREF, NULL);
        return;
    }
    if (is_w(x, p, "allergic") && is_w(x, p + 1, "to") && !brk_at(x, p + 1)) {
        emit_allergies(x, p + 2, "allergy", "User is allergic to ");
        return;
    }
    if (in_w(x, p, "lactose gluten") && is_w(x, p + 1, "intolerant")) {
        char prefix[48];
        snprintf(prefix, sizeof(prefix), "User is %s intolerant", x->t[p].w);
        emit(x, STRATA_MEM_FACT, "intolerance", lower_dup(x, x->t[p].w), "constraint", -1,
             CONF_EXPLICIT, IMP_CONSTRAINT, EM_CONSTRAINT | EM_ENTITY,
             content_of(x, prefix, 0, 0, NULL));
        return;
    }
    if (is_w(x, p, "intolerant") && in_w(x, p + 1, "to of") && !brk_at(x, p + 1)) {
        emit_allergies(x, p + 2, "intolerance", "User is intolerant to ");
        return;
    }
    if (emit_diet(x, p, "User is ") || emit_condition(x, p, "User has ")) {
        return;
    }
    if (in_w(x, p, "a an") && (kw_at(x, p + 1) & K_DIET)) {
        emit_diet(x, p + 1, "User is ");
        return;
    }
    if (is_w(x, p, "from") && !brk_at(x, p)) {
        emit_place(x, p + 1, "origin", "User is from ", conf, IMP_FACT_LOW);
        return;
    }
    if (in_w(x, p, "based located living") && is_w(x, p + 1, "in") && !brk_at(x, p + 1)) {
        emit_place(x, p + 2, "location", "User lives in ", conf, IMP_FACT);
        return;
    }
    if (is_w(x, p, "working")) {
        rule_work(x, p + 1, "works", conf, IMP_FACT);
        return;
    }
    if (is_w(x, p, "fluent") && is_w(x, p + 1, "in")) {
        emit_languages(x, p + 2, "User is fluent in ");
        return;
    }
    if (in_w(x, p, "called named") && p + 1 < x->n && x->t[p + 1].cap) {
        size_t e = np_end(x, p + 1, 3);
        if (e > p + 1) {
            emit(x, STRATA_MEM_FACT, "name", value_of(x, p + 1, e), NULL, 0, CONF_EXPLICIT,
                 IMP_IDENTITY, EM_CHANGE, content_of(x, "User's name is ", p + 1, e, NULL));
        }
        return;
    }
    if (x->t[p].digits) {
        bool years = in_w(x, p + 1, "years yrs") && is_w(x, p + 2, "old");
        bool alone = p + 1 >= x->n || x->t[p].brk || in_w(x, p + 1, "and but now so yo");
        if (years || alone) {
            emit_age(x, p, "User is ", conf);
        }
        return;
    }
    if (in_w(x, p, "married single divorced widowed engaged") &&
        (p + 1 >= x->n || x->t[p].brk || (kw_at(x, p + 1) & (K_STOP | K_PREP | K_TAIL)))) {
        emit(x, STRATA_MEM_FACT, "marital_status", lower_dup(x, x->t[p].w), NULL, 0, conf,
             IMP_FACT_LOW, EM_CHANGE, content_of(x, "User is ", p, p + 1, NULL));
        return;
    }
    if (in_w(x, p, "a an the") && !brk_at(x, p)) {
        size_t r = p + 1;
        while (in_w(x, r, "big huge massive great total real")) {
            r++;
        }
        size_t e = np_end(x, r, 5);
        if (e > r && is_w(x, e - 1, "fan") && e - 1 > r && !is_w(x, p, "the")) {
            /* "a huge Star Wars fan" */
            char *value = value_of(x, r, e - 1);
            emit(x, STRATA_MEM_PREFERENCE, "likes", value, kind_of(x, r, r, e - 1), 1,
                 conf, IMP_PREF, EM_CHANGE | EM_ENTITY,
                 content_of(x, "User is a fan of ", r, e - 1, NULL));
            return;
        }
        emit_role(x, p, p + 1, "is", conf, IMP_IDENTITY);
    }
}

/* The verb tokens after subject "I" at t. */
static void rule_i(rx *x, size_t t)
{
    size_t p = t + 1;
    bool just = false;
    int neg = 0;            /* 1 do not, 2 never, 3 no longer */
    while (p < x->n && (x->t[p].k & K_ADV) && !x->t[p].brk) {
        just = just || is_w(x, p, "just");
        p++;
    }
    if (in_w(x, p, "do does") && is_w(x, p + 1, "not")) {
        neg = 1;
        p += 2;
    } else if (is_w(x, p, "never")) {
        neg = 2;
        p++;
    } else if (is_w(x, p, "no") && is_w(x, p + 1, "longer")) {
        neg = 3;
        p += 2;
    } else if (is_w(x, p, "did") && is_w(x, p + 1, "not")) {
        return;
    } else if (is_w(x, p, "do") && (kw_at(x, p + 1) & K_VERB)) {
        p++;    /* "I do like" */
    }
    while (p < x->n && (x->t[p].k & K_ADV) && !x->t[p].brk) {
        just = just || is_w(x, p, "just");
        p++;
    }
    if (p >= x->n || x->t[t].brk) {
        return;
    }
    const char *v = x->t[p].w;
    static const char *const neg_words[] = {"", "doesn't", "never", "no longer"};
    char prefix[64];

    if (strcmp(v, "am") == 0 && neg == 0) {
        rule_am(x, p + 1, CONF_BASE);
        return;
    }
    if ((strcmp(v, "might") == 0 || strcmp(v, "may") == 0) && is_w(x, p + 1, "be") && neg == 0) {
        x->clause_hedge = true;
        rule_am(x, p + 2, CONF_BASE);
        return;
    }
    /* Preferences. */
    if (word_in(v, "like love enjoy adore prefer")) {
        if (brk_at(x, p)) {
            return;
        }
        size_t o = p + 1;
        if (is_w(x, o, "to") && (neg == 0)) {
            o++;    /* "I like to hike": the activity; "to get short answers": the answers */
            if (in_w(x, o, "get have receive see use") && o + 1 < x->n && !brk_at(x, o)) {
                o++;
            }
        }
        if (neg == 0) {
            char v3[TOK_W + 4];
            conj3(v3, sizeof(v3), v);
            bool strong = word_in(v, "love adore");
            bool prefer = strcmp(v, "prefer") == 0;
            if (o != p + 1) {
                snprintf(prefix, sizeof(prefix), "%s to", v3);
            } else {
                snprintf(prefix, sizeof(prefix), "%s", v3);
            }
            emit_prefs(x, o, o != p + 1 ? p + 2 : SIZE_MAX, prefix, 1, CONF_BASE,
                       strong || prefer ? IMP_PREF_STRONG : IMP_PREF,
                       prefer ? "preference" : NULL);
        } else if (strcmp(v, "prefer") != 0) {
            /* "doesn't like", "never likes", "no longer likes" */
            char v3[TOK_W + 4];
            conj3(v3, sizeof(v3), v);
            snprintf(prefix, sizeof(prefix), "%s %s", neg_words[neg], neg == 1 ? v : v3);
            emit_prefs(x, o, SIZE_MAX, prefix, -1, word_in(v, "love adore") ? CONF_WEAK : CONF_BASE,
                       IMP_PREF, NULL);
        }
        return;
    }
    if (word_in(v, "hate dislike detest loathe despise")) {
        if (neg == 0 && !brk_at(x, p)) {
            char v3[TOK_W + 4];
            conj3(v3, sizeof(v3), v);
            emit_prefs(x, p + 1, SIZE_MAX, v3, -1, CONF_BASE, IMP_PREF_STRONG, NULL);
        }
        return;
    }
    if (strcmp(v, "would") == 0 && neg == 0) {
        if (is_w(x, p + 1, "rather") && !is_w(x, p + 2, "not")) {
            size_t o = p + 2;
            if (in_w(x, o, "have use get eat drink do take go be")) {
                o++;
            }
            emit_prefs(x, o, p + 2, "would rather", 1, CONF_BASE, IMP_PREF, "preference");
        } else if (is_w(x, p + 1, "prefer") && !brk_at(x, p + 1)) {
            emit_prefs(x, p + 2, SIZE_MAX, "would prefer", 1, CONF_WEAK, IMP_PREF, "preference");
        }
        return;     /* "I'd like a coffee": a request, not a preference */
    }
    /* Constraints: can't / must not / shouldn't + eat|have|use ... ; can't stand. */
    if (word_in(v, "can must should") && neg == 0) {
        size_t q = p + 1;
        bool not_ = false;
        if (is_w(x, q, "not") || is_w(x, q, "never")) {
            not_ = true;
            q++;
        }
        while (q < x->n && (x->t[q].k & K_ADV) && !x->t[q].brk) {
            q++;
        }
        if (not_ && is_w(x, q, "stand") && !brk_at(x, q)) {
            emit_prefs(x, q + 1, SIZE_MAX, "can't stand", -1, CONF_BASE, IMP_PREF_STRONG, NULL);
            return;
        }
        if (not_ && in_w(x, q, "eat have drink use take consume tolerate digest touch handle") &&
            !brk_at(x, q)) {
            const char *m = strcmp(v, "can") == 0 ? "can't" :
                            strcmp(v, "must") == 0 ? "must not" : "shouldn't";
            snprintf(prefix, sizeof(prefix), "User %s %s ", m, x->t[q].w);
            emit_avoids(x, q + 1, prefix, strcmp(v, "should") == 0 ? IMP_AVOID : IMP_CANNOT);
            return;
        }
        if (!not_ && strcmp(v, "can") != 0 && is_w(x, q, "avoid") && !brk_at(x, q)) {
            snprintf(prefix, sizeof(prefix), "User %s avoid ", v);
            emit_avoids(x, q + 1, prefix, IMP_AVOID);
        }
        return;
    }
    bool to_avoid = in_w(x, p, "try have need") && is_w(x, p + 1, "to") &&
                    is_w(x, p + 2, "avoid");
    if ((strcmp(v, "avoid") == 0 || to_avoid) && neg == 0) {
        size_t q = strcmp(v, "avoid") == 0 ? p + 1 : p + 3;
        if (strcmp(v, "avoid") == 0) {
            snprintf(prefix, sizeof(prefix), "User avoids ");
        } else {
            char v3[TOK_W + 4];
            conj3(v3, sizeof(v3), v);
            snprintf(prefix, sizeof(prefix), "User %s to avoid ", v3);
        }
        if (!brk_at(x, q - 1)) {
            emit_avoids(x, q, prefix, IMP_AVOID);
        }
        return;
    }
    if (word_in(v, "eat drink consume") && neg != 0) {
        char v3[TOK_W + 4];
        conj3(v3, sizeof(v3), v);
        snprintf(prefix, sizeof(prefix), "User %s %s ", neg_words[neg], neg == 1 ? v : v3);
        if (strcmp(v, "drink") == 0 && (p + 1 >= x->n || brk_at(x, p) ||
                                        (kw_at(x, p + 1) & (K_TAIL | K_STOP)))) {
            emit(x, STRATA_MEM_FACT, "avoids", str_dup(x, "alcohol"), "constraint", -1,
                 CONF_BASE, IMP_AVOID, EM_CHANGE | EM_CONSTRAINT | EM_ENTITY,
                 content_of(x, prefix, 0, 0, "alcohol"));
            return;
        }
        if (!brk_at(x, p)) {
            emit_avoids(x, p + 1, prefix, IMP_AVOID);
        }
        return;
    }
    if (neg != 0) {
        return;     /* "I don't work at X anymore", "I never live ...": nothing */
    }
    /* Facts. */
    if (strcmp(v, "work") == 0) {
        rule_work(x, p + 1, "works", CONF_BASE, IMP_FACT);
        return;
    }
    if (word_in(v, "live reside") && is_w(x, p + 1, "in") && !brk_at(x, p + 1)) {
        emit_place(x, p + 2, "location", "User lives in ", CONF_BASE, IMP_FACT);
        return;
    }
    if (word_in(v, "moved relocated") || (strcmp(v, "have") == 0 && in_w(x, p + 1, "moved "
                                                                              "relocated"))) {
        size_t q = strcmp(v, "have") == 0 ? p + 2 : p + 1;
        if (is_w(x, q, "back")) {
            q++;
        }
        if (is_w(x, q, "to") && !brk_at(x, q)) {
            emit_place(x, q + 1, "location", "User moved to ", CONF_CHANGE,
                       IMP_FACT + 0.05f);
        }
        return;
    }
    if (strcmp(v, "grew") == 0 && is_w(x, p + 1, "up") && is_w(x, p + 2, "in") &&
        !brk_at(x, p + 2)) {
        emit_place(x, p + 3, "origin", "User grew up in ", CONF_BASE, IMP_FACT_LOW);
        return;
    }
    if (strcmp(v, "speak") == 0 && !brk_at(x, p)) {
        emit_languages(x, p + 1, "User speaks ");
        return;
    }
    if (word_in(v, "use own") && !brk_at(x, p) && !is_w(x, p + 1, "to")) {
        emit_uses(x, p + 1, strcmp(v, "use") == 0 ? "uses" : "owns",
                  strcmp(v, "use") == 0 ? "User uses " : "User owns ");
        return;
    }
    if (strcmp(v, "used") == 0 && is_w(x, p + 1, "to")) {
        return;     /* "I used to live in Paris": no longer true */
    }
    if (strcmp(v, "turned") == 0 && p + 1 < x->n && x->t[p + 1].digits) {
        emit_age(x, p + 1, "User turned ", CONF_CHANGE);
        return;
    }
    if (strcmp(v, "follow") == 0 && in_w(x, p + 1, "a an") && is_w(x, p + 3, "diet")) {
        emit(x, STRATA_MEM_FACT, "diet", lower_dup(x, x->t[p + 2].w), "constraint", 0,
             CONF_BASE, IMP_DIET, EM_CHANGE | EM_ENTITY,
             content_of(x, "User follows ", p + 1, p + 4, NULL));
        return;
    }
    /* Changes: promoted, became, started, joined, got a job. */
    size_t q = p;
    if (in_w(x, q, "was got") || (is_w(x, q, "have") && in_w(x, q + 1, "been got"))) {
        q += is_w(x, q, "have") ? 2 : 1;
        while (q < x->n && (x->t[q].k & K_ADV)) {
            q++;
        }
        if (is_w(x, q, "promoted")) {
            if (is_w(x, q + 1, "to") && !brk_at(x, q + 1)) {
                size_t r = in_w(x, q + 2, "a an the") ? q + 3 : q + 2;
                size_t e = np_end(x, r, 5);
                if (e > r && !(x->t[r].k & K_PRON)) {
                    emit(x, STRATA_MEM_FACT, "role", value_of(x, r, e), NULL, 0, CONF_CHANGE,
                         IMP_IDENTITY + IMP_CHANGE_BOOST, 0,
                         content_of(x, "User was promoted to ", q + 2, e, NULL));
                }
            }
            return;
        }
        if (is_w(x, q, "diagnosed") && is_w(x, q + 1, "with")) {
            size_t c = skip_det(x, q + 2, NULL);
            if (!emit_condition(x, c, "User has ")) {
                size_t e = np_end(x, c, 4);
                if (e > c) {
                    emit(x, STRATA_MEM_FACT, "condition", value_of(x, c, e), "constraint", 0,
                         CONF_EXPLICIT, IMP_CONSTRAINT, EM_CONSTRAINT | EM_ENTITY,
                         content_of(x, "User has ", c, e, NULL));
                }
            }
            return;
        }
        if (is_w(x, p, "was") && is_w(x, q, "born") && is_w(x, q + 1, "in") && !is_year(x, q + 2)) {
            emit_place(x, q + 2, "origin", "User was born in ", CONF_BASE, IMP_FACT_LOW);
            return;
        }
        if (is_w(x, p, "got") && in_w(x, q, "married engaged divorced")) {
            emit(x, STRATA_MEM_FACT, "marital_status", lower_dup(x, x->t[q].w), NULL, 0,
                 CONF_CHANGE, IMP_FACT_LOW + IMP_CHANGE_BOOST, 0,
                 content_of(x, "User got ", q, tail_end(x, q, false), NULL));
            return;
        }
        size_t job = q + 1 + (is_w(x, q + 1, "new") ? 1 : 0);
        if (is_w(x, p, "got") && in_w(x, q, "a an") && is_w(x, job, "job")) {
            size_t r = job + 1;
            if (in_w(x, r, "at with") && !brk_at(x, r)) {
                emit_org(x, r + 1, "employer", "User works at ", CONF_CHANGE,
                              IMP_FACT);
            } else if (is_w(x, r, "as")) {
                size_t s = in_w(x, r + 1, "a an") ? r + 2 : r + 1;
                emit_role(x, r + 1, s, "is", CONF_CHANGE, IMP_IDENTITY);
            }
            return;
        }
        if (is_w(x, p, "have") && is_w(x, p + 1, "been")) {
            if (is_w(x, q, "working")) {
                rule_work(x, q + 1, "works", CONF_BASE, IMP_FACT);
                return;
            }
            if (is_w(x, q, "living") && is_w(x, q + 1, "in")) {
                emit_place(x, q + 2, "location", "User lives in ", CONF_BASE, IMP_FACT);
                return;
            }
            if (is_w(x, q, "to") && !brk_at(x, q)) {
                rule_experience(x, t, p + 1, true, false);
                return;
            }
        }
    }
    if (in_w(x, p, "became become") || (is_w(x, p, "went") && (kw_at(x, p + 1) & K_DIET))) {
        size_t r = p + 1;
        if (kw_at(x, r) & K_DIET) {
            emit_diet(x, r, strcmp(v, "went") == 0 ? "User went " : "User became ");
            return;
        }
        if (in_w(x, r, "a an") && !brk_at(x, r)) {
            emit_role(x, r, r + 1, "became", CONF_CHANGE, IMP_IDENTITY);
        }
        return;
    }
    if (in_w(x, p, "started joined")) {
        size_t r = p + 1;
        if (is_w(x, r, "working")) {
            r++;
        }
        if (strcmp(v, "started") == 0 && in_w(x, r, "at with") && !brk_at(x, r)) {
            if (emit_org(x, r + 1, "employer", "User works at ", CONF_CHANGE,
                              IMP_FACT)) {
                return;
            }
        }
        if (strcmp(v, "started") == 0 && is_w(x, r, "as") && !brk_at(x, r)) {
            size_t s = in_w(x, r + 1, "a an") ? r + 2 : r + 1;
            if (emit_role(x, r + 1, s, "is", CONF_CHANGE, IMP_IDENTITY)) {
                return;
            }
        }
        if (strcmp(v, "started") == 0 && in_w(x, r, "a an") && is_w(x, r + 1, "new") &&
            is_w(x, r + 2, "job") && in_w(x, r + 3, "at with") && !brk_at(x, r + 3)) {
            if (emit_org(x, r + 4, "employer", "User works at ", CONF_CHANGE,
                              IMP_FACT)) {
                return;
            }
        }
        if (strcmp(v, "joined") == 0 && r < x->n && x->t[r].cap && !(x->t[r].k & K_DET)) {
            if (emit_org(x, r, "employer", "User joined ", CONF_CHANGE, IMP_FACT)) {
                return;
            }
        }
    }
    /* "I have a peanut allergy", "I have an allergy to X", "I have diabetes". */
    if (strcmp(v, "have") == 0 || (strcmp(v, "got") == 0 && in_w(x, p + 1, "a an"))) {
        size_t r = p + 1;
        if (is_w(x, r, "got")) {
            r++;
        }
        if (emit_condition(x, r, "User has ")) {
            return;
        }
        size_t c = in_w(x, r, "a an") ? r + 1 : r;
        while (in_w(x, c, "severe mild serious bad strong")) {
            c++;
        }
        if (in_w(x, c, "allergy allergies") && is_w(x, c + 1, "to") && !brk_at(x, c + 1)) {
            emit_allergies(x, c + 2, "allergy", "User is allergic to ");
            return;
        }
        size_t e = np_end(x, c, 4);
        if (e > c + 1 && in_w(x, e - 1, "allergy allergies")) {
            emit(x, STRATA_MEM_FACT, "allergy", value_of(x, c, e - 1), "constraint", -1,
                 CONF_EXPLICIT, IMP_CONSTRAINT, EM_CONSTRAINT | EM_ENTITY,
                 content_of(x, "User has ", r, e, NULL));
            return;
        }
        if (strcmp(v, "have") == 0 && (kw_at(x, r) & K_PART) && !is_w(x, r, "been")) {
            rule_experience(x, t, r, true, false);
            return;
        }
    }
    /* Experiences: a past verb with a time. */
    if (x->t[p].k & K_PAST) {
        rule_experience(x, t, p, false, just);
    }
}

/* The attribute of "my favourite <tokens [c, e)>": "favorite_food",
 * "favorite_tv_show"; "likes" when there is no category. */
static void fav_attr(const rx *x, size_t c, size_t e, char attr[EXTRACT_ATTR_MAX + 1])
{
    if (e <= c) {
        snprintf(attr, EXTRACT_ATTR_MAX + 1, "likes");
        return;
    }
    size_t o = (size_t)snprintf(attr, EXTRACT_ATTR_MAX + 1, "favorite");
    for (size_t k = c; k < e && o + 1 < EXTRACT_ATTR_MAX; k++) {
        attr[o++] = '_';
        for (const char *w = x->t[k].w; *w != '\0' && o < EXTRACT_ATTR_MAX; w++) {
            char ch = *w;
            attr[o++] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ? ch : '_';
        }
    }
    attr[o] = '\0';
    char *col = strstr(attr, "colour");   /* one key for both spellings */
    if (col != NULL) {
        memmove(col + 4, col + 5, strlen(col + 5) + 1);
    }
}

/* "my ..." at t: name, favourite, budget, native language, job title, age. */
static void rule_my(rx *x, size_t t)
{
    size_t j = t + 1;
    if (j >= x->n || x->t[t].brk) {
        return;
    }
    bool is_next = in_w(x, j + 1, "is are");
    if ((is_w(x, j, "name") && is_next) || is_w(x, j, "name's")) {
        size_t a = is_w(x, j, "name's") ? j + 1 : j + 2;
        size_t e = np_end(x, a, 4);
        if (e > a && !(x->t[a].k & K_PRON) && !x->t[a].digits) {
            emit(x, STRATA_MEM_FACT, "name", value_of(x, a, e), NULL, 0, CONF_EXPLICIT,
                 IMP_IDENTITY, EM_CHANGE, content_of(x, "User's name is ", a, e, NULL));
        }
        return;
    }
    if (in_w(x, j, "favourite favorite fav fave")) {
        size_t c = j + 1;
        size_t e = c;
        while (e < x->n && e - c < 3 && !in_w(x, e, "is are") && !(x->t[e].k & (K_STOP | K_PREP)) &&
               !x->t[e].brk) {
            e++;
        }
        if (in_w(x, e, "is are") && !brk_at(x, e)) {
            item it[LIST_MAX];
            size_t n = np_list(x, e + 1, it, LIST_MAX, true);
            char attr[EXTRACT_ATTR_MAX + 1] = "likes";
            if (n == 1) {
                fav_attr(x, c, e, attr);
            }
            for (size_t i = 0; i < n; i++) {
                if (x->t[it[i].a].k & (K_PRON | K_FAMILY)) {
                    continue;
                }
                cbuf cb;
                cb_init(&cb, x, CONTENT_MAX);
                cb_puts(&cb, "User's ");
                cb_span(&cb, j, e);
                cb_puts(&cb, n == 1 ? (is_w(x, e, "are") ? " are " : " is ") : " include ");
                cb_span(&cb, it[i].a, it[i].b);
                emit(x, STRATA_MEM_PREFERENCE, attr, value_of(x, it[i].a, it[i].b),
                     kind_of(x, it[i].d, it[i].a, it[i].b), 1, CONF_BASE,
                     IMP_PREF_STRONG, EM_CHANGE | EM_ENTITY, cb_take(&cb));
            }
            return;
        }
        /* "Pizza is my favourite food": the subject before "is my". */
        size_t cs = x->cs[t];
        if (t >= 2 && in_w(x, t - 1, "is are") && t - 1 > cs) {
            size_t a = skip_det(x, cs, NULL);
            size_t b = np_end(x, a, 4);
            if (b == t - 1 && !(x->t[a].k & K_PRON)) {
                cbuf cb;
                cb_init(&cb, x, CONTENT_MAX);
                cb_puts(&cb, "User's ");
                cb_span(&cb, j, e);
                cb_puts(&cb, " is ");
                cb_span(&cb, a, b);
                char attr[EXTRACT_ATTR_MAX + 1];
                fav_attr(x, c, e, attr);
                emit(x, STRATA_MEM_PREFERENCE, attr, value_of(x, a, b),
                     kind_of(x, a, a, b), 1, CONF_BASE, IMP_PREF_STRONG,
                     EM_CHANGE | EM_ENTITY, cb_take(&cb));
            }
        }
        return;
    }
    if (is_w(x, j, "budget") || is_w(x, j, "budget's")) {
        size_t e = j + 1;
        if (is_w(x, j, "budget") && is_w(x, e, "for")) {
            while (e < x->n && e - j < 6 && !in_w(x, e, "is") && !x->t[e].brk) {
                e++;
            }
        }
        size_t a = is_w(x, j, "budget's") ? j + 1 : is_w(x, e, "is") ? e + 1 : x->n;
        size_t b = a;
        bool digit = false;
        while (b < x->n && b - a < 8 && !in_w(x, b, "and but so because since which")) {
            digit = digit || strpbrk(x->t[b].w, "0123456789") != NULL;
            b++;
            if (x->t[b - 1].brk) {
                break;
            }
        }
        if (b > a && digit) {
            cbuf cb;
            cb_init(&cb, x, CONTENT_MAX);
            cb_puts(&cb, "User's ");
            cb_span(&cb, j, is_w(x, j, "budget's") ? j + 1 : e);
            cb_puts(&cb, " is ");
            cb_span(&cb, a, b);
            char *content = cb_take(&cb);
            /* content may read "User's budget's is": fix the contraction. */
            char *bad = content != NULL ? strstr(content, "budget's is") : NULL;
            if (bad != NULL) {
                memmove(bad + 6, bad + 8, strlen(bad + 8) + 1);
            }
            emit_full(x, STRATA_MEM_FACT, "budget", value_of(x, a, b), str_dup(x, "budget"),
                      "constraint", 0, CONF_BASE, IMP_AVOID, EM_CHANGE | EM_CONSTRAINT, content);
        }
        return;
    }
    if (in_w(x, j, "native first mother") && in_w(x, j + 1, "language tongue") &&
        is_w(x, j + 2, "is") && !brk_at(x, j + 2)) {
        emit_languages(x, j + 3, "User's native language is ");
        return;
    }
    if ((in_w(x, j, "role position title") && is_w(x, j + 1, "is")) ||
        (is_w(x, j, "job") && is_w(x, j + 1, "title") && is_w(x, j + 2, "is"))) {
        size_t a = is_w(x, j, "job") ? j + 3 : j + 2;
        size_t r = in_w(x, a, "a an the") ? a + 1 : a;
        emit_role(x, a, r, "is", CONF_BASE, IMP_IDENTITY);
        return;
    }
    if (is_w(x, j, "age") && is_w(x, j + 1, "is") && j + 2 < x->n && x->t[j + 2].digits) {
        emit_age(x, j + 2, "User is ", CONF_BASE);
    }
}

/* "call me X" at t ("call"): a name, when X is capitalised. */
static void rule_call(rx *x, size_t t)
{
    if (t > 0 && in_w(x, t - 1, "not never")) {
        return;
    }
    size_t a = t + 2;
    if (a >= x->n || !x->t[a].cap || x->t[t + 1].brk || (x->t[a].k & (K_TAIL | K_STOP | K_PREP |
                                                                    K_PRON | K_HEDGE))) {
        return;
    }
    size_t e = np_end(x, a, 3);
    if (e > a) {
        emit(x, STRATA_MEM_FACT, "name", value_of(x, a, e), NULL, 0, CONF_EXPLICIT, IMP_IDENTITY,
             EM_CHANGE, content_of(x, "User wants to be called ", a, e, NULL));
    }
}

/* ======================================================================== */
/* sentences                                                                */
/* ======================================================================== */

/* Decide the clause context of a trigger at t; false: skip it. Sets
 * x->reported and x->clause_hedge. */
static bool trigger_ok(rx *x, size_t t)
{
    size_t cs = x->cs[t];
    x->reported = false;
    x->clause_hedge = false;
    if (x->t[t].quoted) {
        return false;
    }
    /* "Do I like ...", "What am I ...": a question without '?'. */
    if (t > cs && (x->t[t - 1].k & K_AUX) && (t - 1 == cs || (kw_at(x, t - 2) & K_WH))) {
        return false;
    }
    for (size_t j = cs; j < t; j++) {
        unsigned k = x->t[j].k;
        if (k & K_HYPO) {
            return false;
        }
        if (k & K_REPORT) {
            size_t s = j;
            while (s > cs && (x->t[s - 1].k & K_ADV)) {
                s--;
            }
            if (s > cs && is_w(x, s - 1, "i")) {
                if (!in_w(x, j, "said says say told tell tells mentioned")) {
                    x->clause_hedge = true;
                }
            } else {
                x->reported = true;
            }
        }
    }
    return true;
}

static void do_sentence(rx *x, bool question)
{
    size_t n = x->n;
    if (n == 0 || x->rc != STRATA_OK) {
        x->n = 0;
        return;
    }
    bool strong_change = false;
    if (!question) {
        x->hedge = false;
        x->change = x->prev_change;
        size_t cs = 0;
        for (size_t j = 0; j < n; j++) {
            x->cs[j] = (uint8_t)cs;
            if (x->t[j].brk) {
                cs = j + 1;
            }
            unsigned k = x->t[j].k;
            if (k & K_HEDGE) {
                x->hedge = true;
            }
            if ((is_w(x, j, "not") && is_w(x, j + 1, "sure")) ||
                (is_w(x, j, "i") && in_w(x, j + 1, "think guess believe suppose reckon assume"))) {
                x->hedge = true;
            }
            if (k & K_CHANGE) {
                x->change = true;
                strong_change = strong_change || in_w(x, j, "promoted became moved relocated "
                                                          "switched changed joined");
            }
            if ((is_w(x, j, "no") && is_w(x, j + 1, "longer")) ||
                (is_w(x, j, "new") && in_w(x, j + 1, "job role position title"))) {
                x->change = true;
                strong_change = true;
            }
        }
        for (size_t j = 0; j < n && x->rc == STRATA_OK; j++) {
            const char *w = x->t[j].w;
            if (w[0] == 'i' && w[1] == '\0') {
                if (trigger_ok(x, j)) {
                    rule_i(x, j);
                }
            } else if (w[0] == 'm' && strcmp(w, "my") == 0) {
                if (trigger_ok(x, j)) {
                    rule_my(x, j);
                }
            } else if (w[0] == 'c' && strcmp(w, "call") == 0 && is_w(x, j + 1, "me")) {
                if (trigger_ok(x, j)) {
                    rule_call(x, j);
                }
            }
        }
    }
    x->prev_change = strong_change;
    x->reported = false;
    x->clause_hedge = false;
    x->n = 0;
}

/* ======================================================================== */
/* the extractor                                                            */
/* ======================================================================== */

static void set_err(char *errbuf, size_t errcap, int rc, const char *msg)
{
    strata_error(rc, "%s", msg);
    if (errbuf != NULL && errcap > 0) {
        snprintf(errbuf, errcap, "%s", msg);
    }
}

void extract_result_free(extract_result *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        strata_free(r->items[i].content);
        strata_free(r->items[i].attribute);
        strata_free(r->items[i].value);
        strata_free(r->items[i].entity);
    }
    strata_free(r->items);
    strata_free(r);
}

void extractor_free(extractor *x)
{
    if (x != NULL) {
        x->ops->close(x);
    }
}

bool extract_attribute_multi(const char *attribute)
{
    return attribute != NULL &&
           word_in(attribute, "likes dislikes allergy intolerance condition avoids language "
                              "uses owns");
}

static int rules_extract(extractor *ex, const strata_turn *turns, size_t n_turns,
                         extract_result **out, char *errbuf, size_t errcap)
{
    (void)ex;
    *out = NULL;
    if ((turns == NULL && n_turns > 0) || n_turns > UINT32_MAX) {
        set_err(errbuf, errcap, STRATA_EINVAL, "rules extractor: bad turns argument");
        return STRATA_EINVAL;
    }
    pthread_once(&g_kw_once, kw_init);
    extract_result *res = strata_calloc(1, sizeof(*res));
    rx *x = strata_calloc(1, sizeof(*x));
    if (res == NULL || x == NULL) {
        strata_free(res);
        strata_free(x);
        set_err(errbuf, errcap, STRATA_ENOMEM, "rules extractor: out of memory");
        return STRATA_ENOMEM;
    }
    for (size_t i = 0; i < n_turns && x->rc == STRATA_OK; i++) {
        if (turns[i].role != STRATA_ROLE_USER || turns[i].content == NULL) {
            continue;
        }
        x->s = turns[i].content;
        x->slen = STRATA_MIN(turns[i].content_len, (size_t)EXTRACT_RULES_TURN_MAX);
        x->source = (uint32_t)i;
        scan_turn(x);
    }
    res->items = x->items;
    res->n = x->n_items;
    int rc = x->rc;
    strata_free(x);
    if (rc != STRATA_OK) {
        extract_result_free(res);
        set_err(errbuf, errcap, rc, "rules extractor: out of memory");
        return rc;
    }
    *out = res;
    return STRATA_OK;
}

static void rules_close(extractor *x)
{
    strata_free(x);
}

static const extractor_ops g_rules_ops = {
    .name = "rules",
    .extract = rules_extract,
    .close = rules_close,
};

int extractor_rules_create(extractor **out)
{
    *out = NULL;
    pthread_once(&g_kw_once, kw_init);
    extractor *x = strata_malloc(sizeof(*x));
    if (x == NULL) {
        return strata_error(STRATA_ENOMEM, "rules extractor: out of memory");
    }
    x->ops = &g_rules_ops;
    *out = x;
    return STRATA_OK;
}
