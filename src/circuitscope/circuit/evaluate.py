"""How much of the model's behaviour a circuit explains (IOI paper section 4, MIB benchmark).

Ablate everything outside the circuit C (see :mod:`circuitscope.circuit.node_ablation` for the
nodes and methods) and read the task's metric F per prompt: the logit difference, or for span
tasks the mean log-probability of the span. F(M) is the full model, F(C) the circuit, F(empty)
everything ablated.

* **faithfulness** ``F(C) / F(M)`` (IOI paper; GPT-2 small's IOI circuit: 87%);
* **normalized faithfulness** ``(F(C) - F(empty)) / (F(M) - F(empty))`` (MIB). For span tasks,
  whose metric is a negative log-probability, a ratio means nothing, so there ``faithfulness``
  *is* the normalized one (``faithfulness_kind`` says which);
* **completeness** and **minimality** (:mod:`.completeness`) and the **faithfulness curve** with
  its areas CPR and CMD (:mod:`.curve`).

Every number is an :class:`~circuitscope.circuit.estimate.Estimate`: the mean over prompts with a
bootstrap interval, numerator and denominator resampled jointly.

>>> ev = evaluate_circuit(model, task, [(3, 3), (3, 0)], ranking=head_attribution(model, task, task))  # doctest: +SKIP
>>> print(ev); ev.figures()["curve"].save("curve.html")                                              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

from circuitscope.analysis.bootstrap import CI, as_bootstrap
from circuitscope.circuit.completeness import (
    DEFAULT_N_RANDOM, DEFAULT_SEARCH_PROMPTS, Completeness, Minimality, check_n_random, check_search_prompts,
    greedy_depth, random_subsets, run_completeness, run_minimality, set_label,
)
from circuitscope.circuit.curve import FaithfulnessCurve, curve_sizes, resolve_ranking, run_curve
from circuitscope.circuit.estimate import Estimate, estimate_mean, estimate_of_means
from circuitscope.circuit.node_ablation import CircuitAblation, Node, check_inputs, node_label

__all__ = ["CircuitEvaluation", "evaluate_circuit", "faithfulness", "normalized_faithfulness"]


def _ratio(m: list[torch.Tensor]) -> torch.Tensor:
    return m[0] / m[1]


def _normalized(m: list[torch.Tensor]) -> torch.Tensor:
    return (m[0] - m[2]) / (m[1] - m[2])


def _node_json(node: Node) -> Any:
    return list(node) if isinstance(node, tuple) else node


@dataclass
class CircuitEvaluation:
    """Everything :func:`evaluate_circuit` measured about one circuit; see the module docstring.

    ``heads``: the circuit's nodes ((layer, head) pairs, plus "MLP3" / "embed" with wider
    ``nodes``). ``*_value``: F(M), F(C), F(empty). ``cost[part]``: forward passes, rows
    (prompt-runs), newly run circuits and seconds per part (``reference`` = the corrupted run
    that yields the replacement activations).
    """

    heads: list[Node]
    method: str
    nodes: str
    metric: str
    model_value: Estimate
    circuit_value: Estimate
    empty_value: Estimate
    faithfulness: Estimate
    normalized_faithfulness: Estimate
    faithfulness_kind: str
    completeness: Optional[Completeness]
    minimality: Optional[Minimality]
    curve: Optional[FaithfulnessCurve]
    n_prompts: int
    n_nodes: int
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    ci: Optional[str] = None

    @property
    def forward_passes(self) -> int:
        return int(sum(c["forward_passes"] for c in self.cost.values()))

    @property
    def seconds(self) -> float:
        return float(sum(c["seconds"] for c in self.cost.values()))

    @property
    def labels(self) -> list[str]:
        return [node_label(n) for n in self.heads]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: Estimates as ``{"value", "ci": [lo, hi]}``, heads as ``[layer, head]``."""
        return {
            "heads": [_node_json(n) for n in self.heads], "labels": self.labels, "method": self.method,
            "nodes": self.nodes, "metric": self.metric, "n_prompts": self.n_prompts, "n_nodes": self.n_nodes,
            "model_value": self.model_value.to_dict(), "circuit_value": self.circuit_value.to_dict(),
            "empty_value": self.empty_value.to_dict(), "faithfulness": self.faithfulness.to_dict(),
            "normalized_faithfulness": self.normalized_faithfulness.to_dict(),
            "faithfulness_kind": self.faithfulness_kind,
            "completeness": None if self.completeness is None else self.completeness.to_dict(),
            "minimality": None if self.minimality is None else self.minimality.to_dict(),
            "curve": None if self.curve is None else self.curve.to_dict(),
            "cost": {k: dict(v) for k, v in self.cost.items()}, "forward_passes": self.forward_passes,
            "seconds": self.seconds, "ci": self.ci,
        }

    def __str__(self) -> str:
        shown = ", ".join(self.labels) if len(self.heads) <= 12 else ", ".join(self.labels[:12]) + ", ..."
        lines = [
            f"Circuit of {len(self.heads)} of {self.n_nodes} nodes ({shown})",
            f"  {self.method} ablation outside the circuit; nodes={self.nodes!r}; {self.n_prompts} prompts; "
            f"metric: {self.metric}" + (f"; intervals: {self.ci}" if self.ci else ""),
            f"  {'F(M)     full model':<48}{self.model_value}",
            f"  {'F(C)     circuit':<48}{self.circuit_value}",
            f"  {'F(empty) everything ablated':<48}{self.empty_value}",
        ]
        if self.faithfulness_kind == "ratio":
            lines.append(f"  {'faithfulness F(C) / F(M)':<48}{self.faithfulness}")
        lines.append(f"  {'normalized (F(C)-F(empty)) / (F(M)-F(empty))':<48}{self.normalized_faithfulness}"
                     + ("  (= faithfulness for this span task)" if self.faithfulness_kind == "normalized" else ""))
        if self.completeness is not None:
            w = self.completeness.worst
            head = "incompleteness max_K |F(C\\K) - F(M\\K)|"
            lines.append(f"  {head:<48}{w.score}  at K = {w.label} ({w.kind}; "
                         f"{len(self.completeness.points)} subsets)")
        if self.minimality is not None and len(self.minimality):
            lines.append(f"  minimality max_K |F(C\\(K+v)) - F(C\\K)|, relative to {self.minimality.relative_to}:")
            for node, est in sorted(self.minimality.scores.items(), key=lambda kv: -kv[1].value):
                lines.append(f"    {node_label(node):<8}{format(est):<30}{format(self.minimality.relative[node]):<30}"
                             f"K = {set_label(self.minimality.removed[node])}")
        if self.curve is not None:
            lines.append(f"  curve over {len(self.curve.sizes)} sizes: CPR {self.curve.cpr} (higher is better), "
                         f"CMD {self.curve.cmd} (lower is better)")
        lines.append("  cost (forward passes, circuits run on all prompts + on the search prompts, seconds):")
        for k, v in self.cost.items():
            lines.append(f"    {k:<14}{int(v['forward_passes']):>4} passes {int(v['circuits']):>5} + "
                         f"{int(v['search_circuits'])} circuits {v['seconds']:8.2f}s")
        return "\n".join(lines)

    def figures(self) -> dict[str, Any]:
        """``{"curve", "completeness", "minimality"}`` -> circuitscope Figures (those computed)."""
        out: dict[str, Any] = {}
        if self.curve is not None:
            out["curve"] = self.curve.figure()
        if self.completeness is not None:
            out["completeness"] = self.completeness.figure()
        if self.minimality is not None and len(self.minimality):
            out["minimality"] = self.minimality.figure()
        return out


