/*
 * redis_cluster.c - the Redis connection layer of the L1 Redis backend:
 * per-node pools of blocking hiredis contexts, the cluster slot map, and the
 * retry loop that follows MOVED/ASK and rides out failovers. See
 * redis_cluster.h for the picture and the contract.
 *
 * Data:
 *   nodes[0..n_nodes)   every node ever seen (seeds, CLUSTER SLOTS, MOVED/ASK
 *                       targets), at most RCL_MAX_NODES. A node is never freed
 *                       before rcl_close, so a pointer read under map_lock stays
 *                       valid after the lock is dropped; its index is stable.
 *   slots[16384]        index of the master serving each slot, -1 if unknown.
 *                       Standalone: unused, every call goes to nodes[0].
 *   node pool           pool_size rcl_conn, a free list and a condition
 *                       variable; a thread checks a connection out, does its
 *                       I/O with no lock held, and puts it back. A connection
 *                       that saw any I/O or protocol error is freed and
 *                       reconnected on next use (hiredis contexts are not
 *                       reusable after an error).
 *
 * Locks:
 *   map_lock (rwlock)   nodes, n_nodes, slots. Held for lookups and updates
 *                       only, never across I/O.
 *   node->lock          that node's free list. Never held across I/O.
 *   refresh_lock        one CLUSTER SLOTS refresh at a time. It is held across
 *                       the refresh's I/O, but nobody waits for it: a thread
 *                       that finds it taken skips its refresh (trylock),
 *                       except rcl_open, which has the handle to itself.
 *   Order: refresh_lock before map_lock; node->lock is a leaf.
 *
 * Retries (rcl_exec): the deadline is command_timeout_ms (+ wait_timeout_ms
 * for a write followed by WAIT) from the start of the call. Within it:
 *   MOVED        update slots[slot], schedule a refresh, resend at once
 *   ASK          ASKING + the command on the named node, once
 *   TRYAGAIN, LOADING, MASTERDOWN      back off (5 ms doubling to 250 ms)
 *   CLUSTERDOWN, READONLY              back off and refresh the map
 *   connect/I-O error                  drop the connection, refresh the map
 *                                      from any reachable node, back off
 * An I/O error after the command was fully written leaves its outcome
 * unknown: only RCL_IDEMPOTENT calls are resent then (every L1 operation is
 * idempotent by construction, see l1_redis.c). A failure while writing is
 * safe to resend: Redis never runs a command it did not receive whole.
 *
 * TLS (options.tls): conn_open asks redis_tls_connect for the context instead
 * of redisConnectWithTimeout; the connection's relay is stopped together with
 * its context (conn_drop). When a TLS connection breaks, the relay's reason
 * (e.g. the server's alert "certificate required") replaces hiredis's bare
 * "Server closed the connection", and a refused certificate is not retried.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/core.h"
#include "l1/redis_cluster.h"

#define RCL_BACKOFF_MIN_MS 5
#define RCL_BACKOFF_MAX_MS 250
#define RCL_REFRESH_GAP_NS (100u * 1000u * 1000u) /* at most ~10 refreshes per second */
#define RCL_MAX_REDIRECTS 16                       /* per call: a loop is a bug somewhere */
#define RCL_HOST_MAX 255

/* ---- types ------------------------------------------------------------- */

typedef struct rcl_conn {
    redisContext *ctx;          /* NULL until connected, and after an error */
    redis_tls_conn *tls;        /* its TLS relay, or NULL (plain TCP) */
    struct rcl_conn *next;      /* free-list link while checked in */
} rcl_conn;

typedef struct rcl_node {
    char host[RCL_HOST_MAX + 1];
    int port;
    pthread_mutex_t lock;       /* protects free_list */
    pthread_cond_t cond;        /* a connection was checked in (CLOCK_MONOTONIC) */
    rcl_conn *conns;            /* pool_size slots, owned */
    rcl_conn *free_list;        /* checked-in connections */
} rcl_node;

struct rcl {
    rcl_options o;              /* addrs and password point at the copies below */
    char **addr_copies;         /* owned, o.n_addrs strings */
    char *password;             /* owned, NULL when none */
    redis_tls *tls;             /* owned; NULL: plain TCP */
    struct timeval connect_tv;  /* connect_timeout_ms */
    struct timeval io_tv;       /* socket read/write timeout */
    uint64_t budget_ns;         /* deadline of a call without WAIT */
    uint64_t wait_budget_ns;    /* extra for a call followed by WAIT */
    pthread_rwlock_t map_lock;  /* protects nodes, n_nodes, slots */
    rcl_node **nodes;           /* RCL_MAX_NODES slots, n_nodes used */
    size_t n_nodes;
    int16_t slots[RCL_SLOTS];   /* node index per slot, -1 unknown */
    pthread_mutex_t refresh_lock;       /* one refresh at a time */
    _Atomic uint64_t next_refresh_ns;   /* no unforced refresh before this */
    atomic_uint refresh_rr;             /* rotates the first node asked */
    _Atomic uint64_t n_moved;
    _Atomic uint64_t n_ask;
    _Atomic uint64_t n_retries;
    _Atomic uint64_t n_refreshes;
    _Atomic uint64_t n_connects;
};

