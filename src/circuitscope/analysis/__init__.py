"""Analyses built on a model and a task or a cache: direct logit attribution, the logit lens,
head detectors, attention between labelled positions, backup heads, and bootstrap intervals.

Every function takes ``(model, source, task)`` where ``source`` is your own ``ActivationCache``
(plus the task it was run on) or a ``Task`` (the model is then run in batches), and returns a
:class:`~circuitscope.results.Result` carrying the mean over prompts, ``.per_prompt`` and a 95%
bootstrap interval ``.ci`` (``ci=False`` to skip, ``ci=Bootstrap(n_resamples=..., generator=...)``
to configure).
"""

from circuitscope.analysis.attention import HeadScatter, attention_between, attention_per_prompt, attention_vs_effect
from circuitscope.analysis.attribution import (
    answer_direction,
    component_attribution,
    dla_per_prompt,
    head_attribution,
    layer_attribution,
    logit_difference,
    logit_lens,
)
from circuitscope.analysis.backup import backup_heads
from circuitscope.analysis.bootstrap import (
    Bootstrap,
    bootstrap_ci,
    bootstrap_means,
    percentile_interval,
    summarize,
    with_ci,
)
from circuitscope.analysis.detectors import (
    DETECTORS,
    detector_score,
    detector_targets,
    detector_weights,
    duplicate_token_score,
    induction_score,
    previous_token_score,
)
from circuitscope.analysis.head_detectors import detect_heads, detector_scores_per_prompt, repeated_random_tokens

__all__ = [
    "head_attribution", "layer_attribution", "component_attribution", "logit_lens", "logit_difference",
    "answer_direction", "dla_per_prompt",
    "detect_heads", "repeated_random_tokens", "detector_scores_per_prompt", "DETECTORS",
    "detector_targets", "detector_weights", "detector_score",
    "previous_token_score", "duplicate_token_score", "induction_score",
    "attention_between", "attention_per_prompt", "attention_vs_effect", "HeadScatter",
    "backup_heads",
    "Bootstrap", "bootstrap_ci", "bootstrap_means", "percentile_interval", "summarize", "with_ci",
]
