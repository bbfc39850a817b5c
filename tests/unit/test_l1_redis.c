/*
 * test_l1_redis.c - the L1 Redis backend (src/l1/l1_redis.c,
 * src/l1/redis_cluster.c) against real redis-server processes: the
 * behavioural checks of test_l1.c run against a standalone server and against
 * a 3-master/3-replica Redis Cluster (tests/support/redis_cluster.sh), plus
 * Redis-specific ones (exact key names, index repair and reindex, restart of
 * a standalone server under an open store) and a failover test: a writer
 * appends with WAIT 1 while a master is killed with SIGKILL; the store must
 * follow the promotion, and every acknowledged turn must survive.
 *
 * The same checks also run over TLS (src/l1/redis_tls.c): against a standalone
 * server with a TLS port, and a 3-master cluster with tls-cluster on
 * (redis_cluster.sh -T), certificates made at test time; plus TLS failures
 * that must be clear errors, not hangs: wrong CA, wrong name, plain client on
 * the TLS port and TLS on the plain port, a required client certificate, bad
 * files; and the relay's own cases (server closing connections, values larger
 * than a TLS record, no thread left after close, the replay stream over TLS).
 * TLS servers keep a plain port too, used only by the raw helpers below.
 *
 * Servers start lazily (a single test can be run by name), each in a fresh
 * temporary directory, and are stopped at exit; a crash cannot leave them
 * behind (PR_SET_PDEATHSIG for the standalone server, the cluster script's
 * watcher for the cluster). redis-server is found through PATH; without it
 * the whole file prints a skip line and passes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "l1/l1_redis.h"
#include "l1/redis_cluster.h"
#include "pipeline/replay_stream.h"
#include "test.h"
#include "../support/redis_server.h"

#define CLUSTER_NODES 6

typedef struct backend {
    const char *name;
    bool cluster;
    int ports[CLUSTER_NODES];   /* standalone: ports[0] */
    int n_ports;
    char addr[CLUSTER_NODES][32];
    const char *addrs[CLUSTER_NODES];   /* what the store connects to (TLS ports with TLS) */
    const redis_tls_options *tls;       /* NULL: plain; ports[] are then plain ports too */
} backend;

static backend g_standalone = {.name = "standalone"};
static backend g_cluster = {.name = "cluster", .cluster = true};
static backend g_tls = {.name = "tls"};
static backend g_tls_cluster = {.name = "tls_cluster", .cluster = true};
static pid_t g_standalone_pid = -1;
static char g_standalone_dir[512];
static char g_cluster_dir[512];
static char g_tls_cluster_dir[512];
static redis_server g_tls_srv = {.pid = -1};
static char g_certs[512];                  /* redis_tls_certs.sh output */
static char g_ca[600];
static char g_other_ca[600];
static char g_client_cert[600];
static char g_client_key[600];
static redis_tls_options g_tls_opts;      /* trusts g_ca */
static atomic_int g_prefix_seq;

/* ---- servers ------------------------------------------------------------ */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool in_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (path == NULL) {
        return false;
    }
    char *copy = strdup(path);
    bool found = false;
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d != NULL && !found;
         d = strtok_r(NULL, ":", &save)) {
        char full[1024];
        snprintf(full, sizeof(full), "%s/%s", d, prog);
        found = access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

static void require_redis(void)
{
    static int checked;
    if (!checked) {
        checked = 1;
        signal(SIGPIPE, SIG_IGN); /* the backend's contract */
        if (!in_path("redis-server") || !in_path("redis-cli")) {
            printf("skip: redis-server/redis-cli not in PATH; test_l1_redis passes vacuously\n");
            exit(0);
        }
    }
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static bool ping_port(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c != NULL && c->err == 0) {
        redisReply *r = redisCommand(c, "PING");
        ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL) {
            freeReplyObject(r);
        }
    }
    if (c != NULL) {
        redisFree(c);
    }
    return ok;
}

static void standalone_stop(void)
{
    if (g_standalone_pid > 0) {
        kill(g_standalone_pid, SIGKILL);
        waitpid(g_standalone_pid, NULL, 0);
        g_standalone_pid = -1;
    }
    if (g_standalone_dir[0] != '\0') {
        char cmd[2048];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_standalone_dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", g_standalone_dir);
        }
        g_standalone_dir[0] = '\0';
    }
}

/* Path of tests/support/redis_cluster.sh: $STRATA_REDIS_CLUSTER_SH, else next
 * to this source file (absolute under CMake; relative to the source root when
 * built by hand from there). */
static void cluster_script(char *out, size_t cap)
{
    const char *env = getenv("STRATA_REDIS_CLUSTER_SH");
    if (env != NULL) {
        snprintf(out, cap, "%s", env);
        return;
    }
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    size_t keep = slash != NULL ? (size_t)(slash - out) : 0;
    out[keep] = '\0';
    slash = strrchr(out, '/');
    keep = slash != NULL ? (size_t)(slash - out) + 1 : 0;
    snprintf(out + keep, cap - keep, "support/redis_cluster.sh");
}

static void cluster_stop(char *dir)
{
    if (dir[0] != '\0') {
        char script[512];
        char cmd[2048];
        cluster_script(script, sizeof(script));
        snprintf(cmd, sizeof(cmd), "'%s' stop '%s'", script, dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not stop the cluster in %s\n", dir);
        }
        dir[0] = '\0';
    }
}

static void stop_all(void)
{
    standalone_stop();
    cluster_stop(g_cluster_dir);
    cluster_stop(g_tls_cluster_dir);
    redis_server_stop(&g_tls_srv);
    redis_server_remove_dir(g_certs);
}

