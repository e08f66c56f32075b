"""The result of a patching sweep: values with axis labels, the metric and its baselines.

Values follow TransformerLens's index order (``[layer, pos]``, ``[layer, head]``,
``[layer, pos, head]``, ...). Position labels read like ``'" Mary"_4'``: the token at that
position of the first prompt and its index, so a heatmap is readable without the prompt at hand.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from circuitscope.results import Result, axis_labels

__all__ = ["PatchResult", "position_labels", "sweep_labels"]


def position_labels(model, tokens: torch.Tensor) -> list[str]:
    """``'" Mary"_4'``-style labels for the positions of ``tokens[0]`` (indices if no tokenizer)."""
    row = tokens[0] if tokens.ndim == 2 else tokens
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return [f"pos_{i}" for i in range(row.shape[0])]
    strings = [tok.decode([int(t)]) for t in row.tolist()]
    return [f'"{s}"_{i}' for i, s in enumerate(strings)]


def sweep_labels(model, tokens: torch.Tensor, axes: Sequence[str]) -> list[list[str]]:
    """Labels for each named axis: layers ``L0..``, heads ``H0..``, positions from the tokens,
    ``dest``/``src`` positions likewise, and the five-way ``component`` axis of the "every" sweeps."""
    out = []
    for a in axes:
        if a in ("pos", "dest_pos", "src_pos"):
            out.append(position_labels(model, tokens))
        elif a == "layer":
            out.append(axis_labels("layer", model.cfg.n_layers))
        elif a == "head":
            out.append(axis_labels("head", model.cfg.n_heads))
        elif a == "component":
            out.append(None)  # filled by the caller
        else:
            raise ValueError(f"no default labels for axis {a!r}")
    return out


class PatchResult(Result):
    """A patching (or attribution-patching) sweep: ``.values`` plus how it was measured.

    ``meta`` holds ``what`` (the patched activation), ``by`` (``"pos"`` or ``"all"``),
    ``direction`` (``"denoise"``: clean activations into the corrupted run; ``"noise"``: the
    reverse), ``method`` (``"exact"``, ``"linear"``, ``"ig"``), the metric's description and the
    clean / corrupted baselines.
    """

    base_per_prompt: Optional[torch.Tensor] = None  # [prompt] the unpatched run's metric (per-prompt sweeps)

    def __init__(self, values, axes, labels=None, title: str = "", meta: Optional[dict[str, Any]] = None, **kw):
        super().__init__(values, axes, labels, title, meta, **kw)

    @property
    def what(self) -> str:
        return self.meta.get("what", "")

    @property
    def baselines(self) -> tuple[Optional[float], Optional[float]]:
        return self.meta.get("clean_baseline"), self.meta.get("corrupted_baseline")
