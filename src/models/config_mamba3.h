/*
 * config_mamba3.h — the "mamba3_cfg" block of molt_hybrid config.json files
 * (models/config.c calls these; docs/FORMATS.md). One block gives every
 * Mamba-3 layer its config, keys named as state-spaces/mamba's Mamba3
 * arguments: d_state, expand, headdim, ngroups, rope_fraction, A_floor,
 * is_outproj_norm, is_mimo, mimo_rank, chunk_size (and norm_eps).
 */
#ifndef MOLT_CONFIG_MAMBA3_H
#define MOLT_CONFIG_MAMBA3_H

#include "models/model.h"

struct cJSON;

// Reads the block into every layer's layer_m3 when a layer of c is a Mamba-3
// layer (then the block is required); c->d_model must be set.
molt_status mamba3_cfg_from_json(molt_ctx *ctx, const char *what, const struct cJSON *o,
                                 model_cfg *c);
// Adds the block to o when a layer of c is a Mamba-3 layer; MOLT_ERR_UNSUPPORTED
// when those layers' configs differ (one block holds them all).
molt_status mamba3_cfg_to_json(molt_ctx *ctx, struct cJSON *o, const model_cfg *c);

#endif