/* Start redis-server on port in dir (fork/exec, dies with us). */
static pid_t spawn_redis(int port, const char *dir)
{
    char port_str[16];
    char log[600];
    snprintf(port_str, sizeof(port_str), "%d", port);
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("redis-server", "redis-server", "--port", port_str, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--dir", dir,
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && pid > 0; i++) {
        if (ping_port(port)) {
            return pid;
        }
        sleep_ms(50);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static const backend *standalone(void)
{
    static int tried;
    require_redis();
    if (!tried) {
        tried = 1;
        atexit(stop_all);
        char *dir = test_tmpdir();
        int port = free_port();
        if (dir == NULL || port < 0) {
            free(dir);
            return NULL;
        }
        snprintf(g_standalone_dir, sizeof(g_standalone_dir), "%s", dir);
        free(dir);
        g_standalone_pid = spawn_redis(port, g_standalone_dir);
        if (g_standalone_pid < 0) {
            return NULL;
        }
        g_standalone.ports[0] = port;
        g_standalone.n_ports = 1;
        snprintf(g_standalone.addr[0], sizeof(g_standalone.addr[0]), "127.0.0.1:%d", port);
        g_standalone.addrs[0] = g_standalone.addr[0];
    }
    return g_standalone_pid > 0 ? &g_standalone : NULL;
}

/* Parse `NAME="p1 p2 ..."` into ports; returns how many. */
static int parse_ports(const char *line, const char *name, int *ports)
{
    size_t nl = strlen(name);
    if (strncmp(line, name, nl) != 0 || strncmp(line + nl, "=\"", 2) != 0) {
        return -1;
    }
    const char *p = line + nl + 2;
    int n = 0;
    while (n < CLUSTER_NODES && *p != '\0' && *p != '"') {
        char *end;
        ports[n++] = (int)strtol(p, &end, 10);
        p = end + (*end == ' ');
    }
    return n;
}

/* Start a cluster with redis_cluster.sh into b (certs: TLS, -T). */
static bool cluster_launch(backend *b, char *dir, size_t dir_cap, int nodes, int replicas,
                           const char *certs)
{
    char script[512];
    char cmd[2048];
    cluster_script(script, sizeof(script));
    snprintf(cmd, sizeof(cmd), "'%s' start -n %d -r %d -t 2000 -w %d%s%s%s", script, nodes,
             replicas, (int)getpid(), certs ? " -T '" : "", certs ? certs : "", certs ? "'" : "");
    FILE *f = popen(cmd, "r");
    char line[512];
    int tls_ports[CLUSTER_NODES];
    int n_tls = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        int n;
        if (strncmp(line, "REDIS_CLUSTER_DIR=", 18) == 0) {
            snprintf(dir, dir_cap, "%s", line + 18);
        } else if ((n = parse_ports(line, "REDIS_CLUSTER_PORTS", b->ports)) >= 0) {
            b->n_ports = n;
        } else if ((n = parse_ports(line, "REDIS_CLUSTER_TLS_PORTS", tls_ports)) >= 0) {
            n_tls = n;
        }
    }
    bool ok = f != NULL && pclose(f) == 0 && b->n_ports == nodes &&
              (certs == NULL || n_tls == nodes);
    for (int i = 0; i < b->n_ports; i++) {
        snprintf(b->addr[i], sizeof(b->addr[i]), "127.0.0.1:%d",
                 certs != NULL ? tls_ports[i] : b->ports[i]);
        b->addrs[i] = b->addr[i];
    }
    if (!ok) {
        fprintf(stderr, "  could not start a Redis Cluster with %s\n", script);
    }
    return ok;
}

static const backend *cluster(void)
{
    static int tried;
    static bool ok;
    require_redis();
    if (!tried) {
        tried = 1;
        atexit(stop_all);
        ok = cluster_launch(&g_cluster, g_cluster_dir, sizeof(g_cluster_dir), CLUSTER_NODES, 1,
                            NULL);
    }
    return ok ? &g_cluster : NULL;
}

/* Certificates for the TLS tests (made once); NULL if openssl failed. */
static const char *certs(void)
{
    static int tried;
    require_redis();
    if (!tried) {
        tried = 1;
        atexit(stop_all);
        if (redis_server_make_certs(g_certs, sizeof(g_certs)) != 0) {
            fprintf(stderr, "  could not make certificates (openssl)\n");
            return NULL;
        }
        snprintf(g_ca, sizeof(g_ca), "%s/ca.pem", g_certs);
        snprintf(g_other_ca, sizeof(g_other_ca), "%s/other-ca.pem", g_certs);
        snprintf(g_client_cert, sizeof(g_client_cert), "%s/client.pem", g_certs);
        snprintf(g_client_key, sizeof(g_client_key), "%s/client.key", g_certs);
        g_tls_opts.cacert = g_ca;
    }
    return g_certs[0] != '\0' ? g_certs : NULL;
}

/* A standalone server with a TLS port (clients not authenticated). */
static const backend *tls_standalone(void)
{
    static int tried;
    if (!tried) {
        tried = 1;
        if (certs() == NULL || redis_server_start_tls(&g_tls_srv, g_certs, "no") != 0) {
            fprintf(stderr, "  could not start a TLS redis-server\n");
            return NULL;
        }
        g_tls.ports[0] = g_tls_srv.port;
        g_tls.n_ports = 1;
        snprintf(g_tls.addr[0], sizeof(g_tls.addr[0]), "%s", g_tls_srv.tls_addr);
        g_tls.addrs[0] = g_tls.addr[0];
        g_tls.tls = &g_tls_opts;
    }
    return g_tls_srv.pid > 0 ? &g_tls : NULL;
}

/* 3 masters, no replicas, TLS on clients, bus and replication. */
static const backend *tls_cluster(void)
{
    static int tried;
    static bool ok;
    if (!tried) {
        tried = 1;
        ok = certs() != NULL && cluster_launch(&g_tls_cluster, g_tls_cluster_dir,
                                               sizeof(g_tls_cluster_dir), 3, 0, g_certs);
        g_tls_cluster.tls = &g_tls_opts;
    }
    return ok ? &g_tls_cluster : NULL;
}

/* ---- raw access, for checking what the backend wrote ---------------------- */

/* A command on the node serving key (following MOVED), formatted as for
 * redisCommand. NULL on a connection failure. */
static redisReply *raw(const backend *b, const char *fmt, ...)
{
    int port = b->ports[0];
    for (int hop = 0; hop < 4; hop++) {
        struct timeval tv = {2, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c == NULL || c->err != 0) {
            if (c != NULL) {
                redisFree(c);
            }
            /* A dead node (failover test): try the next one. */
            port = b->ports[(hop + 1) % b->n_ports];
            continue;
        }
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(c, fmt, ap);
        va_end(ap);
        redisFree(c);
        if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED ", 6) == 0) {
            const char *colon = strrchr(r->str, ':');
            port = colon != NULL ? atoi(colon + 1) : port;
            freeReplyObject(r);
            continue;
        }
        return r;
    }
    return NULL;
}

/* FLUSHALL on every node (replicas refuse; their masters' flush reaches them). */
static void flush_all(const backend *b)
{
    for (int i = 0; i < b->n_ports; i++) {
        struct timeval tv = {2, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", b->ports[i], tv);
        if (c != NULL && c->err == 0) {
            redisReply *r = redisCommand(c, "FLUSHALL");
            if (r != NULL) {
                freeReplyObject(r);
            }
        }
        if (c != NULL) {
            redisFree(c);
        }
    }
}

/* ---- helpers shared with test_l1.c's checks --------------------------------- */

static l1_store *open_store_ex(const backend *b, uint32_t buffer_max, const char *prefix,
                               int wait_replicas)
{
    if (b == NULL) {
        return NULL;
    }
    char auto_prefix[32];
    if (prefix == NULL) {
        snprintf(auto_prefix, sizeof(auto_prefix), "p%d:", atomic_fetch_add(&g_prefix_seq, 1));
        prefix = auto_prefix;
    }
    l1_redis_options o;
    l1_redis_options_init(&o);
    o.addresses = b->addrs;
    o.n_addresses = (size_t)b->n_ports;
    o.cluster = b->cluster;
    o.buffer_max = buffer_max;
    o.key_prefix = prefix;
    o.connect_timeout_ms = 500;
    o.command_timeout_ms = 3000;
    o.wait_replicas = wait_replicas;
    o.wait_timeout_ms = 500;
    o.tls = b->tls;
    l1_store *s = NULL;
    if (l1_redis_open(&o, &s) != STRATA_OK) {
        fprintf(stderr, "  l1_redis_open: %s\n", strata_errmsg());
        return NULL;
    }
    return s;
}

static l1_store *open_store(const backend *b, uint32_t buffer_max)
{
    return open_store_ex(b, buffer_max, NULL, 0);
}

static int append_n(l1_store *s, const char *tenant, const char *sid, const char *user,
                    strata_role role, const char *content, size_t len, int64_t ts,
                    uint32_t *count_out)
{
    l1_turn_in in = {tenant, sid, user, role, content, len, ts};
    l1_turn_out out = {0};
    int rc = s->ops->turn_append(s, &in, &out);
    if (count_out != NULL) {
        *count_out = out.turn_count;
    }
    return rc;
}

static int append(l1_store *s, const char *tenant, const char *sid, const char *user,
                  const char *content, int64_t ts)
{
    return append_n(s, tenant, sid, user, STRATA_ROLE_USER, content, strlen(content), ts, NULL);
}

/* As in test_l1.c: every session listed once, oldest first; buffered turns
 * have consecutive seq ending at turn_count; the stats agree. */
static bool check_consistent(l1_store *s, uint32_t buffer_max)
{
    l1_stats st;
    l1_session_ref *refs = NULL;
    size_t n = 0;
    bool ok = true;
    s->ops->stats(s, &st);
    if (s->ops->session_list_idle(s, INT64_MAX, SIZE_MAX, &refs, &n) != STRATA_OK) {
        return false;
    }
    if (n != st.sessions) {
        fprintf(stderr, "  listed %zu, stats say %llu sessions\n", n,
                (unsigned long long)st.sessions);
        ok = false;
    }
    uint64_t turns = 0;
    int64_t prev_active = INT64_MIN;
    for (size_t i = 0; i < n && ok; i++) {
        strata_session *ss = NULL;
        if (s->ops->session_get(s, refs[i].tenant, refs[i].session_id, &ss) != STRATA_OK) {
            ok = false;
            break;
        }
        turns += ss->n_turns;
        ok = ss->last_active >= prev_active && ss->n_turns <= buffer_max &&
             ss->n_turns <= ss->turn_count && ss->turn_count >= 1;
        prev_active = ss->last_active;
        for (size_t j = 0; j < ss->n_turns && ok; j++) {
            ok = ss->turns[j].seq == ss->turn_count - ss->n_turns + 1 + j &&
                 strlen(ss->turns[j].content) <= ss->turns[j].content_len;
        }
        strata_session_free(ss);
    }
    l1_session_refs_free(refs, n);
    if (ok && turns != st.turns_buffered) {
        fprintf(stderr, "  buffered %llu, stats say %llu\n", (unsigned long long)turns,
                (unsigned long long)st.turns_buffered);
    }
    return ok && turns == st.turns_buffered;
}

/* The idle listing as one "a,b,c" string, for compact assertions. */
static int idle_str(l1_store *s, int64_t before, size_t max, char *out, size_t cap)
{
    l1_session_ref *refs = NULL;
    size_t n = 0;
    int rc = s->ops->session_list_idle(s, before, max, &refs, &n);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s/%s", i ? "," : "", refs[i].tenant,
                 refs[i].session_id);
    }
    l1_session_refs_free(refs, n);
    return rc;
}

