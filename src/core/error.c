/*
 * error.c - error codes as values: names for STRATA_E* codes and a
 * thread-local message describing the last failure (strata_errmsg), so a
 * multi-threaded server gets the detail of its own call, not another's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static _Thread_local char t_errmsg[512];

const char *strata_strerror(int rc)
{
    switch (rc) {
    case STRATA_OK: return "ok";
    case STRATA_ENOMEM: return "out of memory";
    case STRATA_EINVAL: return "invalid argument";
    case STRATA_ENOTFOUND: return "not found";
    case STRATA_EIO: return "I/O error";
    case STRATA_ECORRUPT: return "corrupt data";
    case STRATA_EEXIST: return "already exists";
    case STRATA_ETOOBIG: return "too big";
    case STRATA_EBUSY: return "busy";
    case STRATA_ECLOSED: return "closed";
    case STRATA_ECONFLICT: return "conflict";
    case STRATA_EUNSUPPORTED: return "unsupported";
    case STRATA_EPROTO: return "protocol error";
    case STRATA_ETIMEDOUT: return "timed out";
    default: return "unknown error";
    }
}

const char *strata_errmsg(void)
{
    return t_errmsg;
}

void strata_error_clear(void)
{
    t_errmsg[0] = '\0';
}

int strata_error(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_errmsg, sizeof(t_errmsg), fmt, ap);
    va_end(ap);
    return rc;
}

int strata_error_errno(const char *what, const char *path)
{
    int e = errno;
    int rc = STRATA_EIO;
    if (e == ENOMEM) {
        rc = STRATA_ENOMEM;
    } else if (e == ENOENT) {
        rc = STRATA_ENOTFOUND;
    } else if (e == EEXIST) {
        rc = STRATA_EEXIST;
    } else if (e == ENOSPC || e == EFBIG) {
        rc = STRATA_ETOOBIG;
    } else if (e == EBUSY || e == EAGAIN) {
        rc = STRATA_EBUSY;
    }
    snprintf(t_errmsg, sizeof(t_errmsg), "%s%s%s: %s", what, path ? " " : "", path ? path : "",
             strerror(e));
    return rc;
}
