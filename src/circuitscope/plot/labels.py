"""Turning tensors and labels into what a figure needs: float arrays, hover names, intervals.

Figures accept torch tensors, numpy arrays or nested lists; everything is converted once, here,
to a float64 numpy array on the CPU. Names follow the rest of circuitscope: a (layer, head) cell
reads ``L9H6``, a position reads ``'" Mary"_4'`` (the token in double quotes, then its index).
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import numpy as np

__all__ = [
    "to_array", "token_labels", "head_labels", "cell_names", "as_interval", "default_labels", "fmt", "symmetric_range",
]

_LAYER = re.compile(r"^L\d+$")
_HEAD = re.compile(r"^H\d+$")


def to_array(values: Any, ndim: Optional[tuple[int, ...]] = None, what: str = "values") -> np.ndarray:
    """A float64 numpy copy of a tensor / array / list; ``ndim`` lists the dimensions allowed."""
    if hasattr(values, "detach"):  # torch.Tensor, possibly on a GPU or requiring grad
        values = values.detach().float().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if ndim is not None and arr.ndim not in ndim:
        allowed = " or ".join(f"{d}-d" for d in ndim)
        raise ValueError(f"{what} must be {allowed}, got shape {arr.shape}")
    return arr


def token_labels(str_tokens: Sequence[str]) -> list[str]:
    """Position labels for axes and hovers: ``["<bos>", " Mary"]`` -> ``['"<bos>"_0', '" Mary"_1']``.

    The index keeps labels unique when a token repeats (" John" as subject and as S2)."""
    return [f'"{s}"_{i}' for i, s in enumerate(str_tokens)]


def head_labels(n_layers: int, n_heads: int) -> list[str]:
    """``["L0H0", "L0H1", ..., "L{n_layers-1}H{n_heads-1}"]``: a flattened [layer, head] grid."""
    return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]


def cell_names(row_labels: Sequence[str], col_labels: Sequence[str]) -> list[list[str]]:
    """A name for every cell of a grid, for hover text.

    Layer rows and head columns (``L9`` and ``H6``) join into ``L9H6``; anything else reads
    ``row / col`` (e.g. ``L3 / " Mary"_4`` on a layer x position grid)."""
    joined = all(_LAYER.match(r) for r in row_labels) and all(_HEAD.match(c) for c in col_labels)
    sep = "" if joined else " / "
    return [[f"{r}{sep}{c}" for c in col_labels] for r in row_labels]


def as_interval(ci: Any, shape: tuple[int, ...]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Validate a confidence interval ``(low, high)`` (each shaped like the values) or ``None``.

    A stacked ``[2, *shape]`` array is accepted too, as bootstrap code often returns one."""
    if ci is None:
        return None
    if not isinstance(ci, (tuple, list)):
        ci = to_array(ci)
    if len(ci) != 2:
        raise ValueError("an interval is a pair (low, high)")
    low, high = to_array(ci[0], what="interval low"), to_array(ci[1], what="interval high")
    if low.shape != tuple(shape) or high.shape != tuple(shape):
        raise ValueError(f"interval bounds have shapes {low.shape} and {high.shape}; the values have {tuple(shape)}")
    return low, high


def default_labels(n: int, given: Optional[Sequence[Any]], what: str) -> list[str]:
    """``given`` as strings (checked to have ``n`` entries), or ``"0".."n-1"`` when ``None``."""
    if given is None:
        return [str(i) for i in range(n)]
    labels = [str(x) for x in given]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} {what} for {n} entries")
    return labels


def fmt(value: float) -> str:
    """A compact number for hovers and tables: 4 significant digits, signed."""
    return f"{value:+.4g}"


def symmetric_range(values: np.ndarray, mid: float, half_width: Optional[float] = None) -> tuple[float, float]:
    """Colour limits centred on ``mid`` that cover every finite value (or ``mid +- half_width``).

    Centring keeps 0 white on a diverging scale, so a cell's sign is readable at a glance."""
    if half_width is None:
        finite = values[np.isfinite(values)]
        half_width = float(np.max(np.abs(finite - mid))) if finite.size else 1.0
    half_width = half_width or 1.0  # an all-zero map still gets a valid colour range
    return mid - half_width, mid + half_width
