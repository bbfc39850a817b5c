/*
 * replay_stream.c - the event log's optional copy on a Redis Stream: XADD per
 * record with MINID trimming, and a batched XRANGE reader for rebuilds. The
 * entry layout and the ordering contract are in replay_stream.h.
 *
 *   replay_stream
 *   +-----------+
 *   | conn  ----+--> rcl (src/l1/redis_cluster.h): per-node pools of
 *   | key, slot |    hiredis contexts, slot routing, retries to a deadline
 *   | retention |
 *   +-----------+
 *
 * The handle holds no lock of its own: key, slot and retention are written
 * once at open and only read afterwards, and rcl is thread-safe, so
 * concurrent appenders share nothing but rcl's pools.
 *
 * Why XADD "*" and not an id derived from the LSN: Redis refuses an id not
 * greater than the stream's last one, and concurrent appenders reach Redis
 * out of LSN order, so LSN ids would turn ordinary races into errors. The LSN
 * travels as a field instead, and MINID keeps working on time because Redis
 * stamps ids with its clock.
 *
 * Why no retry of a sent XADD: after an I/O error the entry may already be
 * in the stream; resending could duplicate it. The caller decides (the LSN
 * field lets a reader drop duplicates).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/core.h"
#include "l1/redis_cluster.h"
#include "pipeline/replay_stream.h"

#define RS_TIMEOUT_MS_DEFAULT 2000
#define RS_POOL_DEFAULT 4
#define RS_KEY_MAX 512            /* bytes; a longer key is surely a mistake */
#define RS_APPEND_ARGC 18         /* XADD key MINID ~ id * + 6 field/value pairs */

struct replay_stream {
    rcl *conn;                    /* owned */
    char *key;                    /* owned, NUL-terminated copy of o->key */
    size_t key_len;
    int slot;                     /* the key's slot in a cluster; RCL_ANY_SLOT standalone */
    uint32_t retention_s;         /* 0: no MINID */
};

/* ---- options --------------------------------------------------------------- */

void replay_stream_options_init(replay_stream_options *o)
{
    memset(o, 0, sizeof(*o));
    o->key = REPLAY_STREAM_DEFAULT_KEY;
    o->retention_s = REPLAY_STREAM_DEFAULT_RETENTION_S;
    o->timeout_ms = RS_TIMEOUT_MS_DEFAULT;
    o->pool_size = RS_POOL_DEFAULT;
}

static int check_options(const replay_stream_options *o)
{
    if (o == NULL || o->addresses == NULL || o->n_addresses == 0) {
        return strata_error(STRATA_EINVAL, "replay stream: no Redis address");
    }
    if (o->n_addresses > 1 && !o->cluster) {
        return strata_error(STRATA_EINVAL, "replay stream: several addresses need cluster mode");
    }
    const char *key = o->key != NULL ? o->key : REPLAY_STREAM_DEFAULT_KEY;
    size_t key_len = strlen(key);
    if (key_len == 0 || key_len > RS_KEY_MAX) {
        return strata_error(STRATA_EINVAL, "replay stream: key length %zu not in 1..%d", key_len,
                            RS_KEY_MAX);
    }
    if (o->timeout_ms <= 0) {
        return strata_error(STRATA_EINVAL, "replay stream: timeout_ms must be > 0");
    }
    if (o->pool_size < 1 || o->pool_size > 64) {
        return strata_error(STRATA_EINVAL, "replay stream: pool_size %d not in 1..64",
                            o->pool_size);
    }
    return STRATA_OK;
}

/* Open rcl for o (checked by the caller). */
static int connect_rcl(const replay_stream_options *o, int pool_size, rcl **out)
{
    rcl_options ro = {
        .addrs = o->addresses,
        .n_addrs = o->n_addresses,
        .password = o->password,
        .db = 0,
        .connect_timeout_ms = o->timeout_ms,
        .command_timeout_ms = o->timeout_ms,
        .pool_size = pool_size,
        .cluster = o->cluster,
        .wait_replicas = 0,
        .wait_timeout_ms = 0,
        .tls = o->tls,
    };
    return rcl_open(&ro, out);
}

static int key_slot(const rcl *conn, const char *key, size_t key_len)
{
    return rcl_is_cluster(conn) ? rcl_keyslot(key, key_len) : RCL_ANY_SLOT;
}

/* A Redis error reply as a STRATA_E* code with the server's words. */
static int reply_error(const redisReply *rp, const char *what)
{
    if (rp->len >= 3 && memcmp(rp->str, "OOM", 3) == 0) {
        return strata_error(STRATA_EBUSY, "replay stream: %s: redis is out of memory: %.200s",
                            what, rp->str);
    }
    return strata_error(STRATA_EIO, "replay stream: %s: redis: %.300s", what, rp->str);
}

