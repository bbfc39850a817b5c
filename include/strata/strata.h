/*
 * strata.h - the public C API of libstrata, the Strata memory engine.
 *
 * In the spirit of SQLite: open a data directory, get a handle, call functions.
 * Every function returns STRATA_OK (0) or a negative STRATA_E* code; the
 * detail of the last failure on the calling thread is strata_errmsg().
 *
 * Thread-safety: a strata_db handle may be used from any number of threads at
 * once; every strata_db_* / strata_session_* / strata_kv_* call is thread-safe.
 *
 * Ownership: results are returned through out-parameters placed last and are
 * freed by their matching strata_*_free(). On failure an out-parameter is set
 * to NULL (or 0), never left half-built.
 *
 * Tenancy: every data call takes the tenant it acts for. Nothing in one tenant
 * is visible to a call made for another.
 */
#ifndef STRATA_STRATA_H
#define STRATA_STRATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define STRATA_API __attribute__((visibility("default")))
#else
#define STRATA_API
#endif

#define STRATA_VERSION "0.1.0"

/* ---- error codes ------------------------------------------------------ */
#define STRATA_OK           0
#define STRATA_ENOMEM      -1   /* allocation failed */
#define STRATA_EINVAL      -2   /* bad argument or bad input */
#define STRATA_ENOTFOUND   -3   /* no such session / key / record */
#define STRATA_EIO         -4   /* a system call failed */
#define STRATA_ECORRUPT    -5   /* checksum or format error in a file */
#define STRATA_EEXIST      -6   /* already exists */
#define STRATA_ETOOBIG     -7   /* over a configured size limit */
#define STRATA_EBUSY       -8   /* resource busy / limit reached, retry later */
#define STRATA_ECLOSED     -9   /* the handle is shutting down */
#define STRATA_ECONFLICT  -10   /* state conflict (e.g. wrong user for session) */
#define STRATA_EUNSUPPORTED -11 /* operation not supported by this backend */
#define STRATA_EPROTO     -12   /* peer spoke a malformed protocol */
#define STRATA_ETIMEDOUT  -13   /* deadline passed */

/* Name of an error code, e.g. "ENOTFOUND"-style text for people. Never NULL. */
STRATA_API const char *strata_strerror(int rc);

/* Detail of the last failure on the calling thread ("" if none). Valid until
 * the next strata call on this thread. */
STRATA_API const char *strata_errmsg(void);

/* ---- allocator hooks -------------------------------------------------- */
typedef struct strata_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} strata_allocator;

/* Replace the allocator used by the whole library. Call before any other
 * strata function; NULL restores the C library's allocator. Not thread-safe. */
STRATA_API void strata_set_allocator(const strata_allocator *alloc);

/* ---- configuration ---------------------------------------------------- */
typedef enum strata_fsync_policy {
    STRATA_FSYNC_ALWAYS = 0,   /* fdatasync before every acknowledgement (group commit) */
    STRATA_FSYNC_EVERYSEC = 1, /* write() before ack, fdatasync once a second */
    STRATA_FSYNC_NO = 2        /* write() before ack, the OS decides when to sync */
} strata_fsync_policy;

