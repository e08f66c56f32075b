"""Real-browser checks: headless Chromium opens the saved HTML with networking off.

Chromium is Debian's ``chromium`` package, driven over the DevTools protocol by playwright's
Python client (``executable_path`` points at the system browser: no browser download). The
context is offline, host names resolve nowhere, and every request other than the ``file://`` page
is aborted and recorded, so a page that needs the network fails here. Each test asserts no
console errors, that the plot's SVG / canvas elements exist, and that hovering or clicking changes
what is shown; screenshots go to the test's tmp_path.

Without Chromium (or playwright) the tests skip with the reason, except under CI (``CI`` set),
where they fail: CI installs Chromium, so its absence there is a broken setup, not a skip.
"""

from __future__ import annotations

import pytest
import torch

from circuitscope import plot

pytestmark = pytest.mark.browser




def test_heatmap_renders_and_hover_shows_the_head(open_page, tmp_path):
    values = torch.linspace(-1, 1, 12).reshape(3, 4)  # [layer, head]
    fig = plot.heatmap(values, ["L0", "L1", "L2"], ["H0", "H1", "H2", "H3"], title="DLA", ci=(values - 0.3, values + 0.3))
    page, errors = open_page(fig.save(tmp_path / "heatmap.html"))
    page.wait_for_selector("svg.main-svg .heatmaplayer image")  # plotly draws the cells as an image
    assert page.locator("svg.main-svg").count() >= 1
    assert page.locator(".hoverlayer .hovertext").count() == 0
    page.screenshot(path=tmp_path / "heatmap.png")
    drag = page.locator(".nsewdrag").first.bounding_box()  # the plotting area
    # centre of the cell in row L2, column H3 (rows run top to bottom)
    page.mouse.move(drag["x"] + drag["width"] * 7 / 8, drag["y"] + drag["height"] * 5 / 6)
    page.wait_for_selector(".hoverlayer .hovertext")
    text = page.locator(".hoverlayer .hovertext").first.text_content()
    assert "L2H3" in text and "95% interval" in text and "+0.7" in text
    page.screenshot(path=tmp_path / "heatmap_hover.png")
    assert errors == []
    assert (tmp_path / "heatmap_hover.png").stat().st_size > 5_000


def _cell_fills(page) -> list:
    return page.eval_on_selector_all("svg.csv-heatmap rect.csv-cell", "cells => cells.map(c => c.getAttribute('fill'))")


def test_attention_view_hover_token_and_head(open_page, tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 6
    pats = torch.randn(2, 3, n, n, generator=g).masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -1e9).softmax(-1)
    tokens = [["<bos>", "When", " Mary", " and", " John", " went"], ["<bos>", "Then", " Tom", " left"]]
    view = plot.attention_view(pats, tokens, head_names=["L0H1", "L1H0", "L1H3"], title="heads")
    page, errors = open_page(view.save(tmp_path / "attention.html"))
    page.wait_for_selector("svg.csv-heatmap rect.csv-cell")
    assert page.locator("svg.csv-heatmap rect.csv-cell").count() == n * n
    assert page.locator(".csv-head canvas").count() == 3
    assert page.locator(".csv-token").all_text_contents() == tokens[0]
    page.screenshot(path=tmp_path / "attention.png", full_page=True)

    # hovering a token colours the tokens it attends to and outlines its row
    backgrounds = lambda: page.eval_on_selector_all(".csv-token", "ts => ts.map(t => t.style.background)")  # noqa: E731
    assert set(backgrounds()) == {""}
    page.locator(".csv-token").nth(4).hover()
    coloured = backgrounds()
    assert all(coloured[:5]) and coloured[5] == "rgb(255, 255, 255)"  # causal: nothing from the future
    assert page.locator("svg.csv-heatmap rect.csv-focus").count() == 1
    assert page.locator(".csv-info").text_content().startswith('L0H1: " John"_4 attends most to')
    page.screenshot(path=tmp_path / "attention_token_hover.png", full_page=True)

    # hovering a head previews it; clicking selects it
    before = _cell_fills(page)
    page.locator(".csv-head").nth(2).hover()
    assert page.get_attribute("svg.csv-heatmap", "data-head") == "2" and _cell_fills(page) != before
    page.locator(".csv-head").nth(2).click()
    page.mouse.move(5, 5)
    assert page.locator(".csv-head.csv-selected").text_content() == "L1H3"
    assert page.get_attribute("svg.csv-heatmap", "data-head") == "2"

    # another prompt: its own tokens and a 4 x 4 pattern
    page.select_option("select.csv-prompt", "1")
    assert page.locator(".csv-token").all_text_contents() == tokens[1]
    assert page.locator("svg.csv-heatmap rect.csv-cell").count() == 16
    page.screenshot(path=tmp_path / "attention_prompt2.png", full_page=True)
    assert errors == []


def test_circuitsvis_backend_renders_offline(open_page, tmp_path):
    pytest.importorskip("circuitsvis")
    pats = torch.rand(1, 2, 5, 5).tril()
    pats = pats / pats.sum(-1, keepdim=True)
    view = plot.attention_view(pats, [["<bos>", "A", " B", " A", " B"]], head_names=["L0H0", "L1H1"], backend="circuitsvis")
    page, errors = open_page(view.save(tmp_path / "circuitsvis.html"))
    page.wait_for_selector("canvas")
    assert page.get_by_text("L0H0 Zoomed").count() == 1
    page.get_by_text("L1H1", exact=True).first.hover()
    page.wait_for_selector("text=L1H1 Zoomed")
    page.screenshot(path=tmp_path / "circuitsvis.png", full_page=True)
    assert errors == []
