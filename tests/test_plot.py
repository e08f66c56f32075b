"""Figures: heatmap / line / scatter / bar / auto give the right plot, HTML that loads nothing
from the network, and real (non-blank) PNG and SVG files drawn without a browser."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

pytest.importorskip("plotly")
pytest.importorskip("matplotlib")

from circuitscope import plot  # noqa: E402
from circuitscope.results import Result  # noqa: E402

LAYERS = [f"L{i}" for i in range(3)]
HEADS = [f"H{i}" for i in range(4)]
TOKENS = ["<bos>", "When", " Mary", " and", " John"]


def signed_map() -> torch.Tensor:
    """[layer, head]: strongly positive and strongly negative cells, so both colour ends appear."""
    v = torch.linspace(-2.0, 1.0, 12).reshape(3, 4)
    v[2, 3] = 3.0
    return v


class _Sources(HTMLParser):
    """Collects every src / href of the markup and the text of <style> blocks."""

    def __init__(self):
        super().__init__()
        self.refs, self.styles, self._in_style = [], [], False

    def handle_starttag(self, tag, attrs):
        self.refs += [(tag, v) for k, v in attrs if k in ("src", "href") and v]
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def external_sources(html: str) -> list:
    """Script / stylesheet / image sources that would be fetched over the network."""
    parser = _Sources()
    parser.feed(html)
    remote = [ref for ref in parser.refs if re.match(r"\s*(https?:)?//", ref[1], re.I)]
    return remote + [s for s in parser.styles if re.search(r"@import|url\(\s*['\"]?(https?:)?//", s, re.I)]


def assert_self_contained(html: str) -> None:
    assert external_sources(html) == []
    assert "plotly.js v" in html and len(html) > 1_000_000  # the library itself, inlined


def test_source_check_catches_a_cdn_link():
    assert external_sources('<script src="https://cdn.plot.ly/plotly-2.js"></script>')
    assert external_sources('<link rel="stylesheet" href="//fonts.example/a.css">')
    assert external_sources("<style>@import url(http://x/y.css);</style>")
    assert external_sources("<script>var u = 'https://example.org';</script>") == []


def png_pixels(path) -> np.ndarray:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2_000
    return imread(path)[..., :3]  # [height, width, rgb] in 0..1


def test_heatmap_png_svg_html(tmp_path):
    fig = plot.heatmap(signed_map(), LAYERS, HEADS, title="DLA per head", x_title="head", y_title="layer")
    pixels = png_pixels(fig.save(tmp_path / "h.png"))
    red = (pixels[..., 0] > 0.5) & (pixels[..., 2] < 0.35)
    blue = (pixels[..., 2] > 0.5) & (pixels[..., 0] < 0.25)
    assert red.sum() > 500 and blue.sum() > 500  # a diverging map with both signs drawn
    svg = fig.save(tmp_path / "h.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<image" in svg
    html = fig.save(tmp_path / "h.html").read_text()
    assert_self_contained(html)
    assert "DLA per head" in html and "L2H3" in html
    with pytest.raises(ValueError, match="suffix|cannot save"):
        fig.save(tmp_path / "h.jpg")


def test_heatmap_diverging_scale_centred_at_zero_and_hover_names():
    fig = plot.heatmap(signed_map(), LAYERS, HEADS).to_plotly()
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmid, axis.cmax) == (-3.0, 0.0, 3.0)  # symmetric: white is zero
    trace = fig.data[0]
    assert trace.customdata[2][3][0] == "L2H3" and "customdata[0]" in trace.hovertemplate
    assert list(fig.layout.yaxis.range) == [2.5, -0.5]  # layer 0 on top
    sequential = plot.heatmap(torch.rand(3, 3), zmid=None).to_plotly().layout.coloraxis
    assert sequential.cmid is None and sequential.cmin == 0.0


def test_heatmap_token_labels_and_facets():
    labels = plot.token_labels(TOKENS)
    assert labels[2] == '" Mary"_2' and labels[4] == '" John"_4'
    values = torch.randn(3, 2, 5)  # [facet, layer, pos]
    fig = plot.heatmap(values, ["L0", "L1"], labels, facet_labels=["resid", "attn", "mlp"]).to_plotly()
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3
    assert [a.text for a in fig.layout.annotations] == ["resid", "attn", "mlp"]
    assert heatmaps[1].customdata[1][2][0] == 'attn: L1 / " Mary"_2'
    np.testing.assert_allclose(np.asarray(heatmaps[2].z), values[2].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="facet labels"):
        plot.heatmap(values, facet_labels=["only one"])


def test_heatmap_interval_in_hover_and_marks_uncertain_cells():
    v = signed_map()
    low, high = v - 0.6, v + 0.6  # cells with |v| < 0.6 have an interval that contains 0
    fig = plot.heatmap(v, LAYERS, HEADS, ci=(low, high)).to_plotly()
    assert "95% interval" in fig.data[0].customdata[0][0][1]
    dots = [t for t in fig.data if t.type == "scatter"]
    assert len(dots) == 1 and len(dots[0].x) == int((v.abs() <= 0.6).sum())
    with pytest.raises(ValueError, match="interval"):
        plot.heatmap(v, ci=(low[:2], high))


def test_nan_cells_do_not_break_either_renderer(tmp_path):
    v = signed_map()
    v[0, 0] = float("nan")  # e.g. a normalised metric whose clean and corrupted baselines agree
    fig = plot.heatmap(v, LAYERS, HEADS)
    assert fig.zrange == (-3.0, 3.0)
    assert png_pixels(fig.save(tmp_path / "nan.png")).std() > 0.05
    assert "L0H0" in fig.to_html()


def test_line_series_names_and_band(tmp_path):
    y = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.5, 0.4, 0.3, 0.2]])  # [series, layer]
    fig = plot.line(y, x_labels=["embed", "L0", "L1", "L2"], names=["IO", "S"], ci=(y - 0.1, y + 0.1))
    traces = fig.to_plotly().data
    lines = [t for t in traces if t.mode == "lines+markers"]
    bands = [t for t in traces if t.fill == "toself"]
    assert [t.name for t in lines] == ["IO", "S"] and len(bands) == 2
    np.testing.assert_allclose(bands[0].y, [0.1, 1.1, 2.1, 3.1, 2.9, 1.9, 0.9, -0.1], atol=1e-6)
    assert lines[0].customdata[1][0] == "L0"
    assert png_pixels(fig.save(tmp_path / "line.png")).std() > 0.05
    assert plot.line(torch.arange(5.0)).y.shape == (1, 5)


def test_scatter_layer_head_map_coloured_by_layer(tmp_path):
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    fig = plot.scatter(x, y, x_title="attention to IO", y_title="DLA", diagonal=True)
    assert fig.names[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"]
    assert list(fig.color) == [0] * 4 + [1] * 4 + [2] * 4
    points = fig.to_plotly().data[0]
    assert list(points.text)[6] == "L1H2" and points.marker.colorbar.title.text == "layer"
    assert "<b>%{text}</b>" in points.hovertemplate
    assert png_pixels(fig.save(tmp_path / "s.png")).std() > 0.05
    with pytest.raises(ValueError, match="shape"):
        plot.scatter(torch.randn(3), torch.randn(4))


def test_bar_top_k_with_error_bars(tmp_path):
    v = signed_map()
    fig = plot.bar(v, k=3, ci=(v - 0.5, v + 0.25), title="top heads")
    assert fig.labels == ["L2H3", "L0H0", "L0H1"]  # |3.0|, |-2.0|, |-1.73|
    bars = fig.to_plotly().data[0]
    np.testing.assert_allclose(bars.error_y.array, [0.25] * 3)
    np.testing.assert_allclose(bars.error_y.arrayminus, [0.5] * 3)
    assert bars.marker.color == ("#2166ac", "#b2182b", "#b2182b")
    assert plot.bar(torch.tensor([1.0, -5.0]), ["a", "b"], k=1, by_abs=False).labels == ["a"]
    assert "<svg" in fig.save(tmp_path / "b.svg").read_text()


def test_auto_picks_the_figure_by_shape():
    line_fig = plot.auto(Result(torch.randn(4), ("layer",)))
    assert isinstance(line_fig, plot.Line) and line_fig.x_labels == ["L0", "L1", "L2", "L3"]
    grid = Result(signed_map(), ("layer", "head"), title="per head")
    hm = grid.plot()
    assert isinstance(hm, plot.Heatmap) and hm.values.shape == (1, 3, 4)
    assert hm.hover[0][2][3] == "L2H3" and (hm.x_title, hm.y_title) == ("head", "layer")
    faceted = Result(torch.randn(2, 3, 3, 4), ("component", "pos", "layer", "head")).plot()
    assert faceted.values.shape == (6, 3, 4)
    assert faceted.facet_labels[4] == "component 1/pos 1"
    assert isinstance(grid.plot(kind="bar", k=2), plot.Bar) and grid.plot(kind="bar", k=2).labels == ["L2H3", "L0H0"]
    assert isinstance(grid.plot(kind="line"), plot.Line) and grid.plot(kind="line").names == LAYERS
    with pytest.raises(ValueError, match="kind"):
        grid.plot(kind="pie")


def test_auto_draws_intervals_and_meta_defaults():
    v = signed_map()
    res = Result(v, ("layer", "head"), ci=(v - 1, v + 1), meta={"plot": {"zmid": None}})
    fig = res.plot()
    assert fig.zmid is None and fig.ci is not None
    np.testing.assert_allclose(fig.ci[1][0], (v + 1).numpy(), rtol=1e-6)
    assert plot.auto(res, zmid=0.0).zmid == 0.0  # explicit keywords beat meta defaults
    lined = plot.auto(Result(torch.zeros(3), ("layer",), ci=(torch.zeros(3) - 1, torch.ones(3))))
    assert lined.ci is not None and lined.ci[0].shape == (1, 3)


def test_missing_plotly_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(ImportError, match=re.escape('pip install "circuitscope[plot]"')):
        plot.heatmap(signed_map()).to_html()


def test_core_import_stays_light():
    code = ("import sys, circuitscope, circuitscope.plot, circuitscope.results; "
            "print(sorted(m for m in ('plotly', 'matplotlib', 'playwright', 'circuitsvis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_show_outside_a_notebook_opens_a_self_contained_file(monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url))
    plot.bar(torch.tensor([1.0, 2.0]), ["a", "b"]).show()
    assert len(opened) == 1 and opened[0].startswith("file://")
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    path = Path(unquote(urlparse(opened[0]).path))
    assert_self_contained(path.read_text())
    assert str(path) in capsys.readouterr().out
    path.unlink()
