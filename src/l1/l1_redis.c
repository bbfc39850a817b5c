/*
 * l1_redis.c - the L1 backend on Redis: sessions, turn buffers and dirty sets
 * kept in Redis (standalone or Cluster) under the brief's key names, so any
 * number of stateless Strata nodes share them. Connections, slot routing and
 * failover handling live in redis_cluster.c; this file maps each L1 op onto
 * one Lua script (atomic on one slot) plus, in cluster mode, one index update.
 *
 *   session op                      index (16 shards, chosen by slot & 15)
 *   +------------------------+      +----------------------------------+
 *   | session:{t:s}:state    |      | strata:idle:{k}      zset        |
 *   | session:{t:s}:buffer   | ---> | strata:buffered:{k}  hash        |
 *   +------------------------+      | strata:turns:{k}     string      |
 *     one script, one slot          | strata:dirty:{k}     set         |
 *                                   +----------------------------------+
 *
 * Standalone: the session script also updates the index (every key is on the
 * one server), so each op is one atomic script and one round trip.
 * Cluster: a script may only touch keys of one slot, so the index update is a
 * second script on the shard's slot (unless the shard happens to share the
 * session's slot). The session keys are the truth; the index is a hint, kept
 * right by three rules (docs/redis.md, "Index consistency"):
 *   1. index updates carry absolute values (score = last_active, buffered =
 *      LLEN), so replaying or reordering one is harmless and the next update
 *      of the session repairs any lost one;
 *   2. session_list_idle checks every candidate against its state hash and
 *      repairs (compare-and-set) a ghost or a stale score before listing it;
 *   3. l1_redis_reindex rebuilds the index from the session keys (for a
 *      session whose index write was lost and that is never touched again).
 *
 * Idempotence: every op can be resent after a lost connection. Appends carry
 * a token (this handle's random id + a counter) stored as last_op in the state
 * hash; a resent append that finds its own token returns the recorded result
 * instead of appending twice.
 *
 * Turn encoding (one list element; integers little-endian):
 *
 *   offset  size  field
 *   0       1     format version, 1
 *   1       1     role: 0 user, 1 assistant, 2 system
 *   2       8     ts, Unix seconds (i64)
 *   10      4     seq, 1-based turn number (u32), assigned by the script
 *   14      n     content, UTF-8 bytes (may hold NUL), to the element's end
 *
 * Locking: the store keeps no shared mutable state except atomic counters and
 * last_stats (stats_lock); everything else is immutable after open, so ops
 * run in parallel, limited only by each node's connection pool.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "l1/l1_redis.h"
#include "l1/redis_cluster.h"

/* ---- types ------------------------------------------------------------- */

#define L1R_SHARDS 16              /* index shards; a power of two */
#define L1R_MAX_ARGS 16            /* argv entries of any command we build */
#define L1R_KEY_STACK 640          /* keys of short ids are built on the stack */
#define L1R_PREFIX_MAX 256         /* key_prefix bytes */
#define L1R_IDLE_MAX (1u << 20)    /* sessions listed per session_list_idle call */
#define L1R_IDLE_ROUNDS 3          /* list, repair, list again: at most this often */
#define L1R_SCAN_COUNT "512"       /* SCAN/ZRANGE page size of reindex */
#define L1R_TURN_HEAD 14           /* encoded turn bytes before the content */
#define L1R_TURN_VERSION 1

enum {
    SC_APPEND,
    SC_GET,
    SC_TOUCH,
    SC_DELETE,
    SC_IDX,
    SC_IDX_CAS,
    SC_DIRTY_ADD,
    SC_DIRTY_CLEAR,
    SC_STATS,
    SC_COUNT
};

/* Index keys of one shard, all in the slot of "{k}". */
typedef struct l1r_shard {
    char *idle;                /* owned: zset member -> last_active */
    char *buffered;            /* owned: hash member -> turns buffered */
    char *turns;               /* owned: string, sum of buffered */
    char *dirty;               /* owned: set of tenant NUL user_id */
    size_t idle_len;
    size_t buffered_len;
    size_t turns_len;
    size_t dirty_len;
    int slot;
} l1r_shard;

typedef struct l1_redis {
    l1_store base;             /* must be first */
    rcl *conn;                 /* owned */
    bool cluster;
    uint32_t buffer_max;       /* N */
    char n_str[12];            /* N in decimal, a script argument */
    int wait_replicas;
    char *prefix;              /* owned, "" when none */
    size_t prefix_len;
    char op_base[17];          /* hex id of this handle: append tokens */
    atomic_uint_fast64_t op_seq;
    char sha[SC_COUNT][41];    /* SHA1 hex of each script */
    l1r_shard shards[L1R_SHARDS];
    pthread_mutex_t stats_lock;        /* protects last_stats */
    l1_stats last_stats;               /* answer of the last successful stats */
    _Atomic uint64_t index_errors;
    _Atomic uint64_t index_repairs;
} l1_redis;

/* A command being built. Pointers are borrowed until it has run. */
typedef struct rcmd {
    int argc;
    const char *argv[L1R_MAX_ARGS];
    size_t argvlen[L1R_MAX_ARGS];
    char numkeys[4];
} rcmd;

/* A session's (or a user's) keys and index member, on the stack when short. */
typedef struct skeys {
    char *k1;                  /* session: state; user: dirty */
    size_t k1_len;
    char *k2;                  /* session: buffer; user: unused */
    size_t k2_len;
    char *member;              /* tenant NUL id */
    size_t member_len;
    int slot;                  /* hash slot of k1 (and k2) */
    int shard;                 /* slot & (L1R_SHARDS - 1) */
    char *heap;                /* owned when the keys did not fit the stack */
    char stack[L1R_KEY_STACK];
} skeys;

/* ---- Lua scripts ----------------------------------------------------------- */
/*
 * Every script that changes a session may also get the shard's index keys as
 * KEYS[3..5] (standalone, or the shard shares the session's slot); #KEYS
 * tells. Numbers are written as decimal strings by Redis; ts arrives as text
 * and is stored as given.
 */
#define LUA_IDX_FUNCS                                                        \
    "local function idx_set(z, h, t, m, score, len)\n"                       \
    "  local ch = redis.call('ZADD', z, 'CH', score, m)\n"                   \
    "  local old = tonumber(redis.call('HGET', h, m) or '0')\n"              \
    "  if old ~= len then\n"                                                 \
    "    redis.call('HSET', h, m, len)\n"                                    \
    "    redis.call('INCRBY', t, len - old)\n"                               \
    "    ch = 1\n"                                                           \
    "  end\n"                                                                \
    "  return ch\n"                                                          \
    "end\n"                                                                  \
    "local function idx_del(z, h, t, m)\n"                                   \
    "  local ch = redis.call('ZREM', z, m)\n"                                \
    "  local old = redis.call('HGET', h, m)\n"                               \
    "  if old then\n"                                                        \
    "    redis.call('HDEL', h, m)\n"                                         \
    "    redis.call('INCRBY', t, -tonumber(old))\n"                          \
    "    ch = 1\n"                                                           \
    "  end\n"                                                                \
    "  return ch\n"                                                          \
    "end\n"

/* KEYS state, buffer [, idle, buffered, turns]
 * ARGV user, ts, head (version, role, ts: 10 bytes), content, N, token, member
 * -> {turn_count, buffered} | {-1, 0} owner conflict | {-2, 0} turn_count full.
 * Reads first, then the buffer, then the hash: a WRONGTYPE error (someone
 * else's key) aborts before anything is written. */
static const char LUA_APPEND[] =
    LUA_IDX_FUNCS
    "local st = redis.call('HMGET', KEYS[1], 'user_id', 'turn_count', 'last_op')\n"
    "if st[1] and st[1] ~= ARGV[1] then return {-1, 0} end\n"
    "local n = tonumber(ARGV[5])\n"
    "local c, len\n"
    "if st[1] and st[3] == ARGV[6] then\n"
    "  c = tonumber(st[2])\n"
    "  len = redis.call('LLEN', KEYS[2])\n"
    "else\n"
    "  c = tonumber(st[2] or '0')\n"
    "  if c >= 4294967295 then return {-2, 0} end\n"
    "  c = c + 1\n"
    "  if n > 0 then\n"
    "    len = redis.call('RPUSH', KEYS[2], ARGV[3] .. struct.pack('<I4', c) .. ARGV[4])\n"
    "    if len > n then\n"
    "      redis.call('LTRIM', KEYS[2], -n, -1)\n"
    "      len = n\n"
    "    end\n"
    "  else\n"
    "    redis.call('DEL', KEYS[2])\n"
    "    len = 0\n"
    "  end\n"
    "  if not st[1] then\n"
    "    redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'current_stage', '')\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], 'turn_count', c, 'last_active', ARGV[2], 'ended', '0',\n"
    "             'last_op', ARGV[6])\n"
    "end\n"
    "if #KEYS == 5 then idx_set(KEYS[3], KEYS[4], KEYS[5], ARGV[7], ARGV[2], len) end\n"
    "return {c, len}\n";

/* KEYS state, buffer; ARGV N -> {HGETALL, newest N turns}; one atomic read. */
static const char LUA_GET[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "local n = tonumber(ARGV[1])\n"
    "if #h == 0 or n == 0 then return {h, {}} end\n"
    "return {h, redis.call('LRANGE', KEYS[2], -n, -1)}\n";

/* KEYS state, buffer [, idx...]; ARGV field, value, ts, member
 * -> buffered turns, or -1 when the session does not exist. */
static const char LUA_TOUCH[] =
    LUA_IDX_FUNCS
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'last_active', ARGV[3])\n"
    "local len = redis.call('LLEN', KEYS[2])\n"
    "if #KEYS == 5 then idx_set(KEYS[3], KEYS[4], KEYS[5], ARGV[4], ARGV[3], len) end\n"
    "return len\n";