/* ---- small helpers ----------------------------------------------------- */

/* CRC16-CCITT (XMODEM): poly 0x1021, init 0, no reflection; Redis's keyslot
 * hash. Bitwise: keys are short and this is far from any hot loop's cost. */
static uint16_t crc16_xmodem(const unsigned char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

/* As Redis: hash the part between the first '{' and the next '}' if it is
 * non-empty, else the whole key. */
int rcl_keyslot(const void *key, size_t len)
{
    const unsigned char *k = key;
    const unsigned char *open = memchr(k, '{', len);
    if (open != NULL) {
        size_t start = (size_t)(open - k) + 1;
        const unsigned char *close = memchr(k + start, '}', len - start);
        if (close != NULL && close > k + start) {
            return crc16_xmodem(k + start, (size_t)(close - (k + start))) & (RCL_SLOTS - 1);
        }
    }
    return crc16_xmodem(k, len) & (RCL_SLOTS - 1);
}

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Sleep ms, but not past deadline_ns (monotonic). */
static void sleep_until(int ms, uint64_t deadline_ns)
{
    uint64_t now = clock_mono_ns();
    if (now >= deadline_ns) {
        return;
    }
    uint64_t ns = (uint64_t)ms * 1000000u;
    if (ns > deadline_ns - now) {
        ns = deadline_ns - now;
    }
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Split "host:port" (host may be "[v6]" or empty) into host and port.
 * false on a malformed address. */
static bool addr_parse(const char *s, size_t len, char host[RCL_HOST_MAX + 1], int *port)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL) {
        return false;
    }
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl > RCL_HOST_MAX) {
        return false;
    }
    long p = 0;
    const char *d = colon + 1;
    size_t dl = len - hl - 1 - (h != s ? 2 : 0);
    if (dl == 0 || dl > 5) {
        return false;
    }
    for (size_t i = 0; i < dl; i++) {
        if (d[i] < '0' || d[i] > '9') {
            return false;
        }
        p = p * 10 + (d[i] - '0');
    }
    if (p < 1 || p > 65535) {
        return false;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return true;
}

/* ---- nodes and their pools ----------------------------------------------- */

/* Free k's context and stop its TLS relay (in that order: the relay then
 * sees hiredis's end close, as at any other end of a connection). */
static void conn_drop(rcl_conn *k)
{
    if (k->ctx != NULL) {
        redisFree(k->ctx);
        k->ctx = NULL;
    }
    redis_tls_conn_close(k->tls);
    k->tls = NULL;
}

static void node_free(rcl_node *n)
{
    if (n == NULL) {
        return;
    }
    if (n->conns != NULL) {
        /* Called at close, when every connection is checked in. */
        for (rcl_conn *k = n->free_list; k != NULL; k = k->next) {
            conn_drop(k);
        }
        strata_free(n->conns);
    }
    pthread_cond_destroy(&n->cond);
    pthread_mutex_destroy(&n->lock);
    strata_free(n);
}

/* A node with an unconnected pool. NULL on ENOMEM (message set). */
static rcl_node *node_create(const rcl *c, const char *host, int port)
{
    rcl_node *n = strata_calloc(1, sizeof(*n));
    if (n == NULL) {
        strata_error(STRATA_ENOMEM, "out of memory adding a Redis node");
        return NULL;
    }
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e1 = pthread_mutex_init(&n->lock, NULL);
    int e2 = pthread_cond_init(&n->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e1 != 0 || e2 != 0) {
        if (e1 == 0) {
            pthread_mutex_destroy(&n->lock);
        }
        if (e2 == 0) {
            pthread_cond_destroy(&n->cond);
        }
        strata_free(n);
        strata_error(STRATA_ENOMEM, "cannot initialise a Redis node's lock");
        return NULL;
    }
    n->conns = strata_calloc((size_t)c->o.pool_size, sizeof(*n->conns));
    if (n->conns == NULL) {
        node_free(n);
        strata_error(STRATA_ENOMEM, "out of memory adding a Redis node");
        return NULL;
    }
    for (int i = c->o.pool_size - 1; i >= 0; i--) {
        n->conns[i].next = n->free_list;
        n->free_list = &n->conns[i];
    }
    return n;
}

/* Index of node host:port, adding it if new. -1 on ENOMEM or when
 * RCL_MAX_NODES are known (message set). Takes map_lock. */
static int node_index(rcl *c, const char *host, int port)
{
    int idx = -1;
    pthread_rwlock_rdlock(&c->map_lock);
    for (size_t i = 0; i < c->n_nodes; i++) {
        if (c->nodes[i]->port == port && strcmp(c->nodes[i]->host, host) == 0) {
            idx = (int)i;
            break;
        }
    }
    pthread_rwlock_unlock(&c->map_lock);
    if (idx >= 0) {
        return idx;
    }
    rcl_node *n = node_create(c, host, port); /* outside the lock: it allocates */
    if (n == NULL) {
        return -1;
    }
    pthread_rwlock_wrlock(&c->map_lock);
    for (size_t i = 0; i < c->n_nodes; i++) {
        if (c->nodes[i]->port == port && strcmp(c->nodes[i]->host, host) == 0) {
            idx = (int)i; /* another thread added it meanwhile */
            break;
        }
    }
    if (idx < 0 && c->n_nodes < RCL_MAX_NODES) {
        idx = (int)c->n_nodes;
        c->nodes[c->n_nodes++] = n;
        n = NULL;
    }
    pthread_rwlock_unlock(&c->map_lock);
    node_free(n);
    if (idx < 0) {
        strata_error(STRATA_ETOOBIG, "more than %d Redis nodes", RCL_MAX_NODES);
    }
    return idx;
}

