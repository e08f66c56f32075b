"""Direct logit attribution on a cache: layer-norm scaling and stacks of residual components.

:class:`ResidualStacks` is mixed into :class:`~circuitscope.cache.ActivationCache`. Each method
returns a stack ``[component, batch, (pos), d_model]`` of pieces that sum to a residual stream
(embeddings, layers, heads or neurons), or scales / projects such a stack the way the model's
final layer norm and unembedding would. Semantics follow TransformerLens; ``pos_slice`` is read
as in :mod:`circuitscope.cache_slicing`.
"""

from __future__ import annotations

from typing import Any

import torch

from circuitscope import cache_decompose as dec
from circuitscope.cache_slicing import PosSlice, take_index, take_positions


class ResidualStacks:
    """Mixin: needs ``self.model`` (with ``cfg``), ``self[...]`` and ``self.has_batch_dim``."""

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
        if not isinstance(residual_stack, torch.Tensor) or residual_stack.ndim == 0:
            raise TypeError(f"residual_stack must be a tensor [..., d_model], got {type(residual_stack).__name__}")
        if residual_stack.shape[-1] != cfg.d_model:
            raise ValueError(
                f"residual_stack ends in a dimension of {residual_stack.shape[-1]}, but this model's "
                f"residual stream has d_model={cfg.d_model}; pass residual-stream components "
                "[..., batch, (pos), d_model] (not per-head z, MLP neurons or logits)"
            )
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

    # ---- MLP neurons ---------------------------------------------------------------------------
    def get_neuron_results(
        self, layer: int, neuron_slice: Any = None, pos_slice: PosSlice = None
    ) -> torch.Tensor:
        """What each MLP neuron of ``layer`` writes into the residual stream: ``post[n] * W_out[n]``.

        Returns ``[batch, (pos), neuron, d_model]`` (no ``b_out``); an int ``neuron_slice`` drops
        the neuron dim. Computed on demand, never stored: it is d_model times larger than
        ``mlp.hook_post``.
        """
        n_layers = self.model.cfg.n_layers
        l = dec.as_layer(layer)
        if not -n_layers <= l < n_layers:
            raise ValueError(f"layer {layer} is out of range for a {n_layers}-layer model")
        l %= n_layers
        post = take_positions(self[f"blocks.{l}.mlp.hook_post"], pos_slice)  # [batch, (pos), d_mlp]
        W_out = self.model.W_out[l].to(device=post.device, dtype=post.dtype)  # [d_mlp, d_model]
        if neuron_slice is not None:
            post = take_index(post, neuron_slice, -1, "neuron_slice neuron(s)")
            W_out = take_index(W_out, neuron_slice, 0, "neuron_slice neuron(s)")
        return post[..., None] * W_out

    def stack_neuron_results(
        self,
        layer: int | None = None,
        pos_slice: PosSlice = None,
        neuron_slice: Any = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
    ):
        """Every neuron's output in the blocks below ``layer`` (None/-1: all): "neuron batch (pos) d_model".

        Labels ``L0N0, L0N1, ...``; ``incl_remainder`` appends the residual stream entering
        ``layer`` minus all neurons (embeddings, attention, biases) as ``remainder``. Memory grows
        as n_layers * d_mlp * d_model per position: slice positions or neurons on large models.
        """
        layer = dec.resid_layer(layer, self.model.cfg.n_layers)
        d_mlp = self.model.W_out.shape[-2]
        ids = take_index(torch.arange(d_mlp), neuron_slice, 0, "neuron_slice neuron(s)").reshape(-1)
        resid = take_positions(dec.resid_at(self, layer), pos_slice)  # [batch, (pos), d_model]
        parts, labels = [], []
        no_mlp = getattr(self.model.cfg, "attn_only", False)
        for l in range(0 if no_mlp else layer):
            results = self.get_neuron_results(l, neuron_slice, pos_slice)
            if results.ndim == resid.ndim:  # an int neuron_slice dropped the neuron dim
                results = results[..., None, :]
            parts.append(results.movedim(-2, 0))
            labels += [f"L{l}N{int(n)}" for n in ids]
        components = dec.stack(parts, resid)
        if incl_remainder:
            components = torch.cat([components, (resid - components.sum(0))[None]])
            labels.append("remainder")
        if apply_ln:
            components = self.apply_ln_to_stack(components, layer, pos_slice=pos_slice)
        return (components, labels) if return_labels else components