/* KEYS state, buffer [, idx...]; ARGV member -> 1 deleted, 0 not found. The
 * index entry goes either way (it may be a ghost). */
static const char LUA_DELETE[] =
    LUA_IDX_FUNCS
    "local found = redis.call('EXISTS', KEYS[1])\n"
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "if #KEYS == 5 then idx_del(KEYS[3], KEYS[4], KEYS[5], ARGV[1]) end\n"
    "return found\n";

/* Cluster index step. KEYS idle, buffered, turns; ARGV 'set'|'del', member,
 * score, buffered -> 1 if the index changed. */
static const char LUA_IDX[] =
    LUA_IDX_FUNCS
    "if ARGV[1] == 'set' then\n"
    "  return idx_set(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], tonumber(ARGV[4]))\n"
    "end\n"
    "return idx_del(KEYS[1], KEYS[2], KEYS[3], ARGV[2])\n";

/* Repair. KEYS idle, buffered, turns; ARGV member, expected score ('' =
 * expected absent), 'set'|'del', score, buffered -> 1 applied, 0 the entry
 * changed meanwhile (someone else's update is newer: leave it). */
static const char LUA_IDX_CAS[] =
    LUA_IDX_FUNCS
    "local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if ARGV[2] == '' then\n"
    "  if cur then return 0 end\n"
    "elseif not cur or tonumber(cur) ~= tonumber(ARGV[2]) then\n"
    "  return 0\n"
    "end\n"
    "if ARGV[3] == 'set' then\n"
    "  idx_set(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[4], tonumber(ARGV[5]))\n"
    "else\n"
    "  idx_del(KEYS[1], KEYS[2], KEYS[3], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS dirty [, dirty index]; ARGV attr, member. */
static const char LUA_DIRTY_ADD[] =
    "redis.call('SADD', KEYS[1], ARGV[1])\n"
    "if #KEYS == 2 then redis.call('SADD', KEYS[2], ARGV[2]) end\n"
    "return 1\n";

/* KEYS dirty [, dirty index]; ARGV member. */
static const char LUA_DIRTY_CLEAR[] =
    "redis.call('DEL', KEYS[1])\n"
    "if #KEYS == 2 then redis.call('SREM', KEYS[2], ARGV[1]) end\n"
    "return 1\n";

/* KEYS idle, turns, dirty index -> {sessions, turns buffered, dirty users},
 * read atomically so a shard's counts agree with each other. */
static const char LUA_STATS[] =
    "return {redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'),\n"
    "        redis.call('SCARD', KEYS[3])}\n";

static const char *const g_scripts[SC_COUNT] = {
    [SC_APPEND] = LUA_APPEND,         [SC_GET] = LUA_GET,
    [SC_TOUCH] = LUA_TOUCH,           [SC_DELETE] = LUA_DELETE,
    [SC_IDX] = LUA_IDX,               [SC_IDX_CAS] = LUA_IDX_CAS,
    [SC_DIRTY_ADD] = LUA_DIRTY_ADD,   [SC_DIRTY_CLEAR] = LUA_DIRTY_CLEAR,
    [SC_STATS] = LUA_STATS,
};

/* ---- small helpers ----------------------------------------------------- */

static void rcmd_add(rcmd *c, const void *p, size_t n)
{
    assert(c->argc < L1R_MAX_ARGS);
    c->argv[c->argc] = p;
    c->argvlen[c->argc] = n;
    c->argc++;
}

static void rcmd_addz(rcmd *c, const char *s)
{
    rcmd_add(c, s, strlen(s));
}

/* Start "EVALSHA <sha> <nkeys>"; keys and args follow. */
static void rcmd_script(rcmd *c, const l1_redis *r, int sc, int nkeys)
{
    c->argc = 0;
    snprintf(c->numkeys, sizeof(c->numkeys), "%d", nkeys);
    rcmd_addz(c, "EVALSHA");
    rcmd_add(c, r->sha[sc], 40);
    rcmd_addz(c, c->numkeys);
}

static void rcmd_shard_keys(rcmd *c, const l1r_shard *sh)
{
    rcmd_add(c, sh->idle, sh->idle_len);
    rcmd_add(c, sh->buffered, sh->buffered_len);
    rcmd_add(c, sh->turns, sh->turns_len);
}

static bool reply_err_is(const redisReply *rp, const char *prefix)
{
    size_t n = strlen(prefix);
    return rp->type == REDIS_REPLY_ERROR && rp->len >= n && memcmp(rp->str, prefix, n) == 0;
}

/* A Redis error reply as a STRATA_E* code with the server's words. */
static int reply_error(const redisReply *rp)
{
    if (reply_err_is(rp, "OOM")) {
        return strata_error(STRATA_EBUSY, "redis is out of memory (maxmemory): %.200s", rp->str);
    }
    return strata_error(STRATA_EIO, "redis: %.300s", rp->str);
}

static int bad_reply(const char *what)
{
    return strata_error(STRATA_EPROTO, "redis: unexpected reply to %s", what);
}

/* Strict decimal int64 (optional '-'). */
static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    if (s == NULL || n == 0 || n > 20) {
        return false;
    }
    char buf[24];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    long long v = strtoll(buf, &end, 10);
    if (end != buf + n || (buf[0] != '-' && (buf[0] < '0' || buf[0] > '9'))) {
        return false;
    }
    *out = v;
    return true;
}

/* A zset score as Redis prints it ("100", "1e+17") -> whole seconds. */
static bool parse_score(const char *s, size_t n, int64_t *out)
{
    if (s == NULL || n == 0 || n > 40) {
        return false;
    }
    char buf[48];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    double d = strtod(buf, &end);
    if (end != buf + n || !isfinite(d) || d < -9.2e18 || d > 9.2e18) {
        return false;
    }
    *out = (int64_t)llround(d);
    return true;
}

/* ---- keys ---------------------------------------------------------------- */

/* Copy s to out escaping '%', '{', '}' (and ':' when colon) as %XX; returns
 * bytes written (at most 3n). */
static size_t esc_put(char *out, const char *s, size_t n, bool colon)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%' || ch == '{' || ch == '}' || (colon && ch == ':')) {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    return o;
}

/* Undo esc_put: decode s[0..n) into out (n bytes at most); false on a
 * malformed escape. */
static bool esc_get(char *out, size_t *out_len, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n) {
            return false;
        }
        int v = 0;
        for (int j = 1; j <= 2; j++) {
            char h = s[i + j];
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) {
                return false;
            }
            v = v * 16 + d;
        }
        out[o++] = (char)v;
        i += 2;
    }
    *out_len = o;
    return true;
}

static void skeys_release(skeys *k)
{
    strata_free(k->heap);
    k->heap = NULL;
}

/* Build a session's keys (session = true: state and buffer) or a user's
 * dirty key, and the index member "tenant NUL id". STRATA_ENOMEM for a key
 * too long for the stack that cannot be allocated. */
static int skeys_make_n(const l1_redis *r, skeys *k, bool session, const char *tenant,
                        size_t tl, const char *id, size_t il)
{
    const char *kind = session ? "session:{" : "user:{";
    size_t kind_len = strlen(kind);
    size_t base_max = r->prefix_len + kind_len + 3 * tl + 1 + 3 * il + 1;
    size_t need = 2 * (base_max + sizeof(":buffer")) + tl + 1 + il + 1;
    k->heap = NULL;
    char *p = k->stack;
    if (need > sizeof(k->stack)) {
        k->heap = strata_malloc(need);
        if (k->heap == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory building a Redis key");
        }
        p = k->heap;
    }
    size_t n = 0;
    memcpy(p, r->prefix, r->prefix_len);
    n += r->prefix_len;
    memcpy(p + n, kind, kind_len);
    n += kind_len;
    n += esc_put(p + n, tenant, tl, true);
    p[n++] = ':';
    n += esc_put(p + n, id, il, false);
    p[n++] = '}';
    size_t base = n;
    const char *suffix = session ? ":state" : ":dirty";
    memcpy(p + n, suffix, 6);
    n += 6;
    k->k1 = p;
    k->k1_len = n;
    p[n++] = '\0';
    k->k2 = NULL;
    k->k2_len = 0;
    if (session) {
        k->k2 = p + n;
        memcpy(p + n, p, base);
        memcpy(p + n + base, ":buffer", 7);
        k->k2_len = base + 7;
        n += k->k2_len;
        p[n++] = '\0';
    }
    k->member = p + n;
    memcpy(p + n, tenant, tl);
    p[n + tl] = '\0';
    memcpy(p + n + tl + 1, id, il);
    k->member_len = tl + 1 + il;
    k->slot = rcl_keyslot(k->k1, k->k1_len);
    k->shard = k->slot & (L1R_SHARDS - 1);
    return STRATA_OK;
}

static int skeys_make(const l1_redis *r, skeys *k, bool session, const char *tenant,
                      const char *id)
{
    k->heap = NULL;
    if (tenant == NULL || id == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing tenant or id");
    }
    return skeys_make_n(r, k, session, tenant, strlen(tenant), id, strlen(id));
}

/* May the session (or user) script also update shard sh's index keys? */
static bool combined(const l1_redis *r, const skeys *k)
{
    return !r->cluster || r->shards[k->shard].slot == k->slot;
}

static int call_slot(const l1_redis *r, int slot)
{
    return r->cluster ? slot : RCL_ANY_SLOT;
}

