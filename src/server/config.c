/*
 * config.c - stratad's settings. Each setting has one name used three ways:
 * the flag --data-dir, the environment variable STRATA_DATA_DIR, and the
 * config-file line `data-dir = ./data` (or data_dir). Precedence, lowest
 * first: built-in default, config file, environment, command line.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/server.h"

/* OPT_BOOL: an int 0/1; as a flag it takes no value (--name means 1, or
 * --name=false), elsewhere 1/0, true/false, yes/no, on/off. */
typedef enum opt_kind {
    OPT_STR, OPT_U32, OPT_U64, OPT_INT, OPT_FSYNC, OPT_FLOAT, OPT_BOOL
} opt_kind;

typedef struct opt_def {
    const char *name;            /* flag name without "--" */
    opt_kind kind;
    size_t offset;               /* into server_settings */
    const char *def;             /* default, for the help text */
    const char *help;
} opt_def;

#define OFF(field) offsetof(server_settings, field)

static const opt_def OPTS[] = {
    {"host", OPT_STR, OFF(host_owned), "127.0.0.1", "address to listen on"},
    {"port", OPT_INT, OFF(http.port), "7700", "TCP port (0 picks a free one)"},
    {"data-dir", OPT_STR, OFF(data_dir_owned), "./data", "where the log and snapshots live"},
    {"fsync", OPT_FSYNC, OFF(db.fsync), "everysec",
     "log durability: always (fsync before ack) | everysec | no"},
    {"segment-max-bytes", OPT_U64, OFF(db.segment_max_bytes), "67108864",
     "rotate log segments past this size"},
    {"buffer-turns", OPT_U32, OFF(db.buffer_turns), "20",
     "N, turns kept in session:{id}:buffer"},
    {"session-ttl", OPT_U32, OFF(db.session_ttl_s), "1800",
     "seconds of idleness before a session expires (0: never)"},
    {"consolidate-every", OPT_U32, OFF(db.consolidate_every), "10",
     "queue consolidation every K turns (0: only at session end)"},
    {"retention", OPT_U32, OFF(db.retention_s), "604800",
     "seconds raw interactions stay in the log"},
    {"snapshot-every", OPT_U32, OFF(db.snapshot_every_s), "300",
     "seconds between snapshots (0: only at shutdown)"},
    {"snapshot-archive-every", OPT_U32, OFF(db.snapshot_archive_every_s), "86400",
     "seconds between snapshots kept in snap/archive for point-in-time restore (0: none)"},
    {"snapshot-retain", OPT_U32, OFF(db.snapshot_retain), "7",
     "archived snapshot sets kept (older ones are pruned)"},
    {"replica-of", OPT_STR, OFF(replica_of), "(none)",
     "run as a read-only replica of this primary (host:port or http(s):// URL)"},
    {"replica-key", OPT_STR, OFF(replica_key), "(none)",
     "replica: the primary's admin key or replication key"},
    {"replica-cacert", OPT_STR, OFF(replica_cacert), "(system)",
     "replica: CA bundle to check an https primary's certificate"},
    {"replication-key", OPT_STR, OFF(replication_key), "(none)",
     "primary: a key that may only read the log and snapshots (for replicas)"},
    {"max-content-bytes", OPT_U32, OFF(db.max_content_bytes), "65536",
     "largest accepted turn content"},
    {"job-workers", OPT_U32, OFF(db.job_workers), "2", "background job threads"},
    {"l1", OPT_STR, OFF(l1_backend_owned), "embedded",
     "L1 backend: embedded (in-process) or redis"},
    {"redis-addr", OPT_STR, OFF(redis_addrs_owned), "(none)",
     "redis: comma-separated host:port seeds"},
    {"redis-password", OPT_STR, OFF(redis_password_owned), "(none)", "redis: AUTH password"},
    {"redis-cluster", OPT_INT, OFF(db.redis_cluster), "0", "redis: 1 for Redis Cluster"},
    {"redis-wait", OPT_INT, OFF(db.redis_wait), "0",
     "redis: WAIT for this many replicas after each write (CP for L1)"},
    {"redis-tls", OPT_BOOL, OFF(db.redis_tls), "false",
     "redis: TLS to Redis (L1 and the replay stream); needs redis-server --tls-port"},
    {"redis-tls-cacert", OPT_STR, OFF(redis_tls_cacert_owned), "(system store)",
     "redis TLS: PEM CA bundle that Redis's certificate must chain to"},
    {"redis-tls-cert", OPT_STR, OFF(redis_tls_cert_owned), "(none)",
     "redis TLS: PEM client certificate, for tls-auth-clients yes"},
    {"redis-tls-key", OPT_STR, OFF(redis_tls_key_owned), "(none)",
     "redis TLS: PEM private key of --redis-tls-cert"},
    {"redis-tls-server-name", OPT_STR, OFF(redis_tls_server_name_owned), "(each address's host)",
     "redis TLS: the name (or IP) Redis's certificate must carry; also sent as SNI"},
    {"replay-stream", OPT_STR, OFF(replay_stream_owned), "off",
     "also XADD every acknowledged record to a Redis stream: off | redis"},
    {"replay-addr", OPT_STR, OFF(replay_addrs_owned), "(redis-addr)",
     "replay stream: host:port seeds"},
    {"replay-key", OPT_STR, OFF(replay_key_owned), "strata:replay", "replay stream: key"},
    {"replay-cluster", OPT_INT, OFF(db.replay_cluster), "0",
     "replay stream: 1 when it lives on a Redis Cluster"},
    {"embedder", OPT_STR, OFF(embedder_owned), "auto",
     "L2 embedder: auto (the collection's own; for a new one minilm when its model is "
     "present, else hash), hash, minilm (all-MiniLM-L6-v2 in C) or http"},
    {"embed-dim", OPT_U32, OFF(db.embed_dim), "384 (hash) / learned (http)",
     "embedding dimension"},
    {"embed-url", OPT_STR, OFF(embed_url_owned), "(none)",
     "http embedder: base URL, /v1/embeddings is appended"},
    {"embed-model", OPT_STR, OFF(embed_model_owned), "text-embedding-3-small",
     "http embedder: model name"},
    {"embed-api-key", OPT_STR, OFF(embed_api_key_owned), "(none)", "http embedder: bearer key"},
    {"model-dir", OPT_STR, OFF(model_dir_owned), "models/all-MiniLM-L6-v2",
     "minilm embedder: directory of the model files (scripts/fetch_model.sh)"},
    {"max-len", OPT_INT, OFF(db.max_len), "256", "minilm embedder: tokens per text (<= 512)"},
    {"hnsw-m", OPT_U32, OFF(db.hnsw_m), "16", "HNSW links per node"},
    {"hnsw-ef-construction", OPT_U32, OFF(db.hnsw_ef_construction), "200",
     "HNSW insertion breadth"},
    {"hnsw-ef-search", OPT_U32, OFF(db.hnsw_ef_search), "64", "HNSW search breadth"},
    {"weight-importance", OPT_FLOAT, OFF(db.weight_importance), "0.1",
     "search score weight of importance (0..0.5)"},
    {"weight-recency", OPT_FLOAT, OFF(db.weight_recency), "0.05",
     "search score weight of recency (0..0.5)"},
    {"extractor", OPT_STR, OFF(extractor_owned), "rules",
     "consolidation extractor: rules (built-in, offline) or llm"},
    {"llm-url", OPT_STR, OFF(llm_url_owned), "(none)",
     "llm extractor: base URL of an OpenAI-compatible server"},
    {"llm-model", OPT_STR, OFF(llm_model_owned), "gpt-4o-mini", "llm extractor: model name"},
    {"llm-api-key", OPT_STR, OFF(llm_api_key_owned), "(none)", "llm extractor: bearer key"},
    {"near-duplicate", OPT_FLOAT, OFF(db.near_duplicate), "0.92",
     "cosine at or above which a new memory is a duplicate (1: off)"},
    {"distill-importance", OPT_FLOAT, OFF(db.distill_importance), "0.8",
     "distil a memory into L3 at once at or above this importance"},
    {"distill-hour", OPT_INT, OFF(db.distill_hour), "2",
     "local hour of the nightly distillation (off: none)"},
    {"tenant-model-calls", OPT_U32, OFF(db.tenant_model_calls), "4",
     "concurrent extractor calls allowed per tenant"},
    {"merge-margin", OPT_FLOAT, OFF(db.merge_margin), "0.15",
     "delta-merge: confidences closer than this are ambiguous"},
    {"merge-window", OPT_U32, OFF(db.merge_window_s), "3600",
     "delta-merge: a contradiction newer by more seconds is a change"},
    {"threads", OPT_INT, OFF(http.threads), "0", "HTTP event loops (0: 2 x cores)"},
    {"max-connections", OPT_INT, OFF(http.max_connections), "1024",
     "open connections allowed at once"},
    {"max-body-bytes", OPT_U64, OFF(http.limits.max_body_bytes), "1048576",
     "largest request body (413 above)"},
    {"max-header-bytes", OPT_U64, OFF(http.limits.max_header_bytes), "16384",
     "largest request head (431 above)"},
    {"idle-timeout-ms", OPT_INT, OFF(http.idle_timeout_ms), "60000",
     "close keep-alive connections idle this long"},
    {"request-timeout-ms", OPT_INT, OFF(http.request_timeout_ms), "10000",
     "a started request must arrive within this"},
    {"tls-cert", OPT_STR, OFF(tls_cert), "(none)",
     "PEM certificate chain; with --tls-key the server speaks HTTPS only"},
    {"tls-key", OPT_STR, OFF(tls_key), "(none)", "PEM private key of --tls-cert"},
    {"tls-min-version", OPT_STR, OFF(tls_min_version), "1.3",
     "lowest TLS version accepted: 1.3 or 1.2"},
    {"allow-plain-http", OPT_BOOL, OFF(allow_plain_http), "false",
     "serve plain HTTP on a non-loopback address (refused otherwise)"},
    {"master-key-file", OPT_STR, OFF(master_key_file_owned), "(none)",
     "encryption at rest: file with the 32-byte master key (64 hex digits or raw)"},
    {"master-key", OPT_STR, OFF(master_key_owned), "(none)",
     "encryption at rest: the master key as 64 hex digits (prefer the file or env)"},
    {"keyring", OPT_STR, OFF(keyring_owned), "<data-dir>/keyring",
     "encryption at rest: the sealed data keys (keep it apart from backups)"},
    {"admin-key", OPT_STR, OFF(admin_key), "(none)",
     "the administrator's key (manages tenants' API keys); turns authentication on"},
    {"rate-limit", OPT_INT, OFF(rate_limit), "0",
     "requests per second allowed per API key (429 above; 0: no limit)"},
    {"access-log", OPT_STR, OFF(access_log_path), "(off)",
     "append one line per request to this file (- for stderr)"},
    {"log-level", OPT_STR, OFF(log_level), "info", "debug | info | warn | error"},
};

