"""A found circuit: its heads, each head's role, score and evidence, and the edges between them.

:func:`~circuitscope.circuit.sketch.sketch_circuit` returns a :class:`Circuit`; it prints as a
table, renders itself in a notebook, serialises to JSON (``to_dict``) and draws itself
(``figures()``, ``diagram()``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Optional

from circuitscope.circuit.estimate import Estimate
from circuitscope.circuit.roles import SketchConfig
from circuitscope.results import Result

__all__ = ["Evidence", "HeadRecord", "Edge", "Circuit", "head_label"]


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


@dataclass
class Evidence:
    """One experiment's number for one head, and the figure (``Circuit.results`` key) showing it."""

    experiment: str
    figure: str
    value: Estimate
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "figure": self.figure, **self.value.to_dict(), "note": self.note}


@dataclass
class HeadRecord:
    """A circuit head: ``role`` and why (``reason``), the ``score`` that selected it, every piece of
    ``evidence``, and ``tags`` (other detector matches, the position it attends to)."""

    layer: int
    head: int
    role: str
    score: Estimate
    reason: str
    level: str
    evidence: list[Evidence] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return head_label(self.layer, self.head)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "head": self.head, "role": self.role, "score": self.score.to_dict(),
                "reason": self.reason, "level": self.level, "tags": list(self.tags),
                "evidence": [e.to_dict() for e in self.evidence]}


@dataclass
class Edge:
    """``src`` feeds ``dst``'s ``input`` (``"q"``, ``"k"``, ``"v"``, or ``"logits"`` for the direct path)."""

    src: str
    dst: str
    input: str
    effect: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "input": self.input, **self.effect.to_dict()}


@dataclass
class Circuit:
    """The sketch's answer. ``heads`` ``[(layer, head)]`` sorted; ``records`` label -> HeadRecord;
    ``description``: plain sentences saying what the circuit does, generated from the numbers;
    ``results``: every experiment's full result (figure name -> Result); ``baselines``: the task
    metric on the clean and corrupted prompts; ``drivers``: for each path-patching result, the
    senders whose effect was significant (new heads and heads already in the circuit)."""

    records: dict[str, HeadRecord]
    edges: list[Edge]
    description: list[str]
    results: dict[str, Result]
    config: SketchConfig
    n_layers: int
    n_heads: int
    baselines: dict[str, float] = field(default_factory=dict)
    task: str = ""
    seconds: float = 0.0
    drivers: dict[str, list[tuple[str, Estimate]]] = field(default_factory=dict)  # path result -> senders

    @property
    def heads(self) -> list[tuple[int, int]]:
        return sorted((r.layer, r.head) for r in self.records.values())

    @property
    def roles(self) -> dict[str, str]:
        return {label: r.role for label, r in sorted(self.records.items(), key=lambda kv: (kv[1].layer, kv[1].head))}

    def by_role(self, role: str) -> list[tuple[int, int]]:
        return sorted((r.layer, r.head) for r in self.records.values() if r.role == role)

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.records.values(), key=lambda r: (r.layer, r.head))
        return {
            "heads": [list(h) for h in self.heads], "roles": self.roles,
            "scores": {r.label: r.score.to_dict() for r in ordered},
            "records": {r.label: r.to_dict() for r in ordered},
            "edges": [e.to_dict() for e in self.edges], "description": list(self.description),
            "drivers": {k: {label: e.to_dict() for label, e in v} for k, v in self.drivers.items()},
            "thresholds": self.config.to_dict(), "baselines": dict(self.baselines), "task": self.task,
            "seconds": round(self.seconds, 3),
        }

    def rows(self) -> list[list[str]]:
        """One row per head: label, role, score [interval], reason."""
        return [[r.label, r.role, str(r.score), r.reason]
                for r in sorted(self.records.values(), key=lambda r: (-r.layer, r.head))]

    def __str__(self) -> str:
        lines = [f"Circuit for {self.task or 'task'}: {len(self.records)} heads"]
        width = max([len(r[1]) for r in self.rows()] + [4])
        for label, role, score, reason in self.rows():
            lines.append(f"  {label:<6} {role:<{width}}  {score:<26} {reason}")
        lines += ["", *self.description]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows()
        )
        text = "".join(f"<p>{html.escape(s)}</p>" for s in self.description)
        return (f"<table><tr><th>head</th><th>role</th><th>score [95% CI]</th><th>why</th></tr>{cells}</table>"
                f"{text}")

    def diagram(self, title: str = ""):
        """The circuit as a :class:`~circuitscope.report.diagram.CircuitDiagram` (roles as nodes,
        path-patching effects as edges)."""
        from circuitscope.report.diagram import CircuitDiagram

        nodes = [{"label": r.label, "layer": r.layer, "head": r.head, "role": r.role, "score": r.score.value,
                  "ci": None if r.score.ci is None else list(r.score.ci)} for r in self.records.values()]
        edges = [{"src": e.src, "dst": e.dst, "input": e.input, "effect": e.effect.value} for e in self.edges]
        return CircuitDiagram(nodes, edges, self.n_layers, self.n_heads, title=title or f"Circuit: {self.task}")

    def figures(self) -> dict[str, Any]:
        """Every experiment as a figure (name -> Figure), the diagram included."""
        out: dict[str, Any] = {name: result.plot() for name, result in self.results.items()}
        out["circuit_diagram"] = self.diagram()
        return out

    def ranking(self) -> list[tuple[int, int]]:
        """Every head, most important first, as the sketch sees it: the circuit's heads by |score|
        (a fraction of the clean-corrupted gap; backup heads, scored in logits, after them), then the
        rest by |head output patching effect| (the order a faithfulness curve adds them)."""
        inside = sorted(self.records.values(), key=lambda r: (r.level == "backup", -abs(r.score.value)))
        order = [(r.layer, r.head) for r in inside]
        effect = self.results["head_output_patching"].values.abs()  # [layer, head]
        rest = [divmod(i, self.n_heads) for i in effect.flatten().argsort(descending=True).tolist()]
        return order + [h for h in rest if h not in set(order)]

    def record(self, layer: int, head: int) -> Optional[HeadRecord]:
        return self.records.get(head_label(layer, head))
