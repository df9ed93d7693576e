"""molt — Python binding of libmolt (ctypes; numpy for logits).

    import molt
    m = molt.Model.load("models/stories260K/stories260K.bin", threads=2)
    print(m.generate(max_tokens=200, temperature=0))      # molt generate -t 0 -n 200
    for piece in m.stream("Once upon a time", max_tokens=50, temperature=0.8, seed=3):
        print(piece, end="", flush=True)
    m.eval(open("valid.txt", "rb").read())                # mean next-token loss (nats)
    m.logits(m.tokenize("The cat"))                       # numpy float32 [T, vocab]
    molt.distill("teacher_dir", "student_dir", tokens=2_000_000)
    molt.heads("teacher_dir", examples=50)

Every failure of the library raises MoltError with molt's own message (molt_last_error) and its
status. A Model is used by one call at a time (calls from several threads wait on its lock).
The library is found as python/molt/_lib.py describes ($MOLT_LIB, beside this package, the
repository's build/, the system's loader path).
"""
import codecs
import ctypes
import json
import operator
import os
import queue
import secrets
import threading

from . import _lib
from ._lib import P, c_int32, c_uint64

__version__ = "0.1.0"
__all__ = ["Model", "MoltError", "load", "distill", "heads", "info", "library_path",
           "__version__"]

_STATUS_NAMES = {0: "MOLT_OK", -1: "MOLT_ERR_IO", -2: "MOLT_ERR_FORMAT",
                 -3: "MOLT_ERR_UNSUPPORTED", -4: "MOLT_ERR_OOM", -5: "MOLT_ERR_SHAPE",
                 -6: "MOLT_ERR_ARG", -7: "MOLT_ERR_NUMERIC", -8: "MOLT_ERR_MISSING",
                 -9: "MOLT_ERR_INTERNAL"}


class MoltError(Exception):
    """A libmolt call failed. str(e) and e.message: molt's explanation (molt_last_error);
    e.status: the molt_status code (negative int); e.status_name: e.g. "MOLT_ERR_IO"."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)
        self.status_name = _STATUS_NAMES.get(self.status, str(self.status))
        self.message = message

    def __repr__(self):
        return f"MoltError({self.status_name}, {self.message!r})"


def library_path():
    """The libmolt.so this process uses (loading it if needed)."""
    _lib.load()
    return _lib.path()


def info():
    """The package's version and the library it uses."""
    return {"version": __version__, "library": library_path()}


def _b(s):
    if s is None:
        return None
    b = os.fsencode(s) if isinstance(s, os.PathLike) else \
        s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise ValueError("a string passed to molt holds a NUL character")
    return b


class _Ctx:
    """A molt_ctx: error text, threads, device."""

    def __init__(self, threads=None, device=None, matmul=None):
        self.lib = _lib.load()
        self.h = self.lib.molt_ctx_new()
        if not self.h:
            raise MemoryError("molt_ctx_new")
        self.lib.molt_ctx_set_threads(self.h, int(threads or os.cpu_count() or 1))
        if device is not None:
            self.check(self.lib.molt_ctx_set_device(self.h, _b(device)))
        if matmul is not None:
            self.check(self.lib.molt_ctx_set_matmul(self.h, _b(matmul)))

    def check(self, status):
        if status != 0:
            msg = self.lib.molt_last_error(self.h) or b""
            raise MoltError(status, msg.decode("utf-8", "replace"))

    def close(self):
        if self.h:
            self.lib.molt_ctx_free(self.h)
            self.h = None

    def __del__(self):
        self.close()


class _Calls:
    """Python callbacks run by C: an exception inside one cannot cross the C frames, so the first
    is kept and raised when the C call returns."""

    def __init__(self):
        self.exc = None

    def wrap(self, fn):
        def call(*a):
            if self.exc is None:
                try:
                    fn(*a)
                except BaseException as e:  # noqa: B902 (re-raised after the C call)
                    self.exc = e
        return call

    def reraise(self):
        if self.exc is not None:
            raise self.exc


