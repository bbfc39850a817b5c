/*
 * bench_minilm.c - throughput and memory of the built-in all-MiniLM-L6-v2
 * embedder (src/providers/embed_minilm.c). Not a test; see README.md here.
 *
 *   bench_minilm MODEL_DIR [SECONDS_PER_CELL]
 *
 * For inputs of 16, 32 and 128 tokens ([CLS] and [SEP] included), embeds
 * batches of BATCH sentences for SECONDS_PER_CELL (default 3) with 1 and
 * with 2 threads calling embed on the same handle, and prints sentences/s;
 * also single-sentence latency at 16 tokens, and the resident memory after
 * load and at its peak. Env STRATA_SGEMM picks a slower kernel.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "providers/embed_minilm.h"

#define BATCH 32
#define MAX_THREADS 2

/* Words that are one WordPiece token each in the uncased BERT vocabulary. */
static const char *words[] = {"memory", "agent", "stores", "facts", "about", "users", "and",
                              "their", "preferences", "over", "time", "the", "system", "can",
                              "recall", "events", "from", "last", "week", "quickly"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, strlen(field)) == 0) {
            v = strtol(line + strlen(field) + 1, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

typedef struct job {
    embedder *e;
    const char *const *texts;
    size_t batch;
    double seconds;
    long done;      /* sentences embedded */
    int rc;
} job;

static void *worker(void *p)
{
    job *j = p;
    float *out = malloc(j->batch * 384 * sizeof(float));
    double end = now_s() + j->seconds;
    while (out != NULL && now_s() < end && j->rc == 0) {
        j->rc = embedder_embed(j->e, j->texts, NULL, j->batch, out);
        j->done += (long)j->batch;
    }
    free(out);
    return NULL;
}

static double run_cell(embedder *e, const char *const *texts, size_t batch, int threads,
                       double seconds)
{
    job jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){e, texts, batch, seconds, 0, 0};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc != 0) {
            fprintf(stderr, "embed failed: %s\n", strata_errmsg());
            exit(1);
        }
        total += jobs[i].done;
    }
    return (double)total / (now_s() - t0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [SECONDS_PER_CELL]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    long rss0 = rss_kb("VmRSS:");
    double t0 = now_s();
    embedder *e = NULL;
    if (embedder_minilm_create(argv[1], 0, &e) != 0) {
        fprintf(stderr, "load failed: %s\n", strata_errmsg());
        return 1;
    }
    double load_s = now_s() - t0;
    long rss_loaded = rss_kb("VmRSS:");
    printf("kernel %s, load %.2f s, RSS %ld MB before load, %ld MB after\n",
           embedder_minilm_kernel(e), load_s, rss0 / 1024, rss_loaded / 1024);

    static const int lengths[] = {16, 32, 128};
    static char text[BATCH][2048];
    const char *texts[BATCH];
    printf("%-8s %-6s %-14s %-14s\n", "tokens", "batch", "1 thread s/s", "2 threads s/s");
    for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
        for (int b = 0; b < BATCH; b++) {
            size_t off = 0;
            for (int w = 0; w < lengths[li] - 2; w++) {
                off += (size_t)snprintf(text[b] + off, sizeof(text[b]) - off, "%s%s",
                                        w ? " " : "", words[(size_t)(w * 7 + b) % 20]);
            }
            texts[b] = text[b];
        }
        double one = run_cell(e, texts, BATCH, 1, seconds);
        double two = run_cell(e, texts, BATCH, 2, seconds);
        printf("%-8d %-6d %-14.1f %-14.1f\n", lengths[li], BATCH, one, two);
        fflush(stdout);
        if (li == 0) {
            double lat = run_cell(e, texts, 1, 1, seconds);
            printf("%-8d %-6d %-14.1f (%.2f ms per call)\n", lengths[li], 1, lat, 1000.0 / lat);
        }
    }
    printf("peak RSS %ld MB\n", rss_kb("VmHWM:") / 1024);
    embedder_free(e);
    return 0;
}
