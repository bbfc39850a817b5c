/*
 * restore.c - point-in-time restore (brief §3.3): the state of a data
 * directory as it was at a given time, rebuilt into a new directory from the
 * source's snapshots and log. The source is only read (aol_scan_dir takes no
 * lock), so a server can keep running on it.
 *
 *   1. scan the source log: first LSN present, and L = the first record
 *      accepted after the target time;
 *   2. base: nothing if the log still starts at LSN 1, else the newest
 *      complete snapshot set S with first_lsn - 1 <= S < L, copied as is;
 *   3. open the new directory (its log starts at S + 1) and re-log every
 *      record S < lsn < L under its own LSN and time, applying it.
 * LSNs are preserved, so memory and job ids in the restored copy are the
 * original ones.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l1/redis_tls.h"
#include "pipeline/pipeline.h"
#include "pipeline/repl.h"
#include "pipeline/replay_stream.h"

/* Every tier strata_db_snapshot writes: a base missing one would restore
 * that tier empty. */
static const char *const TIERS[] = {"l1", "kv", "jobs", "l2", "l3", "profile", "keys"};

typedef struct scan1 {
    int64_t at_ms;
    uint64_t cut_lsn;                /* first LSN after the target time (0: none) */
    uint64_t last_lsn;
    uint32_t dim;                    /* vector dimension seen in the log (0: none) */
} scan1;

static int scan1_cb(void *ctx, const aol_record *rec)
{
    scan1 *s = ctx;
    s->last_lsn = rec->lsn;
    if (s->cut_lsn == 0 && rec->ts_ms > s->at_ms) {
        s->cut_lsn = rec->lsn;
    }
    if (s->dim == 0 && rec->type == AOL_MEM_ADD) {
        /* The restored copy must embed new writes in the same space. */
        wire_reader r;
        wire_reader_init(&r, rec->payload, rec->payload_len);
        size_t n;
        wire_get_bytes(&r, &n); /* user */
        wire_get_u8(&r);
        wire_get_bytes(&r, &n); /* content */
        wire_get_f64(&r);
        wire_get_i64(&r);
        uint32_t n_prov = wire_get_u32(&r);
        for (uint32_t i = 0; i < n_prov && !r.err; i++) {
            wire_get_bytes(&r, &n);
        }
        uint32_t dim = wire_get_u32(&r);
        if (!r.err) {
            s->dim = dim;
        }
    }
    return STRATA_OK;
}

typedef struct scan2 {
    strata_db *db;
    uint64_t after;                  /* base snapshot LSN */
    uint64_t before;                 /* cut LSN (exclusive), 0: none */
    uint64_t applied;
    uint64_t total;                  /* records to apply, for progress */
    strata_progress_fn progress;
    void *progress_ctx;
    bool reembed;                    /* re-embed memory records with db's embedder */
} scan2;

static int scan2_cb(void *ctx, const aol_record *rec)
{
    scan2 *s = ctx;
    if (rec->lsn <= s->after) {
        return STRATA_OK;
    }
    if (s->before != 0 && rec->lsn >= s->before) {
        return 1; /* stop: past the target time */
    }
    s->applied++;
    if (s->progress != NULL && (s->applied % 10000 == 0 || s->applied == s->total)) {
        s->progress(s->progress_ctx, s->applied, s->total);
    }
    if (s->reembed && rec->type == AOL_MEM_ADD) {
        /* A sealed record is opened with the copy's keyring (the source's),
         * re-embedded, and sealed again on the way in. A shredded one stays
         * as it is: nobody can read it, so there is nothing to re-embed. */
        sbuf plain_buf;
        sbuf_init(&plain_buf, AOL_MAX_PAYLOAD);
        aol_record plain;
        int rc = db_unseal(s->db, rec, &plain_buf, &plain);
        if (rc == STRATA_ENOTFOUND) {
            sbuf_free(&plain_buf);
            return db_append_raw(s->db, rec);
        }
        sbuf payload;
        sbuf_init(&payload, AOL_MAX_PAYLOAD);
        rc = rc ? rc
                : db_mem_add_reembed(s->db->embedder, plain.payload, plain.payload_len, &payload);
        if (rc == STRATA_OK) {
            aol_record copy = plain;
            copy.payload = (const uint8_t *)payload.data;
            copy.payload_len = payload.len;
            rc = db_append_raw(s->db, &copy);
        }
        sbuf_free(&payload);
        sbuf_free(&plain_buf);
        return rc;
    }
    return db_append_raw(s->db, rec);
}