def _ids_array(ids):
    """(pointer, n, owner) of token ids as int32; ids: a sequence of ints or a 1-D integer numpy
    array. Values that int32 cannot hold raise ValueError (C would wrap them)."""
    if type(ids).__module__ == "numpy" and type(ids).__name__ == "ndarray":
        import numpy as np
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"token ids: a 1-D integer array, not {ids.dtype} {ids.shape}")
        if ids.size and (int(ids.min()) < -2**31 or int(ids.max()) >= 2**31):
            raise ValueError("token ids outside int32")
        a = np.ascontiguousarray(ids, dtype=np.int32)
        return a.ctypes.data_as(P(c_int32)), len(a), a
    lst = [operator.index(i) for i in ids]
    if any(not -2**31 <= i < 2**31 for i in lst):
        raise ValueError("token ids outside int32")
    a = (c_int32 * max(len(lst), 1))(*lst)
    return a, len(lst), a


class Model:
    """A loaded model with its own molt context (threads, device, last error)."""

    def __init__(self, *_a, **_k):
        raise TypeError("use molt.Model.load(path, ...)")

    @classmethod
    def load(cls, path, device=None, threads=None, tokenizer=None, weights=None, matmul=None):
        """Loads an HF-style directory or a llama2.c .bin (molt_model_load).
        device: "cpu" (default), "cuda", "cuda:N"; threads: CPU threads (default: all cores);
        tokenizer: a tokenizer file for models that lack one; weights: "f32", "bf16", "f16" or
        "q8_0", the type of the matrices decoding reads (molt generate --weights);
        matmul: "fp32" or "tf32" on a GPU."""
        self = object.__new__(cls)
        self._ctx = _Ctx(threads, device, matmul)
        self._lib = self._ctx.lib
        self._lock = threading.RLock()
        self._h = None
        self.path = os.fspath(path)
        opts = _lib.LoadOpts(_b(tokenizer), 0)
        h = ctypes.c_void_p()
        self._ctx.check(self._lib.molt_model_load(self._ctx.h, _b(path), ctypes.byref(opts),
                                                  ctypes.byref(h)))
        self._h = h
        if weights is not None:
            self._ctx.check(self._lib.molt_model_set_weight_dtype(self._ctx.h, h, _b(weights)))
        return self

    # -- lifetime
    def close(self):
        """Frees the model now (also done when it is garbage-collected)."""
        with self._lock:
            if self._h:
                self._lib.molt_model_free(self._h)
                self._h = None
            self._ctx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_lock", None) is not None:
            self.close()

    def _model(self):
        if not self._h:
            raise ValueError("the model is closed")
        return self._h

    def _tok(self):
        t = self._lib.molt_model_tokenizer(self._model())
        if not t:
            raise MoltError(-8, f"{self.path}: the model has no tokenizer "
                                "(HINT: load it with tokenizer=FILE)")
        return t

    # -- facts
    def info(self):
        """molt_model_get_info as a dict (arch, sizes, parameter and state bytes), plus the
        context's device and threads."""
        with self._lock:
            i = _lib.ModelInfo()
            self._lib.molt_model_get_info(self._model(), ctypes.byref(i))
            d = {f: getattr(i, f) for f, _ in _lib.ModelInfo._fields_}
            d["arch"] = i.arch.decode()
            d["device"] = self._lib.molt_ctx_device(self._ctx.h).decode()
            d["threads"] = self._lib.molt_ctx_threads(self._ctx.h)
            return d

    @property
    def vocab(self):
        return self._lib.molt_tokenizer_vocab(self._tok())

    @property
    def bos(self):
        """The BOS token id (-1: none)."""
        return self._lib.molt_tokenizer_bos(self._tok())

    @property
    def eos(self):
        return self._lib.molt_tokenizer_eos(self._tok())

    # -- tokens
    def tokenize(self, text, bos=True):
        """Token ids of UTF-8 text (str or bytes); bos: start with BOS when the tokenizer has one."""
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        with self._lock:
            tok = self._tok()
            ids = P(c_int32)()
            n = ctypes.c_size_t()
            add = 1 if bos and self._lib.molt_tokenizer_bos(tok) >= 0 else 0
            self._ctx.check(self._lib.molt_tokenize(self._ctx.h, tok, b, len(b), add,
                                                    ctypes.byref(ids), ctypes.byref(n)))
            try:
                return ids[:n.value]
            finally:
                self._lib.molt_free(ids)

    def detokenize_bytes(self, ids):
        """The bytes of the decoded id sequence (molt_detokenize)."""
        arr, n, _owner = _ids_array(ids)
        with self._lock:
            tok = self._tok()
            out = ctypes.c_void_p()
            ln = ctypes.c_size_t()
            self._ctx.check(self._lib.molt_detokenize(self._ctx.h, tok, arr, n, ctypes.byref(out),
                                                      ctypes.byref(ln)))
            try:
                return ctypes.string_at(out, ln.value)
            finally:
                self._lib.molt_free(out)

    def detokenize(self, ids):
        """The decoded text (invalid UTF-8 replaced by U+FFFD)."""
        return self.detokenize_bytes(ids).decode("utf-8", "replace")

    # -- generation
    def _params(self, max_tokens, temperature, top_p, top_k, seed, stop_at_eos):
        p = self._lib.molt_gen_defaults()
        p.max_new_tokens = int(max_tokens)
        p.temperature = float(temperature)
        p.top_p = float(top_p)
        p.top_k = int(top_k)
        p.seed = secrets.randbits(62) if seed is None else int(seed)
        p.stop_at_eos = 1 if stop_at_eos else 0
        return p

    def _generate(self, prompt, params, on_bytes):
        calls = _Calls()
        cb = _lib.TEXT_FN(calls.wrap(lambda ptr, n, _u: on_bytes(ctypes.string_at(ptr, n))))
        stats = _lib.GenStats()
        with self._lock:
            st = self._lib.molt_generate(self._ctx.h, self._model(), _b(prompt),
                                         ctypes.byref(params), cb, None, ctypes.byref(stats))
            self._ctx.check(st)
        calls.reraise()
        self.last_stats = {f: getattr(stats, f) for f, _ in _lib.GenStats._fields_}

    def generate(self, prompt=None, max_tokens=256, temperature=1.0, top_p=0.9, top_k=0,
                 seed=None, stop_at_eos=True):
        """The text molt_generate streams, as `molt generate` prints it (without its final
        newline): the prompt as the tokenizer spells it back, then the continuation.
        prompt None starts from BOS; temperature 0 is greedy; top_p 1 and top_k 0 are off;
        seed None draws one. Stops at EOS (or a BOS) unless stop_at_eos is False.
        Counts and times of the call: self.last_stats."""
        params = self._params(max_tokens, temperature, top_p, top_k, seed, stop_at_eos)
        parts = []
        self._generate(prompt, params, parts.append)
        return b"".join(parts).decode("utf-8", "replace")

    def stream(self, prompt=None, max_tokens=256, temperature=1.0, top_p=0.9, top_k=0,
               seed=None, stop_at_eos=True):
        """An iterator of the text pieces of generate(...) as they are produced (molt_generate's
        callback, run on a worker thread); the pieces join to generate's text. A piece never
        splits a UTF-8 character. Errors are raised by the iteration. Closing the iterator early
        stops yielding but waits for the C call, which runs to max_tokens or EOS."""
        params = self._params(max_tokens, temperature, top_p, top_k, seed, stop_at_eos)
        q = queue.Queue()
        done = object()
        stop = threading.Event()
        result = {}

        def put(b):
            if not stop.is_set():
                q.put(b)

        def work():
            try:
                self._generate(prompt, params, put)
            except BaseException as e:  # noqa: B902 (raised in the consumer)
                result["exc"] = e
            finally:
                q.put(done)

        def pieces():
            t = threading.Thread(target=work, name="molt-stream", daemon=True)
            t.start()
            dec = codecs.getincrementaldecoder("utf-8")("replace")
            try:
                while True:
                    item = q.get()
                    if item is done:
                        break
                    s = dec.decode(item)
                    if s:
                        yield s
                t.join()
                if "exc" in result:
                    raise result["exc"]
                tail = dec.decode(b"", final=True)
                if tail:
                    yield tail
            finally:
                stop.set()
                t.join()

        return pieces()

    # -- scoring
    def _doc_ids(self, text, sep):
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if sep is None:
            return self.tokenize(b)
        s = sep.encode("utf-8") if isinstance(sep, str) else bytes(sep)
        if not s:
            raise ValueError("sep is empty")
        ids = []
        for doc in b.split(s):
            if doc:
                ids.extend(self.tokenize(doc))
        return ids

    def eval(self, data, window=0, sep=None, progress=None):
        """Mean next-token cross-entropy (nats) of `data`: text (str or bytes; one document
        [BOS] + tokens, or split at sep into documents that each start with BOS, as `molt eval
        --text FILE [--sep STR]`) or a sequence of token ids, in windows of `window` inputs that
        each start from an empty state (0: the model's context, at most 1024). progress:
        called with (done, total) tokens. Details of the call: self.last_eval."""
        if isinstance(data, (str, bytes, bytearray, memoryview)):
            ids = self._doc_ids(data, sep)
        else:
            ids = data
        arr, n, _owner = _ids_array(ids)
        calls = _Calls()
        cb = _lib.PROGRESS_FN(calls.wrap(lambda d, t, _u: progress(d, t))) if progress \
            else _lib.PROGRESS_FN()
        r = _lib.EvalResult()
        with self._lock:
            self._ctx.check(self._lib.molt_eval_tokens(self._ctx.h, self._model(), arr, n,
                                                       int(window), cb, None, ctypes.byref(r)))
        calls.reraise()
        self.last_eval = {f: getattr(r, f) for f, _ in _lib.EvalResult._fields_}
        return r.loss

    def logits(self, ids):
        """numpy float32 array [len(ids), vocab]: the logits at every position of one forward
        pass over ids from an empty state (give BOS first when the model expects it)."""
        import numpy as np
        arr, n, _owner = _ids_array(ids)
        if n == 0:
            raise ValueError("logits of an empty sequence")
        with self._lock:
            i = _lib.ModelInfo()
            self._lib.molt_model_get_info(self._model(), ctypes.byref(i))
            out = np.empty((n, i.vocab), dtype=np.float32)
            seq = ctypes.c_void_p()
            self._ctx.check(self._lib.molt_seq_new(self._ctx.h, self._h, n, ctypes.byref(seq)))
            try:
                self._ctx.check(self._lib.molt_seq_feed(
                    self._ctx.h, seq, arr, n, 1, out.ctypes.data_as(P(ctypes.c_float))))
            finally:
                self._lib.molt_seq_free(seq)
        return out

    # -- analysis and distillation
    def heads(self, kv_task=None, pairs=8, examples=200, seeds=(1,), progress=None):
        """Ranks every head by the key-value probe's accuracy drop when it is ablated
        (molt_heads_rank, `molt heads`): a list of dicts, most important first, with layer,
        head, accuracy, accuracy_drop, drop_min, drop_max, entropy, top_weight, mass_key,
        mass_value, mass_newline, recurrent (bool). kv_task: the task file (default: the one
        installed with the package, or the repository's data/kv_task.json)."""
        task = _b(kv_task if kv_task is not None else _default_kv_task())
        sd = (c_uint64 * len(seeds))(*[int(s) for s in seeds])
        calls = _Calls()
        cb = _lib.PROGRESS_FN(calls.wrap(lambda d, t, _u: progress(d, t))) if progress \
            else _lib.PROGRESS_FN()
        sc = P(_lib.HeadScore)()
        n = c_int32()
        with self._lock:
            self._ctx.check(self._lib.molt_heads_rank(self._ctx.h, self._model(), task,
                                                      int(pairs), int(examples), sd, len(seeds),
                                                      cb, None, ctypes.byref(sc),
                                                      ctypes.byref(n)))
        try:
            calls.reraise()
            out = []
            for k in range(n.value):
                d = {f: getattr(sc[k], f) for f, _ in _lib.HeadScore._fields_}
                d["recurrent"] = bool(d["recurrent"])
                out.append(d)
            return out
        finally:
            self._lib.molt_free(sc)

    def distill(self, out_dir, progress=None, tokens=None, stage3_only=False, keep=None,
                **opts):
        """MOHAWK distillation of this (Llama) teacher into a new student in out_dir
        (molt_distill, `molt distill`); returns out_dir/report.json as a dict.
        tokens: one total budget split 10% / 20% / 70% over the stages (as --tokens);
        stage3_only: the whole budget in stage 3; keep: [(layer, head), ...] teacher heads kept
        as attention (a hybrid; see heads_plan); progress: called with a dict per step (stage,
        step, total_steps, tokens, loss, elapsed_s, tok_per_s, device_gb; stage 0 while sampling
        text).
        Other keywords are molt_distill_opts fields: d_state, n_heads, init, student,
        mimo_rank, ssm_bias, data (list of files), sep, sample_tokens, eval_data, kv_task,
        kv_pairs, kv_examples, kv_data_frac, seq_len, batch, stage_tokens (3), stage_lr (3),
        warmup_frac, decay_frac, tau, freeze_mlp, freeze_kept, seed, resume, overwrite, kd_loss
        ("fkl" or "rkl"), recompute, save_every."""
        o = self._lib.molt_distill_defaults()
        keepalive = []
        o.out_dir = _b(out_dir)
        o.input = _b(self.path)
        types = {f: t for f, t in _lib.DistillOpts._fields_ if f not in (
            "out_dir", "keep_layer", "keep_head", "n_keep", "n_data", "input")}
        for k, v in opts.items():
            if k not in types:
                raise TypeError(f"distill() got an unknown option {k!r}")
            if k == "data":
                files = [_b(f) for f in ([v] if isinstance(v, (str, os.PathLike)) else v)]
                arr = (ctypes.c_char_p * len(files))(*files)
                keepalive.append(arr)
                o.data, o.n_data = ctypes.cast(arr, P(ctypes.c_char_p)), len(files)
            elif k in ("stage_tokens", "stage_lr"):
                if len(v) != 3:
                    raise ValueError(f"{k} takes 3 values, one per stage")
                getattr(o, k)[:] = list(v)
            elif types[k] is ctypes.c_char_p:
                setattr(o, k, _b(v))
            else:
                setattr(o, k, v)
        if tokens is not None:
            t = int(tokens)
            o.stage_tokens[0], o.stage_tokens[1] = t // 10, t // 5
            o.stage_tokens[2] = t - t // 10 - t // 5
        if stage3_only:
            o.stage_tokens[2] += o.stage_tokens[0] + o.stage_tokens[1]
            o.stage_tokens[0] = o.stage_tokens[1] = 0
        if keep:
            kl = (c_int32 * len(keep))(*[int(a) for a, _ in keep])
            kh = (c_int32 * len(keep))(*[int(b) for _, b in keep])
            keepalive += [kl, kh]
            o.keep_layer, o.keep_head, o.n_keep = kl, kh, len(keep)
        calls = _Calls()

        def on_step(r, _u):
            if progress:
                progress({f: getattr(r.contents, f) for f, _ in _lib.DistillReport._fields_})
        cb = _lib.DISTILL_FN(calls.wrap(on_step))
        with self._lock:
            self._ctx.check(self._lib.molt_distill(self._ctx.h, self._model(), ctypes.byref(o),
                                                   cb, None))
        calls.reraise()
        with open(os.path.join(os.fspath(out_dir), "report.json"), encoding="utf-8") as f:
            return json.load(f)

    def heads_plan(self, heads=None, ranking=None, keep=None, keep_frac=None, random_heads=None,
                   seed=0):
        """The kept heads of a hybrid plan (molt_heads_plan), as [(layer, head), ...]: exactly
        one of heads="L:H,...", keep=K or keep_frac=P (top of a `molt heads --json` ranking
        file), random_heads=K (seeded)."""
        o = self._lib.molt_heads_plan_defaults()
        o.heads, o.ranking, o.seed = _b(heads), _b(ranking), int(seed)
        if keep is not None:
            o.keep = int(keep)
        if keep_frac is not None:
            o.keep_frac = float(keep_frac)
        if random_heads is not None:
            o.random_heads = int(random_heads)
        ls, hs, n = P(c_int32)(), P(c_int32)(), c_int32()
        with self._lock:
            self._ctx.check(self._lib.molt_heads_plan(self._ctx.h, self._model(),
                                                      ctypes.byref(o), ctypes.byref(ls),
                                                      ctypes.byref(hs), ctypes.byref(n)))
        try:
            return [(ls[i], hs[i]) for i in range(n.value)]
        finally:
            self._lib.molt_free(ls)
            self._lib.molt_free(hs)

    def save(self, out_dir, dtype=None):
        """Writes out_dir/config.json, model.safetensors and the tokenizer (molt_model_save);
        dtype "f32" (default), "bf16" or "f16"."""
        with self._lock:
            self._ctx.check(self._lib.molt_model_save(self._ctx.h, self._model(), _b(out_dir),
                                                      _b(dtype)))

    def __repr__(self):
        if not self._h:
            return f"<molt.Model {self.path!r} (closed)>"
        i = self.info()
        return f"<molt.Model {self.path!r} {i['arch']} {i['n_params']} params on {i['device']}>"


