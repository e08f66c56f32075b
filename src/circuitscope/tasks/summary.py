"""The headline numbers of a logit-difference task, measured in memory-bounded batches.

:func:`summarize_task` is what ``circuitscope demo`` reports: the mean logit difference on the
clean and on the corrupted prompts, how often the correct answer wins, the logit lens (the logit
difference read off the residual stream before each layer and at the end) and every head's
direct logit attribution. It runs the model batch by batch (see ``batching.py``), caching only
the hooks it reads, and keeps per-prompt numbers, so:

* memory is that of one batch (set by ``max_memory_mb`` or ``batch_size``), not of the task;
* the result does not depend on the batch size beyond float rounding (a test checks this).

The projections are the usual ones: each residual piece is scaled by the final layer norm's
frozen scale (``cache.apply_ln_to_stack``) and dotted with ``W_U[:, correct] - W_U[:, wrong]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuitscope.tasks.batching import DEFAULT_MEMORY_MB, iter_batches, prompts_per_batch
from circuitscope.tasks.task import Task

__all__ = ["TaskSummary", "summarize_task"]


@dataclass
class TaskSummary:
    """Per-prompt results of :func:`summarize_task` and their means.

    ``clean`` / ``corrupted`` ``[prompt]`` logit differences; ``lens`` ``[prompt, n_layers + 1]``
    (labels in ``lens_labels``); ``heads`` ``[prompt, layer, head]`` direct logit attribution.
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    lens: torch.Tensor
    lens_labels: list[str]
    heads: torch.Tensor
    batch_size: int
    n_batches: int

    @property
    def clean_logit_diff(self) -> float:
        return self.clean.mean().item()

    @property
    def corrupted_logit_diff(self) -> float:
        return self.corrupted.mean().item()

    @property
    def io_over_s(self) -> float:
        """Fraction of prompts whose correct answer has the larger logit."""
        return (self.clean > 0).float().mean().item()

    @property
    def logit_lens(self) -> torch.Tensor:
        return self.lens.mean(0)  # [n_layers + 1]

    @property
    def head_attribution(self) -> torch.Tensor:
        return self.heads.mean(0)  # [layer, head]

    def to_dict(self) -> dict:
        return {
            "prompts": int(self.clean.shape[0]), "clean_logit_diff": self.clean_logit_diff,
            "corrupted_logit_diff": self.corrupted_logit_diff, "io_over_s": self.io_over_s,
            "logit_lens": dict(zip(self.lens_labels, self.logit_lens.tolist())),
            "head_attribution": self.head_attribution.tolist(), "batch_size": self.batch_size,
        }


def _hook_names(model) -> tuple[list[str], int]:
    """The hooks the summary reads, and how many numbers per token caching them costs."""
    cfg = model.cfg
    n = cfg.n_layers
    names = [f"blocks.{i}.hook_resid_pre" for i in range(n)] + [f"blocks.{i}.attn.hook_z" for i in range(n)]
    names += [f"blocks.{n - 1}.hook_resid_post", "ln_final.hook_scale"]
    floats = (n + 1) * cfg.d_model + n * cfg.n_heads * cfg.d_head + 1
    return names, floats


def _project(model, cache, stack: torch.Tensor, sub: Task) -> torch.Tensor:
    """stack ``[component, batch, d_model]`` -> logit-difference contribution ``[batch, component]``."""
    directions = model.tokens_to_residual_directions(sub.answer_tokens.to(model.W_U.device))  # [batch, 2, d_model]
    diff = directions[:, 0] - directions[:, 1]  # [batch, d_model]
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=sub.answer_pos)  # [component, batch, d_model]
    return (scaled * diff).sum(-1).T.float().cpu()


def summarize_task(
    model,
    task: Task,
    max_memory_mb: float | None = None,
    batch_size: int | None = None,
    progress: bool | None = False,
) -> TaskSummary:
    """Measure ``task`` on ``model`` in batches; see the module docstring.

    ``batch_size`` wins over ``max_memory_mb`` (default 1024 MiB for one batch's activations);
    ``progress`` draws a progress bar on stderr (None: only on a terminal).
    """
    names, floats = _hook_names(model)
    if batch_size is None:
        batch_size = prompts_per_batch(model, task, floats, max_memory_mb or DEFAULT_MEMORY_MB)
    batch_size = min(batch_size, max(1, len(task)))
    device = model.W_U.device
    parts: dict[str, list[torch.Tensor]] = {"clean": [], "corrupted": [], "lens": [], "heads": []}
    labels: list[str] = []
    n_batches = 0
    with torch.no_grad():
        for sub in iter_batches(task.to(device), batch_size, progress=progress, desc="IOI prompts"):
            logits, cache = model.run_with_cache(sub.clean_tokens, names_filter=names)
            parts["clean"].append(sub.logit_diff(logits, per_prompt=True).float().cpu())
            del logits  # [batch, pos, vocab]: the largest tensor of the batch
            corrupted = model(sub.corrupted_tokens, logit_positions=sub.corrupted_answer_pos)  # [batch, vocab]
            parts["corrupted"].append(sub.logit_diff(corrupted, per_prompt=True, corrupted=True).float().cpu())
            stack, labels = cache.accumulated_resid(layer=-1, pos_slice=sub.answer_pos, return_labels=True)
            parts["lens"].append(_project(model, cache, stack, sub))
            heads = _project(model, cache, cache.stack_head_results(layer=-1, pos_slice=sub.answer_pos), sub)
            parts["heads"].append(heads.reshape(len(sub), model.cfg.n_layers, model.cfg.n_heads))
            del cache
            n_batches += 1
    out = {k: torch.cat(v) for k, v in parts.items()}
    return TaskSummary(out["clean"], out["corrupted"], out["lens"], list(labels), out["heads"], batch_size, n_batches)
