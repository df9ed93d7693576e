#!/usr/bin/env python3
"""tok_ref.py - independent Python references for molt's tokenizers.

Written from the reference algorithms, sharing no code or tables with
src/tok/:
  * tiktoken rank BPE (tiktoken/src/lib.rs _byte_pair_merge, written the
    plain O(n^2) way) with Meta's Llama-3 split pattern and special tokens;
  * HF byte-level BPE (GPT-2 bytes_to_unicode, merges ranked by order, the
    pre-tokenizer regex from tokenizer.json, added tokens split out first);
  * llama2.c run.c encode(), literally (rescan all pairs after each merge).

The regex module (Debian python3-regex) provides \\p{L} / \\p{N}.

Usage:
  tok_ref.py compare C_TOOL SHARED_DIR   encode samples of every text file
        under SHARED_DIR/data with Python and with `C_TOOL --encode`, compare.
  tok_ref.py llama2c TOK.bin TEXT...      print run.c ids (with BOS) per text
"""
import base64
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

import regex

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def llama3_specials():
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
             "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|reserved_special_token_4|>", "<|eot_id|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(5, 256 - 5)]
    return names


def split_specials(text, specials):
    """Yields (is_special, str) pieces: leftmost, then longest special match."""
    if not specials:
        yield False, text
        return
    alt = "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))
    pos = 0
    for m in regex.finditer(alt, text):
        if m.start() > pos:
            yield False, text[pos:m.start()]
        yield True, m.group()
        pos = m.end()
    if pos < len(text):
        yield False, text[pos:]