/* Declare a check once and a test per deployment. */
#define CHECK(name) static void check_##name(int *test_failed_, const backend *b)
#define BOTH(name)                                                          \
    TEST(standalone_##name) { check_##name(test_failed_, standalone()); }   \
    TEST(cluster_##name) { check_##name(test_failed_, cluster()); }         \
    TEST(tls_##name) { check_##name(test_failed_, tls_standalone()); }      \
    TEST(tls_cluster_##name) { check_##name(test_failed_, tls_cluster()); }

/* ---- the checks of test_l1.c ---------------------------------------------------- */

CHECK(append_and_read_back)
{
    ASSERT_TRUE(b != NULL);
    flush_all(b); /* this one uses no prefix: the brief's exact key names */
    l1_store *s = open_store_ex(b, 20, "", 0);
    ASSERT_TRUE(s != NULL);
    ASSERT_STREQ(s->ops->name, "redis");
    uint32_t count = 0;
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_USER, "hello", 5, 100, &count));
    ASSERT_EQ(count, 1);
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_ASSISTANT, "hi there", 8, 101, &count));
    ASSERT_EQ(count, 2);
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_SYSTEM, "a\0b", 3, 102, &count));
    ASSERT_EQ(count, 3);
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_USER, NULL, 0, 103, &count));
    ASSERT_EQ(count, 4);

    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_STREQ(ss->session_id, "s1");
    ASSERT_STREQ(ss->user_id, "u1");
    ASSERT_STREQ(ss->current_stage, "");
    ASSERT_EQ(ss->turn_count, 4);
    ASSERT_EQ(ss->last_active, 103);
    ASSERT_EQ(ss->ended, 0);
    ASSERT_EQ(ss->n_turns, 4);
    ASSERT_EQ(ss->turns[0].role, STRATA_ROLE_USER);
    ASSERT_STREQ(ss->turns[0].content, "hello");
    ASSERT_EQ(ss->turns[0].content_len, 5);
    ASSERT_EQ(ss->turns[0].ts, 100);
    ASSERT_EQ(ss->turns[0].seq, 1);
    ASSERT_EQ(ss->turns[1].role, STRATA_ROLE_ASSISTANT);
    ASSERT_STREQ(ss->turns[1].content, "hi there");
    ASSERT_EQ(ss->turns[1].seq, 2);
    ASSERT_EQ(ss->turns[2].role, STRATA_ROLE_SYSTEM);
    ASSERT_EQ(ss->turns[2].content_len, 3);
    ASSERT_TRUE(memcmp(ss->turns[2].content, "a\0b", 4) == 0);
    ASSERT_STREQ(ss->turns[3].content, "");
    ASSERT_EQ(ss->turns[3].seq, 4);
    strata_session_free(ss);

    ss = (strata_session *)&count; /* must be reset to NULL on failure */
    ASSERT_EQ(s->ops->session_get(s, "t", "nope", &ss), STRATA_ENOTFOUND);
    ASSERT_TRUE(ss == NULL);

    /* The brief's keys, verbatim, with the brief's types and fields. */
    redisReply *r = raw(b, "HGET session:{t:s1}:state turn_count");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "4");
    freeReplyObject(r);
    r = raw(b, "HGET session:{t:s1}:state user_id");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "u1");
    freeReplyObject(r);
    r = raw(b, "HGET session:{t:s1}:state last_active");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "103");
    freeReplyObject(r);
    r = raw(b, "LLEN session:{t:s1}:buffer");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, 4);
    freeReplyObject(r);
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "diet"));
    r = raw(b, "TYPE user:{t:u1}:dirty");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STATUS);
    ASSERT_STREQ(r->str, "set");
    freeReplyObject(r);
    ASSERT_OK(s->ops->dirty_clear(s, "t", "u1"));

    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 1);
    ASSERT_EQ(st.turns_buffered, 4);
    ASSERT_EQ(st.dirty_users, 0);
    sbuf w;
    sbuf_init(&w, 1024);
    ASSERT_EQ(s->ops->snapshot_write(s, &w), STRATA_EUNSUPPORTED);
    ASSERT_EQ(s->ops->snapshot_load(s, "x", 1), STRATA_EUNSUPPORTED);
    sbuf_free(&w);
    s->ops->close(s);
    flush_all(b);
}
BOTH(append_and_read_back)

/* Compare the buffer with the sliding window of the last min(i, N) turns. */
static bool window_ok(l1_store *s, const char *sid, uint32_t total, uint32_t n)
{
    strata_session *ss = NULL;
    if (s->ops->session_get(s, "t", sid, &ss) != STRATA_OK) {
        return false;
    }
    uint32_t keep = total < n ? total : n;
    bool ok = ss->turn_count == total && ss->n_turns == keep;
    for (uint32_t j = 0; j < keep && ok; j++) {
        uint32_t seq = total - keep + 1 + j;
        char want[32];
        snprintf(want, sizeof(want), "m%u", seq);
        ok = ss->turns[j].seq == seq && strcmp(ss->turns[j].content, want) == 0 &&
             ss->turns[j].ts == (int64_t)seq;
    }
    strata_session_free(ss);
    return ok;
}

CHECK(buffer_trimmed_to_n)
{
    static const uint32_t sizes[] = {3, 10, 1, 0};
    for (size_t k = 0; k < STRATA_ARRAY_LEN(sizes); k++) {
        uint32_t n = sizes[k];
        l1_store *s = open_store(b, n);
        ASSERT_TRUE(s != NULL);
        for (uint32_t i = 1; i <= 3 * n + 7; i++) {
            char msg[32];
            snprintf(msg, sizeof(msg), "m%u", i);
            uint32_t count = 0;
            ASSERT_OK(append_n(s, "t", "s", "u", STRATA_ROLE_USER, msg, strlen(msg), i, &count));
            ASSERT_EQ(count, i);
            ASSERT_TRUE(window_ok(s, "s", i, n));
            l1_stats st;
            s->ops->stats(s, &st);
            ASSERT_EQ(st.turns_buffered, i < n ? i : n);
        }
        ASSERT_TRUE(check_consistent(s, n));
        s->ops->close(s);
    }
}
BOTH(buffer_trimmed_to_n)

CHECK(owner_conflict)
{
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(s->ops->turn_check(s, "t", "s1", "u1", NULL));
    ASSERT_OK(append(s, "t", "s1", "u1", "first", 10));
    ASSERT_OK(s->ops->turn_check(s, "t", "s1", "u1", NULL));
    ASSERT_EQ(s->ops->turn_check(s, "t", "s1", "u2", NULL), STRATA_ECONFLICT);
    uint32_t count = 99;
    ASSERT_EQ(append_n(s, "t", "s1", "u2", STRATA_ROLE_USER, "x", 1, 20, &count),
              STRATA_ECONFLICT);
    ASSERT_EQ(count, 0);
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_EQ(ss->turn_count, 1);
    ASSERT_EQ(ss->n_turns, 1);
    ASSERT_EQ(ss->last_active, 10);
    ASSERT_STREQ(ss->user_id, "u1");
    strata_session_free(ss);
    ASSERT_OK(append(s, "t", "s2", "u2", "mine", 30));
    ASSERT_OK(append(s, "t", "s1", "u1", "second", 40));
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}
BOTH(owner_conflict)

CHECK(stage_end_delete)
{
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    ASSERT_EQ(s->ops->session_set_stage(s, "t", "s1", "x", 1), STRATA_ENOTFOUND);
    ASSERT_EQ(s->ops->session_end(s, "t", "s1", 1), STRATA_ENOTFOUND);
    ASSERT_EQ(s->ops->session_delete(s, "t", "s1"), STRATA_ENOTFOUND);
    ASSERT_OK(append(s, "t", "s1", "u1", "hello", 100));
    ASSERT_OK(s->ops->session_set_stage(s, "t", "s1", "checkout", 110));
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_STREQ(ss->current_stage, "checkout");
    ASSERT_EQ(ss->last_active, 110);
    ASSERT_EQ(ss->turn_count, 1);
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_set_stage(s, "t", "s1", "", 111));

    ASSERT_OK(s->ops->session_end(s, "t", "s1", 120));
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_EQ(ss->ended, 1);
    ASSERT_EQ(ss->last_active, 120);
    ASSERT_STREQ(ss->current_stage, "");
    strata_session_free(ss);

    ASSERT_OK(append(s, "t", "s1", "u1", "again", 130));
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_EQ(ss->ended, 0);
    ASSERT_EQ(ss->turn_count, 2);
    strata_session_free(ss);

    ASSERT_OK(append(s, "t", "s2", "u1", "other", 140));
    ASSERT_OK(s->ops->session_delete(s, "t", "s1"));
    ASSERT_EQ(s->ops->session_get(s, "t", "s1", &ss), STRATA_ENOTFOUND);
    ASSERT_EQ(s->ops->session_delete(s, "t", "s1"), STRATA_ENOTFOUND);
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 1);
    ASSERT_EQ(st.turns_buffered, 1);
    uint32_t count = 0;
    ASSERT_OK(append_n(s, "t", "s1", "u9", STRATA_ROLE_USER, "new", 3, 150, &count));
    ASSERT_EQ(count, 1);
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}
BOTH(stage_end_delete)