/* ---- running scripts ------------------------------------------------------- */

/* Run the script started in cmd (rcmd_script) on slot; EVAL it when the node
 * does not have it cached (NOSCRIPT: a new node, a restart, a failover). A
 * Redis error reply becomes a STRATA_E* code. On STRATA_OK call->reply is a
 * non-error reply the caller frees. *short_ack (may be NULL) is set when a
 * write was applied but fewer than wait_replicas replicas acknowledged it. */
static int script_exec(l1_redis *r, int sc, rcmd *cmd, int slot, unsigned flags,
                       rcl_call *call, bool *short_ack)
{
    *call = (rcl_call){call_slot(r, slot), -1, flags, cmd->argc, cmd->argv, cmd->argvlen,
                       NULL, -1};
    int rc = rcl_exec(r->conn, call);
    if (rc == STRATA_OK && reply_err_is(call->reply, "NOSCRIPT")) {
        freeReplyObject(call->reply);
        cmd->argv[0] = "EVAL";
        cmd->argvlen[0] = 4;
        cmd->argv[1] = g_scripts[sc];
        cmd->argvlen[1] = strlen(g_scripts[sc]);
        call->argv = cmd->argv;
        call->argvlen = cmd->argvlen;
        rc = rcl_exec(r->conn, call);
    }
    if (rc != STRATA_OK) {
        return rc;
    }
    if (call->reply->type == REDIS_REPLY_ERROR) {
        rc = reply_error(call->reply);
        freeReplyObject(call->reply);
        call->reply = NULL;
        return rc;
    }
    if (short_ack != NULL) {
        *short_ack = (flags & RCL_WRITE) && r->wait_replicas > 0 &&
                     call->replicas_acked < r->wait_replicas;
    }
    return STRATA_OK;
}

static int short_ack_error(const l1_redis *r, int acked)
{
    return strata_error(STRATA_ETIMEDOUT,
                        "redis: write applied but %d of %d replicas acknowledged it", acked,
                        r->wait_replicas);
}

/* Cluster index step for a session: set (score ts, buffered) or delete.
 * Failure is logged and counted, not returned: the session write it follows
 * has happened, and the index heals (file comment). */
static void index_update(l1_redis *r, const skeys *k, bool set, const char *ts, long long len)
{
    const l1r_shard *sh = &r->shards[k->shard];
    char len_str[24];
    rcmd cmd;
    rcl_call call;
    snprintf(len_str, sizeof(len_str), "%lld", len);
    rcmd_script(&cmd, r, SC_IDX, 3);
    rcmd_shard_keys(&cmd, sh);
    rcmd_addz(&cmd, set ? "set" : "del");
    rcmd_add(&cmd, k->member, k->member_len);
    rcmd_addz(&cmd, set ? ts : "0");
    rcmd_addz(&cmd, len_str);
    int rc = script_exec(r, SC_IDX, &cmd, sh->slot, RCL_WRITE | RCL_IDEMPOTENT, &call, NULL);
    if (rc != STRATA_OK) {
        atomic_fetch_add(&r->index_errors, 1);
        slog(SLOG_WARN, "l1 redis: index update for %s failed: %s", k->k1, strata_errmsg());
        return;
    }
    freeReplyObject(call.reply);
}

/* ---- session operations ---------------------------------------------------- */

static int r_turn_append(l1_store *st, const l1_turn_in *in, l1_turn_out *out)
{
    l1_redis *r = (l1_redis *)st;
    skeys k;
    rcmd cmd;
    rcl_call call;
    bool short_ack = false;
    if (out != NULL) {
        out->turn_count = 0;
    }
    if (in->user_id == NULL || (in->content == NULL && in->content_len > 0) ||
        (unsigned)in->role > STRATA_ROLE_SYSTEM) {
        return strata_error(STRATA_EINVAL, "L1: bad turn");
    }
    int rc = skeys_make(r, &k, true, in->tenant, in->session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    char ts[24];
    char token[48];
    unsigned char head[10];
    snprintf(ts, sizeof(ts), "%lld", (long long)in->ts);
    snprintf(token, sizeof(token), "%s:%llu", r->op_base,
             (unsigned long long)atomic_fetch_add(&r->op_seq, 1));
    head[0] = L1R_TURN_VERSION;
    head[1] = (unsigned char)in->role;
    wire_le64(head + 2, (uint64_t)in->ts);
    bool both = combined(r, &k);
    rcmd_script(&cmd, r, SC_APPEND, both ? 5 : 2);
    rcmd_add(&cmd, k.k1, k.k1_len);
    rcmd_add(&cmd, k.k2, k.k2_len);
    if (both) {
        rcmd_shard_keys(&cmd, &r->shards[k.shard]);
    }
    rcmd_addz(&cmd, in->user_id);
    rcmd_addz(&cmd, ts);
    rcmd_add(&cmd, head, sizeof(head));
    rcmd_add(&cmd, in->content_len > 0 ? in->content : "", in->content_len);
    rcmd_addz(&cmd, r->n_str);
    rcmd_addz(&cmd, token);
    rcmd_add(&cmd, k.member, k.member_len);
    rc = script_exec(r, SC_APPEND, &cmd, k.slot, RCL_WRITE | RCL_IDEMPOTENT, &call, &short_ack);
    if (rc != STRATA_OK) {
        goto done;
    }
    const redisReply *rp = call.reply;
    if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
        rp->element[0]->type != REDIS_REPLY_INTEGER ||
        rp->element[1]->type != REDIS_REPLY_INTEGER) {
        rc = bad_reply("a turn append");
    } else if (rp->element[0]->integer == -1) {
        rc = strata_error(STRATA_ECONFLICT, "session %s belongs to another user",
                          in->session_id);
    } else if (rp->element[0]->integer == -2) {
        rc = strata_error(STRATA_ETOOBIG, "session %s has too many turns", in->session_id);
    } else if (rp->element[0]->integer < 1 || rp->element[0]->integer > UINT32_MAX) {
        rc = bad_reply("a turn append");
    } else {
        if (!both) {
            index_update(r, &k, true, ts, rp->element[1]->integer);
        }
        if (short_ack) {
            rc = short_ack_error(r, call.replicas_acked);
        } else if (out != NULL) {
            out->turn_count = (uint32_t)rp->element[0]->integer;
        }
    }
    freeReplyObject(call.reply);
done:
    skeys_release(&k);
    return rc;
}

static int r_turn_check(l1_store *st, const char *tenant, const char *session_id,
                        const char *user_id, uint32_t *turn_count_out)
{
    l1_redis *r = (l1_redis *)st;
    skeys k;
    if (turn_count_out != NULL) {
        *turn_count_out = 0;
    }
    if (user_id == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing user id");
    }
    int rc = skeys_make(r, &k, true, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    rcmd cmd = {0};
    rcmd_addz(&cmd, "HMGET");
    rcmd_add(&cmd, k.k1, k.k1_len);
    rcmd_addz(&cmd, "user_id");
    rcmd_addz(&cmd, "turn_count");
    rcl_call call = {call_slot(r, k.slot), -1, RCL_IDEMPOTENT, cmd.argc, cmd.argv, cmd.argvlen,
                     NULL, -1};
    rc = rcl_exec(r->conn, &call);
    if (rc != STRATA_OK) {
        goto done;
    }
    const redisReply *rp = call.reply;
    if (rp->type == REDIS_REPLY_ERROR) {
        rc = reply_error(rp);
    } else if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 2) {
        rc = bad_reply("HMGET");
    } else if (rp->element[0]->type == REDIS_REPLY_STRING) {
        int64_t tc = 0;
        if (rp->element[0]->len != strlen(user_id) ||
            memcmp(rp->element[0]->str, user_id, rp->element[0]->len) != 0) {
            rc = strata_error(STRATA_ECONFLICT, "session %s belongs to another user",
                              session_id);
        } else if (rp->element[1]->type == REDIS_REPLY_STRING &&
                   parse_i64(rp->element[1]->str, rp->element[1]->len, &tc) &&
                   tc >= (int64_t)UINT32_MAX) {
            rc = strata_error(STRATA_ETOOBIG, "session %s has too many turns", session_id);
        } else if (turn_count_out != NULL && tc > 0) {
            *turn_count_out = (uint32_t)tc;
        }
    }
    freeReplyObject(call.reply);
done:
    skeys_release(&k);
    return rc;
}

/* Decode one list element into t (content copied, NUL-terminated). */
static int turn_decode(const redisReply *e, strata_turn *t)
{
    const unsigned char *p = (const unsigned char *)e->str;
    if (e->type != REDIS_REPLY_STRING || e->len < L1R_TURN_HEAD ||
        p[0] != L1R_TURN_VERSION || p[1] > STRATA_ROLE_SYSTEM) {
        return strata_error(STRATA_ECORRUPT, "redis: malformed turn in a session buffer");
    }
    t->role = (strata_role)p[1];
    t->ts = (int64_t)wire_rd64(p + 2);
    t->seq = wire_rd32(p + 10);
    t->content_len = e->len - L1R_TURN_HEAD;
    t->content = strata_memdup(e->str + L1R_TURN_HEAD, t->content_len + 1);
    if (t->content == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory copying a session");
    }
    t->content[t->content_len] = '\0';
    return STRATA_OK;
}

static bool field_is(const redisReply *f, const char *name)
{
    size_t n = strlen(name);
    return f->len == n && memcmp(f->str, name, n) == 0;
}

