"""Two-stream batches: ``{"forget": batch, "retain": batch}``, one contract for every method.

The Trainer iterates over the forget set (one epoch = one pass over it); each forget example is
paired with a retain example drawn at random (seeded by the batch itself), so methods that need the
retain data get a batch of the same size at no extra bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from ..core.processing import is_tokenizer
from .memory import materialize


def collator_for(processing_class=None) -> Callable:
    """The collator of one stream of model inputs: a tokenizer pads its texts to the longest row (transformers'
    ``DataCollatorWithPadding``); anything else (pixels, fixed-length ids) is stacked as it is."""
    from transformers import DataCollatorWithPadding, default_data_collator

    return DataCollatorWithPadding(processing_class) if is_tokenizer(processing_class) else default_data_collator


class ForgetRetainDataset(TorchDataset):
    """Index i → ``{"forget": forget[i], "retain": retain[random j]}`` (retain omitted when None)."""

    def __init__(self, forget, retain=None, seed: int = 0):
        if forget is None or len(forget) == 0:
            raise ValueError("The forget set is empty: there is nothing to unlearn.")
        self.forget = materialize(forget)
        self.retain = materialize(retain) if retain is not None and len(retain) > 0 else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """Fetch a whole batch in one call: row-by-row access to Arrow data costs more than a small model's step."""
        forget = _rows(self.forget, indices)
        if self.retain is None:
            return [{"forget": f} for f in forget]
        # a function of the batch, not of how many batches came before: a run resumed from a checkpoint (which
        # skips the batches already trained on) pairs every forget example exactly as an uninterrupted run
        rng = np.random.default_rng([self.seed, *indices])
        partners = rng.integers(len(self.retain), size=len(indices)).tolist()
        return [{"forget": f, "retain": r} for f, r in zip(forget, _rows(self.retain, partners))]


def _rows(dataset, indices: list[int]) -> list:
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(indices)
    return [dataset[i] for i in indices]


class TwoStreamCollator:
    """Collate each stream with the model's own collator (padding for text, stacking for images)."""

    def __init__(self, base: Callable):
        self.base = base

    def __call__(self, features: list[dict]) -> dict:
        if "forget" not in features[0]:  # plain rows (Trainer.predict on a test set): the model's own collation
            return self.base(features)
        return {stream: self.base([f[stream] for f in features]) for stream in features[0]}