static rcl_node *node_at(rcl *c, int idx)
{
    rcl_node *n = NULL;
    pthread_rwlock_rdlock(&c->map_lock);
    if (idx >= 0 && (size_t)idx < c->n_nodes) {
        n = c->nodes[idx];
    }
    pthread_rwlock_unlock(&c->map_lock);
    return n;
}

/* The master for slot (standalone: the server); NULL if unknown. */
static rcl_node *route(rcl *c, int slot)
{
    if (!c->o.cluster || slot < 0) {
        return node_at(c, 0);
    }
    rcl_node *n = NULL;
    pthread_rwlock_rdlock(&c->map_lock);
    int idx = c->slots[slot];
    if (idx >= 0) {
        n = c->nodes[idx];
    }
    pthread_rwlock_unlock(&c->map_lock);
    return n;
}

/* Check a connection out of n's pool, waiting until deadline_ns if all are
 * in use. STRATA_ETIMEDOUT if none came free. */
static int node_acquire(rcl_node *n, uint64_t deadline_ns, rcl_conn **out)
{
    int rc = STRATA_OK;
    pthread_mutex_lock(&n->lock);
    while (n->free_list == NULL) {
        struct timespec ts = {(time_t)(deadline_ns / 1000000000u),
                              (long)(deadline_ns % 1000000000u)};
        int err = pthread_cond_timedwait(&n->cond, &n->lock, &ts);
        if (err == ETIMEDOUT && n->free_list == NULL) {
            rc = strata_error(STRATA_ETIMEDOUT, "redis %s:%d: every pooled connection is busy",
                              n->host, n->port);
            break;
        }
    }
    if (rc == STRATA_OK) {
        *out = n->free_list;
        n->free_list = (*out)->next;
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

static void node_release(rcl_node *n, rcl_conn *k)
{
    pthread_mutex_lock(&n->lock);
    k->next = n->free_list;
    n->free_list = k;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
}


/* Send a setup command (AUTH, SELECT) on a fresh context and expect +OK.
 * STRATA_EINVAL if the server refuses (a configuration error: retrying will
 * not help), STRATA_EIO on an I/O error. */
static int conn_setup_cmd(redisContext *ctx, const rcl_node *n, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    if (r == NULL) {
        return strata_error(STRATA_EIO, "redis %s:%d: %s: %s", n->host, n->port, argv[0],
                            ctx->errstr);
    }
    int rc = STRATA_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = strata_error(STRATA_EINVAL, "redis %s:%d: %s refused: %.200s", n->host, n->port,
                          argv[0], r->str);
    }
    freeReplyObject(r);
    return rc;
}

/* Connect k to n, with AUTH and SELECT as configured. */
static int conn_open(rcl *c, rcl_node *n, rcl_conn *k)
{
    redisContext *ctx = NULL;
    redis_tls_conn *tls = NULL;
    int rc = STRATA_OK;
    if (c->tls != NULL) {
        rc = redis_tls_connect(c->tls, n->host, n->port, c->o.connect_timeout_ms, &ctx, &tls);
        if (rc != STRATA_OK) {
            return rc;
        }
    } else {
        ctx = redisConnectWithTimeout(n->host, n->port, c->connect_tv);
        if (ctx == NULL) {
            return strata_error(STRATA_ENOMEM, "out of memory connecting to redis");
        }
        if (ctx->err != 0) {
            rc = strata_error(STRATA_EIO, "redis %s:%d: connect: %s", n->host, n->port,
                              ctx->errstr);
            goto fail;
        }
    }
    /* The timeout applies to hiredis's end of the relay just as to a TCP
     * socket: a reply that does not come back in time is an error. */
    if (redisSetTimeout(ctx, c->io_tv) != REDIS_OK) {
        rc = strata_error(STRATA_EIO, "redis %s:%d: cannot set the socket timeout", n->host,
                          n->port);
        goto fail;
    }
    if (tls == NULL) {
        /* Best effort: only speeds up noticing a dead peer. Not on a relay's
         * unix socket (TCP_KEEPIDLE fails there and would poison the
         * context); the relay keeps its TCP socket alive itself. */
        (void)redisEnableKeepAlive(ctx);
    }
    if (c->password != NULL) {
        const char *argv[] = {"AUTH", c->password};
        rc = conn_setup_cmd(ctx, n, 2, argv);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    if (!c->o.cluster && c->o.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->o.db);
        const char *argv[] = {"SELECT", db};
        rc = conn_setup_cmd(ctx, n, 2, argv);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    k->ctx = ctx;
    k->tls = tls;
    atomic_fetch_add(&c->n_connects, 1);
    return STRATA_OK;
fail:
    redisFree(ctx);
    redis_tls_conn_close(tls);
    return rc;
}

/* One exchange on a connected k: [ASKING] command [WAIT], all pipelined.
 * *sent tells whether the command was written whole (after which an error
 * leaves its outcome unknown). On any error the caller drops k. */
static int conn_roundtrip(rcl *c, rcl_conn *k, bool asking, const rcl_call *call, bool wait,
                          redisReply **reply, redisReply **wait_reply, bool *sent)
{
    redisContext *ctx = k->ctx;
    void *r = NULL;
    *sent = false;
    *reply = NULL;
    *wait_reply = NULL;
    if (asking && redisAppendCommand(ctx, "ASKING") != REDIS_OK) {
        return strata_error(STRATA_ENOMEM, "out of memory building a Redis command");
    }
    if (redisAppendCommandArgv(ctx, call->argc, call->argv, call->argvlen) != REDIS_OK) {
        return strata_error(STRATA_ENOMEM, "out of memory building a Redis command");
    }
    if (wait && redisAppendCommand(ctx, "WAIT %d %d", c->o.wait_replicas,
                                   c->o.wait_timeout_ms) != REDIS_OK) {
        return strata_error(STRATA_ENOMEM, "out of memory building a Redis command");
    }
    int done = 0;
    do {
        if (redisBufferWrite(ctx, &done) != REDIS_OK) {
            goto io_error;
        }
    } while (!done);
    *sent = true;
    if (asking) {
        if (redisGetReply(ctx, &r) != REDIS_OK) {
            goto io_error;
        }
        freeReplyObject(r); /* +OK; an error shows up in the next reply anyway */
    }
    if (redisGetReply(ctx, &r) != REDIS_OK) {
        goto io_error;
    }
    *reply = r;
    if (wait) {
        if (redisGetReply(ctx, &r) != REDIS_OK) {
            freeReplyObject(*reply);
            *reply = NULL;
            goto io_error;
        }
        *wait_reply = r;
    }
    return STRATA_OK;
io_error:
    if (ctx->err == REDIS_ERR_OOM) {
        return strata_error(STRATA_ENOMEM, "out of memory reading a Redis reply");
    }
    int tls_rc = STRATA_EIO;
    const char *why = redis_tls_conn_error(k->tls, &tls_rc);
    if (why != NULL) {
        return strata_error(tls_rc, "%s", why); /* says more than hiredis's EOF */
    }
    return strata_error(STRATA_EIO, "redis: %s", ctx->errstr[0] ? ctx->errstr : "I/O error");
}

/* ---- replies ------------------------------------------------------------- */

typedef enum reply_kind {
    RK_PLAIN,                   /* a result, or an error for the caller */
    RK_MOVED,
    RK_ASK,
    RK_BACKOFF,                 /* try again later, same map */
    RK_BACKOFF_REFRESH          /* try again later, after a map refresh */
} reply_kind;

static bool err_is(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);
    return r->len >= n && memcmp(r->str, prefix, n) == 0;
}

static reply_kind classify(const rcl *c, const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ERROR) {
        return RK_PLAIN;
    }
    if (c->o.cluster && err_is(r, "MOVED ")) {
        return RK_MOVED;
    }
    if (c->o.cluster && err_is(r, "ASK ")) {
        return RK_ASK;
    }
    if (err_is(r, "TRYAGAIN") || err_is(r, "LOADING") || err_is(r, "MASTERDOWN")) {
        return RK_BACKOFF;
    }
    if (err_is(r, "CLUSTERDOWN") || err_is(r, "READONLY")) {
        return RK_BACKOFF_REFRESH;
    }
    return RK_PLAIN;
}

