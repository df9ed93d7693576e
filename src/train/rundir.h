/*
 * rundir.h — the output directory of a run (`molt train`, `molt distill`):
 * what molt may write and remove there, and one writer at a time.
 *
 *   DIR/.molt-files  the manifest: "molt-run KIND" then one name a line, every
 *                    entry of DIR that molt created (checkpoints, latest,
 *                    log.jsonl, stage directories). A name is recorded before
 *                    the entry is created, so a crash leaves nothing unlisted.
 *   DIR/.molt-lock   flock'ed for the whole run; holds the writer's pid. The
 *                    kernel drops the lock when the process dies (kill -9), so
 *                    a stale file never blocks.
 * molt removes only entries its manifest lists (a listed checkpoint directory
 * is molt's as a whole); the user's files are never removed.
 *
 * rundir_open's rules (checked before anything is written):
 *   new or empty DIR                       accepted
 *   DIR holding a molt run of this kind    --resume continues it; --overwrite
 *                                          removes its listed entries first;
 *                                          neither: refused
 *   DIR holding anything else              refused; --overwrite writes beside
 *                                          the user's files (removing only a
 *                                          listed molt run's entries)
 */
#ifndef MOLT_RUNDIR_H
#define MOLT_RUNDIR_H

#include "core/core.h"

typedef struct rundir {
    int fd; // the held lock (-1: none)
} rundir;

molt_status rundir_open(molt_ctx *ctx, const char *dir, const char *kind, bool resume,
                        bool overwrite, rundir *rd);
// Releases the lock (the lock file stays: removing it would race a waiting run).
void        rundir_close(rundir *rd);

// MOLT_ERR_ARG when output dir out is (by real path) input itself or, for an
// input file, the directory holding it: writing there would replace the input.
molt_status rundir_check_input(molt_ctx *ctx, const char *input, const char *out);

// The manifest of dir (a run's or a stage's): name is listed (kind: written
// into a new manifest's header).
molt_status manifest_add(molt_ctx *ctx, const char *dir, const char *kind, const char *name);
// Removes every listed "ckpt-*" entry of dir but the keep newest (by name).
molt_status manifest_prune_ckpts(molt_ctx *ctx, const char *dir, int keep);

#endif