/* "data-dir" -> "STRATA_DATA_DIR". */
static void opt_env_name(const opt_def *o, char *env, size_t cap)
{
    size_t k = (size_t)snprintf(env, cap, "STRATA_");
    for (const char *p = o->name; *p && k + 1 < cap; p++) {
        env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    env[k] = '\0';
}

void settings_print_help(FILE *out)
{
    fprintf(out, "usage: stratad [--config FILE] [--NAME VALUE]...\n\n"
                 "Every setting can also come from the environment (STRATA_NAME, upper case,\n"
                 "'-' as '_') or from a config file of `name = value` lines.\n\n");
    for (size_t i = 0; i < STRATA_ARRAY_LEN(OPTS); i++) {
        char env[64];
        opt_env_name(&OPTS[i], env, sizeof(env));
        fprintf(out, "  --%-20s %-28s %s (default %s)\n", OPTS[i].name, env, OPTS[i].help,
                OPTS[i].def);
    }
}

static const opt_def *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < STRATA_ARRAY_LEN(OPTS); i++) {
        const char *n = OPTS[i].name;
        if (strlen(n) != len) {
            continue;
        }
        bool same = true;
        for (size_t k = 0; k < len && same; k++) {
            char a = n[k];
            char b = name[k] == '_' ? '-' : (char)tolower((unsigned char)name[k]);
            same = a == b;
        }
        if (same) {
            return &OPTS[i];
        }
    }
    return NULL;
}

