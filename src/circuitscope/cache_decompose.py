"""Cutting the residual stream into pieces: position slicing and the stacks behind the cache's DLA.

The residual stream at any point is a sum of earlier outputs (embeddings, each attention layer or
head, each MLP or neuron, plus biases). ``ActivationCache`` exposes these stacks as methods; the
work happens in the functions here, which take the cache as their first argument.

``pos_slice`` (and ``batch_slice``) accept: ``None`` (keep everything), an ``int`` (that position;
the dim is dropped), a ``slice``, a list/tuple/range of ints (those positions, dim kept), or a 1-D
integer **tensor with one entry per prompt**: ``idx[b]`` is the position to take from prompt ``b``
(the pos dim is dropped). The last form is what IOI-style datasets need, where prompts end at
different positions (``pos_slice=dataset.word_idx["end"]``). To take several positions from every
prompt, pass a list or slice instead of a tensor.
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np
import torch

if TYPE_CHECKING:
    from circuitscope.cache import ActivationCache

logger = logging.getLogger(__name__)

PosSlice = Union[None, int, slice, Sequence[int], torch.Tensor, np.ndarray]


def take_positions(t: torch.Tensor, pos_slice: PosSlice, pos_dim: int = -2) -> torch.Tensor:
    """Apply ``pos_slice`` to dim ``pos_dim`` of ``t`` (the dim before it must be batch for a
    per-prompt index tensor). ``[batch, pos, ...] -> [batch, ...]`` for int / per-prompt."""
    if pos_slice is None:
        return t
    dim = pos_dim % t.ndim
    lead = (slice(None),) * dim
    if isinstance(pos_slice, (torch.Tensor, np.ndarray)):
        idx = torch.as_tensor(pos_slice)
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.ndim > 1:
            raise TypeError(
                f"pos_slice tensor must hold integer positions, one per prompt; got {idx.dtype} {tuple(idx.shape)}"
            )
        if idx.ndim == 0:
            return t.select(dim, int(idx))
        if dim == 0:
            raise ValueError(
                "a per-prompt pos_slice tensor needs a batch dimension, but this cache has none"
            )
        if idx.shape[0] != t.shape[dim - 1]:
            raise ValueError(
                f"per-prompt pos_slice has {idx.shape[0]} entries but there are {t.shape[dim - 1]} prompts; "
                "a tensor means 'position idx[b] of prompt b' (use a list or slice for the same positions in every prompt)"
            )
        batch = torch.arange(t.shape[dim - 1], device=t.device)
        return t[lead[:-1] + (batch, idx.to(t.device))]
    return take_index(t, pos_slice, dim)


def take_index(t: torch.Tensor, index: Any, dim: int) -> torch.Tensor:
    """Index one dim with ``None`` / int (drops the dim) / slice / list of ints (keeps it)."""
    if index is None:
        return t
    dim = dim % t.ndim
    if isinstance(index, slice):
        return t[(slice(None),) * dim + (index,)]
    if isinstance(index, (list, tuple, range, torch.Tensor, np.ndarray)):
        idx = torch.as_tensor(list(index) if isinstance(index, range) else index, dtype=torch.long)
        return t.index_select(dim, idx.reshape(-1).to(t.device) % t.shape[dim])
    return t.select(dim, operator.index(index))


def cut_scale_and_stack(
    scale: torch.Tensor,
    stack: torch.Tensor,
    pos_slice: PosSlice,
    batch_slice: Any,
    cache_has_batch: bool,
    stack_has_batch: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a cached ``hook_scale`` [batch, pos, 1] the way the stack was cut, for broadcasting.

    ``pos_slice`` then ``batch_slice`` are applied to the scale. The stack must already be cut by
    ``pos_slice``; it may or may not be cut by ``batch_slice`` (TransformerLens cuts it here), so an
    uncut stack is cut too. Returns ``(scale, stack)`` that broadcast, or raises ValueError.
    """
    if scale.ndim == (3 if cache_has_batch else 2) + 1:
        scale = scale[..., 0, :]  # split qkv input: every head's input had the same scale
    full = take_positions(scale, pos_slice, pos_dim=-2)  # [batch, (pos), 1]
    if batch_slice is not None and not cache_has_batch:
        raise ValueError("batch_slice given, but this cache has no batch dimension")
    cut = full if batch_slice is None else take_index(full, batch_slice, 0)
    batch_kept = cache_has_batch and not _is_int(batch_slice)
    if not stack_has_batch and batch_kept:
        if cut.shape[0] != 1:
            raise ValueError(
                f"has_batch_dim=False, but the cache holds {cut.shape[0]} prompts; "
                "pass batch_slice=<prompt index>"
            )
        cut = cut[0]
    # An int batch_slice drops the batch dim, so an uncut stack is recognised first in that case.
    can_cut = stack_has_batch and cache_has_batch and batch_slice is not None
    if can_cut and _ends_like(stack, full) and not (batch_kept and _ends_like(stack, cut)):
        stack = take_index(stack, batch_slice, stack.ndim - full.ndim)
    elif not _ends_like(stack, cut):
        raise ValueError(
            f"residual_stack {tuple(stack.shape)} does not line up with the layer-norm scale cut by "
            f"pos_slice={pos_slice!r}, batch_slice={batch_slice!r}: {tuple(cut.shape)} (expected "
            "the stack to end in [batch, pos, d_model] cut the same way)"
        )
    return cut, stack


def _ends_like(stack: torch.Tensor, scale: torch.Tensor) -> bool:
    """Does ``stack`` end in the scale's dims (all but its trailing 1) followed by d_model?"""
    k = scale.ndim
    return stack.ndim >= k and tuple(stack.shape[stack.ndim - k : -1]) == tuple(scale.shape[:-1])


def _is_int(index: Any) -> bool:
    """An index that drops its dim: a Python/numpy int or a 0-d tensor."""
    if isinstance(index, torch.Tensor):
        return index.ndim == 0
    try:
        operator.index(index)
        return True
    except TypeError:
        return False


def resid_layer(layer: int | None, n_layers: int) -> int:
    """A residual-stream point in ``0..n_layers`` (``n_layers`` = final, before unembed).

    ``None`` and ``-1`` mean final; other negatives count back (``-2`` -> input of the last block).
    """
    if layer is None:
        return n_layers
    layer = operator.index(layer)
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
