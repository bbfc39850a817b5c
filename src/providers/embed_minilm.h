/*
 * embed_minilm.h - the built-in neural embedder: sentence-transformers'
 * all-MiniLM-L6-v2 (a 6-layer, 384-wide uncased BERT with mean pooling),
 * run in pure C from the files scripts/fetch_model.sh installs in
 * models/all-MiniLM-L6-v2/ (model.safetensors, vocab.txt).
 *
 * Thread-safety: embed may be called from several threads at once on one
 * handle (weights are read-only; each call has its own scratch).
 */
#ifndef STRATA_PROVIDERS_EMBED_MINILM_H
#define STRATA_PROVIDERS_EMBED_MINILM_H

#include "providers/embed.h"

#define EMBED_MINILM_DIM 384u
#define EMBED_MINILM_MODEL "all-MiniLM-L6-v2"
#define EMBED_MINILM_MAX_LEN_DEFAULT 256    /* tokens, as sentence-transformers */
#define EMBED_MINILM_MAX_LEN_MAX 512        /* the position embeddings */

/* Load the model from model_dir (model.safetensors and vocab.txt). max_len:
 * tokens per text including [CLS] and [SEP], 3..EMBED_MINILM_MAX_LEN_MAX, or
 * 0 for the default 256; longer texts are truncated (their first max_len - 2
 * word pieces are embedded). Errors: STRATA_EINVAL (max_len), STRATA_EIO /
 * STRATA_ENOTFOUND-style errno codes for missing files, STRATA_ECORRUPT for
 * a file of the wrong shape, STRATA_ENOMEM; detail in strata_errmsg(). The
 * weights file is mapped read-only; the encoder's matrices are repacked on
 * the heap (about 42 MB); each call in progress uses a ~14.5 MB scratch
 * block, kept for later calls (at most 4 idle per handle). dim = 384,
 * model = "all-MiniLM-L6-v2". Env
 * STRATA_SGEMM=portable|avx2 forces a slower matrix kernel (tests, benches).
 * Free with embedder_free. */
int embedder_minilm_create(const char *model_dir, int max_len, embedder **out);

/* The matrix kernel in use ("avx512", "avx2" or "portable"), for benches. */
const char *embedder_minilm_kernel(const embedder *e);

#endif /* STRATA_PROVIDERS_EMBED_MINILM_H */