CHECK(tenant_isolation)
{
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(append(s, "acme", "s1", "alice", "acme turn", 100));
    ASSERT_OK(append(s, "globex", "s1", "bob", "globex turn", 101));
    ASSERT_OK(append(s, "globex", "s1", "bob", "globex again", 102));
    ASSERT_OK(append(s, "acmes", "1", "carol", "x", 103));
    /* ':' may occur in ids: "a:b" + "c" and "a" + "b:c" must stay apart, and
     * braces cannot move the hash tag. */
    ASSERT_OK(append(s, "a:b", "c", "dave", "first", 104));
    ASSERT_OK(append(s, "a", "b:c", "erin", "second", 105));
    ASSERT_OK(append(s, "x}", "{y", "fay", "braces", 106));
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "acme", "s1", &ss));
    ASSERT_STREQ(ss->user_id, "alice");
    ASSERT_EQ(ss->turn_count, 1);
    ASSERT_STREQ(ss->turns[0].content, "acme turn");
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_get(s, "globex", "s1", &ss));
    ASSERT_STREQ(ss->user_id, "bob");
    ASSERT_EQ(ss->turn_count, 2);
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_get(s, "a:b", "c", &ss));
    ASSERT_STREQ(ss->user_id, "dave");
    ASSERT_EQ(ss->turn_count, 1);
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_get(s, "a", "b:c", &ss));
    ASSERT_STREQ(ss->user_id, "erin");
    ASSERT_EQ(ss->turn_count, 1);
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_get(s, "x}", "{y", &ss));
    ASSERT_STREQ(ss->turns[0].content, "braces");
    strata_session_free(ss);
    ASSERT_EQ(s->ops->session_get(s, "initech", "s1", &ss), STRATA_ENOTFOUND);

    ASSERT_OK(s->ops->session_set_stage(s, "acme", "s1", "browsing", 110));
    ASSERT_OK(s->ops->session_get(s, "globex", "s1", &ss));
    ASSERT_STREQ(ss->current_stage, "");
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_delete(s, "acme", "s1"));
    ASSERT_OK(s->ops->session_get(s, "globex", "s1", &ss));
    strata_session_free(ss);

    ASSERT_OK(s->ops->dirty_add(s, "acme", "u1", "diet"));
    ASSERT_OK(s->ops->dirty_add(s, "globex", "u1", "budget"));
    strata_strlist *l = NULL;
    ASSERT_OK(s->ops->dirty_get(s, "acme", "u1", &l));
    ASSERT_EQ(l->n, 1);
    ASSERT_STREQ(l->items[0], "diet");
    strata_strlist_free(l);
    ASSERT_OK(s->ops->dirty_clear(s, "globex", "u1"));
    ASSERT_OK(s->ops->dirty_get(s, "acme", "u1", &l));
    ASSERT_EQ(l->n, 1);
    strata_strlist_free(l);
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);

    /* A key prefix separates whole stores on one Redis. */
    l1_store *p1 = open_store(b, 5);
    l1_store *p2 = open_store(b, 5);
    ASSERT_TRUE(p1 != NULL && p2 != NULL);
    ASSERT_OK(append(p1, "t", "s", "u", "in p1", 1));
    ASSERT_EQ(p2->ops->session_get(p2, "t", "s", &ss), STRATA_ENOTFOUND);
    l1_stats st;
    p2->ops->stats(p2, &st);
    ASSERT_EQ(st.sessions, 0);
    p1->ops->close(p1);
    p2->ops->close(p2);
}
BOTH(tenant_isolation)

CHECK(dirty_sets)
{
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    strata_strlist *l = NULL;
    ASSERT_OK(s->ops->dirty_get(s, "t", "nobody", &l));
    ASSERT_EQ(l->n, 0);
    strata_strlist_free(l);
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "c"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "a"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "b"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "a"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "c"));
    ASSERT_OK(s->ops->dirty_get(s, "t", "u1", &l));
    ASSERT_EQ(l->n, 3);
    ASSERT_STREQ(l->items[0], "a");
    ASSERT_STREQ(l->items[1], "b");
    ASSERT_STREQ(l->items[2], "c");
    strata_strlist_free(l);
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 1);

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200; i++) {
            char attr[16];
            snprintf(attr, sizeof(attr), "k%03d", (i * 37) % 200);
            ASSERT_OK(s->ops->dirty_add(s, "t", "u2", attr));
        }
    }
    ASSERT_OK(s->ops->dirty_get(s, "t", "u2", &l));
    ASSERT_EQ(l->n, 200);
    for (size_t i = 1; i < l->n; i++) {
        ASSERT_TRUE(strcmp(l->items[i - 1], l->items[i]) < 0);
    }
    strata_strlist_free(l);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 2);

    ASSERT_OK(s->ops->dirty_clear(s, "t", "u1"));
    ASSERT_OK(s->ops->dirty_clear(s, "t", "u1"));
    ASSERT_OK(s->ops->dirty_clear(s, "t", "never"));
    ASSERT_OK(s->ops->dirty_get(s, "t", "u1", &l));
    ASSERT_EQ(l->n, 0);
    strata_strlist_free(l);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 1);
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "z"));
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 2);
    s->ops->close(s);
}
BOTH(dirty_sets)

