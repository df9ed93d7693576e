/*
 * fileio.h — small checked file helpers shared by the readers and writers:
 * whole-file reads with a size cap, atomic writes (tmp file + fsync + rename +
 * directory fsync), read-only mappings, directory helpers and path joining.
 *
 * Every fallible helper returns a molt_status and reports through molt__err a
 * message naming the path and strerror(errno). Allocation goes through
 * molt__malloc (MOLT_ERR_OOM when it fails).
 */
#ifndef MOLT_FILEIO_H
#define MOLT_FILEIO_H

#include "core/core.h"

#include <stdio.h>

// Reads the whole file into a molt__malloc'd, NUL-terminated buffer (*len
// excludes the NUL). MOLT_ERR_IO when it cannot be opened/read, MOLT_ERR_FORMAT
// when it is larger than max_bytes.
molt_status fio_read_all(molt_ctx *ctx, const char *path, size_t max_bytes, char **out,
                         size_t *len);

// Writes data to path atomically: path.tmp.<pid>, fflush, fsync, close,
// rename, fsync of the directory. On failure the tmp file is removed.
molt_status fio_write_atomic(molt_ctx *ctx, const char *path, const void *data, size_t len);

// fsync of directory dir (so renames in it survive a crash); 0 or an errno.
// Filesystems that cannot fsync a directory (EINVAL, ENOTSUP) are not an error.
int         fio_fsync_dir(const char *dir);
bool        fio_is_dir(const char *path);
bool        fio_exists(const char *path);
// mkdir -p (mode 0755). OK when the directory already exists.
molt_status fio_mkdir_p(molt_ctx *ctx, const char *dir);
// out = dir + "/" + name (no doubled '/'; dir "" gives name). Always
// NUL-terminated; truncated when longer than cap - 1.
void        fio_join(char *out, size_t cap, const char *dir, const char *name);

// Maps a file read-only (mmap; falls back to reading it into memory). *data
// stays valid until fio_unmap(*handle). An empty file maps to a valid pointer
// with *len == 0.
molt_status fio_map(molt_ctx *ctx, const char *path, const uint8_t **data, size_t *len,
                    void **handle);
void        fio_unmap(void *handle);

// ---- streaming atomic writer (what fio_write_atomic and st_write share) ----
typedef struct fio_atomic {
    FILE *fp;
    char *path; // final path (molt__malloc'd)
    char *tmp;  // path.tmp.<pid> (molt__malloc'd)
} fio_atomic;

// Creates path.tmp.<pid> for writing. On failure *w holds nothing to release.
molt_status fio_atomic_open(molt_ctx *ctx, const char *path, fio_atomic *w);
// Appends len bytes; on failure the caller must still call fio_atomic_abort.
molt_status fio_atomic_write(molt_ctx *ctx, fio_atomic *w, const void *data, size_t len);
// fflush, fsync, close, rename, directory fsync (and a write error the stream
// recorded fails it: callers may fprintf to w->fp). Releases *w either way; on
// failure the tmp file is removed.
molt_status fio_atomic_commit(molt_ctx *ctx, fio_atomic *w);
// Closes and removes the tmp file, releases *w. Safe on a zeroed *w.
void        fio_atomic_abort(fio_atomic *w);

#endif // MOLT_FILEIO_H
