/*
 * clock.c - wall and monotonic clocks. The wall clock can be pinned by tests
 * (clock_set_fake_ms) so expiry and retention are testable without sleeping.
 */
#include <stdatomic.h>
#include <time.h>

#include "core/core.h"

static _Atomic int64_t g_fake_ms;

void clock_set_fake_ms(int64_t ms)
{
    atomic_store(&g_fake_ms, ms);
}

int64_t clock_now_ms(void)
{
    int64_t fake = atomic_load(&g_fake_ms);
    if (fake != 0) {
        return fake;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_now_s(void)
{
    return clock_now_ms() / 1000;
}

uint64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