/* Fill c from HGETALL's field/value pairs h. */
static int state_decode(const redisReply *h, strata_session *c)
{
    int64_t v = 0;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i];
        const redisReply *val = h->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) {
            return bad_reply("HGETALL");
        }
        char **dst = NULL;
        if (field_is(f, "user_id")) {
            dst = &c->user_id;
        } else if (field_is(f, "current_stage")) {
            dst = &c->current_stage;
        } else if (field_is(f, "turn_count")) {
            if (!parse_i64(val->str, val->len, &v) || v < 0 || v > UINT32_MAX) {
                return strata_error(STRATA_ECORRUPT, "redis: bad turn_count");
            }
            c->turn_count = (uint32_t)v;
        } else if (field_is(f, "last_active")) {
            if (!parse_i64(val->str, val->len, &v)) {
                return strata_error(STRATA_ECORRUPT, "redis: bad last_active");
            }
            c->last_active = v;
        } else if (field_is(f, "ended")) {
            c->ended = val->len == 1 && val->str[0] == '1';
        }
        if (dst != NULL) {
            strata_free(*dst);
            *dst = strata_strndup(val->str, val->len);
            if (*dst == NULL) {
                return strata_error(STRATA_ENOMEM, "out of memory copying a session");
            }
        }
    }
    if (c->user_id == NULL) {
        c->user_id = strata_strdup("");
    }
    if (c->current_stage == NULL) {
        c->current_stage = strata_strdup("");
    }
    if (c->user_id == NULL || c->current_stage == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory copying a session");
    }
    return STRATA_OK;
}

static int r_session_get(l1_store *st, const char *tenant, const char *session_id,
                         strata_session **out)
{
    l1_redis *r = (l1_redis *)st;
    skeys k;
    rcmd cmd;
    rcl_call call = {0};
    strata_session *c = NULL;
    *out = NULL;
    int rc = skeys_make(r, &k, true, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    rcmd_script(&cmd, r, SC_GET, 2);
    rcmd_add(&cmd, k.k1, k.k1_len);
    rcmd_add(&cmd, k.k2, k.k2_len);
    rcmd_addz(&cmd, r->n_str);
    rc = script_exec(r, SC_GET, &cmd, k.slot, RCL_IDEMPOTENT, &call, NULL);
    if (rc != STRATA_OK) {
        goto done;
    }
    const redisReply *rp = call.reply;
    if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
        rp->element[0]->type != REDIS_REPLY_ARRAY || rp->element[1]->type != REDIS_REPLY_ARRAY) {
        rc = bad_reply("a session read");
        goto done;
    }
    const redisReply *h = rp->element[0];
    const redisReply *b = rp->element[1];
    if (h->elements == 0) {
        rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
        goto done;
    }
    c = strata_calloc(1, sizeof(*c));
    if (c != NULL) {
        c->session_id = strata_strdup(session_id);
    }
    if (c == NULL || c->session_id == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory copying a session");
        goto done;
    }
    rc = state_decode(h, c);
    if (rc != STRATA_OK) {
        goto done;
    }
    if (b->elements > 0) {
        c->turns = strata_calloc(b->elements, sizeof(*c->turns));
        if (c->turns == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory copying a session");
            goto done;
        }
        for (size_t i = 0; i < b->elements; i++) {
            rc = turn_decode(b->element[i], &c->turns[i]);
            if (rc != STRATA_OK) {
                goto done;
            }
            c->n_turns = i + 1; /* strata_session_free sees exactly the filled ones */
        }
    }
    *out = c;
    c = NULL;
done:
    strata_session_free(c);
    if (call.reply != NULL) {
        freeReplyObject(call.reply);
    }
    skeys_release(&k);
    return rc;
}

/* Set one state field and last_active = ts (set_stage, end). */
static int r_touch(l1_redis *r, const char *tenant, const char *session_id, const char *field,
                   const char *value, int64_t ts)
{
    skeys k;
    rcmd cmd;
    rcl_call call;
    bool short_ack = false;
    int rc = skeys_make(r, &k, true, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    char ts_str[24];
    snprintf(ts_str, sizeof(ts_str), "%lld", (long long)ts);
    bool both = combined(r, &k);
    rcmd_script(&cmd, r, SC_TOUCH, both ? 5 : 2);
    rcmd_add(&cmd, k.k1, k.k1_len);
    rcmd_add(&cmd, k.k2, k.k2_len);
    if (both) {
        rcmd_shard_keys(&cmd, &r->shards[k.shard]);
    }
    rcmd_addz(&cmd, field);
    rcmd_addz(&cmd, value);
    rcmd_addz(&cmd, ts_str);
    rcmd_add(&cmd, k.member, k.member_len);
    rc = script_exec(r, SC_TOUCH, &cmd, k.slot, RCL_WRITE | RCL_IDEMPOTENT, &call, &short_ack);
    if (rc != STRATA_OK) {
        goto done;
    }
    if (call.reply->type != REDIS_REPLY_INTEGER) {
        rc = bad_reply("a session update");
    } else if (call.reply->integer < 0) {
        rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
    } else {
        if (!both) {
            index_update(r, &k, true, ts_str, call.reply->integer);
        }
        if (short_ack) {
            rc = short_ack_error(r, call.replicas_acked);
        }
    }
    freeReplyObject(call.reply);
done:
    skeys_release(&k);
    return rc;
}

static int r_session_set_stage(l1_store *st, const char *tenant, const char *session_id,
                               const char *stage, int64_t ts)
{
    if (stage == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing stage");
    }
    return r_touch((l1_redis *)st, tenant, session_id, "current_stage", stage, ts);
}

/* As l1_mem: ending counts as activity (last_active = ts). */
static int r_session_end(l1_store *st, const char *tenant, const char *session_id, int64_t ts)
{
    return r_touch((l1_redis *)st, tenant, session_id, "ended", "1", ts);
}

/* A resend after a lost connection whose first attempt deleted the session
 * reports STRATA_ENOTFOUND: the session is gone either way. */
static int r_session_delete(l1_store *st, const char *tenant, const char *session_id)
{
    l1_redis *r = (l1_redis *)st;
    skeys k;
    rcmd cmd;
    rcl_call call;
    bool short_ack = false;
    int rc = skeys_make(r, &k, true, tenant, session_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    bool both = combined(r, &k);
    rcmd_script(&cmd, r, SC_DELETE, both ? 5 : 2);
    rcmd_add(&cmd, k.k1, k.k1_len);
    rcmd_add(&cmd, k.k2, k.k2_len);
    if (both) {
        rcmd_shard_keys(&cmd, &r->shards[k.shard]);
    }
    rcmd_add(&cmd, k.member, k.member_len);
    rc = script_exec(r, SC_DELETE, &cmd, k.slot, RCL_WRITE | RCL_IDEMPOTENT, &call, &short_ack);
    if (rc != STRATA_OK) {
        goto done;
    }
    if (call.reply->type != REDIS_REPLY_INTEGER) {
        rc = bad_reply("a session delete");
    } else {
        if (!both) {
            index_update(r, &k, false, NULL, 0); /* found or not: drop any ghost */
        }
        if (call.reply->integer == 0) {
            rc = strata_error(STRATA_ENOTFOUND, "no session %s", session_id);
        } else if (short_ack) {
            rc = short_ack_error(r, call.replicas_acked);
        }
    }
    freeReplyObject(call.reply);
done:
    skeys_release(&k);
    return rc;
}

/* ---- idle listing ---------------------------------------------------------- */

typedef struct idle_cand {
    const char *member;        /* borrowed from a reply */
    size_t member_len;
    const char *score_str;     /* borrowed from a reply */
    size_t score_len;
    int64_t score;
    int shard;                 /* the index shard it was found in */
} idle_cand;

static int cand_cmp(const void *a, const void *b)
{
    const idle_cand *x = a;
    const idle_cand *y = b;
    if (x->score != y->score) {
        return x->score < y->score ? -1 : 1;
    }
    size_t n = STRATA_MIN(x->member_len, y->member_len);
    int c = memcmp(x->member, y->member, n);
    if (c != 0) {
        return c;
    }
    return x->member_len < y->member_len ? -1 : (x->member_len > y->member_len ? 1 : 0);
}

/* Split member "tenant NUL id"; false if it has no NUL (not ours). */
static bool member_split(const char *m, size_t n, size_t *tl)
{
    const char *nul = memchr(m, '\0', n);
    if (nul == NULL) {
        return false;
    }
    *tl = (size_t)(nul - m);
    return true;
}

/* Compare-and-set an index entry (LUA_IDX_CAS). set: (score, len); else
 * delete. Counts a repair when applied. */
static int index_cas(l1_redis *r, int shard, const char *member, size_t mlen,
                     const char *expect, size_t expect_len, bool set, int64_t score, long long len)
{
    const l1r_shard *sh = &r->shards[shard];
    char score_str[24];
    char len_str[24];
    rcmd cmd;
    rcl_call call;
    snprintf(score_str, sizeof(score_str), "%lld", (long long)score);
    snprintf(len_str, sizeof(len_str), "%lld", len);
    rcmd_script(&cmd, r, SC_IDX_CAS, 3);
    rcmd_shard_keys(&cmd, sh);
    rcmd_add(&cmd, member, mlen);
    rcmd_add(&cmd, expect, expect_len);
    rcmd_addz(&cmd, set ? "set" : "del");
    rcmd_addz(&cmd, score_str);
    rcmd_addz(&cmd, len_str);
    int rc = script_exec(r, SC_IDX_CAS, &cmd, sh->slot, RCL_WRITE | RCL_IDEMPOTENT, &call, NULL);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (call.reply->type == REDIS_REPLY_INTEGER && call.reply->integer == 1) {
        atomic_fetch_add(&r->index_repairs, 1);
    }
    freeReplyObject(call.reply);
    return STRATA_OK;
}

/* Check cands[0..n) against their state hashes; ok[i] = the entry is right.
 * Wrong ones are repaired (CAS) and counted in *repaired. */
static int idle_validate(l1_redis *r, const idle_cand *cands, size_t n, bool *ok,
                         size_t *repaired)
{
    int rc = STRATA_OK;
    skeys *keys = strata_calloc(n, sizeof(*keys));
    rcl_call *calls = strata_calloc(2 * n, sizeof(*calls));
    rcmd *cmds = strata_calloc(2 * n, sizeof(*cmds));
    size_t built = 0;
    *repaired = 0;
    if (keys == NULL || calls == NULL || cmds == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory listing idle sessions");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t tl = 0;
        ok[i] = false;
        if (!member_split(cands[i].member, cands[i].member_len, &tl)) {
            keys[i].heap = NULL;
            keys[i].k1 = NULL;
            built++;
            continue; /* not a member we wrote: never listed */
        }
        rc = skeys_make_n(r, &keys[i], true, cands[i].member, tl, cands[i].member + tl + 1,
                          cands[i].member_len - tl - 1);
        if (rc != STRATA_OK) {
            goto done;
        }
        built++;
    }
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].k1 == NULL) {
            continue;
        }
        rcmd_addz(&cmds[nc], "HGET");
        rcmd_add(&cmds[nc], keys[i].k1, keys[i].k1_len);
        rcmd_addz(&cmds[nc], "last_active");
        calls[nc] = (rcl_call){call_slot(r, keys[i].slot), -1, RCL_IDEMPOTENT, cmds[nc].argc,
                               cmds[nc].argv, cmds[nc].argvlen, NULL, -1};
        nc++;
        rcmd_addz(&cmds[nc], "LLEN");
        rcmd_add(&cmds[nc], keys[i].k2, keys[i].k2_len);
        calls[nc] = (rcl_call){call_slot(r, keys[i].slot), -1, RCL_IDEMPOTENT, cmds[nc].argc,
                               cmds[nc].argv, cmds[nc].argvlen, NULL, -1};
        nc++;
    }
    rc = rcl_batch(r->conn, calls, nc);
    if (rc != STRATA_OK) {
        goto done;
    }
    size_t j = 0;
    for (size_t i = 0; i < n && rc == STRATA_OK; i++) {
        if (keys[i].k1 == NULL) {
            continue;
        }
        const redisReply *la = calls[j++].reply;
        const redisReply *len = calls[j++].reply;
        int64_t active = 0;
        if (la->type == REDIS_REPLY_NIL) {
            rc = index_cas(r, cands[i].shard, cands[i].member, cands[i].member_len,
                           cands[i].score_str, cands[i].score_len, false, 0, 0);
            (*repaired)++;
        } else if (la->type != REDIS_REPLY_STRING || !parse_i64(la->str, la->len, &active) ||
                   len->type != REDIS_REPLY_INTEGER) {
            rc = la->type == REDIS_REPLY_ERROR ? reply_error(la) : bad_reply("HGET/LLEN");
        } else if (cands[i].shard != keys[i].shard) {
            /* In the wrong shard (hand-made, or written under another shard
             * rule): move it, unless its own shard already has it. */
            rc = index_cas(r, cands[i].shard, cands[i].member, cands[i].member_len,
                           cands[i].score_str, cands[i].score_len, false, 0, 0);
            if (rc == STRATA_OK) {
                rc = index_cas(r, keys[i].shard, cands[i].member, cands[i].member_len, "", 0,
                               true, active, len->integer);
            }
            (*repaired)++;
        } else if (active != cands[i].score) {
            rc = index_cas(r, cands[i].shard, cands[i].member, cands[i].member_len,
                           cands[i].score_str, cands[i].score_len, true, active, len->integer);
            (*repaired)++;
        } else {
            ok[i] = true;
        }
    }
    for (size_t i = 0; i < nc; i++) {
        if (calls[i].reply != NULL) {
            freeReplyObject(calls[i].reply);
        }
    }
