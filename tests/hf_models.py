"""Tiny random-init Hugging Face models for every supported family, built offline."""

from __future__ import annotations

import functools
import logging
import tempfile

import torch
import transformers as tf

from circuitscope import HookedTransformer
from circuitscope.tasks import Task

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


@functools.lru_cache(maxsize=None)
def get_model(family: str, n_layers: int) -> HookedTransformer:
    hf = make_hf_model(family, seed=1, n_layers=n_layers, weight_std=0.3)
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as folder:
            hf.save_pretrained(folder)
            model = HookedTransformer.from_pretrained(folder, device="cpu")
    finally:
        logging.disable(logging.NOTSET)
    assert model.cfg.dtype == torch.float32
    return model


def make_task(model, lengths=(6, 4, 5), diff_positions=(1, 3), seed=0) -> Task:
    """Random right-padded prompts (pad id 0) of the given lengths; the corrupted prompts change
    the tokens at ``diff_positions``. The answers are chosen so that the clean and corrupted logit
    differences are well apart: correct = clean top token, incorrect = corrupted top token."""
    g = torch.Generator().manual_seed(seed)
    batch, width = len(lengths), max(lengths)
    clean = torch.randint(1, VOCAB, (batch, width), generator=g)
    corrupted = clean.clone()
    for p in diff_positions:
        shift = torch.randint(1, VOCAB - 1, (batch,), generator=g)
        corrupted[:, p] = (clean[:, p] - 1 + shift) % (VOCAB - 1) + 1  # in [1, VOCAB), never equal
    for b, n in enumerate(lengths):
        clean[b, n:] = 0
        corrupted[b, n:] = 0
    answer_pos = torch.tensor(lengths) - 1
    rows = torch.arange(batch)
    with torch.no_grad():
        clean_final = model(clean)[rows, answer_pos]
        corrupted_final = model(corrupted)[rows, answer_pos]
    correct = clean_final.argmax(-1)
    incorrect = corrupted_final.argmax(-1)
    second = clean_final.topk(2).indices[:, 1]
    incorrect = torch.where(incorrect == correct, second, incorrect)
    task = Task(clean, corrupted, torch.stack([correct, incorrect], -1), answer_pos,
                positions={"S": torch.tensor([(2, 1, 2)[b % 3] for b in range(batch)])}, name="random")
    clean_ld, corrupted_ld = task.baselines(model)
    assert clean_ld - corrupted_ld > 0.3, (clean_ld, corrupted_ld)  # a well-conditioned normalised metric
    return task
