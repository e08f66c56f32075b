"""Metrics that turn logits into one number per experiment (all differentiable torch).

Accepted logits shapes, everywhere in this module:

* ``[batch, pos, vocab]``: full logits; the answer is read at ``answer_pos`` (one index per
  prompt), or at the last position when ``answer_pos`` is None.
* ``[batch, vocab]`` or ``[batch, 1, vocab]``: logits already taken at each prompt's answer
  position (what a patching engine that only computes the answer positions returns);
  ``answer_pos`` is then ignored.

For span metrics (induction) the logits are ``[batch, pos, vocab]`` over the whole sequence or
``[batch, end - start, vocab]`` holding only the positions that predict the span.

Nothing here calls ``.item()`` on the way to a result, so gradients flow (attribution patching
differentiates these metrics).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "logits_at",
    "logit_diff",
    "task_logit_diff",
    "NormalizedMetric",
    "check_baselines",
    "kl_to_clean",
    "span_log_prob",
    "span_loss",
    "task_span_log_prob",
    "CONVENTIONS",
]

CONVENTIONS = ("normalized", "ioi")


def logits_at(logits: torch.Tensor, pos: torch.Tensor | int | None = None) -> torch.Tensor:
    """Pick one position per prompt: ``[batch, pos, vocab] -> [batch, vocab]`` (2-D logits pass through)."""
    if logits.ndim == 2:
        return logits  # [batch, vocab]
    if logits.ndim != 3:
        raise ValueError(f"logits must be [batch, pos, vocab] or [batch, vocab], got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return logits[:, 0]
    if pos is None:
        return logits[:, -1]
    if isinstance(pos, int):
        return logits[:, pos]
    pos = torch.as_tensor(pos, device=logits.device, dtype=torch.long)
    if tuple(pos.shape) != (logits.shape[0],):
        raise ValueError(f"positions must be [batch] = [{logits.shape[0]}], got shape {tuple(pos.shape)}")
    if int(pos.min()) < 0:
        raise ValueError(
            f"answer position {int(pos.min())} is negative; per-prompt positions count from the "
            "start (a negative one would silently read from the end, often from padding)"
        )
    if int(pos.max()) >= logits.shape[1]:
        raise ValueError(
            f"answer position {int(pos.max())} is beyond the logits' {logits.shape[1]} positions; "
            "were the logits computed on a shorter batch?"
        )
    return logits[torch.arange(logits.shape[0], device=logits.device), pos]  # [batch, vocab]


def logit_diff(
    logits: torch.Tensor,
    answer_tokens: torch.Tensor,
    answer_pos: torch.Tensor | None = None,
    per_prompt: bool = False,
) -> torch.Tensor:
    """Logit of the correct answer minus logit of the incorrect one.

    ``answer_tokens`` is ``[batch, 2]`` (correct, incorrect) or ``[2]`` shared by all prompts.
    Returns the mean over prompts (a scalar), or ``[batch]`` with ``per_prompt=True``.
    """
    final = logits_at(logits, answer_pos)  # [batch, vocab]
    answers = torch.as_tensor(answer_tokens, device=final.device)
    if answers.is_floating_point() or answers.dtype == torch.bool:
        raise TypeError(f"answer_tokens must be integer token ids, got dtype {answers.dtype}")
    answers = answers.long()
    if answers.ndim == 1:
        answers = answers.expand(final.shape[0], 2)
    if answers.ndim != 2 or answers.shape[1] != 2 or answers.shape[0] != final.shape[0]:
        raise ValueError(
            f"answer_tokens must be [batch, 2] = [{final.shape[0]}, 2] (correct, incorrect), "
            f"got shape {tuple(answers.shape)}"
        )
    picked = final.gather(-1, answers)  # [batch, 2]
    diffs = picked[:, 0] - picked[:, 1]  # [batch]
    return diffs if per_prompt else diffs.mean()


def task_logit_diff(logits: torch.Tensor, task, per_prompt: bool = False, corrupted: bool = False) -> torch.Tensor:
    """:func:`logit_diff` with the task's answers, read at its (clean or corrupted) answer positions."""
    pos = task.corrupted_answer_pos if corrupted else task.answer_pos
    return logit_diff(logits, task.answer_tokens, pos, per_prompt=per_prompt)


