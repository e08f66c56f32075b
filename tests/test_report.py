"""The circuit report: one offline HTML page (plotly.js once, escaped text), the circuit diagram
(nodes, edges, role colours, legend; SVG and PNG), and the writer's atomicity (a failure, Ctrl-C
or SIGKILL never leaves a report.html that looks complete)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser

import pytest
import torch

pytest.importorskip("plotly")
pytest.importorskip("matplotlib")

from circuitscope import plot  # noqa: E402
from circuitscope.circuit import Estimate  # noqa: E402
from circuitscope.plot.figure import Figure  # noqa: E402
from circuitscope.report import (  # noqa: E402
    COMPLETE_MARKER, DEFAULT_COLOUR, ROLE_COLOURS, CircuitDiagram, Report, clean_stale_staging, role_colour,
    write_outputs,
)
from circuitscope.report.document import format_cell  # noqa: E402

EVIL = "<script>alert('x')</script> & \"q\""
NODES = [
    {"label": "L0H1", "layer": 0, "head": 1, "role": "previous token", "score": 0.3},
    {"label": "L1H2", "layer": 1, "head": 2, "role": "induction", "score": 0.6, "ci": [0.4, 0.8]},
    {"label": "L2H0", "layer": 2, "head": 0, "role": "negative name mover", "score": -0.4, "ci": None},
    {"label": "L2H3", "layer": 2, "head": 3, "role": "mystery", "score": None},
]
EDGES = [
    {"src": "L0H1", "dst": "L1H2", "input": "k", "effect": 0.5},
    {"src": "L0H1", "dst": "L2H0", "input": "q", "effect": -0.2},
    {"src": "L1H2", "dst": "L2H3", "input": "v", "effect": 0.1},
    {"src": "L1H2", "dst": "logits", "input": "logits", "effect": 1.0},
    {"src": "L2H0", "dst": "logits", "input": "logits", "effect": -0.7},
]


class Tiny(Figure):
    """A cheap figure for the writer tests: a line on a 2 x 1.5 inch canvas."""

    width, height = 200, 150

    def draw(self, fig):
        fig.subplots().plot([0, 1], [0, 1])


class _Refs(HTMLParser):
    """Every src / href / <link> of the markup, and each <script>'s attributes."""

    def __init__(self):
        super().__init__()
        self.refs, self.scripts = [], []

    def handle_starttag(self, tag, attrs):
        self.refs += [(tag, k, v) for k, v in attrs if k in ("src", "href") and v]
        if tag == "link":
            self.refs.append((tag, "link", dict(attrs).get("href", "")))
        if tag == "script":
            self.scripts.append(dict(attrs))


def full_report(attention: bool = True) -> Report:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 4, generator=g)
    report = Report(f"IOI {EVIL}", subtitle=f"sub {EVIL}", meta={"model": "gpt2", "task": EVIL, "version": "0.1.0"})
    s = report.section("maps", f"Maps {EVIL}", intro=f"intro {EVIL}")
    s.figure("heat", plot.heatmap(values, ci=(values - 1, values + 1)), caption=f"cap {EVIL}")
    s.figure("line", plot.line(values[0], ci=(values[0] - 1, values[0] + 1)))
    s.figure("bar", plot.bar(values, k=5))
    s.figure("scatter", plot.scatter(values, values * 2))
    s.table(["head", EVIL, "estimate"], [[EVIL, 0.123456, Estimate(1.5, (1.0, 2.0))], ["L1H1", float("nan"), None]])
    s.text([f"bullet {EVIL}", "two"]).text(f"para {EVIL}\n\nsecond").html("<p class='trusted'>raw</p>")
    c = report.section("circuit", "Circuit")
    if attention:
        pats = torch.rand(1, 2, 4, 4, generator=g).tril()
        pats = pats / pats.sum(-1, keepdim=True)
        toks = [["<bos>", " A", " <B>", " &"]]
        c.attention("attn_a", plot.attention_view(pats, toks, head_names=["L0H1", "L1H2"]))
        c.figure("attn_b", plot.attention_view(pats, toks, head_names=["L2H0", "L2H3"]))
    c.diagram("diagram", CircuitDiagram(NODES, EDGES, n_layers=3, n_heads=4, title="sketch"))
    return report


