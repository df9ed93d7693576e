/*
 * rundir.c — run output directories: manifest, ownership rules, the lock
 * (see rundir.h). POSIX: flock, realpath, opendir.
 */
#include "train/rundir.h"

#include "io/fileio.h"
#include "io/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST   ".molt-files"
#define LOCKFILE   ".molt-lock"
#define MAX_LISTED 65536

// ----------------------------------------------------------------------------
// the manifest

typedef struct manifest {
    char  kind[32];
    char *text;  // the file's text, names point into it
    const char **name;
    int          n;
} manifest;

static void manifest_free(manifest *mf) {
    molt__free(mf->text);
    molt__free(mf->name);
    memset(mf, 0, sizeof *mf);
}

// a name molt may list (and so remove): one plain entry of the directory
static bool listable(const char *s) {
    return *s && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') &&
           strncmp(s, ".molt-", 6) && strlen(s) < 256;
}

// *found false (and mf empty) when dir has no manifest
static molt_status manifest_read(molt_ctx *ctx, const char *dir, manifest *mf, bool *found) {
    char path[4200];
    memset(mf, 0, sizeof *mf);
    *found = false;
    fio_join(path, sizeof path, dir, MANIFEST);
    if (!fio_exists(path))
        return MOLT_OK;
    size_t      len = 0;
    molt_status st = fio_read_all(ctx, path, (size_t)MAX_LISTED * 260, &mf->text, &len);
    if (st != MOLT_OK)
        return st;
    char *line = mf->text, *nl;
    if (strncmp(line, "molt-run ", 9) || !(nl = strchr(line, '\n')) || nl - line - 9 <= 0 ||
        nl - line - 9 >= (long)sizeof mf->kind) {
        manifest_free(mf);
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: not a molt manifest (remove it by hand if "
                                               "the directory is yours)", path);
    }
    memcpy(mf->kind, line + 9, (size_t)(nl - line - 9));
    mf->name = molt__calloc(MAX_LISTED, sizeof *mf->name);
    if (!mf->name) {
        manifest_free(mf);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    for (line = nl + 1; *line && mf->n < MAX_LISTED; line = nl + 1) {
        if (!(nl = strchr(line, '\n')))
            break; // a line without its newline was never completely written
        *nl = 0;
        bool dup = false;
        for (int i = 0; i < mf->n && !dup; i++)
            dup = !strcmp(mf->name[i], line);
        if (listable(line) && !dup)
            mf->name[mf->n++] = line;
    }
    *found = true;
    return MOLT_OK;
}

static molt_status manifest_write(molt_ctx *ctx, const char *dir, const char *kind,
                                  const char *const *name, int n) {
    size_t cap = 32 + strlen(kind);
    for (int i = 0; i < n; i++)
        cap += strlen(name[i]) + 1;
    char *buf = molt__malloc(cap);
    if (!buf)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    size_t len = (size_t)snprintf(buf, cap, "molt-run %s\n", kind);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\n", name[i]);
    char path[4200];
    fio_join(path, sizeof path, dir, MANIFEST);
    molt_status st = fio_write_atomic(ctx, path, buf, len);
    molt__free(buf);
    return st;
}

molt_status manifest_add(molt_ctx *ctx, const char *dir, const char *kind, const char *name) {
    if (!listable(name))
        return molt__err(ctx, MOLT_ERR_INTERNAL, "manifest: bad name \"%s\"", name);
    manifest    mf;
    bool        found;
    molt_status st = manifest_read(ctx, dir, &mf, &found);
    if (st != MOLT_OK)
        return st;
    for (int i = 0; i < mf.n; i++)
        if (!strcmp(mf.name[i], name)) {
            manifest_free(&mf);
            return MOLT_OK;
        }
    if (mf.n >= MAX_LISTED - 1) {
        manifest_free(&mf);
        return molt__err(ctx, MOLT_ERR_ARG, "%s: more than %d entries", dir, MAX_LISTED);
    }
    if (!found) {
        mf.name = molt__calloc(1, sizeof *mf.name);
        if (!mf.name)
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        snprintf(mf.kind, sizeof mf.kind, "%s", kind);
    }
    mf.name[mf.n++] = name;
    st = manifest_write(ctx, dir, mf.kind, mf.name, mf.n);
    manifest_free(&mf);
    return st;
}

// ----------------------------------------------------------------------------
// removing what molt wrote

// the plain files of dir (one level), then dir itself when it is empty
static void remove_files_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char           p[4200];
    while ((e = readdir(d))) {
        struct stat sb;
        fio_join(p, sizeof p, dir, e->d_name);
        if (lstat(p, &sb) == 0 && !S_ISDIR(sb.st_mode))
            unlink(p);
    }
    closedir(d);
}

