"""Cutting the residual stream into pieces: the stacks behind the cache's direct logit attribution.

The residual stream at any point is a sum of earlier outputs (embeddings, each attention layer or
head, each MLP or neuron, plus biases). ``ActivationCache`` exposes these stacks as methods; the
work happens in the functions here, which take the cache as their first argument.

``pos_slice`` is read as described in :mod:`circuitscope.cache_slicing` (an int, a slice or
``(start, stop)`` tuple, a list of positions, or a tensor with one position per prompt).
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING

import torch

from circuitscope.cache_slicing import PosSlice, cut_scale_and_stack, take_index, take_positions

if TYPE_CHECKING:
    from circuitscope.cache import ActivationCache

logger = logging.getLogger(__name__)

__all__ = ["PosSlice", "cut_scale_and_stack", "take_index", "take_positions", "resid_layer"]


def as_layer(layer, what: str = "layer") -> int:
    """An integer layer index, or a TypeError naming what was passed instead (e.g. 1.0 or "1")."""
    if isinstance(layer, bool) or isinstance(layer, (float, str)):
        raise TypeError(f"{what} must be an int, got {type(layer).__name__} {layer!r}")
    try:
        return operator.index(layer)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(layer).__name__} {layer!r}") from None


def resid_layer(layer: int | None, n_layers: int) -> int:
    """A residual-stream point in ``0..n_layers`` (``n_layers`` = final, before unembed).

    ``None`` and ``-1`` mean final; other negatives count back (``-2`` -> input of the last block).
    """
    if layer is None:
        return n_layers
    layer = as_layer(layer, "layer")
    resolved = layer + n_layers + 1 if layer < 0 else layer
    if not 0 <= resolved <= n_layers:
        raise ValueError(
            f"layer {layer} is out of range: use 0..{n_layers} (n_layers = {n_layers} means the final "
            "residual stream; None or -1 also mean final)"
        )
    return resolved


def _flags(cache: "ActivationCache") -> tuple[int, bool, bool]:
    cfg = cache.model.cfg
    return (
        cfg.n_layers,
        bool(getattr(cfg, "parallel_attn_mlp", False)),
        bool(getattr(cfg, "attn_only", False)),
    )


def check_mlp_input(cache: "ActivationCache", layer: int) -> None:
    """``mlp_input=True`` means the residual read by block ``layer``'s MLP, so it must exist."""
    n_layers, _, attn_only = _flags(cache)
    if attn_only:
        raise ValueError("mlp_input=True, but this model is attention-only (it has no MLPs)")
    if layer >= n_layers:
        raise ValueError(
            f"mlp_input=True needs the layer of a block (0..{n_layers - 1}), got the final layer {layer}"
        )


def resid_at(cache: "ActivationCache", layer: int, mlp_input: bool = False) -> torch.Tensor:
    """The residual stream read by block ``layer`` (its MLP if ``mlp_input``), or the final one."""
    n_layers, parallel, _ = _flags(cache)
    if layer == n_layers:
        return cache[f"blocks.{n_layers - 1}.hook_resid_post"]
    if mlp_input and not parallel:
        return cache[f"blocks.{layer}.hook_resid_mid"]
    return cache[f"blocks.{layer}.hook_resid_pre"]


