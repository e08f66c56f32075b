"""Completeness and minimality of a circuit (IOI paper, section 4).

*Completeness*: a complete circuit C should behave like the full model M not only as a whole but
also when parts of it are knocked out. For subsets K of C we compare F(C \\ K) with F(M \\ K) (the
full model with K ablated too); the incompleteness score of K is ``|F(C \\ K) - F(M \\ K)|``, and
we report the worst one. K is drawn at random (each node of C with probability 1/2) and built
greedily, adding one node at a time so as to maximise the score; K = {} and K = C are included.

*Minimality*: every node v of a minimal circuit matters somewhere. Its score is the largest
``|F(C \\ (K + v)) - F(C \\ K)|`` over subsets K of C \\ {v}: K = {}, the random subsets (without
v) and a greedy search per v. It is also reported relative to F(C) (for span tasks, relative to
F(M) - F(empty), since their metric is a negative log-probability).

Both maxima are taken over the mean over prompts. To keep the searches cheap, the greedy steps
and the per-node choice of K rank their candidates on ``search_prompts`` prompts (32 by default,
drawn once from the seeded generator) and then measure the chosen K on every prompt. The
interval of a reported score is the bootstrap interval at the chosen K; it does not account for
the search (a maximum over many K is biased upwards).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from circuitscope.analysis._typing import Bool, Tensor
from circuitscope.analysis.bootstrap import CI, Bootstrap, as_bootstrap
from circuitscope.circuit.estimate import Estimate, estimate_mean, estimate_of_means
from circuitscope.circuit.node_ablation import CircuitAblation, Node, check_inputs, node_label

__all__ = ["CompletenessPoint", "Completeness", "Minimality", "completeness", "minimality", "DEFAULT_N_RANDOM",
           "DEFAULT_GREEDY_DEPTH", "DEFAULT_SEARCH_PROMPTS"]

DEFAULT_N_RANDOM = 10
DEFAULT_GREEDY_DEPTH = 3  # greedy=True: K grows to at most this many nodes (each step tries every candidate)
DEFAULT_SEARCH_PROMPTS = 32  # searches rank candidate K on this many prompts, then measure the best on all


def set_label(nodes: Sequence[Node]) -> str:
    return "{" + ", ".join(node_label(n) for n in nodes) + "}"


def _abs_diff(m: list[torch.Tensor]) -> torch.Tensor:
    return (m[0] - m[1]).abs()


@dataclass(frozen=True)
class CompletenessPoint:
    """One subset K: ``circuit_value`` F(C \\ K), ``model_value`` F(M \\ K), ``score`` |difference|."""

    removed: tuple[Node, ...]
    kind: str  # "empty", "circuit" (K = C), "random" or "greedy"
    circuit_value: Estimate
    model_value: Estimate
    score: Estimate

    @property
    def label(self) -> str:
        return set_label(self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {"removed": [node_label(n) for n in self.removed], "kind": self.kind,
                "circuit_value": self.circuit_value.to_dict(), "model_value": self.model_value.to_dict(),
                "score": self.score.to_dict()}


@dataclass
class Completeness:
    """Every subset K checked, and the worst one (largest ``|F(C \\ K) - F(M \\ K)|``)."""

    points: list[CompletenessPoint]
    worst: CompletenessPoint

    @property
    def score(self) -> Estimate:
        """The worst incompleteness score ``max_K |F(C \\ K) - F(M \\ K)|`` (0 for a complete circuit)."""
        return self.worst.score

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score.to_dict(), "worst": self.worst.to_dict(),
                "points": [p.to_dict() for p in self.points]}

    def figure(self, title: str = "Completeness: F(C \\ K) against F(M \\ K)"):
        """Scatter of F(C \\ K) against F(M \\ K), one point per K, with the line y = x (complete)."""
        from circuitscope.plot import scatter

        xs = [p.model_value.value for p in self.points]
        ys = [p.circuit_value.value for p in self.points]
        names = [f"K = {p.label} ({p.kind})" for p in self.points]
        return scatter(xs, ys, names=names, title=title, x_title="F(M \\ K), full model without K",
                       y_title="F(C \\ K), circuit without K", diagonal=True)


class Minimality(Mapping):
    """``{node: Estimate}``: each node's minimality score; ``relative`` the same divided by
    ``relative_to``; ``removed[node]`` the K at which the maximum was found."""

    def __init__(self, scores: dict, relative: dict, removed: dict, relative_to: str):
        self.scores, self.relative, self.removed, self.relative_to = scores, relative, removed, relative_to

    def __getitem__(self, node: Node) -> Estimate:
        return self.scores[node]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return "Minimality({" + ", ".join(f"{node_label(n)}: {e}" for n, e in self.scores.items()) + "})"

    def to_dict(self) -> dict[str, Any]:
        return {"relative_to": self.relative_to, "nodes": [
            {"node": node_label(n), "score": e.to_dict(), "relative": self.relative[n].to_dict(),
             "removed": [node_label(k) for k in self.removed[n]]} for n, e in self.scores.items()]}

    def figure(self, relative: bool = False, title: str = ""):
        """Bar chart of every node's score (or relative score) with its interval."""
        from circuitscope.plot import bar

        data = self.relative if relative else self.scores
        values = [e.value for e in data.values()]
        ci = None
        if data and all(e.ci is not None for e in data.values()):
            ci = ([e.ci[0] for e in data.values()], [e.ci[1] for e in data.values()])
        what = f"relative to {self.relative_to}" if relative else "max_K |F(C \\ (K + v)) - F(C \\ K)|"
        return bar(values, labels=[node_label(n) for n in data], ci=ci, title=title or f"Minimality ({what})",
                   x_title="node v", y_title="minimality score")