static bool snapshot_exists(const char *snap_dir, const char *tier, uint64_t lsn)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s-%020" PRIu64 ".snap", snap_dir, tier, lsn);
    struct stat st;
    return stat(path, &st) == 0;
}

/* The newest LSN with a snapshot of every tier in [lo, hi), looked for in
 * snap/ and in the scheduled archive snap/archive/ (which keeps older sets,
 * so a time further back can be reached); *where receives the directory of
 * the set found. 0 if none. */
static uint64_t find_base_in(const char *snap_dir, uint64_t lo, uint64_t hi);

static uint64_t find_base(const char *snap_dir, uint64_t lo, uint64_t hi, char *where,
                          size_t where_cap)
{
    char archive[4200];
    snprintf(archive, sizeof(archive), "%s/archive", snap_dir);
    uint64_t a = find_base_in(snap_dir, lo, hi);
    uint64_t b = find_base_in(archive, lo, hi);
    snprintf(where, where_cap, "%s", b > a ? archive : snap_dir);
    return STRATA_MAX(a, b);
}

static uint64_t find_base_in(const char *snap_dir, uint64_t lo, uint64_t hi)
{
    DIR *d = opendir(snap_dir);
    if (d == NULL) {
        return 0;
    }
    uint64_t best = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *dash = strrchr(e->d_name, '-');
        if (strncmp(e->d_name, "l1-", 3) != 0 || dash == NULL) {
            continue;
        }
        uint64_t lsn = strtoull(dash + 1, NULL, 10);
        if (lsn < lo || lsn >= hi || lsn <= best) {
            continue;
        }
        bool all = true;
        for (size_t i = 0; i < STRATA_ARRAY_LEN(TIERS) && all; i++) {
            all = snapshot_exists(snap_dir, TIERS[i], lsn);
        }
        if (all) {
            best = lsn;
        }
    }
    closedir(d);
    return best;
}

static int copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (in == NULL) {
        return strata_error_errno("cannot open", src);
    }
    FILE *out = fopen(dst, "wb");
    if (out == NULL) {
        fclose(in);
        return strata_error_errno("cannot create", dst);
    }
    char buf[1 << 16];
    size_t n;
    int rc = STRATA_OK;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            rc = strata_error_errno("cannot write", dst);
            break;
        }
    }
    if (ferror(in)) {
        rc = strata_error_errno("cannot read", src);
    }
    fclose(in);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
        rc = strata_error_errno("cannot sync", dst);
    }
    fclose(out);
    return rc;
}

static int restore_impl2(const char *src_dir, const char *dst_dir, int64_t at_s,
                         const strata_config *embed_cfg, strata_progress_fn progress,
                         void *progress_ctx, uint32_t buffer_turns, uint32_t consolidate_every,
                         uint64_t *records_out);

static int restore_impl(const char *src_dir, const char *dst_dir, int64_t at_s,
                        const strata_config *embed_cfg, strata_progress_fn progress,
                        void *progress_ctx, uint64_t *records_out)
{
    return restore_impl2(src_dir, dst_dir, at_s, embed_cfg, progress, progress_ctx, 0, 0,
                         records_out);
}

/* buffer_turns / consolidate_every: the source's replay settings when known
 * (a backup records them), 0 for the defaults or the environment. */
