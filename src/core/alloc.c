/*
 * alloc.c - every allocation of the library goes through here, so a host
 * program can supply its own allocator (strata_set_allocator) and tests can
 * make the Nth allocation fail (strata_alloc_fail_after) to prove that every
 * error path unwinds without leaks or crashes.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static strata_allocator g_alloc = {malloc, realloc, free};
/* Fault injection: when >= 0, counts down; the allocation that finds it at 0 fails. */
static _Atomic long g_fail_countdown = -1;
static atomic_ulong g_alloc_count;

void strata_set_allocator(const strata_allocator *alloc)
{
    if (alloc == NULL) {
        g_alloc.malloc_fn = malloc;
        g_alloc.realloc_fn = realloc;
        g_alloc.free_fn = free;
    } else {
        g_alloc = *alloc;
    }
}

void strata_alloc_fail_after(long n)
{
    atomic_store(&g_fail_countdown, n);
    atomic_store(&g_alloc_count, 0);
}

unsigned long strata_alloc_count(void)
{
    return atomic_load(&g_alloc_count);
}

/* True when this allocation must fail (fault injection). */
static bool alloc_should_fail(void)
{
    atomic_fetch_add(&g_alloc_count, 1);
    long cur = atomic_load(&g_fail_countdown);
    while (cur >= 0) {
        if (atomic_compare_exchange_weak(&g_fail_countdown, &cur, cur - 1)) {
            return cur == 0;
        }
    }
    return false;
}

void *strata_malloc(size_t size)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return g_alloc.malloc_fn(size ? size : 1);
}

void *strata_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    void *p = strata_malloc(n * size);
    if (p != NULL) {
        memset(p, 0, (n * size) != 0 ? n * size : 1);
    }
    return p;
}

void *strata_realloc(void *ptr, size_t size)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return g_alloc.realloc_fn(ptr, size ? size : 1);
}

void strata_free(void *ptr)
{
    if (ptr != NULL) {
        g_alloc.free_fn(ptr);
    }
}

char *strata_strndup(const char *s, size_t n)
{
    char *p = strata_malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *strata_strdup(const char *s)
{
    return s ? strata_strndup(s, strlen(s)) : NULL;
}

void *strata_memdup(const void *p, size_t n)
{
    void *q = strata_malloc(n);
    if (q != NULL && n > 0) {
        memcpy(q, p, n);
    }
    return q;
}
