"""Bootstrap confidence intervals over prompts, for any per-prompt score.

The bootstrap asks how much a mean over prompts would move had we drawn other prompts: resample
the prompts with replacement many times, recompute the mean each time, and read the interval
off the percentiles of those means (the *percentile* bootstrap: the 2.5th and 97.5th
percentiles give a 95% interval). It assumes nothing about the shape of the distribution, only
that the prompts are independent draws.

Everything is vectorised: the resamples are drawn once as a ``[resample, prompt]`` matrix of
counts (how often each prompt was drawn), and every resampled mean of every entry
(``[layer, head]``, ``[layer, pos]``, ...) is one matrix product ``counts @ scores``. NaN scores
(a prompt where a score is undefined) are left out of the means they would enter.
Randomness comes only from a ``torch.Generator`` (seeded, never the global RNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.results import Result

__all__ = [
    "Bootstrap", "as_bootstrap", "resample_counts", "bootstrap_means", "percentile_interval",
    "bootstrap_ci", "summarize", "with_ci",
]

_MAX_ELEMENTS = 1 << 25  # resampled means held at once ([resample, entries]); larger -> chunks


@dataclass(frozen=True)
class Bootstrap:
    """How to bootstrap: ``n_resamples`` resamples, a ``confidence`` level (0.95 -> 95% interval),
    and the randomness: ``generator`` if given (it advances), else a fresh one seeded by ``seed``."""

    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    generator: Optional[torch.Generator] = None

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95; got {self.confidence}")

    def make_generator(self) -> torch.Generator:
        return self.generator if self.generator is not None else torch.Generator().manual_seed(self.seed)

    def describe(self) -> str:
        return f"{self.confidence:.0%} percentile bootstrap over prompts, {self.n_resamples} resamples"


CI = Union[bool, Bootstrap, None]


def as_bootstrap(ci: CI) -> Optional[Bootstrap]:
    """``True`` -> the default :class:`Bootstrap`; ``False``/``None`` -> no interval."""
    if ci is None or ci is False:
        return None
    if ci is True:
        return Bootstrap()
    if isinstance(ci, Bootstrap):
        return ci
    raise TypeError(f"ci must be True, False or a Bootstrap(...), got {ci!r}")


def resample_counts(
    n_prompts: int, n_resamples: int, generator: torch.Generator
) -> Float[Tensor, "resample prompt"]:
    """How many times each prompt is drawn in each resample (each row sums to ``n_prompts``)."""
    idx = torch.randint(n_prompts, (n_resamples, n_prompts), generator=generator)  # [resample, prompt]
    idx += torch.arange(n_resamples)[:, None] * n_prompts  # a flat index into [resample * prompt]
    return torch.bincount(idx.flatten(), minlength=n_resamples * n_prompts).reshape(n_resamples, n_prompts).float()


def bootstrap_means(
    per_prompt: Float[Tensor, "prompt *entry"], n_resamples: int = 1000, generator: Optional[torch.Generator] = None
) -> Float[Tensor, "resample *entry"]:
    """The mean over prompts of each resample: one matrix product per chunk of entries."""
    if per_prompt.ndim == 0 or per_prompt.shape[0] == 0:
        raise ValueError(f"per_prompt must be [prompt, ...] with at least one prompt, got {tuple(per_prompt.shape)}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    n = per_prompt.shape[0]
    x = per_prompt.detach().reshape(n, -1).float()  # [prompt, entry]
    counts = resample_counts(n, n_resamples, generator).to(device=x.device, dtype=x.dtype)  # [resample, prompt]
    finite = ~torch.isnan(x)
    has_nan = not bool(finite.all())
    values = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device)) if has_nan else x
    step = max(1, _MAX_ELEMENTS // n_resamples)
    chunks = []
    for start in range(0, x.shape[1], step):  # chunks of entries, never of resamples
        sums = counts @ values[:, start : start + step]  # [resample, chunk]
        if has_nan:
            drawn = counts @ finite[:, start : start + step].to(x.dtype)  # [resample, chunk]
            chunks.append(sums / drawn)  # NaN where a resample drew no finite score
        else:
            chunks.append(sums / n)
    return torch.cat(chunks, dim=1).reshape(n_resamples, *per_prompt.shape[1:])


def percentile_interval(
    samples: Float[Tensor, "resample *entry"], confidence: float = 0.95
) -> tuple[Float[Tensor, "*entry"], Float[Tensor, "*entry"]]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles along the first axis
    (linear interpolation between order statistics, NaN samples ignored)."""
    flat = samples.reshape(samples.shape[0], -1)  # [resample, entry]
    ordered = flat.sort(dim=0).values  # NaNs sort last
    m = (~torch.isnan(flat)).sum(0)  # [entry] finite samples per entry
    bounds = []
    for q in ((1 - confidence) / 2, (1 + confidence) / 2):
        pos = q * (m - 1).clamp(min=0).to(flat.dtype)  # [entry]
        lo = pos.floor().long()
        hi = torch.minimum(lo + 1, (m - 1).clamp(min=0))
        frac = pos - lo.to(flat.dtype)
        a = ordered.gather(0, lo[None])[0]
        b = ordered.gather(0, hi[None])[0]
        value = a + frac * (b - a)
        bounds.append(torch.where(m > 0, value, torch.full_like(value, float("nan"))).reshape(samples.shape[1:]))
    return bounds[0], bounds[1]


