"""Cutting cached tensors by position and by prompt: what ``pos_slice`` and ``batch_slice`` mean.

``pos_slice`` (and ``batch_slice``) accept:

* ``None``: keep everything;
* an ``int``: that position (the dim is dropped);
* a ``slice``, or a ``(start, stop[, step])`` tuple read as ``slice(start, stop, step)`` exactly
  as TransformerLens's ``Slice`` reads it;
* a ``list`` / ``range`` of ints: those positions (the dim is kept);
* a 1-D integer **tensor with one entry per prompt** (``pos_slice`` only): ``idx[b]`` is the
  position to take from prompt ``b`` (the pos dim is dropped). This is what IOI-style datasets
  need, where prompts end at different positions (``pos_slice=dataset.word_idx["end"]``). For a
  ``batch_slice`` a tensor simply lists prompts.

An int or listed position outside the tensor raises ``IndexError`` (negative ones count from the
end, ``-T`` at the earliest) instead of wrapping around; slices clip as Python slices do.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence, Union

import numpy as np
import torch

PosSlice = Union[None, int, slice, tuple, Sequence[int], torch.Tensor, np.ndarray]

__all__ = ["PosSlice", "take_positions", "take_index", "cut_scale_and_stack"]


def _check_range(idx: torch.Tensor, size: int, what: str) -> None:
    """Raise if any index lies outside ``[-size, size)`` (instead of wrapping or clipping)."""
    if idx.numel() and (int(idx.min()) < -size or int(idx.max()) >= size):
        bad = idx[(idx < -size) | (idx >= size)].tolist()
        raise IndexError(
            f"{what} {bad} out of range for a dimension of size {size} (valid: {-size}..{size - 1})"
        )


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
        _check_range(idx, t.shape[dim], "pos_slice position(s)")
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
    return take_index(t, pos_slice, dim, "pos_slice position(s)")


def take_index(t: torch.Tensor, index: Any, dim: int, what: str = "index") -> torch.Tensor:
    """Index one dim with ``None`` / int (drops the dim) / slice or tuple (a slice) / list of ints."""
    if index is None:
        return t
    dim = dim % t.ndim
    if isinstance(index, (torch.Tensor, np.ndarray)) and index.ndim == 0:
        index = int(index)  # a 0-d tensor acts like an int (drops the dim)
    if isinstance(index, tuple):
        index = slice(*index)  # TransformerLens: a tuple is the arguments of a slice
    if isinstance(index, slice):
        return t[(slice(None),) * dim + (index,)]
    if isinstance(index, (list, range, torch.Tensor, np.ndarray)):
        idx = torch.as_tensor(list(index) if isinstance(index, range) else index)
        if idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise TypeError(f"{what} must be integers, got {idx.dtype}")
        idx = idx.to(torch.long).reshape(-1)
        _check_range(idx, t.shape[dim], what)
        return t.index_select(dim, idx.to(t.device) % t.shape[dim])
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(
            f"{what} must be None, an int, a slice, a (start, stop) tuple or a list of ints; "
            f"got {type(index).__name__} {index!r}"
        ) from None
    _check_range(torch.tensor([i]), t.shape[dim], what)
    return t.select(dim, i)


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
    cut = full if batch_slice is None else take_index(full, batch_slice, 0, "batch_slice prompt(s)")
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
        stack = take_index(stack, batch_slice, stack.ndim - full.ndim, "batch_slice prompt(s)")
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
