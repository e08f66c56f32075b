"""Where heads look between labelled positions, and how that lines up with what they write.

:func:`attention_between` reads, for every head, the attention from one labelled position of each
prompt (``task.positions``, e.g. ``"end"``) to others (``"IO"``, ``"S1"``): ``[key, layer, head]``.
:func:`attention_vs_effect` pairs that attention with each head's direct logit attribution, the
scatter of the IOI name-mover analysis: a head that copies the name it attends to sits on a
diagonal (more attention to IO, larger logit difference), one that suppresses it on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.analysis.attribution import _names as _dla_names
from circuitscope.analysis.attribution import dla_per_prompt
from circuitscope.analysis.bootstrap import CI, summarize
from circuitscope.analysis.runs import DEFAULT_MEMORY_MB, Source, resolve_source, run_batches
from circuitscope.cache import ActivationCache
from circuitscope.results import Result
from circuitscope.tasks.task import Task

__all__ = ["attention_per_prompt", "attention_between", "HeadScatter", "attention_vs_effect"]


def _check_labels(task: Task, labels: Sequence[str]) -> None:
    missing = [lab for lab in labels if lab not in task.positions]
    if missing:
        raise ValueError(f"positions {missing} are not in this task; it has {list(task.positions)}")


def attention_per_prompt(
    model, cache: ActivationCache, task: Task, query: str = "end", keys: Sequence[str] = ("IO", "S1")
) -> Float[Tensor, "prompt key layer head"]:
    """Attention from position ``query`` to each position in ``keys``, per prompt and head."""
    _check_labels(task, [query, *keys])
    n = len(task)
    rows = torch.arange(n)
    q = task.positions[query].cpu()  # [prompt]
    out = []
    for layer in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [prompt, head, q, k]
        from_query = pattern[rows.to(pattern.device), :, q.to(pattern.device)]  # [prompt, head, k]
        ks = torch.stack([task.positions[k].to(pattern.device) for k in keys], dim=1)  # [prompt, key]
        picked = from_query.gather(2, ks[:, None, :].expand(-1, pattern.shape[1], -1))  # [prompt, head, key]
        out.append(picked.transpose(1, 2))  # [prompt, key, head]
    return torch.stack(out, dim=2).float()  # [prompt, key, layer, head]


def _pattern_names(model) -> list[str]:
    return [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]


def attention_between(
    model, source: Source, task: Optional[Task] = None, *, query: str = "end",
    keys: Sequence[str] = ("IO", "S1"), ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> Result:
    """Mean attention from ``query`` to each of ``keys`` for every head: ``[key, layer, head]``."""
    cache, task = resolve_source(source, task)
    _check_labels(task, [query, *keys])
    if cache is not None:
        per_prompt = attention_per_prompt(model, cache, task, query, keys)
    else:
        per_prompt = run_batches(
            model, task, _pattern_names(model),
            lambda c, t, _: attention_per_prompt(model, c, t, query, keys), max_memory_mb, batch_size,
        )
    labels = [
        [f"{query}->{k}" for k in keys],
        [f"L{i}" for i in range(model.cfg.n_layers)],
        [f"H{i}" for i in range(model.cfg.n_heads)],
    ]
    meta = {"query": query, "keys": list(keys), "task": task.name}
    return summarize(per_prompt, ("key", "layer", "head"), labels, title=f"Attention from {query}", meta=meta, ci=ci)


@dataclass
class HeadScatter:
    """One point per head: ``x`` (attention to a position) against ``y`` (direct logit
    attribution), both ``[layer, head]`` Results with intervals. ``.plot()`` draws the scatter
    with hover names ``L3H1`` and colour by layer."""

    x: Result
    y: Result
    title: str = ""

    @property
    def names(self) -> list[str]:
        n_layers, n_heads = self.x.shape
        return [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]

    @property
    def layers(self) -> Float[Tensor, "point"]:
        n_layers, n_heads = self.x.shape
        return torch.arange(n_layers).repeat_interleave(n_heads)  # [layer * head]

    def plot(self, **kwargs: Any):
        """The scatter figure (``circuitscope.plot.scatter``); keyword arguments override defaults."""
        from circuitscope import plot

        options = {"names": self.names, "color": self.layers, "title": self.title,
                   "x_title": self.x.title, "y_title": self.y.title, **kwargs}
        return plot.scatter(self.x.values.flatten(), self.y.values.flatten(), **options)

    def rows(self, k: int = 10) -> list[tuple[str, float, float]]:
        """The ``k`` heads with the largest ``|y|`` as ``(name, x, y)``."""
        order = self.y.values.flatten().abs().argsort(descending=True)[:k].tolist()
        xs, ys = self.x.values.flatten(), self.y.values.flatten()
        return [(self.names[i], float(xs[i]), float(ys[i])) for i in order]

    def __str__(self) -> str:
        lines = [f"HeadScatter({self.title}): x = {self.x.title}, y = {self.y.title}"]
        x_ci, y_ci = self.x.ci, self.y.ci
        for name, xv, yv in self.rows():
            i = self.names.index(name)
            xs = f" [{float(x_ci[0].flatten()[i]):+.3f}, {float(x_ci[1].flatten()[i]):+.3f}]" if x_ci else ""
            ys = f" [{float(y_ci[0].flatten()[i]):+.3f}, {float(y_ci[1].flatten()[i]):+.3f}]" if y_ci else ""
            lines.append(f"  {name:<8} x {xv:+.3f}{xs}   y {yv:+.3f}{ys}")
        return "\n".join(lines)

    __repr__ = __str__


def attention_vs_effect(
    model, source: Source, task: Optional[Task] = None, *, key: str = "IO", query: str = "end",
    ci: CI = True, max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> HeadScatter:
    """Every head's attention from ``query`` to ``key`` against its direct logit attribution
    (one run of the task, or the user's cache): a :class:`HeadScatter`."""
    cache, task = resolve_source(source, task)
    _check_labels(task, [query, key])

    def both(c: ActivationCache, t: Task, _logits=None):
        attn = attention_per_prompt(model, c, t, query, [key])[:, 0]  # [prompt, layer, head]
        dla = dla_per_prompt(model, c, t, "head")[0]  # [prompt, layer * head]
        return attn, dla.reshape(attn.shape)

    if cache is not None:
        attn, dla = both(cache, task)
    else:
        names = sorted(set(_pattern_names(model)) | set(_dla_names(model, "head", False)))
        attn, dla = run_batches(model, task, names, both, max_memory_mb, batch_size)
    meta = {"task": task.name, "query": query, "key": key}
    x = summarize(attn, ("layer", "head"), title=f"attention {query} -> {key}", meta=meta, ci=ci)
    y = summarize(dla, ("layer", "head"), title="direct logit attribution", meta=meta, ci=ci)
    return HeadScatter(x, y, title=f"Attention to {key} vs direct effect ({task.name})")
