/*
 * extract.h - the extractor interface of src/providers: turns a window of
 * conversation turns into candidate memories for the consolidation pipeline
 * (DESIGN.md "The pipeline", step 2; brief §2.2-2.3). The delta-merge reads
 * the candidates' attribute/value pairs and confidences to decide add /
 * update / keep / clarify; the embedder embeds their content; distillation
 * turns entity/entity_kind into L3 nodes.
 *
 *   extractor_rules_create   built-in, offline: hand-written English patterns
 *                            over word tokens (extract_rules.c)
 *   extractor_llm_create     an OpenAI-compatible chat model asked for JSON,
 *                            validated strictly (extract_llm.c, llm_http.h)
 *
 * Candidate invariants, for both extractors (the fuzz target checks them):
 *   - content is non-NULL, non-empty, valid UTF-8, third person ("User ...");
 *   - attribute is NULL or 1..EXTRACT_ATTR_MAX bytes of [a-z0-9_];
 *     value is non-NULL exactly when attribute is;
 *   - entity is NULL or non-empty, ASCII-lower-cased, valid UTF-8;
 *     entity_kind is NULL or one of "topic", "product", "constraint",
 *     "preference" (a static string: never free it);
 *   - polarity is -1, 0 or +1; confidence and importance are in 0..1;
 *   - source < n_turns and names a user turn.
 *
 * Attributes (lower-case keys). Single-valued ones describe one current state
 * (a new value contradicts the old one: delta-merge updates and keeps the old
 * one's validity interval); multi-valued ones accumulate, keyed by value
 * (extract_attribute_multi() tells them apart):
 *   single: name, role, employer, school, location, origin, age, diet,
 *           budget, marital_status, favorite_<category> (e.g. favorite_food)
 *   multi:  likes, dislikes, allergy, intolerance, condition, avoids,
 *           language, uses, owns
 * Constraints (allergy, intolerance, condition, avoids, budget, diet) are
 * type fact with entity_kind "constraint", as memory types are only
 * preference | fact | experience.
 *
 * Thread-safety: ops->extract of both extractors may be called from several
 * threads at once on one handle; create/free are not concurrent with use.
 */
#ifndef STRATA_PROVIDERS_EXTRACT_H
#define STRATA_PROVIDERS_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "providers/llm_http.h"

#define EXTRACT_ATTR_MAX 64u              /* bytes of an attribute key */
#define EXTRACT_CONTENT_MAX (16u * 1024u) /* bytes of a candidate's content */

typedef struct extract_candidate {
    strata_memory_type type;   /* STRATA_MEM_PREFERENCE | STRATA_MEM_FACT | STRATA_MEM_EXPERIENCE */
    char *content;             /* restated in the third person: "User prefers concise answers" */
    char *attribute;           /* profile attribute key or NULL: role, employer, location, name,
                                  diet, allergy, budget, age, language, likes, dislikes ...
                                  (lower case) */
    char *value;               /* the attribute's value ("team lead", "Acme Corp") or NULL */
    char *entity;              /* for the knowledge graph: the thing talked about, lower case
                                  ("hiking", "peanuts", "kindle"), or NULL */
    char *entity_kind;         /* "topic" | "product" | "constraint" | "preference" | NULL */
    int polarity;              /* +1 likes/wants, -1 dislikes/avoids, 0 neutral */
    float confidence;          /* 0..1: how sure the extractor is of this statement */
    float importance;          /* 0..1: how much it matters for future conversations */
    uint32_t source;           /* index of the input turn it came from */
} extract_candidate;

/* content, attribute, value and entity are owned by the result (strata_malloc);
 * entity_kind points to a static string. */
typedef struct extract_result { extract_candidate *items; size_t n; } extract_result;
void extract_result_free(extract_result *r);           /* NULL-safe */

typedef struct extractor extractor;
typedef struct extractor_ops {
    const char *name;                                   /* "rules", "llm" */
    /* Extract candidates from turns (oldest first). Only user turns are mined for facts about the
       user (assistant/system turns may give context). On failure returns a STRATA_E* code and a
       message in errbuf; *out is NULL. Malformed model output is STRATA_EPROTO, never a crash. */
    int (*extract)(extractor *x, const strata_turn *turns, size_t n_turns, extract_result **out,
                   char *errbuf, size_t errcap);
    void (*close)(extractor *x);
} extractor_ops;
struct extractor { const extractor_ops *ops; };