static int opt_set_bool(const opt_def *o, const char *value, int *slot, char *err,
                        size_t errcap)
{
    static const char *const k_true[] = {"1", "true", "yes", "on"};
    static const char *const k_false[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < STRATA_ARRAY_LEN(k_true); i++) {
        if (strcasecmp(value, k_true[i]) == 0) {
            *slot = 1;
            return STRATA_OK;
        }
        if (strcasecmp(value, k_false[i]) == 0) {
            *slot = 0;
            return STRATA_OK;
        }
    }
    snprintf(err, errcap, "--%s: '%s' must be true or false", o->name, value);
    return STRATA_EINVAL;
}

static int opt_set(server_settings *s, const opt_def *o, const char *value, char *err,
                   size_t errcap)
{
    char *base = (char *)s;
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_STR: {
        char **slot = (char **)(base + o->offset);
        char *copy = strata_strdup(value);
        if (copy == NULL) {
            snprintf(err, errcap, "out of memory");
            return STRATA_ENOMEM;
        }
        strata_free(*slot);
        *slot = copy;
        return STRATA_OK;
    }
    case OPT_FLOAT: {
        double d = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !(d >= 0.0 && d <= 1.0)) {
            snprintf(err, errcap, "--%s: '%s' must be a number in [0, 1]", o->name, value);
            return STRATA_EINVAL;
        }
        *(float *)(base + o->offset) = (float)d;
        return STRATA_OK;
    }
    case OPT_BOOL:
        return opt_set_bool(o, value, (int *)(base + o->offset), err, errcap);
    case OPT_FSYNC:
        if (strata_fsync_parse(value, (strata_fsync_policy *)(base + o->offset)) != STRATA_OK) {
            snprintf(err, errcap, "--%s: must be always, everysec or no", o->name);
            return STRATA_EINVAL;
        }
        return STRATA_OK;
    default:
        break;
    }
    if (o->offset == OFF(db.distill_hour) && strcmp(value, "off") == 0) {
        s->db.distill_hour = -1;
        return STRATA_OK;
    }
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-') {
        snprintf(err, errcap, "--%s: '%s' is not a non-negative integer", o->name, value);
        return STRATA_EINVAL;
    }
    if (o->kind == OPT_U32) {
        if (v > UINT32_MAX) {
            snprintf(err, errcap, "--%s: %s is too large", o->name, value);
            return STRATA_EINVAL;
        }
        *(uint32_t *)(base + o->offset) = (uint32_t)v;
    } else if (o->kind == OPT_U64) {
        if (o->offset == OFF(http.limits.max_body_bytes) ||
            o->offset == OFF(http.limits.max_header_bytes)) {
            *(size_t *)(base + o->offset) = (size_t)v;
        } else {
            *(uint64_t *)(base + o->offset) = v;
        }
    } else {
        if (v > 0x7fffffff) {
            snprintf(err, errcap, "--%s: %s is too large", o->name, value);
            return STRATA_EINVAL;
        }
        if (o->offset == OFF(db.distill_hour) && v > 23) {
            snprintf(err, errcap, "--distill-hour: 0..23 or off");
            return STRATA_EINVAL;
        }
        if (o->offset == OFF(http.port)) {
            if (v > 65535) {
                snprintf(err, errcap, "--port: %s is not a TCP port", value);
                return STRATA_EINVAL;
            }
            s->http.port = (uint16_t)v;
        } else {
            *(int *)(base + o->offset) = (int)v;
        }
    }
    return STRATA_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

