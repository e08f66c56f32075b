"""Backup heads: whose direct effect grows when the main heads are knocked out.

Knocking out a circuit's main heads often costs less logit difference than their direct logit
attribution (DLA) promised, because other heads change what they write and make up part of the
loss (IOI's *backup name movers*). To find them, measure every head's DLA on the clean prompts,
knock the given heads out (``circuitscope.patching.ablated``), measure again, and look at the
difference: heads with a clearly positive ``after - before`` are backups. The bootstrap interval
on the difference (paired: both runs see the same prompts) says which changes are more than noise.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional, Sequence, Union

import torch

from circuitscope.analysis._typing import Float, Int, Tensor
from circuitscope.analysis.attribution import _names as _dla_names
from circuitscope.analysis.attribution import dla_per_prompt
from circuitscope.analysis.bootstrap import CI, summarize
from circuitscope.analysis.runs import DEFAULT_MEMORY_MB, run_batches
from circuitscope.results import Result
from circuitscope.tasks.metrics import task_logit_diff
from circuitscope.tasks.task import Task

__all__ = ["backup_heads"]


def backup_heads(
    model,
    task: Task,
    heads: Sequence[tuple[int, int]],
    *,
    method: str = "mean",
    reference: Optional[Int[Tensor, "ref_prompt pos"]] = None,
    positions: Union[None, str, Sequence[int]] = None,
    ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB,
    batch_size: Optional[int] = None,
    **ablation_options,
) -> Result:
    """DLA of every head before and after ablating ``heads``, and the change: ``[which, layer, head]``
    with ``which`` = ``before, after, difference``.

    ``method``: ``"zero"``, ``"mean"`` or ``"resample"`` (see ``circuitscope.patching.ablated``);
    ``reference`` (the batch means / resamples come from) defaults to ``task.corrupted_tokens``;
    ``positions``: None (every position), a list of positions, or a ``task.positions`` label such as
    ``"end"`` (each prompt's own position). ``meta`` records the logit difference before and after.
    Other options go to ``ablated``; per-prompt ones (``target_groups``) need ``batch_size=len(task)``,
    and ``"resample"`` pairs prompts within each batch.
    """
    from circuitscope.patching import ablated

    heads = [(int(l), int(h)) for l, h in heads]
    reference = task.corrupted_tokens if reference is None else reference
    names = _dla_names(model, "head", False)

    def measure(cache, sub: Task, logits) -> tuple[Float[Tensor, "prompt layer head"], Float[Tensor, "prompt"]]:
        dla = dla_per_prompt(model, cache, sub, "head")[0].reshape(len(sub), model.cfg.n_layers, model.cfg.n_heads)
        return dla, task_logit_diff(logits, sub, per_prompt=True).detach().float()

    def ablation(sub: Task):
        where = sub.positions[positions] if isinstance(positions, str) else positions
        return ablated(model, heads=heads, method=method, reference=reference, positions=where, **ablation_options)

    if isinstance(positions, str) and positions not in task.positions:
        raise ValueError(f"positions={positions!r} is not a label of this task; it has {list(task.positions)}")
    before, ld_before = run_batches(model, task, names, measure, max_memory_mb, batch_size)
    if isinstance(positions, str):  # the ablated positions differ per prompt: one ablation per batch
        after, ld_after = run_batches(model, task, names, measure, max_memory_mb, batch_size, context=ablation)
    else:  # one ablation (one reference run) around every batch
        with ablated(model, heads=heads, method=method, reference=reference, positions=positions, **ablation_options):
            after, ld_after = run_batches(
                model, task, names, measure, max_memory_mb, batch_size, context=lambda sub: nullcontext()
            )
    per_prompt = torch.stack([before, after, after - before], dim=1)  # [prompt, which, layer, head]
    labels = [
        ["before", "after", "difference"],
        [f"L{l}" for l in range(model.cfg.n_layers)],
        [f"H{h}" for h in range(model.cfg.n_heads)],
    ]
    meta = {
        "task": task.name, "knocked_out": [list(h) for h in heads], "method": method,
        "positions": positions if positions is None or isinstance(positions, str) else list(positions),
        "logit_diff_before": float(ld_before.mean()), "logit_diff_after": float(ld_after.mean()),
    }
    title = "Backup heads: DLA before / after ablation"
    return summarize(per_prompt, ("which", "layer", "head"), labels, title=title, meta=meta, ci=ci)
