/*
 * slog.c - diagnostics to stderr, one line per event with an ISO-8601 UTC
 * timestamp and level. Lines are formatted in a local buffer and written with
 * one write(2), so lines from concurrent threads do not interleave.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

static atomic_int g_level = SLOG_INFO;

void slog_set_level(slog_level level)
{
    atomic_store(&g_level, (int)level);
}

void slog(slog_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&g_level)) {
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : STRATA_MIN((size_t)m, sizeof(line) - (size_t)n - 2));
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