done:
    for (size_t i = 0; keys != NULL && i < built; i++) {
        skeys_release(&keys[i]);
    }
    strata_free(keys);
    strata_free(calls);
    strata_free(cmds);
    return rc;
}

/* One listing round: the `lim` oldest index entries below idle_before across
 * the shards, checked against the sessions. *repaired > 0 means the index
 * changed and the caller should list again. */
static int idle_round(l1_redis *r, int64_t idle_before, size_t lim, l1_session_ref **out,
                      size_t *n_out, size_t *repaired)
{
    char max_str[32];
    char lim_str[24];
    rcmd cmds[L1R_SHARDS];
    rcl_call calls[L1R_SHARDS];
    idle_cand *cands = NULL;
    bool *ok = NULL;
    l1_session_ref *refs = NULL;
    size_t n_refs = 0;
    int rc;
    snprintf(max_str, sizeof(max_str), "(%lld", (long long)idle_before);
    snprintf(lim_str, sizeof(lim_str), "%zu", lim);
    for (int s = 0; s < L1R_SHARDS; s++) {
        rcmd *c = &cmds[s];
        c->argc = 0;
        rcmd_addz(c, "ZRANGEBYSCORE");
        rcmd_add(c, r->shards[s].idle, r->shards[s].idle_len);
        rcmd_addz(c, "-inf");
        rcmd_addz(c, max_str);
        rcmd_addz(c, "WITHSCORES");
        rcmd_addz(c, "LIMIT");
        rcmd_addz(c, "0");
        rcmd_addz(c, lim_str);
        calls[s] = (rcl_call){call_slot(r, r->shards[s].slot), -1, RCL_IDEMPOTENT, c->argc,
                              c->argv, c->argvlen, NULL, -1};
    }
    rc = rcl_batch(r->conn, calls, L1R_SHARDS);
    if (rc != STRATA_OK) {
        return rc;
    }
    size_t total = 0;
    for (int s = 0; s < L1R_SHARDS; s++) {
        const redisReply *rp = calls[s].reply;
        if (rp->type == REDIS_REPLY_ERROR) {
            rc = reply_error(rp);
            goto done;
        }
        if (rp->type != REDIS_REPLY_ARRAY || rp->elements % 2 != 0) {
            rc = bad_reply("ZRANGEBYSCORE");
            goto done;
        }
        total += rp->elements / 2;
    }
    if (total == 0) {
        goto done;
    }
    cands = strata_calloc(total, sizeof(*cands));
    if (cands == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory listing idle sessions");
        goto done;
    }
    size_t n = 0;
    for (int s = 0; s < L1R_SHARDS; s++) {
        const redisReply *rp = calls[s].reply;
        for (size_t i = 0; i + 1 < rp->elements; i += 2) {
            const redisReply *m = rp->element[i];
            const redisReply *sc = rp->element[i + 1];
            if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
                !parse_score(sc->str, sc->len, &cands[n].score)) {
                rc = bad_reply("ZRANGEBYSCORE");
                goto done;
            }
            cands[n].member = m->str;
            cands[n].member_len = m->len;
            cands[n].score_str = sc->str;
            cands[n].score_len = sc->len;
            cands[n].shard = s;
            n++;
        }
    }
    qsort(cands, n, sizeof(*cands), cand_cmp);
    n = STRATA_MIN(n, lim);
    ok = strata_calloc(n, sizeof(*ok));
    refs = strata_calloc(n, sizeof(*refs));
    if (ok == NULL || refs == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory listing idle sessions");
        goto done;
    }
    rc = idle_validate(r, cands, n, ok, repaired);
    if (rc != STRATA_OK) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        if (!ok[i] || !member_split(cands[i].member, cands[i].member_len, &tl)) {
            continue;
        }
        refs[n_refs].tenant = strata_strndup(cands[i].member, tl);
        refs[n_refs].session_id =
            strata_strndup(cands[i].member + tl + 1, cands[i].member_len - tl - 1);
        n_refs++;
        if (refs[n_refs - 1].tenant == NULL || refs[n_refs - 1].session_id == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory listing idle sessions");
            goto done;
        }
    }
done:
    if (rc == STRATA_OK && n_refs > 0) {
        *out = refs;
        *n_out = n_refs;
    } else {
        l1_session_refs_free(refs, n_refs);
    }
    strata_free(ok);
    strata_free(cands);
    for (int s = 0; s < L1R_SHARDS; s++) {
        if (calls[s].reply != NULL) {
            freeReplyObject(calls[s].reply);
        }
    }
    return rc;
}

/* Oldest first (ties: by tenant, then session id, bytewise - l1_mem breaks
 * ties by touch order instead). Each listed session was checked against its
 * state hash; entries found wrong are repaired and the listing is redone, at
 * most L1R_IDLE_ROUNDS times (the last round lists only verified entries).
 * At most min(max, L1R_IDLE_MAX) sessions per call. */
