"""Shape-annotated tensor types for the analysis functions, in jaxtyping's notation.

``Float[Tensor, "prompt layer head"]`` reads as "a float tensor with axes prompt, layer, head".
When jaxtyping is installed these are its own types (so its runtime checkers work); otherwise
they are ``typing.Annotated[Tensor, "prompt layer head"]``, which documents the shape and costs
nothing. circuitscope does not depend on jaxtyping.
"""

from __future__ import annotations

from typing import Annotated

from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor"]

try:  # pragma: no cover - depends on the environment
    from jaxtyping import Bool, Float, Int
except ImportError:  # pragma: no cover

    class _Dims:
        """``_Dims[Tensor, "a b"]`` -> ``Annotated[Tensor, "a b"]``."""

        def __init__(self, kind: str) -> None:
            self.kind = kind

        def __getitem__(self, item):
            array, dims = item
            return Annotated[array, f"{self.kind}: {dims}"]

        def __repr__(self) -> str:
            return self.kind

    Float = _Dims("float")
    Int = _Dims("int")
    Bool = _Dims("bool")
