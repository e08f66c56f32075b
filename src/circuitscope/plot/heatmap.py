"""Heatmaps: layer x head maps, layer x position patching sweeps, attention patterns, facets.

``heatmap(values)`` draws a 2-D tensor with row 0 at the top (layer 0 first, as in the seed
notebooks), a diverging red-white-blue colour scale centred at ``zmid`` (0 by default: white is
"no effect", blue positive, red negative), and a hover label per cell: ``L9H6`` when rows are
layers ``L*`` and columns heads ``H*``, otherwise ``row / col`` (``L3 / " Mary"_4``).

A 3-D tensor ``[facet, row, col]`` draws one panel per leading index with a shared colour scale,
e.g. the five head-patching sweeps (output, query, key, value, pattern) side by side. With an
interval ``ci=(low, high)`` the hover shows it, and a small dot marks each cell whose interval
contains ``zmid`` (its sign is not established by the data).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from circuitscope.plot.figure import Figure, plotly_go, require
from circuitscope.plot.labels import as_interval, cell_names, default_labels, fmt, symmetric_range, to_array

__all__ = ["Heatmap", "heatmap"]


class Heatmap(Figure):
    """A (faceted) heatmap; build it with :func:`heatmap`. ``values`` is ``[facet, row, col]``."""

    def __init__(self, values, row_labels, col_labels, facet_labels, zmid, zlim, hover, ci, title,
                 x_title, y_title, facet_cols):
        self.values = values  # [facet, row, col]
        self.row_labels, self.col_labels, self.facet_labels = row_labels, col_labels, facet_labels
        self.zmid, self.hover, self.ci = zmid, hover, ci  # hover: [facet][row][col] strings
        self.title, self.x_title, self.y_title = title, x_title, y_title
        if zmid is None:  # sequential scale, e.g. attention probabilities
            finite = values[np.isfinite(values)]
            self.zrange = (min(0.0, float(finite.min())), float(finite.max())) if finite.size else (0.0, 1.0)
            if zlim is not None:
                self.zrange = (self.zrange[0], float(zlim))
        else:
            self.zrange = symmetric_range(values, zmid, zlim)
        n_facets, n_rows, n_cols = values.shape
        self.grid_cols = min(n_facets, facet_cols or 5)
        self.grid_rows = math.ceil(n_facets / self.grid_cols)
        cell = max(10, min(40, 560 // max(n_rows, n_cols)))
        self.width = int(min(1800, self.grid_cols * max(240, n_cols * cell + 60) + 220))
        self.height = int(self.grid_rows * max(220, n_rows * cell + 60) + 200)

    # ------------------------------------------------------------------ helpers
    def _uncertain(self, f: int) -> Optional[np.ndarray]:
        """Boolean [row, col]: cells of facet f whose interval contains zmid."""
        if self.ci is None or self.zmid is None:
            return None
        return (self.ci[0][f] <= self.zmid) & (self.ci[1][f] >= self.zmid)

    def _ticks(self, labels: Sequence[str]) -> tuple[list[int], list[str]]:
        """Tick positions and texts, thinned to at most ~40 so long prompts stay readable."""
        step = max(1, math.ceil(len(labels) / 40))
        idx = list(range(0, len(labels), step))
        return idx, [labels[i] for i in idx]

    def _colorscale(self) -> tuple[str, str]:
        """(plotly name, matplotlib name): diverging around zmid, else sequential."""
        return ("RdBu", "RdBu") if self.zmid is not None else ("Blues", "Blues")

    # ------------------------------------------------------------------ interactive
    def to_plotly(self) -> Any:
        go = plotly_go()
        subplots = require("plotly.subplots", "faceted heatmaps")
        n_facets = self.values.shape[0]
        fig = subplots.make_subplots(
            rows=self.grid_rows, cols=self.grid_cols, shared_yaxes=True,
            subplot_titles=self.facet_labels if n_facets > 1 else None,
            horizontal_spacing=0.04, vertical_spacing=0.12 / self.grid_rows,
        )
        xt, yt = self._ticks(self.col_labels), self._ticks(self.row_labels)
        for f in range(n_facets):
            r, c = f // self.grid_cols + 1, f % self.grid_cols + 1
            extra = [["" for _ in row] for row in self.hover[f]]
            if self.ci is not None:
                lo, hi = self.ci[0][f], self.ci[1][f]
                extra = [[f"<br>95% interval [{fmt(lo[i, j])}, {fmt(hi[i, j])}]" for j in range(lo.shape[1])]
                         for i in range(lo.shape[0])]
            custom = [[[h, e] for h, e in zip(hr, er)] for hr, er in zip(self.hover[f], extra)]  # [row][col][2]
            fig.add_trace(go.Heatmap(
                z=self.values[f], coloraxis="coloraxis", customdata=custom, name=self.facet_labels[f],
                hovertemplate="%{customdata[0]}<br>value %{z:.4g}%{customdata[1]}<extra></extra>",
            ), row=r, col=c)
            mask = self._uncertain(f)
            if mask is not None and mask.any():
                ys, xs = np.nonzero(mask)
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="markers", hoverinfo="skip", showlegend=f == 0,
                    name=f"95% interval includes {self.zmid:g}", legendgroup="uncertain",
                    marker=dict(size=4, color="rgba(40,40,40,0.55)"),
                ), row=r, col=c)
            n_rows, n_cols = self.values.shape[1:]
            fig.update_xaxes(tickmode="array", tickvals=xt[0], ticktext=xt[1], range=[-0.5, n_cols - 0.5],
                             row=r, col=c, title_text=self.x_title if r == self.grid_rows else None)
            fig.update_yaxes(tickmode="array", tickvals=yt[0], ticktext=yt[1], range=[n_rows - 0.5, -0.5],
                             row=r, col=c, title_text=self.y_title if c == 1 else None)  # row 0 on top
        scale, _ = self._colorscale()
        coloraxis = dict(colorscale=scale, cmin=self.zrange[0], cmax=self.zrange[1])
        if self.zmid is not None:
            coloraxis["cmid"] = self.zmid
        fig.update_layout(
            title=self.title or None, coloraxis=coloraxis, width=self.width, height=self.height,
            template="plotly_white", legend=dict(orientation="h", y=-0.15), margin=dict(t=80 if self.title else 50),
        )
        return fig

    # ------------------------------------------------------------------ static
    def draw(self, fig: Any) -> None:
        n_facets = self.values.shape[0]
        axes = fig.subplots(self.grid_rows, self.grid_cols, squeeze=False, sharey=True)
        _, cmap = self._colorscale()
        xt, yt = self._ticks(self.col_labels), self._ticks(self.row_labels)
        image = None
        for f, ax in enumerate(axes.flat):
            if f >= n_facets:
                ax.set_axis_off()
                continue
            image = ax.imshow(self.values[f], cmap=cmap, vmin=self.zrange[0], vmax=self.zrange[1],
                              aspect="auto", interpolation="nearest")
            mask = self._uncertain(f)
            if mask is not None and mask.any():
                ys, xs = np.nonzero(mask)
                ax.scatter(xs, ys, s=4, c="#333333", alpha=0.6, linewidths=0,
                           label=f"95% interval includes {self.zmid:g}")
            slanted = len(self.col_labels) > 8 or max(map(len, self.col_labels)) > 5
            ax.set_xticks(xt[0], xt[1], rotation=60 if slanted else 0, ha="right" if slanted else "center",
                          rotation_mode="anchor", fontsize=7)
            ax.set_yticks(yt[0], yt[1], fontsize=7)
            if n_facets > 1:
                ax.set_title(self.facet_labels[f], fontsize=9)
            if f // self.grid_cols == self.grid_rows - 1:
                ax.set_xlabel(self.x_title)
            if f % self.grid_cols == 0:
                ax.set_ylabel(self.y_title)
        fig.colorbar(image, ax=list(axes.flat), shrink=0.8)
        if any(m is not None and m.any() for m in map(self._uncertain, range(n_facets))):
            fig.supxlabel(f"dots: 95% interval includes {self.zmid:g}", fontsize=7, color="#555")
        if self.title:
            fig.suptitle(self.title)


def heatmap(values, row_labels: Optional[Sequence[str]] = None, col_labels: Optional[Sequence[str]] = None,
            title: str = "", facet_labels: Optional[Sequence[str]] = None, zmid: Optional[float] = 0.0,
            hover=None, ci=None, x_title: str = "", y_title: str = "", zlim: Optional[float] = None,
            facet_cols: Optional[int] = None) -> Heatmap:
    """A heatmap of a 2-D ``[row, col]`` or faceted 3-D ``[facet, row, col]`` tensor.

    ``row_labels`` / ``col_labels``: tick labels (e.g. ``L0..`` and ``H0..``, or
    :func:`~circuitscope.plot.labels.token_labels` for positions). ``facet_labels``: one panel
    title per leading index. ``zmid``: the white centre of the diverging scale; ``None`` for a
    sequential scale (attention probabilities). ``zlim``: half-width of the colour range around
    ``zmid`` (default: the largest deviation), or the top of a sequential one. ``hover``: strings
    shaped like ``values`` to name each cell (default ``L9H6`` or ``row / col``). ``ci``:
    ``(low, high)`` shaped like ``values``, shown in the hover and as dots where it spans zmid.
    ``facet_cols``: panels per row (default up to 5).

    >>> heatmap(dla, [f"L{i}" for i in range(12)], [f"H{i}" for i in range(12)], x_title="head", y_title="layer")  # doctest: +SKIP
    """
    arr = to_array(values, ndim=(2, 3))
    faceted = arr.ndim == 3
    arr3 = arr if faceted else arr[None]  # [facet, row, col]
    n_facets, n_rows, n_cols = arr3.shape
    rows = default_labels(n_rows, row_labels, "row labels")
    cols = default_labels(n_cols, col_labels, "column labels")
    facets = default_labels(n_facets, facet_labels, "facet labels") if faceted else [title or "values"]
    interval = as_interval(ci, arr.shape)
    if interval is not None and not faceted:
        interval = (interval[0][None], interval[1][None])
    if hover is None:
        names = cell_names(rows, cols)
        hover3 = [[[f"{facets[f]}: {n}" if faceted else n for n in row] for row in names] for f in range(n_facets)]
    else:
        hover3 = np.asarray(hover, dtype=object)
        if hover3.shape != arr.shape:
            raise ValueError(f"hover has shape {hover3.shape}; the values have {arr.shape}")
        hover3 = (hover3 if faceted else hover3[None]).tolist()
    return Heatmap(arr3, rows, cols, facets, None if zmid is None else float(zmid), zlim, hover3, interval,
                   title, x_title, y_title, facet_cols)
