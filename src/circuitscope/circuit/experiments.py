"""The experiments a circuit sketch reads, each returning per-head numbers with paired intervals.

Patching effects are reported as *paired* differences: prompt by prompt, the patched run's
normalised metric minus the unpatched run's (as the same patching run computed it), averaged
over prompts, with a bootstrap interval over prompts. Pairing removes the prompt-to-prompt spread of the metric itself, so a head that
changes nothing gets exactly 0 with the interval [0, 0], and a small real effect is not drowned
by how much the prompts differ from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.analysis.bootstrap import Bootstrap, bootstrap_ci
from circuitscope.patching.readout import readout_of
from circuitscope.results import Result
from circuitscope.tasks.task import Task

__all__ = ["HeadEffect", "task_metrics", "metric_per_prompt", "paired_effects", "direct_effects", "path_effects",
           "total_effects", "answer_split", "attention_targets"]


@dataclass
class HeadEffect:
    """One experiment's per-head effect: ``values``/``low``/``high`` ``[layer, head]`` and the raw
    result (for its figure)."""

    name: str
    values: Float[Tensor, "layer head"]
    low: Float[Tensor, "layer head"]
    high: Float[Tensor, "layer head"]
    result: Result

    def significant(self, threshold: float) -> torch.Tensor:
        """Bool ``[layer, head]``: ``|value| >= threshold`` and the interval excludes 0."""
        excludes = (self.low > 0) | (self.high < 0)
        return (self.values.abs() >= threshold) & excludes

    def interval(self, layer: int, head: int) -> tuple[float, float]:
        return float(self.low[layer, head]), float(self.high[layer, head])

    def estimate(self, layer: int, head: int):
        from circuitscope.circuit.estimate import Estimate

        return Estimate(float(self.values[layer, head]), self.interval(layer, head))

    def as_result(self, title: str = "") -> Result:
        """The effects as a labelled ``[layer, head]`` Result with the paired intervals (for figures)."""
        meta = {**self.result.meta, "effect": "paired difference from the unpatched run"}
        return Result(self.values, ("layer", "head"), None, title or self.name, meta, ci=(self.low, self.high))


def metric_per_prompt(model, task: Task, metric, corrupted: bool = False, batch: int = 16) -> Float[Tensor, "prompt"]:
    """The task metric of each prompt on the unpatched clean (or corrupted) run, computed from the
    logits the metric's readout reads (so it matches the engine's per-prompt values exactly)."""
    readout = readout_of(metric)
    if readout is None or readout.per_prompt is None:
        raise ValueError("paired effects need a task metric that scores prompts one by one (task.patching_metric)")
    tokens = task.corrupted_tokens if corrupted else task.clean_tokens
    rows = readout.rows.to(tokens.device)  # [prompt, R]
    parts = []
    with torch.no_grad():
        for lo in range(0, tokens.shape[0], batch):
            logits = model(tokens[lo:lo + batch])  # [b, pos, vocab]
            logits = getattr(logits, "logits", logits)
            r = rows[lo:lo + batch]
            sel = logits[torch.arange(r.shape[0], device=r.device)[:, None], r]  # [b, R, vocab]
            if readout.tokens is not None:
                sel = sel.gather(-1, readout.tokens[lo:lo + batch].to(sel.device))  # [b, R, k]
            parts.append(sel)
    return readout.per_prompt(torch.cat(parts)[None])[0].float()  # [prompt]


def paired_effects(name: str, result: Result, base: Optional[Float[Tensor, "prompt"]], ci: Bootstrap) -> HeadEffect:
    """Effects ``[layer, head]`` = mean over prompts of (patched - unpatched), with intervals.

    The unpatched values are the ones the patching run itself computed (``result.base_per_prompt``),
    so a patch that changes nothing differs by exactly 0; ``base`` is the fallback."""
    if result.per_prompt is None:
        raise ValueError(f"{name}: the patching result has no per-prompt values")
    own = getattr(result, "base_per_prompt", None)
    base = own if own is not None else base
    if base is None:
        raise ValueError(f"{name}: no unpatched per-prompt values to pair the patched ones with")
    diff = result.per_prompt.float() - base.to(result.per_prompt.device)[:, None, None]  # [prompt, layer, head]
    values = diff.mean(0)
    low, high = bootstrap_ci(diff, ci.n_resamples, ci.confidence, ci.make_generator())
    # a head that changes no prompt has an exactly zero effect; keep its interval exactly [0, 0]
    same = (diff == 0).all(0)
    low, high = torch.where(same, 0.0, low), torch.where(same, 0.0, high)
    return HeadEffect(name, values, low, high, result)


def _fallback(result, model, task: Task, metric, corrupted: bool = False):
    """The unpatched per-prompt metric, recomputed only when the patching run did not keep it."""
    if getattr(result, "base_per_prompt", None) is not None:
        return None
    return metric_per_prompt(model, task, metric, corrupted=corrupted)


def task_metrics(model, task: Task):
    """The task's normalised metric in both conventions, ``(normalized, ioi)``, from one clean
    and one corrupted run (each ``task.patching_metric`` call would run both again)."""
    from circuitscope.tasks.metrics import NormalizedMetric

    clean, corrupted = task.run(model), task.run(model, corrupted=True)
    return tuple(NormalizedMetric.from_task(task, clean, corrupted, convention=c) for c in ("normalized", "ioi"))


def direct_effects(model, task: Task, ci: Bootstrap, progress: bool = False, metric=None) -> HeadEffect:
    """Each head's effect through its *direct* path to the logits (path patching into the final
    residual stream, noising): negative = the head's clean output helps the behaviour directly."""
    from circuitscope.patching import path_patch

    metric = task.patching_metric(model, convention="ioi") if metric is None else metric
    result = path_patch(model, task, "resid", "resid", metric=metric, per_prompt=True, ci=False, progress=progress)
    return paired_effects("direct path to the logits", result, _fallback(result, model, task, metric), ci)


