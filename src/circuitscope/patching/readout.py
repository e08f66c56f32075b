"""Where a metric reads the logits, so a patched run computes only that.

A task's metric reads a few logits: the correct and incorrect answer at each prompt's answer
position (logit difference), or the log-probabilities over a span (induction). A
:class:`Readout` says so: ``rows [batch, R]`` are the positions read, ``tokens [batch, R, k]``
the vocabulary entries read (or None for the whole vocabulary), and ``reduce`` maps the selected
logits of many patched variants at once, ``[n, batch, R, k or d_vocab] -> [n]``, to the metric's
values, computed exactly as the metric computes them from full logits. ``per_prompt`` gives the
same metric prompt by prompt (``[n, batch]``, whose mean over prompts is ``reduce``'s value), for
bootstrap intervals over prompts.

A plain callable metric has no readout: the engine then hands it full ``[batch, pos, d_vocab]``
logits, one patched variant at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["Readout", "readout_of"]


@dataclass
class Readout:
    rows: torch.Tensor  # [batch, R] positions whose logits the metric reads
    tokens: Optional[torch.Tensor]  # [batch, R, k] vocabulary entries read, or None: all of them
    reduce: Callable[[torch.Tensor], torch.Tensor]  # [n, batch, R, k | d_vocab] -> [n]
    per_prompt: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # same input -> [n, batch]

    @property
    def last_row(self) -> int:
        """The last position any prompt reads: later positions cannot change the metric."""
        return int(self.rows.max())


def _normalise(value: torch.Tensor, metric) -> torch.Tensor:
    scale = metric.clean_baseline - metric.corrupted_baseline
    zero = metric.corrupted_baseline if metric.convention == "normalized" else metric.clean_baseline
    return (value - zero) / scale


def logit_diff_readout(answer_pos: torch.Tensor, answer_tokens: torch.Tensor, metric=None) -> Readout:
    """Mean (correct - incorrect) logit at each prompt's answer position, optionally normalised."""

    def reduce(sel: torch.Tensor) -> torch.Tensor:  # [n, batch, 1, 2]
        value = (sel[..., 0, 0] - sel[..., 0, 1]).mean(-1)  # [n]
        return value if metric is None else _normalise(value, metric)

    def per_prompt(sel: torch.Tensor) -> torch.Tensor:  # [n, batch, 1, 2] -> [n, batch]
        value = sel[..., 0, 0] - sel[..., 0, 1]
        return value if metric is None else _normalise(value, metric)

    return Readout(answer_pos[:, None], answer_tokens[:, None, :], reduce, per_prompt)


def span_readout(task, metric=None) -> Readout:
    """Mean log-probability of the task's clean tokens over its span (the induction metric)."""
    start, end = task.span
    batch = task.clean_tokens.shape[0]
    rows = torch.arange(start - 1, end - 1, device=task.device).expand(batch, -1)  # [batch, R]
    targets = task.clean_tokens[:, start:end]  # [batch, R]

    def per_prompt(logits: torch.Tensor) -> torch.Tensor:  # [n, batch, R, d_vocab] -> [n, batch]
        lp = logits.log_softmax(-1).gather(-1, targets.to(logits.device)[None, ..., None].expand(logits.shape[0], -1, -1, 1))
        value = lp[..., 0].mean(-1)
        return value if metric is None else _normalise(value, metric)

    def reduce(logits: torch.Tensor) -> torch.Tensor:  # [n, batch, R, d_vocab] -> [n]
        lp = logits.log_softmax(-1).gather(-1, targets.to(logits.device)[None, ..., None].expand(logits.shape[0], -1, -1, 1))
        value = lp[..., 0].mean(-1).mean(-1)  # [n]
        return value if metric is None else _normalise(value, metric)

    return Readout(rows, None, reduce, per_prompt)


def readout_of(metric) -> Optional[Readout]:
    """The readout a metric declares (``metric.readout``), or None for a plain callable."""
    readout = getattr(metric, "readout", None)
    return readout if isinstance(readout, Readout) else None
