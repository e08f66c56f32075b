"""Line plots: the logit lens over layers, attribution per layer, any 1-D result.

``line(y)`` draws one series; a 2-D ``[series, x]`` tensor draws several (name them with
``names``). ``x_labels`` names the points (``"L3_mid"``, ``'" Mary"_4'``) on the axis and in the
hover. With ``ci=(low, high)`` shaped like ``y`` each series gets a shaded 95% band, so a reader
sees at once whether a rise between two layers is larger than the prompt-to-prompt noise.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from circuitscope.plot.figure import Figure, plotly_go
from circuitscope.plot.labels import as_interval, default_labels, fmt, to_array

__all__ = ["Line", "line"]

# plotly's default qualitative colours, reused by matplotlib so both outputs look alike
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52"]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


class Line(Figure):
    """One or more series over a shared x axis; build it with :func:`line`. ``y`` is ``[series, x]``."""

    def __init__(self, y, x_labels, names, ci, title, x_title, y_title):
        self.y, self.x_labels, self.names, self.ci = y, x_labels, names, ci
        self.title, self.x_title, self.y_title = title, x_title, y_title
        self.width = int(min(1400, max(560, 28 * y.shape[1] + 240)))
        self.height = 440

    def _tick_step(self) -> int:
        return max(1, math.ceil(len(self.x_labels) / 40))

    def to_plotly(self) -> Any:
        go = plotly_go()
        fig = go.Figure()
        xs = list(range(self.y.shape[1]))
        for s, name in enumerate(self.names):
            colour = PALETTE[s % len(PALETTE)]
            extra = [""] * len(xs)
            if self.ci is not None:
                lo, hi = self.ci[0][s], self.ci[1][s]
                extra = [f" [{fmt(lo[i])}, {fmt(hi[i])}]" for i in xs]
                fig.add_trace(go.Scatter(  # the band: along the upper bound, back along the lower
                    x=xs + xs[::-1], y=list(hi) + list(lo[::-1]), fill="toself", fillcolor=_rgba(colour, 0.18),
                    line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=name,
                ))
            fig.add_trace(go.Scatter(
                x=xs, y=self.y[s], mode="lines+markers", name=name, legendgroup=name,
                line=dict(color=colour), marker=dict(size=5),
                customdata=[[lab, e] for lab, e in zip(self.x_labels, extra)],
                hovertemplate="%{customdata[0]}: %{y:.4g}%{customdata[1]}" + f"<extra>{name}</extra>",
            ))
        step = self._tick_step()
        fig.update_xaxes(tickmode="array", tickvals=xs[::step], ticktext=self.x_labels[::step], title_text=self.x_title)
        fig.update_yaxes(title_text=self.y_title, zeroline=True, zerolinecolor="#999")
        fig.update_layout(
            title=self.title or None, width=self.width, height=self.height, template="plotly_white",
            hovermode="x unified", showlegend=len(self.names) > 1,
        )
        return fig

    def draw(self, fig: Any) -> None:
        ax = fig.subplots()
        xs = list(range(self.y.shape[1]))
        for s, name in enumerate(self.names):
            colour = PALETTE[s % len(PALETTE)]
            if self.ci is not None:
                ax.fill_between(xs, self.ci[0][s], self.ci[1][s], color=colour, alpha=0.2, linewidth=0)
            ax.plot(xs, self.y[s], marker="o", markersize=3, color=colour, label=name)
        ax.axhline(0.0, color="#999", linewidth=0.8)
        step = self._tick_step()
        ax.set_xticks(xs[::step], self.x_labels[::step], rotation=90 if len(xs) > 12 else 0, fontsize=8)
        ax.set_xlabel(self.x_title)
        ax.set_ylabel(self.y_title)
        ax.grid(alpha=0.3)
        if len(self.names) > 1:
            ax.legend(fontsize=8)
        if self.title:
            ax.set_title(self.title)


def line(y, x_labels: Optional[Sequence[str]] = None, names: Optional[Sequence[str]] = None, title: str = "",
         ci=None, x_title: str = "", y_title: str = "") -> Line:
    """A line plot of ``y`` (``[x]``, or ``[series, x]`` for several lines).

    ``x_labels``: a name per point (default ``0..``); ``names``: a legend entry per series;
    ``ci``: ``(low, high)`` shaped like ``y``, drawn as a shaded band and printed in the hover.

    >>> line(logit_lens_diffs, x_labels=labels, title="Logit difference from the accumulated residual")  # doctest: +SKIP
    """
    arr = to_array(y, ndim=(1, 2), what="y")
    interval = as_interval(ci, arr.shape)
    if arr.ndim == 1:  # [x] -> [1, x]
        arr = arr[None]
        interval = None if interval is None else (interval[0][None], interval[1][None])
    xs = default_labels(arr.shape[1], x_labels, "x labels")
    if names is None:
        names = [title or "value"] if arr.shape[0] == 1 else [str(i) for i in range(arr.shape[0])]
    names = default_labels(arr.shape[0], names, "series names")
    return Line(arr, xs, names, interval, title, x_title, y_title)
