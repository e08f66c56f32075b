"""One number with its 95% interval: what every circuit score is reported as.

An :class:`Estimate` is a mean over prompts (or a function of several such means, such as a
ratio) together with a percentile-bootstrap interval over prompts. ``to_dict()`` gives the JSON
form the reports use, ``{"value": v, "ci": [low, high]}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.analysis.bootstrap import Bootstrap, percentile_interval, resample_counts

__all__ = ["Estimate", "estimate_mean", "estimate_of_means"]


@dataclass(frozen=True)
class Estimate:
    """``value`` with its interval ``ci = (low, high)`` (None when not computed)."""

    value: float
    ci: Optional[tuple[float, float]] = None

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False without an interval)."""
        if self.ci is None:
            return False
        low, high = self.ci
        return (low > 0 and high > 0) or (low < 0 and high < 0)

    def to_dict(self) -> dict[str, Any]:
        ci = None if self.ci is None else [_clean(self.ci[0]), _clean(self.ci[1])]
        return {"value": _clean(self.value), "ci": ci}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Estimate":
        ci = data.get("ci")
        return cls(float(data["value"]), None if ci is None else (float(ci[0]), float(ci[1])))

    def __format__(self, spec: str) -> str:
        spec = spec or ".3g"
        if self.ci is None:
            return format(self.value, spec)
        return f"{format(self.value, spec)} [{format(self.ci[0], spec)}, {format(self.ci[1], spec)}]"

    def __str__(self) -> str:
        return format(self, "")


def _clean(x: float) -> Optional[float]:
    """JSON has no NaN: undefined numbers become null."""
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def estimate_mean(per_prompt: Float[Tensor, "prompt"], ci: Optional[Bootstrap] = Bootstrap()) -> Estimate:
    """The mean of a per-prompt score and its bootstrap interval."""
    return estimate_of_means([per_prompt], lambda m: m[0], ci)


def estimate_of_means(
    per_prompt: Sequence[Float[Tensor, "prompt"]],
    combine: Callable[[list[torch.Tensor]], torch.Tensor],
    ci: Optional[Bootstrap] = Bootstrap(),
) -> Estimate:
    """``combine(means)`` of several per-prompt scores over the *same* prompts, e.g. a ratio of
    two means, with the interval from resampling the prompts jointly (one set of resampled
    prompts feeds every mean, so correlated numerators and denominators stay paired)."""
    xs = [torch.as_tensor(x).detach().double().flatten().cpu() for x in per_prompt]  # intervals on the CPU
    n = xs[0].shape[0]
    if n == 0 or any(x.shape[0] != n for x in xs):
        raise ValueError(f"every per-prompt score needs the same, non-zero number of prompts; got {[x.shape[0] for x in xs]}")
    value = float(combine([x.mean()[None] for x in xs])[0])
    if ci is None:
        return Estimate(value)
    counts = resample_counts(n, ci.n_resamples, ci.make_generator()).double()  # [resample, prompt]
    samples = combine([counts @ x / n for x in xs])  # [resample]
    low, high = percentile_interval(samples.float(), ci.confidence)
    return Estimate(value, (float(low), float(high)))
