/*
 * openai_stub.h - run tests/support/openai_stub.py (a fake OpenAI-compatible
 * server) from a C unit test. Include after test.h.
 *
 *   STUB_TEST(name) { ...uses stub->base_url, stub_control(stub, "{...}")... }
 *
 * defines a test that starts a fresh stub on a free port, runs the body, and
 * stops the stub whether the body passed or returned early on a failed ASSERT.
 * Should the test binary die instead (a crash, an abort), the stub follows:
 * it gets SIGTERM when its parent dies (PR_SET_PDEATHSIG), watches the parent
 * pid itself, and exits after --lifetime seconds regardless.
 *
 * The script is found, first hit wins, at $STRATA_SOURCE_DIR/tests/support,
 * ../tests/support, ../../tests/support, tests/support (relative to the
 * current directory: ctest runs unit tests from build/tests), then relative to
 * the test binary, then next to this header as the compiler saw it.
 */
#ifndef STRATA_TEST_OPENAI_STUB_H
#define STRATA_TEST_OPENAI_STUB_H

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct stub_server {
    pid_t pid;                 /* the python process; 0 when not running */
    int port;                  /* 127.0.0.1 port it listens on */
    char base_url[64];         /* "http://127.0.0.1:PORT" */
} stub_server;

#define STUB_SCRIPT "openai_stub.py"

static inline int stub_file_ok_(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Find openai_stub.py; 0 with the path in out, -1 if nowhere. */
static inline int stub_find_script(char *out, size_t cap)
{
    const char *src = getenv("STRATA_SOURCE_DIR");
    if (src != NULL && src[0] != '\0') {
        int w = snprintf(out, cap, "%s/tests/support/" STUB_SCRIPT, src);
        if (w > 0 && (size_t)w < cap && stub_file_ok_(out)) {
            return 0;
        }
    }
    static const char *const rel[] = {"../tests/support/", "../../tests/support/",
                                      "tests/support/", "../../../tests/support/"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(out, cap, "%s" STUB_SCRIPT, rel[i]);
        if (stub_file_ok_(out)) {
            return 0;
        }
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
                int w = snprintf(out, cap, "%s/%s" STUB_SCRIPT, exe, rel[i]);
                if (w > 0 && (size_t)w < cap && stub_file_ok_(out)) {
                    return 0;
                }
            }
        }
    }
    /* __FILE__ of this header: tests/support/openai_stub.h, possibly via tests/unit/../ */
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash != NULL && (size_t)(slash - out) + sizeof(STUB_SCRIPT) + 1 < cap) {
        strcpy(slash + 1, STUB_SCRIPT);
        if (stub_file_ok_(out)) {
            return 0;
        }
    }
    return -1;
}

/* Stubs still running, killed at exit in case a test forgot (it should not). */
static pid_t stub_live_[8];

static inline void stub_kill_all_(void)
{
    for (size_t i = 0; i < sizeof(stub_live_) / sizeof(stub_live_[0]); i++) {
        if (stub_live_[i] > 0) {
            kill(stub_live_[i], SIGKILL);
            waitpid(stub_live_[i], NULL, 0);
            stub_live_[i] = 0;
        }
    }
}

static inline void stub_track_(pid_t pid, pid_t replace)
{
    static int registered;
    if (!registered) {
        atexit(stub_kill_all_);
        registered = 1;
    }
    for (size_t i = 0; i < sizeof(stub_live_) / sizeof(stub_live_[0]); i++) {
        if (stub_live_[i] == replace) {
            stub_live_[i] = pid;
            return;
        }
    }
}

static inline void stub_stop(stub_server *s)
{
    if (s->pid <= 0) {
        return;
    }
    kill(s->pid, SIGTERM);
    int status;
    int reaped = 0;
    for (int i = 0; i < 200 && !reaped; i++) {      /* up to 2 s, then SIGKILL */
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            reaped = 1;
        } else {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (!reaped) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    }
    stub_track_(0, s->pid);
    s->pid = 0;
}

/* Start the stub with extra arguments (may be NULL): returns 0 or -1 (with a
 * message on stderr). Waits up to 15 s for "listening on PORT". */
