"""Which keys each query may attend to: causal order, padding, and sliding windows.

A batch of prompts of different lengths is padded to one width. Padding on the *right* never
changes a real token's result (causal attention only looks left), so such batches run with the
plain causal mask and its fused kernel; only the loss needs to know where the padding is.
Padding on the *left* shifts the real tokens, so it needs an explicit mask and positions counted
from each prompt's first real token.

Where the mask comes from, in order: the ``attention_mask`` argument; the mask ``to_tokens``
attached to the tensor it returned (:func:`circuitscope.tokens.attached_mask`); otherwise it is
read off the pad token (:func:`padding_mask_from_tokens`).
"""

from __future__ import annotations

from typing import Optional

import torch

from circuitscope.model.kv_cache import KVCache


def padding_mask_from_tokens(tokens: torch.Tensor, pad_id: int, bos_id: Optional[int]) -> Optional[torch.Tensor]:
    """Guess the padding of a token batch ``[batch, pos]`` from its pad token; None if it has none.

    * Leading pad tokens are left padding, as TransformerLens reads them. When the pad token is
      also the BOS token (GPT-2, Pythia), the last leading one is kept: it is the prompt's BOS.
    * Trailing pad tokens are right padding only beyond the fewest any row of the batch ends
      with: an end-of-text token that every prompt ends with (pad == EOS) is text, not padding.

    Returns ``[batch, pos]`` long, 1 on real tokens.
    """
    is_pad = tokens == pad_id  # [batch, pos]
    if not bool(is_pad.any()):
        return None
    n = tokens.shape[1]
    leading = is_pad.long().cumprod(-1).bool()  # [batch, pos] every position so far is a pad
    if bos_id is not None and int(bos_id) == int(pad_id):
        n_lead = leading.sum(-1)  # [batch]
        rows = (n_lead > 0).nonzero().flatten()
        leading[rows, n_lead[rows] - 1] = False  # the BOS
    n_trail = is_pad.flip(-1).long().cumprod(-1).sum(-1)  # [batch]
    excess = n_trail - n_trail.min()  # [batch]
    trailing = torch.arange(n, device=tokens.device)[None, :] >= (n - excess)[:, None]  # [batch, pos]
    mask = ~(leading | trailing)
    return None if bool(mask.all()) else mask.long()


def has_left_padding(mask: Optional[torch.Tensor]) -> bool:
    """True when some masked-out position ``[batch, pos]`` comes before a real one (left padding or
    holes), i.e. when the real tokens are not simply the first ones of each row."""
    if mask is None:
        return False
    later_real = mask.flip(-1).cummax(-1).values.flip(-1)  # [batch, pos] a real token here or later
    return bool((later_real > mask).any())


def positions_and_masks(
    batch: int,
    n_new: int,
    device: torch.device,
    attention_mask: Optional[torch.Tensor],
    past_kv_cache: Optional[KVCache],
    windows: list[Optional[int]],
) -> tuple[torch.Tensor, dict[Optional[int], Optional[torch.Tensor]]]:
    """Absolute positions ``[batch, pos]`` and, for each sliding-window size in ``windows`` (None =
    full causal), the boolean mask ``[batch, 1, q, k]`` (True = may attend) or None for a plain
    causal mask, which lets attention use its fused kernel."""
    past_len = past_kv_cache.length if past_kv_cache is not None else 0
    if attention_mask is None and past_kv_cache is None:
        positions = torch.arange(n_new, device=device).expand(batch, -1)
        key_mask = None
    else:
        if attention_mask is None:
            attention_mask = torch.ones(batch, n_new, dtype=torch.long, device=device)
        attention_mask = attention_mask.to(device)
        key_mask = past_kv_cache.extend_mask(attention_mask) if past_kv_cache is not None else attention_mask
        positions = (key_mask.cumsum(-1) - 1).clamp(min=0)[:, past_len:]
    masks: dict[Optional[int], Optional[torch.Tensor]] = {}
    for window in dict.fromkeys(windows):
        if key_mask is None and (window is None or n_new <= window):
            masks[window] = None
            continue
        km = key_mask if key_mask is not None else torch.ones(batch, n_new, dtype=torch.long, device=device)
        q_idx = torch.arange(past_len, past_len + n_new, device=device)[:, None]
        k_idx = torch.arange(km.shape[1], device=device)[None, :]
        allowed = (k_idx <= q_idx)[None] & km.bool()[:, None, :]  # [batch, q, k]
        if window is not None:
            allowed &= (q_idx - k_idx < window)[None]
        allowed |= k_idx == q_idx  # a padding query attends to itself, so no row is empty (no NaN)
        masks[window] = allowed[:, None]  # [batch, 1, q, k]
    return positions, masks
