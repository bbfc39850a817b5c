/*
 * embed_hash.c - the built-in offline embedder ("hash-v1-<dim>"): signed
 * feature hashing (Weinberger et al., 2009) of a bag of text features, the
 * default when no embedding server is configured. No model, no network, a
 * few microseconds per sentence; it matches shared words and word pieces,
 * not meaning ("car" and "automobile" stay unrelated), which is the trade-off
 * accepted for an always-available fallback.
 *
 * Features of one text, from the words of text_tokenize (l2/bm25.h: the same
 * words BM25 indexes) minus stopwords:
 *
 *   kind       feature                                  weight
 *   unigram    text_stem(word)          "hike"          HASH_W_UNIGRAM  1.0
 *   bigram     stem(prev) stem(word)    "love|hike"     HASH_W_BIGRAM   0.4
 *   3-gram     character 3-grams of the "<hi" "hik" ... HASH_W_TRIGRAM  0.4
 *              unstemmed word between "ing" "ng>"
 *              boundary marks: <word>
 *
 * Bigrams join consecutive non-stopwords ("loves hiking in the mountains"
 * gives love|hike, hike|mountain). 3-grams are cut at code point boundaries,
 * so a word in any script gets them, and they tie together forms the
 * stemmer misses (mountain / mountainous). Each distinct feature f with tf
 * occurrences adds
 *
 *     sign(h) * weight * (1 + ln tf)      to  v[bucket(h)]
 *
 * where h = murmur3-fmix64(FNV-1a 64(kind byte, feature bytes)), bucket(h) =
 * (high 32 bits of h * dim) >> 32 and sign(h) = low bit of h (+1 / -1):
 * signed hashing makes collisions cancel in expectation instead of adding
 * up. Then v is L2-normalised. A text with no feature gets the single
 * feature "[EMPTY]" (a fixed one-hot unit vector), and so does the
 * vanishingly unlikely text whose features cancel out exactly.
 *
 * Weights were set on paraphrase / unrelated triplets like those in
 * tests/unit/test_embed_hash.c (19 of them, some unrelated pairs sharing
 * word pieces): over bigram 0.3..0.5 and 3-gram 0.2..0.7 the worst-case
 * margin (paraphrase cosine minus |unrelated cosine|) moved only between
 * 0.28 and 0.30; lower bigram weights favour paraphrases (which rarely keep
 * word pairs) while higher 3-gram weights also raise unrelated cosines
 * through shared affixes ("-ing"). 0.4 / 0.4 sits in the flat middle: mean
 * paraphrase cosine 0.55, mean |unrelated| 0.06. A long word's many 3-grams
 * (a 9-letter word has 9) then weigh about as much as its unigram.
 *
 * Counting: features go into a small open-addressing table (feature hash ->
 * tf) sized from the text length, so a short sentence touches a few hundred
 * bytes of scratch. A long text fills the table: then the counts so far are
 * flushed into v and the table restarts, which only affects tf of features
 * repeated across the flush (bounded memory instead of exact tf on huge
 * texts). Accumulation is in double; the result rounds to float.
 *
 * Determinism: the hash is fixed (no seed, unlike hash_bytes), and the float
 * math is a fixed sequence of IEEE operations (1 + ln tf comes from a table
 * for tf <= 16), so a text gives the same bits on every run and every
 * machine built without -ffast-math. Changing a weight, the hash or the
 * feature set changes every vector: bump the model name ("hash-v2") so
 * stored collections are not searched with mismatched vectors.
 *
 * Thread-safety: the embedder has no mutable state; each embed call
 * allocates its own scratch.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "l2/bm25.h"
#include "providers/embed.h"

#define HASH_W_UNIGRAM 1.0
#define HASH_W_BIGRAM 0.4
#define HASH_W_TRIGRAM 0.4

#define HASH_TABLE_MIN 64u          /* cells; power of two */
#define HASH_TABLE_MAX (1u << 15)   /* cells; a text needing more flushes */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

enum { KIND_UNIGRAM = 'U', KIND_BIGRAM = 'B', KIND_TRIGRAM = 'C', KIND_EMPTY = 'E' };

typedef struct hash_feat {
    uint64_t h;             /* feature hash */
    double w;               /* kind weight */
    uint32_t tf;            /* occurrences so far */
} hash_feat;

/* Scratch of one embed call, reused text after text. */
typedef struct hash_ctx {
    uint32_t dim;
    double *vec;            /* dim accumulators */
    hash_feat *feats;       /* distinct features of the text, <= table_cap / 2 */
    size_t n_feats;
    uint32_t *table;        /* feature index + 1, 0 = empty */
    size_t table_cap;       /* cells in use for this text (power of two) */
    char prev[TEXT_TOKEN_MAX];  /* stem of the previous non-stopword, for bigrams */
    size_t prev_n;          /* 0: no previous word */
    size_t n_words;         /* non-stopwords seen */
} hash_ctx;

