/*
 * jsonout.h — the CLI's machine-readable output, written through cJSON so that
 * every string (paths, names) is escaped and the result is valid JSON.
 * Numbers: jo_num rounds a value to the precision of a printf format (so
 * "%.4f" keeps the short form the tools printed before) and writes a
 * non-finite value as null; jo_int writes a whole number exactly (|v| < 2^53).
 * A tree is made, printed and deleted in one place, with no molt call in
 * between (cJSON's allocator hooks may be set by the library).
 */
#ifndef MOLT_JSONOUT_H
#define MOLT_JSONOUT_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>

void jo_num(cJSON *obj, const char *key, const char *fmt, double v);
void jo_int(cJSON *obj, const char *key, long long v);
void jo_str(cJSON *obj, const char *key, const char *s); // NULL → null
// A number item, for arrays (same rules as jo_num).
cJSON *jo_num_item(const char *fmt, double v);
// Prints the tree (one line unless pretty) and a newline to f, then deletes it.
// false when cJSON ran out of memory (nothing printed).
bool jo_print(FILE *f, cJSON *root, bool pretty);

struct molt_train_report;
// `molt train`'s last stdout line: {"steps", "tokens", "loss", "eval_loss" (null when not
// evaluated), "tok_per_s", "seconds", "out"}. false when out of memory.
bool jo_train_summary(const struct molt_train_report *r, const char *out_dir);

#endif