def _runner(model, task, method, nodes, seed, generator, batch_size) -> CircuitAblation:
    return CircuitAblation(model, task, method, nodes, seed=seed, generator=generator, batch_size=batch_size)


def _checked(model, task, heads, method, nodes, batch_size, seed, generator) -> tuple[CircuitAblation, list[Node]]:
    """Every input checked before the first forward pass, then the runner and the circuit."""
    circuit = check_inputs(model, task, method, nodes, batch_size).parse(heads)
    return _runner(model, task, method, nodes, seed, generator, batch_size), circuit


def _three(runner: CircuitAblation, circuit: list[Node]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F(C), F(M), F(empty) per prompt, in one batched call."""
    space = runner.space
    fc, fm, fe = runner.scores(torch.stack([space.mask(circuit), space.full(), space.empty()]))
    return fc, fm, fe


def faithfulness(model, task, heads, method: str = "mean", nodes: str = "heads", ci: CI = True, seed: int = 0,
                 generator: Optional[torch.Generator] = None, batch_size: Optional[int] = None) -> Estimate:
    """F(C) / F(M) with everything outside ``heads`` ablated (for span tasks the normalized
    faithfulness, see :func:`normalized_faithfulness`). 3 circuits: C, M and the empty one."""
    runner, circuit = _checked(model, task, heads, method, nodes, batch_size, seed, generator)
    fc, fm, fe = _three(runner, circuit)
    if runner.faithfulness_kind == "normalized":
        runner.check_normalizable(fm, fe)
        return estimate_of_means([fc, fm, fe], _normalized, as_bootstrap(ci))
    return estimate_of_means([fc, fm], _ratio, as_bootstrap(ci))


def normalized_faithfulness(model, task, heads, method: str = "mean", nodes: str = "heads", ci: CI = True,
                            seed: int = 0, generator: Optional[torch.Generator] = None,
                            batch_size: Optional[int] = None) -> Estimate:
    """(F(C) - F(empty)) / (F(M) - F(empty)): 0 for the empty circuit, 1 for the full model."""
    runner, circuit = _checked(model, task, heads, method, nodes, batch_size, seed, generator)
    fc, fm, fe = _three(runner, circuit)
    runner.check_normalizable(fm, fe)
    return estimate_of_means([fc, fm, fe], _normalized, as_bootstrap(ci))


def evaluate_circuit(model, task, heads, method: str = "mean", nodes: str = "heads", ranking: Any = None,
                     n_random: int = DEFAULT_N_RANDOM, greedy: Union[bool, int] = True, ci: CI = True,
                     seed: int = 0, generator: Optional[torch.Generator] = None, batch_size: Optional[int] = None,
                     progress: bool = True, sizes: Optional[Sequence[int]] = None,
                     completeness: bool = True, minimality: bool = True,
                     search_prompts: Optional[int] = DEFAULT_SEARCH_PROMPTS) -> CircuitEvaluation:
    """Faithfulness, completeness, minimality and (given a ``ranking``) the faithfulness curve of
    the circuit ``heads``, sharing one set of replacement activations and one cache of ablated runs.

    ``heads``: ``[(layer, head), ...]`` (or "L3H3"; with ``nodes="heads+mlps"`` also "MLP3", with
    ``nodes="all"`` also "embed"; or a sketched ``Circuit``). ``method``: "mean" (per-position mean over the corrupted
    prompts), "zero" or "resample". ``nodes``: "heads" (MLPs and embeddings always kept),
    "heads+mlps" or "all". ``ranking``: for the curve (see :func:`faithfulness_curve`); None
    skips it. ``n_random`` random subsets K and greedy K up to ``greedy`` nodes (True: 3) for
    completeness and minimality (``completeness=False`` / ``minimality=False`` skip them).
    ``ci``: True (1000-resample bootstrap), False, or a ``Bootstrap`` (which has its own seed).
    ``seed`` / ``generator``: the randomness of resample ablation, of the random subsets and of the
    search prompts (never the global RNG). ``batch_size``: rows (circuit x prompt) per forward pass; default: what fits 1 GiB.
    ``sizes``: the curve's sizes. ``search_prompts``: the searches for the worst K rank their
    candidates on this many prompts (drawn once; None: all) and measure the winner on every prompt.
    """
    space = check_inputs(model, task, method, nodes, batch_size)
    circuit = space.parse(heads)
    n_random = check_n_random(n_random)
    search = check_search_prompts(search_prompts)
    depth = greedy_depth(greedy, len(circuit))
    order = None if ranking is None else resolve_ranking(space, ranking)
    curve_ks = None if order is None else curve_sizes(len(space), sizes)
    runner = _runner(model, task, method, nodes, seed, generator, batch_size)
    boot = as_bootstrap(ci)
    kind = runner.faithfulness_kind
    with runner.part("faithfulness"):
        fc, fm, fe = _three(runner, circuit)
        if kind == "normalized":
            runner.check_normalizable(fm, fe)
        normalized = estimate_of_means([fc, fm, fe], _normalized, boot)
        faith = normalized if kind == "normalized" else estimate_of_means([fc, fm], _ratio, boot)
        values = [estimate_mean(x, boot) for x in (fm, fc, fe)]
    subsets = random_subsets(circuit, n_random, runner.generator)
    comp = mini = curve = None
    if completeness:
        with runner.part("completeness"):
            comp = run_completeness(runner, circuit, subsets, depth, boot, progress, search)
    if minimality:
        with runner.part("minimality"):
            mini = run_minimality(runner, circuit, subsets, depth, boot, progress, search)
    if order is not None:
        with runner.part("curve"):
            curve = run_curve(runner, order, curve_ks, boot, progress)
    return CircuitEvaluation(
        heads=circuit, method=method, nodes=nodes, metric=runner.metric_name, model_value=values[0],
        circuit_value=values[1], empty_value=values[2], faithfulness=faith, normalized_faithfulness=normalized,
        faithfulness_kind=kind, completeness=comp, minimality=mini, curve=curve, n_prompts=runner.n_prompts,
        n_nodes=len(space), cost=runner.cost, ci=None if boot is None else boot.describe(),
    )
