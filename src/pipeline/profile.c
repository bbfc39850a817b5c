/*
 * profile.c - user profiles and the delta-merge of brief §2.3.
 *
 * A profile P_t is a set of attributes per (tenant, user), each with its
 * current value, confidence, validity start, source memory ids and a history
 * of superseded values with their validity interval; plus open and closed
 * clarifications for contradictions that could not be decided.
 *
 *   users: dict "<tenant>\0<user>" -> user_profile
 *   user_profile { attrs[] {name, value, confidence, valid_from, updated_at,
 *                           sources[], history[] {value, confidence, from, to}},
 *                  clarifs[] {id, attribute, old, new, confidence, created_at,
 *                             status} }
 *
 * The decision (profile_decide) runs on the live path only; what it decides
 * is logged (AOL_PROFILE_SET / _CLARIFY / _RESOLVE) and applied by the apply
 * functions here, so replay reproduces the profile without re-deciding.
 *
 * Locking: `lock` (rwlock) protects everything; writers also hold the db's
 * write_lock, which orders them with the log.
 *
 * Snapshot image (wire codec): u32 version 1 | u32 n_users | per user:
 *   str key | u32 n_attrs | per attr: str name | str value | f64 confidence |
 *   i64 valid_from | i64 updated_at | u32 n_src | strs | u32 n_hist | per
 *   entry: str value | f64 confidence | i64 from | i64 to ; u32 n_clarifs |
 *   per clarification: u64 id | str attribute | str old | str new |
 *   f64 confidence | i64 created_at | u8 status | str resolution
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/profile.h"

#define PROFILE_MAX_ATTRS 1024
#define PROFILE_MAX_HISTORY 256
#define PROFILE_MAX_SOURCES 32

typedef struct hist_entry {
    char *value;
    double confidence;
    int64_t valid_from;
    int64_t valid_to;
} hist_entry;

typedef struct attr {
    char *name;
    char *value;
    double confidence;
    int64_t valid_from;
    int64_t updated_at;
    char **sources;
    uint32_t n_sources;
    hist_entry *history;
    uint32_t n_history;
} attr;

typedef struct clarif {
    uint64_t id;
    char *attribute;
    char *old_value;
    char *new_value;
    double confidence;
    int64_t created_at;
    uint8_t status;              /* 0 open, 1 resolved */
    char *resolution;            /* the value chosen, "" while open */
} clarif;

typedef struct user_profile {
    attr *attrs;
    uint32_t n_attrs;
    clarif *clarifs;
    uint32_t n_clarifs;
    distill_entry *pending;      /* memories waiting for distillation into L3 */
    uint32_t n_pending;
} user_profile;

struct profile_store {
    pthread_rwlock_t lock;
    dict *users;
};

static void attr_clear(attr *a)
{
    strata_free(a->name);
    strata_free(a->value);
    for (uint32_t i = 0; i < a->n_sources; i++) {
        strata_free(a->sources[i]);
    }
    strata_free(a->sources);
    for (uint32_t i = 0; i < a->n_history; i++) {
        strata_free(a->history[i].value);
    }
    strata_free(a->history);
}

static void clarif_clear(clarif *c)
{
    strata_free(c->attribute);
    strata_free(c->old_value);
    strata_free(c->new_value);
    strata_free(c->resolution);
}

void distill_entry_clear(distill_entry *e)
{
    strata_free(e->entity);
    strata_free(e->kind);
    strata_free(e->attribute);
    strata_free(e->value);
    strata_free(e->content);
    memset(e, 0, sizeof(*e));
}

static void user_profile_free(void *p)
{
    user_profile *u = p;
    if (u == NULL) {
        return;
    }
    for (uint32_t i = 0; i < u->n_pending; i++) {
        distill_entry_clear(&u->pending[i]);
    }
    strata_free(u->pending);
    for (uint32_t i = 0; i < u->n_attrs; i++) {
        attr_clear(&u->attrs[i]);
    }
    strata_free(u->attrs);
    for (uint32_t i = 0; i < u->n_clarifs; i++) {
        clarif_clear(&u->clarifs[i]);
    }
    strata_free(u->clarifs);
    strata_free(u);
}

static const dict_type profile_dict_type = {user_profile_free};