/* ---- open / close ---------------------------------------------------------- */

int replay_stream_open(const replay_stream_options *o, replay_stream **out)
{
    *out = NULL;
    int rc = check_options(o);
    if (rc != STRATA_OK) {
        return rc;
    }
    replay_stream *rs = strata_calloc(1, sizeof(*rs));
    if (rs == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory opening the replay stream");
    }
    rs->key = strata_strdup(o->key != NULL ? o->key : REPLAY_STREAM_DEFAULT_KEY);
    if (rs->key == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory opening the replay stream");
        goto fail;
    }
    rs->key_len = strlen(rs->key);
    rs->retention_s = o->retention_s;
    rc = connect_rcl(o, o->pool_size, &rs->conn);
    if (rc != STRATA_OK) {
        goto fail;
    }
    rs->slot = key_slot(rs->conn, rs->key, rs->key_len);
    *out = rs;
    return STRATA_OK;
fail:
    replay_stream_close(rs);
    return rc;
}

void replay_stream_close(replay_stream *rs)
{
    if (rs == NULL) {
        return;
    }
    rcl_close(rs->conn);
    strata_free(rs->key);
    strata_free(rs);
}

/* ---- append ------------------------------------------------------------------ */

int replay_stream_append(replay_stream *rs, const aol_record *rec)
{
    if (rec->tenant == NULL || rec->tenant_len == 0 || rec->tenant_len > AOL_MAX_TENANT) {
        return strata_error(STRATA_EINVAL, "replay stream: tenant length %zu not in 1..%d",
                            rec->tenant_len, AOL_MAX_TENANT);
    }
    if (rec->payload_len > AOL_MAX_PAYLOAD || (rec->payload == NULL && rec->payload_len > 0)) {
        return strata_error(STRATA_EINVAL, "replay stream: payload of %zu bytes",
                            rec->payload_len);
    }
    char minid[48];
    char lsn[24];
    char ts[24];
    char type[4];
    char flags[4];
    const char *argv[RS_APPEND_ARGC];
    size_t argvlen[RS_APPEND_ARGC];
    int argc = 0;
#define RS_ARG(p, n)              \
    do {                          \
        argv[argc] = (p);         \
        argvlen[argc] = (n);      \
        argc++;                   \
    } while (0)
#define RS_ARGZ(s) RS_ARG((s), strlen(s))

    RS_ARGZ("XADD");
    RS_ARG(rs->key, rs->key_len);
    if (rs->retention_s > 0) {
        int64_t threshold_ms = clock_now_ms() - (int64_t)rs->retention_s * 1000;
        if (threshold_ms > 0) {
            snprintf(minid, sizeof(minid), "%" PRId64 "-0", threshold_ms);
            RS_ARGZ("MINID");
            RS_ARGZ("~");
            RS_ARGZ(minid);
        }
    }
    RS_ARGZ("*");
    snprintf(lsn, sizeof(lsn), "%" PRIu64, rec->lsn);
    snprintf(ts, sizeof(ts), "%" PRId64, rec->ts_ms);
    snprintf(type, sizeof(type), "%u", (unsigned)rec->type);
    RS_ARGZ("lsn");
    RS_ARGZ(lsn);
    RS_ARGZ("ts");
    RS_ARGZ(ts);
    RS_ARGZ("type");
    RS_ARGZ(type);
    RS_ARGZ("tenant");
    RS_ARG(rec->tenant, rec->tenant_len);
    RS_ARGZ("payload");
    RS_ARG(rec->payload_len > 0 ? (const char *)rec->payload : "", rec->payload_len);
    if (rec->flags != 0) {
        snprintf(flags, sizeof(flags), "%u", (unsigned)rec->flags);
        RS_ARGZ("flags");
        RS_ARGZ(flags);
    }
#undef RS_ARGZ
#undef RS_ARG

    /* RCL_WRITE without wait_replicas costs nothing; not RCL_IDEMPOTENT, see
     * the file comment. */
    rcl_call call = {rs->slot, -1, RCL_WRITE, argc, argv, argvlen, NULL, -1};
    int rc = rcl_exec(rs->conn, &call);
    if (rc != STRATA_OK) {
        return rc;
    }
    const redisReply *rp = call.reply;
    if (rp->type == REDIS_REPLY_ERROR) {
        rc = reply_error(rp, "XADD");
    } else if (rp->type != REDIS_REPLY_STRING && rp->type != REDIS_REPLY_STATUS) {
        rc = strata_error(STRATA_EPROTO, "replay stream: unexpected reply to XADD");
    }
    freeReplyObject(call.reply);
    return rc;
}

