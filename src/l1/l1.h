/*
 * l1.h - the internal header of src/l1: short-term session memory behind a
 * vtable, so the embedded backend (l1_mem.c) and the Redis backend are
 * interchangeable and the layers above never know which one they talk to.
 *
 * The data model is the brief's, per tenant:
 *
 *   session:{id}:state    hash   current_stage, turn_count, last_active
 *                                (+ user_id, the session's owner, and ended)
 *   session:{id}:buffer   list   the last N turns, oldest first
 *   user:{id}:dirty       set    profile attributes awaiting sync to L2/L3
 *
 * Mutations are applied in log order by the caller (pipeline/db.c), which
 * logs first and then applies; timestamps come from the log record, never from
 * the clock, so replaying the log reproduces the same state byte for byte.
 */
#ifndef STRATA_L1_H
#define STRATA_L1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct l1_store l1_store;

typedef struct l1_turn_in {
    const char *tenant;
    const char *session_id;
    const char *user_id;
    strata_role role;
    const char *content;
    size_t content_len;
    int64_t ts;              /* Unix seconds, from the log record */
} l1_turn_in;

typedef struct l1_turn_out {
    uint32_t turn_count;     /* after the append */
} l1_turn_out;

/* A session found idle by expiry scanning. */
typedef struct l1_session_ref {
    char *tenant;
    char *session_id;
} l1_session_ref;

void l1_session_refs_free(l1_session_ref *refs, size_t n);

typedef struct l1_stats {
    uint64_t sessions;
    uint64_t turns_buffered;
    uint64_t dirty_users;
} l1_stats;

typedef struct l1_ops {
    const char *name;   /* "embedded", "redis", ... */

    /* Append a turn, creating the session on first use; trims the buffer to
     * buffer_max; sets last_active = in->ts; clears `ended`. A session owned by
     * another user: STRATA_ECONFLICT and no change. */
    int (*turn_append)(l1_store *s, const l1_turn_in *in, l1_turn_out *out);

    /* Would turn_append succeed? (STRATA_ECONFLICT if the session belongs to
     * another user.) Lets the caller reject before logging. *turn_count_out
     * (may be NULL) receives the session's current turn_count (0 if new), so
     * the caller needs no second round trip to a remote backend. */
    int (*turn_check)(l1_store *s, const char *tenant, const char *session_id,
                      const char *user_id, uint32_t *turn_count_out);

    /* Copy of a session (strata_session_free). STRATA_ENOTFOUND if absent. */
    int (*session_get)(l1_store *s, const char *tenant, const char *session_id,
                       strata_session **out);

    /* Set current_stage and last_active = ts. STRATA_ENOTFOUND if absent. */
    int (*session_set_stage)(l1_store *s, const char *tenant, const char *session_id,
                             const char *stage, int64_t ts);

    /* Mark ended (ended = 1). STRATA_ENOTFOUND if absent. */
    int (*session_end)(l1_store *s, const char *tenant, const char *session_id, int64_t ts);

    /* Remove the session's state and buffer. STRATA_ENOTFOUND if absent. */
    int (*session_delete)(l1_store *s, const char *tenant, const char *session_id);

    /* Sessions with last_active < idle_before (Unix seconds), at most max. */
    int (*session_list_idle)(l1_store *s, int64_t idle_before, size_t max,
                             l1_session_ref **out, size_t *n_out);

    int (*dirty_add)(l1_store *s, const char *tenant, const char *user_id, const char *attr);
    /* Sorted members; an unknown user gives an empty list. */
    int (*dirty_get)(l1_store *s, const char *tenant, const char *user_id, strata_strlist **out);
    int (*dirty_clear)(l1_store *s, const char *tenant, const char *user_id);

    /* Serialise the whole store (embedded backend; others: STRATA_EUNSUPPORTED). */
    int (*snapshot_write)(l1_store *s, sbuf *out);
    /* Replace the store's contents with a snapshot image. STRATA_ECORRUPT on a
     * malformed image (and the store is left empty). */
    int (*snapshot_load)(l1_store *s, const void *data, size_t len);

    void (*stats)(l1_store *s, l1_stats *out);
    void (*close)(l1_store *s);
} l1_ops;

/* Every backend's struct starts with this. */
struct l1_store {
    const l1_ops *ops;
};

typedef struct l1_mem_options {
    uint32_t buffer_max;     /* N turns kept per session */
} l1_mem_options;

/* The embedded backend: hash tables in memory, thread-safe (one rwlock). */
int l1_mem_open(const l1_mem_options *opts, l1_store **out);

#endif /* STRATA_L1_H */