/* Free an extractor of any kind (calls ops->close). NULL-safe. */
void extractor_free(extractor *x);

static inline int extractor_extract(extractor *x, const strata_turn *turns, size_t n_turns,
                                    extract_result **out, char *errbuf, size_t errcap)
{ return x->ops->extract(x, turns, n_turns, out, errbuf, errcap); }

/* true for the multi-valued attributes listed above (likes, allergy, ...);
 * false for single-valued ones and for NULL. */
bool extract_attribute_multi(const char *attribute);

/* ---- the rule-based extractor (extract_rules.c) ------------------------ */
#define EXTRACT_RULES_TURN_MAX (256u * 1024u) /* bytes of a turn read; the rest is ignored */
#define EXTRACT_RULES_ITEMS_MAX 512u          /* candidates per call; later ones are dropped */

/*
 * The built-in English extractor: no model, no network, a few microseconds
 * per sentence. Reads only user turns; a turn's content need not be valid
 * UTF-8 or NUL-terminated (content_len counts). Within one call, candidates
 * equal in (type, attribute, value, entity) are merged (highest confidence
 * and importance, latest source). A call with no turns, or none that say
 * anything extractable, succeeds with n = 0. Errors: STRATA_EINVAL (turns
 * NULL with n_turns > 0, or n_turns > UINT32_MAX), STRATA_ENOMEM. Stateless:
 * extract is thread-safe. Free with extractor_free.
 */
int extractor_rules_create(extractor **out);

/* ---- the LLM extractor (extract_llm.c) --------------------------------- */
#define EXTRACT_LLM_ITEMS_MAX 100u              /* memories accepted in one reply */
#define EXTRACT_LLM_OUTPUT_MAX (1024u * 1024u)  /* bytes of model output parsed */
#define EXTRACT_LLM_TURN_MAX (8u * 1024u)       /* bytes of one turn put in the prompt */
#define EXTRACT_LLM_PROMPT_MAX (96u * 1024u)    /* bytes of all turns in the prompt */

/*
 * An extractor that asks an OpenAI-compatible chat model (llm_http.h) for a
 * JSON object {"memories": [...]} and validates it with extract_llm_parse.
 * The prompt shows the turns numbered [1]..[n] with their roles; when they
 * exceed EXTRACT_LLM_PROMPT_MAX, the oldest are left out. A memory whose
 * source is not a user turn rejects the reply (STRATA_EPROTO). Errors of
 * the HTTP client pass through unchanged (STRATA_ETIMEDOUT, STRATA_EBUSY,
 * STRATA_EIO, ...). Creation errors as llm_http_create. The options'
 * strings are copied. Thread-safe like llm_http. Free with extractor_free.
 */
int extractor_llm_create(const llm_http_options *opts, extractor **out);

/*
 * Validate a model's reply and convert it (exposed for the fuzz target and
 * tests; no network). text[0..len) is a JSON object, optionally wrapped in a
 * ``` or ```json fence and whitespace, of the form
 *   {"memories": [{"type", "content", "attribute", "value", "entity",
 *                  "entity_kind", "polarity", "confidence", "importance",
 *                  "source"}, ...]}
 * "type", "content", "confidence", "importance" and "source" are required;
 * the others may be absent or null (polarity then 0). source is the 1-based
 * turn number of the prompt, 1..n_turns; the result holds source - 1.
 * Normalisation, the only changes made: strings are trimmed of whitespace
 * and an empty one means null; type and entity_kind match case-insensitively;
 * attribute is lower-cased with ' ' and '-' as '_'; entity is ASCII-lower-
 * cased; a value without an attribute (or the reverse) drops both; an
 * entity_kind without an entity is dropped. Unknown keys are ignored.
 * Anything else wrong - not JSON, no "memories" array, more than
 * EXTRACT_LLM_ITEMS_MAX items, a field of the wrong type or out of range,
 * empty content or content over EXTRACT_CONTENT_MAX bytes - rejects the
 * whole reply: STRATA_EPROTO with a message naming the item and field
 * ("memories[3].confidence: 1.5 is outside 0..1"), *out NULL. Rejecting all
 * rather than dropping the bad item is deliberate: a model that got one item
 * wrong has likely misread the task, and a partial result would look
 * complete to the delta-merge. Other errors: STRATA_ENOMEM.
 */
int extract_llm_parse(const char *text, size_t len, size_t n_turns, extract_result **out,
                      char *errbuf, size_t errcap);

#endif /* STRATA_PROVIDERS_EXTRACT_H */
