"""Gram products at half the arithmetic (syrk's one triangle) and the sketched (row-sampled) collection."""

import pytest
import torch
from torch import nn

from hf_unlearn.core import collect_gram_matrices
from hf_unlearn.core import gram_product as product_module
from hf_unlearn.core.gram_product import gram_upper, symmetrize


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_triangle_mirrored_is_the_full_gram(dtype):
    rows = torch.randn(300, 40, dtype=torch.float64).to(dtype)
    upper, is_upper = gram_upper(rows)
    assert is_upper and torch.count_nonzero(torch.tril(upper, diagonal=-1)) == 0  # syrk wrote one triangle
    total = torch.zeros(40, 40, dtype=torch.float64)
    total += upper
    total += gram_upper(rows[:100])[0]
    symmetrize(total)
    direct = rows.double().T @ rows.double() + rows[:100].double().T @ rows[:100].double()
    assert torch.allclose(total, direct, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-3)


def test_without_blas_the_general_product_is_used(monkeypatch):
    monkeypatch.setattr(product_module, "_blas", None)
    rows = torch.randn(20, 6, dtype=torch.float64)
    full, is_upper = gram_upper(rows)
    assert not is_upper and torch.allclose(full, rows.T @ rows)


def _low_rank_data(rank=3, width=12, batches=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, width, generator=g)
    return [(torch.randn(50, rank, generator=g) @ basis,) for _ in range(batches)], basis


def test_collection_equals_the_direct_gram_and_a_sketch_spans_the_same_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 5))
    data, basis = _low_rank_data()
    exact = collect_gram_matrices(model, data, show_progress=False)
    rows = torch.cat([x for (x,) in data]).double()
    assert torch.allclose(exact.grams["0"], rows.T @ rows, rtol=1e-10, atol=1e-8)
    sketch = collect_gram_matrices(model, data, row_fraction=0.25, show_progress=False)
    assert sketch.num_rows["0"] == exact.num_rows["0"] == 300  # every row seen, a quarter used
    assert not torch.allclose(sketch.grams["0"], exact.grams["0"])
    top = torch.linalg.eigh(sketch.grams["0"]).eigenvectors[:, -3:]  # rank 3: the sketch finds the same span
    q = torch.linalg.qr(basis.T.double()).Q
    assert torch.allclose(q @ (q.T @ top), top, atol=1e-8)
    relative = (sketch.grams["0"].trace() / exact.grams["0"].trace()).item()
    assert 0.6 < relative < 1.4  # scaled by 1/fraction: the same order of energy, not a quarter of it
    with pytest.raises(ValueError, match="row_fraction"):
        collect_gram_matrices(model, data, row_fraction=0.0, show_progress=False)
