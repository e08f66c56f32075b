"""Tiny random-init Hugging Face models for every supported family, built offline."""

from __future__ import annotations

import torch
import transformers as tf

VOCAB = 97


def _configs() -> dict:
    common_llama = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                        num_hidden_layers=2, vocab_size=VOCAB, max_position_embeddings=64)
    return {
        "gpt2": tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64),
        "neox": tf.GPTNeoXConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128,
                                 vocab_size=VOCAB, max_position_embeddings=64,
                                 rope_parameters={"rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                                                  "rope_type": "default"}),
        "neox_sequential": tf.GPTNeoXConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                            intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=64,
                                            use_parallel_residual=False),
        "llama": tf.LlamaConfig(**common_llama),
        "mistral": tf.MistralConfig(**common_llama, sliding_window=8),
        "qwen2": tf.Qwen2Config(**common_llama),
    }


FAMILIES = list(_configs())

_CLASSES = {
    "gpt2": tf.GPT2LMHeadModel, "neox": tf.GPTNeoXForCausalLM, "neox_sequential": tf.GPTNeoXForCausalLM,
    "llama": tf.LlamaForCausalLM, "mistral": tf.MistralForCausalLM, "qwen2": tf.Qwen2ForCausalLM,
}


def make_hf_model(family: str, seed: int = 0, n_layers: int | None = None, weight_std: float | None = None):
    """A random HF model whose every weight (norm gains and biases too) is perturbed away from its
    init, so weight folding is really exercised.

    ``n_layers`` overrides the family's default of 2 layers. ``weight_std`` redraws every matrix
    from N(0, weight_std) instead of perturbing HF's small init, so that attention is far from
    uniform and the logits depend strongly on context (patching tests need clean and corrupted
    runs that really differ)."""
    cfg = _configs()[family]
    cfg._attn_implementation = "eager"
    if n_layers is not None:
        cfg.num_hidden_layers = n_layers
    torch.manual_seed(seed)
    model = _CLASSES[family](cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # gains and biases
                p.add_(0.2 * torch.randn(p.shape, generator=g))
            elif weight_std is not None:
                p.copy_(weight_std * torch.randn(p.shape, generator=g))
            else:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


def random_tokens(batch: int = 3, pos: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, pos), generator=g)