/* Parse "MOVED <slot> <host>:<port>" (or ASK). An empty host means "the
 * host you are talking to" (Redis 7 with an unknown endpoint). */
static bool redirect_parse(const redisReply *r, const rcl_node *from, int *slot,
                           char host[RCL_HOST_MAX + 1], int *port)
{
    const char *sp = memchr(r->str, ' ', r->len);
    if (sp == NULL) {
        return false;
    }
    const char *end = r->str + r->len;
    const char *p = sp + 1;
    long s = 0;
    while (p < end && *p >= '0' && *p <= '9' && s < RCL_SLOTS) {
        s = s * 10 + (*p - '0');
        p++;
    }
    if (p >= end || *p != ' ' || s >= RCL_SLOTS) {
        return false;
    }
    p++;
    if (!addr_parse(p, (size_t)(end - p), host, port)) {
        return false;
    }
    if (host[0] == '\0') {
        snprintf(host, RCL_HOST_MAX + 1, "%s", from->host);
    }
    *slot = (int)s;
    return true;
}

/* ---- slot map ------------------------------------------------------------ */

static bool reply_int(const redisReply *r, long long lo, long long hi, long long *out)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi) {
        return false;
    }
    *out = r->integer;
    return true;
}

/* Build a slot map from a CLUSTER SLOTS reply got from node `from` and
 * install it. STRATA_EPROTO on a malformed reply, STRATA_EINVAL when the
 * server is not a cluster node. */
