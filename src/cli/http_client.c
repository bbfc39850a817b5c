/*
 * http_client.c - the CLI's HTTP client: one libcurl easy handle reused for
 * the process, JSON requests, response body and status returned to the
 * command that asked. https:// URLs verify the server against the system CAs
 * or --cacert; --insecure turns verification off (tests, self-signed setups).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sbuf *b = userdata;
    size_t n = size * nmemb;
    return sbuf_append(b, ptr, n) == STRATA_OK ? n : 0;
}

int cli_request(cli *c, const char *method, const char *path, const char *body, long *status,
                sbuf *out)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        fprintf(stderr, "strata: cannot initialise libcurl\n");
        return -1;
    }
    char url[4096];
    snprintf(url, sizeof(url), "%s%s", c->url, path);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (c->api_key != NULL) {
        char auth[600];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->api_key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* stratad accepts TLS 1.2 only when told to; never offer less. */
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->cacert != NULL && c->cacert[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    }
    if (c->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode cc = curl_easy_perform(h);
    int rc = 0;
    if (cc != CURLE_OK) {
        fprintf(stderr, "strata: %s %s: %s\n", method, url, curl_easy_strerror(cc));
        rc = -1;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

/* Percent-encode one path segment. */
void cli_path_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && k + 4 < cap; p++) {
        bool safe = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-_.:@~", *p) != NULL;
        if (safe) {
            dst[k++] = (char)*p;
        } else {
            dst[k++] = '%';
            dst[k++] = hex[*p >> 4];
            dst[k++] = hex[*p & 15];
        }
    }
    dst[k] = '\0';
}