typedef struct strata_config {
    const char *data_dir;            /* directory holding log/ and snap/; created if absent */
    strata_fsync_policy fsync;       /* default STRATA_FSYNC_EVERYSEC */
    uint64_t segment_max_bytes;      /* log segment rotation size, default 64 MiB */
    uint32_t buffer_turns;           /* N: turns kept in session:{id}:buffer, default 20 */
    uint32_t session_ttl_s;          /* idle session expiry, default 1800 s; 0 = never */
    uint32_t consolidate_every;      /* queue consolidation every K turns, default 10; 0 = off */
    uint32_t retention_s;            /* raw interaction retention, default 7 days */
    uint32_t snapshot_every_s;       /* periodic snapshot interval, default 300 s; 0 = off */
    uint32_t max_content_bytes;      /* max size of one turn's content, default 64 KiB */
    uint32_t job_workers;            /* background job threads, default 2 */
    /* L1 backend */
    const char *l1_backend;          /* "embedded" (default) or "redis" */
    const char *redis_addrs;         /* comma-separated host:port seeds */
    const char *redis_password;      /* may be NULL */
    int redis_cluster;               /* 1: Redis Cluster (slot routing, failover) */
    int redis_wait;                  /* > 0: WAIT for this many replicas after each write */
    int redis_tls;                   /* 1: TLS to Redis, for L1 and the replay stream */
    const char *redis_tls_cacert;    /* PEM CA bundle checking Redis; NULL = system store */
    const char *redis_tls_cert;      /* PEM client certificate (tls-auth-clients); may be NULL */
    const char *redis_tls_key;       /* its private key (unencrypted PEM) */
    const char *redis_tls_server_name; /* name to verify and send as SNI; NULL = each host's */
    /* replay log on Redis Streams (brief §3.3): every acknowledged record is
     * also XADDed to a stream trimmed to retention_s (MINID) */
    const char *replay_stream;       /* "off" (default) or "redis" */
    const char *replay_addrs;        /* host:port seeds; NULL = redis_addrs */
    const char *replay_key;          /* stream key; NULL = "strata:replay" */
    int replay_cluster;              /* 1: the stream lives on a Redis Cluster */
    uint64_t log_first_lsn;          /* internal (restore): first LSN of a new, empty log */
    /* L2 */
    const char *embedder;            /* "hash" (built-in, default), "http" or "minilm" */
    const char *model_dir;           /* minilm: directory of all-MiniLM-L6-v2's files */
    int max_len;                     /* minilm: tokens per text, default 256, up to 512 */
    uint32_t embed_dim;              /* hash: default 384; http: 0 = learn from the server */
    const char *embed_url;           /* http: base URL of an OpenAI-compatible server */
    const char *embed_model;         /* http: model name */
    const char *embed_api_key;       /* http: bearer key, may be NULL */
    uint32_t hnsw_m;                 /* default 16 */
    uint32_t hnsw_ef_construction;   /* default 200 */
    uint32_t hnsw_ef_search;         /* default 64 */
    float weight_importance;         /* search score adjustment by importance, default 0.1 */
    float weight_recency;            /* by recency, default 0.05 */
    /* pipeline */
    const char *extractor;           /* "rules" (built-in, default) or "llm" */
    const char *llm_url;             /* llm: base URL of an OpenAI-compatible server */
    const char *llm_model;
    const char *llm_api_key;
    float near_duplicate;            /* cosine at or above which a memory is a duplicate, 0.92 */
    float distill_importance;        /* distil at once at or above this importance, 0.8 */
    int distill_hour;                /* local hour of the nightly distillation, 2; -1 = off */
    uint32_t tenant_model_calls;     /* concurrent extractor calls per tenant, default 4 */
    float merge_margin;              /* delta-merge: "close" confidence, default 0.15 */
    uint32_t merge_window_s;         /* delta-merge: newer by more = a change, default 3600 */
    float interest_half_life_days;   /* INTERESTED_IN weights decay, default 30 */
    int background;                  /* 1: run expiry/snapshot/job threads (server); 0: none */
    /* scheduled snapshots kept for point-in-time restore (snap/archive/) */
    uint32_t snapshot_archive_every_s; /* default 86400 (daily); 0 = off */
    uint32_t snapshot_retain;        /* archived snapshot sets kept, default 7 */
    int replica;                     /* 1: a read-only replica (no jobs, no expiry) until
                                        strata_db_promote */
    /* encryption at rest (AES-256-GCM): on when a master key is given */
    const char *master_key;          /* 64 hex digits; prefer master_key_file */
    const char *master_key_file;     /* file with 64 hex digits or 32 raw bytes */
    const char *keyring_path;        /* the sealed data keys; default <data_dir>/keyring */
} strata_config;

/* Fill cfg with the defaults above (data_dir = "./data", background = 1). */
STRATA_API void strata_config_init(strata_config *cfg);

/* Parse "always" | "everysec" | "no". Returns STRATA_OK or STRATA_EINVAL. */
STRATA_API int strata_fsync_parse(const char *text, strata_fsync_policy *out);
STRATA_API const char *strata_fsync_name(strata_fsync_policy policy);