CHECK(idle_listing)
{
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    char got[512];
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "");
    ASSERT_OK(append(s, "t", "a", "u", "x", 100));
    ASSERT_OK(append(s, "t", "b", "u", "x", 200));
    ASSERT_OK(append(s, "t2", "c", "u", "x", 300));
    ASSERT_OK(idle_str(s, 250, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a,t/b");
    ASSERT_OK(idle_str(s, 200, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a");
    ASSERT_OK(idle_str(s, INT64_MAX, 2, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a,t/b");
    ASSERT_OK(idle_str(s, INT64_MAX, 0, got, sizeof(got)));
    ASSERT_STREQ(got, "");
    ASSERT_OK(idle_str(s, 50, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "");

    ASSERT_OK(append(s, "t", "a", "u", "x", 400));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t2/c,t/a");
    ASSERT_OK(s->ops->session_set_stage(s, "t", "b", "s", 500));
    ASSERT_OK(s->ops->session_end(s, "t2", "c", 600));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a,t/b,t2/c");

    ASSERT_OK(append(s, "t", "d", "u", "x", 450));
    ASSERT_OK(append(s, "t", "b", "u", "x", 50));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t/a,t/d,t2/c");
    ASSERT_OK(idle_str(s, 451, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t/a,t/d");

    ASSERT_OK(s->ops->session_delete(s, "t", "a"));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t/d,t2/c");
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}
BOTH(idle_listing)

/* ---- concurrency ----------------------------------------------------------------- */

enum { CC_SESSIONS = 10, CC_TURNS = 400, CC_N = 8, CC_ATTRS = 17 };

typedef struct cc_ctx {
    l1_store *s;
    int id;
    atomic_int *writers_left;
    atomic_int *errors;
    atomic_int *reads;
} cc_ctx;

static void *cc_writer(void *arg)
{
    cc_ctx *c = arg;
    const char *tenant = c->id == 0 ? "tA" : "tB";
    const char *user = c->id == 0 ? "u0" : "u1";
    for (int i = 0; i < CC_TURNS; i++) {
        char sid[16];
        char msg[32];
        snprintf(sid, sizeof(sid), "s%d", i % CC_SESSIONS);
        snprintf(msg, sizeof(msg), "w%d-%d", c->id, i);
        if (append(c->s, tenant, sid, user, msg, i) != STRATA_OK) {
            atomic_fetch_add(c->errors, 1);
        }
        if (i % 50 == 0 && c->s->ops->session_set_stage(c->s, tenant, sid, msg, i) != 0) {
            atomic_fetch_add(c->errors, 1);
        }
        char attr[16];
        snprintf(attr, sizeof(attr), "a%02d", i % CC_ATTRS);
        if (c->s->ops->dirty_add(c->s, tenant, user, attr) != STRATA_OK) {
            atomic_fetch_add(c->errors, 1);
        }
    }
    atomic_fetch_sub(c->writers_left, 1);
    return NULL;
}

static bool cc_read_once(l1_store *s, int k)
{
    const char *tenant = k % 2 ? "tA" : "tB";
    const char *user = k % 2 ? "u0" : "u1";
    char sid[16];
    snprintf(sid, sizeof(sid), "s%d", k % CC_SESSIONS);
    strata_session *ss = NULL;
    int rc = s->ops->session_get(s, tenant, sid, &ss);
    if (rc == STRATA_OK) {
        bool ok = strcmp(ss->user_id, user) == 0 && ss->n_turns <= CC_N &&
                  ss->n_turns <= ss->turn_count;
        for (size_t j = 0; j < ss->n_turns && ok; j++) {
            ok = ss->turns[j].seq == ss->turn_count - ss->n_turns + 1 + j;
        }
        strata_session_free(ss);
        if (!ok) {
            return false;
        }
        if (s->ops->turn_check(s, tenant, sid, "intruder", NULL) != STRATA_ECONFLICT) {
            return false;
        }
    } else if (rc != STRATA_ENOTFOUND) {
        return false;
    }
    strata_strlist *l = NULL;
    if (s->ops->dirty_get(s, tenant, user, &l) != STRATA_OK) {
        return false;
    }
    for (size_t j = 1; j < l->n; j++) {
        if (strcmp(l->items[j - 1], l->items[j]) >= 0) {
            strata_strlist_free(l);
            return false;
        }
    }
    strata_strlist_free(l);
    l1_stats st;
    s->ops->stats(s, &st);
    /* Each shard's counts are read atomically and a member's buffered count
     * enters with the member, so this holds in cluster mode too. */
    if (st.sessions > 2 * CC_SESSIONS || st.turns_buffered > st.sessions * CC_N) {
        return false;
    }
    l1_session_ref *refs = NULL;
    size_t n = 0;
    if (s->ops->session_list_idle(s, CC_TURNS / 2, 5, &refs, &n) != STRATA_OK) {
        return false;
    }
    l1_session_refs_free(refs, n);
    return true;
}

static void *cc_reader(void *arg)
{
    cc_ctx *c = arg;
    int k = c->id;
    do {
        if (!cc_read_once(c->s, k)) {
            atomic_fetch_add(c->errors, 1);
        }
        k++;
    } while (atomic_load(c->writers_left) > 0);
    atomic_fetch_add(c->reads, k - c->id);
    return NULL;
}

CHECK(concurrent_readers_writers)
{
    l1_store *s = open_store(b, CC_N);
    ASSERT_TRUE(s != NULL);
    atomic_int writers_left = 2;
    atomic_int errors = 0;
    atomic_int reads = 0;
    cc_ctx ctx[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ctx[i] = (cc_ctx){s, i % 2, &writers_left, &errors, &reads};
        void *(*fn)(void *) = i < 2 ? cc_writer : cc_reader;
        ASSERT_EQ(pthread_create(&th[i], NULL, fn, &ctx[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    ASSERT_EQ(atomic_load(&errors), 0);
    ASSERT_TRUE(atomic_load(&reads) >= 2);
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 2 * CC_SESSIONS);
    ASSERT_EQ(st.turns_buffered, 2 * CC_SESSIONS * CC_N);
    ASSERT_EQ(st.dirty_users, 2);
    for (int w = 0; w < 2; w++) {
        for (int j = 0; j < CC_SESSIONS; j++) {
            char sid[16];
            char want[32];
            snprintf(sid, sizeof(sid), "s%d", j);
            strata_session *ss = NULL;
            ASSERT_OK(s->ops->session_get(s, w ? "tB" : "tA", sid, &ss));
            uint32_t tc = ss->turn_count;
            size_t nt = ss->n_turns;
            snprintf(want, sizeof(want), "w%d-%d", w, CC_TURNS - CC_SESSIONS + j);
            bool last_ok = nt == CC_N && strcmp(ss->turns[nt - 1].content, want) == 0;
            strata_session_free(ss);
            ASSERT_EQ(tc, CC_TURNS / CC_SESSIONS);
            ASSERT_TRUE(last_ok);
        }
        strata_strlist *l = NULL;
        ASSERT_OK(s->ops->dirty_get(s, w ? "tB" : "tA", w ? "u1" : "u0", &l));
        size_t nl = l->n;
        strata_strlist_free(l);
        ASSERT_EQ(nl, CC_ATTRS);
    }
    ASSERT_TRUE(check_consistent(s, CC_N));
    s->ops->close(s);
}
BOTH(concurrent_readers_writers)

/* ---- Redis-specific ----------------------------------------------------------- */

/* The index is a hint (cluster: a separate step): list_idle repairs a ghost
 * (an entry without a session) and a stale score before listing. */
CHECK(index_repair)
{
    l1_store *s = open_store_ex(b, 5, "rep:", 0);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(append(s, "t", "live", "u", "x", 100));
    ASSERT_OK(append(s, "t", "moved", "u", "x", 200));
    /* Damage the index behind the backend's back. The shard of a session is
     * slot & 15 of its state key; try every shard key instead of computing. */
    int ghost_shard = -1;
    int moved_shard = -1;
    for (int k = 0; k < 16; k++) {
        redisReply *r = raw(b, "ZSCORE rep:strata:idle:{%d} %b", k, "t\0moved", (size_t)7);
        if (r != NULL && r->type == REDIS_REPLY_STRING) {
            moved_shard = k;
        }
        if (r != NULL) {
            freeReplyObject(r);
        }
    }
    ASSERT_TRUE(moved_shard >= 0);
    ghost_shard = (moved_shard + 3) % 16;
    redisReply *r = raw(b, "ZADD rep:strata:idle:{%d} 50 %b", ghost_shard, "t\0ghost", (size_t)7);
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    r = raw(b, "ZADD rep:strata:idle:{%d} 10 %b", moved_shard, "t\0moved", (size_t)7);
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);

    char got[256];
    ASSERT_OK(idle_str(s, 150, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/live"); /* no ghost, and "moved" is really at 200 */
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/live,t/moved");
    l1_redis_stats rs;
    l1_redis_stats_get(s, &rs);
    ASSERT_EQ(rs.index_repairs, 2);
    ASSERT_TRUE(check_consistent(s, 5));

    /* Lose the whole index: reindex rebuilds it from the session keys. */
    ASSERT_OK(s->ops->dirty_add(s, "t", "u", "attr"));
    for (int k = 0; k < 16; k++) {
        r = raw(b, "DEL rep:strata:idle:{%d} rep:strata:buffered:{%d} rep:strata:turns:{%d} "
                   "rep:strata:dirty:{%d}", k, k, k, k);
        if (r != NULL) {
            freeReplyObject(r);
        }
    }
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 0);
    uint64_t fixed = 0;
    ASSERT_OK(l1_redis_reindex(s, &fixed));
    ASSERT_EQ(fixed, 2);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 2);
    ASSERT_EQ(st.turns_buffered, 2);
    ASSERT_EQ(st.dirty_users, 1);
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/live,t/moved");
    ASSERT_OK(l1_redis_reindex(s, &fixed));
    ASSERT_EQ(fixed, 0); /* nothing left to fix */
    /* A dirty set lost without its index entry: reindex drops the entry. */
    r = raw(b, "DEL rep:user:{t:u}:dirty");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 1);
    ASSERT_OK(l1_redis_reindex(s, &fixed));
    ASSERT_EQ(fixed, 1);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 0);
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}
BOTH(index_repair)

TEST(bad_options)
{
    require_redis();
    l1_store *s = (l1_store *)&s;
    l1_redis_options o;
    l1_redis_options_init(&o);
    ASSERT_EQ(l1_redis_open(&o, &s), STRATA_EINVAL); /* no address */
    ASSERT_TRUE(s == NULL);
    const char *bad[] = {"nohost"};
    o.addresses = bad;
    o.n_addresses = 1;
    ASSERT_EQ(l1_redis_open(&o, &s), STRATA_EINVAL);
    const char *two[] = {"127.0.0.1:1", "127.0.0.1:2"};
    o.addresses = two;
    o.n_addresses = 2;
    ASSERT_EQ(l1_redis_open(&o, &s), STRATA_EINVAL); /* several, not cluster */
    o.cluster = true;
    o.db = 3;
    ASSERT_EQ(l1_redis_open(&o, &s), STRATA_EINVAL); /* cluster has db 0 only */
    o.db = 0;
    o.key_prefix = "a{b}";
    ASSERT_EQ(l1_redis_open(&o, &s), STRATA_EINVAL);
    /* Nobody listening: fails within the deadline, not forever. */
    char dead[32];
    snprintf(dead, sizeof(dead), "127.0.0.1:%d", free_port());
    const char *one[] = {dead};
    l1_redis_options_init(&o);
    o.addresses = one;
    o.n_addresses = 1;
    o.command_timeout_ms = 300;
    int rc = l1_redis_open(&o, &s);
    ASSERT_TRUE(rc == STRATA_ETIMEDOUT || rc == STRATA_EIO);
    ASSERT_TRUE(s == NULL);
    /* cluster = true against a standalone server. */
    const backend *b = standalone();
    ASSERT_TRUE(b != NULL);
    o.addresses = b->addrs;
    o.cluster = true;
    ASSERT_EQ(l1_redis_open(&o, &s), STRATA_EINVAL);
    ASSERT_TRUE(strstr(strata_errmsg(), "cluster support disabled") != NULL);
    /* db on a standalone server. */
    o.cluster = false;
    o.db = 2;
    o.key_prefix = "dbtest:";
    ASSERT_OK(l1_redis_open(&o, &s));
    ASSERT_OK(append(s, "t", "s", "u", "in db 2", 1));
    redisReply *r = raw(b, "EXISTS dbtest:session:{t:s}:state");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, 0); /* db 0 does not have it */
    freeReplyObject(r);
    s->ops->close(s);
}

/* The store outlives a restart of its server (AOF everysec, shut down
 * cleanly): it reconnects on its own and the data is still there. */
TEST(standalone_restart)
{
    const backend *b = standalone();
    ASSERT_TRUE(b != NULL);
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(append(s, "t", "s", "u", "before", 1));
    redisReply *r = raw(b, "SHUTDOWN");
    if (r != NULL) {
        freeReplyObject(r);
    }
    waitpid(g_standalone_pid, NULL, 0);
    g_standalone_pid = spawn_redis(b->ports[0], g_standalone_dir);
    ASSERT_TRUE(g_standalone_pid > 0);
    uint32_t count = 0;
    ASSERT_OK(append_n(s, "t", "s", "u", STRATA_ROLE_USER, "after", 5, 2, &count));
    ASSERT_EQ(count, 2);
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s", &ss));
    bool ok = ss->n_turns == 2 && strcmp(ss->turns[0].content, "before") == 0;
    strata_session_free(ss);
    ASSERT_TRUE(ok);
    l1_redis_stats rs;
    l1_redis_stats_get(s, &rs);
    ASSERT_TRUE(rs.connects >= 2);
    s->ops->close(s);
}

/* ---- failover ------------------------------------------------------------------- */

enum { FO_SESSIONS = 6, FO_MAX_ACKED = 4000 };

typedef struct fo_acked {
    uint32_t seq;              /* turn_count returned by the append */
    int i;                     /* the writer's counter: content "f<session>-<i>" */
} fo_acked;

typedef struct fo_ctx {
    l1_store *s;
    atomic_bool stop;
    atomic_int ok_since_mark[FO_SESSIONS];   /* successes since the last reset */
    atomic_int errors;
    fo_acked acked[FO_SESSIONS][FO_MAX_ACKED];
    int n_acked[FO_SESSIONS];
} fo_ctx;

static void *fo_writer(void *arg)
{
    fo_ctx *c = arg;
    for (int i = 0; !atomic_load(&c->stop); i++) {
        int k = i % FO_SESSIONS;
        char sid[16];
        char msg[32];
        snprintf(sid, sizeof(sid), "f%d", k);
        snprintf(msg, sizeof(msg), "f%d-%d", k, i);
        uint32_t count = 0;
        int rc = append_n(c->s, "t", sid, "u", STRATA_ROLE_USER, msg, strlen(msg), i, &count);
        if (rc == STRATA_OK) {
            if (c->n_acked[k] < FO_MAX_ACKED) {
                c->acked[k][c->n_acked[k]++] = (fo_acked){count, i};
            }
            atomic_fetch_add(&c->ok_since_mark[k], 1);
        } else if (atomic_fetch_add(&c->errors, 1) < 3) {
            fprintf(stderr, "  append %d: %s (%s)\n", i, strata_strerror(rc), strata_errmsg());
        }
        sleep_ms(3);
    }
    return NULL;
}

/* Port of the master serving slot, asked from any live node; -1 if none. */
static int master_of_slot(const backend *b, int slot)
{
    redisReply *r = raw(b, "CLUSTER SLOTS");
    int port = -1;
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->elements >= 3 && slot >= e->element[0]->integer &&
            slot <= e->element[1]->integer) {
            port = (int)e->element[2]->element[1]->integer;
        }
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    return port;
}

static bool wait_ok_since_mark(fo_ctx *c, int k, int want, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 50) {
        if (atomic_load(&c->ok_since_mark[k]) >= want) {
            return true;
        }
        sleep_ms(50);
    }
    return false;
}

TEST(cluster_failover)
{
    const backend *b = cluster();
    ASSERT_TRUE(b != NULL);
    fo_ctx *c = calloc(1, sizeof(*c));
    ASSERT_TRUE(c != NULL);
    c->s = open_store_ex(b, 5000, "fo:", 1);
    ASSERT_TRUE(c->s != NULL);
    redisReply *r = raw(b, "CLUSTER KEYSLOT fo:session:{t:f0}:state");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    int slot = (int)r->integer;
    freeReplyObject(r);
    int victim = master_of_slot(b, slot);
    ASSERT_TRUE(victim > 0);
    struct timeval tv = {1, 0};
    redisContext *vc = redisConnectWithTimeout("127.0.0.1", victim, tv);
    ASSERT_TRUE(vc != NULL && vc->err == 0);
    r = redisCommand(vc, "INFO server");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_STRING);
    const char *pid_at = strstr(r->str, "process_id:");
    ASSERT_TRUE(pid_at != NULL);
    pid_t victim_pid = (pid_t)atoi(pid_at + 11);
    freeReplyObject(r);
    redisFree(vc);

    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, fo_writer, c), 0);
    ASSERT_TRUE(wait_ok_since_mark(c, 0, 20, 5000)); /* writes flow */
    uint64_t t0 = clock_mono_ns();
    ASSERT_EQ(kill(victim_pid, SIGKILL), 0);
    /* The replica takes over: another node serves the slot. */
    int promoted = -1;
    for (int t = 0; t < 20000 && (promoted < 0 || promoted == victim); t += 100) {
        sleep_ms(100);
        promoted = master_of_slot(b, slot);
    }
    ASSERT_TRUE(promoted > 0 && promoted != victim);
    printf("  failover: %d -> %d after %.1f s\n", victim, promoted,
           (double)(clock_mono_ns() - t0) / 1e9);
    /* The promoted master has no replica, so WAIT 1 cannot succeed yet: bring
     * the killed node back; it rejoins as the new master's replica. */
    for (int k = 0; k < FO_SESSIONS; k++) {
        atomic_store(&c->ok_since_mark[k], 0);
    }
    char script[512];
    char cmd[2048];
    cluster_script(script, sizeof(script));
    snprintf(cmd, sizeof(cmd), "'%s' restart '%s' %d", script, g_cluster_dir, victim);
    ASSERT_EQ(system(cmd), 0);
    /* Every session, the failed-over one included, is acknowledged again. */
    for (int k = 0; k < FO_SESSIONS; k++) {
        ASSERT_TRUE(wait_ok_since_mark(c, k, 5, 20000));
    }
    printf("  writes acknowledged again %.1f s after the kill\n",
           (double)(clock_mono_ns() - t0) / 1e9);
    atomic_store(&c->stop, true);
    pthread_join(th, NULL);

    /* Every acknowledged turn survived, at the seq it was acknowledged with. */
    int checked = 0;
    for (int k = 0; k < FO_SESSIONS; k++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "f%d", k);
        strata_session *ss = NULL;
        ASSERT_OK(c->s->ops->session_get(c->s, "t", sid, &ss));
        uint32_t first = ss->turn_count - (uint32_t)ss->n_turns + 1;
        int lost = 0;
        for (int j = 0; j < c->n_acked[k]; j++) {
            const fo_acked *a = &c->acked[k][j];
            char want[32];
            snprintf(want, sizeof(want), "f%d-%d", k, a->i);
            if (a->seq < first || a->seq > ss->turn_count ||
                strcmp(ss->turns[a->seq - first].content, want) != 0) {
                if (lost++ == 0) {
                    fprintf(stderr, "  lost: session %d seq %u (%s)\n", k, a->seq, want);
                }
            }
            checked++;
        }
        /* A resent append (connection lost mid-call) is not applied twice. */
        int dup = 0;
        for (size_t j = 1; j < ss->n_turns; j++) {
            dup += strcmp(ss->turns[j - 1].content, ss->turns[j].content) == 0;
        }
        strata_session_free(ss);
        ASSERT_EQ(lost, 0);
        ASSERT_EQ(dup, 0);
    }
    l1_redis_stats rs;
    l1_redis_stats_get(c->s, &rs);
    printf("  %d acknowledged turns checked, %d not acknowledged; moved %llu, refreshes %llu, "
           "retries %llu\n", checked, atomic_load(&c->errors), (unsigned long long)rs.moved,
           (unsigned long long)rs.refreshes, (unsigned long long)rs.retries);
    ASSERT_TRUE(rs.refreshes >= 2);
    ASSERT_TRUE(check_consistent(c->s, 5000));
    c->s->ops->close(c->s);
    free(c);
}

/* ---- TLS: failures that must be clear and quick, and the relay's own cases ---------- */

static double secs_since(uint64_t t0)
{
    return (double)(clock_mono_ns() - t0) / 1e9;
}

/* Open a standalone store on addr with TLS settings t (NULL: plain) and
 * short deadlines; the time it took goes to *secs. The store, if any, goes
 * to *out, or is closed when out is NULL. */
static int tls_try_open(const char *addr, const redis_tls_options *t, double *secs,
                        l1_store **out)
{
    const char *one[] = {addr};
    l1_redis_options o;
    l1_redis_options_init(&o);
    o.addresses = one;
    o.n_addresses = 1;
    o.connect_timeout_ms = 500;
    o.command_timeout_ms = 1000;
    o.key_prefix = "tlsx:";
    o.tls = t;
    l1_store *s = NULL;
    uint64_t t0 = clock_mono_ns();
    int rc = l1_redis_open(&o, &s);
    *secs = secs_since(t0);
    if (rc != STRATA_OK) {
        printf("  %s (%.2f s): %s\n", strata_strerror(rc), *secs, strata_errmsg());
    }
    if (out != NULL) {
        *out = s;
    } else if (s != NULL) {
        s->ops->close(s);
    }
    return rc;
}

/* Threads of this process (relays included). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* A server certificate from another CA: refused at once, saying why. */
TEST(tls_wrong_ca)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    redis_tls_options t = g_tls_opts;
    t.cacert = g_other_ca;
    double secs;
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    ASSERT_TRUE(strstr(strata_errmsg(), "certificate") != NULL);
    ASSERT_TRUE(secs < 1.0); /* not retried until the deadline */
    t.cacert = NULL; /* the system store does not know our test CA either */
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
}

