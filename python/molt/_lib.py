"""_lib.py — finds and loads libmolt.so, and declares its C API (include/molt.h) to ctypes.

Where the library comes from, first found wins:
  1. $MOLT_LIB: the library file itself, or a directory that holds libmolt.so;
  2. beside this package (pip copies the repository's build/libmolt.so into it);
  3. the repository's build directory, when this package is imported from python/ of a checkout;
  4. the system's loader path (`make install` into a prefix the loader searches: libmolt.so.0).

The structures mirror molt.h field for field; python/tests checks their sizes and offsets against
a C compiler's.
"""
import ctypes
import ctypes.util
import os
import threading

SONAME = "libmolt.so.0"

c_int32, c_int64, c_uint64 = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
c_int, c_float, c_double = ctypes.c_int, ctypes.c_float, ctypes.c_double
c_char_p, c_void_p, c_size_t = ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t
P = ctypes.POINTER


class ModelInfo(ctypes.Structure):
    c_name = "molt_model_info"
    _fields_ = [("arch", ctypes.c_char * 32),
                ("n_layer", c_int32), ("d_model", c_int32), ("vocab", c_int32), ("d_ff", c_int32),
                ("n_head", c_int32), ("n_kv_head", c_int32), ("head_dim", c_int32),
                ("d_state", c_int32), ("ssm_heads", c_int32), ("n_attn_heads_kept", c_int32),
                ("max_seq", c_int32),
                ("n_params", c_int64), ("weight_bytes", c_int64),
                ("kv_bytes_per_token", c_int64), ("state_bytes", c_int64)]


class LoadOpts(ctypes.Structure):
    c_name = "molt_load_opts"
    _fields_ = [("tokenizer_path", c_char_p), ("no_tokenizer", c_int)]


class GenParams(ctypes.Structure):
    c_name = "molt_gen_params"
    _fields_ = [("max_new_tokens", c_int32), ("temperature", c_float), ("top_k", c_int32),
                ("top_p", c_float), ("seed", c_uint64), ("stop_at_eos", c_int)]


class GenStats(ctypes.Structure):
    c_name = "molt_gen_stats"
    _fields_ = [("n_prompt", c_int32), ("n_generated", c_int32),
                ("prefill_s", c_double), ("decode_s", c_double)]


class EvalResult(ctypes.Structure):
    c_name = "molt_eval_result"
    _fields_ = [("loss", c_double), ("ppl", c_double), ("tokens", c_int64),
                ("seconds", c_double)]


class DistillOpts(ctypes.Structure):
    c_name = "molt_distill_opts"
    _fields_ = [("out_dir", c_char_p), ("d_state", c_int32), ("n_heads", c_int32),
                ("keep_layer", P(c_int32)), ("keep_head", P(c_int32)), ("n_keep", c_int32),
                ("freeze_kept", c_int), ("init", c_char_p), ("student", c_char_p),
                ("mimo_rank", c_int32), ("ssm_bias", c_int),
                ("data", P(c_char_p)), ("n_data", c_int32), ("sep", c_char_p),
                ("sample_tokens", c_int64), ("eval_data", c_char_p), ("kv_task", c_char_p),
                ("kv_pairs", c_int32), ("kv_examples", c_int32), ("kv_data_frac", c_double),
                ("seq_len", c_int32), ("batch", c_int32),
                ("stage_tokens", c_int64 * 3), ("stage_lr", c_double * 3),
                ("warmup_frac", c_double), ("decay_frac", c_double), ("tau", c_double),
                ("freeze_mlp", c_int), ("seed", c_uint64), ("resume", c_int),
                ("overwrite", c_int), ("input", c_char_p), ("kd_loss", c_char_p),
                ("recompute", c_int), ("save_every", c_int32)]


class DistillReport(ctypes.Structure):
    c_name = "molt_distill_report"
    _fields_ = [("stage", c_int), ("step", c_int64), ("total_steps", c_int64),
                ("tokens", c_int64), ("loss", c_double), ("elapsed_s", c_double),
                ("tok_per_s", c_double), ("device_gb", c_double)]


class HeadsPlanOpts(ctypes.Structure):
    c_name = "molt_heads_plan_opts"
    _fields_ = [("heads", c_char_p), ("ranking", c_char_p), ("keep", c_int32),
                ("keep_frac", c_double), ("random_heads", c_int32), ("seed", c_uint64)]


class HeadScore(ctypes.Structure):
    c_name = "molt_head_score"
    _fields_ = [("layer", c_int32), ("head", c_int32),
                ("accuracy", c_double), ("accuracy_drop", c_double),
                ("drop_min", c_double), ("drop_max", c_double),
                ("entropy", c_double), ("top_weight", c_double), ("mass_key", c_double),
                ("mass_value", c_double), ("mass_newline", c_double), ("recurrent", c_int32)]


STRUCTS = [ModelInfo, LoadOpts, GenParams, GenStats, EvalResult, DistillOpts, DistillReport,
           HeadsPlanOpts, HeadScore]