profile_store *profile_create(void)
{
    profile_store *ps = strata_calloc(1, sizeof(*ps));
    if (ps == NULL) {
        return NULL;
    }
    ps->users = dict_create(&profile_dict_type);
    if (ps->users == NULL) {
        strata_free(ps);
        return NULL;
    }
    pthread_rwlock_init(&ps->lock, NULL);
    return ps;
}

void profile_free(profile_store *ps)
{
    if (ps == NULL) {
        return;
    }
    dict_free(ps->users);
    pthread_rwlock_destroy(&ps->lock);
    strata_free(ps);
}

static size_t user_key(char *buf, size_t cap, const char *tenant, const char *user)
{
    size_t t = strlen(tenant);
    size_t u = strlen(user);
    if (t + u + 1 > cap) {
        return 0;
    }
    memcpy(buf, tenant, t);
    buf[t] = '\0';
    memcpy(buf + t + 1, user, u);
    return t + 1 + u;
}

/* Caller holds the lock. create: make the profile when absent. */
static user_profile *user_find(profile_store *ps, const char *tenant, const char *user,
                               bool create)
{
    char key[2 * STRATA_ID_MAX + 4];
    size_t klen = user_key(key, sizeof(key), tenant, user);
    if (klen == 0) {
        return NULL;
    }
    user_profile *u = dict_get(ps->users, key, klen);
    if (u != NULL || !create) {
        return u;
    }
    u = strata_calloc(1, sizeof(*u));
    if (u == NULL || dict_set(ps->users, key, klen, u) != STRATA_OK) {
        strata_free(u);
        return NULL;
    }
    return u;
}

static attr *attr_find(user_profile *u, const char *name)
{
    for (uint32_t i = 0; u != NULL && i < u->n_attrs; i++) {
        if (strcmp(u->attrs[i].name, name) == 0) {
            return &u->attrs[i];
        }
    }
    return NULL;
}

