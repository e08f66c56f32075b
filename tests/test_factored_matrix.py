"""FactoredMatrix against the dense matrix it stands for."""

from __future__ import annotations

import pytest
import torch

from circuitscope.model.factored_matrix import FactoredMatrix


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture
def fm() -> FactoredMatrix:
    """A [layer=2, head=3] grid of rank-4 8x8 matrices, like model.OV for a toy model."""
    return FactoredMatrix(_rand(2, 3, 8, 4, seed=1), _rand(2, 3, 4, 8, seed=2))


def test_shapes_and_ab(fm):
    assert fm.shape == (2, 3, 8, 8)
    assert (fm.ndim, fm.ldim, fm.mdim, fm.rdim) == (4, 8, 4, 8)
    torch.testing.assert_close(fm.AB, fm.A @ fm.B)
    torch.testing.assert_close(fm.BA, fm.B @ fm.A)
    assert fm.pair[0] is fm.A
    torch.testing.assert_close(fm.T.AB, fm.AB.mT)


def test_leading_dims_broadcast():
    shared_b = _rand(4, 6, seed=3)
    fm = FactoredMatrix(_rand(5, 7, 4, seed=4), shared_b)
    assert fm.shape == (5, 7, 6)
    torch.testing.assert_close(fm.AB, fm.A @ shared_b)


def test_constructor_errors():
    with pytest.raises(ValueError, match="inner dimensions"):
        FactoredMatrix(_rand(3, 4), _rand(5, 3))
    with pytest.raises(ValueError, match="ndim >= 2"):
        FactoredMatrix(_rand(3), _rand(3, 3))


def test_ba_requires_square():
    fm = FactoredMatrix(_rand(5, 2), _rand(2, 7))
    with pytest.raises(ValueError, match="square"):
        fm.BA
    with pytest.raises(ValueError, match="square"):
        fm.eigenvalues


@pytest.mark.parametrize("shape", [(8, 4, 8), (6, 5, 9), (9, 3, 5), (4, 7, 6)])
def test_svd_reconstructs_and_matches_dense(shape):
    m, r, n = shape
    fm = FactoredMatrix(_rand(m, r, seed=5), _rand(r, n, seed=6))
    U, S, V = fm.svd()
    k = min(m, r, n)
    assert U.shape == (m, k) and S.shape == (k,) and V.shape == (n, k)
    # TransformerLens convention: V is not transposed.
    torch.testing.assert_close(U @ torch.diag(S) @ V.T, fm.AB)
    torch.testing.assert_close(S, torch.linalg.svdvals(fm.AB)[:k])
    torch.testing.assert_close(U.T @ U, torch.eye(k, dtype=U.dtype))
    torch.testing.assert_close(V.T @ V, torch.eye(k, dtype=V.dtype))
    assert fm.Vh is fm.V is V and fm.U is U and fm.S is S


def test_batched_svd(fm):
    recon = fm.U @ torch.diag_embed(fm.S) @ fm.V.mT
    torch.testing.assert_close(recon, fm.AB)


def test_eigenvalues_match_dense(fm):
    dense = torch.linalg.eigvals(fm.AB)  # [2, 3, 8], 4 of them ~0
    ours = fm.eigenvalues  # [2, 3, 4]: the nonzero ones
    assert ours.shape == (2, 3, 4)
    for i in range(2):
        for j in range(3):
            nonzero = dense[i, j][dense[i, j].abs() > 1e-8]
            want = sorted(nonzero.tolist(), key=lambda z: (round(z.real, 6), round(z.imag, 6)))
            got = sorted(ours[i, j].tolist(), key=lambda z: (round(z.real, 6), round(z.imag, 6)))
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want))


def test_eigenvalues_when_inner_dim_is_larger():
    fm = FactoredMatrix(_rand(3, 6, seed=7), _rand(6, 3, seed=8))
    ours = torch.sort(torch.view_as_real(fm.eigenvalues), dim=0).values
    dense = torch.sort(torch.view_as_real(torch.linalg.eigvals(fm.AB)), dim=0).values
    torch.testing.assert_close(ours, dense)