# ---------------------------------------------------------------------- the page
def test_page_is_self_contained_with_plotly_once():
    import plotly.offline

    page = full_report().to_html()
    parser = _Refs()
    parser.feed(page)
    assert [r for r in parser.refs if r[1] == "link" or re.match(r"\s*(https?:)?//", r[2], re.I)] == []
    assert all("src" not in attrs for attrs in parser.scripts)  # every script inline
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//|<script[^>]+src=", page, re.I)
    js = plotly.offline.get_plotlyjs()
    assert page.count(js[:300]) == 1 and js in page  # plotly.js inlined, exactly once
    assert page.count("class=\"plotly-graph-div\"") == 4 and page.count("Plotly.newPlot(") == 4
    assert page.count("var circuitscopeAttentionView") == 1 and page.count("circuitscopeAttentionView(") == 2
    assert page.count(".csv-attn .csv-title") == 1  # the view's CSS once too
    assert page.count(COMPLETE_MARKER) == 1 and page.rstrip().endswith(COMPLETE_MARKER + "</body></html>")
    assert COMPLETE_MARKER not in full_report().to_html(complete=False)
    for anchor in ("#maps", "#circuit", "#fig-heat", "#fig-diagram", "#fig-attn_b"):
        assert f'href="{anchor}"' in page  # the table of contents
    assert "<footer" in page and "<dd>gpt2</dd>" in page and "circuitscope" in page


def test_user_text_is_escaped_everywhere_but_raw_html():
    page = full_report(attention=False).to_html()
    assert "<script>alert" not in page
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;"
    # <title>, <h1>, subtitle, task meta, section <h2> and its contents entry, intro, caption,
    # table header and cell, bullet, paragraph
    assert page.count(escaped) == 12
    assert "<p class='trusted'>raw</p>" in page and "<p>second</p>" in page
    assert "<li>two</li>" in page


def test_table_cells_are_formatted():
    assert format_cell(0.123456) == ("0.123", True)
    assert format_cell(Estimate(1.5, (1.0, 2.0))) == ("1.500 [1.000, 2.000]", True)
    assert format_cell({"value": -2.0, "ci": [None, 1.0]}) == ("-2.000 [n/a, 1.000]", True)
    assert format_cell(float("nan"))[0] == "n/a" and format_cell(12345.678)[0] == "12,345.7"
    assert format_cell(3e-7)[0] == "3.00e-07" and format_cell(torch.tensor(0.5)) == ("0.500", True)
    assert format_cell(7) == ("7", True) and format_cell("L9H6") == ("L9H6", False) and format_cell(None)[0] == ""


def test_clear_errors():
    report = Report("r")
    s = report.section("one", "One").figure("heat", plot.heatmap(torch.ones(2, 2)))
    with pytest.raises(ValueError, match="'heat' in section 'two' is already used in section 'one'"):
        report.section("two", "Two").figure("heat", plot.heatmap(torch.ones(2, 2)))
    with pytest.raises(ValueError, match="already has a section with id 'one'"):
        report.section("one", "Again")
    with pytest.raises(ValueError, match="unknown report item kind 'video'"):
        s.add("video", name="v")
    with pytest.raises(ValueError, match="figure name 'a/b'"):
        s.figure("a/b", plot.heatmap(torch.ones(2, 2)))
    with pytest.raises(ValueError, match="section id"):
        report.section("has space", "x")
    with pytest.raises(ValueError, match="row 1 .* 1 cells for 2 columns"):
        s.table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(TypeError, match="must be a circuitscope.plot Figure, got ndarray"):
        s.figure("arr", torch.ones(2).numpy())
    with pytest.raises(TypeError, match="must be AttentionView, got Heatmap"):
        s.attention("att", plot.heatmap(torch.ones(2, 2)))


# ---------------------------------------------------------------------- the diagram
def test_diagram_nodes_edges_colours_and_legend():
    svg = CircuitDiagram(NODES, EDGES, n_layers=3, n_heads=4).to_svg()
    assert svg.count('class="cs-node"') == 4 and svg.count('class="cs-logits"') == 1
    assert svg.count('class="cs-edge"') == 5
    colours = dict(re.findall(r'data-label="(\w+)" data-role="[^"]*" data-colour="(#\w+)"', svg))
    assert colours == {"L0H1": ROLE_COLOURS["previous token"], "L1H2": ROLE_COLOURS["induction"],
                       "L2H0": ROLE_COLOURS["negative mover"], "L2H3": DEFAULT_COLOUR}
    legend = re.search(r'<g class="cs-legend".*?</svg>', svg).group(0)
    for text in ("previous token", "induction", "negative name mover", "mystery", "positive effect", "negative effect"):
        assert f">{text}</text>" in legend
    widths = [float(w) for w in re.findall(r'stroke-width="([\d.]+)" stroke-opacity', svg)]
    assert widths.index(max(widths)) == 3 and widths[1] < widths[0]  # width grows with |effect|
    strokes = re.findall(r'<path d="[^"]+" fill="none" stroke="(#\w+)"', svg)
    assert strokes == ["#2166ac", "#b2182b", "#2166ac", "#2166ac", "#b2182b"]  # colour by sign
    assert [lab for lab in re.findall(r'paint-order="stroke">(\w)</text>', svg)] == ["k", "q", "v"]
    assert "<title>L0H1 \u2192 L2H0 (q): effect -0.2</title>" in svg
    assert "score +0.6 [+0.4, +0.8]" in svg
    ys = {lab: float(y) for lab, y in re.findall(r'data-label="(\w+)".*?<rect x="[\d.]+" y="([\d.]+)"', svg, re.S)}
    assert ys["L0H1"] > ys["L1H2"] > ys["L2H0"] == ys["L2H3"]  # layer 0 at the bottom


