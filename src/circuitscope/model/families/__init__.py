"""Per-family converters from Hugging Face checkpoints to circuitscope's layout.

Each family is a small module with two functions: ``config_from_hf(hf_config)`` returning a
:class:`~circuitscope.model.config.TransformerConfig`, and ``convert(state_dict, cfg, hf_config)``
returning our state dict (per-head ``W_Q [head, d_model, d_head]`` etc.). Adding a family means
adding a module and a line to ``FAMILIES``; generic components never change.
"""

from __future__ import annotations

from types import ModuleType

from circuitscope.model.families import gpt2, llama, neox

FAMILIES: dict[str, ModuleType] = {
    "GPT2LMHeadModel": gpt2,
    "GPTNeoXForCausalLM": neox,
    "LlamaForCausalLM": llama,
    "MistralForCausalLM": llama,
    "Qwen2ForCausalLM": llama,
}


# config.json's ``model_type`` -> the architecture it implies.
MODEL_TYPES: dict[str, str] = {
    "gpt2": "GPT2LMHeadModel", "gpt_neox": "GPTNeoXForCausalLM", "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
}


def family_for(hf_config) -> ModuleType:
    """The converter module for a HF config (by its ``architectures`` or ``model_type``)."""
    archs = list(getattr(hf_config, "architectures", None) or [])
    model_type = getattr(hf_config, "model_type", None)
    if model_type in MODEL_TYPES:
        archs.append(MODEL_TYPES[model_type])
    for arch in archs:
        if arch in FAMILIES:
            return FAMILIES[arch]
    raise ValueError(
        f"unsupported architecture {archs or model_type!r}; circuitscope supports "
        f"{', '.join(sorted(FAMILIES))}"
    )
