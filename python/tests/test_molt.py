"""Tests of the molt Python package against the molt CLI (run by tests/test_python.sh, after it
installed the package into a fresh venv; plain `python3 -m unittest` from python/ works too).

Environment: MOLT_REPO (the repository root; default: two levels up), MOLT_BIN (the molt binary;
default MOLT_REPO/build/molt), MOLT_SHARED (shared/ with the larger reference models; parts
that need a file absent from it print "SKIP part: ..." and pass), MOLT_EXPECT_LIB ("installed":
the library must be the copy beside the package).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import molt
from molt import _lib

REPO = os.environ.get("MOLT_REPO") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MOLT_BIN = os.environ.get("MOLT_BIN") or os.path.join(REPO, "build", "molt")
SHARED = os.environ.get("MOLT_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
STORIES = os.path.join(REPO, "models", "stories260K", "stories260K.bin")
VALID = os.path.join(REPO, "tests", "fixtures", "data", "tinystories",
                     "tinystories_v1_valid_head_40k.txt")
THREADS = 2  # the CLI's default


def cli(*args):
    """stdout (bytes) of the molt CLI; stderr on failure."""
    r = subprocess.run([MOLT_BIN, *args], capture_output=True, cwd=REPO)
    if r.returncode != 0:
        raise AssertionError(f"molt {' '.join(args)}: exit {r.returncode}: {r.stderr.decode()}")
    return r.stdout


def skip_part(what, path):
    print(f"\nSKIP part: {what} (needs {path})", flush=True)  # at a line start for run_tests.sh


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "I32": np.int32, "I64": np.int64}[v["dtype"]]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"])
    return out


class Library(unittest.TestCase):
    def test_where_the_library_comes_from(self):
        path = molt.library_path()
        self.assertTrue(os.path.exists(path), path)
        if os.environ.get("MOLT_EXPECT_LIB") == "installed":
            here = os.path.dirname(os.path.abspath(molt.__file__))
            self.assertEqual(os.path.dirname(path), here, "not the installed copy")
            self.assertNotIn(REPO + os.sep, os.path.abspath(molt.__file__) + os.sep)

    def test_version_matches_header(self):
        with open(os.path.join(REPO, "include", "molt.h")) as f:
            v = {}
            for line in f:
                for part in ("MAJOR", "MINOR", "PATCH"):
                    if line.startswith(f"#define MOLT_VERSION_{part} "):
                        v[part] = line.split()[2]
        self.assertEqual(molt.__version__, f"{v['MAJOR']}.{v['MINOR']}.{v['PATCH']}")
        self.assertEqual(molt.info()["version"], molt.__version__)

    def test_structs_match_the_c_compiler(self):
        # every ctypes mirror of a molt.h struct: size and each field's offset, as cc sees them
        lines = ["#include <molt.h>", "#include <stddef.h>", "#include <stdio.h>",
                 "int main(void) {"]
        want = []
        for s in _lib.STRUCTS:
            lines.append(f'printf("%zu\\n", sizeof({s.c_name}));')
            want.append(ctypes_sizeof(s))
            for f, _ in s._fields_:
                lines.append(f'printf("%zu\\n", offsetof({s.c_name}, {f}));')
                want.append(getattr(s, f).offset)
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as d:
            src, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
            with open(src, "w") as f:
                f.write("\n".join(lines))
            subprocess.run(["cc", "-std=c11", "-I", os.path.join(REPO, "include"), src, "-o", exe],
                           check=True)
            got = [int(x) for x in subprocess.run([exe], capture_output=True,
                                                  check=True).stdout.split()]
        self.assertEqual(got, want)
        self.assertGreater(len(want), 80)


def ctypes_sizeof(s):
    import ctypes
    return ctypes.sizeof(s)


class Stories(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = molt.Model.load(STORIES, threads=THREADS)

    @classmethod
    def tearDownClass(cls):
        cls.m.close()

    def test_info(self):
        i = self.m.info()
        self.assertEqual((i["arch"], i["n_layer"], i["d_model"], i["vocab"], i["max_seq"]),
                         ("llama", 5, 64, 512, 512))
        self.assertEqual((i["device"], i["threads"]), ("cpu", THREADS))
        self.assertEqual(self.m.vocab, 512)
        self.assertEqual((self.m.bos, self.m.eos), (1, 2))

    def test_greedy_equals_cli(self):
        want = cli("generate", STORIES, "-t", "0", "-n", "200")
        got = self.m.generate(max_tokens=200, temperature=0)
        self.assertTrue(got.startswith("Once upon a time, there was a little girl named Lily."))
        self.assertEqual(got.encode() + b"\n", want)
        self.assertEqual(self.m.last_stats["n_prompt"], 1)

    def test_sampling_equals_cli(self):
        want = cli("generate", STORIES, "-s", "3", "-t", "0.8", "-n", "200")
        got = self.m.generate(max_tokens=200, temperature=0.8, seed=3)
        self.assertEqual(got.encode() + b"\n", want)
        # a prompt, top-k and top-p: the same numbers reach molt_generate
        want = cli("generate", STORIES, "-p", "The dog", "-s", "11", "-t", "1.1", "--top-k", "20",
                   "--top-p", "0.95", "-n", "80")
        got = self.m.generate("The dog", max_tokens=80, temperature=1.1, top_k=20, top_p=0.95,
                              seed=11)
        self.assertEqual(got.encode() + b"\n", want)
        self.assertNotEqual(got, self.m.generate("The dog", max_tokens=80, temperature=1.1,
                                                 top_k=20, top_p=0.95, seed=12))

    def test_stream_joins_to_generate(self):
        for kw in ({"max_tokens": 120, "temperature": 0},
                   {"prompt": "Tom had a", "max_tokens": 90, "temperature": 0.9, "seed": 5}):
            pieces = list(self.m.stream(**kw))
            self.assertGreater(len(pieces), 20)
            self.assertEqual("".join(pieces), self.m.generate(**kw))

    def test_stream_closed_early_leaves_the_model_usable(self):
        it = self.m.stream(max_tokens=100, temperature=0)
        first = [next(it) for _ in range(3)]
        it.close()
        self.assertEqual("".join(first), self.m.generate(max_tokens=3, temperature=0))

    def test_stream_raises_molt_errors(self):
        with self.assertRaises(molt.MoltError) as e:
            list(self.m.stream("", max_tokens=5))
        self.assertEqual(e.exception.status_name, "MOLT_ERR_ARG")
        self.assertIn("the prompt is empty", str(e.exception))

    def test_eval_equals_cli(self):
        with open(VALID, "rb") as f:
            text = f.read()
        want = json.loads(cli("eval", STORIES, "--text", VALID, "--json").splitlines()[0])
        loss = self.m.eval(text)
        self.assertEqual(f"{loss:.6f}", f"{want['loss']:.6f}")
        self.assertEqual(self.m.last_eval["tokens"], want["tokens"])
        # documents split at a separator (each from BOS), on the first 6 KB; a str and token
        # ids give the bytes' loss
        with tempfile.TemporaryDirectory() as d:
            small = os.path.join(d, "small.txt")
            with open(small, "wb") as f:
                f.write(text[:6000])
            want = json.loads(cli("eval", STORIES, "--text", small, "--sep", "\\n\\n",
                                  "--window", "100", "--json").splitlines()[0])
        loss = self.m.eval(text[:6000], sep="\n\n", window=100)
        self.assertEqual(f"{loss:.6f}", f"{want['loss']:.6f}")
        self.assertEqual(self.m.last_eval["tokens"], want["tokens"])
        self.assertNotEqual(loss, self.m.eval(text[:6000], window=100))
        self.assertEqual(self.m.eval(text[:6000].decode("utf-8", "ignore")),
                         self.m.eval(self.m.tokenize(text[:6000])))

    def test_eval_progress_and_callback_errors(self):
        seen = []
        ids = self.m.tokenize("Once upon a time there was a cat. " * 40)
        self.m.eval(ids, window=64, progress=lambda d, t: seen.append((d, t)))
        self.assertTrue(seen and seen[-1][0] == seen[-1][1] == len(ids) - 1, seen[-3:])

        def boom(d, t):
            raise KeyError("from the callback")
        with self.assertRaises(KeyError):
            self.m.eval(ids, window=64, progress=boom)

    def test_tokenize_round_trip(self):
        s = "Once upon a time, Lily saw a big red ball."
        ids = self.m.tokenize(s)
        self.assertEqual(ids[0], self.m.bos)
        self.assertEqual(self.m.tokenize(s, bos=False), ids[1:])
        self.assertEqual(self.m.detokenize(ids), s)

    def test_logits_agree_with_generate_and_eval(self):
        import numpy as np
        ids = self.m.tokenize("Once upon a time, there was a little")
        L = self.m.logits(ids)
        self.assertEqual((L.shape, L.dtype), ((len(ids), 512), np.float32))
        self.assertTrue(np.isfinite(L).all())
        self.assertTrue((self.m.logits(np.array(ids, dtype=np.int64)) == L).all())
        self.assertTrue((self.m.logits(np.array(ids, dtype=np.int32)[::-1][::-1]) == L).all())
        # the last row's argmax is greedy's next token
        nxt = int(L[-1].argmax())
        cont = self.m.generate("Once upon a time, there was a little", max_tokens=1,
                               temperature=0)
        self.assertEqual(self.m.tokenize(cont), ids + [nxt])
        # the mean cross-entropy of the rows is eval's loss over the same window
        x = L[:-1].astype(np.float64)
        lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
        ce = float(np.mean(lse - x[np.arange(len(ids) - 1), ids[1:]]))
        self.assertAlmostEqual(ce, self.m.eval(ids), delta=1e-5)

    def test_logits_equal_torch_reference(self):
        sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
        try:
            import torch  # noqa: F401
            import llama_ref
        except ImportError as e:
            skip_part(f"stories260K logits vs tests/ref/llama_ref.py ({e})", "python3-torch")
            return
        finally:
            sys.path.pop(0)
        cfg, p = llama_ref.load_llama2c(STORIES)
        for text in ("Once upon a time, there was a little girl named Lily.", "The cat sat"):
            ids = self.m.tokenize(text)
            ref = llama_ref.forward(cfg, p, ids).numpy()
            d = float(abs(self.m.logits(ids).astype("float64") - ref).max())
            self.assertLess(d, 1e-4, text)

    def test_heads_equal_cli(self):
        want = json.loads(cli("heads", STORIES, "--pairs", "2", "--examples", "4", "--json"))
        got = molt.heads(self.m, pairs=2, examples=4)
        self.assertEqual(len(got), 40)
        self.assertEqual([(h["layer"], h["head"]) for h in got],
                         [(h["layer"], h["head"]) for h in want])
        for g, w in zip(got, want):
            self.assertEqual(g["recurrent"], w["kind"] != "attention")
            for k in ("accuracy", "accuracy_drop", "entropy", "top_weight", "mass_key",
                      "mass_value", "mass_newline"):
                self.assertAlmostEqual(g[k], w[k], places=5, msg=k)
        self.assertEqual(self.m.heads_plan(heads="2:3,0:1"), [(2, 3), (0, 1)])

    def test_errors(self):
        with self.assertRaises(molt.MoltError) as e:
            self.m.generate(temperature=-1)
        self.assertEqual((e.exception.status, e.exception.status_name), (-6, "MOLT_ERR_ARG"))
        self.assertIn("invalid sampling parameters", e.exception.message)
        with self.assertRaises(molt.MoltError) as e:
            self.m.logits([1] * 600)  # past the 512-token context
        self.assertEqual(e.exception.status_name, "MOLT_ERR_ARG")
        with self.assertRaises(molt.MoltError) as e:
            self.m.heads_plan(heads="2:9")
        self.assertIn("does not exist", str(e.exception))
        with self.assertRaises(ValueError):
            self.m.generate("a\0b")
        with self.assertRaises(molt.MoltError) as e:
            self.m.logits([1, 512])
        self.assertIn("outside the vocab", str(e.exception))
        with self.assertRaises(ValueError):  # int32 would wrap it to a valid id
            self.m.logits([1, 2**32 + 5])
        with self.assertRaises(TypeError):
            self.m.eval([1, 2.5, 3])


class Errors(unittest.TestCase):
    def test_bad_path_raises_molt_error_with_molts_text(self):
        bad = os.path.join(tempfile.gettempdir(), "no-such-dir-molt", "model.bin")
        r = subprocess.run([MOLT_BIN, "generate", bad], capture_output=True)
        cli_msg = r.stderr.decode().splitlines()[0]
        with self.assertRaises(molt.MoltError) as e:
            molt.Model.load(bad)
        self.assertIsInstance(e.exception, Exception)
        self.assertEqual(e.exception.status_name, "MOLT_ERR_IO")
        self.assertEqual(cli_msg, "molt: error: " + str(e.exception))
        self.assertIn("no such file", str(e.exception))
        with self.assertRaises(molt.MoltError) as e:
            molt.Model.load(STORIES, device="tpu:0")
        self.assertIn("tpu", str(e.exception))

    def test_closed_model(self):
        m = molt.Model.load(STORIES, threads=1)
        with m:
            self.assertTrue(m.generate(max_tokens=3, temperature=0))
        with self.assertRaises(ValueError):
            m.generate(max_tokens=3)


class Distill(unittest.TestCase):
    OPTS = ["--seq", "32", "--batch", "2", "--stage1-tokens", "640", "--stage2-tokens", "640",
            "--stage3-tokens", "1280"]

    def run_both(self, d, cli_args, py_kw):
        a, b = os.path.join(d, "cli"), os.path.join(d, "py")
        cli(*cli_args, "-o", a, "--data", VALID, *self.OPTS, "-q")
        steps = []
        rep = molt.distill(STORIES, b, threads=THREADS, data=[VALID], seq_len=32, batch=2,
                           stage_tokens=(640, 640, 1280), progress=steps.append, **py_kw)
        with open(os.path.join(a, "report.json")) as f:
            want = json.load(f)
        for s, w in zip(rep["stages"], want["stages"]):
            self.assertEqual((s["first_loss"], s["final_loss_mean_last10pct"]),
                             (w["first_loss"], w["final_loss_mean_last10pct"]))
        with open(os.path.join(a, "model.safetensors"), "rb") as f1, \
                open(os.path.join(b, "model.safetensors"), "rb") as f2:
            self.assertTrue(f1.read() == f2.read(), "the students differ")
        self.assertEqual({s["stage"] for s in steps}, {1, 2, 3})
        st = molt.Model.load(b, threads=THREADS)
        self.assertEqual(st.generate(max_tokens=30, temperature=0).encode() + b"\n",
                         cli("generate", a, "-t", "0", "-n", "30"))
        return rep, st

    def test_distill_equals_cli(self):
        with tempfile.TemporaryDirectory() as d:
            rep, st = self.run_both(d, ["distill", STORIES], {})
            self.assertEqual(rep["student"]["arch"], "llamba")
            self.assertEqual(st.info()["arch"], "llamba")

    def test_hybrid_equals_cli(self):
        with tempfile.TemporaryDirectory() as d:
            rep, st = self.run_both(d, ["hybridize", STORIES, "--heads", "2:3,4:0"],
                                    {"keep": [(2, 3), (4, 0)]})
            self.assertEqual(len(rep["student"]["kept_heads"]), 2)
            self.assertEqual(st.info()["n_attn_heads_kept"], 2)

    def test_bad_options(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(molt.MoltError) as e:
                molt.distill(STORIES, os.path.join(d, "x"), tokens=0)
            self.assertIn("budget is zero", str(e.exception))
            with self.assertRaises(TypeError):
                molt.distill(STORIES, os.path.join(d, "x"), no_such_option=1)


class HFReference(unittest.TestCase):
    def test_logits_equal_hf_reference(self):
        import numpy as np
        n = 0
        for name in ("kv-llama-2m", "mamba2-random"):
            d = os.path.join(SHARED, "models", name)
            ref = os.path.join(d, "reference_logits.safetensors")
            if not os.path.exists(ref):
                skip_part(f"{name} logits vs HF transformers", ref)
                continue
            with open(os.path.join(d, "reference_prompts.json")) as f:
                prompts = json.load(f)["prompts"]
            t = read_safetensors(ref)
            with molt.Model.load(d, threads=THREADS) as m:
                for i, p in enumerate(prompts):
                    ids = t[f"ids_{i}"].astype(np.int64).tolist()
                    self.assertEqual(m.tokenize(p), ids, f"{name} prompt {i}")
                    diff = float(np.abs(m.logits(ids) - t[f"logits_{i}"]).max())
                    self.assertLess(diff, 1e-4, f"{name} prompt {i}")
                    n += 1
        print(f"HF reference logits: {n} prompts within 1e-4", flush=True)

    def test_kv_teacher_heads_equal_cli(self):
        d = os.path.join(SHARED, "models", "kv-llama-2m")
        if not os.path.exists(d):
            skip_part("kv-llama-2m head ranking vs molt heads", d)
            return
        want = json.loads(cli("heads", d, "--pairs", "4", "--examples", "6", "--json"))
        got = molt.heads(d, threads=THREADS, pairs=4, examples=6)
        self.assertEqual([(h["layer"], h["head"], round(h["accuracy_drop"], 6)) for h in got],
                         [(h["layer"], h["head"], h["accuracy_drop"]) for h in want])
        self.assertGreater(max(h["accuracy_drop"] for h in got), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
