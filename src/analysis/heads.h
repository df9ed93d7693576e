/*
 * heads.h — internals of the head analysis (heads.c: molt_heads_rank,
 * molt_layers_ablate, molt_heads_rows), which scores the key-value probe's
 * prompt sets (analysis/kv_probe.h) under ablations.
 */
#ifndef MOLT_HEADS_H
#define MOLT_HEADS_H

#include "core/core.h"
#include "analysis/kv_probe.h"
#include "models/model.h"

#endif
