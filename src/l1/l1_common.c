/*
 * l1_common.c - what every L1 backend shares: the destructors of the values
 * the L1 ops hand out (sessions, string lists, idle-session references). They
 * live here, not in a backend, so a caller frees a result the same way
 * whichever backend produced it.
 *
 * No state and no locks: each function owns only what it is given.
 */
#include "l1/l1.h"

/* Frees refs[0..n) and the array. Entries may have NULL fields (a copy that
 * failed half-way), so backends can call this on their error paths. */
void l1_session_refs_free(l1_session_ref *refs, size_t n)
{
    if (refs == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        strata_free(refs[i].tenant);
        strata_free(refs[i].session_id);
    }
    strata_free(refs);
}

/* Accepts NULL and partly built sessions: every pointer may be NULL, and
 * turns[0..n_turns) may have NULL contents. */
void strata_session_free(strata_session *s)
{
    if (s == NULL) {
        return;
    }
    if (s->turns != NULL) {
        for (size_t i = 0; i < s->n_turns; i++) {
            strata_free(s->turns[i].content);
        }
        strata_free(s->turns);
    }
    strata_free(s->current_stage);
    strata_free(s->user_id);
    strata_free(s->session_id);
    strata_free(s);
}

/* Accepts NULL and partly built lists (NULL items in [0, n)). */
void strata_strlist_free(strata_strlist *l)
{
    if (l == NULL) {
        return;
    }
    if (l->items != NULL) {
        for (size_t i = 0; i < l->n; i++) {
            strata_free(l->items[i]);
        }
        strata_free(l->items);
    }
    strata_free(l);
}
