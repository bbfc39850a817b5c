/*
 * ratelimit.c - per-key request rate limiting: a token bucket per API key
 * (capacity one second of requests, refilled continuously). Buckets live in
 * a hash table under one mutex; taking a token is a few arithmetic steps.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "server/server.h"

typedef struct bucket {
    double tokens;
    uint64_t last_ns;
} bucket;

struct rate_limiter {
    pthread_mutex_t lock;
    dict *buckets;
    double rate;                 /* tokens per second; also the capacity */
};

static const dict_type bucket_type = {strata_free};

rate_limiter *rate_limiter_create(double per_second)
{
    rate_limiter *rl = strata_calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return NULL;
    }
    rl->buckets = dict_create(&bucket_type);
    if (rl->buckets == NULL) {
        strata_free(rl);
        return NULL;
    }
    rl->rate = per_second;
    pthread_mutex_init(&rl->lock, NULL);
    return rl;
}

void rate_limiter_free(rate_limiter *rl)
{
    if (rl == NULL) {
        return;
    }
    dict_free(rl->buckets);
    pthread_mutex_destroy(&rl->lock);
    strata_free(rl);
}

bool rate_limiter_take(rate_limiter *rl, const char *key_id, int *retry_after_s)
{
    uint64_t now = clock_mono_ns();
    size_t klen = strlen(key_id);
    pthread_mutex_lock(&rl->lock);
    bucket *b = dict_get(rl->buckets, key_id, klen);
    if (b == NULL) {
        b = strata_malloc(sizeof(*b));
        if (b == NULL || dict_set(rl->buckets, key_id, klen, b) != STRATA_OK) {
            strata_free(b);
            pthread_mutex_unlock(&rl->lock);
            return true; /* out of memory: do not turn it into refusals */
        }
        b->tokens = rl->rate;
        b->last_ns = now;
    }
    b->tokens = fmin(rl->rate, b->tokens + (double)(now - b->last_ns) / 1e9 * rl->rate);
    b->last_ns = now;
    bool ok = b->tokens >= 1.0;
    if (ok) {
        b->tokens -= 1.0;
    } else {
        *retry_after_s = (int)ceil((1.0 - b->tokens) / rl->rate);
        if (*retry_after_s < 1) {
            *retry_after_s = 1;
        }
    }
    pthread_mutex_unlock(&rl->lock);
    return ok;
}
