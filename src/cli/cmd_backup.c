/*
 * cmd_backup.c - the CLI's backup, restore and replication commands:
 *
 *   backup <dir>                          online backup by the running server
 *                                         (admin key as --api-key); dir is made
 *                                         absolute here, since the server
 *                                         resolves it in its own directory
 *   restore <backup-dir> <new-dir> [--at TS]   (or --to DIR / --data-dir DIR)
 *                                         offline: verify every file against
 *                                         MANIFEST.json, then restore into a new
 *                                         data directory, up to TS if given
 *   admin promote                         make a replica a writable primary
 *   admin replication                     role, positions and lag
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "pipeline/repl.h"

static void print_backup(json_t *r)
{
    printf("backup of LSN %" JSON_INTEGER_FORMAT " (log up to %" JSON_INTEGER_FORMAT
           ") in %s: %zu files, %" JSON_INTEGER_FORMAT " bytes\n",
           json_integer_value(json_object_get(r, "lsn")),
           json_integer_value(json_object_get(r, "last_lsn")),
           json_string_value(json_object_get(r, "dir")),
           json_array_size(json_object_get(r, "files")),
           json_integer_value(json_object_get(r, "bytes")));
}

int cli_cmd_backup(cli *c, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: strata backup <dir>   (a new or empty directory)\n");
        return 2;
    }
    char abs[PATH_MAX + 2];
    if (argv[1][0] == '/') {
        snprintf(abs, sizeof(abs), "%s", argv[1]);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            perror("strata: getcwd");
            return 2;
        }
        size_t a = strlen(cwd);
        size_t b = strlen(argv[1]);
        if (a + 1 + b >= sizeof(abs)) {
            fprintf(stderr, "strata: path too long\n");
            return 2;
        }
        memcpy(abs, cwd, a);
        abs[a] = '/';
        memcpy(abs + a + 1, argv[1], b + 1);
    }
    json_t *body = json_pack("{s:s}", "dir", abs);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        fprintf(stderr, "strata: the path must be valid UTF-8\n");
        return 2;
    }
    /* A backup copies the whole data directory: allow it time. */
    long saved = c->timeout_ms;
    c->timeout_ms = 3600L * 1000;
    int rc = cli_run(c, "POST", "/v1/admin/backup", text, print_backup);
    c->timeout_ms = saved;
    free(text);
    return rc;
}

int cli_cmd_restore(int argc, char **argv)
{
    const char *src = NULL;
    const char *dst = NULL;
    const char *at = NULL;
    for (int i = 1; i < argc; i++) {
        bool has_val = i + 1 < argc;
        if (strcmp(argv[i], "--at") == 0 && has_val) {
            at = argv[++i];
        } else if ((strcmp(argv[i], "--to") == 0 || strcmp(argv[i], "--data-dir") == 0) &&
                   has_val && dst == NULL) {
            dst = argv[++i];
        } else if (argv[i][0] == '-') {
            src = dst = NULL;
            break;
        } else if (src == NULL) {
            src = argv[i];
        } else if (dst == NULL) {
            dst = argv[i];
        } else {
            src = dst = NULL;
            break;
        }
    }
    if (src == NULL || dst == NULL) {
        fprintf(stderr, "usage: strata restore <backup-dir> <new-data-dir> [--at TS]\n");
        return 2;
    }
    long long ts = 0;
    if (at != NULL) {
        char *end = NULL;
        ts = strtoll(at, &end, 10);
        if (at[0] == '\0' || *end != '\0' || ts < 0) {
            fprintf(stderr, "strata: --at takes Unix seconds\n");
            return 2;
        }
    }
    uint64_t records = 0;
    int rc = backup_restore(src, dst, at != NULL, ts, &records);
    if (rc != STRATA_OK) {
        fprintf(stderr, "strata: restore failed: %s\n", strata_errmsg());
        return 1;
    }
    if (at != NULL) {
        printf("restored backup %s as of %lld into %s (%llu records replayed)\n", src, ts, dst,
               (unsigned long long)records);
    } else {
        printf("restored backup %s into %s (%llu records replayed)\n", src, dst,
               (unsigned long long)records);
    }
    return 0;
}

static void print_role(json_t *r)
{
    printf("role: %s  last LSN: %" JSON_INTEGER_FORMAT "\n",
           json_string_value(json_object_get(r, "role")),
           json_integer_value(json_object_get(r, "last_lsn")));
    json_t *rep = json_object_get(r, "replica");
    if (rep != NULL) {
        printf("replica: %s, applied %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
               " (lag %" JSON_INTEGER_FORMAT " records, %.1f s)%s%s\n",
               json_is_true(json_object_get(rep, "connected")) ? "connected" : "disconnected",
               json_integer_value(json_object_get(rep, "applied_lsn")),
               json_integer_value(json_object_get(rep, "primary_lsn")),
               json_integer_value(json_object_get(rep, "lag_records")),
               json_number_value(json_object_get(rep, "lag_seconds")),
               json_string_length(json_object_get(rep, "last_error")) ? "; last error: " : "",
               json_string_value(json_object_get(rep, "last_error")));
    }
}

static void print_promoted(json_t *r)
{
    printf("promoted: now a primary at LSN %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(r, "lsn")));
}

int cli_cmd_admin_repl(cli *c, int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "promote") == 0) {
        return cli_run(c, "POST", "/v1/admin/promote", NULL, print_promoted);
    }
    if (argc == 2 && strcmp(argv[1], "replication") == 0) {
        return cli_run(c, "GET", "/v1/admin/replication", NULL, print_role);
    }
    fprintf(stderr, "usage: strata admin promote | strata admin replication\n");
    return 2;
}
