"""Task-level activation patching: ``sweep(model, task, "z", by="pos")`` -> a labelled result.

Denoising (the default) runs the corrupted prompts and patches in one clean activation at a
time: a high value means that activation alone restores the behaviour. Noising runs the clean
prompts and patches in corrupted activations: a large drop means the behaviour needs it.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from circuitscope.patching.engine import DEFAULT_BUDGET_MB, run_sweep
from circuitscope.patching.plan import check_patchable, hook_name
from circuitscope.patching.result import PatchResult, sweep_labels

__all__ = ["sweep", "DIRECTIONS"]

DIRECTIONS = ("denoise", "noise")


def base_and_source(task, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens of the run being patched, tokens of the run the patches come from)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    if not task.equal_lengths:
        raise ValueError(
            "this task's corrupted prompts differ in length from their clean prompts, so position "
            "p of one run is not position p of the other; patching needs equal lengths (build the "
            "task with require_equal_lengths=True)"
        )
    if direction == "denoise":
        return task.corrupted_tokens, task.clean_tokens
    return task.clean_tokens, task.corrupted_tokens


def sweep(
    model,
    task,
    what: str,
    by: str = "pos",
    direction: str = "denoise",
    metric: Optional[Callable] = None,
    memory_budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = True,
    checkpoint=None,
    per_prompt: bool = False,
    ci: bool = True,
) -> PatchResult:
    """Patch ``what`` (one of ``resid_pre resid_mid resid_post attn_out mlp_out z q k v pattern``)
    for every layer (and head), position by position (``by="pos"``) or at every position at once
    (``by="all"``; ``by="dest_src"`` patches single attention weights).

    ``metric`` defaults to ``task.patching_metric(model)``: 1 = the clean run's logit difference,
    0 = the corrupted run's. Shapes follow TransformerLens (``[layer, pos]``, ``[layer, head]``,
    ``[layer, pos, head]``, ...). ``checkpoint`` is a file path: finished chunks are saved there
    and a rerun after an interruption resumes from them. ``per_prompt=True`` also keeps the value
    of every patch prompt by prompt (``.per_prompt`` ``[prompt, *shape]``) and, with ``ci``, a
    bootstrap 95% interval over prompts for every entry (``.ci``).
    """
    check_patchable(model, what)
    base_tokens, source_tokens = base_and_source(task, direction)
    metric = task.patching_metric(model) if metric is None else metric
    names = [hook_name(what, layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, source = model.run_with_cache(source_tokens, names_filter=names, return_type=None)
    values, axes, base_value, stats = run_sweep(
        model, base_tokens, source, what, by, metric, memory_budget_mb, progress, checkpoint, per_prompt
    )
    prompts = values if per_prompt else None
    values = values.mean(0) if per_prompt else values
    meta = {
        "what": what, "by": by, "direction": direction, "method": "exact", "metric": repr(metric),
        "base_value": base_value, "variants_run": stats.variants, "variants_skipped": stats.skipped,
        "chunks": stats.chunks, "seconds": round(stats.seconds, 4), "gflop": round(stats.flops / 1e9, 3),
        "fast_path": stats.fast_path,
    }
    for name in ("clean_baseline", "corrupted_baseline", "convention"):
        if hasattr(metric, name):
            meta[name] = getattr(metric, name)
    title = f"{'denoising' if direction == 'denoise' else 'noising'} {what} ({'by position' if by == 'pos' else by})"
    result = PatchResult(values, axes, sweep_labels(model, task.clean_tokens, axes), title, meta, per_prompt=prompts)
    if per_prompt and ci:
        from circuitscope.analysis.bootstrap import with_ci

        result = with_ci(result)
    result.base_per_prompt = stats.base_per_prompt  # [prompt] the unpatched run, for paired differences
    return result