static void clear_listed(const char *dir, const manifest *mf);

// one listed entry: a file; a directory with its own manifest (a stage); or a
// checkpoint directory, molt's as a whole (with a model save's staging dir)
static void remove_entry(const char *dir, const char *name) {
    char        p[4200], q[4300];
    struct stat sb;
    fio_join(p, sizeof p, dir, name);
    if (lstat(p, &sb) != 0)
        return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(p);
        return;
    }
    manifest mf;
    bool     found = false;
    molt_ctx *ctx = molt_ctx_new();
    if (ctx && manifest_read(ctx, p, &mf, &found) == MOLT_OK && found) {
        clear_listed(p, &mf);
        manifest_free(&mf);
        fio_join(q, sizeof q, p, MANIFEST);
        unlink(q);
    } else if (!strncmp(name, "ckpt-", 5)) {
        fio_join(q, sizeof q, p, ".molt-save");
        remove_files_in(q);
        rmdir(q);
        remove_files_in(p);
    }
    molt_ctx_free(ctx);
    rmdir(p); // stays when the user put something there
}

static void clear_listed(const char *dir, const manifest *mf) {
    for (int i = 0; i < mf->n; i++)
        remove_entry(dir, mf->name[i]);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

molt_status manifest_prune_ckpts(molt_ctx *ctx, const char *dir, int keep) {
    manifest    mf;
    bool        found;
    molt_status st = manifest_read(ctx, dir, &mf, &found);
    if (st != MOLT_OK || !found)
        return st;
    const char **ck = molt__calloc((size_t)mf.n + 1, sizeof *ck);
    const char **rest = molt__calloc((size_t)mf.n + 1, sizeof *rest);
    if (!ck || !rest) {
        molt__free(ck);
        molt__free(rest);
        manifest_free(&mf);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    int nc = 0, nr = 0;
    for (int i = 0; i < mf.n; i++)
        if (!strncmp(mf.name[i], "ckpt-", 5))
            ck[nc++] = mf.name[i];
        else
            rest[nr++] = mf.name[i];
    qsort(ck, (size_t)nc, sizeof *ck, cmp_str);
    int drop = keep < 1 ? nc - 1 : nc - keep;
    if (drop > 0) {
        for (int i = 0; i < drop; i++)
            remove_entry(dir, ck[i]);
        for (int i = drop; i < nc; i++)
            rest[nr++] = ck[i];
        st = manifest_write(ctx, dir, mf.kind, rest, nr);
    }
    molt__free(ck);
    molt__free(rest);
    manifest_free(&mf);
    return st;
}

// ----------------------------------------------------------------------------
// runs written before the manifest existed
//
// Such a run is recognised by what its entries hold, not by their names:
//   ckpt-*/     a directory with molt's state.json (an object with integer
//               "step" and "adam_step" and a string "rng")
//   latest      a file (under 64 bytes) naming a "ckpt-" directory
//   log.jsonl   (train) whose first line is an object with "step" and "loss"
//   done        (in a distill stage) a file starting "done"
//   stage1..3/  (distill) a directory holding such entries
// Checkpoints or a log at the top make it a train run, stage directories a
// distill run; the recognised entries are its entries, everything else is
// the user's.

// the first (up to) max bytes of a regular file, NUL-terminated (molt__free)
static bool file_head(const char *dir, const char *name, size_t max, char **text) {
    char        p[4200];
    struct stat sb;
    fio_join(p, sizeof p, dir, name);
    *text = NULL;
    if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    char   *buf = molt__malloc(max + 1);
    ssize_t n = buf ? read(fd, buf, max) : -1;
    close(fd);
    if (n < 0) {
        molt__free(buf);
        return false;
    }
    buf[n] = 0;
    *text = buf;
    return true;
}

static bool has_int(const cJSON *o, const char *key) {
    return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, key));
}