static int r_session_list_idle(l1_store *st, int64_t idle_before, size_t max,
                               l1_session_ref **out, size_t *n_out)
{
    l1_redis *r = (l1_redis *)st;
    *out = NULL;
    *n_out = 0;
    size_t lim = STRATA_MIN(max, (size_t)L1R_IDLE_MAX);
    if (lim == 0) {
        return STRATA_OK;
    }
    for (int round = 0;; round++) {
        size_t repaired = 0;
        int rc = idle_round(r, idle_before, lim, out, n_out, &repaired);
        if (rc != STRATA_OK || repaired == 0 || round + 1 >= L1R_IDLE_ROUNDS) {
            return rc;
        }
        l1_session_refs_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
}

/* ---- dirty sets ------------------------------------------------------------ */

/* The cluster step of dirty_add/dirty_clear on the dirty index (a stat). */
static void dirty_index_update(l1_redis *r, const skeys *k, bool add)
{
    const l1r_shard *sh = &r->shards[k->shard];
    rcmd cmd = {0};
    rcmd_addz(&cmd, add ? "SADD" : "SREM");
    rcmd_add(&cmd, sh->dirty, sh->dirty_len);
    rcmd_add(&cmd, k->member, k->member_len);
    rcl_call call = {call_slot(r, sh->slot), -1, RCL_WRITE | RCL_IDEMPOTENT, cmd.argc, cmd.argv,
                     cmd.argvlen, NULL, -1};
    int rc = rcl_exec(r->conn, &call);
    if (rc == STRATA_OK && call.reply->type == REDIS_REPLY_ERROR) {
        rc = reply_error(call.reply);
    }
    if (call.reply != NULL) {
        freeReplyObject(call.reply);
    }
    if (rc != STRATA_OK) {
        atomic_fetch_add(&r->index_errors, 1);
        slog(SLOG_WARN, "l1 redis: dirty index update for %s failed: %s", k->k1,
             strata_errmsg());
    }
}

static int r_dirty_write(l1_redis *r, const char *tenant, const char *user_id, const char *attr)
{
    skeys k;
    rcmd cmd;
    rcl_call call;
    bool short_ack = false;
    bool add = attr != NULL;
    int rc = skeys_make(r, &k, false, tenant, user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    bool both = combined(r, &k);
    int sc = add ? SC_DIRTY_ADD : SC_DIRTY_CLEAR;
    rcmd_script(&cmd, r, sc, both ? 2 : 1);
    rcmd_add(&cmd, k.k1, k.k1_len);
    if (both) {
        rcmd_add(&cmd, r->shards[k.shard].dirty, r->shards[k.shard].dirty_len);
    }
    if (add) {
        rcmd_addz(&cmd, attr);
    }
    rcmd_add(&cmd, k.member, k.member_len);
    rc = script_exec(r, sc, &cmd, k.slot, RCL_WRITE | RCL_IDEMPOTENT, &call, &short_ack);
    if (rc == STRATA_OK) {
        freeReplyObject(call.reply);
        if (!both) {
            dirty_index_update(r, &k, add);
        }
        if (short_ack) {
            rc = short_ack_error(r, call.replicas_acked);
        }
    }
    skeys_release(&k);
    return rc;
}

static int r_dirty_add(l1_store *st, const char *tenant, const char *user_id, const char *attr)
{
    if (attr == NULL) {
        return strata_error(STRATA_EINVAL, "L1: missing attribute");
    }
    return r_dirty_write((l1_redis *)st, tenant, user_id, attr);
}

/* Clearing an unknown or already clear set is not an error (as Redis DEL). */
static int r_dirty_clear(l1_store *st, const char *tenant, const char *user_id)
{
    return r_dirty_write((l1_redis *)st, tenant, user_id, NULL);
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int r_dirty_get(l1_store *st, const char *tenant, const char *user_id,
                       strata_strlist **out)
{
    l1_redis *r = (l1_redis *)st;
    skeys k;
    *out = NULL;
    int rc = skeys_make(r, &k, false, tenant, user_id);
    if (rc != STRATA_OK) {
        return rc;
    }
    strata_strlist *l = NULL;
    rcmd cmd = {0};
    rcmd_addz(&cmd, "SMEMBERS");
    rcmd_add(&cmd, k.k1, k.k1_len);
    rcl_call call = {call_slot(r, k.slot), -1, RCL_IDEMPOTENT, cmd.argc, cmd.argv, cmd.argvlen,
                     NULL, -1};
    rc = rcl_exec(r->conn, &call);
    if (rc != STRATA_OK) {
        goto done;
    }
    const redisReply *rp = call.reply;
    if (rp->type == REDIS_REPLY_ERROR) {
        rc = reply_error(rp);
        goto done;
    }
    if (rp->type != REDIS_REPLY_ARRAY) {
        rc = bad_reply("SMEMBERS");
        goto done;
    }
    l = strata_calloc(1, sizeof(*l));
    if (l != NULL && rp->elements > 0) {
        l->items = strata_calloc(rp->elements, sizeof(char *));
    }
    if (l == NULL || (rp->elements > 0 && l->items == NULL)) {
        rc = strata_error(STRATA_ENOMEM, "out of memory listing a dirty set");
        goto done;
    }
    for (size_t i = 0; i < rp->elements; i++) {
        const redisReply *e = rp->element[i];
        if (e->type != REDIS_REPLY_STRING) {
            rc = bad_reply("SMEMBERS");
            goto done;
        }
        l->items[i] = strata_strndup(e->str, e->len);
        l->n = i + 1;
        if (l->items[i] == NULL) {
            rc = strata_error(STRATA_ENOMEM, "out of memory listing a dirty set");
            goto done;
        }
    }
    /* SMEMBERS has no order; the contract is sorted (bytewise, as strcmp). */
    if (l->n > 1) {
        qsort(l->items, l->n, sizeof(char *), str_ptr_cmp);
    }
    *out = l;
    l = NULL;
done:
    strata_strlist_free(l);
    if (call.reply != NULL) {
        freeReplyObject(call.reply);
    }
    skeys_release(&k);
    return rc;
}

/* ---- snapshots, stats ------------------------------------------------------ */

static int r_snapshot_write(l1_store *st, sbuf *out)
{
    return strata_error(STRATA_EUNSUPPORTED, "L1 on Redis: Redis persists itself (AOF)");
}

static int r_snapshot_load(l1_store *st, const void *data, size_t len)
{
    return strata_error(STRATA_EUNSUPPORTED, "L1 on Redis: Redis persists itself (AOF)");
}

/* Sums the 16 shards (one atomic script per shard, pipelined per node). On a
 * Redis failure the last good answer is given (stats cannot fail). */
static void r_stats(l1_store *st, l1_stats *out)
{
    l1_redis *r = (l1_redis *)st;
    rcmd cmds[L1R_SHARDS];
    rcl_call calls[L1R_SHARDS];
    l1_stats sum = {0};
    bool ok = true;
    for (int s = 0; s < L1R_SHARDS; s++) {
        const l1r_shard *sh = &r->shards[s];
        rcmd_script(&cmds[s], r, SC_STATS, 3);
        rcmd_add(&cmds[s], sh->idle, sh->idle_len);
        rcmd_add(&cmds[s], sh->turns, sh->turns_len);
        rcmd_add(&cmds[s], sh->dirty, sh->dirty_len);
        calls[s] = (rcl_call){call_slot(r, sh->slot), -1, RCL_IDEMPOTENT, cmds[s].argc,
                              cmds[s].argv, cmds[s].argvlen, NULL, -1};
    }
    if (rcl_batch(r->conn, calls, L1R_SHARDS) != STRATA_OK) {
        ok = false;
    }
    for (int s = 0; s < L1R_SHARDS && ok; s++) {
        if (reply_err_is(calls[s].reply, "NOSCRIPT")) {
            freeReplyObject(calls[s].reply);
            if (script_exec(r, SC_STATS, &cmds[s], r->shards[s].slot, RCL_IDEMPOTENT, &calls[s],
                            NULL) != STRATA_OK) {
                calls[s].reply = NULL;
                ok = false;
                break;
            }
        }
        const redisReply *rp = calls[s].reply;
        if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 3 ||
            rp->element[0]->type != REDIS_REPLY_INTEGER ||
            rp->element[1]->type != REDIS_REPLY_INTEGER ||
            rp->element[2]->type != REDIS_REPLY_INTEGER) {
            ok = false;
            break;
        }
        sum.sessions += (uint64_t)STRATA_MAX(rp->element[0]->integer, 0);
        sum.turns_buffered += (uint64_t)STRATA_MAX(rp->element[1]->integer, 0);
        sum.dirty_users += (uint64_t)STRATA_MAX(rp->element[2]->integer, 0);
    }
    for (int s = 0; s < L1R_SHARDS; s++) {
        if (calls[s].reply != NULL) {
            freeReplyObject(calls[s].reply);
        }
    }
    pthread_mutex_lock(&r->stats_lock);
    if (ok) {
        r->last_stats = sum;
    } else {
        slog(SLOG_WARN, "l1 redis: stats unavailable (%s); giving the last ones",
             strata_errmsg());
    }
    *out = r->last_stats;
    pthread_mutex_unlock(&r->stats_lock);
}

void l1_redis_stats_get(l1_store *st, l1_redis_stats *out)
{
    l1_redis *r = (l1_redis *)st;
    rcl_stats cs;
    rcl_stats_get(r->conn, &cs);
    out->moved = cs.moved;
    out->ask = cs.ask;
    out->retries = cs.retries;
    out->refreshes = cs.refreshes;
    out->connects = cs.connects;
    out->index_errors = atomic_load(&r->index_errors);
    out->index_repairs = atomic_load(&r->index_repairs);
}

/* ---- reindex --------------------------------------------------------------- */

/* Escape a literal for a SCAN MATCH glob. out holds 2n + 1 bytes. */
static size_t glob_escape(char *out, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == ']' || s[i] == '\\') {
            out[o++] = '\\';
        }
        out[o++] = s[i];
    }
    out[o] = '\0';
    return o;
}

/* Parse "<prefix>session:{<tenant>:<id>}:state" (or user ... :dirty) back into
 * tenant and id (unescaped, into buf of at least key_len bytes). */
