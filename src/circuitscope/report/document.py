"""The report document: sections of figures, tables and text, rendered as ONE offline HTML page.

A :class:`Report` (title, header meta such as model / task / version) holds :class:`Section` s
of items in order; ``circuitscope analyze`` builds one and hands it to the writer::

    report = Report("IOI circuit in gpt2-small", meta={"model": "gpt2", "task": "ioi"})
    s = report.section("dla", "Direct logit attribution", intro="Which heads write the answer?")
    s.figure("dla_heads", plot.heatmap(dla), caption="DLA per head")
    s.table(["head", "DLA"], [["L9H6", Estimate(2.1, (1.8, 2.4))]])
    s.text(["L9H6 and L9H9 move the name", "L10H7 suppresses it"]); page = report.to_html()

:meth:`Report.to_html` returns a single self-contained page: plotly's JavaScript and the
attention view's script are inlined once each (read from the installed packages), every figure
is a ``<div>`` that uses them, and nothing is fetched from the network (no CDN, no web fonts).
All user text is escaped; only :meth:`Section.html` takes trusted markup. The page ends with
``<meta name="circuitscope-report" content="complete">``: the writer renames report.html into
place last, so a page with that marker always has its results.json and figures beside it.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from collections import namedtuple
from importlib import resources
from typing import Any, Optional, Sequence

from circuitscope.plot.attention import AttentionView
from circuitscope.plot.figure import Figure, require
from circuitscope.report.diagram import CircuitDiagram

__all__ = ["Report", "Section", "ITEM_KINDS", "COMPLETE_MARKER", "check_name", "format_cell"]

ITEM_KINDS = ("figure", "table", "text", "html", "attention", "diagram")
COMPLETE_MARKER = '<meta name="circuitscope-report" content="complete">'
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
_ATTENTION_CALL = "circuitscopeAttentionView"  # the one inlined copy of attention_view.js
_Pair = namedtuple("_Pair", "value ci")


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def check_name(name: str, what: str = "figure name") -> str:
    """``name`` if it is usable as a file name (``figures/<name>.png``) and an HTML id."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} {name!r} must be 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return name


def _number(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "\u221e" if x > 0 else "\u2212\u221e"
    a = abs(x)
    if a == 0:
        return "0"
    if 1e-3 <= a < 1e3:
        return f"{x:.3f}"
    if 1e3 <= a < 1e6:
        return f"{x:,.1f}"
    return f"{x:.2e}"


def format_cell(value: Any) -> tuple[str, bool]:
    """(text, numeric) for a table cell: floats to 3 decimals, Estimate-likes as ``v [lo, hi]``."""
    if value is None:
        return "", False
    if isinstance(value, dict) and "value" in value and "ci" in value:  # Estimate.to_dict() form
        value = _Pair(value["value"], value["ci"])
    if hasattr(value, "value") and hasattr(value, "ci"):
        text = "n/a" if value.value is None else _number(float(value.value))
        if value.ci is not None:
            lo, hi = (float("nan") if c is None else float(c) for c in value.ci)
            text += f" [{_number(lo)}, {_number(hi)}]"
        return text, True
    if isinstance(value, (bool, str)):
        return str(value), False
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value), True
    if isinstance(value, float):
        return _number(value), True
    return str(value), False


