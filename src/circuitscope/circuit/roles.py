"""Head roles and the rules that assign them, from numbers that each carry an interval.

A head earns a role only through an experiment whose effect clears an explicit threshold *and*
whose 95% interval excludes zero; the role's name then comes from what else is known about the
head (its direct effect on the correct and incorrect answers, its detector scores), and every
such secondary fact must clear its own threshold on its interval's lower end. No label rests on
one noisy number.

Roles:

* ``mover``: writes the answer directly and mostly by raising the correct answer (GPT-2's name movers);
* ``suppressor``: writes the answer directly, mostly by *lowering* the incorrect answer;
* ``direct``: writes the answer directly, but neither answer's logit moves significantly on its
  own (or the task has no answer pair to split, e.g. a span metric);
* ``negative mover``: writes directly *against* the answer;
* ``induction``: writes the answer directly and is an induction head by the detector;
* ``inhibition``: drives the direct heads' queries (IOI's S-inhibition heads);
* ``previous token`` / ``duplicate token`` / ``induction``: feeds a circuit head's query, key or
  value and matches that detector;
* ``feeder``: feeds a circuit head's key or value (or a deeper head's query) and matches no detector;
* ``backup``: outside the circuit, but its direct effect rises when the direct heads are knocked out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from circuitscope.circuit.estimate import Estimate

__all__ = ["ROLES", "DETECTOR_ROLES", "SketchConfig", "HeadFacts", "assign_role", "detector_matches"]

ROLES = ("mover", "suppressor", "direct", "negative mover", "induction", "inhibition", "previous token",
         "duplicate token", "feeder", "backup")
DETECTOR_ROLES = {"previous_token": "previous token", "duplicate_token": "duplicate token", "induction": "induction"}


@dataclass(frozen=True)
class SketchConfig:
    """The sketch's thresholds (all explicit; effects are fractions of the clean-corrupted gap).

    ``direct_threshold``: smallest |direct-path effect| that makes a head a direct head.
    ``path_threshold``: smallest |path-patching effect| into a circuit head's q, k or v.
    ``detector_threshold``: a detector score (previous-token, duplicate-token, induction) names a
    role when its mean is at least this and its interval's lower end at least 0.8 times this.
    ``backup_threshold``: smallest rise of a head's DLA after the knock-out, as a fraction of the
    knocked-out heads' total DLA. ``suppression_share``: a direct head that helps is a suppressor
    when lowering the incorrect answer is more than this share of its direct logit difference.
    ``edge_threshold``: smallest |path effect| from one sender into one receiver that is drawn
    as an edge (each edge's interval must also exclude 0). ``max_depth``: how many levels of
    path patching below the direct heads. ``ablation``: how
    the direct heads are knocked out for the backup search (``"mean"``, ``"zero"``,
    ``"resample"``). Intervals: ``confidence`` percentile bootstrap over prompts with
    ``n_resamples`` resamples, seeded by ``seed``.
    """

    direct_threshold: float = 0.05
    path_threshold: float = 0.05
    detector_threshold: float = 0.5
    backup_threshold: float = 0.1
    suppression_share: float = 0.5
    edge_threshold: float = 0.01
    max_depth: int = 2
    ablation: str = "mean"
    n_detector_prompts: int = 100
    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("direct_threshold", "path_threshold", "detector_threshold", "backup_threshold", "edge_threshold"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.suppression_share < 1:
            raise ValueError(f"suppression_share must lie in (0, 1), got {self.suppression_share}")
        if self.max_depth < 0:
            raise ValueError(f"max_depth must be >= 0, got {self.max_depth}")
        if self.ablation not in ("mean", "zero", "resample"):
            raise ValueError(f"ablation must be 'mean', 'zero' or 'resample', got {self.ablation!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HeadFacts:
    """What the sketch knows about one head when it names its role.

    ``level``: ``"direct"``, ``"q"``, ``"k"``, ``"v"`` (the input of a circuit head it feeds) or
    ``"backup"``. ``effect``: the estimate that put it there (direct / path effect, IOI
    convention: negative = the head's clean output helps; for backup, the DLA rise).
    ``correct`` / ``incorrect``: its direct effect on each answer's (centred) logit, if known.
    ``detectors``: detector name -> score estimate. ``depth``: 1 for heads feeding the direct
    heads, 2 for heads feeding those, ...
    """

    level: str
    effect: Estimate
    correct: Optional[Estimate] = None
    incorrect: Optional[Estimate] = None
    detectors: dict[str, Estimate] = field(default_factory=dict)
    depth: int = 1  # levels below the direct heads (q/k/v heads only)


def detector_matches(detectors: dict[str, Estimate], config: SketchConfig) -> list[str]:
    """Detector names whose score clears the threshold on its mean and (0.8x) on its lower bound,
    best first."""
    thr = config.detector_threshold
    hits = [(est.value, name) for name, est in detectors.items()
            if est.value >= thr and est.ci is not None and est.ci[0] >= 0.8 * thr]
    return [name for _, name in sorted(hits, reverse=True)]


def assign_role(facts: HeadFacts, config: SketchConfig = SketchConfig()) -> tuple[str, str]:
    """``(role, reason)`` for a head already selected by a significant experiment."""
    matches = detector_matches(facts.detectors, config)
    match_text = ", ".join(f"{DETECTOR_ROLES.get(m, m)} score {facts.detectors[m]}" for m in matches)
    if facts.level == "backup":
        return "backup", f"its direct effect rises by {facts.effect} when the direct heads are knocked out"
    if facts.level == "direct":
        if facts.effect.value > 0:
            return "negative mover", f"its direct path works against the answer ({facts.effect})"
        if "induction" in matches:
            return "induction", f"writes the answer directly ({facts.effect}) and is an induction head ({match_text})"
        if facts.correct is not None and facts.incorrect is not None:
            up, down = facts.correct.value, -facts.incorrect.value
            total = up + down
            lowered = down > 0 and facts.incorrect.ci is not None and facts.incorrect.ci[1] < 0
            raised = up > 0 and facts.correct.ci is not None and facts.correct.ci[0] > 0
            if total > 0 and lowered and down / total > config.suppression_share:
                return "suppressor", (f"writes the answer directly ({facts.effect}) mostly by lowering the "
                                      f"incorrect answer ({facts.incorrect}) rather than raising the correct "
                                      f"one ({facts.correct})")
            if total > 0 and raised and up / total >= 1 - config.suppression_share:
                return "mover", (f"writes the answer directly ({facts.effect}), mostly by raising the correct "
                                 f"answer ({facts.correct}; incorrect {facts.incorrect})")
            return "direct", (f"writes the answer directly ({facts.effect}); neither answer's logit alone moves "
                              f"clearly enough to say how (correct {facts.correct}, incorrect {facts.incorrect})")
        return "direct", f"writes the answer directly ({facts.effect})"
    if facts.level not in ("q", "k", "v"):
        raise ValueError(f"unknown level {facts.level!r}; expected direct, q, k, v or backup")
    if matches:
        return DETECTOR_ROLES.get(matches[0], matches[0]), f"feeds the {facts.level} of circuit heads ({facts.effect}); {match_text}"
    if facts.level == "q" and facts.depth == 1:
        return "inhibition", f"drives the direct heads' queries ({facts.effect}); no detector matches"
    return "feeder", f"feeds the {facts.level} of circuit heads ({facts.effect}); no detector matches"
