"""Head detectors: how much of a head's attention lands where a known kind of head would look.

Each detector names, for every query position, the key positions a head of that kind attends to:

* **previous token**: the key just before the query (``key = query - 1``);
* **duplicate token**: earlier keys holding the same token as the query;
* **induction**: keys just *after* an earlier occurrence of the query's token (the head looks
  for where this token appeared before and attends to what followed it, so it can copy it).

A head's score on a prompt is its attention mass on those target keys, averaged over the query
positions that have at least one target (so a perfect head of that kind scores 1 whatever the
prompt, and a head attending uniformly scores about ``1 / (query + 1)`` per query). Prompts with
no scorable query get NaN, which means and bootstrap intervals leave out. ``valid`` (``[batch,
pos]``, True for real tokens) keeps padding out of both queries and keys.
"""

from __future__ import annotations

from typing import Optional

import torch

from circuitscope.analysis._typing import Bool, Float, Int, Tensor

__all__ = [
    "DETECTORS", "detector_targets", "detector_weights", "detector_score",
    "previous_token_score", "duplicate_token_score", "induction_score",
]

DETECTORS = ("previous_token", "duplicate_token", "induction")


def detector_targets(
    kind: str,
    tokens: Optional[Int[Tensor, "batch pos"]] = None,
    n_pos: Optional[int] = None,
    valid: Optional[Bool[Tensor, "batch pos"]] = None,
) -> Bool[Tensor, "batch query key"]:
    """Which keys a head of ``kind`` attends to from each query (see the module docstring).

    The previous-token detector needs only ``n_pos`` (or tokens for the shape); the others read
    the tokens.
    """
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}; choose from {DETECTORS}")
    if tokens is None and kind != "previous_token":
        raise ValueError(f"the {kind} detector compares tokens: pass tokens [batch, pos]")
    if tokens is not None:
        batch, n_pos = tokens.shape
        device = tokens.device
    elif n_pos is None:
        raise ValueError("pass tokens or n_pos")
    else:
        batch = 1 if valid is None else valid.shape[0]
        device = None if valid is None else valid.device
    q = torch.arange(n_pos, device=device)[:, None]  # [query, 1]
    k = torch.arange(n_pos, device=device)[None, :]  # [1, key]
    if kind == "previous_token":
        targets = (k == q - 1).expand(batch, n_pos, n_pos)  # [batch, query, key]
    else:
        same = tokens[:, :, None] == tokens[:, None, :]  # [batch, query, key]: token(query) == token(key)
        if kind == "duplicate_token":
            targets = same & (k < q)
        else:
            after = torch.zeros_like(same)
            after[:, :, 1:] = same[:, :, :-1]  # token(query) == token(key - 1)
            targets = after & (k < q)  # the earlier occurrence ends before the query
    if valid is not None:
        valid = valid.to(torch.bool)
        targets = targets & valid[:, :, None] & valid[:, None, :]
    return targets


def detector_weights(targets: Bool[Tensor, "batch query key"]) -> Float[Tensor, "batch query key"]:
    """``targets`` divided by the number of scorable queries of each prompt (NaN rows when none),
    so that ``(pattern * weights).sum((-2, -1))`` is the detector score."""
    scored = targets.any(-1)  # [batch, query]
    n_scored = scored.sum(-1).to(torch.float32)  # [batch]
    return targets.to(torch.float32) / n_scored[:, None, None]  # 0 / 0 = NaN when nothing is scorable


def detector_score(
    pattern: Float[Tensor, "batch *head query key"], targets: Bool[Tensor, "batch query key"]
) -> Float[Tensor, "batch *head"]:
    """Mean over scorable queries of the attention mass on the target keys (NaN if none)."""
    if pattern.ndim < 3 or pattern.shape[-2:] != targets.shape[-2:] or pattern.shape[0] != targets.shape[0]:
        raise ValueError(
            f"pattern {tuple(pattern.shape)} must be [batch, ..., query, key] matching targets {tuple(targets.shape)}"
        )
    weights = detector_weights(targets).to(pattern.dtype)  # [batch, query, key]
    flat = pattern.reshape(pattern.shape[0], -1, pattern.shape[-2] * pattern.shape[-1])  # [batch, heads, q*k]
    score = torch.bmm(flat, weights.reshape(weights.shape[0], -1, 1))[..., 0]  # [batch, heads]
    return score.reshape(pattern.shape[:-2])


def previous_token_score(
    pattern: Float[Tensor, "batch *head query key"], valid: Optional[Bool[Tensor, "batch pos"]] = None
) -> Float[Tensor, "batch *head"]:
    """Attention from each token to the one before it, averaged over positions 1.. (1 = perfect)."""
    targets = detector_targets("previous_token", n_pos=pattern.shape[-1], valid=valid)
    return detector_score(pattern, targets.expand(pattern.shape[0], -1, -1).to(pattern.device))


def duplicate_token_score(
    pattern: Float[Tensor, "batch *head query key"],
    tokens: Int[Tensor, "batch pos"],
    valid: Optional[Bool[Tensor, "batch pos"]] = None,
) -> Float[Tensor, "batch *head"]:
    """Attention from each repeated token to its earlier occurrences."""
    return detector_score(pattern, detector_targets("duplicate_token", tokens.to(pattern.device), valid=valid))


def induction_score(
    pattern: Float[Tensor, "batch *head query key"],
    tokens: Int[Tensor, "batch pos"],
    valid: Optional[Bool[Tensor, "batch pos"]] = None,
) -> Float[Tensor, "batch *head"]:
    """Attention from each repeated token to the token after its earlier occurrence."""
    return detector_score(pattern, detector_targets("induction", tokens.to(pattern.device), valid=valid))