static int settings_load_file(server_settings *s, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errcap, "cannot open config file %s: %s", path, strerror(errno));
        return STRATA_EINVAL;
    }
    char line[1024];
    int lineno = 0;
    int rc = STRATA_OK;
    while (rc == STRATA_OK && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *t = trim(line);
        if (*t == '\0' || *t == '#') {
            continue;
        }
        char *eq = strchr(t, '=');
        if (eq == NULL) {
            snprintf(err, errcap, "%s:%d: expected name = value", path, lineno);
            rc = STRATA_EINVAL;
            break;
        }
        *eq = '\0';
        char *name = trim(t);
        char *value = trim(eq + 1);
        const opt_def *o = opt_find(name, strlen(name));
        if (o == NULL) {
            snprintf(err, errcap, "%s:%d: unknown setting '%s'", path, lineno, name);
            rc = STRATA_EINVAL;
            break;
        }
        rc = opt_set(s, o, value, err, errcap);
    }
    fclose(f);
    return rc;
}

static void settings_defaults(server_settings *s)
{
    memset(s, 0, sizeof(*s));
    http_server_config_init(&s->http);
    s->http.port = 7700;
    strata_config_init(&s->db);
    s->host_owned = strata_strdup("127.0.0.1");
    s->data_dir_owned = strata_strdup("./data");
    s->log_level = strata_strdup("info");
    s->embedder_owned = strata_strdup("auto");
    s->extractor_owned = strata_strdup("rules");
    s->tls_min_version = strata_strdup("1.3");
}