static bool key_parse(const l1_redis *r, const char *key, size_t len, const char *kind,
                      const char *suffix, char *buf, size_t *tl, size_t *il)
{
    size_t kl = strlen(kind);
    size_t sl = strlen(suffix);
    if (len < r->prefix_len + kl + sl + 2 || memcmp(key, r->prefix, r->prefix_len) != 0 ||
        memcmp(key + r->prefix_len, kind, kl) != 0 || memcmp(key + len - sl, suffix, sl) != 0 ||
        key[len - sl - 1] != '}') {
        return false;
    }
    const char *tag = key + r->prefix_len + kl;
    size_t tag_len = len - r->prefix_len - kl - sl - 1;
    const char *colon = memchr(tag, ':', tag_len);
    if (colon == NULL) {
        return false;
    }
    if (!esc_get(buf, tl, tag, (size_t)(colon - tag))) {
        return false;
    }
    buf[*tl] = '\0';
    return esc_get(buf + *tl + 1, il, colon + 1, tag_len - (size_t)(colon - tag) - 1);
}

/* Re-register one page of state keys (SCAN's answer). */
static int reindex_sessions(l1_redis *r, const redisReply *keys, uint64_t *fixed)
{
    int rc = STRATA_OK;
    for (size_t i = 0; i < keys->elements && rc == STRATA_OK; i++) {
        const redisReply *kr = keys->element[i];
        if (kr->type != REDIS_REPLY_STRING) {
            continue;
        }
        char *buf = strata_malloc(kr->len + 2);
        size_t tl;
        size_t il;
        skeys k;
        if (buf == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory reindexing");
        }
        if (!key_parse(r, kr->str, kr->len, "session:{", ":state", buf, &tl, &il)) {
            strata_free(buf);
            continue; /* not one of ours */
        }
        rc = skeys_make_n(r, &k, true, buf, tl, buf + tl + 1, il);
        strata_free(buf);
        if (rc != STRATA_OK) {
            return rc;
        }
        rcmd c1 = {0};
        rcmd c2 = {0};
        rcmd_addz(&c1, "HGET");
        rcmd_add(&c1, k.k1, k.k1_len);
        rcmd_addz(&c1, "last_active");
        rcmd_addz(&c2, "LLEN");
        rcmd_add(&c2, k.k2, k.k2_len);
        rcl_call calls[2] = {
            {call_slot(r, k.slot), -1, RCL_IDEMPOTENT, c1.argc, c1.argv, c1.argvlen, NULL, -1},
            {call_slot(r, k.slot), -1, RCL_IDEMPOTENT, c2.argc, c2.argv, c2.argvlen, NULL, -1},
        };
        rc = rcl_batch(r->conn, calls, 2);
        int64_t active = 0;
        if (rc == STRATA_OK && calls[0].reply->type == REDIS_REPLY_STRING &&
            parse_i64(calls[0].reply->str, calls[0].reply->len, &active) &&
            calls[1].reply->type == REDIS_REPLY_INTEGER) {
            const l1r_shard *sh = &r->shards[k.shard];
            char score[24];
            char lens[24];
            rcmd cmd;
            rcl_call call;
            snprintf(score, sizeof(score), "%lld", (long long)active);
            snprintf(lens, sizeof(lens), "%lld", calls[1].reply->integer);
            rcmd_script(&cmd, r, SC_IDX, 3);
            rcmd_shard_keys(&cmd, sh);
            rcmd_addz(&cmd, "set");
            rcmd_add(&cmd, k.member, k.member_len);
            rcmd_addz(&cmd, score);
            rcmd_addz(&cmd, lens);
            rc = script_exec(r, SC_IDX, &cmd, sh->slot, RCL_WRITE | RCL_IDEMPOTENT, &call, NULL);
            if (rc == STRATA_OK) {
                *fixed += call.reply->type == REDIS_REPLY_INTEGER && call.reply->integer > 0;
                freeReplyObject(call.reply);
            }
        }
        for (int j = 0; j < 2; j++) {
            if (calls[j].reply != NULL) {
                freeReplyObject(calls[j].reply);
            }
        }
        skeys_release(&k);
    }
    return rc;
}

/* Re-register one page of dirty keys. */
static int reindex_dirty(l1_redis *r, const redisReply *keys)
{
    int rc = STRATA_OK;
    for (size_t i = 0; i < keys->elements && rc == STRATA_OK; i++) {
        const redisReply *kr = keys->element[i];
        char *buf = kr->type == REDIS_REPLY_STRING ? strata_malloc(kr->len + 2) : NULL;
        size_t tl;
        size_t il;
        skeys k;
        if (buf == NULL) {
            if (kr->type == REDIS_REPLY_STRING) {
                return strata_error(STRATA_ENOMEM, "out of memory reindexing");
            }
            continue;
        }
        if (key_parse(r, kr->str, kr->len, "user:{", ":dirty", buf, &tl, &il)) {
            rc = skeys_make_n(r, &k, false, buf, tl, buf + tl + 1, il);
            if (rc == STRATA_OK) {
                dirty_index_update(r, &k, true);
                skeys_release(&k);
            }
        }
        strata_free(buf);
    }
    return rc;
}

/* SCAN node `node` for keys matching pattern, feeding each page to
 * sessions (true) or dirty (false) re-registration. */
static int reindex_scan(l1_redis *r, int node, const char *pattern, bool sessions,
                        uint64_t *fixed)
{
    char cursor[32] = "0";
    do {
        rcmd cmd = {0};
        rcmd_addz(&cmd, "SCAN");
        rcmd_addz(&cmd, cursor);
        rcmd_addz(&cmd, "MATCH");
        rcmd_addz(&cmd, pattern);
        rcmd_addz(&cmd, "COUNT");
        rcmd_addz(&cmd, L1R_SCAN_COUNT);
        rcl_call call = {RCL_ANY_SLOT, node, RCL_IDEMPOTENT, cmd.argc, cmd.argv, cmd.argvlen,
                         NULL, -1};
        int rc = rcl_exec(r->conn, &call);
        if (rc != STRATA_OK) {
            return rc;
        }
        const redisReply *rp = call.reply;
        if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
            rp->element[0]->type != REDIS_REPLY_STRING || rp->element[0]->len >= sizeof(cursor) ||
            rp->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = rp->type == REDIS_REPLY_ERROR ? reply_error(rp) : bad_reply("SCAN");
            freeReplyObject(call.reply);
            return rc;
        }
        memcpy(cursor, rp->element[0]->str, rp->element[0]->len);
        cursor[rp->element[0]->len] = '\0';
        rc = sessions ? reindex_sessions(r, rp->element[1], fixed)
                      : reindex_dirty(r, rp->element[1]);
        freeReplyObject(call.reply);
        if (rc != STRATA_OK) {
            return rc;
        }
    } while (strcmp(cursor, "0") != 0);
    return STRATA_OK;
}

/* Drop idle-index entries whose session is gone: page through every shard's
 * zset and check each member (the validation list_idle does, for all). */
static int reindex_ghosts(l1_redis *r, uint64_t *fixed)
{
    for (int s = 0; s < L1R_SHARDS; s++) {
        for (long long off = 0;;) {
            char start[24];
            char stop[24];
            snprintf(start, sizeof(start), "%lld", off);
            snprintf(stop, sizeof(stop), "%lld", off + 511);
            rcmd cmd = {0};
            rcmd_addz(&cmd, "ZRANGE");
            rcmd_add(&cmd, r->shards[s].idle, r->shards[s].idle_len);
            rcmd_addz(&cmd, start);
            rcmd_addz(&cmd, stop);
            rcmd_addz(&cmd, "WITHSCORES");
            rcl_call call = {call_slot(r, r->shards[s].slot), -1, RCL_IDEMPOTENT, cmd.argc,
                             cmd.argv, cmd.argvlen, NULL, -1};
            int rc = rcl_exec(r->conn, &call);
            if (rc != STRATA_OK) {
                return rc;
            }
            const redisReply *rp = call.reply;
            size_t n = rp->type == REDIS_REPLY_ARRAY ? rp->elements / 2 : 0;
            idle_cand *cands = n > 0 ? strata_calloc(n, sizeof(*cands)) : NULL;
            bool *ok = n > 0 ? strata_calloc(n, sizeof(*ok)) : NULL;
            size_t repaired = 0;
            if (n > 0 && (cands == NULL || ok == NULL)) {
                rc = strata_error(STRATA_ENOMEM, "out of memory reindexing");
            }
            for (size_t i = 0; i < n && rc == STRATA_OK; i++) {
                const redisReply *m = rp->element[2 * i];
                const redisReply *sc = rp->element[2 * i + 1];
                if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
                    !parse_score(sc->str, sc->len, &cands[i].score)) {
                    rc = bad_reply("ZRANGE");
                    break;
                }
                cands[i].member = m->str;
                cands[i].member_len = m->len;
                cands[i].score_str = sc->str;
                cands[i].score_len = sc->len;
                cands[i].shard = s;
            }
            if (rc == STRATA_OK && n > 0) {
                rc = idle_validate(r, cands, n, ok, &repaired);
            }
            *fixed += repaired;
            strata_free(cands);
            strata_free(ok);
            freeReplyObject(call.reply);
            if (rc != STRATA_OK) {
                return rc;
            }
            if (n < 512) {
                break;
            }
            /* Removed entries shift later ones down: step by what stayed. */
            off += (long long)(n - repaired);
        }
    }
    return STRATA_OK;
}

