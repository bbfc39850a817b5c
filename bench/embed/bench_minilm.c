/*
 * bench_minilm.c - throughput and memory of the built-in all-MiniLM-L6-v2
 * embedder (src/providers/embed_minilm.c). Not a test; see README.md here.
 *
 *   bench_minilm MODEL_DIR [SECONDS_PER_CELL]
 *
 * For inputs of 16, 32 and 128 tokens ([CLS] and [SEP] included), embeds
 * batches of BATCH sentences for SECONDS_PER_CELL (default 3) with one
 * thread, then with one thread per core, all calling embed on the same
 * handle (the server's pattern: concurrent requests, one model), and prints
 *
 *   tokens batch  1-thread s/s  1-thread s/cpu-s  all-cores s/s
 *
 * "s/cpu-s" is sentences per second of the thread's own CPU time: on a box
 * shared with other jobs it is the per-core rate the wall clock hides. Then
 * single-sentence latency at 16 tokens and resident memory after load and at
 * its peak. The same columns come out of ort_ref.py bench, so run.sh can put
 * the two side by side. Env STRATA_SGEMM picks a slower kernel.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "providers/embed_minilm.h"

#define BATCH 32
#define MAX_THREADS 64

/* Words that are one WordPiece token each in the uncased BERT vocabulary. */
static const char *words[] = {"memory", "agent", "stores", "facts", "about", "users", "and",
                              "their", "preferences", "over", "time", "the", "system", "can",
                              "recall", "events", "from", "last", "week", "quickly"};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
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
    double cpu;     /* this thread's CPU seconds in the counted loop */
    double wall;    /* wall seconds of the counted loop */
    int rc;
} job;

static void *worker(void *p)
{
    job *j = p;
    float *out = malloc(j->batch * EMBED_MINILM_DIM * sizeof(float));
    if (out == NULL) {
        j->rc = -1;
        return NULL;
    }
    j->rc = embedder_embed(j->e, j->texts, NULL, j->batch, out);    /* warm-up */
    double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    double w0 = clock_s(CLOCK_MONOTONIC);
    while (clock_s(CLOCK_MONOTONIC) < w0 + j->seconds && j->rc == 0) {
        j->rc = embedder_embed(j->e, j->texts, NULL, j->batch, out);
        j->done += (long)j->batch;
    }
    j->cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    j->wall = clock_s(CLOCK_MONOTONIC) - w0;
    free(out);
    return NULL;
}

/* Sentences/s over threads threads (the sum of each thread's rate over its
 * own counted loop, warm-up excluded); *per_cpu: per CPU second. */
static double run_cell(embedder *e, const char *const *texts, size_t batch, int threads,
                       double seconds, double *per_cpu)
{
    job jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){e, texts, batch, seconds, 0, 0.0, 0.0, 0};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    long total = 0;
    double cpu = 0.0;
    double rate = 0.0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc != 0) {
            fprintf(stderr, "embed failed: %s\n", strata_errmsg());
            exit(1);
        }
        total += jobs[i].done;
        cpu += jobs[i].cpu;
        rate += jobs[i].wall > 0.0 ? (double)jobs[i].done / jobs[i].wall : 0.0;
    }
    if (per_cpu != NULL) {
        *per_cpu = cpu > 0.0 ? (double)total / cpu : 0.0;
    }
    return rate;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [SECONDS_PER_CELL]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    long rss0 = rss_kb("VmRSS:");
    double t0 = clock_s(CLOCK_MONOTONIC);
    embedder *e = NULL;
    if (embedder_minilm_create(argv[1], 0, &e) != 0) {
        fprintf(stderr, "load failed: %s\n", strata_errmsg());
        return 1;
    }
    double load_s = clock_s(CLOCK_MONOTONIC) - t0;
    long rss_loaded = rss_kb("VmRSS:");
    printf("strata kernel %s, load %.2f s, RSS %ld MB before load, %ld MB after\n",
           embedder_minilm_kernel(e), load_s, rss0 / 1024, rss_loaded / 1024);

    static const int lengths[] = {16, 32, 128};
    static char text[BATCH][2048];
    const char *texts[BATCH];
    printf("%-7s %-6s %-13s %-16s %d-threads s/s\n", "tokens", "batch", "1-thread s/s",
           "1-thread s/cpu-s", threads);
    double lat = 0.0;
    for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
        for (int b = 0; b < BATCH; b++) {
            size_t off = 0;
            for (int w = 0; w < lengths[li] - 2; w++) {
                off += (size_t)snprintf(text[b] + off, sizeof(text[b]) - off, "%s%s",
                                        w ? " " : "", words[(size_t)(w * 7 + b) % 20]);
            }
            texts[b] = text[b];
        }
        double per_cpu = 0.0;
        double one = run_cell(e, texts, BATCH, 1, seconds, &per_cpu);
        double all = run_cell(e, texts, BATCH, threads, seconds, NULL);
        printf("%-7d %-6d %-13.1f %-16.1f %.1f\n", lengths[li], BATCH, one, per_cpu, all);
        fflush(stdout);
        if (li == 0) {
            lat = run_cell(e, texts, 1, 1, seconds, NULL);
        }
    }
    printf("latency, 1 sentence of 16 tokens: %.2f ms\n", 1000.0 / lat);
    printf("peak RSS %ld MB\n", rss_kb("VmHWM:") / 1024);
    embedder_free(e);
    return 0;
}