def bootstrap_ci(
    per_prompt: Float[Tensor, "prompt *entry"],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    generator: Optional[torch.Generator] = None,
) -> tuple[Float[Tensor, "*entry"], Float[Tensor, "*entry"]]:
    """Percentile-bootstrap interval for the mean over prompts of every entry: ``(low, high)``."""
    spec = Bootstrap(n_resamples, confidence, generator=generator)
    return percentile_interval(bootstrap_means(per_prompt, n_resamples, spec.make_generator()), confidence)


def _interval(per_prompt: torch.Tensor, ci: CI, meta: dict[str, Any]) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The interval ``ci`` asks for (None for none), noting the method in ``meta``."""
    spec = as_bootstrap(ci)
    if spec is None:
        return None
    meta["ci"] = spec.describe()
    return percentile_interval(bootstrap_means(per_prompt, spec.n_resamples, spec.make_generator()), spec.confidence)


def summarize(
    per_prompt: Float[Tensor, "prompt *entry"],
    axes: Sequence[str],
    labels: Optional[Sequence[Sequence[str]]] = None,
    title: str = "",
    meta: Optional[dict[str, Any]] = None,
    ci: CI = True,
    result_type: type = Result,
) -> Result:
    """A :class:`Result` holding the mean over prompts, the per-prompt scores and (unless
    ``ci=False``) the bootstrap interval of the mean."""
    per_prompt = per_prompt.detach().float()
    values = per_prompt.nanmean(0) if per_prompt.isnan().any() else per_prompt.mean(0)
    meta = {"n_prompts": int(per_prompt.shape[0]), **(meta or {})}
    interval = _interval(per_prompt, ci, meta)
    return result_type(values, axes, labels, title, meta, ci=interval, per_prompt=per_prompt)


def with_ci(result: Result, ci: CI = True) -> Result:
    """A copy of ``result`` (same class) with the bootstrap interval of the mean of its
    ``.per_prompt`` (``[prompt, *values.shape]``), e.g. for a patching result run per prompt."""
    if result.per_prompt is None:
        raise ValueError("this result has no per_prompt scores to bootstrap; compute it per prompt first")
    per_prompt = torch.as_tensor(result.per_prompt).detach().float()
    if tuple(per_prompt.shape[1:]) != tuple(result.values.shape):
        raise ValueError(f"per_prompt {tuple(per_prompt.shape)} must be [prompt, *{tuple(result.values.shape)}]")
    meta = dict(result.meta)
    interval = _interval(per_prompt, ci, meta)
    return type(result)(
        result.values, result.axes, result.labels, result.title, meta, ci=interval, per_prompt=per_prompt
    )