static int restore_impl2(const char *src_dir, const char *dst_dir, int64_t at_s,
                         const strata_config *embed_cfg, strata_progress_fn progress,
                         void *progress_ctx, uint32_t buffer_turns, uint32_t consolidate_every,
                         uint64_t *records_out)
{
    if (records_out != NULL) {
        *records_out = 0;
    }
    if (src_dir == NULL || dst_dir == NULL || at_s < 0) {
        return strata_error(STRATA_EINVAL, "restore needs a source, a target and a time");
    }
    if (!log_dir_empty_or_absent(dst_dir)) {
        return strata_error(STRATA_EEXIST, "%s exists and is not empty", dst_dir);
    }
    char log_dir[4096];
    char snap_dir[4096];
    snprintf(log_dir, sizeof(log_dir), "%s/log", src_dir);
    snprintf(snap_dir, sizeof(snap_dir), "%s/snap", src_dir);
    scan1 s1 = {at_s * 1000 + 999, 0, 0, 0};
    uint64_t first_lsn = 0;
    int rc = aol_scan_dir(log_dir, scan1_cb, &s1, &first_lsn);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint64_t hi = s1.cut_lsn ? s1.cut_lsn : s1.last_lsn + 1;
    uint64_t base = 0;
    char base_dir[4200];
    snprintf(base_dir, sizeof(base_dir), "%s", snap_dir);
    if (embed_cfg != NULL && first_lsn > 1) {
        return strata_error(STRATA_EUNSUPPORTED,
                            "re-embedding needs the whole log, and %s's starts at LSN %" PRIu64
                            " (older segments were dropped by retention)",
                            src_dir, first_lsn);
    }
    if (first_lsn > 1 || first_lsn == 0) {
        uint64_t lo = first_lsn ? first_lsn - 1 : 0;
        base = find_base(snap_dir, lo, first_lsn ? hi : UINT64_MAX, base_dir,
                         sizeof(base_dir));
        if (base == 0 && first_lsn > 1) {
            return strata_error(STRATA_ENOTFOUND,
                                "cannot restore to %" PRId64 ": the log before LSN %" PRIu64
                                " was dropped and no snapshot covers that time",
                                at_s, first_lsn);
        }
    }
    if (mkdir(dst_dir, 0700) != 0 && errno != EEXIST) {
        return strata_error_errno("cannot create", dst_dir);
    }
    char dst_snap[4096];
    snprintf(dst_snap, sizeof(dst_snap), "%s/snap", dst_dir);
    if (mkdir(dst_snap, 0700) != 0 && errno != EEXIST) {
        return strata_error_errno("cannot create", dst_snap);
    }
    for (size_t i = 0; base != 0 && i < STRATA_ARRAY_LEN(TIERS); i++) {
        char from[8400];
        char to[4200];
        snprintf(from, sizeof(from), "%s/%s-%020" PRIu64 ".snap", base_dir, TIERS[i], base);
        snprintf(to, sizeof(to), "%s/%s-%020" PRIu64 ".snap", dst_snap, TIERS[i], base);
        rc = copy_file(from, to);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    strata_config cfg;
    strata_config_init(&cfg);
    cfg.data_dir = dst_dir;
    cfg.background = 0;
    cfg.fsync = STRATA_FSYNC_NO;
    cfg.embed_dim = s1.dim;
    if (embed_cfg != NULL) {
        /* The new embedder decides the dimension of the new collection. */
        cfg.embedder = embed_cfg->embedder;
        cfg.embed_dim = embed_cfg->embed_dim;
        cfg.embed_url = embed_cfg->embed_url;
        cfg.embed_model = embed_cfg->embed_model;
        cfg.embed_api_key = embed_cfg->embed_api_key;
        cfg.model_dir = embed_cfg->model_dir;
        cfg.max_len = embed_cfg->max_len;
    }
    /* The source's L1 settings shape replayed state (buffer trimming, which
     * turns a consolidation takes): the same environment variables as the
     * server's settings let an operator match a non-default source. */
    const char *v = getenv("STRATA_BUFFER_TURNS");
    if (v != NULL) {
        cfg.buffer_turns = (uint32_t)strtoul(v, NULL, 10);
    }
    v = getenv("STRATA_CONSOLIDATE_EVERY");
    if (v != NULL) {
        cfg.consolidate_every = (uint32_t)strtoul(v, NULL, 10);
    }
    if (buffer_turns != 0) {
        cfg.buffer_turns = buffer_turns;
        cfg.consolidate_every = consolidate_every;
    }
    /* Encrypted sources: the master key comes from the environment, the
     * keyring from STRATA_KEYRING or the source; the copy gets its own copy of
     * the keyring (a backup holds none, by design). */
    cfg.master_key = getenv("STRATA_MASTER_KEY");
    cfg.master_key_file = getenv("STRATA_MASTER_KEY_FILE");
    const char *kr = getenv("STRATA_KEYRING");
    char kr_src[4200];
    char kr_dst[4200];
    snprintf(kr_src, sizeof(kr_src), "%s/keyring", src_dir);
    snprintf(kr_dst, sizeof(kr_dst), "%s/keyring", dst_dir);
    if (kr == NULL || kr[0] == '\0') {
        kr = access(kr_src, R_OK) == 0 ? kr_src : NULL;
    }
    if (kr != NULL && (cfg.master_key != NULL || cfg.master_key_file != NULL)) {
        rc = copy_file(kr, kr_dst);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    strata_db *db = NULL;
    rc = strata_db_open(&cfg, &db, NULL);
    if (rc != STRATA_OK) {
        return rc;
    }
    uint64_t end = s1.cut_lsn ? s1.cut_lsn - 1 : s1.last_lsn;
    scan2 s2 = {db,       base,         s1.cut_lsn,       0, end > base ? end - base : 0,
                progress, progress_ctx, embed_cfg != NULL};
    rc = aol_scan_dir(log_dir, scan2_cb, &s2, NULL);
    if (rc == 1) {
        rc = STRATA_OK;
    }
    if (rc == STRATA_OK) {
        rc = strata_db_sync(db);
    }
    if (rc == STRATA_OK) {
        rc = strata_db_snapshot(db);
    }
    strata_db_close(db);
    if (rc == STRATA_OK && embed_cfg == NULL) {
        /* Replay needs no embedder (vectors are in the records), so the copy
         * was opened with a stand-in of the same dimension: record the
         * source's model, which the copy's vectors come from. */
        char from[4200];
        char to[4200];
        snprintf(from, sizeof(from), "%s/l2.model", src_dir);
        snprintf(to, sizeof(to), "%s/l2.model", dst_dir);
        if (access(from, R_OK) == 0) {
            rc = copy_file(from, to);
        }
    }
    if (records_out != NULL) {
        *records_out = s2.applied;
    }
    return rc;
}

int restore_with_settings(const char *src_dir, const char *dst_dir, int64_t at_s,
                          uint32_t buffer_turns, uint32_t consolidate_every,
                          uint64_t *records_out)
{
    return restore_impl2(src_dir, dst_dir, at_s, NULL, NULL, NULL, buffer_turns,
                         consolidate_every, records_out);
}

int strata_restore(const char *src_dir, const char *dst_dir, int64_t at_s, uint64_t *records_out)
{
    return restore_impl(src_dir, dst_dir, at_s, NULL, NULL, NULL, records_out);
}

int strata_rebuild(const char *src_dir, const char *dst_dir, strata_progress_fn progress,
                   void *progress_ctx, uint64_t *records_out)
{
    /* Everything the log holds: a restore to the end of time. */
    return restore_impl(src_dir, dst_dir, INT64_MAX / 1000 - 1, NULL, progress, progress_ctx,
                        records_out);
}

int strata_reembed(const char *src_dir, const char *dst_dir, const strata_config *embedder_cfg,
                   strata_progress_fn progress, void *progress_ctx, uint64_t *records_out)
{
    if (embedder_cfg == NULL) {
        return strata_error(STRATA_EINVAL, "reembed needs the new embedder's settings");
    }
    return restore_impl(src_dir, dst_dir, INT64_MAX / 1000 - 1, embedder_cfg, progress,
                        progress_ctx, records_out);
}

/* ---- rebuild from the Redis Streams replay log -------------------------------- */

typedef struct stream_scan {
    strata_db *db;
    uint64_t next;                   /* LSN the new log expects next */
    uint64_t first;
    uint64_t last;
    uint32_t dim;
    uint64_t applied;
    uint64_t total;
    strata_progress_fn progress;
    void *progress_ctx;
} stream_scan;

static int stream_pass1(void *ctx, const aol_record *rec)
{
    stream_scan *s = ctx;
    if (s->first == 0 || rec->lsn < s->first) {
        s->first = rec->lsn;
    }
    s->last = STRATA_MAX(s->last, rec->lsn);
    s->total++;
    if (s->dim == 0 && rec->type == AOL_MEM_ADD) {
        scan1 probe = {INT64_MAX, 0, 0, 0};
        scan1_cb(&probe, rec);
        s->dim = probe.dim;
    }
    return STRATA_OK;
}

static int stream_pass2(void *ctx, const aol_record *rec)
{
    stream_scan *s = ctx;
    if (rec->lsn < s->next) {
        return STRATA_OK; /* a duplicate (an XADD retried after a lost reply) */
    }
    /* Entries trimmed away or never shipped leave gaps: keep LSNs (job and
     * memory ids derive from them) by filling the gap with no-ops. */
    while (s->next < rec->lsn) {
        aol_record noop = {s->next, rec->ts_ms, AOL_NOOP, 0, "default", 7,
                           (const uint8_t *)"", 0};
        int rc = db_append_raw(s->db, &noop);
        if (rc != STRATA_OK) {
            return rc;
        }
        s->next++;
    }
    int rc = db_append_raw(s->db, rec);
    if (rc == STRATA_OK) {
        s->next = rec->lsn + 1;
        s->applied++;
        if (s->progress != NULL && (s->applied % 10000 == 0 || s->applied == s->total)) {
            s->progress(s->progress_ctx, s->applied, s->total);
        }
    }
    return rc;
}

int strata_rebuild_from_stream(const char *addrs, int cluster, const char *key,
                               const char *dst_dir, strata_progress_fn progress,
                               void *progress_ctx, uint64_t *records_out)
{
    if (records_out != NULL) {
        *records_out = 0;
    }
    if (addrs == NULL || dst_dir == NULL) {
        return strata_error(STRATA_EINVAL, "rebuild needs stream addresses and a target");
    }
    if (!log_dir_empty_or_absent(dst_dir)) {
        return strata_error(STRATA_EEXIST, "%s exists and is not empty", dst_dir);
    }
    char *copy = strata_strdup(addrs);
    const char *seeds[64];
    size_t n = db_split_addrs(copy, seeds, 64);
    replay_stream_options o;
    replay_stream_options_init(&o);
    o.addresses = seeds;
    o.n_addresses = n;
    o.cluster = cluster != 0;
    if (key != NULL) {
        o.key = key;
    }
    /* TLS to Redis: the server's settings, read from the same environment
     * variables (the CLI's --redis-tls* flags set them). */
    redis_tls_options tls = {getenv("STRATA_REDIS_TLS_CACERT"), getenv("STRATA_REDIS_TLS_CERT"),
                             getenv("STRATA_REDIS_TLS_KEY"),
                             getenv("STRATA_REDIS_TLS_SERVER_NAME")};
    const char *tls_on = getenv("STRATA_REDIS_TLS");
    if (tls_on != NULL && (strcmp(tls_on, "1") == 0 || strcmp(tls_on, "true") == 0 ||
                           strcmp(tls_on, "yes") == 0 || strcmp(tls_on, "on") == 0)) {
        o.tls = &tls;
    }
    stream_scan s;
    memset(&s, 0, sizeof(s));
    s.progress = progress;
    s.progress_ctx = progress_ctx;
    int rc = copy ? replay_stream_scan(&o, stream_pass1, &s) : STRATA_ENOMEM;
    strata_db *db = NULL;
    if (rc == STRATA_OK) {
        strata_config cfg;
        strata_config_init(&cfg);
        cfg.data_dir = dst_dir;
        cfg.background = 0;
        cfg.fsync = STRATA_FSYNC_NO;
        cfg.embed_dim = s.dim;
        cfg.log_first_lsn = s.first ? s.first : 1;
        rc = strata_db_open(&cfg, &db, NULL);
    }
    if (rc == STRATA_OK) {
        s.db = db;
        s.next = s.first ? s.first : 1;
        rc = replay_stream_scan(&o, stream_pass2, &s);
    }
    if (rc == STRATA_OK) {
        rc = strata_db_sync(db);
    }
    if (rc == STRATA_OK) {
        rc = strata_db_snapshot(db);
    }
    strata_db_close(db);
    strata_free(copy);
    if (records_out != NULL) {
        *records_out = s.applied;
    }
    return rc;
}