/* The certificate names localhost and 127.0.0.1: other names are refused;
 * a DNS name (sent as SNI) is checked against the DNS SAN. */
TEST(tls_server_name)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    redis_tls_options t = g_tls_opts;
    t.server_name = "redis.example";
    double secs;
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    ASSERT_TRUE(strstr(strata_errmsg(), "hostname mismatch") != NULL);
    t.server_name = "127.0.0.2";
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    ASSERT_TRUE(strstr(strata_errmsg(), "IP address mismatch") != NULL);
    t.server_name = "localhost";
    ASSERT_OK(tls_try_open(b->addrs[0], &t, &secs, NULL));
    char by_name[64];
    snprintf(by_name, sizeof(by_name), "localhost:%d", g_tls_srv.tls_port);
    ASSERT_OK(tls_try_open(by_name, &g_tls_opts, &secs, NULL));
}

/* Plain RESP to the TLS port, and TLS to the plain port: errors within the
 * deadline, never a hang. */
TEST(tls_port_mismatch)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    double secs;
    int rc = tls_try_open(g_tls_srv.tls_addr, NULL, &secs, NULL);
    ASSERT_TRUE(rc == STRATA_EIO || rc == STRATA_ETIMEDOUT);
    ASSERT_TRUE(secs < 3.0);
    rc = tls_try_open(g_tls_srv.addr, &g_tls_opts, &secs, NULL);
    ASSERT_TRUE(rc == STRATA_EIO || rc == STRATA_ETIMEDOUT);
    ASSERT_TRUE(strstr(strata_errmsg(), "TLS") != NULL);
    ASSERT_TRUE(secs < 3.0);
}