// a JSON object in the file's first line (or whole text) with these keys
static bool json_with(molt_ctx *ctx, const char *dir, const char *name, bool first_line,
                      const char *k1, const char *k2, const char *k3) {
    char *text = NULL;
    if (!file_head(dir, name, (size_t)1 << 16, &text))
        return false;
    char *nl = first_line ? strchr(text, '\n') : NULL;
    size_t len = nl ? (size_t)(nl - text) : strlen(text);
    cJSON *o = js_parse(ctx, name, text, len);
    bool   ok = cJSON_IsObject(o) && has_int(o, k1) && has_int(o, k2) &&
              (k3[0] == '!' ? cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, k3 + 1))
                            : has_int(o, k3));
    cJSON_Delete(o);
    molt__free(text);
    return ok;
}

static bool old_ckpt(molt_ctx *ctx, const char *dir, const char *name) {
    char p[4200];
    fio_join(p, sizeof p, dir, name);
    return !strncmp(name, "ckpt-", 5) && fio_is_dir(p) &&
           json_with(ctx, p, "state.json", false, "step", "adam_step", "!rng");
}

static bool old_entry(molt_ctx *ctx, const char *dir, const char *name) {
    char *text = NULL;
    bool  ok = false;
    if (!strcmp(name, "latest") && file_head(dir, name, 64, &text))
        ok = !strncmp(text, "ckpt-", 5) && !strchr(text, '/');
    else if (!strcmp(name, "done") && file_head(dir, name, 64, &text))
        ok = !strncmp(text, "done", 4);
    else if (!strcmp(name, "log.jsonl"))
        ok = json_with(ctx, dir, name, true, "step", "loss", "lr");
    else
        ok = old_ckpt(ctx, dir, name);
    molt__free(text);
    return ok;
}

