"""The circuit diagram: heads as boxes in layer rows, edges as curved arrows into q, k, v or logits.

A :class:`CircuitDiagram` draws the circuit found by the analysis the way papers draw it: layer 0
at the bottom, the logits on top, each head placed in its row by head index, coloured by the
role the sketch gave it, and every edge an arrow whose width is proportional to ``|effect|``
(blue positive, red negative) with a small ``q`` / ``k`` / ``v`` label saying which input of the
receiving head it enters. Hovering a box or an edge shows its numbers (SVG ``<title>``).

The coordinates are computed here by hand (no graphviz, no system graph library), once, and both
outputs use them: :meth:`CircuitDiagram.to_svg` (inline in the HTML report, or ``.save("c.svg")``)
and :meth:`CircuitDiagram.draw` (matplotlib, for ``.save("c.png")``). A model with more than 16
heads (24 layers) shows only the head columns (layer rows) that hold a node, still in order.

>>> nodes = [{"label": "L2H1", "layer": 2, "head": 1, "role": "duplicate token", "score": 0.2},
...          {"label": "L3H3", "layer": 3, "head": 3, "role": "mover", "score": 0.57, "ci": [0.4, 0.7]}]
>>> edges = [{"src": "L2H1", "dst": "L3H3", "input": "q", "effect": -0.31},
...          {"src": "L3H3", "dst": "logits", "input": "logits", "effect": 0.9}]
>>> CircuitDiagram(nodes, edges, n_layers=4, n_heads=4).to_svg().count('class="cs-node"')
2
"""

from __future__ import annotations

import html
import math
import uuid
from pathlib import Path
from typing import Any, Optional

from circuitscope.io import write_text_atomic
from circuitscope.plot.figure import Figure

__all__ = ["CircuitDiagram", "ROLE_COLOURS", "DEFAULT_COLOUR", "role_colour"]

# Role -> fill colour. A role matches the entry whose words it contains most of ("negative name
# mover" -> "negative mover", "S-inhibition" -> "inhibition"); ties go to the earlier entry.
ROLE_COLOURS = {
    "negative mover": "#d62728", "backup": "#17becf", "mover": "#1f77b4", "suppressor": "#e377c2",
    "inhibition": "#ff7f0e", "induction": "#2ca02c", "duplicate token": "#9467bd",
    "previous token": "#8c564b", "feeder": "#bcbd22", "direct": "#7f7fff",
}
DEFAULT_COLOUR = "#9e9e9e"
POSITIVE, NEGATIVE, UNDEFINED = "#2166ac", "#b2182b", "#888888"  # edge colours, as in the heatmaps
INPUTS = ("q", "k", "v", "logits")
NODE_W, NODE_H, COL_W, ROW_H, LEFT, TOP, LEGEND_W = 66, 34, 82, 84, 48, 40, 190


def _words(role: str) -> set[str]:
    return set(role.lower().replace("-", " ").replace("_", " ").split())


def role_colour(role: Optional[str]) -> str:
    """The fill colour of a head with this role (:data:`DEFAULT_COLOUR` for unknown roles)."""
    words, best, colour = _words(role or ""), 0, DEFAULT_COLOUR
    for key, value in ROLE_COLOURS.items():
        n = len(_words(key))
        if _words(key) <= words and n > best:
            best, colour = n, value
    return colour


def _text_colour(fill: str) -> str:
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _num(x: Any) -> Optional[float]:
    """A float (an Estimate-like object gives its ``.value``), or None."""
    if x is None:
        return None
    return float(getattr(x, "value", x))


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:+.3g}"


def _bezier(p0, c1, c2, p3, t: float) -> tuple[float, float]:
    s = 1 - t
    return tuple(s**3 * a + 3 * s * s * t * b + 3 * s * t * t * c + t**3 * d for a, b, c, d in zip(p0, c1, c2, p3))


