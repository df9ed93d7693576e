/*
 * layout.h — the checkpoint layouts a model directory may be in, beside what
 * config.json's model_type names (config.c):
 *
 *   llamba     cartesia-pytorch's LlambaLMHeadModel (ALGORITHMS.md §2.4, §5.2): model_type
 *              "llamba" (or none: recognised by mlp_cfg / ssm_cfg.n_v_heads), tensors
 *              backbone.{embedding, layers.i.{input_layernorm, mixer.*, post_attention_layernorm,
 *              mlp.*}, final_layernorm}, lm_head only untied; with ssm_cfg.bias the mixer has
 *              in_proj.bias / out_proj.bias and no z_bias (a constant 0). Its blocks' norms use
 *              eps 1e-5 whatever norm_epsilon says (that is the final norm's).
 *   mamba_ssm  state-spaces/mamba's native MambaLMHeadModel (§5.3): config.json = MambaConfig
 *              (d_model, d_intermediate, n_layer, vocab_size, ssm_cfg{"layer": "Mamba2", ...},
 *              attn_layer_idx, attn_cfg, rms_norm, residual_in_fp32, fused_add_norm,
 *              pad_vocab_size_multiple, tie_embeddings; no model_type, nothing else: the
 *              dataclass refuses unknown keys), tensors as HF Mamba-2 but
 *              backbone.embedding.weight, and lm_head.weight even when tied (state_dict has
 *              both). Held in molt as ARCH_MAMBA2 with src_format "mamba_ssm".
 *              ssm_cfg{"layer": "Mamba3", ...} (§8.1, the Mamba3 module's arguments): held as
 *              ARCH_HYBRID of LAYER_MAMBA3 layers with src_format "mamba_ssm"; block tensors
 *              norm ⇄ input_layernorm, mixer.* as molt's, and with d_intermediate > 0 norm2 ⇄
 *              post_attention_layernorm, mlp.fc2 ⇄ down_proj, mlp.fc1 = [up_proj; gate_proj]
 *              (GatedMLP: y, gate = fc1(x).chunk(2); y·silu(gate)); norm_f ⇄ final_layernorm.
 *              d_intermediate is rounded up to a multiple of 128 (GatedMLP's multiple_of).
 *              Mamba2 layers with d_intermediate > 0: ARCH_HYBRID of Mamba-2 SSM layers, the
 *              same block names.
 *   molt       molt's own molt_hybrid schema (docs/FORMATS.md), for Llamba / hybrid students.
 *   hf         HF transformers' llama / mamba2.
 *
 * A model is saved in the layout it was loaded from unless another is asked for
 * (molt_model_save_as, `molt convert --format`).
 */
#ifndef MOLT_LAYOUT_H
#define MOLT_LAYOUT_H

#include "models/model.h"

typedef enum model_layout {
    LAYOUT_AS_LOADED = 0,
    LAYOUT_HF,
    LAYOUT_LLAMBA,
    LAYOUT_MOLT,
    LAYOUT_MAMBA_SSM,
} model_layout;

// "" / "auto" / "hf" / "llamba" / "molt" / "mamba_ssm"
bool layout_parse(const char *s, model_layout *out);

// config.json text → cfg, for a config with a model_type (model_cfg_from_json) or
// without one (a state-spaces MambaConfig, or a cartesia Llamba config).
molt_status layout_cfg_from_json(molt_ctx *ctx, const char *what, const char *json, size_t len,
                                 model_cfg *cfg);

// *out = the config m is written with in layout L (a shallow copy of m->cfg: it
// owns nothing, never model_free_cfg it), or an error naming what L cannot hold.
molt_status layout_target_cfg(molt_ctx *ctx, const molt_model *m, model_layout L,
                              model_cfg *out);

// The tensor name in the file of molt's parameter name (buf: MODEL_NAME_MAX), and back (a
// tensor holding several parameters, layout_row_block, maps back to the first one's).
const char *layout_file_name(const model_cfg *c, const char *name, char *buf);
const char *layout_molt_name(const model_cfg *c, const char *file_name, char *buf);
// A parameter held in the file as a block of rows of a larger tensor (mamba_ssm's GatedMLP:
// mlp.fc1.weight [2F, d] = [up_proj; gate_proj]): true, its first row there and the file
// tensor's row count (the columns: the parameter's); false: the whole tensor is the parameter.
bool layout_row_block(const model_cfg *c, const char *name, int64_t *row0, int64_t *rows);
// Loading: a parameter the layout may leave out (it then stays 0).
bool layout_may_omit(const model_cfg *c, const char *name);
// Saving: a parameter of m the layout does not write (llamba with bias: z_bias, all 0).
bool layout_skips(const model_cfg *c, const molt_model *m, const param_info *p);
// Saving: lm_head.weight is written beside a tied embedding (mamba_ssm's state_dict).
bool layout_writes_tied_head(const model_cfg *c);
// config.json text for c (mamba_ssm: a MambaConfig; else model_cfg_to_json).
molt_status layout_cfg_to_json(molt_ctx *ctx, const model_cfg *c, const char *torch_dtype,
                               char **json);

#endif
