"""A low-rank matrix kept as two factors: ``FactoredMatrix(A, B)`` stands for ``A @ B``.

Circuits such as a head's QK circuit ``W_Q @ W_K.T`` are ``d_model x d_model`` but have rank at
most ``d_head``. Keeping the factors makes products, SVDs, eigenvalues and norms cheap (they only
ever touch ``d_head``-sized matrices) and lets a whole ``[layer, head]`` grid be handled at once:
``model.OV = FactoredMatrix(W_V, W_O)`` has shape ``[n_layers, n_heads, d_model, d_model]``.

SVD convention (same as TransformerLens): ``svd()`` returns ``(U, S, V)`` with ``V`` *not*
transposed, so ``U @ torch.diag_embed(S) @ V.mT == AB``. The ``Vh`` property returns that same
``V`` for compatibility with TransformerLens code; prefer the clearer alias ``V``.
"""

from __future__ import annotations

import operator
from numbers import Number
from typing import Any

import torch

__all__ = ["FactoredMatrix"]


class FactoredMatrix:
    """The matrix ``A @ B`` for ``A [..., ldim, mdim]`` and ``B [..., mdim, rdim]``, never formed.

    Leading (batch) dimensions broadcast against each other, as in ``torch.matmul``.
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        if A.ndim < 2 or B.ndim < 2:
            raise ValueError(
                f"FactoredMatrix needs two matrices (ndim >= 2); got A {tuple(A.shape)}, B {tuple(B.shape)}"
            )
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(
                f"FactoredMatrix inner dimensions differ: A is {tuple(A.shape)} and B is "
                f"{tuple(B.shape)}, but A's last dim must equal B's second-to-last"
            )
        try:
            lead = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"FactoredMatrix leading dims do not broadcast: A {tuple(A.shape)}, B {tuple(B.shape)}"
            ) from None
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        self.A = A.broadcast_to(lead + (self.ldim, self.mdim))  # [..., ldim, mdim]
        self.B = B.broadcast_to(lead + (self.mdim, self.rdim))  # [..., mdim, rdim]
        self.shape = torch.Size(lead + (self.ldim, self.rdim))
        self._svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ---- basic views -------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.A.dtype

    @property
    def device(self) -> torch.device:
        return self.A.device

    @property
    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The factors ``(A, B)``."""
        return self.A, self.B

    @property
    def AB(self) -> torch.Tensor:
        """The full matrix ``A @ B``: ``[..., ldim, rdim]`` (this is the expensive one)."""
        return self.A @ self.B

    @property
    def BA(self) -> torch.Tensor:
        """``B @ A``: ``[..., mdim, mdim]``; only defined when ``AB`` is square."""
        if self.ldim != self.rdim:
            raise ValueError(
                f"BA needs a square AB (ldim == rdim), but this FactoredMatrix is {self.ldim} x {self.rdim}"
            )
        return self.B @ self.A

    @property
    def T(self) -> "FactoredMatrix":
        """The transpose ``(AB).T = B.T @ A.T``, still factored."""
        return FactoredMatrix(self.B.mT, self.A.mT)

    # ---- spectral quantities -----------------------------------------------------------------
    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Thin SVD ``(U [..., ldim, k], S [..., k], V [..., rdim, k])`` with ``U diag(S) V.T = AB``.

        ``k = min(ldim, mdim, rdim)``. Computed from the SVDs of the factors and of a small
        ``k x k`` middle matrix, so ``AB`` is never formed. Cached after the first call.
        """
        if self._svd is None:
            Ua, Sa, Vha = torch.linalg.svd(
                self.A, full_matrices=False
            )  # [..,l,k1] [..,k1] [..,k1,m]
            Ub, Sb, Vhb = torch.linalg.svd(
                self.B, full_matrices=False
            )  # [..,m,k2] [..,k2] [..,k2,r]
            middle = Sa[..., :, None] * (Vha @ Ub) * Sb[..., None, :]  # [..., k1, k2]
            Um, Sm, Vhm = torch.linalg.svd(
                middle, full_matrices=False
            )  # [..,k1,k] [..,k] [..,k,k2]
            U = Ua @ Um  # [..., ldim, k]
            V = Vhb.mT @ Vhm.mT  # [..., rdim, k]
            self._svd = (U, Sm, V)
        return self._svd

    @property
    def U(self) -> torch.Tensor:
        """Left singular vectors ``[..., ldim, k]``."""
        return self.svd()[0]

    @property
    def S(self) -> torch.Tensor:
        """Singular values ``[..., k]``, largest first."""
        return self.svd()[1]

    @property
    def V(self) -> torch.Tensor:
        """Right singular vectors as columns, ``[..., rdim, k]`` (``AB = U diag(S) V.T``)."""
        return self.svd()[2]

    @property
    def Vh(self) -> torch.Tensor:
        """TransformerLens-compatible name for ``V`` (columns are right singular vectors, NOT V^H)."""
        return self.svd()[2]

    @property
    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues (complex) of square ``AB``, via the smaller of ``AB`` and ``BA``.

        ``AB`` and ``BA`` share their nonzero eigenvalues, so this returns
        ``[..., min(ldim, mdim)]`` values: every nonzero eigenvalue of ``AB``, plus zeros only
        when the smaller matrix itself is singular.
        """
        if self.ldim != self.rdim:
            raise ValueError(
                f"eigenvalues need a square AB (ldim == rdim); this FactoredMatrix is {self.ldim} x {self.rdim}"
            )
        small = self.B @ self.A if self.mdim < self.ldim else self.A @ self.B
        return torch.linalg.eigvals(small)

    def norm(self) -> torch.Tensor:
        """Frobenius norm of ``AB`` (``[...]``), from the singular values."""
        return self.S.pow(2).sum(-1).sqrt()

    # ---- re-factorisations -------------------------------------------------------------------
    def make_even(self) -> "FactoredMatrix":
        """The same matrix as ``U sqrt(S)`` @ ``sqrt(S) V.T``: both factors equally "sized"."""
        root = self.S.sqrt()
        return FactoredMatrix(self.U * root[..., None, :], root[..., :, None] * self.V.mT)

    def collapse_l(self) -> torch.Tensor:
        """Drop the orthogonal left factor: ``diag(S) V.T`` ``[..., k, rdim]``."""
        return self.S[..., :, None] * self.V.mT

    def collapse_r(self) -> torch.Tensor:
        """Drop the orthogonal right factor: ``U diag(S)`` ``[..., ldim, k]``."""
        return self.U * self.S[..., None, :]

    def get_corner(self, k: int = 3) -> torch.Tensor:
        """The top-left ``k x k`` block of ``AB`` (leading dims also cut to ``k``), cheaply."""
        lead = tuple(slice(k) for _ in range(self.ndim - 2))
        return self.A[lead + (slice(k), slice(None))] @ self.B[lead + (slice(None), slice(k))]

    def unsqueeze(self, k: int) -> "FactoredMatrix":
        """Insert a size-1 leading dim at position ``k`` (counted on ``self.shape``)."""
        pos = k + self.ndim + 1 if k < 0 else k
        if not 0 <= pos <= self.ndim - 2:
            raise IndexError(
                f"unsqueeze({k}) would touch the matrix dims of a FactoredMatrix of shape "
                f"{tuple(self.shape)}; only leading dims 0..{self.ndim - 2} can be inserted"
            )
        return FactoredMatrix(self.A.unsqueeze(pos), self.B.unsqueeze(pos))

    def to(self, *args: Any, **kwargs: Any) -> "FactoredMatrix":
        """Move/cast both factors, like ``Tensor.to``."""
        return FactoredMatrix(self.A.to(*args, **kwargs), self.B.to(*args, **kwargs))

    # ---- products ----------------------------------------------------------------------------
    def __matmul__(self, other: Any) -> "FactoredMatrix | torch.Tensor":
        """``AB @ X``: a vector gives a tensor ``[..., ldim]``; a matrix or FactoredMatrix stays factored."""
        if isinstance(other, FactoredMatrix):
            self._check_inner(self.rdim, other.ldim, other.shape)
            if self.mdim <= other.mdim:
                return FactoredMatrix(self.A, (self.B @ other.A) @ other.B)
            return FactoredMatrix(self.A @ (self.B @ other.A), other.B)
        if not isinstance(other, torch.Tensor):
            return NotImplemented
        if other.ndim == 1:
            self._check_inner(self.rdim, other.shape[0], other.shape)
            return (self.A @ (self.B @ other.unsqueeze(-1))).squeeze(-1)  # [..., ldim]
        self._check_inner(self.rdim, other.shape[-2], other.shape)
        if self.rdim > self.mdim:
            return FactoredMatrix(self.A, self.B @ other)
        return FactoredMatrix(self.AB, other)

    def __rmatmul__(self, other: Any) -> "FactoredMatrix | torch.Tensor":
        """``X @ AB``: a vector gives a tensor ``[..., rdim]``; a matrix stays factored."""
        if not isinstance(other, torch.Tensor):
            return NotImplemented
        if other.ndim == 1:
            self._check_inner(other.shape[0], self.ldim, other.shape)
            return ((other.unsqueeze(-2) @ self.A) @ self.B).squeeze(-2)  # [..., rdim]
        self._check_inner(other.shape[-1], self.ldim, other.shape)
        if self.ldim > self.mdim:
            return FactoredMatrix(other @ self.A, self.B)
        return FactoredMatrix(other, self.AB)

    def _check_inner(self, left: int, right: int, other_shape: torch.Size) -> None:
        if left != right:
            raise ValueError(
                f"matmul shapes do not line up: FactoredMatrix {tuple(self.shape)} with operand "
                f"{tuple(other_shape)} (inner dims {left} vs {right})"
            )

    def __mul__(self, scalar: Any) -> "FactoredMatrix":
        """Scale by a number (or 0-d tensor); elementwise products are not factorable."""
        if isinstance(scalar, Number) or (isinstance(scalar, torch.Tensor) and scalar.ndim == 0):
            return FactoredMatrix(self.A * scalar, self.B)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, scalar: Any) -> "FactoredMatrix":
        if isinstance(scalar, Number) or (isinstance(scalar, torch.Tensor) and scalar.ndim == 0):
            return FactoredMatrix(self.A / scalar, self.B)
        return NotImplemented

    # ---- indexing ----------------------------------------------------------------------------
    def __getitem__(self, idx: Any) -> "FactoredMatrix | torch.Tensor":
        """Index leading dims (``OV[layer, head]``), then optionally rows and columns.

        Slices or index lists on the two matrix dims keep it factored; an integer row or column
        gives a plain tensor (that row/column of ``AB``).
        """
        idx = idx if isinstance(idx, tuple) else (idx,)
        if any(i is None or i is Ellipsis for i in idx):
            raise IndexError(
                "FactoredMatrix indexing does not support None or '...'; index dims explicitly"
            )
        n_lead = self.ndim - 2
        if len(idx) > self.ndim:
            raise IndexError(
                f"too many indices ({len(idx)}) for a FactoredMatrix of shape {tuple(self.shape)}"
            )
        lead, rest = idx[:n_lead], idx[n_lead:]
        A, B = self.A[lead], self.B[lead]  # leading dims indexed identically on both factors
        row = rest[0] if len(rest) > 0 else slice(None)
        col = rest[1] if len(rest) > 1 else slice(None)
        row_int, col_int = _is_int(row), _is_int(col)
        A = A[..., int(row), :].unsqueeze(-2) if row_int else A[..., row, :]  # [..., rows, mdim]
        B = B[..., :, int(col)].unsqueeze(-1) if col_int else B[..., :, col]  # [..., mdim, cols]
        if row_int or col_int:
            out = A @ B  # [..., rows, cols] with a size-1 dim for each integer index
            out = out.squeeze(-1) if col_int else out
            return out.squeeze(-1 if col_int else -2) if row_int else out
        return FactoredMatrix(A, B)

    def __repr__(self) -> str:
        return (
            f"FactoredMatrix(shape={tuple(self.shape)}, mdim={self.mdim}, "
            f"dtype={self.dtype}, device={self.device})"
        )


def _is_int(i: Any) -> bool:
    """True for a plain integer index (Python int, numpy int, or 0-d integer tensor)."""
    if isinstance(i, bool):
        return False
    if isinstance(i, torch.Tensor):
        return i.ndim == 0 and not i.dtype.is_floating_point and i.dtype != torch.bool
    try:
        operator.index(i)
        return True
    except TypeError:
        return False