def path_effects(model, task: Task, receivers: Sequence[tuple[int, int]], receiver_input: str, ci: Bootstrap,
                 progress: bool = False, metric=None) -> HeadEffect:
    """Each sender head's effect through its direct path into the receivers' ``q``, ``k`` or ``v``
    (at every position; noising, IOI convention: -1 = the whole clean-to-corrupted drop).
    ``metric``: the task's IOI-convention metric, if already built (see :func:`task_metrics`)."""
    from circuitscope.patching import path_patch

    metric = task.patching_metric(model, convention="ioi") if metric is None else metric
    result = path_patch(model, task, list(receivers), receiver_input, metric=metric, per_prompt=True, ci=False,
                        progress=progress)
    names = ", ".join(f"L{l}H{h}" for l, h in receivers)
    return paired_effects(f"path into {receiver_input} of {names}", result, _fallback(result, model, task, metric), ci)


def total_effects(model, task: Task, ci: Bootstrap, progress: bool = False, metric=None) -> HeadEffect:
    """Activation patching of every head's output at all positions (denoising): how much of the
    behaviour each head's clean output restores in the corrupted run (1 = all of it)."""
    from circuitscope.patching import sweep

    metric = task.patching_metric(model) if metric is None else metric
    result = sweep(model, task, "z", by="all", metric=metric, per_prompt=True, ci=False, progress=progress)
    return paired_effects("head output patching", result, _fallback(result, model, task, metric, corrupted=True), ci)


def answer_split(model, task: Task, ci: Bootstrap) -> dict[str, Result]:
    """Direct logit attribution of every head split into what it adds to the correct answer's
    logit and to the incorrect one's (both centred on the mean logit, which softmax ignores):
    ``{"correct": [layer, head], "incorrect": [layer, head]}``. ``correct - incorrect`` is the DLA."""
    from circuitscope.analysis.attribution import _names
    from circuitscope.analysis.bootstrap import summarize
    from circuitscope.analysis.runs import run_batches

    ln_w = getattr(model.ln_final, "w", None)

    def per_prompt(cache, sub: Task, _logits):
        stack = cache.stack_head_results(layer=-1, pos_slice=sub.answer_pos)  # [head, prompt, d_model]
        scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=sub.answer_pos).float()
        W_U = model.W_U.float()
        centred = W_U - W_U.mean(1, keepdim=True)  # [d_model, vocab]
        cols = centred.T[sub.answer_tokens.to(W_U.device)]  # [prompt, 2, d_model]
        if ln_w is not None:
            cols = cols * ln_w.float()
        return torch.einsum("cpd,pad->pac", scaled, cols)  # [prompt, answer, component]

    split = run_batches(model, task, _names(model, "head", False), per_prompt)
    shape = (split.shape[0], model.cfg.n_layers, model.cfg.n_heads)
    out = {}
    for i, which in enumerate(("correct", "incorrect")):
        out[which] = summarize(split[:, i].reshape(shape), ("layer", "head"), ci=ci,
                               title=f"direct effect on the {which} answer's logit")
    return out


def attention_targets(model, task: Task, ci: Bootstrap) -> Optional[tuple[Result, dict[str, dict[str, float]]]]:
    """Attention from the answer position to every other labelled position (``[key, layer, head]``),
    and for each label the share of prompts whose token there is the correct / incorrect answer.
    None when the task labels no position but ``end``."""
    from circuitscope.analysis import attention_between

    keys = [k for k in task.positions if k != "end"]
    if not keys:
        return None
    result = attention_between(model, task, task, query="end", keys=keys, ci=ci)
    rows = torch.arange(len(task), device=task.device)
    holds = {}
    for k in keys:
        tok = task.clean_tokens[rows, task.positions[k]]  # [prompt]
        holds[k] = {"correct": float((tok == task.answer_tokens[:, 0]).float().mean()),
                    "incorrect": float((tok == task.answer_tokens[:, 1]).float().mean())}
    return result, holds
