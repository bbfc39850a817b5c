/*
 * fuzz_extract.c - libFuzzer target for the memory extractors
 * (providers/extract_rules.c, providers/extract_llm.c). The input is any
 * bytes, used twice:
 *   - as conversation text for the rules extractor: once whole as one user
 *     turn, once split at 0x1E bytes into turns whose roles cycle user,
 *     assistant, user, system, so turn boundaries and roles get exercised;
 *   - as a model reply for extract_llm_parse, with 3 turns and with 0 turns
 *     (where every source is out of range).
 * Properties checked on every success (extract.h's invariants):
 *   - content is non-empty valid UTF-8, at most EXTRACT_CONTENT_MAX bytes
 *     (and starts with "User" from the rules extractor);
 *   - attribute is NULL or 1..EXTRACT_ATTR_MAX bytes of [a-z0-9_], value is
 *     set exactly when attribute is, and is valid UTF-8;
 *   - entity is NULL or non-empty valid UTF-8 without ASCII capitals;
 *     entity_kind is NULL or one of the four kinds, and only with an entity;
 *   - polarity in -1..1, confidence and importance in 0..1;
 *   - source names a user turn (rules) or is < n_turns (parser), and the
 *     parser returns at most EXTRACT_LLM_ITEMS_MAX items;
 *   - on failure *out is NULL and the code is EPROTO (or ENOMEM).
 * Nothing may crash or leak (sanitizers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/extract.h"

#define FUZZ_MAX_INPUT (64u * 1024u)
#define FUZZ_MAX_TURNS 16u

static void fuzz_fail(const char *what, const extract_candidate *c)
{
    fprintf(stderr, "fuzz_extract: %s (content \"%.80s\")\n", what,
            c != NULL && c->content != NULL ? c->content : "");
    abort();
}

static bool is_kind(const char *k)
{
    return strcmp(k, "topic") == 0 || strcmp(k, "product") == 0 ||
           strcmp(k, "constraint") == 0 || strcmp(k, "preference") == 0;
}

/* The invariants of one result; turns NULL: only source < n_turns. */
static void check(const extract_result *r, const strata_turn *turns, size_t n_turns,
                  bool rules)
{
    if (r == NULL || (r->n > 0 && r->items == NULL)) {
        fuzz_fail("no result", NULL);
    }
    if (!rules && r->n > EXTRACT_LLM_ITEMS_MAX) {
        fuzz_fail("too many items", NULL);
    }
    if (rules && r->n > EXTRACT_RULES_ITEMS_MAX) {
        fuzz_fail("too many items", NULL);
    }
    for (size_t i = 0; i < r->n; i++) {
        const extract_candidate *c = &r->items[i];
        if (c->type != STRATA_MEM_PREFERENCE && c->type != STRATA_MEM_FACT &&
            c->type != STRATA_MEM_EXPERIENCE) {
            fuzz_fail("bad type", c);
        }
        size_t cl = c->content != NULL ? strlen(c->content) : 0;
        if (cl == 0 || cl > EXTRACT_CONTENT_MAX || !utf8_valid(c->content, cl)) {
            fuzz_fail("bad content", c);
        }
        if (rules && strncmp(c->content, "User", 4) != 0) {
            fuzz_fail("content not in the third person", c);
        }
        if ((c->attribute == NULL) != (c->value == NULL)) {
            fuzz_fail("attribute and value not paired", c);
        }
        if (c->attribute != NULL) {
            size_t al = strlen(c->attribute);
            if (al == 0 || al > EXTRACT_ATTR_MAX ||
                strspn(c->attribute, "abcdefghijklmnopqrstuvwxyz0123456789_") != al) {
                fuzz_fail("bad attribute", c);
            }
            if (c->value[0] == '\0' || !utf8_valid(c->value, strlen(c->value))) {
                fuzz_fail("bad value", c);
            }
        }
        if (c->entity != NULL) {
            if (c->entity[0] == '\0' || !utf8_valid(c->entity, strlen(c->entity))) {
                fuzz_fail("bad entity", c);
            }
            for (const char *p = c->entity; *p != '\0'; p++) {
                if (*p >= 'A' && *p <= 'Z') {
                    fuzz_fail("entity not lower case", c);
                }
            }
        }
        if (c->entity_kind != NULL && (c->entity == NULL || !is_kind(c->entity_kind))) {
            fuzz_fail("bad entity_kind", c);
        }
        if (c->polarity < -1 || c->polarity > 1) {
            fuzz_fail("bad polarity", c);
        }
        if (!(c->confidence >= 0.0f && c->confidence <= 1.0f) ||
            !(c->importance >= 0.0f && c->importance <= 1.0f)) {
            fuzz_fail("score out of range", c);
        }
        if (c->source >= n_turns ||
            (turns != NULL && turns[c->source].role != STRATA_ROLE_USER)) {
            fuzz_fail("bad source", c);
        }
    }
}

static void run_rules(extractor *x, const strata_turn *turns, size_t n)
{
    extract_result *r = NULL;
    char err[128];
    int rc = x->ops->extract(x, turns, n, &r, err, sizeof(err));
    if (rc != STRATA_OK) {
        if (rc != STRATA_ENOMEM || r != NULL) {
            fuzz_fail("rules extractor failed", NULL);
        }
        return;
    }
    check(r, turns, n, true);
    extract_result_free(r);
}

static void run_parse(const char *text, size_t len, size_t n_turns)
{
    extract_result *r = (extract_result *)1;
    char err[256];
    int rc = extract_llm_parse(text, len, n_turns, &r, err, sizeof(err));
    if (rc != STRATA_OK) {
        if ((rc != STRATA_EPROTO && rc != STRATA_ENOMEM) || r != NULL || err[0] == '\0') {
            fuzz_fail("parse failed without EPROTO, a NULL result and a message", NULL);
        }
        return;
    }
    check(r, NULL, n_turns, false);
    extract_result_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) {
        return 0;
    }
    /* A private exact-size copy: a read past size is caught by ASan. */
    char *text = malloc(size ? size : 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);

    extractor *x = NULL;
    if (extractor_rules_create(&x) == STRATA_OK) {
        strata_turn one = {STRATA_ROLE_USER, text, size, 0, 1};
        run_rules(x, &one, 1);

        static const strata_role roles[] = {STRATA_ROLE_USER, STRATA_ROLE_ASSISTANT,
                                            STRATA_ROLE_USER, STRATA_ROLE_SYSTEM};
        strata_turn turns[FUZZ_MAX_TURNS];
        size_t n = 0;
        size_t start = 0;
        for (size_t i = 0; i <= size && n < FUZZ_MAX_TURNS; i++) {
            if (i == size || text[i] == 0x1E) {
                turns[n] = (strata_turn){roles[n % 4], text + start, i - start, 0,
                                         (uint32_t)n + 1};
                n++;
                start = i + 1;
            }
        }
        run_rules(x, turns, n);
        extractor_free(x);
    }

    run_parse(text, size, 3);
    run_parse(text, size, 0);
    free(text);
    return 0;
}
