/*
 * pipeline_records.c - the log records of the memory pipeline and their
 * replay: profile decisions (set, clarify, resolve), the distillation queue,
 * distilled graph changes, and explicitly enqueued jobs.
 *
 *   AOL_JOB_ENQUEUE      str kind | str session | str user     (job id from the LSN)
 *   AOL_PROFILE_SET      str user | str attribute | str value | f64 confidence |
 *                        u32 n_src | n_src x str               (time: the record's);
 *                        a change also adds the attribute to user:{id}:dirty
 *   AOL_PROFILE_CLARIFY  str user | str attribute | str new value | f64 confidence
 *                        (clarification id: the record's LSN)
 *   AOL_PROFILE_RESOLVE  str user | u64 clarification id | str chosen value
 *   (a memory is queued for distillation by the trailer of its AOL_MEM_ADD)
 *   AOL_DISTILL_APPLY    str user | u64 memory id (0: none) | u32 n_ops | n_ops x op
 *     op 1 node put:     str id | str label | bytes properties
 *     op 2 edge put:     str from | str to | str type | bytes properties
 *     op 3 edge expire:  str from | str to | str type
 *     op 4 dirty clear:  (no fields)
 * One AOL_DISTILL_APPLY carries every graph change of one memory and removes
 * it from the queue in the same record, so a distillation is applied exactly
 * once even when its job runs again after a crash.
 */
#include <string.h>

#include "pipeline/pipeline.h"

#define MAX_DISTILL_OPS 64

static int apply_distill_ops(strata_db *db, const aol_record *rec, const char *tenant,
                             const char *user, wire_reader *r)
{
    uint32_t n_ops = wire_get_u32(r);
    if (r->err || n_ops > MAX_DISTILL_OPS) {
        return STRATA_ECORRUPT;
    }
    int rc = STRATA_OK;
    for (uint32_t i = 0; i < n_ops && rc == STRATA_OK; i++) {
        uint8_t op = wire_get_u8(r);
        char *a = NULL;
        char *b = NULL;
        char *c = NULL;
        json_t *props = NULL;
        if (op == 1 || op == 2) {
            a = wire_get_strdup(r);
            b = wire_get_strdup(r);
            c = op == 2 ? wire_get_strdup(r) : NULL;
            size_t plen;
            const char *ptext = wire_get_bytes(r, &plen);
            props = r->err ? NULL : json_loadb(ptext, plen, 0, NULL);
            if (r->err || a == NULL || b == NULL || (op == 2 && c == NULL) || props == NULL ||
                !json_is_object(props)) {
                rc = STRATA_ECORRUPT;
            } else if (op == 1) {
                rc = db->l3->ops->node_put(db->l3, tenant, a, b, props, rec->ts_ms, NULL);
            } else {
                rc = db->l3->ops->edge_put(db->l3, tenant, a, b, c, props, 0, rec->ts_ms, NULL);
            }
        } else if (op == 3) {
            a = wire_get_strdup(r);
            b = wire_get_strdup(r);
            c = wire_get_strdup(r);
            if (r->err || a == NULL || b == NULL || c == NULL) {
                rc = STRATA_ECORRUPT;
            } else {
                rc = db->l3->ops->edge_expire(db->l3, tenant, a, b, c, rec->ts_ms);
                if (rc == STRATA_ENOTFOUND) {
                    rc = STRATA_OK;
                }
            }
        } else if (op == 4) {
            rc = db->l1->ops->dirty_clear(db->l1, tenant, user);
        } else {
            rc = STRATA_ECORRUPT;
        }
        json_decref(props);
        strata_free(a);
        strata_free(b);
        strata_free(c);
    }
    return rc;
}

int db_apply_pipeline(strata_db *db, const aol_record *rec, const char *tenant, wire_reader *r)
{
    int rc = STRATA_OK;
    char *user = NULL;
    char *a = NULL;
    char *b = NULL;
    char *k = NULL;
    switch (rec->type) {
    case AOL_JOB_ENQUEUE: {
        k = wire_get_strdup(r);
        a = wire_get_strdup(r);
        user = wire_get_strdup(r);
        if (!wire_done(r) || k == NULL || a == NULL || user == NULL) {
            rc = STRATA_ECORRUPT;
        } else {
            rc = jobs_apply_enqueue(db->jobs, rec->lsn, k, rec->tenant, rec->tenant_len, a, user,
                                    NULL, 0, rec->ts_ms);
        }
        break;
    }
    case AOL_PROFILE_SET: {
        user = wire_get_strdup(r);
        a = wire_get_strdup(r);
        b = wire_get_strdup(r);
        double conf = wire_get_f64(r);
        uint32_t n_src = wire_get_u32(r);
        char *src[32];
        uint32_t got = 0;
        if (r->err || n_src > 32) {
            rc = STRATA_ECORRUPT;
        }
        for (; rc == STRATA_OK && got < n_src; got++) {
            src[got] = wire_get_strdup(r);
            if (src[got] == NULL) {
                rc = STRATA_ECORRUPT;
                break;
            }
        }
        if (rc == STRATA_OK && (!wire_done(r) || user == NULL || a == NULL || b == NULL)) {
            rc = STRATA_ECORRUPT;
        }
        bool changed = false;
        if (rc == STRATA_OK) {
            rc = profile_apply_set(db->profile, tenant, user, a, b, conf, rec->ts_ms / 1000,
                                   (const char *const *)src, n_src, &changed);
        }
        /* A change marks user:{id}:dirty in the same record, so a crash
         * cannot leave a changed profile that is never synced to L3. */
        if (rc == STRATA_OK && changed) {
            rc = db->l1->ops->dirty_add(db->l1, tenant, user, a);
        }
        for (uint32_t i = 0; i < got; i++) {
            strata_free(src[i]);
        }
        break;
    }
    case AOL_PROFILE_CLARIFY: {
        user = wire_get_strdup(r);
        a = wire_get_strdup(r);
        b = wire_get_strdup(r);
        double conf = wire_get_f64(r);
        if (!wire_done(r) || user == NULL || a == NULL || b == NULL) {
            rc = STRATA_ECORRUPT;
        } else {
            rc = profile_apply_clarify(db->profile, tenant, user, rec->lsn, a, b, conf,
                                       rec->ts_ms / 1000);
        }
        break;
    }
    case AOL_PROFILE_RESOLVE: {
        user = wire_get_strdup(r);
        uint64_t id = wire_get_u64(r);
        b = wire_get_strdup(r);
        if (!wire_done(r) || user == NULL || b == NULL) {
            rc = STRATA_ECORRUPT;
        } else {
            rc = profile_apply_resolve(db->profile, tenant, user, id, b, rec->ts_ms / 1000);
        }
        break;
    }
    case AOL_DISTILL_APPLY: {
        user = wire_get_strdup(r);
        uint64_t mem = wire_get_u64(r);
        if (r->err || user == NULL) {
            rc = STRATA_ECORRUPT;
            break;
        }
        rc = apply_distill_ops(db, rec, tenant, user, r);
        if (rc == STRATA_OK && !wire_done(r)) {
            rc = STRATA_ECORRUPT;
        }
        if (rc == STRATA_OK && mem != 0) {
            rc = profile_apply_pending_done(db->profile, tenant, user, mem);
        }
        break;
    }
    default:
        rc = STRATA_EINVAL;
    }
    strata_free(user);
    strata_free(a);
    strata_free(b);
    strata_free(k);
    return rc;
}