class Section:
    """One part of a report: a heading, an optional intro paragraph, then items in order.

    Every adder returns the section, so calls chain. Named items (figures, attention views,
    diagrams) must have names unique across the whole report: they become ``figures/<name>.png``."""

    def __init__(self, report: "Report", id: str, title: str, intro: str = "") -> None:
        self.report, self.id, self.title, self.intro = report, id, title, intro
        self.items: list[tuple[str, dict[str, Any]]] = []

    def add(self, kind: str, **fields: Any) -> "Section":
        """Append an item of ``kind`` (one of :data:`ITEM_KINDS`); the typed adders call this."""
        if kind not in ITEM_KINDS:
            raise ValueError(f"unknown report item kind {kind!r} in section {self.id!r}; expected one of {', '.join(ITEM_KINDS)}")
        if "name" in fields:
            self.report._claim(check_name(fields["name"]), self.id)
        self.items.append((kind, fields))
        return self

    def figure(self, name: str, figure: Figure, caption: str = "") -> "Section":
        """A plotly figure (heatmap, line, scatter, bar, ...); attention views and diagrams go to their adders."""
        if isinstance(figure, AttentionView):
            return self.attention(name, figure, caption)
        if isinstance(figure, CircuitDiagram):
            return self.diagram(name, figure, caption)
        if not isinstance(figure, Figure):
            raise TypeError(f"figure {name!r} must be a circuitscope.plot Figure, got {type(figure).__name__}")
        return self.add("figure", name=name, figure=figure, caption=caption)

    def attention(self, name: str, view: AttentionView, caption: str = "") -> "Section":
        """An interactive attention view (several per page work side by side)."""
        return self._typed("attention", AttentionView, name, view, caption)

    def diagram(self, name: str, diagram: CircuitDiagram, caption: str = "") -> "Section":
        """A circuit diagram, inlined as SVG."""
        return self._typed("diagram", CircuitDiagram, name, diagram, caption)

    def _typed(self, kind: str, cls: type, name: str, obj: Any, caption: str) -> "Section":
        if not isinstance(obj, cls):
            raise TypeError(f"{kind} item {name!r} must be {cls.__name__}, got {type(obj).__name__}")
        return self.add(kind, name=name, figure=obj, caption=caption)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> "Section":
        """A table; cells are strings, numbers (3 decimals) or Estimate-likes (``v [lo, hi]``)."""
        columns, rows = [str(c) for c in columns], [list(r) for r in rows]
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(f"table row {i} in section {self.id!r} has {len(row)} cells for {len(columns)} columns")
        return self.add("table", columns=columns, rows=rows, caption=caption)

    def text(self, paragraph: str | Sequence[str]) -> "Section":
        """Plain text (escaped): a string (blank lines split paragraphs) or a list of bullet strings."""
        return self.add("text", text=paragraph)

    def html(self, raw: str) -> "Section":
        """A trusted HTML snippet, inserted as is (never pass user or prompt text here)."""
        return self.add("html", raw=str(raw))


class Report:
    """A titled report: header meta, a table of contents, sections, a footer; see the module doc."""

    def __init__(self, title: str, subtitle: str = "", meta: Optional[dict[str, Any]] = None) -> None:
        self.title, self.subtitle, self.meta = title, subtitle, dict(meta or {})
        self.sections: list[Section] = []
        self._names: dict[str, str] = {}  # item name -> id of the section that holds it

    def section(self, id: str, title: str, intro: str = "") -> Section:
        """Add and return a new section; ``id`` is its anchor (``report.html#id``) and must be unique."""
        if not isinstance(id, str) or not _ID.match(id):
            raise ValueError(f"section id {id!r} must start with a letter and hold only letters, digits, '_' or '-'")
        if any(s.id == id for s in self.sections):
            raise ValueError(f"the report already has a section with id {id!r}")
        section = Section(self, id, title, intro)
        self.sections.append(section)
        return section

    def _claim(self, name: str, section_id: str) -> None:
        if name in self._names:
            raise ValueError(f"figure name {name!r} in section {section_id!r} is already used in section "
                             f"{self._names[name]!r}; names must be unique (they become figures/<name>.png)")
        self._names[name] = section_id

    def figures(self) -> dict[str, Figure]:
        """Every named item (figures, attention views, diagrams) by name, in page order."""
        return {f["name"]: f["figure"] for s in self.sections for kind, f in s.items if "figure" in f}

    # ------------------------------------------------------------------ rendering
    def to_html(self, complete: bool = True) -> str:
        """The whole page as one string; ``complete=False`` leaves out the completeness marker."""
        from circuitscope import __version__

        assets: set[str] = set()
        body = [self._render_section(s, assets) for s in self.sections]
        meta = {**self.meta}
        meta.setdefault("circuitscope", __version__)
        generated = meta.pop("generated", None) or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        facts = "".join(f"<div><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>" for k, v in meta.items())
        subtitle = f'<p class="cs-subtitle">{_esc(self.subtitle)}</p>' if self.subtitle else ""
        return "".join([
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="circuitscope">',
            f"<title>{_esc(self.title)}</title><style>{_asset_css()}</style>", _head_scripts(assets),
            '</head><body><div class="cs-page">',
            f'<header class="cs-header"><h1>{_esc(self.title)}</h1>{subtitle}<dl class="cs-meta">{facts}</dl></header>',
            self._toc(), "<main>", *body, "</main>",
            f'<footer class="cs-footer">Generated by circuitscope {_esc(__version__)} on {_esc(generated)}. '
            "The numbers behind every figure are in results.json beside this file; PNG copies are in figures/. "
            "This page is self-contained and works offline.</footer></div>",
            "\n" + COMPLETE_MARKER if complete else "", "</body></html>\n",
        ])

    def _toc(self) -> str:
        entries = []
        for s in self.sections:
            named = "".join(f'<li><a href="#fig-{_esc(f["name"])}">{_esc(f["name"])}</a></li>'
                            for _, f in s.items if "name" in f)
            entries.append(f'<li><a href="#{_esc(s.id)}">{_esc(s.title)}</a>{f"<ul>{named}</ul>" if named else ""}</li>')
        return f'<nav class="cs-toc"><h2>Contents</h2><ol>{"".join(entries)}</ol></nav>' if entries else ""

    def _render_section(self, s: Section, assets: set[str]) -> str:
        intro = f'<p class="cs-intro">{_esc(s.intro)}</p>' if s.intro else ""
        items = "".join(_render_item(kind, f, assets) for kind, f in s.items)
        return f'<section class="cs-section" id="{_esc(s.id)}"><h2>{_esc(s.title)}</h2>{intro}{items}</section>'