int settings_load(server_settings *s, int argc, char **argv, char *err, size_t errcap)
{
    settings_defaults(s);
    if (s->host_owned == NULL || s->data_dir_owned == NULL || s->log_level == NULL) {
        snprintf(err, errcap, "out of memory");
        return STRATA_ENOMEM;
    }
    /* 1. config file: --config wins over STRATA_CONFIG. */
    const char *config_path = getenv("STRATA_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        }
    }
    int rc = STRATA_OK;
    if (config_path != NULL && config_path[0] != '\0') {
        rc = settings_load_file(s, config_path, err, errcap);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    /* 2. environment. */
    for (size_t i = 0; i < STRATA_ARRAY_LEN(OPTS); i++) {
        char env[64];
        opt_env_name(&OPTS[i], env, sizeof(env));
        const char *v = getenv(env);
        if (v != NULL && v[0] != '\0') {
            rc = opt_set(s, &OPTS[i], v, err, errcap);
            if (rc != STRATA_OK) {
                return rc;
            }
        }
    }
    /* 3. flags: --name value or --name=value. */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errcap, "unexpected argument '%s' (see --help)", arg);
            return STRATA_EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;
        if (nlen == 6 && strncmp(name, "config", 6) == 0) {
            if (value == NULL) {
                i++;
            }
            continue;
        }
        const opt_def *o = opt_find(name, nlen);
        if (o == NULL) {
            snprintf(err, errcap, "unknown option '%s' (see --help)", arg);
            return STRATA_EINVAL;
        }
        if (value == NULL && o->kind == OPT_BOOL) {
            value = "true";   /* a bare --allow-plain-http */
        }
        if (value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errcap, "option --%s needs a value", o->name);
                return STRATA_EINVAL;
            }
            value = argv[++i];
        }
        rc = opt_set(s, o, value, err, errcap);
        if (rc != STRATA_OK) {
            return rc;
        }
    }
    s->http.host = s->host_owned;
    s->db.data_dir = s->data_dir_owned;
    s->db.embedder = s->embedder_owned;
    s->db.embed_url = s->embed_url_owned;
    s->db.embed_model = s->embed_model_owned;
    s->db.embed_api_key = s->embed_api_key_owned;
    s->db.model_dir = s->model_dir_owned;
    s->db.extractor = s->extractor_owned;
    s->db.l1_backend = s->l1_backend_owned;
    s->db.redis_addrs = s->redis_addrs_owned;
    s->db.redis_password = s->redis_password_owned;
    s->db.redis_tls_cacert = s->redis_tls_cacert_owned;
    s->db.redis_tls_cert = s->redis_tls_cert_owned;
    s->db.redis_tls_key = s->redis_tls_key_owned;
    s->db.redis_tls_server_name = s->redis_tls_server_name_owned;
    if (!s->db.redis_tls && (s->redis_tls_cacert_owned || s->redis_tls_cert_owned ||
                             s->redis_tls_key_owned || s->redis_tls_server_name_owned)) {
        /* Certificates given but TLS off would mean plain text to Redis. */
        snprintf(err, errcap, "--redis-tls-cacert/-cert/-key/-server-name need --redis-tls");
        return STRATA_EINVAL;
    }
    s->db.replay_stream = s->replay_stream_owned;
    s->db.replay_addrs = s->replay_addrs_owned;
    s->db.replay_key = s->replay_key_owned;
    s->db.llm_url = s->llm_url_owned;
    s->db.llm_model = s->llm_model_owned;
    s->db.llm_api_key = s->llm_api_key_owned;
    s->db.master_key = s->master_key_owned;
    s->db.master_key_file = s->master_key_file_owned;
    s->db.keyring_path = s->keyring_owned;
    if (s->db.weight_importance + s->db.weight_recency > 0.9f) {
        snprintf(err, errcap, "weight-importance + weight-recency must stay below 0.9");
        return STRATA_EINVAL;
    }
    if (s->tls_min_version == NULL || (strcmp(s->tls_min_version, "1.3") != 0 &&
                                       strcmp(s->tls_min_version, "1.2") != 0)) {
        snprintf(err, errcap, "--tls-min-version: must be 1.3 or 1.2");
        return STRATA_EINVAL;
    }
    if (s->http.limits.max_body_bytes == 0 || s->http.limits.max_header_bytes < 1024) {
        snprintf(err, errcap, "max-body-bytes must be > 0 and max-header-bytes >= 1024");
        return STRATA_EINVAL;
    }
    return STRATA_OK;
}