/* Values compare case-insensitively and ignoring surrounding blanks. */
bool profile_same_value(const char *a, const char *b)
{
    while (isspace((unsigned char)*a)) {
        a++;
    }
    while (isspace((unsigned char)*b)) {
        b++;
    }
    size_t la = strlen(a);
    size_t lb = strlen(b);
    while (la > 0 && isspace((unsigned char)a[la - 1])) {
        la--;
    }
    while (lb > 0 && isspace((unsigned char)b[lb - 1])) {
        lb--;
    }
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* ---- the decision (live path) ------------------------------------------------ */

merge_decision profile_decide(profile_store *ps, const char *tenant, const char *user,
                              const char *attribute, const char *value, double confidence,
                              int64_t ts, const merge_params *p)
{
    pthread_rwlock_rdlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    attr *a = attr_find(u, attribute);
    merge_decision d;
    if (a == NULL) {
        d = MERGE_ADD;
    } else if (profile_same_value(a->value, value)) {
        d = MERGE_REINFORCE;
    } else if (confidence >= a->confidence + p->confidence_margin) {
        d = MERGE_UPDATE; /* New.Confidence > Old.Confidence */
    } else if (ts - a->updated_at > p->change_window_s) {
        d = MERGE_UPDATE; /* New.Timestamp > Old.Timestamp and contradicts: the user changed */
    } else if (fabs(confidence - a->confidence) < p->confidence_margin) {
        d = MERGE_CLARIFY; /* close in confidence, no clear order in time: ambiguous */
    } else {
        d = MERGE_KEEP; /* clearly less sure than what we hold, and not newer */
    }
    pthread_rwlock_unlock(&ps->lock);
    return d;
}

bool profile_has_open_clarification(profile_store *ps, const char *tenant, const char *user,
                                    const char *attribute, const char *value)
{
    pthread_rwlock_rdlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    bool found = false;
    for (uint32_t i = 0; u != NULL && i < u->n_clarifs && !found; i++) {
        clarif *c = &u->clarifs[i];
        found = c->status == 0 && strcmp(c->attribute, attribute) == 0 &&
                profile_same_value(c->new_value, value);
    }
    pthread_rwlock_unlock(&ps->lock);
    return found;
}

/* ---- apply (replayed) ----------------------------------------------------------- */

static int strs_dup(char ***out, uint32_t *n_out, const char *const *src, uint32_t n)
{
    *out = NULL;
    *n_out = 0;
    n = n > PROFILE_MAX_SOURCES ? PROFILE_MAX_SOURCES : n;
    if (n == 0) {
        return STRATA_OK;
    }
    char **v = strata_calloc(n, sizeof(char *));
    if (v == NULL) {
        return STRATA_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        v[i] = strata_strdup(src[i]);
        if (v[i] == NULL) {
            for (uint32_t k = 0; k < i; k++) {
                strata_free(v[k]);
            }
            strata_free(v);
            return STRATA_ENOMEM;
        }
    }
    *out = v;
    *n_out = n;
    return STRATA_OK;
}

/* Push the current value of a into its history, closing it at ts. */
static int attr_push_history(attr *a, int64_t ts)
{
    if (a->n_history == PROFILE_MAX_HISTORY) {
        /* Bounded: drop the oldest entry rather than grow without limit. */
        strata_free(a->history[0].value);
        memmove(a->history, a->history + 1, (a->n_history - 1) * sizeof(hist_entry));
        a->n_history--;
    }
    hist_entry *h = strata_realloc(a->history, (a->n_history + 1) * sizeof(hist_entry));
    if (h == NULL) {
        return STRATA_ENOMEM;
    }
    a->history = h;
    char *v = strata_strdup(a->value);
    if (v == NULL) {
        return STRATA_ENOMEM;
    }
    a->history[a->n_history++] = (hist_entry){v, a->confidence, a->valid_from, ts};
    return STRATA_OK;
}

int profile_apply_set(profile_store *ps, const char *tenant, const char *user,
                      const char *attribute, const char *value, double confidence, int64_t ts,
                      const char *const *sources, uint32_t n_sources, bool *changed)
{
    pthread_rwlock_wrlock(&ps->lock);
    int rc = STRATA_OK;
    *changed = false;
    user_profile *u = user_find(ps, tenant, user, true);
    if (u == NULL) {
        rc = STRATA_ENOMEM;
        goto out;
    }
    attr *a = attr_find(u, attribute);
    char **srcs = NULL;
    uint32_t n_srcs = 0;
    char *v = strata_strdup(value);
    if (v == NULL || strs_dup(&srcs, &n_srcs, sources, n_sources) != STRATA_OK) {
        strata_free(v);
        rc = STRATA_ENOMEM;
        goto out;
    }
    if (a == NULL) {
        if (u->n_attrs == PROFILE_MAX_ATTRS) {
            rc = strata_error(STRATA_ETOOBIG, "profile has too many attributes");
        } else {
            attr *grown = strata_realloc(u->attrs, (u->n_attrs + 1) * sizeof(attr));
            char *name = strata_strdup(attribute);
            if (grown == NULL || name == NULL) {
                if (grown != NULL) {
                    u->attrs = grown;
                }
                strata_free(name);
                rc = STRATA_ENOMEM;
            } else {
                u->attrs = grown;
                a = &u->attrs[u->n_attrs++];
                memset(a, 0, sizeof(*a));
                a->name = name;
                a->value = v;
                v = NULL;
                a->confidence = confidence;
                a->valid_from = ts;
                a->updated_at = ts;
                a->sources = srcs;
                a->n_sources = n_srcs;
                srcs = NULL;
                n_srcs = 0;
                *changed = true;
            }
        }
    } else if (profile_same_value(a->value, value)) {
        /* Reinforcement: same fact seen again; keep the stronger confidence. */
        a->confidence = fmax(a->confidence, confidence);
        a->updated_at = ts;
    } else {
        rc = attr_push_history(a, ts);
        if (rc == STRATA_OK) {
            strata_free(a->value);
            a->value = v;
            v = NULL;
            a->confidence = confidence;
            a->valid_from = ts;
            a->updated_at = ts;
            for (uint32_t i = 0; i < a->n_sources; i++) {
                strata_free(a->sources[i]);
            }
            strata_free(a->sources);
            a->sources = srcs;
            a->n_sources = n_srcs;
            srcs = NULL;
            n_srcs = 0;
            *changed = true;
        }
    }
    strata_free(v);
    for (uint32_t i = 0; i < n_srcs; i++) {
        strata_free(srcs[i]);
    }
    strata_free(srcs);
out:
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

int profile_apply_clarify(profile_store *ps, const char *tenant, const char *user, uint64_t id,
                          const char *attribute, const char *new_value, double confidence,
                          int64_t ts)
{
    pthread_rwlock_wrlock(&ps->lock);
    int rc = STRATA_OK;
    user_profile *u = user_find(ps, tenant, user, true);
    attr *a = attr_find(u, attribute);
    clarif *grown = u ? strata_realloc(u->clarifs, (u->n_clarifs + 1) * sizeof(clarif)) : NULL;
    if (grown == NULL) {
        rc = STRATA_ENOMEM;
        goto out;
    }
    u->clarifs = grown;
    clarif c = {id, strata_strdup(attribute), strata_strdup(a ? a->value : ""),
                strata_strdup(new_value), confidence, ts, 0, strata_strdup("")};
    if (c.attribute == NULL || c.old_value == NULL || c.new_value == NULL ||
        c.resolution == NULL) {
        clarif_clear(&c);
        rc = STRATA_ENOMEM;
        goto out;
    }
    u->clarifs[u->n_clarifs++] = c;
out:
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

int profile_clarification_get(profile_store *ps, const char *tenant, const char *user,
                              uint64_t id, char **attribute, char **old_value, char **new_value,
                              double *confidence, bool *open)
{
    pthread_rwlock_rdlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    int rc = STRATA_ENOTFOUND;
    for (uint32_t i = 0; u != NULL && i < u->n_clarifs; i++) {
        clarif *c = &u->clarifs[i];
        if (c->id == id) {
            *attribute = strata_strdup(c->attribute);
            *old_value = strata_strdup(c->old_value);
            *new_value = strata_strdup(c->new_value);
            *confidence = c->confidence;
            *open = c->status == 0;
            rc = (*attribute && *old_value && *new_value) ? STRATA_OK : STRATA_ENOMEM;
            break;
        }
    }
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

int profile_apply_resolve(profile_store *ps, const char *tenant, const char *user, uint64_t id,
                          const char *chosen, int64_t ts)
{
    pthread_rwlock_wrlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    clarif *c = NULL;
    for (uint32_t i = 0; u != NULL && i < u->n_clarifs; i++) {
        if (u->clarifs[i].id == id) {
            c = &u->clarifs[i];
        }
    }
    int rc = STRATA_OK;
    if (c == NULL) {
        rc = STRATA_ENOTFOUND;
    } else {
        char *r = strata_strdup(chosen);
        if (r == NULL) {
            rc = STRATA_ENOMEM;
        } else {
            strata_free(c->resolution);
            c->resolution = r;
            c->status = 1;
        }
    }
    pthread_rwlock_unlock(&ps->lock);
    (void)ts;
    return rc;
}

/* ---- distillation queue ------------------------------------------------------------ */

#define PROFILE_MAX_PENDING 100000

static char *dup_or_empty(const char *s)
{
    return strata_strdup(s ? s : "");
}

int profile_apply_pending_add(profile_store *ps, const char *tenant, const char *user,
                              const distill_entry *e)
{
    pthread_rwlock_wrlock(&ps->lock);
    int rc = STRATA_OK;
    user_profile *u = user_find(ps, tenant, user, true);
    if (u == NULL) {
        rc = STRATA_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < u->n_pending; i++) {
        if (u->pending[i].memory_id == e->memory_id) {
            goto out; /* already queued (a re-run job) */
        }
    }
    if (u->n_pending == PROFILE_MAX_PENDING) {
        rc = strata_error(STRATA_ETOOBIG, "distillation queue full");
        goto out;
    }
    distill_entry *grown = strata_realloc(u->pending, (u->n_pending + 1) * sizeof(*grown));
    if (grown == NULL) {
        rc = STRATA_ENOMEM;
        goto out;
    }
    u->pending = grown;
    distill_entry c = *e;
    c.entity = dup_or_empty(e->entity);
    c.kind = dup_or_empty(e->kind);
    c.attribute = dup_or_empty(e->attribute);
    c.value = dup_or_empty(e->value);
    c.content = dup_or_empty(e->content);
    if (!c.entity || !c.kind || !c.attribute || !c.value || !c.content) {
        distill_entry_clear(&c);
        rc = STRATA_ENOMEM;
        goto out;
    }
    u->pending[u->n_pending++] = c;
out:
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

int profile_apply_pending_done(profile_store *ps, const char *tenant, const char *user,
                               uint64_t memory_id)
{
    pthread_rwlock_wrlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    for (uint32_t i = 0; u != NULL && i < u->n_pending; i++) {
        if (u->pending[i].memory_id == memory_id) {
            distill_entry_clear(&u->pending[i]);
            memmove(&u->pending[i], &u->pending[i + 1],
                    (u->n_pending - i - 1) * sizeof(distill_entry));
            u->n_pending--;
            break;
        }
    }
    pthread_rwlock_unlock(&ps->lock);
    return STRATA_OK;
}

int profile_pending_copy(profile_store *ps, const char *tenant, const char *user,
                         distill_entry **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    pthread_rwlock_rdlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    int rc = STRATA_OK;
    if (u != NULL && u->n_pending > 0) {
        distill_entry *v = strata_calloc(u->n_pending, sizeof(*v));
        if (v == NULL) {
            rc = STRATA_ENOMEM;
        }
        for (uint32_t i = 0; v != NULL && i < u->n_pending; i++) {
            v[i] = u->pending[i];
            v[i].entity = dup_or_empty(u->pending[i].entity);
            v[i].kind = dup_or_empty(u->pending[i].kind);
            v[i].attribute = dup_or_empty(u->pending[i].attribute);
            v[i].value = dup_or_empty(u->pending[i].value);
            v[i].content = dup_or_empty(u->pending[i].content);
        }
        if (v != NULL) {
            *out = v;
            *n_out = u->n_pending;
        }
    }
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

int profile_users_with_pending(profile_store *ps, char ***keys_out, size_t *n_out)
{
    *keys_out = NULL;
    *n_out = 0;
    pthread_rwlock_rdlock(&ps->lock);
    size_t n = 0;
    char **keys = strata_calloc(dict_size(ps->users) + 1, sizeof(char *));
    dict_iter it;
    dict_iter_init(&it, ps->users);
    const char *key;
    size_t klen;
    void *val;
    while (keys != NULL && dict_next(&it, &key, &klen, &val)) {
        user_profile *u = val;
        if (u->n_pending > 0) {
            /* "<tenant>\0<user>" with the NUL kept: callers split at it. */
            keys[n] = strata_memdup(key, klen + 1);
            if (keys[n] != NULL) {
                n++;
            }
        }
    }
    pthread_rwlock_unlock(&ps->lock);
    if (keys == NULL) {
        return STRATA_ENOMEM;
    }
    *keys_out = keys;
    *n_out = n;
    return STRATA_OK;
}

/* ---- reads -------------------------------------------------------------------- */

static int attr_json(sbuf *b, const attr *a)
{
    int rc = sbuf_puts(b, "{\"value\":");
    rc = rc ? rc : json_put_cstr(b, a->value);
    rc = rc ? rc : sbuf_puts(b, ",\"confidence\":");
    rc = rc ? rc : json_put_double(b, a->confidence);
    rc = rc ? rc : sbuf_puts(b, ",\"updated_at\":");
    rc = rc ? rc : json_put_i64(b, a->updated_at);
    rc = rc ? rc : sbuf_puts(b, ",\"valid_from\":");
    rc = rc ? rc : json_put_i64(b, a->valid_from);
    rc = rc ? rc : sbuf_puts(b, ",\"sources\":[");
    for (uint32_t i = 0; rc == STRATA_OK && i < a->n_sources; i++) {
        rc = i ? sbuf_putc(b, ',') : STRATA_OK;
        rc = rc ? rc : json_put_cstr(b, a->sources[i]);
    }
    rc = rc ? rc : sbuf_puts(b, "],\"history\":[");
    for (uint32_t i = 0; rc == STRATA_OK && i < a->n_history; i++) {
        const hist_entry *h = &a->history[i];
        rc = sbuf_puts(b, i ? ",{\"value\":" : "{\"value\":");
        rc = rc ? rc : json_put_cstr(b, h->value);
        rc = rc ? rc : sbuf_puts(b, ",\"confidence\":");
        rc = rc ? rc : json_put_double(b, h->confidence);
        rc = rc ? rc : sbuf_puts(b, ",\"valid_from\":");
        rc = rc ? rc : json_put_i64(b, h->valid_from);
        rc = rc ? rc : sbuf_puts(b, ",\"valid_to\":");
        rc = rc ? rc : json_put_i64(b, h->valid_to);
        rc = rc ? rc : sbuf_putc(b, '}');
    }
    rc = rc ? rc : sbuf_puts(b, "]}");
    return rc;
}

int profile_attribute_json(profile_store *ps, const char *tenant, const char *user,
                           const char *attribute, sbuf *out)
{
    pthread_rwlock_rdlock(&ps->lock);
    attr *a = attr_find(user_find(ps, tenant, user, false), attribute);
    int rc = STRATA_ENOTFOUND;
    if (a != NULL) {
        rc = sbuf_puts(out, "{\"attribute\":");
        rc = rc ? rc : json_put_cstr(out, attribute);
        rc = rc ? rc : sbuf_puts(out, ",\"state\":");
        rc = rc ? rc : attr_json(out, a);
        rc = rc ? rc : sbuf_putc(out, '}');
    }
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

int profile_to_json(profile_store *ps, const char *tenant, const char *user, sbuf *b)
{
    pthread_rwlock_rdlock(&ps->lock);
    user_profile *u = user_find(ps, tenant, user, false);
    int rc = sbuf_puts(b, "{\"user_id\":");
    rc = rc ? rc : json_put_cstr(b, user);
    rc = rc ? rc : sbuf_puts(b, ",\"attributes\":{");
    for (uint32_t i = 0; rc == STRATA_OK && u != NULL && i < u->n_attrs; i++) {
        rc = i ? sbuf_putc(b, ',') : STRATA_OK;
        rc = rc ? rc : json_put_cstr(b, u->attrs[i].name);
        rc = rc ? rc : sbuf_putc(b, ':');
        rc = rc ? rc : attr_json(b, &u->attrs[i]);
    }
    rc = rc ? rc : sbuf_puts(b, "},\"clarifications\":[");
    bool first = true;
    for (uint32_t i = 0; rc == STRATA_OK && u != NULL && i < u->n_clarifs; i++) {
        const clarif *c = &u->clarifs[i];
        if (c->status != 0) {
            continue;
        }
        char id[STRATA_JOB_ID_LEN];
        snprintf(id, sizeof(id), "clr-%016llx", (unsigned long long)c->id);
        rc = sbuf_puts(b, first ? "{\"id\":" : ",{\"id\":");
        first = false;
        rc = rc ? rc : json_put_cstr(b, id);
        rc = rc ? rc : sbuf_puts(b, ",\"attribute\":");
        rc = rc ? rc : json_put_cstr(b, c->attribute);
        rc = rc ? rc : sbuf_puts(b, ",\"old\":");
        rc = rc ? rc : json_put_cstr(b, c->old_value);
        rc = rc ? rc : sbuf_puts(b, ",\"new\":");
        rc = rc ? rc : json_put_cstr(b, c->new_value);
        rc = rc ? rc : sbuf_puts(b, ",\"created_at\":");
        rc = rc ? rc : json_put_i64(b, c->created_at);
        rc = rc ? rc : sbuf_putc(b, '}');
    }
    rc = rc ? rc : sbuf_puts(b, "]}");
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

/* ---- snapshot -------------------------------------------------------------------- */

int profile_snapshot_write(profile_store *ps, sbuf *out)
{
    pthread_rwlock_rdlock(&ps->lock);
    int rc = wire_put_u32(out, 1);
    rc = rc ? rc : wire_put_u32(out, (uint32_t)dict_size(ps->users));
    dict_iter it;
    dict_iter_init(&it, ps->users);
    const char *key;
    size_t klen;
    void *val;
    while (rc == STRATA_OK && dict_next(&it, &key, &klen, &val)) {
        user_profile *u = val;
        rc = wire_put_bytes(out, key, klen);
        rc = rc ? rc : wire_put_u32(out, u->n_attrs);
        for (uint32_t i = 0; rc == STRATA_OK && i < u->n_attrs; i++) {
            attr *a = &u->attrs[i];
            rc = wire_put_str(out, a->name);
            rc = rc ? rc : wire_put_str(out, a->value);
            rc = rc ? rc : wire_put_f64(out, a->confidence);
            rc = rc ? rc : wire_put_i64(out, a->valid_from);
            rc = rc ? rc : wire_put_i64(out, a->updated_at);
            rc = rc ? rc : wire_put_u32(out, a->n_sources);
            for (uint32_t k = 0; rc == STRATA_OK && k < a->n_sources; k++) {
                rc = wire_put_str(out, a->sources[k]);
            }
            rc = rc ? rc : wire_put_u32(out, a->n_history);
            for (uint32_t k = 0; rc == STRATA_OK && k < a->n_history; k++) {
                rc = wire_put_str(out, a->history[k].value);
                rc = rc ? rc : wire_put_f64(out, a->history[k].confidence);
                rc = rc ? rc : wire_put_i64(out, a->history[k].valid_from);
                rc = rc ? rc : wire_put_i64(out, a->history[k].valid_to);
            }
        }
        rc = rc ? rc : wire_put_u32(out, u->n_clarifs);
        for (uint32_t i = 0; rc == STRATA_OK && i < u->n_clarifs; i++) {
            clarif *c = &u->clarifs[i];
            rc = wire_put_u64(out, c->id);
            rc = rc ? rc : wire_put_str(out, c->attribute);
            rc = rc ? rc : wire_put_str(out, c->old_value);
            rc = rc ? rc : wire_put_str(out, c->new_value);
            rc = rc ? rc : wire_put_f64(out, c->confidence);
            rc = rc ? rc : wire_put_i64(out, c->created_at);
            rc = rc ? rc : wire_put_u8(out, c->status);
            rc = rc ? rc : wire_put_str(out, c->resolution);
        }
        rc = rc ? rc : wire_put_u32(out, u->n_pending);
        for (uint32_t i = 0; rc == STRATA_OK && i < u->n_pending; i++) {
            distill_entry *e = &u->pending[i];
            rc = wire_put_u64(out, e->memory_id);
            rc = rc ? rc : wire_put_str(out, e->entity);
            rc = rc ? rc : wire_put_str(out, e->kind);
            rc = rc ? rc : wire_put_u32(out, (uint32_t)(e->polarity + 1));
            rc = rc ? rc : wire_put_str(out, e->attribute);
            rc = rc ? rc : wire_put_str(out, e->value);
            rc = rc ? rc : wire_put_str(out, e->content);
            rc = rc ? rc : wire_put_f64(out, e->confidence);
            rc = rc ? rc : wire_put_f64(out, e->importance);
            rc = rc ? rc : wire_put_i64(out, e->ts);
        }
    }
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

/* Decode one user profile; NULL with r->err on malformed input. */
static user_profile *decode_user(wire_reader *r)
{
    user_profile *u = strata_calloc(1, sizeof(*u));
    if (u == NULL) {
        r->err = true;
        return NULL;
    }
    uint32_t n_attrs = wire_get_u32(r);
    if (r->err || n_attrs > PROFILE_MAX_ATTRS || n_attrs > (r->len - r->off) / 40) {
        goto bad;
    }
    u->attrs = n_attrs ? strata_calloc(n_attrs, sizeof(attr)) : NULL;
    if (n_attrs && u->attrs == NULL) {
        goto bad;
    }
    for (uint32_t i = 0; i < n_attrs; i++) {
        attr *a = &u->attrs[i];
        u->n_attrs = i + 1;
        a->name = wire_get_strdup(r);
        a->value = wire_get_strdup(r);
        a->confidence = wire_get_f64(r);
        a->valid_from = wire_get_i64(r);
        a->updated_at = wire_get_i64(r);
        uint32_t ns = wire_get_u32(r);
        if (r->err || a->name == NULL || a->value == NULL || ns > PROFILE_MAX_SOURCES) {
            goto bad;
        }
        a->sources = ns ? strata_calloc(ns, sizeof(char *)) : NULL;
        for (uint32_t k = 0; k < ns; k++) {
            if (a->sources == NULL || (a->sources[k] = wire_get_strdup(r)) == NULL) {
                goto bad;
            }
            a->n_sources = k + 1;
        }
        uint32_t nh = wire_get_u32(r);
        if (r->err || nh > PROFILE_MAX_HISTORY) {
            goto bad;
        }
        a->history = nh ? strata_calloc(nh, sizeof(hist_entry)) : NULL;
        for (uint32_t k = 0; k < nh; k++) {
            if (a->history == NULL) {
                goto bad;
            }
            hist_entry *h = &a->history[k];
            h->value = wire_get_strdup(r);
            h->confidence = wire_get_f64(r);
            h->valid_from = wire_get_i64(r);
            h->valid_to = wire_get_i64(r);
            a->n_history = k + 1;
            if (r->err || h->value == NULL) {
                goto bad;
            }
        }
    }
    uint32_t nc = wire_get_u32(r);
    if (r->err || nc > (r->len - r->off) / 30) {
        goto bad;
    }
    u->clarifs = nc ? strata_calloc(nc, sizeof(clarif)) : NULL;
    for (uint32_t i = 0; i < nc; i++) {
        if (u->clarifs == NULL) {
            goto bad;
        }
        clarif *c = &u->clarifs[i];
        u->n_clarifs = i + 1;
        c->id = wire_get_u64(r);
        c->attribute = wire_get_strdup(r);
        c->old_value = wire_get_strdup(r);
        c->new_value = wire_get_strdup(r);
        c->confidence = wire_get_f64(r);
        c->created_at = wire_get_i64(r);
        c->status = wire_get_u8(r);
        c->resolution = wire_get_strdup(r);
        if (r->err || !c->attribute || !c->old_value || !c->new_value || !c->resolution ||
            c->status > 1) {
            goto bad;
        }
    }
    uint32_t np = wire_get_u32(r);
    if (r->err || np > PROFILE_MAX_PENDING || np > (r->len - r->off) / 40) {
        goto bad;
    }
    u->pending = np ? strata_calloc(np, sizeof(distill_entry)) : NULL;
    for (uint32_t i = 0; i < np; i++) {
        if (u->pending == NULL) {
            goto bad;
        }
        distill_entry *e = &u->pending[i];
        u->n_pending = i + 1;
        e->memory_id = wire_get_u64(r);
        e->entity = wire_get_strdup(r);
        e->kind = wire_get_strdup(r);
        e->polarity = (int)wire_get_u32(r) - 1;
        e->attribute = wire_get_strdup(r);
        e->value = wire_get_strdup(r);
        e->content = wire_get_strdup(r);
        e->confidence = wire_get_f64(r);
        e->importance = wire_get_f64(r);
        e->ts = wire_get_i64(r);
        if (r->err || !e->entity || !e->kind || !e->attribute || !e->value || !e->content) {
            goto bad;
        }
    }
    return u;
bad:
    r->err = true;
    user_profile_free(u);
    return NULL;
}

int profile_snapshot_load(profile_store *ps, const void *data, size_t len)
{
    wire_reader r;
    wire_reader_init(&r, data, len);
    uint32_t version = wire_get_u32(&r);
    uint32_t n = wire_get_u32(&r);
    if (r.err || version != 1 || n > (len - r.off) / 8) {
        return strata_error(STRATA_ECORRUPT, "profile snapshot: bad header");
    }
    dict *users = dict_create(&profile_dict_type);
    if (users == NULL) {
        return STRATA_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t klen;
        const char *key = wire_get_bytes(&r, &klen);
        user_profile *u = key ? decode_user(&r) : NULL;
        if (u == NULL || klen == 0 || dict_set(users, key, klen, u) != STRATA_OK) {
            user_profile_free(u);
            dict_free(users);
            return strata_error(STRATA_ECORRUPT, "profile snapshot: bad user %u", i);
        }
    }
    if (!wire_done(&r)) {
        dict_free(users);
        return strata_error(STRATA_ECORRUPT, "profile snapshot: trailing bytes");
    }
    pthread_rwlock_wrlock(&ps->lock);
    dict *old = ps->users;
    ps->users = users;
    pthread_rwlock_unlock(&ps->lock);
    dict_free(old);
    return STRATA_OK;
}

int profile_forget(profile_store *ps, const char *tenant, const char *user, size_t *n_out)
{
    *n_out = 0;
    char key[2 * STRATA_ID_MAX + 4];
    size_t klen = user_key(key, sizeof(key), tenant, user);
    if (klen == 0) {
        return STRATA_OK;
    }
    pthread_rwlock_wrlock(&ps->lock);
    user_profile *u = dict_get(ps->users, key, klen);
    if (u != NULL) {
        *n_out = (size_t)u->n_attrs + u->n_clarifs + u->n_pending;
        dict_delete(ps->users, key, klen); /* frees every value, history and source */
    }
    pthread_rwlock_unlock(&ps->lock);
    return STRATA_OK;
}