static int map_load(rcl *c, const rcl_node *from, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        return strata_error(STRATA_EINVAL, "redis %s:%d: CLUSTER SLOTS: %.200s", from->host,
                            from->port, r->str);
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        return strata_error(STRATA_EPROTO, "redis: CLUSTER SLOTS: unexpected reply");
    }
    int16_t *map = strata_malloc(sizeof(c->slots));
    if (map == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory loading the Redis slot map");
    }
    for (int i = 0; i < RCL_SLOTS; i++) {
        map[i] = -1;
    }
    int rc = STRATA_OK;
    size_t covered = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long lo;
        long long hi;
        long long port;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            !reply_int(e->element[0], 0, RCL_SLOTS - 1, &lo) ||
            !reply_int(e->element[1], lo, RCL_SLOTS - 1, &hi)) {
            rc = strata_error(STRATA_EPROTO, "redis: CLUSTER SLOTS: malformed range");
            goto done;
        }
        const redisReply *m = e->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0]->type != REDIS_REPLY_STRING || m->element[0]->len > RCL_HOST_MAX ||
            !reply_int(m->element[1], 1, 65535, &port)) {
            rc = strata_error(STRATA_EPROTO, "redis: CLUSTER SLOTS: malformed node");
            goto done;
        }
        char host[RCL_HOST_MAX + 1];
        memcpy(host, m->element[0]->str, m->element[0]->len);
        host[m->element[0]->len] = '\0';
        if (host[0] == '\0' || strcmp(host, "?") == 0) {
            snprintf(host, sizeof(host), "%s", from->host); /* "the node you asked" */
        }
        int idx = node_index(c, host, (int)port);
        if (idx < 0) {
            rc = STRATA_ENOMEM;
            goto done;
        }
        for (long long s = lo; s <= hi; s++) {
            covered += map[s] < 0;
            map[s] = (int16_t)idx;
        }
    }
    if (covered == 0) {
        rc = strata_error(STRATA_EPROTO, "redis %s:%d: CLUSTER SLOTS lists no slot", from->host,
                          from->port);
        goto done;
    }
    pthread_rwlock_wrlock(&c->map_lock);
    memcpy(c->slots, map, sizeof(c->slots));
    pthread_rwlock_unlock(&c->map_lock);
    atomic_fetch_add(&c->n_refreshes, 1);
done:
    strata_free(map);
    return rc;
}

/* One CLUSTER SLOTS exchange with node n, within deadline_ns. */
static int refresh_from(rcl *c, rcl_node *n, uint64_t deadline_ns)
{
    rcl_conn *k = NULL;
    int rc = node_acquire(n, deadline_ns, &k);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (k->ctx == NULL) {
        rc = conn_open(c, n, k);
    }
    if (rc == STRATA_OK) {
        const char *argv[] = {"CLUSTER", "SLOTS"};
        rcl_call call = {RCL_ANY_SLOT, -1, 0, 2, argv, NULL, NULL, -1};
        redisReply *reply = NULL;
        redisReply *wr = NULL;
        bool sent;
        rc = conn_roundtrip(c, k, false, &call, false, &reply, &wr, &sent);
        if (rc == STRATA_OK) {
            rc = map_load(c, n, reply);
            freeReplyObject(reply);
        } else {
            conn_drop(k);
        }
    }
    node_release(n, k);
    return rc;
}

/* Reload the slot map from the first node that answers, starting at a
 * rotating position so a dead node is not always asked first. Caller holds
 * refresh_lock. */
static int refresh_locked(rcl *c, uint64_t deadline_ns)
{
    rcl_node *cand[RCL_MAX_NODES];
    size_t n = 0;
    pthread_rwlock_rdlock(&c->map_lock);
    n = c->n_nodes;
    memcpy(cand, c->nodes, n * sizeof(cand[0]));
    pthread_rwlock_unlock(&c->map_lock);
    int rc = strata_error(STRATA_EIO, "redis: no node answered CLUSTER SLOTS in time");
    unsigned start = atomic_fetch_add(&c->refresh_rr, 1);
    for (size_t i = 0; i < n && clock_mono_ns() < deadline_ns; i++) {
        rc = refresh_from(c, cand[(start + i) % n], deadline_ns);
        if (rc == STRATA_OK || rc == STRATA_ENOMEM) {
            break;
        }
    }
    atomic_store(&c->next_refresh_ns, clock_mono_ns() + RCL_REFRESH_GAP_NS);
    return rc;
}

/* A best-effort refresh from the retry loop: skipped in standalone mode, when
 * one ran less than RCL_REFRESH_GAP_NS ago, or when another thread is running
 * one (its result serves us too). */
static void refresh_maybe(rcl *c, uint64_t deadline_ns)
{
    if (!c->o.cluster || clock_mono_ns() < atomic_load(&c->next_refresh_ns)) {
        return;
    }
    if (pthread_mutex_trylock(&c->refresh_lock) != 0) {
        return;
    }
    /* The caller's error says more than the refresh's: keep it. */
    char saved[256];
    snprintf(saved, sizeof(saved), "%s", strata_errmsg());
    (void)refresh_locked(c, deadline_ns); /* failure: the caller's retries go on */
    pthread_mutex_unlock(&c->refresh_lock);
    strata_error(STRATA_OK, "%s", saved);
}

