"""Faithfulness curves (MIB benchmark): how much of the behaviour the top-k nodes recover.

Given a ranking of the nodes (most important first), the circuit of size k is the top k nodes;
its normalized faithfulness ``f(k) = (F(C_k) - F(empty)) / (F(M) - F(empty))`` is 0 at k = 0 and 1
at k = n. Against ``x = k / n``:

* **CPR** (circuit performance ratio) is the area under ``f`` (higher: a small circuit already
  does the task);
* **CMD** (circuit-model difference) is the area under ``|1 - f|`` (lower: the circuits stay
  close to the model).

Both areas use the trapezoid rule over the evaluated sizes. Intervals resample the prompts
jointly for every point (one resample feeds every size, F(M) and F(empty)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.analysis.bootstrap import CI, Bootstrap, as_bootstrap
from circuitscope.circuit.estimate import Estimate, estimate_of_means
from circuitscope.circuit.node_ablation import CircuitAblation, Node, NodeSpace, check_inputs, node_label

__all__ = ["FaithfulnessCurve", "faithfulness_curve", "resolve_ranking", "curve_sizes", "curve_areas",
           "ALL_SIZES_UP_TO"]

ALL_SIZES_UP_TO = 64  # up to this many nodes every size k is evaluated; above, a grid
_MIB_FRACTIONS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class FaithfulnessCurve:
    """Normalized faithfulness of the top-k circuit for each size k, and its areas CPR and CMD."""

    sizes: list[int]
    x: list[float]  # k / n_nodes
    values: list[Estimate]
    cpr: Estimate
    cmd: Estimate
    ranking: list[Node]
    n_nodes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sizes": list(self.sizes), "x": list(self.x), "values": [v.to_dict() for v in self.values],
                "cpr": self.cpr.to_dict(), "cmd": self.cmd.to_dict(),
                "ranking": [node_label(n) for n in self.ranking], "n_nodes": self.n_nodes}

    def figure(self, title: str = ""):
        """Line of f(k) against the fraction of nodes kept, with its interval band."""
        from circuitscope.plot import line

        # The line's x axis is categorical: plot evenly spaced sizes only (all of them up to
        # ALL_SIZES_UP_TO nodes, else the 1/32 grid), so the drawn area matches CPR / CMD.
        n = self.sizes[-1] if self.sizes else 0
        grid = {int(round(i / 32 * n)) for i in range(33)}
        keep = [i for i, k in enumerate(self.sizes) if n <= ALL_SIZES_UP_TO or k in grid]
        values = [self.values[i] for i in keep]
        ci = None
        if values and all(v.ci is not None for v in values):
            ci = ([v.ci[0] for v in values], [v.ci[1] for v in values])
        return line([v.value for v in values], x_labels=[f"{self.sizes[i]} ({self.x[i]:.0%})" for i in keep],
                    ci=ci, names=["normalized faithfulness"],
                    title=title or f"Faithfulness of the top-k circuit: CPR {self.cpr:.3g}, CMD {self.cmd:.3g}",
                    x_title="k nodes kept (fraction of all)", y_title="(F(C_k) - F(empty)) / (F(M) - F(empty))")


def resolve_ranking(space: NodeSpace, ranking: Any) -> list[Node]:
    """Every node of ``space``, most important first, from: a sequence of nodes; a
    ``[n_layers, n_heads]`` score map (tensor, array or :class:`~circuitscope.results.Result`, e.g.
    ``head_attribution(model, task, task)``) or ``{node: score}`` dict, ranked by ``|score|``."""
    if ranking is None:
        raise ValueError(
            "a faithfulness curve needs a ranking of the nodes, most important first: a list of heads, or "
            "scores ranked by their absolute value, e.g. ranking=head_attribution(model, task, task) (|DLA|) "
            "or the output of activation patching"
        )
    if hasattr(ranking, "values") and hasattr(ranking, "axes"):  # a Result
        ranking = ranking.values
    if isinstance(ranking, dict):
        keys = space.parse(list(ranking), "ranking")
        scores = torch.tensor([abs(float(v)) for v in ranking.values()], dtype=torch.float64)
        order = _order(scores)
        nodes = [keys[i] for i in order]
    elif hasattr(ranking, "shape") and len(getattr(ranking, "shape")) == 2 and not _is_pairs(ranking):
        scores = torch.as_tensor(ranking, dtype=torch.float64).detach().cpu()
        shape = (space.n_layers, space.n_heads)
        if tuple(scores.shape) != shape:
            raise ValueError(f"a ranking score map must be [n_layers, n_heads] = {list(shape)}, got {list(scores.shape)}")
        nodes = [space.nodes[i] for i in _order(scores.flatten().abs())]
    else:
        nodes = space.parse(ranking, "ranking")
    missing = [n for n in space.nodes if n not in set(nodes)]
    if missing:
        shown = ", ".join(node_label(n) for n in missing[:12]) + (" ..." if len(missing) > 12 else "")
        hint = " (a [layer, head] score map covers heads only: pass a list or a {node: score} dict)" if space.mode != "heads" else ""
        raise ValueError(
            f"the ranking covers {len(space) - len(missing)} of the {len(space)} nodes ({space.describe()}); "
            f"missing {shown}. A curve adds nodes in ranking order up to the full model, so it must rank every one{hint}"
        )
    return nodes


def _is_pairs(x: Any) -> bool:
    """A ``[n, 2]`` integer tensor is a list of heads, not a score map."""
    t = torch.as_tensor(x)
    return not t.is_floating_point() and t.shape[-1] == 2 and t.dtype != torch.bool


def _order(scores: Float[Tensor, "node"]) -> list[int]:
    """Indices by decreasing score (NaN last; ties keep the node order)."""
    s = torch.nan_to_num(scores, nan=-float("inf"))
    return torch.argsort(-s, stable=True).tolist()


def curve_sizes(n: int, sizes: Optional[Sequence[int]] = None) -> list[int]:
    """The sizes k to evaluate, always with 0 and n: every k up to ``ALL_SIZES_UP_TO`` nodes, else
    MIB's fractions plus every 1/32 of the nodes."""
    if sizes is None:
        if n <= ALL_SIZES_UP_TO:
            return list(range(n + 1))
        fractions = set(_MIB_FRACTIONS) | {i / 32 for i in range(33)}
        return sorted({int(round(f * n)) for f in fractions})
    ks = []
    for k in sizes:
        if isinstance(k, bool) or not isinstance(k, int) and not (isinstance(k, torch.Tensor) and k.ndim == 0):
            raise TypeError(f"sizes must be integers (numbers of nodes kept), got {k!r}")
        k = int(k)
        if not 0 <= k <= n:
            raise ValueError(f"size {k} is outside 0..{n} (the number of nodes that can be ablated)")
        ks.append(k)
    return sorted(set(ks) | {0, n})


