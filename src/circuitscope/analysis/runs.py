"""Where an analysis gets its activations: a cache the user already has, or runs of a ``Task``.

Every analysis takes ``source``: an :class:`~circuitscope.cache.ActivationCache` from the user's
own ``run_with_cache`` (notebook style; the task then says where the answers and positions are),
or a :class:`~circuitscope.tasks.Task`, in which case the analysis runs the model itself. Task
runs cache only the hooks the analysis reads and go in batches small enough that the cached
activations of one batch fit in ``max_memory_mb``; each batch is cut to its longest prompt
(unless an ablation runs along, whose per-position reference statistics need the full width).
Per-prompt results are concatenated, so batching never changes a number.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Optional, Sequence, Union

import torch

from circuitscope.cache import ActivationCache
from circuitscope.tasks.task import Task

__all__ = ["Source", "DEFAULT_MEMORY_MB", "resolve_source", "prompts_per_batch", "run_batches", "concat"]

Source = Union[ActivationCache, Task]
DEFAULT_MEMORY_MB = 1024


def resolve_source(source: Any, task: Optional[Task]) -> tuple[Optional[ActivationCache], Task]:
    """Split ``source`` into ``(cache or None, task)``; a Task can come as ``source`` or ``task=``."""
    if isinstance(source, Task):
        if task is not None and task is not source:
            raise ValueError("got a Task as the source and another as task=; pass one")
        return None, source
    if isinstance(source, ActivationCache):
        if task is None:
            raise ValueError(
                "analysing a cache needs the task it was run on (task=...), for its answers and positions"
            )
        n = _cache_batch(source) if source.has_batch_dim else None
        if n is not None and n != len(task):
            raise ValueError(
                f"the cache holds {n} prompts but the task has {len(task)}; run the cache on task.clean_tokens"
            )
        return source, task
    if source is None and task is not None:
        return None, task
    if source is None:
        raise ValueError("pass a Task (or an ActivationCache plus task=...)")
    raise TypeError(f"source must be an ActivationCache or a Task, got {type(source).__name__}")


def _cache_batch(cache: ActivationCache) -> Optional[int]:
    for value in cache.values():
        return int(value.shape[0])
    return None


def _floats_per_prompt(model, name: str, n_pos: int) -> int:
    cfg = model.cfg
    if name.endswith(("hook_pattern", "hook_attn_scores")):
        return cfg.n_heads * n_pos * n_pos
    if name.endswith(("hook_z", "hook_q", "hook_k", "hook_v")):
        return n_pos * cfg.n_heads * cfg.d_head
    if name.endswith("hook_scale"):
        return n_pos
    return n_pos * cfg.d_model


def prompts_per_batch(model, names: Sequence[str], n_pos: int, max_memory_mb: float = DEFAULT_MEMORY_MB) -> int:
    """How many prompts of ``n_pos`` tokens fit in the budget when ``names`` are cached (>= 1).

    Counts the cached activations plus one layer's working set of the forward pass (a few
    residual-width tensors, the MLP's hidden layer, one attention pattern).
    """
    if not max_memory_mb > 0:
        raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb}")
    cfg = model.cfg
    working = n_pos * (4 * cfg.d_model + (getattr(cfg, "d_mlp", None) or 0)) + cfg.n_heads * n_pos * n_pos
    floats = sum(_floats_per_prompt(model, n, n_pos) for n in names) + working
    return max(1, int(max_memory_mb * 2**20 // (4 * max(1, floats))))


def run_batches(
    model,
    task: Task,
    names: Sequence[str],
    fn: Callable[[ActivationCache, Task, torch.Tensor], Any],
    max_memory_mb: float = DEFAULT_MEMORY_MB,
    batch_size: Optional[int] = None,
    context: Optional[Callable[[Task], ContextManager]] = None,
) -> Any:
    """Run the task's clean prompts in batches, caching ``names``; ``fn(cache, sub_task, logits)``
    returns per-prompt tensors (or tuples of them) that are concatenated over batches.
    ``context(sub_task)``, if given, is entered around each batch's run (e.g. an ablation).

    ``logits`` are each batch's logits at the answer positions only (``[batch, vocab]``): the
    final norm still runs (its scale is what attribution divides by) but the unembedding is cheap.
    """
    width = int(task.answer_pos.max()) + 1 if len(task) else 0
    size = batch_size or prompts_per_batch(model, names, width, max_memory_mb)
    outputs = []
    for start in range(0, len(task), size):
        sub = task.subset(slice(start, start + size))
        tokens = sub.clean_tokens  # [batch, pos]
        if context is None:  # cut to the longest prompt (an ablation's reference keeps the full width)
            tokens = tokens[:, : int(sub.answer_pos.max()) + 1]
        with torch.no_grad(), (context(sub) if context is not None else nullcontext()):
            logits, cache = model.run_with_cache(tokens, names_filter=list(names), logit_positions=sub.answer_pos)
        _spread_final_scale(cache, sub.answer_pos, tokens.shape[1])
        outputs.append(fn(cache, sub, logits))  # logits: [batch, vocab]
    return concat(outputs)


def _spread_final_scale(cache: ActivationCache, answer_pos: torch.Tensor, width: int) -> None:
    """With ``logit_positions`` the final norm ran on the answer positions only, so its cached
    scale is ``[batch, 1]``; put it back at those positions of a ``[batch, pos, 1]`` tensor (NaN
    elsewhere, so a read at any other position cannot pass unnoticed)."""
    name = "ln_final.hook_scale"
    if name not in cache.cache_dict:
        return
    scale = cache.cache_dict[name]
    if scale.ndim != 2:
        return  # already [batch, pos, 1]
    full = scale.new_full((scale.shape[0], width, 1), float("nan"))  # [batch, pos, 1]
    full[torch.arange(scale.shape[0], device=scale.device), answer_pos.to(scale.device)] = scale
    cache.cache_dict[name] = full


def concat(outputs: list[Any]) -> Any:
    """Concatenate per-batch outputs along the prompt axis (tuples element-wise; other values from batch 0)."""
    if not outputs:
        raise ValueError("the task has no prompts")
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs, dim=0)
    if isinstance(first, tuple):
        return tuple(concat([o[i] for o in outputs]) for i in range(len(first)))
    return first
