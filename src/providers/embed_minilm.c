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
 *          f [M x F] = GELU(x . W1 + b1)     (erf form, fused into the GEMM)
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
 * alone or in any batch. A chunk of 1024 tokens (32 sentences of 32) runs
 * faster than chunks of 128-512 because every chunk streams all 42 MB of
 * packed weights through the caches once.
 *
 * Where the time goes (perf, 32 tokens): ~93% in the sgemm kernel, which
 * runs at ~90% of the FMA peak; GELU (fused into the W1 product), softmax
 * and LayerNorm (nn_ops.c, vectorised; as scalar loops calling libm they
 * were ~30%) and packing K^T per head make up the rest. V is read in place
 * (sgemm_run_rows), not packed.
 *
 * Weights: model.safetensors is mapped read-only; embeddings and LayerNorm
 * parameters are used in place, the four matrices of each layer are packed
 * into sgemm panels on the heap at load (PyTorch stores Linear weights as
 * [out][in]; sgemm_pack transposes while packing), Q/K/V side by side.
 *
 * Thread-safety: after create, the weights and settings in struct minilm
 * are read-only. Each embed call takes a scratch block (~14.5 MB: a full
 * chunk's activations, token ids) from a small pool under a mutex, or
 * allocates one, and puts it back at the end; so calls on one handle may
 * run concurrently, and a handle keeps at most MINI_POOL idle blocks (only
 * the pages a call touched are resident).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "providers/embed_minilm.h"
#include "providers/nn_ops.h"
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
#define MINI_LN_EPS 1e-12f
#define MINI_SCALE 0.17677669529663687f   /* 1 / sqrt(32), applied inside softmax */
#define MINI_CHUNK_TOKENS 1024u     /* tokens per forward pass (scratch ~14.5 MB) */
#define MINI_POOL 4u                /* idle scratch blocks kept for reuse (~58 MB at most) */

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
    size_t budget;          /* tokens per chunk: max(MINI_CHUNK_TOKENS, max_len) */
    size_t scratch_bytes;   /* one scratch block (mini_scratch_carve) */
    bool pool_ready;        /* pool_mu initialised */
    pthread_mutex_t pool_mu;
    void *pool[MINI_POOL];  /* idle scratch blocks, under pool_mu */
    size_t n_pool;
} minilm;

static const embedder_ops minilm_ops;

/* One sentence of a chunk: rows [row, row + n_tok) of the activations. */
typedef struct mini_sent {
    size_t row;
    size_t n_tok;
    size_t out_index;       /* which text of the call */
} mini_sent;

/* Scratch of one call, carved out of one block sized for a full chunk
 * (B = m->budget tokens, T = m->max_len): only the rows a call uses are
 * touched, so a short call keeps few pages resident. */
typedef struct mini_scratch {
    float *x;               /* [B x H] hidden states */
    float *qkv;             /* [B x 3H] */
    float *ctx;             /* [B x H] attention output before Wo */
    float *ff;              /* [B x F] */
    float *kp;              /* packed K^T of one head: [32 x T] */
    float *scores;          /* [T x T] */
    int32_t *ids;           /* [B + T] token ids of the chunk, plus one text that overflowed */
    mini_sent *sents;       /* [B / 2]: every sentence has >= 2 tokens */
} mini_scratch;

/* Carve block (NULL: just measure) into s; returns the bytes needed. */
static size_t mini_scratch_carve(const minilm *m, void *block, mini_scratch *s)
{
    size_t B = m->budget;
    size_t T = m->max_len;
    size_t floats = B * (2 * MINI_H + 3 * MINI_H + MINI_F) +
                    sgemm_packed_floats(MINI_HD, T) + T * T;
    size_t off_ids = floats * sizeof(float);
    size_t off_sents = off_ids + (B + T) * sizeof(int32_t);
    off_sents = (off_sents + 15) & ~(size_t)15;
    size_t total = off_sents + (B / 2) * sizeof(mini_sent);
    if (block != NULL) {
        float *f = block;
        s->x = f;
        s->ctx = s->x + B * MINI_H;
        s->qkv = s->ctx + B * MINI_H;
        s->ff = s->qkv + B * 3 * MINI_H;
        s->kp = s->ff + B * MINI_F;
        s->scores = s->kp + sgemm_packed_floats(MINI_HD, T);
        s->ids = (int32_t *)(void *)((char *)block + off_ids);
        s->sents = (mini_sent *)(void *)((char *)block + off_sents);
    }
    return total;
}

/* A scratch block from the pool, or a new one (NULL: out of memory).
 * Pooled so that in the steady state no call allocates (and faults in) the
 * ~14.5 MB of a full chunk, whatever the allocator's mmap and trim
 * thresholds make of a block that size. */
static void *mini_scratch_get(minilm *m)
{
    void *b = NULL;
    pthread_mutex_lock(&m->pool_mu);
    if (m->n_pool > 0) {
        b = m->pool[--m->n_pool];
    }
    pthread_mutex_unlock(&m->pool_mu);
    return b != NULL ? b : strata_malloc(m->scratch_bytes);
}