def curve_areas(x: Sequence[float], f: Float[Tensor, "size *resample"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Trapezoid areas under ``f`` and under ``|1 - f|`` over ``x`` (CPR, CMD)."""
    xs = torch.as_tensor(list(x), dtype=f.dtype, device=f.device)
    dx = (xs[1:] - xs[:-1])[(...,) + (None,) * (f.ndim - 1)]  # [size - 1, 1...]
    cpr = (dx * (f[1:] + f[:-1]) / 2).sum(0)
    gap = (1 - f).abs()
    cmd = (dx * (gap[1:] + gap[:-1]) / 2).sum(0)
    return cpr, cmd


def run_curve(runner: CircuitAblation, ranking: list[Node], sizes: list[int], boot: Optional[Bootstrap],
              progress: bool = False) -> FaithfulnessCurve:
    """The curve on an existing :class:`CircuitAblation` (circuits cached and shared)."""
    space = runner.space
    n = len(space)
    masks = torch.stack([space.mask(ranking[:k]) for k in sizes])  # [size, node]
    values = runner.scores(masks, progress, "faithfulness curve")  # [size, prompt]
    fm, fe = runner.scores(torch.stack([space.full(), space.empty()]))
    runner.check_normalizable(fm, fe)
    x = [k / n for k in sizes]

    def normalized(m: list[torch.Tensor]) -> torch.Tensor:  # m: per size, then F(M), F(empty)
        *fs, m_model, m_empty = m
        return (torch.stack(fs) - m_empty) / (m_model - m_empty)  # [size, resample]

    points = [estimate_of_means([values[i], fm, fe], lambda m: normalized(m)[0], boot) for i in range(len(sizes))]
    per_prompt = list(values) + [fm, fe]
    cpr = estimate_of_means(per_prompt, lambda m: curve_areas(x, normalized(m))[0], boot)
    cmd = estimate_of_means(per_prompt, lambda m: curve_areas(x, normalized(m))[1], boot)
    return FaithfulnessCurve(list(sizes), x, points, cpr, cmd, list(ranking), n)


def faithfulness_curve(model, task, ranking, sizes: Optional[Sequence[int]] = None, method: str = "mean",
                       nodes: str = "heads", ci: CI = True, seed: int = 0, generator: Optional[torch.Generator] = None,
                       batch_size: Optional[int] = None, progress: bool = True) -> FaithfulnessCurve:
    """Normalized faithfulness of the top-k nodes of ``ranking`` for each size k in ``sizes``
    (default: every k for up to 64 nodes, a grid beyond; 0 and n are always added), with the
    areas CPR and CMD. ``ranking``: a list of every node, most important first, or scores (a
    ``[layer, head]`` map, a Result such as ``head_attribution(model, task, task)``, or a
    ``{node: score}`` dict) ranked by absolute value. Other arguments as in :func:`evaluate_circuit`."""
    space = check_inputs(model, task, method, nodes, batch_size)
    order, ks = resolve_ranking(space, ranking), curve_sizes(len(space), sizes)
    runner = CircuitAblation(model, task, method, nodes, seed=seed, generator=generator, batch_size=batch_size)
    with runner.part("curve"):
        return run_curve(runner, order, ks, as_bootstrap(ci), progress)
