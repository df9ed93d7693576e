/*
 * fileio.c — see fileio.h. POSIX only (open/fstat/mmap/fsync/rename).
 *
 * Atomic write protocol (what databases and HF's safetensors writers rely on
 * for crash safety): write path.tmp.<pid>, fflush + fsync it, close, rename
 * over path, then fsync the directory so the rename itself is durable.
 */
#include "io/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// reading

molt_status fio_read_all(molt_ctx *ctx, const char *path, size_t max_bytes, char **out,
                         size_t *len) {
    *out = NULL;
    if (len)
        *len = 0;
    // O_NONBLOCK: opening a FIFO with no writer must not hang (it is cleared
    // below, so a pipe with a writer is read to its end); devices are refused
    // (/dev/zero never ends; the cap would only bound the damage)
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int fe = fstat(fd, &st) != 0                            ? errno
             : S_ISDIR(st.st_mode)                          ? EISDIR
             : !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) ? ENODEV
             : fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ? errno
                                                                          : 0;
    if (fe == ENODEV) {
        close(fd);
        return molt__err(ctx, MOLT_ERR_IO, "%s: not a regular file or pipe", path);
    }
    if (fe) {
        int e = fe;
        close(fd);
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot read: %s", path, strerror(e));
    }
    // Regular files: one allocation of the right size. Pipes etc.: grow.
    size_t cap = S_ISREG(st.st_mode) && st.st_size >= 0 ? (size_t)st.st_size : 4096;
    if (cap > max_bytes) {
        close(fd);
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: file is %zu bytes, more than the %zu allowed",
                         path, cap, max_bytes);
    }
    char *buf = molt__malloc(cap + 1);
    if (!buf) {
        close(fd);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory reading %zu bytes", path, cap);
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            // Full: one probe byte tells "exactly cap bytes" from "more".
            char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                break;
            if (r < 0 || cap >= max_bytes) {
                int e = errno;
                molt__free(buf);
                close(fd);
                if (r < 0)
                    return molt__err(ctx, MOLT_ERR_IO, "%s: read failed: %s", path, strerror(e));
                return molt__err(ctx, MOLT_ERR_FORMAT,
                                 "%s: file is larger than the %zu bytes allowed", path, max_bytes);
            }
            size_t ncap = cap < max_bytes / 2 ? cap * 2 + 4096 : max_bytes;
            if (ncap > max_bytes)
                ncap = max_bytes;
            char *nb = molt__realloc(buf, ncap + 1);
            if (!nb) {
                molt__free(buf);
                close(fd);
                return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory reading", path);
            }
            buf = nb;
            cap = ncap;
            buf[n++] = probe;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            molt__free(buf);
            close(fd);
            return molt__err(ctx, MOLT_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// mapping

typedef struct fio_mapping {
    void  *addr;   // mmap address, or molt__malloc'd copy
    size_t len;
    bool   mapped; // true: munmap; false: molt__free
} fio_mapping;

molt_status fio_map(molt_ctx *ctx, const char *path, const uint8_t **data, size_t *len,
                    void **handle) {
    static const uint8_t empty[1];
    *data = NULL;
    *len = 0;
    *handle = NULL;
    fio_mapping *m = molt__calloc(1, sizeof *m);
    if (!m)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO must not hang the open
    if (fd < 0) {
        int e = errno;
        molt__free(m);
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    int fe = fstat(fd, &st) != 0 ? errno
             : S_ISREG(st.st_mode) ? 0
             : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    if (fe) {
        int e = fe;
        close(fd);
        molt__free(m);
        if (e == EINVAL) // a FIFO, socket or device: a model is a file
            return molt__err(ctx, MOLT_ERR_IO, "%s: not a regular file", path);
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        molt__free(m);
        return molt__err(ctx, MOLT_ERR_IO, "%s: file too large to map", path);
    }
    size_t n = (size_t)st.st_size;
    if (n == 0) {
        close(fd);
        *data = empty;
        *handle = m;
        return MOLT_OK;
    }
    void *addr = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr != MAP_FAILED) {
        close(fd);
        m->addr = addr;
        m->len = n;
        m->mapped = true;
    } else {
        // Fallback: read it (filesystems without mmap support).
        close(fd);
        molt__free(m);
        char *buf;
        size_t got;
        molt_status s = fio_read_all(ctx, path, n, &buf, &got);
        if (s != MOLT_OK)
            return s;
        m = molt__calloc(1, sizeof *m);
        if (!m) {
            molt__free(buf);
            return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
        }
        m->addr = buf;
        m->len = got;
        n = got;
    }
    *data = m->addr;
    *len = n;
    *handle = m;
    return MOLT_OK;
}

void fio_unmap(void *handle) {
    fio_mapping *m = handle;
    if (!m)
        return;
    if (m->mapped)
        munmap(m->addr, m->len);
    else
        molt__free(m->addr);
    molt__free(m);
}

// ----------------------------------------------------------------------------
// directories and paths

bool fio_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fio_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void fio_join(char *out, size_t cap, const char *dir, const char *name) {
    if (cap == 0)
        return;
    size_t dl = strlen(dir);
    const char *sep = (dl == 0 || dir[dl - 1] == '/') ? "" : "/";
    snprintf(out, cap, "%s%s%s", dir, sep, name);
}

molt_status fio_mkdir_p(molt_ctx *ctx, const char *dir) {
    if (!dir || !*dir)
        return molt__err(ctx, MOLT_ERR_ARG, "mkdir: empty directory name");
    char *p = molt__strdup(dir);
    if (!p)
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", dir);
    // Create each prefix ending before a '/', then the whole path.
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            molt_status s = molt__err(ctx, MOLT_ERR_IO, "%s: cannot create directory %s: %s",
                                      dir, p, strerror(e));
            molt__free(p);
            return s;
        }
        *c = saved;
        if (saved == '\0')
            break;
    }
    molt__free(p);
    if (!fio_is_dir(dir))
        return molt__err(ctx, MOLT_ERR_IO, "%s: exists and is not a directory", dir);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// atomic writes

static void free_atomic(fio_atomic *w) {
    molt__free(w->path);
    molt__free(w->tmp);
    w->path = w->tmp = NULL;
    w->fp = NULL;
}

molt_status fio_atomic_open(molt_ctx *ctx, const char *path, fio_atomic *w) {
    memset(w, 0, sizeof *w);
    size_t pl = strlen(path);
    if (pl == 0)
        return molt__err(ctx, MOLT_ERR_ARG, "write: empty path");
    char suffix[32];
    int sl = snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    w->path = molt__strdup(path);
    w->tmp = molt__malloc(pl + (size_t)sl + 1);
    if (!w->path || !w->tmp) {
        free_atomic(w);
        return molt__err(ctx, MOLT_ERR_OOM, "%s: out of memory", path);
    }
    memcpy(w->tmp, path, pl);
    memcpy(w->tmp + pl, suffix, (size_t)sl + 1);
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        int e = errno;
        free_atomic(w);
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot create temporary file: %s", path,
                         strerror(e));
    }
    return MOLT_OK;
}