void settings_free(server_settings *s)
{
    strata_free(s->host_owned);
    strata_free(s->data_dir_owned);
    strata_free(s->access_log_path);
    strata_free(s->log_level);
    strata_free(s->embedder_owned);
    strata_free(s->embed_url_owned);
    strata_free(s->embed_model_owned);
    strata_free(s->embed_api_key_owned);
    strata_free(s->model_dir_owned);
    strata_free(s->extractor_owned);
    strata_free(s->l1_backend_owned);
    strata_free(s->redis_addrs_owned);
    strata_free(s->redis_password_owned);
    strata_free(s->redis_tls_cacert_owned);
    strata_free(s->redis_tls_cert_owned);
    strata_free(s->redis_tls_key_owned);
    strata_free(s->redis_tls_server_name_owned);
    strata_free(s->replay_stream_owned);
    strata_free(s->admin_key);
    strata_free(s->replay_addrs_owned);
    strata_free(s->replay_key_owned);
    strata_free(s->llm_url_owned);
    strata_free(s->llm_model_owned);
    strata_free(s->llm_api_key_owned);
    strata_free(s->replica_of);
    strata_free(s->replica_key);
    strata_free(s->replica_cacert);
    strata_free(s->replication_key);
    strata_free(s->tls_cert);
    strata_free(s->tls_key);
    strata_free(s->tls_min_version);
    if (s->master_key_owned != NULL) {
        memset(s->master_key_owned, 0, strlen(s->master_key_owned));
    }
    strata_free(s->master_key_owned);
    strata_free(s->master_key_file_owned);
    strata_free(s->keyring_owned);
    memset(s, 0, sizeof(*s));
}
