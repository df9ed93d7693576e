"""mk_teacher_1b.py DIR TOKENIZER_MODEL — a Llama-3.2-1B-shaped teacher with random weights
(hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, vocab 128256, tied; bf16 safetensors
written by transformers, initialised on the GPU) plus the Llama 3 tokenizer (tokenizer.model,
e.g. shared/data/tokenizers/llama3/tokenizer.model), for scripts/gpu_stage3_1b.sh. Needs
PyTorch + transformers (the GPU machine's python3)."""
import shutil, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
if len(sys.argv) != 3:
    sys.exit("usage: mk_teacher_1b.py DIR TOKENIZER_MODEL")
d, tok = sys.argv[1], sys.argv[2]
t0 = time.time()
cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                  num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                  max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
                  tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001)
torch.manual_seed(0)
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg)
m = m.to(torch.bfloat16)
m.save_pretrained(d, safe_serialization=True)
shutil.copy(tok, d)
print(f"teacher {sum(p.numel() for p in m.parameters())/1e9:.3f}B params written to {d} in {time.time()-t0:.0f} s", flush=True)