# ---------------------------------------------------------------------------- helpers
def greedy_depth(greedy: Union[bool, int], n: int) -> int:
    """How many nodes a greedy K may hold: True -> ``min(n, DEFAULT_GREEDY_DEPTH)``, False -> 0."""
    if greedy is True:
        return min(n, DEFAULT_GREEDY_DEPTH)
    if greedy is False or greedy is None:
        return 0
    if isinstance(greedy, int) and greedy >= 0:
        return min(n, greedy)
    raise ValueError(f"greedy must be True, False or the largest K to build (an integer >= 0), got {greedy!r}")


def check_n_random(n_random: Any) -> int:
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"n_random must be an integer >= 0 (how many random subsets K to try), got {n_random!r}")
    return n_random


def check_search_prompts(n: Any) -> Optional[int]:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"search_prompts must be a positive integer (prompts a search ranks candidates on) or None "
                         f"(all prompts), got {n!r}")
    return n


def random_subsets(circuit: Sequence[Node], n: int, generator: torch.Generator) -> list[tuple[Node, ...]]:
    """``n`` subsets of the circuit, each node in with probability 1/2 (seeded generator)."""
    if not circuit:
        return [() for _ in range(n)]
    draws = torch.rand(n, len(circuit), generator=generator) < 0.5  # [subset, node]
    return [tuple(c for c, keep in zip(circuit, row.tolist()) if keep) for row in draws]


def _without(base: Bool[Tensor, "node"], runner: CircuitAblation, removed: Sequence[Node]) -> Bool[Tensor, "node"]:
    mask = base.clone()
    for n in removed:
        mask[runner.space.index[n]] = False
    return mask