/* ---- database handle -------------------------------------------------- */
typedef struct strata_db strata_db;

/* Recovery report filled by strata_db_open. */
typedef struct strata_recovery_info {
    uint64_t records_replayed;       /* log records applied after the snapshots */
    uint64_t bytes_truncated;        /* torn/corrupt tail bytes dropped from the last segment */
    uint64_t snapshot_lsn;           /* log position covered by the L1 snapshot loaded (0 none) */
    uint64_t last_lsn;               /* highest log sequence number after recovery */
} strata_recovery_info;

/* Open (creating if needed) the data directory, load the latest snapshots and
 * replay the log tail. info may be NULL. On failure *out is NULL. */
STRATA_API int strata_db_open(const strata_config *cfg, strata_db **out,
                              strata_recovery_info *info);

/* Flush and sync the log, stop background threads and free everything.
 * Accepts NULL. Not to be called while other threads use db. */
STRATA_API void strata_db_close(strata_db *db);

/* Write a snapshot of every tier now, stamped with the current log position,
 * then drop segments no snapshot needs and past retention. */
STRATA_API int strata_db_snapshot(strata_db *db);

/* Make every acknowledged write durable now (fdatasync), whatever the policy. */
STRATA_API int strata_db_sync(strata_db *db);

/* A handle opened with cfg.replica = 1 refuses writes and runs no background
 * jobs; promotion makes it a writable primary (jobs start). STRATA_ECONFLICT
 * if it is not a replica. */
STRATA_API int strata_db_promote(strata_db *db);
STRATA_API int strata_db_is_replica(strata_db *db);

/* Counters for /metrics. Plain value struct; every field is a current value. */
typedef struct strata_db_stats {
    uint64_t sessions;               /* live sessions in L1 */
    uint64_t turns_buffered;         /* turns held across all session buffers */
    uint64_t kv_keys;                /* generic-store keys, all tiers */
    uint64_t dirty_users;            /* users with a non-empty dirty set */
    uint64_t log_last_lsn;           /* highest assigned log sequence number */
    uint64_t log_durable_lsn;        /* highest fsynced log sequence number */
    uint64_t log_bytes;              /* bytes across live segments */
    uint64_t log_segments;           /* live segment files */
    uint64_t log_fsyncs;             /* fdatasync calls made */
    uint64_t log_appends;            /* records appended since open */
    uint64_t sessions_expired;       /* idle expiries since open */
    uint64_t snapshots_written;      /* snapshots since open */
    uint64_t segments_dropped;       /* segments removed by retention since open */
    uint64_t jobs_queued;            /* jobs waiting */
    uint64_t jobs_running;           /* jobs being executed */
    uint64_t jobs_done;              /* jobs finished since open */
    uint64_t jobs_failed;            /* jobs failed since open */
    uint64_t memories;               /* L2 memories */
    uint64_t embed_cache_hits;       /* content-hash cache hits of the embedder */
    uint64_t embed_cache_misses;
    uint64_t graph_nodes;            /* L3 nodes */
    uint64_t graph_edges;            /* L3 edge versions, current and expired */
    uint64_t graph_current_edges;    /* L3 edges not expired */
    uint64_t memories_consolidated;  /* memories created by consolidation */
    uint64_t duplicates_skipped;     /* candidates dropped as exact or near duplicates */
    uint64_t clarifications_opened;  /* contradictions flagged */
    uint64_t distilled;              /* memories distilled into L3 */
    uint64_t replay_appended;        /* records XADDed to the replay stream */
    uint64_t replay_errors;          /* XADDs that failed (the file log still has them) */
    uint64_t users_forgotten;        /* right-to-be-forgotten deletions since open */
    uint64_t forget_records_erased;  /* log records they rewrote as no-ops */
} strata_db_stats;

STRATA_API void strata_db_stats_get(strata_db *db, strata_db_stats *out);

/* ---- L1: sessions ----------------------------------------------------- */
#define STRATA_ID_MAX 128            /* ids are 1..128 bytes of [A-Za-z0-9_.:@-] */
#define STRATA_JOB_ID_LEN 32         /* job ids: "job-" + 16 hex digits + NUL fits */

