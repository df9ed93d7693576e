/*
 * quant.h — q8_0 model files (quant.c; docs/FORMATS.md): the tensors
 * molt_model_save writes for "q8_0" and the loader's part for I8 tensors.
 */
#ifndef MOLT_QUANT_H
#define MOLT_QUANT_H

#include "io/safetensors.h"
#include "models/model.h"

// The tensors of a q8_0 save, in parameter order: ts[0..n) (the buffers they
// point at are owned here). Free with model_q8_save_free (also on error).
typedef struct q8_save {
    st_wtensor *ts;
    int         n;
    void      **own;
    int         n_own;
    char (*names)[MODEL_NAME_MAX + 8];
} q8_save;
molt_status model_q8_save_tensors(molt_ctx *ctx, const molt_model *m, q8_save *s);
void        model_q8_save_free(q8_save *s);
// config.json text json with "quantization_config" added (*out: free with molt__free)
molt_status model_q8_config(molt_ctx *ctx, const char *json, char **out);
// name is NAME_scale of a parameter NAME (not an unused tensor)
bool        model_q8_is_scale(const molt_model *m, const char *name);
// After the F32/F16/BF16 tensors are read: the I8 ones (none: nothing to do)
// become the q8_0 copy and, dequantized, the f32 parameters.
molt_status model_q8_load(molt_ctx *ctx, molt_model *m, const st_file *f, const char *dir);

#endif
