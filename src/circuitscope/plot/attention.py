"""Interactive attention patterns as one self-contained HTML file (no CDN, works offline).

The view shows chosen heads on chosen prompts:

* a **prompt** menu and a **head** picker (thumbnails: hover to preview a head, click to select);
* the prompt's **tokens**: hover one to colour every token by how much it attends there (or, after
  the mode button, by how much each token attends *to* it); click to lock the selection;
* the **full pattern** as a heatmap, rows = destination (query), columns = source (key).

Its JavaScript is a small file shipped with circuitscope (``attention_view.js``) and inlined into
the page. ``backend="circuitsvis"`` uses the circuitsvis package's own bundled JavaScript instead
(also inlined; see :mod:`.circuitsvis_view`).

From a cache, notebook style::

    logits, cache = model.run_with_cache(toks)
    str_toks = [model.to_str_tokens(t) for t in toks]
    view = attention_from_cache(cache, [(9, 6), (9, 9), (10, 0)], str_toks, prompts=range(4))
    view                      # displays in a notebook
    view.save("heads.html")   # or .png: every selected head on the first prompt, via matplotlib
"""

from __future__ import annotations

import html
import json
import math
import uuid
from importlib import resources
from typing import Any, Optional, Sequence, Union

import numpy as np

from circuitscope.plot.figure import Figure
from circuitscope.plot.heatmap import Heatmap, heatmap
from circuitscope.plot.labels import to_array, token_labels

__all__ = ["AttentionView", "attention_view", "attention_from_cache"]

HeadSpec = Union[tuple[int, int], str]

_CSS = """
.csv-attn{font-family:system-ui,sans-serif;font-size:13px;color:#222}
.csv-attn .csv-title{font-weight:600;font-size:15px;margin-bottom:6px}
.csv-attn .csv-controls{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:6px}
.csv-attn .csv-head{display:inline-flex;flex-direction:column;align-items:center;border:2px solid #ddd;
  background:#fff;border-radius:4px;padding:2px;cursor:pointer;font:inherit}
.csv-attn .csv-head.csv-selected{border-color:#f4a30b}
.csv-attn .csv-head canvas{width:48px;height:48px;image-rendering:pixelated}
.csv-attn .csv-tokens{line-height:1.9;margin:8px 0}
.csv-attn .csv-token{white-space:pre;border:1px solid #eee;border-radius:3px;padding:1px 2px;margin:0 1px;cursor:pointer}
.csv-attn .csv-token.csv-active{outline:2px solid #f4a30b}
.csv-attn .csv-info{min-height:1.4em;color:#444;margin-bottom:4px}
.csv-attn .csv-heatmap text{font-family:ui-monospace,monospace;fill:#333}
"""