/* Back to the pool; beyond MINI_POOL idle blocks (more concurrent callers
 * than that at some point), freed. */
static void mini_scratch_put(minilm *m, void *b)
{
    pthread_mutex_lock(&m->pool_mu);
    if (m->n_pool < MINI_POOL) {
        m->pool[m->n_pool++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&m->pool_mu);
    strata_free(b);
}

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
    for (size_t i = 0; i < m->n_pool; i++) {
        strata_free(m->pool[i]);
    }
    if (m->pool_ready) {
        pthread_mutex_destroy(&m->pool_mu);
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
    m->budget = MINI_CHUNK_TOKENS > m->max_len ? MINI_CHUNK_TOKENS : m->max_len;
    m->scratch_bytes = mini_scratch_carve(m, NULL, NULL);
    if (pthread_mutex_init(&m->pool_mu, NULL) != 0) {
        strata_free(m);
        return strata_error(STRATA_ENOMEM, "minilm: cannot create a mutex");
    }
    m->pool_ready = true;

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
        nn_softmax(m->isa, s->scores, t, t, t, MINI_SCALE);
        /* ctx = P V, reading V's 32 columns in place (one use: no packing) */
        sgemm_run_rows(m->isa, t, MINI_HD, t, s->scores, t, v, ld,
                       s->ctx + r0 * MINI_H + h * MINI_HD, MINI_H);
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
        }
    }
    nn_layernorm(m->isa, s->x, M, MINI_H, MINI_H, m->emb_ln_g, m->emb_ln_b, MINI_LN_EPS);
    for (size_t l = 0; l < MINI_LAYERS; l++) {
        const mini_layer *L = &m->layers[l];
        sgemm_run(m->isa, M, 3 * MINI_H, MINI_H, s->x, MINI_H, L->wqkv, s->qkv, 3 * MINI_H,
                  L->bqkv, false);
        for (size_t si = 0; si < ns; si++) {
            mini_attention(m, s, sents[si].row, sents[si].n_tok);
        }
        sgemm_run(m->isa, M, MINI_H, MINI_H, s->ctx, MINI_H, L->wo, s->x, MINI_H, L->bo, true);
        nn_layernorm(m->isa, s->x, M, MINI_H, MINI_H, L->ln1_g, L->ln1_b, MINI_LN_EPS);
        sgemm_run_gelu(m->isa, M, MINI_F, MINI_H, s->x, MINI_H, L->w1, s->ff, MINI_F, L->b1);
        sgemm_run(m->isa, M, MINI_H, MINI_F, s->ff, MINI_F, L->w2, s->x, MINI_H, L->b2, true);
        nn_layernorm(m->isa, s->x, M, MINI_H, MINI_H, L->ln2_g, L->ln2_b, MINI_LN_EPS);
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

static int minilm_embed(embedder *e, const char *const *texts, const size_t *lens, size_t n,
                        float *out)
{
    minilm *m = (minilm *)e;
    if (n == 0) {
        return STRATA_OK;
    }
    void *block = mini_scratch_get(m);
    if (block == NULL) {
        return strata_error(STRATA_ENOMEM, "minilm: out of memory for %zu tokens", m->budget);
    }
    mini_scratch s;
    mini_scratch_carve(m, block, &s);
    /* Fill each chunk up to the token budget: a text is tokenized at the end
     * of the chunk (the ids array has room for one more max_len), and one
     * that does not fit moves to the start of the next. (Reserving max_len
     * before tokenizing left 32 texts of 32 tokens in two chunks, and each
     * chunk streams all the weights once.) */
    int rc = STRATA_OK;
    size_t i = 0;
    size_t carried = 0;     /* ids of text i already at ids[0 .. carried) */
    while (i < n && rc == STRATA_OK) {
        size_t M = 0;
        size_t ns = 0;
        if (carried > 0) {
            s.sents[ns++] = (mini_sent){0, carried, i++};
            M = carried;
            carried = 0;
        }
        while (i < n) {
            size_t len = lens != NULL ? lens[i] : strlen(texts[i]);
            size_t k = 0;
            rc = wordpiece_encode(m->wp, texts[i], len, m->max_len, s.ids + M, &k);
            if (rc != STRATA_OK) {
                break;
            }
            if (M + k > m->budget) {
                carried = k;    /* moved to the front once this chunk is done */
                break;
            }
            s.sents[ns++] = (mini_sent){M, k, i++};
            M += k;
        }
        if (rc == STRATA_OK) {
            mini_forward(m, &s, s.ids, M, s.sents, ns, out);
            memmove(s.ids, s.ids + M, carried * sizeof(int32_t));
        }
    }
    mini_scratch_put(m, block);
    return rc;
}

static const embedder_ops minilm_ops = {
    .name = "minilm",
    .embed = minilm_embed,
    .close = minilm_close,
};
