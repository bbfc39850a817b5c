/*
 * redis_server.h - throwaway standalone redis-server processes for C unit
 * tests (factored from test_l1_redis.c's helpers, which can move to it).
 * Include after test.h.
 *
 *   redis_server srv;
 *   if (redis_server_start(&srv) != 0) ...      fresh dir, free port, AOF everysec
 *   srv.addr                                    "127.0.0.1:PORT", for the options
 *   redisReply *r = redis_server_cmd(&srv, "XLEN %s", key);   (hiredis format)
 *   redis_server_stop(&srv);                    SIGKILL, reap, remove the dir
 *
 * The server gets SIGKILL when the test process dies (PR_SET_PDEATHSIG), so a
 * crash or a failed ASSERT cannot leave it behind. redis_server_available()
 * says whether redis-server is in PATH, for a whole-file skip; it also sets
 * SIGPIPE to ignored, which hiredis users must do.
 *
 * TLS (Debian's redis-server speaks it; hiredis 0.14 does not, hence the
 * plain port kept for the helpers above):
 *
 *   char certs[512];
 *   redis_server_make_certs(certs, sizeof(certs));   CA, server, client certs
 *                                                    (tests/support/redis_tls_certs.sh)
 *   redis_server_start_tls(&srv, certs, "no");       srv.addr: plain port, as above;
 *                                                    srv.tls_addr: the TLS port
 *   redis_server_remove_dir(certs);
 */
#ifndef STRATA_TEST_REDIS_SERVER_H
#define STRATA_TEST_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

typedef struct redis_server {
    pid_t pid;                 /* the redis-server process; -1 when not running */
    int port;                  /* 127.0.0.1 port */
    char addr[32];             /* "127.0.0.1:PORT" */
    char dir[512];             /* its working directory (AOF, log), removed at stop */
    int tls_port;              /* 127.0.0.1 TLS port; 0 without TLS */
    char tls_addr[32];         /* "127.0.0.1:TLS_PORT" */
} redis_server;

static inline void redis_server_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline bool redis_server_in_path(const char *prog)
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

/* redis-server in PATH? Also ignores SIGPIPE (hiredis's requirement). */
static inline bool redis_server_available(void)
{
    signal(SIGPIPE, SIG_IGN);
    return redis_server_in_path("redis-server");
}

/* A loopback TCP port nobody listened on a moment ago (-1 on error). */
static inline int redis_server_free_port(void)
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

static inline bool redis_server_ping(int port)
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

static inline void redis_server_remove_dir(char *dir)
{
    if (dir[0] != '\0') {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", dir);
        }
        dir[0] = '\0';
    }
}

static inline void redis_server_stop(redis_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = -1;
    redis_server_remove_dir(s->dir);
}

/* Start redis-server (AOF everysec, no RDB) on a free port in a fresh
 * temporary directory, with the NULL-terminated extra arguments (may be
 * NULL) appended, and wait until it answers PING (5 s at most).
 * 0 on success; -1 with s->pid == -1 and nothing left behind otherwise. */
static inline int redis_server_start_args(redis_server *s, const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    char tmpl[] = "/tmp/strata-redis-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        return -1;
    }
    snprintf(s->dir, sizeof(s->dir), "%s", tmpl);
    s->port = redis_server_free_port();
    if (s->port < 0) {
        redis_server_stop(s);
        return -1;
    }
    snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
    char port_str[16];
    char log[600];
    snprintf(port_str, sizeof(port_str), "%d", s->port);
    snprintf(log, sizeof(log), "%s/redis.log", s->dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[64] = {"redis-server", "--port", port_str, "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "yes", "--appendfsync",
                                "everysec", "--dir", s->dir};
        size_t n = 13;
        for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 63; i++) {
            argv[n++] = extra[i];
        }
        argv[n] = NULL;
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 100 && pid > 0; i++) {
        if (redis_server_ping(s->port)) {
            return 0;
        }
        redis_server_sleep_ms(50);
    }
    redis_server_stop(s);
    return -1;
}

static inline int redis_server_start(redis_server *s)
{
    return redis_server_start_args(s, NULL);
}

/* Path of a file next to this header (absolute when the including test was
 * compiled from an absolute path, as under CMake). */
static inline void redis_server_support_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    size_t keep = slash != NULL ? (size_t)(slash - out) + 1 : 0;
    snprintf(out + keep, cap - keep, "%s", name);
}

/* Fresh certificates (see redis_tls_certs.sh) in a new temporary directory,
 * whose path goes to dir. 0 on success; -1 (nothing left) when openssl or
 * the script fails. */
static inline int redis_server_make_certs(char *dir, size_t cap)
{
    char tmpl[] = "/tmp/strata-redis-certs-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        return -1;
    }
    snprintf(dir, cap, "%s", tmpl);
    char script[700];
    char cmd[1600];
    redis_server_support_path("redis_tls_certs.sh", script, sizeof(script));
    snprintf(cmd, sizeof(cmd), "bash '%s' '%s'", script, dir);
    if (system(cmd) != 0) {
        redis_server_remove_dir(dir);
        return -1;
    }
    return 0;
}

/* As redis_server_start, plus a TLS port with certs/server.pem, trusting
 * certs/ca.pem for client certificates; auth_clients is redis's
 * tls-auth-clients: "no", "yes" or "optional". The plain port stays (the
 * helpers here use it). */
static inline int redis_server_start_tls(redis_server *s, const char *certs,
                                         const char *auth_clients)
{
    int tls_port = redis_server_free_port();
    if (tls_port < 0) {
        return -1;
    }
    char port[16];
    char cert[600];
    char key[600];
    char ca[600];
    snprintf(port, sizeof(port), "%d", tls_port);
    snprintf(cert, sizeof(cert), "%s/server.pem", certs);
    snprintf(key, sizeof(key), "%s/server.key", certs);
    snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
    const char *extra[] = {"--tls-port", port, "--tls-cert-file", cert, "--tls-key-file", key,
                           "--tls-ca-cert-file", ca, "--tls-auth-clients", auth_clients, NULL};
    if (redis_server_start_args(s, extra) != 0) {
        return -1;
    }
    s->tls_port = tls_port;
    snprintf(s->tls_addr, sizeof(s->tls_addr), "127.0.0.1:%d", tls_port);
    return 0;
}

/* One command on a fresh connection, formatted as for redisCommand (%b for
 * binary arguments). NULL on a connection failure; freeReplyObject after. */
static inline redisReply *redis_server_cmd(const redis_server *s, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (c == NULL || c->err != 0) {
        if (c != NULL) {
            redisFree(c);
        }
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* An integer reply's value, or -1 (no reply, or another type). */
static inline long long redis_server_int(const redis_server *s, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    long long v = -1;
    if (c != NULL && c->err == 0) {
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
            v = r->integer;
        }
        if (r != NULL) {
            freeReplyObject(r);
        }
    }
    if (c != NULL) {
        redisFree(c);
    }
    return v;
}

#endif /* STRATA_TEST_REDIS_SERVER_H */
