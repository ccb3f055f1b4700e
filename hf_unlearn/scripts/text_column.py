"""What the recipe reads from a text model's config: the column it reads when ``--text_column`` is not given, and
how many token positions it has (texts are cut to fit).

Without it the recipe takes the image path, and a text classifier then failed deep inside transformers with an
error about image models. A sequence classifier's data almost always has one text column: that one is read (and the
log says so); several, or none, are refused with the columns named.
"""

from __future__ import annotations

import logging

from datasets import DatasetDict
from transformers import AutoConfig

from ..models.adapters import model_config_path

logger = logging.getLogger(__name__)
TEXT_DTYPES = ("string", "large_string")


def _config(model_path: str):
    """The model's config, or None where this machine cannot read one (a GGUF file, a Hub name that is not here: the
    loader reports those)."""
    try:
        return AutoConfig.from_pretrained(model_config_path(model_path))
    except (OSError, ValueError):
        return None


def model_positions(model_path: str) -> int | None:
    """How many token positions the model has (``max_position_embeddings``), where its config says."""
    positions = getattr(_config(model_path), "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else None


def infer_text_column(data: DatasetDict, model_path: str) -> str | None:
    """The data's only text column (besides ``label``) when ``model_path`` is a sequence classifier, else None."""
    architectures = getattr(_config(model_path), "architectures", None) or []
    reader = next((name for name in architectures if name.endswith("ForSequenceClassification")), None)
    if reader is None:
        return None
    features = next(iter(data.values())).features
    texts = [name for name, feature in features.items()
             if getattr(feature, "dtype", None) in TEXT_DTYPES and name != "label"]
    if len(texts) == 1:
        logger.info("%s reads text: using the data's only text column %r (--text_column sets another).", reader,
                    texts[0])
        return texts[0]
    found = ", ".join(repr(name) for name in texts) or "none"
    raise ValueError(f"{model_path} is a text classifier ({reader}), and the data's text columns are {found}: pass "
                     "--text_column with the one it reads.")