def _default_kv_task():
    here = os.path.dirname(os.path.abspath(__file__))
    for c in (os.path.join(here, "kv_task.json"),
              os.path.join(os.path.dirname(os.path.dirname(here)), "data", "kv_task.json"),
              os.path.join("data", "kv_task.json")):
        if os.path.exists(c):
            return c
    raise MoltError(-8, "kv_task.json not found beside the package or in the repository's "
                        "data/: pass kv_task=FILE")


def load(path, **kw):
    """molt.Model.load(path, **kw)."""
    return Model.load(path, **kw)


def _as_model(model, kw):
    if isinstance(model, Model):
        if kw:
            raise TypeError(f"loading options {sorted(kw)} given with a loaded Model")
        return model, False
    return Model.load(model, **kw), True


def distill(teacher, out_dir, device=None, threads=None, tokenizer=None, matmul=None, **opts):
    """Distils teacher (a path, or a loaded Model) into out_dir; returns the report (a dict).
    See Model.distill for the options."""
    kw = {k: v for k, v in (("device", device), ("threads", threads), ("tokenizer", tokenizer),
                            ("matmul", matmul)) if v is not None}
    m, own = _as_model(teacher, kw)
    try:
        return m.distill(out_dir, **opts)
    finally:
        if own:
            m.close()


def heads(model, device=None, threads=None, tokenizer=None, **opts):
    """Ranks the heads of model (a path, or a loaded Model); see Model.heads."""
    kw = {k: v for k, v in (("device", device), ("threads", threads), ("tokenizer", tokenizer))
          if v is not None}
    m, own = _as_model(model, kw)
    try:
        return m.heads(**opts)
    finally:
        if own:
            m.close()
