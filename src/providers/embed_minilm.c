/*
 * embed_minilm.c - all-MiniLM-L6-v2 in pure C: WordPiece (wordpiece.c), a
 * 6-layer BERT encoder, mean pooling and L2 normalisation, reproducing
 * sentence-transformers' output to about 1e-6 per component.
 *
 * Shapes (H = 384 hidden, 12 heads of 32, F = 1536 feed-forward, M = tokens
 * in the current chunk, T = tokens of one sentence):
 *
 *   ids --word + position + token-type(0) embeddings, LayerNorm--> x [M x H]
 *   6 x {  qkv [M x 3H] = x . Wqkv + b                 (one GEMM for Q, K, V)
 *          per sentence, per head:  P = softmax(Q K^T / sqrt(32))  [T x T]
 *                                   ctx[:, head] = P . V           [T x 32]
 *          x = LayerNorm(x + ctx . Wo + bo)             (GEMM accumulates into x)
 *          f [M x F] = GELU(x . W1 + b1)                 (erf form)
 *          x = LayerNorm(x + f . W2 + b2)  }
 *   mean of x over each sentence's tokens ([CLS] and [SEP] included), L2-normalised
 *
 * Batching without padding: the texts of one call are cut into chunks of at
 * most MINI_CHUNK_TOKENS tokens; within a chunk all sentences' tokens are
 * stacked into one matrix, so every projection is one GEMM over all of them,
 * while attention runs per sentence over exactly its own tokens. That is the
 * attention mask of a padded batch without the padding: no FLOPs are spent on
 * pad tokens and no mask values enter the softmax. Since sgemm computes each
 * row the same way whatever rows surround it, a text embeds to the same bits
 * alone or in any batch.
 *
 * Weights: model.safetensors is mapped read-only; embeddings and LayerNorm
 * parameters are used in place, the four matrices of each layer are packed
 * into sgemm panels on the heap at load (PyTorch stores Linear weights as
 * [out][in]; sgemm_pack transposes while packing), Q/K/V side by side.
 *
 * Thread-safety: after create, everything in struct minilm is read-only;
 * embed allocates its scratch per chunk (about 14 KB per token) and frees it
 * before returning, so calls on one handle may run concurrently.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "providers/embed_minilm.h"
#include "providers/safetensors.h"
#include "providers/sgemm.h"
#include "providers/wordpiece.h"

#define MINI_H 384u
#define MINI_HEADS 12u
#define MINI_HD 32u                 /* per head */
#define MINI_F 1536u
#define MINI_LAYERS 6u
#define MINI_POS 512u
#define MINI_TYPES 2u
#define MINI_LN_EPS 1e-12
#define MINI_CHUNK_TOKENS 1024u     /* tokens per forward pass (scratch ~14 MB) */

typedef struct mini_layer {
    float *wqkv;            /* packed [H x 3H]; Q | K | V columns */
    float *bqkv;            /* [3H] */
    float *wo;              /* packed [H x H] */
    const float *bo;        /* [H], mapped */
    const float *ln1_g, *ln1_b;
    float *w1;              /* packed [H x F] */
    const float *b1;        /* [F] */
    float *w2;              /* packed [F x H] */
    const float *b2;        /* [H] */
    const float *ln2_g, *ln2_b;
} mini_layer;

typedef struct minilm {
    embedder base;          /* first: embedder_* casts */
    safetensors *st;        /* the mapping; owns the const float * below */
    wordpiece *wp;
    uint32_t max_len;       /* tokens per text incl. [CLS] [SEP] */
    sgemm_isa isa;
    const float *word_emb;  /* [vocab x H] */
    size_t vocab;
    const float *pos_emb;   /* [512 x H] */
    const float *type_emb;  /* [2 x H] */
    const float *emb_ln_g, *emb_ln_b;
    float *packed;          /* one heap block holding every layer's packed weights */
    mini_layer layers[MINI_LAYERS];
} minilm;

static const embedder_ops minilm_ops;

/* ---- loading ------------------------------------------------------------------ */

/* F32 tensor "<prefix><name>" of the given shape, or an error. */
static int mini_tensor(const safetensors *st, const char *prefix, const char *name,
                       uint32_t ndim, uint64_t d0, uint64_t d1, const float **out)
{
    char full[160];
    snprintf(full, sizeof(full), "%s%s", prefix, name);
    uint64_t shape[2] = {d0, d1};
    return safetensors_f32(st, full, ndim, shape, out);
}

