"""TransformerLens-compatible activation patching: ``f(model, corrupted_tokens, clean_cache, metric)``.

Activation patching runs the model on one input while replacing a single activation with its
value from another run, and measures how much of the behaviour that one activation restores.
Called as written these functions *denoise*: the base run is on the corrupted tokens and each
patch brings in a clean activation. Pass clean tokens and a corrupted cache to *noise* instead.

Output shapes and index order are TransformerLens 2.x's. Results are exact for any metric; a
metric that declares where it reads (a ``Task``, or ``task.patching_metric(model)``) lets the
engine compute only those logits.
"""

from __future__ import annotations

from typing import Callable

import torch

from circuitscope.patching.engine import run_sweep

__all__ = [
    "get_act_patch_resid_pre", "get_act_patch_resid_mid", "get_act_patch_attn_out", "get_act_patch_mlp_out",
    "get_act_patch_attn_head_out_all_pos", "get_act_patch_attn_head_q_all_pos", "get_act_patch_attn_head_k_all_pos",
    "get_act_patch_attn_head_v_all_pos", "get_act_patch_attn_head_pattern_all_pos",
    "get_act_patch_attn_head_out_by_pos", "get_act_patch_attn_head_q_by_pos", "get_act_patch_attn_head_k_by_pos",
    "get_act_patch_attn_head_v_by_pos", "get_act_patch_attn_head_pattern_by_pos",
    "get_act_patch_attn_head_pattern_dest_src_pos", "get_act_patch_block_every",
    "get_act_patch_attn_head_all_pos_every", "get_act_patch_attn_head_by_pos_every", "as_metric",
]


def as_metric(model, metric):
    """A ``Task`` stands for its normalised patching metric; any callable is used as it is."""
    from circuitscope.tasks.task import Task

    if isinstance(metric, Task):
        return metric.patching_metric(model)
    if not callable(metric):
        raise TypeError(f"patching_metric must be a function of the logits (or a Task), got {type(metric).__name__}")
    return metric


def _patch(what: str, by: str, doc: str) -> Callable:
    def fn(model, corrupted_tokens: torch.Tensor, clean_cache, patching_metric: Callable, **engine) -> torch.Tensor:
        metric = as_metric(model, patching_metric)
        return run_sweep(model, corrupted_tokens, clean_cache, what, by, metric, **engine)[0]

    fn.__doc__ = (
        f"{doc}\n\nPatches ``{what}`` from ``clean_cache`` into the run on ``corrupted_tokens`` and "
        "returns the metric per patch. Engine options: ``memory_budget_mb``, ``progress``, ``checkpoint``."
    )
    return fn


get_act_patch_resid_pre = _patch("resid_pre", "pos", "Residual stream entering each block, each position: [layer, pos].")
get_act_patch_resid_mid = _patch("resid_mid", "pos", "Residual stream between attention and MLP: [layer, pos].")
get_act_patch_attn_out = _patch("attn_out", "pos", "Each attention layer's output, each position: [layer, pos].")
get_act_patch_mlp_out = _patch("mlp_out", "pos", "Each MLP's output, each position: [layer, pos].")
get_act_patch_attn_head_out_all_pos = _patch("z", "all", "Each head's output (z) at every position at once: [layer, head].")
get_act_patch_attn_head_q_all_pos = _patch("q", "all", "Each head's queries at every position: [layer, head].")
get_act_patch_attn_head_k_all_pos = _patch("k", "all", "Each head's keys at every position: [layer, head].")
get_act_patch_attn_head_v_all_pos = _patch("v", "all", "Each head's values at every position: [layer, head].")
get_act_patch_attn_head_pattern_all_pos = _patch("pattern", "all", "Each head's whole attention pattern: [layer, head].")
get_act_patch_attn_head_out_by_pos = _patch("z", "pos", "Each head's output at one position: [layer, pos, head].")
get_act_patch_attn_head_q_by_pos = _patch("q", "pos", "Each head's query at one position: [layer, pos, head].")
get_act_patch_attn_head_k_by_pos = _patch("k", "pos", "Each head's key at one position: [layer, pos, head].")
get_act_patch_attn_head_v_by_pos = _patch("v", "pos", "Each head's value at one position: [layer, pos, head].")
get_act_patch_attn_head_pattern_by_pos = _patch(
    "pattern", "pos", "Each head's attention row of one destination position: [layer, head, dest_pos]."
)
get_act_patch_attn_head_pattern_dest_src_pos = _patch(
    "pattern", "dest_src", "Each single attention weight (dest, src) of each head: [layer, head, dest_pos, src_pos]."
)


def get_act_patch_block_every(model, corrupted_tokens, clean_cache, patching_metric, **engine) -> torch.Tensor:
    """resid_pre, attn_out and mlp_out by position, stacked: [3, layer, pos]."""
    return torch.stack([f(model, corrupted_tokens, clean_cache, patching_metric, **engine) for f in
                        (get_act_patch_resid_pre, get_act_patch_attn_out, get_act_patch_mlp_out)])


def get_act_patch_attn_head_all_pos_every(model, corrupted_tokens, clean_cache, patching_metric, **engine) -> torch.Tensor:
    """Head output, query, key, value and pattern at all positions, stacked: [5, layer, head]."""
    return torch.stack([f(model, corrupted_tokens, clean_cache, patching_metric, **engine) for f in (
        get_act_patch_attn_head_out_all_pos, get_act_patch_attn_head_q_all_pos, get_act_patch_attn_head_k_all_pos,
        get_act_patch_attn_head_v_all_pos, get_act_patch_attn_head_pattern_all_pos)])


def get_act_patch_attn_head_by_pos_every(model, corrupted_tokens, clean_cache, patching_metric, **engine) -> torch.Tensor:
    """Head output, query, key, value and pattern by position, stacked: [5, layer, pos, head]
    (the pattern's [layer, head, dest_pos] transposed to match, as TransformerLens does)."""
    parts = [f(model, corrupted_tokens, clean_cache, patching_metric, **engine) for f in (
        get_act_patch_attn_head_out_by_pos, get_act_patch_attn_head_q_by_pos, get_act_patch_attn_head_k_by_pos,
        get_act_patch_attn_head_v_by_pos)]
    pattern = get_act_patch_attn_head_pattern_by_pos(model, corrupted_tokens, clean_cache, patching_metric, **engine)
    return torch.stack(parts + [pattern.transpose(1, 2)])
