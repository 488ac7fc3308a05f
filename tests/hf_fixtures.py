"""Tiny Hugging Face causal LMs built from configs with plain `transformers` (no network), one per adapter."""

from __future__ import annotations

import torch
import transformers as tr

tr.logging.set_verbosity_error()

VOCAB = 96


def tiny_config(arch: str, **overrides):
    """A 2-layer, 32-wide config: `gpt2`, `llama` (grouped-query: 4 heads, 2 KV heads), `gpt_neox`,
    `qwen2` or `mistral`."""
    common = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=VOCAB,
                  max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == "gpt2":
        cfg = tr.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=1,
                            eos_token_id=2, pad_token_id=0)
    elif arch == "llama":
        cfg = tr.LlamaConfig(**common, num_key_value_heads=2)
    elif arch == "qwen2":
        cfg = tr.Qwen2Config(**common, num_key_value_heads=2)
    elif arch == "mistral":
        cfg = tr.MistralConfig(**common, num_key_value_heads=2)
    elif arch == "gpt_neox":
        cfg = tr.GPTNeoXConfig(**common)
    else:
        raise ValueError(arch)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def tiny_hf(arch: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return tr.AutoModelForCausalLM.from_config(tiny_config(arch, **overrides), attn_implementation="eager")


ARCHS = ("gpt2", "llama", "gpt_neox")