def test_norm_is_frobenius(fm):
    torch.testing.assert_close(fm.norm(), torch.linalg.matrix_norm(fm.AB))
    assert fm.norm().shape == (2, 3)


def test_matmul_with_tensors(fm):
    x = _rand(8, 5, seed=9)
    out = fm @ x
    assert isinstance(out, FactoredMatrix)
    torch.testing.assert_close(out.AB, fm.AB @ x)
    y = _rand(5, 8, seed=10)
    out = y @ fm
    assert isinstance(out, FactoredMatrix)
    torch.testing.assert_close(out.AB, y @ fm.AB)
    v = _rand(8, seed=11)
    torch.testing.assert_close(fm @ v, fm.AB @ v)
    torch.testing.assert_close(v @ fm, v @ fm.AB)
    with pytest.raises(ValueError, match="line up"):
        fm @ _rand(7, 2)


def test_matmul_with_factored_matrix(fm):
    other = FactoredMatrix(_rand(8, 2, seed=12), _rand(2, 6, seed=13))
    out = fm @ other
    assert isinstance(out, FactoredMatrix) and out.shape == (2, 3, 8, 6)
    torch.testing.assert_close(out.AB, fm.AB @ other.AB)
    assert out.mdim == 2  # kept the cheaper inner dimension
    torch.testing.assert_close((fm.T @ fm).AB, fm.AB.mT @ fm.AB)


def test_scalar_multiplication(fm):
    torch.testing.assert_close((2.5 * fm).AB, 2.5 * fm.AB)
    torch.testing.assert_close((fm / 2).AB, fm.AB / 2)


def test_indexing_leading_dims(fm):
    sub = fm[1]
    assert sub.shape == (3, 8, 8)
    torch.testing.assert_close(sub.AB, fm.AB[1])
    torch.testing.assert_close(fm[1, 2].AB, fm.AB[1, 2])
    torch.testing.assert_close(fm[:, [0, 2]].AB, fm.AB[:, [0, 2]])


def test_indexing_matrix_dims(fm):
    torch.testing.assert_close(fm[0, 1, 2:5].AB, fm.AB[0, 1, 2:5])
    torch.testing.assert_close(fm[0, 1, :, 1:3].AB, fm.AB[0, 1, :, 1:3])
    torch.testing.assert_close(fm[0, 1, 3], fm.AB[0, 1, 3])  # a row is a plain tensor
    torch.testing.assert_close(fm[0, 1, :, -1], fm.AB[0, 1, :, -1])
    torch.testing.assert_close(fm[0, 1, 3, 4], fm.AB[0, 1, 3, 4])
    with pytest.raises(IndexError):
        fm[0, 0, 0, 0, 0]


def test_make_even_preserves_ab_and_balances(fm):
    even = fm.make_even()
    torch.testing.assert_close(even.AB, fm.AB)
    a_norms = torch.linalg.vector_norm(even.A, dim=-2)
    b_norms = torch.linalg.vector_norm(even.B, dim=-1)
    torch.testing.assert_close(a_norms, b_norms)


def test_collapse(fm):
    torch.testing.assert_close(fm.U @ fm.collapse_l(), fm.AB)
    torch.testing.assert_close(fm.collapse_r() @ fm.V.mT, fm.AB)


def test_get_corner_unsqueeze_to_repr(fm):
    torch.testing.assert_close(fm.get_corner(2), fm.AB[:2, :2, :2, :2])
    assert fm.unsqueeze(0).shape == (1, 2, 3, 8, 8)
    assert fm.unsqueeze(-3).shape == (2, 3, 1, 8, 8)  # torch semantics: just before the matrix dims
    assert fm.unsqueeze(1).shape == (2, 1, 3, 8, 8)
    with pytest.raises(IndexError):
        fm.unsqueeze(-1)
    assert fm.to(torch.float32).dtype == torch.float32
    assert "FactoredMatrix(shape=(2, 3, 8, 8), mdim=4" in repr(fm)