class CircuitDiagram(Figure):
    """Nodes (heads) in layer rows under an implicit ``"logits"`` node, joined by weighted edges.

    ``nodes``: ``[{"label": "L3H3", "layer": 3, "head": 3, "role": "suppressor", "score": 0.57,
    "ci": [lo, hi] or None}]`` (``head`` None for a non-head component, drawn at the row's end).
    ``edges``: ``[{"src": "L2H1", "dst": "L3H3", "input": "q"|"k"|"v"|"logits", "effect": -0.31}]``;
    ``dst`` may be ``"logits"``. A node or edge that does not fit raises ValueError saying which."""

    def __init__(self, nodes, edges, n_layers: int, n_heads: int, title: str = "") -> None:
        self.n_layers, self.n_heads, self.title = int(n_layers), int(n_heads), title
        self.nodes = [self._check_node(i, n) for i, n in enumerate(nodes)]
        labels = [n["label"] for n in self.nodes]
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dupes:
            raise ValueError(f"circuit diagram: node labels must be unique; repeated: {', '.join(dupes)}")
        self.edges = [self._check_edge(i, e, set(labels)) for i, e in enumerate(edges)]
        self._layout()

    # ------------------------------------------------------------------ validation
    def _check_node(self, i: int, node: dict) -> dict:
        missing = [k for k in ("label", "layer", "head") if k not in node]
        if missing:
            raise ValueError(f"circuit diagram: node {i} ({node!r}) lacks {', '.join(missing)}")
        label, layer, head = str(node["label"]), int(node["layer"]), node["head"]
        if label == "logits":
            raise ValueError("circuit diagram: 'logits' is the implicit output node; name heads otherwise")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"circuit diagram: node {label} has layer {layer}, outside 0..{self.n_layers - 1}")
        if head is not None and not 0 <= int(head) < self.n_heads:
            raise ValueError(f"circuit diagram: node {label} has head {head}, outside 0..{self.n_heads - 1}")
        ci = node.get("ci", getattr(node.get("score"), "ci", None))  # an Estimate score brings its interval
        return {"label": label, "layer": layer, "head": None if head is None else int(head),
                "role": str(node.get("role") or ""), "score": _num(node.get("score")),
                "ci": None if ci is None else tuple(math.nan if c is None else float(c) for c in ci)}

    def _check_edge(self, i: int, edge: dict, labels: set[str]) -> dict:
        src, dst = str(edge.get("src")), str(edge.get("dst"))
        name = f"edge {i} ({src} -> {dst})"
        for end, lab in (("src", src), ("dst", dst)):
            if lab not in labels and not (end == "dst" and lab == "logits"):
                known = ", ".join(sorted(labels)[:20]) or "none"
                raise ValueError(f"circuit diagram: {name} refers to a missing node {lab!r} as {end} (nodes: {known})")
        inp = str(edge.get("input", "logits" if dst == "logits" else ""))
        if inp not in INPUTS:
            raise ValueError(f"circuit diagram: {name} has input {inp!r}; expected one of {', '.join(INPUTS)}")
        return {"src": src, "dst": dst, "input": inp, "effect": _num(edge.get("effect"))}

    # ------------------------------------------------------------------ geometry (shared by SVG and PNG)
    def _layout(self) -> None:
        used_layers = sorted({n["layer"] for n in self.nodes})
        used_heads = sorted({n["head"] for n in self.nodes if n["head"] is not None})
        rows = list(range(self.n_layers)) if self.n_layers <= 24 else used_layers
        cols: list = list(range(self.n_heads)) if self.n_heads <= 16 else used_heads
        if any(n["head"] is None for n in self.nodes):
            cols.append(None)
        self.rows, self.cols = rows, cols
        self.logits_y = TOP + ROW_H / 2
        self.row_y = {layer: self.logits_y + (len(rows) - r) * ROW_H for r, layer in enumerate(rows)}
        self.col_x = {head: LEFT + (c + 0.5) * COL_W for c, head in enumerate(cols)}
        plot_w = LEFT + max(1, len(cols)) * COL_W + 16
        self.pos = {n["label"]: (self.col_x[n["head"]], self.row_y[n["layer"]]) for n in self.nodes}
        self.pos["logits"] = (LEFT + max(1, len(cols)) * COL_W / 2, self.logits_y)
        self.roles = list(dict.fromkeys(n["role"] or "(no role)" for n in self.nodes))
        self.legend_x = plot_w + 8
        legend_h = TOP + 24 * (len(self.roles) + 5)
        self.width = int(plot_w + LEGEND_W)
        self.height = int(max(self.logits_y + len(rows) * ROW_H + ROW_H / 2, legend_h))
        top = max((abs(e["effect"]) for e in self.edges if e["effect"] is not None and math.isfinite(e["effect"])),
                  default=0.0)  # the widest finite edge sets the scale
        self.paths = [self._edge_path(e, top) for e in self.edges]

    def _edge_path(self, edge: dict, top: float) -> dict:
        (x1, y1), (x2, y2) = self.pos[edge["src"]], self.pos[edge["dst"]]
        if edge["dst"] == "logits":  # spread arrivals along the wide logits box, in source order
            shift = max(-40.0, min(40.0, (x1 - x2) * 0.3))
        else:
            shift = {"q": -NODE_W / 4, "k": 0.0, "v": NODE_W / 4}[edge["input"]]
        p0, p3 = (x1, y1 - NODE_H / 2), (x2 + shift, y2 + NODE_H / 2 + 3)
        bend = max(36.0, abs(p0[1] - p3[1]) * 0.5)
        c1, c2 = (p0[0], p0[1] - bend), (p3[0], p3[1] + bend)
        eff = edge["effect"]
        bad = eff is None or not math.isfinite(eff)
        width = (6.2 if eff is not None and math.isinf(eff) else 1.2) if bad else 1.2 + 5.0 * abs(eff) / (top or 1.0)
        colour = UNDEFINED if bad else (POSITIVE if eff >= 0 else NEGATIVE)
        return {"points": (p0, c1, c2, p3), "width": width, "colour": colour,
                "label_at": _bezier(p0, c1, c2, p3, 0.7)}

    def _legend(self) -> list[tuple[str, str, str]]:
        """(kind, colour, text) rows of the legend: the roles present, then the edge encoding."""
        rows = [("role", role_colour(r if r != "(no role)" else ""), r) for r in self.roles]
        return rows + [("edge", POSITIVE, "positive effect"), ("edge", NEGATIVE, "negative effect"),
                       ("note", "", "width \u221d |effect|; q/k/v: input")]

    # ------------------------------------------------------------------ SVG
    def to_svg(self) -> str:
        """The diagram as an SVG element: ``g.cs-node`` per node, ``g.cs-logits``, ``g.cs-edge`` per edge."""
        e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
        uid = f"csd{uuid.uuid4().hex[:10]}"
        out = [f'<svg class="cs-diagram" xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
               f'viewBox="0 0 {self.width} {self.height}" font-family="system-ui, sans-serif" role="img" '
               f'aria-label="{e(self.title or "circuit diagram")}">', "<defs>"]
        for name, colour in (("pos", POSITIVE), ("neg", NEGATIVE), ("nan", UNDEFINED)):
            out.append(f'<marker id="{uid}-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
                       f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
        out.append("</defs>")
        if self.title:
            out.append(f'<text x="{LEFT}" y="22" font-size="15" font-weight="600">{e(self.title)}</text>')
        x_end = LEFT + max(1, len(self.cols)) * COL_W
        for layer, y in self.row_y.items():
            out.append(f'<line x1="{LEFT}" x2="{x_end}" y1="{y}" y2="{y}" stroke="#eeeeee"/>'
                       f'<text x="{LEFT - 8}" y="{y + 4}" font-size="11" fill="#777" text-anchor="end">L{layer}</text>')
        for edge, path in zip(self.edges, self.paths):
            (x0, y0), (a, b), (c, d), (x3, y3) = path["points"]
            marker = {POSITIVE: "pos", NEGATIVE: "neg"}.get(path["colour"], "nan")
            lx, ly = path["label_at"]
            tip = f'{edge["src"]} \u2192 {edge["dst"]} ({edge["input"]}): effect {_fmt(edge["effect"])}'
            label = "" if edge["input"] == "logits" else (
                f'<text x="{lx + 5:.1f}" y="{ly:.1f}" font-size="10" fill="{path["colour"]}" stroke="#fff" '
                f'stroke-width="3" paint-order="stroke">{e(edge["input"])}</text>')
            out.append(f'<g class="cs-edge" data-src="{e(edge["src"])}" data-dst="{e(edge["dst"])}" data-input="{e(edge["input"])}">'
                       f"<title>{e(tip)}</title><path d=\"M{x0:.1f},{y0:.1f} C{a:.1f},{b:.1f} {c:.1f},{d:.1f} {x3:.1f},{y3:.1f}\" "
                       f'fill="none" stroke="{path["colour"]}" stroke-width="{path["width"]:.2f}" stroke-opacity="0.8" '
                       f'marker-end="url(#{uid}-{marker})"/>{label}</g>')
        lx, ly = self.pos["logits"]
        out.append(f'<g class="cs-logits"><title>logits (output)</title><rect x="{lx - 50}" y="{ly - NODE_H / 2}" width="100" '
                   f'height="{NODE_H}" rx="6" fill="#333333"/><text x="{lx}" y="{ly + 5}" font-size="13" fill="#fff" '
                   'text-anchor="middle" font-weight="600">logits</text></g>')
        for node in self.nodes:
            x, y = self.pos[node["label"]]
            fill = role_colour(node["role"])
            ink = _text_colour(fill)
            score = "" if node["score"] is None else f"score {_fmt(node['score'])}"
            if score and node["ci"]:
                score += f" [{_fmt(node['ci'][0])}, {_fmt(node['ci'][1])}]"
            tip = "\n".join(filter(None, [f'{node["label"]} \u00b7 {node["role"] or "no role"}', score]))
            small = "" if node["score"] is None else (
                f'<text x="{x}" y="{y + 12}" font-size="10" fill="{ink}" text-anchor="middle">{e(_fmt(node["score"]))}</text>')
            out.append(f'<g class="cs-node" data-label="{e(node["label"])}" data-role="{e(node["role"])}" data-colour="{fill}">'
                       f'<title>{e(tip)}</title><rect x="{x - NODE_W / 2}" y="{y - NODE_H / 2}" width="{NODE_W}" '
                       f'height="{NODE_H}" rx="6" fill="{fill}" stroke="#333" stroke-width="1"/>'
                       f'<text x="{x}" y="{y + (-1 if small else 4)}" font-size="12" font-weight="600" fill="{ink}" '
                       f'text-anchor="middle">{e(node["label"])}</text>{small}</g>')
        out.append(f'<g class="cs-legend" transform="translate({self.legend_x},{TOP})">')
        for i, (kind, colour, text) in enumerate(self._legend()):
            y = i * 24
            mark = {"role": f'<rect x="0" y="{y}" width="16" height="16" rx="3" fill="{colour}" stroke="#333"/>',
                    "edge": f'<line x1="0" x2="16" y1="{y + 8}" y2="{y + 8}" stroke="{colour}" stroke-width="3"/>'}.get(kind, "")
            out.append(f'<g class="cs-legend-{kind}">{mark}<text x="{22 if mark else 0}" y="{y + 12}" font-size="11" '
                       f'fill="#333">{e(text)}</text></g>')
        out.append("</g></svg>")
        return "".join(out)

    def to_html(self, full_html: bool = True) -> str:
        """The inline SVG in a scrollable ``<div>``; ``full_html`` makes it a page of its own."""
        body = f'<div class="cs-diagram-wrap" style="overflow-x:auto">{self.to_svg()}</div>'
        if not full_html:
            return body
        return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(self.title or "circuit")}'
                f"</title></head><body>{body}</body></html>")

    def to_plotly(self) -> Any:
        raise NotImplementedError("the circuit diagram is drawn as SVG: use to_svg(), to_html() or save('x.svg'/'x.png')")

    def save(self, path, dpi: int = 150) -> Path:
        """``.svg`` / ``.html`` write the SVG itself (tooltips kept); ``.png`` / ``.pdf`` use matplotlib."""
        path = Path(path)
        if path.suffix.lower() == ".svg":
            return write_text_atomic(path, self.to_svg())
        return super().save(path, dpi=dpi)

    # ------------------------------------------------------------------ matplotlib (same coordinates)
    def draw(self, fig: Any) -> None:
        from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
        from matplotlib.path import Path as MPath

        fig.set_layout_engine("none")
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, self.width)
        ax.set_ylim(self.height, 0)  # SVG coordinates: y grows downwards
        ax.set_axis_off()

        def put(*args, **kwargs):  # user text (titles, roles) is not TeX: "$" stays a dollar
            return ax.text(*args, parse_math=False, **kwargs)

        pt = 0.72  # one SVG pixel in points when the figure is width / 100 inches wide
        if self.title:
            put(LEFT, 22, self.title, fontsize=15 * pt, fontweight="bold")
        x_end = LEFT + max(1, len(self.cols)) * COL_W
        for layer, y in self.row_y.items():
            ax.plot([LEFT, x_end], [y, y], color="#eeeeee", linewidth=0.8, zorder=0)
            put(LEFT - 8, y, f"L{layer}", fontsize=11 * pt, color="#777", ha="right", va="center")
        codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4]
        for edge, path in zip(self.edges, self.paths):
            ax.add_patch(FancyArrowPatch(path=MPath(path["points"], codes), arrowstyle="-|>", mutation_scale=9,
                                         linewidth=path["width"] * pt, color=path["colour"], alpha=0.8, zorder=1))
            if edge["input"] != "logits":
                lx, ly = path["label_at"]
                put(lx + 5, ly, edge["input"], fontsize=10 * pt, color=path["colour"], va="bottom", zorder=3,
                        bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
        lx, ly = self.pos["logits"]
        ax.add_patch(FancyBboxPatch((lx - 50, ly - NODE_H / 2), 100, NODE_H, boxstyle="round,pad=0,rounding_size=6",
                                    facecolor="#333333", edgecolor="none", zorder=2))
        put(lx, ly, "logits", fontsize=13 * pt, color="white", ha="center", va="center", fontweight="bold", zorder=3)
        for node in self.nodes:
            x, y = self.pos[node["label"]]
            fill = role_colour(node["role"])
            ax.add_patch(FancyBboxPatch((x - NODE_W / 2, y - NODE_H / 2), NODE_W, NODE_H, zorder=2, linewidth=0.7,
                                        boxstyle="round,pad=0,rounding_size=6", facecolor=fill, edgecolor="#333"))
            has_score = node["score"] is not None
            put(x, y - (5 if has_score else 0), node["label"], fontsize=12 * pt, fontweight="bold",
                    color=_text_colour(fill), ha="center", va="center", zorder=3)
            if has_score:
                put(x, y + 9, _fmt(node["score"]), fontsize=10 * pt, color=_text_colour(fill),
                        ha="center", va="center", zorder=3)
        for i, (kind, colour, text) in enumerate(self._legend()):
            x, y = self.legend_x, TOP + i * 24
            if kind == "role":
                ax.add_patch(FancyBboxPatch((x, y), 16, 16, boxstyle="round,pad=0,rounding_size=3", facecolor=colour,
                                            edgecolor="#333", linewidth=0.7))
            elif kind == "edge":
                ax.plot([x, x + 16], [y + 8, y + 8], color=colour, linewidth=3 * pt)
            put(x + (0 if kind == "note" else 22), y + 8, text, fontsize=11 * pt, color="#333", va="center")
