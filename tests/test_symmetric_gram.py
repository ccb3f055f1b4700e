"""The Gram summed from upper blocks only equals RᵀR computed directly, and is exactly symmetric."""

import pytest
import torch
from torch import nn

from hf_unlearn.core import collect_gram_matrices
from hf_unlearn.core.symmetric import block_edges, mirror_upper, upper_blocks


@pytest.mark.parametrize(("dim", "parts"), [(100, 1), (300, 3), (600, 4), (1031, 4)])
def test_blocks_cover_the_upper_triangle_and_the_mirror_completes_it(dim, parts):
    edges = block_edges(dim)
    assert len(edges) == parts + 1 and edges[0] == 0 and edges[-1] == dim
    rows = torch.randn(57, dim, dtype=torch.float64)
    total = torch.zeros(dim, dim, dtype=torch.float64)
    blocks = upper_blocks(rows, edges)
    assert len(blocks) == parts * (parts + 1) // 2
    for r, c, block in blocks:
        total[r, c] += block
    if parts > 1:
        assert total[edges[-2]:, : edges[1]].abs().max() == 0  # below the diagonal: not computed
    mirror_upper(total, edges)
    torch.testing.assert_close(total, rows.T @ rows, rtol=1e-12, atol=1e-10)
    assert torch.equal(total, total.T)


@pytest.mark.parametrize("dim", [100, 600])
def test_the_mirror_makes_diagonal_blocks_symmetric_whatever_blas_rounded(dim):
    # Some BLAS builds (MKL on AMD EPYC) round the two triangles of AᵀA differently: the lower
    # triangles of the diagonal blocks must come from the upper ones too, not from the product.
    edges = block_edges(dim)
    rows = torch.randn(31, dim, dtype=torch.float64)
    total = rows.T @ rows
    upper = torch.triu(total).clone()
    total += torch.tril(torch.full_like(total, 1e-9), diagonal=-1)  # the round-off one BLAS leaves
    mirror_upper(total, edges)
    assert torch.equal(total, total.T)
    assert torch.equal(torch.triu(total), upper)  # the upper triangle is the authority


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_collected_grams_of_wide_and_shared_inputs_equal_the_direct_products(precision):
    torch.manual_seed(0)

    class Shared(nn.Module):  # q/k/v-like: three layers read one input, then a wide layer
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(600, 8), nn.Linear(600, 8), nn.Linear(600, 8)
            self.wide = nn.Linear(24, 4)

        def forward(self, x):
            return self.wide(torch.cat([self.q(x), self.k(x), self.v(x)], -1))

    model = Shared()
    x = torch.randn(2, 40, 600)
    stats = collect_gram_matrices(model, [x[0], x[1]], precision=precision, show_progress=False)
    rows = x.reshape(-1, 600).double()
    tolerance = 1e-10 if precision == "float64" else 1e-5
    for name in ("q", "k", "v"):
        gram = stats.grams[name]
        assert torch.equal(gram, gram.T)
        assert ((gram - rows.T @ rows).norm() / gram.norm()).item() < tolerance
    hidden = torch.cat([model.q(x), model.k(x), model.v(x)], -1).reshape(-1, 24).double()
    assert ((stats.grams["wide"] - hidden.T @ hidden).norm() / stats.grams["wide"].norm()).item() < tolerance