// The recognised entries of dir into mf (names copied into mf->text), with
// *n_ckpt the checkpoints (and logs) among them and *n_stage the stage
// directories holding some (stages: look for those too).
static molt_status old_scan(molt_ctx *ctx, const char *dir, bool stages, manifest *mf,
                            int *n_ckpt, int *n_stage) {
    memset(mf, 0, sizeof *mf);
    *n_ckpt = *n_stage = 0;
    DIR *d = opendir(dir);
    if (!d)
        return MOLT_OK;
    mf->name = molt__calloc(MAX_LISTED, sizeof *mf->name);
    mf->text = molt__malloc((size_t)MAX_LISTED * 8);
    size_t used = 0, cap = (size_t)MAX_LISTED * 8;
    if (!mf->name || !mf->text) {
        closedir(d);
        manifest_free(mf);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    struct dirent *e;
    while ((e = readdir(d)) && mf->n < MAX_LISTED) {
        const char *nm = e->d_name;
        size_t      len = strlen(nm);
        bool        stage = false, ok = false;
        if (!listable(nm) || used + len + 1 > cap)
            continue;
        if (stages && !strncmp(nm, "stage", 5) && strlen(nm) == 6 && nm[5] >= '1' && nm[5] <= '3') {
            char     p[4200];
            manifest sub;
            int      c = 0, st_ = 0;
            fio_join(p, sizeof p, dir, nm);
            if (fio_is_dir(p) && old_scan(ctx, p, false, &sub, &c, &st_) == MOLT_OK)
                stage = ok = c > 0;
            manifest_free(&sub);
        } else
            ok = old_entry(ctx, dir, nm);
        if (!ok)
            continue;
        *n_stage += stage;
        *n_ckpt += !stage && (!strncmp(nm, "ckpt-", 5) || !strcmp(nm, "log.jsonl"));
        memcpy(mf->text + used, nm, len + 1);
        mf->name[mf->n++] = mf->text + used;
        used += len + 1;
    }
    closedir(d);
    snprintf(mf->kind, sizeof mf->kind, "%s", *n_stage ? "distill" : "train");
    return MOLT_OK;
}

// Writes the manifests of an older run (its stages' first) so that it is
// removed like any listed run.
static molt_status old_adopt(molt_ctx *ctx, const char *dir, const manifest *mf) {
    molt_status st = MOLT_OK;
    for (int i = 0; i < mf->n && st == MOLT_OK; i++) {
        if (strncmp(mf->name[i], "stage", 5))
            continue;
        char     p[4200];
        manifest sub;
        int      c, n;
        fio_join(p, sizeof p, dir, mf->name[i]);
        if ((st = old_scan(ctx, p, false, &sub, &c, &n)) == MOLT_OK)
            st = manifest_write(ctx, p, "checkpoints", sub.name, sub.n);
        manifest_free(&sub);
    }
    return st == MOLT_OK ? manifest_write(ctx, dir, mf->kind, mf->name, mf->n) : st;
}

// "ckpt-00000002, latest, log.jsonl" (the first few)
static void list_names(const manifest *mf, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < mf->n && i < 4 && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", mf->name[i]);
    if (mf->n > 4 && k < cap)
        snprintf(buf + k, cap - k, ", ...");
}

// ----------------------------------------------------------------------------
// temporaries of writes a crash interrupted

// "NAME.tmp.PID" (io/fileio.c's atomic writes): *stem_len = strlen(NAME)
static bool tmp_name(const char *s, size_t *stem_len) {
    const char *t = strstr(s, ".tmp.");
    if (!t || t == s)
        return false;
    for (const char *c = t + 5; ; c++)
        if (!*c)
            return c > t + 5 ? (*stem_len = (size_t)(t - s), true) : false;
        else if (*c < '0' || *c > '9')
            return false;
}

// every temporary in dir (a directory molt owns as a whole: a checkpoint, a
// save's staging directory), one level
static void sweep_owned(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char           p[4200];
    size_t         k;
    while ((e = readdir(d))) {
        struct stat sb;
        fio_join(p, sizeof p, dir, e->d_name);
        if (tmp_name(e->d_name, &k) && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            unlink(p);
    }
    closedir(d);
}

// The temporaries that writes killed mid-way (kill -9, power loss) left in a run
// directory: beside a listed entry or the manifest, and inside listed checkpoints
// and stages. Only under the lock, so no live molt process owns them; a user's
// file is never matched (its stem is not a listed name).
static void sweep_tmp(const char *dir, int depth) {
    manifest mf;
    bool     found = false;
    molt_ctx *ctx = molt_ctx_new();
    if (!ctx || manifest_read(ctx, dir, &mf, &found) != MOLT_OK || !found) {
        molt_ctx_free(ctx);
        return;
    }
    DIR *d = opendir(dir);
    struct dirent *e;
    char           p[4200], q[4300];
    size_t         k;
    while (d && (e = readdir(d))) {
        struct stat sb;
        fio_join(p, sizeof p, dir, e->d_name);
        if (!tmp_name(e->d_name, &k) || lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        bool ours = k == strlen(MANIFEST) && !strncmp(e->d_name, MANIFEST, k);
        for (int i = 0; i < mf.n && !ours; i++)
            ours = strlen(mf.name[i]) == k && !strncmp(mf.name[i], e->d_name, k);
        if (ours)
            unlink(p);
    }
    if (d)
        closedir(d);
    fio_join(p, sizeof p, dir, ".molt-save"); // a final model save's staging
    sweep_owned(p);
    for (int i = 0; i < mf.n; i++) {
        struct stat sb;
        fio_join(p, sizeof p, dir, mf.name[i]);
        if (lstat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        fio_join(q, sizeof q, p, MANIFEST);
        if (fio_exists(q)) {
            if (depth > 0)
                sweep_tmp(p, depth - 1); // a stage: its own manifest
        } else if (!strncmp(mf.name[i], "ckpt-", 5)) {
            sweep_owned(p);
            fio_join(q, sizeof q, p, ".molt-save");
            sweep_owned(q);
        }
    }
    manifest_free(&mf);
    molt_ctx_free(ctx);
}

// ----------------------------------------------------------------------------
// opening a run directory

// the first entry of dir that is neither molt's lock nor its manifest (NULL: none)
static bool first_foreign(const char *dir, char *name, size_t cap, int *count) {
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, LOCKFILE))
            continue;
        if (!*count)
            snprintf(name, cap, "%s", e->d_name);
        ++*count;
    }
    closedir(d);
    return *count > 0;
}

// the rules of rundir.h; act: also remove an earlier run's entries when told to
static molt_status check_dir(molt_ctx *ctx, const char *dir, const char *kind, bool resume,
                             bool overwrite, bool act) {
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return MOLT_OK; // new (fio_mkdir_p reports what stops its creation)
    if (!S_ISDIR(sb.st_mode))
        return molt__err(ctx, MOLT_ERR_IO, "%s: exists and is not a directory", dir);
    manifest    mf;
    bool        found;
    molt_status st = manifest_read(ctx, dir, &mf, &found);
    if (st != MOLT_OK)
        return st;
    bool old = false; // an older run: no manifest, entries recognised (above)
    if (!found) {
        int n_ckpt, n_stage;
        if ((st = old_scan(ctx, dir, true, &mf, &n_ckpt, &n_stage)) != MOLT_OK)
            return st;
        old = n_ckpt + n_stage > 0;
        if (!old)
            manifest_free(&mf);
    }
    if (old) {
        char names[300];
        list_names(&mf, names, sizeof names);
        bool same = !strcmp(mf.kind, kind);
        if (resume)
            st = molt__err(ctx, MOLT_ERR_ARG,
                           "%s holds a molt %s run written before molt kept a manifest "
                           "(.molt-files; %d entr%s: %s): its checkpoints carry no checksums "
                           "and cannot be resumed (HINT: --overwrite starts over: it removes "
                           "exactly those entries and keeps every other file)",
                           dir, mf.kind, mf.n, mf.n == 1 ? "y" : "ies", names);
        else if (!overwrite)
            st = molt__err(ctx, MOLT_ERR_ARG,
                           "%s holds an earlier molt %s run%s, written before molt kept a "
                           "manifest (.molt-files; %d entr%s: %s): refusing to replace it "
                           "(HINT: --overwrite starts over: it removes exactly those entries "
                           "and keeps every other file%s)",
                           dir, mf.kind, same ? "" : ", not a run of this kind", mf.n,
                           mf.n == 1 ? "y" : "ies", names, same ? "" : "; or another -o");
        else if (act) {
            molt__log(MOLT_LOG_WARN,
                      "%s: an earlier molt %s run written before molt kept a manifest: "
                      "--overwrite removes its %d entr%s (%s) and keeps every other file",
                      dir, mf.kind, mf.n, mf.n == 1 ? "y" : "ies", names);
            if ((st = old_adopt(ctx, dir, &mf)) == MOLT_OK) {
                manifest_free(&mf);
                if ((st = manifest_read(ctx, dir, &mf, &found)) == MOLT_OK) {
                    clear_listed(dir, &mf);
                    st = manifest_write(ctx, dir, kind, NULL, 0);
                }
            }
        }
        manifest_free(&mf);
        return st;
    }
    if (!found) {
        char name[260];
        int  n;
        if (first_foreign(dir, name, sizeof name, &n) && !overwrite)
            return molt__err(ctx, MOLT_ERR_ARG,
                             "%s is not empty (%d entr%s, e.g. \"%s\") and holds no molt %s run: "
                             "refusing to write there (HINT: give a new or empty directory, or "
                             "--overwrite to write beside those files; molt never removes files "
                             "it did not write)",
                             dir, n, n == 1 ? "y" : "ies", name, kind);
        if (act && (st = manifest_write(ctx, dir, kind, NULL, 0)) != MOLT_OK)
            return st;
        return MOLT_OK;
    }
    bool same = !strcmp(mf.kind, kind);
    if (!same && !overwrite)
        st = molt__err(ctx, MOLT_ERR_ARG,
                       "%s holds a molt %s run, not a %s run (HINT: another -o, or --overwrite "
                       "to replace that run's files)",
                       dir, mf.kind, kind);
    else if (same && mf.n > 0 && !resume && !overwrite)
        st = molt__err(ctx, MOLT_ERR_ARG,
                       "%s holds an earlier molt %s run (%d entr%s: checkpoints, log): refusing "
                       "to replace it (HINT: --resume continues it, --overwrite starts over)",
                       dir, kind, mf.n, mf.n == 1 ? "y" : "ies");
    else if (same && resume && overwrite)
        st = molt__err(ctx, MOLT_ERR_ARG, "--resume and --overwrite: choose one");
    else if (act && (!same || overwrite)) {
        clear_listed(dir, &mf);
        st = manifest_write(ctx, dir, kind, NULL, 0);
    }
    manifest_free(&mf);
    return st;
}

// takes the lock on path (create: may create it); fd -1 and an error naming
// the holder's pid when another process holds it
static molt_status take_lock(molt_ctx *ctx, const char *dir, const char *path, bool create,
                             int *fd_out) {
    *fd_out = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (fd < 0)
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot open the lock file: %s", path,
                         strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int     e = errno;
        char    who[32] = {0};
        ssize_t k = pread(fd, who, sizeof who - 1, 0);
        close(fd);
        long pid = k > 0 ? strtol(who, NULL, 10) : 0;
        if (e != EWOULDBLOCK)
            return molt__err(ctx, MOLT_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
        if (pid > 0)
            return molt__err(ctx, MOLT_ERR_IO,
                             "%s is in use by another molt process (pid %ld); one run writes to "
                             "a directory at a time (HINT: wait for it, or give another -o)",
                             dir, pid);
        return molt__err(ctx, MOLT_ERR_IO, "%s is in use by another molt process (pid unknown)",
                         dir);
    }
    *fd_out = fd;
    return MOLT_OK;
}

molt_status rundir_open(molt_ctx *ctx, const char *dir, const char *kind, bool resume,
                        bool overwrite, rundir *rd) {
    rd->fd = -1;
    char path[4200];
    fio_join(path, sizeof path, dir, LOCKFILE);
    int         fd = -1;
    molt_status st = MOLT_OK;
    // a running writer is the first thing to report; then the rules, before any write
    if (fio_exists(path) && (st = take_lock(ctx, dir, path, false, &fd)) != MOLT_OK)
        return st;
    if ((st = check_dir(ctx, dir, kind, resume, overwrite, false)) != MOLT_OK ||
        (st = fio_mkdir_p(ctx, dir)) != MOLT_OK ||
        (fd < 0 && (st = take_lock(ctx, dir, path, true, &fd)) != MOLT_OK))
        goto fail;
    char me[32];
    int  n = snprintf(me, sizeof me, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, me, (size_t)n, 0) != n) {
        st = molt__err(ctx, MOLT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        goto fail;
    }
    // under the lock no live molt process writes here: clear what a killed one left
    sweep_tmp(dir, 2);
    // again under the lock: another run may have changed it since the check
    if ((st = check_dir(ctx, dir, kind, resume, overwrite, true)) != MOLT_OK)
        goto fail;
    rd->fd = fd;
    return MOLT_OK;
fail:
    if (fd >= 0)
        close(fd);
    return st;
}

void rundir_close(rundir *rd) {
    if (rd->fd >= 0)
        close(rd->fd); // releases the flock
    rd->fd = -1;
}

molt_status rundir_check_input(molt_ctx *ctx, const char *input, const char *out) {
    char in_real[PATH_MAX], out_real[PATH_MAX];
    if (!input || !out || !realpath(input, in_real) || !realpath(out, out_real))
        return MOLT_OK; // a missing input fails at load; a missing out is not the input
    if (!fio_is_dir(in_real)) {
        char *slash = strrchr(in_real, '/');
        if (slash == in_real)
            slash[1] = 0;
        else if (slash)
            *slash = 0;
    }
    if (strcmp(in_real, out_real) != 0)
        return MOLT_OK;
    return molt__err(ctx, MOLT_ERR_ARG,
                     "-o %s is where the input %s lives (%s): writing there would replace it "
                     "(HINT: give another output directory)",
                     out, input, out_real);
}