@pytest.mark.parametrize("role, key", [("name mover", "mover"), ("Backup Name Mover", "backup"), ("S-inhibition", "inhibition"),
                                       ("duplicate_token", "duplicate token"), ("suppressor", "suppressor"),
                                       ("feeder", "feeder"), ("negative mover", "negative mover")])
def test_role_colours(role, key):
    assert role_colour(role) == ROLE_COLOURS[key]
    assert role_colour("") == role_colour(None) == role_colour("unheard of") == DEFAULT_COLOUR


def test_diagram_errors_say_which_node_or_edge():
    with pytest.raises(ValueError, match=r"edge 1 \(L0H1 -> L9H9\) refers to a missing node 'L9H9' as dst"):
        CircuitDiagram(NODES, [EDGES[0], {"src": "L0H1", "dst": "L9H9", "input": "q", "effect": 1}], 3, 4)
    with pytest.raises(ValueError, match="node L5H0 has layer 5, outside 0..2"):
        CircuitDiagram([{"label": "L5H0", "layer": 5, "head": 0}], [], 3, 4)
    with pytest.raises(ValueError, match="repeated: L0H1"):
        CircuitDiagram([NODES[0], NODES[0]], [], 3, 4)
    with pytest.raises(ValueError, match="input 'z'"):
        CircuitDiagram(NODES, [{"src": "L0H1", "dst": "L1H2", "input": "z", "effect": 1}], 3, 4)
    with pytest.raises(ValueError, match="node 0 .* lacks head"):
        CircuitDiagram([{"label": "x", "layer": 0}], [], 3, 4)


def test_diagram_files(tmp_path):
    from matplotlib.image import imread

    d = CircuitDiagram(NODES, EDGES, n_layers=3, n_heads=4, title="circuit")
    pixels = imread(d.save(tmp_path / "c.png"))[..., :3]
    r, g, b = (pixels[..., i] for i in range(3))
    assert ((r > 0.75) & (g < 0.25) & (b < 0.25)).sum() > 300  # the negative mover box is drawn red
    assert ((g > 0.5) & (r < 0.3) & (b < 0.3)).sum() > 300  # the induction box green
    assert d.save(tmp_path / "c.svg").read_text().startswith("<svg")
    page = d.save(tmp_path / "c.html").read_text()
    assert page.startswith("<!doctype html>") and page.count('class="cs-node"') == 4
    with pytest.raises(NotImplementedError, match="SVG"):
        d.to_plotly()


# ---------------------------------------------------------------------- the writer
def small_report() -> Report:
    report = Report("small", meta={"model": "tiny"})
    report.section("s", "S").text("hello").diagram("diagram", CircuitDiagram(NODES[:1], [], 1, 2))
    return report


def listing(out):
    return sorted(p.name for p in out.iterdir())


