"""Scatter plots: one point per head (or prompt), coloured by layer, named on hover.

Typical uses from the IOI workflow: a head's attention to the IO token against its direct effect
on the logit difference (one point per prompt), output patching against pattern patching for
every head, or each head's DLA before and after ablating the name movers (``diagonal=True`` draws
``y = x`` so backup heads stand out as points far from it).

``x`` and ``y`` may be 1-D, or 2-D ``[layer, head]`` maps: those are flattened, the points are
named ``L0H0, L0H1, ...`` and coloured by layer unless ``names`` / ``color`` say otherwise.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from circuitscope.plot.figure import Figure, plotly_go
from circuitscope.plot.labels import default_labels, head_labels, to_array

__all__ = ["Scatter", "scatter"]


class Scatter(Figure):
    """Points with names and an optional colour value; build it with :func:`scatter`."""

    def __init__(self, x, y, names, color, title, x_title, y_title, color_title, diagonal):
        self.x, self.y, self.names, self.color = x, y, names, color  # each [point]
        self.title, self.x_title, self.y_title, self.color_title = title, x_title, y_title, color_title
        self.diagonal = diagonal
        self.width, self.height = 640, 520

    def _limits(self) -> tuple[float, float]:
        """A shared range for both axes (used by the y = x line)."""
        both = np.concatenate([self.x, self.y])
        both = both[np.isfinite(both)]
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo or 1.0)
        return lo - pad, hi + pad

    def to_plotly(self) -> Any:
        go = plotly_go()
        marker: dict[str, Any] = dict(size=8, line=dict(width=0.5, color="white"))
        if self.color is not None:
            marker.update(color=self.color, colorscale="Viridis", showscale=True,
                          colorbar=dict(title=dict(text=self.color_title)))
        fig = go.Figure(go.Scatter(
            x=self.x, y=self.y, mode="markers", marker=marker, text=self.names, name="",
            hovertemplate="<b>%{text}</b><br>" + (self.x_title or "x") + " %{x:.4g}<br>"
            + (self.y_title or "y") + " %{y:.4g}<extra></extra>",
        ))
        if self.diagonal:
            lo, hi = self._limits()
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", hoverinfo="skip", showlegend=False,
                                     line=dict(color="#999", dash="dash", width=1)))
        fig.update_layout(
            title=self.title or None, width=self.width, height=self.height, template="plotly_white",
            xaxis_title=self.x_title, yaxis_title=self.y_title, showlegend=False,
        )
        return fig

    def draw(self, fig: Any) -> None:
        ax = fig.subplots()
        points = ax.scatter(self.x, self.y, c=self.color if self.color is not None else "#636efa",
                            cmap="viridis" if self.color is not None else None, s=22, edgecolors="white",
                            linewidths=0.4)
        if self.color is not None:
            fig.colorbar(points, ax=ax, label=self.color_title)
        if self.diagonal:
            lo, hi = self._limits()
            ax.plot([lo, hi], [lo, hi], linestyle="--", color="#999", linewidth=0.8)
        if len(self.names) <= 40:  # name the points when that stays readable
            for x, y, name in zip(self.x, self.y, self.names):
                ax.annotate(name, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_xlabel(self.x_title)
        ax.set_ylabel(self.y_title)
        ax.grid(alpha=0.3)
        if self.title:
            ax.set_title(self.title)


def scatter(x, y, names: Optional[Sequence[str]] = None, color=None, title: str = "", x_title: str = "",
            y_title: str = "", color_title: str = "layer", diagonal: bool = False) -> Scatter:
    """A scatter of ``y`` against ``x``; each point named in the hover and coloured by ``color``.

    ``x`` / ``y``: same shape, 1-D ``[point]`` or 2-D ``[layer, head]`` (flattened; points named
    ``L{l}H{h}`` and coloured by layer by default). ``names``: a hover name per point. ``color``:
    a number per point (e.g. the layer), drawn on a colour bar titled ``color_title``.
    ``diagonal``: draw ``y = x``.

    >>> scatter(dla_ablated, dla_clean, x_title="ablated", y_title="original", diagonal=True)  # doctest: +SKIP
    """
    xa, ya = to_array(x, ndim=(1, 2), what="x"), to_array(y, ndim=(1, 2), what="y")
    if xa.shape != ya.shape:
        raise ValueError(f"x has shape {xa.shape} but y has {ya.shape}")
    if xa.ndim == 2:  # [layer, head] -> [layer * head]
        n_layers, n_heads = xa.shape
        names = head_labels(n_layers, n_heads) if names is None else list(np.asarray(names, dtype=object).ravel())
        if color is None:
            color = np.repeat(np.arange(n_layers), n_heads)  # [layer * head]: each point's layer
        xa, ya = xa.ravel(), ya.ravel()
    names = default_labels(xa.shape[0], names, "names")
    if color is not None:
        color = to_array(color, what="color").ravel()
        if color.shape != xa.shape:
            raise ValueError(f"color has {color.shape[0]} entries for {xa.shape[0]} points")
    return Scatter(xa, ya, names, color, title, x_title, y_title, color_title, diagonal)
