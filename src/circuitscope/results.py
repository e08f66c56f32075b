"""Labelled results: a tensor of numbers that knows what its axes mean.

Every analysis and patching call returns a :class:`Result` (or a subclass): ``.values`` is the
plain tensor (e.g. ``[layer, head]``), ``.axes`` names the axes, ``.labels`` gives one label per
index on each axis (``"L3H1"`` is built from the layer and head labels; positions read like
``'" Mary"_4'``). A result can carry a confidence interval (``.ci`` = ``(low, high)``, each the
shape of ``.values``), renders itself as a table in a terminal or notebook, saves to JSON
atomically, and ``.plot()`` picks the figure that fits its shape.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from circuitscope.io import write_json_atomic

__all__ = ["Result", "axis_labels"]


def axis_labels(axis: str, n: int) -> list[str]:
    """Default labels for an axis: ``L0..`` for layers, ``H0..`` for heads, plain indices otherwise."""
    prefix = {"layer": "L", "head": "H"}.get(axis, "")
    return [f"{prefix}{i}" for i in range(n)]


class Result:
    """A labelled tensor of results.

    ``values`` [any shape]; ``axes`` one name per dimension (``("layer", "head")``); ``labels``
    one list of strings per dimension (defaults from :func:`axis_labels`); ``meta`` free-form JSON
    data (metric, baselines, timings); ``ci`` an optional ``(low, high)`` pair of tensors shaped
    like ``values``; ``per_prompt`` an optional ``[prompt, *values.shape]`` tensor the interval
    was computed from.
    """

    def __init__(
        self,
        values: torch.Tensor,
        axes: Sequence[str],
        labels: Optional[Sequence[Sequence[str]]] = None,
        title: str = "",
        meta: Optional[dict[str, Any]] = None,
        ci: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        per_prompt: Optional[torch.Tensor] = None,
    ) -> None:
        values = torch.as_tensor(values).detach()
        axes = tuple(axes)
        if len(axes) != values.ndim:
            raise ValueError(f"got {len(axes)} axis names {axes} for a {values.ndim}-d tensor {tuple(values.shape)}")
        if labels is None:
            labels = [axis_labels(a, n) for a, n in zip(axes, values.shape)]
        labels = [list(map(str, lab)) for lab in labels]
        for a, lab, n in zip(axes, labels, values.shape):
            if len(lab) != n:
                raise ValueError(f"axis {a!r} has {n} entries but {len(lab)} labels")
        if ci is not None:
            ci = (torch.as_tensor(ci[0]).detach(), torch.as_tensor(ci[1]).detach())
            if ci[0].shape != values.shape or ci[1].shape != values.shape:
                raise ValueError(f"the interval bounds must have the values' shape {tuple(values.shape)}")
        self.values = values
        self.axes = axes
        self.labels = labels
        self.title = title
        self.meta = dict(meta or {})
        self.ci = ci
        self.per_prompt = per_prompt

    # ------------------------------------------------------------------ access
    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    def __getitem__(self, idx):
        return self.values[idx]

    def label_of(self, index: Sequence[int]) -> str:
        """A readable name for one entry: ``L3H1`` for (layer, head), else labels joined by ``/``."""
        parts = [self.labels[d][i] for d, i in enumerate(index)]
        if self.axes[-2:] == ("layer", "head"):
            return "/".join(parts[:-2] + [parts[-2] + parts[-1]])
        return "/".join(parts)

    def top_indices(self, k: int = 10, by_abs: bool = True) -> list[tuple[int, ...]]:
        """The indices of the k largest entries, e.g. ``[(3, 3), (3, 0)]`` for a ``[layer, head]``
        result: ready for ``path_patch(receivers=...)``, ``ablated(heads=...)``."""
        flat = self.values.flatten().float()
        key = flat.abs() if by_abs else flat
        order = key.argsort(descending=True)[: max(0, k)]
        return [tuple(int(x) for x in torch.unravel_index(torch.tensor(i), self.values.shape)) for i in order.tolist()]

    def top(self, k: int = 10, by_abs: bool = True) -> list[tuple[str, float, Optional[tuple[float, float]]]]:
        """The k largest entries as ``(label, value, (low, high) or None)`` (indices: :meth:`top_indices`)."""
        flat = self.values.flatten().float()
        out = []
        for index in self.top_indices(k, by_abs):
            i = 0
            for d, n in zip(index, self.values.shape):  # row-major flat index
                i = i * n + d
            ci = None
            if self.ci is not None:
                ci = (float(self.ci[0].flatten()[i]), float(self.ci[1].flatten()[i]))
            out.append((self.label_of(index), float(flat[i]), ci))
        return out

    # ------------------------------------------------------------------ rendering
    def _summary(self) -> str:
        dims = " x ".join(f"{a} {n}" for a, n in zip(self.axes, self.values.shape))
        return f"{type(self).__name__}({self.title or 'result'}: {dims})"

    def _rows(self, k: int = 10) -> list[str]:
        rows = []
        for label, value, ci in self.top(k):
            interval = f"  [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci is not None else ""
            rows.append(f"  {label:<24} {value:+.4f}{interval}")
        return rows

    def __str__(self) -> str:
        extra = [f"  {k}: {v}" for k, v in self.meta.items() if isinstance(v, (int, float, str))]
        head = "largest entries (95% interval):" if self.ci is not None else "largest entries:"
        return "\n".join([self._summary(), *extra, head, *self._rows()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(lab)}</td><td>{v:+.4f}</td><td>"
            + (f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci is not None else "")
            + "</td></tr>"
            for lab, v, ci in self.top(10)
        )
        return (
            f"<div><b>{html.escape(self._summary())}</b><table><tr><th>entry</th><th>value</th>"
            f"<th>95% interval</th></tr>{rows}</table></div>"
        )

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        out = {
            "type": type(self).__name__,
            "title": self.title,
            "axes": list(self.axes),
            "labels": self.labels,
            "values": self.values.float().tolist(),
            "meta": self.meta,
        }
        if self.ci is not None:
            out["ci"] = [self.ci[0].float().tolist(), self.ci[1].float().tolist()]
        return out

    def save(self, path) -> Path:
        """Write the result as JSON (atomically: a reader never sees a half-written file).

        A figure suffix (``.html``, ``.png``, ``.svg``, ``.pdf``) saves ``self.plot()`` instead."""
        suffix = Path(path).suffix.lower()
        if suffix in (".html", ".png", ".svg", ".pdf"):
            return self.plot().save(path)
        if suffix not in (".json", ""):
            raise ValueError(f"cannot save a result as {suffix!r}: use .json for the numbers, or .html/.png/.svg/.pdf "
                             f"for its figure")
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        ci = data.get("ci")
        return Result(
            torch.tensor(data["values"]), data["axes"], data["labels"], data.get("title", ""),
            data.get("meta"), None if ci is None else (torch.tensor(ci[0]), torch.tensor(ci[1])),
        )

    @classmethod
    def load(cls, path) -> "Result":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    # ------------------------------------------------------------------ figures
    def plot(self, kind: Optional[str] = None, **kwargs):
        """The figure that fits the shape: a line for 1-D, a heatmap for 2-D, faceted heatmaps
        (one per index of the leading axes) for more; the interval ``ci`` is drawn when set.

        ``kind="bar"`` (with ``k=10``) draws the top entries instead; other keywords go to the
        figure function (``title``, ``zmid``, ``zlim``, ...), and ``meta["plot"]`` holds
        defaults for them. Returns a :class:`circuitscope.plot.Figure`: ``.show()``,
        ``.save("x.html" | "x.png" | "x.svg")``. Needs ``pip install "circuitscope[plot]"``."""
        from circuitscope import plot

        return plot.auto(self, kind=kind, **kwargs)