# ---------------------------------------------------------------------------- completeness
def run_completeness(runner: CircuitAblation, circuit: list[Node], subsets: list[tuple[Node, ...]], depth: int,
                     boot: Optional[Bootstrap], progress: bool = False,
                     search_prompts: Optional[int] = DEFAULT_SEARCH_PROMPTS) -> Completeness:
    """Completeness on an existing :class:`CircuitAblation` (so its circuits are cached and shared)."""
    space = runner.space
    search = runner.search_prompts(search_prompts) if depth else None
    c_mask, m_mask = space.mask(circuit), space.full()
    sets: list[tuple[tuple[Node, ...], str]] = [((), "empty")]
    if circuit:
        sets.append((tuple(circuit), "circuit"))
    sets += [(k, "random") for k in subsets]

    def pair_scores(ks: list[tuple[Node, ...]], prompts=None) -> tuple[torch.Tensor, torch.Tensor]:
        masks = [_without(c_mask, runner, k) for k in ks] + [_without(m_mask, runner, k) for k in ks]
        values = runner.scores(torch.stack(masks), progress, "completeness", prompts)  # [2 * set, prompt]
        return values[: len(ks)], values[len(ks):]

    fc, fm = pair_scores([k for k, _ in sets])
    values = {k: (fc[i], fm[i]) for i, (k, _) in enumerate(sets)}
    chain: list[Node] = []
    steps = range(depth)
    if progress and depth > 1:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="completeness (greedy)", leave=False)
    for _ in steps:  # add the node whose removal makes C and M differ most
        candidates = [tuple(chain) + (u,) for u in circuit if u not in chain]
        fc, fm = pair_scores(candidates, search)  # ranked on the search prompts
        gaps = (fc.mean(1) - fm.mean(1)).abs()  # [candidate]
        chosen = candidates[int(gaps.argmax())]
        chain = list(chosen)
        fc, fm = pair_scores([chosen])  # then measured on every prompt
        values[chosen] = (fc[0], fm[0])
        sets.append((chosen, "greedy"))
    points = []
    for k, kind in sets:
        a, b = values[k]
        points.append(CompletenessPoint(k, kind, estimate_mean(a, boot), estimate_mean(b, boot),
                                        estimate_of_means([a, b], _abs_diff, boot)))
    worst = max(points, key=lambda p: p.score.value)
    return Completeness(points, worst)


def completeness(model, task, heads, method: str = "mean", nodes: str = "heads", n_random: int = DEFAULT_N_RANDOM,
                 greedy: Union[bool, int] = True, ci: CI = True, seed: int = 0,
                 generator: Optional[torch.Generator] = None, batch_size: Optional[int] = None,
                 progress: bool = True, search_prompts: Optional[int] = DEFAULT_SEARCH_PROMPTS) -> Completeness:
    """How far the circuit ``heads`` is from behaving like the model when subsets K of it are
    ablated too: ``max_K |F(C \\ K) - F(M \\ K)|`` over K = {}, K = C, ``n_random`` random subsets and
    greedily built ones (``greedy``: True, False or the largest K). See :func:`evaluate_circuit`
    for the other arguments."""
    circuit = check_inputs(model, task, method, nodes, batch_size).parse(heads)
    n_random, depth = check_n_random(n_random), greedy_depth(greedy, len(circuit))
    search = check_search_prompts(search_prompts)
    runner = CircuitAblation(model, task, method, nodes, seed=seed, generator=generator, batch_size=batch_size)
    subsets = random_subsets(circuit, n_random, runner.generator)
    with runner.part("completeness"):
        return run_completeness(runner, circuit, subsets, depth, as_bootstrap(ci), progress, search)


# ---------------------------------------------------------------------------- minimality
FINALISTS = 3  # candidate K per node measured on every prompt, besides K = {}