/* ---- decoding ------------------------------------------------------------------ */

/* Strict decimal: digits only, no sign, no leading zero (except "0"), at most
 * max. */
static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (s == NULL || n == 0 || n > 20 || (n > 1 && s[0] == '0')) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Strict decimal int64: an optional '-' then parse_u64's form; "-0" refused. */
static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    if (s != NULL && n > 1 && s[0] == '-') {
        uint64_t v;
        if (!parse_u64(s + 1, n - 1, (uint64_t)INT64_MAX + 1, &v) || v == 0) {
            return false;
        }
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        return true;
    }
    uint64_t v;
    if (!parse_u64(s, n, (uint64_t)INT64_MAX, &v)) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static bool field_is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(name, want, n) == 0;
}

int replay_stream_decode(const char *id, const char *const *argv, const size_t *argvlen,
                         size_t n, aol_record *rec)
{
    enum { F_LSN = 1, F_TS = 2, F_TYPE = 4, F_TENANT = 8, F_PAYLOAD = 16, F_FLAGS = 32 };
    const unsigned required = F_LSN | F_TS | F_TYPE | F_TENANT | F_PAYLOAD;
    memset(rec, 0, sizeof(*rec));
    if (n % 2 != 0) {
        return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: odd field count %zu",
                            id, n);
    }
    unsigned seen = 0;
    for (size_t i = 0; i < n; i += 2) {
        const char *name = argv[i];
        size_t name_len = argvlen[i];
        const char *v = argv[i + 1];
        size_t v_len = argvlen[i + 1];
        unsigned bit = 0;
        bool ok = true;
        uint64_t u = 0;
        if (name == NULL || v == NULL) {
            return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: null field", id);
        }
        if (field_is(name, name_len, "lsn")) {
            bit = F_LSN;
            ok = parse_u64(v, v_len, UINT64_MAX, &rec->lsn) && rec->lsn > 0;
        } else if (field_is(name, name_len, "ts")) {
            bit = F_TS;
            ok = parse_i64(v, v_len, &rec->ts_ms);
        } else if (field_is(name, name_len, "type")) {
            bit = F_TYPE;
            ok = parse_u64(v, v_len, AOL_TYPE_MAX, &u) && u > 0;
            rec->type = (uint8_t)u;
        } else if (field_is(name, name_len, "tenant")) {
            bit = F_TENANT;
            ok = v_len >= 1 && v_len <= AOL_MAX_TENANT;
            rec->tenant = v;
            rec->tenant_len = v_len;
        } else if (field_is(name, name_len, "payload")) {
            bit = F_PAYLOAD;
            ok = v_len <= AOL_MAX_PAYLOAD;
            rec->payload = (const uint8_t *)v;
            rec->payload_len = v_len;
        } else if (field_is(name, name_len, "flags")) {
            bit = F_FLAGS;
            ok = parse_u64(v, v_len, 255, &u);
            rec->flags = (uint8_t)u;
        } else {
            continue; /* a field a later version added */
        }
        if (seen & bit) {
            return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: field %.*s twice",
                                id, (int)name_len, name);
        }
        seen |= bit;
        if (!ok) {
            return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: bad %.*s value",
                                id, (int)name_len, name);
        }
    }
    if ((seen & required) != required) {
        const char *missing = !(seen & F_LSN)      ? "lsn"
                              : !(seen & F_TS)     ? "ts"
                              : !(seen & F_TYPE)   ? "type"
                              : !(seen & F_TENANT) ? "tenant"
                                                   : "payload";
        return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: no %s field", id,
                            missing);
    }
    return STRATA_OK;
}

/* The smallest id after "<ms>-<seq>", for the next XRANGE's start (an
 * exclusive "(" start needs Redis 6.2; this works from 5.0). */
static bool next_id(const char *id, size_t n, char *out, size_t cap)
{
    const char *dash = memchr(id, '-', n);
    uint64_t ms;
    uint64_t seq;
    if (dash == NULL || !parse_u64(id, (size_t)(dash - id), UINT64_MAX, &ms) ||
        !parse_u64(dash + 1, n - (size_t)(dash - id) - 1, UINT64_MAX, &seq)) {
        return false;
    }
    if (seq == UINT64_MAX) {
        if (ms == UINT64_MAX) {
            return false; /* nothing can follow the largest id */
        }
        ms++;
        seq = 0;
    } else {
        seq++;
    }
    snprintf(out, cap, "%" PRIu64 "-%" PRIu64, ms, seq);
    return true;
}