/* ---- executing calls ----------------------------------------------------- */

/* One attempt on node n: check out a connection, connect if needed, exchange,
 * check in. On an I/O error the connection is dropped. */
static int attempt(rcl *c, rcl_node *n, bool asking, rcl_call *call, bool wait,
                   uint64_t deadline_ns, redisReply **reply, redisReply **wait_reply,
                   bool *sent)
{
    rcl_conn *k = NULL;
    *sent = false;
    int rc = node_acquire(n, deadline_ns, &k);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (k->ctx == NULL) {
        rc = conn_open(c, n, k);
    }
    if (rc == STRATA_OK) {
        rc = conn_roundtrip(c, k, asking, call, wait, reply, wait_reply, sent);
        if (rc != STRATA_OK) {
            conn_drop(k);
        }
    }
    node_release(n, k);
    return rc;
}

int rcl_exec(rcl *c, rcl_call *call)
{
    bool wait = (call->flags & RCL_WRITE) && c->o.wait_replicas > 0;
    uint64_t deadline = clock_mono_ns() + c->budget_ns + (wait ? c->wait_budget_ns : 0);
    int backoff_ms = RCL_BACKOFF_MIN_MS;
    int redirects = 0;
    rcl_node *ask_node = NULL;
    int rc;
    call->reply = NULL;
    call->replicas_acked = -1;
    for (;;) {
        rcl_node *n = ask_node;
        bool asking = ask_node != NULL;
        ask_node = NULL;
        if (n == NULL) {
            n = call->node >= 0 ? node_at(c, call->node) : route(c, call->slot);
        }
        if (n == NULL) {
            rc = strata_error(STRATA_EIO, "redis: no known master for slot %d", call->slot);
            refresh_maybe(c, deadline);
            goto retry;
        }
        redisReply *reply = NULL;
        redisReply *wr = NULL;
        bool sent = false;
        rc = attempt(c, n, asking, call, wait, deadline, &reply, &wr, &sent);
        if (rc == STRATA_ENOMEM || rc == STRATA_EINVAL) {
            return rc; /* no retry helps */
        }
        if (rc != STRATA_OK) {
            if (sent && !(call->flags & RCL_IDEMPOTENT)) {
                return strata_error(STRATA_EIO, "redis %s:%d: connection lost, outcome unknown",
                                    n->host, n->port);
            }
            refresh_maybe(c, deadline);
            goto retry;
        }
        reply_kind kind = call->node >= 0 ? RK_PLAIN : classify(c, reply);
        if (kind == RK_PLAIN) {
            call->reply = reply;
            if (wr != NULL) {
                call->replicas_acked = wr->type == REDIS_REPLY_INTEGER ? (int)wr->integer : 0;
                freeReplyObject(wr);
            }
            return STRATA_OK;
        }
        if (wr != NULL) {
            freeReplyObject(wr);
        }
        if (kind == RK_MOVED || kind == RK_ASK) {
            char host[RCL_HOST_MAX + 1];
            int port;
            int slot;
            if (!redirect_parse(reply, n, &slot, host, &port)) {
                rc = strata_error(STRATA_EPROTO, "redis: bad redirection: %.200s", reply->str);
                freeReplyObject(reply);
                return rc;
            }
            freeReplyObject(reply);
            if (++redirects > RCL_MAX_REDIRECTS) {
                return strata_error(STRATA_EIO, "redis: too many redirections for slot %d",
                                    slot);
            }
            int idx = node_index(c, host, port);
            if (idx < 0) {
                return STRATA_ENOMEM;
            }
            if (kind == RK_ASK) {
                atomic_fetch_add(&c->n_ask, 1);
                ask_node = node_at(c, idx);
            } else {
                atomic_fetch_add(&c->n_moved, 1);
                pthread_rwlock_wrlock(&c->map_lock);
                c->slots[slot] = (int16_t)idx;
                pthread_rwlock_unlock(&c->map_lock);
                refresh_maybe(c, deadline); /* a moved slot rarely moves alone */
            }
            continue; /* redirections are answers, not failures: no backoff */
        }
        rc = strata_error(STRATA_EBUSY, "redis %s:%d: %.200s", n->host, n->port, reply->str);
        freeReplyObject(reply);
        if (kind == RK_BACKOFF_REFRESH) {
            refresh_maybe(c, deadline);
        }
    retry:
        if (clock_mono_ns() >= deadline) {
            char last[256];
            snprintf(last, sizeof(last), "%s", strata_errmsg());
            return strata_error(STRATA_ETIMEDOUT, "redis: deadline passed; last error: %s", last);
        }
        atomic_fetch_add(&c->n_retries, 1);
        sleep_until(backoff_ms, deadline);
        backoff_ms = STRATA_MIN(backoff_ms * 2, RCL_BACKOFF_MAX_MS);
    }
}

static void calls_reset(rcl_call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (calls[i].reply != NULL) {
            freeReplyObject(calls[i].reply);
            calls[i].reply = NULL;
        }
    }
}