/* 1 if id is a valid id (1..128 bytes of [A-Za-z0-9_.:@-]), else 0. */
STRATA_API int strata_id_valid(const char *id, size_t len);

typedef enum strata_role {
    STRATA_ROLE_USER = 0,
    STRATA_ROLE_ASSISTANT = 1,
    STRATA_ROLE_SYSTEM = 2
} strata_role;

STRATA_API int strata_role_parse(const char *text, strata_role *out);
STRATA_API const char *strata_role_name(strata_role role);

typedef struct strata_turn_ack {
    uint32_t turn_count;             /* the session's turn_count after this turn */
    int consolidation_queued;        /* 1 if this turn queued a consolidation job */
    char job_id[STRATA_JOB_ID_LEN];  /* that job's id, "" if none */
    uint64_t lsn;                    /* log position of the turn record */
} strata_turn_ack;

/* Append a turn to a session (creating the session on its first turn) and
 * acknowledge once durable under the fsync policy. A session belongs to the
 * user of its first turn: a later turn naming another user is STRATA_ECONFLICT.
 * content must be valid UTF-8 of at most max_content_bytes. */
STRATA_API int strata_turn_append(strata_db *db, const char *tenant, const char *session_id,
                                  const char *user_id, strata_role role,
                                  const char *content, size_t content_len,
                                  strata_turn_ack *out);

typedef struct strata_turn {
    strata_role role;
    char *content;                   /* NUL-terminated UTF-8 */
    size_t content_len;
    int64_t ts;                      /* Unix seconds */
    uint32_t seq;                    /* 1-based turn number within the session */
} strata_turn;

typedef struct strata_session {
    char *session_id;
    char *user_id;
    char *current_stage;             /* "" until set */
    uint32_t turn_count;
    int64_t last_active;             /* Unix seconds */
    int ended;                       /* 1 once ended (explicitly) and not resumed */
    size_t n_turns;                  /* turns in the buffer, at most buffer_turns */
    strata_turn *turns;              /* oldest first */
} strata_session;

/* Copy of a session's state and buffer. STRATA_ENOTFOUND if absent. */
STRATA_API int strata_session_get(strata_db *db, const char *tenant, const char *session_id,
                                  strata_session **out);
STRATA_API void strata_session_free(strata_session *s);

/* Set current_stage (UTF-8, at most 256 bytes). On success, if out is not NULL,
 * it receives a copy of the session (free with strata_session_free). */
STRATA_API int strata_session_set_stage(strata_db *db, const char *tenant,
                                        const char *session_id, const char *stage,
                                        strata_session **out);

/* End a session: queue its consolidation and return the job id. */
STRATA_API int strata_session_end(strata_db *db, const char *tenant, const char *session_id,
                                  char job_id[STRATA_JOB_ID_LEN]);

/* A list of strings (dirty attributes, key ids, ...). */
typedef struct strata_strlist {
    size_t n;
    char **items;
} strata_strlist;
STRATA_API void strata_strlist_free(strata_strlist *l);

/* Members of user:{id}:dirty, sorted. An unknown user has an empty list. */
STRATA_API int strata_dirty_get(strata_db *db, const char *tenant, const char *user_id,
                                strata_strlist **out);
STRATA_API int strata_dirty_add(strata_db *db, const char *tenant, const char *user_id,
                                const char *attribute);
STRATA_API int strata_dirty_clear(strata_db *db, const char *tenant, const char *user_id);

/* ---- jobs ------------------------------------------------------------- */
typedef enum strata_job_status {
    STRATA_JOB_QUEUED = 0,
    STRATA_JOB_RUNNING = 1,
    STRATA_JOB_DONE = 2,
    STRATA_JOB_FAILED = 3
} strata_job_status;

typedef struct strata_job_info {
    char job_id[STRATA_JOB_ID_LEN];
    char kind[32];                   /* "consolidate", "distill", ... */
    strata_job_status status;
    char error[256];                 /* "" unless failed */
    uint32_t attempts;
} strata_job_info;