/* tls-auth-clients yes: no client certificate is a clear, immediate error
 * (TLS 1.3 reports it after the handshake, on the first command); with the
 * CA-signed client certificate everything works. */
TEST(tls_client_certificate)
{
    ASSERT_TRUE(certs() != NULL);
    redis_server srv;
    ASSERT_EQ(redis_server_start_tls(&srv, g_certs, "yes"), 0);
    redis_tls_options t = g_tls_opts;
    double secs;
    int rc = tls_try_open(srv.tls_addr, &t, &secs, NULL);
    /* Usually the server's alert names the missing certificate at once; on a
     * loaded machine (or under TSan) the reset may win the race with it, and
     * then the open fails at its deadline instead. Either way: refused. */
    bool refused = (rc == STRATA_EINVAL && strstr(strata_errmsg(), "certificate") != NULL) ||
                   ((rc == STRATA_ETIMEDOUT || rc == STRATA_EIO) && secs < 3.0);
    t.cert = g_client_cert;
    t.key = g_client_key;
    l1_store *s = NULL;
    int rc2 = tls_try_open(srv.tls_addr, &t, &secs, &s);
    uint32_t count = 0;
    int rc3 = s != NULL ? append_n(s, "t", "s", "u", STRATA_ROLE_USER, "hi", 2, 1, &count)
                        : STRATA_EIO;
    if (s != NULL) {
        s->ops->close(s);
    }
    redis_server_stop(&srv);
    ASSERT_TRUE(refused);
    ASSERT_OK(rc2);
    ASSERT_OK(rc3);
    ASSERT_EQ(count, 1);
}

/* Unusable files are refused at open, naming the file. */
TEST(tls_bad_files)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    redis_tls_options t = g_tls_opts;
    t.cacert = "/nonexistent/ca.pem";
    double secs;
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    ASSERT_TRUE(strstr(strata_errmsg(), "/nonexistent/ca.pem") != NULL);
    t = g_tls_opts;
    t.cert = g_client_cert; /* no key */
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    char wrong_key[600];
    snprintf(wrong_key, sizeof(wrong_key), "%s/server.key", g_certs);
    t.key = wrong_key;
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    ASSERT_TRUE(strstr(strata_errmsg(), "does not match") != NULL);
}

/* Redis closing every client connection (as at a restart or a timeout):
 * the relays end, hiredis sees EOF, the store reconnects on its own. */
TEST(tls_server_closes_connections)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(append(s, "t", "s", "u", "before", 1));
    redisReply *r = raw(b, "CLIENT KILL TYPE normal"); /* all but this plain one */
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
    freeReplyObject(r);
    uint32_t count = 0;
    ASSERT_OK(append_n(s, "t", "s", "u", STRATA_ROLE_USER, "after", 5, 2, &count));
    ASSERT_EQ(count, 2);
    l1_redis_stats rs;
    l1_redis_stats_get(s, &rs);
    ASSERT_TRUE(rs.connects >= 2);
    s->ops->close(s);
}

/* Values far larger than a TLS record (16 KiB) and than the socketpair's
 * buffer, both ways: a 1.6 MB reply makes the relay wait for hiredis. */
TEST(tls_large_values)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    l1_store *s = open_store(b, 8);
    ASSERT_TRUE(s != NULL);
    enum { BIG = 200 * 1024 };
    char *big = malloc(BIG);
    ASSERT_TRUE(big != NULL);
    for (int k = 0; k < 8; k++) {
        for (size_t i = 0; i < BIG; i++) {
            big[i] = (char)('a' + (i * 7 + (size_t)k) % 26);
        }
        uint32_t count = 0;
        int rc = append_n(s, "t", "big", "u", STRATA_ROLE_USER, big, BIG, k + 1, &count);
        if (rc != STRATA_OK) {
            free(big);
        }
        ASSERT_OK(rc);
    }
    strata_session *ss = NULL;
    int rc = s->ops->session_get(s, "t", "big", &ss);
    bool same = rc == STRATA_OK && ss->n_turns == 8;
    for (size_t k = 0; same && k < 8; k++) {
        for (size_t i = 0; i < BIG; i++) {
            big[i] = (char)('a' + (i * 7 + k) % 26);
        }
        same = ss->turns[k].content_len == BIG && memcmp(ss->turns[k].content, big, BIG) == 0;
    }
    strata_session_free(ss);
    free(big);
    s->ops->close(s);
    ASSERT_OK(rc);
    ASSERT_TRUE(same);
}

