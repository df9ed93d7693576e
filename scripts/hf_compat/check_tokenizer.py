"""check_tokenizer.py — the tokenizer files molt writes load in HF transformers
(AutoTokenizer) and give molt's ids. For a llama2.c tokenizer: the ids of
molt's llama2.c tokenizer (the original tokenizer.bin) and of molt's reading
of the written tokenizer.json, with and without BOS; for a tokenizer.json molt
saved (a converted HF model): molt's ids without special tokens. On a corpus:
TinyStories lines (when given) plus unicode, byte-fallback and whitespace
edge cases and random text. Also decode(encode(text)) == text in HF. Texts
HF's Llama tokenizers themselves read differently from llama2.c (the literal
"<unk>" / "<s>" / "</s>", and "▁" U+2581) are left out; molt's tests cover
them. Prints a line per directory; exit 1 on any failure.

usage: python3 check_tokenizer.py [--node NODE_MODULES] TOOL DIR:MOLT_TOKENIZER... [-- CORPUS...]
  TOOL  build/tests/test_tokenizer (its --encode mode prints molt's ids)
  DIR   holds tokenizer.json + tokenizer_config.json written by molt
        (molt convert, or TOOL --to-hf TOKENIZER_BIN DIR)
  MOLT_TOKENIZER  the tokenizer molt's ids come from: the llama2.c
        tokenizer.bin, or DIR/tokenizer.json itself
  --node: instead of transformers, HF's tokenizers library itself through its
        npm package (`npm install --prefix /tmp/hft tokenizers`, then
        --node /tmp/hft/node_modules): runs where transformers is not installed
"""
import json, os, random, subprocess, sys, tempfile

args = sys.argv[1:]
node = None
if args[0] == "--node":
    node, args = args[1], args[2:]


class NodeTokenizer:
    """tokenizer.json through HF tokenizers' Rust core (hf_tokenizers_node.js)."""

    def __init__(self, d):
        js = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_tokenizers_node.js")
        self.p = subprocess.Popen(["node", js, node, os.path.join(d, "tokenizer.json")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _ask(self, m):
        self.p.stdin.write(json.dumps(m) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": self._ask({"op": "enc", "text": text,
                                        "special": add_special_tokens})}

    def decode(self, ids, skip_special_tokens=True):
        return self._ask({"op": "dec", "ids": ids})

    def get_vocab(self):
        return self._ask({"op": "vocab"})

    def __len__(self):
        return len(self.get_vocab())


if node:
    version = "HF tokenizers (npm binding) at " + node
    load = NodeTokenizer
else:
    import transformers
    from transformers import AutoTokenizer
    version = "transformers " + transformers.__version__
    load = AutoTokenizer.from_pretrained

tool, pairs, corpus = args[0], [], []
rest = args[1:]
if "--" in rest:
    corpus = rest[rest.index("--") + 1:]
    rest = rest[:rest.index("--")]
pairs = [p.split(":", 1) for p in rest]

texts = []
for f in corpus:
    lines = [l for l in open(f, encoding="utf-8").read().split("\n") if l.strip()]
    texts += lines[:2000]
texts += ["", " ", "  ", "a", " a", "a ", "\n", "\n\n", "\t", " \t \n ", "\r\n\r\n",
          "Lily  and  Tom", "  leading", "trailing   ", "héllo wörld Ünïcödé", "日本語のテキスト",
          "emoji 😀👍🏽 family 👨\u200d👩\u200d👧", "e\u0301 combining", "\ufeffBOM",
          "\u00a0nbsp\u00a0", "zero\u200bwidth", "<0x41> <0x", "<unk", "s> <", "™ [~]",
          "a\u200a b", "\x00nul\x00", "x" + "\U0001F600" * 5]
for n in range(1, 41):
    for pre in ["", "x", "x\n", "\t"]:
        for post in ["", "y", "\n"]:
            texts.append(pre + " " * n + post)
rnd = random.Random(1)
alpha = [" ", " ", "a", "n", "e", "t", "h", "o", ".", ",", "\n", "T", "é", "日", "!", "'", "😀"]
for _ in range(3000):
    texts.append("".join(rnd.choice(alpha) for _ in range(rnd.randint(1, 24))))
texts = [t for t in texts if not any(s in t for s in ("<unk>", "<s>", "</s>", "\u2581"))]

work = tempfile.mkdtemp()
files = []
for i, t in enumerate(texts):
    p = os.path.join(work, "t%05d.txt" % i)
    with open(p, "wb") as f:
        f.write(t.encode("utf-8"))
    files.append(p)


def molt_ids(tokenizer_file, bos):
    out = []
    for k in range(0, len(files), 500):  # (argument lists of a bounded size)
        r = subprocess.run([tool, "--encode", tokenizer_file] + (["--bos"] if bos else []) +
                           files[k:k + 500], capture_output=True, text=True, check=True)
        out += [[int(x) for x in line.split()] for line in r.stdout.split("\n")[:-1]]
    assert len(out) == len(files[:len(out)]) and len(out) == len(files), "tool output"
    return out


print(f"{version}, {len(texts)} texts")
bad = 0
for d, binf in pairs:
    try:
        tok = load(d)
        diff_l2 = diff_hf = diff_rt = 0
        first = None
        l2 = not binf.endswith(".json")  # a llama2.c tokenizer.bin
        for bos in ([True, False] if l2 else [False]):
            want_l2 = molt_ids(binf, bos)
            want_hf = molt_ids(os.path.join(d, "tokenizer.json"), bos)
            for t, a, b in zip(texts, want_l2, want_hf):
                got = tok(t, add_special_tokens=bos)["input_ids"]
                diff_l2 += got != a
                diff_hf += got != b
                back = tok.decode(got, skip_special_tokens=True)
                diff_rt += back != t
                if first is None and (got != a or got != b or back != t):
                    first = (t[:60], got[:20], a[:20], b[:20], back[:60])
        ok = diff_l2 == diff_hf == diff_rt == 0 and len(tok) == 1 + max(tok.get_vocab().values())
        print(f"{'ok  ' if ok else 'FAIL'} {d}: {type(tok).__name__}, vocab {len(tok)}; "
              f"ids differing from molt's {os.path.basename(binf)} {diff_l2}, from molt's "
              f"reading of the written tokenizer.json {diff_hf}; "
              f"decode(encode(x)) != x {diff_rt}")
        if first:
            print(f"     first: text {first[0]!r}: HF {first[1]}, molt {first[2]}, "
                  f"molt {first[3]}, decoded {first[4]!r}")
        bad += not ok
    except Exception as e:  # a file transformers refuses
        print(f"FAIL {d}: {type(e).__name__}: {str(e)[:300]}")
        bad += 1
sys.exit(1 if bad else 0)