STRATA_API const char *strata_job_status_name(strata_job_status st);
STRATA_API int strata_job_get(strata_db *db, const char *tenant, const char *job_id,
                              strata_job_info *out);

/* ---- generic store (the brief's MemoryStore get/put) ------------------ */
typedef enum strata_tier { STRATA_TIER_L1 = 1, STRATA_TIER_L2 = 2, STRATA_TIER_L3 = 3 } strata_tier;
STRATA_API int strata_tier_parse(const char *text, strata_tier *out);

#define STRATA_KV_KEY_MAX 512        /* keys are 1..512 bytes of UTF-8 without NUL or '/' */
#define STRATA_KV_VALUE_MAX (1u << 20)

/* Store a JSON document (already validated by the caller) under key. */
STRATA_API int strata_kv_put(strata_db *db, const char *tenant, strata_tier tier,
                             const char *key, const char *json, size_t json_len);
/* Fetch a copy; *json_out is NUL-terminated, free with strata_free. */
STRATA_API int strata_kv_get(strata_db *db, const char *tenant, strata_tier tier,
                             const char *key, char **json_out, size_t *len_out);
STRATA_API int strata_kv_delete(strata_db *db, const char *tenant, strata_tier tier,
                                const char *key);

/* ---- L2: memories (medium-term) ------------------------------------------ */
typedef enum strata_memory_type {
    STRATA_MEM_PREFERENCE = 0,
    STRATA_MEM_FACT = 1,
    STRATA_MEM_EXPERIENCE = 2
} strata_memory_type;

STRATA_API int strata_memory_type_parse(const char *text, strata_memory_type *out);
STRATA_API const char *strata_memory_type_name(strata_memory_type t);

typedef enum strata_search_mode {
    STRATA_SEARCH_HYBRID = 0,        /* BM25 and vectors fused by reciprocal rank */
    STRATA_SEARCH_VECTOR = 1,
    STRATA_SEARCH_KEYWORD = 2
} strata_search_mode;

STRATA_API int strata_search_mode_parse(const char *text, strata_search_mode *out);

#define STRATA_MEMORY_ID_LEN 24      /* "mem-" + 16 hex digits + NUL fits */

typedef struct strata_memory {
    char id[STRATA_MEMORY_ID_LEN];
    char *user_id;
    strata_memory_type type;
    char *content;                   /* NUL-terminated UTF-8 */
    size_t content_len;
    float importance;                /* 0..1 */
    int64_t timestamp;               /* Unix seconds */
    char **provenance;               /* source ids */
    size_t n_provenance;
    float score;                     /* search results only: higher is better */
} strata_memory;

typedef struct strata_memory_list {
    size_t n;
    strata_memory *items;
} strata_memory_list;

STRATA_API void strata_memory_free(strata_memory *m);
STRATA_API void strata_memory_list_free(strata_memory_list *l);

/* Embed and store a memory of user_id; acknowledged once durable. Content is
 * 1..16 KiB of UTF-8, importance in [0, 1], at most 64 provenance ids of
 * 1..256 bytes. *out (may be NULL) receives a copy of the stored memory. */
STRATA_API int strata_memory_add(strata_db *db, const char *tenant, const char *user_id,
                                 strata_memory_type type, const char *content,
                                 size_t content_len, float importance,
                                 const char *const *provenance, size_t n_provenance,
                                 strata_memory **out);
STRATA_API int strata_memory_get(strata_db *db, const char *tenant, const char *user_id,
                                 const char *memory_id, strata_memory **out);
STRATA_API int strata_memory_delete(strata_db *db, const char *tenant, const char *user_id,
                                    const char *memory_id);

/* What a right-to-be-forgotten removed, per tier. */
typedef struct strata_forget_receipt {
    uint64_t l1;                     /* L1 sessions (state + buffer) */
    uint64_t l2;                     /* L2 memories */
    uint64_t l3;                     /* L3 nodes plus their edge versions */
    uint64_t log;                    /* event-log records erased (rewritten as no-ops) */
    uint64_t dirty;                  /* attributes in user:{id}:dirty */
    uint64_t profile;                /* profile attributes, clarifications, queued distillations */
    uint64_t jobs;                   /* background jobs (with their copied turns) */
} strata_forget_receipt;

