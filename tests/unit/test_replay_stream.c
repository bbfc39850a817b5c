/*
 * test_replay_stream.c - the event log's Redis Stream copy
 * (src/log/replay_stream.c) against a real redis-server started here
 * (tests/support/redis_server.h): records round-trip byte-exact through XADD
 * and a batched XRANGE scan, MINID trimming drops old entries, malformed
 * entries are STRATA_ECORRUPT naming the entry, a dead server is an error
 * and not a crash, and concurrent appenders lose nothing.
 *
 * Trimming is tested for real rather than by reading the command back
 * (MONITOR): ids are stamped by Redis's clock, so the test appends, waits
 * past a 1 s retention and appends again. `~` trims whole radix-tree nodes
 * only (100 entries each by default), so the test first sets
 * stream-node-max-entries to 1, making approximate trimming exact, and
 * restores it after. A second check with retention 0 shows nothing is
 * trimmed then.
 *
 * One shared server serves most tests, each on its own key; the server-down
 * test starts and kills its own, and the cluster test starts a 3-master Redis
 * Cluster (tests/support/redis_cluster.sh) to check slot routing. Without redis-server in PATH the file
 * prints a skip line and passes.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "pipeline/replay_stream.h"
#include "test.h"
#include "../support/redis_server.h"

static redis_server g_srv = {.pid = -1};

static void stop_shared(void)
{
    redis_server_stop(&g_srv);
}

/* The shared server, started on first use; NULL if it cannot start. Exits 0
 * (skip) when redis-server is not installed. */
static const redis_server *shared(void)
{
    static int tried;
    if (!tried) {
        tried = 1;
        if (!redis_server_available()) {
            printf("skip: redis-server not in PATH; test_replay_stream passes vacuously\n");
            exit(0);
        }
        atexit(stop_shared);
        if (redis_server_start(&g_srv) != 0) {
            fprintf(stderr, "  could not start redis-server\n");
        }
    }
    return g_srv.pid > 0 ? &g_srv : NULL;
}

static const char *g_addr[1];

static void options_for(replay_stream_options *o, const redis_server *s, const char *key)
{
    replay_stream_options_init(o);
    g_addr[0] = s->addr;
    o->addresses = g_addr;
    o->n_addresses = 1;
    o->key = key;
}

/* ---- records to send, and what came back ------------------------------------ */

/* Deterministic record i: varied tenant lengths (1..128), payload lengths
 * (0 .. ~600, one of 70 KB) full of NUL and high bytes, types, flags and
 * timestamps (some negative). Buffers are caller-provided. */
static void make_record(uint64_t i, aol_record *r, char *tenant, uint8_t *payload)
{
    size_t tlen = 1 + (size_t)(i * 7 % AOL_MAX_TENANT);
    for (size_t k = 0; k < tlen; k++) {
        tenant[k] = (char)('a' + (i + k) % 26);
    }
    size_t plen = i == 7 ? 70000 : (size_t)(i * 37 % 600);
    for (size_t k = 0; k < plen; k++) {
        payload[k] = (uint8_t)((i * 131 + k * 17) % 256); /* many 0x00 and 0xff */
    }
    static const uint8_t types[] = {AOL_TURN,    AOL_SESSION_STAGE, AOL_SESSION_END,
                                    AOL_SESSION_EXPIRE, AOL_KV_PUT, AOL_MEM_ADD,
                                    AOL_DISTILL_APPLY,  AOL_TYPE_MAX};
    *r = (aol_record){
        .lsn = i + 1,
        .ts_ms = i % 50 == 3 ? -(int64_t)i : 1706500000000 + (int64_t)i,
        .type = types[i % sizeof(types)],
        .flags = (uint8_t)(i % 5 == 0 ? i % 256 : 0),
        .tenant = tenant,
        .tenant_len = tlen,
        .payload = payload,
        .payload_len = plen,
    };
}

