"""The sketched (row-sampled) Gram collection: unbiased in scale, the same span for low-rank inputs."""

import pytest
import torch
from torch import nn

from hf_unlearn.core import collect_gram_matrices


def _low_rank_data(rank=3, width=12, batches=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, width, generator=g)
    return [(torch.randn(50, rank, generator=g) @ basis,) for _ in range(batches)], basis


def test_a_sketch_sees_every_row_uses_a_share_and_spans_the_same_inputs():
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