static int mini_load_layer(minilm *m, const char *prefix, uint32_t l, float **cursor)
{
    char p[96];
    snprintf(p, sizeof(p), "%sencoder.layer.%u.", prefix, l);
    mini_layer *L = &m->layers[l];
    const float *wq, *wk, *wv, *bq, *bk, *bv, *wo, *w1, *w2;
    int rc = mini_tensor(m->st, p, "attention.self.query.weight", 2, MINI_H, MINI_H, &wq);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.self.key.weight", 2, MINI_H, MINI_H, &wk);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.self.value.weight", 2, MINI_H, MINI_H, &wv);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.self.query.bias", 1, MINI_H, 0, &bq);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.self.key.bias", 1, MINI_H, 0, &bk);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.self.value.bias", 1, MINI_H, 0, &bv);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.output.dense.weight", 2, MINI_H, MINI_H, &wo);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.output.dense.bias", 1, MINI_H, 0, &L->bo);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.output.LayerNorm.weight", 1, MINI_H, 0,
                               &L->ln1_g);
    rc = rc ? rc : mini_tensor(m->st, p, "attention.output.LayerNorm.bias", 1, MINI_H, 0,
                               &L->ln1_b);
    rc = rc ? rc : mini_tensor(m->st, p, "intermediate.dense.weight", 2, MINI_F, MINI_H, &w1);
    rc = rc ? rc : mini_tensor(m->st, p, "intermediate.dense.bias", 1, MINI_F, 0, &L->b1);
    rc = rc ? rc : mini_tensor(m->st, p, "output.dense.weight", 2, MINI_H, MINI_F, &w2);
    rc = rc ? rc : mini_tensor(m->st, p, "output.dense.bias", 1, MINI_H, 0, &L->b2);
    rc = rc ? rc : mini_tensor(m->st, p, "output.LayerNorm.weight", 1, MINI_H, 0, &L->ln2_g);
    rc = rc ? rc : mini_tensor(m->st, p, "output.LayerNorm.bias", 1, MINI_H, 0, &L->ln2_b);
    if (rc != STRATA_OK) {
        return rc;
    }
    /* Q, K, V: three [H x H] blocks of panels side by side = one [H x 3H]
     * matrix, since panels are column groups and H is a multiple of 16 */
    size_t hh = sgemm_packed_floats(MINI_H, MINI_H);
    L->wqkv = *cursor;
    sgemm_pack(MINI_H, MINI_H, wq, MINI_H, true, L->wqkv);
    sgemm_pack(MINI_H, MINI_H, wk, MINI_H, true, L->wqkv + hh);
    sgemm_pack(MINI_H, MINI_H, wv, MINI_H, true, L->wqkv + 2 * hh);
    *cursor += 3 * hh;
    L->bqkv = *cursor;
    memcpy(L->bqkv, bq, MINI_H * sizeof(float));
    memcpy(L->bqkv + MINI_H, bk, MINI_H * sizeof(float));
    memcpy(L->bqkv + 2 * MINI_H, bv, MINI_H * sizeof(float));
    *cursor += 3 * MINI_H;
    L->wo = *cursor;
    sgemm_pack(MINI_H, MINI_H, wo, MINI_H, true, L->wo);
    *cursor += hh;
    L->w1 = *cursor;
    sgemm_pack(MINI_H, MINI_F, w1, MINI_H, true, L->w1);
    *cursor += sgemm_packed_floats(MINI_H, MINI_F);
    L->w2 = *cursor;
    sgemm_pack(MINI_F, MINI_H, w2, MINI_F, true, L->w2);
    *cursor += sgemm_packed_floats(MINI_F, MINI_H);
    return STRATA_OK;
}

static size_t mini_layer_floats(void)
{
    return 4 * sgemm_packed_floats(MINI_H, MINI_H) + 3 * MINI_H +
           sgemm_packed_floats(MINI_H, MINI_F) + sgemm_packed_floats(MINI_F, MINI_H);
}

static void minilm_close(embedder *e)
{
    minilm *m = (minilm *)e;
    if (m == NULL) {
        return;
    }
    strata_free(m->packed);
    wordpiece_free(m->wp);
    safetensors_close(m->st);
    strata_free(m);
}

