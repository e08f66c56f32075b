"""The unpatched run that every patched variant starts from.

A patched run agrees with the base run everywhere the patch cannot reach: in every layer before
the patched one, and (attention being causal) at every position before the patched one. So the
engine runs the base tokens once, keeps each layer's residual stream, attention output, keys and
values, and later restarts variants from there instead of from the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from circuitscope.model.kv_cache import LayerKV

__all__ = ["BaseRun", "fast_path_problem"]


def fast_path_problem(model, tokens: torch.Tensor) -> Optional[str]:
    """Why the layer-restarting fast path cannot reproduce ``model(tokens)`` exactly, or None.

    The fast path assumes a plain causal mask (right padding is fine: real tokens never attend to
    the padding after them) and that no hooks are attached (they would see the engine's stacked
    variants instead of the user's batch).
    """
    hooked = [name for name, hp in model.hook_dict.items() if hp.fwd_hooks or hp.bwd_hooks]
    if hooked:
        return f"hooks are attached to {hooked[:3]}{'...' if len(hooked) > 3 else ''}"
    window = getattr(model.cfg, "window_size", None)
    if window is not None and tokens.shape[1] > window:
        return f"the {tokens.shape[1]}-token input is longer than the sliding window ({window})"
    windows = getattr(model.cfg, "layer_windows", None)
    if windows is not None and any(w is not None and tokens.shape[1] > w for w in windows):
        return "the input is longer than some layers' sliding windows"
    mask_fn = getattr(model, "attention_mask_for", None)
    if mask_fn is not None and mask_fn(tokens) is not None:
        return "the batch is left-padded (the model attends with a padding mask)"
    return None


@dataclass
class BaseRun:
    """Cached activations of the base run, per layer, all ``[batch, pos, ...]``.

    ``width`` is how many positions matter: with a readout, positions after the last one read
    cannot change the metric and are never recomputed.
    """

    model: object
    tokens: torch.Tensor  # [batch, pos]
    width: int
    resid_pre: list[torch.Tensor]  # per layer [batch, pos, d_model]
    attn_out: list[torch.Tensor]  # per layer [batch, pos, d_model]
    resid_post: list[torch.Tensor]  # per layer [batch, pos, d_model]
    keys: list[torch.Tensor]  # per layer [batch, pos, head, d_head], as attention uses them (rotated)
    values: list[torch.Tensor]  # per layer [batch, pos, head, d_head]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # hook name -> activation

    @classmethod
    def run(cls, model, tokens: torch.Tensor, width: Optional[int] = None, extra_names=()) -> "BaseRun":
        """Run ``tokens [batch, pos]`` once and keep what restarting a variant needs (plus
        ``extra_names``: hook names the entries need, e.g. ``blocks.3.attn.hook_z``)."""
        width = tokens.shape[1] if width is None else width
        tokens = tokens[:, :width]
        rot = model.cfg.positional_embedding_type == "rotary"
        names = set(extra_names)
        for layer in range(model.cfg.n_layers):
            b = f"blocks.{layer}"
            names |= {f"{b}.hook_resid_pre", f"{b}.hook_attn_out", f"{b}.hook_resid_post", f"{b}.attn.hook_v",
                      f"{b}.attn.hook_rot_k" if rot else f"{b}.attn.hook_k"}
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=sorted(names), return_type=None)
        n = model.cfg.n_layers
        k_name = "hook_rot_k" if rot else "hook_k"
        return cls(
            model, tokens, width,
            [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)],
            [cache[f"blocks.{i}.hook_attn_out"] for i in range(n)],
            [cache[f"blocks.{i}.hook_resid_post"] for i in range(n)],
            [cache[f"blocks.{i}.attn.{k_name}"] for i in range(n)],
            [cache[f"blocks.{i}.attn.hook_v"] for i in range(n)],
            {name: cache[name] for name in extra_names},
        )

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]

    @property
    def final(self) -> torch.Tensor:
        """The residual stream entering the final norm: ``[batch, pos, d_model]``."""
        return self.resid_post[-1]

    def entering(self, layer: int) -> torch.Tensor:
        """The residual stream entering block ``layer`` (``n_layers`` = the final stream)."""
        return self.final if layer == len(self.resid_pre) else self.resid_pre[layer]

    def prefix(self, layer: int, start: int, copies: int) -> Optional[LayerKV]:
        """Frozen keys/values of positions ``< start`` for ``copies`` stacked variants."""
        if start == 0:
            return None
        k = self.keys[layer][:, :start]
        v = self.values[layer][:, :start]
        if copies > 1:
            k = k.repeat(copies, 1, 1, 1)
            v = v.repeat(copies, 1, 1, 1)
        return LayerKV(k, v, frozen=True)
