/*
 * fileio.c - the small file-system helpers the log and the snapshots share:
 * full writes, fdatasync that survives EINTR, mkdir -p, fsync of a directory
 * (so a created or renamed file survives a crash), and the I/O error mapping
 * the log contract names (always STRATA_EIO, or ENOMEM).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"

int log_io_error(const char *what, const char *path)
{
    int e = errno;
    return strata_error(e == ENOMEM ? STRATA_ENOMEM : STRATA_EIO, "%s %s: %s", what, path,
                        strerror(e));
}

int log_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (w == 0) {
            errno = EIO; /* a regular file never legitimately writes nothing */
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int log_fdatasync(int fd)
{
    int r;
    do {
        r = fdatasync(fd);
    } while (r != 0 && errno == EINTR);
    return r;
}

int log_mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) {
        return strata_error(STRATA_EINVAL, "bad directory name");
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            return log_io_error("cannot create directory", path);
        }
        path[i] = saved;
    }
    return STRATA_OK;
}

int log_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return log_io_error("cannot open directory", dir);
    }
    int rc = fsync(fd) == 0 ? STRATA_OK : log_io_error("cannot fsync directory", dir);
    close(fd);
    return rc;
}

bool log_dir_empty_or_absent(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return errno == ENOENT;
    }
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(d);
    return empty;
}