int embedder_minilm_create(const char *model_dir, int max_len, embedder **out)
{
    *out = NULL;
    if (max_len == 0) {
        max_len = EMBED_MINILM_MAX_LEN_DEFAULT;
    }
    if (max_len < 3 || max_len > EMBED_MINILM_MAX_LEN_MAX) {
        return strata_error(STRATA_EINVAL, "minilm: max_len %d not in 3..%d", max_len,
                            EMBED_MINILM_MAX_LEN_MAX);
    }
    minilm *m = strata_calloc(1, sizeof(*m));
    if (m == NULL) {
        return strata_error(STRATA_ENOMEM, "minilm: out of memory");
    }
    m->base.ops = &minilm_ops;
    m->base.dim = EMBED_MINILM_DIM;
    snprintf(m->base.model, sizeof(m->base.model), "%s", EMBED_MINILM_MODEL);
    m->max_len = (uint32_t)max_len;
    m->isa = sgemm_isa_detect();

    char path[4096];
    snprintf(path, sizeof(path), "%s/vocab.txt", model_dir);
    int rc = wordpiece_load(path, &m->wp);
    if (rc != STRATA_OK) {
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", model_dir);
    rc = safetensors_open(path, &m->st);
    if (rc != STRATA_OK) {
        goto fail;
    }
    /* sentence-transformers' own export has no prefix; a bare BertModel
     * saved from BertForX has "bert." */
    const char *prefix = safetensors_find(m->st, "embeddings.word_embeddings.weight") ? ""
                                                                                       : "bert.";
    char name[96];
    snprintf(name, sizeof(name), "%sembeddings.word_embeddings.weight", prefix);
    const st_tensor *we = safetensors_find(m->st, name);
    if (we == NULL || we->ndim != 2 || we->shape[1] != MINI_H ||
        we->shape[0] < wordpiece_vocab_size(m->wp)) {
        rc = strata_error(STRATA_ECORRUPT, "minilm: %s: no [>= %zu x %u] word embeddings", path,
                          wordpiece_vocab_size(m->wp), MINI_H);
        goto fail;
    }
    m->vocab = (size_t)we->shape[0];
    rc = mini_tensor(m->st, prefix, "embeddings.word_embeddings.weight", 2, m->vocab, MINI_H,
                     &m->word_emb);
    rc = rc ? rc : mini_tensor(m->st, prefix, "embeddings.position_embeddings.weight", 2,
                               MINI_POS, MINI_H, &m->pos_emb);
    rc = rc ? rc : mini_tensor(m->st, prefix, "embeddings.token_type_embeddings.weight", 2,
                               MINI_TYPES, MINI_H, &m->type_emb);
    rc = rc ? rc : mini_tensor(m->st, prefix, "embeddings.LayerNorm.weight", 1, MINI_H, 0,
                               &m->emb_ln_g);
    rc = rc ? rc : mini_tensor(m->st, prefix, "embeddings.LayerNorm.bias", 1, MINI_H, 0,
                               &m->emb_ln_b);
    if (rc != STRATA_OK) {
        goto fail;
    }
    m->packed = strata_malloc(MINI_LAYERS * mini_layer_floats() * sizeof(float));
    if (m->packed == NULL) {
        rc = strata_error(STRATA_ENOMEM, "minilm: out of memory for the weights");
        goto fail;
    }
    float *cursor = m->packed;
    for (uint32_t l = 0; l < MINI_LAYERS; l++) {
        rc = mini_load_layer(m, prefix, l, &cursor);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    *out = &m->base;
    return STRATA_OK;
fail:
    minilm_close(&m->base);
    return rc;
}

const char *embedder_minilm_kernel(const embedder *e)
{
    if (e == NULL || e->ops != &minilm_ops) {
        return "";
    }
    return sgemm_isa_name(((const minilm *)e)->isa);
}

/* ---- the forward pass ---------------------------------------------------------------- */

/* One sentence of a chunk: rows [row, row + n_tok) of the activations. */
typedef struct mini_sent {
    size_t row;
    size_t n_tok;
    size_t out_index;       /* which text of the call */
} mini_sent;

/* Scratch of one chunk; one allocation, carved up. */
typedef struct mini_scratch {
    float *x;               /* [M x H] hidden states */
    float *qkv;             /* [M x 3H] */
    float *ctx;             /* [M x H] attention output before Wo */
    float *ff;              /* [M x F] */
    float *kp;              /* packed K^T of one head: [32 x Tmax] */
    float *vp;              /* packed V of one head: [Tmax x 32] */
    float *scores;          /* [Tmax x Tmax] */
} mini_scratch;

/* x = LayerNorm(x) * g + b over n floats, in place (two-pass, double sums). */
static void mini_layernorm(float *x, size_t n, const float *g, const float *b)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
    }
    float mean = (float)(sum / (double)n);
    double var = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)(x[i] - mean);
        var += d * d;
    }
    float inv = (float)(1.0 / sqrt(var / (double)n + MINI_LN_EPS));
    for (size_t i = 0; i < n; i++) {
        x[i] = (x[i] - mean) * inv * g[i] + b[i];
    }
}

