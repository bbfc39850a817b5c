/*
 * profile.h - user profiles and the delta-merge decision (profile.c). Part
 * of src/pipeline; other folders reach it through pipeline.h.
 */
#ifndef STRATA_PROFILE_H
#define STRATA_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

typedef struct profile_store profile_store;

/* A memory waiting for distillation into L3, with what the extractor said
 * about it ("" for absent strings). */
typedef struct distill_entry {
    uint64_t memory_id;
    char *entity;                /* "hiking" */
    char *kind;                  /* topic | product | constraint | preference | "" */
    int polarity;                /* -1, 0, +1 */
    char *attribute;             /* profile attribute or "" */
    char *value;
    char *content;
    double confidence;
    double importance;
    int64_t ts;                  /* Unix seconds */
} distill_entry;

void distill_entry_clear(distill_entry *e);

typedef enum merge_decision {
    MERGE_ADD = 0,        /* no value yet: set it */
    MERGE_REINFORCE = 1,  /* the same value again: keep, raise confidence */
    MERGE_UPDATE = 2,     /* contradicts and wins (more confident, or clearly newer) */
    MERGE_KEEP = 3,       /* contradicts but is clearly weaker: no change */
    MERGE_CLARIFY = 4     /* contradicts, close confidence, no order in time: ask */
} merge_decision;

typedef struct merge_params {
    double confidence_margin;    /* "close" confidence: |new - old| < margin (default 0.15) */
    int64_t change_window_s;     /* newer by more than this = the user changed (default 3600) */
} merge_params;

profile_store *profile_create(void);
void profile_free(profile_store *ps);

/* The brief's conflict resolution for one candidate value (read lock). */
merge_decision profile_decide(profile_store *ps, const char *tenant, const char *user,
                              const char *attribute, const char *value, double confidence,
                              int64_t ts, const merge_params *p);
bool profile_same_value(const char *a, const char *b);
bool profile_has_open_clarification(profile_store *ps, const char *tenant, const char *user,
                                    const char *attribute, const char *value);

/* Apply logged decisions (write lock; caller holds the db write lock). */
/* *changed: the value was added or replaced (not a reinforcement). */
int profile_apply_set(profile_store *ps, const char *tenant, const char *user,
                      const char *attribute, const char *value, double confidence, int64_t ts,
                      const char *const *sources, uint32_t n_sources, bool *changed);
int profile_apply_clarify(profile_store *ps, const char *tenant, const char *user, uint64_t id,
                          const char *attribute, const char *new_value, double confidence,
                          int64_t ts);
int profile_apply_resolve(profile_store *ps, const char *tenant, const char *user, uint64_t id,
                          const char *chosen, int64_t ts);

/* Distillation queue per user (apply side, and copies for the job). */
int profile_apply_pending_add(profile_store *ps, const char *tenant, const char *user,
                              const distill_entry *e);
int profile_apply_pending_done(profile_store *ps, const char *tenant, const char *user,
                               uint64_t memory_id);
int profile_pending_copy(profile_store *ps, const char *tenant, const char *user,
                         distill_entry **out, size_t *n_out);
/* Keys "<tenant>\0<user>\0" of users with pending entries (strata_free each, and the array). */
int profile_users_with_pending(profile_store *ps, char ***keys_out, size_t *n_out);

/* Copies out of an open or closed clarification (strata_free each string). */
int profile_clarification_get(profile_store *ps, const char *tenant, const char *user,
                              uint64_t id, char **attribute, char **old_value, char **new_value,
                              double *confidence, bool *open);

/* API.md's profile JSON; an unknown user gets empty attributes. */
int profile_to_json(profile_store *ps, const char *tenant, const char *user, sbuf *out);
/* {"attribute","state":{value, confidence, updated_at, valid_from, sources, history}} */
int profile_attribute_json(profile_store *ps, const char *tenant, const char *user,
                           const char *attribute, sbuf *out);

/* Right to be forgotten: drop the user's attributes with their history,
 * clarifications and distillation queue. *n_out gets how many went. */
int profile_forget(profile_store *ps, const char *tenant, const char *user, size_t *n_out);
int profile_snapshot_write(profile_store *ps, sbuf *out);
int profile_snapshot_load(profile_store *ps, const void *data, size_t len);

#endif /* STRATA_PROFILE_H */