/* Pipeline the calls in idx[0..m) (all routed to n) on one connection. A
 * call left without a reply is rerun by the caller. */
static void batch_node(rcl *c, rcl_node *n, rcl_call *calls, const size_t *idx, size_t m,
                       uint64_t deadline_ns)
{
    rcl_conn *k = NULL;
    if (node_acquire(n, deadline_ns, &k) != STRATA_OK) {
        return;
    }
    if (k->ctx == NULL && conn_open(c, n, k) != STRATA_OK) {
        node_release(n, k);
        return;
    }
    redisContext *ctx = k->ctx;
    for (size_t j = 0; j < m; j++) {
        const rcl_call *cl = &calls[idx[j]];
        if (redisAppendCommandArgv(ctx, cl->argc, cl->argv, cl->argvlen) != REDIS_OK) {
            goto drop;
        }
    }
    int done = 0;
    do {
        if (redisBufferWrite(ctx, &done) != REDIS_OK) {
            goto drop;
        }
    } while (!done);
    for (size_t j = 0; j < m; j++) {
        void *r = NULL;
        if (redisGetReply(ctx, &r) != REDIS_OK) {
            goto drop;
        }
        calls[idx[j]].reply = r;
    }
    node_release(n, k);
    return;
drop:
    conn_drop(k);
    node_release(n, k);
}

int rcl_batch(rcl *c, rcl_call *calls, size_t n)
{
    if (n == 0) {
        return STRATA_OK;
    }
    uint64_t deadline = clock_mono_ns() + c->budget_ns;
    rcl_node **owner = strata_calloc(n, sizeof(*owner));
    size_t *idx = strata_malloc(n * sizeof(*idx));
    int rc = STRATA_OK;
    if (owner == NULL || idx == NULL) {
        rc = strata_error(STRATA_ENOMEM, "out of memory batching Redis commands");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        calls[i].reply = NULL;
        calls[i].replicas_acked = -1;
        owner[i] = calls[i].node >= 0 ? node_at(c, calls[i].node) : route(c, calls[i].slot);
    }
    /* Group by node: O(n * nodes), and nodes are few. */
    for (size_t i = 0; i < n; i++) {
        if (owner[i] == NULL) {
            continue;
        }
        rcl_node *node = owner[i];
        size_t m = 0;
        for (size_t j = i; j < n; j++) {
            if (owner[j] == node) {
                idx[m++] = j;
                owner[j] = NULL;
            }
        }
        batch_node(c, node, calls, idx, m, deadline);
    }
    /* The slow path for whatever did not come back as a plain answer. */
    for (size_t i = 0; i < n; i++) {
        rcl_call *cl = &calls[i];
        if (cl->reply != NULL && (cl->node >= 0 || classify(c, cl->reply) == RK_PLAIN)) {
            continue;
        }
        if (cl->reply != NULL) {
            freeReplyObject(cl->reply);
            cl->reply = NULL;
        }
        unsigned flags = cl->flags;
        cl->flags = (flags & ~RCL_WRITE) | RCL_IDEMPOTENT; /* batches are reads */
        rc = rcl_exec(c, cl);
        cl->flags = flags;
        if (rc != STRATA_OK) {
            calls_reset(calls, n);
            goto done;
        }
    }
done:
    strata_free(owner);
    strata_free(idx);
    return rc;
}

size_t rcl_masters(rcl *c, int *idx, size_t cap)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&c->map_lock);
    if (!c->o.cluster) {
        if (cap > 0) {
            idx[n++] = 0;
        }
    } else {
        bool seen[RCL_MAX_NODES] = {false};
        for (int s = 0; s < RCL_SLOTS; s++) {
            int i = c->slots[s];
            if (i >= 0 && !seen[i] && n < cap) {
                seen[i] = true;
                idx[n++] = i;
            }
        }
    }
    pthread_rwlock_unlock(&c->map_lock);
    return n;
}

/* ---- open, close, stats -------------------------------------------------- */

bool rcl_is_cluster(const rcl *c)
{
    return c->o.cluster;
}

void rcl_stats_get(rcl *c, rcl_stats *out)
{
    out->moved = atomic_load(&c->n_moved);
    out->ask = atomic_load(&c->n_ask);
    out->retries = atomic_load(&c->n_retries);
    out->refreshes = atomic_load(&c->n_refreshes);
    out->connects = atomic_load(&c->n_connects);
}

void rcl_close(rcl *c)
{
    if (c == NULL) {
        return;
    }
    if (c->nodes != NULL) {
        for (size_t i = 0; i < c->n_nodes; i++) {
            node_free(c->nodes[i]);
        }
        strata_free(c->nodes);
    }
    if (c->addr_copies != NULL) {
        for (size_t i = 0; i < c->o.n_addrs; i++) {
            strata_free(c->addr_copies[i]);
        }
        strata_free(c->addr_copies);
    }
    strata_free(c->password);
    redis_tls_free(c->tls); /* after the nodes: their relays used its SSL_CTX */
    pthread_mutex_destroy(&c->refresh_lock);
    pthread_rwlock_destroy(&c->map_lock);
    strata_free(c);
}