molt_status fio_atomic_write(molt_ctx *ctx, fio_atomic *w, const void *data, size_t len) {
    if (len == 0)
        return MOLT_OK;
    errno = 0;
    if (fwrite(data, 1, len, w->fp) != len) {
        int e = errno ? errno : EIO;
        return molt__err(ctx, MOLT_ERR_IO, "%s: write failed: %s", w->path, strerror(e));
    }
    return MOLT_OK;
}

void fio_atomic_abort(fio_atomic *w) {
    if (w->fp)
        fclose(w->fp);
    if (w->tmp)
        unlink(w->tmp);
    free_atomic(w);
}

int fio_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int e = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        e = errno;
    close(fd);
    return e;
}

// fsync of the directory holding path, so that a rename survives a crash.
static int fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return fio_fsync_dir(dir);
}

molt_status fio_atomic_commit(molt_ctx *ctx, fio_atomic *w) {
    const char *what = "flush";
    int e = 0;
    if (ferror(w->fp)) { // a write the stream already failed (callers that fprintf to w->fp)
        what = "write";
        e = EIO;
    } else if (fflush(w->fp) != 0) {
        e = errno;
    } else if (fsync(fileno(w->fp)) != 0) {
        what = "fsync";
        e = errno;
    }
    int rc = fclose(w->fp);
    w->fp = NULL;
    if (!e && rc != 0) {
        what = "close";
        e = errno;
    }
    if (!e && rename(w->tmp, w->path) != 0) {
        what = "rename";
        e = errno;
    }
    if (e) {
        molt_status s = molt__err(ctx, MOLT_ERR_IO, "%s: %s failed: %s", w->path, what,
                                  strerror(e));
        fio_atomic_abort(w);
        return s;
    }
    e = fsync_parent(w->path);
    molt_status s = MOLT_OK;
    if (e)
        s = molt__err(ctx, MOLT_ERR_IO, "%s: fsync of its directory failed: %s", w->path,
                      strerror(e));
    free_atomic(w);
    return s;
}

molt_status fio_write_atomic(molt_ctx *ctx, const char *path, const void *data, size_t len) {
    fio_atomic w;
    molt_status s = fio_atomic_open(ctx, path, &w);
    if (s != MOLT_OK)
        return s;
    s = fio_atomic_write(ctx, &w, data, len);
    if (s != MOLT_OK) {
        fio_atomic_abort(&w);
        return s;
    }
    return fio_atomic_commit(ctx, &w);
}