def test_writer_writes_everything_and_results_round_trip(tmp_path):
    results = {"nan": float("nan"), "inf": float("inf"), "tensor": torch.tensor([1.0, float("nan")]),
               "estimate": Estimate(1.0, (0.5, 1.5)), "nested": {"k": [1, 2.5, None]}}
    paths = write_outputs(tmp_path / "out", small_report(), results, {"a": Tiny(), "b": Tiny()}, progress=False)
    out = tmp_path / "out"
    assert listing(out) == ["figures", "report.html", "results.json"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["a.png", "b.png"]
    assert paths == {"report": out / "report.html", "results": out / "results.json",
                     "figures": {"a": out / "figures" / "a.png", "b": out / "figures" / "b.png"}}
    assert json.loads((out / "results.json").read_text()) == {
        "nan": None, "inf": None, "tensor": [1.0, None], "estimate": {"value": 1.0, "ci": [0.5, 1.5]},
        "nested": {"k": [1, 2.5, None]}}
    assert COMPLETE_MARKER in (out / "report.html").read_text()
    assert oct((out / "report.html").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    # the default figure set is the report's named items; an earlier run's other PNGs go
    write_outputs(out, small_report(), {}, progress=False)
    assert (out / "figures" / "diagram.png").stat().st_size > 1000
    assert not (out / "figures" / "a.png").exists() and not (out / "figures" / "b.png").exists()
    with pytest.raises(TypeError, match=r"results\['bad'\]\[0\]: cannot write a object"):
        write_outputs(out, small_report(), {"bad": [object()]}, progress=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_failure_midway_leaves_no_report_and_no_staging(tmp_path, monkeypatch, error):
    calls = []

    def save(self, path, dpi=150):
        calls.append(path)
        if len(calls) == 2:
            raise error("drawing failed")
        return Figure.save(self, path, dpi)

    monkeypatch.setattr(Tiny, "save", save)
    out = tmp_path / "out"
    with pytest.raises(error):
        write_outputs(out, small_report(), {"x": 1.0}, {"a": Tiny(), "b": Tiny(), "c": Tiny()}, progress=False)
    assert len(calls) == 2 and listing(out) == []  # nothing: no report, no results, no PNG, no staging

    # over an earlier complete run, the earlier files stay as they were
    monkeypatch.undo()
    write_outputs(out, small_report(), {"run": 1}, {"a": Tiny()}, progress=False)
    before = (out / "report.html").read_text()
    monkeypatch.setattr(Tiny, "save", save)
    calls.clear()
    with pytest.raises(error):
        write_outputs(out, small_report(), {"run": 2}, {"a": Tiny(), "b": Tiny()}, progress=False)
    assert listing(out) == ["figures", "report.html", "results.json"]
    assert (out / "report.html").read_text() == before and json.loads((out / "results.json").read_text()) == {"run": 1}


def test_failure_while_moving_removes_the_old_report(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_outputs(out, small_report(), {"run": 1}, {"a": Tiny()}, progress=False)
    real = os.replace

    def replace(src, dst):
        if str(dst) == str(out / "results.json"):  # the move into place, not the staged write
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        write_outputs(out, small_report(), {"run": 2}, {"a": Tiny()}, progress=False)
    assert listing(out) == ["figures", "results.json"]  # no report.html describes the half-moved files


KILLED_RUN = textwrap.dedent("""
    import pathlib, sys, time
    from circuitscope.plot.figure import Figure
    from circuitscope.report import Report, write_outputs

    class Quick(Figure):
        width, height = 200, 150
        def draw(self, fig):
            fig.subplots().plot([0, 1])

    class Slow(Quick):
        def draw(self, fig):
            pathlib.Path(sys.argv[2]).write_text("drawing")
            time.sleep(120)

    report = Report("killed")
    report.section("s", "S").text("never shown")
    write_outputs(sys.argv[1], report, {"x": 1}, {"quick": Quick(), "slow": Slow()}, progress=False)
""")


def test_sigkill_midway_leaves_only_a_hidden_staging_folder(tmp_path):
    out, flag = tmp_path / "out", tmp_path / "drawing"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(out), str(flag)])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, "the writer subprocess exited before drawing the slow figure"
            assert time.monotonic() < deadline, "the slow figure never started drawing"
            time.sleep(0.05)
        staging = [p for p in out.iterdir()]
        assert len(staging) == 1 and staging[0].name.startswith(".staging-")
        assert (staging[0] / "figures" / "quick.png").exists()  # killed after real work was staged
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert listing(out) == [staging[0].name]  # no report.html, results.json or figures/

    # the next run succeeds beside the leftover, and removes it once it is stale
    write_outputs(out, small_report(), {}, {"a": Tiny()}, progress=False)
    assert listing(out) == [staging[0].name, "figures", "report.html", "results.json"]
    assert clean_stale_staging(out) == []  # young: might belong to a run still going
    old = time.time() - 2 * 3600
    os.utime(staging[0], (old, old))
    write_outputs(out, small_report(), {}, {"a": Tiny()}, progress=False)
    assert listing(out) == ["figures", "report.html", "results.json"]


def test_results_json_rejects_nothing_finite():
    from circuitscope.report import to_jsonable

    data = to_jsonable({"a": [math.nan, 1.5], "b": torch.tensor(2), 3: "k"})
    assert data == {"a": [None, 1.5], "b": 2, "3": "k"}


def test_diagram_survives_infinite_effects_and_dollar_signs(tmp_path):
    nodes = [{"label": "L0H1", "layer": 0, "head": 1, "role": "cost $\\foo$", "score": 0.3},
             {"label": "L1H0", "layer": 1, "head": 0, "role": "mover", "score": 0.5}]
    edges = [{"src": "L0H1", "dst": "L1H0", "input": "k", "effect": math.inf},
             {"src": "L1H0", "dst": "logits", "input": "logits", "effect": 0.4}]
    d = CircuitDiagram(nodes, edges, 2, 2, title="price in $\\alpha$")
    svg = d.to_svg()
    assert 'stroke-width="nan"' not in svg and 'stroke-width="6.20"' in svg  # the finite edge sets the scale
    assert d.save(tmp_path / "d.png").stat().st_size > 1000  # "$" is not parsed as TeX