def stack(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``torch.cat`` of ``[n_i, ...]`` parts, or an empty ``[0, *like.shape]`` when there are none."""
    if not parts:
        return like.new_zeros((0, *like.shape))
    return torch.cat(parts, dim=0)


def embed_components(
    cache: "ActivationCache", pos_slice: PosSlice
) -> tuple[list[torch.Tensor], list[str]]:
    """``hook_embed`` and (for learned positions) ``hook_pos_embed``, each ``[1, batch, (pos), d_model]``."""
    parts = [take_positions(cache["hook_embed"], pos_slice)[None]]
    labels = ["embed"]
    if (
        "hook_pos_embed" in cache
        or getattr(cache.model.cfg, "positional_embedding_type", None) == "standard"
    ):
        parts.append(take_positions(cache["hook_pos_embed"], pos_slice)[None])
        labels.append("pos_embed")
    return parts, labels


def accumulated_resid(
    cache, layer, incl_mid, pos_slice, mlp_input
) -> tuple[torch.Tensor, list[str]]:
    """The residual stream at every point up to ``layer``: ``[n_points, batch, (pos), d_model]``."""
    n_layers, parallel, attn_only = _flags(cache)
    layer = resid_layer(layer, n_layers)
    if mlp_input:
        check_mlp_input(cache, layer)
    has_mid = not (parallel or attn_only)
    names, labels = [], []
    for l in range(layer + 1):
        if l == n_layers:
            names.append(f"blocks.{n_layers - 1}.hook_resid_post")
            labels.append("final_post")
            break
        names.append(f"blocks.{l}.hook_resid_pre")
        labels.append(f"{l}_pre")
        if has_mid and ((incl_mid and l < layer) or (mlp_input and l == layer)):
            names.append(f"blocks.{l}.hook_resid_mid")
            labels.append(f"{l}_mid")
    return torch.stack([take_positions(cache[n], pos_slice) for n in names]), labels


def decompose_resid(
    cache, layer, mlp_input, mode, pos_slice, incl_embeds
) -> tuple[torch.Tensor, list[str]]:
    """Embeddings plus each layer's attention / MLP output, summing to the residual at ``layer``."""
    if mode not in ("all", "attn", "mlp"):
        raise ValueError(f"mode must be 'all', 'attn' or 'mlp', got {mode!r}")
    n_layers, parallel, attn_only = _flags(cache)
    layer = resid_layer(layer, n_layers)
    if mlp_input:
        check_mlp_input(cache, layer)
    incl_attn, incl_mlp = mode != "mlp", mode != "attn" and not attn_only
    parts, labels = embed_components(cache, pos_slice) if incl_embeds else ([], [])
    names = []
    for l in range(layer):
        if incl_attn:
            names.append((f"blocks.{l}.hook_attn_out", f"{l}_attn_out"))
        if incl_mlp:
            names.append((f"blocks.{l}.hook_mlp_out", f"{l}_mlp_out"))
    if mlp_input and incl_attn and not parallel:
        names.append((f"blocks.{layer}.hook_attn_out", f"{layer}_attn_out"))
    parts += [take_positions(cache[n], pos_slice)[None] for n, _ in names]
    labels += [label for _, label in names]
    return stack(parts, take_positions(resid_at(cache, layer, mlp_input), pos_slice)), labels


def head_results(cache, layer: int, pos_slice: PosSlice) -> tuple[torch.Tensor, bool]:
    """Each head's output ``[batch, (pos), head, d_model]`` at ``layer`` (no ``b_O``).

    Read from ``attn.hook_result`` when cached; otherwise computed as ``z @ W_O`` for just the
    positions in ``pos_slice``. The flag says whether it had to be computed.
    """
    name = f"blocks.{layer}.attn.hook_result"
    if name in cache:
        return take_positions(cache[name], pos_slice, pos_dim=-3), False
    z = take_positions(
        cache[f"blocks.{layer}.attn.hook_z"], pos_slice, pos_dim=-3
    )  # [batch, (pos), head, d_head]
    W_O = cache.model.W_O[layer].to(device=z.device, dtype=z.dtype)  # [head, d_head, d_model]
    return torch.einsum("...hd,hdm->...hm", z, W_O), True


def _heads(cache, n_attn_layers: int, pos_slice: PosSlice) -> tuple[list[torch.Tensor], list[str]]:
    """Head outputs of layers ``0..n_attn_layers-1``, each ``[head, batch, (pos), d_model]``."""
    parts, labels, computed = [], [], False
    for l in range(n_attn_layers):
        results, was_computed = head_results(cache, l, pos_slice)
        computed |= was_computed
        parts.append(results.movedim(-2, 0))
        labels += [f"L{l}H{h}" for h in range(results.shape[-2])]
    if computed:
        logger.info("attn.hook_result isn't cached; computed head results from hook_z and W_O")
    return parts, labels


def stack_head_results(cache, layer, incl_remainder, pos_slice) -> tuple[torch.Tensor, list[str]]:
    """Every head's output below ``layer``: ``[n_layers_used * n_heads, batch, (pos), d_model]``."""
    layer = resid_layer(layer, cache.model.cfg.n_layers)
    parts, labels = _heads(cache, layer, pos_slice)
    resid = take_positions(resid_at(cache, layer), pos_slice)
    components = stack(parts, resid)
    if incl_remainder:
        components = torch.cat([components, (resid - components.sum(0))[None]])
        labels.append("remainder")
    return components, labels


def compute_head_results(cache) -> None:
    """Store ``blocks.L.attn.hook_result`` for every layer (all positions), computed from ``hook_z``."""
    for l in range(cache.model.cfg.n_layers):
        name = f"blocks.{l}.attn.hook_result"
        if name in cache:
            logger.info("%s is already cached; leaving it as is", name)
            continue
        cache.cache_dict[name] = head_results(cache, l, None)[0]


def neuron_results(cache, layer: int, pos_slice: PosSlice) -> torch.Tensor:
    """Each MLP neuron's output ``[d_mlp, batch, (pos), d_model]`` at ``layer`` (no ``b_out``)."""
    W_out = getattr(cache.model, "W_out", None)
    if W_out is None:
        raise AttributeError(
            "expand_neurons=True needs model.W_out [n_layers, d_mlp, d_model]; this model has none"
        )
    post = take_positions(
        cache[f"blocks.{layer}.mlp.hook_post"], pos_slice
    )  # [batch, (pos), d_mlp]
    W = W_out[layer].to(device=post.device, dtype=post.dtype)  # [d_mlp, d_model]
    return (post[..., :, None] * W).movedim(-2, 0)


def full_resid_decomposition(
    cache, layer, mlp_input, expand_neurons, pos_slice
) -> tuple[torch.Tensor, list[str]]:
    """Every head, every MLP (or neuron), the embeddings and the summed biases, in that order."""
    n_layers, parallel, attn_only = _flags(cache)
    layer = resid_layer(layer, n_layers)
    if mlp_input:
        check_mlp_input(cache, layer)
    attn_layers = layer + (1 if mlp_input and not parallel else 0)
    mlp_layers = 0 if attn_only else layer
    resid = take_positions(resid_at(cache, layer, mlp_input), pos_slice)  # [batch, (pos), d_model]
    parts, labels = _heads(cache, attn_layers, pos_slice)
    for l in range(mlp_layers):
        if expand_neurons:
            neurons = neuron_results(cache, l, pos_slice)
            parts.append(neurons)
            labels += [f"L{l}N{n}" for n in range(neurons.shape[0])]
        else:
            parts.append(take_positions(cache[f"blocks.{l}.hook_mlp_out"], pos_slice)[None])
            labels.append(f"{l}_mlp_out")
    embeds, embed_labels = embed_components(cache, pos_slice)
    parts += embeds
    labels += embed_labels
    bias = resid.new_zeros(resid.shape[-1])
    for l in range(attn_layers):
        bias = bias + cache.model.b_O[l].to(bias)
    if expand_neurons:
        for l in range(mlp_layers):
            bias = bias + cache.model.b_out[l].to(bias)
    parts.append(bias.expand(resid.shape)[None])
    labels.append("bias")
    return torch.cat(parts, dim=0), labels
