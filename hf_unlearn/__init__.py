"""hf_unlearn: make a trained Hugging Face model forget part of its training data.

The core (``hf_unlearn.core``) is plain torch and imports instantly; the Trainer-facing names are
loaded on first use, because importing transformers costs seconds.
"""

from importlib import import_module

from .core import CGSMismatchError, CoreGradientSpace, LedgerError, collect_gram_matrices

__version__ = "0.1.0"

_LAZY = {
    "UnlearningArguments": "hf_unlearn.training.arguments",
    "UnlearningTrainer": "hf_unlearn.training.trainer",
    "CoreGradientSpaceCallback": "hf_unlearn.training.space_callback",
    "METHODS": "hf_unlearn.methods",
    "get_method": "hf_unlearn.methods",
    "load_causal_lm": "hf_unlearn.models.causal_lm",  # GGUF checkpoints load as trainable float weights
    "run_audit": "hf_unlearn.audit",  # per-example audit against many retrained models
}

__all__ = ["CGSMismatchError", "CoreGradientSpace", "LedgerError", "collect_gram_matrices", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_unlearn' has no attribute {name!r}")