static void mini_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}

/* Softmax of each row of s [t x t] of raw scores q.k, scaled by 1/sqrt(32). */
static void mini_softmax_rows(float *s, size_t t)
{
    const float scale = 0.17677669529663687f;   /* 1 / sqrt(32) */
    for (size_t i = 0; i < t; i++) {
        float *row = s + i * t;
        float mx = row[0];
        for (size_t j = 1; j < t; j++) {
            mx = row[j] > mx ? row[j] : mx;
        }
        float sum = 0.0f;
        for (size_t j = 0; j < t; j++) {
            row[j] = expf((row[j] - mx) * scale);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (size_t j = 0; j < t; j++) {
            row[j] *= inv;
        }
    }
}

/* Self-attention of one sentence (rows r0 .. r0 + t of qkv) into ctx. */
static void mini_attention(const minilm *m, const mini_scratch *s, size_t r0, size_t t)
{
    const size_t ld = 3 * MINI_H;
    for (size_t h = 0; h < MINI_HEADS; h++) {
        const float *q = s->qkv + r0 * ld + h * MINI_HD;
        const float *k = q + MINI_H;
        const float *v = q + 2 * MINI_H;
        /* scores = Q K^T: B[d][j] = K[j][d], i.e. K given transposed */
        sgemm_pack(MINI_HD, t, k, ld, true, s->kp);
        sgemm_run(m->isa, t, t, MINI_HD, q, ld, s->kp, s->scores, t, NULL, false);
        mini_softmax_rows(s->scores, t);
        sgemm_pack(t, MINI_HD, v, ld, false, s->vp);
        sgemm_run(m->isa, t, MINI_HD, t, s->scores, t, s->vp, s->ctx + r0 * MINI_H + h * MINI_HD,
                  MINI_H, NULL, false);
    }
}

/* Forward pass of one chunk: ids[M] in sentences sents[ns]; rows of out. */
static void mini_forward(const minilm *m, const mini_scratch *s, const int32_t *ids, size_t M,
                         const mini_sent *sents, size_t ns, float *out)
{
    /* embeddings */
    for (size_t si = 0; si < ns; si++) {
        for (size_t p = 0; p < sents[si].n_tok; p++) {
            size_t r = sents[si].row + p;
            float *x = s->x + r * MINI_H;
            const float *w = m->word_emb + (size_t)ids[r] * MINI_H;
            const float *pe = m->pos_emb + p * MINI_H;
            for (size_t i = 0; i < MINI_H; i++) {
                x[i] = w[i] + pe[i] + m->type_emb[i];
            }
            mini_layernorm(x, MINI_H, m->emb_ln_g, m->emb_ln_b);
        }
    }
    for (size_t l = 0; l < MINI_LAYERS; l++) {
        const mini_layer *L = &m->layers[l];
        sgemm_run(m->isa, M, 3 * MINI_H, MINI_H, s->x, MINI_H, L->wqkv, s->qkv, 3 * MINI_H,
                  L->bqkv, false);
        for (size_t si = 0; si < ns; si++) {
            mini_attention(m, s, sents[si].row, sents[si].n_tok);
        }
        sgemm_run(m->isa, M, MINI_H, MINI_H, s->ctx, MINI_H, L->wo, s->x, MINI_H, L->bo, true);
        for (size_t r = 0; r < M; r++) {
            mini_layernorm(s->x + r * MINI_H, MINI_H, L->ln1_g, L->ln1_b);
        }
        sgemm_run(m->isa, M, MINI_F, MINI_H, s->x, MINI_H, L->w1, s->ff, MINI_F, L->b1, false);
        mini_gelu(s->ff, M * MINI_F);
        sgemm_run(m->isa, M, MINI_H, MINI_F, s->ff, MINI_F, L->w2, s->x, MINI_H, L->b2, true);
        for (size_t r = 0; r < M; r++) {
            mini_layernorm(s->x + r * MINI_H, MINI_H, L->ln2_g, L->ln2_b);
        }
    }
    /* mean pooling over each sentence's tokens, then L2 normalisation */
    for (size_t si = 0; si < ns; si++) {
        double acc[MINI_H] = {0};
        const float *x = s->x + sents[si].row * MINI_H;
        for (size_t p = 0; p < sents[si].n_tok; p++) {
            for (size_t i = 0; i < MINI_H; i++) {
                acc[i] += x[p * MINI_H + i];
            }
        }
        double norm = 0.0;
        for (size_t i = 0; i < MINI_H; i++) {
            acc[i] /= (double)sents[si].n_tok;
            norm += acc[i] * acc[i];
        }
        norm = sqrt(norm);
        float *o = out + sents[si].out_index * MINI_H;
        for (size_t i = 0; i < MINI_H; i++) {
            o[i] = (float)(norm > 0.0 ? acc[i] / norm : 0.0);
        }
    }
}

/* Allocate and run one chunk. */
static int mini_run_chunk(const minilm *m, const int32_t *ids, size_t M, const mini_sent *sents,
                          size_t ns, float *out)
{
    size_t tmax = 0;
    for (size_t i = 0; i < ns; i++) {
        tmax = sents[i].n_tok > tmax ? sents[i].n_tok : tmax;
    }
    size_t n_x = M * MINI_H;
    size_t n_qkv = M * 3 * MINI_H;
    size_t n_ff = M * MINI_F;
    size_t n_kp = sgemm_packed_floats(MINI_HD, tmax);
    size_t n_vp = sgemm_packed_floats(tmax, MINI_HD);
    size_t n_sc = tmax * tmax;
    float *block = strata_malloc((2 * n_x + n_qkv + n_ff + n_kp + n_vp + n_sc) * sizeof(float));
    if (block == NULL) {
        return strata_error(STRATA_ENOMEM, "minilm: out of memory for %zu tokens", M);
    }
    mini_scratch s;
    s.x = block;
    s.ctx = s.x + n_x;
    s.qkv = s.ctx + n_x;
    s.ff = s.qkv + n_qkv;
    s.kp = s.ff + n_ff;
    s.vp = s.kp + n_kp;
    s.scores = s.vp + n_vp;
    mini_forward(m, &s, ids, M, sents, ns, out);
    strata_free(block);
    return STRATA_OK;
}

static int minilm_embed(embedder *e, const char *const *texts, const size_t *lens, size_t n,
                        float *out)
{
    const minilm *m = (const minilm *)e;
    size_t budget = MINI_CHUNK_TOKENS > m->max_len ? MINI_CHUNK_TOKENS : m->max_len;
    int32_t *ids = strata_malloc(budget * sizeof(int32_t));
    mini_sent *sents = strata_malloc(budget / 2 * sizeof(mini_sent));   /* >= 2 tokens each */
    int rc = STRATA_OK;
    if (ids == NULL || sents == NULL) {
        rc = strata_error(STRATA_ENOMEM, "minilm: out of memory");
        goto done;
    }
    size_t i = 0;
    while (i < n && rc == STRATA_OK) {
        size_t M = 0;
        size_t ns = 0;
        while (i < n && M + m->max_len <= budget) {
            size_t len = lens != NULL ? lens[i] : strlen(texts[i]);
            size_t k = 0;
            rc = wordpiece_encode(m->wp, texts[i], len, m->max_len, ids + M, &k);
            if (rc != STRATA_OK) {
                goto done;
            }
            sents[ns].row = M;
            sents[ns].n_tok = k;
            sents[ns].out_index = i;
            ns++;
            M += k;
            i++;
        }
        rc = mini_run_chunk(m, ids, M, sents, ns, out);
    }
done:
    strata_free(sents);
    strata_free(ids);
    return rc;
}

static const embedder_ops minilm_ops = {
    .name = "minilm",
    .embed = minilm_embed,
    .close = minilm_close,
};