/* ---- scan ------------------------------------------------------------------------ */

typedef struct rs_scratch {
    const char **argv;            /* owned, cap slots */
    size_t *argvlen;              /* owned, cap slots */
    size_t cap;
} rs_scratch;

static int scratch_reserve(rs_scratch *s, size_t n)
{
    if (n <= s->cap) {
        return STRATA_OK;
    }
    const char **argv = strata_realloc(s->argv, n * sizeof(*argv));
    if (argv == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory scanning the replay stream");
    }
    s->argv = argv;
    size_t *argvlen = strata_realloc(s->argvlen, n * sizeof(*argvlen));
    if (argvlen == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory scanning the replay stream");
    }
    s->argvlen = argvlen;
    s->cap = n;
    return STRATA_OK;
}

/* Decode and deliver one XRANGE batch; *last_id receives the id of its last
 * entry (for the next start). Returns cb's non-zero result, or an error. */
static int scan_batch(const redisReply *rp, rs_scratch *s, aol_replay_fn cb, void *ctx,
                      const redisReply **last_id)
{
    for (size_t i = 0; i < rp->elements; i++) {
        const redisReply *e = rp->element[i];
        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING) {
            return strata_error(STRATA_EPROTO, "replay stream: malformed XRANGE reply");
        }
        const redisReply *id = e->element[0];
        const redisReply *fields = e->element[1];
        if (fields->type != REDIS_REPLY_ARRAY) {
            return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: no fields",
                                id->str);
        }
        int rc = scratch_reserve(s, fields->elements);
        if (rc != STRATA_OK) {
            return rc;
        }
        for (size_t f = 0; f < fields->elements; f++) {
            const redisReply *fv = fields->element[f];
            if (fv->type != REDIS_REPLY_STRING) {
                return strata_error(STRATA_ECORRUPT, "replay stream entry %.64s: field %zu "
                                    "is not a string", id->str, f);
            }
            s->argv[f] = fv->str;
            s->argvlen[f] = fv->len;
        }
        aol_record rec;
        rc = replay_stream_decode(id->str, s->argv, s->argvlen, fields->elements, &rec);
        if (rc != STRATA_OK) {
            return rc;
        }
        rc = cb(ctx, &rec);
        if (rc != 0) {
            return rc;
        }
        *last_id = id;
    }
    return STRATA_OK;
}

int replay_stream_scan(const replay_stream_options *o, aol_replay_fn cb, void *ctx)
{
    int rc = check_options(o);
    if (rc != STRATA_OK) {
        return rc;
    }
    const char *key = o->key != NULL ? o->key : REPLAY_STREAM_DEFAULT_KEY;
    size_t key_len = strlen(key);
    rcl *conn = NULL;
    rs_scratch scratch = {0};
    char start[48] = "-";
    char count[16];
    snprintf(count, sizeof(count), "%d", REPLAY_STREAM_SCAN_BATCH);

    rc = connect_rcl(o, 1, &conn);
    if (rc != STRATA_OK) {
        goto done;
    }
    int slot = key_slot(conn, key, key_len);
    for (;;) {
        const char *argv[6] = {"XRANGE", key, start, "+", "COUNT", count};
        size_t argvlen[6] = {6, key_len, strlen(start), 1, 5, strlen(count)};
        rcl_call call = {slot, -1, RCL_IDEMPOTENT, 6, argv, argvlen, NULL, -1};
        rc = rcl_exec(conn, &call);
        if (rc != STRATA_OK) {
            break;
        }
        const redisReply *rp = call.reply;
        const redisReply *last = NULL;
        size_t n = 0;
        if (rp->type == REDIS_REPLY_ERROR) {
            rc = reply_error(rp, "XRANGE");
        } else if (rp->type != REDIS_REPLY_ARRAY) {
            rc = strata_error(STRATA_EPROTO, "replay stream: unexpected reply to XRANGE");
        } else {
            n = rp->elements;
            rc = scan_batch(rp, &scratch, cb, ctx, &last);
            if (rc == STRATA_OK && last != NULL &&
                !next_id(last->str, last->len, start, sizeof(start))) {
                rc = strata_error(STRATA_EPROTO, "replay stream: bad entry id %.64s", last->str);
            }
        }
        freeReplyObject(call.reply);
        /* A short batch is the end as of this read. */
        if (rc != STRATA_OK || n < (size_t)REPLAY_STREAM_SCAN_BATCH) {
            break;
        }
    }
done:
    strata_free(scratch.argv);
    strata_free(scratch.argvlen);
    rcl_close(conn);
    return rc;
}