# callbacks: the text pointer is taken as a plain address (pieces are bytes with a length,
# not NUL-terminated strings)
TEXT_FN = ctypes.CFUNCTYPE(None, c_void_p, c_size_t, c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(None, c_int64, c_int64, c_void_p)
DISTILL_FN = ctypes.CFUNCTYPE(None, P(DistillReport), c_void_p)

# name: (restype, argtypes); every molt_status is returned as a plain int
_PROTOS = {
    "molt_status_str": (c_char_p, [c_int]),
    "molt_ctx_new": (c_void_p, []),
    "molt_ctx_free": (None, [c_void_p]),
    "molt_last_error": (c_char_p, [c_void_p]),
    "molt_last_status": (c_int, [c_void_p]),
    "molt_ctx_set_threads": (None, [c_void_p, c_int]),
    "molt_ctx_threads": (c_int, [c_void_p]),
    "molt_ctx_set_device": (c_int, [c_void_p, c_char_p]),
    "molt_ctx_device": (c_char_p, [c_void_p]),
    "molt_ctx_set_matmul": (c_int, [c_void_p, c_char_p]),
    "molt_tokenize": (c_int, [c_void_p, c_void_p, c_char_p, c_size_t, c_int,
                              P(P(c_int32)), P(c_size_t)]),
    "molt_detokenize": (c_int, [c_void_p, c_void_p, P(c_int32), c_size_t,
                                P(c_void_p), P(c_size_t)]),
    "molt_tokenizer_vocab": (c_int32, [c_void_p]),
    "molt_tokenizer_bos": (c_int32, [c_void_p]),
    "molt_tokenizer_eos": (c_int32, [c_void_p]),
    "molt_free": (None, [c_void_p]),
    "molt_model_load": (c_int, [c_void_p, c_char_p, P(LoadOpts), P(c_void_p)]),
    "molt_model_free": (None, [c_void_p]),
    "molt_model_save": (c_int, [c_void_p, c_void_p, c_char_p, c_char_p]),
    "molt_model_tokenizer": (c_void_p, [c_void_p]),
    "molt_model_set_weight_dtype": (c_int, [c_void_p, c_void_p, c_char_p]),
    "molt_model_get_info": (None, [c_void_p, P(ModelInfo)]),
    "molt_seq_new": (c_int, [c_void_p, c_void_p, c_int32, P(c_void_p)]),
    "molt_seq_free": (None, [c_void_p]),
    "molt_seq_feed": (c_int, [c_void_p, c_void_p, P(c_int32), c_int32, c_int, P(c_float)]),
    "molt_gen_defaults": (GenParams, []),
    "molt_generate": (c_int, [c_void_p, c_void_p, c_char_p, P(GenParams), TEXT_FN, c_void_p,
                              P(GenStats)]),
    "molt_eval_tokens": (c_int, [c_void_p, c_void_p, P(c_int32), c_size_t, c_int32,
                                 PROGRESS_FN, c_void_p, P(EvalResult)]),
    "molt_distill_defaults": (DistillOpts, []),
    "molt_distill": (c_int, [c_void_p, c_void_p, P(DistillOpts), DISTILL_FN, c_void_p]),
    "molt_heads_plan_defaults": (HeadsPlanOpts, []),
    "molt_heads_plan": (c_int, [c_void_p, c_void_p, P(HeadsPlanOpts), P(P(c_int32)),
                                P(P(c_int32)), P(c_int32)]),
    "molt_heads_rank": (c_int, [c_void_p, c_void_p, c_char_p, c_int32, c_int32, P(c_uint64),
                                c_int32, PROGRESS_FN, c_void_p, P(P(HeadScore)), P(c_int32)]),
}

_lock = threading.Lock()
_lib = None
_path = None


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def candidates():
    """The paths tried, in order (see the module's docstring)."""
    out = []
    env = os.environ.get("MOLT_LIB")
    if env:
        out.append(os.path.join(env, "libmolt.so") if os.path.isdir(env) else env)
    out.append(os.path.join(_package_dir(), "libmolt.so"))
    repo = os.path.dirname(os.path.dirname(_package_dir()))
    out.append(os.path.join(repo, "build", "libmolt.so"))
    return out


def load():
    """The loaded library (loaded once per process)."""
    global _lib, _path
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        lib = None
        env = os.environ.get("MOLT_LIB")
        for i, c in enumerate(candidates()):
            if not os.path.exists(c):
                tried.append(c + " (absent)")
                if i == 0 and env:  # an explicit MOLT_LIB that is wrong is an error, not a hint
                    break
                continue
            lib = ctypes.CDLL(c)
            _path = os.path.realpath(c)
            break
        if lib is None and not (env and tried):
            name = ctypes.util.find_library("molt") or SONAME
            try:
                lib = ctypes.CDLL(name)
                _path = name
            except OSError:
                tried.append(name + " (not on the loader path)")
        if lib is None:
            raise OSError("libmolt.so not found; tried: " + "; ".join(tried) +
                          ". Build it (make), install it (make install), or set MOLT_LIB")
        for name, (res, args) in _PROTOS.items():
            f = getattr(lib, name)
            f.restype = res
            f.argtypes = args
        _lib = lib
        return _lib


def path():
    """The file of the loaded library (None before the first load)."""
    return _path