/* Right to be forgotten: remove everything of (tenant, user_id) from every
 * tier, from the event log (records rewritten as no-ops) and from the
 * snapshots (rewritten; older ones deleted). Nodes shared with other users
 * stay; the user's edges to them go. A user with nothing stored gets an all
 * zero receipt. Writes of other users continue meanwhile. */
STRATA_API int strata_forget_user(strata_db *db, const char *tenant, const char *user_id,
                                  strata_forget_receipt *out);

typedef struct strata_search_opts {
    const char *query;               /* text (required for keyword/hybrid unless vector given) */
    size_t query_len;
    const float *query_vector;       /* optional: search by this vector instead of embedding */
    size_t query_vector_dim;
    size_t limit;                    /* 1..1000, default 5 */
    strata_search_mode mode;
    uint32_t type_mask;              /* bit t accepts type t; 0 = every type */
    float min_importance;            /* 0 = no minimum */
} strata_search_opts;

STRATA_API void strata_search_opts_init(strata_search_opts *o);
/* Best first. A user with no memories gets an empty list. */
STRATA_API int strata_memory_search(strata_db *db, const char *tenant, const char *user_id,
                                    const strata_search_opts *opts, strata_memory_list **out);

/* Dimension and model of the collection's embedder. */
STRATA_API uint32_t strata_embed_dim(strata_db *db);
STRATA_API const char *strata_embed_model(strata_db *db);

/* ---- L3: knowledge graph (long-term) --------------------------------------- */
/* Node ids follow the id rules; labels and edge types are 1..64 bytes of
 * [A-Za-z0-9_]; properties are a JSON object of at most 64 KiB ("weight", when
 * present, a finite number). Results come back as JSON text (strata_free). */

/* Create or merge a node (properties merged key by key; null removes a key).
 * *created (may be NULL) tells whether it was new. */
STRATA_API int strata_graph_node_put(strata_db *db, const char *tenant, const char *id,
                                     const char *label, const char *props_json, int *created);
/* {"id","label","properties","created_at","updated_at"}; as_of (Unix s, 0 = now). */
STRATA_API int strata_graph_node_get(strata_db *db, const char *tenant, const char *id,
                                     int64_t as_of, char **json_out);
/* Remove a node and its edges. */
STRATA_API int strata_graph_node_delete(strata_db *db, const char *tenant, const char *id);
/* Upsert the edge (from, to, type); both nodes must exist (STRATA_ENOTFOUND).
 * valid_from (Unix s, 0 = now) applies when a new version is created. */
STRATA_API int strata_graph_edge_put(strata_db *db, const char *tenant, const char *from,
                                     const char *to, const char *type, const char *props_json,
                                     int64_t valid_from, int *created);
/* Expire the current version of an edge (kept for as_of reads). */
STRATA_API int strata_graph_edge_expire(strata_db *db, const char *tenant, const char *from,
                                        const char *to, const char *type);

typedef enum strata_graph_direction {
    STRATA_DIR_OUT = 0,
    STRATA_DIR_IN = 1,
    STRATA_DIR_BOTH = 2
} strata_graph_direction;

typedef struct strata_subgraph_opts {
    const char *center;              /* node id */
    int depth;                       /* 0..5, default 2 */
    const char *const *types;        /* edge types to follow; NULL = all */
    size_t n_types;
    strata_graph_direction direction;/* default both */
    size_t limit;                    /* max nodes, default 1000, at most 100000 */
    int64_t as_of;                   /* Unix seconds, 0 = now */
} strata_subgraph_opts;

STRATA_API void strata_subgraph_opts_init(strata_subgraph_opts *o);
/* {"nodes":[...],"edges":[...],"truncated":bool}. Unknown center: STRATA_ENOTFOUND. */
STRATA_API int strata_graph_subgraph(strata_db *db, const char *tenant,
                                     const strata_subgraph_opts *opts, char **json_out);

/* ---- pipeline ----------------------------------------------------------------- */
/* The user's profile (API.md shape) as JSON text. */
STRATA_API int strata_profile_get(strata_db *db, const char *tenant, const char *user_id,
                                  char **json_out);
