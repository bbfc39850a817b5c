/*
 * l2_common.c - what every L2 backend shares: the public destructors and
 * parsers of memory types and search modes.
 */
#include <string.h>

#include "l2/l2.h"

int strata_memory_type_parse(const char *text, strata_memory_type *out)
{
    if (strcmp(text, "preference") == 0) {
        *out = STRATA_MEM_PREFERENCE;
    } else if (strcmp(text, "fact") == 0) {
        *out = STRATA_MEM_FACT;
    } else if (strcmp(text, "experience") == 0) {
        *out = STRATA_MEM_EXPERIENCE;
    } else {
        return strata_error(STRATA_EINVAL, "memory_type must be preference, fact or experience");
    }
    return STRATA_OK;
}

const char *strata_memory_type_name(strata_memory_type t)
{
    switch (t) {
    case STRATA_MEM_PREFERENCE: return "preference";
    case STRATA_MEM_FACT: return "fact";
    default: return "experience";
    }
}

int strata_search_mode_parse(const char *text, strata_search_mode *out)
{
    if (strcmp(text, "hybrid") == 0) {
        *out = STRATA_SEARCH_HYBRID;
    } else if (strcmp(text, "vector") == 0) {
        *out = STRATA_SEARCH_VECTOR;
    } else if (strcmp(text, "keyword") == 0) {
        *out = STRATA_SEARCH_KEYWORD;
    } else {
        return strata_error(STRATA_EINVAL, "mode must be hybrid, vector or keyword");
    }
    return STRATA_OK;
}

void strata_search_opts_init(strata_search_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->limit = 5;
    o->mode = STRATA_SEARCH_HYBRID;
}

static void memory_clear(strata_memory *m)
{
    strata_free(m->user_id);
    strata_free(m->content);
    for (size_t i = 0; i < m->n_provenance; i++) {
        strata_free(m->provenance[i]);
    }
    strata_free(m->provenance);
}

void strata_memory_free(strata_memory *m)
{
    if (m != NULL) {
        memory_clear(m);
        strata_free(m);
    }
}

void strata_memory_list_free(strata_memory_list *l)
{
    if (l == NULL) {
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        memory_clear(&l->items[i]);
    }
    strata_free(l->items);
    strata_free(l);
}
