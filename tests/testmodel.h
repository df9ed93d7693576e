/*
 * testmodel.h — model-level helpers shared by the model tests: running a
 * model over a sequence, and checking it against HF reference logits stored as
 * reference_logits.safetensors (ids_i int32 BOS-first, logits_i [len, V]).
 */
#ifndef MOLT_TESTMODEL_H
#define MOLT_TESTMODEL_H

#include "molt.h"

#include <stdbool.h>
#include <stdint.h>

// Logits [n, V] for ids[n] from an empty state: one prefill, or token by token.
// malloc'd; NULL on failure.
float *tm_logits(molt_ctx *ctx, const molt_model *m, const int32_t *ids, int n, bool stepwise);
// Compares every reference prompt (prefill and stepwise) at max-abs tol.
// Returns the number of prompts checked (0 when the reference is unreadable).
int tm_check_reference(molt_ctx *ctx, const molt_model *m, const char *ref_path, double tol,
                       const char *label);
// A random model of a config.json text (model_init_random(seed), then every
// parameter += N(0, noise²) so gates, conv and decays are off their identity
// init). Failures are CHECKed and give NULL.
molt_model *tm_random_model(molt_ctx *ctx, const char *json, uint64_t seed, float noise);
// One small random config.json per architecture, {name, json}: llama; llama_odd (odd sizes,
// biases, tied embeddings: gate / up not adjacent in the f32 buffer); llamba; mamba2; a
// hybrid of attention | hybrid | ssm layers. Shared by the typed-weight and device tests.
#define TM_N_ARCH_CFGS 5
extern const char *const tm_arch_cfgs[TM_N_ARCH_CFGS][2];
// stories260K (models/stories260K/stories260K.bin with its tok512.bin tokenizer, t_shared's
// copies): NULL when either file is missing (t_have notes it under `what`) or the load fails
// (CHECKed).
molt_model *tm_load_stories(molt_ctx *ctx, const char *what);
// rm -rf of a temp directory made by mkdtemp
void tm_rmdir(const char *dir);

// CHECKs that a and b have the same parameter table (names, sizes, order) and bytes
void tm_same_params(const char *what, const molt_model *a, const molt_model *b);

#endif
