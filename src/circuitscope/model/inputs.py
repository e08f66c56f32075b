"""Checks on what the forward pass is given, with errors that say what is wrong and what to do.

Everything here runs before any block does, so a bad argument fails fast instead of producing a
result computed from something other than what the caller meant.
"""

from __future__ import annotations

from typing import Optional

import torch

from circuitscope.model.config import TransformerConfig

_INT_DTYPES = (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8)


def resolve_layer_range(start: Optional[int], stop: Optional[int], n_layers: int) -> tuple[int, int]:
    """``(first block run, one past the last)`` from ``start_at_layer`` / ``stop_at_layer``.

    Negative values count from the end, as Python slices (and TransformerLens) do: with 4 layers,
    ``stop_at_layer=-1`` runs blocks 0-2 and ``start_at_layer=-1`` runs block 3 only. Either may
    equal ``n_layers`` (start: only the unembedding runs; stop: the final residual stream).
    """
    bounds = []
    for name, value, default in (("start_at_layer", start, 0), ("stop_at_layer", stop, n_layers)):
        if value is None:
            bounds.append(default)
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int (a layer index), got {value!r}")
        if not -n_layers <= value <= n_layers:
            raise ValueError(
                f"{name}={value} is out of range for a model with {n_layers} layers: use "
                f"{-n_layers}..{n_layers} (negative values count from the end)"
            )
        bounds.append(value % n_layers if value < 0 else value)
    first, end = bounds
    if first > end:
        raise ValueError(
            f"start_at_layer ({start}, block {first}) comes after stop_at_layer ({stop}, block {end}): "
            "no block would run"
        )
    return first, end


def as_tokens(input, cfg: TransformerConfig) -> torch.Tensor:
    """Validate token ids and return them as a ``[batch, pos]`` tensor (a 1-d input is one prompt;
    a list of ids or of equal-length id lists is accepted too)."""
    if isinstance(input, (list, tuple)):
        if len(input) == 0:
            raise ValueError("the input is an empty list: pass text, a list of texts, or token ids [batch, pos]")
        try:
            input = torch.tensor(input, dtype=torch.long)
        except (TypeError, ValueError) as err:
            raise TypeError(
                "a list input must hold strings or token ids (ints, or equal-length lists of ints); "
                f"got {type(input[0]).__name__} items ({err})"
            ) from None
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"expected text, a list of texts, or a token tensor [batch, pos]; got {type(input).__name__}")
    if input.is_floating_point() and input.dim() == 3:
        raise TypeError(
            f"got a float tensor of shape {tuple(input.shape)}: if it is the residual stream, pass "
            "start_at_layer=L to start the run at block L; tokens must be integer ids [batch, pos]"
        )
    if input.dtype not in _INT_DTYPES:
        raise TypeError(f"tokens must be an integer tensor [batch, pos], got dtype {input.dtype}; use model.to_tokens(text)")
    if input.dim() == 0:
        raise ValueError("tokens is a 0-d tensor (a single id); wrap it as [[id]] or use model.to_tokens(text)")
    if input.dim() == 1:
        input = input[None]
    if input.dim() != 2:
        raise ValueError(f"tokens must be [batch, pos] (or [pos]); got a {input.dim()}-d tensor of shape {tuple(input.shape)}")
    if input.numel() == 0:
        raise ValueError(f"tokens is empty (shape {tuple(input.shape)}): there is nothing to run")
    if input.shape[1] > cfg.n_ctx:
        raise ValueError(
            f"the input is {input.shape[1]} tokens long but {cfg.model_name} has a context "
            f"of {cfg.n_ctx} tokens; truncate the prompt or split it"
        )
    lo, hi = int(input.min()), int(input.max())
    if lo < 0 or hi >= cfg.d_vocab:
        raise ValueError(f"token ids must lie in [0, {cfg.d_vocab}); got ids from {lo} to {hi}")
    return input.long()


def check_attention_mask(mask: Optional[torch.Tensor], batch: int, n_pos: int) -> Optional[torch.Tensor]:
    """A ``[batch, pos]`` mask of 0/1 (or bool), returned as long; None passes through."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(
            f"attention_mask must be an integer or bool tensor of 1 (real token) / 0 (padding), got "
            f"dtype {mask.dtype} (a float mask is ambiguous: additive -inf masks are not accepted)"
        )
    if mask.dim() == 1:
        mask = mask[None]
    if tuple(mask.shape) != (batch, n_pos):
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)} but the input is [batch={batch}, pos={n_pos}]")
    mask = mask.long()
    if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) > 1):
        raise ValueError("attention_mask values must be 0 and 1 (1 = real token)")
    return mask
