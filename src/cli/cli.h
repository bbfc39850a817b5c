/*
 * cli.h - the internal header of the strata command-line tool. Online
 * commands talk to a running stratad over HTTP (http_client.c); each command
 * prints a readable form by default and the server's JSON with --json.
 */
#ifndef STRATA_CLI_H
#define STRATA_CLI_H

#include <jansson.h>
#include <stdbool.h>

#include "core/core.h"

typedef struct cli {
    const char *url;             /* base URL, default http://127.0.0.1:7700 (or https://) */
    const char *api_key;         /* --api-key or STRATA_API_KEY */
    bool json;                   /* --json: print the server's JSON */
    long timeout_ms;
    const char *cacert;          /* --cacert or STRATA_CACERT: PEM CAs for https */
    bool insecure;               /* --insecure: skip certificate verification */
} cli;

int cli_request(cli *c, const char *method, const char *path, const char *body, long *status,
                sbuf *out);
void cli_path_escape(char *dst, size_t cap, const char *src);

/* Perform a request; print the error (exit 1), the JSON (--json) or the
 * readable form through printer. Returns the process exit code. */
typedef void (*cli_printer_fn)(json_t *root);
int cli_run(cli *c, const char *method, const char *path, const char *body,
            cli_printer_fn printer);

int cli_cmd_node(cli *c, int argc, char **argv);
int cli_cmd_edge(cli *c, int argc, char **argv);
int cli_cmd_subgraph(cli *c, int argc, char **argv);
int cli_cmd_graph(cli *c, int argc, char **argv);
int cli_cmd_rebuild(int argc, char **argv);
int cli_cmd_keyring(int argc, char **argv);   /* cmd_keyring.c */
int cli_cmd_reembed(int argc, char **argv);
/* cmd_backup.c */
int cli_cmd_backup(cli *c, int argc, char **argv);
int cli_cmd_restore(int argc, char **argv);
int cli_cmd_admin_repl(cli *c, int argc, char **argv);

#endif /* STRATA_CLI_H */
