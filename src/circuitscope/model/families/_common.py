"""Small helpers the family converters share."""

from __future__ import annotations

import torch


def strip_prefix(state_dict: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``transformer.``, ``model.``, ``gpt_neox.``) from every key that has it."""
    out = {}
    for key, value in state_dict.items():
        for p in prefixes:
            if key.startswith(p):
                key = key[len(p):]
                break
        out[key] = value
    return out


def take(sd: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in sd:
        raise KeyError(f"checkpoint is missing weight {key!r} (found e.g. {sorted(sd)[:5]})")
    return sd[key]


def maybe(sd: dict[str, torch.Tensor], key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An optional bias: the stored one, or zeros (families without biases)."""
    if key in sd:
        return sd[key].reshape(shape)
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def rope_settings(hf_config, head_dim: int) -> tuple[int, float]:
    """(rotary_dim, base) from either the new ``rope_parameters`` dict or the older attributes."""
    params = getattr(hf_config, "rope_parameters", None) or {}
    scaling = getattr(hf_config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if rope_type not in (None, "default"):
        raise ValueError(f"rope scaling type {rope_type!r} is not supported yet (only plain rotary)")
    base = params.get("rope_theta", getattr(hf_config, "rope_theta", None))
    if base is None:
        base = getattr(hf_config, "rotary_emb_base", 10000.0)
    fraction = params.get("partial_rotary_factor", getattr(hf_config, "partial_rotary_factor", None))
    if fraction is None:
        fraction = getattr(hf_config, "rotary_pct", 1.0)
    return int(head_dim * fraction), float(base)


def tied_unembed(W_E: torch.Tensor, hf_config) -> torch.Tensor:
    """The embedding reused as unembedding, allowed only when the config says weights are tied."""
    if not getattr(hf_config, "tie_word_embeddings", False):
        raise KeyError("checkpoint has no unembedding (lm_head) weight and its config does not tie embeddings")
    return W_E