typedef struct collect {
    uint64_t n;                 /* records seen */
    uint64_t bad;               /* records that differ from make_record(n) */
    uint64_t first_bad;         /* lsn of the first that differs */
} collect;

static int check_cb(void *ctx, const aol_record *got)
{
    collect *c = ctx;
    static char tenant[AOL_MAX_TENANT];
    static uint8_t payload[70000];
    aol_record want;
    make_record(c->n, &want, tenant, payload);
    bool same = got->lsn == want.lsn && got->ts_ms == want.ts_ms && got->type == want.type &&
                got->flags == want.flags && got->tenant_len == want.tenant_len &&
                memcmp(got->tenant, want.tenant, want.tenant_len) == 0 &&
                got->payload_len == want.payload_len &&
                (want.payload_len == 0 ||
                 memcmp(got->payload, want.payload, want.payload_len) == 0);
    if (!same && c->bad++ == 0) {
        c->first_bad = want.lsn;
    }
    c->n++;
    return 0;
}

static int count_cb(void *ctx, const aol_record *rec)
{
    (void)rec;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int append_range(replay_stream *rs, uint64_t from, uint64_t to)
{
    static char tenant[AOL_MAX_TENANT];
    static uint8_t payload[70000];
    for (uint64_t i = from; i < to; i++) {
        aol_record r;
        make_record(i, &r, tenant, payload);
        int rc = replay_stream_append(rs, &r);
        if (rc != STRATA_OK) {
            fprintf(stderr, "  append %" PRIu64 ": %s\n", i, strata_errmsg());
            return rc;
        }
    }
    return STRATA_OK;
}

/* ---- tests ------------------------------------------------------------------- */

TEST(bad_options)
{
    replay_stream_options o;
    replay_stream *rs = (replay_stream *)&o;
    replay_stream_options_init(&o);
    ASSERT_STREQ(o.key, "strata:replay");
    ASSERT_EQ(o.retention_s, 7 * 24 * 3600);
    ASSERT_EQ(replay_stream_open(&o, &rs), STRATA_EINVAL); /* no address */
    ASSERT_TRUE(rs == NULL);
    const char *two[2] = {"127.0.0.1:1", "127.0.0.1:2"};
    o.addresses = two;
    o.n_addresses = 2;
    ASSERT_EQ(replay_stream_open(&o, &rs), STRATA_EINVAL); /* several, not cluster */
    o.n_addresses = 1;
    o.key = "";
    ASSERT_EQ(replay_stream_open(&o, &rs), STRATA_EINVAL);
    o.key = NULL; /* NULL means the default */
    o.timeout_ms = 0;
    ASSERT_EQ(replay_stream_open(&o, &rs), STRATA_EINVAL);
    o.timeout_ms = 100;
    o.pool_size = 65;
    ASSERT_EQ(replay_stream_open(&o, &rs), STRATA_EINVAL);
    ASSERT_EQ(replay_stream_scan(&o, count_cb, NULL), STRATA_EINVAL);
    replay_stream_close(NULL);
}

/* Decoding without a server: every malformation is ECORRUPT naming the id. */
TEST(decode)
{
    aol_record r;
    const char *ok[] = {"lsn", "42", "ts", "-5", "type", "1", "tenant", "acme", "payload", "",
                        "future", "x"};
    size_t okl[] = {3, 2, 2, 2, 4, 1, 6, 4, 7, 0, 6, 1};
    ASSERT_OK(replay_stream_decode("1-1", ok, okl, 12, &r));
    ASSERT_EQ(r.lsn, 42);
    ASSERT_EQ(r.ts_ms, -5);
    ASSERT_EQ(r.type, AOL_TURN);
    ASSERT_EQ(r.flags, 0);
    ASSERT_EQ(r.tenant_len, 4);
    ASSERT_EQ(r.payload_len, 0);
    ASSERT_EQ(replay_stream_decode("1-2", ok, okl, 11, &r), STRATA_ECORRUPT); /* odd count */
    ASSERT_TRUE(strstr(strata_errmsg(), "1-2") != NULL);
    ASSERT_EQ(replay_stream_decode("1-3", ok, okl, 8, &r), STRATA_ECORRUPT);  /* no payload */
    ASSERT_TRUE(strstr(strata_errmsg(), "payload") != NULL);

    static const struct {
        const char *field;
        const char *value;
    } bad[] = {
        {"lsn", "0"},   {"lsn", "-1"},  {"lsn", "01"},  {"lsn", "18446744073709551616"},
        {"lsn", ""},    {"lsn", "1 "},  {"ts", "--1"},  {"ts", "-0"},
        {"ts", "9223372036854775808"},  {"type", "0"},  {"type", "256"},
        {"tenant", ""}, {"flags", "256"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[12];
        size_t argvlen[12];
        memcpy(argv, ok, sizeof(argv));
        memcpy(argvlen, okl, sizeof(argvlen));
        size_t at = 10; /* the field's own slot; flags replaces the unknown field */
        for (size_t f = 0; f < 10; f += 2) {
            at = strcmp(ok[f], bad[i].field) == 0 ? f : at;
        }
        argv[at] = bad[i].field;
        argvlen[at] = strlen(bad[i].field);
        argv[at + 1] = bad[i].value;
        argvlen[at + 1] = strlen(bad[i].value);
        int rc = replay_stream_decode("7-0", argv, argvlen, 12, &r);
        if (rc != STRATA_ECORRUPT) {
            TEST_FAIL_("%s=\"%s\" accepted (rc %d)", bad[i].field, bad[i].value, rc);
        }
        ASSERT_TRUE(strstr(strata_errmsg(), "7-0") != NULL);
    }
    /* A 129-byte tenant. */
    char long_tenant[AOL_MAX_TENANT + 1];
    memset(long_tenant, 't', sizeof(long_tenant));
    const char *argv[10];
    size_t argvlen[10];
    memcpy(argv, ok, sizeof(argv));
    memcpy(argvlen, okl, sizeof(argvlen));
    argv[7] = long_tenant;
    argvlen[7] = sizeof(long_tenant);
    ASSERT_EQ(replay_stream_decode("8-0", argv, argvlen, 10, &r), STRATA_ECORRUPT);
    argv[7] = "acme";
    argvlen[7] = 4;
    argv[0] = "payload"; /* a field twice (and no lsn) */
    argvlen[0] = 7;
    ASSERT_EQ(replay_stream_decode("8-1", argv, argvlen, 10, &r), STRATA_ECORRUPT);
    ASSERT_TRUE(strstr(strata_errmsg(), "twice") != NULL);
    /* flags, and the largest values. */
    const char *big[] = {"lsn", "18446744073709551615", "ts", "-9223372036854775808", "type",
                         "255", "tenant", "t", "payload", "p", "flags", "255"};
    size_t bigl[12];
    for (int i = 0; i < 12; i++) {
        bigl[i] = strlen(big[i]);
    }
    ASSERT_OK(replay_stream_decode("9-0", big, bigl, 12, &r));
    ASSERT_TRUE(r.lsn == UINT64_MAX);
    ASSERT_TRUE(r.ts_ms == INT64_MIN);
    ASSERT_EQ(r.type, 255);
    ASSERT_EQ(r.flags, 255);
}

/* 2500 records (three XRANGE batches) come back identical and in order. */
TEST(roundtrip)
{
    const redis_server *s = shared();
    ASSERT_TRUE(s != NULL);
    replay_stream_options o;
    options_for(&o, s, "rs:{t}:roundtrip");
    replay_stream *rs = NULL;
    ASSERT_OK(replay_stream_open(&o, &rs));
    int rc = append_range(rs, 0, 2500);
    replay_stream_close(rs);
    ASSERT_OK(rc);
    ASSERT_EQ(redis_server_int(s, "XLEN %s", o.key), 2500);
    collect c = {0};
    ASSERT_OK(replay_stream_scan(&o, check_cb, &c));
    ASSERT_EQ(c.n, 2500);
    ASSERT_EQ(c.bad, 0);
    /* Appending more after a scan, then scanning again, sees all. */
    ASSERT_OK(replay_stream_open(&o, &rs));
    rc = append_range(rs, 2500, 2600);
    replay_stream_close(rs);
    ASSERT_OK(rc);
    c = (collect){0};
    ASSERT_OK(replay_stream_scan(&o, check_cb, &c));
    ASSERT_EQ(c.n, 2600);
    ASSERT_EQ(c.bad, 0);
}

static int stop_at_10(void *ctx, const aol_record *rec)
{
    (*(uint64_t *)ctx)++;
    return rec->lsn == 10 ? 77 : 0;
}

TEST(scan_stop_and_empty)
{
    const redis_server *s = shared();
    ASSERT_TRUE(s != NULL);
    replay_stream_options o;
    options_for(&o, s, "rs:absent");
    uint64_t n = 0;
    ASSERT_OK(replay_stream_scan(&o, count_cb, &n)); /* absent key: empty */
    ASSERT_EQ(n, 0);
    o.key = "rs:stop";
    replay_stream *rs = NULL;
    ASSERT_OK(replay_stream_open(&o, &rs));
    int rc = append_range(rs, 0, 50);
    replay_stream_close(rs);
    ASSERT_OK(rc);
    ASSERT_EQ(replay_stream_scan(&o, stop_at_10, &n), 77); /* cb's result comes back */
    ASSERT_EQ(n, 10);
}

TEST(trimming)
{
    const redis_server *s = shared();
    ASSERT_TRUE(s != NULL);
    redisReply *r = redis_server_cmd(s, "CONFIG SET stream-node-max-entries 1");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    replay_stream_options o;
    options_for(&o, s, "rs:trim");
    o.retention_s = 1;
    replay_stream_options keep;
    options_for(&keep, s, "rs:keep");
    keep.retention_s = 0; /* never trim */
    replay_stream *rs = NULL;
    replay_stream *rs_keep = NULL;
    int rc = replay_stream_open(&o, &rs);
    if (rc == STRATA_OK) {
        rc = replay_stream_open(&keep, &rs_keep);
    }
    if (rc == STRATA_OK) {
        rc = append_range(rs, 0, 5);
    }
    if (rc == STRATA_OK) {
        rc = append_range(rs_keep, 0, 5);
    }
    long long before = redis_server_int(s, "XLEN %s", o.key);
    redis_server_sleep_ms(1200); /* past the 1 s retention, by Redis's clock too */
    if (rc == STRATA_OK) {
        rc = append_range(rs, 5, 6);
    }
    if (rc == STRATA_OK) {
        rc = append_range(rs_keep, 5, 6);
    }
    replay_stream_close(rs);
    replay_stream_close(rs_keep);
    r = redis_server_cmd(s, "CONFIG SET stream-node-max-entries 100");
    if (r != NULL) {
        freeReplyObject(r);
    }
    ASSERT_OK(rc);
    ASSERT_EQ(before, 5);
    ASSERT_EQ(redis_server_int(s, "XLEN %s", o.key), 1);      /* the 5 old ones trimmed */
    ASSERT_EQ(redis_server_int(s, "XLEN %s", keep.key), 6);   /* retention 0: all kept */
    uint64_t n = 0;
    ASSERT_EQ(replay_stream_scan(&o, stop_at_10, &n), 0);
    ASSERT_EQ(n, 1);
}

/* Junk XADD'ed by hand: the scan delivers the good entries before it, then
 * fails with ECORRUPT naming the junk entry's id. */
TEST(malformed)
{
    const redis_server *s = shared();
    ASSERT_TRUE(s != NULL);
    static const char *const junk[] = {
        "XADD rs:bad:1 * lsn 1 ts 5 type 1 tenant acme",                 /* no payload */
        "XADD rs:bad:2 * lsn x ts 5 type 1 tenant acme payload p",       /* bad lsn */
        "XADD rs:bad:3 * lsn 1 ts 5 type 300 tenant acme payload p",     /* bad type */
        "XADD rs:bad:4 * lsn 1 ts 5 type 1 tenant acme payload p lsn 2", /* twice */
        "XADD rs:bad:5 * hello world",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        char key[16];
        snprintf(key, sizeof(key), "rs:bad:%zu", i + 1);
        replay_stream_options o;
        options_for(&o, s, key);
        replay_stream *rs = NULL;
        ASSERT_OK(replay_stream_open(&o, &rs));
        int rc = append_range(rs, 0, 3);
        replay_stream_close(rs);
        ASSERT_OK(rc);
        redisReply *r = redis_server_cmd(s, junk[i]);
        ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STRING);
        char id[64];
        snprintf(id, sizeof(id), "%s", r->str);
        freeReplyObject(r);
        collect c = {0};
        ASSERT_EQ(replay_stream_scan(&o, check_cb, &c), STRATA_ECORRUPT);
        ASSERT_EQ(c.n, 3);
        ASSERT_EQ(c.bad, 0);
        if (strstr(strata_errmsg(), id) == NULL) {
            TEST_FAIL_("message \"%s\" does not name entry %s", strata_errmsg(), id);
        }
    }
}

/* A key of another type: a Redis error, reported, no crash. */
TEST(wrong_type)
{
    const redis_server *s = shared();
    ASSERT_TRUE(s != NULL);
    redisReply *r = redis_server_cmd(s, "SET rs:string hello");
    ASSERT_TRUE(r != NULL);
    freeReplyObject(r);
    replay_stream_options o;
    options_for(&o, s, "rs:string");
    replay_stream *rs = NULL;
    ASSERT_OK(replay_stream_open(&o, &rs));
    aol_record rec = {.lsn = 1, .ts_ms = 1, .type = AOL_TURN, .tenant = "t", .tenant_len = 1};
    int rc = replay_stream_append(rs, &rec);
    replay_stream_close(rs);
    ASSERT_EQ(rc, STRATA_EIO);
    ASSERT_TRUE(strstr(strata_errmsg(), "WRONGTYPE") != NULL);
    uint64_t n = 0;
    ASSERT_EQ(replay_stream_scan(&o, count_cb, &n), STRATA_EIO);
}

TEST(server_down)
{
    shared(); /* the skip check */
    replay_stream_options o;
    char addr[32];
    const char *addrs[1] = {addr};
    replay_stream_options_init(&o);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", redis_server_free_port());
    o.addresses = addrs;
    o.n_addresses = 1;
    o.timeout_ms = 300;
    replay_stream *rs = (replay_stream *)&o;
    int rc = replay_stream_open(&o, &rs); /* nobody listening */
    ASSERT_TRUE(rc == STRATA_EIO || rc == STRATA_ETIMEDOUT);
    ASSERT_TRUE(rs == NULL);
    rc = replay_stream_scan(&o, count_cb, NULL);
    ASSERT_TRUE(rc == STRATA_EIO || rc == STRATA_ETIMEDOUT);

    /* A server that dies under an open handle. */
    redis_server own;
    ASSERT_EQ(redis_server_start(&own), 0);
    snprintf(addr, sizeof(addr), "%s", own.addr);
    rc = replay_stream_open(&o, &rs);
    if (rc == STRATA_OK) {
        rc = append_range(rs, 0, 10);
    }
    redis_server_stop(&own);
    int rc_down = STRATA_OK;
    uint64_t t0 = clock_mono_ns();
    if (rc == STRATA_OK) {
        aol_record rec = {.lsn = 11, .ts_ms = 1, .type = AOL_TURN, .tenant = "t",
                          .tenant_len = 1, .payload = (const uint8_t *)"x", .payload_len = 1};
        rc_down = replay_stream_append(rs, &rec);
    }
    uint64_t took_ms = (clock_mono_ns() - t0) / 1000000;
    replay_stream_close(rs);
    ASSERT_OK(rc);
    ASSERT_TRUE(rc_down == STRATA_EIO || rc_down == STRATA_ETIMEDOUT);
    ASSERT_TRUE(took_ms < 2000); /* bounded by timeout_ms (300) plus slack */
}

/* ---- concurrent appenders -------------------------------------------------------- */

#define CC_THREADS 8
#define CC_PER_THREAD 250

typedef struct cc_arg {
    replay_stream *rs;
    int t;
    int rc;
} cc_arg;

static void *cc_writer(void *p)
{
    cc_arg *a = p;
    char tenant[8];
    uint8_t payload[16];
    snprintf(tenant, sizeof(tenant), "t%d", a->t);
    for (int i = 0; i < CC_PER_THREAD && a->rc == STRATA_OK; i++) {
        memset(payload, 0, sizeof(payload));
        memcpy(payload + 3, &i, sizeof(i));
        aol_record r = {.lsn = (uint64_t)a->t * 100000 + (uint64_t)i + 1, .ts_ms = i,
                        .type = AOL_TURN, .tenant = tenant, .tenant_len = strlen(tenant),
                        .payload = payload, .payload_len = sizeof(payload)};
        a->rc = replay_stream_append(a->rs, &r);
    }
    return NULL;
}

typedef struct cc_check {
    uint64_t n;
    uint64_t next[CC_THREADS];  /* next lsn expected from each thread */
    uint64_t errors;
} cc_check;

static int cc_cb(void *ctx, const aol_record *r)
{
    cc_check *c = ctx;
    uint64_t t = r->lsn / 100000;
    uint64_t i = r->lsn % 100000 - 1;
    char tenant[8];
    uint8_t payload[16] = {0};
    int ii = (int)i;
    memcpy(payload + 3, &ii, sizeof(ii));
    if (t >= CC_THREADS) {
        c->errors++;
        return 0;
    }
    snprintf(tenant, sizeof(tenant), "t%d", (int)t);
    /* Each thread's records arrive in its own order, none lost or doubled. */
    if (i != c->next[t] || r->tenant_len != strlen(tenant) ||
        memcmp(r->tenant, tenant, r->tenant_len) != 0 || r->payload_len != sizeof(payload) ||
        memcmp(r->payload, payload, sizeof(payload)) != 0 || r->ts_ms != (int64_t)i) {
        c->errors++;
    }
    c->next[t] = i + 1;
    c->n++;
    return 0;
}

TEST(concurrent_appenders)
{
    const redis_server *s = shared();
    ASSERT_TRUE(s != NULL);
    replay_stream_options o;
    options_for(&o, s, "rs:{cc}");
    replay_stream *rs = NULL;
    ASSERT_OK(replay_stream_open(&o, &rs));
    pthread_t th[CC_THREADS];
    cc_arg args[CC_THREADS];
    for (int t = 0; t < CC_THREADS; t++) {
        args[t] = (cc_arg){rs, t, STRATA_OK};
        if (pthread_create(&th[t], NULL, cc_writer, &args[t]) != 0) {
            args[t].rc = STRATA_EIO;
            th[t] = 0;
        }
    }
    for (int t = 0; t < CC_THREADS; t++) {
        if (th[t] != 0) {
            pthread_join(th[t], NULL);
        }
    }
    replay_stream_close(rs);
    for (int t = 0; t < CC_THREADS; t++) {
        ASSERT_OK(args[t].rc);
    }
    cc_check c = {0};
    ASSERT_OK(replay_stream_scan(&o, cc_cb, &c));
    ASSERT_EQ(c.n, CC_THREADS * CC_PER_THREAD);
    ASSERT_EQ(c.errors, 0);
    for (int t = 0; t < CC_THREADS; t++) {
        ASSERT_EQ(c.next[t], CC_PER_THREAD);
    }
}

/* ---- Redis Cluster ------------------------------------------------------------------ */

#define CL_NODES 3

static char g_cluster_dir[512];

static void cluster_script(char *out, size_t cap)
{
    const char *env = getenv("STRATA_REDIS_CLUSTER_SH");
    if (env != NULL) {
        snprintf(out, cap, "%s", env);
        return;
    }
    /* tests/unit/<this file> -> tests/support/redis_cluster.sh */
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    size_t keep = slash != NULL ? (size_t)(slash - out) : 0;
    out[keep] = '\0';
    slash = strrchr(out, '/');
    keep = slash != NULL ? (size_t)(slash - out) + 1 : 0;
    snprintf(out + keep, cap - keep, "support/redis_cluster.sh");
}

static void cluster_stop(void)
{
    if (g_cluster_dir[0] != '\0') {
        char script[512];
        char cmd[2048];
        cluster_script(script, sizeof(script));
        snprintf(cmd, sizeof(cmd), "'%s' stop '%s'", script, g_cluster_dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not stop the cluster in %s\n", g_cluster_dir);
        }
        g_cluster_dir[0] = '\0';
    }
}

/* Three masters, no replicas: enough to check slot routing and MOVED. Keys
 * with different hash tags land on different masters; the only seed given is
 * one node, so most keys are reached through the slot map. */
TEST(cluster)
{
    shared(); /* the skip check */
    char script[512];
    char cmd[2048];
    cluster_script(script, sizeof(script));
    snprintf(cmd, sizeof(cmd), "'%s' start -n %d -r 0 -w %d", script, CL_NODES, (int)getpid());
    FILE *f = popen(cmd, "r");
    char line[512];
    int ports[CL_NODES];
    int n_ports = 0;
    atexit(cluster_stop);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "REDIS_CLUSTER_DIR=", 18) == 0) {
            snprintf(g_cluster_dir, sizeof(g_cluster_dir), "%s", line + 18);
        } else if (strncmp(line, "REDIS_CLUSTER_PORTS=\"", 21) == 0) {
            char *p = line + 21;
            while (n_ports < CL_NODES && *p != '\0' && *p != '"') {
                ports[n_ports++] = (int)strtol(p, &p, 10);
                p += *p == ' ';
            }
        }
    }
    int st = f != NULL ? pclose(f) : -1;
    ASSERT_EQ(st, 0);
    ASSERT_EQ(n_ports, CL_NODES);
    char addr[32];
    const char *addrs[1] = {addr};
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ports[0]);
    static const char *const keys[] = {"strata:{replay}", "strata:{a}", "strata:{b}",
                                       "strata:{c}"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        replay_stream_options o;
        replay_stream_options_init(&o);
        o.addresses = addrs;
        o.n_addresses = 1;
        o.cluster = true;
        o.key = keys[k];
        replay_stream *rs = NULL;
        ASSERT_OK(replay_stream_open(&o, &rs));
        int rc = append_range(rs, 0, 1200); /* two XRANGE batches */
        replay_stream_close(rs);
        ASSERT_OK(rc);
        collect c = {0};
        ASSERT_OK(replay_stream_scan(&o, check_cb, &c));
        ASSERT_EQ(c.n, 1200);
        ASSERT_EQ(c.bad, 0);
    }
    cluster_stop();
}

TEST_MAIN(TEST_ENTRY(bad_options), TEST_ENTRY(decode), TEST_ENTRY(roundtrip),
          TEST_ENTRY(scan_stop_and_empty), TEST_ENTRY(trimming), TEST_ENTRY(malformed),
          TEST_ENTRY(wrong_type), TEST_ENTRY(server_down), TEST_ENTRY(concurrent_appenders),
          TEST_ENTRY(cluster))