/* 1 + ln(tf) for tf = 1..16, as literals so no libm rounding enters. */
static const double g_sublinear[17] = {
    0.0,
    1.0,
    1.6931471805599454,
    2.09861228866811,
    2.386294361119891,
    2.6094379124341005,
    2.791759469228055,
    2.9459101490553135,
    3.0794415416798357,
    3.1972245773362196,
    3.302585092994046,
    3.3978952727983707,
    3.4849066497880004,
    3.5649493574615367,
    3.6390573296152584,
    3.70805020110221,
    3.772588722239781,
};

static uint64_t fnv_byte(uint64_t h, uint8_t c)
{
    return (h ^ c) * FNV_PRIME;
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * FNV_PRIME;
    }
    return h;
}

/* murmur3's fmix64: FNV-1a alone mixes its last bytes poorly into the high
 * bits that pick the bucket. */
static uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Add the current features to vec and empty the table. */
static void ctx_flush(hash_ctx *c)
{
    for (size_t i = 0; i < c->n_feats; i++) {
        const hash_feat *f = &c->feats[i];
        double tfw = f->tf < STRATA_ARRAY_LEN(g_sublinear) ? g_sublinear[f->tf]
                                                           : 1.0 + log((double)f->tf);
        uint32_t bucket = (uint32_t)(((f->h >> 32) * (uint64_t)c->dim) >> 32);
        double v = f->w * tfw;
        c->vec[bucket] += (f->h & 1u) ? -v : v;
    }
    memset(c->table, 0, c->table_cap * sizeof(*c->table));
    c->n_feats = 0;
}

static void ctx_feature(hash_ctx *c, uint64_t h, double w)
{
    size_t mask = c->table_cap - 1;
    size_t i = (size_t)h & mask;
    while (c->table[i] != 0) {
        hash_feat *f = &c->feats[c->table[i] - 1];
        if (f->h == h) {
            f->tf++;
            return;
        }
        i = (i + 1) & mask;
    }
    if (c->n_feats >= c->table_cap / 2) {
        ctx_flush(c);
        i = (size_t)h & mask;
    }
    c->feats[c->n_feats].h = h;
    c->feats[c->n_feats].w = w;
    c->feats[c->n_feats].tf = 1;
    c->n_feats++;
    c->table[i] = (uint32_t)c->n_feats;
}

/* Character 3-grams of "<" tok ">", cut at UTF-8 code point starts. */
static void ctx_trigrams(hash_ctx *c, const char *tok, size_t n)
{
    char buf[TEXT_TOKEN_MAX + 2];
    uint8_t starts[TEXT_TOKEN_MAX + 3];
    size_t ns = 0;
    buf[0] = '<';
    memcpy(buf + 1, tok, n);
    buf[n + 1] = '>';
    size_t len = n + 2;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)buf[i] & 0xC0u) != 0x80u) {
            starts[ns++] = (uint8_t)i;
        }
    }
    starts[ns] = (uint8_t)len;
    for (size_t j = 0; j + 3 <= ns; j++) {
        uint64_t h = fnv_byte(FNV_OFFSET, KIND_TRIGRAM);
        h = fnv_bytes(h, buf + starts[j], (size_t)(starts[j + 3] - starts[j]));
        ctx_feature(c, fmix64(h), HASH_W_TRIGRAM);
    }
}

/* token_emit_fn: all features of one word. */
static void ctx_word(void *ctx, const char *tok, size_t n)
{
    hash_ctx *c = ctx;
    if (text_is_stopword(tok, n)) {
        return;
    }
    char stem[TEXT_TOKEN_MAX];
    memcpy(stem, tok, n);
    size_t sn = text_stem(stem, n);

    uint64_t h = fnv_bytes(fnv_byte(FNV_OFFSET, KIND_UNIGRAM), stem, sn);
    ctx_feature(c, fmix64(h), HASH_W_UNIGRAM);
    if (c->prev_n > 0) {
        h = fnv_bytes(fnv_byte(FNV_OFFSET, KIND_BIGRAM), c->prev, c->prev_n);
        h = fnv_byte(h, 0x1F);  /* unit separator: "ab|c" != "a|bc" */
        h = fnv_bytes(h, stem, sn);
        ctx_feature(c, fmix64(h), HASH_W_BIGRAM);
    }
    ctx_trigrams(c, tok, n);
    memcpy(c->prev, stem, sn);
    c->prev_n = sn;
    c->n_words++;
}