/* ---- erasure ---------------------------------------------------------------------- */

int replay_stream_erase(replay_stream *rs, aol_erase_fn pick, void *ctx, uint64_t *erased)
{
    *erased = 0;
    rs_scratch scratch = {0};
    char start[48] = "-";
    char count[16];
    snprintf(count, sizeof(count), "%d", REPLAY_STREAM_SCAN_BATCH);
    const char **del = NULL;
    size_t *del_len = NULL;
    int rc = STRATA_OK;
    for (;;) {
        const char *argv[6] = {"XRANGE", rs->key, start, "+", "COUNT", count};
        size_t argvlen[6] = {6, rs->key_len, strlen(start), 1, 5, strlen(count)};
        rcl_call call = {rs->slot, -1, RCL_IDEMPOTENT, 6, argv, argvlen, NULL, -1};
        rc = rcl_exec(rs->conn, &call);
        if (rc != STRATA_OK) {
            break;
        }
        const redisReply *rp = call.reply;
        size_t n = rp->type == REDIS_REPLY_ARRAY ? rp->elements : 0;
        if (rp->type == REDIS_REPLY_ERROR) {
            rc = reply_error(rp, "XRANGE");
        } else if (rp->type != REDIS_REPLY_ARRAY) {
            rc = strata_error(STRATA_EPROTO, "replay stream: unexpected reply to XRANGE");
        }
        /* XDEL key id... for the entries picked in this batch. */
        size_t n_del = 2;
        if (rc == STRATA_OK && n > 0) {
            const char **nd = strata_realloc(del, (n + 2) * sizeof(*del));
            del = nd ? nd : del;
            size_t *nl = strata_realloc(del_len, (n + 2) * sizeof(*del_len));
            del_len = nl ? nl : del_len;
            if (nd == NULL || nl == NULL) {
                rc = strata_error(STRATA_ENOMEM, "out of memory erasing the replay stream");
            }
        }
        for (size_t i = 0; rc == STRATA_OK && i < n; i++) {
            const redisReply *e = rp->element[i];
            if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[1]->type != REDIS_REPLY_ARRAY) {
                rc = strata_error(STRATA_EPROTO, "replay stream: malformed XRANGE reply");
                break;
            }
            const redisReply *fields = e->element[1];
            rc = scratch_reserve(&scratch, fields->elements);
            for (size_t f = 0; rc == STRATA_OK && f < fields->elements; f++) {
                scratch.argv[f] = fields->element[f]->str;
                scratch.argvlen[f] = fields->element[f]->len;
                if (fields->element[f]->type != REDIS_REPLY_STRING) {
                    rc = STRATA_ECORRUPT;
                }
            }
            aol_record rec;
            /* A malformed entry is nobody's record: left alone, not fatal here. */
            if (rc == STRATA_OK &&
                replay_stream_decode(e->element[0]->str, scratch.argv, scratch.argvlen,
                                     fields->elements, &rec) == STRATA_OK &&
                pick(ctx, &rec)) {
                del[n_del] = e->element[0]->str;
                del_len[n_del] = e->element[0]->len;
                n_del++;
            }
            rc = rc == STRATA_ECORRUPT ? STRATA_OK : rc;
        }
        if (rc == STRATA_OK && n > 0 &&
            !next_id(rp->element[n - 1]->element[0]->str, rp->element[n - 1]->element[0]->len,
                     start, sizeof(start))) {
            rc = strata_error(STRATA_EPROTO, "replay stream: bad entry id");
        }
        if (rc == STRATA_OK && n_del > 2) {
            del[0] = "XDEL";
            del_len[0] = 4;
            del[1] = rs->key;
            del_len[1] = rs->key_len;
            rcl_call dc = {rs->slot, -1, RCL_WRITE | RCL_IDEMPOTENT, (int)n_del, del, del_len,
                           NULL, -1};
            rc = rcl_exec(rs->conn, &dc);
            if (rc == STRATA_OK && dc.reply->type == REDIS_REPLY_INTEGER) {
                *erased += (uint64_t)dc.reply->integer;
            } else if (rc == STRATA_OK) {
                rc = reply_error(dc.reply, "XDEL");
            }
            if (dc.reply != NULL) {
                freeReplyObject(dc.reply);
            }
        }
        freeReplyObject(call.reply);
        if (rc != STRATA_OK || n < (size_t)REPLAY_STREAM_SCAN_BATCH) {
            break;
        }
    }
    strata_free(del);
    strata_free(del_len);
    strata_free(scratch.argv);
    strata_free(scratch.argvlen);
    return rc;
}
