"""Checking the options ``from_pretrained`` is given, before any weight is read or converted.

Each check turns a mistake that would otherwise fail deep inside torch (or, worse, succeed with
something other than what was asked) into an error or warning that names it.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Optional, Union

import torch

from circuitscope.model.config import TransformerConfig

logger = logging.getLogger(__name__)

DTYPE_ALIASES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32, "f32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "f16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp64": torch.float64, "float64": torch.float64, "double": torch.float64, "f64": torch.float64,
}

# Shape fields come from the checkpoint's config.json: overriding one cannot load its weights.
_FROM_CHECKPOINT = {"n_layers", "d_model", "n_heads", "d_head", "d_vocab", "d_mlp", "n_key_value_heads",
                    "n_ctx", "gated_mlp", "normalization_type", "positional_embedding_type", "attn_only"}


def resolve_dtype(dtype: Union[torch.dtype, str]) -> torch.dtype:
    """A floating-point torch dtype from a dtype or a common name ("fp16", "bf16", "float32", ...)."""
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key in DTYPE_ALIASES:
            return DTYPE_ALIASES[key]
    elif isinstance(dtype, torch.dtype) and dtype in DTYPE_ALIASES.values():
        return dtype
    raise ValueError(
        f"dtype {dtype!r} is not a floating-point dtype circuitscope can load weights as; use a torch "
        f"dtype (torch.float32, torch.bfloat16, ...) or one of {', '.join(sorted(DTYPE_ALIASES))} (e.g. 'fp16')"
    )


def resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    """The device to load onto (default: the GPU when there is one), checked to exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; torch knows 'cpu', 'cuda', 'cuda:1', 'mps' ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} was asked for but there is no CUDA GPU here; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device={device!r} was asked for but MPS is not available here; use device='cpu'")
    return dev


def check_overrides(overrides: dict) -> None:
    """Config overrides must be behaviour fields of :class:`TransformerConfig` (not shapes)."""
    names = [f.name for f in fields(TransformerConfig)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        hints = {k: difflib.get_close_matches(k, names, n=2) for k in unknown}
        said = "; ".join(f"{k!r}, which is not a config field or loading option"
                         + (f" (did you mean {', '.join(h)}?)" if h else "") for k, h in hints.items())
        raise TypeError(f"from_pretrained got {said}")
    fixed = sorted(set(overrides) & _FROM_CHECKPOINT)
    if fixed:
        raise ValueError(f"{', '.join(fixed)} comes from the checkpoint's config.json and cannot be overridden")


# ------------------------------------------------------------------ does the name fit hf_model?
_COMPARED = {  # our name -> the HF config keys that hold it, across families
    "model_type": ("model_type",),
    "n_layers": ("n_layer", "num_hidden_layers"),
    "d_model": ("n_embd", "hidden_size"),
    "n_heads": ("n_head", "num_attention_heads"),
    "d_vocab": ("vocab_size",),
}


def known_config(name: str, folder: Optional[Path]) -> Optional[dict]:
    """The config.json a name stands for, when it can be read without a download: a shipped
    organism or local folder (``folder``), or a hub name already in the local HF cache."""
    path = folder / "config.json" if folder is not None else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # not a valid repo id
            return None
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _summary(cfg: dict) -> dict:
    out = {}
    for ours, keys in _COMPARED.items():
        for key in keys:
            if cfg.get(key) is not None:
                out[ours] = cfg[key]
                break
    return out


def warn_if_name_mismatch(name: str, expected: Optional[dict], hf_config) -> None:
    """Warn when ``hf_model``'s config disagrees with what ``name`` is known to be."""
    if expected is None:
        return
    given, wanted = _summary(hf_config.to_dict()), _summary(expected)
    diffs = [f"{k}: {given[k]!r} vs {wanted[k]!r}" for k in wanted if k in given and given[k] != wanted[k]]
    if diffs:
        logger.warning(
            "the hf_model passed does not match %r (%s; hf_model vs %r's config). The model is built "
            "from hf_model and labelled %r; pass a matching name.", name, "; ".join(diffs), name, name,
        )
