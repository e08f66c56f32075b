"""``ActivationCache``: the activations of one forward pass, plus the tools to take them apart.

``model.run_with_cache(tokens)`` returns one. Index it by full hook name or TransformerLens-style
shorthand (``cache["resid_post", -1]``, ``cache["pattern", 3]``, ``cache["scale", 2, "ln1"]``),
and use its methods for direct logit attribution: ``accumulated_resid`` (logit lens),
``decompose_resid`` (per layer), ``stack_head_results`` (per head), ``apply_ln_to_stack`` and
``logit_attrs``. Semantics follow TransformerLens, so ported notebooks behave the same.
See ``circuitscope.cache_decompose`` for what ``pos_slice`` accepts (including per-prompt indices).
"""

from __future__ import annotations

import logging
import operator
from typing import Any, Iterator

import torch

from circuitscope import cache_decompose as dec
from circuitscope.cache_decompose import PosSlice
from circuitscope.names import all_hook_names, get_act_name, unknown_name_message

__all__ = ["ActivationCache", "CacheKeyError"]

logger = logging.getLogger(__name__)


class CacheKeyError(KeyError):
    """A missing activation; ``str()`` gives the readable message (plain KeyError quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ActivationCache:
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
            layer = operator.index(layer)
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

    # ---- layer norm and logits ---------------------------------------------------------------
    def apply_ln_to_stack(
        self,
        residual_stack: torch.Tensor,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: PosSlice = None,
        batch_slice: Any = None,
        has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Apply the cached layer-norm scaling to a stack of residual components.

        A layer norm is linear once its scale is frozen, so dividing each component by the scale
        the model actually used (after centring, for LN/LNPre models) makes the components sum to
        what the norm really output. ``layer`` picks the norm: None, -1 or n_layers -> ln_final
        (before unembed); L -> block L's ln1 (ln2 if ``mlp_input``).

        residual_stack: "... batch pos d_model", or "... batch d_model" once cut by pos_slice. The
        stack must already be cut by ``pos_slice``; it may be cut by ``batch_slice`` or not.
        ``pos_slice`` is applied to the cached scale first (a per-prompt index therefore has one
        entry per cached prompt), then ``batch_slice``. ``has_batch_dim=False``: the stack has no
        batch dim (the cache must then hold one prompt, or batch_slice picks one).
        """
        cfg = self.model.cfg
        if cfg.normalization_type not in ("LN", "LNPre", "RMS", "RMSPre"):
            return residual_stack  # no norm in this model: nothing to undo
        layer = dec.resid_layer(layer, cfg.n_layers)
        if layer == cfg.n_layers:
            if mlp_input:
                raise ValueError("mlp_input=True needs the layer of a block, not the final layer")
            scale_name = "ln_final.hook_scale"
        else:
            scale_name = f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"
        scale = self[scale_name]  # [batch, pos, 1] (or [batch, pos, head, 1] with split qkv input)
        scale, residual_stack = dec.cut_scale_and_stack(
            scale, residual_stack, pos_slice, batch_slice, self.has_batch_dim, has_batch_dim
        )
        if cfg.normalization_type in ("LN", "LNPre"):
            residual_stack = residual_stack - residual_stack.mean(dim=-1, keepdim=True)
        return residual_stack / scale

    def logit_attrs(
        self,
        residual_stack: torch.Tensor,
        tokens: torch.Tensor | int | str,
        incorrect_tokens: torch.Tensor | int | str | None = None,
        pos_slice: PosSlice = None,
        batch_slice: Any = None,
        has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Each component's direct contribution to the logit of ``tokens`` (minus ``incorrect_tokens``).

        residual_stack "... batch d_model" (cut by pos_slice) with tokens "batch" gives "... batch":
        the final layer norm is applied from the cache, then the stack is projected onto the
        unembedding directions ``model.tokens_to_residual_directions(tokens)``.
        """
        directions = self.model.tokens_to_residual_directions(
            self._as_tokens(tokens)
        )  # [*tokens, d_model]
        if incorrect_tokens is not None:
            incorrect = self._as_tokens(incorrect_tokens)
            if incorrect.shape != self._as_tokens(tokens).shape:
                raise ValueError(
                    f"tokens {tuple(self._as_tokens(tokens).shape)} and incorrect_tokens {tuple(incorrect.shape)} differ in shape"
                )
            directions = directions - self.model.tokens_to_residual_directions(incorrect)
        scaled = self.apply_ln_to_stack(
            residual_stack,
            None,
            pos_slice=pos_slice,
            batch_slice=batch_slice,
            has_batch_dim=has_batch_dim,
        )
        return (scaled * directions.to(scaled)).sum(-1)

    def _as_tokens(self, tokens: torch.Tensor | int | str) -> torch.Tensor:
        if isinstance(tokens, str):
            return torch.tensor(self.model.to_single_token(tokens))
        return torch.as_tensor(tokens)

    # ---- stacks of residual components -------------------------------------------------------
    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ):
        """The residual stream at each point up to the input of ``layer`` (the logit lens).

        Returns "component batch pos d_model" (pos dropped by an int / per-prompt pos_slice) with
        labels ``0_pre, (0_mid,) 1_pre, ..., final_post``. ``layer`` None or -1: every block plus
        the final stream. ``incl_mid`` adds each block's ``resid_mid`` (not for parallel or
        attention-only models, which have none); ``mlp_input`` ends at the input of ``layer``'s MLP.
        """
        components, labels = dec.accumulated_resid(self, layer, incl_mid, pos_slice, mlp_input)
        if apply_ln:
            components = self.apply_ln_to_stack(
                components, layer, mlp_input=mlp_input, pos_slice=pos_slice
            )
        return (components, labels) if return_labels else components

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ):
        """Split the residual stream at ``layer`` into what wrote it: embeddings, then each layer.

        Labels ``embed, pos_embed (learned positions only), 0_attn_out, 0_mlp_out, ...``; with
        ``mode="all"`` and ``incl_embeds`` the components sum exactly to the residual stream read
        by ``layer`` (its MLP if ``mlp_input``; the final stream for None/-1).
        """
        components, labels = dec.decompose_resid(
            self, layer, mlp_input, mode, pos_slice, incl_embeds
        )
        if apply_ln:
            components = self.apply_ln_to_stack(
                components, layer, mlp_input=mlp_input, pos_slice=pos_slice
            )
        return (components, labels) if return_labels else components

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: PosSlice = None,
        apply_ln: bool = False,
    ):
        """Every attention head's output in layers below ``layer`` (-1: all): "(layer head) batch pos d_model".

        Labels ``L0H0, L0H1, ...``. Uses ``attn.hook_result`` if cached, else computes ``z @ W_O``
        for just the positions asked for. Head outputs exclude ``b_O``; ``incl_remainder`` appends
        the residual stream minus all heads (embeddings, MLPs, biases) as ``remainder``.
        """
        components, labels = dec.stack_head_results(self, layer, incl_remainder, pos_slice)
        if apply_ln:
            components = self.apply_ln_to_stack(components, layer, pos_slice=pos_slice)
        return (components, labels) if return_labels else components

    def compute_head_results(self) -> None:
        """Add ``blocks.L.attn.hook_result`` [batch, pos, head, d_model] for every layer, from ``hook_z``."""
        dec.compute_head_results(self)

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = False,
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        return_labels: bool = False,
    ):
        """The finest split of the residual at ``layer``: every head, every MLP, embeddings, biases.

        Labels ``L0H0..., 0_mlp_out... (or L0N0... with expand_neurons), embed, pos_embed, bias``,
        where ``bias`` is the summed ``b_O`` (plus ``b_out`` when neurons are expanded). The
        components sum exactly to the residual stream read by ``layer`` (its MLP if ``mlp_input``).
        """
        components, labels = dec.full_resid_decomposition(
            self, layer, mlp_input, expand_neurons, pos_slice
        )
        if apply_ln:
            components = self.apply_ln_to_stack(
                components, layer, mlp_input=mlp_input, pos_slice=pos_slice
            )
        return (components, labels) if return_labels else components

    def stack_activation(
        self, activation_name: str, layer: int = -1, sublayer_type: str | None = None
    ) -> torch.Tensor:
        """``cache[activation_name, l]`` for every layer below ``layer`` (-1: all), stacked on dim 0."""
        layer = dec.resid_layer(layer, self.model.cfg.n_layers)
        return torch.stack([self[(activation_name, l, sublayer_type)] for l in range(layer)])
