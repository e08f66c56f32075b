"""``ActivationCache``: the activations of one forward pass, plus the tools to take them apart.

``model.run_with_cache(tokens)`` returns one. Index it by full hook name or TransformerLens-style
shorthand (``cache["resid_post", -1]``, ``cache["pattern", 3]``, ``cache["scale", 2, "ln1"]``),
and use its methods for direct logit attribution: ``accumulated_resid`` (logit lens),
``decompose_resid`` (per layer), ``stack_head_results`` (per head), ``apply_ln_to_stack`` and
``logit_attrs``. Semantics follow TransformerLens, so ported notebooks behave the same.
See ``circuitscope.cache_slicing`` for what ``pos_slice`` accepts (including per-prompt indices).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import torch

from circuitscope.cache_attribution import ResidualStacks
from circuitscope.cache_decompose import as_layer
from circuitscope.cache_slicing import take_index
from circuitscope.names import all_hook_names, get_act_name, unknown_name_message

__all__ = ["ActivationCache", "CacheKeyError"]

logger = logging.getLogger(__name__)


class CacheKeyError(KeyError):
    """A missing activation; ``str()`` gives the readable message (plain KeyError quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ActivationCache(ResidualStacks):
    """A dict of activations (``name -> tensor``) tied to the model that produced them.

    ``has_batch_dim`` is False after ``remove_batch_dim()``; every tensor then lacks the leading
    batch dimension.
    """

    def __init__(
        self, cache_dict: dict[str, torch.Tensor], model: Any, has_batch_dim: bool = True
    ) -> None:
        self.cache_dict = cache_dict
        self.model = model
        self.has_batch_dim = has_batch_dim

    # ---- dict-like access --------------------------------------------------------------------
    def __getitem__(self, key: str | tuple) -> torch.Tensor:
        """``cache[name]`` or ``cache[(shorthand, layer[, layer_type])]``; negative layers count from the end."""
        name = self._resolve(key)
        try:
            return self.cache_dict[name]
        except KeyError:
            raise CacheKeyError(self._missing_message(name)) from None

    def __contains__(self, key: object) -> bool:
        try:
            return self._resolve(key) in self.cache_dict  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def keys(self):
        return self.cache_dict.keys()

    def values(self):
        return self.cache_dict.values()

    def items(self):
        return self.cache_dict.items()

    def _resolve(self, key: str | tuple) -> str:
        """Turn a key (full name, shorthand, or tuple) into a full hook name."""
        if isinstance(key, str):
            if key in self.cache_dict or "." in key or key.startswith("hook_"):
                return key
            return get_act_name(key)  # e.g. cache["embed"], cache["scale"]
        if not isinstance(key, tuple) or not 1 <= len(key) <= 3:
            raise TypeError(
                f"cache keys are names or (name, layer[, layer_type]) tuples, got {key!r}"
            )
        name, layer, *rest = (*key, None) if len(key) == 1 else key
        if layer is not None:
            layer = as_layer(layer, f"the layer in cache[{key!r}]")
            n_layers = self.model.cfg.n_layers
            if layer < 0:
                if layer < -n_layers:
                    raise CacheKeyError(
                        f"layer {layer} is out of range for a {n_layers}-layer model"
                    )
                layer += n_layers
        return get_act_name(name, layer, *rest)

    def _missing_message(self, name: str) -> str:
        """Explain a missing key: filtered out of this cache, or not a hook at all (with suggestions)."""
        n_layers = self.model.cfg.n_layers
        model_names = list(getattr(self.model, "hook_dict", None) or {})
        if name in model_names or (not model_names and name in all_hook_names(n_layers)):
            where = "is a hook of this model" if model_names else "looks like a valid hook name"
            message = (
                f"{name!r} {where} but is not in this cache: it was filtered out by names_filter "
                f"(or is an opt-in hook that was not enabled). The cache holds {len(self)} activations."
            )
            if name.endswith("attn.hook_result"):
                message += (
                    " stack_head_results() and compute_head_results() rebuild it from hook_z."
                )
            return message
        in_model = set(model_names)
        known = model_names + [k for k in self.cache_dict if k not in in_model]
        return unknown_name_message(name, known, n_layers)

    # ---- whole-cache operations --------------------------------------------------------------
    def to(self, device: str | torch.device, move_model: bool = False) -> "ActivationCache":
        """Move every activation (and optionally the model) to ``device``, in place."""
        self.cache_dict = {k: v.to(device) for k, v in self.cache_dict.items()}
        if move_model:
            self.model.to(device)
        return self

    def remove_batch_dim(self) -> "ActivationCache":
        """Drop the leading batch dim of every activation, in place (the batch must be size 1)."""
        if not self.has_batch_dim:
            logger.warning("remove_batch_dim: this cache has no batch dimension already")
            return self
        for name, value in self.cache_dict.items():
            if value.ndim == 0 or value.shape[0] != 1:
                raise ValueError(
                    f"remove_batch_dim needs a batch of exactly 1, but {name} has shape {tuple(value.shape)}; "
                    "index one prompt first (e.g. run_with_cache(tokens[:1]))"
                )
        self.cache_dict = {k: v[0] for k, v in self.cache_dict.items()}
        self.has_batch_dim = False
        return self

    def apply_slice_to_batch_dim(self, batch_slice: Any) -> "ActivationCache":
        """A new cache holding only some prompts (the tensors are views, not copies).

        ``batch_slice``: an int (that prompt; the new cache has no batch dim), a slice or
        ``(start, stop)`` tuple, a list / tensor of prompt indices, or None (all prompts).
        """
        if batch_slice is None:
            return ActivationCache(dict(self.cache_dict), self.model, self.has_batch_dim)
        if not self.has_batch_dim:
            raise ValueError("apply_slice_to_batch_dim: this cache has no batch dimension")
        drops = isinstance(batch_slice, int) or (
            isinstance(batch_slice, torch.Tensor) and batch_slice.ndim == 0
        )
        cut = {k: take_index(v, batch_slice, 0, "batch_slice prompt(s)") for k, v in self.cache_dict.items()}
        return ActivationCache(cut, self.model, has_batch_dim=not drops)

    def toggle_autodiff(self, mode: bool = False) -> None:
        """Switch autograd on or off *globally* (``torch.set_grad_enabled(mode)``), as
        TransformerLens does; ``with torch.no_grad():`` is the local alternative."""
        logger.warning("toggle_autodiff changed global state: autograd is now %s", "on" if mode else "off")
        torch.set_grad_enabled(mode)

    def __repr__(self) -> str:
        lines = [
            f"ActivationCache({len(self)} activations, batch dim: {'yes' if self.has_batch_dim else 'no'})"
        ]
        items = list(self.cache_dict.items())
        shown = items if len(items) <= 10 else items[:8] + items[-2:]
        for i, (name, value) in enumerate(shown):
            if len(items) > 10 and i == 8:
                lines.append(f"  ... ({len(items) - 10} more)")
            lines.append(f"  {name} {list(value.shape)}")
        return "\n".join(lines)