/* Close clarification clr-<hex>: choose "old" or "new", or give value (JSON
 * text of any value; strings are stored as their text). Returns the updated
 * attribute as JSON text. STRATA_ENOTFOUND, STRATA_ECONFLICT if closed. */
STRATA_API int strata_clarification_resolve(strata_db *db, const char *tenant,
                                            const char *user_id, const char *clarification_id,
                                            const char *choose, const char *value_json,
                                            char **json_out);
/* Queue distillation (L2 -> L3) for one user, or every user when user_id is NULL. */
STRATA_API int strata_distill(strata_db *db, const char *tenant, const char *user_id,
                              char job_id[STRATA_JOB_ID_LEN]);
/* Everything an agent needs for its next prompt: buffer, best memories,
 * profile, graph neighbourhood, and all of it as text within budget_chars. */
STRATA_API int strata_context(strata_db *db, const char *tenant, const char *session_id,
                              const char *query, size_t budget_chars, char **json_out);

/* Point-in-time restore (brief §3.3): rebuild the state of src_dir as it was
 * at Unix time at_s (every record accepted at or before it) into the new,
 * empty directory dst_dir, from src's snapshots and log, without stopping a
 * server running on src_dir. LSNs, and so memory and job ids, are preserved.
 * *records_out (may be NULL) receives the records replayed. */
STRATA_API int strata_restore(const char *src_dir, const char *dst_dir, int64_t at_s,
                              uint64_t *records_out);

/* ---- tenants and API keys ---------------------------------------------------- */
#define STRATA_KEY_LEN 72            /* "sk_" + 64 hex digits + NUL fits */

/* Create an API key for tenant. key_out receives the secret, shown only now:
 * only its SHA-256 is stored. */
STRATA_API int strata_key_create(strata_db *db, const char *tenant,
                                 char key_id_out[STRATA_JOB_ID_LEN],
                                 char key_out[STRATA_KEY_LEN]);
STRATA_API int strata_key_list(strata_db *db, const char *tenant, strata_strlist **out);
STRATA_API int strata_key_revoke(strata_db *db, const char *key_id);
/* The tenant a presented key belongs to; STRATA_ENOTFOUND for an unknown or
 * revoked key. */
STRATA_API int strata_key_authenticate(strata_db *db, const char *key,
                                       char tenant_out[STRATA_ID_MAX + 1],
                                       char key_id_out[STRATA_JOB_ID_LEN]);
STRATA_API uint64_t strata_key_count(strata_db *db);

/* Progress of a long operation: done of total units. */
typedef void (*strata_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Replay (brief §3.3): rebuild L1, L2 and L3 of src_dir from its snapshots
 * and log into the new, empty dst_dir, ending in the same state as the live
 * system. Raw interactions are replayed as logged (nothing is re-embedded or
 * re-extracted), so the result equals the source. progress may be NULL. */
STRATA_API int strata_rebuild(const char *src_dir, const char *dst_dir,
                              strata_progress_fn progress, void *progress_ctx,
                              uint64_t *records_out);

/* Switch a collection to another embedder: rebuild src_dir into the new,
 * empty dst_dir like strata_rebuild, embedding every memory's content again
 * with the embedder described by embedder_cfg (its embedder, embed_* and
 * model_dir/max_len fields). Needs the whole log (LSN 1 onwards). */
STRATA_API int strata_reembed(const char *src_dir, const char *dst_dir,
                              const strata_config *embedder_cfg, strata_progress_fn progress,
                              void *progress_ctx, uint64_t *records_out);

/* strata_rebuild from the Redis Streams replay log instead of the files:
 * addrs is "host:port[,host:port...]", key NULL for the default. Records keep
 * their LSNs (duplicates dropped, gaps from trimming filled with no-ops). */
STRATA_API int strata_rebuild_from_stream(const char *addrs, int cluster, const char *key,
                                          const char *dst_dir, strata_progress_fn progress,
                                          void *progress_ctx, uint64_t *records_out);

/* Free memory returned by the library where no specific destructor exists. */
STRATA_API void strata_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_STRATA_H */