/* Cells for a text of len bytes: it has at most about 2 * len features (a
 * 3-gram per byte, a unigram and a bigram per word of >= 1 byte plus a
 * separator), kept at load <= 1/2 within [MIN, MAX]. */
static size_t table_cells(size_t len)
{
    size_t want = 2 * (2 * len + 2);
    size_t cap = HASH_TABLE_MIN;
    while (cap < want && cap < HASH_TABLE_MAX) {
        cap *= 2;
    }
    return cap;
}

/* Embed one text into row (dim floats). */
static void hash_one(hash_ctx *c, const char *text, size_t len, float *row)
{
    if (len > EMBED_HASH_TEXT_MAX) {
        len = EMBED_HASH_TEXT_MAX;
    }
    c->table_cap = table_cells(len);
    memset(c->table, 0, c->table_cap * sizeof(*c->table));
    memset(c->vec, 0, c->dim * sizeof(*c->vec));
    c->n_feats = 0;
    c->prev_n = 0;
    c->n_words = 0;
    text_tokenize(text, len, ctx_word, c);
    ctx_flush(c);
    double norm2 = 0.0;
    for (uint32_t i = 0; i < c->dim; i++) {
        norm2 += c->vec[i] * c->vec[i];
    }
    if (c->n_words == 0 || !(norm2 > 0.0)) {
        memset(c->vec, 0, c->dim * sizeof(*c->vec));
        uint64_t h = fnv_bytes(fnv_byte(FNV_OFFSET, KIND_EMPTY), "[EMPTY]", 7);
        ctx_feature(c, fmix64(h), 1.0);
        ctx_flush(c);
        norm2 = 1.0;
    }
    double inv = 1.0 / sqrt(norm2);
    for (uint32_t i = 0; i < c->dim; i++) {
        row[i] = (float)(c->vec[i] * inv);
    }
}

static int hash_embed(embedder *e, const char *const *texts, const size_t *lens, size_t n,
                      float *out)
{
    if (n == 0) {
        return STRATA_OK;
    }
    if (e == NULL || texts == NULL || out == NULL) {
        return strata_error(STRATA_EINVAL, "embed: texts and out are required");
    }
    size_t max_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (texts[i] == NULL) {
            return strata_error(STRATA_EINVAL, "embed: text %zu is NULL", i);
        }
        size_t len = lens != NULL ? lens[i] : strlen(texts[i]);
        max_len = STRATA_MAX(max_len, STRATA_MIN(len, (size_t)EMBED_HASH_TEXT_MAX));
    }
    hash_ctx c;
    memset(&c, 0, sizeof(c));
    c.dim = e->dim;
    size_t cells = table_cells(max_len);
    c.vec = strata_malloc(c.dim * sizeof(*c.vec));
    c.feats = strata_malloc(cells / 2 * sizeof(*c.feats));
    c.table = strata_malloc(cells * sizeof(*c.table));
    int rc = STRATA_OK;
    if (c.vec == NULL || c.feats == NULL || c.table == NULL) {
        rc = strata_error(STRATA_ENOMEM, "embed: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = lens != NULL ? lens[i] : strlen(texts[i]);
        hash_one(&c, texts[i], len, out + i * (size_t)c.dim);
    }
done:
    strata_free(c.vec);
    strata_free(c.feats);
    strata_free(c.table);
    return rc;
}

static void hash_close(embedder *e)
{
    strata_free(e);
}

static const embedder_ops g_hash_ops = {
    .name = "hash",
    .embed = hash_embed,
    .close = hash_close,
};

int embedder_hash_create(uint32_t dim, embedder **out)
{
    if (out == NULL) {
        return strata_error(STRATA_EINVAL, "embedder_hash_create: out is NULL");
    }
    *out = NULL;
    if (dim < EMBED_HASH_DIM_MIN || dim > EMBED_HASH_DIM_MAX) {
        return strata_error(STRATA_EINVAL, "hash embedder: dimension %u is not in %u..%u", dim,
                            EMBED_HASH_DIM_MIN, EMBED_HASH_DIM_MAX);
    }
    embedder *e = strata_calloc(1, sizeof(*e));
    if (e == NULL) {
        return strata_error(STRATA_ENOMEM, "hash embedder: out of memory");
    }
    e->ops = &g_hash_ops;
    e->dim = dim;
    snprintf(e->model, sizeof(e->model), "hash-v1-%u", dim);
    *out = e;
    return STRATA_OK;
}

/* Lives here because the hash embedder is always linked; every kind of
 * embedder frees itself through its ops. */
void embedder_free(embedder *e)
{
    if (e != NULL) {
        e->ops->close(e);
    }
}