/* Drop dirty-index members whose dirty set is gone (a lost SREM), one SSCAN
 * page at a time per shard. */
static int reindex_dirty_ghosts(l1_redis *r, uint64_t *fixed)
{
    for (int s = 0; s < L1R_SHARDS; s++) {
        const l1r_shard *sh = &r->shards[s];
        char cursor[32] = "0";
        do {
            rcmd cmd = {0};
            rcmd_addz(&cmd, "SSCAN");
            rcmd_add(&cmd, sh->dirty, sh->dirty_len);
            rcmd_addz(&cmd, cursor);
            rcmd_addz(&cmd, "COUNT");
            rcmd_addz(&cmd, L1R_SCAN_COUNT);
            rcl_call call = {call_slot(r, sh->slot), -1, RCL_IDEMPOTENT, cmd.argc, cmd.argv,
                             cmd.argvlen, NULL, -1};
            int rc = rcl_exec(r->conn, &call);
            if (rc != STRATA_OK) {
                return rc;
            }
            const redisReply *rp = call.reply;
            if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
                rp->element[0]->type != REDIS_REPLY_STRING ||
                rp->element[0]->len >= sizeof(cursor) ||
                rp->element[1]->type != REDIS_REPLY_ARRAY) {
                rc = rp->type == REDIS_REPLY_ERROR ? reply_error(rp) : bad_reply("SSCAN");
                freeReplyObject(call.reply);
                return rc;
            }
            memcpy(cursor, rp->element[0]->str, rp->element[0]->len);
            cursor[rp->element[0]->len] = '\0';
            const redisReply *page = rp->element[1];
            for (size_t i = 0; i < page->elements && rc == STRATA_OK; i++) {
                const redisReply *m = page->element[i];
                size_t tl;
                skeys k;
                if (m->type != REDIS_REPLY_STRING || !member_split(m->str, m->len, &tl)) {
                    continue;
                }
                rc = skeys_make_n(r, &k, false, m->str, tl, m->str + tl + 1, m->len - tl - 1);
                if (rc != STRATA_OK) {
                    break;
                }
                rcmd ex = {0};
                rcmd_addz(&ex, "EXISTS");
                rcmd_add(&ex, k.k1, k.k1_len);
                rcl_call ec = {call_slot(r, k.slot), -1, RCL_IDEMPOTENT, ex.argc, ex.argv,
                               ex.argvlen, NULL, -1};
                rc = rcl_exec(r->conn, &ec);
                if (rc == STRATA_OK && ec.reply->type == REDIS_REPLY_INTEGER &&
                    ec.reply->integer == 0 && k.shard == s) {
                    dirty_index_update(r, &k, false);
                    (*fixed)++;
                }
                if (ec.reply != NULL) {
                    freeReplyObject(ec.reply);
                }
                skeys_release(&k);
            }
            freeReplyObject(call.reply);
            if (rc != STRATA_OK) {
                return rc;
            }
        } while (strcmp(cursor, "0") != 0);
    }
    return STRATA_OK;
}

int l1_redis_reindex(l1_store *st, uint64_t *n_fixed)
{
    l1_redis *r = (l1_redis *)st;
    uint64_t fixed = 0;
    int masters[RCL_MAX_NODES];
    size_t n_masters = rcl_masters(r->conn, masters, RCL_MAX_NODES);
    char *esc = strata_malloc(2 * r->prefix_len + 32);
    int rc = STRATA_OK;
    if (n_fixed != NULL) {
        *n_fixed = 0;
    }
    if (esc == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory reindexing");
    }
    size_t n = glob_escape(esc, r->prefix, r->prefix_len);
    for (int pass = 0; pass < 2 && rc == STRATA_OK; pass++) {
        snprintf(esc + n, 32, "%s", pass == 0 ? "session:{*}:state" : "user:{*}:dirty");
        for (size_t i = 0; i < n_masters && rc == STRATA_OK; i++) {
            rc = reindex_scan(r, masters[i], esc, pass == 0, &fixed);
        }
    }
    strata_free(esc);
    if (rc == STRATA_OK) {
        rc = reindex_ghosts(r, &fixed);
    }
    if (rc == STRATA_OK) {
        rc = reindex_dirty_ghosts(r, &fixed);
    }
    atomic_fetch_add(&r->index_repairs, fixed);
    if (n_fixed != NULL) {
        *n_fixed = fixed;
    }
    return rc;
}

/* ---- open, close ----------------------------------------------------------- */

static void r_close(l1_store *st)
{
    l1_redis *r = (l1_redis *)st;
    if (r == NULL) {
        return;
    }
    rcl_close(r->conn);
    for (int s = 0; s < L1R_SHARDS; s++) {
        strata_free(r->shards[s].idle);
        strata_free(r->shards[s].buffered);
        strata_free(r->shards[s].turns);
        strata_free(r->shards[s].dirty);
    }
    strata_free(r->prefix);
    pthread_mutex_destroy(&r->stats_lock);
    strata_free(r);
}

static const l1_ops redis_ops = {
    .name = "redis",
    .turn_append = r_turn_append,
    .turn_check = r_turn_check,
    .session_get = r_session_get,
    .session_set_stage = r_session_set_stage,
    .session_end = r_session_end,
    .session_delete = r_session_delete,
    .session_list_idle = r_session_list_idle,
    .dirty_add = r_dirty_add,
    .dirty_get = r_dirty_get,
    .dirty_clear = r_dirty_clear,
    .snapshot_write = r_snapshot_write,
    .snapshot_load = r_snapshot_load,
    .stats = r_stats,
    .close = r_close,
};

void l1_redis_options_init(l1_redis_options *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = 1000;
    o->command_timeout_ms = 2000;
    o->pool_size = 4;
    o->wait_timeout_ms = 1000;
    o->buffer_max = 20;
    o->key_prefix = "";
}

/* "<prefix>strata:<what>:{<k>}" */
static char *shard_key(const l1_redis *r, const char *what, int k, size_t *len)
{
    size_t n = r->prefix_len + strlen(what) + 16;
    char *p = strata_malloc(n);
    if (p != NULL) {
        int w = snprintf(p, n, "%sstrata:%s:{%d}", r->prefix, what, k);
        *len = (size_t)w;
    }
    return p;
}

static bool sha1_hex(const char *s, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(s, strlen(s), md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20) {
        return false;
    }
    hex_encode(out, md, 20);
    return true;
}

int l1_redis_open(const l1_redis_options *opts, l1_store **out)
{
    *out = NULL;
    if (opts == NULL) {
        return strata_error(STRATA_EINVAL, "L1 on Redis: no options");
    }
    const char *prefix = opts->key_prefix != NULL ? opts->key_prefix : "";
    size_t prefix_len = strlen(prefix);
    if (prefix_len > L1R_PREFIX_MAX || strpbrk(prefix, "{}") != NULL) {
        return strata_error(STRATA_EINVAL, "L1 on Redis: key_prefix too long or holds { }");
    }
    l1_redis *r = strata_calloc(1, sizeof(*r));
    if (r == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory opening the L1 Redis store");
    }
    int rc = STRATA_OK;
    r->base.ops = &redis_ops;
    r->cluster = opts->cluster;
    r->buffer_max = opts->buffer_max;
    snprintf(r->n_str, sizeof(r->n_str), "%u", opts->buffer_max);
    r->wait_replicas = opts->wait_replicas;
    if (pthread_mutex_init(&r->stats_lock, NULL) != 0) {
        strata_free(r);
        return strata_error(STRATA_ENOMEM, "cannot initialise a lock");
    }
    r->prefix = strata_strdup(prefix);
    if (r->prefix == NULL) {
        goto nomem;
    }
    r->prefix_len = prefix_len;
    for (int s = 0; s < L1R_SHARDS; s++) {
        l1r_shard *sh = &r->shards[s];
        sh->idle = shard_key(r, "idle", s, &sh->idle_len);
        sh->buffered = shard_key(r, "buffered", s, &sh->buffered_len);
        sh->turns = shard_key(r, "turns", s, &sh->turns_len);
        sh->dirty = shard_key(r, "dirty", s, &sh->dirty_len);
        if (sh->idle == NULL || sh->buffered == NULL || sh->turns == NULL || sh->dirty == NULL) {
            goto nomem;
        }
        sh->slot = rcl_keyslot(sh->idle, sh->idle_len);
    }
    for (int i = 0; i < SC_COUNT; i++) {
        if (!sha1_hex(g_scripts[i], r->sha[i])) {
            rc = strata_error(STRATA_EIO, "L1 on Redis: SHA1 unavailable");
            goto fail;
        }
    }
    unsigned char id[8];
    rc = random_bytes(id, sizeof(id));
    if (rc != STRATA_OK) {
        goto fail;
    }
    hex_encode(r->op_base, id, sizeof(id));
    rcl_options co = {
        .addrs = opts->addresses,
        .n_addrs = opts->n_addresses,
        .password = opts->password,
        .db = opts->db,
        .connect_timeout_ms = opts->connect_timeout_ms,
        .command_timeout_ms = opts->command_timeout_ms,
        .pool_size = opts->pool_size,
        .cluster = opts->cluster,
        .wait_replicas = opts->wait_replicas,
        .wait_timeout_ms = opts->wait_timeout_ms,
        .tls = opts->tls,
    };
    rc = rcl_open(&co, &r->conn);
    if (rc != STRATA_OK) {
        goto fail;
    }
    *out = &r->base;
    return STRATA_OK;
nomem:
    rc = strata_error(STRATA_ENOMEM, "out of memory opening the L1 Redis store");
fail:
    r_close(&r->base);
    return rc;
}
