// hf_tokenizers_node.js — HF's tokenizers library (its Rust core, through the
// npm package "tokenizers") answering check_tokenizer.py --node over stdin /
// stdout, one JSON request a line: {"op": "enc", "text": T, "special": B} → ids
// (with the post-processor's special tokens when B); {"op": "dec", "ids": [...]} → text with
// special tokens skipped; {"op": "vocab"} → the vocabulary with added tokens.
// usage: node hf_tokenizers_node.js NODE_MODULES_DIR TOKENIZER_JSON
const {Tokenizer} = require(require('path').join(process.argv[2], 'tokenizers'));
const tok = Tokenizer.fromFile(process.argv[3]);
const rl = require('readline').createInterface({input: process.stdin});
let chain = Promise.resolve(); // answers in request order
rl.on('line', (line) => {
  chain = chain.then(async () => {
    const m = JSON.parse(line);
    let r;
    if (m.op === 'enc')
      r = Array.from((await tok.encode(m.text, null, {addSpecialTokens: m.special})).getIds());
    else if (m.op === 'dec') r = await tok.decode(m.ids, true);
    else r = tok.getVocab(true);
    process.stdout.write(JSON.stringify(r) + '\n');
  });
});