class Tiktoken:
    def __init__(self, path):
        self.ranks = {}
        for line in open(path, "rb"):
            if line.strip():
                tok, rank = line.split()
                self.ranks[base64.b64decode(tok)] = int(rank)
        base = len(self.ranks)
        self.special = {s: base + i for i, s in enumerate(llama3_specials())}
        self.pat = regex.compile(LLAMA3_PAT)
        self.cache = {}

    def bpe(self, piece):
        if piece in self.ranks:
            return [self.ranks[piece]]
        parts = [piece[i:i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        return [self.ranks[p] for p in parts]

    def encode(self, text):
        out = []
        for special, s in split_specials(text, self.special):
            if special:
                out.append(self.special[s])
                continue
            for w in self.pat.findall(s):
                b = w.encode("utf-8")
                if b not in self.cache:
                    self.cache[b] = self.bpe(b)
                out += self.cache[b]
        return out


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class HFByteLevel:
    def __init__(self, path):
        j = json.load(open(path, encoding="utf-8"))
        m = j["model"]
        assert m["type"] == "BPE"
        self.vocab = m["vocab"]
        self.ignore_merges = bool(m.get("ignore_merges"))
        self.ranks = {}
        for i, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.ranks[(a, b)] = i
        self.added = {a["content"]: a["id"] for a in j.get("added_tokens") or []}
        pre = j["pre_tokenizer"]
        steps = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
        pats = [s["pattern"]["Regex"] for s in steps if s["type"] == "Split"]
        assert len(pats) == 1
        self.pat = regex.compile(pats[0])
        self.b2u = bytes_to_unicode()
        self.cache = {}

    def bpe(self, word):  # word: byte-level unicode string
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        syms = list(word)
        while len(syms) > 1:
            best, best_i = None, -1
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            syms[best_i:best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        return [self.vocab[s] for s in syms]

    def encode(self, text):
        out = []
        for special, s in split_specials(text, self.added):
            if special:
                out.append(self.added[s])
                continue
            for w in self.pat.findall(s):
                u = "".join(self.b2u[b] for b in w.encode("utf-8"))
                if u not in self.cache:
                    self.cache[u] = self.bpe(u)
                out += self.cache[u]
        return out


class Llama2c:
    """karpathy/llama2.c run.c build_tokenizer + encode, step by step."""

    def __init__(self, path, vocab_size=0):
        b = open(path, "rb").read()
        self.vocab, self.scores = [], []
        o = 4
        while (len(self.vocab) < vocab_size) if vocab_size else (o < len(b)):
            score, n = struct.unpack_from("<fi", b, o)
            s = b[o + 8:o + 8 + n]
            self.vocab.append(s.split(b"\0")[0])
            self.scores.append(score)
            o += 8 + n
        self.lookup = {}
        for i, s in enumerate(self.vocab):
            self.lookup.setdefault(s, i)

    def encode(self, text, bos=True):
        tokens = [1] if bos else []
        if text:
            tokens.append(self.lookup[b" "])
        buf = b""
        for i, c in enumerate(text):
            if (c & 0xC0) != 0x80:
                buf = b""
            buf += bytes([c])
            nxt = text[i + 1] if i + 1 < len(text) else 0
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue
            if buf in self.lookup:
                tokens.append(self.lookup[buf])
            else:
                tokens += [x + 3 for x in buf]
            buf = b""
        while True:
            best, best_id, best_i = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                t = self.lookup.get(self.vocab[tokens[i]] + self.vocab[tokens[i + 1]])
                if t is not None and self.scores[t] > best:
                    best, best_id, best_i = self.scores[t], t, i
            if best_i == -1:
                break
            tokens[best_i:best_i + 2] = [best_id]
        return tokens


def text_files(root):
    for d, _, fs in sorted(os.walk(root)):
        for f in sorted(fs):
            p = os.path.join(d, f)
            try:
                open(p, "rb").read().decode("utf-8")
            except UnicodeDecodeError:
                continue
            yield p


def char_slice(b, start, n):
    """b[start:start+n] moved to UTF-8 character boundaries."""
    while start < len(b) and (b[start] & 0xC0) == 0x80:
        start += 1
    end = min(len(b), start + n)
    while end < len(b) and (b[end] & 0xC0) == 0x80:
        end -= 1
    return b[start:end]


def c_encode(tool, tok, files, extra=()):
    r = subprocess.run([tool, "--encode", tok, *extra, *files], capture_output=True, check=True)
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(files), (len(lines), len(files))
    return [[int(x) for x in ln.split()] for ln in lines]


def compare(tool, shared):
    t0 = time.time()
    rnd = random.Random(1234)
    tmp = tempfile.mkdtemp(prefix="tok_ref_")
    samples, short = [], []
    for p in text_files(os.path.join(shared, "data")):
        b = open(p, "rb").read()
        parts = [char_slice(b, 0, 50000)]
        if len(b) > 50000:
            parts.append(char_slice(b, rnd.randrange(len(b) - 50000), 50000))
        for k, s in enumerate(parts):
            samples.append((f"{p}[{k}]", s))
        for k in range(3):  # llama2.c reference is O(n^2): short pieces
            short.append((f"{p}<{k}>", char_slice(b, rnd.randrange(max(1, len(b) - 300)), 300)))
    samples.append(("specials", b"a<|begin_of_text|>b<|eot_id|><|eot_id|> <|reserved_special_token_7|>"))
    # Where regex engines can differ: Unicode classes (\s, \p{L}, \p{N},
    # marks that are neither), case-insensitive contractions ('S, 'ſ = long s,
    # 'K = Kelvin sign), CR/LF runs, whitespace before non-space.
    atoms = ["a", "Z", "é", "ß", "ſ", "\u212a", "Ω", "ж", "日", "한", "ا", "ऄ", "\u0301", "\u0903",
             "7", "٣", "Ⅻ", "½", "²", " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2028",
             "\u3000", "\u0085", "\u180e", "\u200b", "'", "'s", "'S", "'ſ", "'K", "'\u212a",
             "'ll", "'LL", "'Re", "!", "...", "--", "🙂", "👍🏽", "\U0001F468\u200d\U0001F469",
             "\x00", "\x1f", "\x7f", "$", "€", "_", "<|", "|>", "<|eot_id|"]
    for k in range(12):
        s = "".join(rnd.choice(atoms) for _ in range(4000))
        samples.append((f"unicode-mix{k}", s.encode()))
    samples.append(("empty", b""))
    short.append(("unicode", "héllo wörld ∑ 日本語 🙂 \x01\x7f".encode()))

    def write(lst):
        paths = []
        for i, (_, s) in enumerate(lst):
            path = os.path.join(tmp, f"s{len(paths)}_{id(lst)}")
            open(path, "wb").write(s)
            paths.append(path)
        return paths

    paths, spaths = write(samples), write(short)
    tok3 = os.path.join(shared, "data/tokenizers/llama3")
    kv = os.path.join(shared, "models/kv-llama-2m/tokenizer.json")
    l2 = [(os.path.join(shared, "models/stories260K/tok512.bin"), 512),
          (os.path.join(shared, "data/tokenizers/llama2/tokenizer.bin"), 32000)]
    bad, n_bytes, n_tok = 0, 0, 0

    def check(name, want, got, label):
        nonlocal bad, n_tok
        n_tok += len(want)
        if want != got:
            bad += 1
            i = next((k for k in range(min(len(want), len(got))) if want[k] != got[k]),
                     min(len(want), len(got)))
            print(f"MISMATCH {name} {label}: first difference at id {i}: "
                  f"python {want[i:i + 8]} c {got[i:i + 8]}")

    tt = Tiktoken(os.path.join(tok3, "tokenizer.model"))
    want = [tt.encode(s.decode()) for _, s in samples]
    for tokpath in ("tokenizer.model", "tokenizer.json"):
        got = c_encode(tool, os.path.join(tok3, tokpath), paths)
        for (name, s), w, g in zip(samples, want, got):
            n_bytes += len(s)
            check(name, w, g, f"llama3 {tokpath}")
    hf = HFByteLevel(kv)
    got = c_encode(tool, kv, paths)
    for (name, s), g in zip(samples, got):
        n_bytes += len(s)
        check(name, hf.encode(s.decode()), g, "kv-llama-2m tokenizer.json")
    for path, vs in l2:
        ref = Llama2c(path, vs)
        got = c_encode(tool, path, spaths, ["--bos", "--hint", str(vs)])
        for (name, s), g in zip(short, got):
            n_bytes += len(s)
            check(name, ref.encode(s), g, os.path.basename(path))
    for p in paths + spaths:
        os.unlink(p)
    os.rmdir(tmp)
    print(f"tok_ref: compared {n_bytes} bytes / {n_tok} tokens over {len(samples)} samples "
          f"(+{len(short)} llama2.c pieces) in {time.time() - t0:.1f}s: {bad} mismatches")
    return 1 if bad else 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    if len(sys.argv) >= 4 and sys.argv[1] == "llama2c":
        ref = Llama2c(sys.argv[2])
        for t in sys.argv[3:]:
            print(" ".join(map(str, ref.encode(t.encode()))))
        return
    print(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    main()