def check_baselines(clean: float, corrupted: float, what: str = "logit difference", rel_tol: float = 1e-6) -> None:
    """Raise if the two baselines are equal (or not finite), which makes normalising impossible."""
    if not (math.isfinite(clean) and math.isfinite(corrupted)):
        raise ValueError(
            f"the baselines must be finite numbers, got clean {what} = {clean} and corrupted = "
            f"{corrupted}; check the model's logits for NaN/inf"
        )
    if abs(clean - corrupted) <= max(rel_tol * max(abs(clean), abs(corrupted)), 1e-12):
        raise ValueError(
            f"the normalised metric is undefined: the clean and corrupted baselines are equal "
            f"(clean {what} = {clean:.6g}, corrupted = {corrupted:.6g}). The metric divides by "
            "(clean - corrupted), so every value would be NaN or infinite. Equal baselines mean "
            "the model behaves the same on clean and corrupted prompts: the corruption does not "
            "change which answer it prefers. Check that the corrupted prompts really change the "
            "answer (and are not the clean prompts again), that the two answers are (correct, "
            "incorrect) and differ, and that logits are read at each prompt's last real token "
            "rather than at padding. Or report the raw metric instead of the normalised one."
        )


class NormalizedMetric:
    """A base metric rescaled so the clean and corrupted runs land on fixed values.

    ``convention="normalized"``: clean = 1, corrupted = 0, i.e. ``(m - corrupted) / (clean -
    corrupted)``; the natural scale for denoising (patching clean activations into a corrupted
    run). ``convention="ioi"``: clean = 0, corrupted = -1, i.e. ``(m - clean) / (clean -
    corrupted)``; the IOI paper's scale for noising and path patching.

    ``base`` maps logits to a scalar (or ``[batch]``) tensor, e.g. a logit difference or a span
    log-probability. Calling the metric returns a tensor with gradients intact.
    """

    def __init__(
        self,
        base: Callable[[torch.Tensor], torch.Tensor],
        clean_baseline: float | torch.Tensor,
        corrupted_baseline: float | torch.Tensor,
        convention: str = "normalized",
        what: str = "metric",
    ):
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        self.base = base
        self.clean_baseline = float(clean_baseline)
        self.corrupted_baseline = float(corrupted_baseline)
        self.convention = convention
        check_baselines(self.clean_baseline, self.corrupted_baseline, what)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        value = self.base(logits)
        scale = self.clean_baseline - self.corrupted_baseline
        zero = self.corrupted_baseline if self.convention == "normalized" else self.clean_baseline
        return (value - zero) / scale

    def __repr__(self) -> str:
        return (
            f"NormalizedMetric(convention={self.convention!r}, clean={self.clean_baseline:.4g}, "
            f"corrupted={self.corrupted_baseline:.4g})"
        )

    @classmethod
    def from_logit_diff(
        cls,
        answer_tokens: torch.Tensor,
        clean_logits: torch.Tensor,
        corrupted_logits: torch.Tensor,
        answer_pos: torch.Tensor | None = None,
        corrupted_answer_pos: torch.Tensor | None = None,
        convention: str = "normalized",
    ) -> "NormalizedMetric":
        """Normalised mean logit difference, with baselines measured on the given logits."""
        corrupted_answer_pos = answer_pos if corrupted_answer_pos is None else corrupted_answer_pos
        with torch.no_grad():
            clean = logit_diff(clean_logits, answer_tokens, answer_pos).item()
            corrupted = logit_diff(corrupted_logits, answer_tokens, corrupted_answer_pos).item()

        def base(logits: torch.Tensor) -> torch.Tensor:
            return logit_diff(logits, answer_tokens, answer_pos)

        return cls(base, clean, corrupted, convention=convention, what="logit difference")

    @classmethod
    def from_task(
        cls, task, clean_logits, corrupted_logits, convention: str = "normalized", base: str = "auto"
    ) -> "NormalizedMetric":
        """Normalise a ``Task``'s metric: its logit difference, or (``base="span"``, the default for
        tasks with a ``span``) the log-probability of its clean tokens over that span.

        Patched logits are read at the clean answer positions.
        """
        if base == "auto":
            base = "span" if task.span is not None else "logit_diff"
        from circuitscope.patching.readout import logit_diff_readout, span_readout

        if base == "logit_diff":
            metric = cls.from_logit_diff(
                task.answer_tokens, clean_logits, corrupted_logits, task.answer_pos,
                task.corrupted_answer_pos, convention=convention,
            )
            # Declares where it reads, so the patching engine computes only those logits.
            metric.readout = logit_diff_readout(task.answer_pos, task.answer_tokens, metric)
            return metric
        if base != "span":
            raise ValueError(f"base must be 'auto', 'logit_diff' or 'span', got {base!r}")
        with torch.no_grad():
            clean = task_span_log_prob(clean_logits, task).item()
            corrupted = task_span_log_prob(corrupted_logits, task).item()
        metric = cls(lambda logits: task_span_log_prob(logits, task), clean, corrupted,
                     convention=convention, what="span log-probability")
        metric.readout = span_readout(task, metric)
        return metric


