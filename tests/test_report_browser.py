"""The written report in a real browser: headless Chromium opens report.html with networking off.

A synthetic report holds every figure kind (heatmap with intervals, line with a CI band, bar,
scatter), two attention views and a circuit diagram; :func:`write_outputs` writes it, and the
page must load with no console or page errors and no network request, every plotly div must
have drawn its SVG, both attention views must work independently (one shared script), and the
diagram must show every node. Full-page screenshots go to the test's tmp_path.

Fixtures as in tests/test_browser_plot.py: Debian's chromium driven by playwright, skipped when
absent except under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import pytest
import torch

from circuitscope import plot
from circuitscope.circuit import Estimate
from circuitscope.report import CircuitDiagram, Report, write_outputs

pytestmark = pytest.mark.browser

NODES = [
    {"label": "L0H1", "layer": 0, "head": 1, "role": "previous token", "score": 0.31, "ci": [0.2, 0.4]},
    {"label": "L1H0", "layer": 1, "head": 0, "role": "induction", "score": 0.62, "ci": [0.5, 0.7]},
    {"label": "L1H3", "layer": 1, "head": 3, "role": "duplicate token", "score": 0.12},
    {"label": "L2H2", "layer": 2, "head": 2, "role": "name mover", "score": 0.81, "ci": [0.7, 0.9]},
    {"label": "L2H3", "layer": 2, "head": 3, "role": "negative name mover", "score": -0.35},
]
EDGES = [
    {"src": "L0H1", "dst": "L1H0", "input": "k", "effect": 0.44},
    {"src": "L1H0", "dst": "L2H2", "input": "q", "effect": 0.52},
    {"src": "L1H3", "dst": "L2H2", "input": "v", "effect": -0.18},
    {"src": "L2H2", "dst": "logits", "input": "logits", "effect": 1.3},
    {"src": "L2H3", "dst": "logits", "input": "logits", "effect": -0.6},
]


def synthetic_report() -> Report:
    g = torch.Generator().manual_seed(0)
    dla = torch.randn(3, 4, generator=g)
    lens = torch.linspace(-0.5, 2.5, 7)
    report = Report("Synthetic circuit <report>", subtitle="every figure kind, offline",
                    meta={"model": "toy-3l", "task": "ioi", "prompts": 16})
    maps = report.section("maps", "Attribution", intro="Heatmap, line, bar and scatter.")
    maps.figure("dla_heads", plot.heatmap(dla, [f"L{i}" for i in range(3)], [f"H{i}" for i in range(4)],
                                          ci=(dla - 0.5, dla + 0.5), title="DLA per head"), caption="with intervals")
    maps.figure("logit_lens", plot.line(lens, ci=(lens - 0.3, lens + 0.3), title="logit lens"))
    maps.figure("top_heads", plot.bar(dla, k=6, ci=(dla - 0.5, dla + 0.5), title="top heads"))
    maps.figure("dla_vs_patch", plot.scatter(dla, dla * 0.8 + 0.1, title="DLA vs patching", diagonal=True))
    maps.table(["head", "score"], [["L2H2", Estimate(0.81, (0.7, 0.9))], ["L2H3 <neg>", -0.35]], caption="roles")
    attn = report.section("attention", "Attention patterns")
    n = 5
    pats = torch.rand(2, 2, n, n, generator=g).tril()
    pats = pats / pats.sum(-1, keepdim=True)
    attn.attention("attn_movers", plot.attention_view(pats, [["<bos>", " A", " <B>", " A", " &"]] * 2,
                                                      head_names=["L2H2", "L2H3"], title="movers"))
    attn.attention("attn_induction", plot.attention_view(pats[:1, :, :4, :4], [["<bos>", " x", " y", " x"]],
                                                         head_names=["L1H0", "L0H1"], title="induction"))
    report.section("circuit", "Circuit").diagram("circuit", CircuitDiagram(NODES, EDGES, 3, 4, title="sketch"))
    return report


def test_report_renders_offline(open_page, tmp_path):
    paths = write_outputs(tmp_path / "out", synthetic_report(), {"ok": True}, progress=False)
    page, errors = open_page(paths["report"])
    assert page.get_attribute('meta[name="circuitscope-report"]', "content") == "complete"

    plots = page.locator(".plotly-graph-div")
    assert plots.count() == 4
    page.wait_for_function("() => [...document.querySelectorAll('.plotly-graph-div')]"
                           ".every(d => d.querySelector('svg.main-svg'))", timeout=15_000)
    for i in range(4):  # each drew its own plot, not an empty frame
        assert plots.nth(i).locator("svg.main-svg").count() >= 1
        assert plots.nth(i).locator(".trace, .heatmaplayer image").count() >= 1
    assert page.locator("#plot-dla_heads .heatmaplayer image").count() == 1
    assert page.locator("#plot-logit_lens .scatterlayer .trace").count() == 2  # band + line

    views = page.locator(".csv-attn")
    assert views.count() == 2
    assert views.nth(0).locator("rect.csv-cell").count() == 25 and views.nth(1).locator("rect.csv-cell").count() == 16
    assert views.nth(0).locator(".csv-head canvas").count() == 2 and views.nth(1).locator(".csv-head canvas").count() == 2
    assert views.nth(0).locator(".csv-token").all_text_contents() == ["<bos>", " A", " <B>", " A", " &"]
    # hovering a token in the second view changes that view only
    first_info = views.nth(0).locator(".csv-info").text_content()
    views.nth(1).locator(".csv-token").nth(3).hover()
    assert views.nth(1).locator(".csv-info").text_content().startswith('L1H0: " x"_3 attends most to')
    assert views.nth(0).locator(".csv-info").text_content() == first_info

    diagram = page.locator("svg.cs-diagram")
    assert diagram.count() == 1
    assert diagram.locator("g.cs-node").count() == len(NODES) and diagram.locator("g.cs-logits").count() == 1
    assert diagram.locator("g.cs-edge").count() == len(EDGES)
    assert diagram.locator("g.cs-node").nth(3).bounding_box()["height"] > 20  # laid out, visible

    page.mouse.move(0, 0)
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    diagram.screenshot(path=tmp_path / "diagram.png")
    assert (tmp_path / "report.png").stat().st_size > 50_000
    assert errors == []
