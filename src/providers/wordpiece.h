/*
 * wordpiece.h - the BERT uncased tokenizer (BasicTokenizer + WordPiece) over
 * a vocab.txt, as used by all-MiniLM-L6-v2 and other uncased BERT models.
 *
 *   text --clean, lower-case, strip accents, split on space/punctuation/CJK-->
 *   words --greedy longest-match-first WordPiece ("##" continuations)-->
 *   [CLS] ids... [SEP]
 *
 * Thread-safety: the vocabulary is read-only after creation; any number of
 * threads may encode with one handle at once.
 */
#ifndef STRATA_PROVIDERS_WORDPIECE_H
#define STRATA_PROVIDERS_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#define WORDPIECE_VOCAB_MAX (1u << 20)      /* tokens in vocab.txt */
#define WORDPIECE_TOKEN_MAX 256u            /* bytes of one vocab entry */
#define WORDPIECE_WORD_CHARS_MAX 100u       /* longer words become [UNK] (BERT's limit) */
#define WORDPIECE_MAX_LEN_DEFAULT 256u      /* ids per text, [CLS] and [SEP] included */
#define WORDPIECE_MAX_LEN_MAX 512u          /* BERT's position embeddings */

typedef struct wordpiece wordpiece;

/* Load vocab.txt (one token per line, id = line number from 0; "\r\n" ok).
 * It must contain [PAD], [UNK], [CLS] and [SEP]. STRATA_EIO, STRATA_ECORRUPT,
 * STRATA_ETOOBIG, STRATA_ENOMEM. Free with wordpiece_free. */
int wordpiece_load(const char *vocab_path, wordpiece **out);

/* The same from the file's bytes in memory (copied). */
int wordpiece_create(const char *vocab, size_t len, wordpiece **out);

void wordpiece_free(wordpiece *wp);    /* NULL-safe */

/* Tokenize text (len bytes of UTF-8; invalid sequences are dropped, like the
 * U+FFFD BERT drops) into ids: [CLS], word pieces, [SEP]; at most max_len ids
 * (3..WORDPIECE_MAX_LEN_MAX), the pieces truncated to max_len - 2. ids must
 * have room for max_len entries. Scanning stops once the pieces are full, so
 * the cost is bounded by max_len, not by len. *n_ids receives the count.
 * STRATA_OK, or STRATA_EINVAL for a bad max_len. */
int wordpiece_encode(const wordpiece *wp, const char *text, size_t len, uint32_t max_len,
                     int32_t *ids, size_t *n_ids);

/* Id of an exact vocabulary token, or -1. */
int32_t wordpiece_id(const wordpiece *wp, const char *token);

/* Token text of an id, or NULL when out of range. Valid until free. */
const char *wordpiece_token(const wordpiece *wp, int32_t id);

size_t wordpiece_vocab_size(const wordpiece *wp);

/* Ids of the special tokens. */
int32_t wordpiece_pad_id(const wordpiece *wp);
int32_t wordpiece_cls_id(const wordpiece *wp);
int32_t wordpiece_sep_id(const wordpiece *wp);
int32_t wordpiece_unk_id(const wordpiece *wp);

#endif /* STRATA_PROVIDERS_WORDPIECE_H */