static inline int stub_start_args(stub_server *s, unsigned dim, const char *extra1,
                                  const char *extra2)
{
    memset(s, 0, sizeof(*s));
    char script[PATH_MAX];
    if (stub_find_script(script, sizeof(script)) != 0) {
        fprintf(stderr, "  cannot find tests/support/" STUB_SCRIPT
                " (set STRATA_SOURCE_DIR to the source tree)\n");
        return -1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return -1;
    }
    char dim_s[16];
    char ppid_s[16];
    snprintf(dim_s, sizeof(dim_s), "%u", dim);
    snprintf(ppid_s, sizeof(ppid_s), "%d", (int)getpid());
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        const char *argv[16] = {"python3", script, "--port", "0", "--dim", dim_s,
                                "--parent-pid", ppid_s, "--lifetime", "120"};
        int argc = 10;
        if (extra1 != NULL) {
            argv[argc++] = extra1;
        }
        if (extra2 != NULL) {
            argv[argc++] = extra2;
        }
        argv[argc] = NULL;
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    s->pid = pid;
    stub_track_(pid, 0);
    char line[128];
    size_t len = 0;
    int port = 0;
    for (int waited_ms = 0; waited_ms < 15000 && port == 0;) {
        struct pollfd p = {fds[0], POLLIN, 0};
        int r = poll(&p, 1, 100);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            waited_ms += 100;
            continue;
        }
        ssize_t got = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (got <= 0) {
            break;   /* EOF: the stub died */
        }
        len += (size_t)got;
        line[len] = '\0';
        if (strchr(line, '\n') != NULL) {
            if (sscanf(line, "listening on %d", &port) != 1) {
                port = 0;
            }
            break;
        }
        if (len == sizeof(line) - 1) {
            break;
        }
    }
    close(fds[0]);
    if (port <= 0) {
        fprintf(stderr, "  the stub (%s) did not report a port: \"%.*s\"\n", script, (int)len,
                line);
        stub_stop(s);
        return -1;
    }
    s->port = port;
    snprintf(s->base_url, sizeof(s->base_url), "http://127.0.0.1:%d", port);
    return 0;
}

static inline int stub_start(stub_server *s, unsigned dim)
{
    return stub_start_args(s, dim, NULL, NULL);
}

static inline size_t stub_on_body_(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    char **acc = userdata;
    size_t n = size * nmemb;
    size_t old = *acc ? strlen(*acc) : 0;
    char *p = realloc(*acc, old + n + 1);
    if (p == NULL) {
        return 0;
    }
    memcpy(p + old, ptr, n);
    p[old + n] = '\0';
    *acc = p;
    return n;
}

/* One request to the stub's own routes; the body (malloc) or NULL. */
static inline char *stub_http_(stub_server *s, const char *path, const char *post_body)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return NULL;
    }
    char url[128];
    snprintf(url, sizeof(url), "%s%s", s->base_url, path);
    char *acc = NULL;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stub_on_body_);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &acc);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (post_body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post_body);
    }
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK || status != 200) {
        fprintf(stderr, "  stub %s failed: %s, HTTP %ld\n", path, curl_easy_strerror(cc), status);
        free(acc);
        return NULL;
    }
    return acc;
}

/* POST /control (also resets the stub's counters); 0 or -1. */
static inline int stub_control(stub_server *s, const char *json_body)
{
    char *r = stub_http_(s, "/control", json_body);
    free(r);
    return r != NULL ? 0 : -1;
}

/* GET /stats as parsed JSON (json_decref), or NULL. */
static inline json_t *stub_stats(stub_server *s)
{
    char *r = stub_http_(s, "/stats", NULL);
    if (r == NULL) {
        return NULL;
    }
    json_t *j = json_loads(r, 0, NULL);
    free(r);
    return j;
}

/* One integer counter from /stats ("total", "embeddings", "chat"); -1 on error. */
static inline long stub_count(stub_server *s, const char *key)
{
    json_t *j = stub_stats(s);
    long v = json_is_integer(json_object_get(j, key)) ?
                 (long)json_integer_value(json_object_get(j, key)) : -1;
    json_decref(j);
    return v;
}

/* A 127.0.0.1 port nothing listens on (bound, then released), or -1. */
static inline int stub_dead_port(void)
{
    stub_server tmp;
    if (stub_start(&tmp, 1) != 0) {
        return -1;
    }
    int port = tmp.port;
    stub_stop(&tmp);
    return port;
}

static inline long stub_elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A test whose body runs against a fresh stub (of dimension dim) that is
 * always stopped afterwards. The body sees `stub_server *stub`. */
#define STUB_TEST_DIM(name, dim, extra1, extra2)                                  \
    static void stub_body_##name(stub_server *stub, int *test_failed_);           \
    TEST(name)                                                                    \
    {                                                                             \
        stub_server stub_;                                                        \
        if (stub_start_args(&stub_, (dim), (extra1), (extra2)) != 0) {            \
            TEST_FAIL_("%s", "cannot start tests/support/openai_stub.py");        \
        }                                                                         \
        stub_body_##name(&stub_, test_failed_);                                   \
        stub_stop(&stub_);                                                        \
    }                                                                             \
    static void stub_body_##name(stub_server *stub, int *test_failed_)

#define STUB_TEST(name) STUB_TEST_DIM(name, 8, NULL, NULL)

#endif /* STRATA_TEST_OPENAI_STUB_H */