/* Every relay thread is joined by close, including after failed opens and
 * with several pooled connections in use at once. */
static void *tls_hammer(void *arg)
{
    l1_store *s = arg;
    for (int i = 0; i < 50; i++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "h%d", i % 7);
        if (append(s, "t", sid, "u", "x", i + 1) != STRATA_OK) {
            return (void *)1;
        }
    }
    return NULL;
}

static void *tls_nothing(void *arg)
{
    return arg;
}

TEST(tls_no_thread_leak)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    /* A first thread makes a sanitizer runtime start its own background
     * thread, which must not count as ours. */
    pthread_t warm;
    ASSERT_EQ(pthread_create(&warm, NULL, tls_nothing, NULL), 0);
    pthread_join(warm, NULL);
    int before = thread_count();
    l1_store *s = open_store(b, 5);
    ASSERT_TRUE(s != NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pthread_create(&th[i], NULL, tls_hammer, s), 0);
    }
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        ok = ok && rv == NULL;
    }
    l1_redis_stats rs;
    l1_redis_stats_get(s, &rs);
    int during = thread_count();
    s->ops->close(s);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(rs.connects >= 2);
    ASSERT_EQ(during, before + (int)rs.connects); /* one relay per live connection */
    ASSERT_EQ(thread_count(), before);
    redis_tls_options t = g_tls_opts;
    t.cacert = g_other_ca;
    double secs;
    ASSERT_EQ(tls_try_open(b->addrs[0], &t, &secs, NULL), STRATA_EINVAL);
    ASSERT_EQ(thread_count(), before);
}

static int tls_count_cb(void *ctx, const aol_record *rec)
{
    (void)rec;
    (*(uint64_t *)ctx)++;
    return 0;
}

/* The replay stream (same connection layer) over TLS: XADD, then a scan. */
TEST(tls_replay_stream)
{
    const backend *b = tls_standalone();
    ASSERT_TRUE(b != NULL);
    replay_stream_options o;
    replay_stream_options_init(&o);
    o.addresses = b->addrs;
    o.n_addresses = 1;
    o.key = "tls:replay";
    o.retention_s = 0;
    o.tls = &g_tls_opts;
    replay_stream *rs = NULL;
    ASSERT_OK(replay_stream_open(&o, &rs));
    uint8_t payload[3] = {0, 0xff, 7};
    int rc = STRATA_OK;
    for (uint64_t i = 1; i <= 3 && rc == STRATA_OK; i++) {
        aol_record rec = {.lsn = i, .ts_ms = 1706500000000, .type = AOL_TURN, .tenant = "t",
                          .tenant_len = 1, .payload = payload, .payload_len = sizeof(payload)};
        rc = replay_stream_append(rs, &rec);
    }
    replay_stream_close(rs);
    ASSERT_OK(rc);
    redisReply *r = raw(b, "XLEN tls:replay");
    ASSERT_TRUE(r != NULL && r->type == REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, 3);
    freeReplyObject(r);
    uint64_t n = 0;
    ASSERT_OK(replay_stream_scan(&o, tls_count_cb, &n));
    ASSERT_EQ(n, 3);
}

/* A TLS client is redirected to TLS ports: MOVED from the wrong node names
 * the owner's TLS port (a plain one would fail the handshake), and a routed
 * call lands there. */
TEST(tls_cluster_moved)
{
    const backend *b = tls_cluster();
    ASSERT_TRUE(b != NULL);
    rcl_options ro = {.addrs = b->addrs, .n_addrs = (size_t)b->n_ports,
                      .connect_timeout_ms = 500, .command_timeout_ms = 2000, .pool_size = 1,
                      .cluster = true, .tls = &g_tls_opts};
    rcl *c = NULL;
    ASSERT_OK(rcl_open(&ro, &c));
    const char *key = "tls:moved";
    int slot = rcl_keyslot(key, strlen(key));
    int owner = -1;
    redisReply *r = raw(b, "CLUSTER SLOTS"); /* plain client: plain ports */
    for (size_t i = 0; r != NULL && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (slot >= e->element[0]->integer && slot <= e->element[1]->integer) {
            for (int k = 0; k < b->n_ports; k++) {
                owner = b->ports[k] == e->element[2]->element[1]->integer ? k : owner;
            }
        }
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    int wrong = (owner + 1) % b->n_ports; /* seeds are nodes 0..n-1, in order */
    const char *argv[] = {"SET", key, "v"};
    rcl_call call = {slot, wrong, 0, 3, argv, NULL, NULL, -1};
    int rc = rcl_exec(c, &call);
    char want[64];
    snprintf(want, sizeof(want), "MOVED %d %s", slot, owner >= 0 ? b->addr[owner] : "?");
    bool moved = rc == STRATA_OK && call.reply->type == REDIS_REPLY_ERROR &&
                 strcmp(call.reply->str, want) == 0;
    if (!moved && rc == STRATA_OK) {
        fprintf(stderr, "  got \"%s\", want \"%s\"\n", call.reply->str ? call.reply->str : "",
                want);
    }
    if (call.reply != NULL) {
        freeReplyObject(call.reply);
    }
    rcl_call routed = {slot, -1, RCL_IDEMPOTENT, 3, argv, NULL, NULL, -1};
    int rc2 = rcl_exec(c, &routed);
    bool set_ok = rc2 == STRATA_OK && routed.reply->type == REDIS_REPLY_STATUS;
    if (routed.reply != NULL) {
        freeReplyObject(routed.reply);
    }
    rcl_close(c);
    ASSERT_TRUE(owner >= 0);
    ASSERT_TRUE(moved);
    ASSERT_TRUE(set_ok);
}

TEST_MAIN(TEST_ENTRY(bad_options),
          TEST_ENTRY(standalone_append_and_read_back), TEST_ENTRY(standalone_buffer_trimmed_to_n),
          TEST_ENTRY(standalone_owner_conflict), TEST_ENTRY(standalone_stage_end_delete),
          TEST_ENTRY(standalone_tenant_isolation), TEST_ENTRY(standalone_dirty_sets),
          TEST_ENTRY(standalone_idle_listing), TEST_ENTRY(standalone_concurrent_readers_writers),
          TEST_ENTRY(standalone_index_repair), TEST_ENTRY(standalone_restart),
          TEST_ENTRY(cluster_append_and_read_back), TEST_ENTRY(cluster_buffer_trimmed_to_n),
          TEST_ENTRY(cluster_owner_conflict), TEST_ENTRY(cluster_stage_end_delete),
          TEST_ENTRY(cluster_tenant_isolation), TEST_ENTRY(cluster_dirty_sets),
          TEST_ENTRY(cluster_idle_listing), TEST_ENTRY(cluster_concurrent_readers_writers),
          TEST_ENTRY(cluster_index_repair), TEST_ENTRY(cluster_failover),
          TEST_ENTRY(tls_append_and_read_back), TEST_ENTRY(tls_buffer_trimmed_to_n),
          TEST_ENTRY(tls_owner_conflict), TEST_ENTRY(tls_stage_end_delete),
          TEST_ENTRY(tls_tenant_isolation), TEST_ENTRY(tls_dirty_sets),
          TEST_ENTRY(tls_idle_listing), TEST_ENTRY(tls_concurrent_readers_writers),
          TEST_ENTRY(tls_index_repair), TEST_ENTRY(tls_wrong_ca), TEST_ENTRY(tls_server_name),
          TEST_ENTRY(tls_port_mismatch), TEST_ENTRY(tls_client_certificate),
          TEST_ENTRY(tls_bad_files), TEST_ENTRY(tls_server_closes_connections),
          TEST_ENTRY(tls_large_values), TEST_ENTRY(tls_no_thread_leak),
          TEST_ENTRY(tls_replay_stream),
          TEST_ENTRY(tls_cluster_append_and_read_back), TEST_ENTRY(tls_cluster_buffer_trimmed_to_n),
          TEST_ENTRY(tls_cluster_owner_conflict), TEST_ENTRY(tls_cluster_stage_end_delete),
          TEST_ENTRY(tls_cluster_tenant_isolation), TEST_ENTRY(tls_cluster_dirty_sets),
          TEST_ENTRY(tls_cluster_idle_listing),
          TEST_ENTRY(tls_cluster_concurrent_readers_writers),
          TEST_ENTRY(tls_cluster_index_repair), TEST_ENTRY(tls_cluster_moved))
