/*
 * fuzz_tmpfile.h — for fuzz targets whose parser reads a path, not a buffer:
 * a private temporary directory (made once, removed at exit) and a helper
 * that writes the input into a file there. Aborts if the disk refuses.
 */
#ifndef MOLT_FUZZ_TMPFILE_H
#define MOLT_FUZZ_TMPFILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[64];

static void fz_cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (fz_dir[0] && system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fz_dir);
}

// The directory (made on the first call).
static const char *fz_tmpdir(void) {
    if (!fz_dir[0]) {
        snprintf(fz_dir, sizeof fz_dir, "/dev/shm/molt-fuzz-XXXXXX");
        if (!mkdtemp(fz_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir;
}

// Writes n bytes to fz_tmpdir()/name; path receives the full name.
static void fz_write(const char *name, const void *data, size_t n, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", fz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