def _finite(x: Any) -> Any:
    """``x`` with NaN / inf floats as None (JSON has no NaN; ``JSON.parse`` would reject the page)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script>``: ``<`` is escaped so no token can close the tag; NaN -> null."""
    return json.dumps(_finite(data), separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


class AttentionView(Figure):
    """Attention patterns of named heads on tokenised prompts; build with :func:`attention_view`.

    ``patterns[b]`` is ``[head, q_b, q_b]`` for prompt b (prompts may differ in length);
    ``tokens[b]`` its token strings; ``head_names`` / ``prompt_names`` label the pickers."""

    def __init__(self, patterns, tokens, head_names, prompt_names, title: str = "", backend: str = "circuitscope"):
        self.patterns, self.tokens = patterns, tokens
        self.head_names, self.prompt_names = head_names, prompt_names
        self.title, self.backend = title, backend

    def data(self, decimals: int = 4) -> dict[str, Any]:
        """What the page embeds: ``{title, heads, prompts: [{name, tokens, pattern}]}``."""
        return {
            "title": self.title, "heads": self.head_names,
            "prompts": [{"name": name, "tokens": toks, "pattern": np.round(pat, decimals).tolist()}
                        for name, toks, pat in zip(self.prompt_names, self.tokens, self.patterns)],
        }

    def heatmap(self, prompt: int = 0) -> Heatmap:
        """Every selected head on one prompt as a faceted heatmap (sequential colour scale)."""
        labels = token_labels(self.tokens[prompt])
        return heatmap(self.patterns[prompt], labels, labels, facet_labels=self.head_names, zmid=None,
                       title=self.title or f"attention on {self.prompt_names[prompt]}",
                       x_title="source (key)", y_title="destination (query)", facet_cols=4)

    def to_plotly(self) -> Any:
        return self.heatmap(0).to_plotly()

    def to_matplotlib(self) -> Any:
        """Static picture: :meth:`heatmap` of the first prompt (PNG / SVG via :meth:`save`)."""
        return self.heatmap(0).to_matplotlib()

    def to_html(self, full_html: bool = True) -> str:
        """The interactive view; its script is inlined and loads nothing from anywhere."""
        if self.backend == "circuitsvis":
            from circuitscope.plot.circuitsvis_view import circuitsvis_html

            body = circuitsvis_html(self)
        else:
            root = f"csv-{uuid.uuid4().hex[:12]}"
            js = resources.files("circuitscope.plot").joinpath("attention_view.js").read_text(encoding="utf-8")
            title = f'<div class="csv-title">{html.escape(self.title)}</div>' if self.title else ""
            body = (
                f'<div class="csv-attn" id="{root}"><style>{_CSS}</style>{title}'
                '<div class="csv-controls"><label>prompt <select class="csv-prompt"></select></label>'
                '<button type="button" class="csv-mode">hover shows: where a token attends</button></div>'
                '<div class="csv-heads"></div><div class="csv-tokens"></div><div class="csv-info"></div>'
                '<svg class="csv-heatmap" xmlns="http://www.w3.org/2000/svg"></svg></div>'
                f'<script type="application/json" id="{root}-data">{_script_json(self.data())}</script>'
                f'<script>{js.strip()}(document.getElementById("{root}"), '
                f'JSON.parse(document.getElementById("{root}-data").textContent));</script>'
            )
        if not full_html:
            return body
        return ('<!doctype html><html><head><meta charset="utf-8"><title>attention</title></head>'
                f"<body>{body}</body></html>")

    def __repr__(self) -> str:
        return f"AttentionView({len(self.head_names)} heads x {len(self.tokens)} prompts)"


def _per_prompt(patterns, tokens) -> tuple[list[np.ndarray], list[list[str]]]:
    """Normalise inputs to a list of ``[head, n_b, n_b]`` arrays and a list of token lists."""
    if tokens and isinstance(tokens[0], str):
        tokens = [list(tokens)]
    tokens = [[str(t) for t in toks] for toks in tokens]
    if isinstance(patterns, (list, tuple)) and patterns and not np.isscalar(patterns[0]) and to_array(patterns[0]).ndim == 3:
        pats = [to_array(p) for p in patterns]  # already one [head, q, k] per prompt
    else:
        arr = to_array(patterns, ndim=(3, 4), what="patterns")
        pats = list(arr[None] if arr.ndim == 3 else arr)  # [batch, head, q, k]
    if len(pats) != len(tokens):
        raise ValueError(f"{len(pats)} prompts of patterns but {len(tokens)} token lists")
    out = []
    for b, (pat, toks) in enumerate(zip(pats, tokens)):
        n = len(toks)
        if pat.shape[-1] < n or pat.shape[-2] < n:
            raise ValueError(f"prompt {b} has {n} tokens but its pattern is only {pat.shape[-2:]}")
        out.append(pat[:, :n, :n])  # drop right padding beyond the prompt's tokens
    return out, tokens


def attention_view(patterns, str_tokens, head_names: Optional[Sequence[str]] = None,
                   prompt_names: Optional[Sequence[str]] = None, title: str = "",
                   backend: str = "circuitscope") -> AttentionView:
    """An interactive view of attention ``patterns`` over ``str_tokens``.

    ``patterns``: ``[batch, head, q, k]`` (or ``[head, q, k]`` for one prompt, or a list of
    ``[head, q_b, k_b]`` arrays for prompts of different lengths), probabilities. ``str_tokens``:
    one list of token strings per prompt (or one list for one prompt); a pattern is cropped to its
    prompt's length. ``head_names``: e.g. ``["L9H6", "L9H9"]``. ``backend``: ``"circuitscope"``
    (our small view) or ``"circuitsvis"`` (needs ``pip install circuitsvis``)."""
    if backend not in ("circuitscope", "circuitsvis"):
        raise ValueError(f"backend must be 'circuitscope' or 'circuitsvis', got {backend!r}")
    pats, toks = _per_prompt(patterns, str_tokens)
    n_heads = pats[0].shape[0]
    heads = [f"head {i}" for i in range(n_heads)] if head_names is None else [str(h) for h in head_names]
    if len(heads) != n_heads:
        raise ValueError(f"{len(heads)} head names for {n_heads} heads")
    if prompt_names is None:
        prompt_names = [f"{b}: {''.join(t).strip()[:60]}" for b, t in enumerate(toks)]
    if len(prompt_names) != len(toks):
        raise ValueError(f"{len(prompt_names)} prompt names for {len(toks)} prompts")
    return AttentionView(pats, toks, heads, [str(p) for p in prompt_names], title, backend)


def _head(spec: HeadSpec) -> tuple[int, int]:
    if isinstance(spec, str):  # "L9H6"
        layer, head = spec.upper().lstrip("L").split("H")
        return int(layer), int(head)
    return int(spec[0]), int(spec[1])


def attention_from_cache(cache, heads: Sequence[HeadSpec], str_tokens, prompts: Optional[Sequence[int]] = None,
                         title: str = "", backend: str = "circuitscope") -> AttentionView:
    """:func:`attention_view` for ``heads`` (``(layer, head)`` pairs or ``"L9H6"``) from a cache.

    ``cache``: anything with ``cache["pattern", layer]`` -> ``[batch, head, q, k]`` (an
    :class:`~circuitscope.cache.ActivationCache`, or a dict keyed ``blocks.{layer}.attn.hook_pattern``).
    ``str_tokens[b]``: the token strings of cached prompt b (a single list means prompt 0).
    ``prompts``: which cached prompts to show (default: every one with token strings)."""
    if str_tokens and isinstance(str_tokens[0], str):
        str_tokens = [str_tokens]
    prompts = list(range(len(str_tokens)) if prompts is None else prompts)
    pairs = [_head(h) for h in heads]

    def pattern(layer: int):
        try:
            return cache["pattern", layer]
        except (KeyError, TypeError):
            return cache[f"blocks.{layer}.attn.hook_pattern"]

    per_layer = {layer: to_array(pattern(layer)) for layer in sorted({l for l, _ in pairs})}  # [batch, head, q, k]
    stacked = [np.stack([per_layer[l][b, h] for l, h in pairs]) for b in prompts]  # each [n_sel, q, k]
    return attention_view(stacked, [str_tokens[b] for b in prompts], [f"L{l}H{h}" for l, h in pairs],
                          title=title, backend=backend)