def run_minimality(runner: CircuitAblation, circuit: list[Node], subsets: list[tuple[Node, ...]], depth: int,
                   boot: Optional[Bootstrap], progress: bool = False,
                   search_prompts: Optional[int] = DEFAULT_SEARCH_PROMPTS) -> Minimality:
    """Minimality on an existing :class:`CircuitAblation`; ``subsets`` are the random K (v is
    taken out of each). Candidate K are ranked on the search prompts; each node's best
    ``FINALISTS`` candidates and K = {} are then measured on every prompt, and the largest wins
    (so the reported value is never below K = {}'s)."""
    space = runner.space
    c_mask = space.mask(circuit)
    search = runner.search_prompts(search_prompts)
    best: dict[Node, list[tuple[float, tuple[Node, ...]]]] = {v: [] for v in circuit}

    def try_sets(pairs: list[tuple[Node, tuple[Node, ...]]]) -> list[float]:
        """|F(C \\ (K + v)) - F(C \\ K)| on the search prompts for each (v, K); keep each v's best K."""
        if not pairs:
            return []
        masks = [_without(c_mask, runner, k + (v,)) for v, k in pairs] + [_without(c_mask, runner, k) for _, k in pairs]
        means = runner.scores(torch.stack(masks), progress, "minimality", search).mean(1)  # [2 * pair]
        gaps = (means[: len(pairs)] - means[len(pairs):]).abs().tolist()
        for (v, k), gap in zip(pairs, gaps):
            best[v].append((gap, k))
        return gaps

    start = [(v, ()) for v in circuit]
    start += [(v, tuple(n for n in k if n != v)) for k in subsets for v in circuit]
    try_sets(start)
    chains: dict[Node, tuple[Node, ...]] = {v: () for v in circuit}
    steps = range(min(depth, max(len(circuit) - 1, 0)))
    if progress and len(steps) > 1:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="minimality (greedy)", leave=False)
    for _ in steps:  # per v, grow K by the node that makes removing v matter most
        pairs = [(v, chains[v] + (u,)) for v in circuit for u in circuit if u != v and u not in chains[v]]
        gaps = try_sets(pairs)
        for v in circuit:
            mine = [(g, k) for (w, k), g in zip(pairs, gaps) if w == v]
            if mine:
                chains[v] = max(mine, key=lambda gk: gk[0])[1]
    finalists = []  # (v, K): each node's best few K on the search prompts, and K = {}
    for v in circuit:
        ranked = [k for _, k in sorted(best[v], key=lambda gk: -gk[0])]
        for k in [()] + ranked:
            if (v, k) not in finalists and sum(1 for w, _ in finalists if w == v) < FINALISTS + 1:
                finalists.append((v, k))
    masks = [_without(c_mask, runner, k + (v,)) for v, k in finalists]
    masks += [_without(c_mask, runner, k) for v, k in finalists]
    masks += [space.full(), space.empty(), c_mask]
    values = runner.scores(torch.stack(masks), progress, "minimality")  # every prompt
    fm, fe, fc = values[-3:]
    n = len(finalists)
    gaps = (values[:n].mean(1) - values[n:2 * n].mean(1)).abs()  # [finalist] on every prompt
    pick = {}
    for i, (v, k) in enumerate(finalists):
        if v not in pick or gaps[i] > gaps[pick[v]]:
            pick[v] = i
    chosen = [finalists[pick[v]] for v in circuit]
    values = torch.cat([values[[pick[v] for v in circuit]], values[[n + pick[v] for v in circuit]], values[-3:]])
    relative_to = "F(M) - F(empty)" if runner.faithfulness_kind == "normalized" else "|F(C)|"
    scores, relative, removed = {}, {}, {}
    for i, (v, k) in enumerate(chosen):
        a, b = values[i], values[len(chosen) + i]
        scores[v] = estimate_of_means([a, b], _abs_diff, boot)
        if relative_to == "|F(C)|":
            relative[v] = estimate_of_means([a, b, fc], lambda m: (m[0] - m[1]).abs() / m[2].abs(), boot)
        else:
            relative[v] = estimate_of_means([a, b, fm, fe], lambda m: (m[0] - m[1]).abs() / (m[2] - m[3]), boot)
        removed[v] = k
    return Minimality(scores, relative, removed, relative_to)


def minimality(model, task, heads, method: str = "mean", nodes: str = "heads", n_random: int = DEFAULT_N_RANDOM,
               greedy: Union[bool, int] = True, ci: CI = True, seed: int = 0,
               generator: Optional[torch.Generator] = None, batch_size: Optional[int] = None,
               progress: bool = True, search_prompts: Optional[int] = DEFAULT_SEARCH_PROMPTS) -> Minimality:
    """For each node v of the circuit ``heads``, ``max_K |F(C \\ (K + v)) - F(C \\ K)|`` over
    K = {}, ``n_random`` random subsets of C without v and a greedy search (``greedy``: True,
    False or the largest K): a node whose score is about 0 could be dropped. See
    :func:`evaluate_circuit` for the other arguments."""
    circuit = check_inputs(model, task, method, nodes, batch_size).parse(heads)
    n_random, depth = check_n_random(n_random), greedy_depth(greedy, len(circuit))
    search = check_search_prompts(search_prompts)
    runner = CircuitAblation(model, task, method, nodes, seed=seed, generator=generator, batch_size=batch_size)
    subsets = random_subsets(circuit, n_random, runner.generator)
    with runner.part("minimality"):
        return run_minimality(runner, circuit, subsets, depth, as_bootstrap(ci), progress, search)
