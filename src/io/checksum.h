/*
 * checksum.h — 64-bit FNV-1a, over memory and over a whole file: the checksum
 * a checkpoint's state.json records for each of its files and verifies on
 * resume (any flipped bit changes it; not a cryptographic hash).
 *
 *     fnv1a64(FNV1A64_INIT, "", 0)  == 0xcbf29ce484222325
 *     fnv1a64(FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8c
 * Chunked calls compose: fnv1a64(fnv1a64(h, p, k), p + k, n - k) == fnv1a64(h, p, n).
 */
#ifndef MOLT_CHECKSUM_H
#define MOLT_CHECKSUM_H

#include "core/core.h"

#define FNV1A64_INIT 0xcbf29ce484222325ull

uint64_t    fnv1a64(uint64_t h, const void *data, size_t n);
// The checksum of path's whole contents. MOLT_ERR_IO naming the path when it
// cannot be opened or read.
molt_status fio_checksum_file(molt_ctx *ctx, const char *path, uint64_t *out);

#endif
