"""Pick the figure that fits a :class:`~circuitscope.results.Result` (what ``result.plot()`` does).

The rule follows the shape of ``result.values``:

========  =========================================================================
1-D       :func:`~circuitscope.plot.line` over the axis labels (logit lens, DLA per layer)
2-D       :func:`~circuitscope.plot.heatmap`, rows = first axis (layer x head, layer x pos)
3-D+      faceted heatmaps: one panel per index of the leading axes, the last two as rows
          and columns (the five "every head" patching sweeps side by side)
========  =========================================================================

``kind="bar"`` draws the top ``k`` entries instead (default 20), ``kind="line"`` on a 2-D result
draws one line per row, and ``kind="heatmap"`` forces a heatmap. The axis names become the axis
titles, labels become ticks and hover names (``L9H6``), and ``result.ci`` is drawn when set.
Extra keywords go to the figure function; ``result.meta["plot"]`` (a dict) supplies defaults,
so an analysis can say once that its scores want ``{"zmid": None}`` (a sequential scale).
"""

from __future__ import annotations

import itertools
from typing import Any, Optional

import numpy as np

from circuitscope.plot.bar import bar
from circuitscope.plot.figure import Figure
from circuitscope.plot.heatmap import heatmap
from circuitscope.plot.labels import to_array
from circuitscope.plot.line import line

__all__ = ["auto", "KINDS"]

KINDS = ("line", "heatmap", "bar")


def _interval(result) -> Optional[tuple[np.ndarray, np.ndarray]]:
    return None if result.ci is None else (to_array(result.ci[0]), to_array(result.ci[1]))


def _all_names(result) -> np.ndarray:
    """The name of every entry (``result.label_of``), shaped like the values."""
    shape = tuple(result.values.shape)
    names = [result.label_of(index) for index in itertools.product(*(range(n) for n in shape))]
    return np.asarray(names, dtype=object).reshape(shape)


def _heatmap(result, values: np.ndarray, ci, **kw) -> Figure:
    """2-D: a plain heatmap. N-D: flatten the leading axes into facets ``[facet, row, col]``."""
    names = _all_names(result)
    options = dict(title=result.title, x_title=result.axes[-1], y_title=result.axes[-2])
    if values.ndim > 2:
        lead = values.shape[:-2]
        facet_labels = ["/".join(f"{result.axes[d]} {result.labels[d][i]}" if len(lead) > 1 else result.labels[d][i]
                                 for d, i in enumerate(index))
                        for index in itertools.product(*(range(n) for n in lead))]
        flat = (-1, *values.shape[-2:])  # [facet, row, col]
        values, names = values.reshape(flat), names.reshape(flat)
        ci = None if ci is None else (ci[0].reshape(flat), ci[1].reshape(flat))
        options["facet_labels"] = facet_labels
    options.update(kw)
    return heatmap(values, result.labels[-2], result.labels[-1], hover=names.tolist(), ci=ci, **options)


def auto(result, kind: Optional[str] = None, **kw: Any) -> Figure:
    """The figure for ``result`` (a :class:`~circuitscope.results.Result`); see the module doc.

    ``kind``: ``None`` (by shape), ``"line"``, ``"heatmap"`` or ``"bar"``. Other keywords
    (``title``, ``zmid``, ``zlim``, ``k``, ...) go to the figure function.

    >>> result.plot()                      # doctest: +SKIP
    >>> result.plot(kind="bar", k=10)      # doctest: +SKIP
    """
    kw = {**dict(result.meta.get("plot") or {}), **kw}
    values = to_array(result.values)
    if values.ndim == 0:
        raise ValueError("a scalar result has nothing to plot; print it instead")
    ci = _interval(result)
    if kind is None:
        kind = "line" if values.ndim == 1 else "heatmap"
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "bar":
        k = kw.pop("k", 20)
        flat_ci = None if ci is None else (ci[0].ravel(), ci[1].ravel())
        options = dict(title=result.title, y_title=result.meta.get("metric", "") if isinstance(result.meta.get("metric"), str) else "")
        options.update(kw)
        return bar(values.ravel(), _all_names(result).ravel().tolist(), ci=flat_ci, k=k, **options)
    if kind == "line":
        if values.ndim > 2:
            raise ValueError(f"a line plot needs a 1-D or 2-D result; this one is {values.ndim}-D")
        options: dict[str, Any] = dict(title=result.title, x_title=result.axes[-1])
        if values.ndim == 2:
            options["names"] = result.labels[0]
        options.update(kw)
        return line(values, x_labels=result.labels[-1], ci=ci, **options)
    if values.ndim < 2:
        raise ValueError("a heatmap needs a result with at least two axes")
    return _heatmap(result, values, ci, **kw)
