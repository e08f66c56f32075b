"""Figures for circuit analysis: one call per picture, interactive or static, always offline.

Every function returns a :class:`Figure` with ``.show()``, ``.to_html()`` (self-contained:
plotly's JavaScript inlined from the installed package, never a CDN), ``.save(path)`` for
``.html`` / ``.png`` / ``.svg`` / ``.pdf`` (static files drawn by matplotlib, no browser), and a
notebook display. Needs the ``plot`` extra: ``pip install "circuitscope[plot]"``.

* :func:`heatmap` -- ``[layer, head]``, ``[layer, pos]`` and faceted ``[facet, row, col]`` maps;
* :func:`line` -- logit lens, per-layer attributions, several series with interval bands;
* :func:`scatter` -- one point per head, coloured by layer, named on hover;
* :func:`bar` -- the top-k heads of a ``[layer, head]`` map, with error bars;
* :func:`auto` -- the right one of these for a :class:`circuitscope.results.Result`
  (``result.plot()`` calls it);
* :func:`attention_view` / :func:`attention_from_cache` -- interactive attention patterns.
"""

from circuitscope.plot.attention import AttentionView, attention_from_cache, attention_view
from circuitscope.plot.auto import auto
from circuitscope.plot.bar import Bar, bar
from circuitscope.plot.figure import Figure
from circuitscope.plot.heatmap import Heatmap, heatmap
from circuitscope.plot.labels import head_labels, token_labels
from circuitscope.plot.line import Line, line
from circuitscope.plot.scatter import Scatter, scatter

__all__ = [
    "Figure", "Heatmap", "Line", "Scatter", "Bar", "AttentionView",
    "heatmap", "line", "scatter", "bar", "auto", "attention_view", "attention_from_cache",
    "head_labels", "token_labels",
]
