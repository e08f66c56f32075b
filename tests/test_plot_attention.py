"""Attention views: self-contained HTML holding the tokens, heads and patterns; built from raw
pattern tensors or from a model's cache; optional circuitsvis backend inlined, never linked."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from circuitscope import plot  # noqa: E402
from test_plot import external_sources, png_pixels  # noqa: E402

TOKENS = [["<bos>", "When", " Mary", " and", " John", " went"], ["<bos>", "Then", " Tom", "</script><b>"]]


def causal_patterns(batch: int = 2, heads: int = 3, n: int = 6, seed: int = 0) -> torch.Tensor:
    """[batch, head, q, k] random causal attention (rows sum to 1, nothing above the diagonal)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, heads, n, n, generator=g)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


def embedded_data(html: str) -> dict:
    """The JSON the page's script reads."""
    match = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def test_view_html_holds_tokens_heads_and_patterns(tmp_path):
    pats = causal_patterns()
    view = plot.attention_view(pats, TOKENS, head_names=["L0H1", "L1H0", "L1H3"], title="IOI heads")
    html = view.save(tmp_path / "attn.html").read_text()
    assert external_sources(html) == [] and "<script src" not in html
    data = embedded_data(html)
    assert data["heads"] == ["L0H1", "L1H0", "L1H3"]
    assert [p["tokens"] for p in data["prompts"]] == TOKENS
    assert data["prompts"][0]["name"].startswith("0: <bos>When Mary")
    np.testing.assert_allclose(data["prompts"][0]["pattern"], pats[0].numpy(), atol=6e-5)
    # prompt 1 has 4 tokens: its pattern is cropped to [head, 4, 4]
    assert np.asarray(data["prompts"][1]["pattern"]).shape == (3, 4, 4)
    # a token that looks like markup never closes the script or becomes a tag
    assert html.count("</script>") == 2 and "<b>" not in html
    assert "csv-heatmap" in html and "addEventListener" in html  # the view's own inlined script


def test_view_accepts_one_prompt_and_checks_its_inputs():
    one = plot.attention_view(causal_patterns(1)[0], TOKENS[0])  # [head, q, k], one token list
    assert one.head_names == ["head 0", "head 1", "head 2"] and len(one.tokens) == 1
    with pytest.raises(ValueError, match="head names"):
        plot.attention_view(causal_patterns(), TOKENS, head_names=["L0H0"])
    with pytest.raises(ValueError, match="token lists"):
        plot.attention_view(causal_patterns(), TOKENS[:1])
    with pytest.raises(ValueError, match="only"):
        plot.attention_view(causal_patterns(n=3), TOKENS)
    with pytest.raises(ValueError, match="backend"):
        plot.attention_view(causal_patterns(), TOKENS, backend="cdn")


def test_view_static_png_shows_every_head(tmp_path):
    view = plot.attention_view(causal_patterns(), TOKENS, head_names=["L0H1", "L1H0", "L1H3"])
    fig = view.heatmap(0)
    assert fig.facet_labels == ["L0H1", "L1H0", "L1H3"] and fig.zmid is None
    assert fig.row_labels[2] == '" Mary"_2'
    assert png_pixels(view.save(tmp_path / "attn.png")).std() > 0.05


def test_from_cache_with_a_real_model():
    from circuitscope import HookedTransformer

    model = HookedTransformer.from_pretrained("circuitscope/attn-only-2l")
    prompts = ["When Mary and John went to the store, John gave a drink to", "Then Tom and Anna"]
    toks = model.to_tokens(prompts)
    _, cache = model.run_with_cache(toks)
    str_toks = [model.to_str_tokens(t) for t in toks]
    view = plot.attention_from_cache(cache, [(0, 1), "L1H2"], str_toks, prompts=[1])
    assert view.head_names == ["L0H1", "L1H2"] and view.tokens == [str_toks[1]]
    np.testing.assert_allclose(view.patterns[0][0], cache["pattern", 0][1, 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(view.patterns[0][1], cache["pattern", 1][1, 2].numpy(), atol=1e-6)
    # a plain dict of hook names works too
    raw = {"blocks.0.attn.hook_pattern": cache["pattern", 0]}
    assert plot.attention_from_cache(raw, [(0, 3)], str_toks[0]).patterns[0].shape == (1, len(str_toks[0]), len(str_toks[0]))


def test_circuitsvis_backend_inlines_its_bundle():
    pytest.importorskip("circuitsvis")
    html = plot.attention_view(causal_patterns(), TOKENS, head_names=["a", "b", "c"], backend="circuitsvis").to_html()
    assert external_sources(html) == []
    assert "unpkg.com" not in html and "sourceMappingURL" not in html
    assert "var CircuitsVis=" in html and "CircuitsVis.AttentionHeads" in html
    assert embedded_data(html)["prompts"][1]["tokens"] == TOKENS[1]


def test_nan_in_a_pattern_becomes_null_in_the_page():
    import torch

    from circuitscope.plot import attention_view

    p = torch.rand(1, 1, 3, 3).tril()
    p[0, 0, 1, 0] = float("nan")
    html = attention_view(p, [["a", "b", "c"]]).to_html()
    assert "NaN" not in html and "null" in html
