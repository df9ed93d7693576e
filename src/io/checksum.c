/*
 * checksum.c — 64-bit FNV-1a (see checksum.h).
 */
#include "io/checksum.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

uint64_t fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

molt_status fio_checksum_file(molt_ctx *ctx, const char *path, uint64_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return molt__err(ctx, MOLT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    uint64_t      h = FNV1A64_INIT;
    size_t        k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        h = fnv1a64(h, buf, k);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return molt__err(ctx, MOLT_ERR_IO, "%s: read error", path);
    *out = h;
    return MOLT_OK;
}
