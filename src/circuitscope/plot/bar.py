"""Bar charts: the top-k heads (or components) of a result, with error bars.

``bar(dla, k=10)`` on a ``[layer, head]`` map keeps the ten heads with the largest absolute
value, sorted, named ``L9H6``; positive bars are blue and negative red (the heatmaps' colours).
With ``ci=(low, high)`` each bar gets an error bar spanning its 95% interval: two heads whose
bars overlap heavily are not distinguishable with these prompts.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from circuitscope.plot.figure import Figure, plotly_go
from circuitscope.plot.labels import as_interval, default_labels, fmt, head_labels, to_array

__all__ = ["Bar", "bar"]

POSITIVE, NEGATIVE = "#2166ac", "#b2182b"  # the ends of the RdBu scale


class Bar(Figure):
    """Labelled bars, already selected and ordered; build it with :func:`bar`."""

    def __init__(self, values, labels, ci, title, x_title, y_title):
        self.values, self.labels, self.ci = values, labels, ci  # [bar], [bar], ([bar], [bar]) or None
        self.title, self.x_title, self.y_title = title, x_title, y_title
        self.width = int(min(1400, max(480, 34 * len(labels) + 200)))
        self.height = 440

    def _colours(self) -> list[str]:
        return [POSITIVE if v >= 0 else NEGATIVE for v in self.values]

    def _errors(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(below, above): distances from each value to its interval's ends."""
        if self.ci is None:
            return None
        return np.clip(self.values - self.ci[0], 0, None), np.clip(self.ci[1] - self.values, 0, None)

    def to_plotly(self) -> Any:
        go = plotly_go()
        errors = self._errors()
        error_y = None
        hover_ci = [""] * len(self.labels)
        if errors is not None:
            error_y = dict(type="data", symmetric=False, array=errors[1], arrayminus=errors[0], color="#444")
            hover_ci = [f"<br>95% interval [{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(*self.ci)]
        fig = go.Figure(go.Bar(
            x=list(range(len(self.labels))), y=self.values, marker_color=self._colours(), error_y=error_y,
            customdata=[[lab, h] for lab, h in zip(self.labels, hover_ci)],
            hovertemplate="<b>%{customdata[0]}</b><br>%{y:.4g}%{customdata[1]}<extra></extra>",
        ))
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(self.labels))), ticktext=self.labels,
                         title_text=self.x_title)
        fig.update_layout(title=self.title or None, width=self.width, height=self.height, template="plotly_white",
                          yaxis_title=self.y_title, showlegend=False)
        return fig

    def draw(self, fig: Any) -> None:
        ax = fig.subplots()
        xs = np.arange(len(self.labels))
        errors = self._errors()
        ax.bar(xs, self.values, color=self._colours(),
               yerr=None if errors is None else np.stack(errors), capsize=3, ecolor="#444")
        ax.axhline(0.0, color="#999", linewidth=0.8)
        ax.set_xticks(xs, self.labels, rotation=90 if len(xs) > 10 else 0, fontsize=8)
        ax.set_xlabel(self.x_title)
        ax.set_ylabel(self.y_title)
        ax.grid(axis="y", alpha=0.3)
        if self.title:
            ax.set_title(self.title)


def bar(values, labels: Optional[Sequence[str]] = None, ci=None, title: str = "", k: Optional[int] = None,
        by_abs: bool = True, x_title: str = "", y_title: str = "") -> Bar:
    """A bar per entry of ``values``; with ``k``, only the k largest, sorted.

    ``values``: 1-D ``[entry]`` with ``labels``, or 2-D ``[layer, head]`` (flattened; labels
    default to ``L{l}H{h}``). ``ci``: ``(low, high)`` shaped like ``values``, drawn as error bars.
    ``k``: keep the top k (by absolute value, or signed value with ``by_abs=False``) in
    decreasing order; ``None`` keeps every entry in its original order.

    >>> bar(per_head_dla, k=10, ci=(low, high), title="Top heads by DLA")  # doctest: +SKIP
    """
    arr = to_array(values, ndim=(1, 2))
    interval = as_interval(ci, arr.shape)
    if arr.ndim == 2:  # [layer, head] -> [layer * head]
        if labels is None:
            labels = head_labels(*arr.shape)
        else:
            labels = list(np.asarray(labels, dtype=object).ravel())
        arr = arr.ravel()
        interval = None if interval is None else (interval[0].ravel(), interval[1].ravel())
    names = default_labels(arr.shape[0], labels, "labels")
    if k is not None:
        key = np.abs(arr) if by_abs else arr
        order = np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")[: max(0, k)]
        arr, names = arr[order], [names[i] for i in order]
        interval = None if interval is None else (interval[0][order], interval[1][order])
    return Bar(arr, names, interval, title, x_title, y_title)
