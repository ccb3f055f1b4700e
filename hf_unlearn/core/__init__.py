"""Plain-torch core of projected-gradient unlearning: statistics, spaces, projections.

Nothing here imports transformers, so the core can be used with any torch model.
"""

from .covariance import GramCollector, GramStatistics, collect_gram_matrices
from .energy import energy_rank
from .errors import UnsupportedSetupError
from .fingerprint import example_fingerprint, fingerprint_examples, model_fingerprint
from .layers import LayerInfo, UnsupportedLayerError, find_protectable_layers, input_rows, layer_kind
from .projection import LayerProjector, project_out
from .space import CGSMismatchError, CoreGradientSpace, LedgerError
from .storage import CGSLoadError

__all__ = [
    "CGSLoadError",
    "CGSMismatchError",
    "CoreGradientSpace",
    "GramCollector",
    "GramStatistics",
    "LayerInfo",
    "LayerProjector",
    "LedgerError",
    "UnsupportedLayerError",
    "UnsupportedSetupError",
    "collect_gram_matrices",
    "energy_rank",
    "example_fingerprint",
    "find_protectable_layers",
    "fingerprint_examples",
    "input_rows",
    "layer_kind",
    "model_fingerprint",
    "project_out",
]