def kl_to_clean(
    logits: torch.Tensor,
    clean_logits: torch.Tensor,
    positions: torch.Tensor | int | None = None,
    mask: torch.Tensor | None = None,
    per_prompt: bool = False,
) -> torch.Tensor:
    """KL(clean || patched) of the next-token distributions: 0 when the run matches the clean one.

    With ``positions`` (``[batch]`` indices, e.g. ``task.answer_pos``, or one int) it compares one
    position per prompt; 2-D ``[batch, vocab]`` logits are taken as already at those positions.
    Without, it averages over every position of ``[batch, pos, vocab]`` logits, weighted by
    ``mask [batch, pos]`` (1 on real tokens) when given.
    """
    if positions is not None or logits.ndim == 2 or clean_logits.ndim == 2:
        patched = logits_at(logits, positions)  # [batch, vocab]
        clean = logits_at(clean_logits, positions)  # [batch, vocab]
        mask = None
    else:
        patched, clean = logits, clean_logits  # [batch, pos, vocab]
    if patched.shape != clean.shape:
        raise ValueError(f"logits {tuple(patched.shape)} and clean logits {tuple(clean.shape)} do not match")
    log_p = clean.log_softmax(-1)
    log_q = patched.log_softmax(-1)
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)  # [batch] or [batch, pos]
    if kl.ndim == 2:
        if mask is None:
            kl = kl.mean(-1)
        else:
            m = mask.to(kl.dtype)
            kl = (kl * m).sum(-1) / m.sum(-1).clamp(min=1)
    return kl if per_prompt else kl.mean()


def span_log_prob(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    start: int,
    end: int,
    per_prompt: bool = False,
) -> torch.Tensor:
    """Mean log-probability the model gives to ``tokens[:, start:end]`` (the induction metric).

    Token ``t`` is predicted by the logits at ``t - 1``, so ``start >= 1``. ``logits`` is
    ``[batch, pos, vocab]`` over the whole sequence or ``[batch, end - start, vocab]`` holding just
    the predicting positions ``start - 1 .. end - 2``. Higher is better; see :func:`span_loss`.
    """
    width = tokens.shape[1]
    if not 1 <= start < end <= width:
        raise ValueError(f"need 1 <= start < end <= {width} (tokens' length), got start={start}, end={end}")
    if logits.ndim != 3:
        raise ValueError(f"span metrics need [batch, pos, vocab] logits, got shape {tuple(logits.shape)}")
    if logits.shape[1] == width:
        logits = logits[:, start - 1 : end - 1]
    elif logits.shape[1] != end - start:
        raise ValueError(
            f"logits have {logits.shape[1]} positions; expected {width} (whole sequence) or "
            f"{end - start} (only the positions predicting tokens {start}..{end - 1})"
        )
    targets = tokens[:, start:end].to(logits.device)  # [batch, span]
    log_probs = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [batch, span]
    per = log_probs.mean(-1)  # [batch]
    return per if per_prompt else per.mean()


def span_loss(logits: torch.Tensor, tokens: torch.Tensor, start: int, end: int, per_prompt: bool = False) -> torch.Tensor:
    """Mean cross-entropy on ``tokens[:, start:end]``: ``-span_log_prob``."""
    return -span_log_prob(logits, tokens, start, end, per_prompt=per_prompt)


def task_span_log_prob(logits: torch.Tensor, task, per_prompt: bool = False) -> torch.Tensor:
    """:func:`span_log_prob` of the task's clean tokens over ``task.span``."""
    if task.span is None:
        raise ValueError(f"task {task.name!r} has no scored span; this metric is for span tasks such as induction")
    return span_log_prob(logits, task.clean_tokens, task.span[0], task.span[1], per_prompt=per_prompt)
