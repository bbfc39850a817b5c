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

static inline void redis_server_stop(redis_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = -1;
    if (s->dir[0] != '\0') {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", s->dir);
        }
        s->dir[0] = '\0';
    }
}

/* Start redis-server (AOF everysec, no RDB) on a free port in a fresh
 * temporary directory and wait until it answers PING (5 s at most).
 * 0 on success; -1 with s->pid == -1 and nothing left behind otherwise. */
static inline int redis_server_start(redis_server *s)
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
        execlp("redis-server", "redis-server", "--port", port_str, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--dir", s->dir,
               (char *)NULL);
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