# ---------------------------------------------------------------------- items
def _render_item(kind: str, f: dict[str, Any], assets: set[str]) -> str:
    if kind == "text":
        text = f["text"]
        if isinstance(text, str):
            return "".join(f"<p>{_esc(p.strip())}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())
        return "<ul>" + "".join(f"<li>{_esc(t)}</li>" for t in text) + "</ul>"
    if kind == "html":
        return f["raw"]
    if kind == "table":
        head = "".join(f"<th>{_esc(c)}</th>" for c in f["columns"])
        rows = []
        for row in f["rows"]:
            cells = [format_cell(v) for v in row]
            rows.append("<tr>" + "".join(f'<td{" class=cs-num" if num else ""}>{_esc(t)}</td>' for t, num in cells) + "</tr>")
        caption = f"<caption>{_esc(f['caption'])}</caption>" if f.get("caption") else ""
        return (f'<div class="cs-table-wrap"><table class="cs-table">{caption}<thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')
    name, fig = f["name"], f["figure"]
    if kind == "figure":
        inner = _plotly_div(name, fig, assets)
    elif kind == "attention":
        inner = _attention_div(fig, assets)
    elif kind == "diagram":
        inner = fig.to_html(full_html=False)
    else:
        raise ValueError(f"unknown report item kind {kind!r}; expected one of {', '.join(ITEM_KINDS)}")
    caption = f'<figcaption><span class="cs-name">{_esc(name)}</span>{_esc(f.get("caption", ""))}</figcaption>'
    return f'<figure class="cs-item cs-{kind}" id="fig-{_esc(name)}"><div class="cs-plot">{inner}</div>{caption}</figure>'


def _plotly_div(name: str, fig: Figure, assets: set[str]) -> str:
    """A plotly ``<div>`` that uses the page's single copy of plotly.js (same config as Figure.to_html)."""
    from circuitscope.plot.figure import _PLOTLY_CONFIG, plotly_io

    try:
        pfig = fig.to_plotly()
    except NotImplementedError:  # a figure drawn some other way: its own fragment
        return fig.to_html(full_html=False)
    assets.add("plotly")
    return plotly_io().to_html(pfig, include_plotlyjs=False, include_mathjax=False, full_html=False, div_id=f"plot-{name}",
                               config=_PLOTLY_CONFIG, default_width="100%", default_height=f"{fig.height}px")


def _attention_div(view: AttentionView, assets: set[str]) -> str:
    """The view's fragment with its script (and style) taken out, inlined once in <head> instead.

    Each view keeps its own root element and data. Should the fragment change shape so the shared
    parts are not found, it is used as it is (the page still works, a script copy per view)."""
    body = view.to_html(full_html=False)
    if view.backend == "circuitsvis":
        from circuitscope.plot.circuitsvis_view import circuitsvis_bundle

        bundle = f"<script>{circuitsvis_bundle()}</script>"
        if bundle in body:
            assets.add("circuitsvis")
            body = body.replace(bundle, "")
        return body
    from circuitscope.plot.attention import _CSS

    call = f"<script>{_attention_js()}("
    if call in body:
        assets.add("attention")
        body = body.replace(call, f"<script>{_ATTENTION_CALL}(").replace(f"<style>{_CSS}</style>", "")
    return body


def _attention_js() -> str:
    return resources.files("circuitscope.plot").joinpath("attention_view.js").read_text(encoding="utf-8").strip()


def _asset_css() -> str:  # report.css, shipped beside this module
    return resources.files("circuitscope.report").joinpath("report.css").read_text(encoding="utf-8")


def _head_scripts(assets: set[str]) -> str:
    """The shared scripts, each once, before any figure that calls them."""
    parts = []
    if "plotly" in assets:
        offline = require("plotly.offline", "interactive (HTML) figures")
        parts.append(f"<script>{offline.get_plotlyjs()}</script>")
    if "attention" in assets:
        from circuitscope.plot.attention import _CSS

        parts.append(f"<style>{_CSS}</style><script>var {_ATTENTION_CALL} = {_attention_js()};</script>")
    if "circuitsvis" in assets:
        from circuitscope.plot.circuitsvis_view import circuitsvis_bundle

        parts.append(f"<script>{circuitsvis_bundle()}</script>")
    return "".join(parts)