static int options_check(const rcl_options *o)
{
    if (o->addrs == NULL || o->n_addrs == 0) {
        return strata_error(STRATA_EINVAL, "redis: no server address");
    }
    if (!o->cluster && o->n_addrs > 1) {
        return strata_error(STRATA_EINVAL, "redis: several addresses need cluster mode");
    }
    if (o->cluster && o->db != 0) {
        return strata_error(STRATA_EINVAL, "redis: Redis Cluster has only database 0");
    }
    if (o->db < 0 || o->connect_timeout_ms <= 0 || o->command_timeout_ms <= 0 ||
        o->pool_size < 1 || o->pool_size > 64 || o->wait_replicas < 0 ||
        (o->wait_replicas > 0 && o->wait_timeout_ms <= 0)) {
        return strata_error(STRATA_EINVAL, "redis: bad connection options");
    }
    return STRATA_OK;
}

/* Standalone: PING the server once, so a wrong address fails at open. */
static int ping_check(rcl *c)
{
    const char *argv[] = {"PING"};
    rcl_call call = {RCL_ANY_SLOT, 0, RCL_IDEMPOTENT, 1, argv, NULL, NULL, -1};
    int rc = rcl_exec(c, &call);
    if (rc != STRATA_OK) {
        return rc;
    }
    if (call.reply->type == REDIS_REPLY_ERROR) {
        rc = strata_error(STRATA_EINVAL, "redis: PING: %.200s", call.reply->str);
    }
    freeReplyObject(call.reply);
    return rc;
}

int rcl_open(const rcl_options *o, rcl **out)
{
    *out = NULL;
    int rc = options_check(o);
    if (rc != STRATA_OK) {
        return rc;
    }
    rcl *c = strata_calloc(1, sizeof(*c));
    if (c == NULL) {
        return strata_error(STRATA_ENOMEM, "out of memory opening a Redis connection");
    }
    c->o = *o;
    if (pthread_rwlock_init(&c->map_lock, NULL) != 0) {
        strata_free(c);
        return strata_error(STRATA_ENOMEM, "cannot initialise a lock");
    }
    if (pthread_mutex_init(&c->refresh_lock, NULL) != 0) {
        pthread_rwlock_destroy(&c->map_lock);
        strata_free(c);
        return strata_error(STRATA_ENOMEM, "cannot initialise a lock");
    }
    for (int i = 0; i < RCL_SLOTS; i++) {
        c->slots[i] = -1;
    }
    c->connect_tv = ms_to_tv(o->connect_timeout_ms);
    /* A socket timeout below WAIT's own would cut every slow WAIT short. */
    int io_ms = o->command_timeout_ms + (o->wait_replicas > 0 ? o->wait_timeout_ms : 0);
    c->io_tv = ms_to_tv(io_ms);
    c->budget_ns = (uint64_t)o->command_timeout_ms * 1000000u;
    c->wait_budget_ns = o->wait_replicas > 0 ? (uint64_t)o->wait_timeout_ms * 1000000u : 0;
    c->nodes = strata_calloc(RCL_MAX_NODES, sizeof(*c->nodes));
    c->addr_copies = strata_calloc(o->n_addrs, sizeof(char *));
    if (o->password != NULL && o->password[0] != '\0') {
        c->password = strata_strdup(o->password);
        if (c->password == NULL) {
            goto nomem;
        }
    }
    c->o.password = c->password;
    if (c->nodes == NULL || c->addr_copies == NULL) {
        goto nomem;
    }
    if (o->tls != NULL) {
        rc = redis_tls_create(o->tls, &c->tls);
        if (rc != STRATA_OK) {
            goto fail;
        }
    }
    c->o.tls = NULL; /* the caller's struct is not ours to keep */
    for (size_t i = 0; i < o->n_addrs; i++) {
        c->addr_copies[i] = strata_strdup(o->addrs[i] != NULL ? o->addrs[i] : "");
        if (c->addr_copies[i] == NULL) {
            goto nomem;
        }
    }
    c->o.addrs = (const char *const *)c->addr_copies;
    for (size_t i = 0; i < o->n_addrs; i++) {
        char host[RCL_HOST_MAX + 1];
        int port;
        if (!addr_parse(c->addr_copies[i], strlen(c->addr_copies[i]), host, &port) ||
            host[0] == '\0') {
            rc = strata_error(STRATA_EINVAL, "redis: bad address \"%.100s\" (want host:port)",
                              c->addr_copies[i]);
            goto fail;
        }
        if (node_index(c, host, port) < 0) {
            rc = STRATA_ENOMEM;
            goto fail;
        }
    }
    if (o->cluster) {
        pthread_mutex_lock(&c->refresh_lock);
        rc = refresh_locked(c, clock_mono_ns() + c->budget_ns);
        pthread_mutex_unlock(&c->refresh_lock);
    } else {
        rc = ping_check(c);
    }
    if (rc != STRATA_OK) {
        goto fail;
    }
    *out = c;
    return STRATA_OK;
nomem:
    rc = strata_error(STRATA_ENOMEM, "out of memory opening a Redis connection");
fail:
    rcl_close(c);
    return rc;
}
